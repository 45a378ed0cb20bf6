//! The node's secret key file on disk: created 0600 from the first byte,
//! refused when group or others can read it (as ssh does).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use comity_protocol::identity::KeyFileError;
use std::sync::Arc;

use comity_protocol::identity::ExternalSigner;
use comity_protocol::{Identity, NodeId};
use zeroize::Zeroizing;

pub use comity_protocol::identity::MAX_KEY_FILE_BYTES;

/// Why a key file could not be written or loaded. Never contains key
/// material: only paths, modes, sizes and the parser's redacted reasons.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileIoError {
    #[error("refusing to overwrite the existing key file {}: it holds this node's identity; move it away first if you really mean to replace it", path.display())]
    Exists { path: PathBuf },
    #[error("cannot {action} key file {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key file {} has mode {mode:04o}, so group or others may access it; secret keys must be private: run `chmod 600 {}`", path.display(), path.display())]
    Permissions { path: PathBuf, mode: u32 },
    #[error("key file {} is not a regular file", path.display())]
    NotRegular { path: PathBuf },
    #[error("key file {} is {len} bytes; a Comity key file is at most {max} bytes (is this the right file?)", path.display(), max = MAX_KEY_FILE_BYTES)]
    TooLarge { path: PathBuf, len: u64 },
    #[error("key file {} is not a Comity key file: not UTF-8 text", path.display())]
    NotUtf8 { path: PathBuf },
    #[error("key file {} is not a valid Comity key file: {source}", path.display())]
    Parse { path: PathBuf, source: KeyFileError },
}

fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> KeyFileIoError + 'a {
    move |source| KeyFileIoError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Where a node keeps the new identity key it announced (`comity keys
/// rotate-identity`) until it switches to it: beside its key file, with
/// `.next` appended.
pub fn next_key_path(identity_key: &Path) -> PathBuf {
    let mut p = identity_key.as_os_str().to_owned();
    p.push(".next");
    PathBuf::from(p)
}

/// Writes `identity` to a new file at `path` with mode 0600, creating
/// missing parent directories with mode 0700. Refuses to overwrite. The
/// file and its directory are fsynced, so a crash right after this returns
/// cannot lose the node's identity.
pub fn write_new_key_file(path: &Path, identity: &Identity) -> Result<(), KeyFileIoError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err("create the directory of", path))?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => KeyFileIoError::Exists {
                path: path.to_path_buf(),
            },
            _ => io_err("create", path)(e),
        })?;
    let text = identity.to_key_file();
    let written = file
        .write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io_err("write", path));
    if let Err(e) = written {
        // A half-written key file would block the retry (Exists).
        drop(file);
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("sync the directory of", path))
}

/// Replaces the key file at `path` with `identity`'s (a rotated key): the
/// new text goes to a fresh 0600 file beside it, is synced, and is renamed
/// over the old one, and the directory is synced; a crash leaves the old
/// file or the new one, never a mix.
pub fn replace_key_file(path: &Path, identity: &Identity) -> Result<(), KeyFileIoError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "node.key".into());
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let fresh = dir.join(format!(".{name}.new"));
    // Left by a crash during an earlier replacement: never the live file.
    match std::fs::remove_file(&fresh) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("remove the leftover", &fresh)(e)),
    }
    write_new_key_file(&fresh, identity)?;
    std::fs::rename(&fresh, path).map_err(io_err("rename over", path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("sync the directory of", path))
}

/// Loads the identity from `path`, refusing a file that group or others
/// may access, a non-regular file and an oversize one, before reading it.
pub fn load_key_file(path: &Path) -> Result<Identity, KeyFileIoError> {
    let text = read_key_text(path)?;
    Identity::from_key_file(&text).map_err(|source| KeyFileIoError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

/// Loads the encryption-key file at `path` of a node whose identity key
/// `signer` holds (a token), with the same checks as [`load_key_file`].
pub fn load_key_file_with_signer(
    path: &Path,
    signer: Arc<dyn ExternalSigner>,
) -> Result<Identity, KeyFileIoError> {
    let text = read_key_text(path)?;
    Identity::from_encryption_key_file(&text, signer).map_err(|source| KeyFileIoError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

/// The node id a key file of either kind names (no PIN or token needed).
pub fn node_id_in_key_file(path: &Path) -> Result<NodeId, KeyFileIoError> {
    let text = read_key_text(path)?;
    comity_protocol::identity::node_id_in_key_file(&text).map_err(|source| KeyFileIoError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

fn read_key_text(path: &Path) -> Result<Zeroizing<String>, KeyFileIoError> {
    use crate::PrivateFileError as E;
    let bytes = crate::read_private_file(path, MAX_KEY_FILE_BYTES as u64).map_err(|e| match e {
        E::Io {
            action,
            path,
            source,
        } => KeyFileIoError::Io {
            action,
            path,
            source,
        },
        E::NotRegular { path } => KeyFileIoError::NotRegular { path },
        E::Permissions { path, mode } => KeyFileIoError::Permissions { path, mode },
        E::TooLarge { path, len, .. } => KeyFileIoError::TooLarge { path, len },
    })?;
    let text = std::str::from_utf8(&bytes).map_err(|_| KeyFileIoError::NotUtf8 {
        path: path.to_path_buf(),
    })?;
    Ok(Zeroizing::new(text.to_string()))
}
