//! The HTTP API (axum): intake, reading results, the acknowledgement feed,
//! dead-letter operations, health and metrics. Every route is described in
//! `/openapi.json`.

use crate::Services;
use crate::accept::{self, Channel, DuplicateReason, Outcome, Refusal, Submission};
use crate::authz;
use crate::lookup::patient_tokens;
use crate::problem::Problem;
use axum::body::Body;
use axum::extract::{FromRef, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clearway_core::access::{Principal, Role};
use clearway_core::feed;
use clearway_core::ports::Table;
use clearway_core::records::now_ms;
use clearway_core::records::{AckRecord, DeadLetter, FeedEntry, PartnerRecord, TransactionRecord};
use clearway_core::systems;
use clearway_core::{ErrorKind, PartnerId, TransactionId};
use clearway_fastpath::caqh;
use clearway_fastpath::pharmacy::PharmacyRecord;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tracing::Instrument;

/// Renders the Prometheus metrics text (supplied by the binary, which owns
/// the recorder).
pub type MetricsRender = Arc<dyn Fn() -> String + Send + Sync>;

/// Router state.
#[derive(Clone)]
#[allow(missing_debug_implementations)]
pub struct AppState {
    pub svc: Arc<Services>,
    pub metrics: MetricsRender,
}

impl FromRef<AppState> for Arc<Services> {
    fn from_ref(s: &AppState) -> Self {
        s.svc.clone()
    }
}

/// Whether the connection's client certificate fits the partner an API key
/// named: a partner bound to certificates must present one of them, and a
/// certificate bound to one partner never goes with another's key. (Every
/// credential check on HTTPS goes through here: `Authed` and CORE.)
pub fn certificate_allows(p: &PartnerRecord, peer: Option<&crate::tls::PeerCertificate>) -> bool {
    let presented = peer.and_then(|c| c.fingerprint.as_deref());
    let bound_elsewhere = peer.and_then(|c| c.partner.as_ref()).is_some_and(|other| *other != p.id);
    let needed = !p.cert_sha256.is_empty();
    let matches = presented.is_some_and(|fp| p.cert_sha256.iter().any(|f| f == fp));
    let ok = !bound_elsewhere && (!needed || matches);
    if !ok {
        metrics::counter!("clearway_tls_certificate_mismatches_total", "channel" => "http").increment(1);
    }
    ok
}

/// Whether the connection's client certificate fits the principal an API
/// key named: a partner's key goes through [`certificate_allows`]; a
/// person's key never rides a certificate bound to a partner.
fn principal_allows(p: &Principal, peer: Option<&crate::tls::PeerCertificate>) -> bool {
    match &p.partner {
        Some(partner) => certificate_allows(partner, peer),
        None => peer.and_then(|c| c.partner.as_ref()).is_none(),
    }
}

/// The authenticated caller of a request, as the access layer
/// ([`authorize`]) admitted it: who, the purpose of use it acts under, and
/// the break-glass elevation in force for it, if any.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Arc<Principal>,
    pub purpose: &'static str,
    pub break_glass: Option<clearway_core::access::BreakGlass>,
    slot: AuditSlot,
}

impl Caller {
    /// Names the tenant (and patients, as index tokens) a request touched
    /// when it is not the caller's own: its audit event says so.
    pub fn concerns(&self, tenant: &PartnerId, patients: &[String]) {
        if let Ok(mut note) = self.slot.0.lock() {
            note.tenant = Some(tenant.to_string());
            note.patients.extend(patients.iter().cloned());
        }
    }

    /// Whether it may read PHI bodies of any tenant: an operator with a
    /// `phi_view` grant, or under break-glass.
    pub fn may_view_phi(&self) -> bool {
        self.principal.role == Role::Operator && (self.principal.phi_view || self.break_glass.is_some())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Caller>().cloned().ok_or_else(Problem::unauthorized)
    }
}

/// The partner (tenant) of a submitter's request; any other role is
/// refused (`403`).
#[derive(Debug)]
pub struct Authed(pub Arc<PartnerRecord>);

impl<S: Send + Sync> FromRequestParts<S> for Authed {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        match (&caller.principal.partner, caller.principal.role) {
            (Some(p), Role::Submitter) => Ok(Authed(p.clone())),
            _ => Err(Problem::forbidden()),
        }
    }
}

/// What a request's audit event records beyond the request itself: the
/// access layer and handlers fill it in, the audit layer reads it.
#[derive(Debug, Clone, Default)]
pub struct AuditSlot(Arc<std::sync::Mutex<AuditNote>>);

#[derive(Debug, Default)]
struct AuditNote {
    who: Option<AuditWho>,
    purpose: Option<String>,
    break_glass: Option<String>,
    tenant: Option<String>,
    patients: Vec<String>,
    /// More entities than the path names (a key an admin issued).
    entities: Vec<clearway_core::audit::AuditEntity>,
    /// The public id of a credential that did not authenticate (a CORE
    /// envelope's password; bearer keys are read by the audit layer).
    failed_credential: Option<String>,
    /// The request as the audit layer saw it, when its sink takes events
    /// staged with an intake (so a handler can build the event).
    request: Option<AuditRequest>,
    /// The status of the event staged in the intake's commit, once that
    /// commit is durable: the audit layer then has nothing to append.
    staged: Option<u16>,
}

/// What the audit layer reads from a request before it runs.
#[derive(Debug, Clone)]
struct AuditRequest {
    method: axum::http::Method,
    route: String,
    path: String,
    source: Option<String>,
    request_id: Option<String>,
}

#[derive(Debug, Clone)]
struct AuditWho {
    principal: String,
    role: Role,
    tenant: Option<String>,
    credential: String,
    mtls: bool,
}

impl AuditSlot {
    fn note(&self, f: impl FnOnce(&mut AuditNote)) {
        if let Ok(mut note) = self.0.lock() {
            f(&mut note);
        }
    }

    /// The request's event as it will read if the answer is `status`, with
    /// `entity` named, for the handler to stage in the intake's commit
    /// ([`clearway_core::audit::staged_write`]); `None` when the audit
    /// layer appends instead (its sink takes no staged events, or no one
    /// authenticated).
    fn staged_event(
        &self,
        status: StatusCode,
        entity: clearway_core::audit::AuditEntity,
    ) -> Option<clearway_core::audit::AuditEvent> {
        let note = self.0.lock().ok()?;
        let request = note.request.as_ref()?;
        let actor = actor_of(note.who.as_ref()?);
        let mut event = audit_event(request, &note, status, actor);
        event.entity.push(entity);
        Some(event)
    }

    /// Says the event staged for `status` is durable with the intake.
    fn mark_staged(&self, status: StatusCode) {
        self.note(|n| n.staged = Some(status.as_u16()));
    }
}

/// The actor of an authenticated request.
fn actor_of(who: &AuditWho) -> clearway_core::audit::AuditActor {
    clearway_core::audit::AuditActor {
        principal: who.principal.clone(),
        kind: if who.tenant.is_some() || who.role == Role::Submitter { "partner" } else { "user" }.into(),
        role: who.role.as_str().into(),
        credential: Some(who.credential.clone()),
        auth: if who.mtls { "mtls" } else { "api_key" }.into(),
    }
}

/// A request's audit event: what the layer read from the request, what the
/// access layer and the handler noted, the answer's status.
fn audit_event(
    request: &AuditRequest,
    note: &AuditNote,
    status: StatusCode,
    actor: clearway_core::audit::AuditActor,
) -> clearway_core::audit::AuditEvent {
    let route = &request.route;
    let action = action_of(&request.method);
    let mut event =
        clearway_core::audit::AuditEvent::new("rest", &format!("{} {route}", request.method), action, actor);
    event.outcome = if status.is_success() || status.is_redirection() { "success" } else { "failure" }.into();
    event.status = Some(status.as_u16().to_string());
    event.source = request.source.clone();
    event.purpose = note.purpose.clone();
    event.break_glass = note.break_glass.clone();
    event.tenant = note.tenant.clone().or_else(|| note.who.as_ref().and_then(|w| w.tenant.clone()));
    event.entity = path_entities(route, &request.path);
    event.entity.extend(note.entities.iter().cloned());
    event.patients = note.patients.clone();
    event.patients.sort();
    event.patients.dedup();
    event.request_id = request.request_id.clone();
    event
}

/// The audit action of an HTTP method.
fn action_of(method: &axum::http::Method) -> &'static str {
    match *method {
        axum::http::Method::GET | axum::http::Method::HEAD => "R",
        axum::http::Method::PUT | axum::http::Method::PATCH => "U",
        axum::http::Method::DELETE => "D",
        _ => "C",
    }
}

/// The bearer token of a request, if it has a plausible one.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION).and_then(bearer_value)
}

/// The token of an `Authorization: Bearer …` value, if plausible.
fn bearer_value(v: &HeaderValue) -> Option<&str> {
    v.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).map(str::trim).filter(|t| !t.is_empty() && t.len() <= 200)
}

/// The access layer: finds the route's rule ([`crate::authz::RULES`];
/// none: refused), authenticates the caller, checks its role and purpose
/// of use, finds its break-glass elevation, takes a token from its bucket
/// for the route's class, and hands the handler a [`Caller`].
async fn authorize(
    State(svc): State<Arc<Services>>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let route = req.extensions().get::<axum::extract::MatchedPath>().map(|m| m.as_str().to_string());
    let Some(rule) = route.as_deref().and_then(|r| authz::rule(req.method().as_str(), r)) else {
        // A method the route does not have: the router answers 405. A
        // route without any rule: refused.
        if route.as_deref().is_some_and(|r| authz::RULES.iter().any(|x| x.route == r)) {
            return next.run(req).await;
        }
        return Problem::forbidden().into_response();
    };
    match rule.auth {
        authz::Auth::Public | authz::Auth::Envelope => return next.run(req).await,
        authz::Auth::Bearer => {}
    }
    let Some(token) = bearer(req.headers()) else { return Problem::unauthorized().into_response() };
    let principal = match svc.partners.authenticate(token).await {
        Ok(Some(p)) => p,
        Ok(None) => {
            // Failed attempts are audit events; past a service-wide rate
            // they are refused without one (the log cannot be flooded).
            if let Err(wait) = svc.limits.take_failed_auth() {
                metrics::counter!("clearway_http_rate_limited_total", "class" => "failed_auth").increment(1);
                return rate_limited(wait);
            }
            return Problem::unauthorized().into_response();
        }
        Err(e) => {
            tracing::warn!(error = %clearway_core::error::chain(&e), "authentication unavailable");
            return Problem::unavailable(5).into_response();
        }
    };
    let peer = req.extensions().get::<crate::tls::PeerCertificate>();
    if !principal_allows(&principal, peer) {
        return Problem::unauthorized().into_response();
    }
    let mtls = peer.is_some_and(|c| c.fingerprint.is_some());
    let slot = req.extensions().get::<AuditSlot>().cloned().unwrap_or_default();
    slot.note(|n| {
        n.who = Some(AuditWho {
            principal: principal.id.clone(),
            role: principal.role,
            tenant: principal.tenant().map(|t| t.to_string()),
            credential: principal.credential.clone(),
            mtls,
        });
    });
    // Found first: every request under an elevation is flagged, refused
    // ones too.
    let break_glass = if principal.role == Role::Operator && principal.break_glass {
        match clearway_core::access::active_break_glass(svc.ports.state.as_ref(), &principal.credential, now_ms()).await
        {
            Ok(s) => s,
            Err(e) => return port_problem(&e).into_response(),
        }
    } else {
        None
    };
    if let Some(s) = &break_glass {
        slot.note(|n| n.break_glass = Some(s.id.clone()));
    }
    let Some(grant) = rule.grant(principal.role) else { return Problem::forbidden().into_response() };
    let named = req.headers().get("x-purpose-of-use").map(|v| v.to_str().unwrap_or("?"));
    let purpose = match authz::purpose(grant, named) {
        Ok(p) => p,
        Err(authz::PurposeRefusal::Unknown) => {
            return Problem::new(
                StatusCode::BAD_REQUEST,
                "unknown-purpose-of-use",
                "Unknown purpose of use",
                "X-Purpose-Of-Use is one HL7 v3 PurposeOfUse code (TREAT, HPAYMT, HOPERAT, HCOMPL, ...)",
            )
            .into_response();
        }
        Err(authz::PurposeRefusal::NotAllowed(code)) => {
            slot.note(|n| n.purpose = Some(code.into()));
            return Problem::new(
                StatusCode::FORBIDDEN,
                "purpose-not-allowed",
                "Purpose of use not allowed",
                format!("{code} is not a purpose this role may act under on this route"),
            )
            .into_response();
        }
    };
    slot.note(|n| n.purpose = Some(purpose.into()));
    // The emergency purposes mean an elevation in force (or the request
    // that starts one).
    if matches!(purpose, "BTG" | "ETREAT") && break_glass.is_none() && rule.route != "/v1/break-glass" {
        return Problem::new(
            StatusCode::FORBIDDEN,
            "purpose-not-allowed",
            "Purpose of use not allowed",
            format!("{purpose} is for requests under break-glass"),
        )
        .into_response();
    }
    if let Err(wait) = svc.limits.take(&principal.id, rule.class) {
        metrics::counter!(
            "clearway_http_rate_limited_total",
            "class" => rule.class.as_str(),
            // A submitter's partner id; staff are counted by role (their
            // names stay off /metrics).
            "partner" => principal.tenant().map_or_else(|| principal.role.as_str().to_string(), PartnerId::to_string)
        )
        .increment(1);
        return rate_limited(wait);
    }
    req.extensions_mut().insert(Caller { principal, purpose, break_glass, slot });
    next.run(req).await
}

/// `429` with `Retry-After` (whole seconds, at least one).
fn rate_limited(wait: Duration) -> Response {
    Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate-limited",
        "Too many requests",
        "over the request rate for this kind of route",
    )
    .retry_after(wait.as_secs_f64().ceil().max(1.0) as u64)
    .into_response()
}

/// The routes of the intake and read API.
pub fn router(svc: Arc<Services>, metrics: MetricsRender) -> Router {
    Router::new()
        .route("/v1/transactions", post(submit))
        .route("/v1/transactions/{id}", get(transaction))
        .route("/v1/transactions/{id}/acks", get(transaction_acks))
        .route("/v1/transactions/{id}/acks/{ack_id}", get(transaction_ack))
        .route("/v1/acks", get(feed))
        .route("/core/soap", post(core_soap))
        .route("/core/mime", post(core_mime))
        .route("/v1/eligibility", post(eligibility))
        .route("/v1/claim-status", post(claim_status))
        .route("/v1/pharmacy", post(pharmacy))
        .route("/v1/webhook", get(webhook_get).put(webhook_put).delete(webhook_delete))
        .route("/v1/dead-letters", get(dead_letters))
        .route("/v1/payer-files", post(payer_file))
        .route("/v1/payer-files/attention", get(attention))
        .route("/v1/batches", get(batches))
        .route("/v1/dead-letters/{id}/replay", post(replay))
        .route("/v1/destinations", get(destinations))
        .route("/v1/destinations/{name}/dead-letters", get(destination_dead_letters))
        .route("/v1/destinations/{name}/replay", post(destination_replay))
        .route("/v1/transactions/{id}/payload", get(transaction_payload))
        .route("/v1/break-glass", post(break_glass_start).delete(break_glass_end))
        .route("/v1/audit/checkpoint", get(audit_checkpoint))
        .route("/v1/audit/consistency", get(audit_consistency))
        .route("/v1/reports/{name}", get(report))
        .route("/v1/audit/events", get(audit_events))
        .route("/v1/audit/disclosures", post(audit_disclosures))
        .route("/v1/audit/break-glass", get(break_glass_queue))
        .route("/v1/audit/break-glass/{id}/review", post(break_glass_review))
        .route("/v1/admin/keys", get(admin_keys).post(admin_key_add))
        .route("/v1/admin/keys/{id}", axum::routing::delete(admin_key_revoke))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .route(
            "/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], crate::openapi::DOCUMENT) }),
        )
        .route_layer(axum::middleware::from_fn_with_state(svc.clone(), authorize))
        .route_layer(axum::middleware::from_fn_with_state(svc.clone(), audit_request))
        .fallback(|| async { Problem::not_found() })
        .with_state(AppState { svc, metrics })
}

/// Records one audit event for every authenticated request (and every
/// refused credential), durably, before its answer goes out. If the event
/// cannot be recorded, a read is answered `503` instead (never an
/// unaudited read); a write's answer stands (its effect is already
/// durable) and the failure is counted (`clearway_audit_failures_total`).
/// An event under break-glass is anchored at once by a checkpoint.
async fn audit_request(
    State(svc): State<Arc<Services>>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(sink) = svc.audit.clone() else { return next.run(req).await };
    let slot = AuditSlot::default();
    req.extensions_mut().insert(slot.clone());
    let request = AuditRequest {
        method: req.method().clone(),
        route: req.extensions().get::<axum::extract::MatchedPath>().map(|m| m.as_str().to_string()).unwrap_or_default(),
        path: req.uri().path().to_string(),
        source: req
            .extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip().to_string()),
        request_id: req
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic()))
            .map(str::to_string),
    };
    if sink.takes_staged() {
        slot.note(|n| n.request = Some(request.clone()));
    }
    let authorization = req.headers().get(header::AUTHORIZATION).cloned();
    let response = next.run(req).await;
    let note = std::mem::take(&mut *slot.0.lock().unwrap_or_else(|p| p.into_inner()));
    let status = response.status();
    if note.staged == Some(status.as_u16()) {
        // Durable with the intake, in the same commit.
        if note.break_glass.is_some()
            && let Err(e) = sink.checkpoint().await
        {
            metrics::counter!("clearway_audit_failures_total").increment(1);
            tracing::error!(error = %clearway_core::error::chain(&e), route = request.route, "audit checkpoint failed");
        }
        return response;
    }
    let actor = match &note.who {
        Some(who) => actor_of(who),
        // A credential that did not authenticate: recorded by its id, so
        // repeated failures can be seen (the key itself never is).
        None if status == StatusCode::UNAUTHORIZED && (authorization.is_some() || note.failed_credential.is_some()) => {
            clearway_core::audit::AuditActor {
                principal: "unauthenticated".into(),
                kind: "unknown".into(),
                role: "none".into(),
                credential: note
                    .failed_credential
                    .clone()
                    .or_else(|| authorization.as_ref().and_then(bearer_value).map(clearway_core::partners::key_id)),
                auth: "api_key".into(),
            }
        }
        None => return response,
    };
    let event = audit_event(&request, &note, status, actor);
    let action = action_of(&request.method);
    let route = request.route;
    let anchored = event.break_glass.is_some();
    let recorded = match sink.append(&event).await {
        Ok(_) if anchored => sink.checkpoint().await.map(|_| ()),
        Ok(_) => Ok(()),
        Err(e) => Err(e),
    };
    match recorded {
        Ok(()) => response,
        Err(e) => {
            metrics::counter!("clearway_audit_failures_total").increment(1);
            tracing::error!(error = %clearway_core::error::chain(&e), route, "audit event not recorded");
            if action == "R" { Problem::unavailable(5).into_response() } else { response }
        }
    }
}

/// The entities a request names in its path: each `{param}` of the route
/// template, typed by the collection before it (`transactions/{id}` → a
/// transaction). Ids only, at most 64 characters each.
fn path_entities(route: &str, path: &str) -> Vec<clearway_core::audit::AuditEntity> {
    let mut out = Vec::new();
    let mut collection = "";
    for (t, p) in route.split('/').zip(path.split('/')) {
        if t.starts_with('{') {
            let kind = match collection {
                "transactions" => "transaction",
                "acks" => "ack",
                "dead-letters" => "dead_letter",
                "destinations" => "destination",
                other => other,
            };
            out.push(clearway_core::audit::AuditEntity { kind: kind.into(), id: p.chars().take(64).collect() });
        } else {
            collection = t;
        }
    }
    out
}

/// `GET /v1/audit/checkpoint`: the audit log's newest signed checkpoint
/// (C2SP signed note), for partners and auditors to keep copies of.
async fn audit_checkpoint(State(st): State<AppState>, _: Caller) -> Response {
    let Some(sink) = st.svc.audit.clone() else { return Problem::not_found().into_response() };
    match sink.latest_checkpoint().await {
        Ok(Some(note)) => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], note).into_response(),
        Ok(None) => Problem::not_found().into_response(),
        Err(e) => port_problem(&e).into_response(),
    }
}

/// `GET /v1/transactions/{id}/payload`: the payload as it was received
/// (PHI). A submitter reads its own; an operator needs a `phi_view` grant
/// or break-glass, and names the tenant. Audited before the first byte.
async fn transaction_payload(
    State(svc): State<Arc<Services>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<TenantQuery>,
) -> Result<Response, Problem> {
    if caller.principal.role != Role::Submitter && !caller.may_view_phi() {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "phi-view-needed",
            "PHI view needed",
            "payloads are for credentials with a phi_view grant, or under break-glass",
        ));
    }
    if caller.principal.role != Role::Submitter {
        audit_kept(&svc)?;
    }
    let partner = tenant_of(&caller, &q)?;
    let r = load_record(&svc, &partner, &id).await?;
    caller.concerns(&partner, &patient_tokens(&svc, &r));
    match crate::lookup::payload(&svc, &r).await {
        Ok(Some(body)) => Ok(([(header::CONTENT_TYPE, r.content_type.clone())], body).into_response()),
        // Erased (shredded) or never readable: gone, as far as anyone can tell.
        Ok(None) => Err(Problem::new(
            StatusCode::GONE,
            "payload-unavailable",
            "Payload unavailable",
            "the payload cannot be opened (its partner's keys were destroyed)",
        )),
        Err(e) => Err(port_problem(&e)),
    }
}

#[derive(Debug, Deserialize)]
struct BreakGlassRequest {
    reason: String,
    justification: String,
    minutes: Option<u32>,
}

/// `POST /v1/break-glass`: an eligible operator's elevation for PHI reads
/// (at most 60 minutes), justified; its start is an audit event anchored at
/// once by a checkpoint, like every request under it.
async fn break_glass_start(
    State(svc): State<Arc<Services>>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<Response, Problem> {
    let invalid =
        |detail: String| Problem::new(StatusCode::BAD_REQUEST, "invalid-input", "Invalid break-glass", detail);
    let req: BreakGlassRequest = serde_json::from_slice(&body)
        .map_err(|_| invalid("a JSON object with reason, justification and minutes".into()))?;
    audit_kept(&svc)?;
    if caller.break_glass.is_some() {
        return Err(Problem::new(StatusCode::CONFLICT, "break-glass-in-force", "Already in force", "end it first"));
    }
    let minutes = req.minutes.unwrap_or(clearway_core::access::BREAK_GLASS_MAX_MINUTES);
    let session =
        clearway_core::access::break_glass(&caller.principal, &req.reason, &req.justification, minutes, now_ms())
            .map_err(|r| match r {
                clearway_core::access::BreakGlassRefusal::NotEligible => Problem::new(
                    StatusCode::FORBIDDEN,
                    "not-break-glass-eligible",
                    "Not eligible for break-glass",
                    "this credential may not break the glass",
                ),
                other => invalid(other.detail()),
            })?;
    match clearway_core::access::store_break_glass(svc.ports.state.as_ref(), &session).await {
        Ok(()) => {}
        // Another request of this credential started one meanwhile.
        Err(e) if e.kind() == ErrorKind::PreconditionFailed || e.kind() == ErrorKind::AlreadyExists => {
            return Err(Problem::new(StatusCode::CONFLICT, "break-glass-in-force", "Already in force", "end it first"));
        }
        Err(e) => return Err(port_problem(&e)),
    }
    caller.slot.note(|n| n.break_glass = Some(session.id.clone()));
    metrics::counter!("clearway_break_glass_total").increment(1);
    tracing::warn!(session = %session.id, principal = %session.principal, reason = %session.reason, "break-glass started");
    Ok((StatusCode::CREATED, Json(break_glass_json(&session))).into_response())
}

/// `DELETE /v1/break-glass`: ends the caller's elevation early.
async fn break_glass_end(State(svc): State<Arc<Services>>, caller: Caller) -> Result<Response, Problem> {
    match clearway_core::access::end_break_glass(svc.ports.state.as_ref(), &caller.principal.credential, now_ms())
        .await
        .map_err(|e| port_problem(&e))?
    {
        Some(s) => Ok(Json(break_glass_json(&s)).into_response()),
        None => Err(Problem::not_found()),
    }
}

/// Unix milliseconds as events record time (to compare with `recorded`).
fn ms_instant(ms: i64) -> Option<String> {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()?;
    clearway_core::audit::instant(&clearway_core::records::timestamp(t))
}

fn break_glass_json(s: &clearway_core::access::BreakGlass) -> Value {
    let at = |ms: i64| {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
            .ok()
            .map(clearway_core::records::timestamp)
    };
    json!({
        "id": s.id,
        "principal": s.principal,
        "credential": s.credential,
        "reason": s.reason,
        "justification": s.justification,
        "startedAt": at(s.started_at_ms),
        "expiresAt": at(s.expires_at_ms),
        "endedAt": s.ended_at_ms.and_then(at),
        "review": s.review.as_ref().map(|r| json!({ "by": r.by, "at": at(r.at_ms), "finding": r.finding })),
    })
}

#[derive(Debug, Deserialize)]
struct QueueQuery {
    reviewed: Option<bool>,
    limit: Option<usize>,
}

/// `GET /v1/audit/break-glass`: elevations for auditors to review (by
/// default the ones not yet reviewed), oldest first, each with the number
/// of audit events recorded under it.
async fn break_glass_queue(
    State(svc): State<Arc<Services>>,
    _: Caller,
    Query(q): Query<QueueQuery>,
) -> Result<Json<Value>, Problem> {
    let unreviewed = !q.reviewed.unwrap_or(false);
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let list = clearway_core::access::list_break_glass(svc.ports.state.as_ref(), unreviewed, limit)
        .await
        .map_err(|e| port_problem(&e))?;
    // The events under each, counted in one bounded pass over the log from
    // around the oldest session's start.
    let mut counts: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    let mut complete = true;
    if let (Some(sink), false) = (&svc.audit, list.is_empty()) {
        let filter = clearway_core::audit::AuditQuery {
            break_glass: Some("any".into()),
            from: list.iter().map(|s| s.started_at_ms).min().and_then(ms_instant),
            ..Default::default()
        };
        let page = sink.search(&filter, clearway_core::audit::MAX_SCAN).await.map_err(|e| port_problem(&e))?;
        complete = page.next.is_none();
        for (_, e) in page.events {
            if let Some(id) = e.break_glass {
                *counts.entry(id).or_default() += 1;
            }
        }
    }
    let items: Vec<Value> = list
        .iter()
        .map(|s| {
            let mut v = break_glass_json(s);
            v["events"] = json!(counts.get(&s.id).copied().unwrap_or(0));
            v
        })
        .collect();
    Ok(Json(json!({ "sessions": items, "eventCountsComplete": complete })))
}

#[derive(Debug, Deserialize)]
struct ReviewRequest {
    finding: String,
}

/// `POST /v1/audit/break-glass/{id}/review`: an auditor's finding
/// (`appropriate` or `inappropriate`) on an elevation that has ended.
async fn break_glass_review(
    State(svc): State<Arc<Services>>,
    caller: Caller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, Problem> {
    let finding = serde_json::from_slice::<ReviewRequest>(&body)
        .ok()
        .map(|r| r.finding)
        .filter(|f| f == "appropriate" || f == "inappropriate")
        .ok_or_else(|| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid-input",
                "Invalid review",
                "finding: appropriate or inappropriate",
            )
        })?;
    let review = clearway_core::access::Review { by: caller.principal.id.clone(), at_ms: now_ms(), finding };
    match clearway_core::access::review_break_glass(svc.ports.state.as_ref(), &id, review, now_ms()).await {
        Ok(Some(s)) => Ok(Json(break_glass_json(&s)).into_response()),
        Ok(None) => Err(Problem::not_found()),
        Err(e) if e.kind() == ErrorKind::PreconditionFailed => Err(Problem::new(
            StatusCode::CONFLICT,
            "not-reviewable",
            "Not reviewable",
            "an elevation is reviewed once, after it has ended",
        )),
        Err(e) if e.kind() == ErrorKind::InvalidInput => Err(Problem::new(
            StatusCode::FORBIDDEN,
            "own-elevation",
            "Own elevation",
            "nobody reviews their own elevation",
        )),
        Err(e) => Err(port_problem(&e)),
    }
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
    actor: Option<String>,
    tenant: Option<String>,
    patient: Option<String>,
    purpose: Option<String>,
    #[serde(rename = "breakGlass")]
    break_glass: Option<String>,
    from: Option<String>,
    to: Option<String>,
    after: Option<u64>,
    limit: Option<usize>,
    /// The size of the checkpoint to prove inclusion against.
    checkpoint: Option<u64>,
}

/// Staff PHI reads and break-glass exist only with an audit log to record
/// them (not on a backend without one, nor with request auditing off).
fn audit_kept(svc: &Services) -> Result<(), Problem> {
    if svc.audit.is_some() {
        return Ok(());
    }
    Err(Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "audit-log-unavailable",
        "Audit log unavailable",
        "this needs the audit log, which this service does not keep",
    ))
}

/// A `from`/`to` bound of an audit query, as events record time.
fn instant(v: &Option<String>) -> Result<Option<String>, Problem> {
    match v.as_deref() {
        Some(s) => clearway_core::audit::instant(s).map(Some).ok_or_else(|| {
            Problem::new(StatusCode::BAD_REQUEST, "invalid-input", "Invalid time", "from and to are RFC 3339")
        }),
        None => Ok(None),
    }
}

fn audit_sink(svc: &Services) -> Result<Arc<dyn clearway_core::audit::AuditSink>, Problem> {
    svc.audit.clone().ok_or_else(Problem::not_found)
}

/// `GET /v1/audit/events`: events by actor, tenant, patient token, purpose,
/// break-glass session and time, oldest first, paged by `after` (an
/// index); with `checkpoint=<size>`, each with its inclusion proof against
/// that checkpoint. A submitter sees the events about its own tenant: who
/// accessed its data.
async fn audit_events(
    State(svc): State<Arc<Services>>,
    caller: Caller,
    Query(q): Query<EventsQuery>,
) -> Result<Json<Value>, Problem> {
    let sink = audit_sink(&svc)?;
    let tenant = match caller.principal.tenant() {
        Some(own) => Some(own.to_string()),
        None => q.tenant.clone(),
    };
    let filter = clearway_core::audit::AuditQuery {
        actor: q.actor.clone(),
        tenant,
        patient_token: q.patient.clone(),
        purpose: q.purpose.clone(),
        break_glass: q.break_glass.clone(),
        from: instant(&q.from)?,
        to: instant(&q.to)?,
        after: q.after,
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let page = sink.search(&filter, limit).await.map_err(|e| port_problem(&e))?;
    let found = &page.events;
    let size = match q.checkpoint {
        Some(size) => {
            if sink.checkpoint_note(size).await.map_err(|e| port_problem(&e))?.is_none() {
                return Err(Problem::new(
                    StatusCode::NOT_FOUND,
                    "no-such-checkpoint",
                    "No such checkpoint",
                    "no checkpoint of that size was signed",
                ));
            }
            Some(size)
        }
        None => None,
    };
    let mut events = Vec::new();
    for (index, event) in found {
        let mut v = json!({ "index": index, "event": event });
        if let Some(size) = size.filter(|s| index < s) {
            let proof = sink.inclusion_proof(*index, size).await.map_err(|e| port_problem(&e))?;
            v["inclusionProof"] = json!(clearway_core::audit::encode_hashes(&proof));
        }
        events.push(v);
    }
    Ok(Json(json!({ "events": events, "checkpoint": size, "next": page.next })))
}

#[derive(Debug, Deserialize)]
struct ConsistencyQuery {
    from: u64,
    to: u64,
}

/// `GET /v1/audit/consistency?from=&to=`: the proof that the checkpoint of
/// size `to` extends the one of size `from` (RFC 6962), with both notes.
async fn audit_consistency(
    State(svc): State<Arc<Services>>,
    _: Caller,
    Query(q): Query<ConsistencyQuery>,
) -> Result<Json<Value>, Problem> {
    let sink = audit_sink(&svc)?;
    if q.from > q.to {
        return Err(Problem::new(StatusCode::BAD_REQUEST, "invalid-input", "Invalid range", "from is at most to"));
    }
    let mut notes = Vec::new();
    for size in [q.from, q.to] {
        match sink.checkpoint_note(size).await.map_err(|e| port_problem(&e))? {
            Some(n) => notes.push(n),
            None => {
                return Err(Problem::new(
                    StatusCode::NOT_FOUND,
                    "no-such-checkpoint",
                    "No such checkpoint",
                    format!("no checkpoint of size {size}"),
                ));
            }
        }
    }
    let proof = sink.consistency_proof(q.from, q.to).await.map_err(|e| port_problem(&e))?;
    Ok(Json(json!({
        "from": { "size": q.from, "checkpoint": notes[0] },
        "to": { "size": q.to, "checkpoint": notes[1] },
        "proof": clearway_core::audit::encode_hashes(&proof),
    })))
}

#[derive(Debug, Deserialize)]
struct DisclosuresRequest {
    #[serde(rename = "patientControlNumber")]
    patient_control_number: Option<String>,
    #[serde(rename = "patientToken")]
    patient_token: Option<String>,
    from: Option<String>,
    to: Option<String>,
    /// Go on after this index (a previous answer's `next`).
    after: Option<u64>,
}

/// `POST /v1/audit/disclosures`: an accounting of disclosures for one
/// patient (45 CFR 164.528): every access to data about them — when, to
/// whom (principal and role), what (the route and entity) and why (the
/// purpose) — by patient control number (in the body, never the URL) or
/// its index token.
async fn audit_disclosures(
    State(svc): State<Arc<Services>>,
    _: Caller,
    body: axum::body::Bytes,
) -> Result<Json<Value>, Problem> {
    let sink = audit_sink(&svc)?;
    let bad = |d: &str| Problem::new(StatusCode::BAD_REQUEST, "invalid-input", "Invalid request", d.to_string());
    let req: DisclosuresRequest =
        serde_json::from_slice(&body).map_err(|_| bad("a JSON object with patientControlNumber or patientToken"))?;
    let token = match (req.patient_control_number.as_deref(), req.patient_token) {
        (Some(pcn), _) if !pcn.is_empty() => svc.partners.index_token(pcn),
        (_, Some(t)) if !t.is_empty() => t,
        _ => return Err(bad("patientControlNumber or patientToken")),
    };
    let filter = clearway_core::audit::AuditQuery {
        patient_token: Some(token.clone()),
        from: instant(&req.from)?,
        to: instant(&req.to)?,
        after: req.after,
        ..Default::default()
    };
    let mut entries = Vec::new();
    let page = sink.search(&filter, 1000).await.map_err(|e| port_problem(&e))?;
    {
        for (index, e) in &page.events {
            if e.outcome != "success" {
                continue;
            }
            entries.push(json!({
                "index": index,
                "date": e.recorded,
                "recipient": { "principal": e.actor.principal, "role": e.actor.role, "credential": e.actor.credential },
                "description": e.code,
                "entities": e.entity,
                "purpose": e.purpose,
                "breakGlass": e.break_glass,
                "tenant": e.tenant,
            }));
        }
    }
    Ok(Json(json!({ "patientToken": token, "disclosures": entries, "next": page.next })))
}

/// `GET /v1/admin/keys`: every API key's id, holder, role and grants.
async fn admin_keys(State(svc): State<Arc<Services>>, _: Caller) -> Result<Json<Value>, Problem> {
    let keys = svc.partners.list_keys().await.map_err(|e| port_problem(&e))?;
    Ok(Json(json!({ "keys": keys })))
}

#[derive(Debug, Deserialize)]
struct NewKeyRequest {
    principal: String,
    role: String,
    #[serde(default, rename = "phiView")]
    phi_view: bool,
    #[serde(default, rename = "breakGlass")]
    break_glass: bool,
    label: Option<String>,
}

/// `POST /v1/admin/keys`: issues a key; the key is in this answer only.
async fn admin_key_add(
    State(svc): State<Arc<Services>>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<Response, Problem> {
    let bad = |d: String| Problem::new(StatusCode::BAD_REQUEST, "invalid-input", "Invalid key request", d);
    let req: NewKeyRequest = serde_json::from_slice(&body)
        .map_err(|_| bad("a JSON object with principal, role and optional phiView, breakGlass, label".into()))?;
    let role = Role::parse(&req.role).ok_or_else(|| bad("role: submitter, operator, auditor or admin".into()))?;
    let principal = PartnerId::new(&req.principal).map_err(|e| bad(format!("principal: {e}")))?;
    if req.phi_view || req.break_glass {
        // PHI grants are made on the host (`clearway keys add`), an admin
        // command of its own in the audit log, never by an API key.
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "host-only-grant",
            "Granted on the host only",
            "phi_view and break_glass are granted with clearway keys add on the host",
        ));
    }
    let grants = clearway_core::partners::NewCredential {
        phi_view: false,
        break_glass: false,
        label: req.label.map(|l| l.chars().take(200).collect()),
    };
    match svc.partners.add_key(&principal, role, grants).await {
        Ok((id, key)) => Ok({
            caller.slot.note(|n| {
                let entity =
                    |kind: &str, id: &str| clearway_core::audit::AuditEntity { kind: kind.into(), id: id.into() };
                n.entities.extend([
                    entity("key", &id),
                    entity("principal", principal.as_str()),
                    entity("role", role.as_str()),
                ]);
            });
            (
                StatusCode::CREATED,
                [(header::CACHE_CONTROL, "no-store")],
                Json(json!({ "id": id, "principal": principal, "role": role, "key": key.expose() })),
            )
                .into_response()
        }),
        Err(e) if e.kind() == ErrorKind::NotFound => Err(Problem::new(
            StatusCode::NOT_FOUND,
            "no-such-partner",
            "No such partner",
            "a submitter key is for an existing partner",
        )),
        Err(e) if e.kind() == ErrorKind::InvalidInput => Err(bad(e.operation().to_string())),
        Err(e) => Err(port_problem(&e)),
    }
}

/// `DELETE /v1/admin/keys/{id}`: revokes a key, at once in this process.
async fn admin_key_revoke(
    State(svc): State<Arc<Services>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    match svc.partners.revoke_key(&id).await {
        Ok(c) => {
            caller.slot.note(|n| {
                n.entities
                    .push(clearway_core::audit::AuditEntity { kind: "principal".into(), id: c.principal.clone() });
            });
            Ok(Json(json!(c)))
        }
        Err(e) if e.kind() == ErrorKind::NotFound || e.kind() == ErrorKind::InvalidInput => Err(Problem::not_found()),
        Err(e) => Err(port_problem(&e)),
    }
}

/// The full HTTP application: [`router`] behind the service-wide layers —
/// a bound on requests in flight (excess is shed with `503` and
/// `Retry-After` rather than queued), a request timeout, request metrics
/// (`clearway_http_requests_total`, `clearway_http_request_duration_seconds`,
/// labelled by route template, never by path) and a panic guard that turns a
/// bug into a `500` problem instead of a dropped connection.
pub fn app(svc: Arc<Services>, metrics: MetricsRender) -> Router {
    app_with(svc, metrics, Router::new())
}

/// [`app`] with more routes (the operator console's) merged in before the
/// service-wide layers, so they are bounded, timed and counted alike. They
/// bring their own access layers: [`router`]'s apply to its own routes.
pub fn app_with(svc: Arc<Services>, metrics: MetricsRender, more: Router) -> Router {
    let (in_flight, timeout) = (svc.config.server.max_in_flight, svc.config.server.request_timeout);
    layered(router(svc, metrics).merge(more), in_flight, timeout)
}

/// Serves `app` over TLS on `listener` until `shutdown`: each connection's
/// handshake (bounded by the handshake timeout) in its own task, then
/// HTTP/1.1 with keep-alive. On shutdown the listener stops, idle
/// connections close and requests in progress finish.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Arc<crate::tls::Tls>,
    client_auth: Option<clearway_core::config::ClientAuth>,
    max_connections: usize,
    partners: Arc<clearway_core::partners::Partners>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let open = Arc::new(tokio::sync::Semaphore::new(max_connections));
    loop {
        let (tcp, _) = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "https accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // One connection more than `server.max_connections` is closed at
        // once (before its handshake costs anything).
        let Ok(permit) = open.clone().try_acquire_owned() else {
            metrics::counter!("clearway_http_connections_refused_total").increment(1);
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (tls, app, watcher, stop) = (tls.clone(), app.clone(), graceful.watcher(), shutdown.clone());
        let partners = partners.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let stream = tokio::select! {
                _ = stop.cancelled() => return,
                s = tls.accept(tcp, client_auth) => match s { Some(s) => s, None => return },
            };
            // The client certificate's fingerprint goes with every request
            // of the connection (partners bound to certificates).
            let fingerprint = crate::tls::peer_fingerprint(&stream);
            let partner = match &fingerprint {
                Some(fp) => match partners.by_certificate(fp).await {
                    Ok(p) => p.map(|p| p.id.clone()),
                    Err(e) => {
                        tracing::warn!(error = %clearway_core::error::chain(&e), "https: partner lookup failed");
                        return;
                    }
                },
                None => None,
            };
            let peer = crate::tls::PeerCertificate { fingerprint, partner };
            let app =
                tower::ServiceExt::map_request(app, move |mut req: axum::http::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(peer.clone());
                    req
                });
            let service = hyper_util::service::TowerToHyperService::new(app);
            // A client that stops mid-header cannot hold the connection (or
            // a graceful shutdown) forever.
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(error = %e, "https connection ended");
            }
        });
    }
    // New connections are refused at once, not left in the backlog while
    // the open ones finish.
    drop(listener);
    graceful.shutdown().await;
}

/// Health, readiness and metrics only (a worker-only process).
pub fn ops_router(svc: Arc<Services>, metrics: MetricsRender) -> Router {
    let (in_flight, timeout) = (svc.config.server.max_in_flight, svc.config.server.request_timeout);
    let r = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .fallback(|| async { Problem::not_found() })
        .with_state(AppState { svc, metrics });
    layered(r, in_flight, timeout)
}

/// The service-wide layers, outermost first (see [`app`]). They are
/// applied as one stack (one `Router::layer` call): each call wraps every
/// route in another boxed service, cloned and allocated on every request.
fn layered(r: Router, in_flight: usize, timeout: Duration) -> Router {
    use axum::error_handling::HandleErrorLayer;
    use tower::ServiceBuilder;
    r.layer(
        ServiceBuilder::new()
            .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_: Box<dyn std::any::Any + Send>| {
                metrics::counter!("clearway_http_panics_total").increment(1);
                tracing::error!("request handler panicked");
                Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "Internal error",
                    "an internal error occurred",
                )
                .into_response()
            }))
            .layer(tower_http::timeout::TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, timeout))
            .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
                metrics::counter!("clearway_http_shed_total").increment(1);
                Problem::unavailable(1)
            }))
            .load_shed()
            // One semaphore for all routes: a layer's per-service limit
            // would be applied to each route apart.
            .layer(tower::limit::GlobalConcurrencyLimitLayer::new(in_flight))
            .layer(axum::middleware::from_fn_with_state(Arc::new(RequestMetrics::default()), observe)),
    )
}

/// Handles of the request metrics, by route template, method and status.
/// Registering a labelled metric builds its key and looks it up in the
/// registry on every call, which costs about as much as counting a whole
/// cache-hit answer; the handles are looked up here by route instead. The
/// set is bounded: routes are templates (or `unmatched`), methods outside
/// the standard ones are labelled `other`, and statuses are three digits.
#[derive(Default)]
struct RequestMetrics {
    by_route: std::sync::RwLock<std::collections::HashMap<Box<str>, RouteMetrics>>,
}

struct RouteMetrics {
    duration: metrics::Histogram,
    requests: Vec<(&'static str, u16, metrics::Counter)>,
}

impl RouteMetrics {
    fn counter(&self, method: &str, status: u16) -> Option<&metrics::Counter> {
        self.requests.iter().find(|(m, s, _)| *m == method && *s == status).map(|(_, _, c)| c)
    }
}

impl RequestMetrics {
    fn record(&self, route: &str, method: &'static str, status: u16, took: Duration) {
        let took = took.as_secs_f64();
        {
            let by_route = self.by_route.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(m) = by_route.get(route)
                && let Some(c) = m.counter(method, status)
            {
                c.increment(1);
                m.duration.record(took);
                return;
            }
        }
        let mut by_route = self.by_route.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let m = by_route.entry(route.into()).or_insert_with(|| RouteMetrics {
            duration: metrics::histogram!("clearway_http_request_duration_seconds", "route" => route.to_string()),
            requests: Vec::new(),
        });
        let counter = match m.counter(method, status) {
            Some(c) => c.clone(),
            None => {
                let c = metrics::counter!("clearway_http_requests_total", "route" => route.to_string(), "method" => method, "status" => status.to_string());
                m.requests.push((method, status, c.clone()));
                c
            }
        };
        counter.increment(1);
        m.duration.record(took);
    }
}

/// A method as a metric label: the standard ones by name, any other as
/// `other` (a client may send any token as a method).
fn method_label(m: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
        Method::PATCH,
        Method::CONNECT,
        Method::TRACE,
    ]
    .iter()
    .zip(["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE"])
    .find_map(|(known, label)| (known == m).then_some(label))
    .unwrap_or("other")
}

/// Request metrics and one span per request, by route template.
async fn observe(
    State(metrics): State<Arc<RequestMetrics>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let route = req.extensions().get::<axum::extract::MatchedPath>().cloned();
    let route = route.as_ref().map_or("unmatched", |m| m.as_str());
    let method = method_label(req.method());
    let started = std::time::Instant::now();
    let span = tracing::debug_span!("http", method = method, route = route);
    let resp = tracing::Instrument::instrument(next.run(req), span).await;
    metrics.record(route, method, resp.status().as_u16(), started.elapsed());
    resp
}

fn refusal(r: Refusal) -> Problem {
    match r {
        Refusal::BadRequest { title, detail, ta1 } => {
            let p = Problem::new(StatusCode::BAD_REQUEST, "invalid-input", title, detail);
            match ta1 {
                Some(t) => p.with("ta1", t),
                None => p,
            }
        }
        Refusal::UnsupportedMediaType(m) => Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            format!(
                "{m} is not accepted; use application/edi-x12, application/hl7-v2, application/fhir+json or application/json"
            ),
        ),
        Refusal::Unavailable { retry_after_secs, throttled: true } => Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "throttled",
            "Too many requests",
            "the queue is full; try again later",
        )
        .retry_after(retry_after_secs),
        Refusal::Unavailable { retry_after_secs, .. } => Problem::unavailable(retry_after_secs),
        Refusal::IdempotencyInFlight => Problem::new(
            StatusCode::CONFLICT,
            "idempotency-in-flight",
            "Request in progress",
            "a request with this Idempotency-Key is still being processed",
        )
        .retry_after(1),
        Refusal::IdempotencyMismatch => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency-key-reused",
            "Idempotency-Key reused",
            "this Idempotency-Key was used with a different request body",
        ),
        Refusal::NoRoute { resource } => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "no-route",
            "No destination takes this resource",
            no_route_text(&resource),
        ),
    }
}

fn no_route_text(resource: &str) -> String {
    format!(
        "no route delivers {resource} resources to any destination, and Clearway does not process them itself (Claim, CoverageEligibilityRequest, Bundle); nothing was stored"
    )
}

/// The FHIR answer for a resource no route takes: 422 with an
/// OperationOutcome (`not-supported`).
fn no_route(resource: &str) -> Response {
    let outcome = clearway_formats::fhir::operation_outcome(&[clearway_formats::fhir::OutcomeIssue::new(
        clearway_formats::fhir::Severity::Error,
        clearway_formats::fhir::IssueType::NotSupported,
        "resourceType",
        no_route_text(resource),
    )]);
    (StatusCode::UNPROCESSABLE_ENTITY, [(header::CONTENT_TYPE, "application/fhir+json")], outcome.to_string())
        .into_response()
}

fn location(id: &TransactionId) -> HeaderValue {
    HeaderValue::from_str(&format!("/v1/transactions/{id}"))
        .unwrap_or_else(|_| HeaderValue::from_static("/v1/transactions"))
}

async fn submit(State(st): State<AppState>, Authed(partner): Authed, req: axum::extract::Request) -> Response {
    let (Parts { headers, extensions, .. }, body) = req.into_parts();
    let slot = extensions.get::<AuditSlot>().cloned();
    let svc = &st.svc;
    let max = svc.config.server.max_body_bytes;
    let too_large = || {
        metrics::counter!("clearway_intake_rejected_total", "reason" => "too-large").increment(1);
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            "Payload too large",
            format!("the body is larger than {max} bytes"),
        )
        .with("maxBytes", max)
        .into_response()
    };
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared.filter(|n| *n > max) {
        drain(body, n).await;
        return too_large();
    }
    let bytes = match axum::body::to_bytes(body, max as usize).await {
        Ok(b) => b,
        Err(_) => return too_large(),
    };
    if bytes.is_empty() {
        return Problem::new(StatusCode::BAD_REQUEST, "invalid-input", "Empty body", "the request body is empty")
            .into_response();
    }
    let idempotency_key = match headers.get("idempotency-key").map(|v| v.to_str()) {
        None => None,
        Some(Ok(k)) if !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| (0x21..0x7F).contains(&b)) => {
            Some(k.to_string())
        }
        Some(_) => {
            return Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid-input",
                "Invalid Idempotency-Key",
                "1-255 visible ASCII characters",
            )
            .into_response();
        }
    };
    // The request's audit event goes in the intake's own commit when the
    // log takes staged events: durable exactly when the submission is.
    let audit: Option<accept::AuditStage> = slot.clone().map(|slot| {
        Box::new(move |id: &TransactionId| {
            let entity = clearway_core::audit::AuditEntity { kind: "transaction".into(), id: id.to_string() };
            slot.staged_event(StatusCode::ACCEPTED, entity).map(|e| clearway_core::audit::staged_write(&e))
        }) as accept::AuditStage
    });
    let sub = Submission {
        partner: partner.id.clone(),
        body: bytes,
        content_type: headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string),
        idempotency_key,
        channel: Channel::Http,
        traceparent: headers
            .get(clearway_core::telemetry::TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(clearway_core::telemetry::parse),
        audit,
    };
    match accept::accept(svc, sub).await {
        Ok(Outcome::Accepted { record, staged_audit, .. }) => {
            if let Some(slot) = &slot {
                if staged_audit {
                    slot.mark_staged(StatusCode::ACCEPTED);
                } else {
                    slot.note(|n| {
                        n.entities.push(clearway_core::audit::AuditEntity {
                            kind: "transaction".into(),
                            id: record.id.to_string(),
                        })
                    });
                }
            }
            let body = json!({ "transactionId": record.id, "status": "ACCEPTED", "receivedAt": record.received_at });
            (StatusCode::ACCEPTED, [(header::LOCATION, location(&record.id))], Json(body)).into_response()
        }
        Ok(Outcome::Replayed { status, body }) => {
            let code = StatusCode::from_u16(status).unwrap_or(StatusCode::ACCEPTED);
            let mut resp = (code, [(header::CONTENT_TYPE, "application/json")], body).into_response();
            resp.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
            resp
        }
        Ok(Outcome::Duplicate { reason, original, status, ack }) => {
            let mut body = json!({
                "transactionId": original,
                "status": status.map(|s| s.as_str()),
                "duplicate": reason.as_str(),
                "detail": match reason {
                    DuplicateReason::Interchange => "this interchange control number was already received from this sender; it is not processed again",
                    DuplicateReason::Message => "this message control id was already received from this application; it is not processed again",
                    DuplicateReason::Content => "identical content was already received; it is not processed again",
                },
            });
            if let (Some(a), Value::Object(m)) = (ack, &mut body) {
                let field = if reason == DuplicateReason::Interchange { "ta1" } else { "ack" };
                m.insert(field.into(), Value::String(a));
            }
            (StatusCode::OK, [(header::LOCATION, location(&original))], Json(body)).into_response()
        }
        Err(Refusal::NoRoute { resource }) => {
            metrics::counter!("clearway_intake_rejected_total", "reason" => "no-route").increment(1);
            no_route(&resource)
        }
        Err(r) => {
            metrics::counter!("clearway_intake_rejected_total", "reason" => refusal_label(&r)).increment(1);
            refusal(r).into_response()
        }
    }
}

fn refusal_label(r: &Refusal) -> &'static str {
    match r {
        Refusal::BadRequest { .. } => "invalid-input",
        Refusal::UnsupportedMediaType(_) => "unsupported-media-type",
        Refusal::Unavailable { throttled: true, .. } => "throttled",
        Refusal::Unavailable { .. } => "unavailable",
        Refusal::IdempotencyInFlight => "idempotency-in-flight",
        Refusal::IdempotencyMismatch => "idempotency-mismatch",
        Refusal::NoRoute { .. } => "no-route",
    }
}

fn port_problem(e: &clearway_core::PortError) -> Problem {
    tracing::warn!(error = %clearway_core::error::chain(e), "state read failed");
    Problem::unavailable(5)
}

async fn load_record(svc: &Services, partner: &PartnerId, id: &str) -> Result<TransactionRecord, Problem> {
    match crate::lookup::record(svc, partner, id).await {
        Ok(Some(r)) => Ok(r),
        Ok(None) => Err(Problem::not_found()),
        Err(e) if e.kind() == ErrorKind::Internal => Err(Problem::unavailable(5)),
        Err(e) => Err(port_problem(&e)),
    }
}

/// A pharmacy (switch path) transaction of `partner`, when `id` is one.
async fn load_pharmacy(svc: &Services, partner: &PartnerId, id: &str) -> Result<Option<PharmacyRecord>, Problem> {
    let Some(id) = TransactionId::parse(id) else { return Ok(None) };
    let item = svc.ports.state.get(&PharmacyRecord::key(partner, &id)).await.map_err(|e| port_problem(&e))?;
    Ok(item.and_then(|i| serde_json::from_slice(&i.value).ok()))
}

/// The id of a transaction of `partner` (async path or switch path).
async fn owned_id(svc: &Services, partner: &PartnerId, id: &str) -> Result<TransactionId, Problem> {
    match load_record(svc, partner, id).await {
        Ok(r) => Ok(r.id),
        Err(e) => load_pharmacy(svc, partner, id).await?.map(|r| r.id).ok_or(e),
    }
}

/// `GET /v1/transactions/{id}` for a pharmacy transaction: its statuses
/// and codes (the request and response stay in the record; the response
/// is its acknowledgement).
fn pharmacy_view(r: &PharmacyRecord) -> Value {
    let transactions: Vec<Value> = r
        .outcomes
        .iter()
        .enumerate()
        .map(|(i, o)| {
            json!({
                "status": o.status,
                "rejectCodes": o.rejects,
                "authorization": o.authorization,
                "duplicate": r.duplicate.get(i).copied().unwrap_or(false),
            })
        })
        .collect();
    json!({
        "transactionId": r.id,
        "status": if r.header_status == "A" { "answered" } else { "rejected" },
        "format": "ncpdp",
        "channel": "http",
        "receivedAt": r.received_at,
        "transactionCode": r.transaction_code,
        "payerId": r.payer,
        "connector": r.connector,
        "headerStatus": r.header_status,
        "transactions": transactions,
        "tookMicros": r.took_us,
        "ackIds": [format!("{}-ncpdp-1", r.id)],
    })
}

#[derive(Debug, Deserialize)]
struct TenantQuery {
    partner: Option<String>,
}

/// Whose transaction a caller asks about: a submitter's own tenant, or
/// for an operator the `?partner=` it names (recorded in the audit event).
fn tenant_of(caller: &Caller, q: &TenantQuery) -> Result<PartnerId, Problem> {
    if let Some(own) = caller.principal.tenant() {
        return Ok(own.clone());
    }
    let partner = q.partner.as_deref().and_then(|p| PartnerId::new(p).ok()).ok_or_else(|| {
        Problem::new(StatusCode::BAD_REQUEST, "invalid-input", "Partner needed", "name the tenant: ?partner=<id>")
    })?;
    caller.concerns(&partner, &[]);
    Ok(partner)
}

async fn transaction(
    State(svc): State<Arc<Services>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<TenantQuery>,
) -> Result<Json<Value>, Problem> {
    let partner = tenant_of(&caller, &q)?;
    // Operators see metadata; PHI (patient control numbers) only with
    // `phi_view` or under break-glass.
    let phi = caller.principal.role == Role::Submitter || (caller.may_view_phi() && svc.audit.is_some());
    let r = match load_record(&svc, &partner, &id).await {
        Ok(r) => r,
        Err(e) => return load_pharmacy(&svc, &partner, &id).await?.map(|r| Json(pharmacy_view(&r))).ok_or(e),
    };
    if phi {
        caller.concerns(&partner, &patient_tokens(&svc, &r));
    }
    // Where each routed claim went since: its payer batch and the payer's
    // verdict.
    let lineage = if r.claims.iter().any(|c| c.status == "queued") {
        crate::lookup::lineage(&svc, &r.id).await.map_err(|e| port_problem(&e))?
    } else {
        std::collections::HashMap::new()
    };
    let deliveries = if r.destinations.is_empty() {
        vec![]
    } else {
        systems::statuses(&svc.ports, r.id.as_str(), &r.destinations).await.map_err(|e| port_problem(&e))?
    };
    let claims: Vec<Value> = r
        .claims
        .iter()
        .map(|c| {
            let l = lineage.get(&c.id);
            json!({
                "id": c.id,
                "patientControlNumber": phi.then(|| c.patient_control_number.expose()),
                "payerId": c.payer_id,
                "totalCharge": c.total_charge,
                "status": l.map_or(c.status.as_str(), |l| l.status.as_str()),
                "statusCode": l.and_then(|l| l.payer_status.clone()).or_else(|| c.status_code.clone()),
                "destination": c.destination,
                "batch": l.map(|l| json!({
                    "id": l.batch,
                    "interchange": l.interchange,
                    // GS06 is the interchange's control number too.
                    "group": l.interchange,
                    "set": l.set,
                    "position": l.position,
                    "payerClaimControlNumber": l.payer_claim_control_number,
                })),
            })
        })
        .collect();
    Ok(Json(json!({
        "transactionId": r.id,
        "status": r.status.as_str(),
        "format": r.format.as_str(),
        "channel": r.channel,
        "receivedAt": r.received_at,
        "updatedAt": r.updated_at,
        "sizeBytes": r.size_bytes,
        "attempts": r.attempts,
        "documents": r.documents,
        "claimCount": r.claim_count.max(r.claims.len()),
        "claims": claims,
        "issues": r.issues,
        "ackIds": r.ack_ids,
        "failure": r.failure,
        "deliveries": deliveries,
        "traceparent": r.traceparent,
    })))
}

/// Every destination: its kind, queue, dead letters, breaker and last
/// error, as its deliverer last published them (operators).
async fn destinations(State(svc): State<Arc<Services>>, _: Caller) -> Result<Json<Value>, Problem> {
    let mut out = Vec::new();
    for d in &svc.config.systems.destinations {
        let depth = systems::depth(&svc.ports, &d.name).await.map_err(|e| port_problem(&e))?;
        let routes: Vec<&str> =
            svc.config.systems.routes.iter().filter(|r| r.to.contains(&d.name)).map(|r| r.name.as_str()).collect();
        out.push(json!({
            "name": d.name,
            "kind": d.transport.kind(),
            "routes": routes,
            "maxQueue": d.max_queue,
            "queue": depth,
        }));
    }
    Ok(Json(json!({ "destinations": out })))
}

fn known_destination<'a>(
    svc: &'a Services,
    name: &str,
) -> Result<&'a clearway_core::systems::SystemDestination, Problem> {
    svc.config.systems.destination(name).ok_or_else(Problem::not_found)
}

/// A destination's dead letters, oldest first (metadata only).
async fn destination_dead_letters(
    State(svc): State<Arc<Services>>,
    _: Caller,
    Path(name): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, Problem> {
    let d = known_destination(&svc, &name)?;
    let list = systems::dead_letters(&svc.ports, &d.name, q.limit.unwrap_or(100).clamp(1, 1000))
        .await
        .map_err(|e| port_problem(&e))?;
    let items: Vec<Value> = list
        .iter()
        .map(|(seq, e)| {
            json!({
                "sequence": seq,
                "transactionId": e.transaction,
                "partner": e.partner,
                "messages": e.messages.len(),
                "message": e.label,
                "controlId": e.control_id,
                "route": e.route,
                "attempts": e.attempts,
                "reason": e.reason,
            })
        })
        .collect();
    Ok(Json(json!({ "destination": d.name, "deadLetters": items })))
}

/// Puts a destination's dead letters back at the tail of its queue
/// (`?dryRun=true` counts them).
async fn destination_replay(
    State(svc): State<Arc<Services>>,
    _: Caller,
    Path(name): Path<String>,
    Query(q): Query<ReplayQuery>,
) -> Result<Response, Problem> {
    let d = known_destination(&svc, &name)?;
    let dry_run = q.dry_run.unwrap_or(false);
    let n = systems::replay(&svc.ports, &d.name, dry_run).await.map_err(|e| port_problem(&e))?;
    if !dry_run {
        metrics::counter!("clearway_destination_replayed_total", "destination" => d.name.clone()).increment(n as u64);
        svc.deliveries.notify_waiters();
    }
    let body = json!({ "destination": d.name, "deadLetters": n, "replayed": !dry_run });
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

async fn transaction_acks(
    State(svc): State<Arc<Services>>,
    Authed(p): Authed,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    let id = owned_id(&svc, &p.id, &id).await?;
    let acks = crate::lookup::acks(&svc, &id).await.map_err(|e| port_problem(&e))?;
    let list: Vec<Value> =
        acks.iter().map(|a| json!({ "id": a.id, "kind": a.kind, "createdAt": a.created_at })).collect();
    Ok(Json(json!(list)))
}

async fn transaction_ack(
    State(svc): State<Arc<Services>>,
    Authed(p): Authed,
    Path((id, ack_id)): Path<(String, String)>,
) -> Result<Response, Problem> {
    let id = owned_id(&svc, &p.id, &id).await?;
    let item = svc.ports.state.get(&AckRecord::key(&id, &ack_id)).await.map_err(|e| port_problem(&e))?;
    let ack: AckRecord = item.and_then(|i| serde_json::from_slice(&i.value).ok()).ok_or_else(Problem::not_found)?;
    // A body kept in chunks (an 835 forwarded from a payer's, of any
    // size) is sent on as its chunks are read: one in memory at a time.
    // The first is read before answering, so that a store that fails
    // gets a problem, not a cut body.
    if let (Some(prefix), Some(chunks)) = (ack.body_blob.clone(), ack.body_chunks) {
        let (blobs, sealing) = (svc.ports.blobs.clone(), svc.partners.ack_sealing(&ack.partner));
        let first = clearway_core::chunked::read_chunk(blobs.as_ref(), &sealing, &prefix, 0)
            .await
            .map_err(|e| port_problem(&e))?;
        let rest = futures::StreamExt::map(clearway_core::chunked::stream(blobs, sealing, prefix, 1, chunks), |c| {
            c.map(axum::body::Bytes::from).map_err(|e| std::io::Error::other(e.to_string()))
        });
        let stream =
            futures::StreamExt::chain(futures::stream::once(async move { Ok(axum::body::Bytes::from(first)) }), rest);
        return Ok(
            ([(header::CONTENT_TYPE, ack.content_type.clone())], axum::body::Body::from_stream(stream)).into_response()
        );
    }
    let body = svc.partners.ack_body(svc.ports.blobs.as_ref(), &ack).await.map_err(|e| port_problem(&e))?;
    Ok(([(header::CONTENT_TYPE, ack.content_type.clone())], body).into_response())
}

#[derive(Debug, Deserialize)]
struct FeedQuery {
    after: Option<String>,
    wait: Option<u64>,
    limit: Option<usize>,
}

/// Most the feed waits in one long poll.
const MAX_FEED_WAIT: Duration = Duration::from_secs(30);

async fn feed(
    State(svc): State<Arc<Services>>,
    Authed(p): Authed,
    Query(q): Query<FeedQuery>,
) -> Result<Json<Value>, Problem> {
    let wait = Duration::from_secs(q.wait.unwrap_or(0)).min(MAX_FEED_WAIT);
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let deadline = tokio::time::Instant::now() + wait;
    let settle = svc.config.server.feed_settle();
    loop {
        let notified = svc.feed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        // Entries a write still in flight may precede are held back
        // (`clearway_core::feed`): a reader never passes a cursor before
        // which an entry may still appear. The horizon is taken before the
        // page is read: every stamp at or before it has been written by
        // then, so the page has its entry.
        let horizon = feed::clock().horizon_ms(settle);
        let page = svc
            .ports
            .state
            .query(Table::AckFeed, p.id.as_str(), q.after.as_deref(), limit)
            .await
            .map_err(|e| port_problem(&e))?;
        let ready: Vec<FeedEntry> = page
            .iter()
            .filter_map(|(_, i)| serde_json::from_slice::<FeedEntry>(&i.value).ok())
            .take_while(|e| feed::settled(&e.cursor, horizon))
            .collect();
        let held_back = ready.len() < page.len();
        if !ready.is_empty() || tokio::time::Instant::now() >= deadline {
            let next = ready.last().map(|e| e.cursor.clone()).or(q.after.clone());
            let acks: Vec<Value> = ready
                .iter()
                .map(|e| json!({ "cursor": e.cursor, "id": e.ack_id, "transactionId": e.transaction, "kind": e.kind, "createdAt": e.created_at }))
                .collect();
            return Ok(Json(json!({ "acks": acks, "next": next })));
        }
        let pause = if held_back { feed::recheck_after(settle) } else { Duration::from_millis(250) };
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep(pause) => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

#[derive(Debug, Deserialize)]
struct DeadLetterQuery {
    partner: Option<String>,
    /// Only those whose claims name this payer.
    payer: Option<String>,
    since: Option<String>,
    limit: Option<usize>,
}

/// Parses `since` (RFC 3339) into Unix milliseconds.
pub fn parse_since(s: &str) -> Option<i64> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
}

#[derive(Debug, Deserialize)]
struct ReportQuery {
    from: Option<String>,
    to: Option<String>,
    partner: Option<String>,
    payer: Option<String>,
}

/// `GET /v1/reports/{name}`: a report of the pack (`docs/specs/reports.md`)
/// over the analytics export, as JSON rows; aggregates only, no PHI.
async fn report(
    State(svc): State<Arc<Services>>,
    _: Caller,
    axum::extract::Path(name): axum::extract::Path<String>,
    Query(q): Query<ReportQuery>,
) -> Result<Json<Value>, Problem> {
    let Some(reports) = svc.reports.clone() else {
        return Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Reports not served",
            "this process does not serve reports",
        ));
    };
    let bound = |v: &Option<String>, what: &'static str| -> Result<Option<i64>, Problem> {
        match v.as_deref() {
            None => Ok(None),
            Some(s) => clearway_core::reports::parse_bound(s)
                .map(Some)
                .ok_or_else(|| Problem::new(StatusCode::BAD_REQUEST, "invalid-input", "Invalid period", what)),
        }
    };
    let params = clearway_core::reports::ReportParams {
        from_us: bound(&q.from, "from: a date (YYYY-MM-DD) or an RFC 3339 time")?,
        to_us: bound(&q.to, "to: a date (YYYY-MM-DD) or an RFC 3339 time")?,
        partner: q.partner,
        payer: q.payer,
    };
    match reports.run(&name, &params).await.map_err(|e| port_problem(&e))? {
        Some(rows) => Ok(Json(json!({ "report": name, "rows": rows }))),
        None => Err(Problem::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "No such report",
            format!("the reports are: {}", reports.names().join(", ")),
        )),
    }
}

async fn dead_letters(
    State(svc): State<Arc<Services>>,
    _: Caller,
    Query(q): Query<DeadLetterQuery>,
) -> Result<Json<Value>, Problem> {
    let partner = match q.partner.as_deref() {
        Some(s) => Some(PartnerId::new(s).map_err(|_| {
            Problem::new(StatusCode::BAD_REQUEST, "invalid-input", "Invalid partner", "bad partner id")
        })?),
        None => None,
    };
    let since =
        match q.since.as_deref() {
            Some(s) => Some(parse_since(s).ok_or_else(|| {
                Problem::new(StatusCode::BAD_REQUEST, "invalid-input", "Invalid since", "use RFC 3339")
            })?),
            None => None,
        };
    if q.payer.as_deref().is_some_and(|p| p.trim().is_empty()) {
        return Err(Problem::new(StatusCode::BAD_REQUEST, "invalid-input", "Invalid payer", "payer is a payer id"));
    }
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let list = clearway_core::dlq::list(&svc.ports.state, partner.as_ref(), q.payer.as_deref(), since, limit)
        .await
        .map_err(|e| port_problem(&e))?;
    let items: Vec<Value> = list.iter().map(DeadLetter::to_json).collect();
    Ok(Json(json!({ "deadLetters": items })))
}

/// A payer posts one of its answer files (TA1, 999, 277CA, 835): stored
/// durably before the `202`, applied by the workers. Only the partner a
/// payer names (`[payers.ID] partner`) may post for it.
async fn payer_file(State(svc): State<Arc<Services>>, Authed(p): Authed, req: axum::extract::Request) -> Response {
    let (parts, body) = req.into_parts();
    let Some(payer) = svc.config.payers.values().find(|c| c.partner.as_deref() == Some(p.id.as_str())) else {
        return Problem::new(
            StatusCode::FORBIDDEN,
            "not-a-payer",
            "Not a payer",
            "no payer names this partner ([payers.ID] partner)",
        )
        .into_response();
    };
    let media = media_type(&parts.headers);
    if media != "application/edi-x12" {
        return Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            "payer files are application/edi-x12",
        )
        .into_response();
    }
    let bytes = match bounded_body(&parts.headers, body).await {
        Ok(b) => b,
        Err(problem) => return problem.into_response(),
    };
    let name = parts
        .headers
        .get("x-file-name")
        .and_then(|v| v.to_str().ok())
        .filter(|n| !n.is_empty())
        .map_or_else(|| "posted".to_string(), str::to_string);
    match clearway_core::roundtrip::store_payer_file(&svc.ports, &svc.partners, &payer.id, &name, &bytes).await {
        Ok(sha) => (StatusCode::ACCEPTED, Json(json!({ "payer": payer.id, "sha256": sha }))).into_response(),
        Err(e) => port_problem(&e).into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    payer: Option<String>,
    limit: Option<usize>,
}

/// What needs an operator: payer answers that match nothing, payer files
/// that do not parse, batches that failed our validator.
async fn attention(
    State(svc): State<Arc<Services>>,
    _: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, Problem> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let page = svc.ports.state.query(Table::Batches, "attention", None, limit).await.map_err(|e| port_problem(&e))?;
    let items: Vec<Value> = page
        .iter()
        .filter_map(|(k, i)| {
            let mut v: Value = serde_json::from_slice(&i.value).ok()?;
            v["id"] = json!(k);
            Some(v)
        })
        .filter(|v| q.payer.as_deref().is_none_or(|p| v["payer"] == p))
        .collect();
    Ok(Json(json!({ "items": items })))
}

/// A payer's outbound batches, oldest first.
async fn batches(
    State(svc): State<Arc<Services>>,
    _: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, Problem> {
    let Some(payer) =
        q.payer.as_deref().filter(|p| p.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)))
    else {
        return Err(Problem::new(StatusCode::BAD_REQUEST, "invalid-input", "Invalid payer", "payer=<id> is required"));
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let page = svc
        .ports
        .state
        .query(Table::Batches, &format!("batch/{payer}"), None, limit)
        .await
        .map_err(|e| port_problem(&e))?;
    let items: Vec<Value> = page.iter().filter_map(|(_, i)| serde_json::from_slice(&i.value).ok()).collect();
    Ok(Json(json!({ "batches": items })))
}

#[derive(Debug, Deserialize)]
struct ReplayQuery {
    #[serde(rename = "dryRun")]
    dry_run: Option<bool>,
}

async fn replay(
    State(svc): State<Arc<Services>>,
    _: Caller,
    Path(id): Path<String>,
    Query(q): Query<ReplayQuery>,
) -> Result<Response, Problem> {
    let id = TransactionId::parse(&id).ok_or_else(Problem::not_found)?;
    let dry_run = q.dry_run.unwrap_or(false);
    match clearway_core::dlq::replay(&svc.ports, &id, dry_run).await {
        Ok(d) => {
            metrics::counter!("clearway_dead_letter_replays_total").increment(u64::from(!dry_run));
            let mut v = DeadLetter::to_json(&d);
            if let Value::Object(m) = &mut v {
                m.insert("replayed".into(), Value::Bool(!dry_run));
            }
            Ok((StatusCode::ACCEPTED, Json(v)).into_response())
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Err(Problem::not_found()),
        Err(e) if e.kind() == ErrorKind::PreconditionFailed => Err(Problem::new(
            StatusCode::CONFLICT,
            "not-dead-lettered",
            "Not dead-lettered",
            "the transaction is not in the dead-letter store",
        )),
        Err(e) => Err(port_problem(&e)),
    }
}

/// Reads a real-time X12 request body: `application/edi-x12` (or a sniffed
/// `text/plain` / `application/octet-stream` starting with `ISA`), bounded
/// by [`clearway_fastpath::MAX_REQUEST_BYTES`].
async fn realtime_body(headers: &HeaderMap, body: Body) -> Result<axum::body::Bytes, Problem> {
    let media = media_type(headers);
    let bytes = bounded_body(headers, body).await?;
    let sniffed = matches!(&*media, "text/plain" | "application/octet-stream" | "")
        && bytes.trim_ascii_start().starts_with(b"ISA");
    if media != "application/edi-x12" && !sniffed {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            "send an X12 interchange as application/edi-x12",
        ));
    }
    Ok(bytes)
}

/// The request's media type, lowercase, without parameters.
fn media_type(headers: &HeaderMap) -> std::borrow::Cow<'_, str> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let media = ct.split(';').next().unwrap_or("").trim();
    if media.bytes().any(|b| b.is_ascii_uppercase()) { media.to_ascii_lowercase().into() } else { media.into() }
}

/// A real-time request body, refused with `413` past
/// [`clearway_fastpath::MAX_REQUEST_BYTES`] (by its declared length before
/// anything is read).
async fn bounded_body(headers: &HeaderMap, body: Body) -> Result<axum::body::Bytes, Problem> {
    body_at_most(headers, body, clearway_fastpath::MAX_REQUEST_BYTES).await
}

/// A request body of at most `max` bytes, else `413` (by its declared
/// length before anything is read).
async fn body_at_most(headers: &HeaderMap, body: Body, max: usize) -> Result<axum::body::Bytes, Problem> {
    let too_large = || {
        Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "too-large", "Payload too large", format!("at most {max} bytes"))
            .with("maxBytes", max)
    };
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if let Some(n) = declared.filter(|n| *n > max) {
        drain(body, n as u64).await;
        return Err(too_large());
    }
    axum::body::to_bytes(body, max).await.map_err(|_| too_large())
}

/// The most of a refused body read and discarded before the answer.
const DRAIN_BYTES: u64 = 8 << 20;

/// Reads and discards a refused body of `declared` bytes (up to
/// [`DRAIN_BYTES`], for at most 2 s) before the `413` goes out. A
/// connection closed with the client's data unread is reset by the kernel,
/// and the reset can reach the client before it has read the answer, which
/// it then never sees (seen over TLS in the e2e suite). A larger body is
/// refused at once: the bound protects the service first.
async fn drain(body: Body, declared: u64) {
    use http_body_util::BodyExt;
    if declared > DRAIN_BYTES {
        return;
    }
    let mut body = body;
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let mut read = 0u64;
        while let Some(Ok(frame)) = body.frame().await {
            read += frame.data_ref().map_or(0, |d| d.len() as u64);
            if read > DRAIN_BYTES {
                break;
            }
        }
    })
    .await;
}

/// A real-time exchange for the change feed, answered now.
fn exchange<'a>(
    partner: &'a PartnerId,
    txn: &'static str,
    request: &'a [u8],
    response: Option<&'a [u8]>,
    response_kind: &'static str,
    received: time::OffsetDateTime,
    served: clearway_fastpath::Served,
) -> crate::realtime::Exchange<'a> {
    crate::realtime::Exchange {
        partner,
        txn,
        request,
        response,
        response_kind,
        received,
        responded: time::OffsetDateTime::now_utc(),
        served,
    }
}

/// Records an X12 real-time exchange's event (analytics; off the request
/// path).
fn record_reply(
    svc: &Services,
    partner: &PartnerId,
    txn: &'static str,
    request: &[u8],
    reply: &clearway_fastpath::Reply,
    received: time::OffsetDateTime,
    served: clearway_fastpath::Served,
) {
    let (kind, body): (&'static str, Option<&[u8]>) = match reply {
        clearway_fastpath::Reply::Answer(x12) => (if txn == "276" { "277" } else { "271" }, Some(x12)),
        clearway_fastpath::Reply::Rejected { ack_kind, ack, .. } => (ack_kind.unwrap_or("problem"), ack.as_deref()),
    };
    svc.realtime.record(exchange(partner, txn, request, body, kind, received, served));
}

fn realtime_reply(reply: clearway_fastpath::Reply) -> Response {
    match reply {
        clearway_fastpath::Reply::Answer(x12) => ([(header::CONTENT_TYPE, "application/edi-x12")], x12).into_response(),
        clearway_fastpath::Reply::Rejected { ack_kind, ack, detail } => {
            let mut p = Problem::new(StatusCode::BAD_REQUEST, "invalid-input", "Request not answerable", detail);
            if let (Some(kind), Some(ack)) = (ack_kind, ack) {
                p = p.with(kind, String::from_utf8_lossy(&ack).into_owned());
            }
            p.into_response()
        }
    }
}

/// The span of a real-time exchange, continuing the caller's trace
/// (`traceparent`); `source` is where the answer came from.
fn realtime_span(kind: &'static str, partner: &PartnerId, headers: &axum::http::HeaderMap) -> tracing::Span {
    let span = tracing::info_span!(
        "realtime",
        otel.kind = "server",
        kind,
        partner = %partner,
        source = tracing::field::Empty,
    );
    let tp = headers.get(clearway_core::telemetry::TRACEPARENT).and_then(|v| v.to_str().ok());
    clearway_core::telemetry::set_parent(&span, tp);
    span
}

/// `POST /v1/eligibility`: a 270 answered with a 271, or a FHIR
/// CoverageEligibilityRequest with a CoverageEligibilityResponse (or an
/// OperationOutcome saying why not), synchronously.
async fn eligibility(
    State(svc): State<Arc<Services>>,
    Authed(p): Authed,
    req: axum::extract::Request,
) -> Result<Response, Problem> {
    let started = std::time::Instant::now();
    let (Parts { headers, .. }, body) = req.into_parts();
    let now = time::OffsetDateTime::now_utc();
    let media = media_type(&headers);
    let response = if media == "application/fhir+json" || media == "application/json" {
        let bytes = bounded_body(&headers, body).await?;
        let span = realtime_span("270-fhir", &p.id, &headers);
        let (answer, served) =
            clearway_fastpath::observe(svc.fastpath.eligibility_fhir(&bytes, now)).instrument(span.clone()).await;
        span.record("source", served.source.as_str());
        let (status, value) = match answer {
            Ok(v) => (StatusCode::OK, v),
            Err(outcome) => (StatusCode::BAD_REQUEST, outcome),
        };
        let kind = if status == StatusCode::OK { "fhir" } else { "problem" };
        svc.realtime.record(exchange(&p.id, "270-fhir", b"", None, kind, now, served));
        (status, [(header::CONTENT_TYPE, "application/fhir+json")], value.to_string()).into_response()
    } else {
        let bytes = realtime_body(&headers, body).await?;
        let span = realtime_span("270", &p.id, &headers);
        let (reply, served) =
            clearway_fastpath::observe(svc.fastpath.eligibility_x12(&bytes, now)).instrument(span.clone()).await;
        span.record("source", served.source.as_str());
        record_reply(&svc, &p.id, "270", &bytes, &reply, now, served);
        realtime_reply(reply)
    };
    tracing::debug!(partner = %p.id, elapsed_ms = started.elapsed().as_millis() as u64, "eligibility answered");
    svc.fastpath.record_eligibility(started.elapsed());
    Ok(response)
}

/// `POST /v1/claim-status`: a 276 answered with a 277, synchronously.
async fn claim_status(
    State(svc): State<Arc<Services>>,
    Authed(p): Authed,
    req: axum::extract::Request,
) -> Result<Response, Problem> {
    let started = std::time::Instant::now();
    let (Parts { headers, .. }, body) = req.into_parts();
    let bytes = realtime_body(&headers, body).await?;
    let now = time::OffsetDateTime::now_utc();
    let span = realtime_span("276", &p.id, &headers);
    let (reply, served) =
        clearway_fastpath::observe(svc.fastpath.claim_status_x12(&p.id, &bytes, now)).instrument(span.clone()).await;
    span.record("source", served.source.as_str());
    record_reply(&svc, &p.id, "276", &bytes, &reply, now, served);
    svc.fastpath.record_claim_status(started.elapsed());
    Ok(realtime_reply(reply))
}

/// `POST /v1/pharmacy`: one NCPDP D.0 transmission (E1, B1, B2, B3),
/// answered synchronously with the D.0 response (always `200`: a D.0
/// rejection is a response with status `R` and reject codes). The body is
/// `application/vnd.ncpdp.d0` or `application/octet-stream`, at most
/// [`clearway_fastpath::pharmacy::MAX_PHARMACY_BYTES`].
async fn pharmacy(
    State(svc): State<Arc<Services>>,
    Authed(p): Authed,
    req: axum::extract::Request,
) -> Result<Response, Problem> {
    use clearway_fastpath::pharmacy::{MAX_PHARMACY_BYTES, MEDIA_TYPE};
    let (Parts { headers, .. }, body) = req.into_parts();
    let media = media_type(&headers);
    if !matches!(&*media, MEDIA_TYPE | "application/octet-stream" | "text/plain" | "") {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            format!("send a D.0 transmission as {MEDIA_TYPE} or application/octet-stream"),
        ));
    }
    let bytes = body_at_most(&headers, body, MAX_PHARMACY_BYTES).await?;
    let reply = svc
        .fastpath
        .pharmacy(&p.id, &bytes, time::OffsetDateTime::now_utc())
        .instrument(realtime_span("ncpdp", &p.id, &headers))
        .await;
    let id = HeaderValue::from_str(reply.transaction.as_str()).ok();
    let mut response = ([(header::CONTENT_TYPE, MEDIA_TYPE)], reply.response).into_response();
    if let Some(id) = id {
        response.headers_mut().insert("clearway-transaction-id", id);
    }
    svc.feed.notify_waiters();
    Ok(response)
}

/// The partner a CORE envelope's credentials name: the user name is the
/// partner id and the password its API key.
async fn core_partner(
    svc: &Services,
    req: &caqh::CoreRequest,
    peer: Option<&crate::tls::PeerCertificate>,
    slot: Option<&AuditSlot>,
) -> Result<PartnerId, &'static str> {
    let (Some(user), Some(password)) = (req.username.as_deref(), req.password.as_ref()) else {
        return Err("UnAuthorized");
    };
    let token = password.expose();
    if token.is_empty() || token.len() > 200 {
        return Err("UnAuthorized");
    }
    match svc.partners.authenticate(token).await {
        Ok(Some(p)) if p.id.as_str() == user && principal_allows(&p, peer) => match (p.tenant(), slot) {
            (Some(tenant), slot) => {
                if let Some(slot) = slot {
                    slot.note(|n| {
                        n.who = Some(AuditWho {
                            principal: p.id.clone(),
                            role: p.role,
                            tenant: Some(tenant.to_string()),
                            credential: p.credential.clone(),
                            mtls: peer.is_some_and(|c| c.fingerprint.is_some()),
                        });
                        n.purpose = Some("ELIGVER".into());
                    });
                }
                Ok(tenant.clone())
            }
            // CORE envelopes are for submitters only.
            (None, _) => Err("UnAuthorized"),
        },
        Ok(_) => {
            if let Some(slot) = slot {
                let id = clearway_core::partners::key_id(token);
                slot.note(|n| n.failed_credential = Some(id));
            }
            Err("UnAuthorized")
        }
        Err(e) => {
            tracing::warn!(error = %clearway_core::error::chain(&e), "authentication unavailable");
            Err("ServerError")
        }
    }
}

fn core_status(r: &caqh::CoreResponse) -> StatusCode {
    match r.error_code {
        "Success" => StatusCode::OK,
        "UnAuthorized" => StatusCode::UNAUTHORIZED,
        "ServerError" => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    }
}

const SOAP_XML: &str = "application/soap+xml; charset=utf-8";

/// `POST /core/soap`: a CAQH CORE SOAP 1.2 real-time exchange.
async fn core_soap(
    State(svc): State<Arc<Services>>,
    peer: Option<axum::Extension<crate::tls::PeerCertificate>>,
    slot: Option<axum::Extension<AuditSlot>>,
    body: Body,
) -> Response {
    let fault = |status: StatusCode, why: &str| {
        (status, [(header::CONTENT_TYPE, SOAP_XML)], caqh::soap_fault(why)).into_response()
    };
    let Ok(bytes) = axum::body::to_bytes(body, caqh::MAX_ENVELOPE_BYTES).await else {
        return fault(StatusCode::PAYLOAD_TOO_LARGE, "the envelope is larger than 2 MiB");
    };
    let req = match caqh::parse_soap(&bytes) {
        Ok(r) => r,
        Err(why) => return fault(StatusCode::BAD_REQUEST, &why),
    };
    let response = core_answer(&svc, &req, peer.as_ref().map(|p| &p.0), slot.as_ref().map(|s| &s.0)).await;
    (core_status(&response), [(header::CONTENT_TYPE, SOAP_XML)], caqh::soap_response(&response)).into_response()
}

/// The answer to a CORE envelope, whichever its transport: credentials
/// checked, then a batch handed to intake or a real-time exchange.
async fn core_answer(
    svc: &Services,
    req: &caqh::CoreRequest,
    peer: Option<&crate::tls::PeerCertificate>,
    slot: Option<&AuditSlot>,
) -> caqh::CoreResponse {
    let now = time::OffsetDateTime::now_utc();
    match core_partner(svc, req, peer, slot).await {
        Ok(partner) if req.processing_mode.as_deref() == Some("Batch") => core_batch(svc, partner, req, now).await,
        Ok(partner) => {
            let span = realtime_span("core", &partner, &axum::http::HeaderMap::new());
            let (answer, served) = clearway_fastpath::observe(svc.fastpath.core_exchange(&partner, req, now))
                .instrument(span.clone())
                .await;
            span.record("source", served.source.as_str());
            let txn = match req.payload_type.as_deref().unwrap_or("") {
                t if t.starts_with("X12_276") => "276",
                _ => "270",
            };
            let kind = match answer.payload_type.as_str() {
                t if t.starts_with("X12_271") => "271",
                t if t.starts_with("X12_277") => "277",
                t if t.starts_with("X12_999") => "999",
                t if t.starts_with("X12_TA1") => "ta1",
                _ => "problem",
            };
            let request = req.payload.as_deref().unwrap_or_default();
            svc.realtime.record(exchange(&partner, txn, request, answer.payload.as_deref(), kind, now, served));
            answer
        }
        Err(code) => caqh::CoreResponse::error(req, &core_auth_error(code), &caqh::timestamp(now)),
    }
}

/// A CORE batch submission: the payload goes to the durable async path,
/// exactly like `POST /v1/transactions` (the PayloadID is its idempotency
/// key); the answer says which transaction it became, and its 999/277CA
/// follow through the acknowledgement feed.
async fn core_batch(
    svc: &Services,
    partner: PartnerId,
    req: &caqh::CoreRequest,
    now: time::OffsetDateTime,
) -> caqh::CoreResponse {
    let ts = caqh::timestamp(now);
    if let Err(e) = caqh::check(req) {
        return caqh::CoreResponse::error(req, &e, &ts);
    }
    let sub = Submission {
        partner,
        body: bytes::Bytes::from(req.payload.clone().unwrap_or_default()),
        content_type: Some("application/edi-x12".into()),
        idempotency_key: req.payload_id.as_deref().map(|id| format!("core-batch:{}", id.to_ascii_lowercase())),
        channel: Channel::Http,
        traceparent: None,
        audit: None,
    };
    let (code, message): (&'static str, String) = match accept::accept(svc, sub).await {
        Ok(Outcome::Accepted { record, .. }) => ("Success", format!("accepted as transaction {}", record.id)),
        Ok(Outcome::Duplicate { original, .. }) => ("Success", format!("a duplicate of transaction {original}")),
        Ok(Outcome::Replayed { body, .. }) => {
            let id =
                serde_json::from_str::<Value>(&body).ok().and_then(|v| v["transactionId"].as_str().map(str::to_string));
            ("Success", format!("accepted as transaction {}", id.unwrap_or_default()))
        }
        Err(Refusal::IdempotencyMismatch) => {
            ("PayloadIDDuplicate", "this PayloadID was used for a different payload".into())
        }
        Err(Refusal::BadRequest { detail, .. }) => ("PayloadIllegal", detail),
        Err(_) => ("ServerError", "try again later".into()),
    };
    caqh::CoreResponse {
        payload_type: req.payload_type.clone().unwrap_or_default(),
        processing_mode: "Batch".into(),
        error_code: code,
        error_message: message,
        ..caqh::CoreResponse::answering(req, &ts)
    }
}

fn core_auth_error(code: &'static str) -> caqh::EnvelopeError {
    let message = if code == "UnAuthorized" { "user name or password not accepted" } else { "try again later" };
    caqh::EnvelopeError { code, message: message.into() }
}

/// `POST /core/mime`: a CAQH CORE HTTP MIME multipart real-time exchange.
async fn core_mime(
    State(svc): State<Arc<Services>>,
    peer: Option<axum::Extension<crate::tls::PeerCertificate>>,
    slot: Option<axum::Extension<AuditSlot>>,
    mut form: axum::extract::Multipart,
) -> Response {
    let mut fields: Vec<(String, Vec<u8>)> = Vec::new();
    let mut total = 0usize;
    loop {
        match form.next_field().await {
            Ok(Some(field)) => {
                let name = field.name().unwrap_or_default().to_string();
                match field.bytes().await {
                    Ok(b) => {
                        total += b.len();
                        if total > caqh::MAX_ENVELOPE_BYTES || fields.len() > 32 {
                            return Problem::new(
                                StatusCode::PAYLOAD_TOO_LARGE,
                                "too-large",
                                "Payload too large",
                                "at most 2 MiB",
                            )
                            .into_response();
                        }
                        fields.push((name, b.to_vec()));
                    }
                    Err(_) => break,
                }
            }
            Ok(None) => break,
            Err(_) => {
                return Problem::new(
                    StatusCode::BAD_REQUEST,
                    "invalid-input",
                    "Not a MIME multipart form",
                    "expected multipart/form-data with the CORE fields",
                )
                .into_response();
            }
        }
    }
    let req = caqh::from_mime_fields(fields.iter().map(|(n, v)| (n.as_str(), v.clone())));
    let response = core_answer(&svc, &req, peer.as_ref().map(|p| &p.0), slot.as_ref().map(|s| &s.0)).await;
    let digest = clearway_core::crypto::sha256_hex(response.payload.as_deref().unwrap_or_default());
    let boundary = format!("clearway-core-{}", digest.get(..24).unwrap_or_default());
    let (content_type, body) = caqh::mime_response(&response, &boundary);
    (core_status(&response), [(header::CONTENT_TYPE, content_type)], body).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookBody {
    url: String,
    secret: Option<String>,
}

/// Longest webhook URL accepted.
const MAX_WEBHOOK_URL_BYTES: usize = 2048;

fn webhook_problem(detail: &str) -> Problem {
    Problem::new(StatusCode::BAD_REQUEST, "invalid-webhook", "Invalid webhook", detail.to_string())
}

/// `PUT /v1/webhook`: the partner sets where its acknowledgement events go
/// and, optionally, the signing secret (else one is generated and shown
/// in this answer only).
async fn webhook_put(
    State(svc): State<Arc<Services>>,
    Authed(p): Authed,
    body: axum::body::Bytes,
) -> Result<Response, Problem> {
    let body: WebhookBody = serde_json::from_slice(&body)
        .map_err(|_| webhook_problem("expected a JSON object with \"url\" and, optionally, \"secret\""))?;
    let url = body.url.trim();
    let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
    if !scheme_ok || url.len() > MAX_WEBHOOK_URL_BYTES || url.chars().any(char::is_whitespace) {
        return Err(webhook_problem("url must be an http or https URL of at most 2048 bytes"));
    }
    if let Some(s) = &body.secret
        && !(16..=256).contains(&s.len())
    {
        return Err(webhook_problem("secret must be 16 to 256 bytes"));
    }
    let chosen = body.secret.is_some();
    let secret = svc
        .partners
        .set_webhook(&p.id, url, body.secret.map(clearway_core::Sensitive::new))
        .await
        .map_err(|e| port_problem(&e))?;
    let mut answer = json!({ "url": url });
    if !chosen && let Value::Object(m) = &mut answer {
        m.insert("secret".into(), Value::String(secret.expose().clone()));
    }
    Ok(Json(answer).into_response())
}

/// `GET /v1/webhook`: the partner's webhook URL (never the secret).
async fn webhook_get(State(svc): State<Arc<Services>>, Authed(p): Authed) -> Result<Json<Value>, Problem> {
    let (record, _) = svc.partners.get(&p.id).await.map_err(|e| port_problem(&e))?.ok_or_else(Problem::not_found)?;
    let url = record.webhook_url.ok_or_else(Problem::not_found)?;
    Ok(Json(json!({ "url": url })))
}

/// `DELETE /v1/webhook`: stop webhook delivery (the feed stays).
async fn webhook_delete(State(svc): State<Arc<Services>>, Authed(p): Authed) -> Result<StatusCode, Problem> {
    svc.partners.clear_webhook(&p.id).await.map_err(|e| port_problem(&e))?;
    Ok(StatusCode::NO_CONTENT)
}

async fn readyz(State(svc): State<Arc<Services>>) -> Response {
    if !svc.ready.load(Ordering::Relaxed) {
        return Problem::unavailable(5).into_response();
    }
    match svc.ports.queue.depth().await {
        Ok(_) => "ready".into_response(),
        Err(e) => port_problem(&e).into_response(),
    }
}

async fn render_metrics(State(st): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], (st.metrics)()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    fn partner(id: &str, certs: &[&str]) -> PartnerRecord {
        PartnerRecord {
            id: PartnerId::new(id).unwrap(),
            name: None,
            wrapped_key: String::new(),
            operator: false,
            revoked: false,
            created_at: String::new(),
            webhook_url: None,
            webhook_secret: None,
            cert_sha256: certs.iter().map(|c| c.to_string()).collect(),
            shredded_at: None,
            kms_key_id: None,
        }
    }

    fn peer(fp: Option<&str>, bound_to: Option<&str>) -> crate::tls::PeerCertificate {
        crate::tls::PeerCertificate {
            fingerprint: fp.map(str::to_string),
            partner: bound_to.map(|p| PartnerId::new(p).unwrap()),
        }
    }

    /// Every credential check on HTTPS (`Authed`, CORE's UsernameToken)
    /// goes through this.
    #[test]
    fn a_key_and_a_certificate_must_name_the_same_partner() {
        let bound = partner("acme", &["aa"]);
        let free = partner("beta", &[]);
        assert!(certificate_allows(&bound, Some(&peer(Some("aa"), Some("acme")))));
        assert!(!certificate_allows(&bound, None), "plaintext, or no certificate");
        assert!(!certificate_allows(&bound, Some(&peer(None, None))));
        assert!(!certificate_allows(&bound, Some(&peer(Some("bb"), None))), "a certificate not bound to it");
        assert!(certificate_allows(&free, None));
        assert!(certificate_allows(&free, Some(&peer(Some("cc"), None))), "an unbound certificate with a free key");
        assert!(!certificate_allows(&free, Some(&peer(Some("aa"), Some("acme")))), "another partner's certificate");
    }

    fn request(path: &str) -> axum::extract::Request {
        axum::extract::Request::builder().uri(path).body(Body::empty()).unwrap()
    }

    /// Regression: the in-flight bound was a semaphore per route, so
    /// `max_in_flight` requests could be in flight on every route at once.
    #[tokio::test]
    async fn the_in_flight_bound_is_shared_by_all_routes() {
        let release = Arc::new(tokio::sync::Notify::new());
        let held = release.clone();
        let r = Router::new()
            .route(
                "/slow",
                get(move || {
                    let held = held.clone();
                    async move {
                        held.notified().await;
                        "done"
                    }
                }),
            )
            .route("/fast", get(|| async { "fast" }));
        let app = layered(r, 1, Duration::from_secs(30));
        let slow = tokio::spawn(app.clone().oneshot(request("/slow")));
        // Wait until the slow request holds the only permit.
        let mut shed = None;
        for _ in 0..200 {
            let resp = app.clone().oneshot(request("/fast")).await.unwrap();
            if resp.status() == StatusCode::SERVICE_UNAVAILABLE {
                shed = Some(resp);
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let shed = shed.expect("a request on another route was not shed while the bound was taken");
        assert!(shed.headers().contains_key(header::RETRY_AFTER));
        release.notify_one();
        assert_eq!(slow.await.unwrap().unwrap().status(), StatusCode::OK);
        assert_eq!(app.oneshot(request("/fast")).await.unwrap().status(), StatusCode::OK);
    }
}
