//! The gateway's audit events, emitted through the audit producer (HTTP to the audit service as
//! a trusted peer, spooled on disk when `audit_spool_dir` is set). Rate-limit breaches are
//! aggregated per tenant and minute; authentication failures and limiter engine changes are
//! emitted as they happen, into the system tenant. Emitting never slows a request.

use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vigil_core::builder::EventBuilder;
use vigil_core::event::{Actor, ActorType, Outcome, Resource, Severity};
use vigil_core::ids::TenantId;
use vigil_producer::transport::LogTransport;
use vigil_producer::{
    AuditProducer, HttpAuth, HttpTransport, Mode, ProducerConfig, ProducerError, Transport,
};

/// `source.service` of the gateway's events.
const SERVICE: &str = "vigil-gateway";

/// The gateway's audit events.
#[derive(Debug, Clone)]
pub struct GatewayAudit {
    producer: AuditProducer,
    breaches: Arc<Mutex<HashMap<(String, i64), u64>>>,
    system_tenant: TenantId,
}

fn event(
    action: &str,
    resource: (&str, &str),
    outcome: Outcome,
    severity: Severity,
    payload: Value,
) -> EventBuilder {
    let Value::Object(payload) = payload else {
        unreachable!("payloads here are objects")
    };
    EventBuilder::new(
        action,
        Actor::new(ActorType::System, SERVICE),
        Resource::new(resource.0, resource.1),
        outcome,
    )
    .severity(severity)
    .payload(payload)
}

impl GatewayAudit {
    /// Starts the producer: to `audit_url` when given (else the log), spooling in `spool_dir`
    /// when given (else in memory only, dropping — counted — when the queue is full).
    pub async fn start(
        audit_url: Option<&str>,
        spool_dir: Option<&std::path::Path>,
        system_tenant: &str,
        registry: &prometheus::Registry,
    ) -> Result<GatewayAudit, ProducerError> {
        let transport: Arc<dyn Transport> = match audit_url {
            Some(url) => Arc::new(HttpTransport::new(url, HttpAuth::TrustedHeaders)),
            None => Arc::new(LogTransport),
        };
        let mut config = ProducerConfig::new(SERVICE);
        match spool_dir {
            Some(dir) => config = config.with_spool(dir),
            None => config.mode = Mode::DropOnFull,
        }
        let producer = AuditProducer::start(config, transport, registry).await?;
        let me = GatewayAudit {
            producer,
            breaches: Default::default(),
            system_tenant: TenantId::parse(system_tenant).expect("a valid system tenant"),
        };
        let flusher = me.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                flusher.flush_breaches(false);
            }
        });
        Ok(me)
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

    /// Emits the counts of finished minutes (all of them when `all`).
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
            let Ok(tenant_id) = TenantId::parse(&tenant) else {
                continue;
            };
            let start = chrono::DateTime::from_timestamp(m * 60, 0).unwrap_or_default();
            self.producer.emit(
                &tenant_id,
                event(
                    "gateway.rate_limit.exceeded",
                    ("tenant", &tenant),
                    Outcome::Denied,
                    Severity::Warning,
                    json!({"rejected": n, "minute": start.to_rfc3339()}),
                ),
            );
        }
    }

    /// An authentication failure (the tenant is unknown: it goes to the system tenant).
    pub fn auth_failure(&self, code: &str, path: &str) {
        self.producer.emit(
            &self.system_tenant,
            event(
                "gateway.auth.failed",
                ("route", path),
                Outcome::Failure,
                Severity::Security,
                json!({"code": code}),
            ),
        );
    }

    /// The deciding rate-limit engine changed.
    pub fn engine_changed(&self, engine: &str, why: &str) {
        self.producer.emit(
            &self.system_tenant,
            event(
                "gateway.rate_limiter.engine_changed",
                ("rate_limiter", engine),
                Outcome::Success,
                Severity::Warning,
                json!({"engine": engine, "reason": why}),
            ),
        );
    }

    /// Emits the open breach counts and delivers (or spools) everything queued.
    pub async fn shutdown(&self) {
        self.flush_breaches(true);
        self.producer.shutdown().await;
    }
}
