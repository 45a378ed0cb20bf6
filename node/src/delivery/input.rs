//! Reading a frame from a stream as the session core's [`Input`], for the
//! session streams and the attachment streams alike.

use tracing::debug;

use crate::session::receiver::Input;
use crate::transport::wire;

/// Reads the next frame as the session core's input; `None` when the
/// connection went away (not the peer's fault: nothing to record).
pub(super) async fn next_input(
    recv: &mut quinn::RecvStream,
    max_frame: usize,
    stall: std::time::Duration,
) -> Option<Input> {
    next_input_within(recv, max_frame, stall, None).await
}

/// Like [`next_input`]; the wait for a frame's first byte bounded by
/// `idle` if given.
pub(super) async fn next_input_within(
    recv: &mut quinn::RecvStream,
    max_frame: usize,
    stall: std::time::Duration,
    idle: Option<std::time::Duration>,
) -> Option<Input> {
    match wire::read_incoming_within(recv, max_frame, stall, idle).await {
        Ok(wire::Incoming::End) => Some(Input::End),
        Ok(wire::Incoming::Frame(f)) => Some(Input::Frame(f)),
        Ok(wire::Incoming::Oversize { len, id }) => Some(Input::Oversize { len, id }),
        Err(wire::WireError::Decode(e)) => Some(Input::Undecodable(e.to_string())),
        Err(e) => {
            debug!(error = %e, "stream ended");
            None
        }
    }
}
