use std::sync::Arc;

use base64::Engine as _;
use comity_protocol::audit::checkpoint::{origin_for, sign_checkpoint, Checkpoint};
use comity_protocol::audit::merkle::{leaf_hash, Frontier};
use comity_protocol::audit::note::{key_id, Note};
use comity_protocol::session::WitnessRefusal;
use comity_protocol::{Identity, Timestamp};

use super::AuditLog;
use crate::store::Store;

/// A log in `dir` whose node is the witness of `peer` (returned first).
fn witness_of(dir: &tempfile::TempDir) -> (Identity, Store, AuditLog) {
    let me = Arc::new(Identity::from_seeds(&[1; 32], &[2; 32], Timestamp(0)));
    let peer = Identity::from_seeds(&[3; 32], &[4; 32], Timestamp(0));
    let store = Store::open(dir.path()).unwrap();
    let log = AuditLog::open(store.clone(), me, 1000, true).unwrap();
    (peer, store, log)
}

#[tokio::test]
async fn the_checkpoint_cosigned_last_is_cosigned_again_without_a_new_record() {
    let dir = tempfile::tempdir().unwrap();
    let (peer, store, log) = witness_of(&dir);
    let mut tree = Frontier::new();
    let note_at = |tree: &Frontier| {
        sign_checkpoint(
            &peer,
            &Checkpoint {
                origin: origin_for(&peer.id()),
                size: tree.size(),
                root: tree.root(),
            },
        )
        .unwrap()
    };
    tree.push(leaf_hash(b"one")).unwrap();
    let first = note_at(&tree);
    let w = log.witness(&peer.id(), &[], &first, 0, &[]).unwrap();
    assert!(w.new && w.size == 1);
    // The same note again (from any old size): cosigned, not stored anew.
    let again = log.witness(&peer.id(), &[], &first, 0, &[]).unwrap();
    assert!(!again.new && again.size == 1);
    assert_eq!(
        store.witnessed(&peer.id()).unwrap().as_deref(),
        Some(&first[..])
    );
    // A larger, consistent one is new.
    tree.push(leaf_hash(b"two")).unwrap();
    let second = note_at(&tree);
    let proof = vec![leaf_hash(b"two")];
    let w = log.witness(&peer.id(), &[], &second, 1, &proof).unwrap();
    assert!(w.new && w.size == 2);
}

#[tokio::test]
async fn a_checkpoint_with_extension_lines_is_not_cosigned() {
    let dir = tempfile::tempdir().unwrap();
    let (peer, store, log) = witness_of(&dir);
    let mut tree = Frontier::new();
    tree.push(leaf_hash(b"one")).unwrap();
    let origin = origin_for(&peer.id());
    let checkpoint = Checkpoint {
        origin: origin.clone(),
        size: tree.size(),
        root: tree.root(),
    };
    // Well signed by the pinned peer, valid as a C2SP checkpoint, but with
    // words after the root that nobody specified.
    let body = format!(
        "{}The Ministry approves the release of EUR 1,000,000\n",
        checkpoint.body()
    );
    let note = signed_by(&peer, &origin, &body);
    assert!(Note::parse(&note).is_ok(), "{note}");
    let refused = log.witness(&peer.id(), &[], &note, 0, &[]).unwrap_err();
    assert_eq!(refused.reason, WitnessRefusal::UnknownForm);
    assert_eq!(store.witnessed(&peer.id()).unwrap(), None, "nothing kept");
    // The plain form of the same checkpoint is cosigned.
    let plain = sign_checkpoint(&peer, &checkpoint).unwrap();
    assert!(log.witness(&peer.id(), &[], &plain, 0, &[]).unwrap().new);
}

/// `text` as a signed note by `who` under key name `name` (C2SP signed
/// note, Ed25519), signed here as any peer could.
fn signed_by(who: &Identity, name: &str, text: &str) -> String {
    let pair =
        ring::signature::Ed25519KeyPair::from_seed_unchecked(&who.ed25519_secret().unwrap()[..])
            .unwrap();
    let mut blob = key_id(name, 0x01, who.id().as_bytes())
        .to_be_bytes()
        .to_vec();
    blob.extend_from_slice(pair.sign(text.as_bytes()).as_ref());
    let sig = base64::engine::general_purpose::STANDARD.encode(blob);
    format!("{text}\n\u{2014} {name} {sig}\n")
}

/// A flood of alarms from one peer (C) does not hide a later alarm from
/// another (B): each peer keeps its newest, the rest are counted.
#[tokio::test]
async fn one_peers_alarm_flood_does_not_hide_another_peers_alarm() {
    use crate::store::alarms::{AlarmKind, MAX_ALARMS_PER_PEER};
    use comity_protocol::audit::entry::Actor;
    let dir = tempfile::tempdir().unwrap();
    let me = Arc::new(Identity::from_seeds(&[1; 32], &[2; 32], Timestamp(0)));
    let b = Identity::from_seeds(&[3; 32], &[4; 32], Timestamp(0)).id();
    let c = Identity::from_seeds(&[5; 32], &[6; 32], Timestamp(0)).id();
    let store = Store::open(dir.path()).unwrap();
    let log = AuditLog::open(store.clone(), me, 1000, true).unwrap();
    for i in 0..1500 {
        log.alarm(c, AlarmKind::PeerCheckpoint, "fork", &format!("C fork {i}"));
    }
    log.alarm(b, AlarmKind::PeerCheckpoint, "fork", "B forked");

    let alarms = log.alarms().unwrap();
    assert_eq!(alarms[0].text, "B forked", "newest first");
    assert_eq!(alarms[0].peer, Some(b));
    let from_c: Vec<_> = alarms.iter().filter(|a| a.peer == Some(c)).collect();
    assert_eq!(from_c.len(), MAX_ALARMS_PER_PEER);
    assert_eq!(from_c[0].text, "C fork 1499", "C's newest are kept");
    let counts = log.alarm_counts().unwrap();
    let of = |p| counts.iter().find(|n| n.peer == Some(p)).unwrap();
    assert_eq!(of(c).suppressed, 1500 - MAX_ALARMS_PER_PEER as u64);
    assert_eq!(of(b).suppressed, 0);
    assert_eq!(log.unacknowledged_alarms().unwrap(), 101);

    // Acknowledged once; a second time is refused; an unknown id too.
    let id = alarms[0].id;
    let acked = log.ack_alarm(id, Actor::Operator).unwrap();
    assert_eq!(acked.acknowledged.unwrap().by, "operator");
    assert!(matches!(
        log.ack_alarm(id, Actor::Operator),
        Err(crate::store::alarms::AckError::Already(_))
    ));
    assert!(matches!(
        log.ack_alarm(u64::MAX, Actor::Operator),
        Err(crate::store::alarms::AckError::NotFound(_))
    ));
    assert_eq!(log.unacknowledged_alarms().unwrap(), 100);
}

/// Alarms an earlier version stored (`a ‖ seq`, text only) are moved to the
/// unknown peer's alarms when the log opens, and still listed.
#[tokio::test]
async fn old_format_alarms_are_migrated_and_listed() {
    let dir = tempfile::tempdir().unwrap();
    let me = Arc::new(Identity::from_seeds(&[1; 32], &[2; 32], Timestamp(0)));
    let store = Store::open(dir.path()).unwrap();
    store.put_old_format_alarm_for_test(7, "peer X presented checkpoint 3 ...");
    let log = AuditLog::open(store.clone(), me, 1000, true).unwrap();
    let alarms = log.alarms().unwrap();
    assert_eq!(alarms.len(), 1);
    assert_eq!(alarms[0].id, 7);
    assert_eq!(alarms[0].peer, None);
    assert_eq!(alarms[0].text, "peer X presented checkpoint 3 ...");
    assert_eq!(store.migrate_alarms().unwrap(), 0, "moved, not copied");
}

/// The witness's record of cosigning a peer's checkpoint does not make a
/// checkpoint due, by count or by time; the next event's checkpoint covers
/// it.
#[tokio::test]
async fn witnessing_alone_never_calls_for_a_checkpoint() {
    use comity_protocol::audit::entry::{Actor, AuditKind};
    use std::time::Duration;

    use super::Fact;
    let dir = tempfile::tempdir().unwrap();
    let me = Arc::new(Identity::from_seeds(&[1; 32], &[2; 32], Timestamp(0)));
    let peer = Identity::from_seeds(&[3; 32], &[4; 32], Timestamp(0)).id();
    let store = Store::open(dir.path()).unwrap();
    // A checkpoint due after every single entry that counts.
    let log = Arc::new(AuditLog::open(store.clone(), me, 1, true).unwrap());
    let due = |log: &Arc<AuditLog>| {
        let log = log.clone();
        async move {
            tokio::time::timeout(Duration::from_millis(50), log.due.notified())
                .await
                .is_ok()
        }
    };

    log.record(Fact::new(AuditKind::NodeStarted, Actor::Node))
        .unwrap();
    assert!(due(&log).await, "an event calls for a checkpoint");
    assert_eq!(log.durable_checkpoint().await.unwrap(), 1);

    let cosigned = Fact::new(AuditKind::CheckpointCosigned, Actor::Node)
        .peer(peer)
        .detail("7");
    log.record(cosigned).unwrap();
    assert_eq!(log.size(), 2, "the witness duty is an entry");
    assert!(!due(&log).await, "but it does not call for a checkpoint");
    // Nor does the interval's checkpoint sign it.
    assert_eq!(log.durable_checkpoint().await.unwrap(), 1);
    assert_eq!(store.checkpoints().unwrap().len(), 1);

    // A refusal is an event: it is checkpointed, with the entry before it.
    log.record(
        Fact::new(AuditKind::CheckpointRefused, Actor::Node)
            .peer(peer)
            .detail("fork at size 7"),
    )
    .unwrap();
    assert!(due(&log).await);
    assert_eq!(log.durable_checkpoint().await.unwrap(), 3);
    assert_eq!(*log.latest().borrow(), 3);
}

mod restoration {
    use super::*;
    use comity_protocol::audit::merkle::MemoryTree;
    use comity_protocol::audit::restoration::RestorationStatement;

    fn tree(leaves: &[&str]) -> MemoryTree {
        let mut t = MemoryTree::new();
        for l in leaves {
            t.push(leaf_hash(l.as_bytes()));
        }
        t
    }

    fn note(peer: &Identity, t: &MemoryTree, size: u64) -> String {
        sign_checkpoint(
            peer,
            &Checkpoint {
                origin: origin_for(&peer.id()),
                size,
                root: t.root_at(size).unwrap(),
            },
        )
        .unwrap()
    }

    /// The witness cosigns `t` at each of `sizes`, in order.
    fn witness_up_to(log: &AuditLog, peer: &Identity, t: &MemoryTree, sizes: &[u64]) {
        let mut old = 0;
        for &size in sizes {
            let proof = t.consistency_proof(old, size).unwrap();
            log.witness(&peer.id(), &[], &note(peer, t, size), old, &proof)
                .unwrap();
            old = size;
        }
    }

    /// Restored to `restored` of `t` (which goes on past it).
    fn statement(peer: &Identity, t: &MemoryTree, restored: u64) -> RestorationStatement {
        RestorationStatement {
            node: peer.id(),
            restored_size: restored,
            restored_root: t.root_at(restored).unwrap(),
            backup_time: Timestamp(1000),
            restored_at: Timestamp(2000),
            continuation_size: t.size(),
            continuation_root: t.root(),
        }
    }

    fn present(
        log: &AuditLog,
        peer: &Identity,
        t: &MemoryTree,
        s: &RestorationStatement,
        signer: &Identity,
    ) -> Result<super::super::RestorationWitnessed, super::super::Refused> {
        let proof = t
            .consistency_proof(s.restored_size, s.continuation_size)
            .unwrap();
        log.witness_restoration(
            &peer.id(),
            &[],
            s,
            &s.sign(signer).unwrap(),
            &note(peer, t, s.continuation_size),
            &proof,
        )
    }

    #[tokio::test]
    async fn an_honest_restoration_rebases_the_witness_and_a_second_rollback_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (peer, store, log) = witness_of(&dir);
        let seen = tree(&["a", "b", "c", "d", "e", "f"]);
        witness_up_to(&log, &peer, &seen, &[2, 4, 6]);

        // Signed by another key: refused, nothing changes.
        let restored = tree(&["a", "b", "c", "d", "restored"]);
        let s = statement(&peer, &restored, 4);
        let stranger = Identity::from_seeds(&[9; 32], &[9; 32], Timestamp(0));
        let r = present(&log, &peer, &restored, &s, &stranger).unwrap_err();
        assert_eq!(r.reason, WitnessRefusal::BadCheckpoint);
        assert_eq!(r.witnessed_size, 6);

        // Honest: the root at 4 is the one cosigned there.
        let w = present(&log, &peer, &restored, &s, &peer).unwrap();
        assert_eq!(w.size, 5);
        let gap = w.gap.unwrap();
        assert_eq!((gap.restored_size, gap.witnessed_size), (4, 6));
        assert!(gap.root_checked);
        assert_eq!(gap.witnessed_root, seen.root_at(6).unwrap());
        assert_eq!(
            store.witnessed(&peer.id()).unwrap().as_deref(),
            Some(note(&peer, &restored, 5).as_str())
        );
        // Again, byte for byte: cosigned again, no new gap.
        let again = present(&log, &peer, &restored, &s, &peer).unwrap();
        assert!(again.gap.is_none());

        // The restored log goes on and is witnessed from the continuation.
        let mut on = tree(&["a", "b", "c", "d", "restored", "g"]);
        let proof = on.consistency_proof(5, 6).unwrap();
        let w = log
            .witness(&peer.id(), &[], &note(&peer, &on, 6), 5, &proof)
            .unwrap();
        assert!(w.new && w.size == 6);

        // A second rollback, behind where the first one continued: refused.
        on.push(leaf_hash(b"h"));
        let mut behind = tree(&["a", "b", "c", "again"]);
        behind.push(leaf_hash(b"x"));
        let second = statement(&peer, &behind, 3);
        let r = present(&log, &peer, &behind, &second, &peer).unwrap_err();
        assert_eq!(r.reason, WitnessRefusal::Shrank, "{}", r.detail);
        assert!(r.reason.is_alarm());
    }

    #[tokio::test]
    async fn a_root_that_contradicts_a_cosigned_checkpoint_is_a_fork() {
        let dir = tempfile::tempdir().unwrap();
        let (peer, _store, log) = witness_of(&dir);
        let seen = tree(&["a", "b", "c", "d", "e", "f"]);
        witness_up_to(&log, &peer, &seen, &[2, 4, 6]);
        let other = tree(&["a", "b", "X", "d", "restored"]);
        let s = statement(&peer, &other, 4);
        let r = present(&log, &peer, &other, &s, &peer).unwrap_err();
        assert_eq!(r.reason, WitnessRefusal::Fork, "{}", r.detail);
    }

    /// A thief holding the node's key, or a node rewriting its history,
    /// names a restored size whose root the witness does not keep: the
    /// whole prefix can be anything, so the statement does not settle the
    /// alarm; an honest one whose root was compared does.
    #[tokio::test]
    async fn a_restoration_whose_root_was_not_compared_leaves_its_alarm_open() {
        let dir = tempfile::tempdir().unwrap();
        let (peer, store, log) = witness_of(&dir);
        let seen = tree(&["a", "b", "c", "d", "e", "f"]);
        witness_up_to(&log, &peer, &seen, &[2, 4, 6]);

        // Every entry rewritten, "restored" at 5, a size never cosigned.
        let forged = tree(&["V", "W", "X", "Y", "Z", "restored"]);
        let s = statement(&peer, &forged, 5);
        let w = present(&log, &peer, &forged, &s, &peer).unwrap();
        let gap = w.gap.unwrap();
        assert!(!gap.root_checked);
        assert_eq!(
            log.unacknowledged_alarms().unwrap(),
            1,
            "a restoration the witness could not compare is acknowledged: {:?}",
            log.alarms().unwrap()
        );

        // An honest one, compared at a cosigned size: acknowledged.
        let dir2 = tempfile::tempdir().unwrap();
        let (peer, _store2, log2) = witness_of(&dir2);
        witness_up_to(&log2, &peer, &seen, &[2, 4, 6]);
        let restored = tree(&["a", "b", "c", "d", "restored"]);
        let s = statement(&peer, &restored, 4);
        let w = present(&log2, &peer, &restored, &s, &peer).unwrap();
        let gap = w.gap.unwrap();
        assert!(gap.root_checked);
        assert_eq!(log2.unacknowledged_alarms().unwrap(), 0);
        assert_eq!(log2.alarms().unwrap().len(), 1);
        drop(store);
    }

    /// What a crash could leave between the witness's writes when a
    /// concurrent commit flushed some of them: the continuation stored as
    /// cosigned and the statement not; a retry then took the continuation
    /// for the size cosigned before (5 instead of 6). Both go in one batch
    /// now, after the gap is on record.
    #[tokio::test]
    async fn an_accepted_restoration_is_stored_in_one_write_after_its_record() {
        let dir = tempfile::tempdir().unwrap();
        let (peer, store, log) = witness_of(&dir);
        let seen = tree(&["a", "b", "c", "d", "e", "f"]);
        witness_up_to(&log, &peer, &seen, &[2, 4, 6]);
        let before = store.audit_size();
        let restored = tree(&["a", "b", "c", "d", "restored"]);
        let s = statement(&peer, &restored, 4);
        let w = present(&log, &peer, &restored, &s, &peer).unwrap();
        assert_eq!(w.gap.unwrap().witnessed_size, 6);
        assert_eq!(
            store.witnessed(&peer.id()).unwrap().as_deref(),
            Some(note(&peer, &restored, 5).as_str())
        );
        assert_eq!(
            store.accepted_restoration(&peer.id()).unwrap().unwrap().0,
            s
        );
        // peer-restored, then checkpoint-cosigned.
        let kinds: Vec<_> = store
            .audit_leaves(before, store.audit_size())
            .unwrap()
            .map(|l| {
                comity_protocol::audit::entry::AuditEntry::from_leaf(&l.unwrap().1)
                    .unwrap()
                    .kind
            })
            .collect();
        use comity_protocol::audit::entry::AuditKind;
        assert_eq!(
            kinds,
            [AuditKind::PeerRestored, AuditKind::CheckpointCosigned]
        );
        assert_eq!(log.alarms().unwrap().len(), 1);
    }

    /// Roots the witness kept of the history a restoration discarded
    /// (sizes above N) are not the restored log's: a later restoration to
    /// one of those sizes is compared with the new history, not called a
    /// fork.
    #[tokio::test]
    async fn roots_of_the_lost_history_do_not_make_a_later_restoration_a_fork() {
        let dir = tempfile::tempdir().unwrap();
        let (peer, _store, log) = witness_of(&dir);
        let seen = tree(&["a", "b", "c", "d", "e", "f"]);
        witness_up_to(&log, &peer, &seen, &[2, 4, 6]);
        let restored = tree(&["a", "b", "c", "d", "restored"]);
        let s = statement(&peer, &restored, 4);
        present(&log, &peer, &restored, &s, &peer).unwrap();

        // The restored log goes on to 8, cosigned at 8 (not at 6: say the
        // backup at 6 was taken and the node restarted before offering it).
        let on = tree(&["a", "b", "c", "d", "restored", "g", "h", "i"]);
        let proof = on.consistency_proof(5, 8).unwrap();
        log.witness(&peer.id(), &[], &note(&peer, &on, 8), 5, &proof)
            .unwrap();
        // Restored again, from that backup at 6 of the new history.
        let mut again = tree(&["a", "b", "c", "d", "restored", "g"]);
        again.push(leaf_hash(b"restored again"));
        let s2 = statement(&peer, &again, 6);
        let w = present(&log, &peer, &again, &s2, &peer);
        let gap = w.map_err(|r| r.detail).unwrap().gap.unwrap();
        assert_eq!((gap.restored_size, gap.witnessed_size), (6, 8));
        assert!(!gap.root_checked);
    }

    /// A peer with an open alarm against it restores its log, losing
    /// nothing, again and again: each an acknowledged `restored` alarm, so
    /// cheap. They must not push its unacknowledged alarm out of the kept
    /// ones (and so out of `/healthz`).
    #[tokio::test]
    async fn acknowledged_restorations_do_not_push_out_an_open_alarm() {
        use crate::store::alarms::{AlarmKind, MAX_ALARMS_PER_PEER};
        let dir = tempfile::tempdir().unwrap();
        let (peer, _store, log) = witness_of(&dir);
        let mut t = tree(&["a", "b"]);
        witness_up_to(&log, &peer, &t, &[2]);
        log.alarm(peer.id(), AlarmKind::PeerCheckpoint, "fork", "peer forked");
        assert_eq!(log.unacknowledged_alarms().unwrap(), 1);
        for i in 0..MAX_ALARMS_PER_PEER + 5 {
            // Restored to what was cosigned (N = M: the root is checked),
            // continued by one entry.
            let n = t.size();
            t.push(leaf_hash(format!("restored {i}").as_bytes()));
            let s = statement(&peer, &t, n);
            let w = present(&log, &peer, &t, &s, &peer).unwrap();
            assert!(w.gap.unwrap().root_checked);
        }
        assert_eq!(
            log.unacknowledged_alarms().unwrap(),
            1,
            "the open fork alarm was pushed out"
        );
    }

    #[tokio::test]
    async fn a_restoration_beyond_what_was_cosigned_asks_for_an_ordinary_proof() {
        let dir = tempfile::tempdir().unwrap();
        let (peer, _store, log) = witness_of(&dir);
        let seen = tree(&["a", "b", "c", "d", "e", "f"]);
        witness_up_to(&log, &peer, &seen, &[2]);
        let restored = tree(&["a", "b", "c", "d", "restored"]);
        let s = statement(&peer, &restored, 4);
        let r = present(&log, &peer, &restored, &s, &peer).unwrap_err();
        assert_eq!(r.reason, WitnessRefusal::OldSizeMismatch);
        assert_eq!(r.witnessed_size, 2);
        assert!(!r.reason.is_alarm());
    }
}

#[tokio::test]
async fn a_backup_checkpoint_is_offered_on_the_way_to_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let (_peer, _store, log) = witness_of(&dir);
    log.backup_checkpoints.lock().unwrap().insert(7);
    assert_eq!(log.offer_target(3, 12), 7);
    assert_eq!(log.offer_target(7, 12), 12);
    assert_eq!(log.offer_target(3, 6), 6);
    // Nothing to offer, whichever way round.
    assert_eq!(log.offer_target(12, 12), 12);
    assert_eq!(log.offer_target(13, 12), 12);
}
