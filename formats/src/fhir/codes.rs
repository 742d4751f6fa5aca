//! Codes from R4 value sets with a *required* binding, as enums.

use clearway_core::ClaimKind;
use serde::Serialize;

macro_rules! code_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $code:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
        pub enum $name {
            $($(#[$vm])* #[serde(rename = $code)] $variant),+
        }

        impl $name {
            /// Every code of the value set, in spec order.
            pub const CODES: &'static [&'static str] = &[$($code),+];

            /// The code as written in FHIR.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $code),+ }
            }

            /// The enum value for a code, `None` outside the value set.
            pub fn from_code(code: &str) -> Option<Self> {
                match code { $($code => Some($name::$variant),)+ _ => None }
            }
        }
    };
}

code_enum!(
    /// `Claim.status`, `CoverageEligibilityRequest.status` and the responses'
    /// status (value set `fm-status`).
    FinancialStatus {
        Active = "active",
        Cancelled = "cancelled",
        Draft = "draft",
        EnteredInError = "entered-in-error",
    }
);

code_enum!(
    /// `Claim.use` (value set `claim-use`).
    ClaimUse {
        Claim = "claim",
        Preauthorization = "preauthorization",
        Predetermination = "predetermination",
    }
);

code_enum!(
    /// `CoverageEligibilityRequest.purpose` (value set `eligibilityrequest-purpose`).
    EligibilityPurpose {
        AuthRequirements = "auth-requirements",
        Benefits = "benefits",
        Discovery = "discovery",
        Validation = "validation",
    }
);

code_enum!(
    /// `ClaimResponse.outcome` / `CoverageEligibilityResponse.outcome`
    /// (value set `remittance-outcome`).
    ResponseOutcome {
        Queued = "queued",
        Complete = "complete",
        Error = "error",
        Partial = "partial",
    }
);

code_enum!(
    /// `Bundle.type` (value set `bundle-type`).
    BundleType {
        Document = "document",
        Message = "message",
        Transaction = "transaction",
        TransactionResponse = "transaction-response",
        Batch = "batch",
        BatchResponse = "batch-response",
        History = "history",
        Searchset = "searchset",
        Collection = "collection",
    }
);

code_enum!(
    /// `Bundle.entry.request.method` (value set `http-verb`).
    HttpVerb {
        Get = "GET",
        Head = "HEAD",
        Post = "POST",
        Put = "PUT",
        Delete = "DELETE",
        Patch = "PATCH",
    }
);

impl BundleType {
    /// Types Clearway accepts for intake: the entries are submissions.
    pub fn is_intake(self) -> bool {
        matches!(self, BundleType::Transaction | BundleType::Batch | BundleType::Collection)
    }

    /// `entry.request` is mandatory for these types and prohibited otherwise (bdl-3).
    pub fn requires_request(self) -> bool {
        matches!(self, BundleType::Transaction | BundleType::Batch | BundleType::History)
    }

    /// `entry.response` is mandatory for these types and prohibited otherwise (bdl-4).
    pub fn requires_response(self) -> bool {
        matches!(self, BundleType::TransactionResponse | BundleType::BatchResponse | BundleType::History)
    }
}

/// The claim-type code system (`Claim.type`).
pub const CLAIM_TYPE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/claim-type";

/// `Claim.type` code → [`ClaimKind`].
pub fn claim_kind_from_code(code: &str) -> Option<ClaimKind> {
    match code {
        "professional" => Some(ClaimKind::Professional),
        "institutional" => Some(ClaimKind::Institutional),
        "oral" => Some(ClaimKind::Dental),
        "pharmacy" => Some(ClaimKind::Pharmacy),
        "vision" => Some(ClaimKind::Vision),
        _ => None,
    }
}

/// [`ClaimKind`] → `Claim.type` code.
pub fn claim_type_code(kind: ClaimKind) -> &'static str {
    match kind {
        ClaimKind::Professional => "professional",
        ClaimKind::Institutional => "institutional",
        ClaimKind::Dental => "oral",
        ClaimKind::Pharmacy => "pharmacy",
        ClaimKind::Vision => "vision",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for c in BundleType::CODES {
            assert_eq!(BundleType::from_code(c).map(BundleType::as_str), Some(*c));
        }
        for c in FinancialStatus::CODES {
            assert_eq!(FinancialStatus::from_code(c).map(FinancialStatus::as_str), Some(*c));
        }
        assert_eq!(BundleType::from_code("Batch"), None);
        assert_eq!(
            serde_json::to_value(FinancialStatus::EnteredInError).ok(),
            Some(serde_json::json!("entered-in-error"))
        );
        for k in [
            ClaimKind::Professional,
            ClaimKind::Institutional,
            ClaimKind::Dental,
            ClaimKind::Pharmacy,
            ClaimKind::Vision,
        ] {
            assert_eq!(claim_kind_from_code(claim_type_code(k)), Some(k));
        }
    }
}
