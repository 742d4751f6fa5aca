//! Golden snapshots of the acknowledgements and responses Clearway builds,
//! from deterministic synthetic input. A change to any of them is a change
//! partners see: review the diff (`cargo insta review`) before accepting.
#![allow(clippy::unwrap_used)]

use clearway_core::{ClaimStatusRequest, EligibilityRequest};
use clearway_formats::edits::{self, Context, Policy, codesets::CodeSets};
use clearway_formats::x12::build::{
    self, ClaimAck, ClaimStatusAnswer, Controls, EligibilityAnswer, EligibilityOutcome, Source,
};
use clearway_formats::x12::synth::{self, Kind};
use clearway_formats::x12::{AnalyzeOptions, Document, analyze};
use time::macros::{date, datetime};

const AT: time::PrimitiveDateTime = datetime!(2024-01-15 12:00);
/// The day claims count as received for the claim edits: after every
/// synthetic and corpus date of service.
const RECEIVED: time::Date = time::macros::date!(2026 - 01 - 15);
const CONTROLS: Controls = Controls { interchange: 123_456_789, group: 4242, first_set: 1 };

fn lines(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap().replace('~', "~\n")
}

fn sample(kind: Kind, count: usize) -> Vec<u8> {
    let mut out = vec![];
    synth::write(&mut out, kind, count, 5).unwrap();
    out
}

#[test]
fn ta1_and_accepting_999() {
    let a = analyze(&sample(Kind::Professional837, 2), &AnalyzeOptions::default());
    let ic = &a.interchanges[0];
    insta::assert_snapshot!("ta1_accepted", lines(&build::ta1(&ic.report, CONTROLS, AT)));
    insta::assert_snapshot!("999_accepted", lines(&build::ack999(ic, CONTROLS, AT).unwrap()));
}

#[test]
fn rejecting_999_with_ik3_ik4_and_ctx() {
    let text = String::from_utf8(sample(Kind::Professional837, 2)).unwrap();
    let bad =
        text.replacen("***11:B:1*", "***11:B:7*", 1).replacen("*UN*1***1~", "*XX*1***1~", 1).replacen("N3*", "N9*", 1);
    let a = analyze(bad.as_bytes(), &AnalyzeOptions::default());
    insta::assert_snapshot!("999_rejected", lines(&build::ack999(&a.interchanges[0], CONTROLS, AT).unwrap()));
}

#[test]
fn claim_acknowledgement_277ca() {
    let text = String::from_utf8(sample(Kind::Professional837, 3)).unwrap();
    // Unbalance the second claim so it is rejected (A7:400), and point the
    // third claim's second line at a diagnosis it does not have (a line
    // rejection: A3:247 on the claim, A7:477 in its 2220D).
    let mut bad = text.replacen("CLM*PCN00000002*", "CLM*PCN00000002*1", 1);
    let claim3 = bad.find("CLM*PCN00000003*").unwrap();
    let sv1 = claim3 + bad[claim3..].find("SV1*").unwrap();
    let end = sv1 + bad[sv1..].find('~').unwrap();
    assert!(bad[sv1..end].ends_with("***1"), "{}", &bad[sv1..end]);
    bad.insert_str(end, ":9");
    let a = analyze(bad.as_bytes(), &AnalyzeOptions::default());
    let ic = &a.interchanges[0];
    let set = &ic.groups[0].sets[0];
    let claims: Vec<ClaimAck<'_>> = build::claims_of(set)
        .into_iter()
        .enumerate()
        .map(|(i, c)| ClaimAck {
            claim: c,
            decision: edits::judge(
                c,
                &Context { received: RECEIVED, codes: &CodeSets::default(), policy: &Policy::default() },
            ),
            clearinghouse_trace: format!("CW{i:04}"),
        })
        .collect();
    let source = Source { name: "CLEARWAY".into(), id: "CLEARWAYHUB".into() };
    let out = build::ack277ca(&build::Ack277Ca {
        interchange: &ic.report.isa,
        group: &ic.groups[0].report.header,
        set: &set.report,
        claims: &claims,
        source: &source,
        reference: "ACK0001",
        received: date!(2024 - 01 - 15),
        controls: CONTROLS,
        at: AT,
    });
    insta::assert_snapshot!("277ca_mixed", lines(&out));
}

#[test]
fn eligibility_271_active_and_rejected() {
    let a = analyze(&sample(Kind::Eligibility270, 3), &AnalyzeOptions::default());
    let ic = &a.interchanges[0];
    let reqs: Vec<&EligibilityRequest> = a
        .documents()
        .filter_map(|d| match d {
            Document::EligibilityRequest(r) => Some(r.as_ref()),
            _ => None,
        })
        .collect();
    let answers = [
        EligibilityAnswer {
            request: reqs[0],
            outcome: EligibilityOutcome::Active {
                plan: Some("GOLD PLAN".into()),
                begin: Some(date!(2024 - 01 - 01)),
                end: None,
                insurance_type: Some("HM".into()),
            },
        },
        EligibilityAnswer {
            request: reqs[1],
            outcome: EligibilityOutcome::SubscriberRejected { reason: "72", action: "C" },
        },
        EligibilityAnswer {
            request: reqs[2],
            outcome: EligibilityOutcome::Inactive { plan: None, end: Some(date!(2023 - 12 - 31)) },
        },
    ];
    let out = build::response271(&build::Response271 {
        interchange: &ic.report.isa,
        group: &ic.groups[0].report.header,
        reference: "REF270",
        answers: &answers,
        controls: CONTROLS,
        at: AT,
    });
    let back = analyze(&out, &AnalyzeOptions::default());
    assert!(back.accepted(), "{}", lines(&out));
    insta::assert_snapshot!("271_mixed", lines(&out));
}

#[test]
fn claim_status_277() {
    let a = analyze(&sample(Kind::Status276, 2), &AnalyzeOptions::default());
    let ic = &a.interchanges[0];
    let reqs: Vec<&ClaimStatusRequest> = a
        .documents()
        .filter_map(|d| match d {
            Document::ClaimStatusRequest(r) => Some(r.as_ref()),
            _ => None,
        })
        .collect();
    let answers = [
        ClaimStatusAnswer {
            request: reqs[0],
            category: "F1",
            status: "65",
            entity: None,
            effective: date!(2024 - 01 - 10),
            charge: None,
            paid: Some(rust_decimal::Decimal::new(8000, 2)),
            adjudicated: Some(date!(2024 - 01 - 09)),
            payer_claim_control_number: Some("PAYER123".into()),
        },
        ClaimStatusAnswer {
            request: reqs[1],
            category: "D0",
            status: "35",
            entity: None,
            effective: date!(2024 - 01 - 15),
            charge: None,
            paid: None,
            adjudicated: None,
            payer_claim_control_number: None,
        },
    ];
    let out = build::response277(&build::Response277 {
        interchange: &ic.report.isa,
        group: &ic.groups[0].report.header,
        reference: "REF276",
        receiver_name: "CLEARWAY TEST SUBMITTER",
        receiver_id: "CLEARWAYGEN",
        answers: &answers,
        controls: CONTROLS,
        at: AT,
    });
    let back = analyze(&out, &AnalyzeOptions::default());
    assert!(
        back.accepted(),
        "{:?}\n{}",
        back.sets().map(|s| &s.report.segment_errors).collect::<Vec<_>>(),
        lines(&out)
    );
    insta::assert_snapshot!("277_paid_and_not_found", lines(&out));
}

/// Our envelope toward a payer, for the inquiries we forward.
fn to_payer() -> build::Envelope {
    build::Envelope {
        sender_qualifier: "ZZ".into(),
        sender_id: "CLEARWAYHUB".into(),
        receiver_qualifier: "ZZ".into(),
        receiver_id: "ACME01".into(),
        group_sender: "CLEARWAYHUB".into(),
        group_receiver: "ACME01".into(),
        usage: "T".into(),
        delimiters: clearway_formats::x12::Delimiters::default(),
    }
}

/// A 270 forwarded to a payer for one inquiry is valid X279A1 and reads
/// back as the same inquiry.
#[test]
fn forwarded_270_round_trips() {
    let a = analyze(&sample(Kind::Eligibility270, 3), &AnalyzeOptions::default());
    let reqs: Vec<&EligibilityRequest> = a
        .documents()
        .filter_map(|d| match d {
            Document::EligibilityRequest(r) => Some(r.as_ref()),
            _ => None,
        })
        .collect();
    let env = to_payer();
    for r in reqs {
        let out = build::request270(r, &env, "REF1", CONTROLS, AT);
        let back = analyze(&out, &AnalyzeOptions::default());
        assert!(back.accepted(), "{}", lines(&out));
        let again: Vec<&EligibilityRequest> = back
            .documents()
            .filter_map(|d| match d {
                Document::EligibilityRequest(r) => Some(r.as_ref()),
                _ => None,
            })
            .collect();
        assert_eq!(again.len(), 1);
        let (x, y) = (again[0], r);
        assert_eq!(
            (&x.member_id, &x.payer_id, &x.provider_npi, &x.trace_number),
            (&y.member_id, &y.payer_id, &y.provider_npi, &y.trace_number)
        );
        assert_eq!((&x.subscriber, &x.service_types, &x.date), (&y.subscriber, &y.service_types, &y.date));
    }
}

/// A 276 forwarded to a payer for one inquiry is valid X212 and reads back
/// as the same inquiry.
#[test]
fn forwarded_276_round_trips() {
    let a = analyze(&sample(Kind::Status276, 3), &AnalyzeOptions::default());
    let reqs: Vec<&ClaimStatusRequest> = a
        .documents()
        .filter_map(|d| match d {
            Document::ClaimStatusRequest(r) => Some(r.as_ref()),
            _ => None,
        })
        .collect();
    assert_eq!(reqs.len(), 3);
    let env = to_payer();
    for r in reqs {
        let out = build::request276(r, &env, ("CLEARWAY", "CLEARWAYHUB"), "REF1", CONTROLS, AT);
        let back = analyze(&out, &AnalyzeOptions::default());
        assert!(
            back.accepted(),
            "{:?}\n{}",
            back.sets().map(|s| &s.report.segment_errors).collect::<Vec<_>>(),
            lines(&out)
        );
        let again: Vec<&ClaimStatusRequest> = back
            .documents()
            .filter_map(|d| match d {
                Document::ClaimStatusRequest(r) => Some(r.as_ref()),
                _ => None,
            })
            .collect();
        assert_eq!(again.len(), 1);
        let (x, y) = (again[0], r);
        assert_eq!(
            (&x.patient_control_number, &x.member_id, &x.payer_id, &x.trace_number, &x.total_charge, &x.service_date),
            (&y.patient_control_number, &y.member_id, &y.payer_id, &y.trace_number, &y.total_charge, &y.service_date)
        );
    }
}
