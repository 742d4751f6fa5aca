//! Clearway analytics: what the pipeline saw and did, as Parquet that
//! DataFusion, DuckDB, pyarrow, Athena and the Tuva Project read, and the
//! report pack over it.
//!
//! - [`feed`]: the change feed workers write (see [`clearway_core::changes`])
//!   sealed into numbered batches;
//! - [`derive`]: each event's rows, read back from the stored payload and
//!   acknowledgements, PHI tokenized or left out;
//! - [`export`]: batches to hive-partitioned Parquet, create-only, with a
//!   per-destination watermark moved by compare-and-set;
//! - [`sink`]: a local directory or S3 through `object_store`;
//! - [`report`]: the SQL reports (`analytics/reports/*.sql`) run by
//!   DataFusion over the exported files;
//! - [`tuva`]: the Tuva Project input layer as dated snapshots of final
//!   claims, built by DataFusion from the exported files.
//!
//! This is the only crate that depends on DataFusion; Arrow and Parquet are
//! used through its re-exports.

pub mod derive;
pub mod export;
pub mod feed;
pub mod report;
pub mod schema;
pub mod sink;
pub mod tuva;

pub use datafusion;
