//! The operator console against the real service over HTTP (no browser:
//! `tests/console_browser.rs` drives one): a transaction found by its
//! control numbers and its payer once processed; its timeline saying where its
//! acknowledgements and deliveries stand; a subscribed system's dead letter
//! replayed from the console with a reason, audited; payers' health on the
//! dashboard; the whole audit log verified by an auditor.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use support::{Client, Scratch, Server, request};

/// An HTTP system that refuses every message (`400`), counting them.
fn refusing_system() -> (String, Arc<AtomicUsize>) {
    endpoint(Arc::new(AtomicBool::new(true)))
}

/// An HTTP endpoint answering 400 while `refuse` is set, 200 after.
fn endpoint(refuse: Arc<AtomicBool>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hl7", listener.local_addr().unwrap());
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            while support::read_request(&mut reader).is_some() {
                count.fetch_add(1, Ordering::SeqCst);
                let _ = stream.write_all(if refuse.load(Ordering::SeqCst) {
                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"
                } else {
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
                });
            }
        }
    });
    (url, seen)
}

/// A signed-in console session (its cookie header).
fn sign_in(addr: SocketAddr, name: &str, password: &str) -> String {
    let body = format!("name={name}&password={}", password.replace(' ', "+"));
    let r = request(
        addr,
        "POST",
        "/console/sign-in",
        &[("Content-Type", "application/x-www-form-urlencoded"), ("Sec-Fetch-Site", "same-origin")],
        body.as_bytes(),
    );
    assert_eq!(r.status, 303, "{}", r.text());
    let cookie = r.header("set-cookie").unwrap();
    cookie.split(';').next().unwrap().to_string()
}

fn get(addr: SocketAddr, cookie: &str, path: &str) -> String {
    let r = request(addr, "GET", path, &[("Cookie", cookie)], b"");
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    r.text()
}

fn post(addr: SocketAddr, cookie: &str, path: &str, body: &str) -> support::Response {
    request(
        addr,
        "POST",
        path,
        &[("Cookie", cookie), ("Content-Type", "application/x-www-form-urlencoded"), ("Sec-Fetch-Site", "same-origin")],
        body.as_bytes(),
    )
}

/// The n-th `*`-separated element of the first `id` segment.
fn element(x12: &str, id: &str, n: usize) -> String {
    let seg = x12.split('~').map(str::trim).find(|s| s.starts_with(&format!("{id}*"))).unwrap();
    seg.split('*').nth(n).unwrap().trim().to_string()
}

#[test]
fn the_console_finds_explains_and_replays_on_the_real_service() {
    let scratch = Scratch::new();
    let key = scratch.partner("acme", false);
    let password = scratch.run_ok(&["console-users", "add", "--name", "opal", "--role", "operator"]).trim().to_string();
    let auditor = scratch.run_ok(&["console-users", "add", "--name", "aude", "--role", "auditor"]).trim().to_string();
    let (system, refused) = refusing_system();
    scratch.write_config(&format!(
        "[payers.ACME01]\n\n[destinations.LAB]\nkind = \"http\"\nurl = \"{system}\"\nretry_max_ms = 200\n\n\
         [[routes]]\nmessages = [\"ADT\"]\nto = [\"LAB\"]\n"
    ));
    let server = Server::start(&scratch, None, &[]);
    let c = Client { addr: server.http, key };
    let cookie = sign_in(server.http, "opal", &password);

    // An 837, processed: found by its ISA13 (also as typed without its
    // zeros), GS06, ST02 and BHT03.
    let out = scratch.command().args(["gen", "837p", "--count", "2", "--seed", "61"]).output().unwrap();
    let x12 = String::from_utf8(out.stdout).unwrap();
    let r = c.submit("application/edi-x12", x12.as_bytes(), &[]);
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["transactionId"].as_str().unwrap().to_string();
    let t = c.wait_terminal(&id);
    assert_eq!(t["status"], "accepted");
    let payer = t["claims"][0]["payerId"].as_str().unwrap().to_string();
    let isa13 = element(&x12, "ISA", 13);
    let short = isa13.trim_start_matches('0');
    for (kind, number) in [
        ("isa13", isa13.as_str()),
        ("isa13", short),
        ("gs06", &element(&x12, "GS", 6)),
        ("st02", &element(&x12, "ST", 2)),
        ("bht03", &element(&x12, "BHT", 3)),
        ("payer", &payer),
    ] {
        let page = get(server.http, &cookie, &format!("/console/search?ctl={kind}&number={number}"));
        assert!(page.contains(&id), "found by {kind} {number}");
    }
    let later = get(server.http, &cookie, &format!("/console/search?ctl=payer&number={payer}&from=2999-01-01"));
    assert!(!later.contains(&id), "from a date on");
    let none = get(server.http, &cookie, "/console/search?ctl=st02&number=99999");
    assert!(none.contains("No transaction has that control number.") && !none.contains(&id));
    let bad = get(server.http, &cookie, "/console/search?ctl=clm01&number=X");
    assert!(bad.contains("Choose a kind"), "claim numbers are not searched in the clear");

    // Its timeline: acknowledgements in the feed (no webhook set).
    let page = get(server.http, &cookie, &format!("/console/transactions/acme/{id}"));
    assert!(page.contains("acknowledgement feed (GET /v1/acks; no webhook set)"), "{page}");

    // A partner whose webhook refuses: its acknowledgements wait, and the
    // timeline shows the attempts.
    let beta = Client { addr: server.http, key: scratch.partner("beta", false) };
    let refuse = Arc::new(AtomicBool::new(true));
    let (hook, _) = endpoint(refuse.clone());
    let auth = format!("Bearer {}", beta.key);
    let set = request(
        server.http,
        "PUT",
        "/v1/webhook",
        &[("Authorization", auth.as_str()), ("Content-Type", "application/json")],
        format!(r#"{{"url":"{hook}","secret":"a-secret-of-the-partners-choosing"}}"#).as_bytes(),
    );
    assert_eq!(set.status, 200, "{}", set.text());
    let out = scratch.command().args(["gen", "837p", "--count", "1", "--seed", "62"]).output().unwrap();
    let r = beta.submit("application/edi-x12", &out.stdout, &[]);
    assert_eq!(r.status, 202, "{}", r.text());
    let beta_id = r.json()["transactionId"].as_str().unwrap().to_string();
    beta.wait_terminal(&beta_id);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let page = get(server.http, &cookie, &format!("/console/transactions/beta/{beta_id}"));
        // Each attempt, and the run of failures with the next try.
        if page.contains("failed attempts in a row") && page.contains("attempt 2, endpoint answered 400") {
            assert!(page.contains("webhook attempt failed") && page.contains("attempt 1, endpoint answered 400"));
            break;
        }
        assert!(Instant::now() < deadline, "no webhook attempts shown: {page}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The endpoint takes it: the delivering attempt joins them.
    refuse.store(false, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let page = get(server.http, &cookie, &format!("/console/transactions/beta/{beta_id}"));
        if page.contains("webhook delivered") {
            assert!(page.contains("answered 2xx in"), "{page}");
            assert!(page.contains("attempt 1, endpoint answered 400"), "the failures stay: {page}");
            break;
        }
        assert!(Instant::now() < deadline, "the webhook never delivered: {page}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // An ADT the system refuses: a dead letter of LAB, on the transaction's
    // timeline and the systems page.
    let adt = "MSH|^~\\&|ADT|NORTH|CLEARWAY|HUB|20240101120000||ADT^A01^ADT_A01|CTL0001|P|2.5.1\rEVN|A01|20240101120000\rPID|1||12345^^^NORTH^MR||SAMPLE^PAT||19800101|F\rPV1|1|I\r";
    let r = c.submit("application/hl7-v2", adt.as_bytes(), &[]);
    assert_eq!(r.status, 202, "{}", r.text());
    let adt_id = r.json()["transactionId"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    let systems = loop {
        let page = get(server.http, &cookie, "/console/destinations");
        if page.contains(&adt_id) {
            break page;
        }
        assert!(Instant::now() < deadline, "LAB's dead letter never listed: {page}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(systems.contains("go back to the end of the queue") && systems.contains("CTL0001"), "{systems}");
    assert!(!systems.contains("SAMPLE"), "no PHI on the systems page");
    let timeline = get(server.http, &cookie, &format!("/console/transactions/acme/{adt_id}"));
    assert!(timeline.contains("delivery dead letter") && timeline.contains("LAB: 0 delivered"), "{timeline}");
    let first = refused.load(Ordering::SeqCst);
    assert_eq!(first, 1);

    // A replay needs a reason and the count seen; then LAB is asked again.
    let short_reason = post(server.http, &cookie, "/console/destinations/LAB/replay", "count=1&reason=because");
    assert_eq!(short_reason.status, 422);
    let stale =
        post(server.http, &cookie, "/console/destinations/LAB/replay", "count=2&reason=the+lab+system+was+fixed+today");
    assert_eq!(stale.status, 409, "the count seen must match");
    assert_eq!(refused.load(Ordering::SeqCst), first, "nothing replayed yet");
    let done =
        post(server.http, &cookie, "/console/destinations/LAB/replay", "count=1&reason=the+lab+system+was+fixed+today");
    assert_eq!(done.status, 303, "{}", done.text());
    let deadline = Instant::now() + Duration::from_secs(30);
    while refused.load(Ordering::SeqCst) == first {
        assert!(Instant::now() < deadline, "the replayed message never reached LAB");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Payers' health on the dashboard.
    let live = get(server.http, &cookie, "/console/live");
    assert!(live.contains(r#"<table id="payers">"#) && live.contains("ACME01"), "{live}");
    assert!(live.contains("Eligibility cache hits"));

    // An auditor verifies the whole log from the console; an operator may
    // not.
    assert_eq!(post(server.http, &cookie, "/console/audit/verify", "").status, 403);
    let aude = sign_in(server.http, "aude", &auditor);
    let started = post(server.http, &aude, "/console/audit/verify", "");
    assert_eq!(started.status, 303, "{}", started.text());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let page = get(server.http, &aude, "/console/audit");
        assert!(!page.contains("NOT VERIFIED"), "{page}");
        if page.contains("<strong>Verified</strong>") {
            break;
        }
        assert!(Instant::now() < deadline, "no verdict: {page}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // The audit log holds the replay, with the destination and who.
    drop(server);
    let replays: Vec<serde_json::Value> = support::audit_events(&scratch)
        .into_iter()
        .filter(|e| e["code"] == "console.destination_replay" && e["outcome"] == "success")
        .collect();
    assert_eq!(replays.len(), 1, "{replays:?}");
    assert_eq!(replays[0]["actor"]["principal"], "opal");
    assert!(replays[0]["entity"].as_array().unwrap().iter().any(|x| x["id"] == "LAB"), "{}", replays[0]);
    assert!(!replays[0].to_string().contains("fixed today"), "the reason is kept beside the log, not in it");
}
