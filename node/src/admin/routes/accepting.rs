//! What the endpoints that make a message share: the `Idempotency-Key`
//! header, running the work to its end whether or not the client waits,
//! and the `201` answer, marked when it repeats an earlier one.

use std::future::Future;

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::ApiError;
use crate::idempotency::IdempotencyKey;

/// The request header naming a retry-safe request.
pub(super) const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// The answer header saying that an earlier request with the key made the
/// message, and nothing new was made.
pub(super) const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

/// The `Idempotency-Key` of a request, if it has one.
pub(super) fn idempotency_key(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, ApiError> {
    let mut values = headers.get_all(IDEMPOTENCY_KEY).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let bad = |why: String| ApiError::new(StatusCode::BAD_REQUEST, "bad-idempotency-key", why);
    if values.next().is_some() {
        return Err(bad("more than one Idempotency-Key header: give one".into()));
    }
    let text = value
        .to_str()
        .map_err(|_| bad("the Idempotency-Key header is not ASCII text".into()))?;
    IdempotencyKey::parse(text)
        .map(Some)
        .map_err(|e| bad(e.to_string()))
}

/// Runs `work` on a task of its own and waits for it. hyper drops a
/// handler whose client closed its connection; a message half accepted
/// (written, its flush awaited, not yet queued for delivery) would then
/// wait for the next start. On its own task it is finished either way, and
/// a retry with its key finds it.
pub(super) async fn to_completion<T: Send + 'static>(
    work: impl Future<Output = Result<T, ApiError>> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::spawn(work)
        .await
        .map_err(|e| ApiError::internal(format!("the request's task failed: {e}")))?
}

/// `201 Created` with `body`; with `Idempotent-Replayed: true` when an
/// earlier request with the same key made the message.
pub(super) struct Created<T> {
    pub body: T,
    pub replayed: bool,
}

impl<T: Serialize> IntoResponse for Created<T> {
    fn into_response(self) -> Response {
        let mut r = (StatusCode::CREATED, Json(self.body)).into_response();
        if self.replayed {
            r.headers_mut()
                .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
        }
        r
    }
}
