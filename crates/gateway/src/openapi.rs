//! The gateway's own OpenAPI document (served at `/gateway/openapi.json`: every other path
//! belongs to the routes and is proxied). It documents the gateway's endpoints and, as
//! reusable responses, the refusals the gateway itself gives on a proxied route before or
//! instead of the upstream's answer.

use serde_json::{json, Value};
use vigil_security::error::ErrorBody;

/// `GET /gateway/openapi.json`.
#[utoipa::path(get, path = "/gateway/openapi.json", tag = "ops",
    responses((status = 200, description = "This document", body = Object)))]
pub(crate) async fn serve() -> axum::Json<Value> {
    axum::Json(openapi_document())
}

#[derive(Debug, utoipa::OpenApi)]
#[openapi(
    info(
        title = "Vigil gateway",
        description = "The gateway's own endpoints. Every other path is matched to a configured route and proxied: the upstream's answer is passed on as it is, and the gateway's own refusals on a proxied route are those under components.responses, each in the error shape with its code also in X-Error-Code."
    ),
    paths(
        crate::proxy::healthz,
        crate::proxy::readyz,
        crate::proxy::metrics_text,
        serve
    ),
    components(schemas(ErrorBody))
)]
struct ApiDoc;

/// The refusals the gateway gives on a proxied route: status, code, when.
pub const REFUSALS: [(u16, &str, &str); 10] = [
    (400, "bad_request", "A malformed identity header, a path that cannot be forwarded, or a CORS preflight from an origin not allowed"),
    (401, "unauthenticated", "The route needs an identity and none was sent"),
    (401, "invalid_token", "The bearer token or API key does not verify"),
    (401, "token_expired", "The bearer token has expired"),
    (403, "missing_role", "The caller lacks the route's capability"),
    (404, "not_found", "No route matches the path"),
    (413, "payload_too_large", "The body is larger than max_body_bytes (declared or streamed)"),
    (429, "rate_limited", "The tenant is over its limit; RateLimit-* and Retry-After say when to retry"),
    (502, "upstream_unavailable", "The route's upstream could not be reached"),
    (504, "upstream_timeout", "The upstream did not answer within request_timeout_ms"),
];

/// The document.
pub fn openapi_document() -> Value {
    use utoipa::OpenApi;
    let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the document serializes");
    for (status, code, when) in REFUSALS {
        doc["components"]["responses"][code] = json!({
            "description": format!("{status} {code}: {when}"),
            "headers": {"X-Error-Code": {"schema": {"type": "string", "enum": [code]}}},
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
        });
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::response::IntoResponse;
    use vigil_security::error::ApiError;

    /// The documented codes are the codes `ApiError` writes for those statuses.
    #[test]
    fn documented_refusals_match_the_errors() {
        for (status, code, _) in REFUSALS {
            let e = match code {
                "bad_request" => ApiError::BadRequest(String::new()),
                "unauthenticated" => ApiError::Unauthenticated(String::new()),
                "invalid_token" => ApiError::InvalidToken(String::new()),
                "token_expired" => ApiError::TokenExpired,
                "missing_role" => {
                    ApiError::MissingRole(vigil_security::capability::Capability::AuditRead)
                }
                "not_found" => ApiError::NotFound(String::new()),
                "payload_too_large" => ApiError::PayloadTooLarge(String::new()),
                "rate_limited" => ApiError::RateLimited(String::new()),
                "upstream_unavailable" => ApiError::UpstreamUnavailable(String::new()),
                "upstream_timeout" => ApiError::UpstreamTimeout(String::new()),
                other => panic!("{other} not checked"),
            };
            assert_eq!(e.code(), code);
            assert_eq!(e.into_response().status().as_u16(), status, "{code}");
        }
        let doc = openapi_document();
        assert_eq!(
            doc["components"]["responses"].as_object().unwrap().len(),
            10
        );
        assert!(doc["paths"]["/gateway/readyz"]["get"]["responses"]["503"].is_object());
    }
}
