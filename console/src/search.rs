//! Search (operators): a transaction by its id; by a control number
//! (ISA13, GS06, ST02, BHT03, an 835's TRN02) or a payer id through the
//! index the workers write, from a date, paged; a partner's transactions
//! from a date on, by status, paged by cursor; and, by `POST` only (it is
//! PHI), the transactions holding a patient control number (CLM01),
//! found through the claim index's keyed token. URLs carry ids, dates and
//! statuses only.
//!
//! Transaction ids are UUIDv7, so a partner's records are stored in the
//! order they were received: a date is a position in that order, and a
//! page reads at most [`SCAN_ROWS`] records whatever the filter.

use crate::{Console, Frame, SignedIn, audit, event, page_error, render};
use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use clearway_core::PartnerId;
use clearway_core::access::Role;
use clearway_core::ports::Table;
use clearway_core::records::{CONTROL_KINDS, TransactionRecord, control_partition};
use clearway_ingest::lookup;
use std::sync::Arc;

/// Rows a results page shows.
pub const PAGE_ROWS: usize = 50;
/// Most records one page reads while filtering.
pub const SCAN_ROWS: usize = 1000;

const STATUSES: &[&str] = &["received", "processing", "accepted", "rejected", "dead_lettered"];

#[derive(Debug, Default, serde::Deserialize)]
pub struct SearchQuery {
    id: Option<String>,
    partner: Option<String>,
    status: Option<String>,
    /// `YYYY-MM-DD` (UTC).
    from: Option<String>,
    /// The last id of the previous page.
    after: Option<String>,
    /// A control number's kind (`isa13`, …) and the number.
    ctl: Option<String>,
    number: Option<String>,
}

#[derive(Debug)]
pub struct Row {
    pub partner: String,
    pub id: String,
    pub received: String,
    pub format: &'static str,
    pub status: &'static str,
    pub claims: usize,
}

#[derive(Template)]
#[template(path = "search.html")]
pub struct SearchPage {
    pub frame: Frame,
    pub partners: Vec<String>,
    pub statuses: &'static [&'static str],
    pub partner: String,
    pub status: String,
    pub from: String,
    pub id: String,
    pub rows: Vec<Row>,
    pub searched: bool,
    pub message: Option<String>,
    /// The query string of the next page, when there is one.
    pub next: Option<String>,
    pub kinds: &'static [(&'static str, &'static str)],
    pub ctl: String,
    pub number: String,
}

impl SearchPage {
    pub fn kind_selected(&self, kind: &str) -> bool {
        self.ctl == kind
    }
}

/// Where a page starts: after the previous page's last key (when `usable`),
/// or at a date (a position: ids are UUIDv7), or at the beginning. `Err`
/// for a date that is not `YYYY-MM-DD`.
fn start_of(q: &SearchQuery, usable: impl Fn(&str) -> bool) -> Result<Option<String>, ()> {
    match (q.after.as_deref(), q.from.as_deref().filter(|f| !f.is_empty())) {
        (Some(a), _) if usable(a) => Ok(Some(a.to_string())),
        (_, Some(from)) => first_id_of(from).map(Some).ok_or(()),
        _ => Ok(None),
    }
}

/// The smallest transaction id of the day `date` (`YYYY-MM-DD`, UTC).
pub fn first_id_of(date: &str) -> Option<String> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let day = time::Date::parse(date, &format).ok()?;
    let ms = day.midnight().assume_utc().unix_timestamp_nanos() / 1_000_000;
    let ms = u64::try_from(ms).ok()?;
    Some(format!("{:08x}-{:04x}-7000-8000-000000000000", ms >> 16, ms & 0xffff))
}

fn row(r: &TransactionRecord) -> Row {
    Row {
        partner: r.partner.to_string(),
        id: r.id.to_string(),
        received: r.received_at.clone(),
        format: r.format.as_str(),
        status: r.status.as_str(),
        claims: r.claim_count.max(r.claims.len()),
    }
}

pub(crate) fn query_string(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    };
    pairs.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| format!("{k}={}", enc(v))).collect::<Vec<_>>().join("&")
}

async fn partner_ids(console: &Console) -> Vec<String> {
    console.svc.partners.list().await.unwrap_or_default().into_iter().map(|p| p.id.to_string()).collect()
}

/// `GET /console/search`.
pub async fn page(State(console): State<Arc<Console>>, who: SignedIn, Query(q): Query<SearchQuery>) -> Response {
    let allowed = who.account.role == Role::Operator;
    let mut e = event("console.search", "R", who.actor(), if allowed { StatusCode::OK } else { StatusCode::FORBIDDEN });
    e.tenant = q.partner.as_deref().and_then(|p| PartnerId::new(p).ok()).map(|p| p.to_string());
    if !audit(&console, e).await {
        return page_error(StatusCode::SERVICE_UNAVAILABLE);
    }
    if !allowed {
        return page_error(StatusCode::FORBIDDEN);
    }
    let partners = partner_ids(&console).await;
    let mut page = SearchPage {
        frame: Frame::new("Search", Some(&who)),
        partners: partners.clone(),
        statuses: STATUSES,
        partner: q.partner.clone().unwrap_or_default(),
        status: q.status.clone().unwrap_or_default(),
        from: q.from.clone().unwrap_or_default(),
        id: q.id.clone().unwrap_or_default(),
        rows: vec![],
        searched: false,
        message: None,
        next: None,
        kinds: CONTROL_KINDS,
        ctl: q.ctl.clone().unwrap_or_default(),
        number: q.number.clone().unwrap_or_default(),
    };
    // By a control number, through the index.
    if let Some(kind) = q.ctl.as_deref().filter(|k| !k.is_empty()) {
        page.searched = true;
        let mut number = q.number.as_deref().unwrap_or("").trim().to_string();
        // ISA13 is nine digits: "123" means 000000123.
        if kind == "isa13" && !number.is_empty() && number.len() < 9 && number.bytes().all(|b| b.is_ascii_digit()) {
            number = format!("{number:0>9}");
        }
        let Some(partition) = control_partition(kind, &number) else {
            page.message = Some("Choose a kind and give a control number (1 to 80 characters).".into());
            return render(page);
        };
        let Ok(after) = start_of(&q, |a| !a.is_empty()) else {
            page.message = Some("Dates are YYYY-MM-DD.".into());
            return render(page);
        };
        let items = match console.svc.ports.state.query(Table::Claims, &partition, after.as_deref(), PAGE_ROWS).await {
            Ok(i) => i,
            Err(_) => return page_error(StatusCode::SERVICE_UNAVAILABLE),
        };
        let last = (items.len() == PAGE_ROWS).then(|| items.last().map(|(k, _)| k.clone())).flatten();
        for (sk, _) in items {
            let Some((t, p)) = sk.split_once('/') else { continue };
            let Ok(p) = PartnerId::new(p) else { continue };
            match lookup::record(&console.svc, &p, t).await {
                Ok(Some(r)) => page.rows.push(row(&r)),
                Ok(None) => {}
                Err(_) => return page_error(StatusCode::SERVICE_UNAVAILABLE),
            }
        }
        if let Some(a) = last {
            page.next = Some(query_string(&[("ctl", kind), ("number", &number), ("after", &a)]));
        }
        if page.rows.is_empty() {
            page.message = Some("No transaction has that control number.".into());
        }
        return render(page);
    }
    // One transaction by id: straight to its page.
    if let Some(id) = q.id.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        page.searched = true;
        for p in partners.iter().filter_map(|p| PartnerId::new(p).ok()) {
            match lookup::record(&console.svc, &p, id).await {
                Ok(Some(r)) => return Redirect::to(&format!("/console/transactions/{}/{}", p, r.id)).into_response(),
                Ok(None) => {}
                Err(_) => return page_error(StatusCode::SERVICE_UNAVAILABLE),
            }
        }
        page.message = Some("No transaction has that id.".into());
        return render(page);
    }
    let Some(partner) = q.partner.as_deref().filter(|p| !p.is_empty()) else { return render(page) };
    page.searched = true;
    let Ok(partner) = PartnerId::new(partner) else {
        page.message = Some("No such partner.".into());
        return render(page);
    };
    let status = q.status.as_deref().filter(|s| STATUSES.contains(s));
    let Ok(mut after) = start_of(&q, |a| clearway_core::ids::TransactionId::parse(a).is_some()) else {
        page.message = Some("Dates are YYYY-MM-DD.".into());
        return render(page);
    };
    let mut scanned = 0;
    let mut more = false;
    'pages: while scanned < SCAN_ROWS {
        let items =
            match console.svc.ports.state.query(Table::Transactions, partner.as_str(), after.as_deref(), 200).await {
                Ok(i) => i,
                Err(_) => return page_error(StatusCode::SERVICE_UNAVAILABLE),
            };
        if items.is_empty() {
            break;
        }
        let full = items.len() == 200;
        for (sk, item) in items {
            scanned += 1;
            after = Some(sk);
            let Ok(r) = serde_json::from_slice::<TransactionRecord>(&item.value) else { continue };
            if status.is_none_or(|s| r.status.as_str() == s) {
                page.rows.push(row(&r));
                if page.rows.len() == PAGE_ROWS {
                    more = true;
                    break 'pages;
                }
            }
            if scanned >= SCAN_ROWS {
                more = true;
                break 'pages;
            }
        }
        if !full {
            break;
        }
    }
    if more && let Some(a) = &after {
        page.next =
            Some(query_string(&[("partner", partner.as_str()), ("status", status.unwrap_or("")), ("after", a)]));
    }
    if page.rows.is_empty() {
        page.message = Some(if page.next.is_some() {
            "None on this stretch; go on to the next.".into()
        } else {
            "No transactions match.".into()
        });
    }
    render(page)
}

#[derive(serde::Deserialize)]
pub struct ClaimSearch {
    pcn: String,
}

/// `POST /console/search/claim`: the transactions holding a claim with this
/// patient control number (PHI: by `POST`, never in a URL), found through
/// the claim index; audited with the patient's token.
pub async fn claim(State(console): State<Arc<Console>>, who: SignedIn, Form(f): Form<ClaimSearch>) -> Response {
    let allowed = who.account.role == Role::Operator;
    let pcn = f.pcn.trim();
    let mut e =
        event("console.search_claim", "R", who.actor(), if allowed { StatusCode::OK } else { StatusCode::FORBIDDEN });
    if !pcn.is_empty() && pcn.len() <= 64 {
        e.patients = vec![console.svc.partners.index_token(pcn)];
    }
    if !audit(&console, e).await {
        return page_error(StatusCode::SERVICE_UNAVAILABLE);
    }
    if !allowed {
        return page_error(StatusCode::FORBIDDEN);
    }
    let mut page = SearchPage {
        frame: Frame::new("Search", Some(&who)),
        partners: partner_ids(&console).await,
        statuses: STATUSES,
        partner: String::new(),
        status: String::new(),
        from: String::new(),
        id: String::new(),
        rows: vec![],
        searched: true,
        message: None,
        next: None,
        kinds: CONTROL_KINDS,
        ctl: String::new(),
        number: String::new(),
    };
    if pcn.is_empty() || pcn.len() > 64 {
        page.message = Some("A patient control number has 1 to 64 characters.".into());
        return render(page);
    }
    let partition = console.svc.partners.pcn_partition(pcn);
    let items = match console.svc.ports.state.query(Table::Claims, &partition, None, 100).await {
        Ok(i) => i,
        Err(_) => return page_error(StatusCode::SERVICE_UNAVAILABLE),
    };
    let mut seen = std::collections::HashSet::new();
    for (_, item) in items {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&item.value) else { continue };
        let (Some(p), Some(t)) = (v["partner"].as_str(), v["transactionId"].as_str()) else { continue };
        if !seen.insert((p.to_string(), t.to_string())) {
            continue;
        }
        let Ok(p) = PartnerId::new(p) else { continue };
        if let Ok(Some(r)) = lookup::record(&console.svc, &p, t).await {
            page.rows.push(row(&r));
        }
    }
    if page.rows.is_empty() {
        page.message = Some("No claim has that patient control number.".into());
    }
    render(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real UUIDv7 made at `secs` (+ `nanos`).
    fn v7_at(secs: u64, nanos: u32) -> String {
        uuid::Uuid::new_v7(uuid::Timestamp::from_unix(uuid::NoContext, secs, nanos)).to_string()
    }

    #[test]
    fn a_date_is_the_smallest_id_of_its_day() {
        let id = first_id_of("2026-12-07").unwrap();
        let midnight = time::macros::datetime!(2026-12-07 0:00 UTC).unix_timestamp() as u64;
        for _ in 0..100 {
            assert!(id < v7_at(midnight, 0), "every id of the day sorts after it");
            assert!(id > v7_at(midnight - 1, 999_000_000), "every id of the day before sorts before it");
        }
        assert!(clearway_core::ids::TransactionId::parse(&id).is_some());
        assert_eq!(first_id_of("2026-13-01"), None);
        assert_eq!(first_id_of("yesterday"), None);
    }

    #[test]
    fn query_strings_carry_only_what_is_given_escaped() {
        assert_eq!(
            query_string(&[("partner", "acme"), ("status", ""), ("after", "a b&c")]),
            "partner=acme&after=a%20b%26c"
        );
    }
}
