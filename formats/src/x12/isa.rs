//! The ISA interchange header: delimiter discovery and field checks.
//!
//! The ISA is the only fixed-width segment in X12: 106 bytes including its
//! terminator, so the element separator is byte 3, the component separator
//! (ISA16) byte 104 and the segment terminator byte 105. Real files break the
//! rule (unpadded fields), so when the fixed layout does not hold we fall back
//! to counting element separators, still recover the delimiters, and report
//! which field is malformed with its TA105 code.

use super::codes::Ta105;

/// The four X12 delimiters of one interchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Delimiters {
    pub element: u8,
    /// ISA16.
    pub component: u8,
    /// ISA11 in 005010; `None` when ISA11 is the 004010 standards id `U`
    /// or otherwise not usable as a separator.
    pub repetition: Option<u8>,
    pub segment: u8,
}

impl Default for Delimiters {
    /// `*`, `:`, `^`, `~`: the delimiters most partners use.
    fn default() -> Self {
        Delimiters { element: b'*', component: b':', repetition: Some(b'^'), segment: b'~' }
    }
}

impl Delimiters {
    /// True when the four delimiters are distinct ASCII non-data characters,
    /// so that output written with them is well formed.
    pub fn usable(&self) -> bool {
        let all = [Some(self.element), Some(self.component), self.repetition, Some(self.segment)];
        let set: Vec<u8> = all.iter().flatten().copied().collect();
        let distinct = set.iter().enumerate().all(|(i, a)| !set[..i].contains(a));
        distinct && set.iter().all(|&b| b.is_ascii() && !b.is_ascii_alphanumeric() && b != b' ')
    }

    /// True when `b` is one of the delimiters (it cannot appear in data).
    pub fn is_delimiter(&self, b: u8) -> bool {
        b == self.element || b == self.component || b == self.segment || self.repetition == Some(b)
    }
}

/// Fixed width of the ISA including the segment terminator.
pub const ISA_LEN: usize = 106;

/// Offsets of the 16 element separators in a fixed-width ISA.
const SEPARATOR_OFFSETS: [usize; 16] = [3, 6, 17, 20, 31, 34, 50, 53, 69, 76, 81, 83, 89, 99, 101, 103];

/// Widths of ISA01..ISA16.
const FIELD_WIDTHS: [usize; 16] = [2, 10, 2, 10, 2, 15, 2, 15, 6, 4, 1, 5, 9, 1, 1, 1];

/// Longest lenient (unpadded or overlong) ISA we try to read.
pub const ISA_MAX_SCAN: usize = 512;

/// A parsed ISA. Fields keep their padding; use [`IsaHeader::trimmed`] for ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsaHeader {
    /// ISA01..ISA16 as they appear (ISA16 is the component separator byte).
    pub fields: [String; 16],
    pub delimiters: Delimiters,
    /// Bytes the ISA occupied including its terminator.
    pub len: usize,
    /// True when the 106-byte layout held.
    pub fixed_width: bool,
    /// Problems found, each with its TA105 note code.
    pub findings: Vec<IsaFinding>,
}

/// One ISA problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsaFinding {
    pub code: Ta105,
    /// 1-based ISA element number, 0 for the segment as a whole.
    pub element: u8,
    pub message: &'static str,
}

/// Why no delimiters could be read at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IsaError {
    #[error("input does not start with an ISA segment")]
    NotIsa,
    #[error("the ISA segment is truncated")]
    Truncated,
    #[error("the ISA segment does not have 16 elements")]
    WrongElementCount,
    #[error("the ISA delimiters are not usable")]
    BadDelimiters,
}

impl IsaHeader {
    /// ISA element `n` (1-based) with padding removed.
    pub fn trimmed(&self, n: usize) -> &str {
        self.fields.get(n.wrapping_sub(1)).map(|s| s.trim()).unwrap_or("")
    }
    pub fn sender_qualifier(&self) -> &str {
        self.trimmed(5)
    }
    pub fn sender_id(&self) -> &str {
        self.trimmed(6)
    }
    pub fn receiver_qualifier(&self) -> &str {
        self.trimmed(7)
    }
    pub fn receiver_id(&self) -> &str {
        self.trimmed(8)
    }
    /// ISA09, YYMMDD.
    pub fn date(&self) -> &str {
        self.trimmed(9)
    }
    /// ISA10, HHMM.
    pub fn time(&self) -> &str {
        self.trimmed(10)
    }
    /// ISA12, e.g. `00501`.
    pub fn version(&self) -> &str {
        self.trimmed(12)
    }
    /// ISA13, the interchange control number.
    pub fn control_number(&self) -> &str {
        self.trimmed(13)
    }
    /// ISA14 = `1`: the sender asks for a TA1.
    pub fn ack_requested(&self) -> bool {
        self.trimmed(14) == "1"
    }
    /// ISA15, `P` production or `T` test.
    pub fn usage(&self) -> &str {
        self.trimmed(15)
    }
    /// True when an interchange-level finding makes the interchange unprocessable.
    pub fn is_fatal(&self) -> bool {
        self.findings.iter().any(|f| f.code.rejects())
    }
}

/// Reads the ISA at the start of `buf` (which must start with `ISA`).
///
/// `at_eof` tells whether `buf` holds everything that will ever arrive; if it
/// does not and more bytes could complete the ISA, `Err(Truncated)` is
/// returned and the caller should read more and retry.
pub fn parse_isa(buf: &[u8]) -> Result<IsaHeader, IsaError> {
    if !buf.starts_with(b"ISA") {
        return Err(IsaError::NotIsa);
    }
    if buf.len() < 4 {
        return Err(IsaError::Truncated);
    }
    let sep = buf[3];
    if sep.is_ascii_alphanumeric() || sep == b' ' {
        return Err(IsaError::BadDelimiters);
    }
    if buf.len() >= ISA_LEN && is_fixed_layout(&buf[..ISA_LEN], sep) {
        return Ok(build(buf, sep, &SEPARATOR_OFFSETS, 104, true));
    }
    // Lenient: find 16 separators; ISA16 is the byte after the 16th, the
    // terminator the byte after that.
    let limit = buf.len().min(ISA_MAX_SCAN);
    let mut offsets = [0usize; 16];
    let mut n = 0;
    for (i, &b) in buf[..limit].iter().enumerate().skip(3) {
        if b == sep {
            offsets[n] = i;
            n += 1;
            if n == 16 {
                break;
            }
        }
    }
    if n < 16 {
        return Err(if buf.len() < ISA_MAX_SCAN { IsaError::Truncated } else { IsaError::WrongElementCount });
    }
    let isa16 = offsets[15] + 1;
    if isa16 + 1 >= buf.len() {
        return Err(IsaError::Truncated);
    }
    Ok(build(buf, sep, &offsets, isa16, false))
}

fn is_fixed_layout(isa: &[u8], sep: u8) -> bool {
    let positions_hold = SEPARATOR_OFFSETS.iter().all(|&o| isa[o] == sep);
    let no_extra = isa[..104].iter().enumerate().filter(|&(_, &b)| b == sep).count() == 16;
    positions_hold && no_extra
}

fn build(buf: &[u8], sep: u8, offsets: &[usize; 16], isa16: usize, fixed: bool) -> IsaHeader {
    let mut fields: [String; 16] = Default::default();
    for i in 0..15 {
        let from = offsets[i] + 1;
        let to = offsets[i + 1];
        fields[i] = String::from_utf8_lossy(&buf[from..to]).into_owned();
    }
    let component = buf[isa16];
    let segment = buf[isa16 + 1];
    fields[15] = String::from_utf8_lossy(&[component]).into_owned();
    let isa11 = fields[10].as_bytes().first().copied().unwrap_or(b' ');
    let mut findings = Vec::new();
    let version = fields[11].trim().to_string();
    let repetition = if version.as_str() >= "00402"
        && !isa11.is_ascii_alphanumeric()
        && isa11 != b' '
        && isa11 != sep
        && isa11 != component
        && isa11 != segment
        && !isa11.is_ascii_control()
    {
        Some(isa11)
    } else {
        None
    };
    let delimiters = Delimiters { element: sep, component, repetition, segment };
    if !fixed {
        // Name the first field whose width is wrong.
        for (i, w) in FIELD_WIDTHS.iter().enumerate() {
            if fields[i].len() != *w {
                findings.push(IsaFinding {
                    code: FIELD_CODES[i],
                    element: (i + 1) as u8,
                    message: "ISA element does not have its fixed width",
                });
                break;
            }
        }
        if findings.is_empty() {
            findings.push(IsaFinding {
                code: Ta105::InvalidControlStructure,
                element: 0,
                message: "ISA segment is not 106 bytes long",
            });
        }
    }
    check_fields(&fields, &delimiters, &mut findings);
    IsaHeader { fields, delimiters, len: isa16 + 2, fixed_width: fixed, findings }
}

/// The TA105 code for a malformed ISA01..ISA16.
const FIELD_CODES: [Ta105; 16] = [
    Ta105::InvalidAuthorizationQualifier,
    Ta105::InvalidAuthorizationValue,
    Ta105::InvalidSecurityQualifier,
    Ta105::InvalidSecurityValue,
    Ta105::InvalidSenderQualifier,
    Ta105::InvalidSenderId,
    Ta105::InvalidReceiverQualifier,
    Ta105::InvalidReceiverId,
    Ta105::InvalidDate,
    Ta105::InvalidTime,
    Ta105::InvalidStandardsId,
    Ta105::InvalidVersion,
    Ta105::InvalidControlNumber,
    Ta105::InvalidAckRequested,
    Ta105::InvalidTestIndicator,
    Ta105::InvalidComponentSeparator,
];

/// ID qualifiers of element I05 (ISA05/ISA07).
const ID_QUALIFIERS: &[&str] = &[
    "01", "02", "03", "04", "07", "08", "09", "10", "11", "12", "13", "14", "15", "16", "17", "18", "19", "20", "21",
    "22", "23", "24", "25", "26", "27", "28", "29", "30", "31", "32", "33", "34", "35", "36", "37", "38", "AM", "NR",
    "SA", "SN", "ZZ",
];

fn check_fields(f: &[String; 16], d: &Delimiters, out: &mut Vec<IsaFinding>) {
    let mut push = |code: Ta105, element: u8, message: &'static str| {
        if !out.iter().any(|x| x.element == element) {
            out.push(IsaFinding { code, element, message });
        }
    };
    if !matches!(f[0].as_str(), "00" | "03") {
        push(Ta105::InvalidAuthorizationQualifier, 1, "ISA01 is not 00 or 03");
    }
    if !matches!(f[2].as_str(), "00" | "01") {
        push(Ta105::InvalidSecurityQualifier, 3, "ISA03 is not 00 or 01");
    }
    if !ID_QUALIFIERS.contains(&f[4].trim()) {
        push(Ta105::InvalidSenderQualifier, 5, "ISA05 is not a valid id qualifier");
    }
    if f[5].trim().is_empty() {
        push(Ta105::InvalidSenderId, 6, "ISA06 sender id is blank");
    }
    if !ID_QUALIFIERS.contains(&f[6].trim()) {
        push(Ta105::InvalidReceiverQualifier, 7, "ISA07 is not a valid id qualifier");
    }
    if f[7].trim().is_empty() {
        push(Ta105::InvalidReceiverId, 8, "ISA08 receiver id is blank");
    }
    if !valid_yymmdd(f[8].as_bytes()) {
        push(Ta105::InvalidDate, 9, "ISA09 is not a valid YYMMDD date");
    }
    if !valid_hhmm(f[9].as_bytes()) {
        push(Ta105::InvalidTime, 10, "ISA10 is not a valid HHMM time");
    }
    let version = f[11].trim();
    if version >= "00402" && d.repetition.is_none() {
        // 5010 uses ISA11 as the repetition separator; `U` is tolerated
        // (it only means repetitions are not used) but anything else that
        // clashes with the other delimiters is an error.
        if f[10] != "U" {
            push(Ta105::InvalidStandardsId, 11, "ISA11 is not a usable repetition separator");
        }
    } else if version < "00402" && f[10] != "U" {
        push(Ta105::InvalidStandardsId, 11, "ISA11 is not U");
    }
    if version.len() != 5 || !version.bytes().all(|b| b.is_ascii_digit()) {
        push(Ta105::InvalidVersion, 12, "ISA12 is not a version number");
    }
    let ctl = f[12].as_bytes();
    if ctl.len() != 9 || !ctl.iter().all(u8::is_ascii_digit) {
        push(Ta105::InvalidControlNumber, 13, "ISA13 is not nine digits");
    }
    if !matches!(f[13].as_str(), "0" | "1") {
        push(Ta105::InvalidAckRequested, 14, "ISA14 is not 0 or 1");
    }
    if !matches!(f[14].as_str(), "P" | "T" | "I") {
        push(Ta105::InvalidTestIndicator, 15, "ISA15 is not P or T");
    }
    // Delimiters must differ from each other and from data characters,
    // and be ASCII.
    let data_like = |b: u8| b.is_ascii_alphanumeric() || b == b' ' || !b.is_ascii();
    if !d.element.is_ascii() {
        push(Ta105::InvalidElementSeparator, 0, "element separator is not an ASCII character");
    }
    if d.repetition.is_some_and(|r| !r.is_ascii()) {
        push(Ta105::InvalidStandardsId, 11, "ISA11 repetition separator is not an ASCII character");
    }
    if d.component == d.element || d.component == d.segment || data_like(d.component) {
        push(Ta105::InvalidComponentSeparator, 16, "ISA16 clashes with another delimiter or is a data character");
    }
    if d.segment == d.element || data_like(d.segment) {
        push(
            Ta105::InvalidSegmentTerminator,
            0,
            "segment terminator clashes with another delimiter or is a data character",
        );
    }
}

/// YYMMDD with a real month and day.
pub fn valid_yymmdd(s: &[u8]) -> bool {
    s.len() == 6
        && s.iter().all(u8::is_ascii_digit)
        && super::validate::valid_date(2000 + num(&s[0..2]) as i32, num(&s[2..4]), num(&s[4..6]))
}

/// HHMM.
pub fn valid_hhmm(s: &[u8]) -> bool {
    s.len() == 4 && s.iter().all(u8::is_ascii_digit) && num(&s[0..2]) < 24 && num(&s[2..4]) < 60
}

fn num(s: &[u8]) -> u32 {
    s.iter().fold(0, |a, &b| a * 10 + u32::from(b - b'0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISA: &[u8] =
        b"ISA*00*          *00*          *ZZ*SENDER         *ZZ*RECEIVER       *240101*1200*^*00501*000000001*0*T*:~";

    #[test]
    fn reads_fixed_width_isa() {
        assert_eq!(ISA.len(), ISA_LEN);
        let h = parse_isa(ISA).unwrap();
        assert!(h.fixed_width);
        assert!(h.findings.is_empty(), "{:?}", h.findings);
        assert_eq!(h.delimiters, Delimiters::default());
        assert_eq!(h.control_number(), "000000001");
        assert_eq!(h.sender_id(), "SENDER");
        assert_eq!(h.len, 106);
    }

    #[test]
    fn recovers_delimiters_from_unpadded_isa() {
        let isa = b"ISA*00*x*00*y*ZZ*S*ZZ*R*240101*1200*^*00501*000000001*0*T*:~GS";
        let h = parse_isa(isa).unwrap();
        assert!(!h.fixed_width);
        assert_eq!(h.delimiters.segment, b'~');
        assert_eq!(h.delimiters.component, b':');
        assert_eq!(h.findings[0].code, Ta105::InvalidAuthorizationValue);
        assert!(h.is_fatal());
    }

    #[test]
    fn any_legal_delimiters() {
        let isa = ISA
            .iter()
            .map(|&b| match b {
                b'*' => b'|',
                b'~' => b'\n',
                b':' => b'>',
                b'^' => b'!',
                o => o,
            })
            .collect::<Vec<_>>();
        let h = parse_isa(&isa).unwrap();
        assert_eq!(h.delimiters, Delimiters { element: b'|', component: b'>', repetition: Some(b'!'), segment: b'\n' });
        assert!(h.findings.is_empty());
    }

    #[test]
    fn truncated_isa_asks_for_more() {
        assert_eq!(parse_isa(&ISA[..50]), Err(IsaError::Truncated));
        assert_eq!(parse_isa(b"GS*"), Err(IsaError::NotIsa));
    }

    #[test]
    fn bad_fields_get_their_ta105() {
        let mut isa = ISA.to_vec();
        isa[70..76].copy_from_slice(b"241301"); // month 13
        isa[77..81].copy_from_slice(b"2561");
        let h = parse_isa(&isa).unwrap();
        let codes: Vec<_> = h.findings.iter().map(|f| f.code).collect();
        assert_eq!(codes, vec![Ta105::InvalidDate, Ta105::InvalidTime]);
    }

    #[test]
    fn isa11_u_in_5010_means_no_repetition() {
        let mut isa = ISA.to_vec();
        isa[82] = b'U';
        let h = parse_isa(&isa).unwrap();
        assert_eq!(h.delimiters.repetition, None);
        assert!(h.findings.is_empty());
    }
}
