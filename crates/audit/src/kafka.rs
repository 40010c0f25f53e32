//! Kafka ingest: the audit service consumes `audit.events.v1` in a consumer group.
//!
//! Messages take the same path as HTTP ingest — validation, the tenant's sequencer, group
//! commit — and a partition's offset is committed only after what it covered is committed to
//! the store (or, for a message that can never be stored, to the dead-letter topic). A crash
//! therefore redelivers, and redelivery is harmless: the event id is looked up first, so a
//! redelivered event is a duplicate, never a second record. An event sent without an id gets
//! one derived from its content, so its redelivery is recognised too.
//!
//! The key names the tenant (the producer keys by tenant, so one partition — and one consumer
//! at a time — owns a tenant's chain). After a rebalance the sequencer reloads its heads from
//! the store; should two instances still race on a tenant, the store's unique `(tenant, seq)`
//! refuses the fork and the loser plans again.
//!
//! Messages that can never be stored — not JSON, not a valid event, too large, no tenant, an
//! id taken by other content — go to `audit.events.v1.dlq` with the reason and the original
//! topic, partition and offset in headers, and the partition moves on. A store that is down is
//! not such a reason: the batch waits and is retried, and nothing after it is committed.

use crate::checkpointer::now;
use crate::metrics::AuditMetrics;
use crate::sequencer::{IngestResult, Sequencer};
use futures::future::{BoxFuture, FutureExt};
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vigil_core::event::{Event, EventInput, MAX_EVENT_BYTES};
use vigil_core::ids::TenantId;
use vigil_producer::kafka::{client_config, dlq_topic, ensure_topics, QuietContext, TOPIC};

/// Most messages handled as one batch.
const MAX_BATCH: usize = 20_000;

/// Where and how to consume.
#[derive(Clone, Debug)]
pub struct KafkaSettings {
    /// `host:port[,host:port…]`.
    pub bootstrap: String,
    /// The consumer group (instances in one group share the partitions).
    pub group: String,
    /// Partitions to create the topic with, when it does not exist.
    pub partitions: i32,
    /// Larger messages go to the dead-letter topic (`too_large`); at most
    /// [`MAX_EVENT_BYTES`], the limit of every ingest path.
    pub max_event_bytes: usize,
    /// Static group membership (`group.instance.id`, unique per instance): a restarted
    /// instance takes its partitions back without a rebalance. `None`: dynamic membership.
    pub instance_id: Option<String>,
    /// A member silent this long leaves the group (its partitions move on).
    pub session_timeout: Duration,
    /// The topic ([`TOPIC`] unless several environments share a cluster); its dead letters go
    /// to `<topic>.dlq`.
    pub topic: String,
}

impl KafkaSettings {
    /// `bootstrap`, group `vigil-audit`, 3 partitions, the full event size.
    pub fn new(bootstrap: impl Into<String>) -> KafkaSettings {
        KafkaSettings {
            bootstrap: bootstrap.into(),
            group: "vigil-audit".into(),
            partitions: 3,
            max_event_bytes: MAX_EVENT_BYTES,
            instance_id: None,
            session_timeout: Duration::from_secs(10),
            topic: TOPIC.into(),
        }
    }
}

/// Why a message went to the dead-letter topic (`audit_dlq_total{reason}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DlqReason {
    /// The payload is not JSON.
    NotJson,
    /// The event does not validate (or its `producer_seq` went backwards).
    InvalidEvent,
    /// Larger than an event may be.
    TooLarge,
    /// The key names no valid tenant.
    NoTenant,
    /// The event id is taken by an event with other content.
    Conflict,
}

impl DlqReason {
    /// Every reason.
    pub const ALL: [DlqReason; 5] = [
        DlqReason::NotJson,
        DlqReason::InvalidEvent,
        DlqReason::TooLarge,
        DlqReason::NoTenant,
        DlqReason::Conflict,
    ];

    /// The label and header value.
    pub fn as_str(&self) -> &'static str {
        match self {
            DlqReason::NotJson => "not_json",
            DlqReason::InvalidEvent => "invalid_event",
            DlqReason::TooLarge => "too_large",
            DlqReason::NoTenant => "no_tenant",
            DlqReason::Conflict => "conflict",
        }
    }
}

/// Header names on dead-lettered messages.
pub mod dlq_headers {
    /// Why it can never be stored ([`super::DlqReason`]).
    pub const REASON: &str = "vigil.dlq.reason";
    /// The details (which field, what is wrong).
    pub const DETAIL: &str = "vigil.dlq.detail";
    /// The topic it was read from.
    pub const TOPIC: &str = "vigil.dlq.original_topic";
    /// Its partition there.
    pub const PARTITION: &str = "vigil.dlq.original_partition";
    /// Its offset there.
    pub const OFFSET: &str = "vigil.dlq.original_offset";
}

/// What `/readyz` shows of the consumer.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ConsumerStatus {
    /// `starting`, `consuming`, `retrying` (the store is down) or `stopped`.
    pub state: &'static str,
    /// The consumer group.
    pub group: String,
    /// Partitions this instance owns now.
    pub assigned: Vec<i32>,
    /// Messages waiting, over the owned partitions.
    pub lag_messages: i64,
    /// The last error, if the consumer is retrying.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

#[derive(Debug, Default)]
struct Shared {
    status: Mutex<ConsumerStatus>,
    /// Next offset to process, per partition (what has been stored).
    positions: Mutex<HashMap<i32, i64>>,
    /// Newest publish time stored, milliseconds since the epoch.
    newest_stored_ms: Mutex<Option<i64>>,
}

struct Ctx {
    topic: String,
    shared: Arc<Shared>,
    sequencer: Sequencer,
    metrics: AuditMetrics,
}

impl ClientContext for Ctx {
    // librdkafka reports every failed connection attempt as an error event while a broker is
    // away; the consumer loop says so once (in `run`), and reconnecting is librdkafka's job.
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::debug!(%error, reason, "librdkafka");
    }

    fn stats(&self, stats: Statistics) {
        let Some(topic) = stats.topics.get(&self.topic) else {
            return;
        };
        let positions = self
            .shared
            .positions
            .lock()
            .expect("positions lock")
            .clone();
        let assigned: Vec<i32> = self
            .shared
            .status
            .lock()
            .expect("status lock")
            .assigned
            .clone();
        let mut total = 0;
        for p in assigned {
            let Some(part) = topic.partitions.get(&p) else {
                continue;
            };
            if part.hi_offset < 0 {
                continue;
            }
            let next = positions
                .get(&p)
                .copied()
                .unwrap_or(part.committed_offset.max(0));
            let lag = (part.hi_offset - next).max(0);
            total += lag;
            self.metrics
                .consumer_lag_messages
                .with_label_values(&[&p.to_string()])
                .set(lag);
        }
        self.shared.status.lock().expect("status lock").lag_messages = total;
        let seconds = match *self.shared.newest_stored_ms.lock().expect("newest lock") {
            Some(ms) if total > 0 => (now_ms() - ms).max(0) as f64 / 1000.0,
            _ => 0.0,
        };
        self.metrics.consumer_lag_seconds.set(seconds);
    }
}

impl ConsumerContext for Ctx {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let mut status = self.shared.status.lock().expect("status lock");
        match rebalance {
            Rebalance::Assign(tpl) => {
                status.assigned = tpl
                    .elements_for_topic(&self.topic)
                    .iter()
                    .map(|e| e.partition())
                    .collect();
                status.assigned.sort_unstable();
                if status.state == "starting" {
                    status.state = "consuming";
                }
                tracing::info!(partitions = ?status.assigned, "audit topic partitions assigned");
                // Another instance may have written these tenants meanwhile.
                self.sequencer.forget_heads();
                self.shared
                    .positions
                    .lock()
                    .expect("positions lock")
                    .clear();
            }
            Rebalance::Revoke(tpl) => {
                let gone: Vec<i32> = tpl
                    .elements_for_topic(&self.topic)
                    .iter()
                    .map(|e| e.partition())
                    .collect();
                status.assigned.retain(|p| !gone.contains(p));
                for p in gone {
                    self.metrics
                        .consumer_lag_messages
                        .with_label_values(&[&p.to_string()])
                        .set(0);
                }
            }
            Rebalance::Error(e) => {
                tracing::warn!(error = %e, "consumer group rebalance failed");
            }
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// The running consumer.
#[derive(Debug)]
pub struct KafkaIngest {
    shared: Arc<Shared>,
    stop: tokio::sync::watch::Sender<bool>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Batches stored at once: the one being committed and the next ones.
const MAX_BATCHES_IN_FLIGHT: usize = 3;

/// Messages (by index in their batch) refused for good, with why.
type Refused = Vec<(usize, DlqReason, String)>;

/// A tenant's latest store job: resolves when it is done (to what it refused), `None` when the
/// consumer was told to stop first.
type Lane = futures::future::Shared<BoxFuture<'static, Option<Arc<Refused>>>>;

/// A batch, parsed.
struct Prepared {
    batch: Vec<OwnedMessage>,
    groups: Vec<(TenantId, Vec<(usize, Event)>)>,
    poison: Vec<(usize, DlqReason, String)>,
}

/// One message, parsed: what to store, or why it never can be.
fn parse(msg: &OwnedMessage, max_bytes: usize) -> Result<(TenantId, Event), (DlqReason, String)> {
    let tenant = msg
        .key()
        .and_then(|k| std::str::from_utf8(k).ok())
        .and_then(|k| TenantId::parse(k).ok());
    let Some(tenant) = tenant else {
        return Err((
            DlqReason::NoTenant,
            "the message key is not a tenant id".into(),
        ));
    };
    let payload = msg.payload().unwrap_or_default();
    if payload.len() > max_bytes {
        return Err((
            DlqReason::TooLarge,
            format!(
                "{} bytes; an event may have at most {max_bytes}",
                payload.len()
            ),
        ));
    }
    let text = std::str::from_utf8(payload)
        .map_err(|e| (DlqReason::NotJson, format!("not UTF-8: {e}")))?;
    let value: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return Err((DlqReason::NotJson, e.to_string())),
    };
    vigil_core::number::check_numbers(&value, text)
        .and_then(|()| EventInput::new(value).validate_deterministic())
        .map(|e| (tenant, e))
        .map_err(|e| (DlqReason::InvalidEvent, e.to_string()))
}

/// Told of every event the consumer stored, once its transaction committed, with the event's
/// `occurred_at` in microseconds (for measuring the delay from emit to stored: `vigil bench
/// pipeline`).
#[derive(Clone)]
pub struct StoredObserver(pub Arc<dyn Fn(i64) + Send + Sync>);

impl std::fmt::Debug for StoredObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoredObserver")
    }
}

impl KafkaIngest {
    /// Creates the topics if they are missing, joins the group and starts consuming.
    pub async fn start(
        settings: KafkaSettings,
        sequencer: Sequencer,
        metrics: AuditMetrics,
    ) -> Result<KafkaIngest, crate::error::AuditError> {
        Self::start_observed(settings, sequencer, metrics, None).await
    }

    /// [`KafkaIngest::start`], telling `observer` of every stored event.
    pub async fn start_observed(
        settings: KafkaSettings,
        sequencer: Sequencer,
        metrics: AuditMetrics,
        observer: Option<StoredObserver>,
    ) -> Result<KafkaIngest, crate::error::AuditError> {
        if let Err(e) =
            ensure_topics(&settings.bootstrap, &settings.topic, settings.partitions).await
        {
            // The broker may be down now and up later: consuming retries by itself.
            tracing::warn!(error = %e, "could not check the Kafka topics; consuming anyway");
        }
        for r in DlqReason::ALL {
            metrics.dlq.with_label_values(&[r.as_str()]);
        }
        let shared = Arc::new(Shared::default());
        *shared.status.lock().expect("status lock") = ConsumerStatus {
            state: "starting",
            group: settings.group.clone(),
            ..Default::default()
        };
        let mut config = client_config(&settings.bootstrap);
        config
            .set("group.id", &settings.group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set(
                "session.timeout.ms",
                settings.session_timeout.as_millis().to_string(),
            )
            .set("heartbeat.interval.ms", "1000")
            .set("statistics.interval.ms", "1000")
            // A fetch returns when data arrives, or after this long: brokers that do not answer
            // a waiting fetch early (tansu) would otherwise add up to 500 ms to every event.
            .set("fetch.wait.max.ms", "50");
        if let Some(id) = &settings.instance_id {
            config.set("group.instance.id", id);
        }
        let consumer: StreamConsumer<Ctx> = config.create_with_context(Ctx {
            topic: settings.topic.clone(),
            shared: Arc::clone(&shared),
            sequencer: sequencer.clone(),
            metrics: metrics.clone(),
        })?;
        consumer.subscribe(&[&settings.topic])?;
        let dlq = vigil_producer::kafka::producer(&settings.bootstrap, Duration::from_secs(10))?;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let worker = Worker {
            dlq_topic: dlq_topic(&settings.topic),
            observer,
            max_event_bytes: settings.max_event_bytes.min(MAX_EVENT_BYTES),
            consumer,
            dlq,
            sequencer,
            metrics,
            shared: Arc::clone(&shared),
            stopped,
        };
        let task = tokio::spawn(Arc::new(worker).run());
        Ok(KafkaIngest {
            shared,
            stop,
            task: Mutex::new(Some(task)),
        })
    }

    /// The consumer's state, for `/readyz`.
    pub fn status(&self) -> ConsumerStatus {
        self.shared.status.lock().expect("status lock").clone()
    }

    /// Finishes the batch in hand (stored and committed), then leaves the group.
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        let task = self.task.lock().expect("task lock").take();
        if let Some(t) = task {
            let _ = t.await;
        }
    }
}

struct Worker {
    dlq_topic: String,
    observer: Option<StoredObserver>,
    max_event_bytes: usize,
    consumer: StreamConsumer<Ctx>,
    dlq: FutureProducer<QuietContext>,
    sequencer: Sequencer,
    metrics: AuditMetrics,
    shared: Arc<Shared>,
    stopped: tokio::sync::watch::Receiver<bool>,
}

impl Worker {
    fn set_state(&self, state: &'static str, error: Option<String>) {
        let mut s = self.shared.status.lock().expect("status lock");
        s.state = state;
        s.last_error = error;
    }

    async fn run(self: Arc<Self>) {
        let mut last_warning: Option<std::time::Instant> = None;
        let mut lanes: HashMap<TenantId, Lane> = HashMap::new();
        let mut inflight: futures::stream::FuturesOrdered<
            BoxFuture<'static, Option<Arc<Vec<OwnedMessage>>>>,
        > = futures::stream::FuturesOrdered::new();
        loop {
            tokio::select! {
                biased;
                done = futures::StreamExt::next(&mut inflight), if !inflight.is_empty() => {
                    match done.expect("not empty") {
                        // Batches finish in the order they were read: what is committed is
                        // stored, and everything before it too.
                        Some(batch) => {
                            self.commit(&batch);
                            self.set_state("consuming", None);
                        }
                        None => break,
                    }
                }
                batch = self.fetch(&mut last_warning), if inflight.len() < MAX_BATCHES_IN_FLIGHT => {
                    let Some(batch) = batch else { break };
                    let prepared = self.prepare(batch).await;
                    inflight.push_back(Arc::clone(&self).launch(prepared, &mut lanes));
                }
            }
        }
        self.set_state("stopped", None);
        self.consumer.unsubscribe();
    }

    /// Resolves once the consumer is told to stop.
    async fn stop_requested(&self) {
        let mut rx = self.stopped.clone();
        let _ = rx.wait_for(|stop| *stop).await;
    }

    /// The next batch: the first message to arrive, and whatever else is ready, up to
    /// [`MAX_BATCH`]. `None` when told to stop.
    async fn fetch(
        &self,
        last_warning: &mut Option<std::time::Instant>,
    ) -> Option<Vec<OwnedMessage>> {
        let first = loop {
            let m = tokio::select! {
                _ = self.stop_requested() => return None,
                m = self.consumer.recv() => m.map(|m| m.detach()),
            };
            match m {
                Ok(m) => break m,
                Err(e) => {
                    // Errors are reports (a broker unreachable, a connection reset), not a
                    // state to wait out here: librdkafka reconnects and the next recv goes on.
                    // Once every 10 s is enough to be seen.
                    if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                        tracing::warn!(error = %e, "reading from Kafka failed; librdkafka keeps retrying");
                        *last_warning = Some(std::time::Instant::now());
                    }
                    self.set_state("retrying", Some(e.to_string()));
                }
            }
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match futures::FutureExt::now_or_never(self.consumer.recv()) {
                Some(Ok(m)) => batch.push(m.detach()),
                _ => break,
            }
        }
        Some(batch)
    }

    /// Parses a batch — in parallel, a slice per core, on blocking threads: parsing and
    /// validating is most of the consumer's own work — into each tenant's events in order and
    /// what can never be stored.
    async fn prepare(&self, batch: Vec<OwnedMessage>) -> Prepared {
        let batch = Arc::new(batch);
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let slice = batch.len().div_ceil(cores).max(256);
        let max = self.max_event_bytes;
        let parts = (0..batch.len()).step_by(slice).map(|from| {
            let batch = Arc::clone(&batch);
            tokio::task::spawn_blocking(move || {
                let to = (from + slice).min(batch.len());
                (from..to)
                    .map(|i| parse(&batch[i], max))
                    .collect::<Vec<_>>()
            })
        });
        let parsed: Vec<_> = futures::future::join_all(parts)
            .await
            .into_iter()
            .flat_map(|r| r.expect("parsing does not panic"))
            .collect();
        let batch = Arc::try_unwrap(batch).expect("the parsers are done");
        let mut poison: Vec<(usize, DlqReason, String)> = Vec::new();
        let mut groups: Vec<(TenantId, Vec<(usize, Event)>)> = Vec::new();
        let mut index: HashMap<TenantId, usize> = HashMap::new();
        for (i, p) in parsed.into_iter().enumerate() {
            match p {
                Ok((tenant, event)) => {
                    let g = *index.entry(tenant.clone()).or_insert_with(|| {
                        groups.push((tenant, Vec::new()));
                        groups.len() - 1
                    });
                    groups[g].1.push((i, event));
                }
                Err((reason, detail)) => poison.push((i, reason, detail)),
            }
        }
        Prepared {
            batch,
            groups,
            poison,
        }
    }

    /// Starts storing a batch: each tenant's events go to the tenant's lane, behind that
    /// tenant's events of earlier batches (and nothing else), so tenants do not wait for each
    /// other and a tenant's events stay in order even while one of its writes is retried. The
    /// future resolves to the batch once all of it is stored or dead-lettered (to commit), or
    /// `None` when told to stop first.
    fn launch(
        self: Arc<Self>,
        prepared: Prepared,
        lanes: &mut HashMap<TenantId, Lane>,
    ) -> BoxFuture<'static, Option<Arc<Vec<OwnedMessage>>>> {
        let Prepared {
            batch,
            groups,
            poison,
        } = prepared;
        self.metrics
            .processed
            .with_label_values(&["rejected"])
            .inc_by(poison.len() as u64);
        // Finished lanes are forgotten, so the map holds only tenants with work in flight.
        lanes.retain(|_, lane| lane.peek().is_none());
        let batch = Arc::new(batch);
        let mut jobs = Vec::with_capacity(groups.len());
        for (tenant, events) in groups {
            let before = lanes.get(&tenant).cloned();
            let (me, b, t) = (Arc::clone(&self), Arc::clone(&batch), tenant.clone());
            let job = tokio::spawn(async move {
                if let Some(before) = before {
                    before.await?;
                }
                me.store_group(&t, events, &b).await
            });
            let lane: Lane = async move { job.await.ok().flatten() }.boxed().shared();
            lanes.insert(tenant, lane.clone());
            jobs.push(lane);
        }
        async move {
            let mut poison = poison;
            for job in jobs {
                poison.extend(job.await?.iter().cloned());
            }
            poison.sort_by_key(|p| p.0);
            for (i, reason, detail) in poison {
                loop {
                    match self.dead_letter(&batch[i], reason, &detail).await {
                        Ok(()) => break,
                        Err(e) => {
                            tracing::warn!(error = %e, "writing to the dead-letter topic failed; retrying");
                            tokio::select! {
                                _ = self.stop_requested() => return None,
                                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                            }
                        }
                    }
                }
            }
            Some(batch)
        }
        .boxed()
    }

    /// Stores one tenant's events of a batch, retrying while the store fails (until told to
    /// stop: `None`). Returns the messages refused for good, for the dead-letter topic.
    #[tracing::instrument(name = "kafka.consume", skip_all, fields(otel.kind = "consumer", tenant = %tenant, vigil.events = events.len()))]
    async fn store_group(
        &self,
        tenant: &TenantId,
        events: Vec<(usize, Event)>,
        batch: &[OwnedMessage],
    ) -> Option<Arc<Refused>> {
        let occurred: HashMap<usize, i64> = events
            .iter()
            .map(|(i, e)| (*i, e.occurred_at.micros()))
            .collect();
        let (at, mut events): (Vec<usize>, Vec<Event>) = events.into_iter().unzip();
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.sequencer.submit(tenant, events, now()).await {
                Ok(outcomes) => {
                    let mut refused = Vec::new();
                    for (i, outcome) in at.iter().zip(outcomes) {
                        let why = match outcome {
                            IngestResult::Stored { .. } | IngestResult::Duplicate { .. } => continue,
                            IngestResult::Conflict { seq } => (
                                DlqReason::Conflict,
                                format!("the event id is taken by another event (seq {seq}) with different content"),
                            ),
                            IngestResult::Rejected(e) => (DlqReason::InvalidEvent, e.to_string()),
                            IngestResult::NotStored => {
                                unreachable!("Sequencer::submit decides every event on its own")
                            }
                        };
                        refused.push((*i, why.0, why.1));
                    }
                    self.observe_stored(batch, &at, &occurred);
                    return Some(Arc::new(refused));
                }
                Err(e) => {
                    tracing::warn!(tenant = %tenant, error = %e, "storing events from Kafka failed; retrying");
                    self.set_state("retrying", Some(e.to_string()));
                    tokio::select! {
                        _ = self.stop_requested() => return None,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    // Parsed again from the messages: a failure is rare, a copy of every event
                    // on every batch would not be.
                    events = at
                        .iter()
                        .filter_map(|i| parse(&batch[*i], self.max_event_bytes).ok().map(|p| p.1))
                        .collect();
                }
            }
        }
    }

    /// Metrics (and the observer) for the messages at `at`, just stored.
    fn observe_stored(&self, batch: &[OwnedMessage], at: &[usize], occurred: &HashMap<usize, i64>) {
        let now_us = now().micros();
        let mut newest = None;
        for i in at {
            if let Some(occurred) = occurred.get(i) {
                if let Some(o) = &self.observer {
                    (o.0)(*occurred);
                }
                self.metrics
                    .consumer_event_age
                    .observe((now_us - occurred).max(0) as f64 / 1e6);
            }
            if let Some(ts) = batch[*i].timestamp().to_millis() {
                newest = newest.max(Some(ts));
            }
        }
        if let Some(ts) = newest {
            let mut n = self.shared.newest_stored_ms.lock().expect("newest lock");
            *n = (*n).max(Some(ts));
        }
    }

    async fn dead_letter(
        &self,
        msg: &OwnedMessage,
        reason: DlqReason,
        detail: &str,
    ) -> Result<(), String> {
        let partition = msg.partition().to_string();
        let offset = msg.offset().to_string();
        let mut headers = OwnedHeaders::new()
            .insert(Header {
                key: dlq_headers::REASON,
                value: Some(reason.as_str()),
            })
            .insert(Header {
                key: dlq_headers::DETAIL,
                value: Some(detail),
            })
            .insert(Header {
                key: dlq_headers::TOPIC,
                value: Some(msg.topic()),
            })
            .insert(Header {
                key: dlq_headers::PARTITION,
                value: Some(&partition),
            })
            .insert(Header {
                key: dlq_headers::OFFSET,
                value: Some(&offset),
            });
        if let Some(original) = msg.headers() {
            for h in original.iter().filter(|h| !h.key.starts_with("vigil.dlq.")) {
                headers = headers.insert(Header {
                    key: h.key,
                    value: h.value,
                });
            }
        }
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&self.dlq_topic).headers(headers);
        if let Some(k) = msg.key() {
            record = record.key(k);
        }
        if let Some(p) = msg.payload() {
            record = record.payload(p);
        }
        self.dlq
            .send(record, Duration::from_secs(5))
            .await
            .map_err(|(e, _)| e.to_string())?;
        self.metrics.dlq.with_label_values(&[reason.as_str()]).inc();
        tracing::warn!(reason = reason.as_str(), %detail, partition = msg.partition(), offset = msg.offset(),
            "a Kafka message that can never be stored went to the dead-letter topic");
        Ok(())
    }

    /// Commits, per partition, the offset after the last message of the batch.
    fn commit(&self, batch: &[OwnedMessage]) {
        let mut next: BTreeMap<(String, i32), i64> = BTreeMap::new();
        for m in batch {
            let e = next
                .entry((m.topic().to_owned(), m.partition()))
                .or_insert(0);
            *e = (*e).max(m.offset() + 1);
        }
        let mut tpl = TopicPartitionList::new();
        {
            let mut positions = self.shared.positions.lock().expect("positions lock");
            for ((topic, p), o) in &next {
                positions.insert(*p, *o);
                let _ = tpl.add_partition_offset(topic, *p, Offset::Offset(*o));
            }
        }
        // Asynchronous: a commit that is lost (a crash right now) means those messages are
        // delivered again, and redelivery is answered as duplicates.
        if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
            tracing::warn!(error = %e, "committing Kafka offsets failed; the messages will be redelivered");
        }
    }
}
