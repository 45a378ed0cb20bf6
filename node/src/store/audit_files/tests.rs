use comity_protocol::audit::entry::{Actor, AuditEntry, AuditKind};
use comity_protocol::audit::merkle::{empty_root, leaf_hash, node_hash, Frontier};
use comity_protocol::{Digest, MessageId, Timestamp};

use super::*;

fn entry(seq: u64) -> (Vec<u8>, Option<MessageId>) {
    // Every third entry names message (seq % 7), so messages repeat.
    let message = (seq % 3 != 0).then_some(MessageId([(seq % 7) as u8; 16]));
    let e = AuditEntry {
        seq,
        time: Timestamp(1_700_000_000_000 + seq),
        kind: AuditKind::MessageAccepted,
        actor: Actor::Node,
        peer: None,
        message_id: message,
        envelope_digest: None,
        detail: "x".repeat((seq % 40) as usize),
    };
    (e.to_leaf().unwrap(), message)
}

fn append_n(files: &AuditFiles, n: u64) {
    for _ in 0..n {
        files.append(|seq| Ok(entry(seq))).unwrap();
    }
}

fn leaf_hashes(n: u64) -> Vec<Digest> {
    (0..n).map(|s| leaf_hash(&entry(s).0)).collect()
}

/// RFC 6962 MTH, straight from its recursive definition.
fn mth(leaves: &[Digest]) -> Digest {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = 1 << (usize::BITS - 1 - (n - 1).leading_zeros());
            node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

/// Every subtree, with what the stored files say, against a reference tree.
fn assert_matches_reference(files: &AuditFiles, n: u64) {
    let hashes = leaf_hashes(n);
    assert_eq!(files.head(), (n, mth(&hashes)));
    for level in 0..=10u32 {
        for index in 0..(n >> level) {
            let span = (index << level) as usize..((index + 1) << level) as usize;
            let want = Some(mth(&hashes[span]));
            assert_eq!(
                files.node(level, index).unwrap(),
                want,
                "level {level} index {index}"
            );
        }
        // Beyond the tree: nothing.
        assert_eq!(files.node(level, n >> level).unwrap(), None);
    }
    for seq in [0, n / 2, n.saturating_sub(1)] {
        if seq < n {
            assert_eq!(files.leaf(seq).unwrap(), Some(entry(seq).0));
        }
    }
    assert_eq!(files.leaf(n).unwrap(), None);
    let all: Vec<_> = files
        .leaves(0, u64::MAX)
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(all.len() as u64, n);
    for (seq, leaf) in all {
        assert_eq!(leaf, entry(seq).0);
    }
    let m = MessageId([1; 16]);
    let want: Vec<u64> = (0..n).filter(|s| entry(*s).1 == Some(m)).collect();
    assert_eq!(files.entries_for(&m).unwrap(), want);
}

#[test]
fn positions_are_the_order_subtrees_complete_in() {
    let mut frontier = Frontier::new();
    let mut at = 0u64;
    for n in 0..2000u64 {
        for (level, index, _) in frontier.push(leaf_hash(&n.to_le_bytes())).unwrap() {
            assert_eq!(
                position(level, index),
                Some(at),
                "level {level} index {index}"
            );
            at += 1;
        }
        assert_eq!(stored_before(n + 1), Some(at));
    }
    assert_eq!(position(64, 0), None);
    assert_eq!(position(1, u64::MAX), None);
}

#[test]
fn appended_entries_read_back_as_a_tree_of_rfc_6962() {
    let dir = tempfile::tempdir().unwrap();
    let (files, rec) = AuditFiles::open(dir.path(), Mark::default()).unwrap();
    assert_eq!(rec.replayed, 0);
    assert_matches_reference(&files, 0);
    append_n(&files, 333);
    assert_matches_reference(&files, 333);
}

#[test]
fn reopening_replays_only_what_follows_the_mark() {
    let dir = tempfile::tempdir().unwrap();
    let (files, _) = AuditFiles::open(dir.path(), Mark::default()).unwrap();
    append_n(&files, 100);
    let (mark, root) = files.seal().unwrap();
    assert_eq!(mark.size, 100);
    assert_eq!(root, mth(&leaf_hashes(100)));
    append_n(&files, 37);
    files.sync().unwrap();
    drop(files);

    let (files, rec) = AuditFiles::open(dir.path(), mark).unwrap();
    assert_eq!(rec.replayed, 37);
    assert_eq!(rec.dropped_bytes, 0);
    assert_matches_reference(&files, 137);
    // And appending goes on where it stopped.
    append_n(&files, 5);
    assert_matches_reference(&files, 142);
    drop(files);

    // Without a mark, everything is replayed, to the same tree.
    let (files, rec) = AuditFiles::open(dir.path(), Mark::default()).unwrap();
    assert_eq!(rec.replayed, 142);
    assert_matches_reference(&files, 142);
}

#[test]
fn a_torn_last_record_is_cut_and_saved_and_the_log_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (files, _) = AuditFiles::open(dir.path(), Mark::default()).unwrap();
    append_n(&files, 50);
    let (mark, _) = files.seal().unwrap();
    append_n(&files, 10);
    drop(files);
    // A crash in the middle of writing entry 59.
    let leaves = dir.path().join("leaves");
    let len = std::fs::metadata(&leaves).unwrap().len();
    let f = OpenOptions::new().write(true).open(&leaves).unwrap();
    f.set_len(len - 5).unwrap();

    let (files, rec) = AuditFiles::open(dir.path(), mark).unwrap();
    assert_eq!(rec.replayed, 9);
    let last = record_bytes(&entry(59).0).len() as u64 - 5;
    assert_eq!(rec.dropped_bytes, last);
    let saved = rec.saved_to.unwrap();
    assert_eq!(std::fs::metadata(saved).unwrap().len(), last);
    assert_matches_reference(&files, 59);
    append_n(&files, 3);
    assert_matches_reference(&files, 62);
}

#[test]
fn damage_with_entries_after_it_is_refused_not_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (files, _) = AuditFiles::open(dir.path(), Mark::default()).unwrap();
    append_n(&files, 20);
    let (mark, _) = files.seal().unwrap();
    append_n(&files, 10);
    drop(files);
    // Flip a byte inside entry 25's leaf: its checksum fails, and the
    // valid entries 26..30 follow it.
    let leaves = dir.path().join("leaves");
    let mut bytes = std::fs::read(&leaves).unwrap();
    let at: u64 = (0..25)
        .map(|s| record_bytes(&entry(s).0).len() as u64)
        .sum();
    bytes[at as usize + 12] ^= 1;
    std::fs::write(&leaves, &bytes).unwrap();

    let err = AuditFiles::open(dir.path(), mark).unwrap_err().to_string();
    assert!(
        err.contains("entry 25") && err.contains("checksum") && err.contains("data follows"),
        "{err}"
    );
    // Nothing was cut or moved aside.
    assert_eq!(std::fs::read(&leaves).unwrap(), bytes);
    assert!(!dir.path().join(format!("leaves.tail-at-{at}")).exists());
}

#[test]
fn zeros_a_power_cut_left_after_the_last_entry_are_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (files, _) = AuditFiles::open(dir.path(), Mark::default()).unwrap();
    append_n(&files, 12);
    let (mark, _) = files.seal().unwrap();
    append_n(&files, 3);
    drop(files);
    let leaves = dir.path().join("leaves");
    let len = std::fs::metadata(&leaves).unwrap().len();
    let f = OpenOptions::new().append(true).open(&leaves).unwrap();
    (&f).write_all(&[0u8; 4096]).unwrap();

    let (files, rec) = AuditFiles::open(dir.path(), mark).unwrap();
    assert_eq!(rec.replayed, 3);
    assert_eq!(rec.dropped_bytes, 4096);
    assert_eq!(std::fs::metadata(&leaves).unwrap().len(), len);
    assert_matches_reference(&files, 15);
}

#[test]
fn a_mark_that_does_not_end_at_an_entry_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (files, _) = AuditFiles::open(dir.path(), Mark::default()).unwrap();
    append_n(&files, 10);
    let (mark, _) = files.seal().unwrap();
    drop(files);
    for bad in [
        Mark {
            leaves_len: mark.leaves_len - 3,
            ..mark
        },
        Mark {
            size: mark.size - 1,
            ..mark
        },
    ] {
        let err = AuditFiles::open(dir.path(), bad).unwrap_err().to_string();
        assert!(err.contains("does not match the log"), "{err}");
    }
    assert!(AuditFiles::open(dir.path(), mark).is_ok());
}

#[test]
fn readers_see_whole_entries_while_appends_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let (files, _) = AuditFiles::open(dir.path(), Mark::default()).unwrap();
    append_n(&files, 2000);
    // A sequential read spanning many buffer fills, with appends (which
    // move the shared file offset of cloned handles) between its steps.
    let leaves = files.leaves(0, 2000).unwrap();
    let mut n = 0u64;
    for r in leaves {
        let (seq, leaf) = r.unwrap();
        assert_eq!((seq, leaf), (n, entry(n).0));
        files.append(|seq| Ok(entry(seq))).unwrap();
        assert_eq!(files.leaf(n / 2).unwrap(), Some(entry(n / 2).0));
        n += 1;
    }
    assert_eq!(n, 2000);
    assert_matches_reference(&files, 4000);
}

#[test]
fn a_broken_log_fails_every_sync_and_append() {
    let dir = tempfile::tempdir().unwrap();
    let (files, _) = AuditFiles::open(dir.path(), Mark::default()).unwrap();
    append_n(&files, 3);
    files.sync().unwrap();
    // What a failed write or fdatasync leaves behind.
    files.lock().broken = Some("No space left on device".into());
    for err in [
        files.sync().unwrap_err(),
        files.append(|seq| Ok(entry(seq))).unwrap_err(),
        files.seal().unwrap_err(),
    ] {
        assert!(matches!(err, AuditFileError::Broken(_)), "{err}");
    }
    assert_eq!(files.size(), 3);
}

#[test]
fn derived_files_are_rebuilt_whatever_follows_the_mark() {
    let dir = tempfile::tempdir().unwrap();
    let (files, _) = AuditFiles::open(dir.path(), Mark::default()).unwrap();
    append_n(&files, 64);
    let (mark, _) = files.seal().unwrap();
    append_n(&files, 30);
    files.sync().unwrap();
    // The derived records of the 30 reach their files (unsynced).
    files.readable().unwrap();
    drop(files);
    // A power cut can leave a derived file longer, with zeros, or shorter
    // than what was written after the mark.
    let offsets_len = std::fs::metadata(dir.path().join("offsets")).unwrap().len();
    assert_eq!(offsets_len, 94 * 8);
    for (name, extra) in [("hashes", 4096usize), ("offsets", 0), ("messages", 100)] {
        let p = dir.path().join(name);
        let f = OpenOptions::new().append(true).open(&p).unwrap();
        let keep = match name {
            "offsets" => mark.size * 8,
            _ => f.metadata().unwrap().len(),
        };
        f.set_len(keep).unwrap();
        (&f).write_all(&vec![0u8; extra]).unwrap();
    }
    let (files, rec) = AuditFiles::open(dir.path(), mark).unwrap();
    assert_eq!(rec.replayed, 30);
    assert_matches_reference(&files, 94);
}

#[test]
fn files_shorter_than_the_mark_are_refused_not_papered_over() {
    let dir = tempfile::tempdir().unwrap();
    let (files, _) = AuditFiles::open(dir.path(), Mark::default()).unwrap();
    append_n(&files, 40);
    let (mark, _) = files.seal().unwrap();
    drop(files);
    for name in ["leaves", "offsets", "hashes", "messages"] {
        let copy = tempfile::tempdir().unwrap();
        for f in ["leaves", "offsets", "hashes", "messages"] {
            std::fs::copy(dir.path().join(f), copy.path().join(f)).unwrap();
        }
        let p = copy.path().join(name);
        let len = std::fs::metadata(&p).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(len - 8)
            .unwrap();
        let err = AuditFiles::open(copy.path(), mark).unwrap_err().to_string();
        assert!(
            err.contains(name) && err.contains("last checkpoint"),
            "{err}"
        );
    }
}

#[test]
fn marks_round_trip_and_bad_ones_are_refused() {
    let m = Mark {
        size: 7,
        leaves_len: 900,
        messages_len: 48,
    };
    assert_eq!(Mark::from_bytes(&m.to_bytes()), Some(m));
    assert_eq!(Mark::from_bytes(&m.to_bytes()[..23]), None);
}
