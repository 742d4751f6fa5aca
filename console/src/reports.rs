//! The analytics reports (operators and auditors, as `GET
//! /v1/reports/{name}`): the report pack run in-process over the Parquet
//! export ([`clearway_core::reports::Reports`]), shown as a table and, for a
//! report with a label and a number, a bar chart drawn as inline SVG.

use crate::{Console, Frame, SignedIn, audit, event, page_error, render};
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use clearway_core::access::Role;
use clearway_core::audit::AuditEntity;
use clearway_core::reports::{ReportParams, parse_bound};
use std::sync::Arc;

/// Most rows a report page shows, and bars its chart draws.
pub const MAX_ROWS: usize = 500;
pub const MAX_BARS: usize = 30;

#[derive(Debug, Default, serde::Deserialize)]
pub struct ReportQuery {
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    partner: String,
    #[serde(default)]
    payer: String,
}

/// One bar: its label, value and geometry (SVG units, 600 wide).
#[derive(Debug)]
pub struct Bar {
    pub label: String,
    pub value: String,
    pub y: usize,
    pub width: u32,
}

#[derive(Template)]
#[template(path = "reports.html")]
pub struct ReportsPage {
    pub frame: Frame,
    pub names: Vec<&'static str>,
    pub name: String,
    pub q_from: String,
    pub q_to: String,
    pub q_partner: String,
    pub q_payer: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
    pub more: bool,
    pub chart_title: String,
    pub bars: Vec<Bar>,
    pub chart_height: usize,
    pub message: Option<String>,
}

fn cell(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The bars of a report: its first text column against its first numeric
/// one, when it has both.
fn chart(columns: &[String], rows: &[serde_json::Map<String, serde_json::Value>]) -> (String, Vec<Bar>) {
    let first = |pred: fn(&serde_json::Value) -> bool| {
        columns.iter().find(|c| rows.iter().any(|r| r.get(c.as_str()).is_some_and(pred))).cloned()
    };
    let (Some(label), Some(value)) = (first(serde_json::Value::is_string), first(serde_json::Value::is_number)) else {
        return (String::new(), vec![]);
    };
    let values: Vec<(String, f64)> = rows
        .iter()
        .take(MAX_BARS)
        .map(|r| (r.get(&label).map(cell).unwrap_or_default(), r.get(&value).and_then(|v| v.as_f64()).unwrap_or(0.0)))
        .collect();
    let top = values.iter().map(|(_, v)| *v).fold(0.0, f64::max);
    let bars = values
        .into_iter()
        .enumerate()
        .map(|(i, (l, v))| Bar {
            label: l,
            value: if v.fract() == 0.0 { format!("{v:.0}") } else { format!("{v:.3}") },
            y: i * 22,
            width: if top > 0.0 { ((v.max(0.0) / top) * 380.0).round() as u32 } else { 0 },
        })
        .collect();
    (format!("{value} by {label}"), bars)
}

/// `GET /console/reports` and `GET /console/reports/{name}`.
pub async fn page(
    State(console): State<Arc<Console>>,
    who: SignedIn,
    name: Option<Path<String>>,
    Query(q): Query<ReportQuery>,
) -> Response {
    let allowed = matches!(who.account.role, Role::Operator | Role::Auditor);
    let name = name.map(|Path(n)| n).unwrap_or_default();
    let mut e = event("console.report", "R", who.actor(), if allowed { StatusCode::OK } else { StatusCode::FORBIDDEN });
    if !name.is_empty() {
        e.entity.push(AuditEntity { kind: "report".into(), id: name.chars().take(64).collect() });
    }
    if !audit(&console, e).await {
        return page_error(StatusCode::SERVICE_UNAVAILABLE);
    }
    if !allowed {
        return page_error(StatusCode::FORBIDDEN);
    }
    let reports = console.svc.reports.clone();
    let mut page = ReportsPage {
        frame: Frame::new("Reports", Some(&who)),
        names: reports.as_ref().map(|r| r.names()).unwrap_or_default(),
        name: name.clone(),
        q_from: q.from.clone(),
        q_to: q.to.clone(),
        q_partner: q.partner.clone(),
        q_payer: q.payer.clone(),
        columns: vec![],
        rows: vec![],
        more: false,
        chart_title: String::new(),
        bars: vec![],
        chart_height: 0,
        message: None,
    };
    let Some(reports) = reports else {
        page.message = Some("This process does not serve reports (no analytics export is configured).".into());
        return render(page);
    };
    if name.is_empty() {
        return render(page);
    }
    let bound = |v: &str| if v.trim().is_empty() { Ok(None) } else { parse_bound(v.trim()).map(Some).ok_or(()) };
    let (Ok(from_us), Ok(to_us)) = (bound(&q.from), bound(&q.to)) else {
        page.message = Some("Periods are dates (YYYY-MM-DD) or RFC 3339 times.".into());
        return render(page);
    };
    let params = ReportParams {
        from_us,
        to_us,
        partner: Some(q.partner.trim().to_string()).filter(|s| !s.is_empty()),
        payer: Some(q.payer.trim().to_string()).filter(|s| !s.is_empty()),
    };
    let rows = match reports.run(&name, &params).await {
        Ok(Some(serde_json::Value::Array(rows))) => rows,
        Ok(Some(_)) => vec![],
        Ok(None) => return page_error(StatusCode::NOT_FOUND),
        Err(e) => {
            tracing::warn!(error = %clearway_core::error::chain(&e), "console report failed");
            return page_error(StatusCode::SERVICE_UNAVAILABLE);
        }
    };
    let objects: Vec<serde_json::Map<String, serde_json::Value>> =
        rows.into_iter().filter_map(|r| if let serde_json::Value::Object(m) = r { Some(m) } else { None }).collect();
    if objects.is_empty() {
        page.message = Some("The report has no rows for this period.".into());
        return render(page);
    }
    page.columns = objects[0].keys().cloned().collect();
    page.more = objects.len() > MAX_ROWS;
    page.rows = objects
        .iter()
        .take(MAX_ROWS)
        .map(|r| page.columns.iter().map(|c| r.get(c).map(cell).unwrap_or_default()).collect())
        .collect();
    let (title, bars) = chart(&page.columns, &objects);
    page.chart_height = bars.len() * 22;
    page.chart_title = title;
    page.bars = bars;
    render(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_plots_the_first_number_against_the_first_label() {
        let rows: Vec<serde_json::Map<String, serde_json::Value>> = [
            serde_json::json!({"payer": "P1", "rejected_share": 0.5, "claims": 10}),
            serde_json::json!({"payer": "P2", "rejected_share": 0.25, "claims": 4}),
        ]
        .into_iter()
        .map(|v| v.as_object().unwrap().clone())
        .collect();
        let columns: Vec<String> = rows[0].keys().cloned().collect();
        let (title, bars) = chart(&columns, &rows);
        // Keys sort: claims is the first number, payer the first text.
        assert_eq!(title, "claims by payer");
        assert_eq!((bars[0].label.as_str(), bars[0].width, bars[0].value.as_str()), ("P1", 380, "10"));
        assert_eq!((bars[1].width, bars[1].y), (152, 22));
        assert!(chart(&["n".into()], &[serde_json::json!({"n": 1}).as_object().unwrap().clone()]).1.is_empty());
    }
}
