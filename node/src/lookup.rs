//! Finding a message this node exchanged. A message is named by its peer
//! and its id: ids are random, but a peer may choose one that another peer
//! (or this node) used, and each such message is its own. By id alone a
//! message is found only when that is unambiguous.

use comity_protocol::{MessageId, NodeId};

use crate::store::{InboundMessage, OutboundMessage, Store, StoreError, Way};

/// A message as an operator names it: its id, and its peer when the id
/// alone is ambiguous.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageRef {
    pub id: MessageId,
    pub peer: Option<NodeId>,
    /// Which way it went, when a peer reused the id of a message we sent
    /// it (then even peer and id name two).
    pub way: Option<Way>,
}

impl From<MessageId> for MessageRef {
    fn from(id: MessageId) -> Self {
        MessageRef {
            id,
            peer: None,
            way: None,
        }
    }
}

/// A message found, on the side this node is on.
#[derive(Debug)]
pub enum Found {
    Sent(Box<OutboundMessage>),
    Received(Box<InboundMessage>),
}

impl Found {
    /// The other node of the message.
    pub fn peer(&self) -> NodeId {
        match self {
            Found::Sent(m) => m.peer,
            Found::Received(m) => m.sender,
        }
    }

    pub fn way(&self) -> Way {
        match self {
            Found::Sent(_) => Way::Sent,
            Found::Received(_) => Way::Received,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FindError {
    #[error("no message {0} on this node (see `comity messages`)")]
    NotFound(MessageId),
    #[error("message id {id} names {} messages: {}; name one as PEER/ID (a country code or node id), with :sent or :received if one peer both sent and received it", .found.len(), list(.found))]
    Ambiguous {
        id: MessageId,
        found: Vec<(NodeId, Way)>,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn list(found: &[(NodeId, Way)]) -> String {
    found
        .iter()
        .map(|(p, w)| {
            format!(
                "{p} ({})",
                match w {
                    Way::Sent => "sent",
                    Way::Received => "received",
                }
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The one message `r` names.
pub fn find(store: &Store, r: &MessageRef) -> Result<Found, FindError> {
    let mut found = Vec::new();
    if let Some((m, _)) = store.outbound(&r.id)? {
        if r.peer.is_none_or(|p| p == m.peer) && r.way != Some(Way::Received) {
            found.push(Found::Sent(Box::new(m)));
        }
    }
    match r.peer {
        _ if r.way == Some(Way::Sent) => {}
        Some(p) => {
            if let Some(m) = store.inbound(&p, &r.id)? {
                found.push(Found::Received(Box::new(m)));
            }
        }
        None => found.extend(
            store
                .inbound_by_id(&r.id)?
                .into_iter()
                .map(|m| Found::Received(Box::new(m))),
        ),
    }
    match found.len() {
        0 => Err(FindError::NotFound(r.id)),
        1 => Ok(found.remove(0)),
        _ => Err(FindError::Ambiguous {
            id: r.id,
            found: found.iter().map(|f| (f.peer(), f.way())).collect(),
        }),
    }
}
