//! `/v1/messages/{id}/attachments`: a message's attachments with their
//! states and progress, and the read-out of one attachment's plaintext.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::error::find_error;
use super::{message_ref_from, ApiError, AppState, PeerQuery};
use crate::admin::stream::stream_from;
use crate::evidence::{ListingError, MessageAttachments, RetrieveError};
use crate::lookup::MessageRef;

/// Plaintext handed to the HTTP body at a time.
const PIECE_BYTES: usize = 64 * 1024;
/// Pieces waiting for the client at most: with the reader's one chunk
/// (at most 1 MiB), what a read-out holds in memory whatever the file size.
const PIECES_QUEUED: usize = 4;
/// A client that takes no piece for this long is given up on, so that a
/// stuck client does not hold the reading thread and the file for good.
const CLIENT_IDLE: Duration = Duration::from_secs(300);

fn parts(
    state: &AppState,
    path: Result<Path<(String, String)>, PathRejection>,
    q: Result<Query<PeerQuery>, QueryRejection>,
) -> Result<(MessageRef, usize), ApiError> {
    let Path((id, index)) =
        path.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad-request", e.body_text()))?;
    let r = message_ref_from(state, id, q)?;
    let index = index.parse::<usize>().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            format!("attachment index must be a number from 0, not {index:?}"),
        )
    })?;
    Ok((r, index))
}

pub(super) async fn list(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    q: Result<Query<PeerQuery>, QueryRejection>,
) -> Result<Json<MessageAttachments>, ApiError> {
    let r = super::message_ref(&state, id, q)?;
    let node = state.node.clone();
    tokio::task::spawn_blocking(move || node.attachments(&r))
        .await
        .map_err(ApiError::internal)?
        .map(Json)
        .map_err(listing_error)
}

fn listing_error(e: ListingError) -> ApiError {
    match e {
        ListingError::Find(f) => find_error(f),
        ListingError::Attachment(a) => ApiError::internal(a),
    }
}

/// The verified plaintext, streamed: `Content-Length` is the signed size,
/// and a chunk failing its check ends the body short (the connection is
/// closed), which the client must take as a failed read.
pub(super) async fn content(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    q: Result<Query<PeerQuery>, QueryRejection>,
) -> Result<Response, Response> {
    let (r, index) = parts(&state, path, q).map_err(IntoResponse::into_response)?;
    let node = state.node.clone();
    let mut retrieval = tokio::task::spawn_blocking(move || node.open_retrieval(&r, index))
        .await
        .map_err(|e| ApiError::internal(e).into_response())?
        .map_err(retrieve_error)?;
    let size = retrieval.manifest.size;
    let sha256 = retrieval.manifest.sha256.to_string();
    let (tx, rx) = mpsc::channel::<Result<Vec<u8>, std::io::Error>>(PIECES_QUEUED);
    let node = state.node.clone();
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || loop {
        match retrieval.next_piece(PIECE_BYTES) {
            Ok(Some(piece)) => {
                let handed =
                    runtime.block_on(tokio::time::timeout(CLIENT_IDLE, tx.send(Ok(piece))));
                if !matches!(handed, Ok(Ok(()))) {
                    debug!(
                        message = %retrieval.message,
                        index = retrieval.index,
                        after = retrieval.done(),
                        "attachment read-out: the client went away or stopped reading"
                    );
                    return;
                }
            }
            Ok(None) => return,
            Err(aborted) => {
                if let Err(e) = node.flush() {
                    warn!(error = %e, "cannot make the aborted read-out's audit entry durable");
                }
                let _ = tx.blocking_send(Err(std::io::Error::other(aborted.to_string())));
                return;
            }
        }
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, size)
        .header("comity-attachment-sha256", sha256)
        .body(axum::body::Body::from_stream(stream_from(rx)))
        .map_err(|e| ApiError::internal(e).into_response())
}

fn retrieve_error(e: RetrieveError) -> Response {
    let message = e.to_string();
    match e {
        RetrieveError::Find(f) => find_error(f).into_response(),
        RetrieveError::NoSuchAttachment { .. } => {
            ApiError::new(StatusCode::NOT_FOUND, "no-such-attachment", message).into_response()
        }
        RetrieveError::Incomplete { view, .. } | RetrieveError::MessageArriving { view, .. } => (
            StatusCode::CONFLICT,
            Json(json!({
                "error": {"code": "attachment-incomplete", "message": message},
                "attachment": view,
            })),
        )
            .into_response(),
        RetrieveError::Unreadable { .. } => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "attachment-unreadable",
            format!("{message}; the attempt is recorded in the audit log"),
        )
        .into_response(),
        RetrieveError::Store(_) | RetrieveError::Audit(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store-unwritable",
            format!("{message}: a read-out is recorded in the audit log first, and that failed; nothing was read out"),
        )
        .into_response(),
    }
}
