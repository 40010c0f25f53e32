//! Retries are duplicates, not errors: a client that resends after a lost acknowledgement (and
//! Kafka redelivery, which does so constantly) gets `duplicate` with the original seq, even when
//! the events carry a `producer_seq` the store has already passed. Regression tests for the bug
//! where such a resend was refused as `invalid_event` ("source.producer_seq: went backwards").

use crate::common::*;
use serde_json::{json, Value};

/// Event `i` from producer `payments-7f3` at `producer_seq` `i`, with a fixed id per `i`.
fn sequenced(i: u64) -> Value {
    let mut e = event(i);
    e["event_id"] = json!(format!("01936a6e-7c3e-7d4a-9b1e-{i:012x}"));
    e["source"] = json!({"service": "payments", "producer_id": "payments-7f3", "producer_seq": i});
    e
}

fn batch(seqs: impl IntoIterator<Item = u64>) -> Value {
    Value::Array(seqs.into_iter().map(sequenced).collect())
}

/// (status, seq) of each result.
async fn outcomes(r: reqwest::Response) -> Vec<(String, Option<i64>)> {
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["status"].as_str().unwrap().to_owned(), r["seq"].as_i64()))
        .collect()
}

fn stored(seqs: std::ops::RangeInclusive<i64>) -> Vec<(String, Option<i64>)> {
    seqs.map(|s| ("stored".to_owned(), Some(s))).collect()
}

fn duplicates(seqs: std::ops::RangeInclusive<i64>) -> Vec<(String, Option<i64>)> {
    seqs.map(|s| ("duplicate".to_owned(), Some(s))).collect()
}

async fn a_resent_batch_is_all_duplicates_with_the_original_seqs(engine: Engine) {
    let app = spawn_app(engine).await;
    assert_eq!(
        outcomes(app.post_events("acme", &batch(1..=5)).await).await,
        stored(1..=5)
    );
    for _ in 0..2 {
        assert_eq!(
            outcomes(app.post_events("acme", &batch(1..=5)).await).await,
            duplicates(1..=5)
        );
    }
    assert_eq!(app.get_json("acme", "/v1/chain/head").await["seq"], 5);
    assert_eq!(app.metric("audit_chain_gap_total").await, 0.0);
    let (code, out) = run_verify(&app.db_url, &[]);
    assert_eq!(code, 0, "{out}");
}

async fn a_batch_mixing_stored_and_new_events_stores_only_the_new_ones(engine: Engine) {
    let app = spawn_app(engine).await;
    outcomes(app.post_events("acme", &batch(1..=5)).await).await;
    // The tail of the last batch again (its acknowledgement was lost), then new events.
    let got = outcomes(app.post_events("acme", &batch(3..=8)).await).await;
    let mut want = duplicates(3..=5);
    want.extend(stored(6..=8));
    assert_eq!(got, want);

    // Against that: a stored id with other content is a conflict, and a new id whose
    // producer_seq goes backwards is still refused; the request is all or nothing.
    let mut changed = sequenced(2);
    changed["payload"] = json!({"amount": 999});
    let mut backwards = sequenced(4);
    backwards["event_id"] = json!(uuid::Uuid::now_v7().to_string());
    let r = app
        .post_events("acme", &json!([changed, backwards, sequenced(9)]))
        .await;
    assert_eq!(r.status(), 409);
    let body: Value = r.json().await.unwrap();
    let each = &body["details"]["results"];
    assert_eq!(each[0]["status"], "conflict", "{body}");
    assert_eq!(each[0]["seq"], 2);
    assert_eq!(each[1]["status"], "conflict");
    assert!(each[1]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("went backwards"));
    assert_eq!(each[2]["status"], "not_stored");
    assert_eq!(app.get_json("acme", "/v1/chain/head").await["seq"], 8);
    // The rest alone is stored where it would have been.
    assert_eq!(
        outcomes(app.post_events("acme", &json!([sequenced(9)])).await).await,
        stored(9..=9)
    );
    assert_eq!(app.metric("audit_chain_gap_total").await, 0.0);
}

async fn a_resend_after_a_restart_is_a_duplicate(engine: Engine) {
    let mut first = spawn_app(engine).await;
    outcomes(first.post_events("acme", &batch(1..=5)).await).await;
    first.stop().await;
    // A new process knows nothing of the producer's position but what the store says.
    let db = first.db_url.clone();
    let second = spawn_app_with(engine, |s| s.database_url = db.into()).await;
    let got = outcomes(second.post_events("acme", &batch(1..=6)).await).await;
    let mut want = duplicates(1..=5);
    want.extend(stored(6..=6));
    assert_eq!(got, want);
    assert_eq!(second.metric("audit_chain_gap_total").await, 0.0);
    let (code, out) = run_verify(&second.db_url, &[]);
    assert_eq!(code, 0, "{out}");
}

on_both_engines!(
    a_resent_batch_is_all_duplicates_with_the_original_seqs,
    a_batch_mixing_stored_and_new_events_stores_only_the_new_ones,
    a_resend_after_a_restart_is_a_duplicate,
);
