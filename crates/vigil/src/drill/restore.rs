//! The restore drill: a store with history, a service under load, a backup taken while it
//! writes, the store lost, restored from the backup and fully verified, the service back and
//! writing. Measures the RTO and proves nothing acknowledged before the backup was lost.

use super::{missing, scrape, start_audit, Load, LoadOptions, Report};
use crate::backup::{data_dir_key, restore_and_verify};
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use vigil_backup::{BackupKey, Location, Trust};

#[derive(Args, Debug)]
pub(crate) struct RestoreDrillArgs {
    /// Events of history in the store before the drill (spread over the tenants).
    #[arg(long, default_value_t = 100_000)]
    events: u64,
    /// Tenants.
    #[arg(long, default_value_t = 10)]
    tenants: u64,
    /// The store: an empty postgres://… database, or default a SQLite file in the work
    /// directory.
    #[arg(long, env = "VIGIL_DRILL_DATABASE_URL")]
    database_url: Option<vigil_core::DatabaseUrl>,
    /// Where backups go (a directory or s3://BUCKET/PREFIX); default: the work directory.
    #[arg(long, value_name = "DEST")]
    backup_to: Option<String>,
    /// Encrypt the backup with this key file.
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// Work directory (data directory, SQLite file, backups); default a temporary one.
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Write drill-restore.md and drill-restore.json here.
    #[arg(long, value_name = "DIR")]
    report: Option<PathBuf>,
    /// The recovery time objective: restore + full verification must take less.
    #[arg(long, default_value = "60s", value_parser = crate::duration_arg::secs)]
    rto_target: Duration,
    /// Load clients posting while the backup runs.
    #[arg(long, default_value_t = 4)]
    clients: usize,
}

const METRICS: [&str; 6] = [
    "audit_events_processed_total",
    "audit_checkpoints_total",
    "http_requests_total",
    "audit_chain_conflicts_total",
    "vigil_db_pool_timeouts_total",
    "process_resident_memory_bytes",
];

/// Polls `GET base/readyz` until it answers `ok` (true) or stops answering (false).
async fn probe(base: &str, want_ready: bool) -> Duration {
    let started = Instant::now();
    let http = reqwest::Client::new();
    loop {
        let ready = matches!(
            http.get(format!("{base}/readyz")).timeout(Duration::from_millis(500)).send().await,
            Ok(r) if r.status().is_success()
        );
        if ready == want_ready || started.elapsed() > Duration::from_secs(120) {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) async fn run(a: RestoreDrillArgs) -> anyhow::Result<Report> {
    let mut r = Report::new(
        "restore",
        "the audit store is lost (service stopped, store wiped)",
    );
    let tmp = tempfile::tempdir()?;
    let work = a
        .work_dir
        .clone()
        .unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&work)?;
    let data_dir = work.join("data");
    let url = match &a.database_url {
        Some(u) => u.expose().to_string(),
        None => format!("sqlite://{}/audit.db", work.display()),
    };
    let engine = vigil_store::snapshot::Engine::of(&url)?;
    anyhow::ensure!(
        vigil_store::snapshot::is_empty(&url).await?,
        "the drill needs an empty store (it wipes it): {}",
        vigil_core::redact_url(&url)
    );
    let backup_to = a
        .backup_to
        .clone()
        .unwrap_or_else(|| work.join("backups").display().to_string());
    let key = a.key_file.as_deref().map(BackupKey::load).transpose()?;
    r.setup = vec![
        ("engine".into(), engine.name().into()),
        (
            "history".into(),
            format!("{} events in {} tenants", a.events, a.tenants),
        ),
        ("backups".into(), backup_to.clone()),
        ("encrypted".into(), key.is_some().to_string()),
        (
            "load".into(),
            format!("{} clients, batches of 20", a.clients),
        ),
        ("RTO target".into(), format!("{:?}", a.rto_target)),
    ];

    r.step(format!(
        "filling the store with {} events of history",
        a.events
    ));
    {
        let store = vigil_store::open(&url).await?;
        crate::bench::fill(&store, a.events, a.tenants).await?;
    }
    let tenants: Vec<String> = (0..a.tenants).map(|t| format!("t{t:03}")).collect();
    r.step("starting the audit service");
    let (base, service) = start_audit(&url, &data_dir).await?;
    probe(&base, true).await;
    let load = Load::start(
        &base,
        &tenants,
        LoadOptions {
            clients: a.clients,
            batch: 20,
            pause: Duration::from_millis(5),
            retry: false,
        },
    );
    r.step("load started");
    // Long enough for every tenant to get a signed checkpoint over its history.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = scrape(&base).await;

    let acked_before_backup = load.acked_now();
    r.step("backup started (load running)");
    let to = Location::parse(&backup_to)?;
    let started = Instant::now();
    let done = vigil_backup::backup(vigil_backup::BackupOptions {
        database_url: &url,
        to: &to,
        key: key.as_ref(),
    })
    .await?;
    let backup_seconds = started.elapsed().as_secs_f64();
    let during = scrape(&base).await;
    r.step(format!(
        "backup {} done: {} records, {} bytes",
        done.manifest.id,
        done.manifest.records(),
        done.manifest.stored_bytes()
    ));
    let (_, tally) = load.stop().await;
    let sent = tally.sent.load(Ordering::Relaxed);
    let failed = tally.failed.load(Ordering::Relaxed);
    r.step(format!("load stopped: {sent} requests, {failed} failed"));

    // The disaster.
    let injected = r.step("INJECT: service stopped and the store wiped");
    let probe_base = base.clone();
    let detect = tokio::spawn(async move { probe(&probe_base, false).await });
    service.stop().await?;
    wipe(&url, &done.manifest).await?;
    let detected_after = detect.await?.as_secs_f64();
    r.step(format!(
        "detected: readiness probe failing after {detected_after:.2}s"
    ));

    r.step("restore started");
    let trust = Trust::Keys(vec![data_dir_key(&data_dir, "vigil-audit")?]);
    let outcome = restore_and_verify(
        &done.at,
        &url,
        key.as_ref(),
        &trust,
        false,
        Some(&data_dir),
        false,
    )
    .await?;
    r.step(format!(
        "restored and verified {} records in {:.2}s: {}",
        outcome.records,
        outcome.rto_seconds,
        if outcome.intact { "intact" } else { "TAMPERED" }
    ));

    let (base, service) = start_audit(&url, &data_dir).await?;
    probe(&base, true).await;
    let http = reqwest::Client::new();
    let mut writes_ok = true;
    for t in &tenants {
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_entropy();
        let ev = crate::bench::bench_event(&mut rng, 1, "drill-after");
        let ok = http
            .post(format!("{base}/v1/events"))
            .header("X-Tenant-ID", t)
            .header("X-Roles", "admin")
            .json(&vec![ev])
            .send()
            .await
            .is_ok_and(|r| r.status() == 200);
        writes_ok &= ok;
    }
    let recovered = r.step("recovered: service ready on the restored store and accepting writes");
    let after = scrape(&base).await;
    service.stop().await?;

    // Nothing acknowledged before the backup began may be missing.
    let (lost, checked) = missing(&url, &acked_before_backup).await?;
    let store = vigil_store::open_existing(&url).await?;
    let verified = crate::verify::verify_tenants(
        &store,
        store.tenants().await?,
        vigil_audit::verification::TrustedKeys::Only(match &trust {
            Trust::Keys(k) => k.clone(),
            Trust::Recorded => Vec::new(),
        }),
        false,
    )
    .await?;
    r.step(format!(
        "after: every chain verified again including new writes: {}",
        if verified.intact {
            "intact"
        } else {
            "TAMPERED"
        }
    ));

    r.metrics(&METRICS, [&before, &during, &after]);
    r.figure("backup_seconds", backup_seconds);
    r.figure("detect_seconds", detected_after);
    r.figure("restore_check_seconds", outcome.check_seconds);
    r.figure("restore_load_seconds", outcome.load_seconds);
    r.figure("verify_seconds", outcome.verify_seconds);
    r.figure("rto_seconds", outcome.rto_seconds);
    r.figure("mttr_seconds", recovered - injected);
    r.figure("records_restored", outcome.records as f64);
    r.figure("backup_bytes", outcome.stored_bytes as f64);
    r.check(
        "RTO (restore + full verification)",
        format!("< {:?}", a.rto_target),
        format!("{:.2}s", outcome.rto_seconds),
        outcome.rto_seconds < a.rto_target.as_secs_f64(),
    );
    r.check(
        "acknowledged events lost",
        "0".into(),
        format!("{lost} of {checked} checked"),
        lost == 0 && checked > 0,
    );
    r.check(
        "requests failed during the backup",
        "0".into(),
        format!("{failed} of {sent}"),
        failed == 0,
    );
    r.check(
        "restored chains verify",
        "intact".into(),
        if outcome.intact { "intact" } else { "tampered" }.into(),
        outcome.intact && verified.intact,
    );
    r.check(
        "service writes after recovery",
        "every tenant".into(),
        writes_ok.to_string(),
        writes_ok,
    );
    r.conclude(a.report.as_deref())
}

/// Loses the store: the SQLite file (and its WAL) deleted, or every Vigil table dropped.
async fn wipe(url: &str, manifest: &vigil_backup::Manifest) -> anyhow::Result<()> {
    match vigil_store::snapshot::Engine::of(url)? {
        vigil_store::snapshot::Engine::Sqlite(path) => {
            for suffix in ["", "-wal", "-shm"] {
                let p = PathBuf::from(format!("{}{suffix}", path.display()));
                if p.exists() {
                    std::fs::remove_file(&p)
                        .with_context(|| format!("removing {}", p.display()))?;
                }
            }
        }
        vigil_store::snapshot::Engine::Postgres => {
            let tables: Vec<String> = manifest.streams.iter().map(|s| s.name.clone()).collect();
            vigil_store::snapshot::pg_drop(url, &tables).await?;
        }
    }
    Ok(())
}
