//! The gateway's audit events, sent to the audit service as a trusted peer (the identity
//! headers name the tenant, the gateway and role `service`). Rate-limit breaches are
//! aggregated per tenant and minute; authentication failures and limiter engine changes are
//! sent as they happen. Delivery is best effort with retries: a full queue drops (and counts)
//! rather than slowing requests.

use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::mpsc;

/// Queue into the sender task.
#[derive(Debug, Clone)]
pub struct GatewayAudit {
    tx: mpsc::Sender<(String, Value)>,
    breaches: std::sync::Arc<Mutex<HashMap<(String, i64), u64>>>,
    system_tenant: String,
}

fn event(
    action: &str,
    resource: (&str, &str),
    outcome: &str,
    severity: &str,
    payload: Value,
) -> Value {
    json!({
        "event_id": uuid::Uuid::now_v7().to_string(),
        "occurred_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "actor": {"type": "system", "id": "vigil-gateway"},
        "action": action,
        "resource": {"type": resource.0, "id": resource.1},
        "outcome": outcome,
        "severity": severity,
        "source": {"service": "vigil-gateway"},
        "payload": payload,
    })
}

impl GatewayAudit {
    /// Starts the sender: to `audit_url` when given, else to the log.
    pub fn start(audit_url: Option<String>, system_tenant: &str) -> GatewayAudit {
        let (tx, mut rx) = mpsc::channel::<(String, Value)>(10_000);
        tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("an HTTP client");
            while let Some((tenant, ev)) = rx.recv().await {
                let Some(url) = &audit_url else {
                    tracing::info!(%tenant, event = %ev, "audit event (no audit service configured)");
                    continue;
                };
                for attempt in 0..3u32 {
                    let r = http
                        .post(format!("{}/v1/events", url.trim_end_matches('/')))
                        .header("X-Tenant-ID", &tenant)
                        .header("X-User-ID", "vigil-gateway")
                        .header("X-Roles", "service")
                        .json(&[&ev])
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status().is_success() => break,
                        Ok(r) if r.status().is_client_error() => {
                            tracing::error!(%tenant, status = %r.status(), "the audit service refused a gateway event");
                            break;
                        }
                        other => {
                            tracing::warn!(%tenant, attempt, error = ?other.err(), "sending a gateway audit event failed");
                            tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                        }
                    }
                }
            }
        });
        let me = GatewayAudit {
            tx,
            breaches: Default::default(),
            system_tenant: system_tenant.to_owned(),
        };
        let flusher = me.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                flusher.flush_breaches(false);
            }
        });
        me
    }

    fn send(&self, tenant: &str, ev: Value) {
        if self.tx.try_send((tenant.to_owned(), ev)).is_err() {
            tracing::warn!(%tenant, "gateway audit queue full; event dropped");
        }
    }

    /// A request of `tenant` was refused by its rate limit (counted; one event per minute).
    pub fn breach(&self, tenant: &str) {
        let minute = chrono::Utc::now().timestamp() / 60;
        *self
            .breaches
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry((tenant.to_owned(), minute))
            .or_default() += 1;
    }

    /// Sends the counts of finished minutes (all of them when `all`).
    pub fn flush_breaches(&self, all: bool) {
        let minute = chrono::Utc::now().timestamp() / 60;
        let done: Vec<((String, i64), u64)> = {
            let mut b = self
                .breaches
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let keys: Vec<(String, i64)> = b
                .keys()
                .filter(|(_, m)| all || *m < minute)
                .cloned()
                .collect();
            keys.into_iter()
                .filter_map(|k| b.remove(&k).map(|n| (k, n)))
                .collect()
        };
        for ((tenant, m), n) in done {
            let start = chrono::DateTime::from_timestamp(m * 60, 0).unwrap_or_default();
            self.send(
                &tenant,
                event(
                    "gateway.rate_limit.exceeded",
                    ("tenant", &tenant),
                    "denied",
                    "warning",
                    json!({"rejected": n, "minute": start.to_rfc3339()}),
                ),
            );
        }
    }

    /// An authentication failure (the tenant is unknown: it goes to the system tenant).
    pub fn auth_failure(&self, code: &str, path: &str) {
        self.send(
            &self.system_tenant.clone(),
            event(
                "gateway.auth.failed",
                ("route", path),
                "failure",
                "security",
                json!({"code": code}),
            ),
        );
    }

    /// The deciding rate-limit engine changed.
    pub fn engine_changed(&self, engine: &str, why: &str) {
        self.send(
            &self.system_tenant.clone(),
            event(
                "gateway.rate_limiter.engine_changed",
                ("rate_limiter", engine),
                "success",
                "warning",
                json!({"engine": engine, "reason": why}),
            ),
        );
    }
}
