//! The audit pipeline end to end, against a real Kafka-protocol broker (tansu, which
//! `./scripts/test.sh` installs; never skipped): a service emitting through the producer, the
//! broker, the audit service consuming into a real store — and the faults the pipeline exists
//! for: the broker unreachable for a minute, the consumer and the emitting service killed with
//! SIGKILL, two consumers rebalancing, poison messages, backfills run twice.
//!
//! "Acknowledged" is what the example service answered 201 with an `X-Audit-Event-Id` for: it
//! answers only once the event is delivered or on disk in its spool. Every such event must end
//! up stored exactly once, in chains that verify.

use crate::common::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use reqwest::Client;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tempfile::TempDir;
use vigil_producer::kafka::{producer_config, DLQ_TOPIC, TOPIC};

// ----- a broker of the test's own -----

fn tansu() -> PathBuf {
    if let Some(p) = std::env::var_os("VIGIL_TEST_TANSU") {
        return p.into();
    }
    let default = PathBuf::from(std::env::var("HOME").unwrap_or_default())
        .join(".cache/vigil-tools/bin/tansu");
    assert!(
        default.exists(),
        "the pipeline tests need the tansu Kafka broker: run ./scripts/test.sh (which installs it) \
         or set VIGIL_TEST_TANSU to its path"
    );
    default
}

/// A Kafka-protocol broker on loopback, reached only through a TCP proxy the test can cut:
/// while cut, every connection to the broker is refused or reset — what producers and consumers
/// see of a stopped broker. The broker process itself is not restarted, and keeps its data in
/// memory: tansu 0.6's SQLite engine panics ("more or less than one row", in
/// `idempotent_message_check`) on the first produce of an idempotent producer whose earlier
/// messages timed out — after any outage, restart or not — and then refuses everything; its
/// memory engine answers such a produce with OutOfOrderSequenceNumber, as Kafka does.
struct Broker {
    proxy: Proxy,
    _dir: TempDir,
    child: Child,
}

impl Broker {
    async fn start() -> Broker {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let proxy = Proxy::start(format!("127.0.0.1:{port}").parse().unwrap()).await;
        let listen = format!("tcp://127.0.0.1:{port}");
        let advertised = format!("tcp://127.0.0.1:{}", proxy.port);
        let log = std::env::var_os("TEST_LOG").is_some();
        let mut child = Command::new(tansu())
            .args(["broker", "--listener-url", &listen])
            .args(["--advertised-listener-url", &advertised])
            .args(["--storage-engine", "memory://tansu/"])
            .current_dir(dir.path())
            .stdout(if log { Stdio::inherit() } else { Stdio::null() })
            .stderr(if log { Stdio::inherit() } else { Stdio::null() })
            .spawn()
            .expect("starting tansu");
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Broker {
                    proxy,
                    _dir: dir,
                    child,
                };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the broker did not listen on {port}");
    }

    fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.proxy.port)
    }

    /// The broker becomes unreachable.
    async fn cut(&self) {
        self.proxy.cut().await;
    }

    /// Reachable again.
    async fn restore(&self) {
        self.proxy.resume().await;
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ----- processes -----

/// How long a silent consumer stays in the group (Kafka's smallest allowed by default).
const SESSION_TIMEOUT: Duration = Duration::from_secs(6);

/// `vigil audit serve` consuming from `broker` into `db`.
fn consumer(db: &str, data: &Path, port: u16, bootstrap: &str, extra: &[&str]) -> Server {
    let mut args = vec![
        "--kafka-bootstrap",
        bootstrap,
        "--kafka-session-timeout-ms",
        "6000",
    ];
    args.extend_from_slice(extra);
    spawn_binary_with(db, data, port, &args)
}

/// `vigil example-service` sending to `target` (`--kafka-bootstrap B` or `--audit-url U`).
fn example_service(port: u16, spool: &Path, target: [&str; 2]) -> Server {
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let args: Vec<String> = [
        "example-service",
        "--listen",
        &addr.to_string(),
        "--spool-dir",
        &spool.display().to_string(),
        "--send-timeout-ms",
        "1000",
        target[0],
        target[1],
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    spawn_vigil(&args, addr)
}

// ----- load -----

/// Orders posted at a steady rate, round-robin over tenants, and what was acknowledged.
struct Load {
    acked: Arc<Mutex<Vec<(String, String)>>>,
    /// Requests that got no 201: a service killed mid-request may have stored their events.
    unanswered: Arc<std::sync::atomic::AtomicUsize>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    fn start(base: String, tenants: &[&str], per_sec: u64) -> Load {
        let tenants: Vec<String> = tenants.iter().map(|t| t.to_string()).collect();
        let acked = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let unanswered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (a, s, u) = (acked.clone(), stop.clone(), unanswered.clone());
        let task = tokio::spawn(async move {
            let http = Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap();
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / per_sec));
            let mut inflight = tokio::task::JoinSet::new();
            let mut i = 0usize;
            while !s.load(Ordering::SeqCst) {
                tick.tick().await;
                let tenant = tenants[i % tenants.len()].clone();
                i += 1;
                let (http, base, a, u) = (http.clone(), base.clone(), a.clone(), u.clone());
                inflight.spawn(async move {
                    let r = http
                        .post(format!("{base}/v1/orders"))
                        .header("X-Tenant-ID", &tenant)
                        .header("X-User-ID", "clerk-1")
                        .json(&json!({"item": "tea", "qty": 1}))
                        .send()
                        .await;
                    match r.ok().filter(|r| r.status() == 201) {
                        Some(r) => {
                            if let Some(id) = r.headers().get("x-audit-event-id") {
                                a.lock()
                                    .unwrap()
                                    .push((tenant, id.to_str().unwrap().to_owned()));
                            }
                        }
                        None => {
                            u.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                });
                while inflight.try_join_next().is_some() {}
            }
            while inflight.join_next().await.is_some() {}
        });
        Load {
            acked,
            unanswered,
            stop,
            task,
        }
    }

    async fn finish(self) -> Vec<(String, String)> {
        self.finish_counting().await.0
    }

    /// What was acknowledged, and how many requests got no 201.
    async fn finish_counting(self) -> (Vec<(String, String)>, usize) {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap();
        let acked = self.acked.lock().unwrap().clone();
        (acked, self.unanswered.load(Ordering::SeqCst))
    }
}

/// Every stored (tenant, event id), read back from the store.
async fn stored(db: &str) -> Vec<(String, String)> {
    let store = vigil_store::open(db).await.unwrap();
    let mut out = Vec::new();
    for t in store.tenants().await.unwrap() {
        let mut after = 0;
        loop {
            let page = store.scan(&t, after, 1000).await.unwrap();
            if page.is_empty() {
                break;
            }
            after = page.last().unwrap().seq;
            out.extend(page.into_iter().map(|r| (t.to_string(), r.event_id)));
        }
    }
    out
}

/// Waits until every acknowledged event is stored, then checks each is stored exactly once,
/// nothing else is, and the chains verify.
async fn assert_stored_exactly_once(db: &str, acked: &[(String, String)], within: Duration) {
    assert_acked_stored_once(db, acked, 0, within).await
}

/// As [`assert_stored_exactly_once`], but up to `unanswered` events stored without an
/// acknowledgement are allowed: a service killed between making an event durable and
/// answering its request (the client saw no 201, so it cannot know the event's id).
async fn assert_acked_stored_once(
    db: &str,
    acked: &[(String, String)],
    unanswered: usize,
    within: Duration,
) {
    let want: BTreeSet<(String, String)> = acked.iter().cloned().collect();
    assert_eq!(
        want.len(),
        acked.len(),
        "the service acknowledged an id twice"
    );
    let started = Instant::now();
    let mut got = Vec::new();
    while started.elapsed() < within {
        got = stored(db).await;
        let have: BTreeSet<_> = got.iter().cloned().collect();
        if want.is_subset(&have) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let have: BTreeSet<_> = got.iter().cloned().collect();
    let missing: Vec<_> = want.difference(&have).take(5).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged events never stored, e.g. {missing:?}",
        want.difference(&have).count(),
        want.len()
    );
    assert_eq!(got.len(), have.len(), "an event is stored twice");
    let extra: Vec<_> = have.difference(&want).collect();
    assert!(
        extra.len() <= unanswered,
        "stored but never acknowledged ({} requests went unanswered): {:?}",
        unanswered,
        &extra[..extra.len().min(5)]
    );
    let (code, out) = run_verify(db, &[]);
    assert_eq!(code, 0, "{out}");
}

async fn metric_of(base: &str, name: &str) -> f64 {
    let text = Client::new()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .map(|r| r.text())
        .ok();
    match text {
        Some(t) => metric_value(&t.await.unwrap_or_default(), name),
        None => f64::NAN,
    }
}

fn url(s: &Server) -> String {
    format!("http://{}", s.addr)
}

// ----- raw Kafka, for poison -----

async fn publish(bootstrap: &str, key: Option<&str>, payload: &[u8]) {
    let p: FutureProducer = producer_config(bootstrap, Duration::from_secs(10))
        .create()
        .unwrap();
    let mut r: FutureRecord<'_, str, [u8]> = FutureRecord::to(TOPIC).payload(payload);
    if let Some(k) = key {
        r = r.key(k);
    }
    p.send(r, Duration::from_secs(10)).await.unwrap();
}

/// The dead-letter topic's messages: (reason, original partition/offset header present,
/// payload).
fn dead_letters(bootstrap: &str, n: usize) -> Vec<(String, bool, Vec<u8>)> {
    let c: BaseConsumer = vigil_producer::kafka::client_config(bootstrap)
        .set("group.id", format!("t-{}", uuid::Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(DLQ_TOPIC, 0, Offset::Beginning)
        .unwrap();
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while out.len() < n && Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(500)) {
            let h = m.headers().unwrap();
            let get = |k: &str| {
                h.iter()
                    .find(|x| x.key == k)
                    .and_then(|x| x.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            };
            let coordinates = get("vigil.dlq.original_topic").as_deref() == Some(TOPIC)
                && get("vigil.dlq.original_partition").is_some()
                && get("vigil.dlq.original_offset").is_some();
            out.push((
                get("vigil.dlq.reason").unwrap_or_default(),
                coordinates,
                m.payload().unwrap_or_default().to_vec(),
            ));
        }
    }
    out
}

fn run_vigil(args: &[&str]) -> (i32, String) {
    let out = Command::new(vigil_bin()).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

async fn head_of(db: &str, tenant: &str) -> i64 {
    let store = vigil_store::open(db).await.unwrap();
    store
        .head(&vigil_core::ids::TenantId::parse(tenant).unwrap())
        .await
        .unwrap()
        .seq
}

async fn wait_head(db: &str, tenant: &str, n: i64) {
    for _ in 0..240 {
        if head_of(db, tenant).await >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!(
        "{tenant} never reached {n} events (has {})",
        head_of(db, tenant).await
    );
}

// ----- the tests -----

/// Poison of every kind goes to the dead-letter topic with its reason and coordinates, and
/// the partition moves on past it; after the cause is fixed, `vigil replay --from-dlq` stores
/// what can be stored now, once however often it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_is_dead_lettered_and_replay_after_a_fix_stores_the_valid_once() {
    let broker = Broker::start().await;
    let b = broker.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let db = vigil_store::testing::sqlite_url(dir.path());
    let data = dir.path().join("data");
    // An operator set the limit too low: larger events are dead-lettered as too_large.
    let mut svc = consumer(
        &db,
        &data,
        free_port(),
        &b,
        &["--kafka-max-event-bytes", "2048"],
    );
    svc.wait_ready().await;

    let mut big = event(1);
    big["payload"] = json!({"notes": "x".repeat(4000)});
    let mut invalid = event(2);
    invalid["severity"] = json!("loud");
    publish(&b, Some("acme"), event(0).to_string().as_bytes()).await;
    publish(&b, Some("acme"), b"\x00\xffnot json at all").await;
    publish(&b, Some("acme"), invalid.to_string().as_bytes()).await;
    publish(&b, None, event(3).to_string().as_bytes()).await;
    publish(&b, Some("acme"), big.to_string().as_bytes()).await;
    publish(&b, Some("acme"), event(4).to_string().as_bytes()).await;
    wait_head(&db, "acme", 2).await;
    let letters = dead_letters(&b, 4);
    let reasons: BTreeSet<&str> = letters.iter().map(|l| l.0.as_str()).collect();
    assert_eq!(
        reasons,
        BTreeSet::from(["invalid_event", "no_tenant", "not_json", "too_large"]),
        "{letters:?}"
    );
    assert!(
        letters.iter().all(|l| l.1),
        "every letter names where it came from"
    );
    assert_eq!(metric_of(&url(&svc), "audit_dlq_total").await, 4.0);

    // The fix: the default limit again. Then replay, twice, and once more from the start.
    svc.terminate();
    let mut svc = consumer(&db, &data, free_port(), &b, &[]);
    svc.wait_ready().await;
    for _ in 0..2 {
        let (code, out) = run_vigil(&["replay", "--from-dlq", "--kafka-bootstrap", &b]);
        assert_eq!(code, 0, "{out}");
    }
    wait_head(&db, "acme", 3).await;
    let (code, out) = run_vigil(&[
        "replay",
        "--from-dlq",
        "--kafka-bootstrap",
        &b,
        "--group",
        "from-the-start",
    ]);
    assert_eq!(code, 0, "{out}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        head_of(&db, "acme").await,
        3,
        "the replayed event is stored once"
    );
    assert!(
        metric_of(&url(&svc), "audit_dlq_total").await >= 3.0,
        "the rest bounced again"
    );
    let (code, out) = run_verify(&db, &[]);
    assert_eq!(code, 0, "{out}");
}

/// The broker away for a minute while a service emits at a steady rate: its spool grows, then
/// drains when the broker is back, and every acknowledged event is stored exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_of_a_minute_loses_nothing_and_the_spool_drains() {
    let outage = Duration::from_secs(
        std::env::var("VIGIL_TEST_OUTAGE_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60),
    );
    let broker = Broker::start().await;
    let b = broker.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_db(Engine::Postgres, dir.path()).await;
    let mut audit = consumer(&db, &dir.path().join("data"), free_port(), &b, &[]);
    audit.wait_ready().await;
    let mut svc = example_service(
        free_port(),
        &dir.path().join("spool"),
        ["--kafka-bootstrap", &b],
    );
    svc.wait_for("/healthz").await;
    let load = Load::start(url(&svc), &["acme", "globex", "initech"], 40);
    tokio::time::sleep(Duration::from_secs(5)).await;

    broker.cut().await;
    let mut spool_peak = 0.0f64;
    let until = Instant::now() + outage;
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_secs(1)).await;
        spool_peak = spool_peak.max(metric_of(&url(&svc), "audit_producer_spool_bytes").await);
    }
    assert!(spool_peak > 0.0, "the spool grew while the broker was away");
    assert!(metric_of(&url(&svc), "audit_producer_send_errors_total").await > 0.0);
    broker.restore().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let acked = load.finish().await;
    assert!(acked.len() > 100, "only {} acknowledged", acked.len());
    assert_stored_exactly_once(&db, &acked, Duration::from_secs(120)).await;
    assert_eq!(
        metric_of(&url(&svc), "audit_producer_spool_bytes").await,
        0.0,
        "the spool drained"
    );
    assert_eq!(
        metric_of(&url(&svc), "audit_producer_dropped_total").await,
        0.0
    );
}

/// The consuming audit service killed with SIGKILL again and again mid-stream: redelivery
/// stores nothing twice and loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumer_killed_mid_stream_loses_and_duplicates_nothing() {
    let broker = Broker::start().await;
    let b = broker.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_db(Engine::Postgres, dir.path()).await;
    let data = dir.path().join("data");
    let port = free_port();
    let mut audit = consumer(&db, &data, port, &b, &[]);
    audit.wait_ready().await;
    let mut svc = example_service(
        free_port(),
        &dir.path().join("spool"),
        ["--kafka-bootstrap", &b],
    );
    svc.wait_for("/healthz").await;
    let load = Load::start(url(&svc), &["acme", "globex"], 60);
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(2500)).await;
        audit.kill9();
        // Its partitions move once its session has expired (tansu, unlike Kafka, does not hand
        // them to a member that joins before that): a crashed instance restarting after a while.
        tokio::time::sleep(SESSION_TIMEOUT + Duration::from_secs(1)).await;
        audit = consumer(&db, &data, port, &b, &[]);
        audit.wait_ready().await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let acked = load.finish().await;
    assert!(acked.len() > 100, "only {} acknowledged", acked.len());
    assert_stored_exactly_once(&db, &acked, Duration::from_secs(120)).await;
}

/// The emitting service killed with SIGKILL while its spool holds what the broker did not
/// take: restarted, it drains the spool, and nothing it acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emitting_service_killed_with_a_full_spool_drains_it_after_a_restart() {
    let broker = Broker::start().await;
    let b = broker.bootstrap();
    broker.cut().await;
    let dir = tempfile::tempdir().unwrap();
    let db = vigil_store::testing::sqlite_url(dir.path());
    let spool = dir.path().join("spool");
    let port = free_port();
    let mut svc = example_service(port, &spool, ["--kafka-bootstrap", &b]);
    svc.wait_for("/healthz").await;
    let load = Load::start(url(&svc), &["acme"], 50);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let spooled = metric_of(&url(&svc), "audit_producer_spool_bytes").await;
    svc.kill9();
    let (acked, unanswered) = load.finish_counting().await;
    assert!(
        spooled > 0.0 && acked.len() > 50,
        "{spooled} bytes, {} acked",
        acked.len()
    );

    broker.restore().await;
    let mut audit = consumer(&db, &dir.path().join("data"), free_port(), &b, &[]);
    audit.wait_ready().await;
    let mut svc = example_service(port, &spool, ["--kafka-bootstrap", &b]);
    svc.wait_for("/healthz").await;
    assert_acked_stored_once(&db, &acked, unanswered, Duration::from_secs(60)).await;
    assert_eq!(
        metric_of(&url(&svc), "audit_producer_spool_bytes").await,
        0.0
    );
}

/// Over HTTP: the audit service itself killed and restarted while a service emits; the
/// producer spools meanwhile and nothing acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audit_service_outage_over_http_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_db(Engine::Postgres, dir.path()).await;
    let data = dir.path().join("data");
    let port = free_port();
    let mut audit = spawn_binary(&db, &data, port);
    audit.wait_ready().await;
    let audit_url = format!("http://127.0.0.1:{port}");
    let mut svc = example_service(
        free_port(),
        &dir.path().join("spool"),
        ["--audit-url", &audit_url],
    );
    svc.wait_for("/healthz").await;
    let load = Load::start(url(&svc), &["acme", "globex"], 40);
    tokio::time::sleep(Duration::from_secs(2)).await;
    audit.kill9();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let peak = metric_of(&url(&svc), "audit_producer_spool_bytes").await;
    audit = spawn_binary(&db, &data, port);
    audit.wait_ready().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let acked = load.finish().await;
    assert!(
        peak > 0.0,
        "the spool grew while the audit service was away"
    );
    assert_stored_exactly_once(&db, &acked, Duration::from_secs(60)).await;
}

/// Two audit services in one consumer group on one Postgres; the second joins mid-stream and
/// the first leaves: partitions move twice, chains stay gapless and every event is stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumers_rebalancing_keep_every_chain_gapless() {
    let broker = Broker::start().await;
    let b = broker.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_db(Engine::Postgres, dir.path()).await;
    let mut first = consumer(&db, &dir.path().join("a"), free_port(), &b, &[]);
    first.wait_ready().await;
    let mut svc = example_service(
        free_port(),
        &dir.path().join("spool"),
        ["--kafka-bootstrap", &b],
    );
    svc.wait_for("/healthz").await;
    let tenants = ["t0", "t1", "t2", "t3", "t4", "t5"];
    let load = Load::start(url(&svc), &tenants, 60);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut second = consumer(&db, &dir.path().join("b"), free_port(), &b, &[]);
    second.wait_ready().await;
    // Both own partitions once the group has settled.
    let mut shared = false;
    for _ in 0..60 {
        let a: Value = Client::new()
            .get(format!("{}/readyz", url(&first)))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let s: Value = Client::new()
            .get(format!("{}/readyz", url(&second)))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let owned = |v: &Value| v["kafka"]["assigned"].as_array().map_or(0, Vec::len);
        if owned(&a) > 0 && owned(&s) > 0 {
            shared = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(shared, "the second instance never got partitions");
    tokio::time::sleep(Duration::from_secs(3)).await;
    first.terminate();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let acked = load.finish().await;
    let per_tenant: BTreeMap<&str, usize> = acked.iter().fold(BTreeMap::new(), |mut m, (t, _)| {
        *m.entry(t.as_str()).or_default() += 1;
        m
    });
    assert_eq!(per_tenant.len(), tenants.len());
    assert_stored_exactly_once(&db, &acked, Duration::from_secs(120)).await;
}

fn ndjson(dir: &Path, n: u64) -> PathBuf {
    let path = dir.join("history.ndjson");
    let mut text = String::new();
    for i in 0..n {
        let mut e = event(i);
        if i % 2 == 0 {
            // Half without an id: it is derived from the content, the same on every run.
            e.as_object_mut().unwrap().remove("event_id");
        }
        e["occurred_at"] = json!(format!("2025-01-01T00:{:02}:{:02}Z", (i / 60) % 60, i % 60));
        text.push_str(&e.to_string());
        text.push('\n');
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// The same file backfilled twice — straight into the store, and through Kafka — stores each
/// event once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_backfilled_twice_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = ndjson(dir.path(), 1500);
    let file = file.to_str().unwrap();
    let db = vigil_store::testing::sqlite_url(dir.path());
    let data = dir.path().join("data").display().to_string();
    for _ in 0..2 {
        let (code, out) = run_vigil(&[
            "backfill",
            file,
            "--tenant",
            "acme",
            "--database-url",
            &db,
            "--data-dir",
            &data,
        ]);
        assert_eq!(code, 0, "{out}");
    }
    assert_eq!(head_of(&db, "acme").await, 1500);
    let (code, out) = run_verify(&db, &[]);
    assert_eq!(code, 0, "{out}");

    let broker = Broker::start().await;
    let b = broker.bootstrap();
    let mut audit = consumer(&db, &dir.path().join("data"), free_port(), &b, &[]);
    audit.wait_ready().await;
    for _ in 0..2 {
        let (code, out) = run_vigil(&[
            "backfill",
            file,
            "--tenant",
            "globex",
            "--kafka-bootstrap",
            &b,
        ]);
        assert_eq!(code, 0, "{out}");
    }
    wait_head(&db, "globex", 1500).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        head_of(&db, "globex").await,
        1500,
        "the second run stored nothing"
    );
}

/// A backfill killed halfway and run again completes without a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_backfill_run_again_stores_no_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let file = ndjson(dir.path(), 20_000);
    let db = vigil_store::testing::sqlite_url(dir.path());
    let data = dir.path().join("data");
    let args = |c: &mut Command| {
        c.arg("backfill")
            .arg(&file)
            .args(["--tenant", "acme", "--database-url", &db, "--batch", "200"])
            .arg("--data-dir")
            .arg(&data);
    };
    let mut first = Command::new(vigil_bin());
    args(&mut first);
    let mut child = first
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stored_before = 0;
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        stored_before = head_of(&db, "acme").await;
        if stored_before > 1000 {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        stored_before > 0 && stored_before < 20_000,
        "killed halfway: {stored_before}"
    );
    let mut again = Command::new(vigil_bin());
    args(&mut again);
    let out = again.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(head_of(&db, "acme").await, 20_000);
    let (code, out) = run_verify(&db, &[]);
    assert_eq!(code, 0, "{out}");
}
