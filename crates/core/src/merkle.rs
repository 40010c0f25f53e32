//! RFC 9162 (RFC 6962) Merkle trees over a tenant's leaf hashes, beside the hash chain.
//!
//! The leaves are the records' `leaf_hash` values, which already carry RFC 6962's leaf prefix
//! (`SHA-256(0x00 ‖ JCS(hashed form))`); interior nodes are `SHA-256(0x01 ‖ left ‖ right)`.
//! A tree of `n` leaves splits at the largest power of two below `n`, so every proof is made of
//! hashes of subtrees, and every subtree a proof needs is either *complete* (2^level leaves
//! starting at a multiple of 2^level: what a store keeps, as C2SP tlog-tiles do) or the right
//! edge of one, recomputed from complete ones in O(log n).
//!
//! - [`Nodes`]: where complete subtree hashes come from (the store, or [`MemoryTree`]).
//! - [`subtree_hash`], [`root`], [`inclusion_proof`], [`consistency_proof`]: RFC 9162
//!   §2.1.1, §2.1.3.1 and §2.1.4.1 over a [`Nodes`].
//! - [`verify_inclusion`], [`verify_consistency`]: the verification algorithms of §2.1.3.2
//!   and §2.1.4.2, needing nothing but the proof.

use crate::hash::Hash32;

/// `SHA-256(0x01 ‖ left ‖ right)`: an interior node.
pub fn node(left: &Hash32, right: &Hash32) -> Hash32 {
    Hash32::digest(&[&[0x01], &left.0, &right.0])
}

/// The root of an empty tree: `SHA-256()` of nothing.
pub fn empty_root() -> Hash32 {
    Hash32::digest(&[])
}

/// Why a proof could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MerkleError {
    /// The parameters do not describe a proof (index past the size, `from` after `to`…).
    #[error("{0}")]
    Invalid(String),
    /// A complete subtree the proof needs is not known (the tree is smaller than asked).
    #[error("the tree has no node at level {level}, index {index}")]
    Missing {
        /// Its level (0: a leaf).
        level: u32,
        /// Its index within the level.
        index: u64,
    },
}

/// Hashes of complete subtrees: `node(level, index)` is the root of the leaves
/// `[index·2^level, (index+1)·2^level)`, once all of them exist.
pub trait Nodes {
    /// The hash, or `None` when that subtree is not complete (or not kept).
    fn node(&self, level: u32, index: u64) -> Option<Hash32>;
}

/// The largest power of two strictly below `n` (n ≥ 2).
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// `MTH(D[begin:end])` for a range the RFC's recursion produces (`begin` a multiple of the
/// largest power of two not above `end - begin`): complete subtrees read, the right edge
/// combined from them.
pub fn subtree_hash(nodes: &impl Nodes, begin: u64, end: u64) -> Result<Hash32, MerkleError> {
    let n = end.checked_sub(begin).filter(|n| *n > 0).ok_or_else(|| {
        MerkleError::Invalid(format!("an empty or reversed range {begin}..{end}"))
    })?;
    if n.is_power_of_two() && begin.is_multiple_of(n) {
        let level = n.trailing_zeros();
        let index = begin >> level;
        return nodes
            .node(level, index)
            .ok_or(MerkleError::Missing { level, index });
    }
    let k = split(n);
    Ok(node(
        &subtree_hash(nodes, begin, begin + k)?,
        &subtree_hash(nodes, begin + k, end)?,
    ))
}

/// The root of the first `size` leaves (the empty root for 0).
pub fn root(nodes: &impl Nodes, size: u64) -> Result<Hash32, MerkleError> {
    if size == 0 {
        return Ok(empty_root());
    }
    subtree_hash(nodes, 0, size)
}

/// The audit path of leaf `index` in the tree of the first `size` leaves (RFC 9162 §2.1.3.1),
/// from the leaf up.
pub fn inclusion_proof(
    nodes: &impl Nodes,
    index: u64,
    size: u64,
) -> Result<Vec<Hash32>, MerkleError> {
    if index >= size {
        return Err(MerkleError::Invalid(format!(
            "leaf index {index} is not in a tree of {size}"
        )));
    }
    let mut proof = Vec::new();
    path(nodes, index, 0, size, &mut proof)?;
    Ok(proof)
}

/// PATH(m, D[begin:end]), appended bottom-up.
fn path(
    nodes: &impl Nodes,
    m: u64,
    begin: u64,
    end: u64,
    proof: &mut Vec<Hash32>,
) -> Result<(), MerkleError> {
    let n = end - begin;
    if n == 1 {
        return Ok(());
    }
    let k = split(n);
    if m < k {
        path(nodes, m, begin, begin + k, proof)?;
        proof.push(subtree_hash(nodes, begin + k, end)?);
    } else {
        path(nodes, m - k, begin + k, end, proof)?;
        proof.push(subtree_hash(nodes, begin, begin + k)?);
    }
    Ok(())
}

/// The proof that the tree of `from` leaves is a prefix of the tree of `to` leaves (RFC 9162
/// §2.1.4.1); empty when `from` is 0 or equals `to`.
pub fn consistency_proof(
    nodes: &impl Nodes,
    from: u64,
    to: u64,
) -> Result<Vec<Hash32>, MerkleError> {
    if from > to {
        return Err(MerkleError::Invalid(format!(
            "a tree of {from} cannot be a prefix of a tree of {to}"
        )));
    }
    let mut proof = Vec::new();
    if from > 0 && from < to {
        subproof(nodes, from, 0, to, true, &mut proof)?;
    }
    Ok(proof)
}

/// SUBPROOF(m, D[begin:end], b), appended bottom-up.
fn subproof(
    nodes: &impl Nodes,
    m: u64,
    begin: u64,
    end: u64,
    whole: bool,
    proof: &mut Vec<Hash32>,
) -> Result<(), MerkleError> {
    let n = end - begin;
    if m == n {
        if !whole {
            proof.push(subtree_hash(nodes, begin, end)?);
        }
        return Ok(());
    }
    let k = split(n);
    if m <= k {
        subproof(nodes, m, begin, begin + k, whole, proof)?;
        proof.push(subtree_hash(nodes, begin + k, end)?);
    } else {
        subproof(nodes, m - k, begin + k, end, false, proof)?;
        proof.push(subtree_hash(nodes, begin, begin + k)?);
    }
    Ok(())
}

/// RFC 9162 §2.1.3.2: does `proof` show `leaf` at `index` in the tree of `size` with `root`?
pub fn verify_inclusion(
    leaf: &Hash32,
    index: u64,
    size: u64,
    proof: &[Hash32],
    root: &Hash32,
) -> bool {
    if index >= size {
        return false;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && &r == root
}

/// RFC 9162 §2.1.4.2: does `proof` show the tree of `from` leaves with `from_root` to be a
/// prefix of the tree of `to` leaves with `to_root`? (From an empty tree: any tree, with an
/// empty proof; between equal sizes: equal roots, with an empty proof.)
pub fn verify_consistency(
    from: u64,
    to: u64,
    from_root: &Hash32,
    to_root: &Hash32,
    proof: &[Hash32],
) -> bool {
    if from > to {
        return false;
    }
    if from == 0 {
        return proof.is_empty();
    }
    if from == to {
        return proof.is_empty() && from_root == to_root;
    }
    if proof.is_empty() {
        return false;
    }
    let mut path: Vec<Hash32> = Vec::with_capacity(proof.len() + 1);
    if from.is_power_of_two() {
        path.push(*from_root);
    }
    path.extend_from_slice(proof);
    let (mut f, mut s) = (from - 1, to - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = node(c, &fr);
            sr = node(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    &fr == from_root && &sr == to_root && s == 0
}

/// Every complete subtree of a tree grown leaf by leaf, in memory: what a store's tiles hold.
#[derive(Debug, Clone, Default)]
pub struct MemoryTree {
    levels: Vec<Vec<Hash32>>,
}

impl MemoryTree {
    /// An empty tree.
    pub fn new() -> MemoryTree {
        MemoryTree::default()
    }

    /// Appends a leaf, completing the subtrees it completes; returns them, lowest first, as
    /// `(level, index, hash)` (the leaf itself first): what a store writes for this leaf.
    pub fn push(&mut self, leaf: Hash32) -> Vec<(u32, u64, Hash32)> {
        let mut done = Vec::new();
        let mut hash = leaf;
        let mut level = 0usize;
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            let row = &mut self.levels[level];
            row.push(hash);
            done.push((level as u32, row.len() as u64 - 1, hash));
            if row.len() % 2 == 1 {
                return done;
            }
            hash = node(&row[row.len() - 2], &row[row.len() - 1]);
            level += 1;
        }
    }

    /// Leaves so far.
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }
}

impl Nodes for MemoryTree {
    fn node(&self, level: u32, index: u64) -> Option<Hash32> {
        self.levels
            .get(level as usize)?
            .get(usize::try_from(index).ok()?)
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(data: &[u8]) -> Hash32 {
        Hash32::digest(&[&[0x00], data])
    }

    /// MTH straight from RFC 9162 §2.1.1's definition.
    fn mth(leaves: &[Hash32]) -> Hash32 {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                node(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    fn tree(n: u64) -> (MemoryTree, Vec<Hash32>) {
        let mut t = MemoryTree::new();
        let leaves: Vec<Hash32> = (0..n).map(|i| leaf(&i.to_be_bytes())).collect();
        for l in &leaves {
            t.push(*l);
        }
        (t, leaves)
    }

    #[test]
    fn roots_match_the_certificate_transparency_test_tree() {
        // The 8-leaf tree of RFC 6962's reference tests (certificate-transparency's
        // merkle_tree_test), root after each leaf.
        let data = [
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
        let mut t = MemoryTree::new();
        for (d, r) in data.iter().zip(roots) {
            t.push(leaf(&hex::decode(d).unwrap()));
            assert_eq!(hex::encode(root(&t, t.size()).unwrap().0), r);
        }
        assert_eq!(
            hex::encode(root(&t, 0).unwrap().0),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn every_inclusion_and_consistency_proof_of_small_trees_verifies() {
        let (t, leaves) = tree(70);
        for n in 1..=70u64 {
            let r = root(&t, n).unwrap();
            assert_eq!(r, mth(&leaves[..n as usize]), "root of {n}");
            for i in 0..n {
                let p = inclusion_proof(&t, i, n).unwrap();
                assert!(
                    verify_inclusion(&leaves[i as usize], i, n, &p, &r),
                    "{i} in {n}"
                );
                // The wrong leaf does not verify.
                let other = leaves[((i + 1) % n) as usize];
                assert!(n == 1 || !verify_inclusion(&other, i, n, &p, &r));
                // (The size is not checked here beyond the path's shape: a checkpoint signs
                // the size with the root.)
            }
            for m in 0..=n {
                let p = consistency_proof(&t, m, n).unwrap();
                let rm = root(&t, m).unwrap();
                assert!(verify_consistency(m, n, &rm, &r, &p), "{m} -> {n}");
                if m > 0 && m < n {
                    // Another old root, or a tampered proof, does not verify.
                    let wrong = mth(&leaves[1..=m as usize]);
                    assert!(!verify_consistency(m, n, &wrong, &r, &p), "{m} -> {n}");
                    let mut bad = p.clone();
                    bad[0].0[0] ^= 1;
                    assert!(!verify_consistency(m, n, &rm, &r, &bad), "{m} -> {n}");
                }
            }
        }
    }

    #[test]
    fn a_tampered_path_or_leaf_fails_and_bad_parameters_are_refused() {
        let (t, leaves) = tree(13);
        let r = root(&t, 13).unwrap();
        let mut p = inclusion_proof(&t, 5, 13).unwrap();
        p[2].0[31] ^= 0x80;
        assert!(!verify_inclusion(&leaves[5], 5, 13, &p, &r));
        let p = inclusion_proof(&t, 5, 13).unwrap();
        assert!(!verify_inclusion(&leaves[5], 5, 13, &p[..p.len() - 1], &r));
        assert!(!verify_inclusion(&leaves[5], 13, 13, &p, &r));
        assert!(matches!(
            inclusion_proof(&t, 13, 13),
            Err(MerkleError::Invalid(_))
        ));
        assert!(matches!(
            consistency_proof(&t, 9, 4),
            Err(MerkleError::Invalid(_))
        ));
        // A tree asked beyond what it holds: the missing node is named.
        assert!(matches!(
            inclusion_proof(&t, 3, 20),
            Err(MerkleError::Missing { .. })
        ));
    }

    #[test]
    fn push_reports_the_subtrees_each_leaf_completes() {
        let mut t = MemoryTree::new();
        let l: Vec<Hash32> = (0..4u8).map(|i| leaf(&[i])).collect();
        assert_eq!(t.push(l[0]).len(), 1);
        let done = t.push(l[1]);
        assert_eq!(done.len(), 2);
        assert_eq!(done[1], (1, 0, node(&l[0], &l[1])));
        t.push(l[2]);
        let done = t.push(l[3]);
        assert_eq!(done.iter().map(|d| d.0).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(done[2].2, root(&t, 4).unwrap());
    }
}
