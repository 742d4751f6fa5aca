//! Deterministic synthetic ADT^A01 messages for benchmarks, load tests and
//! fixtures.
//!
//! Real HL7 traffic is PHI and cannot be checked in or shared, so the
//! benchmarks and soak tests run on generated messages instead. The
//! generator is deterministic (same `count` and `seed`, same bytes), so a
//! benchmark number or a failing fuzz case can be reproduced exactly. Names
//! come from short built-in lists of common given names and surnames, phone
//! numbers use the reserved 555-01xx range, and identifiers are random:
//! nothing describes a real person.
//!
//! Each message is v2.5.1 with CR segment terminators and no MLLP framing,
//! has a unique MSH-10, and passes [`crate::hl7::validate::validate`]
//! without issues.

use std::fmt::Write as _;
use std::io;

/// SplitMix64: a tiny, fast, well-mixed deterministic generator (Steele,
/// Lea and Flood, 2014). Not for cryptography.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator whose sequence is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `lo..=hi` (slightly biased, which is fine here).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi.saturating_sub(lo) + 1)
    }

    /// One element of a non-empty list (`""` for an empty one).
    pub fn pick<'l>(&mut self, list: &[&'l str]) -> &'l str {
        let n = u64::try_from(list.len()).unwrap_or(1).max(1);
        let i = usize::try_from(self.next_u64() % n).unwrap_or(0);
        list.get(i).copied().unwrap_or("")
    }
}

const LAST: &[&str] = &[
    "SMITH", "JOHNSON", "WILLIAMS", "BROWN", "JONES", "GARCIA", "MILLER", "DAVIS", "MARTINEZ", "LOPEZ", "WILSON",
    "ANDERSON", "TAYLOR", "THOMAS", "MOORE", "MARTIN", "LEE", "WALKER",
];
const FIRST_F: &[&str] = &["MARY", "PATRICIA", "JENNIFER", "LINDA", "ELIZABETH", "MARIA", "SUSAN", "SARAH", "KAREN"];
const FIRST_M: &[&str] = &["JAMES", "ROBERT", "JOHN", "MICHAEL", "DAVID", "WILLIAM", "RICHARD", "JOSEPH", "CARLOS"];
const STREETS: &[&str] =
    &["MAIN ST", "OAK AVE", "PINE RD", "MAPLE DR", "CEDAR LN", "ELM ST", "LAKE VIEW BLVD", "HILL \\T\\ DALE RD"];
const CITIES: &[(&str, &str, &str)] = &[
    ("SPRINGFIELD", "IL", "62701"),
    ("FAIRVIEW", "TN", "37062"),
    ("RIVERSIDE", "CA", "92501"),
    ("GREENVILLE", "SC", "29601"),
    ("FRANKLIN", "MA", "02038"),
    ("MADISON", "WI", "53703"),
];
const WARDS: &[&str] = &["MED", "SURG", "ICU", "PEDS", "CARD", "ORTHO"];
const DOCTORS: &[&str] = &["HOUSE", "QUINN", "KILDARE", "WELBY", "CASEY", "GREY"];
const ALLERGENS: &[&str] = &["PCN^PENICILLIN^L", "SULFA^SULFONAMIDES^L", "LATEX^LATEX^L", "PNUT^PEANUTS^L"];
const DIAGNOSES: &[&str] = &[
    "I10^Essential hypertension^I10",
    "E11.9^Type 2 diabetes mellitus without complications^I10",
    "J18.9^Pneumonia, unspecified organism^I10",
    "K35.80^Acute appendicitis^I10",
];

/// An HL7 timestamp `YYYYMMDDHHMMSS` in a plausible range.
fn timestamp(r: &mut SplitMix64, year: (u64, u64)) -> String {
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}",
        r.range(year.0, year.1),
        r.range(1, 12),
        r.range(1, 28),
        r.range(0, 23),
        r.range(0, 59),
        r.range(0, 59)
    )
}

/// Writes `count` synthetic ADT^A01 v2.5.1 messages, one after the other
/// with CR segment terminators. The same `count` and `seed` always produce
/// the same bytes; MSH-10 is unique within one call.
pub fn write_adt(out: &mut impl io::Write, count: usize, seed: u64) -> io::Result<()> {
    let mut r = SplitMix64::new(seed);
    let mut m = String::with_capacity(1024);
    for i in 0..count {
        m.clear();
        write_one(&mut m, &mut r, seed, i);
        out.write_all(m.as_bytes())?;
    }
    Ok(())
}

fn write_one(m: &mut String, r: &mut SplitMix64, seed: u64, i: usize) {
    let ts = timestamp(r, (2023, 2025));
    let female = r.next_u64().is_multiple_of(2);
    let (first, sex) = if female { (r.pick(FIRST_F), "F") } else { (r.pick(FIRST_M), "M") };
    let last = r.pick(LAST);
    let middle = char::from(b'A' + u8::try_from(r.range(0, 25)).unwrap_or(0));
    let dob = timestamp(r, (1930, 2020));
    let dob = dob.get(..8).unwrap_or("19700101");
    let (city, state, zip) =
        CITIES.get(usize::try_from(r.range(0, 5)).unwrap_or(0)).copied().unwrap_or(("SPRINGFIELD", "IL", "62701"));
    let mrn = r.range(100_000, 9_999_999);
    let account = r.range(10_000_000, 99_999_999);
    let visit = r.range(1_000_000, 9_999_999);
    let doctor = r.pick(DOCTORS);
    let doctor_id = r.range(1000, 9999);
    let class = if r.next_u64().is_multiple_of(4) { "E" } else { "I" };
    // MSH-10 is unique per call: the seed and the index.
    let _ = write!(
        m,
        "MSH|^~\\&|CLEARWAY_GEN|GEN_HOSPITAL|RECEIVER|RECV_FACILITY|{ts}||ADT^A01^ADT_A01|GEN{seed:X}-{i:08}|P|2.5.1|||AL|NE|USA\r\
         EVN|A01|{ts}|||{doctor_id}^{doctor}^GREGORY^^^^MD\r\
         PID|1||{mrn}^^^GEN_HOSPITAL^MR~{account}^^^GEN_HOSPITAL^AN||{last}^{first}^{middle}||{dob}|{sex}|||{num} {street}^^{city}^{state}^{zip}^USA^H||(555)555-01{phone:02}^PRN^PH|||{marital}||{account}\r",
        num = r.range(1, 9999),
        street = r.pick(STREETS),
        phone = r.range(0, 99),
        marital = r.pick(&["S", "M", "D", "W"]),
    );
    if r.next_u64().is_multiple_of(2) {
        let _ = write!(
            m,
            "NK1|1|{last}^{nk}|SPO^Spouse^HL70063|{num} {street}^^{city}^{state}^{zip}^USA|(555)555-01{phone:02}\r",
            nk = if female { r.pick(FIRST_M) } else { r.pick(FIRST_F) },
            num = r.range(1, 9999),
            street = r.pick(STREETS),
            phone = r.range(0, 99),
        );
    }
    let _ = write!(
        m,
        "PV1|1|{class}|{ward}^{room}^{bed}^GEN_HOSPITAL||||{doctor_id}^{doctor}^GREGORY^^^^MD|||{ward}||||1|||{doctor_id}^{doctor}^GREGORY^^^^MD|IN|V{visit}^^^GEN_HOSPITAL^VN|||||||||||||||||||||||||{ts}\r",
        ward = r.pick(WARDS),
        room = r.range(100, 499),
        bed = r.pick(&["A", "B"]),
    );
    for n in 1..=r.range(0, 2) {
        let _ = write!(
            m,
            "AL1|{n}|DA|{allergen}|{severity}\r",
            allergen = r.pick(ALLERGENS),
            severity = r.pick(&["MI", "MO", "SV"]),
        );
    }
    for n in 1..=r.range(1, 2) {
        let _ = write!(m, "DG1|{n}||{dx}||{ts}|A\r", dx = r.pick(DIAGNOSES),);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hl7::parse::{Limits, split};
    use crate::hl7::validate::validate;

    fn generate(count: usize, seed: u64) -> Vec<u8> {
        let mut v = Vec::new();
        if let Err(e) = write_adt(&mut v, count, seed) {
            panic!("{e}");
        }
        v
    }

    #[test]
    fn splitmix_matches_reference_values() {
        // Reference output of SplitMix64 seeded with 1234567 (from the
        // authors' C implementation).
        let mut r = SplitMix64::new(1_234_567);
        let got: Vec<u64> = (0..3).map(|_| r.next_u64()).collect();
        assert_eq!(got, [6_457_827_717_110_365_317, 3_203_168_211_198_807_973, 9_817_491_932_198_370_423]);
    }

    #[test]
    fn is_deterministic_and_seed_dependent() {
        assert_eq!(generate(20, 7), generate(20, 7));
        assert_ne!(generate(20, 7), generate(20, 8));
        assert!(generate(0, 7).is_empty());
    }

    #[test]
    fn fifty_messages_seed_7_validate_clean_and_repeat() {
        let data = generate(50, 7);
        assert_eq!(data, generate(50, 7));
        let batch = match split(&data, &Limits::DEFAULT) {
            Ok(b) => b,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(batch.message_count(), 50);
        for m in batch.messages() {
            assert_eq!(validate(m), [], "{m:?}");
            assert_eq!(m.message_type().code, "ADT");
            assert_eq!(m.message_type().trigger, "A01");
        }
        let first = batch.messages().next().and_then(|m| m.control_id());
        assert_eq!(first.as_deref(), Some("GEN7-00000000"));
    }

    #[test]
    fn output_is_valid_with_unique_control_ids() {
        let data = generate(200, 42);
        let batch = match split(&data, &Limits::DEFAULT) {
            Ok(b) => b,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(batch.message_count(), 200);
        let mut ids = std::collections::HashSet::new();
        for m in batch.messages() {
            assert_eq!(validate(m), [], "{m:?}");
            assert!(ids.insert(m.control_id().unwrap_or_default().into_owned()));
            assert_eq!(m.version().as_deref(), Some("2.5.1"));
        }
        assert!(!data.contains(&b'\n'));
    }
}
