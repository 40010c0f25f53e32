//! The audit service's settings.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything `vigil audit serve` can be told.
#[derive(Clone)]
pub struct AuditSettings {
    /// Where to listen (port 0 picks a free one).
    pub listen: SocketAddr,
    /// `sqlite://…` or `postgres://…`.
    pub database_url: vigil_core::DatabaseUrl,
    /// Holds the checkpoint signing key (and the SQLite file by default).
    pub data_dir: PathBuf,
    /// Accept the caller's identity from `X-Tenant-ID`, `X-User-ID`, `X-Roles` (from
    /// loopback peers and `trusted_peers` only).
    pub trust_headers: bool,
    /// Non-loopback peers (the gateway) whose identity headers are trusted.
    pub trusted_peers: Vec<std::net::IpAddr>,
    /// A Cedar capability policy replacing the shipped one.
    pub capability_policy: Option<PathBuf>,
    /// Verifies `Authorization: Bearer` tokens (beside or instead of trusted headers).
    pub bearer: Option<std::sync::Arc<dyn vigil_security::token::TokenVerifier>>,
    /// Verify bearer tokens through this issuer's JWKS (takes the place of `bearer`).
    pub jwks: Option<vigil_auth::JwksConfig>,
    /// Sign a checkpoint after this many new events in a tenant...
    pub checkpoint_every: i64,
    /// ...or this long after its last one, whichever comes first.
    pub checkpoint_interval: Duration,
    /// Most events one group commit writes.
    pub max_group_events: usize,
    /// Name of the checkpoint signing key.
    pub key_name: String,
    /// Consume `audit.events.v1` from these brokers, in this group.
    pub kafka: Option<crate::kafka::KafkaSettings>,
    /// The fleet's redaction policy, applied to every event before it is hashed (off by
    /// default). Tenants' HMAC keys derive from `DATA_DIR/redaction-hmac.key`.
    pub redaction: vigil_core::redaction::Policy,
    /// Purge payload values older than this, every `retention_interval` (None: keep all).
    pub retention: Option<Duration>,
    /// How often the retention job runs.
    pub retention_interval: Duration,
    /// Verify every tenant in the background this often (None: never).
    pub verify_every: Option<Duration>,
    /// How webhook deliveries are made.
    pub webhooks: crate::webhooks::WebhookSettings,
    /// On shutdown, answer `/readyz` with 503 and keep serving this long before closing the
    /// listener, so load balancers (the gateway's probes, a Kubernetes Service) take the
    /// instance out of rotation first and no request meets a closed port.
    pub shutdown_drain: Duration,
    /// The web console and the live tail.
    pub console: ConsoleSettings,
}

/// The web console (`/console`) and the live tail it shows.
#[derive(Clone, Debug)]
pub struct ConsoleSettings {
    /// The auth service (`http://host:port`) the console logs users in through; without one
    /// only the development identity (trusted headers from loopback) can sign in.
    pub auth_url: Option<String>,
    /// A link to the tracing backend for a trace id: `{trace_id}` in it is replaced
    /// (`http://jaeger:16686/trace/{trace_id}`).
    pub trace_url: Option<String>,
    /// A heartbeat on a live tail while no records arrive.
    pub tail_heartbeat: Duration,
    /// A live tail without records this long is closed (the client reconnects).
    pub tail_idle: Duration,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        ConsoleSettings {
            auth_url: None,
            trace_url: None,
            tail_heartbeat: Duration::from_secs(15),
            tail_idle: Duration::from_secs(300),
        }
    }
}

impl AuditSettings {
    /// Defaults for `data_dir`: SQLite inside it, loopback, headers trusted.
    pub fn embedded(data_dir: PathBuf) -> AuditSettings {
        AuditSettings {
            listen: "127.0.0.1:8080".parse().expect("a valid address"),
            database_url: format!("sqlite://{}", data_dir.join("audit.db").display()).into(),
            data_dir,
            trust_headers: true,
            trusted_peers: Vec::new(),
            capability_policy: None,
            bearer: None,
            jwks: None,
            checkpoint_every: 1000,
            checkpoint_interval: Duration::from_secs(60),
            max_group_events: 5000,
            key_name: "vigil-audit".into(),
            kafka: None,
            redaction: Default::default(),
            retention: None,
            retention_interval: Duration::from_secs(3600),
            verify_every: Some(Duration::from_secs(3600)),
            webhooks: Default::default(),
            shutdown_drain: Duration::ZERO,
            console: ConsoleSettings::default(),
        }
    }
}

impl std::fmt::Debug for AuditSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditSettings")
            .field("listen", &self.listen)
            .field("database_url", &self.database_url)
            .field("data_dir", &self.data_dir)
            .field("trust_headers", &self.trust_headers)
            .field("trusted_peers", &self.trusted_peers)
            .field("capability_policy", &self.capability_policy)
            .field("bearer", &self.bearer)
            .field("jwks", &self.jwks)
            .field("checkpoint_every", &self.checkpoint_every)
            .field("checkpoint_interval", &self.checkpoint_interval)
            .field("max_group_events", &self.max_group_events)
            .field("key_name", &self.key_name)
            .field("kafka", &self.kafka)
            .field("redaction", &self.redaction)
            .field("retention", &self.retention)
            .field("retention_interval", &self.retention_interval)
            .field("verify_every", &self.verify_every)
            .field("webhooks", &self.webhooks)
            .field("shutdown_drain", &self.shutdown_drain)
            .field("console", &self.console)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_password_never_reaches_debug_output() {
        let mut s = AuditSettings::embedded("/tmp/x".into());
        s.database_url = "postgres://vigil:hunter2@db:5432/audit".into();
        let d = format!("{s:?}");
        assert!(!d.contains("hunter2"), "{d}");
        assert!(d.contains("postgres://vigil:***@db:5432/audit"));
    }
}
