//! The receiver's state machine: ciphertext chunk `i` in, verified
//! plaintext out.

use bincode::{Decode, Encode};

use super::stream::{ChunkCipher, TAG_BYTES};
use super::{chunk_len, CheckedAttachment, ChunkError, ChunkTable, WholeFileDigest};
use crate::digest::Digest;

/// Where a receiver stands: the next chunk it needs and the whole-file
/// SHA-256 midstate after the chunks before it. A receiver stores this
/// with every chunk it makes durable; after a restart it resumes from here
/// and tells the sender to continue at `next_chunk`.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct ResumePoint {
    pub next_chunk: u64,
    pub digest_state: [u32; 8],
}

/// A chunk that passed every check: its plaintext, to be written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opened {
    pub index: u64,
    pub plaintext: Vec<u8>,
    /// True for the last chunk: the whole-file digest matched too, the
    /// attachment is complete and verified.
    pub complete: bool,
}

/// Opens one attachment chunk by chunk, in order, from the start or from a
/// [`ResumePoint`]. Each chunk is checked, in this order: index (the next
/// one needed), length (exactly the chunk's size plus the tag), tag (STREAM
/// position and last-chunk flag), leaf hash against the verified
/// [`ChunkTable`], and at the last chunk the whole-file SHA-256. A refused
/// chunk changes nothing, so [`Opener::next_chunk`] is always the resume
/// point. Holds the table (32 bytes per chunk) and no data between calls.
pub struct Opener {
    size: u64,
    chunk_size: u32,
    count: u64,
    next: u64,
    complete: bool,
    sha256: Digest,
    cipher: ChunkCipher,
    table: ChunkTable,
    whole: WholeFileDigest,
}

impl std::fmt::Debug for Opener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opener")
            .field("size", &self.size)
            .field("next", &self.next)
            .field("count", &self.count)
            .field("complete", &self.complete)
            .finish_non_exhaustive()
    }
}

impl Opener {
    /// Starts at chunk 0. `table` must be this attachment's.
    pub fn new(attachment: &CheckedAttachment, table: ChunkTable) -> Result<Self, ChunkError> {
        Self::at(attachment, table, 0, WholeFileDigest::new())
    }

    /// Continues from a point this attachment's opener reported.
    pub fn resume(
        attachment: &CheckedAttachment,
        table: ChunkTable,
        point: &ResumePoint,
    ) -> Result<Self, ChunkError> {
        let count = attachment.chunk_count();
        let bad = ChunkError::BadResumePoint {
            next: point.next_chunk,
            count,
        };
        if point.next_chunk >= count {
            return Err(bad);
        }
        let len = point
            .next_chunk
            .checked_mul(u64::from(attachment.manifest().chunk_size))
            .ok_or(bad.clone())?;
        let whole = WholeFileDigest::from_midstate(point.digest_state, len).ok_or(bad)?;
        Self::at(attachment, table, point.next_chunk, whole)
    }

    fn at(
        attachment: &CheckedAttachment,
        table: ChunkTable,
        next: u64,
        whole: WholeFileDigest,
    ) -> Result<Self, ChunkError> {
        let m = attachment.manifest();
        if *table.root() != m.tree_root || table.len() as u64 != attachment.chunk_count() {
            return Err(ChunkError::TableForAnotherAttachment);
        }
        Ok(Opener {
            size: m.size,
            chunk_size: m.chunk_size,
            count: attachment.chunk_count(),
            next,
            complete: false,
            sha256: m.sha256,
            cipher: ChunkCipher::new(attachment.key()),
            table,
            whole,
        })
    }

    /// The next chunk needed, or `None` once the attachment is complete.
    pub fn next_chunk(&self) -> Option<u64> {
        (!self.complete).then_some(self.next)
    }

    pub fn is_complete(&self) -> bool {
        self.complete
    }

    pub fn chunk_count(&self) -> u64 {
        self.count
    }

    /// Ciphertext bytes expected for chunk `index` (plaintext plus tag).
    pub fn ciphertext_len(&self, index: u64) -> Option<usize> {
        chunk_len(self.size, self.chunk_size, index).map(|n| n + TAG_BYTES)
    }

    /// What to store to resume before the next chunk; `None` once complete.
    pub fn resume_point(&self) -> Option<ResumePoint> {
        if self.complete {
            return None;
        }
        self.whole.midstate().map(|digest_state| ResumePoint {
            next_chunk: self.next,
            digest_state,
        })
    }

    /// Checks and decrypts chunk `index` (see the type's documentation).
    pub fn open_chunk(
        &mut self,
        index: u64,
        mut ciphertext: Vec<u8>,
    ) -> Result<Opened, ChunkError> {
        if self.complete || index >= self.count {
            return Err(ChunkError::AfterLast {
                count: self.count,
                got: index,
            });
        }
        if index != self.next {
            return Err(ChunkError::OutOfOrder {
                expected: self.next,
                got: index,
            });
        }
        let expected = self.ciphertext_len(index).ok_or(ChunkError::AfterLast {
            count: self.count,
            got: index,
        })?;
        ChunkError::check_len(index, expected, ciphertext.len())?;
        let last = index + 1 == self.count;
        self.cipher
            .open(index, last, &mut ciphertext)
            .map_err(|_| ChunkError::BadTag { index })?;
        let plaintext = ciphertext;
        if self.table.leaf(index) != Some(&super::chunk_leaf_hash(&plaintext)) {
            return Err(ChunkError::HashMismatch { index });
        }
        let mut whole = self.whole.clone();
        whole.update(&plaintext);
        if last {
            if whole.clone().finish() != self.sha256 {
                return Err(ChunkError::DigestMismatch);
            }
            self.complete = true;
        }
        self.whole = whole;
        self.next += 1;
        Ok(Opened {
            index,
            plaintext,
            complete: self.complete,
        })
    }

    /// Checks chunk `index` alone — length, tag and leaf hash, not the
    /// whole-file digest — without moving the opener: how a sender checks
    /// its own stored copy once the peer has refused a chunk of it.
    pub fn check_chunk(&self, index: u64, ciphertext: &[u8]) -> Result<(), ChunkError> {
        let expected = self.ciphertext_len(index).ok_or(ChunkError::AfterLast {
            count: self.count,
            got: index,
        })?;
        ChunkError::check_len(index, expected, ciphertext.len())?;
        let mut plaintext = ciphertext.to_vec();
        self.cipher
            .open(index, index + 1 == self.count, &mut plaintext)
            .map_err(|_| ChunkError::BadTag { index })?;
        if self.table.leaf(index) != Some(&super::chunk_leaf_hash(&plaintext)) {
            return Err(ChunkError::HashMismatch { index });
        }
        Ok(())
    }

    /// Call when the sender says the stream has ended: an error unless
    /// every chunk arrived and verified.
    pub fn finish(&self) -> Result<(), ChunkError> {
        if self.complete {
            Ok(())
        } else {
            Err(ChunkError::Truncated {
                next: self.next,
                count: self.count,
            })
        }
    }
}
