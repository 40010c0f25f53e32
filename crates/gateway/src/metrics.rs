//! The gateway's own metrics: rate-limit decisions and engine, upstream latency and status.

use crate::audit::GatewayAudit;
use crate::limiter::{Decision, Engine, Limit, TransitionSink};
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
};
use std::time::Duration;

/// Distinct tenants named in `gateway_tenant_rejections_total` before the rest are counted
/// under `tenant="_other"`: tenants come from verified tokens, but the label stays bounded.
pub(crate) const MAX_TENANT_LABELS: usize = 500;

#[derive(Clone)]
pub(crate) struct Metrics {
    pub(crate) checks: IntCounterVec,
    pub(crate) rejections: IntCounterVec,
    pub(crate) tenant_rejections: IntCounterVec,
    tenants_named: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    pub(crate) decision: HistogramVec,
    pub(crate) usage: Histogram,
    pub(crate) backend: IntGaugeVec,
    pub(crate) transitions: IntCounterVec,
    pub(crate) upstream_latency: HistogramVec,
    pub(crate) upstream_status: IntCounterVec,
    pub(crate) upstream_up: IntGaugeVec,
}

impl Metrics {
    pub(crate) fn new(r: &Registry) -> Metrics {
        let checks = IntCounterVec::new(
            Opts::new(
                "gateway_rate_limit_checks_total",
                "Rate-limit decisions by engine and outcome",
            ),
            &["engine", "outcome"],
        )
        .expect("valid");
        let rejections = IntCounterVec::new(
            Opts::new(
                "gateway_rate_limit_rejections_total",
                "Requests refused (or, in shadow mode, that would be) by a rate limit",
            ),
            &["mode"],
        )
        .expect("valid");
        let tenant_rejections = IntCounterVec::new(
            Opts::new(
                "gateway_tenant_rejections_total",
                "Requests refused (or, in shadow mode, that would be) by a rate limit, by tenant (at most 500 named, the rest as _other)",
            ),
            &["tenant"],
        )
        .expect("valid");
        let decision = HistogramVec::new(
            HistogramOpts::new(
                "gateway_rate_limiter_decision_seconds",
                "Time to decide one request's rate limit",
            )
            .buckets(vec![
                0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
            ]),
            &["engine"],
        )
        .expect("valid");
        let usage = Histogram::with_opts(
            HistogramOpts::new(
                "gateway_rate_window_usage",
                "Share of the burst in use after each decision (0 to 1)",
            )
            .buckets(vec![0.1, 0.25, 0.5, 0.75, 0.9, 1.0]),
        )
        .expect("valid");
        let backend = IntGaugeVec::new(
            Opts::new(
                "gateway_rate_limiter_backend",
                "1 for the engine that decides now",
            ),
            &["engine"],
        )
        .expect("valid");
        let transitions = IntCounterVec::new(
            Opts::new(
                "gateway_rate_limiter_transitions_total",
                "Changes of the deciding engine",
            ),
            &["to"],
        )
        .expect("valid");
        let upstream_latency = HistogramVec::new(
            HistogramOpts::new(
                "gateway_upstream_seconds",
                "Upstream response time by route",
            )
            .buckets(vec![
                0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
            ]),
            &["route"],
        )
        .expect("valid");
        let upstream_status = IntCounterVec::new(
            Opts::new(
                "gateway_upstream_responses_total",
                "Upstream responses by route and status",
            ),
            &["route", "status"],
        )
        .expect("valid");
        let upstream_up = IntGaugeVec::new(
            Opts::new(
                "gateway_upstream_up",
                "1 while an upstream is in rotation (its health probe answers 2xx), 0 while not",
            ),
            &["route", "upstream"],
        )
        .expect("valid");
        for m in [
            Box::new(checks.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(upstream_up.clone()),
            Box::new(rejections.clone()),
            Box::new(tenant_rejections.clone()),
            Box::new(decision.clone()),
            Box::new(usage.clone()),
            Box::new(backend.clone()),
            Box::new(transitions.clone()),
            Box::new(upstream_latency.clone()),
            Box::new(upstream_status.clone()),
        ] {
            r.register(m).expect("registered once");
        }
        Metrics {
            checks,
            rejections,
            tenant_rejections,
            tenants_named: Default::default(),
            decision,
            usage,
            backend,
            transitions,
            upstream_latency,
            upstream_status,
            upstream_up,
        }
    }
}

/// Records engine changes: log, metric, audit event.
#[derive(Debug)]
pub(crate) struct Transitions {
    pub(crate) backend: IntGaugeVec,
    pub(crate) transitions: IntCounterVec,
    pub(crate) audit: GatewayAudit,
}

impl TransitionSink for Transitions {
    fn changed(&self, to: Engine, why: &str) {
        let (now, before) = match to {
            Engine::Shared => ("redis", "memory"),
            Engine::Fallback => ("memory", "redis"),
        };
        tracing::warn!(engine = now, reason = why, "rate limiter engine changed");
        self.backend.with_label_values(&[now]).set(1);
        self.backend.with_label_values(&[before]).set(0);
        self.transitions.with_label_values(&[now]).inc();
        self.audit.engine_changed(now, why);
    }
}

impl Metrics {
    /// One rate-limit decision: its time, outcome, the burst in use, and (refused) the mode.
    pub(crate) fn decided(
        &self,
        tenant: &str,
        engine: &str,
        took: Duration,
        limit: &Limit,
        d: &Decision,
        shadow: bool,
    ) {
        self.decision
            .with_label_values(&[engine])
            .observe(took.as_secs_f64());
        let outcome = if d.allowed { "allowed" } else { "rejected" };
        self.checks.with_label_values(&[engine, outcome]).inc();
        self.usage
            .observe(1.0 - f64::from(d.remaining) / f64::from(limit.burst.max(1)));
        if !d.allowed {
            self.rejections
                .with_label_values(&[if shadow { "shadow" } else { "enforced" }])
                .inc();
            let label = {
                let mut named = self
                    .tenants_named
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if named.contains(tenant) || named.len() < MAX_TENANT_LABELS {
                    named.insert(tenant.to_owned());
                    tenant
                } else {
                    "_other"
                }
            };
            self.tenant_rejections.with_label_values(&[label]).inc();
        }
    }

    /// One upstream outcome for `route`: a status code, `timeout` or `unreachable`.
    pub(crate) fn upstream(&self, route: &str, status: &str, took: Option<Duration>) {
        if let Some(t) = took {
            self.upstream_latency
                .with_label_values(&[route])
                .observe(t.as_secs_f64());
        }
        self.upstream_status
            .with_label_values(&[route, status])
            .inc();
    }
}
