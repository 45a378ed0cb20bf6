//! Audit-log entries: what happened, when, and to which message or peer.
//!
//! An entry holds digests and metadata, never a plaintext body: the log is
//! handed to auditors, who must not learn the content of requests from it.
//! Its leaf bytes (what the Merkle tree hashes) are the entry's frame in
//! the wire codec, so one entry has exactly one leaf.

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use crate::codec::{self, DecodeError, EncodeError, FrameType, FRAME_HEADER_LEN};
use crate::digest::Digest;
use crate::identity::NodeId;
use crate::ids::MessageId;
use crate::time::Timestamp;

/// Longest `detail`: room for reason codes and state names, not for prose.
pub const MAX_DETAIL_BYTES: usize = 1024;

/// Longest leaf: header, the fixed fields (at most 130 bytes) and `detail`.
pub const MAX_LEAF_BYTES: usize = 2048;

/// What happened. The wire encoding is the variant's position, so new kinds
/// are only ever added at the end.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum AuditKind {
    /// The operator's message was accepted and durably queued.
    MessageAccepted,
    /// The message went out on the wire (each attempt).
    MessageSent,
    /// A peer's message was received and durably stored.
    MessageReceived,
    /// This node sent a receipt for a received message.
    ReceiptSent,
    /// A peer's receipt for our message arrived and verified.
    ReceiptReceived,
    /// A message could not be delivered and was given up.
    MessageFailed,
    /// A business status (registered, executed, refused, …) was recorded.
    StatusChanged,
    /// An envelope from the network was refused before storing.
    EnvelopeRejected,
    PeerAdded,
    PeerRemoved,
    /// A connection from or to an unpinned or mismatched key was refused.
    PeerRefused,
    /// This node's or a peer's key changed.
    KeyChanged,
    /// Any other operator action through the admin API.
    AdminAction,
    NodeStarted,
    NodeStopped,
    /// This node cosigned a peer's checkpoint (as a witness).
    CheckpointCosigned,
    /// Witness alarm: a peer's checkpoint is inconsistent with one we
    /// cosigned, or a witness refused ours.
    CheckpointRefused,
    /// This node's store was restored from a backup ending at the size in
    /// the detail: entries its witnesses may hold after it are lost.
    LogRestored,
    /// As its witness, this node accepted a peer's restoration statement:
    /// the detail names the restored size and root, the size and root this
    /// node had cosigned, and so the peer's lost entries.
    PeerRestored,
    /// An attachment of a message accepted from the operator was copied in
    /// (the detail: its index, size, SHA-256 and chunk tree root).
    AttachmentAccepted,
    /// All of an attachment's chunks reached the peer, which verified them.
    AttachmentSent,
    /// A peer's attachment arrived whole, verified and durable.
    AttachmentReceived,
    /// The operator retrieved an attachment's plaintext (evidence read out).
    AttachmentRetrieved,
    /// An identity transition: this node announced one, or a pinned peer
    /// did, or an operator accepted or refused a peer's, or one was
    /// refused as forged or signed by a cut-out key.
    IdentityTransition,
    /// The first entry of a log begun under a new identity after a lost
    /// key: it names the old log's last cosigned checkpoint
    /// ([`super::predecessor`]).
    LogPredecessor,
}

impl AuditKind {
    /// Every kind, in wire order.
    pub const ALL: [AuditKind; 25] = [
        AuditKind::MessageAccepted,
        AuditKind::MessageSent,
        AuditKind::MessageReceived,
        AuditKind::ReceiptSent,
        AuditKind::ReceiptReceived,
        AuditKind::MessageFailed,
        AuditKind::StatusChanged,
        AuditKind::EnvelopeRejected,
        AuditKind::PeerAdded,
        AuditKind::PeerRemoved,
        AuditKind::PeerRefused,
        AuditKind::KeyChanged,
        AuditKind::AdminAction,
        AuditKind::NodeStarted,
        AuditKind::NodeStopped,
        AuditKind::CheckpointCosigned,
        AuditKind::CheckpointRefused,
        AuditKind::LogRestored,
        AuditKind::PeerRestored,
        AuditKind::AttachmentAccepted,
        AuditKind::AttachmentSent,
        AuditKind::AttachmentReceived,
        AuditKind::AttachmentRetrieved,
        AuditKind::IdentityTransition,
        AuditKind::LogPredecessor,
    ];

    /// The JSON name (kebab-case), for tables and filters.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::MessageAccepted => "message-accepted",
            AuditKind::MessageSent => "message-sent",
            AuditKind::MessageReceived => "message-received",
            AuditKind::ReceiptSent => "receipt-sent",
            AuditKind::ReceiptReceived => "receipt-received",
            AuditKind::MessageFailed => "message-failed",
            AuditKind::StatusChanged => "status-changed",
            AuditKind::EnvelopeRejected => "envelope-rejected",
            AuditKind::PeerAdded => "peer-added",
            AuditKind::PeerRemoved => "peer-removed",
            AuditKind::PeerRefused => "peer-refused",
            AuditKind::KeyChanged => "key-changed",
            AuditKind::AdminAction => "admin-action",
            AuditKind::NodeStarted => "node-started",
            AuditKind::NodeStopped => "node-stopped",
            AuditKind::CheckpointCosigned => "checkpoint-cosigned",
            AuditKind::CheckpointRefused => "checkpoint-refused",
            AuditKind::LogRestored => "log-restored",
            AuditKind::PeerRestored => "peer-restored",
            AuditKind::AttachmentAccepted => "attachment-accepted",
            AuditKind::AttachmentSent => "attachment-sent",
            AuditKind::AttachmentReceived => "attachment-received",
            AuditKind::AttachmentRetrieved => "attachment-retrieved",
            AuditKind::IdentityTransition => "identity-transition",
            AuditKind::LogPredecessor => "log-predecessor",
        }
    }
}

impl std::fmt::Display for AuditKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who caused the event. A peer is named in [`AuditEntry::peer`].
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Actor {
    /// The node on its own (delivery engine, start-up, witnessing).
    Node,
    /// A person through the admin API or CLI.
    Operator,
    /// A remote node.
    Peer,
}

impl Actor {
    pub fn as_str(self) -> &'static str {
        match self {
            Actor::Node => "node",
            Actor::Operator => "operator",
            Actor::Peer => "peer",
        }
    }
}

/// One event in the log. Leaf `seq` of the tree is the entry with this
/// `seq`: the node assigns `seq` = the tree size before the append.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    pub seq: u64,
    pub time: Timestamp,
    pub kind: AuditKind,
    pub actor: Actor,
    pub peer: Option<NodeId>,
    pub message_id: Option<MessageId>,
    /// [`crate::envelope::envelope_digest`] of the envelope concerned.
    pub envelope_digest: Option<Digest>,
    /// Short machine-readable facts: a reason code, a business state name,
    /// a refused key. At most [`MAX_DETAIL_BYTES`], no control characters.
    pub detail: String,
}

/// Why an entry cannot be logged or a leaf is not an entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error(
        "detail is {len} bytes, more than the limit of {max}: audit entries hold facts, not text"
    )]
    DetailTooLong { len: usize, max: usize },
    #[error("detail has a control character at byte {position}: details must print on one line")]
    DetailControlCharacter { position: usize },
    #[error("cannot encode audit entry: {0}")]
    Encode(#[from] EncodeError),
    #[error("leaf is not an audit entry: {0}")]
    Decode(#[from] DecodeError),
}

impl AuditEntry {
    /// Checks the bounds every logged entry must meet.
    pub fn validate(&self) -> Result<(), EntryError> {
        if self.detail.len() > MAX_DETAIL_BYTES {
            return Err(EntryError::DetailTooLong {
                len: self.detail.len(),
                max: MAX_DETAIL_BYTES,
            });
        }
        if let Some((position, _)) = self.detail.char_indices().find(|(_, c)| c.is_control()) {
            return Err(EntryError::DetailControlCharacter { position });
        }
        Ok(())
    }

    /// The exact bytes the Merkle tree hashes: `encode_frame(AuditEntry, self)`.
    pub fn to_leaf(&self) -> Result<Vec<u8>, EntryError> {
        self.validate()?;
        Ok(codec::encode_frame(FrameType::AuditEntry, self)?)
    }

    /// Decodes a leaf (at most [`MAX_LEAF_BYTES`]) and checks its bounds.
    pub fn from_leaf(leaf: &[u8]) -> Result<Self, EntryError> {
        let entry: AuditEntry =
            codec::decode_frame::<_, MAX_LEAF_BYTES>(FrameType::AuditEntry, leaf)?;
        entry.validate()?;
        Ok(entry)
    }

    /// The Merkle leaf hash of [`Self::to_leaf`].
    pub fn leaf_hash(&self) -> Result<Digest, EntryError> {
        Ok(super::merkle::leaf_hash(&self.to_leaf()?))
    }
}

// The leaf limit must hold the largest valid entry.
const _: () = assert!(
    FRAME_HEADER_LEN + 8 + 8 + 4 + 4 + 33 + 17 + 33 + 8 + MAX_DETAIL_BYTES <= MAX_LEAF_BYTES
);

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> AuditEntry {
        AuditEntry {
            seq: 3,
            time: Timestamp(1_700_000_000_000),
            kind: AuditKind::StatusChanged,
            actor: Actor::Operator,
            peer: None,
            message_id: Some(MessageId([7; 16])),
            envelope_digest: Some(Digest([9; 32])),
            detail: "executed".into(),
        }
    }

    #[test]
    fn leaf_round_trip_and_layout() {
        let e = entry();
        let leaf = e.to_leaf().unwrap();
        assert_eq!(&leaf[..6], b"CMTY\x01\x06");
        assert_eq!(&leaf[6..14], &3u64.to_le_bytes());
        assert_eq!(AuditEntry::from_leaf(&leaf).unwrap(), e);
    }

    #[test]
    fn detail_bounds() {
        let mut e = entry();
        e.detail = "x".repeat(MAX_DETAIL_BYTES);
        let leaf = e.to_leaf().unwrap();
        assert!(leaf.len() <= MAX_LEAF_BYTES);
        e.detail.push('x');
        assert!(matches!(e.to_leaf(), Err(EntryError::DetailTooLong { .. })));
        e.detail = "a\nb".into();
        assert_eq!(
            e.to_leaf(),
            Err(EntryError::DetailControlCharacter { position: 1 })
        );
        // A leaf whose detail breaks the rules is refused on decode too.
        let raw = codec::encode_frame(FrameType::AuditEntry, &e).unwrap();
        assert!(AuditEntry::from_leaf(&raw).is_err());
    }

    #[test]
    fn kind_names_match_serde() {
        for k in AuditKind::ALL {
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.as_str()));
        }
        for (i, k) in AuditKind::ALL.iter().enumerate() {
            assert_eq!(codec::encode(k).unwrap(), (i as u32).to_le_bytes());
        }
        for a in [Actor::Node, Actor::Operator, Actor::Peer] {
            assert_eq!(
                serde_json::to_string(&a).unwrap(),
                format!("\"{}\"", a.as_str())
            );
        }
    }
}
