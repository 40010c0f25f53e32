//! `vigil bench`: the benchmarks behind BENCHMARKS.md. Each compares, in one run, Vigil's path
//! with the baseline the issue names.
//!
//! - `ingest`: chained ingest (validation, idempotency lookups, producer checks, sequencing,
//!   sealing, group commit) against a raw insert of the same rows through the same store call
//!   in transactions of the batch size, with no hashing, sequencing or idempotency check.
//! - `query`: p50/p99 of filtered pages of 100 over HTTP, at 1,000,000 events of 100 tenants.
//! - `verify`: verification throughput beside SHA-256 over the same canonical bytes.
//! - `emit`, `pipeline`, `catch-up`: the audit pipeline (see `bench_pipeline`).

use anyhow::Context;
use clap::{Args, Subcommand};
use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vigil_audit::checkpointer::Checkpointer;
use vigil_audit::metrics::AuditMetrics;
use vigil_audit::sequencer::Sequencer;
use vigil_core::chain::ChainHead;
use vigil_core::checkpoint::NoteSigner;
use vigil_core::event::{Event, EventInput};
use vigil_core::hash::Hash32;
use vigil_core::ids::{EventId, TenantId};
use vigil_core::record::{Record, Sealer};
use vigil_core::time::Timestamp;
use vigil_core::verify::ChainVerifier;
use vigil_store::{NewRecord, Store};

#[derive(Subcommand, Debug)]
pub(crate) enum BenchCommand {
    /// Chained ingest vs raw insert, events/s.
    Ingest(IngestArgs),
    /// Query latency for filtered pages, over HTTP.
    Query(QueryArgs),
    /// Verification throughput vs SHA-256 over the same bytes.
    Verify(VerifyArgs),
    /// One capability decision through Cedar vs a HashMap of the same matrix.
    Capability(CapabilityArgs),
    /// Bearer-token verification through the JWKS verifier vs the raw signature check of the
    /// same token, per core, for EdDSA, ES256 and RS256.
    Jwt(crate::bench_jwt::JwtArgs),
    /// The gateway's rate-limit decision on Redis (through the breaker) and in memory.
    Ratelimit(crate::bench_gateway::RateLimitArgs),
    /// AuditProducer::emit per call under concurrent emitters vs a bare tokio mpsc channel.
    Emit(crate::bench_pipeline::EmitArgs),
    /// End-to-end delay, emit to stored, at a steady rate through Kafka into the store.
    Pipeline(crate::bench_pipeline::PipelineArgs),
    /// A backlog in the topic stored by the consumer vs the same events ingested directly.
    CatchUp(crate::bench_pipeline::CatchUpArgs),
    /// A retention purge of expired events (seconds, bytes freed) and live ingest p99 while
    /// it runs vs without.
    Retention(crate::bench_retention::RetentionArgs),
    /// The tracked figures (ingest, verification, queries, peak memory), each beside an
    /// in-run reference, over rounds; JSON out, and a regression check against a baseline.
    Regress(crate::bench_regress::RegressArgs),
    /// Merkle proof generation (inclusion, consistency) at a large tenant, from the store and
    /// over HTTP, p50/p99.
    Proofs(crate::bench_proofs::ProofsArgs),
    /// Compare two `bench regress` results: exit 1 when a tracked figure regressed.
    Compare(crate::bench_regress::CompareArgs),
    /// A prototype of ingest into append-only segment files with the query indexes built
    /// behind, beside the raw insert and chained ingest (issue 15, item 5).
    Segment(crate::bench_segment::SegmentArgs),
}

#[derive(Args, Debug)]
pub(crate) struct CapabilityArgs {
    /// Decisions to time per method.
    #[arg(long, default_value_t = 200_000)]
    decisions: usize,
}

#[derive(Args, Debug)]
pub(crate) struct IngestArgs {
    /// A fresh store: sqlite://PATH or postgres://… (the benchmark writes to it).
    #[arg(long)]
    database_url: vigil_core::DatabaseUrl,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Events per request / per raw transaction.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Batches each client sends per round.
    #[arg(long, default_value_t = 40)]
    batches: usize,
    /// Rounds (raw and chained alternate; each round uses new tenants).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Also ingest through a sequencer with a 5-path enforce redaction policy (mask, hmac,
    /// drop), in the same rounds, and report its rate against chained ingest without one.
    #[arg(long)]
    redaction: bool,
    /// Also time chained ingest with checkpoints that keep no Merkle tree (as before trees
    /// were kept), alternating with the usual run, and report the ratio.
    #[arg(long)]
    tree_cost: bool,
    /// Events per tenant between signed checkpoints (the audit service's default: 1,000).
    #[arg(long, default_value_t = 1000)]
    checkpoint_every: i64,
}

#[derive(Args, Debug)]
pub(crate) struct QueryArgs {
    /// The store; filled to --events first if it holds fewer.
    #[arg(long)]
    database_url: vigil_core::DatabaseUrl,
    /// Events to hold.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Tenants they are spread over.
    #[arg(long, default_value_t = 100)]
    tenants: u64,
    /// Queries to time per filter.
    #[arg(long, default_value_t = 500)]
    queries: usize,
}

#[derive(Args, Debug)]
pub(crate) struct VerifyArgs {
    /// A filled store (e.g. the one `bench query` filled).
    #[arg(long)]
    database_url: vigil_core::DatabaseUrl,
    /// Tenants to verify (the first N).
    #[arg(long, default_value_t = 20)]
    tenants: usize,
}

pub(crate) async fn run(cmd: BenchCommand) -> anyhow::Result<std::process::ExitCode> {
    let done = match cmd {
        BenchCommand::Regress(a) => return crate::bench_regress::run_regress(a).await,
        BenchCommand::Compare(a) => return crate::bench_regress::run_compare(a),
        BenchCommand::Ingest(a) => ingest(a).await,
        BenchCommand::Query(a) => query(a).await,
        BenchCommand::Verify(a) => verify(a).await,
        BenchCommand::Capability(a) => capability(a),
        BenchCommand::Jwt(a) => crate::bench_jwt::run(a).await,
        BenchCommand::Ratelimit(a) => crate::bench_gateway::run(a).await,
        BenchCommand::Emit(a) => crate::bench_pipeline::emit(a).await,
        BenchCommand::Pipeline(a) => crate::bench_pipeline::pipeline(a).await,
        BenchCommand::CatchUp(a) => crate::bench_pipeline::catch_up(a).await,
        BenchCommand::Retention(a) => crate::bench_retention::run(a).await,
        BenchCommand::Proofs(a) => crate::bench_proofs::run(a).await,
        BenchCommand::Segment(a) => crate::bench_segment::run(a).await,
    };
    done.map(|()| std::process::ExitCode::SUCCESS)
}

const ACTIONS: [&str; 12] = [
    "payment.void",
    "payment.refund",
    "payment.capture",
    "payment.refund.partial",
    "user.login",
    "user.logout",
    "user.password.change",
    "customer.update",
    "customer.view",
    "inventory.adjust",
    "order.create",
    "order.cancel",
];
const RESOURCES: [&str; 5] = ["payment", "customer", "order", "sku", "session"];
const OUTCOMES: [&str; 5] = ["success", "success", "success", "failure", "denied"];
const SEVERITIES: [&str; 6] = ["info", "info", "info", "notice", "warning", "security"];

/// A realistic event: ~600 bytes of JSON with a five-field payload.
pub(crate) fn bench_event(rng: &mut impl Rng, i: u64, producer: &str) -> Value {
    json!({
        "event_id": uuid::Uuid::from_u64_pair(rng.gen(), i).to_string(),
        "occurred_at": Timestamp::from_micros(1_790_000_000_000_000 + (i as i64) * 2_500_000 + rng.gen_range(0..1_000_000)).unwrap().to_rfc3339(),
        "actor": {"type": "user", "id": format!("u-{}", rng.gen_range(0..50))},
        "action": ACTIONS[rng.gen_range(0..ACTIONS.len())],
        "resource": {"type": RESOURCES[rng.gen_range(0..5)], "id": format!("r-{}", rng.gen_range(0..2000))},
        "outcome": OUTCOMES[rng.gen_range(0..5)],
        "severity": SEVERITIES[rng.gen_range(0..SEVERITIES.len())],
        "source": {"service": "payments", "producer_id": producer, "producer_seq": i},
        "trace_id": hex::encode(rng.gen::<[u8; 16]>()),
        "payload": {
            "amount": rng.gen_range(1..100_000) as f64 / 100.0,
            "currency": "EUR",
            "ip": format!("10.{}.{}.{}", rng.gen::<u8>(), rng.gen::<u8>(), rng.gen::<u8>()),
            "user_agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36",
            "reason": {"code": rng.gen_range(0..40), "text": "customer request"},
        }
    })
}

/// `clients` clients' events for `round`: `per_client` each, client `c` as producer
/// `p-{round}-{c}` (producer seqs from 1).
pub(crate) fn client_inputs(
    rng: &mut impl Rng,
    clients: usize,
    per_client: usize,
    round: usize,
) -> Vec<Vec<Value>> {
    (0..clients)
        .map(|c| {
            (0..per_client as u64)
                .map(|i| bench_event(rng, i + 1, &format!("p-{round}-{c}")))
                .collect()
        })
        .collect()
}

pub(crate) fn validate(v: Value) -> Event {
    EventInput::new(v)
        .validate(|| EventId::from_uuid(uuid::Uuid::now_v7()))
        .expect("bench events are valid")
}

pub(crate) fn seal_all(
    tenant: &TenantId,
    events: &[Event],
    head: &mut ChainHead,
    at: Timestamp,
) -> Vec<NewRecord> {
    let mut rng = rand::thread_rng();
    let mut sealer = Sealer::new(tenant);
    let mut scratch = vigil_core::jcs::Writer::with_capacity(1024);
    events
        .iter()
        .map(|e| {
            let r = sealer.seal(e, head.seq + 1, at, &head.hash, &mut rng);
            *head = head.advance(&r);
            NewRecord {
                content_hash: e.content_hash_with(&mut scratch),
                record: r,
            }
        })
        .collect()
}

async fn ingest(a: IngestArgs) -> anyhow::Result<()> {
    let store = vigil_store::open(a.database_url.expose())
        .await
        .context("opening the store")?;
    let dir = tempfile::tempdir()?;
    let signer = NoteSigner::new("bench", &[7; 32])?;
    let metrics = AuditMetrics::new();
    let cp = Arc::new(Checkpointer::new(
        Arc::clone(&store),
        signer,
        metrics.clone(),
        a.checkpoint_every,
        Duration::from_secs(60),
    ));
    let seq = Sequencer::new(
        Arc::clone(&store),
        Arc::clone(&cp),
        metrics.clone(),
        5000,
        None,
    );
    // The same, redacting five paths of every event before it is hashed.
    let policy = vigil_core::redaction::Policy::from_json(
        &json!({"mode": "enforce", "rules": [
            {"path": "payload.ip", "action": "hmac"},
            {"path": "payload.user_agent", "action": "drop"},
            {"path": "payload.reason.text", "action": "mask"},
            {"path": "payload.reason.code", "action": "hmac"},
            {"path": "payload.currency", "action": "mask"}
        ]})
        .to_string(),
    )?;
    let redacting = Sequencer::new(
        Arc::clone(&store),
        cp,
        metrics.clone(),
        5000,
        Some(Arc::new(vigil_audit::redaction::Redactor::new(
            policy,
            [9; 32],
            vigil_core::erasure::Kek::new([10; 32]),
            Arc::clone(&store),
            metrics.clone(),
        ))),
    );
    // The same, with checkpoints that keep no Merkle tree (the cost of keeping it).
    let treeless = Sequencer::new(
        Arc::clone(&store),
        Arc::new(
            Checkpointer::new(
                Arc::clone(&store),
                NoteSigner::new("bench", &[7; 32])?,
                metrics.clone(),
                a.checkpoint_every,
                Duration::from_secs(60),
            )
            .without_tree(),
        ),
        metrics.clone(),
        5000,
        None,
    );
    let mut tree_ratios = vec![];
    let mut redacted_rates = vec![];
    drop(dir);
    let per_client = a.batch * a.batches;
    let total = (a.clients * per_client) as f64;
    println!(
        "ingest into {} ({}): {} clients x {} batches of {} events per round",
        store.engine(),
        a.database_url,
        a.clients,
        a.batches,
        a.batch
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let mut raw_rates = vec![];
    let mut chained_rates = vec![];
    let mut one_rates = vec![];
    for round in 0..a.rounds {
        // The same JSON events for both paths.
        let inputs = client_inputs(&mut rng, a.clients, per_client, round);

        // Raw: rows prepared beforehand (untimed), each client inserts its own tenant's rows in
        // transactions of `batch`, through the same store call.
        let prepared = prepare_raw(&inputs, |c| format!("raw-{round}-{c}"))?;
        let raw = raw_run(&store, prepared, a.batch).await?;
        let raw_cpu = raw.cpu.per_event(total);
        let raw = total / raw.took.as_secs_f64();

        // Chained, like for like: each client its own tenant, as in the raw run.
        let chained =
            chained_run(&seq, &inputs, a.batch, |c| format!("chained-{round}-{c}")).await?;
        let chained_rate = total / chained.took.as_secs_f64();
        println!(
            "  CPU per event: raw insert {raw_cpu}; chained {}",
            chained.cpu.per_event(total)
        );
        // Chained, worst case: every client on one tenant, whose chain is one sequence.
        let before = WriterTime::read(&metrics);
        let one = chained_run(&seq, &inputs, a.batch, |_| format!("one-{round}")).await?;
        let one_rate = total / one.took.as_secs_f64();
        WriterTime::read(&metrics).since(&before, one.took);
        println!(
            "round {round}: raw insert {raw:>7.0} events/s   chained ingest {chained_rate:>7.0} events/s (ratio {:.2})   all clients on one tenant {one_rate:>7.0} events/s (ratio {:.2})",
            chained_rate / raw,
            one_rate / raw
        );
        if a.tree_cost {
            let bare =
                chained_run(&treeless, &inputs, a.batch, |c| format!("bare-{round}-{c}")).await?;
            let bare_rate = total / bare.took.as_secs_f64();
            // The same again with the tree, right after, so drift within the round cancels.
            let again =
                chained_run(&seq, &inputs, a.batch, |c| format!("again-{round}-{c}")).await?;
            let with_rate = (chained_rate + total / again.took.as_secs_f64()) / 2.0;
            println!(
                "round {round}: chained without the Merkle tree {bare_rate:>7.0} events/s, with it {with_rate:>7.0} events/s (ratio {:.2})",
                with_rate / bare_rate
            );
            tree_ratios.push(with_rate / bare_rate);
        }
        if a.redaction {
            let red =
                chained_run(&redacting, &inputs, a.batch, |c| format!("red-{round}-{c}")).await?;
            let red_rate = total / red.took.as_secs_f64();
            println!(
                "round {round}: chained with a 5-path enforce redaction policy {red_rate:>7.0} events/s (ratio to chained without {:.2})",
                red_rate / chained_rate
            );
            redacted_rates.push(red_rate / chained_rate);
        }
        raw_rates.push(raw);
        chained_rates.push(chained_rate);
        one_rates.push(one_rate);
    }
    seq.shutdown().await;
    redacting.shutdown().await;
    treeless.shutdown().await;
    if a.tree_cost {
        let n = tree_ratios.len() as f64;
        println!(
            "Merkle tree: mean ratio {:.2} of chained ingest without it (target >= 0.9)",
            tree_ratios.iter().sum::<f64>() / n
        );
    }
    if a.redaction {
        let n = redacted_rates.len() as f64;
        println!(
            "redaction: mean ratio {:.2} of chained ingest without a policy (target >= 0.9)",
            redacted_rates.iter().sum::<f64>() / n
        );
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (raw, chained, one) = (mean(&raw_rates), mean(&chained_rates), mean(&one_rates));
    let group =
        metrics.group_size.get_sample_sum() / metrics.group_size.get_sample_count().max(1) as f64;
    println!(
        "mean: raw {raw:.0} events/s, chained {chained:.0} events/s, ratio {:.2} (target >= 0.85); one tenant {one:.0} events/s, ratio {:.2}; mean group commit {group:.0} events",
        chained / raw,
        one / raw
    );
    Ok(())
}

/// Where a writer's time goes (`audit_writer_seconds_total`, the group commits' count, size
/// and duration), read before and after a run with one writer (one tenant).
struct WriterTime {
    plan: f64,
    wait: f64,
    checkpoint: f64,
    groups: u64,
    events: f64,
    commit: f64,
}

impl WriterTime {
    fn read(m: &vigil_audit::metrics::AuditMetrics) -> WriterTime {
        let stage = |s: &str| m.writer_seconds.with_label_values(&[s]).get();
        WriterTime {
            plan: stage("plan"),
            wait: stage("commit_wait"),
            checkpoint: stage("checkpoint"),
            groups: m.group_size.get_sample_count(),
            events: m.group_size.get_sample_sum(),
            commit: m.commit_seconds.get_sample_sum(),
        }
    }

    /// Prints, per group commit of the run that took `took`: its events, the transaction's
    /// duration, and the writer's time planning, waiting for the commit and checkpointing;
    /// the rest of the writer's time it waited for events.
    fn since(&self, before: &WriterTime, took: Duration) {
        let groups = self.groups.saturating_sub(before.groups).max(1) as f64;
        let ms = |a: f64, b: f64| (a - b) * 1e3 / groups;
        let busy = (self.plan - before.plan)
            + (self.wait - before.wait)
            + (self.checkpoint - before.checkpoint);
        println!(
            "  one tenant's writer: {groups:.0} group commits of {:.0} events; per group: transaction {:.2} ms, planning {:.2} ms, waiting for the commit {:.2} ms, checkpoints {:.2} ms; waiting for events {:.0} % of the run",
            (self.events - before.events) / groups,
            ms(self.commit, before.commit),
            ms(self.plan, before.plan),
            ms(self.wait, before.wait),
            ms(self.checkpoint, before.checkpoint),
            (1.0 - busy / took.as_secs_f64()).max(0.0) * 100.0
        );
    }
}

/// CPU time so far, from `/proc` (in USER_HZ ticks of 10 ms): this process's and the whole
/// machine's busy time (every core, all processes: the database's too).
pub(crate) struct Cpu {
    process: f64,
    machine: f64,
}

impl Cpu {
    pub(crate) fn now() -> Cpu {
        let ticks = |s: &str, skip: usize, take: usize| -> f64 {
            s.split_whitespace()
                .skip(skip)
                .take(take)
                .filter_map(|v| v.parse::<f64>().ok())
                .sum::<f64>()
                / 100.0
        };
        let own = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        // After the command's closing parenthesis (state is the first field): utime, stime.
        let own = own.rsplit_once(')').map_or("", |(_, rest)| rest);
        let all = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let line = all.lines().next().unwrap_or("");
        // cpu user nice system idle iowait irq softirq steal: busy is all but idle and iowait.
        let busy = ticks(line, 1, 3) + ticks(line, 6, 3);
        Cpu {
            process: ticks(own, 11, 2),
            machine: busy,
        }
    }

    /// Since `self`, per event of `events`: this process's CPU and the rest of the machine's.
    pub(crate) fn per_event(&self, events: f64) -> String {
        let now = Cpu::now();
        let own = (now.process - self.process) * 1e6 / events;
        let rest = (now.machine - self.machine) * 1e6 / events - own;
        format!("Vigil {own:.1} µs + the rest of the machine {rest:.1} µs")
    }
}

/// A timed run of concurrent clients: how long it took, each batch's latency (µs), and the
/// CPU counters when its clock started (read [`Cpu::per_event`] right after the run).
pub(crate) struct Timed {
    pub(crate) took: Duration,
    pub(crate) latency: Histogram<u64>,
    pub(crate) cpu: Cpu,
}

/// Waits for the clients; their latencies merged.
pub(crate) async fn timed(
    (started, cpu): (Instant, Cpu),
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<Histogram<u64>>>>,
) -> anyhow::Result<Timed> {
    let mut latency = Histogram::<u64>::new(3)?;
    for t in tasks {
        latency.add(t.await??)?;
    }
    Ok(Timed {
        took: started.elapsed(),
        latency,
        cpu,
    })
}

/// The clock and the CPU counters, read when a timed run starts.
pub(crate) fn start_clock() -> (Instant, Cpu) {
    (Instant::now(), Cpu::now())
}

/// The rows of `inputs` sealed for a raw insert (untimed), client `c`'s into `tenant_of(c)`.
pub(crate) fn prepare_raw(
    inputs: &[Vec<Value>],
    tenant_of: impl Fn(usize) -> String,
) -> anyhow::Result<Vec<(TenantId, Vec<NewRecord>)>> {
    let at = vigil_audit::checkpointer::now();
    inputs
        .iter()
        .enumerate()
        .map(|(c, evs)| {
            let t = TenantId::parse(&tenant_of(c))?;
            let events: Vec<Event> = evs.iter().cloned().map(validate).collect();
            let recs = seal_all(&t, &events, &mut ChainHead::genesis(), at);
            Ok((t, recs))
        })
        .collect()
}

/// Each client inserts its tenant's prepared rows in transactions of `batch` through the
/// store's append: no hashing, sequencing or idempotency check.
pub(crate) async fn raw_run(
    store: &Arc<dyn Store>,
    prepared: Vec<(TenantId, Vec<NewRecord>)>,
    batch: usize,
) -> anyhow::Result<Timed> {
    let started = start_clock();
    let mut tasks = vec![];
    for (t, recs) in prepared {
        let store = Arc::clone(store);
        tasks.push(tokio::spawn(async move {
            let mut h = Histogram::<u64>::new(3).expect("a histogram");
            for chunk in recs.chunks(batch) {
                let s = Instant::now();
                store.append(&t, chunk, &[]).await.expect("raw insert");
                let _ = h.record(s.elapsed().as_micros() as u64);
            }
            Ok(h)
        }));
    }
    timed(started, tasks).await
}

/// Each client's tenant and its own copy of its events, made before a run's clock starts (as
/// the raw run's rows are prepared beforehand): a run times ingest, not copying the inputs.
pub(crate) fn client_copies(
    inputs: &[Vec<Value>],
    tenant_of: impl Fn(usize) -> String,
) -> anyhow::Result<Vec<(TenantId, Vec<Value>)>> {
    inputs
        .iter()
        .enumerate()
        .map(|(c, evs)| Ok((TenantId::parse(&tenant_of(c))?, evs.clone())))
        .collect()
}

/// Every client submits its batches (validated from JSON per request) to `tenant_of(client)`.
pub(crate) async fn chained_run(
    seq: &Sequencer,
    inputs: &[Vec<Value>],
    batch: usize,
    tenant_of: impl Fn(usize) -> String,
) -> anyhow::Result<Timed> {
    let clients = client_copies(inputs, tenant_of)?;
    let started = start_clock();
    let mut tasks = vec![];
    for (tenant, evs) in clients {
        let seq = seq.clone();
        tasks.push(tokio::spawn(async move {
            let mut h = Histogram::<u64>::new(3).expect("a histogram");
            for chunk in evs.chunks(batch) {
                let s = Instant::now();
                let events: Vec<Event> = chunk.iter().cloned().map(validate).collect();
                let results = seq
                    .submit(&tenant, events, vigil_audit::checkpointer::now())
                    .await
                    .expect("chained ingest");
                assert!(results
                    .iter()
                    .all(|r| matches!(r, vigil_audit::sequencer::IngestResult::Stored { .. })));
                let _ = h.record(s.elapsed().as_micros() as u64);
            }
            Ok(h)
        }));
    }
    timed(started, tasks).await
}

pub(crate) async fn fill(store: &Arc<dyn Store>, events: u64, tenants: u64) -> anyhow::Result<()> {
    let per_tenant = events / tenants;
    let mut have = 0u64;
    for t in 0..tenants {
        have += store
            .head(&TenantId::parse(&format!("t{t:03}"))?)
            .await?
            .seq as u64;
    }
    if have >= events {
        println!("store holds {have} events of {tenants} tenants already");
        return Ok(());
    }
    println!("filling the store with {events} events of {tenants} tenants...");
    let started = Instant::now();
    let mut tasks = vec![];
    for t in 0..tenants {
        let store = Arc::clone(store);
        tasks.push(tokio::spawn(async move {
            let tenant = TenantId::parse(&format!("t{t:03}")).unwrap();
            let mut head = store.head(&tenant).await.expect("head");
            let mut rng = rand::rngs::StdRng::seed_from_u64(t);
            while (head.seq as u64) < per_tenant {
                let n = (per_tenant - head.seq as u64).min(2000);
                let from = head.seq as u64 + 1;
                let events: Vec<Event> = (from..from + n)
                    .map(|i| validate(bench_event(&mut rng, i, "filler")))
                    .collect();
                let at =
                    Timestamp::from_micros(1_790_000_000_000_000 + head.seq * 2_500_000).unwrap();
                let recs = seal_all(&tenant, &events, &mut head, at);
                store
                    .append(&tenant, &recs, &[("filler".into(), head.seq)])
                    .await
                    .expect("fill");
            }
        }));
        if tasks.len() >= 4 {
            tasks.remove(0).await?;
        }
    }
    for t in tasks {
        t.await?;
    }
    println!("filled in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

async fn query(a: QueryArgs) -> anyhow::Result<()> {
    let store = vigil_store::open(a.database_url.expose())
        .await
        .context("opening the store")?;
    fill(&store, a.events, a.tenants).await?;
    let service = Served::start(&a.database_url).await?;
    let base = service.base.clone();
    let client = reqwest::Client::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let filters = filters();
    println!(
        "query latency over HTTP, {} queries per filter, limit=100, store {}",
        a.queries,
        store.engine()
    );
    let mut all = Histogram::<u64>::new(3)?;
    for (name, f) in &filters {
        let (h, returned) = time_filter(&client, &base, a.tenants, *f, a.queries, &mut rng).await?;
        all.add(&h)?;
        println!(
            "{name:>14}: p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>6.2} ms  ({} KiB/page)",
            h.value_at_quantile(0.5) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0,
            h.max() as f64 / 1000.0,
            returned / a.queries / 1024
        );
    }
    println!(
        "{:>14}: p50 {:>6.2} ms  p99 {:>6.2} ms  (target p99 < 5 ms)",
        "all",
        all.value_at_quantile(0.5) as f64 / 1000.0,
        all.value_at_quantile(0.99) as f64 / 1000.0
    );
    service.stop().await
}

/// The audit service over a benchmark's store, in-process on a free loopback port.
pub(crate) struct Served {
    /// `http://127.0.0.1:PORT`.
    pub(crate) base: String,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<Result<(), vigil_audit::AuditError>>,
    _dir: tempfile::TempDir,
}

impl Served {
    pub(crate) async fn start(database_url: &vigil_core::DatabaseUrl) -> anyhow::Result<Served> {
        let dir = tempfile::tempdir()?;
        let mut settings = vigil_audit::AuditSettings::embedded(dir.path().to_path_buf());
        settings.listen = "127.0.0.1:0".parse()?;
        settings.database_url = database_url.clone();
        let app = vigil_audit::Application::build(settings).await?;
        let base = format!("http://{}", app.local_addr());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        Ok(Served {
            base,
            stop,
            server,
            _dir: dir,
        })
    }

    pub(crate) async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        Ok(self.server.await??)
    }
}

/// A query filter: the query string for a random draw.
pub(crate) type Filter = fn(&mut rand::rngs::StdRng) -> String;

/// The filter shapes `bench query` times, by name.
pub(crate) fn filters() -> Vec<(&'static str, Filter)> {
    vec![
        ("no filter", |_| String::new()),
        ("actor_id", |r| format!("actor_id=u-{}", r.gen_range(0..50))),
        ("action exact", |r| {
            format!("action={}", ACTIONS[r.gen_range(0..ACTIONS.len())])
        }),
        ("action prefix", |r| {
            format!(
                "action={}.*",
                ["payment", "user", "order"][r.gen_range(0..3)]
            )
        }),
        ("resource", |r| {
            format!(
                "resource_type=payment&resource_id=r-{}",
                r.gen_range(0..2000)
            )
        }),
        ("outcome", |_| "outcome=denied".into()),
        ("min_severity", |_| "min_severity=warning".into()),
        ("time window", |r| {
            let from = 1_790_000_000_000_000 + r.gen_range(0..9_000i64) * 2_500_000;
            format!(
                "since={}&until={}",
                Timestamp::from_micros(from).unwrap().to_rfc3339(),
                Timestamp::from_micros(from + 3_600_000_000)
                    .unwrap()
                    .to_rfc3339()
            )
        }),
        ("actor+outcome", |r| {
            format!("actor_id=u-{}&outcome=failure", r.gen_range(0..50))
        }),
    ]
}

/// Times `queries` pages of 100 with filter `f` over HTTP (after 20 that warm caches and
/// connections), each in a random one of `tenants` tenants (`t000`…): latencies in µs, and the
/// bytes returned.
pub(crate) async fn time_filter(
    client: &reqwest::Client,
    base: &str,
    tenants: u64,
    f: Filter,
    queries: usize,
    rng: &mut rand::rngs::StdRng,
) -> anyhow::Result<(Histogram<u64>, usize)> {
    let mut h = Histogram::<u64>::new(3)?;
    let mut returned = 0usize;
    for i in 0..queries + 20 {
        let tenant = format!("t{:03}", rng.gen_range(0..tenants));
        let url = format!("{base}/v1/events?limit=100&{}", f(rng));
        let started = Instant::now();
        let r = client
            .get(&url)
            .header("X-Tenant-ID", &tenant)
            .header("X-Roles", "admin")
            .send()
            .await?;
        anyhow::ensure!(r.status() == 200, "{url}: {}", r.status());
        let body = r.bytes().await?;
        let us = started.elapsed().as_micros() as u64;
        if i >= 20 {
            h.record(us)?;
            returned += body.len();
        }
    }
    Ok((h, returned))
}

async fn verify(a: VerifyArgs) -> anyhow::Result<()> {
    let store = vigil_store::open(a.database_url.expose())
        .await
        .context("opening the store")?;
    let tenants: Vec<vigil_core::ids::TenantId> =
        store.tenants().await?.into_iter().take(a.tenants).collect();
    anyhow::ensure!(
        !tenants.is_empty(),
        "the store is empty: run `vigil bench query` first"
    );
    let v = verify_rates(&store, &tenants).await?;
    let (n, rate) = (v.records, |d: Duration| v.records as f64 / d.as_secs_f64());
    println!(
        "verify {n} records of {} tenants ({} bytes of hashed form on average), store {}",
        tenants.len(),
        v.bytes / n,
        store.engine()
    );
    println!(
        "SHA-256 over the canonical hashed forms: {:>9.0} records/s",
        rate(v.sha)
    );
    println!(
        "hashing a verifier must do:             {:>9.0} records/s  ratio {:.2} (the ceiling: leaf, chain link, tree, commitments)",
        rate(v.floor),
        rate(v.floor) / rate(v.sha)
    );
    println!(
        "core verification (in memory):          {:>9.0} records/s  ratio {:.2} (target >= 0.5; stored rows, as vigil verify reads them)",
        rate(v.core),
        rate(v.core) / rate(v.sha)
    );
    println!("  rows decoded for the general check: {}", v.decoded);
    println!(
        "core verification of decoded records:   {:>9.0} records/s  ratio {:.2}",
        rate(v.core_records),
        rate(v.core_records) / rate(v.sha)
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "vigil verify end to end (store reads):  {:>9.0} records/s  ratio {:.2} (target >= 0.25; tenants in parallel on {cores} cores)",
        rate(v.e2e),
        rate(v.e2e) / rate(v.sha)
    );
    Ok(())
}

/// Verification of some tenants timed over the same records: SHA-256 over their canonical
/// hashed forms (the baseline), the hashing verification cannot do without, the core chain
/// verification in memory (of stored rows as `vigil verify` reads them, and of decoded
/// records), and `vigil verify`'s path from the store (tenants in parallel on every core).
pub(crate) struct VerifyRates {
    pub(crate) records: usize,
    pub(crate) bytes: usize,
    pub(crate) sha: Duration,
    pub(crate) floor: Duration,
    pub(crate) core: Duration,
    pub(crate) core_records: Duration,
    /// Rows the stored-row check had to decode (see `ChainVerifier::decoded_rows`).
    pub(crate) decoded: u64,
    pub(crate) e2e: Duration,
}

pub(crate) async fn verify_rates(
    store: &Arc<dyn Store>,
    tenants: &[TenantId],
) -> anyhow::Result<VerifyRates> {
    // Load the rows once (untimed) for the in-memory comparisons.
    let mut stored: Vec<Vec<vigil_core::stored::StoredBatch>> = vec![];
    for t in tenants {
        let (mut rx, mut batches) = (store.scan_stored(t, 0, 1000), vec![]);
        while let Some(b) = rx.recv().await {
            batches.push(b?);
        }
        stored.push(batches);
    }
    let records: Vec<Vec<Record>> = stored
        .iter()
        .map(|bs| {
            bs.iter()
                .flat_map(|b| b.rows().map(|r| r.to_record()))
                .collect()
        })
        .collect();
    let n: usize = records.iter().map(Vec::len).sum();
    let bytes: Vec<Vec<u8>> = records
        .iter()
        .flatten()
        .map(Record::canonical_hashed_form)
        .collect();
    let total_bytes: usize = bytes.iter().map(Vec::len).sum();
    // What a commitment hashes: each visible member's salt and canonical value.
    let members: Vec<Vec<Vec<u8>>> = records
        .iter()
        .flatten()
        .map(|r| {
            r.payload
                .iter()
                .map(|(k, v)| {
                    let mut m = vec![0u8; 16];
                    vigil_core::hash::decode_hex(r.payload_salts[k].as_bytes(), &mut m);
                    m.extend(vigil_core::jcs::to_vec(v));
                    m
                })
                .collect()
        })
        .collect();

    let best = |f: &dyn Fn()| {
        (0..3)
            .map(|_| {
                let s = Instant::now();
                f();
                s.elapsed()
            })
            .min()
            .unwrap()
    };
    let sha = best(&|| {
        let mut acc = 0u8;
        for b in &bytes {
            acc ^= Hash32::digest(&[b]).0[0];
        }
        std::hint::black_box(acc);
    });
    // The leaf (over the hashed form and its prefix byte), the chain link, the Merkle tree
    // and one commitment per payload member: hashing the design requires of a verifier.
    let floor = best(&|| {
        let mut i = 0;
        for rs in &records {
            let (mut prev, mut tree) = (Hash32::ZERO, vigil_core::merkle::Frontier::default());
            for _ in rs {
                let leaf = Hash32::digest(&[&[0u8], &bytes[i]]);
                prev = vigil_core::chain::link(&prev, &leaf);
                tree.push(leaf);
                for m in &members[i] {
                    std::hint::black_box(Hash32::digest(&[m]));
                }
                i += 1;
            }
            std::hint::black_box((prev, tree.root()));
        }
    });
    let decoded = std::sync::atomic::AtomicU64::new(0);
    let core = best(&|| {
        let mut n = 0;
        for bs in &stored {
            let mut v = ChainVerifier::new(vec![]);
            for r in bs.iter().flat_map(|b| b.rows()) {
                v.push_stored(&r).expect("intact");
            }
            n += v.decoded_rows();
            std::hint::black_box(v.head());
        }
        decoded.store(n, std::sync::atomic::Ordering::Relaxed);
    });
    let core_records = best(&|| {
        for rs in &records {
            let mut v = ChainVerifier::new(vec![]);
            for r in rs {
                v.push(r).expect("intact");
            }
            std::hint::black_box(v.head());
        }
    });
    let started = Instant::now();
    let verified = crate::verify::verify_tenants(
        store,
        tenants.to_vec(),
        vigil_audit::verification::TrustedKeys::FromStore,
        false,
    )
    .await?;
    anyhow::ensure!(verified.intact, "a tenant did not verify");
    Ok(VerifyRates {
        records: n,
        bytes: total_bytes,
        sha,
        floor,
        core,
        core_records,
        decoded: decoded.into_inner(),
        e2e: started.elapsed(),
    })
}

fn capability(a: CapabilityArgs) -> anyhow::Result<()> {
    use std::collections::HashMap;
    use vigil_security::capability::{Capability, CapabilityPolicy, Role, RoleSet};
    let started = Instant::now();
    let policy = CapabilityPolicy::shipped();
    println!(
        "policy loaded, validated and tabulated in {:.1} ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
    // The same matrix as a plain HashMap, built from the policy's own answers.
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let sets: Vec<RoleSet> = (0..64)
        .map(|_| {
            RoleSet::of(
                &Role::ALL
                    .iter()
                    .copied()
                    .filter(|_| rng.gen_bool(0.25))
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    let map: HashMap<(RoleSet, Capability), bool> = sets
        .iter()
        .flat_map(|s| {
            Capability::ALL
                .iter()
                .map(|c| ((*s, *c), policy.evaluate(*s, *c)))
        })
        .collect();
    let picks: Vec<(RoleSet, Capability)> = (0..a.decisions)
        .map(|_| {
            (
                sets[rng.gen_range(0..sets.len())],
                Capability::ALL[rng.gen_range(0..Capability::ALL.len())],
            )
        })
        .collect();
    let time = |name: &str, f: &dyn Fn(RoleSet, Capability) -> bool| -> anyhow::Result<()> {
        let mut h = Histogram::<u64>::new(3)?;
        let mut allowed = 0usize;
        for (s, c) in &picks {
            let t = Instant::now();
            allowed += usize::from(std::hint::black_box(f(*s, *c)));
            h.record(t.elapsed().as_nanos() as u64)?;
        }
        println!(
            "{name:>28}: p50 {:>8.3} µs  p99 {:>8.3} µs  ({allowed} of {} allowed)",
            h.value_at_quantile(0.5) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0,
            picks.len()
        );
        Ok(())
    };
    println!(
        "one capability decision, {} random (role set, capability) pairs, timer overhead included",
        picks.len()
    );
    time("HashMap lookup", &|s, c| map[&(s, c)])?;
    time("Cedar evaluation", &|s, c| policy.evaluate(s, c))?;
    time("Cedar, tabulated at load", &|s, c| policy.allows(s, c))?;
    Ok(())
}
