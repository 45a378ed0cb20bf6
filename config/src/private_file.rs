//! Reading a secret file (key, PIN): refused before a byte is read when it
//! is not a regular file, when group or others may access it (as ssh
//! does), or when it is larger than the caller's bound.

use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

/// Why a secret file was not read. Never holds its contents.
#[derive(Debug, thiserror::Error)]
pub enum PrivateFileError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a regular file", path.display())]
    NotRegular { path: PathBuf },
    #[error("{} has mode {mode:04o}, so group or others may access it; secret files must be private: run `chmod 600 {}`", path.display(), path.display())]
    Permissions { path: PathBuf, mode: u32 },
    #[error("{} is {len} bytes, more than the {max} such a file can be (is this the right file?)", path.display())]
    TooLarge { path: PathBuf, len: u64, max: u64 },
}

/// The bytes of the secret file at `path`, at most `max` of them, in a
/// buffer zeroized when dropped.
pub fn read_private_file(path: &Path, max: u64) -> Result<Zeroizing<Vec<u8>>, PrivateFileError> {
    let io = |action| {
        move |source| PrivateFileError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    };
    // O_NONBLOCK: opening a FIFO planted at the path must not hang; it is
    // refused below as not a regular file. No effect on regular files.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(io("open"))?;
    // The opened file's metadata, not the path's: no check-then-swap race.
    let meta = file.metadata().map_err(io("inspect"))?;
    if !meta.is_file() {
        return Err(PrivateFileError::NotRegular {
            path: path.to_path_buf(),
        });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(PrivateFileError::Permissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    let too_large = |len| PrivateFileError::TooLarge {
        path: path.to_path_buf(),
        len,
        max,
    };
    if meta.len() > max {
        return Err(too_large(meta.len()));
    }
    // Capacity up front so no reallocation leaves unzeroized copies.
    let capacity = usize::try_from(max.saturating_add(1)).unwrap_or(usize::MAX);
    let mut bytes = Zeroizing::new(Vec::with_capacity(capacity));
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io("read"))?;
    // Grown since it was inspected.
    if bytes.len() as u64 > max {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}
