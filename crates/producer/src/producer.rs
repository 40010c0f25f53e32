//! [`AuditProducer`]: the handle services hold. `emit` is a push onto a bounded lock-free queue
//! ([`crate::queue`]); all the work — stamping, batching, sending, spooling — happens in the
//! [pump](crate::pump). Flushes and the stop travel on a small control channel beside it.

use crate::config::{Mode, ProducerConfig};
use crate::error::ProducerError;
use crate::metrics::{DropReason, ProducerMetrics};
use crate::pump::Pump;
use crate::queue::EventQueue;
use crate::spool::Spool;
use crate::transport::Transport;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot, Notify};
use vigil_core::builder::EventBuilder;
use vigil_core::event::Event;
use vigil_core::ids::TenantId;
use vigil_core::time::Timestamp;

/// Answers a caller who waits for its event: delivered or spooled (`Ok`), or why not.
pub(crate) type Ack = oneshot::Sender<Result<(), ProducerError>>;

/// What was emitted.
#[derive(Debug)]
pub(crate) enum Draft {
    /// Described by the service: the producer stamps id, time, source and position.
    New(EventBuilder, Timestamp),
    /// Complete, stamped by another producer (an outbox): passed on as it is.
    Stamped(Event),
}

/// One emitted event.
#[derive(Debug)]
pub(crate) struct Item {
    pub(crate) tenant: TenantId,
    pub(crate) draft: Draft,
    pub(crate) ack: Option<Ack>,
}

/// What travels in the overflow list (events, and flushes in their place) and on the control
/// channel (flushes and the stop). Events are not boxed: a box would be one more allocation in
/// every `emit` that overflows.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub(crate) enum Msg {
    Event(Item),
    /// Answer once everything queued before is delivered or spooled.
    Flush(oneshot::Sender<()>),
    /// Deliver or spool what is queued, then stop.
    Stop(oneshot::Sender<()>),
}

/// State the emitting side and the pump share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) metrics: ProducerMetrics,
    pub(crate) mode: Mode,
    pub(crate) capacity: usize,
    /// Emitted events on their way to the pump.
    pub(crate) queue: EventQueue<Item>,
    /// Set when the producer is told to stop: later events are counted as dropped.
    pub(crate) stopped: AtomicBool,
    /// Durable mode: events emitted while the queue was full, oldest first, up to `capacity`
    /// (and flushes asked for meanwhile, in their place).
    pub(crate) overflow: Mutex<VecDeque<Msg>>,
    pub(crate) overflow_len: AtomicUsize,
    pub(crate) overflowed: Notify,
    /// Events dropped at `emit`, per tenant, not yet turned into `producer_seq` gaps.
    pub(crate) drops: Mutex<HashMap<TenantId, i64>>,
    pub(crate) has_drops: AtomicBool,
}

impl Shared {
    /// Counts an event that could not be queued, and makes its tenant's next `producer_seq`
    /// skip one so the loss shows downstream as a gap.
    fn drop_at_emit(&self, item: Item, reason: DropReason) {
        *self
            .drops
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(item.tenant.clone())
            .or_default() += 1;
        self.has_drops.store(true, Ordering::Release);
        self.metrics.drop_events(reason, 1);
        let dropped = self
            .metrics
            .dropped
            .with_label_values(&[reason.as_str()])
            .get();
        // One line per thousand drops is enough to be seen without flooding the log.
        if dropped % 1000 == 1 {
            tracing::error!(tenant = %item.tenant, reason = reason.as_str(), dropped_so_far = dropped,
                "audit event dropped: the producer's queue is full");
        }
        if let Some(ack) = item.ack {
            let _ = ack.send(Err(ProducerError::Dropped(reason.as_str())));
        }
    }
}

/// The audit producer a service embeds. Cheap to clone; every clone feeds the same queue.
#[derive(Clone, Debug)]
pub struct AuditProducer {
    tx: mpsc::Sender<Msg>,
    shared: Arc<Shared>,
    producer_id: Arc<str>,
    task: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

/// `source.producer_id` for this run: the stable name plus an incarnation (start time and
/// randomness), so `producer_seq` may start at 1 again without colliding with a spool an
/// earlier run left behind.
fn incarnation(name: &str) -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    format!("{name}.{ms:x}{:04x}", rand::random::<u16>())
}

/// The current time as an event timestamp.
pub(crate) fn now() -> Timestamp {
    Timestamp::now()
}

impl AuditProducer {
    /// Starts a producer sending through `transport`; in durable mode it opens the spool first
    /// and, if an earlier run left events there, sends those before anything new.
    pub async fn start(
        config: ProducerConfig,
        transport: Arc<dyn Transport>,
        registry: &prometheus::Registry,
    ) -> Result<AuditProducer, ProducerError> {
        let metrics = ProducerMetrics::new(registry);
        let spool = match config.mode {
            Mode::Durable => {
                let dir = config.spool_dir.as_ref().ok_or(ProducerError::NoSpoolDir)?;
                let spool = Spool::open(dir, config.spool_max_bytes).await?;
                if !spool.is_empty() {
                    tracing::info!(spool = %dir.display(), bytes = spool.bytes(),
                        "audit events left in the spool by an earlier run: sending them first");
                }
                Some(spool)
            }
            Mode::DropOnFull => None,
        };
        let capacity = config.queue_capacity.max(1);
        metrics.queue_capacity.set(capacity as i64);
        let (tx, rx) = mpsc::channel(64);
        let shared = Arc::new(Shared {
            metrics,
            mode: config.mode,
            capacity,
            queue: EventQueue::new(capacity),
            stopped: AtomicBool::new(false),
            overflow: Mutex::new(VecDeque::new()),
            overflow_len: AtomicUsize::new(0),
            overflowed: Notify::new(),
            drops: Mutex::new(HashMap::new()),
            has_drops: AtomicBool::new(false),
        });
        let name = config
            .producer_name
            .clone()
            .unwrap_or_else(|| config.service.clone());
        let producer_id: Arc<str> = incarnation(&name).into();
        let pump = Pump::new(
            config,
            Arc::clone(&producer_id),
            transport,
            spool,
            Arc::clone(&shared),
            rx,
        );
        let task = tokio::spawn(pump.run());
        Ok(AuditProducer {
            tx,
            shared,
            producer_id,
            task: Arc::new(Mutex::new(Some(task))),
        })
    }

    /// `source.producer_id` of this run's events.
    pub fn producer_id(&self) -> &str {
        &self.producer_id
    }

    /// Queues `event` for `tenant` and returns at once: never blocks, never fails. The
    /// producer stamps the event id (unless the builder has one), the time (unless set), the
    /// service and its position. If the queue is full the event waits in an overflow list
    /// (durable mode) or is dropped — counted, logged, and a gap downstream.
    pub fn emit(&self, tenant: &TenantId, event: EventBuilder) {
        self.push(Item {
            tenant: tenant.clone(),
            draft: Draft::New(event, now()),
            ack: None,
        });
    }

    fn push(&self, item: Item) {
        let shared = &self.shared;
        if shared.stopped.load(Ordering::Relaxed) {
            return shared.drop_at_emit(item, DropReason::Shutdown);
        }
        // Once events overflow, later ones follow them there, so they stay in order.
        if shared.overflow_len.load(Ordering::Acquire) > 0 {
            return self.overflow(item);
        }
        if let Err(item) = shared.queue.push(item) {
            self.overflow(item);
        }
    }

    fn overflow(&self, item: Item) {
        let shared = &self.shared;
        if shared.mode == Mode::DropOnFull {
            return shared.drop_at_emit(item, DropReason::QueueFull);
        }
        let mut list = shared
            .overflow
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if list.len() >= shared.capacity {
            drop(list);
            return shared.drop_at_emit(item, DropReason::QueueFull);
        }
        list.push_back(Msg::Event(item));
        shared.overflow_len.store(list.len(), Ordering::Release);
        drop(list);
        shared.overflowed.notify_one();
    }

    /// Queues `event` and waits until it is delivered or, in durable mode, on disk in the
    /// spool: for callers that must not answer before their audit record is safe. Waits for
    /// room in the queue rather than overflowing.
    pub async fn emit_durable(
        &self,
        tenant: &TenantId,
        event: EventBuilder,
    ) -> Result<(), ProducerError> {
        self.durable(tenant, Draft::New(event, now())).await
    }

    /// Passes on an event another producer already stamped (an outbox relay: the database
    /// that wrote the outbox is the producer), keeping its id, time, source and position, and
    /// waits like [`AuditProducer::emit_durable`].
    pub async fn forward_durable(
        &self,
        tenant: &TenantId,
        event: Event,
    ) -> Result<(), ProducerError> {
        self.durable(tenant, Draft::Stamped(event)).await
    }

    async fn durable(&self, tenant: &TenantId, draft: Draft) -> Result<(), ProducerError> {
        let (ack, acked) = oneshot::channel();
        let mut item = Item {
            tenant: tenant.clone(),
            draft,
            ack: Some(ack),
        };
        let shared = &self.shared;
        // Room in the queue, waited for: a caller who waits for its event gets backpressure,
        // not an overflow.
        loop {
            if shared.stopped.load(Ordering::Relaxed) || self.tx.is_closed() {
                return Err(ProducerError::Stopped);
            }
            if shared.overflow_len.load(Ordering::Acquire) == 0 {
                match shared.queue.push(item) {
                    Ok(()) => break,
                    Err(back) => item = back,
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        acked.await.map_err(|_| ProducerError::Stopped)?
    }

    /// Returns once every event emitted before the call is delivered or spooled.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        let shared = &self.shared;
        let queued = {
            // Behind the events that overflowed, if any did: they were emitted before.
            let mut list = shared
                .overflow
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if list.is_empty() {
                Some(tx)
            } else {
                list.push_back(Msg::Flush(tx));
                shared.overflow_len.store(list.len(), Ordering::Release);
                None
            }
        };
        match queued {
            Some(tx) => {
                if self.tx.send(Msg::Flush(tx)).await.is_err() {
                    return;
                }
            }
            None => shared.overflowed.notify_one(),
        }
        let _ = rx.await;
    }

    /// Stops the producer: what is queued is delivered, or spooled for the next start (durable
    /// mode), within the configured shutdown timeout. Later `emit`s are counted as dropped.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Stop(tx)).await.is_ok() {
            let _ = rx.await;
        }
        let task = self
            .task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(t) = task {
            let _ = t.await;
        }
    }

    /// Events waiting in memory (queue and overflow).
    pub fn queue_depth(&self) -> usize {
        self.shared.queue.len() + self.shared.overflow_len.load(Ordering::Acquire)
    }

    /// The producer's metrics.
    pub fn metrics(&self) -> &ProducerMetrics {
        &self.shared.metrics
    }
}
