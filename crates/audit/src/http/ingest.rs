//! `POST /v1/events`: a JSON array or NDJSON body of at most 1,000 events of at most 64 KiB.
//! Every event gets its own result; valid events are stored even when others are rejected.

use super::{store_error, AppState, ErrorBody};
use crate::checkpointer::now;
use crate::sequencer::IngestResult;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::value::RawValue;
use std::sync::Arc;
use std::time::Instant;
use vigil_core::event::{Event, EventInput};
use vigil_core::ids::EventId;
use vigil_security::capability::Capability;
use vigil_security::context::SecurityContext;
use vigil_security::error::ApiError;

/// Most events one request may carry.
pub const MAX_EVENTS_PER_REQUEST: usize = 1000;
pub use vigil_core::event::MAX_EVENT_BYTES;
/// Largest body: a full batch of maximal events plus separators.
const MAX_BODY_BYTES: usize = MAX_EVENTS_PER_REQUEST * (MAX_EVENT_BYTES + 2) + 1024;

pub(super) fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/events", post(ingest).get(super::query::list_events))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// What became of each event of a request.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct IngestResponse {
    /// One result per submitted event, in order.
    results: Vec<EventResult>,
    /// Events appended by this request.
    stored: usize,
    /// Events that were already stored with the same content.
    duplicates: usize,
    /// Events refused (invalid or conflicting).
    rejected: usize,
}

/// The result for one event.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct EventResult {
    /// Position in the request.
    index: usize,
    /// The event id (generated when the event had none).
    #[serde(skip_serializing_if = "Option::is_none")]
    event_id: Option<String>,
    /// `stored`, `duplicate`, `conflict` or `rejected`.
    status: &'static str,
    /// The seq it holds (for `conflict`, the seq of the event that holds the id).
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<i64>,
    /// Why it was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<EventError>,
}

/// Why one event was refused.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct EventError {
    /// `invalid_event`, `conflict` or `payload_too_large`.
    code: &'static str,
    /// The JSON path of the field at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
    /// What is wrong.
    message: String,
}

fn rejected(
    index: usize,
    event_id: Option<String>,
    code: &'static str,
    field: Option<String>,
    message: String,
) -> EventResult {
    EventResult {
        index,
        event_id,
        status: if code == "conflict" {
            "conflict"
        } else {
            "rejected"
        },
        seq: None,
        error: Some(EventError {
            code,
            field,
            message,
        }),
    }
}

/// Splits a body into raw events: a JSON array, or NDJSON (one event per line).
fn split(headers: &HeaderMap, body: &[u8]) -> Result<Vec<Result<Box<RawValue>, String>>, ApiError> {
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("").to_ascii_lowercase());
    let ndjson_type = content_type
        .as_deref()
        .is_some_and(|ct| ct.contains("ndjson") || ct.contains("jsonl") || ct.contains("json-seq"));
    // No content type is taken as JSON (or NDJSON, by the body); another type is refused.
    if let Some(ct) = content_type.as_deref() {
        let essence = ct.split(';').next().unwrap_or("").trim();
        if !(ndjson_type || essence == "application/json" || essence.ends_with("+json")) {
            return Err(ApiError::UnsupportedMediaType(format!(
                "events are sent as application/json (an array) or application/x-ndjson, not {essence}"
            )));
        }
    }
    let first = body.iter().copied().find(|b| !b.is_ascii_whitespace());
    let Some(first) = first else {
        return Err(ApiError::BadRequest(
            "the body is empty: send a JSON array or NDJSON of events".into(),
        ));
    };
    if first == b'[' && !ndjson_type {
        let items: Vec<Box<RawValue>> = serde_json::from_slice(body).map_err(|e| {
            ApiError::BadRequest(format!("the body is not a JSON array of events: {e}"))
        })?;
        if items.is_empty() {
            return Err(ApiError::BadRequest(
                "the batch is empty: send at least one event".into(),
            ));
        }
        return Ok(items.into_iter().map(Ok).collect());
    }
    let lines: Vec<Result<Box<RawValue>, String>> = body
        .split(|b| *b == b'\n')
        .filter(|l| l.iter().any(|b| !b.is_ascii_whitespace()))
        .map(|l| {
            serde_json::from_slice::<Box<RawValue>>(l)
                .map_err(|e| format!("this line is not JSON: {e}"))
        })
        .collect();
    if lines.iter().all(Result::is_err) {
        return Err(ApiError::BadRequest(
            "the body is neither a JSON array nor NDJSON of events".into(),
        ));
    }
    Ok(lines)
}

/// Appends events to the caller's tenant chain.
#[utoipa::path(
    post, path = "/v1/events", tag = "events",
    request_body(content = Vec<Object>, description = "A JSON array, or NDJSON (application/x-ndjson), of v1 events", content_type = "application/json"),
    params(("X-Tenant-ID" = String, Header, description = "The caller's tenant (trusted header, loopback only)")),
    responses(
        (status = 200, description = "At least one event stored or already present; every event's result listed", body = IngestResponse),
        (status = 400, description = "The body is not JSON, the batch is empty, or no tenant", body = ErrorBody),
        (status = 409, description = "Every event conflicts with a stored event of the same id", body = ErrorBody),
        (status = 413, description = "More than 1,000 events, or an event over 64 KiB", body = ErrorBody),
        (status = 415, description = "A content type other than JSON or NDJSON", body = ErrorBody),
        (status = 422, description = "No event is valid; results in details", body = ErrorBody),
        (status = 503, description = "The store is unavailable; nothing was stored", body = ErrorBody),
    )
)]
pub(super) async fn ingest(
    ctx: SecurityContext,
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    ctx.require(Capability::AuditWrite)?;
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::PayloadTooLarge(format!("the body exceeds {MAX_BODY_BYTES} bytes"))
        }
        _ => ApiError::BadRequest(format!("the body could not be read: {e}")),
    })?;
    let raw = split(&headers, &body)?;
    if raw.len() > MAX_EVENTS_PER_REQUEST {
        return Err(ApiError::PayloadTooLarge(format!(
            "{} events in one request; at most {MAX_EVENTS_PER_REQUEST}",
            raw.len()
        )));
    }
    if let Some(i) = raw
        .iter()
        .position(|r| r.as_ref().is_ok_and(|v| v.get().len() > MAX_EVENT_BYTES))
    {
        return Err(ApiError::PayloadTooLarge(format!(
            "event {i} is larger than {MAX_EVENT_BYTES} bytes"
        )));
    }
    app.metrics.batch_size.observe(raw.len() as f64);

    let mut results: Vec<Option<EventResult>> = Vec::with_capacity(raw.len());
    let mut valid: Vec<(usize, Event)> = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        let parsed = r.and_then(|raw| {
            serde_json::from_str::<serde_json::Value>(raw.get())
                .map(|v| (v, raw))
                .map_err(|e| format!("not JSON: {e}"))
        });
        let (v, raw) = match parsed {
            Ok(p) => p,
            Err(msg) => {
                results.push(Some(rejected(i, None, "invalid_event", None, msg)));
                continue;
            }
        };
        let sent_id = v
            .get("event_id")
            .and_then(|id| id.as_str())
            .map(str::to_owned);
        let checked = vigil_core::number::check_numbers(&v, raw.get()).and_then(|()| {
            EventInput::new(v).validate(|| EventId::from_uuid(uuid::Uuid::now_v7()))
        });
        match checked {
            Ok(e) => {
                results.push(None);
                valid.push((i, e));
            }
            Err(e) => results.push(Some(rejected(
                i,
                sent_id,
                "invalid_event",
                e.field().map(str::to_owned),
                e.to_string(),
            ))),
        }
    }
    // The sequencer counts what it decides; count here what never reached it.
    app.metrics
        .processed
        .with_label_values(&["rejected"])
        .inc_by((results.len() - valid.len()) as u64);
    let ids: Vec<(usize, String)> = valid
        .iter()
        .map(|(i, e)| (*i, e.event_id.to_string()))
        .collect();
    let outcomes = app
        .sequencer
        .submit(
            &ctx.tenant_id,
            valid.into_iter().map(|(_, e)| e).collect(),
            now(),
        )
        .await
        .map_err(store_error)?;
    for ((i, id), outcome) in ids.into_iter().zip(outcomes) {
        results[i] = Some(match outcome {
            IngestResult::Stored { seq } => EventResult {
                index: i,
                event_id: Some(id),
                status: "stored",
                seq: Some(seq),
                error: None,
            },
            IngestResult::Duplicate { seq } => EventResult {
                index: i,
                event_id: Some(id),
                status: "duplicate",
                seq: Some(seq),
                error: None,
            },
            IngestResult::Conflict { seq } => {
                let mut r = rejected(
                    i,
                    Some(id),
                    "conflict",
                    Some("event_id".into()),
                    format!(
                        "event_id is taken by another event (seq {seq}) with different content"
                    ),
                );
                r.seq = Some(seq);
                r
            }
            IngestResult::Rejected(e) => rejected(
                i,
                Some(id),
                "invalid_event",
                e.field().map(str::to_owned),
                e.to_string(),
            ),
        });
    }
    let results: Vec<EventResult> = results
        .into_iter()
        .map(|r| r.expect("every event has a result"))
        .collect();

    let count = |s: &str| results.iter().filter(|r| r.status == s).count();
    let resp = IngestResponse {
        stored: count("stored"),
        duplicates: count("duplicate"),
        rejected: count("rejected") + count("conflict"),
        results,
    };
    app.metrics
        .ingest_seconds
        .observe(started.elapsed().as_secs_f64());
    tracing::info!(tenant = %ctx.tenant_id, stored = resp.stored, duplicates = resp.duplicates, rejected = resp.rejected, "ingest");
    if resp.stored + resp.duplicates > 0 {
        return Ok((StatusCode::OK, Json(resp)).into_response());
    }
    let all_conflicts = resp.results.iter().all(|r| r.status == "conflict");
    let err = if all_conflicts {
        ApiError::Conflict("every event's id is taken by an event with different content".into())
    } else {
        ApiError::InvalidEvent(format!(
            "no event was stored: {}",
            resp.results[0]
                .error
                .as_ref()
                .map(|e| e.message.as_str())
                .unwrap_or("")
        ))
    };
    Err(err.with_details(serde_json::to_value(&resp).expect("serializable")))
}
