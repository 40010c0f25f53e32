//! The audit producer every Vigil service embeds.
//!
//! [`AuditProducer::emit`] never blocks and never fails the request that calls it: the event
//! goes into a bounded in-memory queue and returns. One background task stamps each event with
//! the producer's id and a gapless per-tenant `producer_seq`, cuts batches (by size or linger
//! time) and hands them to a [`Transport`] — HTTP to the audit service ([`http`]), Kafka
//! ([`kafka`]), or in process. A batch the transport does not take within the send timeout goes
//! to the [`spool`] (SQLite, synced before the events count as acknowledged in durable mode)
//! and is resent from there, in order, when the transport is back; a restarted service drains
//! the spool its predecessor left. What the producer cannot hold — a full or broken spool, a
//! queue overrun in drop-on-full mode — it counts, logs, and leaves visible downstream as a gap
//! in `producer_seq`, never hidden.
//!
//! [`layer::AuditLayer`] audits every mutating request of an axum service in one line.
//!
//! ```no_run
//! use std::sync::Arc;
//! use vigil_core::builder::EventBuilder;
//! use vigil_core::event::{Actor, ActorType, Outcome, Resource};
//! use vigil_core::ids::TenantId;
//! use vigil_producer::{AuditProducer, HttpAuth, HttpTransport, ProducerConfig};
//!
//! # async fn demo() -> Result<(), vigil_producer::ProducerError> {
//! let transport = HttpTransport::new("http://127.0.0.1:8080", HttpAuth::TrustedHeaders);
//! let config = ProducerConfig::new("payments").with_spool("/var/lib/payments/audit-spool");
//! let registry = prometheus::Registry::new();
//! let producer = AuditProducer::start(config, Arc::new(transport), &registry).await?;
//! producer.emit(
//!     &TenantId::parse("acme").unwrap(),
//!     EventBuilder::new(
//!         "payment.void",
//!         Actor::new(ActorType::User, "u-42"),
//!         Resource::new("payment", "p-9"),
//!         Outcome::Success,
//!     ),
//! );
//! producer.shutdown().await; // flushes
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod config;
pub mod error;
pub mod http;
pub mod kafka;
pub mod layer;
pub mod metrics;
mod producer;
mod pump;
mod queue;
pub mod spool;
pub mod transport;

pub use config::{Mode, ProducerConfig};
pub use error::ProducerError;
pub use http::{HttpAuth, HttpTransport, TokenSource};
pub use kafka::KafkaTransport;
pub use producer::AuditProducer;
pub use transport::{Delivery, TenantEvent, Transport, TransportError};
