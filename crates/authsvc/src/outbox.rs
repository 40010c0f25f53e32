//! Delivery of the audit outbox: events are read in order, grouped by tenant, handed to an
//! [`AuditSink`] and deleted once it has taken them. A sink that fails leaves them in place
//! for the next round (the audit service recognises a redelivered event by its id).

use crate::keyring::{unix_now, KeyRing};
use crate::store::AuthStore;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use vigil_auth::Claims;
use vigil_core::ids::TenantId;

/// Where the auth service's audit events go.
#[async_trait::async_trait]
pub trait AuditSink: Send + Sync + std::fmt::Debug {
    /// Appends `events` (audit input format) to `tenant`'s chain.
    async fn send(&self, tenant: &TenantId, events: Vec<Value>) -> Result<(), SinkError>;
}

/// A failed delivery.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Try again later (the audit service is unreachable or unavailable).
    #[error("audit service unavailable: {0}")]
    Retry(String),
    /// The events were refused and never will be taken; they are dropped with an error log.
    #[error("audit service refused the events: {0}")]
    Refused(String),
}

/// Events go to an audit service over HTTP (`POST {url}/v1/events`), with a token this
/// service issues itself for the event's tenant and role `service`.
#[derive(Debug)]
pub struct HttpAuditSink {
    url: String,
    http: reqwest::Client,
    keys: KeyRing,
    issuer: String,
    audience: String,
}

impl HttpAuditSink {
    /// A sink posting to the audit service at `url`.
    pub fn new(url: &str, keys: KeyRing, issuer: String, audience: String) -> HttpAuditSink {
        HttpAuditSink {
            url: format!("{}/v1/events", url.trim_end_matches('/')),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("an HTTP client"),
            keys,
            issuer,
            audience,
        }
    }
}

#[async_trait::async_trait]
impl AuditSink for HttpAuditSink {
    async fn send(&self, tenant: &TenantId, events: Vec<Value>) -> Result<(), SinkError> {
        let now = unix_now();
        let token = self.keys.signer().sign(&Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: "service:vigil-auth".into(),
            exp: now + 60,
            iat: now,
            nbf: now,
            jti: uuid::Uuid::new_v4().simple().to_string(),
            tenant_id: tenant.as_str().to_owned(),
            roles: vec!["service".into()],
        });
        let r = self
            .http
            .post(&self.url)
            .bearer_auth(token)
            .json(&events)
            .send()
            .await
            .map_err(|e| SinkError::Retry(e.to_string()))?;
        let status = r.status();
        if status.is_success() {
            return Ok(());
        }
        let body = r.text().await.unwrap_or_default();
        if status.is_server_error() || status.as_u16() == 401 || status.as_u16() == 429 {
            // 401: the audit service may not have fetched a just-rotated key yet.
            Err(SinkError::Retry(format!("{status}: {body}")))
        } else {
            Err(SinkError::Refused(format!("{status}: {body}")))
        }
    }
}

/// No audit service configured: events go to the log.
#[derive(Debug)]
pub struct LogSink;

#[async_trait::async_trait]
impl AuditSink for LogSink {
    async fn send(&self, tenant: &TenantId, events: Vec<Value>) -> Result<(), SinkError> {
        for e in events {
            tracing::info!(tenant = %tenant, event = %e, "audit event (no audit service configured)");
        }
        Ok(())
    }
}

/// Delivers one round: up to 500 events. Returns how many were delivered or dropped.
pub async fn deliver(store: &AuthStore, sink: &dyn AuditSink) -> Result<usize, SinkError> {
    let batch = store
        .outbox(500)
        .await
        .map_err(|e| SinkError::Retry(e.to_string()))?;
    let mut done = Vec::new();
    let mut i = 0;
    let mut result = Ok(());
    // Consecutive runs of one tenant, in outbox order.
    while i < batch.len() {
        let tenant = batch[i].1.clone();
        let j = batch[i..]
            .iter()
            .position(|e| e.1 != tenant)
            .map_or(batch.len(), |n| i + n);
        let ids: Vec<i64> = batch[i..j].iter().map(|e| e.0).collect();
        let events: Vec<Value> = batch[i..j].iter().map(|e| e.2.clone()).collect();
        let sent = match TenantId::parse(&tenant) {
            Ok(t) => sink.send(&t, events).await,
            Err(_) => Err(SinkError::Refused(format!("{tenant:?} is not a tenant id"))),
        };
        match sent {
            Ok(()) => done.extend(ids),
            Err(SinkError::Refused(why)) => {
                tracing::error!(%tenant, reason = %why, count = ids.len(), "audit events refused; dropped");
                done.extend(ids);
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        }
        i = j;
    }
    store
        .outbox_delivered(&done)
        .await
        .map_err(|e| SinkError::Retry(e.to_string()))?;
    result.map(|()| done.len())
}

/// Delivers the outbox every `interval` until `stop` resolves, backing off while the sink
/// fails; on stop, makes one last attempt.
pub async fn drain(
    store: AuthStore,
    sink: Arc<dyn AuditSink>,
    interval: Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut wait = interval;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = match deliver(&store, sink.as_ref()).await {
            Ok(n) if n > 0 => Duration::ZERO,
            Ok(_) => interval,
            Err(e) => {
                tracing::warn!(error = %e, "audit outbox delivery failed; will retry");
                (wait * 2).clamp(interval, Duration::from_secs(30))
            }
        };
    }
    if let Err(e) = deliver(&store, sink.as_ref()).await {
        tracing::warn!(error = %e, "audit outbox not fully delivered at shutdown; it stays queued");
    }
}
