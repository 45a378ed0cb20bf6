//! The stored form of an attachment, the same on both sides: the
//! ciphertext chunks end to end (chunk `i` at `i × (chunk_size + 16)`), then
//! the chunk table (32 bytes per chunk). Any chunk is one seek away, which
//! is what lets a transfer resume at any chunk.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use comity_protocol::attachment::{
    check_attachments, chunk_count, chunk_len, AttachmentLimits, AttachmentManifest,
    CheckedAttachment, ChunkTable, Opener, SealedAttachment, TAG_BYTES,
};
use comity_protocol::message::MessageKind;

use super::error::{io_at, AttachmentError};
use super::space::stored_len;

/// Where the parts of an attachment's stored form begin and end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub size: u64,
    pub chunk_size: u32,
    pub chunks: u64,
}

impl Geometry {
    pub fn of(m: &AttachmentManifest) -> Self {
        Geometry {
            size: m.size,
            chunk_size: m.chunk_size,
            chunks: chunk_count(m.size, m.chunk_size),
        }
    }

    /// Offset of ciphertext chunk `index` (every chunk before it is full).
    pub fn chunk_offset(&self, index: u64) -> u64 {
        index.saturating_mul(u64::from(self.chunk_size) + TAG_BYTES as u64)
    }

    /// Ciphertext length of chunk `index`, or `None` past the last.
    pub fn chunk_ciphertext_len(&self, index: u64) -> Option<usize> {
        chunk_len(self.size, self.chunk_size, index).map(|n| n + TAG_BYTES)
    }

    /// Where the ciphertext ends and the table begins.
    pub fn ciphertext_len(&self) -> u64 {
        self.size
            .saturating_add(self.chunks.saturating_mul(TAG_BYTES as u64))
    }

    pub fn table_len(&self) -> u64 {
        self.chunks.saturating_mul(32)
    }

    pub fn stored_len(&self) -> u64 {
        stored_len(self.size)
    }
}

/// A complete stored attachment, opened for reading.
#[derive(Debug)]
pub struct StoredAttachment {
    file: File,
    path: PathBuf,
    geometry: Geometry,
}

impl StoredAttachment {
    /// Opens the file at `path` stored for `manifest`; refuses one whose
    /// length is not exactly the stored length of that manifest.
    pub fn open(path: &Path, manifest: &AttachmentManifest) -> Result<Self, AttachmentError> {
        let file = File::open(path).map_err(io_at("opening", path))?;
        let geometry = Geometry::of(manifest);
        let len = file.metadata().map_err(io_at("reading", path))?.len();
        if len != geometry.stored_len() {
            return Err(AttachmentError::Corrupt {
                path: path.to_path_buf(),
                problem: format!(
                    "{len} bytes, but an attachment of {} bytes is stored in {}",
                    geometry.size,
                    geometry.stored_len()
                ),
            });
        }
        Ok(StoredAttachment {
            file,
            path: path.to_path_buf(),
            geometry,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn chunk_count(&self) -> u64 {
        self.geometry.chunks
    }

    /// Ciphertext chunk `index`, as the transfer sends it.
    pub fn read_chunk(&self, index: u64) -> Result<Vec<u8>, AttachmentError> {
        let len = self
            .geometry
            .chunk_ciphertext_len(index)
            .ok_or(AttachmentError::Corrupt {
                path: self.path.clone(),
                problem: format!(
                    "chunk {index} asked for, but there are {} chunks",
                    self.geometry.chunks
                ),
            })?;
        let mut buf = vec![0u8; len];
        self.file
            .read_exact_at(&mut buf, self.geometry.chunk_offset(index))
            .map_err(io_at("reading", &self.path))?;
        Ok(buf)
    }

    /// An opener of this file's chunks: its own chunk table, checked
    /// against `attachment`'s signed root first.
    pub fn opener(&self, attachment: &CheckedAttachment) -> Result<Opener, AttachmentError> {
        let table = ChunkTable::verify(attachment, &self.table_bytes()?)?;
        Ok(Opener::new(attachment, table)?)
    }

    /// The chunk table (leaf hashes), as the receiver gets it first.
    pub fn table_bytes(&self) -> Result<Vec<u8>, AttachmentError> {
        let len =
            usize::try_from(self.geometry.table_len()).map_err(|_| AttachmentError::Corrupt {
                path: self.path.clone(),
                problem: "the chunk table does not fit in memory".into(),
            })?;
        let mut buf = vec![0u8; len];
        self.file
            .read_exact_at(&mut buf, self.geometry.ciphertext_len())
            .map_err(io_at("reading", &self.path))?;
        Ok(buf)
    }
}

/// Attachment `index` of a message of `kind` with attachments `sealed`,
/// the manifests checked again against the protocol's widest limits: a
/// store written by another version must not bypass the rules, and a
/// stricter configuration since must not lock away what was accepted
/// under the limits of its day.
pub fn checked_again(
    kind: MessageKind,
    sealed: Vec<SealedAttachment>,
    index: usize,
) -> Result<CheckedAttachment, AttachmentError> {
    let mut all = check_attachments(kind, sealed, &AttachmentLimits::ceiling())?;
    if index >= all.len() {
        return Err(AttachmentError::Corrupt {
            path: PathBuf::new(),
            problem: format!("no attachment {index}: the message has {}", all.len()),
        });
    }
    Ok(all.swap_remove(index))
}
