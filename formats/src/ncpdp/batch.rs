//! NCPDP Batch Standard 1.2 files: D.0 transmissions wrapped in detail
//! records between a transmission header and trailer, each record framed
//! by STX (0x02) … ETX (0x03):
//!
//! ```text
//! STX 00 <type 1> <sender id 24> <batch number 7> <CCYYMMDD> <HHMM> <file type 1> <version 2> <receiver id 24> ETX
//! STX G1 <transaction reference number 10> <D.0 transmission> ETX      (one per transaction)
//! STX 99 <batch number 7> <record count 10> <message 35> ETX
//! ```
//!
//! Transmission type `T` (transactions), `R` (responses) or `E` (an error
//! file: the batch could not be processed; its trailer's message says
//! why); file type `P` production or `T` test; the record count includes
//! the header and trailer. Layout as the public payer documentation of
//! the Batch Standard reprints it (Medi-Cal's CTM, Cloverleaf's NCPDP
//! batch notes); the standard itself is for NCPDP members.

/// Start and end of every record.
pub const STX: u8 = 0x02;
pub const ETX: u8 = 0x03;

/// The transmission header record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchHeader {
    /// `T`, `R` or `E`.
    pub transmission_type: String,
    pub sender_id: String,
    pub batch_number: String,
    pub creation_date: String,
    pub creation_time: String,
    /// `P` or `T`.
    pub file_type: String,
    pub version: String,
    pub receiver_id: String,
}

/// One detail data record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detail<'a> {
    pub reference: String,
    pub transmission: &'a [u8],
}

/// A batch file as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch<'a> {
    pub header: BatchHeader,
    pub details: Vec<Detail<'a>>,
    pub trailer_message: String,
}

/// Why a batch file cannot be processed (messages name positions and
/// counts, never values).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("not an NCPDP batch file: no transmission header record (STX 00) at the start")]
    NoHeader,
    #[error("the transmission header record is {0} bytes, not 73")]
    BadHeader(usize),
    #[error("record {0} is not closed by ETX")]
    Unterminated(usize),
    #[error("record {0} is neither a detail (G1) nor the trailer (99)")]
    UnknownRecord(usize),
    #[error("no transmission trailer record (STX 99)")]
    NoTrailer,
    #[error("the trailer's batch number does not match the header's")]
    BatchNumberMismatch,
    #[error("the trailer counts {stated} records, the file has {found}")]
    CountMismatch { stated: u64, found: u64 },
    #[error("more than {0} detail records")]
    TooManyDetails(usize),
    #[error("bytes after the trailer")]
    TrailingBytes,
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).trim_end().to_string()
}

/// Whether `bytes` starts like a batch file.
pub fn is_batch(bytes: &[u8]) -> bool {
    bytes.starts_with(&[STX, b'0', b'0'])
}

/// Reads a batch file (at most `max_details` detail records).
pub fn read_batch(bytes: &[u8], max_details: usize) -> Result<Batch<'_>, BatchError> {
    if !is_batch(bytes) {
        return Err(BatchError::NoHeader);
    }
    // Records: STX … ETX, optionally separated by line ends.
    let mut records: Vec<&[u8]> = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'\r' | b'\n' => at += 1,
            STX => {
                let Some(end) = bytes[at + 1..].iter().position(|&b| b == ETX) else {
                    return Err(BatchError::Unterminated(records.len() + 1));
                };
                records.push(&bytes[at + 1..at + 1 + end]);
                at += end + 2;
                if records.len() > max_details + 2 {
                    return Err(BatchError::TooManyDetails(max_details));
                }
            }
            _ if records.last().is_some_and(|r| r.starts_with(b"99")) => return Err(BatchError::TrailingBytes),
            _ => return Err(BatchError::UnknownRecord(records.len() + 1)),
        }
    }
    let h = records.first().ok_or(BatchError::NoHeader)?;
    if h.len() != 73 {
        return Err(BatchError::BadHeader(h.len()));
    }
    let header = BatchHeader {
        transmission_type: text(&h[2..3]),
        sender_id: text(&h[3..27]),
        batch_number: text(&h[27..34]),
        creation_date: text(&h[34..42]),
        creation_time: text(&h[42..46]),
        file_type: text(&h[46..47]),
        version: text(&h[47..49]),
        receiver_id: text(&h[49..73]),
    };
    let Some(t) = records.last().filter(|r| r.starts_with(b"99") && records.len() >= 2) else {
        return Err(BatchError::NoTrailer);
    };
    if t.len() < 19 {
        return Err(BatchError::NoTrailer);
    }
    if text(&t[2..9]) != header.batch_number {
        return Err(BatchError::BatchNumberMismatch);
    }
    let stated = text(&t[9..19]).trim().parse::<u64>().unwrap_or(u64::MAX);
    if stated != records.len() as u64 {
        return Err(BatchError::CountMismatch { stated, found: records.len() as u64 });
    }
    let mut details = Vec::with_capacity(records.len() - 2);
    for (i, r) in records[1..records.len() - 1].iter().enumerate() {
        if !r.starts_with(b"G1") || r.len() < 12 {
            return Err(BatchError::UnknownRecord(i + 2));
        }
        details.push(Detail { reference: text(&r[2..12]), transmission: &r[12..] });
    }
    Ok(Batch { header, details, trailer_message: text(&t[19..]) })
}

fn fixed(v: &str, w: usize) -> String {
    let clean: String = v.chars().map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { ' ' }).take(w).collect();
    format!("{clean:<w$}")
}

/// Writes a batch file: the header, one detail record per (reference,
/// transmission), the trailer with `message`.
pub fn write_batch(header: &BatchHeader, details: &[(String, Vec<u8>)], message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + details.iter().map(|d| d.1.len() + 16).sum::<usize>());
    out.push(STX);
    out.extend_from_slice(
        format!(
            "00{}{}{}{}{}{}{}{}",
            fixed(&header.transmission_type, 1),
            fixed(&header.sender_id, 24),
            fixed(&header.batch_number, 7),
            fixed(&header.creation_date, 8),
            fixed(&header.creation_time, 4),
            fixed(&header.file_type, 1),
            fixed(&header.version, 2),
            fixed(&header.receiver_id, 24),
        )
        .as_bytes(),
    );
    out.push(ETX);
    for (reference, t) in details {
        out.push(STX);
        out.extend_from_slice(b"G1");
        out.extend_from_slice(fixed(reference, 10).as_bytes());
        out.extend(t.iter().map(|&b| if b == STX || b == ETX { b' ' } else { b }));
        out.push(ETX);
    }
    out.push(STX);
    out.extend_from_slice(
        format!("99{}{:010}{}", fixed(&header.batch_number, 7), details.len() + 2, fixed(message, 35)).as_bytes(),
    );
    out.push(ETX);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::ncpdp::synth::{Request, request};

    fn header() -> BatchHeader {
        BatchHeader {
            transmission_type: "T".into(),
            sender_id: "PHARMACYCHAIN1".into(),
            batch_number: "0000042".into(),
            creation_date: "20261201".into(),
            creation_time: "1632".into(),
            file_type: "T".into(),
            version: "12".into(),
            receiver_id: "CLEARWAY".into(),
        }
    }

    #[test]
    fn a_batch_writes_and_reads_back() {
        let a = request(&Request::b1("610020", "P", "1"));
        let b = request(&Request::b1("610020", "P", "2"));
        let file = write_batch(&header(), &[("REF0000001".into(), a.clone()), ("REF0000002".into(), b.clone())], "");
        let batch = read_batch(&file, 10).unwrap();
        assert_eq!(batch.header, header());
        assert_eq!(batch.details.len(), 2);
        assert_eq!(batch.details[0].reference, "REF0000001");
        assert_eq!(batch.details[1].transmission, b.as_slice());
        // Line ends between records are allowed.
        let spaced: Vec<u8> =
            file.iter().flat_map(|&c| if c == ETX { vec![ETX, b'\r', b'\n'] } else { vec![c] }).collect();
        assert_eq!(read_batch(&spaced, 10).unwrap().details.len(), 2);
    }

    #[test]
    fn a_broken_batch_says_why() {
        let a = request(&Request::b1("610020", "P", "1"));
        let file = write_batch(&header(), &[("R1".into(), a)], "");
        assert_eq!(read_batch(b"hello", 10), Err(BatchError::NoHeader));
        assert_eq!(read_batch(&file[..file.len() - 1], 10), Err(BatchError::Unterminated(3)));
        let mut wrong_count = file.clone();
        let at = file.windows(3).rposition(|w| w == [STX, b'9', b'9']).unwrap() + 3 + 7;
        wrong_count[at + 9] = b'7';
        assert_eq!(read_batch(&wrong_count, 10), Err(BatchError::CountMismatch { stated: 7, found: 3 }));
        let mut other_batch = file.clone();
        other_batch[at - 1] = b'9';
        assert_eq!(read_batch(&other_batch, 10), Err(BatchError::BatchNumberMismatch));
        assert_eq!(read_batch(&file, 0), Err(BatchError::TooManyDetails(0)));
    }
}
