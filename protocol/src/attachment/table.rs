//! The chunk tree: an RFC 6962 Merkle tree whose leaves are the plaintext
//! chunks, and the table of its leaf hashes that a receiver holds so that
//! each chunk is verified on arrival with one hash.
//!
//! The receiver gets the table (32 bytes per chunk: 2 MiB for a 64 GiB
//! attachment of 1 MiB chunks) before the data, checks it against the
//! signed root once, and then compares each arriving chunk's leaf hash
//! with its entry, from any resume point, with no proof
//! per chunk on the wire.

use super::{CheckedAttachment, ChunkError};
use crate::audit::merkle::{leaf_hash, Frontier};
use crate::digest::Digest;

/// The leaf hash of a plaintext chunk: `SHA-256(0x00 ‖ chunk)`.
pub fn chunk_leaf_hash(chunk: &[u8]) -> Digest {
    leaf_hash(chunk)
}

/// Leaf hashes that were checked against an attachment's signed tree root.
#[derive(Clone, PartialEq, Eq)]
pub struct ChunkTable {
    root: Digest,
    leaves: Vec<Digest>,
}

impl std::fmt::Debug for ChunkTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkTable")
            .field("root", &self.root)
            .field("leaves", &self.leaves.len())
            .finish()
    }
}

impl ChunkTable {
    /// Checks `bytes` (the leaf hashes, 32 bytes each, in chunk order) against
    /// the attachment's manifest: exactly one leaf per chunk (checked before
    /// anything is allocated), and their tree hash is the signed root.
    pub fn verify(attachment: &CheckedAttachment, bytes: &[u8]) -> Result<Self, ChunkError> {
        let chunks = attachment.chunk_count();
        let expected = usize::try_from(chunks)
            .ok()
            .and_then(|n| n.checked_mul(32))
            .ok_or(ChunkError::TableLength {
                expected: usize::MAX,
                got: bytes.len(),
                chunks,
            })?;
        if bytes.len() != expected {
            return Err(ChunkError::TableLength {
                expected,
                got: bytes.len(),
                chunks,
            });
        }
        let mut leaves = Vec::with_capacity(bytes.len() / 32);
        let mut tree = Frontier::new();
        for leaf in bytes.chunks_exact(32) {
            let mut d = [0u8; 32];
            d.copy_from_slice(leaf);
            let d = Digest(d);
            // The chunk count is below 2^32, far from a full tree.
            tree.push(d).map_err(|_| ChunkError::TableRootMismatch)?;
            leaves.push(d);
        }
        let root = attachment.manifest().tree_root;
        if tree.root() != root {
            return Err(ChunkError::TableRootMismatch);
        }
        Ok(ChunkTable { root, leaves })
    }

    /// The leaf hashes as the sender transmits them.
    pub fn encode(leaves: &[Digest]) -> Vec<u8> {
        leaves.iter().flat_map(|d| d.0).collect()
    }

    pub fn root(&self) -> &Digest {
        &self.root
    }

    pub fn leaf(&self, index: u64) -> Option<&Digest> {
        usize::try_from(index).ok().and_then(|i| self.leaves.get(i))
    }

    pub fn len(&self) -> usize {
        self.leaves.len()
    }

    pub fn is_empty(&self) -> bool {
        self.leaves.is_empty()
    }
}
