//! The change feed's real-time events: one per 270/276 (and FHIR
//! eligibility) answered by the fast path, with what CAQH CORE asks an
//! entity to capture and report (receive and send time, latency, the
//! request's control numbers and trace, where the answer came from, AAA
//! codes); and one per submission answered as a duplicate (the layer that
//! caught it, the transaction it repeats). Neither is a durable effect, so
//! both are written off the request path: a bounded channel and one writer
//! task that puts up to 100 events per state-store write. When the channel
//! is full an event is dropped and counted
//! (`clearway_realtime_events_dropped_total`), never the request slowed;
//! `flush` (at shutdown) writes what is queued.

use clearway_core::PartnerId;
use clearway_core::changes::{ChangeEvent, ChangeKind, Duplicate, EVENT_VERSION, RealTime};
use clearway_core::ports::{Condition, MAX_WRITE_OPS, StateStore, WriteOp};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

/// Events queued for the writer at most.
pub const CAPACITY: usize = 10_000;

enum Msg {
    Event(Box<ChangeEvent>),
    Flush(oneshot::Sender<()>),
}

/// The real-time events' writer.
pub struct RealTimeLog {
    tx: mpsc::Sender<Msg>,
    rx: Mutex<Option<mpsc::Receiver<Msg>>>,
    /// Set once the writer runs, so a request takes no lock.
    started: std::sync::atomic::AtomicBool,
    state: Arc<dyn StateStore>,
}

impl std::fmt::Debug for RealTimeLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RealTimeLog").finish_non_exhaustive()
    }
}

/// One exchange as the HTTP layer saw it.
#[derive(Debug)]
pub struct Exchange<'a> {
    pub partner: &'a PartnerId,
    /// `270`, `276` or `270-fhir`.
    pub txn: &'static str,
    pub request: &'a [u8],
    /// The answer (271, 277) or the TA1/999 that rejected the request.
    pub response: Option<&'a [u8]>,
    /// `271`, `277`, `999`, `ta1`, `fhir`, `problem`.
    pub response_kind: &'static str,
    pub received: time::OffsetDateTime,
    pub responded: time::OffsetDateTime,
    pub served: clearway_fastpath::Served,
}

impl RealTimeLog {
    pub fn new(state: Arc<dyn StateStore>) -> Self {
        let (tx, rx) = mpsc::channel(CAPACITY);
        RealTimeLog { tx, rx: Mutex::new(Some(rx)), started: std::sync::atomic::AtomicBool::new(false), state }
    }

    /// Starts the writer on the current runtime (once).
    fn start(&self) {
        use std::sync::atomic::Ordering;
        if self.started.load(Ordering::Acquire) {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else { return };
        let Some(rx) = self.rx.lock().ok().and_then(|mut r| r.take()) else { return };
        handle.spawn(writer(self.state.clone(), rx));
        self.started.store(true, Ordering::Release);
    }

    /// Queues the event of one exchange (no wait; dropped and counted when
    /// the writer is behind by [`CAPACITY`]).
    pub fn record(&self, x: Exchange<'_>) {
        self.start();
        let ids = clearway_formats::x12::exchange::core_ids(x.request);
        let aaa = match (x.response_kind, x.response) {
            ("271" | "277", Some(r)) => clearway_formats::x12::exchange::aaa_codes(r),
            _ => Vec::new(),
        };
        let ms = |t: time::OffsetDateTime| (t.unix_timestamp_nanos() / 1_000_000) as i64;
        let us = |t: time::OffsetDateTime| (t.unix_timestamp_nanos() / 1_000) as i64;
        let event = ChangeEvent {
            v: EVENT_VERSION,
            kind: ChangeKind::RealTime,
            partner: x.partner.clone(),
            transaction: clearway_core::TransactionId::new(),
            at_ms: ms(x.responded),
            received_at_ms: ms(x.received),
            status: x.response_kind.into(),
            attempts: 1,
            ack_ids: Vec::new(),
            reason: None,
            realtime: Some(Box::new(RealTime {
                txn: x.txn.into(),
                latency_us: (us(x.responded) - us(x.received)).max(0),
                served: x.served.source.as_str().into(),
                upstream_us: x.served.upstream_us,
                ids,
                aaa,
            })),
            duplicate: None,
            payer_batch: None,
            payer_answer: None,
        };
        self.queue(event);
    }

    /// Queues the event of a submission answered as a duplicate (the
    /// same way: no wait, dropped and counted when full).
    pub fn duplicate(&self, partner: &PartnerId, duplicate: Duplicate, at: time::OffsetDateTime) {
        self.start();
        let ms = (at.unix_timestamp_nanos() / 1_000_000) as i64;
        self.queue(ChangeEvent {
            v: EVENT_VERSION,
            kind: ChangeKind::Duplicate,
            partner: partner.clone(),
            transaction: clearway_core::TransactionId::new(),
            at_ms: ms,
            received_at_ms: ms,
            status: "duplicate".into(),
            attempts: 0,
            ack_ids: Vec::new(),
            reason: None,
            realtime: None,
            duplicate: Some(Box::new(duplicate)),
            payer_batch: None,
            payer_answer: None,
        });
    }

    fn queue(&self, event: ChangeEvent) {
        if self.tx.try_send(Msg::Event(Box::new(event))).is_err() {
            metrics::counter!("clearway_realtime_events_dropped_total").increment(1);
        }
    }

    /// Writes every queued event; returns once they are durable (or the
    /// writer gave up on them).
    pub async fn flush(&self) {
        self.start();
        let (t, r) = oneshot::channel();
        if self.tx.send(Msg::Flush(t)).await.is_ok() {
            let _ = r.await;
        }
    }
}

async fn writer(state: Arc<dyn StateStore>, mut rx: mpsc::Receiver<Msg>) {
    let mut events: Vec<ChangeEvent> = Vec::with_capacity(MAX_WRITE_OPS);
    let mut flushes: Vec<oneshot::Sender<()>> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Event(e) => events.push(*e),
                Msg::Flush(f) => flushes.push(f),
            }
            if events.len() < MAX_WRITE_OPS {
                next = rx.try_recv().ok();
            }
        }
        if !events.is_empty() {
            write(state.as_ref(), &events).await;
            events.clear();
        }
        for f in flushes.drain(..) {
            let _ = f.send(());
        }
    }
}

/// One atomic write of up to 100 events, retried three times with a
/// growing pause; then dropped and counted.
async fn write(state: &dyn StateStore, events: &[ChangeEvent]) {
    let ops: Vec<WriteOp> = events
        .iter()
        .filter_map(|e| {
            let value = clearway_core::records::encode_json(e).ok()?;
            Some(WriteOp::Put { key: e.key(), value, expires_at: None, condition: Condition::None, owner: None })
        })
        .collect();
    for attempt in 0..4u32 {
        match state.write(ops.clone()).await {
            Ok(()) => {
                metrics::counter!("clearway_realtime_events_total").increment(ops.len() as u64);
                return;
            }
            Err(e) if attempt < 3 => {
                tracing::debug!(error = %clearway_core::error::chain(&e), "real-time events: write failed, retrying");
                tokio::time::sleep(std::time::Duration::from_millis(100 << attempt)).await;
            }
            Err(e) => {
                tracing::warn!(error = %clearway_core::error::chain(&e), events = ops.len(), "real-time events dropped");
            }
        }
    }
    metrics::counter!("clearway_realtime_events_dropped_total").increment(ops.len() as u64);
}
