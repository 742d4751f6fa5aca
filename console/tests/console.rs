//! The console through the service's own HTTP application (the console's
//! routes merged into it, as `serve` does), on the embedded backend with a
//! real audit log: sign-in and its cookie, the security headers on every
//! answer, cross-site requests refused, roles, sessions that end, and what
//! the audit log records.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use clearway_console::accounts::{Accounts, Grants, IDLE_MS};
use clearway_core::access::Role;
use clearway_core::audit::{AuditQuery, AuditSink};
use clearway_ingest::Services;
use http_body_util::BodyExt;
use std::collections::HashMap;
use std::sync::Arc;
use tower::ServiceExt;

struct Console {
    app: Router,
    console: Arc<clearway_console::Console>,
    accounts: Accounts,
    audit: Arc<clearway_local::audit::AuditService>,
    svc: Arc<Services>,
    /// A synthetic 837P of two claims accepted for partner `acme`.
    transaction: String,
    _dir: tempfile::TempDir,
}

/// The synthetic 837P every console has (names like SYNTHETIC, ALEX).
fn claims_837() -> Vec<u8> {
    let mut out = Vec::new();
    clearway_formats::x12::synth::write(&mut out, clearway_formats::x12::synth::Kind::Professional837, 2, 7).unwrap();
    out
}

async fn console() -> Console {
    let dir = tempfile::tempdir().unwrap();
    let local = clearway_local::Local::open(&dir.path().join("data")).unwrap();
    let master = clearway_core::crypto::Key::generate().unwrap();
    let sealed = clearway_core::sealed::SealedStore::new(&master, local.ports(), None);
    let (ports, partners) = (sealed.ports, Arc::new(sealed.partners));
    let config = Arc::new(clearway_core::config::load(None, &HashMap::new()).unwrap());
    let log = clearway_local::audit::SqliteAuditLog::open(&dir.path().join("data")).unwrap();
    let seed = clearway_core::audit::LogSigner::generate_seed().unwrap();
    let signer = clearway_core::audit::LogSigner::from_seed("test.example/audit", &seed).unwrap();
    let audit = Arc::new(clearway_local::audit::AuditService::new(log, Arc::new(signer)));
    let accounts = Accounts::new(ports.state.clone());
    let svc = Arc::new(
        Services::new(ports, partners, config, Arc::new(tokio::sync::Notify::new())).with_audit(audit.clone()),
    );
    let metrics: clearway_ingest::http::MetricsRender =
        Arc::new(|| "clearway_intake_accepted_total{format=\"x12\",channel=\"http\"} 42\n".to_string());
    let console = clearway_console::Console::new(svc.clone(), metrics.clone());
    let app = clearway_ingest::http::app_with(svc.clone(), metrics, clearway_console::routes(console.clone()));
    let acme = clearway_core::PartnerId::new("acme").unwrap();
    svc.partners.add(&acme, None, false).await.unwrap();
    let submission = clearway_ingest::accept::Submission {
        partner: acme,
        body: bytes::Bytes::from(claims_837()),
        content_type: Some("application/edi-x12".into()),
        idempotency_key: None,
        channel: clearway_ingest::accept::Channel::Http,
        // The caller's trace: the transaction page names it.
        traceparent: Some(format!("00-{TRACE_ID}-00f067aa0ba902b7-01")),
        audit: None,
    };
    let clearway_ingest::accept::Outcome::Accepted { record, .. } =
        clearway_ingest::accept::accept(&svc, submission).await.unwrap()
    else {
        panic!("accepted")
    };
    Console { app, console, accounts, audit, svc, transaction: record.id.to_string(), _dir: dir }
}

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Console {
    async fn send(&self, req: Request<Body>) -> Answer {
        let res = self.app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let body = String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
        Answer { status, headers, body }
    }

    async fn get(&self, path: &str, session: Option<&str>) -> Answer {
        let mut req = Request::get(path);
        if let Some(s) = session {
            req = req.header(header::COOKIE, format!("__Host-clearway_session={s}"));
        }
        self.send(req.body(Body::empty()).unwrap()).await
    }

    async fn post(&self, path: &str, session: Option<&str>, site: &str, form: &str) -> Answer {
        let mut req = Request::post(path)
            .header("sec-fetch-site", site)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(s) = session {
            req = req.header(header::COOKIE, format!("__Host-clearway_session={s}"));
        }
        self.send(req.body(Body::from(form.to_string())).unwrap()).await
    }

    /// An account of `role` and its password.
    async fn account(&self, name: &str, role: Role) -> String {
        self.accounts.add(name, role, Grants::default()).await.unwrap().expose().clone()
    }

    /// Signs in; the session token from the cookie.
    async fn sign_in(&self, name: &str, password: &str) -> String {
        let a = self.post("/console/sign-in", None, "same-origin", &form(name, password)).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
        let cookie = a.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap().to_string();
        cookie.split(';').next().unwrap().strip_prefix("__Host-clearway_session=").unwrap().to_string()
    }

    async fn console_events(&self) -> Vec<clearway_core::audit::AuditEvent> {
        let page = AuditSink::search(self.audit.as_ref(), &AuditQuery::default(), 1000).await.unwrap();
        page.events.into_iter().map(|(_, e)| e).filter(|e| e.category == "console").collect()
    }
}

fn form(name: &str, password: &str) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
            .collect()
    };
    format!("name={}&password={}", enc(name), enc(password))
}

fn assert_secured(a: &Answer, what: &str) {
    let h = |n: &str| a.headers.get(n).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    assert_eq!(h("content-security-policy"), clearway_console::CSP, "{what}");
    assert!(!clearway_console::CSP.contains("unsafe"), "no unsafe-* source");
    assert!(clearway_console::CSP.contains("script-src 'self';"));
    assert_eq!(h("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(h("referrer-policy"), "no-referrer", "{what}");
    assert_eq!(h("x-frame-options"), "DENY", "{what}");
    assert_eq!(h("cross-origin-opener-policy"), "same-origin", "{what}");
}

#[tokio::test]
async fn every_console_answer_carries_the_security_headers() {
    let c = console().await;
    let pw = c.account("ada", Role::Operator).await;
    let s = c.sign_in("ada", &pw).await;
    let answers = [
        ("sign-in page", c.get("/console/sign-in", None).await),
        ("dashboard, no session", c.get("/console", None).await),
        ("dashboard", c.get("/console", Some(&s)).await),
        ("live figures", c.get("/console/live", Some(&s)).await),
        ("admin, refused", c.get("/console/admin", Some(&s)).await),
        ("unknown page", c.get("/console/nothing/here", Some(&s)).await),
        ("failed sign-in", c.post("/console/sign-in", None, "same-origin", &form("ada", "wrong password!")).await),
        ("cross-site post", c.post("/console/sign-out", Some(&s), "cross-site", "").await),
    ];
    for (what, a) in &answers {
        assert_secured(a, what);
        assert_eq!(a.headers.get(header::CACHE_CONTROL).unwrap(), "no-store", "{what}");
    }
    let statuses: Vec<u16> = answers.iter().map(|(_, a)| a.status.as_u16()).collect();
    assert_eq!(statuses, [200, 303, 200, 200, 403, 404, 401, 403]);
    // Pages are HTML without inline script or style.
    for (what, a) in answers.iter().filter(|(_, a)| a.status != StatusCode::SEE_OTHER) {
        assert!(a.headers.get(header::CONTENT_TYPE).unwrap().to_str().unwrap().starts_with("text/html"), "{what}");
        assert!(!a.body.contains("<script>") && !a.body.contains("style="), "{what}: inline script or style");
        assert!(!a.body.contains(" on") || !a.body.contains("onclick="), "{what}: inline handler");
    }

    // Static files: immutable, with an ETag and 304 on a match.
    let htmx = c.get("/console/static/htmx-2.0.11.min.js", None).await;
    assert_eq!(htmx.status, StatusCode::OK);
    assert_secured(&htmx, "htmx");
    assert_eq!(htmx.headers.get(header::CACHE_CONTROL).unwrap(), "public, max-age=31536000, immutable");
    let etag = htmx.headers.get(header::ETAG).unwrap().clone();
    let again = c
        .send(
            Request::get("/console/static/htmx-2.0.11.min.js")
                .header(header::IF_NONE_MATCH, etag)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    assert_eq!(c.get("/console/static/..%2Fsrc%2Flib.rs", None).await.status, StatusCode::NOT_FOUND);
    // The page links each file with its content hash.
    let page = &answers[2].1.body;
    assert!(page.contains("/console/static/htmx-2.0.11.min.js?v="), "{page}");
    assert!(page.contains(r#"hx-history="false""#) && page.contains(r#""historyCacheSize":0"#));
}

#[tokio::test]
async fn sign_in_sets_a_host_only_strict_cookie_and_sign_out_ends_the_session() {
    let c = console().await;
    let pw = c.account("ada", Role::Operator).await;
    let a = c.post("/console/sign-in", None, "same-origin", &form("ada", &pw)).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(a.headers.get(header::LOCATION).unwrap(), "/console");
    let cookie = a.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap();
    let mut attrs: Vec<&str> = cookie.split("; ").skip(1).collect();
    attrs.sort_unstable();
    assert_eq!(attrs, ["HttpOnly", "Path=/", "SameSite=Strict", "Secure"], "{cookie}");
    assert!(cookie.starts_with("__Host-clearway_session=cw_"), "{cookie}");
    let s = c.sign_in("ada", &pw).await;

    let page = c.get("/console", Some(&s)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Signed in as <strong>ada</strong> (operator)"));
    assert!(page.body.contains(r#"<dd id="accepted-total">42</dd>"#), "the service's counters");

    // Cross-site, sign-out is refused and the session stands.
    assert_eq!(c.post("/console/sign-out", Some(&s), "cross-site", "").await.status, StatusCode::FORBIDDEN);
    assert_eq!(c.post("/console/sign-out", Some(&s), "same-site", "").await.status, StatusCode::FORBIDDEN);
    assert_eq!(c.get("/console", Some(&s)).await.status, StatusCode::OK);

    let out = c.post("/console/sign-out", Some(&s), "same-origin", "").await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(out.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap().contains("Max-Age=0"));
    let after = c.get("/console", Some(&s)).await;
    assert_eq!(
        (after.status, after.headers.get(header::LOCATION).unwrap().to_str().unwrap()),
        (StatusCode::SEE_OTHER, "/console/sign-in")
    );
    // An htmx request is told where to go instead.
    let live = c
        .send(
            Request::get("/console/live")
                .header("hx-request", "true")
                .header(header::COOKIE, format!("__Host-clearway_session={s}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(live.status, StatusCode::UNAUTHORIZED);
    assert_eq!(live.headers.get("hx-redirect").unwrap(), "/console/sign-in");
}

#[tokio::test]
async fn a_cross_site_sign_in_is_refused_before_the_password_is_looked_at() {
    let c = console().await;
    let pw = c.account("ada", Role::Admin).await;
    let a = c.post("/console/sign-in", None, "cross-site", &form("ada", &pw)).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(a.headers.get(header::SET_COOKIE).is_none());
    // Without Sec-Fetch-Site, the Origin must name this host.
    let post = |origin: &'static str| {
        Request::post("/console/sign-in")
            .header(header::HOST, "console.example:8443")
            .header(header::ORIGIN, origin)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(form("ada", &pw)))
            .unwrap()
    };
    assert_eq!(c.send(post("https://evil.example")).await.status, StatusCode::FORBIDDEN);
    assert_eq!(c.send(post("https://console.example:8443")).await.status, StatusCode::SEE_OTHER);
    assert!(c.console_events().await.iter().all(|e| e.outcome == "success"), "refused before any attempt");
}

#[tokio::test]
async fn each_role_sees_only_its_pages() {
    let c = console().await;
    for (name, role, admin_status) in [
        ("op", Role::Operator, StatusCode::FORBIDDEN),
        ("aud", Role::Auditor, StatusCode::FORBIDDEN),
        ("adm", Role::Admin, StatusCode::OK),
    ] {
        let pw = c.account(name, role).await;
        let s = c.sign_in(name, &pw).await;
        assert_eq!(c.get("/console", Some(&s)).await.status, StatusCode::OK, "{name}");
        let admin = c.get("/console/admin", Some(&s)).await;
        assert_eq!(admin.status, admin_status, "{name}");
        let page = c.get("/console", Some(&s)).await.body;
        assert_eq!(
            page.contains(r#"href="/console/admin""#),
            role == Role::Admin,
            "{name}: the link only where it leads"
        );
        if role == Role::Admin {
            assert!(admin.body.contains("<th scope=\"row\">op</th>"), "accounts listed");
            assert!(!admin.body.contains("$argon2"), "never a password hash");
        }
    }
    // Partners use the API: no console account for a submitter.
    assert!(c.accounts.add("partner", Role::Submitter, Grants::default()).await.is_err());
    assert!(c.accounts.add("aud2", Role::Auditor, Grants { phi_view: true, break_glass: false }).await.is_err());
    // The refusals are audit events.
    let refused: Vec<_> =
        c.console_events().await.into_iter().filter(|e| e.code == "console.admin" && e.outcome == "failure").collect();
    assert_eq!(refused.iter().map(|e| e.actor.principal.as_str()).collect::<Vec<_>>(), ["op", "aud"]);
}

#[tokio::test]
async fn a_disabled_account_is_signed_out_at_its_next_request() {
    let c = console().await;
    let pw = c.account("ada", Role::Operator).await;
    let s = c.sign_in("ada", &pw).await;
    assert_eq!(c.get("/console", Some(&s)).await.status, StatusCode::OK);
    c.accounts.disable("ada").await.unwrap();
    assert_eq!(c.get("/console", Some(&s)).await.status, StatusCode::SEE_OTHER);
    let again = c.post("/console/sign-in", None, "same-origin", &form("ada", &pw)).await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED, "a disabled account cannot sign in");
    // A new password enables it again; the old one no longer works.
    c.accounts.set_password("ada", "a new long passphrase").await.unwrap();
    assert!(c.accounts.set_password("ada", "too short").await.is_err());
    assert_eq!(
        c.post("/console/sign-in", None, "same-origin", &form("ada", &pw)).await.status,
        StatusCode::UNAUTHORIZED
    );
    c.sign_in("ada", "a new long passphrase").await;
}

#[tokio::test]
async fn sessions_end_when_idle_and_polling_does_not_keep_them_alive() {
    let c = console().await;
    c.account("ada", Role::Operator).await;
    // The store expires rows by the real clock: sessions start now.
    let now = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
    let token = c.accounts.open_session("ada", now).await.unwrap();
    let t = token.expose();
    // Polled for a long time: not activity, so it still ends idle.
    assert!(c.accounts.session(t, now + IDLE_MS / 2, false).await.unwrap().is_some());
    assert!(c.accounts.session(t, now + IDLE_MS - 1, false).await.unwrap().is_some());
    assert!(c.accounts.session(t, now + IDLE_MS, false).await.unwrap().is_none());
    // Ended for good (deleted), even if asked about an earlier time.
    assert!(c.accounts.session(t, now, true).await.unwrap().is_none());

    // Activity moves the end.
    let token = c.accounts.open_session("ada", now).await.unwrap();
    let t = token.expose();
    assert!(c.accounts.session(t, now + IDLE_MS - 1000, true).await.unwrap().is_some());
    assert!(c.accounts.session(t, now + IDLE_MS + 1000, false).await.unwrap().is_some());
    // Through the application too: the sign-in page is where an ended
    // session lands.
    let token = c.accounts.open_session("ada", now - IDLE_MS - 1).await.unwrap();
    assert_eq!(c.get("/console", Some(token.expose())).await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn sign_ins_are_audited_without_what_was_typed() {
    let c = console().await;
    let pw = c.account("ada", Role::Operator).await;
    // A password typed into the name field, and a wrong password.
    let typed = "hunter2-typed-as-a-name";
    assert_eq!(
        c.post("/console/sign-in", None, "same-origin", &form(typed, "x")).await.status,
        StatusCode::UNAUTHORIZED
    );
    let failed = c.post("/console/sign-in", None, "same-origin", &form("ada", "not the password")).await;
    assert_eq!(failed.status, StatusCode::UNAUTHORIZED);
    assert!(failed.body.contains("role=\"alert\""), "the failure is announced");
    let s = c.sign_in("ada", &pw).await;
    c.get("/console", Some(&s)).await;
    c.post("/console/sign-out", Some(&s), "same-origin", "").await;

    let events = c.console_events().await;
    let summary: Vec<(String, String, String)> =
        events.iter().map(|e| (e.code.clone(), e.outcome.clone(), e.actor.principal.clone())).collect();
    let s = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
    assert_eq!(
        summary,
        [
            s("console.sign_in", "failure", "unauthenticated"),
            s("console.sign_in", "failure", "unauthenticated"),
            s("console.sign_in", "success", "ada"),
            s("console.dashboard", "success", "ada"),
            s("console.sign_out", "success", "ada"),
        ]
    );
    // The unknown name is not recorded; the known one is, as the account.
    assert!(events[0].entity.is_empty());
    assert_eq!(
        events[1].entity.iter().map(|e| (e.kind.as_str(), e.id.as_str())).collect::<Vec<_>>(),
        [("account", "ada")]
    );
    let all = serde_json::to_string(&events).unwrap();
    assert!(!all.contains(typed) && !all.contains(&pw) && !all.contains("not the password"));
    // The session is named by a public id, never its token.
    assert!(events[2].actor.credential.as_deref().unwrap().starts_with("session:"));
    assert_eq!(events[2].actor.auth, "password");
}

/// The rows of the console's table in `docs/specs/authorization.md`:
/// method, route, then one cell per role (operator, auditor, admin).
fn documented_routes() -> Vec<Vec<String>> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/specs/authorization.md")).unwrap();
    let part = doc.split("\n## ").find(|s| s.starts_with("The console")).expect("the console's section");
    part.lines()
        .filter(|l| l.starts_with("| GET") || l.starts_with("| POST"))
        .map(|l| l.trim_matches('|').split(" | ").map(|c| c.trim().trim_matches('`').to_string()).collect())
        .collect()
}

#[tokio::test]
async fn each_route_answers_each_role_as_the_table_in_the_docs_says() {
    let c = console().await;
    let roles = [("op", Role::Operator), ("aud", Role::Auditor), ("adm", Role::Admin)];
    let mut sessions = Vec::new();
    for (name, role) in roles {
        let grants = Grants { phi_view: role == Role::Operator, break_glass: false };
        let pw = c.accounts.add(name, role, grants).await.unwrap().expose().clone();
        sessions.push(c.sign_in(name, &pw).await);
    }
    let rows = documented_routes();
    assert_eq!(rows.len(), 32, "the rows of the table");
    for row in &rows {
        let route = row[1]
            .replace("{name}", "console.css")
            .replace("{report}", "acceptance")
            .replace("{account}", "nobody")
            .replace("{key}", "000000000000")
            .replace("{partner}", "acme")
            .replace("/replays/{id}", "/replays/0190a5b8-0000-7000-8000-000000000001")
            .replace("/break-glass/{id}", "/break-glass/0190a5b8-0000-7000-8000-000000000002")
            .replace("{id}", &c.transaction);
        let method = row[0].as_str();
        for (i, session) in sessions.iter().enumerate() {
            let cell = row[2 + i].as_str();
            let body = if route.ends_with("/reveal") {
                "reason=the+payer+asked+about+this+claim"
            } else if route.ends_with("/claim") {
                "pcn=X1"
            } else if route.ends_with("/dead-letters/replay") || route.starts_with("/console/destinations/") {
                "count=1&reason=the+payer+endpoint+is+back+up"
            } else if route.ends_with("/review") {
                "finding=appropriate"
            } else if route == "/console/admin/accounts" {
                "name=&role=none"
            } else if route == "/console/admin/partners" {
                "id=&name="
            } else if route == "/console/admin/keys" {
                "principal=&role=none"
            } else {
                ""
            };
            let answer = match method {
                "GET" => c.get(&route, Some(session)).await,
                _ if route == "/console/sign-in" => {
                    c.post(&route, None, "same-origin", &form("nobody", "wrong password")).await
                }
                _ => c.post(&route, Some(session), "same-origin", body).await,
            };
            let role = roles[i].0;
            match cell.split(' ').next().unwrap() {
                // Admitted: answered by the page (a missing job or
                // elevation is its own 404; an empty selection its 409),
                // never refused or sent to sign in.
                "yes" => assert!(
                    ![StatusCode::FORBIDDEN, StatusCode::UNAUTHORIZED].contains(&answer.status)
                        && answer.headers.get(header::LOCATION).is_none_or(|l| l != "/console/sign-in")
                        && !answer.status.is_server_error(),
                    "{method} {route} for {role}: {}",
                    answer.status
                ),
                "no" => assert_eq!(answer.status, StatusCode::FORBIDDEN, "{method} {route} for {role}"),
                "public" => {
                    // Answered without a session as well.
                    let anonymous = match method {
                        "GET" => c.get(&route, None).await,
                        _ => c.post(&route, None, "same-origin", &form("nobody", "wrong password")).await,
                    };
                    assert!(
                        anonymous.status.is_success()
                            || anonymous.status == StatusCode::SEE_OTHER
                            || anonymous.status == StatusCode::UNAUTHORIZED && route == "/console/sign-in",
                        "{method} {route} without a session: {}",
                        anonymous.status
                    );
                }
                other => panic!("{method} {route}: cell {other:?}"),
            }
            if route == "/console/sign-out" {
                // Signed out by the walk: sign in again for the next rows.
                let pw = c.accounts.set_password(roles[i].0, "a long enough password").await;
                pw.unwrap();
            }
        }
        if route == "/console/sign-out" {
            sessions.clear();
            for (name, _) in roles {
                sessions.push(c.sign_in(name, "a long enough password").await);
            }
        }
    }
    // Nothing but the table: an unknown console page is 404, signed in or not.
    assert_eq!(c.get("/console/settings", Some(&sessions[2])).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_transaction_page_masks_phi_until_a_reason_is_given() {
    let c = console().await;
    let ann = c.accounts.add("ann", Role::Operator, Grants { phi_view: true, break_glass: false }).await.unwrap();
    let s = c.sign_in("ann", ann.expose()).await;
    let path = format!("/console/transactions/acme/{}", c.transaction);
    let page = c.get(&path, Some(&s)).await;
    assert_eq!(page.status, StatusCode::OK);
    let html = &page.body;
    // The structure and the codes, named by the guide.
    assert!(html.contains("Billing Provider") || html.contains("BILLING PROVIDER"), "loop names");
    assert!(html.contains(r#"<span class="seg-id">CLM</span>"#), "claims shown");
    assert!(html.contains("loop 2300"), "loops");
    assert!(html.contains("ISA13</span>=<span class=\"el-value\">"), "envelopes in clear");
    // The trace id, in the facts and on the timeline's first line.
    assert!(html.contains(&format!(r#"<code id="trace-id">{TRACE_ID}</code>"#)), "the trace id");
    assert!(html.contains(&format!("stored and queued; trace {TRACE_ID}")), "the timeline names the trace");
    // No name, member id or date of birth of the synthetic file.
    let payload = String::from_utf8(claims_837()).unwrap();
    let phi: Vec<&str> = payload
        .split('~')
        .filter(|s| s.trim_start().starts_with("NM1*IL") || s.trim_start().starts_with("DMG"))
        .flat_map(|s| s.split('*').skip(3).filter(|v| v.len() > 3))
        .collect();
    assert!(!phi.is_empty());
    for v in &phi {
        assert!(!html.contains(v), "{v} shown masked");
    }
    assert!(html.contains(r#"action="/console/transactions/acme/"#), "a reveal form for phi_view");

    // Too short a reason: nothing revealed, said why.
    let reveal = format!("{path}/reveal");
    let short = c.post(&reveal, Some(&s), "same-origin", "reason=because").await;
    assert_eq!(short.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(short.body.contains("role=\"alert\""));
    for v in &phi {
        assert!(!short.body.contains(v));
    }
    let shown = c.post(&reveal, Some(&s), "same-origin", "reason=the+submitter+asked+why+claim+2+was+rejected").await;
    assert_eq!(shown.status, StatusCode::OK);
    for v in &phi {
        assert!(shown.body.contains(v), "{v} revealed");
    }
    assert_eq!(shown.headers.get(header::CACHE_CONTROL).unwrap(), "no-store");
    // A cross-site reveal is refused.
    let forged = c.post(&reveal, Some(&s), "cross-site", "reason=the+submitter+asked+why+claim+2+was+rejected").await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);

    // Audited: the view, the refused and the granted reveal; the reason is
    // kept for auditors under the event's id, not in the event.
    let events = c.console_events().await;
    let reveals: Vec<_> = events.iter().filter(|e| e.code == "console.reveal").collect();
    assert_eq!(reveals.iter().map(|e| e.outcome.as_str()).collect::<Vec<_>>(), ["failure", "success"]);
    let granted = reveals[1];
    assert_eq!(granted.purpose.as_deref(), Some("HOPERAT"));
    // Not processed yet (no claim records): the patients are the file's own
    // claim numbers, as tokens.
    let mut tokens: Vec<String> = payload
        .split('~')
        .filter_map(|s| s.trim_start().strip_prefix("CLM*"))
        .map(|s| c.svc.partners.index_token(s.split('*').next().unwrap()))
        .collect();
    tokens.sort();
    assert_eq!(tokens.len(), 2);
    assert_eq!(granted.patients, tokens, "the reveal names the patients it showed");
    assert_eq!(granted.tenant.as_deref(), Some("acme"));
    assert!(granted.entity.iter().any(|e| e.kind == "payload" && e.id == c.transaction));
    assert!(!serde_json::to_string(&events).unwrap().contains("submitter asked"), "the reason stays out of the log");
    let kept = c
        .svc
        .ports
        .state
        .get(&clearway_core::ports::Key::new(
            clearway_core::ports::Table::Partners,
            "console-reveal",
            granted.id.clone(),
        ))
        .await
        .unwrap()
        .expect("the reason, for auditors");
    assert!(String::from_utf8_lossy(&kept.value).contains("the submitter asked why claim 2 was rejected"));

    // Without the grant: no form, and a reveal is refused (and audited).
    let bo = c.account("bo", Role::Operator).await;
    let s2 = c.sign_in("bo", &bo).await;
    let page = c.get(&path, Some(&s2)).await;
    assert!(!page.body.contains("/reveal"), "no reveal form without phi_view");
    let refused =
        c.post(&reveal, Some(&s2), "same-origin", "reason=the+submitter+asked+why+claim+2+was+rejected").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    for v in &phi {
        assert!(!refused.body.contains(v));
    }
    // An unknown transaction: 404.
    let missing = c.get("/console/transactions/acme/0190a5b8-0000-7000-8000-000000000000", Some(&s)).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    // Without the grant, an unknown one is refused alike: whether it exists
    // is not learnt by asking to reveal it.
    let unknown = c
        .post(
            "/console/transactions/acme/0190a5b8-0000-7000-8000-000000000000/reveal",
            Some(&s2),
            "same-origin",
            "reason=the+submitter+asked+why+claim+2+was+rejected",
        )
        .await;
    assert_eq!(unknown.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn search_finds_by_id_by_partner_and_by_claim_number_by_post_only() {
    let c = console().await;
    let pw = c.account("ann", Role::Operator).await;
    let s = c.sign_in("ann", &pw).await;
    let by_id = c.get(&format!("/console/search?id={}", c.transaction), Some(&s)).await;
    assert_eq!(by_id.status, StatusCode::SEE_OTHER);
    assert_eq!(
        by_id.headers.get(header::LOCATION).unwrap().to_str().unwrap(),
        format!("/console/transactions/acme/{}", c.transaction)
    );
    let listed = c.get("/console/search?partner=acme", Some(&s)).await;
    assert_eq!(listed.status, StatusCode::OK);
    assert!(listed.body.contains(&c.transaction), "{}", listed.body);
    let received = c.get("/console/search?partner=acme&status=received", Some(&s)).await;
    assert!(received.body.contains(&c.transaction));
    let accepted = c.get("/console/search?partner=acme&status=accepted", Some(&s)).await;
    assert!(!accepted.body.contains(&c.transaction) && accepted.body.contains("No transactions match."));
    let today = time::OffsetDateTime::now_utc().date();
    let tomorrow = today.next_day().unwrap();
    let from = |d: time::Date| format!("/console/search?partner=acme&from={d}");
    assert!(c.get(&from(today), Some(&s)).await.body.contains(&c.transaction));
    assert!(!c.get(&from(tomorrow), Some(&s)).await.body.contains(&c.transaction));
    assert!(c.get("/console/search?partner=acme&from=12%2F07", Some(&s)).await.body.contains("YYYY-MM-DD"));
    // A claim number is looked for by POST and audited with its token.
    let by_pcn = c.post("/console/search/claim", Some(&s), "same-origin", "pcn=SOME-PCN-1").await;
    assert_eq!(by_pcn.status, StatusCode::OK);
    assert_eq!(
        c.get("/console/search/claim?pcn=SOME-PCN-1", Some(&s)).await.status,
        StatusCode::METHOD_NOT_ALLOWED,
        "never in a URL"
    );
    let e = c.console_events().await.into_iter().find(|e| e.code == "console.search_claim").unwrap();
    assert_eq!(e.patients, [c.svc.partners.index_token("SOME-PCN-1")]);
    assert!(!serde_json::to_string(&e).unwrap().contains("SOME-PCN-1"));
    // Auditors and admins do not search transactions.
    let aud = c.account("aud", Role::Auditor).await;
    let sa = c.sign_in("aud", &aud).await;
    assert_eq!(c.get("/console/search?partner=acme", Some(&sa)).await.status, StatusCode::FORBIDDEN);
}

/// Accepts another synthetic 837 for `acme` and dead-letters it as the
/// workers do (its record dead-lettered, the dead letter and its index),
/// naming `payer`.
async fn dead_letter(c: &Console, seed: u64, reason: &str, payer: &str) -> String {
    let mut body = Vec::new();
    clearway_formats::x12::synth::write(&mut body, clearway_formats::x12::synth::Kind::Professional837, 1, seed)
        .unwrap();
    let acme = clearway_core::PartnerId::new("acme").unwrap();
    let submission = clearway_ingest::accept::Submission {
        partner: acme.clone(),
        body: bytes::Bytes::from(body),
        content_type: Some("application/edi-x12".into()),
        idempotency_key: None,
        channel: clearway_ingest::accept::Channel::Http,
        traceparent: None,
        audit: None,
    };
    let clearway_ingest::accept::Outcome::Accepted { record, .. } =
        clearway_ingest::accept::accept(&c.svc, submission).await.unwrap()
    else {
        panic!("accepted")
    };
    let now = time::OffsetDateTime::now_utc();
    let dead = clearway_core::records::DeadLetter {
        transaction: record.id.clone(),
        partner: acme.clone(),
        reason: reason.into(),
        attempts: 5,
        dead_lettered_at: clearway_core::records::timestamp(now),
        dead_lettered_at_ms: (now.unix_timestamp_nanos() / 1_000_000) as i64,
        payers: vec![payer.into()],
    };
    let key = clearway_core::records::TransactionRecord::key(&acme, &record.id);
    let item = c.svc.ports.state.get(&key).await.unwrap().unwrap();
    let mut r: clearway_core::records::TransactionRecord = serde_json::from_slice(&item.value).unwrap();
    r.status = clearway_core::records::Status::DeadLettered;
    r.failure = Some(reason.into());
    let put = |key, value: Vec<u8>, condition| clearway_core::ports::WriteOp::Put {
        key,
        value: bytes::Bytes::from(value),
        expires_at: None,
        condition,
        owner: None,
    };
    c.svc
        .ports
        .state
        .write(vec![
            put(
                clearway_core::records::DeadLetter::key(&acme, &record.id),
                serde_json::to_vec(&dead).unwrap(),
                clearway_core::ports::Condition::None,
            ),
            put(
                clearway_core::records::DeadLetter::index_key(&record.id),
                serde_json::to_vec(&dead).unwrap(),
                clearway_core::ports::Condition::None,
            ),
            put(key, serde_json::to_vec(&r).unwrap(), clearway_core::ports::Condition::Version(item.version)),
        ])
        .await
        .unwrap();
    record.id.to_string()
}

async fn status_of(c: &Console, id: &str) -> clearway_core::records::Status {
    let acme = clearway_core::PartnerId::new("acme").unwrap();
    let id = clearway_core::ids::TransactionId::parse(id).unwrap();
    let item = c.svc.ports.state.get(&clearway_core::records::TransactionRecord::key(&acme, &id)).await.unwrap();
    serde_json::from_slice::<clearway_core::records::TransactionRecord>(&item.unwrap().value).unwrap().status
}

#[tokio::test]
async fn dead_letters_are_dry_run_then_replayed_at_a_rate_pausably_and_audited() {
    let c = console().await;
    let pw = c.account("ann", Role::Operator).await;
    let s = c.sign_in("ann", &pw).await;
    let timeouts =
        [dead_letter(&c, 11, "payer timeout", "PAYERA").await, dead_letter(&c, 12, "payer timeout", "PAYERA").await];
    let other = dead_letter(&c, 13, "unreadable payload", "PAYERB").await;

    let list = c.get("/console/dead-letters?contains=timeout", Some(&s)).await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(timeouts.iter().all(|t| list.body.contains(t.as_str())) && !list.body.contains(&other));
    // By payer (ids without case).
    let by_payer = c.get("/console/dead-letters?payer=payerb", Some(&s)).await.body;
    assert!(by_payer.contains(&other) && !timeouts.iter().any(|t| by_payer.contains(t.as_str())), "{by_payer}");
    assert!(by_payer.contains("<td>PAYERB</td>"), "the payers are shown");
    let none = c.get("/console/dead-letters?payer=PAYERA&contains=unreadable", Some(&s)).await.body;
    assert!(none.contains("No dead letters match."));

    // One of the two is replayed elsewhere meanwhile: the dry run says so.
    clearway_core::dlq::replay(&c.svc.ports, &clearway_core::ids::TransactionId::parse(&timeouts[1]).unwrap(), false)
        .await
        .unwrap();
    // Its claim was routed before it failed: the workers' effect record.
    let t0 = clearway_core::ids::TransactionId::parse(&timeouts[0]).unwrap();
    c.svc
        .ports
        .state
        .write(vec![clearway_core::ports::WriteOp::Put {
            key: clearway_core::records::effect_key(&t0, "route:1"),
            value: bytes::Bytes::from_static(b"{}"),
            expires_at: None,
            condition: clearway_core::ports::Condition::None,
            owner: None,
        }])
        .await
        .unwrap();
    let dry = c.post("/console/dead-letters/dry-run", Some(&s), "same-origin", "contains=timeout&payer=PAYERA").await;
    assert_eq!(dry.status, StatusCode::OK);
    assert!(dry.body.contains("would re-queue <strong>1</strong> of 1"), "{}", dry.body);
    assert!(
        dry.body.contains("its 1 effects already recorded are found as duplicates, not done again"),
        "{}",
        dry.body
    );
    assert!(dry.body.contains(r#"<input type="hidden" name="payer" value="PAYERA">"#), "the replay keeps the filter");
    assert_eq!(
        status_of(&c, &timeouts[0]).await,
        clearway_core::records::Status::DeadLettered,
        "a dry run changes nothing"
    );

    // A count that no longer matches the selection is shown again, not run.
    let stale = c
        .post(
            "/console/dead-letters/replay",
            Some(&s),
            "same-origin",
            "contains=timeout&count=2&rate=5&reason=the+payer+endpoint+is+back+up+now",
        )
        .await;
    assert_eq!(stale.status, StatusCode::CONFLICT);
    let short =
        c.post("/console/dead-letters/replay", Some(&s), "same-origin", "contains=timeout&count=1&reason=again").await;
    assert_eq!(short.status, StatusCode::CONFLICT, "a reason is needed");
    let started = c
        .post(
            "/console/dead-letters/replay",
            Some(&s),
            "same-origin",
            "contains=timeout&payer=PAYERA&count=1&rate=5&reason=the+payer+endpoint+is+back+up+now",
        )
        .await;
    assert_eq!(started.status, StatusCode::SEE_OTHER, "{}", started.body);
    let job = started.headers.get(header::LOCATION).unwrap().to_str().unwrap().to_string();
    assert!(job.starts_with("/console/replays/"));

    // Paused before it runs: nothing happens; resumed: it finishes.
    assert_eq!(c.post(&format!("{job}/pause"), Some(&s), "same-origin", "").await.status, StatusCode::SEE_OTHER);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let runner = tokio::spawn(c.console.clone().run_replays(async move {
        let _ = stop_rx.await;
    }));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(status_of(&c, &timeouts[0]).await, clearway_core::records::Status::DeadLettered, "paused");
    assert!(c.get(&job, Some(&s)).await.body.contains(r#"<dd id="replay-state">paused</dd>"#));
    assert_eq!(c.post(&format!("{job}/resume"), Some(&s), "same-origin", "").await.status, StatusCode::SEE_OTHER);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !c.get(&format!("{job}/progress"), Some(&s)).await.body.contains(r#"<dd id="replay-state">done</dd>"#) {
        assert!(std::time::Instant::now() < deadline, "the job never finished");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let _ = stop_tx.send(());
    runner.await.unwrap();
    assert_eq!(status_of(&c, &timeouts[0]).await, clearway_core::records::Status::Received, "re-queued");
    assert_eq!(status_of(&c, &other).await, clearway_core::records::Status::DeadLettered, "not selected");
    let progress = c.get(&format!("{job}/progress"), Some(&s)).await.body;
    assert!(
        progress.contains(r#"<dd id="replay-replayed">1</dd>"#)
            && progress.contains(r#"<dd id="replay-skipped">0</dd>"#)
    );

    let codes: Vec<String> = c.console_events().await.into_iter().map(|e| e.code).collect();
    for code in [
        "console.replay_dry_run",
        "console.replay_start",
        "console.replay_pause",
        "console.replay_resume",
        "console.replay_item",
    ] {
        assert!(codes.iter().any(|c| c == code), "{code} not audited: {codes:?}");
    }
    let item = c.console_events().await.into_iter().find(|e| e.code == "console.replay_item").unwrap();
    assert_eq!(item.actor.principal, "ann", "in the name of who started it");
    assert!(item.entity.iter().any(|e| e.kind == "transaction" && e.id == timeouts[0]));
    // Auditors do not replay.
    let aud = c.account("aud", Role::Auditor).await;
    let sa = c.sign_in("aud", &aud).await;
    assert_eq!(c.get("/console/dead-letters", Some(&sa)).await.status, StatusCode::FORBIDDEN);
    assert_eq!(c.post(&format!("{job}/resume"), Some(&sa), "same-origin", "").await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn auditors_search_the_log_see_reveal_reasons_and_review_break_glass() {
    let c = console().await;
    let ann = c.accounts.add("ann", Role::Operator, Grants { phi_view: true, break_glass: false }).await.unwrap();
    let s = c.sign_in("ann", ann.expose()).await;
    let reveal = format!("/console/transactions/acme/{}/reveal", c.transaction);
    c.post(&reveal, Some(&s), "same-origin", "reason=the+payer+asked+about+the+subscriber+name").await;
    // An ended break-glass elevation of someone else, to review.
    let now = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
    let bg = clearway_core::access::BreakGlass {
        id: uuid::Uuid::now_v7().to_string(),
        principal: "ops-zed".into(),
        credential: "0123456789ab".into(),
        reason: "incident".into(),
        justification: "the payer's portal showed a wrong member".into(),
        started_at_ms: now - 120_000,
        expires_at_ms: now - 60_000,
        ended_at_ms: Some(now - 60_000),
        review: None,
    };
    clearway_core::access::store_break_glass(c.svc.ports.state.as_ref(), &bg).await.unwrap();

    let aud = c.account("aud", Role::Auditor).await;
    let sa = c.sign_in("aud", &aud).await;
    let page = c.get("/console/audit?actor=ann", Some(&sa)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("console.reveal") && page.body.contains("console.sign_in"), "{}", page.body);
    assert!(!page.body.contains("console.audit</td>"), "only ann's events");
    assert!(page.body.contains("the payer asked about the subscriber name"), "the reveal's reason");
    assert!(page.body.contains("portal showed a wrong member"), "the elevation's justification");
    let only_reveals = c.get("/console/audit?code=console.reveal", Some(&sa)).await.body;
    assert!(only_reveals.contains("console.reveal") && !only_reveals.contains("console.sign_in</td>"));
    // The finding is recorded once; not by the elevated operator themself.
    let review = format!("/console/audit/break-glass/{}/review", bg.id);
    assert_eq!(
        c.post(&review, Some(&sa), "same-origin", "finding=maybe").await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(c.post(&review, Some(&sa), "same-origin", "finding=appropriate").await.status, StatusCode::SEE_OTHER);
    assert_eq!(c.post(&review, Some(&sa), "same-origin", "finding=appropriate").await.status, StatusCode::CONFLICT);
    let (stored, _) =
        clearway_core::access::get_break_glass(c.svc.ports.state.as_ref(), &bg.id).await.unwrap().unwrap();
    assert_eq!(stored.review.unwrap().by, "aud");
    // Operators and admins do not read the log.
    assert_eq!(c.get("/console/audit", Some(&s)).await.status, StatusCode::FORBIDDEN);
    let adm = c.account("adm", Role::Admin).await;
    let sd = c.sign_in("adm", &adm).await;
    assert_eq!(c.get("/console/audit", Some(&sd)).await.status, StatusCode::FORBIDDEN);
}

/// A report pack of fixed rows: what the page does with rows (the real
/// pack, DataFusion over the export, is driven in tests/console_browser.rs
/// and tests/analytics.rs).
struct FixedReports;

#[async_trait::async_trait]
impl clearway_core::reports::Reports for FixedReports {
    fn names(&self) -> Vec<&'static str> {
        vec!["rejections"]
    }
    async fn run(
        &self,
        name: &str,
        params: &clearway_core::reports::ReportParams,
    ) -> clearway_core::PortResult<Option<serde_json::Value>> {
        if name != "rejections" {
            return Ok(None);
        }
        let payer = params.payer.clone().unwrap_or_else(|| "P<1>".into());
        Ok(Some(serde_json::json!([
            {"payer": payer, "claims": 10, "rejected": 4},
            {"payer": "P2", "claims": 5, "rejected": 0},
        ])))
    }
}

#[tokio::test]
async fn a_report_is_a_table_and_a_chart_for_operators_and_auditors() {
    let dir = tempfile::tempdir().unwrap();
    let local = clearway_local::Local::open(&dir.path().join("data")).unwrap();
    let master = clearway_core::crypto::Key::generate().unwrap();
    let sealed = clearway_core::sealed::SealedStore::new(&master, local.ports(), None);
    let (ports, partners) = (sealed.ports, Arc::new(sealed.partners));
    let config = Arc::new(clearway_core::config::load(None, &HashMap::new()).unwrap());
    let accounts = Accounts::new(ports.state.clone());
    let svc = Arc::new(
        Services::new(ports, partners, config, Arc::new(tokio::sync::Notify::new()))
            .with_reports(Arc::new(FixedReports)),
    );
    let metrics: clearway_ingest::http::MetricsRender = Arc::new(String::new);
    let app = clearway_ingest::http::app_with(svc.clone(), metrics.clone(), clearway_console::router(svc, metrics));
    let pw = accounts.add("aud", Role::Auditor, Grants::default()).await.unwrap();
    let form = format!("name=aud&password={}", pw.expose());
    let signed = app
        .clone()
        .oneshot(
            Request::post("/console/sign-in")
                .header("sec-fetch-site", "same-origin")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(form))
                .unwrap(),
        )
        .await
        .unwrap();
    let cookie =
        signed.headers().get(header::SET_COOKIE).unwrap().to_str().unwrap().split(';').next().unwrap().to_string();
    let get = |path: &str| {
        let req = Request::get(path).header(header::COOKIE, cookie.clone()).body(Body::empty()).unwrap();
        let app = app.clone();
        async move {
            let res = app.oneshot(req).await.unwrap();
            let status = res.status();
            (status, String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap())
        }
    };
    let (status, list) = get("/console/reports").await;
    assert_eq!(status, StatusCode::OK);
    assert!(list.contains(r#"href="/console/reports/rejections""#));
    let (status, page) = get("/console/reports/rejections?from=2026-01-01").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("<th scope=\"col\">payer</th>") && page.contains("<td>P2</td>"), "{page}");
    assert!(page.contains("P&#60;1&#62;") && !page.contains("P<1>"), "values are escaped: {page}");
    assert!(page.contains("<title id=\"report-chart-title\">claims by payer</title>"), "a chart");
    assert!(page.contains("width=\"380\""), "the largest bar is full width");
    let (_, filtered) = get("/console/reports/rejections?payer=PX9").await;
    assert!(filtered.contains("<td>PX9</td>"), "the scope reaches the report");
    assert!(get("/console/reports/rejections?from=soon").await.1.contains("YYYY-MM-DD"));
    assert_eq!(get("/console/reports/nothing").await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn admins_make_and_end_accounts_and_keys_whose_secrets_are_shown_once() {
    let c = console().await;
    let pw = c.account("adm", Role::Admin).await;
    let s = c.sign_in("adm", &pw).await;
    // An account: its password on the answer to the POST, and it signs in.
    let made = c.post("/console/admin/accounts", Some(&s), "same-origin", "name=zoe&role=operator&phi_view=1").await;
    assert_eq!(made.status, StatusCode::OK, "{}", made.body);
    assert_eq!(made.headers.get(header::CACHE_CONTROL).unwrap(), "no-store");
    let secret = |body: &str| -> String {
        let at = body.find(r#"<code id="made-secret">"#).expect("a secret shown") + r#"<code id="made-secret">"#.len();
        body[at..at + body[at..].find('<').unwrap()].to_string()
    };
    let zoe = secret(&made.body);
    let (account, _) = c.accounts.get("zoe").await.unwrap().unwrap();
    assert!(account.phi_view && account.role == Role::Operator);
    c.sign_in("zoe", &zoe).await;
    // Shown once: the admin page does not show it again.
    assert!(!c.get("/console/admin", Some(&s)).await.body.contains(&zoe));
    assert_eq!(
        c.post("/console/admin/accounts", Some(&s), "same-origin", "name=zoe&role=auditor").await.status,
        StatusCode::CONFLICT
    );
    assert_eq!(
        c.post("/console/admin/accounts", Some(&s), "same-origin", "name=al&role=auditor&phi_view=1").await.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "phi_view is for operators"
    );
    // Disabled: out at once; an admin cannot disable themself here.
    assert_eq!(
        c.post("/console/admin/accounts/zoe/disable", Some(&s), "same-origin", "").await.status,
        StatusCode::SEE_OTHER
    );
    assert!(c.accounts.get("zoe").await.unwrap().unwrap().0.disabled);
    assert_eq!(
        c.post("/console/admin/accounts/adm/disable", Some(&s), "same-origin", "").await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    // A partner's API key: shown once, it authenticates; revoked, it does not.
    let key =
        c.post("/console/admin/keys", Some(&s), "same-origin", "principal=acme&role=submitter&label=second+key").await;
    assert_eq!(key.status, StatusCode::OK, "{}", key.body);
    let api_key = secret(&key.body);
    let principal = c.svc.partners.authenticate(&api_key).await.unwrap().expect("the new key works");
    assert_eq!((principal.id.as_str(), principal.role), ("acme", Role::Submitter));
    let id = clearway_core::partners::key_id(&api_key);
    assert_eq!(
        c.post(&format!("/console/admin/keys/{id}/revoke"), Some(&s), "same-origin", "").await.status,
        StatusCode::SEE_OTHER
    );
    assert!(c.svc.partners.authenticate(&api_key).await.unwrap().is_none(), "revoked at once");
    assert_eq!(
        c.post("/console/admin/keys", Some(&s), "same-origin", "principal=ghost&role=submitter").await.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "no such partner"
    );
    // A partner: its submitter key shown once and working; revoked, its
    // keys stop; a second one of the same id is refused.
    let added = c.post("/console/admin/partners", Some(&s), "same-origin", "id=bravo&name=Bravo+Clinic").await;
    assert_eq!(added.status, StatusCode::OK, "{}", added.body);
    let bravo = secret(&added.body);
    let principal = c.svc.partners.authenticate(&bravo).await.unwrap().expect("the partner's key works");
    assert_eq!((principal.id.as_str(), principal.role), ("bravo", Role::Submitter));
    assert!(c.get("/console/admin", Some(&s)).await.body.contains("Bravo Clinic"));
    assert_eq!(
        c.post("/console/admin/partners", Some(&s), "same-origin", "id=bravo").await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        c.post("/console/admin/partners/bravo/revoke", Some(&s), "same-origin", "").await.status,
        StatusCode::SEE_OTHER
    );
    assert!(c.svc.partners.authenticate(&bravo).await.unwrap().is_none(), "a revoked partner's key stops");
    // Audited, never with a secret.
    let events = c.console_events().await;
    let codes: Vec<&str> = events.iter().map(|e| e.code.as_str()).collect();
    for code in [
        "console.account_add",
        "console.account_disable",
        "console.key_add",
        "console.key_revoke",
        "console.partner_add",
        "console.partner_revoke",
    ] {
        assert!(codes.contains(&code), "{code}: {codes:?}");
    }
    let all = serde_json::to_string(&events).unwrap();
    assert!(!all.contains(&zoe) && !all.contains(&api_key) && !all.contains(&bravo));
    assert!(
        events.iter().any(|e| e.code == "console.key_add" && e.entity.iter().any(|x| x.kind == "key" && x.id == id))
    );
    // Not for operators.
    let op = c.account("op", Role::Operator).await;
    let so = c.sign_in("op", &op).await;
    assert_eq!(
        c.post("/console/admin/keys", Some(&so), "same-origin", "principal=acme&role=submitter").await.status,
        StatusCode::FORBIDDEN
    );
}
