//! Redaction at ingest (issue 11, item 1): what a policy keeps out never reaches the store,
//! the chain still verifies (with Vigil's verifier and the independent one), a resend stays
//! a duplicate, and the metrics count by mode and action.

use crate::common::*;
use serde_json::{json, Value};
use vigil_core::redaction::Policy;

const CARD: &str = "4111111111111111";
const EMAIL: &str = "ana@example.com";
const STREET: &str = "1 Main Street";

fn policy(mode: &str) -> Policy {
    Policy::from_json(
        &json!({"mode": mode, "rules": [
            {"path": "payload.card.number", "action": "mask"},
            {"path": "payload.customer.email", "action": "hmac"},
            {"path": "payload.items[*].address", "action": "drop"}
        ]})
        .to_string(),
    )
    .unwrap()
}

fn order(i: u64, card: &str) -> Value {
    let mut e = event(i);
    e["payload"] = json!({
        "card": {"number": card, "brand": "visa"},
        "customer": {"email": EMAIL, "name": "Ana"},
        "items": [{"sku": "a", "address": STREET}, {"sku": "b"}]
    });
    e
}

/// The stored record of event `e`, as the API serves it.
async fn read_back(app: &TestApp, tenant: &str, e: &Value) -> Value {
    let id = e["event_id"].as_str().unwrap();
    app.get_json(tenant, &format!("/v1/events/{id}")).await
}

fn counted(metrics: &str, mode: &str, action: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("audit_events_redacted_total{"))
        .filter(|l| l.contains(&format!("mode=\"{mode}\"")))
        .filter(|l| l.contains(&format!("action=\"{action}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn enforce_keeps_values_out_of_the_store_and_every_record_verifies(engine: Engine) {
    let app = spawn_app_with(engine, |s| s.redaction = policy("enforce")).await;
    let (a, b) = (order(1, CARD), order(2, "5500005555555559"));
    let r = app.post_events("acme", &json!([a, b])).await;
    assert_eq!(r.status(), 200);
    // A resend (the acknowledgement was lost) is a duplicate, masks and all.
    let again: Value = app
        .post_events("acme", &json!([a]))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["results"][0]["status"], "duplicate", "{again}");
    assert_eq!(again["results"][0]["seq"], 1);

    let ra = read_back(&app, "acme", &a).await;
    let rb = read_back(&app, "acme", &b).await;
    let masked = &ra["payload"]["card"]["number"];
    assert_eq!(masked["$redacted"], "mask", "{ra}");
    assert_eq!(masked["commitment"].as_str().unwrap().len(), 64);
    assert_eq!(ra["payload"]["card"]["brand"], "visa");
    // Equal values stay joinable through their HMAC; other values are untouched.
    let email = ra["payload"]["customer"]["email"].as_str().unwrap();
    assert!(email.starts_with("hmac-sha256:"), "{email}");
    assert_eq!(rb["payload"]["customer"]["email"], email);
    assert_eq!(ra["payload"]["customer"]["name"], "Ana");
    assert_eq!(ra["payload"]["items"], json!([{"sku": "a"}, {"sku": "b"}]));

    // Not in the database at all (nor its write-ahead log).
    let raw = raw_store(&app).await;
    for secret in [CARD, "5500005555555559", EMAIL, STREET] {
        assert!(!raw.contains(secret), "{secret} reached the store");
    }
    let (code, out) = run_verify(&app.db_url, &[]);
    assert_eq!(code, 0, "{out}");

    let (_, metrics) = app.public("/metrics").await;
    assert!(counted(&metrics, "enforce", "mask") >= 2.0, "{metrics}");
    assert!(counted(&metrics, "enforce", "hmac") >= 2.0);
    assert!(counted(&metrics, "enforce", "drop") >= 2.0);
    assert!(app.metric("audit_redaction_last_timestamp_seconds").await > 1.7e9);
}

async fn log_mode_counts_and_stores_as_sent(engine: Engine) {
    let app = spawn_app_with(engine, |s| s.redaction = policy("log")).await;
    let a = order(1, CARD);
    assert_eq!(app.post_events("acme", &json!([a])).await.status(), 200);
    let ra = read_back(&app, "acme", &a).await;
    assert_eq!(ra["payload"]["card"]["number"], CARD);
    assert_eq!(ra["payload"]["customer"]["email"], EMAIL);
    // The scan of the store that finds nothing under enforce finds the value here.
    assert!(raw_store(&app).await.contains(CARD));
    let (_, metrics) = app.public("/metrics").await;
    assert_eq!(counted(&metrics, "log", "mask"), 1.0, "{metrics}");
    assert_eq!(counted(&metrics, "log", "drop"), 1.0);
    assert_eq!(counted(&metrics, "enforce", "mask"), 0.0);
}

/// `PUT /v1/redaction-policy` as `role`.
async fn put_policy(app: &TestApp, tenant: &str, role: &str, body: &str) -> reqwest::Response {
    app.client
        .put(app.url("/v1/redaction-policy"))
        .header("X-Tenant-ID", tenant)
        .header("X-User-ID", "olga")
        .header("X-Roles", role)
        .header("Content-Type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

async fn a_tenants_own_policy_applies_to_it_alone_and_every_change_is_in_its_chain(engine: Engine) {
    let app = spawn_app(engine).await;
    let current = app.get_json("acme", "/v1/redaction-policy").await;
    assert_eq!(current["source"], "fleet");
    assert_eq!(current["policy"]["mode"], "off");

    // Only audit_admin may change it; a policy that cannot work changes nothing.
    let text = policy("enforce");
    let text = serde_json::to_string(&text).unwrap();
    let r = put_policy(&app, "acme", "support", &text).await;
    assert_eq!(r.status(), 403);
    for (bad, says) in [
        (
            r#"{"mode": "enforce", "rules": [{"path": "payload.a", "action": "blur"}]}"#,
            "blur",
        ),
        (
            r#"{"mode": "enforce", "rules": [{"path": "a.b", "action": "mask"}]}"#,
            "must start",
        ),
        (
            r#"{"mode": "enforce", "rules": [{"path": "payload.a", "action": "mask"}, {"path": "payload.a.b", "action": "drop"}]}"#,
            "overlap",
        ),
        (r#"{"mode": "enforce", "tenant_id": "globex"}"#, "tenant_id"),
    ] {
        let r = put_policy(&app, "acme", "admin", bad).await;
        assert_eq!(r.status(), 400, "{bad}");
        let body: Value = r.json().await.unwrap();
        assert!(body["message"].as_str().unwrap().contains(says), "{body}");
    }
    assert_eq!(
        app.get_json("acme", "/v1/redaction-policy").await["source"],
        "fleet"
    );

    let r = put_policy(&app, "acme", "admin", &text).await;
    assert_eq!(r.status(), 200);
    let now = app.get_json("acme", "/v1/redaction-policy").await;
    assert_eq!(
        (now["source"].as_str(), now["policy"]["mode"].as_str()),
        (Some("tenant"), Some("enforce"))
    );

    // In force for acme at once; globex keeps the fleet's (none).
    let (a, g) = (order(1, CARD), order(2, CARD));
    assert_eq!(app.post_events("acme", &json!([a])).await.status(), 200);
    assert_eq!(app.post_events("globex", &json!([g])).await.status(), 200);
    let ra = read_back(&app, "acme", &a).await;
    let rg = read_back(&app, "globex", &g).await;
    assert_eq!(ra["payload"]["card"]["number"]["$redacted"], "mask", "{ra}");
    assert_eq!(rg["payload"]["card"]["number"], CARD);

    let r = app
        .client
        .delete(app.url("/v1/redaction-policy"))
        .header("X-Tenant-ID", "acme")
        .header("X-User-ID", "olga")
        .header("X-Roles", "admin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        app.get_json("acme", "/v1/redaction-policy").await["source"],
        "fleet"
    );
    let b = order(3, CARD);
    assert_eq!(app.post_events("acme", &json!([b])).await.status(), 200);
    let rb = read_back(&app, "acme", &b).await;
    assert_eq!(rb["payload"]["card"]["number"], CARD);

    // Both changes are records of acme's chain, by who made them; none in globex's.
    let changes = app
        .get_json("acme", "/v1/events?action=audit.redaction_policy.*")
        .await;
    let actions: Vec<&str> = changes["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "audit.redaction_policy.removed",
            "audit.redaction_policy.changed"
        ]
    );
    let changed = &changes["events"][1];
    assert_eq!(changed["actor"]["id"], "olga");
    assert_eq!(changed["payload"]["mode"], "enforce");
    let other = app
        .get_json("globex", "/v1/events?action=audit.redaction_policy.*")
        .await;
    assert!(other["events"].as_array().unwrap().is_empty());
    let (code, out) = run_verify(&app.db_url, &[]);
    assert_eq!(code, 0, "{out}");
}

/// GET as `role` (with the identity headers the service trusts from loopback).
async fn read_as(app: &TestApp, role: &str, path: &str) -> reqwest::Response {
    app.client
        .get(app.url(path))
        .header("X-Tenant-ID", "acme")
        .header("X-User-ID", "rita")
        .header("X-Roles", role)
        .send()
        .await
        .unwrap()
}

fn independent(app: &TestApp, view: &[&str]) -> (bool, String) {
    let (code, text) = independent_verify(app.addr, "acme", view);
    (code == Some(0), text)
}

async fn readers_see_sensitive_members_withheld_and_every_view_verifies(engine: Engine) {
    let app = spawn_app_with(engine, |s| {
        s.redaction = Policy::from_json(
            &json!({"mode": "off", "sensitive": ["payload.customer"]}).to_string(),
        )
        .unwrap();
        s.checkpoint_every = 2;
    })
    .await;
    let batch: Vec<Value> = (1..=4).map(|i| order(i, CARD)).collect();
    assert_eq!(app.post_events("acme", &json!(batch)).await.status(), 200);
    let id = batch[0]["event_id"].as_str().unwrap();

    // A reader with audit_read: the member withheld, its commitment kept, and why.
    for path in [format!("/v1/events/{id}"), "/v1/events".to_owned()] {
        let r = read_as(&app, "support", &path).await;
        assert_eq!(r.status(), 200, "{path}");
        let body: Value = r.json().await.unwrap();
        let rec = if body["events"].is_array() {
            body["events"].as_array().unwrap().last().unwrap().clone()
        } else {
            body
        };
        assert!(rec["payload"].get("customer").is_none(), "{rec}");
        assert!(rec["payload_salts"].get("customer").is_none(), "{rec}");
        assert!(rec["payload_commitments"]["customer"].is_string());
        assert_eq!(rec["withheld"]["customer"], "sensitive");
        assert_eq!(rec["payload"]["card"]["number"], CARD);
        assert!(!rec.to_string().contains(EMAIL));
    }
    // Asking for everything needs audit_read_unredacted.
    let r = read_as(
        &app,
        "support",
        &format!("/v1/events/{id}?include_redacted=true"),
    )
    .await;
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["x-error-code"], "missing_role");
    let r = read_as(&app, "support", "/v1/events?include_redacted=maybe").await;
    assert_eq!(r.status(), 400);
    // Even an admin sees the redacted view unless it asks; asking is recorded.
    let rec: Value = read_as(&app, "admin", &format!("/v1/events/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert!(rec["payload"].get("customer").is_none());
    let rec: Value = read_as(
        &app,
        "admin",
        &format!("/v1/events/{id}?include_redacted=true"),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(rec["payload"]["customer"]["email"], EMAIL);
    assert!(rec.get("withheld").is_none());
    let reads = app
        .get_json("acme", "/v1/events?action=audit.read_unredacted")
        .await;
    let reads = reads["events"].as_array().unwrap();
    assert_eq!(reads.len(), 1);
    assert_eq!(reads[0]["actor"]["id"], "rita");
    assert_eq!(reads[0]["resource"]["id"], id);

    // Every view verifies, with Vigil's verifier and the independent one.
    let (code, out) = run_verify(&app.db_url, &[]);
    assert_eq!(code, 0, "{out}");
    for _ in 0..100 {
        if app.get("acme", "/v1/checkpoints/latest").await.status() == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (ok, out) = independent(&app, &[]);
    assert!(ok, "{out}");
    assert!(out.contains("fields withheld by the view"), "{out}");
    let (ok, out) = independent(&app, &["full"]);
    assert!(ok, "{out}");
    let (_, metrics) = app.public("/metrics").await;
    assert!(
        metric_value(&metrics, "audit_records_served_total") >= 8.0,
        "{metrics}"
    );
}

on_both_engines!(
    enforce_keeps_values_out_of_the_store_and_every_record_verifies,
    log_mode_counts_and_stores_as_sent,
    a_tenants_own_policy_applies_to_it_alone_and_every_change_is_in_its_chain,
    readers_see_sensitive_members_withheld_and_every_view_verifies,
);

/// The independent verifier (Python, its own RFC 8785 library) accepts redacted records: a
/// mask's marker is an ordinary value as far as the hashes go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_independent_verifier_accepts_redacted_records() {
    let app = spawn_app_with(Engine::Sqlite, |s| {
        s.redaction = policy("enforce");
        s.checkpoint_every = 2;
    })
    .await;
    let batch: Vec<Value> = (1..=4).map(|i| order(i, CARD)).collect();
    assert_eq!(app.post_events("acme", &json!(batch)).await.status(), 200);
    for _ in 0..100 {
        if app.get("acme", "/v1/checkpoints/latest").await.status() == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (ok, text) = independent(&app, &[]);
    assert!(ok, "{text}");
}

/// A policy that cannot work stops the service at start, saying why; it never runs without it.
#[test]
fn a_policy_that_cannot_work_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    for (policy, says) in [
        (
            r#"{"mode": "sometimes", "rules": []}"#,
            "unknown variant `sometimes`",
        ),
        (
            r#"{"mode": "enforce", "rules": [{"path": "card.number", "action": "mask"}]}"#,
            "must start with",
        ),
        (
            r#"{"mode": "enforce", "rules": [{"path": "payload.items[*]", "action": "drop"}]}"#,
            "drop the array",
        ),
        ("{not json", "policy"),
    ] {
        let file = dir.path().join("policy.json");
        std::fs::write(&file, policy).unwrap();
        let out = std::process::Command::new(vigil_bin())
            .args(["audit", "serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .arg("--redaction-policy")
            .arg(&file)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{policy}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{policy}: {err}");
    }
}
