//! How a node takes a pinned peer's announced identity transition: a pure
//! state machine (no clock, no I/O; the caller passes `now` and stores the
//! state), so that every rule is tested without a network.
//!
//! The rules:
//! - a statement is checked against the peer's *current* pin
//!   ([`TransitionStatement::verify`]); a statement signed by a key the
//!   operators repinned away from, or naming a key they refused, is
//!   refused whatever its signatures say: after a compromise, the stolen
//!   key is exactly the one that would sign one;
//! - a valid statement is not applied when it arrives: it is pending until
//!   the notice period has passed (during which the operator is alerted
//!   and may refuse it), or, under [`RotationPolicy::OnConfirmation`], until
//!   the operator confirms it; never before its own `effective_after`;
//! - one transition is pending at a time: a second, different one from
//!   the same pinned key while one is pending is refused as a conflict
//!   (two successors named by one key means the key is in two hands), and
//!   the pending one is kept for the operator to decide.
//!
//! The node applies it to every statement a peer's certificate carries
//! (`node/src/transitions.rs`), which moves the pin when
//! [`RotationState::apply`] says the transition applies.

use std::time::Duration;

use crate::identity::NodeId;
use crate::time::Timestamp;
use crate::transition::{TransitionError, TransitionStatement};

/// When a verified statement may be applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RotationPolicy {
    /// After this long since it was first received, unless refused.
    AfterNotice(Duration),
    /// Only when the operator confirms it (after a call to the peer).
    OnConfirmation,
}

/// A verified statement waiting to be applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingRotation {
    pub statement: TransitionStatement,
    pub received_at: Timestamp,
    /// When it applies without the operator; `None` under
    /// [`RotationPolicy::OnConfirmation`].
    pub applies_at: Option<Timestamp>,
}

impl PendingRotation {
    pub fn new_id(&self) -> NodeId {
        self.statement.transition.new
    }
}

/// Why a statement was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RotationRefusal {
    #[error("the statement does not verify against the pin: {0}")]
    Invalid(#[from] TransitionError),
    #[error("it names {0} as the successor, a key the operators refused or repinned away from")]
    RefusedSuccessor(NodeId),
    #[error("another transition of this key, to {pending}, is pending: two successors named by one key (is the key in two hands?)")]
    Conflict { pending: NodeId },
}

/// What [`RotationState::announce`] made of a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Announced {
    /// New: pending now (alert the operator, audit it).
    Pending(PendingRotation),
    /// The pending one again (a peer presents it on every session).
    AlreadyPending,
    Refused(RotationRefusal),
}

/// A peer's pin and what is known about its transitions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RotationState {
    /// The id pinned now.
    pub pinned: NodeId,
    /// Ids it rotated from, oldest first (their signatures stay valid for
    /// what they signed before; they sign nothing new).
    pub rotated_from: Vec<NodeId>,
    /// Ids never to accept again: repinned away from after a compromise,
    /// or successors the operator refused.
    pub refused: Vec<NodeId>,
    pub pending: Option<PendingRotation>,
}

impl RotationState {
    pub fn new(pinned: NodeId) -> Self {
        RotationState {
            pinned,
            rotated_from: Vec::new(),
            refused: Vec::new(),
            pending: None,
        }
    }

    /// A statement the peer presented at `now`.
    pub fn announce(
        &mut self,
        statement: &TransitionStatement,
        now: Timestamp,
        policy: RotationPolicy,
    ) -> Announced {
        if let Err(e) = statement.verify(&self.pinned) {
            return Announced::Refused(e.into());
        }
        let new = statement.transition.new;
        if self.refused.contains(&new) || self.rotated_from.contains(&new) {
            return Announced::Refused(RotationRefusal::RefusedSuccessor(new));
        }
        if let Some(p) = &self.pending {
            return if p.statement == *statement {
                Announced::AlreadyPending
            } else {
                Announced::Refused(RotationRefusal::Conflict {
                    pending: p.new_id(),
                })
            };
        }
        let effective = statement.transition.effective_after;
        let applies_at = match policy {
            RotationPolicy::AfterNotice(notice) => Some(now.saturating_add(notice).max(effective)),
            RotationPolicy::OnConfirmation => None,
        };
        let pending = PendingRotation {
            statement: statement.clone(),
            received_at: now,
            applies_at,
        };
        self.pending = Some(pending.clone());
        Announced::Pending(pending)
    }

    /// The pending rotation, if its notice period is over at `now`.
    pub fn due(&self, now: Timestamp) -> Option<&PendingRotation> {
        self.pending
            .as_ref()
            .filter(|p| p.applies_at.is_some_and(|at| now >= at))
    }

    /// Moves the pin to the pending successor, when `confirmed` by the
    /// operator or due at `now`, and not before its `effective_after`.
    /// Returns the new pin.
    pub fn apply(&mut self, now: Timestamp, confirmed: bool) -> Option<NodeId> {
        let p = self.pending.as_ref()?;
        let ready = if confirmed {
            now >= p.statement.transition.effective_after
        } else {
            self.due(now).is_some()
        };
        if !ready {
            return None;
        }
        let new = p.new_id();
        self.rotated_from.push(self.pinned);
        self.pinned = new;
        self.pending = None;
        Some(new)
    }

    /// The operator refuses the pending rotation: its successor is never
    /// accepted from this peer.
    pub fn refuse(&mut self) -> Option<NodeId> {
        let p = self.pending.take()?;
        let new = p.new_id();
        self.refused.push(new);
        Some(new)
    }

    /// The operators' out-of-band repin to `new` (after a compromise, or a
    /// lost key): the current key is refused from now on, even if it signs
    /// a transition, and anything pending is dropped.
    pub fn repin(&mut self, new: NodeId) {
        if new == self.pinned {
            return;
        }
        self.refused.push(self.pinned);
        self.refused.retain(|r| *r != new);
        self.pinned = new;
        self.pending = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use crate::transition::IdentityTransition;

    const T0: Timestamp = Timestamp(1_790_000_000_000);
    const HOUR: Duration = Duration::from_secs(3600);
    const NOTICE: RotationPolicy = RotationPolicy::AfterNotice(Duration::from_secs(72 * 3600));

    fn id(seed: u8) -> Identity {
        Identity::from_seeds(&[seed; 32], &[seed ^ 0xff; 32], T0)
    }

    fn statement(
        old: &Identity,
        new: &Identity,
        effective_after: Timestamp,
    ) -> TransitionStatement {
        IdentityTransition {
            old: old.id(),
            new: new.id(),
            created_at: T0,
            effective_after,
            reason: "routine".into(),
        }
        .sign(old, new)
        .unwrap()
    }

    #[test]
    fn a_valid_statement_waits_out_the_notice_then_moves_the_pin() {
        let (old, new) = (id(1), id(2));
        let mut s = RotationState::new(old.id());
        let st = statement(&old, &new, T0);
        let Announced::Pending(p) = s.announce(&st, T0, NOTICE) else {
            panic!("pending expected");
        };
        assert_eq!(p.applies_at, Some(T0.saturating_add(72 * HOUR)));
        assert_eq!(
            s.announce(&st, T0.saturating_add(HOUR), NOTICE),
            Announced::AlreadyPending
        );
        // Not before the notice has passed.
        assert_eq!(s.apply(T0.saturating_add(71 * HOUR), false), None);
        assert_eq!(s.pinned, old.id());
        assert_eq!(s.apply(T0.saturating_add(72 * HOUR), false), Some(new.id()));
        assert_eq!(
            (s.pinned, s.rotated_from.clone()),
            (new.id(), vec![old.id()])
        );
        // The old key cannot come back by a statement of its own.
        let back = statement(&new, &old, T0);
        assert_eq!(
            s.announce(&back, T0.saturating_add(73 * HOUR), NOTICE),
            Announced::Refused(RotationRefusal::RefusedSuccessor(old.id()))
        );
    }

    #[test]
    fn confirmation_applies_at_once_but_never_before_effective_after() {
        let (old, new) = (id(1), id(2));
        let mut s = RotationState::new(old.id());
        let later = T0.saturating_add(2 * HOUR);
        s.announce(
            &statement(&old, &new, later),
            T0,
            RotationPolicy::OnConfirmation,
        );
        assert_eq!(
            s.due(T0.saturating_add(1000 * HOUR)),
            None,
            "never on its own"
        );
        assert_eq!(s.apply(T0.saturating_add(HOUR), true), None);
        assert_eq!(s.apply(later, true), Some(new.id()));
    }

    #[test]
    fn forged_refused_and_conflicting_statements_are_refused() {
        let (old, new, thief) = (id(1), id(2), id(3));
        let mut s = RotationState::new(old.id());
        // Signed by the new key only: the old signature is the new key's.
        let mut forged = statement(&old, &new, T0);
        forged.old_signature = forged.new_signature;
        assert!(matches!(
            s.announce(&forged, T0, NOTICE),
            Announced::Refused(RotationRefusal::Invalid(TransitionError::BadOldSignature))
        ));
        // By a key that is not the pin.
        assert!(matches!(
            s.announce(&statement(&thief, &new, T0), T0, NOTICE),
            Announced::Refused(RotationRefusal::Invalid(
                TransitionError::ForAnotherNode { .. }
            ))
        ));
        assert_eq!(s.pending, None);
        // Two successors named by one key: the first stays pending.
        s.announce(&statement(&old, &new, T0), T0, NOTICE);
        assert_eq!(
            s.announce(&statement(&old, &thief, T0), T0, NOTICE),
            Announced::Refused(RotationRefusal::Conflict { pending: new.id() })
        );
        // The operator refuses it: that successor is refused for good.
        assert_eq!(s.refuse(), Some(new.id()));
        assert_eq!(
            s.announce(&statement(&old, &new, T0), T0, NOTICE),
            Announced::Refused(RotationRefusal::RefusedSuccessor(new.id()))
        );
    }

    #[test]
    fn after_a_repin_the_old_key_is_refused_even_with_good_signatures() {
        let (old, new, thief) = (id(1), id(2), id(3));
        let mut s = RotationState::new(old.id());
        s.announce(&statement(&old, &thief, T0), T0, NOTICE);
        s.repin(new.id());
        assert_eq!((s.pinned, s.pending.clone()), (new.id(), None));
        // The stolen key signs a transition to the thief's key: it is not
        // the pin any more.
        assert!(matches!(
            s.announce(&statement(&old, &thief, T0), T0, NOTICE),
            Announced::Refused(RotationRefusal::Invalid(
                TransitionError::ForAnotherNode { .. }
            ))
        ));
        // Nor can the new key hand back to it.
        assert_eq!(
            s.announce(&statement(&new, &old, T0), T0, NOTICE),
            Announced::Refused(RotationRefusal::RefusedSuccessor(old.id()))
        );
    }
}
