//! The Glue tables in `infra/analytics.tf` describe exactly the files the
//! exporter writes: every table, every column in order, each with the
//! Hive type of its Arrow type.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use clearway_analytics::schema::TABLES;

#[test]
fn glue_tables_match_the_export_schema() {
    let tf = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/analytics.tf")).unwrap();
    for t in TABLES {
        let start = format!("resource \"aws_glue_catalog_table\" \"{}\" {{", t.name);
        let at = tf.find(&start).unwrap_or_else(|| panic!("no Glue table for {}", t.name));
        let block = &tf[at..];
        let block = &block[..block[1..].find("\nresource ").map_or(block.len(), |i| i + 1)];
        let mut found = Vec::new();
        let mut rest = block;
        while let Some(i) = rest.find("columns {") {
            rest = &rest[i + 9..];
            let field = |key: &str| {
                let j = rest.find(&format!("{key} = \"")).unwrap() + key.len() + 4;
                rest[j..j + rest[j..].find('"').unwrap()].to_string()
            };
            found.push((field("name"), field("type")));
        }
        let expected: Vec<(String, String)> =
            t.columns.iter().map(|(n, ty)| (n.to_string(), ty.hive().to_string())).collect();
        assert_eq!(found, expected, "{}", t.name);
        let template = format!("/clearway/v1/{}/received_date=$${{received_date}}/", t.name);
        assert_eq!(block.contains(&template), t.partitioned(), "{}: partition projection", t.name);
        assert!(block.contains(&format!("/clearway/v1/{}/\"", t.name)), "{}: location", t.name);
    }
    assert_eq!(tf.matches("resource \"aws_glue_catalog_table\"").count(), TABLES.len(), "no table the export lacks");
}
