//! The audit outbox relay: events recorded in the outbox (in the same transaction as the change
//! they describe, already stamped with their producer position) are read in order and passed to
//! the service's [`AuditProducer`], which delivers them like every other service's events; a
//! row is deleted once the producer says its event is delivered (or refused for good, which it
//! counts and logs). The outbox is the auth service's spool: rows the producer could not deliver
//! stay for the next round, and a redelivered row is the same event, answered as a duplicate.

use crate::keyring::{unix_now, KeyRing};
use crate::store::AuthStore;
use std::time::Duration;
use vigil_auth::Claims;
use vigil_core::event::EventInput;
use vigil_core::ids::TenantId;
use vigil_producer::{AuditProducer, ProducerError, TokenSource};

/// Tokens this service issues itself to write a tenant's audit events (role `service`).
#[derive(Debug)]
pub struct KeyRingTokens {
    keys: KeyRing,
    issuer: String,
    audience: String,
}

impl KeyRingTokens {
    /// Tokens signed with `keys`, for `audience`.
    pub fn new(keys: KeyRing, issuer: String, audience: String) -> KeyRingTokens {
        KeyRingTokens {
            keys,
            issuer,
            audience,
        }
    }
}

impl TokenSource for KeyRingTokens {
    fn token(&self, tenant: &TenantId) -> String {
        let now = unix_now();
        self.keys.signer().sign(&Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: "service:vigil-auth".into(),
            exp: now + 60,
            iat: now,
            nbf: now,
            jti: uuid::Uuid::new_v4().simple().to_string(),
            tenant_id: tenant.as_str().to_owned(),
            roles: vec!["service".into()],
        })
    }
}

/// Relays one round: up to 500 events. Returns how many rows were cleared.
pub async fn relay(store: &AuthStore, producer: &AuditProducer) -> Result<usize, String> {
    let batch = store.outbox(500).await.map_err(|e| e.to_string())?;
    let mut done = Vec::new();
    let mut sends = Vec::new();
    for (id, tenant, event) in batch {
        let parsed = TenantId::parse(&tenant)
            .map_err(|e| e.to_string())
            .and_then(|t| {
                EventInput::new(event)
                    .validate(|| unreachable!("outbox events carry their id"))
                    .map(|e| (t, e))
                    .map_err(|e| e.to_string())
            });
        match parsed {
            Ok((tenant, event)) => {
                sends.push(async move { (id, producer.forward_durable(&tenant, event).await) })
            }
            Err(why) => {
                tracing::error!(outbox_id = id, reason = %why, "an audit outbox row is not an event; dropped");
                done.push(id);
            }
        }
    }
    let mut failed = None;
    for (id, result) in futures::future::join_all(sends).await {
        match result {
            Ok(()) => done.push(id),
            // Counted and logged by the producer; it will never be taken.
            Err(ProducerError::Invalid(_)) => done.push(id),
            Err(e) => failed = Some(e.to_string()),
        }
    }
    store
        .outbox_delivered(&done)
        .await
        .map_err(|e| e.to_string())?;
    match failed {
        None => Ok(done.len()),
        Some(e) => Err(e),
    }
}

/// Relays the outbox every `interval` until `stop` resolves, backing off while delivery fails;
/// on stop, makes one last attempt (what is left stays in the outbox).
pub async fn drain(
    store: AuthStore,
    producer: AuditProducer,
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
        // A round waits for delivery, which may take as long as the audit service is away:
        // a stop does not wait for it (the rows stay in the outbox).
        let round = tokio::select! {
            _ = &mut stop => break,
            r = relay(&store, &producer) => r,
        };
        wait = match round {
            Ok(n) if n > 0 => Duration::ZERO,
            Ok(_) => interval,
            Err(e) => {
                tracing::warn!(error = %e, "audit outbox delivery failed; will retry");
                (wait * 2).clamp(interval, Duration::from_secs(30))
            }
        };
    }
    match tokio::time::timeout(Duration::from_secs(5), relay(&store, &producer)).await {
        Ok(Ok(_)) => {}
        _ => tracing::warn!("audit outbox not fully delivered at shutdown; it stays queued"),
    }
}
