//! What can go wrong with an attachment file.

use std::io;
use std::path::PathBuf;

use comity_protocol::attachment::{ChunkError, InvalidAttachment};

#[derive(Debug, thiserror::Error)]
pub enum AttachmentError {
    /// Permanent: the attachment breaks a rule or a configured limit.
    #[error(transparent)]
    Invalid(#[from] InvalidAttachment),
    /// Retriable: not now, once space is freed.
    #[error(
        "not enough free space: {need} bytes needed, {free} free, and {reserve} must stay \
         free (limits.disk_reserve_mib / disk_reserve_percent); free space and try again"
    )]
    NoRoom { need: u64, free: u64, reserve: u64 },
    /// A chunk refused: nothing was written, the resume point is unchanged.
    #[error(transparent)]
    Chunk(#[from] ChunkError),
    #[error("the file ended after {got} of its declared {expected} bytes")]
    SourceShort { expected: u64, got: u64 },
    #[error("the file is longer than its declared {expected} bytes")]
    SourceLong { expected: u64 },
    #[error("{path}: {problem}")]
    Corrupt { path: PathBuf, problem: String },
    #[error("{path} already exists (or is a link): refusing to overwrite it; choose another path")]
    Exists { path: PathBuf },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// The node is shutting down: a commit on a blocking thread was
    /// cancelled (what it had made durable stays).
    #[error("the node is shutting down")]
    ShuttingDown,
    /// A test stopped the work between two steps, as a crash would.
    #[cfg(test)]
    #[error("simulated crash")]
    SimulatedCrash,
}

impl AttachmentError {
    /// Whether the same attachment may succeed later (space), as opposed
    /// to never (limits, a bad file).
    pub fn is_retriable(&self) -> bool {
        matches!(self, AttachmentError::NoRoom { .. })
    }
}

/// `map_err` helper: an I/O error with what was being done and to which path.
pub(super) fn io_at<'a>(
    what: &'static str,
    path: &'a std::path::Path,
) -> impl FnOnce(io::Error) -> AttachmentError + 'a {
    move |source| AttachmentError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}
