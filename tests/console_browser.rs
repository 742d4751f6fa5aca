//! The operator console in a real browser against the real service:
//! `scripts/console-browser.py` drives Debian's Chromium (its path in
//! `CLEARWAY_TEST_CHROMIUM`, chromedriver's in `CLEARWAY_TEST_CHROMEDRIVER`,
//! axe-core's `axe.min.js` in `CLEARWAY_TEST_AXE`; `scripts/test` installs
//! all three and sets them) through sign-in, the live dashboard, a refused
//! cross-origin post, the roles' screens and sign-out, with axe-core on
//! every screen. Screenshots land in `<target>/console-screens/`.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use support::{Scratch, Server};

fn setting(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name}: run scripts/test (it installs Chromium, chromedriver and axe-core and sets it)")
    })
}

#[test]
fn the_console_works_in_a_real_browser_and_leaves_nothing_behind() {
    let scratch = Scratch::new();
    let partner_key = scratch.partner("acme", false);
    let operator = scratch
        .run_ok(&["console-users", "add", "--name", "opal", "--role", "operator", "--phi-view"])
        .trim()
        .to_string();
    let admin = scratch.run_ok(&["console-users", "add", "--name", "adam", "--role", "admin"]).trim().to_string();
    let auditor = scratch.run_ok(&["keys", "add", "--role", "auditor", "--principal", "aud"]).trim().to_string();
    let auditor_account =
        scratch.run_ok(&["console-users", "add", "--name", "aude", "--role", "auditor"]).trim().to_string();
    // The corpus FHIR claim goes to payer "2" at a port nothing listens on:
    // processed once, dead-lettered (see tests/e2e.rs).
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/claims", closed.local_addr().unwrap());
    drop(closed);
    scratch.write_config(&format!("[edits]\n\"npi.billing\" = \"off\"\n\n[payers.2]\nurl = \"{url}\"\n"));
    let server = Server::start(
        &scratch,
        None,
        &[("CLEARWAY__WORKERS__MAX_ATTEMPTS", "1"), ("CLEARWAY__ANALYTICS__EXPORT_EVERY_SECS", "1")],
    );
    let poison = std::fs::read_to_string(support::corpus().join("fhir/claim-r4-professional.json")).unwrap();
    // Synthetic claims; one patient's last name is a marker looked for
    // everywhere it must not be. The second file's DMG03 is not a code.
    let marker = "PHIMARKERQ";
    let synthetic = |count: &str, seed: &str| {
        let out = scratch.command().args(["gen", "837p", "--count", count, "--seed", seed]).output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let good = synthetic("2", "31");
    let name_at = good.find("NM1*IL*1*").unwrap() + "NM1*IL*1*".len();
    let name_end = name_at + good[name_at..].find('*').unwrap();
    let good = format!("{}{marker}{}", &good[..name_at], &good[name_end..]);
    assert!(good.contains(marker));
    let bad = synthetic("1", "32");
    let at = bad.find("DMG*D8*").unwrap() + "DMG*D8*".len() + 9;
    let bad = format!("{}Q{}", &bad[..at], &bad[at + 1..]);

    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let shots = std::path::Path::new(&target).join("console-screens");
    std::fs::create_dir_all(&shots).unwrap();
    let venv = std::path::Path::new(&target).join("venv/bin/python");
    let python = if venv.exists() { venv } else { std::path::PathBuf::from("python3") };
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/console-browser.py");
    let input = serde_json::json!({
        "base": server.url("").trim_end_matches('/'),
        "operator": { "name": "opal", "password": operator },
        "admin": { "name": "adam", "password": admin },
        "auditor": { "name": "aude", "password": auditor_account },
        "fhir_poison": poison,
        "partner_key": partner_key,
        "shots": shots,
        "axe": setting("CLEARWAY_TEST_AXE"),
        "chromium": setting("CLEARWAY_TEST_CHROMIUM"),
        "chromedriver": setting("CLEARWAY_TEST_CHROMEDRIVER"),
        "x12_good": good,
        "x12_bad": bad,
        "marker": marker,
    });
    let mut child = Command::new(python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let screens: Vec<&str> = summary["screens"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    assert_eq!(
        screens,
        [
            "sign-in",
            "sign-in-failed",
            "dashboard",
            "transaction",
            "transaction-revealed",
            "transaction-999",
            "dead-letters",
            "dead-letters-dry-run",
            "replay",
            "systems",
            "report",
            "refused",
            "admin",
            "audit"
        ]
    );
    assert_eq!(summary["revealed"], true);
    assert!(summary["replayed"].is_string(), "a dead letter replayed by a job");
    for s in &screens {
        assert!(shots.join(format!("{s}.png")).metadata().unwrap().len() > 1000, "screenshot of {s}");
    }
    assert_eq!(summary["cross_origin_refused"], true);
    let accepted = summary["accepted"].as_array().unwrap();
    assert!(accepted[1].as_f64().unwrap() > accepted[0].as_f64().unwrap());
    // The audit log holds each sign-in, view, refusal and sign-out.
    let auth = format!("Bearer {auditor}");
    let events = support::request(server.http, "GET", "/v1/audit/events?actor=opal", &[("authorization", &auth)], b"");
    assert_eq!(events.status, 200, "{}", events.text());
    let events = events.text();
    for code in [
        "console.sign_in",
        "console.dashboard",
        "console.search",
        "console.transaction",
        "console.reveal",
        "console.replay_start",
        "console.replay_item",
        "console.report",
        "console.admin",
        "console.sign_out",
    ] {
        assert!(events.contains(code), "{code} not audited: {events}");
    }
    server.stop();

    // Neither a password nor a session token reaches the service's log.
    let logs = scratch.logs();
    assert!(!logs.is_empty());
    for secret in [&operator, &admin, &auditor_account, "not the password at all"] {
        assert!(!logs.contains(secret), "a password in the log");
    }
    assert!(!logs.contains(marker), "PHI in the log");
    assert!(!logs.contains("__Host-clearway_session="), "a session cookie in the log");
}
