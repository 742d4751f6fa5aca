//! The `http` connector: a payer's own real-time endpoint. Each inquiry is
//! forwarded as a one-inquiry 270 or 276 (POST, `application/edi-x12`) and
//! the 271 or 277 read back into an answer. The caller's gate bounds the time, the
//! rate and the concurrency; an answer that cannot be read counts as the
//! payer failing (stale answer or AAA 42 follow).

use crate::UpstreamError;
use clearway_core::{ClaimStatusRequest, EligibilityRequest};
use clearway_formats::x12::build::{self, Controls, EligibilityOutcome, Envelope};
use clearway_formats::x12::{AnalyzeOptions, Delimiters, Document, analyze};
use time::{OffsetDateTime, PrimitiveDateTime};
use tracing::Instrument;

/// Largest 271 read from a payer.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// AAA03 reject reason codes (X12 element 901) as static strings.
const AAA_REASONS: &[&str] = &[
    "04", "15", "33", "35", "41", "42", "43", "44", "45", "46", "47", "48", "49", "50", "51", "52", "53", "54", "55",
    "56", "57", "58", "60", "61", "62", "63", "64", "65", "66", "67", "68", "69", "70", "71", "72", "73", "74", "75",
    "76", "77", "78", "79", "80", "97", "T4",
];
/// AAA04 follow-up action codes (X12 element 889).
const AAA_ACTIONS: &[&str] = &["C", "N", "P", "R", "S", "W", "X", "Y"];

fn known(list: &[&'static str], v: &str, default: &'static str) -> &'static str {
    list.iter().find(|c| **c == v).copied().unwrap_or(default)
}

/// Asks the payer at `url` about one inquiry.
pub async fn eligibility(
    client: &reqwest::Client,
    url: &str,
    our_id: &str,
    r: &EligibilityRequest,
    now: OffsetDateTime,
) -> Result<EligibilityOutcome, UpstreamError> {
    let o = Outgoing::new(our_id, r.payer_id.as_deref(), r.trace_number.as_deref(), now);
    let body = build::request270(r, &o.env, &o.reference, o.controls, o.at);
    read_271(&exchange(client, url, body).await?)
}

/// The envelope, BHT reference, control numbers and time of a request
/// made to a payer.
struct Outgoing {
    env: Envelope,
    reference: String,
    controls: Controls,
    at: PrimitiveDateTime,
}

impl Outgoing {
    fn new(our_id: &str, payer: Option<&str>, trace: Option<&str>, now: OffsetDateTime) -> Self {
        let payer = payer.unwrap_or("UNKNOWN");
        let seed = format!("{}|{}|{}", now.unix_timestamp_nanos(), trace.unwrap_or(""), payer);
        let controls = Controls::derived(seed.as_bytes());
        Outgoing {
            env: envelope_to(our_id, payer),
            reference: format!("{:09}", controls.interchange),
            controls,
            at: PrimitiveDateTime::new(now.date(), now.time()),
        }
    }
}

fn envelope_to(our_id: &str, payer: &str) -> Envelope {
    let clean = |s: &str| s.chars().filter(char::is_ascii_alphanumeric).take(15).collect::<String>();
    Envelope {
        sender_qualifier: "ZZ".into(),
        sender_id: clean(our_id),
        receiver_qualifier: "ZZ".into(),
        receiver_id: clean(payer),
        group_sender: clean(our_id),
        group_receiver: clean(payer),
        usage: "P".into(),
        delimiters: Delimiters::default(),
    }
}

/// POSTs an X12 request and reads the answer, bounded.
async fn exchange(client: &reqwest::Client, url: &str, body: Vec<u8>) -> Result<Vec<u8>, UpstreamError> {
    exchange_as(client, url, "application/edi-x12", body).await
}

/// POSTs `body` as `content_type` and reads the answer (bounded).
pub(crate) async fn exchange_as(
    client: &reqwest::Client,
    url: &str,
    content_type: &str,
    body: Vec<u8>,
) -> Result<Vec<u8>, UpstreamError> {
    let span = tracing::info_span!("payer call", otel.kind = "client", content_type, status = tracing::field::Empty);
    let mut req = client.post(url).header("content-type", content_type);
    if let Some(tp) = clearway_core::telemetry::traceparent(&span, None) {
        req = req.header(clearway_core::telemetry::TRACEPARENT, tp);
    }
    let mut resp = req.body(body).send().instrument(span.clone()).await.map_err(|e| {
        UpstreamError::Unavailable(if e.is_timeout() { "timeout".into() } else { "unreachable".into() })
    })?;
    span.record("status", resp.status().as_u16());
    if !resp.status().is_success() {
        return Err(UpstreamError::Unavailable(format!("payer answered {}", resp.status().as_u16())));
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|_| UpstreamError::Unavailable("response cut off".into()))? {
        if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(UpstreamError::Unavailable("response too large".into()));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// Asks the payer at `url` about one claim: a one-inquiry 276, its 277
/// read back. `ours` is our name and id as the information receiver.
pub async fn claim_status(
    client: &reqwest::Client,
    url: &str,
    ours: (&str, &str),
    r: &ClaimStatusRequest,
    now: OffsetDateTime,
) -> Result<crate::local::ClaimStatus, UpstreamError> {
    let o = Outgoing::new(ours.1, r.payer_id.as_deref(), r.trace_number.as_deref(), now);
    let body = build::request276(r, &o.env, ours, &o.reference, o.controls, o.at);
    read_277(&exchange(client, url, body).await?)
}

/// The status a payer's 277 gives for its (first) claim.
pub fn read_277(bytes: &[u8]) -> Result<crate::local::ClaimStatus, UpstreamError> {
    let analysis = analyze(bytes, &AnalyzeOptions::default());
    let answer = analysis.documents().find_map(|d| match d {
        Document::ClaimStatusResponse(r) if matches!(r.level.as_str(), "22" | "23") && !r.statuses.is_empty() => {
            Some(r.as_ref().clone())
        }
        _ => None,
    });
    let Some(a) = answer else { return Err(UpstreamError::Unavailable("no claim status in the 277".into())) };
    let st = &a.statuses[0];
    Ok(crate::local::ClaimStatus {
        category: st.category.clone(),
        status: st.code.clone(),
        entity: st.entity.clone(),
        effective: None,
        charge: st.charge,
        paid: st.paid,
        adjudicated: None,
        payer_claim_control_number: a.payer_claim_control_number.clone(),
    })
}

/// The answer a payer's 271 gives for its (first) subscriber.
pub fn read_271(bytes: &[u8]) -> Result<EligibilityOutcome, UpstreamError> {
    let analysis = analyze(bytes, &AnalyzeOptions::default());
    let answer = analysis.documents().find_map(|d| match d {
        Document::EligibilityResponse(r) => Some(r.as_ref().clone()),
        _ => None,
    });
    let Some(a) = answer else { return Err(UpstreamError::Unavailable("no 271 answer in the response".into())) };
    if let Some(rej) = a.rejections.first() {
        let reason = known(AAA_REASONS, &rej.reason, "42");
        let action = known(AAA_ACTIONS, rej.action.as_deref().unwrap_or("R"), "R");
        return Ok(if matches!(rej.level.as_str(), "20" | "21") {
            EligibilityOutcome::PayerRejected { reason, action }
        } else {
            EligibilityOutcome::SubscriberRejected { reason, action }
        });
    }
    if let Some(b) = a.benefits.iter().find(|b| b.code == "1") {
        return Ok(EligibilityOutcome::Active {
            plan: b.plan.clone(),
            begin: None,
            end: None,
            insurance_type: b.insurance_type.clone(),
        });
    }
    if let Some(b) = a.benefits.iter().find(|b| b.code == "6") {
        return Ok(EligibilityOutcome::Inactive { plan: b.plan.clone(), end: None });
    }
    Err(UpstreamError::Unavailable("the 271 states neither active nor inactive coverage".into()))
}

/// An HTTP client for calling one payer: `base` with the payer's TLS
/// settings (`[payers.ID] tls_ca_file`: only these CAs instead of the web
/// PKI roots; `tls_client_cert_file` / `tls_client_key_file`: our client
/// certificate). Errors name the file and the problem.
pub fn payer_client(
    base: reqwest::ClientBuilder,
    tls: &clearway_core::config::OutboundTls,
) -> Result<reqwest::Client, String> {
    let read =
        |p: &std::path::Path| std::fs::read(p).map_err(|e| format!("{}: cannot read it ({})", p.display(), e.kind()));
    let mut b = base;
    if let Some(ca) = &tls.ca_file {
        let certs = reqwest::Certificate::from_pem_bundle(&read(ca)?)
            .map_err(|_| format!("{}: not a PEM bundle of CA certificates", ca.display()))?;
        if certs.is_empty() {
            return Err(format!("{}: no certificate in it", ca.display()));
        }
        b = b.tls_certs_only(certs);
    }
    if let Some((cert, key)) = &tls.client_cert {
        let mut pem = read(cert)?;
        pem.push(b'\n');
        pem.extend(read(key)?);
        let id = reqwest::Identity::from_pem(&pem)
            .map_err(|_| format!("{} with {}: not a PEM certificate and private key", cert.display(), key.display()))?;
        b = b.identity(id);
    }
    b.build().map_err(|e| format!("payer HTTPS client: {e}"))
}

/// One HTTP client per payer with its own TLS settings, and a shared one
/// for every other payer.
#[derive(Debug, Clone)]
pub struct PayerClients {
    default: reqwest::Client,
    per_payer: std::collections::HashMap<String, reqwest::Client>,
}

impl PayerClients {
    /// `base` makes a builder with the caller's timeouts and pools. Fails
    /// (naming the file) when a payer's TLS files cannot be used: `serve`
    /// checks this at start-up.
    pub fn new(
        base: impl Fn() -> reqwest::ClientBuilder,
        config: &clearway_core::config::Config,
    ) -> Result<Self, String> {
        let default = base().build().map_err(|e| format!("HTTP client: {e}"))?;
        let mut per_payer = std::collections::HashMap::new();
        for (id, p) in &config.payers {
            if !p.tls.is_default() {
                let client = payer_client(base(), &p.tls).map_err(|e| format!("payers.{id}: {e}"))?;
                per_payer.insert(id.clone(), client);
            }
        }
        Ok(PayerClients { default, per_payer })
    }

    /// Never falls back to the web PKI roots for a payer whose own TLS
    /// settings cannot be used: such a payer gets a client that trusts no
    /// server (every call fails, as the payer failing), the others the
    /// shared client. `serve` refuses to start in this case anyway.
    pub fn new_or_failing(base: impl Fn() -> reqwest::ClientBuilder, config: &clearway_core::config::Config) -> Self {
        match PayerClients::new(&base, config) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(problem = %e, "payer TLS settings unusable: calls to those payers will fail");
                let default = base().build().unwrap_or_else(|_| reqwest::Client::new());
                let failing = base().tls_certs_only(Vec::new()).build().unwrap_or_else(|_| reqwest::Client::new());
                let per_payer = config
                    .payers
                    .iter()
                    .filter(|(_, p)| !p.tls.is_default())
                    .map(|(id, p)| (id.clone(), payer_client(base(), &p.tls).unwrap_or_else(|_| failing.clone())))
                    .collect();
                PayerClients { default, per_payer }
            }
        }
    }

    /// The client for a payer (its canonical id).
    pub fn get(&self, payer: &str) -> &reqwest::Client {
        self.per_payer.get(payer).unwrap_or(&self.default)
    }
}

/// Checks every payer's TLS files (at start-up, in every role: one that
/// cannot be used stops `serve` with the payer and the file).
pub fn check_payer_tls(config: &clearway_core::config::Config) -> Result<(), String> {
    PayerClients::new(reqwest::Client::builder, config).map(|_| ())
}
