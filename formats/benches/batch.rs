//! Outbound batches: taking claims out of submitters' 837Ps (their own
//! segments), and writing them as payer 837 batches of 5,000 claims under
//! the clearinghouse's envelope (grouped by billing provider, REF*D9 on
//! each claim); and reading a payer's 277CA of 10,000 claims back.
//!
//! `cargo bench -p clearway-formats --bench batch` (results in
//! docs/BENCHMARKS.md). Goal: batch writing ≥ 100,000 claims/s.

use clearway_formats::x12::batch::{self, ClaimFragment, Outbound837, Parties};
use clearway_formats::x12::build::{self, ClaimAck, ClaimDecision, Controls, Envelope, Source};
use clearway_formats::x12::synth::{self, Kind};
use clearway_formats::x12::{AnalyzeOptions, analyze};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Duration;
use time::macros::datetime;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CLAIMS: usize = 20_000;

fn bench(c: &mut Criterion) {
    let mut input = Vec::new();
    synth::write(&mut input, Kind::Professional837, CLAIMS, 42).expect("synthetic 837P");
    let sets = batch::claim_fragments(&input);
    let fragments: Vec<ClaimFragment> = sets.into_iter().flat_map(|s| s.claims).flatten().collect();
    assert_eq!(fragments.len(), CLAIMS);
    let traces: Vec<String> = (0..CLAIMS).map(|i| format!("01a24951-0dc1-775c-bcc2-e4c73bc5bcc0-{i}")).collect();
    let env = Envelope {
        sender_qualifier: "ZZ".into(),
        sender_id: "CLEARWAY".into(),
        receiver_qualifier: "ZZ".into(),
        receiver_id: "ACME01".into(),
        group_sender: "CLEARWAY".into(),
        group_receiver: "ACME01".into(),
        usage: "P".into(),
        delimiters: batch::OUT,
    };
    let parties = Parties {
        submitter_name: "CLEARWAY",
        submitter_id: "CLEARWAY",
        contact_name: "EDI",
        contact_qualifier: "EM",
        contact: "edi@example.com",
        receiver_name: "ACME",
        receiver_id: "ACME01",
    };
    let build = |claims: &[&ClaimFragment], traces: &[&str]| {
        batch::build_837(&Outbound837 {
            envelope: &env,
            parties: parties.clone(),
            ack_requested: true,
            control: 7,
            bht03: "000000007",
            at: datetime!(2026-12-06 10:00),
            claims,
            traces,
        })
    };

    let mut g = c.benchmark_group("round trip");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.throughput(Throughput::Elements(CLAIMS as u64));
    g.bench_function("claim fragments out of 837Ps (claims)", |b| {
        b.iter(|| black_box(batch::claim_fragments(black_box(&input))).len())
    });
    g.bench_function("payer 837 batches of 5,000 (claims)", |b| {
        b.iter(|| {
            let mut bytes = 0;
            for (chunk, t) in fragments.chunks(5000).zip(traces.chunks(5000)) {
                let refs: Vec<&ClaimFragment> = chunk.iter().collect();
                let ts: Vec<&str> = t.iter().map(String::as_str).collect();
                bytes += build(&refs, &ts).bytes.len();
            }
            black_box(bytes)
        })
    });

    // A payer's 277CA for 10,000 of them, read back.
    let refs: Vec<&ClaimFragment> = fragments.iter().take(10_000).collect();
    let ts: Vec<&str> = traces.iter().take(10_000).map(String::as_str).collect();
    let out = build(&refs, &ts).bytes;
    let analysis = analyze(&out, &AnalyzeOptions::default());
    let mut answer = Vec::new();
    for set in &analysis.interchanges[0].groups[0].sets {
        let claims = build::claims_of(set);
        let acks: Vec<ClaimAck<'_>> = claims
            .iter()
            .map(|c| ClaimAck { claim: c, decision: ClaimDecision::Accepted, clearinghouse_trace: "T".into() })
            .collect();
        answer.extend(build::ack277ca(&build::Ack277Ca {
            interchange: &analysis.interchanges[0].report.isa,
            group: &analysis.interchanges[0].groups[0].report.header,
            set: &set.report,
            claims: &acks,
            source: &Source { name: "ACME".into(), id: "ACME01".into() },
            reference: "P1",
            received: datetime!(2026-12-06 10:00).date(),
            controls: Controls { interchange: 9, group: 9, first_set: 1 },
            at: datetime!(2026-12-06 11:00),
        }));
    }
    g.throughput(Throughput::Elements(10_000));
    g.bench_function("payer 277CA of 10,000 read (claims)", |b| {
        b.iter(|| black_box(batch::read_answers(black_box(&answer[..])).map(|a| a.len()).unwrap_or(0)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
