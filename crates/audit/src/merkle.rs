//! A tenant's Merkle tree (RFC 9162) from the store: the tiles a root or proof needs are read
//! (level 0 from the records' leaf hashes, higher levels from the stored nodes), and
//! vigil-core's `merkle` does the rest. [`maintain`] stores the complete subtrees at levels 8,
//! 16, 24… that a tree of a given size has, so a proof at a million leaves reads a few tiles,
//! never the tree.

use crate::AuditError;
use vigil_core::hash::Hash32;
use vigil_core::ids::TenantId;
use vigil_core::merkle::{self, TileId, TileNodes, TILE_HEIGHT, TILE_WIDTH};
use vigil_store::Store;

fn store_err(what: &str) -> impl FnOnce(vigil_store::StoreError) -> AuditError + '_ {
    move |source| AuditError::Store {
        what: what.to_string(),
        source,
    }
}

/// The hashes of one tile: its stored blob when one that wide is kept, else read from the
/// leaves or nodes it is made of; a store that lacks some of them (records deleted, or nodes
/// not stored yet) is an error naming the first missing node, never a shorter tile.
pub async fn tile(
    store: &dyn Store,
    tenant: &TenantId,
    id: TileId,
) -> Result<Vec<Hash32>, AuditError> {
    Ok(tiles(store, tenant, &[id]).await?.remove(0))
}

/// Tiles, each as [`tile`] reads it: the kept ones in one statement (a proof at a million
/// leaves names about five), any other from its rows, concurrently.
async fn tiles(
    store: &dyn Store,
    tenant: &TenantId,
    ids: &[TileId],
) -> Result<Vec<Vec<Hash32>>, AuditError> {
    let asked: Vec<(u32, u64, u64)> = ids.iter().map(|t| (t.level, t.index, t.width)).collect();
    let kept = store
        .merkle_tiles(tenant, &asked)
        .await
        .map_err(store_err("reading Merkle tiles"))?;
    futures::future::try_join_all(ids.iter().zip(kept).map(|(id, k)| async move {
        match k {
            Some(hashes) => Ok(hashes),
            None => unstored_tile(store, tenant, *id).await,
        }
    }))
    .await
}

/// A tile read from the leaves or nodes it is made of.
async fn unstored_tile(
    store: &dyn Store,
    tenant: &TenantId,
    id: TileId,
) -> Result<Vec<Hash32>, AuditError> {
    let first = id.index * TILE_WIDTH;
    let hashes = if id.level == 0 {
        store
            .leaf_hashes(tenant, first as i64 + 1, (first + id.width) as i64)
            .await
            .map_err(store_err("reading leaf hashes"))?
    } else {
        store
            .merkle_nodes(tenant, id.level * TILE_HEIGHT, first, first + id.width)
            .await
            .map_err(store_err("reading Merkle nodes"))?
    };
    if hashes.len() as u64 != id.width {
        return Err(AuditError::Proof(merkle::MerkleError::Missing {
            level: id.level * TILE_HEIGHT,
            index: first + hashes.len() as u64,
        }));
    }
    Ok(hashes)
}

/// Runs `f` over the tiles it needs, read from the store (see [`tiles`]).
async fn with_tiles<T>(
    store: &dyn Store,
    tenant: &TenantId,
    f: impl Fn(&dyn merkle::Nodes) -> Result<T, merkle::MerkleError>,
) -> Result<T, AuditError> {
    let ids = merkle::tiles_needed(&f)?;
    let tiles = tiles(store, tenant, &ids).await?;
    let nodes = TileNodes(
        ids.iter()
            .map(|id| (id.level, id.index))
            .zip(tiles)
            .collect(),
    );
    Ok(f(&nodes)?)
}

/// The inclusion proof of the record at seq `index + 1` in the tree of `size` records, and
/// that tree's root, from one read of the tiles both need.
pub async fn inclusion_with_root(
    store: &dyn Store,
    tenant: &TenantId,
    index: u64,
    size: u64,
) -> Result<(Vec<Hash32>, Hash32), AuditError> {
    with_tiles(store, tenant, |n| {
        Ok((
            merkle::inclusion_proof(n, index, size)?,
            merkle::root(n, size)?,
        ))
    })
    .await
}

/// The consistency proof between the trees of `from` and `to` records, and both roots, from
/// one read of the tiles they need.
pub async fn consistency_with_roots(
    store: &dyn Store,
    tenant: &TenantId,
    from: u64,
    to: u64,
) -> Result<(Vec<Hash32>, Hash32, Hash32), AuditError> {
    with_tiles(store, tenant, |n| {
        Ok((
            merkle::consistency_proof(n, from, to)?,
            merkle::root(n, from)?,
            merkle::root(n, to)?,
        ))
    })
    .await
}

/// The root of the tenant's first `size` records.
pub async fn root(store: &dyn Store, tenant: &TenantId, size: u64) -> Result<Hash32, AuditError> {
    with_tiles(store, tenant, |n| merkle::root(n, size)).await
}

/// The inclusion proof of the record at seq `index + 1` in the tree of `size` records.
pub async fn inclusion_proof(
    store: &dyn Store,
    tenant: &TenantId,
    index: u64,
    size: u64,
) -> Result<Vec<Hash32>, AuditError> {
    with_tiles(store, tenant, |n| merkle::inclusion_proof(n, index, size)).await
}

/// The consistency proof between the trees of `from` and `to` records.
pub async fn consistency_proof(
    store: &dyn Store,
    tenant: &TenantId,
    from: u64,
    to: u64,
) -> Result<Vec<Hash32>, AuditError> {
    with_tiles(store, tenant, |n| merkle::consistency_proof(n, from, to)).await
}

/// Stores every complete subtree at levels 8, 16, 24… of the tree of `size` records that is
/// not stored yet (each from the 256 hashes of the tile below it, which is stored as one blob
/// too), then the partial tile at each level's right edge, so that proofs in the tree of
/// `size` read one row per tile; returns how many nodes it stored.
pub async fn maintain(
    store: &dyn Store,
    tenant: &TenantId,
    size: u64,
) -> Result<usize, AuditError> {
    let mut stored = 0;
    let mut below = size; // hashes at the level below (level 0: the leaves)
    let mut level = 1u32; // tile level of the nodes being made
    while below >= TILE_WIDTH {
        let complete = below / TILE_WIDTH;
        let tree_level = level * TILE_HEIGHT;
        // Nodes stored so far at this level: they are stored in order, so the first gap is
        // where to continue. The last few are looked at first (a checkpoint finds at most a
        // handful new); the whole level only when those are not there either.
        let read = |from: u64| async move {
            store
                .merkle_nodes(tenant, tree_level, from, complete)
                .await
                .map(|v| v.len() as u64)
                .map_err(store_err("reading Merkle nodes"))
        };
        let window = complete.saturating_sub(64);
        let have = match read(window).await? {
            0 if window > 0 => read(0).await?,
            n => window + n,
        };
        let mut made = Vec::new();
        let mut tiles = Vec::new();
        for index in have..complete {
            // Not kept yet: a tile is kept with the node above it.
            let hashes = unstored_tile(
                store,
                tenant,
                TileId {
                    level: level - 1,
                    index,
                    width: TILE_WIDTH,
                },
            )
            .await?;
            made.push((tree_level, index, merkle::perfect_root(&hashes)));
            tiles.push((level - 1, index, hashes));
            if made.len() >= 64 {
                stored += put(store, tenant, &mut tiles, &mut made).await?;
            }
        }
        stored += put(store, tenant, &mut tiles, &mut made).await?;
        below = complete;
        level += 1;
    }
    // The right edge: at each level, the hashes past the last full tile.
    let mut ids = Vec::new();
    let (mut n, mut level) = (size, 0u32);
    while n > 0 {
        if !n.is_multiple_of(TILE_WIDTH) {
            ids.push(TileId {
                level,
                index: n / TILE_WIDTH,
                width: n % TILE_WIDTH,
            });
        }
        n /= TILE_WIDTH;
        level += 1;
    }
    let mut edge = ids
        .iter()
        .zip(tiles(store, tenant, &ids).await?)
        .map(|(id, hashes)| (id.level, id.index, hashes))
        .collect();
    put(store, tenant, &mut edge, &mut Vec::new()).await?;
    Ok(stored)
}

/// Stores `tiles` (first: a node is only stored once the tile below it is) and `nodes`,
/// draining both; returns how many nodes it stored.
async fn put(
    store: &dyn Store,
    tenant: &TenantId,
    tiles: &mut Vec<(u32, u64, Vec<Hash32>)>,
    nodes: &mut Vec<(u32, u64, Hash32)>,
) -> Result<usize, AuditError> {
    store
        .put_merkle_tiles(tenant, tiles)
        .await
        .map_err(store_err("storing Merkle tiles"))?;
    tiles.clear();
    store
        .put_merkle_nodes(tenant, nodes)
        .await
        .map_err(store_err("storing Merkle nodes"))?;
    let n = nodes.len();
    nodes.clear();
    Ok(n)
}
