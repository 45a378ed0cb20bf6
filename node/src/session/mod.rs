//! The session protocol between two nodes as plain state machines, without
//! IO (as quinn-proto is to quinn): [`sender`] for the dialling side (hello,
//! window, in-flight order, answers, witnessing offers), [`receiver`] for
//! the accepting side (hello, what each frame asks of the node),
//! [`attachment`] for both ends of an attachment stream. They hold
//! all per-connection protocol state; `delivery/` only drives them, and
//! their tests need no sockets. No tokio, no quinn here.

pub mod attachment;
pub mod receiver;
pub mod sender;
#[cfg(test)]
mod tests;

use comity_protocol::session::SessionFrame;

/// The session protocol a connection speaks (its ALPN, see
/// `transport::tls::ALPNS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SessionVersion {
    /// `comity/2`.
    V2,
    /// `comity/3`: `ResentEnvelope` may be sent.
    V3,
    /// `comity/4`: `Restoration` may be sent.
    V4,
    /// `comity/5`: messages with attachments (`AttachmentsWanted` and
    /// attachment streams).
    V5,
}

impl SessionVersion {
    /// The version of a negotiated ALPN; a connection without one (or with
    /// one unknown, which the handshake does not allow) is taken as 2, the
    /// version that sends nothing new.
    pub fn of_alpn(alpn: Option<&[u8]>) -> SessionVersion {
        match alpn {
            Some(b"comity/5") => SessionVersion::V5,
            Some(b"comity/4") => SessionVersion::V4,
            Some(b"comity/3") => SessionVersion::V3,
            _ => SessionVersion::V2,
        }
    }
}

/// Text from a peer (a refusal's detail), bounded before it is kept,
/// logged or shown.
pub fn bounded(text: &str) -> String {
    text.chars().take(MAX_PEER_TEXT).collect()
}

/// Characters of a peer's text kept (see [`bounded`]).
pub const MAX_PEER_TEXT: usize = 200;

/// A frame's name, for errors.
fn frame_name(frame: &SessionFrame) -> &'static str {
    match frame {
        SessionFrame::Hello { .. } => "hello",
        SessionFrame::Envelope(_) => "envelope",
        SessionFrame::Receipt(_) => "receipt",
        SessionFrame::Rejected { .. } => "rejected",
        SessionFrame::Checkpoint { .. } => "checkpoint",
        SessionFrame::Cosigned { .. } => "cosigned",
        SessionFrame::CheckpointRefused { .. } => "checkpoint-refused",
        SessionFrame::ResentEnvelope { .. } => "resent-envelope",
        SessionFrame::Restoration { .. } => "restoration",
        SessionFrame::AttachmentsWanted { .. } => "attachments-wanted",
        SessionFrame::AttachmentOffer { .. } => "attachment-offer",
        SessionFrame::AttachmentFrom { .. } => "attachment-from",
        SessionFrame::AttachmentTable(_) => "attachment-table",
        SessionFrame::AttachmentChunk { .. } => "attachment-chunk",
        SessionFrame::AttachmentComplete { .. } => "attachment-complete",
        SessionFrame::AttachmentRefused { .. } => "attachment-refused",
    }
}
