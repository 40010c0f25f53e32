//! Erasure of a data subject (issue 11, item 4) and per-tenant retention periods (item 3)
//! over HTTP on both stores: personal fields are sealed before they reach the store, export
//! returns them, erase leaves them unreadable and every record verifiable (Vigil's verifier
//! and the independent one), a key destroyed without a receipt is tampering, and bad input is
//! refused in the error shape with nothing changed.

use crate::common::*;
use serde_json::{json, Value};

const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";

const POLICY: &str = r#"{"mode": "enforce", "rules": [],
    "personal": {"subject": "payload.customer.id", "members": ["payload.customer", "payload.email"]}}"#;

fn order(i: u64, customer: Option<(&str, &str)>) -> Value {
    let mut e = event(i);
    e["payload"] = match customer {
        Some((id, email)) => json!({
            "customer": {"id": id, "name": "someone"},
            "email": email,
            "total": i
        }),
        None => json!({"total": i}),
    };
    e
}

async fn send(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    role: &str,
    body: Option<&str>,
) -> (u16, Value) {
    let mut r = app
        .client
        .request(method, app.url(path))
        .header("X-Tenant-ID", "acme")
        .header("X-User-ID", "dpo")
        .header("X-Roles", role);
    if let Some(b) = body {
        r = r
            .header("Content-Type", "application/json")
            .body(b.to_owned());
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn records_of(page: &Value) -> Vec<Value> {
    page["events"].as_array().unwrap().clone()
}

async fn erasing_a_subject_leaves_its_fields_unreadable_and_every_record_verifiable(
    engine: Engine,
) {
    let app = spawn_app_with(engine, |s| s.checkpoint_every = 1).await;
    let (s, _) = send(
        &app,
        reqwest::Method::PUT,
        "/v1/redaction-policy",
        "admin",
        Some(POLICY),
    )
    .await;
    assert_eq!(s, 200);
    let batch = json!([
        order(1, Some(("c-1", ALICE))),
        order(2, Some(("c-2", BOB))),
        order(3, Some(("c-1", ALICE))),
        order(4, None),
        order(5, Some(("c-1", ALICE))),
    ]);
    assert_eq!(app.post_events("acme", &batch).await.status(), 200);
    // A resend is a duplicate: sealing happens after the content is compared.
    let again: Value = app.post_events("acme", &batch).await.json().await.unwrap();
    assert_eq!(again["results"][0]["status"], "duplicate", "{again}");

    // Sealed before it reached the store: neither address is there in clear.
    let raw = raw_store(&app).await;
    assert!(
        !raw.contains(ALICE) && !raw.contains(BOB),
        "personal data in clear in the store"
    );
    // Readers see the values (the service opens them) and each view verifies.
    let page = app.get_json("acme", "/v1/events?limit=100").await;
    let all = records_of(&page);
    let alice: Vec<&Value> = all
        .iter()
        .filter(|r| r["payload"]["email"] == ALICE)
        .collect();
    assert_eq!(alice.len(), 3, "{page}");
    assert!(all.iter().all(|r| r.get("sealed").is_none()), "{page}");
    wait_for_checkpoint(&app).await;
    let (code, text) = independent_verify(app.addr, "acme", &[]);
    assert_eq!(code, Some(0), "{text}");

    // Export: everything about c-1, and only about c-1; the export itself is recorded.
    let (s, export) = send(
        &app,
        reqwest::Method::GET,
        "/v1/subjects/c-1/export",
        "admin",
        None,
    )
    .await;
    assert_eq!(s, 200, "{export}");
    let recs = export["records"].as_array().unwrap();
    assert_eq!(recs.len(), 3);
    assert!(recs
        .iter()
        .all(|r| r["payload"]["email"] == ALICE && r["payload"]["customer"]["id"] == "c-1"));
    // Only gdpr_manage may erase or export (support reads, but no more).
    for role in ["support", "manager"] {
        let (s, body) = send(
            &app,
            reqwest::Method::POST,
            "/v1/subjects/c-1/erase",
            role,
            None,
        )
        .await;
        assert_eq!(s, 403, "{body}");
        let (s, _) = send(
            &app,
            reqwest::Method::GET,
            "/v1/subjects/c-1/export",
            role,
            None,
        )
        .await;
        assert_eq!(s, 403);
    }
    // Bad input: clear 4xx in the error shape, nothing changed.
    let long = "x".repeat(300);
    for (path, status, says) in [
        (
            "/v1/subjects/nobody/erase".to_owned(),
            404,
            "nothing is stored",
        ),
        (format!("/v1/subjects/{long}/erase"), 400, "256 characters"),
        ("/v1/subjects/a%0Ab/erase".to_owned(), 400, "control"),
    ] {
        let (s, body) = send(&app, reqwest::Method::POST, &path, "admin", None).await;
        assert_eq!(s, status, "{path}: {body}");
        assert!(body["message"].as_str().unwrap().contains(says), "{body}");
        assert!(body["code"].is_string(), "{body}");
    }
    let head_before = app.get_json("acme", "/v1/chain/head").await["seq"].clone();

    // Erase c-1.
    let (s, erased) = send(
        &app,
        reqwest::Method::POST,
        "/v1/subjects/c-1/erase",
        "admin",
        None,
    )
    .await;
    assert_eq!(s, 200, "{erased}");
    assert_eq!(erased["status"], "erased");
    let seqs: Vec<i64> = erased["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    // Seq 1 is the policy change itself.
    assert_eq!(seqs, vec![2, 4, 6]);
    assert!(erased["receipt"]
        .as_str()
        .unwrap()
        .contains("vigil.dev/erasure/v1"));
    assert!(
        head_before.as_i64().unwrap()
            < app.get_json("acme", "/v1/chain/head").await["seq"]
                .as_i64()
                .unwrap()
    );
    // Idempotent: the same receipt again, nothing new.
    let (s, again) = send(
        &app,
        reqwest::Method::POST,
        "/v1/subjects/c-1/erase",
        "admin",
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(again["status"], "already_erased");
    assert_eq!(again["receipt"], erased["receipt"]);

    // c-1's fields are withheld as erased; c-2 and the record without a subject unchanged.
    let page = app.get_json("acme", "/v1/events?limit=100").await;
    for r in records_of(&page) {
        let seq = r["seq"].as_i64().unwrap();
        if seqs.contains(&seq) {
            assert_eq!(r["withheld"]["email"], "erased", "{r}");
            assert_eq!(r["withheld"]["customer"], "erased", "{r}");
            assert!(r["payload"].get("email").is_none(), "{r}");
            assert_eq!(r["payload"]["total"], seq - 1, "{r}");
        } else if seq == 3 {
            assert_eq!(r["payload"]["email"], BOB, "{r}");
        } else if seq == 5 {
            assert_eq!(r["payload"]["total"], 4);
        }
    }
    let (s, export) = send(
        &app,
        reqwest::Method::GET,
        "/v1/subjects/c-1/export",
        "admin",
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert!(export["records"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["withheld"]["email"] == "erased"));
    // The key is gone from the store; the sealed fields stay unreadable.
    let raw = raw_store(&app).await;
    assert!(!raw.contains(ALICE));
    let subject_ref = erased["subject_ref"].as_str().unwrap();
    let count = count_sql(
        engine,
        &app.db_url,
        &format!("SELECT COUNT(*) FROM subject_keys WHERE subject_ref = '{subject_ref}'"),
    )
    .await;
    assert_eq!(count, 0);
    // Who asked is recorded too, by the subject's reference (never its id).
    let asked = app
        .get_json("acme", "/v1/events?action=audit.subject.*&limit=100")
        .await;
    let actions: Vec<&str> = asked["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "audit.subject.erased",
        "audit.subject.erase_requested",
        "audit.subject.exported",
    ] {
        assert!(actions.contains(&a), "{actions:?}");
    }
    assert!(!asked.to_string().contains("\"c-1\""), "{asked}");

    // Both verifiers accept the erasure; Vigil's names it.
    wait_for_checkpoint(&app).await;
    let (code, text) = independent_verify(app.addr, "acme", &[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("(3 records), receipt valid"), "{text}");
    let (code, out) = run_verify(&app.db_url, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("erased on") && out.contains("(3 records), receipt valid"),
        "{out}"
    );
    assert!(app.metric("audit_subjects_erased_total").await >= 1.0);

    // New events about c-1 after the erasure get a new key, and an erase takes them too.
    assert_eq!(
        app.post_events("acme", &json!([order(9, Some(("c-1", ALICE)))]))
            .await
            .status(),
        200
    );
    let (_, export) = send(
        &app,
        reqwest::Method::GET,
        "/v1/subjects/c-1/export",
        "admin",
        None,
    )
    .await;
    let last = export["records"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["payload"]["email"], ALICE, "{export}");
    let (s, second) = send(
        &app,
        reqwest::Method::POST,
        "/v1/subjects/c-1/erase",
        "admin",
        None,
    )
    .await;
    assert_eq!(
        (s, second["status"].as_str()),
        (200, Some("erased")),
        "{second}"
    );

    // A key destroyed by hand, with no receipt: tampering, at the first record it blinds.
    execute_sql(engine, &app.db_url, "DELETE FROM subject_keys").await;
    let (code, out) = run_verify(&app.db_url, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("TAMPERED at seq 3") && out.contains("no erasure receipt"),
        "{out}"
    );
}

/// Waits until the latest checkpoint covers acme's head.
async fn wait_for_checkpoint(app: &TestApp) {
    for _ in 0..200 {
        let head = app.get_json("acme", "/v1/chain/head").await["seq"]
            .as_i64()
            .unwrap();
        let r = app.get("acme", "/v1/checkpoints/latest").await;
        if r.status() == 200 {
            let cp: Value = r.json().await.unwrap();
            if cp["size"].as_i64() == Some(head) {
                return;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("no checkpoint covers the head");
}

async fn a_tenants_own_retention_period_is_kept_checked_and_audited(engine: Engine) {
    let app = spawn_app(engine).await;
    let get = || {
        send(
            &app,
            reqwest::Method::GET,
            "/v1/retention-policy",
            "admin",
            None,
        )
    };
    let (s, v) = get().await;
    assert_eq!((s, v["source"].as_str()), (200, Some("off")), "{v}");
    // Bad input: 0, negative, too many, not a number, unknown fields: 400, nothing stored.
    for (body, says) in [
        (r#"{"days": 0}"#, "1 to 36500"),
        (r#"{"days": -3}"#, "1 to 36500"),
        (r#"{"days": 36501}"#, "1 to 36500"),
        (r#"{"days": "30"}"#, "days"),
        (r#"{"days": 30, "tenant": "globex"}"#, "tenant"),
        (r#"{}"#, "days"),
    ] {
        let (s, b) = send(
            &app,
            reqwest::Method::PUT,
            "/v1/retention-policy",
            "admin",
            Some(body),
        )
        .await;
        assert_eq!(s, 400, "{body}: {b}");
        assert!(b["message"].as_str().unwrap().contains(says), "{body}: {b}");
    }
    assert_eq!(get().await.1["source"], "off");
    let (s, _) = send(
        &app,
        reqwest::Method::PUT,
        "/v1/retention-policy",
        "support",
        Some(r#"{"days": 7}"#),
    )
    .await;
    assert_eq!(s, 403);
    let (s, v) = send(
        &app,
        reqwest::Method::PUT,
        "/v1/retention-policy",
        "admin",
        Some(r#"{"days": 7}"#),
    )
    .await;
    assert_eq!(
        (s, v["source"].as_str(), v["days"].as_u64()),
        (200, Some("tenant"), Some(7)),
        "{v}"
    );
    assert_eq!(get().await.1["days"], 7);
    let (s, _) = send(
        &app,
        reqwest::Method::DELETE,
        "/v1/retention-policy",
        "admin",
        None,
    )
    .await;
    assert_eq!(s, 204);
    assert_eq!(get().await.1["source"], "off");
    let changes = app
        .get_json("acme", "/v1/events?action=audit.retention_policy.*")
        .await;
    let actions: Vec<&str> = changes["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        vec![
            "audit.retention_policy.removed",
            "audit.retention_policy.changed"
        ]
    );
}

on_both_engines!(
    erasing_a_subject_leaves_its_fields_unreadable_and_every_record_verifiable,
    a_tenants_own_retention_period_is_kept_checked_and_audited,
);
