//! Identity transitions: a node's statement, signed by its old identity
//! key and by its new one, that the new key takes over from the old. Both
//! signatures are needed: the old one says the node (or whoever holds its
//! key) hands over, the new one that the holder of the new key accepts
//! — so a statement cannot name someone else's key as the successor.
//!
//! A statement proves possession of both keys, nothing more: a thief of
//! the old key can sign one for a key of its own. That is why a peer
//! applies a transition only after a notice period, or when its operator
//! confirms it out of band (the node's policy, not this crate's).

use bincode::{Decode, Encode};

use crate::codec::{self, DecodeError, FrameType};
use crate::domain;
use crate::identity::{signing_input, verify_signature, Identity, KeyError, NodeId};
use crate::time::Timestamp;

/// The longest reason, in bytes.
pub const MAX_REASON_BYTES: usize = 200;
/// A framed statement is at most this long.
pub const MAX_TRANSITION_BYTES: usize = 512;

/// What both keys sign.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct IdentityTransition {
    pub old: NodeId,
    pub new: NodeId,
    /// When it was signed (the old node's clock).
    pub created_at: Timestamp,
    /// Peers accept the new key for this node from then on (a node may
    /// announce a transition before it switches).
    pub effective_after: Timestamp,
    /// Why, in words (printable, at most [`MAX_REASON_BYTES`]).
    pub reason: String,
}

/// The transition and its two Ed25519 signatures.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct TransitionStatement {
    pub transition: IdentityTransition,
    pub old_signature: [u8; 64],
    pub new_signature: [u8; 64],
}

/// Why a statement was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("the statement is about {found}, not the pinned {expected}")]
    ForAnotherNode { expected: NodeId, found: NodeId },
    #[error("the old and the new key are the same")]
    SameKey,
    #[error("the new key is not a valid identity key: {0}")]
    BadNewKey(KeyError),
    #[error("the old key's signature does not verify")]
    BadOldSignature,
    #[error("the new key's signature does not verify")]
    BadNewSignature,
    #[error("it takes effect before it was made")]
    EffectiveBeforeCreated,
    #[error("the reason is {len} bytes (at most {MAX_REASON_BYTES}) or holds control characters")]
    BadReason { len: usize },
    #[error("not a transition statement: {0}")]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Sign(#[from] crate::identity::SignError),
}

impl IdentityTransition {
    fn signing_input(&self) -> Vec<u8> {
        signing_input(domain::IDENTITY_TRANSITION_SIGNATURE, self)
    }

    fn check_fields(&self) -> Result<(), TransitionError> {
        if self.old == self.new {
            return Err(TransitionError::SameKey);
        }
        if self.effective_after < self.created_at {
            return Err(TransitionError::EffectiveBeforeCreated);
        }
        let len = self.reason.len();
        if len > MAX_REASON_BYTES || self.reason.chars().any(char::is_control) {
            return Err(TransitionError::BadReason { len });
        }
        Ok(())
    }

    /// Signs it with `old` (whose id must be `self.old`) and `new` (`self.new`).
    pub fn sign(
        self,
        old: &Identity,
        new: &Identity,
    ) -> Result<TransitionStatement, TransitionError> {
        if old.id() != self.old {
            return Err(TransitionError::ForAnotherNode {
                expected: self.old,
                found: old.id(),
            });
        }
        if new.id() != self.new {
            return Err(TransitionError::BadNewSignature);
        }
        self.check_fields()?;
        let input = self.signing_input();
        Ok(TransitionStatement {
            old_signature: old.sign(&input)?,
            new_signature: new.sign(&input)?,
            transition: self,
        })
    }
}

impl TransitionStatement {
    /// The check a peer (or an auditor) makes, with the id it has pinned:
    /// the statement is about that id, the fields are well formed, the new
    /// key is a valid identity key, and both keys signed.
    pub fn verify(&self, pinned: &NodeId) -> Result<(), TransitionError> {
        let t = &self.transition;
        if t.old != *pinned {
            return Err(TransitionError::ForAnotherNode {
                expected: *pinned,
                found: t.old,
            });
        }
        t.check_fields()?;
        let old = t
            .old
            .verifying_key()
            .map_err(|_| TransitionError::BadOldSignature)?;
        let new = t.new.verifying_key().map_err(TransitionError::BadNewKey)?;
        let input = t.signing_input();
        if !verify_signature(&old, &input, &self.old_signature) {
            return Err(TransitionError::BadOldSignature);
        }
        if !verify_signature(&new, &input, &self.new_signature) {
            return Err(TransitionError::BadNewSignature);
        }
        Ok(())
    }

    /// The framed bytes (frame type 7).
    pub fn to_bytes(&self) -> Vec<u8> {
        // Fixed-size fields and a bounded string: encoding cannot fail.
        codec::encode_frame(FrameType::IdentityTransition, self).unwrap_or_default()
    }

    /// Decodes a framed statement (not yet verified).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TransitionError> {
        Ok(codec::decode_frame::<_, MAX_TRANSITION_BYTES>(
            FrameType::IdentityTransition,
            bytes,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (Identity, Identity, Identity) {
        let t = Timestamp(1_790_000_000_000);
        (
            Identity::from_seeds(&[1; 32], &[2; 32], t),
            Identity::from_seeds(&[3; 32], &[4; 32], t),
            Identity::from_seeds(&[5; 32], &[6; 32], t),
        )
    }

    fn transition(old: &Identity, new: &Identity) -> IdentityTransition {
        IdentityTransition {
            old: old.id(),
            new: new.id(),
            created_at: Timestamp(1_790_000_000_000),
            effective_after: Timestamp(1_790_000_060_000),
            reason: "scheduled rotation".into(),
        }
    }

    #[test]
    fn a_statement_signed_by_both_keys_verifies_and_round_trips() {
        let (old, new, _) = ids();
        let s = transition(&old, &new).sign(&old, &new).unwrap();
        assert_eq!(s.verify(&old.id()), Ok(()));
        let bytes = s.to_bytes();
        assert!(bytes.len() <= MAX_TRANSITION_BYTES, "{}", bytes.len());
        assert_eq!(TransitionStatement::from_bytes(&bytes).unwrap(), s);
    }

    #[test]
    fn forged_or_altered_statements_are_refused() {
        let (old, new, thief) = ids();
        let good = transition(&old, &new).sign(&old, &new).unwrap();
        // Another node's statement.
        assert!(matches!(
            good.verify(&thief.id()),
            Err(TransitionError::ForAnotherNode { .. })
        ));
        // Signed by the new key only: the old signature is the new key's.
        let mut new_only = good.clone();
        new_only.old_signature = new_only.new_signature;
        assert_eq!(
            new_only.verify(&old.id()),
            Err(TransitionError::BadOldSignature)
        );
        // Naming a successor that did not sign (an unpinned key's claim).
        let mut other_successor = good.clone();
        other_successor.transition.new = thief.id();
        assert_eq!(
            other_successor.verify(&old.id()),
            Err(TransitionError::BadOldSignature)
        );
        let mut t = transition(&old, &thief);
        t.reason = "stolen".into();
        let by_thief = t.sign(&old, &thief).unwrap();
        let mut swapped = by_thief.clone();
        swapped.new_signature = good.new_signature;
        assert_eq!(
            swapped.verify(&old.id()),
            Err(TransitionError::BadNewSignature)
        );
        // Any field changed after signing.
        let mut later = good.clone();
        later.transition.effective_after = Timestamp(1_800_000_000_000);
        assert_eq!(
            later.verify(&old.id()),
            Err(TransitionError::BadOldSignature)
        );
        // Every bit of the framed bytes matters.
        let bytes = good.to_bytes();
        for bit in 0..bytes.len() * 8 {
            let mut b = bytes.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            if let Ok(s) = TransitionStatement::from_bytes(&b) {
                assert!(s.verify(&old.id()).is_err(), "bit {bit}");
            }
        }
    }

    #[test]
    fn malformed_transitions_are_not_signed() {
        let (old, new, _) = ids();
        let mut same = transition(&old, &new);
        same.new = old.id();
        assert_eq!(same.sign(&old, &old), Err(TransitionError::SameKey));
        let mut early = transition(&old, &new);
        early.effective_after = Timestamp(0);
        assert_eq!(
            early.sign(&old, &new),
            Err(TransitionError::EffectiveBeforeCreated)
        );
        let mut long = transition(&old, &new);
        long.reason = "x".repeat(MAX_REASON_BYTES + 1);
        assert!(matches!(
            long.sign(&old, &new),
            Err(TransitionError::BadReason { .. })
        ));
        let mut control = transition(&old, &new);
        control.reason = "line\nbreak".into();
        assert!(matches!(
            control.sign(&old, &new),
            Err(TransitionError::BadReason { .. })
        ));
    }
}
