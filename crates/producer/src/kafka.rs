//! Kafka: topic [`TOPIC`] (`audit.events.v1`), one message per event, keyed by tenant so that
//! one partition — and so one consumer at a time — owns a tenant's chain. The producer is
//! idempotent with `acks=all`: librdkafka's own retries neither duplicate nor reorder a
//! partition, and a send returns only when every in-sync replica has the batch.
//!
//! A message is the event's JSON (the audit service's input format) with header `tenant_id`;
//! the consumer takes the tenant from the key. [`DLQ_TOPIC`] holds what the consumer can never
//! store, with the reason in headers.

use crate::transport::{Delivery, TenantEvent, Transport, TransportError};
use async_trait::async_trait;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use std::time::Duration;

/// The audit events topic.
pub const TOPIC: &str = "audit.events.v1";
/// Where messages that can never be stored go, with the reason.
pub const DLQ_TOPIC: &str = "audit.events.v1.dlq";
/// The header naming the tenant (beside the key).
pub const TENANT_HEADER: &str = "tenant_id";

/// Settings every Vigil Kafka client shares.
pub fn client_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("client.id", "vigil")
        // Our own loss is counted; librdkafka's log goes through `tracing` at its levels.
        .set("log_level", "4");
    c
}

/// An idempotent `acks=all` producer; `timeout` bounds how long librdkafka tries to deliver a
/// message before reporting it failed.
pub fn producer_config(bootstrap: &str, timeout: Duration) -> ClientConfig {
    let mut c = client_config(bootstrap);
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        .set("message.timeout.ms", timeout.as_millis().max(1).to_string());
    c
}

/// The dead-letter topic of `topic` ([`DLQ_TOPIC`] for [`TOPIC`]).
pub fn dlq_topic(topic: &str) -> String {
    format!("{topic}.dlq")
}

/// Creates `topic` (with `partitions`) and its dead-letter topic when they do not exist. A
/// broker that forbids it (ACLs) is not an error here: the topics are then the operator's.
pub async fn ensure_topics(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
) -> Result<(), KafkaError> {
    let admin: AdminClient<QuietContext> =
        client_config(bootstrap).create_with_context(QuietContext)?;
    let dlq = dlq_topic(topic);
    let topics = [
        NewTopic::new(topic, partitions, TopicReplication::Fixed(1)),
        NewTopic::new(&dlq, 1, TopicReplication::Fixed(1)),
    ];
    let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(&topics, &opts).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                tracing::warn!(%topic, error = %code, "could not create a Kafka topic")
            }
        }
    }
    Ok(())
}

/// A client context that reports librdkafka's errors at debug level: while a broker is away
/// it reports every failed connection attempt, and the code using the client says what matters
/// (a failed send, once, with what it does about it).
#[derive(Clone, Copy, Debug, Default)]
pub struct QuietContext;

impl rdkafka::ClientContext for QuietContext {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(%error, reason, "librdkafka");
    }
}

impl rdkafka::consumer::ConsumerContext for QuietContext {}

/// A producer with [`producer_config`] and the [`QuietContext`].
pub fn producer(
    bootstrap: &str,
    timeout: Duration,
) -> Result<FutureProducer<QuietContext>, KafkaError> {
    producer_config(bootstrap, timeout).create_with_context(QuietContext)
}

/// Errors that say the broker could not be reached in time — the producer is fine and will
/// reconnect. Anything else a broker answers (an unknown producer id, a sequence it did not
/// expect after messages timed out) can leave an idempotent producer unable to go on.
fn unreachable_broker(e: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::MessageTimedOut
                | C::BrokerTransportFailure
                | C::AllBrokersDown
                | C::RequestTimedOut
                | C::QueueFull
                | C::Resolve
        )
    )
}

/// The Kafka transport.
pub struct KafkaTransport {
    bootstrap: String,
    timeout: Duration,
    producer: std::sync::Mutex<std::sync::Arc<FutureProducer<QuietContext>>>,
    topic: String,
}

impl std::fmt::Debug for KafkaTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaTransport")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl KafkaTransport {
    /// A transport to [`TOPIC`] on the brokers at `bootstrap`; a message not acknowledged
    /// within `timeout` fails its batch (which the producer then spools).
    pub fn new(bootstrap: &str, timeout: Duration) -> Result<KafkaTransport, KafkaError> {
        Ok(KafkaTransport {
            bootstrap: bootstrap.to_owned(),
            timeout,
            producer: std::sync::Mutex::new(std::sync::Arc::new(producer(bootstrap, timeout)?)),
            topic: TOPIC.to_owned(),
        })
    }

    fn current(&self) -> std::sync::Arc<FutureProducer<QuietContext>> {
        std::sync::Arc::clone(
            &self
                .producer
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Replaces `failed` (unless another send did already) with a fresh producer: a new
    /// producer id and sequence, which any broker accepts. An idempotent producer that saw
    /// messages time out must bump its epoch, which not every broker supports, and one that hit
    /// a fatal error is unusable; a batch it failed is resent whole by the caller, so nothing
    /// is lost and the store answers what arrives twice as duplicates.
    fn renew(&self, failed: &std::sync::Arc<FutureProducer<QuietContext>>) {
        let fresh = match producer(&self.bootstrap, self.timeout) {
            Ok(p) => std::sync::Arc::new(p),
            Err(e) => return tracing::warn!(error = %e, "could not create a new Kafka producer"),
        };
        let old = {
            let mut current = self
                .producer
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !std::sync::Arc::ptr_eq(&current, failed) {
                return;
            }
            std::mem::replace(&mut *current, fresh)
        };
        tracing::info!("replaced the Kafka producer after a broker error");
        // Dropping purges and waits for librdkafka's threads: not on the async runtime.
        tokio::task::spawn_blocking(move || drop(old));
    }

    /// The same, to another topic (replaying, benchmarks).
    pub fn to_topic(mut self, topic: &str) -> KafkaTransport {
        self.topic = topic.to_owned();
        self
    }
}

#[async_trait]
impl Transport for KafkaTransport {
    fn name(&self) -> &'static str {
        "kafka"
    }

    #[tracing::instrument(name = "kafka.produce", skip_all, fields(otel.kind = "producer", vigil.events = batch.len()))]
    async fn send(&self, batch: &[TenantEvent]) -> Result<Delivery, TransportError> {
        let producer = self.current();
        if let Some((code, why)) = producer.client().fatal_error() {
            self.renew(&producer);
            return Err(TransportError::Unavailable(format!(
                "fatal producer error {code:?}: {why}"
            )));
        }
        let mut pending = Vec::with_capacity(batch.len());
        for e in batch {
            let tenant = e.tenant().as_str();
            let record = FutureRecord::to(&self.topic)
                .key(tenant)
                .payload(e.json())
                .headers(OwnedHeaders::new().insert(Header {
                    key: TENANT_HEADER,
                    value: Some(tenant),
                }));
            match producer.send_result(record) {
                Ok(delivery) => pending.push(delivery),
                Err((e, _)) => {
                    // Queue full or the client is failing: what was queued may still land
                    // (then it arrives twice, which the consumer answers as duplicates).
                    return Err(TransportError::Unavailable(format!("enqueueing: {e}")));
                }
            }
        }
        let mut failure = None;
        let mut renew = false;
        for delivery in futures::future::join_all(pending).await {
            match delivery {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => {
                    renew |= !unreachable_broker(&e);
                    failure = Some(e.to_string());
                }
                Err(_) => failure = Some("the Kafka producer stopped".into()),
            }
        }
        if renew {
            self.renew(&producer);
        }
        match failure {
            None => Ok(Delivery::default()),
            Some(e) => Err(TransportError::Unavailable(e)),
        }
    }
}
