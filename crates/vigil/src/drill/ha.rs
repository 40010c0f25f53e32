//! The high-availability drill: two audit-service instances on one Postgres, two gateways in
//! front of both (probing their `/readyz`), a layer-4 load balancer in front of the gateways
//! (as a cloud's or kube-proxy's), and the auth service. Vigil's producer (durable, over HTTP
//! with bearer tokens) writes through the balancer; readers query through it. Each instance is
//! restarted in turn under that load, as a rolling update does: audit 1, audit 2, gateway 1,
//! gateway 2, each draining first (not ready, still serving) and back on the same port.
//! What must hold: no read fails, the producer loses nothing (its retries are what makes
//! ingest idempotent), every event emitted is stored once, every chain verifies.

use super::proxy::Proxy;
use super::stack::{start_audit_with, start_auth, start_gateway, Service};
use super::{scrape, Report};
use anyhow::Context;
use clap::Args;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vigil_core::ids::TenantId;
use vigil_producer::{AuditProducer, HttpAuth, HttpTransport, ProducerConfig, TokenSource};
use vigil_security::capability::Role;

#[derive(Args, Debug)]
pub(crate) struct HaDrillArgs {
    /// An empty Postgres database both audit instances share: postgres://…
    #[arg(long, env = "VIGIL_DRILL_DATABASE_URL")]
    database_url: vigil_core::DatabaseUrl,
    /// Load before the first restart, between restarts and after the last.
    #[arg(long, default_value = "3s", value_parser = crate::duration_arg::millis)]
    steady: Duration,
    /// How long a stopping instance stays up, not ready, before it closes its port.
    #[arg(long, default_value = "1500ms", value_parser = crate::duration_arg::millis)]
    drain: Duration,
    /// How long a stopped instance stays down before it starts again (a new pod starting).
    #[arg(long, default_value = "1s", value_parser = crate::duration_arg::millis)]
    down: Duration,
    /// Tenants.
    #[arg(long, default_value_t = 4)]
    tenants: u64,
    /// Events per second the producers write, together.
    #[arg(long, default_value_t = 400)]
    rate: u64,
    /// Readers, each querying every 20 ms.
    #[arg(long, default_value_t = 2)]
    readers: usize,
    /// Write drill-ha.md and .json here.
    #[arg(long, value_name = "DIR")]
    report: Option<PathBuf>,
}

const METRICS: [&str; 4] = [
    "gateway_upstream_up",
    "gateway_upstream_responses_total",
    "http_requests_total",
    "process_resident_memory_bytes",
];

/// Tokens fetched up front, one per tenant (they outlive the drill).
#[derive(Debug)]
struct Tokens(HashMap<TenantId, String>);

impl TokenSource for Tokens {
    fn token(&self, tenant: &TenantId) -> String {
        self.0.get(tenant).cloned().unwrap_or_default()
    }
}

/// A loopback address with a free port, to start (and restart) an instance on.
fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// Polls `url` until it answers 2xx; false past a minute.
async fn ready(url: &str) -> bool {
    let http = &reqwest::Client::new();
    super::wait_until(Duration::from_secs(60), move || {
        super::answers_ok(http, url)
    })
    .await
    .is_some()
}

/// The stack's instances, restartable on their ports.
struct Instances {
    url: String,
    dirs: [PathBuf; 2],
    audit_addrs: [SocketAddr; 2],
    gateway_addrs: [SocketAddr; 2],
    gateway_toml: String,
    drain: Duration,
}

impl Instances {
    async fn audit(&self, i: usize) -> anyhow::Result<Service> {
        let (addr, drain) = (self.audit_addrs[i], self.drain);
        let (base, s) = start_audit_with(&self.url, &self.dirs[i], |s| {
            s.listen = addr;
            s.shutdown_drain = drain;
        })
        .await?;
        anyhow::ensure!(
            ready(&format!("{base}/readyz")).await,
            "audit {} not ready",
            i + 1
        );
        Ok(s)
    }

    async fn gateway(&self, i: usize) -> anyhow::Result<Service> {
        let (base, s) = start_gateway(self.gateway_addrs[i], &self.gateway_toml).await?;
        anyhow::ensure!(
            ready(&format!("{base}/gateway/readyz")).await,
            "gateway {} not ready",
            i + 1
        );
        Ok(s)
    }
}

pub(crate) async fn run(a: HaDrillArgs) -> anyhow::Result<Report> {
    let mut r = Report::new(
        "ha",
        "a rolling restart of every audit instance and gateway under load",
    );
    let url = a.database_url.expose().to_string();
    anyhow::ensure!(
        url.starts_with("postgres"),
        "two audit instances share one store only on Postgres: give a postgres:// URL"
    );
    anyhow::ensure!(
        vigil_store::snapshot::is_empty(&url).await?,
        "the drill needs an empty store: {}",
        vigil_core::redact_url(&url)
    );
    let work = tempfile::tempdir()?;
    let auth = start_auth(&work.path().join("auth"), None, |_| {}).await?;
    let audit_addrs = [free_addr()?, free_addr()?];
    let gateway_addrs = [free_addr()?, free_addr()?];
    let gateway_toml = format!(
        r#"
        health_interval_ms = 200
        shutdown_drain_ms = {drain}
        [auth]
        jwks_url = "{jwks}"
        issuer = "{issuer}"
        [rate_limit]
        default_rpm = 6000000
        [[routes]]
        prefix = "/"
        upstreams = ["http://{a1}", "http://{a2}"]
        access = "authenticated"
        "#,
        drain = a.drain.as_millis(),
        jwks = auth.jwks_url(),
        issuer = auth.issuer,
        a1 = audit_addrs[0],
        a2 = audit_addrs[1],
    );
    let dir = |p: &Path, i: usize| p.join(format!("audit-{i}"));
    let inst = Instances {
        url: url.clone(),
        dirs: [dir(work.path(), 1), dir(work.path(), 2)],
        audit_addrs,
        gateway_addrs,
        gateway_toml,
        drain: a.drain,
    };
    let mut audits = [Some(inst.audit(0).await?), Some(inst.audit(1).await?)];
    let mut gateways = [Some(inst.gateway(0).await?), Some(inst.gateway(1).await?)];
    let balancer = Proxy::balance(gateway_addrs.to_vec()).await?;
    let front = format!("http://{}", balancer.addr);
    r.setup = vec![
        (
            "stack".into(),
            "2 audit instances on one Postgres, 2 gateways in front of both (probing /readyz every 200 ms), a layer-4 balancer in front of the gateways, the auth service".into(),
        ),
        ("drain on shutdown".into(), format!("{:?}", a.drain)),
        ("down between stop and start".into(), format!("{:?}", a.down)),
        (
            "load".into(),
            format!(
                "Vigil's producer (durable, HTTP, bearer tokens) at {} events/s over {} tenants; {} readers querying every 20 ms",
                a.rate, a.tenants, a.readers
            ),
        ),
    ];

    let tenants: Vec<TenantId> = (0..a.tenants)
        .map(|t| TenantId::parse(&format!("t{t:03}")).expect("a valid tenant"))
        .collect();
    let mut tokens = HashMap::new();
    for t in &tenants {
        let client = auth
            .client(t.as_str(), &[Role::Service, Role::Support])
            .await?;
        tokens.insert(t.clone(), client.token().await?);
    }
    let tokens = Arc::new(Tokens(tokens));
    let registry = prometheus::Registry::new();
    let mut config = ProducerConfig::new("drill-ha").with_spool(work.path().join("spool"));
    config.max_backoff = Duration::from_millis(200);
    let producer = AuditProducer::start(
        config,
        Arc::new(HttpTransport::new(
            &front,
            HttpAuth::Bearer(tokens.clone() as Arc<dyn TokenSource>),
        )),
        &registry,
    )
    .await?;
    let emitter = super::Emitter::start(producer.clone(), tenants.clone(), a.rate, "drill.ha");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // Readers: (ok, failed, first failure).
    let reads: Arc<Mutex<(u64, u64, Option<String>)>> = Arc::default();
    let mut readers = Vec::new();
    for n in 0..a.readers {
        let (reads, tokens, tenant, stop) = (
            reads.clone(),
            tokens.clone(),
            tenants[n % tenants.len()].clone(),
            stop_rx.clone(),
        );
        let url = format!("{front}/v1/events?limit=5");
        readers.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            while !*stop.borrow() {
                let outcome = http
                    .get(&url)
                    .bearer_auth(tokens.token(&tenant))
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await;
                let failure = match outcome {
                    Ok(res) if res.status().is_success() => None,
                    Ok(res) => Some(format!("HTTP {}", res.status())),
                    Err(e) => Some(format!("{e}")),
                };
                {
                    let mut r = reads.lock().expect("lock");
                    match failure {
                        None => r.0 += 1,
                        Some(f) => {
                            r.1 += 1;
                            r.2.get_or_insert(f);
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    r.step("load started");
    tokio::time::sleep(a.steady).await;
    let scrape_all = |gw: [SocketAddr; 2], au: [SocketAddr; 2]| async move {
        let mut s = String::new();
        for addr in gw {
            s.push_str(&scrape(&format!("http://{addr}/gateway")).await);
        }
        for addr in au {
            s.push_str(&scrape(&format!("http://{addr}")).await);
        }
        s
    };
    let before = scrape_all(gateway_addrs, audit_addrs).await;
    let injected = r.now();
    let mut during = String::new();
    let mut restarts = Vec::new();
    for (kind, i) in [("audit", 0), ("audit", 1), ("gateway", 0), ("gateway", 1)] {
        r.step(format!(
            "INJECT: {kind} {} stopping (draining {:?})",
            i + 1,
            a.drain
        ));
        let started = Instant::now();
        let slot = if kind == "audit" {
            &mut audits[i]
        } else {
            &mut gateways[i]
        };
        slot.take().context("a running instance")?.stop().await?;
        r.step(format!("{kind} {} stopped", i + 1));
        tokio::time::sleep(a.down).await;
        r.step(format!("{kind} {} starting again", i + 1));
        *slot = Some(if kind == "audit" {
            inst.audit(i).await?
        } else {
            inst.gateway(i).await?
        });
        let took = started.elapsed().as_secs_f64();
        restarts.push((format!("{kind}_{}", i + 1), took));
        r.step(format!("{kind} {} ready again ({took:.2}s)", i + 1));
        if during.is_empty() {
            during = scrape_all(gateway_addrs, audit_addrs).await;
        }
        tokio::time::sleep(a.steady).await;
    }
    let recovered = r.now();
    let _ = stop_tx.send(true);
    let (emitted, total) = emitter.stop().await?;
    for reader in readers {
        reader.await?;
    }
    producer.flush().await;
    r.step(format!("load stopped: {total} events emitted"));
    let after = scrape_all(gateway_addrs, audit_addrs).await;
    producer.shutdown().await;
    for s in gateways.into_iter().chain(audits).flatten() {
        s.stop().await?;
    }
    auth.service.stop().await?;
    drop(balancer);

    let store = vigil_store::open_existing(&url).await?;
    let mut records = 0u64;
    for t in &tenants {
        records += store.head(t).await?.seq as u64;
    }
    let (lost, checked) = super::missing(&url, &emitted).await?;
    let (dropped, send_errors) = (
        super::counter_sum(&registry, "audit_producer_dropped_total"),
        super::counter_sum(&registry, "audit_producer_send_errors_total"),
    );
    let intact = super::chains_intact(&url).await?;
    let (reads_ok, reads_failed, first_failure) = reads.lock().expect("lock").clone();

    r.metrics(&METRICS, [&before, &during, &after]);
    for (name, took) in &restarts {
        r.figure(&format!("restart_{name}_seconds"), *took);
    }
    r.figure("mttr_seconds", recovered - injected);
    r.figure("events_emitted", total as f64);
    r.figure("records_stored", records as f64);
    r.figure("reads", (reads_ok + reads_failed) as f64);
    r.figure("producer_sends_retried", send_errors);
    r.check(
        "reads failed",
        "0".into(),
        match &first_failure {
            None => format!("0 of {}", reads_ok + reads_failed),
            Some(f) => format!("{reads_failed} of {} (first: {f})", reads_ok + reads_failed),
        },
        reads_failed == 0 && reads_ok > 0,
    );
    r.check(
        "events the producer dropped",
        "0".into(),
        dropped.to_string(),
        dropped == 0.0,
    );
    r.check(
        "emitted events lost",
        "0".into(),
        format!("{lost} of {checked} checked"),
        lost == 0 && checked == total && total > 0,
    );
    r.check(
        "events stored twice (records stored = events emitted)",
        "0".into(),
        format!("{records} stored of {total} emitted"),
        records == total,
    );
    r.check_chains(intact);
    r.conclude(a.report.as_deref())
}
