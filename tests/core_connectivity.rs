//! CAQH CORE connectivity over real TCP: SOAP 1.2 and HTTP MIME multipart
//! envelopes around real-time 270/271 and 276/277; malformed envelopes,
//! wrong credentials, envelope errors, duplicate PayloadIDs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use clearway_formats::x12::synth::{self, Kind};
use support::{Scratch, Server, request};

fn gen_x12(kind: Kind, count: usize, seed: u64) -> String {
    let mut v = Vec::new();
    synth::write(&mut v, kind, count, seed).unwrap();
    String::from_utf8(v).unwrap()
}

const SOAP: &str = "application/soap+xml; charset=utf-8";

fn soap(user: &str, password: &str, payload_type: &str, payload_id: &str, version: &str, payload: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://www.w3.org/2003/05/soap-envelope" xmlns:cor="http://www.caqh.org/SOAP/WSDL/CORERule2.2.0.xsd">
 <soapenv:Header>
  <wsse:Security xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd">
   <wsse:UsernameToken><wsse:Username>{user}</wsse:Username><wsse:Password Type="PasswordText">{password}</wsse:Password></wsse:UsernameToken>
  </wsse:Security>
 </soapenv:Header>
 <soapenv:Body>
  <cor:COREEnvelopeRealTimeRequest>
   <PayloadType>{payload_type}</PayloadType>
   <ProcessingMode>RealTime</ProcessingMode>
   <PayloadID>{payload_id}</PayloadID>
   <TimeStamp>2024-01-15T12:00:00Z</TimeStamp>
   <SenderID>PROVIDER1</SenderID>
   <ReceiverID>CLEARWAY</ReceiverID>
   <CORERuleVersion>{version}</CORERuleVersion>
   <Payload><![CDATA[{payload}]]></Payload>
  </cor:COREEnvelopeRealTimeRequest>
 </soapenv:Body>
</soapenv:Envelope>"#
    )
}

/// The text of `<name>…</name>` (or of a MIME field) in a response.
fn field(body: &str, name: &str) -> Option<String> {
    if let Some(start) = body.find(&format!("<{name}>")) {
        let rest = &body[start + name.len() + 2..];
        let end = rest.find(&format!("</{name}>"))?;
        let v = &rest[..end];
        return Some(v.trim_start_matches("<![CDATA[").trim_end_matches("]]>").to_string());
    }
    let marker = format!("name=\"{name}\"\r\n\r\n");
    let start = body.find(&marker)? + marker.len();
    let end = body[start..].find("\r\n--")?;
    Some(body[start..start + end].to_string())
}

fn post(server: &Server, path: &str, content_type: &str, body: &[u8]) -> support::Response {
    request(server.http, "POST", path, &[("Content-Type", content_type)], body)
}

#[test]
fn soap_envelopes() {
    let scratch = Scratch::new();
    let key = scratch.partner("clinic", false);
    let server = Server::start(&scratch, None, &[]);
    let inquiry = gen_x12(Kind::Eligibility270, 1, 3);
    let id = "f81d4fae-7dec-11d0-a765-00a0c91e6bf6";

    let r = post(
        &server,
        "/core/soap",
        SOAP,
        soap("clinic", &key, "X12_270_Request_005010X279A1", id, "2.2.0", &inquiry).as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.header("content-type").unwrap().starts_with("application/soap+xml"));
    let body = r.text();
    assert!(body.contains("COREEnvelopeRealTimeResponse"), "{body}");
    assert_eq!(field(&body, "ErrorCode").as_deref(), Some("Success"), "{body}");
    assert_eq!(field(&body, "PayloadType").as_deref(), Some("X12_271_Response_005010X279A1"));
    assert_eq!(field(&body, "PayloadID").as_deref(), Some(id));
    assert_eq!(field(&body, "SenderID").as_deref(), Some("CLEARWAY"), "sender and receiver swapped");
    assert_eq!(field(&body, "ReceiverID").as_deref(), Some("PROVIDER1"));
    let payload = field(&body, "Payload").unwrap();
    assert!(payload.starts_with("ISA") && payload.contains("ST*271*"), "{payload}");

    // The same PayloadID and payload again: the first answer. A different
    // payload under it: refused.
    let again = post(
        &server,
        "/core/soap",
        SOAP,
        soap("clinic", &key, "X12_270_Request_005010X279A1", id, "2.2.0", &inquiry).as_bytes(),
    );
    assert_eq!(again.status, 200);
    assert_eq!(field(&again.text(), "Payload"), Some(payload.clone()), "a retransmission gets the same answer");
    let other = gen_x12(Kind::Eligibility270, 1, 4);
    let dup = post(
        &server,
        "/core/soap",
        SOAP,
        soap("clinic", &key, "X12_270_Request_005010X279A1", id, "2.2.0", &other).as_bytes(),
    );
    assert_eq!(dup.status, 400);
    assert_eq!(field(&dup.text(), "ErrorCode").as_deref(), Some("PayloadIDDuplicate"));

    // Wrong credentials.
    for (user, password) in [("clinic", "not-the-key"), ("someone-else", key.as_str()), ("", "")] {
        let r = post(
            &server,
            "/core/soap",
            SOAP,
            soap(
                user,
                password,
                "X12_270_Request_005010X279A1",
                "0b1c1f5a-7dec-41d0-a765-00a0c91e6bf6",
                "2.2.0",
                &inquiry,
            )
            .as_bytes(),
        );
        assert_eq!(r.status, 401, "{user}");
        assert_eq!(field(&r.text(), "ErrorCode").as_deref(), Some("UnAuthorized"));
    }

    // Envelope errors.
    let r = post(
        &server,
        "/core/soap",
        SOAP,
        soap("clinic", &key, "X12_270_Request_005010X279A1", "1b1c1f5a-7dec-41d0-a765-00a0c91e6bf6", "2.1.0", &inquiry)
            .as_bytes(),
    );
    assert_eq!((r.status, field(&r.text(), "ErrorCode").as_deref()), (400, Some("VersionMismatch")));
    let r = post(
        &server,
        "/core/soap",
        SOAP,
        soap("clinic", &key, "X12_837_Request_005010X222A1", "2b1c1f5a-7dec-41d0-a765-00a0c91e6bf6", "2.2.0", &inquiry)
            .as_bytes(),
    );
    assert_eq!((r.status, field(&r.text(), "ErrorCode").as_deref()), (400, Some("PayloadTypeNotSupported")));
    let r = post(
        &server,
        "/core/soap",
        SOAP,
        soap("clinic", &key, "X12_270_Request_005010X279A1", "", "2.2.0", &inquiry).as_bytes(),
    );
    assert_eq!(field(&r.text(), "ErrorCode").as_deref(), Some("PayloadIDIllegal"));

    // Malformed envelopes: a SOAP Sender fault.
    for bad in
        ["<not-closed>", "plain text", "<soapenv:Envelope xmlns:soapenv=\"x\"><soapenv:Body/></soapenv:Envelope>"]
    {
        let r = post(&server, "/core/soap", SOAP, bad.as_bytes());
        assert_eq!(r.status, 400, "{bad}");
        assert!(r.text().contains("soapenv:Sender"), "{}", r.text());
    }

    // A broken X12 payload in a good envelope: the TA1 comes back.
    let broken = &inquiry[..150];
    let r = post(
        &server,
        "/core/soap",
        SOAP,
        soap("clinic", &key, "X12_270_Request_005010X279A1", "3b1c1f5a-7dec-41d0-a765-00a0c91e6bf6", "2.2.0", broken)
            .as_bytes(),
    );
    let body = r.text();
    assert_eq!(field(&body, "ErrorCode").as_deref(), Some("Success"), "{body}");
    assert_eq!(field(&body, "PayloadType").as_deref(), Some("X12_TA1_Response_00501X231A1"), "{body}");
    assert!(field(&body, "Payload").unwrap().contains("TA1*"));

    // Claim status over SOAP.
    let status = gen_x12(Kind::Status276, 1, 3);
    let r = post(
        &server,
        "/core/soap",
        SOAP,
        soap("clinic", &key, "X12_276_Request_005010X212", "4b1c1f5a-7dec-41d0-a765-00a0c91e6bf6", "2.2.0", &status)
            .as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(field(&r.text(), "PayloadType").as_deref(), Some("X12_277_Response_005010X212"));
    assert!(field(&r.text(), "Payload").unwrap().contains("STC*D0:35"), "no such claim: {}", r.text());
}

#[test]
fn mime_envelopes() {
    let scratch = Scratch::new();
    let key = scratch.partner("clinic", false);
    let server = Server::start(&scratch, None, &[]);
    let inquiry = gen_x12(Kind::Eligibility270, 1, 3);
    let form = |password: &str, payload_id: &str| {
        let b = "XbOuNdArYx";
        let mut body = String::new();
        for (name, value) in [
            ("PayloadType", "X12_270_Request_005010X279A1"),
            ("ProcessingMode", "RealTime"),
            ("PayloadID", payload_id),
            ("TimeStamp", "2024-01-15T12:00:00Z"),
            ("UserName", "clinic"),
            ("Password", password),
            ("SenderID", "PROVIDER1"),
            ("ReceiverID", "CLEARWAY"),
            ("CORERuleVersion", "2.2.0"),
            ("Payload", inquiry.as_str()),
        ] {
            body.push_str(&format!("--{b}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"));
        }
        body.push_str(&format!("--{b}--\r\n"));
        (format!("multipart/form-data; boundary={b}"), body)
    };
    let (ct, body) = form(&key, "5b1c1f5a-7dec-41d0-a765-00a0c91e6bf6");
    let r = post(&server, "/core/mime", &ct, body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.header("content-type").unwrap().starts_with("multipart/form-data; boundary="));
    let text = r.text();
    assert_eq!(field(&text, "ErrorCode").as_deref(), Some("Success"), "{text}");
    assert_eq!(field(&text, "PayloadType").as_deref(), Some("X12_271_Response_005010X279A1"));
    assert!(field(&text, "Payload").unwrap().contains("ST*271*"));

    let (ct, body) = form("wrong", "6b1c1f5a-7dec-41d0-a765-00a0c91e6bf6");
    let r = post(&server, "/core/mime", &ct, body.as_bytes());
    assert_eq!(r.status, 401);
    assert_eq!(field(&r.text(), "ErrorCode").as_deref(), Some("UnAuthorized"));

    let r = post(&server, "/core/mime", "multipart/form-data; boundary=zz", b"garbage without parts");
    assert!(r.status == 400 || r.status == 401, "{}", r.status);
}

#[test]
fn batch_mode_hands_the_payload_to_the_async_path() {
    let scratch = Scratch::new();
    let key = scratch.partner("clinic", false);
    let server = Server::start(&scratch, None, &[]);
    let claims = gen_x12(Kind::Professional837, 3, 11);
    let id = "7b1c1f5a-7dec-41d0-a765-00a0c91e6bf6";
    let envelope = soap("clinic", &key, "X12_837_Request_005010X222A1", id, "2.2.0", &claims)
        .replace("<ProcessingMode>RealTime</ProcessingMode>", "<ProcessingMode>Batch</ProcessingMode>")
        .replace("COREEnvelopeRealTimeRequest", "COREEnvelopeBatchSubmission");
    let r = post(&server, "/core/soap", SOAP, envelope.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.text();
    assert_eq!(field(&body, "ErrorCode").as_deref(), Some("Success"), "{body}");
    assert_eq!(field(&body, "ProcessingMode").as_deref(), Some("Batch"));
    let message = field(&body, "ErrorMessage").unwrap();
    let tx = message.strip_prefix("accepted as transaction ").expect("names the transaction").to_string();
    let c = support::Client { addr: server.http, key };
    let done = c.wait_terminal(&tx);
    assert_eq!(done["status"], "accepted", "{done}");
    assert_eq!(c.ack_kinds(&tx), vec!["277ca".to_string(), "999".to_string()]);
    // The same PayloadID again is the same transaction, not a second one.
    let again = post(&server, "/core/soap", SOAP, envelope.as_bytes());
    assert!(field(&again.text(), "ErrorMessage").unwrap().ends_with(&tx), "{}", again.text());
}
