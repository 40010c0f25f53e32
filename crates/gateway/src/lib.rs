//! The gateway (`vigil gateway serve`): one door for a fleet. Each request is matched to a
//! route, its caller authenticated (a bearer JWT through the issuer's JWKS), checked for the
//! route's capability, and admitted or refused by the caller's tenant's rate limit; then it is
//! forwarded with the identity in headers the caller cannot spoof (`X-Tenant-ID`,
//! `X-User-ID`, `X-Roles` are removed from what the client sent and set from the verified
//! identity) and a continued or new `traceparent`.
//!
//! - [`limiter`]: GCRA, a Redis engine (one script, one round trip per decision, shared by
//!   every instance), an in-memory engine with bounded memory, and the breaker that falls
//!   back to memory (or refuses) while Redis is away.
//! - [`proxy`]: the service: its own endpoints, CORS, security headers; each request passes
//!   the forwarding stages (route, identity, admission, rate, upstream), each unit-tested.
//! - [`audit`]: rate-limit breaches (per tenant and minute), authentication failures and
//!   limiter engine changes as audit events.
#![deny(missing_docs)]

pub mod audit;
pub mod config;
pub mod error;
mod forward;
pub mod identity;
pub mod limiter;
mod metrics;
pub mod openapi;
pub(crate) mod per_thread;
pub mod proxy;
mod route;

pub use config::GatewayConfig;
pub use error::GatewayError;
pub use proxy::Gateway;
