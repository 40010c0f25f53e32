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
pub fn subtree_hash(
    nodes: &(impl Nodes + ?Sized),
    begin: u64,
    end: u64,
) -> Result<Hash32, MerkleError> {
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
pub fn root(nodes: &(impl Nodes + ?Sized), size: u64) -> Result<Hash32, MerkleError> {
    if size == 0 {
        return Ok(empty_root());
    }
    subtree_hash(nodes, 0, size)
}

/// The audit path of leaf `index` in the tree of the first `size` leaves (RFC 9162 §2.1.3.1),
/// from the leaf up.
pub fn inclusion_proof(
    nodes: &(impl Nodes + ?Sized),
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
    nodes: &(impl Nodes + ?Sized),
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
    nodes: &(impl Nodes + ?Sized),
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
    nodes: &(impl Nodes + ?Sized),
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

/// Tiles are 2^8 hashes wide and 8 levels high (C2SP tlog-tiles).
pub const TILE_HEIGHT: u32 = 8;
/// Hashes in a full tile.
pub const TILE_WIDTH: u64 = 1 << TILE_HEIGHT;

/// A tile: the hashes at tree level `8·level`, indices `index·256 .. index·256 + width`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TileId {
    /// The tile level (tree level / 8).
    pub level: u32,
    /// The tile's index within its level.
    pub index: u64,
    /// Hashes in it (256 unless it is the partial right edge).
    pub width: u64,
}

impl TileId {
    /// Its path per C2SP tlog-tiles: `tile/<L>/<N>[.p/<W>]`, `N` in three-digit groups, all but
    /// the last prefixed `x` (`tile/0/x001/x234/067.p/8`).
    pub fn path(&self) -> String {
        let mut groups = vec![format!("{:03}", self.index % 1000)];
        let mut n = self.index / 1000;
        while n > 0 {
            groups.push(format!("x{:03}", n % 1000));
            n /= 1000;
        }
        groups.reverse();
        let partial = if self.width < TILE_WIDTH {
            format!(".p/{}", self.width)
        } else {
            String::new()
        };
        format!("tile/{}/{}{partial}", self.level, groups.join("/"))
    }

    /// Parses a path made by [`TileId::path`] (strictly: the canonical form only).
    pub fn parse(path: &str) -> Result<TileId, MerkleError> {
        let bad = || MerkleError::Invalid(format!("{path:?} is not a tile path"));
        let rest = path.strip_prefix("tile/").ok_or_else(bad)?;
        let (level, rest) = rest.split_once('/').ok_or_else(bad)?;
        let level: u32 = level.parse().map_err(|_| bad())?;
        if level > 7 || level.to_string() != rest_level(path) {
            return Err(bad());
        }
        let (groups, width) = match rest.split_once(".p/") {
            Some((g, w)) => {
                let w: u64 = w.parse().map_err(|_| bad())?;
                if w == 0
                    || w >= TILE_WIDTH
                    || w.to_string() != rest.rsplit('/').next().unwrap_or("")
                {
                    return Err(bad());
                }
                (g, w)
            }
            None => (rest, TILE_WIDTH),
        };
        let parts: Vec<&str> = groups.split('/').collect();
        let mut index: u64 = 0;
        for (i, part) in parts.iter().enumerate() {
            let digits = if i + 1 < parts.len() {
                part.strip_prefix('x').ok_or_else(bad)?
            } else {
                part
            };
            if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            let d: u64 = digits.parse().map_err(|_| bad())?;
            index = index
                .checked_mul(1000)
                .and_then(|v| v.checked_add(d))
                .ok_or_else(bad)?;
        }
        let id = TileId {
            level,
            index,
            width,
        };
        if id.path() != path {
            return Err(bad());
        }
        Ok(id)
    }
}

/// The level as written in a tile path (`tile/<L>/…`).
fn rest_level(path: &str) -> &str {
    path.split('/').nth(1).unwrap_or("")
}

/// The tiles holding the stored hashes of a tree of `size` leaves: for each tile level, the
/// full tiles and the partial one at the right edge.
pub fn tiles_of(size: u64) -> Vec<TileId> {
    let mut out = Vec::new();
    let mut level = 0;
    let mut n = size; // hashes stored at tree level 8·level
    while n > 0 {
        for index in 0..n / TILE_WIDTH {
            out.push(TileId {
                level,
                index,
                width: TILE_WIDTH,
            });
        }
        if !n.is_multiple_of(TILE_WIDTH) {
            out.push(TileId {
                level,
                index: n / TILE_WIDTH,
                width: n % TILE_WIDTH,
            });
        }
        n /= TILE_WIDTH;
        level += 1;
    }
    out
}

/// The tiles (each with the width it must have at least) that computing `f` over a tree
/// needs: `f` is run once over placeholder hashes (which nodes a root or proof reads depends
/// only on sizes and indices), every node it asks for mapped to its tile.
pub fn tiles_needed<T>(
    f: impl FnOnce(&dyn Nodes) -> Result<T, MerkleError>,
) -> Result<Vec<TileId>, MerkleError> {
    struct Recorder(std::cell::RefCell<Vec<(u32, u64)>>);
    impl Nodes for Recorder {
        fn node(&self, level: u32, index: u64) -> Option<Hash32> {
            self.0.borrow_mut().push((level, index));
            Some(Hash32::ZERO)
        }
    }
    let r = Recorder(Default::default());
    f(&r)?;
    let mut need: std::collections::BTreeMap<(u32, u64), u64> = Default::default();
    for (level, index) in r.0.into_inner() {
        let h = level % TILE_HEIGHT;
        let first = index << h; // the first stored hash at level 8·(level / 8)
        let last = ((index + 1) << h) - 1;
        let tile = first / TILE_WIDTH;
        let width = last - tile * TILE_WIDTH + 1;
        let w = need.entry((level / TILE_HEIGHT, tile)).or_default();
        *w = (*w).max(width);
    }
    Ok(need
        .into_iter()
        .map(|((level, index), width)| TileId {
            level,
            index,
            width,
        })
        .collect())
}

/// Complete subtree hashes computed from tiles: a node at tree level `l` is the root of the
/// `2^(l mod 8)` stored hashes below it in its tile.
#[derive(Debug, Clone, Default)]
pub struct TileNodes(pub std::collections::HashMap<(u32, u64), Vec<Hash32>>);

impl Nodes for TileNodes {
    fn node(&self, level: u32, index: u64) -> Option<Hash32> {
        let h = level % TILE_HEIGHT;
        let first = index << h;
        let tile = self.0.get(&(level / TILE_HEIGHT, first / TILE_WIDTH))?;
        let from = usize::try_from(first % TILE_WIDTH).ok()?;
        let hashes = tile.get(from..from + (1usize << h))?;
        Some(perfect_root(hashes))
    }
}

/// The root of a power-of-two number of hashes (a complete subtree from its bottom row).
pub fn perfect_root(hashes: &[Hash32]) -> Hash32 {
    let mut row = hashes.to_vec();
    while row.len() > 1 {
        row = row.chunks(2).map(|p| node(&p[0], &p[1])).collect();
    }
    row[0]
}

/// The right edge of a growing tree (a compact range): the roots of its complete subtrees,
/// largest first — one per set bit of its size — so its root at any size takes O(log n)
/// memory, as a verifier streaming the leaves needs.
#[derive(Debug, Clone, Default)]
pub struct Frontier {
    size: u64,
    hashes: Vec<Hash32>,
}

impl Frontier {
    /// Appends a leaf.
    pub fn push(&mut self, leaf: Hash32) {
        let mut h = leaf;
        let mut s = self.size;
        while s & 1 == 1 {
            let left = self
                .hashes
                .pop()
                .expect("one subtree per set bit of the size");
            h = node(&left, &h);
            s >>= 1;
        }
        self.hashes.push(h);
        self.size += 1;
    }

    /// Leaves so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The root of the leaves so far.
    pub fn root(&self) -> Hash32 {
        let mut it = self.hashes.iter().rev();
        match it.next() {
            None => empty_root(),
            Some(last) => it.fold(*last, |r, h| node(h, &r)),
        }
    }
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

    /// The tiles of a [`MemoryTree`] (stored hashes at levels 0, 8, 16…).
    fn tiles(t: &MemoryTree, ids: &[TileId]) -> TileNodes {
        let mut m = TileNodes::default();
        for id in ids {
            let hashes = (0..id.width)
                .map(|i| {
                    t.node(id.level * TILE_HEIGHT, id.index * TILE_WIDTH + i)
                        .unwrap()
                })
                .collect();
            m.0.insert((id.level, id.index), hashes);
        }
        m
    }

    #[test]
    fn proofs_from_the_tiles_they_name_equal_proofs_from_every_node() {
        let (t, leaves) = tree(70_000);
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        for _ in 0..200 {
            let size = 1 + next(70_000);
            let index = next(size);
            let need = tiles_needed(|n| inclusion_proof(n, index, size)).unwrap();
            // A proof reads a few tiles, never the tree.
            assert!(need.len() <= 6, "{need:?}");
            let from_tiles = tiles(&t, &need);
            let p = inclusion_proof(&from_tiles, index, size).unwrap();
            assert_eq!(p, inclusion_proof(&t, index, size).unwrap());
            let r = root(&tiles(&t, &tiles_needed(|n| root(n, size)).unwrap()), size).unwrap();
            assert!(verify_inclusion(
                &leaves[index as usize],
                index,
                size,
                &p,
                &r
            ));
            let from = next(size + 1);
            let need = tiles_needed(|n| consistency_proof(n, from, size)).unwrap();
            let p = consistency_proof(&tiles(&t, &need), from, size).unwrap();
            assert_eq!(p, consistency_proof(&t, from, size).unwrap());
        }
        // Every tile of the tree: 273 full level-0 tiles and a partial one of 112 leaves; the
        // 273 complete level-8 subtrees fill a level-1 tile and 17 of the next; one complete
        // level-16 subtree.
        let all = tiles_of(70_000);
        assert_eq!(all.iter().filter(|t| t.level == 0).count(), 274);
        assert_eq!(
            all.iter()
                .filter(|t| t.level == 1)
                .map(|t| t.width)
                .collect::<Vec<_>>(),
            [256, 17]
        );
        assert_eq!(
            all.iter()
                .filter(|t| t.level == 2)
                .map(|t| t.width)
                .collect::<Vec<_>>(),
            [1]
        );
    }

    #[test]
    fn tile_paths_are_c2sp_tlog_tiles_paths() {
        let cases = [
            (0, 0, 256, "tile/0/000"),
            (0, 1_234_067, 256, "tile/0/x001/x234/067"),
            (1, 5, 8, "tile/1/005.p/8"),
            (2, 1000, 255, "tile/2/x001/000.p/255"),
        ];
        for (level, index, width, path) in cases {
            let id = TileId {
                level,
                index,
                width,
            };
            assert_eq!(id.path(), path);
            assert_eq!(TileId::parse(path).unwrap(), id);
        }
        for bad in [
            "tile/0/1",
            "tile/0/x1/000",
            "tile/0/001/002",
            "tile/0/000.p/0",
            "tile/0/000.p/256",
            "tile/0/000.p/08",
            "tile/8/000",
            "tile/00/000",
            "tiles/0/000",
            "tile/0/x000/001",
        ] {
            assert!(TileId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_frontier_root_is_the_tree_root_at_every_size() {
        let (t, leaves) = tree(300);
        let mut f = Frontier::default();
        assert_eq!(f.root(), empty_root());
        for (i, l) in leaves.iter().enumerate() {
            f.push(*l);
            assert_eq!(f.size(), i as u64 + 1);
            assert_eq!(f.root(), root(&t, i as u64 + 1).unwrap(), "{}", i + 1);
        }
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
