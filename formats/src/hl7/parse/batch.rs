//! Splitting a stream into messages: FHS/BHS/BTS/FTS envelopes and bare
//! sequences of MSH.
//!
//! A file upload or a batch over MLLP may hold a file (FHS ... FTS) of
//! batches (BHS ... BTS) of messages, a single batch, or simply several
//! messages one after the other. [`split`] accepts all three in one pass,
//! returning every message as a borrowed [`Message`] grouped by batch, with
//! the envelope segments available for their header fields (BHS-4, ...)
//! and trailer counts (BTS-1, FTS-1).
//!
//! Structural errors that make the grouping ambiguous are errors, with the
//! position of the offending segment: a segment before any MSH, a BHS inside
//! an open batch, a second FHS, a trailer without its header, anything after
//! FTS. Missing trailers are tolerated by `split` (the grouping is still
//! unambiguous); [`Batch::verify`] reports them together with count
//! mismatches, for callers that want to reject truncated batches.

use super::{
    Delimiters, Limits, Lines, Message, MessageBuilder, ParseError, Position, Segment, SegmentId, envelope_id,
    strip_bom,
};
use std::fmt;

/// Why a stream could not be split. Never carries field values.
// Variant fields are named for what they hold.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// A non-envelope segment with no MSH before it.
    #[error("segment received before message header ({id} at {at})")]
    SegmentBeforeHeader { id: SegmentId, at: Position },
    /// A BHS while a batch is still open.
    #[error("batch cannot have more than one BHS segment (second BHS at {at})")]
    NestedBatchHeader { at: Position },
    /// A second FHS.
    #[error("file cannot have more than one FHS segment (second FHS at {at})")]
    MultipleFileHeaders { at: Position },
    /// An FHS that is not the first segment.
    #[error("FHS must be the first segment of a file (found at {at})")]
    FileHeaderNotFirst { at: Position },
    /// BTS without an open BHS, or FTS without FHS.
    #[error("{id} trailer without a matching header ({at})")]
    TrailerWithoutHeader { id: SegmentId, at: Position },
    /// A segment after the FTS.
    #[error("segment after the FTS file trailer ({at})")]
    SegmentAfterFileTrailer { at: Position },
    /// An FHS or BHS whose delimiters cannot be read.
    #[error("{id} envelope header at {at} is invalid")]
    Header {
        id: SegmentId,
        at: Position,
        #[source]
        source: ParseError,
    },
    /// A message that cannot be parsed (bad MSH, limits exceeded).
    #[error("message {index} starting at {at} is invalid")]
    Message {
        /// 1-based index of the message in the stream.
        index: usize,
        at: Position,
        #[source]
        source: ParseError,
    },
    /// More messages than [`Limits::max_messages`].
    #[error("stream exceeds the limit of {limit} messages")]
    TooManyMessages { limit: usize },
    /// From [`Batch::verify`]: FHS without FTS.
    #[error("file header without FTS trailer")]
    MissingFileTrailer,
    /// From [`Batch::verify`]: BHS without BTS.
    #[error("batch {batch} has no BTS trailer")]
    MissingBatchTrailer { batch: usize },
    /// From [`Batch::verify`]: BTS-1 or FTS-1 is not a number.
    #[error("{id}-1 count of batch {batch} is not a number")]
    BadCount { id: SegmentId, batch: usize },
    /// From [`Batch::verify`]: BTS-1 differs from the messages found.
    #[error("batch {batch}: BTS-1 declares {declared} messages, found {actual}")]
    MessageCountMismatch { batch: usize, declared: u64, actual: usize },
    /// From [`Batch::verify`]: FTS-1 differs from the batches found.
    #[error("FTS-1 declares {declared} batches, found {actual}")]
    BatchCountMismatch { declared: u64, actual: usize },
}

impl BatchError {
    /// The HL7 table 0357 code for an acknowledgement of this error.
    pub fn hl7_error_code(&self) -> u16 {
        match self {
            BatchError::Message { source, .. } | BatchError::Header { source, .. } => source.hl7_error_code(),
            BatchError::TooManyMessages { .. } => 207,
            _ => 100,
        }
    }
}

/// One batch (BHS ... BTS), or a run of messages outside any batch envelope
/// (then `header` and `trailer` are `None`).
#[derive(Debug, Clone, Default)]
pub struct BatchGroup<'a> {
    /// The BHS segment.
    pub header: Option<Segment<'a>>,
    /// The BTS segment.
    pub trailer: Option<Segment<'a>>,
    /// The messages, in stream order.
    pub messages: Vec<Message<'a>>,
}

impl BatchGroup<'_> {
    /// BTS-1, the batch message count, when present and numeric.
    pub fn declared_message_count(&self) -> Option<u64> {
        parse_count(self.trailer.as_ref()).ok().flatten()
    }
}

/// A split stream: the optional file envelope and its batches.
#[derive(Debug, Clone, Default)]
pub struct Batch<'a> {
    /// The FHS segment.
    pub file_header: Option<Segment<'a>>,
    /// The FTS segment.
    pub file_trailer: Option<Segment<'a>>,
    /// Batches and runs of unenveloped messages, in stream order.
    pub groups: Vec<BatchGroup<'a>>,
}

impl<'a> Batch<'a> {
    /// Every message, in stream order.
    pub fn messages(&self) -> impl Iterator<Item = &Message<'a>> {
        self.groups.iter().flat_map(|g| g.messages.iter())
    }

    /// The number of messages.
    pub fn message_count(&self) -> usize {
        self.groups.iter().map(|g| g.messages.len()).sum()
    }

    /// Every message, in stream order, by value.
    pub fn into_messages(self) -> Vec<Message<'a>> {
        self.groups.into_iter().flat_map(|g| g.messages).collect()
    }

    /// The batches that have a BHS.
    pub fn batches(&self) -> impl Iterator<Item = &BatchGroup<'a>> {
        self.groups.iter().filter(|g| g.header.is_some())
    }

    /// FTS-1, the file batch count, when present and numeric.
    pub fn declared_batch_count(&self) -> Option<u64> {
        parse_count(self.file_trailer.as_ref()).ok().flatten()
    }

    /// Checks the envelope's integrity: every BHS has a BTS and FHS an FTS,
    /// and BTS-1 / FTS-1, when valued, match what was found.
    pub fn verify(&self) -> Result<(), BatchError> {
        if self.file_header.is_some() && self.file_trailer.is_none() {
            return Err(BatchError::MissingFileTrailer);
        }
        for (i, g) in self.groups.iter().enumerate() {
            let batch = i + 1;
            if g.header.is_none() {
                continue;
            }
            if g.trailer.is_none() {
                return Err(BatchError::MissingBatchTrailer { batch });
            }
            let declared = parse_count(g.trailer.as_ref())
                .map_err(|()| BatchError::BadCount { id: SegmentId::from_bytes(b"BTS"), batch })?;
            if let Some(declared) = declared
                && usize::try_from(declared).ok() != Some(g.messages.len())
            {
                return Err(BatchError::MessageCountMismatch { batch, declared, actual: g.messages.len() });
            }
        }
        let declared = parse_count(self.file_trailer.as_ref())
            .map_err(|()| BatchError::BadCount { id: SegmentId::from_bytes(b"FTS"), batch: 0 })?;
        let actual = self.batches().count();
        if let Some(declared) = declared
            && usize::try_from(declared).ok() != Some(actual)
        {
            return Err(BatchError::BatchCountMismatch { declared, actual });
        }
        Ok(())
    }
}

/// Field 1 of a trailer as a count: `Ok(None)` when absent or empty.
fn parse_count(trailer: Option<&Segment<'_>>) -> Result<Option<u64>, ()> {
    let Some(f) = trailer.and_then(|t| t.field(1)) else {
        return Ok(None);
    };
    let raw = f.raw().trim_ascii();
    if raw.is_empty() {
        return Ok(None);
    }
    if raw.len() > 19 || !raw.iter().all(u8::is_ascii_digit) {
        return Err(());
    }
    Ok(Some(raw.iter().fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'))))
}

/// A message being accumulated by [`split`].
struct Open {
    builder: MessageBuilder,
    index: usize,
    at: Position,
}

impl fmt::Debug for Open {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Open").field("index", &self.index).field("at", &self.at).finish_non_exhaustive()
    }
}

/// The state of [`split`].
struct Splitter<'a> {
    buf: &'a [u8],
    out: Batch<'a>,
    /// The batch between BHS and BTS, if any.
    open: Option<BatchGroup<'a>>,
    /// Messages outside any batch, not yet pushed.
    loose: Option<BatchGroup<'a>>,
    /// The message being accumulated.
    cur: Option<Open>,
}

impl<'a> Splitter<'a> {
    /// Closes the current message, if any, into the open batch or the loose run.
    fn finish_message(&mut self) {
        if let Some(open) = self.cur.take() {
            let msg = open.builder.finish(self.buf);
            match self.open.as_mut() {
                Some(g) => g.messages.push(msg),
                None => self.loose.get_or_insert_with(BatchGroup::default).messages.push(msg),
            }
        }
    }

    fn flush_loose(&mut self) {
        if let Some(l) = self.loose.take() {
            self.out.groups.push(l);
        }
    }
}

/// Splits a stream into messages with the given limits.
///
/// Accepts a file (FHS, batches, FTS), batches (BHS ... BTS) or bare
/// messages, in any mix that is unambiguous; a leading byte-order mark and
/// blank lines are skipped. Envelope segments keep the delimiters of their
/// own header; each message uses those of its MSH.
pub fn split<'a>(input: &'a [u8], limits: &Limits) -> Result<Batch<'a>, BatchError> {
    let buf = strip_bom(input);
    let mut s = Splitter { buf, out: Batch::default(), open: None, loose: None, cur: None };
    let mut envelope = Delimiters::default();
    let mut messages = 0usize;
    let mut ended = false;
    for (n, line) in Lines::new(buf).enumerate() {
        let at = Position { segment: n + 1, byte: line.start };
        if ended {
            return Err(BatchError::SegmentAfterFileTrailer { at });
        }
        let seg = buf.get(line.clone()).unwrap_or_default();
        let field = s.cur.as_ref().map_or(envelope.field, |o| o.builder.delimiters().field);
        let kind = envelope_id(seg, field).and_then(|_| seg.get(..3));
        match kind {
            Some(b"FHS") => {
                if s.out.file_header.is_some() {
                    return Err(BatchError::MultipleFileHeaders { at });
                }
                if n > 0 {
                    return Err(BatchError::FileHeaderNotFirst { at });
                }
                envelope = header_delimiters(seg, at)?;
                s.out.file_header = Some(Segment::new(seg, envelope, at.segment));
            }
            Some(b"BHS") => {
                s.finish_message();
                if s.open.is_some() {
                    return Err(BatchError::NestedBatchHeader { at });
                }
                envelope = header_delimiters(seg, at)?;
                s.flush_loose();
                s.open =
                    Some(BatchGroup { header: Some(Segment::new(seg, envelope, at.segment)), ..BatchGroup::default() });
            }
            Some(b"BTS") => {
                s.finish_message();
                let Some(mut g) = s.open.take() else {
                    return Err(BatchError::TrailerWithoutHeader { id: SegmentId::from_bytes(b"BTS"), at });
                };
                g.trailer = Some(Segment::new(seg, envelope, at.segment));
                s.out.groups.push(g);
            }
            Some(b"FTS") => {
                s.finish_message();
                if s.out.file_header.is_none() {
                    return Err(BatchError::TrailerWithoutHeader { id: SegmentId::from_bytes(b"FTS"), at });
                }
                if let Some(g) = s.open.take() {
                    s.out.groups.push(g);
                }
                s.flush_loose();
                s.out.file_trailer = Some(Segment::new(seg, envelope, at.segment));
                ended = true;
            }
            Some(_) => {
                // MSH
                s.finish_message();
                messages += 1;
                if messages > limits.max_messages {
                    return Err(BatchError::TooManyMessages { limit: limits.max_messages });
                }
                let err = |source| BatchError::Message { index: messages, at, source };
                let (delims, _) = Delimiters::from_header(seg).map_err(err)?;
                let builder = MessageBuilder::new(line, delims, limits).map_err(err)?;
                s.cur = Some(Open { builder, index: messages, at });
            }
            None => {
                let Some(open) = s.cur.as_mut() else {
                    return Err(BatchError::SegmentBeforeHeader { id: SegmentId::of(seg, field), at });
                };
                open.builder.push(line).map_err(|source| BatchError::Message {
                    index: open.index,
                    at: open.at,
                    source,
                })?;
            }
        }
    }
    s.finish_message();
    if let Some(g) = s.open.take() {
        s.out.groups.push(g);
    }
    s.flush_loose();
    Ok(s.out)
}

/// The delimiters of an FHS or BHS.
fn header_delimiters(seg: &[u8], at: Position) -> Result<Delimiters, BatchError> {
    Delimiters::from_header(seg).map(|(d, _)| d).map_err(|source| BatchError::Header {
        id: SegmentId::from_bytes(seg.get(..3).unwrap_or_default()),
        at,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG1: &str = "MSH|^~\\&|A|B|C|D|1||ADT^A04|M1|P|2.5\rEVN|A04\rPID|1||X\r";
    const MSG2: &str = "MSH|^~\\&|A|B|C|D|1||ADT^A04|M2|P|2.5\rEVN|A04\rPID|1||Y\r";

    fn ok(s: &str) -> Batch<'_> {
        match split(s.as_bytes(), &Limits::DEFAULT) {
            Ok(b) => b,
            Err(e) => panic!("split failed: {e}"),
        }
    }

    fn err(s: &str) -> BatchError {
        match split(s.as_bytes(), &Limits::DEFAULT) {
            Ok(b) => panic!("expected an error, got {} messages", b.message_count()),
            Err(e) => e,
        }
    }

    fn ids(b: &Batch<'_>) -> Vec<String> {
        b.messages().map(|m| m.control_id().unwrap_or_default().into_owned()).collect()
    }

    #[test]
    fn splits_bare_messages() {
        let s = format!("{MSG1}\n{MSG2}");
        let b = ok(&s);
        assert_eq!(ids(&b), ["M1", "M2"]);
        assert_eq!(b.groups.len(), 1);
        assert!(b.groups.iter().all(|g| g.header.is_none()));
        assert_eq!(b.verify(), Ok(()));
        assert_eq!(b.messages().map(|m| m.segment_count()).collect::<Vec<_>>(), [3, 3]);
    }

    #[test]
    fn splits_file_with_batches_and_counts() {
        let s = format!("FHS|^~\\&||ABC\rBHS|^~\\&||ABCHS\r{MSG1}{MSG2}BTS|2\rBHS|^~\\&||X\r{MSG1}BTS|1\rFTS|2\r");
        let b = ok(&s);
        assert_eq!(ids(&b), ["M1", "M2", "M1"]);
        assert_eq!(b.batches().count(), 2);
        assert_eq!(b.file_header.and_then(|h| h.field(4)).map(|f| f.as_str().into_owned()).as_deref(), Some("ABC"));
        let counts: Vec<_> = b.batches().map(|g| g.declared_message_count()).collect();
        assert_eq!(counts, [Some(2), Some(1)]);
        assert_eq!(b.declared_batch_count(), Some(2));
        assert_eq!(b.verify(), Ok(()));
    }

    #[test]
    fn structural_errors_name_the_segment() {
        let e = err("BHS|^~\\&\rEVN|A04\rPID|1\rBTS|0\r");
        assert_eq!(
            e,
            BatchError::SegmentBeforeHeader { id: SegmentId::from_bytes(b"EVN"), at: Position { segment: 2, byte: 9 } }
        );
        assert!(e.to_string().starts_with("segment received before message header"));
        assert!(matches!(
            err(&format!("BHS|^~\\&\r{MSG1}BHS|^~\\&\rBTS|1\r")),
            BatchError::NestedBatchHeader { at } if at.segment == 5
        ));
        assert!(matches!(
            err(&format!("FHS|^~\\&\rBHS|^~\\&\r{MSG1}FHS|^~\\&\rBTS|1\rFTS|1\r")),
            BatchError::MultipleFileHeaders { at } if at.segment == 6
        ));
        assert!(matches!(err(&format!("{MSG1}FHS|^~\\&\r")), BatchError::FileHeaderNotFirst { .. }));
        assert!(matches!(err(&format!("{MSG1}BTS|1\r")), BatchError::TrailerWithoutHeader { .. }));
        assert!(matches!(err(&format!("{MSG1}FTS|1\r")), BatchError::TrailerWithoutHeader { .. }));
        assert!(matches!(err(&format!("FHS|^~\\&\r{MSG1}FTS|1\rPID|1\r")), BatchError::SegmentAfterFileTrailer { .. }));
        assert!(matches!(err("PID|1\r"), BatchError::SegmentBeforeHeader { .. }));
        assert!(matches!(err("BHS|^\r"), BatchError::Header { .. }));
        assert!(matches!(err("MSH|^~\\&\rPID\rMSH|^\r"), BatchError::Message { index: 2, .. }));
    }

    #[test]
    fn error_messages_never_show_values() {
        let e = err("SECRET^NAME|x\r");
        let shown = format!("{e} {e:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
    }

    #[test]
    fn verify_reports_truncation_and_miscounts() {
        let s = format!("BHS|^~\\&\r{MSG1}");
        let b = ok(&s);
        assert_eq!(b.verify(), Err(BatchError::MissingBatchTrailer { batch: 1 }));
        let s = format!("BHS|^~\\&\r{MSG1}BTS|3\r");
        let b = ok(&s);
        assert_eq!(b.verify(), Err(BatchError::MessageCountMismatch { batch: 1, declared: 3, actual: 1 }));
        let s = format!("BHS|^~\\&\r{MSG1}BTS|x\r");
        let b = ok(&s);
        assert!(matches!(b.verify(), Err(BatchError::BadCount { .. })));
        let s = format!("FHS|^~\\&\rBHS|^~\\&\r{MSG1}BTS|1\r");
        let b = ok(&s);
        assert_eq!(b.verify(), Err(BatchError::MissingFileTrailer));
        let s = format!("FHS|^~\\&\rBHS|^~\\&\r{MSG1}BTS|1\rFTS|4\r");
        let b = ok(&s);
        assert!(matches!(b.verify(), Err(BatchError::BatchCountMismatch { declared: 4, actual: 1 })));
    }

    #[test]
    fn limits_bound_messages_and_segments() {
        let limits = Limits { max_messages: 1, ..Limits::DEFAULT };
        assert_eq!(
            split(format!("{MSG1}{MSG2}").as_bytes(), &limits).err(),
            Some(BatchError::TooManyMessages { limit: 1 })
        );
        let limits = Limits { max_segments: 2, ..Limits::DEFAULT };
        assert!(matches!(
            split(MSG1.as_bytes(), &limits),
            Err(BatchError::Message { index: 1, source: ParseError::TooManySegments { limit: 2 }, .. })
        ));
    }

    #[test]
    fn empty_input_has_no_messages() {
        assert_eq!(ok("").message_count(), 0);
        assert_eq!(ok("\r\n\r\n").message_count(), 0);
    }
}
