//! Group commit and chain sequencing.
//!
//! Each active tenant has one writer task. Requests queue on its channel; the task takes
//! everything queued (up to a size bound), assigns seqs from its cached head, seals the
//! records and writes them in **one** transaction, then answers every request. So concurrent
//! requests share one commit (and one fsync), and nothing is acknowledged before it commits.
//!
//! Across processes the database is the arbiter: when another writer took a seq, the
//! `(tenant_id, seq)` unique constraint refuses the whole transaction; the task reloads the
//! head and plans again. Idempotency is decided on the same pass: an event id that exists
//! with the same content is a duplicate (its original seq is returned), with other content a
//! conflict. A task idle for two checkpoint intervals checkpoints and exits.

use crate::checkpointer::Checkpointer;
use crate::metrics::AuditMetrics;
use crate::redaction::Redactor;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::Instrument;
use vigil_core::chain::ChainHead;
use vigil_core::event::Event;
use vigil_core::hash::Hash32;
use vigil_core::ids::TenantId;
use vigil_core::record::Sealer;
use vigil_core::redaction::Redacted;
use vigil_core::time::Timestamp;
use vigil_store::{Existing, NewRecord, Store, StoreError};

/// How many times a group is re-planned after losing a seq race before giving up.
const MAX_ATTEMPTS: usize = 8;
/// Cached producer positions per tenant before the cache is dropped and reloaded on demand.
const MAX_CACHED_PRODUCERS: usize = 10_000;

/// What became of one submitted event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IngestResult {
    /// Appended at `seq`.
    Stored {
        /// Its seq.
        seq: i64,
    },
    /// Already stored, with the same content, at `seq`.
    Duplicate {
        /// The original seq.
        seq: i64,
    },
    /// The event id is taken by an event with other content (at `seq`).
    Conflict {
        /// The seq of the event that holds the id.
        seq: i64,
    },
    /// Refused: the field and the reason.
    Rejected(vigil_core::Error),
    /// Would have been stored, but another event of the same all-or-nothing submission
    /// ([`Sequencer::submit_all`]) was refused, so none of them was.
    NotStored,
}

struct Job {
    events: Vec<Event>,
    /// What redaction did to each event (empty without a policy): masks' commitments to add
    /// after the content hash is taken.
    redactions: Vec<Redacted>,
    /// Each event's data subject and key (empty when none has one): its personal members
    /// are sealed once the record is hashed.
    sealings: Vec<Option<crate::redaction::Sealing>>,
    received_at: Timestamp,
    /// All or nothing: when one event is refused, none of this job's events is stored.
    atomic: bool,
    reply: oneshot::Sender<Result<Vec<IngestResult>, StoreError>>,
}

struct Worker {
    id: u64,
    tx: mpsc::Sender<Job>,
    handle: JoinHandle<()>,
}

struct Inner {
    store: Arc<dyn Store>,
    checkpointer: Arc<Checkpointer>,
    metrics: AuditMetrics,
    max_group_events: usize,
    redactor: Option<Arc<Redactor>>,
    workers: Mutex<HashMap<TenantId, Worker>>,
    next_worker_id: std::sync::atomic::AtomicU64,
    /// Bumped when cached heads may be stale (another instance took over tenants).
    generation: std::sync::atomic::AtomicU64,
}

/// Routes each tenant's events to its writer task.
#[derive(Clone)]
pub struct Sequencer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Sequencer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sequencer")
            .field("max_group_events", &self.inner.max_group_events)
            .finish_non_exhaustive()
    }
}

impl Sequencer {
    /// A sequencer over `store`, redacting every event with `redactor` (when given) before
    /// it is hashed.
    pub fn new(
        store: Arc<dyn Store>,
        checkpointer: Arc<Checkpointer>,
        metrics: AuditMetrics,
        max_group_events: usize,
        redactor: Option<Arc<Redactor>>,
    ) -> Self {
        Sequencer {
            inner: Arc::new(Inner {
                store,
                checkpointer,
                metrics,
                max_group_events: max_group_events.max(1),
                redactor,
                workers: Mutex::new(HashMap::new()),
                next_worker_id: Default::default(),
                generation: Default::default(),
            }),
        }
    }

    /// Appends `events` to `tenant`'s chain, in order, each decided on its own (a refused
    /// event does not hold back the others: a stream such as Kafka's, where every message
    /// stands alone); returns once they are committed.
    pub async fn submit(
        &self,
        tenant: &TenantId,
        events: Vec<Event>,
        received_at: Timestamp,
    ) -> Result<Vec<IngestResult>, StoreError> {
        self.enqueue(tenant, events, received_at, false).await
    }

    /// Appends `events` to `tenant`'s chain, in order, all or nothing: when any is refused
    /// (a conflict), none of the others is stored and each comes back
    /// [`IngestResult::NotStored`] (duplicates stay duplicates: they are in the chain). What
    /// a request of a client expects: success means every event is in the chain.
    pub async fn submit_all(
        &self,
        tenant: &TenantId,
        events: Vec<Event>,
        received_at: Timestamp,
    ) -> Result<Vec<IngestResult>, StoreError> {
        self.enqueue(tenant, events, received_at, true).await
    }

    /// Appends one record of the service's own (a purge manifest, an erasure receipt) to
    /// `tenant`'s chain and waits until it is committed: `action` by the system actor `actor`
    /// on `resource` (kind, id), with `fields` in its payload. `op` names the work in errors.
    pub async fn append_system_record(
        &self,
        op: &'static str,
        tenant: &TenantId,
        action: &str,
        actor: &str,
        resource: (&str, &str),
        fields: Vec<(&str, serde_json::Value)>,
    ) -> Result<(), StoreError> {
        use vigil_core::builder::EventBuilder;
        use vigil_core::event::{Actor, ActorType, Outcome, Resource, Severity, Source};
        let mut b = EventBuilder::new(
            action,
            Actor::new(ActorType::System, actor),
            Resource::new(resource.0, resource.1),
            Outcome::Success,
        )
        .severity(Severity::Notice);
        for (k, v) in fields {
            b = b.field(k, v);
        }
        let event = b
            .build(
                Source::new("vigil-audit"),
                vigil_core::ids::EventId::from_uuid(uuid::Uuid::now_v7()),
                Timestamp::now(),
            )
            .map_err(|e| StoreError::Database {
                op,
                message: e.to_string(),
            })?;
        let results = self.submit(tenant, vec![event], Timestamp::now()).await?;
        match results.first() {
            Some(IngestResult::Stored { .. }) => Ok(()),
            _ => Err(StoreError::Database {
                op,
                message: format!("the {action} record was not stored: {results:?}"),
            }),
        }
    }

    async fn enqueue(
        &self,
        tenant: &TenantId,
        events: Vec<Event>,
        received_at: Timestamp,
        atomic: bool,
    ) -> Result<Vec<IngestResult>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let mut events = events;
        let (redactions, sealings) = match &self.inner.redactor {
            Some(r) => r.prepare(tenant, &mut events).await?,
            None => (Vec::new(), Vec::new()),
        };
        let mut job = Job {
            events,
            redactions,
            sealings,
            received_at,
            atomic,
            reply: oneshot::channel().0,
        };
        loop {
            let (reply, answer) = oneshot::channel();
            job.reply = reply;
            let tx = self.worker_for(tenant);
            match tx.send(job).await {
                Ok(()) => match answer.await {
                    Ok(result) => return result,
                    // The writer died without answering (a panic): whether the job committed
                    // is unknown, and a retry by the client is safe because ingest is idempotent.
                    Err(_) => {
                        return Err(StoreError::Unavailable {
                            op: "sequencing",
                            message: "the tenant's writer stopped".into(),
                        })
                    }
                },
                Err(mpsc::error::SendError(j)) => {
                    job = j;
                    self.forget(tenant, &tx);
                }
            }
        }
    }

    fn worker_for(&self, tenant: &TenantId) -> mpsc::Sender<Job> {
        let mut workers = self.inner.workers.lock().expect("workers lock");
        if let Some(w) = workers.get(tenant) {
            if !w.tx.is_closed() {
                return w.tx.clone();
            }
        }
        let (tx, rx) = mpsc::channel(1024);
        let id = self
            .inner
            .next_worker_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let state = TenantWriter {
            id,
            tenant: tenant.clone(),
            generation: self
                .inner
                .generation
                .load(std::sync::atomic::Ordering::Acquire),
            inner: Arc::clone(&self.inner),
            head: None,
            producers: HashMap::new(),
            last_checkpoint: None,
            last_checkpoint_at: Instant::now(),
        };
        let handle = tokio::spawn(state.run(rx));
        workers.insert(
            tenant.clone(),
            Worker {
                id,
                tx: tx.clone(),
                handle,
            },
        );
        tx
    }

    fn forget(&self, tenant: &TenantId, tx: &mpsc::Sender<Job>) {
        let mut workers = self.inner.workers.lock().expect("workers lock");
        if workers.get(tenant).is_some_and(|w| w.tx.same_channel(tx)) {
            workers.remove(tenant);
        }
    }

    /// Makes every writer reload its tenant's head and producer positions from the store before
    /// it plans again: called when another instance may have written to these tenants (a Kafka
    /// rebalance moved partitions). Without it the store's uniqueness would still refuse a
    /// fork; this spares the refused round trip.
    pub fn forget_heads(&self) {
        self.inner
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// Stops every writer after it finished what was queued and signed a final checkpoint.
    pub async fn shutdown(&self) {
        let workers: Vec<Worker> = self
            .inner
            .workers
            .lock()
            .expect("workers lock")
            .drain()
            .map(|(_, w)| w)
            .collect();
        for w in workers {
            drop(w.tx);
            let _ = w.handle.await;
        }
    }
}

struct TenantWriter {
    id: u64,
    tenant: TenantId,
    generation: u64,
    inner: Arc<Inner>,
    head: Option<ChainHead>,
    producers: HashMap<String, i64>,
    last_checkpoint: Option<i64>,
    last_checkpoint_at: Instant,
}

/// One planned group: the records to write and each job's answers.
struct Plan {
    records: Vec<NewRecord>,
    producers: HashMap<String, i64>,
    results: Vec<Vec<IngestResult>>,
    /// Event ids this plan stores (or found duplicated within it), with seq and content hash.
    ids: HashMap<String, (i64, Hash32)>,
    head: ChainHead,
    gaps: u64,
}

/// Whether planning looks up which event ids are already stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lookup {
    /// Assume none is: a replayed id makes the `(tenant_id, event_id)` constraint refuse the
    /// transaction, and the group is then planned again with [`Lookup::Stored`]. Replays are
    /// rare, and this saves a round trip on every group.
    Optimistic,
    /// Look them up (after a refusal, or when retrying).
    Stored,
}

/// A group whose transaction is running while the writer plans the next one.
struct InFlight {
    jobs: Vec<Job>,
    plan: Plan,
    started: Instant,
    task: JoinHandle<Result<(), StoreError>>,
    /// One span per appended event, in the trace that produced it; they end with the commit.
    _appends: Vec<tracing::Span>,
}

/// When spans are exported: for each record that names a trace, an `audit.append` span in
/// that trace, the child of the span its service emitted it under (see
/// [`vigil_security::trace::event_span_id`]) and linked to the group commit it rode in.
fn append_spans(records: &[NewRecord], commit: &tracing::Span) -> Vec<tracing::Span> {
    use vigil_security::trace;
    if !vigil_security::telemetry::exporting() {
        return Vec::new();
    }
    records
        .iter()
        .filter_map(|r| {
            let r = &r.record;
            let t = vigil_core::ids::TraceId::parse(r.trace_id.as_deref()?).ok()?;
            let span = tracing::info_span!(
                parent: None,
                "audit.append",
                otel.kind = "consumer",
                tenant = %r.tenant_id,
                vigil.seq = r.seq,
                vigil.event_id = %r.event_id,
                vigil.action = %r.action,
            );
            trace::set_remote_parent(&span, &t, trace::event_span_id(&r.event_id));
            trace::link(&span, commit);
            trace::start_in_trace(&span, &t, None);
            Some(span)
        })
        .collect()
}

impl TenantWriter {
    async fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        let interval = self.inner.checkpointer.interval;
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut idle_ticks = 0;
        // Two-stage pipeline: while one group's transaction runs, the next group is planned
        // (lookups, seqs, hashes) on top of it, so the store is rarely idle.
        let mut inflight: Option<InFlight> = None;
        loop {
            tokio::select! {
                done = async { (&mut inflight.as_mut().expect("guarded").task).await }, if inflight.is_some() => {
                    // Nothing queued to plan meanwhile: the writer waited for this commit.
                    let f = inflight.take().expect("guarded");
                    self.settle(f.jobs, f.plan, f.started, done).await;
                    self.maybe_checkpoint(false).await;
                }
                job = rx.recv() => match job {
                    Some(job) => {
                        idle_ticks = 0;
                        let jobs = self.gather(job, &mut rx);
                        inflight = match inflight.take() {
                            None => self.launch(jobs, None).await,
                            Some(f) => {
                                let t = Instant::now();
                                let next = self.prepare(&jobs, Some(&f.plan), Lookup::Optimistic).await;
                                self.spent("plan", t);
                                let t = Instant::now();
                                let done = f.task.await;
                                self.spent("commit_wait", t);
                                let ok = self.settle(f.jobs, f.plan, f.started, done).await;
                                self.maybe_checkpoint(false).await;
                                match next {
                                    Ok(plan) if ok => Some(self.spawn(jobs, plan)),
                                    // The group below failed (or the lookups did): plan afresh.
                                    _ => self.launch(jobs, None).await,
                                }
                            }
                        };
                    }
                    None => break,
                },
                _ = tick.tick() => {
                    if inflight.is_some() || self.maybe_checkpoint(true).await {
                        continue;
                    }
                    idle_ticks += 1;
                    if idle_ticks >= 2 && rx.is_empty() {
                        // Leave the map first, so new requests start a fresh writer; then
                        // close and finish whatever slipped in meanwhile.
                        {
                            let mut workers = self.inner.workers.lock().expect("workers lock");
                            if workers.get(&self.tenant).is_some_and(|w| w.id == self.id) {
                                workers.remove(&self.tenant);
                            }
                        }
                        rx.close();
                        while let Some(job) = rx.recv().await {
                            self.commit(vec![job]).await;
                        }
                        break;
                    }
                }
            }
        }
        if let Some(f) = inflight.take() {
            let done = f.task.await;
            self.settle(f.jobs, f.plan, f.started, done).await;
        }
        self.maybe_checkpoint(true).await;
    }

    /// `first` and everything queued behind it, up to the group bound.
    fn gather(&self, first: Job, rx: &mut mpsc::Receiver<Job>) -> Vec<Job> {
        let mut n = first.events.len();
        let mut jobs = vec![first];
        while n < self.inner.max_group_events {
            match rx.try_recv() {
                Ok(j) => {
                    n += j.events.len();
                    jobs.push(j);
                }
                Err(_) => break,
            }
        }
        jobs
    }

    /// Plans `jobs` on the stored head and starts their transaction; on a lookup failure
    /// answers them at once.
    async fn launch(&mut self, jobs: Vec<Job>, base: Option<&Plan>) -> Option<InFlight> {
        let t = Instant::now();
        let planned = self.prepare(&jobs, base, Lookup::Optimistic).await;
        self.spent("plan", t);
        match planned {
            Ok(plan) => Some(self.spawn(jobs, plan)),
            Err(e) => {
                self.fail(jobs, e);
                None
            }
        }
    }

    /// Counts the time since `since` as spent in `stage` (`audit_writer_seconds_total`).
    fn spent(&self, stage: &str, since: Instant) {
        self.inner
            .metrics
            .writer_seconds
            .with_label_values(&[stage])
            .inc_by(since.elapsed().as_secs_f64());
    }

    fn spawn(&self, jobs: Vec<Job>, mut plan: Plan) -> InFlight {
        let store = Arc::clone(&self.inner.store);
        let tenant = self.tenant.clone();
        let records = std::mem::take(&mut plan.records);
        let producers: Vec<(String, i64)> = plan
            .producers
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        self.inner.metrics.group_size.observe(records.len() as f64);
        let commit = tracing::info_span!(
            "audit.commit",
            tenant = %tenant,
            vigil.records = records.len(),
            vigil.jobs = jobs.len()
        );
        let appends = append_spans(&records, &commit);
        let task = tokio::spawn(
            async move { store.append(&tenant, &records, &producers).await }.instrument(commit),
        );
        InFlight {
            jobs,
            plan,
            started: Instant::now(),
            task,
            _appends: appends,
        }
    }

    /// Answers the jobs of a finished transaction. On a lost seq race they are planned again
    /// from the store and committed (with retries) before answering. Returns whether the
    /// transaction committed as planned.
    async fn settle(
        &mut self,
        jobs: Vec<Job>,
        plan: Plan,
        started: Instant,
        done: Result<Result<(), StoreError>, tokio::task::JoinError>,
    ) -> bool {
        let outcome = done.unwrap_or_else(|e| {
            Err(StoreError::Database {
                op: "appending records",
                message: e.to_string(),
            })
        });
        let m = &self.inner.metrics;
        match outcome {
            Ok(()) => {
                m.commit_seconds.observe(started.elapsed().as_secs_f64());
                self.head = Some(plan.head);
                self.producers.extend(plan.producers);
                m.chain_gap.inc_by(plan.gaps);
                self.answer(jobs, plan.results);
                true
            }
            Err(StoreError::Conflict { .. }) => {
                m.chain_conflicts.inc();
                self.head = None;
                self.producers.clear();
                self.commit(jobs).await;
                false
            }
            Err(e) => {
                self.producers.clear();
                self.fail(jobs, e);
                false
            }
        }
    }

    fn answer(&self, jobs: Vec<Job>, all: Vec<Vec<IngestResult>>) {
        const LABELS: [&str; 5] = ["stored", "duplicate", "conflict", "rejected", "not_stored"];
        // Counted per group, not per event: a labelled counter is a lookup under a lock.
        let mut counts = [0u64; 5];
        for (job, results) in jobs.into_iter().zip(all) {
            for r in &results {
                counts[match r {
                    IngestResult::Stored { .. } => 0,
                    IngestResult::Duplicate { .. } => 1,
                    IngestResult::Conflict { .. } => 2,
                    IngestResult::Rejected(_) => 3,
                    IngestResult::NotStored => 4,
                }] += 1;
            }
            let _ = job.reply.send(Ok(results));
        }
        let m = &self.inner.metrics;
        for (label, n) in LABELS.into_iter().zip(counts) {
            if n > 0 {
                m.processed.with_label_values(&[label]).inc_by(n);
            }
        }
    }

    fn fail(&mut self, jobs: Vec<Job>, e: StoreError) {
        self.inner.metrics.store_error("append", &e);
        tracing::warn!(tenant = %self.tenant, error = %e, "group commit failed");
        self.head = None;
        for job in jobs {
            let _ = job.reply.send(Err(clone_err(&e)));
        }
    }

    /// Checkpoints when `every` events accumulated, or (with `on_tick`) when the chain moved
    /// at all since the last one. Returns whether a checkpoint was made.
    async fn maybe_checkpoint(&mut self, on_tick: bool) -> bool {
        let Some(head) = self.head else { return false };
        let cp = &self.inner.checkpointer;
        let last = match self.last_checkpoint {
            Some(s) => s,
            None => match cp.last_size(&self.tenant).await {
                Ok(s) => *self.last_checkpoint.insert(s),
                Err(_) => return false,
            },
        };
        let due = head.seq - last >= cp.every
            || (on_tick && head.seq > last && self.last_checkpoint_at.elapsed() >= cp.interval / 2);
        if !due {
            return false;
        }
        let t = Instant::now();
        let made = cp.checkpoint(&self.tenant, head).await;
        self.spent("checkpoint", t);
        match made {
            Ok(_) => {
                self.last_checkpoint = Some(head.seq);
                self.last_checkpoint_at = Instant::now();
                true
            }
            Err(e) => {
                tracing::warn!(tenant = %self.tenant, error = %e, "checkpoint failed; will retry");
                false
            }
        }
    }

    /// Commits `jobs` without pipelining, re-planning after each lost seq race, and answers.
    async fn commit(&mut self, jobs: Vec<Job>) {
        for attempt in 1..=MAX_ATTEMPTS {
            let plan = match self.prepare(&jobs, None, Lookup::Stored).await {
                Ok(p) => p,
                Err(e) => return self.fail(jobs, e),
            };
            let f = self.spawn(Vec::new(), plan);
            match f.task.await.unwrap_or_else(|e| {
                Err(StoreError::Database {
                    op: "appending records",
                    message: e.to_string(),
                })
            }) {
                Ok(()) => {
                    self.inner
                        .metrics
                        .commit_seconds
                        .observe(f.started.elapsed().as_secs_f64());
                    self.head = Some(f.plan.head);
                    self.producers.extend(f.plan.producers);
                    self.inner.metrics.chain_gap.inc_by(f.plan.gaps);
                    return self.answer(jobs, f.plan.results);
                }
                Err(StoreError::Conflict { .. }) if attempt < MAX_ATTEMPTS => {
                    // Another writer advanced the chain (or stored one of these ids): reload.
                    self.inner.metrics.chain_conflicts.inc();
                    self.head = None;
                    self.producers.clear();
                    tokio::task::yield_now().await;
                }
                Err(e) => {
                    // Whether a failed commit landed is unknown: reload the head next time.
                    self.producers.clear();
                    return self.fail(jobs, e);
                }
            }
        }
    }

    /// Looks up what the plan needs and plans `jobs`, on top of `base` (a group still in
    /// flight) when given, else on the stored head.
    async fn prepare(
        &mut self,
        jobs: &[Job],
        base: Option<&Plan>,
        lookup: Lookup,
    ) -> Result<Plan, StoreError> {
        let generation = self
            .inner
            .generation
            .load(std::sync::atomic::Ordering::Acquire);
        if generation != self.generation {
            self.generation = generation;
            self.head = None;
            self.producers.clear();
        }
        let store = &self.inner.store;
        let head = match (base, self.head) {
            (Some(b), _) => b.head,
            (None, Some(h)) => h,
            (None, None) => {
                let h = store.head(&self.tenant).await?;
                *self.head.insert(h)
            }
        };
        let mut existing = match lookup {
            Lookup::Optimistic => None,
            Lookup::Stored => Some(self.stored_ids(jobs).await?),
        };
        let mut missing: Vec<String> = jobs
            .iter()
            .flat_map(|j| j.events.iter().filter_map(|e| e.source.producer_id.clone()))
            .filter(|p| {
                !self.producers.contains_key(p)
                    && !base.is_some_and(|b| b.producers.contains_key(p))
            })
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if !missing.is_empty() {
            if self.producers.len() > MAX_CACHED_PRODUCERS {
                self.producers.clear();
            }
            self.producers
                .extend(store.producer_seqs(&self.tenant, &missing).await?);
        }
        loop {
            if let Some(plan) = self.plan(jobs, head, existing.as_ref(), base) {
                return Ok(plan);
            }
            // A producer_seq went backwards: before refusing it, learn whether it is a resent
            // event that is already stored (a duplicate, not an error).
            existing = Some(self.stored_ids(jobs).await?);
        }
    }

    /// Which of the jobs' event ids are already stored.
    async fn stored_ids(&self, jobs: &[Job]) -> Result<HashMap<String, Existing>, StoreError> {
        let mut ids: Vec<String> = jobs
            .iter()
            .flat_map(|j| j.events.iter().map(|e| e.event_id.to_string()))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        self.inner.store.existing(&self.tenant, &ids).await
    }

    /// Decides each event's fate and seals the new ones. Pure apart from the salt RNG.
    ///
    /// `existing` is what the store holds of the jobs' ids, `None` when not looked up. The
    /// event id decides before anything else about an event (DESIGN.md, "Delivery"), so when
    /// an event's `producer_seq` goes backwards and the ids were not looked up, it may be a
    /// resent duplicate: the answer is then `None`, and the caller looks them up and asks again.
    fn plan(
        &self,
        jobs: &[Job],
        head: ChainHead,
        existing: Option<&HashMap<String, Existing>>,
        base: Option<&Plan>,
    ) -> Option<Plan> {
        let mut rng = rand::thread_rng();
        let mut sealer = Sealer::new(&self.tenant);
        let mut scratch = vigil_core::jcs::Writer::with_capacity(1024);
        let events: usize = jobs.iter().map(|j| j.events.len()).sum();
        let mut plan = Plan {
            records: Vec::with_capacity(events),
            producers: base.map(|b| b.producers.clone()).unwrap_or_default(),
            results: Vec::with_capacity(jobs.len()),
            // Only this group's ids: the group below's are looked up in `base`, and anything
            // older has committed (a replay of it is refused by the store and re-planned).
            ids: HashMap::with_capacity(events),
            head,
            gaps: 0,
        };
        for job in jobs {
            let mut results = Vec::with_capacity(job.events.len());
            // Where this job starts, to take it back when it is all or nothing and refused.
            let (records_before, head_before, gaps_before) =
                (plan.records.len(), plan.head, plan.gaps);
            let mut producers_before: Vec<(String, Option<i64>)> = Vec::new();
            let mut refused = false;
            for (i, e) in job.events.iter().enumerate() {
                let id = e.event_id.to_string();
                let hash = e.content_hash_with(&mut scratch);
                let seen = existing
                    .and_then(|x| x.get(&id))
                    .map(|x| (x.seq, x.content_hash == hash))
                    .or_else(|| {
                        plan.ids
                            .get(&id)
                            .or_else(|| base.and_then(|b| b.ids.get(&id)))
                            .map(|(seq, h)| (*seq, *h == hash))
                    });
                if let Some((seq, same)) = seen {
                    refused |= !same;
                    results.push(if same {
                        IngestResult::Duplicate { seq }
                    } else {
                        IngestResult::Conflict { seq }
                    });
                    continue;
                }
                if let (Some(pid), Some(ps)) = (&e.source.producer_id, e.source.producer_seq) {
                    if let Some(last) = plan
                        .producers
                        .get(pid)
                        .or_else(|| self.producers.get(pid))
                        .copied()
                    {
                        if ps <= last {
                            existing?;
                            refused = true;
                            results.push(IngestResult::Rejected(vigil_core::Error::Invalid {
                                field: "source.producer_seq".into(),
                                reason: format!(
                                    "went backwards: {ps} after {last} from producer {pid}"
                                ),
                            }));
                            continue;
                        }
                        plan.gaps += (ps - last - 1) as u64;
                    }
                    let before = plan.producers.insert(pid.clone(), ps);
                    if job.atomic {
                        producers_before.push((pid.clone(), before));
                    }
                }
                // Masks' commitments join the payload now: after the content hash (a resend
                // compares equal), before the hashes of the record.
                let masked;
                let e = match job.redactions.get(i).filter(|r| r.has_commitments()) {
                    Some(r) => {
                        let mut copy = e.clone();
                        r.clone().seal(&mut copy.payload);
                        masked = copy;
                        &masked
                    }
                    None => e,
                };
                let mut r = sealer.seal(
                    e,
                    plan.head.seq + 1,
                    job.received_at,
                    &plan.head.hash,
                    &mut rng,
                );
                plan.head = plan.head.advance(&r);
                // Personal members go under the subject's key once the hashes are final.
                if let Some(s) = job.sealings.get(i).and_then(Option::as_ref) {
                    s.seal(&mut r);
                }
                plan.ids.insert(id, (r.seq, hash));
                results.push(IngestResult::Stored { seq: r.seq });
                plan.records.push(NewRecord {
                    record: r,
                    content_hash: hash,
                });
            }
            if job.atomic && refused {
                for r in plan.records.drain(records_before..) {
                    plan.ids.remove(r.record.event_id.as_str());
                }
                for (pid, before) in producers_before.into_iter().rev() {
                    match before {
                        Some(ps) => plan.producers.insert(pid, ps),
                        None => plan.producers.remove(&pid),
                    };
                }
                plan.head = head_before;
                plan.gaps = gaps_before;
                // Stored now, or a repeat within the job of an event stored now: not stored.
                for r in &mut results {
                    match r {
                        IngestResult::Stored { .. } => *r = IngestResult::NotStored,
                        IngestResult::Duplicate { seq } if *seq > head_before.seq => {
                            *r = IngestResult::NotStored
                        }
                        _ => {}
                    }
                }
            }
            plan.results.push(results);
        }
        // Only this group's producer positions are written by its transaction.
        if let Some(b) = base {
            plan.producers.retain(|k, v| b.producers.get(k) != Some(v));
        }
        Some(plan)
    }
}

fn clone_err(e: &StoreError) -> StoreError {
    match e {
        StoreError::Unavailable { op, message } => StoreError::Unavailable {
            op,
            message: message.clone(),
        },
        StoreError::Conflict { op, message } => StoreError::Conflict {
            op,
            message: message.clone(),
        },
        StoreError::Database { op, message } => StoreError::Database {
            op,
            message: message.clone(),
        },
        StoreError::BadUrl(m) => StoreError::BadUrl(m.clone()),
        StoreError::Migrate(m) => StoreError::Migrate(m.clone()),
    }
}
