//! How an attachment is cut into chunks.
//!
//! The chunk size is a function of the size alone, so the same file always
//! has the same chunk tree root whoever sends it, and a manifest has one
//! valid chunk size. 1 MiB for large files: one chunk fits in quinn's
//! default stream receive window (1.25 MB), so a resume re-sends at most
//! one window plus one partial chunk, and the leaf hashes of a 64 GiB file
//! are 65,536 × 32 B = 2 MiB. 64 KiB for files up to 64 MiB, so small
//! files still have several chunks (at most 1,024 leaves, 32 KiB).
//! Both are multiples of SHA-256's 64-byte block, which is what lets the
//! whole-file digest be carried across a resume as a midstate.

/// Chunk size of attachments up to [`SMALL_CHUNK_MAX_SIZE`] bytes.
pub const SMALL_CHUNK_BYTES: u32 = 64 * 1024;
/// Chunk size of larger attachments.
pub const LARGE_CHUNK_BYTES: u32 = 1024 * 1024;
/// The largest attachment chunked with [`SMALL_CHUNK_BYTES`].
pub const SMALL_CHUNK_MAX_SIZE: u64 = 64 * 1024 * 1024;

/// The chunk size an attachment of `size` bytes must use.
pub fn chunk_size_for(size: u64) -> u32 {
    if size <= SMALL_CHUNK_MAX_SIZE {
        SMALL_CHUNK_BYTES
    } else {
        LARGE_CHUNK_BYTES
    }
}

/// Number of chunks: `ceil(size / chunk_size)`, and one (empty) chunk for
/// an empty attachment, so that even an empty attachment ends with an
/// authenticated last chunk and cannot be confused with a truncated one.
pub fn chunk_count(size: u64, chunk_size: u32) -> u64 {
    let chunk = u64::from(chunk_size.max(1));
    size.div_ceil(chunk).max(1)
}

/// Plaintext length of chunk `index`, or `None` past the last chunk.
/// Every chunk but the last is full.
pub fn chunk_len(size: u64, chunk_size: u32, index: u64) -> Option<usize> {
    let count = chunk_count(size, chunk_size);
    if index >= count {
        return None;
    }
    let chunk = u64::from(chunk_size.max(1));
    let start = index * chunk;
    let len = (size - start).min(chunk);
    usize::try_from(len).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_lengths() {
        let c = SMALL_CHUNK_BYTES;
        assert_eq!(chunk_count(0, c), 1);
        assert_eq!(chunk_len(0, c, 0), Some(0));
        assert_eq!(chunk_len(0, c, 1), None);
        assert_eq!(chunk_count(1, c), 1);
        assert_eq!(chunk_count(u64::from(c), c), 1);
        assert_eq!(chunk_len(u64::from(c), c, 0), Some(c as usize));
        assert_eq!(chunk_count(u64::from(c) + 1, c), 2);
        assert_eq!(chunk_len(u64::from(c) + 1, c, 1), Some(1));
        assert_eq!(chunk_size_for(SMALL_CHUNK_MAX_SIZE), SMALL_CHUNK_BYTES);
        assert_eq!(chunk_size_for(SMALL_CHUNK_MAX_SIZE + 1), LARGE_CHUNK_BYTES);
        let big = 64u64 << 30;
        assert_eq!(chunk_count(big, chunk_size_for(big)), 65_536);
    }
}
