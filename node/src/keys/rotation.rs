//! Rotating the encryption key: the current key is written to
//! `keys/previous/` first, then the key file is replaced with the new key
//! (a crash between the two leaves the old key current and also filed as
//! previous, which loading ignores), then the node swaps its keys, records
//! it, and closes its connections so that every peer reconnects and is
//! told the new certificate in the session's hello.

use std::sync::Arc;
use std::time::Duration;

use comity_protocol::audit::entry::{Actor, AuditKind};
use comity_protocol::Timestamp;
use rand::RngCore;
use serde::Serialize;
use tracing::{info, warn};
use zeroize::Zeroizing;

use super::previous::{self, PreviousKeyError};
use crate::audit::Fact;
use crate::context::Context;
use crate::shutdown::ShutdownSignal;

/// How often the schedule looks at the keys' ages.
const LOOK_EVERY: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error("the superseded key could not be kept, so the key was not rotated: {0}")]
    Previous(#[from] PreviousKeyError),
    #[error("the key file could not be replaced, so the key was not rotated: {0}")]
    KeyFile(#[from] comity_config::KeyFileIoError),
    #[error("the new key could not be certified, so the key was not rotated: {0}")]
    Sign(#[from] comity_protocol::identity::SignError),
}

/// The node's encryption keys, as `comity keys` shows them.
#[derive(Debug, Clone, Serialize)]
pub struct KeyStatus {
    /// The current key's X25519 public key, hex.
    pub encryption_key: String,
    pub created_at: Timestamp,
    pub age_days: u64,
    /// When the schedule makes the next one (`None`: no schedule).
    pub next_rotation_at: Option<Timestamp>,
    /// Older than its policy (the schedule is off, or it failed).
    pub overdue: bool,
    pub previous: Vec<PreviousStatus>,
    /// Where the identity key is, and how much it has signed.
    pub identity: IdentityKeyStatus,
    /// The transition to a new identity key this node announced, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity_transition: Option<super::OwnTransition>,
}

#[derive(Debug, Clone, Serialize)]
pub struct IdentityKeyStatus {
    pub node_id: String,
    /// "key file", or the token's description.
    pub location: String,
    /// The `pkcs11:` URI, when the key is on a token.
    pub token: Option<String>,
    /// What the token said of the key when the node opened it.
    pub token_key: Option<comity_token::KeyFacts>,
    /// Signatures the token made since the node started.
    pub token_signatures: Option<u64>,
    /// The token refused the PIN while the node ran: it signs nothing more
    /// until restarted with the right one.
    pub token_pin_refused: Option<bool>,
    /// TLS handshakes this node signed since it started (either side).
    pub tls_handshake_signatures: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PreviousStatus {
    pub encryption_key: String,
    pub created_at: Timestamp,
    pub superseded_at: Timestamp,
    /// When it is destroyed.
    pub destroyed_at: Timestamp,
}

impl KeyStatus {
    /// From the keys in memory and the store: no file is read.
    pub(crate) fn of(ctx: &Context) -> KeyStatus {
        let me = ctx.identity();
        let keys = &ctx.config.keys;
        let cert = me.encryption_cert();
        let now = Timestamp::now();
        let age =
            Duration::from_millis(now.as_millis().saturating_sub(cert.created_at.as_millis()));
        let policy = keys
            .encryption_rotation()
            .or(comity_config::KeysSection::default().encryption_rotation())
            .unwrap_or(Duration::MAX);
        KeyStatus {
            encryption_key: hex::encode(cert.public_key),
            created_at: cert.created_at,
            age_days: age.as_secs() / 86_400,
            next_rotation_at: keys
                .encryption_rotation()
                .map(|every| cert.created_at.saturating_add(every)),
            overdue: age > policy,
            previous: me
                .superseded_keys()
                .map(|(k, superseded_at)| PreviousStatus {
                    encryption_key: hex::encode(k.public_key()),
                    created_at: k.created_at(),
                    superseded_at,
                    destroyed_at: superseded_at.saturating_add(keys.encryption_grace()),
                })
                .collect(),
            identity: IdentityKeyStatus {
                node_id: me.id().to_string(),
                location: me.key_location(),
                token: ctx
                    .config
                    .node
                    .identity_token
                    .as_ref()
                    .map(|t| t.uri().to_string()),
                token_key: ctx.token.as_ref().map(|t| t.facts_at_open()),
                token_signatures: ctx.token.as_ref().map(|t| t.signatures()),
                token_pin_refused: ctx.token.as_ref().map(|t| t.pin_refused()),
                tls_handshake_signatures: ctx.tls.signatures(),
            },
            identity_transition: match ctx.store.own_transition() {
                Ok(s) => s.map(|s| super::OwnTransition::of(ctx, &s)),
                Err(e) => {
                    warn!(error = %e, "cannot read this node's announced identity transition");
                    None
                }
            },
        }
    }
}

/// Makes a new encryption key now (see the module's documentation); one
/// rotation at a time. `actor`: the operator, or the node's schedule.
pub(crate) async fn rotate_encryption(
    ctx: &Arc<Context>,
    actor: Actor,
) -> Result<KeyStatus, RotationError> {
    let _one = ctx.key_rotation.lock().await;
    let ctx2 = ctx.clone();
    // Files and syncs: off the async threads.
    let done = tokio::task::spawn_blocking(move || rotate_files(&ctx2)).await;
    let next = match done {
        Ok(r) => r?,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    };
    let (old, new) = {
        let me = ctx.identity();
        (
            hex::encode(me.encryption_cert().public_key),
            hex::encode(next.encryption_cert().public_key),
        )
    };
    ctx.set_identity(Arc::new(next));
    let detail = format!("own encryption key rotated: {old} superseded by {new}");
    ctx.audit
        .note(Fact::new(AuditKind::KeyChanged, actor).detail(&detail));
    info!(old = %old, new = %new, "encryption key rotated; reconnecting to every peer");
    ctx.close_all_connections();
    Ok(KeyStatus::of(ctx))
}

fn rotate_files(ctx: &Context) -> Result<comity_protocol::Identity, RotationError> {
    let me = ctx.identity();
    let now = Timestamp::now();
    let mut seed = Zeroizing::new([0u8; 32]);
    rand::rng().fill_bytes(&mut seed[..]);
    // A new key's time is after the one it supersedes, even if the clock
    // stepped back: peers and the files order keys by it.
    let created = now.max(
        me.encryption_cert()
            .created_at
            .saturating_add(Duration::from_millis(1)),
    );
    let next = me.with_new_encryption_key(&seed, created)?;
    // The key it supersedes, kept first.
    if let Some(superseded) = next.previous_keys().first() {
        previous::write(&previous::dir(&ctx.config.node.data_dir), superseded)?;
    }
    comity_config::replace_key_file(&ctx.config.node.identity_key, &next)?;
    Ok(next)
}

/// Destroys the superseded keys whose grace period has ended: the node
/// stops opening envelopes sealed to them first, then their files are
/// overwritten and removed. How many.
async fn expire_previous(ctx: &Arc<Context>, now: Timestamp) -> Result<usize, PreviousKeyError> {
    let _one = ctx.key_rotation.lock().await;
    let grace = ctx.config.keys.encryption_grace();
    let dir = previous::dir(&ctx.config.node.data_dir);
    let me = ctx.identity();
    // (public key, made at, superseded at)
    let expired: Vec<([u8; 32], Timestamp, Timestamp)> = me
        .superseded_keys()
        .filter(|(_, at)| at.saturating_add(grace) <= now)
        .map(|(k, at)| (*k.public_key(), k.created_at(), at))
        .collect();
    if expired.is_empty() {
        return Ok(0);
    }
    let next = me.without_previous_keys(|k| expired.iter().any(|e| e.0 == *k.public_key()));
    ctx.set_identity(Arc::new(next));
    for &(key, created, superseded_at) in &expired {
        let path = previous::path(&dir, created);
        match tokio::task::spawn_blocking(move || previous::destroy(&path)).await {
            Ok(r) => r?,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
        let detail = format!(
            "own encryption key {} destroyed: superseded at {} ms, grace period over",
            hex::encode(key),
            superseded_at.as_millis()
        );
        ctx.audit
            .note(Fact::new(AuditKind::KeyChanged, Actor::Node).detail(&detail));
        info!(key = %hex::encode(key), "superseded encryption key destroyed");
    }
    Ok(expired.len())
}

/// Until `stop`: destroys superseded keys past their grace period and
/// rotates the encryption key once it is older than the policy, looking
/// at start-up and then hourly.
pub(crate) async fn schedule(ctx: Arc<Context>, mut stop: ShutdownSignal) {
    loop {
        if let Err(e) = expire_previous(&ctx, Timestamp::now()).await {
            warn!(error = %e, "cannot destroy superseded encryption keys");
        }
        let created = ctx.identity().encryption_cert().created_at;
        match ctx.config.keys.encryption_rotation() {
            Some(every) if created.saturating_add(every) <= Timestamp::now() => {
                if let Err(e) = rotate_encryption(&ctx, Actor::Node).await {
                    warn!(error = %e, "scheduled encryption key rotation failed; trying again in an hour");
                }
            }
            Some(_) => {}
            // No schedule: say so, hourly, once the key is older than the
            // default policy.
            None => {
                let k = KeyStatus::of(&ctx);
                if k.overdue {
                    warn!(
                        age_days = k.age_days,
                        "the encryption key is older than its policy and no rotation is scheduled: run `comity keys rotate-encryption`"
                    );
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(LOOK_EVERY) => {}
            _ = stop.triggered() => return,
        }
    }
}
