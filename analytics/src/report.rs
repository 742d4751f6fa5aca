//! The report pack: each report a SQL file in `analytics/reports/`, run by
//! DataFusion over the exported Parquet. Parameters (`$from`, `$to`,
//! `$partner`, `$payer`) are bound as typed values, never spliced into the
//! SQL text.

use crate::schema;
use crate::sink::Destination;
use clearway_core::{ErrorKind, PortError, PortResult};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ParamValues;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::scalar::ScalarValue;
use std::sync::Arc;

/// A report: its name, what it answers and its SQL.
#[derive(Debug, Clone, Copy)]
pub struct Report {
    pub name: &'static str,
    pub sql: &'static str,
}

impl Report {
    /// The first comment line of its SQL.
    pub fn description(&self) -> String {
        self.sql
            .lines()
            .take_while(|l| l.starts_with("--"))
            .map(|l| l.trim_start_matches("--").trim())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Every report.
pub const REPORTS: &[Report] = &[
    Report { name: "acceptance", sql: include_str!("../reports/acceptance.sql") },
    Report { name: "first_pass", sql: include_str!("../reports/first_pass.sql") },
    Report { name: "rejections", sql: include_str!("../reports/rejections.sql") },
    Report { name: "ack_errors", sql: include_str!("../reports/ack_errors.sql") },
    Report { name: "turnaround", sql: include_str!("../reports/turnaround.sql") },
    Report { name: "dead_letters", sql: include_str!("../reports/dead_letters.sql") },
    Report { name: "throughput", sql: include_str!("../reports/throughput.sql") },
    Report { name: "core_conformance", sql: include_str!("../reports/core_conformance.sql") },
    Report { name: "aaa_errors", sql: include_str!("../reports/aaa_errors.sql") },
    Report { name: "reconciliation", sql: include_str!("../reports/reconciliation.sql") },
    Report { name: "denials", sql: include_str!("../reports/denials.sql") },
    Report { name: "duplicates", sql: include_str!("../reports/duplicates.sql") },
    Report { name: "claim_turnaround", sql: include_str!("../reports/claim_turnaround.sql") },
];

/// The report named `name`.
pub fn find(name: &str) -> Option<&'static Report> {
    REPORTS.iter().find(|r| r.name == name)
}

/// The names of every report, for an unknown name's answer.
pub fn names() -> Vec<&'static str> {
    REPORTS.iter().map(|r| r.name).collect()
}

/// A report's parameters.
#[derive(Debug, Clone, Default)]
pub struct Params {
    /// Unix microseconds, inclusive; `None`: the beginning.
    pub from_us: Option<i64>,
    /// Unix microseconds, exclusive; `None`: no end.
    pub to_us: Option<i64>,
    pub partner: Option<String>,
    pub payer: Option<String>,
}

fn df_err(e: datafusion::error::DataFusionError) -> PortError {
    PortError::with_cause(ErrorKind::Internal, "run a report", e)
}

/// A DataFusion session with every exported table of `dest` registered.
pub async fn session(dest: &Destination) -> PortResult<SessionContext> {
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_information_schema(false));
    if dest.url.scheme() != "file" {
        ctx.register_object_store(&dest.url, dest.store.clone());
    }
    for t in schema::TABLES {
        let url = ListingTableUrl::parse(dest.table_url(t.name)).map_err(df_err)?;
        let mut opts = ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
        if t.partitioned() {
            opts = opts.with_table_partition_cols(vec![(
                "received_date".into(),
                datafusion::arrow::datatypes::DataType::Utf8,
            )]);
        }
        let config = ListingTableConfig::new(url).with_listing_options(opts).with_schema(t.schema());
        let table = ListingTable::try_new(config).map_err(df_err)?;
        ctx.register_table(t.name, Arc::new(table)).map_err(df_err)?;
    }
    Ok(ctx)
}

/// Runs a report.
pub async fn run(ctx: &SessionContext, report: &Report, p: &Params) -> PortResult<Vec<RecordBatch>> {
    let ts = |v: i64| ScalarValue::TimestampMicrosecond(Some(v), Some("UTC".into()));
    let values = ParamValues::Map(
        [
            ("from".to_string(), ts(p.from_us.unwrap_or(i64::MIN / 2)).into()),
            ("to".to_string(), ts(p.to_us.unwrap_or(i64::MAX / 2)).into()),
            ("partner".to_string(), ScalarValue::Utf8(Some(p.partner.clone().unwrap_or_default())).into()),
            ("payer".to_string(), ScalarValue::Utf8(Some(p.payer.clone().unwrap_or_default())).into()),
        ]
        .into_iter()
        .collect(),
    );
    let df = ctx.sql(report.sql).await.map_err(df_err)?;
    let df = df.with_param_values(values).map_err(df_err)?;
    df.collect().await.map_err(df_err)
}

/// Batches as an aligned text table.
pub fn to_table(batches: &[RecordBatch]) -> PortResult<String> {
    datafusion::arrow::util::pretty::pretty_format_batches(batches)
        .map(|t| t.to_string())
        .map_err(|e| PortError::with_cause(ErrorKind::Internal, "format a report", e))
}

/// Batches as CSV with a header.
pub fn to_csv(batches: &[RecordBatch]) -> PortResult<String> {
    let mut out = Vec::new();
    {
        let mut w = datafusion::arrow::csv::WriterBuilder::new().with_header(true).build(&mut out);
        for b in batches {
            w.write(b).map_err(|e| PortError::with_cause(ErrorKind::Internal, "format a report", e))?;
        }
    }
    String::from_utf8(out).map_err(|e| PortError::with_cause(ErrorKind::Internal, "format a report", e))
}

/// Batches as a JSON array of objects.
pub fn to_json(batches: &[RecordBatch]) -> PortResult<serde_json::Value> {
    let mut out = Vec::new();
    {
        let mut w = datafusion::arrow::json::ArrayWriter::new(&mut out);
        for b in batches {
            w.write(b).map_err(|e| PortError::with_cause(ErrorKind::Internal, "format a report", e))?;
        }
        w.finish().map_err(|e| PortError::with_cause(ErrorKind::Internal, "format a report", e))?;
    }
    if out.is_empty() {
        return Ok(serde_json::Value::Array(Vec::new()));
    }
    serde_json::from_slice(&out).map_err(|e| PortError::with_cause(ErrorKind::Internal, "format a report", e))
}

pub use clearway_core::reports::parse_bound;

/// The report pack over one destination's files, as the API's port.
#[derive(Debug, Clone)]
pub struct Runner {
    dest: Destination,
}

impl Runner {
    pub fn new(dest: Destination) -> Self {
        Runner { dest }
    }
}

#[async_trait::async_trait]
impl clearway_core::reports::Reports for Runner {
    fn names(&self) -> Vec<&'static str> {
        names()
    }

    async fn run(
        &self,
        name: &str,
        params: &clearway_core::reports::ReportParams,
    ) -> PortResult<Option<serde_json::Value>> {
        let Some(report) = find(name) else { return Ok(None) };
        let ctx = session(&self.dest).await?;
        let p = Params {
            from_us: params.from_us,
            to_us: params.to_us,
            partner: params.partner.clone(),
            payer: params.payer.clone(),
        };
        let batches = run(&ctx, report, &p).await?;
        to_json(&batches).map(Some)
    }
}
