//! What the sending side records: a message sealed and sent, delivered
//! (receipt held), failed, or to be retried; the peer's new keys; its
//! cosignatures and refusals as witness. Each a store write and an audit
//! entry, in that order of entry first — but a cosignature, which is kept
//! beside its checkpoint and is no entry.

use std::sync::Arc;

use comity_protocol::audit::entry::{Actor, AuditKind};
use comity_protocol::envelope::SealError;
use comity_protocol::receipt::ReceiptError;
use comity_protocol::{Digest, MessageId, PeerKeys, Timestamp};
use tracing::{debug, warn};

use crate::audit::Fact;
use crate::context::Context;
use crate::events::Event;
use crate::outbox::seal_for;
use crate::peers::Peer;
use crate::session::sender::Action;
use crate::store::alarms::AlarmKind;
use crate::store::{OutboundStatus, StoreError};

/// Why a session ends after an answer about one message.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Ended {
    /// Refused for now; it is tried again after reconnecting.
    #[error("{0}")]
    Retry(String),
    #[error("receipt for {id} refused: {error}")]
    ReceiptRefused { id: MessageId, error: ReceiptError },
}

/// Stores the peer's encryption key certificate if it changed.
pub(crate) fn peer_keys(ctx: &Context, peer: &Peer, keys: &PeerKeys) -> Result<(), StoreError> {
    let known = ctx.store.peer_key(&peer.id())?;
    if known.as_ref() != Some(keys.cert()) {
        if known.is_some() {
            ctx.audit.note(
                Fact::new(AuditKind::KeyChanged, Actor::Peer)
                    .peer(peer.id())
                    .detail("encryption key"),
            );
        }
        ctx.store.put_peer_key(keys.cert())?;
    }
    Ok(())
}

/// Why an envelope could not be prepared now (it stays queued).
#[derive(Debug, thiserror::Error)]
pub(crate) enum PrepareError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Sign(comity_protocol::identity::SignError),
}

/// An envelope ready to write.
pub(crate) struct Prepared {
    pub bytes: Vec<u8>,
    pub digest: Digest,
    pub attempt: u32,
    /// The failed message this one resends.
    pub resend_of: Option<MessageId>,
}

/// Loads (sealing it first if needed) the envelope for `id` and records the
/// attempt; `None` when the message is no longer to be sent (delivered,
/// failed, or expired now).
pub(crate) async fn prepare(
    ctx: &Arc<Context>,
    peer: &Peer,
    keys: &PeerKeys,
    id: MessageId,
) -> Result<Option<Prepared>, PrepareError> {
    let Some((mut msg, mut status)) = ctx.store.outbound(&id)? else {
        warn!(%id, "queued message missing from the store");
        return Ok(None);
    };
    if status.state.is_final() {
        return Ok(None);
    }
    let limits = &ctx.config.limits;
    let expires = msg
        .created_at
        .saturating_add(limits.max_message_age())
        .saturating_sub(limits.clock_skew());
    if Timestamp::now() >= expires {
        let why = "expired: not delivered within the maximum message age".to_string();
        fail(ctx, peer, &mut status, id, why)?;
        return Ok(None);
    }
    let (bytes, digest) = match (&msg.envelope, msg.digest) {
        (Some(b), Some(d)) => (b.clone(), d),
        _ => {
            let attachments = ctx.store.outbound_attachments(&id)?;
            let sealed = match seal_for(ctx, keys, &msg, &attachments) {
                Ok(s) => s,
                Err(SealError::TooLarge { len, .. }) => {
                    let why =
                        format!("sealed envelope is {len} bytes, above limits.max_message_bytes");
                    fail(ctx, peer, &mut status, id, why)?;
                    return Ok(None);
                }
                // The identity key's token did not sign: a passing fault,
                // not the message's. The session ends and the message goes
                // back to the queue, to be sealed on the next.
                Err(SealError::Sign(e)) => {
                    status.retry_later(format!("cannot seal now: {e}"));
                    ctx.store.put_outbound_status(&id, &status)?;
                    return Err(PrepareError::Sign(e));
                }
                Err(e) => {
                    fail(ctx, peer, &mut status, id, format!("cannot seal: {e}"))?;
                    return Ok(None);
                }
            };
            msg.envelope = Some(sealed.bytes.clone());
            msg.digest = Some(sealed.digest);
            ctx.store.put_outbound_message(&msg)?;
            // Once sent, this exact envelope must be what is re-sent after a
            // crash: make it durable first.
            ctx.store.commit().await?;
            (sealed.bytes, sealed.digest)
        }
    };
    let attempt = status.sent(Timestamp::now());
    ctx.audit.note(
        Fact::new(AuditKind::MessageSent, Actor::Node)
            .peer(peer.id())
            .message(id)
            .digest(Some(digest))
            .detail(&format!("attempt {attempt}")),
    );
    ctx.store.put_outbound_status(&id, &status)?;
    Ok(Some(Prepared {
        bytes,
        digest,
        attempt,
        resend_of: ctx.store.resend_of(&id)?,
    }))
}

/// `id` cannot be sent on this session, for `why`; it stays queued.
pub(crate) fn held_back(
    ctx: &Context,
    peer: &Peer,
    id: MessageId,
    why: &str,
) -> Result<(), StoreError> {
    let Some(mut status) = ctx.store.outbound_status(&id)? else {
        return Ok(());
    };
    if status.last_error.as_deref() != Some(why) {
        warn!(%id, peer = %peer.id().short(), why, "message held back");
        status.retry_later(why.to_string());
        ctx.store.put_outbound_status(&id, &status)?;
    }
    Ok(())
}

/// `id` can never be sent, for `reason`: failed, audited, announced.
pub(crate) fn failed(
    ctx: &Context,
    peer: &Peer,
    id: MessageId,
    reason: String,
) -> Result<(), StoreError> {
    match ctx.store.outbound_status(&id)? {
        Some(mut status) if !status.state.is_final() => fail(ctx, peer, &mut status, id, reason),
        _ => Ok(()),
    }
}

fn fail(
    ctx: &Context,
    peer: &Peer,
    status: &mut OutboundStatus,
    id: MessageId,
    reason: String,
) -> Result<(), StoreError> {
    warn!(%id, peer = %peer.id().short(), %reason, "message failed");
    ctx.audit.note(
        Fact::new(AuditKind::MessageFailed, Actor::Node)
            .peer(peer.id())
            .message(id)
            .detail(&reason),
    );
    status.failed(reason.clone());
    ctx.store.put_outbound_status(&id, status)?;
    ctx.emit(Event::Failed {
        id,
        peer: peer.id(),
        reason,
    });
    Ok(())
}

/// Records what an answer about a message means; `Some` when the session
/// must end because of it. `log_size` is what the session core was told.
pub(crate) fn apply(
    ctx: &Arc<Context>,
    peer: &Peer,
    action: Action,
    log_size: u64,
) -> Result<Option<Ended>, StoreError> {
    match action {
        // Handled by the session (it starts the transfers).
        Action::SendAttachments { .. } => Ok(None),
        Action::Delivered {
            id,
            digest,
            receipt,
        } => {
            let Some(mut status) = ctx.store.outbound_status(&id)? else {
                return Ok(None);
            };
            ctx.audit.note(
                Fact::new(AuditKind::ReceiptReceived, Actor::Peer)
                    .peer(peer.id())
                    .message(id)
                    .digest(Some(digest)),
            );
            status.delivered(receipt, Timestamp::now());
            ctx.store.put_outbound_status(&id, &status)?;
            // Delivered counts once the receipt is on disk; the commit
            // coalesces with others (group commit).
            let ctx = ctx.clone();
            let peer = peer.id();
            tokio::spawn(async move {
                if ctx.store.commit().await.is_ok() {
                    ctx.emit(Event::Delivered { id, peer });
                }
            });
            Ok(None)
        }
        Action::Failed { id, error } => {
            if let Some(mut status) = ctx.store.outbound_status(&id)? {
                fail(ctx, peer, &mut status, id, error)?;
            }
            Ok(None)
        }
        Action::Retry { id, error, reseal } => {
            if let Some(mut status) = ctx.store.outbound_status(&id)? {
                status.retry_later(error.clone());
                if reseal {
                    // Re-seal to the key the peer presents next time.
                    if let Some((mut msg, _)) = ctx.store.outbound(&id)? {
                        msg.envelope = None;
                        msg.digest = None;
                        ctx.store.put_outbound_message(&msg)?;
                    }
                }
                ctx.store.put_outbound_status(&id, &status)?;
            }
            Ok(Some(Ended::Retry(error)))
        }
        Action::ReceiptRefused { id, error } => {
            if let Some(mut status) = ctx.store.outbound_status(&id)? {
                status.retry_later(format!("receipt refused: {error}"));
                ctx.store.put_outbound_status(&id, &status)?;
            }
            Ok(Some(Ended::ReceiptRefused { id, error }))
        }
        Action::WitnessAlarm {
            size,
            witnessed_size,
            reason,
            detail,
        } => {
            ctx.audit.note(
                Fact::new(AuditKind::CheckpointRefused, Actor::Peer)
                    .peer(peer.id())
                    .detail(&format!("{} at size {size}", reason.name())),
            );
            ctx.audit.alarm(
                peer.id(),
                AlarmKind::CheckpointRefused,
                reason.name(),
                &format!(
                    "witness {} refused our checkpoint of size {size} ({}; it cosigned size {witnessed_size}, our log has {log_size} entries): {detail}",
                    peer.id(),
                    reason.name()
                ),
            );
            Ok(None)
        }
        Action::Ignore(why) => {
            debug!(peer = %peer.id().short(), why, "answer ignored");
            Ok(None)
        }
        // Handled by the reader itself (they touch the session core).
        Action::Hello(_) | Action::CheckCosignature { .. } | Action::OfferAgain => Ok(None),
    }
}

/// Verifies and stores the witness's cosignature; whether it was stored.
///
/// Kept beside its checkpoint, not as an entry: the signed line is the
/// evidence (every export carries it), an entry would only repeat it
/// unsigned — and would call for a checkpoint for the witness to cosign.
pub(crate) fn cosignature(ctx: &Context, peer: &Peer, size: u64, line: &str) -> bool {
    match ctx.audit.accept_cosignature(&peer.id(), size, line) {
        Ok(()) => true,
        Err(e) => {
            warn!(peer = %peer.id().short(), error = %e, "cosignature refused");
            false
        }
    }
}
