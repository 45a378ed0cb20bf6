//! `comity restore`: a backup written by the node's `POST /v1/backup`
//! (age-encrypted tar, manifest first) put into the empty data directory
//! of a stopped node. Every file is checked against the manifest's length
//! and SHA-256 in a staging directory before anything is moved into place;
//! on any error nothing is left behind.

use std::fs;
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use age::secrecy::SecretString;
use comity_config::Config;
use comity_protocol::backup::{
    member_path_ok, BackupManifest, RestoreMarker, MANIFEST_FORMAT, MANIFEST_NAME,
    MAX_MANIFEST_BYTES, MAX_MANIFEST_FILES, RESTORE_MARKER_NAME,
};
use sha2::{Digest as _, Sha256};

/// What opens the backup.
pub enum RestoreKey {
    Passphrase(SecretString),
    Identity(Box<age::x25519::Identity>),
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("a comityd answers on {}: stop the node before restoring into its data directory", socket.display())]
    Running { socket: PathBuf },
    #[error("the data directory {} is not empty: restore only into an empty (or absent) one", path.display())]
    NotEmpty { path: PathBuf },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{} is encrypted to a passphrase: give --passphrase-file or answer the prompt, not --identity", path.display())]
    WantsPassphrase { path: PathBuf },
    #[error("{} is encrypted to a recipient key: give --identity FILE (the age identity, AGE-SECRET-KEY-1…)", path.display())]
    WantsIdentity { path: PathBuf },
    #[error("cannot decrypt {}: {why}", path.display())]
    Decrypt { path: PathBuf, why: String },
    #[error("the backup is damaged or not a Comity backup: {0}")]
    Archive(String),
    #[error(
        "{member} in the backup does not match its manifest ({why}): the file was altered or cut"
    )]
    Mismatch { member: String, why: String },
    #[error("{} exists and holds another key than the backup's: move it away first", path.display())]
    KeyExists { path: PathBuf },
    #[error("the backup's key file is for node {found}, its manifest names {expected}")]
    WrongNode { expected: String, found: String },
}

fn io_err(path: &Path) -> impl Fn(io::Error) -> RestoreError + '_ {
    move |source| RestoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn archive(why: impl std::fmt::Display) -> RestoreError {
    RestoreError::Archive(why.to_string())
}

/// What a restore put where.
#[derive(Debug)]
pub struct Restored {
    pub manifest: BackupManifest,
    pub data_dir: PathBuf,
    pub key_path: PathBuf,
    /// The configuration file the node had when the backup was taken.
    pub old_config: Option<PathBuf>,
}

/// Whether `dir` is absent or an empty directory.
fn empty_or_absent(dir: &Path) -> Result<bool, RestoreError> {
    match fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(io_err(dir)(e)),
    }
}

fn new_dir(path: &Path) -> Result<(), RestoreError> {
    fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(path)
        .map_err(io_err(path))
}

/// Decrypts `file` with `key` and restores it for the node `config`
/// describes.
pub fn restore(file: &Path, config: &Config, key: RestoreKey) -> Result<Restored, RestoreError> {
    let socket = &config.node.admin_socket;
    if std::os::unix::net::UnixStream::connect(socket).is_ok() {
        return Err(RestoreError::Running {
            socket: socket.clone(),
        });
    }
    let data_dir = config.node.data_dir.clone();
    if !empty_or_absent(&data_dir)? {
        return Err(RestoreError::NotEmpty { path: data_dir });
    }
    let input = fs::File::open(file).map_err(io_err(file))?;
    let decrypt_err = |e: age::DecryptError| RestoreError::Decrypt {
        path: file.to_path_buf(),
        why: match e {
            age::DecryptError::DecryptionFailed
            | age::DecryptError::NoMatchingKeys
            | age::DecryptError::KeyDecryptionFailed => {
                "wrong passphrase or key (or the file is not the one you think)".into()
            }
            other => other.to_string(),
        },
    };
    let decryptor = age::Decryptor::new_buffered(BufReader::with_capacity(1 << 16, input))
        .map_err(decrypt_err)?;
    let plain = match (&key, decryptor.is_scrypt()) {
        (RestoreKey::Passphrase(p), true) => {
            let id = age::scrypt::Identity::new(p.clone());
            decryptor.decrypt(std::iter::once(&id as &dyn age::Identity))
        }
        (RestoreKey::Identity(id), false) => {
            decryptor.decrypt(std::iter::once(&**id as &dyn age::Identity))
        }
        (RestoreKey::Identity(_), true) => {
            return Err(RestoreError::WantsPassphrase {
                path: file.to_path_buf(),
            })
        }
        (RestoreKey::Passphrase(_), false) => {
            return Err(RestoreError::WantsIdentity {
                path: file.to_path_buf(),
            })
        }
    }
    .map_err(decrypt_err)?;

    let created = !data_dir.exists();
    new_dir(&data_dir)?;
    let staging = data_dir.join(".restore");
    let result =
        unpack(plain, &staging).and_then(|manifest| place(&staging, &data_dir, config, manifest));
    let _ = fs::remove_dir_all(&staging);
    if result.is_err() {
        if created {
            let _ = fs::remove_dir_all(&data_dir);
        } else if let Ok(entries) = fs::read_dir(&data_dir) {
            for e in entries.flatten() {
                let _ = fs::remove_dir_all(e.path()).or_else(|_| fs::remove_file(e.path()));
            }
        }
    }
    result
}

/// Reads the archive into `staging`, checking each member against the
/// manifest (first member), in its order.
fn unpack(plain: impl Read, staging: &Path) -> Result<BackupManifest, RestoreError> {
    new_dir(staging)?;
    let mut tar = tar::Archive::new(plain);
    let mut entries = tar.entries().map_err(archive)?;
    let mut first = entries
        .next()
        .ok_or_else(|| archive("the archive is empty"))?
        .map_err(|e| archive(format!("cannot read the archive (a wrong key?): {e}")))?;
    if first.path_bytes().as_ref() != MANIFEST_NAME.as_bytes() || first.size() > MAX_MANIFEST_BYTES
    {
        return Err(archive(format!(
            "its first member is not a {MANIFEST_NAME}"
        )));
    }
    let mut text = Vec::new();
    (&mut first)
        .take(MAX_MANIFEST_BYTES)
        .read_to_end(&mut text)
        .map_err(archive)?;
    let manifest: BackupManifest =
        serde_json::from_slice(&text).map_err(|e| archive(format!("manifest: {e}")))?;
    if manifest.format != MANIFEST_FORMAT {
        return Err(archive(format!(
            "manifest format {:?}, this comity reads {MANIFEST_FORMAT:?}",
            manifest.format
        )));
    }
    if manifest.files.len() > MAX_MANIFEST_FILES {
        return Err(archive(format!(
            "the manifest lists {} files",
            manifest.files.len()
        )));
    }
    for f in &manifest.files {
        if !member_path_ok(&f.path) {
            return Err(archive(format!("the manifest names a file {:?}", f.path)));
        }
        let mut entry = entries
            .next()
            .ok_or_else(|| RestoreError::Mismatch {
                member: f.path.clone(),
                why: "missing from the archive".into(),
            })?
            .map_err(archive)?;
        let mismatch = |why: String| RestoreError::Mismatch {
            member: f.path.clone(),
            why,
        };
        if entry.path_bytes().as_ref() != f.path.as_bytes()
            || entry.header().entry_type() != tar::EntryType::Regular
        {
            return Err(mismatch(format!(
                "the archive has {:?} in its place",
                String::from_utf8_lossy(&entry.path_bytes())
            )));
        }
        if entry.size() != f.len {
            return Err(mismatch(format!(
                "{} bytes, the manifest says {}",
                entry.size(),
                f.len
            )));
        }
        let dst = staging.join(&f.path);
        if let Some(parent) = dst.parent() {
            new_dir(parent)?;
        }
        let mut out = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&dst)
            .map_err(io_err(&dst))?;
        let mut hash = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut got = 0u64;
        loop {
            let n = entry.read(&mut buf).map_err(archive)?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(io_err(&dst))?;
            got += n as u64;
        }
        if got != f.len {
            return Err(mismatch(format!(
                "{got} bytes, the manifest says {}",
                f.len
            )));
        }
        if hex_of(&hash.finalize()) != f.sha256 {
            return Err(mismatch("its SHA-256 differs".into()));
        }
        out.sync_all().map_err(io_err(&dst))?;
    }
    if let Some(extra) = entries.next() {
        let name = extra
            .map(|e| String::from_utf8_lossy(&e.path_bytes()).into_owned())
            .unwrap_or_default();
        return Err(archive(format!(
            "{name:?} follows the files the manifest lists"
        )));
    }
    Ok(manifest)
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Moves the checked files into place: the store into the data
/// directory, the key to the config's key path, the old configuration
/// beside the store for the operator to compare.
fn place(
    staging: &Path,
    data_dir: &Path,
    config: &Config,
    manifest: BackupManifest,
) -> Result<Restored, RestoreError> {
    let key_src = staging.join("keys/identity.key");
    // Either kind of key file: a token node's holds its encryption key
    // only (the token's key is backed up by the token's own means).
    let found = comity_config::node_id_in_key_file(&key_src)
        .map_err(|e| archive(format!("the backup's key file: {e}")))?
        .to_string();
    if found != manifest.node {
        return Err(RestoreError::WrongNode {
            expected: manifest.node.clone(),
            found,
        });
    }
    let key_path = config.node.identity_key.clone();
    // The new key of an identity transition announced before the backup:
    // another one in its place is a key this restore must not hide.
    let next_src = staging.join(comity_protocol::backup::NEXT_IDENTITY_KEY_MEMBER);
    let next_path = comity_config::next_key_path(&key_path);
    let next_kept = next_src.exists() && next_path.exists();
    if next_kept
        && fs::read(&next_path).map_err(io_err(&next_path))?
            != fs::read(&next_src).map_err(io_err(&next_src))?
    {
        return Err(RestoreError::KeyExists { path: next_path });
    }
    if key_path.exists() {
        let same = fs::read(&key_path).map_err(io_err(&key_path))?
            == fs::read(&key_src).map_err(io_err(&key_src))?;
        if !same {
            return Err(RestoreError::KeyExists { path: key_path });
        }
    } else {
        if let Some(parent) = key_path.parent() {
            new_dir(parent)?;
        }
        fs::rename(&key_src, &key_path).map_err(io_err(&key_path))?;
    }
    if next_src.exists() && !next_kept {
        fs::rename(&next_src, &next_path).map_err(io_err(&next_path))?;
    }
    let store = data_dir.join("store");
    fs::rename(staging.join("store"), &store).map_err(io_err(&store))?;
    // The superseded encryption keys of the backup's day.
    let previous = staging.join("keys/previous");
    if previous.exists() {
        let keys = data_dir.join("keys");
        new_dir(&keys)?;
        let to = keys.join("previous");
        fs::rename(&previous, &to).map_err(io_err(&to))?;
    }
    let attachments = staging.join("attachments");
    if attachments.exists() {
        let to = data_dir.join("attachments");
        fs::rename(&attachments, &to).map_err(io_err(&to))?;
    }
    let old = staging.join("config/comity.toml");
    let old_config = if old.exists() {
        let to = data_dir.join("config-at-backup.toml");
        fs::rename(&old, &to).map_err(io_err(&to))?;
        Some(to)
    } else {
        None
    };
    // Read by the node's next start (the restoration statement), so
    // written, and synced, before the directory is.
    let marker_path = data_dir.join(RESTORE_MARKER_NAME);
    let marker = serde_json::to_vec_pretty(&RestoreMarker::of(&manifest))
        .map_err(|e| archive(format!("restore marker: {e}")))?;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&marker_path)
        .and_then(|mut f| {
            f.write_all(&marker)?;
            f.sync_all()
        })
        .map_err(io_err(&marker_path))?;
    for dir in [data_dir.to_path_buf(), store] {
        fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&dir))?;
    }
    Ok(Restored {
        manifest,
        data_dir: data_dir.to_path_buf(),
        key_path,
        old_config,
    })
}
