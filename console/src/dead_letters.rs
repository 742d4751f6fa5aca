//! Dead letters (operators): the list, filtered by partner, payer, reason
//! and time;
//! a **dry run** that lists exactly what a replay of that selection would
//! do to each (re-queue it, or skip it because it is no longer
//! dead-lettered) and how many of its effects are already recorded (claims
//! routed before it failed: the workers' idempotency keys keep them from
//! being done twice); then a **replay job** for that selection, started with
//! the operator's reason and the count they saw (a selection that changed
//! meanwhile is shown again, not replayed), run at a rate the operator
//! chose, pausable, with its progress on its own page. Starting, pausing,
//! resuming and each transaction replayed are audit events.
//!
//! Jobs live in the state store (`console-replay`), so any `serve` process
//! runs them ([`run_replays`]) and a restart resumes them; each step
//! advances the job with a compare-and-set, and a replay itself is
//! conditional on the record's version ([`clearway_core::dlq::replay`]), so
//! no transaction is re-queued twice by one job.

use crate::{Console, Frame, SignedIn, audit, event, page_error, render};
use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use bytes::Bytes;
use clearway_core::access::Role;
use clearway_core::audit::AuditEntity;
use clearway_core::ids::TransactionId;
use clearway_core::ports::{Condition, Key, Table, WriteOp};
use clearway_core::records::DeadLetter;
use clearway_core::{PartnerId, dlq};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Most dead letters one selection (and so one job) holds.
pub const MAX_SELECTION: usize = 1000;
/// Replays a second a job may be given.
pub const MAX_RATE: u32 = 50;
const JOBS: &str = "console-replay";
/// One marker per job not done yet: what the runner reads (done jobs stay
/// in [`JOBS`] without it).
const ACTIVE: &str = "console-replay-active";

/// Which dead letters: all fields optional, none holds PHI.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Filter {
    #[serde(default)]
    pub partner: String,
    /// A payer id the transaction's claims name
    /// ([`DeadLetter::payers`]).
    #[serde(default)]
    pub payer: String,
    /// Words the reason contains (reasons are codes and messages, no PHI).
    #[serde(default)]
    pub contains: String,
    /// `YYYY-MM-DD` (UTC): dead-lettered on or after.
    #[serde(default)]
    pub since: String,
}

/// The dead letters `f` selects, oldest first (at most [`MAX_SELECTION`]
/// + 1, so a caller can tell there are more).
async fn select(console: &Console, f: &Filter) -> Result<Vec<DeadLetter>, &'static str> {
    let partner = match f.partner.trim() {
        "" => None,
        p => Some(PartnerId::new(p).map_err(|_| "No such partner.")?),
    };
    let since = match f.since.trim() {
        "" => None,
        d => {
            let format = time::macros::format_description!("[year]-[month]-[day]");
            let day = time::Date::parse(d, &format).map_err(|_| "Dates are YYYY-MM-DD.")?;
            Some((day.midnight().assume_utc().unix_timestamp_nanos() / 1_000_000) as i64)
        }
    };
    let all = dlq::list(&console.svc.ports.state, partner.as_ref(), Some(&f.payer), since, 100_000)
        .await
        .map_err(|_| "The dead letters cannot be read now.")?;
    let words = f.contains.trim().to_ascii_lowercase();
    Ok(all
        .into_iter()
        .filter(|d| words.is_empty() || d.reason.to_ascii_lowercase().contains(&words))
        .take(MAX_SELECTION + 1)
        .collect())
}

#[derive(Debug)]
pub struct Letter {
    pub partner: String,
    pub id: String,
    pub payers: String,
    pub reason: String,
    pub attempts: u32,
    pub at: String,
    /// Dry run: what a replay would do.
    pub would: String,
    /// Dry run: effects already recorded.
    pub effects: usize,
}

fn letter(d: &DeadLetter) -> Letter {
    Letter {
        partner: d.partner.to_string(),
        id: d.transaction.to_string(),
        payers: d.payers.join(", "),
        reason: d.reason.clone(),
        attempts: d.attempts,
        at: d.dead_lettered_at.clone(),
        would: String::new(),
        effects: 0,
    }
}

#[derive(Template)]
#[template(path = "dead_letters.html")]
pub struct DeadLettersPage {
    pub frame: Frame,
    pub filter: Filter,
    pub partners: Vec<String>,
    /// The configured payers (suggestions; any id may be typed).
    pub payers: Vec<String>,
    pub letters: Vec<Letter>,
    pub more: bool,
    pub dry_run: bool,
    pub replayable: usize,
    pub message: Option<String>,
    pub max: usize,
    pub max_rate: u32,
}

async fn listing(console: &Console, who: &SignedIn, filter: Filter, dry_run: bool) -> Response {
    let partners =
        console.svc.partners.list().await.unwrap_or_default().into_iter().map(|p| p.id.to_string()).collect();
    let mut page = DeadLettersPage {
        frame: Frame::new("Dead letters", Some(who)),
        filter: filter.clone(),
        partners,
        payers: console.svc.config.payers.keys().cloned().collect(),
        letters: vec![],
        more: false,
        dry_run,
        replayable: 0,
        message: None,
        max: MAX_SELECTION,
        max_rate: MAX_RATE,
    };
    match select(console, &filter).await {
        Ok(mut found) => {
            page.more = found.len() > MAX_SELECTION;
            found.truncate(MAX_SELECTION);
            for d in &found {
                let mut l = letter(d);
                if dry_run {
                    l.effects = effects_recorded(console, &d.transaction).await;
                    match dlq::replay(&console.svc.ports, &d.transaction, true).await {
                        Ok(_) if l.effects > 0 => {
                            l.would = format!(
                                "re-queue for processing; its {} effects already recorded are found as duplicates, not done again",
                                l.effects
                            );
                            page.replayable += 1;
                        }
                        Ok(_) => {
                            l.would = "re-queue for processing".into();
                            page.replayable += 1;
                        }
                        Err(_) => l.would = "skip: no longer dead-lettered".into(),
                    }
                }
                page.letters.push(l);
            }
            if page.letters.is_empty() {
                page.message = Some("No dead letters match.".into());
            }
        }
        Err(m) => page.message = Some(m.into()),
    }
    render(page)
}

/// Effects (claims routed) a transaction recorded before it failed.
async fn effects_recorded(console: &Console, id: &TransactionId) -> usize {
    console.svc.ports.state.query(Table::Effects, id.as_str(), None, 1000).await.map_or(0, |p| p.len())
}

fn operator_only(who: &SignedIn) -> StatusCode {
    if who.account.role == Role::Operator { StatusCode::OK } else { StatusCode::FORBIDDEN }
}

/// `GET /console/dead-letters`.
pub async fn page(State(console): State<Arc<Console>>, who: SignedIn, Query(filter): Query<Filter>) -> Response {
    let status = operator_only(&who);
    if !audit(&console, event("console.dead_letters", "R", who.actor(), status)).await {
        return page_error(StatusCode::SERVICE_UNAVAILABLE);
    }
    if status != StatusCode::OK {
        return page_error(status);
    }
    listing(&console, &who, filter, false).await
}

/// `POST /console/dead-letters/dry-run`: what a replay would do, changing
/// nothing.
pub async fn dry_run(State(console): State<Arc<Console>>, who: SignedIn, Form(filter): Form<Filter>) -> Response {
    let status = operator_only(&who);
    if !audit(&console, event("console.replay_dry_run", "R", who.actor(), status)).await {
        return page_error(StatusCode::SERVICE_UNAVAILABLE);
    }
    if status != StatusCode::OK {
        return page_error(status);
    }
    listing(&console, &who, filter, true).await
}

/// A replay job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    pub account: String,
    /// The session that started it (its public id).
    pub session: String,
    pub filter: Filter,
    /// Why (free text the operator typed; kept here, not in the log).
    pub reason: String,
    pub ids: Vec<String>,
    /// How many of `ids` are done.
    pub done: usize,
    pub replayed: usize,
    pub skipped: usize,
    /// `running`, `paused`, `done`.
    pub state: String,
    pub rate_per_sec: u32,
    pub created_at: String,
    /// When it last advanced (Unix ms): paces the rate.
    pub advanced_ms: i64,
}

fn job_key(id: &str) -> Key {
    Key::new(Table::Partners, JOBS, id)
}

fn active_key(id: &str) -> Key {
    Key::new(Table::Partners, ACTIVE, id)
}

/// The write of a job's record (or its active marker) under `condition`.
fn job_write(key: Key, value: Vec<u8>, condition: Condition) -> WriteOp {
    WriteOp::Put { key, value: Bytes::from(value), expires_at: None, condition, owner: None }
}

#[derive(Debug, Deserialize)]
pub struct ReplayForm {
    #[serde(flatten)]
    filter: Filter,
    reason: String,
    /// The count the dry run showed.
    count: usize,
    rate: Option<u32>,
}

/// `POST /console/dead-letters/replay`: starts a job for the selection the
/// dry run showed (refused, and the dry run shown again, if it changed).
pub async fn start(State(console): State<Arc<Console>>, who: SignedIn, Form(form): Form<ReplayForm>) -> Response {
    let status = operator_only(&who);
    if status != StatusCode::OK {
        audit(&console, event("console.replay_start", "E", who.actor(), status)).await;
        return page_error(status);
    }
    let reason = form.reason.trim().to_string();
    let n = reason.chars().count();
    let selected = match select(&console, &form.filter).await {
        Ok(s) => s,
        Err(_) => return page_error(StatusCode::SERVICE_UNAVAILABLE),
    };
    let mut ids = Vec::new();
    for d in selected.iter().take(MAX_SELECTION) {
        if dlq::replay(&console.svc.ports, &d.transaction, true).await.is_ok() {
            ids.push(d.transaction.to_string());
        }
    }
    if !(crate::transaction::MIN_REASON_CHARS..=crate::transaction::MAX_REASON_CHARS).contains(&n)
        || ids.len() != form.count
        || ids.is_empty()
    {
        let mut res = listing(&console, &who, form.filter, true).await;
        *res.status_mut() = StatusCode::CONFLICT;
        return res;
    }
    let now = time::OffsetDateTime::now_utc();
    let job = Job {
        id: uuid::Uuid::now_v7().to_string(),
        account: who.account.name.clone(),
        session: who.session_id.clone(),
        filter: form.filter,
        reason,
        ids,
        done: 0,
        replayed: 0,
        skipped: 0,
        state: "running".into(),
        rate_per_sec: form.rate.unwrap_or(10).clamp(1, MAX_RATE),
        created_at: clearway_core::records::timestamp(now),
        advanced_ms: 0,
    };
    let mut e = event("console.replay_start", "E", who.actor(), StatusCode::SEE_OTHER);
    e.entity.push(AuditEntity { kind: "replay".into(), id: job.id.clone() });
    if let Ok(p) = PartnerId::new(&job.filter.partner) {
        e.tenant = Some(p.to_string());
    }
    let Ok(value) = serde_json::to_vec(&job) else { return page_error(StatusCode::INTERNAL_SERVER_ERROR) };
    let put = job_write(job_key(&job.id), value, Condition::NotExists);
    let marker = job_write(active_key(&job.id), b"{}".to_vec(), Condition::None);
    if console.svc.ports.state.write(vec![put, marker]).await.is_err() {
        return page_error(StatusCode::SERVICE_UNAVAILABLE);
    }
    if !audit(&console, e).await {
        // Not started unaudited: paused until someone resumes it.
        let _ = set_state(&console, &job.id, "paused").await;
        return page_error(StatusCode::SERVICE_UNAVAILABLE);
    }
    console.replays.notify_one();
    Redirect::to(&format!("/console/replays/{}", job.id)).into_response()
}

async fn load_job(console: &Console, id: &str) -> Result<Option<(Job, u64)>, ()> {
    if uuid::Uuid::parse_str(id).is_err() {
        return Ok(None);
    }
    match console.svc.ports.state.get(&job_key(id)).await {
        Ok(Some(item)) => serde_json::from_slice(&item.value).map(|j| Some((j, item.version))).map_err(|_| ()),
        Ok(None) => Ok(None),
        Err(_) => Err(()),
    }
}

async fn set_state(console: &Console, id: &str, state: &str) -> Result<bool, ()> {
    for _ in 0..5 {
        let Some((mut job, version)) = load_job(console, id).await? else { return Ok(false) };
        if job.state == "done" {
            return Ok(false);
        }
        job.state = state.into();
        let value = serde_json::to_vec(&job).map_err(|_| ())?;
        let put = job_write(job_key(id), value, Condition::Version(version));
        match console.svc.ports.state.write(vec![put]).await {
            Ok(()) => return Ok(true),
            Err(e) if e.kind() == clearway_core::error::ErrorKind::PreconditionFailed => continue,
            Err(_) => return Err(()),
        }
    }
    Err(())
}

#[derive(Template)]
#[template(path = "replay.html")]
pub struct ReplayPage {
    pub frame: Frame,
    pub job: Job,
}

#[derive(Template)]
#[template(path = "replay_progress.html")]
pub struct ReplayProgress {
    pub job: Job,
}

/// `GET /console/replays/{id}`.
pub async fn job_page(State(console): State<Arc<Console>>, who: SignedIn, Path(id): Path<String>) -> Response {
    let status = operator_only(&who);
    let mut e = event("console.replay", "R", who.actor(), status);
    e.entity.push(AuditEntity { kind: "replay".into(), id: id.clone() });
    if !audit(&console, e).await {
        return page_error(StatusCode::SERVICE_UNAVAILABLE);
    }
    if status != StatusCode::OK {
        return page_error(status);
    }
    match load_job(&console, &id).await {
        Ok(Some((job, _))) => render(ReplayPage { frame: Frame::new("Replay", Some(&who)), job }),
        Ok(None) => page_error(StatusCode::NOT_FOUND),
        Err(()) => page_error(StatusCode::SERVICE_UNAVAILABLE),
    }
}

/// `GET /console/replays/{id}/progress`: the figures the job page refreshes.
pub async fn progress(State(console): State<Arc<Console>>, who: SignedIn, Path(id): Path<String>) -> Response {
    if who.account.role != Role::Operator {
        return page_error(StatusCode::FORBIDDEN);
    }
    match load_job(&console, &id).await {
        Ok(Some((job, _))) => render(ReplayProgress { job }),
        Ok(None) => page_error(StatusCode::NOT_FOUND),
        Err(()) => page_error(StatusCode::SERVICE_UNAVAILABLE),
    }
}

/// `POST /console/replays/{id}/pause` and `/resume`.
pub async fn pause(state: State<Arc<Console>>, who: SignedIn, Path(id): Path<String>) -> Response {
    switch(state, who, id, "paused").await
}

pub async fn resume(state: State<Arc<Console>>, who: SignedIn, Path(id): Path<String>) -> Response {
    switch(state, who, id, "running").await
}

async fn switch(State(console): State<Arc<Console>>, who: SignedIn, id: String, to: &str) -> Response {
    let status = operator_only(&who);
    let code = if to == "paused" { "console.replay_pause" } else { "console.replay_resume" };
    let mut e = event(code, "U", who.actor(), status);
    e.entity.push(AuditEntity { kind: "replay".into(), id: id.clone() });
    if !audit(&console, e).await {
        return page_error(StatusCode::SERVICE_UNAVAILABLE);
    }
    if status != StatusCode::OK {
        return page_error(status);
    }
    match set_state(&console, &id, to).await {
        Ok(_) => {
            console.replays.notify_one();
            Redirect::to(&format!("/console/replays/{id}")).into_response()
        }
        Err(()) => page_error(StatusCode::SERVICE_UNAVAILABLE),
    }
}

/// Runs the running replay jobs of the store until `stop`: each at its
/// rate, one transaction at a time, every replay an audit event in the
/// name of the operator who started the job. Stops between transactions,
/// never in one.
pub async fn run_replays(console: Arc<Console>, stop: impl std::future::Future<Output = ()>) {
    tokio::pin!(stop);
    loop {
        let worked = match step(&console).await {
            Ok(w) => w,
            Err(()) => {
                tracing::warn!("console replay jobs: the store is unavailable");
                false
            }
        };
        let wait = if worked { std::time::Duration::from_millis(20) } else { std::time::Duration::from_secs(1) };
        tokio::select! {
            () = &mut stop => return,
            () = console.replays.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Advances each running job by the replays its rate allows now; whether
/// any was advanced.
async fn step(console: &Console) -> Result<bool, ()> {
    let active = console.svc.ports.state.query(Table::Partners, ACTIVE, None, 1000).await.map_err(|_| ())?;
    let mut worked = false;
    for (id, _) in active {
        let Some(item) = console.svc.ports.state.get(&job_key(&id)).await.map_err(|_| ())? else { continue };
        let Ok(mut job) = serde_json::from_slice::<Job>(&item.value) else { continue };
        if job.state == "done" {
            let _ = console
                .svc
                .ports
                .state
                .write(vec![WriteOp::Delete { key: active_key(&id), condition: Condition::None }])
                .await;
            continue;
        }
        if job.state != "running" {
            continue;
        }
        let now = crate::now_ms();
        let interval = 1000 / i64::from(job.rate_per_sec.max(1));
        if now - job.advanced_ms < interval {
            continue;
        }
        let Some(next) = job.ids.get(job.done).cloned() else {
            // Every step claimed, but an outcome not counted a minute on:
            // the process that claimed the last stopped between its claim
            // and its replay (that transaction may still be dead-lettered).
            // Counted as skipped, so the job ends and the operator sees it.
            if now - job.advanced_ms < 60_000 {
                continue;
            }
            job.skipped = job.ids.len().saturating_sub(job.replayed);
            job.state = "done".into();
            let Ok(v) = serde_json::to_vec(&job) else { continue };
            let _ = console
                .svc
                .ports
                .state
                .write(vec![
                    job_write(job_key(&id), v, Condition::Version(item.version)),
                    WriteOp::Delete { key: active_key(&id), condition: Condition::None },
                ])
                .await;
            continue;
        };
        // Claimed first (compare-and-set), so two processes never replay
        // the same step; a process that dies here leaves one transaction
        // still dead-lettered, which the operator sees as skipped.
        job.done += 1;
        job.advanced_ms = now;
        let claimed = serde_json::to_vec(&job).map_err(|_| ())?;
        let put = job_write(job_key(&id), claimed, Condition::Version(item.version));
        match console.svc.ports.state.write(vec![put]).await {
            Ok(()) => {}
            Err(e) if e.kind() == clearway_core::error::ErrorKind::PreconditionFailed => continue,
            Err(_) => return Err(()),
        }
        let replayed = match TransactionId::parse(&next) {
            Some(t) => dlq::replay(&console.svc.ports, &t, false).await.is_ok(),
            None => false,
        };
        let actor = crate::person(&job.account, Role::Operator, &job.session);
        let mut e =
            event("console.replay_item", "E", actor, if replayed { StatusCode::OK } else { StatusCode::CONFLICT });
        e.entity = vec![
            AuditEntity { kind: "replay".into(), id: job.id.clone() },
            AuditEntity { kind: "transaction".into(), id: next },
        ];
        audit(console, e).await;
        if replayed {
            metrics::counter!("clearway_dead_letter_replays_total").increment(1);
        }
        // The outcome, recorded on the job (retried over other steps).
        for _ in 0..10 {
            let Ok(Some((mut latest, version))) = load_job(console, &id).await else { break };
            if replayed {
                latest.replayed += 1;
            } else {
                latest.skipped += 1;
            }
            let finished = latest.replayed + latest.skipped >= latest.ids.len();
            if finished {
                latest.state = "done".into();
            }
            let Ok(v) = serde_json::to_vec(&latest) else { break };
            let mut ops = vec![job_write(job_key(&id), v, Condition::Version(version))];
            if finished {
                ops.push(WriteOp::Delete { key: active_key(&id), condition: Condition::None });
            }
            match console.svc.ports.state.write(ops).await {
                Err(e) if e.kind() == clearway_core::error::ErrorKind::PreconditionFailed => continue,
                _ => break,
            }
        }
        worked = true;
    }
    Ok(worked)
}
