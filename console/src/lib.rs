//! The operator console: pages rendered on the server (askama templates)
//! with htmx for the parts that refresh, served by the binary under
//! `/console` and calling the same services as the JSON API in-process.
//!
//! - **People sign in** with an account ([`accounts`]): a server-side
//!   session named by a random token in a `__Host-` cookie (`Secure`,
//!   `HttpOnly`, `SameSite=Strict`), ended when idle (with a warning first)
//!   or after eight hours.
//! - **Every answer** carries a strict Content-Security-Policy (scripts and
//!   styles from this origin only: no inline script, no `unsafe-*`),
//!   `Cache-Control: no-store` (pages), `Referrer-Policy: no-referrer` and
//!   the other headers of [`security_headers`]; htmx keeps no history
//!   snapshot, so nothing shown lands in browser storage.
//! - **A request that changes something** (any method but `GET`/`HEAD`) is
//!   refused unless the browser says it came from this origin
//!   (`Sec-Fetch-Site: same-origin`, or a matching `Origin` where the
//!   browser sends no `Sec-Fetch-Site`): [`same_origin`].
//! - **Roles** are the access model's ([`clearway_core::access::Role`]);
//!   each page names the roles it serves. Sign-in, sign-out, each page
//!   viewed and each refusal are audit events.
//! - No PHI in any URL: pages are named by ids only.

pub mod accounts;
mod admin;
mod assets;
mod auditing;
mod dashboard;
mod dead_letters;
mod destinations;
mod reports;
mod search;
mod transaction;

use accounts::{Account, Accounts, Session};
use askama::Template;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use clearway_core::access::Role;
use clearway_core::audit::{AuditActor, AuditEntity, AuditEvent};
use clearway_core::records::now_ms;
use clearway_ingest::Services;
use clearway_ingest::http::MetricsRender;
use std::sync::Arc;

/// The session cookie. `__Host-`: only ever set with `Secure`, `Path=/`
/// and no `Domain`, so no other host or path can set or shadow it.
pub const SESSION_COOKIE: &str = "__Host-clearway_session";

/// The Content-Security-Policy of every console answer.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; font-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The header the dashboard's own refresh sends: not a person's activity,
/// so it does not keep an idle session alive.
const POLL_HEADER: &str = "x-console-poll";

/// The console's state: the services, the accounts, the dashboard's
/// samples of the service's counters.
pub struct Console {
    svc: Arc<Services>,
    accounts: Accounts,
    metrics: MetricsRender,
    samples: dashboard::Samples,
    /// The CAQH CORE gauge, refreshed in the background.
    core_gauge: dashboard::CoreGauge,
    /// Wakes the replay runner (a job started, paused or resumed).
    replays: tokio::sync::Notify,
    /// Recomputes the whole audit log (the binary gives it: the log's
    /// reader depends on the backend).
    verifier: Option<LogVerifier>,
    /// The latest verification run from the console.
    verification: std::sync::Mutex<auditing::Verification>,
}

/// Verifies the whole audit log (blocking: run off the async threads).
pub type LogVerifier = Arc<dyn Fn() -> Result<clearway_core::audit::VerifyReport, String> + Send + Sync + 'static>;

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Console")
    }
}

impl Console {
    pub fn new(svc: Arc<Services>, metrics: MetricsRender) -> Arc<Self> {
        Console::with_verifier(svc, metrics, None)
    }

    /// [`Console::new`], with the auditors' "verify the log now".
    pub fn with_verifier(svc: Arc<Services>, metrics: MetricsRender, verifier: Option<LogVerifier>) -> Arc<Self> {
        Arc::new(Console {
            verifier,
            verification: std::sync::Mutex::default(),
            accounts: Accounts::new(svc.ports.state.clone()),
            svc,
            metrics,
            samples: dashboard::Samples::default(),
            core_gauge: dashboard::CoreGauge::default(),
            replays: tokio::sync::Notify::new(),
        })
    }

    /// Runs the dead-letter replay jobs operators start, until `stop`
    /// (between two transactions, never in one). Every `serve` that
    /// serves the console runs it; jobs are in the state store.
    pub async fn run_replays(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        dead_letters::run_replays(self, stop).await;
    }
}

/// The console's routes, each under `/console`, with their own layers
/// (merge them into the service's router before its service-wide layers).
pub fn router(svc: Arc<Services>, metrics: MetricsRender) -> Router {
    routes(Console::new(svc, metrics))
}

/// [`router`] over a console made with [`Console::new`] (to run its
/// replays too).
pub fn routes(console: Arc<Console>) -> Router {
    Router::new()
        .route("/console", get(dashboard_page))
        .route("/console/", get(|| async { Redirect::to("/console") }))
        .route("/console/live", get(dashboard_live))
        .route("/console/sign-in", get(sign_in_page).post(sign_in))
        .route("/console/sign-out", post(sign_out))
        .route("/console/keepalive", post(keepalive))
        .route("/console/admin", get(admin::page))
        .route("/console/admin/accounts", post(admin::add_account))
        .route("/console/admin/accounts/{name}/disable", post(admin::disable_account))
        .route("/console/admin/partners", post(admin::add_partner))
        .route("/console/admin/partners/{id}/revoke", post(admin::revoke_partner))
        .route("/console/admin/keys", post(admin::add_key))
        .route("/console/admin/keys/{id}/revoke", post(admin::revoke_key))
        .route("/console/search", get(search::page))
        .route("/console/search/claim", post(search::claim))
        .route("/console/transactions/{partner}/{id}", get(transaction::page))
        .route("/console/transactions/{partner}/{id}/reveal", post(transaction::reveal))
        .route("/console/dead-letters", get(dead_letters::page))
        .route("/console/dead-letters/dry-run", post(dead_letters::dry_run))
        .route("/console/dead-letters/replay", post(dead_letters::start))
        .route("/console/destinations", get(destinations::page))
        .route("/console/destinations/{name}/replay", post(destinations::replay))
        .route("/console/replays/{id}", get(dead_letters::job_page))
        .route("/console/replays/{id}/progress", get(dead_letters::progress))
        .route("/console/replays/{id}/pause", post(dead_letters::pause))
        .route("/console/replays/{id}/resume", post(dead_letters::resume))
        .route("/console/reports", get(reports::page))
        .route("/console/reports/{name}", get(reports::page))
        .route("/console/audit", get(auditing::page))
        .route("/console/audit/break-glass/{id}/review", post(auditing::review))
        .route("/console/audit/verify", post(auditing::verify))
        .route("/console/static/{name}", get(assets::serve))
        // Not a fallback: the service's router has its own.
        .route("/console/{*rest}", get(|| async { page_error(StatusCode::NOT_FOUND) }))
        .layer(axum::middleware::from_fn(same_origin))
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(console)
}

// ------------------------------------------------------------ layers --

/// Sets the console's security headers on every answer.
pub async fn security_headers(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let asset = req.uri().path().starts_with("/console/static/");
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    let set = |h: &mut HeaderMap, name: &'static str, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(h, "content-security-policy", CSP);
    set(h, "referrer-policy", "no-referrer");
    set(h, "x-content-type-options", "nosniff");
    set(h, "x-frame-options", "DENY");
    set(h, "cross-origin-opener-policy", "same-origin");
    set(h, "cross-origin-resource-policy", "same-origin");
    set(h, "permissions-policy", "camera=(), microphone=(), geolocation=(), payment=(), usb=(), interest-cohort=()");
    set(h, "vary", "Cookie, Sec-Fetch-Site, Origin");
    if !asset {
        set(h, "cache-control", "no-store");
    }
    res
}

/// Refuses a request that would change something unless it came from a
/// page of this origin: `Sec-Fetch-Site: same-origin`, or, from a browser
/// that does not send that header, an `Origin` naming this host.
pub async fn same_origin(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD) {
        return next.run(req).await;
    }
    if !from_this_origin(req.headers()) {
        metrics::counter!("clearway_console_cross_site_refused_total").increment(1);
        return page_error(StatusCode::FORBIDDEN);
    }
    next.run(req).await
}

fn from_this_origin(h: &HeaderMap) -> bool {
    match h.get("sec-fetch-site") {
        Some(v) => v.as_bytes() == b"same-origin",
        None => {
            let host = h.get(header::HOST).and_then(|v| v.to_str().ok());
            let origin = h.get(header::ORIGIN).and_then(|v| v.to_str().ok());
            match (host, origin) {
                (Some(host), Some(origin)) => origin.split_once("://").is_some_and(|(scheme, rest)| {
                    (scheme == "https" || scheme == "http") && rest.eq_ignore_ascii_case(host)
                }),
                _ => false,
            }
        }
    }
}

// ------------------------------------------------------------ sessions --

/// A signed-in person: their account, session and its public id.
#[derive(Debug)]
pub struct SignedIn {
    account: Account,
    session: Session,
    session_id: String,
}

impl SignedIn {
    fn actor(&self) -> AuditActor {
        person(&self.account.name, self.account.role, &self.session_id)
    }
}

/// A person acting in the console under the session `session_id` (its
/// public id): how every console audit event names its actor.
fn person(name: &str, role: Role, session_id: &str) -> AuditActor {
    AuditActor {
        principal: name.to_string(),
        kind: "user".into(),
        role: role.as_str().into(),
        credential: Some(session_id.to_string()),
        auth: "password".into(),
    }
}

/// Why a request has no session: answered with the sign-in page (a full
/// page load) or an `HX-Redirect` to it (an htmx request).
#[derive(Debug)]
pub struct NotSignedIn {
    htmx: bool,
}

impl IntoResponse for NotSignedIn {
    fn into_response(self) -> Response {
        if self.htmx {
            return (StatusCode::UNAUTHORIZED, [("hx-redirect", "/console/sign-in")]).into_response();
        }
        Redirect::to("/console/sign-in").into_response()
    }
}

fn cookie_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, v)| v)
}

impl FromRequestParts<Arc<Console>> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, console: &Arc<Console>) -> Result<Self, Self::Rejection> {
        let htmx = parts.headers.contains_key("hx-request");
        let Some(token) = cookie_token(&parts.headers) else { return Err(NotSignedIn { htmx }.into_response()) };
        let activity = !parts.headers.contains_key(POLL_HEADER);
        match console.accounts.session(token, now_ms(), activity).await {
            Ok(Some((session, account))) => Ok(SignedIn { account, session, session_id: accounts::session_id(token) }),
            Ok(None) => Err(NotSignedIn { htmx }.into_response()),
            Err(e) => {
                tracing::warn!(error = %clearway_core::error::chain(&e), "console session unavailable");
                Err(page_error(StatusCode::SERVICE_UNAVAILABLE))
            }
        }
    }
}

// ------------------------------------------------------------ audit --

/// Records a console event; `false` when it could not be recorded (a page
/// is then not shown: never an unaudited view).
async fn audit(console: &Console, event: AuditEvent) -> bool {
    let Some(sink) = console.svc.audit.as_ref() else { return true };
    match sink.append(&event).await {
        Ok(_) => true,
        Err(e) => {
            metrics::counter!("clearway_audit_failures_total").increment(1);
            tracing::error!(error = %clearway_core::error::chain(&e), code = event.code, "console audit event not recorded");
            false
        }
    }
}

fn event(code: &str, action: &str, actor: AuditActor, status: StatusCode) -> AuditEvent {
    let mut e = AuditEvent::new("console", code, action, actor);
    e.outcome = if status.is_success() || status.is_redirection() { "success" } else { "failure" }.into();
    e.status = Some(status.as_u16().to_string());
    e
}

/// A page for `who` if their role is among `roles`: the view is audited
/// first; a refusal is audited too and answered `403`.
async fn view(console: &Console, who: &SignedIn, code: &str, roles: &[Role], page: impl Template) -> Response {
    let allowed = roles.contains(&who.account.role);
    let status = if allowed { StatusCode::OK } else { StatusCode::FORBIDDEN };
    if !audit(console, event(code, "R", who.actor(), status)).await {
        return page_error(StatusCode::SERVICE_UNAVAILABLE);
    }
    if !allowed {
        return page_error(StatusCode::FORBIDDEN);
    }
    render(page)
}

fn render(page: impl Template) -> Response {
    match page.render() {
        Ok(html) => (StatusCode::OK, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "console page did not render");
            page_error(StatusCode::INTERNAL_SERVER_ERROR)
        }
    }
}

// ------------------------------------------------------------ pages --

/// What every page's frame shows.
struct Frame {
    title: &'static str,
    who: Option<(String, &'static str)>,
    admin: bool,
    operator: bool,
    auditor: bool,
    /// Milliseconds left before the session ends idle (0: no session).
    idle_left_ms: i64,
    assets: &'static assets::Versions,
}

impl Frame {
    fn new(title: &'static str, who: Option<&SignedIn>) -> Self {
        Frame {
            title,
            who: who.map(|w| (w.account.name.clone(), w.account.role.as_str())),
            admin: who.is_some_and(|w| w.account.role == Role::Admin),
            operator: who.is_some_and(|w| w.account.role == Role::Operator),
            auditor: who.is_some_and(|w| w.account.role == Role::Auditor),
            idle_left_ms: who.map_or(0, |w| (w.session.ends_ms() - now_ms()).max(0)),
            assets: assets::versions(),
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    frame: Frame,
    status: u16,
    message: &'static str,
}

/// A short page for an error status (no detail that could hold PHI).
/// A partner's state as the screens name it.
fn partner_state(p: &clearway_core::records::PartnerRecord) -> &'static str {
    if p.shredded_at.is_some() {
        "shredded"
    } else if p.revoked {
        "revoked"
    } else {
        "active"
    }
}

fn page_error(status: StatusCode) -> Response {
    let message = match status {
        StatusCode::FORBIDDEN => "Your role does not allow this, or the request did not come from a console page.",
        StatusCode::NOT_FOUND => "There is no such page.",
        StatusCode::SERVICE_UNAVAILABLE => "The service cannot answer this now. Try again shortly.",
        StatusCode::TOO_MANY_REQUESTS => "Too many attempts. Wait a moment and try again.",
        _ => "Something went wrong.",
    };
    let page = ErrorPage { frame: Frame::new("Error", None), status: status.as_u16(), message };
    let mut res = render(page);
    *res.status_mut() = status;
    res
}

#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignInPage {
    frame: Frame,
    failed: bool,
}

async fn sign_in_page() -> Response {
    render(SignInPage { frame: Frame::new("Sign in", None), failed: false })
}

#[derive(serde::Deserialize)]
struct SignInForm {
    name: String,
    password: String,
}

/// `POST /console/sign-in`: a new session for the right name and
/// password; every attempt is an audit event, failed ones past a
/// service-wide rate are refused (`429`).
async fn sign_in(State(console): State<Arc<Console>>, headers: HeaderMap, Form(form): Form<SignInForm>) -> Response {
    let name = form.name.trim().to_ascii_lowercase();
    let account = match console.accounts.verify(&name, &form.password).await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %clearway_core::error::chain(&e), "console sign-in unavailable");
            return page_error(StatusCode::SERVICE_UNAVAILABLE);
        }
    };
    let Some(account) = account else {
        // The name is recorded only when it is an account's (a password
        // typed into the name field must not reach the log).
        let known = matches!(console.accounts.get(&name).await, Ok(Some(_)));
        let actor = AuditActor {
            principal: "unauthenticated".into(),
            kind: "unknown".into(),
            role: "none".into(),
            credential: None,
            auth: "password".into(),
        };
        let mut e = event("console.sign_in", "E", actor, StatusCode::UNAUTHORIZED);
        if known {
            e.entity.push(AuditEntity { kind: "account".into(), id: name });
        }
        audit(&console, e).await;
        metrics::counter!("clearway_console_sign_ins_total", "outcome" => "failed").increment(1);
        if let Err(wait) = console.svc.limits.take_failed_auth() {
            let mut res = page_error(StatusCode::TOO_MANY_REQUESTS);
            if let Ok(v) = HeaderValue::from_str(&wait.as_secs_f64().ceil().max(1.0).to_string()) {
                res.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return res;
        }
        let mut res = render(SignInPage { frame: Frame::new("Sign in", None), failed: true });
        *res.status_mut() = StatusCode::UNAUTHORIZED;
        return res;
    };
    // A fresh session every time (an old one is ended).
    if let Some(old) = cookie_token(&headers) {
        let _ = console.accounts.close_session(old).await;
    }
    let token = match console.accounts.open_session(&account.name, now_ms()).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %clearway_core::error::chain(&e), "console session not opened");
            return page_error(StatusCode::SERVICE_UNAVAILABLE);
        }
    };
    let actor = person(&account.name, account.role, &accounts::session_id(token.expose()));
    if !audit(&console, event("console.sign_in", "E", actor, StatusCode::SEE_OTHER)).await {
        let _ = console.accounts.close_session(token.expose()).await;
        return page_error(StatusCode::SERVICE_UNAVAILABLE);
    }
    metrics::counter!("clearway_console_sign_ins_total", "outcome" => "signed_in").increment(1);
    let cookie = format!("{SESSION_COOKIE}={}; Path=/; Secure; HttpOnly; SameSite=Strict", token.expose());
    let mut res = Redirect::to("/console").into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

/// `POST /console/sign-out`: ends the session and clears the cookie.
async fn sign_out(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    if let Some(token) = cookie_token(&headers)
        && let Ok(Some((_, account))) = console.accounts.session(token, now_ms(), false).await
    {
        let actor = person(&account.name, account.role, &accounts::session_id(token));
        audit(&console, event("console.sign_out", "E", actor, StatusCode::SEE_OTHER)).await;
    }
    if let Some(token) = cookie_token(&headers)
        && let Err(e) = console.accounts.close_session(token).await
    {
        tracing::warn!(error = %clearway_core::error::chain(&e), "console session not closed");
        return page_error(StatusCode::SERVICE_UNAVAILABLE);
    }
    let mut res = Redirect::to("/console/sign-in").into_response();
    res.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("__Host-clearway_session=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    res
}

/// `POST /console/keepalive`: the person is still there (the idle
/// warning's button); `204`.
async fn keepalive(_: SignedIn) -> StatusCode {
    StatusCode::NO_CONTENT
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage {
    frame: Frame,
    d: dashboard::Dashboard,
}

#[derive(Template)]
#[template(path = "dashboard_live.html")]
struct DashboardLive {
    d: dashboard::Dashboard,
}

const DASHBOARD_ROLES: &[Role] = &[Role::Operator, Role::Auditor, Role::Admin];

/// `GET /console`: the dashboard.
async fn dashboard_page(State(console): State<Arc<Console>>, who: SignedIn) -> Response {
    let d = dashboard::gather(&console, who.account.role == Role::Operator).await;
    let page = DashboardPage { frame: Frame::new("Dashboard", Some(&who)), d };
    view(&console, &who, "console.dashboard", DASHBOARD_ROLES, page).await
}

/// `GET /console/live`: the dashboard's figures, refreshed every few
/// seconds by the page (not audited: no PHI, and not a person's request).
async fn dashboard_live(State(console): State<Arc<Console>>, who: SignedIn) -> Response {
    if !DASHBOARD_ROLES.contains(&who.account.role) {
        return page_error(StatusCode::FORBIDDEN);
    }
    render(DashboardLive { d: dashboard::gather(&console, who.account.role == Role::Operator).await })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_origin_is_what_the_browser_says() {
        let h = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, HeaderValue::from_static(v));
            }
            h
        };
        assert!(from_this_origin(&h(&[("sec-fetch-site", "same-origin")])));
        assert!(!from_this_origin(&h(&[("sec-fetch-site", "cross-site"), ("origin", "http://a:1"), ("host", "a:1")])));
        assert!(!from_this_origin(&h(&[("sec-fetch-site", "same-site")])));
        assert!(!from_this_origin(&h(&[("sec-fetch-site", "none")])));
        assert!(from_this_origin(&h(&[("origin", "https://console.example:8443"), ("host", "console.example:8443")])));
        assert!(!from_this_origin(&h(&[("origin", "https://evil.example"), ("host", "console.example")])));
        assert!(!from_this_origin(&h(&[("origin", "null"), ("host", "console.example")])));
        assert!(!from_this_origin(&h(&[("host", "console.example")])), "neither header: refused");
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; __Host-clearway_session=tok; b=2"));
        assert_eq!(cookie_token(&h), Some("tok"));
        h.insert(header::COOKIE, HeaderValue::from_static("clearway_session=tok"));
        assert_eq!(cookie_token(&h), None, "only the __Host- cookie");
    }
}
