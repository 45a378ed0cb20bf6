//! `/v1` endpoints, one file per resource: [`peers`], [`messages`],
//! [`attachments`] (uploads), [`evidence`] (a message's attachments and
//! their read-out), [`audit`], [`alarms`]. Every error is `{"error": {"code": ..., "message": ...}}`
//! with a status that says whose fault it was ([`ApiError`]).

mod accepting;
mod alarms;
mod attachments;
mod audit;
mod backup;
mod error;
mod evidence;
mod keys;
mod messages;
mod peers;
mod resend;

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use comity_protocol::ids::ParseMessageIdError;
use comity_protocol::MessageId;
use serde_json::json;

use crate::lookup::MessageRef;
use crate::node::Node;
use crate::store::Way;
pub use error::ApiError;
use serde::Deserialize;

#[derive(Clone)]
pub struct AppState {
    node: Arc<Node>,
    /// Where `peer add`/`peer remove` persist (None: run-time only).
    config_path: Option<PathBuf>,
    /// Held while a backup is written (one at a time).
    backup_running: Arc<tokio::sync::Mutex<()>>,
    /// Held while the peer table and its file change (one edit at a time:
    /// the file edits read, check and replace the whole file).
    peer_edit: Arc<tokio::sync::Mutex<()>>,
}

impl std::ops::Deref for AppState {
    type Target = Node;
    fn deref(&self) -> &Node {
        &self.node
    }
}

/// What every route shares.
pub fn state(node: Arc<Node>, config_path: Option<PathBuf>) -> AppState {
    AppState {
        node,
        config_path,
        backup_running: Arc::default(),
        peer_edit: Arc::default(),
    }
}

pub use peers::apply_transitions;

pub fn router_for(state: AppState, body_limit: usize) -> Router {
    Router::new()
        .route("/v1/node", get(node_info))
        .route("/v1/peers", get(peers::list).post(peers::add))
        .route("/v1/peers/{id}", delete(peers::remove))
        .route("/v1/peers/{id}/repin", post(peers::repin))
        .route(
            "/v1/peers/{id}/rotation/accept",
            post(peers::accept_rotation),
        )
        .route(
            "/v1/peers/{id}/rotation/refuse",
            post(peers::refuse_rotation),
        )
        // The body streams to disk: no body limit applies (the size is
        // checked against limits.max_attachment_bytes before it is read).
        .route("/v1/attachments", post(attachments::upload))
        .route("/v1/messages", get(messages::list).post(messages::submit))
        .route("/v1/messages/{id}", get(messages::show))
        .route("/v1/messages/{id}/status", post(messages::set_status))
        .route("/v1/messages/{id}/reply", post(messages::reply))
        .route("/v1/messages/{id}/resend", post(resend::resend))
        .route("/v1/messages/{id}/attachments", get(evidence::list))
        .route(
            "/v1/messages/{id}/attachments/{index}/content",
            get(evidence::content),
        )
        .route("/v1/stats", get(stats))
        .route("/v1/audit/export", get(audit::export))
        .route("/v1/audit/proof/{id}", get(audit::proof))
        .route("/v1/audit/witnessed/{peer}", get(audit::witnessed))
        .route("/v1/backup", post(backup::backup))
        .route("/v1/keys", get(keys::status))
        .route("/v1/keys/rotate-encryption", post(keys::rotate_encryption))
        .route("/v1/keys/rotate-identity", post(keys::rotate_identity))
        .route("/v1/alarms", get(alarms::list))
        .route("/v1/alarms/{id}/ack", post(alarms::ack))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
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

/// `?peer=` on a message's path: the peer (country code or node id) that
/// names the message when its id alone is ambiguous.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PeerQuery {
    peer: Option<String>,
    /// `sent` or `received`, when one peer both sent and received the id.
    way: Option<String>,
}

/// The message a path names: `{id}` with `?peer=PEER`, or `{PEER/ID}`.
fn message_ref(
    node: &AppState,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
    q: Result<Query<PeerQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<MessageRef, ApiError> {
    message_ref_from(node, path_param(id)?, q)
}

/// [`message_ref`] of a path's message part already extracted.
fn message_ref_from(
    node: &AppState,
    text: String,
    q: Result<Query<PeerQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<MessageRef, ApiError> {
    let Query(q) =
        q.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad-request", e.body_text()))?;
    let (peer, id) = match text.split_once('/') {
        Some((p, i)) => (Some(p.to_string()), i.to_string()),
        None => (q.peer, text),
    };
    let peer = match peer {
        None => None,
        Some(p) => Some(node.resolve_peer(&p).ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown-peer",
                format!("{p:?} is neither a node id nor a pinned peer's country code"),
            )
        })?),
    };
    let way = match q.way.as_deref() {
        None => None,
        Some("sent") => Some(Way::Sent),
        Some("received") => Some(Way::Received),
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad-request",
                format!("way must be sent or received, not {other:?}"),
            ))
        }
    };
    Ok(MessageRef {
        id: parse_id(&id)?,
        peer,
        way,
    })
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

async fn stats(State(state): State<AppState>) -> Result<Json<crate::stats::Stats>, ApiError> {
    state.stats().map(Json).map_err(ApiError::internal)
}

async fn node_info(State(node): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let counts = node.message_counts();
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
        "transition_statements_unverified": node.statements_not_heard().0,
        "transition_statements_dropped": node.statements_not_heard().1,
        "incoming_handshakes": node.incoming_handshakes(),
        "audit": audit_status(&node)?,
        "storage": node.storage(),
        "keys": node.key_status(),
    })))
}

fn audit_status(node: &Node) -> Result<serde_json::Value, ApiError> {
    let audit = node.audit();
    let witnesses: Vec<serde_json::Value> = node
        .peers()
        .iter()
        .map(|p| {
            json!({
                "peer": p.id,
                "country": p.country,
                "cosigned_size": audit.cosigned_by(&p.id),
                "checkpoints_offered": audit.offers_to(&p.id),
            })
        })
        .collect();
    let alarms = audit.alarms().map_err(ApiError::internal)?;
    Ok(json!({
        "origin": audit.origin(),
        "entries": audit.size(),
        "latest_checkpoint": *audit.latest().borrow(),
        "witnesses": witnesses,
        // The texts of the alarms not yet acknowledged, newest first (all
        // of them, with ids: GET /v1/alarms).
        "alarms": alarms
            .iter()
            .filter(|a| a.acknowledged.is_none())
            .map(|a| a.text.clone())
            .collect::<Vec<_>>(),
        // Peers' restorations accepted as their witness (acknowledged by
        // their statements when raised), newest first.
        "restorations": alarms
            .iter()
            .filter(|a| a.kind == crate::store::alarms::AlarmKind::Restored)
            .map(|a| a.text.clone())
            .collect::<Vec<_>>(),
    }))
}
