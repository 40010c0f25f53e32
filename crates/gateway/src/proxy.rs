//! The gateway service: its state, its own endpoints, CORS and security headers; each
//! proxied request goes through the stages of [`crate::forward`].

use crate::audit::GatewayAudit;
use crate::config::{FailModeConfig, GatewayConfig};
use crate::error::GatewayError;
use crate::forward::{self, Limiter, Outgoing, Refusal, UpstreamClient};
use crate::limiter::{Breaker, Engine, FailMode, MemoryLimiter, RedisLimiter};
use crate::metrics::{Metrics, Transitions};
use crate::per_thread;
use crate::route::RouteTable;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use prometheus::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket};
use tracing::Instrument;
use vigil_auth::{JwksConfig, JwksVerifier};
use vigil_security::capability::CapabilityPolicy;
use vigil_security::context::{Guard, IdentitySource, SecurityConfig};
use vigil_security::error::ApiError;
use vigil_security::http_metrics::{HttpMetrics, MAX_ERROR_CODES};

/// The gateway's shared state.
pub(crate) struct GatewayState {
    routes: RouteTable,
    http: UpstreamClient,
    limiter: Limiter,
    config: GatewayConfig,
    metrics: Metrics,
    registry: Registry,
    audit: GatewayAudit,
    jwks: Option<JwksVerifier>,
    cors_methods: String,
    cors_headers: String,
    /// Set when shutdown begins: `/gateway/readyz` answers 503 while requests are served.
    draining: std::sync::atomic::AtomicBool,
}

pub(crate) type Shared = Arc<GatewayState>;

/// A built, bound gateway.
pub struct Gateway {
    /// One listener per serving thread, all on `addr` (`SO_REUSEPORT`); one when the gateway
    /// serves on the caller's runtime.
    listeners: Vec<TcpListener>,
    addr: SocketAddr,
    /// Serving threads of its own; 0: on the caller's runtime.
    threads: usize,
    router: Router,
    state: Shared,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("listen", &self.addr)
            .field("serving_threads", &self.threads)
            .finish_non_exhaustive()
    }
}

/// Binds `addr` with `SO_REUSEPORT` (and `SO_REUSEADDR`, as `TcpListener::bind` does), so
/// that every serving thread can listen on the same port; the kernel spreads new
/// connections over their listeners. Only sockets of the same user can share a port so.
fn bind_shared(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// hyper's pooled client for the upstreams, as `config` says. Connections are tasks of the
/// runtime that opened them: each serving thread has its own (see [`THREAD_UPSTREAM`]).
fn upstream_client(config: &GatewayConfig) -> UpstreamClient {
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_connect_timeout(Some(Duration::from_millis(config.connect_timeout_ms)));
    connector.set_nodelay(true);
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_max_idle_per_host(256)
        .pool_idle_timeout(Duration::from_secs(60))
        .build(connector)
}

thread_local! {
    /// A serving thread's own upstream pool, with the gateway (its state's address) it
    /// belongs to: a request served on that thread goes upstream on connections of that
    /// thread, so the exchange never wakes another thread.
    static THREAD_UPSTREAM: per_thread::Slot<UpstreamClient> =
        const { std::cell::RefCell::new(None) };
}

impl GatewayState {
    /// The upstream pool for a request served on this thread.
    fn upstream(&self) -> UpstreamClient {
        per_thread::get(&THREAD_UPSTREAM, self).unwrap_or_else(|| self.http.clone())
    }
}

impl Gateway {
    /// Connects what the config names (Redis, the JWKS) and binds.
    pub async fn build(config: GatewayConfig) -> Result<Gateway, GatewayError> {
        config.check()?;
        let registry = Registry::new();
        vigil_security::runtime_metrics::register(&registry, "gateway", None);
        let metrics = Metrics::new(&registry);
        let audit = GatewayAudit::start(
            config.audit_url.as_deref(),
            config.audit_spool_dir.as_deref(),
            "system",
            &registry,
        )
        .await?;
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
                .map_err(|source| GatewayError::Redis {
                    url: vigil_core::redact_url(url),
                    source,
                })?
                .with_max_lease(rl.max_lease);
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
        let http = upstream_client(&config);
        let routes = RouteTable::new(&config.routes);
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
            draining: Default::default(),
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
            .route("/gateway/healthz", get(healthz))
            .route("/gateway/readyz", get(readyz))
            .route("/gateway/metrics", get(metrics_text))
            .route("/gateway/openapi.json", get(crate::openapi::serve))
            // Routes, not a fallback: the hardening layer answers unknown routes itself.
            .route("/", axum::routing::any(handle))
            .route("/{*path}", axum::routing::any(handle))
            .with_state(Arc::clone(&state))
            .layer(Extension(SecurityConfig { source, guard }));
        let router = vigil_security::harden(router, http_metrics)
            .layer(axum::middleware::from_fn(security_headers))
            .layer(axum::middleware::from_fn_with_state(
                Arc::clone(&state),
                close_while_draining,
            ));
        let threads = config.serving_threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        });
        let bind_error = |addr, source| GatewayError::Bind { addr, source };
        let first = bind_shared(config.listen).map_err(|e| bind_error(config.listen, e))?;
        let addr = first
            .local_addr()
            .map_err(|e| bind_error(config.listen, e))?;
        let mut listeners = vec![first];
        for _ in 1..threads {
            listeners.push(bind_shared(addr).map_err(|e| bind_error(addr, e))?);
        }
        tracing::info!(%addr, serving_threads = threads, "gateway listening");
        Ok(Gateway {
            listeners,
            addr,
            threads,
            router,
            state,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
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
    ) -> Result<(), GatewayError> {
        let audit = self.state.audit.clone();
        let probes = tokio::spawn(probe_upstreams(Arc::clone(&self.state)));
        let state = Arc::clone(&self.state);
        let drain = Duration::from_millis(state.config.shutdown_drain_ms);
        let drained = vigil_security::drain::after_drain(shutdown, drain, move || {
            state
                .draining
                .store(true, std::sync::atomic::Ordering::Relaxed)
        });
        let served = if self.threads == 0 {
            let listener = self.listeners.into_iter().next().expect("one listener");
            axum::serve(
                listener,
                self.router
                    .into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(drained)
            .await
            .map_err(GatewayError::Serve)
        } else {
            serve_on_threads(self.listeners, self.router, self.state, drained).await
        };
        probes.abort();
        served?;
        audit.shutdown().await;
        Ok(())
    }
}

/// Serves each listener on a thread of its own (a single-threaded runtime, its own upstream
/// pool and Redis connection) until `drained`; then each stops accepting, finishes its
/// connections' requests and ends.
async fn serve_on_threads(
    listeners: Vec<TcpListener>,
    router: Router,
    state: Shared,
    drained: impl std::future::Future<Output = ()>,
) -> Result<(), GatewayError> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut ends = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        // Out of this runtime's reactor, into the thread's own.
        let listener = listener.into_std().map_err(GatewayError::Serve)?;
        let (router, state, mut stopped) = (router.clone(), Arc::clone(&state), stopped.clone());
        let (end, ended) = tokio::sync::oneshot::channel();
        let limiter = match &state.limiter {
            Limiter::Shared(b) => Some(Arc::clone(b)),
            Limiter::Memory(_) => None,
        };
        std::thread::Builder::new()
            .name(format!("gateway-{i}"))
            .spawn(move || {
                let served = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .and_then(|rt| {
                        rt.block_on(async move {
                            per_thread::set(
                                &THREAD_UPSTREAM,
                                &*state,
                                upstream_client(&state.config),
                            );
                            if let Some(b) = limiter {
                                b.attach_thread().await;
                            }
                            let listener = TcpListener::from_std(listener)?;
                            axum::serve(
                                listener,
                                router.into_make_service_with_connect_info::<SocketAddr>(),
                            )
                            .with_graceful_shutdown(async move {
                                let _ = stopped.wait_for(|s| *s).await;
                            })
                            .await
                        })
                    });
                let _ = end.send(served);
            })
            .map_err(GatewayError::Serve)?;
        ends.push(ended);
    }
    let why = |ended: Result<std::io::Result<()>, _>| match ended {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(GatewayError::Serve(e)),
        Err(_) => Some(GatewayError::Serve(std::io::Error::other(
            "a serving thread ended without an answer (it panicked)",
        ))),
    };
    // A thread that ends before shutdown is a failure: the others are stopped too.
    let (mut result, rest) =
        match futures::future::select(std::pin::pin!(drained), futures::future::select_all(ends))
            .await
        {
            futures::future::Either::Left(((), running)) => (None, running.into_inner()),
            futures::future::Either::Right(((ended, _, rest), _)) => (
                Some(why(ended).unwrap_or_else(|| {
                    GatewayError::Serve(std::io::Error::other(
                        "a serving thread stopped before shutdown",
                    ))
                })),
                rest,
            ),
        };
    let _ = stop.send(true);
    for ended in rest {
        if let Some(e) = why(ended.await) {
            result.get_or_insert(e);
        }
    }
    result.map_or(Ok(()), Err)
}

/// Probes the upstreams of every route that has more than one (where there is another to
/// send to), every `health_interval_ms`: an upstream whose `health_path` does not answer 2xx
/// within the interval leaves the rotation until it does.
async fn probe_upstreams(s: Shared) {
    let c = &s.config;
    if c.health_path.is_empty() {
        return;
    }
    let every = Duration::from_millis(c.health_interval_ms.max(50));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let probes = s
            .routes
            .all()
            .iter()
            .filter(|r| r.upstreams().len() > 1)
            .flat_map(|r| r.upstreams().iter().map(move |u| (r, u)))
            .map(|(route, u)| {
                let s = &s;
                async move {
                    let req = axum::http::Request::get(format!("{}{}", u.base, s.config.health_path))
                        .body(Body::empty())
                        .expect("a valid probe request");
                    let ready = matches!(
                        tokio::time::timeout(every, s.http.request(req)).await,
                        Ok(Ok(r)) if r.status().is_success()
                    );
                    let was = u.is_up();
                    u.set_ready(ready);
                    s.metrics
                        .upstream_up
                        .with_label_values(&[&route.prefix, &u.base])
                        .set(i64::from(ready));
                    if was != ready {
                        tracing::warn!(route = %route.prefix, upstream = %u.base, ready, "upstream rotation changed");
                    }
                }
            });
        futures::future::join_all(probes).await;
    }
}

/// While draining, every answer closes its connection (`Connection: close`): clients move
/// their next request to a new connection — another instance, once this one's port closes —
/// instead of sending it on a kept-alive connection just as shutdown closes it.
async fn close_while_draining(
    State(s): State<Shared>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let mut res = next.run(req).await;
    if s.draining.load(std::sync::atomic::Ordering::Relaxed) {
        res.headers_mut().insert(
            axum::http::header::CONNECTION,
            HeaderValue::from_static("close"),
        );
    }
    res
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

/// `GET /gateway/healthz`.
#[utoipa::path(get, path = "/gateway/healthz", tag = "ops",
    responses((status = 200, description = "The process is up", body = Object)))]
pub(crate) async fn healthz() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({"status": "ok"}))
}

/// `GET /gateway/readyz`.
#[utoipa::path(get, path = "/gateway/readyz", tag = "ops",
    responses(
        (status = 200, description = "Ready: the deciding rate-limit engine and the JWKS state", body = Object),
        (status = 503, description = "Bearer tokens cannot be verified (the issuer's JWKS is unavailable)", body = vigil_security::error::ErrorBody),
    ))]
pub(crate) async fn readyz(
    State(s): State<Shared>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    if s.draining.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(ApiError::Unavailable(
            "shutting down: draining before the listener closes".into(),
        ));
    }
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

/// `GET /gateway/metrics`.
#[utoipa::path(get, path = "/gateway/metrics", tag = "ops",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub(crate) async fn metrics_text(State(s): State<Shared>) -> impl IntoResponse {
    let mut out = String::new();
    let _ = prometheus::TextEncoder::new().encode_utf8(&s.registry.gather(), &mut out);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
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
        Err(refusal) => refusal.into_response(),
    };
    if let Some(origin) = cors {
        res.headers_mut()
            .insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        res.headers_mut()
            .insert(header::VARY, HeaderValue::from_static("origin"));
    }
    res
}

/// The stages of [`crate::forward`], in order.
async fn forward(
    s: &GatewayState,
    parts: &mut axum::http::request::Parts,
    body: Body,
) -> Result<Response, Refusal> {
    let route = forward::route(&s.routes, parts.uri.path())?;
    let ctx = forward::identify(route, parts, &s.audit).await?;
    forward::admit(route.access, ctx.as_ref())?;
    let rate = match &ctx {
        Some(ctx) => {
            forward::rate(
                &s.limiter,
                &s.config.rate_limit,
                &s.metrics,
                &s.audit,
                route,
                ctx,
            )
            .await?
        }
        None => None,
    };
    let peer = parts
        .extensions
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    forward::declared_length(&parts.headers, s.config.max_body_bytes)?;
    // A request without a body goes to the next upstream when one refuses the connection;
    // one with a body cannot (its body went with the attempt) and gets the 502.
    let resendable = forward::resendable(&parts.method, &parts.headers);
    let tries = if resendable {
        route.upstreams().len()
    } else {
        1
    };
    let mut body = Some(body);
    let mut tried = 0;
    let (res, span) = loop {
        tried += 1;
        let upstream = route.upstream();
        let uri = forward::upstream_uri(route, &upstream.base, &parts.uri)?;
        // The upstream call is a span of its own (a client span): the service's request span
        // is its child, through the traceparent sent.
        let span = tracing::info_span!(
            "upstream",
            otel.name = %format!("{} {}", parts.method, route.prefix),
            otel.kind = "client",
            server.address = %uri.authority().map(|a| a.as_str()).unwrap_or(""),
            vigil.route = %route.prefix,
            http.response.status_code = tracing::field::Empty,
        );
        let traceparent = span.in_scope(vigil_security::trace::traceparent);
        let headers = forward::upstream_headers(&parts.headers, ctx.as_ref(), peer, traceparent);
        let out = Outgoing {
            method: parts.method.clone(),
            uri,
            headers,
        };
        let attempt = match body.take() {
            Some(b) if !resendable => b,
            _ => Body::empty(),
        };
        match forward::send(
            &s.upstream(),
            out,
            attempt,
            s.config.max_body_bytes,
            Duration::from_millis(s.config.request_timeout_ms),
            &s.metrics,
            &route.prefix,
        )
        .instrument(span.clone())
        .await
        {
            Ok(res) => break (res, span),
            Err(r) if r.unconnected => {
                upstream.eject(Duration::from_millis(s.config.eject_ms));
                if tried >= tries {
                    return Err(r);
                }
            }
            Err(r) => return Err(r),
        }
    };
    span.record("http.response.status_code", res.status().as_u16());
    Ok(forward::finish(res, rate.as_ref()))
}
