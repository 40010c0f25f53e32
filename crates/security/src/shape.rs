//! The backstop that makes the error shape hold by construction: an error response (4xx, 5xx)
//! leaving a service without `X-Error-Code` — written by a layer or a library rather than
//! through [`ApiError`] — is rewritten into the shape, keeping its status and its text, and
//! logged so the route can be fixed. Responses a gateway passes on from the service behind it
//! carry [`Passthrough`] and are left as they are.

use crate::error::{ApiError, ERROR_CODE_HEADER};
use axum::extract::{MatchedPath, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Marks a response (in its extensions) as another service's, to pass on unchanged.
#[derive(Debug, Clone, Copy)]
pub struct Passthrough;

/// Longest body text kept as the message.
const MAX_TEXT: usize = 512;

/// The middleware (in [`crate::harden`]).
pub async fn ensure_error_shape(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error())
        || resp.headers().contains_key(ERROR_CODE_HEADER)
        || resp.extensions().get::<Passthrough>().is_some()
    {
        return resp;
    }
    let plain = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"));
    let text = if plain {
        match axum::body::to_bytes(resp.into_body(), 64 * 1024).await {
            Ok(b) => {
                let t = String::from_utf8_lossy(&b);
                t.chars()
                    .take(MAX_TEXT)
                    .collect::<String>()
                    .trim()
                    .to_owned()
            }
            Err(_) => String::new(),
        }
    } else {
        String::new()
    };
    tracing::warn!(
        route = route.as_deref().unwrap_or("unmatched"),
        status = status.as_u16(),
        "an error response without the error shape was rewritten into it"
    );
    into_shape(status, text).into_response()
}

/// The [`ApiError`] for an error response of `status` that said `text`.
pub fn into_shape(status: StatusCode, text: String) -> ApiError {
    let text = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("refused")
            .to_lowercase()
    } else {
        text
    };
    match status {
        StatusCode::BAD_REQUEST => ApiError::BadRequest(text),
        StatusCode::UNAUTHORIZED => ApiError::Unauthenticated(text),
        StatusCode::NOT_FOUND => ApiError::NotFound(text),
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed,
        StatusCode::CONFLICT => ApiError::Conflict(text),
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(text),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(text),
        StatusCode::TOO_MANY_REQUESTS => ApiError::RateLimited(text),
        StatusCode::SERVICE_UNAVAILABLE => ApiError::Unavailable(text),
        StatusCode::BAD_GATEWAY => ApiError::UpstreamUnavailable(text),
        StatusCode::GATEWAY_TIMEOUT => ApiError::UpstreamTimeout(text),
        s if s.is_server_error() => ApiError::Other {
            status: s,
            code: "internal_error",
            message: "internal error; the trace id identifies it in the service's log".into(),
        },
        s => ApiError::Other {
            status: s,
            code: match s {
                StatusCode::FORBIDDEN => "forbidden",
                StatusCode::NOT_ACCEPTABLE => "not_acceptable",
                StatusCode::REQUEST_TIMEOUT => "request_timeout",
                StatusCode::LENGTH_REQUIRED => "length_required",
                StatusCode::URI_TOO_LONG => "uri_too_long",
                StatusCode::UNPROCESSABLE_ENTITY => "unprocessable",
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "headers_too_large",
                _ => "bad_request",
            },
            message: text,
        },
    }
}
