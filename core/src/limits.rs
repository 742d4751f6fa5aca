//! The limits Clearway puts in front of every payer: a token bucket (rate
//! and burst) and a circuit breaker. Shared by claim routing (workers) and
//! real-time checks (fast path).

use std::time::{Duration, Instant};

/// A token bucket: `rate` tokens a second, at most `burst` saved up.
#[derive(Debug)]
pub struct TokenBucket {
    tokens: f64,
    last: Instant,
    rate: f64,
    burst: f64,
}

impl TokenBucket {
    /// Starts full.
    pub fn new(rate: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        TokenBucket { tokens: burst, last: Instant::now(), rate, burst }
    }

    /// Takes a token, or says how long until one is available.
    pub fn take(&mut self) -> Result<(), Duration> {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else if self.rate > 0.0 {
            Err(Duration::from_secs_f64(((1.0 - self.tokens) / self.rate).min(86_400.0)))
        } else {
            Err(Duration::from_secs(86_400))
        }
    }
}

/// A circuit breaker: opens after `threshold` consecutive failures, stays
/// open for `cooldown`, then lets one trial through (half-open); a failed
/// trial reopens it at once, a success closes it.
#[derive(Debug)]
pub struct CircuitBreaker {
    failures: u32,
    open_until: Option<Instant>,
    threshold: u32,
    cooldown: Duration,
}

impl CircuitBreaker {
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        CircuitBreaker { failures: 0, open_until: None, threshold: threshold.max(1), cooldown }
    }

    /// Whether a call may go ahead now.
    pub fn allow(&mut self) -> bool {
        match self.open_until {
            Some(t) if Instant::now() < t => false,
            Some(_) => {
                self.open_until = None;
                self.failures = self.threshold.saturating_sub(1);
                true
            }
            None => true,
        }
    }

    /// Whether it is open now (without moving it to half-open).
    pub fn is_open(&self) -> bool {
        self.open_until.is_some_and(|t| Instant::now() < t)
    }

    pub fn success(&mut self) {
        self.failures = 0;
        self.open_until = None;
    }

    pub fn failure(&mut self) {
        self.failures += 1;
        if self.failures >= self.threshold {
            self.open_until = Some(Instant::now() + self.cooldown);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_limits_rate() {
        let mut b = TokenBucket::new(10.0, 2);
        assert!(b.take().is_ok() && b.take().is_ok());
        let wait = b.take().unwrap_err();
        assert!(wait <= Duration::from_millis(100) && wait > Duration::ZERO);
    }

    #[test]
    fn breaker_opens_and_half_opens() {
        let mut br = CircuitBreaker::new(2, Duration::from_millis(50));
        br.failure();
        assert!(br.allow());
        br.failure();
        assert!(!br.allow(), "open after threshold failures");
        std::thread::sleep(Duration::from_millis(60));
        assert!(br.allow(), "half-open after cooldown");
        br.failure();
        assert!(!br.allow(), "a failed trial reopens");
        std::thread::sleep(Duration::from_millis(60));
        assert!(br.allow());
        br.success();
        br.failure();
        assert!(br.allow(), "success resets");
    }
}
