//! Every capability guards a route as the matrix says: a sample of roles per capability,
//! through a real router with trusted headers from loopback.

use axum::body::Body;
use axum::extract::{ConnectInfo, Path};
use axum::http::Request;
use axum::routing::get;
use axum::{Extension, Router};
use std::net::SocketAddr;
use tower::ServiceExt;
use vigil_security::capability::{Capability, CapabilityPolicy, Role, RoleSet};
use vigil_security::context::{Guard, IdentitySource, SecurityConfig, SecurityContext};
use vigil_security::error::ApiError;
use vigil_security::http_metrics::HttpMetrics;

async fn guarded(ctx: SecurityContext, Path(cap): Path<String>) -> Result<&'static str, ApiError> {
    ctx.require(
        Capability::parse(&cap).ok_or_else(|| ApiError::NotFound("no such capability".into()))?,
    )?;
    Ok("ok")
}

#[tokio::test]
async fn each_capability_answers_200_or_403_as_the_policy_says_for_each_role() {
    let registry = prometheus::Registry::new();
    let guard = Guard::new(CapabilityPolicy::shipped(), &registry);
    let config = SecurityConfig {
        source: IdentitySource {
            trusted_headers: Some(vec![]),
            bearer: None,
        },
        guard: guard.clone(),
    };
    let app = vigil_security::harden(
        Router::new()
            .route("/cap/{cap}", get(guarded))
            .layer(Extension(config)),
        HttpMetrics::new("test", &registry, 40),
    );
    let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    for cap in Capability::ALL {
        for role in Role::ALL {
            let req = Request::builder()
                .uri(format!("/cap/{cap}"))
                .header("X-Tenant-ID", "acme")
                .header("X-Roles", role.as_str())
                .extension(ConnectInfo(peer))
                .body(Body::empty())
                .unwrap();
            let status = app.clone().oneshot(req).await.unwrap().status().as_u16();
            let allowed = guard.policy().evaluate(RoleSet::of(&[*role]), *cap);
            assert_eq!(status, if allowed { 200 } else { 403 }, "{role} / {cap}");
        }
    }
    // From a peer that is neither loopback nor named, the headers are not trusted at all.
    let req = Request::builder()
        .uri("/cap/audit_read")
        .header("X-Tenant-ID", "acme")
        .header("X-Roles", "super_admin")
        .extension(ConnectInfo("192.0.2.7:5000".parse::<SocketAddr>().unwrap()))
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.clone().oneshot(req).await.unwrap().status(), 401);
}
