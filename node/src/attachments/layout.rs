//! Where attachment files live, and the file-system steps every writer
//! here uses: private directories and files, and syncing a directory so a
//! rename in it survives a crash.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use comity_protocol::{MessageId, NodeId};
use rand::RngCore;

use super::error::{io_at, AttachmentError};

/// `data/attachments/` and its three parts.
#[derive(Clone, Debug)]
pub struct AttachmentDir {
    root: PathBuf,
}

/// The name of a sender's copy: random, so two sends of the same file (with
/// different keys, so different ciphertexts) never meet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, bincode::Encode, bincode::Decode)]
pub struct StoredId(pub [u8; 16]);

impl StoredId {
    pub fn random() -> Self {
        let mut b = [0u8; 16];
        rand::rng().fill_bytes(&mut b);
        StoredId(b)
    }
}

impl std::fmt::Display for StoredId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// A stored id that is not 32 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an attachment id (32 hex digits, as the upload answered)")]
pub struct ParseStoredIdError(pub String);

impl std::str::FromStr for StoredId {
    type Err = ParseStoredIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut b = [0u8; 16];
        hex::decode_to_slice(s, &mut b)
            .map_err(|_| ParseStoredIdError(s.escape_debug().to_string()))?;
        Ok(StoredId(b))
    }
}

/// Which received attachment: a message is named by (peer, id) everywhere,
/// and an attachment by its index in that message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IncomingKey {
    pub peer: NodeId,
    pub message: MessageId,
    pub index: usize,
}

impl AttachmentDir {
    /// Opens (creating, 0700) `data_dir/attachments` and removes what a
    /// copy-in left in staging when the node stopped during it: no message
    /// names such a file, since `send` never returned. Call at start-up,
    /// before any copy-in.
    pub fn open(data_dir: &Path) -> Result<Self, AttachmentError> {
        let dir = AttachmentDir {
            root: data_dir.join("attachments"),
        };
        for d in [dir.staging(), dir.sent(), dir.root.join("received")] {
            create_private_dir(&d)?;
        }
        let staging = dir.staging();
        for entry in fs::read_dir(&staging).map_err(io_at("reading", &staging))? {
            let path = entry.map_err(io_at("reading", &staging))?.path();
            fs::remove_file(&path).map_err(io_at("removing", &path))?;
        }
        Ok(dir)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub(super) fn staging(&self) -> PathBuf {
        self.root.join("staging")
    }

    pub(super) fn sent(&self) -> PathBuf {
        self.root.join("sent")
    }

    /// Every sender's copy in `sent/` and when it was last written; files
    /// not named by a stored id are not ours and are left alone.
    pub fn sent_copies(&self) -> Result<Vec<(StoredId, std::time::SystemTime)>, AttachmentError> {
        let sent = self.sent();
        let mut out = Vec::new();
        for entry in fs::read_dir(&sent).map_err(io_at("reading", &sent))? {
            let entry = entry.map_err(io_at("reading", &sent))?;
            let Some(id) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            let written = entry
                .metadata()
                .and_then(|m| m.modified())
                .map_err(io_at("reading", &entry.path()))?;
            out.push((id, written));
        }
        Ok(out)
    }

    /// The sender's copy named `id`.
    pub fn sent_path(&self, id: StoredId) -> PathBuf {
        self.sent().join(id.to_string())
    }

    /// The directory of one received message's attachments.
    pub(super) fn received_dir(&self, key: &IncomingKey) -> PathBuf {
        self.root
            .join("received")
            .join(hex::encode(key.peer.0))
            .join(hex::encode(key.message.0))
    }

    /// Removes every file of `peer`'s message `message` (complete or not):
    /// a message given up on. The path is made of hex alone.
    pub fn remove_received_message(
        &self,
        peer: &NodeId,
        message: &MessageId,
    ) -> Result<(), AttachmentError> {
        let key = IncomingKey {
            peer: *peer,
            message: *message,
            index: 0,
        };
        let dir = self.received_dir(&key);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_at("removing", &dir)(e)),
        }
    }

    /// A received attachment's file with `suffix` (`""` for the complete
    /// file, `.part`, `.table`, `.resume`).
    pub(super) fn received_path(&self, key: &IncomingKey, suffix: &str) -> PathBuf {
        self.received_dir(key)
            .join(format!("{}{suffix}", key.index))
    }
}

/// Creates `dir` and its missing parents, 0700.
pub(super) fn create_private_dir(dir: &Path) -> Result<(), AttachmentError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_at("creating", dir))
}

/// Creates a new file, 0600, failing if anything (a link included) is there.
pub(super) fn create_new_private(path: &Path) -> Result<File, AttachmentError> {
    OpenOptions::new()
        .write(true)
        .read(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => AttachmentError::Exists {
                path: path.to_path_buf(),
            },
            _ => io_at("creating", path)(e),
        })
}

/// Opens an existing file of ours for reading and writing (no links).
pub(super) fn open_private(path: &Path) -> Result<File, AttachmentError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(io_at("opening", path))
}

/// Asks the kernel to drop the cached pages of `file`'s first `len`
/// bytes, which must be synced (clean). An attachment is written once and
/// read rarely: without this, a large transfer fills the page cache with
/// it, evicting the store's pages, and every new page it writes is one
/// the machine has to find. Advice only: an error is ignored.
pub(super) fn drop_cached(file: &File, len: u64) {
    use std::os::fd::AsRawFd;
    // A length of 0 would mean "to the end of the file".
    let Ok(len) = libc::off_t::try_from(len) else {
        return;
    };
    if len == 0 {
        return;
    }
    // SAFETY: posix_fadvise(2) takes a file descriptor (valid: `file` is
    // borrowed for the call) and two integers; it reads or writes no
    // memory of ours, and at worst returns an error.
    #[allow(unsafe_code)]
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), 0, len, libc::POSIX_FADV_DONTNEED);
    }
}

/// Makes the entries of `dir` (a rename, a new file) durable.
pub(super) fn sync_dir(dir: &Path) -> Result<(), AttachmentError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_at("syncing", dir))
}

/// `path` if it exists, `None` if not (any other error is an error).
pub(super) fn exists(path: &Path) -> Result<bool, AttachmentError> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_at("reading", path)(e)),
    }
}

/// Removes `path` if it exists.
pub(super) fn remove_if_present(path: &Path) -> Result<(), AttachmentError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_at("removing", path)(e)),
    }
}
