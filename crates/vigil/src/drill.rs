//! `vigil drill …`: disaster-recovery scenarios run as commands, each against a local stack it
//! starts, under synthetic load, with a report (Markdown and JSON) of what was injected, when,
//! what the metrics did, what failed or was lost, and how long detection and recovery took.

mod proxy;
mod report;
mod restore;
mod store_outage;

use clap::Subcommand;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub(crate) use report::Report;

#[derive(Subcommand, Debug)]
pub(crate) enum DrillCommand {
    /// Back up under load, lose the store, restore it, verify every chain and carry on:
    /// reports the RTO (restore + full verification) and events lost.
    Restore(restore::RestoreDrillArgs),
    /// Cut the network between the audit service and Postgres under load, then heal it:
    /// reports detection, recovery, answers during the outage and events lost.
    StoreOutage(store_outage::StoreOutageDrillArgs),
}

pub(crate) async fn run(cmd: DrillCommand) -> anyhow::Result<ExitCode> {
    let report = match cmd {
        DrillCommand::Restore(a) => restore::run(a).await?,
        DrillCommand::StoreOutage(a) => store_outage::run(a).await?,
    };
    println!("{}", report.markdown());
    Ok(if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// An audit service started in this process for a drill.
pub(crate) struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), vigil_audit::AuditError>>,
}

impl Running {
    /// Stops it as SIGTERM would (requests finished, checkpoints signed).
    pub(crate) async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task.await??;
        Ok(())
    }
}

/// Starts the audit service on `url` with `data_dir`, on a free loopback port, trusting the
/// load's identity headers and checkpointing often; returns its base URL.
pub(crate) async fn start_audit(
    url: &str,
    data_dir: &std::path::Path,
) -> anyhow::Result<(String, Running)> {
    use anyhow::Context;
    let mut s = vigil_audit::AuditSettings::embedded(data_dir.to_path_buf());
    s.listen = "127.0.0.1:0".parse().expect("an address");
    s.database_url = url.to_string().into();
    s.trust_headers = true;
    s.checkpoint_every = 500;
    s.checkpoint_interval = Duration::from_millis(500);
    let app = vigil_audit::Application::build(s)
        .await
        .context("starting the audit service")?;
    let base = format!("http://{}", app.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    Ok((base, Running { stop, task }))
}

/// How the synthetic load behaves.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LoadOptions {
    pub(crate) clients: usize,
    pub(crate) batch: usize,
    pub(crate) pause: Duration,
    /// Resend a refused batch (same event ids, so the retry is idempotent) until it is
    /// acknowledged, as the producer does.
    pub(crate) retry: bool,
}

/// What the load saw.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// Requests sent (retries included).
    pub(crate) sent: AtomicU64,
    /// Requests that failed: no answer, or not 200.
    pub(crate) failed: AtomicU64,
    /// Of those, answers other than 503 (the documented answer while the store is away).
    pub(crate) unexpected: AtomicU64,
    /// Batches never acknowledged (the load stopped while retrying them).
    pub(crate) abandoned: AtomicU64,
}

/// Synthetic load: clients posting batches of events to the audit API, round robin over the
/// tenants, remembering every event acknowledged.
pub(crate) struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Event ids acknowledged (stored or duplicate), per tenant.
    pub(crate) acked: Arc<Mutex<HashMap<String, Vec<String>>>>,
    pub(crate) tally: Arc<Tally>,
}

/// One request: the acknowledged ids, or the status (0: no answer).
async fn send(
    http: &reqwest::Client,
    url: &str,
    tenant: &str,
    events: &[Value],
) -> Result<Vec<String>, u16> {
    let r = http
        .post(url)
        .header("X-Tenant-ID", tenant)
        .header("X-Roles", "admin")
        .timeout(Duration::from_secs(30))
        .json(events)
        .send()
        .await
        .map_err(|_| 0u16)?;
    let status = r.status().as_u16();
    if status != 200 {
        return Err(status);
    }
    let body: Value = r.json().await.map_err(|_| 0u16)?;
    Ok(body["results"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["status"] == "stored" || r["status"] == "duplicate")
        .filter_map(|r| r["event_id"].as_str().map(str::to_string))
        .collect())
}

impl Load {
    /// Starts the clients against `base` (http://addr).
    pub(crate) fn start(base: &str, tenants: &[String], o: LoadOptions) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acked: Arc<Mutex<HashMap<String, Vec<String>>>> = Arc::default();
        let tally = Arc::new(Tally::default());
        let http = reqwest::Client::new();
        let tasks = (0..o.clients)
            .map(|c| {
                let (stop, acked, tally, http) =
                    (stop.clone(), acked.clone(), tally.clone(), http.clone());
                let url = format!("{base}/v1/events");
                let tenants = tenants.to_vec();
                tokio::spawn(async move {
                    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_entropy();
                    let mut i = c as u64 * 1_000_000_000;
                    'batches: while !stop.load(Ordering::Relaxed) {
                        let tenant = &tenants[(i as usize / o.batch) % tenants.len()];
                        let events: Vec<Value> = (0..o.batch)
                            .map(|_| {
                                i += 1;
                                let mut e = crate::bench::bench_event(&mut rng, i, "drill");
                                e["source"] = json!({"service": "drill-load"});
                                e
                            })
                            .collect();
                        loop {
                            tally.sent.fetch_add(1, Ordering::Relaxed);
                            match send(&http, &url, tenant, &events).await {
                                Ok(ids) => {
                                    acked
                                        .lock()
                                        .expect("acked lock")
                                        .entry(tenant.clone())
                                        .or_default()
                                        .extend(ids);
                                    break;
                                }
                                Err(status) => {
                                    tally.failed.fetch_add(1, Ordering::Relaxed);
                                    if status != 503 && status != 0 {
                                        tally.unexpected.fetch_add(1, Ordering::Relaxed);
                                    }
                                    if !o.retry {
                                        break;
                                    }
                                    if stop.load(Ordering::Relaxed) {
                                        tally.abandoned.fetch_add(1, Ordering::Relaxed);
                                        break 'batches;
                                    }
                                    tokio::time::sleep(Duration::from_millis(100)).await;
                                }
                            }
                        }
                        tokio::time::sleep(o.pause).await;
                    }
                })
            })
            .collect();
        Load {
            stop,
            tasks,
            acked,
            tally,
        }
    }

    /// Event ids acknowledged so far, per tenant.
    pub(crate) fn acked_now(&self) -> HashMap<String, Vec<String>> {
        self.acked.lock().expect("acked lock").clone()
    }

    /// Stops the clients and waits for them; returns what was acknowledged and the tally.
    pub(crate) async fn stop(self) -> (HashMap<String, Vec<String>>, Arc<Tally>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        let acked = self.acked.lock().expect("acked lock").clone();
        (acked, self.tally)
    }
}

/// Events of `acked` missing from the store at `url`: (missing, checked).
pub(crate) async fn missing(
    url: &str,
    acked: &HashMap<String, Vec<String>>,
) -> anyhow::Result<(u64, u64)> {
    let store = vigil_store::open_existing(url).await?;
    let (mut lost, mut checked) = (0, 0);
    for (t, ids) in acked {
        let tenant = vigil_core::ids::TenantId::parse(t).map_err(|e| anyhow::anyhow!("{e}"))?;
        for id in ids {
            checked += 1;
            if store.get(&tenant, id).await?.is_none() {
                lost += 1;
            }
        }
    }
    Ok((lost, checked))
}

/// The text of `GET base/metrics` (empty when it cannot be read).
pub(crate) async fn scrape(base: &str) -> String {
    match reqwest::get(format!("{base}/metrics")).await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}
