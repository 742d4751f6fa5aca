//! The MLLP (minimal lower layer protocol) frame codec, without I/O.
//!
//! HL7 v2 over TCP wraps each message as `0x0B` (VT) + payload + `0x1C`
//! (FS) `0x0D` (CR). The codec is two pure functions so that the same code
//! serves the async intake, tests and fuzzers: the caller owns the buffer,
//! appends what it reads, calls [`decode_frame`] until it returns
//! `Ok(None)`, and drops `consumed` bytes after each frame.
//!
//! The decoder is strict where leniency would hide corruption or enable
//! abuse, because a framing error on a TCP stream means the peer and we
//! disagree about where messages start:
//! - only CR and LF may appear between frames (some senders end frames with
//!   `1C 0D 0A`); any other byte before the start block is an error that
//!   says how many bytes to drop to resynchronise;
//! - a frame is rejected as soon as its buffered payload exceeds the limit,
//!   without waiting for the end block, so memory stays bounded;
//! - `0x1C` must be followed by `0x0D`, and a `0x0B` inside a frame (a
//!   sender that lost its place) is an error rather than a new frame.
//!
//! [`decode_frame`] rescans the buffered partial frame on each call. With
//! frames of tens of megabytes read in small chunks, callers should grow
//! their reads or only call again once new bytes arrive.

use memchr::{memchr, memchr2};
use std::ops::Range;

/// Start block, VT.
pub const START: u8 = 0x0B;
/// End block: FS then CR.
pub const END: [u8; 2] = [0x1C, 0x0D];

/// A complete frame found at the start of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Where the payload (the HL7 message) is in the buffer.
    pub payload: Range<usize>,
    /// How many bytes of the buffer this frame used, including any CR/LF
    /// before it and its end block.
    pub consumed: usize,
}

/// A framing error. Every variant means the stream cannot be trusted at the
/// current position.
// Variant fields are named for what they hold.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MllpError {
    /// Bytes other than CR/LF before the start block.
    #[error("{skip} bytes before the MLLP start block (0x0B); drop them to resynchronise")]
    BytesBeforeStart {
        /// Bytes from the start of the buffer up to the next start block
        /// (or the end of the buffer when there is none).
        skip: usize,
    },
    /// The payload exceeds the limit.
    #[error("MLLP frame exceeds the limit of {limit} bytes")]
    FrameTooLarge { limit: usize },
    /// More CR/LF between frames than the frame limit.
    #[error("more than {limit} bytes of line breaks between MLLP frames")]
    TooMuchWhitespace { limit: usize },
    /// `0x1C` followed by something other than `0x0D`.
    #[error("MLLP end block 0x1C at byte {offset} is not followed by 0x0D")]
    MissingCarriageReturn { offset: usize },
    /// A start block before the end of the current frame.
    #[error("MLLP start block 0x0B at byte {offset} inside a frame")]
    StartInsideFrame { offset: usize },
}

/// Decodes the first frame of `buf`.
///
/// Returns `Ok(None)` when more bytes are needed, `Ok(Some(frame))` when a
/// complete frame is at the start of the buffer (after optional CR/LF), and
/// an error as soon as the bytes cannot be a valid frame: see [`MllpError`].
/// A payload longer than `max_frame_bytes` is an error even before its end
/// block arrives.
pub fn decode_frame(buf: &[u8], max_frame_bytes: usize) -> Result<Option<Frame>, MllpError> {
    let lead = buf.iter().position(|b| !matches!(b, b'\r' | b'\n')).unwrap_or(buf.len());
    if lead > max_frame_bytes {
        return Err(MllpError::TooMuchWhitespace { limit: max_frame_bytes });
    }
    let Some(&first) = buf.get(lead) else {
        return Ok(None);
    };
    if first != START {
        let skip = memchr(START, buf.get(lead..).unwrap_or_default()).map_or(buf.len(), |n| lead + n);
        return Err(MllpError::BytesBeforeStart { skip });
    }
    let start = lead + 1;
    let body = buf.get(start..).unwrap_or_default();
    let Some(n) = memchr2(END[0], START, body) else {
        if body.len() > max_frame_bytes {
            return Err(MllpError::FrameTooLarge { limit: max_frame_bytes });
        }
        return Ok(None);
    };
    if n > max_frame_bytes {
        return Err(MllpError::FrameTooLarge { limit: max_frame_bytes });
    }
    let at = start + n;
    if body.get(n) == Some(&START) {
        return Err(MllpError::StartInsideFrame { offset: at });
    }
    match buf.get(at + 1) {
        None => Ok(None),
        Some(&b) if b == END[1] => Ok(Some(Frame { payload: start..at, consumed: at + 2 })),
        Some(_) => Err(MllpError::MissingCarriageReturn { offset: at }),
    }
}

/// Appends `payload` framed as one MLLP frame to `out`.
///
/// The payload must not contain `0x0B` or `0x1C` (HL7 text never does); such
/// a frame would not decode as the same payload.
pub fn encode_frame(payload: &[u8], out: &mut Vec<u8>) {
    out.reserve(payload.len() + 3);
    out.push(START);
    out.extend_from_slice(payload);
    out.extend_from_slice(&END);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(p: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        encode_frame(p, &mut v);
        v
    }

    #[test]
    fn round_trip() {
        let buf = frame(b"MSH|^~\\&|A\r");
        assert_eq!(buf.first(), Some(&0x0B));
        assert_eq!(buf.get(buf.len() - 2..), Some(&[0x1C, 0x0D][..]));
        let f = decode_frame(&buf, 100).ok().flatten();
        assert_eq!(f, Some(Frame { payload: 1..12, consumed: 14 }));
        assert_eq!(decode_frame(&frame(b""), 0), Ok(Some(Frame { payload: 1..1, consumed: 3 })));
    }

    #[test]
    fn needs_more_bytes_for_partial_frames() {
        let buf = frame(b"MSH|x\r");
        for cut in 0..buf.len() {
            assert_eq!(decode_frame(&buf[..cut], 100), Ok(None), "cut {cut}");
        }
        assert_eq!(decode_frame(b"\r\n\r\n", 100), Ok(None));
    }

    #[test]
    fn pipelined_frames_decode_one_by_one() {
        let mut buf = frame(b"one");
        buf.extend_from_slice(b"\r\n");
        buf.extend_from_slice(&frame(b"two"));
        buf.extend_from_slice(b"\n");
        buf.extend_from_slice(&frame(b"three"));
        buf.extend_from_slice(&frame(b"fo"));
        buf.pop();
        let mut rest = &buf[..];
        let mut got = Vec::new();
        while let Ok(Some(f)) = decode_frame(rest, 100) {
            got.push(rest[f.payload.clone()].to_vec());
            rest = &rest[f.consumed..];
        }
        assert_eq!(got, [&b"one"[..], b"two", b"three"]);
        assert_eq!(rest, b"\x0Bfo\x1C");
    }

    #[test]
    fn rejects_bytes_before_start() {
        assert_eq!(decode_frame(b"\r\nxyz\x0Babc\x1C\r", 100), Err(MllpError::BytesBeforeStart { skip: 5 }));
        assert_eq!(decode_frame(b"garbage", 100), Err(MllpError::BytesBeforeStart { skip: 7 }));
        assert_eq!(decode_frame(b" \x0Bx\x1C\r", 100), Err(MllpError::BytesBeforeStart { skip: 1 }));
        let e = MllpError::BytesBeforeStart { skip: 5 };
        assert_eq!(e.to_string(), "5 bytes before the MLLP start block (0x0B); drop them to resynchronise");
    }

    #[test]
    fn rejects_oversized_frames_before_their_end() {
        let mut buf = vec![START];
        buf.extend_from_slice(&[b'a'; 10]);
        assert_eq!(decode_frame(&buf, 10), Ok(None));
        buf.push(b'a');
        assert_eq!(decode_frame(&buf, 10), Err(MllpError::FrameTooLarge { limit: 10 }));
        buf.extend_from_slice(&END);
        assert_eq!(decode_frame(&buf, 10), Err(MllpError::FrameTooLarge { limit: 10 }));
        assert!(decode_frame(&buf, 11).is_ok_and(|f| f.is_some()));
        assert_eq!(decode_frame(&[b'\r'; 5], 4), Err(MllpError::TooMuchWhitespace { limit: 4 }));
    }

    #[test]
    fn rejects_bad_end_and_nested_start() {
        assert_eq!(decode_frame(b"\x0Babc\x1Cx", 100), Err(MllpError::MissingCarriageReturn { offset: 4 }));
        assert_eq!(decode_frame(b"\x0Babc\x0Bdef\x1C\r", 100), Err(MllpError::StartInsideFrame { offset: 4 }));
    }
}
