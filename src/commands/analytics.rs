//! `clearway export` and `clearway report`.

use super::store::{Store, load_config, port};
use crate::cli::{ReportFormat, StoreArgs};
use anyhow::Context;
use clearway_analytics::derive::Reader;
use clearway_analytics::export::Exporter;
use clearway_analytics::report;
use clearway_analytics::sink::{Destination, S3Options};
use clearway_core::config::AnalyticsConfig;
use std::io::Write;
use std::process::ExitCode;

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// The destination at `address` with the S3 settings of `[analytics]`.
pub fn destination(config: &AnalyticsConfig, address: Option<&str>) -> anyhow::Result<Destination> {
    let s3 = S3Options {
        region: config.s3_region.clone(),
        endpoint: config.s3_endpoint.clone(),
        kms_key_id: config.kms_key_id.clone(),
    };
    Destination::parse(address.unwrap_or(&config.destination), &s3).map_err(port)
}

/// A `YYYY-MM-DD` date.
fn date_arg(v: &str) -> Option<time::Date> {
    time::Date::parse(v, time::macros::format_description!("[year]-[month]-[day]")).ok()
}

/// A bounded export's days: from (inclusive), to (exclusive).
type Period = (time::Date, time::Date);

/// `--to` values: at most one destination and at most one date (the end of
/// a bounded period).
fn export_targets<'a>(to: &'a [String], from: Option<&str>) -> anyhow::Result<(Option<&'a str>, Option<Period>)> {
    let (dates, places): (Vec<&String>, Vec<&String>) = to.iter().partition(|v| date_arg(v).is_some());
    if places.len() > 1 || dates.len() > 1 {
        anyhow::bail!("--to names one destination and at most one date (the end of --from's period)");
    }
    let period = match (from, dates.first()) {
        (None, None) => None,
        (None, Some(_)) => anyhow::bail!("--to DATE ends a period: give --from DATE too"),
        (Some(f), end) => {
            let from = date_arg(f).ok_or_else(|| anyhow::anyhow!("--from: a date, YYYY-MM-DD"))?;
            let end = match end {
                Some(e) => date_arg(e).ok_or_else(|| anyhow::anyhow!("--to: a date, YYYY-MM-DD"))?,
                None => time::OffsetDateTime::now_utc().date().next_day().unwrap_or(time::Date::MAX),
            };
            if end <= from {
                anyhow::bail!("--to {end} is not after --from {from}: an empty period");
            }
            Some((from, end))
        }
    };
    Ok((places.first().map(|s| s.as_str()), period))
}

pub fn export(
    args: &StoreArgs,
    to: &[String],
    from: Option<&str>,
    tuva_snapshot: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let (to, period) = export_targets(to, from)?;
    if period.is_some() && tuva_snapshot {
        anyhow::bail!("--tuva-snapshot builds today's snapshot from everything exported: not with --from");
    }
    let config = load_config(args, |_| {})?;
    runtime()?.block_on(async {
        let store = Store::open(&config).await?;
        let dest = destination(&config.analytics, to)?;
        let reader = Reader::new(store.ports.state.clone(), store.ports.blobs.clone(), store.partners.clone());
        let mut exporter = Exporter::new(reader, dest);
        exporter.retain_secs = config.analytics.retain.as_secs() as i64;
        exporter.tuva_daily = config.analytics.tuva_snapshots;
        exporter.tuva_now = tuva_snapshot;
        let started = std::time::Instant::now();
        let r = match period {
            Some((from, to)) => exporter.run_period(from, to).await.map_err(port)?,
            None => exporter.run().await.map_err(port)?,
        };
        let took_ms = started.elapsed().as_millis() as u64;
        let mut out = std::io::stdout().lock();
        if json {
            let v = serde_json::json!({
                "batchesSealed": r.batches_sealed,
                "batchesWritten": r.batches_written,
                "events": r.events,
                "filesCreated": r.files_created,
                "filesExisting": r.files_existing,
                "rows": r.rows,
                "skippedMissingRecord": r.skipped.missing_record,
                "skippedUnreadable": r.skipped.unreadable,
                "nextBatch": r.next_batch,
                "batchesGone": r.batches_gone,
                "tuvaSnapshot": r.tuva.as_ref().map(|t| serde_json::json!({
                    "date": t.date,
                    "rows": t.rows,
                    "adjudicatedLines": t.adjudicated_lines,
                })),
                "tookMs": took_ms,
            });
            writeln!(out, "{v}")?;
        } else {
            writeln!(
                out,
                "exported {} events in {} batches ({} files written, {} already there) in {took_ms} ms",
                r.events, r.batches_written, r.files_created, r.files_existing
            )?;
            for (t, n) in &r.rows {
                writeln!(out, "  {t}: {n} rows")?;
            }
            if let Some(t) = &r.tuva {
                writeln!(
                    out,
                    "  Tuva snapshot {}: {} medical claim lines ({} adjudicated), {} eligibility rows",
                    t.date,
                    t.rows.get("medical_claim").unwrap_or(&0),
                    t.adjudicated_lines,
                    t.rows.get("eligibility").unwrap_or(&0)
                )?;
            }
            if r.batches_gone > 0 {
                writeln!(
                    out,
                    "  {} older change batches are no longer kept (analytics.retain_days): a period reaching back to them is incomplete",
                    r.batches_gone
                )?;
            }
            if r.skipped.missing_record + r.skipped.unreadable > 0 {
                writeln!(
                    out,
                    "  skipped: {} without a record, {} unreadable (keys shredded or payload gone)",
                    r.skipped.missing_record, r.skipped.unreadable
                )?;
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `clearway report`'s arguments.
#[derive(Debug)]
pub struct ReportArgs {
    pub name: String,
    pub from: Option<String>,
    pub to: Option<String>,
    pub partner: Option<String>,
    pub payer: Option<String>,
    pub format: ReportFormat,
    pub source: Option<String>,
}

/// A date (`YYYY-MM-DD`, midnight UTC) or an RFC 3339 time, as Unix µs.
fn parse_bound(v: &str) -> anyhow::Result<i64> {
    report::parse_bound(v).ok_or_else(|| anyhow::anyhow!("not a date (YYYY-MM-DD) or an RFC 3339 time: {v}"))
}

pub fn report(args: &StoreArgs, a: ReportArgs) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    if a.name == "list" {
        for r in report::REPORTS {
            writeln!(out, "{}\t{}", r.name, r.description())?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let Some(rep) = report::find(&a.name) else {
        anyhow::bail!("no report named {:?}; the reports are: {}", a.name, report::names().join(", "));
    };
    let params = report::Params {
        from_us: a.from.as_deref().map(parse_bound).transpose()?,
        to_us: a.to.as_deref().map(parse_bound).transpose()?,
        partner: a.partner,
        payer: a.payer,
    };
    let config = load_config(args, |_| {})?;
    runtime()?.block_on(async {
        let dest = destination(&config.analytics, a.source.as_deref())?;
        let ctx = report::session(&dest).await.map_err(port)?;
        let batches = report::run(&ctx, rep, &params).await.map_err(port)?;
        match a.format {
            ReportFormat::Table => writeln!(out, "{}", report::to_table(&batches).map_err(port)?)?,
            ReportFormat::Csv => write!(out, "{}", report::to_csv(&batches).map_err(port)?)?,
            ReportFormat::Json => writeln!(out, "{}", report::to_json(&batches).map_err(port)?)?,
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `serve`'s exporter: a run every `every` (the first one `every` after
/// start). A run in progress at shutdown finishes; none starts after.
pub async fn scheduled(
    mut exporter: Exporter,
    every: std::time::Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    while super::tick(every, &shutdown).await {
        let started = std::time::Instant::now();
        match exporter.run().await {
            Ok(r) => {
                metrics::histogram!("clearway_analytics_export_seconds").record(started.elapsed().as_secs_f64());
                if r.events > 0 {
                    tracing::info!(
                        events = r.events,
                        batches = r.batches_written,
                        files = r.files_created,
                        "analytics export"
                    );
                }
            }
            Err(e) => {
                metrics::counter!("clearway_analytics_export_failures_total").increment(1);
                tracing::warn!(error = %clearway_core::error::chain(&e), "analytics export failed; retried at the next run");
            }
        }
    }
}
