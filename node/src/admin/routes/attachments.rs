//! `POST /v1/attachments?name=NAME&type=MEDIA/TYPE`: a file uploaded as the
//! raw request body, of the size its `Content-Length` declares, streamed
//! into the node's own encrypted copy and staged until a message names it.
//!
//! Never the whole file in memory: body frames pass through a bounded
//! channel to the copy-in on a blocking thread, so a slow disk stops the
//! reading of the socket. Name, type, size and free space are checked
//! before a byte of the body is read.

use std::io::{self, Read};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::{ApiError, AppState};
use crate::attachments::AttachmentError;
use crate::staged::UploadError;

/// Body frames between the socket and the disk (hyper's frames are at most
/// some hundreds of KiB, so a few MiB at most are in memory).
const FRAMES_IN_FLIGHT: usize = 8;
/// An upload that sends nothing for this long is abandoned.
const BODY_IDLE: Duration = Duration::from_secs(30);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UploadQuery {
    name: String,
    #[serde(rename = "type")]
    media_type: String,
}

#[derive(Serialize)]
pub(super) struct Uploaded {
    /// The stored id a message names it by.
    attachment: String,
    name: String,
    media_type: String,
    size: u64,
    sha256: String,
    tree_root: String,
    chunk_size: u32,
}

pub(super) async fn upload(
    State(node): State<AppState>,
    q: Result<Query<UploadQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Uploaded>), ApiError> {
    let Query(q) = q.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            format!(
                "{}: give ?name=FILE&type=MEDIA/TYPE, percent-encoded",
                e.body_text()
            ),
        )
    })?;
    let size = declared_size(&headers)?;
    let upload = node
        .begin_upload(&q.name, &q.media_type, size)
        .map_err(upload_error)?;
    let (tx, rx) = mpsc::channel(FRAMES_IN_FLIGHT);
    let copy = tokio::task::spawn_blocking(move || {
        upload.copy_in(BodyReader {
            frames: rx,
            current: Bytes::new(),
        })
    });
    pump(body, tx).await;
    let staged = copy
        .await
        .map_err(|e| ApiError::internal(format!("the upload's task failed: {e}")))?
        .map_err(upload_error)?;
    node.commit().await.map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store-unwritable",
            format!("the upload could not be recorded ({e}); upload the file again"),
        )
    })?;
    let m = &staged.sealed.manifest;
    Ok((
        StatusCode::CREATED,
        Json(Uploaded {
            attachment: staged.stored.to_string(),
            name: m.name.clone(),
            media_type: m.media_type.clone(),
            size: m.size,
            sha256: m.sha256.to_string(),
            tree_root: m.tree_root.to_string(),
            chunk_size: m.chunk_size,
        }),
    ))
}

/// The size `Content-Length` declares; a chunked body or none is refused
/// (411): the size fixes the chunking and is checked before any data.
fn declared_size(headers: &HeaderMap) -> Result<u64, ApiError> {
    let length_required = || {
        ApiError::new(
            StatusCode::LENGTH_REQUIRED,
            "length-required",
            "an upload needs a Content-Length (the file's size), not a chunked body",
        )
    };
    if headers.contains_key(header::TRANSFER_ENCODING) {
        return Err(length_required());
    }
    let value = headers
        .get(header::CONTENT_LENGTH)
        .ok_or_else(length_required)?;
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad-request",
                "Content-Length is not a number of bytes",
            )
        })
}

/// Feeds the body's data frames to the copy-in until the body ends, fails,
/// stalls for [`BODY_IDLE`], or the copy-in stops taking them. Dropping
/// `tx` is the end of the data: the copy-in then sees an end of file, and
/// refuses a body shorter than declared.
async fn pump(body: Body, tx: mpsc::Sender<Bytes>) {
    let mut frames = body.into_data_stream();
    loop {
        match tokio::time::timeout(BODY_IDLE, frames.next()).await {
            Err(_) => {
                tracing::info!("upload abandoned: no data for {BODY_IDLE:?}");
                return;
            }
            Ok(None) => return,
            Ok(Some(Err(e))) => {
                tracing::info!(error = %e, "upload body ended early");
                return;
            }
            Ok(Some(Ok(data))) => {
                if !data.is_empty() && tx.send(data).await.is_err() {
                    // The copy-in stopped (an error of its own).
                    return;
                }
            }
        }
    }
}

/// The body's frames as a `Read`, for the copy-in's blocking thread.
struct BodyReader {
    frames: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.frames.blocking_recv() {
                Some(data) => self.current = data,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        let chunk = self.current.split_to(n);
        buf[..n].copy_from_slice(&chunk);
        Ok(n)
    }
}

fn upload_error(e: UploadError) -> ApiError {
    match e {
        UploadError::Attachment(a) => attachment_error(a),
        UploadError::StoreUnwritable(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store-unwritable",
            e.to_string(),
        ),
        UploadError::Store(s) => ApiError::internal(s),
    }
}

fn attachment_error(e: AttachmentError) -> ApiError {
    use comity_protocol::attachment::InvalidAttachment;
    match e {
        AttachmentError::Invalid(InvalidAttachment::TooLarge { size, max, .. }) => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            format!("the file is {size} bytes, above limits.max_attachment_bytes ({max})"),
        ),
        AttachmentError::Invalid(i) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-attachment",
            i.to_string(),
        ),
        AttachmentError::NoRoom { .. } => ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "disk-reserve",
            e.to_string(),
        ),
        AttachmentError::SourceShort { .. } | AttachmentError::SourceLong { .. } => ApiError::new(
            StatusCode::BAD_REQUEST,
            "body-length",
            format!("{e}; nothing was kept: upload the file again"),
        ),
        e => ApiError::internal(e),
    }
}
