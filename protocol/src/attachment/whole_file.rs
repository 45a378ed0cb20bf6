//! The whole-file SHA-256 of an attachment, computed as the chunks pass and
//! resumable: at a chunk boundary the hash state is eight words and the
//! length (every chunk but the last is a whole number of 64-byte blocks),
//! which a receiver stores beside the data so that a resume after
//! `kill -9` does not re-read what it already holds.
//!
//! This is SHA-256 itself (FIPS 180-4), the `sha2` crate's compression
//! function with the standard padding; the tests compare it with
//! `sha2::Sha256` on every split.

use sha2::digest::generic_array::GenericArray;

use crate::digest::Digest;

const H0: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// A running SHA-256.
#[derive(Clone, PartialEq, Eq)]
pub struct WholeFileDigest {
    state: [u32; 8],
    /// Bytes absorbed, including those in `pending`.
    len: u64,
    pending: Vec<u8>,
}

impl std::fmt::Debug for WholeFileDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WholeFileDigest")
            .field("len", &self.len)
            .finish()
    }
}

impl Default for WholeFileDigest {
    fn default() -> Self {
        Self::new()
    }
}

impl WholeFileDigest {
    pub fn new() -> Self {
        WholeFileDigest {
            state: H0,
            len: 0,
            pending: Vec::with_capacity(64),
        }
    }

    /// Continues from a midstate taken by [`Self::midstate`] after `len`
    /// bytes; `None` if `len` is not a whole number of blocks.
    pub fn from_midstate(state: [u32; 8], len: u64) -> Option<Self> {
        (len % 64 == 0).then(|| WholeFileDigest {
            state,
            len,
            pending: Vec::with_capacity(64),
        })
    }

    /// The state after a whole number of blocks, or `None` mid-block.
    pub fn midstate(&self) -> Option<[u32; 8]> {
        self.pending.is_empty().then_some(self.state)
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn update(&mut self, mut data: &[u8]) {
        self.len = self.len.wrapping_add(data.len() as u64);
        if !self.pending.is_empty() {
            let take = (64 - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.pending.len() < 64 {
                return;
            }
            let block = GenericArray::clone_from_slice(&self.pending);
            sha2::compress256(&mut self.state, &[block]);
            self.pending.clear();
        }
        let whole = data.len() / 64 * 64;
        for block in data[..whole].chunks_exact(64) {
            // One block at a time: a 64-byte copy, no allocation.
            sha2::compress256(&mut self.state, &[GenericArray::clone_from_slice(block)]);
        }
        self.pending.extend_from_slice(&data[whole..]);
    }

    /// Pads (0x80, zeros, the length in bits as u64 big-endian) and returns
    /// the digest.
    pub fn finish(mut self) -> Digest {
        let bits = self.len.wrapping_mul(8);
        let mut tail = std::mem::take(&mut self.pending);
        tail.push(0x80);
        while tail.len() % 64 != 56 {
            tail.push(0);
        }
        tail.extend_from_slice(&bits.to_be_bytes());
        for block in tail.chunks_exact(64) {
            sha2::compress256(&mut self.state, &[GenericArray::clone_from_slice(block)]);
        }
        let mut out = [0u8; 32];
        for (o, w) in out.chunks_exact_mut(4).zip(self.state) {
            o.copy_from_slice(&w.to_be_bytes());
        }
        Digest(out)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use sha2::{Digest as _, Sha256};

    use super::*;

    fn reference(data: &[u8]) -> Digest {
        Digest(Sha256::digest(data).into())
    }

    #[test]
    fn known_lengths() {
        for n in [
            0usize, 1, 55, 56, 57, 63, 64, 65, 119, 120, 128, 1000, 65_536,
        ] {
            let data: Vec<u8> = (0..n).map(|i| (i * 7 % 251) as u8).collect();
            let mut h = WholeFileDigest::new();
            h.update(&data);
            assert_eq!(h.finish(), reference(&data), "length {n}");
        }
        // FIPS 180-2 appendix B.1.
        let mut h = WholeFileDigest::new();
        h.update(b"abc");
        assert_eq!(
            h.finish().to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    proptest! {
        #[test]
        fn any_split_and_resume_matches_sha256(
            data in proptest::collection::vec(any::<u8>(), 0..600),
            cuts in proptest::collection::vec(0usize..600, 0..6),
            resume_blocks in 0usize..10,
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
            cuts.sort_unstable();
            let mut h = WholeFileDigest::new();
            let mut at = 0;
            for c in cuts {
                h.update(&data[at..c]);
                at = c;
            }
            h.update(&data[at..]);
            prop_assert_eq!(h.finish(), reference(&data));

            // Resume from a midstate at a block boundary.
            let split = (resume_blocks * 64).min(data.len() / 64 * 64);
            let mut first = WholeFileDigest::new();
            first.update(&data[..split]);
            let state = first.midstate().unwrap();
            let mut resumed = WholeFileDigest::from_midstate(state, split as u64).unwrap();
            resumed.update(&data[split..]);
            prop_assert_eq!(resumed.finish(), reference(&data));
        }
    }

    #[test]
    fn midstate_only_at_block_boundaries() {
        let mut h = WholeFileDigest::new();
        h.update(&[0; 65]);
        assert_eq!(h.midstate(), None);
        assert!(WholeFileDigest::from_midstate(H0, 65).is_none());
    }
}
