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
//! * `s` → the sequence number of the log entry with which this node
//!   switched to the new key of `o` (absent until it did)
//! * `e ‖ old` → [`TransitionStatement`]: each switch this node made, by
//!   the key it left (its earlier ids)
//! * `a ‖ old` → [`AppliedTransition`]: a peer's transition this node
//!   applied, by the key the peer left
//! * `f` → the log's first key, whose origin the log keeps for life

use bincode::{Decode, Encode};
use comity_protocol::transition::TransitionStatement;
use comity_protocol::{NodeId, Timestamp};
use serde::Serialize;

use super::{decode, encode, hex_key, key, node_id_at, Result, Store, StoreError};

fn corrupt(k: &[u8], why: &str) -> StoreError {
    StoreError::Corrupt {
        key: hex_key(k),
        why: why.into(),
    }
}

const PENDING: u8 = b'p';
const REFUSED: u8 = b'r';
const OWN: &[u8] = b"o";
const SWITCHED: &[u8] = b"s";
const EARLIER: u8 = b'e';
const APPLIED: u8 = b'a';
const FIRST_KEY: &[u8] = b"f";

/// A peer's transition this node applied: its pin moved to the new key.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct AppliedTransition {
    pub statement: TransitionStatement,
    pub applied_at: Timestamp,
}

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

    /// Marks this node's own transition as switched to, by the log entry
    /// `seq`, and keeps its statement among the earlier ids' (in the same
    /// commit).
    pub fn set_own_switch(&self, s: &TransitionStatement, seq: u64) -> Result<()> {
        // One batch: another task's commit between the two must not make
        // one durable without the other.
        let mut batch = sled::Batch::default();
        batch.insert(key(EARLIER, &[&s.transition.old.0]), encode(s)?);
        batch.insert(SWITCHED, &seq.to_be_bytes()[..]);
        self.transitions.apply_batch(batch)?;
        Ok(())
    }

    /// The log entry with which this node switched to its own transition's
    /// new key, if it has.
    pub fn own_switch(&self) -> Result<Option<u64>> {
        match self.transitions.get(SWITCHED)? {
            None => Ok(None),
            Some(v) => match <[u8; 8]>::try_from(&v[..]) {
                Ok(b) => Ok(Some(u64::from_be_bytes(b))),
                Err(_) => Err(corrupt(SWITCHED, "bad switch mark")),
            },
        }
    }

    /// Forgets the own transition once a new one replaces it (its switch
    /// stays among the earlier ones).
    pub fn clear_own_transition(&self) -> Result<()> {
        self.transitions.remove(OWN)?;
        self.transitions.remove(SWITCHED)?;
        Ok(())
    }

    /// Every switch this node made, by the key it left.
    pub fn earlier_switches(&self) -> Result<Vec<(NodeId, TransitionStatement)>> {
        self.transitions
            .scan_prefix([EARLIER])
            .map(|kv| {
                let (k, v) = kv?;
                Ok((node_id_at(&k, 1)?, decode(&k, &v)?))
            })
            .collect()
    }

    /// The log's first key, once recorded.
    pub fn log_first_key(&self) -> Result<Option<NodeId>> {
        match self.transitions.get(FIRST_KEY)? {
            None => Ok(None),
            Some(v) => match <[u8; 32]>::try_from(&v[..]) {
                Ok(b) => Ok(Some(NodeId(b))),
                Err(_) => Err(corrupt(FIRST_KEY, "bad first key")),
            },
        }
    }

    pub fn set_log_first_key(&self, id: &NodeId) -> Result<()> {
        self.transitions.insert(FIRST_KEY, &id.0[..])?;
        Ok(())
    }

    /// Records that this node moved a peer's pin by `a` (its old key).
    pub fn record_applied_transition(&self, a: &AppliedTransition) -> Result<()> {
        let old = a.statement.transition.old;
        self.transitions
            .insert(key(APPLIED, &[&old.0]), encode(a)?)?;
        Ok(())
    }

    /// The transition applied from the peer key `old`, if one was.
    pub fn applied_transition(&self, old: &NodeId) -> Result<Option<AppliedTransition>> {
        let k = key(APPLIED, &[&old.0]);
        match self.transitions.get(&k)? {
            Some(v) => Ok(Some(decode(&k, &v)?)),
            None => Ok(None),
        }
    }
}
