//! The producer's metrics, registered in the embedding service's registry.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Why events were dropped (the label of `audit_producer_dropped_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// The queue was full (drop-on-full mode, or an emitter far faster than the spool).
    QueueFull,
    /// The spool had no room left.
    SpoolFull,
    /// The spool could not be written or read (a disk error, a damaged file).
    SpoolLost,
    /// The event does not validate (a bug in the emitting code).
    Invalid,
    /// The far end refused it for good (an id reused with other content, say).
    Refused,
    /// The producer was stopped with events it could not deliver or spool.
    Shutdown,
}

impl DropReason {
    /// Every reason, for zero-valued series.
    pub const ALL: [DropReason; 6] = [
        DropReason::QueueFull,
        DropReason::SpoolFull,
        DropReason::SpoolLost,
        DropReason::Invalid,
        DropReason::Refused,
        DropReason::Shutdown,
    ];

    /// The label value.
    pub fn as_str(&self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::SpoolFull => "spool_full",
            DropReason::SpoolLost => "spool_lost",
            DropReason::Invalid => "invalid",
            DropReason::Refused => "refused",
            DropReason::Shutdown => "shutdown",
        }
    }
}

/// `audit_producer_*`.
#[derive(Clone, Debug)]
pub struct ProducerMetrics {
    /// `audit_producer_queue_depth`: events waiting in memory.
    pub queue_depth: IntGauge,
    /// `audit_producer_queue_capacity`.
    pub queue_capacity: IntGauge,
    /// `audit_producer_spool_bytes`: event bytes waiting in the spool.
    pub spool_bytes: IntGauge,
    /// `audit_producer_spooled_total`: events written to the spool.
    pub spooled: IntCounter,
    /// `audit_producer_sent_total`: events the transport took.
    pub sent: IntCounter,
    /// `audit_producer_dropped_total{reason}`.
    pub dropped: IntCounterVec,
    /// `audit_producer_send_errors_total{transport}`: failed sends (each is retried).
    pub send_errors: IntCounterVec,
}

impl ProducerMetrics {
    /// Registers the metrics in `registry`.
    pub fn new(registry: &Registry) -> ProducerMetrics {
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            register(registry, g)
        };
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            register(registry, c)
        };
        let vec = |name: &str, help: &str, label: &str| {
            let c = IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid metric");
            register(registry, c)
        };
        let m = ProducerMetrics {
            queue_depth: gauge(
                "audit_producer_queue_depth",
                "Audit events waiting in the producer's memory queue",
            ),
            queue_capacity: gauge(
                "audit_producer_queue_capacity",
                "Capacity of the producer's memory queue",
            ),
            spool_bytes: gauge(
                "audit_producer_spool_bytes",
                "Bytes of audit events waiting in the producer's spool",
            ),
            spooled: counter(
                "audit_producer_spooled_total",
                "Audit events written to the producer's spool",
            ),
            sent: counter(
                "audit_producer_sent_total",
                "Audit events the transport accepted",
            ),
            dropped: vec(
                "audit_producer_dropped_total",
                "Audit events the producer lost, by reason",
                "reason",
            ),
            send_errors: vec(
                "audit_producer_send_errors_total",
                "Failed sends (retried), by transport",
                "transport",
            ),
        };
        for r in DropReason::ALL {
            m.dropped.with_label_values(&[r.as_str()]);
        }
        m
    }

    /// Counts `n` events dropped for `reason`.
    pub fn drop_events(&self, reason: DropReason, n: usize) {
        self.dropped
            .with_label_values(&[reason.as_str()])
            .inc_by(n as u64);
    }
}

/// Registers `c`. A second producer in the same registry keeps its own, unexported series
/// (each service gives its producer its own registry).
fn register<C>(registry: &Registry, c: C) -> C
where
    C: prometheus::core::Collector + Clone + 'static,
{
    if let Err(e) = registry.register(Box::new(c.clone())) {
        tracing::warn!(error = %e, "a producer metric is not exported");
    }
    c
}
