//! Clearway's standards core: ASC X12 005010, HL7 v2 and FHIR R4.
//!
//! This crate is pure: it reads bytes it is given and writes bytes it is asked
//! for. No file, socket or clock is touched (callers pass the time in), which
//! is what lets the same code run in the HTTP intake, the workers, the fast
//! path, the command line, the benchmarks and the fuzzers.
//!
//! Input is untrusted. Nothing here panics on input, every buffer is bounded,
//! and every finding carries the standard code that the acknowledgement for
//! it needs (TA105, IK3/IK4/IK5/AK9, HL7 table 0357, FHIR issue type), and a
//! message that never contains the offending value, because values are PHI.

pub mod detect;
pub mod edits;
pub mod fhir;
pub mod hl7;
pub mod ncpdp;
pub mod report;
pub mod x12;
