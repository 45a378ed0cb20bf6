//! The log's switch to a new identity key, as an outside verifier sees it.

use std::sync::Arc;

use comity_protocol::audit::bundle::{verify_bundle, Report, VerifyOptions};
use comity_protocol::audit::checkpoint::{
    open_checkpoint, origin_for, sign_checkpoint, Checkpoint,
};
use comity_protocol::audit::entry::{Actor, AuditKind};
use comity_protocol::audit::merkle::{leaf_hash, Frontier};
use comity_protocol::audit::switch::switch_detail;
use comity_protocol::transition::{IdentityTransition, TransitionStatement};
use comity_protocol::{Identity, NodeId, Timestamp};

use super::{AuditLog, Fact};
use crate::store::Store;

fn keys() -> (Arc<Identity>, Arc<Identity>, TransitionStatement) {
    let old = Arc::new(Identity::from_seeds(&[1; 32], &[2; 32], Timestamp(0)));
    let new = Arc::new(Identity::from_seeds(&[5; 32], &[6; 32], Timestamp(0)));
    let now = Timestamp::now();
    let statement = IdentityTransition {
        old: old.id(),
        new: new.id(),
        created_at: Timestamp(now.0 - 2_000),
        effective_after: Timestamp(now.0 - 1_000),
        reason: "scheduled identity rotation".into(),
    }
    .sign(&old, &new)
    .unwrap();
    (old, new, statement)
}

fn some_entries(log: &AuditLog, n: usize) {
    for _ in 0..n {
        log.record(Fact::new(AuditKind::AdminAction, Actor::Operator).detail("x"))
            .unwrap();
    }
}

fn verified(log: &AuditLog, first: NodeId) -> Report {
    let mut bundle = Vec::new();
    log.export(&log.first_key(), &mut bundle).unwrap();
    verify_bundle(
        std::io::Cursor::new(bundle),
        &VerifyOptions {
            expected_node: Some(first),
            required_witnesses: Vec::new(),
            allow_unwitnessed_tail: 0,
            threads: 1,
        },
    )
    .unwrap()
}

#[tokio::test]
async fn a_switched_log_is_one_log_its_history_signed_by_the_old_key_and_what_follows_by_the_new() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new, statement) = keys();
    let store = Store::open(dir.path()).unwrap();
    let log = Arc::new(AuditLog::open(store.clone(), old.clone(), 1000, true).unwrap());
    some_entries(&log, 3);
    log.durable_checkpoint().await.unwrap();
    some_entries(&log, 2);

    let k = log.switch(&statement).unwrap();
    assert_eq!(k, 5);
    // Until the switch is durable and the new key takes over, neither key
    // signs a checkpoint after the entry.
    some_entries(&log, 1);
    assert_eq!(log.durable_checkpoint().await.unwrap(), 5);
    log.sign_with(new.clone());
    assert_eq!(store.own_switch().unwrap(), Some(5));
    let origin = origin_for(&old.id());
    let before = store.checkpoint_at(5).unwrap().unwrap();
    assert_eq!(
        open_checkpoint(&before, &origin, &old.id()).unwrap().0.size,
        5
    );
    some_entries(&log, 1);
    let size = log.durable_checkpoint().await.unwrap();
    assert_eq!(size, 8);
    let after = store.checkpoint_at(8).unwrap().unwrap();
    assert!(open_checkpoint(&after, &origin, &new.id()).is_ok());
    assert!(open_checkpoint(&after, &origin, &old.id()).is_err());
    assert_eq!(log.first_key(), old.id());

    let report = verified(&log, old.id());
    assert!(report.is_valid(), "{:?}", report.findings);
    assert_eq!(report.key_switches.len(), 1);
    assert_eq!(report.key_switches[0].entry, 5);
    // Named by its new key, it is not this log.
    assert!(!verified(&log, new.id()).is_valid());
}

#[tokio::test]
async fn a_switch_entry_a_crash_left_without_its_checkpoint_is_finished_under_the_old_key() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new, statement) = keys();
    let store = Store::open(dir.path()).unwrap();
    let log = Arc::new(AuditLog::open(store.clone(), old.clone(), 1000, true).unwrap());
    some_entries(&log, 3);
    log.durable_checkpoint().await.unwrap();
    some_entries(&log, 1);
    // What reached the log's file before the crash: the entry, without
    // the old key's checkpoint before it or the store's mark.
    let detail = switch_detail(&statement);
    let k = log
        .record(Fact::new(AuditKind::IdentityTransition, Actor::Node).detail(&detail))
        .unwrap();
    store.commit().await.unwrap();
    assert_eq!(store.own_switch().unwrap(), None);
    assert_eq!(log.interrupted_switch(&statement).unwrap(), Some(k));

    log.finish_switch(&statement, k).unwrap();
    store.commit().await.unwrap();
    log.sign_with(new.clone());
    assert_eq!(store.own_switch().unwrap(), Some(k));
    some_entries(&log, 1);
    log.durable_checkpoint().await.unwrap();
    let report = verified(&log, old.id());
    assert!(report.is_valid(), "{:?}", report.findings);
    assert_eq!(report.key_switches.len(), 1);
}

#[tokio::test]
async fn no_switch_is_found_where_the_log_has_none() {
    let dir = tempfile::tempdir().unwrap();
    let (old, _, statement) = keys();
    let store = Store::open(dir.path()).unwrap();
    let log = AuditLog::open(store, old, 1000, true).unwrap();
    some_entries(&log, 4);
    assert_eq!(log.interrupted_switch(&statement).unwrap(), None);
}

/// A witness's view: checkpoints of `signer` under `named`'s name.
fn note_of(signer: &Identity, named: &NodeId, tree: &Frontier) -> String {
    sign_checkpoint(
        signer,
        &Checkpoint {
            origin: origin_for(named),
            size: tree.size(),
            root: tree.root(),
        },
    )
    .unwrap()
}

#[tokio::test]
async fn a_witness_follows_its_peers_log_across_the_peers_switch() {
    let dir = tempfile::tempdir().unwrap();
    let me = Arc::new(Identity::from_seeds(&[7; 32], &[8; 32], Timestamp(0)));
    let log = AuditLog::open(Store::open(dir.path()).unwrap(), me, 1000, true).unwrap();
    let (old, new, _) = keys();
    let mut tree = Frontier::new();
    tree.push(leaf_hash(b"one")).unwrap();
    assert!(log
        .witness(&old.id(), &[], &note_of(&old, &old.id(), &tree), 0, &[])
        .is_ok());
    // After the move: the new key's checkpoints of the same log, from where
    // the old key's stopped.
    tree.push(leaf_hash(b"two")).unwrap();
    let proof = vec![leaf_hash(b"two")];
    let earlier = [old.id()];
    let second = note_of(&new, &old.id(), &tree);
    let w = log
        .witness(&new.id(), &earlier, &second, 1, &proof)
        .unwrap();
    assert!(w.new && w.size == 2);
    // A fresh log under the new key, dropping the history: refused.
    let mut fresh = Frontier::new();
    fresh.push(leaf_hash(b"other")).unwrap();
    fresh.push(leaf_hash(b"history")).unwrap();
    fresh.push(leaf_hash(b"entirely")).unwrap();
    let forked = note_of(&new, &new.id(), &fresh);
    assert!(log.witness(&new.id(), &earlier, &forked, 2, &[]).is_err());
}

#[tokio::test]
async fn a_peer_first_pinned_after_its_switch_is_witnessed_under_its_logs_name() {
    let dir = tempfile::tempdir().unwrap();
    let me = Arc::new(Identity::from_seeds(&[7; 32], &[8; 32], Timestamp(0)));
    let log = AuditLog::open(Store::open(dir.path()).unwrap(), me, 1000, true).unwrap();
    let (old, new, _) = keys();
    let mut tree = Frontier::new();
    for leaf in [b"one", b"two", b"six"] {
        tree.push(leaf_hash(leaf)).unwrap();
    }
    let first = note_of(&new, &old.id(), &tree);
    assert!(log.witness(&new.id(), &[], &first, 0, &[]).is_ok());
    // From then on under that name only.
    tree.push(leaf_hash(b"ten")).unwrap();
    let hashes: Vec<_> = [&b"one"[..], b"two", b"six", b"ten"]
        .iter()
        .map(|l| leaf_hash(l))
        .collect();
    let memory = comity_protocol::audit::merkle::MemoryTree::from_leaf_hashes(hashes);
    let proof = comity_protocol::audit::merkle::consistency_proof(&memory, 3, 4).unwrap();
    let renamed = note_of(&new, &new.id(), &tree);
    assert!(log.witness(&new.id(), &[], &renamed, 3, &proof).is_err());
    let same = note_of(&new, &old.id(), &tree);
    assert!(log.witness(&new.id(), &[], &same, 3, &proof).is_ok());
}
