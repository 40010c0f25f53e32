//! Merkle proofs (issue 14) from a real store on both engines: roots and proofs computed from
//! the tiles the store holds equal those of an in-memory tree over the same leaf hashes, and
//! verify; the complete subtrees above the leaves are stored once, by `maintain`; signed
//! checkpoints carry the root.

use super::common::*;
use serde_json::json;
use vigil_audit::merkle;
use vigil_core::hash::Hash32;
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

/// The tenant's latest checkpoint once it covers `size` records, opened with the service's key.
async fn signed_at(app: &TestApp, tenant: &str, size: i64) -> vigil_core::checkpoint::Checkpoint {
    let keys = app.get_json(tenant, "/v1/keys").await;
    let verifier = vigil_core::checkpoint::NoteVerifier::parse(
        keys["keys"][0]["verifier_key"].as_str().unwrap(),
    )
    .unwrap();
    for _ in 0..400 {
        let r = app.get(tenant, "/v1/checkpoints/latest").await;
        if r.status() == 200 {
            let cp: serde_json::Value = r.json().await.unwrap();
            if cp["size"].as_i64() == Some(size) {
                let opened = verifier.open(cp["note"].as_str().unwrap()).unwrap();
                assert_eq!(
                    cp["root"].as_str(),
                    opened.root.map(|r| r.to_hex()).as_deref()
                );
                return opened;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("no checkpoint at {size} for {tenant}");
}

fn hashes(v: &serde_json::Value) -> Vec<Hash32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|h| Hash32::from_hex(h.as_str().unwrap()).unwrap())
        .collect()
}

async fn leaves_of(app: &TestApp, tenant: &str) -> Vec<Hash32> {
    let store = vigil_store::open_existing(&app.db_url).await.unwrap();
    let t = TenantId::parse(tenant).unwrap();
    store.leaf_hashes(&t, 1, i64::MAX).await.unwrap()
}

/// Every index of every tree up to 40 records, and every (m, n) pair, through the endpoints;
/// the tiles a client fetches are the tree's nodes; the independent verifier (written from
/// the RFC, no Vigil code) agrees.
async fn proof_endpoints_prove_every_index_of_small_trees(engine: Engine) {
    let app = spawn_app_with(engine, |s| s.checkpoint_every = 40).await;
    let mut ids = Vec::new();
    for i in 0..40 {
        let e = event(i);
        ids.push(e["event_id"].as_str().unwrap().to_owned());
        assert_eq!(app.post_events("acme", &json!([e])).await.status(), 200);
    }
    let cp = signed_at(&app, "acme", 40).await;
    let leaves = leaves_of(&app, "acme").await;
    let mut mem = MemoryTree::new();
    for l in &leaves {
        mem.push(*l);
    }
    assert_eq!(cp.root, Some(vigil_core::merkle::root(&mem, 40).unwrap()));
    for n in 1..=40u64 {
        let root = vigil_core::merkle::root(&mem, n).unwrap();
        for i in 0..n {
            let p = app
                .get_json(
                    "acme",
                    &format!(
                        "/v1/proofs/inclusion?event_id={}&tree_size={n}",
                        ids[i as usize]
                    ),
                )
                .await;
            assert_eq!(p["leaf_index"], i);
            assert_eq!(p["seq"], i + 1);
            assert_eq!(p["root"], root.to_hex());
            assert_eq!(p["leaf_hash"], leaves[i as usize].to_hex());
            // The note comes with the proof only at the signed size.
            assert_eq!(p["checkpoint"].is_string(), n == 40);
            assert!(
                verify_inclusion(&leaves[i as usize], i, n, &hashes(&p["proof"]), &root),
                "{i} in {n}"
            );
        }
        for m in 1..=n {
            let c = app
                .get_json("acme", &format!("/v1/proofs/consistency?from={m}&to={n}"))
                .await;
            let old = vigil_core::merkle::root(&mem, m).unwrap();
            assert_eq!(c["from_root"], old.to_hex());
            assert_eq!(c["to_root"], root.to_hex());
            assert!(
                verify_consistency(m, n, &old, &root, &hashes(&c["proof"])),
                "{m} -> {n}"
            );
        }
    }
    // Defaults: the latest checkpoint's size, with its note.
    let p = app
        .get_json("acme", &format!("/v1/proofs/inclusion?event_id={}", ids[7]))
        .await;
    assert_eq!(p["tree_size"], 40);
    assert_eq!(
        vigil_core::checkpoint::root_in(p["checkpoint"].as_str().unwrap()),
        cp.root
    );
    let c = app.get_json("acme", "/v1/proofs/consistency?from=9").await;
    assert_eq!(c["to"], 40);
    // The level-0 tile (partial: 40 of 256 hashes) is the leaves; it is immutable.
    let r = app.get("acme", "/v1/tiles/tile/0/000.p/40").await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("immutable"));
    let body = r.bytes().await.unwrap();
    assert_eq!(
        body.chunks(32)
            .map(|c| Hash32(c.try_into().unwrap()))
            .collect::<Vec<_>>(),
        leaves
    );
    assert_eq!(
        app.get("acme", "/v1/tiles/tile/0/000.p/3")
            .await
            .bytes()
            .await
            .unwrap()
            .len(),
        96
    );
    // The independent verifier recomputes the root by the RFC's definition and checks every
    // inclusion proof and a set of consistency proofs by the RFC's algorithms.
    let (code, text) = independent_verify(app.addr, "acme", &[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("Merkle root at 40 verified; 40 inclusion"),
        "{text}"
    );
}

/// GET `path` is refused with `status` in the error shape; its message.
async fn refused(app: &TestApp, status: u16, path: &str) -> String {
    let r = app.get("acme", path).await;
    let got = r.status().as_u16();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(got, status, "{path}: {body}");
    assert!(
        body["code"].is_string() && body["message"].is_string(),
        "{path}: {body}"
    );
    body["message"].as_str().unwrap().to_owned()
}

/// Bad parameters are refused in the error shape; nothing beyond a signed tree is served.
async fn proof_endpoints_refuse_bad_parameters(engine: Engine) {
    let app = spawn_app_with(engine, |s| s.checkpoint_every = 10).await;
    // No checkpoint yet: no signed tree to prove anything in.
    let first = event(0);
    let id = first["event_id"].as_str().unwrap().to_owned();
    assert_eq!(app.post_events("acme", &json!([first])).await.status(), 200);
    assert!(
        refused(&app, 409, &format!("/v1/proofs/inclusion?event_id={id}"))
            .await
            .contains("no checkpoint")
    );
    refused(&app, 409, "/v1/proofs/consistency?from=1").await;
    refused(&app, 409, "/v1/tiles/tile/0/000.p/1").await;
    assert_eq!(app.post_events("acme", &events(1, 19)).await.status(), 200);
    signed_at(&app, "acme", 20).await;
    assert_eq!(app.post_events("acme", &events(20, 5)).await.status(), 200);
    // Beyond the latest checkpoint (20 records; 25 stored): refused, never an unsigned root.
    let late = app.get_json("acme", "/v1/events?limit=1").await["events"][0]["event_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        refused(&app, 409, &format!("/v1/proofs/inclusion?event_id={late}"))
            .await
            .contains("later checkpoint")
    );
    assert!(refused(
        &app,
        409,
        &format!("/v1/proofs/inclusion?event_id={id}&tree_size=21")
    )
    .await
    .contains("beyond the latest checkpoint"));
    refused(
        &app,
        400,
        &format!("/v1/proofs/inclusion?event_id={id}&tree_size=0"),
    )
    .await;
    refused(
        &app,
        400,
        &format!("/v1/proofs/inclusion?event_id={id}&tree_size=-1"),
    )
    .await;
    refused(
        &app,
        400,
        &format!("/v1/proofs/inclusion?event_id={id}&tree_size=1&limit=3"),
    )
    .await;
    refused(&app, 400, "/v1/proofs/inclusion").await;
    refused(&app, 400, "/v1/proofs/inclusion?event_id=not-a-uuid").await;
    refused(
        &app,
        404,
        "/v1/proofs/inclusion?event_id=0192f0c4-7a1b-7cde-8f00-123456789abc",
    )
    .await;
    refused(&app, 400, "/v1/proofs/consistency").await;
    refused(&app, 400, "/v1/proofs/consistency?from=0").await;
    refused(&app, 400, "/v1/proofs/consistency?from=abc").await;
    refused(&app, 400, "/v1/proofs/consistency?from=9&to=3").await;
    refused(&app, 409, "/v1/proofs/consistency?from=3&to=21").await;
    refused(&app, 409, "/v1/proofs/consistency?from=99999999999999999").await;
    refused(&app, 400, "/v1/tiles/tile/0/0").await;
    refused(&app, 400, "/v1/tiles/tile/0/000.p/256").await;
    refused(&app, 400, "/v1/tiles/tile/0/x000/000").await;
    refused(&app, 400, "/v1/tiles/tile/9/000").await;
    refused(&app, 400, "/v1/tiles/tile/0/000.p/020/x").await;
    refused(&app, 404, "/v1/tiles/tile/0/000").await; // a full tile the 20-record tree does not have
    refused(&app, 404, "/v1/tiles/tile/0/000.p/21").await;
    refused(&app, 404, "/v1/tiles/tile/1/000.p/1").await;
    assert_eq!(
        app.get("acme", "/v1/tiles/tile/0/000.p/20").await.status(),
        200
    );
    // Another tenant's tree is not this one's: it has none.
    let r = app.get("globex", "/v1/proofs/consistency?from=1").await;
    assert_eq!(r.status(), 409);
    // A role without audit_read is refused.
    let r = app
        .client
        .get(app.url("/v1/proofs/consistency?from=1"))
        .header("X-Tenant-ID", "acme")
        .header("X-Roles", "cashier")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // A reader (support) may prove.
    let r = app
        .client
        .get(app.url("/v1/proofs/consistency?from=1"))
        .header("X-Tenant-ID", "acme")
        .header("X-Roles", "support")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// A 100,000-event tenant: inclusion at random indices and consistency between random sizes,
/// read from a handful of tiles each, against an in-memory tree over the store's leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proofs_at_random_indices_of_a_100_000_event_tenant() {
    use rand::{Rng, SeedableRng};
    let app = spawn_app(Engine::Sqlite).await;
    let app = std::sync::Arc::new(app);
    let mut posters = Vec::new();
    for w in 0..4u64 {
        let app = app.clone();
        posters.push(tokio::spawn(async move {
            for b in 0..25 {
                let r = app
                    .post_events("acme", &events(w * 25_000 + b * 1000, 1000))
                    .await;
                assert_eq!(r.status(), 200);
            }
        }));
    }
    for p in posters {
        p.await.unwrap();
    }
    let cp = signed_at(&app, "acme", 100_000).await;
    let leaves = leaves_of(&app, "acme").await;
    assert_eq!(leaves.len(), 100_000);
    let mut mem = MemoryTree::new();
    for l in &leaves {
        mem.push(*l);
    }
    let root = cp.root.unwrap();
    assert_eq!(root, vigil_core::merkle::root(&mem, 100_000).unwrap());
    let store = vigil_store::open_existing(&app.db_url).await.unwrap();
    let tenant = TenantId::parse("acme").unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(14);
    for _ in 0..300 {
        let index = rng.gen_range(0..100_000u64);
        let record = store
            .scan(&tenant, index as i64, 1)
            .await
            .unwrap()
            .remove(0);
        let p = app
            .get_json(
                "acme",
                &format!("/v1/proofs/inclusion?event_id={}", record.event_id),
            )
            .await;
        let proof = hashes(&p["proof"]);
        assert!(proof.len() <= 17, "a path of at most ⌈log2 100,000⌉ hashes");
        assert_eq!(
            proof,
            vigil_core::merkle::inclusion_proof(&mem, index, 100_000).unwrap()
        );
        assert!(verify_inclusion(
            &record.compute_leaf_hash(),
            index,
            100_000,
            &proof,
            &root
        ));
    }
    for _ in 0..100 {
        let to = rng.gen_range(1..=100_000u64);
        let from = rng.gen_range(1..=to);
        let c = app
            .get_json(
                "acme",
                &format!("/v1/proofs/consistency?from={from}&to={to}"),
            )
            .await;
        let (old, new) = (
            vigil_core::merkle::root(&mem, from).unwrap(),
            vigil_core::merkle::root(&mem, to).unwrap(),
        );
        assert_eq!(c["from_root"], old.to_hex());
        assert_eq!(c["to_root"], new.to_hex());
        assert!(
            verify_consistency(from, to, &old, &new, &hashes(&c["proof"])),
            "{from} -> {to}"
        );
    }
    // A full tile at each stored level holds the tree's nodes.
    for (level, path, tree_level) in [(0, "0/389", 0u32), (1, "1/000", 8)] {
        let body = app
            .get("acme", &format!("/v1/tiles/tile/{path}"))
            .await
            .bytes()
            .await
            .unwrap();
        assert_eq!(body.len(), 256 * 32, "{level}");
        let first = if level == 0 { 389 * 256 } else { 0 };
        for (k, c) in body.chunks(32).enumerate() {
            assert_eq!(
                Some(Hash32(c.try_into().unwrap())),
                mem.node(tree_level, first + k as u64)
            );
        }
    }
}

/// The seqs 1..=`size` whose record a client cannot prove against the signed checkpoint: the
/// record as served is checked on its own (leaf hash recomputed from its content, payload
/// against commitments) and its inclusion proof against the root the pinned key signed.
async fn unproven(
    app: &TestApp,
    ids: &[String],
    verifier: &vigil_core::checkpoint::NoteVerifier,
) -> Vec<usize> {
    let cp = app.get_json("acme", "/v1/checkpoints/latest").await;
    let Ok(signed) = verifier.open(cp["note"].as_str().unwrap()) else {
        return (1..=ids.len()).collect(); // nothing can be proven against a forged note
    };
    let root = signed.root.unwrap();
    let mut bad = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let r = app.get("acme", &format!("/v1/events/{id}")).await;
        let record: Option<vigil_core::record::Record> = if r.status() == 200 {
            Some(r.json().await.unwrap())
        } else {
            None
        };
        let p = app
            .get(
                "acme",
                &format!(
                    "/v1/proofs/inclusion?event_id={id}&tree_size={}",
                    signed.size
                ),
            )
            .await;
        let proven = match (record, p.status().as_u16()) {
            (Some(record), 200) => {
                let p: serde_json::Value = p.json().await.unwrap();
                vigil_core::verify::check_record(&record).is_ok()
                    && verify_inclusion(
                        &record.compute_leaf_hash(),
                        i as u64,
                        signed.size as u64,
                        &hashes(&p["proof"]),
                        &root,
                    )
            }
            _ => false,
        };
        if !proven {
            bad.push(i + 1);
        }
    }
    bad
}

/// A service with 300 events in `acme` and a checkpoint over them: (app, event ids, the
/// signing key's verifier key).
async fn signed_300(engine: Engine) -> (TestApp, Vec<String>, String) {
    let app = spawn_app_with(engine, |s| s.checkpoint_every = 300).await;
    let body = events(0, 300);
    let ids = body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(app.post_events("acme", &body).await.status(), 200);
    signed_at(&app, "acme", 300).await;
    let keys = app.get_json("acme", "/v1/keys").await;
    let vkey = keys["keys"][0]["verifier_key"].as_str().unwrap().to_owned();
    (app, ids, vkey)
}

/// `vigil prove --url … --tenant acme --trusted-key KEY --event-id ID EXTRA…` (off the runtime).
async fn prove(app: &TestApp, vkey: &str, id: &str, extra: &[&str]) -> (i32, String) {
    let url = format!("http://{}", app.addr);
    let mut args: Vec<String> = [
        "prove",
        "--url",
        &url,
        "--tenant",
        "acme",
        "--event-id",
        id,
        "--trusted-key",
        vkey,
    ]
    .into_iter()
    .chain(extra.iter().copied())
    .map(str::to_owned)
    .collect();
    args.shrink_to_fit();
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        vigil_cli(&a)
    })
    .await
    .unwrap()
}

/// `vigil prove` proves an intact event against the pinned key, keeps the checkpoint it saw,
/// and on the next run proves the log only grew since; a key that did not sign proves nothing.
async fn vigil_prove_proves_an_event_and_the_logs_growth(engine: Engine) {
    let (app, ids, vkey) = signed_300(engine).await;
    let seen = app.dir.path().join("seen.note");
    let seen = seen.to_str().unwrap();
    let (code, out) = prove(&app, &vkey, &ids[41], &["--save-checkpoint", seen]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("seq 42") && out.contains("included in the tree of 300 records"),
        "{out}"
    );
    assert!(out.ends_with("PROVEN\n"), "{out}");
    assert_eq!(
        app.post_events("acme", &events(300, 300)).await.status(),
        200
    );
    signed_at(&app, "acme", 600).await;
    let (code, out) = prove(
        &app,
        &vkey,
        &ids[41],
        &["--checkpoint", seen, "--save-checkpoint", seen],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("included in the tree of 600 records"), "{out}");
    assert!(
        out.contains("consistent with the earlier checkpoint at 300"),
        "{out}"
    );
    assert!(std::fs::read_to_string(seen).unwrap().contains("\n600\n"));
    // A key that never signed these checkpoints proves nothing.
    let other = vigil_core::checkpoint::NoteSigner::new("vigil-audit", &[7; 32])
        .unwrap()
        .verifier()
        .to_vkey();
    let (code, out) = prove(&app, &other, &ids[41], &[]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no valid signature by a trusted key"), "{out}");
    // Usage and connection errors are exit 2.
    let (code, out) = vigil_cli(&[
        "prove",
        "--url",
        "http://127.0.0.1:1",
        "--tenant",
        "acme",
        "--event-id",
        &ids[0],
    ]);
    assert_eq!(code, 2, "{out}");
}

/// Every tampering `vigil verify` finds in a record is found through proofs too, by a client
/// that trusts only the signing key, and `vigil prove` says so (exit 1). (A rewritten
/// `chain_hash` column alone changes no record: proofs, over the leaves, still hold, and the
/// chain check and the console's link check name it.)
async fn tampering_is_found_through_proofs(engine: Engine) {
    // (SQL, the seqs that can no longer be proven: exactly those, or some when None)
    let cases: &[(&str, Option<&[usize]>)] = &[
        ("UPDATE events SET action = 'payment.refund' WHERE tenant_id = 'acme' AND seq = 7", Some(&[7])),
        ("UPDATE events SET payload = '{\"amount\":999}' WHERE tenant_id = 'acme' AND seq = 4", Some(&[4])),
        // A leaf column altered: the tree the server serves no longer leads to the signed root
        // for the records beside it.
        ("UPDATE events SET leaf_hash = chain_hash WHERE tenant_id = 'acme' AND seq = 11", None),
        ("DELETE FROM events WHERE tenant_id = 'acme' AND seq = 9", None),
        // The tail cut off: those records are gone, the ones before still prove against the
        // signed tree (its edge tiles were kept at the checkpoint), and verify finds the cut.
        ("DELETE FROM events WHERE tenant_id = 'acme' AND seq > 290", Some(&[291, 292, 293, 294, 295, 296, 297, 298, 299, 300])),
        ("UPDATE checkpoints SET note = replace(note, 'vigil-audit/acme', 'vigil-audit/acmf') WHERE tenant_id = 'acme'", None),
    ];
    for (sql, expect) in cases {
        let (app, ids, vkey) = signed_300(engine).await;
        let verifier = vigil_core::checkpoint::NoteVerifier::parse(&vkey).unwrap();
        assert_eq!(
            unproven(&app, &ids, &verifier).await,
            Vec::<usize>::new(),
            "before: {sql}"
        );
        execute_sql(engine, &app.db_url, sql).await;
        let bad = unproven(&app, &ids, &verifier).await;
        match expect {
            Some(seqs) => assert_eq!(&bad, seqs, "{sql}"),
            None => assert!(!bad.is_empty(), "{sql}: every record still proven"),
        }
        // `vigil prove` on the first record that no longer proves (one still there).
        if let Some(&seq) = bad
            .iter()
            .find(|&&s| !sql.starts_with("DELETE") || (s != 9 && s <= 290))
        {
            let (code, out) = prove(&app, &vkey, &ids[seq - 1], &[]).await;
            assert!(
                code == 1 || (code == 2 && out.contains("503")),
                "{sql}: {out}"
            );
        }
        let (code, out) = run_verify(&app.db_url, &["--tenant", "acme"]);
        assert_eq!(code, 1, "{sql}: {out}");
    }
    // A record rewritten with its hash columns recomputed to match (the chain then breaks at
    // the next record): its new leaf is not the one the signed tree holds.
    let (app, ids, vkey) = signed_300(engine).await;
    let verifier = vigil_core::checkpoint::NoteVerifier::parse(&vkey).unwrap();
    execute_sql(engine, &app.db_url, "UPDATE events SET occurred_at = '2026-01-01T00:00:00Z' WHERE tenant_id = 'acme' AND seq = 270").await;
    let store = vigil_store::open_existing(&app.db_url).await.unwrap();
    let t = TenantId::parse("acme").unwrap();
    let r = store.scan(&t, 269, 1).await.unwrap().remove(0);
    let leaf = r.compute_leaf_hash();
    let prev = Hash32::from_hex(&store.scan(&t, 268, 1).await.unwrap()[0].chain_hash).unwrap();
    let chain = vigil_core::chain::link(&prev, &leaf);
    execute_sql(engine, &app.db_url, &format!("UPDATE events SET leaf_hash = '{}', chain_hash = '{}' WHERE tenant_id = 'acme' AND seq = 270", leaf.to_hex(), chain.to_hex())).await;
    // The level-0 tile now holds the new leaf, so its neighbours' proofs fail as well; the
    // record itself is not proven.
    let bad = unproven(&app, &ids, &verifier).await;
    assert!(bad.contains(&270), "{bad:?}");
    let (code, out) = prove(&app, &vkey, &ids[269], &[]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("does not lead from the record's leaf to the signed root"),
        "{out}"
    );
}

on_both_engines!(
    proofs_from_the_store_equal_the_in_memory_tree_and_verify,
    proof_endpoints_prove_every_index_of_small_trees,
    proof_endpoints_refuse_bad_parameters,
    vigil_prove_proves_an_event_and_the_logs_growth,
    tampering_is_found_through_proofs,
);
