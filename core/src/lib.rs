//! Clearway's shared vocabulary.
//!
//! Every crate speaks in these types: the format-neutral business documents
//! ([`Claim`], [`EligibilityRequest`], [`ClaimStatusRequest`], [`Enrollment`],
//! [`Remittance`]) that X12, FHIR and HL7 inputs are read into; the four
//! ports ([`ports`]) every external effect goes through, with their errors
//! ([`PortError`]: a kind plus a cause); identifiers that never carry PHI
//! ([`ids`]); and [`Sensitive`], the wrapper that keeps protected health
//! information out of `Debug` output and therefore out of logs, spans and
//! error messages.
//!
//! Nothing here performs I/O and nothing here depends on a vendor SDK.

pub mod access;
#[cfg(feature = "crypto")]
pub mod audit;
pub mod changes;
#[cfg(feature = "crypto")]
pub mod chunked;
#[cfg(feature = "crypto")]
pub mod codesets;
pub mod config;
#[cfg(feature = "conformance")]
pub mod conformance;
#[cfg(feature = "crypto")]
pub mod crypto;
#[cfg(feature = "crypto")]
pub mod dlq;
pub mod domain;
pub mod edits;
pub mod error;
pub mod feed;
pub mod ids;
#[cfg(feature = "crypto")]
pub mod keys;
pub mod limits;
pub mod outbox;
#[cfg(feature = "crypto")]
pub mod partners;
pub mod ports;
pub mod records;
pub mod reports;
#[cfg(feature = "crypto")]
pub mod roundtrip;
#[cfg(feature = "crypto")]
pub mod sealed;
pub mod sensitive;
pub mod systems;
pub mod telemetry;

pub use domain::*;
pub use error::{ErrorKind, PortError, PortResult};
pub use ids::{BlobKey, PartnerId, TransactionId};
pub use sensitive::Sensitive;
