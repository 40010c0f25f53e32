//! Merkle proofs (issue 14) from a real store on both engines: roots and proofs computed from
//! the tiles the store holds equal those of an in-memory tree over the same leaf hashes, and
//! verify; the complete subtrees above the leaves are stored once, by `maintain`; signed
//! checkpoints carry the root.

use super::common::*;
use vigil_audit::merkle;
use vigil_core::ids::TenantId;
use vigil_core::merkle::{verify_consistency, verify_inclusion, MemoryTree, Nodes};

async fn proofs_from_the_store_equal_the_in_memory_tree_and_verify(engine: Engine) {
    let app = spawn_app(engine).await;
    for b in 0..13 {
        let r = app.post_events("acme", &events(b * 100, 100)).await;
        assert!(r.status().is_success());
    }
    let store = vigil_store::open_existing(&app.db_url).await.unwrap();
    let tenant = TenantId::parse("acme").unwrap();
    let leaves = store.leaf_hashes(&tenant, 1, 10_000).await.unwrap();
    assert_eq!(leaves.len(), 1300);
    let mut mem = MemoryTree::new();
    for l in &leaves {
        mem.push(*l);
    }
    // The checkpoints the service signed carry the tree's root at their size (the checkpointer
    // keeps the stored subtrees up to date as it signs).
    let cp = store.latest_checkpoint(&tenant).await.unwrap().unwrap();
    assert_eq!(
        cp.checkpoint.root,
        Some(vigil_core::merkle::root(&mem, cp.checkpoint.size as u64).unwrap()),
        "the signed root at {}",
        cp.checkpoint.size
    );
    assert_eq!(
        vigil_core::checkpoint::root_in(&cp.note),
        cp.checkpoint.root
    );
    // What the checkpoints did not cover yet is stored on demand, once.
    assert!(
        merkle::maintain(store.as_ref(), &tenant, 1300)
            .await
            .unwrap()
            <= 5
    );
    assert_eq!(
        merkle::maintain(store.as_ref(), &tenant, 1300)
            .await
            .unwrap(),
        0
    );
    for (level, index) in [(8, 0), (8, 4)] {
        assert_eq!(
            store
                .merkle_nodes(&tenant, level, index, index + 1)
                .await
                .unwrap(),
            vec![mem.node(level, index).unwrap()]
        );
    }
    for size in [1u64, 255, 256, 257, 511, 512, 1000, 1300] {
        let root = merkle::root(store.as_ref(), &tenant, size).await.unwrap();
        assert_eq!(
            root,
            vigil_core::merkle::root(&mem, size).unwrap(),
            "{size}"
        );
        for index in [0, size / 3, size / 2, size - 1] {
            let p = merkle::inclusion_proof(store.as_ref(), &tenant, index, size)
                .await
                .unwrap();
            assert_eq!(
                p,
                vigil_core::merkle::inclusion_proof(&mem, index, size).unwrap()
            );
            assert!(verify_inclusion(
                &leaves[index as usize],
                index,
                size,
                &p,
                &root
            ));
        }
        for from in [0, 1, size / 2, size] {
            let p = merkle::consistency_proof(store.as_ref(), &tenant, from, size)
                .await
                .unwrap();
            let old = merkle::root(store.as_ref(), &tenant, from).await.unwrap();
            assert!(
                verify_consistency(from, size, &old, &root, &p),
                "{from} -> {size}"
            );
        }
    }
    // Beyond the chain: refused, not invented.
    assert!(merkle::inclusion_proof(store.as_ref(), &tenant, 1300, 1300)
        .await
        .is_err());
    assert!(merkle::root(store.as_ref(), &tenant, 1301).await.is_err());
}

on_both_engines!(proofs_from_the_store_equal_the_in_memory_tree_and_verify);
