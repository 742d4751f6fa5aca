//! Front-end claim edits: the checks a clearinghouse runs on each claim of
//! a transaction set that passed SNIP 1-2, reported claim by claim in the
//! 277CA (never in the 999, so one provider's typo never rejects the other
//! claims of a set).
//!
//! The catalog (ids, SNIP types, default severities, STC codes, sources)
//! is [`clearway_core::edits::CATALOG`]; this module holds the rules. [`check`]
//! runs every edit the [`Policy`] leaves on over one claim and returns its
//! findings; [`decide`] turns the rejecting ones into the 277CA decision.
//! Edits that need state (duplicates) or routing (unknown payer) are decided
//! by the workers and enter through [`finding`].
//!
//! Pure: the date the claim was received and the code sets are passed in.
//! Messages never contain a value from the claim.

pub mod codesets;

use crate::x12::build::{ClaimDecision, Rejection};
use crate::x12::validate::valid_npi;
pub use clearway_core::edits::{CATALOG, EditDef, Level, Policy, Severity, Stc, find};
use clearway_core::{Claim, ClaimKind, DateRange, ProviderRole, ServiceLine};
use codesets::{CodeSets, CodeSystem, Lookup};
use rust_decimal::Decimal;
use serde::Serialize;
use time::Date;

/// What the edits need besides the claim.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The day the claim was received (dates of service after it are in
    /// the future).
    pub received: Date,
    pub codes: &'a CodeSets,
    pub policy: &'a Policy,
}

/// One edit that fired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub edit: &'static str,
    pub severity: Severity,
    /// The service line (LX01) it is about, when the edit reports on lines.
    pub line: Option<u32>,
    pub stc: Stc,
    /// What is wrong, without any value from the claim.
    pub message: String,
}

/// A finding of the catalog edit `id` with the policy's severity; `None`
/// when the policy turns it off (or the id is unknown).
pub fn finding(policy: &Policy, id: &str, line: Option<u32>, message: impl Into<String>) -> Option<Finding> {
    finding_at(policy, clearway_core::edits::index_of(id)?, line, message)
}

/// [`finding`] for the edit at `index` in the catalog.
fn finding_at(policy: &Policy, index: usize, line: Option<u32>, message: impl Into<String>) -> Option<Finding> {
    let def = CATALOG.get(index)?;
    let severity = policy.severity_at(index);
    (severity != Severity::Off).then(|| Finding {
        edit: def.id,
        severity,
        line: match def.level {
            Level::Claim => None,
            _ => line,
        },
        stc: def.stc,
        message: message.into(),
    })
}

struct Run<'a> {
    cx: &'a Context<'a>,
    /// The date the claim's header codes are judged on ([`claim_date`]),
    /// worked out once.
    on: Option<Date>,
    out: Vec<Finding>,
}

/// The catalog position of an edit id, computed at compile time.
macro_rules! id {
    ($id:literal) => {
        const { clearway_core::edits::at($id) }
    };
}

impl Run<'_> {
    fn on(&self, edit: usize) -> bool {
        self.cx.policy.severity_at(edit) != Severity::Off
    }

    fn add(&mut self, edit: usize, line: Option<u32>, message: impl Into<String>) {
        if let Some(f) = finding_at(self.cx.policy, edit, line, message)
            && !self.out.iter().any(|o| o.edit == f.edit && o.line == f.line && o.stc == f.stc)
        {
            self.out.push(f);
        }
    }

    fn add_stc(&mut self, edit: usize, line: Option<u32>, stc: Stc, message: impl Into<String>) {
        let before = self.out.len();
        self.add(edit, line, message);
        if let Some(f) = self.out.get_mut(before) {
            f.stc = stc;
        }
    }
}

/// Runs every edit the policy leaves on over one claim.
pub fn check(claim: &Claim, cx: &Context<'_>) -> Vec<Finding> {
    let mut run = Run { cx, on: claim_date(claim), out: Vec::new() };
    balance(claim, &mut run);
    npis(claim, &mut run);
    pointers(claim, &mut run);
    diagnoses(claim, &mut run);
    procedures(claim, &mut run);
    lines(claim, &mut run);
    place_of_service(claim, &mut run);
    dates(claim, &mut run);
    frequency(claim, &mut run);
    run.out
}

/// The 277CA decision for a claim's findings: accepted unless one rejects.
/// Claim-level statuses first (in catalog order, once each), then each
/// rejected line with up to three of its statuses.
pub fn decide(findings: &[Finding]) -> ClaimDecision {
    let rejecting: Vec<&Finding> = findings.iter().filter(|f| f.severity == Severity::Reject).collect();
    if rejecting.is_empty() {
        return ClaimDecision::Accepted;
    }
    let mut r = Rejection::default();
    for f in &rejecting {
        match f.line {
            None => {
                if !r.claim.contains(&f.stc) {
                    r.claim.push(f.stc);
                }
            }
            Some(n) => match r.lines.iter_mut().find(|(l, _)| *l == n) {
                Some((_, stcs)) => {
                    if !stcs.contains(&f.stc) && stcs.len() < 3 {
                        stcs.push(f.stc);
                    }
                }
                None => r.lines.push((n, vec![f.stc])),
            },
        }
    }
    let first = rejecting.iter().find(|f| f.line.is_none()).unwrap_or(&rejecting[0]);
    r.message = Some(truncate(&first.message, 264));
    ClaimDecision::Rejected(r)
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// [`check`] then [`decide`].
pub fn judge(claim: &Claim, cx: &Context<'_>) -> ClaimDecision {
    decide(&check(claim, cx))
}

/// The date the claim's header codes are judged on: an institutional
/// claim's statement "through" date (the discharge for an inpatient stay),
/// else the first date of service.
fn claim_date(claim: &Claim) -> Option<Date> {
    let lines = claim.service_lines.iter().filter_map(|l| l.service_date).reduce(DateRange::union);
    match claim.kind {
        ClaimKind::Institutional => claim.statement_dates.map(|d| d.to).or(lines.map(|d| d.to)),
        _ => lines.map(|d| d.from).or(claim.statement_dates.map(|d| d.from)),
    }
}

/// A line's date of service, else the claim's (`claim_on`).
fn line_date(line: &ServiceLine, claim_on: Option<Date>) -> Option<Date> {
    line.service_date.map(|d| d.from).or(claim_on)
}

fn balance(claim: &Claim, run: &mut Run<'_>) {
    if claim.service_lines.is_empty() || !run.on(id!("balance.claim_total")) {
        return;
    }
    let lines: Decimal = claim.service_lines.iter().map(|l| l.charge).sum();
    if lines != claim.total_charge {
        run.add(id!("balance.claim_total"), None, "total claim charge does not equal the sum of the line charges");
    }
}

fn npi_edit(role: ProviderRole) -> usize {
    match role {
        ProviderRole::Billing => id!("npi.billing"),
        ProviderRole::Referring => id!("npi.referring"),
        ProviderRole::Rendering => id!("npi.rendering"),
        ProviderRole::ServiceFacility => id!("npi.service_facility"),
        ProviderRole::Supervising => id!("npi.supervising"),
        ProviderRole::Attending => id!("npi.attending"),
        ProviderRole::Operating => id!("npi.operating"),
        ProviderRole::OtherOperating => id!("npi.other_operating"),
        ProviderRole::Ordering => id!("npi.ordering"),
        ProviderRole::PurchasedService => id!("npi.purchased_service"),
        ProviderRole::AssistantSurgeon => id!("npi.assistant_surgeon"),
    }
}

fn npis(claim: &Claim, run: &mut Run<'_>) {
    if claim.billing_provider_npi.is_none() {
        run.add(id!("npi.billing"), None, "billing provider NPI is missing");
    }
    for p in &claim.providers {
        let Some(npi) = p.npi.as_deref() else { continue };
        if valid_npi(npi.as_bytes()) {
            continue;
        }
        let what = if npi.len() == 10 && npi.bytes().all(|b| b.is_ascii_digit()) {
            "fails its check digit"
        } else {
            "is not ten digits"
        };
        let role = p.role.as_str().replace('_', " ");
        run.add(npi_edit(p.role), p.line, format!("{role} provider NPI {what}"));
    }
}

fn pointers(claim: &Claim, run: &mut Run<'_>) {
    if !run.on(id!("dx.pointer")) {
        return;
    }
    let n = claim.diagnoses.expose().len();
    for l in &claim.service_lines {
        if l.diagnosis_pointers.iter().any(|&p| p == 0 || usize::from(p) > n) {
            run.add(id!("dx.pointer"), Some(l.line_number), "a diagnosis pointer names a position with no diagnosis");
        }
    }
}

fn lookup_message(what: &str, system: &str, l: Lookup) -> String {
    match l {
        Lookup::NotBillable => format!("{what} is an {system} category, not a billable code"),
        _ => format!("{what} is not an {system} code in force on the date of service"),
    }
}

fn diagnoses(claim: &Claim, run: &mut Run<'_>) {
    let Some(on) = run.on else { return };
    if !run.cx.codes.has(CodeSystem::Icd10Cm) {
        return;
    }
    for d in claim.diagnoses.expose() {
        let (edit, what) = match d.qualifier.as_str() {
            "ABK" => (id!("icd10cm.principal"), "the principal diagnosis"),
            "ABF" | "ABN" => (id!("icd10cm.other"), "a diagnosis"),
            "ABJ" => (id!("icd10cm.admitting"), "the admitting diagnosis"),
            "APR" => (id!("icd10cm.reason_for_visit"), "a reason-for-visit diagnosis"),
            _ => continue, // ICD-9 qualifiers: the guide's code lists decide
        };
        if !run.on(edit) {
            continue;
        }
        match run.cx.codes.lookup(CodeSystem::Icd10Cm, &d.code, on) {
            l @ (Lookup::Invalid | Lookup::NotBillable) => run.add(edit, None, lookup_message(what, "ICD-10-CM", l)),
            Lookup::Valid | Lookup::NoRelease => {}
        }
    }
}

fn procedures(claim: &Claim, run: &mut Run<'_>) {
    if claim.kind != ClaimKind::Institutional || !run.cx.codes.has(CodeSystem::Icd10Pcs) {
        return;
    }
    let header = run.on;
    for p in claim.procedures.expose() {
        let (edit, what) = match p.qualifier.as_str() {
            "BBR" => (id!("icd10pcs.principal"), "the principal procedure"),
            "BBQ" => (id!("icd10pcs.other"), "a procedure"),
            _ => continue,
        };
        let Some(on) = p.date.or(header) else { continue };
        if !run.on(edit) {
            continue;
        }
        match run.cx.codes.lookup(CodeSystem::Icd10Pcs, &p.code, on) {
            l @ (Lookup::Invalid | Lookup::NotBillable) => run.add(edit, None, lookup_message(what, "ICD-10-PCS", l)),
            Lookup::Valid | Lookup::NoRelease => {}
        }
    }
}

/// Level II HCPCS: a letter other than D (CDT) and four digits.
fn is_level_two(code: &[u8]) -> bool {
    code.len() == 5 && code[0].is_ascii_uppercase() && code[0] != b'D' && code[1..].iter().all(u8::is_ascii_digit)
}

/// CPT by form only: five digits, or four digits and F (Category II), T
/// (Category III), U (proprietary laboratory analyses) or M (multianalyte).
fn is_cpt_form(code: &[u8]) -> bool {
    code.len() == 5
        && code[..4].iter().all(u8::is_ascii_digit)
        && matches!(code[4], b'0'..=b'9' | b'F' | b'T' | b'U' | b'M')
}

/// CDT by form only: D and four digits.
fn is_cdt_form(code: &[u8]) -> bool {
    code.len() == 5 && code[0] == b'D' && code[1..].iter().all(u8::is_ascii_digit)
}

fn lines(claim: &Claim, run: &mut Run<'_>) {
    let (hcpcs_on, form_on) = (run.on(id!("hcpcs.valid")), run.on(id!("procedure.form")));
    for l in &claim.service_lines {
        let code = l.procedure_code.as_bytes();
        if code.is_empty() {
            continue;
        }
        match l.procedure_qualifier.as_deref() {
            Some("HC") => {
                if is_level_two(code) {
                    if let (true, Some(on)) = (hcpcs_on, line_date(l, run.on))
                        && run.cx.codes.lookup(CodeSystem::Hcpcs, &l.procedure_code, on) == Lookup::Invalid
                    {
                        run.add(
                            id!("hcpcs.valid"),
                            Some(l.line_number),
                            "HCPCS Level II code is not in force on the line's date of service",
                        );
                    }
                } else if form_on && !is_cpt_form(code) && !is_cdt_form(code) {
                    run.add(
                        id!("procedure.form"),
                        Some(l.line_number),
                        "procedure code is not five characters of the CPT or HCPCS form",
                    );
                }
            }
            Some("AD") if form_on && !is_cdt_form(code) => {
                run.add(id!("procedure.form"), Some(l.line_number), "dental procedure code is not D and four digits");
            }
            _ => {}
        }
    }
}

fn place_of_service(claim: &Claim, run: &mut Run<'_>) {
    if claim.kind == ClaimKind::Institutional || !run.on(id!("pos.valid")) {
        return;
    }
    let valid = |code: &str, on: Date| run.cx.codes.lookup(CodeSystem::Pos, code, on) != Lookup::Invalid;
    if let (Some(pos), Some(on)) = (claim.facility_code.as_deref(), run.on)
        && !valid(pos, on)
    {
        run.add(id!("pos.valid"), None, "the claim's place of service is not a CMS place of service code in force");
    }
    let bad: Vec<u32> = claim
        .service_lines
        .iter()
        .filter(|l| match (l.place_of_service.as_deref(), line_date(l, run.on)) {
            (Some(pos), Some(on)) => !valid(pos, on),
            _ => false,
        })
        .map(|l| l.line_number)
        .collect();
    for n in bad {
        run.add(id!("pos.valid"), Some(n), "the line's place of service is not a CMS place of service code in force");
    }
}

fn dates(claim: &Claim, run: &mut Run<'_>) {
    let received = run.cx.received;
    if run.on(id!("date.future")) {
        if claim.statement_dates.is_some_and(|d| d.to > received) {
            run.add(id!("date.future"), None, "the statement period ends after the claim was received");
        }
        for l in &claim.service_lines {
            if l.service_date.is_some_and(|d| d.to > received) {
                run.add(id!("date.future"), Some(l.line_number), "a date of service is after the claim was received");
            }
        }
    }
    if run.on(id!("date.before_birth"))
        && let Some(birth) = *claim.patient.birth_date.expose()
    {
        // The patient is the subscriber (IL) or a dependent (QC).
        let entity = if claim.patient == claim.subscriber { "IL" } else { "QC" };
        let stc = Stc::new("A7", "158", Some(entity));
        if claim.statement_dates.is_some_and(|d| d.from < birth) {
            run.add_stc(id!("date.before_birth"), None, stc, "the statement period starts before the patient's birth");
        }
        for l in &claim.service_lines {
            if l.service_date.is_some_and(|d| d.from < birth) {
                run.add_stc(
                    id!("date.before_birth"),
                    Some(l.line_number),
                    stc,
                    "a date of service is before the patient's birth",
                );
            }
        }
    }
    if claim.kind == ClaimKind::Institutional
        && run.on(id!("date.statement_period"))
        && let Some(period) = claim.statement_dates
    {
        for l in &claim.service_lines {
            if l.service_date.is_some_and(|d| d.from < period.from || d.to > period.to) {
                run.add(
                    id!("date.statement_period"),
                    Some(l.line_number),
                    "a line's date of service is outside the claim's statement period",
                );
            }
        }
    }
}

fn frequency(claim: &Claim, run: &mut Run<'_>) {
    if matches!(claim.frequency_code.as_deref(), Some("7" | "8")) && claim.payer_claim_control_number.is_none() {
        run.add(
            id!("frequency.payer_claim_number"),
            None,
            "a replacement or void claim must carry the payer's claim control number (REF*F8)",
        );
    }
}

#[cfg(test)]
mod tests;
