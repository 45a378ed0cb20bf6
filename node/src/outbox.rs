//! Accepting a message for a peer: validated, sealed if the peer's key is
//! known ([`seal_for`], the one place envelopes are made), written and
//! flushed — then it will not be lost. Also what operators see of the
//! outbox.

use std::sync::Arc;

use comity_protocol::attachment::{ContentKey, SealedAttachment};
use comity_protocol::envelope::{seal_with_attachments, SealError, SealedEnvelope};
use comity_protocol::message::{Body, InvalidMessage, MessageKind};
use comity_protocol::{codec, MessageId, NodeId, PeerKeys, Timestamp};
use serde::Serialize;

use crate::attachments::StoredId;
use crate::audit::Fact;
use crate::context::{Context, PeerKeyError};
use crate::disk::Claim;
use crate::events::Event;
use crate::idempotency::{self, IdempotencyKey, KeyError, KeyedRequest, Operation};
use crate::peers::Peer;
use crate::staged::{self, AttachError};
use crate::store::{
    HeldAttachment, OutboundMessage, OutboundState, OutboundStatus, Store, StoreError,
};
use comity_protocol::audit::entry::{Actor, AuditKind};

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("{0} is not a pinned peer (see `comity peer list`)")]
    UnknownPeer(NodeId),
    #[error("invalid message: {0}")]
    Invalid(#[from] InvalidMessage),
    #[error("message is {len} bytes sealed, above limits.max_message_bytes ({max})")]
    TooLarge { len: usize, max: usize },
    #[error("cannot seal: {0}")]
    Seal(SealError),
    #[error(transparent)]
    PeerKey(#[from] PeerKeyError),
    #[error("the store cannot write ({0}); the node reopens it once the disk has room again")]
    StoreUnwritable(String),
    #[error(
        "{free} bytes free on the data directory's filesystem, {after} once this message and \
         those being written are stored: below the reserve of {reserve} ([limits] \
         disk_reserve_mib, disk_reserve_percent) kept for receipts and the audit log"
    )]
    DiskReserve { free: u64, after: u64, reserve: u64 },
    #[error(transparent)]
    Attach(#[from] AttachError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SubmitError {
    /// The flush failed after the message was written: it may be on disk
    /// (and then it will be sent) or not — the caller cannot know.
    pub fn is_unconfirmed(&self) -> bool {
        matches!(self, SubmitError::Store(StoreError::Commit(_)))
    }
}

impl From<SealError> for SubmitError {
    fn from(e: SealError) -> Self {
        match e {
            SealError::TooLarge { len, max } => SubmitError::TooLarge { len, max },
            SealError::Invalid(e) => SubmitError::Invalid(e),
            SealError::Attachment(e) => SubmitError::Attach(AttachError::Invalid(e)),
            e => SubmitError::Seal(e),
        }
    }
}

/// Upper bound of what sealing adds to an encoded body (header, keys,
/// commitment, salt, tag, signature, framing).
const ENVELOPE_OVERHEAD: usize = 512;

/// Seals `msg` with its `attachments` (manifests and content keys; the
/// content was encrypted once, when copied in) to the peer's current keys,
/// refusing an envelope above `limits.max_message_bytes`.
pub(crate) fn seal_for(
    ctx: &Context,
    keys: &PeerKeys,
    msg: &OutboundMessage,
    attachments: &[HeldAttachment],
) -> Result<SealedEnvelope, SealError> {
    let max = ctx.config.limits.max_message_len();
    let attachments: Vec<SealedAttachment> = attachments.iter().map(|a| a.sealed.clone()).collect();
    let sealed = seal_with_attachments(
        &ctx.identity(),
        keys,
        msg.id,
        msg.created_at,
        &msg.body,
        &attachments,
        &ctx.config.limits.attachment_limits(),
        &mut rand::rng(),
    )?;
    if sealed.bytes.len() > max {
        return Err(SealError::TooLarge {
            len: sealed.bytes.len(),
            max,
        });
    }
    Ok(sealed)
}

/// The answer to a submission: the message, and whether an earlier request
/// with the same idempotency key made it (then nothing new was made).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accepted {
    pub id: MessageId,
    pub replayed: bool,
}

/// Accepts `body` for `to`, once per idempotency key. When this returns,
/// the message will not be lost.
pub(crate) async fn submit(
    ctx: &Context,
    to: NodeId,
    body: Body,
    attachments: &[StoredId],
    key: Option<IdempotencyKey>,
) -> Result<Accepted, SubmitError> {
    let key = key
        .map(|k| match attachments {
            // As before attachments existed, so that keys recorded then match.
            [] => KeyedRequest::new(k, Operation::Submit, &[&to.0], &body),
            ids => {
                let files = staged::key_content(ctx, &k, ids)?;
                KeyedRequest::new(k, Operation::Submit, &[&to.0], &(&body, files))
            }
        })
        .transpose()?;
    accept_once(ctx, key.as_ref(), |key| {
        let attached = Attached {
            attachments: Attachments::Staged(attachments),
            ..Attached::key(key)
        };
        stage(ctx, to, body, attached, |_, _| Ok(()))
    })
    .await
}

/// Stages (with `stage`) and commits a message, unless an earlier request
/// with the same key made one: that message is then the answer, given
/// after a commit (the earlier request may still be waiting for its flush).
/// The key is looked up before anything else is checked: a retry of a
/// status update must not be refused for following itself.
pub(crate) async fn accept_once<E: From<SubmitError>>(
    ctx: &Context,
    key: Option<&KeyedRequest>,
    stage: impl FnOnce(Option<&KeyedRequest>) -> Result<Staged, E>,
) -> Result<Accepted, E> {
    let Some(keyed) = key else {
        let id = commit(ctx, stage(None)?).await?;
        return Ok(Accepted {
            id,
            replayed: false,
        });
    };
    let held = ctx.key_locks.lock(keyed.key.as_str()).await;
    let earlier = idempotency::earlier(&ctx.store, keyed).map_err(SubmitError::from)?;
    let staged = match earlier {
        Some(id) => {
            drop(held);
            ctx.store.commit().await.map_err(SubmitError::from)?;
            return Ok(Accepted { id, replayed: true });
        }
        None => stage(Some(keyed))?,
    };
    drop(held);
    Ok(Accepted {
        id: commit(ctx, staged).await?,
        replayed: false,
    })
}

/// Records staged with a new message, between it and its status, so that
/// they exist exactly when it does.
#[derive(Clone, Copy, Default)]
pub(crate) struct Attached<'a> {
    /// The request's idempotency key.
    pub key: Option<&'a KeyedRequest>,
    /// The failed message this one resends.
    pub resend_of: Option<MessageId>,
    /// The files the message carries.
    pub attachments: Attachments<'a>,
}

/// Where a new message's attachments come from.
#[derive(Clone, Copy, Default)]
pub(crate) enum Attachments<'a> {
    #[default]
    None,
    /// Files uploaded and staged, by stored id, in message order: taken
    /// out of staging by the message.
    Staged(&'a [StoredId]),
    /// Another message's, the same files and keys (a resend).
    Copied(&'a [HeldAttachment]),
}

impl<'a> Attached<'a> {
    pub fn key(key: Option<&'a KeyedRequest>) -> Self {
        Attached {
            key,
            resend_of: None,
            attachments: Attachments::None,
        }
    }
}

/// A message written but not yet flushed: nobody may be told of it yet.
pub(crate) struct Staged {
    id: MessageId,
    peer: std::sync::Arc<crate::peers::Peer>,
}

/// The part of a submission that writes (no flush, no await): validated,
/// sealed, recorded with what is `attached`, then `also` run (more records
/// that become durable in the same flush, e.g. a business event).
pub(crate) fn stage(
    ctx: &Context,
    to: NodeId,
    body: Body,
    attached: Attached<'_>,
    also: impl FnOnce(&Store, MessageId) -> Result<(), StoreError>,
) -> Result<Staged, SubmitError> {
    body.validate()?;
    // A reply or status about a message exchanged with a key the peer had
    // before (a transition or repin moved it) goes to the key pinned now.
    let peer = ctx
        .peer(&to)
        .or_else(|| ctx.peers.pinned_instead_of(&to))
        .ok_or(SubmitError::UnknownPeer(to))?;
    let to = peer.id();
    if let Some(f) = ctx.store.fault() {
        return Err(SubmitError::StoreUnwritable(f.reason));
    }
    // Held until the staged records are removed, so that no staged file
    // goes into two messages.
    let (_gate, held) = match attached.attachments {
        Attachments::None => (None, Vec::new()),
        Attachments::Staged([]) => (None, Vec::new()),
        Attachments::Staged(ids) => {
            let gate = ctx.staged_gate.lock().unwrap_or_else(|p| p.into_inner());
            (Some(gate), staged::held_for(ctx, body.kind(), ids)?)
        }
        Attachments::Copied(held) => (None, held.to_vec()),
    };
    let mut msg = OutboundMessage {
        id: MessageId::random(),
        peer: to,
        kind: body.kind(),
        body,
        created_at: Timestamp::now(),
        envelope: None,
        digest: None,
    };
    // What the record will hold: the body and, once sealed, its envelope
    // (which is at least as long).
    let record_len = match ctx.peer_keys(&to)? {
        Some(keys) => {
            let sealed = seal_for(ctx, &keys, &msg, &held)?;
            let len = sealed.bytes.len();
            msg.envelope = Some(sealed.bytes);
            msg.digest = Some(sealed.digest);
            len.saturating_mul(2)
        }
        None => {
            // Sealed at first contact; refuse now what could never fit.
            let max = ctx.config.limits.max_message_len();
            let manifests: Vec<_> = held.iter().map(|h| h.sealed.manifest.clone()).collect();
            let len = codec::encode(&msg.body)
                .map(|b| b.len())
                .unwrap_or(usize::MAX)
                .saturating_add(ENVELOPE_OVERHEAD)
                .saturating_add(attachments_len(&manifests));
            if len > max {
                return Err(SubmitError::TooLarge { len, max });
            }
            len.saturating_mul(2)
        }
    };
    // Held until the store counts the record as unflushed.
    let _claim = within_reserve(ctx, record_len as u64)?;
    let id = msg.id;
    ctx.audit.note(
        Fact::new(AuditKind::MessageAccepted, Actor::Operator)
            .peer(to)
            .message(id)
            .digest(msg.digest)
            .detail(msg.kind.name()),
    );
    for (index, a) in held.iter().enumerate() {
        ctx.audit.note(
            Fact::new(AuditKind::AttachmentAccepted, Actor::Operator)
                .peer(to)
                .message(id)
                .detail(&staged::audit_detail(index, &a.sealed.manifest)),
        );
    }
    ctx.store
        .insert_outbound_with(&msg, &OutboundStatus::queued(), || {
            if !held.is_empty() {
                ctx.store.put_outbound_attachments(&id, &held)?;
                staged::release(ctx, &held)?;
            }
            if let Some(original) = attached.resend_of {
                ctx.audit.note(
                    Fact::new(AuditKind::AdminAction, Actor::Operator)
                        .peer(to)
                        .message(original)
                        .detail(&format!("resent as {id}")),
                );
                ctx.store.put_resend_link(&original, &id)?;
            }
            match attached.key {
                Some(keyed) => idempotency::record(&ctx.store, keyed, id),
                None => Ok(()),
            }
        })?;
    also(&ctx.store, id)?;
    Ok(Staged { id, peer })
}

/// What a message's attachment manifests and content keys add to its
/// sealed plaintext.
fn attachments_len(manifests: &[comity_protocol::attachment::AttachmentManifest]) -> usize {
    if manifests.is_empty() {
        return 0;
    }
    codec::encode(&manifests.to_vec())
        .map(|b| b.len())
        .unwrap_or(usize::MAX)
        .saturating_add(manifests.len().saturating_mul(ContentKey::ENCODED_LEN))
}

/// Claims `record_len` bytes for a submission, refusing it if what it
/// writes, with what other submissions are writing and what is not yet
/// flushed, would eat into the reserve.
fn within_reserve(ctx: &Context, record_len: u64) -> Result<Claim<'_>, SubmitError> {
    // Claimed before measuring, so that a submission checked at the same
    // moment counts this one.
    let claim = ctx.disk.claim(record_len);
    match ctx.disk.measure() {
        Ok(s) if s.refuses_submission(ctx.store.unflushed_bytes(), ctx.disk.claimed()) => {
            let pending = ctx
                .store
                .unflushed_bytes()
                .saturating_add(ctx.disk.claimed());
            let after = s.less_unflushed(pending);
            Err(SubmitError::DiskReserve {
                free: s.free_bytes,
                after: after.free_bytes,
                reserve: s.reserve_bytes,
            })
        }
        Ok(_) => Ok(claim),
        // Not knowing is no reason to refuse: a full disk shows as a fault.
        Err(e) => {
            tracing::debug!(error = %e, "cannot measure free space");
            Ok(claim)
        }
    }
}

/// Flushes a staged message; from then on it is accepted and queued.
pub(crate) async fn commit(ctx: &Context, staged: Staged) -> Result<MessageId, SubmitError> {
    ctx.store.commit().await?;
    let id = staged.id;
    let peer = current_peer(ctx, staged.peer, &id).await?;
    ctx.emit(Event::Accepted {
        id,
        peer: peer.id(),
    });
    peer.queue.push(id);
    Ok(id)
}

/// The peer to queue a just-recorded message for. A repin may have moved
/// the peer to a new key while the message was being sealed for the old
/// one, after the repin moved what was pending: then it is moved here (the
/// move is idempotent, so both may do it). The repin changes the peer table
/// before it looks for pending messages, and this looks at the table after
/// the message is recorded, so one of the two always sees the other.
async fn current_peer(
    ctx: &Context,
    staged_for: Arc<Peer>,
    id: &MessageId,
) -> Result<Arc<Peer>, SubmitError> {
    let old = staged_for.id();
    if let Some(peer) = ctx.peer(&old) {
        return Ok(peer);
    }
    let Some(peer) = ctx.peers.pinned_instead_of(&old) else {
        // Removed meanwhile: it stays in the outbox, as anything pending
        // for a removed peer does.
        return Ok(staged_for);
    };
    if ctx.move_to_repinned(id, &old, peer.id())? {
        // The message itself is durable; a move that is not is made again
        // at the next start.
        if let Err(e) = ctx.store.commit().await {
            tracing::warn!(%id, error = %e, "a message moved to a repinned key is not flushed yet");
        }
    }
    Ok(peer)
}

/// An outgoing message as operators list it.
#[derive(Clone, Debug, Serialize)]
pub struct OutboxEntry {
    pub id: MessageId,
    pub peer: NodeId,
    pub kind: MessageKind,
    pub created_at: Timestamp,
    pub state: OutboundState,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub delivered_at: Option<Timestamp>,
    pub has_receipt: bool,
    pub subject: Option<String>,
}

pub(crate) fn list(ctx: &Context) -> Result<Vec<OutboxEntry>, StoreError> {
    ctx.store
        .outbound_all()
        .map(|r| {
            r.map(|(m, s)| OutboxEntry {
                id: m.id,
                peer: m.peer,
                kind: m.kind,
                created_at: m.created_at,
                state: s.state,
                attempts: s.attempts,
                last_error: last_error(ctx, &m, &s),
                delivered_at: s.delivered_at,
                has_receipt: s.receipt.is_some(),
                subject: m.body.subject().map(str::to_string),
            })
        })
        .collect()
}

/// The message's own last error, or while it is pending, its peer's (why
/// the connection fails).
pub(crate) fn last_error(ctx: &Context, m: &OutboundMessage, s: &OutboundStatus) -> Option<String> {
    last_error_for(ctx, &m.peer, s)
}

/// [`last_error`] of a message to `peer`.
pub(crate) fn last_error_for(ctx: &Context, peer: &NodeId, s: &OutboundStatus) -> Option<String> {
    s.last_error.clone().or_else(|| {
        (!s.state.is_final())
            .then(|| ctx.peer(peer).and_then(|p| p.last_error()))
            .flatten()
    })
}
