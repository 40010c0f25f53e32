//! The auth service (`vigil auth serve`): issues tokens to users (`POST /v1/login`) and service
//! clients (`POST /oauth/token`), publishes its keys (`/.well-known/jwks.json`), rotates them
//! without a restart, and manages users, service clients and API keys.
//!
//! Keys live in the service's database; `vigil auth keys rotate|list|retire` works on that
//! database and every running instance picks the change up within its reload interval. A
//! rotated-in key is published one rotation ahead of signing (state `next`), so verifiers have
//! it before the first token it signs; the key it replaces stays published for the longest
//! token lifetime plus a grace period and is then retired by itself.
//!
//! Logins, token issuance, key rotation and retirement and API key changes are audit events,
//! written to an outbox in the same transaction as the change and delivered to the audit
//! service by [`outbox::drain`].
#![deny(missing_docs)]

pub mod app;
pub mod events;
pub mod http;
pub mod keyring;
pub mod outbox;
pub mod service;
pub mod settings;
pub mod store;
pub mod throttle;

pub use app::Application;
pub use settings::AuthSettings;
