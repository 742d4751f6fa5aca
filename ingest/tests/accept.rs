//! Acceptance against the embedded backend: the in-flight idempotency
//! guard, and that an acceptance leaves exactly one record, blob and
//! pointer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use clearway_core::PartnerId;
use clearway_ingest::Services;
use clearway_ingest::accept::{self, Channel, Outcome, Refusal, Submission};
use std::collections::HashMap;
use std::sync::Arc;

async fn services(dir: &std::path::Path) -> (Arc<Services>, PartnerId) {
    let local = clearway_local::Local::open(dir).unwrap();
    let master = clearway_core::crypto::Key::generate().unwrap();
    let sealed = clearway_core::sealed::SealedStore::new(&master, local.ports(), None);
    let (ports, partners) = (sealed.ports, Arc::new(sealed.partners));
    let id = PartnerId::new("acme").unwrap();
    partners.add(&id, None, false).await.unwrap();
    let config = Arc::new(clearway_core::config::load(None, &HashMap::new()).unwrap());
    (Arc::new(Services::new(ports, partners, config, Arc::new(tokio::sync::Notify::new()))), id)
}

fn submission(partner: &PartnerId, key: Option<&str>) -> Submission {
    Submission {
        partner: partner.clone(),
        body: Bytes::from_static(b"{\"resourceType\":\"Claim\",\"status\":\"active\"}"),
        content_type: Some("application/fhir+json".into()),
        idempotency_key: key.map(str::to_string),
        channel: Channel::Http,
        traceparent: None,
        audit: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_in_flight_is_refused_with_409_semantics() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, partner) = services(dir.path()).await;
    let guard = svc.idempotency_guard(&partner, "k1").expect("first holder");
    assert!(matches!(accept::accept(&svc, submission(&partner, Some("k1"))).await, Err(Refusal::IdempotencyInFlight)));
    drop(guard);
    let first = accept::accept(&svc, submission(&partner, Some("k1"))).await.unwrap();
    assert!(matches!(first, Outcome::Accepted { .. }));
    assert!(matches!(
        accept::accept(&svc, submission(&partner, Some("k1"))).await.unwrap(),
        Outcome::Replayed { status: 202, .. }
    ));
    // Another partner's key space is separate.
    let other = PartnerId::new("globex").unwrap();
    let _g = svc.idempotency_guard(&other, "k1").expect("separate per partner");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acceptance_queues_exactly_one_pointer() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, partner) = services(dir.path()).await;
    let Outcome::Accepted { record, .. } = accept::accept(&svc, submission(&partner, None)).await.unwrap() else {
        panic!("accepted")
    };
    assert!(svc.ports.blobs.exists(&record.blob_key).await.unwrap());
    assert_eq!(svc.ports.queue.depth().await.unwrap().visible, 1);
    // The same content again is a duplicate, with nothing new queued.
    assert!(matches!(accept::accept(&svc, submission(&partner, None)).await.unwrap(), Outcome::Duplicate { .. }));
    assert_eq!(svc.ports.queue.depth().await.unwrap().visible, 1);
}
