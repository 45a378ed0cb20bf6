//! Identity transitions, in the sled tree `transitions`: those pinned
//! peers announced and this node has not applied yet, the successors an
//! operator refused, and this node's own announced one.
//!
//! Keys:
//! * `p ‖ old` → [`PendingTransition`]: the statement the pinned key `old`
//!   presented, waiting for its notice period or the operator
//! * `r ‖ new` → [`RefusedSuccessor`]: a key an operator refused as a
//!   peer's successor; never accepted from any peer
//! * `o` → this node's own [`TransitionStatement`], while it is presented

use bincode::{Decode, Encode};
use comity_protocol::transition::TransitionStatement;
use comity_protocol::{NodeId, Timestamp};
use serde::Serialize;

use super::{decode, encode, key, node_id_at, Result, Store};

const PENDING: u8 = b'p';
const REFUSED: u8 = b'r';
const OWN: &[u8] = b"o";

/// A peer's verified statement, not applied yet.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct PendingTransition {
    pub statement: TransitionStatement,
    pub received_at: Timestamp,
    /// When it applies without the operator (`None`: only when accepted).
    pub applies_at: Option<Timestamp>,
    /// When the operator accepted it, if they did.
    pub accepted_at: Option<Timestamp>,
}

/// A successor an operator refused.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct RefusedSuccessor {
    /// The key whose statement named it.
    pub old: NodeId,
    /// The peer's country then.
    pub country: String,
    pub at: Timestamp,
}

/// What operators see of a peer's pending transition.
#[derive(Clone, Debug, Serialize)]
pub struct PendingView {
    pub new: NodeId,
    pub reason: String,
    pub created_at: Timestamp,
    pub effective_after: Timestamp,
    pub received_at: Timestamp,
    /// When it applies without the operator; absent: only when accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applies_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accepted_at: Option<Timestamp>,
}

impl From<&PendingTransition> for PendingView {
    fn from(p: &PendingTransition) -> Self {
        let t = &p.statement.transition;
        PendingView {
            new: t.new,
            reason: t.reason.clone(),
            created_at: t.created_at,
            effective_after: t.effective_after,
            received_at: p.received_at,
            applies_at: p.applies_at,
            accepted_at: p.accepted_at,
        }
    }
}

impl Store {
    /// Records (or replaces) the transition pending for the pinned key `old`.
    pub fn record_pending_transition(&self, old: &NodeId, p: &PendingTransition) -> Result<()> {
        self.transitions
            .insert(key(PENDING, &[&old.0]), encode(p)?)?;
        Ok(())
    }

    /// The transition pending for the pinned key `old`, if any.
    pub fn pending_transition(&self, old: &NodeId) -> Result<Option<PendingTransition>> {
        let k = key(PENDING, &[&old.0]);
        match self.transitions.get(&k)? {
            Some(v) => Ok(Some(decode(&k, &v)?)),
            None => Ok(None),
        }
    }

    pub fn remove_pending_transition(&self, old: &NodeId) -> Result<()> {
        self.transitions.remove(key(PENDING, &[&old.0]))?;
        Ok(())
    }

    /// Every pending transition, by the key that announced it.
    pub fn pending_transitions(&self) -> Result<Vec<(NodeId, PendingTransition)>> {
        self.transitions
            .scan_prefix([PENDING])
            .map(|kv| {
                let (k, v) = kv?;
                Ok((node_id_at(&k, 1)?, decode(&k, &v)?))
            })
            .collect()
    }

    /// Records `new` as refused (a key refused once keeps its first record).
    pub fn record_refused_successor(&self, new: &NodeId, r: &RefusedSuccessor) -> Result<()> {
        let k = key(REFUSED, &[&new.0]);
        if !self.transitions.contains_key(&k)? {
            self.transitions.insert(k, encode(r)?)?;
        }
        Ok(())
    }

    pub fn refused_successors(&self) -> Result<Vec<(NodeId, RefusedSuccessor)>> {
        self.transitions
            .scan_prefix([REFUSED])
            .map(|kv| {
                let (k, v) = kv?;
                Ok((node_id_at(&k, 1)?, decode(&k, &v)?))
            })
            .collect()
    }

    /// This node's announced transition, presented to every peer.
    pub fn set_own_transition(&self, s: &TransitionStatement) -> Result<()> {
        self.transitions.insert(OWN, encode(s)?)?;
        Ok(())
    }

    pub fn own_transition(&self) -> Result<Option<TransitionStatement>> {
        match self.transitions.get(OWN)? {
            Some(v) => Ok(Some(decode(OWN, &v)?)),
            None => Ok(None),
        }
    }
}
