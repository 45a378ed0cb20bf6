//! Receiving: accept pinned peers, and on each stream check → open →
//! store → flush → receipt. A receipt never leaves before the message it
//! names is on disk (group commit: one flush for every message that arrived
//! while the previous flush ran).

use std::sync::Arc;

use comity_protocol::audit::entry::{Actor, AuditKind};
use comity_protocol::envelope::{check, CheckPolicy, EnvelopeError, SeenMessages};
use comity_protocol::receipt::Receipt;
use comity_protocol::session::{RejectReason, SessionFrame, MAX_CHECKPOINT_NOTE, MAX_PROOF_HASHES};
use comity_protocol::{Digest, MessageId, NodeId, PeerKeys, Timestamp};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::audit::Fact;
use crate::business;
use crate::events::Event;
use crate::node::Shared;
use crate::shutdown::ShutdownSignal;
use crate::store::{InboundMessage, Rejection, Store};
use crate::transport::{peer_of, wire};
use tokio_util::task::TaskTracker;

/// Answers computed but not yet written, per stream. Bounded, so a peer
/// that does not read its receipts stops being read from (backpressure).
const ANSWER_QUEUE: usize = 1024;

/// Accepts connections until shutdown. Stream tasks go on `tasks`, so
/// that shutdown waits for what they are answering (and their audit
/// entries come before the node's last one).
pub async fn accept_loop(shared: Arc<Shared>, mut stop: ShutdownSignal, tasks: TaskTracker) {
    loop {
        let incoming = tokio::select! {
            i = shared.endpoint.accept() => i,
            _ = stop.triggered() => return,
        };
        let Some(incoming) = incoming else { return };
        let shared = shared.clone();
        let stop = stop.clone();
        let streams = tasks.clone();
        // The connection task itself waits for the peer to close (up to 5 s
        // at shutdown): not tracked, or every stop would wait that long.
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            let connecting = match incoming.accept() {
                Ok(c) => c,
                Err(e) => {
                    debug!(%remote, error = %e, "incoming connection failed");
                    return;
                }
            };
            let timeout = shared.config.limits.handshake_timeout();
            let conn = match tokio::time::timeout(timeout, connecting).await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    // Unpinned keys are reported by the TLS verifier itself.
                    debug!(%remote, error = %e, "handshake failed");
                    return;
                }
                Err(_) => {
                    debug!(%remote, "handshake timed out");
                    return;
                }
            };
            serve_connection(shared, conn, stop, streams).await;
        });
    }
}

async fn serve_connection(
    shared: Arc<Shared>,
    conn: quinn::Connection,
    mut stop: ShutdownSignal,
    tasks: TaskTracker,
) {
    let Some(peer) = peer_of(&conn) else {
        conn.close(1u32.into(), b"no peer identity");
        return;
    };
    let Some(_slot) = shared.connection_slot(peer) else {
        warn!(peer = %peer.short(), "too many connections from this peer; refusing one");
        conn.close(2u32.into(), b"too many connections");
        return;
    };
    info!(peer = %peer.short(), remote = %conn.remote_address(), "peer connected");
    loop {
        let stream = tokio::select! {
            s = conn.accept_bi() => s,
            _ = stop.triggered() => break,
        };
        match stream {
            Ok((send, recv)) => {
                tasks.spawn(serve_stream(shared.clone(), peer, send, recv, stop.clone()));
            }
            Err(e) => {
                debug!(peer = %peer.short(), error = %e, "connection ended");
                return;
            }
        }
    }
    // Shutdown: let stream tasks answer what they hold, then close.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), conn.closed()).await;
}

enum Answer {
    Frame(SessionFrame),
    /// The stream is broken: close it after what came before.
    Close(&'static str),
}

async fn serve_stream(
    shared: Arc<Shared>,
    peer: NodeId,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    mut stop: ShutdownSignal,
) {
    let limits = &shared.config.limits;
    let hello = tokio::time::timeout(
        limits.handshake_timeout(),
        wire::read_frame(&mut recv, 4096, limits.handshake_timeout()),
    )
    .await;
    let keys = match hello {
        Ok(Ok(Some(SessionFrame::Hello { cert }))) => match PeerKeys::new(peer, cert) {
            Ok(k) => k,
            Err(e) => {
                record_bad_stream(&shared, peer, &format!("encryption key refused: {e}"));
                let _ = recv.stop(1u32.into());
                return;
            }
        },
        Ok(Err(wire::WireError::Read(_))) | Ok(Ok(None)) => return,
        _ => {
            record_bad_stream(&shared, peer, "stream did not start with a hello");
            let _ = recv.stop(1u32.into());
            return;
        }
    };
    let hello = SessionFrame::Hello {
        cert: shared.identity.encryption_cert().clone(),
    };
    if wire::write_frame(&mut send, &hello).await.is_err() {
        return;
    }

    let (tx, rx) = mpsc::channel::<Answer>(ANSWER_QUEUE);
    let writer = tokio::spawn(write_answers(shared.store.clone(), send, rx));
    let max_frame = limits.max_message_len() + 64;
    loop {
        let incoming = tokio::select! {
            f = wire::read_incoming(&mut recv, max_frame, limits.handshake_timeout()) => f,
            _ = stop.triggered() => break,
        };
        let answer = match incoming {
            Ok(wire::Incoming::End) => break,
            Ok(wire::Incoming::Frame(SessionFrame::Envelope(bytes))) => {
                Answer::Frame(receive(&shared, peer, &keys, &bytes))
            }
            Ok(wire::Incoming::Frame(SessionFrame::Checkpoint {
                note,
                old_size,
                proof,
            })) => {
                if note.len() > MAX_CHECKPOINT_NOTE || proof.len() > MAX_PROOF_HASHES {
                    record_bad_stream(&shared, peer, "oversize checkpoint or proof");
                    Answer::Close("oversize checkpoint")
                } else {
                    Answer::Frame(witness(&shared, peer, &note, old_size, &proof))
                }
            }
            Ok(wire::Incoming::Oversize { len, id: Some(id) }) => {
                let detail = format!("{len} bytes, above this node's limit of {max_frame}");
                Answer::Frame(reject(
                    &shared,
                    peer,
                    Some(id),
                    &[],
                    RejectReason::TooLarge,
                    detail,
                ))
            }
            Ok(wire::Incoming::Oversize { len, id: None }) => {
                record_bad_stream(
                    &shared,
                    peer,
                    &format!("oversize frame ({len} bytes) that is not an envelope"),
                );
                Answer::Close("oversize frame")
            }
            Ok(wire::Incoming::Frame(_)) => {
                record_bad_stream(&shared, peer, "unexpected frame type");
                Answer::Close("unexpected frame")
            }
            Err(wire::WireError::Decode(e)) => {
                record_bad_stream(&shared, peer, &e.to_string());
                Answer::Close("bad frame")
            }
            Err(e) => {
                // The connection went away (peer stopped, network): not the
                // peer's fault, nothing to record.
                debug!(peer = %peer.short(), error = %e, "stream ended");
                break;
            }
        };
        let closing = matches!(answer, Answer::Close(_));
        if tx.send(answer).await.is_err() || closing {
            let _ = recv.stop(2u32.into());
            break;
        }
    }
    drop(tx);
    let _ = writer.await;
}

/// Writes answers in order; flushes the store once before each batch so
/// that every receipt in it names a message already on disk.
async fn write_answers(store: Store, mut send: quinn::SendStream, mut rx: mpsc::Receiver<Answer>) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, ANSWER_QUEUE).await > 0 {
        if let Err(e) = store.commit().await {
            // Nothing is receipted that is not durable: drop the stream; the
            // sender will retry and meet the de-duplication index.
            warn!(error = %e, "cannot flush the store; not sending receipts");
            let _ = send.reset(3u32.into());
            return;
        }
        for answer in batch.drain(..) {
            match answer {
                Answer::Frame(f) => {
                    if wire::write_frame(&mut send, &f).await.is_err() {
                        return;
                    }
                }
                Answer::Close(why) => {
                    debug!(why, "closing stream");
                    let _ = send.finish();
                    return;
                }
            }
        }
    }
    let _ = send.finish();
    let _ = send.stopped().await;
}

struct SeenIn<'a>(&'a Store);

impl SeenMessages for SeenIn<'_> {
    fn seen(&self, sender: &NodeId, id: &MessageId) -> Option<Digest> {
        // A read error means "unknown"; the insert below checks again.
        self.0.seen(sender, id).ok().flatten().map(|e| e.digest)
    }
}

/// One envelope from `peer`: the answer to send once the store is flushed.
fn receive(shared: &Shared, peer: NodeId, keys: &PeerKeys, bytes: &[u8]) -> SessionFrame {
    let now = Timestamp::now();
    if !shared.pins.contains(&peer) {
        let detail = "this peer is no longer pinned".to_string();
        return reject(
            shared,
            peer,
            envelope_id(bytes),
            bytes,
            RejectReason::UnknownSender,
            detail,
        );
    }
    let limits = &shared.config.limits;
    let policy = CheckPolicy {
        now,
        max_future_skew: limits.clock_skew(),
        max_age: limits.max_message_age(),
        max_envelope_bytes: limits.max_message_len(),
    };
    let me = &shared.identity;
    let result = check(
        bytes,
        me,
        std::slice::from_ref(keys),
        &SeenIn(&shared.store),
        &policy,
    )
    .and_then(|checked| checked.open(me));
    let opened = match result {
        Ok(o) => o,
        Err(EnvelopeError::AlreadyReceived { id, digest }) => {
            return match shared.store.seen(&peer, &id) {
                Ok(Some(entry)) => {
                    shared.audit.note(
                        Fact::new(AuditKind::ReceiptSent, Actor::Node)
                            .peer(peer)
                            .message(id)
                            .digest(Some(digest))
                            .detail("duplicate"),
                    );
                    SessionFrame::Receipt(entry.receipt)
                }
                _ => reject(
                    shared,
                    peer,
                    Some(id),
                    bytes,
                    RejectReason::Unavailable,
                    "store read failed".into(),
                ),
            };
        }
        Err(e) => {
            let id = envelope_id(bytes);
            let reason = e.reject_reason().unwrap_or(RejectReason::Invalid);
            return reject(shared, peer, id, bytes, reason, e.to_string());
        }
    };
    let receipt = Receipt::sign(me, &opened, now);
    let receipt_bytes = match receipt.to_bytes() {
        Ok(b) => b,
        Err(e) => {
            return reject(
                shared,
                peer,
                Some(opened.header.id),
                bytes,
                RejectReason::Unavailable,
                e.to_string(),
            )
        }
    };
    let id = opened.header.id;
    let kind = opened.header.kind;
    let status_update = match &opened.body {
        comity_protocol::message::Body::StatusUpdate(u) => Some(u.clone()),
        _ => None,
    };
    if let Some(update) = &status_update {
        // A duplicate of an update already applied is answered with its
        // receipt above (AlreadyReceived); this is a new one.
        if let Err(why) = business::check_incoming_status(&shared.store, peer, update) {
            return reject(shared, peer, Some(id), bytes, RejectReason::Invalid, why);
        }
    }
    let record = InboundMessage {
        id,
        sender: opened.header.sender,
        kind,
        body: opened.body,
        created_at: opened.header.created_at,
        received_at: now,
        envelope: bytes.to_vec(),
        digest: opened.envelope_digest,
        receipt: receipt_bytes.clone(),
    };
    // The entries go first: whatever the store keeps of this, the log has.
    shared.audit.note(
        Fact::new(AuditKind::MessageReceived, Actor::Peer)
            .peer(peer)
            .message(id)
            .digest(Some(record.digest))
            .detail(kind.name()),
    );
    shared.audit.note(
        Fact::new(AuditKind::ReceiptSent, Actor::Node)
            .peer(peer)
            .message(id)
            .digest(Some(record.digest)),
    );
    match shared.store.insert_inbound_if_new(&record) {
        Ok(None) => {
            if let Some(update) = status_update {
                shared.audit.note(
                    Fact::new(AuditKind::StatusChanged, Actor::Peer)
                        .peer(peer)
                        .message(update.regarding)
                        .detail(update.status.name()),
                );
                if let Err(e) = business::on_status_received(&shared.store, peer, id, &update, now)
                {
                    warn!(error = %e, "cannot record a status update");
                }
            }
            shared.emit(Event::Received {
                id,
                from: peer,
                kind,
            });
            SessionFrame::Receipt(receipt_bytes)
        }
        // A copy arrived on another stream at the same time.
        Ok(Some(existing)) if existing.digest == record.digest => {
            SessionFrame::Receipt(existing.receipt)
        }
        Ok(Some(_)) => reject(
            shared,
            peer,
            Some(id),
            bytes,
            RejectReason::IdReused,
            "message id already received with different content".into(),
        ),
        Err(e) => {
            warn!(error = %e, "cannot store a received message");
            reject(
                shared,
                peer,
                Some(id),
                bytes,
                RejectReason::Unavailable,
                "receiver cannot store it now".into(),
            )
        }
    }
}

/// The message id, if the bytes decode far enough to say (for the sender's
/// bookkeeping; it is not trusted for anything else).
fn envelope_id(bytes: &[u8]) -> Option<MessageId> {
    comity_protocol::envelope::Envelope::from_bytes(bytes)
        .ok()
        .map(|e| e.header.id)
}

fn reject(
    shared: &Shared,
    peer: NodeId,
    id: Option<MessageId>,
    bytes: &[u8],
    reason: RejectReason,
    detail: String,
) -> SessionFrame {
    // Errors may quote the sender's own strings: bound what is logged,
    // stored and sent back.
    let detail: String = detail.chars().take(200).collect();
    warn!(peer = %peer.short(), ?id, %reason, %detail, "envelope refused");
    let rejection = Rejection {
        at: Timestamp::now(),
        peer,
        id,
        digest: comity_protocol::envelope::envelope_digest(bytes),
        reason,
        detail: detail.clone(),
    };
    shared.audit.note(
        Fact::new(AuditKind::EnvelopeRejected, Actor::Node)
            .peer(peer)
            .digest((!bytes.is_empty()).then_some(rejection.digest))
            .detail(reason.name()),
    );
    if let Err(e) = shared.store.record_rejection(&rejection) {
        warn!(error = %e, "cannot record a rejection");
    }
    shared.emit(Event::Rejected { peer, id, reason });
    SessionFrame::Rejected {
        id: id.unwrap_or(MessageId([0; 16])),
        reason,
        detail,
    }
}

fn record_bad_stream(shared: &Shared, peer: NodeId, why: &str) {
    warn!(peer = %peer.short(), why, "peer sent a bad frame; closing the stream");
    let rejection = Rejection {
        at: Timestamp::now(),
        peer,
        id: None,
        digest: Digest([0; 32]),
        reason: RejectReason::Malformed,
        detail: why.chars().take(200).collect(),
    };
    shared.audit.note(
        Fact::new(AuditKind::EnvelopeRejected, Actor::Node)
            .peer(peer)
            .detail(&rejection.detail),
    );
    if let Err(e) = shared.store.record_rejection(&rejection) {
        warn!(error = %e, "cannot record a rejection");
    }
    shared.emit(Event::Rejected {
        peer,
        id: None,
        reason: RejectReason::Malformed,
    });
}

/// This node as `peer`'s witness: cosign its checkpoint if it extends the
/// last one cosigned; otherwise refuse, and if the log misbehaved (rolled
/// back, forked, rewritten), record it and raise an alarm.
fn witness(
    shared: &Shared,
    peer: NodeId,
    note: &str,
    old_size: u64,
    proof: &[Digest],
) -> SessionFrame {
    match shared
        .audit
        .witness(&shared.identity, &peer, note, old_size, proof)
    {
        Ok(w) => {
            if w.new {
                shared.audit.note(
                    Fact::new(AuditKind::CheckpointCosigned, Actor::Node)
                        .peer(peer)
                        .detail(&w.size.to_string()),
                );
            }
            SessionFrame::Cosigned {
                size: w.size,
                line: w.line,
            }
        }
        Err(r) => {
            if r.reason.is_alarm() {
                let text = format!(
                    "peer {peer} presented checkpoint {} that is not consistent with size {} cosigned before ({}): {}",
                    r.size, r.witnessed_size, r.reason.name(), r.detail
                );
                shared.audit.note(
                    Fact::new(AuditKind::CheckpointRefused, Actor::Node)
                        .peer(peer)
                        .detail(&format!("{} at size {}", r.reason.name(), r.size)),
                );
                shared.audit.alarm(&text);
            } else {
                debug!(peer = %peer.short(), reason = r.reason.name(), detail = %r.detail, "checkpoint not cosigned");
            }
            SessionFrame::CheckpointRefused {
                size: r.size,
                witnessed_size: r.witnessed_size,
                reason: r.reason,
                detail: r.detail.chars().take(200).collect(),
            }
        }
    }
}
