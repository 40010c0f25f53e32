//! The auth service's settings.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use vigil_auth::KeyAlgorithm;

/// Everything `vigil auth serve` can be told.
#[derive(Clone)]
pub struct AuthSettings {
    /// Where to listen (port 0 picks a free one).
    pub listen: SocketAddr,
    /// `sqlite://…` or `postgres://…`: users, clients, API keys and the signing keys.
    pub database_url: vigil_core::DatabaseUrl,
    /// The `iss` of every token; also the base of the JWKS URL in the discovery document.
    /// `None`: `http://<listen address>`.
    pub issuer: Option<String>,
    /// The `aud` of every token.
    pub audience: String,
    /// Lifetime of issued tokens.
    pub token_ttl: Duration,
    /// Added to the token lifetime before a rotated-out key is retired.
    pub rotation_grace: Duration,
    /// `Cache-Control: max-age` of the JWKS.
    pub jwks_max_age: Duration,
    /// Algorithm of new keys.
    pub key_algorithm: KeyAlgorithm,
    /// How often the key ring is re-read from the database (picks up `vigil auth keys`
    /// changes made from another process) and due keys are retired.
    pub reload_interval: Duration,
    /// Minimum password length (at least 8).
    pub min_password_chars: usize,
    /// Failed logins of one account from one source before that source is slowed down.
    pub lockout_threshold: i64,
    /// The other login throttling limits (its `pair_free` is `lockout_threshold`).
    pub throttle: crate::throttle::ThrottlePolicy,
    /// Peers (the gateway) whose `X-Forwarded-For` names the caller for login throttling.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Where audit events go: the audit service's base URL. `None` with no in-process sink:
    /// events are logged.
    pub audit_url: Option<String>,
    /// Tenant whose chain records platform events (key rotation and retirement).
    pub system_tenant: String,
    /// Accept identity headers from loopback (development only).
    pub trust_headers: bool,
    /// Cedar capability policy replacing the shipped one.
    pub capability_policy: Option<PathBuf>,
}

impl AuthSettings {
    /// Defaults with SQLite at `database_url`.
    pub fn new(database_url: impl Into<vigil_core::DatabaseUrl>) -> AuthSettings {
        AuthSettings {
            listen: "127.0.0.1:8081".parse().expect("a valid address"),
            database_url: database_url.into(),
            issuer: None,
            audience: "vigil".into(),
            token_ttl: Duration::from_secs(900),
            rotation_grace: Duration::from_secs(300),
            jwks_max_age: Duration::from_secs(300),
            key_algorithm: KeyAlgorithm::EdDsa,
            reload_interval: Duration::from_secs(1),
            min_password_chars: 8,
            lockout_threshold: 5,
            throttle: crate::throttle::ThrottlePolicy::default(),
            trusted_proxies: Vec::new(),
            audit_url: None,
            system_tenant: "system".into(),
            trust_headers: false,
            capability_policy: None,
        }
    }
}

impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSettings")
            .field("listen", &self.listen)
            .field("database_url", &self.database_url)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("token_ttl", &self.token_ttl)
            .field("rotation_grace", &self.rotation_grace)
            .field("jwks_max_age", &self.jwks_max_age)
            .field("key_algorithm", &self.key_algorithm)
            .field("audit_url", &self.audit_url)
            .finish_non_exhaustive()
    }
}
