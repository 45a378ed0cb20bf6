//! A restored node's way back into its witnesses' trust. `comity restore`
//! leaves a marker naming the backup's last checkpoint; the first start
//! after it records the restoration in the audit log, signs a checkpoint
//! that continues the log and a restoration statement naming both, and
//! keeps the statement in the data directory. Each peer's sender presents
//! it until that witness has cosigned the continuation (see
//! `session::sender`); a witness checks it in `audit::witness`.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use comity_protocol::audit::checkpoint::{open_checkpoint, Checkpoint};
use comity_protocol::audit::entry::{Actor, AuditKind};
use comity_protocol::audit::note::Note;
use comity_protocol::audit::restoration::RestorationStatement;
use comity_protocol::backup::{
    RestoreMarker, MAX_RESTORE_MARKER_BYTES, RESTORE_MARKER_FORMAT, RESTORE_MARKER_NAME,
};
use comity_protocol::{codec, Identity, Timestamp};
use tracing::info;

use crate::audit::{AuditError, AuditLog, Fact};

/// The statement, kept beside the store: `encode((statement, signature))`.
pub const STATEMENT_FILE: &str = "restoration-statement";

/// Our signed statement, presented to witnesses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingRestoration {
    pub statement: RestorationStatement,
    pub signature: [u8; 64],
}

#[derive(Debug, thiserror::Error)]
pub enum RestorationStartError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{} is not a restore marker this node can read: {why}", path.display())]
    BadMarker { path: PathBuf, why: String },
    #[error("{} does not hold a restoration statement: {why}", path.display())]
    BadStatement { path: PathBuf, why: String },
    #[error("the restore marker names checkpoint {size}, which the restored store does not hold as signed: restore the backup again")]
    NotTheStore { size: u64 },
    #[error("audit log: {0}")]
    Audit(#[from] AuditError),
    #[error("the restoration statement could not be signed: {0}")]
    Sign(comity_protocol::identity::SignError),
}

fn io_err(path: &Path) -> impl Fn(io::Error) -> RestorationStartError + '_ {
    move |source| RestorationStartError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// At start, before anything else is logged: acts on a restore marker in
/// `data_dir` if there is one, and returns the statement to present, if
/// this node was ever restored. A crash between the steps repeats only
/// what is missing: the entry is found at seq N again, and the statement
/// file is written before the marker goes.
pub async fn on_start(
    data_dir: &Path,
    audit: &Arc<AuditLog>,
    identity: &Identity,
) -> Result<Option<PendingRestoration>, RestorationStartError> {
    let statement_path = data_dir.join(STATEMENT_FILE);
    let marker_path = data_dir.join(RESTORE_MARKER_NAME);
    let pending = read_statement(&statement_path)?;
    let Some(marker) = read_marker(&marker_path)? else {
        return Ok(pending);
    };
    // The statement is of this restoration if it names the marker's
    // checkpoint; one of an earlier restoration is replaced.
    let restored = restored_checkpoint(&marker, audit, identity)?;
    let pending = match pending {
        Some(p)
            if p.statement.restored_size == restored.size
                && p.statement.restored_root == restored.root
                && p.statement.backup_time.as_millis() == marker.backup_created_ms =>
        {
            p
        }
        _ => {
            let p = make_statement(&marker, restored, audit, identity).await?;
            write_statement(&statement_path, &p)?;
            p
        }
    };
    fs::remove_file(&marker_path).map_err(io_err(&marker_path))?;
    fs::File::open(data_dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(data_dir))?;
    Ok(Some(pending))
}

fn read_marker(path: &Path) -> Result<Option<RestoreMarker>, RestorationStartError> {
    let file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path)(e)),
    };
    let mut text = Vec::new();
    file.take(MAX_RESTORE_MARKER_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(io_err(path))?;
    let bad = |why: String| RestorationStartError::BadMarker {
        path: path.to_path_buf(),
        why,
    };
    if text.len() as u64 > MAX_RESTORE_MARKER_BYTES {
        return Err(bad("too long".into()));
    }
    let marker: RestoreMarker = serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
    if marker.format != RESTORE_MARKER_FORMAT {
        return Err(bad(format!("format {:?}", marker.format)));
    }
    Ok(Some(marker))
}

/// The marker's checkpoint, checked: signed by us, of the size it says,
/// and the one the restored store holds at that size.
fn restored_checkpoint(
    marker: &RestoreMarker,
    audit: &AuditLog,
    identity: &Identity,
) -> Result<Checkpoint, RestorationStartError> {
    let me = identity.id();
    let not_the_store = RestorationStartError::NotTheStore {
        size: marker.audit_size,
    };
    // Named by the log's first key (the node may have switched since).
    let checkpoint = open_checkpoint(&marker.checkpoint, audit.origin(), &me)
        .map(|(c, _)| c)
        .map_err(|_| RestorationStartError::NotTheStore {
            size: marker.audit_size,
        })?;
    let stored = audit.checkpoint_note(marker.audit_size)?;
    let same = stored
        .as_deref()
        .and_then(|n| Note::parse(n).ok())
        .and_then(|n| Checkpoint::parse_body(n.text()).ok())
        .is_some_and(|c| c == checkpoint);
    if checkpoint.size != marker.audit_size || !same || audit.size() < checkpoint.size {
        return Err(not_the_store);
    }
    Ok(checkpoint)
}

/// Records the restoration, signs the checkpoint that holds that entry
/// (durable when this returns), and the statement naming both.
async fn make_statement(
    marker: &RestoreMarker,
    restored: Checkpoint,
    audit: &Arc<AuditLog>,
    identity: &Identity,
) -> Result<PendingRestoration, RestorationStartError> {
    let backup_time = Timestamp::from_millis(marker.backup_created_ms);
    let detail = format!(
        "restored-size {} restored-root {} backup-time {}",
        restored.size,
        restored.root,
        backup_time.as_millis()
    );
    // A start that died after this entry and before the statement file
    // was written left it at seq N (nothing is logged before it): it is
    // not recorded twice.
    let recorded = audit
        .entry(restored.size)?
        .is_some_and(|e| e.kind == AuditKind::LogRestored && e.detail == detail);
    if !recorded {
        audit.record(Fact::new(AuditKind::LogRestored, Actor::Operator).detail(&detail))?;
    }
    let size = audit.durable_checkpoint().await?;
    let note = audit
        .checkpoint_note(size)?
        .ok_or(AuditError::NoCheckpoint(size))?;
    let continuation = Note::parse(&note)
        .map_err(comity_protocol::audit::CheckpointError::from)
        .and_then(|n| Checkpoint::parse_body(n.text()))
        .map_err(AuditError::from)?;
    let statement = RestorationStatement {
        node: identity.id(),
        restored_size: restored.size,
        restored_root: restored.root,
        backup_time,
        restored_at: Timestamp::now(),
        continuation_size: continuation.size,
        continuation_root: continuation.root,
    };
    let signature = statement
        .sign(identity)
        .map_err(RestorationStartError::Sign)?;
    info!(
        restored = restored.size,
        continuation = continuation.size,
        "audit log restored from a backup; the restoration statement goes to every witness"
    );
    Ok(PendingRestoration {
        statement,
        signature,
    })
}

fn read_statement(path: &Path) -> Result<Option<PendingRestoration>, RestorationStartError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path)(e)),
    };
    let (statement, signature): (RestorationStatement, [u8; 64]) = codec::decode::<_, 4096>(&bytes)
        .map_err(|e| RestorationStartError::BadStatement {
            path: path.to_path_buf(),
            why: e.to_string(),
        })?;
    Ok(Some(PendingRestoration {
        statement,
        signature,
    }))
}

/// Written whole or not at all: a temporary file, synced, renamed.
fn write_statement(path: &Path, p: &PendingRestoration) -> Result<(), RestorationStartError> {
    let bytes = codec::encode(&(&p.statement, &p.signature)).map_err(|e| {
        RestorationStartError::BadStatement {
            path: path.to_path_buf(),
            why: e.to_string(),
        }
    })?;
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(&bytes)?;
            f.sync_all()
        })
        .map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))
}

#[cfg(test)]
mod tests;
