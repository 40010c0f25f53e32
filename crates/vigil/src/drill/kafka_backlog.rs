//! The Kafka-backlog drill: a producer (Vigil's, durable, through Kafka) writes at a steady
//! rate; the audit service consumes the topic into the store. The consumer is stopped while
//! the producer carries on, so a backlog builds in the topic; then it is started again. What
//! must hold: the backlog is caught up within the target, nothing the producer accepted is
//! lost, nothing is stored twice (records = events emitted), every chain verifies.
//!
//! The broker: `--kafka-bootstrap`, or a tansu broker (a Kafka-protocol broker, in memory) the
//! drill starts from `--tansu`.

use super::stack::start_audit_with;
use super::{scrape, Report};
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vigil_core::ids::TenantId;
use vigil_producer::{AuditProducer, KafkaTransport, ProducerConfig};

#[derive(Args, Debug)]
pub(crate) struct KafkaBacklogDrillArgs {
    /// A Kafka cluster (`host:port,…`); default: a tansu broker started by the drill.
    #[arg(long, env = "VIGIL_DRILL_KAFKA_BOOTSTRAP")]
    kafka_bootstrap: Option<String>,
    /// The tansu binary to start when no --kafka-bootstrap is given (default
    /// ~/.cache/vigil-tools/bin/tansu, where ./scripts/test.sh installs it).
    #[arg(long, env = "VIGIL_TANSU")]
    tansu: Option<PathBuf>,
    /// The store: an empty postgres://… database, or default a SQLite file of the drill's own.
    #[arg(long, env = "VIGIL_DRILL_DATABASE_URL")]
    database_url: Option<vigil_core::DatabaseUrl>,
    /// Events per second the producer writes, all along.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// How long the consumer stays stopped.
    #[arg(long, default_value = "20s", value_parser = crate::duration_arg::millis)]
    pause: Duration,
    /// Load before the consumer stops and after it caught up.
    #[arg(long, default_value = "3s", value_parser = crate::duration_arg::millis)]
    steady: Duration,
    /// Tenants.
    #[arg(long, default_value_t = 5)]
    tenants: u64,
    /// Partitions of the drill's topic.
    #[arg(long, default_value_t = 3)]
    partitions: i32,
    /// The backlog must be stored within this after the consumer is back.
    #[arg(long, default_value = "60s", value_parser = crate::duration_arg::millis)]
    catch_up_target: Duration,
    /// Write drill-kafka-backlog.md and .json here.
    #[arg(long, value_name = "DIR")]
    report: Option<PathBuf>,
}

const METRICS: [&str; 5] = [
    "audit_events_processed_total",
    "audit_consumer_lag_messages",
    "audit_consumer_lag_seconds",
    "audit_dlq_total",
    "process_resident_memory_bytes",
];

/// A tansu broker of the drill's own, in memory, stopped with the drill.
struct Tansu(std::process::Child);

impl Tansu {
    fn start(bin: &std::path::Path, dir: &std::path::Path) -> anyhow::Result<(Tansu, String)> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = std::process::Command::new(bin)
            .args(["broker", "--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .current_dir(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .with_context(|| format!("starting the tansu broker {}", bin.display()))?;
        let broker = Tansu(child);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok((broker, format!("127.0.0.1:{port}")));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        anyhow::bail!("the tansu broker did not listen on {port}")
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The consumer's lag in messages, summed over partitions, from a `/metrics` text.
fn lag_of(text: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with("audit_consumer_lag_messages{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Records stored over `tenants` (each chain's head: nothing is purged in a drill).
async fn stored(store: &dyn vigil_store::Store, tenants: &[TenantId]) -> anyhow::Result<u64> {
    let mut n = 0;
    for t in tenants {
        n += store.head(t).await?.seq as u64;
    }
    Ok(n)
}

/// Waits until `stored` reaches `want`; how long it took, or `None` past `limit`.
async fn wait_stored(
    store: &dyn vigil_store::Store,
    tenants: &[TenantId],
    want: u64,
    limit: Duration,
) -> anyhow::Result<Option<Duration>> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if stored(store, tenants).await? >= want {
            return Ok(Some(started.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Ok(None)
}

pub(crate) async fn run(a: KafkaBacklogDrillArgs) -> anyhow::Result<Report> {
    let mut r = Report::new(
        "kafka-backlog",
        "the audit service's Kafka consumer stopped while producers keep writing",
    );
    let work = tempfile::tempdir()?;
    let (_broker, bootstrap) = match &a.kafka_bootstrap {
        Some(b) => (None, b.clone()),
        None => {
            let bin = a.tansu.clone().unwrap_or_else(|| {
                PathBuf::from(std::env::var("HOME").unwrap_or_default())
                    .join(".cache/vigil-tools/bin/tansu")
            });
            anyhow::ensure!(
                bin.exists(),
                "no --kafka-bootstrap and no tansu broker at {} (./scripts/test.sh installs it; or --tansu PATH)",
                bin.display()
            );
            let (b, addr) = Tansu::start(&bin, work.path())?;
            (Some(b), addr)
        }
    };
    let url = match &a.database_url {
        Some(u) => u.expose().to_string(),
        None => format!("sqlite://{}/audit.db", work.path().display()),
    };
    anyhow::ensure!(
        vigil_store::snapshot::is_empty(&url).await?,
        "the drill needs an empty store: {}",
        vigil_core::redact_url(&url)
    );
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let topic = format!("drill.audit.{run_id}");
    vigil_producer::kafka::ensure_topics(&bootstrap, &topic, a.partitions).await?;
    let mut kafka = vigil_audit::kafka::KafkaSettings::new(&bootstrap);
    kafka.topic = topic.clone();
    kafka.partitions = a.partitions;
    kafka.group = format!("drill-{run_id}");
    kafka.session_timeout = Duration::from_secs(6);
    let data_dir = work.path().join("data");
    let start = |kafka: vigil_audit::kafka::KafkaSettings| {
        let (url, data_dir) = (url.clone(), data_dir.clone());
        async move {
            start_audit_with(&url, &data_dir, |s| {
                s.kafka = Some(kafka);
            })
            .await
        }
    };
    r.setup = vec![
        (
            "broker".into(),
            if a.kafka_bootstrap.is_some() {
                bootstrap.clone()
            } else {
                "tansu (memory), started by the drill".into()
            },
        ),
        (
            "topic".into(),
            format!("{topic}, {} partitions", a.partitions),
        ),
        (
            "store".into(),
            vigil_store::snapshot::Engine::of(&url)?.name().into(),
        ),
        (
            "load".into(),
            format!(
                "Vigil's producer (durable) at {} events/s over {} tenants",
                a.rate, a.tenants
            ),
        ),
        ("consumer stopped for".into(), format!("{:?}", a.pause)),
    ];

    let (base, service) = start(kafka.clone()).await?;
    let registry = prometheus::Registry::new();
    let transport =
        Arc::new(KafkaTransport::new(&bootstrap, Duration::from_secs(30))?.to_topic(&topic));
    let producer = AuditProducer::start(
        ProducerConfig::new("drill-producer").with_spool(work.path().join("spool")),
        transport,
        &registry,
    )
    .await?;
    let tenants: Vec<TenantId> = (0..a.tenants)
        .map(|t| TenantId::parse(&format!("t{t:03}")).expect("a valid tenant"))
        .collect();
    let emitter = super::Emitter::start(producer.clone(), tenants.clone(), a.rate, "drill.backlog");
    let store = vigil_store::open(&url).await?;
    r.step("consumer and producer started");
    // Steady: the consumer keeps up.
    tokio::time::sleep(a.steady).await;
    let emitted_now = emitter.count();
    let keeping_up = wait_stored(
        store.as_ref(),
        &tenants,
        emitted_now,
        Duration::from_secs(60),
    )
    .await?
    .is_some();
    r.step(format!(
        "steady: {emitted_now} events emitted, the consumer keeping up: {keeping_up}"
    ));
    let before = scrape(&base).await;

    let injected = r.step("INJECT: the consumer stopped (audit service down)");
    service.stop().await?;
    tokio::time::sleep(a.pause).await;
    let at_restart = emitter.count();
    let backlog = at_restart - stored(store.as_ref(), &tenants).await?;
    r.step(format!(
        "backlog: {backlog} events waiting in the topic; consumer starting again"
    ));
    let restarted = Instant::now();
    let (base, service) = start(kafka.clone()).await?;
    // While it catches up: the lag as its metrics show it (what an alert would see), then
    // the backlog stored.
    let mut during = String::new();
    let caught_up = loop {
        if stored(store.as_ref(), &tenants).await? >= at_restart {
            break Some(restarted.elapsed());
        }
        if restarted.elapsed() > Duration::from_secs(600) {
            break None;
        }
        if during.is_empty() {
            let text = scrape(&base).await;
            let lag = lag_of(&text);
            if lag > 0.0 {
                r.step(format!(
                    "detected: audit_consumer_lag_messages {lag} after the restart"
                ));
                during = text;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    if during.is_empty() {
        during = scrape(&base).await;
    }
    let recovered = r.step(match caught_up {
        Some(_) => format!(
            "caught up: the backlog stored {:.2}s after the restart",
            restarted.elapsed().as_secs_f64()
        ),
        None => "NOT caught up within 10 minutes".into(),
    });
    let catch_up_secs = caught_up.map(|_| restarted.elapsed().as_secs_f64());
    tokio::time::sleep(a.steady).await;
    let (emitted, total) = emitter.stop().await?;
    producer.flush().await;
    let all_stored = wait_stored(store.as_ref(), &tenants, total, Duration::from_secs(120)).await?;
    r.step(format!(
        "producer stopped after {total} events; all stored: {}",
        all_stored.is_some()
    ));
    let after = scrape(&base).await;
    producer.shutdown().await;
    service.stop().await?;
    let records = stored(store.as_ref(), &tenants).await?;
    let (lost, checked) = super::missing(&url, &emitted).await?;
    let dropped = super::counter_sum(&registry, "audit_producer_dropped_total");
    let intact = super::chains_intact(&url).await?;

    r.metrics(&METRICS, [&before, &during, &after]);
    r.figure("backlog_events", backlog as f64);
    r.figure("catch_up_seconds", catch_up_secs.unwrap_or(f64::NAN));
    r.figure(
        "catch_up_events_per_second",
        catch_up_secs.map_or(f64::NAN, |s| {
            // The backlog plus what arrived meanwhile.
            (backlog as f64 + a.rate as f64 * s) / s
        }),
    );
    r.figure("mttr_seconds", recovered - injected);
    r.figure("events_emitted", total as f64);
    r.figure("records_stored", records as f64);
    r.check(
        "backlog built while the consumer was away",
        format!("≥ {}", a.rate * a.pause.as_secs() / 2),
        backlog.to_string(),
        backlog >= a.rate * a.pause.as_secs() / 2,
    );
    r.check(
        "backlog caught up after the restart",
        format!("< {:?}", a.catch_up_target),
        catch_up_secs.map_or("never".into(), |s| format!("{s:.2}s")),
        catch_up_secs.is_some_and(|s| s < a.catch_up_target.as_secs_f64()),
    );
    r.check(
        "emitted events lost",
        "0".into(),
        format!("{lost} of {checked} checked"),
        lost == 0 && checked == total,
    );
    r.check(
        "events stored twice (records stored = events emitted)",
        "0".into(),
        format!("{records} stored of {total} emitted"),
        records == total,
    );
    r.check(
        "events the producer dropped",
        "0".into(),
        dropped.to_string(),
        dropped == 0.0,
    );
    r.check_chains(intact);
    r.conclude(a.report.as_deref())
}
