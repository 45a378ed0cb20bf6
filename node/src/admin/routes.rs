//! `/v1` endpoints. Every error is `{"error": {"code": ..., "message": ...}}`
//! with a status that says whose fault it was.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use comity_protocol::message::Body;
use comity_protocol::{MessageId, NodeId, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::node::{Node, SubmitError};

type AppState = Arc<Node>;

pub fn router(node: Arc<Node>, body_limit: usize) -> Router {
    Router::new()
        .route("/v1/node", get(node_info))
        .route("/v1/peers", get(peers))
        .route("/v1/messages", get(list_messages).post(submit))
        .route("/v1/messages/{id}", get(show_message))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(node)
}

pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    fn internal(e: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        (self.status, Json(body)).into_response()
    }
}

async fn node_info(State(node): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let outbox = node.outbox().map_err(ApiError::internal)?;
    let mut by_state = std::collections::BTreeMap::<&str, usize>::new();
    for m in &outbox {
        *by_state.entry(m.state).or_default() += 1;
    }
    let inbox = node.inbox().map_err(ApiError::internal)?.len();
    let c = node.config();
    Ok(Json(json!({
        "id": node.id().to_string(),
        "name": c.node.name,
        "country": c.node.country.as_str(),
        "listen": node.local_addr().map(|a| a.to_string()).ok(),
        "outbox": by_state,
        "inbox": inbox,
        "rejected": node.rejections().map_err(ApiError::internal)?.len(),
    })))
}

async fn peers(State(node): State<AppState>) -> Json<serde_json::Value> {
    Json(json!(node.peers()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubmitRequest {
    /// A pinned peer's country code or node id.
    to: String,
    body: Body,
}

#[derive(Serialize)]
struct Submitted {
    id: MessageId,
    peer: NodeId,
    state: &'static str,
}

async fn submit(
    State(node): State<AppState>,
    body: Result<Json<SubmitRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Submitted>), ApiError> {
    let Json(req) =
        body.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad-request", e.body_text()))?;
    let peer = resolve_peer(&node, &req.to)?;
    match node.submit(peer, req.body).await {
        Ok(id) => Ok((
            StatusCode::CREATED,
            Json(Submitted {
                id,
                peer,
                state: "queued",
            }),
        )),
        Err(e @ (SubmitError::Invalid(_) | SubmitError::TooLarge { .. })) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-message",
            e.to_string(),
        )),
        Err(e @ SubmitError::UnknownPeer(_)) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown-peer",
            e.to_string(),
        )),
        Err(e) => Err(ApiError::internal(e)),
    }
}

fn resolve_peer(node: &Node, to: &str) -> Result<NodeId, ApiError> {
    if let Ok(id) = to.parse::<NodeId>() {
        return Ok(id);
    }
    if let Ok(cc) = to.parse::<comity_config::CountryCode>() {
        if let Some(p) = node.config().peer_by_country(cc) {
            return Ok(p.id);
        }
        if let Some(p) = node.peers().into_iter().find(|p| p.country == cc.as_str()) {
            return Ok(p.id);
        }
    }
    Err(ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown-peer",
        format!("no pinned peer for {to:?}: give a pinned peer's country code or node id (see `comity peer list`)"),
    ))
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(rename = "box")]
    mailbox: Option<String>,
}

#[derive(Serialize)]
struct Listed {
    id: MessageId,
    direction: &'static str,
    kind: comity_protocol::message::MessageKind,
    peer: NodeId,
    state: &'static str,
    created_at: Timestamp,
    subject: Option<String>,
    last_error: Option<String>,
}

async fn list_messages(
    State(node): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<Listed>>, ApiError> {
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
            let subject = node
                .outbound(&m.id)
                .ok()
                .flatten()
                .and_then(|(msg, _)| msg.body.subject().map(str::to_string));
            out.push(Listed {
                id: m.id,
                direction: "outbound",
                kind: m.kind,
                peer: m.peer,
                state: m.state,
                created_at: m.created_at,
                subject,
                last_error: m.last_error,
            });
        }
    }
    if inbox {
        for m in node.inbox().map_err(ApiError::internal)? {
            out.push(Listed {
                id: m.id,
                direction: "inbound",
                kind: m.kind,
                peer: m.sender,
                state: "received",
                created_at: m.created_at,
                subject: m.body.subject().map(str::to_string),
                last_error: None,
            });
        }
    }
    out.sort_by_key(|m| m.created_at);
    Ok(Json(out))
}

async fn show_message(
    State(node): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id: MessageId = id
        .parse()
        .map_err(|e: comity_protocol::ids::ParseMessageIdError| {
            ApiError::new(StatusCode::BAD_REQUEST, "bad-request", e.to_string())
        })?;
    if let Some((m, s)) = node.outbound(&id).map_err(ApiError::internal)? {
        return Ok(Json(json!({
            "id": m.id,
            "direction": "outbound",
            "kind": m.kind,
            "peer": m.peer,
            "created_at": m.created_at,
            "state": s.state.name(),
            "attempts": s.attempts,
            "last_error": s.last_error,
            "sent_at": s.sent_at,
            "delivered_at": s.delivered_at,
            "envelope_digest": m.digest,
            "receipt": s.receipt.as_ref().map(hex::encode),
            "body": m.body,
        })));
    }
    for m in node.inbox().map_err(ApiError::internal)? {
        if m.id == id {
            return Ok(Json(json!({
                "id": m.id,
                "direction": "inbound",
                "kind": m.kind,
                "peer": m.sender,
                "created_at": m.created_at,
                "received_at": m.received_at,
                "state": "received",
                "envelope_digest": m.digest,
                "receipt": hex::encode(&m.receipt),
                "body": m.body,
            })));
        }
    }
    Err(ApiError::new(
        StatusCode::NOT_FOUND,
        "not-found",
        format!("no message {id}"),
    ))
}
