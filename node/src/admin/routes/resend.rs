//! `POST /v1/messages/{id}/resend`: a failed message sent again under a
//! new id (see [`crate::resend`]).

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use comity_protocol::{MessageId, NodeId};
use serde::Serialize;

use super::accepting::{idempotency_key, to_completion, Created};
use super::error::resend_error;
use super::{message_ref, ApiError, AppState, PeerQuery};
use crate::counts::HeldState;
use crate::store::OutboundState;

#[derive(Serialize)]
pub(super) struct Resent {
    id: MessageId,
    resend_of: MessageId,
    peer: NodeId,
    state: HeldState,
}

/// Takes no body: everything is the original's.
pub(super) async fn resend(
    State(node): State<AppState>,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
    q: Result<Query<PeerQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Created<Resent>, ApiError> {
    let r = message_ref(&node, id, q)?;
    let key = idempotency_key(&headers)?;
    let (accepted, peer) =
        to_completion(async move { node.resend(r, key).await.map_err(resend_error) }).await?;
    Ok(Created {
        body: Resent {
            id: accepted.id,
            resend_of: r.id,
            peer,
            state: HeldState::Outbound(OutboundState::Queued),
        },
        replayed: accepted.replayed,
    })
}
