//! The entry with which a node's new log, begun under a new identity after
//! its old key was lost, names the old log: its last checkpoint that a
//! witness cosigned. The two logs are linked by the operators who repinned
//! the node (out of band), not by a key: the old key signed no hand-over.
//!
//! The entry is `log-predecessor`, actor `operator`, the log's first
//! (sequence 0); its detail is [`PREDECESSOR_PREFIX`] followed by the old
//! log's checkpoint note (as signed by the old key) in standard base64
//! with padding. A verifier checks the note's signature against the key
//! its origin names and reports the link (docs/audit.md §5.6, step 6b).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::Serialize;

use super::checkpoint::{node_for_origin, open_checkpoint, Checkpoint};
use super::entry::{AuditEntry, AuditKind};
use super::note::Note;
use crate::{Digest, NodeId};

/// How a predecessor entry's detail begins.
pub const PREDECESSOR_PREFIX: &str =
    "begins after a lost identity key; linked by the operators' repin to the log whose last cosigned checkpoint is ";

/// The largest checkpoint note a predecessor entry carries (its base64
/// and the prefix stay within an entry's detail).
pub const MAX_PREDECESSOR_NOTE: usize = 600;

/// The old log, as the new log's first entry names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Predecessor {
    /// The old log's node (its first key).
    pub node: NodeId,
    pub size: u64,
    pub root: Digest,
}

/// Why a checkpoint cannot name a predecessor.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PredecessorError {
    #[error("the note is {0} bytes, above {MAX_PREDECESSOR_NOTE}")]
    TooLong(usize),
    #[error("not a checkpoint note: {0}")]
    NotACheckpoint(String),
    #[error("its origin {0:?} names no node")]
    NoNode(String),
    #[error("not signed by the key its origin names: {0}")]
    BadSignature(String),
}

/// Checks `note` (a checkpoint signed by its log's key) and returns the
/// old log it names.
pub fn predecessor_in(note: &str) -> Result<Predecessor, PredecessorError> {
    if note.len() > MAX_PREDECESSOR_NOTE {
        return Err(PredecessorError::TooLong(note.len()));
    }
    let parsed = Note::parse(note).map_err(|e| PredecessorError::NotACheckpoint(e.to_string()))?;
    let body = Checkpoint::parse_body(parsed.text())
        .map_err(|e| PredecessorError::NotACheckpoint(e.to_string()))?;
    let node = node_for_origin(&body.origin)
        .ok_or_else(|| PredecessorError::NoNode(body.origin.clone()))?;
    let (c, _) = open_checkpoint(note, &body.origin, &node)
        .map_err(|e| PredecessorError::BadSignature(e.to_string()))?;
    Ok(Predecessor {
        node,
        size: c.size,
        root: c.root,
    })
}

/// The detail of the predecessor entry for `note` (checked first).
pub fn predecessor_detail(note: &str) -> Result<String, PredecessorError> {
    predecessor_in(note)?;
    Ok(format!("{PREDECESSOR_PREFIX}{}", BASE64.encode(note)))
}

/// The old log a predecessor entry names: `None` if `entry` is not one;
/// an error (in words) if it is but its checkpoint does not hold.
pub fn predecessor_of(entry: &AuditEntry) -> Option<Result<Predecessor, String>> {
    if entry.kind != AuditKind::LogPredecessor {
        return None;
    }
    let Some(b64) = entry.detail.strip_prefix(PREDECESSOR_PREFIX) else {
        return Some(Err(
            "its detail does not begin as a predecessor entry's".into()
        ));
    };
    Some(
        BASE64
            .decode(b64)
            .map_err(|e| format!("the checkpoint is not base64: {e}"))
            .and_then(|b| String::from_utf8(b).map_err(|_| "the checkpoint is not UTF-8".into()))
            .and_then(|note| predecessor_in(&note).map_err(|e| e.to_string())),
    )
}
