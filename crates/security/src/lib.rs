//! Security for every Vigil service: who is calling and for which tenant
//! ([`context::SecurityContext`], from a verified token ([`token`]) or trusted headers), what
//! they may do ([`capability`], decided by a Cedar policy), the trace id of every request
//! ([`trace`]), HTTP metrics ([`http_metrics`]) and the one error shape every refusal takes
//! ([`error::ApiError`]).
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use vigil_security::{context::SecurityContext, error::ApiError};
//!
//! async fn whoami(ctx: SecurityContext) -> Result<String, ApiError> {
//!     Ok(ctx.tenant_id.to_string())
//! }
//! let registry = prometheus::Registry::new();
//! let metrics = vigil_security::http_metrics::HttpMetrics::new("demo", &registry, 40);
//! let app: Router = vigil_security::harden(Router::new().route("/whoami", get(whoami)), metrics);
//! ```
#![deny(missing_docs)]

pub mod capability;
pub mod context;
pub mod drain;
pub mod error;
pub mod extract;
pub mod http_metrics;
pub mod runtime_metrics;
pub mod shape;
pub mod telemetry;
pub mod token;
pub mod trace;

use axum::Router;

/// Wraps a router with what every service needs at its edge, outermost first: the trace-id
/// layer, HTTP metrics (by route template, with the error-code guard), the error shape for
/// any error response written without it ([`shape`]), a 500 in the error shape for a
/// panicking handler, and the error shape for unknown routes and methods.
pub fn harden<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    metrics: std::sync::Arc<http_metrics::HttpMetrics>,
) -> Router<S> {
    router
        .fallback(|| async { error::ApiError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async { error::ApiError::MethodNotAllowed })
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            error::panic_response,
        ))
        .layer(axum::middleware::from_fn(shape::ensure_error_shape))
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            http_metrics::track,
        ))
        .layer(axum::middleware::from_fn(trace::trace_layer))
}
