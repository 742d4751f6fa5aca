//! The `local` connector: answers from what the async path stored.
//!
//! - Eligibility reads the coverage an 834 enrolled (partition: the payer
//!   id, sort key: the member id's index token).
//! - Claim status reads the claim index (partition: the patient control
//!   number's index token) for claims the asking partner submitted, and the
//!   835 payments recorded against the same patient control number and
//!   payer.

use crate::UpstreamError;
use clearway_core::config::Config;
use clearway_core::partners::Partners;
use clearway_core::ports::{Key, StateStore, Table};
use clearway_core::records::ClaimRecord;
use clearway_core::{ClaimPayment, ClaimStatusRequest, EligibilityRequest, MaintenanceType, Member, PartnerId};
use clearway_formats::x12::build::{ClaimStatusAnswer, EligibilityOutcome};
use rust_decimal::Decimal;
use serde::Deserialize;
use time::Date;

fn unavailable(e: clearway_core::PortError) -> UpstreamError {
    UpstreamError::Unavailable(e.kind().to_string())
}

#[derive(Deserialize)]
struct CoverageRecord {
    member: Member,
}

/// AAA at the subscriber level.
fn subscriber_rejected(reason: &'static str) -> EligibilityOutcome {
    EligibilityOutcome::SubscriberRejected { reason, action: "C" }
}

/// A member id as a 270 may carry it (2100C NM109: AN 2-80).
fn plausible_member_id(id: &str) -> bool {
    (2..=80).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// The member an 834 enrolled with `payer` under `member_id`.
pub async fn member(
    state: &dyn StateStore,
    partners: &Partners,
    payer: &str,
    member_id: &str,
) -> Result<Option<Member>, UpstreamError> {
    let key = Key::new(Table::Coverage, payer, partners.member_key(member_id));
    let Some(item) = state.get(&key).await.map_err(unavailable)? else { return Ok(None) };
    match serde_json::from_slice::<CoverageRecord>(&item.value) {
        Ok(record) => Ok(Some(record.member)),
        Err(_) => Err(UpstreamError::Unavailable("unreadable coverage record".into())),
    }
}

/// The coverage of `m` in force on `on`, if any.
pub fn active_on(m: &Member, on: Date) -> Option<&clearway_core::Coverage> {
    m.coverages
        .iter()
        .filter(|c| m.maintenance != MaintenanceType::Termination || c.end.is_some())
        .find(|c| c.begin.is_none_or(|b| b <= on) && c.end.is_none_or(|e| on <= e))
}

/// Eligibility of the subscriber of `r` with `payer` on `on`.
pub async fn eligibility(
    state: &dyn StateStore,
    partners: &Partners,
    payer: &str,
    r: &EligibilityRequest,
    on: Date,
) -> Result<EligibilityOutcome, UpstreamError> {
    let Some(member_id) = r.member_id.expose().as_deref().map(str::trim).filter(|m| plausible_member_id(m)) else {
        // 72: invalid or missing subscriber/insured id.
        return Ok(subscriber_rejected("72"));
    };
    let Some(m) = member(state, partners, payer, member_id).await? else {
        // 75: subscriber/insured not found.
        return Ok(subscriber_rejected("75"));
    };
    // 71: birth date does not match; 73: name does not match.
    if let (Some(asked), Some(known)) = (r.subscriber.birth_date.expose(), m.person.birth_date.expose())
        && asked != known
    {
        return Ok(subscriber_rejected("71"));
    }
    let (asked, known) = (r.subscriber.last_name.expose().trim(), m.person.last_name.expose().trim());
    if !asked.is_empty() && !known.is_empty() && !asked.eq_ignore_ascii_case(known) {
        return Ok(subscriber_rejected("73"));
    }
    if let Some(c) = active_on(&m, on) {
        return Ok(EligibilityOutcome::Active {
            plan: c.plan.clone(),
            begin: c.begin,
            end: c.end,
            insurance_type: None,
        });
    }
    let last = m.coverages.iter().max_by_key(|c| c.end);
    Ok(EligibilityOutcome::Inactive { plan: last.and_then(|c| c.plan.clone()), end: last.and_then(|c| c.end) })
}

/// What is known of one claim asked about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimStatus {
    pub category: String,
    pub status: String,
    pub entity: Option<String>,
    pub effective: Option<Date>,
    pub charge: Option<Decimal>,
    pub paid: Option<Decimal>,
    pub adjudicated: Option<Date>,
    pub payer_claim_control_number: Option<String>,
}

impl ClaimStatus {
    fn new(category: &str, status: &str) -> Self {
        ClaimStatus {
            category: category.into(),
            status: status.into(),
            entity: None,
            effective: None,
            charge: None,
            paid: None,
            adjudicated: None,
            payer_claim_control_number: None,
        }
    }

    /// D0:35: the claim was not found.
    pub fn not_found() -> Self {
        ClaimStatus::new("D0", "35")
    }

    /// E1:484: the business application is unavailable (the only use of
    /// category E that the guides allow).
    pub fn unavailable() -> Self {
        ClaimStatus::new("E1", "484")
    }

    /// A low-cardinality label for metrics.
    pub fn category_label(&self) -> &'static str {
        match self.category.get(..1) {
            Some("A") => "acknowledged",
            Some("F") => "finalized",
            Some("P") => "pending",
            Some("D") => "not-found",
            Some("E") => "unavailable",
            _ => "other",
        }
    }

    pub fn answer<'a>(&'a self, request: &'a ClaimStatusRequest, today: Date) -> ClaimStatusAnswer<'a> {
        ClaimStatusAnswer {
            request,
            category: &self.category,
            status: &self.status,
            entity: self.entity.as_deref(),
            effective: self.effective.unwrap_or(today),
            charge: self.charge,
            paid: self.paid,
            adjudicated: self.adjudicated,
            payer_claim_control_number: self.payer_claim_control_number.clone(),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClaimIndexEntry {
    claim: ClaimRecord,
    partner: PartnerId,
    received_at: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PaymentEntry {
    payment: ClaimPayment,
    payment_date: Option<Date>,
    payer_id: Option<String>,
}

fn date_of(rfc3339: &str) -> Option<Date> {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339).ok().map(|t| t.date())
}

/// The status of the claim a 276 inquiry names, as `partner` may see it.
pub async fn claim_status(
    state: &dyn StateStore,
    partners: &Partners,
    config: &Config,
    partner: &PartnerId,
    r: &ClaimStatusRequest,
) -> Result<ClaimStatus, UpstreamError> {
    // A payer may be named by an alias on either side.
    let same_payer = |a: &Option<String>, b: &Option<String>| match (a, b) {
        (Some(a), Some(b)) => config.canonical_payer(a) == config.canonical_payer(b),
        (a, b) => a == b,
    };
    let Some(pcn) = r.patient_control_number.expose().as_deref().map(str::trim).filter(|p| !p.is_empty()) else {
        return Ok(ClaimStatus::not_found());
    };
    let partition = partners.pcn_partition(pcn);
    let claims = state.query(Table::Claims, &partition, None, 100).await.map_err(unavailable)?;
    // The newest claim of this partner with this number (and payer, when
    // the inquiry names one).
    let claim = claims
        .iter()
        .filter_map(|(_, i)| serde_json::from_slice::<ClaimIndexEntry>(&i.value).ok())
        .filter(|c| &c.partner == partner)
        .filter(|c| c.claim.patient_control_number.expose() == pcn)
        .filter(|c| r.payer_id.is_none() || same_payer(&c.claim.payer_id, &r.payer_id))
        .max_by(|a, b| a.received_at.cmp(&b.received_at));
    let Some(c) = claim else { return Ok(ClaimStatus::not_found()) };
    let charge = c.claim.total_charge.parse::<Decimal>().ok();
    let received = date_of(&c.received_at);

    if c.claim.status == "rejected" {
        // The 277CA's own codes: `A7:400` or `A7:562:85`.
        let code = c.claim.status_code.clone().unwrap_or_else(|| "A3:21".into());
        let mut parts = code.split(':');
        let mut s = ClaimStatus::new(parts.next().unwrap_or("A3"), parts.next().unwrap_or("21"));
        s.entity = parts.next().map(str::to_string);
        s.effective = received;
        s.charge = charge;
        return Ok(s);
    }

    let payments = state.query(Table::Payments, &partition, None, 100).await.map_err(unavailable)?;
    let payment = payments
        .iter()
        .filter_map(|(_, i)| serde_json::from_slice::<PaymentEntry>(&i.value).ok())
        .filter(|p| p.payment.patient_control_number.expose() == pcn)
        .filter(|p| c.claim.payer_id.is_none() || p.payer_id.is_none() || same_payer(&p.payer_id, &c.claim.payer_id))
        .max_by_key(|p| p.payment_date);
    let Some(p) = payment else {
        // Accepted by the clearinghouse and forwarded: A1:20 (received,
        // accepted for processing), as of the day it was received.
        let mut s = ClaimStatus::new("A1", "20");
        s.effective = received;
        s.charge = charge;
        return Ok(s);
    };
    // Remittance: CLP02 4 = denied; otherwise processed, paid or not.
    let mut s = match (p.payment.status_code.as_str(), p.payment.paid > Decimal::ZERO) {
        ("4", _) => ClaimStatus::new("F2", "104"),
        (_, true) => ClaimStatus::new("F1", "65"),
        (_, false) => ClaimStatus::new("F0", "104"),
    };
    s.effective = p.payment_date.or(received);
    s.adjudicated = p.payment_date;
    s.charge = Some(p.payment.charge);
    s.paid = Some(p.payment.paid);
    s.payer_claim_control_number = p.payment.payer_claim_control_number.clone();
    Ok(s)
}
