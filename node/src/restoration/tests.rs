use std::sync::Arc;

use comity_protocol::audit::entry::{Actor, AuditEntry, AuditKind};
use comity_protocol::backup::{RestoreMarker, RESTORE_MARKER_FORMAT, RESTORE_MARKER_NAME};
use comity_protocol::{Identity, Timestamp};

use super::{make_statement, on_start, restored_checkpoint, STATEMENT_FILE};
use crate::audit::{AuditLog, Fact};
use crate::store::Store;

/// A store holding a few entries and a checkpoint of them, and the marker
/// `comity restore` leaves for it.
async fn restored_store(
    dir: &std::path::Path,
) -> (Arc<Identity>, Store, Arc<AuditLog>, RestoreMarker) {
    let me = Arc::new(Identity::from_seeds(&[1; 32], &[2; 32], Timestamp(0)));
    let store = Store::open(dir).unwrap();
    let audit = Arc::new(AuditLog::open(store.clone(), me.clone(), 1000, true).unwrap());
    for i in 0..3 {
        audit
            .record(Fact::new(AuditKind::AdminAction, Actor::Operator).detail(&i.to_string()))
            .unwrap();
    }
    let size = audit.durable_checkpoint().await.unwrap();
    let marker = RestoreMarker {
        format: RESTORE_MARKER_FORMAT.to_string(),
        node: me.id().to_string(),
        backup_created_ms: 1_000,
        audit_size: size,
        checkpoint: audit.checkpoint_note(size).unwrap().unwrap(),
    };
    std::fs::write(
        dir.join(RESTORE_MARKER_NAME),
        serde_json::to_vec(&marker).unwrap(),
    )
    .unwrap();
    (me, store, audit, marker)
}

fn restored_entries(store: &Store) -> Vec<u64> {
    store
        .audit_leaves(0, store.audit_size())
        .unwrap()
        .map(|l| l.unwrap())
        .filter(|(_, leaf)| AuditEntry::from_leaf(leaf).unwrap().kind == AuditKind::LogRestored)
        .map(|(seq, _)| seq)
        .collect()
}

#[tokio::test]
async fn a_crash_before_the_statement_file_is_written_records_the_restoration_once() {
    let dir = tempfile::tempdir().unwrap();
    let (me, store, audit, marker) = restored_store(dir.path()).await;
    let n = marker.audit_size;
    // The first start got as far as the entry and its checkpoint (durable),
    // and died before the statement file was written.
    let restored = restored_checkpoint(&marker, &audit, &me).unwrap();
    let first = make_statement(&marker, restored, &audit, &me)
        .await
        .unwrap();
    assert!(!dir.path().join(STATEMENT_FILE).exists());
    assert_eq!(restored_entries(&store), vec![n]);

    // The next start: one `log-restored` entry, at seq N, and a statement
    // whose continuation is the checkpoint that holds it.
    let pending = on_start(dir.path(), &audit, &me).await.unwrap().unwrap();
    assert_eq!(
        restored_entries(&store),
        vec![n],
        "log-restored recorded again"
    );
    assert_eq!(pending.statement.restored_size, n);
    assert_eq!(
        pending.statement.continuation_size,
        first.statement.continuation_size
    );
    assert!(!dir.path().join(RESTORE_MARKER_NAME).exists());
    assert!(dir.path().join(STATEMENT_FILE).exists());

    // And once more (marker gone): the same statement, nothing recorded.
    let again = on_start(dir.path(), &audit, &me).await.unwrap().unwrap();
    assert_eq!(again, pending);
    assert_eq!(restored_entries(&store), vec![n]);
}

#[tokio::test]
async fn a_crash_after_the_statement_file_keeps_that_statement() {
    let dir = tempfile::tempdir().unwrap();
    let (me, store, audit, marker) = restored_store(dir.path()).await;
    let restored = restored_checkpoint(&marker, &audit, &me).unwrap();
    let first = make_statement(&marker, restored, &audit, &me)
        .await
        .unwrap();
    super::write_statement(&dir.path().join(STATEMENT_FILE), &first).unwrap();
    // Died before the marker was removed.
    let pending = on_start(dir.path(), &audit, &me).await.unwrap().unwrap();
    assert_eq!(pending, first);
    assert_eq!(restored_entries(&store), vec![marker.audit_size]);
    assert!(!dir.path().join(RESTORE_MARKER_NAME).exists());
}
