//! FHIR R4 (JSON): reading Claims, CoverageEligibilityRequests and the
//! Bundles that carry them; validating them against R4 and the rules intake
//! needs; mapping them to the format-neutral [`clearway_core::Claim`] and
//! [`clearway_core::EligibilityRequest`]; and building the R4 responses
//! (ClaimResponse, CoverageEligibilityResponse, OperationOutcome).
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

mod build;
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

#[cfg(test)]
mod tests;
pub mod viewer;

pub use build::{
    ADJUDICATION_ERROR_SYSTEM, ADJUDICATION_SYSTEM, Adjudication, AdjudicationTotal, BENEFIT_CATEGORY_SYSTEM,
    BENEFIT_TYPE_SYSTEM, Benefit, BenefitItem, BenefitValue, BuildError, ClaimResponseSpec, EligibilityRejectReason,
    EligibilityResponseSpec, ISSUE_TYPE_SYSTEM, InsuranceSpec, ItemAdjudication, ProcessingError,
    X12_REJECT_REASON_SYSTEM, claim_response, coverage_eligibility_response,
};
pub use bundle::{BundleDoc, BundleEntry, EntryContent, EntryRequest};
pub use claim::{ClaimDoc, ClaimHeader};
pub use codes::{
    BundleType, CLAIM_TYPE_SYSTEM, ClaimUse, EligibilityPurpose, FinancialStatus, HttpVerb, ResponseOutcome,
    claim_kind_from_code, claim_type_code,
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
        Limits { max_input_bytes: 8 * 1024 * 1024, max_bundle_entries: 5_000, max_claim_items: 999, max_issues: 500 }
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

/// Fuzz entry point: reads arbitrary bytes as FHIR and, when they read,
/// exercises the outcome and response builders on the result. Must never
/// panic; cargo-fuzz and the proptests both drive it.
pub fn fuzz_fhir(data: &[u8]) {
    let limits = Limits { max_input_bytes: 1 << 20, max_bundle_entries: 200, max_claim_items: 50, max_issues: 100 };
    // The console's viewer: bounded, never a panic.
    let options = crate::x12::viewer::ViewOptions { reveal: false, max_segments: 200, interchange_notes: false };
    let v = viewer::view(data, options);
    assert!(v.segments.len() <= 200 && v.segments.len() <= v.total_segments);
    let doc = match read_resource(data, &limits) {
        Ok(doc) => doc,
        Err(e) => {
            let _ = operation_outcome(&[e.to_issue()]);
            return;
        }
    };
    let _ = doc.operation_outcome();
    let _ = doc.is_processable();
    let created = time::OffsetDateTime::UNIX_EPOCH;
    let exercise_claim = |c: &ClaimDoc| {
        if let Some(claim) = &c.claim {
            let _ = claim.summary();
        }
        for outcome in [ResponseOutcome::Complete, ResponseOutcome::Error] {
            if let Some(spec) = ClaimResponseSpec::for_claim(c, "r1", created, outcome) {
                let _ = claim_response(&spec).map(|v| v.to_string());
            }
        }
    };
    let exercise_request = |r: &EligibilityDoc| {
        if let Some(mut spec) = EligibilityResponseSpec::for_request(r, "e1", created, ResponseOutcome::Complete) {
            spec.errors.push(EligibilityRejectReason::SubscriberNotFound.coding());
            let _ = coverage_eligibility_response(&spec).map(|v| v.to_string());
        }
    };
    match &doc {
        FhirDocument::Claim(c) => exercise_claim(c),
        FhirDocument::CoverageEligibilityRequest(r) => exercise_request(r),
        FhirDocument::Bundle(b) => {
            b.claims().for_each(|(_, c)| exercise_claim(c));
            b.eligibility_requests().for_each(|(_, r)| exercise_request(r));
        }
        FhirDocument::Other { .. } => {}
    }
}
