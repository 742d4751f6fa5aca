//! `clearway ack`: the acknowledgement Clearway would send for an input.

use crate::cli::{AckKind, CodesetArgs};
use anyhow::Context;
use clearway_formats::edits::codesets::CodeSets;
use clearway_formats::edits::{self, Policy};
use clearway_formats::x12::analyze::Interchange;
use clearway_formats::x12::build::{self, ClaimAck, Controls, Source};
use clearway_formats::x12::{AnalyzeOptions, Document, analyze};
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use time::{OffsetDateTime, PrimitiveDateTime};

pub fn run(file: &Path, kind: AckKind, at: Option<&str>, codesets: &CodesetArgs) -> anyhow::Result<ExitCode> {
    let input = super::read_all(file)?;
    let at = timestamp(at)?;
    let out = match kind {
        AckKind::Ta1 | AckKind::Ack999 => x12(&input, kind, at, &CodeSets::default())?,
        AckKind::Ack277ca => x12(&input, kind, at, &super::codesets::load_files(codesets)?)?,
        AckKind::Hl7 => hl7(&input, at)?,
        AckKind::Fhir => fhir(&input, at)?,
    };
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&out).context("cannot write output")?;
    stdout.flush().context("cannot write output")?;
    Ok(ExitCode::SUCCESS)
}

fn timestamp(at: Option<&str>) -> anyhow::Result<PrimitiveDateTime> {
    let t = match at {
        Some(s) => OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .with_context(|| "--time must be RFC 3339, e.g. 2024-01-15T12:00:00Z")?,
        None => OffsetDateTime::now_utc(),
    };
    let t = t.to_offset(time::UtcOffset::UTC);
    Ok(PrimitiveDateTime::new(t.date(), t.time()))
}

/// X12 acknowledgements, one interchange of output per input interchange.
fn x12(input: &[u8], kind: AckKind, at: PrimitiveDateTime, codes: &CodeSets) -> anyhow::Result<Vec<u8>> {
    let analysis = analyze(input, &AnalyzeOptions::default());
    if analysis.interchanges.is_empty() {
        let msg = analysis.totals.fatal.as_ref().map_or("no interchange found", |f| f.message.as_str());
        anyhow::bail!("cannot acknowledge: {msg}");
    }
    let mut out = Vec::new();
    for (n, ic) in analysis.interchanges.iter().enumerate() {
        let mut key = input.len().to_le_bytes().to_vec();
        key.extend_from_slice(ic.report.control_number.as_bytes());
        key.extend_from_slice(&(n as u64).to_le_bytes());
        let controls = Controls::derived(&key);
        match kind {
            AckKind::Ta1 => out.extend(build::ta1(&ic.report, controls, at)),
            AckKind::Ack999 => {
                if let Some(a) = build::ack999(ic, controls, at) {
                    out.extend(a);
                } else {
                    // Nothing to acknowledge at group level: say so with a TA1.
                    out.extend(build::ta1(&ic.report, controls, at));
                }
            }
            _ => out.extend(ack277ca(ic, controls, at, codes)),
        }
    }
    Ok(out)
}

fn ack277ca(ic: &Interchange, controls: Controls, at: PrimitiveDateTime, codes: &CodeSets) -> Vec<u8> {
    let policy = Policy::default();
    let cx = edits::Context { received: at.date(), codes, policy: &policy };
    let source = Source { name: "CLEARWAY".into(), id: ic.report.isa.receiver_id().to_string() };
    let mut out = Vec::new();
    let mut n = 0u32;
    for g in &ic.groups {
        for s in g.sets.iter().filter(|s| s.report.header.id == "837" && s.report.accepted()) {
            let claims: Vec<ClaimAck<'_>> = s
                .documents
                .iter()
                .filter_map(|d| match d {
                    Document::Claim(c) => Some(c.as_ref()),
                    _ => None,
                })
                .enumerate()
                .map(|(i, c)| ClaimAck {
                    claim: c,
                    decision: edits::decide(&edits::check(c, &cx)),
                    clearinghouse_trace: format!(
                        "{}{:04}{:05}",
                        controls.interchange,
                        s.report.header.control_number,
                        i + 1
                    ),
                })
                .collect();
            let reference = format!("{}{:04}", controls.interchange, n);
            let set_controls = Controls {
                interchange: controls.interchange.wrapping_add(n) % 999_999_999 + 1,
                group: controls.group,
                first_set: 1,
            };
            out.extend(build::ack277ca(&build::Ack277Ca {
                interchange: &ic.report.isa,
                group: &g.report.header,
                set: &s.report,
                claims: &claims,
                source: &source,
                reference: &reference,
                received: at.date(),
                controls: set_controls,
                at,
            }));
            n += 1;
        }
    }
    out
}

/// HL7 ACKs, one per message: original mode AA/AE/AR, or the commit
/// acknowledgement CA/CE/CR when the message asks for enhanced mode.
fn hl7(input: &[u8], at: PrimitiveDateTime) -> anyhow::Result<Vec<u8>> {
    use clearway_formats::hl7::{self, AckCode, AckMode, AckSpec};
    let stamp = format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    );
    let mut out = Vec::new();
    match hl7::split(input, &hl7::Limits::default()) {
        Ok(batch) => {
            for (n, m) in batch.messages().enumerate() {
                let issues = hl7::validate(m);
                let enhanced = !matches!(m.ack_mode(), AckMode::Original);
                let code = AckCode::for_issues(&issues, enhanced);
                let control = format!("ACK{:06}{n:04}", Controls::derived(input).interchange % 1_000_000);
                let ack = hl7::build_ack(
                    m,
                    &AckSpec { code, control_id: &control, timestamp: &stamp, text: None, issues: &issues },
                );
                out.extend_from_slice(ack.as_bytes());
                out.push(b'\n');
            }
        }
        Err(e) => {
            let issue = hl7::Hl7Issue::segment(
                hl7::Severity::Error,
                hl7::validate::SEGMENT_SEQUENCE_ERROR,
                "MSH",
                1,
                e.to_string(),
            );
            let control = format!("ACK{:06}", Controls::derived(input).interchange % 1_000_000);
            let ack = hl7::build_ack_for_unparseable(
                input,
                &AckSpec {
                    code: AckCode::ApplicationReject,
                    control_id: &control,
                    timestamp: &stamp,
                    text: None,
                    issues: &[issue],
                },
            );
            out.extend_from_slice(ack.as_bytes());
            out.push(b'\n');
        }
    }
    Ok(out)
}

/// FHIR: a ClaimResponse (queued) for a processable Claim, a batch-response
/// Bundle for a Bundle, and an OperationOutcome otherwise.
fn fhir(input: &[u8], at: PrimitiveDateTime) -> anyhow::Result<Vec<u8>> {
    use clearway_formats::fhir::{self, ClaimResponseSpec, FhirDocument, ResponseOutcome};
    let created = at.assume_utc();
    let id = format!("cw-{:09}", Controls::derived(input).interchange);
    let value = match fhir::read_resource(input, &fhir::Limits::default()) {
        Err(e) => fhir::operation_outcome(&[e.to_issue()]),
        Ok(FhirDocument::Claim(c)) if c.claim.is_some() => {
            match ClaimResponseSpec::for_claim(&c, id, created, ResponseOutcome::Queued)
                .map(|s| fhir::claim_response(&s))
            {
                Some(Ok(v)) => v,
                _ => FhirDocument::Claim(c).operation_outcome(),
            }
        }
        Ok(FhirDocument::Bundle(b)) if b.processable => {
            let mut entries = Vec::new();
            for (i, c) in b.claims() {
                let response = ClaimResponseSpec::for_claim(c, format!("{id}-{i}"), created, ResponseOutcome::Queued)
                    .filter(|_| c.claim.is_some())
                    .and_then(|s| fhir::claim_response(&s).ok());
                let (resource, status) = match response {
                    Some(r) => (r, "202 Accepted"),
                    None => (fhir::operation_outcome(&c.issues), "400 Bad Request"),
                };
                entries.push(serde_json::json!({ "resource": resource, "response": { "status": status } }));
            }
            serde_json::json!({ "resourceType": "Bundle", "id": id, "type": "batch-response", "entry": entries })
        }
        Ok(doc) => doc.operation_outcome(),
    };
    let mut out = serde_json::to_vec_pretty(&value)?;
    out.push(b'\n');
    Ok(out)
}
