//! `/v1/audit`: the log's export and one message's inclusion proof, each
//! over a checkpoint made durable first.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;

use tracing::warn;

use super::error::find_error;
use super::{message_ref, ApiError, AppState, PeerQuery};
use crate::admin::stream::{stream_from, ChannelWriter};
use crate::lookup::FindError;
use axum::extract::Query;

/// Makes a checkpoint over everything so far durable (and offered to
/// witnesses) before anything is handed out over it; returns its size.
async fn durable_checkpoint(node: &AppState) -> Result<u64, ApiError> {
    node.audit()
        .durable_checkpoint()
        .await
        .map_err(ApiError::internal)
}

/// How long an export waits for the pinned peers to cosign its checkpoint.
const EXPORT_WITNESS_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The whole log as a bundle (JSON Lines), streamed as it is written.
pub(super) async fn export(State(node): State<AppState>) -> Result<Response, ApiError> {
    node.audit_note(
        crate::audit::Fact::new(
            comity_protocol::audit::entry::AuditKind::AdminAction,
            comity_protocol::audit::entry::Actor::Operator,
        )
        .detail("audit export"),
    );
    let size = durable_checkpoint(&node).await?;
    // The pinned peers were offered it when it became durable: give them a
    // moment to cosign, so that a fresh export is witnessed to its end.
    let peers: Vec<_> = node.peers().iter().map(|p| p.id).collect();
    let missing = node
        .audit()
        .await_cosignatures(&peers, size, EXPORT_WITNESS_WAIT)
        .await;
    if !missing.is_empty() {
        warn!(
            size,
            missing = missing.len(),
            of = peers.len(),
            "audit export: not every peer cosigned its checkpoint in time; exported without"
        );
    }
    // A busy log may have moved on: the witnesses may have cosigned a newer
    // checkpoint instead. End the bundle at the newest one all of them
    // cosigned, if there is one from `size` on.
    let size = node
        .audit()
        .newest_cosigned_by_all(&peers, size)
        .map_err(ApiError::internal)?
        .unwrap_or(size);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(16);
    let node = node.node.clone();
    tokio::task::spawn_blocking(move || {
        let mut w = std::io::BufWriter::with_capacity(256 * 1024, ChannelWriter(tx.clone()));
        let result = node
            .audit()
            .export_up_to(&node.audit().first_key(), size, &mut w)
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|_| std::io::Write::flush(&mut w));
        if let Err(e) = result {
            let _ = tx.blocking_send(Err(e));
        }
    });
    let stream = stream_from(rx);
    Response::builder()
        .header("content-type", "application/x-ndjson")
        .body(axum::body::Body::from_stream(stream))
        .map_err(ApiError::internal)
}

pub(super) async fn proof(
    State(node): State<AppState>,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
    q: Result<Query<PeerQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    use crate::audit::Proof;
    let r = message_ref(&node, id, q)?;
    let id = r.id;
    // A proof file names one key for the log and its checkpoint; after a
    // switch the checkpoint is the new key's under the first key's name,
    // which the format cannot carry yet. The bundle can.
    if node.audit().first_key() != node.id() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "proof-unavailable",
            "this node switched its identity key: inclusion proofs are not made for a log that changed keys yet; export the bundle (`comity audit export`) and verify it with --node FIRST_ID",
        ));
    }
    // The message's peer, when the node holds it (ids are per peer);
    // otherwise the entries alone, as named.
    let peer = match node.find(&r) {
        Ok(found) => Some(found.peer()),
        Err(FindError::NotFound(_)) => r.peer,
        Err(e) => return Err(find_error(e)),
    };
    let mut proof = node
        .audit()
        .proof(&node.id(), id, peer)
        .map_err(ApiError::internal)?;
    if matches!(proof, Proof::NotCovered) {
        durable_checkpoint(&node).await?;
        proof = node
            .audit()
            .proof(&node.id(), id, peer)
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

/// `GET /v1/audit/witnessed/{peer}`: the last checkpoint this node
/// cosigned of `peer`'s log (a pinned peer's country code or node id, or
/// any node id, a key cut out by a repin say), as the peer signed it.
pub(super) async fn witnessed(
    State(node): State<AppState>,
    peer: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let peer = super::path_param(peer)?;
    // Where to look: a node id as given; a pinned peer under the keys it
    // rotated from and its current one. The node follows the switches it
    // applied from there to the newest key it witnessed.
    let keys: Vec<comity_protocol::NodeId> = match peer.parse::<comity_protocol::NodeId>() {
        Ok(id) => vec![id],
        Err(_) => {
            let id = super::messages::resolve_peer(&node, &peer)?;
            let earlier = node
                .peers()
                .into_iter()
                .find(|p| p.id == id)
                .map(|p| p.rotated_from)
                .unwrap_or_default();
            earlier.into_iter().chain(std::iter::once(id)).collect()
        }
    };
    let (file, cosigned) = node
        .witnessed_as_predecessor(&keys)
        .map_err(ApiError::internal)?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not-found",
                format!("this node has cosigned no checkpoint of {peer}'s log"),
            )
        })?;
    let checked = file.check();
    Ok(axum::Json(serde_json::json!({
        "node": checked.as_ref().ok().map(|p| p.node),
        "size": checked.as_ref().ok().map(|p| p.size),
        "switches": file.switches.len(),
        "cosigned": cosigned,
        "problem": checked.as_ref().err().map(ToString::to_string),
        "file": file.to_text(),
    })))
}
