//! The business side of a request: status updates (registered, in
//! execution, …), replies with the execution result, and the history both
//! authorities see (UNCAC art. 46(13); the UN working paper on
//! international cooperation in criminal matters, §§44–47: the requesting
//! State must be able to follow its request). Who may say what is
//! [`comity_protocol::message::check_status`], the one rule for both
//! directions.

use comity_protocol::audit::entry::{Actor, AuditKind};
use comity_protocol::message::{
    check_status, Body, BusinessStatus, MessageKind, Reply, Side, StatusRefusal, StatusUpdate,
    Thread,
};
use comity_protocol::{MessageId, NodeId, Timestamp};

use crate::audit::Fact;
use crate::context::Context;
use crate::outbox::{self, SubmitError};
use crate::store::{BusinessEvent, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum BusinessError {
    #[error("no message {0} on this node (see `comity messages`)")]
    NotFound(MessageId),
    #[error(transparent)]
    Refused(#[from] StatusRefusal),
    #[error("a reply answers a request this node received")]
    NotAReplyTarget,
    #[error(transparent)]
    Submit(#[from] SubmitError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a peer's status update is refused.
#[derive(Debug, thiserror::Error)]
pub enum IncomingStatusError {
    #[error("message {0} was not sent to you")]
    NotSentToYou(MessageId),
    #[error("no message {0} was exchanged with you")]
    NotExchanged(MessageId),
    #[error(transparent)]
    Refused(#[from] StatusRefusal),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The message a status or reply is about, from this node's side.
struct Original {
    peer: NodeId,
    kind: MessageKind,
    /// This node's side of it.
    side: Side,
    thread: Thread,
}

fn original(store: &Store, id: &MessageId) -> Result<Original, BusinessError> {
    if let Some(m) = store.inbound_by_id(id)? {
        return Ok(Original {
            peer: m.sender,
            kind: m.kind,
            side: Side::Recipient,
            thread: m.body.thread().cloned().unwrap_or_default(),
        });
    }
    if let Some((m, _)) = store.outbound(id)? {
        return Ok(Original {
            peer: m.peer,
            kind: m.kind,
            side: Side::Sender,
            thread: m.body.thread().cloned().unwrap_or_default(),
        });
    }
    Err(BusinessError::NotFound(*id))
}

/// Sends a status update about message `id` to the other authority and
/// records it in the history, after checking that this side may send it
/// and that it may follow the current status.
pub(crate) async fn set_status(
    ctx: &Context,
    id: MessageId,
    status: BusinessStatus,
    note: Option<String>,
) -> Result<MessageId, BusinessError> {
    let original = original(&ctx.store, &id)?;
    let body = Body::StatusUpdate(StatusUpdate {
        regarding: id,
        status: status.clone(),
        note: note.clone(),
    });
    let me = ctx.id();
    let name = status.name();
    // Checked and written under the one gate of both directions; flushed
    // after it.
    let staged = ctx.status_gate.update::<_, BusinessError>(
        &ctx.store,
        &id,
        |previous| {
            Ok(check_status(
                original.kind,
                original.side,
                previous,
                &status,
            )?)
        },
        || {
            Ok(outbox::stage(ctx, original.peer, body, |store, update| {
                // Validated by now: nothing is logged for a refused update.
                ctx.audit.note(
                    Fact::new(AuditKind::StatusChanged, Actor::Operator)
                        .peer(original.peer)
                        .message(id)
                        .detail(name),
                );
                store.append_business(
                    &id,
                    &BusinessEvent {
                        status: status.clone(),
                        note,
                        at: Timestamp::now(),
                        by: me,
                        update,
                    },
                )
            })?)
        },
    )?;
    Ok(outbox::commit(ctx, staged).await?)
}

/// Sends the execution result of request `id` back to its requester, in
/// the same thread.
pub(crate) async fn reply(
    ctx: &Context,
    id: MessageId,
    subject: String,
    body: String,
    partial: bool,
) -> Result<MessageId, BusinessError> {
    let original = original(&ctx.store, &id)?;
    if original.side != Side::Recipient || original.kind != MessageKind::Request {
        return Err(BusinessError::NotAReplyTarget);
    }
    let reply = Body::Reply(Reply {
        in_reply_to: id,
        subject,
        body,
        partial,
        thread: Thread::replying_to(id, &original.thread),
    });
    Ok(outbox::submit_with(ctx, original.peer, reply, |_, _| Ok(())).await?)
}

/// Whether a status update from `from` may be accepted: it must be about a
/// message exchanged with `from` and pass [`check_status`] for `from`'s
/// side. Checked before the envelope is accepted, so a refused update fails
/// at its sender rather than corrupting history.
pub(crate) fn check_incoming_status(
    store: &Store,
    from: NodeId,
    update: &StatusUpdate,
    previous: Option<&BusinessStatus>,
) -> Result<(), IncomingStatusError> {
    let regarding = update.regarding;
    // The peer's side of the message.
    let (kind, side) = if let Some((m, _)) = store.outbound(&regarding)? {
        if m.peer != from {
            return Err(IncomingStatusError::NotSentToYou(regarding));
        }
        (m.kind, Side::Recipient)
    } else if let Some(m) = store.inbound(&from, &regarding)? {
        (m.kind, Side::Sender)
    } else {
        return Err(IncomingStatusError::NotExchanged(regarding));
    };
    check_status(kind, side, previous, &update.status)?;
    Ok(())
}

/// Records a status update received from `from`, already checked by
/// [`check_incoming_status`].
pub(crate) fn on_status_received(
    store: &Store,
    from: NodeId,
    update_id: MessageId,
    update: &StatusUpdate,
    at: Timestamp,
) -> Result<(), StoreError> {
    store.append_business(
        &update.regarding,
        &BusinessEvent {
            status: update.status.clone(),
            note: update.note.clone(),
            at,
            by: from,
            update: update_id,
        },
    )
}
