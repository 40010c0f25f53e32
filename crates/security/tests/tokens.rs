//! Bearer tokens through a real router: the identity comes from the verified token alone;
//! expired, mis-addressed, unsigned and oversized tokens are 401s in the shared shape.

use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use axum::{Extension, Router};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use serde_json::{json, Value};
use std::sync::Arc;
use tower::ServiceExt;
use vigil_security::capability::CapabilityPolicy;
use vigil_security::context::{Guard, IdentitySource, SecurityConfig, SecurityContext};
use vigil_security::http_metrics::HttpMetrics;
use vigil_security::token::StaticKeyVerifier;

const SECRET: &[u8] = b"a test secret that is long enough for HS256";

fn app() -> Router {
    let registry = prometheus::Registry::new();
    let verifier = StaticKeyVerifier::new(
        DecodingKey::from_secret(SECRET),
        Algorithm::HS256,
        "https://auth.test",
        "vigil",
        5,
    );
    let config = SecurityConfig {
        source: IdentitySource {
            trusted_headers: Some(vec![]),
            bearer: Some(Arc::new(verifier)),
        },
        guard: Guard::new(CapabilityPolicy::shipped(), &registry),
    };
    let whoami = |ctx: SecurityContext| async move {
        axum::Json(
            json!({"tenant": ctx.tenant_id.as_str(), "user": ctx.user_id, "roles": ctx.roles.names()}),
        )
    };
    vigil_security::harden(
        Router::new()
            .route("/whoami", get(whoami))
            .layer(Extension(config)),
        HttpMetrics::new("t", &registry, 40),
    )
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn token(claims: Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

fn claims() -> Value {
    json!({"iss": "https://auth.test", "aud": "vigil", "sub": "u-42", "exp": now() + 300, "iat": now(), "nbf": now() - 1,
           "jti": "j-1", "tenant_id": "acme", "roles": ["support", "astronaut"]})
}

async fn call(auth: &str, extra: &[(&str, &str)]) -> (u16, Option<String>, Value) {
    let mut b = Request::builder()
        .uri("/whoami")
        .header("Authorization", auth);
    for (k, v) in extra {
        b = b.header(*k, *v);
    }
    let resp = app().oneshot(b.body(Body::empty()).unwrap()).await.unwrap();
    let status = resp.status().as_u16();
    let code = resp
        .headers()
        .get("x-error-code")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        code,
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn a_valid_token_is_the_whole_identity_and_spoofed_headers_are_ignored() {
    let t = token(claims());
    let (status, _, body) = call(
        &format!("Bearer {t}"),
        &[("X-Tenant-ID", "evil"), ("X-Roles", "super_admin")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"tenant": "acme", "user": "u-42", "roles": ["support"]})
    );
}

#[tokio::test]
async fn bad_tokens_are_refused_with_the_right_code() {
    let mut expired = claims();
    expired["exp"] = json!(now() - 60);
    let mut early = claims();
    early["nbf"] = json!(now() + 600);
    let mut wrong_aud = claims();
    wrong_aud["aud"] = json!("someone-else");
    let mut wrong_iss = claims();
    wrong_iss["iss"] = json!("https://evil.test");
    let mut bad_tenant = claims();
    bad_tenant["tenant_id"] = json!("NOT A TENANT");
    let unsigned = {
        use base64::Engine;
        let b64 =
            |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        format!(
            "{}.{}.",
            b64(&json!({"alg": "none", "typ": "JWT"})),
            b64(&claims())
        )
    };
    let mut flipped = token(claims());
    let last = flipped.pop().unwrap();
    flipped.push(if last == 'A' { 'B' } else { 'A' });
    let huge = format!("{}.{}.sig", "a".repeat(1 << 20), "b");
    let cases = [
        (format!("Bearer {}", token(expired)), "token_expired"),
        (format!("Bearer {}", token(early)), "invalid_token"),
        (format!("Bearer {}", token(wrong_aud)), "invalid_token"),
        (format!("Bearer {}", token(wrong_iss)), "invalid_token"),
        (format!("Bearer {}", token(bad_tenant)), "invalid_token"),
        (format!("Bearer {unsigned}"), "invalid_token"),
        (format!("Bearer {flipped}"), "invalid_token"),
        (format!("Bearer {huge}"), "invalid_token"),
        ("Basic dXNlcjpwdw==".to_owned(), "invalid_token"),
        ("Bearer ".to_owned(), "invalid_token"),
    ];
    for (auth, want) in cases {
        let (status, code, body) = call(&auth, &[]).await;
        assert_eq!(
            (status, code.as_deref()),
            (401, Some(want)),
            "{}",
            &auth[..auth.len().min(60)]
        );
        assert!(!body.to_string().contains(SECRET_STR), "{body}");
    }
}

const SECRET_STR: &str = "a test secret";
