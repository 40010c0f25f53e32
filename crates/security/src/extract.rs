//! Request extractors whose every refusal is an [`ApiError`]: [`Json`], [`Form`], [`Query`]
//! and [`Path`] in place of axum's, whose rejections are plain-text bodies with no `X-Error-Code`. Every
//! Vigil route takes its input through these.
//!
//! One rule for what is wrong with a request's input, whatever the route:
//!
//! | what | answer |
//! |---|---|
//! | a body that is not JSON (truncated, not UTF-8, nested too deep, a lone surrogate) | 400 `bad_request` |
//! | JSON of the wrong shape: not an object, a missing or unknown field, a wrong type | 400 `bad_request`, naming the field |
//! | a body without `Content-Type: application/json` (or the form type, for a form) | 415 `unsupported_media_type` |
//! | a body over the route's limit | 413 `payload_too_large` |
//! | a query string or path segment that does not parse | 400 `bad_request`, naming the parameter |
//!
//! The audit service's event ingest adds one: a well-formed batch whose events do not validate
//! is 422 `invalid_event`, per event.

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::rejection::{
    BytesRejection, FormRejection, JsonRejection, PathRejection, QueryRejection,
};
use axum::extract::{FromRequest, FromRequestParts, OptionalFromRequest, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

/// A JSON body (`Content-Type: application/json`), refused in the error shape. Also a JSON
/// response, like axum's.
///
/// A body is never a JSON array: serde would otherwise read a struct from an array of its
/// field values (`["ana", "secret"]`), a form no client means and no OpenAPI document
/// describes. (A route that takes a list reads the bytes itself, as event ingest does.)
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(not_json());
        }
        let body = Bytes::from_request(req, state).await?;
        json_object(&body)
    }
}

/// `Option<Json<T>>`: `None` when the request has no body type at all (no body).
impl<T, S> OptionalFromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, ApiError> {
        if !req.headers().contains_key(header::CONTENT_TYPE) {
            return Ok(None);
        }
        <Json<T> as FromRequest<S>>::from_request(req, state)
            .await
            .map(Some)
    }
}

/// `application/json`, or an `application/…+json` type, as axum takes it.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(essence) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
    else {
        return false;
    };
    let essence = essence.trim().to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn not_json() -> ApiError {
    ApiError::UnsupportedMediaType(
        "send the body as JSON, with Content-Type: application/json".into(),
    )
}

/// `body` as a `T`, from anything but a JSON array.
fn json_object<T: DeserializeOwned>(body: &[u8]) -> Result<Json<T>, ApiError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() {
        return Err(ApiError::BadRequest(
            "the body is not what this route takes: a JSON object".into(),
        ));
    }
    axum::Json::<T>::from_bytes(body)
        .map(|axum::Json(v)| Json(v))
        .map_err(ApiError::from)
}

/// A URL-encoded form body (`application/x-www-form-urlencoded`), refused in the error shape.
#[derive(Debug, Clone, Copy, Default)]
pub struct Form<T>(pub T);

impl<T, S> FromRequest<S> for Form<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        axum::Form::<T>::from_request(req, state)
            .await
            .map(|axum::Form(v)| Form(v))
            .map_err(ApiError::from)
    }
}

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// A query string, refused in the error shape.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| Query(v))
            .map_err(ApiError::from)
    }
}

/// Path parameters, refused in the error shape.
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| Path(v))
            .map_err(ApiError::from)
    }
}

/// The body could not be read: too large, or the connection failed.
fn body_error(status: StatusCode, text: String) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge(format!("the request body is too large: {text}"))
    } else {
        ApiError::BadRequest(format!("the request body could not be read: {text}"))
    }
}

impl From<BytesRejection> for ApiError {
    fn from(e: BytesRejection) -> ApiError {
        body_error(e.status(), e.body_text())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> ApiError {
        match e {
            JsonRejection::JsonDataError(e) => ApiError::BadRequest(format!(
                "the body is not what this route takes: {}",
                serde_detail(&e.body_text())
            )),
            JsonRejection::JsonSyntaxError(e) => ApiError::BadRequest(format!(
                "the body is not valid JSON: {}",
                serde_detail(&e.body_text())
            )),
            JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType(
                "send the body as JSON, with Content-Type: application/json".into(),
            ),
            JsonRejection::BytesRejection(e) => ApiError::from(e),
            other => body_error(other.status(), other.body_text()),
        }
    }
}

impl From<FormRejection> for ApiError {
    fn from(e: FormRejection) -> ApiError {
        match e {
            FormRejection::InvalidFormContentType(_) => ApiError::UnsupportedMediaType(
                "send the body as a form, with Content-Type: application/x-www-form-urlencoded"
                    .into(),
            ),
            FormRejection::FailedToDeserializeForm(e) => ApiError::BadRequest(format!(
                "the form is not what this route takes: {}",
                serde_detail(&e.body_text())
            )),
            FormRejection::FailedToDeserializeFormBody(e) => ApiError::BadRequest(format!(
                "the form is not what this route takes: {}",
                serde_detail(&e.body_text())
            )),
            FormRejection::BytesRejection(e) => ApiError::from(e),
            other => body_error(other.status(), other.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> ApiError {
        ApiError::BadRequest(format!(
            "the query string is not what this route takes: {}",
            serde_detail(&e.body_text())
        ))
    }
}

impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> ApiError {
        ApiError::BadRequest(format!(
            "the path is not what this route takes: {}",
            serde_detail(&e.body_text())
        ))
    }
}

/// serde's own words, without axum's preamble ("Failed to deserialize …: ").
fn serde_detail(text: &str) -> &str {
    text.split_once(": ").map_or(text, |(_, rest)| rest)
}
