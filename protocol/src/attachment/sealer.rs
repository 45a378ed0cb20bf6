//! The sender's state machine: plaintext chunks in, ciphertext chunks out.

use rand::{CryptoRng, RngCore};

use super::stream::ChunkCipher;
use super::{
    check_media_type, check_name, chunk_count, chunk_len, chunk_size_for, escaped,
    AttachmentLimits, AttachmentManifest, ChunkError, ContentKey, InvalidAttachment,
    SealedAttachment, WholeFileDigest,
};
use crate::audit::merkle::Frontier;
use crate::digest::Digest;

/// One chunk as it leaves the sealer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedChunk {
    pub index: u64,
    pub last: bool,
    /// The chunk's leaf hash, for the chunk table the receiver gets first.
    pub leaf: Digest,
    /// Ciphertext and tag: `len + TAG_BYTES` bytes.
    pub ciphertext: Vec<u8>,
}

/// Encrypts one attachment chunk by chunk while computing its chunk tree and
/// whole-file digest, so the sender reads and encrypts the file once, while
/// copying it in. Holds one chunk at most (the caller's) and O(log n)
/// hashes. The size is declared up front: it fixes the chunk size and which
/// chunk is the last.
pub struct Sealer {
    name: String,
    media_type: String,
    size: u64,
    chunk_size: u32,
    count: u64,
    next: u64,
    key: ContentKey,
    cipher: ChunkCipher,
    tree: Frontier,
    whole: WholeFileDigest,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("size", &self.size)
            .field("next", &self.next)
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

impl Sealer {
    /// Checks name, media type and size (against the per-attachment limit)
    /// before a byte is read, and draws a fresh content key from `rng`.
    pub fn new<R: CryptoRng + RngCore>(
        name: &str,
        media_type: &str,
        size: u64,
        limits: &AttachmentLimits,
        rng: &mut R,
    ) -> Result<Self, InvalidAttachment> {
        check_name(name).map_err(|rule| InvalidAttachment::BadName {
            index: 0,
            name: escaped(name),
            rule,
        })?;
        check_media_type(media_type).map_err(|rule| InvalidAttachment::BadMediaType {
            index: 0,
            media_type: escaped(media_type),
            rule,
        })?;
        let max = limits
            .max_attachment_bytes
            .min(AttachmentLimits::ceiling().max_attachment_bytes);
        if size > max {
            return Err(InvalidAttachment::TooLarge {
                index: 0,
                size,
                max,
            });
        }
        let chunk_size = chunk_size_for(size);
        let key = ContentKey::generate(rng);
        Ok(Sealer {
            name: name.to_owned(),
            media_type: media_type.to_owned(),
            size,
            chunk_size,
            count: chunk_count(size, chunk_size),
            next: 0,
            cipher: ChunkCipher::new(&key),
            key,
            tree: Frontier::new(),
            whole: WholeFileDigest::new(),
        })
    }

    /// The next chunk to seal and its plaintext length, or `None` when all
    /// are sealed.
    pub fn next_chunk(&self) -> Option<(u64, usize)> {
        chunk_len(self.size, self.chunk_size, self.next).map(|len| (self.next, len))
    }

    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    pub fn chunk_count(&self) -> u64 {
        self.count
    }

    /// Seals the next chunk in place: `plaintext` must be exactly the
    /// length [`Self::next_chunk`] names. On error nothing changes.
    pub fn seal_chunk(&mut self, mut plaintext: Vec<u8>) -> Result<SealedChunk, ChunkError> {
        let index = self.next;
        let Some(expected) = chunk_len(self.size, self.chunk_size, index) else {
            return Err(ChunkError::AfterLast {
                count: self.count,
                got: index,
            });
        };
        ChunkError::check_len(index, expected, plaintext.len())?;
        let leaf = super::chunk_leaf_hash(&plaintext);
        let last = index + 1 == self.count;
        let mut tree = self.tree.clone();
        tree.push(leaf).map_err(|_| ChunkError::AfterLast {
            count: self.count,
            got: index,
        })?;
        let mut whole = self.whole.clone();
        whole.update(&plaintext);
        // A 32-bit index is guaranteed by the size limit; the cipher
        // refuses anything else rather than wrap.
        self.cipher
            .seal(index, last, &mut plaintext)
            .map_err(|_| ChunkError::AfterLast {
                count: self.count,
                got: index,
            })?;
        self.tree = tree;
        self.whole = whole;
        self.next += 1;
        Ok(SealedChunk {
            index,
            last,
            leaf,
            ciphertext: plaintext,
        })
    }

    /// The manifest and key, once every chunk is sealed.
    pub fn finish(self) -> Result<SealedAttachment, ChunkError> {
        if self.next < self.count {
            return Err(ChunkError::Truncated {
                next: self.next,
                count: self.count,
            });
        }
        Ok(SealedAttachment {
            manifest: AttachmentManifest {
                name: self.name,
                media_type: self.media_type,
                size: self.size,
                chunk_size: self.chunk_size,
                tree_root: self.tree.root(),
                sha256: self.whole.finish(),
            },
            key: self.key,
        })
    }
}
