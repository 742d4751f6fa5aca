//! An HL7 v2 file described for a person (the console's viewer): each
//! message's segments with their names and numbered fields (`PID-5`), the
//! validator's findings (the ones its ACK's ERR segments report) pinned on
//! the segment and field they are about, and PHI masked unless revealed.
//!
//! Masking is by segment: the message header, acknowledgement and error
//! segments (MSH, MSA, ERR) and each segment's set id are shown; every other
//! field may hold PHI (names, ids, dates, addresses, results, notes) and is
//! masked, its length kept. Pure: no I/O; bounded like the X12 viewer.

use super::{Limits, split, validate};
use crate::x12::viewer::{Shown, ViewElement, ViewError, ViewOptions, ViewSegment, Viewed, pin_element};

/// Segments shown in clear: they carry control data, never a patient's.
const CLEAR: &[&str] = &["MSH", "MSA", "ERR"];

/// A segment's name (v2.5.1), for those met in Clearway's messages.
fn name(id: &str) -> Option<&'static str> {
    Some(match id {
        "MSH" => "Message Header",
        "MSA" => "Message Acknowledgment",
        "ERR" => "Error",
        "EVN" => "Event Type",
        "PID" => "Patient Identification",
        "PD1" => "Patient Additional Demographic",
        "NK1" => "Next of Kin / Associated Parties",
        "PV1" => "Patient Visit",
        "PV2" => "Patient Visit - Additional Information",
        "MRG" => "Merge Patient Information",
        "AL1" => "Patient Allergy Information",
        "DG1" => "Diagnosis",
        "PR1" => "Procedures",
        "GT1" => "Guarantor",
        "IN1" => "Insurance",
        "IN2" => "Insurance Additional Information",
        "IN3" => "Insurance Additional Information, Certification",
        "ORC" => "Common Order",
        "OBR" => "Observation Request",
        "OBX" => "Observation/Result",
        "NTE" => "Notes and Comments",
        "SPM" => "Specimen",
        "SCH" => "Scheduling Activity Information",
        "RGS" => "Resource Group",
        "AIS" => "Appointment Information - Service",
        "AIG" => "Appointment Information - General Resource",
        "AIL" => "Appointment Information - Location Resource",
        "AIP" => "Appointment Information - Personnel Resource",
        "RXA" => "Pharmacy/Treatment Administration",
        "RXR" => "Pharmacy/Treatment Route",
        "FT1" => "Financial Transaction",
        "TXA" => "Transcription Document Header",
        "ROL" => "Role",
        "FHS" => "File Header",
        "FTS" => "File Trailer",
        "BHS" => "Batch Header",
        "BTS" => "Batch Trailer",
        _ => return None,
    })
}

/// Describes `payload` (one message or a batch file).
pub fn view(payload: &[u8], options: ViewOptions) -> Viewed {
    let mut out = Viewed::default();
    let limits = Limits::default();
    let batch = match split(super::trim_leading(payload), &limits) {
        Ok(b) => b,
        Err(e) => {
            out.unreadable = Some(e.to_string());
            return out;
        }
    };
    for (n, msg) in batch.messages().enumerate() {
        let label = msg.message_type();
        let heading = format!("Message Header: message {} · {}^{}", n + 1, label.code, label.trigger);
        let first = out.segments.len();
        for seg in msg.segments() {
            out.total_segments += 1;
            if out.segments.len() >= options.max_segments {
                out.truncated = true;
                continue;
            }
            let id = seg.id().to_string();
            let clear = options.reveal || CLEAR.contains(&id.as_str());
            let elements = seg
                .fields()
                .enumerate()
                .filter(|(_, f)| !f.raw().is_empty())
                .map(|(i, f)| {
                    let text = f.as_str().into_owned();
                    let set_id = i == 0 && !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
                    ViewElement {
                        label: format!("{id}-{}", i + 1),
                        name: None,
                        value: if clear || set_id { Shown::Clear(text) } else { Shown::Masked(text.chars().count()) },
                        error: None,
                    }
                })
                .collect();
            out.segments.push(ViewSegment {
                index: out.total_segments,
                name: if id == "MSH" { Some(heading.clone()) } else { name(&id).map(str::to_string) },
                depth: if id == "MSH" { 0 } else { 1 },
                position: Some(seg.position() as u32),
                loop_id: None,
                loop_name: None,
                id,
                elements,
                errors: vec![],
                claim: None,
            });
        }
        // The validator's findings, where its ACK's ERR-2 points.
        for issue in validate(msg) {
            let mut seen = 0;
            let Some(seg) = out.segments[first..].iter_mut().find(|s| {
                if s.id == issue.segment {
                    seen += 1;
                }
                s.id == issue.segment && seen == issue.segment_sequence
            }) else {
                continue;
            };
            let code = issue.code.to_string();
            match issue.field {
                Some(f) => {
                    let label = format!("{}-{f}", seg.id);
                    pin_element(seg, label, (format!("ERR {code}"), issue.message.clone()));
                }
                None => seg.errors.push(ViewError { source: "ERR", code, message: issue.message }),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADT: &str = "MSH|^~\\&|ADT|NORTH|CLEARWAY|HUB|20240101120000||ADT^A01^ADT_A01|CTL0001|P|2.5.1\r\
EVN|A01|20240101120000\r\
PID|1||12345^^^NORTH^MR||DOE^JANE||19800101|F\r\
PV1|1|I\r";

    #[test]
    fn fields_are_numbered_and_phi_masked_until_revealed() {
        let v = view(ADT.as_bytes(), ViewOptions::default());
        assert_eq!((v.total_segments, v.segments.len()), (4, 4));
        let pid = v.segments.iter().find(|s| s.id == "PID").unwrap();
        assert_eq!(pid.name.as_deref(), Some("Patient Identification"));
        let field = |s: &ViewSegment, l: &str| s.elements.iter().find(|e| e.label == l).unwrap().value.clone();
        assert_eq!(field(pid, "PID-1"), Shown::Clear("1".into()), "a set id is not PHI");
        assert_eq!(field(pid, "PID-5"), Shown::Masked("DOE^JANE".len()));
        assert_eq!(field(pid, "PID-7"), Shown::Masked(8));
        let msh = &v.segments[0];
        assert_eq!(field(msh, "MSH-10"), Shown::Clear("CTL0001".into()));
        assert_eq!(msh.name.as_deref(), Some("Message Header: message 1 · ADT^A01"));
        let all = format!("{:?}", v.segments);
        assert!(!all.contains("DOE") && !all.contains("19800101"), "masked means absent");
        let r = view(ADT.as_bytes(), ViewOptions { reveal: true, ..ViewOptions::default() });
        let pid = r.segments.iter().find(|s| s.id == "PID").unwrap();
        assert_eq!(field(pid, "PID-5"), Shown::Clear("DOE^JANE".into()));
    }

    #[test]
    fn the_validators_findings_sit_on_their_field() {
        // PID-5 (required) missing.
        let bad = ADT.replace("||DOE^JANE||", "||||");
        let v = view(bad.as_bytes(), ViewOptions::default());
        let pid = v.segments.iter().find(|s| s.id == "PID").unwrap();
        let e = pid.elements.iter().find(|e| e.label == "PID-5").expect("the missing field shown");
        assert!(e.error.as_ref().is_some_and(|(c, _)| c == "ERR 101"), "{:?}", pid.elements);
    }

    #[test]
    fn garbage_is_unreadable_not_a_panic() {
        let v = view(b"not hl7 at all", ViewOptions::default());
        assert!(v.unreadable.is_some() && v.segments.is_empty());
    }
}
