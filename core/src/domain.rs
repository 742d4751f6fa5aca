//! Format-neutral business documents.
//!
//! An 837P read by the X12 views and a FHIR `Claim` read by the FHIR module
//! both become a [`Claim`]; [`Claim::summary`] is what routing, status
//! tracking and acknowledgements look at, so the two inputs are handled the
//! same way downstream.
//!
//! Fields that are protected health information are wrapped in
//! [`Sensitive`]. Identifiers of organisations (NPIs, payer ids) are not PHI
//! and are plain.

use crate::Sensitive;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use time::Date;

/// Where a document came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceFormat {
    X12,
    Hl7v2,
    Fhir,
    /// A CSV import (`clearway coverage import`).
    Csv,
}

/// The line of business of a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimKind {
    Professional,
    Institutional,
    Dental,
    Pharmacy,
    Vision,
}

/// An inclusive date range; `to` equals `from` for a single day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DateRange {
    pub from: Date,
    pub to: Date,
}

impl DateRange {
    pub fn day(d: Date) -> Self {
        DateRange { from: d, to: d }
    }

    /// The smallest range covering both.
    pub fn union(self, other: DateRange) -> DateRange {
        DateRange { from: self.from.min(other.from), to: self.to.max(other.to) }
    }
}

/// A person named in a transaction: patient, subscriber or member.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    pub last_name: Sensitive<String>,
    pub first_name: Sensitive<Option<String>>,
    pub middle_name: Sensitive<Option<String>>,
    pub birth_date: Sensitive<Option<Date>>,
    /// `M`, `F` or `U` (X12 element 1068; FHIR `male`/`female`/`unknown`).
    pub gender: Option<String>,
}

/// One service line of a claim (X12 loop 2400 SV1/SV2/SV3, FHIR `Claim.item`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceLine {
    /// 1-based line number (LX01 or `item.sequence`).
    pub line_number: u32,
    /// Procedure code (CPT/HCPCS/CDT), empty for institutional lines billed by revenue code only.
    pub procedure_code: String,
    /// Code system qualifier of the procedure (`HC`, `AD`, `ER`, `IV`, ... or a FHIR system).
    pub procedure_qualifier: Option<String>,
    pub modifiers: Vec<String>,
    /// Institutional revenue code (SV201).
    pub revenue_code: Option<String>,
    pub charge: Decimal,
    pub units: Option<Decimal>,
    /// `UN` units or `MJ` minutes (SV103 / SV204).
    pub unit_basis: Option<String>,
    pub service_date: Option<DateRange>,
    /// SV107 (837P) / SV311 (837D): 1-based positions of the claim's
    /// diagnoses this line points to, in order of importance.
    #[serde(default)]
    pub diagnosis_pointers: Vec<u8>,
    /// SV105: place of service of this line when it differs from the claim's.
    #[serde(default)]
    pub place_of_service: Option<String>,
    /// REF*6R: the submitter's line item control number (the 277CA echoes
    /// it in REF*FJ).
    #[serde(default)]
    pub control_number: Option<String>,
}

/// A coded clinical value of a claim: a diagnosis (ICD-10-CM) or an
/// inpatient procedure (ICD-10-PCS), with the X12 qualifier that says its
/// role (`ABK` principal diagnosis, `ABF` other, `ABJ` admitting, `APR`
/// patient reason for visit, `ABN` external cause; `BBR` principal
/// procedure, `BBQ` other procedure). Codes are written without the dot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClinicalCode {
    pub qualifier: String,
    pub code: String,
    /// The procedure date (HI0n-4 with D8), when sent.
    #[serde(default)]
    pub date: Option<Date>,
}

/// What a provider named on a claim does for it (the 837 loop its NM1 is in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderRole {
    /// 2010AA (NM1*85).
    Billing,
    /// 2310A / 2420F (837P), 2310F / 2420D (837I): NM1*DN or P3.
    Referring,
    /// 2310B / 2420A (837P), 2310D / 2420C (837I), 2310B / 2420A (837D): NM1*82.
    Rendering,
    /// 2310C / 2420C (837P), 2310E (837I), 2310C (837D): NM1*77.
    ServiceFacility,
    /// 2310D / 2420D (837P), 2420C (837D): NM1*DQ.
    Supervising,
    /// 2310A (837I): NM1*71.
    Attending,
    /// 2310B / 2420A (837I): NM1*72.
    Operating,
    /// 2310C / 2420B (837I): NM1*ZZ.
    OtherOperating,
    /// 2420E (837P): NM1*DK.
    Ordering,
    /// 2420B (837P): NM1*QB.
    PurchasedService,
    /// 2310D / 2420B (837D): NM1*DD.
    AssistantSurgeon,
}

impl ProviderRole {
    /// The role an NM101 entity code names in an 837 of `kind`; `None`
    /// for entities that are not providers of the claim (payers, people).
    pub fn from_entity(kind: ClaimKind, nm101: &[u8]) -> Option<Self> {
        Some(match nm101 {
            b"85" => ProviderRole::Billing,
            b"DN" | b"P3" => ProviderRole::Referring,
            b"82" => ProviderRole::Rendering,
            b"77" => ProviderRole::ServiceFacility,
            b"DQ" => ProviderRole::Supervising,
            b"71" => ProviderRole::Attending,
            b"72" => ProviderRole::Operating,
            b"ZZ" if kind == ClaimKind::Institutional => ProviderRole::OtherOperating,
            b"DK" => ProviderRole::Ordering,
            b"QB" => ProviderRole::PurchasedService,
            b"DD" if kind == ClaimKind::Dental => ProviderRole::AssistantSurgeon,
            _ => return None,
        })
    }

    /// A stable lower-case name (`service_facility`).
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderRole::Billing => "billing",
            ProviderRole::Referring => "referring",
            ProviderRole::Rendering => "rendering",
            ProviderRole::ServiceFacility => "service_facility",
            ProviderRole::Supervising => "supervising",
            ProviderRole::Attending => "attending",
            ProviderRole::Operating => "operating",
            ProviderRole::OtherOperating => "other_operating",
            ProviderRole::Ordering => "ordering",
            ProviderRole::PurchasedService => "purchased_service",
            ProviderRole::AssistantSurgeon => "assistant_surgeon",
        }
    }
}

/// A provider named on a claim with the NPI it was identified by
/// (NM108 = XX); providers are organisations or clinicians, not patients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderRef {
    pub role: ProviderRole,
    /// NM109 when NM108 is `XX`.
    pub npi: Option<String>,
    /// The service line (LX01) for a line-level provider (loops 2420x).
    pub line: Option<u32>,
}

/// A health care claim, whatever format it arrived in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub source: SourceFormat,
    pub kind: ClaimKind,
    /// Implementation guide (`005010X222A1`) or FHIR profile, when known.
    pub implementation: Option<String>,
    /// CLM01 / `Claim.identifier`: the submitter's patient control number.
    /// A patient account number is a HIPAA identifier, hence sensitive.
    pub patient_control_number: Sensitive<String>,
    /// CLM02 / `Claim.total`.
    pub total_charge: Decimal,
    /// CLM05-1: place of service (837P/D) or facility type (837I).
    pub facility_code: Option<String>,
    /// CLM05-3: claim frequency (1 original, 7 replacement, 8 void).
    pub frequency_code: Option<String>,
    pub billing_provider_npi: Option<String>,
    /// Billing provider organisation or individual name (a provider, not a patient).
    pub billing_provider_name: Option<String>,
    /// Payer identifier (2010BB NM109 / `Claim.insurer`).
    pub payer_id: Option<String>,
    pub payer_name: Option<String>,
    pub subscriber_member_id: Sensitive<Option<String>>,
    pub subscriber: Person,
    /// The patient; equal to the subscriber when the subscriber is the patient.
    pub patient: Person,
    /// Diagnoses in the order sent (HI; `Claim.diagnosis`).
    pub diagnoses: Sensitive<Vec<ClinicalCode>>,
    /// ICD-10-PCS procedures of an institutional claim (HI with BBR/BBQ).
    #[serde(default)]
    pub procedures: Sensitive<Vec<ClinicalCode>>,
    pub service_lines: Vec<ServiceLine>,
    /// Every provider named with an NPI, claim level and line level.
    #[serde(default)]
    pub providers: Vec<ProviderRef>,
    /// 2300 REF*F8: the payer's control number of the claim a replacement
    /// or void refers to.
    #[serde(default)]
    pub payer_claim_control_number: Option<String>,
    /// 2300 DTP*434: the statement period of an institutional claim.
    #[serde(default)]
    pub statement_dates: Option<DateRange>,
}

/// What downstream stages need of a claim, identical for every input format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimSummary {
    pub kind: ClaimKind,
    pub patient_control_number: Sensitive<String>,
    pub total_charge: Decimal,
    pub payer_id: Option<String>,
    pub billing_provider_npi: Option<String>,
    pub facility_code: Option<String>,
    pub line_count: usize,
    pub line_charge_total: Decimal,
    pub diagnosis_count: usize,
    pub service_dates: Option<DateRange>,
}

impl Claim {
    pub fn summary(&self) -> ClaimSummary {
        let service_dates = self.service_lines.iter().filter_map(|l| l.service_date).reduce(DateRange::union);
        ClaimSummary {
            kind: self.kind,
            patient_control_number: self.patient_control_number.clone(),
            total_charge: self.total_charge,
            payer_id: self.payer_id.clone(),
            billing_provider_npi: self.billing_provider_npi.clone(),
            facility_code: self.facility_code.clone(),
            line_count: self.service_lines.len(),
            line_charge_total: self.service_lines.iter().map(|l| l.charge).sum(),
            diagnosis_count: self.diagnoses.expose().len(),
            service_dates,
        }
    }
}

/// An eligibility and benefit inquiry (X12 270, FHIR CoverageEligibilityRequest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EligibilityRequest {
    pub source: SourceFormat,
    /// TRN02 of the subscriber or dependent level, echoed in the response.
    pub trace_number: Option<String>,
    /// TRN03: the originating company identifier.
    pub trace_originator: Option<String>,
    pub payer_id: Option<String>,
    pub payer_name: Option<String>,
    pub provider_npi: Option<String>,
    pub provider_name: Option<String>,
    /// The information receiver's id as sent (2100B NM108 qualifier and
    /// NM109), echoed in the 271 when it is not an NPI.
    #[serde(default)]
    pub provider_id: Option<(String, String)>,
    pub member_id: Sensitive<Option<String>>,
    pub subscriber: Person,
    /// Present when the patient is a dependent (loop 2000D).
    pub dependent: Option<Person>,
    /// EQ01 service type codes (`30` health benefit plan coverage, ...).
    pub service_types: Vec<String>,
    /// DTP*291 plan date or the date of the request.
    pub date: Option<DateRange>,
}

/// A claim status inquiry (X12 276).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimStatusRequest {
    pub source: SourceFormat,
    pub trace_number: Option<String>,
    pub payer_id: Option<String>,
    pub payer_name: Option<String>,
    pub provider_npi: Option<String>,
    pub member_id: Sensitive<Option<String>>,
    pub subscriber: Person,
    pub dependent: Option<Person>,
    /// REF*EJ: the patient control number (CLM01) of the claim asked about.
    pub patient_control_number: Sensitive<Option<String>>,
    /// REF*1K: the payer's claim control number.
    pub payer_claim_control_number: Option<String>,
    /// AMT*T3: total claim charge.
    pub total_charge: Option<Decimal>,
    pub service_date: Option<DateRange>,
}

/// What an 834 member-level detail (INS) asks to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaintenanceType {
    /// INS03 = 001
    Change,
    /// INS03 = 021
    Addition,
    /// INS03 = 024
    Termination,
    /// INS03 = 025
    Reinstatement,
    /// INS03 = 030
    Audit,
    Other,
}

/// One health coverage line (834 loop 2300).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coverage {
    /// HD03 insurance line (`HLT`, `DEN`, `VIS`, ...).
    pub insurance_line: Option<String>,
    /// HD04 plan coverage description.
    pub plan: Option<String>,
    /// HD05 coverage level (`EMP`, `FAM`, ...).
    pub coverage_level: Option<String>,
    /// DTP*348 benefit begin.
    pub begin: Option<Date>,
    /// DTP*349 benefit end.
    pub end: Option<Date>,
}

/// One member of an 834.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// INS01 = Y when the member is the subscriber.
    pub is_subscriber: bool,
    /// INS02 individual relationship code (`18` self, `19` child, `01` spouse).
    pub relationship: Option<String>,
    pub maintenance: MaintenanceType,
    /// REF*0F subscriber identifier.
    pub subscriber_id: Sensitive<Option<String>>,
    /// NM109 of 2100A: the member identifier.
    pub member_id: Sensitive<Option<String>>,
    pub person: Person,
    pub coverages: Vec<Coverage>,
}

/// A benefit enrollment and maintenance transaction (X12 834).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrollment {
    pub source: SourceFormat,
    /// N1*P5 sponsor identifier.
    pub sponsor_id: Option<String>,
    /// N1*IN payer (insurer) identifier.
    pub payer_id: Option<String>,
    pub members: Vec<Member>,
}

/// One claim paid (or denied) in a remittance (835 loop 2100 CLP).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimPayment {
    /// CLP01: the patient control number from the 837.
    pub patient_control_number: Sensitive<String>,
    /// CLP02 claim status (1 processed as primary, 4 denied, 22 reversal, ...).
    pub status_code: String,
    pub charge: Decimal,
    pub paid: Decimal,
    pub patient_responsibility: Option<Decimal>,
    /// CLP07: the payer's claim control number.
    pub payer_claim_control_number: Option<String>,
    /// Claim-level CAS adjustments (loop 2100).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adjustments: Vec<Adjustment>,
    /// The service lines paid (loop 2110 SVC), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<ServicePayment>,
}

/// One CAS adjustment triplet: why part of a charge was not paid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Adjustment {
    /// CAS01 claim adjustment group code: `CO` contractual, `PR` patient
    /// responsibility, `OA` other, `PI` payer initiated, `CR` correction.
    pub group: String,
    /// The claim adjustment reason code (CARC) of the triplet.
    pub reason: String,
    pub amount: Decimal,
    pub quantity: Option<Decimal>,
}

/// One service line paid or denied in a remittance (835 loop 2110 SVC).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicePayment {
    /// SVC01-1 (`HC`, `NU`, `N4`, ...).
    pub procedure_qualifier: Option<String>,
    /// SVC01-2.
    pub procedure_code: String,
    /// SVC01-3..6.
    pub modifiers: Vec<String>,
    /// SVC06-2: the procedure as submitted, when the payer adjudicated the
    /// line under another one (SVC01).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_procedure_code: Option<String>,
    /// SVC02 line charge.
    pub charge: Decimal,
    /// SVC03 line paid.
    pub paid: Decimal,
    /// SVC04 NUBC revenue code.
    pub revenue_code: Option<String>,
    /// SVC05 units paid.
    pub units_paid: Option<Decimal>,
    /// DTM 472, or 150 and 151.
    pub service_date: Option<DateRange>,
    /// REF 6R: the line item control number from the 837.
    pub control_number: Option<String>,
    /// Line-level CAS adjustments.
    pub adjustments: Vec<Adjustment>,
}

/// A health care claim payment/advice (X12 835).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Remittance {
    pub source: SourceFormat,
    /// BPR02 total actual provider payment amount.
    pub payment_amount: Decimal,
    /// BPR16 check issue or EFT effective date.
    pub payment_date: Option<Date>,
    /// TRN02 check or EFT trace number.
    pub trace_number: Option<String>,
    pub payer_id: Option<String>,
    pub payer_name: Option<String>,
    pub payee_npi: Option<String>,
    pub claims: Vec<ClaimPayment>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn line(charge: i64, d: Date) -> ServiceLine {
        ServiceLine {
            line_number: 1,
            procedure_code: "99213".into(),
            procedure_qualifier: Some("HC".into()),
            modifiers: vec![],
            revenue_code: None,
            charge: Decimal::new(charge, 2),
            units: None,
            unit_basis: None,
            service_date: Some(DateRange::day(d)),
            diagnosis_pointers: vec![1],
            place_of_service: None,
            control_number: None,
        }
    }

    #[test]
    fn summary_totals_lines_and_spans_dates() {
        let claim = Claim {
            source: SourceFormat::X12,
            kind: ClaimKind::Professional,
            implementation: None,
            patient_control_number: "PCN1".to_string().into(),
            total_charge: Decimal::new(15000, 2),
            facility_code: Some("11".into()),
            frequency_code: Some("1".into()),
            billing_provider_npi: None,
            billing_provider_name: None,
            payer_id: Some("P1".into()),
            payer_name: None,
            subscriber_member_id: None.into(),
            subscriber: Person::default(),
            patient: Person::default(),
            diagnoses: vec![ClinicalCode { qualifier: "ABK".into(), code: "J020".into(), date: None }].into(),
            procedures: vec![].into(),
            service_lines: vec![line(10000, date!(2024 - 03 - 02)), line(5000, date!(2024 - 03 - 01))],
            providers: vec![],
            payer_claim_control_number: None,
            statement_dates: None,
        };
        let s = claim.summary();
        assert_eq!(s.line_charge_total, Decimal::new(15000, 2));
        assert_eq!(s.line_count, 2);
        assert_eq!(s.service_dates, Some(DateRange { from: date!(2024 - 03 - 01), to: date!(2024 - 03 - 02) }));
        assert!(!format!("{claim:?}").contains("PCN1"));
    }
}
