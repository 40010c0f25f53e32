//! Chaos under real limits: the audit service (the real binary) in a cgroup that throttles its
//! CPU to a tenth of a core, and in one that caps what more memory it may take to 96 MiB,
//! while clients resend refused batches as the producer does. What must hold: every answer is
//! 200 or a documented refusal (503, or the connection lost if the kernel kills the process);
//! no acknowledged event is lost; every chain verifies — after a restart when the process was
//! killed. (Network partitions between service and store: `store_outage.rs` and
//! `vigil drill store-outage`.)

use super::common::*;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A cgroup (v1) of one controller, removed on drop. Creating one needs root: the test fails
/// loudly without it rather than skipping.
struct Cgroup {
    dir: PathBuf,
}

impl Cgroup {
    fn new(controller: &str, settings: &[(&str, String)]) -> Cgroup {
        let dir = PathBuf::from(format!(
            "/sys/fs/cgroup/{controller}/vigil-chaos-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir(&dir).unwrap_or_else(|e| {
            panic!(
                "creating the cgroup {} ({e}): the chaos tests need a writable cgroup v1 \
                 hierarchy (root)",
                dir.display()
            )
        });
        for (file, value) in settings {
            std::fs::write(dir.join(file), value)
                .unwrap_or_else(|e| panic!("setting {file} = {value}: {e}"));
        }
        Cgroup { dir }
    }

    fn add(&self, pid: u32) {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string()).unwrap();
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // Whatever is left goes back to the root before the group is removed.
        let root = self.dir.parent().unwrap().join("cgroup.procs");
        if let Ok(pids) = std::fs::read_to_string(self.dir.join("cgroup.procs")) {
            for pid in pids.lines() {
                let _ = std::fs::write(&root, pid);
            }
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

#[derive(Default)]
struct Seen {
    acked: Mutex<Vec<String>>,
    refused_503: AtomicU64,
    lost_connection: AtomicU64,
    unexpected: Mutex<Vec<u16>>,
    slowest_ms: AtomicU64,
}

/// `clients` clients each sending `batches` batches of `size` events, resending a refused batch
/// (same event ids) until acknowledged or `deadline`.
async fn load(
    addr: std::net::SocketAddr,
    clients: usize,
    batches: usize,
    size: u64,
    deadline: Instant,
) -> Arc<Seen> {
    let seen = Arc::new(Seen::default());
    let http = reqwest::Client::new();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (seen, http) = (seen.clone(), http.clone());
            tokio::spawn(async move {
                for b in 0..batches {
                    let batch = events(((c * batches + b) as u64) * size, size);
                    while Instant::now() < deadline {
                        let started = Instant::now();
                        let r = http
                            .post(format!("http://{addr}/v1/events"))
                            .header("X-Tenant-ID", "acme")
                            .header("X-Roles", "admin")
                            .timeout(Duration::from_secs(30))
                            .json(&batch)
                            .send()
                            .await;
                        seen.slowest_ms
                            .fetch_max(started.elapsed().as_millis() as u64, Ordering::Relaxed);
                        match r {
                            Ok(r) if r.status() == 200 => {
                                let body: Value = r.json().await.unwrap();
                                let ids = body["results"]
                                    .as_array()
                                    .unwrap()
                                    .iter()
                                    .map(|x| x["event_id"].as_str().unwrap().to_string());
                                seen.acked.lock().unwrap().extend(ids);
                                break;
                            }
                            Ok(r) if r.status() == 503 => {
                                seen.refused_503.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(r) => {
                                seen.unexpected.lock().unwrap().push(r.status().as_u16());
                                break;
                            }
                            Err(_) => {
                                seen.lost_connection.fetch_add(1, Ordering::Relaxed);
                                return;
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    seen
}

async fn acked_are_stored(db: &str, seen: &Seen) {
    let acked = seen.acked.lock().unwrap().clone();
    assert!(!acked.is_empty());
    let ids = acked
        .iter()
        .map(|i| format!("'{i}'"))
        .collect::<Vec<_>>()
        .join(",");
    let stored = count_sql(
        Engine::Sqlite,
        db,
        &format!("SELECT COUNT(*) FROM events WHERE event_id IN ({ids})"),
    )
    .await;
    assert_eq!(
        stored as usize,
        acked.len(),
        "acknowledged events are missing"
    );
    let (code, out) = run_verify(db, &[]);
    assert_eq!(code, 0, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_throttled_to_a_tenth_of_a_core_answers_slowly_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = vigil_store::testing::sqlite_url(dir.path());
    let port = free_port();
    let mut server = spawn_binary(&db, &dir.path().join("data"), port);
    server.wait_ready().await;
    let cpu = Cgroup::new(
        "cpu",
        &[
            ("cpu.cfs_period_us", "100000".into()),
            ("cpu.cfs_quota_us", "10000".into()),
        ],
    );
    cpu.add(server.child.id());
    let seen = load(
        server.addr,
        4,
        10,
        50,
        Instant::now() + Duration::from_secs(120),
    )
    .await;
    let stat = std::fs::read_to_string(cpu.dir.join("cpu.stat")).unwrap();
    let throttled: u64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("nr_throttled "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(throttled > 0, "the quota never bit: {stat}");
    assert!(
        seen.unexpected.lock().unwrap().is_empty(),
        "{:?}",
        seen.unexpected.lock().unwrap()
    );
    assert_eq!(seen.lost_connection.load(Ordering::Relaxed), 0);
    assert_eq!(seen.acked.lock().unwrap().len(), 4 * 10 * 50);
    eprintln!(
        "throttled {throttled} times; slowest answer {} ms",
        seen.slowest_ms.load(Ordering::Relaxed)
    );
    server.terminate();
    acked_are_stored(&db, &seen).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_under_a_tight_memory_cap_serves_or_dies_without_losing_what_it_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let db = vigil_store::testing::sqlite_url(dir.path());
    let port = free_port();
    let mut server = spawn_binary(&db, &dir.path().join("data"), port);
    server.wait_ready().await;
    let pid = server.child.id();
    // Pages it holds already stay charged where they are (this kernel does not move charges),
    // so the cap is on what it allocates from now on: 96 MiB, which batches of 1,000 events
    // (~600 KB each, eight at a time) reach.
    let cap: u64 = 96 * 1024 * 1024;
    let mem = Cgroup::new("memory", &[("memory.limit_in_bytes", cap.to_string())]);
    mem.add(pid);
    let seen = load(
        server.addr,
        8,
        6,
        1000,
        Instant::now() + Duration::from_secs(120),
    )
    .await;
    assert!(
        seen.unexpected.lock().unwrap().is_empty(),
        "{:?}",
        seen.unexpected.lock().unwrap()
    );
    let failcnt: u64 = std::fs::read_to_string(mem.dir.join("memory.failcnt"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let died = server.child.try_wait().unwrap().is_some();
    eprintln!(
        "cap {} MiB, the cap was hit {failcnt} times, the process {}; {} batches acknowledged",
        cap >> 20,
        if died { "was killed" } else { "kept serving" },
        seen.acked.lock().unwrap().len() / 1000
    );
    if !died {
        assert_eq!(seen.lost_connection.load(Ordering::Relaxed), 0);
        assert_eq!(seen.acked.lock().unwrap().len(), 8 * 6 * 1000);
        server.terminate();
    }
    drop(mem);
    // Killed or not, what it acknowledged is there, and after a restart it carries on.
    let mut again = spawn_binary(&db, &dir.path().join("data"), free_port());
    again.wait_ready().await;
    again.terminate();
    acked_are_stored(&db, &seen).await;
}
