//! Offline verification of a 1,000,000-entry audit bundle.
//!
//! `cargo bench -p comity-protocol --bench audit_verify`
//!
//! The target is at least 500,000 entries/s on the 2-core reference
//! machine: a year of a busy central authority's log checked in seconds.
//! Criterion reports the throughput in elements (entries) per second.

use std::hint::black_box;
use std::io::Cursor;
use std::time::{Duration, Instant};

use comity_protocol::audit::bundle::{verify_bundle, VerifyOptions};
use comity_protocol::sample::sample_bundle;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const ENTRIES: u64 = 1_000_000;
const CHECKPOINT_EVERY: u64 = 100_000;

fn bench(c: &mut Criterion) {
    let t = Instant::now();
    let bundle = sample_bundle(ENTRIES, CHECKPOINT_EVERY).expect("sample bundle");
    eprintln!(
        "built a {ENTRIES}-entry bundle of {} MiB in {:.2?}",
        bundle.len() >> 20,
        t.elapsed()
    );

    // One plain measurement first, printed as entries/s.
    for threads in [1usize, 0] {
        let opts = VerifyOptions {
            threads,
            ..VerifyOptions::default()
        };
        let t = Instant::now();
        let report = verify_bundle(Cursor::new(&bundle), &opts).expect("in memory");
        let secs = t.elapsed().as_secs_f64();
        assert!(report.is_valid(), "{:?}", report.findings);
        assert_eq!(report.entries, ENTRIES);
        eprintln!(
            "verify_bundle, threads={}: {:.3} s, {:.0} entries/s",
            if threads == 0 {
                "all".to_string()
            } else {
                threads.to_string()
            },
            secs,
            ENTRIES as f64 / secs
        );
    }

    let mut g = c.benchmark_group("audit_bundle_1M");
    g.throughput(Throughput::Elements(ENTRIES));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(30));
    g.bench_function("verify_bundle", |b| {
        b.iter(|| {
            let r = verify_bundle(Cursor::new(black_box(&bundle)), &VerifyOptions::default())
                .expect("in memory");
            black_box(r.entries)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
