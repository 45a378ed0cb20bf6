//! The audit log's Merkle math against the RFC 6962/9162 definitions,
//! written out naively here from the RFC text and independently of the
//! crate (plain `sha2`, recursion over slices of leaves).
//!
//! * Known answers: the certificate-transparency test vectors.
//! * `Frontier` (incremental) and `MemoryTree` equal the naive MTH at every
//!   size 0..=1000.
//! * Every inclusion proof (all indices, sizes 1..=300, and some larger)
//!   and every consistency proof (all pairs up to 300) equals the naive
//!   PATH/PROOF and verifies with the RFC 9162 algorithms.
//! * Corrupted proofs (a flipped bit in any hash, a hash dropped or added,
//!   wrong index or size) are refused.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use comity_protocol::audit::merkle::{
    consistency_proof, empty_root, inclusion_proof, leaf_hash, node_hash, root, verify_consistency,
    verify_inclusion, Frontier, MemoryTree, ProofError, SubtreeHashes, TreeError,
};
use comity_protocol::Digest;
use proptest::prelude::*;
use sha2::{Digest as _, Sha256};

fn sha(parts: &[&[u8]]) -> Digest {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    Digest(h.finalize().into())
}

/// RFC 9162 §2.1.1: MTH over the list of leaves.
fn mth(d: &[Vec<u8>]) -> Digest {
    match d.len() {
        0 => sha(&[]),
        1 => sha(&[&[0u8], &d[0]]),
        n => {
            let k = k_of(n);
            sha(&[&[1u8], &mth(&d[..k]).0, &mth(&d[k..]).0])
        }
    }
}

/// Largest power of two smaller than n.
fn k_of(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// RFC 9162 §2.1.3.1 PATH(m, D[n]).
fn path(m: usize, d: &[Vec<u8>]) -> Vec<Digest> {
    let n = d.len();
    if n == 1 {
        return vec![];
    }
    let k = k_of(n);
    if m < k {
        let mut p = path(m, &d[..k]);
        p.push(mth(&d[k..]));
        p
    } else {
        let mut p = path(m - k, &d[k..]);
        p.push(mth(&d[..k]));
        p
    }
}

/// RFC 9162 §2.1.4.1 SUBPROOF(m, D[n], b).
fn subproof(m: usize, d: &[Vec<u8>], b: bool) -> Vec<Digest> {
    let n = d.len();
    if m == n {
        return if b { vec![] } else { vec![mth(d)] };
    }
    let k = k_of(n);
    if m <= k {
        let mut p = subproof(m, &d[..k], b);
        p.push(mth(&d[k..]));
        p
    } else {
        let mut p = subproof(m - k, &d[k..], false);
        p.push(mth(&d[..k]));
        p
    }
}

fn leaves(n: usize, salt: u8) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let mut v = vec![salt];
            v.extend_from_slice(&(i as u64).to_be_bytes());
            v
        })
        .collect()
}

fn tree_of(d: &[Vec<u8>]) -> MemoryTree {
    MemoryTree::from_leaf_hashes(d.iter().map(|l| leaf_hash(l)).collect())
}

fn flip(d: &Digest, bit: usize) -> Digest {
    let mut b = d.0;
    b[bit / 8] ^= 1 << (bit % 8);
    Digest(b)
}

#[test]
fn certificate_transparency_known_answers() {
    let hex_leaves = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];
    let roots = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];
    assert_eq!(
        empty_root().to_string(),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    let mut fr = Frontier::new();
    for (i, l) in hex_leaves.iter().enumerate() {
        fr.push(leaf_hash(&hex::decode(l).unwrap())).unwrap();
        assert_eq!(fr.root().to_string(), roots[i], "size {}", i + 1);
    }
}

#[test]
fn hashes_are_rfc6962() {
    assert_eq!(leaf_hash(b"abc"), sha(&[&[0], b"abc"]));
    let (a, b) = (Digest([1; 32]), Digest([2; 32]));
    assert_eq!(node_hash(&a, &b), sha(&[&[1], &a.0, &b.0]));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3, ..ProptestConfig::default() })]

    /// Random leaf contents; every size 0..=1000 in order.
    #[test]
    fn frontier_matches_naive_mth_at_every_size(
        content in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1000)
    ) {
        let mut fr = Frontier::new();
        let mut mem = MemoryTree::new();
        prop_assert_eq!(fr.root(), mth(&[]));
        for n in 1..=content.len() {
            let h = leaf_hash(&content[n - 1]);
            let done = fr.push(h).unwrap();
            mem.push(h);
            // Every completed subtree is reported, with its coordinates.
            prop_assert_eq!(done.len() as u32, 1 + (n as u64 - 1).trailing_ones());
            for (level, index, hash) in done {
                prop_assert_eq!(mem.complete(level, index).unwrap(), hash);
                let start = (index << level) as usize;
                let end = start + (1usize << level);
                prop_assert_eq!(hash, mth(&content[start..end]));
            }
            let expected = mth(&content[..n]);
            prop_assert_eq!(fr.root(), expected);
            prop_assert_eq!(fr.size(), n as u64);
            prop_assert_eq!(mem.root(), expected);
            prop_assert_eq!(root(&mem, n as u64).unwrap(), expected);
            // Rebuilt from stored subtrees (as a node restarts), identical.
            let back = Frontier::from_store(&mem, n as u64).unwrap();
            prop_assert_eq!(&back, &fr);
        }
        let batch = MemoryTree::from_leaf_hashes(content.iter().map(|c| leaf_hash(c)).collect());
        prop_assert_eq!(batch, mem);
    }
}

#[test]
fn every_inclusion_proof_up_to_300() {
    let d = leaves(300, 7);
    let t = tree_of(&d);
    for n in 1..=300usize {
        let r = t.root_at(n as u64).unwrap();
        assert_eq!(r, mth(&d[..n]));
        for m in 0..n {
            let p = inclusion_proof(&t, m as u64, n as u64).unwrap();
            if n <= 100 {
                assert_eq!(p, path(m, &d[..n]), "PATH({m}, {n})");
            }
            verify_inclusion(m as u64, n as u64, &leaf_hash(&d[m]), &p, &r)
                .unwrap_or_else(|e| panic!("inclusion {m} in {n}: {e}"));
        }
    }
}

#[test]
fn inclusion_proofs_in_larger_trees() {
    let d = leaves(5000, 9);
    let t = tree_of(&d);
    for n in [511usize, 512, 513, 1000, 1023, 1024, 1025, 4097, 5000] {
        let r = mth(&d[..n]);
        for m in [0, 1, n / 3, n / 2, n - 2, n - 1] {
            let p = inclusion_proof(&t, m as u64, n as u64).unwrap();
            assert_eq!(p, path(m, &d[..n]));
            verify_inclusion(m as u64, n as u64, &leaf_hash(&d[m]), &p, &r).unwrap();
        }
    }
}

#[test]
fn every_consistency_proof_up_to_300() {
    let d = leaves(300, 3);
    let t = tree_of(&d);
    let roots: Vec<Digest> = (0..=300).map(|n| t.root_at(n).unwrap()).collect();
    for n in 0..=300usize {
        for m in 0..=n {
            let p = consistency_proof(&t, m as u64, n as u64).unwrap();
            if m > 0 && m < n && n <= 100 {
                assert_eq!(p, subproof(m, &d[..n], true), "PROOF({m}, {n})");
            }
            verify_consistency(m as u64, n as u64, &roots[m], &roots[n], &p)
                .unwrap_or_else(|e| panic!("consistency {m} -> {n}: {e}"));
        }
    }
}

#[test]
fn consistency_proofs_in_larger_trees() {
    let d = leaves(5000, 4);
    let t = tree_of(&d);
    for (m, n) in [
        (1usize, 5000usize),
        (511, 513),
        (512, 4097),
        (1000, 1024),
        (4999, 5000),
        (2048, 4096),
    ] {
        let p = consistency_proof(&t, m as u64, n as u64).unwrap();
        assert_eq!(p, subproof(m, &d[..n], true));
        verify_consistency(m as u64, n as u64, &mth(&d[..m]), &mth(&d[..n]), &p).unwrap();
    }
}

#[test]
fn corrupted_inclusion_proofs_fail() {
    let d = leaves(70, 1);
    let t = tree_of(&d);
    for n in 1..=70u64 {
        let r = t.root_at(n).unwrap();
        for m in 0..n {
            let leaf = leaf_hash(&d[m as usize]);
            let p = inclusion_proof(&t, m, n).unwrap();
            for i in 0..p.len() {
                for bit in [0, 77, 255] {
                    let mut q = p.clone();
                    q[i] = flip(&q[i], bit);
                    assert!(verify_inclusion(m, n, &leaf, &q, &r).is_err());
                }
            }
            assert!(verify_inclusion(m, n, &flip(&leaf, 3), &p, &r).is_err());
            assert!(verify_inclusion(m, n, &leaf, &p, &flip(&r, 9)).is_err());
            if !p.is_empty() {
                assert!(verify_inclusion(m, n, &leaf, &p[1..], &r).is_err());
                assert!(verify_inclusion(m, n, &leaf, &p[..p.len() - 1], &r).is_err());
            }
            let mut longer = p.clone();
            longer.push(r);
            assert_eq!(
                verify_inclusion(m, n, &leaf, &longer, &r),
                Err(ProofError::TooLong)
            );
            // Claimed at another index: refused.
            for m2 in [m.wrapping_sub(1), m + 1] {
                if m2 < n {
                    assert!(
                        verify_inclusion(m2, n, &leaf, &p, &r).is_err(),
                        "{m}->{m2} in {n}"
                    );
                }
            }
            // Claimed in a tree of another size, against that tree's root.
            for n2 in [n - 1, n + 1] {
                if n2 > m && n2 <= 70 {
                    let r2 = t.root_at(n2).unwrap();
                    assert!(verify_inclusion(m, n2, &leaf, &p, &r2).is_err());
                }
            }
            assert_eq!(
                verify_inclusion(n, n, &leaf, &p, &r),
                Err(ProofError::IndexOutOfRange { index: n, size: n })
            );
        }
    }
}

#[test]
fn corrupted_consistency_proofs_fail() {
    let d = leaves(70, 2);
    let t = tree_of(&d);
    let roots: Vec<Digest> = (0..=70).map(|n| t.root_at(n).unwrap()).collect();
    for n in 2..=70usize {
        for m in 1..n {
            let (ro, rn) = (&roots[m], &roots[n]);
            let p = consistency_proof(&t, m as u64, n as u64).unwrap();
            let (m64, n64) = (m as u64, n as u64);
            for i in 0..p.len() {
                for bit in [0, 130, 255] {
                    let mut q = p.clone();
                    q[i] = flip(&q[i], bit);
                    assert!(
                        verify_consistency(m64, n64, ro, rn, &q).is_err(),
                        "{m}->{n} [{i}]"
                    );
                }
            }
            assert!(verify_consistency(m64, n64, ro, rn, &p[1..]).is_err());
            assert!(verify_consistency(m64, n64, ro, rn, &p[..p.len() - 1]).is_err());
            let mut longer = p.clone();
            longer.push(*rn);
            assert!(verify_consistency(m64, n64, ro, rn, &longer).is_err());
            assert!(verify_consistency(m64, n64, &flip(ro, 1), rn, &p).is_err());
            assert!(verify_consistency(m64, n64, ro, &flip(rn, 1), &p).is_err());
            // Other sizes, with the true roots of those sizes.
            if m + 1 < n {
                assert!(verify_consistency(m64 + 1, n64, &roots[m + 1], rn, &p).is_err());
            }
            if m > 1 {
                assert!(verify_consistency(m64 - 1, n64, &roots[m - 1], rn, &p).is_err());
            }
            if n < 70 {
                assert!(verify_consistency(m64, n64 + 1, ro, &roots[n + 1], &p).is_err());
            }
            assert!(verify_consistency(m64, n64 - 1, ro, &roots[n - 1], &p).is_err());
        }
    }
}

#[test]
fn consistency_edge_cases() {
    let t = tree_of(&leaves(10, 5));
    let r = |n| t.root_at(n).unwrap();
    // Same size: empty proof, equal roots.
    assert_eq!(verify_consistency(4, 4, &r(4), &r(4), &[]), Ok(()));
    assert_eq!(
        verify_consistency(4, 4, &r(4), &r(5), &[]),
        Err(ProofError::SameSizeDifferentRoots { size: 4 })
    );
    assert_eq!(
        verify_consistency(4, 4, &r(4), &r(4), &[r(1)]),
        Err(ProofError::NotEmpty { len: 1 })
    );
    // From the empty tree: anything, with an empty proof.
    assert_eq!(verify_consistency(0, 7, &r(0), &r(7), &[]), Ok(()));
    assert_eq!(verify_consistency(0, 0, &r(0), &r(0), &[]), Ok(()));
    assert!(verify_consistency(0, 7, &r(0), &r(7), &[r(1)]).is_err());
    // Shrinking is never consistent.
    assert_eq!(
        verify_consistency(7, 4, &r(7), &r(4), &[]),
        Err(ProofError::OldLargerThanNew {
            old_size: 7,
            new_size: 4
        })
    );
    // An empty proof proves nothing for 0 < old < new.
    assert_eq!(
        verify_consistency(3, 7, &r(3), &r(7), &[]),
        Err(ProofError::TooShort)
    );
    // Generation refuses the same cases.
    assert!(matches!(
        consistency_proof(&t, 7, 4),
        Err(TreeError::OldLargerThanNew { .. })
    ));
    assert!(consistency_proof(&t, 0, 10).unwrap().is_empty());
    assert!(consistency_proof(&t, 10, 10).unwrap().is_empty());
    assert!(matches!(
        inclusion_proof(&t, 10, 10),
        Err(TreeError::IndexOutOfRange { .. })
    ));
    // Beyond what the store holds: the store's error, not a panic.
    assert!(matches!(
        inclusion_proof(&t, 3, 11),
        Err(TreeError::Store(_))
    ));
    assert!(matches!(root(&t, 11), Err(TreeError::Store(_))));
}

#[test]
fn memory_tree_of_a_million_leaves_is_fast() {
    let hashes: Vec<Digest> = (0..1_000_000u64)
        .map(|i| leaf_hash(&i.to_le_bytes()))
        .collect();
    let start = std::time::Instant::now();
    let t = MemoryTree::from_leaf_hashes(hashes.clone());
    let took = start.elapsed();
    let mut fr = Frontier::new();
    for h in &hashes {
        fr.push(*h).unwrap();
    }
    assert_eq!(t.root(), fr.root());
    // Generous even for debug builds of this crate (hashing is optimised).
    assert!(took.as_secs() < 10, "building took {took:?}");
}
