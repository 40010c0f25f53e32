//! `vigil drill …`: disaster-recovery scenarios run as commands, each against a local stack it
//! starts, under synthetic load, with a report (Markdown and JSON) of what was injected, when,
//! what the metrics did, what failed or was lost, and how long detection and recovery took.

mod ha;
mod kafka_backlog;
mod key_rotation;
mod proxy;
mod redis_outage;
mod report;
mod restore;
mod stack;
mod store_outage;

use clap::Subcommand;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub(crate) use report::Report;
pub(crate) use stack::start_audit;

#[derive(Subcommand, Debug)]
pub(crate) enum DrillCommand {
    /// Back up under load, lose the store, restore it, verify every chain and carry on:
    /// reports the RTO (restore + full verification) and events lost.
    Restore(restore::RestoreDrillArgs),
    /// Cut the network between the audit service and Postgres under load, then heal it:
    /// reports detection, recovery, answers during the outage and events lost.
    StoreOutage(store_outage::StoreOutageDrillArgs),
    /// Rotate the token signing key several times under load through the gateway and
    /// straight to the audit API: reports requests refused (target 0), when each verifier
    /// took the new key, that tokens of the old key kept working, and events lost.
    KeyRotation(key_rotation::KeyRotationDrillArgs),
    /// Cut the gateway off from Redis under load, then heal it: reports 5xx (target 0), how
    /// well the in-memory fallback held each tenant's limit, detection and return to Redis.
    RedisOutage(redis_outage::RedisOutageDrillArgs),
    /// Stop the Kafka consumer while producers keep writing, then start it again: reports the
    /// backlog, how long it took to catch up and at what rate, events lost and duplicated.
    KafkaBacklog(kafka_backlog::KafkaBacklogDrillArgs),
    /// Restart each of two audit instances (one Postgres) and two gateways in turn under
    /// load, as a rolling update does: reports reads failed and events lost (targets 0).
    Ha(ha::HaDrillArgs),
}

pub(crate) async fn run(cmd: DrillCommand) -> anyhow::Result<ExitCode> {
    let report = match cmd {
        DrillCommand::Restore(a) => restore::run(a).await?,
        DrillCommand::StoreOutage(a) => store_outage::run(a).await?,
        DrillCommand::KeyRotation(a) => key_rotation::run(a).await?,
        DrillCommand::RedisOutage(a) => redis_outage::run(a).await?,
        DrillCommand::KafkaBacklog(a) => kafka_backlog::run(a).await?,
        DrillCommand::Ha(a) => ha::run(a).await?,
    };
    println!("{}", report.markdown());
    Ok(if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
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

/// Vigil's producer fed at a steady rate, round robin over tenants, every event id kept.
pub(crate) struct Emitter {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    emitted: Arc<Mutex<HashMap<String, Vec<String>>>>,
    count: Arc<AtomicU64>,
}

impl Emitter {
    /// Emits `rate` events a second (in ticks of 10 ms) through `producer`, each with action
    /// `action` and an id of the drill's own.
    pub(crate) fn start(
        producer: vigil_producer::AuditProducer,
        tenants: Vec<vigil_core::ids::TenantId>,
        rate: u64,
        action: &'static str,
    ) -> Emitter {
        use vigil_core::builder::EventBuilder;
        use vigil_core::event::{Actor, ActorType, Outcome, Resource};
        let emitted: Arc<Mutex<HashMap<String, Vec<String>>>> = Arc::default();
        let count = Arc::new(AtomicU64::new(0));
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let per_tick = (rate / 100).max(1);
        let task = {
            let (emitted, count) = (emitted.clone(), count.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(10));
                let mut i = 0u64;
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = stopped.changed() => break,
                    }
                    let mut ids = emitted.lock().expect("emitted lock");
                    for _ in 0..per_tick {
                        let tenant = &tenants[(i % tenants.len() as u64) as usize];
                        let id = vigil_core::ids::EventId::from_uuid(uuid::Uuid::now_v7());
                        producer.emit(
                            tenant,
                            EventBuilder::new(
                                action,
                                Actor::new(ActorType::Service, "drill-producer"),
                                Resource::new("item", format!("i-{i}")),
                                Outcome::Success,
                            )
                            .field("n", i)
                            .event_id(id),
                        );
                        ids.entry(tenant.as_str().to_string())
                            .or_default()
                            .push(id.to_string());
                        i += 1;
                    }
                    count.store(i, Ordering::Relaxed);
                }
            })
        };
        Emitter {
            stop,
            task,
            emitted,
            count,
        }
    }

    /// Events emitted so far.
    pub(crate) fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Stops emitting; the ids emitted, per tenant, and how many.
    pub(crate) async fn stop(self) -> anyhow::Result<(HashMap<String, Vec<String>>, u64)> {
        let _ = self.stop.send(true);
        self.task.await?;
        let emitted = self.emitted.lock().expect("emitted lock").clone();
        Ok((emitted, self.count.load(Ordering::Relaxed)))
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

/// Does every chain of the store at `url` verify against the keys recorded in it?
pub(crate) async fn chains_intact(url: &str) -> anyhow::Result<bool> {
    let store = vigil_store::open_existing(url).await?;
    let verified = crate::verify::verify_tenants(
        &store,
        store.tenants().await?,
        vigil_audit::verification::TrustedKeys::FromStore,
        false,
    )
    .await?;
    Ok(verified.intact)
}

/// How many records of the system tenant's chain in the store at `url` have `action` (up to
/// a thousand).
pub(crate) async fn system_records(url: &str, action: &str) -> anyhow::Result<usize> {
    let store = vigil_store::open_existing(url).await?;
    let system = vigil_core::ids::TenantId::parse("system").map_err(|e| anyhow::anyhow!("{e}"))?;
    let q = vigil_store::Query {
        action: Some(vigil_store::ActionFilter::Exact(action.into())),
        limit: 1000,
        ..vigil_store::Query::default()
    };
    Ok(store.query(&system, &q).await?.len())
}

/// The sum of the counter `name`'s series in `registry`.
pub(crate) fn counter_sum(registry: &prometheus::Registry, name: &str) -> f64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.get_name() == name)
        .flat_map(|f| f.get_metric().iter().map(|m| m.get_counter().get_value()))
        .fold(0.0, |a, b| a + b)
}

/// Polls `check` every 25 ms until it holds: how long that took, or `None` past `limit`.
pub(crate) async fn wait_until<F: std::future::Future<Output = bool>>(
    limit: Duration,
    mut check: impl FnMut() -> F,
) -> Option<Duration> {
    let started = std::time::Instant::now();
    while started.elapsed() < limit {
        if check().await {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    None
}

/// Does `GET url` answer 2xx now (within 2 s)?
pub(crate) async fn answers_ok(http: &reqwest::Client, url: &str) -> bool {
    http.get(url)
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// The text of `GET base/metrics` (empty when it cannot be read).
pub(crate) async fn scrape(base: &str) -> String {
    match reqwest::get(format!("{base}/metrics")).await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}
