//! Delivering claims to payers: per payer, an outbox directory (default) or
//! an HTTP endpoint, behind a token-bucket rate limit and a circuit breaker.
//!
//! Delivery is idempotent by construction: the outbox file name is the
//! claim's stable id and the file appears whole by rename; HTTP deliveries carry the
//! claim id as `Idempotency-Key`. So a redelivered queue item that routes a
//! claim again does not give the payer a second copy.

use clearway_core::config::{Config, Destination, PayerConfig};
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Why a delivery did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("payer rate limit: retry later")]
    Throttled,
    #[error("payer circuit breaker is open")]
    CircuitOpen,
    #[error("delivery failed: {0}")]
    Failed(String),
}

use clearway_core::limits::{CircuitBreaker as Breaker, TokenBucket as Bucket};

#[derive(Debug)]
struct PayerState {
    bucket: Bucket,
    breaker: Breaker,
}

/// Routes claims to payers.
pub struct Router {
    config: Arc<Config>,
    outbox: PathBuf,
    payers: Mutex<HashMap<String, PayerState>>,
    http: clearway_fastpath::http::PayerClients,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router").field("outbox", &self.outbox).finish_non_exhaustive()
    }
}

/// Longest a delivery waits for a rate-limit token before giving the work
/// back to the queue.
const MAX_TOKEN_WAIT: Duration = Duration::from_secs(5);

impl Router {
    pub fn new(config: Arc<Config>) -> Self {
        let base = || reqwest::Client::builder().connect_timeout(Duration::from_secs(5)).pool_max_idle_per_host(32);
        let http = clearway_fastpath::http::PayerClients::new_or_failing(base, &config);
        Router { outbox: config.routing.outbox_dir.clone(), config, payers: Mutex::new(HashMap::new()), http }
    }

    /// The configured payer an identifier names (see
    /// [`Config::canonical_payer`]).
    pub fn canonical_payer(&self, id: &str) -> String {
        self.config.canonical_payer(id).to_string()
    }

    /// Whether claims for this payer (or one of its aliases) can be routed
    /// at all.
    pub fn knows(&self, payer: &str) -> bool {
        self.config.payers.contains_key(self.config.canonical_payer(payer)) || self.config.routing.route_unknown_payers
    }

    fn settings(&self, payer: &str) -> PayerConfig {
        self.config.payer(payer)
    }

    fn with_state<T>(&self, payer: &str, f: impl FnOnce(&mut PayerState) -> T) -> T {
        let mut map = self.payers.lock().unwrap_or_else(|p| p.into_inner());
        let st = map.entry(payer.to_string()).or_insert_with(|| {
            let settings = self.settings(payer);
            PayerState {
                bucket: Bucket::new(settings.rate_per_sec, settings.burst),
                breaker: Breaker::new(settings.failure_threshold, settings.cooldown),
            }
        });
        f(st)
    }

    /// Delivers several claim documents for one payer, in order; returns
    /// where each went. Each claim takes its own rate-limit token. Outbox
    /// files are written in one pass that syncs the directory once; a
    /// failure part-way leaves the files already written, which a retry
    /// finds and skips.
    /// `payer` may be an alias: a payer has one rate limit, one breaker and
    /// one outbox directory whatever id a claim names it by.
    pub async fn deliver_many(&self, payer: &str, items: &[(String, Vec<u8>)]) -> Result<Vec<String>, RouteError> {
        let payer = self.config.canonical_payer(payer);
        let settings = self.settings(payer);
        if !self.with_state(payer, |s| s.breaker.allow()) {
            metrics::counter!("clearway_route_deliveries_total", "outcome" => "circuit-open")
                .increment(items.len() as u64);
            return Err(RouteError::CircuitOpen);
        }
        // Rate limit: a token per claim, waiting up to a bound.
        let started = Instant::now();
        for _ in items {
            loop {
                match self.with_state(payer, |s| s.bucket.take()) {
                    Ok(()) => break,
                    Err(wait) if started.elapsed() + wait <= MAX_TOKEN_WAIT => tokio::time::sleep(wait).await,
                    Err(_) => {
                        metrics::counter!("clearway_route_deliveries_total", "outcome" => "throttled").increment(1);
                        return Err(RouteError::Throttled);
                    }
                }
            }
        }
        let result = match &settings.destination {
            Destination::Outbox => self.to_outbox(payer, items).await,
            Destination::Sftp(_) => Err(RouteError::Failed(
                "this payer takes 837 batches over SFTP; a claim that did not arrive as X12 cannot go there yet".into(),
            )),
            Destination::Http(url) => {
                let mut out = Vec::with_capacity(items.len());
                for (claim_id, body) in items {
                    match self.to_http(payer, url, claim_id, body, settings.timeout).await {
                        Ok(d) => out.push(d),
                        Err(e) => {
                            metrics::counter!("clearway_route_deliveries_total", "outcome" => "delivered")
                                .increment(out.len() as u64);
                            self.with_state(payer, |s| s.breaker.failure());
                            metrics::counter!("clearway_route_deliveries_total", "outcome" => "failed").increment(1);
                            return Err(e);
                        }
                    }
                }
                Ok(out)
            }
        };
        match &result {
            Ok(_) => {
                self.with_state(payer, |s| s.breaker.success());
                metrics::counter!("clearway_route_deliveries_total", "outcome" => "delivered")
                    .increment(items.len() as u64);
            }
            Err(_) => {
                self.with_state(payer, |s| s.breaker.failure());
                metrics::counter!("clearway_route_deliveries_total", "outcome" => "failed").increment(1);
            }
        }
        result
    }

    /// Whether a batch may go to `payer` now: its breaker is closed and a
    /// rate-limit token is free (one token per batch).
    pub fn admit_batch(&self, payer: &str) -> Result<(), RouteError> {
        let payer = self.config.canonical_payer(payer);
        self.with_state(payer, |s| {
            if !s.breaker.allow() {
                return Err(RouteError::CircuitOpen);
            }
            s.bucket.take().map_err(|_| RouteError::Throttled)
        })
    }

    /// Whether the payer's server may be polled now (its breaker is closed).
    pub fn admit_poll(&self, payer: &str) -> Result<(), RouteError> {
        let payer = self.config.canonical_payer(payer);
        if self.with_state(payer, |s| s.breaker.allow()) { Ok(()) } else { Err(RouteError::CircuitOpen) }
    }

    /// Reports how a delivery or poll went (for the payer's breaker).
    pub fn report(&self, payer: &str, ok: bool) {
        let payer = self.config.canonical_payer(payer);
        self.with_state(payer, |s| if ok { s.breaker.success() } else { s.breaker.failure() });
        // Labelled only by configured payers: ids from claims are unbounded.
        let label = if self.config.payers.contains_key(payer) { payer.to_string() } else { "other".to_string() };
        metrics::gauge!("clearway_payer_breaker_open", "payer" => label)
            .set(if self.with_state(payer, |s| s.breaker.allow()) { 0.0 } else { 1.0 });
    }

    async fn to_outbox(&self, payer: &str, items: &[(String, Vec<u8>)]) -> Result<Vec<String>, RouteError> {
        let safe = |s: &str| {
            s.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) && !s.is_empty() && !s.starts_with('.')
        };
        if !safe(payer) || items.iter().any(|(id, _)| !safe(id)) {
            return Err(RouteError::Failed("payer or claim id is not a safe file name".into()));
        }
        let dir = self.outbox.join(payer);
        let items = items.to_vec();
        let count = items.len();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let mut wrote = false;
            for (claim_id, body) in &items {
                // Delivered before (a redelivery): nothing to do.
                wrote |= write_whole_unsynced(&dir, &format!("{claim_id}.json"), body)?;
            }
            // One directory sync makes every rename above durable.
            if wrote { std::fs::File::open(&dir)?.sync_all() } else { Ok(()) }
        })
        .await
        .map_err(|e| RouteError::Failed(e.to_string()))?
        .map_err(|e| RouteError::Failed(format!("outbox write: {}", e.kind())))?;
        Ok(vec![format!("outbox:{payer}"); count])
    }

    async fn to_http(
        &self,
        payer: &str,
        url: &str,
        claim_id: &str,
        body: &[u8],
        timeout: Duration,
    ) -> Result<String, RouteError> {
        let resp = self
            .http
            .get(payer)
            .post(url)
            .timeout(timeout)
            .header("content-type", "application/json")
            .header("idempotency-key", claim_id)
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| {
                RouteError::Failed(if e.is_timeout() { "payer timed out".into() } else { "payer unreachable".into() })
            })?;
        let status = resp.status();
        // 409: the payer already has this claim (our idempotency key).
        if status.is_success() || status == reqwest::StatusCode::CONFLICT {
            Ok(format!("http:{}", status.as_u16()))
        } else {
            Err(RouteError::Failed(format!("payer answered {}", status.as_u16())))
        }
    }
}

/// Writes `bytes` as `dir/name`, whole or not at all: to a hidden
/// temporary file, synced, renamed, and the directory synced. Returns
/// false when `name` is already there.
pub fn write_whole(dir: &std::path::Path, name: &str, bytes: &[u8]) -> std::io::Result<bool> {
    let wrote = write_whole_unsynced(dir, name, bytes)?;
    if wrote {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(wrote)
}

/// [`write_whole`] without the directory sync (the caller syncs once after
/// several).
fn write_whole_unsynced(dir: &std::path::Path, name: &str, bytes: &[u8]) -> std::io::Result<bool> {
    let mut dirs = std::fs::DirBuilder::new();
    dirs.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        dirs.mode(0o700);
    }
    dirs.create(dir)?;
    let path = dir.join(name);
    if path.exists() {
        return Ok(false);
    }
    // Written whole to a hidden temporary name, synced, then renamed: a
    // reader (or a retry after a crash) never sees half a file.
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, &path)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Regression: an alias had its own rate limit and breaker, and claims
    /// naming a payer by its alias were refused as an unknown payer.
    #[tokio::test]
    async fn an_alias_is_the_payer_it_names() {
        let dir = std::env::temp_dir().join(format!("clearway-route-{}", std::process::id()));
        let file = format!(
            "[routing]\nroute_unknown_payers = false\noutbox_dir = {:?}\n\n[payers.ACME01]\naliases = [\"987654321\"]\nrate_per_sec = 0.001\nburst = 1\n",
            dir.to_string_lossy()
        );
        let config = Arc::new(clearway_core::config::load(Some(&file), &HashMap::new()).unwrap());
        let router = Router::new(config);
        assert!(router.knows("987654321"));
        assert!(router.knows("ACME01"));
        assert!(!router.knows("OTHER"));
        let first = router.deliver_many("987654321", &[("c-1".into(), b"{}".to_vec())]).await.unwrap();
        assert!(first[0].contains("ACME01"), "{first:?}");
        // The burst of one is spent: the payer under its own id must wait.
        let second = router.deliver_many("ACME01", &[("c-2".into(), b"{}".to_vec())]).await;
        assert!(matches!(second, Err(RouteError::Throttled)), "{second:?}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
