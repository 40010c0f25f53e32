//! SIGKILL during ingest: every acknowledged event is there exactly once afterwards, and the
//! chain verifies.

use crate::common::*;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

async fn every_acknowledged_event_survives_sigkill_exactly_once(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_db(engine, dir.path()).await;
    let data = dir.path().join("data");
    let port = free_port();
    let mut server = spawn_binary(&db, &data, port);
    server.wait_ready().await;

    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = vec![];
    for c in 0..3u64 {
        let (acked, stop) = (Arc::clone(&acked), Arc::clone(&stop));
        let url = format!("http://127.0.0.1:{port}/v1/events");
        clients.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // The same batch is re-sent until acknowledged: a retry after an unknown outcome
                // must not store anything twice.
                let batch = events(c * 1_000_000 + n * 10, 10);
                loop {
                    match client
                        .post(&url)
                        .header("X-Tenant-ID", "crash")
                        .header("X-Roles", "service")
                        .json(&batch)
                        .send()
                        .await
                    {
                        Ok(r) if r.status() == 200 => {
                            let body: Value = r.json().await.unwrap();
                            let mut a = acked.lock().await;
                            for r in body["results"].as_array().unwrap() {
                                assert!(
                                    matches!(r["status"].as_str(), Some("stored" | "duplicate")),
                                    "{r}"
                                );
                                a.push(r["event_id"].as_str().unwrap().to_owned());
                            }
                            break;
                        }
                        _ => {
                            if stop.load(Ordering::Relaxed) {
                                return;
                            }
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
                n += 1;
            }
        }));
    }
    for round in 0..5u64 {
        tokio::time::sleep(Duration::from_millis(250 + 97 * round)).await;
        server.kill9();
        server = spawn_binary(&db, &data, port);
        server.wait_ready().await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    server.kill9();

    let acked = acked.lock().await.clone();
    assert!(
        acked.len() >= 100,
        "only {} events acknowledged: the test did not exercise ingest",
        acked.len()
    );
    let store = vigil_store::open(&db).await.unwrap();
    let all = store
        .scan(
            &vigil_core::ids::TenantId::parse("crash").unwrap(),
            0,
            1_000_000,
        )
        .await
        .unwrap();
    let mut copies: HashMap<&str, usize> = HashMap::new();
    for r in &all {
        *copies.entry(r.event_id.as_str()).or_default() += 1;
    }
    for id in &acked {
        assert_eq!(
            copies.get(id.as_str()).copied(),
            Some(1),
            "acknowledged event {id} is not present exactly once"
        );
    }
    assert!(copies.values().all(|&n| n == 1));
    let (code, out) = run_verify(&db, &[]);
    assert_eq!(code, 0, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_ingest_loses_no_acknowledged_event_on_sqlite() {
    every_acknowledged_event_survives_sigkill_exactly_once(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_ingest_loses_no_acknowledged_event_on_postgres() {
    every_acknowledged_event_survives_sigkill_exactly_once(Engine::Postgres).await;
}
