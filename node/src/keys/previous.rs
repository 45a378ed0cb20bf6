//! The encryption keys a rotation superseded, one file each in
//! `data/keys/previous/` (0600, in a 0700 directory), kept until their
//! grace period ends and then overwritten and removed. When a key was
//! superseded is not stored: it is when the key after it was made
//! ([`comity_protocol::Identity::superseded_keys`]).
//!
//! ```text
//! # Comity superseded encryption key. SECRET: keep this file mode 0600.
//! comity-previous-encryption-key v1
//! created-at <ms since the epoch>
//! seed <base64 of the 32-byte X25519 DeriveKeyPair input>
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use comity_protocol::identity::PreviousEncryptionKey;
use comity_protocol::Timestamp;
use zeroize::Zeroizing;

const HEADER: &str = "comity-previous-encryption-key v1";
const MAX_BYTES: u64 = 1024;

/// Why a previous key could not be written, read or destroyed. Never holds
/// key material.
#[derive(Debug, thiserror::Error)]
pub enum PreviousKeyError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("superseded encryption key: {0}")]
    File(#[from] comity_config::PrivateFileError),
    #[error("{} is not a superseded encryption key file: {problem}", path.display())]
    Malformed {
        path: PathBuf,
        problem: &'static str,
    },
}

fn io<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> PreviousKeyError + 'a {
    move |source| PreviousKeyError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// The directory of superseded keys under `data_dir`.
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("keys").join("previous")
}

fn file_name(created_at: Timestamp) -> String {
    format!("{}.key", created_at.as_millis())
}

/// The file in `dir` of the key made at `created_at`.
pub fn path(dir: &Path, created_at: Timestamp) -> PathBuf {
    dir.join(file_name(created_at))
}

/// Writes `key` durably (file and directory synced). A file for the same
/// key already there is replaced.
pub fn write(dir: &Path, key: &PreviousEncryptionKey) -> Result<PathBuf, PreviousKeyError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io("create", dir))?;
    let path = path(dir, key.created_at());
    let fresh = dir.join(format!(".{}.new", file_name(key.created_at())));
    let _ = fs::remove_file(&fresh);
    let seed = Zeroizing::new(STANDARD.encode(key.seed()));
    let text = Zeroizing::new(format!(
        "# Comity superseded encryption key. SECRET: keep this file mode 0600.\n\
         {HEADER}\ncreated-at {}\nseed {}\n",
        key.created_at().as_millis(),
        seed.as_str()
    ));
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&fresh)
        .map_err(io("create", &fresh))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(io("write", &fresh))?;
    fs::rename(&fresh, &path).map_err(io("rename", &path))?;
    sync_dir(dir)?;
    Ok(path)
}

/// The key files in `dir` (`<ms>.key`; not the `.new` files of a write
/// under way), by name; none if it does not exist.
pub fn files(dir: &Path) -> Result<Vec<(String, PathBuf)>, PreviousKeyError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io("read", dir)(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io("read", dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".key") && !name.starts_with('.') {
            out.push((name, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Every superseded key in `dir` (none if it does not exist).
pub fn load(dir: &Path) -> Result<Vec<PreviousEncryptionKey>, PreviousKeyError> {
    files(dir)?.iter().map(|(_, path)| read(path)).collect()
}

fn read(path: &Path) -> Result<PreviousEncryptionKey, PreviousKeyError> {
    let malformed = |problem| PreviousKeyError::Malformed {
        path: path.to_path_buf(),
        problem,
    };
    let bytes = comity_config::read_private_file(path, MAX_BYTES)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| malformed("not UTF-8"))?;
    let mut lines = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'));
    if lines.next() != Some(HEADER) {
        return Err(malformed("wrong first line"));
    }
    let (mut created, mut seed) = (None, None);
    for l in lines {
        let (field, value) = l
            .split_once(' ')
            .ok_or(malformed("a line without a value"))?;
        match field {
            "created-at" => {
                let ms = value.parse().map_err(|_| malformed("a bad time"))?;
                created = Some(Timestamp(ms));
            }
            "seed" => {
                let raw = Zeroizing::new(
                    STANDARD
                        .decode(value)
                        .map_err(|_| malformed("a bad seed"))?,
                );
                let s: [u8; 32] = raw
                    .as_slice()
                    .try_into()
                    .map_err(|_| malformed("a bad seed"))?;
                seed = Some(Zeroizing::new(s));
            }
            _ => return Err(malformed("an unknown field")),
        }
    }
    let (Some(created), Some(seed)) = (created, seed) else {
        return Err(malformed("a field is missing"));
    };
    Ok(PreviousEncryptionKey::from_seed(&seed, created))
}

/// Overwrites the file at `path` with zeros, syncs it, removes it and
/// syncs its directory: what destroying a key means on a file system
/// (copies in backups, snapshots or a journal are beyond its reach). No
/// file: nothing to destroy.
pub fn destroy(path: &Path) -> Result<(), PreviousKeyError> {
    let mut f = match OpenOptions::new().write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io("open", path)(e)),
    };
    let len = f.metadata().map_err(io("inspect", path))?.len();
    let zeros = vec![
        0u8;
        usize::try_from(len)
            .unwrap_or(0)
            .min(MAX_BYTES as usize * 4)
    ];
    f.write_all(&zeros)
        .and_then(|()| f.sync_all())
        .map_err(io("overwrite", path))?;
    drop(f);
    fs::remove_file(path).map_err(io("remove", path))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), PreviousKeyError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("sync", dir))
}
