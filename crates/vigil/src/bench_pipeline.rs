//! The pipeline's benchmarks (issue 9), each beside its baseline in the same run:
//!
//! - `emit`: the cost of `AuditProducer::emit` on the request path, per call, under 16
//!   concurrent emitter threads, beside pushing the same value into a bare
//!   `tokio::sync::mpsc` channel.
//! - `pipeline`: end-to-end delay, emit to stored and committed, at a steady rate through
//!   Kafka into the store (the consumer in this process, the broker outside).
//! - `catch-up`: a backlog waiting in the topic, stored by the consumer, beside the same events
//!   ingested straight through the sequencer.

use clap::Args;
use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vigil_audit::app::Writer;
use vigil_audit::kafka::{KafkaIngest, KafkaSettings, StoredObserver};
use vigil_core::builder::EventBuilder;
use vigil_core::event::{Actor, ActorType, Event, Outcome, Resource, Severity, Source};
use vigil_core::ids::{EventId, TenantId};
use vigil_core::time::Timestamp;
use vigil_producer::{
    AuditProducer, Delivery, KafkaTransport, ProducerConfig, TenantEvent, Transport, TransportError,
};

/// A payments event with a five-field payload (~600 bytes of JSON), like `bench ingest`'s.
fn draft(rng: &mut impl Rng) -> EventBuilder {
    EventBuilder::new(
        "payment.refund",
        Actor::new(ActorType::User, format!("u-{}", rng.gen_range(0..50))),
        Resource::new("payment", format!("p-{}", rng.gen_range(0..2000))),
        Outcome::Success,
    )
    .severity(Severity::Notice)
    .field("amount", rng.gen_range(1..100_000) as f64 / 100.0)
    .field("currency", "EUR")
    .field(
        "ip",
        format!(
            "10.{}.{}.{}",
            rng.gen::<u8>(),
            rng.gen::<u8>(),
            rng.gen::<u8>()
        ),
    )
    .field(
        "user_agent",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36",
    )
    .field(
        "reason",
        serde_json::json!({"code": rng.gen_range(0..40), "text": "customer request"}),
    )
}

fn micros_now() -> i64 {
    vigil_audit::checkpointer::now().micros()
}

fn line(name: &str, h: &Histogram<u64>) -> String {
    format!(
        "{name:<28} p50 {:>7.3} µs   p99 {:>7.3} µs   p99.9 {:>8.3} µs   ({} calls)",
        h.value_at_quantile(0.5) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0,
        h.value_at_quantile(0.999) as f64 / 1000.0,
        h.len()
    )
}

// ----- emit -----

#[derive(Args, Debug, Clone)]
pub(crate) struct EmitArgs {
    /// Concurrent emitting threads.
    #[arg(long, default_value_t = 16)]
    emitters: usize,
    /// Calls per emitter per round.
    #[arg(long, default_value_t = 20_000)]
    calls: usize,
    /// Calls in a burst before an emitter pauses (the pump keeps up on average).
    #[arg(long, default_value_t = 10)]
    burst: usize,
    /// Pause between bursts, in microseconds.
    #[arg(long, default_value_t = 2_000)]
    pause_us: u64,
    /// Rounds; the producer and the bare channel alternate.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

/// Takes every batch at once: the benchmark is about `emit`, not the far end.
#[derive(Debug)]
struct Sink(AtomicU64);

#[async_trait::async_trait]
impl Transport for Sink {
    fn name(&self) -> &'static str {
        "bench"
    }

    async fn send(&self, batch: &[TenantEvent]) -> Result<Delivery, TransportError> {
        self.0.fetch_add(batch.len() as u64, Ordering::Relaxed);
        Ok(Delivery::default())
    }
}

/// Runs `emitters` threads, each timing `calls` calls of `call` (in bursts), and merges the
/// per-call times.
fn timed_threads(
    a: &EmitArgs,
    call: impl Fn(usize, EventBuilder) + Send + Sync + Clone + 'static,
) -> Histogram<u64> {
    let threads: Vec<_> = (0..a.emitters)
        .map(|t| {
            let call = call.clone();
            let (calls, burst, pause) = (a.calls, a.burst.max(1), a.pause_us);
            std::thread::spawn(move || {
                let mut rng = rand::rngs::StdRng::seed_from_u64(t as u64);
                let mut h = Histogram::<u64>::new(3).expect("histogram");
                let drafts: Vec<EventBuilder> = (0..burst).map(|_| draft(&mut rng)).collect();
                for i in 0..calls {
                    // Built before the clock starts: building the event is the caller's work.
                    let d = drafts[i % burst].clone();
                    let started = Instant::now();
                    call(t, d);
                    h.record(started.elapsed().as_nanos() as u64)
                        .expect("in range");
                    if (i + 1) % burst == 0 {
                        std::thread::sleep(Duration::from_micros(pause));
                    }
                }
                h
            })
        })
        .collect();
    let mut all = Histogram::<u64>::new(3).expect("histogram");
    for t in threads {
        all.add(t.join().expect("emitter")).expect("same bounds");
    }
    all
}

pub(crate) async fn emit(a: EmitArgs) -> anyhow::Result<()> {
    println!(
        "emit: {} threads, {} calls each per round in bursts of {} every {} µs",
        a.emitters, a.calls, a.burst, a.pause_us
    );
    let tenants: Arc<Vec<TenantId>> = Arc::new(
        (0..a.emitters)
            .map(|t| TenantId::parse(&format!("t{t}")).expect("valid"))
            .collect(),
    );
    let mut produced = Histogram::<u64>::new(3)?;
    let mut bare = Histogram::<u64>::new(3)?;
    for round in 0..a.rounds {
        let dir = tempfile::tempdir()?;
        let sink = Arc::new(Sink(AtomicU64::new(0)));
        let mut config = ProducerConfig::new("bench").with_spool(dir.path());
        config.queue_capacity = 1 << 20;
        let producer =
            AuditProducer::start(config, sink.clone(), &prometheus::Registry::new()).await?;
        let (p, ts) = (producer.clone(), Arc::clone(&tenants));
        let h = tokio::task::spawn_blocking({
            let a = a.clone();
            move || timed_threads(&a, move |t, d| p.emit(&ts[t], d))
        })
        .await?;
        producer.shutdown().await;
        anyhow::ensure!(
            producer
                .metrics()
                .dropped
                .with_label_values(&["queue_full"])
                .get()
                == 0,
            "the queue overflowed: lower the rate"
        );

        let (tx, mut rx) = tokio::sync::mpsc::channel::<(TenantId, EventBuilder)>(1 << 20);
        let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
        let ts = Arc::clone(&tenants);
        let b = tokio::task::spawn_blocking({
            let a = a.clone();
            move || {
                timed_threads(&a, move |t, d| {
                    let _ = tx.try_send((ts[t].clone(), d));
                })
            }
        })
        .await?;
        drain.await?;
        println!("round {round}:");
        println!("  {}", line("AuditProducer::emit", &h));
        println!("  {}", line("bare tokio mpsc try_send", &b));
        produced.add(&h)?;
        bare.add(&b)?;
    }
    println!("all rounds:");
    println!("  {}", line("AuditProducer::emit", &produced));
    println!("  {}", line("bare tokio mpsc try_send", &bare));
    let p99 = produced.value_at_quantile(0.99) as f64;
    println!(
        "emit p99 {:.3} µs (target < 5 µs); ratio to the bare channel: p50 {:.2}, p99 {:.2} (target <= 2)",
        p99 / 1000.0,
        produced.value_at_quantile(0.5) as f64 / bare.value_at_quantile(0.5).max(1) as f64,
        p99 / bare.value_at_quantile(0.99).max(1) as f64
    );
    Ok(())
}

// ----- pipeline lag -----

#[derive(Args, Debug)]
pub(crate) struct PipelineArgs {
    /// The brokers.
    #[arg(long)]
    kafka_bootstrap: String,
    /// A fresh store (postgres://… for the scale-out figure).
    #[arg(long)]
    database_url: vigil_core::DatabaseUrl,
    /// Events per second, steady.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// Seconds to emit (after a warm-up of 5 s that is not counted).
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Tenants the events are spread over.
    #[arg(long, default_value_t = 100)]
    tenants: usize,
    /// Partitions of the (new) topic.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
}

async fn writer(
    database_url: &vigil_core::DatabaseUrl,
    dir: &std::path::Path,
) -> anyhow::Result<Writer> {
    let mut s = vigil_audit::AuditSettings::embedded(dir.to_owned());
    s.database_url = database_url.clone();
    Ok(Writer::open(&s).await?)
}

fn fresh_topic(kind: &str) -> String {
    format!("bench.{kind}.{}", uuid::Uuid::new_v4().simple())
}

/// Starts a consumer of `topic` into `w`, telling `observer` of each stored event, and waits
/// until it owns partitions.
async fn consume(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    w: &Writer,
    observer: StoredObserver,
) -> anyhow::Result<KafkaIngest> {
    let mut settings = KafkaSettings::new(bootstrap);
    settings.topic = topic.to_owned();
    settings.partitions = partitions;
    settings.group = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let ingest = KafkaIngest::start_observed(
        settings,
        w.sequencer.clone(),
        w.metrics.clone(),
        Some(observer),
    )
    .await?;
    for _ in 0..600 {
        if !ingest.status().assigned.is_empty() {
            return Ok(ingest);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("the consumer got no partitions within a minute")
}

pub(crate) async fn pipeline(a: PipelineArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let w = writer(&a.database_url, dir.path()).await?;
    let topic = fresh_topic("lag");
    let lags = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
    // Set once emitting starts: events of the first 5 s are not counted.
    let counted_from = Arc::new(AtomicU64::new(u64::MAX));
    let stored = Arc::new(AtomicU64::new(0));
    let observer = {
        let (lags, from, stored) = (
            Arc::clone(&lags),
            Arc::clone(&counted_from),
            Arc::clone(&stored),
        );
        StoredObserver(Arc::new(move |occurred: i64| {
            let now = micros_now();
            stored.fetch_add(1, Ordering::Relaxed);
            if occurred as u64 >= from.load(Ordering::Relaxed) {
                let lag = (now - occurred).max(0) as u64;
                lags.lock().expect("lags").record(lag).expect("in range");
            }
        }))
    };
    let ingest = consume(&a.kafka_bootstrap, &topic, a.partitions, &w, observer).await?;
    let transport =
        KafkaTransport::new(&a.kafka_bootstrap, Duration::from_secs(5))?.to_topic(&topic);
    let spool = tempfile::tempdir()?;
    let producer = AuditProducer::start(
        ProducerConfig::new("bench").with_spool(spool.path()),
        Arc::new(transport),
        &prometheus::Registry::new(),
    )
    .await?;
    let tenants: Vec<TenantId> = (0..a.tenants)
        .map(|t| TenantId::parse(&format!("t{t}")).expect("valid"))
        .collect();
    println!(
        "pipeline: {} events/s for {} s (+5 s warm-up) into {} over {} tenants, topic {topic} ({} partitions)",
        a.rate,
        a.seconds,
        a.database_url,
        a.tenants,
        a.partitions
    );
    counted_from.store((micros_now() + 5_000_000) as u64, Ordering::Relaxed);
    let total = a.rate * (a.seconds + 5);
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let per_tick = (a.rate / 1000).max(1);
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut emitted = 0u64;
    while emitted < total {
        tick.tick().await;
        for _ in 0..per_tick {
            producer.emit(
                &tenants[(emitted % a.tenants as u64) as usize],
                draft(&mut rng),
            );
            emitted += 1;
        }
    }
    let emitting = started.elapsed();
    producer.flush().await;
    let deadline = Instant::now() + Duration::from_secs(120);
    while stored.load(Ordering::Relaxed) < total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ingest.stop().await;
    producer.shutdown().await;
    w.sequencer.shutdown().await;
    let h = lags.lock().expect("lags").clone();
    println!(
        "emitted {emitted} in {:.1} s ({:.0}/s); stored {}; counted after the warm-up: {}",
        emitting.as_secs_f64(),
        emitted as f64 / emitting.as_secs_f64(),
        stored.load(Ordering::Relaxed),
        h.len()
    );
    println!(
        "end-to-end (emit -> stored and committed): p50 {:.1} ms   p99 {:.1} ms   p99.9 {:.1} ms   max {:.1} ms (target p99 < 1000 ms)",
        h.value_at_quantile(0.5) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0,
        h.value_at_quantile(0.999) as f64 / 1000.0,
        h.max() as f64 / 1000.0
    );
    Ok(())
}

// ----- catch-up -----

#[derive(Args, Debug)]
pub(crate) struct CatchUpArgs {
    /// The brokers.
    #[arg(long)]
    kafka_bootstrap: String,
    /// A fresh store for the consumer run.
    #[arg(long)]
    database_url: vigil_core::DatabaseUrl,
    /// Another fresh store, of the same engine, for the direct run.
    #[arg(long)]
    direct_database_url: vigil_core::DatabaseUrl,
    /// Events in the backlog.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Tenants they are spread over.
    #[arg(long, default_value_t = 100)]
    tenants: u64,
    /// Partitions of the (new) topic.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// Direct ingest: concurrent clients, each submitting batches of --batch.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Direct ingest: events per submission.
    #[arg(long, default_value_t = 100)]
    batch: usize,
}

/// The backlog: events stamped as one producer per tenant would, in per-tenant order.
fn backlog(events: u64, tenants: u64) -> Vec<TenantEvent> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let base = micros_now();
    (0..events)
        .map(|i| {
            let t = i % tenants;
            let source = Source {
                service: "bench".into(),
                producer_id: Some(format!("bench-{t}")),
                producer_seq: Some((i / tenants + 1) as i64),
            };
            let e = draft(&mut rng)
                .build(
                    source,
                    EventId::from_uuid(uuid::Uuid::from_u64_pair(t, i)),
                    Timestamp::from_micros(base + i as i64).expect("a valid time"),
                )
                .expect("valid");
            TenantEvent::new(TenantId::parse(&format!("t{t}")).expect("valid"), e)
        })
        .collect()
}

pub(crate) async fn catch_up(a: CatchUpArgs) -> anyhow::Result<()> {
    println!(
        "catch-up: {} events of {} tenants, {} partitions",
        a.events, a.tenants, a.partitions
    );
    let events = backlog(a.events, a.tenants);

    // The backlog into a new topic (timed, for the record).
    let topic = fresh_topic("backlog");
    vigil_producer::kafka::ensure_topics(&a.kafka_bootstrap, &topic, a.partitions).await?;
    let transport =
        KafkaTransport::new(&a.kafka_bootstrap, Duration::from_secs(60))?.to_topic(&topic);
    let started = Instant::now();
    for chunk in events.chunks(10_000) {
        transport
            .send(chunk)
            .await
            .map_err(|e| anyhow::anyhow!("filling the topic: {e}"))?;
    }
    println!(
        "filled {topic} in {:.1} s ({:.0} events/s)",
        started.elapsed().as_secs_f64(),
        a.events as f64 / started.elapsed().as_secs_f64()
    );

    // Direct: the same events through the sequencer, like `bench ingest`'s clients — parsed
    // and validated from the same JSON, as any ingest path must.
    let dir = tempfile::tempdir()?;
    let direct = writer(&a.direct_database_url, &dir.path().join("direct")).await?;
    let mut per_client: Vec<Vec<(TenantId, Vec<Vec<u8>>)>> = vec![Vec::new(); a.clients];
    for t in 0..a.tenants {
        let tenant = TenantId::parse(&format!("t{t}"))?;
        let mine: Vec<Vec<u8>> = events
            .iter()
            .filter(|e| e.tenant() == &tenant)
            .map(|e| e.json().to_vec())
            .collect();
        per_client[(t as usize) % a.clients].push((tenant, mine));
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for work in per_client {
        let (seq, batch) = (direct.sequencer.clone(), a.batch);
        tasks.push(tokio::spawn(async move {
            // Round-robin over the client's tenants, a batch at a time.
            let mut cursors = vec![0usize; work.len()];
            loop {
                let mut any = false;
                for (i, (tenant, evs)) in work.iter().enumerate() {
                    let from = cursors[i];
                    if from >= evs.len() {
                        continue;
                    }
                    any = true;
                    let to = (from + batch).min(evs.len());
                    let parsed: Vec<Event> = evs[from..to]
                        .iter()
                        .map(|j| {
                            let v = serde_json::from_slice(j).expect("JSON");
                            vigil_core::event::EventInput::new(v)
                                .validate_deterministic()
                                .expect("valid")
                        })
                        .collect();
                    seq.submit(tenant, parsed, vigil_audit::checkpointer::now())
                        .await
                        .expect("direct ingest");
                    cursors[i] = to;
                }
                if !any {
                    break;
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let direct_secs = started.elapsed().as_secs_f64();
    direct.sequencer.shutdown().await;
    let direct_rate = a.events as f64 / direct_secs;
    println!("direct through the sequencer: {direct_secs:.1} s, {direct_rate:.0} events/s");

    // Through Kafka: a consumer started on the waiting backlog.
    let w = writer(&a.database_url, &dir.path().join("kafka")).await?;
    let stored = Arc::new(AtomicU64::new(0));
    let observer = {
        let stored = Arc::clone(&stored);
        StoredObserver(Arc::new(move |_: i64| {
            stored.fetch_add(1, Ordering::Relaxed);
        }))
    };
    let started = Instant::now();
    let ingest = consume(&a.kafka_bootstrap, &topic, a.partitions, &w, observer).await?;
    let joined = started.elapsed().as_secs_f64();
    while stored.load(Ordering::Relaxed) < a.events {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if started.elapsed() > Duration::from_secs(3600) {
            anyhow::bail!(
                "the consumer stored {} in an hour",
                stored.load(Ordering::Relaxed)
            );
        }
    }
    let kafka_secs = started.elapsed().as_secs_f64();
    ingest.stop().await;
    w.sequencer.shutdown().await;
    let kafka_rate = a.events as f64 / kafka_secs;
    println!(
        "through Kafka (consumer): {kafka_secs:.1} s including {joined:.1} s to join the group, {kafka_rate:.0} events/s ({:.0} events/s after joining)",
        a.events as f64 / (kafka_secs - joined)
    );
    println!(
        "ratio {:.2} (target >= 0.8); {:.2} counting from the join",
        kafka_rate / direct_rate,
        a.events as f64 / (kafka_secs - joined) / direct_rate
    );
    Ok(())
}
