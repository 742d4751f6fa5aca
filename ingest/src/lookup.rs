//! Reads the JSON API and the operator console share: a transaction's
//! record, its claims' lineage to payer batches, its acknowledgements
//! (metadata), its payload. Each is a read of the ports; the callers check
//! who may see what and audit it.

use crate::Services;
use clearway_core::PartnerId;
use clearway_core::error::{ErrorKind, PortError, PortResult};
use clearway_core::ids::TransactionId;
use clearway_core::ports::{MAX_QUERY_LIMIT, Table};
use clearway_core::records::{AckRecord, Lineage, TransactionRecord};
use std::collections::HashMap;

/// The record of transaction `id` of `partner`, if there is one.
pub async fn record(svc: &Services, partner: &PartnerId, id: &str) -> PortResult<Option<TransactionRecord>> {
    let Some(id) = TransactionId::parse(id) else { return Ok(None) };
    let Some(item) = svc.ports.state.get(&TransactionRecord::key(partner, &id)).await? else { return Ok(None) };
    serde_json::from_slice(&item.value)
        .map(Some)
        .map_err(|e| PortError::with_cause(ErrorKind::Internal, "transaction record", e))
}

/// Where each routed claim of a transaction went since (claim id →
/// lineage): its payer batch and the payer's verdict.
pub async fn lineage(svc: &Services, transaction: &TransactionId) -> PortResult<HashMap<String, Lineage>> {
    let page =
        svc.ports.state.query(Table::Batches, &Lineage::partition(transaction.as_str()), None, MAX_QUERY_LIMIT).await?;
    Ok(page
        .into_iter()
        .filter_map(|(k, item)| serde_json::from_slice::<Lineage>(&item.value).ok().map(|l| (k, l)))
        .collect())
}

/// A transaction's acknowledgements (their bodies stay sealed), by id.
pub async fn acks(svc: &Services, transaction: &TransactionId) -> PortResult<Vec<AckRecord>> {
    let page = svc.ports.state.query(Table::Acks, transaction.as_str(), None, MAX_QUERY_LIMIT).await?;
    Ok(page.into_iter().filter_map(|(_, i)| serde_json::from_slice::<AckRecord>(&i.value).ok()).collect())
}

/// The payload as submitted; `None` when it can no longer be opened (its
/// partner's keys were destroyed).
pub async fn payload(svc: &Services, r: &TransactionRecord) -> PortResult<Option<Vec<u8>>> {
    let sealed = svc.ports.blobs.get(&r.blob_key, svc.config.server.max_body_bytes.saturating_add(64 * 1024)).await?;
    let aad = clearway_core::keys::payload_aad(&r.id, &r.partner);
    match svc.partners.open(&r.partner, &sealed, aad.as_bytes()).await {
        Ok(body) => Ok(Some(body)),
        Err(e) if e.kind() == ErrorKind::InvalidInput || e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The index tokens of a transaction's patient control numbers: how audit
/// events name the patients it concerns.
pub fn patient_tokens(svc: &Services, r: &TransactionRecord) -> Vec<String> {
    r.claims.iter().map(|c| svc.partners.index_token(c.patient_control_number.expose())).collect()
}
