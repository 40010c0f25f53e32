//! Forwarding one request, as a pipeline of small stages:
//!
//! 1. [`route`]: the most specific configured route, or 404.
//! 2. [`identify`]: the verified caller (bearer JWT or API key), unless the route is public.
//! 3. [`admit`]: the route's capability.
//! 4. [`rate`]: the tenant's limit ([`limit_for`] says which) decided by the limiter.
//! 5. [`upstream_uri`] and [`upstream_headers`]: what goes upstream, identity from the verified
//!    caller only; [`declared_length`] refuses a declared oversized body before sending.
//! 6. [`send`]: the upstream call with the body limit and the timeout.
//! 7. [`finish`]: the upstream's answer as it was, plus the rate headers.
//!
//! Each stage returns a [`Refusal`] (an [`ApiError`], with rate headers for a 429) to stop.

use crate::audit::GatewayAudit;
use crate::config::RateLimitConfig;
use crate::limiter::{Breaker, Decision, Engine, Limit, MemoryLimiter};
use crate::metrics::Metrics;
use crate::route::{Access, Route, RouteTable};
use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::request::Parts;
use axum::http::{Method, Uri};
use axum::response::{IntoResponse, Response};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vigil_security::context::SecurityContext;
use vigil_security::error::ApiError;

/// Headers naming the caller: set from the verified identity only.
pub(crate) const IDENTITY_HEADERS: [&str; 3] = ["x-tenant-id", "x-user-id", "x-roles"];
/// Hop-by-hop headers (RFC 9110 §7.6.1), never forwarded.
pub(crate) const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
];
/// What a client says about credentials, tracing and forwarding: replaced at the edge.
const REPLACED: [&str; 10] = [
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
];

/// Why a request stops at the gateway.
#[derive(Debug)]
pub(crate) struct Refusal {
    error: ApiError,
    /// A rate-limit refusal carries the limit's headers.
    rate: Option<Box<(Limit, Decision)>>,
    /// No connection to the upstream was made: nothing reached it.
    pub(crate) unconnected: bool,
}

impl From<ApiError> for Refusal {
    fn from(error: ApiError) -> Refusal {
        Refusal {
            error,
            rate: None,
            unconnected: false,
        }
    }
}

/// Can the request be sent again to another upstream after a failed connection? Those with
/// no body: the body of the others went with the failed attempt.
pub(crate) fn resendable(method: &Method, headers: &HeaderMap) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::DELETE
    ) && !headers.contains_key(axum::http::header::TRANSFER_ENCODING)
        && headers
            .get(axum::http::header::CONTENT_LENGTH)
            .is_none_or(|v| v.as_bytes() == b"0")
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut res = self.error.into_response();
        if let Some(r) = &self.rate {
            rate_headers(res.headers_mut(), &r.0, &r.1);
        }
        res
    }
}

/// `RateLimit-*` (IETF draft) and, when refused, `Retry-After`, in whole seconds rounded up.
pub(crate) fn rate_headers(h: &mut HeaderMap, limit: &Limit, d: &Decision) {
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

/// Stage 1: the route, or 404.
pub(crate) fn route<'a>(table: &'a RouteTable, path: &str) -> Result<&'a Route, Refusal> {
    table
        .find(path)
        .ok_or_else(|| ApiError::NotFound("no route".into()).into())
}

/// An API key in `X-API-Key` is judged like a bearer credential (when no `Authorization` is
/// sent).
fn api_key_as_bearer(headers: &mut HeaderMap) {
    if headers.contains_key(header::AUTHORIZATION) {
        return;
    }
    if let Some(v) = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .and_then(|k| HeaderValue::from_str(&format!("Bearer {}", k.trim())).ok())
    {
        headers.insert(header::AUTHORIZATION, v);
    }
}

/// Stage 2: the verified caller; `None` on a public route. A failure is audited.
pub(crate) async fn identify(
    route: &Route,
    parts: &mut Parts,
    audit: &GatewayAudit,
) -> Result<Option<SecurityContext>, Refusal> {
    if route.access == Access::Public {
        return Ok(None);
    }
    api_key_as_bearer(&mut parts.headers);
    match SecurityContext::from_request_parts(parts, &()).await {
        Ok(ctx) => Ok(Some(ctx)),
        Err(e) => {
            audit.auth_failure(e.code(), &route.prefix);
            Err(e.into())
        }
    }
}

/// Stage 3: the route's capability.
pub(crate) fn admit(access: Access, ctx: Option<&SecurityContext>) -> Result<(), Refusal> {
    match (access, ctx) {
        (Access::Capability(cap), Some(ctx)) => Ok(ctx.require(cap)?),
        (Access::Public, _) | (Access::Authenticated, Some(_)) => Ok(()),
        (_, None) => Err(ApiError::Unauthenticated("this route needs an identity".into()).into()),
    }
}

/// Which limit applies to `tenant` on `route`: `None` for an allow-listed tenant; otherwise
/// the limiter key, the limit and its per-minute figure. A route's own limit is counted apart
/// (key `tenant|prefix`) with a burst of a tenth of a minute, as is a tenant's own limit; the
/// configured burst goes with the default limit only.
pub(crate) fn limit_for(
    rl: &RateLimitConfig,
    route: &Route,
    tenant: &str,
) -> Option<(String, Limit, u32)> {
    if rl.allow.iter().any(|t| t == tenant) {
        return None;
    }
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
    Some((key, limit, rpm))
}

/// The engines that decide rate limits.
pub(crate) enum Limiter {
    /// One instance, in memory.
    Memory(MemoryLimiter),
    /// Redis, shared by every instance, with the breaker's fallback.
    Shared(Arc<Breaker>),
}

impl Limiter {
    /// One decision and the engine that made it (`redis` or `memory`).
    pub(crate) async fn decide(&self, key: &str, limit: &Limit) -> (Decision, &'static str) {
        match self {
            Limiter::Memory(m) => (m.check_now(key, limit), "memory"),
            Limiter::Shared(b) => {
                let d = b.check(key, limit).await;
                let engine = if d.engine == Engine::Shared {
                    "redis"
                } else {
                    "memory"
                };
                (d.decision, engine)
            }
        }
    }
}

/// Stage 4: the tenant's limit. Refused (unless in shadow mode) is a 429 with the limit's
/// headers; admitted returns the headers to add to the upstream's answer.
pub(crate) async fn rate(
    limiter: &Limiter,
    rl: &RateLimitConfig,
    metrics: &Metrics,
    audit: &GatewayAudit,
    route: &Route,
    ctx: &SecurityContext,
) -> Result<Option<(Limit, Decision)>, Refusal> {
    let tenant = ctx.tenant_id.as_str();
    let Some((key, limit, rpm)) = limit_for(rl, route, tenant) else {
        return Ok(None);
    };
    let started = Instant::now();
    let span = tracing::info_span!(
        "rate_limit",
        tenant,
        vigil.engine = tracing::field::Empty,
        vigil.allowed = tracing::field::Empty
    );
    let (decision, engine) =
        tracing::Instrument::instrument(limiter.decide(&key, &limit), span.clone()).await;
    span.record("vigil.engine", engine);
    span.record("vigil.allowed", decision.allowed);
    metrics.decided(
        tenant,
        engine,
        started.elapsed(),
        &limit,
        &decision,
        rl.shadow,
    );
    if !decision.allowed {
        audit.breach(tenant);
        if !rl.shadow {
            return Err(Refusal {
                error: ApiError::RateLimited(format!(
                    "tenant {tenant} is over its limit of {rpm} requests per minute"
                )),
                rate: Some(Box::new((limit, decision))),
                unconnected: false,
            });
        }
    }
    Ok(Some((limit, decision)))
}

/// Stage 5a: the upstream URI for `uri` on `route` via `upstream`.
pub(crate) fn upstream_uri(route: &Route, upstream: &str, uri: &Uri) -> Result<Uri, Refusal> {
    let path = route.upstream_path(uri.path());
    let url = match uri.query() {
        Some(q) => format!("{upstream}{path}?{q}"),
        None => format!("{upstream}{path}"),
    };
    url.parse()
        .map_err(|_| ApiError::BadRequest("the request path cannot be forwarded".into()).into())
}

/// Stage 5b: the headers sent upstream. The client's identity, credential, hop-by-hop,
/// tracing and forwarding headers are dropped; the verified identity, the peer the gateway
/// saw (`X-Forwarded-For`), the client's `Host` (`X-Forwarded-Host`) and the `traceparent`
/// of the gateway's upstream call are set.
pub(crate) fn upstream_headers(
    client: &HeaderMap,
    ctx: Option<&SecurityContext>,
    peer: Option<IpAddr>,
    traceparent: Option<HeaderValue>,
) -> HeaderMap {
    let mut headers = client.clone();
    for h in IDENTITY_HEADERS
        .iter()
        .chain(HOP_BY_HOP.iter())
        .chain(REPLACED.iter())
    {
        headers.remove(*h);
    }
    // This is the fleet's edge: what a client says about forwarding is replaced by what the
    // gateway saw.
    if let Some(peer) = peer.and_then(|p| HeaderValue::from_str(&p.to_string()).ok()) {
        headers.insert(HeaderName::from_static("x-forwarded-for"), peer);
    }
    headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static("http"),
    );
    if let Some(host) = client.get(header::HOST) {
        headers.insert(HeaderName::from_static("x-forwarded-host"), host.clone());
    }
    if let Some(ctx) = ctx {
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
    if let Some(v) = traceparent {
        headers.insert(HeaderName::from_static("traceparent"), v);
    }
    headers
}

fn too_large(max: u64) -> ApiError {
    ApiError::PayloadTooLarge(format!("request bodies are limited to {max} bytes"))
}

/// Stage 5c: a body declared larger than `max` is refused before anything is sent.
pub(crate) fn declared_length(headers: &HeaderMap, max: u64) -> Result<(), Refusal> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > max => Err(too_large(max).into()),
        _ => Ok(()),
    }
}

/// hyper's pooled client, forwarding axum bodies as they are (no conversion per request).
pub(crate) type UpstreamClient =
    hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Body>;

/// What goes upstream.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    pub(crate) headers: HeaderMap,
}

/// Stage 6: the upstream call. The body is cut at `max` bytes (413, also for chunked bodies
/// that declared nothing); no answer within `timeout` is a 504, no connection a 502. Each
/// outcome is counted for `route`.
pub(crate) async fn send(
    http: &UpstreamClient,
    out: Outgoing,
    body: Body,
    max: u64,
    timeout: Duration,
    metrics: &Metrics,
    route: &str,
) -> Result<Response, Refusal> {
    let cut = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&cut);
    let limited = http_body_util::BodyExt::map_err(
        http_body_util::Limited::new(body, usize::try_from(max).unwrap_or(usize::MAX)),
        move |e| {
            if e.is::<http_body_util::LengthLimitError>() {
                flag.store(true, Ordering::Relaxed);
            }
            e
        },
    );
    let mut req = axum::http::Request::new(Body::new(limited));
    *req.method_mut() = out.method;
    *req.uri_mut() = out.uri;
    *req.headers_mut() = out.headers;
    let started = Instant::now();
    match tokio::time::timeout(timeout, http.request(req)).await {
        Err(_) => {
            metrics.upstream(route, "timeout", None);
            Err(ApiError::UpstreamTimeout("the upstream did not answer in time".into()).into())
        }
        Ok(Err(_)) if cut.load(Ordering::Relaxed) => Err(too_large(max).into()),
        Ok(Err(e)) if e.is_connect() => {
            metrics.upstream(route, "unreachable", None);
            tracing::warn!(route, error = %e, "upstream refused the connection");
            let mut r = Refusal::from(ApiError::UpstreamUnavailable(
                "the upstream could not be reached".into(),
            ));
            r.unconnected = true;
            Err(r)
        }
        Ok(Err(e)) => {
            metrics.upstream(route, "unreachable", None);
            tracing::warn!(route, error = %e, "upstream unreachable");
            Err(ApiError::UpstreamUnavailable("the upstream could not be reached".into()).into())
        }
        Ok(Ok(r)) => {
            metrics.upstream(route, r.status().as_str(), Some(started.elapsed()));
            Ok(r.map(Body::new))
        }
    }
}

/// Stage 7: the upstream's answer, errors included, goes back as it was (marked so the error
/// shape layer leaves it alone), without hop-by-hop headers, with the rate headers.
pub(crate) fn finish(mut res: Response, rate: Option<&(Limit, Decision)>) -> Response {
    let h = res.headers_mut();
    for name in HOP_BY_HOP {
        h.remove(name);
    }
    if let Some((limit, d)) = rate {
        rate_headers(h, limit, d);
    }
    res.extensions_mut()
        .insert(vigil_security::shape::Passthrough);
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RouteConfig;
    use axum::extract::ConnectInfo;
    use std::net::SocketAddr;
    use vigil_security::capability::{Capability, CapabilityPolicy};
    use vigil_security::context::{Guard, IdentitySource, SecurityConfig};

    fn table(routes: &[(&str, &str, bool, Option<u32>)]) -> RouteTable {
        RouteTable::new(
            &routes
                .iter()
                .map(|(prefix, access, strip, rpm)| RouteConfig {
                    prefix: (*prefix).into(),
                    upstreams: vec!["http://up:9".into()],
                    access: (*access).into(),
                    strip_prefix: *strip,
                    rpm: *rpm,
                })
                .collect::<Vec<_>>(),
        )
    }

    /// A verified caller, through the same extractor the gateway uses (trusted headers from
    /// loopback stand in for a verified token).
    async fn caller(tenant: &str, roles: &str) -> SecurityContext {
        let registry = prometheus::Registry::new();
        let config = SecurityConfig {
            source: IdentitySource {
                trusted_headers: Some(vec![]),
                bearer: None,
            },
            guard: Guard::new(CapabilityPolicy::shipped(), &registry),
        };
        let req = axum::http::Request::builder()
            .header("x-tenant-id", tenant)
            .header("x-user-id", "ana")
            .header("x-roles", roles)
            .body(())
            .unwrap();
        let (mut parts, ()) = req.into_parts();
        parts.extensions.insert(config);
        parts
            .extensions
            .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 1))));
        SecurityContext::from_request_parts(&mut parts, &())
            .await
            .expect("a caller")
    }

    fn code(r: Refusal) -> (u16, String) {
        let res = r.into_response();
        (
            res.status().as_u16(),
            res.headers()["x-error-code"].to_str().unwrap().to_owned(),
        )
    }

    #[test]
    fn no_route_is_404_in_the_shape() {
        let t = table(&[("/api", "public", false, None)]);
        assert!(route(&t, "/api/x").is_ok());
        assert_eq!(
            code(route(&t, "/elsewhere").unwrap_err()),
            (404, "not_found".into())
        );
    }

    #[test]
    fn an_api_key_becomes_a_bearer_credential_unless_one_is_sent() {
        let mut h = HeaderMap::new();
        h.insert("x-api-key", HeaderValue::from_static(" vk_abc "));
        api_key_as_bearer(&mut h);
        assert_eq!(h[header::AUTHORIZATION], "Bearer vk_abc");
        let mut h = HeaderMap::new();
        h.insert("x-api-key", HeaderValue::from_static("vk_abc"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer jwt"),
        );
        api_key_as_bearer(&mut h);
        assert_eq!(h[header::AUTHORIZATION], "Bearer jwt");
    }

    #[tokio::test]
    async fn admission_needs_the_routes_capability() {
        let reader = caller("acme", "support").await;
        assert!(admit(Access::Public, None).is_ok());
        assert!(admit(Access::Authenticated, Some(&reader)).is_ok());
        assert!(admit(Access::Capability(Capability::AuditRead), Some(&reader)).is_ok());
        assert_eq!(
            code(admit(Access::Capability(Capability::KeysManage), Some(&reader)).unwrap_err()),
            (403, "missing_role".into())
        );
        assert_eq!(code(admit(Access::Authenticated, None).unwrap_err()).0, 401);
    }

    #[test]
    fn limits_follow_route_then_tenant_then_default() {
        let mut rl = RateLimitConfig {
            default_rpm: 600,
            burst: Some(5),
            allow: vec!["system".into()],
            ..RateLimitConfig::default()
        };
        rl.tenants.insert("big".into(), 6000);
        let t = table(&[
            ("/", "authenticated", false, None),
            ("/slow", "authenticated", false, Some(60)),
        ]);
        let any = t.find("/x").unwrap();
        let slow = t.find("/slow/x").unwrap();
        assert!(limit_for(&rl, any, "system").is_none(), "allow-listed");
        let (key, limit, rpm) = limit_for(&rl, any, "acme").unwrap();
        assert_eq!(
            (key.as_str(), rpm, limit.burst),
            ("acme", 600, 5),
            "default with its burst"
        );
        let (key, limit, rpm) = limit_for(&rl, any, "big").unwrap();
        assert_eq!(
            (key.as_str(), rpm, limit.burst),
            ("big", 6000, 600),
            "tenant's own"
        );
        let (key, limit, rpm) = limit_for(&rl, slow, "big").unwrap();
        assert_eq!(
            (key.as_str(), rpm, limit.burst),
            ("big|/slow", 60, 6),
            "route's own, apart"
        );
    }

    #[tokio::test]
    async fn a_refused_decision_is_429_with_retry_after_and_shadow_mode_admits() {
        let registry = prometheus::Registry::new();
        let metrics = Metrics::new(&registry);
        let audit = GatewayAudit::start(None, None, "system", &registry)
            .await
            .unwrap();
        let ctx = caller("acme", "support").await;
        let t = table(&[("/", "authenticated", false, Some(1))]);
        let r = t.find("/x").unwrap();
        let limiter = Limiter::Memory(MemoryLimiter::new(16));
        let mut rl = RateLimitConfig::default();
        assert!(rate(&limiter, &rl, &metrics, &audit, r, &ctx).await.is_ok());
        let refused = rate(&limiter, &rl, &metrics, &audit, r, &ctx)
            .await
            .unwrap_err()
            .into_response();
        assert_eq!(refused.status(), 429);
        assert_eq!(refused.headers()["x-error-code"], "rate_limited");
        assert_eq!(refused.headers()["ratelimit-remaining"], "0");
        assert!(refused.headers().contains_key(header::RETRY_AFTER));
        rl.shadow = true;
        let (_, d) = rate(&limiter, &rl, &metrics, &audit, r, &ctx)
            .await
            .unwrap()
            .unwrap();
        assert!(!d.allowed, "counted as refused, admitted in shadow mode");
        let rejected = metrics.rejections.with_label_values(&["shadow"]).get();
        assert_eq!(rejected, 1);
    }

    #[test]
    fn the_upstream_uri_keeps_the_query_and_strips_when_told() {
        let t = table(&[
            ("/auth", "public", true, None),
            ("/", "public", false, None),
        ]);
        let uri: Uri = "/auth/v1/login?x=1&y=%20".parse().unwrap();
        let r = t.find(uri.path()).unwrap();
        assert_eq!(
            upstream_uri(r, "http://a:1", &uri).unwrap().to_string(),
            "http://a:1/v1/login?x=1&y=%20"
        );
        let uri: Uri = "/auth".parse().unwrap();
        assert_eq!(
            upstream_uri(r, "http://a:1", &uri).unwrap().to_string(),
            "http://a:1/"
        );
        let uri: Uri = "/v1/events".parse().unwrap();
        let r = t.find(uri.path()).unwrap();
        assert_eq!(
            upstream_uri(r, "http://a:1", &uri).unwrap().to_string(),
            "http://a:1/v1/events"
        );
    }

    #[tokio::test]
    async fn identity_and_forwarding_headers_come_from_the_gateway_only() {
        let mut client = HeaderMap::new();
        for (k, v) in [
            ("x-tenant-id", "victim"),
            ("x-roles", "super_admin"),
            ("x-user-id", "root"),
            ("authorization", "Bearer secret"),
            ("x-api-key", "vk_secret"),
            ("x-forwarded-for", "10.9.9.9"),
            ("forwarded", "for=10.9.9.9"),
            ("connection", "keep-alive"),
            (
                "traceparent",
                "00-ffffffffffffffffffffffffffffffff-0000000000000001-01",
            ),
            ("host", "api.example"),
            ("accept", "application/json"),
        ] {
            client.append(k, HeaderValue::from_static(v));
        }
        let trace = "0af7651916cd43dd8448eb211c80319c";
        let ours = HeaderValue::from_str(&format!("00-{trace}-00f067aa0ba902b7-01")).unwrap();
        let ctx = caller("acme", "support").await;
        let h = upstream_headers(
            &client,
            Some(&ctx),
            Some([192, 0, 2, 7].into()),
            Some(ours.clone()),
        );
        assert_eq!(h["x-tenant-id"], "acme");
        assert_eq!(h["x-user-id"], "ana");
        assert_eq!(h["x-roles"], "support");
        assert_eq!(h["x-forwarded-for"], "192.0.2.7");
        assert_eq!(h["x-forwarded-host"], "api.example");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["accept"], "application/json");
        for gone in [
            "authorization",
            "x-api-key",
            "forwarded",
            "connection",
            "host",
        ] {
            assert!(!h.contains_key(gone), "{gone} forwarded");
        }
        // The client's traceparent is replaced by the gateway's own.
        assert_eq!(h["traceparent"], ours);
        // A public route forwards no identity at all.
        let h = upstream_headers(&client, None, None, None);
        for gone in IDENTITY_HEADERS {
            assert!(!h.contains_key(gone), "{gone} forwarded on a public route");
        }
        assert!(!h.contains_key("x-forwarded-for"));
    }

    #[test]
    fn a_declared_oversized_body_is_refused_before_sending() {
        let mut h = HeaderMap::new();
        assert!(declared_length(&h, 10).is_ok());
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("10"));
        assert!(declared_length(&h, 10).is_ok());
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("11"));
        assert_eq!(
            code(declared_length(&h, 10).unwrap_err()),
            (413, "payload_too_large".into())
        );
    }

    #[test]
    fn the_upstreams_answer_passes_with_rate_headers_and_without_hop_by_hop() {
        let res = axum::http::Response::builder()
            .status(503)
            .header("connection", "close")
            .header("x-error-code", "unavailable")
            .body(Body::empty())
            .unwrap();
        let d = Decision {
            allowed: true,
            remaining: 4,
            reset: Duration::from_millis(1500),
            retry_after: Duration::ZERO,
        };
        let res = finish(res, Some(&(Limit::per_minute(60), d)));
        assert_eq!(res.status(), 503, "the upstream's status, unchanged");
        assert!(!res.headers().contains_key("connection"));
        assert_eq!(res.headers()["ratelimit-remaining"], "4");
        assert_eq!(res.headers()["ratelimit-reset"], "2", "rounded up");
        assert!(!res.headers().contains_key(header::RETRY_AFTER));
        assert!(res
            .extensions()
            .get::<vigil_security::shape::Passthrough>()
            .is_some());
    }

    fn client() -> UpstreamClient {
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(hyper_util::client::legacy::connect::HttpConnector::new())
    }

    fn outgoing(addr: SocketAddr) -> Outgoing {
        Outgoing {
            method: Method::POST,
            uri: format!("http://{addr}/x").parse().unwrap(),
            headers: HeaderMap::new(),
        }
    }

    #[tokio::test]
    async fn upstream_faults_are_502_504_and_413() {
        let metrics = Metrics::new(&prometheus::Registry::new());
        // Nothing listens: 502.
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let gone = free.local_addr().unwrap();
        drop(free);
        let r = send(
            &client(),
            outgoing(gone),
            Body::empty(),
            10,
            Duration::from_secs(5),
            &metrics,
            "/",
        )
        .await
        .unwrap_err();
        assert_eq!(code(r), (502, "upstream_unavailable".into()));
        assert_eq!(
            metrics
                .upstream_status
                .with_label_values(&["/", "unreachable"])
                .get(),
            1
        );
        // Accepts, never answers: 504.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap();
        let held = tokio::spawn(async move {
            let (_conn, _) = silent.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        let r = send(
            &client(),
            outgoing(addr),
            Body::empty(),
            10,
            Duration::from_millis(200),
            &metrics,
            "/",
        )
        .await
        .unwrap_err();
        assert_eq!(code(r), (504, "upstream_timeout".into()));
        held.abort();
        // A streamed body over the limit: 413, whatever the upstream does meanwhile.
        let sink = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = sink.local_addr().unwrap();
        let reader = tokio::spawn(async move {
            let (mut conn, _) = sink.accept().await.unwrap();
            let mut buf = vec![0u8; 1 << 16];
            while tokio::io::AsyncReadExt::read(&mut conn, &mut buf)
                .await
                .is_ok_and(|n| n > 0)
            {}
        });
        let chunks = futures::stream::iter(
            (0..4).map(|_| Ok::<_, std::io::Error>(axum::body::Bytes::from_static(b"0123456789"))),
        );
        let r = send(
            &client(),
            outgoing(addr),
            Body::from_stream(chunks),
            25,
            Duration::from_secs(5),
            &metrics,
            "/",
        )
        .await
        .unwrap_err();
        assert_eq!(code(r), (413, "payload_too_large".into()));
        reader.abort();
    }
}
