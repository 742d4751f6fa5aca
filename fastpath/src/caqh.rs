//! CAQH CORE connectivity (vC2.2.0) envelopes for real-time 270/271 and
//! 276/277: SOAP 1.2 with a WS-Security UsernameToken, and HTTP MIME
//! multipart. Pure: reads and writes envelopes; the exchange itself is
//! [`crate::FastPath::core_exchange`].
//!
//! Field names, PayloadType strings and `Success` are as seen on the wire
//! (`../shared/STANDARDS.md` §1). The rule's full error-code table was not
//! available to check; the codes below for envelope problems follow its
//! naming and are listed in `docs/specs/core-connectivity.md`.

use clearway_core::Sensitive;
use quick_xml::events::Event;

/// The CORE rule version served.
pub const RULE_VERSION: &str = "2.2.0";
/// The CORE envelope namespace (vC2.2.0).
pub const CORE_NS: &str = "http://www.caqh.org/SOAP/WSDL/CORERule2.2.0.xsd";
const SOAP12_NS: &str = "http://www.w3.org/2003/05/soap-envelope";

/// Request payload types served, and the response payload type of each.
pub const PAYLOAD_TYPES: [(&str, &str); 2] = [
    ("X12_270_Request_005010X279A1", "X12_271_Response_005010X279A1"),
    ("X12_276_Request_005010X212", "X12_277_Response_005010X212"),
];
/// The payload type of a 999 sent instead of the response.
pub const PAYLOAD_999: &str = "X12_999_Response_005010X231A1";
/// The payload type of a TA1 sent instead of the response.
pub const PAYLOAD_TA1: &str = "X12_TA1_Response_00501X231A1";

/// A CORE real-time request envelope.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CoreRequest {
    pub payload_type: Option<String>,
    pub processing_mode: Option<String>,
    pub payload_id: Option<String>,
    pub timestamp: Option<String>,
    pub sender_id: Option<String>,
    pub receiver_id: Option<String>,
    pub rule_version: Option<String>,
    pub payload: Option<Vec<u8>>,
    pub username: Option<String>,
    pub password: Option<Sensitive<String>>,
}

/// A CORE real-time response envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreResponse {
    pub payload_type: String,
    pub processing_mode: String,
    pub payload_id: String,
    pub timestamp: String,
    pub sender_id: String,
    pub receiver_id: String,
    pub payload: Option<Vec<u8>>,
    pub error_code: &'static str,
    pub error_message: String,
}

/// An envelope problem: its CORE error code and a message without PHI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeError {
    pub code: &'static str,
    pub message: String,
}

impl EnvelopeError {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        EnvelopeError { code, message: message.into() }
    }
}

impl CoreResponse {
    /// A successful real-time answer to `req` with nothing in it yet: the
    /// PayloadID echoed, sender and receiver swapped, stamped `now` (see
    /// [`timestamp`]). The other fields are set with struct update syntax.
    pub fn answering(req: &CoreRequest, now: &str) -> Self {
        CoreResponse {
            payload_type: String::new(),
            processing_mode: "RealTime".into(),
            payload_id: req.payload_id.clone().unwrap_or_default(),
            timestamp: now.to_string(),
            sender_id: req.receiver_id.clone().unwrap_or_default(),
            receiver_id: req.sender_id.clone().unwrap_or_default(),
            payload: None,
            error_code: "Success",
            error_message: String::new(),
        }
    }

    /// An error answer to `req` (the fields it carried are echoed).
    pub fn error(req: &CoreRequest, e: &EnvelopeError, now: &str) -> Self {
        CoreResponse {
            payload_type: req
                .payload_type
                .as_deref()
                .and_then(response_type)
                .unwrap_or("CoreEnvelopeError")
                .to_string(),
            processing_mode: req.processing_mode.clone().unwrap_or_else(|| "RealTime".into()),
            error_code: e.code,
            error_message: e.message.clone(),
            ..CoreResponse::answering(req, now)
        }
    }
}

/// The CORE TimeStamp of `t`: `YYYY-MM-DDTHH:MM:SSZ`, UTC, whole seconds.
pub fn timestamp(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// The response payload type for a request payload type.
pub fn response_type(request: &str) -> Option<&'static str> {
    PAYLOAD_TYPES.iter().find(|(q, _)| *q == request).map(|(_, r)| *r)
}

/// Checks the envelope's metadata (everything but the credentials).
pub fn check(req: &CoreRequest) -> Result<(), EnvelopeError> {
    let required = [
        ("PayloadType", req.payload_type.is_some()),
        ("ProcessingMode", req.processing_mode.is_some()),
        ("PayloadID", req.payload_id.is_some()),
        ("TimeStamp", req.timestamp.is_some()),
        ("SenderID", req.sender_id.is_some()),
        ("ReceiverID", req.receiver_id.is_some()),
        ("CORERuleVersion", req.rule_version.is_some()),
        ("Payload", req.payload.as_ref().is_some_and(|p| !p.is_empty())),
    ];
    if let Some((name, _)) = required.iter().find(|(_, present)| !present) {
        return Err(EnvelopeError::new(required_code(name), format!("{name} is required")));
    }
    if req.rule_version.as_deref() != Some(RULE_VERSION) {
        return Err(EnvelopeError::new("VersionMismatch", format!("CORERuleVersion must be {RULE_VERSION}")));
    }
    match req.processing_mode.as_deref() {
        Some("RealTime") => {}
        Some("Batch") => {
            // Any X12 request payload; it goes to the durable async path.
            let t = req.payload_type.as_deref().unwrap_or("");
            if !(t.starts_with("X12_") && t.contains("_Request_")) {
                return Err(EnvelopeError::new(
                    "PayloadTypeNotSupported",
                    "a batch PayloadType is X12_<set>_Request_<version>",
                ));
            }
        }
        _ => return Err(EnvelopeError::new("ProcessingModeNotSupported", "ProcessingMode must be RealTime or Batch")),
    }
    if req.processing_mode.as_deref() == Some("RealTime")
        && req.payload_type.as_deref().and_then(response_type).is_none()
    {
        return Err(EnvelopeError::new(
            "PayloadTypeNotSupported",
            "PayloadType must be X12_270_Request_005010X279A1 or X12_276_Request_005010X212",
        ));
    }
    let id = req.payload_id.as_deref().unwrap_or("");
    if !is_uuid(id) {
        return Err(EnvelopeError::new("PayloadIDIllegal", "PayloadID must be a UUID"));
    }
    let ts = req.timestamp.as_deref().unwrap_or("");
    if time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339).is_err() {
        return Err(EnvelopeError::new("TimeStampIllegal", "TimeStamp must be an xsd:dateTime (UTC)"));
    }
    Ok(())
}

fn required_code(field: &str) -> &'static str {
    match field {
        "PayloadType" => "PayloadTypeRequired",
        "ProcessingMode" => "ProcessingModeRequired",
        "PayloadID" => "PayloadIDRequired",
        "TimeStamp" => "TimeStampRequired",
        "SenderID" => "SenderIDRequired",
        "ReceiverID" => "ReceiverIDRequired",
        "CORERuleVersion" => "CORERuleVersionRequired",
        _ => "PayloadRequired",
    }
}

/// An RFC 4122 UUID in its text form (any version).
fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Largest envelope read.
pub const MAX_ENVELOPE_BYTES: usize = 2 * 1024 * 1024;

/// Reads a SOAP 1.2 `COREEnvelopeRealTimeRequest`, namespace prefixes
/// notwithstanding. `Err` is a malformed envelope (answered with a SOAP
/// Sender fault).
pub fn parse_soap(xml: &[u8]) -> Result<CoreRequest, String> {
    if xml.len() > MAX_ENVELOPE_BYTES {
        return Err("envelope too large".into());
    }
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut req = CoreRequest::default();
    let mut path: Vec<Vec<u8>> = Vec::new();
    let mut text = Vec::new();
    let mut saw_envelope = false;
    let mut saw_request = false;
    let mut buf = Vec::new();
    loop {
        let ev = reader.read_event_into(&mut buf).map_err(|e| format!("not well-formed XML: {e}"))?;
        match ev {
            Event::Start(e) => {
                let name = e.local_name().as_ref().to_vec();
                if path.is_empty() {
                    if name != b"Envelope" {
                        return Err("the root element is not a SOAP Envelope".into());
                    }
                    saw_envelope = true;
                }
                if name == b"COREEnvelopeRealTimeRequest" || name == b"COREEnvelopeBatchSubmission" {
                    saw_request = true;
                }
                if path.len() > 16 {
                    return Err("nesting too deep".into());
                }
                path.push(name);
                text.clear();
            }
            Event::Text(t) => {
                let t = t.decode().map_err(|e| format!("bad text: {e}"))?;
                let t = quick_xml::escape::unescape(&t).map_err(|e| format!("bad text: {e}"))?;
                text.extend_from_slice(t.as_bytes());
            }
            Event::GeneralRef(r) => {
                let name = r.decode().map_err(|e| format!("bad reference: {e}"))?;
                let entity = format!("&{name};");
                let t = quick_xml::escape::unescape(&entity).map_err(|e| format!("bad reference: {e}"))?;
                text.extend_from_slice(t.as_bytes());
            }
            Event::CData(c) => text.extend_from_slice(&c),
            Event::End(_) => {
                let Some(name) = path.pop() else { return Err("unbalanced element".into()) };
                let value = || String::from_utf8_lossy(&text).trim().to_string();
                let in_request = path
                    .last()
                    .is_some_and(|p| p == b"COREEnvelopeRealTimeRequest" || p == b"COREEnvelopeBatchSubmission");
                match (in_request, name.as_slice()) {
                    (true, b"PayloadType") => req.payload_type = Some(value()),
                    (true, b"ProcessingMode") => req.processing_mode = Some(value()),
                    (true, b"PayloadID") => req.payload_id = Some(value()),
                    (true, b"TimeStamp") => req.timestamp = Some(value()),
                    (true, b"SenderID") => req.sender_id = Some(value()),
                    (true, b"ReceiverID") => req.receiver_id = Some(value()),
                    (true, b"CORERuleVersion") => req.rule_version = Some(value()),
                    (true, b"Payload") => req.payload = Some(trim_bytes(&text).to_vec()),
                    (_, b"Username") if path.last().is_some_and(|p| p == b"UsernameToken") => {
                        req.username = Some(value());
                    }
                    (_, b"Password") if path.last().is_some_and(|p| p == b"UsernameToken") => {
                        req.password = Some(Sensitive::new(value()));
                    }
                    _ => {}
                }
                text.clear();
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if !path.is_empty() {
        return Err("the envelope ends early".into());
    }
    if !saw_envelope || !saw_request {
        return Err("no COREEnvelopeRealTimeRequest or COREEnvelopeBatchSubmission in the SOAP Body".into());
    }
    Ok(req)
}

fn trim_bytes(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !c.is_ascii_whitespace()).map_or(start, |e| e + 1);
    &b[start..end]
}

fn xml_text(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

/// The SOAP 1.2 `COREEnvelopeRealTimeResponse`.
pub fn soap_response(r: &CoreResponse) -> String {
    let payload = r.payload.as_deref().map(|p| {
        // A CDATA section cannot hold "]]>"; X12 never does, but be safe.
        let p = String::from_utf8_lossy(p).replace("]]>", "]]]]><![CDATA[>");
        format!("<Payload><![CDATA[{p}]]></Payload>")
    });
    format!(
        concat!(
            r#"<?xml version="1.0" encoding="UTF-8"?>"#,
            r#"<soapenv:Envelope xmlns:soapenv="{soap}"><soapenv:Body>"#,
            r#"<cor:COREEnvelopeRealTimeResponse xmlns:cor="{ns}">"#,
            "<PayloadType>{pt}</PayloadType><ProcessingMode>{pm}</ProcessingMode><PayloadID>{id}</PayloadID>",
            "<TimeStamp>{ts}</TimeStamp><SenderID>{s}</SenderID><ReceiverID>{rc}</ReceiverID>",
            "<CORERuleVersion>{v}</CORERuleVersion>{payload}",
            "<ErrorCode>{code}</ErrorCode><ErrorMessage>{msg}</ErrorMessage>",
            "</cor:COREEnvelopeRealTimeResponse></soapenv:Body></soapenv:Envelope>"
        ),
        soap = SOAP12_NS,
        ns = CORE_NS,
        pt = xml_text(&r.payload_type),
        pm = xml_text(&r.processing_mode),
        id = xml_text(&r.payload_id),
        ts = xml_text(&r.timestamp),
        s = xml_text(&r.sender_id),
        rc = xml_text(&r.receiver_id),
        v = RULE_VERSION,
        payload = payload.unwrap_or_default(),
        code = r.error_code,
        msg = xml_text(&r.error_message),
    )
}

/// A SOAP 1.2 Sender fault, for an envelope that cannot be read.
pub fn soap_fault(reason: &str) -> String {
    format!(
        concat!(
            r#"<?xml version="1.0" encoding="UTF-8"?>"#,
            r#"<soapenv:Envelope xmlns:soapenv="{soap}"><soapenv:Body><soapenv:Fault>"#,
            "<soapenv:Code><soapenv:Value>soapenv:Sender</soapenv:Value></soapenv:Code>",
            r#"<soapenv:Reason><soapenv:Text xml:lang="en">{reason}</soapenv:Text></soapenv:Reason>"#,
            "</soapenv:Fault></soapenv:Body></soapenv:Envelope>"
        ),
        soap = SOAP12_NS,
        reason = xml_text(reason),
    )
}

/// A CORE request from HTTP MIME multipart form fields (name, value).
pub fn from_mime_fields<'a>(fields: impl IntoIterator<Item = (&'a str, Vec<u8>)>) -> CoreRequest {
    let mut req = CoreRequest::default();
    for (name, value) in fields {
        let text = || String::from_utf8_lossy(&value).trim().to_string();
        match name {
            "PayloadType" => req.payload_type = Some(text()),
            "ProcessingMode" => req.processing_mode = Some(text()),
            "PayloadID" => req.payload_id = Some(text()),
            "TimeStamp" => req.timestamp = Some(text()),
            "SenderID" => req.sender_id = Some(text()),
            "ReceiverID" => req.receiver_id = Some(text()),
            "CORERuleVersion" => req.rule_version = Some(text()),
            "UserName" => req.username = Some(text()),
            "Password" => req.password = Some(Sensitive::new(text())),
            "Payload" => req.payload = Some(trim_bytes(&value).to_vec()),
            _ => {}
        }
    }
    req
}

/// The HTTP MIME multipart response: (content type, body).
pub fn mime_response(r: &CoreResponse, boundary: &str) -> (String, Vec<u8>) {
    let mut body = Vec::new();
    let mut field = |name: &str, value: &[u8]| {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(value);
        body.extend_from_slice(b"\r\n");
    };
    field("PayloadType", r.payload_type.as_bytes());
    field("ProcessingMode", r.processing_mode.as_bytes());
    field("PayloadID", r.payload_id.as_bytes());
    field("TimeStamp", r.timestamp.as_bytes());
    field("SenderID", r.sender_id.as_bytes());
    field("ReceiverID", r.receiver_id.as_bytes());
    field("CORERuleVersion", RULE_VERSION.as_bytes());
    if let Some(p) = &r.payload {
        field("Payload", p);
    }
    field("ErrorCode", r.error_code.as_bytes());
    field("ErrorMessage", r.error_message.as_bytes());
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(fields: &str) -> String {
        format!(
            r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Header><wsse:Security xmlns:wsse="x"><wsse:UsernameToken><wsse:Username>acme</wsse:Username><wsse:Password>se&amp;cret</wsse:Password></wsse:UsernameToken></wsse:Security></s:Header><s:Body><ns1:COREEnvelopeRealTimeRequest xmlns:ns1="{CORE_NS}">{fields}</ns1:COREEnvelopeRealTimeRequest></s:Body></s:Envelope>"#
        )
    }

    const FIELDS: &str = "<PayloadType>X12_270_Request_005010X279A1</PayloadType><ProcessingMode>RealTime</ProcessingMode><PayloadID>f81d4fae-7dec-11d0-a765-00a0c91e6bf6</PayloadID><TimeStamp>2024-01-15T12:00:00Z</TimeStamp><SenderID>PROV1</SenderID><ReceiverID>CLEARWAY</ReceiverID><CORERuleVersion>2.2.0</CORERuleVersion><Payload><![CDATA[ISA*00~]]></Payload>";

    #[test]
    fn reads_a_soap_request_with_any_prefixes() {
        let r = parse_soap(envelope(FIELDS).as_bytes()).unwrap();
        assert_eq!(r.payload_type.as_deref(), Some("X12_270_Request_005010X279A1"));
        assert_eq!(r.payload.as_deref(), Some(&b"ISA*00~"[..]));
        assert_eq!(r.username.as_deref(), Some("acme"));
        assert_eq!(r.password.as_ref().map(|p| p.expose().as_str()), Some("se&cret"));
        assert!(check(&r).is_ok());
    }

    #[test]
    fn envelope_problems_have_codes() {
        for (broken, code) in [
            (FIELDS.replace("<CORERuleVersion>2.2.0", "<CORERuleVersion>2.1.0"), "VersionMismatch"),
            (FIELDS.replace("<PayloadID>f81d4fae-7dec-11d0-a765-00a0c91e6bf6</PayloadID>", ""), "PayloadIDRequired"),
            (FIELDS.replace("f81d4fae-7dec-11d0-a765-00a0c91e6bf6", "not-a-uuid"), "PayloadIDIllegal"),
            (FIELDS.replace("RealTime", "Interactive"), "ProcessingModeNotSupported"),
            (
                FIELDS.replace("RealTime", "Batch").replace("X12_270_Request_005010X279A1", "PDF"),
                "PayloadTypeNotSupported",
            ),
            (FIELDS.replace("X12_270_Request_005010X279A1", "X12_837_Request_005010X222A1"), "PayloadTypeNotSupported"),
            (FIELDS.replace("2024-01-15T12:00:00Z", "yesterday"), "TimeStampIllegal"),
        ] {
            let r = parse_soap(envelope(&broken).as_bytes()).unwrap();
            assert_eq!(check(&r).map_err(|e| e.code), Err(code));
        }
    }

    #[test]
    fn malformed_envelopes_are_refused() {
        for bad in ["", "<a>", "<x></x>", "not xml at all", "<s:Envelope xmlns:s='x'><s:Body></s:Body></s:Envelope>"] {
            assert!(parse_soap(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn responses_round_trip() {
        let resp = CoreResponse {
            payload_type: "X12_271_Response_005010X279A1".into(),
            processing_mode: "RealTime".into(),
            payload_id: "f81d4fae-7dec-11d0-a765-00a0c91e6bf6".into(),
            timestamp: "2024-01-15T12:00:01Z".into(),
            sender_id: "CLEARWAY".into(),
            receiver_id: "PROV1".into(),
            payload: Some(b"ISA*00~".to_vec()),
            error_code: "Success",
            error_message: "".into(),
        };
        let xml = soap_response(&resp);
        assert!(xml.contains("<Payload><![CDATA[ISA*00~]]></Payload>"));
        assert!(xml.contains("<ErrorCode>Success</ErrorCode>"));
        let (ct, body) = mime_response(&resp, "b0undary");
        assert_eq!(ct, "multipart/form-data; boundary=b0undary");
        assert!(String::from_utf8_lossy(&body).contains("name=\"ErrorCode\"\r\n\r\nSuccess\r\n"));
    }
}
