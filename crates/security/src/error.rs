//! The one error shape of every Vigil service:
//! `{"code": "...", "message": "...", "missing_role"?: "...", "trace_id": "..."}` with the same
//! code in the `X-Error-Code` header. Internals never reach the body: a 500 logs its cause
//! with the trace id and tells the caller only that something failed.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Header that repeats the error code, for clients and proxies that do not parse bodies.
pub const ERROR_CODE_HEADER: &str = "x-error-code";

/// Every error a Vigil HTTP surface returns.
#[derive(Debug)]
pub enum ApiError {
    /// 400 `bad_request`: the request cannot be understood.
    BadRequest(String),
    /// 400 `missing_tenant_id`: no tenant in the caller's context.
    MissingTenant,
    /// 401 `unauthenticated`: no acceptable identity.
    Unauthenticated(String),
    /// 401 `invalid_token`: a bearer token that does not verify.
    InvalidToken(String),
    /// 401 `token_expired`.
    TokenExpired,
    /// 403 `missing_role`: the caller lacks this capability.
    MissingRole(crate::capability::Capability),
    /// 404 `not_found`.
    NotFound(String),
    /// 405 `method_not_allowed`.
    MethodNotAllowed,
    /// 409 `conflict`: the request contradicts what is stored.
    Conflict(String),
    /// 413 `payload_too_large`.
    PayloadTooLarge(String),
    /// 415 `unsupported_media_type`: a body in a content type the route does not take.
    UnsupportedMediaType(String),
    /// 429 `rate_limited`.
    RateLimited(String),
    /// 422 `invalid_event`: well-formed JSON that is not a valid event.
    InvalidEvent(String),
    /// 503 `unavailable`: a dependency (the store) is down; retry later.
    Unavailable(String),
    /// 500 `internal_error`: the cause, with its chain of sources, is logged, never sent.
    Internal(Box<dyn std::error::Error + Send + Sync>),
    /// 502 `upstream_unavailable`: the gateway could not reach the service behind it.
    UpstreamUnavailable(String),
    /// 504 `upstream_timeout`: the service behind the gateway did not answer in time.
    UpstreamTimeout(String),
    /// Any other refusal, with its status and code: what [`crate::shape`] makes of an error
    /// response that something below the handlers (a layer, a library) wrote without the shape.
    Other {
        /// The status, kept.
        status: StatusCode,
        /// The code.
        code: &'static str,
        /// What the caller is told.
        message: String,
    },
    /// Any of the above with extra JSON members (e.g. per-event results of a batch).
    WithDetails(Box<ApiError>, serde_json::Value),
}

/// The error shape, for OpenAPI documents (what [`ApiError`] writes).
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code, reason = "a schema only")]
pub struct ErrorBody {
    /// Stable machine-readable code, also in `X-Error-Code`.
    code: String,
    /// Human-readable explanation.
    message: String,
    /// The capability the caller lacks (403 only).
    missing_role: Option<String>,
    /// The request's trace id.
    trace_id: String,
    /// Extra detail of some errors (per-event results of a refused batch).
    #[schema(value_type = Option<Object>)]
    details: Option<serde_json::Value>,
}

#[derive(Serialize)]
struct Body<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    missing_role: Option<&'a str>,
    trace_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<&'a serde_json::Value>,
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::MissingTenant => StatusCode::BAD_REQUEST,
            ApiError::Unauthenticated(_) | ApiError::InvalidToken(_) | ApiError::TokenExpired => {
                StatusCode::UNAUTHORIZED
            }
            ApiError::MissingRole(_) => StatusCode::FORBIDDEN,
            ApiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::InvalidEvent(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::UpstreamUnavailable(_) => StatusCode::BAD_GATEWAY,
            ApiError::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Other { status, .. } => *status,
            ApiError::WithDetails(e, _) => e.status(),
        }
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::MissingTenant => "missing_tenant_id",
            ApiError::Unauthenticated(_) => "unauthenticated",
            ApiError::InvalidToken(_) => "invalid_token",
            ApiError::TokenExpired => "token_expired",
            ApiError::MissingRole(_) => "missing_role",
            ApiError::RateLimited(_) => "rate_limited",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::InvalidEvent(_) => "invalid_event",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal_error",
            ApiError::UpstreamUnavailable(_) => "upstream_unavailable",
            ApiError::UpstreamTimeout(_) => "upstream_timeout",
            ApiError::Other { code, .. } => code,
            ApiError::WithDetails(e, _) => e.code(),
        }
    }

    /// What the caller is told.
    pub fn message(&self) -> &str {
        match self {
            ApiError::BadRequest(m)
            | ApiError::Unauthenticated(m)
            | ApiError::InvalidToken(m)
            | ApiError::RateLimited(m)
            | ApiError::NotFound(m)
            | ApiError::Conflict(m)
            | ApiError::PayloadTooLarge(m)
            | ApiError::UnsupportedMediaType(m)
            | ApiError::UpstreamUnavailable(m)
            | ApiError::UpstreamTimeout(m)
            | ApiError::InvalidEvent(m)
            | ApiError::Unavailable(m)
            | ApiError::Other { message: m, .. } => m,
            ApiError::MissingTenant => "the request has no tenant: send X-Tenant-ID",
            ApiError::TokenExpired => "the bearer token has expired",
            ApiError::MissingRole(_) => "the caller lacks the capability this needs",
            ApiError::MethodNotAllowed => "method not allowed on this route",
            ApiError::Internal(_) => {
                "internal error; the trace id identifies it in the service's log"
            }
            ApiError::WithDetails(e, _) => e.message(),
        }
    }

    /// The capability a 403 is about.
    fn missing_role(&self) -> Option<&'static str> {
        match self {
            ApiError::MissingRole(c) => Some(c.as_str()),
            ApiError::WithDetails(e, _) => e.missing_role(),
            _ => None,
        }
    }

    /// A 500 for `cause`, keeping it (and its sources) for the log.
    pub fn internal(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> ApiError {
        ApiError::Internal(cause.into())
    }

    /// Attaches extra JSON (kept under `details`).
    pub fn with_details(self, details: serde_json::Value) -> ApiError {
        ApiError::WithDetails(Box::new(self), details)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code(), self.message())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let trace_id = crate::trace::current()
            .map(|t| t.to_string())
            .unwrap_or_default();
        match &self {
            ApiError::Internal(cause) => {
                tracing::error!(%trace_id, cause = %chain(cause.as_ref()), "internal error")
            }
            ApiError::Unavailable(cause) => {
                tracing::warn!(%trace_id, cause = %cause, "dependency unavailable")
            }
            _ => {}
        }
        let details = match &self {
            ApiError::WithDetails(_, d) => Some(d),
            _ => None,
        };
        let body = Body {
            code: self.code(),
            message: self.message(),
            missing_role: self.missing_role(),
            trace_id,
            details,
        };
        let mut resp = (self.status(), axum::Json(body)).into_response();
        resp.headers_mut()
            .insert(ERROR_CODE_HEADER, HeaderValue::from_static(self.code()));
        resp
    }
}

/// `e` and each of its sources, outermost first (`a: b: c`): how an error is logged, since
/// Vigil's error types keep their causes as sources rather than in their own message.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        out.push_str(": ");
        out.push_str(&s.to_string());
        next = s.source();
    }
    out
}

/// Turns a handler's panic into a 500 in the error shape; the panic message goes to the log.
pub fn panic_response(err: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let what = err
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| err.downcast_ref::<&str>().copied())
        .unwrap_or("a panic without a message");
    ApiError::internal(format!("handler panicked: {what}")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("opening the store")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn an_internal_error_keeps_its_sources_for_the_log_and_tells_the_caller_nothing() {
        let cause = Outer(std::io::Error::other("disk on fire at /var/lib/vigil"));
        assert_eq!(
            chain(&cause),
            "opening the store: disk on fire at /var/lib/vigil"
        );
        let e = ApiError::internal(cause);
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!e.message().contains("disk"), "{}", e.message());
        match &e {
            ApiError::Internal(c) => assert!(c.source().is_some(), "the source is kept"),
            _ => unreachable!(),
        }
    }
}
