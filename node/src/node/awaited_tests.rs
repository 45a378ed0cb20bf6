//! Received messages whose attachments never arrived: given up on (files
//! and records removed) once older than a sender keeps trying, unless a
//! stream is writing one of them.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use comity_protocol::message::MessageKind;
use comity_protocol::{Digest, MessageId, NodeId, Timestamp};

use super::test_node::{node_with_peer, upload};
use crate::attachments::IncomingKey;
use crate::context::Context;
use crate::delivery::attachments_in::{give_up_awaited_since_before, Claim};
use crate::store::{AwaitedMessage, HeldAttachment, InboundMessage};

/// `peer`'s message, held awaiting one attachment since `since`, with a
/// partial file on disk: what an interrupted transfer leaves.
fn awaiting(ctx: &Context, peer: NodeId, held: &HeldAttachment, since: Timestamp) -> MessageId {
    let id = MessageId::random();
    let held = HeldAttachment {
        sealed: held.sealed.clone(),
        stored: None,
    };
    ctx.store
        .put_inbound_attachments(&peer, &id, &[held])
        .unwrap();
    let awaited = AwaitedMessage {
        digest: Digest([7; 32]),
        kind: MessageKind::Request,
        since,
    };
    ctx.store.put_awaited(&peer, &id, &awaited).unwrap();
    let dir = part_dir(ctx, peer, id);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("0.part"), b"half of it").unwrap();
    id
}

fn part_dir(ctx: &Context, peer: NodeId, id: MessageId) -> std::path::PathBuf {
    ctx.attachments
        .root()
        .join("received")
        .join(hex::encode(peer.0))
        .join(hex::encode(id.0))
}

fn still_awaited(ctx: &Context, peer: NodeId, id: MessageId) -> bool {
    let held = !ctx
        .store
        .inbound_attachments(&peer, &id)
        .unwrap()
        .is_empty();
    let awaited = ctx
        .store
        .all_awaited()
        .unwrap()
        .iter()
        .any(|(p, i, _)| *p == peer && *i == id);
    assert_eq!(held, awaited, "the two records go together");
    assert_eq!(
        held,
        part_dir(ctx, peer, id).exists(),
        "records and files go together"
    );
    held
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_awaited_messages_are_given_up_unless_new_or_being_written() {
    let p = node_with_peer("").await;
    let ctx = p.node.context();
    let staged = upload(&p.node, "extraction.bin", b"some evidence").await;
    let held = HeldAttachment {
        sealed: staged.sealed,
        stored: None,
    };
    let peer = p.peer.id();
    let now = Timestamp::now();
    let old = now.saturating_sub(Duration::from_secs(3600));
    let cutoff = now.saturating_sub(Duration::from_secs(60));
    let stale = awaiting(ctx, peer, &held, old);
    let recent = awaiting(ctx, peer, &held, now);
    let written = awaiting(ctx, peer, &held, old);
    let key = IncomingKey {
        peer,
        message: written,
        index: 0,
    };
    let claim = Claim::take(ctx, key).unwrap();
    // Received and receipted, but a crash left its awaited record behind.
    let receipted = awaiting(ctx, peer, &held, old);
    ctx.store
        .insert_inbound_if_new(&InboundMessage {
            id: receipted,
            sender: peer,
            kind: MessageKind::Request,
            body: comity_tests::request_body("receipted"),
            created_at: old,
            received_at: old,
            envelope: vec![1, 2, 3],
            digest: Digest([7; 32]),
            receipt: vec![4, 5, 6],
        })
        .unwrap();

    assert_eq!(give_up_awaited_since_before(ctx, cutoff), 1);
    assert!(!still_awaited(ctx, peer, stale));
    assert!(still_awaited(ctx, peer, recent));
    assert!(still_awaited(ctx, peer, written), "a stream is writing it");
    let awaited_still = |id| {
        ctx.store
            .all_awaited()
            .unwrap()
            .iter()
            .any(|(_, i, _)| *i == id)
    };
    assert!(
        !awaited_still(receipted),
        "its stale awaited record is cleared"
    );
    assert_eq!(
        ctx.store
            .inbound_attachments(&peer, &receipted)
            .unwrap()
            .len(),
        1,
        "but its attachments' keys are kept"
    );
    assert!(part_dir(ctx, peer, receipted).exists(), "and its files");

    drop(claim);
    assert_eq!(give_up_awaited_since_before(ctx, cutoff), 1);
    assert!(!still_awaited(ctx, peer, written));
    assert!(still_awaited(ctx, peer, recent));
    p.node.shutdown().await.unwrap();
}
