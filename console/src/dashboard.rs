//! The dashboard's figures: the service's counters (this process's
//! Prometheus registry, so the same numbers `/metrics` shows) with rates
//! over the last minute, the work queue's depth, dead letters waiting,
//! partners and payers, the audit log's size.

use crate::Console;
use clearway_core::config::Destination;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The most dead letters the dashboard counts (it shows "1000+" past it).
const DEAD_LETTERS_COUNTED: usize = 1000;
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
        c
    }
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
}

#[derive(Debug)]
pub struct PayerRow {
    pub id: String,
    pub transport: &'static str,
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
    let totals = Counters::from_prometheus(&(console.metrics)());
    let samples = console.samples.record(Instant::now(), totals);
    let depth = svc.ports.queue.depth().await.ok();
    let listed = clearway_core::dlq::list(&svc.ports.state, None, None, DEAD_LETTERS_COUNTED).await.ok();
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
            status: if p.shredded_at.is_some() {
                "shredded"
            } else if p.revoked {
                "revoked"
            } else {
                "active"
            },
            id: p.id.to_string(),
        })
        .collect();
    let payers = svc
        .config
        .payers
        .values()
        .map(|p| PayerRow {
            id: p.id.clone(),
            transport: match p.destination {
                Destination::Outbox => "outbox directory",
                Destination::Http(_) => "HTTPS",
                Destination::Sftp(_) => "SFTP",
            },
        })
        .collect();
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
