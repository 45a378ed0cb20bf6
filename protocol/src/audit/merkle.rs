//! RFC 9162 §2.1 Merkle tree hashing, proofs, and their verification.
//!
//! The hashes are those of RFC 6962, so any transparency-log tool can check
//! our proofs: a leaf is `SHA-256(0x00 ‖ leaf)`, an interior node
//! `SHA-256(0x01 ‖ left ‖ right)`, the empty tree `SHA-256("")`.
//!
//! Proofs are built from a [`SubtreeHashes`] store that only knows the
//! hashes of *complete, aligned* subtrees — exactly what an append-only log
//! writes once and never changes. Every range an RFC proof needs decomposes
//! into O(log n) of those, so the node's store never recomputes anything.

use std::fmt;

use sha2::{Digest as _, Sha256};

use crate::digest::Digest;

/// Prefix of a leaf hash (RFC 6962 §2.1).
pub const LEAF_PREFIX: u8 = 0x00;
/// Prefix of an interior node hash (RFC 6962 §2.1).
pub const NODE_PREFIX: u8 = 0x01;
/// A tree has at most 2^63 leaves, so every level fits in `u32` and every
/// size in `u64` without overflow in the proof algorithms.
pub const MAX_TREE_SIZE: u64 = 1 << 63;

/// `SHA-256(0x00 ‖ leaf)`.
pub fn leaf_hash(leaf: &[u8]) -> Digest {
    Digest::of(&[LEAF_PREFIX], &[leaf])
}

/// `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Digest, right: &Digest) -> Digest {
    // One contiguous 65-byte input: about twice as fast as three updates.
    let mut input = [0u8; 65];
    input[0] = NODE_PREFIX;
    input[1..33].copy_from_slice(&left.0);
    input[33..].copy_from_slice(&right.0);
    Digest(Sha256::digest(input).into())
}

/// The root of the empty tree, `SHA-256("")` (RFC 6962 §2.1).
pub fn empty_root() -> Digest {
    Digest(Sha256::digest([]).into())
}

/// Where the hashes of complete subtrees are kept (append-only files on the
/// node, memory in the verifier).
pub trait SubtreeHashes {
    type Error;

    /// The hash of the complete subtree of `2^level` leaves that starts at
    /// leaf `index · 2^level` (level 0: the leaf hashes themselves).
    fn complete(&self, level: u32, index: u64) -> Result<Digest, Self::Error>;
}

impl<T: SubtreeHashes + ?Sized> SubtreeHashes for &T {
    type Error = T::Error;

    fn complete(&self, level: u32, index: u64) -> Result<Digest, Self::Error> {
        (**self).complete(level, index)
    }
}

/// Why a hash or a proof could not be computed from a store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError<E> {
    #[error("the tree store could not supply a subtree hash: {0}")]
    Store(E),
    #[error("leaf range {start}..{end} is empty or reversed")]
    EmptyRange { start: u64, end: u64 },
    #[error("tree size {size} exceeds the maximum of 2^63 leaves")]
    TooLarge { size: u64 },
    #[error("leaf index {index} is not in a tree of size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("cannot prove consistency from size {old_size} to the smaller size {new_size}")]
    OldLargerThanNew { old_size: u64, new_size: u64 },
}

/// Largest power of two strictly below `n` (the RFC's `k`); `n >= 2`.
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// MTH of leaves `start..end` (RFC 9162 §2.1.1 applied to that slice).
///
/// Ranges that arise in RFC proofs start at a multiple of a power of two at
/// least as large as they are; those cost at most one store read per level.
/// Any other non-empty range is also answered, at a higher cost.
pub fn subtree_hash<S: SubtreeHashes + ?Sized>(
    store: &S,
    start: u64,
    end: u64,
) -> Result<Digest, TreeError<S::Error>> {
    if start >= end {
        return Err(TreeError::EmptyRange { start, end });
    }
    if end > MAX_TREE_SIZE {
        return Err(TreeError::TooLarge { size: end });
    }
    let n = end - start;
    if n.is_power_of_two() && start % n == 0 {
        let level = n.trailing_zeros();
        return store
            .complete(level, start >> level)
            .map_err(TreeError::Store);
    }
    let k = split_point(n);
    let left = subtree_hash(store, start, start + k)?;
    let right = subtree_hash(store, start + k, end)?;
    Ok(node_hash(&left, &right))
}

/// The root of the tree of the first `size` leaves.
pub fn root<S: SubtreeHashes + ?Sized>(
    store: &S,
    size: u64,
) -> Result<Digest, TreeError<S::Error>> {
    if size == 0 {
        Ok(empty_root())
    } else {
        subtree_hash(store, 0, size)
    }
}

/// The audit path of leaf `index` in the tree of `size` leaves
/// (RFC 9162 §2.1.3.1 `PATH`), nearest the leaf first.
pub fn inclusion_proof<S: SubtreeHashes + ?Sized>(
    store: &S,
    index: u64,
    size: u64,
) -> Result<Vec<Digest>, TreeError<S::Error>> {
    if size > MAX_TREE_SIZE {
        return Err(TreeError::TooLarge { size });
    }
    if index >= size {
        return Err(TreeError::IndexOutOfRange { index, size });
    }
    let mut out = Vec::with_capacity(64);
    path(store, index, 0, size, &mut out)?;
    Ok(out)
}

/// `PATH(m, D[start:end])` with `m` relative to `start`.
fn path<S: SubtreeHashes + ?Sized>(
    store: &S,
    m: u64,
    start: u64,
    end: u64,
    out: &mut Vec<Digest>,
) -> Result<(), TreeError<S::Error>> {
    let n = end - start;
    if n <= 1 {
        return Ok(());
    }
    let k = split_point(n);
    if m < k {
        path(store, m, start, start + k, out)?;
        out.push(subtree_hash(store, start + k, end)?);
    } else {
        path(store, m - k, start + k, end, out)?;
        out.push(subtree_hash(store, start, start + k)?);
    }
    Ok(())
}

/// The proof that the tree of `old_size` leaves is a prefix of the tree of
/// `new_size` leaves (RFC 9162 §2.1.4.1 `PROOF`). Empty when `old_size` is
/// 0 or equals `new_size`: nothing needs proving then.
pub fn consistency_proof<S: SubtreeHashes + ?Sized>(
    store: &S,
    old_size: u64,
    new_size: u64,
) -> Result<Vec<Digest>, TreeError<S::Error>> {
    if new_size > MAX_TREE_SIZE {
        return Err(TreeError::TooLarge { size: new_size });
    }
    if old_size > new_size {
        return Err(TreeError::OldLargerThanNew { old_size, new_size });
    }
    let mut out = Vec::with_capacity(64);
    if old_size == 0 || old_size == new_size {
        return Ok(out);
    }
    subproof(store, old_size, 0, new_size, true, &mut out)?;
    Ok(out)
}

/// `SUBPROOF(m, D[start:end], b)` with `m` relative to `start`.
fn subproof<S: SubtreeHashes + ?Sized>(
    store: &S,
    m: u64,
    start: u64,
    end: u64,
    b: bool,
    out: &mut Vec<Digest>,
) -> Result<(), TreeError<S::Error>> {
    let n = end - start;
    if m == n {
        if !b {
            out.push(subtree_hash(store, start, end)?);
        }
        return Ok(());
    }
    let k = split_point(n);
    if m <= k {
        subproof(store, m, start, start + k, b, out)?;
        out.push(subtree_hash(store, start + k, end)?);
    } else {
        subproof(store, m - k, start + k, end, false, out)?;
        out.push(subtree_hash(store, start, start + k)?);
    }
    Ok(())
}

/// Why a proof was refused. Any of these means: the log cannot show that
/// what was claimed is true.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("leaf index {index} is not in a tree of size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("old tree size {old_size} is larger than new tree size {new_size}")]
    OldLargerThanNew { old_size: u64, new_size: u64 },
    #[error("the proof has more hashes than a tree of this size needs")]
    TooLong,
    #[error("the proof has fewer hashes than a tree of this size needs")]
    TooShort,
    #[error("the proof must be empty for these sizes, but has {len} hashes")]
    NotEmpty { len: usize },
    #[error("the proof leads to root {computed}, not to the claimed root {claimed}")]
    RootMismatch { computed: Digest, claimed: Digest },
    #[error("the proof leads to old root {computed}, not to the claimed old root {claimed}")]
    OldRootMismatch { computed: Digest, claimed: Digest },
    #[error("both trees have size {size} but different roots: a fork")]
    SameSizeDifferentRoots { size: u64 },
}

/// Checks that `leaf_hash` is leaf `index` of the tree of `size` leaves with
/// root `root`, exactly as RFC 9162 §2.1.3.2.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf_hash: &Digest,
    proof: &[Digest],
    root: &Digest,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let mut fnode = index;
    let mut snode = size - 1;
    let mut r = *leaf_hash;
    for p in proof {
        if snode == 0 {
            return Err(ProofError::TooLong);
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::TooShort);
    }
    if r != *root {
        return Err(ProofError::RootMismatch {
            computed: r,
            claimed: *root,
        });
    }
    Ok(())
}

/// Checks that the tree of `old_size` leaves with root `old_root` is a
/// prefix of the tree of `new_size` leaves with root `new_root`, exactly as
/// RFC 9162 §2.1.4.2 for `0 < old_size < new_size`. The RFC leaves the
/// other cases open; here:
/// * `old_size > new_size`: refused, a log never shrinks;
/// * `old_size == new_size`: the proof must be empty and the roots equal;
/// * `old_size == 0`: the empty tree is a prefix of every tree; the proof
///   must be empty (as tlog-witness requires).
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Digest,
    new_root: &Digest,
    proof: &[Digest],
) -> Result<(), ProofError> {
    if old_size > new_size {
        return Err(ProofError::OldLargerThanNew { old_size, new_size });
    }
    if old_size == new_size || old_size == 0 {
        if !proof.is_empty() {
            return Err(ProofError::NotEmpty { len: proof.len() });
        }
        if old_size == new_size && old_root != new_root {
            return Err(ProofError::SameSizeDifferentRoots { size: old_size });
        }
        return Ok(());
    }
    // 1. An empty proof cannot prove anything here.
    if proof.is_empty() {
        return Err(ProofError::TooShort);
    }
    // 2. If old_size is a power of two, the old root is the first node.
    let (first, rest) = if old_size.is_power_of_two() {
        (*old_root, proof)
    } else {
        (proof[0], &proof[1..])
    };
    // 3.–4.
    let mut fnode = old_size - 1;
    let mut snode = new_size - 1;
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    // 5.
    let mut fr = first;
    let mut sr = first;
    // 6.
    for c in rest {
        if snode == 0 {
            return Err(ProofError::TooLong);
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    // 7.
    if snode != 0 {
        return Err(ProofError::TooShort);
    }
    if fr != *old_root {
        return Err(ProofError::OldRootMismatch {
            computed: fr,
            claimed: *old_root,
        });
    }
    if sr != *new_root {
        return Err(ProofError::RootMismatch {
            computed: sr,
            claimed: *new_root,
        });
    }
    Ok(())
}

/// A subtree hash a [`Frontier`] push completed: `(level, index, hash)` in
/// the coordinates of [`SubtreeHashes::complete`].
pub type CompletedSubtree = (u32, u64, Digest);

/// Why a frontier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrontierError {
    #[error("the tree is full (2^63 leaves): nothing more can be appended")]
    Full,
}

/// The appender's state: the tree size and the hashes of its right edge —
/// one complete subtree per set bit of the size, largest (leftmost) first.
///
/// That is all an append needs: pushing a leaf merges equal-sized subtrees
/// from the right, O(log n) hashing and no reads. A restarted node rebuilds
/// it from its stored subtrees ([`Frontier::from_store`], at most 63
/// reads) instead of re-reading its log.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Frontier {
    size: u64,
    hashes: Vec<Digest>,
}

impl fmt::Debug for Frontier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frontier")
            .field("size", &self.size)
            .field("root", &self.root())
            .finish()
    }
}

impl Frontier {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds the frontier of the first `size` leaves from a store,
    /// reading one hash per set bit of `size`.
    pub fn from_store<S: SubtreeHashes + ?Sized>(
        store: &S,
        size: u64,
    ) -> Result<Self, TreeError<S::Error>> {
        if size > MAX_TREE_SIZE {
            return Err(TreeError::TooLarge { size });
        }
        let mut hashes = Vec::with_capacity(size.count_ones() as usize);
        for level in (0..64u32).rev() {
            if size >> level & 1 == 1 {
                // The subtree of 2^level leaves ending where the larger
                // ones before it end: index = size >> level, minus one.
                let index = (size >> level) - 1;
                hashes.push(store.complete(level, index).map_err(TreeError::Store)?);
            }
        }
        Ok(Frontier { size, hashes })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The right-edge subtree hashes, largest first.
    pub fn hashes(&self) -> &[Digest] {
        &self.hashes
    }

    /// The Merkle tree hash of all leaves pushed so far.
    pub fn root(&self) -> Digest {
        let mut it = self.hashes.iter().rev();
        let Some(last) = it.next() else {
            return empty_root();
        };
        it.fold(*last, |acc, left| node_hash(left, &acc))
    }

    /// Appends a leaf (its [`leaf_hash`]) and returns every subtree this
    /// completed, the leaf itself `(0, index, hash)` first, then its
    /// ancestors bottom-up; the caller stores them for later proofs.
    ///
    /// A full tree (2^63 leaves) cannot grow.
    pub fn push(&mut self, leaf_hash: Digest) -> Result<Vec<CompletedSubtree>, FrontierError> {
        if self.size >= MAX_TREE_SIZE {
            return Err(FrontierError::Full);
        }
        let index = self.size;
        let mut out = Vec::with_capacity(1 + index.trailing_ones() as usize);
        out.push((0, index, leaf_hash));
        let mut h = leaf_hash;
        let mut level = 0u32;
        while index >> level & 1 == 1 {
            // Every set bit of the old size is a subtree on the stack, so
            // this pops at most `hashes.len()` times.
            let Some(left) = self.hashes.pop() else {
                break;
            };
            h = node_hash(&left, &h);
            level += 1;
            out.push((level, index >> level, h));
        }
        self.hashes.push(h);
        self.size += 1;
        Ok(out)
    }
}

/// A hash requested from a store that does not hold it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no complete subtree at level {level}, index {index}: beyond the tree")]
pub struct MissingSubtree {
    pub level: u32,
    pub index: u64,
}

/// Every level of a tree in memory: for verifiers, tests, and small logs.
/// About 64 bytes per leaf.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct MemoryTree {
    /// `levels[l][i]` = [`SubtreeHashes::complete`]`(l, i)`.
    levels: Vec<Vec<Digest>>,
}

impl fmt::Debug for MemoryTree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryTree")
            .field("size", &self.size())
            .finish_non_exhaustive()
    }
}

/// Levels at least this long are hashed on all cores.
const PARALLEL_LEVEL: usize = 1 << 15;

impl MemoryTree {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds every level from the leaf hashes, in order.
    pub fn from_leaf_hashes(leaves: Vec<Digest>) -> Self {
        let mut levels = vec![leaves];
        while let Some(below) = levels.last().filter(|l| l.len() >= 2) {
            let next = hash_level(below);
            levels.push(next);
        }
        MemoryTree { levels }
    }

    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// The root of the whole tree.
    pub fn root(&self) -> Digest {
        self.root_at(self.size()).unwrap_or_else(|_| empty_root())
    }

    /// The root of the tree of the first `size` leaves.
    pub fn root_at(&self, size: u64) -> Result<Digest, TreeError<MissingSubtree>> {
        root(self, size)
    }

    pub fn leaf_hash(&self, index: u64) -> Option<Digest> {
        let i = usize::try_from(index).ok()?;
        self.levels.first()?.get(i).copied()
    }

    /// Appends one leaf hash, completing its ancestors.
    pub fn push(&mut self, leaf_hash: Digest) {
        if self.levels.is_empty() {
            self.levels.push(Vec::new());
        }
        let mut level = 0;
        let mut h = leaf_hash;
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            let row = &mut self.levels[level];
            row.push(h);
            if row.len() % 2 == 1 {
                break;
            }
            let n = row.len();
            h = node_hash(&row[n - 2], &row[n - 1]);
            level += 1;
        }
    }

    pub fn inclusion_proof(
        &self,
        index: u64,
        size: u64,
    ) -> Result<Vec<Digest>, TreeError<MissingSubtree>> {
        inclusion_proof(self, index, size)
    }

    pub fn consistency_proof(
        &self,
        old_size: u64,
        new_size: u64,
    ) -> Result<Vec<Digest>, TreeError<MissingSubtree>> {
        consistency_proof(self, old_size, new_size)
    }
}

/// The next level up: node hashes of adjacent pairs (an odd last one waits).
fn hash_level(below: &[Digest]) -> Vec<Digest> {
    let pairs = below.len() / 2;
    let mut next = vec![Digest([0u8; 32]); pairs];
    let threads = if pairs >= PARALLEL_LEVEL {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
    } else {
        1
    };
    if threads <= 1 {
        fill_pairs(&below[..pairs * 2], &mut next);
        return next;
    }
    let per = pairs.div_ceil(threads);
    std::thread::scope(|s| {
        for (out, inp) in next.chunks_mut(per).zip(below[..pairs * 2].chunks(per * 2)) {
            s.spawn(move || fill_pairs(inp, out));
        }
    });
    next
}

fn fill_pairs(below: &[Digest], out: &mut [Digest]) {
    for (o, pair) in out.iter_mut().zip(below.chunks_exact(2)) {
        *o = node_hash(&pair[0], &pair[1]);
    }
}

impl SubtreeHashes for MemoryTree {
    type Error = MissingSubtree;

    fn complete(&self, level: u32, index: u64) -> Result<Digest, MissingSubtree> {
        let missing = MissingSubtree { level, index };
        let row = self.levels.get(level as usize).ok_or(missing)?;
        let i = usize::try_from(index).map_err(|_| missing)?;
        row.get(i).copied().ok_or(missing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: u64) -> Vec<Digest> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    #[test]
    fn push_and_batch_build_agree() {
        let hs = leaves(37);
        let batch = MemoryTree::from_leaf_hashes(hs.clone());
        let mut inc = MemoryTree::new();
        let mut fr = Frontier::new();
        for (i, h) in hs.iter().enumerate() {
            inc.push(*h);
            let done = fr.push(*h).unwrap();
            for (level, index, hash) in done {
                assert_eq!(batch.complete(level, index), Ok(hash));
            }
            assert_eq!(fr.root(), batch.root_at(i as u64 + 1).unwrap());
        }
        assert_eq!(inc, batch);
    }

    #[test]
    fn frontier_from_store_matches_pushes() {
        let t = MemoryTree::from_leaf_hashes(leaves(100));
        let mut fr = Frontier::new();
        for i in 0..100 {
            assert_eq!(Frontier::from_store(&t, i).unwrap(), fr);
            fr.push(t.leaf_hash(i).unwrap()).unwrap();
        }
    }

    #[test]
    fn parallel_level_matches_serial() {
        let hs = leaves(PARALLEL_LEVEL as u64 * 2 + 3);
        let par = hash_level(&hs);
        let mut ser = vec![Digest([0; 32]); hs.len() / 2];
        fill_pairs(&hs[..ser.len() * 2], &mut ser);
        assert_eq!(par, ser);
    }
}
