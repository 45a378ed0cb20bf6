//! Cost per byte of sealing and opening an attachment, on one core: one
//! 1 MiB chunk (ChaCha20-Poly1305 with the STREAM nonce, leaf hash, tree
//! and whole-file SHA-256), and the chunk table of a 64 GiB attachment.
//!
//! `cargo bench -p comity-protocol --bench attachment`
//!
//! Compare with the single-core ChaCha20-Poly1305 and SHA-256 speeds of
//! the same machine (`openssl speed -evp chacha20-poly1305 sha256`):
//! sealing hashes every byte twice (leaf, whole file) and encrypts it once.

use std::hint::black_box;

use comity_protocol::attachment::{
    check_attachments, chunk_count, chunk_size_for, AttachmentLimits, ChunkTable, Opener, Sealer,
    LARGE_CHUNK_BYTES,
};
use comity_protocol::message::MessageKind;
use comity_protocol::Digest;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

/// 64 MiB + 1 byte: the smallest size chunked in 1 MiB.
const SIZE: u64 = (64 << 20) + 1;

fn bench(c: &mut Criterion) {
    let limits = AttachmentLimits::default();
    let chunk = vec![0x5au8; LARGE_CHUNK_BYTES as usize];
    let mut rng = rand::rng();

    let mut g = c.benchmark_group("attachment_1MiB_chunk");
    g.throughput(Throughput::Bytes(u64::from(LARGE_CHUNK_BYTES)));
    g.bench_function("seal", |b| {
        b.iter_batched(
            || {
                (
                    Sealer::new("a.bin", "application/octet-stream", SIZE, &limits, &mut rng)
                        .expect("valid"),
                    chunk.clone(),
                )
            },
            |(mut s, data)| black_box(s.seal_chunk(data).expect("seals")),
            BatchSize::LargeInput,
        )
    });

    // A sealed attachment to open: seal all 65 chunks once.
    let mut s =
        Sealer::new("a.bin", "application/octet-stream", SIZE, &limits, &mut rng).expect("valid");
    let mut chunks = Vec::new();
    while let Some((_, len)) = s.next_chunk() {
        chunks.push(s.seal_chunk(chunk[..len].to_vec()).expect("seals"));
    }
    let sealed = s.finish().expect("complete");
    let att = check_attachments(MessageKind::Reply, vec![sealed], &limits)
        .expect("checks")
        .remove(0);
    let leaves: Vec<Digest> = chunks.iter().map(|c| c.leaf).collect();
    let table_bytes = ChunkTable::encode(&leaves);
    let table = ChunkTable::verify(&att, &table_bytes).expect("verifies");
    let first = chunks[0].ciphertext.clone();
    g.bench_function("open", |b| {
        b.iter_batched(
            || {
                (
                    Opener::new(&att, table.clone()).expect("opener"),
                    first.clone(),
                )
            },
            |(mut o, ct)| black_box(o.open_chunk(0, ct).expect("opens")),
            BatchSize::LargeInput,
        )
    });
    g.finish();

    // The table a receiver checks before the data of a 64 GiB attachment.
    let big = 64u64 << 30;
    let chunk_size = chunk_size_for(big);
    let n = chunk_count(big, chunk_size);
    let leaves: Vec<Digest> = (0..n).map(|i| Digest([(i % 251) as u8; 32])).collect();
    let root = {
        let mut f = comity_protocol::audit::merkle::Frontier::new();
        for l in &leaves {
            f.push(*l).expect("not full");
        }
        f.root()
    };
    let manifest = comity_protocol::attachment::AttachmentManifest {
        name: "b.bin".into(),
        media_type: "application/octet-stream".into(),
        size: big,
        chunk_size,
        tree_root: root,
        sha256: Digest([0; 32]),
    };
    let key = comity_protocol::attachment::ContentKey::generate(&mut rng);
    let att = check_attachments(
        MessageKind::Reply,
        vec![comity_protocol::attachment::SealedAttachment { manifest, key }],
        &limits,
    )
    .expect("checks")
    .remove(0);
    let bytes = ChunkTable::encode(&leaves);
    let mut g = c.benchmark_group("chunk_table_64GiB");
    g.sample_size(10);
    g.bench_function("verify", |b| {
        b.iter(|| black_box(ChunkTable::verify(&att, &bytes).expect("verifies")))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
