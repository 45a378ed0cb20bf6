//! A new log's first entries, naming the log of a lost key.

use std::sync::Arc;

use comity_protocol::audit::checkpoint::{origin_for, sign_checkpoint, Checkpoint};
use comity_protocol::audit::entry::{Actor, AuditKind};
use comity_protocol::audit::predecessor::PredecessorFile;
use comity_protocol::transition::IdentityTransition;
use comity_protocol::{Digest, Identity, Timestamp};

use super::{AuditLog, Fact};
use crate::store::Store;

fn ident(seed: u8) -> Identity {
    Identity::from_seeds(&[seed; 32], &[seed + 50; 32], Timestamp(0))
}

/// A file naming `old`'s log at size 9, signed after its switch to `later`.
fn file() -> PredecessorFile {
    let (old, later) = (ident(1), ident(2));
    let statement = IdentityTransition {
        old: old.id(),
        new: later.id(),
        created_at: Timestamp(1_700_000_000_000),
        effective_after: Timestamp(1_700_000_000_000),
        reason: "scheduled identity rotation".into(),
    }
    .sign(&old, &later)
    .unwrap();
    let cp = Checkpoint {
        origin: origin_for(&old.id()),
        size: 9,
        root: Digest([9; 32]),
    };
    PredecessorFile {
        note: sign_checkpoint(&later, &cp).unwrap(),
        switches: vec![statement],
    }
}

fn kinds(log: &AuditLog) -> Vec<AuditKind> {
    (0..log.size())
        .map(|s| log.entry(s).unwrap().unwrap().kind)
        .collect()
}

#[tokio::test]
async fn a_start_cut_short_finishes_the_entries_and_a_log_begun_otherwise_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let f = file();
    std::fs::write(data.join(comity_config::PREDECESSOR_FILE), f.to_text()).unwrap();
    let details = f.entry_details().unwrap();
    assert_eq!(details.len(), 2);

    // A start that wrote only the first entry before it died.
    let store = Store::open(&dir.path().join("store")).unwrap();
    let node = Arc::new(ident(7));
    let log = AuditLog::open(store.clone(), node.clone(), 1000, true).unwrap();
    log.record(Fact::new(AuditKind::LogPredecessor, Actor::Operator).detail(&details[0]))
        .unwrap();
    let named = log.begin_after_predecessor(&data).unwrap().unwrap();
    assert_eq!((named.node, named.size), (ident(1).id(), 9));
    assert_eq!(kinds(&log), vec![AuditKind::LogPredecessor; 2]);
    assert_eq!(log.entry(1).unwrap().unwrap().detail, details[1]);
    // Done: never again.
    assert!(log.begin_after_predecessor(&data).unwrap().is_none());
    log.record(Fact::new(AuditKind::AdminAction, Actor::Operator).detail("x"))
        .unwrap();
    assert!(log.begin_after_predecessor(&data).unwrap().is_none());
    assert_eq!(log.size(), 3);
    // Nor read: a file damaged since does not stop a start.
    let kept = data.join(comity_config::PREDECESSOR_FILE);
    std::fs::write(&kept, "damaged").unwrap();
    assert!(log.begin_after_predecessor(&data).unwrap().is_none());
    std::fs::write(&kept, f.to_text()).unwrap();

    // A log that began with anything else is not given them.
    let dir2 = tempfile::tempdir().unwrap();
    let store2 = Store::open(dir2.path()).unwrap();
    let other = AuditLog::open(store2, node, 1000, true).unwrap();
    other
        .record(Fact::new(AuditKind::AdminAction, Actor::Operator).detail("x"))
        .unwrap();
    assert!(other.begin_after_predecessor(&data).unwrap().is_none());
    assert_eq!(kinds(&other), vec![AuditKind::AdminAction]);

    // A file that does not check stops the start, saying why.
    let mut bad = file();
    bad.switches.clear();
    std::fs::write(data.join(comity_config::PREDECESSOR_FILE), bad.to_text()).unwrap();
    let dir3 = tempfile::tempdir().unwrap();
    let fresh = AuditLog::open(
        Store::open(dir3.path()).unwrap(),
        Arc::new(ident(8)),
        1000,
        true,
    )
    .unwrap();
    let e = fresh
        .begin_after_predecessor(&data)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("predecessor.checkpoint") && e.contains("not signed"),
        "{e}"
    );
    assert_eq!(fresh.size(), 0);
}
