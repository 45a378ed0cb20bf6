//! What the node writes is its own: directories 0700 and files 0600
//! whatever umask it was started with, and a data directory that others
//! can read is refused (its store holds message bodies in plaintext), as a
//! readable key file is.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Sets the process's file-creation mask to 077: every file and directory
/// the daemon (and sled inside it) creates from now on is its user's
/// alone. Call first thing in `main`, before any thread starts.
pub fn restrict_umask() {
    // SAFETY: umask(2) takes an integer and sets the process's creation
    // mask; it reads or writes no memory of ours and cannot fail.
    #[allow(unsafe_code)]
    unsafe {
        libc::umask(0o077);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("cannot create the data directory {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the data directory {path} has mode {mode:o}: others can read the store; run chmod 700 {path}"
    )]
    Open { path: PathBuf, mode: u32 },
}

/// Creates `dir` (0700) if it is missing; refuses one that group or others
/// may enter or read.
pub fn prepare_data_dir(dir: &Path) -> Result<(), DataDirError> {
    let create = |source| DataDirError::Create {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(create)?;
    let mode = std::fs::metadata(dir).map_err(create)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(DataDirError::Open {
            path: dir.to_path_buf(),
            mode,
        });
    }
    Ok(())
}
