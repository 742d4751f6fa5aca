//! Tracing end to end: `serve` exports its spans over OTLP/HTTP to a tiny
//! receiver here; one transaction is one trace across the intake process
//! and the worker process (the trace context rides in the queue pointer),
//! continuing the caller's `traceparent`, with no PHI in any span.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use std::io::{BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{Client, Scratch, Server};

/// One export request as received.
#[derive(Debug, Clone)]
struct Export {
    path: String,
    content_type: String,
    body: Vec<u8>,
}

/// An OTLP/HTTP receiver: records every request and answers `200` with an
/// empty export response.
fn receiver() -> (String, Arc<Mutex<Vec<Export>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
    let seen: Arc<Mutex<Vec<Export>>> = Arc::default();
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let log = log.clone();
            std::thread::spawn(move || {
                stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                while let Some(r) = support::read_request(&mut reader) {
                    assert_eq!(r.header("transfer-encoding"), None, "the exporter sends a length");
                    let (path, body) = (r.path.clone(), r.body.clone());
                    let content_type = r.header("content-type").unwrap_or_default().to_string();
                    log.lock().unwrap().push(Export { path, content_type: content_type.clone(), body });
                    let answer: &[u8] = if content_type.contains("json") { b"{}" } else { b"" };
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
                        answer.len()
                    );
                    let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(answer));
                }
            });
        }
    });
    (url, seen)
}

/// A span as the tests look at it.
#[derive(Debug, Clone)]
struct Span {
    name: String,
    trace_id: String,
    span_id: String,
    parent: String,
    /// `clearway.role` of the process that exported it.
    role: String,
    attributes: Vec<(String, String)>,
    /// Trace ids of the spans it links to.
    links: Vec<String>,
}

impl Span {
    fn attr(&self, k: &str) -> Option<&str> {
        self.attributes.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }
}

fn any_value(v: &opentelemetry_proto::tonic::common::v1::AnyValue) -> String {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    match &v.value {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

/// Every span of protobuf exports.
fn spans(exports: &[Export]) -> Vec<Span> {
    let mut out = Vec::new();
    for e in exports.iter().filter(|e| e.content_type == "application/x-protobuf") {
        let req = ExportTraceServiceRequest::decode(&e.body[..]).expect("an OTLP trace export");
        for rs in req.resource_spans {
            let role = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "clearway.role")
                .and_then(|a| a.value.as_ref())
                .map(any_value)
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for s in ss.spans {
                    out.push(Span {
                        name: s.name,
                        trace_id: hex::encode(&s.trace_id),
                        span_id: hex::encode(&s.span_id),
                        parent: hex::encode(&s.parent_span_id),
                        role: role.clone(),
                        attributes: s
                            .attributes
                            .iter()
                            .map(|a| (a.key.clone(), a.value.as_ref().map(any_value).unwrap_or_default()))
                            .collect(),
                        links: s.links.iter().map(|l| hex::encode(&l.trace_id)).collect(),
                    });
                }
            }
        }
    }
    out
}

/// Waits until the receiver holds spans named `names` in trace `trace`.
fn wait_for(seen: &Mutex<Vec<Export>>, trace: &str, names: &[&str]) -> Vec<Span> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let all = spans(&seen.lock().unwrap());
        let ours: Vec<Span> = all.into_iter().filter(|s| s.trace_id == trace).collect();
        if names.iter().all(|n| ours.iter().any(|s| s.name == *n)) {
            return ours;
        }
        assert!(
            Instant::now() < deadline,
            "trace {trace} lacks some of {names:?}; has {:?}",
            ours.iter().map(|s| &s.name).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn gen_837p(scratch: &Scratch, count: &str, seed: &str) -> String {
    let out = scratch.command().args(["gen", "837p", "--count", count, "--seed", seed]).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

/// What no exported byte may contain: the file's names, member ids and
/// patient control numbers (four characters or more, so that a short one
/// cannot match by chance inside binary ids).
fn assert_no_phi(exports: &[Export], x12: &str) {
    let markers: Vec<String> = support::phi_markers(x12).into_iter().filter(|m| m.len() >= 4).collect();
    assert!(markers.len() >= 6, "the file carries PHI to look for: {markers:?}");
    for e in exports {
        for m in &markers {
            assert!(
                !e.body.windows(m.len()).any(|w| w == m.as_bytes()),
                "PHI ({} bytes) in an exported span batch",
                m.len()
            );
        }
    }
}

#[test]
fn one_transaction_is_one_trace_across_the_intake_and_worker_processes() {
    let scratch = Scratch::new();
    let key = scratch.partner("acme", false);
    let (endpoint, seen) = receiver();
    // Claims batch for their payer within a second (to the outbox).
    scratch.write_config("[routing]\nbatch_window_secs = 1\n\n[payers.ACME01]\n");
    let env = [
        ("CLEARWAY__TELEMETRY__OTLP_ENDPOINT", endpoint.as_str()),
        // The SDK's batch processor reads its delay from the environment.
        ("OTEL_BSP_SCHEDULE_DELAY", "200"),
    ];
    let intake = Server::start_with(&scratch, None, &env, &["--role", "intake"]);
    let worker = Server::start_with(&scratch, None, &env, &["--role", "worker"]);
    let c = Client { addr: intake.http, key };

    // The caller's trace context: its trace continues here.
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let traceparent = format!("00-{trace}-{caller_span}-01");
    let x12 = gen_837p(&scratch, "3", "41");
    let r = c.submit("application/edi-x12", x12.as_bytes(), &[("traceparent", traceparent.as_str())]);
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["transactionId"].as_str().unwrap().to_string();
    let t = c.wait_terminal(&id);
    assert_eq!(t["status"], "accepted", "{t}");
    let kept = t["traceparent"].as_str().unwrap_or_default();
    assert!(kept.starts_with(&format!("00-{trace}-")), "the record keeps its trace: {t}");

    let names = ["intake", "seal", "send work", "process", "read payload", "validate", "claim edits", "store outcome"];
    let ours = wait_for(&seen, trace, &names);
    let one = |name: &str| -> &Span {
        let found: Vec<&Span> = ours.iter().filter(|s| s.name == name).collect();
        assert_eq!(found.len(), 1, "one {name} span: {found:?}");
        found[0]
    };
    let (intake_span, send, process) = (one("intake"), one("send work"), one("process"));
    // Intake continues the caller's span; the worker's span is the child of
    // the queue send, in another process.
    assert_eq!(intake_span.parent, caller_span);
    assert_eq!(intake_span.role, "intake");
    assert_eq!(intake_span.attr("transaction_id"), Some(id.as_str()));
    assert_eq!(intake_span.attr("outcome"), Some("accepted"));
    assert_eq!(intake_span.attr("format"), Some("x12"));
    assert_eq!(send.parent, intake_span.span_id);
    assert_eq!(process.parent, send.span_id, "the queue pointer carries the producer's context");
    assert_eq!(process.role, "worker");
    assert_eq!(process.attr("transaction_id"), Some(id.as_str()));
    for stage in ["read payload", "validate", "store outcome"] {
        assert_eq!(one(stage).parent, process.span_id, "{stage} is a stage of the worker's span");
    }
    assert_eq!(kept, format!("00-{trace}-{}-01", intake_span.span_id), "the record names the intake span");

    // The payer batch carrying its claims is a trace of its own, linked to
    // this one.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let all = spans(&seen.lock().unwrap());
        let batch: Vec<&Span> = all.iter().filter(|s| s.name == "payer batch send").collect();
        if let Some(b) = batch.iter().find(|b| b.links.iter().any(|l| l == trace)) {
            assert_ne!(b.trace_id, trace, "a batch's own trace");
            assert!(b.attr("payer").is_some_and(|p| !p.is_empty()));
            break;
        }
        assert!(Instant::now() < deadline, "no payer batch span links to the transaction: {batch:?}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // A submission without a context starts its own trace; the record
    // names it.
    let x12b = gen_837p(&scratch, "2", "42");
    let r = c.submit("application/edi-x12", x12b.as_bytes(), &[("traceparent", "not a trace context")]);
    assert_eq!(r.status, 202, "an unusable traceparent is ignored, as W3C says: {}", r.text());
    let id2 = r.json()["transactionId"].as_str().unwrap().to_string();
    let t2 = c.wait_terminal(&id2);
    let own = t2["traceparent"].as_str().unwrap().split('-').nth(1).unwrap().to_string();
    assert_ne!(own, trace);
    let second = wait_for(&seen, &own, &["intake", "process"]);
    assert!(second.iter().any(|s| s.name == "intake" && s.parent.is_empty()), "a root span: {second:?}");

    drop((intake, worker));
    let exports = seen.lock().unwrap().clone();
    assert!(exports.iter().all(|e| e.path == "/v1/traces"));
    assert_no_phi(&exports, &x12);
    assert_no_phi(&exports, &x12b);
}

#[test]
fn spans_can_be_exported_as_otlp_json() {
    let scratch = Scratch::new();
    let key = scratch.partner("acme", false);
    let (endpoint, seen) = receiver();
    let server = Server::start(
        &scratch,
        None,
        &[
            ("CLEARWAY__TELEMETRY__OTLP_ENDPOINT", endpoint.as_str()),
            ("CLEARWAY__TELEMETRY__PROTOCOL", "http/json"),
            ("CLEARWAY__TELEMETRY__SERVICE_NAME", "clearway-test"),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ],
    );
    let c = Client { addr: server.http, key };
    let x12 = gen_837p(&scratch, "2", "43");
    let r = c.submit("application/edi-x12", x12.as_bytes(), &[]);
    assert_eq!(r.status, 202, "{}", r.text());
    let t = c.wait_terminal(r.json()["transactionId"].as_str().unwrap());
    let trace = t["traceparent"].as_str().unwrap().split('-').nth(1).unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let exports = seen.lock().unwrap().clone();
        let mut names = Vec::new();
        for e in &exports {
            assert_eq!(e.content_type, "application/json");
            let v: serde_json::Value = serde_json::from_slice(&e.body).unwrap();
            for rs in v["resourceSpans"].as_array().unwrap() {
                let service = rs["resource"]["attributes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|a| a["key"] == "service.name")
                    .map(|a| a["value"]["stringValue"].clone());
                assert_eq!(service, Some(serde_json::json!("clearway-test")));
                for ss in rs["scopeSpans"].as_array().unwrap() {
                    for s in ss["spans"].as_array().unwrap() {
                        if s["traceId"].as_str().is_some_and(|t| t.eq_ignore_ascii_case(&trace)) {
                            names.push(s["name"].as_str().unwrap().to_string());
                        }
                    }
                }
            }
        }
        if names.iter().any(|n| n == "intake") && names.iter().any(|n| n == "process") {
            assert_no_phi(&exports, &x12);
            break;
        }
        assert!(Instant::now() < deadline, "trace {trace} not exported as JSON: {names:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
