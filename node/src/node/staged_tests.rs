//! Uploads (`crate::staged`) taken into messages, on a node started in
//! this process with a peer that is pinned but never started (nothing is
//! delivered). Here, beside the facade, because they start a whole node.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::Duration;

use comity_protocol::envelope::{check, CheckPolicy};
use comity_protocol::{Digest, Identity, MessageId, NodeId, PeerKeys, Timestamp};
use comity_tests::request_body;

use comity_protocol::attachment::InvalidAttachment;

use super::test_node::{node_with_peer, upload};
use crate::attachments::StoredId;
use crate::node::Node;
use crate::outbox::{seal_for, SubmitError};
use crate::staged::{remove_expired, remove_unrecorded, AttachError};

/// Opens `bytes` as the peer would, and returns its manifests and keys.
fn opened_by(
    peer: &Identity,
    from: &Node,
    bytes: &[u8],
) -> Vec<comity_protocol::attachment::SealedAttachment> {
    let sender: HashMap<NodeId, PeerKeys> =
        [(from.id(), from.context().identity().public().clone())].into();
    let seen: HashMap<(NodeId, MessageId), Digest> = HashMap::new();
    let policy = CheckPolicy {
        now: Timestamp::now(),
        max_future_skew: Duration::from_secs(300),
        max_age: Duration::from_secs(86_400),
        max_envelope_bytes: 4 << 20,
    };
    let checked = check(bytes, peer, &sender, &seen, &policy).unwrap();
    let opened = checked.open(peer).unwrap();
    opened.attachments.iter().map(|a| a.to_sealed()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_seals_its_staged_attachments_in_order_and_takes_them_out_of_staging() {
    let p = node_with_peer("").await;
    let a = upload(&p.node, "letter.pdf", b"%PDF-1.7 the request letter").await;
    let b = upload(&p.node, "annex.bin", &vec![7u8; 300_000]).await;
    let ctx = p.node.context();
    let accepted = p
        .node
        .submit_with(
            p.peer.id(),
            request_body("with annexes"),
            &[a.stored, b.stored],
            None,
        )
        .await
        .unwrap();
    let held = ctx.store.outbound_attachments(&accepted.id).unwrap();
    assert_eq!(
        held.iter().map(|h| h.stored).collect::<Vec<_>>(),
        vec![Some(a.stored), Some(b.stored)]
    );
    assert_eq!(held[0].sealed, a.sealed);
    assert_eq!(held[1].sealed, b.sealed);
    assert!(ctx.store.staged_attachment(&a.stored).unwrap().is_none());
    assert!(ctx.store.staged_attachments().unwrap().is_empty());

    // Sealed at acceptance: the peer opens the same manifests and keys.
    let (msg, _) = ctx.store.outbound(&accepted.id).unwrap().unwrap();
    let envelope = msg.envelope.clone().unwrap();
    assert_eq!(
        opened_by(&p.peer, &p.node, &envelope),
        vec![a.sealed.clone(), b.sealed.clone()]
    );
    // Sealed again (a new peer key, a reseal after a refusal): the same
    // manifests and keys, in a new envelope.
    let again = seal_for(ctx, p.peer.public(), &msg, &held).unwrap();
    assert_ne!(again.bytes, envelope);
    assert_eq!(
        opened_by(&p.peer, &p.node, &again.bytes),
        vec![a.sealed, b.sealed]
    );

    // Taken: a second message cannot use them again.
    let e = p
        .node
        .submit_with(p.peer.id(), request_body("again"), &[a.stored], None)
        .await
        .unwrap_err();
    assert!(
        matches!(e, SubmitError::Attach(AttachError::NotStaged(id)) if id == a.stored),
        "{e}"
    );
    p.node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_attachment_lists_leave_the_staged_files_staged() {
    let p = node_with_peer("max_attachments_per_message = 2").await;
    let a = upload(&p.node, "a.pdf", b"a").await;
    let b = upload(&p.node, "b.pdf", b"b").await;
    let c = upload(&p.node, "A.PDF", b"c").await;
    let to = p.peer.id();
    let refused = |ids: Vec<StoredId>| {
        let node = &p.node;
        async move {
            node.submit_with(to, request_body("x"), &ids, None)
                .await
                .unwrap_err()
        }
    };
    let e = refused(vec![a.stored, b.stored, c.stored]).await;
    assert!(
        matches!(
            e,
            SubmitError::Attach(AttachError::Invalid(InvalidAttachment::TooMany {
                count: 3,
                max: 2
            }))
        ),
        "{e}"
    );
    let e = refused(vec![a.stored, a.stored]).await;
    assert!(
        matches!(e, SubmitError::Attach(AttachError::ListedTwice(_))),
        "{e}"
    );
    let e = refused(vec![a.stored, c.stored]).await;
    assert!(
        matches!(
            e,
            SubmitError::Attach(AttachError::Invalid(
                InvalidAttachment::DuplicateName { .. }
            ))
        ),
        "{e}"
    );
    let e = refused(vec![StoredId([9; 16])]).await;
    assert!(
        matches!(e, SubmitError::Attach(AttachError::NotStaged(_))),
        "{e}"
    );
    assert_eq!(
        p.node.context().store.staged_attachments().unwrap().len(),
        3
    );
    p.node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_staged_files_lose_record_and_file_and_newer_ones_stay() {
    let p = node_with_peer("").await;
    let old = upload(&p.node, "old.pdf", b"old").await;
    let ctx = p.node.context();
    let cut = Timestamp::now().saturating_add(Duration::from_millis(1));
    tokio::time::sleep(Duration::from_millis(5)).await;
    let new = upload(&p.node, "new.pdf", b"new").await;
    let path = ctx.attachments.sent_path(old.stored);
    assert!(path.exists());
    assert_eq!(remove_expired(ctx, cut).await.unwrap(), 1);
    assert!(!path.exists());
    assert!(ctx.store.staged_attachment(&old.stored).unwrap().is_none());
    assert!(ctx.store.staged_attachment(&new.stored).unwrap().is_some());
    assert!(ctx.attachments.sent_path(new.stored).exists());
    p.node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_no_record_names_are_removed_once_old_and_named_ones_stay() {
    let p = node_with_peer("").await;
    let ctx = p.node.context();
    let staged = upload(&p.node, "staged.pdf", b"staged").await;
    let attached = upload(&p.node, "attached.pdf", b"attached").await;
    p.node
        .submit_with(
            p.peer.id(),
            request_body("with one"),
            &[attached.stored],
            None,
        )
        .await
        .unwrap();
    // What a crash between the rename into sent/ and the record leaves.
    let orphan = upload(&p.node, "orphan.pdf", b"orphan").await;
    ctx.store.remove_staged_attachment(&orphan.stored).unwrap();
    let not_ours = ctx.attachments.root().join("sent/README");
    std::fs::write(&not_ours, b"an operator's note").unwrap();
    let written = std::time::SystemTime::now();
    // Written before the cut-off? Not yet: nothing goes.
    assert_eq!(
        remove_unrecorded(ctx, written - Duration::from_secs(60)).unwrap(),
        0
    );
    assert!(ctx.attachments.sent_path(orphan.stored).exists());
    let later = written + Duration::from_secs(1);
    assert_eq!(remove_unrecorded(ctx, later).unwrap(), 1);
    assert!(!ctx.attachments.sent_path(orphan.stored).exists());
    for kept in [staged.stored, attached.stored] {
        assert!(ctx.attachments.sent_path(kept).exists());
    }
    assert!(not_ours.exists());
    p.node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resend_carries_the_same_files_under_the_same_keys() {
    let p = node_with_peer("").await;
    let a = upload(&p.node, "letter.pdf", b"%PDF-1.7 letter").await;
    let ctx = p.node.context();
    let first = p
        .node
        .submit_with(p.peer.id(), request_body("to resend"), &[a.stored], None)
        .await
        .unwrap();
    let (_, mut status) = ctx.store.outbound(&first.id).unwrap().unwrap();
    status.failed("refused by peer (test)".into());
    ctx.store.put_outbound_status(&first.id, &status).unwrap();
    let (again, _) = p.node.resend(first.id, None).await.unwrap();
    let original = ctx.store.outbound_attachments(&first.id).unwrap();
    let resent = ctx.store.outbound_attachments(&again.id).unwrap();
    assert_eq!(resent, original);
    assert_eq!(resent[0].stored, Some(a.stored));
    // Sealed again for the new id: the peer opens the same manifest and key.
    let (msg, _) = ctx.store.outbound(&again.id).unwrap().unwrap();
    assert_eq!(
        opened_by(&p.peer, &p.node, &msg.envelope.unwrap()),
        vec![a.sealed]
    );
    p.node.shutdown().await.unwrap();
}
