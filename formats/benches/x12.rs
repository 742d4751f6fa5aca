//! X12 throughput: tokenizing, parsing + SNIP 1-2 validation, parsing +
//! validation + every claim edit with every code set loaded, and the
//! `x12-types` crate parsing the same 837P, in one run so the ratios are
//! fair.
//!
//! `cargo bench -p clearway-formats --bench x12` (results in docs/BENCHMARKS.md).
//! `CLEARWAY_BENCH_CLAIMS` sets the claim count (default 100,000);
//! `CLEARWAY_CODESETS_DIR` is where `scripts/fetch-codesets.py` put the
//! public code-set files (required).

use clearway_formats::edits::codesets::{CodeSets, CodeSystem, Release, ReleaseCode, read_release};
use clearway_formats::edits::{self, Context, Policy};
use clearway_formats::x12::analyze::{AnalyzeOptions, Sink};
use clearway_formats::x12::synth::{self, Kind};
use clearway_formats::x12::{Document, SegmentReader, analyze_into};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Duration;
use x12_types::util::Parser as _;

// The same allocator as the `clearway` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Default)]
struct Count {
    claims: usize,
    accepted_sets: usize,
}

impl Sink for Count {
    fn document(&mut self, d: Document) {
        if matches!(d, Document::Claim(_)) {
            self.claims += 1;
        }
    }
    fn set_end(&mut self, r: clearway_formats::x12::analyze::SetReport) {
        if r.accepted() {
            self.accepted_sets += 1;
        }
    }
}

/// Runs every claim edit on each claim as its set ends (after SNIP 1-2).
struct Edits<'a> {
    cx: Context<'a>,
    claims: Vec<clearway_core::Claim>,
    rejected: usize,
    judged: usize,
}

impl Sink for Edits<'_> {
    fn document(&mut self, d: Document) {
        if let Document::Claim(c) = d {
            self.claims.push(*c);
        }
    }
    fn set_end(&mut self, r: clearway_formats::x12::analyze::SetReport) {
        for c in self.claims.drain(..) {
            if r.accepted() {
                self.judged += 1;
                if !edits::judge(&c, &self.cx).is_accepted() {
                    self.rejected += 1;
                }
            }
        }
    }
}

/// Every code set: the ICD-10-CM files of `CLEARWAY_CODESETS_DIR` (the
/// FY2021 order file also loaded as in force for FY2023, the year of the
/// synthetic dates of service, so every diagnosis is looked up), the
/// ICD-10-PCS list for three years, and 8,000 HCPCS codes.
fn code_sets() -> CodeSets {
    let dir = std::env::var("CLEARWAY_CODESETS_DIR").expect("CLEARWAY_CODESETS_DIR (scripts/fetch-codesets.py DIR)");
    let read = |name: &str, effective: Option<time::Date>| {
        let bytes = std::fs::read(std::path::Path::new(&dir).join(name)).expect("code-set file");
        read_release(name, &bytes, None, effective).expect("release")
    };
    let mut releases = vec![
        read("icd10cm-order-Jan-2021.txt", None),
        read("icd10cm-order-Jan-2021.txt", Some(time::macros::date!(2022 - 10 - 01))),
        read("icd10cm_tabular_2021.xml", None),
        read("icd10cm-tabular-April-2025.xml", None),
        read("icd10c-tabular-April-1-2026.xml", None),
    ];
    let pcs = std::fs::read_to_string(std::path::Path::new(&dir).join("icd_10_pcs.csv")).expect("pcs");
    let pcs: Vec<ReleaseCode> = pcs
        .lines()
        .filter_map(|l| l.split(',').next())
        .map(|c| ReleaseCode { code: c.trim_matches('"').into(), billable: true, from: None, to: None })
        .collect();
    for year in [2023, 2024, 2025] {
        let effective = time::Date::from_calendar_date(year, time::Month::October, 1).expect("date");
        releases.push(Release { system: CodeSystem::Icd10Pcs, label: "pcs".into(), effective, codes: pcs.clone() });
    }
    let hcpcs = (0..8000u32)
        .map(|i| ReleaseCode {
            code: format!("{}{i:04}", char::from(b'A' + (i % 22) as u8)),
            billable: true,
            from: None,
            to: None,
        })
        .collect();
    let effective = time::macros::date!(2023 - 01 - 01);
    releases.push(Release { system: CodeSystem::Hcpcs, label: "hcpcs".into(), effective, codes: hcpcs });
    CodeSets::new(&releases)
}

fn input(claims: usize) -> Vec<u8> {
    let mut out = Vec::new();
    synth::write(&mut out, Kind::Professional837, claims, 42).expect("generate");
    // One line: x12-types does not accept line breaks after terminators.
    out.retain(|&b| b != b'\n');
    out
}

fn bench(c: &mut Criterion) {
    let claims: usize = std::env::var("CLEARWAY_BENCH_CLAIMS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let data = input(claims);
    let text = std::str::from_utf8(&data).expect("ascii");

    // Sanity: both parsers read the whole file.
    let mut count = Count::default();
    let totals = analyze_into(&data[..], &AnalyzeOptions::default(), &mut count);
    assert_eq!(count.claims, claims);
    assert_eq!(count.accepted_sets as u32, totals.sets, "generated input validates clean");
    let x12_types_ok = match x12_types::v005010::Transmission::<x12_types::v005010::_837>::parse(text) {
        Ok((rest, _)) => rest.trim().is_empty(),
        Err(_) => false,
    };
    eprintln!(
        "input: {} bytes, {claims} claims, {} sets; x12-types parses it: {x12_types_ok}",
        data.len(),
        totals.sets
    );

    let codes = code_sets();
    let policy = Policy::default();
    let cx = Context { received: time::macros::date!(2024 - 01 - 15), codes: &codes, policy: &policy };
    let (judged, rejected) = run_edits(&data, &cx);
    assert_eq!(judged, claims, "every claim judged");
    eprintln!(
        "claim edits: {judged} claims judged, {rejected} rejected; code sets {:.1} MiB",
        codes.heap_bytes() as f64 / 1048576.0
    );

    let mut g = c.benchmark_group("x12_837p");
    g.sample_size(10).measurement_time(Duration::from_secs(20)).warm_up_time(Duration::from_secs(2));
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function(BenchmarkId::new("tokenize", claims), |b| {
        b.iter(|| {
            let mut r = SegmentReader::new(&data[..]);
            let mut n = 0u64;
            while let Ok(Some(s)) = r.next_segment() {
                n += s.raw().len() as u64;
            }
            black_box(n)
        })
    });
    let validate_only = AnalyzeOptions { skip_documents: true, ..AnalyzeOptions::default() };
    g.bench_function(BenchmarkId::new("parse_validate", claims), |b| {
        b.iter(|| {
            let mut count = Count::default();
            let totals = analyze_into(&data[..], &validate_only, &mut count);
            black_box(totals.accepted_sets)
        })
    });
    g.bench_function(BenchmarkId::new("parse_validate_claims", claims), |b| {
        b.iter(|| {
            let mut count = Count::default();
            analyze_into(&data[..], &AnalyzeOptions::default(), &mut count);
            black_box(count.claims)
        })
    });
    g.bench_function(BenchmarkId::new("parse_validate_edits", claims), |b| {
        b.iter(|| black_box(run_edits(&data, &cx).0))
    });
    if x12_types_ok {
        g.bench_function(BenchmarkId::new("x12_types_parse", claims), |b| {
            b.iter(|| black_box(x12_types::v005010::Transmission::<x12_types::v005010::_837>::parse(text).is_ok()))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("x12_837p_claims");
    g.sample_size(10).measurement_time(Duration::from_secs(20)).warm_up_time(Duration::from_secs(2));
    g.throughput(Throughput::Elements(claims as u64));
    g.bench_function(BenchmarkId::new("parse_validate", claims), |b| {
        b.iter(|| black_box(analyze_into(&data[..], &validate_only, &mut Count::default()).accepted_sets))
    });
    g.bench_function(BenchmarkId::new("parse_validate_claims", claims), |b| {
        b.iter(|| {
            let mut count = Count::default();
            analyze_into(&data[..], &AnalyzeOptions::default(), &mut count);
            black_box(count.claims)
        })
    });
    g.bench_function(BenchmarkId::new("parse_validate_edits", claims), |b| {
        b.iter(|| black_box(run_edits(&data, &cx).0))
    });
    g.finish();
}

/// Parse, SNIP 1-2 and every claim edit: (claims judged, claims rejected).
fn run_edits(data: &[u8], cx: &Context<'_>) -> (usize, usize) {
    let mut sink = Edits { cx: *cx, claims: Vec::new(), rejected: 0, judged: 0 };
    analyze_into(data, &AnalyzeOptions::default(), &mut sink);
    (sink.judged, sink.rejected)
}

criterion_group!(benches, bench);
criterion_main!(benches);
