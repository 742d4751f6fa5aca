//! The catalog of front-end claim edits: what a clearinghouse checks, claim
//! by claim, after a transaction set has passed SNIP 1-2 (the 999), and
//! reports in the 277CA.
//!
//! Each edit has a stable id, its WEDI SNIP type, a default severity, the
//! 277CA status it produces (STC01: category, status and, where the status
//! names an entity, the entity code) and where its rule comes from. The
//! rules themselves are in `clearway-formats` (`edits`), which is pure; the
//! catalog lives here so configuration can be validated against it.
//! `docs/specs/edits.md` is this table in prose.

use serde::{Deserialize, Serialize};

/// What an edit does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The claim is rejected in the 277CA and not routed.
    Reject,
    /// Recorded in the transaction's issues; the claim goes on.
    Warn,
    /// Not run.
    Off,
}

impl Severity {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "reject" => Some(Severity::Reject),
            "warn" => Some(Severity::Warn),
            "off" => Some(Severity::Off),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Reject => "reject",
            Severity::Warn => "warn",
            Severity::Off => "off",
        }
    }
}

/// One 277CA status composite (STC01, STC10 or STC11): claim status
/// category (X12 code list 507), claim status (508) and entity (98).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Stc {
    pub category: &'static str,
    pub status: &'static str,
    pub entity: Option<&'static str>,
}

impl Stc {
    pub const fn new(category: &'static str, status: &'static str, entity: Option<&'static str>) -> Self {
        Stc { category, status, entity }
    }
}

impl std::fmt::Display for Stc {
    /// `A7:562:85`, or `A7:400` without an entity.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.category, self.status)?;
        if let Some(e) = self.entity {
            write!(f, ":{e}")?;
        }
        Ok(())
    }
}

/// Where an edit's finding is reported: on the claim (2200D), or on the
/// service line that caused it (2220D, the claim rejected with it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Claim,
    Line,
    /// On the line when it is about one line, else on the claim.
    Either,
}

/// One edit of the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EditDef {
    /// Stable id, `<family>.<name>` (configuration keys use it).
    pub id: &'static str,
    /// WEDI SNIP type: 3 balancing, 4 inter-segment situations, 5 external
    /// code sets, 7 trading-partner rules.
    pub snip: u8,
    pub severity: Severity,
    pub stc: Stc,
    pub level: Level,
    /// Where the rule comes from.
    pub source: &'static str,
    /// What it checks, in a line.
    pub summary: &'static str,
}

const fn edit(
    id: &'static str,
    snip: u8,
    stc: Stc,
    level: Level,
    source: &'static str,
    summary: &'static str,
) -> EditDef {
    EditDef { id, snip, severity: Severity::Reject, stc, level, source, summary }
}

const fn npi(id: &'static str, entity: &'static str, level: Level, source: &'static str) -> EditDef {
    edit(
        id,
        5,
        Stc::new("A7", "562", Some(entity)),
        level,
        source,
        "the provider's NPI has ten digits and a valid check digit (Luhn over 80840 + NPI)",
    )
}

/// The catalog, in the order edits run and are reported.
pub static CATALOG: &[EditDef] = DEFS;

const DEFS: &[EditDef] = &[
    edit(
        "balance.claim_total",
        3,
        Stc::new("A7", "400", None),
        Level::Claim,
        "X12 RFI 1294; TR3 2300 CLM02 note",
        "CLM02 equals the sum of the service line charges (SV102 / SV203 / SV302)",
    ),
    npi("npi.billing", "85", Level::Claim, "CMS NPI check digit (69 FR 3434); 2010AA NM109"),
    npi("npi.referring", "DN", Level::Either, "CMS NPI check digit; 837P 2310A/2420F, 837I 2310F/2420D, 837D 2310A"),
    npi(
        "npi.rendering",
        "82",
        Level::Either,
        "CMS NPI check digit; 837P 2310B/2420A, 837I 2310D/2420C, 837D 2310B/2420A",
    ),
    npi("npi.service_facility", "77", Level::Either, "CMS NPI check digit; 837P 2310C/2420C, 837I 2310E, 837D 2310C"),
    npi("npi.supervising", "DQ", Level::Either, "CMS NPI check digit; 837P 2310D/2420D, 837D 2420C"),
    npi("npi.attending", "71", Level::Claim, "CMS NPI check digit; 837I 2310A"),
    npi("npi.operating", "72", Level::Either, "CMS NPI check digit; 837I 2310B/2420A"),
    // X214 has no ZZ or DD entity code: 73 (other physician) is the nearest.
    npi("npi.other_operating", "73", Level::Either, "CMS NPI check digit; 837I 2310C/2420B"),
    npi("npi.ordering", "DK", Level::Line, "CMS NPI check digit; 837P 2420E"),
    npi("npi.purchased_service", "QB", Level::Line, "CMS NPI check digit; 837P 2420B"),
    npi("npi.assistant_surgeon", "73", Level::Either, "CMS NPI check digit; 837D 2310D/2420B"),
    edit(
        "dx.pointer",
        4,
        Stc::new("A7", "477", None),
        Level::Line,
        "837P SV107 / 837D SV311: each pointer names an HI position that holds a diagnosis",
        "every diagnosis pointer of a line points at a diagnosis present on the claim",
    ),
    edit(
        "icd10cm.principal",
        5,
        Stc::new("A7", "254", None),
        Level::Claim,
        "CMS ICD-10-CM (fiscal year in force on the date of service)",
        "the principal diagnosis (ABK) is a valid, billable ICD-10-CM code on the date of service",
    ),
    edit(
        "icd10cm.other",
        5,
        Stc::new("A7", "255", None),
        Level::Claim,
        "CMS ICD-10-CM (fiscal year in force on the date of service)",
        "other and external-cause diagnoses (ABF, ABN) are valid, billable ICD-10-CM codes on the date of service",
    ),
    edit(
        "icd10cm.admitting",
        5,
        Stc::new("A7", "232", None),
        Level::Claim,
        "CMS ICD-10-CM (fiscal year in force on the date of service)",
        "the admitting diagnosis (ABJ) is a valid, billable ICD-10-CM code on the date of service",
    ),
    edit(
        "icd10cm.reason_for_visit",
        5,
        Stc::new("A7", "673", None),
        Level::Claim,
        "CMS ICD-10-CM (fiscal year in force on the date of service)",
        "patient reason-for-visit diagnoses (APR) are valid, billable ICD-10-CM codes on the date of service",
    ),
    edit(
        "icd10pcs.principal",
        5,
        Stc::new("A7", "465", None),
        Level::Claim,
        "CMS ICD-10-PCS (fiscal year in force on the procedure date)",
        "the principal procedure (BBR) of an 837I is a valid ICD-10-PCS code on its date",
    ),
    edit(
        "icd10pcs.other",
        5,
        Stc::new("A7", "490", None),
        Level::Claim,
        "CMS ICD-10-PCS (fiscal year in force on the procedure date)",
        "other procedures (BBQ) of an 837I are valid ICD-10-PCS codes on their dates",
    ),
    edit(
        "hcpcs.valid",
        5,
        Stc::new("A7", "507", None),
        Level::Line,
        "CMS HCPCS Level II (quarterly file: added, effective and termination dates)",
        "a Level II HCPCS code (a letter then four digits, qualifier HC) is valid on the line's date of service",
    ),
    edit(
        "procedure.form",
        5,
        Stc::new("A7", "454", None),
        Level::Line,
        "CPT is AMA's: only its form is checked (five characters; Category II/III end in F/T); CDT starts with D",
        "a procedure code has the form of its code system (CPT/HCPCS: 5 alphanumerics; CDT: D and four digits)",
    ),
    edit(
        "pos.valid",
        5,
        Stc::new("A7", "249", None),
        Level::Either,
        "CMS Place of Service code set (dated)",
        "CLM05-1 (837P/837D) and SV105 name a place of service in force on the date of service",
    ),
    edit(
        "date.future",
        7,
        Stc::new("A7", "187", None),
        Level::Either,
        "clearinghouse rule: service is not billed before it happens",
        "no date of service (claim or line) is after the day the claim was received",
    ),
    edit(
        "date.before_birth",
        7,
        Stc::new("A7", "158", Some("QC")),
        Level::Either,
        "clearinghouse rule: DMG02 of the patient against the dates of service",
        "no date of service is before the patient's date of birth",
    ),
    edit(
        "date.statement_period",
        4,
        Stc::new("A7", "187", None),
        Level::Line,
        "837I TR3: 2400 DTP*472 within 2300 DTP*434",
        "every service line date of an 837I lies within the claim's statement period",
    ),
    edit(
        "frequency.payer_claim_number",
        4,
        Stc::new("A6", "464", None),
        Level::Claim,
        "TR3 2300 REF*F8 situational rule; X12 RFI 1538, 2173",
        "a replacement (7) or void (8) claim carries the payer's claim control number (REF*F8)",
    ),
    edit(
        "duplicate.claim",
        7,
        Stc::new("A3", "54", None),
        Level::Claim,
        "clearinghouse rule: same submitter, patient control number, payer, total charge and dates of service within the window",
        "the claim is not a duplicate of one accepted within `edits.duplicate_window_days`",
    ),
    edit(
        "payer.unknown",
        7,
        Stc::new("A3", "116", Some("PR")),
        Level::Claim,
        "routing: the payer is neither configured nor routable (`routing.route_unknown_payers = false`)",
        "the claim names a payer Clearway can route to",
    ),
];

/// One pharmacy claim edit (NCPDP D.0, the switch path's `local`
/// connector): a rule a PBM would reject on, answered with an NCPDP reject
/// code (511-FB) instead of a 277CA status. Severities are configured like
/// the 837 edits (`[edits]`, per partner, per payer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PharmacyEdit {
    pub id: &'static str,
    pub severity: Severity,
    /// The NCPDP reject code it answers with.
    pub reject: &'static str,
    pub source: &'static str,
    pub summary: &'static str,
}

const fn rx(id: &'static str, reject: &'static str, source: &'static str, summary: &'static str) -> PharmacyEdit {
    PharmacyEdit { id, severity: Severity::Reject, reject, source, summary }
}

/// The pharmacy edits, in the order they run.
pub static PHARMACY: &[PharmacyEdit] = &[
    rx(
        "ncpdp.npi.pharmacy",
        "5",
        "CMS NPI check digit (69 FR 3434); D.0 header 202-B2 = 01",
        "the service provider's NPI has ten digits and a valid check digit",
    ),
    rx(
        "ncpdp.npi.prescriber",
        "25",
        "CMS NPI check digit; D.0 prescriber segment 466-EZ = 01",
        "the prescriber's NPI has ten digits and a valid check digit",
    ),
    rx(
        "ncpdp.dates",
        "15",
        "D.0 401-D1 date of service, 414-DE date prescription written",
        "the date of service is not in the future nor before the prescription was written (28 when the written date is in the future)",
    ),
    rx("ncpdp.days_supply", "19", "D.0 405-D5 days supply (sanity bound)", "the days' supply is at most 365"),
    rx(
        "ncpdp.quantity",
        "E7",
        "D.0 442-E7 quantity dispensed, 9999999.999 (sanity bound)",
        "the quantity dispensed is at most 100,000 units",
    ),
];

/// The position of edit `id` in [`CATALOG`], for use in constants
/// (`const { at("npi.billing") }`): an unknown id does not compile.
pub const fn at(id: &str) -> usize {
    let mut i = 0;
    while i < DEFS.len() {
        let (a, b) = (DEFS[i].id.as_bytes(), id.as_bytes());
        if a.len() == b.len() {
            let mut j = 0;
            while j < a.len() && a[j] == b[j] {
                j += 1;
            }
            if j == a.len() {
                return i;
            }
        }
        i += 1;
    }
    panic!("not an edit id of the catalog")
}

/// The edit with this id.
pub fn find(id: &str) -> Option<&'static EditDef> {
    CATALOG.iter().find(|e| e.id == id)
}

/// The index of an edit in [`CATALOG`].
pub fn index_of(id: &str) -> Option<usize> {
    CATALOG.iter().position(|e| e.id == id)
}

/// The static id of an 837 or pharmacy edit.
pub fn static_id(id: &str) -> Option<&'static str> {
    find(id).map(|e| e.id).or_else(|| PHARMACY.iter().find(|e| e.id == id).map(|e| e.id))
}

/// The severity of every edit for one claim: the catalog's defaults with
/// the configured overrides applied (global, then the partner's, then the
/// payer's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    severities: Vec<Severity>,
    pharmacy: Vec<Severity>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            severities: CATALOG.iter().map(|e| e.severity).collect(),
            pharmacy: PHARMACY.iter().map(|e| e.severity).collect(),
        }
    }
}

impl Policy {
    /// Applies overrides (edit id → severity); ids not in the catalog are
    /// ignored (configuration validation refuses them first).
    pub fn with<'a>(mut self, overrides: impl IntoIterator<Item = (&'a str, Severity)>) -> Self {
        for (id, s) in overrides {
            if let Some(i) = index_of(id) {
                self.severities[i] = s;
            } else if let Some(i) = PHARMACY.iter().position(|e| e.id == id) {
                self.pharmacy[i] = s;
            }
        }
        self
    }

    /// The severity of the edit at `index` in [`CATALOG`] (see [`at`]).
    pub fn severity_at(&self, index: usize) -> Severity {
        self.severities.get(index).copied().unwrap_or(Severity::Off)
    }

    pub fn severity_of(&self, id: &str) -> Severity {
        match index_of(id) {
            Some(i) => self.severities[i],
            None => PHARMACY.iter().position(|e| e.id == id).map_or(Severity::Off, |i| self.pharmacy[i]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_well_formed() {
        let mut seen = std::collections::HashSet::new();
        for e in CATALOG {
            assert!(seen.insert(e.id), "duplicate edit id {}", e.id);
            assert!(
                e.id.contains('.')
                    && e.id.bytes().all(|b| b.is_ascii_lowercase() || b == b'.' || b == b'_' || b.is_ascii_digit()),
                "{}",
                e.id
            );
            assert!(matches!(e.snip, 3..=7), "{}", e.id);
            assert!(matches!(e.stc.category, "A3" | "A6" | "A7" | "A8"), "{}: 277CA rejections only", e.id);
        }
    }

    #[test]
    fn overrides_apply_in_order() {
        let p = Policy::default().with([("npi.billing", Severity::Warn)]).with([("npi.billing", Severity::Off)]);
        assert_eq!(p.severity_of("npi.billing"), Severity::Off);
        assert_eq!(p.severity_of("npi.rendering"), Severity::Reject);
        assert_eq!(Stc::new("A7", "562", Some("85")).to_string(), "A7:562:85");
    }
}
