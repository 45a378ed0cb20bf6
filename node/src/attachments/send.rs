//! The sender's copy-in: a file read once from any `Read` (a streamed HTTP
//! body), encrypted as it passes, into the node's own durable copy. One
//! chunk in memory, plus the chunk table (32 bytes per chunk, 2 MiB for
//! 64 GiB), which goes at the end of the file.

use std::io::{Read, Write};
use std::path::PathBuf;

use comity_protocol::attachment::{AttachmentLimits, ChunkTable, SealedAttachment, Sealer};

use super::error::{io_at, AttachmentError};
use super::layout::{create_new_private, remove_if_present, sync_dir, AttachmentDir, StoredId};
use super::space::{ensure_room, stored_len, SpaceSource};

/// Bytes written between two syncs of a copy-in. Without them a large
/// file's dirty pages pile up and each sync of the store's own files
/// waits behind their writeback: the p99 of small messages submitted
/// during a 1 GiB upload was 130–250 ms.
const SYNC_EVERY: u64 = 8 << 20;

/// A file copied in: durable under `path` once this exists.
#[derive(Debug)]
pub struct CopiedIn {
    pub id: StoredId,
    pub path: PathBuf,
    /// The manifest for the message and its content key (secret: see the
    /// module documentation for where it is kept).
    pub sealed: SealedAttachment,
}

/// Whether a file of `size` bytes named and media-typed so may be copied
/// in under `limits` (permanent: the rules and the size limits). Checked
/// before anything is claimed or read.
pub fn check_copy_in(
    limits: &AttachmentLimits,
    name: &str,
    media_type: &str,
    size: u64,
) -> Result<(), AttachmentError> {
    Sealer::new(name, media_type, size, limits, &mut rand::rng())?;
    Ok(())
}

impl AttachmentDir {
    /// Copies `size` bytes from `source` into a new sender's copy, named
    /// and media-typed as given. Refused before a byte is read if the
    /// name, type or size breaks `limits` (permanent) or the copy would eat
    /// into the disk reserve (retriable); free space is measured again
    /// before every chunk. Durable (file and directory synced, renamed into
    /// `sent/`) when it returns; on any error nothing is left behind.
    pub fn copy_in(
        &self,
        space: &dyn SpaceSource,
        limits: &AttachmentLimits,
        name: &str,
        media_type: &str,
        size: u64,
        source: impl Read,
    ) -> Result<CopiedIn, AttachmentError> {
        let sealer = Sealer::new(name, media_type, size, limits, &mut rand::rng())?;
        let need = stored_len(size);
        ensure_room(space, need)?;
        let id = StoredId::random();
        let staging = self.staging().join(format!("{id}.part"));
        let result = self.copy_into(&staging, sealer, space, need, size, source);
        let sealed = match result {
            Ok(sealed) => sealed,
            Err(e) => {
                if let Err(cleanup) = remove_if_present(&staging) {
                    tracing::warn!(error = %cleanup, "cannot remove a failed copy-in");
                }
                return Err(e);
            }
        };
        let path = self.sent_path(id);
        std::fs::rename(&staging, &path).map_err(io_at("renaming", &staging))?;
        sync_dir(&self.sent())?;
        Ok(CopiedIn { id, path, sealed })
    }

    fn copy_into(
        &self,
        staging: &std::path::Path,
        mut sealer: Sealer,
        space: &dyn SpaceSource,
        need: u64,
        size: u64,
        mut source: impl Read,
    ) -> Result<SealedAttachment, AttachmentError> {
        let mut file = create_new_private(staging)?;
        let mut leaves = Vec::new();
        let mut read = 0u64;
        let mut written = 0u64;
        let mut synced = 0u64;
        while let Some((_, len)) = sealer.next_chunk() {
            ensure_room(space, need.saturating_sub(written))?;
            let mut chunk = vec![0u8; len];
            let got = fill(&mut source, &mut chunk).map_err(io_at("reading", staging))?;
            read = read.saturating_add(got as u64);
            if got < len {
                return Err(AttachmentError::SourceShort {
                    expected: size,
                    got: read,
                });
            }
            let sealed = sealer.seal_chunk(chunk)?;
            file.write_all(&sealed.ciphertext)
                .map_err(io_at("writing", staging))?;
            written = written.saturating_add(sealed.ciphertext.len() as u64);
            leaves.push(sealed.leaf);
            if written - synced >= SYNC_EVERY {
                // The cache is kept: the transfer reads the file next.
                file.sync_data().map_err(io_at("syncing", staging))?;
                synced = written;
            }
        }
        if fill(&mut source, &mut [0u8; 1]).map_err(io_at("reading", staging))? > 0 {
            return Err(AttachmentError::SourceLong { expected: size });
        }
        file.write_all(&ChunkTable::encode(&leaves))
            .map_err(io_at("writing", staging))?;
        file.sync_all().map_err(io_at("syncing", staging))?;
        Ok(sealer.finish()?)
    }
}

/// Reads until `buf` is full or the source ends; returns the bytes read.
fn fill(source: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut at = 0;
    while at < buf.len() {
        match source.read(&mut buf[at..]) {
            Ok(0) => break,
            Ok(n) => at += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(at)
}
