//! The gateway in-process on a random port, in front of a small upstream that echoes what it
//! receives, with a JWKS issuer on loopback and real Redis: identity headers cannot be
//! spoofed, refusals are in the shared error shape, limits hold across two instances sharing
//! Redis, and Redis going away and coming back never costs a 5xx.

use crate::common::get_text;
use axum::routing::{any, get};
use axum::Router;
use reqwest::Client;
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use vigil_auth::{Claims, KeyAlgorithm, SigningKey};
use vigil_gateway::{Gateway, GatewayConfig};

const ISS: &str = "https://auth.gateway.test";

/// Serves `/echo` (the request's headers and path as JSON), `/slow` (answers after 3 s) and
/// `/.well-known/jwks.json` (the issuer's keys).
async fn upstream_and_issuer(key: &SigningKey) -> std::net::SocketAddr {
    let jwks = json!({"keys": [key.public_jwk()]}).to_string();
    let app = Router::new()
        .route("/.well-known/jwks.json", get(move || async move { jwks }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3)).await;
                "late"
            }),
        )
        .fallback(any(|req: axum::extract::Request| async move {
            let headers: serde_json::Map<String, Value> = req
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        Value::from(v.to_str().unwrap_or("?")),
                    )
                })
                .collect();
            let path = req.uri().to_string();
            let body = axum::body::to_bytes(req.into_body(), usize::MAX)
                .await
                .map(|b| b.len())
                .unwrap_or(0);
            axum::Json(json!({"headers": headers, "path": path, "body_bytes": body}))
        }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// `GET url` with a bearer credential.
async fn bearer_get(http: &Client, url: String, token: &str) -> reqwest::Response {
    http.get(url).bearer_auth(token).send().await.unwrap()
}

fn token(key: &SigningKey, tenant: &str, roles: &[&str]) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    key.sign(&Claims {
        iss: ISS.into(),
        aud: "vigil".into(),
        sub: "user:alice".into(),
        exp: now + 600,
        iat: now,
        nbf: now,
        jti: uuid::Uuid::new_v4().to_string(),
        tenant_id: tenant.into(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
    })
}

fn config(up: std::net::SocketAddr, extra: &str) -> GatewayConfig {
    let mut c = GatewayConfig::from_toml(&format!(
        r#"
        listen = "127.0.0.1:0"
        max_body_bytes = 1024
        request_timeout_ms = 1000
        connect_timeout_ms = 500
        [auth]
        jwks_url = "http://{up}/.well-known/jwks.json"
        issuer = "{ISS}"
        [cors]
        allowed_origins = ["https://console.example"]
        [[routes]]
        prefix = "/public"
        upstreams = ["http://{up}"]
        access = "public"
        [[routes]]
        prefix = "/admin"
        upstreams = ["http://{up}"]
        access = "audit_admin"
        [[routes]]
        prefix = "/down"
        upstreams = ["http://127.0.0.1:9"]
        [[routes]]
        prefix = "/"
        upstreams = ["http://{up}"]
        {extra}
        "#
    ))
    .unwrap();
    c.listen = "127.0.0.1:0".parse().unwrap();
    c
}

async fn start(c: GatewayConfig) -> String {
    let gw = Gateway::build(c).await.unwrap();
    let base = format!("http://{}", gw.local_addr());
    tokio::spawn(gw.run_until_stopped(std::future::pending()));
    base
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_is_verified_and_spoofed_headers_never_reach_the_upstream() {
    let key = SigningKey::generate(KeyAlgorithm::EdDsa);
    let up = upstream_and_issuer(&key).await;
    let gw = start(config(up, "")).await;
    let http = Client::new();
    let t = token(&key, "acme", &["cashier"]);
    let r = http
        .get(format!("{gw}/orders/7?x=1"))
        .bearer_auth(&t)
        .header("X-Tenant-ID", "evil")
        .header("X-User-ID", "root")
        .header("X-Roles", "super_admin")
        .header("X-Forwarded-For", "10.9.9.9")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for h in [
        "strict-transport-security",
        "x-content-type-options",
        "referrer-policy",
        "x-frame-options",
        "ratelimit-limit",
        "ratelimit-remaining",
    ] {
        assert!(r.headers().contains_key(h), "{h}");
    }
    let seen: Value = r.json().await.unwrap();
    let h = &seen["headers"];
    assert_eq!(h["x-tenant-id"], "acme");
    assert_eq!(h["x-user-id"], "user:alice");
    assert_eq!(h["x-roles"], "cashier");
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert!(
        h.get("authorization").is_none(),
        "the credential stays at the gateway"
    );
    assert!(
        h["traceparent"]
            .as_str()
            .unwrap()
            .starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{h}"
    );
    assert_eq!(seen["path"], "/orders/7?x=1");
    // A public route: no credentials needed, and still no client-set identity upstream.
    let seen: Value = http
        .get(format!("{gw}/public/info"))
        .header("X-Tenant-ID", "evil")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(seen["headers"].get("x-tenant-id").is_none(), "{seen}");
    assert_eq!(
        seen["headers"]["traceparent"].as_str().unwrap().len(),
        55,
        "a trace is started"
    );
    // No credentials, a bad token, a missing capability.
    let r = http
        .get(format!("{gw}/orders"))
        .header("X-Tenant-ID", "acme")
        .header("X-Roles", "admin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["x-error-code"], "unauthenticated");
    let r = bearer_get(&http, format!("{gw}/orders"), "garbage").await;
    assert_eq!(
        (
            r.status().as_u16(),
            r.json::<Value>().await.unwrap()["code"].clone()
        ),
        (401, json!("invalid_token"))
    );
    let r = bearer_get(&http, format!("{gw}/admin/x"), &t).await;
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.json::<Value>().await.unwrap()["missing_role"],
        "audit_admin"
    );
    let admin = token(&key, "acme", &["admin"]);
    assert_eq!(
        bearer_get(&http, format!("{gw}/admin/x"), &admin)
            .await
            .status(),
        200
    );
    // HTTP/2 to clients (cleartext, prior knowledge), as well as HTTP/1.1.
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
            "--http2-prior-knowledge",
            "-H",
        ])
        .arg(format!("Authorization: Bearer {admin}"))
        .arg(format!("{gw}/orders"))
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2 200");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_body_limit_and_unhealthy_upstreams() {
    let key = SigningKey::generate(KeyAlgorithm::EdDsa);
    let up = upstream_and_issuer(&key).await;
    let gw = start(config(up, "")).await;
    let http = Client::new();
    let t = token(&key, "acme", &["admin"]);
    // Preflight answered by the gateway.
    let r = http
        .request(reqwest::Method::OPTIONS, format!("{gw}/orders"))
        .header("Origin", "https://console.example")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://console.example"
    );
    assert!(r.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("POST"));
    let r = http
        .request(reqwest::Method::OPTIONS, format!("{gw}/orders"))
        .header("Origin", "https://evil.example")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(!r.headers().contains_key("access-control-allow-origin"));
    // Body limit (1 KiB here), declared or streamed.
    let r = http
        .post(format!("{gw}/orders"))
        .bearer_auth(&t)
        .body(vec![b'x'; 2048])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(
        r.json::<Value>().await.unwrap()["code"],
        "payload_too_large"
    );
    let chunks = futures::stream::iter((0..8).map(|_| Ok::<_, std::io::Error>(vec![b'y'; 512])));
    let r = http
        .post(format!("{gw}/orders"))
        .bearer_auth(&t)
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let r = http
        .post(format!("{gw}/orders"))
        .bearer_auth(&t)
        .body(vec![b'z'; 1000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["body_bytes"], 1000);
    // Upstream down: 502; upstream slow: 504; both in the error shape.
    let r = bearer_get(&http, format!("{gw}/down/x"), &t).await;
    assert_eq!(r.status(), 502);
    assert_eq!(
        r.json::<Value>().await.unwrap()["code"],
        "upstream_unavailable"
    );
    let r = bearer_get(&http, format!("{gw}/slow"), &t).await;
    assert_eq!(r.status(), 504);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["code"], "upstream_timeout");
    assert!(b["trace_id"].as_str().is_some_and(|t| t.len() == 32));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_limit_is_a_429_with_headers_and_shadow_mode_only_counts() {
    let key = SigningKey::generate(KeyAlgorithm::EdDsa);
    let up = upstream_and_issuer(&key).await;
    let gw = start(config(up, "")).await; // in-memory engine, default 600/min, burst 60
    let mut c = config(up, "");
    c.rate_limit.default_rpm = 60;
    c.rate_limit.burst = Some(5);
    c.rate_limit.allow = vec!["internal".into()];
    c.rate_limit.tenants.insert("big".into(), 6000);
    let limited = start(c.clone()).await;
    c.rate_limit.shadow = true;
    let shadow = start(c).await;
    let http = Client::new();
    let acme = token(&key, "acme", &["admin"]);
    let mut codes = Vec::new();
    for _ in 0..8 {
        codes.push(bearer_get(&http, format!("{limited}/x"), &acme).await);
    }
    let statuses: Vec<u16> = codes.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429, 429]);
    let r = &codes[5];
    assert_eq!(r.headers()["x-error-code"], "rate_limited");
    assert!(
        r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    assert_eq!(r.headers()["ratelimit-limit"], "5");
    assert_eq!(r.headers()["ratelimit-remaining"], "0");
    // Another tenant has its own budget; the allow-list and overrides apply.
    let other = token(&key, "globex", &["admin"]);
    assert_eq!(
        bearer_get(&http, format!("{limited}/x"), &other)
            .await
            .status(),
        200
    );
    let internal = token(&key, "internal", &["admin"]);
    let big = token(&key, "big", &["admin"]);
    for _ in 0..20 {
        assert_eq!(
            bearer_get(&http, format!("{limited}/x"), &internal)
                .await
                .status(),
            200
        );
        assert_eq!(
            bearer_get(&http, format!("{limited}/x"), &big)
                .await
                .status(),
            200
        );
    }
    // Shadow mode: never refused, but counted.
    for _ in 0..8 {
        assert_eq!(
            bearer_get(&http, format!("{shadow}/x"), &acme)
                .await
                .status(),
            200
        );
    }
    let m = get_text(&http, format!("{shadow}/gateway/metrics")).await;
    assert!(
        m.contains("gateway_rate_limit_rejections_total{mode=\"shadow\"} 3"),
        "{m}"
    );
    let _ = gw;
}

/// A Redis server of the test's own, on a free port, that the test can stop and start.
struct OwnRedis {
    child: Option<Child>,
}

impl OwnRedis {
    fn start(port: u16) -> OwnRedis {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
                "--bind",
                "127.0.0.1",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (./scripts/test.sh installs it)");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        OwnRedis { child: Some(child) }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

fn shared_redis_url() -> String {
    std::env::var("VIGIL_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tenant_limit_holds_across_two_instances_sharing_redis() {
    let key = SigningKey::generate(KeyAlgorithm::EdDsa);
    let up = upstream_and_issuer(&key).await;
    let mut c = config(up, "");
    c.rate_limit.redis_url = Some(shared_redis_url());
    c.rate_limit.key_prefix = format!("vigil-test:{}:", uuid::Uuid::new_v4().simple());
    c.rate_limit.default_rpm = 600; // one per 100 ms
    c.rate_limit.burst = Some(10);
    c.rate_limit.instances = 2;
    // One instance serves on threads of its own (the default: each with its own Redis
    // connection), the other on the test's runtime: one limit either way.
    c.serving_threads = Some(2);
    let a = start(c.clone()).await;
    c.serving_threads = Some(0);
    let b = start(c).await;
    let http = Client::new();
    let t = token(&key, "acme", &["admin"]);
    let started = std::time::Instant::now();
    let admitted = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (base, http, t, admitted) = (
            if i % 2 == 0 { a.clone() } else { b.clone() },
            http.clone(),
            t.clone(),
            admitted.clone(),
        );
        tasks.push(tokio::spawn(async move {
            for _ in 0..40 {
                let s = bearer_get(&http, format!("{base}/x"), &t)
                    .await
                    .status()
                    .as_u16();
                assert!(s == 200 || s == 429, "{s}");
                if s == 200 {
                    admitted.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let admitted = admitted.load(Ordering::SeqCst) as f64;
    // GCRA: at most the burst plus one per emission interval elapsed, whichever instance.
    let bound = 10.0 + (elapsed / 0.1).ceil() + 1.0;
    assert!(
        admitted <= bound,
        "admitted {admitted} in {elapsed:.2} s; bound {bound}"
    );
    assert!(admitted >= 10.0, "admitted only {admitted}");
    let m = get_text(&http, format!("{a}/gateway/metrics")).await;
    assert!(
        m.contains("gateway_rate_limiter_backend{engine=\"redis\"} 1"),
        "{m}"
    );
}

/// Leases: far below its limit a key's decisions share round trips; under concurrency from
/// two instances the limit still holds exactly (never more admitted than GCRA allows), and
/// what leases hold unused costs little of the burst.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leased_decisions_save_round_trips_and_never_exceed_the_limit() {
    use vigil_gateway::limiter::{Limit, RateLimiter, RedisLimiter};
    let prefix = format!("vigil-test:{}:", uuid::Uuid::new_v4().simple());
    let timeout = Duration::from_secs(1);
    let far = RedisLimiter::connect(&shared_redis_url(), &prefix, timeout)
        .await
        .unwrap();
    let big = Limit {
        per_minute: 6_000_000,
        burst: 600_000,
    };
    for _ in 0..1000 {
        assert!(far.check("far", &big).await.unwrap().allowed);
    }
    assert!(
        far.round_trips() < 100,
        "1000 decisions far below the limit took {} round trips",
        far.round_trips()
    );

    // 60,000 a minute (one per ms), a burst of 200, hammered by 16 callers over two instances.
    let limit = Limit {
        per_minute: 60_000,
        burst: 200,
    };
    let a = Arc::new(
        RedisLimiter::connect(&shared_redis_url(), &prefix, timeout)
            .await
            .unwrap(),
    );
    let b = Arc::new(
        RedisLimiter::connect(&shared_redis_url(), &prefix, timeout)
            .await
            .unwrap(),
    );
    let admitted = Arc::new(AtomicUsize::new(0));
    let started = std::time::Instant::now();
    let mut tasks = vec![];
    for i in 0..16 {
        let (l, admitted) = (
            if i % 2 == 0 { a.clone() } else { b.clone() },
            admitted.clone(),
        );
        tasks.push(tokio::spawn(async move {
            for _ in 0..100 {
                if l.check("near", &limit).await.unwrap().allowed {
                    admitted.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    let admitted = admitted.load(Ordering::SeqCst) as f64;
    let bound = 200.0 + elapsed_ms.ceil() + 1.0;
    assert!(
        admitted <= bound,
        "admitted {admitted} in {elapsed_ms:.0} ms; bound {bound}"
    );
    // Leases may strand some admissions, never most of the burst.
    assert!(
        admitted >= 150.0,
        "admitted only {admitted} of a burst of 200"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_stopped_mid_load_and_started_again_costs_no_5xx() {
    let key = SigningKey::generate(KeyAlgorithm::EdDsa);
    let up = upstream_and_issuer(&key).await;
    let port = crate::common::free_port();
    let mut redis = OwnRedis::start(port);
    let mut c = config(up, "");
    c.rate_limit.redis_url = Some(format!("redis://127.0.0.1:{port}"));
    c.rate_limit.default_rpm = 600_000;
    c.rate_limit.redis_timeout_ms = 25;
    c.rate_limit.breaker_probe_ms = 200;
    let (audit_url, audited) = audit_capture().await;
    c.audit_url = Some(audit_url);
    let gw = Gateway::build(c).await.unwrap();
    let base = format!("http://{}", gw.local_addr());
    tokio::spawn(gw.run_until_stopped(std::future::pending()));
    let http = Client::new();
    let t = token(&key, "acme", &["admin"]);
    let stop = Arc::new(AtomicBool::new(false));
    let bad = Arc::new(std::sync::Mutex::new(Vec::<u16>::new()));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (base, http, t, stop, bad, sent) = (
            base.clone(),
            http.clone(),
            t.clone(),
            stop.clone(),
            bad.clone(),
            sent.clone(),
        );
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let s = bearer_get(&http, format!("{base}/x"), &t)
                    .await
                    .status()
                    .as_u16();
                sent.fetch_add(1, Ordering::SeqCst);
                if s != 200 {
                    bad.lock().unwrap().push(s);
                }
            }
        }));
    }
    let metrics = || async { get_text(&http, format!("{base}/gateway/metrics")).await };
    let wait_for = |needle: &'static str| {
        let metrics = &metrics;
        async move {
            for _ in 0..100 {
                let m = metrics().await;
                if m.contains(needle) {
                    return m;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("never saw {needle}: {}", metrics().await)
        }
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    redis.stop();
    let m = wait_for("gateway_rate_limiter_backend{engine=\"memory\"} 1").await;
    assert!(
        m.contains("gateway_rate_limiter_transitions_total{to=\"memory\"} 1"),
        "{m}"
    );
    tokio::time::sleep(Duration::from_millis(1000)).await; // the fallback decides meanwhile
    let before = crate::common::metric_value(
        &metrics().await,
        "gateway_rate_limit_checks_total{engine=\"memory\",outcome=\"allowed\"}",
    );
    assert!(before > 10.0, "the fallback decided {before} requests");
    let _redis = OwnRedis::start(port);
    let m = wait_for("gateway_rate_limiter_backend{engine=\"redis\"} 1").await;
    assert!(
        m.contains("gateway_rate_limiter_transitions_total{to=\"redis\"} 1"),
        "{m}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    for l in load {
        l.await.unwrap();
    }
    let bad = bad.lock().unwrap().clone();
    assert!(
        bad.is_empty(),
        "{} of {} requests failed: {:?}",
        bad.len(),
        sent.load(Ordering::SeqCst),
        &bad[..bad.len().min(10)]
    );
    let m = metrics().await;
    assert!(
        crate::common::metric_value(
            &m,
            "gateway_rate_limit_checks_total{engine=\"redis\",outcome=\"allowed\"}"
        ) > 10.0,
        "{m}"
    );
    // Both changes are audit events in the system tenant.
    let engines: Vec<String> = audited
        .lock()
        .unwrap()
        .iter()
        .filter(|(t, e)| t == "system" && e["action"] == "gateway.rate_limiter.engine_changed")
        .map(|(_, e)| e["payload"]["engine"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(engines, ["memory", "redis"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_identify_the_caller_until_revoked() {
    use vigil_authsvc::events::Actor;
    use vigil_security::capability::{Role, RoleSet};
    let (auth_base, issuer, store, _dir) = crate::common::auth_in_process().await;
    let system = vigil_core::ids::TenantId::parse("system").unwrap();
    let acme = vigil_core::ids::TenantId::parse("acme").unwrap();
    let (client_id, secret) = vigil_authsvc::service::add_client(
        &store,
        &system,
        "gateway",
        RoleSet::of(&[Role::Service]),
        Actor::System,
    )
    .await
    .unwrap();
    vigil_authsvc::service::add_user(
        &store,
        &Default::default(),
        &acme,
        "ada",
        "quiet harbour lights",
        RoleSet::of(&[Role::Admin]),
        Actor::System,
    )
    .await
    .unwrap();
    let http = Client::new();
    let login: Value = http
        .post(format!("{auth_base}/v1/login"))
        .json(&json!({"tenant_id": "acme", "username": "ada", "password": "quiet harbour lights"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let admin = login["access_token"].as_str().unwrap().to_owned();
    let created: Value = http
        .post(format!("{auth_base}/v1/api-keys"))
        .bearer_auth(&admin)
        .json(&json!({"name": "pos", "roles": ["cashier"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (key_id, key) = (
        created["id"].as_str().unwrap().to_owned(),
        created["key"].as_str().unwrap().to_owned(),
    );

    let key_signer = SigningKey::generate(KeyAlgorithm::EdDsa);
    let up = upstream_and_issuer(&key_signer).await;
    let mut c = config(up, "");
    let a = c.auth.as_mut().unwrap();
    a.jwks_url = format!("{auth_base}/.well-known/jwks.json");
    a.issuer = issuer;
    a.api_keys = Some(vigil_gateway::identity::ApiKeyConfig {
        url: auth_base.clone(),
        client_id,
        client_secret: secret.expose().to_owned(),
        cache_secs: 1,
    });
    let gw = start(c).await;
    let seen: Value = http
        .get(format!("{gw}/pos/sale"))
        .header("X-API-Key", &key)
        .header("X-Tenant-ID", "evil")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen["headers"]["x-tenant-id"], "acme", "{seen}");
    assert_eq!(seen["headers"]["x-user-id"], format!("api_key:{key_id}"));
    assert_eq!(seen["headers"]["x-roles"], "cashier");
    assert!(
        seen["headers"].get("x-api-key").is_none(),
        "the key stays at the gateway"
    );
    let r = bearer_get(&http, format!("{gw}/pos/sale"), &key).await;
    assert_eq!(r.status(), 200, "as a bearer credential too");
    // The user's JWT from the same auth service works as well.
    assert_eq!(
        bearer_get(&http, format!("{gw}/x"), &admin).await.status(),
        200
    );
    for bad in [
        "vk_000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "vk_nonsense",
    ] {
        let r = http
            .get(format!("{gw}/pos/sale"))
            .header("X-API-Key", bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{bad}");
    }
    // Revoked: refused once the gateway's cache (1 s here) has expired.
    assert_eq!(
        http.delete(format!("{auth_base}/v1/api-keys/{key_id}"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let r = http
        .get(format!("{gw}/pos/sale"))
        .header("X-API-Key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "invalid_token");
}

/// Records what the gateway sends to the audit service: (tenant header, event).
async fn audit_capture() -> (String, Arc<std::sync::Mutex<Vec<(String, Value)>>>) {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    let app = Router::new().route(
        "/v1/events",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, axum::Json(events): axum::Json<Vec<Value>>| {
                let s = s.clone();
                async move {
                    let tenant = headers
                        .get("x-tenant-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    assert_eq!(headers.get("x-roles").unwrap(), "service");
                    s.lock()
                        .unwrap()
                        .extend(events.into_iter().map(|e| (tenant.clone(), e)));
                    axum::Json(json!({"stored": 1}))
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaches_are_audited_once_per_tenant_and_minute_and_auth_failures_too() {
    let key = SigningKey::generate(KeyAlgorithm::EdDsa);
    let up = upstream_and_issuer(&key).await;
    let (audit_url, seen) = audit_capture().await;
    let mut c = config(up, "");
    c.rate_limit.default_rpm = 60;
    c.rate_limit.burst = Some(2);
    c.audit_url = Some(audit_url);
    let gw = Gateway::build(c).await.unwrap();
    let base = format!("http://{}", gw.local_addr());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(gw.run_until_stopped(async move {
        let _ = stop_rx.await;
    }));
    let http = Client::new();
    let t = token(&key, "acme", &["admin"]);
    let mut refused = 0;
    for _ in 0..7 {
        if bearer_get(&http, format!("{base}/x"), &t).await.status() == 429 {
            refused += 1;
        }
    }
    assert_eq!(refused, 5);
    assert_eq!(
        bearer_get(&http, format!("{base}/x"), "forged")
            .await
            .status(),
        401
    );
    // Stopping flushes the current minute's counts.
    stop_tx.send(()).unwrap();
    server.await.unwrap().unwrap();
    let mut events = Vec::new();
    for _ in 0..50 {
        events = seen.lock().unwrap().clone();
        if events.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let breach: Vec<_> = events
        .iter()
        .filter(|(_, e)| e["action"] == "gateway.rate_limit.exceeded")
        .collect();
    assert_eq!(
        breach.len(),
        1,
        "one event for the tenant's minute: {events:?}"
    );
    assert_eq!(breach[0].0, "acme");
    assert_eq!(breach[0].1["payload"]["rejected"], 5);
    let auth: Vec<_> = events
        .iter()
        .filter(|(_, e)| e["action"] == "gateway.auth.failed")
        .collect();
    assert_eq!(auth.len(), 1, "{events:?}");
    assert_eq!(auth[0].0, "system");
    assert_eq!(auth[0].1["payload"]["code"], "invalid_token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_with_its_own_limit_is_counted_apart_from_the_tenant_budget() {
    let key = SigningKey::generate(KeyAlgorithm::EdDsa);
    let up = upstream_and_issuer(&key).await;
    let gw = start(config(
        up,
        &format!("[[routes]]\nprefix = \"/export\"\nupstreams = [\"http://{up}\"]\nrpm = 6\n"),
    ))
    .await;
    let http = Client::new();
    let t = token(&key, "acme", &["admin"]);
    let status = |path: &'static str| {
        let (http, t, gw) = (http.clone(), t.clone(), gw.clone());
        async move {
            bearer_get(&http, format!("{gw}{path}"), &t)
                .await
                .status()
                .as_u16()
        }
    };
    // 6 a minute: a burst of 1.
    assert_eq!(status("/export/a").await, 200);
    assert_eq!(status("/export/b").await, 429);
    // The tenant's other routes keep their own budget.
    for _ in 0..5 {
        assert_eq!(status("/orders").await, 200);
    }
}

/// An upstream that answers every path with its `name` and reports `/readyz` as `ready` says.
async fn named_upstream(name: &'static str, ready: Arc<AtomicBool>) -> std::net::SocketAddr {
    let app = Router::new()
        .route(
            "/readyz",
            get(move || async move {
                if ready.load(Ordering::SeqCst) {
                    (axum::http::StatusCode::OK, "ready")
                } else {
                    (axum::http::StatusCode::SERVICE_UNAVAILABLE, "draining")
                }
            }),
        )
        .fallback(any(move || async move { name }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// Which upstreams answered six GETs through the gateway.
async fn answered_by(http: &Client, gw: &str, t: &str) -> std::collections::HashSet<String> {
    let mut seen = std::collections::HashSet::new();
    for _ in 0..6 {
        seen.insert(
            bearer_get(http, format!("{gw}/x"), t)
                .await
                .text()
                .await
                .unwrap(),
        );
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstreams_that_refuse_or_are_not_ready_leave_the_rotation_and_come_back() {
    let key = SigningKey::generate(KeyAlgorithm::EdDsa);
    let issuer = upstream_and_issuer(&key).await;
    let ready = Arc::new(AtomicBool::new(true));
    let a = named_upstream("a", Arc::new(AtomicBool::new(true))).await;
    let b = named_upstream("b", ready.clone()).await;
    let gone = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut c = GatewayConfig::from_toml(&format!(
        r#"
        health_interval_ms = 100
        eject_ms = 60000
        [auth]
        jwks_url = "http://{issuer}/.well-known/jwks.json"
        issuer = "{ISS}"
        [[routes]]
        prefix = "/gone"
        upstreams = ["http://{gone}", "http://{a}"]
        [[routes]]
        prefix = "/"
        upstreams = ["http://{a}", "http://{b}"]
        "#
    ))
    .unwrap();
    c.listen = "127.0.0.1:0".parse().unwrap();
    // No probes at all for this check: only the refused connection takes it out.
    c.health_path = String::new();
    let unprobed = start(c.clone()).await;
    c.health_path = "/readyz".into();
    let gw = start(c).await;
    let http = Client::new();
    let t = token(&key, "acme", &["admin"]);
    // A request without a body goes on to the next upstream when one refuses: never a 502.
    for _ in 0..6 {
        let r = bearer_get(&http, format!("{unprobed}/gone/x"), &t).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "a");
    }
    // The refusal took it out of the rotation: a request with a body no longer meets it.
    for _ in 0..6 {
        let r = http
            .post(format!("{unprobed}/gone/x"))
            .bearer_auth(&t)
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // Both ready: both take turns.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = answered_by(&http, &gw, &t).await;
    assert_eq!(seen.len(), 2, "{seen:?}");
    // b drains (not ready, still serving): the probes take it out, requests go to a only.
    ready.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(400)).await;
    for _ in 0..6 {
        let r = http
            .post(format!("{gw}/x"))
            .bearer_auth(&t)
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.text().await.unwrap(), "a");
    }
    let m = get_text(&http, format!("{gw}/gateway/metrics")).await;
    assert!(
        m.contains(&format!(
            "gateway_upstream_up{{route=\"/\",upstream=\"http://{b}\"}} 0"
        )),
        "{m}"
    );
    // Ready again: back in the rotation.
    ready.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let seen = answered_by(&http, &gw, &t).await;
    assert_eq!(seen.len(), 2, "{seen:?}");
}
