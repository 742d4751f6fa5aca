//! The transaction page: what happened to one transaction, stage by stage,
//! its claims with their 277CA statuses (ours and the payer's) and their
//! payer batches, its issues, and the file itself in the X12 viewer —
//! masked unless an operator with a `phi_view` grant reveals it with a
//! typed reason (an audit event; the reason is kept for the auditors).

use crate::{Console, Frame, SignedIn, audit, event, page_error, render};
use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use clearway_core::PartnerId;
use clearway_core::access::Role;
use clearway_core::audit::AuditEntity;
use clearway_core::ports::{Condition, Key, Table, WriteOp};
use clearway_core::records::{Format, TransactionRecord};
use clearway_formats::x12::viewer::{Shown, ViewOptions, ViewSegment, Viewed, view};
use clearway_ingest::lookup;
use std::collections::HashMap;
use std::sync::Arc;

/// The least and most a reveal's reason says, in characters.
pub const MIN_REASON_CHARS: usize = 20;
pub const MAX_REASON_CHARS: usize = 1000;
/// The purpose of use a reveal is recorded under.
const REVEAL_PURPOSE: &str = "HOPERAT";

/// One line of the timeline.
#[derive(Debug)]
pub struct Stage {
    pub at: String,
    pub what: String,
    pub detail: String,
}

/// One claim, as its record and lineage say.
#[derive(Debug)]
pub struct ClaimRow {
    pub n: usize,
    pub id: String,
    pub payer: String,
    pub charge: String,
    pub status: String,
    pub ours: String,
    pub payers: String,
    pub batch: String,
    pub payer_claim: String,
    /// The patient control number, when revealed.
    pub pcn: Option<String>,
}

/// A segment of the viewer, ready to draw.
#[derive(Debug)]
pub struct Line {
    pub seg: ViewSegment,
    pub indent: &'static str,
    /// For a CLM: its claim's statuses (ours, the payer's).
    pub claim_status: Option<String>,
}

#[derive(Template)]
#[template(path = "transaction.html")]
pub struct TransactionPage {
    pub frame: Frame,
    pub r: TransactionRecord,
    pub stages: Vec<Stage>,
    pub claims: Vec<ClaimRow>,
    pub viewer: Option<Viewed>,
    pub lines: Vec<Line>,
    pub viewer_note: Option<&'static str>,
    pub revealed: bool,
    pub may_reveal: bool,
    pub reveal_error: Option<&'static str>,
    pub min_reason: usize,
    /// The transaction's trace (W3C trace id), to find its spans in the
    /// tracing backend.
    pub trace_id: Option<String>,
    /// The file's control numbers, with what answers each (ISA13 → our
    /// TA1/999; MSH-10 → our ACK's MSA-2).
    pub controls: Vec<String>,
}

fn indent(depth: u8) -> &'static str {
    ["d0", "d1", "d2", "d3", "d4", "d5", "d6", "d7"][usize::from(depth.min(7))]
}

impl TransactionPage {
    /// `•` per masked character, at most twelve.
    pub fn masked(&self, n: usize) -> String {
        "•".repeat(n.clamp(1, 12))
    }

    pub fn clear<'a>(&self, v: &'a Shown) -> Option<&'a str> {
        match v {
            Shown::Clear(s) => Some(s),
            Shown::Masked(_) => None,
        }
    }

    pub fn masked_len(&self, v: &Shown) -> usize {
        match v {
            Shown::Masked(n) => *n,
            Shown::Clear(_) => 0,
        }
    }
}

/// The patients' own numbers a revealed view shows, for the reveal's audit
/// event: each claim's CLM01 (X12), each PID-3 identifier (HL7), each
/// Patient resource's identifier values (FHIR).
fn shown_patient_ids(v: &Viewed) -> Vec<String> {
    let clear = |s: &ViewSegment, label: &str| -> Vec<String> {
        s.elements
            .iter()
            .filter(|e| e.label == label)
            .filter_map(|e| match &e.value {
                Shown::Clear(v) if !v.is_empty() => Some(v.clone()),
                _ => None,
            })
            .collect()
    };
    let mut out = Vec::new();
    let mut resource = "";
    for s in &v.segments {
        if s.depth == 0 {
            resource = s.id.as_str();
        }
        match s.id.as_str() {
            "CLM" => out.extend(clear(s, "CLM01")),
            "PID" => {
                for field in clear(s, "PID-3") {
                    out.extend(
                        field
                            .split('~')
                            .filter_map(|r| r.split('^').next())
                            .filter(|x| !x.is_empty())
                            .map(str::to_string),
                    );
                }
            }
            "identifier" if resource == "Patient" => out.extend(
                s.elements
                    .iter()
                    .filter(|e| e.label.starts_with("identifier[") && e.label.ends_with("].value"))
                    .filter_map(|e| match &e.value {
                        Shown::Clear(v) => Some(v.clone()),
                        Shown::Masked(_) => None,
                    }),
            ),
            _ => {}
        }
    }
    out
}

/// One stage per webhook attempt kept for acknowledgement `ack`.
fn attempt_stages(ack: &str, t: &clearway_core::records::WebhookAttempts) -> Vec<Stage> {
    let first = t.total as usize - t.attempts.len().min(t.total as usize);
    t.attempts
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let n = first + i + 1;
            let outcome = match &a.error {
                None => "answered 2xx".to_string(),
                Some(e) => e.clone(),
            };
            let mut detail = format!("acknowledgement {ack}: attempt {n}, {outcome} in {} ms", a.duration_ms);
            if i == 0 && first > 0 {
                detail.push_str(&format!(" ({first} earlier attempts not kept)"));
            }
            let what = if a.delivered { "webhook delivered" } else { "webhook attempt failed" };
            Stage { at: a.at.clone(), what: what.into(), detail }
        })
        .collect()
}

/// Reads everything the page shows (the payload opened only to draw the
/// viewer: masked unless `reveal`).
async fn build(
    console: &Console,
    who: &SignedIn,
    r: TransactionRecord,
    reveal: bool,
) -> Result<TransactionPage, clearway_core::error::PortError> {
    let svc = &console.svc;
    let lineage = lookup::lineage(svc, &r.id).await?;
    let acks = lookup::acks(svc, &r.id).await?;
    let trace_id = r.traceparent.as_deref().and_then(clearway_core::telemetry::trace_id);
    let mut stages = vec![Stage {
        at: r.received_at.clone(),
        what: "received".into(),
        detail: match &trace_id {
            Some(t) => format!("{} bytes over {}, stored and queued; trace {t}", r.size_bytes, r.channel),
            None => format!("{} bytes over {}, stored and queued", r.size_bytes, r.channel),
        },
    }];
    // Acknowledgements reach the submitter by its webhook (when it has
    // one: delivered once the webhook's cursor has passed the ack's feed
    // entry) or when it reads `GET /v1/acks`.
    let webhook = match svc.partners.get(&r.partner).await? {
        Some((p, _)) if p.webhook_url.is_some() => Some(
            svc.ports
                .state
                .get(&clearway_core::records::webhook_cursor_key(&r.partner))
                .await?
                .map(|i| String::from_utf8_lossy(&i.value).into_owned())
                .unwrap_or_default(),
        ),
        _ => None,
    };
    // The attempts behind an acknowledgement still waiting.
    let attempts = match &webhook {
        Some(_) => svc
            .ports
            .state
            .get(&clearway_core::records::webhook_status_key(&r.partner))
            .await?
            .and_then(|i| serde_json::from_slice::<clearway_core::records::WebhookStatus>(&i.value).ok())
            .filter(|s| s.failures > 0)
            .map(|s| {
                format!(
                    " ({} failed attempts in a row, the last at {}: {}; next at {})",
                    s.failures,
                    s.last_failure_at.unwrap_or_default(),
                    s.last_error.unwrap_or_default(),
                    s.next_attempt_at.unwrap_or_default()
                )
            }),
        None => None,
    };
    // Each webhook attempt at delivering them.
    let tried: HashMap<String, clearway_core::records::WebhookAttempts> = match &webhook {
        Some(_) => svc
            .ports
            .state
            .query(Table::Counters, &clearway_core::records::WebhookAttempts::partition(&r.id), None, 1000)
            .await?
            .into_iter()
            .filter_map(|(ack, i)| Some((ack, serde_json::from_slice(&i.value).ok()?)))
            .collect(),
        None => HashMap::new(),
    };
    for a in &acks {
        if let Some(t) = tried.get(&a.id) {
            stages.extend(attempt_stages(&a.id, t));
        }
        let what =
            if a.id.contains("-payer-") { format!("payer's {} forwarded", a.kind) } else { format!("{} sent", a.kind) };
        let cursor = a.feed_cursor.clone().unwrap_or_else(|| a.legacy_cursor());
        let reach = match &webhook {
            Some(delivered) if delivered.as_str() >= cursor.as_str() => {
                "delivered to the partner's webhook".to_string()
            }
            Some(_) => format!(
                "waiting for the partner's webhook (retried until it answers 2xx){}",
                attempts.as_deref().unwrap_or("")
            ),
            None => "in the partner's acknowledgement feed (GET /v1/acks; no webhook set)".to_string(),
        };
        stages.push(Stage { at: a.created_at.clone(), what, detail: format!("acknowledgement {}; {reach}", a.id) });
    }
    // Deliveries to the systems its messages were routed to.
    if !r.destinations.is_empty() {
        for d in clearway_core::systems::statuses(&svc.ports, r.id.as_str(), &r.destinations).await? {
            let mut detail = format!("{}: {} delivered", d.destination, d.delivered);
            if d.dead_lettered > 0 {
                detail.push_str(&format!(", {} dead-lettered", d.dead_lettered));
            }
            detail.push_str(&format!(", {} attempts", d.attempts));
            if let Some(a) = &d.answer {
                detail.push_str(&format!("; answered {a}"));
            }
            if let Some(e) = &d.last_error {
                detail.push_str(&format!("; last error: {e}"));
            }
            stages.push(Stage { at: d.at.clone(), what: format!("delivery {}", d.state.replace('-', " ")), detail });
        }
    }
    for (claim, l) in &lineage {
        let mut detail = format!("claim {claim} in batch {}", l.batch);
        if let (Some(i), Some(s)) = (&l.interchange, &l.set) {
            detail.push_str(&format!(" (ISA13 {i}, ST02 {s}, position {})", l.position.unwrap_or(0)));
        }
        if let Some(p) = &l.payer_status {
            detail.push_str(&format!("; payer says {p}"));
        }
        stages.push(Stage { at: l.updated_at.clone(), what: l.status.replace('_', " "), detail });
    }
    if r.status.is_terminal() {
        let detail = match &r.failure {
            Some(f) => format!("dead-lettered after {} attempts: {f}", r.attempts),
            None => {
                let plural = |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
                format!(
                    "{}, {}",
                    plural(r.claim_count.max(r.claims.len()), "claim", "claims"),
                    plural(r.issues.len(), "issue", "issues")
                )
            }
        };
        stages.push(Stage { at: r.updated_at.clone(), what: r.status.as_str().replace('_', " "), detail });
    }
    stages.sort_by(|a, b| a.at.cmp(&b.at));
    let claims: Vec<ClaimRow> = r
        .claims
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let l = lineage.get(&c.id);
            ClaimRow {
                n: i + 1,
                id: c.id.clone(),
                payer: c.payer_id.clone().unwrap_or_default(),
                charge: c.total_charge.clone(),
                status: l.map_or(c.status.clone(), |l| l.status.clone()).replace('_', " "),
                ours: c.status_code.clone().unwrap_or_default(),
                payers: l.and_then(|l| l.payer_status.clone()).unwrap_or_default(),
                batch: l.map(|l| l.batch.clone()).unwrap_or_default(),
                payer_claim: l.and_then(|l| l.payer_claim_control_number.clone()).unwrap_or_default(),
                pcn: reveal.then(|| c.patient_control_number.expose().clone()),
            }
        })
        .collect();
    let (viewer, viewer_note) = if r.format == Format::Ncpdp {
        (None, Some("The viewer reads X12, HL7 v2 and FHIR; an NCPDP batch is shown by its record only."))
    } else {
        match lookup::payload(svc, &r).await? {
            Some(bytes) => {
                // A TA1 was sent: its notes are pinned too.
                let interchange_notes = acks.iter().any(|a| a.kind == "ta1");
                let options = ViewOptions { reveal, interchange_notes, ..ViewOptions::default() };
                let format = r.format;
                let viewed = tokio::task::spawn_blocking(move || match format {
                    Format::Hl7 => clearway_formats::hl7::viewer::view(&bytes, options),
                    Format::Fhir => clearway_formats::fhir::viewer::view(&bytes, options),
                    _ => view(&bytes, options),
                })
                .await
                .unwrap_or_default();
                (Some(viewed), None)
            }
            None => (None, Some("The payload can no longer be opened: its partner's keys were destroyed.")),
        }
    };
    let kinds: Vec<&str> = acks.iter().map(|a| a.kind.as_str()).collect();
    let answered = |k: &str| if kinds.contains(&k) { "answered" } else { "not answered yet" };
    let controls: Vec<String> = viewer
        .as_ref()
        .map(|v| {
            v.segments
                .iter()
                .flat_map(|s| s.elements.iter().map(move |e| (s, e)))
                .filter_map(|(_, e)| match (e.label.as_str(), &e.value) {
                    ("ISA13", Shown::Clear(n)) => Some(format!(
                        "ISA13 {n}: 999 {}, TA1 {}",
                        answered("999"),
                        if kinds.contains(&"ta1") { "sent" } else { "not asked for" }
                    )),
                    ("ST02", Shown::Clear(n)) => Some(format!("ST02 {n}")),
                    ("MSH-10", Shown::Clear(n)) => Some(format!("MSH-10 {n}: our ACK's MSA-2 {}", answered("hl7"))),
                    _ => None,
                })
                .take(20)
                .collect()
        })
        .unwrap_or_default();
    // A claim's statuses next to its CLM, when the file's claims are the
    // record's (same count, same order).
    let lines = viewer
        .as_ref()
        .map(|v| {
            let pinned = v.claims == claims.len();
            v.segments
                .iter()
                .map(|s| Line {
                    seg: s.clone(),
                    indent: indent(s.depth),
                    claim_status: s.claim.filter(|_| pinned).and_then(|n| claims.get(n - 1)).map(|c| {
                        let mut t = format!("claim {}: {}", c.n, c.status);
                        if !c.ours.is_empty() {
                            t.push_str(&format!(", our 277CA {}", c.ours));
                        }
                        if !c.payers.is_empty() {
                            t.push_str(&format!(", payer's {}", c.payers));
                        }
                        t
                    }),
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(TransactionPage {
        frame: Frame::new("Transaction", Some(who)),
        r,
        stages,
        claims,
        viewer,
        lines,
        viewer_note,
        revealed: reveal,
        may_reveal: who.account.phi_view,
        reveal_error: None,
        min_reason: MIN_REASON_CHARS,
        trace_id,
        controls,
    })
}

fn entities(partner: &PartnerId, id: &str) -> Vec<AuditEntity> {
    vec![
        AuditEntity { kind: "partner".into(), id: partner.to_string() },
        AuditEntity { kind: "transaction".into(), id: id.to_string() },
    ]
}

async fn load(console: &Console, partner: &str, id: &str) -> Result<(PartnerId, TransactionRecord), Response> {
    let Ok(p) = PartnerId::new(partner) else { return Err(page_error(StatusCode::NOT_FOUND)) };
    match lookup::record(&console.svc, &p, id).await {
        Ok(Some(r)) => Ok((p, r)),
        Ok(None) => Err(page_error(StatusCode::NOT_FOUND)),
        Err(e) => {
            tracing::warn!(error = %clearway_core::error::chain(&e), "console transaction unavailable");
            Err(page_error(StatusCode::SERVICE_UNAVAILABLE))
        }
    }
}

/// `GET /console/transactions/{partner}/{id}` (operators).
pub async fn page(
    State(console): State<Arc<Console>>,
    who: SignedIn,
    Path((partner, id)): Path<(String, String)>,
) -> Response {
    let allowed = who.account.role == Role::Operator;
    let status = if allowed { StatusCode::OK } else { StatusCode::FORBIDDEN };
    let mut e = event("console.transaction", "R", who.actor(), status);
    e.tenant = PartnerId::new(&partner).ok().map(|p| p.to_string());
    if let Ok(p) = PartnerId::new(&partner) {
        e.entity = entities(&p, &id);
    }
    if !audit(&console, e).await {
        return page_error(StatusCode::SERVICE_UNAVAILABLE);
    }
    if !allowed {
        return page_error(StatusCode::FORBIDDEN);
    }
    let (_, r) = match load(&console, &partner, &id).await {
        Ok(x) => x,
        Err(res) => return res,
    };
    match build(&console, &who, r, false).await {
        Ok(page) => render(page),
        Err(e) => {
            tracing::warn!(error = %clearway_core::error::chain(&e), "console transaction unavailable");
            page_error(StatusCode::SERVICE_UNAVAILABLE)
        }
    }
}

#[derive(serde::Deserialize)]
pub struct RevealForm {
    reason: String,
}

/// What an auditor reads about a reveal (the event names the reveal by its
/// id; the reason stays out of the log: it is free text a person typed).
#[derive(serde::Serialize)]
struct RevealRecord<'a> {
    event: &'a str,
    account: &'a str,
    partner: &'a str,
    transaction: &'a str,
    reason: &'a str,
    at: &'a str,
}

/// `POST /console/transactions/{partner}/{id}/reveal`: the same page with
/// every value in clear, for an operator with a `phi_view` grant who gave a
/// reason. The reveal is an audit event naming the patients (as tokens)
/// before anything is shown; the answer is not cached and its URL holds
/// nothing.
pub async fn reveal(
    State(console): State<Arc<Console>>,
    who: SignedIn,
    Path((partner, id)): Path<(String, String)>,
    Form(form): Form<RevealForm>,
) -> Response {
    let allowed = who.account.role == Role::Operator && who.account.phi_view;
    if !allowed {
        // Refused (and audited) before anything is read: whether the
        // transaction exists is not the caller's to learn.
        let mut e = event("console.reveal", "R", who.actor(), StatusCode::FORBIDDEN);
        e.purpose = Some(REVEAL_PURPOSE.into());
        if let Ok(p) = PartnerId::new(&partner) {
            e.tenant = Some(p.to_string());
            e.entity = entities(&p, &id);
            e.entity.push(AuditEntity { kind: "payload".into(), id: id.clone() });
        }
        if !audit(&console, e).await {
            return page_error(StatusCode::SERVICE_UNAVAILABLE);
        }
        return page_error(StatusCode::FORBIDDEN);
    }
    let (p, r) = match load(&console, &partner, &id).await {
        Ok(x) => x,
        Err(res) => return res,
    };
    let reason = form.reason.trim();
    let n = reason.chars().count();
    let status = if !(MIN_REASON_CHARS..=MAX_REASON_CHARS).contains(&n) {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let reveal = status == StatusCode::OK;
    // The page is built (the payload read) before the event is recorded, so
    // that the event names every patient it shows: the record's claims once
    // processed, and the file's own claim numbers (CLM01, as the viewer
    // read them) before. Nothing is shown unless the event is recorded.
    let mut page = match build(&console, &who, r.clone(), reveal).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %clearway_core::error::chain(&e), "console transaction unavailable");
            return page_error(StatusCode::SERVICE_UNAVAILABLE);
        }
    };
    let mut e = event("console.reveal", "R", who.actor(), status);
    e.tenant = Some(p.to_string());
    e.purpose = Some(REVEAL_PURPOSE.into());
    e.entity = entities(&p, r.id.as_str());
    e.entity.push(AuditEntity { kind: "payload".into(), id: r.id.to_string() });
    if reveal {
        let mut tokens = lookup::patient_tokens(&console.svc, &r);
        if let Some(v) = page.viewer.as_ref() {
            for id in shown_patient_ids(v) {
                tokens.push(console.svc.partners.index_token(&id));
            }
        }
        tokens.sort();
        tokens.dedup();
        e.patients = tokens;
        let record = RevealRecord {
            event: &e.id,
            account: &who.account.name,
            partner: p.as_str(),
            transaction: r.id.as_str(),
            reason,
            at: &e.recorded,
        };
        let write = serde_json::to_vec(&record).map(|v| WriteOp::Put {
            key: Key::new(Table::Partners, "console-reveal", e.id.clone()),
            value: bytes::Bytes::from(v),
            expires_at: None,
            condition: Condition::NotExists,
            owner: None,
        });
        let stored = match write {
            Ok(op) => console.svc.ports.state.write(vec![op]).await.is_ok(),
            Err(_) => false,
        };
        if !stored {
            return page_error(StatusCode::SERVICE_UNAVAILABLE);
        }
    }
    if !audit(&console, e).await {
        return page_error(StatusCode::SERVICE_UNAVAILABLE);
    }
    if !reveal {
        page.reveal_error = Some("Say why, in at least 20 characters, before the values are shown.");
    }
    let mut res = render(page);
    *res.status_mut() = status;
    res
}
