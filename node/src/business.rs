//! The business side of a request: status updates (registered, in
//! execution, …), replies with the execution result, and the history both
//! authorities see. UNCAC art. 46(13) and seed 003 §§44-47: the requesting
//! State must be able to follow its request.

use comity_protocol::message::{
    Body, BusinessStatus, InvalidTransition, MessageKind, Reply, StatusUpdate, Thread,
};
use comity_protocol::{MessageId, NodeId, Timestamp};

use crate::node::{Node, SubmitError};
use crate::store::{BusinessEvent, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum BusinessError {
    #[error("no message {0} on this node (see `comity messages`)")]
    NotFound(MessageId),
    #[error("{0}")]
    NotAllowed(String),
    #[error("invalid transition: {0}")]
    Transition(#[from] InvalidTransition),
    #[error(transparent)]
    Submit(#[from] SubmitError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Which side of a message this node is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// We sent it (we are the requester).
    Sent,
    /// We received it (we execute it).
    Received,
}

struct Original {
    peer: NodeId,
    kind: MessageKind,
    side: Side,
    thread: Thread,
}

impl Node {
    fn original(&self, id: &MessageId) -> Result<Original, BusinessError> {
        let store = self.store();
        if let Some(m) = store.inbound_by_id(id)? {
            return Ok(Original {
                peer: m.sender,
                kind: m.kind,
                side: Side::Received,
                thread: m.body.thread().cloned().unwrap_or_default(),
            });
        }
        if let Some((m, _)) = store.outbound(id)? {
            return Ok(Original {
                peer: m.peer,
                kind: m.kind,
                side: Side::Sent,
                thread: m.body.thread().cloned().unwrap_or_default(),
            });
        }
        Err(BusinessError::NotFound(*id))
    }

    /// Sends a status update about message `id` to the other authority and
    /// records it in the history, after checking that this side may send
    /// it and that it may follow the current status.
    pub async fn set_status(
        &self,
        id: MessageId,
        status: BusinessStatus,
        note: Option<String>,
    ) -> Result<MessageId, BusinessError> {
        let original = self.original(&id)?;
        let not_allowed = |s: &str| Err(BusinessError::NotAllowed(s.to_string()));
        match (original.kind, &status) {
            (MessageKind::SpontaneousInformation, BusinessStatus::Acknowledged) => {}
            (MessageKind::SpontaneousInformation, _) => {
                return not_allowed(
                    "spontaneous information is acknowledged (--set acknowledged), not executed",
                )
            }
            (MessageKind::Request, BusinessStatus::Acknowledged) => {
                return not_allowed(
                    "acknowledged is for spontaneous information; register a request instead (--set registered --ref REF)",
                )
            }
            (MessageKind::Request, _) => {}
            (kind, _) => {
                return not_allowed(&format!(
                    "status updates are about requests and spontaneous information, not {}",
                    with_article(kind.name())
                ))
            }
        }
        match (original.side, status.sent_by_requester()) {
            (Side::Received, true) => {
                return not_allowed("only the requesting authority can withdraw its request")
            }
            (Side::Sent, false) => {
                return not_allowed(&format!(
                    "you sent this message: only the receiving authority reports {:?}; you may only withdraw it",
                    status.name()
                ))
            }
            _ => {}
        }
        // Checked and appended under one lock: two updates at once cannot
        // both follow the same last status (e.g. executed and refused).
        let _one_at_a_time = self.business_gate().lock().await;
        let history = self.store().business_history(&id)?;
        status.may_follow(history.last().map(|e| &e.status))?;
        let body = Body::StatusUpdate(StatusUpdate {
            regarding: id,
            status: status.clone(),
            note: note.clone(),
        });
        let me = self.id();
        let name = status.name();
        let update = self
            .submit_with(original.peer, body, |store, update| {
                // Validated by now: nothing is logged for a refused update.
                self.audit_note(
                    crate::audit::Fact::new(
                        comity_protocol::audit::entry::AuditKind::StatusChanged,
                        comity_protocol::audit::entry::Actor::Operator,
                    )
                    .peer(original.peer)
                    .message(id)
                    .detail(name),
                );
                store.append_business(
                    &id,
                    &BusinessEvent {
                        status,
                        note,
                        at: Timestamp::now(),
                        by: me,
                        update,
                    },
                )
            })
            .await?;
        Ok(update)
    }

    /// Sends the execution result of request `id` back to its requester, in
    /// the same thread.
    pub async fn reply(
        &self,
        id: MessageId,
        subject: String,
        body: String,
        partial: bool,
    ) -> Result<MessageId, BusinessError> {
        let original = self.original(&id)?;
        if original.side != Side::Received || original.kind != MessageKind::Request {
            return Err(BusinessError::NotAllowed(
                "a reply answers a request this node received".into(),
            ));
        }
        let reply = Body::Reply(Reply {
            in_reply_to: id,
            subject,
            body,
            partial,
            thread: Thread::replying_to(id, &original.thread),
        });
        Ok(self.submit(original.peer, reply).await?)
    }

    /// The business history of message `id`, oldest first.
    pub fn business_history(&self, id: &MessageId) -> Result<Vec<BusinessEvent>, StoreError> {
        self.store().business_history(id)
    }
}

/// Whether a status update from `from` may be accepted: it must be about a
/// message exchanged with `from`, sent by the side that owns that status
/// (the requester withdraws, the receiving authority reports the rest), and
/// follow the current status. Checked before the envelope is accepted, so
/// a refused update fails at its sender rather than corrupting history.
pub(crate) fn check_incoming_status(
    store: &Store,
    from: NodeId,
    update: &StatusUpdate,
) -> Result<(), String> {
    let regarding = update.regarding;
    let status = &update.status;
    let kind = if let Some((m, _)) = store.outbound(&regarding).map_err(|e| e.to_string())? {
        if m.peer != from {
            return Err(format!("message {regarding} was not sent to you"));
        }
        if status.sent_by_requester() {
            return Err(format!(
                "{} is the requester's to send, and the requester is this node",
                status.name()
            ));
        }
        m.kind
    } else if let Some(m) = store
        .inbound(&from, &regarding)
        .map_err(|e| e.to_string())?
    {
        if !status.sent_by_requester() {
            return Err(format!(
                "you sent message {regarding}: only its receiver reports {}",
                status.name()
            ));
        }
        m.kind
    } else {
        return Err(format!("no message {regarding} was exchanged with you"));
    };
    match (kind, status) {
        (MessageKind::SpontaneousInformation, BusinessStatus::Acknowledged) => {}
        (MessageKind::Request, s) if !matches!(s, BusinessStatus::Acknowledged) => {}
        (kind, s) => {
            return Err(format!(
                "{} does not apply to {}",
                s.name(),
                with_article(kind.name())
            ))
        }
    }
    let history = store
        .business_history(&regarding)
        .map_err(|e| e.to_string())?;
    status
        .may_follow(history.last().map(|e| &e.status))
        .map_err(|e| e.to_string())
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

/// "a request", "an info".
fn with_article(noun: &str) -> String {
    let vowel = noun.starts_with(['a', 'e', 'i', 'o', 'u']);
    format!("{} {noun}", if vowel { "an" } else { "a" })
}
