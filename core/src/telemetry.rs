//! Trace context across processes: a W3C `traceparent` accepted at intake,
//! kept in the queue pointer and the transaction's record, and continued by
//! whichever process picks the work up, so one transaction is one trace
//! from intake to the payer's answer.
//!
//! Spans are `tracing` spans. The binary exports them over OTLP when
//! `[telemetry]` names an endpoint (a `tracing-opentelemetry` layer); the
//! functions here only read and set their OpenTelemetry context, and do
//! nothing when no such layer is installed. A `traceparent` that came in is
//! then still kept and passed on unchanged, so a process that does export
//! continues the caller's trace.
//!
//! No PHI in spans: span fields are ids, formats, counts and codes, the
//! same rule as log lines.

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use std::collections::HashMap;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The W3C header (and carrier field) name.
pub const TRACEPARENT: &str = "traceparent";

/// `traceparent` when it is a valid W3C trace context (version `00`, or a
/// later version read as `00`; ids not all zero), normalised to lower case.
pub fn parse(traceparent: &str) -> Option<String> {
    let cx = extract(traceparent);
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| format_context(sc))
}

/// The trace id (32 hex digits) of a valid `traceparent`.
pub fn trace_id(traceparent: &str) -> Option<String> {
    let cx = extract(traceparent);
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// Makes `span` a child of the remote span `traceparent` names (when it is
/// valid and spans are exported).
pub fn set_parent(span: &tracing::Span, traceparent: Option<&str>) {
    if let Some(tp) = traceparent {
        let cx = extract(tp);
        if cx.span().span_context().is_valid() {
            let _ = span.set_parent(cx);
        }
    }
}

/// Links `span` to the span `traceparent` names (another trace: a payer
/// batch to each transaction whose claims it carries).
pub fn add_link(span: &tracing::Span, traceparent: &str) {
    let cx = extract(traceparent);
    let remote = cx.span();
    let sc = remote.span_context();
    if sc.is_valid() {
        span.add_link(sc.clone());
    }
}

/// Whether `span` is exported (it has an OpenTelemetry context): work done
/// only for spans (reading what to link) is skipped otherwise.
pub fn is_exported(span: &tracing::Span) -> bool {
    span.context().span().span_context().is_valid()
}

/// The `traceparent` to pass on from `span`: its own context when spans are
/// exported, otherwise `inherited` (the one that came in) unchanged.
pub fn traceparent(span: &tracing::Span, inherited: Option<&str>) -> Option<String> {
    let cx = span.context();
    let own = cx.span();
    let sc = own.span_context();
    if sc.is_valid() { Some(format_context(sc)) } else { inherited.and_then(parse) }
}

fn extract(traceparent: &str) -> opentelemetry::Context {
    if !well_formed(traceparent) {
        return opentelemetry::Context::new();
    }
    let carrier = HashMap::from([(TRACEPARENT.to_string(), traceparent.to_string())]);
    TraceContextPropagator::new().extract(&carrier)
}

/// The header's shape (W3C Trace Context, section 3.2): lower-case hex
/// fields of 2, 32, 16 and 2 digits; a later version may add fields after a
/// `-`. (The SDK's propagator accepts ids of the wrong length.)
fn well_formed(tp: &str) -> bool {
    let b = tp.as_bytes();
    let hex = |r: std::ops::Range<usize>| b[r].iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    b.len() >= 55
        && (b.len() == 55 || (b[55] == b'-' && &b[..2] != b"00"))
        && [2, 35, 52].iter().all(|&i| b[i] == b'-')
        && hex(0..2)
        && hex(3..35)
        && hex(36..52)
        && hex(53..55)
}

fn format_context(sc: &opentelemetry::trace::SpanContext) -> String {
    // The propagator's own formatting, so both directions agree.
    let cx = opentelemetry::Context::new().with_remote_span_context(sc.clone());
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove(TRACEPARENT).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_contexts_are_kept_and_bad_ones_refused() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(parse(tp).as_deref(), Some(tp));
        assert_eq!(parse(&tp.to_uppercase()), None, "upper-case hex is not valid W3C trace context");
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes-next";
        assert_eq!(parse(later).as_deref(), Some(tp), "a later version is read as version 00");
        assert_eq!(trace_id(tp).as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        for bad in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "John Doe",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e47366-0f067aa0ba902b7-01",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
            assert_eq!(trace_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn without_an_exporter_the_incoming_context_is_passed_on() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        let span = tracing::info_span!("intake");
        set_parent(&span, Some(tp));
        assert_eq!(traceparent(&span, Some(tp)).as_deref(), Some(tp));
        assert_eq!(traceparent(&span, Some("garbage")), None);
        assert_eq!(traceparent(&span, None), None);
    }

    proptest::proptest! {
        #[test]
        fn any_string_is_answered_without_panic(s in ".{0,80}") {
            let _ = parse(&s);
            let _ = trace_id(&s);
        }

        #[test]
        fn formatted_contexts_round_trip(t in 1u128.., s in 1u64.., sampled: bool) {
            let tp = format!("00-{t:032x}-{s:016x}-{:02x}", u8::from(sampled));
            proptest::prop_assert_eq!(parse(&tp), Some(tp.clone()));
        }
    }
}
