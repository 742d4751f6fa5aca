//! X12 throughput: tokenizing, parsing + SNIP 1-2 validation, and the
//! `x12-types` crate parsing the same 837P, in one run so the ratio is fair.
//!
//! `cargo bench -p clearway-formats --bench x12` (results in docs/BENCHMARKS.md).
//! `CLEARWAY_BENCH_CLAIMS` sets the claim count (default 100,000).

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
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
