//! Subscribed systems (operators): each destination's queue as its
//! deliverer last published it, and its dead letters — the list *is* the
//! dry run: a replay puts back every entry listed that names messages, in
//! order, and leaves the unreadable ones for a person to look at. A replay
//! needs the operator's reason and the count they saw (a list that changed
//! since is shown again, `409`), and is an audit event recorded before the
//! entries move.

use crate::{Console, Frame, SignedIn, audit, event, page_error, render};
use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use clearway_core::access::Role;
use clearway_core::audit::AuditEntity;
use clearway_core::ports::{Condition, Key, Table, WriteOp};
use clearway_core::systems;
use std::sync::Arc;

/// Dead letters listed per destination.
pub const LISTED: usize = 100;

#[derive(Debug)]
pub struct Letter {
    pub transaction: String,
    pub partner: String,
    /// `ADT^A01` or the FHIR resource type.
    pub label: String,
    /// MSH-10 or the resource id.
    pub control_id: String,
    pub messages: usize,
    pub attempts: u32,
    pub reason: String,
    /// What a replay does with it.
    pub would: &'static str,
}

#[derive(Debug)]
pub struct DestinationView {
    pub name: String,
    pub kind: &'static str,
    pub waiting: Option<u64>,
    pub breaker_open: Option<bool>,
    pub delivered_total: Option<u64>,
    pub last_error: Option<String>,
    pub letters: Vec<Letter>,
    /// Entries a replay would put back.
    pub replayable: usize,
    /// More dead letters than listed.
    pub more: bool,
}

#[derive(Template)]
#[template(path = "destinations.html")]
pub struct DestinationsPage {
    pub frame: Frame,
    pub destinations: Vec<DestinationView>,
    pub message: Option<String>,
    pub min_reason: usize,
}

fn operator_only(who: &SignedIn) -> StatusCode {
    if who.account.role == Role::Operator { StatusCode::OK } else { StatusCode::FORBIDDEN }
}

async fn gather(console: &Console) -> Result<Vec<DestinationView>, ()> {
    let ports = &console.svc.ports;
    let mut out = Vec::new();
    for d in &console.svc.config.systems.destinations {
        let depth = systems::depth(ports, &d.name).await.map_err(|_| ())?;
        let listed = systems::dead_letters(ports, &d.name, LISTED + 1).await.map_err(|_| ())?;
        let more = listed.len() > LISTED;
        let letters: Vec<Letter> = listed
            .into_iter()
            .take(LISTED)
            .map(|(_, e)| Letter {
                would: if e.transaction.is_empty() || e.messages.is_empty() {
                    "stay (unreadable: look at it)"
                } else {
                    "go back to the end of the queue"
                },
                transaction: e.transaction,
                partner: e.partner,
                label: e.label,
                control_id: e.control_id,
                messages: e.messages.len(),
                attempts: e.attempts,
                reason: e.reason.unwrap_or_default(),
            })
            .collect();
        let replayable =
            if more { systems::replay(ports, &d.name, true).await.map_err(|_| ())? } else { count(&letters) };
        out.push(DestinationView {
            name: d.name.clone(),
            kind: d.transport.kind(),
            waiting: depth.as_ref().map(|q| q.waiting),
            breaker_open: depth.as_ref().map(|q| q.breaker_open),
            delivered_total: depth.as_ref().map(|q| q.delivered_total),
            last_error: depth.and_then(|q| q.last_error),
            letters,
            replayable,
            more,
        });
    }
    Ok(out)
}

fn count(letters: &[Letter]) -> usize {
    letters.iter().filter(|l| l.would.starts_with("go back")).count()
}

async fn listing(console: &Console, who: &SignedIn, message: Option<String>) -> Response {
    match gather(console).await {
        Ok(destinations) => render(DestinationsPage {
            frame: Frame::new("Subscribed systems", Some(who)),
            destinations,
            message,
            min_reason: crate::transaction::MIN_REASON_CHARS,
        }),
        Err(()) => page_error(StatusCode::SERVICE_UNAVAILABLE),
    }
}

/// `GET /console/destinations`.
pub async fn page(State(console): State<Arc<Console>>, who: SignedIn) -> Response {
    let status = operator_only(&who);
    if !audit(&console, event("console.destinations", "R", who.actor(), status)).await {
        return page_error(StatusCode::SERVICE_UNAVAILABLE);
    }
    if status != StatusCode::OK {
        return page_error(status);
    }
    listing(&console, &who, None).await
}

#[derive(Debug, serde::Deserialize)]
pub struct ReplayForm {
    #[serde(default)]
    reason: String,
    /// The count the operator was shown.
    count: usize,
}

/// `POST /console/destinations/{name}/replay`.
pub async fn replay(
    State(console): State<Arc<Console>>,
    who: SignedIn,
    Path(name): Path<String>,
    Form(form): Form<ReplayForm>,
) -> Response {
    let status = operator_only(&who);
    if status != StatusCode::OK {
        audit(&console, event("console.destination_replay", "E", who.actor(), status)).await;
        return page_error(status);
    }
    let Some(d) = console.svc.config.systems.destination(&name) else {
        audit(&console, event("console.destination_replay", "E", who.actor(), StatusCode::NOT_FOUND)).await;
        return page_error(StatusCode::NOT_FOUND);
    };
    let reason = form.reason.trim();
    let n = reason.chars().count();
    if !(crate::transaction::MIN_REASON_CHARS..=crate::transaction::MAX_REASON_CHARS).contains(&n) {
        let mut res = listing(
            &console,
            &who,
            Some(format!(
                "Say why in {} to {} characters; nothing was replayed.",
                crate::transaction::MIN_REASON_CHARS,
                crate::transaction::MAX_REASON_CHARS
            )),
        )
        .await;
        *res.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
        return res;
    }
    let now = match systems::replay(&console.svc.ports, &d.name, true).await {
        Ok(n) => n,
        Err(_) => return page_error(StatusCode::SERVICE_UNAVAILABLE),
    };
    if now != form.count || now == 0 {
        let mut res = listing(
            &console,
            &who,
            Some(format!("The dead letters changed since you looked ({now} now); nothing was replayed.")),
        )
        .await;
        *res.status_mut() = StatusCode::CONFLICT;
        return res;
    }
    // Recorded before anything moves: no replay without its event. The
    // reason is the operator's own words: kept beside the log (like a
    // reveal's), under the event's id.
    let mut e = event("console.destination_replay", "E", who.actor(), StatusCode::SEE_OTHER);
    e.entity.push(AuditEntity { kind: "destination".into(), id: d.name.clone() });
    let record = serde_json::json!({
        "event": e.id,
        "account": who.account.name,
        "destination": d.name,
        "deadLetters": now,
        "reason": reason,
        "at": e.recorded,
    });
    let put = WriteOp::Put {
        key: Key::new(Table::Partners, "console-destination-replay", e.id.clone()),
        value: bytes::Bytes::from(record.to_string()),
        expires_at: None,
        condition: Condition::NotExists,
        owner: None,
    };
    if console.svc.ports.state.write(vec![put]).await.is_err() || !audit(&console, e).await {
        return page_error(StatusCode::SERVICE_UNAVAILABLE);
    }
    let replayed = match systems::replay(&console.svc.ports, &d.name, false).await {
        Ok(n) => n,
        Err(_) => return page_error(StatusCode::SERVICE_UNAVAILABLE),
    };
    metrics::counter!("clearway_destination_replayed_total", "destination" => d.name.clone())
        .increment(replayed as u64);
    console.svc.deliveries.notify_waiters();
    tracing::info!(destination = %d.name, replayed, account = %who.account.name, "destination dead letters replayed from the console");
    Redirect::to("/console/destinations").into_response()
}
