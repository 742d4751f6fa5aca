//! Routing HL7 v2 messages and FHIR resources to the systems that subscribe
//! to them: the configured routes (`[[routes]]`) and destinations
//! (`[destinations.NAME]`), how a message is matched, and the records of
//! each destination's delivery queue.
//!
//! A route is decided at intake, in the same durable commit as the
//! transaction: one queue entry per (message, destination) under
//! `q/<destination>`, sorted by a sequence that grows in intake order, so
//! a destination receives what one sender sent in the order it was sent.
//! The deliverer (workers) takes a destination's queue head first, marks an
//! entry delivered only after the destination's AA/CA or 2xx, and moves it
//! to `dead/<destination>` when the route's policy says so.

use crate::ports::{Key, Table};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How a destination is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// An MLLP client to `host:port`: one message in flight, waits for the
    /// ACK; over TLS when `tls` (the destination's `tls` settings).
    Mllp { address: String, tls: bool },
    /// HTTP POST of the message as received (`application/hl7-v2` or
    /// `application/fhir+json`) to the URL.
    Http { url: String },
    /// A FHIR server's base URL: a resource is POSTed to `<base>/<type>`.
    Fhir { base: String },
}

impl Transport {
    pub fn kind(&self) -> &'static str {
        match self {
            Transport::Mllp { .. } => "mllp",
            Transport::Http { .. } => "http",
            Transport::Fhir { .. } => "fhir",
        }
    }
}

/// A system messages are delivered to (`[destinations.NAME]`).
#[derive(Debug, Clone, PartialEq)]
pub struct SystemDestination {
    pub name: String,
    pub transport: Transport,
    /// How long to wait for the ACK (MLLP) or the answer (HTTP).
    pub ack_timeout: Duration,
    pub connect_timeout: Duration,
    /// Token bucket (0 = no limit).
    pub rate_per_sec: f64,
    pub burst: u32,
    /// Circuit breaker.
    pub failure_threshold: u32,
    pub cooldown: Duration,
    /// Most messages waiting; intake refuses (503, MLLP: no ACK) what would
    /// go over it.
    pub max_queue: u64,
    /// Attempts before a message the destination keeps refusing (AE/AR,
    /// HTTP 4xx) under a `retry` policy is dead-lettered (0: never).
    pub max_attempts: u32,
    /// The queue's oldest message waiting longer than this raises the
    /// alarm (log and `clearway_destination_alarm`).
    pub alarm_after: Duration,
    /// Longest wait between retries.
    pub retry_max: Duration,
    /// TLS towards the destination (HTTPS URLs, MLLP with `tls = true`):
    /// only these CAs instead of the web PKI roots, our client certificate.
    pub tls: crate::config::OutboundTls,
}

/// What to do when a destination answers a message with an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnError {
    /// Keep it at the head of the queue and try again (holds the queue:
    /// order is kept).
    Retry,
    /// Move it to the destination's dead letters and go on.
    DeadLetter,
}

impl OnError {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "retry" => Some(OnError::Retry),
            "dead-letter" => Some(OnError::DeadLetter),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            OnError::Retry => "retry",
            OnError::DeadLetter => "dead-letter",
        }
    }
}

/// A message-type filter: `ADT` (any trigger), `ADT^A01`, or `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageFilter {
    pub code: String,
    pub trigger: Option<String>,
}

impl MessageFilter {
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let (code, trigger) = match s.split_once('^') {
            Some((c, t)) => (c, Some(t)),
            None => (s, None),
        };
        let token =
            |v: &str| v == "*" || (!v.is_empty() && v.len() <= 8 && v.bytes().all(|b| b.is_ascii_alphanumeric()));
        if !token(code) || trigger.is_some_and(|t| !token(t)) {
            return None;
        }
        let up = |v: &str| v.to_ascii_uppercase();
        Some(MessageFilter { code: up(code), trigger: trigger.filter(|t| *t != "*").map(up) })
    }

    fn matches(&self, code: &str, trigger: &str) -> bool {
        (self.code == "*" || self.code.eq_ignore_ascii_case(code))
            && self.trigger.as_deref().is_none_or(|t| t.eq_ignore_ascii_case(trigger))
    }
}

impl std::fmt::Display for MessageFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.trigger {
            Some(t) => write!(f, "{}^{t}", self.code),
            None => f.write_str(&self.code),
        }
    }
}

/// One route (`[[routes]]`). Empty filters match everything; a route with
/// `messages` takes HL7 v2 only, one with `resources` FHIR only, one with
/// neither both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub name: String,
    pub partners: Vec<String>,
    pub messages: Vec<MessageFilter>,
    /// MSH-4's first component.
    pub facilities: Vec<String>,
    /// FHIR resource types (`Patient`, `Appointment`, ...).
    pub resources: Vec<String>,
    pub to: Vec<String>,
    /// An AE/CE (MLLP).
    pub on_error: OnError,
    /// An AR/CR (MLLP) or a refusing 4xx (HTTP).
    pub on_reject: OnError,
}

/// What routing looks at in one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Facts<'a> {
    Hl7 { partner: &'a str, code: &'a str, trigger: &'a str, facility: &'a str },
    Fhir { partner: &'a str, resource: &'a str },
}

impl Facts<'_> {
    fn partner(&self) -> &str {
        match self {
            Facts::Hl7 { partner, .. } | Facts::Fhir { partner, .. } => partner,
        }
    }
    /// `ADT^A01` or the resource type.
    pub fn label(&self) -> String {
        match self {
            Facts::Hl7 { code, trigger: "", .. } => code.to_string(),
            Facts::Hl7 { code, trigger, .. } => format!("{code}^{trigger}"),
            Facts::Fhir { resource, .. } => resource.to_string(),
        }
    }
}

impl Route {
    /// `Ok` when the route takes the message, else why not (names no PHI:
    /// partner ids, message types, facility ids and resource types only).
    pub fn check(&self, facts: &Facts<'_>) -> Result<(), String> {
        if !self.partners.is_empty() && !self.partners.iter().any(|p| p == facts.partner()) {
            return Err(format!("partner {} is not among {}", facts.partner(), self.partners.join(", ")));
        }
        match facts {
            Facts::Hl7 { code, trigger, facility, .. } => {
                if !self.resources.is_empty() && self.messages.is_empty() {
                    return Err("the route takes FHIR resources only".into());
                }
                if !self.messages.is_empty() && !self.messages.iter().any(|m| m.matches(code, trigger)) {
                    let list: Vec<String> = self.messages.iter().map(ToString::to_string).collect();
                    return Err(format!("{} is not among {}", facts.label(), list.join(", ")));
                }
                if !self.facilities.is_empty() && !self.facilities.iter().any(|f| f.eq_ignore_ascii_case(facility)) {
                    return Err(format!("sending facility {facility:?} is not among {}", self.facilities.join(", ")));
                }
                Ok(())
            }
            Facts::Fhir { resource, .. } => {
                if !self.messages.is_empty() && self.resources.is_empty() {
                    return Err("the route takes HL7 v2 messages only".into());
                }
                if !self.facilities.is_empty() {
                    return Err("the route filters on an HL7 sending facility".into());
                }
                if !self.resources.is_empty() && !self.resources.iter().any(|r| r == resource) {
                    return Err(format!("{resource} is not among {}", self.resources.join(", ")));
                }
                Ok(())
            }
        }
    }
}

/// The routes and destinations (`[[routes]]`, `[destinations.NAME]`).
#[derive(Debug, Clone, Default)]
pub struct SystemsConfig {
    pub routes: Vec<Route>,
    pub destinations: Vec<SystemDestination>,
}

/// One destination a message goes to, and the policy of the first route
/// that sent it there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected<'a> {
    pub destination: &'a str,
    pub route: &'a str,
    pub on_error: OnError,
    pub on_reject: OnError,
}

impl SystemsConfig {
    pub fn destination(&self, name: &str) -> Option<&SystemDestination> {
        self.destinations.iter().find(|d| d.name == name)
    }

    /// Whether a destination can carry the message: FHIR never goes to an
    /// MLLP destination, HL7 v2 never to a FHIR server.
    pub fn carries(&self, destination: &str, facts: &Facts<'_>) -> bool {
        self.destination(destination).is_none_or(|d| {
            !matches!(
                (facts, &d.transport),
                (Facts::Fhir { .. }, Transport::Mllp { .. }) | (Facts::Hl7 { .. }, Transport::Fhir { .. })
            )
        })
    }

    /// Where a message goes: each destination once, in the order the routes
    /// name them (a destination that cannot carry its format is skipped).
    pub fn select(&self, facts: &Facts<'_>) -> Vec<Selected<'_>> {
        let mut out: Vec<Selected<'_>> = Vec::new();
        for r in self.routes.iter().filter(|r| r.check(facts).is_ok()) {
            for d in &r.to {
                if !out.iter().any(|s| s.destination == d) && self.carries(d, facts) {
                    out.push(Selected { destination: d, route: &r.name, on_error: r.on_error, on_reject: r.on_reject });
                }
            }
        }
        out
    }

    /// Every route with whether it takes the message and why not.
    pub fn explain<'a>(&'a self, facts: &Facts<'_>) -> Vec<(&'a Route, Result<(), String>)> {
        self.routes.iter().map(|r| (r, r.check(facts))).collect()
    }
}

// ------------------------------------------------------------ records --

/// A transaction's messages waiting for a destination (`q/<destination>`),
/// or given up on (`dead/<destination>`): one entry per transaction and
/// destination, however many messages of an HL7 batch file it takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueEntry {
    pub transaction: String,
    pub partner: String,
    pub blob_key: String,
    /// The messages' positions in the payload (`[0]` for a single message;
    /// the n-th messages of an HL7 batch file), delivered in this order.
    pub messages: Vec<u32>,
    /// MSH-10 of the first message (HL7) or the resource's id (FHIR): what
    /// the destination dedupes on; never PHI.
    pub control_id: String,
    /// `ADT^A01` or the FHIR resource type (of the first message).
    pub label: String,
    /// `hl7` or `fhir`.
    pub format: String,
    pub route: String,
    pub on_error: OnError,
    pub on_reject: OnError,
    pub queued_at_ms: i64,
    /// Set on dead letters: why it was given up on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default)]
    pub attempts: u32,
    /// Messages of this entry the destination already acknowledged (they
    /// are no longer in `messages`).
    #[serde(default)]
    pub acknowledged: u32,
    /// Messages of this entry dead-lettered on their own (an HL7 batch
    /// file's message the destination refused).
    #[serde(default)]
    pub dead_lettered: u32,
    /// The W3C trace context of the intake that queued it: its delivery's
    /// spans belong to the transaction's trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// Where a transaction stands with one destination (`tx/<transaction>`,
/// sort key the destination). Absent while it waits its turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryStatus {
    pub destination: String,
    /// Messages the destination acknowledged.
    pub delivered: u32,
    /// Messages dead-lettered (the rest of a batch file went on).
    #[serde(default)]
    pub dead_lettered: u32,
    /// `delivered`, `retrying`, `dead-letter`.
    pub state: String,
    pub attempts: u32,
    /// The destination's acknowledgement code (`AA`, `CA`, `AE`, `AR`) or
    /// HTTP status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub at: String,
}

/// What a destination's deliverer publishes about its queue (`depth`,
/// sort key the destination), for intake's bound and for operators.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueDepth {
    /// Messages waiting, counted up to `max_queue + 1`.
    pub waiting: u64,
    pub dead: u64,
    /// Enqueue time of the oldest waiting message.
    pub oldest_ms: Option<i64>,
    pub breaker_open: bool,
    pub delivered_total: u64,
    pub last_delivered_ms: Option<i64>,
    pub last_error: Option<String>,
    pub at_ms: i64,
}

pub fn queue_pk(destination: &str) -> String {
    format!("q/{destination}")
}
pub fn dead_pk(destination: &str) -> String {
    format!("dead/{destination}")
}
pub fn queue_key(destination: &str, seq: &str) -> Key {
    Key::new(Table::Deliveries, queue_pk(destination), seq)
}
pub fn dead_key(destination: &str, seq: &str) -> Key {
    Key::new(Table::Deliveries, dead_pk(destination), seq)
}
pub fn status_pk(transaction: &str) -> String {
    format!("tx/{transaction}")
}
pub fn status_key(transaction: &str, destination: &str) -> Key {
    Key::new(Table::Deliveries, status_pk(transaction), destination)
}
pub fn depth_key(destination: &str) -> Key {
    Key::new(Table::Deliveries, "depth", destination)
}
pub fn lease_key(destination: &str) -> Key {
    Key::new(Table::Deliveries, "lease", destination)
}

/// A holder of a destination's deliverer lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lease {
    pub owner: String,
    pub until_ms: i64,
}

static LAST_SEQ_US: AtomicU64 = AtomicU64::new(0);

/// A queue sort key that grows in this process's intake order: the time in
/// microseconds, made strictly increasing, then `suffix` (the transaction
/// id and message index, unique across processes). Fixed width, so the
/// sort keys order as the numbers do.
pub fn next_seq(now_us: u64, suffix: &str) -> String {
    let mut last = LAST_SEQ_US.load(Ordering::Relaxed);
    let us = loop {
        let next = now_us.max(last + 1);
        match LAST_SEQ_US.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => break next,
            Err(seen) => last = seen,
        }
    };
    format!("{us:017}-{suffix}")
}

// ------------------------------------------------------- operations --

#[cfg(feature = "crypto")]
pub use ops::{count, dead_letters, depth, replay, statuses};

/// Reading and replaying queues through the state store (JSON records).
#[cfg(feature = "crypto")]
mod ops {
    use super::*;
    use crate::PortResult;
    use crate::ports::{Condition, MAX_QUERY_LIMIT, Ports, WriteOp};
    use crate::records::{decode_json, encode_json};
    use time::OffsetDateTime;

    /// Items in a partition, up to `cap`, and the first one's enqueue time.
    pub async fn count(state: &dyn crate::ports::StateStore, pk: &str, cap: u64) -> PortResult<(u64, Option<i64>)> {
        let mut n = 0u64;
        let mut after: Option<String> = None;
        let mut oldest = None;
        loop {
            let page = state.query(Table::Deliveries, pk, after.as_deref(), MAX_QUERY_LIMIT).await?;
            if oldest.is_none() {
                oldest =
                    page.first().and_then(|(_, i)| decode_json::<QueueEntry>(&i.value).ok()).map(|e| e.queued_at_ms);
            }
            n += page.len() as u64;
            if page.len() < MAX_QUERY_LIMIT || n >= cap {
                return Ok((n, oldest));
            }
            after = page.last().map(|(k, _)| k.clone());
        }
    }

    /// Where one transaction stands with each destination it was routed to.
    pub async fn statuses(
        ports: &Ports,
        transaction: &str,
        destinations: &[String],
    ) -> PortResult<Vec<DeliveryStatus>> {
        let found = ports.state.query(Table::Deliveries, &status_pk(transaction), None, MAX_QUERY_LIMIT).await?;
        let mut out = Vec::new();
        for d in destinations {
            let st = found.iter().find(|(k, _)| k == d).and_then(|(_, i)| decode_json::<DeliveryStatus>(&i.value).ok());
            out.push(st.unwrap_or_else(|| DeliveryStatus {
                destination: d.clone(),
                delivered: 0,
                dead_lettered: 0,
                state: "queued".into(),
                attempts: 0,
                answer: None,
                last_error: None,
                at: String::new(),
            }));
        }
        Ok(out)
    }

    /// A destination's dead letters (oldest first), at most `limit`.
    pub async fn dead_letters(ports: &Ports, destination: &str, limit: usize) -> PortResult<Vec<(String, QueueEntry)>> {
        let page =
            ports.state.query(Table::Deliveries, &dead_pk(destination), None, limit.min(MAX_QUERY_LIMIT)).await?;
        Ok(page.into_iter().filter_map(|(k, i)| decode_json(&i.value).ok().map(|e| (k, e))).collect())
    }

    /// The published depth of a destination's queue.
    pub async fn depth(ports: &Ports, destination: &str) -> PortResult<Option<QueueDepth>> {
        Ok(ports.state.get(&depth_key(destination)).await?.and_then(|i| decode_json(&i.value).ok()))
    }

    /// Puts a destination's dead letters back at the tail of its queue (in
    /// their order), each once; returns how many. With `dry_run`, only counts.
    pub async fn replay(ports: &Ports, destination: &str, dry_run: bool) -> PortResult<usize> {
        // Only what was dead-lettered before now: an entry the destination
        // refuses again is filed under its new (later) key and is not met
        // again here, so a replay ends, and replays each dead letter once.
        let now_us = (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000) as u64;
        let bound = format!("{now_us:017}");
        let pk = dead_pk(destination);
        let mut n = 0;
        let mut after: Option<String> = None;
        loop {
            let limit = if dry_run { MAX_QUERY_LIMIT } else { 33 };
            let page = ports.state.query(Table::Deliveries, &pk, after.as_deref(), limit).await?;
            let full = page.len() == limit;
            let page: Vec<_> = page.into_iter().take_while(|(k, _)| k.as_str() < bound.as_str()).collect();
            after = page.last().map(|(k, _)| k.clone());
            let mut ops = Vec::with_capacity(page.len() * 3);
            let mut seen = std::collections::HashSet::new();
            for (seq, item) in &page {
                let Ok(mut e) = decode_json::<QueueEntry>(&item.value) else { continue };
                // An unreadable entry set aside by a deliverer names no
                // message: it stays for an operator to look at.
                if e.transaction.is_empty() || e.messages.is_empty() {
                    continue;
                }
                n += 1;
                if dry_run {
                    continue;
                }
                e.reason = None;
                e.attempts = 0;
                ops.push(WriteOp::Delete {
                    key: dead_key(destination, seq),
                    condition: Condition::Version(item.version),
                });
                ops.push(WriteOp::Put {
                    key: queue_key(destination, &next_seq(now_us, &e.transaction)),
                    value: encode_json(&e)?,
                    expires_at: None,
                    condition: Condition::NotExists,
                    owner: None,
                });
                // Two entries of one transaction touch its status once.
                let status = status_key(&e.transaction, destination);
                if seen.insert(status.clone()) {
                    ops.push(WriteOp::Delete { key: status, condition: Condition::None });
                }
            }
            if !ops.is_empty() {
                ports.state.write(ops).await?;
            }
            if !full || after.is_none() {
                return Ok(n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn route(messages: &[&str], resources: &[&str]) -> Route {
        Route {
            name: "r".into(),
            partners: vec![],
            messages: messages.iter().map(|m| MessageFilter::parse(m).unwrap()).collect(),
            facilities: vec![],
            resources: resources.iter().map(|r| r.to_string()).collect(),
            to: vec!["EHR".into()],
            on_error: OnError::Retry,
            on_reject: OnError::DeadLetter,
        }
    }

    fn hl7<'a>(code: &'a str, trigger: &'a str) -> Facts<'a> {
        Facts::Hl7 { partner: "P1", code, trigger, facility: "FAC" }
    }

    #[test]
    fn message_filters() {
        assert!(route(&["ADT"], &[]).check(&hl7("ADT", "A08")).is_ok());
        assert!(route(&["ADT^A01"], &[]).check(&hl7("ADT", "A01")).is_ok());
        assert!(route(&["adt^a01"], &[]).check(&hl7("ADT", "A01")).is_ok());
        let why = route(&["ADT^A01", "SIU"], &[]).check(&hl7("ADT", "A08")).unwrap_err();
        assert_eq!(why, "ADT^A08 is not among ADT^A01, SIU");
        assert!(route(&["*"], &[]).check(&hl7("ZXY", "Z01")).is_ok());
        assert!(route(&["ADT^*"], &[]).check(&hl7("ADT", "A40")).is_ok());
        assert!(MessageFilter::parse("AD T").is_none());
        assert!(MessageFilter::parse("").is_none());
        assert!(MessageFilter::parse("ADT^").is_none());
    }

    #[test]
    fn formats_and_resources() {
        let fhir = Facts::Fhir { partner: "P1", resource: "Patient" };
        assert!(route(&[], &[]).check(&fhir).is_ok());
        assert!(route(&[], &[]).check(&hl7("ADT", "A01")).is_ok());
        assert!(route(&["ADT"], &[]).check(&fhir).is_err());
        assert!(route(&[], &["Patient"]).check(&hl7("ADT", "A01")).is_err());
        assert!(route(&[], &["Patient", "Appointment"]).check(&fhir).is_ok());
        assert!(route(&[], &["Appointment"]).check(&fhir).is_err());
    }

    #[test]
    fn each_destination_once_with_the_first_routes_policy() {
        let mut a = route(&["ADT"], &[]);
        a.to = vec!["EHR".into(), "BILLING".into()];
        let mut b = route(&["ADT^A01"], &[]);
        b.name = "second".into();
        b.on_error = OnError::DeadLetter;
        b.to = vec!["BILLING".into(), "LAB".into()];
        let cfg = SystemsConfig { routes: vec![a, b], destinations: vec![] };
        let s = cfg.select(&hl7("ADT", "A01"));
        let names: Vec<&str> = s.iter().map(|s| s.destination).collect();
        assert_eq!(names, ["EHR", "BILLING", "LAB"]);
        assert_eq!(s[1].on_error, OnError::Retry);
        assert_eq!(s[2].on_error, OnError::DeadLetter);
        assert!(cfg.select(&hl7("SIU", "S12")).is_empty());
    }

    #[test]
    fn sequences_grow_in_call_order() {
        let a = next_seq(1_000, "x");
        let b = next_seq(1_000, "a");
        let c = next_seq(5, "a");
        assert!(a < b && b < c, "{a} {b} {c}");
        assert_eq!(a.len(), b.len());
    }
}
