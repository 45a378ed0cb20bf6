//! `/v1/peers`: list, pin, unpin. The node checks a new peer; this file
//! parses the request and keeps the config file in step.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use comity_protocol::NodeId;
use serde::Deserialize;
use serde_json::json;

use tracing::warn;

use super::{config_error, parse_json, path_param, ApiError, AppState};
use crate::node::AddPeerError;
use crate::peers::PeerError;
use crate::transitions::DecisionError;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PeerRequest {
    id: NodeId,
    address: String,
    #[serde(default)]
    name: String,
    country: String,
    /// Its identity transitions wait for the operator (never the notice alone).
    #[serde(default)]
    confirm_rotation: bool,
}

pub(super) async fn add(
    State(state): State<AppState>,
    body: Result<Json<PeerRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let req = parse_json(body)?;
    let invalid = |m: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-peer", m);
    let country: comity_config::CountryCode = req
        .country
        .parse()
        .map_err(|e: comity_config::ParseCountryError| invalid(e.to_string()))?;
    let _edit = state.peer_edit.lock().await;
    let peer = comity_config::PeerConfig {
        id: req.id,
        address: req.address,
        name: req.name,
        country,
        repinned_from: Vec::new(),
        rotated_from: Vec::new(),
        confirm_rotation: req.confirm_rotation,
    };
    // The node's checks first, so that a refused peer never reaches the file.
    state.check_new_peer(&peer).map_err(peer_error)?;
    if let Some(path) = &state.config_path {
        comity_config::Config::add_peer_to_file(path, &peer).map_err(config_error)?;
    }
    state.add_peer(peer).map_err(|e| match e {
        AddPeerError::Invalid(e) => peer_error(e),
        AddPeerError::Store(e) => ApiError::internal(e),
    })?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": req.id, "persisted": state.config_path.is_some()})),
    ))
}

fn peer_error(e: PeerError) -> ApiError {
    match e {
        PeerError::AlreadyPinned(_) | PeerError::CountryTaken(_) => {
            ApiError::new(StatusCode::CONFLICT, "peer-exists", e.to_string())
        }
        PeerError::CutOut { .. } => {
            ApiError::new(StatusCode::CONFLICT, "key-cut-out", e.to_string())
        }
        PeerError::NotPinned(_) => {
            ApiError::new(StatusCode::NOT_FOUND, "unknown-peer", e.to_string())
        }
        PeerError::OwnId | PeerError::BadAddress { .. } => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-peer",
            e.to_string(),
        ),
    }
}

pub(super) async fn remove(
    State(state): State<AppState>,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = super::messages::resolve_peer(&state, &path_param(id)?)?;
    let _edit = state.peer_edit.lock().await;
    // Revoke first: a configuration file that cannot be written must not
    // keep a peer pinned (and its connections open).
    if !state.remove_peer(&id) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown-peer",
            format!("{id} is not pinned"),
        ));
    }
    let mut persisted = false;
    if let Some(path) = &state.config_path {
        // Only if the file lists it (it may have been pinned at run time
        // only); a file that cannot be changed is reported, not ignored.
        let edit = comity_config::Config::load(path).and_then(|c| {
            if c.peer_by_id(&id).is_some() {
                comity_config::Config::remove_peer_from_file(path, &id).map(drop)
            } else {
                Ok(())
            }
        });
        match edit {
            Ok(()) => persisted = true,
            Err(e) => {
                warn!(peer = %id, error = %e, "peer unpinned, but the configuration file still lists it");
                return Ok(Json(json!({
                    "id": id,
                    "removed": true,
                    "persisted": false,
                    "warning": format!("unpinned now, but the configuration file could not be changed ({e}): remove the [[peer]] table by hand, or it is pinned again at the next start"),
                })));
            }
        }
    }
    Ok(Json(
        json!({"id": id, "removed": true, "persisted": persisted}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RepinRequest {
    /// The peer's new node id, read out by its operator out of band.
    id: NodeId,
    /// Its new address, if that changed too.
    address: Option<String>,
    /// Why (e.g. "key presumed stolen, call of 2026-12-03 with J. Doe").
    reason: String,
}

/// The most a repin's reason may hold, in bytes: it goes into the audit
/// entry whole, beside the keys and the count (an entry's detail is at most
/// 1024 bytes).
const MAX_REASON: usize = 800;

/// An operator's reason, trimmed: one line of at most [`MAX_REASON`]
/// bytes, not blank (422 `code` otherwise).
fn checked_reason<'a>(reason: &'a str, code: &'static str) -> Result<&'a str, ApiError> {
    let invalid = |m: &str| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, m);
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(invalid(
            "give a reason: auditors read it (e.g. who told you what, and how)",
        ));
    }
    if reason.len() > MAX_REASON || reason.chars().any(char::is_control) {
        return Err(invalid("the reason is one line of at most 800 bytes"));
    }
    Ok(reason)
}

/// `POST /v1/peers/{peer}/repin`: the peer's old key is cut out and its
/// pending messages are sealed again for the new key (see
/// [`crate::node::Node::repin_peer`]).
pub(super) async fn repin(
    State(state): State<AppState>,
    peer: Result<Path<String>, axum::extract::rejection::PathRejection>,
    body: Result<Json<RepinRequest>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let old = super::messages::resolve_peer(&state, &path_param(peer)?)?;
    let req = parse_json(body)?;
    let reason = checked_reason(&req.reason, "invalid-repin")?;
    let _edit = state.peer_edit.lock().await;
    let path = state.config_path.clone();
    let mut persisted = false;
    let persist = |p: &comity_config::PeerConfig| -> Result<(), comity_config::ConfigError> {
        let Some(path) = &path else { return Ok(()) };
        // Only if the file lists it (it may have been pinned at run time).
        if comity_config::Config::load(path)?
            .peer_by_id(&old)
            .is_some()
        {
            comity_config::Config::repin_peer_in_file(path, &old, &p.id, req.address.as_deref())?;
            persisted = true;
        }
        Ok(())
    };
    let done = state
        .repin_peer(&old, req.id, req.address.clone(), reason, persist)
        .await
        .map_err(|e| match e {
            AddPeerError::Invalid(e) => peer_error(e),
            AddPeerError::Store(e) => ApiError::internal(e),
        })?;
    let mut answer = json!({
        "id": req.id,
        "old": old,
        "moved": done.moved,
        "persisted": persisted,
    });
    if let Some(w) = done.warning {
        warn!(peer = %req.id, old = %old, error = %w, "peer repinned, but the configuration file still names the old key");
        answer["warning"] = json!(format!(
            "repinned now, but the configuration file could not be changed ({w}): \
             in its [[peer]] table set id = \"{}\" and add \"{old}\" to repinned_from \
             (after the keys of its rotated_from, which it leaves), \
             or the old key is pinned again at the next start",
            req.id
        ));
    }
    Ok(Json(answer))
}

fn decision_error(e: DecisionError) -> ApiError {
    match e {
        DecisionError::NotPinned(_) => {
            ApiError::new(StatusCode::NOT_FOUND, "unknown-peer", e.to_string())
        }
        DecisionError::NonePending(_) => {
            ApiError::new(StatusCode::CONFLICT, "no-rotation-pending", e.to_string())
        }
        DecisionError::Store(e) => ApiError::internal(e),
    }
}

/// `POST /v1/peers/{peer}/rotation/accept`: the operator confirms the
/// peer's pending identity transition (after calling its operator).
pub(super) async fn accept_rotation(
    State(state): State<AppState>,
    peer: Result<Path<String>, axum::extract::rejection::PathRejection>,
    body: Result<Json<DecisionRequest>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = super::messages::resolve_peer(&state, &path_param(peer)?)?;
    let req = parse_json(body)?;
    let reason = checked_reason(&req.reason, "invalid-reason")?;
    let view = state
        .accept_rotation(&id, reason)
        .await
        .map_err(decision_error)?;
    Ok(Json(json!({"id": id, "rotation": view})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DecisionRequest {
    /// Who confirmed (or did not confirm) the new id, and how.
    reason: String,
}

/// `POST /v1/peers/{peer}/rotation/refuse`: the successor the peer's
/// pending transition names is never accepted.
pub(super) async fn refuse_rotation(
    State(state): State<AppState>,
    peer: Result<Path<String>, axum::extract::rejection::PathRejection>,
    body: Result<Json<DecisionRequest>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = super::messages::resolve_peer(&state, &path_param(peer)?)?;
    let req = parse_json(body)?;
    let reason = checked_reason(&req.reason, "invalid-reason")?;
    let refused = state
        .refuse_rotation(&id, reason)
        .await
        .map_err(decision_error)?;
    Ok(Json(json!({"id": id, "refused": refused})))
}

pub(super) async fn list(State(node): State<AppState>) -> Json<serde_json::Value> {
    Json(json!(node.peers()))
}

/// Until `stop`: applies the peers' identity transitions as they fall due
/// (see [`crate::node::Node::apply_transition`]), writing each move to the
/// configuration file if it lists the peer; looks when a transition is
/// heard or accepted, when the next one is due, and each minute.
pub async fn apply_transitions(state: AppState, mut stop: crate::shutdown::ShutdownSignal) {
    const LOOK_EVERY: std::time::Duration = std::time::Duration::from_secs(60);
    loop {
        let now = comity_protocol::Timestamp::now();
        let (due, next) = state.transitions_due(now);
        for old in due {
            let _edit = state.peer_edit.lock().await;
            let path = state.config_path.clone();
            let persist =
                |p: &comity_config::PeerConfig| -> Result<(), comity_config::ConfigError> {
                    let Some(path) = &path else { return Ok(()) };
                    if comity_config::Config::load(path)?
                        .peer_by_id(&old)
                        .is_some()
                    {
                        comity_config::Config::rotate_peer_in_file(path, &old, &p.id)?;
                    }
                    Ok(())
                };
            match state.apply_transition(&old, now, persist).await {
                Ok(Some(done)) => {
                    if let Some(w) = done.warning {
                        warn!(old = %old, error = %w, "a peer's pin moved by its identity transition, but not everything was written: in its [[peer]] table set id to the new key and add the old one to rotated_from");
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    warn!(old = %old, error = %e, "cannot apply a peer's identity transition")
                }
            }
        }
        let wait = next
            .map(|at| std::time::Duration::from_millis(at.0.saturating_sub(now.0)))
            .map_or(LOOK_EVERY, |d| d.min(LOOK_EVERY));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = state.transitions_changed() => {}
            _ = stop.triggered() => return,
        }
    }
}
