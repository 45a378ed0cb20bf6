//! What the store keeps, one record type per question an operator asks.

use bincode::{Decode, Encode};
use comity_protocol::message::{Body, MessageKind};
use comity_protocol::session::RejectReason;
use comity_protocol::{Digest, MessageId, NodeId, Timestamp};

/// Where an outgoing message is in its life: queued → sent → delivered
/// (receipt held) or failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
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

impl serde::Serialize for OutboundState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
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

    /// Written to the peer (again): returns the attempt's number.
    pub fn sent(&mut self, at: Timestamp) -> u32 {
        self.state = OutboundState::Sent;
        self.attempts = self.attempts.saturating_add(1);
        self.sent_at = Some(at);
        self.attempts
    }

    /// The peer's verified receipt is held.
    pub fn delivered(&mut self, receipt: Vec<u8>, at: Timestamp) {
        self.state = OutboundState::Delivered;
        self.delivered_at = Some(at);
        self.receipt = Some(receipt);
        self.last_error = None;
    }

    /// Given up on, for `reason`.
    pub fn failed(&mut self, reason: String) {
        self.state = OutboundState::Failed;
        self.last_error = Some(reason);
    }

    /// Not delivered this time, for `error`; it will be tried again.
    pub fn retry_later(&mut self, error: String) {
        self.last_error = Some(error);
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

/// Which way a message went, from this node: with its peer and id it names
/// one message (a peer may reuse the id of a message we sent it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Encode, Decode)]
pub enum Way {
    Sent,
    Received,
}

impl Way {
    pub(crate) fn byte(self) -> u8 {
        match self {
            Way::Sent => b's',
            Way::Received => b'r',
        }
    }
}

/// A held message's delivery state: an outgoing one's [`OutboundState`],
/// or received.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
pub enum HeldState {
    Outbound(OutboundState),
    Received,
}

impl HeldState {
    pub fn name(self) -> &'static str {
        match self {
            HeldState::Outbound(s) => s.name(),
            HeldState::Received => "received",
        }
    }

    /// The names [`HeldState::parse`] takes.
    pub const NAMES: [&'static str; 5] = ["queued", "sent", "delivered", "failed", "received"];

    pub fn parse(name: &str) -> Option<HeldState> {
        Some(match name {
            "queued" => HeldState::Outbound(OutboundState::Queued),
            "sent" => HeldState::Outbound(OutboundState::Sent),
            "delivered" => HeldState::Outbound(OutboundState::Delivered),
            "failed" => HeldState::Outbound(OutboundState::Failed),
            "received" => HeldState::Received,
            _ => return None,
        })
    }

    /// Whether the state can still change (an outgoing message not yet
    /// delivered nor failed).
    pub fn is_final(self) -> bool {
        match self {
            HeldState::Outbound(s) => s.is_final(),
            HeldState::Received => true,
        }
    }
}

impl serde::Serialize for HeldState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
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
    /// The refused bytes' digest; `None` when no envelope arrived whole (a
    /// broken stream).
    pub digest: Option<Digest>,
    pub reason: RejectReason,
    pub detail: String,
}
