//! Webhook delivery of acknowledgement events.
//!
//! For each partner with a webhook, events are read from the partner's
//! acknowledgement feed after a stored cursor and POSTed in order, each with
//! a stable event id (the acknowledgement id), a timestamp and an
//! HMAC-SHA256 signature:
//!
//! ```text
//! Clearway-Event-Id: <ack id>
//! Clearway-Timestamp: <unix seconds>
//! Clearway-Signature: v1=<hex HMAC-SHA256 of "<timestamp>.<body>">
//! ```
//!
//! The cursor advances only after a 2xx answer, so delivery is
//! at-least-once; a failing endpoint is retried with exponential backoff
//! (capped at five minutes) without holding up other partners.

use clearway_core::feed;
use clearway_core::partners::Partners;
use clearway_core::ports::{Condition, Key, Ports, Table, WriteOp};
use clearway_core::records::{
    AckRecord, FeedEntry, PartnerRecord, TransactionRecord, WEBHOOK_ATTEMPTS_TTL_SECS, WebhookAttempt, WebhookAttempts,
    WebhookStatus, webhook_status_key,
};
use clearway_core::telemetry;
use clearway_core::{PartnerId, PortResult, crypto};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Most partners whose endpoints are called at the same time.
const MAX_CONCURRENT_PARTNERS: usize = 32;
/// Feed entries read per page.
const PAGE: usize = 100;

/// Whether an acknowledgement's text goes in its event: all but a body
/// kept in more than one chunk (an 835 forwarded from a payer's, over
/// [`clearway_core::chunked::CHUNK_BYTES`]), which the event names by its
/// URL instead (`acknowledgementUrl`, read with the partner's API key), so
/// that neither side holds a file of any size in one request.
fn inline(ack: &AckRecord) -> bool {
    ack.body_chunks.is_none_or(|n| n <= 1)
}

/// The dispatcher.
pub struct Webhooks {
    inner: Arc<Inner>,
    retry: HashMap<PartnerId, (Instant, Duration)>,
    /// Failed attempts in a row, per partner.
    failures: HashMap<PartnerId, u32>,
}

struct Inner {
    ports: Ports,
    partners: Arc<Partners>,
    http: reqwest::Client,
    settle: Duration,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks").finish_non_exhaustive()
    }
}

fn cursor_key(partner: &PartnerId) -> Key {
    clearway_core::records::webhook_cursor_key(partner)
}

/// Checks the `[webhooks]` TLS files (at start-up: one that cannot be used
/// stops `serve`, naming it).
pub fn check_tls(config: &clearway_core::config::Config) -> Result<(), String> {
    if config.webhooks_tls.is_default() {
        return Ok(());
    }
    clearway_fastpath::http::payer_client(reqwest::Client::builder(), &config.webhooks_tls)
        .map(|_| ())
        .map_err(|e| format!("webhooks: {e}"))
}

impl Webhooks {
    /// `tls`: `[webhooks]` TLS settings (a configured CA instead of the
    /// platform's roots, our client certificate). Settings that cannot be
    /// used never fall back to the roots: every delivery then fails
    /// (`serve` checks them at start-up, [`check_tls`]).
    pub fn new(
        ports: Ports,
        partners: Arc<Partners>,
        settle: Duration,
        tls: &clearway_core::config::OutboundTls,
    ) -> Self {
        // No redirects; with TLS settings never plain HTTP.
        let base = || {
            reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .connect_timeout(Duration::from_secs(5))
                .redirect(reqwest::redirect::Policy::none())
                .https_only(!tls.is_default())
        };
        let http = clearway_fastpath::http::payer_client(base(), tls).unwrap_or_else(|e| {
            tracing::error!(problem = %e, "webhook TLS settings unusable: deliveries will fail");
            base().tls_certs_only(Vec::new()).build().unwrap_or_else(|_| reqwest::Client::new())
        });
        Webhooks {
            inner: Arc::new(Inner { ports, partners, http, settle }),
            retry: HashMap::new(),
            failures: HashMap::new(),
        }
    }

    /// Delivers until `shutdown`, waking when `feed` is notified or every
    /// second. A delivery in progress is finished, not cancelled.
    pub async fn run(mut self, feed: Arc<tokio::sync::Notify>, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            if let Err(e) = self.tick().await {
                tracing::warn!(error = %clearway_core::error::chain(&e), "webhook dispatch failed");
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = feed.notified() => tokio::time::sleep(self.inner.settle).await,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// One pass over the partners with webhooks: each partner's endpoint is
    /// called on its own task (up to [`MAX_CONCURRENT_PARTNERS`] at once),
    /// so a slow or failing endpoint holds up only its own partner.
    pub async fn tick(&mut self) -> PortResult<()> {
        let now = Instant::now();
        let due: Vec<PartnerRecord> = self
            .inner
            .partners
            .list()
            .await?
            .into_iter()
            .filter(|p| !p.revoked && p.webhook_url.is_some())
            .filter(|p| self.retry.get(&p.id).is_none_or(|(at, _)| now >= *at))
            .collect();
        let limit = Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_PARTNERS));
        let mut running = tokio::task::JoinSet::new();
        for p in due {
            let (inner, limit) = (self.inner.clone(), limit.clone());
            running.spawn(async move {
                let _permit = limit.acquire_owned().await;
                let result = inner.deliver_partner(&p).await;
                (p.id, result)
            });
        }
        while let Some(joined) = running.join_next().await {
            let Ok((id, result)) = joined else { continue };
            let now_text = || clearway_core::records::timestamp(time::OffsetDateTime::now_utc());
            match result {
                Ok(()) => {
                    if self.retry.remove(&id).is_some() {
                        let status = WebhookStatus { recovered_at: Some(now_text()), ..WebhookStatus::default() };
                        self.inner.note_status(&id, &status).await;
                    }
                    self.failures.remove(&id);
                }
                Err(why) => {
                    let next = self.retry.get(&id).map_or(Duration::from_secs(1), |(_, d)| (*d * 2).min(MAX_BACKOFF));
                    tracing::info!(partner = %id, reason = %why, retry_in_secs = next.as_secs(), "webhook delivery failed");
                    metrics::counter!("clearway_webhook_failures_total").increment(1);
                    let failures = self.failures.entry(id.clone()).or_insert(0);
                    *failures += 1;
                    let at = time::OffsetDateTime::now_utc();
                    let status = WebhookStatus {
                        failures: *failures,
                        last_failure_at: Some(clearway_core::records::timestamp(at)),
                        last_error: Some(why.clone()),
                        next_attempt_at: Some(clearway_core::records::timestamp(at + next)),
                        recovered_at: None,
                    };
                    self.inner.note_status(&id, &status).await;
                    self.retry.insert(id, (Instant::now() + next, next));
                }
            }
        }
        Ok(())
    }
}

impl Inner {
    /// Delivers the partner's settled feed entries after its cursor, in
    /// order, until none is left or one fails.
    async fn deliver_partner(&self, p: &PartnerRecord) -> Result<(), String> {
        let url = p.webhook_url.clone().unwrap_or_default();
        let secret = self.partners.webhook_secret(p).map_err(|e| e.to_string())?.ok_or("no webhook secret")?;
        let (mut cursor, mut version) =
            match self.ports.state.get(&cursor_key(&p.id)).await.map_err(|e| e.to_string())? {
                Some(item) => (String::from_utf8_lossy(&item.value).into_owned(), Some(item.version)),
                None => (String::new(), None),
            };
        loop {
            let after = (!cursor.is_empty()).then_some(cursor.as_str());
            // Taken before the page is read (see `clearway_core::feed`).
            let horizon = feed::clock().horizon_ms(self.settle);
            let page =
                self.ports.state.query(Table::AckFeed, p.id.as_str(), after, PAGE).await.map_err(|e| e.to_string())?;
            let full = page.len() == PAGE;
            let mut settled_all = true;
            for (_, item) in page {
                let Ok(entry) = serde_json::from_slice::<FeedEntry>(&item.value) else { continue };
                if !feed::settled(&entry.cursor, horizon) {
                    settled_all = false;
                    break;
                }
                let span = tracing::info_span!(
                    "webhook",
                    otel.kind = "client",
                    partner = %p.id,
                    transaction_id = %entry.transaction,
                    ack_id = %entry.ack_id,
                    otel.status_code = tracing::field::Empty,
                );
                let traceparent = self.traceparent(&p.id, &entry.transaction).await;
                telemetry::set_parent(&span, traceparent.as_deref());
                let started = Instant::now();
                let posted =
                    self.post(&url, secret.expose(), &entry, traceparent.as_deref()).instrument(span.clone()).await;
                if posted.is_err() {
                    span.record("otel.status_code", "ERROR");
                }
                self.note_attempt(&entry, started, posted.as_ref().err()).await;
                posted?;
                metrics::counter!("clearway_webhook_deliveries_total").increment(1);
                // Advance after each event, so a failure later does not
                // resend what was delivered.
                self.save_cursor(&p.id, &entry.cursor, version).await?;
                version = Some(version.map_or(1, |v| v + 1));
                cursor = entry.cursor;
            }
            if !full || !settled_all {
                return Ok(());
            }
        }
    }

    /// Records how the partner's deliveries go, for the console (best
    /// effort: a store that cannot take it now does not stop delivery).
    async fn note_status(&self, partner: &PartnerId, status: &WebhookStatus) {
        let Ok(value) = serde_json::to_vec(status) else { return };
        let put = WriteOp::Put {
            key: webhook_status_key(partner),
            value: bytes::Bytes::from(value),
            expires_at: None,
            condition: Condition::None,
            owner: None,
        };
        if let Err(e) = self.ports.state.write(vec![put]).await {
            tracing::debug!(error = %clearway_core::error::chain(&e), "webhook status not recorded");
        }
    }

    /// Adds an attempt to the acknowledgement's list (best effort, like
    /// [`Self::note_status`]; a concurrent writer's change is read again).
    async fn note_attempt(&self, entry: &FeedEntry, started: Instant, error: Option<&String>) {
        let now = time::OffsetDateTime::now_utc();
        let attempt = WebhookAttempt {
            at: clearway_core::records::timestamp(now),
            delivered: error.is_none(),
            error: error.cloned(),
            duration_ms: started.elapsed().as_millis() as u64,
        };
        let key = WebhookAttempts::key(&entry.transaction, &entry.ack_id);
        for _ in 0..3 {
            let (mut attempts, condition) = match self.ports.state.get(&key).await {
                Ok(Some(item)) => (
                    serde_json::from_slice::<WebhookAttempts>(&item.value).unwrap_or_default(),
                    Condition::Version(item.version),
                ),
                Ok(None) => (WebhookAttempts::default(), Condition::NotExists),
                Err(_) => return,
            };
            attempts.push(attempt.clone());
            let Ok(value) = serde_json::to_vec(&attempts) else { return };
            let put = WriteOp::Put {
                key: key.clone(),
                value: bytes::Bytes::from(value),
                expires_at: Some(now.unix_timestamp() + WEBHOOK_ATTEMPTS_TTL_SECS),
                condition,
                owner: None,
            };
            match self.ports.state.write(vec![put]).await {
                Ok(()) => return,
                Err(e) if e.kind() == clearway_core::ErrorKind::PreconditionFailed => continue,
                Err(e) => {
                    tracing::debug!(error = %clearway_core::error::chain(&e), "webhook attempt not recorded");
                    return;
                }
            }
        }
    }

    /// The trace context of the transaction an acknowledgement answers
    /// (none when its record cannot be read: the delivery goes on).
    async fn traceparent(&self, partner: &PartnerId, transaction: &clearway_core::TransactionId) -> Option<String> {
        let item = self.ports.state.get(&TransactionRecord::key(partner, transaction)).await.ok()??;
        serde_json::from_slice::<TransactionRecord>(&item.value).ok()?.traceparent
    }

    async fn post(&self, url: &str, secret: &[u8], entry: &FeedEntry, traceparent: Option<&str>) -> Result<(), String> {
        let ack = self
            .ports
            .state
            .get(&AckRecord::key(&entry.transaction, &entry.ack_id))
            .await
            .map_err(|e| e.to_string())?
            .and_then(|i| serde_json::from_slice::<AckRecord>(&i.value).ok());
        let text = match &ack {
            Some(a) if inline(a) => {
                Some(self.partners.ack_body(self.ports.blobs.as_ref(), a).await.map_err(|e| e.to_string())?)
            }
            _ => None,
        };
        let mut body = serde_json::json!({
            "id": entry.ack_id,
            "type": "acknowledgement",
            "kind": entry.kind,
            "transactionId": entry.transaction,
            "createdAt": entry.created_at,
            "contentType": ack.as_ref().map(|a| a.content_type.clone()),
            "acknowledgement": text,
        });
        // Too large to inline: where to fetch it.
        if ack.as_ref().is_some_and(|a| !inline(a)) {
            body["acknowledgementUrl"] = format!("/v1/transactions/{}/acks/{}", entry.transaction, entry.ack_id).into();
        }
        let body = body.to_string();
        let ts = time::OffsetDateTime::now_utc().unix_timestamp();
        let sig = crypto::webhook_signature(secret, ts, body.as_bytes());
        let mut req = self.http.post(url);
        if let Some(tp) = telemetry::traceparent(&tracing::Span::current(), traceparent) {
            req = req.header(telemetry::TRACEPARENT, tp);
        }
        let resp = req
            .header("content-type", "application/json")
            .header("clearway-event-id", entry.ack_id.as_str())
            .header("clearway-timestamp", ts.to_string())
            .header("clearway-signature", format!("v1={sig}"))
            .body(body)
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() { "endpoint timed out".to_string() } else { "endpoint unreachable".to_string() }
            })?;
        if !resp.status().is_success() {
            return Err(format!("endpoint answered {}", resp.status().as_u16()));
        }
        Ok(())
    }

    async fn save_cursor(&self, partner: &PartnerId, cursor: &str, version: Option<u64>) -> Result<(), String> {
        let condition = version.map_or(Condition::NotExists, Condition::Version);
        self.ports
            .state
            .write(vec![WriteOp::Put {
                key: cursor_key(partner),
                value: bytes::Bytes::from(cursor.to_string()),
                expires_at: None,
                condition,
                owner: None,
            }])
            .await
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An acknowledgement kept in more than one chunk (a forwarded 835 over
    /// 4 MiB) is named by its URL in its event; every other one is carried.
    #[test]
    fn a_body_over_one_chunk_is_named_not_carried() {
        let ack = |chunks: Option<u32>| AckRecord {
            id: "T-835-payer-x".into(),
            transaction: clearway_core::TransactionId::new(),
            partner: PartnerId::new("acme").unwrap(),
            kind: "835".into(),
            content_type: "application/edi-x12".into(),
            created_at: String::new(),
            body: String::new(),
            body_blob: None,
            body_chunks: chunks,
            body_sealed: None,
            feed_cursor: None,
        };
        assert!(inline(&ack(None)));
        assert!(inline(&ack(Some(1))));
        assert!(!inline(&ack(Some(2))));
    }
}
