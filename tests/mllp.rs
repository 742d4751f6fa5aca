//! MLLP over real TCP: ACK after the durable write, original and enhanced
//! modes, invalid messages answered and still stored, pipelining in order,
//! framing errors, duplicates.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;
use support::{Client, Scratch, Server, frame, hl7_field, read_frame};

/// An ADT^A01; `ack_mode` empty for original mode (MSH-15 and MSH-16
/// absent), or an MSH-15 value for enhanced mode.
fn adt(control: &str, ack_mode: &str, birth: &str) -> String {
    let modes = if ack_mode.is_empty() { String::new() } else { format!("|||{ack_mode}|NE") };
    format!(
        "MSH|^~\\&|LAB|NORTH|CLEARWAY|HUB|20240101120000||ADT^A01^ADT_A01|{control}|P|2.5.1{modes}\r\
         EVN|A01|20240101120000\r\
         PID|1||12345^^^NORTH^MR||SAMPLE^PAT||{birth}|F\r\
         PV1|1|I\r"
    )
}

fn connect(server: &Server) -> TcpStream {
    let s = TcpStream::connect(server.mllp.expect("mllp listener")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s
}

fn start() -> (Scratch, Server, Client) {
    let scratch = Scratch::new();
    let key = scratch.partner("lab", false);
    let server = Server::start(&scratch, Some("lab"), &[]);
    let client = Client { addr: server.http, key };
    (scratch, server, client)
}

#[test]
fn original_mode_acks_and_invalid_messages_are_stored() {
    let (_s, server, c) = start();
    let mut s = connect(&server);
    s.write_all(&frame(adt("MSG001", "", "19800101").as_bytes())).unwrap();
    let ack = read_frame(&mut s).unwrap();
    assert_eq!(hl7_field(&ack, "MSA", 1).as_deref(), Some("AA"));
    assert_eq!(hl7_field(&ack, "MSA", 2).as_deref(), Some("MSG001"));
    assert_eq!(hl7_field(&ack, "MSH", 8).as_deref().map(|t| t.starts_with("ACK")), Some(true));

    // No patient identifier (PID-3 is required): AE with ERR, and the
    // message is still stored and processed (its application ack appears
    // in the feed).
    let invalid = adt("MSG002", "", "19800101").replace("12345^^^NORTH^MR", "");
    s.write_all(&frame(invalid.as_bytes())).unwrap();
    let ack = read_frame(&mut s).unwrap();
    let code = hl7_field(&ack, "MSA", 1).unwrap();
    assert!(code == "AE" || code == "AR", "{code}");
    assert!(hl7_field(&ack, "ERR", 0).is_some(), "ERR segment present");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let tx = loop {
        let feed = c.get("/v1/acks?wait=2").json();
        let ids: Vec<String> =
            feed["acks"].as_array().unwrap().iter().map(|a| a["transactionId"].as_str().unwrap().to_string()).collect();
        let mut found = None;
        for id in ids {
            let t = c.get(&format!("/v1/transactions/{id}")).json();
            if t["status"] == "rejected" && t["channel"] == "mllp" {
                found = Some(t);
            }
        }
        if let Some(t) = found {
            break t;
        }
        assert!(std::time::Instant::now() < deadline, "the invalid message was stored and processed");
    };
    assert!(tx["issues"].as_array().is_some_and(|i| !i.is_empty()));
}

#[test]
fn enhanced_mode_commit_ack_then_application_ack() {
    let (_s, server, c) = start();
    let mut s = connect(&server);
    s.write_all(&frame(adt("ENH001", "AL", "19800101").as_bytes())).unwrap();
    let ack = read_frame(&mut s).unwrap();
    assert_eq!(hl7_field(&ack, "MSA", 1).as_deref(), Some("CA"), "{}", String::from_utf8_lossy(&ack));
    assert_eq!(hl7_field(&ack, "MSA", 2).as_deref(), Some("ENH001"));
    // The application ack arrives through the feed.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let feed = c.get("/v1/acks?wait=2").json();
        if let Some(a) = feed["acks"].as_array().unwrap().first() {
            let tx = a["transactionId"].as_str().unwrap();
            let raw = c.get(&format!("/v1/transactions/{tx}/acks/{}", a["id"].as_str().unwrap()));
            assert_eq!(hl7_field(&raw.body, "MSA", 1).as_deref(), Some("AA"));
            assert_eq!(hl7_field(&raw.body, "MSA", 2).as_deref(), Some("ENH001"));
            break;
        }
        assert!(std::time::Instant::now() < deadline);
    }
}

#[test]
fn pipelined_frames_are_acknowledged_in_order() {
    let (_s, server, _c) = start();
    let mut s = connect(&server);
    let mut batch = Vec::new();
    // Noise before the first start block is skipped.
    batch.extend_from_slice(b"\r\n");
    for i in 0..50 {
        batch.extend_from_slice(&frame(adt(&format!("P{i:04}"), "", "19800101").as_bytes()));
    }
    s.write_all(&batch).unwrap();
    for i in 0..50 {
        let ack = read_frame(&mut s).unwrap();
        assert_eq!(hl7_field(&ack, "MSA", 2), Some(format!("P{i:04}")));
        assert_eq!(hl7_field(&ack, "MSA", 1).as_deref(), Some("AA"));
    }
    // Several connections at once.
    let handles: Vec<_> = (0..8)
        .map(|c| {
            let addr = server.mllp.unwrap();
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                for i in 0..20 {
                    let ctl = format!("C{c}-{i}");
                    s.write_all(&frame(adt(&ctl, "", "19800101").as_bytes())).unwrap();
                    let ack = read_frame(&mut s).unwrap();
                    assert_eq!(hl7_field(&ack, "MSA", 2), Some(ctl));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn duplicates_get_the_original_ack_and_junk_gets_ar() {
    let (_s, server, _c) = start();
    let mut s = connect(&server);
    s.write_all(&frame(adt("DUP001", "", "19800101").as_bytes())).unwrap();
    let first = read_frame(&mut s).unwrap();
    // Same control id and application, changed content: the original ACK.
    s.write_all(&frame(adt("DUP001", "", "19800102").as_bytes())).unwrap();
    let again = read_frame(&mut s).unwrap();
    assert_eq!(first, again);
    // Not HL7: AR, and the connection stays usable.
    s.write_all(&frame(b"this is not an HL7 message")).unwrap();
    let ar = read_frame(&mut s).unwrap();
    assert_eq!(hl7_field(&ar, "MSA", 1).as_deref(), Some("AR"));
    s.write_all(&frame(adt("AFTER01", "", "19800101").as_bytes())).unwrap();
    assert_eq!(hl7_field(&read_frame(&mut s).unwrap(), "MSA", 2).as_deref(), Some("AFTER01"));
}

#[test]
fn oversized_frames_close_the_connection() {
    let scratch = Scratch::new();
    scratch.partner("lab", false);
    let server = Server::start(&scratch, Some("lab"), &[("CLEARWAY__MLLP__MAX_FRAME_BYTES", "4096")]);
    let mut s = connect(&server);
    let mut big = vec![0x0B];
    big.extend(std::iter::repeat_n(b'A', 10_000));
    let _ = s.write_all(&big);
    assert!(read_frame(&mut s).is_none(), "closed without an ACK");
    // The listener still serves others.
    let mut s = connect(&server);
    s.write_all(&frame(adt("OK1", "", "19800101").as_bytes())).unwrap();
    assert_eq!(hl7_field(&read_frame(&mut s).unwrap(), "MSA", 1).as_deref(), Some("AA"));
}

#[test]
fn enhanced_mode_answers_an_invalid_message_with_a_commit_error() {
    let (_s, server, _c) = start();
    let mut s = connect(&server);
    let invalid = adt("ENH002", "AL", "19800101").replace("12345^^^NORTH^MR", "");
    s.write_all(&frame(invalid.as_bytes())).unwrap();
    let ack = read_frame(&mut s).unwrap();
    let code = hl7_field(&ack, "MSA", 1).unwrap();
    assert!(code == "CE" || code == "CR", "{code}: {}", String::from_utf8_lossy(&ack));
    assert_eq!(hl7_field(&ack, "MSA", 2).as_deref(), Some("ENH002"));
    assert!(hl7_field(&ack, "ERR", 0).is_some(), "ERR segment present");
}

#[test]
fn each_listener_is_bound_to_its_own_partner() {
    let scratch = Scratch::new();
    let lab = Client { addr: "127.0.0.1:1".parse().unwrap(), key: scratch.partner("lab", false) };
    let clinic_key = scratch.partner("clinic", false);
    scratch.write_config("[[mllp.listeners]]\nlisten = \"127.0.0.1:0\"\npartner = \"clinic\"\n");
    let server = Server::start(&scratch, Some("lab"), &[]);
    assert_eq!(server.mllp_all.len(), 2, "{:?}", server.mllp_all);
    let lab = Client { addr: server.http, key: lab.key };
    let clinic = Client { addr: server.http, key: clinic_key };
    for (addr, partner) in &server.mllp_all {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(&frame(adt(&format!("TO-{partner}"), "", "19800101").as_bytes())).unwrap();
        let ack = read_frame(&mut s).unwrap();
        assert_eq!(hl7_field(&ack, "MSA", 1).as_deref(), Some("AA"));
    }
    // Each partner's feed holds only the message sent to its listener.
    for (c, partner) in [(&lab, "lab"), (&clinic, "clinic")] {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let acks = loop {
            let feed = c.get("/v1/acks?wait=2").json();
            let acks = feed["acks"].as_array().unwrap().clone();
            if !acks.is_empty() {
                break acks;
            }
            assert!(std::time::Instant::now() < deadline, "no ack for {partner}");
        };
        assert_eq!(acks.len(), 1, "{partner}: {acks:?}");
        let a = &acks[0];
        let raw = c.get(&format!(
            "/v1/transactions/{}/acks/{}",
            a["transactionId"].as_str().unwrap(),
            a["id"].as_str().unwrap()
        ));
        assert_eq!(hl7_field(&raw.body, "MSA", 2).as_deref(), Some(format!("TO-{partner}").as_str()));
    }
}

#[test]
fn message_types_without_a_view_are_taken() {
    // Issue: HL7 v2 to the systems that subscribe to them. A VXU
    // immunization, an MDM document and a local Z message were refused
    // with AR "unsupported message type"; the door takes them.
    let (_scratch, server, _c) = start();
    let mut s = connect(&server);
    for (n, t) in ["VXU^V04^VXU_V04", "MDM^T02^MDM_T02", "ZPI^Z01"].iter().enumerate() {
        let msg = format!(
            "MSH|^~\\&|EHR|NORTH|CLEARWAY|HUB|20240101120000||{t}|TYPE{n}|P|2.5.1\rPID|1||12345^^^NORTH^MR||SAMPLE^PAT\r"
        );
        s.write_all(&frame(msg.as_bytes())).unwrap();
        let ack = read_frame(&mut s).unwrap();
        assert_eq!(hl7_field(&ack, "MSA", 1).as_deref(), Some("AA"), "{t}: {}", String::from_utf8_lossy(&ack));
    }
    // A message code that is not one is still refused.
    s.write_all(&frame(b"MSH|^~\\&|EHR|NORTH|CLEARWAY|HUB|20240101120000||Z9^Z01|BAD1|P|2.5.1\r")).unwrap();
    let ack = read_frame(&mut s).unwrap();
    assert_eq!(hl7_field(&ack, "MSA", 1).as_deref(), Some("AR"), "{}", String::from_utf8_lossy(&ack));
}

#[test]
fn a_revoked_partner_loses_its_open_connection_and_cannot_open_another() {
    let (scratch, server, _c) = start();
    let mut s = connect(&server);
    s.write_all(&frame(adt("REV001", "", "19800101").as_bytes())).unwrap();
    assert_eq!(hl7_field(&read_frame(&mut s).unwrap(), "MSA", 1).as_deref(), Some("AA"));
    let out = scratch
        .command()
        .args(["partners", "revoke", "--id", "lab", "--data-dir"])
        .arg(scratch.data())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The open connection's partner is looked up again once its last check
    // is older than the partner cache's lifetime.
    std::thread::sleep(clearway_core::partners::CACHE_TTL + Duration::from_millis(500));
    let _ = s.write_all(&frame(adt("REV002", "", "19800101").as_bytes()));
    assert_eq!(read_frame(&mut s), None, "closed without an ACK");
    let mut again = connect(&server);
    let _ = again.write_all(&frame(adt("REV003", "", "19800101").as_bytes()));
    assert_eq!(read_frame(&mut again), None, "a new connection is refused too");
}
