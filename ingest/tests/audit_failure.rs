//! The audit store failing under a running API: PHI reads are answered
//! `503` and none goes out unaudited; writes stand (their effect is
//! durable) and the failure is counted. The failure is injected in front of
//! the real embedded audit log, whose events are then counted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::Body;
use clearway_core::PartnerId;
use clearway_core::audit::{AuditEvent, AuditQuery, AuditSink, Hash};
use clearway_core::{ErrorKind, PortError, PortResult};
use clearway_ingest::Services;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tower::ServiceExt;

/// The real log, with a switch that makes appends fail.
struct Flaky {
    log: clearway_local::audit::AuditService,
    down: AtomicBool,
}

#[async_trait::async_trait]
impl AuditSink for Flaky {
    async fn append(&self, event: &AuditEvent) -> PortResult<u64> {
        if self.down.load(Ordering::SeqCst) {
            return Err(PortError::new(ErrorKind::Unavailable, "audit append (injected)"));
        }
        self.log.append(event).await
    }
    async fn latest_checkpoint(&self) -> PortResult<Option<String>> {
        self.log.latest_checkpoint().await
    }
    async fn size(&self) -> PortResult<u64> {
        self.log.size().await
    }
    async fn checkpoint(&self) -> PortResult<String> {
        AuditSink::checkpoint(&self.log).await
    }
    async fn checkpoint_note(&self, size: u64) -> PortResult<Option<String>> {
        self.log.checkpoint_note(size).await
    }
    async fn search(&self, query: &AuditQuery, limit: usize) -> PortResult<clearway_core::audit::AuditPage> {
        self.log.search(query, limit).await
    }
    async fn inclusion_proof(&self, index: u64, size: u64) -> PortResult<Vec<Hash>> {
        self.log.inclusion_proof(index, size).await
    }
    async fn consistency_proof(&self, old: u64, new: u64) -> PortResult<Vec<Hash>> {
        self.log.consistency_proof(old, new).await
    }
}

fn req(method: &str, path: &str, key: &str, body: Vec<u8>, content_type: &str) -> axum::extract::Request {
    axum::extract::Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", content_type)
        .body(Body::from(body))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_audit_store_down_no_read_goes_out_unaudited() {
    let dir = tempfile::tempdir().unwrap();
    let local = clearway_local::Local::open(&dir.path().join("data")).unwrap();
    let master = clearway_core::crypto::Key::generate().unwrap();
    let sealed = clearway_core::sealed::SealedStore::new(&master, local.ports(), None);
    let (ports, partners) = (sealed.ports, Arc::new(sealed.partners));
    let acme = PartnerId::new("acme").unwrap();
    let key = partners.add(&acme, None, false).await.unwrap();
    let key = key.expose().to_string();
    let config = Arc::new(clearway_core::config::load(None, &HashMap::new()).unwrap());
    let log = clearway_local::audit::SqliteAuditLog::open(&dir.path().join("data")).unwrap();
    let seed = clearway_core::audit::LogSigner::generate_seed().unwrap();
    let signer = clearway_core::audit::LogSigner::from_seed("test.example/audit", &seed).unwrap();
    let flaky =
        Arc::new(Flaky { log: clearway_local::audit::AuditService::new(log, Arc::new(signer)), down: false.into() });
    let svc = Services::new(ports, partners, config, Arc::new(tokio::sync::Notify::new())).with_audit(flaky.clone());
    let render: clearway_ingest::http::MetricsRender = Arc::new(String::new);
    let app = clearway_ingest::http::app(Arc::new(svc), render);

    let fhir = |n: u32| format!("{{\"resourceType\":\"Claim\",\"id\":\"c{n}\",\"status\":\"active\"}}").into_bytes();
    let submitted = app.clone().oneshot(req("POST", "/v1/transactions", &key, fhir(0), "application/fhir+json")).await;
    let submitted = submitted.unwrap();
    assert_eq!(submitted.status(), 202);
    let body = axum::body::to_bytes(submitted.into_body(), 1 << 20).await.unwrap();
    let id = serde_json::from_slice::<serde_json::Value>(&body).unwrap()["transactionId"].as_str().unwrap().to_string();
    let reads = [format!("/v1/transactions/{id}"), format!("/v1/transactions/{id}/payload"), "/v1/acks".to_string()];

    let mut answered = 0;
    for round in 0..60 {
        let down = round % 2 == 1;
        flaky.down.store(down, Ordering::SeqCst);
        for path in &reads {
            let r = app.clone().oneshot(req("GET", path, &key, vec![], "application/json")).await.unwrap();
            if down {
                assert_eq!(r.status(), 503, "{path} answered while its event could not be recorded");
                assert!(r.headers().contains_key("retry-after"));
            } else {
                assert_eq!(r.status(), 200, "{path}");
                answered += 1;
            }
        }
        if down {
            // A write's answer stands: its effect is durable already.
            let w =
                app.clone().oneshot(req("POST", "/v1/transactions", &key, fhir(round), "application/fhir+json")).await;
            assert_eq!(w.unwrap().status(), 202);
        }
    }
    flaky.down.store(false, Ordering::SeqCst);
    // Every read that was answered is in the log; none that was refused.
    let events = flaky.log.search(&AuditQuery::default(), 100_000).await.unwrap().events;
    let audited_reads =
        events.iter().filter(|(_, e)| e.action == "R" && e.outcome == "success" && e.tenant.as_deref() == Some("acme"));
    assert_eq!(audited_reads.count(), answered);
    assert_eq!(answered, 90);
}
