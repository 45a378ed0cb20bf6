//! `/v1/messages`: submit, list, show, status updates and replies.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::Json;
use comity_protocol::message::{Body, BusinessStatus};
use comity_protocol::{MessageId, NodeId, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::accepting::{idempotency_key, to_completion, Created};
use super::error::{business_error, find_error, submit_error};
use super::{message_ref, parse_json, ApiError, AppState, PeerQuery};
use crate::attachments::StoredId;
use crate::counts::{Direction, HeldState};
use crate::listing::{DEFAULT_PAGE, MAX_PAGE};
use crate::lookup::Found;
use crate::store::listing::ParsePositionError;
use crate::store::{ListQuery, OutboundState, Way};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StatusRequest {
    status: BusinessStatus,
    #[serde(default)]
    note: Option<String>,
    /// Refused when not empty: a status update carries no content.
    #[serde(default)]
    attachments: Vec<String>,
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
    if !req.attachments.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-attachment",
            "a status update carries no attachments: attach files to a request, spontaneous \
             information, consultation or reply",
        ));
    }
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
    /// Stored ids of uploaded files (`POST /v1/attachments`), in order.
    #[serde(default)]
    attachments: Vec<String>,
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
    let attachments = stored_ids(&req.attachments)?;
    let reply = to_completion(async move {
        state
            .reply(r, req.subject, req.body, req.partial, &attachments, key)
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
    /// Stored ids of uploaded files (`POST /v1/attachments`), in order.
    #[serde(default)]
    attachments: Vec<String>,
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
    let attachments = stored_ids(&req.attachments)?;
    let accepted = to_completion(async move {
        node.submit_with(peer, req.body, &attachments, key)
            .await
            .map_err(submit_error)
    })
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

/// The stored ids a request lists, as the upload answered them.
fn stored_ids(ids: &[String]) -> Result<Vec<StoredId>, ApiError> {
    ids.iter()
        .map(|s| {
            s.parse()
                .map_err(|e: crate::attachments::ParseStoredIdError| {
                    ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "invalid-attachment",
                        e.to_string(),
                    )
                })
        })
        .collect()
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

/// `GET /v1/messages` query: filters, where to start, how many.
#[derive(Deserialize)]
pub(super) struct ListParams {
    #[serde(rename = "box")]
    mailbox: Option<String>,
    peer: Option<String>,
    kind: Option<String>,
    state: Option<String>,
    /// Milliseconds since the epoch.
    since: Option<u64>,
    after: Option<String>,
    limit: Option<usize>,
    order: Option<String>,
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
    /// Received only: when this node received it.
    received_at: Option<Timestamp>,
}

fn bad_query(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad-request", message)
}

/// The listing query `p` asks for, and the same query as a URL's
/// parameters without `after` (for the `Link` to the next page).
fn list_query(node: &AppState, p: ListParams) -> Result<(ListQuery, String), ApiError> {
    let mut q = ListQuery::all(DEFAULT_PAGE);
    let mut params = Vec::new();
    if let Some(b) = p.mailbox {
        q.way = Some(match b.as_str() {
            "outbox" => Way::Sent,
            "inbox" => Way::Received,
            other => {
                return Err(bad_query(format!(
                    "box must be inbox or outbox, not {other:?}"
                )))
            }
        });
        params.push(format!("box={b}"));
    }
    if let Some(peer) = p.peer {
        let id = node.resolve_peer(&peer).ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown-peer",
                format!("peer {peer:?} is neither a node id nor a pinned peer's country code"),
            )
        })?;
        q.peer = Some(id);
        params.push(format!("peer={id}"));
    }
    if let Some(k) = p.kind {
        let kind: comity_protocol::message::MessageKind =
            k.parse().map_err(|e| bad_query(format!("kind: {e}")))?;
        q.kind = Some(kind);
        params.push(format!("kind={}", kind.name()));
    }
    if let Some(st) = p.state {
        let state = HeldState::parse(&st).ok_or_else(|| {
            bad_query(format!(
                "state must be one of {}, not {st:?}",
                HeldState::NAMES.join(", ")
            ))
        })?;
        q.state = Some(state);
        params.push(format!("state={}", state.name()));
    }
    if let Some(t) = p.since {
        q.since = Some(Timestamp(t));
        params.push(format!("since={t}"));
    }
    if let Some(n) = p.limit {
        if !(1..=MAX_PAGE).contains(&n) {
            return Err(bad_query(format!("limit must be 1 to {MAX_PAGE}, not {n}")));
        }
        q.limit = n;
    }
    params.push(format!("limit={}", q.limit));
    match p.order.as_deref() {
        None | Some("oldest") => {}
        Some("newest") => {
            q.newest_first = true;
            params.push("order=newest".into());
        }
        Some(other) => {
            return Err(bad_query(format!(
                "order must be oldest or newest, not {other:?}"
            )))
        }
    }
    if let Some(c) = p.after {
        q.after = Some(
            c.parse()
                .map_err(|e: ParsePositionError| bad_query(e.to_string()))?,
        );
    }
    Ok((q, params.join("&")))
}

/// A page of messages, oldest (or newest) first; where the next page
/// starts is in the `Comity-Next-Cursor` and `Link` headers (absent on the
/// last page). The body stays the JSON array it always was.
pub(super) async fn list(
    State(node): State<AppState>,
    q: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<(HeaderMap, Json<Vec<Listed>>), ApiError> {
    let Query(p) = q.map_err(|e| bad_query(e.body_text()))?;
    let (q, params) = list_query(&node, p)?;
    let (page, next) = node.list_messages(&q).map_err(ApiError::internal)?;
    let out = page
        .into_iter()
        .map(|m| {
            let s = m.summary;
            Listed {
                id: s.id,
                direction: match s.way {
                    Way::Sent => Direction::Outbound,
                    Way::Received => Direction::Inbound,
                },
                kind: s.kind,
                peer: s.peer,
                state: s.state,
                created_at: s.created_at,
                subject: s.subject,
                last_error: m.last_error,
                received_at: (s.way == Way::Received).then_some(s.recorded_at),
            }
        })
        .collect();
    let mut headers = HeaderMap::new();
    if let Some(next) = next {
        let value = |v: String| HeaderValue::from_str(&v).map_err(ApiError::internal);
        headers.insert("comity-next-cursor", value(next.to_string())?);
        headers.insert(
            header::LINK,
            value(format!(
                "</v1/messages?{params}&after={next}>; rel=\"next\""
            ))?,
        );
    }
    Ok((headers, Json(out)))
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
    let exact = crate::lookup::MessageRef {
        id: r.id,
        peer: Some(found.peer()),
        way: Some(found.way()),
    };
    let listed = node.node.clone();
    let attachments = tokio::task::spawn_blocking(move || listed.attachments(&exact))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?
        .attachments;
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
                // What the message carries, as signed (never the content
                // keys), with where each attachment stands.
                "attachments": attachments,
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
            "attachments": attachments,
        }),
    }))
}
