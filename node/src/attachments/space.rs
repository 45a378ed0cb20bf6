//! Free space for attachment files, against the node's disk reserve.

use comity_protocol::attachment::{chunk_count, chunk_size_for, TAG_BYTES};

use super::error::AttachmentError;
use crate::disk::{Disk, Space};

/// Where free space is measured: the node's [`Disk`], or a fixed figure in
/// tests.
pub trait SpaceSource {
    fn measure(&self) -> std::io::Result<Space>;
}

impl SpaceSource for Disk {
    fn measure(&self) -> std::io::Result<Space> {
        Disk::measure(self)
    }
}

/// Bytes the stored form of an attachment of `size` plaintext bytes takes:
/// each chunk grows by its tag, and the table holds 32 bytes per chunk.
pub fn stored_len(size: u64) -> u64 {
    let chunks = chunk_count(size, chunk_size_for(size));
    size.saturating_add(chunks.saturating_mul(TAG_BYTES as u64 + 32))
}

/// Refuses, as retriable, writing `need` more bytes if that would leave
/// less than the reserve free. A measurement that fails refuses nothing (a
/// disk that is really full shows as a write error).
pub fn ensure_room(space: &dyn SpaceSource, need: u64) -> Result<(), AttachmentError> {
    match space.measure() {
        Ok(s) if s.free_bytes.saturating_sub(need) < s.reserve_bytes || s.free_bytes < need => {
            Err(AttachmentError::NoRoom {
                need,
                free: s.free_bytes,
                reserve: s.reserve_bytes,
            })
        }
        Ok(_) => Ok(()),
        Err(e) => {
            tracing::debug!(error = %e, "cannot measure free space");
            Ok(())
        }
    }
}
