//! NCPDP Telecommunication Standard D.0: reading and writing one
//! transmission (a request a pharmacy sends, or the response it gets).
//!
//! A transmission is a fixed-width header — request: BIN (6), version
//! `D0` (2), transaction code (2), processor control number (10),
//! transaction count (1), service provider id qualifier (2) and id (15),
//! date of service (8), software vendor/certification id (10), 56 bytes;
//! response: version (2), transaction code (2), count (1), header response
//! status (1), service provider id qualifier (2) and id (15), and a date of
//! service (8) that some senders leave out — followed by segments: each
//! starts with the segment-identification field `AMnn`, its fields are
//! separated by 0x1C, segments by 0x1E, and transaction groups (one per
//! transaction, up to four for a B1) by 0x1D. Every field is a two-character
//! id then its value.
//!
//! Senders differ in framing (public samples put no 0x1E before the first
//! segment and no 0x1C before a segment id), so the reader keeps the exact
//! separators in front of every segment and field: what it reads, it
//! writes back byte for byte. It is bounded ([`Limits`]) and never panics.
//! [`validate`] checks a request against the standard and names the reject
//! codes; [`answer`] builds responses and runs the pharmacy claim edits.

pub mod answer;
pub mod batch;
pub mod synth;
pub mod validate;
pub mod views;

/// Segment separator.
pub const SEGMENT: u8 = 0x1E;
/// Transaction group separator.
pub const GROUP: u8 = 0x1D;
/// Field separator.
pub const FIELD: u8 = 0x1C;

/// Bounds on what is read.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bytes: usize,
    pub max_segments: usize,
    pub max_fields: usize,
    pub max_field_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        // A D.0 transmission of four transactions is a few kilobytes.
        Limits { max_bytes: 64 * 1024, max_segments: 128, max_fields: 1024, max_field_bytes: 512 }
    }
}

/// Why a transmission could not be read. Messages name positions and
/// field ids, never values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("too short for a D.0 header ({0} bytes)")]
    ShortHeader(usize),
    #[error("not a D.0 transmission: no version D0 where the header puts it")]
    NotD0,
    #[error("the header's {0} is not valid")]
    BadHeader(&'static str),
    #[error("larger than {0} bytes")]
    TooLarge(usize),
    #[error("more than {0} segments")]
    TooManySegments(usize),
    #[error("more than {0} fields")]
    TooManyFields(usize),
    #[error("field {0} is longer than {1} bytes")]
    FieldTooLong(String, usize),
    #[error("a field at byte {0} comes before any segment id")]
    FieldOutsideSegment(usize),
    #[error("a byte that is not printable ASCII at {0}")]
    NotText(usize),
}

/// Whether the transmission is a request or a response, and its header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Header {
    Request(RequestHeader),
    Response(ResponseHeader),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHeader {
    pub bin: String,
    pub version: String,
    /// `E1`, `B1`, `B2`, `B3`, …
    pub transaction_code: String,
    pub pcn: String,
    pub transaction_count: u8,
    pub provider_id_qualifier: String,
    pub provider_id: String,
    /// CCYYMMDD.
    pub date_of_service: String,
    pub software_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHeader {
    pub version: String,
    pub transaction_code: String,
    pub transaction_count: u8,
    /// `A` accepted, `R` rejected (the transmission).
    pub status: String,
    pub provider_id_qualifier: String,
    pub provider_id: String,
    pub date_of_service: Option<String>,
}

/// One field: its two-character id and value, and the separator before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub sep: Option<u8>,
    pub id: String,
    pub value: String,
}

/// One segment (`AMnn`) and its fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// The separators between the previous segment and this one's `AMnn`.
    pub lead: Vec<u8>,
    /// `01` patient, `04` insurance, `07` claim, `21` response status, …
    pub id: String,
    /// 0 for the transmission-level segments; n for the n-th transaction
    /// group (after the n-th 0x1D).
    pub group: usize,
    pub fields: Vec<Field>,
}

impl Segment {
    /// The first value of field `id`.
    pub fn get(&self, id: &str) -> Option<&str> {
        self.fields.iter().find(|f| f.id == id).map(|f| f.value.as_str())
    }

    /// Every value of field `id` (repeating fields: reject codes, DUR).
    pub fn all<'a>(&'a self, id: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.fields.iter().filter(move |f| f.id == id).map(|f| f.value.as_str())
    }
}

/// One transmission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmission {
    /// The header's bytes as read.
    pub header_raw: String,
    pub header: Header,
    pub segments: Vec<Segment>,
    /// Whatever followed the last field (trailing separators).
    pub trailer: Vec<u8>,
}

impl Transmission {
    /// The first segment `id` (`01`, `07`, `21` …) of transaction group
    /// `group` (or the transmission level when it is not there: senders
    /// without 0x1D put every segment there).
    pub fn segment(&self, id: &str, group: usize) -> Option<&Segment> {
        self.segments
            .iter()
            .find(|s| s.id == id && s.group == group)
            .or_else(|| self.segments.iter().find(|s| s.id == id))
    }

    pub fn transaction_code(&self) -> &str {
        match &self.header {
            Header::Request(h) => &h.transaction_code,
            Header::Response(h) => &h.transaction_code,
        }
    }

    /// Transaction groups (at least one).
    pub fn groups(&self) -> usize {
        self.segments.iter().map(|s| s.group).max().unwrap_or(0).max(1)
    }

    /// The transmission's bytes: what was read, byte for byte.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(self.header_raw.as_bytes());
        for s in &self.segments {
            out.extend_from_slice(&s.lead);
            out.extend_from_slice(b"AM");
            out.extend_from_slice(s.id.as_bytes());
            for f in &s.fields {
                out.extend(f.sep);
                out.extend_from_slice(f.id.as_bytes());
                out.extend_from_slice(f.value.as_bytes());
            }
        }
        out.extend_from_slice(&self.trailer);
        out
    }
}

/// `v` with every byte that is not printable ASCII (separators included)
/// as a space.
pub(crate) fn clean(v: &[u8]) -> String {
    v.iter().map(|&b| if (0x20..0x7F).contains(&b) { b as char } else { ' ' }).collect()
}

/// `v` cleaned, cut or padded with spaces to `w` (a fixed-width field).
pub(crate) fn fixed(v: &str, w: usize) -> String {
    let v = clean(v.as_bytes());
    format!("{:<w$}", &v[..v.len().min(w)])
}

/// A segment to write: its id (`21`) and its fields (id, value).
pub type SegmentSpec<'a> = (&'a str, &'a [(&'a str, &'a str)]);

impl Transmission {
    /// A response in the standard's framing: the header (31 bytes with a
    /// date of service, 23 without), the transmission-level segments, then
    /// each transaction group after a 0x1D; each segment as
    /// `0x1E 0x1C AMnn`, each field as `0x1C id value`. Values are written
    /// as given, except that a separator or a byte that is not printable
    /// ASCII becomes a space; the header's fields are cut or padded to
    /// their widths.
    pub fn response(
        header: &ResponseHeader,
        transmission: &[SegmentSpec<'_>],
        groups: &[Vec<SegmentSpec<'_>>],
    ) -> Transmission {
        let count = header.transaction_count.clamp(1, 4);
        let mut raw = format!(
            "{}{}{}{}{}{}",
            fixed(&header.version, 2),
            fixed(&header.transaction_code, 2),
            count,
            fixed(&header.status, 1),
            fixed(&header.provider_id_qualifier, 2),
            fixed(&header.provider_id, 15),
        );
        if let Some(d) = &header.date_of_service {
            raw.push_str(&fixed(d, 8));
        }
        let mut segments = Vec::new();
        let mut push = |spec: &SegmentSpec<'_>, group: usize, first_of_group: bool| {
            let mut lead = Vec::new();
            if first_of_group && group > 0 {
                lead.push(GROUP);
            }
            lead.extend([SEGMENT, FIELD]);
            segments.push(Segment {
                lead,
                id: fixed(spec.0, 2),
                group,
                fields: spec
                    .1
                    .iter()
                    .map(|(id, v)| Field { sep: Some(FIELD), id: fixed(id, 2), value: clean(v.as_bytes()) })
                    .collect(),
            });
        };
        for spec in transmission {
            push(spec, 0, false);
        }
        for (g, group) in groups.iter().enumerate() {
            for (i, spec) in group.iter().enumerate() {
                push(spec, g + 1, i == 0);
            }
        }
        let header = Header::Response(ResponseHeader {
            version: fixed(&header.version, 2),
            transaction_code: fixed(&header.transaction_code, 2),
            transaction_count: count,
            status: fixed(&header.status, 1),
            provider_id_qualifier: fixed(&header.provider_id_qualifier, 2),
            provider_id: fixed(&header.provider_id, 15).trim_end().to_string(),
            date_of_service: header.date_of_service.as_deref().map(|d| fixed(d, 8)),
        });
        Transmission { header_raw: raw, header, segments, trailer: Vec::new() }
    }
}

fn is_sep(b: u8) -> bool {
    b == SEGMENT || b == GROUP || b == FIELD
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn read_header(bytes: &[u8]) -> Result<(Header, usize), ReadError> {
    let digits = |b: &[u8]| !b.is_empty() && b.iter().all(u8::is_ascii_digit);
    // A request has its version after the six-character BIN; a response
    // starts with it (a BIN is never `D0…`).
    if bytes.len() >= 8 && &bytes[6..8] == b"D0" && !bytes.starts_with(b"D0") {
        if bytes.len() < 56 {
            return Err(ReadError::ShortHeader(bytes.len()));
        }
        let h = &bytes[..56];
        if h.iter().any(|&b| is_sep(b)) {
            return Err(ReadError::ShortHeader(h.iter().position(|&b| is_sep(b)).unwrap_or(0)));
        }
        if !digits(&h[0..6]) {
            return Err(ReadError::BadHeader("BIN (6 digits)"));
        }
        let count = h[20];
        if !(b'1'..=b'4').contains(&count) {
            return Err(ReadError::BadHeader("transaction count (1-4)"));
        }
        return Ok((
            Header::Request(RequestHeader {
                bin: text(&h[0..6]),
                version: text(&h[6..8]),
                transaction_code: text(&h[8..10]),
                pcn: text(&h[10..20]).trim_end().to_string(),
                transaction_count: count - b'0',
                provider_id_qualifier: text(&h[21..23]),
                provider_id: text(&h[23..38]).trim_end().to_string(),
                date_of_service: text(&h[38..46]),
                software_id: text(&h[46..56]).trim_end().to_string(),
            }),
            56,
        ));
    }
    if bytes.len() >= 2 && &bytes[0..2] == b"D0" {
        // 23 bytes, or 31 with the date of service.
        let end = bytes.iter().position(|&b| is_sep(b)).unwrap_or(bytes.len());
        let len = if end >= 31 && digits(&bytes[23..31]) { 31 } else { 23 };
        if end < 23 {
            return Err(ReadError::ShortHeader(end));
        }
        let h = &bytes[..len];
        let count = h[4];
        if !(b'1'..=b'4').contains(&count) {
            return Err(ReadError::BadHeader("transaction count (1-4)"));
        }
        if h[5] != b'A' && h[5] != b'R' {
            return Err(ReadError::BadHeader("header response status (A or R)"));
        }
        return Ok((
            Header::Response(ResponseHeader {
                version: text(&h[0..2]),
                transaction_code: text(&h[2..4]),
                transaction_count: count - b'0',
                status: text(&h[5..6]),
                provider_id_qualifier: text(&h[6..8]),
                provider_id: text(&h[8..23]).trim_end().to_string(),
                date_of_service: (len == 31).then(|| text(&h[23..31])),
            }),
            len,
        ));
    }
    if bytes.len() < 23 {
        return Err(ReadError::ShortHeader(bytes.len()));
    }
    Err(ReadError::NotD0)
}

/// Reads one transmission.
pub fn read(bytes: &[u8], limits: &Limits) -> Result<Transmission, ReadError> {
    if bytes.len() > limits.max_bytes {
        return Err(ReadError::TooLarge(limits.max_bytes));
    }
    if let Some(at) = bytes.iter().position(|&b| !(is_sep(b) || (0x20..0x7F).contains(&b))) {
        return Err(ReadError::NotText(at));
    }
    let (header, at) = read_header(bytes)?;
    let header_raw = text(&bytes[..at]);
    let mut segments: Vec<Segment> = Vec::new();
    let mut group = 0usize;
    let mut lead: Vec<u8> = Vec::new();
    let mut fields = 0usize;
    let mut i = at;
    while i < bytes.len() {
        let b = bytes[i];
        if is_sep(b) {
            if b == GROUP {
                group += 1;
            }
            lead.push(b);
            i += 1;
            continue;
        }
        // A token runs to the next separator.
        let end = bytes[i..].iter().position(|&b| is_sep(b)).map_or(bytes.len(), |n| i + n);
        let token = &bytes[i..end];
        if token.len() == 4 && token.starts_with(b"AM") {
            if segments.len() >= limits.max_segments {
                return Err(ReadError::TooManySegments(limits.max_segments));
            }
            segments.push(Segment {
                lead: std::mem::take(&mut lead),
                id: text(&token[2..]),
                group,
                fields: Vec::new(),
            });
        } else {
            let Some(seg) = segments.last_mut() else { return Err(ReadError::FieldOutsideSegment(i)) };
            fields += 1;
            if fields > limits.max_fields {
                return Err(ReadError::TooManyFields(limits.max_fields));
            }
            let id = text(&token[..token.len().min(2)]);
            if token.len() > limits.max_field_bytes {
                return Err(ReadError::FieldTooLong(id, limits.max_field_bytes));
            }
            // The separators before a field: one 0x1C normally; any other
            // run is kept as the segment's trailing lead (rare).
            let sep = match lead.as_slice() {
                [] => None,
                [s] => Some(*s),
                _ => return Err(ReadError::FieldOutsideSegment(i)),
            };
            lead.clear();
            seg.fields.push(Field { sep, id, value: text(token.get(2..).unwrap_or_default()) });
        }
        i = end;
    }
    Ok(Transmission { header_raw, header, segments, trailer: lead })
}

/// Fuzzing entry point (also driven by the property tests): never a
/// panic, and whatever reads writes back byte for byte.
#[doc(hidden)]
pub fn fuzz_ncpdp(data: &[u8]) {
    if let Ok(b) = batch::read_batch(data, 100) {
        let details: Vec<(String, Vec<u8>)> =
            b.details.iter().map(|d| (d.reference.clone(), d.transmission.to_vec())).collect();
        let again = batch::write_batch(&b.header, &details, &b.trailer_message);
        assert!(batch::read_batch(&again, 100).is_ok(), "a batch Clearway writes reads back");
    }
    if let Ok(t) = read(data, &Limits::default()) {
        assert_eq!(t.to_bytes(), data, "a transmission writes back as read");
        let _ = views::request(&t);
        let _ = views::response(&t);
        let rejects = validate::validate(&t);
        let groups = t.groups().min(4);
        let outcomes: Vec<answer::Outcome> =
            (0..groups).map(|_| answer::Outcome::rejected(rejects.iter().map(|r| r.code))).collect();
        let response = answer::respond(&t, &outcomes).to_bytes();
        let back = read(&response, &Limits::default()).expect("a response Clearway writes reads back");
        assert_eq!(back.to_bytes(), response);
        let _ = validate::claim_identity(&t, 1);
    } else if let Err(e) = read(data, &Limits::default()) {
        let response = answer::reject_transmission(None, data, &validate::read_rejects(&e)).to_bytes();
        assert!(read(&response, &Limits::default()).is_ok(), "a rejection reads back");
    }
}

#[cfg(test)]
mod tests;
