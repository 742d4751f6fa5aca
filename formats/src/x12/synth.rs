//! Deterministic synthetic X12 transactions with fake PHI, for benchmarks,
//! load tests and partner testing (`clearway gen`).
//!
//! The same kind, count and seed always give the same bytes. Output streams
//! to any writer, so a multi-gigabyte file needs no memory. Claims are split
//! into transaction sets of at most [`CLAIMS_PER_SET`] (the 837 guides'
//! recommended maximum), all in one interchange and group. Every generated
//! transaction validates clean; tests hold the generator to that.

use super::validate::npi_check_digit;
use std::io::{self, Write};

/// Claims per 837 transaction set (the TR3's recommended maximum).
pub const CLAIMS_PER_SET: usize = 5000;

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Professional837,
    Institutional837,
    Eligibility270,
    Status276,
    Enrollment834,
}

/// SplitMix64: tiny, fast and deterministic.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

const LAST: &[&str] = &[
    "TESTLAST",
    "SAMPLEMAN",
    "FAKERSON",
    "DUMMYFIELD",
    "MOCKWELL",
    "PLACEHOLD",
    "SYNTHETIC",
    "EXAMPLAR",
    "FICTIVE",
    "NOTREAL",
    "PRETENDA",
    "INVENTED",
];
const FIRST: &[&str] = &["ALEX", "SAM", "JORDAN", "TAYLOR", "CASEY", "RILEY", "JAMIE", "MORGAN", "DREW", "QUINN"];
const CPT: &[&str] = &["99213", "99214", "99203", "87880", "93000", "81002", "90471", "36415", "85025", "80053"];
const ICD: &[&str] = &["J020", "R05", "E119", "I10", "Z0000", "M545", "J069", "R509", "K219", "N390"];
const REVENUE: &[&str] = &["0450", "0300", "0301", "0320", "0636", "0250", "0730"];
const PAYERS: &[(&str, &str)] =
    &[("ACME HEALTH PLAN", "ACME01"), ("BLUE EXAMPLE", "BEX02"), ("GENERIC MUTUAL", "GMU03"), ("SAMPLE CARE", "SMC04")];

/// A valid NPI derived from a number.
pub fn npi(n: u64) -> String {
    let first9 = format!("1{:08}", n % 100_000_000);
    let check = npi_check_digit(first9.as_bytes()).unwrap_or(0);
    format!("{first9}{check}")
}

/// Writes one interchange of `count` items (claims, requests or members).
pub fn write(out: &mut impl Write, kind: Kind, count: usize, seed: u64) -> io::Result<()> {
    let mut g = Gen { out, rng: Rng::new(seed), seed, segments: 0 };
    g.run(kind, count)
}

struct Gen<'a, W: Write> {
    out: &'a mut W,
    rng: Rng,
    seed: u64,
    segments: u32,
}

impl<W: Write> Gen<'_, W> {
    fn seg(&mut self, s: &str) -> io::Result<()> {
        self.segments += 1;
        self.out.write_all(s.as_bytes())?;
        self.out.write_all(b"~\n")
    }

    fn run(&mut self, kind: Kind, count: usize) -> io::Result<()> {
        let (gs01, version) = match kind {
            Kind::Professional837 => ("HC", "005010X222A1"),
            Kind::Institutional837 => ("HC", "005010X223A2"),
            Kind::Eligibility270 => ("HS", "005010X279A1"),
            Kind::Status276 => ("HR", "005010X212"),
            Kind::Enrollment834 => ("BE", "005010X220A1"),
        };
        let ctl = 100_000_000 + self.seed % 800_000_000;
        let isa = format!(
            "ISA*00*          *00*          *ZZ*{:<15}*ZZ*{:<15}*240115*1200*^*00501*{:09}*0*T*:",
            "CLEARWAYGEN", "CLEARWAYHUB", ctl
        );
        self.seg(&isa)?;
        self.seg(&format!("GS*{gs01}*CLEARWAYGEN*CLEARWAYHUB*20240115*1200*1*X*{version}"))?;
        let per_set = match kind {
            Kind::Professional837 | Kind::Institutional837 => CLAIMS_PER_SET,
            _ => count.max(1),
        };
        let mut sets = 0;
        let mut done = 0;
        while done < count || (count == 0 && sets == 0) {
            let n = per_set.min(count - done);
            sets += 1;
            let st02 = format!("{:04}", sets);
            self.segments = 0;
            self.seg(&format!("ST*{}*{st02}*{version}", &version_st01(kind)))?;
            match kind {
                Kind::Professional837 | Kind::Institutional837 => self.claims(kind, n, done)?,
                Kind::Eligibility270 => self.eligibility(n)?,
                Kind::Status276 => self.status(n)?,
                Kind::Enrollment834 => self.enrollment(n)?,
            }
            let se = format!("SE*{}*{st02}", self.segments + 1);
            self.seg(&se)?;
            done += n;
            if count == 0 {
                break;
            }
        }
        self.seg(&format!("GE*{sets}*1"))?;
        self.seg(&format!("IEA*1*{ctl:09}"))
    }

    fn person(&mut self) -> (String, String, String, &'static str) {
        let last = self.rng.pick(LAST).to_string();
        let first = self.rng.pick(FIRST).to_string();
        let dob = format!("{}{:02}{:02}", 1940 + self.rng.below(70), 1 + self.rng.below(12), 1 + self.rng.below(28));
        let gender = if self.rng.below(2) == 0 { "F" } else { "M" };
        (last, first, dob, gender)
    }

    /// A date of service in 2023: before the interchange (2024-01-15), as
    /// a claim's dates are.
    fn date(&mut self) -> String {
        format!("2023{:02}{:02}", 1 + self.rng.below(12), 1 + self.rng.below(28))
    }

    fn claims(&mut self, kind: Kind, n: usize, offset: usize) -> io::Result<()> {
        let institutional = kind == Kind::Institutional837;
        let bht06 = "CH";
        self.seg(&format!("BHT*0019*00*{:09}*20240115*1200*{bht06}", offset + 1))?;
        self.seg("NM1*41*2*CLEARWAY TEST SUBMITTER*****46*CLEARWAYGEN")?;
        self.seg("PER*IC*EDI DESK*TE*5555550100")?;
        self.seg("NM1*40*2*CLEARWAY HUB*****46*CLEARWAYHUB")?;
        let mut hl = 0usize;
        let mut i = 0;
        while i < n {
            // A billing provider with up to 50 claims.
            let block = (n - i).min(50);
            hl += 1;
            let provider_hl = hl;
            let p = self.rng.below(1000);
            self.seg(&format!("HL*{hl}**20*1"))?;
            if !institutional {
                self.seg("PRV*BI*PXC*207Q00000X")?;
            }
            self.seg(&format!("NM1*85*2*SYNTHETIC CLINIC {p}*****XX*{}", npi(p)))?;
            self.seg(&format!("N3*{} EXAMPLE AVE", 100 + p))?;
            self.seg("N4*SPRINGFIELD*IL*627010001")?;
            self.seg(&format!("REF*EI*{:09}", 100_000_000 + p))?;
            for _ in 0..block {
                i += 1;
                hl += 1;
                let (last, first, dob, gender) = self.person();
                let member = format!("M{:010}", self.rng.below(10_000_000_000));
                let (payer, payer_id) = *self.rng.pick(PAYERS);
                self.seg(&format!("HL*{hl}*{provider_hl}*22*0"))?;
                self.seg("SBR*P*18*******CI")?;
                self.seg(&format!("NM1*IL*1*{last}*{first}****MI*{member}"))?;
                let line = format!("N3*{} SAMPLE ST", self.rng.below(9000) + 1);
                self.seg(&line)?;
                self.seg("N4*SPRINGFIELD*IL*62701")?;
                self.seg(&format!("DMG*D8*{dob}*{gender}"))?;
                self.seg(&format!("NM1*PR*2*{payer}*****PI*{payer_id}"))?;
                let lines = 1 + self.rng.below(3) as usize;
                let charges: Vec<u64> = (0..lines).map(|_| 2500 + self.rng.below(47500)).collect();
                let total: u64 = charges.iter().sum();
                let pcn = format!("PCN{:08}", offset + i);
                let service = self.date();
                if institutional {
                    self.seg(&format!("CLM*{pcn}*{}.{:02}***13:A:1**A*Y*Y", total / 100, total % 100))?;
                    self.seg(&format!("DTP*434*RD8*{service}-{service}"))?;
                    self.seg("CL1*1*1*01")?;
                    let line = format!("HI*ABK:{}", self.rng.pick(ICD));
                    self.seg(&line)?;
                    let line =
                        format!("NM1*71*1*{}*{}****XX*{}", self.rng.pick(LAST), self.rng.pick(FIRST), npi(p + 7));
                    self.seg(&line)?;
                } else {
                    self.seg(&format!("CLM*{pcn}*{}.{:02}***11:B:1*Y*A*Y*Y", total / 100, total % 100))?;
                    let dx1 = self.rng.pick(ICD);
                    let dx2 = self.rng.pick(ICD);
                    if dx1 == dx2 {
                        self.seg(&format!("HI*ABK:{dx1}"))?;
                    } else {
                        self.seg(&format!("HI*ABK:{dx1}*ABF:{dx2}"))?;
                    }
                }
                for (l, c) in charges.iter().enumerate() {
                    self.seg(&format!("LX*{}", l + 1))?;
                    if institutional {
                        let rev = self.rng.pick(REVENUE);
                        let cpt = self.rng.pick(CPT);
                        self.seg(&format!("SV2*{rev}*HC:{cpt}*{}.{:02}*UN*1", c / 100, c % 100))?;
                    } else {
                        let cpt = self.rng.pick(CPT);
                        self.seg(&format!("SV1*HC:{cpt}*{}.{:02}*UN*1***1", c / 100, c % 100))?;
                    }
                    self.seg(&format!("DTP*472*D8*{service}"))?;
                }
            }
        }
        Ok(())
    }

    fn eligibility(&mut self, n: usize) -> io::Result<()> {
        self.seg(&format!("BHT*0022*13*{:09}*20240115*1200", self.seed % 1_000_000_000))?;
        let (payer, payer_id) = PAYERS[0];
        self.seg("HL*1**20*1")?;
        self.seg(&format!("NM1*PR*2*{payer}*****PI*{payer_id}"))?;
        self.seg("HL*2*1*21*1")?;
        self.seg(&format!("NM1*1P*2*SYNTHETIC CLINIC*****XX*{}", npi(1)))?;
        for i in 0..n {
            let (last, first, dob, gender) = self.person();
            let member = format!("M{:010}", self.rng.below(10_000_000_000));
            self.seg(&format!("HL*{}*2*22*0", i + 3))?;
            let line = format!("TRN*1*{:012}*9CLEARWAY0", self.rng.below(1_000_000_000_000));
            self.seg(&line)?;
            self.seg(&format!("NM1*IL*1*{last}*{first}****MI*{member}"))?;
            self.seg(&format!("DMG*D8*{dob}*{gender}"))?;
            self.seg("DTP*291*D8*20240115")?;
            self.seg("EQ*30")?;
        }
        Ok(())
    }

    fn status(&mut self, n: usize) -> io::Result<()> {
        self.seg(&format!("BHT*0010*13*{:09}*20240115*1200", self.seed % 1_000_000_000))?;
        let (payer, payer_id) = PAYERS[0];
        self.seg("HL*1**20*1")?;
        self.seg(&format!("NM1*PR*2*{payer}*****PI*{payer_id}"))?;
        self.seg("HL*2*1*21*1")?;
        self.seg("NM1*41*2*CLEARWAY TEST SUBMITTER*****46*CLEARWAYGEN")?;
        self.seg("HL*3*2*19*1")?;
        self.seg(&format!("NM1*1P*2*SYNTHETIC CLINIC*****XX*{}", npi(1)))?;
        for i in 0..n {
            let (last, first, dob, gender) = self.person();
            let member = format!("M{:010}", self.rng.below(10_000_000_000));
            self.seg(&format!("HL*{}*3*22*0", i + 4))?;
            self.seg(&format!("DMG*D8*{dob}*{gender}"))?;
            self.seg(&format!("NM1*IL*1*{last}*{first}****MI*{member}"))?;
            let line = format!("TRN*1*{:012}", self.rng.below(1_000_000_000_000));
            self.seg(&line)?;
            self.seg(&format!("REF*EJ*PCN{:08}", i + 1))?;
            let charge = 2500 + self.rng.below(47500);
            self.seg(&format!("AMT*T3*{}.{:02}", charge / 100, charge % 100))?;
            let d = self.date();
            self.seg(&format!("DTP*472*RD8*{d}-{d}"))?;
        }
        Ok(())
    }

    fn enrollment(&mut self, n: usize) -> io::Result<()> {
        self.seg(&format!("BGN*00*{:09}*20240115*1200****4", self.seed % 1_000_000_000))?;
        self.seg("REF*38*POLICY0001")?;
        self.seg("N1*P5*SYNTHETIC EMPLOYER*FI*123456789")?;
        let (payer, _) = PAYERS[0];
        self.seg(&format!("N1*IN*{payer}*FI*987654321"))?;
        for _ in 0..n {
            let (last, first, dob, gender) = self.person();
            let member = format!("M{:010}", self.rng.below(10_000_000_000));
            self.seg("INS*Y*18*021*28*A***FT")?;
            self.seg(&format!("REF*0F*{member}"))?;
            self.seg(&format!("NM1*IL*1*{last}*{first}****ZZ*{member}"))?;
            let line = format!("N3*{} SAMPLE ST", self.rng.below(9000) + 1);
            self.seg(&line)?;
            self.seg("N4*SPRINGFIELD*IL*62701")?;
            self.seg(&format!("DMG*D8*{dob}*{gender}"))?;
            self.seg("HD*021**HLT*GOLD PLAN*EMP")?;
            self.seg("DTP*348*D8*20240101")?;
        }
        Ok(())
    }
}

fn version_st01(kind: Kind) -> &'static str {
    match kind {
        Kind::Professional837 | Kind::Institutional837 => "837",
        Kind::Eligibility270 => "270",
        Kind::Status276 => "276",
        Kind::Enrollment834 => "834",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::x12::{AnalyzeOptions, analyze};

    fn check(kind: Kind, count: usize) -> crate::x12::Analysis {
        let mut out = vec![];
        write(&mut out, kind, count, 7).unwrap();
        let mut again = vec![];
        write(&mut again, kind, count, 7).unwrap();
        assert_eq!(out, again, "deterministic");
        analyze(&out, &AnalyzeOptions::default())
    }

    #[test]
    fn npis_are_valid() {
        for n in 0..50 {
            assert!(crate::x12::validate::valid_npi(npi(n).as_bytes()));
        }
    }

    #[test]
    fn generated_837p_and_837i_validate_clean() {
        for kind in [Kind::Professional837, Kind::Institutional837] {
            let a = check(kind, 120);
            for s in a.sets() {
                assert!(
                    s.report.segment_errors.is_empty(),
                    "{kind:?}: {:#?}",
                    &s.report.segment_errors[..s.report.segment_errors.len().min(5)]
                );
                assert!(s.report.findings.is_empty(), "{kind:?}: {:?}", s.report.findings);
            }
            assert!(a.accepted(), "{kind:?}");
            assert_eq!(a.documents().count(), 120);
        }
    }

    #[test]
    fn generated_270_and_276_validate_clean() {
        for kind in [Kind::Eligibility270, Kind::Status276] {
            let a = check(kind, 15);
            for s in a.sets() {
                assert!(s.report.segment_errors.is_empty(), "{kind:?}: {:#?}", s.report.segment_errors);
            }
            assert!(a.accepted(), "{kind:?}");
            assert_eq!(a.documents().count(), 15, "{kind:?}");
        }
    }

    #[test]
    fn generated_834_validates_clean() {
        let a = check(Kind::Enrollment834, 20);
        for s in a.sets() {
            assert!(s.report.segment_errors.is_empty(), "{:#?}", s.report.segment_errors);
        }
        assert!(a.accepted());
    }

    #[test]
    fn large_counts_split_into_sets_of_5000() {
        let a = check(Kind::Professional837, 5001);
        assert_eq!(a.sets().count(), 2);
        assert!(a.accepted());
    }
}
