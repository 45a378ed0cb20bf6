//! `/v1/keys`: the node's encryption keys (`GET`) and their rotation now
//! (`POST /v1/keys/rotate-encryption`). Public keys and times only: no
//! secret ever leaves the node.

use axum::extract::State;
use axum::Json;

use super::{ApiError, AppState};
use crate::keys::KeyStatus;

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
