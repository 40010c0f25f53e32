//! Verification without Vigil's code: a Python script using the `rfc8785` and `cryptography`
//! packages from PyPI recomputes every commitment and hash of records served over HTTP and
//! checks the latest checkpoint's signature.

use crate::common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_party_recomputes_every_hash_with_its_own_rfc8785_library() {
    let app = spawn_app_with(Engine::Sqlite, |s| s.checkpoint_every = 7).await;
    let mut tricky = event(1);
    tricky["payload"] = json!({
        "unicode": "ünïcødé \u{1F600} \u{2028}",
        "escapes": "quote\" backslash\\ tab\t nul\u{0} bell\u{7}",
        // Floats with integral values up to 2^53-1 (beyond is refused: one range for every
        // way a number is written), exponents both ways, shortest round-trip digits.
        "numbers": [0, -0.0, 1.5, 1e15, 4.5e15, 9007199254740991.0, 1e-7, 333333333.3333333, 9007199254740991i64, -1],
        "€uro": {"b": 1, "a": [true, false, null], "\u{10000}": 1, "\u{e000}": 2},
        "empty": {}
    });
    tricky["trace_id"] = json!("4bf92f3577b34da6a3ce929d0e0e4736");
    tricky["source"] = json!({"service": "payments", "producer_id": "p-1", "producer_seq": 42});
    let mut batch = vec![tricky];
    batch.extend(events(2, 9).as_array().unwrap().iter().cloned());
    assert_eq!(app.post_events("acme", &json!(batch)).await.status(), 200);
    for _ in 0..100 {
        if app.get("acme", "/v1/checkpoints/latest").await.status() == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (code, text) = independent_verify(app.addr, "acme", &[]);
    assert_eq!(code, Some(0), "independent verification failed:\n{text}");
    assert!(text.contains("10 records verified"), "{text}");
    // One group commit of 10 crosses the every-7 threshold once: the checkpoint covers all 10.
    assert!(text.contains("checkpoint at 10 verified"), "{text}");
}
