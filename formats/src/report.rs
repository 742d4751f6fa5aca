//! Validation results as one flat, format-neutral list of issues, and the
//! streaming report `clearway validate` prints.
//!
//! Every issue carries its standard code as `<kind>:<code>` (`TA1:001`,
//! `AK9:5`, `IK5:4`, `IK3:3`, `IK4:7`, `HL7:101`, `FHIR:required`), where it
//! is (segment, position in the set, loop, element), and a message that
//! never contains a value from the input.

use crate::edits::codesets::CodeSets;
use crate::edits::{Finding, Policy};
use crate::x12::IsaHeader;
use crate::x12::analyze::{Fatal, GroupReport, InterchangeReport, SetHeader, SetReport, Sink};
use crate::x12::build::ClaimDecision;
use crate::x12::build::element_position;
use crate::x12::codes::SegmentCode;
use crate::x12::views::Document;
use serde::Serialize;
use std::io::{self, Write};
use time::Date;

/// How bad an issue is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One problem found in an input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Issue {
    pub severity: Severity,
    /// `<kind>:<code>`.
    pub code: String,
    pub segment: Option<String>,
    /// Position of the segment in its transaction set (ST = 1), or in the message.
    pub position: Option<u32>,
    #[serde(rename = "loop")]
    pub loop_id: Option<String>,
    /// `element[:component[:repetition]]` (X12), `PID-3.1` (HL7) or a FHIRPath (FHIR).
    pub element: Option<String>,
    pub message: String,
    /// ST02 (X12) or MSH-10 (HL7) of the unit the issue belongs to.
    pub transaction_set: Option<String>,
    /// ISA13 for X12 issues.
    pub interchange: Option<String>,
}

impl Issue {
    /// An error with a code and a message, at no position.
    pub fn error(code: String, message: String) -> Self {
        Issue::new(code, message)
    }

    fn new(code: String, message: String) -> Self {
        Issue {
            severity: Severity::Error,
            code,
            segment: None,
            position: None,
            loop_id: None,
            element: None,
            message,
            transaction_set: None,
            interchange: None,
        }
    }
}

/// Issues of one interchange's envelope (TA1 note codes).
pub fn interchange_issues(r: &InterchangeReport) -> Vec<Issue> {
    r.findings
        .iter()
        .map(|f| {
            let mut i = Issue::new(format!("TA1:{}", f.code), f.message.clone());
            i.segment = Some(f.segment.to_string());
            i.element = f.element.map(|e| e.to_string());
            i.interchange = Some(r.control_number.clone());
            if !f.code.rejects() {
                i.severity = Severity::Warning;
            }
            i
        })
        .collect()
}

/// Issues of one functional group (AK9 codes).
pub fn group_issues(r: &GroupReport, interchange: Option<&str>) -> Vec<Issue> {
    r.findings
        .iter()
        .map(|f| {
            let mut i = Issue::new(format!("AK9:{}", f.code), f.message.clone());
            i.segment = Some("GS".into());
            i.interchange = interchange.map(str::to_string);
            i
        })
        .collect()
}

/// Issues of one transaction set (IK5, IK3 and IK4 codes).
pub fn set_issues(r: &SetReport, interchange: Option<&str>) -> Vec<Issue> {
    let set = Some(r.header.control_number.clone());
    let mut out = Vec::new();
    for f in &r.findings {
        if matches!(
            f.code,
            crate::x12::codes::SetCode::SegmentsInError | crate::x12::codes::SetCode::ImplementationSegmentsInError
        ) {
            continue; // summarised by the segment issues themselves
        }
        let mut i = Issue::new(format!("IK5:{}", f.code), f.message.clone());
        i.segment = Some("ST".into());
        i.position = Some(1);
        i.transaction_set = set.clone();
        i.interchange = interchange.map(str::to_string);
        out.push(i);
    }
    for e in &r.segment_errors {
        let base = |code: String, message: String| {
            let mut i = Issue::new(code, message);
            i.segment = Some(e.segment.clone());
            i.position = Some(e.position);
            i.loop_id = e.loop_id.clone();
            i.transaction_set = set.clone();
            i.interchange = interchange.map(str::to_string);
            i
        };
        if e.code != SegmentCode::ElementErrors || e.elements.is_empty() {
            out.push(base(format!("IK3:{}", e.code), e.message.clone()));
        }
        for el in &e.elements {
            let mut i = base(format!("IK4:{}", el.code), el.message.clone());
            i.element = Some(element_position(&el.position));
            out.push(i);
        }
    }
    if r.dropped_errors > 0 {
        let mut i =
            Issue::new("IK5:5".into(), format!("{} further segment errors were not recorded", r.dropped_errors));
        i.transaction_set = set;
        out.push(i);
    }
    out
}

/// The issue for an input that could not be read to its end.
pub fn fatal_issue(f: &Fatal) -> Issue {
    let mut i = Issue::new(format!("TA1:{}", f.code), f.message.clone());
    i.segment = Some("ISA".into());
    i
}

/// At most this many issues are listed; the rest are counted.
pub const MAX_LISTED_ISSUES: usize = 10_000;

#[derive(Serialize)]
struct ClaimLine<'a> {
    patient_control_number: &'a str,
    total_charge: String,
    /// `accepted` or `rejected` by the claim edits (277CA); absent when the
    /// set itself was rejected (999).
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'static str>,
    /// The first 277CA status of a rejected claim (`A7:562:85`).
    #[serde(skip_serializing_if = "Option::is_none")]
    stc: Option<String>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    edits: &'a [Finding],
}

/// A claim edit's finding as an issue (`edit:<id>`), naming the claim by
/// its position (`claim`, 1-based) and the line by its number, never by a
/// value.
pub fn edit_issue(f: &Finding, claim: usize, set: Option<&str>) -> Issue {
    let at = match f.line {
        Some(l) => format!("claim {claim} line {l}"),
        None => format!("claim {claim}"),
    };
    let mut i = Issue::new(format!("edit:{}", f.edit), format!("{at}: {} (277CA {})", f.message, f.stc));
    if f.severity != crate::edits::Severity::Reject {
        i.severity = Severity::Warning;
    }
    i.transaction_set = set.map(str::to_string);
    i
}

/// What the claim edits said of one claim.
#[derive(Debug)]
struct JudgedClaim {
    patient_control_number: String,
    total_charge: String,
    decision: ClaimDecision,
    findings: Vec<Finding>,
}

#[derive(Serialize)]
struct InterchangeLine {
    control_number: String,
    sender_id: String,
    receiver_id: String,
    accepted: bool,
    ta105: String,
}

/// Streams the `clearway validate` report of an X12 input: as JSON (one
/// object, written as the input is read) or as text lines.
#[derive(Debug)]
pub struct X12Report<W: Write> {
    out: W,
    json: bool,
    started: bool,
    sets_written: usize,
    claims: Vec<JudgedClaim>,
    /// The code sets and the day claims count as received, for the claim
    /// edits (none: no edit needing a code set or a date runs).
    edits: Option<(CodeSets, Date)>,
    documents: usize,
    interchange: Option<String>,
    interchanges: Vec<InterchangeReportLine>,
    issues: Vec<Issue>,
    omitted: usize,
    all_accepted: bool,
    counts: (usize, usize, usize, usize),
    error: Option<io::Error>,
}

#[derive(Debug)]
struct InterchangeReportLine(String, String, String, bool, String);

impl<W: Write> X12Report<W> {
    /// Runs the claim edits (default severities) on the claims of accepted
    /// 837 sets, with these code sets, as if received on `received`.
    pub fn with_edits(mut self, codes: CodeSets, received: Date) -> Self {
        self.edits = Some((codes, received));
        self
    }

    pub fn new(out: W, json: bool) -> Self {
        X12Report {
            out,
            json,
            started: false,
            sets_written: 0,
            claims: vec![],
            edits: None,
            documents: 0,
            interchange: None,
            interchanges: vec![],
            issues: vec![],
            omitted: 0,
            all_accepted: true,
            counts: (0, 0, 0, 0),
            error: None,
        }
    }

    fn write(&mut self, f: impl FnOnce(&mut W) -> io::Result<()>) {
        if self.error.is_none()
            && let Err(e) = f(&mut self.out)
        {
            self.error = Some(e);
        }
    }

    fn start(&mut self) {
        if !self.started {
            self.started = true;
            if self.json {
                self.write(|o| o.write_all(b"{\"format\":\"x12\",\"transaction_sets\":["));
            }
        }
    }

    fn add_issues(&mut self, issues: Vec<Issue>) {
        for i in issues {
            // A claim rejected by an edit leaves its set accepted (999).
            if i.severity == Severity::Error && !i.code.starts_with("edit:") {
                self.all_accepted = false;
            }
            if !self.json {
                let line = text_line(&i);
                self.write(|o| writeln!(o, "{line}"));
            }
            if self.issues.len() < MAX_LISTED_ISSUES {
                self.issues.push(i);
            } else {
                self.omitted += 1;
            }
        }
    }

    /// Completes the report; returns whether the input was accepted.
    pub fn finish(mut self, fatal: Option<&Fatal>) -> io::Result<bool> {
        self.start();
        if let Some(f) = fatal {
            self.add_issues(vec![fatal_issue(f)]);
            self.all_accepted = false;
        }
        if self.counts.0 == 0 {
            self.all_accepted = false;
        }
        let accepted = self.all_accepted;
        if self.json {
            let interchanges: Vec<InterchangeLine> = self
                .interchanges
                .drain(..)
                .map(|l| InterchangeLine {
                    control_number: l.0,
                    sender_id: l.1,
                    receiver_id: l.2,
                    accepted: l.3,
                    ta105: l.4,
                })
                .collect();
            let tail = serde_json::json!({
                "interchanges": interchanges,
                "groups": self.counts.1,
                "accepted": accepted,
                "issues": self.issues,
                "issues_omitted": self.omitted,
            });
            let tail = serde_json::to_string(&tail).map_err(io::Error::other)?;
            // Splice the tail's members into the open object.
            let members = tail.trim_start_matches('{');
            self.write(|o| {
                o.write_all(b"],")?;
                o.write_all(members.as_bytes())?;
                o.write_all(b"\n")
            });
        } else {
            let (i, g, s, a) = self.counts;
            let verdict = if accepted { "ACCEPTED" } else { "REJECTED" };
            self.write(|o| {
                writeln!(o, "x12: {i} interchange(s), {g} group(s), {s} transaction set(s) ({a} accepted): {verdict}")
            });
        }
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.out.flush()?;
        Ok(accepted)
    }
}

fn text_line(i: &Issue) -> String {
    let mut s = format!("{:?} {}", i.severity, i.code).to_lowercase();
    if let Some(seg) = &i.segment {
        s.push_str(&format!(" {seg}"));
        if let Some(p) = i.position {
            s.push_str(&format!("@{p}"));
        }
    }
    if let Some(l) = &i.loop_id {
        s.push_str(&format!(" loop {l}"));
    }
    if let Some(e) = &i.element {
        s.push_str(&format!(" element {e}"));
    }
    if let Some(t) = &i.transaction_set {
        s.push_str(&format!(" set {t}"));
    }
    format!("{s}: {}", i.message)
}

impl<W: Write> Sink for X12Report<W> {
    fn interchange_start(&mut self, isa: &IsaHeader) {
        self.start();
        self.interchange = Some(isa.control_number().to_string());
    }

    fn set_start(&mut self, _st: &SetHeader) {
        self.claims.clear();
        self.documents = 0;
    }

    fn document(&mut self, doc: Document) {
        self.documents += 1;
        if let Document::Claim(c) = doc {
            let findings = match &self.edits {
                Some((codes, received)) => {
                    let policy = Policy::default();
                    crate::edits::check(&c, &crate::edits::Context { received: *received, codes, policy: &policy })
                }
                None => vec![],
            };
            self.claims.push(JudgedClaim {
                patient_control_number: c.patient_control_number.expose().clone(),
                total_charge: c.total_charge.to_string(),
                decision: crate::edits::decide(&findings),
                findings,
            });
        }
    }

    fn set_end(&mut self, r: SetReport) {
        self.counts.2 += 1;
        if r.accepted() {
            self.counts.3 += 1;
        }
        let mut issues = set_issues(&r, self.interchange.as_deref());
        let judged = r.accepted() && self.edits.is_some();
        if judged {
            for (n, c) in self.claims.iter().enumerate() {
                issues.extend(c.findings.iter().map(|f| edit_issue(f, n + 1, Some(&r.header.control_number))));
            }
        }
        if self.json {
            let claims: Vec<ClaimLine<'_>> = self
                .claims
                .iter()
                .map(|c| ClaimLine {
                    patient_control_number: &c.patient_control_number,
                    total_charge: c.total_charge.clone(),
                    status: judged.then_some(if c.decision.is_accepted() { "accepted" } else { "rejected" }),
                    stc: c.decision.status().filter(|_| judged).map(|s| s.to_string()),
                    edits: if judged { &c.findings } else { &[] },
                })
                .collect();
            let obj = serde_json::json!({
                "type": r.header.id,
                "implementation": r.implementation,
                "control_number": r.header.control_number,
                "accepted": r.accepted(),
                "validated": r.validated,
                "segments": r.segment_count,
                "documents": self.documents,
                "claims": claims,
                "issue_count": issues.len(),
            });
            let comma = self.sets_written > 0;
            self.sets_written += 1;
            self.write(|o| {
                if comma {
                    o.write_all(b",")?;
                }
                serde_json::to_writer(&mut *o, &obj).map_err(io::Error::other)
            });
        }
        if !r.accepted() {
            self.all_accepted = false;
        }
        self.add_issues(issues);
    }

    fn group_end(&mut self, r: GroupReport) {
        self.counts.1 += 1;
        if r.ack != crate::x12::codes::AckCode::Accepted {
            self.all_accepted = false;
        }
        let issues = group_issues(&r, self.interchange.as_deref());
        self.add_issues(issues);
    }

    fn interchange_end(&mut self, r: InterchangeReport) {
        self.counts.0 += 1;
        if !r.accepted() {
            self.all_accepted = false;
        }
        self.interchanges.push(InterchangeReportLine(
            r.control_number.clone(),
            r.sender_id.clone(),
            r.receiver_id.clone(),
            r.accepted(),
            r.note_code().code().to_string(),
        ));
        let issues = interchange_issues(&r);
        self.add_issues(issues);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::x12::{AnalyzeOptions, analyze_into, synth};

    #[test]
    fn json_report_is_one_valid_object() {
        let mut input = vec![];
        synth::write(&mut input, synth::Kind::Professional837, 3, 1).unwrap();
        let mut out = vec![];
        let mut r = X12Report::new(&mut out, true);
        let totals = analyze_into(&input[..], &AnalyzeOptions::default(), &mut r);
        assert!(r.finish(totals.fatal.as_ref()).unwrap());
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["format"], "x12");
        assert_eq!(v["accepted"], true);
        assert_eq!(v["transaction_sets"][0]["claims"].as_array().map(Vec::len), Some(3));
        assert_eq!(v["interchanges"].as_array().map(Vec::len), Some(1));
    }

    #[test]
    fn broken_input_reports_rejection_with_codes() {
        let mut input = vec![];
        synth::write(&mut input, synth::Kind::Professional837, 1, 1).unwrap();
        let text = String::from_utf8(input).unwrap().replace("SE*", "SE*9");
        let mut out = vec![];
        let mut r = X12Report::new(&mut out, true);
        let totals = analyze_into(text.as_bytes(), &AnalyzeOptions::default(), &mut r);
        assert!(!r.finish(totals.fatal.as_ref()).unwrap());
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let codes: Vec<&str> = v["issues"].as_array().unwrap().iter().filter_map(|i| i["code"].as_str()).collect();
        assert!(codes.contains(&"IK5:4"), "{codes:?}");
    }
}

// ------------------------------------------------------------------ HL7 --

/// Issues of one HL7 message, as `HL7:<table 0357 code>`.
pub fn hl7_issues(control_id: Option<&str>, issues: &[crate::hl7::Hl7Issue]) -> Vec<Issue> {
    issues
        .iter()
        .map(|h| {
            let mut i = Issue::new(format!("HL7:{}", h.code), h.message.clone());
            if h.severity != crate::hl7::Severity::Error {
                i.severity = Severity::Warning;
            }
            i.segment = Some(h.segment.clone());
            i.position = u32::try_from(h.segment_sequence).ok();
            i.element = h.field.map(|f| match h.component {
                Some(c) => format!("{}-{f}.{c}", h.segment),
                None => format!("{}-{f}", h.segment),
            });
            i.transaction_set = control_id.map(str::to_string);
            i
        })
        .collect()
}

/// The `clearway validate` report of HL7 v2 input: returns whether every
/// message is acceptable (no error-level issue) and the report JSON.
pub fn hl7_report(input: &[u8]) -> (bool, serde_json::Value) {
    use crate::hl7;
    let mut issues = Vec::new();
    let mut messages = Vec::new();
    let mut accepted = true;
    match hl7::split(input, &hl7::Limits::default()) {
        Ok(batch) => {
            if let Err(e) = batch.verify() {
                let mut i = Issue::new("HL7:100".into(), e.to_string());
                i.segment = Some("BTS".into());
                issues.push(i);
                accepted = false;
            }
            for m in batch.messages() {
                let found = hl7::validate(m);
                let ok = !hl7::validate::has_errors(&found);
                accepted &= ok;
                let control = m.control_id().map(|c| c.into_owned());
                let t = m.message_type();
                let kind = if t.trigger.is_empty() { t.code.to_string() } else { format!("{}^{}", t.code, t.trigger) };
                messages.push(serde_json::json!({
                    "type": kind,
                    "control_number": control,
                    "version": m.version().map(|v| v.into_owned()),
                    "accepted": ok,
                    "issue_count": found.len(),
                }));
                issues.extend(hl7_issues(control.as_deref(), &found));
            }
            if batch.message_count() == 0 {
                accepted = false;
                issues.push(Issue::new("HL7:100".into(), "no message found".into()));
            }
        }
        Err(e) => {
            accepted = false;
            let mut i = Issue::new("HL7:100".into(), e.to_string());
            i.segment = Some("MSH".into());
            issues.push(i);
        }
    }
    let v = serde_json::json!({
        "format": "hl7",
        "accepted": accepted,
        "messages": messages,
        "issues": issues,
    });
    (accepted, v)
}

// ----------------------------------------------------------------- FHIR --

/// Issues of a FHIR document, as `FHIR:<issue type>` with the FHIRPath.
pub fn fhir_issues(issues: &[&crate::fhir::OutcomeIssue]) -> Vec<Issue> {
    use crate::fhir::Severity as F;
    issues
        .iter()
        .map(|o| {
            let code =
                serde_json::to_value(o.code).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
            let mut i = Issue::new(format!("FHIR:{code}"), o.diagnostics.clone());
            if matches!(o.severity, F::Warning | F::Information) {
                i.severity = Severity::Warning;
            }
            i.element = Some(o.expression.clone());
            i
        })
        .collect()
}

/// The `clearway validate` report of FHIR JSON input.
pub fn fhir_report(input: &[u8]) -> (bool, serde_json::Value) {
    use crate::fhir::{self, FhirDocument};
    let (accepted, resources, issues) = match fhir::read_resource(input, &fhir::Limits::default()) {
        Ok(doc) => {
            let found: Vec<&fhir::OutcomeIssue> =
                doc.issues().into_iter().filter(|i| i.severity != fhir::Severity::Information).collect();
            let claims: Vec<serde_json::Value> = match &doc {
                FhirDocument::Claim(c) => c.claim.iter().map(claim_line).collect(),
                FhirDocument::Bundle(b) => b.claims().filter_map(|(_, c)| c.claim.as_ref()).map(claim_line).collect(),
                _ => vec![],
            };
            let ok = doc.is_processable();
            let r = serde_json::json!({
                "type": doc.resource_type(),
                "processable": ok,
                "claims": claims,
            });
            (ok, vec![r], fhir_issues(&found))
        }
        Err(e) => {
            let issue = e.to_issue();
            (false, vec![], fhir_issues(&[&issue]))
        }
    };
    let v = serde_json::json!({
        "format": "fhir",
        "accepted": accepted,
        "resources": resources,
        "issues": issues,
    });
    (accepted, v)
}

/// `clearway validate` for NCPDP D.0: the reject codes the standard's
/// checks find (a request), or the statuses a response carries. Several
/// transmissions may be given one per line (as `clearway gen b1` writes
/// them).
pub fn ncpdp_report(input: &[u8]) -> (bool, serde_json::Value) {
    use crate::ncpdp::{self, answer, validate};
    let issue = |n: usize, code: &str, group: usize| {
        let mut i =
            Issue::new(format!("NCPDP:{code}"), validate::reject_meaning(code).unwrap_or("reject code").to_string());
        i.segment = (group > 0).then(|| format!("transaction {group}"));
        i.transaction_set = Some((n + 1).to_string());
        i
    };
    let (mut accepted, mut transmissions, mut issues) = (true, Vec::new(), Vec::new());
    let lines = input.split(|b| *b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l)).filter(|l| !l.is_empty());
    for (n, line) in lines.enumerate() {
        match ncpdp::read(line, &ncpdp::Limits::default()) {
            Ok(t) => {
                transmissions.push(match answer::outcomes(&t) {
                    Some((header, outcomes)) => serde_json::json!({
                        "kind": "response",
                        "transactionCode": t.transaction_code(),
                        "headerStatus": header,
                        "outcomes": outcomes,
                    }),
                    None => serde_json::json!({
                        "kind": "request",
                        "transactionCode": t.transaction_code(),
                        "transactions": t.groups(),
                    }),
                });
                if validate::request_header(&t).is_some() {
                    for r in validate::validate(&t) {
                        accepted = false;
                        issues.push(issue(n, r.code, r.group));
                    }
                }
            }
            Err(e) => {
                accepted = false;
                for (k, c) in validate::read_rejects(&e).into_iter().enumerate() {
                    let mut i = issue(n, c, 0);
                    if k == 0 {
                        i.message = format!("{}: {e}", i.message);
                    }
                    issues.push(i);
                }
            }
        }
    }
    if transmissions.is_empty() && issues.is_empty() {
        accepted = false;
        issues.push(issue(0, "R8", 0));
    }
    let v = serde_json::json!({
        "format": "ncpdp",
        "accepted": accepted,
        "transmissions": transmissions,
        "issues": issues,
    });
    (accepted, v)
}

fn claim_line(c: &clearway_core::Claim) -> serde_json::Value {
    serde_json::json!({
        "patient_control_number": c.patient_control_number.expose(),
        "total_charge": c.total_charge.to_string(),
    })
}

/// Text lines for a JSON report's issues and verdict.
pub fn text_report(format: &str, accepted: bool, report: &serde_json::Value) -> String {
    let mut out = String::new();
    if let Some(list) = report["issues"].as_array() {
        for i in list {
            if let Ok(issue) = serde_json::from_value::<IssueLine>(i.clone()) {
                out.push_str(&issue.line());
                out.push('\n');
            }
        }
    }
    let verdict = if accepted { "ACCEPTED" } else { "REJECTED" };
    out.push_str(&format!("{format}: {verdict}\n"));
    out
}

#[derive(serde::Deserialize)]
struct IssueLine {
    severity: String,
    code: String,
    segment: Option<String>,
    element: Option<String>,
    message: String,
}

impl IssueLine {
    fn line(&self) -> String {
        let mut s = format!("{} {}", self.severity, self.code.to_lowercase());
        if let Some(seg) = &self.segment {
            s.push_str(&format!(" {seg}"));
        }
        if let Some(e) = &self.element {
            s.push_str(&format!(" {e}"));
        }
        format!("{s}: {}", self.message)
    }
}
