//! The store-outage drill: the audit service on Postgres through a TCP forwarder, under load
//! from clients that resend refused batches (as the producer does); the network between
//! service and store is cut (connections dropped, new ones refused) for a while, then healed.
//! What must hold: while the store is away the service answers 503 (nothing else), its
//! readiness turns false; after, it recovers by itself within the threshold; no acknowledged
//! event is lost and every chain verifies.

use super::proxy::{through, Proxy};
use super::{missing, scrape, start_audit, Load, LoadOptions, Report};
use clap::Args;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub(crate) struct StoreOutageDrillArgs {
    /// An empty Postgres database: postgres://… (the drill writes to it).
    #[arg(long, env = "VIGIL_DRILL_DATABASE_URL")]
    database_url: vigil_core::DatabaseUrl,
    /// How long the store stays unreachable.
    #[arg(long, default_value = "5s", value_parser = crate::duration_arg::millis)]
    outage: Duration,
    /// Tenants.
    #[arg(long, default_value_t = 5)]
    tenants: u64,
    /// Load clients.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// After the store is back, the service must accept writes again within this.
    #[arg(long, default_value = "10s", value_parser = crate::duration_arg::millis)]
    recovery_target: Duration,
    /// Write drill-store-outage.md and .json here.
    #[arg(long, value_name = "DIR")]
    report: Option<std::path::PathBuf>,
}

const METRICS: [&str; 5] = [
    "audit_events_processed_total",
    "http_requests_total",
    "vigil_db_pool_timeouts_total",
    "vigil_db_pool_connections",
    "process_resident_memory_bytes",
];

pub(crate) async fn run(a: StoreOutageDrillArgs) -> anyhow::Result<Report> {
    let mut r = Report::new(
        "store-outage",
        "network partition between the audit service and Postgres",
    );
    let url = a.database_url.expose().to_string();
    anyhow::ensure!(
        url.starts_with("postgres"),
        "the store-outage drill partitions the network to Postgres: give a postgres:// URL"
    );
    anyhow::ensure!(
        vigil_store::snapshot::is_empty(&url).await?,
        "the drill needs an empty store: {}",
        vigil_core::redact_url(&url)
    );
    let (_, upstream) = through(&url, "127.0.0.1:1".parse()?, 5432)?;
    let proxy = Proxy::start(upstream).await?;
    let (proxied, _) = through(&url, proxy.addr, 5432)?;
    r.setup = vec![
        ("store".into(), "Postgres through a TCP forwarder".into()),
        ("outage".into(), format!("{:?}", a.outage)),
        (
            "load".into(),
            format!("{} clients resending refused batches", a.clients),
        ),
    ];
    let work = tempfile::tempdir()?;
    let (base, service) = start_audit(&proxied, &work.path().join("data")).await?;
    let tenants: Vec<String> = (0..a.tenants).map(|t| format!("t{t:03}")).collect();
    let load = Load::start(
        &base,
        &tenants,
        LoadOptions {
            clients: a.clients,
            batch: 10,
            pause: Duration::from_millis(10),
            retry: true,
        },
    );
    r.step("service up, load started");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = scrape(&base).await;

    let injected = r.step("INJECT: network to the store cut");
    proxy.cut();
    let cut_at = Instant::now();
    let detected = wait_ready(&base, false, Duration::from_secs(60)).await;
    let detect_seconds = detected.map(|d| d.as_secs_f64());
    r.step(match detect_seconds {
        Some(d) => format!("detected: /readyz not ready after {d:.2}s"),
        None => "NOT detected: /readyz stayed ready".into(),
    });
    tokio::time::sleep(a.outage.saturating_sub(cut_at.elapsed())).await;
    let during = scrape(&base).await;
    let acked_before_heal = load.acked_now().values().map(Vec::len).sum::<usize>();
    r.step("store reachable again");
    proxy.heal();
    let healed = Instant::now();
    let ready_again = wait_ready(&base, true, Duration::from_secs(120)).await;
    // Recovered: the load's acknowledgements move again.
    let mut writes_again = None;
    while healed.elapsed() < Duration::from_secs(120) {
        if load.acked_now().values().map(Vec::len).sum::<usize>() > acked_before_heal {
            writes_again = Some(healed.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let recovered = r.step(match writes_again {
        Some(d) => format!(
            "recovered: writes acknowledged {:.2}s after the store came back",
            d.as_secs_f64()
        ),
        None => "NOT recovered: no write acknowledged".into(),
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (acked, tally) = load.stop().await;
    r.step("load stopped");
    let after = scrape(&base).await;
    service.stop().await?;
    drop(proxy);

    let (lost, checked) = missing(&url, &acked).await?;
    let intact = super::chains_intact(&url).await?;
    let (sent, failed, unexpected, abandoned) = (
        tally.sent.load(Ordering::Relaxed),
        tally.failed.load(Ordering::Relaxed),
        tally.unexpected.load(Ordering::Relaxed),
        tally.abandoned.load(Ordering::Relaxed),
    );
    r.metrics(&METRICS, [&before, &during, &after]);
    r.figure("detect_seconds", detect_seconds.unwrap_or(f64::NAN));
    r.figure(
        "ready_again_seconds",
        ready_again.map_or(f64::NAN, |d| d.as_secs_f64()),
    );
    r.figure(
        "writes_again_seconds",
        writes_again.map_or(f64::NAN, |d| d.as_secs_f64()),
    );
    r.figure("mttr_seconds", recovered - injected);
    r.figure("requests_sent", sent as f64);
    r.figure("requests_refused_503", (failed - unexpected) as f64);
    r.check(
        "acknowledged events lost",
        "0".into(),
        format!("{lost} of {checked} checked"),
        lost == 0 && checked > 0,
    );
    r.check(
        "answers other than 503 while the store was away",
        "0".into(),
        unexpected.to_string(),
        unexpected == 0,
    );
    r.check(
        "batches never acknowledged",
        "0".into(),
        abandoned.to_string(),
        abandoned == 0,
    );
    r.check(
        "outage detected by /readyz",
        "yes".into(),
        detect_seconds.map_or("no".into(), |d| format!("after {d:.2}s")),
        detect_seconds.is_some(),
    );
    r.check(
        "writes again after the store is back",
        format!("< {:?}", a.recovery_target),
        writes_again.map_or("never".into(), |d| format!("{:.2}s", d.as_secs_f64())),
        writes_again.is_some_and(|d| d < a.recovery_target),
    );
    r.check_chains(intact);
    r.conclude(a.report.as_deref())
}

/// Waits until `/readyz` is (or stops being) 200; how long it took, or `None` past `limit`.
async fn wait_ready(base: &str, ready: bool, limit: Duration) -> Option<Duration> {
    let (http, url) = (&reqwest::Client::new(), &format!("{base}/readyz"));
    super::wait_until(limit, move || async move {
        super::answers_ok(http, url).await == ready
    })
    .await
}
