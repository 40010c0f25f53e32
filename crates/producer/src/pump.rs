//! The producer's one background task: takes events off the queue, stamps them, cuts batches
//! and moves each batch to exactly one end — delivered, spooled, or (counted) dropped.
//!
//! Order is what makes a resend harmless, so there is one line: the spool (oldest), then the
//! batch being sent, then the batch being filled. While the spool holds anything, new batches
//! go behind it on disk and the spool drains oldest first; only when it is empty does a batch
//! go straight to the transport, one at a time. A send that fails or outlasts the send timeout
//! puts its batch at the end of the spool (durable mode) or keeps it in memory to retry
//! (drop-on-full), with exponential backoff between attempts. A tenant's events therefore
//! reach the audit service in `producer_seq` order, and a batch sent twice is answered as
//! duplicates.

use crate::config::ProducerConfig;
use crate::error::ProducerError;
use crate::metrics::DropReason;
use crate::producer::{Ack, Draft, Item, Msg, Shared};
use crate::spool::{Pushed, Spool};
use crate::transport::{Delivery, TenantEvent, Transport, TransportError};
use futures::future::BoxFuture;
use futures::FutureExt;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use vigil_core::event::{Source, MAX_EVENT_BYTES};
use vigil_core::ids::{EventId, TenantId};

/// A batch and whoever waits for it.
#[derive(Debug, Default)]
struct Batch {
    events: Vec<TenantEvent>,
    acks: Vec<Ack>,
    flushes: Vec<oneshot::Sender<()>>,
}

impl Batch {
    /// Answers everyone waiting: `result` to each event's waiter, and the flushes.
    fn resolve(self, result: Result<(), ProducerError>) {
        for a in self.acks {
            let _ = a.send(result.clone());
        }
        for f in self.flushes {
            let _ = f.send(());
        }
    }
}

/// Where the batch being sent came from.
#[derive(Debug)]
enum Origin {
    /// Cut from the queue (or, drop-on-full, kept to retry): its waiters, events travel along.
    Memory(Batch),
    /// The spool row with this id.
    Spool(i64),
}

struct InFlight {
    send: BoxFuture<'static, Result<Delivery, TransportError>>,
    /// The events being sent (shared with the send, kept here in case it is abandoned).
    events: Arc<Vec<TenantEvent>>,
    origin: Origin,
}

/// What woke the pump (short-lived: one per turn of the loop).
#[allow(clippy::large_enum_variant)]
enum Wake {
    Sent(Result<Delivery, TransportError>),
    Cut,
    BackedOff,
    Msg(Option<Msg>),
    Other,
}

pub(crate) struct Pump {
    config: ProducerConfig,
    producer_id: Arc<str>,
    transport: Arc<dyn Transport>,
    spool: Option<Spool>,
    shared: Arc<Shared>,
    rx: mpsc::Receiver<Msg>,
    seqs: HashMap<TenantId, i64>,
    current: Batch,
    current_since: Option<Instant>,
    flush_now: bool,
    inflight: Option<InFlight>,
    /// Drop-on-full: a batch whose send failed, sent again before anything newer.
    retry: Option<Batch>,
    /// No send starts before this (backoff after a failure).
    not_before: Option<Instant>,
    backoff: Duration,
    /// Told to stop: by whom, and until when delivery is still tried.
    stopping: Option<(Option<oneshot::Sender<()>>, Instant)>,
    closed: bool,
    /// Flushes waiting until this many more queued events are taken.
    flush_barriers: Vec<(usize, oneshot::Sender<()>)>,
    /// Empty looks at the queue in a row (see `EventQueue::ready`).
    idle: u32,
}

const FIRST_BACKOFF: Duration = Duration::from_millis(50);

impl Pump {
    pub(crate) fn new(
        config: ProducerConfig,
        producer_id: Arc<str>,
        transport: Arc<dyn Transport>,
        spool: Option<Spool>,
        shared: Arc<Shared>,
        rx: mpsc::Receiver<Msg>,
    ) -> Pump {
        Pump {
            config,
            producer_id,
            transport,
            spool,
            shared,
            rx,
            seqs: HashMap::new(),
            current: Batch::default(),
            current_since: None,
            flush_now: false,
            inflight: None,
            retry: None,
            not_before: None,
            backoff: FIRST_BACKOFF,
            stopping: None,
            closed: false,
            flush_barriers: Vec::new(),
            idle: 0,
        }
    }

    fn backlog(&self) -> bool {
        self.spool.as_ref().is_some_and(|s| !s.is_empty())
    }

    /// A batch may be cut now: it goes behind the spool, or straight out if nothing is ahead.
    fn can_cut(&self) -> bool {
        self.backlog() || (self.inflight.is_none() && self.retry.is_none())
    }

    fn cut_due(&self) -> Option<Instant> {
        let since = self.current_since?;
        if self.flush_now
            || self.stopping.is_some()
            || self.current.events.len() >= self.config.batch_size
        {
            return Some(Instant::now());
        }
        Some(since + self.config.linger)
    }

    pub(crate) async fn run(mut self) {
        loop {
            self.update_gauges();
            if let Some((_, deadline)) = &self.stopping {
                let drained = self.shared.queue.is_empty()
                    && self.shared.overflow_len.load(Ordering::Acquire) == 0
                    && self.flush_barriers.is_empty();
                let memory_empty = self.current.events.is_empty()
                    && self.retry.is_none()
                    && !matches!(
                        self.inflight,
                        Some(InFlight {
                            origin: Origin::Memory(_),
                            ..
                        })
                    );
                if drained && memory_empty {
                    break;
                }
                if Instant::now() >= *deadline {
                    self.abandon().await;
                    break;
                }
            }
            self.start_send().await;
            match self.wait().await {
                Wake::Sent(result) => {
                    let f = self.inflight.take().expect("a send finished");
                    drop(f.send);
                    let events = Arc::try_unwrap(f.events).unwrap_or_else(|a| (*a).clone());
                    self.sent(f.origin, events, result).await;
                }
                Wake::Cut => self.cut().await,
                Wake::BackedOff => self.not_before = None,
                Wake::Msg(Some(m)) => self.on_msg(m),
                Wake::Msg(None) => {
                    // Every handle is gone: finish as if told to stop.
                    self.closed = true;
                    self.shared.stopped.store(true, Ordering::SeqCst);
                    if self.stopping.is_none() {
                        self.stopping = Some((None, Instant::now() + self.config.shutdown_timeout));
                    }
                }
                Wake::Other => {}
            }
            self.take_queued();
        }
        // Emits that slipped in after the stop: counted, not silently lost.
        while let Some(item) = self.shared.queue.pop() {
            self.shared.metrics.drop_events(DropReason::Shutdown, 1);
            if let Some(a) = item.ack {
                let _ = a.send(Err(ProducerError::Stopped));
            }
        }
        self.update_gauges();
        if let Some((Some(done), _)) = self.stopping.take() {
            let _ = done.send(());
        }
    }

    /// Waits for the next thing to do.
    async fn wait(&mut self) -> Wake {
        let room = self.current.events.len() < self.config.batch_size;
        let control = !self.closed;
        let cut_at = self.cut_due().filter(|_| self.can_cut());
        let stop_at = self.stopping.as_ref().map(|s| s.1);
        let backoff_at = self.not_before.filter(|_| self.inflight.is_none());
        let has_inflight = self.inflight.is_some();
        let sending = self.inflight.as_mut().map(|f| &mut f.send);
        let shared = Arc::clone(&self.shared);
        let idle = &mut self.idle;
        tokio::select! {
            biased;
            r = async { sending.expect("guarded").await }, if has_inflight => Wake::Sent(r),
            _ = sleep_until(cut_at), if cut_at.is_some() => Wake::Cut,
            _ = sleep_until(backoff_at), if backoff_at.is_some() => Wake::BackedOff,
            m = self.rx.recv(), if control => Wake::Msg(m),
            _ = shared.queue.ready(idle), if room => Wake::Other,
            _ = shared.overflowed.notified(), if room => Wake::Other,
            _ = sleep_until(stop_at), if stop_at.is_some() => Wake::Other,
        }
    }

    fn update_gauges(&self) {
        let m = &self.shared.metrics;
        m.queue_depth.set(
            (self.shared.queue.len() + self.shared.overflow_len.load(Ordering::Acquire)) as i64,
        );
        m.spool_bytes
            .set(self.spool.as_ref().map_or(0, |s| s.bytes() as i64));
    }

    fn on_msg(&mut self, msg: Msg) {
        match msg {
            Msg::Event(item) => self.stamp(item),
            // From the control channel: everything in the queue now was emitted before it.
            Msg::Flush(done) => match self.shared.queue.len() {
                0 => self.attach_flush(done),
                n => self.flush_barriers.push((n, done)),
            },
            Msg::Stop(done) => {
                // Whatever is already queued is still taken; nothing new gets in.
                self.shared.stopped.store(true, Ordering::SeqCst);
                self.rx.close();
                self.stopping = Some((Some(done), Instant::now() + self.config.shutdown_timeout));
            }
        }
    }

    /// Takes queued events into the batch being filled while it has room: the queue first,
    /// then (once the queue is empty: whatever is in it was emitted before anything
    /// overflowed) the overflow list. Flushes waiting for a number of events are attached
    /// once those are taken.
    fn take_queued(&mut self) {
        while self.current.events.len() < self.config.batch_size {
            let Some(item) = self.shared.queue.pop() else {
                break;
            };
            self.stamp(item);
            self.count_towards_flushes();
        }
        if self.shared.queue.is_empty() && self.current.events.len() < self.config.batch_size {
            self.take_overflow();
        }
    }

    fn count_towards_flushes(&mut self) {
        if self.flush_barriers.is_empty() {
            return;
        }
        for b in &mut self.flush_barriers {
            b.0 -= 1;
        }
        while let Some(i) = self.flush_barriers.iter().position(|b| b.0 == 0) {
            let (_, done) = self.flush_barriers.remove(i);
            self.attach_flush(done);
        }
    }

    /// A flush is answered with the newest batch that holds anything emitted before it.
    fn attach_flush(&mut self, done: oneshot::Sender<()>) {
        if !self.current.events.is_empty() {
            self.flush_now = true;
            return self.current.flushes.push(done);
        }
        if let Some(b) = self.retry.as_mut() {
            return b.flushes.push(done);
        }
        if let Some(InFlight {
            origin: Origin::Memory(b),
            ..
        }) = self.inflight.as_mut()
        {
            return b.flushes.push(done);
        }
        let _ = done.send(());
    }

    /// Durable mode: events that overflowed the queue, in order. Only once the queue is
    /// empty: whatever is in it was emitted before anything overflowed.
    fn take_overflow(&mut self) {
        if self.shared.overflow_len.load(Ordering::Acquire) == 0 {
            return;
        }
        let room = self
            .config
            .batch_size
            .saturating_sub(self.current.events.len());
        let msgs: Vec<Msg> = {
            let mut list = self
                .shared
                .overflow
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let n = room.min(list.len());
            let msgs = list.drain(..n).collect();
            self.shared
                .overflow_len
                .store(list.len(), Ordering::Release);
            msgs
        };
        for m in msgs {
            self.on_msg(m);
        }
    }

    /// Gives the event its id, time and position, and adds it to the batch being filled.
    fn stamp(&mut self, item: Item) {
        if self.shared.has_drops.swap(false, Ordering::AcqRel) {
            let drops: Vec<(TenantId, i64)> = self
                .shared
                .drops
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .drain()
                .collect();
            for (tenant, n) in drops {
                *self.seqs.entry(tenant).or_insert(0) += n;
            }
        }
        let built = match item.draft {
            Draft::Stamped(event) => Ok(event),
            Draft::New(draft, at) => {
                let seq = {
                    let s = self.seqs.entry(item.tenant.clone()).or_insert(0);
                    *s += 1;
                    *s
                };
                let source = Source {
                    service: self.config.service.clone(),
                    producer_id: Some(self.producer_id.to_string()),
                    producer_seq: Some(seq),
                };
                draft.build(source, EventId::from_uuid(uuid::Uuid::now_v7()), at)
            }
        };
        let built = built
            .map(|e| TenantEvent::new(item.tenant.clone(), e))
            .and_then(|e| {
                if e.json().len() > MAX_EVENT_BYTES {
                    Err(vigil_core::Error::Invalid {
                        field: "(event)".into(),
                        reason: format!("is larger than {MAX_EVENT_BYTES} bytes"),
                    })
                } else {
                    Ok(e)
                }
            });
        match built {
            Ok(e) => {
                if self.current.events.is_empty() {
                    self.current_since = Some(Instant::now());
                }
                self.current.events.push(e);
                if let Some(a) = item.ack {
                    self.current.acks.push(a);
                }
            }
            Err(e) => {
                // Its seq is used: the loss shows downstream as a gap, as any loss does.
                self.shared.metrics.drop_events(DropReason::Invalid, 1);
                tracing::error!(tenant = %item.tenant, error = %e, "audit event dropped: it does not validate");
                if let Some(a) = item.ack {
                    let _ = a.send(Err(ProducerError::Invalid(e)));
                }
            }
        }
    }

    /// Moves the batch being filled on: behind the spool, or out to the transport.
    async fn cut(&mut self) {
        let batch = std::mem::take(&mut self.current);
        self.current_since = None;
        self.flush_now = false;
        if batch.events.is_empty() {
            return batch.resolve(Ok(()));
        }
        if self.backlog() {
            self.spool_batch(batch).await;
        } else {
            self.send(Origin::Memory(batch), None);
        }
    }

    fn send(&mut self, origin: Origin, events: Option<Vec<TenantEvent>>) {
        let (origin, events) = match (origin, events) {
            (Origin::Memory(mut b), None) => {
                let events = std::mem::take(&mut b.events);
                (Origin::Memory(b), events)
            }
            (o, e) => (o, e.unwrap_or_default()),
        };
        let events = Arc::new(events);
        let transport = Arc::clone(&self.transport);
        let timeout = self.config.send_timeout;
        let batch = Arc::clone(&events);
        let send = async move {
            match tokio::time::timeout(timeout, transport.send(&batch)).await {
                Ok(r) => r,
                Err(_) => Err(TransportError::Unavailable(format!(
                    "no answer within {timeout:?}"
                ))),
            }
        }
        .boxed();
        self.inflight = Some(InFlight {
            send,
            events,
            origin,
        });
    }

    /// Starts the next send when one is due: the batch kept for retry, or the oldest spooled.
    async fn start_send(&mut self) {
        if self.inflight.is_some() || self.not_before.is_some() {
            return;
        }
        if let Some(b) = self.retry.take() {
            return self.send(Origin::Memory(b), None);
        }
        if !self.backlog() || self.stopping.is_some() {
            return;
        }
        let spool = self.spool.as_mut().expect("backlog implies a spool");
        match spool.oldest().await {
            Ok(Some(row)) => {
                if row.unreadable > 0 {
                    self.shared
                        .metrics
                        .drop_events(DropReason::SpoolLost, row.unreadable);
                    tracing::error!(spool = %spool.dir().display(), lost = row.unreadable,
                        "audit events in the spool could not be read back: lost");
                }
                self.send(Origin::Spool(row.id), Some(row.events));
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e, "reading the audit spool failed; will retry");
                self.back_off();
            }
        }
    }

    fn back_off(&mut self) {
        self.not_before = Some(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(self.config.max_backoff);
    }

    async fn sent(
        &mut self,
        origin: Origin,
        events: Vec<TenantEvent>,
        result: Result<Delivery, TransportError>,
    ) {
        let m = &self.shared.metrics;
        let ok = match result {
            Ok(delivery) => {
                m.sent.inc_by(events.len() as u64);
                self.refused(&delivery, &events);
                self.backoff = FIRST_BACKOFF;
                true
            }
            Err(TransportError::Refused(why)) => {
                m.drop_events(DropReason::Refused, events.len());
                tracing::error!(reason = %why, count = events.len(), transport = self.transport.name(),
                    "audit events refused by the transport for good: dropped");
                true
            }
            Err(TransportError::Unavailable(why)) => {
                m.send_errors
                    .with_label_values(&[self.transport.name()])
                    .inc();
                tracing::warn!(error = %why, transport = self.transport.name(), count = events.len(),
                    "sending audit events failed; kept to send again");
                self.back_off();
                false
            }
        };
        match origin {
            Origin::Spool(id) => {
                if ok {
                    if let Err(e) = self.spool.as_mut().expect("spooled").remove(id).await {
                        // It will be sent again: a duplicate, harmless.
                        tracing::warn!(error = %e, "removing a delivered batch from the spool failed");
                    }
                }
            }
            Origin::Memory(mut batch) => {
                batch.events = events;
                if ok {
                    batch.events.clear();
                    batch.resolve(Ok(()));
                } else if self.spool.is_some() {
                    self.spool_batch(batch).await;
                } else {
                    self.retry = Some(batch);
                }
            }
        }
    }

    fn refused(&self, delivery: &Delivery, events: &[TenantEvent]) {
        if delivery.refused.is_empty() {
            return;
        }
        self.shared
            .metrics
            .drop_events(DropReason::Refused, delivery.refused.len());
        for (id, why) in delivery.refused.iter().take(10) {
            tracing::error!(event_id = %id, reason = %why, "an audit event was refused for good");
        }
        let _ = events;
    }

    /// Writes `batch` behind the spool and answers its waiters: spooled, or dropped when the
    /// spool is full or failing (counted and logged: the loss is a gap downstream).
    async fn spool_batch(&mut self, batch: Batch) {
        let spool = self.spool.as_mut().expect("durable mode has a spool");
        let n = batch.events.len();
        let reason = match spool.push(&batch.events).await {
            Ok(Pushed::Written) => {
                self.shared.metrics.spooled.inc_by(n as u64);
                return batch.resolve(Ok(()));
            }
            Ok(Pushed::Full) => DropReason::SpoolFull,
            Err(e) => {
                tracing::error!(error = %e, spool = %spool.dir().display(), "writing the audit spool failed");
                DropReason::SpoolLost
            }
        };
        self.shared.metrics.drop_events(reason, n);
        tracing::error!(count = n, reason = reason.as_str(), spool = %spool.dir().display(),
            "audit events dropped: the spool cannot take them");
        batch.resolve(Err(ProducerError::Dropped(reason.as_str())));
    }

    /// The shutdown deadline passed: what is still in memory goes to the spool (durable) or is
    /// counted as dropped.
    async fn abandon(&mut self) {
        let mut left = Vec::new();
        if let Some(f) = self.inflight.take() {
            // The send did not finish: keep its events (if it still lands they arrive twice,
            // which is harmless). A spooled batch simply stays in the spool.
            drop(f.send);
            if let Origin::Memory(mut b) = f.origin {
                b.events = Arc::try_unwrap(f.events).unwrap_or_else(|a| (*a).clone());
                left.push(b);
            }
        }
        left.extend(self.retry.take());
        let mut flushes = Vec::new();
        loop {
            let msgs: Vec<Msg> = {
                let mut list = self
                    .shared
                    .overflow
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                self.shared.overflow_len.store(0, Ordering::Release);
                list.drain(..).collect()
            };
            for m in msgs {
                match m {
                    Msg::Event(item) => self.stamp(item),
                    Msg::Flush(done) | Msg::Stop(done) => flushes.push(done),
                }
            }
            let mut took = false;
            while let Some(item) = self.shared.queue.pop() {
                self.stamp(item);
                took = true;
            }
            match self.rx.try_recv() {
                Ok(Msg::Event(item)) => self.stamp(item),
                Ok(Msg::Flush(done)) | Ok(Msg::Stop(done)) => flushes.push(done),
                Err(_) if took => {}
                Err(_) => break,
            }
        }
        let mut current = std::mem::take(&mut self.current);
        current.flushes.extend(flushes);
        current
            .flushes
            .extend(self.flush_barriers.drain(..).map(|(_, done)| done));
        left.push(current);
        for b in left {
            if b.events.is_empty() {
                b.resolve(Ok(()));
            } else if self.spool.is_some() {
                self.spool_batch(b).await;
            } else {
                self.shared
                    .metrics
                    .drop_events(DropReason::Shutdown, b.events.len());
                tracing::error!(
                    count = b.events.len(),
                    "audit events not delivered before shutdown: dropped"
                );
                b.resolve(Err(ProducerError::Dropped(DropReason::Shutdown.as_str())));
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
