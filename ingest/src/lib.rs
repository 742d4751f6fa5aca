//! Clearway's intake: HTTP (axum on hyper) and MLLP.
//!
//! A `202 Accepted` or an MLLP ACK is sent only after the submission's
//! encrypted payload, its transaction record, its dedupe keys and its queue
//! pointer are durable ([`accept`]). Bad input is answered at the door with
//! a standard answer (problem JSON, TA1, HL7 AR) and never reaches the
//! queue; oversized input is refused before it is buffered; when the
//! backend or the queue cannot keep up, clients are told to come back
//! (`503`/`429` with `Retry-After`).

pub mod accept;
pub mod authz;
pub mod http;
pub mod lookup;
pub mod mllp;
mod openapi;
mod problem;
pub mod realtime;
pub mod tls;

use accept::Refusal;
use clearway_core::PartnerId;
use clearway_core::config::Config;
use clearway_core::partners::Partners;
use clearway_core::ports::Ports;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// What the intake (and the read endpoints) work with.
pub struct Services {
    pub ports: Ports,
    pub partners: Arc<Partners>,
    pub config: Arc<Config>,
    /// Woken when acknowledgements are written in this process, so long
    /// polls on the feed return at once.
    pub feed: Arc<Notify>,
    /// Cleared while shutting down: `/readyz` fails, intake refuses.
    pub ready: AtomicBool,
    /// Real-time eligibility and claim status (`/v1/eligibility`,
    /// `/v1/claim-status`).
    pub fastpath: Arc<clearway_fastpath::FastPath>,
    /// Woken when messages are queued for subscribed systems in this
    /// process, so the deliverers start at once.
    pub deliveries: Arc<Notify>,
    /// Where the audit events of authenticated requests go (`None`: not
    /// audited, the AWS backend until its audit store is built).
    pub audit: Option<Arc<dyn clearway_core::audit::AuditSink>>,
    /// Per-caller token buckets (`[limits]`).
    pub limits: authz::RateLimits,
    /// The change feed's events of real-time exchanges (analytics).
    pub realtime: realtime::RealTimeLog,
    /// The report pack over the analytics export (`GET /v1/reports/{name}`;
    /// `None`: not served).
    pub reports: Option<Arc<dyn clearway_core::reports::Reports>>,
    /// Each destination's published queue depth and when it was read.
    depths: Mutex<HashMap<String, (std::time::Instant, u64)>>,
    inflight_keys: Mutex<HashSet<(PartnerId, String)>>,
    depth: AtomicU64,
    depth_checked_ms: AtomicI64,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services").finish_non_exhaustive()
    }
}

/// Removes an idempotency key from the in-flight set when dropped.
#[allow(missing_debug_implementations)]
pub struct InflightGuard<'a> {
    svc: &'a Services,
    key: (PartnerId, String),
}

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut set) = self.svc.inflight_keys.lock() {
            set.remove(&self.key);
        }
    }
}

impl Services {
    pub fn new(ports: Ports, partners: Arc<Partners>, config: Arc<Config>, feed: Arc<Notify>) -> Self {
        let fastpath =
            Arc::new(clearway_fastpath::FastPath::new(ports.state.clone(), partners.clone(), config.clone()));
        Services {
            fastpath,
            realtime: realtime::RealTimeLog::new(ports.state.clone()),
            reports: None,
            ports,
            partners,
            limits: authz::RateLimits::new(config.limits),
            config,
            feed,
            ready: AtomicBool::new(true),
            deliveries: Arc::new(Notify::new()),
            audit: None,
            depths: Mutex::new(HashMap::new()),
            inflight_keys: Mutex::new(HashSet::new()),
            depth: AtomicU64::new(0),
            depth_checked_ms: AtomicI64::new(0),
        }
    }

    /// With the report pack (`GET /v1/reports/{name}`).
    pub fn with_reports(mut self, reports: Arc<dyn clearway_core::reports::Reports>) -> Self {
        self.reports = Some(reports);
        self
    }

    /// With an audit log for authenticated requests.
    pub fn with_audit(mut self, audit: Arc<dyn clearway_core::audit::AuditSink>) -> Self {
        self.audit = Some(audit);
        self
    }

    /// Marks an idempotency key as being processed; `None` if it already is.
    pub fn idempotency_guard(&self, partner: &PartnerId, key: &str) -> Option<InflightGuard<'_>> {
        let k = (partner.clone(), key.to_string());
        let mut set = self.inflight_keys.lock().ok()?;
        if !set.insert(k.clone()) {
            return None;
        }
        Some(InflightGuard { svc: self, key: k })
    }

    /// `Err` (503) when a destination the submission is routed to holds
    /// `max_queue` messages already: as its deliverer last published
    /// (read at most once a second per destination) plus what this process
    /// queued since. Approximate by design: the deliverer publishes every
    /// 2 s, and other processes' intake is seen only when it does.
    pub async fn destinations_have_room(&self, routed: &[accept::Routed]) -> Result<(), Refusal> {
        for r in routed {
            let Some(dest) = self.config.systems.destination(&r.destination) else { continue };
            let cached = self
                .depths
                .lock()
                .ok()
                .and_then(|m| m.get(&r.destination).copied())
                .filter(|(at, _)| at.elapsed() < std::time::Duration::from_secs(1));
            let waiting = match cached {
                Some((_, w)) => w,
                None => {
                    let w = match clearway_core::systems::depth(&self.ports, &r.destination).await {
                        Ok(d) => d.map_or(0, |d| d.waiting),
                        Err(e) => {
                            tracing::warn!(error = %clearway_core::error::chain(&e), "destination depth unavailable");
                            return Err(Refusal::Unavailable { retry_after_secs: 5, throttled: false });
                        }
                    };
                    if let Ok(mut m) = self.depths.lock() {
                        m.insert(r.destination.clone(), (std::time::Instant::now(), w));
                    }
                    w
                }
            };
            if waiting >= dest.max_queue {
                metrics::counter!("clearway_destination_refused_total", "destination" => r.destination.clone())
                    .increment(1);
                return Err(Refusal::Unavailable { retry_after_secs: 30, throttled: false });
            }
        }
        Ok(())
    }

    /// Counts messages this process just queued into the depth it last
    /// read, so the bound holds between two publications.
    pub fn note_enqueued(&self, routed: &[accept::Routed]) {
        if let Ok(mut m) = self.depths.lock() {
            for r in routed {
                if let Some((_, w)) = m.get_mut(&r.destination) {
                    *w += r.messages.len() as u64;
                }
            }
        }
    }

    /// `Some(refusal)` when new work should wait: shutting down, or the
    /// queue is deeper than `server.max_queue_depth` (checked at most twice
    /// a second).
    pub async fn backpressure(&self) -> Option<Refusal> {
        if !self.ready.load(Ordering::Relaxed) {
            return Some(Refusal::Unavailable { retry_after_secs: 5, throttled: false });
        }
        let now = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
        let last = self.depth_checked_ms.load(Ordering::Relaxed);
        if now - last > 500
            && self.depth_checked_ms.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            match self.ports.queue.depth().await {
                Ok(d) => {
                    self.depth.store(d.visible, Ordering::Relaxed);
                    metrics::gauge!("clearway_queue_visible_messages").set(d.visible as f64);
                    metrics::gauge!("clearway_queue_in_flight_messages").set(d.in_flight as f64);
                }
                Err(e) => {
                    tracing::warn!(error = %clearway_core::error::chain(&e), "queue depth unavailable");
                    return Some(Refusal::Unavailable { retry_after_secs: 5, throttled: false });
                }
            }
        }
        if self.depth.load(Ordering::Relaxed) > self.config.server.max_queue_depth {
            metrics::counter!("clearway_intake_throttled_total").increment(1);
            return Some(Refusal::Unavailable { retry_after_secs: 2, throttled: true });
        }
        None
    }
}
