//! Sending a failed message again: the same body (same business content,
//! thread and case references) in a new envelope under a new id, linked to
//! the original both ways ([`crate::store`]'s `resends` tree) and in the
//! audit log (an `admin-action` entry on the original naming the new id).
//! The new message carries the original's attachments: the same stored
//! files and content keys, so nothing is copied or encrypted again.
//! A message that expired while its peer was down, or that the peer
//! refused for good (e.g. over its size limit, since raised), can then
//! still reach it.

use comity_protocol::{MessageId, NodeId};

use crate::context::Context;
use crate::idempotency::{IdempotencyKey, KeyedRequest, Operation};
use crate::lookup::{find, FindError, Found, MessageRef};
use crate::outbox::{self, Accepted, Attached, Attachments, SubmitError};
use crate::store::{OutboundState, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ResendError {
    #[error(transparent)]
    Find(#[from] FindError),
    #[error("message {0} was received, not sent, by this node: only a message this node sent can be resent")]
    NotSent(MessageId),
    #[error("message {id} is {}, not failed: only a failed message can be resent", .state.name())]
    NotFailed { id: MessageId, state: OutboundState },
    #[error("message {id} was already resent as {resent}; if that one failed too, resend it")]
    AlreadyResent { id: MessageId, resent: MessageId },
    #[error(transparent)]
    Submit(#[from] SubmitError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Accepts the body of the failed message `r` again, for the same peer,
/// under a new id; once per idempotency key. Returns the new message and
/// the peer.
pub(crate) async fn resend(
    ctx: &Context,
    r: MessageRef,
    key: Option<IdempotencyKey>,
) -> Result<(Accepted, NodeId), ResendError> {
    let original = match find(&ctx.store, &MessageRef { way: None, ..r })? {
        Found::Sent(m) => m,
        Found::Received(m) => return Err(ResendError::NotSent(m.id)),
    };
    let (id, peer) = (original.id, original.peer);
    let keyed = key
        .map(|k| KeyedRequest::new(k, Operation::Resend, &[&peer.0, &id.0], &()))
        .transpose()
        .map_err(SubmitError::from)?;
    // The same files under the same keys: sealing again never encrypts
    // the content again.
    let held = ctx.store.outbound_attachments(&id)?;
    let stage = |keyed: Option<&KeyedRequest>| {
        let state = ctx
            .store
            .outbound_status(&id)?
            .map(|s| s.state)
            .ok_or(FindError::NotFound(id))?;
        if state != OutboundState::Failed {
            return Err(ResendError::NotFailed { id, state });
        }
        if let Some(resent) = ctx.store.resent_as(&id)? {
            return Err(ResendError::AlreadyResent { id, resent });
        }
        let attached = Attached {
            key: keyed,
            resend_of: Some(id),
            attachments: Attachments::Copied(&held),
        };
        Ok(outbox::stage(
            ctx,
            peer,
            original.body.clone(),
            attached,
            |_, _| Ok(()),
        )?)
    };
    // One resend of a message at a time, so two cannot both find it not
    // yet resent.
    let _one = ctx.key_locks.lock(&format!("resend of {id}")).await;
    let accepted = outbox::accept_once(ctx, keyed.as_ref(), stage).await?;
    Ok((accepted, peer))
}
