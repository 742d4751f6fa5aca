//! Who may do what, over a running service: the access table in the docs is
//! the code's, the whole router walked for every role (0 unexpected 2xx),
//! purposes of use, key revocation, break-glass with its review, cross-tenant
//! reads, per-caller rate limits, and the auditor's API (events with
//! inclusion proofs, consistency, accounting of disclosures).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use clearway_core::access::Role;
use clearway_ingest::authz::{Auth, RULES};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use support::{Client, Scratch, Server, request};

/// The rows of the docs' tables whose first cell is an HTTP method.
fn doc_rows(section: &str) -> Vec<Vec<String>> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/specs/authorization.md")).unwrap();
    let part = doc.split("\n## ").find(|s| s.starts_with(section)).expect(section);
    part.lines()
        .filter(|l| {
            l.starts_with("| GET") || l.starts_with("| POST") || l.starts_with("| PUT") || l.starts_with("| DELETE")
        })
        .map(|l| l.trim_matches('|').split(" | ").map(|c| c.trim().trim_matches('`').to_string()).collect())
        .collect()
}

#[test]
fn the_table_in_the_docs_is_the_code() {
    let grid = doc_rows("Routes × roles");
    assert_eq!(grid.len(), RULES.len(), "one row per route");
    for rule in RULES {
        let row = grid.iter().find(|r| r[0] == rule.method && r[1] == rule.route).expect(rule.route);
        for (i, role) in Role::ALL.into_iter().enumerate() {
            let cell = &row[3 + i];
            let documented = match rule.auth {
                Auth::Public => {
                    assert_eq!(cell, "public", "{} {}", rule.route, role);
                    continue;
                }
                _ => cell.starts_with("yes"),
            };
            assert_eq!(documented, rule.grant(role).is_some(), "{} {} for {role}", rule.method, rule.route);
        }
    }
    let purposes = doc_rows("Purpose of use");
    let mut from_code = Vec::new();
    for rule in RULES {
        for g in rule.grants {
            from_code.push(vec![
                rule.method.to_string(),
                rule.route.to_string(),
                g.role.to_string(),
                g.purpose.to_string(),
                g.allowed.join(" "),
            ]);
        }
    }
    assert_eq!(purposes, from_code);
}

/// A service with one key per role (and a second partner), auditing on.
struct Setup {
    scratch: Scratch,
    server: Server,
    keys: BTreeMap<&'static str, String>,
}

fn setup(env: &[(&str, &str)]) -> Setup {
    let scratch = Scratch::new();
    let mut keys = BTreeMap::new();
    keys.insert("submitter", scratch.partner("acme", false));
    keys.insert("bravo", scratch.partner("bravo", false));
    for (name, role, extra) in [
        ("operator", "operator", &[][..]),
        ("operator+phi", "operator", &["--phi-view"][..]),
        ("operator+btg", "operator", &["--break-glass"][..]),
        ("auditor", "auditor", &[][..]),
        ("admin", "admin", &[][..]),
    ] {
        let principal = format!("staff-{}", name.replace('+', "-"));
        let mut args = vec!["keys", "add", "--role", role, "--principal", &principal];
        args.extend_from_slice(extra);
        keys.insert(name, scratch.run_ok(&args).trim().to_string());
    }
    let server = Server::start(&scratch, None, env);
    Setup { scratch, server, keys }
}

impl Setup {
    fn call(&self, who: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> support::Response {
        let auth = format!("Bearer {}", self.keys[who]);
        let mut h = vec![("Authorization", auth.as_str()), ("Content-Type", "application/json")];
        h.extend_from_slice(headers);
        request(self.server.http, method, path, &h, body)
    }
    fn client(&self, who: &str) -> Client {
        Client { addr: self.server.http, key: self.keys[who].clone() }
    }
}

fn gen_837p(count: usize, seed: u64) -> Vec<u8> {
    let mut v = Vec::new();
    clearway_formats::x12::synth::write(&mut v, clearway_formats::x12::synth::Kind::Professional837, count, seed)
        .unwrap();
    v
}

#[test]
fn every_route_for_every_role_answers_as_the_table_says() {
    let s = setup(&[]);
    let mut unexpected = Vec::new();
    let mut calls = 0;
    for rule in RULES.iter().filter(|r| r.auth != Auth::Public) {
        let path = rule
            .route
            .replace("{id}", "0190b5a0-0000-7000-8000-000000000000")
            .replace("{ack_id}", "x")
            .replace("{name}", "nowhere");
        // No credential at all: refused before anything else.
        let anonymous = request(s.server.http, rule.method, &path, &[], b"");
        if rule.auth == Auth::Bearer {
            assert_eq!(anonymous.status, 401, "{} {}", rule.method, rule.route);
        }
        for role in Role::ALL {
            let r = s.call(role.as_str(), rule.method, &path, &[], b"");
            calls += 1;
            let granted = rule.grant(role).is_some();
            let ok = (200..300).contains(&r.status);
            if (ok && !granted) || (!granted && rule.auth == Auth::Bearer && r.status != 403) {
                unexpected.push(format!("{} {} as {role}: {}", rule.method, rule.route, r.status));
            }
            if granted
                && (r.status == 401 || r.json_or_null()["type"].as_str().is_some_and(|t| t.ends_with("/forbidden")))
            {
                unexpected
                    .push(format!("{} {} as {role}: refused though granted ({})", rule.method, rule.route, r.status));
            }
        }
    }
    assert!(calls >= 4 * 30, "the walk covered {calls} calls");
    assert!(unexpected.is_empty(), "{unexpected:#?}");
}

#[test]
fn purposes_keys_break_glass_cross_tenant_reads_and_the_auditors_view() {
    let s = setup(&[]);
    let acme = s.client("submitter");

    // A claim of acme's, processed.
    let r = acme.submit("application/edi-x12", &gen_837p(2, 7), &[]);
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["transactionId"].as_str().unwrap().to_string();
    let done = acme.wait_terminal(&id);
    let pcn = done["claims"][0]["patientControlNumber"].as_str().unwrap().to_string();

    // Purpose of use: the default, an allowed one, one not allowed, one unknown.
    assert_eq!(s.call("submitter", "GET", "/v1/acks", &[], b"").status, 200);
    assert_eq!(s.call("submitter", "GET", "/v1/acks", &[("X-Purpose-Of-Use", "ELIGVER")], b"").status, 200);
    let research = s.call("submitter", "GET", "/v1/acks", &[("X-Purpose-Of-Use", "HRESCH")], b"");
    assert_eq!(
        (research.status, research.json()["type"].as_str().unwrap().ends_with("/purpose-not-allowed")),
        (403, true)
    );
    assert_eq!(s.call("submitter", "GET", "/v1/acks", &[("X-Purpose-Of-Use", "WHATEVER")], b"").status, 400);

    // Another tenant's transaction does not exist for bravo: 1,000 reads, all 404.
    let bravo = s.client("bravo");
    let mut statuses = BTreeMap::new();
    for i in 0..1000 {
        let path = match i % 3 {
            0 => format!("/v1/transactions/{id}"),
            1 => format!("/v1/transactions/{id}/acks"),
            _ => format!("/v1/transactions/{id}/payload"),
        };
        *statuses.entry(bravo.get(&path).status).or_insert(0) += 1;
    }
    assert_eq!(statuses, BTreeMap::from([(404, 1000)]));

    // Operators: metadata without PHI; the payload only with phi_view.
    let meta = s.call("operator", "GET", &format!("/v1/transactions/{id}?partner=acme"), &[], b"");
    assert_eq!(meta.status, 200, "{}", meta.text());
    assert!(meta.json()["claims"][0]["patientControlNumber"].is_null(), "no PHI for a plain operator");
    assert!(!meta.text().contains(&pcn));
    assert_eq!(s.call("operator", "GET", &format!("/v1/transactions/{id}/payload?partner=acme"), &[], b"").status, 403);
    let body = s.call("operator+phi", "GET", &format!("/v1/transactions/{id}/payload?partner=acme"), &[], b"");
    assert_eq!(body.status, 200);
    assert_eq!(body.body, gen_837p(2, 7));

    // Break-glass: eligible only, justified, at most an hour.
    let btg = |who: &str, body: &str| s.call(who, "POST", "/v1/break-glass", &[], body.as_bytes());
    let why = r#"{"reason":"incident","justification":"partner reports 277CAs missing since 09:00","minutes":15}"#;
    assert_eq!(btg("operator", why).status, 403, "not eligible");
    assert_eq!(btg("operator+btg", r#"{"reason":"incident","justification":"short"}"#).status, 400);
    assert_eq!(
        btg("operator+btg", r#"{"reason":"incident","justification":"long enough but too long","minutes":61}"#).status,
        400
    );
    assert_eq!(
        s.call("operator+btg", "GET", &format!("/v1/transactions/{id}/payload?partner=acme"), &[], b"").status,
        403
    );
    // The emergency purposes mean an elevation in force.
    let early = s.call(
        "operator+btg",
        "GET",
        &format!("/v1/transactions/{id}?partner=acme"),
        &[("X-Purpose-Of-Use", "BTG")],
        b"",
    );
    assert_eq!(early.status, 403);
    let started = btg("operator+btg", why);
    assert_eq!(started.status, 201, "{}", started.text());
    let session = started.json()["id"].as_str().unwrap().to_string();
    assert_eq!(btg("operator+btg", why).status, 409, "one at a time");
    let read = s.call("operator+btg", "GET", &format!("/v1/transactions/{id}/payload?partner=acme"), &[], b"");
    assert_eq!(read.status, 200);
    // Every event under it is anchored at once: the newest checkpoint covers it.
    let events = s.call("auditor", "GET", &format!("/v1/audit/events?breakGlass={session}"), &[], b"").json();
    let under = events["events"].as_array().unwrap();
    assert!(under.len() >= 2, "{events}");
    let last = under.last().unwrap()["index"].as_u64().unwrap();
    let note = s.call("auditor", "GET", "/v1/audit/checkpoint", &[], b"").text();
    let size: u64 = note.lines().nth(1).unwrap().parse().unwrap();
    assert!(size > last, "checkpoint of {size} does not cover event {last}");
    assert!(!events.to_string().contains("partner reports"), "the justification stays out of the audit log");

    // The review queue.
    let queue = s.call("auditor", "GET", "/v1/audit/break-glass", &[], b"").json();
    assert_eq!(queue["sessions"][0]["id"], session.as_str());
    assert!(queue["sessions"][0]["events"].as_u64().unwrap() >= 2);
    let review = |finding: &str| {
        s.call(
            "auditor",
            "POST",
            &format!("/v1/audit/break-glass/{session}/review"),
            &[],
            format!(r#"{{"finding":"{finding}"}}"#).as_bytes(),
        )
    };
    assert_eq!(review("appropriate").status, 409, "still in force");
    assert_eq!(s.call("operator+btg", "DELETE", "/v1/break-glass", &[], b"").status, 200);
    assert_eq!(
        s.call("operator+btg", "GET", &format!("/v1/transactions/{id}/payload?partner=acme"), &[], b"").status,
        403
    );
    assert_eq!(review("fine").status, 400);
    // Nobody reviews their own elevation (a person holding an auditor's
    // key as well).
    let own = s.scratch.run_ok(&["keys", "add", "--role", "auditor", "--principal", "staff-operator-btg"]);
    let own_review = request(
        s.server.http,
        "POST",
        &format!("/v1/audit/break-glass/{session}/review"),
        &[("Authorization", &format!("Bearer {}", own.trim()))],
        br#"{"finding":"appropriate"}"#,
    );
    assert_eq!(own_review.status, 403, "{}", own_review.text());
    assert_eq!(review("appropriate").status, 200);
    assert_eq!(review("inappropriate").status, 409, "a review is not overwritten");
    assert_eq!(s.call("auditor", "GET", "/v1/audit/break-glass", &[], b"").json()["sessions"], serde_json::json!([]));

    // Accounting of disclosures for the patient: the PHI reads, by whom and why.
    let disclosed = s.call(
        "auditor",
        "POST",
        "/v1/audit/disclosures",
        &[],
        format!(r#"{{"patientControlNumber":"{pcn}"}}"#).as_bytes(),
    );
    assert_eq!(disclosed.status, 200, "{}", disclosed.text());
    let d = disclosed.json();
    let who: Vec<&str> =
        d["disclosures"].as_array().unwrap().iter().map(|e| e["recipient"]["principal"].as_str().unwrap()).collect();
    assert!(who.contains(&"staff-operator-phi") && who.contains(&"staff-operator-btg"), "{d}");
    assert!(!who.contains(&"staff-operator"), "metadata reads disclose no PHI: {d}");
    assert!(!d.to_string().contains(&pcn), "the answer names the patient by token only");

    // A submitter sees who accessed its data, and only events about it.
    let mine = s.call("submitter", "GET", "/v1/audit/events?limit=1000", &[], b"").json();
    let tenants: Vec<&str> =
        mine["events"].as_array().unwrap().iter().map(|e| e["event"]["tenant"].as_str().unwrap()).collect();
    assert!(tenants.iter().all(|t| *t == "acme") && !tenants.is_empty());
    assert!(
        mine["events"].as_array().unwrap().iter().any(|e| e["event"]["actor"]["principal"] == "staff-operator-btg")
    );

    // Inclusion proofs against a named checkpoint, and consistency between two.
    let key = clearway_core::audit::VerifierKey::parse(s.scratch.run_ok(&["audit", "key"]).trim()).unwrap();
    let first = clearway_core::audit::Checkpoint::open(&note, &key).unwrap();
    let proved =
        s.call("auditor", "GET", &format!("/v1/audit/events?checkpoint={}&limit=50", first.size), &[], b"").json();
    let mut checked = 0;
    for e in proved["events"].as_array().unwrap() {
        let index = e["index"].as_u64().unwrap();
        if index >= first.size {
            assert!(e["inclusionProof"].is_null());
            continue;
        }
        let event: clearway_core::audit::AuditEvent = serde_json::from_value(e["event"].clone()).unwrap();
        let proof: Vec<String> = serde_json::from_value(e["inclusionProof"].clone()).unwrap();
        let proof = clearway_core::audit::decode_hashes(&proof).unwrap();
        clearway_core::audit::verify_inclusion(&event.to_leaf(), index, first.size, &first.root, &proof).unwrap();
        checked += 1;
    }
    assert!(checked >= 10, "{checked}");
    // A second checkpoint (another break-glass forces one), then the proof.
    assert_eq!(btg("operator+btg", why).status, 201);
    let second_note = s.call("auditor", "GET", "/v1/audit/checkpoint", &[], b"").text();
    let second = clearway_core::audit::Checkpoint::open(&second_note, &key).unwrap();
    assert!(second.size > first.size);
    let c = s
        .call("auditor", "GET", &format!("/v1/audit/consistency?from={}&to={}", first.size, second.size), &[], b"")
        .json();
    let proof =
        clearway_core::audit::decode_hashes(&serde_json::from_value::<Vec<String>>(c["proof"].clone()).unwrap())
            .unwrap();
    clearway_core::audit::verify_consistency(first.size, &first.root, second.size, &second.root, &proof).unwrap();
    assert_eq!(
        s.call("auditor", "GET", "/v1/audit/consistency?from=1&to=999999", &[], b"").status,
        404,
        "no such checkpoints"
    );

    // Admin: issue a key over HTTP; revoking it works at once here.
    let phi = br#"{"principal":"staff-eve","role":"operator","phiView":true}"#;
    assert_eq!(s.call("admin", "POST", "/v1/admin/keys", &[], phi).status, 403, "PHI grants are made on the host");
    let made = s.call(
        "admin",
        "POST",
        "/v1/admin/keys",
        &[],
        br#"{"principal":"staff-audrey","role":"auditor","label":"Q4 review"}"#,
    );
    assert_eq!(made.status, 201, "{}", made.text());
    let (kid, new_key) =
        (made.json()["id"].as_str().unwrap().to_string(), made.json()["key"].as_str().unwrap().to_string());
    let audrey = Client { addr: s.server.http, key: new_key };
    assert_eq!(audrey.get("/v1/audit/break-glass").status, 200);
    assert_eq!(s.call("admin", "DELETE", &format!("/v1/admin/keys/{kid}"), &[], b"").status, 200);
    assert_eq!(audrey.get("/v1/audit/break-glass").status, 401, "revoked at once in this process");
    // Revoked by the CLI (another process): within seconds.
    let listed = s.scratch.run_ok(&["keys", "list", "--json"]);
    let keys: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let auditor_id = keys.as_array().unwrap().iter().find(|k| k["principal"] == "staff-auditor").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!listed.contains("cw_"), "no key in the listing");
    s.scratch.run_ok(&["keys", "revoke", "--id", &auditor_id]);
    let t = Instant::now();
    while s.call("auditor", "GET", "/v1/audit/break-glass", &[], b"").status != 401 {
        assert!(t.elapsed() < Duration::from_secs(5), "a revocation elsewhere still not seen");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!std::fs::read_to_string(s.scratch.log()).unwrap().contains(&pcn), "no PHI in the log");
}

#[test]
fn a_caller_over_its_rate_gets_429_and_the_others_do_not_notice() {
    let s = setup(&[("CLEARWAY__LIMITS__READ_PER_SEC", "2"), ("CLEARWAY__LIMITS__READ_BURST", "5")]);
    let (acme, bravo) = (s.client("submitter"), s.client("bravo"));
    let mut limited = None;
    for _ in 0..20 {
        let r = acme.get("/v1/acks");
        if r.status == 429 {
            limited = Some(r);
            break;
        }
        assert_eq!(r.status, 200);
    }
    let limited = limited.expect("never limited");
    let wait: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=1).contains(&wait), "{wait}");
    assert_eq!(bravo.get("/v1/acks").status, 200, "another partner has its own bucket");
    let submit = acme.submit("application/edi-x12", &gen_837p(1, 1), &[]);
    assert_eq!(submit.status, 202, "submissions draw from another bucket");

    // Keys that do not authenticate: audit events up to a service-wide
    // rate, then 429 without one (nobody floods the log).
    let mut refused = BTreeMap::new();
    for i in 0..300 {
        let bad = Client { addr: s.server.http, key: format!("cw_wrong{i}") };
        *refused.entry(bad.get("/v1/acks").status).or_insert(0) += 1;
    }
    assert!(refused.get(&429).copied().unwrap_or(0) > 0, "{refused:?}");
    let events = s.call("auditor", "GET", "/v1/audit/events?actor=unauthenticated&limit=1000", &[], b"").json();
    let recorded = events["events"].as_array().unwrap().len();

    assert_eq!(recorded, refused[&401], "one event per 401, none per 429");
}
