//! Receiving, the IO side: accept pinned peers' connections, and on each
//! stream read frames, let [`crate::session::receiver`] say what each one
//! asks, do it ([`super::receive`]), and write the answers in order — each
//! batch only after the store is flushed, so a receipt never leaves before
//! the message it names is on disk (group commit).

use std::sync::Arc;

use comity_protocol::session::{RejectReason, SessionFrame};
use comity_protocol::NodeId;
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::input::next_input;
use super::{attachments_in, receive, refusals};
use crate::context::{Context, OVER_BUDGET, UNPINNED};
use crate::session::receiver::{Input, Receiver, Step};
use crate::session::SessionVersion;
use crate::shutdown::ShutdownSignal;
use crate::store::Store;
use crate::transport::tls::alpn_of;
use crate::transport::{peer_of, wire};

/// Answers computed but not yet written, per stream. Bounded, so a peer
/// that does not read its receipts stops being read from (backpressure).
const ANSWER_QUEUE: usize = 1024;

/// Accepts connections until shutdown. Stream tasks go on `tasks`, so
/// that shutdown waits for what they are answering (and their audit
/// entries come before the node's last one).
pub async fn accept_loop(ctx: Arc<Context>, mut stop: ShutdownSignal, tasks: TaskTracker) {
    loop {
        let incoming = tokio::select! {
            i = ctx.endpoint.accept() => i,
            _ = stop.triggered() => return,
        };
        let Some(incoming) = incoming else { return };
        // Decided here, not in the task, so that the count is exact.
        let Some((incoming, slot)) = ctx.handshakes.admit(incoming) else {
            continue;
        };
        let ctx = ctx.clone();
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
            let timeout = ctx.config.limits.handshake_timeout();
            let done = tokio::time::timeout(timeout, connecting).await;
            drop(slot); // the handshake is over, one way or the other
            let conn = match done {
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
            serve_connection(ctx, conn, stop, streams).await;
        });
    }
}

async fn serve_connection(
    ctx: Arc<Context>,
    conn: quinn::Connection,
    mut stop: ShutdownSignal,
    tasks: TaskTracker,
) {
    let Some(peer) = peer_of(&conn) else {
        conn.close(1u32.into(), b"no peer identity");
        return;
    };
    let Some(_slot) = ctx.connection_slot(peer, &conn, true) else {
        // Said once per connection attempt of a pinned peer: debug, not warn
        // (the peer chooses how often).
        debug!(peer = %peer.short(), "too many connections from this peer; refusing one");
        conn.close(2u32.into(), b"too many connections");
        return;
    };
    // Registered first, then checked: an unpinning between the handshake
    // and here either sees this connection or is seen by this check.
    if !ctx.is_pinned(&peer) {
        conn.close(UNPINNED.into(), b"not pinned");
        return;
    }
    if ctx.budgets.backing_off(&peer, std::time::Instant::now()) {
        debug!(peer = %peer.short(), "peer over its budget; connection refused during the back-off");
        conn.close(OVER_BUDGET.into(), b"over budget");
        return;
    }
    debug!(peer = %peer.short(), remote = %conn.remote_address(), "peer connected");
    let version = SessionVersion::of_alpn(alpn_of(&conn).as_deref());
    loop {
        let stream = tokio::select! {
            s = conn.accept_bi() => s,
            _ = stop.triggered() => break,
        };
        match stream {
            Ok(_) if !ctx.is_pinned(&peer) => {
                conn.close(UNPINNED.into(), b"not pinned");
                return;
            }
            Ok((send, recv)) => {
                tasks.spawn(serve_stream(
                    ctx.clone(),
                    peer,
                    version,
                    send,
                    recv,
                    stop.clone(),
                ));
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

/// The peer's hello: a read error or a clean end is quiet; a timeout or
/// anything but a hello is the peer's fault.
async fn hello_input(ctx: &Context, recv: &mut quinn::RecvStream) -> Option<Input> {
    let limits = &ctx.config.limits;
    let read = wire::read_frame(recv, 4096, limits.handshake_timeout());
    match tokio::time::timeout(limits.handshake_timeout(), read).await {
        Ok(Ok(Some(frame))) => Some(Input::Frame(frame)),
        Ok(Err(wire::WireError::Read(_))) | Ok(Ok(None)) => None,
        Ok(Err(e)) => Some(Input::Undecodable(e.to_string())),
        Err(_) => Some(Input::Undecodable("no hello in time".into())),
    }
}

async fn serve_stream(
    ctx: Arc<Context>,
    peer: NodeId,
    version: SessionVersion,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    mut stop: ShutdownSignal,
) {
    let mut session = Receiver::new(peer).speaking(version);
    let Some(input) = hello_input(&ctx, &mut recv).await else {
        return;
    };
    let keys = match session.on_input(input, ctx.is_pinned(&peer)) {
        Step::Hello(keys) => keys,
        Step::Close(bad) => {
            refusals::record_bad_stream(&ctx, peer, &bad.to_string());
            let _ = recv.stop(1u32.into());
            return;
        }
        Step::Unpinned => {
            let _ = recv.stop(UNPINNED.into());
            return;
        }
        Step::AttachmentOffer { id, index } => {
            attachments_in::serve(ctx, peer, id, index, send, recv, stop).await;
            return;
        }
        _ => return,
    };
    let hello = SessionFrame::Hello {
        cert: ctx.identity().encryption_cert().clone(),
    };
    if wire::write_frame(&mut send, &hello).await.is_err() {
        return;
    }

    let (tx, rx) = mpsc::channel::<Answer>(ANSWER_QUEUE);
    let writer = tokio::spawn(write_answers(ctx.store.clone(), send, rx));
    let limits = &ctx.config.limits;
    let max_frame = limits.max_message_len() + 64;
    loop {
        let input = tokio::select! {
            i = next_input(&mut recv, max_frame, limits.handshake_timeout()) => i,
            _ = stop.triggered() => break,
        };
        let Some(input) = input else { break };
        let answer = match session.on_input(input, ctx.is_pinned(&peer)) {
            Step::Receive { envelope, resends } => Answer::Frame(receive::envelope(
                &ctx, peer, &keys, version, &envelope, resends,
            )),
            Step::Witness {
                note,
                old_size,
                proof,
            } => Answer::Frame(receive::witness(&ctx, peer, &note, old_size, &proof)),
            Step::WitnessRestoration(claim) => {
                Answer::Frame(receive::witness_restoration(&ctx, peer, &claim))
            }
            Step::RejectOversize { id, len } => {
                let detail = format!("{len} bytes, above this node's limit of {max_frame}");
                Answer::Frame(refusals::reject(
                    &ctx,
                    peer,
                    Some(id),
                    &[],
                    RejectReason::TooLarge,
                    detail,
                ))
            }
            Step::Close(bad) => {
                refusals::record_bad_stream(&ctx, peer, &bad.to_string());
                Answer::Close("bad stream")
            }
            Step::Unpinned => {
                info!(peer = %peer.short(), "peer no longer pinned; closing its stream");
                let _ = recv.stop(UNPINNED.into());
                break;
            }
            Step::Stop | Step::Hello(_) | Step::AttachmentOffer { .. } => break,
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
