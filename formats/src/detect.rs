//! Format sniffing for `text/plain` and `application/octet-stream` bodies and
//! for `clearway validate --format auto`.

/// The formats Clearway reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    X12,
    Hl7v2,
    Fhir,
    /// NCPDP Telecommunication D.0 (a request or a response).
    Ncpdp,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::X12 => "x12",
            Format::Hl7v2 => "hl7",
            Format::Fhir => "fhir",
            Format::Ncpdp => "ncpdp",
        }
    }
}

/// Guesses the format from the first bytes: `ISA` (X12), `MSH`/`FHS`/`BHS`
/// or an MLLP start byte (HL7 v2), `{` (FHIR JSON). Leading whitespace and a
/// UTF-8 byte-order mark are skipped. NCPDP D.0: a six-digit BIN then
/// `D0` (a request), or `D0` then a transaction code (a response).
/// `None` when nothing matches.
pub fn sniff(input: &[u8]) -> Option<Format> {
    let mut s = input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input);
    while let [first, rest @ ..] = s {
        if first.is_ascii_whitespace() || *first == 0x0B {
            s = rest;
        } else {
            break;
        }
    }
    if s.starts_with(b"ISA") || s.starts_with(b"GS*") || s.starts_with(b"ST*") {
        Some(Format::X12)
    } else if s.starts_with(b"MSH") || s.starts_with(b"FHS") || s.starts_with(b"BHS") {
        Some(Format::Hl7v2)
    } else if s.starts_with(b"{") {
        Some(Format::Fhir)
    } else if (s.len() >= 8 && s[..6].iter().all(u8::is_ascii_digit) && &s[6..8] == b"D0")
        || (s.len() >= 6 && s.starts_with(b"D0") && s[2..4].iter().all(u8::is_ascii_alphanumeric))
    {
        Some(Format::Ncpdp)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_each_format() {
        assert_eq!(sniff(b"  ISA*00*"), Some(Format::X12));
        assert_eq!(sniff(b"\xEF\xBB\xBFMSH|^~\\&|"), Some(Format::Hl7v2));
        assert_eq!(sniff(b"\x0BMSH|"), Some(Format::Hl7v2));
        assert_eq!(sniff(b"BHS|^~\\&"), Some(Format::Hl7v2));
        assert_eq!(sniff(b"\n{\"resourceType\":\"Claim\"}"), Some(Format::Fhir));
        assert_eq!(sniff(b"GS*HC*"), Some(Format::X12));
        assert_eq!(sniff(b"PID|1"), None);
        assert_eq!(sniff(b"610020D0B1PCN1"), Some(Format::Ncpdp));
        assert_eq!(sniff(b"D0B11A01"), Some(Format::Ncpdp));
        assert_eq!(sniff(b""), None);
    }
}
