//! `GET /healthz`, `/readyz`, `/metrics` and `/openapi.json`.

use super::{AppState, ErrorBody};
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use vigil_security::error::ApiError;

pub(super) fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, description = "Alive")))]
pub(super) async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// The store answers: the service can take traffic.
#[utoipa::path(get, path = "/readyz", tag = "ops", responses((status = 200, description = "Ready"), (status = 503, body = ErrorBody)))]
pub(super) async fn readyz(
    State(app): State<Arc<AppState>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if app.draining.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(ApiError::Unavailable(
            "shutting down: draining before the listener closes".into(),
        ));
    }
    let tokens = app.bearer.as_ref().map(|b| b.readiness());
    if let Some((false, why)) = &tokens {
        return Err(ApiError::Unavailable(format!(
            "bearer tokens cannot be verified: {why}"
        )));
    }
    // The consumer's state is reported, not judged: with the broker away the service still
    // answers queries (and producers spool), so it stays in rotation.
    let kafka = app.kafka.as_ref().map(|k| k.status());
    match tokio::time::timeout(Duration::from_secs(2), app.store.ping()).await {
        Ok(Ok(())) => Ok(Json(
            json!({"status": "ready", "store": app.store.engine(), "tokens": tokens.map(|t| t.1), "kafka": kafka}),
        )),
        Ok(Err(e)) => Err(ApiError::Unavailable(format!(
            "the audit store is unreachable: {}",
            if e.is_unavailable() {
                "connection failed"
            } else {
                "error"
            }
        ))),
        Err(_) => Err(ApiError::Unavailable(
            "the audit store did not answer within 2 s".into(),
        )),
    }
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub(super) async fn metrics(State(app): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(),
    )
}

async fn openapi() -> Json<serde_json::Value> {
    Json(super::openapi_document())
}
