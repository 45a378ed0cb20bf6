//! `POST /v1/backup`: an encrypted backup of the running node, streamed
//! as it is written (see [`crate::backup`]). The body names the key:
//! `{"passphrase": "…"}` or `{"recipient": "age1…"}`. The passphrase is
//! never logged, and lives only as long as the request.

use std::str::FromStr;

use age::secrecy::SecretString;
use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use comity_protocol::audit::entry::{Actor, AuditKind};
use serde::Deserialize;

use super::{parse_json, ApiError, AppState};
use crate::admin::stream::{stream_from, ChannelWriter};
use crate::audit::Fact;
use crate::backup::{self, BackupKey};

/// Answer headers: the checkpoint the backup ends at, the node's country
/// (for the file name), how long writes paused.
pub(super) const CHECKPOINT_HEADER: &str = "comity-backup-checkpoint";
pub(super) const COUNTRY_HEADER: &str = "comity-backup-country";
pub(super) const PAUSED_HEADER: &str = "comity-backup-paused-ms";

/// Longest passphrase taken.
const MAX_PASSPHRASE: usize = 1024;

/// No `Debug`: it may hold the passphrase.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BackupRequest {
    passphrase: Option<String>,
    recipient: Option<String>,
}

fn bad(why: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad-backup-key", why)
}

fn backup_key(req: BackupRequest) -> Result<BackupKey, ApiError> {
    match (req.passphrase, req.recipient) {
        (Some(p), None) => {
            if p.is_empty() || p.len() > MAX_PASSPHRASE {
                return Err(bad(format!(
                    "the passphrase must have 1 to {MAX_PASSPHRASE} bytes"
                )));
            }
            Ok(BackupKey::Passphrase(SecretString::from(p)))
        }
        (None, Some(r)) => age::x25519::Recipient::from_str(r.trim())
            .map(|r| BackupKey::Recipient(Box::new(r)))
            .map_err(|e| {
                bad(format!(
                    "recipient {r:?} is not an age X25519 recipient (age1…): {e}"
                ))
            }),
        _ => Err(bad("give exactly one of passphrase and recipient")),
    }
}

pub(super) async fn backup(
    State(state): State<AppState>,
    body: Result<Json<BackupRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let key = backup_key(parse_json(body)?)?;
    let running = state.backup_running.clone().try_lock_owned().map_err(|_| {
        ApiError::new(
            StatusCode::CONFLICT,
            "backup-running",
            "another backup of this node is being written; try again when it ends",
        )
    })?;
    let prepared = backup::prepare(&state, state.config_path.as_deref())
        .await
        .map_err(ApiError::internal)?;
    let size = prepared.manifest.audit_size;
    tracing::info!(
        checkpoint = size,
        paused_ms = prepared.manifest.paused_ms,
        files = prepared.manifest.files.len(),
        "backup: store copied"
    );
    // Recorded and durable before the answer starts: a backup leaves a trace
    // even if the client never reads it.
    state.audit_note(
        Fact::new(AuditKind::AdminAction, Actor::Operator)
            .detail(&format!("backup to checkpoint {size}")),
    );
    state.commit().await.map_err(ApiError::internal)?;
    let country = prepared.manifest.country.clone();
    let paused = prepared.manifest.paused_ms;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(16);
    tokio::task::spawn_blocking(move || {
        let _running = running;
        let w = std::io::BufWriter::with_capacity(256 * 1024, ChannelWriter(tx.clone()));
        if let Err(e) = prepared.write(key, w) {
            tracing::warn!(error = %e, "backup: not written to its end");
            let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
        // `prepared` is dropped here: the copy is removed.
    });
    Response::builder()
        .header("content-type", "application/octet-stream")
        .header(CHECKPOINT_HEADER, size)
        .header(COUNTRY_HEADER, country)
        .header(PAUSED_HEADER, paused)
        .body(axum::body::Body::from_stream(stream_from(rx)))
        .map_err(ApiError::internal)
}
