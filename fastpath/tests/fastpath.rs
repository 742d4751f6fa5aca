//! The fast path over the in-memory ports: answers from coverage and from
//! recorded claims, the cache (hits, TTL, one upstream call for concurrent
//! misses, invalidation, stale on error) and the per-payer limits.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_trait::async_trait;
use bytes::Bytes;
use clearway_core::config::{self, Config};
use clearway_core::partners::Partners;
use clearway_core::ports::{Condition, Item, Key, StateStore, Table, WriteOp};
use clearway_core::{ClaimStatusRequest, EligibilityRequest, ErrorKind, PartnerId, PortError, PortResult};
use clearway_fastpath::{FastPath, Reply};
use clearway_formats::x12::build::EligibilityOutcome;
use clearway_formats::x12::synth::{self, Kind};
use clearway_formats::x12::{AnalyzeOptions, Document, analyze};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use time::macros::date;

/// The in-memory state store, counting coverage reads and failing on
/// demand (a payer that is down).
#[derive(Default)]
struct Upstream {
    inner: clearway_local::MemStateStore,
    coverage_reads: AtomicUsize,
    down: AtomicBool,
    slow: AtomicBool,
}

#[async_trait]
impl StateStore for Upstream {
    async fn get(&self, key: &Key) -> PortResult<Option<Item>> {
        if key.table == Table::Coverage {
            self.coverage_reads.fetch_add(1, Ordering::SeqCst);
            if self.slow.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            if self.down.load(Ordering::SeqCst) {
                return Err(PortError::new(ErrorKind::Unavailable, "coverage read"));
            }
        }
        self.inner.get(key).await
    }
    async fn write(&self, ops: Vec<WriteOp>) -> PortResult<()> {
        self.inner.write(ops).await
    }
    async fn query(&self, t: Table, pk: &str, after: Option<&str>, limit: usize) -> PortResult<Vec<(String, Item)>> {
        self.inner.query(t, pk, after, limit).await
    }
    async fn scan(&self, t: Table, after: Option<&str>, limit: usize) -> PortResult<clearway_core::ports::ScanPage> {
        self.inner.scan(t, after, limit).await
    }
}

struct World {
    up: Arc<Upstream>,
    partners: Arc<Partners>,
    fp: FastPath,
}

fn world(env: &[(&str, &str)]) -> World {
    world_from(None, env)
}

fn world_from(file: Option<&str>, env: &[(&str, &str)]) -> World {
    let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let config: Arc<Config> = Arc::new(config::load(file, &env).unwrap());
    let up = Arc::new(Upstream::default());
    let master = clearway_core::crypto::Key::generate().unwrap();
    let partners = Arc::new(Partners::new(master, up.clone()));
    let fp = FastPath::new(up.clone(), partners.clone(), config);
    World { up, partners, fp }
}

fn x12(kind: Kind, count: usize) -> Vec<u8> {
    let mut v = Vec::new();
    synth::write(&mut v, kind, count, 7).unwrap();
    v
}

fn requests(body: &[u8]) -> Vec<EligibilityRequest> {
    analyze(body, &AnalyzeOptions::default())
        .documents()
        .filter_map(|d| match d {
            Document::EligibilityRequest(r) => Some((**r).clone()),
            _ => None,
        })
        .collect()
}

fn status_requests(body: &[u8]) -> Vec<ClaimStatusRequest> {
    analyze(body, &AnalyzeOptions::default())
        .documents()
        .filter_map(|d| match d {
            Document::ClaimStatusRequest(r) => Some((**r).clone()),
            _ => None,
        })
        .collect()
}

impl World {
    /// Enrols the subscriber of `r` as an 834 would.
    async fn enrol(&self, r: &EligibilityRequest, begin: time::Date, end: Option<time::Date>, plan: &str) {
        let member = r.member_id.expose().clone().unwrap();
        let payer = r.payer_id.clone().unwrap();
        let value = serde_json::json!({
            "payerId": payer,
            "member": {
                "is_subscriber": true, "relationship": "18", "maintenance": "addition",
                "subscriber_id": member, "member_id": member,
                "person": r.subscriber,
                "coverages": [{ "insurance_line": "HLT", "plan": plan, "coverage_level": "EMP", "begin": begin, "end": end }],
            },
        });
        self.up
            .write(vec![WriteOp::Put {
                key: Key::new(Table::Coverage, &payer, self.partners.member_key(&member)),
                value: Bytes::from(serde_json::to_vec(&value).unwrap()),
                expires_at: None,
                condition: Condition::None,
                owner: None,
            }])
            .await
            .unwrap();
    }
}

const TODAY: time::Date = date!(2024 - 06 - 01);

#[tokio::test]
async fn answers_from_coverage_not_found_and_invalid_member() {
    let w = world(&[]);
    let body = x12(Kind::Eligibility270, 3);
    let reqs = requests(&body);
    assert_eq!(reqs.len(), 3);
    w.enrol(&reqs[0], date!(2024 - 01 - 01), None, "GOLD").await;
    w.enrol(&reqs[1], date!(2020 - 01 - 01), Some(date!(2021 - 12 - 31)), "OLD").await;
    let on = |r: &EligibilityRequest| r.date.map_or(TODAY, |d| d.from);
    let first = w.fp.eligibility(&reqs[0], TODAY).await;
    assert!(
        matches!(&first, EligibilityOutcome::Active { plan: Some(p), .. } if p == "GOLD")
            || on(&reqs[0]) < date!(2024 - 01 - 01),
        "{first:?}"
    );
    assert!(matches!(w.fp.eligibility(&reqs[1], TODAY).await, EligibilityOutcome::Inactive { .. }));
    assert_eq!(
        w.fp.eligibility(&reqs[2], TODAY).await,
        EligibilityOutcome::SubscriberRejected { reason: "75", action: "C" },
        "not enrolled: subscriber not found"
    );
    let mut bad = reqs[2].clone();
    bad.member_id = Some("!".to_string()).into();
    assert_eq!(
        w.fp.eligibility(&bad, TODAY).await,
        EligibilityOutcome::SubscriberRejected { reason: "72", action: "C" },
        "invalid member id"
    );
    let mut wrong_dob = reqs[0].clone();
    wrong_dob.subscriber.birth_date = Some(date!(1901 - 01 - 01)).into();
    assert_eq!(
        w.fp.eligibility(&wrong_dob, TODAY).await,
        EligibilityOutcome::SubscriberRejected { reason: "71", action: "C" },
        "birth date does not match"
    );

    // The whole 270 gets a 271 that validates, with the answers in it.
    let Reply::Answer(out) = w.fp.eligibility_x12(&body, time::OffsetDateTime::now_utc()).await else {
        panic!("answered")
    };
    let back = analyze(&out, &AnalyzeOptions::default());
    assert!(back.accepted(), "{}", String::from_utf8_lossy(&out));
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("ST*271*"), "{text}");
    assert!(text.contains("**75*C~"), "subscriber not found: {text}");
}

#[tokio::test]
async fn malformed_requests_get_the_standard_answer() {
    let w = world(&[]);
    let body = x12(Kind::Eligibility270, 1);
    // A broken ISA: a TA1.
    let mut broken = body.clone();
    broken[3] = b'!';
    let Reply::Rejected { ack_kind, .. } = w.fp.eligibility_x12(&broken[..50], time::OffsetDateTime::now_utc()).await
    else {
        panic!("rejected")
    };
    assert!(ack_kind.is_none() || ack_kind == Some("ta1"));
    // SE01 wrong: a 999 rejecting the set.
    let text = String::from_utf8_lossy(&body).into_owned();
    let se = text.find("SE*").unwrap();
    let star = se + 3 + text[se + 3..].find('*').unwrap();
    let bad = format!("{}SE*999{}", &text[..se], &text[star..]);
    match w.fp.eligibility_x12(bad.as_bytes(), time::OffsetDateTime::now_utc()).await {
        Reply::Rejected { ack_kind: Some("999"), ack: Some(ack), .. } => {
            assert!(String::from_utf8_lossy(&ack).contains("IK5*R"), "{}", String::from_utf8_lossy(&ack));
        }
        other => panic!("{other:?}"),
    }
    // A 276 sent to the eligibility endpoint.
    let status = x12(Kind::Status276, 1);
    assert!(matches!(
        w.fp.eligibility_x12(&status, time::OffsetDateTime::now_utc()).await,
        Reply::Rejected { ack_kind: None, .. }
    ));
}

#[tokio::test]
async fn cache_hits_expire_by_payer_ttl_and_are_invalidated_by_enrolment() {
    let body = x12(Kind::Eligibility270, 1);
    let r = requests(&body).remove(0);
    let payer = r.payer_id.clone().unwrap();
    let ttl_var = format!("CLEARWAY__PAYERS__{payer}__CACHE_TTL_SECS");
    let w = world(&[(ttl_var.as_str(), "1")]);
    assert_eq!(w.fp.eligibility(&r, TODAY).await, EligibilityOutcome::SubscriberRejected { reason: "75", action: "C" });
    w.enrol(&r, date!(2000 - 01 - 01), None, "GOLD").await;
    // Cached: the enrolment is not seen yet, and no read was made.
    assert!(matches!(w.fp.eligibility(&r, TODAY).await, EligibilityOutcome::SubscriberRejected { .. }));
    assert_eq!(w.up.coverage_reads.load(Ordering::SeqCst), 1, "the second answer came from the cache");
    // After the payer's TTL, the coverage is read again.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert!(matches!(w.fp.eligibility(&r, TODAY).await, EligibilityOutcome::Active { .. }));
    assert_eq!(w.up.coverage_reads.load(Ordering::SeqCst), 2);
    // A new 834 for the member drops the cached answer at once.
    w.enrol(&r, date!(2000 - 01 - 01), Some(date!(2001 - 01 - 01)), "ENDED").await;
    assert!(matches!(w.fp.eligibility(&r, TODAY).await, EligibilityOutcome::Active { .. }), "still cached");
    w.fp.invalidate_member(&payer, r.member_id.expose().as_deref().unwrap());
    assert!(matches!(w.fp.eligibility(&r, TODAY).await, EligibilityOutcome::Inactive { .. }), "invalidated");
}

#[tokio::test]
async fn concurrent_misses_make_one_upstream_call() {
    let w = Arc::new(world(&[]));
    let body = x12(Kind::Eligibility270, 1);
    let r = Arc::new(requests(&body).remove(0));
    w.enrol(&r, date!(2000 - 01 - 01), None, "GOLD").await;
    w.up.slow.store(true, Ordering::SeqCst);
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (w, r) = (w.clone(), r.clone());
        tasks.push(tokio::spawn(async move { w.fp.eligibility(&r, TODAY).await }));
    }
    for t in tasks {
        assert!(matches!(t.await.unwrap(), EligibilityOutcome::Active { .. }));
    }
    assert_eq!(w.up.coverage_reads.load(Ordering::SeqCst), 1, "fifty concurrent misses, one upstream read");
}

#[tokio::test]
async fn payer_down_serves_stale_then_aaa_42() {
    let body = x12(Kind::Eligibility270, 2);
    let reqs = requests(&body);
    let payer = reqs[0].payer_id.clone().unwrap();
    let ttl_var = format!("CLEARWAY__PAYERS__{payer}__CACHE_TTL_SECS");
    let w = world(&[(ttl_var.as_str(), "1")]);
    w.enrol(&reqs[0], date!(2000 - 01 - 01), None, "GOLD").await;
    assert!(matches!(w.fp.eligibility(&reqs[0], TODAY).await, EligibilityOutcome::Active { .. }));
    tokio::time::sleep(Duration::from_millis(1300)).await;
    w.up.down.store(true, Ordering::SeqCst);
    assert!(
        matches!(w.fp.eligibility(&reqs[0], TODAY).await, EligibilityOutcome::Active { .. }),
        "the last good answer is served while the payer is down"
    );
    assert_eq!(
        w.fp.eligibility(&reqs[1], TODAY).await,
        EligibilityOutcome::PayerRejected { reason: "42", action: "R" },
        "nothing cached: unable to respond at current time"
    );
}

#[tokio::test]
async fn a_storm_never_exceeds_the_payer_rate() {
    let body = x12(Kind::Eligibility270, 20);
    let reqs = requests(&body);
    let payer = reqs[0].payer_id.clone().unwrap();
    assert!(reqs.iter().all(|r| r.payer_id.as_deref() == Some(payer.as_str())));
    let rate = format!("CLEARWAY__PAYERS__{payer}__RATE_PER_SEC");
    let burst = format!("CLEARWAY__PAYERS__{payer}__BURST");
    let w = world(&[(rate.as_str(), "0.001"), (burst.as_str(), "5")]);
    let mut refused = 0;
    for r in &reqs {
        if w.fp.eligibility(r, TODAY).await == (EligibilityOutcome::PayerRejected { reason: "42", action: "R" }) {
            refused += 1;
        }
    }
    assert_eq!(w.up.coverage_reads.load(Ordering::SeqCst), 5, "only the burst reached the payer");
    assert_eq!(refused, reqs.len() - 5);
}

#[tokio::test]
async fn claim_status_from_recorded_claims_and_payments() {
    let w = world(&[]);
    let body = x12(Kind::Status276, 4);
    let reqs = status_requests(&body);
    assert_eq!(reqs.len(), 4);
    let acme = PartnerId::new("acme").unwrap();
    let put = |table: Table, pcn: &str, sk: String, v: serde_json::Value| WriteOp::Put {
        key: Key::new(table, w.partners.pcn_partition(pcn), sk),
        value: Bytes::from(serde_json::to_vec(&v).unwrap()),
        expires_at: None,
        condition: Condition::None,
        owner: None,
    };
    let claim = |pcn: &str, payer: &Option<String>, status: &str, code: Option<&str>, partner: &str| {
        serde_json::json!({
            "claim": { "id": format!("t-{pcn}"), "patient_control_number": pcn, "payer_id": payer,
                       "total_charge": "150.00", "status": status, "status_code": code, "destination": null },
            "transactionId": "t", "partner": partner, "receivedAt": "2024-05-01T10:00:00Z",
        })
    };
    let pcn = |r: &ClaimStatusRequest| r.patient_control_number.expose().clone().unwrap();
    let mut ops = vec![
        put(
            Table::Claims,
            &pcn(&reqs[0]),
            "a".into(),
            claim(&pcn(&reqs[0]), &reqs[0].payer_id, "routed", None, "acme"),
        ),
        put(
            Table::Claims,
            &pcn(&reqs[1]),
            "b".into(),
            claim(&pcn(&reqs[1]), &reqs[1].payer_id, "rejected", Some("A7:562:85"), "acme"),
        ),
        put(
            Table::Claims,
            &pcn(&reqs[2]),
            "c".into(),
            claim(&pcn(&reqs[2]), &reqs[2].payer_id, "routed", None, "acme"),
        ),
        // Another partner's claim is not visible to acme.
        put(
            Table::Claims,
            &pcn(&reqs[3]),
            "d".into(),
            claim(&pcn(&reqs[3]), &reqs[3].payer_id, "routed", None, "other"),
        ),
    ];
    ops.push(put(
        Table::Payments,
        &pcn(&reqs[2]),
        "p".into(),
        serde_json::json!({
            "payment": { "patient_control_number": pcn(&reqs[2]), "status_code": "1", "charge": "150.00",
                         "paid": "120.00", "patient_responsibility": "30.00", "payer_claim_control_number": "PAYER9" },
            "paymentDate": "2024-05-20", "traceNumber": "EFT1", "payerId": reqs[2].payer_id, "transactionId": "t2",
        }),
    ));
    w.up.write(ops).await.unwrap();
    let Reply::Answer(out) = w.fp.claim_status_x12(&acme, &body, time::OffsetDateTime::now_utc()).await else {
        panic!("answered")
    };
    let text = String::from_utf8_lossy(&out);
    let back = analyze(&out, &AnalyzeOptions::default());
    assert!(back.accepted(), "{text}");
    let stcs: Vec<&str> = text.split('~').map(str::trim).filter(|s| s.starts_with("STC*")).collect();
    assert_eq!(stcs.len(), 4, "{text}");
    assert!(stcs[0].starts_with("STC*A1:20*20240501"), "received and forwarded: {}", stcs[0]);
    assert!(stcs[1].starts_with("STC*A7:562:85*"), "rejected with the 277CA codes: {}", stcs[1]);
    assert!(stcs[2].starts_with("STC*F1:65*20240520**150*120"), "paid from the 835: {}", stcs[2]);
    assert!(stcs[3].starts_with("STC*D0:35*"), "another partner's claim is not found: {}", stcs[3]);
    assert!(text.contains("REF*1K*PAYER9"), "{text}");
}

/// Regression: a 276 naming the payer by an alias did not find the claim
/// recorded under the payer's own id.
#[tokio::test]
async fn claim_status_finds_a_claim_asked_about_by_payer_alias() {
    let body = x12(Kind::Status276, 1);
    let r = status_requests(&body).remove(0);
    let alias = r.payer_id.clone().unwrap();
    let w = world_from(Some(&format!("[payers.CANON1]\naliases = [{alias:?}]\n")), &[]);
    let pcn = r.patient_control_number.expose().clone().unwrap();
    let claim = serde_json::json!({
        "claim": { "id": "t-1", "patient_control_number": pcn, "payer_id": "CANON1",
                   "total_charge": "150.00", "status": "routed", "status_code": null, "destination": null },
        "transactionId": "t", "partner": "acme", "receivedAt": "2024-05-01T10:00:00Z",
    });
    w.up.write(vec![WriteOp::Put {
        key: Key::new(Table::Claims, w.partners.pcn_partition(&pcn), "a"),
        value: Bytes::from(serde_json::to_vec(&claim).unwrap()),
        expires_at: None,
        condition: Condition::None,
        owner: None,
    }])
    .await
    .unwrap();
    let acme = PartnerId::new("acme").unwrap();
    let Reply::Answer(out) = w.fp.claim_status_x12(&acme, &body, time::OffsetDateTime::now_utc()).await else {
        panic!("answered")
    };
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("STC*A1:20*20240501"), "found under the payer's own id: {text}");
}

/// A payer's real-time endpoint: answers each 270 with a 271 saying
/// "active" after `delay`, counting the requests it gets.
fn payer_endpoint(delay: Duration) -> (String, Arc<AtomicUsize>) {
    payer_endpoint_with(delay, answer_271)
}

fn answer_271(body: &[u8]) -> Vec<u8> {
    let a = analyze(body, &AnalyzeOptions::default());
    let ic = &a.interchanges[0];
    let reqs: Vec<&EligibilityRequest> = a
        .documents()
        .filter_map(|d| match d {
            Document::EligibilityRequest(r) => Some(r.as_ref()),
            _ => None,
        })
        .collect();
    let answers: Vec<_> = reqs
        .iter()
        .map(|r| clearway_formats::x12::build::EligibilityAnswer {
            request: r,
            outcome: EligibilityOutcome::Active {
                plan: Some("PAYER PLAN".into()),
                begin: None,
                end: None,
                insurance_type: None,
            },
        })
        .collect();
    clearway_formats::x12::build::response271(&clearway_formats::x12::build::Response271 {
        interchange: &ic.report.isa,
        group: &ic.groups[0].report.header,
        reference: "X",
        answers: &answers,
        controls: clearway_formats::x12::build::Controls { interchange: 1, group: 1, first_set: 1 },
        at: time::macros::datetime!(2024-06-01 12:00),
    })
}

/// A 277 saying "paid" for every claim of a 276.
fn answer_277(body: &[u8]) -> Vec<u8> {
    let a = analyze(body, &AnalyzeOptions::default());
    let ic = &a.interchanges[0];
    let reqs = status_requests(body);
    let answers: Vec<_> = reqs
        .iter()
        .map(|r| clearway_formats::x12::build::ClaimStatusAnswer {
            request: r,
            category: "F1",
            status: "65",
            entity: None,
            effective: date!(2024 - 05 - 20),
            charge: r.total_charge,
            paid: Some(rust_decimal::Decimal::new(4200, 2)),
            adjudicated: Some(date!(2024 - 05 - 19)),
            payer_claim_control_number: Some("PAYERCCN1".into()),
        })
        .collect();
    clearway_formats::x12::build::response277(&clearway_formats::x12::build::Response277 {
        interchange: &ic.report.isa,
        group: &ic.groups[0].report.header,
        reference: "X",
        receiver_name: "CLEARWAY",
        receiver_id: "CLEARWAY",
        answers: &answers,
        controls: clearway_formats::x12::build::Controls { interchange: 1, group: 1, first_set: 1 },
        at: time::macros::datetime!(2024-06-01 12:00),
    })
}

/// An HTTP endpoint answering each X12 request with `answer(body)` after
/// `delay`, counting the requests it gets.
fn payer_endpoint_with(delay: Duration, answer: fn(&[u8]) -> Vec<u8>) -> (String, Arc<AtomicUsize>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/realtime", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let seen = seen.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut stream = stream;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut len = 0;
                    loop {
                        let mut h = String::new();
                        reader.read_line(&mut h).unwrap();
                        if h.trim().is_empty() {
                            break;
                        }
                        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap();
                        }
                    }
                    let mut body = vec![0; len];
                    reader.read_exact(&mut body).unwrap();
                    seen.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(delay);
                    let out = answer(&body);
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/edi-x12\r\nContent-Length: {}\r\n\r\n",
                        out.len()
                    );
                    if stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(&out)).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_connector_forwards_claim_status() {
    let (url, count) = payer_endpoint_with(Duration::ZERO, answer_277);
    let body = x12(Kind::Status276, 2);
    let payer = status_requests(&body)[0].payer_id.clone().unwrap();
    let vars = [
        (format!("CLEARWAY__PAYERS__{payer}__CONNECTOR"), "http".to_string()),
        (format!("CLEARWAY__PAYERS__{payer}__CONNECTOR_URL"), url),
    ];
    let env: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let w = world(&env);
    let acme = PartnerId::new("acme").unwrap();
    let Reply::Answer(out) = w.fp.claim_status_x12(&acme, &body, time::OffsetDateTime::now_utc()).await else {
        panic!("answered")
    };
    let text = String::from_utf8_lossy(&out);
    assert!(analyze(&out, &AnalyzeOptions::default()).accepted(), "{text}");
    let stcs: Vec<&str> = text.split('~').map(str::trim).filter(|s| s.starts_with("STC*")).collect();
    assert_eq!(stcs.len(), 2, "{text}");
    assert!(stcs.iter().all(|s| s.starts_with("STC*F1:65*") && s.ends_with("*42")), "the payer's answer: {stcs:?}");
    assert!(text.contains("REF*1K*PAYERCCN1"), "{text}");
    assert_eq!(count.load(Ordering::SeqCst), 2, "one forwarded 276 per inquiry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_connector_answers_and_a_storm_never_exceeds_the_payer_rate() {
    let (url, count) = payer_endpoint(Duration::ZERO);
    let body = x12(Kind::Eligibility270, 40);
    let reqs = requests(&body);
    let payer = reqs[0].payer_id.clone().unwrap();
    let vars = [
        (format!("CLEARWAY__PAYERS__{payer}__CONNECTOR"), "http".to_string()),
        (format!("CLEARWAY__PAYERS__{payer}__CONNECTOR_URL"), url),
        (format!("CLEARWAY__PAYERS__{payer}__RATE_PER_SEC"), "5".to_string()),
        (format!("CLEARWAY__PAYERS__{payer}__BURST"), "5".to_string()),
    ];
    let env: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let w = Arc::new(world(&env));
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for r in reqs.clone() {
        let w = w.clone();
        tasks.push(tokio::spawn(async move { w.fp.eligibility(&r, TODAY).await }));
    }
    let mut active = 0;
    for t in tasks {
        match t.await.unwrap() {
            EligibilityOutcome::Active { plan: Some(p), .. } if p == "PAYER PLAN" => active += 1,
            EligibilityOutcome::PayerRejected { reason: "42", .. } => {}
            other => panic!("{other:?}"),
        }
    }
    let allowed = 5.0 + 5.0 * started.elapsed().as_secs_f64();
    let reached = count.load(Ordering::SeqCst);
    assert!(reached as f64 <= allowed, "{reached} requests reached the payer; its rate allows {allowed:.1}");
    assert!(reached >= 5, "the burst reached the payer");
    assert_eq!(active, reached, "every request that reached the payer was answered from its 271");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_payer_slow_or_down_answers_aaa_42_within_the_timeout() {
    let (slow, _) = payer_endpoint(Duration::from_secs(3));
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", l.local_addr().unwrap());
        drop(l);
        url
    };
    for url in [slow, closed] {
        let body = x12(Kind::Eligibility270, 1);
        let r = requests(&body).remove(0);
        let payer = r.payer_id.clone().unwrap();
        let vars = [
            (format!("CLEARWAY__PAYERS__{payer}__CONNECTOR"), "http".to_string()),
            (format!("CLEARWAY__PAYERS__{payer}__CONNECTOR_URL"), url.clone()),
            (format!("CLEARWAY__PAYERS__{payer}__TIMEOUT_MS"), "300".to_string()),
        ];
        let env: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let w = world(&env);
        let started = std::time::Instant::now();
        let out = w.fp.eligibility(&r, TODAY).await;
        assert_eq!(out, EligibilityOutcome::PayerRejected { reason: "42", action: "R" }, "{url}");
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "answered within the timeout: {:?}",
            started.elapsed()
        );
    }
}

fn fhir_request() -> serde_json::Value {
    serde_json::json!({
        "resourceType": "CoverageEligibilityRequest",
        "id": "e-1",
        "contained": [
            {"resourceType": "Patient", "id": "pat", "name": [{"family": "Canary", "given": ["Pat"]}], "birthDate": "1980-02-03"},
            {"resourceType": "Coverage", "id": "cov", "status": "active",
             "identifier": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MB"}]},
                             "value": "MB-CANARY-1"}],
             "beneficiary": {"reference": "#pat"},
             "payor": [{"display": "Payer"}]}
        ],
        "identifier": [{"value": "TRACE-1"}],
        "status": "active",
        "purpose": ["validation", "benefits"],
        "patient": {"reference": "#pat"},
        "created": "2024-06-01",
        "insurer": {"identifier": {"system": "http://example.org/payers", "value": "PAYER1"}},
        "insurance": [{"focal": true, "coverage": {"reference": "#cov"}}],
        "item": [{"category": {"coding": [{"code": "30"}]}}]
    })
}

#[tokio::test]
async fn fhir_coverage_eligibility_from_the_same_coverage() {
    let w = world(&[]);
    let body = serde_json::to_vec(&fhir_request()).unwrap();
    let now = time::OffsetDateTime::now_utc();
    // Not enrolled: an error response with the X12 reason.
    let out = w.fp.eligibility_fhir(&body, now).await.expect("a response");
    assert_eq!(out["resourceType"], "CoverageEligibilityResponse");
    assert_eq!(out["outcome"], "error", "{out}");
    assert_eq!(out["error"][0]["code"]["coding"][0]["code"], "75", "{out}");
    // Enrolled (as an 834 would): in force, with the asked category.
    let doc = match clearway_formats::fhir::read_resource(&body, &clearway_formats::fhir::Limits::default()).unwrap() {
        clearway_formats::fhir::FhirDocument::CoverageEligibilityRequest(d) => d,
        _ => panic!("a CoverageEligibilityRequest"),
    };
    let req = doc.request.expect("mapped");
    assert_eq!(req.member_id.expose().as_deref(), Some("MB-CANARY-1"));
    w.enrol(&req, date!(2020 - 01 - 01), None, "GOLD").await;
    w.fp.invalidate_member("PAYER1", "MB-CANARY-1");
    let out = w.fp.eligibility_fhir(&body, now).await.expect("a response");
    assert_eq!(out["outcome"], "complete", "{out}");
    assert_eq!(out["insurance"][0]["inforce"], true, "{out}");
    assert_eq!(out["insurance"][0]["item"][0]["category"]["coding"][0]["code"], "30", "{out}");
    // Not a CoverageEligibilityRequest, or not JSON: an OperationOutcome.
    for bad in [&b"{\"resourceType\":\"Patient\",\"id\":\"x\"}"[..], b"not json"] {
        let oo = w.fp.eligibility_fhir(bad, now).await.expect_err("refused");
        assert_eq!(oo["resourceType"], "OperationOutcome");
    }
}

/// Control fields for a 270: each a plausible value or any short text, and
/// the trailers equal to their headers or not.
#[derive(Debug, Clone)]
struct ControlFields {
    isa: [String; 3],
    gs: [String; 3],
    st02: String,
    bht: [String; 3],
    trn02: Vec<String>,
    trailers: [Option<String>; 3],
}

fn control_fields() -> impl proptest::strategy::Strategy<Value = ControlFields> {
    use proptest::prelude::*;
    let any = || "[0-9A-Za-z :.]{0,11}".boxed();
    let or_any = |s: BoxedStrategy<String>| prop_oneof![30 => s, 1 => any()];
    let date = |years: std::ops::Range<u32>, short: bool| {
        (years, 1..=12u32, 1..=31u32)
            .prop_map(
                move |(y, m, d)| if short { format!("{:02}{m:02}{d:02}", y % 100) } else { format!("{y}{m:02}{d:02}") },
            )
            .boxed()
    };
    let hhmm = || (0..24u32, 0..60u32).prop_map(|(h, m)| format!("{h:02}{m:02}")).boxed();
    let control = |w: usize| (1..999_999_999u32).prop_map(move |n| format!("{:0w$}", n % 10u32.pow(w as u32))).boxed();
    (
        [or_any(date(2000..2030, true)), or_any(hhmm()), or_any(control(9))],
        [or_any(date(1995..2035, false)), or_any(hhmm()), or_any((1..99_999u32).prop_map(|n| n.to_string()).boxed())],
        or_any(control(4)),
        [or_any("[0-9A-Za-z]{1,30}".boxed()), or_any(date(1995..2035, false)), or_any(hhmm())],
        proptest::collection::vec(or_any("[0-9A-Za-z]{1,50}".boxed()), 4),
        [
            proptest::option::weighted(0.03, any()),
            proptest::option::weighted(0.03, any()),
            proptest::option::weighted(0.03, any()),
        ],
    )
        .prop_map(|(isa, gs, st02, bht, trn02, trailers)| ControlFields { isa, gs, st02, bht, trn02, trailers })
}

/// `body` with its control fields set to `f` (a trailer gets its header's
/// value unless `f` gives it another).
fn with_controls(body: &[u8], f: &ControlFields) -> Vec<u8> {
    let (elem, term) = (body[3] as char, body[105] as char);
    let text = String::from_utf8(body.to_vec()).unwrap();
    let mut trn = f.trn02.iter().cycle();
    let segments: Vec<String> = text
        .split(term)
        .map(|seg| {
            let mut e: Vec<String> = seg.split(elem).map(str::to_string).collect();
            let mut set = |i: usize, v: &str| e[i] = v.to_string();
            match seg.trim_start().split(elem).next().unwrap_or_default() {
                "ISA" => (set(9, &f.isa[0]), set(10, &f.isa[1]), set(13, &f.isa[2])).2,
                "GS" => (set(4, &f.gs[0]), set(5, &f.gs[1]), set(6, &f.gs[2])).2,
                "ST" => set(2, &f.st02),
                "BHT" => (set(3, &f.bht[0]), set(4, &f.bht[1]), set(5, &f.bht[2])).2,
                "TRN" => set(2, trn.next().unwrap()),
                "SE" => set(2, f.trailers[0].as_deref().unwrap_or(&f.st02)),
                "GE" => set(2, f.trailers[1].as_deref().unwrap_or(&f.gs[2])),
                "IEA" => set(2, f.trailers[2].as_deref().unwrap_or(&f.isa[2])),
                _ => {}
            }
            e.join(&elem.to_string())
        })
        .collect();
    segments.join(&term.to_string()).into_bytes()
}

/// A 270 that differs from one analysed before only in its control fields
/// is answered from the memo of analyses, and gets exactly the bytes the
/// full analysis gives it: the same 271 (trace numbers, BHT reference and
/// envelope echoed from the new request), or the same TA1 / 999 when a
/// control field is wrong.
#[test]
fn the_memo_answers_as_the_full_analysis_does() {
    use proptest::test_runner::{Config as Cases, TestRunner};
    let rt = tokio::runtime::Runtime::new().unwrap();
    let w = world(&[]);
    let bodies: Vec<Vec<u8>> = (1..=3).map(|n| x12(Kind::Eligibility270, n)).collect();
    rt.block_on(async {
        for r in requests(&bodies[2]).iter().take(2) {
            w.enrol(r, date!(2000 - 01 - 01), None, "GOLD").await;
        }
    });
    let config: Arc<Config> = Arc::new(config::load(None, &HashMap::new()).unwrap());
    let now = time::macros::datetime!(2024-06-01 10:30 UTC);
    for b in &bodies {
        assert!(matches!(rt.block_on(w.fp.eligibility_x12(b, now)), Reply::Answer(_)));
    }
    let mut runner = TestRunner::new(Cases { cases: 200, ..Cases::default() });
    runner
        .run(&(control_fields(), 0..bodies.len()), |(fields, which)| {
            let body = with_controls(&bodies[which], &fields);
            let warm = rt.block_on(w.fp.eligibility_x12(&body, now));
            let cold = FastPath::new(w.up.clone(), w.partners.clone(), config.clone());
            let full = rt.block_on(cold.eligibility_x12(&body, now));
            assert_eq!(cold.memo_hits(), 0);
            proptest::prop_assert_eq!(warm, full, "{}", String::from_utf8_lossy(&body));
            Ok(())
        })
        .unwrap();
    // Most generated requests are plausible and were answered from the memo.
    let hits = w.fp.memo_hits();
    assert!(hits > 40, "only {hits} of 200 requests were answered from the memo");
}

/// The memo keeps the body of the last 271 it answered; a 270 asked again
/// after an 834 changed the member gets the new coverage (and exactly the
/// bytes the full path gives), never the kept body.
#[tokio::test]
async fn a_remembered_270_says_what_the_coverage_says_now() {
    let w = world(&[]);
    let body = x12(Kind::Eligibility270, 1);
    let r = requests(&body).remove(0);
    let payer = r.payer_id.clone().unwrap();
    w.enrol(&r, date!(2000 - 01 - 01), None, "GOLD").await;
    let now = time::macros::datetime!(2024-06-01 10:30 UTC);
    let answer = |b: Reply| match b {
        Reply::Answer(x) => String::from_utf8(x).unwrap(),
        other => panic!("not answered: {other:?}"),
    };
    let first = answer(w.fp.eligibility_x12(&body, now).await);
    assert!(first.contains("EB*1*"), "{first}");
    // Asked again with other control fields: from the memo and its kept body.
    let mut fields = ControlFields {
        isa: ["240601".into(), "1031".into(), "000000777".into()],
        gs: ["20240601".into(), "1031".into(), "777".into()],
        st02: "0777".into(),
        bht: ["REF777".into(), "20240601".into(), "1031".into()],
        trn02: vec!["TRACE777".into(); 4],
        trailers: [None, None, None],
    };
    let again = with_controls(&body, &fields);
    let second = answer(w.fp.eligibility_x12(&again, now).await);
    assert_eq!(w.fp.memo_hits(), 1);
    assert!(second.contains("EB*1*") && second.contains("TRN*2*TRACE777"), "{second}");
    // The member's coverage ends; the 834 invalidates the cached answer.
    w.enrol(&r, date!(2000 - 01 - 01), Some(date!(2001 - 01 - 01)), "ENDED").await;
    w.fp.invalidate_member(&payer, r.member_id.expose().as_deref().unwrap());
    fields.trn02 = vec!["TRACE778".into(); 4];
    fields.bht[0] = "REF778".into();
    let third_body = with_controls(&body, &fields);
    let third = answer(w.fp.eligibility_x12(&third_body, now).await);
    assert_eq!(w.fp.memo_hits(), 2);
    assert!(third.contains("EB*6*") && !third.contains("EB*1*"), "{third}");
    let cold = FastPath::new(w.up.clone(), w.partners.clone(), Arc::new(config::load(None, &HashMap::new()).unwrap()));
    assert_eq!(answer(cold.eligibility_x12(&third_body, now).await), third);
}

fn corpus(file: &str) -> Vec<u8> {
    let dir = std::env::var("CLEARWAY_CORPUS_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus"));
    std::fs::read(dir.join(file)).unwrap()
}

/// A 276 whose provider NPI fails its check digit (the public X212 example,
/// whose NPIs are illustrative) gets a 277, not a 400 with a rejecting
/// 999: the provider level says so (2200C STC E0:562:1P) and each claim
/// asked about gets its status.
#[tokio::test]
async fn a_276_with_an_invalid_provider_npi_gets_its_277() {
    let w = world(&[]);
    let acme = PartnerId::new("acme").unwrap();
    let body = corpus("x12/276-lfh-claim-level-status.x12");
    let Reply::Answer(out) = w.fp.claim_status_x12(&acme, &body, time::OffsetDateTime::now_utc()).await else {
        panic!("answered with a rejection");
    };
    let text = String::from_utf8(out.clone()).unwrap();
    let a = analyze(&out, &AnalyzeOptions::default());
    assert!(a.accepted(), "our 277 validates: {text}");
    assert!(text.contains("STC*E0:562:1P*"), "{text}");
    let statuses: Vec<String> = a
        .documents()
        .filter_map(|d| match d {
            Document::ClaimStatusResponse(r) => {
                Some(format!("{}:{}:{}", r.level, r.statuses[0].category, r.statuses[0].code))
            }
            _ => None,
        })
        .collect();
    assert!(statuses.iter().any(|s| s.starts_with("19:E0:562")), "{statuses:?}");
    assert!(statuses.iter().filter(|s| s.ends_with(":D0:35")).count() >= 1, "the claims are answered: {statuses:?}");
}

/// A 270 whose information receiver's NPI fails its check digit gets a 271
/// with AAA*N**43*C in 2100B (invalid provider identification).
#[tokio::test]
async fn a_270_with_an_invalid_provider_npi_gets_aaa_43() {
    let w = world(&[]);
    let body = x12(Kind::Eligibility270, 1);
    let text = String::from_utf8(body).unwrap();
    let npi = requests(text.as_bytes())[0].provider_npi.clone().unwrap();
    let last = npi.as_bytes()[9];
    let wrong = format!("{}{}", &npi[..9], char::from(b'0' + (last - b'0' + 1) % 10));
    let bad = text.replace(&format!("XX*{npi}"), &format!("XX*{wrong}"));
    let Reply::Answer(out) = w.fp.eligibility_x12(bad.as_bytes(), time::OffsetDateTime::now_utc()).await else {
        panic!("answered with a rejection");
    };
    let out = String::from_utf8(out).unwrap();
    assert!(analyze(out.as_bytes(), &AnalyzeOptions::default()).accepted(), "{out}");
    assert!(out.contains("AAA*N**43*C"), "{out}");
    let good = w.fp.eligibility_x12(text.as_bytes(), time::OffsetDateTime::now_utc()).await;
    let Reply::Answer(good) = good else { panic!() };
    assert!(!String::from_utf8(good).unwrap().contains("AAA*N**43"), "a valid NPI is not flagged");
}
