//! What the store keeps, one record type per question an operator asks.

use bincode::{Decode, Encode};
use comity_protocol::message::{Body, MessageKind};
use comity_protocol::session::RejectReason;
use comity_protocol::{Digest, MessageId, NodeId, Timestamp};

/// Where an outgoing message is in its life (DESIGN.md "Delivery").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Encode, Decode)]
pub enum OutboundState {
    /// Accepted and flushed; not yet written to the peer.
    Queued,
    /// Written to the peer at least once; no receipt yet.
    Sent,
    /// A verified receipt is held.
    Delivered,
    /// Given up: refused by the peer for good, or expired.
    Failed,
}

impl OutboundState {
    pub fn name(self) -> &'static str {
        match self {
            OutboundState::Queued => "queued",
            OutboundState::Sent => "sent",
            OutboundState::Delivered => "delivered",
            OutboundState::Failed => "failed",
        }
    }

    pub fn is_final(self) -> bool {
        matches!(self, OutboundState::Delivered | OutboundState::Failed)
    }
}

/// The immutable part of an outgoing message, written once at acceptance
/// (and once more when it is sealed, if the peer's key was not yet known).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct OutboundMessage {
    pub id: MessageId,
    pub peer: NodeId,
    pub kind: MessageKind,
    pub body: Body,
    pub created_at: Timestamp,
    /// The sealed envelope, exactly as sent (and re-sent).
    pub envelope: Option<Vec<u8>>,
    pub digest: Option<Digest>,
}

/// The changing part of an outgoing message.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct OutboundStatus {
    pub state: OutboundState,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub sent_at: Option<Timestamp>,
    pub delivered_at: Option<Timestamp>,
    /// The framed receipt, verified before it was stored.
    pub receipt: Option<Vec<u8>>,
}

impl OutboundStatus {
    pub fn queued() -> Self {
        OutboundStatus {
            state: OutboundState::Queued,
            attempts: 0,
            last_error: None,
            sent_at: None,
            delivered_at: None,
            receipt: None,
        }
    }
}

/// A message received, opened and validated.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct InboundMessage {
    pub id: MessageId,
    pub sender: NodeId,
    pub kind: MessageKind,
    pub body: Body,
    pub created_at: Timestamp,
    pub received_at: Timestamp,
    pub envelope: Vec<u8>,
    pub digest: Digest,
    /// The receipt this node signed and returns for every copy received.
    pub receipt: Vec<u8>,
}

/// The de-duplication entry for a received (sender, id).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct SeenEntry {
    pub digest: Digest,
    pub receipt: Vec<u8>,
}

/// One step of a request's business life (registered, in execution, …),
/// as sent by this node or received from the peer.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct BusinessEvent {
    pub status: comity_protocol::message::BusinessStatus,
    pub note: Option<String>,
    pub at: Timestamp,
    /// The node that sent the status update.
    pub by: NodeId,
    /// The status-update message that carried it.
    pub update: MessageId,
}

/// An envelope this node refused, kept for operators and auditors.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Rejection {
    pub at: Timestamp,
    /// The peer on the connection it came from.
    pub peer: NodeId,
    pub id: Option<MessageId>,
    pub digest: Digest,
    pub reason: RejectReason,
    pub detail: String,
}
