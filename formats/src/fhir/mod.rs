//! FHIR R4 (JSON): reading Claims, CoverageEligibilityRequests and the
//! Bundles that carry them; validating them against R4 and the rules intake
//! needs; mapping them to the format-neutral [`clearway_core::Claim`] and
//! [`clearway_core::EligibilityRequest`]; and building the R4 responses
//! (OperationOutcome here; ClaimResponse and CoverageEligibilityResponse to come).
//!
//! Why hand-written readers over `serde_json::Value` rather than the `fhir`
//! crate or derived structs: the full R4 model is a very heavy build and
//! accepts unknown elements silently, and serde's derived errors quote the
//! offending value (PHI) and stop at the first problem. Here every problem is
//! an [`OutcomeIssue`] located by a FHIRPath expression, described in this
//! crate's words only, and reading continues so a submitter learns about all
//! of them at once.
//!
//! Input is untrusted: the reader is bounded by [`Limits`] (input bytes,
//! Bundle entries, items per claim, findings per document), nesting depth is
//! bounded by serde_json's recursion limit, duplicate JSON keys are refused,
//! amounts use checked arithmetic, and nothing panics.
//!
//! ```
//! use clearway_formats::fhir::{FhirDocument, Limits, read_resource};
//!
//! let input = br#"{"resourceType": "Patient", "id": "p1"}"#;
//! let doc = read_resource(input, &Limits::default()).unwrap();
//! assert!(matches!(doc, FhirDocument::Other { .. }));
//! ```

mod bundle;
mod claim;
mod codes;
mod common;
mod eligibility;
mod json;
mod model;
mod outcome;
mod parse;
mod primitives;
mod resolve;

pub use bundle::{BundleDoc, BundleEntry, EntryContent, EntryRequest};
pub use claim::{ClaimDoc, ClaimHeader};
pub use codes::{
    BundleType, CLAIM_TYPE_SYSTEM, ClaimUse, EligibilityPurpose, FinancialStatus, HttpVerb,
    ResponseOutcome, claim_kind_from_code, claim_type_code,
};
pub use common::NPI_SYSTEM;
pub use eligibility::{EligibilityDoc, EligibilityHeader};
pub use model::{Coding, Identifier, Reference};
pub use outcome::{IssueType, OutcomeIssue, Severity, has_errors, operation_outcome};
pub use parse::{FhirDocument, FhirError, read_resource};

/// Bounds on what one submission may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Input larger than this is refused before parsing.
    pub max_input_bytes: usize,
    /// A Bundle with more entries is refused (`fatal`, `too-long`).
    pub max_bundle_entries: usize,
    /// A Claim (or eligibility request) with more items is refused
    /// (`error`, `too-long`). 999 is the most an X12 837I allows.
    pub max_claim_items: usize,
    /// Findings kept per document; beyond it one `information` issue says
    /// more were found.
    pub max_issues: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_input_bytes: 8 * 1024 * 1024,
            max_bundle_entries: 5_000,
            max_claim_items: 999,
            max_issues: 500,
        }
    }
}

/// What a resource reader needs to know about where the resource sits.
#[derive(Debug)]
pub(crate) struct DocCtx<'v> {
    pub limits: &'v Limits,
    pub bundle: Option<&'v resolve::BundleIndex<'v>>,
    /// The entry's `fullUrl`, for a resource in a Bundle.
    pub full_url: Option<&'v str>,
}
