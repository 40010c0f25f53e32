//! `vigil bench proofs`: Merkle proof generation at a large tenant — inclusion and
//! consistency proofs read from the store's tiles (the function the API calls) and over HTTP,
//! p50/p99 — and the time to store the tree's complete subtrees from scratch.

use anyhow::Context;
use clap::Args;
use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng};
use std::sync::Arc;
use std::time::Instant;
use vigil_core::ids::TenantId;
use vigil_store::Store;

#[derive(Args, Debug)]
pub(crate) struct ProofsArgs {
    /// The store; filled to --events in one tenant (t000) first if it holds fewer.
    #[arg(long)]
    database_url: vigil_core::DatabaseUrl,
    /// Events in the tenant.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Proofs to time per kind.
    #[arg(long, default_value_t = 2000)]
    proofs: usize,
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

fn line(name: &str, h: &Histogram<u64>, target: &str) {
    println!(
        "{name:>26}: p50 {:>6.3} ms  p99 {:>6.3} ms  max {:>6.3} ms  ({target})",
        ms(h, 0.5),
        ms(h, 0.99),
        h.max() as f64 / 1000.0
    );
}

pub(crate) async fn run(a: ProofsArgs) -> anyhow::Result<()> {
    let store = vigil_store::open(a.database_url.expose())
        .await
        .context("opening the store")?;
    crate::bench::fill(&store, a.events, 1).await?;
    let tenant = TenantId::parse("t000")?;
    let size = store.head(&tenant).await?.seq as u64;
    let started = Instant::now();
    let stored = vigil_audit::merkle::maintain(store.as_ref(), &tenant, size).await?;
    println!(
        "tree of {size} leaves: {stored} subtree hashes stored in {:.2} s (once; a checkpoint then stores a few)",
        started.elapsed().as_secs_f64()
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(14);
    let (mut inc, mut con) = (Histogram::<u64>::new(3)?, Histogram::<u64>::new(3)?);
    for _ in 0..a.proofs {
        let index = rng.gen_range(0..size);
        let t = Instant::now();
        vigil_audit::merkle::inclusion_with_root(store.as_ref(), &tenant, index, size).await?;
        inc.record(t.elapsed().as_micros() as u64)?;
        let from = rng.gen_range(1..=size);
        let t = Instant::now();
        vigil_audit::merkle::consistency_with_roots(store.as_ref(), &tenant, from, size).await?;
        con.record(t.elapsed().as_micros() as u64)?;
    }
    println!(
        "proof generation from the store ({}; proof and root(s) from one read of their tiles), {} of each at {size} leaves:",
        store.engine(),
        a.proofs
    );
    line("inclusion", &inc, "target p99 < 1 ms");
    line("consistency", &con, "target p99 < 2 ms");
    http(&a, &store, &tenant, size).await
}

/// The same over HTTP through the audit service (which signs a checkpoint at the head as it
/// starts): the endpoint's whole cost, record lookup and JSON included.
async fn http(
    a: &ProofsArgs,
    store: &Arc<dyn Store>,
    tenant: &TenantId,
    size: u64,
) -> anyhow::Result<()> {
    let service = crate::bench::Served::start(&a.database_url).await?;
    let base = &service.base;
    let client = reqwest::Client::new();
    let get = |path: String| {
        client
            .get(format!("{base}{path}"))
            .header("X-Tenant-ID", tenant.as_str())
            .header("X-Roles", "support")
            .send()
    };
    // The service signs a checkpoint over the head as it catches up.
    for _ in 0..600 {
        let r = get("/v1/checkpoints/latest".into()).await?;
        if r.status() == 200 && r.json::<serde_json::Value>().await?["size"].as_u64() == Some(size)
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(15);
    let (mut inc, mut con) = (Histogram::<u64>::new(3)?, Histogram::<u64>::new(3)?);
    for i in 0..a.proofs + 50 {
        let index = rng.gen_range(0..size);
        let id = store
            .scan(tenant, index as i64, 1)
            .await?
            .remove(0)
            .event_id;
        let t = Instant::now();
        let r = get(format!(
            "/v1/proofs/inclusion?event_id={id}&tree_size={size}"
        ))
        .await?;
        anyhow::ensure!(r.status() == 200, "inclusion: {}", r.status());
        r.bytes().await?;
        let took = t.elapsed().as_micros() as u64;
        let from = rng.gen_range(1..=size);
        let t = Instant::now();
        let r = get(format!("/v1/proofs/consistency?from={from}&to={size}")).await?;
        anyhow::ensure!(r.status() == 200, "consistency: {}", r.status());
        r.bytes().await?;
        if i >= 50 {
            inc.record(took)?;
            con.record(t.elapsed().as_micros() as u64)?;
        }
    }
    println!("over HTTP (after 50 warm-up requests each):");
    line(
        "GET /v1/proofs/inclusion",
        &inc,
        "record lookup + proof + JSON",
    );
    line(
        "GET /v1/proofs/consistency",
        &con,
        "proof + two roots + JSON",
    );
    service.stop().await
}
