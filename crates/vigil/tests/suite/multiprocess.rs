//! Two `vigil audit serve` processes on one Postgres, one tenant: no seq twice, no fork.

use crate::common::*;
use serde_json::Value;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_postgres_never_fork_a_chain() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_db(Engine::Postgres, dir.path()).await;
    let mut a = spawn_binary(&db, &dir.path().join("a"), free_port());
    let mut b = spawn_binary(&db, &dir.path().join("b"), free_port());
    a.wait_ready().await;
    b.wait_ready().await;
    let urls = [
        format!("http://{}/v1/events", a.addr),
        format!("http://{}/v1/events", b.addr),
    ];
    let mut tasks = vec![];
    for c in 0..8u64 {
        let urls = urls.clone();
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap();
            let mut seqs = vec![];
            for n in 0..15u64 {
                let url = &urls[((c + n) % 2) as usize];
                let r = client
                    .post(url)
                    .header("X-Tenant-ID", "shared")
                    .header("X-Roles", "service")
                    .json(&events(c * 1000 + n * 10, 10))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                let body: Value = r.json().await.unwrap();
                seqs.extend(
                    body["results"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|r| r["seq"].as_i64().unwrap()),
                );
            }
            seqs
        }));
    }
    let mut seqs = vec![];
    for t in tasks {
        seqs.extend(t.await.unwrap());
    }
    seqs.sort();
    assert_eq!(
        seqs,
        (1..=1200).collect::<Vec<_>>(),
        "each seq acknowledged exactly once"
    );
    a.terminate();
    b.terminate();
    let (code, out) = run_verify(&db, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("shared: intact, 1200 records"), "{out}");
}
