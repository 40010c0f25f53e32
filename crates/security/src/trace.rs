//! The trace id of every request: continued from `traceparent` (W3C) or `X-Trace-Id`,
//! generated when absent or malformed, echoed in `X-Trace-Id` on every response and carried
//! by the request's tracing span.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use rand::RngCore;
use tracing::Instrument;
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

/// Parses `traceparent` (`00-<32 hex trace id>-<16 hex parent>-<2 hex flags>`), refusing
/// anything malformed rather than trusting part of it.
pub fn parse_traceparent(v: &str) -> Option<TraceId> {
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
    {
        return None;
    }
    if !hex(trace, 32) {
        return None;
    }
    TraceId::parse(trace).ok()
}

/// The trace id a request carries, or a new one.
pub fn trace_id_of(req: &Request) -> TraceId {
    let h = req.headers();
    let one = |name: &str| {
        let mut it = h.get_all(name).iter();
        match (it.next(), it.next()) {
            (Some(v), None) => v.to_str().ok(),
            _ => None, // absent, or sent twice: trust neither
        }
    };
    one("traceparent")
        .and_then(parse_traceparent)
        .or_else(|| one(TRACE_ID_HEADER).and_then(|v| TraceId::parse(v).ok()))
        .unwrap_or_else(|| {
            let mut b = [0u8; 16];
            rand::thread_rng().fill_bytes(&mut b);
            TraceId::from_bytes(b)
        })
}

/// Middleware: settles the trace id, runs the request inside a span that carries it, and
/// echoes it on the response.
pub async fn trace_layer(mut req: Request, next: Next) -> Response {
    let trace_id = trace_id_of(&req);
    req.extensions_mut().insert(trace_id.clone());
    let span = tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), trace_id = %trace_id);
    let mut resp = CURRENT
        .scope(trace_id.clone(), next.run(req).instrument(span))
        .await;
    resp.headers_mut().insert(
        TRACE_ID_HEADER,
        HeaderValue::from_str(trace_id.as_str()).expect("hex is a valid header"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_traceparent_is_continued() {
        let t =
            parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(t.as_str(), "4bf92f3577b34da6a3ce929d0e0e4736");
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
