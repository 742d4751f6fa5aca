//! The pharmacy switch path over real TCP: NCPDP D.0 requests to
//! `POST /v1/pharmacy`, answered by the `local` connector (coverage from an
//! 834, the pharmacy claim edits) and by a PBM simulator behind the `http`
//! connector (`scripts/pbm_simulator.py`, a real Python HTTP server).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use clearway_formats::ncpdp::answer::{self, Outcome};
use clearway_formats::ncpdp::synth::{self, Request};
use clearway_formats::ncpdp::{self, Limits, views};
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{Client, Lane, Scratch, Server, request};

/// The Python PBM simulator, stopped when dropped.
struct Pbm {
    child: Child,
    addr: String,
}

impl Pbm {
    fn start() -> Pbm {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pbm_simulator.py");
        let mut child = Command::new("python3").arg(script).stdout(Stdio::piped()).spawn().unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let addr = line.trim().strip_prefix("pbm listening on ").expect("the simulator prints its address").to_string();
        Pbm { child, addr }
    }

    /// D.0 requests the simulator has received.
    fn count(&self) -> u64 {
        let addr = self.addr.parse().unwrap();
        request(addr, "GET", "/count", &[], b"").text().trim().parse().unwrap()
    }
}

impl Drop for Pbm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn send(c: &Client, body: &[u8]) -> (support::Response, ncpdp::Transmission) {
    let auth = format!("Bearer {}", c.key);
    let r = request(
        c.addr,
        "POST",
        "/v1/pharmacy",
        &[("Authorization", auth.as_str()), ("Content-Type", "application/vnd.ncpdp.d0")],
        body,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/vnd.ncpdp.d0"));
    let t = ncpdp::read(&r.body, &Limits::default()).expect("a D.0 response");
    assert_eq!(t.to_bytes(), r.body, "the response reads back byte for byte");
    (r, t)
}

/// Header status and each transaction's outcome.
fn outcomes(t: &ncpdp::Transmission) -> (String, Vec<Outcome>) {
    answer::outcomes(t).expect("a response")
}

fn statuses(t: &ncpdp::Transmission) -> Vec<(String, Vec<String>)> {
    outcomes(t).1.into_iter().map(|o| (o.status, o.rejects)).collect()
}

fn st(status: &str, codes: &[&str]) -> Vec<(String, Vec<String>)> {
    vec![(status.to_string(), codes.iter().map(|c| c.to_string()).collect())]
}

fn b1(pcn: &str, rx: &str) -> Request {
    let mut r = Request::b1("610020", pcn, rx);
    let today = time::OffsetDateTime::now_utc().date();
    r.date_of_service = format!("{:04}{:02}{:02}", today.year(), u8::from(today.month()), today.day());
    r
}

fn reversal(of: &Request) -> Vec<u8> {
    let mut r = of.clone();
    r.code = "B2".into();
    synth::request(&r)
}

const CONFIG: &str = r#"
[fastpath]
timeout_ms = 1000

[payers.ACME01]
aliases = ["987654321"]

[payers.PBM1]
connector = "http"
connector_url = "http://{pbm}/d0"
failure_threshold = 3
cooldown_secs = 60

[pharmacy]
routes = [
  { bin = "610020", pcn = "LOCAL", payer = "LOCALPBM" },
  { bin = "004336", payer = "ACME01" },
  { bin = "610020", pcn = "HTTP", payer = "PBM1" },
]
"#;

fn start(pbm: &Pbm) -> (Scratch, Server, Client) {
    start_on(pbm, Lane::Local)
}

fn start_on(pbm: &Pbm, lane: Lane) -> (Scratch, Server, Client) {
    let scratch = Scratch::on(lane);
    let key = scratch.partner("pharmacy1", false);
    scratch.write_config(&CONFIG.replace("{pbm}", &pbm.addr));
    let server = Server::start(&scratch, None, &[]);
    let c = Client { addr: server.http, key };
    (scratch, server, c)
}

#[test]
fn local_connector_claims_duplicates_reversals_and_bad_input() {
    local_connector(Lane::Local);
}

/// The same on the AWS backend (DynamoDB's conditional transactions hold
/// the claim index).
#[test]
fn local_connector_on_aws() {
    local_connector(Lane::Aws);
}

fn local_connector(lane: Lane) {
    let pbm = Pbm::start();
    let (_scratch, server, c) = start_on(&pbm, lane);

    // A good B1: captured (no PBM behind the local connector).
    let claim = b1("LOCAL", "7000001");
    let (r, t) = send(&c, &synth::request(&claim));
    assert_eq!(outcomes(&t).0, "A");
    assert_eq!(statuses(&t), st("C", &[]));
    let id = r.header("clearway-transaction-id").unwrap().to_string();
    let rec = c.get(&format!("/v1/transactions/{id}")).json();
    assert_eq!(rec["format"], "ncpdp", "{rec}");
    assert_eq!(rec["transactions"][0]["status"], "C");
    assert_eq!(rec["payerId"], "LOCALPBM");
    // The response is the transaction's acknowledgement, in the feed.
    let ack_id = rec["ackIds"][0].as_str().unwrap().to_string();
    let ack = c.get(&format!("/v1/transactions/{id}/acks/{ack_id}"));
    assert_eq!(ack.status, 200);
    assert_eq!(ack.body, r.body, "the stored response is the one sent");
    // (The feed shows entries once its settle window has passed.)
    let in_feed = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        c.get("/v1/acks").text().contains(&ack_id)
    });
    assert!(in_feed, "the response is in the partner's feed");

    // The same B1 again: the original answer as a duplicate of capture.
    let (r2, t2) = send(&c, &synth::request(&claim));
    assert_eq!(statuses(&t2), st("Q", &[]));
    assert_ne!(r2.header("clearway-transaction-id"), Some(id.as_str()), "recorded as its own transaction");

    // A line end after the transmission (a saved file) is not part of it.
    let mut with_newline = synth::request(&b1("LOCAL", "7000006"));
    with_newline.extend_from_slice(b"\r\n");
    let (_, t) = send(&c, &with_newline);
    assert_eq!(statuses(&t), st("C", &[]));

    // The pharmacy claim edits: a prescriber NPI with a bad check digit.
    let mut bad = b1("LOCAL", "7000002");
    bad.claims[0].prescriber_npi = Some("1245319590".into());
    let (_, t) = send(&c, &synth::request(&bad));
    assert_eq!(statuses(&t), st("R", &["25"]));

    // Reversal of the captured claim, twice; of a claim never billed.
    let (_, t) = send(&c, &reversal(&claim));
    assert_eq!(statuses(&t), st("A", &[]));
    let (_, t) = send(&c, &reversal(&claim));
    assert_eq!(statuses(&t), st("S", &[]), "a second reversal is a duplicate of approved");
    let (_, t) = send(&c, &reversal(&b1("LOCAL", "7999999")));
    assert_eq!(statuses(&t), st("R", &["87"]));
    // After the reversal the claim can be billed again.
    let (_, t) = send(&c, &synth::request(&claim));
    assert_eq!(statuses(&t), st("C", &[]));

    // The same new claim sent eight times at once: captured once, the
    // others answered as its duplicates (the claim index write is
    // conditional).
    let racing = b1("LOCAL", "7000100");
    let body = synth::request(&racing);
    let answers: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8).map(|_| s.spawn(|| statuses(&send(&c, &body).1)[0].0.clone())).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(answers.iter().filter(|a| *a == "C").count(), 1, "{answers:?}");
    assert_eq!(answers.iter().filter(|a| *a == "Q").count(), 7, "{answers:?}");

    // Bad input: a response with status R and the right codes, never an
    // HTTP error.
    let mut unknown_bin = b1("LOCAL", "7000003");
    unknown_bin.bin = "123456".into();
    let (_, t) = send(&c, &synth::request(&unknown_bin));
    assert_eq!(statuses(&t), st("R", &["1"]));
    let mut garbage = synth::request(&b1("LOCAL", "7000004"));
    garbage[0] = b'X';
    let (_, t) = send(&c, &garbage);
    assert_eq!(outcomes(&t).0, "R", "the transmission is rejected");
    assert_eq!(statuses(&t), st("R", &["1"]));
    let mut overlong = b1("LOCAL", "7000005");
    overlong.cardholder = "C".repeat(30);
    let (_, t) = send(&c, &synth::request(&overlong));
    assert_eq!(statuses(&t), st("R", &["7"]));
    let (_, t) = send(&c, b"not a D.0 transmission at all, just words");
    assert_eq!(statuses(&t), st("R", &["2"]));
    // The public sample: no pricing segment, a prescription number that
    // is not numeric; its BIN is not routed either.
    let sample = std::fs::read(support::corpus().join("ncpdp/b1-request-cosyte-person-code.ncpdp")).unwrap();
    let (_, t) = send(&c, &sample);
    let (_, o) = outcomes(&t);
    for code in ["16", "PP"] {
        assert!(o[0].rejects.iter().any(|r| r == code), "{code} in {:?}", o[0].rejects);
    }

    // HTTP-level bounds: 413 past 64 KiB, 415 for another media type, and
    // D.0 posted to the async path is told where it belongs.
    let auth = format!("Bearer {}", c.key);
    let big = vec![b'9'; 70 * 1024];
    let r = request(c.addr, "POST", "/v1/pharmacy", &[("Authorization", auth.as_str())], &big);
    assert_eq!(r.status, 413);
    let r = request(
        c.addr,
        "POST",
        "/v1/pharmacy",
        &[("Authorization", auth.as_str()), ("Content-Type", "application/json")],
        b"{}",
    );
    assert_eq!(r.status, 415);
    let r = c.submit("application/octet-stream", &synth::request(&claim), &[]);
    assert_eq!(r.status, 400);
    assert!(r.text().contains("/v1/pharmacy"), "{}", r.text());
    let r = request(c.addr, "POST", "/v1/pharmacy", &[], &synth::request(&claim));
    assert_eq!(r.status, 401);

    // Metrics count by transaction code and status; no PHI in the log.
    let metrics = request(server.http, "GET", "/metrics", &[], b"").text();
    assert!(metrics.contains("clearway_pharmacy_transactions_total{code=\"B1\",status=\"captured\"}"), "{metrics}");
    assert_eq!(pbm.count(), 0, "the local connector asks no PBM");
    drop(server);
    let log = _scratch.logs();
    assert!(!log.contains("SYNTH0001") && !log.contains("7000001"), "no cardholder or prescription in the log");
}

#[test]
fn eligibility_from_coverage_an_834_loaded() {
    let pbm = Pbm::start();
    let (_scratch, _server, c) = start(&pbm);
    let mut enrolment = Vec::new();
    clearway_formats::x12::synth::write(&mut enrolment, clearway_formats::x12::synth::Kind::Enrollment834, 2, 3)
        .unwrap();
    let id = c.submit("application/edi-x12", &enrolment, &[]).json()["transactionId"].as_str().unwrap().to_string();
    assert_eq!(c.wait_terminal(&id)["status"], "accepted");

    let mut e1 = b1("", "0");
    e1.bin = "004336".into();
    e1.code = "E1".into();
    e1.claims.clear();
    e1.date_of_birth = None;
    e1.cardholder = "M0068060533".into();
    let (_, t) = send(&c, &synth::request(&e1));
    assert_eq!(statuses(&t), st("A", &[]), "an enrolled member");
    e1.cardholder = "M9999999999".into();
    let (_, t) = send(&c, &synth::request(&e1));
    assert_eq!(statuses(&t), st("R", &["N1"]), "nobody by that id");
    e1.cardholder = "M0068060533".into();
    e1.date_of_service = "20230101".into();
    let (_, t) = send(&c, &synth::request(&e1));
    assert_eq!(statuses(&t), st("R", &["600"]), "before the coverage began");
}

#[test]
fn the_pbm_answers_through_the_http_connector_and_failures_are_answered_in_time() {
    let pbm = Pbm::start();
    let (_scratch, server, c) = start(&pbm);

    // Paid, with the PBM's authorization; a resend is answered by Clearway
    // as a duplicate of paid without asking the PBM again.
    let claim = b1("HTTP", "8000001");
    let (_, t) = send(&c, &synth::request(&claim));
    let (_, o) = outcomes(&t);
    assert_eq!((o[0].status.as_str(), o[0].authorization.as_deref()), ("P", Some("AUTH000001")));
    assert_eq!(pbm.count(), 1);
    let (_, t) = send(&c, &synth::request(&claim));
    assert_eq!(statuses(&t), st("D", &[]));
    assert_eq!(outcomes(&t).1[0].authorization.as_deref(), Some("AUTH000001"), "the original answer");
    assert_eq!(pbm.count(), 1, "a duplicate is not forwarded");

    // The PBM's DUR messages reach the pharmacy.
    let mut dur = b1("HTTP", "8000002");
    dur.cardholder = "DUR0001".into();
    let (_, t) = send(&c, &synth::request(&dur));
    let v = views::response(&t).unwrap();
    assert_eq!(v.status.as_deref(), Some("P"));
    assert_eq!(v.dur_reasons, ["DD"]);
    assert!(v.message.is_some());

    // The PBM's rejection, with its codes.
    let mut rejected = b1("HTTP", "8000003");
    rejected.cardholder = "REJECT01".into();
    let (_, t) = send(&c, &synth::request(&rejected));
    assert_eq!(statuses(&t), st("R", &["75", "88"]));

    // Two transactions in one B1, one of them already paid: only the new
    // one goes to the PBM.
    let mut two = b1("HTTP", "8000001");
    let mut second = two.claims[0].clone();
    second.rx = "8000004".into();
    two.claims.push(second);
    let before = pbm.count();
    let (_, t) = send(&c, &synth::request(&two));
    let (_, o) = outcomes(&t);
    assert_eq!((o[0].status.as_str(), o[1].status.as_str()), ("D", "P"));
    assert_eq!(pbm.count(), before + 1);

    // Reversal through the PBM; of an unknown claim, answered here.
    let (_, t) = send(&c, &reversal(&claim));
    assert_eq!(statuses(&t), st("A", &[]));
    let before = pbm.count();
    let (_, t) = send(&c, &reversal(&b1("HTTP", "8999999")));
    assert_eq!(statuses(&t), st("R", &["87"]));
    assert_eq!(pbm.count(), before, "not forwarded");

    // A PBM that is too slow: host unavailable (92) within the timeout.
    let mut slow = b1("HTTP", "8000005");
    slow.cardholder = "SLOW0001".into();
    let started = Instant::now();
    let (_, t) = send(&c, &synth::request(&slow));
    assert_eq!(statuses(&t), st("R", &["92"]));
    assert!(started.elapsed() < Duration::from_millis(2500), "answered in time: {:?}", started.elapsed());
    // An answer that is not D.0: host processing error (99).
    let mut garbage = b1("HTTP", "8000006");
    garbage.cardholder = "GARBAGE1".into();
    let (_, t) = send(&c, &synth::request(&garbage));
    assert_eq!(statuses(&t), st("R", &["99"]));
    // A PBM that is down: 92, and once the breaker opens the PBM is not
    // called at all.
    let mut down = b1("HTTP", "8000007");
    down.cardholder = "DOWN0001".into();
    for _ in 0..3 {
        let (_, t) = send(&c, &synth::request(&down));
        assert_eq!(statuses(&t), st("R", &["92"]));
    }
    let before = pbm.count();
    let (_, t) = send(&c, &synth::request(&b1("HTTP", "8000008")));
    assert_eq!(statuses(&t), st("R", &["92"]), "breaker open");
    assert_eq!(pbm.count(), before, "no call while the breaker is open");
    drop(server);
}

/// Regression: a pharmacy answer's feed entry took its cursor from the
/// time the request arrived, so an answer that took longer than the feed's
/// settle window (a slow PBM) was written behind a cursor a feed reader had
/// already passed, and that reader never saw it.
#[test]
fn a_feed_reader_does_not_pass_over_an_answer_that_took_long() {
    let pbm = Pbm::start();
    let (_scratch, server, c) = start(&pbm);
    let slow = {
        let c = Client { addr: c.addr, key: c.key.clone() };
        std::thread::spawn(move || {
            let mut slow = b1("HTTP", "8100001");
            slow.cardholder = "SLOW0002".into();
            statuses(&send(&c, &synth::request(&slow)).1)
        })
    };
    // While the PBM holds that one, another is answered at once, and a
    // reader of the feed goes past it.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(statuses(&send(&c, &synth::request(&b1("HTTP", "8100002"))).1), st("P", &[]));
    let deadline = Instant::now() + Duration::from_secs(10);
    let cursor = loop {
        let page = c.get("/v1/acks?wait=1").json();
        if page["acks"].as_array().is_some_and(|a| a.len() == 1) {
            break page["next"].as_str().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "the fast answer reaches the feed: {page}");
    };
    assert!(!slow.is_finished(), "the slow answer is still with the PBM");
    assert_eq!(slow.join().unwrap(), st("R", &["92"]), "the switch's timeout");
    // The slow answer comes after the reader's cursor.
    let page = c.get(&format!("/v1/acks?after={cursor}&wait=5")).json();
    let acks = page["acks"].as_array().unwrap();
    assert_eq!(acks.len(), 1, "{page}");
    assert_eq!(acks[0]["kind"], "ncpdp");
    drop(server);
}

#[test]
fn batch_files_through_the_async_path_are_answered_with_a_response_batch() {
    use clearway_formats::ncpdp::batch::{self, BatchHeader};
    let pbm = Pbm::start();
    let (_scratch, _server, c) = start(&pbm);
    let header = BatchHeader {
        transmission_type: "T".into(),
        sender_id: "CHAIN0001".into(),
        batch_number: "0000042".into(),
        creation_date: "20261201".into(),
        creation_time: "1632".into(),
        file_type: "T".into(),
        version: "12".into(),
        receiver_id: "CLEARWAY".into(),
    };
    let mut bad = b1("LOCAL", "9000003");
    bad.claims[0].prescriber_npi = Some("1245319590".into());
    let details = vec![
        ("REF0000001".to_string(), synth::request(&b1("LOCAL", "9000001"))),
        ("REF0000002".to_string(), synth::request(&b1("HTTP", "9000002"))),
        ("REF0000003".to_string(), synth::request(&bad)),
    ];
    let file = batch::write_batch(&header, &details, "");
    let r = c.submit("application/vnd.ncpdp.batch", &file, &[]);
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["transactionId"].as_str().unwrap().to_string();
    let rec = c.wait_terminal(&id);
    assert_eq!(rec["status"], "accepted", "{rec}");
    assert_eq!(rec["format"], "ncpdp");
    let ack_id = rec["ackIds"][0].as_str().unwrap().to_string();
    let ack = c.get(&format!("/v1/transactions/{id}/acks/{ack_id}"));
    assert_eq!(ack.header("content-type"), Some("application/vnd.ncpdp.batch"));
    let back = batch::read_batch(&ack.body, 10).expect("a response batch");
    assert_eq!(back.header.transmission_type, "R");
    assert_eq!(back.header.batch_number, "0000042");
    assert_eq!(back.header.receiver_id, "CHAIN0001");
    let refs: Vec<&str> = back.details.iter().map(|d| d.reference.as_str()).collect();
    assert_eq!(refs, ["REF0000001", "REF0000002", "REF0000003"]);
    let got: Vec<(String, Vec<String>)> = back
        .details
        .iter()
        .map(|d| {
            let t = ncpdp::read(d.transmission, &Limits::default()).unwrap();
            statuses(&t).remove(0)
        })
        .collect();
    assert_eq!(
        got,
        [("C".to_string(), vec![]), ("P".to_string(), vec![]), ("R".to_string(), vec!["25".to_string()])],
        "captured locally, paid by the PBM, rejected by an edit"
    );
    // The batch's claims are on file like real-time ones: a resend of the
    // first in real time is its duplicate.
    let (_, t) = send(&c, &synth::request(&b1("LOCAL", "9000001")));
    assert_eq!(statuses(&t), st("Q", &[]));

    // A file that is not a sound batch: an error batch saying why.
    let mut broken = file.clone();
    broken.truncate(file.len() - 1);
    let r = c.submit("application/vnd.ncpdp.batch", &broken, &[]);
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["transactionId"].as_str().unwrap().to_string();
    let rec = c.wait_terminal(&id);
    assert_eq!(rec["status"], "rejected", "{rec}");
    let ack_id = rec["ackIds"][0].as_str().unwrap().to_string();
    let ack = c.get(&format!("/v1/transactions/{id}/acks/{ack_id}"));
    let back = batch::read_batch(&ack.body, 10).expect("an error batch");
    assert_eq!(back.header.transmission_type, "E");
    assert!(back.trailer_message.contains("ETX"), "{}", back.trailer_message);
}
