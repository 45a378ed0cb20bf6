//! `/v1/keys`: the node's keys (`GET`), the encryption key's rotation now
//! (`POST /v1/keys/rotate-encryption`) and a new identity key announced
//! (`POST /v1/keys/rotate-identity`). Public keys and times only: no
//! secret ever leaves the node.

use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use comity_protocol::transition::MAX_REASON_BYTES;
use serde::Deserialize;

use super::{parse_json, ApiError, AppState};
use crate::keys::{IdentityRotationError, KeyStatus, OwnTransition};

pub(super) async fn status(State(node): State<AppState>) -> Json<KeyStatus> {
    Json(node.key_status())
}

pub(super) async fn rotate_encryption(
    State(node): State<AppState>,
) -> Result<Json<KeyStatus>, ApiError> {
    node.rotate_encryption()
        .await
        .map(Json)
        .map_err(ApiError::internal)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RotateIdentityRequest {
    /// Why, for the peers' operators and the audit logs.
    reason: String,
    /// Seconds from now until peers may take the new key (default: 72 h).
    effective_in_secs: Option<u64>,
}

/// Default time until the new key is effective: the peers' default notice.
const DEFAULT_EFFECTIVE_IN: Duration = Duration::from_secs(72 * 3600);

pub(super) async fn rotate_identity(
    State(node): State<AppState>,
    body: Result<Json<RotateIdentityRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<OwnTransition>), ApiError> {
    let req = parse_json(body)?;
    let invalid = |m: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-reason", m);
    let reason = req.reason.trim();
    if reason.is_empty() || reason.len() > MAX_REASON_BYTES || reason.chars().any(char::is_control)
    {
        return Err(invalid(format!(
            "give a reason of one line, at most {MAX_REASON_BYTES} bytes: peers' operators read it"
        )));
    }
    let effective_in = req
        .effective_in_secs
        .map_or(DEFAULT_EFFECTIVE_IN, Duration::from_secs);
    match node.rotate_identity(reason, effective_in).await {
        Ok(t) => Ok((StatusCode::CREATED, Json(t))),
        Err(e @ IdentityRotationError::AlreadyAnnounced { .. }) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "already-announced",
            e.to_string(),
        )),
        Err(e @ IdentityRotationError::TooFar) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-rotation",
            e.to_string(),
        )),
        Err(e) => Err(ApiError::internal(e)),
    }
}
