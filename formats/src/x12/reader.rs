//! Streaming X12 segment reader.
//!
//! Reads segments from any [`std::io::Read`] (or, with the `tokio` feature,
//! any `AsyncRead`) through a bounded buffer: memory stays at the size of the
//! longest segment plus one read chunk, whatever the file size. Delimiters are
//! taken from each ISA, so a file may hold several interchanges with
//! different delimiters. CR/LF (and stray spaces) after segment terminators
//! are skipped, a CR before an LF terminator is dropped, and an unterminated
//! last segment is returned flagged so the envelope layer can report it.

use super::Delimiters;
use super::isa::{IsaError, IsaHeader, parse_isa};
use std::io::Read;

/// Default bound on one segment's length. The longest legal 005010 segment is
/// a few kilobytes; anything longer is a broken or hostile file.
pub const DEFAULT_MAX_SEGMENT_BYTES: usize = 64 * 1024 - 1;

const READ_CHUNK: usize = 64 * 1024;

/// Why reading stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("i/o error while reading the interchange")]
    Io(#[from] std::io::Error),
    #[error("data at byte {offset} does not start with an ISA segment")]
    NoIsa { offset: u64 },
    #[error("the ISA segment at byte {offset} cannot be read: {source}")]
    BadIsa { offset: u64, source: IsaError },
    #[error("segment at byte {offset} is longer than {max} bytes")]
    SegmentTooLong { offset: u64, max: usize },
}

impl ReadError {
    /// Byte offset of the problem in the stream, when known.
    pub fn offset(&self) -> Option<u64> {
        match self {
            ReadError::Io(_) => None,
            ReadError::NoIsa { offset }
            | ReadError::BadIsa { offset, .. }
            | ReadError::SegmentTooLong { offset, .. } => Some(*offset),
        }
    }
}

/// Fields indexed per segment. Longer segments still work (access past the
/// index scans), they are just slower; no 005010 segment has this many.
const MAX_FIELDS: usize = 40;

/// Where each field of a segment ends, found with one SIMD search for the
/// element separator so nothing downstream rescans the segment to find an
/// element.
#[derive(Clone, Copy)]
pub struct FieldIndex {
    /// Fields indexed (the id is field 0).
    count: u8,
    /// More fields follow those indexed.
    overflow: bool,
    /// Exclusive end of field i; field i starts at `ends[i - 1] + 1`.
    ends: [u16; MAX_FIELDS],
}

impl std::fmt::Debug for FieldIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FieldIndex").field("count", &self.count).finish_non_exhaustive()
    }
}

impl FieldIndex {
    fn build(raw: &[u8], element: u8) -> Self {
        let mut idx = FieldIndex { count: 0, overflow: false, ends: [0; MAX_FIELDS] };
        if raw.len() > usize::from(u16::MAX) {
            // Too long to index: every access scans.
            idx.overflow = true;
            return idx;
        }
        let mut field = 0usize;
        for i in memchr::memchr_iter(element, raw) {
            if field + 1 >= MAX_FIELDS {
                idx.overflow = true;
                idx.count = field as u8;
                return idx;
            }
            idx.ends[field] = i as u16;
            field += 1;
        }
        idx.ends[field] = raw.len() as u16;
        idx.count = (field + 1) as u8;
        idx
    }
}

/// Properties of one element value.
#[inline]
pub fn flags_of(v: &[u8], d: Delimiters) -> ElementFlags {
    let rep = d.repetition.unwrap_or(d.element);
    // Fast path: every byte printable and no separator (the common case).
    if v.iter().all(|&b| (0x20..0x7F).contains(&b) && b != d.component && b != rep) {
        return ElementFlags::default();
    }
    ElementFlags {
        component: v.contains(&d.component),
        repetition: d.repetition.is_some_and(|r| v.contains(&r)),
        unprintable: v.iter().any(|b| !(0x20..0x7F).contains(b)),
    }
}

/// Properties of one element.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ElementFlags {
    pub component: bool,
    pub repetition: bool,
    pub unprintable: bool,
}

/// One segment, borrowed from the reader's buffer, with its fields indexed.
#[derive(Debug, Clone, Copy)]
pub struct Segment<'a> {
    raw: &'a [u8],
    delimiters: Delimiters,
    index: FieldIndex,
    /// Byte offset of the segment in the stream.
    pub offset: u64,
    /// False for a last segment that ended without a terminator.
    pub terminated: bool,
    /// The parsed header when this segment is an ISA.
    pub isa: Option<&'a IsaHeader>,
}

impl<'a> Segment<'a> {
    /// Builds a view over one segment's bytes (without its terminator).
    pub fn new(raw: &'a [u8], delimiters: Delimiters) -> Self {
        Segment {
            raw,
            delimiters,
            index: FieldIndex::build(raw, delimiters.element),
            offset: 0,
            terminated: true,
            isa: None,
        }
    }

    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    pub fn delimiters(&self) -> Delimiters {
        self.delimiters
    }

    #[inline]
    fn field(&self, i: usize) -> Option<&'a [u8]> {
        if i < usize::from(self.index.count) {
            let start = if i == 0 { 0 } else { usize::from(self.index.ends[i - 1]) + 1 };
            let end = usize::from(self.index.ends[i]);
            return self.raw.get(start..end);
        }
        if !self.index.overflow {
            return None;
        }
        // Past the index: scan on from the end of the last indexed field.
        let count = usize::from(self.index.count);
        let from = if count == 0 { 0 } else { usize::from(self.index.ends[count - 1]) + 1 };
        self.raw.get(from..)?.split(|&b| b == self.delimiters.element).nth(i - count)
    }

    /// The segment identifier (bytes before the first element separator).
    #[inline]
    pub fn id(&self) -> &'a [u8] {
        self.field(0).unwrap_or(b"")
    }

    /// True when the identifier equals `id`.
    pub fn is(&self, id: &str) -> bool {
        self.id() == id.as_bytes()
    }

    /// The elements after the identifier, element 1 first.
    pub fn elements(&self) -> Elements<'a> {
        Elements { seg: *self, next: 1 }
    }

    /// Number of elements (trailing empty ones included).
    pub fn element_count(&self) -> usize {
        if self.index.overflow {
            self.raw.iter().filter(|&&b| b == self.delimiters.element).count()
        } else {
            usize::from(self.index.count) - 1
        }
    }

    /// Element `n` (1-based); empty when absent. `0` is the identifier.
    #[inline]
    pub fn element(&self, n: usize) -> &'a [u8] {
        self.field(n).unwrap_or(b"")
    }

    /// Bit n set for each non-empty element n (1-63).
    pub fn present_mask(&self) -> u64 {
        let mut mask = 0u64;
        let indexed = usize::from(self.index.count).min(64);
        for n in 1..indexed {
            if self.index.ends[n] > self.index.ends[n - 1] + 1 {
                mask |= 1 << n;
            }
        }
        if self.index.overflow {
            for n in indexed.max(1)..64 {
                if !self.element(n).is_empty() {
                    mask |= 1 << n;
                }
            }
        }
        mask
    }

    /// What element `n` contains (separators, unprintable bytes): one
    /// vectorisable pass over the element.
    #[inline]
    pub fn flags(&self, n: usize) -> ElementFlags {
        flags_of(self.element(n), self.delimiters)
    }

    /// Element `n` as text (lossless for ASCII; invalid UTF-8 gives "").
    pub fn str(&self, n: usize) -> &'a str {
        std::str::from_utf8(self.element(n)).unwrap_or("")
    }

    /// Component `c` (1-based) of element `n`; for a simple element, `c = 1`
    /// is the element itself.
    pub fn component(&self, n: usize, c: usize) -> &'a [u8] {
        component(self.element(n), self.delimiters.component, c)
    }

    pub fn component_str(&self, n: usize, c: usize) -> &'a str {
        std::str::from_utf8(self.component(n, c)).unwrap_or("")
    }

    /// Repetitions of element `n` (one item when the element does not repeat).
    pub fn repetitions(&self, n: usize) -> impl Iterator<Item = &'a [u8]> + 'a {
        let value = self.element(n);
        let sep = self.delimiters.repetition;
        let mut rest = Some(value);
        std::iter::from_fn(move || {
            let v = rest?;
            match sep.and_then(|s| memchr::memchr(s, v)) {
                Some(i) => {
                    rest = Some(&v[i + 1..]);
                    Some(&v[..i])
                }
                None => {
                    rest = None;
                    Some(v)
                }
            }
        })
    }
}

/// Component `c` (1-based) of a composite value.
pub fn component(value: &[u8], sep: u8, c: usize) -> &[u8] {
    if c == 0 {
        return b"";
    }
    value.split(|&b| b == sep).nth(c - 1).unwrap_or(b"")
}

/// Iterator over a segment's elements.
#[derive(Debug, Clone)]
pub struct Elements<'a> {
    seg: Segment<'a>,
    next: usize,
}

impl<'a> Iterator for Elements<'a> {
    type Item = &'a [u8];
    #[inline]
    fn next(&mut self) -> Option<&'a [u8]> {
        let v = self.seg.field(self.next)?;
        self.next += 1;
        Some(v)
    }
}

/// What the buffer can give next.
enum Step {
    Segment { start: usize, end: usize, terminated: bool, isa: bool },
    NeedMore,
    Done,
}

/// The reader's core: a bounded buffer that splits segments. Shared by the
/// blocking and async readers, which only differ in how they fill it.
#[derive(Debug)]
struct SegmentBuffer {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Where the terminator search resumes (no rescan of bytes already seen).
    scan: usize,
    eof: bool,
    /// Stream offset of `buf[0]`.
    base: u64,
    delimiters: Option<Delimiters>,
    isa: Option<IsaHeader>,
    max_segment_bytes: usize,
    first: bool,
}

impl SegmentBuffer {
    fn new(max_segment_bytes: usize) -> Self {
        SegmentBuffer {
            buf: Vec::new(),
            start: 0,
            end: 0,
            scan: 0,
            eof: false,
            base: 0,
            delimiters: None,
            isa: None,
            max_segment_bytes,
            first: true,
        }
    }

    fn step(&mut self) -> Result<Step, ReadError> {
        if self.first {
            if self.end - self.start < 3 && !self.eof {
                return Ok(Step::NeedMore);
            }
            if self.buf[self.start..self.end].starts_with(b"\xEF\xBB\xBF") {
                self.start += 3;
            }
            self.first = false;
        }
        // Skip line breaks and blanks between segments.
        let skip = |b: u8, d: Option<Delimiters>| {
            matches!(b, b'\r' | b'\n' | b' ' | b'\t') && d.is_none_or(|d| b != d.element && b != d.component)
        };
        while self.start < self.end && skip(self.buf[self.start], self.delimiters) {
            self.start += 1;
        }
        if self.scan < self.start {
            self.scan = self.start;
        }
        if self.start == self.end {
            return Ok(if self.eof { Step::Done } else { Step::NeedMore });
        }
        let offset = self.base + self.start as u64;
        let avail = &self.buf[self.start..self.end];
        if avail.len() < 3 && !self.eof && b"ISA".starts_with(avail) {
            return Ok(Step::NeedMore);
        }
        if avail.starts_with(b"ISA") {
            match parse_isa(avail) {
                Ok(h) => {
                    let start = self.start;
                    let end = start + h.len - 1;
                    self.delimiters = Some(h.delimiters);
                    self.start = end + 1;
                    self.scan = self.start;
                    self.isa = Some(h);
                    return Ok(Step::Segment { start, end, terminated: true, isa: true });
                }
                Err(IsaError::Truncated) if !self.eof => return Ok(Step::NeedMore),
                Err(source) => return Err(ReadError::BadIsa { offset, source }),
            }
        }
        let Some(d) = self.delimiters else {
            return Err(ReadError::NoIsa { offset });
        };
        match memchr::memchr(d.segment, &self.buf[self.scan..self.end]) {
            Some(i) => {
                let term = self.scan + i;
                let start = self.start;
                let mut end = term;
                while end > start && matches!(self.buf[end - 1], b'\r' | b'\n') && !d.is_delimiter(self.buf[end - 1]) {
                    end -= 1;
                }
                if end - start > self.max_segment_bytes {
                    return Err(ReadError::SegmentTooLong { offset, max: self.max_segment_bytes });
                }
                self.start = term + 1;
                self.scan = self.start;
                Ok(Step::Segment { start, end, terminated: true, isa: false })
            }
            None => {
                if self.end - self.start > self.max_segment_bytes {
                    return Err(ReadError::SegmentTooLong { offset, max: self.max_segment_bytes });
                }
                if self.eof {
                    let start = self.start;
                    let mut end = self.end;
                    while end > start && self.buf[end - 1].is_ascii_whitespace() {
                        end -= 1;
                    }
                    self.start = self.end;
                    Ok(Step::Segment { start, end, terminated: false, isa: false })
                } else {
                    self.scan = self.end;
                    Ok(Step::NeedMore)
                }
            }
        }
    }

    /// Makes room and returns the free tail to read into.
    fn spare(&mut self) -> &mut [u8] {
        if self.start > 0 && (self.start == self.end || self.buf.len() - self.end < READ_CHUNK) {
            self.buf.copy_within(self.start..self.end, 0);
            self.base += self.start as u64;
            self.end -= self.start;
            self.scan -= self.start;
            self.start = 0;
        }
        if self.buf.len() - self.end < READ_CHUNK {
            self.buf.resize(self.end + READ_CHUNK, 0);
        }
        &mut self.buf[self.end..]
    }

    fn filled(&mut self, n: usize) {
        if n == 0 {
            self.eof = true;
        }
        self.end += n;
    }

    fn segment(&self, start: usize, end: usize, terminated: bool, isa: bool) -> Segment<'_> {
        let raw = &self.buf[start..end];
        let delimiters = self.delimiters.unwrap_or_default();
        Segment {
            raw,
            delimiters,
            index: FieldIndex::build(raw, delimiters.element),
            offset: self.base + start as u64,
            terminated,
            isa: if isa { self.isa.as_ref() } else { None },
        }
    }
}

/// Reads segments one at a time from a blocking reader.
#[derive(Debug)]
pub struct SegmentReader<R> {
    inner: R,
    buf: SegmentBuffer,
    bytes_read: u64,
}

impl<R: Read> SegmentReader<R> {
    pub fn new(inner: R) -> Self {
        Self::with_max_segment_bytes(inner, DEFAULT_MAX_SEGMENT_BYTES)
    }

    pub fn with_max_segment_bytes(inner: R, max: usize) -> Self {
        SegmentReader { inner, buf: SegmentBuffer::new(max), bytes_read: 0 }
    }

    /// Bytes consumed from the underlying reader so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// The next segment, or `None` at the end of the input.
    pub fn next_segment(&mut self) -> Result<Option<Segment<'_>>, ReadError> {
        loop {
            match self.buf.step()? {
                Step::Segment { start, end, terminated, isa } => {
                    return Ok(Some(self.buf.segment(start, end, terminated, isa)));
                }
                Step::Done => return Ok(None),
                Step::NeedMore => {
                    let spare = self.buf.spare();
                    let n = loop {
                        match self.inner.read(spare) {
                            Ok(n) => break n,
                            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                            Err(e) => return Err(e.into()),
                        }
                    };
                    self.bytes_read += n as u64;
                    self.buf.filled(n);
                }
            }
        }
    }
}

/// Reads segments one at a time from an async reader.
#[cfg(feature = "tokio")]
#[derive(Debug)]
pub struct AsyncSegmentReader<R> {
    inner: R,
    buf: SegmentBuffer,
}

#[cfg(feature = "tokio")]
impl<R: tokio::io::AsyncRead + Unpin> AsyncSegmentReader<R> {
    pub fn new(inner: R) -> Self {
        AsyncSegmentReader { inner, buf: SegmentBuffer::new(DEFAULT_MAX_SEGMENT_BYTES) }
    }

    /// The next segment, or `None` at the end of the input.
    pub async fn next_segment(&mut self) -> Result<Option<Segment<'_>>, ReadError> {
        use tokio::io::AsyncReadExt;
        loop {
            match self.buf.step()? {
                Step::Segment { start, end, terminated, isa } => {
                    return Ok(Some(self.buf.segment(start, end, terminated, isa)));
                }
                Step::Done => return Ok(None),
                Step::NeedMore => {
                    let n = self.inner.read(self.buf.spare()).await?;
                    self.buf.filled(n);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISA: &str =
        "ISA*00*          *00*          *ZZ*SENDER         *ZZ*RECEIVER       *240101*1200*^*00501*000000001*0*T*:~";

    fn ids(input: &[u8]) -> Vec<String> {
        let mut r = SegmentReader::new(input);
        let mut out = vec![];
        while let Some(s) = r.next_segment().unwrap() {
            out.push(String::from_utf8_lossy(s.raw()).into_owned());
        }
        out
    }

    /// A reader that hands out one byte at a time, to exercise refills.
    struct Trickle<'a>(&'a [u8]);
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            match self.0.split_first() {
                Some((b, rest)) if !buf.is_empty() => {
                    buf[0] = *b;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    #[test]
    fn splits_segments_and_tolerates_line_breaks() {
        let input = format!("{ISA}\r\nGS*HC*A*B~\nST*837*0001~\r\n\r\nSE*2*0001~GE*1*1~IEA*1*000000001~\n\n");
        let segs = ids(input.as_bytes());
        assert_eq!(segs.len(), 6);
        assert_eq!(segs[1], "GS*HC*A*B");
        assert_eq!(segs[5], "IEA*1*000000001");
    }

    #[test]
    fn trickled_input_gives_the_same_segments() {
        let input = format!("{ISA}GS*HC*A*B~ST*837*0001~SE*2*0001~GE*1*1~IEA*1*000000001~");
        let mut r = SegmentReader::new(Trickle(input.as_bytes()));
        let mut n = 0;
        while let Some(s) = r.next_segment().unwrap() {
            if n == 0 {
                assert!(s.isa.is_some());
            }
            n += 1;
        }
        assert_eq!(n, 6);
    }

    #[test]
    fn newline_terminator_with_crlf() {
        let isa = ISA.replace('~', "\n");
        let input = format!("{isa}GS*HC*A*B\r\nIEA*1*000000001\r\n");
        assert_eq!(ids(input.as_bytes())[1], "GS*HC*A*B");
    }

    #[test]
    fn second_interchange_brings_its_own_delimiters() {
        let second = ISA.replace('*', "|").replace('~', "!").replace('^', "{");
        let input = format!("{ISA}IEA*0*000000001~{second}IEA|0|000000001!");
        let mut r = SegmentReader::new(input.as_bytes());
        let mut seen = vec![];
        while let Some(s) = r.next_segment().unwrap() {
            seen.push((s.id().to_vec(), s.delimiters().element));
        }
        assert_eq!(seen[3], (b"IEA".to_vec(), b'|'));
    }

    #[test]
    fn unterminated_last_segment_is_flagged() {
        let input = format!("{ISA}GS*HC*A*B~ST*837*0001");
        let mut r = SegmentReader::new(input.as_bytes());
        let mut last = None;
        while let Some(s) = r.next_segment().unwrap() {
            last = Some((s.terminated, s.raw().to_vec()));
        }
        assert_eq!(last, Some((false, b"ST*837*0001".to_vec())));
    }

    #[test]
    fn data_before_isa_is_an_error() {
        let mut r = SegmentReader::new(&b"GS*HC*A*B~"[..]);
        assert!(matches!(r.next_segment(), Err(ReadError::NoIsa { offset: 0 })));
    }

    #[test]
    fn overlong_segment_is_an_error_not_an_allocation() {
        let input = format!("{ISA}NTE*{}", "A".repeat(200_000));
        let mut r = SegmentReader::with_max_segment_bytes(input.as_bytes(), 1024);
        assert!(r.next_segment().unwrap().is_some());
        assert!(matches!(r.next_segment(), Err(ReadError::SegmentTooLong { .. })));
    }

    #[test]
    fn segments_longer_than_the_index_still_read() {
        let raw: String = (0..70).map(|i| format!("*E{i}")).collect();
        let raw = format!("NTE{raw}");
        let s = Segment::new(raw.as_bytes(), Delimiters::default());
        assert_eq!(s.element(1), b"E0");
        assert_eq!(s.element(46), b"E45");
        assert_eq!(s.element(47), b"E46");
        assert_eq!(s.element(70), b"E69");
        assert_eq!(s.element(71), b"");
        assert_eq!(s.elements().count(), 70);
        assert_eq!(s.element_count(), 70);
    }

    #[test]
    fn flags_are_found_while_indexing() {
        let s = Segment::new("HI*ABK:J020*EQ^1*N\u{7f}".as_bytes(), Delimiters::default());
        assert!(s.flags(1).component && !s.flags(1).repetition);
        assert!(s.flags(2).repetition);
        assert!(s.flags(3).unprintable);
    }

    #[test]
    fn element_and_component_access() {
        let s = Segment::new(b"CLM*PCN1*100***11:B:1*Y", Delimiters::default());
        assert_eq!(s.id(), b"CLM");
        assert_eq!(s.element(1), b"PCN1");
        assert_eq!(s.element(5), b"11:B:1");
        assert_eq!(s.component(5, 3), b"1");
        assert_eq!(s.component(1, 1), b"PCN1");
        assert_eq!(s.element(9), b"");
        assert_eq!(s.element_count(), 6);
        let eq = Segment::new(b"EQ*30^1^35", Delimiters::default());
        assert_eq!(eq.repetitions(1).collect::<Vec<_>>(), vec![&b"30"[..], b"1", b"35"]);
    }
}
