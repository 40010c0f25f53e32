//! The security context in front of the audit service: capabilities by Cedar policy, denials
//! audited, identity headers validated, and the refusal to trust headers on an open address.

use crate::common::*;
use serde_json::Value;
use std::time::Duration;

async fn as_role(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    roles: &str,
) -> reqwest::Response {
    let mut req = app
        .client
        .request(method.clone(), app.url(path))
        .header("X-Tenant-ID", "acme")
        .header("X-User-ID", "u-7")
        .header("X-Roles", roles);
    if method == reqwest::Method::POST {
        req = req.json(&events(0, 1));
    }
    req.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_route_needs_its_capability_and_roles_get_what_the_policy_gives() {
    let app = spawn_app(Engine::Sqlite).await;
    use reqwest::Method as M;
    // (roles, method, path, expected status)
    let cases = [
        ("service", M::POST, "/v1/events", 200),
        ("admin", M::POST, "/v1/events", 200),
        ("super_admin", M::POST, "/v1/events", 200),
        ("support", M::POST, "/v1/events", 403),
        ("cashier", M::POST, "/v1/events", 403),
        ("manager", M::GET, "/v1/events", 200),
        ("support", M::GET, "/v1/events", 200),
        ("service", M::GET, "/v1/events", 403),
        ("inventory", M::GET, "/v1/chain/head", 403),
        ("cashier,support", M::GET, "/v1/chain/head", 200),
        ("wizard", M::GET, "/v1/events", 403),
        ("", M::GET, "/v1/events", 400),
    ];
    for (roles, method, path, want) in cases {
        let r = as_role(&app, method.clone(), path, roles).await;
        assert_eq!(r.status().as_u16(), want, "{roles:?} {method} {path}");
        if want == 403 {
            assert_eq!(r.headers()["x-error-code"], "missing_role");
            let body: Value = r.json().await.unwrap();
            let cap = if method == M::POST {
                "audit_write"
            } else {
                "audit_read"
            };
            assert_eq!(body["missing_role"], cap);
            // A refusal names the capability, never the roles or the policy.
            assert!(
                !body.to_string().contains("wizard") && !body.to_string().contains("permit"),
                "{body}"
            );
        }
    }
    assert_eq!(app.metric("capability_checks_total").await, 11.0);
    assert_eq!(app.metric("capability_denials_total").await, 5.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denial_is_recorded_as_a_security_event_in_the_callers_tenant() {
    let app = spawn_app(Engine::Sqlite).await;
    let r = as_role(&app, reqwest::Method::POST, "/v1/events", "cashier").await;
    assert_eq!(r.status(), 403);
    let trace = r.headers()["x-trace-id"].to_str().unwrap().to_owned();
    for _ in 0..100 {
        let page = app
            .get_json("acme", "/v1/events?action=capability.denied")
            .await;
        if let Some(e) = page["events"].as_array().unwrap().first() {
            assert_eq!(e["severity"], "security");
            assert_eq!(e["outcome"], "denied");
            assert_eq!(e["actor"]["id"], "u-7");
            assert_eq!(e["trace_id"], trace.as_str());
            assert_eq!(e["payload"]["capability"], "audit_write");
            assert_eq!(e["payload"]["roles"], serde_json::json!(["cashier"]));
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the denial was not audited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_duplicated_or_oversized_identity_headers_are_400s() {
    let app = spawn_app(Engine::Sqlite).await;
    let base = || {
        app.client
            .get(app.url("/v1/events"))
            .header("X-Tenant-ID", "acme")
    };
    let cases: Vec<(&str, reqwest::RequestBuilder)> = vec![
        (
            "oversized roles",
            base().header("X-Roles", "admin,".repeat(400)),
        ),
        (
            "duplicated roles",
            base()
                .header("X-Roles", "admin")
                .header("X-Roles", "support"),
        ),
        (
            "non-ASCII user",
            base().header("X-Roles", "admin").header(
                "X-User-ID",
                reqwest::header::HeaderValue::from_bytes(b"u\xff").unwrap(),
            ),
        ),
        (
            "control char user",
            base().header("X-Roles", "admin").header(
                "X-User-ID",
                reqwest::header::HeaderValue::from_bytes(b"u\tx").unwrap(),
            ),
        ),
        (
            "duplicated user",
            base()
                .header("X-Roles", "admin")
                .header("X-User-ID", "a")
                .header("X-User-ID", "b"),
        ),
        (
            "oversized tenant",
            app.client
                .get(app.url("/v1/events"))
                .header("X-Tenant-ID", "a".repeat(2000))
                .header("X-Roles", "admin"),
        ),
    ];
    for (what, req) in cases {
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 400, "{what}");
        assert_eq!(r.headers()["x-error-code"], "bad_request", "{what}");
    }
}

#[tokio::test]
async fn trusting_headers_on_an_open_address_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = vigil_audit::AuditSettings::embedded(dir.path().to_path_buf());
    s.listen = "0.0.0.0:0".parse().unwrap();
    let err = vigil_audit::Application::build(s.clone())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("--trusted-peer"), "{err}");
    s.trusted_peers = vec!["10.0.0.2".parse().unwrap()];
    vigil_audit::Application::build(s)
        .await
        .expect("with the gateway named, it starts");
}

#[tokio::test]
async fn a_capability_policy_that_does_not_validate_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("bad.cedar");
    std::fs::write(
        &policy,
        r#"permit (principal, action == Vigil::Action::"launch_missiles", resource);"#,
    )
    .unwrap();
    let mut s = vigil_audit::AuditSettings::embedded(dir.path().join("data"));
    s.listen = "127.0.0.1:0".parse().unwrap();
    s.capability_policy = Some(policy);
    let err = format!(
        "{:#}",
        vigil_audit::Application::build(s).await.unwrap_err()
    );
    assert!(err.contains("does not validate"), "{err}");
}
