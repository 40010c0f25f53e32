//! The web console: static assets embedded in the binary (`crates/audit/console`), served at
//! `/console` with a Content-Security-Policy that allows no inline script and no other
//! origin, its settings at `/console/config.json`, and `POST /console/login`, which passes a
//! sign-in to the auth service so the browser only ever talks to this origin. Everything the
//! console shows comes from the API with the caller's token, and the browser checks it
//! itself (see `console/verify.js`).

use super::AppState;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::net::SocketAddr;
use std::sync::Arc;
use vigil_security::error::ApiError;
use vigil_security::extract::Path;

/// The policy every console response carries: scripts, styles and requests from this origin
/// only, nothing inline, not framed.
pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

/// (name, content type, bytes) of each asset.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("../../console/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../console/app.js"),
    ),
    (
        "verify.js",
        "text/javascript; charset=utf-8",
        include_str!("../../console/verify.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../../console/style.css"),
    ),
];

pub(super) fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/console", get(index))
        .route("/console/", get(index))
        .route("/console/config.json", get(config))
        .route("/console/login", post(login))
        .route("/console/{file}", get(asset))
}

fn hardened(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

fn serve(name: &str) -> Option<Response> {
    let (_, ty, body) = ASSETS.iter().find(|(n, _, _)| *n == name)?;
    Some(hardened(
        ([(header::CONTENT_TYPE, *ty)], *body).into_response(),
    ))
}

async fn index() -> Response {
    serve("index.html").expect("the console's index is embedded")
}

async fn asset(Path(file): Path<String>) -> Result<Response, ApiError> {
    serve(&file).ok_or_else(|| ApiError::NotFound(format!("the console has no {file}")))
}

/// What the console needs to know of this service.
async fn config(State(app): State<Arc<AppState>>) -> Response {
    hardened(
        Json(serde_json::json!({
            "login": app.console.auth_url.is_some(),
            "trace_url": app.console.trace_url,
        }))
        .into_response(),
    )
}

/// Signs a user in through the auth service (`POST {auth_url}/v1/login`), answering what it
/// answers: a token, or its error. The auth service records every attempt in the tenant's
/// chain itself. (The console's own route: not part of the API document.)
// audit:ignore the auth service records every login attempt (success or not) in the tenant's chain
pub(super) async fn login(
    State(app): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(body): Json<serde_json::Value>,
) -> Result<Response, ApiError> {
    let Some(auth) = &app.console.auth_url else {
        return Err(ApiError::NotFound(
            "this console signs in with the development identity only (no auth service configured)"
                .into(),
        ));
    };
    let url = format!("{}/v1/login", auth.trim_end_matches('/'));
    let answer = app
        .http
        .post(&url)
        .header("X-Forwarded-For", peer.ip().to_string())
        .json(&body)
        .send()
        .await
        .map_err(|_| ApiError::Unavailable("the auth service cannot be reached".into()))?;
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let retry_after = answer.headers().get(header::RETRY_AFTER).cloned();
    let bytes = answer
        .bytes()
        .await
        .map_err(|_| ApiError::Unavailable("the auth service's answer was cut off".into()))?;
    let mut r = (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response();
    if let Some(v) = retry_after {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}
