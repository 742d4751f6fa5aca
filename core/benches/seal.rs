//! What the key hierarchy costs per object: sealing and opening a payload
//! as an envelope (a fresh data key per object, wrapped by the partner's
//! key version) next to sealing it directly with one key (the format
//! before envelopes), in the same run; and re-wrapping an envelope's
//! header.
//!
//! `cargo bench -p clearway-core --features crypto --bench seal` (results
//! in docs/BENCHMARKS.md).

use clearway_core::crypto::Key;
use clearway_core::keys::{PartnerKeys, seal_envelope};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let key = Key::generate().expect("key");
    let aad = b"0193a4d2-7f00-7000-8000-000000000000|acme";
    for size in [2 * 1024, 64 * 1024] {
        let payload = vec![b'x'; size];
        let mut g = c.benchmark_group(format!("seal {} KiB", size / 1024));
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function("direct (CW1)", |b| b.iter(|| key.seal(black_box(&payload), aad).expect("seal")));
        g.bench_function("envelope (CW2)", |b| {
            b.iter(|| seal_envelope(&key, 1, "acme", black_box(&payload), aad).expect("seal"))
        });
        g.finish();
        let direct = key.seal(&payload, aad).expect("seal");
        let keys = PartnerKeys::from_versions([(1, key.clone())]);
        let envelope = keys.seal("acme", &payload, aad).expect("seal");
        let mut g = c.benchmark_group(format!("open {} KiB", size / 1024));
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function("direct (CW1)", |b| b.iter(|| key.open(black_box(&direct), aad).expect("open")));
        g.bench_function("envelope (CW2)", |b| b.iter(|| keys.open("acme", black_box(&envelope), aad).expect("open")));
        g.finish();
        // Re-wrap: the header only, onto version 2.
        let rotated = PartnerKeys::from_versions([(1, key.clone()), (2, Key::generate().expect("key"))]);
        let mut g = c.benchmark_group(format!("rewrap {} KiB", size / 1024));
        g.throughput(Throughput::Elements(1));
        g.bench_function("envelope header", |b| {
            b.iter(|| rotated.rewrap("acme", black_box(&envelope), aad).expect("rewrap"))
        });
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
