//! Each attachment of a message as the operator sees it: the signed
//! manifest (never the key), where it stands, and the progress of a
//! transfer under way.

use comity_protocol::attachment::AttachmentManifest;
use serde::Serialize;

use super::{Evidence, HeldMessage, Holder};
use crate::attachments::{
    AttachmentError, Direction, IncomingKey, IncomingState, TransferKey, TransferProgress,
};
use crate::store::OutboundState;

/// Where an attachment stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttachmentState {
    /// Ours, not yet on its way (the message waits for the peer).
    Queued,
    /// Ours, chunks going out.
    Sending,
    /// Ours, and the peer verified it (its transfer finished, or the
    /// message is delivered: the receipt waits for every attachment).
    Sent,
    /// Ours, and the message was given up.
    Failed,
    /// Theirs, chunks arriving (or not begun).
    Receiving,
    /// Theirs, whole, verified against the signed manifest and durable.
    Complete,
}

impl AttachmentState {
    pub fn name(self) -> &'static str {
        match self {
            AttachmentState::Queued => "queued",
            AttachmentState::Sending => "sending",
            AttachmentState::Sent => "sent",
            AttachmentState::Failed => "failed",
            AttachmentState::Receiving => "receiving",
            AttachmentState::Complete => "complete",
        }
    }

    /// Whether its plaintext can be read out now.
    pub fn is_retrievable(self) -> bool {
        !matches!(self, AttachmentState::Receiving)
    }
}

/// One attachment in a listing. The manifest's fields are at the top
/// level: `name` (raw, as signed: escape it to print it), `media_type`,
/// `size`, `chunk_size`, `tree_root`, `sha256`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AttachmentView {
    pub index: usize,
    #[serde(flatten)]
    pub manifest: AttachmentManifest,
    pub state: AttachmentState,
    /// Plaintext bytes through: sent and verified by the peer, or received
    /// and durable here.
    pub bytes_done: u64,
    /// Bytes per second, smoothed, while a transfer is moving.
    pub rate: Option<f64>,
    pub eta_seconds: Option<u64>,
}

impl Evidence<'_> {
    /// Every attachment of `held`, in order.
    pub fn views(&self, held: &HeldMessage) -> Result<Vec<AttachmentView>, AttachmentError> {
        (0..held.attachments.len())
            .map(|i| self.view(held, i))
            .collect()
    }

    /// Attachment `index` of `held` (which must have it).
    pub fn view(
        &self,
        held: &HeldMessage,
        index: usize,
    ) -> Result<AttachmentView, AttachmentError> {
        let manifest = held.attachments[index].sealed.manifest.clone();
        let direction = match held.holder {
            Holder::Sent { .. } => Direction::Outbound,
            _ => Direction::Inbound,
        };
        let live = self.progress.get(&TransferKey {
            direction,
            peer: held.peer(),
            message: held.id(),
            index,
        });
        let size = manifest.size;
        let (state, bytes_done) = match &held.holder {
            Holder::Sent { status, .. } => match (status.state, live) {
                (OutboundState::Delivered, _) => (AttachmentState::Sent, size),
                (_, Some(p)) if p.finished => (AttachmentState::Sent, size),
                (OutboundState::Failed, p) => {
                    (AttachmentState::Failed, p.map_or(0, |p| p.bytes_done))
                }
                (_, Some(p)) => (AttachmentState::Sending, p.bytes_done),
                (_, None) => (AttachmentState::Queued, 0),
            },
            Holder::Received(_) | Holder::Arriving { .. } => {
                let key = IncomingKey {
                    peer: held.peer(),
                    message: held.id(),
                    index,
                };
                match self.dir.incoming_state(&key, &manifest)? {
                    IncomingState::Complete => (AttachmentState::Complete, size),
                    IncomingState::NotStarted => (
                        AttachmentState::Receiving,
                        live.map_or(0, |p| p.bytes_done.min(size)),
                    ),
                    // The registry is ahead of the disk between two resume
                    // points; the disk is ahead after a restart.
                    IncomingState::Partial { bytes_done, .. } => (
                        AttachmentState::Receiving,
                        live.map_or(bytes_done, |p| p.bytes_done.max(bytes_done).min(size)),
                    ),
                }
            }
        };
        let moving = live.filter(|p| {
            matches!(state, AttachmentState::Sending | AttachmentState::Receiving) && !p.finished
        });
        Ok(AttachmentView {
            index,
            manifest,
            state,
            bytes_done,
            rate: moving.and_then(|p| p.rate),
            eta_seconds: moving.and_then(eta_seconds),
        })
    }
}

fn eta_seconds(p: TransferProgress) -> Option<u64> {
    p.eta().map(|d| d.as_secs_f64().ceil() as u64)
}

/// Why a message's attachments cannot be listed.
#[derive(Debug, thiserror::Error)]
pub enum ListingError {
    #[error(transparent)]
    Find(#[from] crate::lookup::FindError),
    #[error(transparent)]
    Attachment(#[from] AttachmentError),
}

/// A message's attachments, for the API.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MessageAttachments {
    pub id: comity_protocol::MessageId,
    pub peer: comity_protocol::NodeId,
    pub direction: crate::counts::Direction,
    /// Received only: true while the message's attachments are arriving
    /// (it is in the inbox once all are complete).
    pub arriving: bool,
    pub attachments: Vec<AttachmentView>,
}

impl Evidence<'_> {
    /// The listing of the message `r` names.
    pub fn listing(
        &self,
        r: &crate::lookup::MessageRef,
    ) -> Result<MessageAttachments, ListingError> {
        let held = self.message(r)?;
        Ok(MessageAttachments {
            id: held.id(),
            peer: held.peer(),
            direction: match held.way() {
                crate::store::Way::Sent => crate::counts::Direction::Outbound,
                crate::store::Way::Received => crate::counts::Direction::Inbound,
            },
            arriving: matches!(held.holder, Holder::Arriving { .. }),
            attachments: self.views(&held)?,
        })
    }
}
