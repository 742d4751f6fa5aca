//! Clearway's fast path: synchronous eligibility (X12 270 → 271) and
//! claim status (276 → 277), answered from a payer-aware cache in front of
//! a per-payer connector.
//!
//! - **Where answers come from**: the `local` connector reads the state
//!   store — coverage fed by 834 enrollments through the async path, and
//!   the claims and 835 payments the workers recorded ([`local`]).
//! - **The cache** (moka): the key is payer, provider, member (as its index
//!   token, never the id), date of birth, service types and date; the TTL
//!   is the payer's `cache_ttl_secs`; concurrent misses for one key make a
//!   single upstream call; when the payer fails, the last good answer is
//!   served (stale-while-error) before falling back to AAA 42; a new 834
//!   for a member invalidates that member's entries
//!   ([`FastPath::invalidate_member`]).
//! - **Protecting payers** ([`gate`]): each payer has a concurrency limit,
//!   a token-bucket rate limit and a circuit breaker; a check that would
//!   exceed them is answered from the stale cache or with AAA 42, never
//!   sent upstream. Every upstream call has the fast-path timeout.
//!
//! Everything here is keyed by ids; no PHI reaches logs or metrics.

pub mod caqh;
pub mod gate;
pub mod http;
pub mod local;
mod memo;
pub mod pharmacy;

use clearway_core::config::{Config, Connector};
use clearway_core::partners::Partners;
use clearway_core::ports::{Condition, Key, StateStore, Table, WriteOp};
use clearway_core::{ClaimStatusRequest, EligibilityRequest, PartnerId};
use clearway_formats::x12::analyze::Interchange;
use clearway_formats::x12::build::{self, ClaimStatusAnswer, Controls, EligibilityAnswer, EligibilityOutcome};
use clearway_formats::x12::{AnalyzeOptions, Document, analyze};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use time::{OffsetDateTime, PrimitiveDateTime};

/// Largest real-time request accepted (a 270 or 276 is a few KB).
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;
/// Most inquiries answered in one real-time request.
pub const MAX_INQUIRIES: usize = 99;
/// How long a last good answer may be served when the payer fails.
const STALE_FOR: Duration = Duration::from_secs(24 * 3600);

/// What a request gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The 271 or 277.
    Answer(Vec<u8>),
    /// The request could not be answered as it stands: the TA1 or 999 that
    /// says why (when the input had an envelope to answer), and a short
    /// description without PHI.
    Rejected { ack_kind: Option<&'static str>, ack: Option<Vec<u8>>, detail: String },
}

/// Where a real-time answer came from; when a request holds several
/// inquiries, the one furthest down this list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    /// No lookup (the request was rejected first).
    #[default]
    None,
    /// The same request answered moments ago (the memo).
    Memo,
    Cache,
    /// The payer's answer, asked now.
    Payer,
    /// The payer failed; the last good answer.
    Stale,
    /// The payer failed and nothing was cached: AAA 42.
    Fallback,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::None => "none",
            Source::Memo => "memo",
            Source::Cache => "cache",
            Source::Payer => "payer",
            Source::Stale => "stale",
            Source::Fallback => "fallback",
        }
    }
}

/// How a real-time request was answered (see [`observe`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Served {
    pub source: Source,
    /// The slowest payer call it waited for (µs).
    pub upstream_us: Option<i64>,
}

tokio::task_local! {
    static SERVED: std::cell::Cell<Served>;
}

/// Runs a fast-path call and reports where its answer came from.
pub async fn observe<F: std::future::Future>(f: F) -> (F::Output, Served) {
    SERVED
        .scope(std::cell::Cell::new(Served::default()), async {
            let out = f.await;
            (out, SERVED.with(std::cell::Cell::get))
        })
        .await
}

/// Notes a source (and a payer call's duration) for the call being
/// observed; nothing outside [`observe`].
fn note(source: Source, upstream: Option<std::time::Duration>) {
    let _ = SERVED.try_with(|c| {
        let mut s = c.get();
        s.source = s.source.max(source);
        if let Some(d) = upstream {
            let us = d.as_micros() as i64;
            s.upstream_us = Some(s.upstream_us.map_or(us, |u| u.max(us)));
        }
        c.set(s);
    });
}

/// Why an upstream answer could not be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error("payer rate limit reached")]
    Throttled,
    #[error("payer circuit breaker open")]
    CircuitOpen,
    #[error("payer did not answer within the timeout")]
    Timeout,
    #[error("payer unavailable: {0}")]
    Unavailable(String),
    /// The payer answered something that is not an answer (counts as the
    /// payer failing).
    #[error("payer answer unreadable: {0}")]
    Unreadable(&'static str),
}

#[derive(Debug, Clone)]
struct Cached {
    outcome: EligibilityOutcome,
    ttl: Duration,
}

struct PerPayerTtl;

impl moka::Expiry<String, Cached> for PerPayerTtl {
    fn expire_after_create(&self, _key: &String, value: &Cached, _now: Instant) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// The fast path service.
pub struct FastPath {
    state: Arc<dyn StateStore>,
    partners: Arc<Partners>,
    config: Arc<Config>,
    cache: moka::future::Cache<String, Cached>,
    stale: moka::future::Cache<String, EligibilityOutcome>,
    gates: Mutex<HashMap<String, Arc<gate::Gate>>>,
    http: http::PayerClients,
    memo: memo::Memo,
    counters: Counters,
}

/// Counter handles for the answers every request counts (registered once:
/// a lookup by name and labels per request costs more than the count).
struct Counters {
    memo_hit: metrics::Counter,
    memo_miss: metrics::Counter,
    cache_hit: metrics::Counter,
    cache_miss: metrics::Counter,
    cache_stale: metrics::Counter,
    cache_error: metrics::Counter,
    eligibility_seconds: metrics::Histogram,
    claim_status_seconds: metrics::Histogram,
}

impl Counters {
    fn new() -> Self {
        let cache = |result: &'static str| metrics::counter!("clearway_fastpath_cache_total", "kind" => "eligibility", "result" => result);
        Counters {
            memo_hit: metrics::counter!("clearway_fastpath_memo_total", "result" => "hit"),
            memo_miss: metrics::counter!("clearway_fastpath_memo_total", "result" => "miss"),
            cache_hit: cache("hit"),
            cache_miss: cache("miss"),
            cache_stale: cache("stale"),
            cache_error: cache("error"),
            eligibility_seconds: metrics::histogram!("clearway_fastpath_request_seconds", "kind" => "eligibility"),
            claim_status_seconds: metrics::histogram!("clearway_fastpath_request_seconds", "kind" => "claim-status"),
        }
    }
}

impl std::fmt::Debug for FastPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FastPath").field("cached", &self.cache.entry_count()).finish_non_exhaustive()
    }
}

impl FastPath {
    pub fn new(state: Arc<dyn StateStore>, partners: Arc<Partners>, config: Arc<Config>) -> Self {
        let capacity = config.fastpath.cache_capacity;
        let cache = moka::future::Cache::builder()
            .max_capacity(capacity)
            .expire_after(PerPayerTtl)
            .support_invalidation_closures()
            .build();
        let stale = moka::future::Cache::builder()
            .max_capacity(capacity)
            .time_to_live(STALE_FOR)
            .support_invalidation_closures()
            .build();
        let base = || reqwest::Client::builder().connect_timeout(Duration::from_secs(2)).pool_max_idle_per_host(64);
        // `serve` checked the payers' TLS files at start-up; should they be
        // unusable here, every payer gets the shared client.
        let http = http::PayerClients::new_or_failing(base, &config);
        let memo = memo::Memo::new(memo::MAX_MEMO_BYTES);
        let counters = Counters::new();
        FastPath { state, partners, config, cache, stale, gates: Mutex::new(HashMap::new()), http, memo, counters }
    }

    /// 270s answered without analysing them again (the `memo` module): they
    /// differed from one analysed before only in their control fields.
    pub fn memo_hits(&self) -> u64 {
        self.memo.hits()
    }

    /// Each payer's real-time gate as it stands (payers called since the
    /// start, and every configured payer), sorted by payer id.
    pub fn payer_health(&self) -> Vec<gate::GateHealth> {
        for p in self.config.payers.keys() {
            let _ = self.gate(p);
        }
        let gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<gate::GateHealth> = gates.iter().map(|(id, g)| g.health(id)).collect();
        out.sort_by(|a, b| a.payer.cmp(&b.payer));
        out
    }

    fn gate(&self, payer: &str) -> Arc<gate::Gate> {
        let mut gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        gates.entry(payer.to_string()).or_insert_with(|| Arc::new(gate::Gate::new(&self.config.payer(payer)))).clone()
    }

    /// Drops every cached answer about one member of one payer (called when
    /// an 834 changes the member). `member_id` is the identifier itself; it
    /// is turned into its index token here.
    pub fn invalidate_member(&self, payer: &str, member_id: &str) {
        let prefix = format!("{payer}|{}|", self.partners.member_key(member_id));
        let p2 = prefix.clone();
        let _ = self.cache.invalidate_entries_if(move |k, _| k.starts_with(&prefix));
        let _ = self.stale.invalidate_entries_if(move |k, _| k.starts_with(&p2));
    }

    /// The cache key of an inquiry without its date: ids as index tokens,
    /// never PHI.
    fn key_prefix(&self, payer: &str, r: &EligibilityRequest) -> String {
        let member = r.member_id.expose().as_deref().map(|m| self.partners.member_key(m)).unwrap_or_default();
        let dob = r.subscriber.birth_date.expose().map(|d| self.partners.index_token(&d.to_string()));
        let mut types = r.service_types.clone();
        types.sort();
        format!(
            "{payer}|{member}|{}|{}|{}|",
            r.provider_npi.as_deref().unwrap_or(""),
            dob.unwrap_or_default(),
            types.join(",")
        )
    }

    /// The canonical payer of an inquiry and its cache key without the date.
    fn payer_and_key(&self, r: &EligibilityRequest) -> (String, String) {
        let payer = self.config.canonical_payer(r.payer_id.as_deref().unwrap_or("UNKNOWN")).to_string();
        let prefix = self.key_prefix(&payer, r);
        (payer, prefix)
    }

    /// Answers one inquiry: from cache, else from the payer's connector
    /// (one call for concurrent misses), else the last good answer, else
    /// AAA 42.
    pub async fn eligibility(&self, r: &EligibilityRequest, today: time::Date) -> EligibilityOutcome {
        let (payer, prefix) = self.payer_and_key(r);
        self.eligibility_keyed(r, &payer, &prefix, today).await
    }

    /// The cached outcome under `key`, when there is one (counted as a hit).
    async fn cached(&self, key: &str) -> Option<EligibilityOutcome> {
        let hit = self.cache.get(key).await?;
        self.counters.cache_hit.increment(1);
        note(Source::Cache, None);
        Some(hit.outcome)
    }

    async fn eligibility_keyed(
        &self,
        r: &EligibilityRequest,
        payer: &str,
        prefix: &str,
        today: time::Date,
    ) -> EligibilityOutcome {
        let key = cache_key(prefix, r, today);
        if let Some(hit) = self.cached(&key).await {
            return hit;
        }
        // Boxed: the upstream call's future is many times the size of the
        // rest, and every request's future (hits too) would carry it.
        Box::pin(self.eligibility_upstream(r, payer, key, today)).await
    }

    /// Answers an inquiry the cache does not hold (see [`Self::eligibility`]).
    async fn eligibility_upstream(
        &self,
        r: &EligibilityRequest,
        payer: &str,
        key: String,
        today: time::Date,
    ) -> EligibilityOutcome {
        let on = r.date.map_or(today, |d| d.from);
        let settings = self.config.payer(payer);
        let gate = self.gate(payer);
        let timeout = settings.timeout.min(self.config.fastpath.timeout);
        let lookup = async {
            let outcome = match &settings.connector {
                Connector::Local => {
                    gate.call(timeout, local::eligibility(self.state.as_ref(), &self.partners, payer, r, on)).await?
                }
                Connector::Http(url) => {
                    let ours = &self.config.workers.clearinghouse_id;
                    gate.call(
                        timeout,
                        http::eligibility(self.http.get(&settings.id), url, ours, r, OffsetDateTime::now_utc()),
                    )
                    .await?
                }
            };
            Ok::<Cached, UpstreamError>(Cached { outcome, ttl: settings.cache_ttl })
        };
        let asked = std::time::Instant::now();
        match self.cache.try_get_with(key.clone(), lookup).await {
            Ok(c) => {
                self.counters.cache_miss.increment(1);
                note(Source::Payer, Some(asked.elapsed()));
                self.stale.insert(key, c.outcome.clone()).await;
                c.outcome
            }
            Err(e) => {
                tracing::info!(payer = %payer, reason = %e, "eligibility upstream failed");
                if let Some(old) = self.stale.get(&key).await {
                    self.counters.cache_stale.increment(1);
                    note(Source::Stale, Some(asked.elapsed()));
                    return old;
                }
                self.counters.cache_error.increment(1);
                note(Source::Fallback, Some(asked.elapsed()));
                EligibilityOutcome::PayerRejected { reason: "42", action: "R" }
            }
        }
    }

    /// Records how long answering a real-time eligibility request took
    /// (`clearway_fastpath_request_seconds`, for the CORE 20 s rule).
    pub fn record_eligibility(&self, took: std::time::Duration) {
        self.counters.eligibility_seconds.record(took.as_secs_f64());
    }

    /// Records how long answering a real-time claim status request took.
    pub fn record_claim_status(&self, took: std::time::Duration) {
        self.counters.claim_status_seconds.record(took.as_secs_f64());
    }

    /// Answers an X12 270 with a 271 (or with the TA1 / 999 that says why
    /// it cannot be answered).
    pub async fn eligibility_x12(&self, body: &[u8], now: OffsetDateTime) -> Reply {
        if body.len() > MAX_REQUEST_BYTES {
            return rejected(format!("a real-time request is at most {MAX_REQUEST_BYTES} bytes"));
        }
        let split = memo::split(body).filter(|(_, fields)| fields.plausible());
        if let Some((key, fields)) = &split
            && let Some(seen) = self.memo.get(key)
        {
            self.counters.memo_hit.increment(1);
            note(Source::Memo, None);
            return self.answer_seen(body, now, &seen, fields).await;
        }
        let (mut ic, g, s) = match self.one_set(body, "270", now) {
            Ok(found) => found,
            Err(reply) => return reply,
        };
        // The inquiries are moved out of the analysis (the memo keeps them).
        let requests: Vec<EligibilityRequest> = std::mem::take(&mut ic.groups[g].sets[s].documents)
            .into_iter()
            .filter_map(|d| match d {
                Document::EligibilityRequest(r) => Some(*r),
                _ => None,
            })
            .collect();
        let set = (&ic.groups[g], &ic.groups[g].sets[s]);
        if requests.is_empty() || requests.len() > MAX_INQUIRIES {
            return rejected(format!("a real-time 270 carries 1 to {MAX_INQUIRIES} inquiries"));
        }
        let keys: Vec<(String, String)> = requests.iter().map(|r| self.payer_and_key(r)).collect();
        let reference = set.1.report.context.reference.as_deref().unwrap_or("0");
        let (isa, group) = (&ic.report.isa, &set.0.report.header);
        let reply = Box::pin(self.answer_270(body, now, isa, group, reference, &requests, &keys)).await;
        if let Some((key, fields)) = split {
            self.counters.memo_miss.increment(1);
            if let Some(entry) = memo::Entry::new(isa, group, requests, keys, &fields) {
                self.memo.insert(key, entry);
            }
        }
        reply
    }

    /// The 271 for a 270 found in the memo. The analysed requests are
    /// copied (with this request's trace numbers) only when an inquiry
    /// goes upstream or the outcomes differ from those of the entry's last
    /// 271 body; otherwise that body is written around again.
    async fn answer_seen(
        &self,
        body: &[u8],
        now: OffsetDateTime,
        seen: &memo::Entry,
        fields: &memo::Fields<'_>,
    ) -> Reply {
        let today = now.date();
        let mut requests: Option<Vec<EligibilityRequest>> = None;
        let mut outcomes = Vec::with_capacity(seen.keys.len());
        for (n, (r, (payer, prefix))) in seen.analysed().iter().zip(&seen.keys).enumerate() {
            let outcome = match self.cached(&cache_key(prefix, r, today)).await {
                Some(o) => o,
                None => {
                    let patched = requests.get_or_insert_with(|| seen.requests(fields));
                    self.eligibility_keyed(&patched[n], payer, prefix, today).await
                }
            };
            outcomes.push(outcome);
        }
        let answered = match seen.answered(&outcomes) {
            Some(a) => a,
            None => {
                let requests = requests.unwrap_or_else(|| seen.requests(fields));
                let answers: Vec<EligibilityAnswer<'_>> = requests
                    .iter()
                    .zip(&outcomes)
                    .map(|(request, o)| EligibilityAnswer { request, outcome: o.clone() })
                    .collect();
                let body = build::Body271::new(&seen.envelope, &answers);
                let answered = Arc::new(memo::Answered { outcomes, body });
                seen.keep(answered.clone());
                answered
            }
        };
        let at = PrimitiveDateTime::new(now.date(), now.time());
        let controls = response_controls(body, "271");
        Reply::Answer(answered.body.response(
            &seen.envelope,
            fields.reference(),
            |n| seen.trace(fields, n),
            controls,
            at,
        ))
    }

    /// The 271 for the analysed inquiries of a 270.
    #[allow(clippy::too_many_arguments)]
    async fn answer_270(
        &self,
        body: &[u8],
        now: OffsetDateTime,
        isa: &clearway_formats::x12::IsaHeader,
        group: &clearway_formats::x12::analyze::GroupHeader,
        reference: &str,
        requests: &[EligibilityRequest],
        keys: &[(String, String)],
    ) -> Reply {
        let mut answers = Vec::with_capacity(requests.len());
        for (r, (payer, prefix)) in requests.iter().zip(keys) {
            answers.push(EligibilityAnswer {
                request: r,
                outcome: self.eligibility_keyed(r, payer, prefix, now.date()).await,
            });
        }
        let at = PrimitiveDateTime::new(now.date(), now.time());
        Reply::Answer(build::response271(&build::Response271 {
            interchange: isa,
            group,
            reference,
            answers: &answers,
            controls: response_controls(body, "271"),
            at,
        }))
    }

    /// Answers an X12 276 with a 277 from the claims the async path
    /// recorded for `partner` (a partner learns only of its own claims).
    pub async fn claim_status_x12(&self, partner: &PartnerId, body: &[u8], now: OffsetDateTime) -> Reply {
        let (ic, g, s) = match self.one_set(body, "276", now) {
            Ok(found) => found,
            Err(reply) => return reply,
        };
        let set = (&ic.groups[g], &ic.groups[g].sets[s]);
        let requests: Vec<&ClaimStatusRequest> = set
            .1
            .documents
            .iter()
            .filter_map(|d| match d {
                Document::ClaimStatusRequest(r) => Some(r.as_ref()),
                _ => None,
            })
            .collect();
        if requests.is_empty() || requests.len() > MAX_INQUIRIES {
            return rejected(format!("a real-time 276 carries 1 to {MAX_INQUIRIES} inquiries"));
        }
        let mut found = Vec::with_capacity(requests.len());
        for r in &requests {
            let payer = self.config.canonical_payer(r.payer_id.as_deref().unwrap_or("UNKNOWN")).to_string();
            let gate = self.gate(&payer);
            let settings = self.config.payer(&payer);
            let timeout = settings.timeout.min(self.config.fastpath.timeout);
            let asked = std::time::Instant::now();
            let status = match &settings.connector {
                Connector::Local => {
                    gate.call(
                        timeout,
                        local::claim_status(self.state.as_ref(), &self.partners, &self.config, partner, r),
                    )
                    .await
                }
                Connector::Http(url) => {
                    let w = &self.config.workers;
                    let ours = (w.clearinghouse_name.as_str(), w.clearinghouse_id.as_str());
                    gate.call(
                        timeout,
                        http::claim_status(self.http.get(&settings.id), url, ours, r, OffsetDateTime::now_utc()),
                    )
                    .await
                }
            }
            .inspect(|_| note(Source::Payer, Some(asked.elapsed())))
            .unwrap_or_else(|e| {
                tracing::info!(payer = %payer, reason = %e, "claim status lookup failed");
                note(Source::Fallback, Some(asked.elapsed()));
                local::ClaimStatus::unavailable()
            });
            metrics::counter!("clearway_fastpath_claim_status_total", "category" => status.category_label())
                .increment(1);
            found.push(status);
        }
        let answers: Vec<ClaimStatusAnswer<'_>> =
            requests.iter().zip(&found).map(|(r, s)| s.answer(r, now.date())).collect();
        let at = PrimitiveDateTime::new(now.date(), now.time());
        let ctx = &set.1.report.context;
        let out = build::response277(&build::Response277 {
            interchange: &ic.report.isa,
            group: &set.0.report.header,
            reference: ctx.reference.as_deref().unwrap_or("0"),
            // The 276's information receiver (2100B NM1*41) is whom the 277
            // answers.
            receiver_name: ctx.submitter_name.as_deref().or(ctx.receiver_name.as_deref()).unwrap_or("RECEIVER"),
            receiver_id: ctx.submitter_id.as_deref().or(ctx.receiver_id.as_deref()).unwrap_or("UNKNOWN"),
            answers: &answers,
            controls: response_controls(body, "277"),
            at,
        });
        Reply::Answer(out)
    }

    /// Reads a real-time request: one interchange whose envelope is sound,
    /// holding one accepted transaction set of type `st01`.
    #[allow(clippy::result_large_err)]
    fn one_set(&self, body: &[u8], st01: &str, now: OffsetDateTime) -> Result<(Interchange, usize, usize), Reply> {
        if body.len() > MAX_REQUEST_BYTES {
            return Err(rejected(format!("a real-time request is at most {MAX_REQUEST_BYTES} bytes")));
        }
        let at = PrimitiveDateTime::new(now.date(), now.time());
        let mut analysis = analyze(body, &AnalyzeOptions::default());
        if analysis.interchanges.len() != 1 {
            return Err(rejected("a real-time request is one X12 interchange".into()));
        }
        let ic = analysis.interchanges.remove(0);
        let controls = || response_controls(body, "ack");
        if !ic.report.accepted() {
            return Err(Reply::Rejected {
                ack_kind: Some("ta1"),
                ack: Some(build::ta1(&ic.report, controls(), at)),
                detail: "the interchange envelope was rejected (see the TA1)".into(),
            });
        }
        let sets: Vec<(usize, usize)> = ic
            .groups
            .iter()
            .enumerate()
            .flat_map(|(g, grp)| grp.sets.iter().enumerate().map(move |(s, _)| (g, s)))
            .collect();
        let [(g, s)] = sets[..] else {
            return Err(rejected("a real-time request holds exactly one transaction set".into()));
        };
        let set = &ic.groups[g].sets[s];
        if set.report.header.id != st01 {
            return Err(rejected(format!("expected a {st01}, not a {}", set.report.header.id)));
        }
        if !set.report.accepted() || !ic.groups[g].report.findings.is_empty() {
            return Err(Reply::Rejected {
                ack_kind: Some("999"),
                ack: build::ack999(&ic, controls(), at),
                detail: format!("the {st01} has errors (see the 999)"),
            });
        }
        Ok((ic, g, s))
    }
}

/// What a FHIR request gets: a CoverageEligibilityResponse, or (`Err`) an
/// OperationOutcome saying why the request cannot be answered.
pub type FhirReply = Result<serde_json::Value, serde_json::Value>;

impl FastPath {
    /// Answers a FHIR R4 CoverageEligibilityRequest with a
    /// CoverageEligibilityResponse from the same cache and connectors as a
    /// 270: in force with a benefit period and the asked categories, not
    /// in force, or `error` with the X12 AAA reason (member not found,
    /// invalid member id, unable to respond now).
    pub async fn eligibility_fhir(&self, body: &[u8], now: OffsetDateTime) -> FhirReply {
        use clearway_formats::fhir::{self, EligibilityRejectReason as Why, InsuranceSpec, ResponseOutcome};
        let doc = match fhir::read_resource(body, &fhir::Limits::default()) {
            Ok(fhir::FhirDocument::CoverageEligibilityRequest(d)) => d,
            Ok(other) => {
                let issue = fhir::OutcomeIssue::new(
                    fhir::Severity::Error,
                    fhir::IssueType::NotSupported,
                    "resourceType",
                    format!("expected a CoverageEligibilityRequest, not a {}", other.resource_type()),
                );
                return Err(fhir::operation_outcome(&[issue]));
            }
            Err(e) => return Err(fhir::operation_outcome(&[e.to_issue()])),
        };
        let Some(request) = doc.request.clone() else {
            return Err(fhir::operation_outcome(&doc.issues));
        };
        let id = format!("cer-{}", &clearway_core::crypto::sha256_hex(body)[..16]);
        let outcome = self.eligibility(&request, now.date()).await;
        let Some(mut spec) = fhir::EligibilityResponseSpec::for_request(&doc, id, now, ResponseOutcome::Complete)
        else {
            let issue = fhir::OutcomeIssue::new(
                fhir::Severity::Error,
                fhir::IssueType::Required,
                "CoverageEligibilityRequest",
                "the request needs purpose, patient, insurer and an id or identifier to be answered",
            );
            return Err(fhir::operation_outcome(&[issue]));
        };
        let coverage = fhir::Reference {
            reference: None,
            type_: Some("Coverage".into()),
            identifier: None,
            display: Some("coverage of the member asked about".into()),
        };
        let items = || {
            let mut types = request.service_types.clone();
            if types.is_empty() {
                types.push("30".into());
            }
            types.iter().map(|t| fhir::BenefitItem::service_type(t)).collect::<Vec<_>>()
        };
        match outcome {
            EligibilityOutcome::Active { begin, end, .. } => spec.insurance.push(InsuranceSpec {
                coverage,
                inforce: Some(true),
                benefit_period: begin.map(|b| (b, end)),
                items: items(),
            }),
            EligibilityOutcome::Inactive { .. } => spec.insurance.push(InsuranceSpec {
                coverage,
                inforce: Some(false),
                benefit_period: None,
                items: Vec::new(),
            }),
            EligibilityOutcome::SubscriberRejected { reason, .. }
            | EligibilityOutcome::PayerRejected { reason, .. } => {
                let why = match reason {
                    "72" => Why::InvalidMemberId,
                    "73" => Why::InvalidSubscriberName,
                    "75" => Why::SubscriberNotFound,
                    "58" | "71" => Why::InvalidBirthDate,
                    "43" => Why::InvalidProvider,
                    "15" => Why::RequiredDataMissing,
                    _ => Why::UnableToRespondNow,
                };
                spec.outcome = ResponseOutcome::Error;
                spec.errors.push(why.coding());
            }
        }
        fhir::coverage_eligibility_response(&spec).map_err(|e| {
            let issue = fhir::OutcomeIssue::new(
                fhir::Severity::Error,
                fhir::IssueType::Processing,
                "CoverageEligibilityResponse",
                e.to_string(),
            );
            fhir::operation_outcome(&[issue])
        })
    }
}

/// How long a CORE PayloadID is remembered.
const PAYLOAD_ID_WINDOW_SECS: i64 = 24 * 3600;
/// The CORE real-time response time limit (CORE 156 / 250).
const CORE_LIMIT: Duration = Duration::from_secs(20);

impl FastPath {
    /// One CAQH CORE real-time exchange for `partner` (already
    /// authenticated from the envelope's credentials): checks the
    /// envelope, recognises a PayloadID seen before (the same payload gets
    /// the first answer again; a different payload under a used PayloadID
    /// is refused), answers the X12 payload, and logs the nine CORE
    /// identifiers with the round-trip time.
    pub async fn core_exchange(
        &self,
        partner: &PartnerId,
        req: &caqh::CoreRequest,
        now: OffsetDateTime,
    ) -> caqh::CoreResponse {
        let started = Instant::now();
        let ts = caqh::timestamp(now);
        if let Err(e) = caqh::check(req) {
            return caqh::CoreResponse::error(req, &e, &ts);
        }
        let payload = req.payload.as_deref().unwrap_or_default();
        let payload_id = req.payload_id.clone().unwrap_or_default();
        let request_type = req.payload_type.as_deref().unwrap_or_default();
        let hash = clearway_core::crypto::sha256_hex(payload);
        let seen_key = Key::new(Table::Dedupe, partner.as_str(), format!("core:{}", payload_id.to_ascii_lowercase()));
        let mut response = match self.state.get(&seen_key).await {
            Ok(Some(item)) => match serde_json::from_slice::<SeenPayload>(&item.value) {
                Ok(seen) if seen.hash == hash => {
                    metrics::counter!("clearway_core_duplicate_payload_ids_total", "outcome" => "replayed")
                        .increment(1);
                    Some(seen.into_response(req, &ts))
                }
                _ => {
                    metrics::counter!("clearway_core_duplicate_payload_ids_total", "outcome" => "refused").increment(1);
                    let e = caqh::EnvelopeError {
                        code: "PayloadIDDuplicate",
                        message: "this PayloadID was used for a different payload".into(),
                    };
                    return caqh::CoreResponse::error(req, &e, &ts);
                }
            },
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %clearway_core::error::chain(&e), "payload id lookup failed");
                None
            }
        };
        if response.is_none() {
            let reply = if request_type.starts_with("X12_270") {
                self.eligibility_x12(payload, now).await
            } else {
                self.claim_status_x12(partner, payload, now).await
            };
            let (payload_type, body, code, message) = match reply {
                Reply::Answer(x12) => {
                    (caqh::response_type(request_type).unwrap_or_default(), Some(x12), "Success", String::new())
                }
                Reply::Rejected { ack_kind: Some("999"), ack: Some(a), detail } => {
                    (caqh::PAYLOAD_999, Some(a), "Success", detail)
                }
                Reply::Rejected { ack_kind: Some(_), ack: Some(a), detail } => {
                    (caqh::PAYLOAD_TA1, Some(a), "Success", detail)
                }
                Reply::Rejected { detail, .. } => {
                    (caqh::response_type(request_type).unwrap_or_default(), None, "PayloadIllegal", detail)
                }
            };
            let r = caqh::CoreResponse {
                payload_type: payload_type.to_string(),
                payload: body,
                error_code: code,
                error_message: message,
                ..caqh::CoreResponse::answering(req, &ts)
            };
            if r.error_code == "Success" {
                let seen = SeenPayload {
                    hash,
                    payload_type: r.payload_type.clone(),
                    payload: r.payload.as_deref().map(|p| String::from_utf8_lossy(p).into_owned()),
                    message: r.error_message.clone(),
                };
                let write = WriteOp::Put {
                    key: seen_key,
                    value: serde_json::to_vec(&seen).unwrap_or_default().into(),
                    expires_at: Some(now.unix_timestamp() + PAYLOAD_ID_WINDOW_SECS),
                    condition: Condition::NotExists,
                    owner: None,
                };
                if let Err(e) = self.state.write(vec![write]).await {
                    tracing::info!(error = %clearway_core::error::chain(&e), "payload id not remembered");
                }
            }
            response = Some(r);
        }
        let response = response.unwrap_or_else(|| {
            caqh::CoreResponse::error(req, &caqh::EnvelopeError { code: "ServerError", message: String::new() }, &ts)
        });
        let elapsed = started.elapsed();
        let ids = core_ids(payload);
        tracing::info!(
            isa06 = ids[0].as_deref(), isa08 = ids[1].as_deref(), isa13 = ids[2].as_deref(),
            gs02 = ids[3].as_deref(), gs03 = ids[4].as_deref(), gs06 = ids[5].as_deref(),
            st02 = ids[6].as_deref(), trn02 = ids[7].as_deref(), bht03 = ids[8].as_deref(),
            payload_id = %payload_id, error_code = response.error_code,
            round_trip_ms = elapsed.as_secs_f64() * 1000.0,
            "core real-time exchange"
        );
        let within = if elapsed <= CORE_LIMIT { "true" } else { "false" };
        metrics::counter!("clearway_core_exchanges_total", "within_20s" => within).increment(1);
        metrics::histogram!("clearway_core_round_trip_seconds").record(elapsed.as_secs_f64());
        response
    }
}

/// A remembered CORE answer.
#[derive(serde::Serialize, serde::Deserialize)]
struct SeenPayload {
    hash: String,
    payload_type: String,
    payload: Option<String>,
    message: String,
}

impl SeenPayload {
    fn into_response(self, req: &caqh::CoreRequest, ts: &str) -> caqh::CoreResponse {
        caqh::CoreResponse {
            payload_type: self.payload_type,
            payload: self.payload.map(String::into_bytes),
            error_message: self.message,
            ..caqh::CoreResponse::answering(req, ts)
        }
    }
}

/// The nine identifiers CORE asks to log for each real-time exchange:
/// ISA06, ISA08, ISA13, GS02, GS03, GS06, ST02, TRN02, BHT03 (envelope and
/// trace numbers, no PHI).
fn core_ids(x12: &[u8]) -> [Option<String>; 9] {
    let mut out: [Option<String>; 9] = Default::default();
    if x12.len() < 106 || !x12.starts_with(b"ISA") {
        return out;
    }
    let (elem, term) = (x12[3], x12[105]);
    let field = |seg: &[u8], n: usize| {
        seg.split(|b| *b == elem)
            .nth(n)
            .map(|v| String::from_utf8_lossy(v).trim().chars().take(50).collect::<String>())
            .filter(|v| !v.is_empty())
    };
    for seg in x12.split(|b| *b == term).map(|s| s.trim_ascii()) {
        let id = seg.split(|b| *b == elem).next().unwrap_or_default();
        match id {
            b"ISA" => (out[0], out[1], out[2]) = (field(seg, 6), field(seg, 8), field(seg, 13)),
            b"GS" => (out[3], out[4], out[5]) = (field(seg, 2), field(seg, 3), field(seg, 6)),
            b"ST" => out[6] = field(seg, 2),
            b"TRN" if out[7].is_none() => out[7] = field(seg, 2),
            b"BHT" => out[8] = field(seg, 3),
            _ => {}
        }
    }
    out
}

fn rejected(detail: String) -> Reply {
    Reply::Rejected { ack_kind: None, ack: None, detail }
}

/// Control numbers derived from the request, so a retried request gets the
/// same answer envelope. The interchange header (which holds the sender's
/// ISA13) and the length identify a request well enough for that, and
/// keep the hash short.
/// The eligibility cache's key: the request's key prefix (payer, member,
/// provider, birth date, service types) and the date asked about.
fn cache_key(prefix: &str, r: &EligibilityRequest, today: time::Date) -> String {
    format!("{prefix}{}", r.date.map_or(today, |d| d.from))
}

fn response_controls(body: &[u8], kind: &str) -> Controls {
    let mut seed = Vec::with_capacity(kind.len() + 136);
    seed.extend_from_slice(kind.as_bytes());
    seed.extend_from_slice(&body[..body.len().min(128)]);
    seed.extend_from_slice(&(body.len() as u64).to_le_bytes());
    Controls::derived(&seed)
}
