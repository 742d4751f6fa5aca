//! Synthetic D.0 requests (no real PHI) in the standard's framing, for
//! tests, benchmarks and the fixtures: header, the patient and insurance
//! segments at the transmission level, then per transaction group (after
//! 0x1D) the claim, pricing and prescriber segments.

use super::validate::overpunch;
use super::{FIELD, GROUP, SEGMENT, fixed};

/// One transaction of a request.
#[derive(Debug, Clone)]
pub struct Claim {
    /// 402-D2 (digits).
    pub rx: String,
    /// 403-D3.
    pub fill: u8,
    /// 407-D7 with qualifier 03 (an 11-digit NDC).
    pub ndc: String,
    /// 442-E7 in thousandths of a unit.
    pub quantity_milli: u64,
    /// 405-D5.
    pub days: u32,
    /// 430-DU.
    pub gross_cents: i64,
    /// 411-DB with qualifier 01.
    pub prescriber_npi: Option<String>,
}

/// A request: E1, B1, B2 or B3.
#[derive(Debug, Clone)]
pub struct Request {
    pub code: String,
    pub bin: String,
    pub pcn: String,
    pub pharmacy_npi: String,
    /// CCYYMMDD.
    pub date_of_service: String,
    pub cardholder: String,
    pub group_id: Option<String>,
    pub date_of_birth: Option<String>,
    pub claims: Vec<Claim>,
}

impl Request {
    /// A B1 of one claim with plausible synthetic values.
    pub fn b1(bin: &str, pcn: &str, rx: &str) -> Request {
        Request {
            code: "B1".into(),
            bin: bin.into(),
            pcn: pcn.into(),
            pharmacy_npi: "1234567893".into(),
            date_of_service: "20261201".into(),
            cardholder: "SYNTH0001".into(),
            group_id: Some("GRP1".into()),
            date_of_birth: Some("19800101".into()),
            claims: vec![Claim {
                rx: rx.into(),
                fill: 0,
                ndc: "00093505601".into(),
                quantity_milli: 30_000,
                days: 30,
                gross_cents: 1250,
                prescriber_npi: Some("1245319599".into()),
            }],
        }
    }
}

/// The request's bytes.
pub fn request(r: &Request) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    let count = r.claims.len().clamp(1, 4);
    out.extend_from_slice(
        format!(
            "{}D0{}{}{}01{}{}{}",
            fixed(&r.bin, 6),
            fixed(&r.code, 2),
            fixed(&r.pcn, 10),
            count,
            fixed(&r.pharmacy_npi, 15),
            fixed(&r.date_of_service, 8),
            fixed("CLEARWAY01", 10)
        )
        .as_bytes(),
    );
    let seg = |out: &mut Vec<u8>, id: &str, fields: &[(&str, String)]| {
        out.extend([SEGMENT, FIELD]);
        out.extend_from_slice(b"AM");
        out.extend_from_slice(id.as_bytes());
        for (k, v) in fields {
            out.push(FIELD);
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(v.as_bytes());
        }
    };
    if r.code != "B2" {
        let mut patient = Vec::new();
        if let Some(d) = &r.date_of_birth {
            patient.push(("C4", d.clone()));
        }
        patient.push(("C5", "1".to_string()));
        seg(&mut out, "01", &patient);
        let mut ins = vec![("C2", r.cardholder.clone())];
        if let Some(g) = &r.group_id {
            ins.push(("C1", g.clone()));
        }
        seg(&mut out, "04", &ins);
    }
    for c in r.claims.iter().take(4) {
        out.push(GROUP);
        let mut claim = vec![("EM", "1".to_string()), ("D2", c.rx.clone())];
        claim.push(("E1", "03".into()));
        claim.push(("D7", c.ndc.clone()));
        claim.push(("D3", format!("{:02}", c.fill)));
        if r.code != "B2" {
            claim.push(("E7", c.quantity_milli.to_string()));
            claim.push(("D5", c.days.to_string()));
        }
        seg(&mut out, "07", &claim);
        if r.code != "B2" {
            seg(&mut out, "11", &[("DU", overpunch(c.gross_cents))]);
            if let Some(npi) = &c.prescriber_npi {
                seg(&mut out, "03", &[("EZ", "01".into()), ("DB", npi.clone())]);
            }
        }
    }
    out
}
