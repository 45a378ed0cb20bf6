//! The token's user PIN: from a private file or the environment, never the
//! configuration.

use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use comity_config::{TokenKey, PIN_ENV};
use zeroize::Zeroizing;

/// A PIN file is a line; anything larger is not one.
const MAX_PIN_FILE_BYTES: u64 = 1024;

/// Why the PIN could not be had. Never contains the PIN.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("no PIN: the URI names no pin-source file and {PIN_ENV} is not set")]
    Missing,
    #[error("cannot read the PIN file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the PIN file {} has mode {mode:04o}, so group or others may read it: run `chmod 600 {}`", path.display(), path.display())]
    Permissions { path: PathBuf, mode: u32 },
    #[error("the PIN file {} is not a regular file of at most {MAX_PIN_FILE_BYTES} bytes", path.display())]
    NotAPinFile { path: PathBuf },
    #[error("the PIN is empty or not UTF-8")]
    Empty,
}

/// The PIN for `key`: its first line of the `pin-source` file, or
/// `COMITY_PKCS11_PIN`.
pub(crate) fn read(key: &TokenKey) -> Result<Zeroizing<String>, PinError> {
    let pin = match &key.pin_file {
        Some(path) => read_file(path)?,
        None => Zeroizing::new(std::env::var(PIN_ENV).map_err(|_| PinError::Missing)?),
    };
    let line = Zeroizing::new(pin.lines().next().unwrap_or("").trim_end().to_string());
    if line.is_empty() {
        return Err(PinError::Empty);
    }
    Ok(line)
}

fn read_file(path: &Path) -> Result<Zeroizing<String>, PinError> {
    let io = |source| PinError::Io {
        path: path.to_path_buf(),
        source,
    };
    // O_NONBLOCK: a FIFO planted at the path must not hang the start.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() || meta.len() > MAX_PIN_FILE_BYTES {
        return Err(PinError::NotAPinFile {
            path: path.to_path_buf(),
        });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(PinError::Permissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    let mut bytes = Zeroizing::new(Vec::with_capacity(MAX_PIN_FILE_BYTES as usize + 1));
    file.take(MAX_PIN_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| PinError::Empty)?;
    Ok(Zeroizing::new(text.to_string()))
}
