//! `vigil bench retention`: a retention purge of a large store of expired events — how long
//! it takes, how many bytes of values it removes and how much the database shrinks — and the
//! p99 of ingest into a live tenant while the purge runs against the same ingest without it.

use crate::bench::{bench_event, fill, validate};
use clap::Args;
use rand::SeedableRng;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vigil_core::ids::TenantId;
use vigil_core::time::Timestamp;

#[derive(Args, Debug)]
pub(crate) struct RetentionArgs {
    /// A fresh store: sqlite://PATH or postgres://… (filled with expired events first).
    #[arg(long)]
    database_url: vigil_core::DatabaseUrl,
    /// Expired events to purge.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Tenants they are spread over.
    #[arg(long, default_value_t = 10)]
    tenants: u64,
    /// Concurrent live clients, each sending a batch of 10 events every 10 ms.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// How long ingest is measured without a purge.
    #[arg(long, default_value = "20s", value_parser = crate::duration_arg::secs)]
    baseline: Duration,
}

/// Live ingest into its own tenant until `stop`; the latency of every request, in µs.
async fn live_load(
    sequencer: vigil_audit::sequencer::Sequencer,
    clients: usize,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Vec<u64> {
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (sequencer, stop) = (sequencer.clone(), Arc::clone(&stop));
        tasks.push(tokio::spawn(async move {
            let tenant = TenantId::parse(&format!("live{c}")).unwrap();
            let mut rng = rand::rngs::StdRng::seed_from_u64(1000 + c as u64);
            let mut i = 0u64;
            let mut lat = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                tick.tick().await;
                let batch: Vec<_> = (0..10)
                    .map(|_| {
                        i += 1;
                        let mut e = bench_event(&mut rng, i, &format!("live-{c}"));
                        e["event_id"] = uuid::Uuid::now_v7().to_string().into();
                        validate(e)
                    })
                    .collect();
                let t = Instant::now();
                sequencer
                    .submit_all(&tenant, batch, Timestamp::now())
                    .await
                    .expect("live ingest");
                lat.push(t.elapsed().as_micros() as u64);
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("a live client"));
    }
    all.sort_unstable();
    all
}

fn p(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)] as f64 / 1000.0
}

pub(crate) async fn run(a: RetentionArgs) -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let mut s = vigil_audit::AuditSettings::embedded(data.path().to_path_buf());
    s.database_url = a.database_url.clone();
    let w = vigil_audit::app::Writer::open(&s).await?;
    // Expired: `fill` dates them from 2026-09-21 on, 2.5 s apart per tenant.
    fill(&w.store, a.events, a.tenants).await?;
    w.sequencer.forget_heads();
    let cutoff = Timestamp::parse("2026-11-01T00:00:00Z")?;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));

    // Settle what the fill left behind (the write-ahead log, checkpoint catch-up), then warm
    // the live tenants up, so the baseline measures steady ingest.
    w.store.reclaim_space(false).await?;
    let warm = tokio::spawn(live_load(w.sequencer.clone(), a.clients, Arc::clone(&stop)));
    tokio::time::sleep(Duration::from_secs(10)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    warm.await?;
    stop.store(false, std::sync::atomic::Ordering::Relaxed);
    println!(
        "live ingest: {} clients x 10 events every 10 ms, {} s without a purge",
        a.clients,
        a.baseline.as_secs()
    );
    let load = tokio::spawn(live_load(w.sequencer.clone(), a.clients, Arc::clone(&stop)));
    tokio::time::sleep(a.baseline).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let without = load.await?;

    stop.store(false, std::sync::atomic::Ordering::Relaxed);
    let load = tokio::spawn(live_load(w.sequencer.clone(), a.clients, Arc::clone(&stop)));
    let started = Instant::now();
    let (mut records, mut bytes) = (0u64, 0u64);
    for t in 0..a.tenants {
        let tenant = TenantId::parse(&format!("t{t:03}"))?;
        let r = vigil_audit::retention::purge(
            &w.store,
            &w.checkpointer,
            &w.sequencer,
            &tenant,
            cutoff,
            "bench: retention",
            false,
        )
        .await?;
        records += r.records;
        bytes += r.bytes;
    }
    let purge_s = started.elapsed().as_secs_f64();
    let reclaim_started = Instant::now();
    let space = w.store.reclaim_space(false).await?;
    let reclaim_s = reclaim_started.elapsed().as_secs_f64();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let during = load.await?;
    // The same ingest again, after: the baseline on both sides of the purge.
    stop.store(false, std::sync::atomic::Ordering::Relaxed);
    let load = tokio::spawn(live_load(w.sequencer.clone(), a.clients, Arc::clone(&stop)));
    tokio::time::sleep(a.baseline).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let after = load.await?;
    // Maintenance, without live load: the full rewrite.
    let full_started = Instant::now();
    let full = w.store.reclaim_space(true).await?;
    let full_s = full_started.elapsed().as_secs_f64();
    w.sequencer.shutdown().await;

    println!(
        "purge on {}: {records} records in {purge_s:.1} s ({:.0} records/s), {:.1} MB of values removed",
        w.store.engine(),
        records as f64 / purge_s,
        bytes as f64 / 1e6
    );
    println!(
        "reclaim: {reclaim_s:.1} s, database {:.1} MB -> {:.1} MB ({:.1} MB returned to the file system)",
        space.before as f64 / 1e6,
        space.after as f64 / 1e6,
        space.freed() as f64 / 1e6
    );
    println!(
        "full rewrite (no live load): {full_s:.1} s, database {:.1} MB -> {:.1} MB ({:.1} MB returned)",
        full.before as f64 / 1e6,
        full.after as f64 / 1e6,
        full.freed() as f64 / 1e6
    );
    println!("| live ingest (batch of 10) | requests | p50 ms | p99 ms |");
    println!("|---|---|---|---|");
    for (name, lat) in [
        ("without a purge, before", &without),
        ("while the purge and the online reclaim run", &during),
        ("without a purge, after", &after),
    ] {
        println!(
            "| {name} | {} | {:.2} | {:.2} |",
            lat.len(),
            p(lat, 0.5),
            p(lat, 0.99)
        );
    }
    let worse = p(&without, 0.99).min(p(&after, 0.99));
    println!(
        "p99 ratio, during / the lower of before and after: {:.2} (target ≤ 1.5)",
        p(&during, 0.99) / worse
    );
    Ok(())
}
