//! The producer's guarantees, through a transport the test can take down, slow down and bring
//! back: order, gapless stamping, the spool growing and draining, restarts, and every way of
//! losing an event being counted and visible as a gap. (End to end against the real audit
//! service and a real Kafka broker: the `vigil` crate's `pipeline` suite.)

use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vigil_core::builder::EventBuilder;
use vigil_core::event::{Actor, ActorType, Outcome, Resource};
use vigil_core::ids::TenantId;
use vigil_producer::metrics::DropReason;
use vigil_producer::{
    AuditProducer, Delivery, Mode, ProducerConfig, ProducerError, TenantEvent, Transport,
    TransportError,
};

/// A far end that records what it took, and can be down or slow.
#[derive(Debug, Default)]
struct FarEnd {
    down: AtomicBool,
    delay_ms: AtomicU64,
    got: Mutex<Vec<TenantEvent>>,
}

#[async_trait]
impl Transport for FarEnd {
    fn name(&self) -> &'static str {
        "test"
    }

    async fn send(&self, batch: &[TenantEvent]) -> Result<Delivery, TransportError> {
        let delay = self.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if self.down.load(Ordering::SeqCst) {
            return Err(TransportError::Unavailable("down".into()));
        }
        self.got.lock().unwrap().extend_from_slice(batch);
        Ok(Delivery::default())
    }
}

impl FarEnd {
    fn up() -> Arc<FarEnd> {
        Arc::new(FarEnd::default())
    }

    fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// (tenant, producer_id, producer_seq, resource id) of everything taken, in order.
    fn taken(&self) -> Vec<(String, String, i64, String)> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|e| {
                let ev = e.event();
                (
                    e.tenant().to_string(),
                    ev.source.producer_id.clone().unwrap(),
                    ev.source.producer_seq.unwrap(),
                    ev.resource.id.clone(),
                )
            })
            .collect()
    }

    async fn wait_for(&self, n: usize) {
        for _ in 0..500 {
            if self.got.lock().unwrap().len() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "the far end took {} events, expected {n}",
            self.got.lock().unwrap().len()
        );
    }
}

fn tenant(t: &str) -> TenantId {
    TenantId::parse(t).unwrap()
}

fn draft(i: usize) -> EventBuilder {
    EventBuilder::new(
        "order.create",
        Actor::new(ActorType::User, "u-1"),
        Resource::new("order", format!("o-{i}")),
        Outcome::Success,
    )
    .field("n", i)
}

fn config(dir: &std::path::Path) -> ProducerConfig {
    let mut c = ProducerConfig::new("shop").with_spool(dir.join("spool"));
    c.send_timeout = Duration::from_millis(300);
    c.max_backoff = Duration::from_millis(100);
    c.linger = Duration::from_millis(2);
    c.batch_size = 50;
    c.shutdown_timeout = Duration::from_millis(500);
    c
}

async fn start(c: ProducerConfig, far: &Arc<FarEnd>) -> (AuditProducer, prometheus::Registry) {
    let registry = prometheus::Registry::new();
    let p = AuditProducer::start(c, Arc::clone(far) as Arc<dyn Transport>, &registry)
        .await
        .unwrap();
    (p, registry)
}

/// Each tenant's seqs, in the order taken, per producer id.
fn seqs_by_tenant(taken: &[(String, String, i64, String)]) -> HashMap<(String, String), Vec<i64>> {
    let mut m: HashMap<(String, String), Vec<i64>> = HashMap::new();
    for (t, p, s, _) in taken {
        m.entry((t.clone(), p.clone())).or_default().push(*s);
    }
    m
}

#[tokio::test]
async fn events_are_stamped_with_a_gapless_seq_per_tenant_and_arrive_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let far = FarEnd::up();
    let (p, _) = start(config(dir.path()), &far).await;
    for i in 0..300 {
        p.emit(
            &tenant(if i % 3 == 0 { "acme" } else { "globex" }),
            draft(i),
        );
    }
    p.flush().await;
    let taken = far.taken();
    assert_eq!(taken.len(), 300);
    for ((_, pid), seqs) in seqs_by_tenant(&taken) {
        assert!(pid.starts_with("shop."), "{pid}");
        assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>());
    }
    let e = far.got.lock().unwrap()[0].event().clone();
    assert_eq!(e.source.service, "shop");
    assert_eq!(e.event_id.uuid().get_version_num(), 7);
    p.shutdown().await;
}

#[tokio::test]
async fn an_outage_fills_the_spool_which_drains_in_order_when_the_far_end_returns() {
    let dir = tempfile::tempdir().unwrap();
    let far = FarEnd::up();
    let (p, _) = start(config(dir.path()), &far).await;
    far.set_down(true);
    for i in 0..500 {
        p.emit(&tenant("acme"), draft(i));
    }
    p.flush().await;
    assert!(p.metrics().spool_bytes.get() > 0, "the spool grew");
    assert_eq!(p.metrics().spooled.get(), 500);
    assert!(p.metrics().send_errors.with_label_values(&["test"]).get() > 0);
    // More while it is down: they queue behind the spool, not around it.
    for i in 500..600 {
        p.emit(&tenant("acme"), draft(i));
    }
    far.set_down(false);
    far.wait_for(600).await;
    let ids: Vec<String> = far.taken().into_iter().map(|t| t.3).collect();
    assert_eq!(ids, (0..600).map(|i| format!("o-{i}")).collect::<Vec<_>>());
    p.flush().await;
    for _ in 0..100 {
        if p.metrics().spool_bytes.get() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(p.metrics().spool_bytes.get(), 0, "the spool drained");
    assert_eq!(p.metrics().sent.get(), 600);
    p.shutdown().await;
}

#[tokio::test]
async fn a_far_end_slower_than_the_send_timeout_counts_as_down() {
    let dir = tempfile::tempdir().unwrap();
    let far = FarEnd::up();
    let (p, _) = start(config(dir.path()), &far).await;
    far.delay_ms.store(2_000, Ordering::SeqCst);
    p.emit(&tenant("acme"), draft(1));
    p.flush().await;
    assert_eq!(p.metrics().spooled.get(), 1, "spooled after the timeout");
    far.delay_ms.store(0, Ordering::SeqCst);
    far.wait_for(1).await;
    p.shutdown().await;
}

#[tokio::test]
async fn a_restarted_producer_sends_what_its_predecessor_spooled_first() {
    let dir = tempfile::tempdir().unwrap();
    let far = FarEnd::up();
    far.set_down(true);
    let (first, _) = start(config(dir.path()), &far).await;
    let first_id = first.producer_id().to_owned();
    for i in 0..120 {
        first.emit(&tenant("acme"), draft(i));
    }
    first.shutdown().await;
    assert_eq!(first.metrics().spooled.get(), 120);
    drop(first);

    far.set_down(false);
    let (second, _) = start(config(dir.path()), &far).await;
    assert_ne!(second.producer_id(), first_id, "a new incarnation");
    second.emit(&tenant("acme"), draft(1000));
    far.wait_for(121).await;
    let taken = far.taken();
    assert!(taken[..120].iter().all(|t| t.1 == first_id));
    assert_eq!(
        taken[..120].iter().map(|t| t.2).collect::<Vec<_>>(),
        (1..=120).collect::<Vec<_>>()
    );
    assert_eq!(
        (taken[120].1.as_str(), taken[120].2),
        (second.producer_id(), 1)
    );
    second.shutdown().await;
}

#[tokio::test]
async fn a_spool_in_use_by_another_producer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let far = FarEnd::up();
    let (p, _) = start(config(dir.path()), &far).await;
    let second = AuditProducer::start(
        config(dir.path()),
        far.clone() as Arc<dyn Transport>,
        &prometheus::Registry::new(),
    )
    .await;
    assert!(matches!(second, Err(ProducerError::SpoolLocked(_))));
    p.shutdown().await;
}

#[tokio::test]
async fn a_damaged_spool_is_moved_aside_and_a_new_one_started() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    std::fs::write(
        spool.join("spool.db"),
        b"this is not a database, it is garbage",
    )
    .unwrap();
    let far = FarEnd::up();
    let (p, _) = start(config(dir.path()), &far).await;
    p.emit(&tenant("acme"), draft(1));
    far.wait_for(1).await;
    let aside = std::fs::read_dir(&spool)
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("spool.db.damaged-")
        });
    assert!(aside, "the damaged file is kept for inspection");
    p.shutdown().await;
}

#[tokio::test]
async fn drop_on_full_drops_what_the_queue_cannot_hold_and_the_loss_is_a_gap() {
    let far = FarEnd::up();
    let mut c = ProducerConfig::new("shop");
    c.mode = Mode::DropOnFull;
    c.queue_capacity = 10;
    c.batch_size = 5;
    c.linger = Duration::from_millis(1);
    c.send_timeout = Duration::from_millis(200);
    c.max_backoff = Duration::from_millis(50);
    let (p, _) = start(c, &far).await;
    far.set_down(true);
    for i in 0..100 {
        p.emit(&tenant("acme"), draft(i));
        if i % 10 == 0 {
            // Let the pump run (and fail) between bursts.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    assert!(far.taken().is_empty());
    far.set_down(false);
    p.flush().await;
    p.emit(&tenant("acme"), draft(100));
    p.flush().await;
    let dropped = p
        .metrics()
        .dropped
        .with_label_values(&[DropReason::QueueFull.as_str()])
        .get();
    assert!(dropped > 0, "the queue overflowed");
    let seqs: Vec<i64> = far.taken().into_iter().map(|t| t.2).collect();
    let last = *seqs.last().unwrap();
    assert_eq!(
        last as usize,
        seqs.len() + dropped as usize,
        "every drop is a gap in producer_seq: {seqs:?}"
    );
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order: {seqs:?}");
    p.shutdown().await;
}

#[tokio::test]
async fn a_full_spool_drops_the_batch_and_the_loss_is_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    let far = FarEnd::up();
    let mut c = config(dir.path());
    c.spool_max_bytes = 4_000;
    let (p, _) = start(c, &far).await;
    far.set_down(true);
    for i in 0..200 {
        p.emit(&tenant("acme"), draft(i));
    }
    p.flush().await;
    let lost = p
        .metrics()
        .dropped
        .with_label_values(&[DropReason::SpoolFull.as_str()])
        .get();
    assert!(lost > 0);
    assert!(p.metrics().spool_bytes.get() <= 4_000);
    far.set_down(false);
    p.emit(&tenant("acme"), draft(999));
    far.wait_for((200 - lost as usize) + 1).await;
    let seqs: Vec<i64> = far.taken().into_iter().map(|t| t.2).collect();
    assert_eq!(*seqs.last().unwrap(), 201);
    assert_eq!(
        seqs.len() as u64 + lost,
        201,
        "the dropped seqs are missing"
    );
    p.shutdown().await;
}

#[tokio::test]
async fn emit_durable_returns_once_the_event_is_on_disk_or_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let far = FarEnd::up();
    let (p, _) = start(config(dir.path()), &far).await;
    p.emit_durable(&tenant("acme"), draft(1)).await.unwrap();
    assert_eq!(far.taken().len(), 1, "delivered before the answer");
    far.set_down(true);
    p.emit_durable(&tenant("acme"), draft(2)).await.unwrap();
    assert_eq!(p.metrics().spooled.get(), 1, "spooled before the answer");
    p.shutdown().await;
}

#[tokio::test]
async fn an_invalid_event_is_refused_counted_and_leaves_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    let far = FarEnd::up();
    let (p, _) = start(config(dir.path()), &far).await;
    let bad = EventBuilder::new(
        "Not An Action",
        Actor::new(ActorType::User, "u-1"),
        Resource::new("order", "o"),
        Outcome::Success,
    );
    let err = p.emit_durable(&tenant("acme"), bad).await.unwrap_err();
    assert!(matches!(err, ProducerError::Invalid(_)), "{err}");
    let huge = draft(1).field("blob", "x".repeat(70 * 1024));
    assert!(p.emit_durable(&tenant("acme"), huge).await.is_err());
    p.emit_durable(&tenant("acme"), draft(2)).await.unwrap();
    assert_eq!(
        p.metrics()
            .dropped
            .with_label_values(&[DropReason::Invalid.as_str()])
            .get(),
        2
    );
    assert_eq!(far.taken()[0].2, 3, "the two lost events are a gap of two");
    p.shutdown().await;
}

#[tokio::test]
async fn shutdown_delivers_what_is_queued_or_spools_it() {
    let dir = tempfile::tempdir().unwrap();
    let far = FarEnd::up();
    let (p, _) = start(config(dir.path()), &far).await;
    for i in 0..50 {
        p.emit(&tenant("acme"), draft(i));
    }
    p.shutdown().await;
    assert_eq!(far.taken().len(), 50, "delivered on shutdown");
    p.emit(&tenant("acme"), draft(51));
    assert_eq!(
        p.metrics()
            .dropped
            .with_label_values(&[DropReason::Shutdown.as_str()])
            .get(),
        1,
        "an emit after shutdown is counted, not silently lost"
    );

    let dir = tempfile::tempdir().unwrap();
    let far = FarEnd::up();
    far.set_down(true);
    let (p, _) = start(config(dir.path()), &far).await;
    for i in 0..50 {
        p.emit(&tenant("acme"), draft(i));
    }
    p.shutdown().await;
    assert_eq!(p.metrics().spooled.get(), 50, "spooled on shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_emitters_lose_nothing_and_keep_each_tenant_gapless() {
    let dir = tempfile::tempdir().unwrap();
    let far = FarEnd::up();
    let mut c = config(dir.path());
    // Room for everything (half in the queue, half overflowing): this is about concurrency,
    // not capacity.
    c.queue_capacity = 4096;
    let (p, _) = start(c, &far).await;
    let mut tasks = Vec::new();
    for w in 0..16 {
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..500 {
                p.emit(&tenant(&format!("t{}", w % 4)), draft(w * 1000 + i));
                if i % 50 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    p.flush().await;
    assert_eq!(far.taken().len(), 8000);
    assert_eq!(p.metrics().queue_depth.get(), 0);
    for (_, seqs) in seqs_by_tenant(&far.taken()) {
        assert_eq!(seqs, (1..=2000).collect::<Vec<_>>());
    }
    p.shutdown().await;
}
