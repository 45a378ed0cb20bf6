//! A peer's attachments, the receiving side (session protocol 5).
//!
//! * [`hold`]: an envelope that verified and carries attachments is held
//!   (its manifests and keys stored, the message marked awaited) until
//!   every attachment is complete; until then it is answered with
//!   `AttachmentsWanted` instead of a receipt.
//! * [`serve`]: an attachment stream the peer opened: the offer checked
//!   against the held message, the chunk table and the chunks verified by
//!   the protocol's `Opener` and written one by one, made durable by
//!   checkpoints that commit beside the stream ([`Durability`], and see
//!   [`crate::attachments`]), `AttachmentComplete` at the end.
//!
//! One stream at a time per attachment ([`Claim`]): two writers of one
//! partial file would undo each other's durable resume points.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use comity_protocol::attachment::{check_attachments, AttachmentLimits, CheckedAttachment};
use comity_protocol::audit::entry::{Actor, AuditKind};
use comity_protocol::envelope::OpenedMessage;
use comity_protocol::session::{AttachmentRefusal, RejectReason, SessionFrame};
use comity_protocol::{MessageId, NodeId, Timestamp};
use tracing::{debug, info, warn};

use super::blocking;
use super::input::next_input_within;
use super::refusals;
use crate::attachments::{
    ensure_room, stored_len, Accepted, AttachmentError, Incoming, IncomingKey, IncomingState,
    Receiving,
};
use crate::attachments::{Direction, TransferKey};
use crate::audit::Fact;
use crate::context::{Context, UNPINNED};
use crate::session::attachment::{Intake, IntakeStep};
use crate::shutdown::ShutdownSignal;
use crate::store::{AwaitedMessage, HeldAttachment};
use crate::transport::wire;

/// Messages of one peer held awaiting their attachments, at most.
const MAX_AWAITED_PER_PEER: usize = 1000;
/// How often messages awaiting attachments for too long are given up.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// What became of an envelope with attachments.
pub(crate) enum Held {
    /// Every attachment is complete: receive the message as any other.
    Complete,
    /// Answer with this (`AttachmentsWanted`, or a refusal).
    Answer(SessionFrame),
}

/// Chunks written but not yet durable, at most: what a crash can make the
/// sender send again beyond the stream window (docs/protocol.md §11.5.1).
const MAX_NOT_DURABLE: u64 = 2 << 20;

/// The only writer of one received attachment while it exists. Owned, so
/// that a checkpoint still committing on a blocking thread keeps it after
/// its stream ended (another stream must not cut the file back meanwhile).
pub(crate) struct Claim {
    held: Arc<Mutex<HashSet<IncomingKey>>>,
    key: IncomingKey,
}

impl Claim {
    pub(crate) fn take(ctx: &Context, key: IncomingKey) -> Option<Claim> {
        Claim::take_in(&ctx.attachment_intakes, key)
    }

    fn take_in(held: &Arc<Mutex<HashSet<IncomingKey>>>, key: IncomingKey) -> Option<Claim> {
        let taken = held.lock().unwrap_or_else(|p| p.into_inner()).insert(key);
        // A claim is made only when taken (and only after the lock is
        // released): dropping one releases the key, and locks. (Made
        // eagerly, as `then_some` does, it released another stream's key
        // and deadlocked the node: seen with a sender killed mid-transfer.)
        taken.then(|| Claim {
            held: held.clone(),
            key,
        })
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
    }
}

/// Holds `peer`'s verified envelope (`bytes`, opened as `opened`, with at
/// least one attachment) until its attachments are complete.
pub(crate) fn hold(ctx: &Context, peer: NodeId, opened: &OpenedMessage, bytes: &[u8]) -> Held {
    let id = opened.header.id;
    let unavailable = |detail: String| {
        Held::Answer(SessionFrame::Rejected {
            id: Some(id),
            reason: RejectReason::Unavailable,
            detail,
        })
    };
    let read_failed = |e: crate::store::StoreError| {
        warn!(error = %e, "cannot read awaited messages");
        unavailable("store read failed".into())
    };
    // One peer's envelopes are checked on several streams at once: the
    // checks of the bounds below and the records they count are made
    // under one lock, or envelopes checked together would all pass.
    let gate = ctx.awaited_gate.lock().unwrap_or_else(|p| p.into_inner());
    match ctx.store.awaited(&peer, &id) {
        Ok(Some(a)) if a.digest != opened.envelope_digest => {
            let detail = "another envelope with this id is awaiting its attachments".into();
            return Held::Answer(refusals::reject(
                ctx,
                peer,
                Some(id),
                bytes,
                RejectReason::IdReused,
                detail,
            ));
        }
        Ok(Some(_)) => {}
        Ok(None) => {
            // Bounded: a peer that never sends the attachments cannot make
            // us hold its envelopes without end, nor their files take more
            // than its share of the disk (what they may still grow to; a
            // message alone always fits, its size bounded by the message
            // limits).
            let held = match ctx
                .store
                .awaited_from(&peer, MAX_AWAITED_PER_PEER, stored_len)
            {
                Ok(h) => h,
                Err(e) => return read_failed(e),
            };
            if held.messages >= MAX_AWAITED_PER_PEER {
                return unavailable(format!(
                    "{MAX_AWAITED_PER_PEER} messages from this peer already await their attachments"
                ));
            }
            let need = opened
                .attachments
                .iter()
                .fold(0u64, |n, a| n.saturating_add(stored_len(a.size())));
            let quota = ctx.config.limits.incomplete_attachment_share();
            if held.bytes > 0 && held.bytes.saturating_add(need) > quota {
                return unavailable(format!(
                    "this peer's messages held until their attachments are received already take {} bytes; with this message's {need} they would pass limits.max_incomplete_attachment_bytes_per_peer ({quota}): send it again once one of them is received",
                    held.bytes
                ));
            }
            // Deferred, not refused, when the whole would not fit now.
            if let Err(e) = ensure_room(&ctx.disk, need) {
                return unavailable(format!("its attachments do not fit now: {e}"));
            }
            let held: Vec<HeldAttachment> = opened
                .attachments
                .iter()
                .map(|a| HeldAttachment {
                    sealed: a.to_sealed(),
                    stored: None,
                })
                .collect();
            let awaited = AwaitedMessage {
                digest: opened.envelope_digest,
                kind: opened.header.kind,
                since: Timestamp::now(),
            };
            let stored = ctx
                .store
                .put_inbound_attachments(&peer, &id, &held)
                .and_then(|()| ctx.store.put_awaited(&peer, &id, &awaited));
            if let Err(e) = stored {
                warn!(error = %e, "cannot hold an envelope awaiting its attachments");
                return unavailable("store write failed".into());
            }
            info!(peer = %peer.short(), %id, attachments = held.len(), "message held until its attachments arrive");
        }
        Err(e) => return read_failed(e),
    }
    drop(gate);
    let mut next = Vec::with_capacity(opened.attachments.len());
    let mut complete = true;
    for a in &opened.attachments {
        let key = IncomingKey {
            peer,
            message: id,
            index: a.index(),
        };
        // A stream writing it now: not complete (its file may be renamed
        // into place before its directory is synced).
        let Some(_claim) = Claim::take(ctx, key) else {
            complete = false;
            next.push(0);
            continue;
        };
        // Read only: the stream that takes it next cuts a partial file back
        // to its resume point, not this answer (which comes again with every
        // offer of the envelope).
        match ctx.attachments.incoming_state(&key, a.manifest()) {
            Ok(IncomingState::Complete) => next.push(a.chunk_count()),
            Ok(IncomingState::Partial { next_chunk, .. }) => {
                complete = false;
                next.push(next_chunk);
            }
            Ok(IncomingState::NotStarted) => {
                complete = false;
                next.push(0);
            }
            Err(e) => {
                warn!(error = %e, "cannot read a received attachment");
                return unavailable("attachment files unreadable".into());
            }
        }
    }
    if complete {
        // Each is there, whole, and durable in place, or no receipt.
        for a in &opened.attachments {
            let key = IncomingKey {
                peer,
                message: id,
                index: a.index(),
            };
            match ctx.attachments.confirm_received(&key, a) {
                Ok(()) => {}
                Err(AttachmentError::Chunk(e)) => {
                    warn!(peer = %peer.short(), %id, index = a.index(), error = %e, "a complete file there is not this attachment's; receiving it again");
                    if let Err(e) = ctx.attachments.discard_received(&key) {
                        warn!(error = %e, "cannot remove it");
                    }
                    return unavailable("attachment to be received again".into());
                }
                Err(e) => {
                    warn!(error = %e, "a received attachment is not whole or not durable");
                    return unavailable("attachment files unreadable".into());
                }
            }
        }
        Held::Complete
    } else {
        Held::Answer(SessionFrame::AttachmentsWanted { id, next })
    }
}

/// The message is received: it no longer awaits anything.
pub(crate) fn received(ctx: &Context, peer: NodeId, id: &MessageId) {
    if let Err(e) = ctx.store.remove_awaited(&peer, id) {
        warn!(error = %e, "cannot clear an awaited message");
    }
}

/// Until shutdown, gives up (files and records removed) on messages that
/// awaited their attachments longer than a sender keeps trying
/// (`max_message_age` and the clock skew): their sender failed them.
pub(crate) async fn sweep(ctx: Arc<Context>, mut stop: ShutdownSignal) {
    loop {
        let limits = &ctx.config.limits;
        let cutoff = Timestamp::now()
            .saturating_sub(limits.max_message_age())
            .saturating_sub(limits.clock_skew());
        give_up_awaited_since_before(&ctx, cutoff);
        tokio::select! {
            _ = tokio::time::sleep(SWEEP_EVERY) => {}
            _ = stop.triggered() => return,
        }
    }
}

/// Gives up on the messages that await their attachments since before
/// `cutoff` and on which no stream is writing now; how many.
pub(crate) fn give_up_awaited_since_before(ctx: &Context, cutoff: Timestamp) -> usize {
    let all = match ctx.store.all_awaited() {
        Ok(all) => all,
        Err(e) => {
            warn!(error = %e, "cannot read awaited messages");
            return 0;
        }
    };
    let mut given_up = 0;
    for (peer, id, awaited) in all.into_iter().filter(|(_, _, a)| a.since < cutoff) {
        // Received after all (a crash left the awaited record behind):
        // its files and keys are the evidence; only the record goes.
        match ctx.store.inbound(&peer, &id) {
            Ok(Some(_)) => {
                received(ctx, peer, &id);
                continue;
            }
            Ok(None) => {}
            Err(e) => {
                warn!(error = %e, "cannot read the inbox");
                continue;
            }
        }
        // Not while a stream writes one of them: their claims are held
        // until the files and records are gone, so none can begin
        // meanwhile either.
        let count = match ctx.store.inbound_attachments(&peer, &id) {
            Ok(held) => held.len(),
            Err(e) => {
                warn!(error = %e, "cannot read a message's attachments");
                continue;
            }
        };
        let claims: Option<Vec<Claim>> = (0..count)
            .map(|index| {
                let key = IncomingKey {
                    peer,
                    message: id,
                    index,
                };
                Claim::take(ctx, key)
            })
            .collect();
        let Some(_claims) = claims else {
            continue;
        };
        warn!(peer = %peer.short(), %id, since = awaited.since.0, "giving up on a message whose attachments never arrived");
        if let Err(e) = ctx.attachments.remove_received_message(&peer, &id) {
            warn!(error = %e, "cannot remove the attachments of a message given up on");
            continue;
        }
        if let Err(e) = ctx.store.remove_inbound_attachments(&peer, &id) {
            warn!(error = %e, "cannot forget a message given up on");
            continue;
        }
        given_up += 1;
    }
    given_up
}

/// Serves an attachment stream `peer` opened with an offer of attachment
/// `index` of its message `id`.
pub(crate) async fn serve(
    ctx: Arc<Context>,
    peer: NodeId,
    id: MessageId,
    index: u32,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    stop: ShutdownSignal,
) {
    let answer = intake(&ctx, peer, id, index, &mut send, &mut recv, stop).await;
    if let Some(frame) = answer {
        if let SessionFrame::AttachmentRefused {
            reason,
            next,
            detail,
        } = &frame
        {
            debug!(peer = %peer.short(), %id, index, %reason, next, detail, "attachment refused");
        }
        if wire::write_frame(&mut send, &frame).await.is_err() {
            return;
        }
    }
    let _ = send.finish();
    let _ = recv.stop(0u32.into());
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), send.stopped()).await;
}

fn refused(
    reason: AttachmentRefusal,
    next: u64,
    detail: impl Into<String>,
) -> Option<SessionFrame> {
    Some(SessionFrame::AttachmentRefused {
        reason,
        next,
        detail: detail.into(),
    })
}

/// The attachment the offer names, checked again (against the protocol's
/// ceilings: it met this node's limits when its envelope was held).
fn offered(
    ctx: &Context,
    peer: NodeId,
    id: &MessageId,
    index: u32,
) -> Result<CheckedAttachment, String> {
    let awaited = ctx
        .store
        .awaited(&peer, id)
        .map_err(|e| e.to_string())?
        .ok_or("no message of that id awaits its attachments")?;
    let held = ctx
        .store
        .inbound_attachments(&peer, id)
        .map_err(|e| e.to_string())?;
    let sealed = held.into_iter().map(|h| h.sealed).collect();
    let checked = check_attachments(awaited.kind, sealed, &AttachmentLimits::ceiling())
        .map_err(|e| e.to_string())?;
    usize::try_from(index)
        .ok()
        .and_then(|i| checked.into_iter().nth(i))
        .ok_or_else(|| "the message has no attachment of that index".into())
}

/// Takes the attachment; the last frame to send, if any.
async fn intake(
    ctx: &Arc<Context>,
    peer: NodeId,
    id: MessageId,
    index: u32,
    send: &mut quinn::SendStream,
    recv: &mut quinn::RecvStream,
    mut stop: ShutdownSignal,
) -> Option<SessionFrame> {
    let attachment = match offered(ctx, peer, &id, index) {
        Ok(a) => a,
        Err(why) => return refused(AttachmentRefusal::NotAwaited, 0, why),
    };
    let key = IncomingKey {
        peer,
        message: id,
        index: attachment.index(),
    };
    let Some(claim) = Claim::take(ctx, key) else {
        return refused(AttachmentRefusal::Busy, 0, "another stream carries it now");
    };
    let claim = Arc::new(claim);
    let progress_key = TransferKey {
        direction: Direction::Inbound,
        peer,
        message: id,
        index: attachment.index(),
    };
    let geometry = crate::attachments::Geometry::of(attachment.manifest());
    let max_frame = usize::try_from(
        geometry
            .table_len()
            .max(u64::from(geometry.chunk_size) + 16),
    )
    .unwrap_or(usize::MAX)
    .saturating_add(64);
    let incoming = {
        let (ctx, a) = (ctx.clone(), attachment.clone());
        blocking(move || ctx.attachments.incoming(&key, &a)).await
    };
    let (mut state, from_chunk, table) = match incoming {
        Ok(Incoming::Complete(_)) => return Some(SessionFrame::AttachmentComplete { id, index }),
        Ok(Incoming::NotStarted(n)) => {
            if let Err(e) = ensure_room(&ctx.disk, geometry.stored_len()) {
                return refused(AttachmentRefusal::NoRoom, 0, e.to_string());
            }
            (State::NotStarted(Box::new(n)), 0, true)
        }
        Ok(Incoming::Partial(r)) => {
            let next = r.next_chunk().unwrap_or(0);
            if let Err(e) = r.ensure_room(&ctx.disk) {
                return refused(AttachmentRefusal::NoRoom, next, e.to_string());
            }
            (State::Receiving(r), next, false)
        }
        Err(e) => {
            warn!(error = %e, "cannot open a received attachment");
            return refused(
                AttachmentRefusal::Unavailable,
                0,
                "attachment files unreadable",
            );
        }
    };
    let from = SessionFrame::AttachmentFrom { from_chunk, table };
    if wire::write_frame(send, &from).await.is_err() {
        return None;
    }
    let mut machine = Intake::new(table);
    let mut durability = Durability::new(claim, from_chunk);
    let stall = ctx.config.limits.handshake_timeout();
    loop {
        let input = tokio::select! {
            // The dialler sends its chunks without waiting: a stream
            // gone quiet between frames would hold the attachment's claim
            // (and keep its message from being given up) for as long as
            // the connection lives.
            i = next_input_within(recv, max_frame, stall, Some(stall)) => i,
            _ = stop.triggered() => return None,
        };
        let input = input?;
        let step = machine.on_input(input, ctx.is_pinned(&peer));
        match step {
            IntakeStep::Table(bytes) => {
                let State::NotStarted(n) = state else {
                    return None;
                };
                let ctx2 = ctx.clone();
                match blocking(move || (*n).begin(&bytes, &ctx2.disk)).await {
                    Ok(r) => state = State::Receiving(Box::new(r)),
                    Err(e) => return refusal(ctx, peer, &id, index, 0, e),
                }
            }
            IntakeStep::Chunk {
                index: chunk,
                bytes,
            } => {
                let State::Receiving(mut r) = state else {
                    return None;
                };
                // Bounded: a slow disk must not let chunks not yet durable
                // pile up; and the last chunk completes only after every
                // checkpoint before it committed (a failed one refuses it).
                let last = chunk.saturating_add(1) >= r.chunk_count();
                if let Err(e) = durability.catch_up(&r, &geometry, chunk, last).await {
                    return refusal(ctx, peer, &id, index, durability.durable, e);
                }
                let ctx2 = ctx.clone();
                let (r, result) = blocking(move || {
                    // Measured again for every chunk: streams that began at
                    // the same time each saw the same free space, and
                    // together they would fill the disk past the reserve.
                    let need = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
                    let result =
                        ensure_room(&ctx2.disk, need).and_then(|()| r.accept(chunk, bytes));
                    (r, result)
                })
                .await;
                match result {
                    Ok(Accepted::Next(_)) => {
                        ctx.progress
                            .update(progress_key, r.bytes_done(), attachment.size());
                        if let Err(e) = durability.offer(&r).await {
                            return refusal(ctx, peer, &id, index, durability.durable, e);
                        }
                        state = State::Receiving(r);
                    }
                    Ok(Accepted::Complete(received)) => {
                        ctx.progress.finished(progress_key);
                        machine.finished();
                        let m = received.attachment().manifest();
                        let detail = format!(
                            "attachment {} size {} sha256 {} root {}",
                            attachment.index(),
                            m.size,
                            m.sha256,
                            m.tree_root
                        );
                        ctx.audit.note(
                            Fact::new(AuditKind::AttachmentReceived, Actor::Peer)
                                .peer(peer)
                                .message(id)
                                .detail(&detail),
                        );
                        info!(peer = %peer.short(), %id, index, size = m.size, "attachment received and verified");
                        return Some(SessionFrame::AttachmentComplete { id, index });
                    }
                    Err(e) => {
                        let next = durability.settle(&State::Receiving(r)).await;
                        return refusal(ctx, peer, &id, index, next, e);
                    }
                }
            }
            IntakeStep::Truncated => {
                let next = durability.settle(&state).await;
                debug!(peer = %peer.short(), %id, index, next, "attachment stream ended before the last chunk");
                return None;
            }
            IntakeStep::Close(bad) => {
                refusals::record_bad_stream(ctx, peer, &bad.to_string());
                let next = durability.settle(&state).await;
                return refused(AttachmentRefusal::BadChunk, next, bad.to_string());
            }
            IntakeStep::Unpinned => {
                let _ = recv.stop(UNPINNED.into());
                return None;
            }
            IntakeStep::Stop => return None,
        }
    }
}

/// The checkpoints of one intake: at most one commits at a time, on a
/// blocking thread, while the next chunks are verified and written; a new
/// one is taken after a chunk whenever none is committing.
struct Durability {
    claim: Arc<Claim>,
    /// The chunk the last committed point names.
    durable: u64,
    committing: Option<(u64, tokio::task::JoinHandle<Result<u64, AttachmentError>>)>,
}

impl Durability {
    fn new(claim: Arc<Claim>, durable: u64) -> Self {
        Durability {
            claim,
            durable,
            committing: None,
        }
    }

    /// Before chunk `chunk` of `r` is written: until what is written but
    /// not durable is under [`MAX_NOT_DURABLE`] (or, before the `last`
    /// chunk, until nothing is committing), waits for the committing
    /// checkpoint or commits one.
    async fn catch_up(
        &mut self,
        r: &Receiving,
        geometry: &crate::attachments::Geometry,
        chunk: u64,
        last: bool,
    ) -> Result<(), AttachmentError> {
        if last {
            return self.wait().await;
        }
        loop {
            let behind = geometry
                .chunk_offset(chunk)
                .saturating_sub(geometry.chunk_offset(self.durable));
            if behind < MAX_NOT_DURABLE {
                return Ok(());
            }
            if self.committing.is_none() {
                self.offer(r).await?;
                if self.committing.is_none() {
                    return Ok(());
                }
            }
            self.wait().await?;
        }
    }

    /// Waits for the committing checkpoint, if any.
    async fn wait(&mut self) -> Result<(), AttachmentError> {
        let Some((_, job)) = self.committing.take() else {
            return Ok(());
        };
        match job.await {
            Ok(r) => self.durable = r?,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Cancelled only when the runtime shuts down.
            Err(_) => return Err(AttachmentError::ShuttingDown),
        }
        Ok(())
    }

    /// At the end of a stream that did not complete: what was written is
    /// made durable (it verified), so a new offer resumes after it; the
    /// chunk the receiver needs next, durably.
    async fn settle(&mut self, state: &State) -> u64 {
        let written = match state {
            State::Receiving(r) => Some(&**r),
            State::NotStarted(_) => None,
        };
        if let Err(e) = self.commit_all(written).await {
            warn!(error = %e, "cannot make received chunks durable");
        }
        self.durable
    }

    async fn commit_all(&mut self, r: Option<&Receiving>) -> Result<(), AttachmentError> {
        self.wait().await?;
        if let Some(r) = r {
            self.offer(r).await?;
            self.wait().await?;
        }
        Ok(())
    }

    /// After a chunk of `r` was written: commits a checkpoint of it unless
    /// one is committing now; reports one that failed.
    async fn offer(&mut self, r: &Receiving) -> Result<(), AttachmentError> {
        if let Some((_, job)) = &self.committing {
            if !job.is_finished() {
                return Ok(());
            }
            // Finished: no wait.
            self.wait().await?;
        }
        // Nothing committing now: one that names no new chunk is no use.
        if let Some(checkpoint) = r.checkpoint().filter(|c| c.next_chunk() > self.durable) {
            let point = checkpoint.next_chunk();
            // The claim goes with it: held until the commit is done, even
            // if the stream ends first.
            let claim = self.claim.clone();
            let job = tokio::task::spawn_blocking(move || {
                let result = checkpoint.commit();
                drop(claim);
                result
            });
            self.committing = Some((point, job));
        }
        Ok(())
    }
}

/// Where an intake stands between frames.
enum State {
    NotStarted(Box<crate::attachments::NotStarted>),
    Receiving(Box<Receiving>),
}

/// The answer to a table or chunk the node did not take; a bad one is
/// recorded against the peer's budget (which cuts off a peer that keeps
/// sending them).
fn refusal(
    ctx: &Context,
    peer: NodeId,
    id: &MessageId,
    index: u32,
    next: u64,
    e: AttachmentError,
) -> Option<SessionFrame> {
    match e {
        AttachmentError::NoRoom { .. } => refused(AttachmentRefusal::NoRoom, next, e.to_string()),
        AttachmentError::Chunk(_) | AttachmentError::Invalid(_) => {
            let detail = format!("message {id} attachment {index}: {e}");
            refusals::record_bad_input(ctx, peer, Some(*id), "bad attachment chunks", &detail);
            refused(AttachmentRefusal::BadChunk, next, e.to_string())
        }
        other => {
            warn!(error = %other, "cannot store a received attachment");
            refused(
                AttachmentRefusal::Unavailable,
                next,
                "the receiver could not store it",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(index: usize) -> IncomingKey {
        IncomingKey {
            peer: NodeId([1; 32]),
            message: MessageId([2; 16]),
            index,
        }
    }

    #[test]
    fn a_claim_is_one_writers_and_a_refused_one_releases_nothing() {
        let held = Arc::new(Mutex::new(HashSet::new()));
        let first = Claim::take_in(&held, key(0)).expect("free");
        // Refused, without deadlocking, and without releasing the first.
        assert!(Claim::take_in(&held, key(0)).is_none());
        assert!(Claim::take_in(&held, key(0)).is_none());
        let other = Claim::take_in(&held, key(1)).expect("another attachment");
        drop(first);
        assert!(Claim::take_in(&held, key(0)).is_some());
        drop(other);
        assert!(held.lock().expect("lock").is_empty());
    }
}
