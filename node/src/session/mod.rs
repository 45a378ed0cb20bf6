//! The session protocol between two nodes as plain state machines, without
//! IO (as quinn-proto is to quinn): [`sender`] for the dialling side (hello,
//! window, in-flight order, answers, witnessing offers), [`receiver`] for
//! the accepting side (hello, what each frame asks of the node). They hold
//! all per-connection protocol state; `delivery/` only drives them, and
//! their tests need no sockets. No tokio, no quinn here.

pub mod receiver;
pub mod sender;
#[cfg(test)]
mod tests;

use comity_protocol::session::SessionFrame;

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
    }
}
