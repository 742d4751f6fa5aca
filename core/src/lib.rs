//! Clearway's shared vocabulary.
//!
//! Every crate speaks in these types: the format-neutral business documents
//! ([`Claim`], [`EligibilityRequest`], [`ClaimStatusRequest`], [`Enrollment`],
//! [`Remittance`]) that X12, FHIR and HL7 inputs are read into, and
//! [`Sensitive`], the wrapper that keeps protected health information out of
//! `Debug` output and therefore out of logs, spans and error messages.
//!
//! Nothing here performs I/O and nothing here depends on a vendor SDK.

pub mod domain;
pub mod sensitive;

pub use domain::*;
pub use sensitive::Sensitive;
