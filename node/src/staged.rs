//! Files the operator uploads (`POST /v1/attachments`) before submitting
//! the message that carries them: the upload into the node's own encrypted
//! copy, taking such staged files into a message, and removing those never
//! attached once `limits.staged_attachment_secs` have passed.

use std::collections::HashSet;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use comity_protocol::attachment::{
    check_manifests, chunk_size_for, AttachmentManifest, InvalidAttachment, TAG_BYTES,
};
use comity_protocol::message::MessageKind;
use comity_protocol::Timestamp;
use tracing::{info, warn};

use crate::attachments::{
    check_copy_in, ensure_room, stored_len, AttachmentError, ClaimedSpace, StoredId, UploadClaim,
};
use crate::context::Context;
use crate::idempotency::IdempotencyKey;
use crate::shutdown::ShutdownSignal;
use crate::store::{HeldAttachment, StagedAttachment, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error(transparent)]
    Attachment(#[from] AttachmentError),
    #[error("the store cannot write ({0}); the node reopens it once the disk has room again")]
    StoreUnwritable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why staged files cannot go into a message.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error(
        "attachment {0} is not waiting to be attached: unknown, already attached to a message, \
         or removed unattached after limits.staged_attachment_secs; upload the file again"
    )]
    NotStaged(StoredId),
    #[error("attachment {0} is listed twice")]
    ListedTwice(StoredId),
    #[error("attachments refused: {0}")]
    Invalid(#[from] InvalidAttachment),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An upload whose name, media type and size passed the checks and whose
/// space is claimed (see `attachments::claims`): ready to copy its body in.
pub struct Upload {
    ctx: Arc<Context>,
    name: String,
    media_type: String,
    size: u64,
    claim: UploadClaim,
}

/// Checks an upload before a byte of it is read: the store writable, the
/// name, type and size within the rules and limits (permanent), the space
/// free beyond the reserve and the other uploads' claims (retriable).
pub(crate) fn begin(
    ctx: &Arc<Context>,
    name: &str,
    media_type: &str,
    size: u64,
) -> Result<Upload, UploadError> {
    if let Some(f) = ctx.store.fault() {
        return Err(UploadError::StoreUnwritable(f.reason));
    }
    // The size is checked first: only a size within the limits is claimed
    // (an unchecked one, up to u64::MAX, would wrap the claims' total).
    check_copy_in(
        &ctx.config.limits.attachment_limits(),
        name,
        media_type,
        size,
    )?;
    let claim = ctx.uploads.claim(size);
    let space = ClaimedSpace {
        inner: &ctx.disk,
        claims: &ctx.uploads,
        own: &claim,
    };
    ensure_room(&space, stored_len(size))?;
    Ok(Upload {
        ctx: ctx.clone(),
        name: name.to_string(),
        media_type: media_type.to_string(),
        size,
        claim,
    })
}

impl Upload {
    /// Copies exactly the declared size from `source` (blocking: run it on
    /// a blocking thread) and records the file as staged. Not flushed: the
    /// caller commits before it answers. On any error nothing is left.
    pub fn copy_in(self, source: impl Read) -> Result<StagedAttachment, UploadError> {
        let ctx = &self.ctx;
        let claimed = self.claim.left();
        // Read but perhaps not yet written: the chunk being sealed.
        let in_hand = u64::from(chunk_size_for(self.size)) + TAG_BYTES as u64;
        let source = Progress {
            inner: source,
            read: 0,
            on_read: |read: u64| {
                self.claim
                    .shrink_to(claimed.saturating_sub(read.saturating_sub(in_hand)))
            },
        };
        let space = ClaimedSpace {
            inner: &ctx.disk,
            claims: &ctx.uploads,
            own: &self.claim,
        };
        let copied = ctx.attachments.copy_in(
            &space,
            &ctx.config.limits.attachment_limits(),
            &self.name,
            &self.media_type,
            self.size,
            source,
        )?;
        let staged = StagedAttachment {
            sealed: copied.sealed,
            stored: copied.id,
            staged_at: Timestamp::now(),
        };
        if let Err(e) = ctx.store.put_staged_attachment(&staged) {
            remove_file(ctx, copied.id);
            return Err(e.into());
        }
        Ok(staged)
    }
}

/// A reader that reports how much it has read.
struct Progress<R, F> {
    inner: R,
    read: u64,
    on_read: F,
}

impl<R: Read, F: FnMut(u64)> Read for Progress<R, F> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read = self.read.saturating_add(n as u64);
        (self.on_read)(self.read);
        Ok(n)
    }
}

/// The staged files `ids`, in that order, as the attachments of a new
/// message of `kind`, checked as its recipient will check them. Call with
/// `ctx.staged_gate` held until their staged records are removed in the
/// same staging ([`release`]).
pub(crate) fn held_for(
    ctx: &Context,
    kind: MessageKind,
    ids: &[StoredId],
) -> Result<Vec<HeldAttachment>, AttachError> {
    if !ids.is_empty() && !kind.carries_content() {
        return Err(InvalidAttachment::NotOnKind { kind }.into());
    }
    let mut seen = HashSet::new();
    let mut held = Vec::with_capacity(ids.len().min(1024));
    // The count first, so that a long list is refused before it is looked up.
    let max = ctx.config.limits.attachment_limits().max_attachments;
    if ids.len() > max {
        return Err(InvalidAttachment::TooMany {
            count: ids.len(),
            max,
        }
        .into());
    }
    for id in ids {
        if !seen.insert(*id) {
            return Err(AttachError::ListedTwice(*id));
        }
        let staged = ctx
            .store
            .staged_attachment(id)?
            .ok_or(AttachError::NotStaged(*id))?;
        held.push(HeldAttachment {
            sealed: staged.sealed,
            stored: Some(*id),
        });
    }
    let manifests: Vec<AttachmentManifest> =
        held.iter().map(|h| h.sealed.manifest.clone()).collect();
    check_manifests(kind, &manifests, &ctx.config.limits.attachment_limits())?;
    Ok(held)
}

/// What a keyed request's attachments are, to compare a retry with it:
/// each file's manifest (name, type, size, digests), not its stored id, so
/// that a retry which uploaded the same files again (a script running
/// `comity send --attach` again with its key) is the same request. An id
/// no longer staged is looked for among the attachments of the message
/// the key made (a retry of the same request, whose first try took them).
pub(crate) fn key_content(
    ctx: &Context,
    key: &IdempotencyKey,
    ids: &[StoredId],
) -> Result<Vec<AttachmentManifest>, StoreError> {
    let mut earlier: Option<Vec<HeldAttachment>> = None;
    let mut out = Vec::with_capacity(ids.len().min(1024));
    for id in ids {
        if let Some(staged) = ctx.store.staged_attachment(id)? {
            out.push(staged.sealed.manifest);
            continue;
        }
        if earlier.is_none() {
            earlier = Some(
                match ctx.store.idempotency_record(key.as_str().as_bytes())? {
                    Some(record) => ctx.store.outbound_attachments(&record.message)?,
                    None => Vec::new(),
                },
            );
        }
        let found = earlier
            .iter()
            .flatten()
            .find(|h| h.stored == Some(*id))
            .map(|h| h.sealed.manifest.clone());
        // Unknown: named by its id, which matches no manifest (staging
        // then refuses it).
        out.push(found.unwrap_or_else(|| AttachmentManifest {
            name: id.to_string(),
            media_type: String::new(),
            size: u64::MAX,
            chunk_size: 0,
            tree_root: comity_protocol::Digest([0; 32]),
            sha256: comity_protocol::Digest([0; 32]),
        }));
    }
    Ok(out)
}

/// Forgets the staged records of files now attached to a message (written
/// in the same commit as the message).
pub(crate) fn release(ctx: &Context, held: &[HeldAttachment]) -> Result<(), StoreError> {
    for id in held.iter().filter_map(|h| h.stored) {
        ctx.store.remove_staged_attachment(&id)?;
    }
    Ok(())
}

/// `attachment I size S sha256 H root R`: what the audit log says of one
/// attachment (never its name or key).
pub(crate) fn audit_detail(index: usize, m: &AttachmentManifest) -> String {
    format!(
        "attachment {index} size {} sha256 {} root {}",
        m.size, m.sha256, m.tree_root
    )
}

fn remove_file(ctx: &Context, id: StoredId) {
    let path = ctx.attachments.sent_path(id);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => warn!(path = %path.display(), error = %e, "cannot remove a staged file"),
    }
}

/// Removes, at start-up and then periodically until `stop`, staged files
/// older than `limits.staged_attachment_secs`: their records first, made
/// durable, then the files (a crash between the two leaves a file no
/// record names, never a record without its file).
pub(crate) async fn sweep(ctx: Arc<Context>, mut stop: ShutdownSignal) {
    let expiry = ctx.config.limits.staged_attachment_expiry();
    let every = (expiry / 4).clamp(Duration::from_secs(1), Duration::from_secs(600));
    loop {
        if let Err(e) = remove_expired(&ctx, Timestamp::now().saturating_sub(expiry)).await {
            warn!(error = %e, "cannot remove expired staged attachments");
        }
        // At least an hour, whatever the expiry: a copy-in between its
        // rename and its record is named by nothing for as long as its
        // syncs take.
        let before = std::time::SystemTime::now()
            .checked_sub(expiry.max(Duration::from_secs(3600)))
            .unwrap_or(std::time::UNIX_EPOCH);
        if let Err(e) = remove_unrecorded(&ctx, before) {
            warn!(error = %e, "cannot remove sender's copies no record names");
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.triggered() => return,
        }
    }
}

/// Removes the sender's copies that no record names and that were last
/// written before `before`; how many. A crash between a copy-in's rename
/// into `sent/` and its staged record leaves such a file, and so does one
/// between the sweep's commit and its removal; an upload in progress is
/// still in `staging/`, and one just renamed was written moments ago.
pub(crate) fn remove_unrecorded(
    ctx: &Context,
    before: std::time::SystemTime,
) -> Result<usize, UploadError> {
    let unrecorded: Vec<StoredId> = {
        // Staging takes files into messages under this gate: the records
        // read here are not between staged and attached.
        let _gate = ctx.staged_gate.lock().unwrap_or_else(|p| p.into_inner());
        let named = ctx.store.named_sent_copies()?;
        ctx.attachments
            .sent_copies()?
            .into_iter()
            .filter(|(id, written)| *written < before && !named.contains(id))
            .map(|(id, _)| id)
            .collect()
    };
    for id in &unrecorded {
        remove_file(ctx, *id);
    }
    if !unrecorded.is_empty() {
        info!(
            count = unrecorded.len(),
            "sender's copies no record names removed (left by a crash)"
        );
    }
    Ok(unrecorded.len())
}

/// Removes the staged files recorded before `before`; how many.
pub(crate) async fn remove_expired(ctx: &Context, before: Timestamp) -> Result<usize, StoreError> {
    let expired: Vec<StoredId> = {
        let _gate = ctx.staged_gate.lock().unwrap_or_else(|p| p.into_inner());
        let mut expired = Vec::new();
        for s in ctx.store.staged_attachments()? {
            if s.staged_at >= before {
                break;
            }
            ctx.store.remove_staged_attachment(&s.stored)?;
            expired.push(s.stored);
        }
        expired
    };
    if expired.is_empty() {
        return Ok(0);
    }
    ctx.store.commit().await?;
    for id in &expired {
        remove_file(ctx, *id);
    }
    info!(
        count = expired.len(),
        "staged attachments never attached to a message removed"
    );
    Ok(expired.len())
}
