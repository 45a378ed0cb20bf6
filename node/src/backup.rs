//! A backup of the running node: a consistent copy of the store (see
//! `store::snapshot`) with its identity key and configuration file, as a
//! tar archive (manifest first) encrypted with age to a passphrase or an
//! operator's X25519 recipient — it holds the node's secret key.
//!
//! Writes pause only for the local copy into a temporary directory inside
//! the data directory; hashing, archiving and encrypting read that copy.
//! Attachment files are not copied but hard-linked into it (they never
//! change once in place): the sender's copies and the complete received
//! ones. Partial received files are left out: after a restore their
//! transfers start again from the first chunk.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use age::secrecy::SecretString;
use comity_protocol::backup::{BackupManifest, ManifestFile, MANIFEST_FORMAT, MANIFEST_NAME};
use comity_protocol::Timestamp;
use sha2::{Digest as _, Sha256};

use crate::audit::AuditError;
use crate::node::Node;

/// Prefix of the temporary copy's directory in the data directory.
const TEMP_PREFIX: &str = ".backup-";

/// The scrypt work factor of a passphrase backup (N = 2^18: 256 MiB and
/// about a second, age's own choice on a machine of this class; fixed so
/// the node's memory does not depend on a timing it measures).
const SCRYPT_LOG_N: u8 = 18;

/// Largest configuration or key file put in a backup.
const MAX_SMALL_FILE: u64 = 1 << 20;

/// Whom the backup is encrypted to.
pub enum BackupKey {
    Passphrase(SecretString),
    Recipient(Box<age::x25519::Recipient>),
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("{path} is larger than {MAX_SMALL_FILE} bytes: not a configuration or key file")]
    TooLarge { path: String },
    #[error("superseded encryption keys: {0}")]
    Keys(#[from] crate::keys::PreviousKeyError),
    #[error("the backup task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("encrypting the backup: {0}")]
    Encrypt(String),
    #[error("writing the backup: {0}")]
    Write(io::Error),
}

fn io_err(path: &Path) -> impl Fn(io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// A copy taken and described, ready to be archived; removed when dropped.
pub struct Prepared {
    dir: tempfile::TempDir,
    pub manifest: BackupManifest,
}

/// Removes copies left by a backup that did not finish (the node stopped
/// during one). Call only while no backup runs.
fn remove_stale(data_dir: &Path) {
    let Ok(entries) = fs::read_dir(data_dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            if let Err(err) = fs::remove_dir_all(e.path()) {
                tracing::warn!(path = %e.path().display(), error = %err, "cannot remove an old backup copy");
            }
        }
    }
}

/// Copies the store (writes paused meanwhile), the key file and the
/// configuration file (`config_path`, if the node has one) and hashes them.
/// Only one backup at a time: the caller serialises.
pub async fn prepare(node: &Node, config_path: Option<&Path>) -> Result<Prepared, BackupError> {
    // The store, the key file and the announced key's file as of one
    // moment: no rotation or identity switch between them.
    let _keys = node.keys_steady().await;
    let data_dir = node.config().node.data_dir.clone();
    remove_stale(&data_dir);
    let dir = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .tempdir_in(&data_dir)
        .map_err(io_err(&data_dir))?;
    let snapshot = node.audit().snapshot(dir.path().join("store")).await?;
    let mut members: Vec<String> = snapshot
        .files
        .iter()
        .map(|f| format!("store/{}", f.path.display()))
        .collect();
    let key = node.config().node.identity_key.clone();
    let config = config_path.map(Path::to_path_buf);
    let root = dir.path().to_path_buf();
    let attachments = data_dir.join("attachments");
    let previous = crate::keys::previous::dir(&data_dir);
    let files = tokio::task::spawn_blocking(move || {
        // After the store's copy: every file it names is here already (a
        // file is in place before any record names it).
        link_attachments(&attachments, &root, &mut members)?;
        copy_small(&key, &root, "keys/identity.key")?;
        members.push("keys/identity.key".into());
        // The new identity key of an announced transition, which the
        // store's statement names.
        let next = comity_config::next_key_path(&key);
        if next.exists() {
            copy_small(
                &next,
                &root,
                comity_protocol::backup::NEXT_IDENTITY_KEY_MEMBER,
            )?;
            members.push(comity_protocol::backup::NEXT_IDENTITY_KEY_MEMBER.into());
        }
        // The superseded encryption keys still in their grace period, so
        // that a restored node opens what peers sealed to them.
        for (name, path) in crate::keys::previous::files(&previous)? {
            let member = format!("keys/previous/{name}");
            match copy_small(&path, &root, &member) {
                Ok(()) => members.push(member),
                // Destroyed meanwhile: its grace period ended.
                Err(BackupError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        if let Some(c) = config {
            copy_small(&c, &root, "config/comity.toml")?;
            members.push("config/comity.toml".into());
        }
        members
            .into_iter()
            .map(|m| describe(&root, m))
            .collect::<Result<Vec<_>, _>>()
    })
    .await??;
    let manifest = BackupManifest {
        format: MANIFEST_FORMAT.into(),
        node: node.id().to_string(),
        country: node.config().node.country.as_str().to_string(),
        created_ms: Timestamp::now().0,
        store_format: crate::store::version::CURRENT,
        audit_size: snapshot.size,
        checkpoint: snapshot.note,
        paused_ms: u64::try_from(snapshot.paused.as_millis()).unwrap_or(u64::MAX),
        files,
    };
    Ok(Prepared { dir, manifest })
}

/// Links the attachment files that never change any more into the copy,
/// as `attachments/sent/ID` and `attachments/received/PEER/MESSAGE/N`.
fn link_attachments(
    from: &Path,
    root: &Path,
    members: &mut Vec<String>,
) -> Result<(), BackupError> {
    let is_hex = |name: &str| !name.is_empty() && name.bytes().all(|b| b.is_ascii_hexdigit());
    let mut link = |src: &Path, member: String| -> Result<(), BackupError> {
        let dst = root.join(&member);
        private_parent(&dst)?;
        if fs::hard_link(src, &dst).is_err() {
            fs::copy(src, &dst).map_err(io_err(src))?;
        }
        members.push(member);
        Ok(())
    };
    for (name, path) in entries(&from.join("sent"))? {
        if is_hex(&name) && path.is_file() {
            link(&path, format!("attachments/sent/{name}"))?;
        }
    }
    for (peer, peer_dir) in entries(&from.join("received"))? {
        if !is_hex(&peer) {
            continue;
        }
        for (message, message_dir) in entries(&peer_dir)? {
            if !is_hex(&message) {
                continue;
            }
            for (n, path) in entries(&message_dir)? {
                // Complete ones only: `N`, not `N.part` and the like.
                if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && path.is_file() {
                    link(&path, format!("attachments/received/{peer}/{message}/{n}"))?;
                }
            }
        }
    }
    Ok(())
}

/// A directory's entries as (name, path), sorted; none if it is absent.
fn entries(dir: &Path) -> Result<Vec<(String, PathBuf)>, BackupError> {
    let read = match fs::read_dir(dir) {
        Ok(r) => r,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(dir)(e)),
    };
    let mut all = Vec::new();
    for e in read {
        let e = e.map_err(io_err(dir))?;
        if let Some(name) = e.file_name().to_str() {
            all.push((name.to_string(), e.path()));
        }
    }
    all.sort();
    Ok(all)
}

/// Creates the directories above `path` in the copy (0700).
fn private_parent(path: &Path) -> Result<(), BackupError> {
    match path.parent() {
        Some(parent) => fs::DirBuilder::new()
            .mode(0o700)
            .recursive(true)
            .create(parent)
            .map_err(io_err(parent)),
        None => Ok(()),
    }
}

/// Copies a configuration or key file into the copy (0600).
fn copy_small(src: &Path, root: &Path, member: &str) -> Result<(), BackupError> {
    let dst = root.join(member);
    private_parent(&dst)?;
    let mut bytes = Vec::new();
    fs::File::open(src)
        .map_err(io_err(src))?
        .take(MAX_SMALL_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err(src))?;
    if bytes.len() as u64 > MAX_SMALL_FILE {
        return Err(BackupError::TooLarge {
            path: src.display().to_string(),
        });
    }
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&dst)
        .and_then(|mut f| f.write_all(&bytes))
        .map_err(io_err(&dst))
}

fn describe(root: &Path, member: String) -> Result<ManifestFile, BackupError> {
    let path = root.join(&member);
    let mut file = fs::File::open(&path).map_err(io_err(&path))?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut len = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(io_err(&path))?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        len += n as u64;
    }
    Ok(ManifestFile {
        path: member,
        len,
        sha256: hex::encode(hash.finalize()),
    })
}

impl Prepared {
    /// Writes the encrypted archive to `out`: the manifest, then every file
    /// it lists, in its order. Blocking; streams (nothing is held whole).
    pub fn write(&self, key: BackupKey, out: impl Write) -> Result<(), BackupError> {
        let encryptor = match key {
            BackupKey::Passphrase(p) => {
                let mut r = age::scrypt::Recipient::new(p);
                r.set_work_factor(SCRYPT_LOG_N);
                age::Encryptor::with_recipients(std::iter::once(&r as &dyn age::Recipient))
            }
            BackupKey::Recipient(r) => {
                age::Encryptor::with_recipients(std::iter::once(&*r as &dyn age::Recipient))
            }
        }
        .map_err(|e| BackupError::Encrypt(e.to_string()))?;
        let sealed = encryptor.wrap_output(out).map_err(BackupError::Write)?;
        let mut tar = tar::Builder::new(sealed);
        let mtime = self.manifest.created_ms / 1000;
        let manifest =
            serde_json::to_vec_pretty(&self.manifest).map_err(|e| BackupError::Write(e.into()))?;
        append(
            &mut tar,
            MANIFEST_NAME,
            manifest.len() as u64,
            mtime,
            &manifest[..],
        )?;
        for f in &self.manifest.files {
            let path = self.dir.path().join(&f.path);
            let file = fs::File::open(&path).map_err(io_err(&path))?;
            // Exactly the length hashed: the copy is ours and does not change.
            append(&mut tar, &f.path, f.len, mtime, file.take(f.len))?;
        }
        let sealed = tar.into_inner().map_err(BackupError::Write)?;
        sealed
            .finish()
            .map_err(BackupError::Write)?
            .flush()
            .map_err(BackupError::Write)
    }

    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    len: u64,
    mtime: u64,
    data: impl Read,
) -> Result<(), BackupError> {
    let mut h = tar::Header::new_ustar();
    h.set_size(len);
    h.set_mode(0o600);
    h.set_mtime(mtime);
    h.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut h, path, data)
        .map_err(BackupError::Write)
}
