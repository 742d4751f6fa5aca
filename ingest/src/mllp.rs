//! The MLLP listener: HL7 v2 over TCP, each listener bound to one partner.
//!
//! Frames are read with a size bound and processed one at a time, in order,
//! so pipelined messages are acknowledged in the order they arrived and a
//! slow store slows the sender (we stop reading). The ACK for a message is
//! written only after the message is durable; if it cannot be made durable
//! the connection is closed without an ACK and the sender resends.

use crate::Services;
use crate::accept::{self, Channel, Outcome, Submission};
use bytes::{Buf, Bytes, BytesMut};
use clearway_core::PartnerId;
use clearway_formats::hl7::{self, MllpError};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Runs the listener until `shutdown`; returns when every connection has
/// finished its current message.
pub async fn serve(
    svc: Arc<Services>,
    listener: TcpListener,
    partner: PartnerId,
    tls: Option<Arc<crate::tls::Tls>>,
    client_auth: Option<clearway_core::config::ClientAuth>,
    shutdown: CancellationToken,
) {
    let limit = Arc::new(Semaphore::new(svc.config.mllp.max_connections));
    let tracker = tokio_util::task::TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "mllp accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "mllp connection refused: too many connections");
            drop(stream);
            continue;
        };
        let (svc, partner, shutdown, tls) = (svc.clone(), partner.clone(), shutdown.clone(), tls.clone());
        tracker.spawn(async move {
            let _ = stream.set_nodelay(true);
            metrics::gauge!("clearway_mllp_connections").increment(1.0);
            let ended = match tls {
                // MLLP over TLS: the handshake first (bounded), then frames.
                Some(tls) => {
                    let stream = tokio::select! {
                        _ = shutdown.cancelled() => None,
                        s = tls.accept(stream, client_auth) => s,
                    };
                    match stream {
                        Some(s) => {
                            let fingerprint = crate::tls::peer_fingerprint(&s);
                            match who(&svc, fingerprint.as_deref(), &partner).await {
                                Some(who_it_is) => {
                                    let identity = Identity {
                                        fingerprint,
                                        listener_partner: partner.clone(),
                                        checked_at: std::time::Instant::now(),
                                        plaintext: false,
                                    };
                                    connection(&svc, s, &who_it_is, Some(identity), &shutdown).await
                                }
                                None => Ok(()),
                            }
                        }
                        None => Ok(()),
                    }
                }
                // Plaintext (loopback, or TLS ended upstream by a load
                // balancer): no certificate, so the listener's partner, as
                // long as it exists and is not revoked.
                None => {
                    if live(&svc, &partner).await {
                        let identity = Identity {
                            fingerprint: None,
                            listener_partner: partner.clone(),
                            checked_at: std::time::Instant::now(),
                            plaintext: true,
                        };
                        connection(&svc, stream, &partner, Some(identity), &shutdown).await
                    } else {
                        Ok(())
                    }
                }
            };
            if let Err(e) = ended {
                tracing::info!(%peer, reason = %e, "mllp connection closed");
            }
            metrics::gauge!("clearway_mllp_connections").decrement(1.0);
            drop(permit);
        });
    }
    tracker.close();
    tracker.wait().await;
}

/// The partner an MLLP-over-TLS connection belongs to: the one its client
/// certificate is bound to (so one listener serves many partners). A
/// certificate bound to no live partner is refused (it is not the
/// listener partner's either). Without a certificate, the listener's own
/// partner, unless it is revoked or bound to certificates. `None`: close.
async fn who(svc: &Services, fingerprint: Option<&str>, listener_partner: &PartnerId) -> Option<PartnerId> {
    let refuse = |why: &str| {
        metrics::counter!("clearway_tls_certificate_mismatches_total", "channel" => "mllp").increment(1);
        tracing::info!(partner = %listener_partner, why, "mllp over tls: connection refused");
        None
    };
    let lookup_failed = |e: clearway_core::PortError| {
        tracing::warn!(error = %clearway_core::error::chain(&e), "mllp: partner lookup failed");
        None
    };
    if let Some(fp) = fingerprint {
        return match svc.partners.by_certificate(fp).await {
            Ok(Some(p)) => Some(p.id.clone()),
            Ok(None) => refuse("the client certificate is bound to no partner"),
            Err(e) => lookup_failed(e),
        };
    }
    match svc.partners.get(listener_partner).await {
        Ok(Some((p, _))) if !p.revoked && p.cert_sha256.is_empty() => Some(listener_partner.clone()),
        Ok(Some((p, _))) if p.revoked => refuse("the listener's partner is revoked"),
        Ok(Some(_)) => refuse("the listener's partner must present its client certificate"),
        Ok(None) => refuse("the listener's partner does not exist"),
        Err(e) => lookup_failed(e),
    }
}

/// Whether a plaintext listener's partner exists and is not revoked.
async fn live(svc: &Services, partner: &PartnerId) -> bool {
    match svc.partners.get(partner).await {
        Ok(Some((p, _))) if !p.revoked => true,
        Ok(_) => {
            metrics::counter!("clearway_tls_certificate_mismatches_total", "channel" => "mllp").increment(1);
            tracing::info!(partner = %partner, "mllp: connection refused: the listener's partner is revoked or gone");
            false
        }
        Err(e) => {
            tracing::warn!(error = %clearway_core::error::chain(&e), "mllp: partner lookup failed");
            false
        }
    }
}

/// Who an MLLP connection was found to be, checked again every
/// [`CACHE_TTL`](clearway_core::partners::CACHE_TTL) of a long-lived
/// connection: a certificate unbound or a partner revoked meanwhile closes
/// it before its next message is taken.
struct Identity {
    fingerprint: Option<String>,
    listener_partner: PartnerId,
    checked_at: std::time::Instant,
    /// A plaintext connection: only the listener partner's revocation is
    /// checked (there is no certificate).
    plaintext: bool,
}

impl Identity {
    /// Whether the connection is still `partner`'s (looked up again once
    /// the last check is older than the partner cache's lifetime).
    async fn still(&mut self, svc: &Services, partner: &PartnerId) -> bool {
        if self.checked_at.elapsed() < clearway_core::partners::CACHE_TTL {
            return true;
        }
        let still = if self.plaintext {
            live(svc, &self.listener_partner).await
        } else {
            who(svc, self.fingerprint.as_deref(), &self.listener_partner).await.as_ref() == Some(partner)
        };
        self.checked_at = std::time::Instant::now();
        still
    }
}

/// Why a connection ended early.
#[derive(Debug, thiserror::Error)]
enum ConnectionEnd {
    #[error("the connection's certificate or partner is no longer allowed; closing without an ACK")]
    NoLongerAllowed,
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("framing: {0}")]
    Framing(MllpError),
    #[error("the message could not be stored; closing without an ACK")]
    NotDurable,
}

async fn connection<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    svc: &Services,
    mut stream: S,
    partner: &PartnerId,
    mut identity: Option<Identity>,
    shutdown: &CancellationToken,
) -> Result<(), ConnectionEnd> {
    let max = svc.config.mllp.max_frame_bytes;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut out = Vec::with_capacity(1024);
    loop {
        // Every complete frame already buffered, in order.
        loop {
            match hl7::decode_frame(&buf, max) {
                Ok(Some(frame)) => {
                    let payload = Bytes::copy_from_slice(&buf[frame.payload.clone()]);
                    buf.advance(frame.consumed);
                    if let Some(id) = identity.as_mut()
                        && !id.still(svc, partner).await
                    {
                        metrics::counter!("clearway_tls_certificate_mismatches_total", "channel" => "mllp")
                            .increment(1);
                        return Err(ConnectionEnd::NoLongerAllowed);
                    }
                    let handled = handle(svc, partner, payload).await;
                    audit(svc, partner, identity.as_ref(), &handled).await;
                    let (ack, _) = handled?;
                    out.clear();
                    hl7::encode_frame(ack.as_bytes(), &mut out);
                    stream.write_all(&out).await?;
                    // TLS buffers records: the ACK leaves now.
                    stream.flush().await?;
                }
                Ok(None) => break,
                Err(MllpError::BytesBeforeStart { skip }) => {
                    metrics::counter!("clearway_mllp_framing_errors_total", "kind" => "bytes-before-start")
                        .increment(1);
                    buf.advance(skip.min(buf.len()));
                }
                Err(e) => {
                    metrics::counter!("clearway_mllp_framing_errors_total", "kind" => "fatal").increment(1);
                    return Err(ConnectionEnd::Framing(e));
                }
            }
        }
        if shutdown.is_cancelled() {
            return Ok(());
        }
        if buf.capacity() - buf.len() < 16 * 1024 {
            buf.reserve(64 * 1024);
        }
        let n = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            n = stream.read_buf(&mut buf) => n?,
        };
        if n == 0 {
            return Ok(());
        }
    }
}

/// Records one audit event for an MLLP message, durably, before its ACK
/// goes out (or the connection closes without one). The message's effect
/// is already durable: if the event cannot be recorded the ACK still goes,
/// and the failure is counted.
async fn audit(
    svc: &Services,
    partner: &PartnerId,
    identity: Option<&Identity>,
    handled: &Result<(String, Option<String>), ConnectionEnd>,
) {
    let Some(sink) = svc.audit.as_ref() else { return };
    let fingerprint = identity.and_then(|i| i.fingerprint.as_deref());
    let actor = clearway_core::audit::AuditActor {
        principal: partner.to_string(),
        kind: "partner".into(),
        role: clearway_core::access::Role::Submitter.as_str().into(),
        credential: fingerprint.map(|f| f.chars().take(12).collect()),
        // Plaintext: the listener's own partner (loopback, or TLS ended
        // upstream).
        auth: if fingerprint.is_some() { "mtls" } else { "listener" }.into(),
    };
    let mut event = clearway_core::audit::AuditEvent::new("mllp", "MLLP message", "C", actor);
    event.purpose = Some("TREAT".into());
    event.tenant = Some(partner.to_string());
    match handled {
        Ok((ack, transaction)) => {
            let kind = ack_kind(ack);
            event.outcome = if kind == "AA" || kind == "CA" { "success" } else { "failure" }.into();
            event.status = Some(kind.into());
            if let Some(t) = transaction {
                event.entity.push(clearway_core::audit::AuditEntity { kind: "transaction".into(), id: t.clone() });
            }
        }
        Err(_) => {
            event.outcome = "failure".into();
            event.status = Some("no-ack".into());
        }
    }
    if let Err(e) = sink.append(&event).await {
        metrics::counter!("clearway_audit_failures_total").increment(1);
        tracing::error!(error = %clearway_core::error::chain(&e), "audit event of an mllp message not recorded");
    }
}

/// Accepts one message and returns the ACK to send, with the transaction
/// it became (if it became one).
async fn handle(
    svc: &Services,
    partner: &PartnerId,
    payload: Bytes,
) -> Result<(String, Option<String>), ConnectionEnd> {
    let sub = Submission {
        partner: partner.clone(),
        body: payload.clone(),
        content_type: Some("application/hl7-v2".into()),
        idempotency_key: None,
        channel: Channel::Mllp,
        traceparent: None,
        audit: None,
    };
    match accept::accept(svc, sub).await {
        Ok(Outcome::Accepted { hl7_ack: Some(ack), record, .. }) => {
            metrics::counter!("clearway_mllp_acks_total", "kind" => ack_kind(&ack)).increment(1);
            tracing::debug!(transaction_id = %record.id, partner = %partner, "mllp message accepted");
            Ok((ack, Some(record.id.to_string())))
        }
        Ok(Outcome::Duplicate { ack: Some(ack), original, .. }) => {
            metrics::counter!("clearway_mllp_acks_total", "kind" => "replayed").increment(1);
            tracing::debug!(transaction_id = %original, partner = %partner, "mllp duplicate: original ACK replayed");
            Ok((ack, Some(original.to_string())))
        }
        Ok(Outcome::Duplicate { original, .. }) => {
            // A duplicate of something that arrived without an ACK on record
            // (over HTTP): acknowledge it as the original would have been.
            let now = time::OffsetDateTime::now_utc();
            Ok((accept::intake_hl7_ack(&payload, &original, now), Some(original.to_string())))
        }
        Ok(_) => Err(ConnectionEnd::NotDurable),
        // Not HL7 at all: answer AR with the reason, keep the connection
        // (the sender must not resend it forever).
        Err(accept::Refusal::BadRequest { detail, .. }) => {
            metrics::counter!("clearway_mllp_acks_total", "kind" => "AR").increment(1);
            tracing::info!(partner = %partner, "mllp frame refused: not an HL7 message");
            Ok((accept::refusal_hl7_ack(&payload, &detail, time::OffsetDateTime::now_utc()), None))
        }
        Err(r) => {
            tracing::warn!(partner = %partner, refusal = ?r, "mllp message not accepted");
            Err(ConnectionEnd::NotDurable)
        }
    }
}

fn ack_kind(ack: &str) -> &'static str {
    let code = ack.split('\r').find(|s| s.starts_with("MSA")).and_then(|s| s.get(4..6)).unwrap_or("");
    match code {
        "AA" => "AA",
        "AE" => "AE",
        "AR" => "AR",
        "CA" => "CA",
        "CE" => "CE",
        "CR" => "CR",
        _ => "other",
    }
}
