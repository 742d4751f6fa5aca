//! Clearway workers: take pointers from the work queue, process the
//! transactions they point to ([`process`]), and acknowledge the queue only
//! after the outcome is durable.
//!
//! - Leases are extended while a transaction is being processed, so long
//!   work is not redelivered under our feet.
//! - A failure gives the message back with exponential backoff (by
//!   extending its lease instead of releasing it); after `max_attempts`
//!   deliveries the transaction goes to the dead-letter store with its
//!   reason and the message is acked, so the rest of the queue keeps flowing.
//! - Shutdown is checked *between* messages: a message in progress is
//!   never cancelled; messages received but not started are released, and
//!   so are those a receive in flight at shutdown brings (it is awaited,
//!   never dropped: a dropped long poll can leave its messages invisible
//!   for a whole lease).

pub mod edits;
pub mod payers;
pub mod process;
pub mod route;
pub mod systems;
pub mod webhooks;

use clearway_core::config::Config;
use clearway_core::partners::Partners;
use clearway_core::ports::{Ports, QueueMessage, Receipt};
use process::Processor;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Messages received per call.
const RECEIVE_BATCH: usize = 10;

/// The worker pool.
#[derive(Debug, Clone)]
pub struct Workers {
    processor: Arc<Processor>,
    config: Arc<Config>,
}

impl Workers {
    /// Workers judging claims with the code sets in `codes` (refreshed by
    /// [`edits::SharedCodeSets::spawn_refresh`]).
    pub fn new(
        ports: Ports,
        partners: Arc<Partners>,
        config: Arc<Config>,
        feed: Arc<tokio::sync::Notify>,
        codes: edits::SharedCodeSets,
    ) -> Self {
        let router = Arc::new(route::Router::new(config.clone()));
        let editor = edits::Editor {
            config: config.clone(),
            codes,
            partners: partners.clone(),
            state: ports.state.clone(),
            router: router.clone(),
        };
        let pharmacy =
            Arc::new(clearway_fastpath::FastPath::new(ports.state.clone(), partners.clone(), config.clone()));
        Workers {
            processor: Arc::new(Processor {
                ports,
                partners,
                config: config.clone(),
                router,
                editor,
                feed,
                coverage_changed: None,
                pharmacy,
            }),
            config,
        }
    }

    /// Calls `hook(payer id, member id)` for every member an 834 changed.
    pub fn on_coverage_changed(mut self, hook: process::CoverageHook) -> Self {
        let mut p = (*self.processor).clone();
        p.coverage_changed = Some(hook);
        self.processor = Arc::new(p);
        self
    }

    /// Answer the D.0 transactions of NCPDP batch files through `fastpath`
    /// (the same PBM gates as the real-time switch path).
    pub fn with_pharmacy(mut self, fastpath: Arc<clearway_fastpath::FastPath>) -> Self {
        let mut p = (*self.processor).clone();
        p.pharmacy = fastpath;
        self.processor = Arc::new(p);
        self
    }

    /// The payer round trip (batches out, answers back), sharing the
    /// workers' per-payer rate limits and breakers.
    pub fn round_trip(&self) -> Arc<payers::RoundTrip> {
        let p = &self.processor;
        Arc::new(payers::RoundTrip::new(
            p.ports.clone(),
            p.partners.clone(),
            p.config.clone(),
            p.router.clone(),
            p.feed.clone(),
        ))
    }

    pub fn processor(&self) -> Arc<Processor> {
        self.processor.clone()
    }

    /// Runs `workers.concurrency` consumers until `shutdown`, then waits for
    /// the messages in progress to finish.
    pub async fn run(&self, shutdown: CancellationToken) {
        let tracker = tokio_util::task::TaskTracker::new();
        for n in 0..self.config.workers.concurrency {
            let (me, stop) = (self.clone(), shutdown.clone());
            tracker.spawn(async move { me.consume(n, stop).await });
        }
        tracker.close();
        tracker.wait().await;
    }

    async fn consume(&self, n: usize, shutdown: CancellationToken) {
        let queue = self.processor.ports.queue.clone();
        let lease = self.config.workers.lease;
        let mut idle_backoff = Duration::from_millis(100);
        while !shutdown.is_cancelled() {
            // A receive in flight is never dropped (its wait is at most
            // 2 s): a queue may already have handed it messages, which
            // would stay invisible for a whole lease if nobody took them.
            // When shutdown came meanwhile, they are given back at once.
            let received = queue.receive(RECEIVE_BATCH, lease, Duration::from_secs(2)).await;
            if shutdown.is_cancelled() {
                for m in received.iter().flatten() {
                    let _ = queue.release(&m.receipt).await;
                }
                break;
            }
            let messages = match received {
                Ok(m) => {
                    idle_backoff = Duration::from_millis(100);
                    m
                }
                Err(e) => {
                    tracing::warn!(worker = n, error = %clearway_core::error::chain(&e), "queue receive failed; backing off");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(idle_backoff) => {}
                    }
                    idle_backoff = (idle_backoff * 2).min(Duration::from_secs(10));
                    continue;
                }
            };
            // Messages waiting their turn keep their leases too, so a long
            // transaction at the head of a batch does not get the rest
            // redelivered to another worker.
            let waiting: Arc<std::sync::Mutex<Vec<Receipt>>> =
                Arc::new(std::sync::Mutex::new(messages.iter().skip(1).map(|m| m.receipt.clone()).collect()));
            let keeper = (messages.len() > 1).then(|| {
                let (queue, waiting) = (queue.clone(), waiting.clone());
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(lease / 3).await;
                        let receipts: Vec<Receipt> = waiting.lock().map(|w| w.clone()).unwrap_or_default();
                        if receipts.is_empty() {
                            break;
                        }
                        let _ = queue.extend_many(&receipts, lease).await;
                    }
                })
            });
            // Finished messages are acknowledged together (one batched
            // delete per received batch on SQS), after their effects are
            // durable; until then the keeper extends them with the rest.
            let mut done: Vec<Receipt> = Vec::new();
            let mut rest = messages.into_iter();
            for m in rest.by_ref() {
                if let Ok(mut w) = waiting.lock() {
                    w.retain(|r| r != &m.receipt);
                }
                let receipt = m.receipt.clone();
                if self.settle(m).await {
                    if let Ok(mut w) = waiting.lock() {
                        w.push(receipt.clone());
                    }
                    done.push(receipt);
                }
                if shutdown.is_cancelled() {
                    break;
                }
            }
            ack(queue.as_ref(), &done).await;
            if let Some(k) = keeper {
                k.abort();
            }
            // Received but not started: give them back now.
            for m in rest {
                let _ = queue.release(&m.receipt).await;
            }
        }
    }

    /// Processes every pointer of a message (one, or a batch the outbox
    /// packed). `true`: the message is finished and may be acknowledged;
    /// `false`: it was given back to return after a backoff.
    ///
    /// A failing transaction is dead-lettered after `max_attempts`
    /// deliveries unless the failure is our own throttling or a backend
    /// outage; the others in the message are unaffected (on redelivery the
    /// finished ones are no-ops).
    async fn settle(&self, m: QueueMessage) -> bool {
        let queue = self.processor.ports.queue.clone();
        let lease = self.config.workers.lease;
        // Keep the lease alive while processing.
        let keeper = {
            let (queue, receipt) = (queue.clone(), m.receipt.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(lease / 3).await;
                    if queue.extend(&receipt, lease).await.is_err() {
                        break;
                    }
                }
            })
        };
        let started = std::time::Instant::now();
        // The delay before a message that must come back is seen again.
        let delay = backoff(m.attempt, self.config.workers.backoff_base, self.config.workers.backoff_max);
        let mut retry = false;
        match process::Processor::pointers(&m.body) {
            Ok(pointers) => {
                for p in &pointers {
                    if let Err(e) = self.processor.process_pointer(p, m.attempt).await {
                        retry |= !self.failed(&e, Some(p), m.attempt, delay).await;
                    }
                }
            }
            Err(e) => retry = !self.failed(&e, None, m.attempt, delay).await,
        }
        keeper.abort();
        metrics::histogram!("clearway_worker_process_seconds").record(started.elapsed().as_secs_f64());
        if retry {
            let _ = queue.extend(&m.receipt, delay).await;
            return false;
        }
        true
    }

    /// Handles a failure; `true` when it is settled (dead-lettered), `false`
    /// when the message must come back.
    async fn failed(
        &self,
        e: &process::ProcessError,
        p: Option<&clearway_core::records::Pointer>,
        attempt: u32,
        delay: Duration,
    ) -> bool {
        let reason = e.reason();
        metrics::counter!("clearway_worker_failures_total").increment(1);
        if attempt < self.config.workers.max_attempts || e.is_throttled() || e.is_backend_outage() {
            tracing::info!(attempt, delay_ms = delay.as_millis() as u64, reason = %reason, "processing failed; retrying later");
            return false;
        }
        let settled = match p {
            Some(p) => self.processor.dead_letter_pointer(p, attempt, &reason).await,
            None => {
                tracing::error!("unreadable queue message dropped after {attempt} attempts");
                metrics::counter!("clearway_dead_letters_total", "kind" => "unreadable").increment(1);
                Ok(())
            }
        };
        match settled {
            Ok(()) => true,
            Err(d) => {
                tracing::error!(error = %clearway_core::error::chain(&d), "could not dead-letter; the message will return");
                false
            }
        }
    }
}

async fn ack(queue: &dyn clearway_core::ports::WorkQueue, receipts: &[Receipt]) {
    if receipts.is_empty() {
        return;
    }
    for attempt in 0..5u32 {
        match queue.ack(receipts).await {
            Ok(()) => return,
            Err(e) if e.is_retryable() => tokio::time::sleep(Duration::from_millis(100 << attempt)).await,
            Err(e) => {
                // A stale receipt: the message was redelivered; the other
                // delivery will find the transaction finished.
                tracing::info!(error = %clearway_core::error::chain(&e), "queue ack not applied");
                return;
            }
        }
    }
}

/// Exponential backoff with jitter: base·2^(attempt-1), capped.
pub fn backoff(attempt: u32, base: Duration, max: Duration) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    let capped = exp.min(max);
    // Up to 20 % jitter, from the clock's nanoseconds (no RNG dependency).
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let jitter = capped.mul_f64(f64::from(nanos % 200) / 1000.0);
    (capped + jitter).min(max.max(base))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let (b, m) = (Duration::from_millis(100), Duration::from_secs(2));
        assert!(backoff(1, b, m) >= Duration::from_millis(100) && backoff(1, b, m) <= Duration::from_millis(120));
        assert!(backoff(3, b, m) >= Duration::from_millis(400));
        assert_eq!(backoff(20, b, m), m);
    }
}
