//! The manifest of a node's backup: the first member (`manifest.json`) of
//! the tar archive inside the age-encrypted backup file. The node writes
//! it; `comity restore` checks every file against it before using any.

use serde::{Deserialize, Serialize};

/// `format` of this manifest.
pub const MANIFEST_FORMAT: &str = "comity-backup/1";

/// Name of the manifest in the archive (always its first member).
pub const MANIFEST_NAME: &str = "manifest.json";

/// Largest manifest a restore reads (about 250 bytes per attachment file).
pub const MAX_MANIFEST_BYTES: u64 = 64 << 20;

/// Largest number of files a manifest may list: the store's, and one per
/// attachment sent or received.
pub const MAX_MANIFEST_FILES: usize = 250_000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupManifest {
    pub format: String,
    /// The node's id (printable).
    pub node: String,
    pub country: String,
    /// When the copy was taken, ms since the epoch.
    pub created_ms: u64,
    /// The store's format version (see the node's store module).
    pub store_format: u32,
    /// Entries of the audit log in the backup: its last checkpoint's size.
    pub audit_size: u64,
    /// That checkpoint, as signed (C2SP signed note).
    pub checkpoint: String,
    /// How long the node's writes were stopped for the copy.
    pub paused_ms: u64,
    pub files: Vec<ManifestFile>,
}

/// One member of the archive after the manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestFile {
    /// Relative path in the archive: `config/…`, `keys/…` or `store/…`.
    pub path: String,
    pub len: u64,
    /// SHA-256 of its bytes, hex.
    pub sha256: String,
}

/// The file `comity restore` leaves in the data directory: the node's next
/// start reads it, records the restoration in its audit log and presents
/// its witnesses a signed restoration statement
/// ([`crate::audit::restoration`]), then removes it.
pub const RESTORE_MARKER_NAME: &str = "restored-from-backup.json";

/// `format` of the marker.
pub const RESTORE_MARKER_FORMAT: &str = "comity-restore-marker/1";

/// Largest marker a node reads.
pub const MAX_RESTORE_MARKER_BYTES: u64 = 64 * 1024;

/// What the restored store ends at, from the backup's manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreMarker {
    pub format: String,
    /// The node's id (printable).
    pub node: String,
    /// When the backup was taken, ms since the epoch.
    pub backup_created_ms: u64,
    /// The size of the restored audit log (its last checkpoint's).
    pub audit_size: u64,
    /// That checkpoint, as signed.
    pub checkpoint: String,
}

impl RestoreMarker {
    pub fn of(manifest: &BackupManifest) -> RestoreMarker {
        RestoreMarker {
            format: RESTORE_MARKER_FORMAT.to_string(),
            node: manifest.node.clone(),
            backup_created_ms: manifest.created_ms,
            audit_size: manifest.audit_size,
            checkpoint: manifest.checkpoint.clone(),
        }
    }
}

/// Whether `path` is a safe relative member name: `/`-separated plain
/// components under one of the archive's three top directories.
/// The member holding the new identity key of a transition the node had
/// announced, when there is one (beside `keys/identity.key`).
pub const NEXT_IDENTITY_KEY_MEMBER: &str = "keys/identity.next.key";

pub fn member_path_ok(path: &str) -> bool {
    let mut parts = path.split('/');
    let top_ok = matches!(
        parts.next(),
        Some("attachments" | "config" | "keys" | "store")
    );
    let mut n = 0;
    let rest_ok = parts.all(|p| {
        n += 1;
        !p.is_empty()
            && p != "."
            && p != ".."
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    });
    top_ok && rest_ok && n > 0 && path.len() <= 255
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_paths() {
        assert!(member_path_ok("store/sled/db"));
        assert!(member_path_ok("keys/identity.key"));
        assert!(member_path_ok("attachments/sent/00ff"));
        assert!(!member_path_ok("attachments/../keys/x"));
        assert!(!member_path_ok("store/../keys/x"));
        assert!(!member_path_ok("/etc/passwd"));
        assert!(!member_path_ok("store"));
        assert!(!member_path_ok("store//x"));
        assert!(!member_path_ok("other/x"));
    }
}
