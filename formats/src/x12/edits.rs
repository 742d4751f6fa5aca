//! Claim-level edits behind the 277CA: what decides, for a claim in a set
//! that passed SNIP 1-2 (the 999), whether it is accepted into processing.
//!
//! These are the checks a clearinghouse runs beyond syntax: balancing (SNIP
//! 3: the claim total equals the sum of its line charges) and a usable
//! billing provider NPI. Routing decisions (an unknown payer) are made by the
//! workers and use [`unknown_payer`].

use super::build::ClaimDecision;
use super::validate::valid_npi;
use clearway_core::Claim;
use rust_decimal::Decimal;

/// STC A7:400 — claim is out of balance.
pub const OUT_OF_BALANCE: ClaimDecision = ClaimDecision::Rejected { category: "A7", status: "400", entity: None };

/// STC A7:562:85 — the billing provider's NPI is missing or invalid.
pub const BAD_BILLING_NPI: ClaimDecision =
    ClaimDecision::Rejected { category: "A7", status: "562", entity: Some("85") };

/// STC A3:116:PR — claim submitted to a payer we cannot route to.
pub fn unknown_payer() -> ClaimDecision {
    ClaimDecision::Rejected { category: "A3", status: "116", entity: Some("PR") }
}

/// The decision for one claim of a syntactically accepted set.
pub fn claim_decision(claim: &Claim) -> ClaimDecision {
    let lines: Decimal = claim.service_lines.iter().map(|l| l.charge).sum();
    if !claim.service_lines.is_empty() && lines != claim.total_charge {
        return OUT_OF_BALANCE;
    }
    match claim.billing_provider_npi.as_deref() {
        Some(npi) if valid_npi(npi.as_bytes()) => ClaimDecision::Accepted,
        _ => BAD_BILLING_NPI,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::x12::{AnalyzeOptions, Document, analyze, synth};

    fn first_claim() -> Claim {
        let mut out = vec![];
        synth::write(&mut out, synth::Kind::Professional837, 1, 1).unwrap();
        let a = analyze(&out, &AnalyzeOptions::default());
        match a.documents().next() {
            Some(Document::Claim(c)) => (**c).clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn balanced_claim_with_good_npi_is_accepted() {
        assert_eq!(claim_decision(&first_claim()), ClaimDecision::Accepted);
    }

    #[test]
    fn unbalanced_claim_is_rejected_a7_400() {
        let mut c = first_claim();
        c.total_charge += Decimal::ONE;
        assert_eq!(claim_decision(&c), OUT_OF_BALANCE);
    }

    #[test]
    fn bad_npi_is_rejected_a7_562() {
        let mut c = first_claim();
        c.billing_provider_npi = Some("1234567890".into());
        assert_eq!(claim_decision(&c), BAD_BILLING_NPI);
    }
}
