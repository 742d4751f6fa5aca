//! The analytics pages describe the code as it is: every exported table and
//! column in `docs/specs/analytics.md`, every report in
//! `docs/specs/reports.md`, and nothing else.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use clearway_analytics::report::REPORTS;
use clearway_analytics::schema::TABLES;

fn page(name: &str) -> String {
    std::fs::read_to_string(format!("{}/../docs/specs/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// The `### `name`` headings of a page.
fn headings(text: &str, level: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix(level))
        .filter_map(|l| l.trim().strip_prefix('`')?.strip_suffix('`').map(String::from))
        .collect()
}

#[test]
fn the_analytics_page_lists_every_table_and_column() {
    let text = page("analytics.md");
    let names: Vec<String> = TABLES.iter().map(|t| t.name.to_string()).collect();
    assert_eq!(headings(&text, "### "), names);
    for t in TABLES {
        let at = text.find(&format!("### `{}`", t.name)).unwrap();
        let section = &text[at + 4..];
        let section = &section[..section.find("\n#").unwrap_or(section.len())];
        let cols: Vec<&str> = section.lines().filter_map(|l| l.strip_prefix("| `")?.split('`').next()).collect();
        let expected: Vec<&str> = t.columns.iter().map(|c| c.0).collect();
        assert_eq!(cols, expected, "{}", t.name);
    }
}

#[test]
fn the_reports_page_lists_every_report() {
    let names: Vec<String> = REPORTS.iter().map(|r| r.name.to_string()).collect();
    assert_eq!(headings(&page("reports.md"), "## "), names);
    for r in REPORTS {
        let file = format!("{}/reports/{}.sql", env!("CARGO_MANIFEST_DIR"), r.name);
        assert_eq!(std::fs::read_to_string(file).unwrap(), r.sql, "{}", r.name);
    }
}
