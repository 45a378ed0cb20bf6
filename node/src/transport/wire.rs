//! Session frames on a QUIC stream: a 4-byte big-endian length, then the
//! frame. Reads are bounded by the configured maximum before allocating.

use comity_protocol::codec::DecodeError;
use comity_protocol::session::{
    peek_envelope_id, SessionFrame, ENVELOPE_ID_PREFIX, LENGTH_PREFIX, MAX_SESSION_FRAME,
};
use comity_protocol::MessageId;

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

/// What arrived on a stream where envelopes may be larger than accepted.
#[derive(Debug)]
pub enum Incoming {
    Frame(SessionFrame),
    /// A frame longer than allowed, read and discarded without being held
    /// in memory; `id` if it was an envelope whose id could be read.
    Oversize {
        len: usize,
        id: Option<MessageId>,
    },
    /// The peer finished the stream between frames.
    End,
}

/// Like [`read_frame`], but a frame over `max_len` (and within the
/// protocol's ceiling) is skipped in small pieces rather than refused, so
/// the envelope can be refused by id and the stream kept.
pub async fn read_incoming(
    recv: &mut quinn::RecvStream,
    max_len: usize,
) -> Result<Incoming, WireError> {
    let mut prefix = [0u8; LENGTH_PREFIX];
    match recv.read_exact(&mut prefix).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(Incoming::End),
        Err(e) => return Err(e.into()),
    }
    let len = SessionFrame::length(prefix, MAX_SESSION_FRAME)?;
    if len <= max_len {
        let mut buf = vec![0u8; len];
        recv.read_exact(&mut buf).await?;
        return Ok(Incoming::Frame(SessionFrame::from_bytes(&buf)?));
    }
    let mut head = vec![0u8; ENVELOPE_ID_PREFIX.min(len)];
    recv.read_exact(&mut head).await?;
    let mut left = len - head.len();
    let mut sink = vec![0u8; 64 * 1024];
    while left > 0 {
        let n = left.min(sink.len());
        recv.read_exact(&mut sink[..n]).await?;
        left -= n;
    }
    Ok(Incoming::Oversize {
        len,
        id: peek_envelope_id(&head),
    })
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
