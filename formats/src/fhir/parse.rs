//! Reading one FHIR JSON submission.

use super::bundle::{BundleDoc, read_bundle};
use super::claim::{ClaimDoc, read_claim};
use super::eligibility::{EligibilityDoc, read_eligibility};
use super::json::{StrictError, is_resource_type_name, parse_strict};
use super::outcome::{IssueType, OutcomeIssue, Severity, operation_outcome};
use super::{DocCtx, Limits};
use serde_json::Value;

/// Why a submission could not be read as a FHIR resource at all. Messages
/// carry positions, never content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FhirError {
    #[error("input is {size} bytes, above the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("malformed JSON at line {line}, column {column}")]
    MalformedJson { line: usize, column: usize },
    #[error("input ends early at line {line}, column {column}")]
    TruncatedJson { line: usize, column: usize },
    #[error("duplicate JSON object key at line {line}, column {column}")]
    DuplicateKey { line: usize, column: usize },
    #[error("input is not a JSON object")]
    NotAnObject,
    #[error("resourceType is missing")]
    MissingResourceType,
    #[error("resourceType is not a resource type name")]
    InvalidResourceType,
}

impl FhirError {
    /// The R4 issue type an OperationOutcome reports this error with.
    pub fn issue_type(&self) -> IssueType {
        match self {
            FhirError::TooLarge { .. } => IssueType::TooLong,
            FhirError::MalformedJson { .. }
            | FhirError::TruncatedJson { .. }
            | FhirError::DuplicateKey { .. }
            | FhirError::NotAnObject => IssueType::Structure,
            FhirError::MissingResourceType => IssueType::Required,
            FhirError::InvalidResourceType => IssueType::Value,
        }
    }

    /// This error as a `fatal` OperationOutcome issue.
    pub fn to_issue(&self) -> OutcomeIssue {
        let expression = match self {
            FhirError::MissingResourceType | FhirError::InvalidResourceType => "resourceType",
            _ => "",
        };
        OutcomeIssue::new(Severity::Fatal, self.issue_type(), expression, self.to_string())
    }
}

impl From<StrictError> for FhirError {
    fn from(e: StrictError) -> Self {
        match e {
            StrictError::Syntax { line, column, eof: true } => FhirError::TruncatedJson { line, column },
            StrictError::Syntax { line, column, .. } => FhirError::MalformedJson { line, column },
            StrictError::DuplicateKey { line, column } => FhirError::DuplicateKey { line, column },
        }
    }
}

/// A FHIR resource as read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // one per submission; boxing buys nothing
pub enum FhirDocument {
    Claim(ClaimDoc),
    CoverageEligibilityRequest(EligibilityDoc),
    Bundle(BundleDoc),
    /// A resource Clearway reads but does not process (ClaimResponse,
    /// ExplanationOfBenefit, Patient, ...). `resource_type` is a syntactically
    /// valid type name; it is not checked against the list of R4 resources.
    Other {
        resource_type: String,
    },
}

impl FhirDocument {
    pub fn resource_type(&self) -> &str {
        match self {
            FhirDocument::Claim(_) => "Claim",
            FhirDocument::CoverageEligibilityRequest(_) => "CoverageEligibilityRequest",
            FhirDocument::Bundle(_) => "Bundle",
            FhirDocument::Other { resource_type } => resource_type,
        }
    }

    /// Every finding (for a Bundle, its own and its entries').
    pub fn issues(&self) -> Vec<&OutcomeIssue> {
        match self {
            FhirDocument::Claim(c) => c.issues.iter().collect(),
            FhirDocument::CoverageEligibilityRequest(r) => r.issues.iter().collect(),
            FhirDocument::Bundle(b) => b.all_issues().collect(),
            FhirDocument::Other { .. } => Vec::new(),
        }
    }

    /// Whether Clearway can take the submission in: a Claim or request that
    /// mapped, or an intake Bundle with no error anywhere.
    pub fn is_processable(&self) -> bool {
        match self {
            FhirDocument::Claim(c) => c.claim.is_some(),
            FhirDocument::CoverageEligibilityRequest(r) => r.request.is_some(),
            FhirDocument::Bundle(b) => b.processable && !b.all_issues().any(|i| i.severity.blocks_processing()),
            FhirDocument::Other { .. } => false,
        }
    }

    /// An OperationOutcome of every finding (for `Other`: one issue saying the
    /// resource type is not processed).
    pub fn operation_outcome(&self) -> Value {
        match self {
            FhirDocument::Other { .. } => operation_outcome(&[OutcomeIssue::new(
                Severity::Error,
                IssueType::NotSupported,
                "",
                "this resource type is read but not processed by Clearway",
            )]),
            _ => {
                let issues: Vec<OutcomeIssue> = self.issues().into_iter().cloned().collect();
                operation_outcome(&issues)
            }
        }
    }
}

/// Reads one FHIR R4 JSON resource.
///
/// Fails only when the input is not a JSON object with a resource type
/// (or is larger than `limits.max_input_bytes`); every other problem is an
/// [`OutcomeIssue`] in the returned document. A UTF-8 byte-order mark is
/// skipped. Nesting depth is bounded by serde_json's recursion limit (128).
pub fn read_resource(input: &[u8], limits: &Limits) -> Result<FhirDocument, FhirError> {
    if input.len() > limits.max_input_bytes {
        return Err(FhirError::TooLarge { size: input.len(), limit: limits.max_input_bytes });
    }
    let input = input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input);
    let value = parse_strict(input)?;
    let Value::Object(o) = &value else {
        return Err(FhirError::NotAnObject);
    };
    let resource_type = match o.get("resourceType") {
        None => return Err(FhirError::MissingResourceType),
        Some(Value::String(t)) if is_resource_type_name(t) => t.as_str(),
        Some(_) => return Err(FhirError::InvalidResourceType),
    };
    let ctx = DocCtx { limits, bundle: None, full_url: None };
    Ok(match resource_type {
        "Claim" => FhirDocument::Claim(read_claim(o, "Claim", &ctx)),
        "CoverageEligibilityRequest" => {
            FhirDocument::CoverageEligibilityRequest(read_eligibility(o, "CoverageEligibilityRequest", &ctx))
        }
        "Bundle" => FhirDocument::Bundle(read_bundle(o, limits)),
        other => FhirDocument::Other { resource_type: other.to_owned() },
    })
}
