#![allow(clippy::unwrap_used)]

use comity_protocol::transition::IdentityTransition;
use comity_protocol::Identity;
use std::sync::atomic::Ordering;

use super::*;
use crate::node::test_node::node_with_peer;

fn statement(old: &Identity, new: &Identity, reason: &str) -> TransitionStatement {
    let now = Timestamp::now();
    IdentityTransition {
        old: old.id(),
        new: new.id(),
        created_at: now,
        effective_after: now,
        reason: reason.into(),
    }
    .sign(old, new)
    .unwrap()
}

#[tokio::test]
async fn a_pinned_peers_statement_is_pending_once_and_checked_against_the_pin() {
    let p = node_with_peer("").await;
    let ctx = p.node.context();
    let (old, new, third) = (
        &p.peer,
        Identity::generate(Timestamp::now()),
        Identity::generate(Timestamp::now()),
    );
    let now = Timestamp::now();
    let s = statement(old, &new, "routine");
    // Forged: the new key's signature in the old one's place. Counted,
    // never recorded.
    let mut forged = s.clone();
    forged.old_signature = forged.new_signature;
    assert_eq!(hear(ctx, &forged, now).unwrap(), Outcome::Unverified);
    assert_eq!(ctx.statements_unverified.load(Ordering::Relaxed), 1);
    assert_eq!(pending_for(ctx, &old.id()).unwrap(), None);
    // Genuine, but naming this node's own key as the successor.
    let mine = statement(old, &ctx.identity(), "take over");
    let Outcome::Refused { why, alarm, .. } = hear(ctx, &mine, now).unwrap() else {
        panic!("a statement naming this node is refused");
    };
    assert!(why.contains("own key") && alarm, "{why}");
    // The genuine one: pending, with the notice period of the config.
    let Outcome::Pending { pending, country } = hear(ctx, &s, now).unwrap() else {
        panic!("pending expected");
    };
    assert_eq!(country, "BO");
    let notice = ctx.config.keys.peer_rotation_notice();
    assert_eq!(pending.applies_at, Some(now.saturating_add(notice)));
    assert_eq!(pending_for(ctx, &old.id()).unwrap(), Some(*pending));
    // Again: nothing new.
    assert_eq!(hear(ctx, &s, now).unwrap(), Outcome::Again);
    // A second successor named by the same key: a conflict.
    let other = statement(old, &third, "other");
    let Outcome::Refused { why, alarm, .. } = hear(ctx, &other, now).unwrap() else {
        panic!("a conflicting statement is refused");
    };
    assert!(why.contains("two successors") && alarm, "{why}");
}

#[tokio::test]
async fn accepting_ends_the_notice_and_a_refused_successor_is_never_taken_again() {
    let p = node_with_peer("").await;
    let ctx = p.node.context();
    let new = Identity::generate(Timestamp::now());
    let s = statement(&p.peer, &new, "routine");
    let now = Timestamp::now();
    hear(ctx, &s, now).unwrap();
    let view = accept(ctx, &p.peer.id(), "new id read out by phone", now)
        .await
        .unwrap();
    assert_eq!(view.accepted_at, Some(now));
    assert_eq!(view.applies_at, Some(now.max(s.transition.effective_after)));

    assert_eq!(
        refuse(ctx, &p.peer.id(), "not confirmed by phone", now)
            .await
            .unwrap(),
        new.id()
    );
    assert_eq!(pending_for(ctx, &p.peer.id()).unwrap(), None);
    assert!(matches!(
        refuse(ctx, &p.peer.id(), "again", now).await,
        Err(DecisionError::NonePending(_))
    ));
    let Outcome::Refused { why, .. } = hear(ctx, &s, now).unwrap() else {
        panic!("a refused successor is refused");
    };
    assert!(why.contains("refused"), "{why}");
    // A stranger's statement: nothing to decide.
    let stranger = Identity::generate(Timestamp::now());
    let theirs = statement(&stranger, &new, "x");
    assert_eq!(hear(ctx, &theirs, now).unwrap(), Outcome::Ignored);
    assert!(matches!(
        accept(ctx, &stranger.id(), "x", now).await,
        Err(DecisionError::NotPinned(_))
    ));
}

#[tokio::test]
async fn a_key_this_node_or_a_peer_had_before_is_never_a_successor() {
    let p = node_with_peer("").await;
    let ctx = p.node.context();
    let now = Timestamp::now();
    // This node switched from a key it had: never a peer's successor.
    let had = Identity::generate(now);
    ctx.set_identity(Arc::new(had.handed_over_to(Identity::generate(now))));
    let s = statement(&p.peer, &had, "take over the key it had");
    let Outcome::Refused { why, alarm, .. } = hear(ctx, &s, now).unwrap() else {
        panic!("a key this node had is refused as a successor");
    };
    assert!(why.contains("this node had before") && alarm, "{why}");
    // A key another peer left by an identity transition.
    let left = Identity::generate(now);
    let successor = Identity::generate(now);
    ctx.store
        .record_applied_transition(&crate::store::transitions::AppliedTransition {
            statement: statement(&left, &successor, "routine"),
            applied_at: now,
        })
        .unwrap();
    let s = statement(&p.peer, &left, "take over the key it left");
    let Outcome::Refused { why, alarm, .. } = hear(ctx, &s, now).unwrap() else {
        panic!("a key a peer left is refused as a successor");
    };
    assert!(
        why.contains("left by an identity transition") && alarm,
        "{why}"
    );
    assert_eq!(pending_for(ctx, &p.peer.id()).unwrap(), None);
}
