//! What happens in a node, as a stream operators and tests can follow.

use comity_protocol::message::MessageKind;
use comity_protocol::session::RejectReason;
use comity_protocol::{MessageId, NodeId};
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    /// Submitted and flushed: from now on it will not be lost.
    Accepted {
        id: MessageId,
        peer: NodeId,
    },
    /// Written to the peer (again, if `attempt` > 1).
    Sent {
        id: MessageId,
        peer: NodeId,
        attempt: u32,
    },
    /// The peer's verified receipt is on disk.
    Delivered {
        id: MessageId,
        peer: NodeId,
    },
    /// Given up on.
    Failed {
        id: MessageId,
        peer: NodeId,
        reason: String,
    },
    /// Received from a peer, stored and flushed; the receipt is on its way.
    Received {
        id: MessageId,
        from: NodeId,
        kind: MessageKind,
    },
    /// An envelope from `peer` was refused.
    Rejected {
        peer: NodeId,
        id: Option<MessageId>,
        reason: RejectReason,
    },
    PeerConnected {
        peer: NodeId,
    },
    PeerDisconnected {
        peer: NodeId,
        error: String,
    },
    /// A key that is not pinned tried to connect and was refused in the
    /// TLS handshake.
    PeerRefused {
        key: NodeId,
    },
}
