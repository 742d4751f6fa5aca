//! What stands between a storm of checks and a payer: a concurrency limit,
//! a token-bucket rate limit and a circuit breaker, per payer. A call that
//! would exceed them is refused at once (the caller answers from the stale
//! cache or with AAA 42); it never waits in a queue that outlives the
//! real-time deadline.

use crate::UpstreamError;
use clearway_core::config::PayerConfig;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

use clearway_core::limits::{CircuitBreaker, TokenBucket};

#[derive(Debug)]
struct State {
    bucket: TokenBucket,
    breaker: CircuitBreaker,
}

/// One payer's limits.
#[derive(Debug)]
pub struct Gate {
    in_flight: Semaphore,
    state: Mutex<State>,
    /// Calls refused by the concurrency or rate limit (not the breaker).
    refused: AtomicU64,
    ok: AtomicU64,
    failed: AtomicU64,
    /// When the payer last answered (Unix ms; 0: not yet).
    last_answer_ms: AtomicI64,
}

/// How one payer's real-time gate stands (for the console).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateHealth {
    pub payer: String,
    pub breaker_open: bool,
    /// Calls the concurrency or rate limit refused, since the start.
    pub refused: u64,
    pub ok: u64,
    pub failed: u64,
    /// When the payer last answered (Unix ms).
    pub last_answer_ms: Option<i64>,
}

impl Gate {
    pub fn new(p: &PayerConfig) -> Self {
        Gate {
            in_flight: Semaphore::new(p.concurrency.max(1)),
            state: Mutex::new(State {
                bucket: TokenBucket::new(p.rate_per_sec, p.burst),
                breaker: CircuitBreaker::new(p.failure_threshold, p.cooldown),
            }),
            refused: AtomicU64::new(0),
            ok: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            last_answer_ms: AtomicI64::new(0),
        }
    }

    /// Its state now, named `payer`.
    pub fn health(&self, payer: &str) -> GateHealth {
        let breaker_open = self.state.lock().unwrap_or_else(|p| p.into_inner()).breaker.is_open();
        let last = self.last_answer_ms.load(Ordering::Relaxed);
        GateHealth {
            payer: payer.to_string(),
            breaker_open,
            refused: self.refused.load(Ordering::Relaxed),
            ok: self.ok.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            last_answer_ms: (last > 0).then_some(last),
        }
    }

    fn admit(&self) -> Result<(), UpstreamError> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if !st.breaker.allow() {
            return Err(UpstreamError::CircuitOpen);
        }
        st.bucket.take().map_err(|_| UpstreamError::Throttled)
    }

    fn record(&self, ok: bool) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if ok { st.breaker.success() } else { st.breaker.failure() }
    }

    /// Runs `call` if the payer's limits allow it, within `timeout`.
    pub async fn call<T, F>(&self, timeout: Duration, call: F) -> Result<T, UpstreamError>
    where
        F: Future<Output = Result<T, UpstreamError>>,
    {
        let Ok(_permit) = self.in_flight.try_acquire() else {
            self.refused.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("clearway_fastpath_upstream_total", "outcome" => "concurrency").increment(1);
            return Err(UpstreamError::Throttled);
        };
        if let Err(e) = self.admit() {
            let label = if matches!(e, UpstreamError::CircuitOpen) {
                "circuit-open"
            } else {
                self.refused.fetch_add(1, Ordering::Relaxed);
                "throttled"
            };
            metrics::counter!("clearway_fastpath_upstream_total", "outcome" => label).increment(1);
            return Err(e);
        }
        let started = Instant::now();
        let out = match tokio::time::timeout(timeout, call).await {
            Ok(r) => r,
            Err(_) => Err(UpstreamError::Timeout),
        };
        metrics::histogram!("clearway_fastpath_upstream_seconds").record(started.elapsed().as_secs_f64());
        self.record(out.is_ok());
        if out.is_ok() {
            self.ok.fetch_add(1, Ordering::Relaxed);
            let now_ms = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
            self.last_answer_ms.store(now_ms, Ordering::Relaxed);
        } else {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        let label = if out.is_ok() { "ok" } else { "failed" };
        metrics::counter!("clearway_fastpath_upstream_total", "outcome" => label).increment(1);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payer(rate: f64, burst: u32, threshold: u32) -> PayerConfig {
        let mut p = PayerConfig::default_for("P");
        p.rate_per_sec = rate;
        p.burst = burst;
        p.failure_threshold = threshold;
        p.cooldown = Duration::from_millis(200);
        p
    }

    #[tokio::test]
    async fn rate_limit_refuses_beyond_the_burst() {
        let g = Gate::new(&payer(0.001, 3, 100));
        let mut ok = 0;
        for _ in 0..10 {
            if g.call(Duration::from_secs(1), async { Ok::<_, UpstreamError>(()) }).await.is_ok() {
                ok += 1;
            }
        }
        assert_eq!(ok, 3, "only the burst gets through");
        let h = g.health("P");
        assert_eq!((h.refused, h.ok, h.failed, h.breaker_open), (7, 3, 0, false));
        assert!(h.last_answer_ms.is_some());
    }

    #[tokio::test]
    async fn breaker_opens_after_failures_and_half_opens_after_cooldown() {
        let g = Gate::new(&payer(1000.0, 1000, 2));
        for _ in 0..2 {
            let r =
                g.call(Duration::from_secs(1), async { Err::<(), _>(UpstreamError::Unavailable("x".into())) }).await;
            assert!(matches!(r, Err(UpstreamError::Unavailable(_))));
        }
        let r = g.call(Duration::from_secs(1), async { Ok::<_, UpstreamError>(()) }).await;
        assert!(matches!(r, Err(UpstreamError::CircuitOpen)), "open: the call is not made");
        let h = g.health("P");
        assert_eq!((h.breaker_open, h.failed, h.refused, h.last_answer_ms), (true, 2, 0, None));
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(g.call(Duration::from_secs(1), async { Ok::<_, UpstreamError>(()) }).await.is_ok(), "half-open trial");
    }

    #[tokio::test]
    async fn slow_calls_time_out() {
        let g = Gate::new(&payer(1000.0, 1000, 5));
        let r = g
            .call(Duration::from_millis(50), async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok::<_, UpstreamError>(())
            })
            .await;
        assert!(matches!(r, Err(UpstreamError::Timeout)));
    }
}
