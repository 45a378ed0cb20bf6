//! `/v1/messages`: submit, list, show, status updates and replies.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use comity_protocol::message::{Body, BusinessStatus};
use comity_protocol::{MessageId, NodeId, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::accepting::{idempotency_key, to_completion, Created};
use super::error::{business_error, find_error, submit_error};
use super::{message_ref, parse_json, ApiError, AppState, PeerQuery};
use crate::counts::{Direction, HeldState};
use crate::lookup::Found;
use crate::store::OutboundState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StatusRequest {
    status: BusinessStatus,
    #[serde(default)]
    note: Option<String>,
}

pub(super) async fn set_status(
    State(state): State<AppState>,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
    q: Result<Query<PeerQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Result<Json<StatusRequest>, JsonRejection>,
) -> Result<Created<serde_json::Value>, ApiError> {
    let r = message_ref(&state, id, q)?;
    let key = idempotency_key(&headers)?;
    let req = parse_json(body)?;
    let update = to_completion(async move {
        state
            .set_status(r, req.status, req.note, key)
            .await
            .map_err(business_error)
    })
    .await?;
    Ok(Created {
        body: json!({"id": update.id, "regarding": r.id}),
        replayed: update.replayed,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReplyRequest {
    subject: String,
    body: String,
    #[serde(default)]
    partial: bool,
}

pub(super) async fn reply(
    State(state): State<AppState>,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
    q: Result<Query<PeerQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Result<Json<ReplyRequest>, JsonRejection>,
) -> Result<Created<serde_json::Value>, ApiError> {
    let r = message_ref(&state, id, q)?;
    let key = idempotency_key(&headers)?;
    let req = parse_json(body)?;
    let reply = to_completion(async move {
        state
            .reply(r, req.subject, req.body, req.partial, key)
            .await
            .map_err(business_error)
    })
    .await?;
    Ok(Created {
        body: json!({"id": reply.id, "in_reply_to": r.id}),
        replayed: reply.replayed,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SubmitRequest {
    /// A pinned peer's country code or node id.
    to: String,
    body: Body,
}

#[derive(Serialize)]
pub(super) struct Submitted {
    id: MessageId,
    peer: NodeId,
    state: HeldState,
}

pub(super) async fn submit(
    State(node): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<SubmitRequest>, JsonRejection>,
) -> Result<Created<Submitted>, ApiError> {
    let key = idempotency_key(&headers)?;
    let req = parse_json(body)?;
    match req.body {
        Body::StatusUpdate(_) | Body::Reply(_) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-message",
                "status updates and replies answer a message: use POST /v1/messages/{id}/status or /v1/messages/{id}/reply",
            ))
        }
        _ => {}
    }
    let peer = resolve_peer(&node, &req.to)?;
    let accepted =
        to_completion(async move { node.submit(peer, req.body, key).await.map_err(submit_error) })
            .await?;
    Ok(Created {
        body: Submitted {
            id: accepted.id,
            peer,
            // What the first answer said, for a replay too.
            state: HeldState::Outbound(OutboundState::Queued),
        },
        replayed: accepted.replayed,
    })
}

pub(super) fn resolve_peer(node: &AppState, to: &str) -> Result<NodeId, ApiError> {
    node.resolve_peer(to).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown-peer",
            format!("no pinned peer for {to:?}: give a pinned peer's country code or node id (see `comity peer list`)"),
        )
    })
}

#[derive(Deserialize)]
pub(super) struct ListQuery {
    #[serde(rename = "box")]
    mailbox: Option<String>,
}

#[derive(Serialize)]
pub(super) struct Listed {
    id: MessageId,
    direction: Direction,
    kind: comity_protocol::message::MessageKind,
    peer: NodeId,
    state: HeldState,
    created_at: Timestamp,
    subject: Option<String>,
    last_error: Option<String>,
}

pub(super) async fn list(
    State(node): State<AppState>,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<Listed>>, ApiError> {
    let Query(q) =
        q.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad-request", e.body_text()))?;
    let (outbox, inbox) = match q.mailbox.as_deref() {
        None => (true, true),
        Some("outbox") => (true, false),
        Some("inbox") => (false, true),
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad-request",
                format!("box must be inbox or outbox, not {other:?}"),
            ))
        }
    };
    let mut out = Vec::new();
    if outbox {
        for m in node.outbox().map_err(ApiError::internal)? {
            out.push(Listed {
                id: m.id,
                direction: Direction::Outbound,
                kind: m.kind,
                peer: m.peer,
                state: HeldState::Outbound(m.state),
                created_at: m.created_at,
                subject: m.subject,
                last_error: m.last_error,
            });
        }
    }
    if inbox {
        for m in node.inbox().map_err(ApiError::internal)? {
            out.push(Listed {
                id: m.id,
                direction: Direction::Inbound,
                kind: m.kind,
                peer: m.sender,
                state: HeldState::Received,
                created_at: m.created_at,
                subject: m.body.subject().map(str::to_string),
                last_error: None,
            });
        }
    }
    out.sort_by_key(|m| m.created_at);
    Ok(Json(out))
}

#[derive(Serialize)]
pub(super) struct HistoryView {
    status: BusinessStatus,
    note: Option<String>,
    at: Timestamp,
    by: NodeId,
    /// "us" or "peer".
    from: &'static str,
    update: MessageId,
}

pub(super) async fn show(
    State(node): State<AppState>,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
    q: Result<Query<PeerQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let r = message_ref(&node, id, q)?;
    let found = node.find(&r).map_err(find_error)?;
    let me = node.id();
    let history: Vec<HistoryView> = node
        .business_history(&found)
        .map_err(ApiError::internal)?
        .into_iter()
        .map(|e| HistoryView {
            from: if e.by == me { "us" } else { "peer" },
            status: e.status,
            note: e.note,
            at: e.at,
            by: e.by,
            update: e.update,
        })
        .collect();
    Ok(Json(match found {
        Found::Sent(m) => {
            let Some(s) = node.outbound_status(&m.id).map_err(ApiError::internal)? else {
                return Err(ApiError::internal("outbound message without its status"));
            };
            let (resent_as, resend_of) = node.resend_links(&m.id).map_err(ApiError::internal)?;
            json!({
                "id": m.id,
                "direction": Direction::Outbound,
                "kind": m.kind,
                "peer": m.peer,
                "created_at": m.created_at,
                "state": HeldState::Outbound(s.state),
                "attempts": s.attempts,
                "last_error": node.last_error(&m, &s),
                "sent_at": s.sent_at,
                "delivered_at": s.delivered_at,
                "envelope_digest": m.digest,
                "receipt": s.receipt.as_ref().map(hex::encode),
                "history": history,
                "resent_as": resent_as,
                "resend_of": resend_of,
                "body": m.body,
            })
        }
        Found::Received(m) => json!({
            "resend_of": node
                .received_resend_of(&m.sender, &m.id)
                .map_err(ApiError::internal)?,
            "id": m.id,
            "direction": Direction::Inbound,
            "kind": m.kind,
            "peer": m.sender,
            "created_at": m.created_at,
            "received_at": m.received_at,
            "state": HeldState::Received,
            "envelope_digest": m.digest,
            "receipt": hex::encode(&m.receipt),
            "history": history,
            "body": m.body,
        }),
    }))
}
