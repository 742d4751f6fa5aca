//! Webhooks end to end: a partner sets its webhook over HTTP, and every
//! acknowledgement event reaches a real HTTP endpoint, signed, in order,
//! at least once, retried after the endpoint fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{Client, Scratch, Server, request};

#[derive(Debug, Clone)]
struct Delivery {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    answered: u16,
}

impl Delivery {
    fn header(&self, name: &str) -> &str {
        self.headers.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str())
    }
}

/// An HTTP endpoint that answers `500` to the first `fail_first` requests
/// and `200` afterwards, recording each one.
fn endpoint(fail_first: usize) -> (String, Arc<Mutex<Vec<Delivery>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hooks/clearway", listener.local_addr().unwrap());
    let seen: Arc<Mutex<Vec<Delivery>>> = Arc::default();
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            // One request per connection is enough; keep-alive requests are
            // read in a loop until the client closes.
            while let Some(support::Received { headers, body, .. }) = support::read_request(&mut reader) {
                let mut all = log.lock().unwrap();
                let answered = if all.len() < fail_first { 500 } else { 200 };
                all.push(Delivery { headers, body, answered });
                drop(all);
                let reason = if answered == 200 { "OK" } else { "Internal Server Error" };
                let _ =
                    stream.write_all(format!("HTTP/1.1 {answered} {reason}\r\nContent-Length: 0\r\n\r\n").as_bytes());
            }
        }
    });
    (url, seen)
}

fn put_webhook(c: &Client, body: &str) -> support::Response {
    let auth = format!("Bearer {}", c.key);
    request(
        c.addr,
        "PUT",
        "/v1/webhook",
        &[("Authorization", auth.as_str()), ("Content-Type", "application/json")],
        body.as_bytes(),
    )
}

#[test]
fn ack_events_are_signed_delivered_in_order_and_retried() {
    let scratch = Scratch::new();
    let key = scratch.partner("acme", false);
    let server = Server::start(&scratch, None, &[]);
    let c = Client { addr: server.http, key };
    let (url, seen) = endpoint(1);
    let secret = "a-secret-of-the-partners-choosing";

    // Bad settings are refused with a problem; good ones are kept.
    assert_eq!(put_webhook(&c, r#"{"url":"ftp://example.invalid/x"}"#).status, 400);
    assert_eq!(put_webhook(&c, &format!(r#"{{"url":"{url}","secret":"short"}}"#)).status, 400);
    assert_eq!(put_webhook(&c, "not json").status, 400);
    let set = put_webhook(&c, &format!(r#"{{"url":"{url}","secret":"{secret}"}}"#));
    assert_eq!(set.status, 200, "{}", set.text());
    assert!(set.json().get("secret").is_none(), "a chosen secret is not echoed");
    assert_eq!(c.get("/v1/webhook").json()["url"], url.as_str());

    // Two transactions; each produces a 999 and a 277CA.
    let mut ack_ids = Vec::new();
    for seed in [1, 2] {
        let mut body = Vec::new();
        clearway_formats::x12::synth::write(&mut body, clearway_formats::x12::synth::Kind::Professional837, 2, seed)
            .unwrap();
        let r = c.submit("application/edi-x12", &body, &[]);
        assert_eq!(r.status, 202, "{}", r.text());
        let id = r.json()["transactionId"].as_str().unwrap().to_string();
        c.wait_terminal(&id);
        let list = c.get(&format!("/v1/transactions/{id}/acks")).json();
        ack_ids.extend(list.as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap().to_string()));
    }
    assert_eq!(ack_ids.len(), 4, "{ack_ids:?}");

    // Every ack is delivered with a 2xx; the first attempt failed and was
    // retried (after the backoff) with the same event id.
    let deadline = Instant::now() + Duration::from_secs(40);
    let delivered = loop {
        let all = seen.lock().unwrap().clone();
        let ok: Vec<Delivery> = all.iter().filter(|d| d.answered == 200).cloned().collect();
        if ok.len() >= ack_ids.len() {
            break all;
        }
        assert!(Instant::now() < deadline, "only {} of {} events delivered: {all:?}", ok.len(), ack_ids.len());
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(delivered[0].answered, 500);
    assert_eq!(delivered[1].header("clearway-event-id"), delivered[0].header("clearway-event-id"), "retried as is");

    let mut order = Vec::new();
    for d in delivered.iter().filter(|d| d.answered == 200) {
        let id = d.header("clearway-event-id").to_string();
        let ts: i64 = d.header("clearway-timestamp").parse().expect("a unix timestamp");
        assert!((time::OffsetDateTime::now_utc().unix_timestamp() - ts).abs() < 120, "a current timestamp");
        let expected = clearway_core::crypto::webhook_signature(secret.as_bytes(), ts, &d.body);
        assert_eq!(d.header("clearway-signature"), format!("v1={expected}"), "signed with the partner's secret");
        assert_eq!(d.header("content-type"), "application/json");
        let event: serde_json::Value = serde_json::from_slice(&d.body).unwrap();
        assert_eq!(event["id"], id.as_str(), "the body carries the event id");
        assert!(["999", "277ca"].contains(&event["kind"].as_str().unwrap()), "{event}");
        assert!(event["acknowledgement"].as_str().unwrap().starts_with("ISA"), "the ack itself is included");
        order.push(id);
    }
    // In feed order, each exactly once (the endpoint always answered).
    let mut unique = order.clone();
    unique.dedup();
    assert_eq!(unique, order, "no event delivered twice after a 2xx");
    let mut sorted_ids = ack_ids.clone();
    sorted_ids.sort();
    let mut got = order.clone();
    got.sort();
    assert_eq!(got, sorted_ids, "every acknowledgement became an event");

    // Removing the webhook stops delivery.
    let auth = format!("Bearer {}", c.key);
    assert_eq!(request(server.http, "DELETE", "/v1/webhook", &[("Authorization", auth.as_str())], b"").status, 204);
    assert_eq!(c.get("/v1/webhook").status, 404);
}
