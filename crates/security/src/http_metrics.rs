//! HTTP metrics for every service, labelled by route template (never the raw path, whose
//! values callers control) and guarded against error-code cardinality:
//!
//! - `http_requests_total{service,route,method,status}`
//! - `http_request_duration_seconds{service,route}`
//! - `http_errors_total{service,code,status}`: at most `max_codes` distinct codes; the rest
//!   are counted under `code="_overflow"` and in `http_error_code_overflow_total`
//! - `http_error_code_saturation{service}`: percent of the code guard in use.

use crate::error::ERROR_CODE_HEADER;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Distinct error codes tracked before `_overflow` (DESIGN.md: at most 40).
pub const MAX_ERROR_CODES: usize = 40;

/// The metrics of one service's HTTP surface.
#[derive(Debug)]
pub struct HttpMetrics {
    service: String,
    requests: IntCounterVec,
    duration: HistogramVec,
    errors: IntCounterVec,
    saturation: Gauge,
    overflow: prometheus::IntCounter,
    codes: Mutex<HashSet<String>>,
    max_codes: usize,
}

impl HttpMetrics {
    /// Registers the metrics of `service` in `registry`, with a guard of `max_codes` codes.
    pub fn new(service: &str, registry: &Registry, max_codes: usize) -> Arc<HttpMetrics> {
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by route template, method and status",
            ),
            &["service", "route", "method", "status"],
        )
        .expect("valid metric");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency by route template",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["service", "route"],
        )
        .expect("valid metric");
        let errors = IntCounterVec::new(
            Opts::new("http_errors_total", "Error responses by code and status"),
            &["service", "code", "status"],
        )
        .expect("valid metric");
        let saturation_vec = GaugeVec::new(
            Opts::new(
                "http_error_code_saturation",
                "Percent of the error-code label guard in use",
            ),
            &["service"],
        )
        .expect("valid metric");
        let overflow_vec = IntCounterVec::new(
            Opts::new(
                "http_error_code_overflow_total",
                "Errors counted under _overflow because the code guard was full",
            ),
            &["service"],
        )
        .expect("valid metric");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(duration.clone()),
            Box::new(errors.clone()),
            Box::new(saturation_vec.clone()),
            Box::new(overflow_vec.clone()),
        ] {
            registry.register(c).expect("registered once");
        }
        Arc::new(HttpMetrics {
            service: service.to_owned(),
            saturation: saturation_vec.with_label_values(&[service]),
            overflow: overflow_vec.with_label_values(&[service]),
            requests,
            duration,
            errors,
            codes: Mutex::new(HashSet::new()),
            max_codes: max_codes.max(1),
        })
    }

    /// Counts an error response with `code`, through the cardinality guard.
    pub fn record_error(&self, code: &str, status: u16) {
        let label = {
            let mut codes = self.codes.lock().expect("codes lock");
            if codes.contains(code) || codes.len() < self.max_codes {
                codes.insert(code.to_owned());
                self.saturation
                    .set(codes.len() as f64 * 100.0 / self.max_codes as f64);
                code.to_owned()
            } else {
                self.overflow.inc();
                "_overflow".to_owned()
            }
        };
        self.errors
            .with_label_values(&[&self.service, &label, &status.to_string()])
            .inc();
    }
}

/// Middleware (`axum::middleware::from_fn_with_state`): times and counts every request.
pub async fn track(State(m): State<Arc<HttpMetrics>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method: &'static str = match req.method().as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    };
    let started = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    m.duration
        .with_label_values(&[&m.service, &route])
        .observe(started.elapsed().as_secs_f64());
    m.requests
        .with_label_values(&[&m.service, &route, method, &status.to_string()])
        .inc();
    if let Some(code) = resp
        .headers()
        .get(ERROR_CODE_HEADER)
        .and_then(|v| v.to_str().ok())
    {
        m.record_error(code, status);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hundred_distinct_codes_keep_forty_labels_and_overflow_the_rest() {
        let registry = Registry::new();
        let m = HttpMetrics::new("t", &registry, MAX_ERROR_CODES);
        for i in 0..100 {
            m.record_error(&format!("code_{i}"), 400);
            m.record_error(&format!("code_{i}"), 400);
        }
        let families = registry.gather();
        let errors = families
            .iter()
            .find(|f| f.get_name() == "http_errors_total")
            .unwrap();
        let codes: HashSet<String> = errors
            .get_metric()
            .iter()
            .map(|m| {
                m.get_label()
                    .iter()
                    .find(|l| l.get_name() == "code")
                    .unwrap()
                    .get_value()
                    .to_owned()
            })
            .collect();
        assert_eq!(codes.len(), MAX_ERROR_CODES + 1);
        assert!(codes.contains("_overflow"));
        assert_eq!(m.overflow.get(), 120);
        assert_eq!(m.saturation.get(), 100.0);
        // A code seen before the guard filled keeps its own label.
        m.record_error("code_0", 400);
        assert_eq!(m.overflow.get(), 120);
    }
}
