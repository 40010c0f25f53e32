//! The trace of every request, settled once at the edge of each service: continued from
//! `traceparent` (W3C) or `X-Trace-Id`, new when absent or malformed, echoed in `X-Trace-Id` on
//! every response, carried by the request's span (and its OpenTelemetry span when exporting:
//! the same trace id, see [`crate::telemetry`]) and readable with [`current`] by whatever runs
//! for the request — the one place the id lives.

use crate::telemetry;
use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId as OtelTraceId, TraceState,
};
use rand::RngCore;
use sha2::Digest;
use tracing::field::Empty;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use vigil_core::ids::TraceId;

/// Header echoing the request's trace id.
pub const TRACE_ID_HEADER: &str = "x-trace-id";

tokio::task_local! {
    static CURRENT: TraceId;
}

/// The trace id of the request being served on this task, if any.
pub fn current() -> Option<TraceId> {
    CURRENT.try_with(Clone::clone).ok()
}

/// A fresh random trace id (for work no request started).
pub fn new_trace_id() -> TraceId {
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    TraceId::from_bytes(b)
}

/// A parsed `traceparent`: the trace, the caller's span and its flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent {
    /// The trace id.
    pub trace_id: TraceId,
    /// The caller's span id (16 hex).
    pub parent_id: String,
    /// The trace flags (bit 0: sampled).
    pub flags: u8,
}

/// Parses `traceparent` (`00-<32 hex trace id>-<16 hex parent>-<2 hex flags>`), refusing
/// anything malformed rather than trusting part of it.
pub fn parse_traceparent(v: &str) -> Option<TraceParent> {
    let parts: Vec<&str> = v.trim().split('-').collect();
    let [version, trace, parent, flags] = parts.as_slice() else {
        return None;
    };
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    };
    if !hex(version, 2)
        || *version == "ff"
        || !hex(parent, 16)
        || parent.bytes().all(|b| b == b'0')
        || !hex(flags, 2)
        || !hex(trace, 32)
    {
        return None;
    }
    Some(TraceParent {
        trace_id: TraceId::parse(trace).ok()?,
        parent_id: (*parent).to_owned(),
        flags: u8::from_str_radix(flags, 16).ok()?,
    })
}

/// What a request says of its trace: a whole `traceparent`, or only a trace id
/// (`X-Trace-Id`), or nothing usable.
fn incoming(req: &Request) -> (Option<TraceParent>, Option<TraceId>) {
    let h = req.headers();
    let one = |name: &str| {
        let mut it = h.get_all(name).iter();
        match (it.next(), it.next()) {
            (Some(v), None) => v.to_str().ok(),
            _ => None, // absent, or sent twice: trust neither
        }
    };
    match one("traceparent").and_then(parse_traceparent) {
        Some(p) => (Some(p), None),
        None => (
            None,
            one(TRACE_ID_HEADER).and_then(|v| TraceId::parse(v).ok()),
        ),
    }
}

fn otel_trace_id(t: &TraceId) -> OtelTraceId {
    OtelTraceId::from_hex(t.as_str()).unwrap_or(OtelTraceId::INVALID)
}

fn remote_parent(trace: &TraceId, span: SpanId, flags: u8) -> opentelemetry::Context {
    opentelemetry::Context::new().with_remote_span_context(SpanContext::new(
        otel_trace_id(trace),
        span,
        TraceFlags::new(flags),
        true,
        TraceState::default(),
    ))
}

/// Starts `span` now in trace `trace` (when it has no parent, its exported span gets this
/// trace id, not a random one) and, when `id` is given, with that span id. Without an
/// exporter there is nothing to start.
/// Returns the started span's id (`None` without an exporter).
pub fn start_in_trace(span: &tracing::Span, trace: &TraceId, id: Option<SpanId>) -> Option<SpanId> {
    telemetry::exporting().then(|| {
        telemetry::with_ids(Some(otel_trace_id(trace)), id, || {
            span.context().span().span_context().span_id()
        })
    })
}

/// Makes `span` a child of the remote span `parent` of trace `trace` (before it starts).
pub fn set_remote_parent(span: &tracing::Span, trace: &TraceId, parent: SpanId) {
    if telemetry::exporting() {
        let _ = span.set_parent(remote_parent(trace, parent, TraceFlags::SAMPLED.to_u8()));
    }
}

/// Links `span` (before it starts) to `to`: work that rode along with other work (an event
/// appended in a group commit).
pub fn link(span: &tracing::Span, to: &tracing::Span) {
    if telemetry::exporting() {
        let cx = to.context();
        span.add_link(cx.span().span_context().clone());
    }
}

/// The span id under which the audit event `event_id` is emitted by its service and
/// appended by the audit service: derived from the event id, so both ends name the same span
/// without a field in the record.
pub fn event_span_id(event_id: &str) -> SpanId {
    let d = sha2::Sha256::digest(format!("vigil.audit.event:{event_id}").as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    if b == [0; 8] {
        b[7] = 1;
    }
    SpanId::from_bytes(b)
}

/// The `traceparent` to send on an outgoing request made inside the current span: its trace
/// and span ids when exporting, else the request's trace id with a new span id.
pub fn traceparent() -> Option<HeaderValue> {
    let cx = tracing::Span::current().context();
    let sc = cx.span().span_context().clone();
    let v = if sc.is_valid() {
        format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8()
        )
    } else {
        format!("00-{}-{:016x}-01", current()?, rand::random::<u64>() | 1)
    };
    HeaderValue::from_str(&v).ok()
}

/// Middleware: settles the trace id, runs the request inside a span that carries it (route
/// template, method, status; the tenant is added when the caller is known), and echoes it on
/// the response.
pub async fn trace_layer(req: Request, next: Next) -> Response {
    let (parent, trace_only) = incoming(&req);
    let trace_id = match (&parent, trace_only) {
        (Some(p), _) => p.trace_id.clone(),
        (None, Some(t)) => t,
        (None, None) => new_trace_id(),
    };
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let method = req.method().clone();
    let name = match &route {
        Some(r) => format!("{method} {r}"),
        None => method.to_string(),
    };
    let span = tracing::info_span!(
        "request",
        otel.name = %name,
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = %method,
        http.route = route.as_deref().unwrap_or(""),
        http.response.status_code = Empty,
        tenant = Empty,
        trace_id = %trace_id,
        span_id = Empty,
    );
    if let Some(p) = &parent {
        if let Ok(id) = SpanId::from_hex(&p.parent_id) {
            let _ = span.set_parent(remote_parent(&p.trace_id, id, p.flags));
        }
    }
    if let Some(id) = start_in_trace(&span, &trace_id, None) {
        span.record("span_id", tracing::field::display(id));
    }
    let mut resp = CURRENT
        .scope(trace_id.clone(), next.run(req).instrument(span.clone()))
        .await;
    let status = resp.status();
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    resp.headers_mut().insert(
        TRACE_ID_HEADER,
        HeaderValue::from_str(trace_id.as_str()).expect("hex is a valid header"),
    );
    resp
}

/// Names the tenant on the request's span once the caller is known.
pub fn record_tenant(tenant: &str) {
    tracing::Span::current().record("tenant", tenant);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_traceparent_is_continued() {
        let t =
            parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(t.trace_id.as_str(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.parent_id, "00f067aa0ba902b7");
        assert_eq!(t.flags, 1);
    }

    #[test]
    fn a_malformed_traceparent_is_not_trusted() {
        for bad in [
            "",
            "garbage",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-01",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad:?}");
        }
    }
}

#[cfg(test)]
mod event_span_tests {
    use super::*;

    #[test]
    fn an_event_names_the_same_span_everywhere_and_others_differ() {
        let a = event_span_id("0191e0a4-7c2a-7d6e-9a3b-1c2d3e4f5a6b");
        assert_eq!(a, event_span_id("0191e0a4-7c2a-7d6e-9a3b-1c2d3e4f5a6b"));
        assert_ne!(a, event_span_id("0191e0a4-7c2a-7d6e-9a3b-1c2d3e4f5a6c"));
        assert_ne!(a, SpanId::INVALID);
    }
}
