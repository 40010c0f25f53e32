//! Every status of the error envelope through a real router: one JSON shape, the code in
//! `X-Error-Code`, the trace id in body and header, and nothing internal in a 500.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use axum::Router;
use serde_json::Value;
use tower::ServiceExt;
use vigil_security::capability::Capability;
use vigil_security::error::ApiError;
use vigil_security::http_metrics::HttpMetrics;

fn app(registry: &prometheus::Registry) -> Router {
    let r = Router::new()
        .route(
            "/bad_request",
            get(|| async { ApiError::BadRequest("the cursor is malformed".into()) }),
        )
        .route(
            "/missing_tenant_id",
            get(|| async { ApiError::MissingTenant }),
        )
        .route(
            "/unauthenticated",
            get(|| async { ApiError::Unauthenticated("no credentials".into()) }),
        )
        .route(
            "/invalid_token",
            get(|| async { ApiError::InvalidToken("bad signature".into()) }),
        )
        .route("/token_expired", get(|| async { ApiError::TokenExpired }))
        .route(
            "/missing_role",
            get(|| async { ApiError::MissingRole(Capability::AuditRead) }),
        )
        .route(
            "/conflict",
            get(|| async { ApiError::Conflict("event id taken".into()) }),
        )
        .route(
            "/payload_too_large",
            get(|| async { ApiError::PayloadTooLarge("too many events".into()) }),
        )
        .route(
            "/invalid_event",
            get(|| async { ApiError::InvalidEvent("actor.id: is required".into()) }),
        )
        .route(
            "/rate_limited",
            get(|| async { ApiError::RateLimited("over budget".into()) }),
        )
        .route(
            "/unavailable",
            get(|| async { ApiError::Unavailable("store down".into()) }),
        )
        .route(
            "/internal_error",
            get(|| async {
                ApiError::Internal("secret connection string postgres://u:pw@db".into())
            }),
        )
        .route(
            "/panic",
            get(|| async {
                panic!("secret detail in a panic");
                #[allow(unreachable_code)]
                ""
            }),
        );
    vigil_security::harden(r, HttpMetrics::new("test", registry, 40))
}

async fn call(
    app: &Router,
    path: &str,
    method: &str,
) -> (StatusCode, Option<String>, Option<String>, Value) {
    let req = Request::builder()
        .uri(path)
        .method(method)
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .body(Body::empty())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let code = resp
        .headers()
        .get("x-error-code")
        .map(|v| v.to_str().unwrap().to_owned());
    let trace = resp
        .headers()
        .get("x-trace-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        code,
        trace,
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn every_error_status_has_the_one_shape() {
    let registry = prometheus::Registry::new();
    let app = app(&registry);
    let cases = [
        ("/bad_request", 400),
        ("/missing_tenant_id", 400),
        ("/unauthenticated", 401),
        ("/invalid_token", 401),
        ("/token_expired", 401),
        ("/missing_role", 403),
        ("/nowhere", 404),
        ("/conflict", 409),
        ("/payload_too_large", 413),
        ("/invalid_event", 422),
        ("/rate_limited", 429),
        ("/unavailable", 503),
        ("/internal_error", 500),
        ("/panic", 500),
    ];
    for (path, status) in cases {
        let (got, code, trace, body) = call(&app, path, "GET").await;
        assert_eq!(got.as_u16(), status, "{path}");
        let code = code.unwrap_or_else(|| panic!("{path}: no X-Error-Code"));
        assert_eq!(body["code"], code.as_str(), "{path}");
        let expected_code = match path {
            "/nowhere" => "not_found",
            "/panic" => "internal_error",
            p => &p[1..],
        };
        assert_eq!(code, expected_code);
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{path}"
        );
        assert_eq!(
            body["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736",
            "{path}"
        );
        assert_eq!(
            trace.as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736"),
            "{path}"
        );
        assert!(
            !body.to_string().contains("secret"),
            "{path}: internals leaked: {body}"
        );
        assert_eq!(
            body.get("missing_role").is_some(),
            path == "/missing_role",
            "{path}"
        );
    }
    let (_, _, _, body) = call(&app, "/missing_role", "GET").await;
    assert_eq!(body["missing_role"], "audit_read");
    let (status, code, _, _) = call(&app, "/conflict", "DELETE").await;
    assert_eq!(
        (status.as_u16(), code.as_deref()),
        (405, Some("method_not_allowed"))
    );
}

#[tokio::test]
async fn http_metrics_use_route_templates_and_count_error_codes() {
    let registry = prometheus::Registry::new();
    let app = app(&registry);
    call(&app, "/conflict", "GET").await;
    call(&app, "/nowhere/at/all/12345", "GET").await;
    let mut text = Vec::new();
    prometheus::Encoder::encode(
        &prometheus::TextEncoder::new(),
        &registry.gather(),
        &mut text,
    )
    .unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.contains(
            r#"http_requests_total{method="GET",route="/conflict",service="test",status="409"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains(r#"route="unmatched""#), "{text}");
    assert!(!text.contains("12345"), "a raw path reached a label");
    assert!(
        text.contains(r#"http_errors_total{code="conflict",service="test",status="409"} 1"#),
        "{text}"
    );
    assert!(text.contains("http_error_code_saturation"), "{text}");
}

/// Sends `body` as `content_type` to `path` with `method`; (status, X-Error-Code, body).
async fn send(
    app: &Router,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &'static [u8],
) -> (u16, Option<String>, Value) {
    let mut req = Request::builder().uri(path).method(method);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let code = resp
        .headers()
        .get("x-error-code")
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        code,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Thing {
    name: String,
    count: u32,
}

#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct Page {
    limit: u32,
}

fn extracting_app(registry: &prometheus::Registry) -> Router {
    use axum::routing::post;
    use vigil_security::extract::{Form, Json, Path, Query};
    let r = Router::new()
        .route(
            "/things",
            post(|Json(t): Json<Thing>| async move { t.name }),
        )
        .route("/form", post(|Form(t): Form<Thing>| async move { t.name }))
        .route(
            "/page",
            get(|Query(p): Query<Page>| async move { p.limit.to_string() }),
        )
        .route(
            "/things/{n}",
            get(|Path(n): Path<u32>| async move { n.to_string() }),
        )
        .route(
            "/teapot",
            get(|| async { (StatusCode::IM_A_TEAPOT, "short and stout") }),
        )
        .route(
            "/plain500",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "db password is hunter2") }),
        )
        .route(
            "/upstream",
            get(|| async {
                let mut r = axum::response::IntoResponse::into_response((
                    StatusCode::NOT_FOUND,
                    "the upstream's own 404",
                ));
                r.extensions_mut()
                    .insert(vigil_security::shape::Passthrough);
                r
            }),
        )
        .layer(axum::extract::DefaultBodyLimit::max(1024));
    vigil_security::harden(r, HttpMetrics::new("test", registry, 40))
}

#[tokio::test]
async fn extractors_refuse_in_the_shape_naming_the_field() {
    let app = extracting_app(&prometheus::Registry::new());
    let json = Some("application/json");
    // (method, path, content type, body, status, code, what the message names)
    type Case = (
        &'static str,
        &'static str,
        Option<&'static str>,
        &'static [u8],
        u16,
        &'static str,
        &'static str,
    );
    let cases: [Case; 12] = [
        (
            "POST",
            "/things",
            json,
            b"{\"name\":",
            400,
            "bad_request",
            "not valid JSON",
        ),
        (
            "POST",
            "/things",
            json,
            b"{\"name\":5,\"count\":1}",
            400,
            "bad_request",
            "name",
        ),
        (
            "POST",
            "/things",
            json,
            b"{\"name\":\"a\",\"count\":1,\"tenant_id\":\"x\"}",
            400,
            "bad_request",
            "tenant_id",
        ),
        (
            "POST",
            "/things",
            json,
            b"{\"name\":\"a\"}",
            400,
            "bad_request",
            "count",
        ),
        // serde would read a struct from an array of its field values: not here.
        (
            "POST",
            "/things",
            json,
            b" [\"a\", 1]",
            400,
            "bad_request",
            "a JSON object",
        ),
        (
            "POST",
            "/things",
            json,
            b"",
            400,
            "bad_request",
            "not valid JSON",
        ),
        (
            "POST",
            "/things",
            Some("text/plain"),
            b"{}",
            415,
            "unsupported_media_type",
            "application/json",
        ),
        (
            "POST",
            "/things",
            json,
            &[b' '; 4096],
            413,
            "payload_too_large",
            "too large",
        ),
        (
            "POST",
            "/form",
            json,
            b"name=a&count=1",
            415,
            "unsupported_media_type",
            "form",
        ),
        (
            "POST",
            "/form",
            Some("application/x-www-form-urlencoded"),
            b"name=a&count=lots",
            400,
            "bad_request",
            "count",
        ),
        (
            "GET",
            "/page?limit=many",
            None,
            b"",
            400,
            "bad_request",
            "limit",
        ),
        (
            "GET",
            "/things/seven",
            None,
            b"",
            400,
            "bad_request",
            "path",
        ),
    ];
    for (method, path, ct, body, status, code, mentions) in cases {
        let (s, header, b) = send(&app, method, path, ct, body).await;
        let what = format!(
            "{method} {path} {:?}",
            String::from_utf8_lossy(&body[..body.len().min(40)])
        );
        assert_eq!(s, status, "{what}: {b}");
        assert_eq!(header.as_deref(), Some(code), "{what}: {b}");
        assert_eq!(b["code"], code, "{what}");
        let msg = b["message"].as_str().unwrap();
        assert!(msg.contains(mentions), "{what}: {msg}");
    }
    for ct in [
        "application/json",
        "Application/JSON; charset=utf-8",
        "application/merge-patch+json",
    ] {
        let (s, _, b) = send(
            &app,
            "POST",
            "/things",
            Some(ct),
            b"{\"name\":\"a\",\"count\":1}",
        )
        .await;
        assert_eq!(s, 200, "{ct}: {b}");
    }
}

#[tokio::test]
async fn an_error_written_without_the_shape_is_put_in_it_and_a_passed_on_one_is_not() {
    let app = extracting_app(&prometheus::Registry::new());
    let (s, code, b) = send(&app, "GET", "/teapot", None, b"").await;
    assert_eq!((s, code.as_deref()), (418, Some("bad_request")), "{b}");
    assert_eq!(b["message"], "short and stout");
    assert!(b["trace_id"].is_string());
    // A 500 keeps its status and loses its text: internals never reach the caller.
    let (s, code, b) = send(&app, "GET", "/plain500", None, b"").await;
    assert_eq!((s, code.as_deref()), (500, Some("internal_error")), "{b}");
    assert!(!b.to_string().contains("hunter2"), "{b}");
    // What a gateway passes on from its upstream stays the upstream's.
    let req = Request::builder()
        .uri("/upstream")
        .body(Body::empty())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 404);
    assert!(resp.headers().get("x-error-code").is_none());
    let bytes = axum::body::to_bytes(resp.into_body(), 1024).await.unwrap();
    assert_eq!(&bytes[..], b"the upstream's own 404");
}
