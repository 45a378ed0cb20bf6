//! Looking at a received attachment without touching it, for listings
//! and retrieval while a transfer may be writing it. Unlike
//! [`AttachmentDir::incoming`], which cuts a partial file back to its
//! resume point (and so must only be called by the transfer itself), these
//! only read: a chunk being written past the point stays as it is.

use comity_protocol::attachment::{AttachmentManifest, CheckedAttachment, ChunkTable};

use super::error::AttachmentError;
use super::layout::{exists, sync_dir, AttachmentDir, IncomingKey};
use super::resume;
use super::stored::{Geometry, StoredAttachment};

/// Where a received attachment stands, from its files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IncomingState {
    /// No chunk table yet.
    NotStarted,
    /// Durable and verified up to the resume point: the chunk needed next,
    /// and the plaintext bytes before it.
    Partial { next_chunk: u64, bytes_done: u64 },
    /// Verified, synced and renamed into place.
    Complete,
}

impl AttachmentDir {
    /// The state of received attachment `key` (whose signed manifest is
    /// `manifest`), read only.
    pub fn incoming_state(
        &self,
        key: &IncomingKey,
        manifest: &AttachmentManifest,
    ) -> Result<IncomingState, AttachmentError> {
        if exists(&self.received_path(key, ""))? {
            return Ok(IncomingState::Complete);
        }
        if !exists(&self.received_path(key, ".table"))? {
            return Ok(IncomingState::NotStarted);
        }
        let g = Geometry::of(manifest);
        let next = resume::load(&self.received_path(key, ".resume"), &manifest.tree_root)?
            .map(|p| p.next_chunk)
            .unwrap_or(0);
        let bytes_done = next.saturating_mul(u64::from(g.chunk_size)).min(g.size);
        Ok(IncomingState::Partial {
            next_chunk: next,
            bytes_done,
        })
    }

    /// Before a receipt names it: checks that received attachment `key` is
    /// complete (its file there, of its stored length) and this
    /// attachment's (its chunk table hashes to the signed root), and makes
    /// its rename into place durable. The transfer syncs the directory
    /// after the rename, but if that sync failed, a later look would find
    /// the file and the receipt could outlive it in a crash. A file of
    /// another manifest (an envelope whose record a crash lost, sent again
    /// with the same id and other content) is refused with
    /// [`AttachmentError::Chunk`]; [`AttachmentDir::discard_received`]
    /// removes it.
    pub fn confirm_received(
        &self,
        key: &IncomingKey,
        attachment: &CheckedAttachment,
    ) -> Result<(), AttachmentError> {
        let stored = StoredAttachment::open(&self.received_path(key, ""), attachment.manifest())?;
        ChunkTable::verify(attachment, &stored.table_bytes()?)?;
        sync_dir(&self.received_dir(key))
    }

    /// Removes received attachment `key`'s complete file, so that it is
    /// received again from its first chunk.
    pub fn discard_received(&self, key: &IncomingKey) -> Result<(), AttachmentError> {
        super::layout::remove_if_present(&self.received_path(key, ""))?;
        sync_dir(&self.received_dir(key))
    }

    /// Received attachment `key`, opened for reading, if it is complete.
    pub fn open_received(
        &self,
        key: &IncomingKey,
        manifest: &AttachmentManifest,
    ) -> Result<Option<StoredAttachment>, AttachmentError> {
        let path = self.received_path(key, "");
        match StoredAttachment::open(&path, manifest) {
            Ok(s) => Ok(Some(s)),
            Err(AttachmentError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}
