//! The incremental export: seal pending changes into batches, write every
//! batch the destination has not written as hive-partitioned Parquet, and
//! move its watermark by compare-and-set once the files are durable.
//!
//! A batch's files are named by the sequence numbers of the events they
//! hold (`part-<first>-<last>.parquet`) and written create-only; their
//! bytes depend only on the batch, so a crash anywhere followed by a rerun
//! rewrites the same names with the same bytes (an existing file is kept)
//! and then moves the watermark: no row twice, none missing.

use crate::derive::{Reader, Skipped, Tables};
use crate::feed;
use crate::schema;
use crate::sink::Destination;
use clearway_core::changes::{Sequenced, Watermark, watermark_key};
use clearway_core::ports::{Condition, StateStore, WriteOp};
use clearway_core::records::{decode_json, encode_json};
use clearway_core::{ErrorKind, PortError, PortResult};
use datafusion::arrow::array::{Array, TimestampMicrosecondArray};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Rows any table may hold before the export writes its files and starts
/// new ones (bounds memory; cut at an event boundary, so names stay
/// deterministic).
pub const ROLL_ROWS: usize = 250_000;

/// What one run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ExportReport {
    pub batches_sealed: u64,
    pub batches_written: u64,
    pub events: u64,
    pub files_created: u64,
    /// Files found already written (a rerun after a crash).
    pub files_existing: u64,
    pub rows: BTreeMap<String, u64>,
    pub skipped: Skipped,
    /// The destination's next batch after the run.
    pub next_batch: u64,
    /// A bounded run ([`Exporter::run_period`]): sealed batches no longer
    /// kept (older than the retention), whose days it could not write.
    pub batches_gone: u64,
    /// The Tuva snapshot written, if one was.
    pub tuva: Option<crate::tuva::SnapshotReport>,
}

/// Exports to one destination.
pub struct Exporter {
    state: Arc<dyn StateStore>,
    reader: Reader,
    dest: Destination,
    /// Whether this exporter has made sure the empty pharmacy table exists.
    pharmacy_table: bool,
    /// How long sealed batches are kept (other destinations and re-exports
    /// read them), seconds.
    pub retain_secs: i64,
    /// Whether [`Exporter::run`] writes the day's Tuva snapshot when the
    /// destination has none for today (`analytics.tuva_snapshots`).
    pub tuva_daily: bool,
    /// Whether the next [`Exporter::run`] writes today's Tuva snapshot
    /// whether or not one exists (`clearway export --tuva-snapshot`).
    pub tuva_now: bool,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter").field("destination", &self.dest.id()).finish_non_exhaustive()
    }
}

impl Exporter {
    pub fn new(reader: Reader, dest: Destination) -> Self {
        Exporter {
            state: reader.state.clone(),
            reader,
            dest,
            retain_secs: 35 * 86_400,
            pharmacy_table: false,
            tuva_daily: true,
            tuva_now: false,
        }
    }

    pub fn destination(&self) -> &Destination {
        &self.dest
    }

    async fn watermark(&self) -> PortResult<(Watermark, Option<u64>)> {
        Ok(match self.state.get(&watermark_key(&self.dest.id())).await? {
            Some(item) => (decode_json(&item.value)?, Some(item.version)),
            None => (Watermark::default(), None),
        })
    }

    /// Seals what is pending, then writes every batch this destination
    /// has not written.
    pub async fn run(&mut self) -> PortResult<ExportReport> {
        let mut report = ExportReport { batches_sealed: self.seal_pending().await?, ..Default::default() };
        self.pharmacy_table().await?;
        let (head, _) = feed::head(self.state.as_ref()).await?;
        loop {
            let (mark, version) = self.watermark().await?;
            report.next_batch = mark.next_batch;
            if mark.next_batch >= head.next_batch {
                break;
            }
            let n = mark.next_batch;
            let events = match feed::read_batch(self.state.as_ref(), n).await? {
                Some(e) => e,
                None => {
                    tracing::error!(
                        batch = n,
                        "a sealed batch is no longer kept: the destination fell behind the retention"
                    );
                    return Err(PortError::new(
                        ErrorKind::NotFound,
                        "a sealed batch is no longer kept: this destination fell behind the retention",
                    ));
                }
            };
            let rows = self.write_batch(&events, None, &mut report).await?;
            let mut next = mark.clone();
            next.next_batch = n + 1;
            for (t, c) in rows {
                *next.rows.entry(t).or_default() += c;
            }
            next.updated_at_ms = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
            let cond = match version {
                Some(v) => Condition::Version(v),
                None => Condition::NotExists,
            };
            self.state
                .write(vec![WriteOp::Put {
                    key: watermark_key(&self.dest.id()),
                    value: encode_json(&next)?,
                    expires_at: None,
                    condition: cond,
                    owner: None,
                }])
                .await?;
            report.batches_written += 1;
            report.events += events.len() as u64;
            report.next_batch = n + 1;
            metrics::counter!("clearway_analytics_batches_total").increment(1);
            metrics::counter!("clearway_analytics_events_total").increment(events.len() as u64);
        }
        // Layer B: today's Tuva snapshot, once a day (the first run of the
        // day), or when asked.
        let today = time::OffsetDateTime::now_utc().date();
        // (Checked on the table a snapshot writes last: one cut short by a
        // crash is written again.)
        let last = crate::tuva::TABLES[crate::tuva::TABLES.len() - 1].0;
        let due = self.tuva_daily && !self.dest.exists(&crate::tuva::snapshot_path(last, today)).await?;
        if due || self.tuva_now {
            report.tuva = Some(crate::tuva::snapshot(&self.dest, today).await?);
            self.tuva_now = false;
            metrics::counter!("clearway_analytics_tuva_snapshots_total").increment(1);
        }
        Ok(report)
    }

    /// Seals every pending change into batches; returns how many.
    async fn seal_pending(&self) -> PortResult<u64> {
        let retain_until = time::OffsetDateTime::now_utc().unix_timestamp() + self.retain_secs;
        let mut sealed = 0;
        while feed::seal(self.state.as_ref(), Some(retain_until), None).await?.is_some() {
            sealed += 1;
        }
        Ok(sealed)
    }

    /// Tuva's pharmacy_claim has no rows yet (NCPDP claims do not reach
    /// the change feed): an empty file, so the table exists for readers
    /// (Tuva requires every claims input table).
    async fn pharmacy_table(&mut self) -> PortResult<()> {
        if !self.pharmacy_table {
            let empty = crate::schema::Rows::new(&schema::TUVA_PHARMACY_CLAIM).finish().map_err(arrow_err)?;
            let rel = format!("v1/{}/part-empty.parquet", schema::TUVA_PHARMACY_CLAIM.name);
            self.dest.create(&rel, parquet_bytes(&empty)?).await?;
            self.pharmacy_table = true;
        }
        Ok(())
    }

    /// A bounded re-export: writes the `received_date` partitions from
    /// `from` (inclusive) to `to` (exclusive) of every kept batch, whatever
    /// this destination's watermark says, and leaves the watermark alone.
    /// Each file has the name and the bytes the incremental export gives
    /// it (the same batch, rolled at the same events), so files already
    /// there are kept and a later incremental run keeps these: a backfill of
    /// a new destination, or of partitions lost there, with no row twice.
    /// The Tuva tables, which are not partitioned, get each touched
    /// batch's whole file, as the incremental export writes it.
    pub async fn run_period(&mut self, from: time::Date, to: time::Date) -> PortResult<ExportReport> {
        let mut report = ExportReport { batches_sealed: self.seal_pending().await?, ..Default::default() };
        self.pharmacy_table().await?;
        let days = (day_number(from), day_number(to));
        let (head, _) = feed::head(self.state.as_ref()).await?;
        for n in 0..head.next_batch {
            let Some(events) = feed::read_batch(self.state.as_ref(), n).await? else {
                report.batches_gone += 1;
                continue;
            };
            // Every kept batch is read: an event's rows need not share its
            // receipt date (a delivered batch's claim_route rows go by each
            // claim's receipt).
            let in_period = events
                .iter()
                .filter(|s| (days.0..days.1).contains(&s.event.received_at_ms.div_euclid(86_400_000)))
                .count();
            let rows = self.write_batch(&events, Some(days), &mut report).await?;
            if rows.values().any(|n| *n > 0) {
                report.batches_written += 1;
            }
            report.events += in_period as u64;
        }
        report.next_batch = self.watermark().await?.0.next_batch;
        Ok(report)
    }

    /// Writes one batch's files (only the partitions of days `days.0` to
    /// `days.1`, exclusive, when given); returns the rows per table.
    async fn write_batch(
        &mut self,
        events: &[Sequenced],
        days: Option<(i64, i64)>,
        report: &mut ExportReport,
    ) -> PortResult<BTreeMap<String, u64>> {
        let mut rows: BTreeMap<String, u64> = BTreeMap::new();
        let mut tables = Tables::default();
        let mut first: Option<u64> = None;
        for (i, s) in events.iter().enumerate() {
            first.get_or_insert(s.seq);
            self.reader.add(s, &mut tables, &mut report.skipped).await?;
            let last_event = i + 1 == events.len();
            if tables.max_len() >= ROLL_ROWS || last_event {
                let from = first.take().unwrap_or(s.seq);
                for r in tables.rows.iter_mut() {
                    if r.is_empty() {
                        continue;
                    }
                    let name = r.def.name;
                    let partitioned = r.def.partitioned();
                    let batch = r.finish().map_err(arrow_err)?;
                    let parts = if partitioned { by_date(&batch)? } else { vec![(None, batch)] };
                    for (day, part) in parts {
                        if let (Some(day), Some((a, b))) = (day, days)
                            && !(a..b).contains(&day)
                        {
                            continue;
                        }
                        *rows.entry(name.to_string()).or_default() += part.num_rows() as u64;
                        let file = format!("part-{from:020}-{:020}.parquet", s.seq);
                        let rel = if let Some(day) = day {
                            format!("v1/{name}/received_date={}/{file}", date_string(day))
                        } else {
                            format!("v1/{name}/{file}")
                        };
                        let bytes = parquet_bytes(&part)?;
                        if self.dest.create(&rel, bytes).await? {
                            report.files_created += 1;
                        } else {
                            report.files_existing += 1;
                        }
                    }
                }
            }
        }
        for (t, c) in &rows {
            *report.rows.entry(t.clone()).or_default() += c;
            metrics::counter!("clearway_analytics_rows_total", "table" => schema::table(t).map(|d| d.name).unwrap_or("other"))
                .increment(*c);
        }
        Ok(rows)
    }
}

fn arrow_err(e: datafusion::arrow::error::ArrowError) -> PortError {
    PortError::with_cause(ErrorKind::Internal, "build analytics rows", e)
}

/// Days since 1970-01-01 of a date.
fn day_number(d: time::Date) -> i64 {
    i64::from(d.to_julian_day())
        - i64::from(
            time::Date::from_calendar_date(1970, time::Month::January, 1).map_or(2_440_588, |e| e.to_julian_day()),
        )
}

/// The rows of a batch split by the UTC date of `received_at` (days since
/// 1970-01-01).
fn by_date(batch: &RecordBatch) -> PortResult<Vec<(Option<i64>, RecordBatch)>> {
    let Some(col) = batch.column_by_name("received_at") else {
        return Err(PortError::new(ErrorKind::Internal, "a table without received_at"));
    };
    let Some(ts) = col.as_any().downcast_ref::<TimestampMicrosecondArray>() else {
        return Err(PortError::new(ErrorKind::Internal, "received_at is not a timestamp"));
    };
    let day = |i: usize| if ts.is_null(i) { 0 } else { ts.value(i).div_euclid(86_400_000_000) };
    let mut days: Vec<i64> = (0..ts.len()).map(day).collect();
    days.sort_unstable();
    days.dedup();
    let mut out = Vec::with_capacity(days.len());
    for d in days {
        let mask: datafusion::arrow::array::BooleanArray = (0..ts.len()).map(|i| Some(day(i) == d)).collect();
        let part = filter_record_batch(batch, &mask).map_err(arrow_err)?;
        out.push((Some(d), part));
    }
    Ok(out)
}

fn date_string(day: i64) -> String {
    let epoch = time::Date::from_calendar_date(1970, time::Month::January, 1).unwrap_or(time::Date::MIN);
    let d = epoch.checked_add(time::Duration::days(day)).unwrap_or(epoch);
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// How every exported Parquet file is written: zstd level 1, statistics.
pub fn writer_properties() -> PortResult<WriterProperties> {
    let zstd = ZstdLevel::try_new(1).map_err(|e| PortError::with_cause(ErrorKind::Internal, "zstd level", e))?;
    Ok(WriterProperties::builder().set_compression(Compression::ZSTD(zstd)).build())
}

/// One Parquet file of the rows: zstd(1), statistics, one row group per
/// [`ROLL_ROWS`].
pub fn parquet_bytes(batch: &RecordBatch) -> PortResult<bytes::Bytes> {
    let mut out = Vec::new();
    let mut w = ArrowWriter::try_new(&mut out, batch.schema(), Some(writer_properties()?))
        .map_err(|e| PortError::with_cause(ErrorKind::Internal, "open a parquet writer", e))?;
    w.write(batch).map_err(|e| PortError::with_cause(ErrorKind::Internal, "write parquet", e))?;
    w.close().map_err(|e| PortError::with_cause(ErrorKind::Internal, "close parquet", e))?;
    Ok(bytes::Bytes::from(out))
}
