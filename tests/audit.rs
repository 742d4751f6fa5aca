//! The audit log of admin commands over real processes and the real
//! database file: one event per command, checkpoints kept outside, and
//! `clearway audit verify` catching an edited, deleted or rolled-back log.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{Client, Scratch, Server};

/// `audit verify` with the given checkpoint files: (exit code, stdout).
fn verify(scratch: &Scratch, outside: &[&std::path::Path]) -> (i32, String) {
    let mut args = vec!["audit", "verify"];
    let files: Vec<String> = outside.iter().map(|p| p.display().to_string()).collect();
    for f in &files {
        args.extend(["--checkpoint", f.as_str()]);
    }
    let out = scratch.run(&args);
    (out.status.code().unwrap(), String::from_utf8_lossy(&out.stdout).into_owned())
}

fn events(scratch: &Scratch) -> Vec<serde_json::Value> {
    support::audit_events(scratch)
}

fn sql(scratch: &Scratch, statement: &str) {
    let db = rusqlite::Connection::open(scratch.data().join("audit.db")).unwrap();
    db.execute_batch(statement).unwrap();
}

#[test]
fn every_admin_command_is_one_event_and_tampering_is_caught() {
    let scratch = Scratch::new();
    scratch.partner("acme", false);
    scratch.partner("bravo", false);
    scratch.run_ok(&["keys", "rotate", "--partner", "acme"]);
    scratch.run_ok(&["partners", "list"]);
    let refused = scratch.run(&["keys", "destroy", "--partner", "acme", "--version", "1"]);
    assert!(!refused.status.success(), "the active version cannot be destroyed");
    scratch.run_ok(&["partners", "revoke", "--id", "bravo"]);

    // Six commands, six events, in order, with their outcomes; no secret.
    let log = events(&scratch);
    let codes: Vec<(&str, &str, &str)> = log
        .iter()
        .map(|e| (e["code"].as_str().unwrap(), e["outcome"].as_str().unwrap(), e["tenant"].as_str().unwrap_or("-")))
        .collect();
    assert_eq!(
        codes,
        [
            ("partners.add", "success", "acme"),
            ("partners.add", "success", "bravo"),
            ("keys.rotate", "success", "acme"),
            ("partners.list", "success", "-"),
            ("keys.destroy", "failure", "acme"),
            ("partners.revoke", "success", "bravo"),
        ]
    );
    for e in &log {
        assert_eq!((e["category"].as_str(), e["actor"]["role"].as_str()), (Some("admin"), Some("admin")));
        assert_eq!(e["actor"]["auth"], "host");
    }
    let raw = std::fs::read(scratch.data().join("audit.db")).unwrap();
    assert!(!raw.windows(3).any(|w| w == b"cw_"), "no API key in the audit log");

    // Verifies, each event anchored by a checkpoint; also with only the
    // verifier key (an auditor's copy).
    let (code, out) = verify(&scratch, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("events 6\t") && out.contains("unanchored 0"), "{out}");
    let key = scratch.run_ok(&["audit", "key"]);
    assert!(key.trim().starts_with("clearway/audit/"), "{key}");
    let with_key = scratch.run(&["audit", "verify", "--key", key.trim()]);
    assert!(with_key.status.success());

    // An older copy of the log (6 events), then a seventh; an auditor
    // keeps a copy of the checkpoints as of the seventh.
    let older = scratch.root.path().join("older");
    copy_log(&scratch.data(), &older);
    scratch.run_ok(&["partners", "list"]);
    let outside = scratch.root.path().join("auditor-copy.log");
    std::fs::copy(scratch.data().join("audit-checkpoints.log"), &outside).unwrap();
    assert_eq!(verify(&scratch, &[&outside]).0, 0);

    // Edited: one event's outcome changed.
    sql(
        &scratch,
        "UPDATE leaves SET event = CAST(replace(CAST(event AS TEXT), '\"failure\"', '\"success\"') AS BLOB) WHERE seq = 4",
    );
    let (code, out) = verify(&scratch, &[&outside]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("NOT VERIFIED"), "{out}");
    sql(
        &scratch,
        "UPDATE leaves SET event = CAST(replace(CAST(event AS TEXT), '\"success\"', '\"failure\"') AS BLOB) WHERE seq = 4",
    );
    assert_eq!(verify(&scratch, &[&outside]).0, 0, "restored, it verifies again");

    // Deleted: the newest event, below the newest checkpoint.
    sql(&scratch, "DELETE FROM leaves WHERE seq = 6");
    let (code, out) = verify(&scratch, &[&outside]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("truncated or rolled back"), "{out}");

    // Rolled back to the older copy: on its own it verifies (its own
    // checkpoints agree with it); the auditor's newer checkpoint catches it.
    copy_log(&older, &scratch.data());
    assert_eq!(verify(&scratch, &[]).0, 0, "the older copy is consistent in itself");
    let (code, out) = verify(&scratch, &[&outside]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("truncated or rolled back"), "{out}");
}

/// Copies the audit database with its write-ahead log (what a backup or
/// an attacker restoring one would copy).
fn copy_log(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for name in ["audit.db", "audit.db-wal"] {
        let _ = std::fs::remove_file(to.join(name));
        if from.join(name).exists() {
            std::fs::copy(from.join(name), to.join(name)).unwrap();
        }
    }
    let _ = std::fs::remove_file(to.join("audit.db-shm"));
}

#[test]
fn the_audit_key_stays_out_of_the_data_directory() {
    let scratch = Scratch::new();
    let inside = scratch.data().join("audit.key").display().to_string();
    let out = scratch
        .command()
        .args(["audit", "key", "--data-dir", &scratch.data().display().to_string()])
        .env("CLEARWAY__SECURITY__AUDIT_KEY_FILE", &inside)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("security.audit_key_file"), "{out:?}");
}

#[test]
fn every_authenticated_request_is_one_event_recorded_before_its_answer() {
    let scratch = Scratch::new();
    let key = scratch.partner("acme", false);
    let server = Server::start(&scratch, None, &[]);
    let c = Client { addr: server.http, key };
    let mut body = Vec::new();
    clearway_formats::x12::synth::write(&mut body, clearway_formats::x12::synth::Kind::Professional837, 1, 7).unwrap();
    let r = c.submit("application/edi-x12", &body, &[("X-Purpose-Of-Use", "HPAYMT"), ("X-Request-Id", "req-1")]);
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["transactionId"].as_str().unwrap().to_string();
    assert_eq!(c.get(&format!("/v1/transactions/{id}")).status, 200);
    assert_eq!(c.get("/v1/transactions/not-a-transaction").status, 404);
    assert_eq!(c.get("/v1/acks?limit=5").status, 200);
    // A key that does not authenticate: one event, by the key's public id.
    let anonymous = Client { addr: server.http, key: "cw_wrong".into() };
    assert_eq!(anonymous.get("/v1/acks").status, 401);
    assert_eq!(c.get("/healthz").status, 200);
    // The newest checkpoint, for a partner to keep (the checkpointer signs
    // within a minute; the admin command that added the partner signed one).
    let r = c.get("/v1/audit/checkpoint");
    assert_eq!(r.status, 200, "{}", r.text());
    let note = r.text();
    assert!(note.starts_with("clearway/audit/"), "{note}");
    assert_eq!(server.stop(), Some(0), "a clean shutdown");

    let rest: Vec<serde_json::Value> = events(&scratch).into_iter().filter(|e| e["category"] == "rest").collect();
    let seen: Vec<(String, String)> = rest
        .iter()
        .map(|e| (e["code"].as_str().unwrap().to_string(), e["status"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(
        seen,
        [
            ("POST /v1/transactions".to_string(), "202".to_string()),
            ("GET /v1/transactions/{id}".into(), "200".into()),
            ("GET /v1/transactions/{id}".into(), "404".into()),
            ("GET /v1/acks".into(), "200".into()),
            ("GET /v1/acks".into(), "401".into()),
            ("GET /v1/audit/checkpoint".into(), "200".into()),
        ]
    );
    let refused = &rest[4]["actor"];
    assert_eq!((refused["principal"].as_str(), refused["role"].as_str()), (Some("unauthenticated"), Some("none")));
    let wrong_id = clearway_core::partners::credential_id(&clearway_core::crypto::api_key_hash("cw_wrong"));
    assert_eq!(refused["credential"].as_str(), Some(wrong_id.as_str()));
    let first = &rest[0];
    assert_eq!(first["actor"]["principal"], "acme");
    assert_eq!(first["actor"]["role"], "submitter");
    assert_eq!(first["actor"]["auth"], "api_key");
    assert_eq!(first["actor"]["credential"].as_str().unwrap().len(), 12);
    assert_eq!(first["purpose"], "HPAYMT");
    assert_eq!(first["requestId"], "req-1");
    assert_eq!(first["entity"][0], serde_json::json!({ "type": "transaction", "id": id }), "the submission it made");
    assert_eq!(rest[1]["entity"][0], serde_json::json!({ "type": "transaction", "id": id }));
    assert_eq!(rest[2]["outcome"], "failure");
    let raw = std::fs::read(scratch.data().join("audit.db")).unwrap();
    assert!(!raw.windows(c.key.len()).any(|w| w == c.key.as_bytes()), "no API key in the audit log");

    // The service checkpointed on shutdown: every event anchored; the
    // partner's copy of the checkpoint verifies against the log.
    let copy = scratch.root.path().join("partner-copy.txt");
    std::fs::write(&copy, note).unwrap();
    let (code, out) = verify(&scratch, &[&copy]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("unanchored 0"), "{out}");
}

/// Issue 19's coverage figure: 100 mixed operations over HTTP, MLLP and the
/// CLI (successes and refusals alike) make exactly 100 events, each in its
/// category, and the log verifies.
#[test]
fn one_hundred_mixed_operations_are_one_hundred_events() {
    use std::io::Write as _;
    let scratch = Scratch::new();
    let key = scratch.partner("lab", false);
    scratch.run_ok(&["keys", "add", "--role", "operator", "--principal", "ops-ann"]);
    let before = events(&scratch).len();
    let server = Server::start(&scratch, Some("lab"), &[]);
    let c = Client { addr: server.http, key };
    let mut body = Vec::new();
    clearway_formats::x12::synth::write(&mut body, clearway_formats::x12::synth::Kind::Professional837, 1, 3).unwrap();
    let (mut http, mut mllp, mut cli) = (0, 0, 0);
    let mut conn = std::net::TcpStream::connect(server.mllp.unwrap()).unwrap();
    conn.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    for i in 0..100 {
        match i % 5 {
            // HTTP: a submission, reads, a refusal by role, a bad key.
            0 => assert_eq!(c.submit("application/edi-x12", &body, &[]).status / 100, 2),
            1 if i % 2 == 0 => assert_eq!(c.get("/v1/acks").status, 200),
            1 => assert_eq!(c.get("/v1/dead-letters").status, 403),
            2 if i % 4 == 0 => {
                assert_eq!(Client { addr: server.http, key: format!("cw_bad{i}") }.get("/v1/acks").status, 401)
            }
            // MLLP: messages, valid and not.
            2 | 3 => {
                let msg = if i % 3 == 0 {
                    "not hl7 at all".to_string()
                } else {
                    format!(
                        "MSH|^~\\&|LAB|NORTH|CLEARWAY|HUB|20240101120000||ADT^A01^ADT_A01|M{i}|P|2.5.1\r\
                         EVN|A01|20240101120000\rPID|1||{i}^^^NORTH^MR||SAMPLE^PAT||19800101|F\rPV1|1|I\r"
                    )
                };
                conn.write_all(&support::frame(msg.as_bytes())).unwrap();
                support::read_frame(&mut conn).unwrap();
                mllp += 1;
                continue;
            }
            // The CLI.
            _ => {
                scratch.run_ok(&["keys", "list"]);
                cli += 1;
                continue;
            }
        }
        http += 1;
    }
    assert_eq!(server.stop(), Some(0));
    let log = events(&scratch);
    let new = &log[before..];
    let count = |category: &str| new.iter().filter(|e| e["category"] == category).count();
    assert_eq!((count("rest"), count("mllp"), count("admin")), (http, mllp, cli));
    assert_eq!(new.len(), 100);
    assert!(
        new.iter()
            .filter(|e| e["category"] == "mllp")
            .all(|e| e["tenant"] == "lab" && e["actor"]["auth"] == "listener")
    );
    let (code, out) = verify(&scratch, &[]);
    assert_eq!(code, 0, "{out}");
}

/// On the AWS backend: admin commands and requests are events in the audit
/// table, a break-glass read forces a checkpoint, and `audit verify
/// --backend aws` checks the whole log.
#[test]
fn on_aws_requests_and_commands_are_events_in_the_audit_table_and_verify() {
    let scratch = Scratch::aws();
    let key = scratch.partner("acme", false);
    let server = Server::start(&scratch, None, &[]);
    let c = Client { addr: server.http, key };
    let mut body = Vec::new();
    clearway_formats::x12::synth::write(&mut body, clearway_formats::x12::synth::Kind::Professional837, 1, 5).unwrap();
    assert_eq!(c.submit("application/edi-x12", &body, &[]).status, 202);
    assert_eq!(c.get("/v1/acks").status, 200);
    let note = c.get("/v1/audit/checkpoint");
    assert_eq!(note.status, 200, "{}", note.text());
    assert_eq!(server.stop(), Some(0), "a clean shutdown checkpoints");
    let (code, out) = verify(&scratch, &[]);
    assert_eq!(code, 0, "{out}");
    // partners add, then three requests.
    assert!(out.contains("events 4\t") && out.contains("unanchored 0"), "{out}");
    let copy = scratch.root.path().join("copy.txt");
    std::fs::write(&copy, note.text()).unwrap();
    assert_eq!(verify(&scratch, &[&copy]).0, 0);
}

/// Our checkpoints and log, checked by an independent implementation:
/// `scripts/audit-crosscheck.py` recomputes the RFC 6962 root with hashlib
/// and verifies the signed note's Ed25519 signature with the
/// `cryptography` library (the test venv's).
#[test]
fn an_independent_implementation_verifies_our_checkpoints_and_log() {
    let scratch = Scratch::new();
    for i in 0..9 {
        scratch.partner(&format!("p{i}"), false);
    }
    let note = scratch.run_ok(&["audit", "checkpoint"]);
    let key = scratch.run_ok(&["audit", "key"]);
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let venv = std::path::Path::new(&target).join("venv/bin/python");
    let python = if venv.exists() { venv } else { std::path::PathBuf::from("python3") };
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/audit-crosscheck.py");
    let check = |note: &str| {
        let file = scratch.root.path().join("checkpoint.txt");
        std::fs::write(&file, note).unwrap();
        let out = std::process::Command::new(&python)
            .arg(&script)
            .arg(scratch.data().join("audit.db"))
            .arg(&file)
            .arg(key.trim())
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    assert_eq!(check(&note), (true, "ok 9\n".to_string()));
    // A note whose size was changed: its signature no longer holds.
    let (ok, _) = check(&note.replacen("\n9\n", "\n8\n", 1));
    assert!(!ok, "an altered note is refused");
    // An edited event: the recomputed root differs.
    sql(&scratch, "UPDATE leaves SET event = CAST('{}' AS BLOB) WHERE seq = 4");
    let (ok, out) = check(&note);
    assert!(!ok && out.contains("root"), "{out}");
}

/// Dead-letter, destination and coverage commands are admin events too (a
/// replay from the command line is as much a replay as one over HTTP).
#[test]
fn dead_letter_destination_and_coverage_commands_are_events() {
    let scratch = Scratch::new();
    scratch.run_ok(&["dlq", "list"]);
    scratch.run_ok(&["dlq", "replay", "--partner", "acme", "--dry-run"]);
    scratch.run_ok(&["destinations", "list"]);
    let csv = scratch.root.path().join("members.csv");
    std::fs::write(&csv, "payer_id,member_id,last_name,first_name,birth_date,plan,begin,end\n").unwrap();
    let _ = scratch.run(&["coverage", "import", csv.to_str().unwrap()]);
    let codes: Vec<String> = events(&scratch).iter().map(|e| e["code"].as_str().unwrap().to_string()).collect();
    assert_eq!(codes, ["dlq.list", "dlq.replay-dry-run", "destinations.list", "coverage.import"]);
    assert_eq!(verify(&scratch, &[]).0, 0);
}

/// Audit events staged in the data's database and not yet moved: each
/// group commit's row holds its events as JSON lines.
fn staged_events(scratch: &Scratch) -> usize {
    let conn = rusqlite::Connection::open(scratch.data().join("clearway.db")).unwrap();
    let mut s = conn.prepare("SELECT staged FROM staged_groups").unwrap();
    let groups: Vec<Vec<u8>> = s.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
    groups.iter().map(|g| g.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count()).sum()
}

/// An accepted submission's event is committed with the submission itself
/// (staged in the data's store) and moved into the log later: a crash
/// between the two loses none and the next start moves each exactly once.
#[test]
fn submissions_staged_with_their_events_survive_a_crash_exactly_once() {
    let scratch = Scratch::new();
    let key = scratch.partner("acme", false);
    // Moved only by the next start, not while this one runs.
    let server = Server::start(&scratch, None, &[("CLEARWAY__SECURITY__AUDIT_MOVE_EVERY_MS", "600000")]);
    let c = Client { addr: server.http, key: key.clone() };
    let mut ids = Vec::new();
    for n in 0..20 {
        let mut body = Vec::new();
        clearway_formats::x12::synth::write(&mut body, clearway_formats::x12::synth::Kind::Professional837, 1, 100 + n)
            .unwrap();
        let r = c.submit("application/edi-x12", &body, &[]);
        assert_eq!(r.status, 202, "{}", r.text());
        ids.push(r.json()["transactionId"].as_str().unwrap().to_string());
    }
    server.kill();
    assert_eq!(staged_events(&scratch), 20, "each accepted submission's event is durable with it");
    assert!(!events(&scratch).iter().any(|e| e["code"] == "POST /v1/transactions"), "not yet in the log");

    let server = Server::start(&scratch, None, &[]);
    let c = Client { addr: server.http, key };
    assert_eq!(c.get("/v1/acks?limit=1").status, 200);
    assert_eq!(server.stop(), Some(0));
    let posts: Vec<String> = events(&scratch)
        .iter()
        .filter(|e| e["code"] == "POST /v1/transactions")
        .map(|e| e["entity"][0]["id"].as_str().unwrap().to_string())
        .collect();
    let mut want = ids.clone();
    want.sort();
    let mut got = posts.clone();
    got.sort();
    assert_eq!(got, want, "each submission's event once");
    assert_eq!(staged_events(&scratch), 0);
    let out = scratch.run(&["audit", "verify"]);
    assert!(out.status.success(), "{out:?}");
}
