//! `/v1` endpoints. Every error is `{"error": {"code": ..., "message": ...}}`
//! with a status that says whose fault it was.

use std::sync::Arc;

use std::path::PathBuf;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use comity_protocol::ids::ParseMessageIdError;
use comity_protocol::message::{Body, BusinessStatus};
use comity_protocol::{MessageId, NodeId, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::business::BusinessError;
use crate::node::{Node, SubmitError};

#[derive(Clone)]
pub struct AppState {
    node: Arc<Node>,
    /// Where `peer add`/`peer remove` persist (None: run-time only).
    config_path: Option<PathBuf>,
}

impl std::ops::Deref for AppState {
    type Target = Node;
    fn deref(&self) -> &Node {
        &self.node
    }
}

pub fn router(node: Arc<Node>, config_path: Option<PathBuf>, body_limit: usize) -> Router {
    Router::new()
        .route("/v1/node", get(node_info))
        .route("/v1/peers", get(peers).post(add_peer))
        .route("/v1/peers/{id}", delete(remove_peer))
        .route("/v1/messages", get(list_messages).post(submit))
        .route("/v1/messages/{id}", get(show_message))
        .route("/v1/messages/{id}/status", post(set_status))
        .route("/v1/messages/{id}/reply", post(reply))
        .route("/v1/stats", get(stats))
        .route("/v1/audit/export", get(audit_export))
        .route("/v1/audit/proof/{id}", get(audit_proof))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(AppState { node, config_path })
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "this endpoint does not take that method (see docs/admin-api.md)",
    )
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not-found",
        "no such endpoint (see docs/admin-api.md)",
    )
}

/// Keeps axum's status (400 syntax, 413 too large, 415 not JSON, 422 wrong
/// shape) but answers in our error format.
fn parse_json<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(v)| v).map_err(|e| {
        let code = match e.status() {
            StatusCode::PAYLOAD_TOO_LARGE => "too-large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "not-json",
            _ => "bad-request",
        };
        ApiError::new(e.status(), code, e.body_text())
    })
}

fn path_param(
    p: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<String, ApiError> {
    p.map(|Path(s)| s)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad-request", e.body_text()))
}

fn parse_id(id: &str) -> Result<MessageId, ApiError> {
    id.parse().map_err(|e: ParseMessageIdError| {
        ApiError::new(StatusCode::BAD_REQUEST, "bad-request", e.to_string())
    })
}

/// Editing the config file failed: the peer's data made it invalid (the
/// caller's fault) or the file could not be read or written (ours).
fn config_error(e: comity_config::ConfigError) -> ApiError {
    match e {
        comity_config::ConfigError::Invalid { .. } => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-peer",
            e.to_string(),
        ),
        e => ApiError::internal(format!("configuration file: {e}")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PeerRequest {
    id: NodeId,
    address: String,
    #[serde(default)]
    name: String,
    country: String,
}

async fn add_peer(
    State(state): State<AppState>,
    body: Result<Json<PeerRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let req = parse_json(body)?;
    let country: comity_config::CountryCode =
        req.country
            .parse()
            .map_err(|e: comity_config::ParseCountryError| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid-peer",
                    e.to_string(),
                )
            })?;
    if req.id == state.id() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-peer",
            "that is this node's own id",
        ));
    }
    if state
        .peers()
        .iter()
        .any(|p| p.id == req.id || p.country == country.as_str())
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "peer-exists",
            if state.peers().iter().any(|p| p.id == req.id) {
                format!("node {} is already pinned; remove it first", req.id)
            } else {
                format!("a peer for {country} is already pinned; remove it first")
            },
        ));
    }
    comity_config::parse_host_port(&req.address).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-peer",
            e.to_string(),
        )
    })?;
    let peer = comity_config::PeerConfig {
        id: req.id,
        address: req.address,
        name: req.name,
        country,
    };
    if let Some(path) = &state.config_path {
        comity_config::Config::add_peer_to_file(path, &peer).map_err(config_error)?;
    }
    state.add_peer(peer).map_err(ApiError::internal)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": req.id, "persisted": state.config_path.is_some()})),
    ))
}

async fn remove_peer(
    State(state): State<AppState>,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = resolve_peer(&state, &path_param(id)?)?;
    if let Some(path) = &state.config_path {
        // Only if the file lists it (it may have been pinned at run time
        // only); any other problem with the file is reported, not ignored.
        let listed = comity_config::Config::load(path)
            .map_err(config_error)?
            .peer_by_id(&id)
            .is_some();
        if listed {
            comity_config::Config::remove_peer_from_file(path, &id).map_err(config_error)?;
        }
    }
    if !state.remove_peer(&id) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown-peer",
            format!("{id} is not pinned"),
        ));
    }
    Ok(Json(json!({"id": id, "removed": true})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusRequest {
    status: BusinessStatus,
    #[serde(default)]
    note: Option<String>,
}

async fn set_status(
    State(state): State<AppState>,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
    body: Result<Json<StatusRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let id = parse_id(&path_param(id)?)?;
    let req = parse_json(body)?;
    let update = state
        .set_status(id, req.status, req.note)
        .await
        .map_err(business_error)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": update, "regarding": id})),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplyRequest {
    subject: String,
    body: String,
    #[serde(default)]
    partial: bool,
}

async fn reply(
    State(state): State<AppState>,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
    body: Result<Json<ReplyRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let id = parse_id(&path_param(id)?)?;
    let req = parse_json(body)?;
    let reply = state
        .reply(id, req.subject, req.body, req.partial)
        .await
        .map_err(business_error)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": reply, "in_reply_to": id})),
    ))
}

fn business_error(e: BusinessError) -> ApiError {
    match e {
        BusinessError::NotFound(_) => {
            ApiError::new(StatusCode::NOT_FOUND, "not-found", e.to_string())
        }
        BusinessError::NotAllowed(_) | BusinessError::Transition(_) => {
            ApiError::new(StatusCode::CONFLICT, "not-allowed", e.to_string())
        }
        BusinessError::Submit(s) => submit_error(s),
        BusinessError::Store(s) => ApiError::internal(s),
    }
}

async fn stats(State(state): State<AppState>) -> Result<Json<crate::stats::Stats>, ApiError> {
    state.stats().map(Json).map_err(ApiError::internal)
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
    let counts = node.message_counts().map_err(ApiError::internal)?;
    let c = node.config();
    Ok(Json(json!({
        "id": node.id().to_string(),
        "name": c.node.name,
        "country": c.node.country.as_str(),
        "listen": node.local_addr().map(|a| a.to_string()).ok(),
        "outbox": counts.outbound_by_state(),
        "inbox": counts.inbound(),
        "rejected": node.rejection_count(),
        "handshakes_refused": node.handshakes_refused(),
        "audit": audit_status(&node)?,
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
    body: Result<Json<SubmitRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<Submitted>), ApiError> {
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
    let id = node.submit(peer, req.body).await.map_err(submit_error)?;
    Ok((
        StatusCode::CREATED,
        Json(Submitted {
            id,
            peer,
            state: "queued",
        }),
    ))
}

fn submit_error(e: SubmitError) -> ApiError {
    match e {
        SubmitError::Invalid(_) | SubmitError::TooLarge { .. } => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-message",
            e.to_string(),
        ),
        SubmitError::UnknownPeer(_) => {
            ApiError::new(StatusCode::NOT_FOUND, "unknown-peer", e.to_string())
        }
        e => ApiError::internal(e),
    }
}

fn resolve_peer(node: &Node, to: &str) -> Result<NodeId, ApiError> {
    if let Ok(id) = to.parse::<NodeId>() {
        return Ok(id);
    }
    if let Ok(cc) = to.parse::<comity_config::CountryCode>() {
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
                direction: "outbound",
                kind: m.kind,
                peer: m.peer,
                state: m.state,
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

#[derive(Serialize)]
struct HistoryView {
    status: BusinessStatus,
    note: Option<String>,
    at: Timestamp,
    by: NodeId,
    /// "us" or "peer".
    from: &'static str,
    update: MessageId,
}

async fn show_message(
    State(node): State<AppState>,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = parse_id(&path_param(id)?)?;
    let me = node.id();
    let history: Vec<HistoryView> = node
        .business_history(&id)
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
    if let Some((m, s)) = node.outbound(&id).map_err(ApiError::internal)? {
        return Ok(Json(json!({
            "id": m.id,
            "direction": "outbound",
            "kind": m.kind,
            "peer": m.peer,
            "created_at": m.created_at,
            "state": s.state.name(),
            "attempts": s.attempts,
            "last_error": node.last_error(&m, &s),
            "sent_at": s.sent_at,
            "delivered_at": s.delivered_at,
            "envelope_digest": m.digest,
            "receipt": s.receipt.as_ref().map(hex::encode),
            "history": history,
            "body": m.body,
        })));
    }
    if let Some(m) = node.inbound_by_id(&id).map_err(ApiError::internal)? {
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
            "history": history,
            "body": m.body,
        })));
    }
    Err(ApiError::new(
        StatusCode::NOT_FOUND,
        "not-found",
        format!("no message {id} on this node"),
    ))
}

fn audit_status(node: &Node) -> Result<serde_json::Value, ApiError> {
    let audit = node.audit();
    let witnesses: Vec<serde_json::Value> = node
        .peers()
        .iter()
        .map(|p| json!({"peer": p.id, "country": p.country, "cosigned_size": audit.cosigned_by(&p.id)}))
        .collect();
    Ok(json!({
        "origin": audit.origin(),
        "entries": audit.size(),
        "latest_checkpoint": *audit.latest().borrow(),
        "witnesses": witnesses,
        "alarms": audit.alarms().map_err(ApiError::internal)?,
    }))
}

/// Signs a checkpoint over everything so far and makes it durable (and
/// offered to witnesses) before anything is handed out over it.
async fn durable_checkpoint(node: &AppState) -> Result<(), ApiError> {
    // Sealing syncs the log's files: off the runtime's threads.
    let n = node.node.clone();
    tokio::task::spawn_blocking(move || n.audit().checkpoint(n.identity()))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    let signed = node.audit().signed();
    node.store().commit().await.map_err(ApiError::internal)?;
    node.audit().publish(signed);
    Ok(())
}

/// The whole log as a bundle (JSON Lines), streamed as it is written.
async fn audit_export(State(node): State<AppState>) -> Result<Response, ApiError> {
    node.audit_note(
        crate::audit::Fact::new(
            comity_protocol::audit::entry::AuditKind::AdminAction,
            comity_protocol::audit::entry::Actor::Operator,
        )
        .detail("audit export"),
    );
    durable_checkpoint(&node).await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(16);
    let node = node.node.clone();
    tokio::task::spawn_blocking(move || {
        let mut w = std::io::BufWriter::with_capacity(256 * 1024, ChannelWriter(tx.clone()));
        let result = node
            .audit()
            .export(&node.id(), &mut w)
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|_| std::io::Write::flush(&mut w));
        if let Err(e) = result {
            let _ = tx.blocking_send(Err(e));
        }
    });
    let stream = tokio_stream_from(rx);
    Response::builder()
        .header("content-type", "application/x-ndjson")
        .body(axum::body::Body::from_stream(stream))
        .map_err(ApiError::internal)
}

struct ChannelWriter(tokio::sync::mpsc::Sender<Result<Vec<u8>, std::io::Error>>);

impl std::io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Ok(buf.to_vec()))
            .map_err(|_| std::io::Error::other("client went away"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

async fn audit_proof(
    State(node): State<AppState>,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Response, ApiError> {
    use crate::audit::Proof;
    let id = parse_id(&path_param(id)?)?;
    let mut proof = node
        .audit()
        .proof(&node.id(), id)
        .map_err(ApiError::internal)?;
    if matches!(proof, Proof::NotCovered) {
        durable_checkpoint(&node).await?;
        proof = node
            .audit()
            .proof(&node.id(), id)
            .map_err(ApiError::internal)?;
    }
    let json = match proof {
        Proof::File(json) => json,
        Proof::NoEntries => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not-found",
                format!("no audit entry names message {id}"),
            ))
        }
        Proof::NotCovered => {
            return Err(ApiError::internal(
                "no durable checkpoint covers the entries",
            ))
        }
    };
    // Recorded after the proof is built, and not indexed under the message,
    // so that asking for proofs does not grow the proofs.
    node.audit_note(
        crate::audit::Fact::new(
            comity_protocol::audit::entry::AuditKind::AdminAction,
            comity_protocol::audit::entry::Actor::Operator,
        )
        .detail(&format!("audit proof {id}")),
    );
    Response::builder()
        .header("content-type", "application/json")
        .body(axum::body::Body::from(json))
        .map_err(ApiError::internal)
}
