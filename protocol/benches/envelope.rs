//! Cost of each cryptographic step for one 1 KiB request, on one core.
//!
//! `cargo bench -p comity-protocol --bench envelope`
//!
//! The floor for a whole message is ~220 µs of crypto CPU (sign,
//! HPKE seal/open, verify, receipt sign and verify); compare the sum of
//! seal + check + open + receipt sign + receipt verify with it.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

use comity_protocol::envelope::{check, seal, CheckPolicy};
use comity_protocol::receipt::Receipt;
use comity_protocol::sample::request_1kib;
use comity_protocol::{Digest, Identity, MessageId, NodeId, PeerKeys, Timestamp};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

fn bench(c: &mut Criterion) {
    let now = Timestamp::now();
    let a = Identity::generate(now);
    let b = Identity::generate(now);
    let pins: HashMap<NodeId, PeerKeys> = [(a.id(), a.public().clone())].into();
    let seen: HashMap<(NodeId, MessageId), Digest> = HashMap::new();
    let policy = CheckPolicy {
        now,
        max_future_skew: Duration::from_secs(300),
        max_age: Duration::from_secs(14 * 86400),
        max_envelope_bytes: 4 << 20,
    };
    let body = request_1kib().expect("sample request");
    let mut rng = rand::rng();

    let mut g = c.benchmark_group("envelope_1KiB");
    g.throughput(Throughput::Elements(1));
    g.bench_function("seal", |bench| {
        bench.iter(|| {
            seal(
                &a,
                b.public(),
                MessageId::random(),
                now,
                black_box(&body),
                &mut rng,
            )
        })
    });
    let sealed = seal(&a, b.public(), MessageId::random(), now, &body, &mut rng).expect("seal");
    g.bench_function("outer_check", |bench| {
        bench.iter(|| check(black_box(&sealed.bytes), &b, &pins, &seen, &policy))
    });
    let checked = check(&sealed.bytes, &b, &pins, &seen, &policy).expect("check");
    g.bench_function("open", |bench| {
        bench.iter_batched(|| checked.clone(), |c| c.open(&b), BatchSize::SmallInput)
    });
    let opened = checked.clone().open(&b).expect("open");
    g.bench_function("receipt_sign", |bench| {
        bench.iter(|| Receipt::sign(&b, black_box(&opened), now).expect("a file key signs"))
    });
    let receipt = Receipt::sign(&b, &opened, now).expect("a file key signs");
    g.bench_function("receipt_verify", |bench| {
        bench.iter(|| black_box(&receipt).verify(&a.id(), b.public(), &sealed.id, &sealed.digest))
    });
    g.bench_function("receipt_decode_verify", |bench| {
        let bytes = receipt.to_bytes().expect("encode");
        bench.iter(|| {
            Receipt::from_bytes(black_box(&bytes))
                .and_then(|r| r.verify(&a.id(), b.public(), &sealed.id, &sealed.digest))
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
