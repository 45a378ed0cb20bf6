//! Our attachments, the sending side (session protocol 5): when the peer
//! answers an envelope with `AttachmentsWanted`, each attachment it still
//! needs goes on a stream of its own, from the chunk it names, read from
//! our stored copy (ciphertext already: nothing is encrypted again). The
//! session's window is free meanwhile, so small messages go on.
//!
//! A refusal for now (no room, busy, a disk error, a bad chunk) is offered
//! again on the same connection after a pause; a broken protocol or a
//! refusal for good ends the session (the envelope is sent again on the
//! next, and the peer says again where each attachment resumes).
//!
//! After a bad-chunk refusal every chunk of that attachment is checked
//! against our own table before it goes: a copy damaged on our disk would
//! otherwise be offered again and again, and the peer would cut us off.
//! A chunk of ours that fails fails the message (`TransferError::Damaged`).

use std::sync::Arc;
use std::time::Duration;

use comity_protocol::attachment::Opener;
use comity_protocol::audit::entry::{Actor, AuditKind};
use comity_protocol::session::{AttachmentRefusal, SessionFrame};
use comity_protocol::MessageId;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tracing::{debug, info};

use super::blocking;
use crate::attachments::{AttachmentError, StoredAttachment};
use crate::attachments::{Direction, TransferKey};
use crate::audit::Fact;
use crate::context::Context;
use crate::peers::Peer;
use crate::session::attachment::{Outlet, OutletAction, OutletError};
use crate::store::{HeldAttachment, StoreError};
use crate::transport::wire;

/// Messages whose attachments go at once per session; the others wait.
const MESSAGES_AT_ONCE: usize = 4;
/// Pauses between offers of an attachment the peer refused for now.
const FIRST_PAUSE: Duration = Duration::from_millis(500);
const LONGEST_PAUSE: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub(crate) enum TransferError {
    #[error("connection lost: {0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error("{0}")]
    Wire(#[from] wire::WireError),
    #[error("peer broke the attachment protocol: {0}")]
    Peer(#[from] OutletError),
    #[error("the peer refused attachment {index} for good: {detail}")]
    Refused { index: u32, detail: String },
    #[error("the peer wants {wanted} attachments; the message has {held}")]
    Count { wanted: usize, held: usize },
    #[error("our copy: {0}")]
    Stored(#[from] AttachmentError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("timed out waiting for the peer")]
    Timeout,
    #[error("the peer stopped taking the attachment: nothing written for {0:?}")]
    Stalled(Duration),
    #[error("the peer ended the attachment stream")]
    Ended,
    #[error("the peer is no longer pinned")]
    Unpinned,
    #[error("our stored copy of attachment {index} is damaged: {problem}")]
    Damaged { index: u32, problem: String },
}

/// The transfers of one session. Dropped with the session: its tasks are
/// aborted (what the peer made durable stays; the next session resumes).
pub(crate) struct Transfers {
    ctx: Arc<Context>,
    peer: Arc<Peer>,
    conn: quinn::Connection,
    slots: Arc<Semaphore>,
    tasks: std::sync::Mutex<JoinSet<()>>,
    done: mpsc::UnboundedSender<Transferred>,
}

/// How the transfer of one message's attachments ended.
pub(crate) type Transferred = (MessageId, Result<(), TransferError>);

impl Transfers {
    /// Transfers on `conn`; each message's outcome arrives on the receiver.
    pub fn new(
        ctx: Arc<Context>,
        peer: Arc<Peer>,
        conn: quinn::Connection,
    ) -> (Transfers, mpsc::UnboundedReceiver<Transferred>) {
        let (done, outcomes) = mpsc::unbounded_channel();
        let transfers = Transfers {
            ctx,
            peer,
            conn,
            slots: Arc::new(Semaphore::new(MESSAGES_AT_ONCE)),
            tasks: std::sync::Mutex::new(JoinSet::new()),
            done,
        };
        (transfers, outcomes)
    }

    /// Sends message `id`'s attachments from where the peer stands
    /// (`next[i]`: the chunk attachment `i` resumes at).
    pub fn start(&self, id: MessageId, next: Vec<u64>) {
        let (ctx, peer, conn) = (self.ctx.clone(), self.peer.clone(), self.conn.clone());
        let (slots, done) = (self.slots.clone(), self.done.clone());
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        // Finished ones are reaped here, so the set stays as long as the
        // transfers under way.
        while tasks.try_join_next().is_some() {}
        tasks.spawn(async move {
            let Ok(_slot) = slots.acquire_owned().await else {
                return;
            };
            let result = message(&ctx, &peer, &conn, id, &next).await;
            let _ = done.send((id, result));
        });
    }
}

/// All the attachments of `id` the peer still needs, one after another.
async fn message(
    ctx: &Arc<Context>,
    peer: &Peer,
    conn: &quinn::Connection,
    id: MessageId,
    next: &[u64],
) -> Result<(), TransferError> {
    let held = ctx.store.outbound_attachments(&id)?;
    if held.len() != next.len() {
        return Err(TransferError::Count {
            wanted: next.len(),
            held: held.len(),
        });
    }
    for (index, (h, &from)) in held.iter().zip(next).enumerate() {
        let index = u32::try_from(index).unwrap_or(u32::MAX);
        let chunks = crate::attachments::Geometry::of(&h.sealed.manifest).chunks;
        if from >= chunks {
            continue;
        }
        let mut pause = FIRST_PAUSE;
        let mut careful = false;
        loop {
            match attachment(ctx, peer, conn, id, index, h, careful).await? {
                Offer::Done => break,
                Offer::Again { why, bad_chunk } => {
                    careful |= bad_chunk;
                    debug!(peer = %peer.id().short(), %id, index, why, careful, ?pause, "attachment refused for now; offering again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(LONGEST_PAUSE);
                }
            }
        }
    }
    Ok(())
}

enum Offer {
    Done,
    /// Refused for now; why, and whether for a chunk that failed its checks.
    Again {
        why: String,
        bad_chunk: bool,
    },
}

impl Offer {
    fn again(reason: AttachmentRefusal, detail: &str) -> Offer {
        Offer::Again {
            why: format!("{reason}: {detail}"),
            bad_chunk: reason == AttachmentRefusal::BadChunk,
        }
    }
}

/// What checks our chunks before they go: an opener over our own table,
/// itself checked against the signed root.
fn own_checker(
    ctx: &Context,
    id: &MessageId,
    index: u32,
    stored: &StoredAttachment,
) -> Result<Opener, TransferError> {
    let damaged = |problem: String| TransferError::Damaged { index, problem };
    let Some((message, _)) = ctx.store.outbound(id)? else {
        return Err(damaged("the message is no longer held".into()));
    };
    let sealed = ctx
        .store
        .outbound_attachments(id)?
        .into_iter()
        .map(|h| h.sealed)
        .collect();
    let i = usize::try_from(index).unwrap_or(usize::MAX);
    crate::attachments::checked_again(message.kind, sealed, i)
        .and_then(|attachment| stored.opener(&attachment))
        .map_err(|e| damaged(e.to_string()))
}

/// Whether opening our own copy failed for good: not there, or not the
/// length its manifest gives (a transient I/O error is not).
fn is_gone_or_cut(e: &AttachmentError) -> bool {
    match e {
        AttachmentError::Corrupt { .. } => true,
        AttachmentError::Io { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
        _ => false,
    }
}

/// One offer of attachment `index` and, if taken, its chunks — each
/// checked first when `careful`.
async fn attachment(
    ctx: &Arc<Context>,
    peer: &Peer,
    conn: &quinn::Connection,
    id: MessageId,
    index: u32,
    held: &HeldAttachment,
    careful: bool,
) -> Result<Offer, TransferError> {
    let manifest = held.sealed.manifest.clone();
    // Our copy missing or of the wrong length can never be sent: the
    // message fails (like a damaged chunk), rather than every session
    // with the peer ending on it until the message expires.
    let Some(stored_id) = held.stored else {
        return Err(TransferError::Damaged {
            index,
            problem: "no stored copy recorded for an outgoing attachment".into(),
        });
    };
    let path = ctx.attachments.sent_path(stored_id);
    let stored = {
        let manifest = manifest.clone();
        blocking(move || StoredAttachment::open(&path, &manifest)).await
    };
    let stored = match stored {
        Ok(s) => s,
        Err(e) if is_gone_or_cut(&e) => {
            return Err(TransferError::Damaged {
                index,
                problem: e.to_string(),
            })
        }
        Err(e) => return Err(e.into()),
    };
    let checker = if careful {
        Some(Arc::new(own_checker(ctx, &id, index, &stored)?))
    } else {
        None
    };
    let stored = Arc::new(stored);
    let timeout = ctx.config.limits.handshake_timeout();
    let (mut outlet, offer) = Outlet::offer(id, index, stored.chunk_count());
    let (mut send, mut recv) = conn.open_bi().await?;
    // Below the session stream (priority 0): quinn sends what the session
    // stream has first, so small messages pass a file being sent.
    let _ = send.set_priority(-1);
    wire::write_frame(&mut send, &offer).await?;
    let answer = read_answer(&mut recv, timeout).await?;
    unless_unpinned(ctx, peer)?;
    let (from_chunk, table) = match outlet.on_frame(answer, false)? {
        OutletAction::Complete => return Ok(Offer::Done),
        OutletAction::Refused { reason, detail, .. } if reason.is_permanent() => {
            return Err(TransferError::Refused { index, detail })
        }
        OutletAction::Refused { reason, detail, .. } => return Ok(Offer::again(reason, &detail)),
        OutletAction::Send { from_chunk, table } => (from_chunk, table),
    };
    let started = std::time::Instant::now();
    let mut bytes_sent = 0u64;
    let progress_key = TransferKey {
        direction: Direction::Outbound,
        peer: peer.id(),
        message: id,
        index: usize::try_from(index).unwrap_or(usize::MAX),
    };
    let geometry = crate::attachments::Geometry::of(&manifest);
    let sending = async {
        if table {
            let s = stored.clone();
            let bytes = blocking(move || s.table_bytes()).await?;
            let frame = SessionFrame::AttachmentTable(bytes);
            write_within(&mut send, &frame, timeout).await?;
        }
        for chunk in from_chunk..stored.chunk_count() {
            let (s, checker) = (stored.clone(), checker.clone());
            let bytes = blocking(move || {
                let bytes = s.read_chunk(chunk)?;
                if let Some(c) = checker {
                    c.check_chunk(chunk, &bytes)
                        .map_err(|e| TransferError::Damaged {
                            index,
                            problem: e.to_string(),
                        })?;
                }
                Ok::<_, TransferError>(bytes)
            })
            .await?;
            bytes_sent = bytes_sent.saturating_add(bytes.len() as u64);
            let frame = SessionFrame::AttachmentChunk {
                index: chunk,
                bytes,
            };
            write_within(&mut send, &frame, timeout).await?;
            // Each chunk handed to the connection, for operators counting
            // what a resume sends again (the log is written unbuffered).
            debug!(%id, index, chunk, "attachment chunk handed to the connection");
            let done = (chunk + 1).saturating_mul(u64::from(geometry.chunk_size));
            ctx.progress
                .update(progress_key, done.min(manifest.size), manifest.size);
        }
        Ok::<(), TransferError>(())
    };
    // The peer may refuse part-way (a bad chunk, no room): its answer
    // arrives while we are still writing.
    let (answer, all_sent) = tokio::select! {
        sent = sending => {
            sent?;
            (read_answer(&mut recv, timeout).await?, true)
        }
        // No deadline on this one: the sending goes on meanwhile.
        early = wire::read_frame(&mut recv, 64 * 1024, timeout) => {
            (early?.ok_or(TransferError::Ended)?, false)
        }
    };
    let _ = send.finish();
    info!(
        peer = %peer.id().short(), %id, index, from_chunk, bytes_sent,
        ms = started.elapsed().as_millis() as u64,
        "attachment stream ended"
    );
    unless_unpinned(ctx, peer)?;
    match outlet.on_frame(answer, all_sent)? {
        OutletAction::Complete => {
            ctx.progress.finished(progress_key);
            let detail = format!(
                "attachment {index} size {} sha256 {}",
                manifest.size, manifest.sha256
            );
            ctx.audit.note(
                Fact::new(AuditKind::AttachmentSent, Actor::Node)
                    .peer(peer.id())
                    .message(id)
                    .detail(&detail),
            );
            Ok(Offer::Done)
        }
        OutletAction::Refused { reason, detail, .. } if reason.is_permanent() => {
            Err(TransferError::Refused { index, detail })
        }
        OutletAction::Refused { reason, detail, .. } => Ok(Offer::again(reason, &detail)),
        OutletAction::Send { .. } => Err(TransferError::Peer(OutletError::Over)),
    }
}

/// Writes `frame`, giving up if the peer takes none of it for `stall`: an
/// acceptor that stops reading would otherwise hold this transfer, and one
/// of the session's slots for them, for as long as the connection lives.
/// Every answer on an attachment stream is taken only from a peer pinned
/// now (its pin may have gone while the file was being sent).
fn unless_unpinned(ctx: &Context, peer: &Peer) -> Result<(), TransferError> {
    if ctx.is_pinned(&peer.id()) {
        Ok(())
    } else {
        Err(TransferError::Unpinned)
    }
}

async fn write_within(
    send: &mut quinn::SendStream,
    frame: &SessionFrame,
    stall: Duration,
) -> Result<(), TransferError> {
    match wire::write_frame_within(send, frame, stall).await {
        Err(wire::WireError::Stalled(d)) => Err(TransferError::Stalled(d)),
        other => Ok(other?),
    }
}

/// The peer's next answer on an attachment stream.
async fn read_answer(
    recv: &mut quinn::RecvStream,
    timeout: Duration,
) -> Result<SessionFrame, TransferError> {
    match tokio::time::timeout(timeout, wire::read_frame(recv, 64 * 1024, timeout)).await {
        Ok(Ok(Some(f))) => Ok(f),
        Ok(Ok(None)) => Err(TransferError::Ended),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(TransferError::Timeout),
    }
}
