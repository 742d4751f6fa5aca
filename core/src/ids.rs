//! Identifiers. None of them carries PHI: they are safe in logs, metrics
//! labels (partner ids excepted: they are not low-cardinality), object keys
//! and URLs.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A transaction: one accepted submission (an interchange file, an HL7
/// message or batch, a FHIR resource or Bundle). UUID v7, so ids sort by
/// acceptance time.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TransactionId(String);

impl TransactionId {
    pub fn new() -> Self {
        TransactionId(uuid::Uuid::now_v7().to_string())
    }

    /// Parses an id from a URL or a record; `None` unless it is a UUID.
    pub fn parse(s: &str) -> Option<Self> {
        uuid::Uuid::parse_str(s).ok().map(|u| TransactionId(u.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `n`-th id derived from this one (the transactions a batch file
    /// holds): the same UUID with its last 48 bits XORed with `n`, so it is
    /// stable across redeliveries, distinct for each `n` below 2^48, and
    /// still a UUID of the same version and variant.
    pub fn derived(&self, n: u64) -> TransactionId {
        let u = uuid::Uuid::parse_str(&self.0).unwrap_or_else(|_| uuid::Uuid::now_v7());
        let mut bytes = *u.as_bytes();
        for (i, b) in bytes[10..].iter_mut().enumerate() {
            *b ^= (n >> (8 * (5 - i))) as u8;
        }
        TransactionId(uuid::Uuid::from_bytes(bytes).to_string())
    }
}

impl Default for TransactionId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for TransactionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A trading partner (a submitter). 1-64 characters of `[A-Za-z0-9._-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PartnerId(String);

/// Why a partner id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("partner id must be 1-64 characters of letters, digits, '.', '_' or '-'")]
pub struct InvalidPartnerId;

impl PartnerId {
    pub fn new(s: &str) -> Result<Self, InvalidPartnerId> {
        let ok = (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if ok { Ok(PartnerId(s.to_string())) } else { Err(InvalidPartnerId) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PartnerId {
    type Error = InvalidPartnerId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        PartnerId::new(&s)
    }
}

impl From<PartnerId> for String {
    fn from(p: PartnerId) -> String {
        p.0
    }
}

impl fmt::Display for PartnerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a raw payload lives in the blob store: partner, day and transaction
/// id, nothing from the payload itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BlobKey(String);

impl BlobKey {
    /// `raw/<partner>/<yyyy-mm-dd>/<transaction id>`.
    pub fn for_transaction(partner: &PartnerId, day: time::Date, id: &TransactionId) -> Self {
        BlobKey(format!("raw/{}/{:04}-{:02}-{:02}/{}", partner, day.year(), u8::from(day.month()), day.day(), id))
    }

    /// `acks/<partner>/<ack id>`: an acknowledgement too large for its
    /// record.
    pub fn for_ack(partner: &PartnerId, ack_id: &str) -> Self {
        BlobKey(format!("acks/{partner}/{ack_id}"))
    }

    /// A key from its string form; `None` unless it is a safe relative path
    /// (no `..`, no leading `/`, only `[A-Za-z0-9._/-]`).
    pub fn parse(s: &str) -> Option<Self> {
        let ok = !s.is_empty()
            && s.len() <= 512
            && !s.starts_with('/')
            && s.split('/').all(|p| !p.is_empty() && p != "." && p != "..")
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._/-".contains(&b));
        ok.then(|| BlobKey(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BlobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_ids_sort_by_time_and_parse() {
        let a = TransactionId::new();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = TransactionId::new();
        assert!(a < b);
        assert_eq!(TransactionId::parse(a.as_str()), Some(a));
        assert_eq!(TransactionId::parse("../../etc"), None);
    }

    #[test]
    fn partner_ids_are_restricted() {
        assert!(PartnerId::new("acme-clinic_1.x").is_ok());
        assert!(PartnerId::new("").is_err());
        assert!(PartnerId::new("a/b").is_err());
        assert!(PartnerId::new(&"a".repeat(65)).is_err());
    }

    #[test]
    fn blob_keys_carry_no_payload_and_refuse_traversal() {
        let p = PartnerId::new("acme").unwrap();
        let id = TransactionId::new();
        let k = BlobKey::for_transaction(&p, time::macros::date!(2024 - 01 - 05), &id);
        assert_eq!(k.as_str(), format!("raw/acme/2024-01-05/{id}"));
        assert!(BlobKey::parse(k.as_str()).is_some());
        assert!(BlobKey::parse("raw/../x").is_none());
        assert!(BlobKey::parse("/abs").is_none());
    }

    #[test]
    fn derived_ids_are_stable_distinct_uuids() {
        let id = TransactionId::new();
        let a = id.derived(1);
        assert_eq!(a, id.derived(1), "stable");
        assert_ne!(a, id.derived(2));
        assert_ne!(a, id);
        let u = uuid::Uuid::parse_str(a.as_str()).unwrap();
        assert_eq!(u.get_version_num(), 7, "still a v7 UUID");
        assert_eq!(TransactionId::parse(a.as_str()), Some(a));
        let all: std::collections::HashSet<TransactionId> = (0..10_000).map(|n| id.derived(n)).collect();
        assert_eq!(all.len(), 10_000);
    }
}
