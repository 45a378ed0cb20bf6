//! Sending to one peer: connect, say hello, pipeline envelopes, take
//! receipts; on any failure put the unacknowledged messages back and retry
//! with exponential backoff.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use comity_protocol::audit::entry::{Actor, AuditKind};
use comity_protocol::envelope::seal;
use comity_protocol::receipt::Receipt;
use comity_protocol::session::{RejectReason, SessionFrame, WitnessRefusal};
use comity_protocol::{Digest, MessageId, PeerKeys, Timestamp};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, info, warn};

use crate::audit::Fact;
use crate::events::Event;
use crate::node::Shared;
use crate::peers::Peer;
use crate::shutdown::ShutdownSignal;
use crate::store::{OutboundState, OutboundStatus};
use crate::transport::tls::SERVER_NAME;
use crate::transport::{client_config, wire};

/// On shutdown, how long to wait for receipts of what was already sent.
const DRAIN_GRACE: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("cannot resolve {0}")]
    Resolve(String),
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("connection lost: {0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error("{0}")]
    Wire(#[from] crate::transport::wire::WireError),
    #[error("peer broke the protocol: {0}")]
    Protocol(String),
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("timed out waiting for the peer")]
    Timeout,
}

/// Runs until shutdown: the life of one peer's outgoing traffic.
pub async fn run(shared: Arc<Shared>, peer: Arc<Peer>, mut stop: ShutdownSignal) {
    let mut failures: u32 = 0;
    let mut latest = shared.audit.latest();
    loop {
        // Connect when there is something to send: messages, or a
        // checkpoint this peer has not cosigned yet.
        while peer.queue.is_empty() && *latest.borrow() <= shared.audit.cosigned_by(&peer.id()) {
            tokio::select! {
                _ = peer.queue.wait() => {}
                _ = latest.changed() => {}
                _ = stop.triggered() => return,
            }
        }
        if stop.is_triggered() {
            return;
        }
        match session(&shared, &peer, stop.clone()).await {
            Ok(()) => failures = 0,
            Err(e) => {
                let delay = shared.config.retry.delay(failures, rand::random::<f64>());
                failures = failures.saturating_add(1);
                let error = wire::describe(&e);
                warn!(peer = %peer.id().short(), %error, retry_in = ?delay, "delivery interrupted");
                peer.set_error(error.clone(), Timestamp::now().saturating_add(delay));
                shared.emit(Event::PeerDisconnected {
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

struct InFlight {
    order: VecDeque<MessageId>,
    entries: HashMap<MessageId, (Digest, OwnedSemaphorePermit)>,
}

impl InFlight {
    /// Forgets an answered message; `order` drops answered ids from its
    /// front, so it stays as long as the window, not the session.
    fn answered(&mut self, id: &MessageId) {
        self.entries.remove(id);
        while self
            .order
            .front()
            .is_some_and(|front| !self.entries.contains_key(front))
        {
            self.order.pop_front();
        }
    }

    fn take_all(&mut self) -> Vec<MessageId> {
        let ids = self
            .order
            .drain(..)
            .filter(|id| self.entries.contains_key(id))
            .collect();
        self.entries.clear();
        ids
    }
}

async fn session(
    shared: &Arc<Shared>,
    peer: &Arc<Peer>,
    mut stop: ShutdownSignal,
) -> Result<(), SessionError> {
    let limits = &shared.config.limits;
    let addr = tokio::net::lookup_host(peer.config.address.as_str())
        .await
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| SessionError::Resolve(peer.config.address.clone()))?;
    let client = client_config(&shared.tls, peer.id(), limits)
        .map_err(|e| SessionError::Connect(e.to_string()))?;
    let connecting = shared
        .endpoint
        .connect_with(client, addr, SERVER_NAME)
        .map_err(|e| SessionError::Connect(e.to_string()))?;
    // Shutdown must not wait for a peer that does not answer.
    let conn = tokio::select! {
        c = tokio::time::timeout(limits.handshake_timeout(), connecting) => c,
        _ = stop.triggered() => return Ok(()),
    }
    .map_err(|_| SessionError::Timeout)?
    .map_err(|e| SessionError::Connect(e.to_string()))?;

    let (mut send, mut recv) = conn.open_bi().await?;
    wire::write_frame(
        &mut send,
        &SessionFrame::Hello {
            cert: shared.identity.encryption_cert().clone(),
        },
    )
    .await?;
    let hello = tokio::time::timeout(
        limits.handshake_timeout(),
        wire::read_frame(&mut recv, 4096, limits.handshake_timeout()),
    )
    .await
    .map_err(|_| SessionError::Timeout)??;
    let keys = match hello {
        Some(SessionFrame::Hello { cert }) => PeerKeys::new(peer.id(), cert)
            .map_err(|e| SessionError::Protocol(format!("bad encryption key: {e}")))?,
        _ => return Err(SessionError::Protocol("expected hello".into())),
    };
    let known = shared.store.peer_key(&peer.id())?;
    if known.as_ref() != Some(keys.cert()) {
        if known.is_some() {
            shared.audit.note(
                Fact::new(AuditKind::KeyChanged, Actor::Peer)
                    .peer(peer.id())
                    .detail("encryption key"),
            );
        }
        shared.store.put_peer_key(keys.cert())?;
    }
    peer.set_connected(true);
    shared.emit(Event::PeerConnected { peer: peer.id() });
    info!(peer = %peer.id().short(), %addr, "connected");

    // Envelopes written and not yet answered, per connection.
    let window_size = usize::try_from(limits.delivery_window).unwrap_or(usize::MAX);
    let window = Arc::new(Semaphore::new(window_size));
    let in_flight = Arc::new(Mutex::new(InFlight {
        order: VecDeque::new(),
        entries: HashMap::new(),
    }));

    let witnessing = Witnessing::default();
    let reader = read_answers(shared, peer, &keys, &mut recv, &in_flight, &witnessing);
    let writer = async {
        let mut latest = shared.audit.latest();
        loop {
            offer_checkpoint(shared, peer, &witnessing, &latest, &mut send).await?;
            let permit = tokio::select! {
                p = window.clone().acquire_owned() => p.map_err(|_| SessionError::Protocol("window closed".into()))?,
                _ = latest.changed() => continue,
                _ = witnessing.poke.notified() => continue,
                _ = stop.triggered() => break,
            };
            let id = loop {
                if let Some(id) = peer.queue.pop() {
                    break Some(id);
                }
                tokio::select! {
                    _ = peer.queue.wait() => {}
                    _ = latest.changed() => {
                        offer_checkpoint(shared, peer, &witnessing, &latest, &mut send).await?;
                    }
                    _ = witnessing.poke.notified() => {
                        offer_checkpoint(shared, peer, &witnessing, &latest, &mut send).await?;
                    }
                    _ = stop.triggered() => break None,
                }
            };
            let Some(id) = id else { break };
            let Some((bytes, digest, attempt)) = prepare(shared, peer, &keys, id).await? else {
                continue;
            };
            {
                let mut f = in_flight.lock().unwrap_or_else(|p| p.into_inner());
                f.order.push_back(id);
                f.entries.insert(id, (digest, permit));
                peer.set_in_flight(f.entries.len());
            }
            if let Err(e) = wire::write_frame(&mut send, &SessionFrame::Envelope(bytes)).await {
                return Err(e.into());
            }
            shared.emit(Event::Sent {
                id,
                peer: peer.id(),
                attempt,
            });
        }
        // Shutting down: stop sending; give receipts of what was sent a
        // moment to arrive.
        let deadline = tokio::time::Instant::now() + DRAIN_GRACE;
        while window.available_permits() < window_size && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = send.finish();
        Ok::<(), SessionError>(())
    };

    let result = tokio::select! {
        r = reader => r,
        r = writer => r,
    };
    let unanswered = in_flight
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take_all();
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

/// This connection's part in having our checkpoints witnessed by the peer.
#[derive(Default)]
struct Witnessing {
    /// The size the peer says it cosigned last, when it told us (a refusal
    /// for an old-size mismatch); otherwise our record of its cosignatures.
    from: Mutex<Option<u64>>,
    /// The (old size, new size) last offered, so each is offered once.
    offered: Mutex<Option<(u64, u64)>>,
    /// The size whose refusal raised an alarm, so a repeated refusal does
    /// not raise it again.
    alarmed: Mutex<Option<u64>>,
    /// Wakes the writer to offer again.
    poke: tokio::sync::Notify,
}

impl Witnessing {
    fn offered_size(&self) -> Option<u64> {
        self.offered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map(|(_, size)| size)
    }
}

/// Offers the peer our newest durable checkpoint with a consistency proof
/// from what it last cosigned, unless already offered.
async fn offer_checkpoint(
    shared: &Arc<Shared>,
    peer: &Arc<Peer>,
    w: &Witnessing,
    latest: &tokio::sync::watch::Receiver<u64>,
    send: &mut quinn::SendStream,
) -> Result<(), SessionError> {
    let newest = *latest.borrow();
    let old = (*w.from.lock().unwrap_or_else(|p| p.into_inner()))
        .unwrap_or_else(|| shared.audit.cosigned_by(&peer.id()));
    if newest <= old || *w.offered.lock().unwrap_or_else(|p| p.into_inner()) == Some((old, newest))
    {
        return Ok(());
    }
    let offer = match shared.audit.offer(old, newest) {
        Ok(o) => o,
        Err(e) => {
            warn!(peer = %peer.id().short(), error = %e, "cannot offer a checkpoint");
            return Ok(());
        }
    };
    if let Some((size, note, proof)) = offer {
        *w.offered.lock().unwrap_or_else(|p| p.into_inner()) = Some((old, newest));
        let frame = SessionFrame::Checkpoint {
            note,
            old_size: old,
            proof,
        };
        wire::write_frame(send, &frame).await?;
        debug!(peer = %peer.id().short(), size, from = old, "checkpoint offered for witnessing");
    }
    Ok(())
}

/// Loads (sealing it first if needed) the envelope for `id`; `None` when
/// the message is no longer to be sent (delivered, failed, or expired now).
async fn prepare(
    shared: &Arc<Shared>,
    peer: &Arc<Peer>,
    keys: &PeerKeys,
    id: MessageId,
) -> Result<Option<(Vec<u8>, Digest, u32)>, SessionError> {
    let Some((mut msg, mut status)) = shared.store.outbound(&id)? else {
        warn!(%id, "queued message missing from the store");
        return Ok(None);
    };
    if status.state.is_final() {
        return Ok(None);
    }
    let limits = &shared.config.limits;
    let expires = msg
        .created_at
        .saturating_add(limits.max_message_age())
        .saturating_sub(limits.clock_skew());
    if Timestamp::now() >= expires {
        fail(
            shared,
            peer,
            &mut status,
            id,
            "expired: not delivered within the maximum message age".into(),
        )?;
        return Ok(None);
    }
    let (bytes, digest) = match (&msg.envelope, msg.digest) {
        (Some(b), Some(d)) => (b.clone(), d),
        _ => {
            let sealed = seal(
                &shared.identity,
                keys,
                id,
                msg.created_at,
                &msg.body,
                &mut rand::rng(),
            );
            let sealed = match sealed {
                Ok(s) if s.bytes.len() <= limits.max_message_len() => s,
                Ok(s) => {
                    let why = format!(
                        "sealed envelope is {} bytes, above limits.max_message_bytes",
                        s.bytes.len()
                    );
                    fail(shared, peer, &mut status, id, why)?;
                    return Ok(None);
                }
                Err(e) => {
                    fail(shared, peer, &mut status, id, format!("cannot seal: {e}"))?;
                    return Ok(None);
                }
            };
            msg.envelope = Some(sealed.bytes.clone());
            msg.digest = Some(sealed.digest);
            shared.store.put_outbound_message(&msg)?;
            // Once sent, this exact envelope must be what is re-sent after a
            // crash: make it durable first.
            shared.store.commit().await?;
            (sealed.bytes, sealed.digest)
        }
    };
    status.state = OutboundState::Sent;
    status.attempts = status.attempts.saturating_add(1);
    status.sent_at = Some(Timestamp::now());
    shared.audit.note(
        Fact::new(AuditKind::MessageSent, Actor::Node)
            .peer(peer.id())
            .message(id)
            .digest(Some(digest))
            .detail(&format!("attempt {}", status.attempts)),
    );
    shared.store.put_outbound_status(&id, &status)?;
    Ok(Some((bytes, digest, status.attempts)))
}

fn fail(
    shared: &Arc<Shared>,
    peer: &Arc<Peer>,
    status: &mut OutboundStatus,
    id: MessageId,
    reason: String,
) -> Result<(), SessionError> {
    warn!(%id, peer = %peer.id().short(), %reason, "message failed");
    shared.audit.note(
        Fact::new(AuditKind::MessageFailed, Actor::Node)
            .peer(peer.id())
            .message(id)
            .detail(&reason),
    );
    status.state = OutboundState::Failed;
    status.last_error = Some(reason.clone());
    shared.store.put_outbound_status(&id, status)?;
    shared.emit(Event::Failed {
        id,
        peer: peer.id(),
        reason,
    });
    Ok(())
}

async fn read_answers(
    shared: &Arc<Shared>,
    peer: &Arc<Peer>,
    keys: &PeerKeys,
    recv: &mut quinn::RecvStream,
    in_flight: &Arc<Mutex<InFlight>>,
    witnessing: &Witnessing,
) -> Result<(), SessionError> {
    let me = shared.identity.id();
    loop {
        let stall = shared.config.limits.handshake_timeout();
        let frame = match wire::read_frame(recv, 64 * 1024, stall).await? {
            None => {
                return Err(SessionError::Protocol(
                    "the peer ended the session (shutting down?)".into(),
                ))
            }
            Some(f) => f,
        };
        peer.contact();
        let (id, outcome) = match frame {
            SessionFrame::Receipt(bytes) => match Receipt::from_bytes(&bytes) {
                Ok(r) => (r.statement.message_id, Ok((r, bytes))),
                // Its message stays in flight: reconnect, resend, and let
                // the peer answer again.
                Err(e) => return Err(SessionError::Protocol(format!("undecodable receipt: {e}"))),
            },
            SessionFrame::Rejected { id, reason, detail } => (id, Err((reason, detail))),
            SessionFrame::Cosigned { size, line } => {
                // Only for what we offered and it has not cosigned yet: a
                // repeated or unasked cosignature costs nothing.
                if witnessing.offered_size() != Some(size)
                    || size <= shared.audit.cosigned_by(&peer.id())
                {
                    debug!(peer = %peer.id().short(), size, "cosignature not asked for: ignored");
                    continue;
                }
                match shared.audit.accept_cosignature(&peer.id(), size, &line) {
                    Ok(()) => {
                        shared.audit.note(
                            Fact::new(AuditKind::CheckpointCosigned, Actor::Peer)
                                .peer(peer.id())
                                .detail(&size.to_string()),
                        );
                        *witnessing.from.lock().unwrap_or_else(|p| p.into_inner()) = Some(size);
                    }
                    Err(e) => warn!(peer = %peer.id().short(), error = %e, "cosignature refused"),
                }
                continue;
            }
            SessionFrame::CheckpointRefused {
                size,
                witnessed_size,
                reason,
                detail,
            } => {
                let ours = shared.audit.size();
                let mut alarmed = witnessing.alarmed.lock().unwrap_or_else(|p| p.into_inner());
                if witnessing.offered_size() != Some(size) || *alarmed == Some(size) {
                    debug!(peer = %peer.id().short(), size, "refusal of nothing offered, or repeated: ignored");
                } else if reason == WitnessRefusal::OldSizeMismatch && witnessed_size <= ours {
                    *witnessing.from.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some(witnessed_size);
                    witnessing.poke.notify_one();
                } else {
                    *alarmed = Some(size);
                    let detail: String = detail.chars().take(200).collect();
                    shared.audit.note(
                        Fact::new(AuditKind::CheckpointRefused, Actor::Peer)
                            .peer(peer.id())
                            .detail(&format!("{} at size {size}", reason.name())),
                    );
                    shared.audit.alarm(&format!(
                        "witness {} refused our checkpoint of size {size} ({}; it cosigned size {witnessed_size}, our log has {ours} entries): {detail}",
                        peer.id(),
                        reason.name()
                    ));
                }
                continue;
            }
            _ => return Err(SessionError::Protocol("unexpected frame".into())),
        };
        let digest = in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entries
            .get(&id)
            .map(|(d, _)| *d);
        let Some(digest) = digest else {
            debug!(%id, "answer for a message not in flight");
            continue;
        };
        let answered = || {
            let mut f = in_flight.lock().unwrap_or_else(|p| p.into_inner());
            f.answered(&id);
            peer.set_in_flight(f.entries.len());
        };
        let Some(mut status) = shared.store.outbound_status(&id)? else {
            continue;
        };
        match outcome {
            Ok((receipt, bytes)) => {
                if let Err(e) = receipt.verify(&me, keys, &id, &digest) {
                    // Left in flight: the session ends, the message is
                    // resent after reconnecting, and the peer answers again.
                    status.last_error = Some(format!("receipt refused: {e}"));
                    shared.store.put_outbound_status(&id, &status)?;
                    return Err(SessionError::Protocol(format!(
                        "receipt for {id} refused: {e}"
                    )));
                }
                answered();
                shared.audit.note(
                    Fact::new(AuditKind::ReceiptReceived, Actor::Peer)
                        .peer(peer.id())
                        .message(id)
                        .digest(Some(digest)),
                );
                status.state = OutboundState::Delivered;
                status.delivered_at = Some(Timestamp::now());
                status.receipt = Some(bytes);
                status.last_error = None;
                shared.store.put_outbound_status(&id, &status)?;
                let shared2 = shared.clone();
                let peer_id = peer.id();
                // Delivered counts once the receipt is on disk; the commit
                // coalesces with others (group commit).
                tokio::spawn(async move {
                    if shared2.store.commit().await.is_ok() {
                        shared2.emit(Event::Delivered { id, peer: peer_id });
                    }
                });
            }
            Err((reason, detail)) => {
                // The peer's words, bounded before they are kept and shown.
                let detail: String = detail.chars().take(200).collect();
                let error = format!("refused by peer ({reason}): {detail}");
                if reason.is_permanent() {
                    answered();
                    fail(shared, peer, &mut status, id, error)?;
                    continue;
                }
                // The peer may accept it later: keep it (it is requeued with
                // everything else in flight) and back off.
                status.last_error = Some(error.clone());
                if reason == RejectReason::UnknownEncryptionKey {
                    // Re-seal to the key the peer presents next time.
                    if let Some((mut msg, _)) = shared.store.outbound(&id)? {
                        msg.envelope = None;
                        msg.digest = None;
                        shared.store.put_outbound_message(&msg)?;
                    }
                }
                shared.store.put_outbound_status(&id, &status)?;
                return Err(SessionError::Protocol(error));
            }
        }
    }
}
