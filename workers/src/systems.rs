//! Delivering HL7 v2 messages and FHIR resources to subscribed systems
//! (`[destinations.NAME]`), one deliverer per destination.
//!
//! Intake decided the routes and queued one entry per (transaction,
//! destination) under `q/<destination>` in the same commit as the
//! transaction, so a destination's queue is in intake order. The deliverer:
//!
//! - holds the destination's lease (one deliverer per destination across
//!   processes; a dead holder's lease runs out after [`LEASE_MS`], or three
//!   times the longest attempt; it is renewed before each message);
//! - takes the queue from its head, one message in flight: MLLP waits for
//!   the ACK whose MSA-2 is the message's MSH-10 (AA/CA accepted; AE/CE the
//!   route's `on_error`; AR/CR its `on_reject`), HTTP for a 2xx (409 counts:
//!   the destination has it; 408, 429 and 5xx are retried; other 4xx follow
//!   `on_reject`);
//! - removes an entry only after its acknowledgement, in one state write
//!   per page with the entries' delivery statuses, so a crash in between
//!   sends them again (the destination sees MSH-10 again and can dedupe) —
//!   at least once, in order;
//! - keeps a message it cannot deliver at the head and retries with
//!   exponential backoff (order kept: a destination down holds its queue),
//!   behind the destination's token bucket and circuit breaker (the same
//!   [`clearway_core::limits`] as the payer round trip);
//! - moves a message the policy gives up on to `dead/<destination>`, from
//!   where [`replay`] puts it back at the tail;
//! - publishes the queue's depth every few seconds (`depth/<destination>`):
//!   intake refuses work for a full queue, and an old head raises the
//!   alarm.
//!
//! Shutdown is checked between messages: a message on the wire is never
//! abandoned, and what was acknowledged is recorded before the deliverer
//! returns.

use bytes::{Buf, BytesMut};
use clearway_core::config::Config;
use clearway_core::limits::{CircuitBreaker, TokenBucket};
use clearway_core::partners::Partners;
use clearway_core::ports::{Condition, Item, Ports, Table, WriteOp};
use clearway_core::records::{decode_json, encode_json, timestamp};
use clearway_core::systems::{
    self, DeliveryStatus, Lease, OnError, QueueDepth, QueueEntry, SystemDestination, Transport,
};
use clearway_core::telemetry;
use clearway_core::{BlobKey, ErrorKind, PartnerId, PortError, PortResult};
use clearway_formats::hl7;
use std::sync::Arc;
use std::time::{Duration, Instant};
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// A deliverer's lease on its destination.
pub const LEASE_MS: i64 = 15_000;
/// Entries read from the head of a queue at a time.
const PAGE: usize = 256;
/// Largest ACK frame read from a destination.
const MAX_ACK_BYTES: usize = 1024 * 1024;
/// How often the queue's depth is published (at most).
const DEPTH_EVERY: Duration = Duration::from_secs(2);
/// How long an idle deliverer waits for intake's wake-up before looking
/// (other processes' intakes cannot wake it).
const IDLE_POLL: Duration = Duration::from_millis(250);

use crate::payers::now_ms;

/// The deliverers of every configured destination.
#[derive(Clone)]
pub struct Deliverers {
    pub ports: Ports,
    pub partners: Arc<Partners>,
    pub config: Arc<Config>,
    /// Woken by intake when it queues messages in this process.
    pub wake: Arc<Notify>,
    /// This process, as a lease owner.
    pub owner: String,
}

impl std::fmt::Debug for Deliverers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deliverers").field("owner", &self.owner).finish_non_exhaustive()
    }
}

/// How one delivery attempt ended.
#[derive(Debug)]
enum Attempt {
    /// Every message acknowledged; the last answer (`AA`, `CA`, `200`).
    Delivered(String),
    /// The destination answered and refused: its answer, whether it is a
    /// reject (AR/CR, refusing 4xx) rather than an error (AE/CE), why.
    Refused { answer: String, reject: bool, why: String },
    /// No answer (connection, timeout, protocol, 5xx): try again.
    Failed(String),
    /// It can never be delivered (its stored payload is gone or no longer
    /// holds the message): dead-lettered whatever the policy.
    Undeliverable(String),
    /// Stopped between two messages (shutdown, or the lease was lost).
    Stopped,
}

impl Attempt {
    fn as_str(&self) -> &'static str {
        match self {
            Attempt::Delivered(_) => "delivered",
            Attempt::Refused { .. } => "refused",
            Attempt::Failed(_) => "failed",
            Attempt::Undeliverable(_) => "undeliverable",
            Attempt::Stopped => "stopped",
        }
    }
}

impl Deliverers {
    pub fn new(ports: Ports, partners: Arc<Partners>, config: Arc<Config>, wake: Arc<Notify>) -> Self {
        let owner = format!("{}-{}", std::process::id(), clearway_core::TransactionId::new());
        Deliverers { ports, partners, config, wake, owner }
    }

    /// Runs one deliverer per destination until `shutdown`.
    pub fn spawn(self, shutdown: CancellationToken) -> tokio_util::task::TaskTracker {
        let tracker = tokio_util::task::TaskTracker::new();
        let this = Arc::new(self);
        for d in this.config.systems.destinations.clone() {
            let (this, stop) = (this.clone(), shutdown.clone());
            tracker.spawn(async move { Lane::new(this, d).run(stop).await });
        }
        tracker.close();
        tracker
    }
}

/// One destination's deliverer.
struct Lane {
    d: Arc<Deliverers>,
    dest: SystemDestination,
    bucket: TokenBucket,
    breaker: CircuitBreaker,
    mllp: Option<MllpConn>,
    http: reqwest::Client,
    /// MLLP over TLS: the connector and the name the server's certificate
    /// must carry, or why the settings cannot be used.
    mllp_tls: Option<Result<(tokio_rustls::TlsConnector, rustls_pki_types::ServerName<'static>), String>>,
    lease: Option<(u64, i64)>,
    failures: u32,
    published_at: Option<Instant>,
    count_cost: Duration,
    delivered_total: u64,
    last_delivered_ms: Option<i64>,
    last_error: Option<String>,
    /// The payload last read, kept for the next entries of one batch file.
    cached: Option<(String, Arc<Vec<u8>>)>,
}

impl Lane {
    fn new(d: Arc<Deliverers>, dest: SystemDestination) -> Self {
        // No redirects (a POST of a message is not re-sent elsewhere), and
        // with TLS settings never plain HTTP.
        let base = || {
            reqwest::Client::builder()
                .connect_timeout(dest.connect_timeout)
                .pool_max_idle_per_host(4)
                .redirect(reqwest::redirect::Policy::none())
                .https_only(!dest.tls.is_default())
        };
        // A destination whose TLS files cannot be used never falls back to
        // the web roots: it gets a client that trusts no server (`serve`
        // refuses to start in that case anyway).
        let http = clearway_fastpath::http::payer_client(base(), &dest.tls).unwrap_or_else(|e| {
            tracing::error!(destination = %dest.name, problem = %e, "destination TLS settings unusable");
            base().tls_certs_only(Vec::new()).build().unwrap_or_else(|_| reqwest::Client::new())
        });
        let mllp_tls = mllp_tls_connector(&dest);
        Lane {
            bucket: TokenBucket::new(if dest.rate_per_sec > 0.0 { dest.rate_per_sec } else { 0.0 }, dest.burst),
            breaker: CircuitBreaker::new(dest.failure_threshold, dest.cooldown),
            d,
            dest,
            mllp: None,
            http,
            mllp_tls,
            lease: None,
            failures: 0,
            published_at: None,
            count_cost: Duration::ZERO,
            delivered_total: 0,
            last_delivered_ms: None,
            last_error: None,
            cached: None,
        }
    }

    fn name(&self) -> &str {
        &self.dest.name
    }

    async fn run(mut self, shutdown: CancellationToken) {
        tracing::info!(destination = %self.name(), kind = self.dest.transport.kind(), "deliverer started");
        while !shutdown.is_cancelled() {
            match self.round(&shutdown).await {
                Ok(true) => {}
                Ok(false) => {
                    // Nothing to do, or not ours: wait for intake's wake-up.
                    let wake = self.d.wake.clone();
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        _ = wake.notified() => {}
                        _ = tokio::time::sleep(IDLE_POLL) => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(destination = %self.name(), error = %clearway_core::error::chain(&e), "deliverer: state store unavailable");
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
        self.release().await;
        tracing::info!(destination = %self.name(), "deliverer stopped");
    }

    /// One pass over the head of the queue; `Ok(false)` when there was
    /// nothing to deliver (or the lease is another process's).
    async fn round(&mut self, shutdown: &CancellationToken) -> PortResult<bool> {
        if !self.hold_lease().await? {
            return Ok(false);
        }
        self.publish_depth(false).await;
        let pk = systems::queue_pk(self.name());
        let page = self.d.ports.state.query(Table::Deliveries, &pk, None, PAGE).await?;
        if page.is_empty() {
            return Ok(false);
        }
        let mut done: Vec<WriteOp> = Vec::new();
        let mut wait = None;
        for (seq, item) in page {
            if shutdown.is_cancelled() {
                break;
            }
            let entry: QueueEntry = match decode_json(&item.value) {
                Ok(e) => e,
                Err(_) => {
                    // Not ours to read: set it aside rather than block the queue.
                    let e = QueueEntry { reason: Some("unreadable queue entry".into()), ..blank_entry() };
                    self.dead_letter(&mut done, &seq, &item, e, "unreadable queue entry");
                    continue;
                }
            };
            // Renewed before every entry (and every message of a batch
            // file), so no send starts on a lease about to run out.
            if !self.hold_lease().await? {
                break;
            }
            if let Some(delay) = self.admit() {
                wait = Some(delay);
                break;
            }
            let started = Instant::now();
            // A span in the transaction's trace (the queue entry carries
            // its intake's context).
            let span = tracing::info_span!(
                "deliver",
                otel.kind = "client",
                destination = %self.dest.name,
                transport = self.dest.transport.kind(),
                transaction_id = %entry.transaction,
                messages = entry.messages.len(),
                attempt = entry.attempts + 1,
                outcome = tracing::field::Empty,
                otel.status_code = tracing::field::Empty,
            );
            telemetry::set_parent(&span, entry.traceparent.as_deref());
            let (attempt, acked) = self.attempt(&entry, shutdown).instrument(span.clone()).await;
            span.record("outcome", attempt.as_str());
            if !matches!(attempt, Attempt::Delivered(_) | Attempt::Stopped) {
                span.record("otel.status_code", "ERROR");
            }
            metrics::histogram!("clearway_destination_delivery_seconds", "destination" => self.dest.name.clone())
                .record(started.elapsed().as_secs_f64());
            if acked > 0 {
                self.breaker.success();
                self.failures = 0;
                self.delivered_total += acked as u64;
                self.last_delivered_ms = Some(now_ms());
                self.count("delivered", acked as u64);
            }
            // What is left of the entry after the acknowledged messages.
            let mut rest = entry.clone();
            rest.messages.drain(..acked.min(rest.messages.len()));
            rest.acknowledged += acked as u32;
            let keep = |rest: &QueueEntry| -> PortResult<WriteOp> {
                Ok(WriteOp::Put {
                    key: systems::queue_key(&self.dest.name, &seq),
                    value: encode_json(rest)?,
                    expires_at: None,
                    condition: Condition::Version(item.version),
                    owner: None,
                })
            };
            match attempt {
                Attempt::Delivered(answer) => {
                    done.push(WriteOp::Delete {
                        key: systems::queue_key(self.name(), &seq),
                        condition: Condition::Version(item.version),
                    });
                    done.push(self.status(&rest, "delivered", entry.attempts + 1, Some(answer), None));
                }
                Attempt::Refused { answer, reject, why } => {
                    // The destination is up; it does not want this message.
                    self.breaker.success();
                    self.count("refused", 1);
                    let policy = if reject { entry.on_reject } else { entry.on_error };
                    rest.attempts = entry.attempts + 1;
                    let give_up = policy == OnError::DeadLetter
                        || (self.dest.max_attempts > 0 && rest.attempts >= self.dest.max_attempts);
                    let why = format!("{answer}: {why}");
                    self.last_error = Some(why.clone());
                    if !give_up {
                        done.push(keep(&rest)?);
                        done.push(self.status(&rest, "retrying", rest.attempts, Some(answer), Some(why)));
                        wait = Some(self.backoff());
                        break;
                    }
                    if rest.messages.len() <= 1 {
                        rest.dead_lettered += 1;
                        self.dead_letter(&mut done, &seq, &item, rest, &why);
                        continue;
                    }
                    // One message of a batch file: it alone goes to the dead
                    // letters; the rest of the file is delivered next, before
                    // anything queued after it (a new round starts at it).
                    let refused = rest.messages.remove(0);
                    let mut dead = rest.clone();
                    dead.messages = vec![refused];
                    dead.reason = Some(why.clone());
                    self.count("dead-letter", 1);
                    tracing::warn!(destination = %self.name(), transaction_id = %dead.transaction, reason = %why, "delivery of one message dead-lettered");
                    done.push(WriteOp::Put {
                        key: systems::dead_key(self.name(), &format!("{seq}/{refused:06}")),
                        value: encode_json(&dead)?,
                        expires_at: None,
                        condition: Condition::None,
                        owner: None,
                    });
                    rest.attempts = 0;
                    rest.dead_lettered += 1;
                    done.push(keep(&rest)?);
                    break;
                }
                Attempt::Undeliverable(why) => {
                    self.last_error = Some(why.clone());
                    self.dead_letter(&mut done, &seq, &item, rest, &why);
                }
                Attempt::Failed(why) => {
                    self.breaker.failure();
                    self.count("failed", 1);
                    self.mllp = None;
                    tracing::info!(destination = %self.name(), transaction_id = %entry.transaction, reason = %why, "delivery failed; will retry");
                    self.last_error = Some(why.clone());
                    if acked > 0 {
                        done.push(keep(&rest)?);
                    }
                    // The status says so on the first failure and every
                    // tenth (not on every reconnect of a long outage).
                    if self.failures.is_multiple_of(10) {
                        done.push(self.status(&rest, "retrying", rest.attempts, None, Some(why)));
                    }
                    wait = Some(self.backoff());
                    break;
                }
                Attempt::Stopped => {
                    // Shutdown or a lost lease between two messages of a
                    // batch file: what was acknowledged is recorded.
                    if acked > 0 {
                        done.push(keep(&rest)?);
                    }
                    break;
                }
            }
            if done.len() >= clearway_core::ports::MAX_WRITE_OPS - 3 {
                self.commit(std::mem::take(&mut done)).await?;
            }
        }
        if !done.is_empty() {
            self.commit(done).await?;
        }
        if let Some(delay) = wait {
            self.publish_depth(true).await;
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = tokio::time::sleep(delay) => {}
            }
        }
        Ok(true)
    }

    fn count(&self, outcome: &'static str, n: u64) {
        metrics::counter!("clearway_destination_deliveries_total", "destination" => self.dest.name.clone(), "outcome" => outcome)
            .increment(n);
    }

    /// `Some(wait)` when the breaker is open or the rate limit is spent.
    fn admit(&mut self) -> Option<Duration> {
        if !self.breaker.allow() {
            metrics::gauge!("clearway_destination_breaker_open", "destination" => self.dest.name.clone()).set(1.0);
            return Some(self.dest.cooldown.min(Duration::from_secs(1)));
        }
        metrics::gauge!("clearway_destination_breaker_open", "destination" => self.dest.name.clone()).set(0.0);
        if self.dest.rate_per_sec > 0.0 { self.bucket.take().err() } else { None }
    }

    /// 100 ms, doubling per consecutive failure, at most `retry_max_ms`.
    fn backoff(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let exp = self.failures.saturating_sub(1).min(16);
        Duration::from_millis(100u64.saturating_mul(1 << exp)).min(self.dest.retry_max)
    }

    fn status(
        &self,
        e: &QueueEntry,
        state: &str,
        attempts: u32,
        answer: Option<String>,
        error: Option<String>,
    ) -> WriteOp {
        let st = DeliveryStatus {
            destination: self.dest.name.clone(),
            delivered: e.acknowledged,
            dead_lettered: e.dead_lettered,
            state: state.to_string(),
            attempts,
            answer,
            last_error: error,
            at: timestamp(OffsetDateTime::now_utc()),
        };
        WriteOp::Put {
            key: systems::status_key(&e.transaction, &self.dest.name),
            value: encode_json(&st).unwrap_or_default(),
            expires_at: None,
            condition: Condition::None,
            owner: None,
        }
    }

    fn dead_letter(&mut self, done: &mut Vec<WriteOp>, seq: &str, item: &Item, mut e: QueueEntry, why: &str) {
        tracing::warn!(destination = %self.name(), transaction_id = %e.transaction, reason = %why, "delivery dead-lettered");
        self.count("dead-letter", e.messages.len().max(1) as u64);
        e.reason = Some(why.to_string());
        done.push(WriteOp::Delete {
            key: systems::queue_key(self.name(), seq),
            condition: Condition::Version(item.version),
        });
        if let Ok(value) = encode_json(&e) {
            done.push(WriteOp::Put {
                key: systems::dead_key(self.name(), seq),
                value,
                expires_at: None,
                condition: Condition::None,
                owner: None,
            });
        }
        if !e.transaction.is_empty() {
            done.push(self.status(&e, "dead-letter", e.attempts, None, Some(why.to_string())));
        }
    }

    /// Writes acknowledged outcomes; retried a few times, since the
    /// messages are already at the destination (failing leaves them to be
    /// sent again, which is allowed but avoidable).
    async fn commit(&mut self, ops: Vec<WriteOp>) -> PortResult<()> {
        let mut tries = 0;
        loop {
            match self.d.ports.state.write(ops.clone()).await {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == ErrorKind::PreconditionFailed => {
                    // An entry changed under us (a lease taken over):
                    // the other deliverer has them now.
                    tracing::warn!(destination = %self.name(), "delivery outcomes not recorded: the queue changed (lease lost?)");
                    self.lease = None;
                    return Ok(());
                }
                Err(e) if tries < 5 => {
                    tries += 1;
                    tracing::warn!(destination = %self.name(), error = %clearway_core::error::chain(&e), "recording deliveries failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100 * tries)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends the entry's messages in order, one in flight; returns how the
    /// last attempt ended and how many messages were acknowledged before
    /// it. Between two messages the lease is renewed, shutdown is heeded
    /// and the rate limit is waited for.
    async fn attempt(&mut self, entry: &QueueEntry, shutdown: &CancellationToken) -> (Attempt, usize) {
        let payload = match self.payload(entry).await {
            Ok(p) => p,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return (Attempt::Undeliverable("the stored message is gone (shredded or expired)".into()), 0);
            }
            // A backend that is down or slow: try again later.
            Err(e) if e.is_retryable() => {
                return (Attempt::Failed(format!("reading the stored message: {}", e.kind().as_str())), 0);
            }
            // Trying again cannot help (the entry names no readable blob,
            // the key cannot open it): set it aside, replayable.
            Err(e) => return (Attempt::Undeliverable(format!("{}: {}", e.operation(), e.kind().as_str())), 0),
        };
        let messages: Vec<&[u8]> = if entry.format == "hl7" {
            match hl7::split(hl7::trim_leading(&payload), &hl7::Limits::default()) {
                Ok(batch) => {
                    let all: Vec<&[u8]> = batch.messages().map(|m| m.raw()).collect();
                    entry.messages.iter().filter_map(|i| all.get(*i as usize).copied()).collect()
                }
                Err(_) => vec![],
            }
        } else {
            vec![hl7::trim_leading(&payload)]
        };
        if messages.len() != entry.messages.len() {
            return (Attempt::Undeliverable("the stored payload no longer holds the routed messages".into()), 0);
        }
        let mut last = String::new();
        for (n, (m, index)) in messages.into_iter().zip(&entry.messages).enumerate() {
            if n > 0 {
                if shutdown.is_cancelled() || !matches!(self.hold_lease().await, Ok(true)) {
                    return (Attempt::Stopped, n);
                }
                if self.dest.rate_per_sec > 0.0 {
                    while let Err(wait) = self.bucket.take() {
                        tokio::select! {
                            _ = shutdown.cancelled() => return (Attempt::Stopped, n),
                            _ = tokio::time::sleep(wait) => {}
                        }
                    }
                }
            }
            let key = format!("{}-{index}", entry.transaction);
            let a = match self.dest.transport.clone() {
                Transport::Mllp { address, .. } => self.send_mllp(&address, m).await,
                Transport::Http { url } => self.send_http(&url, entry, &key, m).await,
                // A Bundle (batch or transaction) goes to the base, other
                // resources to their type's endpoint.
                Transport::Fhir { base } if entry.label == "Bundle" => self.send_http(&base, entry, &key, m).await,
                Transport::Fhir { base } => {
                    let url = format!("{base}/{}", entry.label);
                    self.send_http(&url, entry, &key, m).await
                }
            };
            match a {
                Attempt::Delivered(answer) => last = answer,
                other => return (other, n),
            }
        }
        (Attempt::Delivered(last), entry.messages.len())
    }

    async fn payload(&mut self, entry: &QueueEntry) -> PortResult<Arc<Vec<u8>>> {
        if let Some((_, p)) = self.cached.as_ref().filter(|(tx, _)| *tx == entry.transaction) {
            return Ok(p.clone());
        }
        let key = BlobKey::parse(&entry.blob_key).ok_or_else(|| PortError::invalid_input("queue entry: blob key"))?;
        let partner = PartnerId::new(&entry.partner)
            .map_err(|e| PortError::with_cause(ErrorKind::InvalidInput, "queue entry: partner", e))?;
        let sealed = self.d.ports.blobs.get(&key, crate::process::MAX_PAYLOAD_BYTES).await?;
        let aad = clearway_core::keys::payload_aad(&entry.transaction, &partner);
        let plain = self.d.partners.open(&partner, &sealed, aad.as_bytes()).await.map_err(|e| {
            if e.kind() == ErrorKind::InvalidInput {
                PortError::new(ErrorKind::Internal, "the stored message cannot be decrypted")
            } else {
                e
            }
        })?;
        let p = Arc::new(plain.to_vec());
        self.cached = Some((entry.transaction.clone(), p.clone()));
        Ok(p)
    }

    async fn send_mllp(&mut self, address: &str, message: &[u8]) -> Attempt {
        let expect = hl7::Message::parse(message).ok().and_then(|m| m.control_id().map(|c| c.into_owned()));
        if self.mllp.is_none() {
            let stream: Box<dyn MllpStream> =
                match tokio::time::timeout(self.dest.connect_timeout, TcpStream::connect(address)).await {
                    Ok(Ok(s)) => {
                        let _ = s.set_nodelay(true);
                        match &self.mllp_tls {
                            None => Box::new(s),
                            Some(Err(why)) => return Attempt::Failed(why.clone()),
                            Some(Ok((connector, name))) => {
                                let shake = connector.connect(name.clone(), s);
                                match tokio::time::timeout(self.dest.connect_timeout, shake).await {
                                    Ok(Ok(tls)) => Box::new(tls),
                                    Ok(Err(e)) => return Attempt::Failed(format!("TLS handshake failed: {e}")),
                                    Err(_) => return Attempt::Failed("TLS handshake timed out".into()),
                                }
                            }
                        }
                    }
                    Ok(Err(e)) => return Attempt::Failed(format!("cannot connect: {}", e.kind())),
                    Err(_) => return Attempt::Failed("connect timed out".into()),
                };
            metrics::counter!("clearway_destination_connects_total", "destination" => self.dest.name.clone())
                .increment(1);
            self.mllp = Some(MllpConn { stream, buf: BytesMut::with_capacity(4096), out: Vec::new() });
        }
        let Some(conn) = self.mllp.as_mut() else { return Attempt::Failed("no connection".into()) };
        let ack = match tokio::time::timeout(self.dest.ack_timeout, conn.exchange(message)).await {
            Ok(Ok(ack)) => ack,
            Ok(Err(why)) => {
                self.mllp = None;
                return Attempt::Failed(why);
            }
            Err(_) => {
                // A late ACK must not be read as the next message's: the
                // connection goes.
                self.mllp = None;
                return Attempt::Failed(format!("no ACK within {} ms", self.dest.ack_timeout.as_millis()));
            }
        };
        let Ok(parsed) = hl7::Message::parse(&ack) else {
            self.mllp = None;
            return Attempt::Failed("the answer is not an HL7 ACK".into());
        };
        let code = parsed.get("MSA-1").map(|v| v.as_str().into_owned()).unwrap_or_default();
        let control = parsed.get("MSA-2").map(|v| v.as_str().into_owned()).unwrap_or_default();
        if expect.as_deref().is_some_and(|e| !e.is_empty() && e != control) {
            self.mllp = None;
            return Attempt::Failed("the ACK answers another message (MSA-2)".into());
        }
        // ERR-3/ERR-8 or MSA-3 may quote the message; only codes are kept.
        let err_code = parsed.get("ERR-3.1").map(|v| v.as_str().into_owned()).unwrap_or_default();
        match code.as_str() {
            "AA" | "CA" => Attempt::Delivered(code),
            "AE" | "CE" => Attempt::Refused { answer: code, reject: false, why: error_text(&err_code) },
            "AR" | "CR" => Attempt::Refused { answer: code, reject: true, why: error_text(&err_code) },
            _ => {
                self.mllp = None;
                Attempt::Failed("the ACK has no acknowledgement code (MSA-1)".into())
            }
        }
    }

    async fn send_http(&mut self, url: &str, entry: &QueueEntry, key: &str, message: &[u8]) -> Attempt {
        let content_type = if entry.format == "fhir" { "application/fhir+json" } else { "application/hl7-v2" };
        let mut req = self.http.post(url);
        if let Some(tp) = telemetry::traceparent(&tracing::Span::current(), entry.traceparent.as_deref()) {
            req = req.header(telemetry::TRACEPARENT, tp);
        }
        let resp = req
            .timeout(self.dest.ack_timeout)
            .header("content-type", content_type)
            .header("idempotency-key", key)
            .body(message.to_vec())
            .send()
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) if e.is_timeout() => return Attempt::Failed("the destination timed out".into()),
            Err(_) => return Attempt::Failed("the destination is unreachable".into()),
        };
        let status = resp.status().as_u16();
        match status {
            200..=299 | 409 => Attempt::Delivered(status.to_string()),
            408 | 429 | 500..=599 => Attempt::Failed(format!("the destination answered {status}")),
            _ => {
                Attempt::Refused { answer: status.to_string(), reject: true, why: "the destination refused it".into() }
            }
        }
    }

    /// The lease's length: at least [`LEASE_MS`], and three times the
    /// longest attempt (connect + ACK wait), so that one renewed before an
    /// attempt outlasts it.
    fn lease_ms(&self) -> i64 {
        let attempt = (self.dest.connect_timeout + self.dest.ack_timeout).as_millis() as i64;
        LEASE_MS.max(attempt * 3)
    }

    /// Takes or renews this destination's lease; `false` while another
    /// process holds it.
    async fn hold_lease(&mut self) -> PortResult<bool> {
        let now = now_ms();
        let lease_ms = self.lease_ms();
        if self.lease.is_some_and(|(_, until)| until - now > lease_ms * 2 / 3) {
            return Ok(true);
        }
        let key = systems::lease_key(self.name());
        let current = self.d.ports.state.get(&key).await?;
        let condition = match &current {
            None => Condition::NotExists,
            Some(item) => {
                let lease: Option<Lease> = decode_json(&item.value).ok();
                match lease {
                    Some(l) if l.owner != self.d.owner && l.until_ms > now => {
                        self.lease = None;
                        return Ok(false);
                    }
                    _ => Condition::Version(item.version),
                }
            }
        };
        let lease = Lease { owner: self.d.owner.clone(), until_ms: now + lease_ms };
        let op = WriteOp::Put { key, value: encode_json(&lease)?, expires_at: None, condition, owner: None };
        match self.d.ports.state.write(vec![op]).await {
            Ok(()) => {
                let version = current.map_or(1, |i| i.version + 1);
                if self.lease.is_none() {
                    tracing::info!(destination = %self.name(), "deliverer holds the destination's lease");
                }
                self.lease = Some((version, lease.until_ms));
                Ok(true)
            }
            Err(e) if e.kind() == ErrorKind::PreconditionFailed => {
                self.lease = None;
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    async fn release(&mut self) {
        if let Some((version, _)) = self.lease.take() {
            let op = WriteOp::Delete { key: systems::lease_key(self.name()), condition: Condition::Version(version) };
            let _ = self.d.ports.state.write(vec![op]).await;
        }
    }

    /// Counts the queue and its dead letters and publishes them (at most
    /// every [`DEPTH_EVERY`], and less often when counting is slow), with
    /// the gauges and the alarm.
    async fn publish_depth(&mut self, force: bool) {
        let since = self.published_at.map(|t| t.elapsed());
        let due = since.is_none_or(|s| s >= DEPTH_EVERY.max(self.count_cost * 10) || (force && s >= DEPTH_EVERY));
        if !due {
            return;
        }
        let started = Instant::now();
        let state = &self.d.ports.state;
        let (waiting, oldest) =
            match systems::count(state.as_ref(), &systems::queue_pk(self.name()), self.dest.max_queue + 1).await {
                Ok(c) => c,
                Err(_) => return,
            };
        let (dead, _) =
            systems::count(state.as_ref(), &systems::dead_pk(self.name()), 100_000).await.unwrap_or((0, None));
        self.count_cost = started.elapsed();
        self.published_at = Some(Instant::now());
        let depth = QueueDepth {
            waiting,
            dead,
            oldest_ms: oldest,
            breaker_open: self.breaker.is_open(),
            delivered_total: self.delivered_total,
            last_delivered_ms: self.last_delivered_ms,
            last_error: self.last_error.clone(),
            at_ms: now_ms(),
        };
        let name = self.dest.name.clone();
        metrics::gauge!("clearway_destination_queue_messages", "destination" => name.clone()).set(waiting as f64);
        metrics::gauge!("clearway_destination_dead_letters", "destination" => name.clone()).set(dead as f64);
        let age_secs = oldest.map_or(0.0, |o| ((now_ms() - o).max(0) as f64) / 1000.0);
        metrics::gauge!("clearway_destination_oldest_age_seconds", "destination" => name.clone()).set(age_secs);
        let alarm = age_secs >= self.dest.alarm_after.as_secs_f64() || waiting * 10 >= self.dest.max_queue * 8;
        metrics::gauge!("clearway_destination_alarm", "destination" => name.clone()).set(if alarm { 1.0 } else { 0.0 });
        if alarm {
            tracing::warn!(destination = %name, waiting, oldest_age_secs = age_secs as u64, max_queue = self.dest.max_queue, "destination alarm: its queue is old or nearly full");
        }
        if let Ok(value) = encode_json(&depth) {
            let op = WriteOp::Put {
                key: systems::depth_key(&name),
                value,
                expires_at: None,
                condition: Condition::None,
                owner: None,
            };
            if let Err(e) = state.write(vec![op]).await {
                tracing::debug!(error = %clearway_core::error::chain(&e), "destination depth not published");
            }
        }
    }
}

fn blank_entry() -> QueueEntry {
    QueueEntry {
        transaction: String::new(),
        partner: String::new(),
        blob_key: String::new(),
        messages: vec![],
        control_id: String::new(),
        label: String::new(),
        format: String::new(),
        route: String::new(),
        on_error: OnError::DeadLetter,
        on_reject: OnError::DeadLetter,
        queued_at_ms: 0,
        reason: None,
        attempts: 0,
        acknowledged: 0,
        dead_lettered: 0,
        traceparent: None,
    }
}

fn error_text(code: &str) -> String {
    if code.is_empty() {
        "the destination did not accept the message".into()
    } else {
        let code: String = code.chars().filter(char::is_ascii_alphanumeric).take(8).collect();
        format!("the destination did not accept the message (error code {code})")
    }
}

/// An open MLLP connection to a destination.
/// A destination's MLLP connection: TCP, or TLS over it.
trait MllpStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> MllpStream for T {}

struct MllpConn {
    stream: Box<dyn MllpStream>,
    buf: BytesMut,
    out: Vec<u8>,
}

/// A TLS client configuration from a destination's (or payer's) settings:
/// its CAs only, else the platform's roots; our client certificate if
/// given. Errors name the file and the problem.
pub fn mllp_tls_config(tls: &clearway_core::config::OutboundTls) -> Result<rustls::ClientConfig, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?;
    let read =
        |p: &std::path::Path| std::fs::read(p).map_err(|e| format!("{}: cannot read it ({})", p.display(), e.kind()));
    let builder = match &tls.ca_file {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&read(ca)?) {
                let cert = cert.map_err(|_| format!("{}: not a PEM bundle of CA certificates", ca.display()))?;
                roots.add(cert).map_err(|e| format!("{}: a CA certificate rustls refuses: {e}", ca.display()))?;
            }
            if roots.is_empty() {
                return Err(format!("{}: no certificate in it", ca.display()));
            }
            builder.with_root_certificates(roots)
        }
        None => {
            use rustls_platform_verifier::BuilderVerifierExt;
            builder.with_platform_verifier().map_err(|e| format!("the platform's CA roots: {e}"))?
        }
    };
    match &tls.client_cert {
        Some((cert, key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&read(cert)?)
                .collect::<Result<_, _>>()
                .map_err(|_| format!("{}: not a PEM certificate chain", cert.display()))?;
            let key = PrivateKeyDer::from_pem_slice(&read(key)?)
                .map_err(|_| format!("{}: not a PEM private key", key.display()))?;
            builder.with_client_auth_cert(chain, key).map_err(|e| format!("{}: {e}", cert.display()))
        }
        None => Ok(builder.with_no_client_auth()),
    }
}

/// The TLS connector of an MLLP-over-TLS destination and the name its
/// server's certificate must carry (`None`: plaintext MLLP or not MLLP).
#[allow(clippy::type_complexity)]
fn mllp_tls_connector(
    dest: &SystemDestination,
) -> Option<Result<(tokio_rustls::TlsConnector, rustls_pki_types::ServerName<'static>), String>> {
    let Transport::Mllp { address, tls: true } = &dest.transport else { return None };
    Some(
        mllp_tls_config(&dest.tls)
            .and_then(|c| {
                let host = address.rsplit_once(':').map_or(address.as_str(), |(h, _)| h);
                let host = host.trim_start_matches('[').trim_end_matches(']');
                rustls_pki_types::ServerName::try_from(host.to_string())
                    .map(|name| (tokio_rustls::TlsConnector::from(Arc::new(c)), name))
                    .map_err(|_| format!("{host} is not a host name or address"))
            })
            .map_err(|e| format!("destinations.{}: {e}", dest.name)),
    )
}

/// Checks every destination's TLS settings (at start-up: one that cannot
/// be used stops `serve` with the destination and the file).
pub fn check_destination_tls(config: &Config) -> Result<(), String> {
    for d in &config.systems.destinations {
        if let Some(Err(e)) = mllp_tls_connector(d) {
            return Err(e);
        }
        if !d.tls.is_default() && !matches!(d.transport, Transport::Mllp { .. }) {
            clearway_fastpath::http::payer_client(reqwest::Client::builder(), &d.tls)
                .map_err(|e| format!("destinations.{}: {e}", d.name))?;
        }
    }
    Ok(())
}

impl MllpConn {
    /// Sends one framed message and reads one framed answer.
    async fn exchange(&mut self, message: &[u8]) -> Result<Vec<u8>, String> {
        self.out.clear();
        hl7::encode_frame(message, &mut self.out);
        self.stream.write_all(&self.out).await.map_err(|e| format!("send failed: {}", e.kind()))?;
        // TLS buffers records: the message leaves now.
        self.stream.flush().await.map_err(|e| format!("send failed: {}", e.kind()))?;
        loop {
            match hl7::decode_frame(&self.buf, MAX_ACK_BYTES) {
                Ok(Some(frame)) => {
                    let ack = self.buf[frame.payload.clone()].to_vec();
                    self.buf.advance(frame.consumed);
                    return Ok(ack);
                }
                Ok(None) => {}
                Err(e) => return Err(format!("bad ACK framing: {e}")),
            }
            if self.buf.capacity() - self.buf.len() < 1024 {
                self.buf.reserve(4096);
            }
            let n = self.stream.read_buf(&mut self.buf).await.map_err(|e| format!("receive failed: {}", e.kind()))?;
            if n == 0 {
                return Err("the destination closed the connection".into());
            }
        }
    }
}
