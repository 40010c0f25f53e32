//! The audit service's metrics, under the names dashboards already use. No label takes values
//! a user controls: results, operations and engines are closed sets.

use prometheus::{
    CounterVec, Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

/// Every metric of one audit service instance, in its own registry.
#[derive(Clone, Debug)]
pub struct AuditMetrics {
    registry: Registry,
    /// `audit_events_processed_total{result}`: stored, duplicate, rejected, conflict.
    pub processed: IntCounterVec,
    /// `audit_chain_gap_total`: producer_seq values skipped (events lost between a producer and us).
    pub chain_gap: IntCounter,
    /// `audit_ingest_batch_size`: events per ingest request.
    pub batch_size: Histogram,
    /// `audit_ingest_duration_seconds`: ingest request latency, parse to acknowledgement.
    pub ingest_seconds: Histogram,
    /// `audit_group_commit_size`: events per store transaction.
    pub group_size: Histogram,
    /// `audit_group_commit_duration_seconds`: one group commit, lookups to commit.
    pub commit_seconds: Histogram,
    /// `audit_writer_seconds_total{stage}`: time the tenant writers spent, by stage: `plan`
    /// (lookups, sequencing, hashing of the next group), `commit_wait` (waiting for the
    /// group in flight to commit, with nothing left to plan), `checkpoint` (signing inline).
    /// A writer's time not in these is waiting for events.
    pub writer_seconds: CounterVec,
    /// `audit_store_errors_total{op,kind}`.
    pub store_errors: IntCounterVec,
    /// `audit_chain_conflicts_total`: appends refused because another writer took the seq.
    pub chain_conflicts: IntCounter,
    /// `audit_checkpoints_total`.
    pub checkpoints: IntCounter,
    /// `audit_dlq_total{reason}`: Kafka messages sent to the dead-letter topic.
    pub dlq: IntCounterVec,
    /// `audit_consumer_lag_messages{partition}`: messages waiting behind the consumer.
    pub consumer_lag_messages: IntGaugeVec,
    /// `audit_consumer_lag_seconds`: while messages wait, now minus the publish time of the
    /// newest stored one; 0 when caught up.
    pub consumer_lag_seconds: Gauge,
    /// `audit_consumer_event_age_seconds`: for events stored from Kafka, store commit minus
    /// `occurred_at` (end-to-end delay, emit to stored).
    pub consumer_event_age: Histogram,
    /// `audit_events_redacted_total{mode,action}`: values redacted (enforce) or that would
    /// have been (log).
    pub redacted: IntCounterVec,
    /// `audit_redaction_last_timestamp_seconds`: when a value was last redacted (or counted).
    pub redaction_last: Gauge,
    /// `audit_records_served_total{view}`: records read, by view (`redacted`, `full`).
    pub records_served: IntCounterVec,
    /// `audit_retention_deleted_total`: records whose payload values retention removed.
    pub retention_deleted: IntCounter,
    /// `audit_retention_last_run_timestamp_seconds`: when the retention job last ran.
    pub retention_last_run: Gauge,
    /// `audit_retention_bytes_freed_total`: bytes the database shrank by after purges.
    pub retention_bytes_freed: IntCounter,
    /// `audit_subjects_erased_total`: data subjects whose key was destroyed.
    pub subjects_erased: IntCounter,
    /// `audit_verifications_total{result}`: background verifications of a tenant's chain, by
    /// result (intact, damaged, error).
    pub verifications: IntCounterVec,
    /// `audit_verification_damaged_tenants`: tenants whose last verification found damage.
    pub damaged_tenants: prometheus::IntGauge,
    /// `audit_verification_last_run_timestamp_seconds`: when every tenant was last verified.
    pub verification_last_run: Gauge,
    /// `audit_webhook_deliveries_total{result}`: webhook delivery attempts, by result
    /// (delivered, failed: tried again later, dead: dead-lettered).
    pub webhook_deliveries: IntCounterVec,
}

fn histogram(name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)).expect("valid metric")
}

fn buckets_count() -> Vec<f64> {
    vec![
        1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0,
    ]
}

fn buckets_seconds() -> Vec<f64> {
    vec![
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    ]
}

impl AuditMetrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> AuditMetrics {
        let registry = Registry::new();
        let processed = IntCounterVec::new(
            Opts::new(
                "audit_events_processed_total",
                "Events handled by ingest, by result",
            ),
            &["result"],
        )
        .expect("valid metric");
        let chain_gap = IntCounter::new(
            "audit_chain_gap_total",
            "producer_seq values skipped: events lost between a producer and the store",
        )
        .expect("valid metric");
        let batch_size = histogram(
            "audit_ingest_batch_size",
            "Events per ingest request",
            buckets_count(),
        );
        let ingest_seconds = histogram(
            "audit_ingest_duration_seconds",
            "Ingest request latency, until acknowledged",
            buckets_seconds(),
        );
        let group_size = histogram(
            "audit_group_commit_size",
            "Events per store transaction",
            buckets_count(),
        );
        let commit_seconds = histogram(
            "audit_group_commit_duration_seconds",
            "Duration of one group commit",
            buckets_seconds(),
        );
        let writer_seconds = CounterVec::new(
            Opts::new(
                "audit_writer_seconds_total",
                "Seconds the tenant writers spent planning, waiting for a commit, checkpointing",
            ),
            &["stage"],
        )
        .expect("valid metric");
        let store_errors = IntCounterVec::new(
            Opts::new(
                "audit_store_errors_total",
                "Store errors by operation and kind",
            ),
            &["op", "kind"],
        )
        .expect("valid metric");
        let chain_conflicts = IntCounter::new(
            "audit_chain_conflicts_total",
            "Appends refused by a unique constraint (another writer took the seq, or an event id was replayed), then planned again",
        )
        .expect("valid metric");
        let checkpoints = IntCounter::new("audit_checkpoints_total", "Signed checkpoints made")
            .expect("valid metric");
        let dlq = IntCounterVec::new(
            Opts::new(
                "audit_dlq_total",
                "Kafka messages that can never be stored, sent to the dead-letter topic, by reason",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let consumer_lag_messages = IntGaugeVec::new(
            Opts::new(
                "audit_consumer_lag_messages",
                "Messages in the audit topic not yet stored, by partition",
            ),
            &["partition"],
        )
        .expect("valid metric");
        let consumer_lag_seconds = Gauge::new(
            "audit_consumer_lag_seconds",
            "While messages wait: now minus the publish time of the newest stored one (0 when caught up)",
        )
        .expect("valid metric");
        let consumer_event_age = histogram(
            "audit_consumer_event_age_seconds",
            "Events stored from Kafka: store commit minus occurred_at",
            vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            ],
        );
        let redacted = IntCounterVec::new(
            Opts::new(
                "audit_events_redacted_total",
                "Payload values redacted at ingest (enforce) or found by a log-mode policy, by mode and action",
            ),
            &["mode", "action"],
        )
        .expect("valid metric");
        let redaction_last = Gauge::new(
            "audit_redaction_last_timestamp_seconds",
            "Unix time a redaction policy last found a value",
        )
        .expect("valid metric");
        let records_served = IntCounterVec::new(
            Opts::new(
                "audit_records_served_total",
                "Records served by the read endpoints, by view: redacted (sensitive members withheld) or full (include_redacted, recorded)",
            ),
            &["view"],
        )
        .expect("valid metric");
        let retention_deleted = IntCounter::new(
            "audit_retention_deleted_total",
            "Records whose payload values the retention job removed (a signed manifest covers each)",
        )
        .expect("valid metric");
        let retention_last_run = Gauge::new(
            "audit_retention_last_run_timestamp_seconds",
            "Unix time the retention job last ran over every tenant",
        )
        .expect("valid metric");
        let retention_bytes_freed = IntCounter::new(
            "audit_retention_bytes_freed_total",
            "Bytes the database returned to the file system after retention purges",
        )
        .expect("valid metric");
        let verifications = IntCounterVec::new(
            Opts::new(
                "audit_verifications_total",
                "Background verifications of a tenant's chain and checkpoints, by result (intact, damaged, error)",
            ),
            &["result"],
        )
        .expect("valid metric");
        let damaged_tenants = prometheus::IntGauge::new(
            "audit_verification_damaged_tenants",
            "Tenants whose last background verification found damage",
        )
        .expect("valid metric");
        let verification_last_run = Gauge::new(
            "audit_verification_last_run_timestamp_seconds",
            "Unix time the background verification last went over every tenant",
        )
        .expect("valid metric");
        let webhook_deliveries = IntCounterVec::new(
            Opts::new(
                "audit_webhook_deliveries_total",
                "Webhook delivery attempts by result (delivered, failed: tried again later, dead: dead-lettered)",
            ),
            &["result"],
        )
        .expect("valid metric");
        let subjects_erased = IntCounter::new(
            "audit_subjects_erased_total",
            "Data subjects erased: their key destroyed, a signed receipt in the chain",
        )
        .expect("valid metric");
        let collectors: [Box<dyn prometheus::core::Collector>; 25] = [
            Box::new(writer_seconds.clone()),
            Box::new(processed.clone()),
            Box::new(chain_gap.clone()),
            Box::new(batch_size.clone()),
            Box::new(ingest_seconds.clone()),
            Box::new(group_size.clone()),
            Box::new(commit_seconds.clone()),
            Box::new(store_errors.clone()),
            Box::new(chain_conflicts.clone()),
            Box::new(checkpoints.clone()),
            Box::new(dlq.clone()),
            Box::new(consumer_lag_messages.clone()),
            Box::new(consumer_lag_seconds.clone()),
            Box::new(consumer_event_age.clone()),
            Box::new(redacted.clone()),
            Box::new(redaction_last.clone()),
            Box::new(records_served.clone()),
            Box::new(retention_deleted.clone()),
            Box::new(retention_last_run.clone()),
            Box::new(retention_bytes_freed.clone()),
            Box::new(subjects_erased.clone()),
            Box::new(verifications.clone()),
            Box::new(damaged_tenants.clone()),
            Box::new(verification_last_run.clone()),
            Box::new(webhook_deliveries.clone()),
        ];
        for c in collectors {
            registry
                .register(c)
                .expect("each metric is registered once");
        }
        // Series exist from the start, so dashboards and alerts see zeros rather than gaps.
        for r in ["stored", "duplicate", "rejected", "conflict", "not_stored"] {
            processed.with_label_values(&[r]);
        }
        for view in ["redacted", "full"] {
            records_served.with_label_values(&[view]);
        }
        for mode in ["log", "enforce"] {
            for action in vigil_core::redaction::Action::ALL {
                redacted.with_label_values(&[mode, action.as_str()]);
            }
        }
        for op in ["append", "checkpoint"] {
            for kind in ["unavailable", "conflict", "other"] {
                store_errors.with_label_values(&[op, kind]);
            }
        }
        AuditMetrics {
            registry,
            processed,
            chain_gap,
            batch_size,
            ingest_seconds,
            group_size,
            commit_seconds,
            writer_seconds,
            store_errors,
            chain_conflicts,
            checkpoints,
            dlq,
            consumer_lag_messages,
            consumer_lag_seconds,
            consumer_event_age,
            redacted,
            redaction_last,
            records_served,
            retention_deleted,
            retention_last_run,
            retention_bytes_freed,
            subjects_erased,
            verifications,
            damaged_tenants,
            verification_last_run,
            webhook_deliveries,
        }
    }

    /// Counts a store error of `kind` during `op`.
    pub fn store_error(&self, op: &'static str, e: &vigil_store::StoreError) {
        let kind = match e {
            vigil_store::StoreError::Unavailable { .. } => "unavailable",
            vigil_store::StoreError::Conflict { .. } => "conflict",
            _ => "other",
        };
        self.store_errors.with_label_values(&[op, kind]).inc();
    }

    /// The registry, for other layers (capability checks) to register into.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).expect("the text format is UTF-8")
    }
}

impl Default for AuditMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// `audit_store_write_lock_seconds_total`: how long writers have held the store's one write
/// lock (SQLite's), read from the store at each scrape. Its rate is the share of time the one
/// writer is busy: near 1, ingest on this store is at its ceiling (BENCHMARKS.md, ingest).
struct WriteLockCollector {
    store: std::sync::Arc<dyn vigil_store::Store>,
    held: prometheus::Counter,
}

impl prometheus::core::Collector for WriteLockCollector {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.held.desc()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        if let Some(now) = self.store.write_lock_held() {
            let seen = self.held.get();
            if now.as_secs_f64() > seen {
                self.held.inc_by(now.as_secs_f64() - seen);
            }
        }
        self.held.collect()
    }
}

/// Registers `audit_store_write_lock_seconds_total` when `store` has a write lock to time.
pub fn register_write_lock(registry: &Registry, store: std::sync::Arc<dyn vigil_store::Store>) {
    if store.write_lock_held().is_none() {
        return;
    }
    let held = prometheus::Counter::new(
        "audit_store_write_lock_seconds_total",
        "Seconds writers have held the store's one write lock (SQLite); its rate is how busy the writer is",
    )
    .expect("valid metric");
    let _ = registry.register(Box::new(WriteLockCollector { store, held }));
}
