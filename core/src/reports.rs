//! The report pack as a port, so that the HTTP API serves reports without
//! depending on the query engine (`clearway-analytics` implements it over
//! the exported Parquet; the binary wires it in).

use crate::PortResult;
use async_trait::async_trait;

/// A report's parameters (`GET /v1/reports/{name}`, `clearway report`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportParams {
    /// Unix µs, inclusive.
    pub from_us: Option<i64>,
    /// Unix µs, exclusive.
    pub to_us: Option<i64>,
    pub partner: Option<String>,
    pub payer: Option<String>,
}

/// Runs named reports.
#[async_trait]
pub trait Reports: Send + Sync + 'static {
    /// Every report's name.
    fn names(&self) -> Vec<&'static str>;
    /// A report's rows as JSON objects; `None` for an unknown name.
    async fn run(&self, name: &str, params: &ReportParams) -> PortResult<Option<serde_json::Value>>;
}

/// A date (`YYYY-MM-DD`, midnight UTC) or an RFC 3339 time, as Unix µs.
pub fn parse_bound(v: &str) -> Option<i64> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(t) = time::OffsetDateTime::parse(v, &Rfc3339) {
        return Some((t.unix_timestamp_nanos() / 1000) as i64);
    }
    let d = time::Date::parse(v, time::macros::format_description!("[year]-[month]-[day]")).ok()?;
    Some(d.midnight().assume_utc().unix_timestamp() * 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_dates_or_times() {
        assert_eq!(parse_bound("1970-01-02"), Some(86_400_000_000));
        assert_eq!(parse_bound("1970-01-01T00:00:01Z"), Some(1_000_000));
        assert_eq!(parse_bound("yesterday"), None);
        assert_eq!(parse_bound("2026-13-01"), None);
    }
}
