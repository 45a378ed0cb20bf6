//! The sealer and opener together, without sockets.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use sha2::{Digest as _, Sha256};

use super::*;
use crate::audit::merkle::MemoryTree;
use crate::digest::Digest;
use crate::message::MessageKind;

const SMALL: usize = SMALL_CHUNK_BYTES as usize;

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

struct Sent {
    sealed: SealedAttachment,
    chunks: Vec<SealedChunk>,
}

fn seal(plaintext: &[u8], seed: u64) -> Sent {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let limits = AttachmentLimits::default();
    let mut s = Sealer::new(
        "evidence.bin",
        "application/octet-stream",
        plaintext.len() as u64,
        &limits,
        &mut rng,
    )
    .unwrap();
    let mut chunks = Vec::new();
    let mut at = 0;
    while let Some((index, len)) = s.next_chunk() {
        assert_eq!(index, chunks.len() as u64);
        chunks.push(s.seal_chunk(plaintext[at..at + len].to_vec()).unwrap());
        at += len;
    }
    assert_eq!(at, plaintext.len());
    Sent {
        sealed: s.finish().unwrap(),
        chunks,
    }
}

fn checked(sealed: &SealedAttachment) -> CheckedAttachment {
    check_attachments(
        MessageKind::Reply,
        vec![sealed.clone()],
        &AttachmentLimits::default(),
    )
    .unwrap()
    .remove(0)
}

fn opener(sent: &Sent) -> Opener {
    let a = checked(&sent.sealed);
    let leaves: Vec<Digest> = sent.chunks.iter().map(|c| c.leaf).collect();
    let table = ChunkTable::verify(&a, &ChunkTable::encode(&leaves)).unwrap();
    Opener::new(&a, table).unwrap()
}

fn open_all(o: &mut Opener, chunks: &[SealedChunk]) -> Result<Vec<u8>, ChunkError> {
    let mut out = Vec::new();
    for c in chunks {
        out.extend(o.open_chunk(c.index, c.ciphertext.clone())?.plaintext);
    }
    o.finish()?;
    Ok(out)
}

#[test]
fn round_trip_and_manifest() {
    let plain = data(2 * SMALL + 1000, 1);
    let sent = seal(&plain, 1);
    let m = &sent.sealed.manifest;
    assert_eq!(m.size, plain.len() as u64);
    assert_eq!(m.chunk_size, SMALL_CHUNK_BYTES);
    assert_eq!(m.sha256, Digest(Sha256::digest(&plain).into()));
    // The root is the RFC 6962 tree of the plaintext chunks.
    let tree =
        MemoryTree::from_leaf_hashes(plain.chunks(SMALL).map(chunk_leaf_hash).collect::<Vec<_>>());
    assert_eq!(m.tree_root, tree.root());
    assert_eq!(sent.chunks.len(), 3);
    assert!(sent.chunks[2].last && !sent.chunks[1].last);
    assert_eq!(sent.chunks[0].ciphertext.len(), SMALL + TAG_BYTES);
    assert_eq!(sent.chunks[2].ciphertext.len(), 1000 + TAG_BYTES);

    let mut o = opener(&sent);
    assert_eq!(o.next_chunk(), Some(0));
    assert_eq!(open_all(&mut o, &sent.chunks).unwrap(), plain);
    assert!(o.is_complete());
    assert_eq!(o.next_chunk(), None);
}

#[test]
fn empty_attachment_is_one_authenticated_empty_chunk() {
    let sent = seal(&[], 2);
    assert_eq!(sent.chunks.len(), 1);
    assert!(sent.chunks[0].last);
    assert_eq!(sent.chunks[0].ciphertext.len(), TAG_BYTES);
    assert_eq!(
        sent.sealed.manifest.sha256.to_string(),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    let mut o = opener(&sent);
    // Nothing received is not a complete empty file.
    assert_eq!(o.finish(), Err(ChunkError::Truncated { next: 0, count: 1 }));
    assert_eq!(open_all(&mut o, &sent.chunks).unwrap(), Vec::<u8>::new());
}

#[test]
fn truncation_is_detected() {
    let sent = seal(&data(2 * SMALL + 5, 3), 3);
    let mut o = opener(&sent);
    let r = open_all(&mut o, &sent.chunks[..2]);
    assert_eq!(r, Err(ChunkError::Truncated { next: 2, count: 3 }));

    // A full last-sized chunk cut short, and an extended one.
    let mut o = opener(&sent);
    open_all(&mut o, &sent.chunks[..0]).unwrap_err();
    let mut short = sent.chunks[0].ciphertext.clone();
    short.truncate(100);
    assert_eq!(
        o.open_chunk(0, short),
        Err(ChunkError::Short {
            index: 0,
            expected: SMALL + TAG_BYTES,
            got: 100
        })
    );
    let mut long = sent.chunks[0].ciphertext.clone();
    long.push(0);
    assert!(matches!(
        o.open_chunk(0, long),
        Err(ChunkError::BeyondSize { index: 0, .. })
    ));
    assert_eq!(o.next_chunk(), Some(0), "a refused chunk changes nothing");
}

#[test]
fn a_non_last_chunk_presented_as_last_fails_its_tag() {
    // Truncation by an attacker who also cuts the signed size is impossible
    // (the size is signed); what remains is a chunk sealed as not-last
    // being opened where the last is expected.
    let plain = data(2 * SMALL, 4);
    let sent = seal(&plain, 4);
    let mut o = opener(&sent);
    o.open_chunk(0, sent.chunks[0].ciphertext.clone()).unwrap();
    // Chunk 1 is last; give it chunk 0's ciphertext (same length).
    assert_eq!(
        o.open_chunk(1, sent.chunks[0].ciphertext.clone()),
        Err(ChunkError::BadTag { index: 1 })
    );
}

#[test]
fn reordering_is_detected() {
    let sent = seal(&data(3 * SMALL, 5), 5);
    let mut o = opener(&sent);
    assert_eq!(
        o.open_chunk(1, sent.chunks[1].ciphertext.clone()),
        Err(ChunkError::OutOfOrder {
            expected: 0,
            got: 1
        })
    );
    // Chunk 1's bytes presented as chunk 0: same length, wrong position.
    assert_eq!(
        o.open_chunk(0, sent.chunks[1].ciphertext.clone()),
        Err(ChunkError::BadTag { index: 0 })
    );
    o.open_chunk(0, sent.chunks[0].ciphertext.clone()).unwrap();
    assert_eq!(
        o.open_chunk(0, sent.chunks[0].ciphertext.clone()),
        Err(ChunkError::OutOfOrder {
            expected: 1,
            got: 0
        })
    );
    assert_eq!(
        o.open_chunk(7, sent.chunks[1].ciphertext.clone()),
        Err(ChunkError::AfterLast { count: 3, got: 7 })
    );
}

#[test]
fn chunk_from_another_attachment_fails_its_tag() {
    // Two attachments of the same message: same sizes, different keys.
    let a = seal(&data(2 * SMALL, 6), 60);
    let b = seal(&data(2 * SMALL, 7), 61);
    let mut o = opener(&a);
    assert_eq!(
        o.open_chunk(0, b.chunks[0].ciphertext.clone()),
        Err(ChunkError::BadTag { index: 0 })
    );
}

#[test]
fn same_index_of_another_message_fails_its_tag() {
    // The same file attached to two messages is sealed twice, with two keys:
    // even identical plaintext gives chunks that do not open under the other.
    let plain = data(2 * SMALL + 3, 8);
    let first = seal(&plain, 80);
    let second = seal(&plain, 81);
    assert_eq!(first.sealed.manifest, second.sealed.manifest);
    assert_ne!(first.chunks[1].ciphertext, second.chunks[1].ciphertext);
    let mut o = opener(&first);
    o.open_chunk(0, first.chunks[0].ciphertext.clone()).unwrap();
    assert_eq!(
        o.open_chunk(1, second.chunks[1].ciphertext.clone()),
        Err(ChunkError::BadTag { index: 1 })
    );
}

#[test]
fn with_a_reused_key_the_tree_still_catches_a_swapped_chunk() {
    // The second line of defence: were a key ever reused (a sender bug), a
    // chunk of other content at the same index would pass the tag, and the
    // signed tree refuses it.
    let a = seal(&data(2 * SMALL, 9), 90);
    let b = seal(&data(2 * SMALL, 10), 90); // same seed: same key
    assert_ne!(a.chunks[0].ciphertext, b.chunks[0].ciphertext);
    let mut o = opener(&a);
    assert_eq!(
        o.open_chunk(0, b.chunks[0].ciphertext.clone()),
        Err(ChunkError::HashMismatch { index: 0 })
    );
    assert_eq!(o.next_chunk(), Some(0));
}

#[test]
fn every_bit_flip_is_refused() {
    let sent = seal(&data(300, 11), 11);
    let good = &sent.chunks[0].ciphertext;
    for bit in 0..good.len() * 8 {
        let mut bad = good.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        let mut o = opener(&sent);
        assert_eq!(
            o.open_chunk(0, bad),
            Err(ChunkError::BadTag { index: 0 }),
            "bit {bit}"
        );
    }
}

#[test]
fn check_chunk_takes_any_good_chunk_in_any_order_and_refuses_a_damaged_one() {
    let sent = seal(&data(SMALL * 3 + 5, 12), 12);
    let o = opener(&sent);
    for c in sent.chunks.iter().rev() {
        assert_eq!(o.check_chunk(c.index, &c.ciphertext), Ok(()));
    }
    // Nothing moved: the opener still wants chunk 0.
    assert_eq!(o.next_chunk(), Some(0));
    let mut bad = sent.chunks[2].ciphertext.clone();
    bad[7] ^= 0x40;
    assert_eq!(o.check_chunk(2, &bad), Err(ChunkError::BadTag { index: 2 }));
    // A chunk cut short, and an index past the last, are refused.
    let last = sent.chunks[3].ciphertext.clone();
    assert!(o.check_chunk(1, &sent.chunks[1].ciphertext[1..]).is_err());
    assert_eq!(o.check_chunk(3, &last), Ok(()));
    assert!(o.check_chunk(4, &last).is_err());
}

#[test]
fn a_manifest_that_lies_is_refused() {
    let plain = data(SMALL + 10, 12);
    let sent = seal(&plain, 12);
    // The whole-file digest is checked at the last chunk.
    let mut lying = sent.sealed.clone();
    lying.manifest.sha256 = Digest([0; 32]);
    let a = checked(&lying);
    let leaves: Vec<Digest> = sent.chunks.iter().map(|c| c.leaf).collect();
    let table = ChunkTable::verify(&a, &ChunkTable::encode(&leaves)).unwrap();
    let mut o = Opener::new(&a, table).unwrap();
    o.open_chunk(0, sent.chunks[0].ciphertext.clone()).unwrap();
    assert_eq!(
        o.open_chunk(1, sent.chunks[1].ciphertext.clone()),
        Err(ChunkError::DigestMismatch)
    );
    assert!(!o.is_complete());
    assert_eq!(o.finish(), Err(ChunkError::Truncated { next: 1, count: 2 }));

    // A table that is not the signed tree's.
    let a = checked(&sent.sealed);
    let mut bad = leaves.clone();
    bad.swap(0, 1);
    assert_eq!(
        ChunkTable::verify(&a, &ChunkTable::encode(&bad)),
        Err(ChunkError::TableRootMismatch)
    );
    assert_eq!(
        ChunkTable::verify(&a, &ChunkTable::encode(&leaves[..1])),
        Err(ChunkError::TableLength {
            expected: 64,
            got: 32,
            chunks: 2
        })
    );
    // A verified table of another attachment.
    let other = seal(&data(SMALL + 10, 13), 13);
    let oa = checked(&other.sealed);
    let other_leaves: Vec<Digest> = other.chunks.iter().map(|c| c.leaf).collect();
    let other_table = ChunkTable::verify(&oa, &ChunkTable::encode(&other_leaves)).unwrap();
    assert_eq!(
        Opener::new(&a, other_table).err(),
        Some(ChunkError::TableForAnotherAttachment)
    );
}

#[test]
fn resume_continues_where_it_stopped() {
    let plain = data(4 * SMALL + 77, 14);
    let sent = seal(&plain, 14);
    let mut o = opener(&sent);
    let mut out = Vec::new();
    for c in &sent.chunks[..2] {
        out.extend(
            o.open_chunk(c.index, c.ciphertext.clone())
                .unwrap()
                .plaintext,
        );
    }
    let point = o.resume_point().unwrap();
    assert_eq!(point.next_chunk, 2);
    // The point survives as bytes (the receiver stores it).
    let bytes = crate::codec::encode(&point).unwrap();
    let point: ResumePoint = crate::codec::decode::<_, 64>(&bytes).unwrap();
    drop(o);

    let a = checked(&sent.sealed);
    let leaves: Vec<Digest> = sent.chunks.iter().map(|c| c.leaf).collect();
    let table = ChunkTable::verify(&a, &ChunkTable::encode(&leaves)).unwrap();
    let mut o = Opener::resume(&a, table.clone(), &point).unwrap();
    assert_eq!(o.next_chunk(), Some(2));
    for c in &sent.chunks[2..] {
        out.extend(
            o.open_chunk(c.index, c.ciphertext.clone())
                .unwrap()
                .plaintext,
        );
    }
    assert!(o.is_complete());
    assert_eq!(out, plain);

    // A resume point past the end, or with another midstate, is refused or
    // caught at the last chunk.
    let past = ResumePoint {
        next_chunk: 5,
        digest_state: point.digest_state,
    };
    assert_eq!(
        Opener::resume(&a, table.clone(), &past).err(),
        Some(ChunkError::BadResumePoint { next: 5, count: 5 })
    );
    let mut wrong = point.clone();
    wrong.digest_state[0] ^= 1;
    let mut o = Opener::resume(&a, table, &wrong).unwrap();
    for c in &sent.chunks[2..4] {
        o.open_chunk(c.index, c.ciphertext.clone()).unwrap();
    }
    assert_eq!(
        o.open_chunk(4, sent.chunks[4].ciphertext.clone()),
        Err(ChunkError::DigestMismatch)
    );
}

#[test]
fn sealer_refuses_wrong_lengths_and_extra_chunks() {
    let mut rng = ChaCha20Rng::seed_from_u64(15);
    let limits = AttachmentLimits::default();
    let mut s = Sealer::new("a.txt", "text/plain", 10, &limits, &mut rng).unwrap();
    assert_eq!(s.next_chunk(), Some((0, 10)));
    assert_eq!(
        s.seal_chunk(vec![0; 11]),
        Err(ChunkError::BeyondSize {
            index: 0,
            expected: 10,
            got: 11
        })
    );
    assert!(matches!(
        s.seal_chunk(vec![0; 9]),
        Err(ChunkError::Short { .. })
    ));
    s.seal_chunk(vec![0; 10]).unwrap();
    assert_eq!(
        s.seal_chunk(vec![]),
        Err(ChunkError::AfterLast { count: 1, got: 1 })
    );
    let s = Sealer::new("b.txt", "text/plain", 10, &limits, &mut rng).unwrap();
    assert_eq!(
        s.finish().err(),
        Some(ChunkError::Truncated { next: 0, count: 1 })
    );
}

#[test]
fn sealer_refuses_before_reading() {
    let mut rng = ChaCha20Rng::seed_from_u64(16);
    let limits = AttachmentLimits {
        max_attachment_bytes: 1000,
        ..AttachmentLimits::default()
    };
    assert!(matches!(
        Sealer::new("a.bin", "application/octet-stream", 1001, &limits, &mut rng),
        Err(InvalidAttachment::TooLarge {
            size: 1001,
            max: 1000,
            ..
        })
    ));
    assert!(matches!(
        Sealer::new("../../etc/passwd", "text/plain", 1, &limits, &mut rng),
        Err(InvalidAttachment::BadName {
            rule: NameRule::Separator,
            ..
        })
    ));
    assert!(matches!(
        Sealer::new("a.txt", "text", 1, &limits, &mut rng),
        Err(InvalidAttachment::BadMediaType { .. })
    ));
}

fn manifest(name: &str, size: u64) -> AttachmentManifest {
    AttachmentManifest {
        name: name.into(),
        media_type: "application/pdf".into(),
        size,
        chunk_size: chunk_size_for(size),
        tree_root: Digest([1; 32]),
        sha256: Digest([2; 32]),
    }
}

#[test]
fn manifest_checks_limits_and_rules() {
    let limits = AttachmentLimits::default();
    let ok = [manifest("a.pdf", 10), manifest("b.pdf", 64 << 30)];
    assert_eq!(check_manifests(MessageKind::Request, &ok, &limits), Ok(()));
    for kind in [
        MessageKind::Request,
        MessageKind::SpontaneousInformation,
        MessageKind::Reply,
        MessageKind::Consultation,
    ] {
        assert_eq!(check_manifests(kind, &ok, &limits), Ok(()), "{kind}");
    }
    assert_eq!(
        check_manifests(MessageKind::StatusUpdate, &ok, &limits),
        Err(InvalidAttachment::NotOnKind {
            kind: MessageKind::StatusUpdate
        })
    );
    assert_eq!(
        check_manifests(MessageKind::StatusUpdate, &[], &limits),
        Ok(())
    );
    // One byte over the default 64 GiB.
    assert_eq!(
        check_manifests(
            MessageKind::Request,
            &[manifest("big.img", (64 << 30) + 1)],
            &limits
        ),
        Err(InvalidAttachment::TooLarge {
            index: 0,
            size: (64 << 30) + 1,
            max: 64 << 30
        })
    );
    let five = vec![
        manifest("1", 60 << 30),
        manifest("2", 60 << 30),
        manifest("3", 60 << 30),
        manifest("4", 60 << 30),
        manifest("5", 60 << 30),
    ];
    assert!(matches!(
        check_manifests(MessageKind::Reply, &five, &limits),
        Err(InvalidAttachment::TotalTooLarge { .. })
    ));
    let many: Vec<_> = (0..65).map(|i| manifest(&format!("f{i}"), 1)).collect();
    assert_eq!(
        check_manifests(MessageKind::Reply, &many, &limits),
        Err(InvalidAttachment::TooMany { count: 65, max: 64 })
    );
    assert!(matches!(
        check_manifests(
            MessageKind::Reply,
            &[manifest("A.pdf", 1), manifest("a.PDF", 1)],
            &limits
        ),
        Err(InvalidAttachment::DuplicateName {
            index: 1,
            first: 0,
            ..
        })
    ));
    let mut wrong = manifest("c.pdf", 100 << 20);
    wrong.chunk_size = SMALL_CHUNK_BYTES;
    assert_eq!(
        check_manifests(MessageKind::Reply, &[wrong], &limits),
        Err(InvalidAttachment::WrongChunkSize {
            index: 0,
            found: SMALL_CHUNK_BYTES,
            expected: LARGE_CHUNK_BYTES
        })
    );
    match check_manifests(
        MessageKind::Reply,
        &[manifest("../../etc/passwd", 1)],
        &limits,
    ) {
        Err(InvalidAttachment::BadName { name, rule, .. }) => {
            assert_eq!(rule, NameRule::Separator);
            assert_eq!(name, "../../etc/passwd");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn content_key_is_never_printed() {
    let mut rng = ChaCha20Rng::seed_from_u64(17);
    let k = ContentKey::generate(&mut rng);
    let shown = format!("{k:?}");
    assert_eq!(shown, "ContentKey(..)");
    let sent = seal(&data(10, 1), 17);
    let shown = format!("{:?}", checked(&sent.sealed));
    assert!(!shown.contains(&hex::encode(sent.sealed.key.key_bytes())));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn round_trip_any_size_and_resume_anywhere(
        len in 0usize..(3 * SMALL + 200),
        seed in any::<u8>(),
        stop in 0usize..4,
    ) {
        let plain = data(len, seed);
        let sent = seal(&plain, u64::from(seed));
        let mut o = opener(&sent);
        let stop = stop.min(sent.chunks.len() - 1);
        let mut out = Vec::new();
        for c in &sent.chunks[..stop] {
            out.extend(o.open_chunk(c.index, c.ciphertext.clone()).unwrap().plaintext);
        }
        let point = o.resume_point().unwrap();
        let a = checked(&sent.sealed);
        let leaves: Vec<Digest> = sent.chunks.iter().map(|c| c.leaf).collect();
        let table = ChunkTable::verify(&a, &ChunkTable::encode(&leaves)).unwrap();
        let mut o = Opener::resume(&a, table, &point).unwrap();
        for c in &sent.chunks[stop..] {
            out.extend(o.open_chunk(c.index, c.ciphertext.clone()).unwrap().plaintext);
        }
        prop_assert!(o.is_complete());
        prop_assert_eq!(out, plain);
    }

    #[test]
    fn opener_never_panics_on_any_chunk(
        index in 0u64..5,
        bytes in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        let sent = seal(&data(300, 1), 1);
        let mut o = opener(&sent);
        let _ = o.open_chunk(index, bytes);
        prop_assert_eq!(o.next_chunk(), Some(0));
    }
}
