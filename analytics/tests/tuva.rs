//! The Tuva tables have exactly the Tuva Project input layer's columns, in
//! its order, with its declared types (`fixtures/tuva/`, from
//! tuva-health/tuva at 6be34c7), so that a dbt + DuckDB user can run Tuva
//! over the exported files unchanged.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use clearway_analytics::datafusion::arrow::datatypes::{DataType, TimeUnit};
use clearway_analytics::schema::{TUVA_ELIGIBILITY, TUVA_MEDICAL_CLAIM, TUVA_PHARMACY_CLAIM, TableDef};

fn tuva_type(declared: &str) -> DataType {
    match declared {
        "varchar" => DataType::Utf8,
        "integer" => DataType::Int32,
        "date" => DataType::Date32,
        "float" | "number" => DataType::Float64,
        "boolean" => DataType::Boolean,
        "timestamp" => DataType::Timestamp(TimeUnit::Microsecond, None),
        // Five eligibility columns declare no type: text, the least
        // surprising choice for codes and flags Clearway leaves empty.
        "" => DataType::Utf8,
        other => panic!("a Tuva type this test does not know: {other}"),
    }
}

#[test]
fn tuva_tables_match_the_input_layer() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/tuva/input_layer_columns.tsv"))
            .unwrap();
    let rows: Vec<Vec<&str>> = text.lines().skip(1).map(|l| l.split('\t').collect()).collect();
    let tables: [(&str, &TableDef, usize); 3] = [
        ("medical_claim", &TUVA_MEDICAL_CLAIM, 148),
        ("pharmacy_claim", &TUVA_PHARMACY_CLAIM, 25),
        ("eligibility", &TUVA_ELIGIBILITY, 39),
    ];
    for (model, def, count) in tables {
        let expected: Vec<(String, DataType)> = rows
            .iter()
            .filter(|r| r[0] == model)
            .map(|r| (r[1].to_string(), tuva_type(r.get(2).copied().unwrap_or(""))))
            .collect();
        assert_eq!(expected.len(), count, "{model}: the fixture");
        let schema = def.schema();
        let ours: Vec<(String, DataType)> =
            schema.fields().iter().map(|f| (f.name().clone(), f.data_type().clone())).collect();
        assert_eq!(ours, expected, "{model}");
        assert_eq!(def.name, format!("tuva_{model}"));
    }
}
