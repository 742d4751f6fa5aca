//! The dashboard's figures: the service's counters (this process's
//! Prometheus registry, so the same numbers `/metrics` shows) with rates
//! over the last minute, the work queue's depth, dead letters waiting,
//! partners, each payer's health (the batch breaker as this process's
//! workers report it, the real-time gate's breaker, refusals and last
//! answer, the latest file the payer sent, the month's CAQH CORE 20 s share)
//! and the audit log's size.

use crate::Console;
use clearway_core::config::Destination;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The most dead letters the dashboard counts (it shows "1000+" past it).
const DEAD_LETTERS_COUNTED: usize = 1000;
/// How long the CAQH CORE gauge is reused before it is computed again.
const CORE_GAUGE_TTL: Duration = Duration::from_secs(60);
/// How far back rates look.
const RATE_WINDOW: Duration = Duration::from_secs(60);
/// Samples kept for the chart (one per refresh, at most one a second).
const SAMPLES_KEPT: usize = 60;

/// Totals of the counters the dashboard shows, as read at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counters {
    pub accepted: f64,
    pub processed: f64,
    pub rejected: f64,
    pub dead_lettered: f64,
    pub rate_limited: f64,
    /// Eligibility lookups answered from the cache, and all lookups.
    pub cache_hits: f64,
    pub cache_lookups: f64,
}

impl Counters {
    /// Sums each counter family over its labels in Prometheus text.
    pub fn from_prometheus(text: &str) -> Self {
        let mut c = Counters::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name_end = line.find(['{', ' ']).unwrap_or(line.len());
            let Some(value) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else { continue };
            let slot = match &line[..name_end] {
                "clearway_intake_accepted_total" => &mut c.accepted,
                "clearway_transactions_processed_total" => &mut c.processed,
                "clearway_intake_rejected_total" => &mut c.rejected,
                "clearway_dead_letters_total" => &mut c.dead_lettered,
                "clearway_http_rate_limited_total" => &mut c.rate_limited,
                _ => continue,
            };
            *slot += value;
        }
        for line in text.lines().filter(|l| l.starts_with("clearway_fastpath_cache_total{")) {
            let Some(value) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else { continue };
            c.cache_lookups += value;
            if line.contains("result=\"hit\"") {
                c.cache_hits += value;
            }
        }
        c
    }

    /// The eligibility cache's hit ratio in percent (`None` before any
    /// lookup).
    pub fn cache_hit_pct(&self) -> Option<String> {
        (self.cache_lookups > 0.0).then(|| format!("{:.1} %", 100.0 * self.cache_hits / self.cache_lookups))
    }
}

/// Value of `label` → the sum of one metric family's values with it, in
/// Prometheus text.
fn sum_by_label(text: &str, family: &str, label: &str) -> BTreeMap<String, f64> {
    let key = format!("{label}=\"");
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with(family) && l[family.len()..].starts_with('{')) {
        let Some(value) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else { continue };
        let Some(at) = line.find(&key) else { continue };
        let rest = &line[at + key.len()..];
        if let Some(end) = rest.find('"') {
            *out.entry(rest[..end].to_string()).or_default() += value;
        }
    }
    out
}

/// One payer's CAQH CORE figure for the month, per transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct CoreCell {
    pub txn: String,
    pub responses: u64,
    pub within_20s_pct: f64,
    pub conformant: bool,
}

/// The month's CAQH CORE 20 s / 90 % figures by payer, from the
/// `core_conformance` report over the analytics export, computed in the
/// background at most once a minute so that no dashboard refresh waits
/// for DataFusion.
#[derive(Debug, Default)]
pub struct CoreGauge(std::sync::Arc<CoreInner>);

type CoreFigures = BTreeMap<String, Vec<CoreCell>>;

#[derive(Debug, Default)]
struct CoreInner {
    latest: Mutex<Option<(Instant, CoreFigures)>>,
    refreshing: AtomicBool,
}

/// Clears `refreshing` however the refresh ends.
struct Refreshing(std::sync::Arc<CoreInner>);

impl Drop for Refreshing {
    fn drop(&mut self) {
        self.0.refreshing.store(false, Ordering::Release);
    }
}

impl CoreGauge {
    /// The figures as last computed (`None`: not yet), starting a refresh
    /// in the background when they are older than [`CORE_GAUGE_TTL`].
    fn read(&self, reports: Option<&std::sync::Arc<dyn clearway_core::reports::Reports>>) -> Option<CoreFigures> {
        let latest = self.0.latest.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let stale = latest.as_ref().is_none_or(|(t, _)| t.elapsed() >= CORE_GAUGE_TTL);
        if let Some(reports) = reports.filter(|_| stale)
            && !self.0.refreshing.swap(true, Ordering::AcqRel)
        {
            let guard = Refreshing(self.0.clone());
            let reports = reports.clone();
            tokio::spawn(async move {
                let (from_us, to_us) = this_month(time::OffsetDateTime::now_utc());
                let params = clearway_core::reports::ReportParams {
                    from_us: Some(from_us),
                    to_us: Some(to_us),
                    partner: None,
                    payer: None,
                };
                let figures = match reports.run("core_conformance", &params).await {
                    Ok(Some(rows)) => core_cells(&rows),
                    Ok(None) => BTreeMap::new(),
                    Err(e) => {
                        // Nothing exported yet, or the store is away: no
                        // figures, tried again after the TTL.
                        tracing::debug!(error = %clearway_core::error::chain(&e), "CAQH CORE gauge not computed");
                        BTreeMap::new()
                    }
                };
                *guard.0.latest.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
                    Some((Instant::now(), figures));
                drop(guard);
            });
        }
        latest.map(|(_, f)| f)
    }
}

/// Rows of `core_conformance` to cells by payer.
fn core_cells(rows: &serde_json::Value) -> BTreeMap<String, Vec<CoreCell>> {
    let mut out: BTreeMap<String, Vec<CoreCell>> = BTreeMap::new();
    for r in rows.as_array().into_iter().flatten() {
        let payer = r["payer"].as_str().unwrap_or("").to_string();
        out.entry(payer).or_default().push(CoreCell {
            txn: r["txn"].as_str().unwrap_or("").to_string(),
            responses: r["responses"].as_u64().unwrap_or(0),
            within_20s_pct: r["within_20s_pct"].as_f64().unwrap_or(0.0),
            conformant: r["conformant"].as_bool().unwrap_or(false),
        });
    }
    out
}

/// Starts of this month and the next (Unix µs).
fn this_month(now: time::OffsetDateTime) -> (i64, i64) {
    let first = now.date().replace_day(1).unwrap_or(now.date());
    let next = if first.month() == time::Month::December {
        time::Date::from_calendar_date(first.year() + 1, time::Month::January, 1)
    } else {
        time::Date::from_calendar_date(first.year(), first.month().next(), 1)
    }
    .unwrap_or(first);
    let us = |d: time::Date| d.midnight().assume_utc().unix_timestamp() * 1_000_000;
    (us(first), us(next))
}

/// Recent samples of the counters (this process's).
#[derive(Debug, Default)]
pub struct Samples(Mutex<VecDeque<(Instant, Counters)>>);

impl Samples {
    /// Adds a sample (at most one a second) and returns those kept.
    fn record(&self, now: Instant, c: Counters) -> Vec<(Instant, Counters)> {
        let mut s = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if s.back().is_none_or(|(t, _)| now.duration_since(*t) >= Duration::from_secs(1)) {
            s.push_back((now, c));
        }
        while s.len() > SAMPLES_KEPT {
            s.pop_front();
        }
        s.iter().copied().collect()
    }
}

/// One bar of the intake chart (SVG units: 300 × 60).
#[derive(Debug)]
pub struct Bar {
    pub x: u32,
    pub y: u32,
    pub height: u32,
    pub label: String,
}

#[derive(Debug)]
pub struct PartnerRow {
    pub id: String,
    pub status: &'static str,
    pub dead_letters: usize,
    /// Its requests answered `429` (this process, since it started).
    pub rate_limited: u64,
}

#[derive(Debug)]
pub struct PayerRow {
    pub id: String,
    pub transport: &'static str,
    /// The batch and poll breaker, as this process's workers report it
    /// (`None`: no worker here has called the payer).
    pub batch_breaker_open: Option<bool>,
    /// The real-time gate (this process).
    pub realtime: Option<clearway_fastpath::gate::GateHealth>,
    pub realtime_last_answer: Option<String>,
    /// When the payer's latest file came in.
    pub last_file_at: Option<String>,
    /// The month's CAQH CORE figures (`None`: not computed yet).
    pub core: Option<Vec<CoreCell>>,
}

impl PayerRow {
    pub fn breaker(&self) -> &'static str {
        let realtime = self.realtime.as_ref().is_some_and(|g| g.breaker_open);
        match (self.batch_breaker_open, realtime) {
            (Some(true), true) => "open (batches and real time)",
            (Some(true), false) => "open (batches)",
            (_, true) => "open (real time)",
            (Some(false), false) => "closed",
            (None, false) => "closed (real time); batches not reported here",
        }
    }
}

/// A Unix-ms time as the dashboard shows it.
fn clock(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map(|t| format!("{} {:02}:{:02}:{:02} UTC", t.date(), t.hour(), t.minute(), t.second()))
        .unwrap_or_default()
}

/// What the dashboard shows.
#[derive(Debug)]
pub struct Dashboard {
    pub as_of: String,
    pub totals: Counters,
    /// Per minute, over the last minute (`None` until two samples).
    pub accepted_per_min: Option<u64>,
    pub processed_per_min: Option<u64>,
    pub queue_waiting: Option<u64>,
    pub queue_in_flight: Option<u64>,
    pub dead_letters: Option<usize>,
    pub dead_letters_capped: bool,
    pub partners: Vec<PartnerRow>,
    pub payers: Vec<PayerRow>,
    pub audit_events: Option<u64>,
    pub audit_checkpointed: bool,
    pub bars: Vec<Bar>,
    /// Partners link to their transactions (operators).
    pub links: bool,
}

fn per_min(samples: &[(Instant, Counters)], pick: impl Fn(&Counters) -> f64) -> Option<u64> {
    let (t1, last) = samples.last()?;
    let (t0, first) = samples.iter().find(|(t, _)| t1.duration_since(*t) <= RATE_WINDOW)?;
    let secs = t1.duration_since(*t0).as_secs_f64();
    (secs >= 1.0).then(|| ((pick(last) - pick(first)).max(0.0) / secs * 60.0).round() as u64)
}

/// Bars of accepted transactions between consecutive samples.
fn bars(samples: &[(Instant, Counters)]) -> Vec<Bar> {
    let deltas: Vec<f64> = samples.windows(2).map(|w| (w[1].1.accepted - w[0].1.accepted).max(0.0)).collect();
    let top = deltas.iter().copied().fold(1.0, f64::max);
    let width = 300 / SAMPLES_KEPT as u32;
    deltas
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let height = ((d / top) * 58.0).round() as u32;
            Bar { x: i as u32 * width, y: 60 - height, height, label: format!("{d:.0} accepted") }
        })
        .collect()
}

/// Reads the figures now.
pub async fn gather(console: &Console, links: bool) -> Dashboard {
    let svc = &console.svc;
    let text = (console.metrics)();
    let totals = Counters::from_prometheus(&text);
    let batch_breakers = sum_by_label(&text, "clearway_payer_breaker_open", "payer");
    let rate_limited = sum_by_label(&text, "clearway_http_rate_limited_total", "partner");
    let gates: BTreeMap<String, clearway_fastpath::gate::GateHealth> =
        svc.fastpath.payer_health().into_iter().map(|g| (g.payer.clone(), g)).collect();
    let core = console.core_gauge.read(svc.reports.as_ref());
    let samples = console.samples.record(Instant::now(), totals);
    let depth = svc.ports.queue.depth().await.ok();
    let listed = clearway_core::dlq::list(&svc.ports.state, None, None, None, DEAD_LETTERS_COUNTED).await.ok();
    let dead_letters = listed.as_ref().map(Vec::len);
    let letters = listed.unwrap_or_default();
    let mut by_partner: BTreeMap<String, usize> = BTreeMap::new();
    for l in &letters {
        *by_partner.entry(l.partner.to_string()).or_default() += 1;
    }
    let partners = svc
        .partners
        .list()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|p| PartnerRow {
            dead_letters: by_partner.get(p.id.as_str()).copied().unwrap_or(0),
            rate_limited: rate_limited.get(p.id.as_str()).copied().unwrap_or(0.0) as u64,
            status: crate::partner_state(&p),
            id: p.id.to_string(),
        })
        .collect();
    let mut payers = Vec::new();
    for p in svc.config.payers.values() {
        let realtime = gates.get(&p.id).cloned();
        let last_file = clearway_core::roundtrip::last_answer(&svc.ports, &p.id).await.ok().flatten();
        payers.push(PayerRow {
            id: p.id.clone(),
            transport: match p.destination {
                Destination::Outbox => "outbox directory",
                Destination::Http(_) => "HTTPS",
                Destination::Sftp(_) => "SFTP",
            },
            batch_breaker_open: batch_breakers.get(&p.id).map(|v| *v > 0.0),
            realtime_last_answer: realtime.as_ref().and_then(|g| g.last_answer_ms).map(clock),
            realtime,
            last_file_at: last_file.map(|l| l.received_at),
            core: core.as_ref().map(|c| c.get(&p.id).cloned().unwrap_or_default()),
        });
    }
    let (audit_events, audit_checkpointed) = match &svc.audit {
        Some(sink) => (sink.size().await.ok(), matches!(sink.latest_checkpoint().await, Ok(Some(_)))),
        None => (None, false),
    };
    let now = time::OffsetDateTime::now_utc();
    Dashboard {
        as_of: format!("{:02}:{:02}:{:02} UTC", now.hour(), now.minute(), now.second()),
        totals,
        accepted_per_min: per_min(&samples, |c| c.accepted),
        processed_per_min: per_min(&samples, |c| c.processed),
        queue_waiting: depth.as_ref().map(|d| d.visible),
        queue_in_flight: depth.as_ref().map(|d| d.in_flight),
        dead_letters_capped: letters.len() >= DEAD_LETTERS_COUNTED,
        dead_letters,
        partners,
        payers,
        audit_events,
        audit_checkpointed,
        bars: bars(&samples),
        links,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_sum_over_labels_and_skip_others() {
        let text = "# TYPE clearway_intake_accepted_total counter\n\
            clearway_intake_accepted_total{format=\"x12\",channel=\"http\"} 3\n\
            clearway_intake_accepted_total{format=\"hl7v2\",channel=\"mllp\"} 4\n\
            clearway_intake_accepted_totally 100\n\
            clearway_transactions_processed_total 5\n\
            clearway_dead_letters_total{reason=\"x\"} 1\n";
        let c = Counters::from_prometheus(text);
        assert_eq!(c.accepted, 7.0);
        assert_eq!(c.processed, 5.0);
        assert_eq!(c.dead_lettered, 1.0);
        assert_eq!(c.rejected, 0.0);
    }

    #[test]
    fn a_family_is_summed_per_label_value() {
        let text = "clearway_http_rate_limited_total{class=\"submit\",partner=\"acme\"} 2\n\
            clearway_http_rate_limited_total{class=\"read\",partner=\"acme\"} 3\n\
            clearway_http_rate_limited_total{class=\"failed_auth\"} 9\n\
            clearway_http_rate_limited_total{class=\"read\",partner=\"beta\"} 1\n\
            clearway_http_rate_limited_totally{partner=\"acme\"} 100\n";
        let by = sum_by_label(text, "clearway_http_rate_limited_total", "partner");
        assert_eq!(by, BTreeMap::from([("acme".to_string(), 5.0), ("beta".to_string(), 1.0)]));
    }

    #[test]
    fn rates_come_from_samples_a_minute_apart_at_most() {
        let t = Instant::now();
        let at = |s: u64, accepted: f64| (t + Duration::from_secs(s), Counters { accepted, ..Counters::default() });
        assert_eq!(per_min(&[at(0, 0.0)], |c| c.accepted), None, "one sample: no rate");
        assert_eq!(per_min(&[at(0, 0.0), at(30, 60.0)], |c| c.accepted), Some(120));
        // The sample 90 s back is outside the window.
        assert_eq!(per_min(&[at(0, 0.0), at(60, 600.0), at(90, 630.0)], |c| c.accepted), Some(60));
        let b = bars(&[at(0, 0.0), at(1, 10.0), at(2, 15.0)]);
        assert_eq!(b.len(), 2);
        assert_eq!((b[0].height, b[1].height), (58, 29));
        assert_eq!(b[0].y + b[0].height, 60);
    }
}
