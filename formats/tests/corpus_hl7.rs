//! HL7 v2 conformance against the public sample corpus.
//!
//! Every manifest entry with `"format": "hl7v2"` is split, parsed and
//! checked against the facts the manifest computed independently (message
//! count, MSH-9/10/12, segment id counts, delimiters, MSA, PID-3/PID-5) and
//! against what the upstream project's own tests expect of the sample
//! (python-hl7's addressing and batch errors, the MLLP reader returning the
//! inner message, ...). Every non-ACK message is acknowledged and the ACK
//! checked; a few ACKs and a validation summary are insta snapshots.

mod common;

use clearway_formats::hl7::{
    self, AckCode, AckMode, AckSpec, AckView, AdtView, Batch, BatchError, DftView, Limits, Message, OrmView, OruView,
    Severity, SiuView, Version, build_ack, decode_frame, split, validate,
};
use serde_json::Value as Json;
use std::collections::BTreeMap;

const TIMESTAMP: &str = "20240102030405";

/// The payload to parse: the file, or the inside of its MLLP frame.
fn payload(entry: &Json, bytes: &[u8]) -> Vec<u8> {
    let framed = entry["computed"]["anomalies"]
        .as_array()
        .is_some_and(|a| a.iter().any(|x| x.as_str().is_some_and(|s| s.contains("MLLP"))));
    if !framed {
        return bytes.to_vec();
    }
    let frame = decode_frame(bytes, 1 << 20)
        .unwrap_or_else(|e| panic!("{}: {e}", entry["file"]))
        .unwrap_or_else(|| panic!("{}: incomplete frame", entry["file"]));
    // test_readblock: the reader returns exactly the inner message.
    assert_eq!(frame.consumed, bytes.len());
    assert_eq!(frame.payload, 1..bytes.len() - 2);
    bytes[frame.payload].to_vec()
}

fn split_ok<'a>(file: &str, bytes: &'a [u8]) -> Batch<'a> {
    split(bytes, &Limits::default()).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn text(m: &Message<'_>, path: &str) -> Option<String> {
    m.get(path).map(|v| v.as_str().into_owned())
}

fn decoded(m: &Message<'_>, path: &str) -> Option<String> {
    m.get(path).map(|v| v.decode().into_owned())
}

/// Envelope segment ids in stream order.
fn envelope(batch: &Batch<'_>) -> Vec<String> {
    let mut out = Vec::new();
    let mut push = |s: &Option<hl7::Segment<'_>>| {
        if let Some(s) = s {
            out.push(s.id().to_string());
        }
    };
    push(&batch.file_header);
    for g in &batch.groups {
        push(&g.header);
        push(&g.trailer);
    }
    push(&batch.file_trailer);
    out
}

/// Segment id counts over envelopes and messages.
fn segment_counts(batch: &Batch<'_>) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for id in envelope(batch) {
        *counts.entry(id).or_insert(0) += 1;
    }
    for m in batch.messages() {
        for s in m.segments() {
            *counts.entry(s.id().to_string()).or_insert(0) += 1;
        }
    }
    counts
}

#[test]
fn every_hl7_entry_matches_the_manifest() {
    let entries = common::entries("hl7v2");
    assert!(entries.len() >= 30, "only {} hl7v2 entries", entries.len());
    let mut checked_bad = 0;
    for entry in &entries {
        let file = entry["file"].as_str().unwrap_or_default();
        let computed = &entry["computed"];
        let bytes = payload(entry, &common::read(file));
        let expectation = entry["source_expectation"].as_str().unwrap_or_default();

        if let Some(msg) = expectation.split("must fail with '").nth(1).and_then(|s| s.split('\'').next()) {
            let err = match split(&bytes, &Limits::default()) {
                Err(e) => e,
                Ok(b) => panic!("{file}: expected failure, got {} messages", b.message_count()),
            };
            let shown = err.to_string();
            assert!(
                shown.to_lowercase().starts_with(&msg.to_lowercase()),
                "{file}: {shown:?} does not start with {msg:?}"
            );
            checked_bad += 1;
            continue;
        }

        let batch = split_ok(file, &bytes);
        assert_eq!(batch.verify(), Ok(()), "{file}");
        assert_eq!(batch.message_count() as u64, computed["messages"].as_u64().unwrap_or(u64::MAX), "{file}: messages");
        let expected_msh = computed["msh"].as_array().cloned().unwrap_or_default();
        for (m, want) in batch.messages().zip(&expected_msh) {
            for f in ["MSH-9", "MSH-10", "MSH-12"] {
                assert_eq!(text(m, f).as_deref(), want[f].as_str(), "{file}: {f}");
            }
            assert_eq!(m.encoding_characters(), computed["encoding_characters"].as_str().unwrap_or_default(), "{file}");
            assert_eq!(text(m, "MSH-2"), computed["encoding_characters"].as_str().map(str::to_string), "{file}");
            assert_eq!(text(m, "MSH-1").as_deref(), computed["field_separator"].as_str(), "{file}");
        }
        let want_counts: BTreeMap<String, u64> = computed["segment_ids"]
            .as_object()
            .map(|o| o.iter().map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0))).collect())
            .unwrap_or_default();
        assert_eq!(segment_counts(&batch), want_counts, "{file}: segment ids");
        let want_envelope: Vec<String> = computed["envelope_segments"]
            .as_array()
            .map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect())
            .unwrap_or_default();
        assert_eq!(envelope(&batch), want_envelope, "{file}: envelope");

        let first = batch.messages().next().unwrap_or_else(|| panic!("{file}: no message"));
        for f in ["PID-3", "PID-5"] {
            if let Some(want) = computed[f].as_str() {
                assert_eq!(text(first, f).as_deref(), Some(want), "{file}: {f}");
            }
        }
        if let Some(msa) = computed["MSA"].as_array() {
            let view = AckView::read(first).unwrap_or_else(|| panic!("{file}: no MSA"));
            assert_eq!(Some(&*view.code), msa[0].as_str(), "{file}");
            assert_eq!(Some(&*view.acknowledged_control_id), msa[1].as_str(), "{file}");
            assert_eq!(view.text.as_deref(), msa.get(2).and_then(|t| t.as_str()), "{file}");
        }

        // Every non-ACK message gets an ACK that echoes it correctly.
        for m in batch.messages().filter(|m| m.kind() != hl7::MessageKind::Ack) {
            check_ack(file, m);
        }
    }
    assert_eq!(checked_bad, 3, "bad batch samples");
}

/// The ACK of `m`: MSA-2 = MSH-10, sender and receiver swapped, MSH-9 per
/// version, processing id and version echoed, and the ACK itself valid.
fn check_ack(file: &str, m: &Message<'_>) {
    let issues = validate(m);
    let code = AckCode::for_issues(&issues, false);
    let ack = build_ack(m, &AckSpec { code, control_id: "ACK-1", timestamp: TIMESTAMP, text: None, issues: &issues });
    let parsed = Message::parse(ack.as_bytes()).unwrap_or_else(|e| panic!("{file}: {e}"));
    assert_eq!(parsed.delimiters(), m.delimiters(), "{file}");
    assert_eq!(text(&parsed, "MSA-2"), text(m, "MSH-10"), "{file}: MSA-2");
    assert_eq!(text(&parsed, "MSA-1").as_deref(), Some(code.as_str()));
    assert_eq!(text(&parsed, "MSH-3"), text(m, "MSH-5"), "{file}");
    assert_eq!(text(&parsed, "MSH-4"), text(m, "MSH-6"), "{file}");
    assert_eq!(text(&parsed, "MSH-5"), text(m, "MSH-3"), "{file}");
    assert_eq!(text(&parsed, "MSH-6"), text(m, "MSH-4"), "{file}");
    assert_eq!(text(&parsed, "MSH-7").as_deref(), Some(TIMESTAMP));
    assert_eq!(text(&parsed, "MSH-10").as_deref(), Some("ACK-1"));
    assert_eq!(text(&parsed, "MSH-11"), text(m, "MSH-11"), "{file}");
    assert_eq!(text(&parsed, "MSH-12"), text(m, "MSH-12"), "{file}");
    let trigger = m.message_type().trigger;
    let version = m.parsed_version().unwrap_or_else(|| panic!("{file}: version"));
    let want = if version >= Version::V2_4 {
        format!("ACK^{trigger}^ACK")
    } else if version >= Version::V2_3 {
        format!("ACK^{trigger}")
    } else {
        "ACK".to_string()
    };
    let want = want.replace('^', &char::from(m.delimiters().component).to_string());
    assert_eq!(text(&parsed, "MSH-9"), Some(want), "{file}: MSH-9");
    assert_eq!(parsed.count("ERR"), issues.len(), "{file}: one ERR per issue");
    let ack_issues = validate(&parsed);
    assert!(ack_issues.iter().all(|i| !i.is_error()), "{file}: ACK invalid: {ack_issues:?}");
}

fn corpus_message(file: &str) -> Vec<u8> {
    common::read(&format!("hl7v2/{file}"))
}

fn only_message<'a>(file: &str, bytes: &'a [u8]) -> Message<'a> {
    let mut msgs = split_ok(file, bytes).into_messages();
    assert_eq!(msgs.len(), 1, "{file}");
    msgs.remove(0)
}

#[test]
fn python_hl7_repetition_and_subcomponent_addressing() {
    let bytes = corpus_message("oru-r01-pyhl7-repetition-subcomponent.hl7");
    let m = only_message("rep", &bytes);
    assert_eq!(decoded(&m, "PID-3.2.2").as_deref(), Some("Sub-Component2"));
    assert_eq!(decoded(&m, "PID-3.2.1").as_deref(), Some("Sub-Component1"));
    let pid3: Vec<String> = m
        .segment("PID")
        .and_then(|s| s.field(3))
        .map(|f| f.repetition(1).into_iter().flat_map(|r| r.components()).map(|c| c.as_str().into_owned()).collect())
        .unwrap_or_default();
    assert_eq!(pid3, ["Component1", "Sub-Component1&Sub-Component2", "Component3"]);
    let pid4: Vec<String> = m
        .segment("PID")
        .and_then(|s| s.field(4))
        .map(|f| f.repetitions().map(|r| r.decode().into_owned()).collect())
        .unwrap_or_default();
    assert_eq!(pid4, ["Repeat1", "Repeat2"]);
}

#[test]
fn python_hl7_glucose_sample() {
    let bytes = corpus_message("oru-r01-pyhl7-glucose.hl7");
    let m = only_message("glucose", &bytes);
    assert_eq!(m.segment_count(), 5);
    let obx = m.segments().nth(3).unwrap_or_else(|| panic!("segment 4"));
    assert_eq!(obx.id(), "OBX");
    assert_eq!(
        obx.field(3).map(|f| f.as_str().into_owned()).as_deref(),
        Some("1554-5^GLUCOSE^POST 12H CFST:MCNC:PT:SER/PLAS:QN")
    );
    assert_eq!(text(&m, "MSH-9").as_deref(), Some("ORU^R01"));
    // The parsed message covers the input exactly (minus the final terminator).
    assert_eq!(m.raw(), bytes.strip_suffix(b"\r").unwrap_or(&bytes));
    // PID-7 '196203520' is not a date: a data type warning, not an error.
    let issues = validate(&m);
    assert!(
        issues
            .iter()
            .any(|i| i.code == 102 && i.segment == "PID" && i.field == Some(7) && i.severity == Severity::Warning),
        "{issues:?}"
    );
    let v = OruView::read(&m).unwrap_or_else(|| panic!("ORU"));
    assert_eq!((v.obr_count, v.obx_count), (1, 2));
    assert_eq!(v.placer_order_numbers.expose(), &["845439"]);
    assert_eq!(v.filler_order_numbers.expose(), &["1045813"]);
}

#[test]
fn python_hl7_batches_and_files() {
    let bytes = corpus_message("adt-a04-pyhl7-batch-bhs-bts.hl7");
    let b = split_ok("batch", &bytes);
    assert_eq!(b.message_count(), 1);
    let header = b.groups[0].header.unwrap_or_else(|| panic!("BHS"));
    assert_eq!(header.id(), "BHS");
    assert_eq!(header.field(4).map(|f| f.as_str().into_owned()).as_deref(), Some("ABCHS"));
    assert_eq!(b.groups[0].trailer.map(|t| t.id()), Some("BTS"));

    let bytes = corpus_message("adt-a04-pyhl7-batch-two-messages.hl7");
    let b = split_ok("batch1", &bytes);
    let ids: Vec<_> = b.messages().filter_map(|m| text(m, "MSH-10")).collect();
    assert_eq!(ids, ["12334456778890", "12334456778891"]);
    assert_eq!(b.groups[0].declared_message_count(), Some(2));

    let bytes = corpus_message("adt-a04-pyhl7-two-messages-no-envelope.hl7");
    let b = split_ok("batch2", &bytes);
    let ids: Vec<_> = b.messages().filter_map(|m| text(m, "MSH-10")).collect();
    assert_eq!(ids, ["12334456778890", "12334456778891"]);
    assert!(b.file_header.is_none() && b.groups.iter().all(|g| g.header.is_none()));

    let bytes = corpus_message("adt-a04-pyhl7-file-fhs-two-batches.hl7");
    let b = split_ok("file1", &bytes);
    assert_eq!(b.batches().count(), 2);
    let counts: Vec<_> = b.batches().map(|g| (g.declared_message_count(), g.messages.len())).collect();
    assert_eq!(counts, [(Some(2), 2), (Some(1), 1)]);
    let fhs = b.file_header.unwrap_or_else(|| panic!("FHS"));
    assert_eq!(fhs.field(4).map(|f| f.as_str().into_owned()).as_deref(), Some("ABCHS"));
    assert_eq!(b.file_trailer.map(|t| t.id()), Some("FTS"));
}

#[test]
fn bad_batches_fail_with_positioned_errors() {
    type Check = fn(&BatchError) -> bool;
    let cases: [(&str, Check); 3] = [
        (
            "adt-a04-pyhl7-bad-batch-no-msh.hl7",
            |e| matches!(e, BatchError::SegmentBeforeHeader { id, at } if id.as_str() == "EVN" && at.segment == 2),
        ),
        (
            "adt-a04-pyhl7-bad-batch-nested-bhs.hl7",
            |e| matches!(e, BatchError::NestedBatchHeader { at } if at.segment == 4),
        ),
        (
            "adt-a04-pyhl7-bad-file-nested-fhs.hl7",
            |e| matches!(e, BatchError::MultipleFileHeaders { at } if at.segment == 5),
        ),
    ];
    for (file, check) in cases {
        let bytes = corpus_message(file);
        match split(&bytes, &Limits::default()) {
            Err(e) => assert!(check(&e), "{file}: {e:?}"),
            Ok(_) => panic!("{file}: expected an error"),
        }
    }
}

#[test]
fn duplicate_control_id_pair_shares_msh10() {
    let a = corpus_message("adt-a01-herophilus-patient1.hl7");
    let b = corpus_message("adt-a01-herophilus-patient1-update-dup-control-id.hl7");
    let (a, b) = (only_message("a", &a), only_message("b", &b));
    assert_eq!(a.control_id(), b.control_id());
    assert_eq!(a.control_id().as_deref(), Some("22139243"));
    assert_ne!(a.raw(), b.raw());
}

#[test]
fn nonstandard_encoding_characters() {
    let bytes = corpus_message("ack-hapi-v21-nonstandard-encoding.hl7");
    let m = only_message("v21", &bytes);
    assert_eq!(m.delimiters().subcomponent, Some(b'}'));
    assert_eq!(m.delimiters().escape, Some(b'\\'));
    assert_eq!(m.message_type().trigger, "");
    assert_eq!(m.kind(), hl7::MessageKind::Ack);

    let bytes = corpus_message("bar-p01-hapi-three-encoding-chars.hl7");
    let m = only_message("three", &bytes);
    assert_eq!(m.delimiters().escape, None);
    assert_eq!(m.delimiters().subcomponent, Some(b'}'));
    assert_eq!(text(&m, "PID-3.1").as_deref(), Some("479305169"));
    let ack = build_ack(&m, &spec(AckCode::ApplicationAccept, &[]));
    assert!(ack.starts_with("MSH|^~}|RADIOLOGY|MIR1|ADMISSION|ADT1|"), "{ack}");

    let bytes = corpus_message("bar-p01-hapi-nonstandard-subcomponent.hl7");
    let m = only_message("sub", &bytes);
    assert_eq!(text(&m, "PID-3.1").as_deref(), Some("429314294"));
    assert_eq!(validate(&m).iter().filter(|i| i.is_error()).count(), 0);
}

#[test]
fn framing_and_field_edge_cases() {
    // No final terminator; PID-11 has two repetitions, the second ending in '^'.
    let bytes = corpus_message("adt-a01-hapi-docs-example.hl7");
    let m = only_message("docs", &bytes);
    assert_eq!(m.segments().last().map(|s| s.id()), Some("ACC"));
    let pid11 = m.segment("PID").and_then(|s| s.field(11)).unwrap_or_else(|| panic!("PID-11"));
    assert_eq!(pid11.repetition_count(), 2);
    assert_eq!(decoded(&m, "PID-11(2).7").as_deref(), Some("M"));

    // MSH-3 keeps its trailing space.
    let bytes = corpus_message("orm-o01-hapi-v22.hl7");
    let m = only_message("v22", &bytes);
    assert_eq!(m.sending_application().as_deref(), Some("DMCOE "));
    assert_eq!(OrmView::read(&m).and_then(|v| v.order_control().map(String::from)).as_deref(), Some("NW"));

    // BOM + LF + trailing spaces.
    let bytes = corpus_message("adt-a01-msconv-v23-bom.hl7");
    let m = only_message("bom", &bytes);
    assert_eq!(text(&m, "MSH-10").as_deref(), Some("599102"));
    assert_eq!(m.count("IN1"), 3);

    // Fractional seconds and a time zone in MSH-7 are a valid date/time.
    let bytes = corpus_message("ack-a01-herophilus-v26.hl7");
    let m = only_message("v26", &bytes);
    assert_eq!(validate(&m), []);

    // Trailing field separators.
    let bytes = corpus_message("ack-a01-pyhl7-docs-aa-with-text.hl7");
    let m = only_message("text", &bytes);
    assert_eq!(m.segment("MSA").map(|s| s.field_count()), Some(4));
}

#[test]
fn escapes_in_corpus_decode() {
    let bytes = corpus_message("adt-a01-msconv-01.hl7");
    let m = only_message("msconv", &bytes);
    assert_eq!(decoded(&m, "PV1-14").as_deref(), Some("NHS Provider-General (inc.A&E-this Hosp)"));
    assert_eq!(text(&m, "PV1-14").as_deref(), Some("NHS Provider-General (inc.A\\T\\E-this Hosp)"));
    let bytes = corpus_message("oru-r01-msconv-01.hl7");
    let m = only_message("oru", &bytes);
    let nte = m
        .segments_with_id("NTE")
        .filter_map(|s| s.field(3))
        .map(|f| f.decode().into_owned())
        .find(|t| t.contains("STEC"))
        .unwrap_or_default();
    assert!(nte.contains("E.coli O157:H7 & other STECs"), "{nte}");
}

#[test]
fn views_on_corpus() {
    let bytes = corpus_message("adt-a01-pyhl7-v23-insurance.hl7");
    let m = only_message("adt", &bytes);
    let v = AdtView::read(&m).unwrap_or_else(|| panic!("ADT"));
    assert_eq!(v.event, "A01");
    let ids: Vec<_> = v
        .patient_ids
        .expose()
        .iter()
        .map(|p| (p.id.as_str(), p.assigning_authority.as_deref(), p.id_type.as_deref()))
        .collect();
    assert_eq!(ids, [("2148790", Some("MSH_MRN"), Some("MR")), ("162840", Some("MSH_EMPI"), Some("CM"))]);
    assert_eq!(v.patient_class.as_deref(), Some("I"));
    assert!(!format!("{v:?}").contains("2148790"));

    let bytes = corpus_message("oru-r01-msconv-lab-bom.hl7");
    let v = OruView::read(&only_message("lab", &bytes)).unwrap_or_else(|| panic!("ORU"));
    assert_eq!((v.obr_count, v.obx_count), (2, 10));
    assert_eq!(v.placer_order_numbers.expose(), &["88502218", "855238581"]);

    let bytes = corpus_message("siu-s12-msconv-01.hl7");
    let v = SiuView::read(&only_message("siu", &bytes)).unwrap_or_else(|| panic!("SIU"));
    assert_eq!(v.event, "S12");
    assert_eq!(v.placer_appointment_id.expose().as_deref(), Some("12345"));
    assert_eq!(v.filler_appointment_id.expose().as_deref(), Some("36996"));
    assert_eq!(v.filler_status.as_deref(), Some("Booked"));

    let bytes = corpus_message("dft-p03-msconv-01.hl7");
    let v = DftView::read(&only_message("dft", &bytes)).unwrap_or_else(|| panic!("DFT"));
    assert_eq!(v.ft1_count, 2);
    assert_eq!(v.amounts, [Some(100.into()), Some(120.into())]);

    let bytes = corpus_message("orm-o01-msconv-01.hl7");
    let v = OrmView::read(&only_message("orm", &bytes)).unwrap_or_else(|| panic!("ORM"));
    assert_eq!(v.order_control(), Some("NW"));
    assert_eq!(v.orders[0].placer_order_number.expose().as_deref(), Some("1101"));
}

#[test]
fn ack_modes_in_corpus() {
    let bytes = corpus_message("oru-r01-msconv-01.hl7");
    let m = only_message("oru", &bytes);
    assert_eq!(
        m.ack_mode(),
        AckMode::Enhanced { accept: hl7::AckCondition::Always, application: hl7::AckCondition::Never }
    );
    let bytes = corpus_message("adt-a01-herophilus-patient1.hl7");
    assert_eq!(only_message("p1", &bytes).ack_mode(), AckMode::Original);
}

fn spec<'s>(code: AckCode, issues: &'s [hl7::Hl7Issue]) -> AckSpec<'s> {
    AckSpec { code, control_id: "ACK-1", timestamp: TIMESTAMP, text: None, issues }
}

/// An ACK with CR terminators shown as line breaks.
fn readable(ack: &str) -> String {
    ack.replace('\r', "\n")
}

#[test]
fn snapshot_aa_original_mode() {
    let bytes = corpus_message("adt-a01-herophilus-v251.hl7");
    let m = only_message("v251", &bytes);
    let issues = validate(&m);
    assert_eq!(issues, []);
    assert_eq!(m.ack_mode(), AckMode::Original);
    let code = AckCode::for_issues(&issues, false);
    assert_eq!(code, AckCode::ApplicationAccept);
    insta::assert_snapshot!("ack_aa_original_v251", readable(&build_ack(&m, &spec(code, &issues))));
}

#[test]
fn snapshot_ae_with_err_v251() {
    // A v2.5.1 ADT^A01 with PV1-2 removed and a bad PID-7: ERR-2/3/4 layout.
    let bytes = corpus_message("adt-a01-herophilus-v251.hl7");
    let text = String::from_utf8_lossy(&bytes).replace("PV1|1|E|", "PV1|1||").replace("|19780615|M|", "|1978061|M|");
    let m = only_message("v251", text.as_bytes());
    let issues = validate(&m);
    let code = AckCode::for_issues(&issues, false);
    assert_eq!(code, AckCode::ApplicationError);
    let ack = build_ack(&m, &AckSpec { text: Some("message has errors"), ..spec(code, &issues) });
    insta::assert_snapshot!("ack_ae_err_v251", readable(&ack));
}

#[test]
fn snapshot_ca_enhanced_mode() {
    // MSH-15 = AL: the sender wants a commit acknowledgement.
    let bytes = corpus_message("orm-o01-hapi-v22.hl7");
    let m = only_message("v22", &bytes);
    let AckMode::Enhanced { accept, .. } = m.ack_mode() else {
        panic!("expected enhanced mode");
    };
    assert!(accept.requires_ack(true));
    let issues = validate(&m);
    assert_eq!(issues, []);
    let code = AckCode::for_issues(&issues, true);
    assert_eq!(code, AckCode::CommitAccept);
    insta::assert_snapshot!("ack_ca_enhanced_v22", readable(&build_ack(&m, &spec(code, &issues))));
}

#[test]
fn snapshot_ar_v23() {
    // v2.3: ERR-1 layout. Rejected as if the processing id were unsupported.
    let bytes = corpus_message("adt-a04-msconv-redox-bom.hl7");
    let m = only_message("redox", &bytes);
    let mut issues = validate(&m);
    issues.push(hl7::Hl7Issue::field(Severity::Error, 202, "MSH", 1, 11, Some(1), "unsupported processing id"));
    let code = AckCode::for_issues(&issues, false);
    assert_eq!(code, AckCode::ApplicationReject);
    insta::assert_snapshot!("ack_ar_v23", readable(&build_ack(&m, &spec(code, &issues))));
}

#[test]
fn snapshot_validation_summary() {
    let mut out = String::new();
    for entry in common::entries("hl7v2") {
        let file = entry["file"].as_str().unwrap_or_default();
        let bytes = payload(&entry, &common::read(file));
        let batch = match split(&bytes, &Limits::default()) {
            Ok(b) => b,
            Err(e) => {
                out.push_str(&format!("{file}: split error ({} / {})\n", e, e.hl7_error_code()));
                continue;
            }
        };
        for m in batch.messages() {
            let t = m.message_type();
            let issues = validate(m);
            out.push_str(&format!(
                "{file}: {}^{} {:?} {:?} -> {}\n",
                t.code,
                t.trigger,
                m.kind(),
                m.ack_mode().is_enhanced(),
                AckCode::for_issues(&issues, false).as_str()
            ));
            for i in issues {
                out.push_str(&format!(
                    "    {} {} {}[{}] field {:?} component {:?}: {}\n",
                    i.severity.code(),
                    i.code,
                    i.segment,
                    i.segment_sequence,
                    i.field,
                    i.component,
                    i.message
                ));
            }
        }
    }
    insta::assert_snapshot!("validation_summary", out);
}
