//! The audit service: a thin HTTP layer over `vigil-core` and `vigil-store`.
//!
//! - [`sequencer`]: one writer task per active tenant groups concurrent requests into one
//!   transaction (group commit), acknowledges only after it commits, and on a unique-constraint
//!   refusal (another process took the seq) reloads the head and retries, so a chain never forks.
//! - [`checkpointer`]: signs a checkpoint every N events or T seconds per tenant.
//! - [`http`]: ingest, query, chain head, checkpoints, keys, health, metrics and OpenAPI.
//! - [`kafka`]: ingest from `audit.events.v1` in a consumer group, offsets committed after the
//!   store, what can never be stored to the dead-letter topic.
//! - [`app`]: [`app::Application::build`] binds (port 0 in tests) and wires it all.
#![deny(missing_docs)]

pub mod app;
pub mod checkpointer;
pub mod denials;
pub mod erasure;
pub mod error;
pub mod http;
pub mod in_process;
pub mod kafka;
pub mod keys;
pub mod merkle;
pub mod metrics;
pub mod redaction;
pub mod retention;
pub mod sequencer;
pub mod settings;
pub mod verification;
pub mod webhooks;

pub use app::Application;
pub use error::AuditError;
pub use settings::AuditSettings;
