//! `POST /v1/events`: a JSON array or NDJSON body of at most 1,000 events of at most 64 KiB.
//!
//! A request is all or nothing. It is validated as a whole: if any event is invalid, nothing
//! is stored and the 422 lists every event's result (the invalid ones with the field at
//! fault, the others `not_stored`). A valid request is then decided against what is stored:
//! each event is `stored` or a `duplicate` (the same id and content again: its original seq)
//! and the answer is 200 — or some event is a `conflict` (its id is taken by other content,
//! or its `producer_seq` is not after the producer's last), nothing of the request is stored,
//! and the 409 lists the conflicts and the `not_stored` rest. So a 200 means every event of
//! the request is in the chain.

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
    /// `stored`, `duplicate`, `conflict`, `rejected` (invalid), or `not_stored` (acceptable,
    /// in a request refused for its other events: send it again without them).
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

/// A request body taken apart: a slot per event (filled for events refused here) and the
/// valid events with their positions.
#[derive(Debug)]
struct Parsed {
    results: Vec<Option<EventResult>>,
    valid: Vec<(usize, Event)>,
}

/// Everything about a body that needs no store: its framing, the batch and event size
/// limits, and each event's validation. A refusal of the whole body is an [`ApiError`]
/// (400, 413, 415); a refusal of one event is its result.
fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Parsed, ApiError> {
    let raw = split(headers, body)?;
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
    Ok(Parsed { results, valid })
}

/// The answer to a request with invalid events: 422, every event's result in the details
/// (the invalid ones `rejected` with why, the valid ones `not_stored`).
fn refused_batch(mut results: Vec<Option<EventResult>>, valid: Vec<(usize, Event)>) -> ApiError {
    for (i, e) in valid {
        results[i] = Some(EventResult {
            index: i,
            event_id: Some(e.event_id.to_string()),
            status: "not_stored",
            seq: None,
            error: None,
        });
    }
    let results: Vec<EventResult> = results.into_iter().flatten().collect();
    let rejected = results.iter().filter(|r| r.status == "rejected").count();
    let first = results
        .iter()
        .find_map(|r| r.error.as_ref().map(|e| (r.index, e.message.clone())))
        .unwrap_or_default();
    let resp = IngestResponse {
        stored: 0,
        duplicates: 0,
        rejected,
        results,
    };
    ApiError::InvalidEvent(format!(
        "{rejected} of {} events are invalid and nothing was stored; event {}: {}",
        resp.results.len(),
        first.0,
        first.1
    ))
    .with_details(serde_json::to_value(&resp).expect("serializable"))
}

/// Appends events to the caller's tenant chain.
// audit:ignore the request is itself the audit record: each event is stored in the tenant's chain
#[utoipa::path(
    post, path = "/v1/events", tag = "events",
    request_body(content = Vec<Object>, description = "A JSON array, or NDJSON (application/x-ndjson), of v1 events", content_type = "application/json"),
    params(("X-Tenant-ID" = String, Header, description = "The caller's tenant (trusted header, loopback only)")),
    responses(
        (status = 200, description = "Every event is in the chain: stored now, or already (a duplicate); every event's result listed", body = IngestResponse),
        (status = 400, description = "The body is not JSON, the batch is empty, or no tenant", body = ErrorBody),
        (status = 409, description = "Some event conflicts with what is stored (its id is taken by other content, or its producer_seq is not after its producer's last); nothing was stored; every event's result in details", body = ErrorBody),
        (status = 413, description = "More than 1,000 events, or an event over 64 KiB", body = ErrorBody),
        (status = 415, description = "A content type other than JSON or NDJSON", body = ErrorBody),
        (status = 422, description = "At least one event is invalid; nothing was stored; every event's result in details", body = ErrorBody),
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
    let Parsed { mut results, valid } = parse(&headers, &body)?;
    app.metrics.batch_size.observe(results.len() as f64);
    if valid.len() < results.len() {
        // A request is validated as a whole: with one invalid event, nothing is stored.
        app.metrics
            .processed
            .with_label_values(&["rejected"])
            .inc_by((results.len() - valid.len()) as u64);
        return Err(refused_batch(results, valid));
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
        .submit_all(
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
            // Every event was valid on its own (checked above): what the sequencer refuses
            // conflicts with what is stored (a producer_seq not after the producer's last).
            IngestResult::Rejected(e) => rejected(
                i,
                Some(id),
                "conflict",
                e.field().map(str::to_owned),
                e.to_string(),
            ),
            IngestResult::NotStored => EventResult {
                index: i,
                event_id: Some(id),
                status: "not_stored",
                seq: None,
                error: None,
            },
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
    if resp.rejected == 0 {
        return Ok((StatusCode::OK, Json(resp)).into_response());
    }
    let first = resp
        .results
        .iter()
        .find_map(|r| r.error.as_ref().map(|e| (r.index, e.message.as_str())))
        .unwrap_or_default();
    let err = ApiError::Conflict(format!(
        "{} of {} events conflict with what is stored and nothing was stored; event {}: {}",
        resp.rejected,
        resp.results.len(),
        first.0,
        first.1
    ));
    Err(err.with_details(serde_json::to_value(&resp).expect("serializable")))
}

#[cfg(test)]
mod fuzz {
    //! Arbitrary bodies through [`parse`]: never a panic; a whole-body refusal is a 4xx in the
    //! shape, otherwise every event has exactly one outcome.
    use super::*;
    use axum::http::HeaderValue;
    use axum::response::IntoResponse;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    fn headers(content_type: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(ct) = content_type {
            h.insert(
                axum::http::header::CONTENT_TYPE,
                HeaderValue::from_str(ct).unwrap(),
            );
        }
        h
    }

    fn valid_event() -> Value {
        json!({
            "occurred_at": "2026-11-25T10:00:00Z",
            "actor": {"type": "user", "id": "ana"},
            "action": "order.create",
            "resource": {"type": "order", "id": "o-1"},
            "outcome": "success",
            "source": {"service": "shop", "producer_id": "p", "producer_seq": 1},
            "payload": {"total": 12.5, "items": [1, 2]}
        })
    }

    /// Any JSON value, a few levels deep.
    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            ".{0,40}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map("[a-z_]{1,12}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// The whole-body outcome is consistent; returns how many events were valid.
    fn check(content_type: Option<&str>, body: &[u8]) -> Option<usize> {
        match parse(&headers(content_type), body) {
            Err(e) => {
                let res = e.into_response();
                assert!(
                    [400, 413, 415].contains(&res.status().as_u16()),
                    "{}",
                    res.status()
                );
                assert!(res.headers().contains_key("x-error-code"));
                None
            }
            Ok(p) => {
                let filled = p.results.iter().filter(|r| r.is_some()).count();
                assert_eq!(filled + p.valid.len(), p.results.len());
                for (i, _) in &p.valid {
                    assert!(p.results[*i].is_none(), "a valid event has no refusal");
                }
                for r in p.results.iter().flatten() {
                    let e = r.error.as_ref().expect("a refusal says why");
                    assert_eq!(e.code, "invalid_event");
                }
                Some(p.valid.len())
            }
        }
    }

    const TYPES: [Option<&str>; 5] = [
        None,
        Some("application/json"),
        Some("application/x-ndjson"),
        Some("application/cloudevents+json; charset=utf-8"),
        Some("text/plain"),
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn arbitrary_bytes(body in prop::collection::vec(any::<u8>(), 0..512), t in 0..TYPES.len()) {
            check(TYPES[t], &body);
        }

        #[test]
        fn arbitrary_json_as_events(events in prop::collection::vec(any_json(), 0..8), ndjson in any::<bool>()) {
            let body = if ndjson {
                events.iter().map(Value::to_string).collect::<Vec<_>>().join("\n").into_bytes()
            } else {
                serde_json::to_vec(&events).unwrap()
            };
            check(None, &body);
        }

        /// A valid event with one field replaced by anything: valid, or refused naming why.
        #[test]
        fn one_field_replaced(field in prop::sample::select(vec![
            "event_id", "occurred_at", "actor", "action", "resource", "outcome", "severity",
            "source", "trace_id", "schema_version", "payload", "extra",
        ]), v in any_json()) {
            let mut e = valid_event();
            e[field] = v;
            let body = serde_json::to_vec(&json!([e, valid_event()])).unwrap();
            let valid = check(Some("application/json"), &body);
            prop_assert!(valid.is_some_and(|n| n >= 1), "the untouched event stays valid");
        }

        /// Truncating a valid NDJSON body anywhere never panics and never invents an event.
        #[test]
        fn truncated_ndjson(cut in 0usize..600) {
            let body = format!("{}\n{}\n", valid_event(), valid_event()).into_bytes();
            let cut = cut.min(body.len());
            if let Some(n) = check(Some("application/x-ndjson"), &body[..cut]) {
                prop_assert!(n <= 2);
            }
        }
    }

    #[test]
    fn the_same_event_parses_the_same_as_array_and_as_ndjson() {
        let e = valid_event();
        let array = parse(&headers(None), &serde_json::to_vec(&json!([e])).unwrap()).unwrap();
        let lines = parse(
            &headers(Some("application/x-ndjson")),
            e.to_string().as_bytes(),
        )
        .unwrap();
        assert_eq!(array.valid.len(), 1);
        assert_eq!(lines.valid.len(), 1);
        let (a, b) = (&array.valid[0].1, &lines.valid[0].1);
        assert_eq!(a.action, b.action);
        assert_eq!(a.payload, b.payload);
    }
}
