//! The pipeline's commands: `vigil backfill` (historical events from an NDJSON file),
//! `vigil replay --from-dlq` (re-submit dead-lettered Kafka messages after a fix) and `vigil
//! tail` (follow a tenant's new events). Each is idempotent where it writes: events keep their
//! ids (an event without one gets an id derived from its content), so running one twice, or
//! again after an interruption, stores every event once.

use crate::progress;
use anyhow::Context;
use clap::{ArgGroup, Args};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use vigil_audit::in_process::InProcess;
use vigil_audit::kafka::dlq_headers;
use vigil_core::event::{EventInput, MAX_EVENT_BYTES};
use vigil_core::ids::TenantId;
use vigil_producer::kafka::{client_config, DLQ_TOPIC, TOPIC};
use vigil_producer::{
    HttpAuth, HttpTransport, KafkaTransport, TenantEvent, TokenSource, Transport, TransportError,
};

/// The seeds' `KAFKA_BOOTSTRAP`, when the flag and `VIGIL_KAFKA_BOOTSTRAP` are not set.
fn bootstrap(flag: Option<String>) -> anyhow::Result<String> {
    flag.or_else(|| std::env::var("KAFKA_BOOTSTRAP").ok())
        .filter(|b| !b.trim().is_empty())
        .ok_or_else(|| anyhow::anyhow!("name the brokers: --kafka-bootstrap HOST:PORT"))
}

// ----- backfill -----

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("to").required(true).args(["database_url", "audit_url", "kafka_bootstrap"])))]
pub(crate) struct BackfillArgs {
    /// An NDJSON file of v1 events (one per line), or - for standard input.
    file: String,
    /// The tenant whose chain the events join.
    #[arg(long)]
    tenant: String,
    /// Write straight into this store (no service needed; checkpoints are signed with the key
    /// in --data-dir).
    #[arg(long)]
    database_url: Option<vigil_core::DatabaseUrl>,
    /// With --database-url: the data directory holding the checkpoint signing key.
    #[arg(long, default_value = ".vigil")]
    data_dir: PathBuf,
    /// Send to this audit service over HTTP (trusted headers from loopback, or --token).
    #[arg(long)]
    audit_url: Option<String>,
    /// A bearer token for --audit-url (role service or admin in the tenant).
    #[arg(long, env = "VIGIL_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Publish to Kafka (audit.events.v1), keyed by tenant.
    #[arg(long)]
    kafka_bootstrap: Option<String>,
    /// Events per batch.
    #[arg(long, default_value_t = 500)]
    batch: usize,
}

/// A fixed bearer token.
struct StaticToken(String);

impl std::fmt::Debug for StaticToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StaticToken(***)")
    }
}

impl TokenSource for StaticToken {
    fn token(&self, _: &TenantId) -> String {
        self.0.clone()
    }
}

/// Sends `batch`, retrying while the far end is unavailable (about a minute), and returns the
/// events it refused for good.
async fn send_with_retries(
    transport: &dyn Transport,
    batch: &[TenantEvent],
) -> anyhow::Result<Vec<(String, String)>> {
    let mut wait = Duration::from_millis(100);
    for attempt in 1.. {
        match transport.send(batch).await {
            Ok(d) => return Ok(d.refused),
            Err(TransportError::Refused(why)) => {
                return Ok(batch
                    .iter()
                    .map(|e| (e.event().event_id.to_string(), why.clone()))
                    .collect())
            }
            Err(TransportError::Unavailable(why)) if attempt < 30 => {
                tracing::warn!(error = %why, attempt, "sending the batch failed; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            Err(TransportError::Unavailable(why)) => {
                anyhow::bail!("gave up after {attempt} attempts: {why}")
            }
        }
    }
    unreachable!("the loop returns")
}

pub(crate) async fn backfill(args: BackfillArgs) -> anyhow::Result<ExitCode> {
    let tenant = TenantId::parse(&args.tenant).map_err(|e| anyhow::anyhow!("--tenant: {e}"))?;
    let mut writer = None;
    let transport: Arc<dyn Transport> = if let Some(url) = &args.database_url {
        let mut s = vigil_audit::AuditSettings::embedded(args.data_dir.clone());
        s.database_url = url.clone();
        let w = vigil_audit::app::Writer::open(&s).await?;
        let t = Arc::new(InProcess(w.sequencer.clone()));
        writer = Some(w);
        t
    } else if let Some(url) = &args.audit_url {
        let auth = match args.token.clone() {
            Some(t) => HttpAuth::Bearer(Arc::new(StaticToken(t))),
            None => HttpAuth::TrustedHeaders,
        };
        Arc::new(HttpTransport::new(url, auth))
    } else {
        let b = bootstrap(args.kafka_bootstrap.clone())?;
        Arc::new(
            KafkaTransport::new(&b, Duration::from_secs(30))
                .context("creating the Kafka producer")?,
        )
    };
    let (input, size): (Box<dyn BufRead>, Option<u64>) = if args.file == "-" {
        (Box::new(std::io::stdin().lock()), None)
    } else {
        let f =
            std::fs::File::open(&args.file).with_context(|| format!("opening {}", args.file))?;
        let size = f.metadata().ok().map(|m| m.len());
        (Box::new(std::io::BufReader::new(f)), size)
    };
    let bar = progress::bar(
        size,
        "{spinner} backfill [{bar:40}] {bytes}/{total_bytes} ({eta})",
    );
    let mut lines_of: HashMap<String, usize> = HashMap::new();
    let mut batch = Vec::with_capacity(args.batch);
    let (mut sent, mut invalid, mut refused) = (0usize, 0usize, 0usize);
    let report = |line: usize, why: &str| {
        bar.suspend(|| eprintln!("line {line}: {why}"));
    };
    for (n, line) in input.lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", args.file))?;
        bar.inc(line.len() as u64 + 1);
        let number = n + 1;
        if line.trim().is_empty() {
            continue;
        }
        if line.len() > MAX_EVENT_BYTES {
            invalid += 1;
            report(number, &format!("larger than {MAX_EVENT_BYTES} bytes"));
            continue;
        }
        let parsed = EventInput::parse(&line)
            .and_then(EventInput::validate_deterministic)
            .map_err(|e| e.to_string());
        match parsed {
            Ok(event) => {
                lines_of.insert(event.event_id.to_string(), number);
                batch.push(TenantEvent::new(tenant.clone(), event));
            }
            Err(why) => {
                invalid += 1;
                report(number, &why);
            }
        }
        if batch.len() >= args.batch {
            for (id, why) in send_with_retries(transport.as_ref(), &batch).await? {
                refused += 1;
                report(
                    lines_of.get(&id).copied().unwrap_or(0),
                    &format!("refused: {why}"),
                );
            }
            sent += batch.len();
            batch.clear();
            lines_of.clear();
        }
    }
    if !batch.is_empty() {
        for (id, why) in send_with_retries(transport.as_ref(), &batch).await? {
            refused += 1;
            report(
                lines_of.get(&id).copied().unwrap_or(0),
                &format!("refused: {why}"),
            );
        }
        sent += batch.len();
    }
    bar.finish_and_clear();
    if let Some(w) = writer {
        w.sequencer.shutdown().await;
    }
    println!(
        "backfill into {tenant}: {sent} events sent ({} taken), {invalid} invalid lines, {refused} refused",
        sent - refused
    );
    Ok(if invalid + refused > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

// ----- replay -----

#[derive(Args, Debug)]
pub(crate) struct ReplayArgs {
    /// Re-submit the messages of the dead-letter topic (audit.events.v1.dlq) to the topic they
    /// came from: after the cause was fixed, the ones that can be stored now are stored (once:
    /// an event stored already is a duplicate); the others land in the dead-letter topic again.
    #[arg(long, required = true)]
    from_dlq: bool,
    /// The brokers.
    #[arg(long, env = "VIGIL_KAFKA_BOOTSTRAP")]
    kafka_bootstrap: Option<String>,
    /// The consumer group that remembers how far the dead-letter topic was replayed.
    #[arg(long, default_value = "vigil-dlq-replay")]
    group: String,
    /// The dead-letter topic.
    #[arg(long, default_value = DLQ_TOPIC)]
    dlq_topic: String,
    /// Only messages dead-lettered for this reason (not_json, invalid_event, too_large,
    /// no_tenant, conflict). Repeatable.
    #[arg(long)]
    reason: Vec<String>,
}

fn header<'a>(h: Option<&'a rdkafka::message::BorrowedHeaders>, key: &str) -> Option<&'a str> {
    h?.iter()
        .find(|x| x.key == key)
        .and_then(|x| x.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

pub(crate) async fn replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let bootstrap = bootstrap(args.kafka_bootstrap.clone())?;
    let dlq = args.dlq_topic.as_str();
    let mut config = client_config(&bootstrap);
    config
        .set("group.id", &args.group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest");
    let consumer: BaseConsumer<vigil_producer::kafka::QuietContext> = config
        .create_with_context(vigil_producer::kafka::QuietContext)
        .context("creating the Kafka consumer")?;
    let producer = vigil_producer::kafka::producer(&bootstrap, Duration::from_secs(30))
        .context("creating the Kafka producer")?;
    let timeout = Duration::from_secs(10);
    let meta = consumer
        .fetch_metadata(Some(dlq), timeout)
        .context("reading the dead-letter topic's metadata")?;
    let partitions: Vec<i32> = meta
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    // Where this group stopped last time, and where the topic ends now: replay that much.
    let mut wanted = TopicPartitionList::new();
    for p in &partitions {
        wanted.add_partition(dlq, *p);
    }
    let committed = consumer.committed_offsets(wanted, timeout)?;
    let mut start = TopicPartitionList::new();
    let mut end: HashMap<i32, i64> = HashMap::new();
    let mut total = 0u64;
    for p in &partitions {
        let (low, high) = consumer.fetch_watermarks(dlq, *p, timeout)?;
        let from = match committed.find_partition(dlq, *p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o.max(low),
            _ => low,
        };
        if from < high {
            start.add_partition_offset(dlq, *p, Offset::Offset(from))?;
            end.insert(*p, high);
            total += (high - from) as u64;
        }
    }
    if end.is_empty() {
        println!("nothing to replay: {dlq} has no messages this group has not replayed");
        return Ok(ExitCode::SUCCESS);
    }
    consumer.assign(&start)?;
    let bar = progress::bar(
        Some(total),
        "{spinner} replay [{bar:40}] {pos}/{len} messages ({eta})",
    );
    let (mut replayed, mut skipped) = (0u64, 0u64);
    let mut done: HashMap<i32, i64> = HashMap::new();
    while done.len() < end.len() {
        let Some(m) = consumer.poll(Duration::from_secs(1)) else {
            continue;
        };
        let m = m.context("reading the dead-letter topic")?;
        let (p, o) = (m.partition(), m.offset());
        let headers = m.headers();
        let reason = header(headers, dlq_headers::REASON).unwrap_or("");
        if args.reason.is_empty() || args.reason.iter().any(|r| r == reason) {
            let topic = header(headers, dlq_headers::TOPIC)
                .unwrap_or(TOPIC)
                .to_owned();
            let mut out = OwnedHeaders::new();
            if let Some(h) = headers {
                for x in h.iter().filter(|x| !x.key.starts_with("vigil.dlq.")) {
                    out = out.insert(Header {
                        key: x.key,
                        value: x.value,
                    });
                }
            }
            let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&topic).headers(out);
            if let Some(k) = m.key() {
                record = record.key(k);
            }
            if let Some(v) = m.payload() {
                record = record.payload(v);
            }
            producer
                .send(record, Duration::from_secs(30))
                .await
                .map_err(|(e, _)| anyhow::anyhow!("re-publishing {dlq} {p}:{o}: {e}"))?;
            replayed += 1;
        } else {
            skipped += 1;
        }
        // Remember progress only once the message is back in its topic.
        let mut at = TopicPartitionList::new();
        at.add_partition_offset(dlq, p, Offset::Offset(o + 1))?;
        consumer.commit(&at, CommitMode::Sync)?;
        bar.inc(1);
        if o + 1 >= end[&p] {
            done.insert(p, o);
        }
    }
    bar.finish_and_clear();
    println!("replayed {replayed} messages from {dlq} ({skipped} skipped by reason)");
    Ok(ExitCode::SUCCESS)
}

// ----- tail -----

#[derive(Args, Debug)]
pub(crate) struct TailArgs {
    /// The store: sqlite://PATH or postgres://…
    #[arg(long, env = "VIGIL_DATABASE_URL")]
    database_url: vigil_core::DatabaseUrl,
    /// The tenant to follow.
    #[arg(long)]
    tenant: String,
    /// Start after this seq (default: the current head, so only new events).
    #[arg(long)]
    from_seq: Option<i64>,
    /// One JSON record per line (the default when stdout is not a terminal).
    #[arg(long)]
    json: bool,
    /// How often to look for new events, in milliseconds.
    #[arg(long, default_value_t = 500)]
    interval_ms: u64,
}

pub(crate) async fn tail(
    args: TailArgs,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<ExitCode> {
    let store = vigil_store::open_existing(args.database_url.expose())
        .await
        .context("opening the store")?;
    let tenant = TenantId::parse(&args.tenant).map_err(|e| anyhow::anyhow!("--tenant: {e}"))?;
    let mut after = match args.from_seq {
        Some(s) => s,
        None => store.head(&tenant).await?.seq,
    };
    let json = args.json || !std::io::stdout().is_terminal();
    tokio::pin!(stop);
    loop {
        let records = store.scan(&tenant, after, 500).await?;
        let mut out = std::io::stdout().lock();
        for r in &records {
            let line = if json {
                serde_json::to_string(r)?
            } else {
                format!(
                    "{:>7}  {}  {:<8}  {:<7}  {}:{}  {}  {}:{}",
                    r.seq,
                    r.occurred_at,
                    r.severity,
                    r.outcome,
                    r.actor.kind,
                    r.actor.id,
                    r.action,
                    r.resource.kind,
                    r.resource.id
                )
            };
            // A closed pipe (`vigil tail | head`) ends the command, quietly.
            if writeln!(out, "{line}").is_err() {
                return Ok(ExitCode::SUCCESS);
            }
            after = r.seq;
        }
        if out.flush().is_err() {
            return Ok(ExitCode::SUCCESS);
        }
        drop(out);
        if records.len() < 500 {
            tokio::select! {
                _ = &mut stop => return Ok(ExitCode::SUCCESS),
                _ = tokio::time::sleep(Duration::from_millis(args.interval_ms.max(10))) => {}
            }
        }
    }
}
