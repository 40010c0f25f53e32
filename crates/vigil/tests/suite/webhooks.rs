//! Signed webhooks (issue 12), checked the way a subscriber checks them: a receiver written
//! with the Standard Webhooks reference package (PyPI `standardwebhooks`,
//! scripts/webhook_receiver.py) verifies every delivery, refuses a tampered one and a replay;
//! a secret rotation keeps deliveries verifying under either secret; a receiver that fails
//! gets retries with the same `webhook-id`, then a dead letter that can be sent again; a
//! restart neither loses nor repeats a notification; a chain that fails verification is an
//! alert to the tenant's subscribers, and so is its repair.

use crate::common::*;
use serde_json::{json, Value};
use std::time::Duration;

/// The Python receiver, killed when dropped.
struct Receiver {
    child: std::process::Child,
    base: String,
    http: reqwest::Client,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Receiver {
    async fn start() -> Receiver {
        let python = std::env::var("VIGIL_PYTHON").unwrap_or_else(|_| "python3".into());
        let port = free_port();
        let child = std::process::Command::new(&python)
            .arg(repo_root().join("scripts/webhook_receiver.py"))
            .arg(port.to_string())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("running python (./scripts/test.sh provides one with standardwebhooks as VIGIL_PYTHON)");
        let r = Receiver {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        for _ in 0..200 {
            if r.http.get(format!("{}/log", r.base)).send().await.is_ok() {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the webhook receiver did not start (is standardwebhooks installed for {python}?)");
    }

    fn hook(&self) -> String {
        format!("{}/hook", self.base)
    }

    async fn configure(&self, secret: &str, fail: bool) {
        self.http
            .post(format!("{}/configure", self.base))
            .json(&json!({"secret": secret, "fail": fail}))
            .send()
            .await
            .unwrap();
    }

    async fn log(&self) -> Vec<Value> {
        self.http
            .get(format!("{}/log", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Waits until the log satisfies `done`; returns it.
    async fn until(&self, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        for _ in 0..300 {
            let log = self.log().await;
            if done(&log) {
                return log;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the receiver never saw {what}: {:#?}", self.log().await);
    }

    /// Verifies a captured delivery with `secret` as the package would `shift` seconds later.
    async fn check(&self, secret: &str, entry: &Value, shift: i64) -> String {
        let r: Value = self
            .http
            .post(format!("{}/check", self.base))
            .json(&json!({"secret": secret, "headers": entry["headers"], "body": entry["body"], "shift_seconds": shift}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        r["result"].as_str().unwrap().to_owned()
    }

    /// Sends a delivery as an attacker would: the captured one, changed by `tweak`.
    async fn resend(&self, entry: &Value, tweak: impl FnOnce(&mut Value)) -> String {
        let mut e = entry.clone();
        tweak(&mut e);
        let mut rb = self
            .http
            .post(self.hook())
            .body(e["body"].as_str().unwrap().to_owned());
        for (k, v) in e["headers"].as_object().unwrap() {
            rb = rb.header(k.as_str(), v.as_str().unwrap());
        }
        let r: Value = rb.send().await.unwrap().json().await.unwrap();
        r["result"].as_str().unwrap().to_owned()
    }
}

fn body(entry: &Value) -> Value {
    serde_json::from_str(entry["body"].as_str().unwrap()).unwrap()
}

fn with_severity(i: u64, severity: &str) -> Value {
    let mut e = event(i);
    e["severity"] = severity.into();
    e
}

async fn admin(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut rb = app
        .client
        .request(method, app.url(path))
        .header("X-Tenant-ID", "acme")
        .header("X-User-ID", "ops")
        .header("X-Roles", "admin");
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn quick(s: &mut vigil_audit::AuditSettings) {
    s.webhooks.poll = Duration::from_millis(50);
    s.webhooks.backoff = Duration::from_millis(100);
    s.webhooks.max_attempts = 3;
    s.verify_every = None;
}

async fn deliveries_verify_with_the_reference_package_and_fail_over_to_the_dead_letter_queue(
    engine: Engine,
) {
    let rx = Receiver::start().await;
    let app = spawn_app_with(engine, quick).await;
    use reqwest::Method;

    // Refused subscriptions answer in the error shape.
    for bad in [
        json!({"url": "ftp://hooks.example/x"}),
        json!({"url": rx.hook(), "kinds": ["everything"]}),
        json!({"url": rx.hook(), "filter": {"min_severity": "loud"}}),
        json!({"url": rx.hook(), "secret": "mine"}),
    ] {
        let (status, e) = admin(&app, Method::POST, "/v1/webhooks", Some(bad.clone())).await;
        assert_eq!(status, 400, "{bad}: {e}");
        assert_eq!(e["code"], "bad_request", "{e}");
    }
    let (status, made) = admin(
        &app,
        Method::POST,
        "/v1/webhooks",
        Some(json!({"url": rx.hook(), "kinds": ["events", "alerts"], "filter": {"min_severity": "warning"}})),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    let id = made["id"].as_str().unwrap().to_owned();
    let secret = made["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    let (_, list) = admin(&app, Method::GET, "/v1/webhooks", None).await;
    assert_eq!(list["webhooks"].as_array().unwrap().len(), 1);
    assert!(
        !list.to_string().contains(&secret[6..]),
        "the secret is shown once: {list}"
    );
    rx.configure(&secret, false).await;

    // Events at and above the filter's severity are delivered, signed; others and other
    // tenants' are not.
    let sent = json!([
        with_severity(0, "info"),
        with_severity(1, "warning"),
        with_severity(2, "security")
    ]);
    assert!(app.post_events("acme", &sent).await.status().is_success());
    assert!(app
        .post_events("other", &json!([with_severity(3, "security")]))
        .await
        .status()
        .is_success());
    let log = rx
        .until("two verified deliveries", |l| {
            l.iter().filter(|e| e["result"] == "ok").count() >= 2
        })
        .await;
    let mut got: Vec<String> = log
        .iter()
        .map(|e| body(e)["data"]["event_id"].as_str().unwrap().to_owned())
        .collect();
    got.sort();
    let mut want = vec![
        sent[1]["event_id"].as_str().unwrap().to_owned(),
        sent[2]["event_id"].as_str().unwrap().to_owned(),
    ];
    want.sort();
    assert_eq!(got, want);
    for e in &log {
        let b = body(e);
        assert_eq!(b["type"], "audit.event");
        assert_eq!(b["data"]["tenant_id"], "acme");
        assert!(
            b["data"].get("payload").is_none(),
            "the payload is not sent"
        );
        assert!(e["headers"]["webhook-signature"]
            .as_str()
            .unwrap()
            .starts_with("v1,"));
    }

    // What an attacker can do with a captured delivery, the reference package refuses.
    let captured = log[0].clone();
    assert_eq!(
        rx.resend(&captured, |_| {}).await,
        "replay",
        "the same webhook-id again"
    );
    let tampered = rx
        .resend(&captured, |e| {
            let b = e["body"].as_str().unwrap().replace("acme", "acmf");
            e["body"] = b.into();
        })
        .await;
    assert!(tampered.starts_with("refused"), "{tampered}");
    let refreshed = rx
        .resend(&captured, |e| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            e["headers"]["webhook-timestamp"] = now.to_string().into();
            e["headers"]["webhook-id"] = "msg_fresh".into();
        })
        .await;
    assert!(refreshed.starts_with("refused"), "{refreshed}");
    assert_eq!(
        rx.check(&secret, &captured, 600).await,
        "refused: Message timestamp too old",
        "replayed ten minutes later"
    );
    assert_eq!(rx.check(&secret, &captured, 0).await, "ok");

    // Rotation: the new secret signs from now on, the old one beside it for the overlap; a
    // receiver that switched to the new one verifies, one still on the old one too.
    let (status, rotated) = admin(
        &app,
        Method::POST,
        &format!("/v1/webhooks/{id}/rotate-secret"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{rotated}");
    let new_secret = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, secret);
    rx.configure(&new_secret, false).await;
    let after = with_severity(4, "error");
    assert!(app
        .post_events("acme", &json!([after.clone()]))
        .await
        .status()
        .is_success());
    let log = rx
        .until("the delivery after the rotation", |l| {
            l.iter()
                .any(|e| e["result"] == "ok" && body(e)["data"]["event_id"] == after["event_id"])
        })
        .await;
    let fresh = log
        .iter()
        .find(|e| body(e)["data"]["event_id"] == after["event_id"])
        .unwrap();
    assert_eq!(
        fresh["headers"]["webhook-signature"]
            .as_str()
            .unwrap()
            .split(' ')
            .count(),
        2
    );
    assert_eq!(
        rx.check(&secret, fresh, 0).await,
        "ok",
        "the old secret, within the overlap"
    );

    // A failing receiver: retried with the same webhook-id, then dead-lettered; sent again
    // from the dead-letter queue once the receiver is back.
    rx.configure(&new_secret, true).await;
    let doomed = with_severity(5, "critical");
    assert!(app
        .post_events("acme", &json!([doomed.clone()]))
        .await
        .status()
        .is_success());
    let dead = {
        let mut found = None;
        for _ in 0..200 {
            let (_, d) = admin(
                &app,
                Method::GET,
                &format!("/v1/webhooks/{id}/deliveries?status=dead"),
                None,
            )
            .await;
            if let Some(x) = d["deliveries"].as_array().and_then(|a| a.first()).cloned() {
                found = Some(x);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        found.expect("the delivery reaches the dead-letter queue")
    };
    assert_eq!(dead["attempts"], 3);
    assert_eq!(dead["last_status"], 500);
    assert_eq!(dead["body"]["data"]["event_id"], doomed["event_id"]);
    let msg = dead["message_id"].as_str().unwrap().to_owned();
    let failures = rx
        .log()
        .await
        .iter()
        .filter(|e| e["id"] == msg.as_str())
        .count();
    assert_eq!(failures, 3, "three attempts, one webhook-id");
    rx.configure(&new_secret, false).await;
    let (status, _) = admin(
        &app,
        Method::POST,
        &format!(
            "/v1/webhooks/{id}/deliveries/{}/retry",
            dead["id"].as_str().unwrap()
        ),
        None,
    )
    .await;
    assert_eq!(status, 202);
    rx.until("the dead letter sent again", |l| {
        l.iter()
            .any(|e| e["id"] == msg.as_str() && e["result"] == "ok")
    })
    .await;
    // The receiver has answered; the service records the delivery just after: wait for it.
    let mut delivered = Value::Null;
    for _ in 0..200 {
        delivered = admin(
            &app,
            Method::GET,
            &format!("/v1/webhooks/{id}/deliveries?status=delivered"),
            None,
        )
        .await
        .1;
        if delivered["deliveries"].as_array().map_or(0, Vec::len) >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        delivered["deliveries"].as_array().unwrap().len(),
        4,
        "{delivered}"
    );
    // The changes are in the tenant's chain.
    let chain = app
        .get_json("acme", "/v1/events?action=audit.webhook.created")
        .await;
    assert_eq!(chain["events"].as_array().unwrap().len(), 1);

    // Deleting it stops deliveries.
    let (status, _) = admin(&app, Method::DELETE, &format!("/v1/webhooks/{id}"), None).await;
    assert_eq!(status, 204);
    let before = rx.log().await.len();
    assert!(app
        .post_events("acme", &json!([with_severity(6, "security")]))
        .await
        .status()
        .is_success());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.log().await.len(), before);
}

on_both_engines!(
    deliveries_verify_with_the_reference_package_and_fail_over_to_the_dead_letter_queue
);

/// The chain is the outbox: events stored while no worker ran are delivered after a restart,
/// each once; a further restart sends nothing again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_neither_loses_nor_repeats_a_notification() {
    let rx = Receiver::start().await;
    // A worker that looks once, at start, and then not for an hour.
    let mut first = spawn_app_with(Engine::Sqlite, |s| {
        quick(s);
        s.webhooks.poll = Duration::from_secs(3600);
    })
    .await;
    let (status, made) = admin(
        &first,
        reqwest::Method::POST,
        "/v1/webhooks",
        Some(json!({"url": rx.hook()})),
    )
    .await;
    assert_eq!(status, 201);
    rx.configure(made["secret"].as_str().unwrap(), false).await;
    assert!(first
        .post_events("acme", &events(0, 5))
        .await
        .status()
        .is_success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(rx.log().await.is_empty(), "no worker pass yet");
    first.stop().await;

    let (db, data) = (first.db_url.clone(), first.dir.path().join("data"));
    let again = |s: &mut vigil_audit::AuditSettings| {
        quick(s);
        s.database_url = db.clone().into();
        s.data_dir = data.clone();
    };
    let mut second = spawn_app_with(Engine::Sqlite, again).await;
    // The five events, and the subscription's own creation (unfiltered: every record).
    let log = rx.until("the six records", |l| l.len() >= 6).await;
    assert!(log.iter().all(|e| e["result"] == "ok"), "{log:#?}");
    let actions: Vec<Value> = log
        .iter()
        .map(|e| body(e)["data"]["action"].clone())
        .collect();
    assert!(
        actions.contains(&json!("audit.webhook.created")),
        "{actions:?}"
    );
    second.stop().await;
    let third = spawn_app_with(Engine::Sqlite, again).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.log().await.len(), 6, "nothing sent twice");
    drop(third);
}

/// Subscribers to alerts hear when the tenant's chain fails verification, and when it is
/// intact again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_chain_is_an_alert_to_the_tenants_subscribers() {
    let rx = Receiver::start().await;
    let app = spawn_app_with(Engine::Sqlite, |s| {
        quick(s);
        s.verify_every = Some(Duration::from_millis(200));
    })
    .await;
    let (_, made) = admin(
        &app,
        reqwest::Method::POST,
        "/v1/webhooks",
        Some(json!({"url": rx.hook(), "kinds": ["alerts"]})),
    )
    .await;
    rx.configure(made["secret"].as_str().unwrap(), false).await;
    assert!(app
        .post_events("acme", &events(0, 3))
        .await
        .status()
        .is_success());
    execute_sql(
        Engine::Sqlite,
        &app.db_url,
        "UPDATE events SET action = action || '.x' WHERE tenant_id = 'acme' AND seq = 2",
    )
    .await;
    let alert = |status: &'static str| {
        move |l: &[Value]| {
            l.iter().any(|e| {
                let b = body(e);
                e["result"] == "ok" && b["type"] == "vigil.alert" && b["data"]["status"] == status
            })
        }
    };
    let log = rx.until("the firing alert", alert("firing")).await;
    let b = body(&log[0]);
    assert_eq!(b["data"]["alert"], "chain_damaged");
    assert_eq!(b["data"]["tenant_id"], "acme");
    execute_sql(
        Engine::Sqlite,
        &app.db_url,
        "UPDATE events SET action = substr(action, 1, length(action) - 2) WHERE tenant_id = 'acme' AND seq = 2",
    )
    .await;
    rx.until("the resolved alert", alert("resolved")).await;
    // Only alerts: the events themselves were not sent to this subscription.
    assert!(rx
        .log()
        .await
        .iter()
        .all(|e| body(e)["type"] == "vigil.alert"));
}
