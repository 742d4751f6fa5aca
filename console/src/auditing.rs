//! The auditors' screens: the audit log's state (its size, its latest
//! signed checkpoint and how many events it does not cover yet), a search
//! of its events (by actor, tenant, code, time; paged by index), the
//! break-glass review queue with each elevation's justification and a
//! finding to record, and the reasons operators gave for revealing PHI in
//! the console. Auditors only (admins may not read the audit log).

use crate::{Console, Frame, SignedIn, audit, event, page_error, render};
use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use clearway_core::access::Role;
use clearway_core::audit::{AuditEntity, AuditEvent, AuditQuery};
use clearway_core::ports::Table;
use std::sync::Arc;

/// Events a search page shows.
pub const PAGE_EVENTS: usize = 100;

/// The latest verification of the whole log run from the console.
#[derive(Debug, Default)]
pub struct Verification {
    /// When the one running now started.
    pub running_since: Option<String>,
    /// When the last one ended, and what it found.
    pub last: Option<(String, Result<clearway_core::audit::VerifyReport, String>)>,
}

fn now_text() -> String {
    clearway_core::records::timestamp(time::OffsetDateTime::now_utc())
}

/// `POST /console/audit/verify`: recomputes the whole log in the
/// background (every event, stored node and checkpoint, as `clearway audit
/// verify` does); the audit page shows the verdict. One at a time.
pub async fn verify(State(console): State<Arc<Console>>, who: SignedIn) -> Response {
    let status = auditor_only(&who);
    let status = if status == StatusCode::OK && console.verifier.is_none() { StatusCode::NOT_FOUND } else { status };
    let answer = if status == StatusCode::OK { StatusCode::SEE_OTHER } else { status };
    if !audit(&console, event("console.audit_verify", "E", who.actor(), answer)).await {
        return page_error(StatusCode::SERVICE_UNAVAILABLE);
    }
    if status != StatusCode::OK {
        return page_error(status);
    }
    let start = {
        let mut v = console.verification.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let start = v.running_since.is_none();
        if start {
            v.running_since = Some(now_text());
        }
        start
    };
    if start && let Some(verifier) = console.verifier.clone() {
        let console = console.clone();
        tokio::spawn(async move {
            let verdict = tokio::task::spawn_blocking(move || verifier())
                .await
                .unwrap_or_else(|_| Err("the verification stopped before its end".into()));
            match &verdict {
                Ok(r) => {
                    tracing::info!(events = r.size, checkpoints = r.checkpoints, "audit log verified from the console")
                }
                Err(finding) => tracing::error!(finding = %finding, "audit log NOT VERIFIED (from the console)"),
            }
            let mut v = console.verification.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            v.running_since = None;
            v.last = Some((now_text(), verdict));
        });
    }
    Redirect::to("/console/audit").into_response()
}

fn auditor_only(who: &SignedIn) -> StatusCode {
    if who.account.role == Role::Auditor { StatusCode::OK } else { StatusCode::FORBIDDEN }
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct EventQuery {
    #[serde(default)]
    actor: String,
    #[serde(default)]
    tenant: String,
    #[serde(default)]
    code: String,
    /// `YYYY-MM-DD` (UTC).
    #[serde(default)]
    from: String,
    /// Only events after this index.
    after: Option<u64>,
}

#[derive(Debug)]
pub struct EventRow {
    pub index: u64,
    pub recorded: String,
    pub actor: String,
    pub role: String,
    pub code: String,
    pub action: String,
    pub outcome: String,
    pub tenant: String,
    pub entities: String,
    pub purpose: String,
    pub break_glass: bool,
    pub patients: usize,
}

fn row(index: u64, e: &AuditEvent) -> EventRow {
    EventRow {
        index,
        recorded: e.recorded.clone(),
        actor: e.actor.principal.clone(),
        role: e.actor.role.clone(),
        code: e.code.clone(),
        action: e.action.clone(),
        outcome: e.outcome.clone(),
        tenant: e.tenant.clone().unwrap_or_default(),
        entities: e.entity.iter().map(|x| format!("{} {}", x.kind, x.id)).collect::<Vec<_>>().join(", "),
        purpose: e.purpose.clone().unwrap_or_default(),
        break_glass: e.break_glass.is_some(),
        patients: e.patients.len(),
    }
}

#[derive(Debug)]
pub struct Elevation {
    pub id: String,
    pub principal: String,
    pub reason: String,
    pub justification: String,
    pub started: String,
    pub state: &'static str,
}

#[derive(Debug, serde::Deserialize, serde::Serialize)]
pub struct Reveal {
    pub event: String,
    pub account: String,
    pub partner: String,
    pub transaction: String,
    pub reason: String,
    pub at: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
pub struct AuditPage {
    pub frame: Frame,
    pub size: Option<u64>,
    pub checkpoint: Option<String>,
    pub checkpoint_size: Option<u64>,
    pub q_actor: String,
    pub q_tenant: String,
    pub q_code: String,
    pub q_from: String,
    pub rows: Vec<EventRow>,
    pub next: Option<String>,
    pub elevations: Vec<Elevation>,
    pub reveals: Vec<Reveal>,
    pub message: Option<String>,
    /// Whether this process can verify the log, one running since, the
    /// last verdict.
    pub can_verify: bool,
    pub verifying_since: Option<String>,
    pub verified: Option<(String, Result<clearway_core::audit::VerifyReport, String>)>,
}

fn ms_text(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map(clearway_core::records::timestamp)
        .unwrap_or_default()
}

/// `GET /console/audit`.
pub async fn page(State(console): State<Arc<Console>>, who: SignedIn, Query(q): Query<EventQuery>) -> Response {
    let status = auditor_only(&who);
    if !audit(&console, event("console.audit", "R", who.actor(), status)).await {
        return page_error(StatusCode::SERVICE_UNAVAILABLE);
    }
    if status != StatusCode::OK {
        return page_error(status);
    }
    let Some(sink) = console.svc.audit.clone() else { return page_error(StatusCode::SERVICE_UNAVAILABLE) };
    let checkpoint = sink.latest_checkpoint().await.ok().flatten();
    let mut page = AuditPage {
        frame: Frame::new("Audit", Some(&who)),
        size: sink.size().await.ok(),
        checkpoint_size: checkpoint.as_deref().and_then(clearway_core::audit::note_size),
        checkpoint,
        q_actor: q.actor.clone(),
        q_tenant: q.tenant.clone(),
        q_code: q.code.clone(),
        q_from: q.from.clone(),
        rows: vec![],
        next: None,
        elevations: vec![],
        reveals: vec![],
        message: None,
        can_verify: console.verifier.is_some(),
        verifying_since: None,
        verified: None,
    };
    {
        let v = console.verification.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        page.verifying_since = v.running_since.clone();
        page.verified = v.last.clone();
    }
    let from = match q.from.trim() {
        "" => None,
        d => match crate::search::first_id_of(d) {
            Some(_) => clearway_core::audit::instant(&format!("{d}T00:00:00Z")),
            None => {
                page.message = Some("Dates are YYYY-MM-DD.".into());
                None
            }
        },
    };
    let filter = AuditQuery {
        actor: Some(q.actor.trim().to_string()).filter(|s| !s.is_empty()),
        tenant: Some(q.tenant.trim().to_string()).filter(|s| !s.is_empty()),
        from,
        after: q.after,
        ..AuditQuery::default()
    };
    let code = q.code.trim();
    // The code is filtered here: read pages until one is full.
    let mut after = q.after;
    loop {
        let f = AuditQuery { after, ..filter.clone() };
        let Ok(found) = sink.search(&f, PAGE_EVENTS * 4).await else {
            return page_error(StatusCode::SERVICE_UNAVAILABLE);
        };
        let read_to = found.events.last().map(|(i, _)| *i).or(found.next);
        for (i, e) in &found.events {
            if code.is_empty() || e.code.starts_with(code) {
                page.rows.push(row(*i, e));
                if page.rows.len() == PAGE_EVENTS {
                    break;
                }
            }
        }
        let last = page.rows.last().map(|r| r.index);
        if page.rows.len() == PAGE_EVENTS {
            page.next = last.map(|l| after_query(&q, l));
            break;
        }
        match (found.next, read_to) {
            (Some(n), _) => after = Some(n),
            _ => break,
        }
    }
    if page.rows.is_empty() && page.message.is_none() {
        page.message = Some("No events match.".into());
    }
    page.elevations = match clearway_core::access::list_break_glass(console.svc.ports.state.as_ref(), true, 100).await {
        Ok(list) => list
            .into_iter()
            .map(|s| Elevation {
                state: if s.active(crate::now_ms()) { "in force" } else { "ended" },
                id: s.id,
                principal: s.principal,
                reason: s.reason,
                justification: s.justification,
                started: ms_text(s.started_at_ms),
            })
            .collect(),
        Err(_) => return page_error(StatusCode::SERVICE_UNAVAILABLE),
    };
    page.reveals = match console.svc.ports.state.query(Table::Partners, "console-reveal", None, 200).await {
        Ok(items) => items.into_iter().rev().filter_map(|(_, i)| serde_json::from_slice(&i.value).ok()).collect(),
        Err(_) => return page_error(StatusCode::SERVICE_UNAVAILABLE),
    };
    render(page)
}

fn after_query(q: &EventQuery, after: u64) -> String {
    crate::search::query_string(&[
        ("actor", &q.actor),
        ("tenant", &q.tenant),
        ("code", &q.code),
        ("from", &q.from),
        ("after", &after.to_string()),
    ])
}

#[derive(Debug, serde::Deserialize)]
pub struct ReviewForm {
    finding: String,
}

/// `POST /console/audit/break-glass/{id}/review`: an auditor's finding on
/// an ended elevation (`appropriate` or `inappropriate`).
pub async fn review(
    State(console): State<Arc<Console>>,
    who: SignedIn,
    Path(id): Path<String>,
    Form(form): Form<ReviewForm>,
) -> Response {
    let status = auditor_only(&who);
    let finding = form.finding.as_str();
    let valid = matches!(finding, "appropriate" | "inappropriate");
    let outcome = if status != StatusCode::OK {
        status
    } else if !valid {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        let review = clearway_core::access::Review {
            by: who.account.name.clone(),
            at_ms: crate::now_ms(),
            finding: finding.to_string(),
        };
        match clearway_core::access::review_break_glass(console.svc.ports.state.as_ref(), &id, review, crate::now_ms())
            .await
        {
            Ok(Some(_)) => StatusCode::SEE_OTHER,
            Ok(None) => StatusCode::NOT_FOUND,
            Err(e) if e.kind() == clearway_core::error::ErrorKind::PreconditionFailed => StatusCode::CONFLICT,
            Err(e) if e.kind() == clearway_core::error::ErrorKind::InvalidInput => StatusCode::FORBIDDEN,
            Err(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    };
    let mut e = event("console.break_glass_review", "U", who.actor(), outcome);
    e.entity.push(AuditEntity { kind: "break_glass".into(), id: id.clone() });
    if !audit(&console, e).await {
        return page_error(StatusCode::SERVICE_UNAVAILABLE);
    }
    if outcome == StatusCode::SEE_OTHER {
        return Redirect::to("/console/audit").into_response();
    }
    page_error(outcome)
}
