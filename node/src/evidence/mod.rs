//! What case officers see of a message's attachments and how they read
//! one out: the listing with each attachment's state and progress
//! ([`listing`]), and the audited, verified retrieval of its plaintext
//! ([`retrieval`]). The files are `crate::attachments`'; this module adds
//! the message they belong to, the transfer progress and the audit log.
//!
//! A received message's record (its inbox entry) appears only when all its
//! attachments are complete; before that the store holds its manifests
//! alone, and the message is found here as [`Holder::Arriving`].

pub mod listing;
pub mod retrieval;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use comity_protocol::{Digest, MessageId, NodeId};

use crate::attachments::{AttachmentDir, Progress};
use crate::audit::AuditLog;
use crate::lookup::{self, FindError, Found, MessageRef};
use crate::store::{HeldAttachment, InboundMessage, OutboundMessage, OutboundStatus, Store, Way};

pub use listing::{AttachmentState, AttachmentView, ListingError, MessageAttachments};
pub use retrieval::{Retrieval, RetrievalAborted, RetrieveError};

/// The parts of a node this module works with.
#[derive(Clone, Copy)]
pub struct Evidence<'a> {
    pub store: &'a Store,
    pub dir: &'a AttachmentDir,
    pub progress: &'a Progress,
    pub audit: &'a Arc<AuditLog>,
    /// Pinned peers: whose arriving messages an id alone may name.
    pub peers: &'a [NodeId],
}

/// Whose message it is, and how far it has come.
#[derive(Debug)]
pub enum Holder {
    Sent {
        message: Box<OutboundMessage>,
        status: OutboundStatus,
    },
    Received(Box<InboundMessage>),
    /// A peer's message whose attachments are still arriving: no record yet.
    Arriving {
        sender: NodeId,
        id: MessageId,
    },
}

/// A message and its attachments as the store holds them.
#[derive(Debug)]
pub struct HeldMessage {
    pub holder: Holder,
    pub attachments: Vec<HeldAttachment>,
}

impl HeldMessage {
    pub fn id(&self) -> MessageId {
        match &self.holder {
            Holder::Sent { message, .. } => message.id,
            Holder::Received(m) => m.id,
            Holder::Arriving { id, .. } => *id,
        }
    }

    pub fn peer(&self) -> NodeId {
        match &self.holder {
            Holder::Sent { message, .. } => message.peer,
            Holder::Received(m) => m.sender,
            Holder::Arriving { sender, .. } => *sender,
        }
    }

    pub fn way(&self) -> Way {
        match self.holder {
            Holder::Sent { .. } => Way::Sent,
            _ => Way::Received,
        }
    }

    /// The envelope's digest, once there is an envelope on this side.
    pub fn envelope_digest(&self) -> Option<Digest> {
        match &self.holder {
            Holder::Sent { message, .. } => message.digest,
            Holder::Received(m) => Some(m.digest),
            Holder::Arriving { .. } => None,
        }
    }
}

impl Evidence<'_> {
    /// The one message `r` names, with its attachments: a record (as
    /// `lookup::find` finds it), or a peer's message still arriving. An id
    /// alone that names both is ambiguous, as two records would be.
    pub fn message(&self, r: &MessageRef) -> Result<HeldMessage, FindError> {
        let found = match lookup::find(self.store, r) {
            Ok(f) => Some(f),
            Err(FindError::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        let arriving = if r.way == Some(Way::Sent) {
            Vec::new()
        } else {
            self.arriving(r, found.as_ref())?
        };
        let held = match (found, arriving.as_slice()) {
            (None, []) => return Err(FindError::NotFound(r.id)),
            (Some(f), []) => self.with_attachments(f)?,
            (None, [sender]) => HeldMessage {
                attachments: self.store.inbound_attachments(sender, &r.id)?,
                holder: Holder::Arriving {
                    sender: *sender,
                    id: r.id,
                },
            },
            (found, _) => {
                let mut all: Vec<(NodeId, Way)> =
                    found.iter().map(|f| (f.peer(), f.way())).collect();
                all.extend(arriving.iter().map(|p| (*p, Way::Received)));
                return Err(FindError::Ambiguous {
                    id: r.id,
                    found: all,
                });
            }
        };
        Ok(held)
    }

    /// Peers with attachments of a message `r.id` arriving and no record
    /// of it yet. Looks at the named peer, or at each pinned one: a key
    /// lookup per peer, never a scan.
    fn arriving(&self, r: &MessageRef, found: Option<&Found>) -> Result<Vec<NodeId>, FindError> {
        let candidates: Vec<NodeId> = match r.peer {
            Some(p) => vec![p],
            None => self.peers.to_vec(),
        };
        let mut out = Vec::new();
        for p in candidates {
            if found.is_some_and(|f| f.way() == Way::Received && f.peer() == p) {
                continue;
            }
            // Held awaiting its attachments (the marker goes when the
            // message is received, which `lookup::find` then sees).
            if self.store.awaited(&p, &r.id)?.is_some() {
                out.push(p);
            }
        }
        Ok(out)
    }

    fn with_attachments(&self, found: Found) -> Result<HeldMessage, FindError> {
        Ok(match found {
            Found::Sent(m) => {
                let status = self
                    .store
                    .outbound_status(&m.id)?
                    .unwrap_or_else(OutboundStatus::queued);
                HeldMessage {
                    attachments: self.store.outbound_attachments(&m.id)?,
                    holder: Holder::Sent { message: m, status },
                }
            }
            Found::Received(m) => HeldMessage {
                attachments: self.store.inbound_attachments(&m.sender, &m.id)?,
                holder: Holder::Received(m),
            },
        })
    }
}
