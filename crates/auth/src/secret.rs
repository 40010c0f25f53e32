//! Secrets handed out once: API keys and service-client secrets.
//!
//! An API key reads `vk_<id>_<secret>`: `id` (12 lowercase hex characters) is the visible
//! prefix that names the key in lists, logs and audit events; `secret` is 32 random bytes,
//! base64url. The store keeps the id and SHA-256 of the whole key: with 256 random bits a
//! fast hash is as safe as a slow one, and checking a key stays cheap on the gateway's path.
//! Client secrets (`vcs_…`) are hashed with Argon2id like passwords.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use sha2::{Digest, Sha256};

/// A freshly made secret: shown once, then only its hash is kept. `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Secret {
    /// Wraps a secret received from a caller.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The secret itself, to show once or to check.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

fn random_b64() -> String {
    B64.encode(rand::random::<[u8; 32]>())
}

/// A new API key: `(id, key)`.
pub fn new_api_key() -> (String, Secret) {
    let id = hex::encode(rand::random::<[u8; 6]>());
    let key = format!("vk_{id}_{}", random_b64());
    (id, Secret(key))
}

/// The id of an API key, when `key` has the shape of one.
pub fn api_key_id(key: &str) -> Option<&str> {
    let rest = key.strip_prefix("vk_")?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 12
        && id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        && secret.len() == 43)
        .then_some(id)
}

/// What the store keeps of an API key: lowercase hex SHA-256 of the whole key.
pub fn api_key_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Compares two hashes in time independent of where they differ.
pub fn hashes_equal(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A new client secret.
pub fn new_client_secret() -> Secret {
    Secret(format!("vcs_{}", random_b64()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_carry_their_id_and_hide_in_debug() {
        let (id, key) = new_api_key();
        assert_eq!(api_key_id(key.expose()), Some(id.as_str()));
        assert_eq!(format!("{key:?}"), "Secret(***)");
        assert_eq!(api_key_hash(key.expose()).len(), 64);
        assert!(hashes_equal(
            &api_key_hash(key.expose()),
            &api_key_hash(key.expose())
        ));
        assert!(!hashes_equal(&api_key_hash("a"), &api_key_hash("b")));
        for bad in ["", "vk_", "vk_xyz_abc", "vk_ABCDEF123456_x", "bearer"] {
            assert_eq!(api_key_id(bad), None, "{bad}");
        }
    }
}
