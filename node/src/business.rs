//! The business side of a request: status updates (registered, in
//! execution, …), replies with the execution result, and the history both
//! authorities see (UNCAC art. 46(13); the UN working paper on
//! international cooperation in criminal matters, §§44–47: the requesting
//! State must be able to follow its request). Who may say what is
//! [`comity_protocol::message::check_status`], the one rule for both
//! directions.

use comity_protocol::audit::entry::{Actor, AuditKind};
use comity_protocol::message::{
    check_status, Body, BusinessStatus, Consultation, MessageKind, Reply, Side, StatusRefusal,
    StatusUpdate, Thread,
};
use comity_protocol::{MessageId, NodeId, Timestamp};

use crate::attachments::StoredId;
use crate::audit::Fact;
use crate::context::Context;
use crate::idempotency::{IdempotencyKey, KeyedRequest, Operation};
use crate::lookup::{find, FindError, Found, MessageRef};
use crate::outbox::{self, Accepted, Attached, Attachments, SubmitError};
use crate::staged;
use crate::store::{BusinessEvent, Store, StoreError, Way};

#[derive(Debug, thiserror::Error)]
pub enum BusinessError {
    #[error(transparent)]
    Find(#[from] FindError),
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
    #[error("no message {0} was exchanged with you")]
    NotExchanged(MessageId),
    #[error("message {0} was not sent to you")]
    NotSentToYou(MessageId),
    #[error(transparent)]
    Refused(#[from] StatusRefusal),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The message a status or reply is about, from this node's side.
struct Original {
    peer: NodeId,
    id: MessageId,
    way: Way,
    kind: MessageKind,
    /// This node's side of it.
    side: Side,
    thread: Thread,
}

fn original(store: &Store, r: &MessageRef) -> Result<Original, BusinessError> {
    Ok(match find(store, r)? {
        Found::Received(m) => Original {
            peer: m.sender,
            id: m.id,
            way: Way::Received,
            kind: m.kind,
            side: Side::Recipient,
            thread: m.body.thread().cloned().unwrap_or_default(),
        },
        Found::Sent(m) => Original {
            peer: m.peer,
            id: m.id,
            way: Way::Sent,
            kind: m.kind,
            side: Side::Sender,
            thread: m.body.thread().cloned().unwrap_or_default(),
        },
    })
}

impl Original {
    /// The request `key` names, as `op` on this message with `content`.
    fn keyed(
        &self,
        key: Option<IdempotencyKey>,
        op: Operation,
        content: &impl bincode::Encode,
    ) -> Result<Option<KeyedRequest>, SubmitError> {
        let target: [&[u8]; 3] = [&self.peer.0, &self.id.0, &[self.way.byte()]];
        Ok(key
            .map(|k| KeyedRequest::new(k, op, &target, content))
            .transpose()?)
    }
}

/// Sends a status update about message `id` to the other authority and
/// records it in the history, after checking that this side may send it
/// and that it may follow the current status; once per idempotency key.
pub(crate) async fn set_status(
    ctx: &Context,
    r: MessageRef,
    status: BusinessStatus,
    note: Option<String>,
    key: Option<IdempotencyKey>,
) -> Result<Accepted, BusinessError> {
    let original = original(&ctx.store, &r)?;
    let keyed = original.keyed(key, Operation::Status, &(&status, &note))?;
    let id = original.id;
    let body = Body::StatusUpdate(StatusUpdate {
        regarding: id,
        status: status.clone(),
        note: note.clone(),
    });
    let me = ctx.id();
    let name = status.name();
    // Checked and written under the one gate of both directions; flushed
    // after it.
    let stage = |keyed: Option<&KeyedRequest>| {
        ctx.status_gate.update::<_, BusinessError>(
            &ctx.store,
            &original.peer,
            &id,
            original.way,
            |previous| {
                Ok(check_status(
                    original.kind,
                    original.side,
                    previous,
                    &status,
                )?)
            },
            || {
                Ok(outbox::stage(
                    ctx,
                    original.peer,
                    body,
                    Attached::key(keyed),
                    |store, update| {
                        // Validated by now: nothing is logged for a refused update.
                        ctx.audit.note(
                            Fact::new(AuditKind::StatusChanged, Actor::Operator)
                                .peer(original.peer)
                                .message(id)
                                .detail(name),
                        );
                        store.append_business(
                            &original.peer,
                            &id,
                            original.way,
                            &BusinessEvent {
                                status: status.clone(),
                                note,
                                at: Timestamp::now(),
                                by: me,
                                update,
                            },
                        )
                    },
                )?)
            },
        )
    };
    outbox::accept_once(ctx, keyed.as_ref(), stage).await
}

/// Sends the execution result of request `id` back to its requester, in
/// the same thread; once per idempotency key.
pub(crate) async fn reply(
    ctx: &Context,
    r: MessageRef,
    subject: String,
    body: String,
    partial: bool,
    attachments: &[StoredId],
    key: Option<IdempotencyKey>,
) -> Result<Accepted, BusinessError> {
    let original = original(&ctx.store, &r)?;
    let id = original.id;
    if original.side != Side::Recipient || original.kind != MessageKind::Request {
        return Err(BusinessError::NotAReplyTarget);
    }
    let keyed = match attachments {
        // As before attachments existed, so that keys recorded then match.
        [] => original.keyed(key, Operation::Reply, &(&subject, &body, partial))?,
        ids => match key {
            None => None,
            Some(k) => {
                let files = staged::key_content(ctx, &k, ids).map_err(SubmitError::from)?;
                original.keyed(
                    Some(k),
                    Operation::Reply,
                    &(&subject, &body, partial, files),
                )?
            }
        },
    };
    let reply = Body::Reply(Reply {
        in_reply_to: id,
        subject,
        body,
        partial,
        thread: Thread::replying_to(id, &original.thread),
    });
    let stage = |keyed: Option<&KeyedRequest>| {
        let attached = Attached {
            attachments: Attachments::Staged(attachments),
            ..Attached::key(keyed)
        };
        outbox::stage(ctx, original.peer, reply, attached, |_, _| Ok(()))
    };
    Ok(outbox::accept_once(ctx, keyed.as_ref(), stage).await?)
}

/// The message a status update from `from` is about, from this node's
/// side: which way it went, its kind, and `from`'s side of it. It must have
/// been exchanged with `from`: one we sent it (it reports on it) or one it
/// sent us (it withdraws it) — if both carry this id, the status says which.
/// Checked before the envelope is accepted, so a refused update fails at
/// its sender rather than corrupting history.
pub(crate) fn incoming_target(
    store: &Store,
    from: &[NodeId],
    update: &StatusUpdate,
) -> Result<(Way, MessageKind, Side, NodeId), IncomingStatusError> {
    let regarding = update.regarding;
    let sent = store
        .outbound(&regarding)?
        .filter(|(m, _)| from.contains(&m.peer))
        .map(|(m, _)| (m.kind, m.peer));
    let mut received = None;
    for peer in from {
        if let Some(m) = store.inbound(peer, &regarding)? {
            received = Some((m.kind, *peer));
            break;
        }
    }
    Ok(match (sent, received) {
        (Some((k, p)), None) => (Way::Sent, k, Side::Recipient, p),
        (None, Some((k, p))) => (Way::Received, k, Side::Sender, p),
        (Some(_), Some((k, p))) if update.status.sent_by_requester() => {
            (Way::Received, k, Side::Sender, p)
        }
        (Some((k, p)), Some(_)) => (Way::Sent, k, Side::Recipient, p),
        (None, None) => return Err(IncomingStatusError::NotExchanged(regarding)),
    })
}

/// A reply from `from` (the peer's keys, now and before) must answer a
/// request we sent it; a consultation about a message must be about one
/// exchanged with it.
pub(crate) fn check_refers_to_peer(
    store: &Store,
    from: &[NodeId],
    body: &Body,
) -> Result<(), IncomingStatusError> {
    let sent_to = |id: &MessageId| -> Result<bool, StoreError> {
        Ok(store
            .outbound(id)?
            .is_some_and(|(m, _)| from.contains(&m.peer)))
    };
    let received_from = |id: &MessageId| -> Result<bool, StoreError> {
        for peer in from {
            if store.inbound(peer, id)?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    };
    match body {
        Body::Reply(r) if !sent_to(&r.in_reply_to)? => {
            Err(IncomingStatusError::NotSentToYou(r.in_reply_to))
        }
        Body::Consultation(Consultation {
            regarding: Some(x), ..
        }) if !sent_to(x)? && !received_from(x)? => Err(IncomingStatusError::NotExchanged(*x)),
        _ => Ok(()),
    }
}

/// Records a status update received from `from`, already checked (the
/// one rule, [`check_status`], for `from`'s side of [`incoming_target`]),
/// on the message exchanged with `with` (`from`, or a key it had before).
#[allow(clippy::too_many_arguments)]
pub(crate) fn on_status_received(
    store: &Store,
    from: NodeId,
    with: NodeId,
    way: Way,
    update_id: MessageId,
    update: &StatusUpdate,
    at: Timestamp,
) -> Result<(), StoreError> {
    store.append_business(
        &with,
        &update.regarding,
        way,
        &BusinessEvent {
            status: update.status.clone(),
            note: update.note.clone(),
            at,
            by: from,
            update: update_id,
        },
    )
}
