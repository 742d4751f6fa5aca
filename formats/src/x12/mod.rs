//! ASC X12 005010: streaming reader, envelope checks, SNIP 1-2 validation,
//! typed views and acknowledgement builders.

pub mod analyze;
pub mod batch;
pub mod build;
pub mod codes;
pub mod exchange;
pub mod isa;
pub mod reader;
pub mod spec;
pub mod synth;
pub mod validate;
pub mod viewer;
pub mod views;

pub use analyze::{Analysis, AnalyzeOptions, Sink, analyze, analyze_from, analyze_into};
pub use isa::{Delimiters, IsaHeader};
pub use reader::{ReadError, Segment, SegmentReader};
pub use views::Document;

/// Fuzzing entry point (also driven by the property tests): runs the whole
/// X12 pipeline on arbitrary bytes and checks its invariants: no panic, and
/// every acknowledgement built for the input is itself a valid interchange.
#[doc(hidden)]
pub fn fuzz_x12(data: &[u8]) {
    use time::macros::datetime;
    let a = analyze(data, &AnalyzeOptions::default());
    let at = datetime!(2024-01-15 12:00);
    for ic in &a.interchanges {
        let controls = build::Controls::derived(data);
        let ta1 = build::ta1(&ic.report, controls, at);
        let back = analyze(&ta1, &AnalyzeOptions::default());
        assert!(back.totals.fatal.is_none() && back.interchanges.len() == 1, "TA1 must re-read");
        if let Some(ack) = build::ack999(ic, controls, at) {
            let back = analyze(&ack, &AnalyzeOptions::default());
            assert!(
                back.accepted(),
                "999 must validate: {:?}\n{}",
                back.sets()
                    .flat_map(|s| crate::report::set_issues(&s.report, None))
                    .map(|i| i.message)
                    .collect::<Vec<_>>(),
                String::from_utf8_lossy(&ack)
            );
        }
    }
    // The round trip's readers of untrusted files: payer answers, and the
    // claims taken out of a submitter's 837 (re-enveloped, they stay
    // within the limits the builder promises).
    let _ = batch::read_answers(data);
    for set in batch::claim_fragments(data) {
        let claims: Vec<&batch::ClaimFragment> = set.claims.iter().flatten().collect();
        assert!(claims.len() <= set.claims.len());
        for c in &claims {
            assert!(c.claim.starts_with("CLM"), "a claim fragment starts at its CLM");
            assert!(!c.billing.contains('\r'), "fragments are printable ASCII");
        }
    }
    let mut out = Vec::new();
    let mut report = crate::report::X12Report::new(&mut out, true);
    let totals = analyze_into(data, &AnalyzeOptions::default(), &mut report);
    if let Ok(accepted) = report.finish(totals.fatal.as_ref()) {
        let v: Result<serde_json::Value, _> = serde_json::from_slice(&out);
        assert!(v.is_ok_and(|v| v["accepted"] == accepted), "report must be one JSON object");
    }
    // The console's viewer: bounded, and masked means masked (a masked
    // element's value is never in the description).
    let options = viewer::ViewOptions { reveal: false, max_segments: 200, interchange_notes: true };
    let v = viewer::view(data, options);
    assert!(v.segments.len() <= 200 && v.segments.len() <= v.total_segments);
    assert_eq!(v.truncated, v.total_segments > v.segments.len());
    let revealed = viewer::view(data, viewer::ViewOptions { reveal: true, ..options });
    assert_eq!(revealed.total_segments, v.total_segments);
    for (m, r) in v.segments.iter().zip(&revealed.segments) {
        for (a, b) in m.elements.iter().zip(&r.elements) {
            if let (viewer::Shown::Masked(n), viewer::Shown::Clear(text)) = (&a.value, &b.value) {
                assert_eq!(*n, text.chars().count(), "a mask is as long as its value");
            }
        }
    }
}
