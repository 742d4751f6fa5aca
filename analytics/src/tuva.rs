//! Layer B: the Tuva Project input layer as **dated snapshots of final
//! claims**, built by DataFusion from the exported layer-A files:
//! `<root>/tuva/<table>/snapshot_date=YYYY-MM-DD/part-0.parquet` for Tuva's
//! `medical_claim`, `eligibility` and `pharmacy_claim`, with Tuva's exact
//! column names and types.
//!
//! - `medical_claim`: every submitted 837P/837I line (`tuva_medical_claim`)
//!   with its latest 835 adjudication: the latest remittance of the same
//!   tenant with the claim's patient control number token and charge
//!   (CLP01/CLP03 = CLM01/CLM02, as `reconciliation` matches) goes to the
//!   latest claim accepted with them (a resubmission, not both), the line
//!   to the remittance line with its procedure (SVC06 when the payer
//!   recoded it, else SVC01; a revenue code for a line that has only one)
//!   and charge (the n-th alike line to the n-th alike),
//!   giving `paid_date` (BPR16), `paid_amount` (SVC03), the patient's share
//!   by CARC in group PR (`deductible_amount` 1, `coinsurance_amount` 2,
//!   `copayment_amount` 3), and `allowed_amount` = `total_cost_amount` =
//!   paid + the patient's share. Lines with no adjudicated match keep these
//!   null.
//! - `eligibility`: the latest row per person, member, payer, plan and
//!   enrollment start (`tuva_eligibility`, latest `ingest_datetime`).
//! - `pharmacy_claim`: Tuva's schema, no rows until NCPDP claims reach the
//!   change feed.
//!
//! A snapshot is written whole, replacing that date's file (the snapshot is
//! derived, not a record: rewriting it loses nothing), so a reader of one
//! `snapshot_date` directory sees one complete table.

use crate::report;
use crate::schema::{self, TableDef, Ty};
use crate::sink::Destination;
use clearway_core::{ErrorKind, PortError, PortResult};
use datafusion::arrow::compute::cast;
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::parquet::arrow::ArrowWriter;
use futures::StreamExt;
use std::collections::BTreeMap;

/// The Tuva table names and the layer-A tables they are built from.
pub const TABLES: [(&str, &TableDef); 3] = [
    ("medical_claim", &schema::TUVA_MEDICAL_CLAIM),
    ("eligibility", &schema::TUVA_ELIGIBILITY),
    ("pharmacy_claim", &schema::TUVA_PHARMACY_CLAIM),
];

/// The `medical_claim` columns the adjudication fills, and their SQL.
const ADJUDICATED: [(&str, &str); 7] = [
    ("paid_date", "a.paid_date"),
    ("paid_amount", "a.paid"),
    ("allowed_amount", "a.paid + a.patient_share"),
    ("coinsurance_amount", "a.coinsurance"),
    ("copayment_amount", "a.copayment"),
    ("deductible_amount", "a.deductible"),
    ("total_cost_amount", "a.paid + a.patient_share"),
];

/// The latest adjudication of each submitted line.
const ADJUDICATION: &str = "
WITH rc AS (
    SELECT tenant_id, remit_key, clp01_pcn_token, clp03_charge, bpr16_payment_date,
           row_number() OVER (PARTITION BY tenant_id, clp01_pcn_token, clp03_charge
                              ORDER BY received_at DESC, export_seq DESC, remit_key DESC) AS rn
    FROM remit_claim
),
c AS (
    SELECT tenant_id, claim_key, pcn_token, total_charge,
           row_number() OVER (PARTITION BY tenant_id, pcn_token, total_charge
                              ORDER BY received_at DESC, claim_key DESC) AS rn
    FROM claim
    WHERE status = 'accepted'
),
cm AS (
    SELECT c.claim_key, r.remit_key, r.bpr16_payment_date
    FROM c JOIN rc r
      ON c.tenant_id = r.tenant_id AND c.pcn_token = r.clp01_pcn_token AND c.total_charge = r.clp03_charge
    WHERE r.rn = 1 AND c.rn = 1
),
cl AS (
    SELECT claim_key, line_number, coalesce(procedure_code, revenue_code) AS code, charge,
           row_number() OVER (PARTITION BY claim_key, coalesce(procedure_code, revenue_code), charge
                              ORDER BY line_number) AS k
    FROM claim_line
),
rl AS (
    SELECT remit_key, line_number, coalesce(original_procedure_code, procedure_code) AS code, svc02_charge, svc03_paid,
           row_number() OVER (PARTITION BY remit_key, coalesce(original_procedure_code, procedure_code), svc02_charge
                              ORDER BY line_number) AS k
    FROM remit_line
),
ra AS (
    SELECT remit_key, line_number,
           sum(CASE WHEN group_code = 'PR' AND reason_code = '1' THEN amount ELSE 0 END) AS deductible,
           sum(CASE WHEN group_code = 'PR' AND reason_code = '2' THEN amount ELSE 0 END) AS coinsurance,
           sum(CASE WHEN group_code = 'PR' AND reason_code = '3' THEN amount ELSE 0 END) AS copayment,
           sum(CASE WHEN group_code = 'PR' THEN amount ELSE 0 END) AS patient_share
    FROM remit_adjustment
    WHERE line_number IS NOT NULL
    GROUP BY 1, 2
),
a AS (
    SELECT cl.claim_key, cl.line_number, cm.bpr16_payment_date AS paid_date,
           CAST(rl.svc03_paid AS DOUBLE) AS paid,
           CAST(coalesce(ra.deductible, 0) AS DOUBLE) AS deductible,
           CAST(coalesce(ra.coinsurance, 0) AS DOUBLE) AS coinsurance,
           CAST(coalesce(ra.copayment, 0) AS DOUBLE) AS copayment,
           CAST(coalesce(ra.patient_share, 0) AS DOUBLE) AS patient_share
    FROM cl
    JOIN cm ON cl.claim_key = cm.claim_key
    JOIN rl ON rl.remit_key = cm.remit_key AND rl.code = cl.code
           AND rl.svc02_charge = cl.charge AND rl.k = cl.k
    LEFT JOIN ra ON ra.remit_key = rl.remit_key AND ra.line_number = rl.line_number
)";

fn sql_type(t: Ty) -> &'static str {
    match t {
        Ty::Str => "VARCHAR",
        Ty::I32 => "INT",
        Ty::I64 => "BIGINT",
        Ty::F64 => "DOUBLE",
        Ty::Bool => "BOOLEAN",
        Ty::Money => "DECIMAL(12, 2)",
        Ty::Ts | Ty::Naive => "TIMESTAMP",
        Ty::Date => "DATE",
    }
}

/// The SQL of one snapshot table.
fn sql(name: &str) -> String {
    match name {
        "medical_claim" => {
            let cols: Vec<String> = schema::TUVA_MEDICAL_CLAIM
                .columns
                .iter()
                .map(|(c, t)| match ADJUDICATED.iter().find(|(n, _)| n == c) {
                    Some((_, expr)) => format!("CAST({expr} AS {}) AS {c}", sql_type(*t)),
                    None => format!("s.{c}"),
                })
                .collect();
            format!(
                "{ADJUDICATION}\nSELECT {}\nFROM tuva_medical_claim s\nLEFT JOIN a ON s.claim_id = a.claim_key AND s.claim_line_number = a.line_number",
                cols.join(", ")
            )
        }
        "eligibility" => {
            let cols: Vec<&str> = schema::TUVA_ELIGIBILITY.columns.iter().map(|c| c.0).collect();
            format!(
                "SELECT {cols} FROM (SELECT *, row_number() OVER (PARTITION BY person_id, member_id, payer, plan, enrollment_start_date ORDER BY ingest_datetime DESC, file_name DESC, enrollment_end_date DESC NULLS FIRST, subscriber_id) AS rn FROM tuva_eligibility) WHERE rn = 1 ORDER BY person_id, member_id, payer, plan, enrollment_start_date",
                cols = cols.join(", ")
            )
        }
        _ => {
            let cols: Vec<&str> = schema::TUVA_PHARMACY_CLAIM.columns.iter().map(|c| c.0).collect();
            format!("SELECT {} FROM tuva_pharmacy_claim", cols.join(", "))
        }
    }
}

fn df_err(what: &'static str) -> impl Fn(datafusion::error::DataFusionError) -> PortError {
    move |e| PortError::with_cause(ErrorKind::Internal, what, e)
}

fn arrow_err(what: &'static str) -> impl Fn(datafusion::arrow::error::ArrowError) -> PortError {
    move |e| PortError::with_cause(ErrorKind::Internal, what, e)
}

/// The relative path of a table's snapshot of `date`.
pub fn snapshot_path(table: &str, date: time::Date) -> String {
    format!("tuva/{table}/snapshot_date={date}/part-0.parquet")
}

/// What a snapshot wrote: rows per Tuva table, and the medical claim lines
/// with an adjudication.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SnapshotReport {
    pub date: String,
    pub rows: BTreeMap<String, u64>,
    pub adjudicated_lines: u64,
}

/// Builds the snapshot of `date` from `dest`'s layer-A files and writes it
/// there, replacing that date's files.
pub async fn snapshot(dest: &Destination, date: time::Date) -> PortResult<SnapshotReport> {
    let ctx = report::session(dest).await?;
    let mut out = SnapshotReport { date: date.to_string(), ..Default::default() };
    for (name, def) in TABLES {
        // Streamed: each batch DataFusion produces is aligned to Tuva's
        // schema and written into the file as it comes (memory holds the
        // compressed file, not the table).
        let mut stream = ctx
            .sql(&sql(name))
            .await
            .map_err(df_err("plan a Tuva snapshot"))?
            .execute_stream()
            .await
            .map_err(df_err("build a Tuva snapshot"))?;
        let schema = def.schema();
        let mut file = Vec::new();
        let mut w = ArrowWriter::try_new(&mut file, schema.clone(), Some(crate::export::writer_properties()?))
            .map_err(|e| PortError::with_cause(ErrorKind::Internal, "open a parquet writer", e))?;
        let (mut rows, mut paid) = (0u64, 0u64);
        while let Some(b) = stream.next().await {
            let b = b.map_err(df_err("build a Tuva snapshot"))?;
            let cols = schema
                .fields()
                .iter()
                .zip(b.columns())
                .map(|(f, c)| cast(c, f.data_type()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(arrow_err("align a Tuva snapshot"))?;
            let options = RecordBatchOptions::new().with_row_count(Some(b.num_rows()));
            let aligned = RecordBatch::try_new_with_options(schema.clone(), cols, &options)
                .map_err(arrow_err("align a Tuva snapshot"))?;
            if name == "medical_claim" {
                paid += aligned.column_by_name("paid_amount").map_or(0, |c| (c.len() - c.null_count()) as u64);
            }
            rows += aligned.num_rows() as u64;
            w.write(&aligned).map_err(|e| PortError::with_cause(ErrorKind::Internal, "write parquet", e))?;
        }
        w.close().map_err(|e| PortError::with_cause(ErrorKind::Internal, "close parquet", e))?;
        if name == "medical_claim" {
            out.adjudicated_lines = paid;
        }
        out.rows.insert(name.to_string(), rows);
        dest.replace(&snapshot_path(name, date), bytes::Bytes::from(file)).await?;
    }
    Ok(out)
}
