use std::sync::Arc;

use comity_protocol::audit::checkpoint::{origin_for, sign_checkpoint, Checkpoint};
use comity_protocol::audit::merkle::{leaf_hash, Frontier};
use comity_protocol::{Identity, Timestamp};

use super::AuditLog;
use crate::store::Store;

#[tokio::test]
async fn the_checkpoint_cosigned_last_is_cosigned_again_without_a_new_record() {
    let dir = tempfile::tempdir().unwrap();
    let me = Arc::new(Identity::from_seeds(&[1; 32], &[2; 32], Timestamp(0)));
    let peer = Identity::from_seeds(&[3; 32], &[4; 32], Timestamp(0));
    let store = Store::open(dir.path()).unwrap();
    let log = AuditLog::open(store.clone(), me, 1000, true).unwrap();
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
    let w = log.witness(&peer.id(), &first, 0, &[]).unwrap();
    assert!(w.new && w.size == 1);
    // The same note again (from any old size): cosigned, not stored anew.
    let again = log.witness(&peer.id(), &first, 0, &[]).unwrap();
    assert!(!again.new && again.size == 1);
    assert_eq!(
        store.witnessed(&peer.id()).unwrap().as_deref(),
        Some(&first[..])
    );
    // A larger, consistent one is new.
    tree.push(leaf_hash(b"two")).unwrap();
    let second = note_at(&tree);
    let proof = vec![leaf_hash(b"two")];
    let w = log.witness(&peer.id(), &second, 1, &proof).unwrap();
    assert!(w.new && w.size == 2);
}
