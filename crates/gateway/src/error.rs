//! The gateway crate's one error type: why a gateway could not be configured, built or run.
//! (Refusals of requests are `ApiError`s, in the shape.)

use std::net::SocketAddr;

/// Why the gateway cannot start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The TOML does not parse or has unknown keys.
    #[error("the gateway config does not parse")]
    Parse(#[from] toml::de::Error),
    /// The config parses but cannot work.
    #[error("the gateway config is invalid: {0}")]
    Invalid(String),
    /// The gateway's own audit producer could not start (its spool directory, say).
    #[error("starting the gateway's audit producer")]
    Audit(#[from] vigil_producer::ProducerError),
    /// Redis could not be reached at start (the URL is shown without its password).
    #[error("connecting to Redis at {url}")]
    Redis {
        /// The redacted URL.
        url: String,
        /// Why.
        source: crate::limiter::LimiterError,
    },
    /// The listen address could not be bound.
    #[error("binding {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("serving")]
    Serve(#[source] std::io::Error),
}
