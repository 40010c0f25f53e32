//! Routing, identity, limits and forwarding.

use crate::audit::GatewayAudit;
use crate::config::{FailModeConfig, GatewayConfig, RouteConfig};
use crate::limiter::{
    Breaker, Decision, Engine, FailMode, Limit, MemoryLimiter, RedisLimiter, TransitionSink,
};
use anyhow::Context;
use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use vigil_auth::{JwksConfig, JwksVerifier};
use vigil_security::capability::{Capability, CapabilityPolicy};
use vigil_security::context::{Guard, IdentitySource, SecurityConfig, SecurityContext};
use vigil_security::error::ApiError;
use vigil_security::http_metrics::{HttpMetrics, MAX_ERROR_CODES};

/// Who may use a route.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Access {
    Public,
    Authenticated,
    Capability(Capability),
}

#[derive(Debug)]
struct Route {
    prefix: String,
    upstreams: Vec<String>,
    next: AtomicUsize,
    access: Access,
    strip_prefix: bool,
    rpm: Option<u32>,
}

impl Route {
    fn from(c: &RouteConfig) -> Route {
        Route {
            prefix: c.prefix.clone(),
            upstreams: c
                .upstreams
                .iter()
                .map(|u| u.trim_end_matches('/').to_owned())
                .collect(),
            next: AtomicUsize::new(0),
            access: match c.access.as_str() {
                "public" => Access::Public,
                "authenticated" => Access::Authenticated,
                cap => Access::Capability(
                    Capability::parse(cap).expect("checked by GatewayConfig::check"),
                ),
            },
            strip_prefix: c.strip_prefix,
            rpm: c.rpm,
        }
    }

    fn matches(&self, path: &str) -> bool {
        path.starts_with(&self.prefix)
            && (self.prefix.ends_with('/')
                || path.len() == self.prefix.len()
                || path.as_bytes()[self.prefix.len()] == b'/')
    }

    /// The next upstream, round-robin.
    fn upstream(&self) -> &str {
        &self.upstreams[self.next.fetch_add(1, Ordering::Relaxed) % self.upstreams.len()]
    }
}

enum Limiter {
    Memory(MemoryLimiter),
    Shared(Arc<Breaker>),
}

#[derive(Clone)]
struct Metrics {
    checks: IntCounterVec,
    rejections: IntCounterVec,
    decision: HistogramVec,
    usage: Histogram,
    backend: IntGaugeVec,
    transitions: IntCounterVec,
    upstream_latency: HistogramVec,
    upstream_status: IntCounterVec,
}

impl Metrics {
    fn new(r: &Registry) -> Metrics {
        let checks = IntCounterVec::new(
            Opts::new(
                "gateway_rate_limit_checks_total",
                "Rate-limit decisions by engine and outcome",
            ),
            &["engine", "outcome"],
        )
        .expect("valid");
        let rejections = IntCounterVec::new(
            Opts::new(
                "gateway_rate_limit_rejections_total",
                "Requests refused (or, in shadow mode, that would be) by a rate limit",
            ),
            &["mode"],
        )
        .expect("valid");
        let decision = HistogramVec::new(
            HistogramOpts::new(
                "gateway_rate_limiter_decision_seconds",
                "Time to decide one request's rate limit",
            )
            .buckets(vec![
                0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
            ]),
            &["engine"],
        )
        .expect("valid");
        let usage = Histogram::with_opts(
            HistogramOpts::new(
                "gateway_rate_window_usage",
                "Share of the burst in use after each decision (0 to 1)",
            )
            .buckets(vec![0.1, 0.25, 0.5, 0.75, 0.9, 1.0]),
        )
        .expect("valid");
        let backend = IntGaugeVec::new(
            Opts::new(
                "gateway_rate_limiter_backend",
                "1 for the engine that decides now",
            ),
            &["engine"],
        )
        .expect("valid");
        let transitions = IntCounterVec::new(
            Opts::new(
                "gateway_rate_limiter_transitions_total",
                "Changes of the deciding engine",
            ),
            &["to"],
        )
        .expect("valid");
        let upstream_latency = HistogramVec::new(
            HistogramOpts::new(
                "gateway_upstream_seconds",
                "Upstream response time by route",
            )
            .buckets(vec![
                0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
            ]),
            &["route"],
        )
        .expect("valid");
        let upstream_status = IntCounterVec::new(
            Opts::new(
                "gateway_upstream_responses_total",
                "Upstream responses by route and status",
            ),
            &["route", "status"],
        )
        .expect("valid");
        for m in [
            Box::new(checks.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(rejections.clone()),
            Box::new(decision.clone()),
            Box::new(usage.clone()),
            Box::new(backend.clone()),
            Box::new(transitions.clone()),
            Box::new(upstream_latency.clone()),
            Box::new(upstream_status.clone()),
        ] {
            r.register(m).expect("registered once");
        }
        Metrics {
            checks,
            rejections,
            decision,
            usage,
            backend,
            transitions,
            upstream_latency,
            upstream_status,
        }
    }
}

/// Records engine changes: log, metric, audit event.
#[derive(Debug)]
struct Transitions {
    backend: IntGaugeVec,
    transitions: IntCounterVec,
    audit: GatewayAudit,
}

impl TransitionSink for Transitions {
    fn changed(&self, to: Engine, why: &str) {
        let (now, before) = match to {
            Engine::Shared => ("redis", "memory"),
            Engine::Fallback => ("memory", "redis"),
        };
        tracing::warn!(engine = now, reason = why, "rate limiter engine changed");
        self.backend.with_label_values(&[now]).set(1);
        self.backend.with_label_values(&[before]).set(0);
        self.transitions.with_label_values(&[now]).inc();
        self.audit.engine_changed(now, why);
    }
}

/// The gateway's shared state.
struct GatewayState {
    routes: Vec<Route>,
    http: UpstreamClient,
    limiter: Limiter,
    config: GatewayConfig,
    metrics: Metrics,
    registry: Registry,
    audit: GatewayAudit,
    jwks: Option<JwksVerifier>,
    cors_methods: String,
    cors_headers: String,
}

type Shared = Arc<GatewayState>;

/// hyper's pooled client, forwarding axum bodies as they are (no conversion per request).
type UpstreamClient =
    hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Body>;

/// A built, bound gateway.
pub struct Gateway {
    listener: TcpListener,
    router: Router,
    state: Shared,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("listen", &self.listener.local_addr().ok())
            .finish_non_exhaustive()
    }
}

const IDENTITY_HEADERS: [&str; 3] = ["x-tenant-id", "x-user-id", "x-roles"];
/// Hop-by-hop headers (RFC 9110 §7.6.1), never forwarded.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
];

impl Gateway {
    /// Connects what the config names (Redis, the JWKS) and binds.
    pub async fn build(config: GatewayConfig) -> anyhow::Result<Gateway> {
        config.check()?;
        let registry = Registry::new();
        let metrics = Metrics::new(&registry);
        let audit = GatewayAudit::start(
            config.audit_url.as_deref(),
            config.audit_spool_dir.as_deref(),
            "system",
            &registry,
        )
        .await
        .context("starting the gateway's audit producer")?;
        let rl = &config.rate_limit;
        let limiter = match &rl.redis_url {
            None => {
                metrics.backend.with_label_values(&["memory"]).set(1);
                Limiter::Memory(MemoryLimiter::new(rl.max_local_keys))
            }
            Some(url) => {
                let timeout = Duration::from_millis(rl.redis_timeout_ms.max(1));
                let redis = RedisLimiter::connect(
                    url,
                    &rl.key_prefix,
                    timeout.max(Duration::from_millis(200)),
                )
                .await
                .with_context(|| {
                    format!("connecting to Redis at {}", vigil_core::redact_url(url))
                })?;
                metrics.backend.with_label_values(&["redis"]).set(1);
                metrics.backend.with_label_values(&["memory"]).set(0);
                let sink = Arc::new(Transitions {
                    backend: metrics.backend.clone(),
                    transitions: metrics.transitions.clone(),
                    audit: audit.clone(),
                });
                Limiter::Shared(Breaker::new(
                    Arc::new(redis),
                    match rl.fail_mode {
                        FailModeConfig::FailOpenLocal => FailMode::OpenLocal,
                        FailModeConfig::FailClosed => FailMode::Closed,
                    },
                    rl.instances,
                    timeout,
                    rl.breaker_threshold,
                    Duration::from_millis(rl.breaker_probe_ms),
                    rl.max_local_keys,
                    sink,
                ))
            }
        };
        let jwks = match &config.auth {
            Some(a) => {
                let mut c =
                    JwksConfig::new(a.jwks_url.clone(), a.issuer.clone(), a.audience.clone());
                c.leeway = Duration::from_secs(a.leeway_secs);
                let v = JwksVerifier::start(c, &registry);
                if let Err(e) = v.refresh().await {
                    tracing::warn!(error = %e, "the issuer's JWKS is not reachable yet");
                }
                Some(v)
            }
            None => None,
        };
        let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_millis(config.connect_timeout_ms)));
        connector.set_nodelay(true);
        let http: UpstreamClient =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_max_idle_per_host(256)
                .pool_idle_timeout(Duration::from_secs(60))
                .build(connector);
        let mut routes: Vec<Route> = config.routes.iter().map(Route::from).collect();
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        let cors = &config.cors;
        let state = Arc::new(GatewayState {
            routes,
            http,
            limiter,
            cors_methods: if cors.allowed_methods.is_empty() {
                "GET, POST, PUT, PATCH, DELETE".into()
            } else {
                cors.allowed_methods.join(", ")
            },
            cors_headers: if cors.allowed_headers.is_empty() {
                "authorization, content-type, x-api-key, traceparent".into()
            } else {
                cors.allowed_headers.join(", ")
            },
            metrics,
            registry,
            audit,
            jwks: jwks.clone(),
            config: config.clone(),
        });
        if let Limiter::Shared(b) = &state.limiter {
            let b = Arc::clone(b);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    b.fallback().evict_idle();
                }
            });
        } else {
            let s = Arc::clone(&state);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    if let Limiter::Memory(m) = &s.limiter {
                        m.evict_idle();
                    }
                }
            });
        }
        let guard = Guard::new(CapabilityPolicy::shipped(), &state.registry);
        let source = IdentitySource {
            trusted_headers: None,
            bearer: jwks.map(|v| {
                Arc::new(crate::identity::GatewayVerifier {
                    jwks: v,
                    api_keys: config
                        .auth
                        .as_ref()
                        .and_then(|a| a.api_keys.clone())
                        .map(crate::identity::ApiKeys::new),
                }) as Arc<dyn vigil_security::token::TokenVerifier>
            }),
        };
        let http_metrics = HttpMetrics::new("gateway", &state.registry, MAX_ERROR_CODES);
        let router = Router::new()
            .route(
                "/gateway/healthz",
                get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
            )
            .route("/gateway/readyz", get(readyz))
            .route("/gateway/metrics", get(metrics_text))
            // Routes, not a fallback: the hardening layer answers unknown routes itself.
            .route("/", axum::routing::any(handle))
            .route("/{*path}", axum::routing::any(handle))
            .with_state(Arc::clone(&state))
            .layer(Extension(SecurityConfig { source, guard }));
        let router = vigil_security::harden(router, http_metrics)
            .layer(axum::middleware::from_fn(security_headers));
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        tracing::info!(addr = %listener.local_addr()?, "gateway listening");
        Ok(Gateway {
            listener,
            router,
            state,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound")
    }

    /// Which engine decides rate limits now (`redis` or `memory`).
    pub fn engine(&self) -> &'static str {
        match &self.state.limiter {
            Limiter::Memory(_) => "memory",
            Limiter::Shared(b) => match b.engine() {
                Engine::Shared => "redis",
                Engine::Fallback => "memory",
            },
        }
    }

    /// Serves (HTTP/1.1 and HTTP/2) until `shutdown`.
    pub async fn run_until_stopped(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let audit = self.state.audit.clone();
        axum::serve(
            self.listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await?;
        audit.shutdown().await;
        Ok(())
    }
}

async fn security_headers(req: Request, next: axum::middleware::Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    for (k, v) in [
        (
            "strict-transport-security",
            "max-age=31536000; includeSubDomains",
        ),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("x-frame-options", "DENY"),
    ] {
        h.entry(k).or_insert(HeaderValue::from_static(v));
    }
    res
}

async fn readyz(State(s): State<Shared>) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let tokens = s
        .jwks
        .as_ref()
        .map(vigil_security::token::TokenVerifier::readiness);
    if let Some((false, why)) = &tokens {
        return Err(ApiError::Unavailable(format!(
            "bearer tokens cannot be verified: {why}"
        )));
    }
    let engine = match &s.limiter {
        Limiter::Memory(_) => "memory",
        Limiter::Shared(b) => match b.engine() {
            Engine::Shared => "redis",
            Engine::Fallback => "memory (redis unavailable)",
        },
    };
    Ok(axum::Json(
        serde_json::json!({"status": "ready", "rate_limiter": engine, "tokens": tokens.map(|t| t.1)}),
    ))
}

async fn metrics_text(State(s): State<Shared>) -> impl IntoResponse {
    let mut out = String::new();
    let _ = prometheus::TextEncoder::new().encode_utf8(&s.registry.gather(), &mut out);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

fn rate_headers(h: &mut HeaderMap, limit: &Limit, d: &Decision) {
    let secs = |d: Duration| d.as_secs() + u64::from(d.subsec_nanos() > 0);
    h.insert("ratelimit-limit", HeaderValue::from(limit.burst));
    h.insert("ratelimit-remaining", HeaderValue::from(d.remaining));
    h.insert("ratelimit-reset", HeaderValue::from(secs(d.reset)));
    if !d.allowed {
        h.insert(
            header::RETRY_AFTER,
            HeaderValue::from(secs(d.retry_after).max(1)),
        );
    }
}

fn cors_origin(s: &GatewayState, headers: &HeaderMap) -> Option<HeaderValue> {
    let origin = headers.get(header::ORIGIN)?;
    let allowed = &s.config.cors.allowed_origins;
    if allowed
        .iter()
        .any(|o| o == "*" || o.as_bytes() == origin.as_bytes())
    {
        Some(origin.clone())
    } else {
        None
    }
}

/// Every proxied request.
async fn handle(State(s): State<Shared>, req: Request) -> Response {
    let (mut parts, body) = req.into_parts();
    let cors = cors_origin(&s, &parts.headers);
    // CORS preflight: answered here, never forwarded.
    if parts.method == Method::OPTIONS
        && parts
            .headers
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    {
        let Some(origin) = cors else {
            return ApiError::WithDetails(
                Box::new(ApiError::BadRequest("this origin is not allowed".into())),
                serde_json::json!({}),
            )
            .into_response();
        };
        let mut res = StatusCode::NO_CONTENT.into_response();
        let h = res.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_str(&s.cors_methods).unwrap_or(HeaderValue::from_static("GET")),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_str(&s.cors_headers)
                .unwrap_or(HeaderValue::from_static("authorization")),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from(s.config.cors.max_age_secs.unwrap_or(600)),
        );
        h.insert(header::VARY, HeaderValue::from_static("origin"));
        return res;
    }
    let mut res = match forward(&s, &mut parts, body).await {
        Ok(r) => r,
        Err(e) => e,
    };
    if let Some(origin) = cors {
        res.headers_mut()
            .insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        res.headers_mut()
            .insert(header::VARY, HeaderValue::from_static("origin"));
    }
    res
}

async fn forward(
    s: &GatewayState,
    parts: &mut axum::http::request::Parts,
    body: Body,
) -> Result<Response, Response> {
    let path = parts.uri.path().to_owned();
    let route = s
        .routes
        .iter()
        .find(|r| r.matches(&path))
        .ok_or_else(|| ApiError::NotFound("no route".into()).into_response())?;
    // Identity.
    let ctx = if route.access == Access::Public {
        None
    } else {
        // An API key in X-API-Key is judged like a bearer credential.
        if !parts.headers.contains_key(header::AUTHORIZATION) {
            if let Some(v) = parts
                .headers
                .get("x-api-key")
                .and_then(|v| v.to_str().ok())
                .and_then(|k| HeaderValue::from_str(&format!("Bearer {}", k.trim())).ok())
            {
                parts.headers.insert(header::AUTHORIZATION, v);
            }
        }
        match SecurityContext::from_request_parts(parts, &()).await {
            Ok(ctx) => Some(ctx),
            Err(e) => {
                s.audit.auth_failure(e.code(), &route.prefix);
                return Err(e.into_response());
            }
        }
    };
    if let (Some(ctx), Access::Capability(cap)) = (&ctx, &route.access) {
        ctx.require(*cap).map_err(IntoResponse::into_response)?;
    }
    // Rate limit, on the verified tenant.
    let mut limit_headers = None;
    if let Some(ctx) = &ctx {
        let tenant = ctx.tenant_id.as_str();
        let rl = &s.config.rate_limit;
        if !rl.allow.iter().any(|t| t == tenant) {
            // A route's or a tenant's own limit comes with its own burst (a tenth of a
            // minute); the configured burst goes with the default limit.
            let own = route.rpm.or_else(|| rl.tenants.get(tenant).copied());
            let rpm = own.unwrap_or(rl.default_rpm);
            let mut limit = Limit::per_minute(rpm);
            if let (None, Some(b)) = (own, rl.burst) {
                limit.burst = b.max(1);
            }
            let key = match route.rpm {
                Some(_) => format!("{tenant}|{}", route.prefix),
                None => tenant.to_owned(),
            };
            let started = Instant::now();
            let (decision, engine) = match &s.limiter {
                Limiter::Memory(m) => (m.check_now(&key, &limit), "memory"),
                Limiter::Shared(b) => {
                    let d = b.check(&key, &limit).await;
                    (
                        d.decision,
                        if d.engine == Engine::Shared {
                            "redis"
                        } else {
                            "memory"
                        },
                    )
                }
            };
            s.metrics
                .decision
                .with_label_values(&[engine])
                .observe(started.elapsed().as_secs_f64());
            s.metrics
                .checks
                .with_label_values(&[
                    engine,
                    if decision.allowed {
                        "allowed"
                    } else {
                        "rejected"
                    },
                ])
                .inc();
            s.metrics
                .usage
                .observe(1.0 - f64::from(decision.remaining) / f64::from(limit.burst.max(1)));
            if !decision.allowed {
                s.metrics
                    .rejections
                    .with_label_values(&[if rl.shadow { "shadow" } else { "enforced" }])
                    .inc();
                s.audit.breach(tenant);
                if !rl.shadow {
                    let mut res = ApiError::RateLimited(format!(
                        "tenant {tenant} is over its limit of {rpm} requests per minute"
                    ))
                    .into_response();
                    rate_headers(res.headers_mut(), &limit, &decision);
                    return Err(res);
                }
            }
            limit_headers = Some((limit, decision));
        }
    }
    // The upstream request: identity headers from the verified identity only.
    let upstream = route.upstream();
    let rest = if route.strip_prefix {
        path.strip_prefix(route.prefix.trim_end_matches('/'))
            .unwrap_or(&path)
    } else {
        &path
    };
    let query = parts
        .uri
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let url = format!(
        "{upstream}{}{query}",
        if rest.is_empty() { "/" } else { rest }
    );
    let mut headers = parts.headers.clone();
    for h in IDENTITY_HEADERS.iter().chain(HOP_BY_HOP.iter()).chain(
        [
            "authorization",
            "x-api-key",
            "host",
            "traceparent",
            "tracestate",
            "x-trace-id",
            "forwarded",
            "x-forwarded-for",
            "x-forwarded-host",
            "x-forwarded-proto",
        ]
        .iter(),
    ) {
        headers.remove(*h);
    }
    // This is the fleet's edge: what a client says about forwarding is replaced by what the
    // gateway saw.
    if let Some(peer) = parts
        .extensions
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .and_then(|c| HeaderValue::from_str(&c.0.ip().to_string()).ok())
    {
        headers.insert(HeaderName::from_static("x-forwarded-for"), peer);
    }
    headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static("http"),
    );
    if let Some(host) = parts.headers.get(header::HOST) {
        headers.insert(HeaderName::from_static("x-forwarded-host"), host.clone());
    }
    if let Some(ctx) = &ctx {
        headers.insert(
            HeaderName::from_static("x-tenant-id"),
            HeaderValue::from_str(ctx.tenant_id.as_str()).expect("a tenant id is a header value"),
        );
        if let Some(u) = ctx
            .user_id
            .as_deref()
            .and_then(|u| HeaderValue::from_str(u).ok())
        {
            headers.insert(HeaderName::from_static("x-user-id"), u);
        }
        if let Ok(r) = HeaderValue::from_str(&ctx.roles.names().join(",")) {
            headers.insert(HeaderName::from_static("x-roles"), r);
        }
    }
    let trace = vigil_security::trace::current()
        .map(|t| t.to_string())
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    if let Ok(v) =
        HeaderValue::from_str(&format!("00-{trace}-{:016x}-01", rand::random::<u64>() | 1))
    {
        headers.insert(HeaderName::from_static("traceparent"), v);
    }
    let max = s.config.max_body_bytes;
    if parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > max)
    {
        return Err(ApiError::PayloadTooLarge(format!(
            "request bodies are limited to {max} bytes"
        ))
        .into_response());
    }
    let too_large = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = Arc::clone(&too_large);
    let limited = http_body_util::BodyExt::map_err(
        http_body_util::Limited::new(body, max as usize),
        move |e| {
            if e.is::<http_body_util::LengthLimitError>() {
                flag.store(true, Ordering::Relaxed);
            }
            e
        },
    );
    let uri: axum::http::Uri = match url.parse() {
        Ok(u) => u,
        Err(_) => {
            return Err(
                ApiError::BadRequest("the request path cannot be forwarded".into()).into_response(),
            )
        }
    };
    let mut upstream_req = axum::http::Request::new(Body::new(limited));
    *upstream_req.method_mut() = parts.method.clone();
    *upstream_req.uri_mut() = uri;
    *upstream_req.headers_mut() = headers;
    let started = Instant::now();
    let sent = tokio::time::timeout(
        Duration::from_millis(s.config.request_timeout_ms),
        s.http.request(upstream_req),
    )
    .await;
    let label = route.prefix.as_str();
    let upstream_res = match sent {
        Err(_) => {
            s.metrics
                .upstream_status
                .with_label_values(&[label, "timeout"])
                .inc();
            return Err(
                ApiError::UpstreamTimeout("the upstream did not answer in time".into())
                    .into_response(),
            );
        }
        Ok(Err(_)) if too_large.load(Ordering::Relaxed) => {
            return Err(ApiError::PayloadTooLarge(format!(
                "request bodies are limited to {max} bytes"
            ))
            .into_response());
        }
        Ok(Err(e)) => {
            s.metrics
                .upstream_status
                .with_label_values(&[label, "unreachable"])
                .inc();
            tracing::warn!(upstream = %upstream, error = %e, "upstream unreachable");
            return Err(
                ApiError::UpstreamUnavailable("the upstream could not be reached".into())
                    .into_response(),
            );
        }
        Ok(Ok(r)) => r,
    };
    s.metrics
        .upstream_latency
        .with_label_values(&[label])
        .observe(started.elapsed().as_secs_f64());
    s.metrics
        .upstream_status
        .with_label_values(&[label, upstream_res.status().as_str()])
        .inc();
    let (mut res_parts, res_body) = upstream_res.into_parts();
    for h in HOP_BY_HOP {
        res_parts.headers.remove(h);
    }
    if let Some((limit, d)) = &limit_headers {
        rate_headers(&mut res_parts.headers, limit, d);
    }
    // The upstream's answer, errors included, goes back as it was.
    res_parts
        .extensions
        .insert(vigil_security::shape::Passthrough);
    Ok(Response::from_parts(res_parts, Body::new(res_body)))
}
