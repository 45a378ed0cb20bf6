//! Pinned peers' identity transitions: the statements their certificates
//! carry (see `transport::tls`), checked against the *current* pins by the
//! protocol's [`RotationState`], held until the notice period is over or
//! an operator decides, and recorded in the store, the audit log and an
//! alarm.
//!
//! Whoever presents a certificate has not yet proven it holds its key when
//! the verifiers see it, so nothing here trusts the presenter: only a
//! statement whose own two signatures verify, and whose old key is pinned
//! or was cut out by a repin, is looked at at all (the rest are counted);
//! the verifiers hand those over without waiting (a bounded queue; one
//! dropped when it is full comes again with the peer's next handshake, and
//! is counted), and [`run`] does the checking against the pins and the
//! writing, so that no handshake waits for the store.
//!
//! Once a transition applies, the node moves the pin to the successor
//! (`Node::apply_transition`, driven by the admin layer, which also writes
//! the configuration file).

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Instant;

use comity_protocol::audit::{Actor, AuditKind};
use comity_protocol::rotation::{
    Announced, PendingRotation, RotationPolicy, RotationRefusal, RotationState,
};
use comity_protocol::transition::TransitionStatement;
use comity_protocol::{NodeId, Timestamp};
use sha2::Digest as _;
use tokio::sync::mpsc;
use tracing::warn;

use crate::audit::Fact;
use crate::context::Context;
use crate::peers::Peer;
use crate::refusals::RefusalLimit;
use crate::shutdown::ShutdownSignal;
use crate::store::alarms::AlarmKind;
use crate::store::transitions::{PendingTransition, PendingView, RefusedSuccessor};
use crate::store::StoreError;
use crate::transport::tls::OnStatement;

/// Statements heard and not yet looked at, at most.
const QUEUE: usize = 64;

/// Refused statements remembered as recorded, at most (beyond, each is
/// recorded again within [`RefusalLimit`]).
const REMEMBERED: usize = 4096;

/// The verifiers' end of the queue, and [`run`]'s. `node` is set once the
/// node's context exists (before any handshake is accepted).
pub(crate) fn queue(
    node: Arc<OnceLock<Weak<Context>>>,
) -> (OnStatement, mpsc::Receiver<TransitionStatement>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let on_statement: OnStatement = Arc::new(move |_presented, statement| {
        let Some(ctx) = node.get().and_then(Weak::upgrade) else {
            return;
        };
        let old = statement.transition.old;
        if !ctx.pins.contains(&old) && ctx.peers.cut_out_of(&old).is_none() {
            return;
        }
        if statement.verify(&old).is_err() {
            ctx.statements_unverified.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if tx.try_send(statement).is_err() {
            ctx.statements_dropped.fetch_add(1, Ordering::Relaxed);
        }
    });
    (on_statement, rx)
}

/// Looks at every statement heard until shutdown.
pub(crate) async fn run(
    ctx: Arc<Context>,
    mut heard: mpsc::Receiver<TransitionStatement>,
    mut stop: ShutdownSignal,
) {
    // Each refused statement is recorded once (a peer presents its
    // statement at every handshake), and at most 60 an hour in all.
    let limit = RefusalLimit::new(Instant::now());
    let mut recorded: HashSet<[u8; 32]> = HashSet::new();
    loop {
        let statement = tokio::select! {
            h = heard.recv() => match h {
                Some(h) => h,
                None => return,
            },
            _ = stop.triggered() => return,
        };
        let written = match hear(&ctx, &statement, Timestamp::now()) {
            Ok(Outcome::Pending { .. }) => true,
            Ok(Outcome::Refused {
                key,
                country,
                why,
                alarm,
            }) => {
                // Remembered only once recorded: a refusal the hourly
                // budget held back is recorded when the peer presents it
                // again.
                let digest: [u8; 32] = sha2::Sha256::digest(statement.to_bytes()).into();
                let fresh = !recorded.contains(&digest) && limit.admit(&digest, Instant::now());
                if fresh {
                    if recorded.len() < REMEMBERED {
                        recorded.insert(digest);
                    }
                    record_refusal(&ctx, key, &country, &why, alarm);
                }
                fresh
            }
            Ok(_) => false,
            Err(e) => {
                warn!(error = %e, "cannot record a peer's identity transition");
                false
            }
        };
        if written {
            if let Err(e) = ctx.store.commit().await {
                warn!(error = %e, "cannot make a peer's identity transition durable");
            }
        }
    }
}

/// What a statement was found to be.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Its signatures do not verify: nothing is recorded (counted only).
    Unverified,
    /// Not about a pinned or cut-out key.
    Ignored,
    /// New, pending now: recorded, audited, alarmed.
    Pending {
        country: String,
        pending: Box<PendingTransition>,
    },
    /// The one pending already.
    Again,
    /// A genuine statement (both its keys signed it) that is refused.
    Refused {
        /// The key that signed it as the old one.
        key: NodeId,
        country: String,
        why: String,
        /// Worth an operator's attention: the key may be in other hands.
        alarm: bool,
    },
}

/// Checks `statement`, heard at `now`, against the pins of this moment,
/// and records it if it is a new pending transition (store, audit log,
/// alarm: under the gate, so that no decision comes between).
pub(crate) fn hear(
    ctx: &Context,
    statement: &TransitionStatement,
    now: Timestamp,
) -> Result<Outcome, StoreError> {
    let t = &statement.transition;
    if statement.verify(&t.old).is_err() {
        ctx.statements_unverified.fetch_add(1, Ordering::Relaxed);
        return Ok(Outcome::Unverified);
    }
    let _one = ctx
        .transition_gate
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let Some(peer) = ctx.peer(&t.old) else {
        return Ok(match ctx.peers.cut_out_of(&t.old) {
            // Signed after the repin, it is new evidence that the key is
            // in use by someone (an alarm); one signed before is not.
            Some(country) => Outcome::Refused {
                key: t.old,
                country,
                why: "signed by a key cut out by a repin (presumed stolen)".into(),
                alarm: cut_out_at(ctx, &t.old)?.is_none_or(|at| t.created_at > at),
            },
            None => Outcome::Ignored,
        });
    };
    let country = peer.config.country.to_string();
    let refused = |why: String, alarm: bool| Outcome::Refused {
        key: t.old,
        country: country.clone(),
        why,
        alarm,
    };
    if t.new == ctx.id() {
        return Ok(refused(
            "it names this node's own key as the successor".into(),
            true,
        ));
    }
    if let Some(other) = ctx.peer(&t.new) {
        return Ok(refused(
            format!(
                "it names the key pinned for {} as the successor",
                other.config.country
            ),
            true,
        ));
    }
    // A key some pinned peer had before, or this node had: never another
    // peer's successor (whoever holds a copy of it, an old backup say,
    // would take over what was exchanged under it).
    if ctx.identity().answers_to(&t.new) {
        return Ok(refused(
            "it names a key this node had before as the successor".into(),
            true,
        ));
    }
    if let Some(other) = ctx.peers.pinned_instead_of(&t.new) {
        return Ok(refused(
            format!(
                "it names a key {} had before as the successor",
                other.config.country
            ),
            true,
        ));
    }
    if ctx.store.applied_transition(&t.new)?.is_some() {
        return Ok(refused(
            "it names a key a peer left by an identity transition as the successor".into(),
            true,
        ));
    }
    let mut state = rotation_state(ctx, &peer)?;
    match state.announce(statement, now, policy(ctx, &peer)) {
        Announced::Pending(p) => {
            let pending = PendingTransition {
                statement: p.statement,
                received_at: p.received_at,
                applies_at: p.applies_at,
                accepted_at: None,
            };
            ctx.store.record_pending_transition(&t.old, &pending)?;
            record_pending(ctx, &country, &pending);
            ctx.transitions_changed.notify_one();
            Ok(Outcome::Pending {
                country,
                pending: Box::new(pending),
            })
        }
        Announced::AlreadyPending => Ok(Outcome::Again),
        Announced::Refused(r) => {
            let alarm = matches!(r, RotationRefusal::Conflict { .. });
            Ok(refused(r.to_string(), alarm))
        }
    }
}

fn policy(ctx: &Context, peer: &Peer) -> RotationPolicy {
    if peer.config.confirm_rotation {
        RotationPolicy::OnConfirmation
    } else {
        RotationPolicy::AfterNotice(ctx.config.keys.peer_rotation_notice())
    }
}

/// The peer's pin, what is pending for it, and the keys never to accept
/// as its successor (cut out by a repin, or refused by an operator).
fn rotation_state(ctx: &Context, peer: &Peer) -> Result<RotationState, StoreError> {
    let mut state = RotationState::new(peer.id());
    state.refused = ctx
        .store
        .refused_successors()?
        .into_iter()
        .map(|(id, _)| id)
        .chain(ctx.peers.cut_out_ids())
        .collect();
    state.pending = ctx
        .store
        .pending_transition(&peer.id())?
        .map(|p| PendingRotation {
            statement: p.statement,
            received_at: p.received_at,
            applies_at: p.applies_at,
        });
    Ok(state)
}

/// The statement of `peer`'s pending transition if it applies at `now`
/// (the protocol's [`RotationState::apply`]). The caller holds the gate.
pub(crate) fn due_now(
    ctx: &Context,
    peer: &Peer,
    now: Timestamp,
) -> Result<Option<TransitionStatement>, StoreError> {
    let mut state = rotation_state(ctx, peer)?;
    let statement = state.pending.as_ref().map(|p| p.statement.clone());
    Ok(state.apply(now, false).and(statement))
}

/// A new pending transition in the audit log and an alarm.
fn record_pending(ctx: &Context, country: &str, pending: &PendingTransition) {
    let t = &pending.statement.transition;
    let applies = match pending.applies_at {
        Some(at) => format!(
            "applies at {} ms unless refused (`comity peer refuse-rotation {country}`)",
            at.0
        ),
        None => format!("applies only when accepted (`comity peer accept-rotation {country}`)"),
    };
    let detail = format!(
        "{country} announced an identity transition from {} to {}, effective after {} ms: {}; {applies}",
        t.old, t.new, t.effective_after.0, t.reason
    );
    warn!(peer = %t.old, new = %t.new, country = %country, "a peer announced an identity transition");
    ctx.audit.note(
        Fact::new(AuditKind::IdentityTransition, Actor::Peer)
            .peer(t.old)
            .detail(&detail),
    );
    ctx.audit
        .alarm(t.old, AlarmKind::PeerTransition, "announced", &detail);
}

/// When `key` was cut out, if the store remembers.
fn cut_out_at(ctx: &Context, key: &NodeId) -> Result<Option<Timestamp>, StoreError> {
    Ok(ctx
        .store
        .cut_out_keys()?
        .into_iter()
        .find(|(id, _)| id == key)
        .map(|(_, c)| c.at))
}

/// A refused genuine statement in the audit log (and an alarm if `alarm`).
fn record_refusal(ctx: &Context, key: NodeId, country: &str, why: &str, alarm: bool) {
    warn!(key = %key, country = %country, why = %why, "refused a peer's identity transition");
    let detail = format!(
        "refused an identity transition statement signed by {country}'s key {key}, presented in a TLS certificate: {why}"
    );
    ctx.audit.note(
        Fact::new(AuditKind::IdentityTransition, Actor::Node)
            .peer(key)
            .detail(&detail),
    );
    if alarm {
        ctx.audit
            .alarm(key, AlarmKind::PeerTransition, "refused", &detail);
    }
}

/// Drops the transition pending for `key` (a peer removed, or repinned
/// away from), under the gate so that no decision or new statement about
/// it comes between.
pub(crate) fn drop_pending(ctx: &Context, key: &NodeId) -> Result<(), StoreError> {
    let _one = ctx
        .transition_gate
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    ctx.store.remove_pending_transition(key)
}

/// At start: transitions pending for keys no longer pinned (a peer taken
/// out of the file by hand) are dropped.
pub(crate) fn prune_at_start(ctx: &Context) -> Result<usize, StoreError> {
    let mut dropped = 0;
    for (old, _) in ctx.store.pending_transitions()? {
        if ctx.peer(&old).is_none() {
            ctx.store.remove_pending_transition(&old)?;
            dropped += 1;
        }
    }
    Ok(dropped)
}

/// The transition pending for the pinned key `peer`, if any.
pub(crate) fn pending_for(
    ctx: &Context,
    peer: &NodeId,
) -> Result<Option<PendingTransition>, StoreError> {
    ctx.store.pending_transition(peer)
}

/// Why an operator's decision was not taken.
#[derive(Debug, thiserror::Error)]
pub enum DecisionError {
    #[error("{0} is not pinned")]
    NotPinned(NodeId),
    #[error("no identity transition of {0} is pending")]
    NonePending(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<crate::store::CommitError> for DecisionError {
    fn from(e: crate::store::CommitError) -> Self {
        DecisionError::Store(e.into())
    }
}

/// The pinned peer's country and its pending transition (taken under the
/// gate, for an operator's decision).
fn pinned_pending(
    ctx: &Context,
    peer: &NodeId,
) -> Result<(String, PendingTransition), DecisionError> {
    let p = ctx.peer(peer).ok_or(DecisionError::NotPinned(*peer))?;
    let country = p.config.country.to_string();
    let pending =
        pending_for(ctx, peer)?.ok_or_else(|| DecisionError::NonePending(country.clone()))?;
    Ok((country, pending))
}

/// The operator confirms the peer's pending transition (after a call to
/// its operator): it applies as soon as it is effective, without waiting
/// for the rest of the notice. Durable when this returns.
pub(crate) async fn accept(
    ctx: &Context,
    peer: &NodeId,
    reason: &str,
    now: Timestamp,
) -> Result<PendingView, DecisionError> {
    let accepted = {
        let _one = ctx
            .transition_gate
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let (country, mut pending) = pinned_pending(ctx, peer)?;
        if pending.accepted_at.is_some() {
            // Accepted before: nothing new to record.
            return Ok(PendingView::from(&pending));
        }
        pending.accepted_at = Some(now);
        let effective = pending.statement.transition.effective_after;
        pending.applies_at = Some(now.max(effective));
        ctx.store.record_pending_transition(peer, &pending)?;
        let t = &pending.statement.transition;
        ctx.audit.note(
            Fact::new(AuditKind::IdentityTransition, Actor::Operator)
                .peer(*peer)
                .detail(&format!(
                    "accepted {country}'s identity transition from {} to {}: applies from {} ms: {reason}",
                    t.old,
                    t.new,
                    pending.applies_at.map_or(0, |a| a.0)
                )),
        );
        pending
    };
    ctx.store.commit().await?;
    ctx.transitions_changed.notify_one();
    Ok(PendingView::from(&accepted))
}

/// The operator refuses the peer's pending transition: its successor is
/// never accepted, from this peer or any other. Durable when this returns.
pub(crate) async fn refuse(
    ctx: &Context,
    peer: &NodeId,
    reason: &str,
    now: Timestamp,
) -> Result<NodeId, DecisionError> {
    let new = {
        let _one = ctx
            .transition_gate
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let (country, pending) = pinned_pending(ctx, peer)?;
        let new = pending.statement.transition.new;
        ctx.store.record_refused_successor(
            &new,
            &RefusedSuccessor {
                old: *peer,
                country: country.clone(),
                at: now,
            },
        )?;
        ctx.store.remove_pending_transition(peer)?;
        ctx.audit.note(
            Fact::new(AuditKind::IdentityTransition, Actor::Operator)
                .peer(*peer)
                .detail(&format!(
                    "refused {country}'s identity transition from {peer} to {new}: {reason}"
                )),
        );
        new
    };
    ctx.store.commit().await?;
    Ok(new)
}

#[cfg(test)]
#[path = "transitions_tests.rs"]
mod tests;
