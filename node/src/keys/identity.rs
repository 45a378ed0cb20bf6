//! Announcing a new identity key: a new identity is made and written to
//! `IDENTITY_KEY.next` (0600, synced), a transition statement signed by the
//! current key and the new one is recorded in the store and the audit log,
//! and from then on the node's TLS certificate carries it, so that every
//! peer learns of it at its next handshake (connections are closed, so at
//! once). Peers apply it after their notice period or their operator's
//! confirmation (see `transitions`).
//!
//! The switch to the new key (TLS, envelopes, receipts, the audit log's
//! checkpoints) is being built (issue 15): until it is, the node keeps
//! using its current key and keeps presenting the statement.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use comity_protocol::audit::entry::{Actor, AuditKind};
use comity_protocol::transition::{IdentityTransition, TransitionError, TransitionStatement};
use comity_protocol::{Identity, NodeId, Timestamp};
use serde::Serialize;
use tracing::{info, warn};

use crate::audit::Fact;
use crate::context::Context;
use crate::store::StoreError;

/// The latest `effective_after` an announcement may name.
pub const MAX_EFFECTIVE_IN: Duration = Duration::from_secs(90 * 86_400);

#[derive(Debug, thiserror::Error)]
pub enum IdentityRotationError {
    #[error("the identity key is on a token: rotating it there is not supported yet; make a new identity and have every peer repin (docs/operations.md)")]
    OnToken,
    #[error("a transition to {new} is announced already (effective after {effective_after} ms); one at a time")]
    AlreadyAnnounced {
        new: NodeId,
        effective_after: Timestamp,
    },
    #[error("the effective time is more than 90 days ahead")]
    TooFar,
    #[error("the statement cannot be made: {0}")]
    Statement(#[from] TransitionError),
    #[error("the new key file could not be written, so nothing was announced: {0}")]
    KeyFile(#[from] comity_config::KeyFileIoError),
    #[error("the announcement could not be recorded: {0}")]
    Store(#[from] StoreError),
    #[error("the certificate carrying the statement cannot be made: {0}")]
    Tls(#[from] crate::transport::tls::TlsSetupError),
}

impl From<crate::store::CommitError> for IdentityRotationError {
    fn from(e: crate::store::CommitError) -> Self {
        IdentityRotationError::Store(e.into())
    }
}

/// This node's announced transition, as `comity keys` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct OwnTransition {
    pub old: NodeId,
    pub new: NodeId,
    pub created_at: Timestamp,
    pub effective_after: Timestamp,
    pub reason: String,
    /// Where the new key waits.
    pub next_key_file: PathBuf,
}

impl OwnTransition {
    pub(crate) fn of(ctx: &Context, s: &TransitionStatement) -> OwnTransition {
        let t = &s.transition;
        OwnTransition {
            old: t.old,
            new: t.new,
            created_at: t.created_at,
            effective_after: t.effective_after,
            reason: t.reason.clone(),
            next_key_file: next_key_file(ctx),
        }
    }
}

/// Where the announced new identity key is kept until the switch.
pub(crate) fn next_key_file(ctx: &Context) -> PathBuf {
    comity_config::next_key_path(&ctx.config.node.identity_key)
}

/// Announces a new identity, effective `effective_in` from now (see the
/// module's documentation). Durable when it returns.
pub(crate) async fn announce(
    ctx: &Arc<Context>,
    reason: &str,
    effective_in: Duration,
) -> Result<OwnTransition, IdentityRotationError> {
    let _one = ctx.key_rotation.lock().await;
    if ctx.token.is_some() {
        return Err(IdentityRotationError::OnToken);
    }
    if effective_in > MAX_EFFECTIVE_IN {
        return Err(IdentityRotationError::TooFar);
    }
    if let Some(s) = ctx.store.own_transition()? {
        return Err(IdentityRotationError::AlreadyAnnounced {
            new: s.transition.new,
            effective_after: s.transition.effective_after,
        });
    }
    let me = ctx.identity();
    let now = Timestamp::now();
    let new = Identity::generate(now);
    let statement = IdentityTransition {
        old: me.id(),
        new: new.id(),
        created_at: now,
        effective_after: now.saturating_add(effective_in),
        reason: reason.to_string(),
    }
    .sign(&me, &new)?;
    // The key first: a statement whose key was lost would name a
    // successor nobody holds. A file left by an attempt that crashed
    // before the statement was recorded was never announced: replaced.
    let path = next_key_file(ctx);
    let written =
        tokio::task::spawn_blocking(move || comity_config::replace_key_file(&path, &new)).await;
    match written {
        Ok(r) => r?,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
    ctx.store.set_own_transition(&statement)?;
    let t = &statement.transition;
    let detail = format!(
        "announced this node's identity transition from {} to {}, effective after {} ms: {}",
        t.old, t.new, t.effective_after.0, t.reason
    );
    ctx.audit
        .note(Fact::new(AuditKind::IdentityTransition, Actor::Operator).detail(&detail));
    ctx.store.commit().await?;
    ctx.tls.present(&me, Some(&statement))?;
    info!(new = %t.new, effective_after = t.effective_after.0, "identity transition announced; presenting it to every peer");
    // Every peer hears it at once, on the handshake of its next session.
    ctx.close_all_connections();
    Ok(OwnTransition::of(ctx, &statement))
}

/// At start: the announced transition, if any, is presented again — if
/// its new key is still at hand (a statement naming a successor nobody
/// holds would lead peers to a key that never answers). A record that
/// cannot be read, or a key file that is missing or holds another key, is
/// logged and not presented: the node starts under its current key.
pub(crate) fn present_at_start(ctx: &Context) {
    let s = match ctx.store.own_transition() {
        Ok(Some(s)) => s,
        Ok(None) => return,
        Err(e) => {
            warn!(error = %e, "cannot read this node's announced identity transition; not presented");
            return;
        }
    };
    let t = &s.transition;
    if t.old != ctx.id() {
        warn!(old = %t.old, "an announced identity transition is not from this node's key; not presented");
        return;
    }
    let path = next_key_file(ctx);
    match comity_config::load_key_file(&path) {
        Ok(next) if next.id() == t.new => {}
        Ok(next) => {
            warn!(file = %path.display(), holds = %next.id(), new = %t.new, "the announced new identity key file holds another key; the transition is not presented");
            return;
        }
        Err(e) => {
            warn!(error = %e, new = %t.new, "the announced new identity key cannot be loaded; the transition is not presented");
            return;
        }
    }
    match ctx.tls.present(&ctx.identity(), Some(&s)) {
        Ok(()) => info!(new = %t.new, "presenting the announced identity transition"),
        Err(e) => warn!(error = %e, "cannot present the announced identity transition"),
    }
}
