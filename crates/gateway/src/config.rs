//! The gateway's configuration (a TOML file, or built in code by `vigil dev` and tests).
//!
//! ```toml
//! listen = "127.0.0.1:8000"
//! max_body_bytes = 10485760
//! connect_timeout_ms = 2000
//! request_timeout_ms = 30000
//! audit_url = "http://127.0.0.1:8080"           # where the gateway's audit events go
//! audit_spool_dir = "/var/lib/vigil/gateway-spool"  # spool them there while it is away
//! health_path = "/readyz"       # upstreams of routes with several are probed here (2xx: in rotation)
//! health_interval_ms = 1000
//! eject_ms = 5000               # an upstream refusing connections sits out this long
//! shutdown_drain_ms = 0         # on SIGTERM: not ready, still serving, this long
//! serving_threads = 2           # default: one per core; 0: on the caller's runtime
//!
//! [auth]
//! jwks_url = "http://127.0.0.1:8081/.well-known/jwks.json"
//! issuer = "http://127.0.0.1:8081"
//! audience = "vigil"
//!
//! [rate_limit]
//! default_rpm = 600              # GATEWAY_RATE_LIMIT_RPM overrides
//! redis_url = "redis://127.0.0.1:6379"
//! key_prefix = "vigil:rl:"
//! fail_mode = "fail_open_local"  # or "fail_closed"
//! instances = 2                  # the fallback gives each instance 1/instances of a limit
//! redis_timeout_ms = 25
//! max_lease = 64                 # admissions one round trip may take ahead, far below the limit
//! shadow = false                 # count, don't reject
//! allow = ["internal"]           # never limited
//! tenants = { acme = 1200 }      # per-tenant overrides (requests per minute)
//!
//! [[routes]]
//! prefix = "/"
//! upstreams = ["http://127.0.0.1:8080"]
//! access = "authenticated"       # "public", "authenticated" or a capability such as "audit_read"
//! rpm = 300                      # optional: this route's own per-tenant limit
//!
//! [cors]
//! allowed_origins = ["https://console.example"]
//! ```

use crate::error::GatewayError;
use serde::Deserialize;
use std::collections::HashMap;
use std::net::SocketAddr;

/// Everything `vigil gateway serve` can be told.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Where to listen.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Largest request body passed upstream.
    #[serde(default = "default_body")]
    pub max_body_bytes: u64,
    /// Connecting to an upstream may take this long (then 502).
    #[serde(default = "default_connect")]
    pub connect_timeout_ms: u64,
    /// An upstream must answer within this (then 504).
    #[serde(default = "default_request")]
    pub request_timeout_ms: u64,
    /// Token verification.
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    /// Rate limits.
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
    /// Routes, matched by longest prefix.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// CORS.
    #[serde(default)]
    pub cors: CorsConfig,
    /// Where audit events go (the audit service's base URL); none: the log.
    #[serde(default)]
    pub audit_url: Option<String>,
    /// Upstreams of routes with more than one are probed with `GET` on this path every
    /// `health_interval_ms`; one that does not answer 2xx within the interval leaves the
    /// rotation until it does (an instance draining before a restart reports not ready). Empty:
    /// no probes.
    #[serde(default = "default_health_path")]
    pub health_path: String,
    /// How often upstreams are probed.
    #[serde(default = "default_health_interval")]
    pub health_interval_ms: u64,
    /// An upstream that refused a connection leaves the rotation this long (or until a probe
    /// finds it ready). Requests without a body are tried on the next upstream at once.
    #[serde(default = "default_eject")]
    pub eject_ms: u64,
    /// On shutdown, answer `/gateway/readyz` with 503 and keep serving this long before
    /// closing the listener (load balancers take the instance out of rotation first).
    #[serde(default)]
    pub shutdown_drain_ms: u64,
    /// Where the audit producer spools events the audit service did not take (durable mode);
    /// none: they wait in memory only, and are dropped — counted — when the queue is full.
    #[serde(default)]
    pub audit_spool_dir: Option<std::path::PathBuf>,
    /// Threads that serve requests, each a single-threaded runtime with its own listener on
    /// the port (`SO_REUSEPORT`: the kernel spreads connections over them), its own upstream
    /// connection pool and its own Redis connection, so a request and its upstream exchange
    /// stay on one thread, as nginx's workers do. Unset: one per core; 0: no threads of its
    /// own, requests are served on the runtime that runs the gateway (as tasks of a
    /// multi-threaded runtime, sharing one pool).
    #[serde(default)]
    pub serving_threads: Option<usize>,
}

fn default_listen() -> SocketAddr {
    "127.0.0.1:8000".parse().expect("valid")
}
fn default_body() -> u64 {
    10 * 1024 * 1024
}
fn default_connect() -> u64 {
    2_000
}
fn default_request() -> u64 {
    30_000
}
fn default_health_path() -> String {
    "/readyz".into()
}
fn default_health_interval() -> u64 {
    1_000
}
fn default_eject() -> u64 {
    5_000
}

/// Bearer tokens through the issuer's JWKS.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// The JWKS.
    pub jwks_url: String,
    /// Required `iss`.
    pub issuer: String,
    /// Required `aud`.
    #[serde(default = "default_audience")]
    pub audience: String,
    /// Clock skew on `exp`/`nbf`, seconds.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// API keys, checked against the auth service.
    #[serde(default)]
    pub api_keys: Option<crate::identity::ApiKeyConfig>,
}

fn default_audience() -> String {
    "vigil".into()
}
fn default_leeway() -> u64 {
    30
}

/// What happens while Redis is away.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FailModeConfig {
    /// Decide with the in-memory engine.
    #[default]
    FailOpenLocal,
    /// Refuse.
    FailClosed,
}

/// Rate limits. `Debug` hides a password in `redis_url`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Requests per minute per tenant.
    #[serde(default = "default_rpm")]
    pub default_rpm: u32,
    /// Requests that may arrive at once under the default limit (default: a tenth of the
    /// per-minute limit; route and tenant limits always use a tenth of theirs).
    #[serde(default)]
    pub burst: Option<u32>,
    /// Shared engine; none: in-memory only (one instance).
    #[serde(default)]
    pub redis_url: Option<String>,
    /// Prefix of every Redis key.
    #[serde(default = "default_prefix")]
    pub key_prefix: String,
    /// Behaviour while Redis is away.
    #[serde(default)]
    pub fail_mode: FailModeConfig,
    /// Gateway instances sharing the limits.
    #[serde(default = "one")]
    pub instances: u32,
    /// Timeout of one Redis decision.
    #[serde(default = "default_redis_timeout")]
    pub redis_timeout_ms: u64,
    /// Failures in a row that open the breaker.
    #[serde(default = "default_threshold")]
    pub breaker_threshold: u32,
    /// While open, probe Redis this often.
    #[serde(default = "default_probe")]
    pub breaker_probe_ms: u64,
    /// Count, don't reject.
    #[serde(default)]
    pub shadow: bool,
    /// Tenants never limited.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Per-tenant limits (requests per minute).
    #[serde(default)]
    pub tenants: HashMap<String, u32>,
    /// Most tenants the in-memory engine tracks at once.
    #[serde(default = "default_local_keys")]
    pub max_local_keys: usize,
    /// Most admissions one Redis round trip may take ahead for a key far below its limit
    /// (a lease, used by this instance's next requests within 50 ms; near the limit every
    /// decision is a round trip). The limit is never exceeded; unused leased admissions are
    /// lost, refusing early by at most a quarter of what remained. 1: every decision is a
    /// round trip.
    #[serde(default = "default_max_lease")]
    pub max_lease: u32,
}

impl std::fmt::Debug for RateLimitConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimitConfig")
            .field("default_rpm", &self.default_rpm)
            .field("burst", &self.burst)
            .field(
                "redis_url",
                &self.redis_url.as_deref().map(vigil_core::redact_url),
            )
            .field("key_prefix", &self.key_prefix)
            .field("fail_mode", &self.fail_mode)
            .field("instances", &self.instances)
            .field("redis_timeout_ms", &self.redis_timeout_ms)
            .field("shadow", &self.shadow)
            .field("allow", &self.allow)
            .field("tenants", &self.tenants)
            .field("max_lease", &self.max_lease)
            .finish_non_exhaustive()
    }
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults")
    }
}

fn default_rpm() -> u32 {
    600
}
fn default_prefix() -> String {
    "vigil:rl:".into()
}
fn one() -> u32 {
    1
}
fn default_redis_timeout() -> u64 {
    25
}
fn default_threshold() -> u32 {
    3
}
fn default_probe() -> u64 {
    500
}
fn default_max_lease() -> u32 {
    64
}
fn default_local_keys() -> usize {
    100_000
}

/// One route.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Path prefix (`/` matches everything).
    pub prefix: String,
    /// Upstream base URLs, used in turn.
    pub upstreams: Vec<String>,
    /// `public`, `authenticated`, or a capability name.
    #[serde(default = "default_access")]
    pub access: String,
    /// Remove the prefix before forwarding.
    #[serde(default)]
    pub strip_prefix: bool,
    /// This route's own per-tenant limit.
    #[serde(default)]
    pub rpm: Option<u32>,
}

fn default_access() -> String {
    "authenticated".into()
}

/// CORS.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    /// Origins allowed (`*` for any).
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Methods allowed (default GET, POST, PUT, PATCH, DELETE).
    #[serde(default)]
    pub allowed_methods: Vec<String>,
    /// Request headers allowed (default authorization, content-type, x-api-key, traceparent).
    #[serde(default)]
    pub allowed_headers: Vec<String>,
    /// Preflight cache, seconds.
    #[serde(default)]
    pub max_age_secs: Option<u64>,
}

/// `Err(GatewayError::Invalid(..))` unless `cond`.
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(GatewayError::Invalid(format!($($fmt)+)));
        }
    };
}

impl GatewayConfig {
    /// Parses a TOML document.
    pub fn from_toml(text: &str) -> Result<GatewayConfig, GatewayError> {
        let c: GatewayConfig = toml::from_str(text)?;
        c.check()?;
        Ok(c)
    }

    /// A config with defaults and no routes.
    pub fn empty() -> GatewayConfig {
        toml::from_str("").expect("defaults")
    }

    /// Refuses what cannot work.
    pub fn check(&self) -> Result<(), GatewayError> {
        ensure!(
            self.health_path.is_empty() || self.health_path.starts_with('/'),
            "health_path {:?} must start with / (or be empty: no probes)",
            self.health_path
        );
        for r in &self.routes {
            ensure!(
                r.prefix.starts_with('/'),
                "route prefix {:?} must start with /",
                r.prefix
            );
            ensure!(
                !r.upstreams.is_empty(),
                "route {} has no upstreams",
                r.prefix
            );
            for u in &r.upstreams {
                ensure!(
                    u.starts_with("http://") || u.starts_with("https://"),
                    "upstream {u:?} must be an http(s) URL"
                );
            }
            let needs_auth = r.access != "public";
            ensure!(
                !needs_auth || self.auth.is_some(),
                "route {} needs callers to authenticate but [auth] is not configured",
                r.prefix
            );
            if needs_auth && r.access != "authenticated" {
                ensure!(
                    vigil_security::capability::Capability::parse(&r.access).is_some(),
                    "route {}: access {:?} is not public, authenticated or a capability",
                    r.prefix,
                    r.access
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_in_the_config_never_reach_debug_output() {
        let c = GatewayConfig::from_toml(
            r#"
            [auth]
            jwks_url = "http://auth/.well-known/jwks.json"
            issuer = "http://auth"
            api_keys = { url = "http://auth", client_id = "vc_1", client_secret = "vcs_hunter2" }
            [rate_limit]
            redis_url = "redis://:s3cret@redis:6379"
            "#,
        )
        .unwrap();
        let d = format!("{c:?}");
        assert!(!d.contains("hunter2") && !d.contains("s3cret"), "{d}");
        assert!(d.contains("redis://:***@redis:6379"), "{d}");
    }

    mod fuzz {
        //! Arbitrary config text: a config or a clear error, never a panic; a config that
        //! passes `check` builds a route table that routes any path without panicking.
        use super::*;
        use crate::forward::upstream_uri;
        use crate::route::RouteTable;
        use proptest::prelude::*;

        fn accepted(text: &str, paths: &[String]) {
            match GatewayConfig::from_toml(text) {
                Err(e) => assert!(!e.to_string().is_empty()),
                Ok(c) => {
                    let table = RouteTable::new(&c.routes);
                    for p in paths {
                        if let Some(r) = table.find(p) {
                            if let Ok(uri) = p.parse::<axum::http::Uri>() {
                                let _ = upstream_uri(r, &r.upstream().base, &uri);
                            }
                        }
                    }
                }
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn arbitrary_text(text in ".{0,300}", paths in prop::collection::vec(".{0,40}", 0..4)) {
                accepted(&text, &paths);
            }

            /// Structured configs with arbitrary values where the keys are right.
            #[test]
            fn arbitrary_routes(
                routes in prop::collection::vec((
                    "[/a-z*?%.]{0,12}",
                    prop::collection::vec("(https?://)?[a-z0-9.:/%@\\[\\]-]{0,24}", 0..3),
                    prop::sample::select(vec!["public", "authenticated", "audit_read", "keys_manage", "nonsense", ""]),
                    any::<bool>(),
                    prop::option::of(any::<u32>()),
                ), 0..5),
                auth in any::<bool>(),
                rpm in any::<i64>(),
                paths in prop::collection::vec("/[a-z/%.?=&]{0,30}", 0..6),
            ) {
                let mut text = format!("[rate_limit]\ndefault_rpm = {rpm}\n");
                if auth {
                    text.push_str("[auth]\njwks_url = \"http://a/jwks\"\nissuer = \"http://a\"\n");
                }
                for (prefix, ups, access, strip, route_rpm) in &routes {
                    text.push_str(&format!(
                        "[[routes]]\nprefix = {prefix:?}\nupstreams = {ups:?}\naccess = {access:?}\nstrip_prefix = {strip}\n"
                    ));
                    if let Some(r) = route_rpm {
                        text.push_str(&format!("rpm = {r}\n"));
                    }
                }
                accepted(&text, &paths);
            }
        }
    }
}
