//! Passwords by NIST SP 800-63B (§5.1.1.2): a minimum length (8, configurable upward), at
//! least 64 characters accepted, every printable character and space allowed, no composition
//! rules, and a refusal for passwords that are common or breached (the list shipped in
//! `data/common-passwords.txt`), repetitive or sequential, or built on context words such as
//! the user's or the service's name. Stored as Argon2id hashes (PHC strings).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use std::collections::HashSet;
use std::sync::OnceLock;

/// Common and breached passwords of 8 characters or more, lowercase, one per line (from the
/// xato 10M-password corpus as shipped by zxcvbn, MIT licence).
const COMMON: &str = include_str!("../data/common-passwords.txt");

fn common() -> &'static HashSet<&'static str> {
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| COMMON.lines().filter(|l| !l.is_empty()).collect())
}

/// Why a password was refused. The message is shown to the user; it never contains the
/// password.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PasswordRefusal {
    /// Fewer characters than the minimum.
    #[error("a password needs at least {0} characters")]
    TooShort(usize),
    /// More characters than the maximum.
    #[error("a password may have at most {0} characters")]
    TooLong(usize),
    /// On the list of common or breached passwords.
    #[error("this password is on a list of common or breached passwords")]
    Common,
    /// One character repeated, or a run such as `12345678` or `abcdefgh`.
    #[error("a password must not be one repeated character or a simple sequence")]
    Repetitive,
    /// Contains the user's name, the service's name or another context word.
    #[error("a password must not contain {0:?}")]
    ContextWord(String),
    /// A control character.
    #[error("a password must not contain control characters")]
    ControlCharacter,
}

/// The password rules.
#[derive(Clone, Debug)]
pub struct PasswordPolicy {
    min_chars: usize,
    max_chars: usize,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        PasswordPolicy {
            min_chars: 8,
            max_chars: 256,
        }
    }
}

impl PasswordPolicy {
    /// A policy with `min_chars` (raised to 8 when lower: NIST's floor).
    pub fn with_min_chars(min_chars: usize) -> PasswordPolicy {
        PasswordPolicy {
            min_chars: min_chars.max(8),
            ..PasswordPolicy::default()
        }
    }

    /// The minimum length, in characters.
    pub fn min_chars(&self) -> usize {
        self.min_chars
    }

    /// Checks `password`; `context` holds words it must not contain (user name, tenant,
    /// service name). Context words shorter than 4 characters are ignored.
    pub fn check(&self, password: &str, context: &[&str]) -> Result<(), PasswordRefusal> {
        let n = password.chars().count();
        if n < self.min_chars {
            return Err(PasswordRefusal::TooShort(self.min_chars));
        }
        if n > self.max_chars {
            return Err(PasswordRefusal::TooLong(self.max_chars));
        }
        if password.chars().any(char::is_control) {
            return Err(PasswordRefusal::ControlCharacter);
        }
        let lower = password.to_lowercase();
        if common().contains(lower.as_str()) {
            return Err(PasswordRefusal::Common);
        }
        if repetitive(&lower) {
            return Err(PasswordRefusal::Repetitive);
        }
        for word in context {
            let w = word.trim().to_lowercase();
            if w.chars().count() >= 4 && lower.contains(&w) {
                return Err(PasswordRefusal::ContextWord(word.trim().to_owned()));
            }
        }
        Ok(())
    }
}

/// One character repeated, or a single run of consecutive (or reversed) characters, or one
/// short unit repeated (`abcabcabc`).
fn repetitive(p: &str) -> bool {
    let c: Vec<u32> = p.chars().map(u32::from).collect();
    let steady = |step: i64| {
        c.windows(2)
            .all(|w| i64::from(w[1]) - i64::from(w[0]) == step)
    };
    if steady(0) || steady(1) || steady(-1) {
        return true;
    }
    (1..=c.len() / 2)
        .any(|unit| c.len().is_multiple_of(unit) && c.chunks(unit).all(|ch| ch == &c[..unit]))
}

/// Argon2id with OWASP's recommended parameters (19 MiB, 2 passes, 1 lane).
fn argon2() -> Argon2<'static> {
    Argon2::new(
        Algorithm::Argon2id,
        Version::V0x13,
        Params::new(19 * 1024, 2, 1, None).expect("valid Argon2 parameters"),
    )
}

/// The Argon2id PHC string for `secret` (a password or a client secret), with a fresh salt.
/// CPU-bound for tens of milliseconds: call it from a blocking thread.
pub fn hash(secret: &str) -> String {
    let salt: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt).expect("16 bytes encode");
    argon2()
        .hash_password(secret.as_bytes(), &salt)
        .expect("hashing with valid parameters")
        .to_string()
}

/// Does `secret` match the PHC string `stored`? A malformed `stored` is a mismatch.
pub fn verify(secret: &str, stored: &str) -> bool {
    PasswordHash::new(stored)
        .map(|h| argon2().verify_password(secret.as_bytes(), &h).is_ok())
        .unwrap_or(false)
}

/// A hash of a password no one has, to verify against when the account does not exist, so
/// that a login for an unknown user costs as long as one for a known user.
pub fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| hash("decoy password that no account has"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_are_salted() {
        let a = hash("correct horse battery staple");
        let b = hash("correct horse battery staple");
        assert_ne!(a, b);
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert!(verify("correct horse battery staple", &a));
        assert!(!verify("correct horse battery stapler", &a));
        assert!(!verify("x", "not a hash"));
    }

    #[test]
    fn the_shipped_list_is_loaded_lowercase() {
        assert!(common().len() > 10_000);
        assert!(common().contains("password1"));
        assert!(common().iter().all(|p| p.chars().count() >= 8));
    }
}
