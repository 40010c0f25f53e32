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

/// The hashes of one tile; a store that lacks some of them (records deleted, or nodes not
/// stored yet) is an error naming the first missing node, never a shorter tile.
pub async fn tile(
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

/// Runs `f` over the tiles it needs, read from the store (concurrently: a proof at a
/// million leaves names about five).
async fn with_tiles<T>(
    store: &dyn Store,
    tenant: &TenantId,
    f: impl Fn(&dyn merkle::Nodes) -> Result<T, merkle::MerkleError>,
) -> Result<T, AuditError> {
    let ids = merkle::tiles_needed(&f)?;
    let tiles =
        futures::future::try_join_all(ids.iter().map(|id| tile(store, tenant, *id))).await?;
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
/// not stored yet (each from the 256 hashes of the tile below it); returns how many it stored.
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
        for index in have..complete {
            let hashes = tile(
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
            if made.len() >= 256 {
                store
                    .put_merkle_nodes(tenant, &made)
                    .await
                    .map_err(store_err("storing Merkle nodes"))?;
                stored += made.len();
                made.clear();
            }
        }
        store
            .put_merkle_nodes(tenant, &made)
            .await
            .map_err(store_err("storing Merkle nodes"))?;
        stored += made.len();
        below = complete;
        level += 1;
    }
    Ok(stored)
}
