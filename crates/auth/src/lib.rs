//! Tokens for the fleet.
//!
//! - [`jwks::JwksVerifier`]: what every service (the gateway and the audit service included)
//!   verifies bearer tokens with. It reads the issuer's JWKS, keeps it cached, refreshes it in
//!   the background and on an unknown `kid` (at most once per cooldown, one fetch in flight),
//!   and plugs into `vigil-security`'s `TokenVerifier`.
//! - The issuer's side, used by the auth service: [`signing::SigningKey`] (Ed25519 or P-256
//!   keys, their public JWK and `kid`), [`claims::Claims`], [`password`] (NIST SP 800-63B
//!   policy and Argon2id hashes) and [`secret`] (API keys and client secrets).
#![deny(missing_docs)]

pub mod claims;
pub mod jwks;
pub mod password;
pub mod secret;
pub mod signing;

pub use claims::Claims;
pub use jwks::{JwksConfig, JwksStatus, JwksVerifier};
pub use signing::{KeyAlgorithm, SigningKey};
