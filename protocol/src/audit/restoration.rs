//! Restoration statements: a node's signed word that its audit log was
//! restored from a backup ending at size `restored_size`, so entries its
//! witnesses saw after that are lost, and that its log goes on from there.
//!
//! A restored node is a rollback: its witnesses hold checkpoints newer than
//! the backup. Without a statement they refuse every later checkpoint
//! (shrank, inconsistent) for ever. With one, each witness checks it
//! against what it cosigned ([`check_restoration`]), records the gap in its
//! own log, and from then on cosigns checkpoints that extend the restored
//! size. The gap stays visible in both logs; the node is not a fork.
//!
//! Sent in a [`crate::session::SessionFrame::Restoration`] (session
//! protocol 4), beside the continuation checkpoint and a consistency proof
//! from the restored size to it.

use bincode::{Decode, Encode};

use super::checkpoint::{origin_for, Checkpoint};
use super::merkle::{self, ProofError};
use crate::digest::Digest;
use crate::domain;
use crate::identity::{signing_input, verify_signature, Identity, NodeId};
use crate::time::Timestamp;

/// What the node states; signed by `node` with its identity key.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct RestorationStatement {
    /// The restored node (its log's origin is `origin_for(node)`).
    pub node: NodeId,
    /// The size of the log in the backup: its last checkpoint's size.
    pub restored_size: u64,
    /// That checkpoint's root.
    pub restored_root: Digest,
    /// When the backup was taken.
    pub backup_time: Timestamp,
    /// When the restored node first started and signed this.
    pub restored_at: Timestamp,
    /// The node's first checkpoint after the restoration (it holds the
    /// node's own entry saying it was restored), which extends
    /// `restored_size`.
    pub continuation_size: u64,
    pub continuation_root: Digest,
}

/// Bytes of an encoded statement (fixed: ids, digests and integers).
pub const RESTORATION_STATEMENT_BYTES: usize = 32 + 8 + 32 + 8 + 8 + 8 + 32;

impl RestorationStatement {
    /// Ed25519 by `me` (the node) over `RESTORATION_STATEMENT_SIGNATURE ‖
    /// encode(statement)`.
    pub fn sign(&self, me: &Identity) -> Result<[u8; 64], crate::identity::SignError> {
        me.sign(&self.signing_input())
    }

    /// The exact bytes signed.
    pub fn signing_input(&self) -> Vec<u8> {
        signing_input(domain::RESTORATION_STATEMENT_SIGNATURE, self)
    }

    /// Checks the signature by `node` (the key the witness has pinned for
    /// the peer on this connection, not one the statement names).
    pub fn verify(&self, node: &NodeId, signature: &[u8; 64]) -> Result<(), RestorationError> {
        if self.node != *node {
            return Err(RestorationError::WrongNode);
        }
        let key = node
            .verifying_key()
            .map_err(|_| RestorationError::BadSignature)?;
        if verify_signature(&key, &self.signing_input(), signature) {
            Ok(())
        } else {
            Err(RestorationError::BadSignature)
        }
    }

    /// The continuation checkpoint the statement names.
    pub fn continuation(&self) -> Checkpoint {
        Checkpoint {
            origin: origin_for(&self.node),
            size: self.continuation_size,
            root: self.continuation_root,
        }
    }
}

/// What a witness holds about the node, to check a statement against.
#[derive(Clone, Copy, Debug, Default)]
pub struct WitnessRecord<'a> {
    /// The last checkpoint it cosigned for the node (size M), if any.
    pub last: Option<&'a Checkpoint>,
    /// The root of the checkpoint of size `restored_size` it cosigned, if
    /// it cosigned one of that size and still keeps its root.
    pub root_at_restored_size: Option<Digest>,
    /// The last restoration statement it accepted from the node.
    pub accepted: Option<&'a RestorationStatement>,
}

/// A statement the witness accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Accepted {
    /// New: the log was rolled back from `witnessed_size` to
    /// `restored_size`; entries `restored_size + 1 ..= witnessed_size`
    /// (1-based, that is seqs `restored_size .. witnessed_size`) are lost.
    New {
        witnessed_size: u64,
        witnessed_root: Digest,
        /// Whether the witness compared the restored root with one it
        /// cosigned (it had a checkpoint of exactly that size). If not, it
        /// verified only `restored_size <= witnessed_size`: the prefix
        /// relation between the two roots needs the lost entries.
        root_checked: bool,
    },
    /// The statement it accepted last, presented again.
    Repeated,
}

/// Why a witness refuses a statement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestorationError {
    #[error("the restoration statement is not signed by the peer's pinned identity key")]
    BadSignature,
    #[error("the restoration statement names another node than the peer")]
    WrongNode,
    #[error("the continuation checkpoint is not the one the statement names")]
    ContinuationMismatch,
    #[error("the continuation size {continuation} does not extend the restored size {restored}")]
    NotAContinuation { restored: u64, continuation: u64 },
    #[error("restored size {restored} is beyond the size {witnessed} this witness cosigned: nothing it saw was rolled back; prove consistency from {witnessed}")]
    Ahead { restored: u64, witnessed: u64 },
    #[error("restored size {restored} rolls back again behind size {previous} where an earlier restoration accepted on {previous_at} continued")]
    RollsBackAgain {
        restored: u64,
        previous: u64,
        previous_at: Timestamp,
    },
    #[error("the root at restored size {size} differs from the one this witness cosigned at that size: the log forked")]
    Fork { size: u64 },
    #[error("the consistency proof from the restored size {restored} to the continuation {continuation} does not verify: {error}")]
    Inconsistent {
        restored: u64,
        continuation: u64,
        error: ProofError,
    },
}

impl RestorationError {
    /// Evidence that the node misbehaved (rolled back over a restoration,
    /// forked, rewrote its history): worth an alarm. A bad signature or a
    /// malformed statement proves nothing about the node's log; a statement
    /// ahead of the witness is answered by an ordinary consistency proof.
    pub fn is_evidence(&self) -> bool {
        matches!(
            self,
            RestorationError::RollsBackAgain { .. }
                | RestorationError::Fork { .. }
                | RestorationError::Inconsistent { .. }
        )
    }
}

/// The witness's check of `statement` (signature already verified with
/// [`RestorationStatement::verify`]) whose continuation checkpoint, as the
/// node signed it, is `continuation` with `proof` of consistency from the
/// restored size, against what the witness holds.
pub fn check_restoration(
    statement: &RestorationStatement,
    continuation: &Checkpoint,
    proof: &[Digest],
    record: WitnessRecord<'_>,
) -> Result<Accepted, RestorationError> {
    if *continuation != statement.continuation() {
        return Err(RestorationError::ContinuationMismatch);
    }
    let restored = statement.restored_size;
    if statement.continuation_size <= restored {
        return Err(RestorationError::NotAContinuation {
            restored,
            continuation: statement.continuation_size,
        });
    }
    if record.accepted == Some(statement) {
        return Ok(Accepted::Repeated);
    }
    let Some(last) = record.last else {
        return Err(RestorationError::Ahead {
            restored,
            witnessed: 0,
        });
    };
    if restored > last.size {
        return Err(RestorationError::Ahead {
            restored,
            witnessed: last.size,
        });
    }
    // One restoration cannot undo another: the history a witnessed
    // restoration continued from is not rolled back again.
    if let Some(prev) = record.accepted {
        if restored < prev.continuation_size {
            return Err(RestorationError::RollsBackAgain {
                restored,
                previous: prev.continuation_size,
                previous_at: prev.restored_at,
            });
        }
    }
    // Size 0 has one root; any other is not "not comparable" but false.
    let known = if restored == 0 {
        Some(merkle::empty_root())
    } else if restored == last.size {
        Some(last.root)
    } else {
        record.root_at_restored_size
    };
    if known.is_some_and(|root| root != statement.restored_root) {
        return Err(RestorationError::Fork { size: restored });
    }
    merkle::verify_consistency(
        restored,
        statement.continuation_size,
        &statement.restored_root,
        &statement.continuation_root,
        proof,
    )
    .map_err(|error| RestorationError::Inconsistent {
        restored,
        continuation: statement.continuation_size,
        error,
    })?;
    Ok(Accepted::New {
        witnessed_size: last.size,
        witnessed_root: last.root,
        root_checked: known.is_some(),
    })
}

#[cfg(test)]
mod tests;
