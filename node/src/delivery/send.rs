//! Sending to one peer, the IO side: connect, say hello, pipeline
//! envelopes, read answers; on any failure put the unanswered messages back
//! and retry with exponential backoff. The protocol decisions are
//! [`crate::session::sender`]'s; what they do to the outbox and the audit
//! log is [`super::outcome`]'s.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use comity_protocol::session::SessionFrame;
use comity_protocol::{MessageId, Timestamp};
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use super::attachments_out::{TransferError, Transfers};
use super::outcome::{self, Ended};
use crate::context::Context;
use crate::events::Event;
use crate::peers::Peer;
use crate::session::sender::{envelope_frame, Action, Sender, SenderError};
use crate::session::SessionVersion;
use crate::shutdown::ShutdownSignal;
use crate::transport::endpoint::EndpointError;
use crate::transport::tls::{alpn_of, SERVER_NAME};
use crate::transport::{client_config, wire};

/// On shutdown, how long to wait for receipts of what was already sent.
const DRAIN_GRACE: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionError {
    #[error("cannot resolve {0}")]
    Resolve(String),
    #[error("cannot connect: {0}")]
    Setup(#[source] EndpointError),
    #[error("cannot connect: {0}")]
    Dial(#[source] quinn::ConnectError),
    #[error("cannot connect: {0}")]
    Handshake(#[source] quinn::ConnectionError),
    #[error("connection lost: {0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error("{0}")]
    Wire(#[from] wire::WireError),
    #[error("peer broke the protocol: {0}")]
    Peer(#[from] SenderError),
    #[error("the peer ended the session (shutting down?)")]
    PeerEnded,
    #[error(transparent)]
    Ended(#[from] Ended),
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("timed out waiting for the peer")]
    Timeout,
    #[error("the peer is not pinned")]
    Unpinned,
    #[error("attachments: {0}")]
    Attachments(#[from] TransferError),
    #[error(transparent)]
    Sign(#[from] comity_protocol::identity::SignError),
}

impl From<outcome::PrepareError> for SessionError {
    fn from(e: outcome::PrepareError) -> Self {
        match e {
            outcome::PrepareError::Store(e) => SessionError::Store(e),
            outcome::PrepareError::Sign(e) => SessionError::Sign(e),
        }
    }
}

/// Runs until shutdown: the life of one peer's outgoing traffic.
pub async fn run(ctx: Arc<Context>, peer: Arc<Peer>, mut stop: ShutdownSignal) {
    let mut failures: u32 = 0;
    let mut latest = ctx.audit.latest();
    loop {
        // Connect when there is something to send: messages, or a
        // checkpoint this peer has not cosigned yet.
        while peer.queue.is_empty() && *latest.borrow() <= ctx.audit.cosigned_by(&peer.id()) {
            tokio::select! {
                _ = peer.queue.wait() => {}
                _ = latest.changed() => {}
                _ = stop.triggered() => return,
            }
        }
        if stop.is_triggered() {
            return;
        }
        if ctx.store.fault().is_some() {
            // Receipts could not be stored: nothing is sent until the node
            // is reopened (see `recovery`), which stops this task.
            stop.triggered().await;
            return;
        }
        match session(&ctx, &peer, stop.clone()).await {
            Ok(()) => failures = 0,
            Err(e) => {
                let delay = ctx.config.retry.delay(failures, rand::random::<f64>());
                failures = failures.saturating_add(1);
                let error = wire::describe(&e);
                warn!(peer = %peer.id().short(), %error, retry_in = ?delay, "delivery interrupted");
                peer.set_error(error.clone(), Timestamp::now().saturating_add(delay));
                ctx.emit(Event::PeerDisconnected {
                    peer: peer.id(),
                    error,
                });
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.triggered() => return,
                }
            }
        }
    }
}

/// The session core, shared by the connection's reader and writer. Never
/// held across an await.
struct Core {
    sender: Mutex<Sender>,
    /// Wakes the writer: window space freed, or a checkpoint to offer again.
    wake: Notify,
}

impl Core {
    fn lock(&self) -> MutexGuard<'_, Sender> {
        self.sender.lock().unwrap_or_else(|p| p.into_inner())
    }
}

async fn session(
    ctx: &Arc<Context>,
    peer: &Arc<Peer>,
    mut stop: ShutdownSignal,
) -> Result<(), SessionError> {
    let limits = &ctx.config.limits;
    let addr = tokio::net::lookup_host(peer.config.address.as_str())
        .await
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| SessionError::Resolve(peer.config.address.clone()))?;
    let client = client_config(&ctx.tls, peer.id(), limits).map_err(SessionError::Setup)?;
    let connecting = ctx
        .endpoint
        .connect_with(client, addr, SERVER_NAME)
        .map_err(SessionError::Dial)?;
    // Shutdown must not wait for a peer that does not answer.
    let conn = tokio::select! {
        c = tokio::time::timeout(limits.handshake_timeout(), connecting) => c,
        _ = stop.triggered() => return Ok(()),
    }
    .map_err(|_| SessionError::Timeout)?
    .map_err(SessionError::Handshake)?;
    // Registered so that unpinning the peer closes this connection at once.
    let Some(_slot) = ctx.connection_slot(peer.id(), &conn, false) else {
        return Err(SessionError::Unpinned);
    };
    if !ctx.is_pinned(&peer.id()) {
        conn.close(crate::context::UNPINNED.into(), b"not pinned");
        return Err(SessionError::Unpinned);
    }

    let version = SessionVersion::of_alpn(alpn_of(&conn).as_deref());
    let window = usize::try_from(limits.delivery_window).unwrap_or(usize::MAX);
    let me = ctx.identity();
    // A witness that changed keys by a transition cosigned our log under
    // its earlier ones: it continues from there.
    let cosigned = std::iter::once(peer.id())
        .chain(peer.config.rotated_from.iter().copied())
        .map(|w| ctx.audit.cosigned_by(&w))
        .max()
        .unwrap_or(0);
    let mut sender = Sender::new(me.id(), peer.id(), window, cosigned)
        .with_earlier_ids(me.earlier_ids())
        .with_peer_earlier_keys(ctx.earlier_keys(&peer.id()))
        .speaking(version);
    // A peer of an older version cannot read the statement: it gets our
    // checkpoints as usual (and refuses them for the rollback).
    if let (Some(r), true) = (&ctx.restoration, version >= SessionVersion::V4) {
        sender = sender.with_restoration(r.statement.restored_size, r.statement.continuation_size);
    }
    let core = Core {
        sender: Mutex::new(sender),
        wake: Notify::new(),
    };
    let (mut send, mut recv) = conn.open_bi().await?;
    let hello = SessionFrame::Hello {
        cert: ctx.identity().encryption_cert().clone(),
    };
    wire::write_frame(&mut send, &hello).await?;
    let answer = tokio::time::timeout(
        limits.handshake_timeout(),
        wire::read_frame(&mut recv, 4096, limits.handshake_timeout()),
    )
    .await
    .map_err(|_| SessionError::Timeout)??
    .ok_or(SenderError::ExpectedHello("the end of the stream"))?;
    let action = core
        .lock()
        .on_frame(answer, ctx.is_pinned(&peer.id()), || ctx.audit.size())?;
    let Action::Hello(keys) = action else {
        return Err(SenderError::ExpectedHello("another frame").into());
    };
    outcome::peer_keys(ctx, peer, &keys)?;
    peer.set_connected(true);
    ctx.emit(Event::PeerConnected { peer: peer.id() });
    info!(peer = %peer.id().short(), %addr, ?version, "connected");

    let (transfers, mut transferred) = Transfers::new(ctx.clone(), peer.clone(), conn.clone());
    let reader = read_answers(ctx, peer, &core, &transfers, &mut recv);
    let writer = async {
        let mut latest = ctx.audit.latest();
        loop {
            // Messages whose attachments are all with the peer: their
            // envelopes again, in front, for the receipts.
            while let Ok((id, result)) = transferred.try_recv() {
                attachments_done(ctx, peer, &core, id, result)?;
            }
            let newest = *latest.borrow();
            offer_checkpoint(ctx, peer, &core, newest, &mut send).await?;
            if !core.lock().can_send() {
                tokio::select! {
                    _ = core.wake.notified() => continue,
                    _ = latest.changed() => continue,
                    Some((id, result)) = transferred.recv() => {
                        attachments_done(ctx, peer, &core, id, result)?;
                        continue;
                    }
                    _ = stop.triggered() => break,
                }
            }
            let id = loop {
                if let Some(id) = peer.queue.pop() {
                    break Some(id);
                }
                tokio::select! {
                    _ = peer.queue.wait() => {}
                    _ = latest.changed() => {}
                    _ = core.wake.notified() => {}
                    Some((id, result)) = transferred.recv() => {
                        attachments_done(ctx, peer, &core, id, result)?;
                    }
                    _ = stop.triggered() => break None,
                }
                let newest = *latest.borrow();
                offer_checkpoint(ctx, peer, &core, newest, &mut send).await?;
            };
            let Some(id) = id else { break };
            // Back in the queue if this future is dropped (the reader ended
            // the session) before the message is recorded as in flight.
            let mut taken = Taken { peer, id: Some(id) };
            // Checked again before anything is sealed for the peer: its pin
            // may have gone since the handshake.
            if !ctx.is_pinned(&peer.id()) {
                return Err(SessionError::Unpinned);
            }
            write_envelope(ctx, peer, &core, &keys, version, &mut taken, &mut send).await?;
        }
        // Shutting down: stop sending; give receipts of what was sent a
        // moment to arrive.
        let deadline = tokio::time::Instant::now() + DRAIN_GRACE;
        while core.lock().in_flight() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = send.finish();
        Ok::<(), SessionError>(())
    };

    let result = tokio::select! {
        r = reader => r,
        r = writer => r,
    };
    let unanswered = core.lock().take_unanswered();
    if !unanswered.is_empty() {
        debug!(peer = %peer.id().short(), count = unanswered.len(), "requeueing unanswered messages");
        peer.queue.requeue_front(unanswered.into_iter());
    }
    peer.set_in_flight(0);
    conn.close(0u32.into(), b"bye");
    if result.is_ok() {
        peer.set_connected(false);
    }
    result
}

/// The transfer of `id`'s attachments ended: on success its envelope goes
/// again, in front of the queue; a damaged copy of ours fails the message
/// (it can never be delivered from it); any other failure ends the session.
fn attachments_done(
    ctx: &Context,
    peer: &Peer,
    core: &Core,
    id: MessageId,
    result: Result<(), TransferError>,
) -> Result<(), SessionError> {
    if let Err(e @ TransferError::Damaged { .. }) = result {
        core.lock().attachments_sent(&id);
        outcome::failed(ctx, peer, id, e.to_string())?;
        return Ok(());
    }
    result?;
    if core.lock().attachments_sent(&id) {
        debug!(peer = %peer.id().short(), %id, "attachments sent; the envelope again for its receipt");
        peer.queue.requeue_front(std::iter::once(id));
    }
    Ok(())
}

/// A message taken from the peer's queue and not yet in flight: put back
/// in front of the queue when dropped unless its fate was settled (sent,
/// in flight already, or no longer to send). Without it, a session ended
/// by its reader while the writer was sealing lost the message from the
/// queue until the next start (seen: one of 40 left queued for good).
struct Taken<'a> {
    peer: &'a Peer,
    id: Option<MessageId>,
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            self.peer.queue.requeue_front(std::iter::once(id));
        }
    }
}

/// Prepares the message `taken` holds and records it as in flight: the
/// step between the queue and the wire that may be cancelled at its await
/// (the reader ends the session) and must not lose the message then.
/// `None` when there is nothing to write (in flight already, or no longer
/// to send).
async fn into_flight<F, Fut>(
    peer: &Peer,
    core: &Core,
    taken: &mut Taken<'_>,
    prepare: F,
) -> Result<Option<(MessageId, outcome::Prepared)>, SessionError>
where
    F: FnOnce(MessageId) -> Fut,
    Fut: std::future::Future<Output = Result<Option<outcome::Prepared>, outcome::PrepareError>>,
{
    let Some(id) = taken.id else {
        return Ok(None);
    };
    // Before anything is recorded as an attempt.
    if core.lock().is_in_flight(&id) {
        debug!(%id, "already in flight on this connection");
        taken.id = None;
        return Ok(None);
    }
    let Some(prepared) = prepare(id).await? else {
        taken.id = None;
        return Ok(None);
    };
    let mut sender = core.lock();
    sender.sent(id, prepared.digest)?;
    // In flight now: requeued with the unanswered if the session ends.
    taken.id = None;
    peer.set_in_flight(sender.in_flight());
    Ok(Some((id, prepared)))
}

/// Seals (if needed), records and writes the envelope of the message
/// `taken` holds.
async fn write_envelope(
    ctx: &Arc<Context>,
    peer: &Arc<Peer>,
    core: &Core,
    keys: &comity_protocol::PeerKeys,
    version: SessionVersion,
    taken: &mut Taken<'_>,
    send: &mut quinn::SendStream,
) -> Result<(), SessionError> {
    if let Some(id) = taken.id {
        if !core.lock().carries_attachments() && ctx.store.has_outbound_attachments(&id)? {
            let why = "the peer's node does not take attachments (it speaks an older session protocol than comity/5); kept until it does";
            outcome::held_back(ctx, peer, id, why)?;
            core.lock().set_aside(id);
            taken.id = None;
            return Ok(());
        }
    }
    let prepare = |id| outcome::prepare(ctx, peer, keys, id);
    let Some((id, prepared)) = into_flight(peer, core, taken, prepare).await? else {
        return Ok(());
    };
    let frame = envelope_frame(
        version,
        &ctx.identity(),
        peer.id(),
        id,
        prepared.bytes,
        prepared.digest,
        prepared.resend_of,
    )?;
    wire::write_frame(send, &frame).await?;
    ctx.emit(Event::Sent {
        id,
        peer: peer.id(),
        attempt: prepared.attempt,
    });
    Ok(())
}

/// Offers the peer our newest durable checkpoint (by way of a backup's,
/// `AuditLog::offer_target`) with a consistency proof from what it last
/// cosigned, unless already offered; first, our restoration statement if
/// it is due.
async fn offer_checkpoint(
    ctx: &Context,
    peer: &Peer,
    core: &Core,
    newest: u64,
    send: &mut quinn::SendStream,
) -> Result<(), SessionError> {
    let cosigned = ctx.audit.cosigned_by(&peer.id());
    let due = core.lock().restoration_to_present(cosigned);
    if let (Some((restored, continuation)), Some(r)) = (due, &ctx.restoration) {
        return present_restoration(ctx, peer, core, restored, continuation, r, send).await;
    }
    let target = ctx.audit.offer_target(cosigned, newest);
    let Some((old, new)) = core.lock().checkpoint_to_offer(target, cosigned) else {
        return Ok(());
    };
    let offer = match ctx.audit.offer(old, new) {
        Ok(Some(o)) => o,
        Ok(None) => return Ok(()),
        Err(e) => {
            warn!(peer = %peer.id().short(), error = %e, "cannot offer a checkpoint");
            return Ok(());
        }
    };
    let (size, note, proof) = offer;
    core.lock().offered(old, new);
    let frame = SessionFrame::Checkpoint {
        note,
        old_size: old,
        proof,
    };
    wire::write_frame(send, &frame).await?;
    ctx.audit.offered_to(&peer.id());
    debug!(peer = %peer.id().short(), size, from = old, "checkpoint offered for witnessing");
    Ok(())
}

/// Presents our restoration statement with the continuation checkpoint
/// and a proof from the restored size to it.
async fn present_restoration(
    ctx: &Context,
    peer: &Peer,
    core: &Core,
    restored: u64,
    continuation: u64,
    r: &crate::restoration::PendingRestoration,
    send: &mut quinn::SendStream,
) -> Result<(), SessionError> {
    let (note, proof) = match ctx.audit.offer(restored, continuation) {
        Ok(Some((_, note, proof))) => (note, proof),
        Ok(None) => return Ok(()),
        Err(e) => {
            warn!(peer = %peer.id().short(), error = %e, "cannot present the restoration");
            return Ok(());
        }
    };
    core.lock().restoration_presented();
    let frame = SessionFrame::Restoration {
        statement: Box::new(r.statement.clone()),
        signature: r.signature,
        continuation: note,
        proof,
    };
    wire::write_frame(send, &frame).await?;
    ctx.audit.offered_to(&peer.id());
    info!(peer = %peer.id().short(), restored, continuation, "restoration statement presented to the witness");
    Ok(())
}

async fn read_answers(
    ctx: &Arc<Context>,
    peer: &Arc<Peer>,
    core: &Core,
    transfers: &Transfers,
    recv: &mut quinn::RecvStream,
) -> Result<(), SessionError> {
    loop {
        let stall = ctx.config.limits.handshake_timeout();
        let Some(frame) = wire::read_frame(recv, 64 * 1024, stall).await? else {
            return Err(SessionError::PeerEnded);
        };
        peer.contact();
        let mut log_size = 0;
        let pinned = ctx.is_pinned(&peer.id());
        let action = core.lock().on_frame(frame, pinned, || {
            log_size = ctx.audit.size();
            log_size
        })?;
        match action {
            Action::CheckCosignature { size, line } => {
                if outcome::cosignature(ctx, peer, size, &line) {
                    core.lock().cosignature_stored(size);
                } else {
                    core.lock().cosignature_failed(size);
                }
                // A restoration answered: checkpoints after it may be due.
                core.wake.notify_one();
            }
            Action::OfferAgain => core.wake.notify_one(),
            Action::SendAttachments { id, next } => {
                debug!(peer = %peer.id().short(), %id, ?next, "the peer wants the message's attachments");
                transfers.start(id, next);
                peer.set_in_flight(core.lock().in_flight());
                core.wake.notify_one();
            }
            action => {
                let frees = matches!(action, Action::Delivered { .. } | Action::Failed { .. });
                if let Some(end) = outcome::apply(ctx, peer, action, log_size)? {
                    return Err(end.into());
                }
                if frees {
                    peer.set_in_flight(core.lock().in_flight());
                    core.wake.notify_one();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The writer's step from the queue into flight, cancelled where the
    //! session can cancel it: while the message is being prepared.
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context as TaskContext, Poll};

    use comity_protocol::{Digest, Identity};

    use super::*;

    fn identity(seed: u8) -> Identity {
        Identity::from_seeds(&[seed; 32], &[seed; 32], Timestamp(0))
    }

    fn id(n: u8) -> MessageId {
        MessageId([n; 16])
    }

    /// A peer with messages 1, 2, 3 queued and an open session's core.
    fn setup() -> (Peer, Core) {
        let remote = identity(2);
        let peer = Peer::new(comity_config::PeerConfig {
            id: remote.id(),
            address: "127.0.0.1:7400".into(),
            name: String::new(),
            country: "BO".parse().expect("a country code"),
            repinned_from: Vec::new(),
            rotated_from: Vec::new(),
            confirm_rotation: false,
        });
        for n in 1..=3 {
            peer.queue.push(id(n));
        }
        let mut sender = Sender::new(identity(1).id(), remote.id(), 8, 0);
        let hello = SessionFrame::Hello {
            cert: remote.encryption_cert().clone(),
        };
        assert!(matches!(
            sender.on_frame(hello, true, || 0),
            Ok(Action::Hello(_))
        ));
        let core = Core {
            sender: Mutex::new(sender),
            wake: Notify::new(),
        };
        (peer, core)
    }

    fn prepared() -> outcome::Prepared {
        outcome::Prepared {
            bytes: vec![1, 2, 3],
            digest: Digest([7; 32]),
            attempt: 1,
            resend_of: None,
        }
    }

    fn queued(peer: &Peer) -> Vec<MessageId> {
        std::iter::from_fn(|| peer.queue.pop()).collect()
    }

    /// Polls `f` once.
    fn poll_once<F: Future>(f: F) -> Poll<F::Output> {
        let mut f = pin!(f);
        let waker = std::task::Waker::noop();
        f.as_mut().poll(&mut TaskContext::from_waker(waker))
    }

    #[test]
    fn a_message_whose_preparation_is_cancelled_goes_back_in_front() {
        let (peer, core) = setup();
        let first = peer.queue.pop().expect("queued");
        {
            let mut taken = Taken {
                peer: &peer,
                id: Some(first),
            };
            let step = into_flight(&peer, &core, &mut taken, |_| std::future::pending());
            assert!(poll_once(step).is_pending());
            // The session ends here: the writer's future, `taken` with it,
            // is dropped.
        }
        assert_eq!(queued(&peer), vec![id(1), id(2), id(3)]);
        assert!(core.lock().take_unanswered().is_empty());
    }

    #[test]
    fn a_prepared_message_is_in_flight_and_not_queued_again() {
        let (peer, core) = setup();
        let first = peer.queue.pop().expect("queued");
        {
            let mut taken = Taken {
                peer: &peer,
                id: Some(first),
            };
            let step = into_flight(&peer, &core, &mut taken, |_| async { Ok(Some(prepared())) });
            let Poll::Ready(Ok(Some((sent, _)))) = poll_once(step) else {
                panic!("prepared at once");
            };
            assert_eq!(sent, id(1));
        }
        assert_eq!(peer.queue.len(), 2);
        // Ending the session now requeues it as unanswered, once.
        assert_eq!(core.lock().take_unanswered(), vec![id(1)]);
        assert_eq!(queued(&peer), vec![id(2), id(3)]);
    }

    #[test]
    fn a_message_no_longer_to_send_is_not_queued_again() {
        let (peer, core) = setup();
        let first = peer.queue.pop().expect("queued");
        {
            let mut taken = Taken {
                peer: &peer,
                id: Some(first),
            };
            let step = into_flight(&peer, &core, &mut taken, |_| async { Ok(None) });
            assert!(matches!(poll_once(step), Poll::Ready(Ok(None))));
        }
        assert_eq!(queued(&peer), vec![id(2), id(3)]);
    }

    #[test]
    fn a_message_already_in_flight_is_neither_prepared_nor_queued_again() {
        let (peer, core) = setup();
        core.lock().sent(id(1), Digest([7; 32])).expect("open");
        let first = peer.queue.pop().expect("queued");
        {
            let mut taken = Taken {
                peer: &peer,
                id: Some(first),
            };
            let step = into_flight(&peer, &core, &mut taken, |_| async {
                panic!("prepared a message already in flight")
            });
            assert!(matches!(poll_once(step), Poll::Ready(Ok(None))));
        }
        assert_eq!(queued(&peer), vec![id(2), id(3)]);
    }
}
