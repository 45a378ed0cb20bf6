use comity_protocol::message::{Body, Consultation, MessageKind, Thread};
use comity_protocol::{Digest, MessageId, NodeId, Timestamp};

use super::*;

fn body() -> Body {
    Body::Consultation(Consultation {
        regarding: None,
        subject: "Before a formal request".into(),
        body: "Would you accept a request on this basis?".into(),
        thread: Thread::default(),
    })
}

fn inbound(sender: u8, id: u8, digest: u8) -> InboundMessage {
    InboundMessage {
        id: MessageId([id; 16]),
        sender: NodeId([sender; 32]),
        kind: MessageKind::Consultation,
        body: body(),
        created_at: Timestamp(1),
        received_at: Timestamp(2),
        envelope: vec![1, 2, 3],
        digest: Digest([digest; 32]),
        receipt: vec![digest; 4],
    }
}

/// Opens the store at `path` again after it was closed. sled's own flusher
/// thread may hold the lock a moment after the last handle is dropped
/// (seen 1 run in 4 on a loaded machine, and in CI): `Locked` is retried
/// for up to 5 s, any other answer returned.
async fn reopen(path: &std::path::Path) -> Result<Store> {
    let mut reopened = Store::open(path);
    for _ in 0..50 {
        if !matches!(reopened, Err(StoreError::Locked { .. })) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        reopened = Store::open(path);
    }
    reopened
}

#[tokio::test]
async fn outbound_round_trip_and_listing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let msg = OutboundMessage {
        id: MessageId([1; 16]),
        peer: NodeId([2; 32]),
        kind: MessageKind::Consultation,
        body: body(),
        created_at: Timestamp(3),
        envelope: None,
        digest: None,
    };
    store
        .insert_outbound(&msg, &OutboundStatus::queued())
        .unwrap();
    store.commit().await.unwrap();
    let mut status = OutboundStatus::queued();
    status.state = OutboundState::Delivered;
    store.put_outbound_status(&msg.id, &status).unwrap();
    let (m, s) = store.outbound(&msg.id).unwrap().unwrap();
    assert_eq!(m, msg);
    assert_eq!(s.state, OutboundState::Delivered);
    let all: Vec<_> = store.outbound_all().collect::<Result<_>>().unwrap();
    assert_eq!(all.len(), 1);
}

#[tokio::test]
async fn inbound_is_inserted_once_per_sender_and_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert!(store
        .insert_inbound_if_new(&inbound(1, 1, 7))
        .unwrap()
        .is_none());
    // Same sender and id, other content: the first stays.
    let existing = store
        .insert_inbound_if_new(&inbound(1, 1, 8))
        .unwrap()
        .unwrap();
    assert_eq!(existing.digest, Digest([7; 32]));
    assert_eq!(
        store
            .inbound(&NodeId([1; 32]), &MessageId([1; 16]))
            .unwrap()
            .unwrap()
            .digest,
        Digest([7; 32])
    );
    // Another sender may use the same id.
    assert!(store
        .insert_inbound_if_new(&inbound(2, 1, 9))
        .unwrap()
        .is_none());
    assert_eq!(store.inbound_all().count(), 2);
}

#[tokio::test]
async fn committed_writes_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.insert_inbound_if_new(&inbound(1, 1, 7)).unwrap();
    store.commit().await.unwrap();
    // A copy taken now, with the store still open (no close, no drop to
    // flush it), is what a crash would leave on disk.
    let copy = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), copy.path());
    let reopened = Store::open(copy.path()).unwrap();
    assert_eq!(reopened.inbound_all().count(), 1);
    drop(store);
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), t).unwrap();
        }
    }
}

#[tokio::test]
async fn damaged_record_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .inbox
        .insert(key(b'm', &[&[1u8; 32], &[1u8; 16]]), vec![0xff; 10])
        .unwrap();
    store
        .inbox
        .insert(key(b'd', &[&[1u8; 32], &[1u8; 16]]), vec![0xff; 10])
        .unwrap();
    let r: Vec<_> = store.inbound_all().collect();
    assert!(matches!(r[0], Err(StoreError::Corrupt { .. })));
}

#[tokio::test]
async fn a_message_whose_dedup_entry_was_never_written_is_not_received() {
    // What a crash between the two inserts of insert_inbound_if_new leaves.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let msg = inbound(1, 1, 7);
    store
        .inbox
        .insert(
            key(b'm', &[&msg.sender.0, &msg.id.0]),
            encode(&msg).unwrap(),
        )
        .unwrap();
    assert_eq!(store.inbound_all().count(), 0);
    assert_eq!(store.seen(&msg.sender, &msg.id).unwrap(), None);
    // A resent copy is new, and then received once.
    assert_eq!(store.insert_inbound_if_new(&msg).unwrap(), None);
    assert!(store.insert_inbound_if_new(&msg).unwrap().is_some());
    assert_eq!(store.inbound_all().count(), 1);
}

#[tokio::test]
async fn a_store_of_the_old_layout_is_refused_not_replaced() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("db"), b"sled").unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::OldLayout { .. }), "{err}");
    assert!(!dir.path().join("sled").exists());
}

#[tokio::test]
async fn a_store_held_by_another_handle_is_reported_as_locked() {
    let dir = tempfile::tempdir().unwrap();
    let held = Store::open(dir.path()).unwrap();
    match Store::open(dir.path()) {
        Err(StoreError::Locked { .. }) => {}
        other => panic!("expected Locked, got {other:?}"),
    }
    held.close().await.unwrap();
    // Released: it opens again.
    reopen(dir.path()).await.unwrap().close().await.unwrap();
}

#[tokio::test]
async fn a_store_of_a_newer_format_is_refused_and_an_unmarked_one_is_marked() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    version::set_for_test(&store.db, version::CURRENT + 1);
    store.close().await.unwrap();
    match reopen(dir.path()).await {
        Err(StoreError::Version { source, .. }) => {
            assert!(source.to_string().contains("newer comityd"), "{source}");
        }
        other => panic!("expected a version error, got {other:?}"),
    }

    // A store written before versions existed: data, no mark.
    let old = tempfile::tempdir().unwrap();
    {
        let db = sled::open(old.path().join("sled")).unwrap();
        db.open_tree("outbox").unwrap().insert(b"x", b"y").unwrap();
        db.flush().unwrap();
    }
    let db = sled::open(old.path().join("sled")).unwrap();
    assert_eq!(
        version::check(&db).unwrap(),
        version::Opened::Migrated { from: 0 }
    );
    assert_eq!(version::check(&db).unwrap(), version::Opened::Current);
    drop(db);
    let fresh = sled::open(dir.path().join("fresh")).unwrap();
    assert_eq!(version::check(&fresh).unwrap(), version::Opened::Created);
}

#[tokio::test]
async fn a_retargeted_message_is_to_be_sealed_again_for_the_new_id_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (NodeId([2; 32]), NodeId([3; 32]));
    let sent = |n: u8| OutboundMessage {
        id: MessageId([n; 16]),
        peer: old,
        kind: MessageKind::Consultation,
        body: body(),
        created_at: Timestamp(u64::from(n)),
        envelope: Some(vec![n; 8]),
        digest: Some(Digest([n; 32])),
    };
    {
        let store = Store::open(dir.path()).unwrap();
        for n in 1..=3 {
            store
                .insert_outbound(&sent(n), &OutboundStatus::queued())
                .unwrap();
        }
        let mut delivered = OutboundStatus::queued();
        delivered.state = OutboundState::Delivered;
        store
            .put_outbound_status(&MessageId([3; 16]), &delivered)
            .unwrap();
        let mut sending = OutboundStatus::queued();
        sending.sent(Timestamp(9));
        store
            .put_outbound_status(&MessageId([2; 16]), &sending)
            .unwrap();

        for n in 1..=3 {
            let moved = store
                .retarget_outbound(&MessageId([n; 16]), new, "repinned")
                .unwrap();
            assert_eq!(moved, n != 3, "message {n}");
        }
        let (m, s) = store.outbound(&MessageId([1; 16])).unwrap().unwrap();
        assert_eq!((m.peer, &m.envelope, m.digest), (new, &None, None));
        assert_eq!(s.state, OutboundState::Queued);
        assert_eq!(s.last_error.as_deref(), Some("repinned"));
        // The delivered one stays where it was.
        let (m, _) = store.outbound(&MessageId([3; 16])).unwrap().unwrap();
        assert_eq!(m.peer, old);
        assert_eq!(store.pending_outbound(Some(&old)).unwrap(), vec![]);
        assert_eq!(store.pending_outbound(Some(&new)).unwrap().len(), 2);
        store.commit().await.unwrap();
        store.close().await.unwrap();
    }
    // The listing a restart reads queues them for the new id.
    let store = reopen(dir.path()).await.unwrap();
    let mut pending: Vec<_> = store.take_opened().pending;
    pending.sort();
    let peers: Vec<_> = pending
        .iter()
        .map(|(_, id, peer)| (id.0[0], *peer))
        .collect();
    assert_eq!(peers, vec![(1, new), (2, new)]);
}
