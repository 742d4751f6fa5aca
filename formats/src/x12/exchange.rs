//! What CAQH CORE asks an entity to log of each real-time exchange — the
//! ISA06, ISA08, ISA13, GS02, GS03, GS06, ST02, TRN02 and, if sent, BHT03 of
//! the request (Phase I CORE 156, its FAQ) — and the AAA codes of an answer,
//! read with the segment reader alone (no analysis, no PHI kept: names,
//! member ids and dates are never read).

use super::reader::SegmentReader;
pub use clearway_core::changes::CoreIds;

/// Most segments read looking for the identifiers.
const MAX_SEGMENTS: usize = 256;
/// Most AAA codes kept of one answer.
const MAX_AAA: usize = 64;

fn some(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// The identifiers of a request (the first of each; missing ones `None`).
pub fn core_ids(x12: &[u8]) -> CoreIds {
    let mut ids = CoreIds::default();
    let mut r = SegmentReader::new(x12);
    for _ in 0..MAX_SEGMENTS {
        let Ok(Some(seg)) = r.next_segment() else { break };
        match seg.id() {
            b"ISA" if ids.isa13.is_none() => {
                ids.isa06 = some(seg.str(6));
                ids.isa08 = some(seg.str(8));
                ids.isa13 = some(seg.str(13));
            }
            b"GS" if ids.gs06.is_none() => {
                ids.gs02 = some(seg.str(2));
                ids.gs03 = some(seg.str(3));
                ids.gs06 = some(seg.str(6));
            }
            b"ST" if ids.st02.is_none() => {
                ids.st01 = some(seg.str(1));
                ids.st02 = some(seg.str(2));
            }
            b"BHT" if ids.bht03.is_none() => ids.bht03 = some(seg.str(3)),
            b"TRN" if ids.trn02.is_none() => ids.trn02 = some(seg.str(2)),
            b"NM1" if ids.payer_id.is_none() && seg.str(1) == "PR" => ids.payer_id = some(seg.str(9)),
            _ => {}
        }
        if ids.trn02.is_some() && ids.payer_id.is_some() {
            break;
        }
    }
    ids
}

/// The AAA codes of a 271 or 277, each `<loop>:<AAA03>` with the loop
/// named by the NM1 before it (`2100A` payer, `2100B` provider, `2100C`
/// subscriber, `2100D` dependent; `request` before any NM1).
pub fn aaa_codes(x12: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut at = "request";
    let mut r = SegmentReader::new(x12);
    while let Ok(Some(seg)) = r.next_segment() {
        match seg.id() {
            b"NM1" => {
                at = match seg.str(1) {
                    "PR" => "2100A",
                    "1P" | "FA" | "80" | "2B" | "36" => "2100B",
                    "IL" => "2100C",
                    "03" => "2100D",
                    _ => at,
                }
            }
            b"AAA" if out.len() < MAX_AAA => out.push(format!("{at}:{}", seg.str(3).trim())),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQ: &[u8] = b"ISA*00*          *00*          *ZZ*SUBMITTER      *ZZ*CLEARWAY       *260101*1200*^*00501*000000123*0*P*:~GS*HS*SUB*CW*20260101*1200*77*X*005010X279A1~ST*270*0001*005010X279A1~BHT*0022*13*REF47517*20260101*1200~HL*1**20*1~NM1*PR*2*ACME HEALTH*****PI*PAYER01~HL*2*1*21*1~NM1*1P*2*CLINIC*****XX*1234567893~HL*3*2*22*0~TRN*1*TRACE93175*9877281234~NM1*IL*1*DOE*JANE****MI*M123~SE*10*0001~GE*1*77~IEA*1*000000123~";

    #[test]
    fn reads_the_core_identifiers_and_nothing_about_the_patient() {
        let ids = core_ids(REQ);
        assert_eq!(ids.isa06.as_deref(), Some("SUBMITTER"));
        assert_eq!(ids.isa08.as_deref(), Some("CLEARWAY"));
        assert_eq!(ids.isa13.as_deref(), Some("000000123"));
        assert_eq!(
            (ids.gs02.as_deref(), ids.gs03.as_deref(), ids.gs06.as_deref()),
            (Some("SUB"), Some("CW"), Some("77"))
        );
        assert_eq!((ids.st01.as_deref(), ids.st02.as_deref()), (Some("270"), Some("0001")));
        assert_eq!(ids.bht03.as_deref(), Some("REF47517"));
        assert_eq!(ids.trn02.as_deref(), Some("TRACE93175"));
        assert_eq!(ids.payer_id.as_deref(), Some("PAYER01"));
        let text = format!("{ids:?}");
        assert!(!text.contains("DOE") && !text.contains("M123"));
    }

    #[test]
    fn names_the_loop_of_each_aaa() {
        let isa = &REQ[..REQ.iter().position(|&b| b == b'~').unwrap() + 1];
        let mut x = isa.to_vec();
        x.extend_from_slice(b"ST*271*1~NM1*PR*2*P*****PI*X~AAA*N**42*P~NM1*IL*1*D****MI*M~AAA*Y**72*C~SE*5*1~");
        assert_eq!(aaa_codes(&x), vec!["2100A:42", "2100C:72"]);
        assert!(aaa_codes(b"garbage").is_empty());
        assert_eq!(core_ids(b""), CoreIds::default());
    }
}
