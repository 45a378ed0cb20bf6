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

use comity_protocol::audit::bundle::{verify_bundle, BundleWriter, VerifyOptions};
use comity_protocol::audit::checkpoint::{cosign, origin_for, sign_checkpoint, Checkpoint};
use comity_protocol::audit::entry::{Actor, AuditEntry, AuditKind};
use comity_protocol::audit::merkle::{leaf_hash, Frontier};
use comity_protocol::audit::note::Note;
use comity_protocol::{Digest, Identity, MessageId, Timestamp};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const ENTRIES: u64 = 1_000_000;
const CHECKPOINT_EVERY: u64 = 100_000;

/// A bundle shaped like a real log: most entries name a peer, a message
/// and an envelope digest, with a short reason in `detail`.
fn build_bundle() -> Vec<u8> {
    let node = Identity::from_seeds(&[1; 32], &[2; 32], Timestamp(0));
    let peer = Identity::from_seeds(&[3; 32], &[4; 32], Timestamp(0));
    let origin = origin_for(&node.id());
    let mut w = BundleWriter::new(Vec::with_capacity(600 << 20), &node.id()).expect("header");
    let mut frontier = Frontier::new();
    let mut checkpoints = Vec::new();
    for seq in 0..ENTRIES {
        let e = AuditEntry {
            seq,
            time: Timestamp(1_700_000_000_000 + seq * 37),
            kind: AuditKind::ALL[(seq % 7) as usize],
            actor: if seq % 5 == 0 {
                Actor::Operator
            } else {
                Actor::Node
            },
            peer: (seq % 10 != 0).then_some(peer.id()),
            message_id: Some(MessageId((seq as u128).to_le_bytes())),
            envelope_digest: (seq % 3 != 0).then(|| Digest::of(b"e", &[&seq.to_le_bytes()])),
            detail: if seq % 4 == 0 {
                "registered".into()
            } else {
                String::new()
            },
        };
        let leaf = e.to_leaf().expect("valid entry");
        frontier.push(leaf_hash(&leaf)).expect("not full");
        w.write_entry(&leaf).expect("entry");
        if (seq + 1) % CHECKPOINT_EVERY == 0 {
            let cp = Checkpoint {
                origin: origin.clone(),
                size: seq + 1,
                root: frontier.root(),
            };
            checkpoints.push(sign_checkpoint(&node, &cp).expect("sign"));
        }
    }
    for text in &checkpoints {
        let body = Note::parse(text).expect("note").text().to_string();
        let line = cosign(&peer, &origin_for(&peer.id()), &body, 1_700_000_000).expect("cosign");
        w.write_checkpoint(&format!("{text}{line}\n"))
            .expect("checkpoint");
    }
    w.finish().expect("flush")
}

fn bench(c: &mut Criterion) {
    let t = Instant::now();
    let bundle = build_bundle();
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
