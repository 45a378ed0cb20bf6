//! `/v1/alarms`: the alarms kept (newest first, bounded per peer) and their
//! acknowledgement by the operator, which the audit log records.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use comity_protocol::audit::entry::Actor;
use comity_protocol::NodeId;
use serde_json::{json, Value};

use super::{path_param, ApiError, AppState};
use crate::node::Node;
use crate::store::alarms::{AckError, Alarm};

/// Pinned peers' country codes.
fn countries(node: &Node) -> HashMap<NodeId, String> {
    node.peers()
        .into_iter()
        .map(|p| (p.id, p.country))
        .collect()
}

fn alarm_json(a: &Alarm, countries: &HashMap<NodeId, String>) -> Value {
    json!({
        "id": a.id,
        "peer": a.peer,
        "country": a.peer.and_then(|p| countries.get(&p)),
        "time": a.time,
        "kind": a.kind.name(),
        "reason": a.reason,
        "text": a.text,
        "acknowledged": a.acknowledged.as_ref().map(|k| json!({"at": k.at, "by": k.by})),
    })
}

/// `{"alarms": [newest first], "peers": [per peer: kept, unacknowledged,
/// suppressed]}`.
pub(super) async fn list(State(node): State<AppState>) -> Result<Json<Value>, ApiError> {
    let audit = node.audit();
    let alarms = audit.alarms().map_err(ApiError::internal)?;
    let counts = audit.alarm_counts().map_err(ApiError::internal)?;
    let cc = countries(&node);
    let peers: Vec<Value> = counts
        .iter()
        .map(|c| {
            json!({
                "peer": c.peer,
                "country": c.peer.and_then(|p| cc.get(&p)),
                "kept": c.kept,
                "unacknowledged": c.unacknowledged,
                "suppressed": c.suppressed,
            })
        })
        .collect();
    Ok(Json(json!({
        "alarms": alarms.iter().map(|a| alarm_json(a, &cc)).collect::<Vec<_>>(),
        "peers": peers,
    })))
}

/// Acknowledges one alarm (by the operator on the socket), durably.
pub(super) async fn ack(
    State(node): State<AppState>,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let raw = path_param(id)?;
    let id: u64 = raw.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            format!("{raw:?} is not an alarm id (a number, see GET /v1/alarms)"),
        )
    })?;
    let alarm = node
        .audit()
        .ack_alarm(id, Actor::Operator)
        .map_err(|e| match e {
            AckError::NotFound(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "not-found", e.to_string())
            }
            AckError::Already(_) => {
                ApiError::new(StatusCode::CONFLICT, "already-acknowledged", e.to_string())
            }
            AckError::Store(e) => ApiError::internal(e),
        })?;
    // The acknowledgement and its audit entry are on disk before the answer.
    node.commit().await.map_err(ApiError::internal)?;
    Ok(Json(alarm_json(&alarm, &countries(&node))))
}
