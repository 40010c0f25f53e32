//! Signed webhooks: a tenant subscribes a URL to its audit records (by filter, e.g.
//! `min_severity: security`) and to Vigil's alerts about it (a chain that fails
//! verification); deliveries are signed per Standard Webhooks (`vigil_core::webhook`), tried
//! again with exponential backoff, logged, and dead-lettered after the last attempt.
//!
//! The tenant's chain is the outbox: each subscription keeps a cursor into it, and a worker
//! turns records past the cursor into deliveries and moves the cursor in one transaction, so a
//! restart neither loses nor repeats a notification. Delivery is at least once (a crash
//! between a receiver's 2xx and its recording sends the message again, with the same
//! `webhook-id` for the receiver to deduplicate).

use crate::metrics::AuditMetrics;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use vigil_core::ids::TenantId;
use vigil_core::time::Timestamp;
use vigil_core::webhook::{self, Filter, Keyed, Secret, SecretKey};
use vigil_store::{Attempt, Delivery, NewDelivery, Store, StoreError, WebhookSubscription};

/// File name of the key that seals subscriptions' secrets, in the data directory.
pub const SECRET_KEY_FILE: &str = "webhook-secret.key";

/// What subscriptions may be sent.
pub const KINDS: [&str; 2] = ["events", "alerts"];

/// How deliveries are made.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// How often the worker looks for new records and due deliveries.
    pub poll: Duration,
    /// The wait after the first failure; doubled after each (at most an hour).
    pub backoff: Duration,
    /// Attempts before a delivery is dead-lettered.
    pub max_attempts: u32,
    /// A receiver that has not answered by then has failed the attempt.
    pub timeout: Duration,
    /// How long a rotated-out secret still signs deliveries.
    pub rotation_overlap: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            poll: Duration::from_millis(500),
            backoff: Duration::from_secs(5),
            max_attempts: 8,
            timeout: Duration::from_secs(10),
            rotation_overlap: Duration::from_secs(24 * 3600),
        }
    }
}

/// Why a webhook request is refused.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The request is not a valid subscription.
    #[error("{0}")]
    Invalid(String),
    /// No such subscription (or delivery) in the tenant.
    #[error("no such webhook subscription or delivery in this tenant")]
    NotFound,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored secret does not open with this service's key.
    #[error("a stored webhook secret does not open: {0}")]
    Secret(String),
}

/// A new subscription, with its secret (shown once).
#[derive(Debug)]
pub struct Created {
    /// The subscription.
    pub subscription: WebhookSubscription,
    /// Its signing secret.
    pub secret: Secret,
}

/// Subscriptions, deliveries and the worker.
#[derive(Debug)]
pub struct Webhooks {
    store: Arc<dyn Store>,
    key: SecretKey,
    http: reqwest::Client,
    settings: WebhookSettings,
    metrics: AuditMetrics,
}

fn now_ms() -> i64 {
    Timestamp::now().micros() / 1000
}

impl Webhooks {
    /// Over `store`, sealing secrets with `key`.
    pub fn new(
        store: Arc<dyn Store>,
        key: SecretKey,
        settings: WebhookSettings,
        metrics: AuditMetrics,
    ) -> Webhooks {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("vigil-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("an HTTP client");
        Webhooks {
            store,
            key,
            http,
            settings,
            metrics,
        }
    }

    /// Subscribes `url` of `tenant` to `kinds`, from the chain's head on (history is not sent).
    pub async fn create(
        &self,
        tenant: &TenantId,
        url: &str,
        kinds: Vec<String>,
        filter: Filter,
    ) -> Result<Created, WebhookError> {
        let parsed =
            reqwest::Url::parse(url).map_err(|e| WebhookError::Invalid(format!("url: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https")
            || parsed.host_str().is_none()
            || url.len() > 2048
            || !parsed.username().is_empty()
        {
            return Err(WebhookError::Invalid(
                "url: an http(s) URL with a host, without credentials, of at most 2048 characters"
                    .into(),
            ));
        }
        let kinds = if kinds.is_empty() {
            vec!["events".to_owned()]
        } else {
            kinds
        };
        if let Some(k) = kinds.iter().find(|k| !KINDS.contains(&k.as_str())) {
            return Err(WebhookError::Invalid(format!(
                "kinds: {k:?} is not one of events, alerts"
            )));
        }
        filter.validate().map_err(WebhookError::Invalid)?;
        let id = format!("wh_{}", uuid::Uuid::now_v7().simple());
        let secret = Secret::generate();
        let head = self.store.head(tenant).await?;
        let subscription = WebhookSubscription {
            secrets: self.key.seal(
                tenant.as_str(),
                &id,
                &[Keyed {
                    secret: secret.clone(),
                    until: None,
                }],
            ),
            id,
            tenant_id: tenant.to_string(),
            url: url.to_owned(),
            kinds,
            filter: serde_json::to_string(&filter).expect("JSON"),
            cursor: head.seq,
            created_at: Timestamp::now().to_rfc3339(),
        };
        self.store.create_webhook(&subscription).await?;
        Ok(Created {
            subscription,
            secret,
        })
    }

    /// The tenant's subscriptions (secrets stay sealed).
    pub async fn list(&self, tenant: &TenantId) -> Result<Vec<WebhookSubscription>, StoreError> {
        self.store.webhooks(Some(tenant)).await
    }

    /// Removes a subscription and its delivery log.
    pub async fn delete(&self, tenant: &TenantId, id: &str) -> Result<(), WebhookError> {
        match self.store.delete_webhook(tenant, id).await? {
            true => Ok(()),
            false => Err(WebhookError::NotFound),
        }
    }

    /// A new current secret; the one it replaces keeps signing (beside it) for the overlap,
    /// so receivers can switch without refusing a delivery. Returns the new secret and when
    /// the old one stops.
    pub async fn rotate(&self, tenant: &TenantId, id: &str) -> Result<(Secret, i64), WebhookError> {
        let sub = self.find(tenant, id).await?;
        let now = Timestamp::now().micros() / 1_000_000;
        let until = now + self.settings.rotation_overlap.as_secs() as i64;
        let old = self.secrets(&sub)?;
        let secret = Secret::generate();
        let mut next = vec![Keyed {
            secret: secret.clone(),
            until: None,
        }];
        // The current one is honoured until `until`; older ones keep their own end.
        next.extend(
            old.into_iter()
                .map(|k| Keyed {
                    until: Some(k.until.unwrap_or(until).min(until)),
                    secret: k.secret,
                })
                .filter(|k| k.until.is_some_and(|u| u > now)),
        );
        let sealed = self.key.seal(tenant.as_str(), id, &next);
        if !self.store.set_webhook_secrets(tenant, id, &sealed).await? {
            return Err(WebhookError::NotFound);
        }
        Ok((secret, until))
    }

    /// A subscription's delivery log.
    pub async fn deliveries(
        &self,
        tenant: &TenantId,
        id: &str,
        status: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Delivery>, WebhookError> {
        self.find(tenant, id).await?;
        Ok(self.store.deliveries(tenant, id, status, limit).await?)
    }

    /// Sends a dead-lettered delivery again.
    pub async fn retry(
        &self,
        tenant: &TenantId,
        id: &str,
        delivery: &str,
    ) -> Result<(), WebhookError> {
        match self
            .store
            .retry_delivery(tenant, id, delivery, now_ms())
            .await?
        {
            true => Ok(()),
            false => Err(WebhookError::NotFound),
        }
    }

    async fn find(&self, tenant: &TenantId, id: &str) -> Result<WebhookSubscription, WebhookError> {
        self.store
            .webhooks(Some(tenant))
            .await?
            .into_iter()
            .find(|s| s.id == id)
            .ok_or(WebhookError::NotFound)
    }

    fn secrets(&self, sub: &WebhookSubscription) -> Result<Vec<Keyed>, WebhookError> {
        self.key
            .open(&sub.tenant_id, &sub.id, &sub.secrets)
            .map_err(|e| WebhookError::Secret(e.to_string()))
    }

    /// Enqueues an alert about `tenant` (`vigil.alert`: `name`, `status` firing or resolved,
    /// `details`) for its subscriptions to alerts.
    pub async fn alert(
        &self,
        tenant: &TenantId,
        name: &str,
        status: &str,
        details: serde_json::Value,
    ) -> Result<(), StoreError> {
        let now = Timestamp::now();
        for sub in self.store.webhooks(Some(tenant)).await? {
            if !sub.kinds.iter().any(|k| k == "alerts") {
                continue;
            }
            let msg = format!("msg_{}", uuid::Uuid::now_v7().simple());
            let body = serde_json::json!({
                "type": "vigil.alert",
                "timestamp": now.to_rfc3339(),
                "data": {"alert": name, "status": status, "tenant_id": tenant.as_str(), "details": details},
            });
            let d = NewDelivery {
                id: format!("dlv_{}", uuid::Uuid::now_v7().simple()),
                message_id: msg,
                event_type: "vigil.alert".into(),
                body: body.to_string(),
            };
            self.store
                .enqueue_deliveries(tenant, &sub.id, &[d], None, now)
                .await?;
        }
        Ok(())
    }

    /// Turns records past each subscription's cursor into deliveries (a bounded batch per
    /// subscription and pass).
    async fn match_records(&self, subs: &[WebhookSubscription]) -> Result<(), StoreError> {
        const BATCH: i64 = 500;
        for sub in subs
            .iter()
            .filter(|s| s.kinds.iter().any(|k| k == "events"))
        {
            let Ok(tenant) = TenantId::parse(&sub.tenant_id) else {
                continue;
            };
            let filter: Filter = serde_json::from_str(&sub.filter).unwrap_or_default();
            let records = self.store.scan(&tenant, sub.cursor, BATCH).await?;
            let Some(last) = records.last().map(|r| r.seq) else {
                continue;
            };
            let deliveries: Vec<NewDelivery> = records
                .iter()
                .filter(|r| filter.matches(&r.action, &r.severity))
                .map(|r| NewDelivery {
                    id: format!("dlv_{}", uuid::Uuid::now_v7().simple()),
                    message_id: format!("msg_{}", r.event_id.replace('-', "")),
                    event_type: "audit.event".into(),
                    body: serde_json::json!({
                        "type": "audit.event",
                        "timestamp": r.received_at,
                        "data": {
                            "tenant_id": r.tenant_id,
                            "seq": r.seq,
                            "event_id": r.event_id,
                            "occurred_at": r.occurred_at,
                            "received_at": r.received_at,
                            "action": r.action,
                            "severity": r.severity,
                            "outcome": r.outcome,
                            "actor": {"type": r.actor.kind, "id": r.actor.id},
                            "resource": {"type": r.resource.kind, "id": r.resource.id},
                            "source": {"service": r.source.service},
                            "trace_id": r.trace_id,
                            // The payload is not sent: the receiver reads the record with its
                            // own credentials, through its own view.
                            "href": format!("/v1/events/{}", r.event_id),
                        },
                    })
                    .to_string(),
                })
                .collect();
            self.store
                .enqueue_deliveries(&tenant, &sub.id, &deliveries, Some(last), Timestamp::now())
                .await?;
        }
        Ok(())
    }

    /// Makes one attempt of each due delivery.
    async fn deliver_due(&self, subs: &[WebhookSubscription]) -> Result<(), StoreError> {
        let due = self.store.due_deliveries(now_ms(), 64).await?;
        let by_id: HashMap<&str, &WebhookSubscription> =
            subs.iter().map(|s| (s.id.as_str(), s)).collect();
        let attempts = due.into_iter().filter_map(|d| {
            let sub = *by_id.get(d.subscription_id.as_str())?;
            Some(self.attempt(sub, d))
        });
        for r in futures::future::join_all(attempts).await {
            r?;
        }
        Ok(())
    }

    async fn attempt(&self, sub: &WebhookSubscription, d: Delivery) -> Result<(), StoreError> {
        let now = Timestamp::now().micros() / 1_000_000;
        let outcome = match self.secrets(sub) {
            Err(e) => Err((None, e.to_string())),
            Ok(secrets) => {
                let signature = webhook::signature_header(
                    &webhook::active(&secrets, now),
                    &d.message_id,
                    now,
                    d.body.as_bytes(),
                );
                let sent = self
                    .http
                    .post(&sub.url)
                    .header("content-type", "application/json")
                    .header("webhook-id", &d.message_id)
                    .header("webhook-timestamp", now.to_string())
                    .header("webhook-signature", signature)
                    .body(d.body.clone())
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().is_success() => Ok(i64::from(r.status().as_u16())),
                    Ok(r) => Err((
                        Some(i64::from(r.status().as_u16())),
                        format!("the receiver answered {}", r.status()),
                    )),
                    Err(e) => Err((None, e.without_url().to_string())),
                }
            }
        };
        let attempts = u32::try_from(d.attempts)
            .unwrap_or(u32::MAX)
            .saturating_add(1);
        let (attempt, label) = match outcome {
            Ok(status) => (Attempt::Delivered { status }, "delivered"),
            Err((status, error)) if attempts >= self.settings.max_attempts => {
                tracing::warn!(tenant = %sub.tenant_id, subscription = %sub.id, delivery = %d.id,
                    attempts, error = %error, "webhook delivery dead-lettered");
                (Attempt::Dead { status, error }, "dead")
            }
            Err((status, error)) => {
                let wait = webhook::backoff(self.settings.backoff, attempts);
                (
                    Attempt::Retry {
                        next_at: now_ms() + wait.as_millis() as i64,
                        status,
                        error,
                    },
                    "failed",
                )
            }
        };
        self.metrics
            .webhook_deliveries
            .with_label_values(&[label])
            .inc();
        self.store
            .record_attempt(&d.id, &attempt, Timestamp::now())
            .await
    }

    /// One pass of the worker: new records matched, due deliveries attempted.
    pub async fn run_once(&self) -> Result<(), StoreError> {
        let subs = self.store.webhooks(None).await?;
        if subs.is_empty() {
            return Ok(());
        }
        // The cursors in `subs` are now stale, but delivery needs only URLs and secrets.
        self.match_records(&subs).await?;
        self.deliver_due(&subs).await
    }

    /// Runs the worker until `stop` turns true, between passes: a pass under way finishes, so
    /// a delivery the receiver got is recorded as delivered and not sent again after a
    /// restart.
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.settings.poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            if *stop.borrow() {
                return;
            }
            if let Err(e) = self.run_once().await {
                tracing::warn!(error = %e, "webhook worker: the store failed; trying again");
            }
        }
    }
}
