//! Session frames on a QUIC stream: a 4-byte big-endian length, then the
//! frame. Reads are bounded by a maximum length, grow their buffer only as
//! bytes arrive, and give up on a frame that stops arriving part-way
//! (keep-alives would otherwise hold the stream, and its buffer, forever).

use std::time::Duration;

use comity_protocol::codec::DecodeError;
use comity_protocol::session::{
    chunk_frame_index, peek_envelope_id, SessionFrame, CHUNK_FRAME_HEAD, ENVELOPE_ID_PREFIX,
    LENGTH_PREFIX, MAX_SESSION_FRAME,
};
use comity_protocol::MessageId;

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("stream read: {0}")]
    Read(#[from] quinn::ReadError),
    #[error("stream ended inside a frame")]
    Truncated,
    #[error("no progress for {0:?} inside a frame")]
    Stalled(Duration),
    #[error("stream write: {0}")]
    Write(#[from] quinn::WriteError),
    #[error("bad frame: {0}")]
    Decode(#[from] DecodeError),
    #[error("cannot encode frame: {0}")]
    Encode(String),
}

/// Reads a frame body of `len` bytes and decodes it. An attachment chunk
/// is recognised by its head and its ciphertext read into a buffer of its
/// own, which becomes the frame's: decoding it out of the body copied
/// every chunk once more.
async fn read_frame_body(
    recv: &mut quinn::RecvStream,
    len: usize,
    stall: Duration,
) -> Result<SessionFrame, WireError> {
    let mut body = Vec::new();
    if len >= CHUNK_FRAME_HEAD {
        read_body_into(recv, &mut body, CHUNK_FRAME_HEAD, stall).await?;
        if let Some(index) = chunk_frame_index(&body, len) {
            let mut bytes = Vec::new();
            read_body_into(recv, &mut bytes, len - CHUNK_FRAME_HEAD, stall).await?;
            return Ok(SessionFrame::AttachmentChunk { index, bytes });
        }
    }
    read_body_into(recv, &mut body, len, stall).await?;
    Ok(SessionFrame::from_bytes(&body)?)
}

/// Appends to `out` until it holds `len` bytes, its buffer growing as they
/// arrive (at most twice what was received, never beyond `len`). quinn's
/// chunks are copied, not kept: a chunk keeps its whole datagram's buffer
/// alive, so a peer sending one-byte frames would make a kept list cost
/// far more than the bytes.
async fn read_body_into(
    recv: &mut quinn::RecvStream,
    out: &mut Vec<u8>,
    len: usize,
    stall: Duration,
) -> Result<(), WireError> {
    if out.capacity() < len {
        out.reserve_exact(len.min(64 * 1024).saturating_sub(out.len()));
    }
    while out.len() < len {
        let chunk = tokio::time::timeout(stall, recv.read_chunk(len - out.len(), true))
            .await
            .map_err(|_| WireError::Stalled(stall))??
            .ok_or(WireError::Truncated)?;
        let need = out.len() + chunk.bytes.len();
        if need > out.capacity() {
            // Exact, so a 1 MiB chunk is not given 2 MiB.
            let grown = need.max(out.capacity().saturating_mul(2)).min(len);
            out.reserve_exact(grown - out.len());
        }
        out.extend_from_slice(&chunk.bytes);
    }
    Ok(())
}

/// Reads the length prefix: waits as long as it takes for the first byte
/// (an idle stream is normal), or at most `idle` if given, then at most
/// `stall` for the rest.
async fn read_prefix(
    recv: &mut quinn::RecvStream,
    stall: Duration,
    idle: Option<Duration>,
) -> Result<Option<[u8; LENGTH_PREFIX]>, WireError> {
    let mut buf = Vec::with_capacity(LENGTH_PREFIX);
    let first = recv.read_chunk(LENGTH_PREFIX, true);
    let first = match idle {
        None => first.await?,
        Some(idle) => tokio::time::timeout(idle, first)
            .await
            .map_err(|_| WireError::Stalled(idle))??,
    };
    match first {
        None => return Ok(None),
        Some(c) => buf.extend_from_slice(&c.bytes),
    }
    read_body_into(recv, &mut buf, LENGTH_PREFIX, stall).await?;
    let mut prefix = [0u8; LENGTH_PREFIX];
    prefix.copy_from_slice(&buf);
    Ok(Some(prefix))
}

/// Reads one frame; `Ok(None)` when the peer finished the stream cleanly
/// between frames.
pub async fn read_frame(
    recv: &mut quinn::RecvStream,
    max_len: usize,
    stall: Duration,
) -> Result<Option<SessionFrame>, WireError> {
    let Some(prefix) = read_prefix(recv, stall, None).await? else {
        return Ok(None);
    };
    let len = SessionFrame::length(prefix, max_len)?;
    Ok(Some(read_frame_body(recv, len, stall).await?))
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
/// protocol's ceiling) is skipped rather than refused, so the envelope can
/// be refused by id and the stream kept.
pub async fn read_incoming(
    recv: &mut quinn::RecvStream,
    max_len: usize,
    stall: Duration,
) -> Result<Incoming, WireError> {
    read_incoming_within(recv, max_len, stall, None).await
}

/// Like [`read_incoming`], with the wait for the frame's first byte
/// bounded by `idle` too: for streams whose sender never has a reason to
/// pause between frames (attachment chunks).
pub async fn read_incoming_within(
    recv: &mut quinn::RecvStream,
    max_len: usize,
    stall: Duration,
    idle: Option<Duration>,
) -> Result<Incoming, WireError> {
    let Some(prefix) = read_prefix(recv, stall, idle).await? else {
        return Ok(Incoming::End);
    };
    let len = SessionFrame::length(prefix, MAX_SESSION_FRAME)?;
    if len <= max_len {
        return Ok(Incoming::Frame(read_frame_body(recv, len, stall).await?));
    }
    let mut head = Vec::with_capacity(ENVELOPE_ID_PREFIX);
    read_body_into(recv, &mut head, ENVELOPE_ID_PREFIX.min(len), stall).await?;
    let mut left = len - head.len();
    while left > 0 {
        let chunk = tokio::time::timeout(stall, recv.read_chunk(left, true))
            .await
            .map_err(|_| WireError::Stalled(stall))??
            .ok_or(WireError::Truncated)?;
        left -= chunk.bytes.len().min(left);
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
    // Handed over, not copied: quinn keeps the buffer until it is acked.
    send.write_chunk(encode(frame)?).await?;
    Ok(())
}

fn encode(frame: &SessionFrame) -> Result<bytes::Bytes, WireError> {
    frame
        .to_wire()
        .map(bytes::Bytes::from)
        .map_err(|e| WireError::Encode(e.to_string()))
}

/// Like [`write_frame`], but gives up when the peer takes no byte of the
/// frame for `stall` (its flow-control window stays shut): for streams
/// whose reader has no reason to stop. A slow peer that keeps taking
/// bytes is waited for, however long the frame.
pub async fn write_frame_within(
    send: &mut quinn::SendStream,
    frame: &SessionFrame,
    stall: Duration,
) -> Result<(), WireError> {
    let mut left = [encode(frame)?];
    while !left[0].is_empty() {
        // Cancel-safe: when the timeout fires, nothing of this call was
        // written; a partial write advances `left`.
        match tokio::time::timeout(stall, send.write_chunks(&mut left)).await {
            Ok(written) => {
                if written?.chunks == 1 {
                    break;
                }
            }
            Err(_) => return Err(WireError::Stalled(stall)),
        }
    }
    Ok(())
}

/// An error with its causes, for operators: "connection lost: aborted by
/// peer: the cryptographic handshake failed: …" says more than the first.
pub fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cause = c.source();
    }
    s
}
