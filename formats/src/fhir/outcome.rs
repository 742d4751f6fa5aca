//! Findings about a FHIR submission, shaped as `OperationOutcome.issue`.
//!
//! Every finding names *where* (a FHIRPath expression such as
//! `Claim.insurance[0].coverage`) and *what rule* (an R4 issue type code), and
//! says why in words chosen by this crate. Values from the input never appear
//! in a finding: they are protected health information.

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};
use serde_json::{Value, json};

/// `OperationOutcome.issue.severity` (R4 value set `issue-severity`, required).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The submission cannot be read at all.
    Fatal,
    /// The submission breaks a rule; it is not processed.
    Error,
    /// Processed, but something is questionable.
    Warning,
    /// Processed; a note for the submitter or the operator.
    Information,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Fatal => "fatal",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Information => "information",
        }
    }

    /// `true` for `fatal` and `error`: the resource is not processed.
    pub fn blocks_processing(self) -> bool {
        matches!(self, Severity::Fatal | Severity::Error)
    }
}

/// `OperationOutcome.issue.code` (R4 value set `issue-type`, required).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum IssueType {
    Invalid,
    Structure,
    Required,
    Value,
    Invariant,
    Security,
    Login,
    Unknown,
    Expired,
    Forbidden,
    Suppressed,
    Processing,
    NotSupported,
    Duplicate,
    MultipleMatches,
    NotFound,
    Deleted,
    TooLong,
    CodeInvalid,
    Extension,
    TooCostly,
    BusinessRule,
    Conflict,
    Transient,
    LockError,
    NoStore,
    Exception,
    Timeout,
    Incomplete,
    Throttled,
    Informational,
}

impl IssueType {
    /// The code as written in FHIR JSON (`not-supported`, `code-invalid`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            IssueType::Invalid => "invalid",
            IssueType::Structure => "structure",
            IssueType::Required => "required",
            IssueType::Value => "value",
            IssueType::Invariant => "invariant",
            IssueType::Security => "security",
            IssueType::Login => "login",
            IssueType::Unknown => "unknown",
            IssueType::Expired => "expired",
            IssueType::Forbidden => "forbidden",
            IssueType::Suppressed => "suppressed",
            IssueType::Processing => "processing",
            IssueType::NotSupported => "not-supported",
            IssueType::Duplicate => "duplicate",
            IssueType::MultipleMatches => "multiple-matches",
            IssueType::NotFound => "not-found",
            IssueType::Deleted => "deleted",
            IssueType::TooLong => "too-long",
            IssueType::CodeInvalid => "code-invalid",
            IssueType::Extension => "extension",
            IssueType::TooCostly => "too-costly",
            IssueType::BusinessRule => "business-rule",
            IssueType::Conflict => "conflict",
            IssueType::Transient => "transient",
            IssueType::LockError => "lock-error",
            IssueType::NoStore => "no-store",
            IssueType::Exception => "exception",
            IssueType::Timeout => "timeout",
            IssueType::Incomplete => "incomplete",
            IssueType::Throttled => "throttled",
            IssueType::Informational => "informational",
        }
    }
}

/// One finding. Serializes as an R4 `OperationOutcome.issue`:
/// `{"severity", "code", "diagnostics", "expression": [..]}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutcomeIssue {
    pub severity: Severity,
    pub code: IssueType,
    /// A FHIRPath expression locating the element (`Claim.item[0].sequence`);
    /// empty when the finding is about the submission as a whole.
    pub expression: String,
    /// Why, in this crate's words; never contains input values.
    pub diagnostics: String,
}

impl OutcomeIssue {
    pub fn new(
        severity: Severity,
        code: IssueType,
        expression: impl Into<String>,
        diagnostics: impl Into<String>,
    ) -> Self {
        OutcomeIssue { severity, code, expression: expression.into(), diagnostics: diagnostics.into() }
    }
}

impl Serialize for OutcomeIssue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let fields = 2 + usize::from(!self.diagnostics.is_empty()) + usize::from(!self.expression.is_empty());
        let mut s = serializer.serialize_struct("OperationOutcomeIssue", fields)?;
        s.serialize_field("severity", &self.severity)?;
        s.serialize_field("code", &self.code)?;
        if !self.diagnostics.is_empty() {
            s.serialize_field("diagnostics", &self.diagnostics)?;
        }
        if !self.expression.is_empty() {
            s.serialize_field("expression", &[&self.expression])?;
        }
        s.end()
    }
}

/// `true` when any issue is `error` or `fatal`.
pub fn has_errors(issues: &[OutcomeIssue]) -> bool {
    issues.iter().any(|i| i.severity.blocks_processing())
}

/// An R4 `OperationOutcome` listing `issues`. R4 requires at least one issue,
/// so an empty list yields a single `information` issue saying all is well.
pub fn operation_outcome(issues: &[OutcomeIssue]) -> Value {
    let issue: Vec<Value> = if issues.is_empty() {
        vec![json!({
            "severity": "information",
            "code": "informational",
            "diagnostics": "all ok",
        })]
    } else {
        issues.iter().map(|i| serde_json::to_value(i).unwrap_or(Value::Null)).collect()
    };
    json!({
        "resourceType": "OperationOutcome",
        "issue": issue,
    })
}

/// Collects issues for one document, up to a cap (a hostile input could
/// otherwise produce one finding per byte).
#[derive(Debug)]
pub(crate) struct Issues {
    list: Vec<OutcomeIssue>,
    cap: usize,
    dropped: usize,
    dropped_errors: bool,
}

impl Issues {
    pub(crate) fn new(cap: usize) -> Self {
        Issues { list: Vec::new(), cap: cap.max(1), dropped: 0, dropped_errors: false }
    }

    pub(crate) fn push(&mut self, issue: OutcomeIssue) {
        if self.list.len() < self.cap {
            self.list.push(issue);
        } else {
            self.dropped += 1;
            self.dropped_errors |= issue.severity.blocks_processing();
        }
    }

    pub(crate) fn error(&mut self, code: IssueType, expr: impl Into<String>, diag: &str) {
        self.push(OutcomeIssue::new(Severity::Error, code, expr, diag));
    }

    pub(crate) fn warning(&mut self, code: IssueType, expr: impl Into<String>, diag: &str) {
        self.push(OutcomeIssue::new(Severity::Warning, code, expr, diag));
    }

    pub(crate) fn info(&mut self, code: IssueType, expr: impl Into<String>, diag: &str) {
        self.push(OutcomeIssue::new(Severity::Information, code, expr, diag));
    }

    pub(crate) fn fatal(&mut self, code: IssueType, expr: impl Into<String>, diag: &str) {
        self.push(OutcomeIssue::new(Severity::Fatal, code, expr, diag));
    }

    /// Whether an error or fatal issue has been recorded (or dropped: the cap
    /// only ever drops issues after it is full, and a full list of warnings
    /// followed by a dropped error must still block processing).
    pub(crate) fn has_errors(&self) -> bool {
        has_errors(&self.list) || self.dropped_errors
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    pub(crate) fn into_vec(mut self) -> Vec<OutcomeIssue> {
        if self.dropped > 0 {
            self.list.push(OutcomeIssue::new(
                Severity::Information,
                IssueType::TooCostly,
                "",
                "further issues were found but not listed",
            ));
        }
        self.list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_serializes_with_fhir_field_names() {
        let i = OutcomeIssue::new(
            Severity::Error,
            IssueType::BusinessRule,
            "Claim.insurance[0].coverage",
            "coverage is required",
        );
        let v = serde_json::to_value(&i).unwrap_or_default();
        assert_eq!(
            v,
            json!({
                "severity": "error",
                "code": "business-rule",
                "diagnostics": "coverage is required",
                "expression": ["Claim.insurance[0].coverage"],
            })
        );
    }

    #[test]
    fn issue_type_serde_matches_as_str() {
        for t in [
            IssueType::NotSupported,
            IssueType::TooLong,
            IssueType::CodeInvalid,
            IssueType::MultipleMatches,
            IssueType::NotFound,
            IssueType::LockError,
            IssueType::NoStore,
            IssueType::TooCostly,
            IssueType::Informational,
        ] {
            assert_eq!(serde_json::to_value(t).ok(), Some(json!(t.as_str())));
        }
    }

    #[test]
    fn empty_outcome_has_one_information_issue() {
        let oo = operation_outcome(&[]);
        assert_eq!(oo["resourceType"], "OperationOutcome");
        assert_eq!(oo["issue"].as_array().map(Vec::len), Some(1));
        assert_eq!(oo["issue"][0]["severity"], "information");
        assert_eq!(oo["issue"][0]["code"], "informational");
    }

    #[test]
    fn expression_omitted_when_empty() {
        let oo = operation_outcome(&[OutcomeIssue::new(Severity::Fatal, IssueType::Structure, "", "not json")]);
        assert!(oo["issue"][0].get("expression").is_none());
        assert_eq!(oo["issue"][0]["severity"], "fatal");
    }

    #[test]
    fn cap_drops_but_remembers_errors() {
        let mut issues = Issues::new(1);
        issues.warning(IssueType::Structure, "Claim.x", "w");
        assert!(!issues.has_errors());
        issues.error(IssueType::Required, "Claim.status", "e");
        assert!(issues.has_errors());
        let v = issues.into_vec();
        assert_eq!(v.len(), 2);
        assert_eq!(v[1].code, IssueType::TooCostly);
    }
}
