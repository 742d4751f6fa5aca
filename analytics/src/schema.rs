//! The exported tables: their columns and types, and a builder that fills
//! them a row at a time.
//!
//! Conventions (`docs/specs/analytics.md`): money is `decimal(12,2)`, times
//! are UTC timestamps in microseconds, dates are `date32`, identifiers that
//! are PHI are keyed-hash tokens (`*_token`), every row carries `tenant_id`
//! and `export_seq` (the change feed's sequence number of the event the
//! row came from). The partition column `received_date` is in the path,
//! not in the files.

use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Decimal128Builder, Float64Builder, Int32Builder, Int64Builder,
    StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use rust_decimal::Decimal;
use std::sync::Arc;

/// A column's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    Str,
    I32,
    I64,
    F64,
    Bool,
    /// `decimal(12,2)`.
    Money,
    /// `timestamp(µs, UTC)`.
    Ts,
    /// `timestamp(µs)` without a zone (Tuva's `timestamp`; the value is UTC).
    Naive,
    Date,
}

impl Ty {
    pub fn arrow(self) -> DataType {
        match self {
            Ty::Str => DataType::Utf8,
            Ty::I32 => DataType::Int32,
            Ty::I64 => DataType::Int64,
            Ty::F64 => DataType::Float64,
            Ty::Bool => DataType::Boolean,
            Ty::Money => DataType::Decimal128(12, 2),
            Ty::Ts => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            Ty::Naive => DataType::Timestamp(TimeUnit::Microsecond, None),
            Ty::Date => DataType::Date32,
        }
    }

    /// The type's name in Athena/Hive DDL (Glue tables).
    pub fn hive(self) -> &'static str {
        match self {
            Ty::Str => "string",
            Ty::I32 => "int",
            Ty::I64 => "bigint",
            Ty::F64 => "double",
            Ty::Bool => "boolean",
            Ty::Money => "decimal(12,2)",
            Ty::Ts | Ty::Naive => "timestamp",
            Ty::Date => "date",
        }
    }
}

/// An exported table.
#[derive(Debug)]
pub struct TableDef {
    pub name: &'static str,
    pub doc: &'static str,
    pub columns: &'static [(&'static str, Ty)],
}

impl TableDef {
    /// Whether the table is partitioned by `received_date` (layer A); the
    /// Tuva tables are not (a Tuva user reads exactly Tuva's columns).
    pub fn partitioned(&self) -> bool {
        self.columns.iter().any(|c| c.0 == "received_at")
    }

    /// The column whose UTC date partitions (or, unpartitioned, names) a
    /// row's file.
    pub fn time_column(&self) -> &'static str {
        if self.partitioned() { "received_at" } else { "ingest_datetime" }
    }

    pub fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|(n, t)| Field::new(*n, t.arrow(), !matches!(*n, "tenant_id" | "export_seq")))
                .collect::<Vec<_>>(),
        ))
    }
}

use Ty::*;

pub static TRANSACTION: TableDef = TableDef {
    name: "transaction",
    doc: "one row per transaction processed (any format): status, size, claims, timings",
    columns: &[
        ("tenant_id", Str),
        ("transaction_id", Str),
        ("format", Str),
        ("channel", Str),
        ("status", Str),
        ("payload_bytes", I64),
        ("document_count", I32),
        ("claim_count", I32),
        ("ack_kinds", Str),
        ("attempts", I32),
        ("received_at", Ts),
        ("processed_at", Ts),
        ("latency_ms", I64),
        ("export_seq", I64),
    ],
};

pub static INTERCHANGE: TableDef = TableDef {
    name: "interchange",
    doc: "one row per X12 interchange (ISA/IEA) received",
    columns: &[
        ("tenant_id", Str),
        ("transaction_id", Str),
        ("interchange_index", I32),
        ("isa05_sender_qualifier", Str),
        ("isa06_sender", Str),
        ("isa07_receiver_qualifier", Str),
        ("isa08_receiver", Str),
        ("isa13_control", Str),
        ("isa15_usage", Str),
        ("group_count", I32),
        ("set_count", I32),
        ("ta1_code", Str),
        ("ta1_note_code", Str),
        ("status", Str),
        ("received_at", Ts),
        ("processed_at", Ts),
        ("export_seq", I64),
    ],
};

pub static TRANSACTION_SET: TableDef = TableDef {
    name: "transaction_set",
    doc: "one row per X12 transaction set (ST/SE) received, with its 999 verdict",
    columns: &[
        ("tenant_id", Str),
        ("transaction_id", Str),
        ("isa13_control", Str),
        ("gs01_functional_id", Str),
        ("gs02_sender", Str),
        ("gs03_receiver", Str),
        ("gs06_control", Str),
        ("gs08_version", Str),
        ("st01", Str),
        ("st02", Str),
        ("st03", Str),
        ("segment_count", I32),
        ("ack_999_code", Str),
        ("error_count", I32),
        ("received_at", Ts),
        ("processed_at", Ts),
        ("export_seq", I64),
    ],
};

pub static ACK_ERROR: TableDef = TableDef {
    name: "ack_error",
    doc: "one row per error our 999 reported (IK3 segment error, with its IK4 element error if any); the bad value (IK404) is never exported",
    columns: &[
        ("tenant_id", Str),
        ("transaction_id", Str),
        ("gs06_control", Str),
        ("st01", Str),
        ("st02", Str),
        ("ik501_code", Str),
        ("ik301_segment_id", Str),
        ("ik302_segment_pos", I32),
        ("ik303_loop_id", Str),
        ("ik304_code", Str),
        ("ik401_element_pos", Str),
        ("ik402_element_ref", Str),
        ("ik403_code", Str),
        ("received_at", Ts),
        ("export_seq", I64),
    ],
};

pub static CLAIM: TableDef = TableDef {
    name: "claim",
    doc: "one row per claim (837 CLM or FHIR Claim) with its front-end verdict (our 277CA)",
    columns: &[
        ("tenant_id", Str),
        ("transaction_id", Str),
        ("claim_key", Str),
        ("claim_type", Str),
        ("implementation", Str),
        ("st02", Str),
        ("billing_npi", Str),
        ("payer_id", Str),
        ("pcn_token", Str),
        ("member_token", Str),
        ("facility_code", Str),
        ("frequency_code", Str),
        ("total_charge", Money),
        ("service_from", Date),
        ("service_to", Date),
        ("line_count", I32),
        ("diagnosis_count", I32),
        ("principal_diagnosis", Str),
        ("status", Str),
        ("stc", Str),
        ("received_at", Ts),
        ("export_seq", I64),
    ],
};

pub static CLAIM_LINE: TableDef = TableDef {
    name: "claim_line",
    doc: "one row per service line (837 LX loop 2400 or FHIR Claim.item)",
    columns: &[
        ("tenant_id", Str),
        ("transaction_id", Str),
        ("claim_key", Str),
        ("line_number", I32),
        ("claim_type", Str),
        ("payer_id", Str),
        ("billing_npi", Str),
        ("procedure_qualifier", Str),
        ("procedure_code", Str),
        ("modifier_1", Str),
        ("modifier_2", Str),
        ("modifier_3", Str),
        ("modifier_4", Str),
        ("revenue_code", Str),
        ("charge", Money),
        ("units", F64),
        ("unit_basis", Str),
        ("place_of_service", Str),
        ("service_from", Date),
        ("service_to", Date),
        ("received_at", Ts),
        ("export_seq", I64),
    ],
};

pub static CLAIM_ACK: TableDef = TableDef {
    name: "claim_ack",
    doc: "one row per STC of a 277CA about a claim (line_number null) or one of its lines",
    columns: &[
        ("tenant_id", Str),
        ("transaction_id", Str),
        ("claim_key", Str),
        ("line_number", I32),
        ("ack_source", Str),
        ("stc01_1_category", Str),
        ("stc01_2_status", Str),
        ("stc01_3_entity", Str),
        ("stc03_action", Str),
        ("received_at", Ts),
        ("acked_at", Ts),
        ("export_seq", I64),
    ],
};

pub static HL7_MESSAGE: TableDef = TableDef {
    name: "hl7_message",
    doc: "one row per HL7 v2 message received (HTTP or MLLP), with the ACK Clearway answered",
    columns: &[
        ("tenant_id", Str),
        ("transaction_id", Str),
        ("message_number", I32),
        ("channel", Str),
        ("status", Str),
        ("msh3_sending_app", Str),
        ("msh4_sending_facility", Str),
        ("msh5_receiving_app", Str),
        ("msh6_receiving_facility", Str),
        ("msh9_code", Str),
        ("msh9_trigger", Str),
        ("msh9_structure", Str),
        ("msh10_control_id", Str),
        ("msh11_processing_id", Str),
        ("msh12_version", Str),
        ("msa1_ack_code", Str),
        ("err_count", I32),
        ("received_at", Ts),
        ("processed_at", Ts),
        ("latency_ms", I64),
        ("export_seq", I64),
    ],
};

pub static FHIR_REQUEST: TableDef = TableDef {
    name: "fhir_request",
    doc: "one row per FHIR R4 resource or Bundle received, with the answer Clearway gave",
    columns: &[
        ("tenant_id", Str),
        ("transaction_id", Str),
        ("channel", Str),
        ("status", Str),
        ("resource_type", Str),
        ("bundle_type", Str),
        ("entries", I32),
        ("claims", I32),
        ("answer_type", Str),
        ("answer_errors", I32),
        ("first_issue_code", Str),
        ("received_at", Ts),
        ("processed_at", Ts),
        ("latency_ms", I64),
        ("export_seq", I64),
    ],
};

pub static DEAD_LETTER: TableDef = TableDef {
    name: "dead_letter",
    doc: "one row per transaction moved to the dead-letter store",
    columns: &[
        ("tenant_id", Str),
        ("transaction_id", Str),
        ("format", Str),
        ("channel", Str),
        ("reason", Str),
        ("attempts", I32),
        ("received_at", Ts),
        ("dead_lettered_at", Ts),
        ("export_seq", I64),
    ],
};

pub static PAYER_BATCH: TableDef = TableDef {
    name: "payer_batch",
    doc: "one row per step of an outbound 837 batch to a payer: delivered, and the payer's TA1 or 999 about it",
    columns: &[
        ("tenant_id", Str),
        ("batch_id", Str),
        ("payer_id", Str),
        ("isa13_control", I64),
        ("step", Str),
        ("claims", I64),
        ("bytes", I64),
        ("created_at", Ts),
        ("delivered_at", Ts),
        ("delivery", Str),
        ("attempts", I32),
        ("verdict", Str),
        ("event_at", Ts),
        ("received_at", Ts),
        ("export_seq", I64),
    ],
};

pub static CLAIM_ROUTE: TableDef = TableDef {
    name: "claim_route",
    doc: "one row per claim delivered to a payer in an outbound batch, with its receipt and the delivery",
    columns: &[
        ("tenant_id", Str),
        ("transaction_id", Str),
        ("claim_key", Str),
        ("payer_id", Str),
        ("batch_id", Str),
        ("received_at", Ts),
        ("delivered_at", Ts),
        ("latency_ms", I64),
        ("export_seq", I64),
    ],
};

pub static DUPLICATE: TableDef = TableDef {
    name: "duplicate",
    doc: "one row per submission answered as a duplicate of an earlier transaction, with the layer that caught it",
    columns: &[
        ("tenant_id", Str),
        ("transaction_id", Str),
        ("original_transaction_id", Str),
        ("layer", Str),
        ("format", Str),
        ("channel", Str),
        ("payload_bytes", I64),
        ("received_at", Ts),
        ("export_seq", I64),
    ],
};

pub static RT_EXCHANGE: TableDef = TableDef {
    name: "rt_exchange",
    doc: "one row per real-time request (270, 276) the fast path answered, with what CAQH CORE asks to capture and report",
    columns: &[
        ("tenant_id", Str),
        ("request_id", Str),
        ("txn", Str),
        ("response_kind", Str),
        ("served", Str),
        ("received_at", Ts),
        ("responded_at", Ts),
        ("latency_ms", F64),
        ("within_20s", Bool),
        ("upstream_ms", F64),
        ("payer_id", Str),
        ("isa06_sender", Str),
        ("isa08_receiver", Str),
        ("isa13_control", Str),
        ("gs02_sender", Str),
        ("gs03_receiver", Str),
        ("gs06_control", Str),
        ("st02", Str),
        ("bht03_token", Str),
        ("trn02_token", Str),
        ("aaa_codes", Str),
        ("aaa_count", I32),
        ("export_seq", I64),
    ],
};

pub static REMIT_CLAIM: TableDef = TableDef {
    name: "remit_claim",
    doc: "one row per claim paid or denied in an 835 received (CLP), with its payment's BPR and TRN",
    columns: &[
        ("tenant_id", Str),
        ("transaction_id", Str),
        ("remit_key", Str),
        ("payer_id", Str),
        ("payee_npi", Str),
        ("trn02_trace", Str),
        ("bpr16_payment_date", Date),
        ("clp01_pcn_token", Str),
        ("clp02_status", Str),
        ("clp03_charge", Money),
        ("clp04_paid", Money),
        ("clp05_patient_resp", Money),
        ("clp07_payer_claim_token", Str),
        ("received_at", Ts),
        ("export_seq", I64),
    ],
};

pub static REMIT_LINE: TableDef = TableDef {
    name: "remit_line",
    doc: "one row per service line paid or denied in an 835 received (SVC, loop 2110)",
    columns: &[
        ("tenant_id", Str),
        ("transaction_id", Str),
        ("remit_key", Str),
        ("line_number", I32),
        ("payer_id", Str),
        ("clp02_status", Str),
        ("procedure_qualifier", Str),
        ("procedure_code", Str),
        ("original_procedure_code", Str),
        ("modifier_1", Str),
        ("modifier_2", Str),
        ("modifier_3", Str),
        ("modifier_4", Str),
        ("revenue_code", Str),
        ("svc02_charge", Money),
        ("svc03_paid", Money),
        ("svc05_units_paid", F64),
        ("service_from", Date),
        ("service_to", Date),
        ("ref_6r_line_control_token", Str),
        ("received_at", Ts),
        ("export_seq", I64),
    ],
};

pub static REMIT_ADJUSTMENT: TableDef = TableDef {
    name: "remit_adjustment",
    doc: "one row per CAS adjustment (group, CARC, amount) of an 835 received, at claim level (line_number null) or line level",
    columns: &[
        ("tenant_id", Str),
        ("transaction_id", Str),
        ("remit_key", Str),
        ("line_number", I32),
        ("payer_id", Str),
        ("clp02_status", Str),
        ("group_code", Str),
        ("reason_code", Str),
        ("amount", Money),
        ("quantity", F64),
        ("received_at", Ts),
        ("export_seq", I64),
    ],
};

pub static ENROLLMENT_SPAN: TableDef = TableDef {
    name: "enrollment_span",
    doc: "one row per member and coverage span of an 834 received (INS, HD, DTP 348/349)",
    columns: &[
        ("tenant_id", Str),
        ("transaction_id", Str),
        ("payer_id", Str),
        ("sponsor_id", Str),
        ("member_token", Str),
        ("subscriber_token", Str),
        ("is_subscriber", Bool),
        ("relationship", Str),
        ("maintenance", Str),
        ("insurance_line", Str),
        ("plan", Str),
        ("coverage_level", Str),
        ("begin_date", Date),
        ("end_date", Date),
        ("received_at", Ts),
        ("export_seq", I64),
    ],
};

pub static TUVA_MEDICAL_CLAIM: TableDef = TableDef {
    name: "tuva_medical_claim",
    doc: "Tuva Project input layer medical_claim: one row per 837P/837I service line, Tuva's column names and types (paid amounts empty until 835s are exported)",
    columns: &[
        ("claim_id", Str),
        ("claim_line_number", I32),
        ("claim_type", Str),
        ("person_id", Str),
        ("member_id", Str),
        ("payer", Str),
        ("plan", Str),
        ("claim_start_date", Date),
        ("claim_end_date", Date),
        ("claim_line_start_date", Date),
        ("claim_line_end_date", Date),
        ("admission_date", Date),
        ("discharge_date", Date),
        ("admit_source_code", Str),
        ("admit_type_code", Str),
        ("discharge_disposition_code", Str),
        ("place_of_service_code", Str),
        ("bill_type_code", Str),
        ("drg_code_type", Str),
        ("drg_code", Str),
        ("revenue_center_code", Str),
        ("service_unit_quantity", F64),
        ("hcpcs_code", Str),
        ("hcpcs_modifier_1", Str),
        ("hcpcs_modifier_2", Str),
        ("hcpcs_modifier_3", Str),
        ("hcpcs_modifier_4", Str),
        ("hcpcs_modifier_5", Str),
        ("rendering_npi", Str),
        ("rendering_tin", Str),
        ("billing_npi", Str),
        ("billing_tin", Str),
        ("facility_npi", Str),
        ("paid_date", Date),
        ("paid_amount", F64),
        ("allowed_amount", F64),
        ("charge_amount", F64),
        ("coinsurance_amount", F64),
        ("copayment_amount", F64),
        ("deductible_amount", F64),
        ("total_cost_amount", F64),
        ("diagnosis_code_type", Str),
        ("diagnosis_code_1", Str),
        ("diagnosis_code_2", Str),
        ("diagnosis_code_3", Str),
        ("diagnosis_code_4", Str),
        ("diagnosis_code_5", Str),
        ("diagnosis_code_6", Str),
        ("diagnosis_code_7", Str),
        ("diagnosis_code_8", Str),
        ("diagnosis_code_9", Str),
        ("diagnosis_code_10", Str),
        ("diagnosis_code_11", Str),
        ("diagnosis_code_12", Str),
        ("diagnosis_code_13", Str),
        ("diagnosis_code_14", Str),
        ("diagnosis_code_15", Str),
        ("diagnosis_code_16", Str),
        ("diagnosis_code_17", Str),
        ("diagnosis_code_18", Str),
        ("diagnosis_code_19", Str),
        ("diagnosis_code_20", Str),
        ("diagnosis_code_21", Str),
        ("diagnosis_code_22", Str),
        ("diagnosis_code_23", Str),
        ("diagnosis_code_24", Str),
        ("diagnosis_code_25", Str),
        ("diagnosis_poa_1", Str),
        ("diagnosis_poa_2", Str),
        ("diagnosis_poa_3", Str),
        ("diagnosis_poa_4", Str),
        ("diagnosis_poa_5", Str),
        ("diagnosis_poa_6", Str),
        ("diagnosis_poa_7", Str),
        ("diagnosis_poa_8", Str),
        ("diagnosis_poa_9", Str),
        ("diagnosis_poa_10", Str),
        ("diagnosis_poa_11", Str),
        ("diagnosis_poa_12", Str),
        ("diagnosis_poa_13", Str),
        ("diagnosis_poa_14", Str),
        ("diagnosis_poa_15", Str),
        ("diagnosis_poa_16", Str),
        ("diagnosis_poa_17", Str),
        ("diagnosis_poa_18", Str),
        ("diagnosis_poa_19", Str),
        ("diagnosis_poa_20", Str),
        ("diagnosis_poa_21", Str),
        ("diagnosis_poa_22", Str),
        ("diagnosis_poa_23", Str),
        ("diagnosis_poa_24", Str),
        ("diagnosis_poa_25", Str),
        ("procedure_code_type", Str),
        ("procedure_code_1", Str),
        ("procedure_code_2", Str),
        ("procedure_code_3", Str),
        ("procedure_code_4", Str),
        ("procedure_code_5", Str),
        ("procedure_code_6", Str),
        ("procedure_code_7", Str),
        ("procedure_code_8", Str),
        ("procedure_code_9", Str),
        ("procedure_code_10", Str),
        ("procedure_code_11", Str),
        ("procedure_code_12", Str),
        ("procedure_code_13", Str),
        ("procedure_code_14", Str),
        ("procedure_code_15", Str),
        ("procedure_code_16", Str),
        ("procedure_code_17", Str),
        ("procedure_code_18", Str),
        ("procedure_code_19", Str),
        ("procedure_code_20", Str),
        ("procedure_code_21", Str),
        ("procedure_code_22", Str),
        ("procedure_code_23", Str),
        ("procedure_code_24", Str),
        ("procedure_code_25", Str),
        ("procedure_date_1", Date),
        ("procedure_date_2", Date),
        ("procedure_date_3", Date),
        ("procedure_date_4", Date),
        ("procedure_date_5", Date),
        ("procedure_date_6", Date),
        ("procedure_date_7", Date),
        ("procedure_date_8", Date),
        ("procedure_date_9", Date),
        ("procedure_date_10", Date),
        ("procedure_date_11", Date),
        ("procedure_date_12", Date),
        ("procedure_date_13", Date),
        ("procedure_date_14", Date),
        ("procedure_date_15", Date),
        ("procedure_date_16", Date),
        ("procedure_date_17", Date),
        ("procedure_date_18", Date),
        ("procedure_date_19", Date),
        ("procedure_date_20", Date),
        ("procedure_date_21", Date),
        ("procedure_date_22", Date),
        ("procedure_date_23", Date),
        ("procedure_date_24", Date),
        ("procedure_date_25", Date),
        ("in_network_flag", Bool),
        ("data_source", Str),
        ("file_name", Str),
        ("file_date", Date),
        ("ingest_datetime", Naive),
    ],
};

pub static TUVA_PHARMACY_CLAIM: TableDef = TableDef {
    name: "tuva_pharmacy_claim",
    doc: "Tuva Project input layer pharmacy_claim: Tuva's column names and types; no rows until NCPDP claims reach the change feed",
    columns: &[
        ("claim_id", Str),
        ("claim_line_number", I32),
        ("person_id", Str),
        ("member_id", Str),
        ("payer", Str),
        ("plan", Str),
        ("prescribing_provider_npi", Str),
        ("dispensing_provider_npi", Str),
        ("dispensing_date", Date),
        ("ndc_code", Str),
        ("quantity", I32),
        ("days_supply", I32),
        ("refills", I32),
        ("paid_date", Date),
        ("paid_amount", F64),
        ("allowed_amount", F64),
        ("charge_amount", F64),
        ("coinsurance_amount", F64),
        ("copayment_amount", F64),
        ("deductible_amount", F64),
        ("in_network_flag", Bool),
        ("data_source", Str),
        ("file_name", Str),
        ("file_date", Date),
        ("ingest_datetime", Naive),
    ],
};

pub static TUVA_ELIGIBILITY: TableDef = TableDef {
    name: "tuva_eligibility",
    doc: "Tuva Project input layer eligibility: one row per 834 member coverage span, Tuva's column names and types (names, SSN, address, phone and e-mail always empty)",
    columns: &[
        ("person_id", Str),
        ("member_id", Str),
        ("subscriber_id", Str),
        ("gender", Str),
        ("race", Str),
        ("birth_date", Date),
        ("death_date", Date),
        ("death_flag", Bool),
        ("enrollment_start_date", Date),
        ("enrollment_end_date", Date),
        ("payer", Str),
        ("payer_type", Str),
        ("plan", Str),
        ("original_reason_entitlement_code", Str),
        ("dual_status_code", Str),
        ("medicare_status_code", Str),
        ("enrollment_status", Str),
        ("hospice_flag", Str),
        ("institutional_snp_flag", Str),
        ("long_term_institutional_flag", Str),
        ("group_id", Str),
        ("group_name", Str),
        ("name_suffix", Str),
        ("first_name", Str),
        ("middle_name", Str),
        ("last_name", Str),
        ("social_security_number", Str),
        ("subscriber_relation", Str),
        ("address", Str),
        ("city", Str),
        ("state", Str),
        ("zip_code", Str),
        ("phone", Str),
        ("email", Str),
        ("ethnicity", Str),
        ("data_source", Str),
        ("file_name", Str),
        ("file_date", Date),
        ("ingest_datetime", Naive),
    ],
};

/// Every exported table, in the order files are written.
pub static TABLES: [&TableDef; 21] = [
    &TRANSACTION,
    &INTERCHANGE,
    &TRANSACTION_SET,
    &ACK_ERROR,
    &CLAIM,
    &CLAIM_LINE,
    &CLAIM_ACK,
    &HL7_MESSAGE,
    &FHIR_REQUEST,
    &DEAD_LETTER,
    &DUPLICATE,
    &PAYER_BATCH,
    &CLAIM_ROUTE,
    &RT_EXCHANGE,
    &REMIT_CLAIM,
    &REMIT_LINE,
    &REMIT_ADJUSTMENT,
    &ENROLLMENT_SPAN,
    &TUVA_MEDICAL_CLAIM,
    &TUVA_PHARMACY_CLAIM,
    &TUVA_ELIGIBILITY,
];

/// The table named `name`.
pub fn table(name: &str) -> Option<&'static TableDef> {
    TABLES.iter().copied().find(|t| t.name == name)
}

/// One value of a row.
#[derive(Debug, Clone, Copy)]
pub enum V<'a> {
    S(Option<&'a str>),
    I(Option<i64>),
    F(Option<f64>),
    B(Option<bool>),
    M(Option<Decimal>),
    /// Unix microseconds.
    T(Option<i64>),
    D(Option<time::Date>),
}

enum Col {
    S(StringBuilder),
    I32(Int32Builder),
    I64(Int64Builder),
    F(Float64Builder),
    B(BooleanBuilder),
    M(Decimal128Builder),
    T(TimestampMicrosecondBuilder),
    D(Date32Builder),
}

const MONEY_LIMIT: i128 = 1_000_000_000_000; // 10^12: decimal(12,2)

/// A decimal as the nearest `f64` (what parsing its text gives: one
/// correctly rounded division of two exact numbers), without formatting it.
pub fn float(d: Decimal) -> Option<f64> {
    const POW10: [f64; 16] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15];
    let m = d.mantissa();
    match POW10.get(d.scale() as usize) {
        Some(p) if m.unsigned_abs() < (1u128 << 53) => Some(m as f64 / p),
        _ => d.to_string().parse().ok(),
    }
}

/// Money as `decimal(12,2)` units; `None` when it does not fit.
pub fn money(d: Decimal) -> Option<i128> {
    let mut d = d;
    d.rescale(2);
    let m = d.mantissa();
    (m.abs() < MONEY_LIMIT).then_some(m)
}

fn days(d: time::Date) -> i32 {
    (d - time::Date::from_calendar_date(1970, time::Month::January, 1).unwrap_or(time::Date::MIN)).whole_days() as i32
}

/// The rows of one table being built.
pub struct Rows {
    pub def: &'static TableDef,
    cols: Vec<Col>,
    /// Column positions by name (for [`Rows::named`]).
    index: std::collections::HashMap<&'static str, usize>,
    at: usize,
    len: usize,
}

impl std::fmt::Debug for Rows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rows").field("table", &self.def.name).field("len", &self.len).finish()
    }
}

impl Rows {
    pub fn new(def: &'static TableDef) -> Self {
        let cols = def
            .columns
            .iter()
            .map(|(_, t)| match t {
                Ty::Str => Col::S(StringBuilder::new()),
                Ty::I32 => Col::I32(Int32Builder::new()),
                Ty::I64 => Col::I64(Int64Builder::new()),
                Ty::F64 => Col::F(Float64Builder::new()),
                Ty::Bool => Col::B(BooleanBuilder::new()),
                Ty::Money => Col::M(Decimal128Builder::new().with_data_type(Ty::Money.arrow())),
                Ty::Ts => Col::T(TimestampMicrosecondBuilder::new().with_timezone("UTC")),
                Ty::Naive => Col::T(TimestampMicrosecondBuilder::new()),
                Ty::Date => Col::D(Date32Builder::new()),
            })
            .collect();
        let index = def.columns.iter().enumerate().map(|(i, (name, _))| (*name, i)).collect();
        Rows { def, cols, index, at: 0, len: 0 }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends the row's next value. A value of the wrong type is stored
    /// as null (a programming error the table tests catch).
    pub fn v(&mut self, v: V<'_>) -> &mut Self {
        let Some(col) = self.cols.get_mut(self.at) else {
            debug_assert!(false, "{}: too many values", self.def.name);
            return self;
        };
        let ok = match (col, v) {
            (Col::S(b), V::S(x)) => {
                b.append_option(x);
                true
            }
            (Col::I32(b), V::I(x)) => {
                b.append_option(x.and_then(|x| i32::try_from(x).ok()));
                true
            }
            (Col::I64(b), V::I(x)) => {
                b.append_option(x);
                true
            }
            (Col::F(b), V::F(x)) => {
                b.append_option(x);
                true
            }
            (Col::B(b), V::B(x)) => {
                b.append_option(x);
                true
            }
            (Col::M(b), V::M(x)) => {
                b.append_option(x.and_then(money));
                true
            }
            (Col::T(b), V::T(x)) => {
                b.append_option(x);
                true
            }
            (Col::D(b), V::D(x)) => {
                b.append_option(x.map(days));
                true
            }
            (col, _) => {
                null(col);
                false
            }
        };
        debug_assert!(ok, "{}: wrong type for column {}", self.def.name, self.def.columns[self.at].0);
        self.at += 1;
        self
    }

    pub fn s(&mut self, x: Option<&str>) -> &mut Self {
        self.v(V::S(x))
    }
    pub fn i(&mut self, x: Option<i64>) -> &mut Self {
        self.v(V::I(x))
    }
    pub fn m(&mut self, x: Option<Decimal>) -> &mut Self {
        self.v(V::M(x))
    }
    pub fn t(&mut self, x: Option<i64>) -> &mut Self {
        self.v(V::T(x))
    }
    pub fn d(&mut self, x: Option<time::Date>) -> &mut Self {
        self.v(V::D(x))
    }

    /// Appends a whole row by column name (for the wide Tuva tables);
    /// columns not named are null.
    pub fn named(&mut self, values: &[(&str, V<'_>)]) {
        debug_assert_eq!(self.at, 0, "{}: a named row inside a positional one", self.def.name);
        let mut slots: Vec<Option<V<'_>>> = vec![None; self.cols.len()];
        for (name, v) in values {
            match self.index.get(name) {
                Some(&i) => slots[i] = Some(*v),
                None => debug_assert!(false, "{}: no column {name}", self.def.name),
            }
        }
        for slot in slots {
            match slot {
                Some(v) => {
                    self.v(v);
                }
                None => {
                    if let Some(col) = self.cols.get_mut(self.at) {
                        null(col);
                    }
                    self.at += 1;
                }
            }
        }
        self.end();
    }

    /// Ends the row (missing values become null).
    pub fn end(&mut self) {
        debug_assert_eq!(
            self.at,
            self.cols.len(),
            "{}: row has {} of {} values",
            self.def.name,
            self.at,
            self.cols.len()
        );
        for col in self.cols.iter_mut().skip(self.at) {
            null(col);
        }
        self.at = 0;
        self.len += 1;
    }

    /// The rows built so far as one batch; the builder starts empty again.
    pub fn finish(&mut self) -> Result<RecordBatch, datafusion::arrow::error::ArrowError> {
        let arrays: Vec<ArrayRef> = self
            .cols
            .iter_mut()
            .map(|c| -> ArrayRef {
                match c {
                    Col::S(b) => Arc::new(b.finish()),
                    Col::I32(b) => Arc::new(b.finish()),
                    Col::I64(b) => Arc::new(b.finish()),
                    Col::F(b) => Arc::new(b.finish()),
                    Col::B(b) => Arc::new(b.finish()),
                    Col::M(b) => Arc::new(b.finish()),
                    Col::T(b) => Arc::new(b.finish()),
                    Col::D(b) => Arc::new(b.finish()),
                }
            })
            .collect();
        self.len = 0;
        RecordBatch::try_new(self.def.schema(), arrays)
    }
}

fn null(col: &mut Col) {
    match col {
        Col::S(b) => b.append_null(),
        Col::I32(b) => b.append_null(),
        Col::I64(b) => b.append_null(),
        Col::F(b) => b.append_null(),
        Col::B(b) => b.append_null(),
        Col::M(b) => b.append_null(),
        Col::T(b) => b.append_null(),
        Col::D(b) => b.append_null(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exported float of a decimal is what parsing its text gives, for
    /// scales and magnitudes across the range (and past the fast path).
    #[test]
    fn float_is_what_parsing_the_text_gives() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for n in 0..20_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let m = (x % 10u64.pow(1 + n % 18)) as i64 * if n % 3 == 0 { -1 } else { 1 };
            let d = Decimal::new(m, n % 20);
            assert_eq!(float(d), d.to_string().parse::<f64>().ok(), "{d}");
        }
    }

    #[test]
    fn money_is_two_places_and_bounded() {
        assert_eq!(money(Decimal::new(12345, 2)), Some(12345));
        assert_eq!(money(Decimal::new(15, 1)), Some(150));
        assert_eq!(money(Decimal::new(1_000_000_000_000, 0)), None);
    }

    #[test]
    fn every_table_has_tenant_and_sequence_and_unique_columns() {
        for t in TABLES.iter().filter(|t| t.partitioned()) {
            let names: Vec<_> = t.columns.iter().map(|c| c.0).collect();
            assert_eq!(names.first(), Some(&"tenant_id"), "{}", t.name);
            assert_eq!(names.last(), Some(&"export_seq"), "{}", t.name);
            let mut sorted = names.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), names.len(), "{}", t.name);
        }
    }

    #[test]
    fn layer_a_is_partitioned_and_tuva_is_not() {
        for t in TABLES {
            assert_eq!(t.partitioned(), !t.name.starts_with("tuva_"), "{}", t.name);
            assert!(t.columns.iter().any(|c| c.0 == t.time_column()), "{}", t.name);
        }
    }

    #[test]
    fn a_named_row_fills_the_named_columns_and_nulls_the_rest() {
        let mut r = Rows::new(&TUVA_MEDICAL_CLAIM);
        r.named(&[("claim_id", V::S(Some("t-1"))), ("claim_line_number", V::I(Some(2)))]);
        let b = r.finish().unwrap();
        assert_eq!(b.num_rows(), 1);
        assert_eq!(b.column(0).null_count(), 0);
        assert_eq!(b.column(2).null_count(), 1);
    }

    #[test]
    fn a_row_round_trips_into_a_batch() {
        let mut r = Rows::new(&DEAD_LETTER);
        r.s(Some("acme")).s(Some("t1")).s(Some("x12")).s(Some("http")).s(Some("boom")).i(Some(3));
        r.t(Some(1_700_000_000_000_000)).t(None).i(Some(7));
        r.end();
        let b = r.finish().unwrap();
        assert_eq!(b.num_rows(), 1);
        assert_eq!(b.num_columns(), DEAD_LETTER.columns.len());
    }
}
