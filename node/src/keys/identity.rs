//! Announcing a new identity key: a new identity is made and written to
//! `IDENTITY_KEY.next` (0600, synced), a transition statement signed by the
//! current key and the new one is recorded in the store and the audit log,
//! and from then on the node's TLS certificate carries it, so that every
//! peer learns of it at its next handshake (connections are closed, so at
//! once). Peers apply it after their notice period or their operator's
//! confirmation (see `transitions`).
//!
//! At `effective_after` the node switches ([`switch`]): the old key signs
//! a last checkpoint, the switch entry follows it in the log, and from
//! then on the new key signs checkpoints, envelopes, receipts and TLS
//! handshakes; the key file is replaced by the new key. The old id and
//! encryption keys stay this node's (envelopes peers sealed before they
//! moved their pin are still opened), and the statement is presented for
//! `[keys] transition_presented_days` more, for peers offline meanwhile.

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
    #[error("the new identity key cannot be made on the token: {0}")]
    Token(#[from] comity_token::TokenError),
    #[error("the new identity cannot be certified by its key on the token: {0}")]
    Certify(#[from] comity_protocol::identity::SignError),
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
    /// Where the new key waits (until the switch).
    pub next_key_file: PathBuf,
    /// Whether the node's certificate carries the statement now (not if
    /// the new key's file was missing at start, nor once the presentation
    /// period after the switch is over).
    pub presented: bool,
    /// Whether the node has switched to the new key.
    pub switched: bool,
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
            presented: ctx.tls.presents_statement(),
            switched: t.new == ctx.id(),
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
    if effective_in > MAX_EFFECTIVE_IN {
        return Err(IdentityRotationError::TooFar);
    }
    if let Some(s) = ctx.store.own_transition()? {
        // Until the switch is made and finished here (the new key in use,
        // its `.next` file gone), the announced key must stay where it is.
        let finished = ctx.store.own_switch()?.is_some()
            && s.transition.new == ctx.id()
            && !next_key_file(ctx).exists();
        if !finished {
            return Err(IdentityRotationError::AlreadyAnnounced {
                new: s.transition.new,
                effective_after: s.transition.effective_after,
            });
        }
    }
    let me = ctx.identity();
    let now = Timestamp::now();
    let new = match ctx.config.node.identity_token.clone() {
        None => Identity::generate(now),
        // On the token, as the first key was: only its encryption key
        // goes to the `.next` file.
        Some(token) => {
            let made = tokio::task::spawn_blocking(move || new_on_token(&token, now)).await;
            match made {
                Ok(r) => r?,
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            }
        }
    };
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
    let new_id = new.id();
    let written =
        tokio::task::spawn_blocking(move || comity_config::replace_key_file(&path, &new)).await;
    let written = match written {
        Ok(r) => r,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    };
    if let Err(e) = written {
        // Its key on the token would never be used.
        if let Some(token) = &ctx.config.node.identity_token {
            let _ = comity_token::destroy_unused(&comity_token::successor_key(token, &new_id));
        }
        return Err(e.into());
    }
    // A switched earlier transition is in the log and among the earlier
    // ids; this one takes its place.
    ctx.store.clear_own_transition()?;
    ctx.store.set_own_transition(&statement)?;
    let t = &statement.transition;
    let detail = format!(
        "announced this node's identity transition from {} to {}, effective after {} ms: {}",
        t.old, t.new, t.effective_after.0, t.reason
    );
    ctx.audit
        .note(Fact::new(AuditKind::IdentityTransition, Actor::Operator).detail(&detail));
    ctx.store.commit().await?;
    ctx.own_transition_announced.notify_one();
    ctx.tls.present(&me, Some(&statement))?;
    info!(new = %t.new, effective_after = t.effective_after.0, "identity transition announced; presenting it to every peer");
    // Every peer hears it at once, on the handshake of its next session.
    ctx.close_all_connections();
    Ok(OwnTransition::of(ctx, &statement))
}

/// A new identity whose key is made on the token (non-extractable, under
/// its successor label), with a fresh encryption key.
fn new_on_token(
    token: &comity_config::TokenKey,
    now: Timestamp,
) -> Result<Identity, IdentityRotationError> {
    let (key, _) = comity_token::generate_successor(token)?;
    let made = comity_token::TokenSigner::open(&key)
        .map_err(IdentityRotationError::from)
        .and_then(|signer| {
            let mut seed = zeroize::Zeroizing::new([0u8; 32]);
            rand::RngCore::fill_bytes(&mut rand::rng(), &mut seed[..]);
            Ok(Identity::with_external_key(signer, &seed, now)?)
        });
    if made.is_err() {
        // Made but not usable: not left on the token.
        let _ = comity_token::destroy_unused(&key);
    }
    made
}

/// At start: this node's own transition, if any, is presented again —
/// before the switch if its new key is still at hand (a statement naming
/// a successor nobody holds would lead peers to a key that never
/// answers), after it for `[keys] transition_presented_days`. A record
/// that cannot be read, or a key file that is missing or holds another
/// key, is logged and not presented: the node starts under its current
/// key.
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
    if t.new == ctx.id() {
        if presented_until(ctx, &s) > Timestamp::now() {
            match ctx.tls.present(&ctx.identity(), Some(&s)) {
                Ok(()) => {
                    info!(old = %t.old, "presenting the identity transition this node switched by")
                }
                Err(e) => warn!(error = %e, "cannot present the identity transition"),
            }
        }
        return;
    }
    if t.old != ctx.id() {
        warn!(old = %t.old, "an announced identity transition is not from this node's key; not presented");
        return;
    }
    // The new key whole (on a token node, on the token too), as the
    // switch will need it.
    if let Err(e) = load_next(&ctx.config, t) {
        warn!(error = %e, new = %t.new, "the announced new identity key cannot be loaded; the transition is not presented");
        return;
    }
    match ctx.tls.present(&ctx.identity(), Some(&s)) {
        Ok(()) => info!(new = %t.new, "presenting the announced identity transition"),
        Err(e) => warn!(error = %e, "cannot present the announced identity transition"),
    }
}

/// Until when a switched node presents its statement.
fn presented_until(ctx: &Context, s: &TransitionStatement) -> Timestamp {
    s.transition
        .effective_after
        .saturating_add(ctx.config.keys.transition_presented())
}

#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    #[error("the announced new identity key cannot be loaded from {}: {source}", path.display())]
    NextKey {
        path: PathBuf,
        source: comity_config::KeyFileIoError,
    },
    #[error("{} holds {found}, not the announced new key {expected}", path.display())]
    OtherKey {
        path: PathBuf,
        found: NodeId,
        expected: NodeId,
    },
    #[error("the identity key is {found}, but this node's audit log is signed by {expected} now: the key file (or, on a token, the key it names) is not this node's current key; put the right one back, or make a new node")]
    NotThisLog { found: NodeId, expected: NodeId },
    #[error("the announced new identity key cannot be opened on the token: {0}")]
    Token(comity_token::TokenError),
    #[error("the audit log cannot switch: {0}")]
    Audit(#[from] crate::audit::AuditError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the identity key file cannot be replaced: {0}")]
    KeyFile(#[from] comity_config::KeyFileIoError),
    #[error("the superseded encryption key cannot be kept: {0}")]
    Previous(#[from] crate::keys::PreviousKeyError),
    #[error("the certificate of the new key cannot be made: {0}")]
    Tls(#[from] crate::transport::tls::TlsSetupError),
}

impl From<crate::store::CommitError> for SwitchError {
    fn from(e: crate::store::CommitError) -> Self {
        SwitchError::Store(e.into())
    }
}

/// The announced new key, from `IDENTITY_KEY.next` (on a token node, its
/// encryption key there and its identity key on the token under its
/// successor label), checked to be `t.new`.
fn load_next(
    config: &comity_config::Config,
    t: &IdentityTransition,
) -> Result<Identity, SwitchError> {
    let path = comity_config::next_key_path(&config.node.identity_key);
    let loaded = match &config.node.identity_token {
        None => comity_config::load_key_file(&path),
        Some(token) => {
            let key = comity_token::successor_key(token, &t.new);
            let signer = comity_token::TokenSigner::open(&key).map_err(SwitchError::Token)?;
            comity_config::load_key_file_with_signer(&path, signer)
        }
    };
    let next = loaded.map_err(|source| SwitchError::NextKey {
        path: path.clone(),
        source,
    })?;
    if next.id() != t.new {
        return Err(SwitchError::OtherKey {
            path,
            found: next.id(),
            expected: t.new,
        });
    }
    Ok(next)
}

/// The switch's last, file-level step: the identity key file now holds
/// the new key, and the `.next` file is gone. Done again at start if a
/// crash interrupted it (the store's mark says the switch happened).
fn replace_key_files(identity_key: &std::path::Path, next: &Identity) -> Result<(), SwitchError> {
    comity_config::replace_key_file(identity_key, next)?;
    let path = comity_config::next_key_path(identity_key);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            warn!(file = %path.display(), error = %e, "cannot remove the announced key's file after the switch")
        }
    }
    Ok(())
}

/// Switches this node to the new key of its own transition, if it is
/// effective and not switched yet (see the module's documentation).
/// In order, each step durable before the next: the superseded encryption
/// key is kept in `keys/previous`; the log switches (the old key's last
/// checkpoint, then the switch entry, and the store's mark, in one
/// commit: the point of no return); the key file is replaced. Then the
/// node signs, seals and handshakes with the new key, and every
/// connection is closed so that each peer meets it at once. Returns the
/// new id, or `None` if there was nothing to switch.
pub(crate) async fn switch(ctx: &Arc<Context>) -> Result<Option<NodeId>, SwitchError> {
    let _one = ctx.key_rotation.lock().await;
    let Some(s) = ctx.store.own_transition()? else {
        return Ok(None);
    };
    // Marked: the switch was made, and only this process's part of it may
    // be left (a commit or the key file that failed before).
    let marked = ctx.store.own_switch()?;
    if s.transition.old != ctx.id() {
        return Ok(None);
    }
    if marked.is_none() && s.transition.effective_after > Timestamp::now() {
        return Ok(None);
    }
    let me = ctx.identity();
    let ctx2 = ctx.clone();
    let s2 = s.clone();
    let done = tokio::task::spawn_blocking(move || {
        let next = load_next(&ctx2.config, &s2.transition)?;
        // The old encryption key is kept (and destroyed after its grace
        // period) as a rotation's is: a restart after the switch still
        // opens what peers sealed to it.
        let new = Arc::new(me.handed_over_to(next));
        if let Some(old_key) = new.previous_keys().first() {
            crate::keys::previous::write(
                &crate::keys::previous::dir(&ctx2.config.node.data_dir),
                old_key,
            )?;
        }
        let seq = match marked {
            Some(seq) => seq,
            // An entry a failed write left without its mark is finished,
            // never written twice.
            None => match ctx2.audit.interrupted_switch(&s2)? {
                Some(seq) => {
                    ctx2.audit.finish_switch(&s2, seq)?;
                    seq
                }
                None => ctx2.audit.switch(&s2)?,
            },
        };
        Ok::<_, SwitchError>((new, seq))
    })
    .await;
    let (new, seq) = match done {
        Ok(r) => r?,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    };
    // The point of no return. If it fails, the log signs nothing until
    // the next attempt (or start) makes it.
    ctx.store.commit().await?;
    let key_path = ctx.config.node.identity_key.clone();
    let file = new.clone();
    let replaced = tokio::task::spawn_blocking(move || replace_key_files(&key_path, &file)).await;
    let replaced = match replaced {
        Ok(r) => r,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    };
    // The switch is made: a file not replaced now is replaced at the next
    // start (the mark says so), and this process goes on with the new key.
    if let Err(e) = &replaced {
        warn!(error = %e, "the identity key file still holds the old key; it is replaced at the next start");
    }
    let t = &s.transition;
    let presented = (presented_until(ctx, &s) > Timestamp::now()).then_some(&s);
    ctx.tls.present(&new, presented)?;
    ctx.set_identity(new.clone());
    ctx.audit.sign_with(new);
    info!(old = %t.old, new = %t.new, entry = seq, "switched to the new identity key; reconnecting to every peer");
    ctx.close_all_connections();
    Ok(Some(t.new))
}

/// Until `stop`: switches to the announced key once it is effective,
/// looking when one is announced, at its effective time, and hourly
/// after a failure.
pub(crate) async fn watch(ctx: Arc<Context>, mut stop: crate::shutdown::ShutdownSignal) {
    const RETRY: Duration = Duration::from_secs(3600);
    loop {
        let wait = match ctx.store.own_transition() {
            Ok(Some(s)) if s.transition.old == ctx.id() => {
                let at = s.transition.effective_after;
                let now = Timestamp::now();
                if at <= now {
                    match switch(&ctx).await {
                        Ok(_) => None,
                        Err(e) => {
                            warn!(error = %e, "cannot switch to the announced identity key; trying again in an hour");
                            Some(RETRY)
                        }
                    }
                } else {
                    Some(Duration::from_millis(at.0.saturating_sub(now.0)))
                }
            }
            Ok(_) => None,
            Err(e) => {
                warn!(error = %e, "cannot read this node's announced identity transition");
                Some(RETRY)
            }
        };
        let sleep = async {
            match wait {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = sleep => {}
            _ = ctx.own_transition_announced.notified() => {}
            _ = stop.triggered() => return,
        }
    }
}

/// At start, before the audit log opens: the identity this node runs
/// under, given what its store says of its own transitions. A switch that
/// a crash interrupted after its mark but before the key file was
/// replaced is finished here (the `.next` file still holds the new key).
/// The earlier ids of every switch made are this identity's too.
pub(crate) fn at_start(
    config: &comity_config::Config,
    store: &crate::store::Store,
    identity: Identity,
) -> Result<Identity, SwitchError> {
    let mut identity = identity;
    if let (Some(s), Some(_)) = (store.own_transition()?, store.own_switch()?) {
        let next = comity_config::next_key_path(&config.node.identity_key);
        if identity.id() == s.transition.new
            && comity_config::node_id_in_key_file(&next).is_ok_and(|id| id == s.transition.new)
        {
            // A switch whose key file was replaced but whose `.next` a
            // crash left: it would block the next announcement.
            if let Err(e) = std::fs::remove_file(&next) {
                warn!(file = %next.display(), error = %e, "cannot remove the announced key's file after the switch");
            }
        }
        if identity.id() == s.transition.old {
            let next = load_next(config, &s.transition)?;
            replace_key_files(&config.node.identity_key, &next)?;
            info!(new = %next.id(), "finished an identity switch interrupted before the key file was replaced");
            // The old encryption key too, which the loaded list left out as
            // the current one then.
            identity = identity.handed_over_to(next);
        }
    }
    let switches = store.earlier_switches()?;
    // A switch not marked yet (its entry may be in the log, to be finished
    // once the log opens) leaves the log's key the old one; a store of an
    // earlier build may hold its earlier-id record without the mark.
    let unmarked_old = match (store.own_transition()?, store.own_switch()?) {
        (Some(s), None) => Some(s.transition.old),
        _ => None,
    };
    // The log is signed by its first key, then by each key it switched
    // to: a key file naming another key (an earlier one of this node's,
    // or a stranger's) is not this node's identity now.
    if let Some(first) = store.log_first_key()? {
        let mut current = first;
        for _ in 0..switches.len() {
            if Some(current) == unmarked_old {
                break;
            }
            match switches.iter().find(|(old, _)| *old == current) {
                Some((_, s)) => current = s.transition.new,
                None => break,
            }
        }
        if identity.id() != current {
            return Err(SwitchError::NotThisLog {
                found: identity.id(),
                expected: current,
            });
        }
    }
    let earlier: Vec<NodeId> = switches.into_iter().map(|(old, _)| old).collect();
    Ok(identity.with_earlier_ids(earlier))
}

/// At start, after the audit log opened: a switch whose entry reached the
/// log but whose mark a crash lost is finished (the old key, still this
/// process's, signs its checkpoint; then the key file is replaced).
/// Returns the identity to run under.
pub(crate) async fn finish_interrupted(
    config: &comity_config::Config,
    store: &crate::store::Store,
    audit: &crate::audit::AuditLog,
    identity: Arc<Identity>,
) -> Result<Arc<Identity>, SwitchError> {
    let Some(s) = store.own_transition()? else {
        return Ok(identity);
    };
    if store.own_switch()?.is_some() || identity.id() != s.transition.old {
        return Ok(identity);
    }
    let Some(seq) = audit.interrupted_switch(&s)? else {
        return Ok(identity);
    };
    let next = load_next(config, &s.transition)?;
    let new = Arc::new(identity.handed_over_to(next));
    if let Some(old_key) = new.previous_keys().first() {
        crate::keys::previous::write(&crate::keys::previous::dir(&config.node.data_dir), old_key)?;
    }
    audit.finish_switch(&s, seq)?;
    store.commit().await?;
    audit.sign_with(new.clone());
    replace_key_files(&config.node.identity_key, &new)?;
    warn!(entry = seq, new = %new.id(), "finished an identity switch a crash interrupted");
    Ok(new)
}

#[cfg(test)]
#[path = "identity_tests.rs"]
mod tests;
