//! A consistent copy of the store while the node runs (for backups).
//!
//! The order keeps the audit log's invariant (no event without its entry):
//! with the write barrier closed, the log is sealed and its checkpoint
//! stored, the audit files are synced before sled is flushed (as every
//! commit does), and the copy takes sled's files and the audit files cut
//! exactly at that checkpoint's mark. Every event in the copied sled was
//! written before the barrier closed, so after its entry, which is below
//! the mark; entries appended while the barrier was closed belong to
//! events that waited, and are in neither copy.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use comity_protocol::Digest;

use super::audit_files::Mark;
use super::{key, Store};

/// One file of a snapshot, relative to the store's directory.
#[derive(Clone, Debug)]
pub struct SnapshotFile {
    pub path: PathBuf,
    pub len: u64,
}

/// What [`Store::snapshot`] copied.
#[derive(Debug)]
pub struct Snapshot {
    /// Entries of the log in the copy: the size of its newest checkpoint.
    pub size: u64,
    /// That checkpoint's signed note.
    pub note: String,
    pub files: Vec<SnapshotFile>,
    /// How long writes were stopped.
    pub paused: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("the audit log has no entry to end a backup at")]
    EmptyLog,
    #[error("sealing the audit log: {0}")]
    Seal(String),
    #[error("signing the backup's checkpoint: {0}")]
    Sign(String),
    #[error("storing the backup's checkpoint: {0}")]
    Store(#[from] sled::Error),
    #[error("flushing the store before the copy: {0}")]
    Flush(String),
    #[error("copying {path}: {source}")]
    Copy { path: String, source: io::Error },
    #[error("{path} is not a regular file or directory: not copied")]
    Special { path: String },
}

fn copy_err(path: &Path) -> impl Fn(io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Copy {
        path: path.display().to_string(),
        source,
    }
}

impl Store {
    /// Copies the store into `into` (an empty directory), ending at a
    /// checkpoint `sign` makes of the sealed log (size, root → signed
    /// note). `sign` runs while writes are stopped and must not write to
    /// the store. The caller holds off other checkpoint signers (they
    /// would wait on the barrier holding their lock).
    pub fn snapshot(
        &self,
        into: &Path,
        sign: impl FnOnce(u64, Digest) -> Result<String, String>,
    ) -> Result<Snapshot, SnapshotError> {
        new_dir(into)?;
        let started = Instant::now();
        let closed = self.barrier.close();
        let (mark, root) = self
            .audit_files
            .seal()
            .map_err(|e| SnapshotError::Seal(e.to_string()))?;
        if mark.size == 0 {
            return Err(SnapshotError::EmptyLog);
        }
        let note = sign(mark.size, root).map_err(SnapshotError::Sign)?;
        self.audit.insert_closed(
            &closed,
            key(b'c', &[&mark.size.to_be_bytes()]),
            note.as_bytes(),
        )?;
        self.audit
            .insert_closed(&closed, &b"k"[..], &mark.to_bytes()[..])?;
        // Held through the copy: the committer's flushes wait (they would
        // find nothing to write, but sled may still touch its files).
        let _gate = self.flush_gate.lock().unwrap_or_else(|p| p.into_inner());
        self.audit_files
            .sync()
            .map_err(|e| SnapshotError::Flush(e.to_string()))?;
        self.db
            .flush()
            .map_err(|e| SnapshotError::Flush(e.to_string()))?;
        let mut files = Vec::new();
        copy_tree(&self.dir, Path::new("sled"), into, &mut files)?;
        copy_audit(&self.dir, into, mark, &mut files)?;
        let paused = started.elapsed();
        Ok(Snapshot {
            size: mark.size,
            note,
            files,
            paused,
        })
    }
}

fn new_dir(path: &Path) -> Result<(), SnapshotError> {
    fs::DirBuilder::new()
        .mode(0o700)
        .create(path)
        .map_err(copy_err(path))
}

fn new_file(path: &Path) -> Result<File, SnapshotError> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(copy_err(path))
}

/// Copies `from/rel` (a directory) to `to/rel`, recording each file.
fn copy_tree(
    from: &Path,
    rel: &Path,
    to: &Path,
    files: &mut Vec<SnapshotFile>,
) -> Result<(), SnapshotError> {
    let src = from.join(rel);
    new_dir(&to.join(rel))?;
    let mut entries: Vec<_> = fs::read_dir(&src)
        .map_err(copy_err(&src))?
        .collect::<Result<_, _>>()
        .map_err(copy_err(&src))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let rel = rel.join(entry.file_name());
        let path = from.join(&rel);
        let kind = entry.file_type().map_err(copy_err(&path))?;
        if kind.is_dir() {
            copy_tree(from, &rel, to, files)?;
        } else if kind.is_file() {
            let len = copy_file(&path, &to.join(&rel), None)?;
            files.push(SnapshotFile { path: rel, len });
        } else {
            return Err(SnapshotError::Special {
                path: path.display().to_string(),
            });
        }
    }
    Ok(())
}

/// The audit files, each cut at the length `mark` gives it: the copy opens
/// with nothing to replay.
fn copy_audit(
    from: &Path,
    to: &Path,
    mark: Mark,
    files: &mut Vec<SnapshotFile>,
) -> Result<(), SnapshotError> {
    let audit = Path::new("audit");
    new_dir(&to.join(audit))?;
    let hashes = super::audit_files::hashes_len(mark.size).ok_or(SnapshotError::Seal(format!(
        "a mark of {} entries is out of range",
        mark.size
    )))?;
    for (name, len) in [
        ("leaves", mark.leaves_len),
        ("offsets", mark.size.saturating_mul(8)),
        ("hashes", hashes),
        ("messages", mark.messages_len),
    ] {
        let rel = audit.join(name);
        let got = copy_file(&from.join(&rel), &to.join(&rel), Some(len))?;
        if got != len {
            return Err(SnapshotError::Copy {
                path: from.join(&rel).display().to_string(),
                source: io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{got} bytes, the checkpoint's mark says {len}"),
                ),
            });
        }
        files.push(SnapshotFile { path: rel, len });
    }
    Ok(())
}

/// Copies `src` (its first `limit` bytes, if given) to a new file `dst`;
/// returns the bytes copied. Not synced: the copy is archived at once.
fn copy_file(src: &Path, dst: &Path, limit: Option<u64>) -> Result<u64, SnapshotError> {
    let input = File::open(src).map_err(copy_err(src))?;
    let mut out = new_file(dst)?;
    let n = match limit {
        Some(l) => io::copy(&mut input.take(l), &mut out),
        None => io::copy(&mut { input }, &mut out),
    }
    .map_err(copy_err(src))?;
    out.flush().map_err(copy_err(dst))?;
    Ok(n)
}
