//! HL7 v2 and FHIR routed to subscribed systems over real TCP: a Python
//! MLLP server plays the EHR and the scheduling system, its HTTP side a
//! FHIR server (`scripts/mllp_peer.py`). Messages come in over MLLP and
//! HTTP, routes pick destinations at intake, deliverers send them in order
//! and record each destination's acknowledgement.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::Value;
use std::io::{BufRead, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{Client, Lane, Scratch, Server, frame, hl7_field, read_frame, request};

/// The Python receiving systems, stopped when dropped.
struct Peer {
    child: Child,
    mllp: Vec<String>,
    http: Vec<String>,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Peer {
    fn start(mllp: usize, http: usize, delay_ms: u64) -> Peer {
        Peer::start_on(&vec![0; mllp], http, delay_ms)
    }

    /// MLLP listeners on these ports (0: any).
    fn start_on(mllp_ports: &[u16], http: usize, delay_ms: u64) -> Peer {
        Peer::start_with(mllp_ports, http, delay_ms, &[])
    }

    /// With more arguments (`--tls CERT KEY`, `--tls-client-ca CA`).
    fn start_with(mllp_ports: &[u16], http: usize, delay_ms: u64, extra: &[&std::ffi::OsStr]) -> Peer {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("peer.jsonl");
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/mllp_peer.py");
        let mut cmd = Command::new("python3");
        cmd.arg(script).arg("--log").arg(&log).args(["--delay-ms", &delay_ms.to_string(), "--slow-ms", "1500"]);
        for port in mllp_ports {
            cmd.args(["--mllp", &port.to_string()]);
        }
        for _ in 0..http {
            cmd.args(["--http", "0"]);
        }
        cmd.args(extra);
        let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut m, mut h) = (Vec::new(), Vec::new());
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(a) = line.strip_prefix("mllp listening on ") {
                m.push(a.to_string());
            } else if let Some(a) = line.strip_prefix("http listening on ") {
                h.push(a.to_string());
            } else if line == "ready" {
                break;
            }
        }
        Peer { child, mllp: m, http: h, log, _dir: dir }
    }

    /// Everything the systems received, in arrival order.
    fn received(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Control ids (or resource ids) one listener received, in order, with
    /// the answer given.
    fn at(&self, port_of: &str) -> Vec<(String, String)> {
        let port: u64 = port_of.rsplit(':').next().unwrap().parse().unwrap();
        self.received()
            .iter()
            .filter(|r| r["port"].as_u64() == Some(port))
            .map(|r| (r["control"].as_str().unwrap().to_string(), r["answer"].as_str().unwrap().to_string()))
            .collect()
    }

    fn wait_for(&self, what: &str, done: impl Fn(&Peer) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}: {:?}", self.received());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn adt(control: &str, trigger: &str) -> String {
    format!(
        "MSH|^~\\&|ADT|NORTH|CLEARWAY|HUB|20240101120000||ADT^{trigger}^ADT_A01|{control}|P|2.5.1\r\
         EVN|{trigger}|20240101120000\r\
         PID|1||12345^^^NORTH^MR||SAMPLE^PAT||19800101|F\r\
         PV1|1|I\r"
    )
}

fn siu(control: &str) -> String {
    format!(
        "MSH|^~\\&|SCHED|NORTH|CLEARWAY|HUB|20240101120000||SIU^S12^SIU_S12|{control}|P|2.5.1\r\
         SCH|A100^NORTH|||||ROUTINE|||30|MIN\r\
         PID|1||12345^^^NORTH^MR||SAMPLE^PAT||19800101|F\r\
         RGS|1\r"
    )
}

fn oru(control: &str) -> String {
    format!(
        "MSH|^~\\&|LAB|NORTH|CLEARWAY|HUB|20240101120000||ORU^R01^ORU_R01|{control}|P|2.5.1\r\
         PID|1||12345^^^NORTH^MR||SAMPLE^PAT||19800101|F\r\
         OBR|1|ORD1||GLU^Glucose\r\
         OBX|1|NM|GLU^Glucose||95|mg/dL|||||F\r"
    )
}

fn config(peer: &Peer) -> String {
    format!(
        r#"
[destinations.EHR]
kind = "mllp"
address = "{ehr}"
ack_timeout_ms = 1000
cooldown_secs = 1
retry_max_ms = 200

[destinations.SCHED]
kind = "mllp"
address = "{sched}"
ack_timeout_ms = 1000
retry_max_ms = 200

[destinations.FHIRSRV]
kind = "fhir"
url = "http://{fhir}/fhir"
retry_max_ms = 200

[[routes]]
name = "adt"
messages = ["ADT"]
to = ["EHR"]

[[routes]]
name = "scheduling"
messages = ["SIU^S12"]
to = ["SCHED", "EHR"]

[[routes]]
name = "results"
messages = ["ORU"]
facilities = ["NORTH"]
to = ["EHR"]
on_error = "dead-letter"

[[routes]]
name = "fhir"
resources = ["Patient", "Appointment"]
to = ["FHIRSRV"]
"#,
        ehr = peer.mllp[0],
        sched = peer.mllp[1],
        fhir = peer.http[0]
    )
}

fn start(lane: Lane, peer: &Peer) -> (Scratch, Server, Client, Client) {
    let scratch = Scratch::on(lane);
    scratch.write_config(&config(peer));
    let key = scratch.partner("hosp", false);
    let ops = scratch.partner("ops", true);
    let server = Server::start(&scratch, Some("hosp"), &[]);
    let client = Client { addr: server.http, key };
    let operator = Client { addr: server.http, key: ops };
    (scratch, server, client, operator)
}

/// Sends each message over one MLLP connection, waiting for each ACK;
/// returns the ACK codes.
fn send_mllp(server: &Server, messages: &[String]) -> Vec<String> {
    let mut s = TcpStream::connect(server.mllp.unwrap()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    messages
        .iter()
        .map(|m| {
            s.write_all(&frame(m.as_bytes())).unwrap();
            let ack = read_frame(&mut s).expect("an ACK");
            hl7_field(&ack, "MSA", 1).unwrap()
        })
        .collect()
}

fn controls(list: &[(String, String)]) -> Vec<String> {
    list.iter().map(|(c, _)| c.clone()).collect()
}

#[test]
fn adt_and_siu_reach_their_systems_in_order_with_every_acknowledgement_recorded() {
    let peer = Peer::start(2, 1, 0);
    let (_scratch, server, client, operator) = start(Lane::Local, &peer);
    let mut sent = Vec::new();
    for i in 0..40 {
        let m = match i % 4 {
            0 => adt(&format!("ADT-{i:03}"), "A01"),
            1 => adt(&format!("ADT-{i:03}"), "A08"),
            2 => siu(&format!("SIU-{i:03}")),
            _ => adt(&format!("ADT-{i:03}"), "A03"),
        };
        sent.push(m);
    }
    let acks = send_mllp(&server, &sent);
    assert!(acks.iter().all(|a| a == "AA"), "{acks:?}");
    let ehr = peer.mllp[0].clone();
    let sched = peer.mllp[1].clone();
    peer.wait_for("40 messages at the EHR and 10 at scheduling", |p| {
        p.at(&ehr).len() >= 40 && p.at(&sched).len() >= 10
    });
    let want_ehr: Vec<String> =
        (0..40).map(|i| if i % 4 == 2 { format!("SIU-{i:03}") } else { format!("ADT-{i:03}") }).collect();
    assert_eq!(controls(&peer.at(&ehr)), want_ehr, "the EHR gets ADT and SIU in the order sent, each once");
    let want_sched: Vec<String> = (0..40).filter(|i| i % 4 == 2).map(|i| format!("SIU-{i:03}")).collect();
    assert_eq!(controls(&peer.at(&sched)), want_sched, "scheduling gets only SIU^S12, in order");

    // Over HTTP too, with the delivery state in the transaction.
    let r = client.submit("application/hl7-v2", adt("HTTP-1", "A01").as_bytes(), &[]);
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["transactionId"].as_str().unwrap().to_string();
    peer.wait_for("HTTP-1 at the EHR", |p| controls(&p.at(&ehr)).contains(&"HTTP-1".to_string()));
    let deadline = Instant::now() + Duration::from_secs(30);
    let deliveries = loop {
        let v = client.get(&format!("/v1/transactions/{id}")).json();
        let d = v["deliveries"].clone();
        if d[0]["state"] == "delivered" {
            break d;
        }
        assert!(Instant::now() < deadline, "{v}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(deliveries.as_array().unwrap().len(), 1, "{deliveries}");
    assert_eq!(deliveries[0]["destination"], "EHR");
    assert_eq!(deliveries[0]["answer"], "AA");
    assert_eq!(deliveries[0]["delivered"], 1);

    // Operators see each destination's queue.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = operator.get("/v1/destinations").json();
        let ehr = v["destinations"].as_array().unwrap().iter().find(|d| d["name"] == "EHR").unwrap().clone();
        if ehr["queue"]["deliveredTotal"].as_u64() >= Some(41) {
            assert_eq!(ehr["queue"]["waiting"], 0, "{ehr}");
            assert_eq!(ehr["kind"], "mllp");
            break;
        }
        assert!(Instant::now() < deadline, "{v}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(client.get("/v1/destinations").status, 403, "a submitter does not see destinations");
}

#[test]
fn errors_follow_the_routes_policy_and_dead_letters_replay() {
    let peer = Peer::start(2, 1, 0);
    let (_scratch, server, _client, operator) = start(Lane::Local, &peer);
    let ehr = peer.mllp[0].clone();
    // AE twice, then AA: the ADT route retries (holding the queue, so the
    // next message still comes after it).
    // ORU answered AE once: the results route dead-letters it, and the
    // queue goes on. AR: dead-lettered (the default on_reject).
    let sent = vec![
        adt("AE2-1", "A01"),
        adt("AFTER-1", "A08"),
        oru("AE1-2"),
        adt("AFTER-2", "A08"),
        adt("AR-3", "A01"),
        adt("AFTER-3", "A08"),
    ];
    assert!(send_mllp(&server, &sent).iter().all(|a| a == "AA"));
    peer.wait_for("AFTER-3", |p| controls(&p.at(&ehr)).contains(&"AFTER-3".to_string()));
    let got = peer.at(&ehr);
    let pairs: Vec<(&str, &str)> = got.iter().map(|(c, a)| (c.as_str(), a.as_str())).collect();
    assert_eq!(
        pairs,
        [
            ("AE2-1", "AE"),
            ("AE2-1", "AE"),
            ("AE2-1", "AA"),
            ("AFTER-1", "AA"),
            ("AE1-2", "AE"),
            ("AFTER-2", "AA"),
            ("AR-3", "AR"),
            ("AFTER-3", "AA")
        ],
        "retried in place, then dead-lettered per policy, order kept"
    );
    // A round's outcomes are written when the round ends, which may be
    // just after the peer has the round's last message: wait for them.
    let deadline = Instant::now() + Duration::from_secs(10);
    let dead = loop {
        let dead = operator.get("/v1/destinations/EHR/dead-letters").json();
        if dead["deadLetters"].as_array().is_some_and(|l| l.len() >= 2) || Instant::now() > deadline {
            break dead;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let list = dead["deadLetters"].as_array().unwrap();
    let ids: Vec<&str> = list.iter().map(|d| d["controlId"].as_str().unwrap()).collect();
    assert_eq!(ids, ["AE1-2", "AR-3"], "{dead}");
    assert!(list[0]["reason"].as_str().unwrap().starts_with("AE"), "{dead}");
    assert_eq!(list[0]["message"], "ORU^R01");
    assert!(!dead.to_string().contains("SAMPLE"), "no PHI in dead letters");

    // Dry run counts; replay sends them again (the peer now takes AE1-2).
    let r = operator.post("/v1/destinations/EHR/replay?dryRun=true");
    assert_eq!(r.status, 202);
    assert_eq!(r.json()["deadLetters"], 2);
    assert_eq!(operator.get("/v1/destinations/EHR/dead-letters").json()["deadLetters"].as_array().unwrap().len(), 2);
    let r = operator.post("/v1/destinations/EHR/replay");
    assert_eq!(r.json()["deadLetters"], 2);
    peer.wait_for("AE1-2 accepted on replay", |p| p.at(&ehr).iter().any(|(c, a)| c == "AE1-2" && a == "AA"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = operator.get("/v1/destinations/EHR/dead-letters").json()["deadLetters"].clone();
        let ids: Vec<&str> = list.as_array().unwrap().iter().map(|d| d["controlId"].as_str().unwrap()).collect();
        if ids == ["AR-3"] {
            break;
        }
        assert!(Instant::now() < deadline, "{list}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(operator.post("/v1/destinations/NOPE/replay").status, 404);
}

#[test]
fn a_dropped_connection_is_reestablished_and_the_message_sent_again() {
    let peer = Peer::start(2, 1, 0);
    let (_scratch, server, _client, _operator) = start(Lane::Local, &peer);
    let ehr = peer.mllp[0].clone();
    let sent = vec![adt("BEFORE", "A01"), adt("DROP-1", "A08"), adt("AFTERDROP", "A08")];
    assert!(send_mllp(&server, &sent).iter().all(|a| a == "AA"));
    peer.wait_for("AFTERDROP", |p| controls(&p.at(&ehr)).contains(&"AFTERDROP".to_string()));
    let got = peer.at(&ehr);
    let pairs: Vec<(&str, &str)> = got.iter().map(|(c, a)| (c.as_str(), a.as_str())).collect();
    assert_eq!(pairs, [("BEFORE", "AA"), ("DROP-1", "drop"), ("DROP-1", "AA"), ("AFTERDROP", "AA")]);
}

#[test]
fn fhir_resources_reach_the_fhir_server_and_one_no_route_takes_is_refused() {
    fhir_case(Lane::Local);
}

#[test]
fn fhir_resources_and_hl7_are_delivered_on_the_aws_backend() {
    fhir_case(Lane::Aws);
}

fn fhir_case(lane: Lane) {
    {
        let peer = Peer::start(2, 1, 0);
        let (_scratch, _server, client, _operator) = start(lane, &peer);
        let patient = br#"{"resourceType":"Patient","id":"pat-1","name":[{"family":"Sample"}]}"#;
        let appt =
            br#"{"resourceType":"Appointment","id":"appt-1","status":"booked","participant":[{"status":"accepted"}]}"#;
        let mut ids = Vec::new();
        for body in [&patient[..], &appt[..]] {
            let r = client.submit("application/fhir+json", body, &[]);
            assert_eq!(r.status, 202, "{}", r.text());
            ids.push(r.json()["transactionId"].as_str().unwrap().to_string());
        }
        peer.wait_for("two FHIR resources", |p| p.received().iter().filter(|r| r["path"].is_string()).count() >= 2);
        let got: Vec<(String, String)> = peer
            .received()
            .iter()
            .filter(|r| r["path"].is_string())
            .map(|r| (r["path"].as_str().unwrap().to_string(), r["id"].as_str().unwrap().to_string()))
            .collect();
        assert_eq!(
            got,
            [
                ("/fhir/Patient".to_string(), "pat-1".to_string()),
                ("/fhir/Appointment".to_string(), "appt-1".to_string())
            ]
        );
        // The answer says it was taken for delivery, not "not-supported".
        let done = client.wait_terminal(&ids[0]);
        assert_eq!(done["status"], "accepted", "{done}");
        let acks = client.get(&format!("/v1/transactions/{}/acks", ids[0])).json();
        let ack_id = acks[0]["id"].as_str().unwrap();
        let ack = client.get(&format!("/v1/transactions/{}/acks/{ack_id}", ids[0])).text();
        assert!(ack.contains("accepted for delivery to 1 destination"), "{ack}");
        assert!(!ack.contains("not-supported"), "{ack}");

        let obs = br#"{"resourceType":"Observation","id":"obs-1","status":"final","code":{"text":"x"}}"#;
        let r = client.submit("application/fhir+json", obs, &[]);
        assert_eq!(r.status, 422, "{}", r.text());
        assert_eq!(r.header("content-type"), Some("application/fhir+json"));
        let v = r.json();
        assert_eq!(v["resourceType"], "OperationOutcome");
        assert_eq!(v["issue"][0]["code"], "not-supported");
        assert!(v["issue"][0]["diagnostics"].as_str().unwrap().contains("no route delivers Observation"), "{v}");
        // Claims are still Clearway's own, route or none.
        let r = client.submit("application/fhir+json", br#"{"resourceType":"Claim"}"#, &[]);
        assert_eq!(r.status, 202, "{}", r.text());

        // And HL7 over HTTP, in order, to two systems.
        let ehr = peer.mllp[0].clone();
        for (i, m) in [adt("L-1", "A01"), siu("L-2"), adt("L-3", "A08")].iter().enumerate() {
            let r = client.submit("application/hl7-v2", m.as_bytes(), &[]);
            assert_eq!(r.status, 202, "{i}: {}", r.text());
        }
        peer.wait_for("L-3 at the EHR", |p| controls(&p.at(&ehr)).contains(&"L-3".to_string()));
        assert_eq!(controls(&peer.at(&ehr)), ["L-1", "L-2", "L-3"]);
        // Each system is delivered to on its own: the other one's message
        // may come after the EHR's last.
        let other = peer.mllp[1].clone();
        peer.wait_for("L-2 at the other system", |p| !controls(&p.at(&other)).is_empty());
        assert_eq!(controls(&peer.at(&other)), ["L-2"]);
    }
}

#[test]
fn kill_9_during_delivery_loses_nothing_and_keeps_order() {
    // The EHR is down while 150 messages are queued, then comes up taking
    // 5 ms per ACK, so delivery is under way when the service is killed.
    let port = free_port();
    let ehr = format!("127.0.0.1:{port}");
    let scratch = Scratch::new();
    scratch.write_config(&format!(
        "[destinations.EHR]\nkind = \"mllp\"\naddress = \"{ehr}\"\nretry_max_ms = 200\n\n[[routes]]\nmessages = [\"ADT\"]\nto = [\"EHR\"]\n"
    ));
    scratch.partner("hosp", false);
    let sent: Vec<String> = (0..150).map(|i| adt(&format!("K-{i:03}"), "A08")).collect();
    let server = Server::start(&scratch, Some("hosp"), &[]);
    assert!(send_mllp(&server, &sent).iter().all(|a| a == "AA"));
    let peer = Peer::start_on(&[port], 0, 5);
    peer.wait_for("deliveries under way", |p| p.at(&ehr).len() >= 20);
    server.kill();
    let before = peer.at(&ehr).len();
    assert!(before < 150, "the kill came too late to test anything ({before} delivered)");
    let _server = Server::start(&scratch, Some("hosp"), &[]);
    peer.wait_for("every message at the EHR", |p| {
        let got = controls(&p.at(&ehr));
        (0..150).all(|i| got.contains(&format!("K-{i:03}")))
    });
    let got = controls(&peer.at(&ehr));
    // At least once; in order: each message's first arrival comes after
    // the previous message's, and a repeat only re-sends a suffix that had
    // already arrived (the messages in flight at the kill).
    let first: Vec<usize> = (0..150).map(|i| got.iter().position(|c| *c == format!("K-{i:03}")).unwrap()).collect();
    assert!(first.windows(2).all(|w| w[0] < w[1]), "first arrivals out of order: {got:?}");
    for w in got.windows(2) {
        let (a, b): (usize, usize) = (w[0][2..].parse().unwrap(), w[1][2..].parse().unwrap());
        assert!(b == a + 1 || b <= a, "a message skipped ahead: {a} then {b}");
    }
    let repeats = got.len() - 150;
    assert!(repeats <= 256, "{repeats} messages sent twice");
}

#[test]
fn routes_test_says_which_routes_take_a_message_and_why() {
    let peer = Peer::start(2, 1, 0);
    let scratch = Scratch::new();
    scratch.write_config(&config(&peer));
    let file = scratch.root.path().join("siu.hl7");
    std::fs::write(&file, siu("S-1")).unwrap();
    let out = scratch.command().args(["routes", "test", "--config"]).arg(scratch.config()).arg(&file).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("message 1 SIU^S12"), "{text}");
    assert!(text.contains("route adt: no (SIU^S12 is not among ADT)"), "{text}");
    assert!(text.contains("route scheduling: takes it -> SCHED, EHR"), "{text}");
    assert!(text.contains("delivered to: SCHED, EHR"), "{text}");
    // A message no route takes: exit 1.
    std::fs::write(&file, oru("O-1").replace("|NORTH|", "|SOUTH|")).unwrap();
    let out = scratch
        .command()
        .args(["routes", "test", "--json", "--config"])
        .arg(scratch.config())
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["destinations"].as_array().unwrap().len(), 0);
    let results = v[0]["routes"].as_array().unwrap().iter().find(|r| r["route"] == "results").unwrap();
    assert_eq!(results["why"], "sending facility \"SOUTH\" is not among NORTH");
}

#[test]
fn a_full_destination_queue_refuses_new_work_and_nothing_is_lost() {
    // Nothing listens at the destination: its queue only grows.
    let scratch = Scratch::new();
    let closed = format!("127.0.0.1:{}", free_port());
    scratch.write_config(&format!(
        "[destinations.DOWN]\nkind = \"mllp\"\naddress = \"{closed}\"\nmax_queue = 3\nretry_max_ms = 100\n\n[[routes]]\nmessages = [\"ADT\"]\nto = [\"DOWN\"]\n"
    ));
    let key = scratch.partner("hosp", false);
    let ops = scratch.partner("ops", true);
    let server = Server::start(&scratch, Some("hosp"), &[]);
    let client = Client { addr: server.http, key };
    let operator = Client { addr: server.http, key: ops };
    let mut accepted = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let refused = loop {
        let r = client.submit("application/hl7-v2", adt(&format!("F-{}", accepted.len()), "A01").as_bytes(), &[]);
        if r.status == 503 {
            break r;
        }
        assert_eq!(r.status, 202, "{}", r.text());
        accepted.push(r.json()["transactionId"].as_str().unwrap().to_string());
        assert!(Instant::now() < deadline, "never refused");
        std::thread::sleep(Duration::from_millis(300));
    };
    // The bound is approximate (published every 2 s), not loose.
    assert!((3..=4).contains(&accepted.len()), "{} accepted before the refusal", accepted.len());
    assert!(refused.header("retry-after").is_some());
    // MLLP: the message is not acknowledged, so the sender keeps it.
    let mut s = TcpStream::connect(server.mllp.unwrap()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&frame(adt("F-MLLP", "A01").as_bytes())).unwrap();
    assert_eq!(read_frame(&mut s), None, "closed without an ACK");
    // Nothing accepted is lost: every one waits in the queue.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let v = operator.get("/v1/destinations").json();
        if v["destinations"][0]["queue"]["waiting"].as_u64() == Some(accepted.len() as u64) {
            break;
        }
        assert!(Instant::now() < deadline, "{v}");
        std::thread::sleep(Duration::from_millis(200));
    }
    for id in &accepted {
        let state = client.get(&format!("/v1/transactions/{id}")).json()["deliveries"][0]["state"].clone();
        assert!(state == "queued" || state == "retrying", "{id}: {state}");
    }
    // The alarm is raised once the queue is nearly full.
    let metrics = request(server.http, "GET", "/metrics", &[], b"").text();
    assert!(metrics.contains("clearway_destination_alarm{destination=\"DOWN\"} 1"), "{metrics}");
    assert!(metrics.contains("clearway_destination_queue_messages{destination=\"DOWN\"}"), "{metrics}");
}

#[test]
fn sample_messages_of_many_types_and_versions_are_all_taken_and_delivered() {
    // The project's synthetic fixtures (MDM, VXU, RDE, RDS, RGV, OML, OUL,
    // ORL, OMG, REF, RRI, PPR, BAR, MFN, QBP, SIU, ADT, a local Z type;
    // versions 2.3 to 2.8) and the public corpus's well-formed messages.
    let mut files: Vec<std::path::PathBuf> = Vec::new();
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/hl7");
    for dir in [fixtures, support::corpus().join("hl7v2")] {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            if name.contains("-bad-") || name.starts_with("ack-") {
                continue;
            }
            files.push(p);
        }
    }
    files.sort();
    assert!(files.len() >= 45, "{}", files.len());
    let peer = Peer::start(1, 0, 0);
    let scratch = Scratch::new();
    scratch.write_config(&format!(
        "[destinations.EHR]\nkind = \"mllp\"\naddress = \"{}\"\n\n[[routes]]\nname = \"everything\"\nmessages = [\"*\"]\nto = [\"EHR\"]\n",
        peer.mllp[0]
    ));
    let key = scratch.partner("hosp", false);
    let server = Server::start(&scratch, Some("hosp"), &[]);
    let client = Client { addr: server.http, key };
    let mut expected = 0usize;
    let mut ids = Vec::new();
    let mut types = std::collections::BTreeSet::new();
    for f in &files {
        let body = std::fs::read(f).unwrap();
        let r = client.submit("application/hl7-v2", &body, &[]);
        let name = f.file_name().unwrap().to_string_lossy();
        let fixture = f.starts_with(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures"));
        if r.status == 200 && r.json()["duplicate"] == "duplicate-message" && !fixture {
            // Two public samples share one MSH-10: answered as the duplicate it is.
            continue;
        }
        assert_eq!(r.status, 202, "{name}: {}", r.text());
        let id = r.json()["transactionId"].as_str().unwrap().to_string();
        let done = client.wait_terminal(&id);
        let acks = client.get(&format!("/v1/transactions/{id}/acks")).json();
        let mut codes = Vec::new();
        for a in acks.as_array().unwrap() {
            let ack = client.get(&format!("/v1/transactions/{id}/acks/{}", a["id"].as_str().unwrap())).body;
            let text = String::from_utf8_lossy(&ack).to_string();
            // Never refused for its type (table 0357 code 200, unsupported
            // message type) whatever it is.
            assert!(!text.contains("|200^"), "{name}: {text}");
            codes.push(hl7_field(&ack, "MSA", 1).unwrap_or_default());
        }
        let text = String::from_utf8_lossy(&body).to_string();
        let n = text.split(['\r', '\n']).filter(|l| l.starts_with("MSH")).count();
        if fixture {
            // Our own samples are valid: all taken.
            assert_eq!(done["status"], "accepted", "{name}: {done}");
            assert!(codes.iter().all(|c| c == "AA"), "{name}: {codes:?}");
        }
        // Routed when intake accepts its messages (public samples with
        // errors in a known type's required fields get AE and stay; a batch
        // file's valid messages go).
        let routed = done["deliveries"].as_array().map_or(0, Vec::len);
        if done["status"] == "accepted" {
            assert_eq!(routed, 1, "{name}: {done}");
            for l in text.split(['\r', '\n']).filter(|l| l.starts_with("MSH")) {
                types.insert(l.split('|').nth(8).unwrap_or("").split('^').next().unwrap_or("").to_string());
            }
        } else if n == 1 {
            assert_eq!(routed, 0, "{name}: a message answered AE is not delivered: {done}");
        }
        if routed == 1 {
            ids.push(id);
        }
    }
    // Every routed transaction's messages are acknowledged by the EHR, and
    // the EHR got each message once.
    for id in &ids {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let v = client.get(&format!("/v1/transactions/{id}")).json();
            if v["deliveries"][0]["state"] == "delivered" {
                expected += v["deliveries"][0]["delivered"].as_u64().unwrap() as usize;
                break;
            }
            assert!(Instant::now() < deadline, "{v}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    assert!(types.len() >= 18, "{types:?}");
    peer.wait_for("every message at the EHR", |p| p.at(&p.mllp[0]).len() >= expected);
    assert_eq!(peer.at(&peer.mllp[0]).len(), expected, "each message once");
}

#[test]
fn batch_files_are_delivered_message_by_message() {
    let peer = Peer::start(2, 1, 0);
    let (_scratch, _server, client, operator) = start(Lane::Local, &peer);
    let ehr = peer.mllp[0].clone();
    // AE twice under the ADT route's retry: resent from the refused
    // message, never from the start of the file.
    let batch = [adt("B-1", "A01"), adt("AE2-B2", "A08"), adt("B-3", "A08")].concat();
    let r = client.submit("application/hl7-v2", batch.as_bytes(), &[]);
    assert_eq!(r.status, 202, "{}", r.text());
    let first = r.json()["transactionId"].as_str().unwrap().to_string();
    // Results go under a dead-letter policy: the refused one alone is set
    // aside, the rest of the file still comes before what follows it.
    let results = [oru("R-1"), oru("AE1-R2"), oru("R-3")].concat();
    let r = client.submit("application/hl7-v2", results.as_bytes(), &[]);
    assert_eq!(r.status, 202, "{}", r.text());
    let second = r.json()["transactionId"].as_str().unwrap().to_string();
    assert_eq!(client.submit("application/hl7-v2", adt("B-4", "A08").as_bytes(), &[]).status, 202);
    peer.wait_for("B-4", |p| controls(&p.at(&ehr)).contains(&"B-4".to_string()));
    let got = peer.at(&ehr);
    let pairs: Vec<(&str, &str)> = got.iter().map(|(c, a)| (c.as_str(), a.as_str())).collect();
    assert_eq!(
        pairs,
        [
            ("B-1", "AA"),
            ("AE2-B2", "AE"),
            ("AE2-B2", "AE"),
            ("AE2-B2", "AA"),
            ("B-3", "AA"),
            ("R-1", "AA"),
            ("AE1-R2", "AE"),
            ("R-3", "AA"),
            ("B-4", "AA")
        ]
    );
    let status = |id: &str| client.get(&format!("/v1/transactions/{id}")).json()["deliveries"][0].clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    while status(&second)["state"] != "delivered" {
        assert!(Instant::now() < deadline, "{}", status(&second));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(status(&first)["delivered"], 3, "{}", status(&first));
    assert_eq!(status(&second)["delivered"], 2, "{}", status(&second));
    assert_eq!(status(&second)["deadLettered"], 1, "{}", status(&second));
    let dead = operator.get("/v1/destinations/EHR/dead-letters").json();
    let list = dead["deadLetters"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{dead}");
    assert_eq!(list[0]["messages"], 1);
    assert_eq!(list[0]["transactionId"], second.as_str());
    // Replayed, it is that one message again (the peer now answers AA).
    assert_eq!(operator.post("/v1/destinations/EHR/replay").json()["deadLetters"], 1);
    peer.wait_for("AE1-R2 again", |p| p.at(&p.mllp[0]).iter().any(|(c, a)| c == "AE1-R2" && a == "AA"));
    let again: Vec<String> = controls(&peer.at(&ehr)).into_iter().skip(9).collect();
    assert_eq!(again, ["AE1-R2"]);
}

/// A CA (`ca.pem`) that issues a receiving system's certificate for
/// 127.0.0.1 (`ehr.pem`/`ehr.key`) and Clearway's client certificate
/// (`clearway.pem`/`clearway.key`); and the peer serving TLS with it,
/// requiring a client certificate of that CA.
fn tls_peer(dir: &std::path::Path, mllp: usize, http: usize) -> Peer {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl").current_dir(dir).args(args).output().unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    openssl(
        &[&["req", "-x509"][..], &ec, &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=EHR CA"]]
            .concat(),
    );
    std::fs::write(dir.join("server.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for (name, ext) in [("ehr", "server.ext"), ("clearway", "client.ext")] {
        let (key, csr, pem, subj) =
            (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"), format!("/CN={name}"));
        openssl(&[&["req"][..], &ec, &["-keyout", &key, "-out", &csr, "-subj", &subj]].concat());
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-set_serial",
            "7",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            ext,
        ]);
    }
    let (cert, key, ca) = (dir.join("ehr.pem"), dir.join("ehr.key"), dir.join("ca.pem"));
    Peer::start_with(
        &vec![0; mllp],
        http,
        0,
        &["--tls".as_ref(), cert.as_os_str(), key.as_os_str(), "--tls-client-ca".as_ref(), ca.as_os_str()],
    )
}

/// `tls_ca_file`, `tls_client_cert_file`, `tls_client_key_file` for
/// [`tls_peer`]'s CA and Clearway's certificate.
fn tls_settings(dir: &std::path::Path) -> String {
    let path = |f: &str| dir.join(f).display().to_string();
    format!(
        "tls_ca_file = {:?}\ntls_client_cert_file = {:?}\ntls_client_key_file = {:?}\n",
        path("ca.pem"),
        path("clearway.pem"),
        path("clearway.key")
    )
}

#[test]
fn destinations_over_tls_with_their_own_ca_and_our_client_certificate() {
    let pki = tempfile::tempdir().unwrap();
    let peer = tls_peer(pki.path(), 1, 1);
    let tls = tls_settings(pki.path());
    let scratch = Scratch::new();
    scratch.write_config(&format!(
        "[destinations.EHR]\nkind = \"mllp\"\naddress = \"{}\"\ntls = true\n{tls}\n\
         [destinations.HOOK]\nkind = \"http\"\nurl = \"https://{}/hl7\"\n{tls}\n\
         [destinations.PLAIN]\nkind = \"mllp\"\naddress = \"{}\"\nretry_max_ms = 200\n\n\
         [[routes]]\nmessages = [\"ADT\"]\nto = [\"EHR\", \"HOOK\", \"PLAIN\"]\n",
        peer.mllp[0], peer.http[0], peer.mllp[0]
    ));
    scratch.partner("hosp", false);
    let server = Server::start(&scratch, Some("hosp"), &[]);
    assert_eq!(send_mllp(&server, &[adt("TLSDEST-1", "A01")]), vec!["AA"]);
    peer.wait_for("the message over MLLP/TLS and HTTPS", |p| {
        let r = p.received();
        r.iter().any(|x| x["control"] == "TLSDEST-1" && x["client"] == "clearway")
            && r.iter().any(|x| x["id"] == "TLSDEST-1" && x["client"] == "clearway")
    });
    // The same system without TLS settings: the handshake never happens,
    // so the message waits in that destination's queue.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = scratch
            .command()
            .args(["destinations", "list", "--json", "--data-dir"])
            .arg(scratch.data())
            .arg("--config")
            .arg(scratch.config())
            .output()
            .unwrap();
        let list: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let plain = list.as_array().and_then(|a| a.iter().find(|d| d["name"] == "PLAIN").cloned());
        if let Some(p) = plain
            && p["queue"]["waiting"] == 1
            && p["queue"]["lastError"].as_str().is_some_and(|e| !e.is_empty())
        {
            break;
        }
        assert!(Instant::now() < deadline, "PLAIN still has no error: {list}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Each TLS delivery happened exactly once (PLAIN's never reached the
    // peer, which speaks only TLS).
    let got: Vec<Value> = peer.received().into_iter().filter(|x| x["control"] == "TLSDEST-1").collect();
    assert_eq!(got.len(), 1, "{got:?}");
}

#[test]
fn webhooks_over_tls_with_a_configured_ca_and_our_client_certificate() {
    let pki = tempfile::tempdir().unwrap();
    let peer = tls_peer(pki.path(), 0, 1);
    let scratch = Scratch::new();
    scratch.write_config(&format!("[webhooks]\n{}", tls_settings(pki.path())));
    let key = scratch.partner("hosp", false);
    let server = Server::start(&scratch, Some("hosp"), &[]);
    let auth = format!("Bearer {key}");
    let hook = format!(r#"{{"url":"https://{}/hook"}}"#, peer.http[0]);
    let set = request(
        server.http,
        "PUT",
        "/v1/webhook",
        &[("Authorization", auth.as_str()), ("Content-Type", "application/json")],
        hook.as_bytes(),
    );
    assert!(set.status < 300, "{} {}", set.status, set.text());
    let mut body = Vec::new();
    clearway_formats::x12::synth::write(&mut body, clearway_formats::x12::synth::Kind::Professional837, 1, 5).unwrap();
    let c = Client { addr: server.http, key };
    assert_eq!(c.submit("application/edi-x12", &body, &[]).status, 202);
    peer.wait_for("the acknowledgement event over HTTPS with our certificate", |p| {
        p.received().iter().any(|x| x["path"] == "/hook" && x["client"] == "clearway")
    });
}
