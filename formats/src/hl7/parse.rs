//! Zero-copy HL7 v2 message parsing.
//!
//! A [`Message`] borrows the bytes it was parsed from and records only where
//! each segment starts and ends. Fields, repetitions, components and
//! subcomponents are found on access by scanning the segment with `memchr`,
//! and escape sequences are decoded only when a value is asked for as text
//! ([`Value::decode`]). Parsing a message therefore costs one pass over the
//! bytes and one small allocation (the segment table), which is what makes
//! the parser fast enough to sit in the intake path, and means a message can
//! be checked and acknowledged without ever materialising its PHI as
//! `String`s.
//!
//! The parser is deliberately tolerant of the framing variations seen in the
//! wild: segments may end with CR, LF or CRLF; a UTF-8 byte-order mark,
//! blank lines, trailing field separators and a missing final terminator are
//! accepted; encoding characters are read from MSH-2 and may be any ASCII
//! punctuation (including only three characters, i.e. no escape character).
//! What it does not tolerate is anything that makes the structure ambiguous:
//! no MSH at the start, invalid or repeated delimiters, or a second header
//! segment inside what should be one message (use [`split`] for streams and
//! batches). Semantic checks (required segments and fields, table values)
//! live in [`crate::hl7::validate`](mod@crate::hl7::validate).
//!
//! Addressing is 1-based as in the HL7 standard. For MSH, FHS and BHS, field
//! 1 is the field separator itself and field 2 the encoding characters, so
//! `MSH-9` is the message type exactly as printed in the standard.
//!
//! Nothing here panics on input and no error message carries a field value:
//! errors name segment ids, positions and limits only.

mod batch;
mod escape;

pub use batch::{Batch, BatchError, BatchGroup, split};
pub use escape::{decode_escapes, encode_escapes};

use memchr::{memchr, memchr2};
use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

/// The UTF-8 byte-order mark, tolerated at the start of input.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Size limits applied while parsing untrusted input.
///
/// Every allocation the parser makes is proportional to one of these, so a
/// hostile peer cannot make it allocate without bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted message, in bytes (MSH up to the end of its last segment).
    pub max_message_bytes: usize,
    /// Most segments accepted in one message.
    pub max_segments: usize,
    /// Most messages accepted by [`split`] in one stream.
    pub max_messages: usize,
}

impl Limits {
    /// 32 MiB per message (Redox caps MLLP messages at 30 MB), 100,000
    /// segments per message and 1,000,000 messages per stream.
    pub const DEFAULT: Limits =
        Limits { max_message_bytes: 32 * 1024 * 1024, max_segments: 100_000, max_messages: 1_000_000 };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// Why a message could not be parsed. Never carries field values.
// Variant fields are named for what they hold.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Nothing but whitespace (or nothing at all).
    #[error("message is empty")]
    Empty,
    /// The first segment is not MSH.
    #[error("message does not start with an MSH segment")]
    NotMessageHeader,
    /// MSH (or FHS/BHS) too short to hold the field separator and MSH-2.
    #[error("{id} segment is too short to hold its delimiters")]
    HeaderTooShort { id: SegmentId },
    /// MSH-1/MSH-2 do not define a usable set of delimiters.
    #[error("{id} encoding characters are invalid: {reason}")]
    BadDelimiters { id: SegmentId, reason: &'static str },
    /// A header or envelope segment (MSH, FHS, BHS, BTS, FTS) after the first segment.
    #[error("unexpected {id} segment at segment {segment} of a single message (use split for streams)")]
    UnexpectedHeader { id: SegmentId, segment: usize },
    /// The message is larger than [`Limits::max_message_bytes`].
    #[error("message exceeds the limit of {limit} bytes")]
    TooLarge { limit: usize },
    /// The message has more than [`Limits::max_segments`] segments.
    #[error("message exceeds the limit of {limit} segments")]
    TooManySegments { limit: usize },
}

impl ParseError {
    /// The HL7 table 0357 code for an acknowledgement of this error: 100
    /// (segment sequence error) for structural problems, 207 (application
    /// internal error) for exceeded limits.
    pub fn hl7_error_code(&self) -> u16 {
        match self {
            ParseError::TooLarge { .. } | ParseError::TooManySegments { .. } => 207,
            _ => 100,
        }
    }
}

/// A segment id safe to print: the id when it is three upper-case ASCII
/// letters or digits starting with a letter, `???` otherwise (so that a
/// garbage line never leaks its content into an error message).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SegmentId([u8; 3]);

impl SegmentId {
    const UNKNOWN: SegmentId = SegmentId(*b"???");

    /// The id of a raw segment given its field separator.
    pub fn of(segment: &[u8], field_separator: u8) -> SegmentId {
        let id = match memchr(field_separator, segment) {
            Some(n) => segment.get(..n).unwrap_or_default(),
            None => segment,
        };
        SegmentId::from_bytes(id)
    }

    /// Validates three bytes as a segment id.
    pub fn from_bytes(id: &[u8]) -> SegmentId {
        match id {
            [a, b, c] if is_valid_segment_id(id) => SegmentId([*a, *b, *c]),
            _ => SegmentId::UNKNOWN,
        }
    }

    /// The id as text (`???` when the raw id was not a valid segment id).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("???")
    }

    /// Whether the raw id was a valid segment id.
    pub fn is_valid(&self) -> bool {
        *self != SegmentId::UNKNOWN
    }
}

impl fmt::Display for SegmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for SegmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SegmentId({})", self.as_str())
    }
}

/// Three upper-case ASCII letters or digits, the first a letter.
pub(crate) fn is_valid_segment_id(id: &[u8]) -> bool {
    matches!(id, [a, b, c] if a.is_ascii_uppercase()
        && (b.is_ascii_uppercase() || b.is_ascii_digit())
        && (c.is_ascii_uppercase() || c.is_ascii_digit()))
}

/// The delimiters of a message, read from MSH-1 and MSH-2.
///
/// HL7 lets every sender pick its own; `|^~\&` is only the recommendation.
/// MSH-2 lists component, repetition, escape and subcomponent separators (and
/// since v2.7 an optional truncation character). Two malformed variants are
/// tolerated: three characters with no escape character (`^~&`, read as
/// component, repetition, subcomponent), and three characters whose third is
/// a backslash (`^~\`, read as component, repetition, escape with no
/// subcomponent separator).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Delimiters {
    /// MSH-1, `|` by default.
    pub field: u8,
    /// `^` by default.
    pub component: u8,
    /// `~` by default.
    pub repetition: u8,
    /// `None` when MSH-2 does not define one: escape sequences are then not decoded.
    pub escape: Option<u8>,
    /// `None` when MSH-2 does not define one: components then have one subcomponent.
    pub subcomponent: Option<u8>,
    /// The v2.7 truncation character (`#`), when present.
    pub truncation: Option<u8>,
}

impl Default for Delimiters {
    /// `|^~\&`, the recommended delimiters.
    fn default() -> Self {
        Delimiters {
            field: b'|',
            component: b'^',
            repetition: b'~',
            escape: Some(b'\\'),
            subcomponent: Some(b'&'),
            truncation: None,
        }
    }
}

impl Delimiters {
    /// Reads the delimiters from a header segment (MSH, FHS or BHS): byte 3
    /// is the field separator and the bytes up to the next field separator
    /// are the encoding characters. Returns the delimiters and the length of
    /// the encoding characters.
    pub fn from_header(segment: &[u8]) -> Result<(Delimiters, usize), ParseError> {
        let id = SegmentId::from_bytes(segment.get(..3).unwrap_or(segment));
        let Some(&field) = segment.get(3) else {
            return Err(ParseError::HeaderTooShort { id });
        };
        let rest = segment.get(4..).unwrap_or_default();
        let enc = match memchr(field, rest) {
            Some(n) => rest.get(..n).unwrap_or_default(),
            None => rest,
        };
        let bad = |reason| Err(ParseError::BadDelimiters { id, reason });
        let (component, repetition, escape, subcomponent, truncation) = match *enc {
            [c, r, e, s] => (c, r, Some(e), Some(s), None),
            [c, r, e, s, t] => (c, r, Some(e), Some(s), Some(t)),
            [c, r, b'\\'] => (c, r, Some(b'\\'), None, None),
            [c, r, s] => (c, r, None, Some(s), None),
            [] | [_] | [_, _] => return bad("fewer than three encoding characters"),
            _ => return bad("more than five encoding characters"),
        };
        let all = [Some(field), Some(component), Some(repetition), escape, subcomponent, truncation];
        let mut seen = [false; 256];
        for b in all.into_iter().flatten() {
            if !b.is_ascii_punctuation() {
                return bad("a delimiter is not ASCII punctuation");
            }
            let slot = &mut seen[usize::from(b)];
            if *slot {
                return bad("a delimiter is used twice");
            }
            *slot = true;
        }
        Ok((Delimiters { field, component, repetition, escape, subcomponent, truncation }, enc.len()))
    }

    /// The encoding characters as they appear in MSH-2.
    pub fn encoding_characters(&self) -> String {
        let mut s = String::with_capacity(5);
        s.push(char::from(self.component));
        s.push(char::from(self.repetition));
        match (self.escape, self.subcomponent) {
            (Some(e), Some(sub)) => {
                s.push(char::from(e));
                s.push(char::from(sub));
            }
            (Some(e), None) => s.push(char::from(e)),
            (None, Some(sub)) => s.push(char::from(sub)),
            (None, None) => {}
        }
        if let Some(t) = self.truncation {
            s.push(char::from(t));
        }
        s
    }

    /// Whether `b` is one of these delimiters.
    pub fn is_delimiter(&self, b: u8) -> bool {
        b == self.field
            || b == self.component
            || b == self.repetition
            || Some(b) == self.escape
            || Some(b) == self.subcomponent
            || Some(b) == self.truncation
    }
}

/// Where something is in a stream: 1-based segment number (blank lines not
/// counted) and 0-based byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Position {
    /// 1-based segment number.
    pub segment: usize,
    /// 0-based byte offset of the segment's first byte.
    pub byte: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "segment {}, byte {}", self.segment, self.byte)
    }
}

/// Strips a leading UTF-8 byte-order mark.
pub(crate) fn strip_bom(input: &[u8]) -> &[u8] {
    input.strip_prefix(BOM).unwrap_or(input)
}

/// Iterates the non-blank lines of a buffer as byte ranges, splitting on CR
/// and LF (so CR, LF and CRLF all terminate a segment). Lines made only of
/// spaces and tabs count as blank.
#[derive(Debug, Clone)]
pub(crate) struct Lines<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Lines<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Lines { buf, pos: 0 }
    }
}

impl Iterator for Lines<'_> {
    type Item = Range<usize>;

    fn next(&mut self) -> Option<Range<usize>> {
        loop {
            let rest = self.buf.get(self.pos..)?;
            if rest.is_empty() {
                return None;
            }
            let start = self.pos;
            let end = match memchr2(b'\r', b'\n', rest) {
                Some(n) => start + n,
                None => self.buf.len(),
            };
            self.pos = end + 1;
            let line = self.buf.get(start..end).unwrap_or_default();
            match line.first() {
                None => continue,
                Some(b' ' | b'\t') if line.iter().all(|b| matches!(b, b' ' | b'\t')) => continue,
                Some(_) => return Some(start..end),
            }
        }
    }
}

/// The `n`-th (0-based) piece of `raw` split on `sep`.
#[inline]
pub(crate) fn nth_piece(raw: &[u8], sep: u8, n: usize) -> Option<&[u8]> {
    let mut rest = raw;
    for _ in 0..n {
        let at = memchr(sep, rest)?;
        rest = rest.get(at + 1..)?;
    }
    match memchr(sep, rest) {
        Some(at) => rest.get(..at),
        None => Some(rest),
    }
}

/// The `n`-th (0-based) piece of `raw` split on an optional separator; with
/// no separator the whole value is the only piece.
#[inline]
fn nth_piece_opt(raw: &[u8], sep: Option<u8>, n: usize) -> Option<&[u8]> {
    match sep {
        Some(sep) => nth_piece(raw, sep, n),
        None if n == 0 => Some(raw),
        None => None,
    }
}

/// Iterator over the pieces of a value split on a separator.
#[derive(Debug, Clone)]
pub(crate) struct Pieces<'a> {
    rest: Option<&'a [u8]>,
    sep: Option<u8>,
}

impl<'a> Pieces<'a> {
    fn new(raw: &'a [u8], sep: Option<u8>) -> Self {
        Pieces { rest: Some(raw), sep }
    }
}

impl<'a> Iterator for Pieces<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.rest?;
        let found = self.sep.and_then(|sep| memchr(sep, rest));
        match found {
            Some(at) => {
                self.rest = rest.get(at + 1..);
                rest.get(..at)
            }
            None => {
                self.rest = None;
                Some(rest)
            }
        }
    }
}

/// Implements the accessors shared by every level of value.
macro_rules! value_accessors {
    ($ty:ident) => {
        impl<'a> $ty<'a> {
            /// The bytes exactly as received: escape sequences not decoded,
            /// delimiters of lower levels included.
            pub fn raw(&self) -> &'a [u8] {
                self.raw
            }

            /// The raw value as text (invalid UTF-8 replaced), escape
            /// sequences not decoded. Borrowed when the bytes are UTF-8.
            pub fn as_str(&self) -> Cow<'a, str> {
                String::from_utf8_lossy(self.raw)
            }

            /// The value with escape sequences decoded (see
            /// [`decode_escapes`]). Only meaningful on a leaf value: the
            /// delimiters of lower levels are left in place, and an escaped
            /// delimiter becomes indistinguishable from a real one.
            pub fn decode(&self) -> Cow<'a, str> {
                if self.literal { self.as_str() } else { decode_escapes(self.raw, &self.delims) }
            }

            /// Whether the value is empty (absent).
            pub fn is_empty(&self) -> bool {
                self.raw.is_empty()
            }

            /// Whether the value is the explicit HL7 null `""`.
            pub fn is_null(&self) -> bool {
                self.raw == b"\"\""
            }

            /// Whether the value holds data: neither empty nor `""`.
            pub fn is_valued(&self) -> bool {
                !self.is_empty() && !self.is_null()
            }

            /// The delimiters in effect for this value.
            pub fn delimiters(&self) -> &Delimiters {
                &self.delims
            }

            /// This value as a level-less [`Value`].
            pub fn value(&self) -> Value<'a> {
                Value { raw: self.raw, delims: self.delims, literal: self.literal }
            }
        }

        impl fmt::Debug for $ty<'_> {
            /// Prints the length only: the content may be PHI.
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($ty)).field("len", &self.raw.len()).finish_non_exhaustive()
            }
        }
    };
}

/// One field of a segment, with all its repetitions.
#[derive(Clone, Copy)]
pub struct Field<'a> {
    raw: &'a [u8],
    delims: Delimiters,
    /// MSH-1 and MSH-2: never split or decoded.
    literal: bool,
}

/// One repetition of a field.
#[derive(Clone, Copy)]
pub struct Repetition<'a> {
    raw: &'a [u8],
    delims: Delimiters,
    literal: bool,
}

/// One component of a repetition.
#[derive(Clone, Copy)]
pub struct Component<'a> {
    raw: &'a [u8],
    delims: Delimiters,
    literal: bool,
}

/// A value at any level: what [`Message::get`] returns, and the type of a subcomponent.
#[derive(Clone, Copy)]
pub struct Value<'a> {
    raw: &'a [u8],
    delims: Delimiters,
    literal: bool,
}

value_accessors!(Field);
value_accessors!(Repetition);
value_accessors!(Component);
value_accessors!(Value);

impl<'a> From<Field<'a>> for Value<'a> {
    fn from(v: Field<'a>) -> Self {
        v.value()
    }
}

impl<'a> From<Repetition<'a>> for Value<'a> {
    fn from(v: Repetition<'a>) -> Self {
        v.value()
    }
}

impl<'a> From<Component<'a>> for Value<'a> {
    fn from(v: Component<'a>) -> Self {
        v.value()
    }
}

impl<'a> Field<'a> {
    /// The `n`-th repetition, 1-based.
    pub fn repetition(&self, n: usize) -> Option<Repetition<'a>> {
        let idx = n.checked_sub(1)?;
        let sep = if self.literal { None } else { Some(self.delims.repetition) };
        nth_piece_opt(self.raw, sep, idx).map(|raw| Repetition { raw, delims: self.delims, literal: self.literal })
    }

    /// All repetitions (an empty field has one, empty, repetition).
    pub fn repetitions(&self) -> impl Iterator<Item = Repetition<'a>> + use<'a> {
        let sep = if self.literal { None } else { Some(self.delims.repetition) };
        let (delims, literal) = (self.delims, self.literal);
        Pieces::new(self.raw, sep).map(move |raw| Repetition { raw, delims, literal })
    }

    /// The number of repetitions.
    pub fn repetition_count(&self) -> usize {
        if self.literal { 1 } else { memchr::memchr_iter(self.delims.repetition, self.raw).count() + 1 }
    }

    /// The `n`-th component (1-based) of the first repetition.
    pub fn component(&self, n: usize) -> Option<Component<'a>> {
        self.repetition(1)?.component(n)
    }
}

impl<'a> Repetition<'a> {
    /// The `n`-th component, 1-based.
    pub fn component(&self, n: usize) -> Option<Component<'a>> {
        let idx = n.checked_sub(1)?;
        let sep = if self.literal { None } else { Some(self.delims.component) };
        nth_piece_opt(self.raw, sep, idx).map(|raw| Component { raw, delims: self.delims, literal: self.literal })
    }

    /// All components.
    pub fn components(&self) -> impl Iterator<Item = Component<'a>> + use<'a> {
        let sep = if self.literal { None } else { Some(self.delims.component) };
        let (delims, literal) = (self.delims, self.literal);
        Pieces::new(self.raw, sep).map(move |raw| Component { raw, delims, literal })
    }
}

impl<'a> Component<'a> {
    /// The `n`-th subcomponent, 1-based.
    pub fn subcomponent(&self, n: usize) -> Option<Value<'a>> {
        let idx = n.checked_sub(1)?;
        let sep = if self.literal { None } else { self.delims.subcomponent };
        nth_piece_opt(self.raw, sep, idx).map(|raw| Value { raw, delims: self.delims, literal: self.literal })
    }

    /// All subcomponents.
    pub fn subcomponents(&self) -> impl Iterator<Item = Value<'a>> + use<'a> {
        let sep = if self.literal { None } else { self.delims.subcomponent };
        let (delims, literal) = (self.delims, self.literal);
        Pieces::new(self.raw, sep).map(move |raw| Value { raw, delims, literal })
    }
}

/// One segment of a message.
#[derive(Clone, Copy)]
pub struct Segment<'a> {
    raw: &'a [u8],
    delims: Delimiters,
    /// 1-based position in the message (or stream, for envelope segments).
    position: usize,
}

impl fmt::Debug for Segment<'_> {
    /// Prints the id, position and length only: the content may be PHI.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Segment")
            .field("id", &self.segment_id())
            .field("position", &self.position)
            .field("len", &self.raw.len())
            .finish()
    }
}

impl<'a> Segment<'a> {
    pub(crate) fn new(raw: &'a [u8], delims: Delimiters, position: usize) -> Self {
        Segment { raw, delims, position }
    }

    /// The whole segment as received, without its terminator.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// The bytes before the first field separator.
    pub fn id_bytes(&self) -> &'a [u8] {
        match memchr(self.delims.field, self.raw) {
            Some(n) => self.raw.get(..n).unwrap_or_default(),
            None => self.raw,
        }
    }

    /// The segment id, `""` when it is not UTF-8.
    pub fn id(&self) -> &'a str {
        std::str::from_utf8(self.id_bytes()).unwrap_or("")
    }

    /// The id in a form safe to print (see [`SegmentId`]).
    pub fn segment_id(&self) -> SegmentId {
        SegmentId::from_bytes(self.id_bytes())
    }

    /// Whether the segment id is `id`.
    pub fn is(&self, id: &str) -> bool {
        self.id_bytes() == id.as_bytes()
    }

    /// The 1-based position of this segment in its message.
    pub fn position(&self) -> usize {
        self.position
    }

    /// The delimiters in effect.
    pub fn delimiters(&self) -> &Delimiters {
        &self.delims
    }

    /// MSH, FHS and BHS, whose field 1 is the field separator itself.
    fn is_header(&self) -> bool {
        matches!(self.raw.get(..3), Some(b"MSH" | b"FHS" | b"BHS")) && self.raw.get(3) == Some(&self.delims.field)
    }

    /// Field `n`, 1-based, as numbered in the standard. `None` for field 0
    /// and for fields past the last field separator.
    pub fn field(&self, n: usize) -> Option<Field<'a>> {
        if n == 0 {
            return None;
        }
        let (piece, literal) = if self.is_header() {
            match n {
                1 => {
                    return self.raw.get(3..4).map(|raw| Field { raw, delims: self.delims, literal: true });
                }
                2 => (1, true),
                _ => (n - 1, false),
            }
        } else {
            (n, false)
        };
        nth_piece(self.raw, self.delims.field, piece).map(|raw| Field { raw, delims: self.delims, literal })
    }

    /// The number of fields present (trailing empty fields included).
    pub fn field_count(&self) -> usize {
        let seps = memchr::memchr_iter(self.delims.field, self.raw).count();
        if self.is_header() { seps + 1 } else { seps }
    }

    /// All fields, from field 1, in one pass over the segment.
    pub fn fields(&self) -> impl Iterator<Item = Field<'a>> + use<'a> {
        let delims = self.delims;
        let header = self.is_header();
        // For MSH/FHS/BHS, field 1 is the separator itself and field 2
        // (the first piece after the id) is literal.
        let separator = header.then(|| self.raw.get(3..4)).flatten();
        let mut pieces = Pieces::new(self.raw, Some(delims.field));
        pieces.next(); // the segment id
        let first = usize::from(header);
        separator.into_iter().chain(pieces).enumerate().map(move |(i, raw)| Field {
            raw,
            delims,
            literal: header && i <= first,
        })
    }
}

/// MSH-9: message code, trigger event and message structure.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MessageType<'a> {
    /// MSH-9.1, e.g. `ADT`.
    pub code: Cow<'a, str>,
    /// MSH-9.2, e.g. `A01`; empty when absent.
    pub trigger: Cow<'a, str>,
    /// MSH-9.3, e.g. `ADT_A01`; empty when absent (before v2.3.1).
    pub structure: Cow<'a, str>,
}

/// The message families Clearway knows how to read and validate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// Admit, discharge, transfer.
    Adt,
    /// Observation result.
    Oru,
    /// General order.
    Orm,
    /// Scheduling information unsolicited.
    Siu,
    /// Detailed financial transaction.
    Dft,
    /// Add/change billing account.
    Bar,
    /// General acknowledgement.
    Ack,
    /// Any other message code.
    Other,
}

impl MessageKind {
    /// The kind for an MSH-9.1 message code.
    pub fn from_code(code: &str) -> MessageKind {
        match code {
            "ADT" => MessageKind::Adt,
            "ORU" => MessageKind::Oru,
            "ORM" => MessageKind::Orm,
            "SIU" => MessageKind::Siu,
            "DFT" => MessageKind::Dft,
            "BAR" => MessageKind::Bar,
            "ACK" => MessageKind::Ack,
            _ => MessageKind::Other,
        }
    }
}

/// An HL7 version id (MSH-12.1) such as `2.5.1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// Always 2 for HL7 v2.
    pub major: u8,
    /// `5` in 2.5.1.
    pub minor: u8,
    /// `1` in 2.5.1, `0` when absent.
    pub patch: u8,
}

impl Version {
    /// 2.3: MSH-9 of an ACK gains the trigger event.
    pub const V2_3: Version = Version::new(2, 3, 0);
    /// 2.4: MSH-9 of an ACK gains the message structure.
    pub const V2_4: Version = Version::new(2, 4, 0);
    /// 2.5: ERR-2/ERR-3/ERR-4 replace ERR-1.
    pub const V2_5: Version = Version::new(2, 5, 0);
    /// 2.5.1, the most widely deployed version.
    pub const V2_5_1: Version = Version::new(2, 5, 1);

    /// `major.minor.patch`.
    pub const fn new(major: u8, minor: u8, patch: u8) -> Version {
        Version { major, minor, patch }
    }

    /// Parses `M.m` or `M.m.p` (digits only); `None` for anything else.
    pub fn parse(s: &str) -> Option<Version> {
        let mut parts = s.split('.');
        let num = |p: Option<&str>| -> Option<u8> {
            let p = p?;
            if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            p.parse().ok()
        };
        let major = num(parts.next())?;
        let minor = num(parts.next())?;
        let patch = match parts.next() {
            None => 0,
            p => num(p)?,
        };
        if parts.next().is_some() {
            return None;
        }
        Some(Version::new(major, minor, patch))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.patch == 0 {
            write!(f, "{}.{}", self.major, self.minor)
        } else {
            write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
        }
    }
}

/// A condition from HL7 table 0155 (MSH-15 accept and MSH-16 application
/// acknowledgement types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AckCondition {
    /// `AL`: always.
    Always,
    /// `NE`: never.
    Never,
    /// `ER`: on error or reject only.
    OnError,
    /// `SU`: on successful completion only.
    OnSuccess,
    /// Field empty.
    Unspecified,
    /// A value not in table 0155.
    Unknown,
}

impl AckCondition {
    /// Reads a table 0155 code.
    pub fn from_code(code: &str) -> AckCondition {
        match code {
            "" => AckCondition::Unspecified,
            "AL" => AckCondition::Always,
            "NE" => AckCondition::Never,
            "ER" => AckCondition::OnError,
            "SU" => AckCondition::OnSuccess,
            _ => AckCondition::Unknown,
        }
    }

    /// Whether an acknowledgement is due for an outcome. An empty or unknown
    /// condition counts as `AL`: sending an acknowledgement nobody asked for
    /// is cheaper than withholding one the sender waits for.
    pub fn requires_ack(self, success: bool) -> bool {
        match self {
            AckCondition::Never => false,
            AckCondition::OnError => !success,
            AckCondition::OnSuccess => success,
            AckCondition::Always | AckCondition::Unspecified | AckCondition::Unknown => true,
        }
    }
}

/// Which acknowledgement protocol the sender asked for.
///
/// Enhanced mode is selected when MSH-15 or MSH-16 is valued; the receiver
/// then sends a commit acknowledgement (CA/CE/CR) once the message is safely
/// stored, and an application acknowledgement (AA/AE/AR) later, each subject
/// to its condition. Otherwise original mode applies: one application
/// acknowledgement (AA/AE/AR) per message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum AckMode {
    /// Neither MSH-15 nor MSH-16 valued: one AA/AE/AR per message.
    Original,
    /// MSH-15 or MSH-16 valued: commit and application acknowledgements.
    Enhanced {
        /// MSH-15.
        accept: AckCondition,
        /// MSH-16.
        application: AckCondition,
    },
}

impl AckMode {
    /// Whether this is enhanced mode.
    pub fn is_enhanced(&self) -> bool {
        matches!(self, AckMode::Enhanced { .. })
    }
}

/// A parsed reference to a location, e.g. `PID-3`, `PID-3(2).1`, `OBX(2)-5.1`
/// or `PID-3.1.2`.
///
/// Grammar: `SEG[(occ)]-FIELD[(rep)][.COMPONENT[.SUBCOMPONENT]]`, where
/// `[n]` may be written instead of `(n)` and `.` instead of `-` after the
/// segment id. All numbers are 1-based. Without a repetition, a path that
/// names only a field means the whole field (all repetitions); a path that
/// names a component means that component of the first repetition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Path {
    /// Segment id.
    pub segment: [u8; 3],
    /// Which segment with that id, 1-based (default 1).
    pub occurrence: usize,
    /// Field number, 1-based.
    pub field: usize,
    /// Repetition, 1-based; `None` for the whole field.
    pub repetition: Option<usize>,
    /// Component, 1-based.
    pub component: Option<usize>,
    /// Subcomponent, 1-based.
    pub subcomponent: Option<usize>,
}

/// A path string that does not follow the [`Path`] grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid HL7 path: {reason}")]
pub struct PathError {
    /// What is wrong with the path.
    pub reason: &'static str,
}

impl Path {
    /// Parses a path such as `PID-3.1.2`.
    pub fn parse(s: &str) -> Result<Path, PathError> {
        let err = |reason| Err(PathError { reason });
        let b = s.as_bytes();
        let Some(segment) = b.get(..3).and_then(|x| <[u8; 3]>::try_from(x).ok()) else {
            return err("expected a three-character segment id");
        };
        if !segment.iter().all(|x| x.is_ascii_alphanumeric()) {
            return err("segment id must be letters and digits");
        }
        let mut p = Cursor { b, i: 3 };
        let occurrence = p.index()?.unwrap_or(1);
        if !p.eat(b'-') && !p.eat(b'.') {
            return err("expected '-' after the segment id");
        }
        let field = p.number()?;
        let repetition = p.index()?;
        let component = if p.eat(b'.') { Some(p.number()?) } else { None };
        let subcomponent = if component.is_some() && p.eat(b'.') { Some(p.number()?) } else { None };
        if p.i != b.len() {
            return err("unexpected characters after the path");
        }
        Ok(Path { segment, occurrence, field, repetition, component, subcomponent })
    }
}

/// A tiny cursor for [`Path::parse`].
struct Cursor<'s> {
    b: &'s [u8],
    i: usize,
}

impl Cursor<'_> {
    fn eat(&mut self, c: u8) -> bool {
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    /// A positive decimal number of at most 6 digits.
    fn number(&mut self) -> Result<usize, PathError> {
        let start = self.i;
        while self.b.get(self.i).is_some_and(u8::is_ascii_digit) && self.i - start < 6 {
            self.i += 1;
        }
        let digits = self.b.get(start..self.i).unwrap_or_default();
        let n = digits.iter().fold(0usize, |acc, d| acc * 10 + usize::from(d - b'0'));
        if digits.is_empty() || n == 0 {
            return Err(PathError { reason: "expected a positive number" });
        }
        Ok(n)
    }

    /// An optional `(n)` or `[n]`.
    fn index(&mut self) -> Result<Option<usize>, PathError> {
        let close = if self.eat(b'(') {
            b')'
        } else if self.eat(b'[') {
            b']'
        } else {
            return Ok(None);
        };
        let n = self.number()?;
        if !self.eat(close) {
            return Err(PathError { reason: "unclosed index" });
        }
        Ok(Some(n))
    }
}

/// One HL7 v2 message, borrowing the bytes it was parsed from.
#[derive(Clone)]
pub struct Message<'a> {
    raw: &'a [u8],
    delims: Delimiters,
    /// Byte ranges of the segments within `raw`, terminators excluded.
    segments: Vec<Range<usize>>,
}

impl fmt::Debug for Message<'_> {
    /// Prints the structure only (segment ids, delimiters): the content may be PHI.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<SegmentId> = self.segments().map(|s| s.segment_id()).collect();
        f.debug_struct("Message")
            .field("len", &self.raw.len())
            .field("delimiters", &self.delims)
            .field("segments", &ids)
            .finish()
    }
}

impl<'a> Message<'a> {
    /// Parses one message with the default [`Limits`].
    pub fn parse(input: &'a [u8]) -> Result<Message<'a>, ParseError> {
        Message::parse_with(input, &Limits::DEFAULT)
    }

    /// Parses one message. The input must hold exactly one message: MSH
    /// first, and no further MSH or batch envelope segments (use [`split`]
    /// for streams). A leading byte-order mark and blank lines are skipped.
    pub fn parse_with(input: &'a [u8], limits: &Limits) -> Result<Message<'a>, ParseError> {
        let raw = strip_bom(input);
        let mut lines = Lines::new(raw);
        let Some(first) = lines.next() else {
            return Err(ParseError::Empty);
        };
        let msh = raw.get(first.clone()).unwrap_or_default();
        if !msh.starts_with(b"MSH") {
            return Err(ParseError::NotMessageHeader);
        }
        let (delims, _) = Delimiters::from_header(msh)?;
        let mut builder = MessageBuilder::new(first, delims, limits)?;
        for line in lines {
            let seg = raw.get(line.clone()).unwrap_or_default();
            if let Some(id) = envelope_id(seg, delims.field) {
                return Err(ParseError::UnexpectedHeader { id, segment: builder.segments.len() + 1 });
            }
            builder.push(line)?;
        }
        Ok(builder.finish(raw))
    }

    /// The message bytes, from `MSH` to the end of the last segment.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// The delimiters from MSH-1 and MSH-2.
    pub fn delimiters(&self) -> &Delimiters {
        &self.delims
    }

    /// MSH-2 exactly as received (always ASCII punctuation).
    pub fn encoding_characters(&self) -> String {
        self.delims.encoding_characters()
    }

    /// The number of segments.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// All segments in order.
    pub fn segments(&self) -> impl ExactSizeIterator<Item = Segment<'a>> + '_ {
        self.segments.iter().enumerate().map(|(i, r)| Segment {
            raw: self.raw.get(r.clone()).unwrap_or_default(),
            delims: self.delims,
            position: i + 1,
        })
    }

    /// The segments with id `id`, in order.
    pub fn segments_with_id<'s>(&'s self, id: &'s str) -> impl Iterator<Item = Segment<'a>> + 's {
        self.segments().filter(move |s| s.is(id))
    }

    /// The first segment with id `id`.
    pub fn segment(&self, id: &str) -> Option<Segment<'a>> {
        self.segments_with_id(id).next()
    }

    /// The `occurrence`-th (1-based) segment with id `id`.
    pub fn segment_n(&self, id: &str, occurrence: usize) -> Option<Segment<'a>> {
        self.segments_with_id(id).nth(occurrence.checked_sub(1)?)
    }

    /// How many segments have id `id`.
    pub fn count(&self, id: &str) -> usize {
        self.segments_with_id(id).count()
    }

    /// The MSH segment.
    pub fn msh(&self) -> Segment<'a> {
        Segment {
            raw: self.segments.first().and_then(|r| self.raw.get(r.clone())).unwrap_or_default(),
            delims: self.delims,
            position: 1,
        }
    }

    /// The value at a [`Path`] string such as `PID-3.1.2`; `None` when the
    /// path is invalid or the location is not present.
    pub fn get(&self, path: &str) -> Option<Value<'a>> {
        self.get_path(&Path::parse(path).ok()?)
    }

    /// The value at a parsed [`Path`].
    pub fn get_path(&self, path: &Path) -> Option<Value<'a>> {
        let id = std::str::from_utf8(&path.segment).ok()?;
        let field = self.segment_n(id, path.occurrence)?.field(path.field)?;
        if path.repetition.is_none() && path.component.is_none() {
            return Some(field.value());
        }
        let rep = field.repetition(path.repetition.unwrap_or(1))?;
        let Some(c) = path.component else {
            return Some(rep.value());
        };
        let comp = rep.component(c)?;
        match path.subcomponent {
            None => Some(comp.value()),
            Some(s) => comp.subcomponent(s),
        }
    }

    /// A field of MSH as text, `None` when empty.
    fn msh_text(&self, field: usize) -> Option<Cow<'a, str>> {
        let f = self.msh().field(field)?;
        f.is_valued().then(|| f.as_str())
    }

    /// A component of an MSH field as text, `None` when empty.
    fn msh_component(&self, field: usize, component: usize) -> Option<Cow<'a, str>> {
        let c = self.msh().field(field)?.component(component)?;
        c.is_valued().then(|| c.as_str())
    }

    /// A coded MSH component with surrounding whitespace trimmed (senders
    /// pad fields with spaces), `None` when empty.
    fn msh_code(&self, field: usize) -> Option<Cow<'a, str>> {
        let c = self.msh_component(field, 1)?;
        let t = c.trim();
        if t.is_empty() {
            None
        } else if t.len() == c.len() {
            Some(c)
        } else {
            Some(Cow::Owned(t.to_string()))
        }
    }

    /// MSH-3, sending application (raw, all components).
    pub fn sending_application(&self) -> Option<Cow<'a, str>> {
        self.msh_text(3)
    }

    /// MSH-4, sending facility (raw, all components).
    pub fn sending_facility(&self) -> Option<Cow<'a, str>> {
        self.msh_text(4)
    }

    /// MSH-5, receiving application (raw, all components).
    pub fn receiving_application(&self) -> Option<Cow<'a, str>> {
        self.msh_text(5)
    }

    /// MSH-6, receiving facility (raw, all components).
    pub fn receiving_facility(&self) -> Option<Cow<'a, str>> {
        self.msh_text(6)
    }

    /// MSH-7, date/time of message (raw).
    pub fn timestamp(&self) -> Option<Cow<'a, str>> {
        self.msh_component(7, 1)
    }

    /// MSH-9: message code, trigger event, structure (raw text; codes never
    /// contain escape sequences in practice).
    pub fn message_type(&self) -> MessageType<'a> {
        let part = |n| self.msh().field(9).and_then(|f| f.component(n)).map(|c| c.as_str()).unwrap_or_default();
        MessageType { code: part(1), trigger: part(2), structure: part(3) }
    }

    /// The message family from MSH-9.1.
    pub fn kind(&self) -> MessageKind {
        MessageKind::from_code(&self.message_type().code)
    }

    /// MSH-10, message control id (raw).
    pub fn control_id(&self) -> Option<Cow<'a, str>> {
        self.msh_text(10)
    }

    /// MSH-11.1, processing id (`P`, `T`, `D`), whitespace trimmed.
    pub fn processing_id(&self) -> Option<Cow<'a, str>> {
        self.msh_code(11)
    }

    /// MSH-12.1, version id, e.g. `2.5.1`, whitespace trimmed.
    pub fn version(&self) -> Option<Cow<'a, str>> {
        self.msh_code(12)
    }

    /// MSH-12.1 parsed, `None` when absent or malformed.
    pub fn parsed_version(&self) -> Option<Version> {
        Version::parse(&self.version()?)
    }

    /// MSH-15, accept acknowledgement type (table 0155), whitespace trimmed.
    pub fn accept_ack_type(&self) -> Option<Cow<'a, str>> {
        self.msh_code(15)
    }

    /// MSH-16, application acknowledgement type (table 0155), whitespace trimmed.
    pub fn application_ack_type(&self) -> Option<Cow<'a, str>> {
        self.msh_code(16)
    }

    /// Original or enhanced acknowledgement mode: enhanced when MSH-15 or
    /// MSH-16 is valued (whitespace alone does not count).
    pub fn ack_mode(&self) -> AckMode {
        let accept = self.accept_ack_type();
        let application = self.application_ack_type();
        if accept.is_none() && application.is_none() {
            return AckMode::Original;
        }
        AckMode::Enhanced {
            accept: AckCondition::from_code(accept.as_deref().unwrap_or("")),
            application: AckCondition::from_code(application.as_deref().unwrap_or("")),
        }
    }
}

/// When `seg` is a header or envelope segment (MSH, FHS, BHS, BTS, FTS),
/// its id.
pub(crate) fn envelope_id(seg: &[u8], field: u8) -> Option<SegmentId> {
    let id = seg.get(..3)?;
    let hit = match id {
        // Their fourth byte defines the field separator, whatever it is.
        b"MSH" | b"FHS" | b"BHS" => true,
        b"BTS" | b"FTS" => seg.get(3).is_none_or(|b| *b == field),
        _ => false,
    };
    hit.then(|| SegmentId::from_bytes(id))
}

/// Accumulates the segments of one message, enforcing [`Limits`].
pub(crate) struct MessageBuilder {
    start: usize,
    end: usize,
    delims: Delimiters,
    segments: Vec<Range<usize>>,
    limits: Limits,
}

impl MessageBuilder {
    /// Starts a message at its MSH line (`msh` is a range in the enclosing buffer).
    pub(crate) fn new(msh: Range<usize>, delims: Delimiters, limits: &Limits) -> Result<Self, ParseError> {
        let mut b = MessageBuilder {
            start: msh.start,
            end: msh.start,
            delims,
            segments: Vec::with_capacity(16),
            limits: *limits,
        };
        b.push(msh)?;
        Ok(b)
    }

    /// Adds a segment (a range in the enclosing buffer).
    pub(crate) fn push(&mut self, line: Range<usize>) -> Result<(), ParseError> {
        if self.segments.len() >= self.limits.max_segments {
            return Err(ParseError::TooManySegments { limit: self.limits.max_segments });
        }
        if line.end.saturating_sub(self.start) > self.limits.max_message_bytes {
            return Err(ParseError::TooLarge { limit: self.limits.max_message_bytes });
        }
        self.end = line.end;
        self.segments.push(line.start - self.start..line.end - self.start);
        Ok(())
    }

    /// The delimiters of the message.
    pub(crate) fn delimiters(&self) -> &Delimiters {
        &self.delims
    }

    /// The message, borrowing `buf` (the buffer the ranges refer to).
    pub(crate) fn finish(self, buf: &[u8]) -> Message<'_> {
        Message { raw: buf.get(self.start..self.end).unwrap_or_default(), delims: self.delims, segments: self.segments }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADT: &[u8] = b"MSH|^~\\&|SEND|FAC|RECV|RFAC|20240101120000||ADT^A01^ADT_A01|CTRL1|P|2.5.1\rEVN|A01|20240101120000\rPID|1||ID1^^^AUTH^MR~ID2^^^SSA^SS||DOE^JANE\rPV1|1|I\r";

    fn parse(b: &[u8]) -> Message<'_> {
        match Message::parse(b) {
            Ok(m) => m,
            Err(e) => panic!("parse failed: {e}"),
        }
    }

    fn text(v: Option<Value<'_>>) -> Option<String> {
        v.map(|v| v.decode().into_owned())
    }

    #[test]
    fn reads_msh_fields_with_standard_numbering() {
        let m = parse(ADT);
        assert_eq!(text(m.get("MSH-1")).as_deref(), Some("|"));
        assert_eq!(text(m.get("MSH-2")).as_deref(), Some("^~\\&"));
        assert_eq!(text(m.get("MSH-3")).as_deref(), Some("SEND"));
        assert_eq!(text(m.get("MSH-9")).as_deref(), Some("ADT^A01^ADT_A01"));
        assert_eq!(text(m.get("MSH-9.2")).as_deref(), Some("A01"));
        let t = m.message_type();
        assert_eq!((&*t.code, &*t.trigger, &*t.structure), ("ADT", "A01", "ADT_A01"));
        assert_eq!(m.control_id().as_deref(), Some("CTRL1"));
        assert_eq!(m.processing_id().as_deref(), Some("P"));
        assert_eq!(m.version().as_deref(), Some("2.5.1"));
        assert_eq!(m.parsed_version(), Some(Version::V2_5_1));
        assert_eq!(m.kind(), MessageKind::Adt);
        assert_eq!(m.ack_mode(), AckMode::Original);
        assert_eq!(m.sending_facility().as_deref(), Some("FAC"));
        assert_eq!(m.receiving_application().as_deref(), Some("RECV"));
        assert_eq!(m.segment_count(), 4);
        assert_eq!(m.msh().field_count(), 12);
    }

    #[test]
    fn addresses_repetitions_components_subcomponents() {
        let m = parse(ADT);
        assert_eq!(text(m.get("PID-3")).as_deref(), Some("ID1^^^AUTH^MR~ID2^^^SSA^SS"));
        assert_eq!(text(m.get("PID-3.1")).as_deref(), Some("ID1"));
        assert_eq!(text(m.get("PID-3(2).1")).as_deref(), Some("ID2"));
        assert_eq!(text(m.get("PID-3[2].5")).as_deref(), Some("SS"));
        assert_eq!(text(m.get("PID.3.4")).as_deref(), Some("AUTH"));
        assert_eq!(text(m.get("PID-3(3)")), None);
        assert_eq!(text(m.get("PID-3.9")), None);
        assert_eq!(text(m.get("PID-99")), None);
        assert_eq!(text(m.get("ZZZ-1")), None);
        let pid3 = m.segment("PID").and_then(|s| s.field(3));
        assert_eq!(pid3.map(|f| f.repetition_count()), Some(2));
        assert!(m.get("PID-2").is_some_and(|v| v.is_empty()));
        assert_eq!(text(m.get("PV1(1)-2")).as_deref(), Some("I"));
        assert_eq!(text(m.get("PV1(2)-2")), None);
    }

    #[test]
    fn subcomponent_addressing_matches_python_hl7() {
        let m = parse(
            b"MSH|^~\\&|GHH LAB|ELAB-3|GHH OE|BLDG4|200202150930||ORU^R01|CNTRL-3456|P|2.4\rPID|Field1|Component1^Component2|Component1^Sub-Component1&Sub-Component2^Component3|Repeat1~Repeat2\r",
        );
        assert_eq!(text(m.get("PID-3.2.2")).as_deref(), Some("Sub-Component2"));
        assert_eq!(text(m.get("PID-3(1).2.1")).as_deref(), Some("Sub-Component1"));
        assert_eq!(text(m.get("PID-3.3.1")).as_deref(), Some("Component3"));
        assert_eq!(text(m.get("PID-3.2.3")), None);
        let pid4 = m.segment("PID").and_then(|s| s.field(4));
        let reps: Vec<String> =
            pid4.map(|f| f.repetitions().map(|r| r.decode().into_owned()).collect()).unwrap_or_default();
        assert_eq!(reps, ["Repeat1", "Repeat2"]);
    }

    #[test]
    fn accepts_cr_lf_and_crlf_terminators() {
        for sep in ["\r", "\n", "\r\n"] {
            let s = format!("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|X|P|2.5{sep}EVN|A01{sep}PID|1||123{sep}{sep}");
            let m = parse(s.as_bytes());
            assert_eq!(m.segment_count(), 3, "terminator {sep:?}");
            assert_eq!(text(m.get("PID-3")).as_deref(), Some("123"));
        }
    }

    #[test]
    fn tolerates_bom_trailing_blank_lines_and_no_final_terminator() {
        let m = parse(b"\xEF\xBB\xBFMSH|^~\\&|A|B|C|D|1||ADT^A01|X|P|2.3\rPID|1||7|\r\n\r\n  \r\n");
        assert_eq!(m.segment_count(), 2);
        assert_eq!(text(m.get("PID-3")).as_deref(), Some("7"));
        assert!(m.get("PID-4").is_some_and(|v| v.is_empty()));
        let m = parse(b"MSH|^~\\&|A|B|C|D|1||ADT^A01|X|P|2.3\rPID|1||7");
        assert_eq!(text(m.get("PID-3")).as_deref(), Some("7"));
    }

    #[test]
    fn reads_custom_and_short_encoding_characters() {
        let m = parse(b"MSH#*@$%#A#B\rPID#1##x*y%z@u*v\r");
        let d = m.delimiters();
        assert_eq!(
            (d.field, d.component, d.repetition, d.escape, d.subcomponent),
            (b'#', b'*', b'@', Some(b'$'), Some(b'%'))
        );
        assert_eq!(text(m.get("PID-3.2.2")).as_deref(), Some("z"));
        assert_eq!(text(m.get("PID-3(2).2")).as_deref(), Some("v"));
        assert_eq!(text(m.get("MSH-3")).as_deref(), Some("A"));

        // Three characters: no escape character, '}' is the subcomponent separator.
        let m = parse(b"MSH|^~}|A|B\rPID|1||a^b}c\\T\\\r");
        assert_eq!(m.delimiters().escape, None);
        assert_eq!(m.delimiters().subcomponent, Some(b'}'));
        assert_eq!(m.encoding_characters(), "^~}");
        assert_eq!(text(m.get("PID-3.2.2")).as_deref(), Some("c\\T\\"));

        // Four characters with '}' as subcomponent separator.
        let m = parse(b"MSH|^~\\}|A|B\rPID|1||a^b}c&d\r");
        assert_eq!(text(m.get("PID-3.2.2")).as_deref(), Some("c&d"));
        assert_eq!(m.encoding_characters(), "^~\\}");

        // Three characters ending in a backslash: escape, no subcomponents.
        let m = parse(b"MSH|^~\\|A\rPID|1||a&b\\T\\\r");
        assert_eq!(m.delimiters().subcomponent, None);
        assert_eq!(text(m.get("PID-3.1.1")).as_deref(), Some("a&b\\T\\"));
        assert_eq!(text(m.get("PID-3.1.2")), None);

        // Five characters: v2.7 truncation character.
        let m = parse(b"MSH|^~\\&#|A\r");
        assert_eq!(m.delimiters().truncation, Some(b'#'));
    }

    #[test]
    fn rejects_unusable_headers() {
        assert_eq!(Message::parse(b"").err(), Some(ParseError::Empty));
        assert_eq!(Message::parse(b"\r\n \n").err(), Some(ParseError::Empty));
        assert_eq!(Message::parse(b"PID|1\r").err(), Some(ParseError::NotMessageHeader));
        assert!(matches!(Message::parse(b"MSH"), Err(ParseError::HeaderTooShort { .. })));
        for bad in [
            &b"MSH|^~|A"[..],
            b"MSH|^^\\&|A",
            b"MSH|^~\\~|",
            b"MSH|A~\\&|",
            b"MSH|^~\\&#!|",
            b"MSH|^|\\&|",
            b"MSHA^~\\&A",
        ] {
            assert!(
                matches!(Message::parse(bad), Err(ParseError::BadDelimiters { .. })),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let e = Message::parse(b"MSH|^~\\&|A\rPID|1\rMSH|^~\\&|B\r").err();
        assert_eq!(e, Some(ParseError::UnexpectedHeader { id: SegmentId::from_bytes(b"MSH"), segment: 3 }));
    }

    #[test]
    fn enforces_limits() {
        let limits = Limits { max_message_bytes: 40, max_segments: 3, max_messages: 10 };
        let ok = b"MSH|^~\\&|A\rPID|1\rPV1|1\r";
        assert!(Message::parse_with(ok, &limits).is_ok());
        assert_eq!(
            Message::parse_with(b"MSH|^~\\&|A\rPID|1\rPV1|1\rOBX|1\r", &limits).err(),
            Some(ParseError::TooManySegments { limit: 3 })
        );
        assert_eq!(
            Message::parse_with(b"MSH|^~\\&|A\rPID|1234567890123456789012345678901234567890\r", &limits).err(),
            Some(ParseError::TooLarge { limit: 40 })
        );
    }

    #[test]
    fn ack_mode_is_enhanced_when_msh15_or_msh16_valued() {
        let m = parse(b"MSH|^~\\&|A|B|C|D|1||ADT^A01|X|P|2.5|||AL|NE\r");
        assert_eq!(m.ack_mode(), AckMode::Enhanced { accept: AckCondition::Always, application: AckCondition::Never });
        let m = parse(b"MSH|^~\\&|A|B|C|D|1||ADT^A01|X|P|2.5||||ER\r");
        assert!(m.ack_mode().is_enhanced());
        // Padding is not a value (seen in the wild: `|2.3||| `).
        let m = parse(b"MSH|^~\\&|A|B|C|D|1||ADT^A01|X| P |2.3 ||| \r");
        assert_eq!(m.ack_mode(), AckMode::Original);
        assert_eq!(m.processing_id().as_deref(), Some("P"));
        assert_eq!(m.parsed_version(), Some(Version::V2_3));
        assert!(AckCondition::OnError.requires_ack(false));
        assert!(!AckCondition::OnError.requires_ack(true));
    }

    #[test]
    fn fields_iterator_matches_field_lookup() {
        for raw in [ADT, b"MSH|^~\\&\r", b"MSH|^~\\&|\rZZZ\rZZ1|\rZZ2||a|\r"] {
            let m = parse(raw);
            for seg in m.segments() {
                let walked: Vec<(&[u8], String)> = seg.fields().map(|f| (f.raw(), f.decode().into_owned())).collect();
                let looked_up: Vec<(&[u8], String)> = (1..=seg.field_count())
                    .filter_map(|n| seg.field(n))
                    .map(|f| (f.raw(), f.decode().into_owned()))
                    .collect();
                assert_eq!(walked, looked_up);
                assert_eq!(walked.len(), seg.field_count());
            }
        }
        let m = parse(ADT);
        let msh: Vec<_> = m.msh().fields().take(3).map(|f| f.repetition_count()).collect();
        assert_eq!(msh, [1, 1, 1]);
    }

    #[test]
    fn path_grammar() {
        assert_eq!(
            Path::parse("OBX(2)-5(3).1.2"),
            Ok(Path {
                segment: *b"OBX",
                occurrence: 2,
                field: 5,
                repetition: Some(3),
                component: Some(1),
                subcomponent: Some(2)
            })
        );
        for bad in [
            "",
            "PI",
            "PID",
            "PID-",
            "PID-0",
            "PID-3.",
            "PID-3(2",
            "PID-3x",
            "P D-1",
            "PID-3.1.2.3",
            "PÍD-1",
            "PID-9999999",
        ] {
            assert!(Path::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn versions_parse_and_order() {
        assert_eq!(Version::parse("2.3.1"), Some(Version::new(2, 3, 1)));
        assert!(Version::parse("2.4") > Version::parse("2.3.1"));
        assert_eq!(Version::parse("2"), None);
        assert_eq!(Version::parse("2.x"), None);
        assert_eq!(Version::parse("2.5.1.1"), None);
        assert_eq!(Version::V2_5_1.to_string(), "2.5.1");
    }

    #[test]
    fn debug_output_never_shows_values() {
        let m = parse(ADT);
        let shown = format!(
            "{m:?} {:?} {:?} {:?}",
            m.segment("PID"),
            m.get("PID-5"),
            m.segment("PID").and_then(|s| s.field(5))
        );
        assert!(!shown.contains("DOE"), "{shown}");
        assert!(shown.contains("PID"), "{shown}");
    }

    #[test]
    fn segment_id_hides_garbage() {
        assert_eq!(SegmentId::from_bytes(b"PID").as_str(), "PID");
        assert_eq!(SegmentId::from_bytes(b"ZP1").as_str(), "ZP1");
        assert_eq!(SegmentId::from_bytes(b"DOE^JANE").as_str(), "???");
        assert_eq!(SegmentId::from_bytes(b"pid").as_str(), "???");
        assert_eq!(SegmentId::of(b"SECRET NAME", b'|').as_str(), "???");
    }
}
