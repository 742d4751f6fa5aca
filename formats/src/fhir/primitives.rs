//! R4 primitive data types: syntax checks and conversions.
//!
//! serde_json is built without `arbitrary_precision`, so a JSON number reaches
//! us as an `f64`. A decimal is converted through the shortest text that reads
//! back as the same `f64`, which reproduces what was written for any value of
//! up to 15 significant digits (trailing zeros aside: `75.00` becomes `75`).
//! Longer values are flagged rather than silently rounded.

use rust_decimal::Decimal;
use serde_json::Number;
use std::str::FromStr;
use time::{Date, Month};

/// `id`: `[A-Za-z0-9\-\.]{1,64}`.
pub(crate) fn is_id(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// `code`: `[^\s]+(\s[^\s]+)*` — no leading, trailing or doubled whitespace.
pub(crate) fn is_code(s: &str) -> bool {
    if s.is_empty() {
        return false;
    }
    let mut prev_ws = true;
    for c in s.chars() {
        let ws = c.is_whitespace();
        if ws && prev_ws {
            return false;
        }
        prev_ws = ws;
    }
    !prev_ws
}

/// `string`: at least one character that is not whitespace (R4: "strings
/// SHALL NOT be empty"). Control characters other than tab, CR and LF are not
/// allowed.
pub(crate) fn is_fhir_string(s: &str) -> bool {
    !s.trim().is_empty() && !s.chars().any(|c| c.is_control() && !matches!(c, '\t' | '\r' | '\n'))
}

/// `uri`: non-empty, no whitespace.
pub(crate) fn is_uri(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(char::is_whitespace)
}

/// ISO 4217 shape: three upper-case letters.
pub(crate) fn is_currency(s: &str) -> bool {
    s.len() == 3 && s.bytes().all(|b| b.is_ascii_uppercase())
}

/// A parsed `date` or `dateTime`, at the precision it was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FhirDate {
    Year,
    YearMonth,
    Day(Date),
    /// A full date and time with a zone; `date` is the calendar day as written.
    DateTime(Date),
}

impl FhirDate {
    /// The calendar day, when the value is precise to the day.
    pub(crate) fn day(self) -> Option<Date> {
        match self {
            FhirDate::Day(d) | FhirDate::DateTime(d) => Some(d),
            FhirDate::Year | FhirDate::YearMonth => None,
        }
    }
}

fn digits(s: &[u8]) -> Option<u32> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.iter().try_fold(0u32, |acc, d| acc.checked_mul(10)?.checked_add(u32::from(d - b'0')))
}

/// `YYYY`, `YYYY-MM` or `YYYY-MM-DD` at the start of `s`; returns the value
/// and the rest.
fn parse_date_part(s: &[u8]) -> Option<(FhirDate, &[u8])> {
    let year = digits(s.get(..4)?)?;
    if year == 0 {
        return None;
    }
    let rest = &s[4..];
    let Some(rest) = rest.strip_prefix(b"-") else {
        return Some((FhirDate::Year, rest));
    };
    let month = digits(rest.get(..2)?)?;
    let month = Month::try_from(u8::try_from(month).ok()?).ok()?;
    let rest = &rest[2..];
    let Some(rest) = rest.strip_prefix(b"-") else {
        return Some((FhirDate::YearMonth, rest));
    };
    let day = u8::try_from(digits(rest.get(..2)?)?).ok()?;
    let date = Date::from_calendar_date(i32::try_from(year).ok()?, month, day).ok()?;
    Some((FhirDate::Day(date), &rest[2..]))
}

/// R4 `date`: `YYYY`, `YYYY-MM` or `YYYY-MM-DD`, a real calendar day.
pub(crate) fn parse_date(s: &str) -> Option<FhirDate> {
    match parse_date_part(s.as_bytes())? {
        (d, []) => Some(d),
        _ => None,
    }
}

/// R4 `dateTime`: a `date`, or `YYYY-MM-DDThh:mm:ss[.f+](Z|±hh:mm)`; a time
/// requires a zone.
pub(crate) fn parse_date_time(s: &str) -> Option<FhirDate> {
    let (date, rest) = parse_date_part(s.as_bytes())?;
    if rest.is_empty() {
        return Some(date);
    }
    let FhirDate::Day(day) = date else {
        return None;
    };
    let rest = rest.strip_prefix(b"T")?;
    let hh = digits(rest.get(..2)?)?;
    let mm = digits(rest.get(3..5)?)?;
    let ss = digits(rest.get(6..8)?)?;
    if rest.get(2) != Some(&b':') || rest.get(5) != Some(&b':') {
        return None;
    }
    // R4 allows a leap second (60).
    if hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let mut rest = &rest[8..];
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac.iter().take_while(|b| b.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        rest = &frac[n..];
    }
    match rest {
        b"Z" => Some(FhirDate::DateTime(day)),
        [sign @ (b'+' | b'-'), zone @ ..] => {
            let _ = sign;
            if zone.len() != 5 || zone[2] != b':' {
                return None;
            }
            let zh = digits(&zone[..2])?;
            let zm = digits(&zone[3..])?;
            let ok = (zh <= 13 && zm <= 59) || (zh == 14 && zm == 0);
            ok.then_some(FhirDate::DateTime(day))
        }
        _ => None,
    }
}

/// Why a JSON number is not usable as a FHIR decimal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DecimalProblem {
    /// Beyond what `rust_decimal` holds (about 7.9e28) or not finite.
    OutOfRange,
}

/// A JSON number as a `Decimal`; the flag is `true` when the value has more
/// significant digits than an `f64` reproduces exactly (see module docs).
pub(crate) fn number_to_decimal(n: &Number) -> Result<(Decimal, bool), DecimalProblem> {
    if let Some(i) = n.as_i64() {
        return Ok((Decimal::from(i), false));
    }
    if let Some(u) = n.as_u64() {
        return Ok((Decimal::from(u), false));
    }
    let f = n.as_f64().ok_or(DecimalProblem::OutOfRange)?;
    if !f.is_finite() {
        return Err(DecimalProblem::OutOfRange);
    }
    // `Display` for f64 writes the shortest text that reads back as `f`,
    // never in exponent form.
    let text = f.to_string();
    let significant = text.bytes().filter(u8::is_ascii_digit).skip_while(|&b| b == b'0').count();
    if text.len() > 64 {
        return Err(DecimalProblem::OutOfRange);
    }
    let d = Decimal::from_str(&text).map_err(|_| DecimalProblem::OutOfRange)?;
    Ok((d.normalize(), significant > 15))
}

/// `positiveInt`: 1 ..= 2^31-1.
pub(crate) fn positive_int(n: &Number) -> Option<u32> {
    n.as_u64().filter(|&v| (1..=i32::MAX as u64).contains(&v)).and_then(|v| u32::try_from(v).ok())
}

/// NPI check digit (Luhn over `80840` + the first nine digits).
pub(crate) fn is_valid_npi(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || !b.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let payload = b"80840".iter().chain(&b[..9]);
    // Double every other digit from the right of the payload (the check digit
    // position is the rightmost of the full number).
    let digits: Vec<u32> = payload.map(|d| u32::from(d - b'0')).collect();
    let mut sum = 0;
    for (i, d) in digits.iter().rev().enumerate() {
        let v = if i % 2 == 0 { d * 2 } else { *d };
        sum += if v > 9 { v - 9 } else { v };
    }
    let check = (10 - sum % 10) % 10;
    u32::from(b[9] - b'0') == check
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn ids() {
        assert!(is_id("MED-00050"));
        assert!(is_id("513a3d06-5e87-6fbc-ad1b-170ab430499f"));
        assert!(!is_id(""));
        assert!(!is_id("a b"));
        assert!(!is_id(&"a".repeat(65)));
    }

    #[test]
    fn codes() {
        assert!(is_code("active"));
        assert!(is_code("a b"));
        assert!(!is_code(" a"));
        assert!(!is_code("a "));
        assert!(!is_code("a  b"));
        assert!(!is_code(""));
    }

    #[test]
    fn dates() {
        assert_eq!(parse_date("2014-08-16"), Some(FhirDate::Day(date!(2014 - 08 - 16))));
        assert_eq!(parse_date("2014"), Some(FhirDate::Year));
        assert_eq!(parse_date("2014-08"), Some(FhirDate::YearMonth));
        assert_eq!(parse_date("2014-02-30"), None);
        assert_eq!(parse_date("0000"), None);
        assert_eq!(parse_date("2014-13"), None);
        assert_eq!(parse_date("2014-8-16"), None);
        assert_eq!(parse_date("2014-08-16T00:00:00Z"), None);
        assert_eq!(parse_date("20140816"), None);
        assert_eq!(parse_date("２０１４"), None);
    }

    #[test]
    fn date_times() {
        let d = date!(2015 - 10 - 16);
        assert_eq!(parse_date_time("2015-10-16T00:00:00-07:00"), Some(FhirDate::DateTime(d)));
        assert_eq!(parse_date_time("2015-10-16T23:59:60.123Z"), Some(FhirDate::DateTime(d)));
        assert_eq!(parse_date_time("2015-10-16"), Some(FhirDate::Day(d)));
        assert_eq!(parse_date_time("2015"), Some(FhirDate::Year));
        // A time needs a zone.
        assert_eq!(parse_date_time("2015-10-16T00:00:00"), None);
        assert_eq!(parse_date_time("2015-10-16T24:00:00Z"), None);
        assert_eq!(parse_date_time("2015-10-16T10:00:00+15:00"), None);
        assert_eq!(parse_date_time("2015-10-16T10:00:00+14:00"), Some(FhirDate::DateTime(d)));
        assert_eq!(parse_date_time("2015-10-16T10:00:00.Z"), None);
        assert_eq!(parse_date_time("2015-10T10:00:00Z"), None);
        assert_eq!(parse_date_time("2015-10-16T10:00Z"), None);
    }

    fn dec(json: &str) -> Result<(Decimal, bool), DecimalProblem> {
        let n: Number = serde_json::from_str(json).unwrap_or_else(|_| Number::from(0));
        number_to_decimal(&n)
    }

    #[test]
    fn decimals_keep_written_digits() {
        assert_eq!(dec("135.57"), Ok((Decimal::new(13557, 2), false)));
        assert_eq!(dec("75.00"), Ok((Decimal::new(75, 0), false)));
        assert_eq!(dec("0.1"), Ok((Decimal::new(1, 1), false)));
        assert_eq!(dec("-3"), Ok((Decimal::new(-3, 0), false)));
        assert_eq!(dec("12345678901234.5"), Ok((Decimal::new(123456789012345, 1), false)));
        assert!(matches!(dec("0.12345678901234567"), Ok((_, true))));
        assert_eq!(dec("1e300"), Err(DecimalProblem::OutOfRange));
        // Too small for 28 decimal places: not a money amount either.
        assert_eq!(dec("1e-300"), Err(DecimalProblem::OutOfRange));
        assert_eq!(dec("1e20").map(|(d, _)| d.to_string()), Ok("100000000000000000000".to_string()));
    }

    #[test]
    fn positive_ints() {
        let n = |s: &str| serde_json::from_str::<Number>(s).ok();
        assert_eq!(n("1").as_ref().and_then(positive_int), Some(1));
        assert_eq!(n("0").as_ref().and_then(positive_int), None);
        assert_eq!(n("-1").as_ref().and_then(positive_int), None);
        assert_eq!(n("1.5").as_ref().and_then(positive_int), None);
        assert_eq!(n("2147483648").as_ref().and_then(positive_int), None);
    }

    #[test]
    fn npi_check_digit() {
        // CMS's published example NPI.
        assert!(is_valid_npi("1234567893"));
        assert!(!is_valid_npi("1234567890"));
        assert!(!is_valid_npi("123456789"));
        assert!(!is_valid_npi("12345678a3"));
    }
}
