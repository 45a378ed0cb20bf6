//! Session frames on a QUIC stream: a 4-byte big-endian length, then the
//! frame. Reads are bounded by the configured maximum before allocating.

use comity_protocol::codec::DecodeError;
use comity_protocol::session::{SessionFrame, LENGTH_PREFIX};

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("stream read: {0}")]
    Read(#[from] quinn::ReadExactError),
    #[error("stream write: {0}")]
    Write(#[from] quinn::WriteError),
    #[error("bad frame: {0}")]
    Decode(#[from] DecodeError),
    #[error("cannot encode frame: {0}")]
    Encode(String),
}

/// Reads one frame; `Ok(None)` when the peer finished the stream cleanly
/// between frames.
pub async fn read_frame(
    recv: &mut quinn::RecvStream,
    max_len: usize,
) -> Result<Option<SessionFrame>, WireError> {
    let mut prefix = [0u8; LENGTH_PREFIX];
    match recv.read_exact(&mut prefix).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = SessionFrame::length(prefix, max_len)?;
    let mut buf = vec![0u8; len];
    recv.read_exact(&mut buf).await?;
    Ok(Some(SessionFrame::from_bytes(&buf)?))
}

pub async fn write_frame(
    send: &mut quinn::SendStream,
    frame: &SessionFrame,
) -> Result<(), WireError> {
    let bytes = frame
        .to_wire()
        .map_err(|e| WireError::Encode(e.to_string()))?;
    send.write_all(&bytes).await?;
    Ok(())
}
