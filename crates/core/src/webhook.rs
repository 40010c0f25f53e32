//! Signed webhooks, per the Standard Webhooks specification
//! (<https://www.standardwebhooks.com>): what a delivery is signed with, which records a
//! subscription wants, and when a failed delivery is tried again.
//!
//! A delivery carries `webhook-id` (the same on every retry: receivers deduplicate by it),
//! `webhook-timestamp` (Unix seconds when this attempt was signed: receivers refuse old ones,
//! which stops replays) and `webhook-signature`: `v1,<base64 HMAC-SHA256 of
//! "{id}.{timestamp}.{body}">`, one per active secret, separated by spaces — two while a
//! rotated-out secret is still honoured, so receivers can switch secrets without a gap.

use crate::event::Severity;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

/// The prefix of a signing secret's text.
pub const SECRET_PREFIX: &str = "whsec_";

/// A subscription's signing secret: random bytes (32 when Vigil makes one; the specification
/// allows 24 to 64), written `whsec_<base64>`. Its `Debug` shows nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(whsec_…)")
    }
}

impl Secret {
    /// A new random secret.
    pub fn generate() -> Secret {
        let mut b = vec![0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut b);
        Secret(b)
    }

    /// From its bytes (as stored).
    pub fn from_bytes(b: Vec<u8>) -> Secret {
        Secret(b)
    }

    /// From its text, `whsec_<base64>`.
    pub fn parse(text: &str) -> Option<Secret> {
        let b = B64.decode(text.strip_prefix(SECRET_PREFIX)?).ok()?;
        (24..=64).contains(&b.len()).then_some(Secret(b))
    }

    /// Its bytes (to store, sealed).
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// `whsec_<base64>`, as shown once to the subscriber.
    pub fn expose(&self) -> String {
        format!("{SECRET_PREFIX}{}", B64.encode(&self.0))
    }

    /// The `v1,<base64>` signature of one delivery attempt.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
    }
}

/// A signing secret with the time it stops being honoured (`None`: the current one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keyed {
    /// The secret.
    pub secret: Secret,
    /// Unix seconds after which deliveries are no longer signed with it (a rotated-out one).
    pub until: Option<i64>,
}

/// The key that seals subscriptions' secrets at rest (32 bytes). `Debug` never shows it.
#[derive(Clone)]
pub struct SecretKey([u8; 32]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(…)")
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct SealedSecret {
    sealed: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    until: Option<i64>,
}

impl SecretKey {
    /// From its bytes.
    pub fn new(bytes: [u8; 32]) -> SecretKey {
        SecretKey(bytes)
    }

    fn aad(tenant: &str, subscription: &str) -> Vec<u8> {
        [
            b"vigil webhook secret v1\0".as_slice(),
            tenant.as_bytes(),
            b"\0",
            subscription.as_bytes(),
        ]
        .concat()
    }

    /// `secrets` of `tenant`'s subscription sealed, as the text the store keeps.
    pub fn seal(&self, tenant: &str, subscription: &str, secrets: &[Keyed]) -> String {
        let aad = Self::aad(tenant, subscription);
        let sealed: Vec<SealedSecret> = secrets
            .iter()
            .map(|k| SealedSecret {
                sealed: B64.encode(crate::erasure::seal(&self.0, &aad, k.secret.bytes())),
                until: k.until,
            })
            .collect();
        serde_json::to_string(&sealed).expect("JSON")
    }

    /// The secrets [`SecretKey::seal`] sealed for this subscription.
    pub fn open(
        &self,
        tenant: &str,
        subscription: &str,
        text: &str,
    ) -> Result<Vec<Keyed>, crate::error::Error> {
        let aad = Self::aad(tenant, subscription);
        let sealed: Vec<SealedSecret> = serde_json::from_str(text)
            .map_err(|_| crate::error::Error::Sealed("not a sealed secret list"))?;
        sealed
            .into_iter()
            .map(|s| {
                let bytes = B64
                    .decode(&s.sealed)
                    .map_err(|_| crate::error::Error::Sealed("not base64"))?;
                Ok(Keyed {
                    secret: Secret(crate::erasure::open(&self.0, &aad, &bytes)?),
                    until: s.until,
                })
            })
            .collect()
    }
}

/// The secrets to sign with at `now` (Unix seconds): the current one and any rotated-out one
/// still honoured.
pub fn active(secrets: &[Keyed], now: i64) -> Vec<Secret> {
    secrets
        .iter()
        .filter(|k| k.until.is_none_or(|u| u > now))
        .map(|k| k.secret.clone())
        .collect()
}

/// The `webhook-signature` header value: a signature per active secret.
pub fn signature_header(secrets: &[Secret], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|s| s.sign(msg_id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Which audit records a subscription is sent: at or above a severity, and (when any are
/// named) whose action matches one of `actions` — exactly, or by prefix when the pattern ends
/// in `.*` (`payment.*`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// The lowest severity sent (`security` sends security events only); none: every one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_severity: Option<String>,
    /// Action patterns; empty: every action.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<String>,
}

impl Filter {
    /// Checks the filter names a real severity and sane patterns.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(s) = &self.min_severity {
            Severity::parse(s).map_err(|e| format!("min_severity: {e}"))?;
        }
        if self.actions.len() > 50 {
            return Err("actions: at most 50 patterns".into());
        }
        for a in &self.actions {
            let stem = a.strip_suffix(".*").unwrap_or(a);
            if stem.is_empty()
                || stem.len() > 128
                || !stem
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            {
                return Err(format!(
                    "actions: {a:?} is not an action name or a prefix ending in .*"
                ));
            }
        }
        Ok(())
    }

    /// Whether a record of `action` at `severity` is sent.
    pub fn matches(&self, action: &str, severity: &str) -> bool {
        let severe = match &self.min_severity {
            None => true,
            Some(min) => match (Severity::parse(min), Severity::parse(severity)) {
                (Ok(min), Ok(s)) => s >= min,
                _ => false,
            },
        };
        severe
            && (self.actions.is_empty()
                || self.actions.iter().any(|p| match p.strip_suffix(".*") {
                    Some(prefix) => action
                        .strip_prefix(prefix)
                        .is_some_and(|rest| rest.starts_with('.')),
                    None => p == action,
                }))
    }
}

/// When attempt `attempts + 1` of a delivery is due after `attempts` failed: `base` doubled
/// each time, at most an hour.
pub fn backoff(base: std::time::Duration, attempts: u32) -> std::time::Duration {
    let factor = 1u32 << attempts.saturating_sub(1).min(16);
    base.saturating_mul(factor)
        .min(std::time::Duration::from_secs(3600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_is_the_specifications() {
        // The example of the Standard Webhooks reference libraries' tests.
        let s = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            s.sign(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        assert_eq!(Secret::parse(&s.expose()), Some(s));
        assert!(Secret::parse("whsec_c2hvcnQ=").is_none(), "too short");
        assert!(
            Secret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_none(),
            "no prefix"
        );
    }

    #[test]
    fn two_active_secrets_sign_twice_and_debug_shows_neither() {
        let (a, b) = (Secret::generate(), Secret::generate());
        let h = signature_header(&[a.clone(), b.clone()], "msg_1", 1, b"{}");
        let parts: Vec<&str> = h.split(' ').collect();
        assert_eq!(
            parts,
            [a.sign("msg_1", 1, b"{}"), b.sign("msg_1", 1, b"{}")]
        );
        assert!(a.expose().starts_with("whsec_"));
        assert!(!format!("{a:?}").contains(&a.expose()[6..]));
    }

    #[test]
    fn filters_match_by_severity_and_action_pattern() {
        let f = Filter {
            min_severity: Some("security".into()),
            actions: vec![],
        };
        assert!(f.matches("auth.login", "security"));
        assert!(!f.matches("auth.login", "critical"));
        let f = Filter {
            min_severity: Some("warning".into()),
            actions: vec!["payment.*".into(), "user.login".into()],
        };
        assert!(f.matches("payment.refund", "error"));
        assert!(f.matches("user.login", "warning"));
        assert!(
            !f.matches("payments.refund", "error"),
            "a prefix is a whole segment"
        );
        assert!(!f.matches("payment", "error"));
        assert!(!f.matches("user.login", "info"));
        assert!(Filter::default().matches("anything", "info"));
        assert!(Filter {
            min_severity: Some("loud".into()),
            actions: vec![]
        }
        .validate()
        .is_err());
        assert!(Filter {
            min_severity: None,
            actions: vec!["*".into()]
        }
        .validate()
        .is_err());
    }

    #[test]
    fn secrets_are_sealed_to_their_subscription() {
        let key = SecretKey::new([3; 32]);
        let secrets = vec![
            Keyed {
                secret: Secret::generate(),
                until: None,
            },
            Keyed {
                secret: Secret::generate(),
                until: Some(100),
            },
        ];
        let text = key.seal("acme", "wh_1", &secrets);
        assert!(!text.contains(&secrets[0].secret.expose()[6..]));
        assert_eq!(key.open("acme", "wh_1", &text).unwrap(), secrets);
        assert!(
            key.open("acme", "wh_2", &text).is_err(),
            "bound to its subscription"
        );
        assert!(SecretKey::new([4; 32]).open("acme", "wh_1", &text).is_err());
        assert_eq!(active(&secrets, 99).len(), 2);
        assert_eq!(active(&secrets, 100), vec![secrets[0].secret.clone()]);
    }

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        let base = std::time::Duration::from_secs(5);
        assert_eq!(backoff(base, 1).as_secs(), 5);
        assert_eq!(backoff(base, 2).as_secs(), 10);
        assert_eq!(backoff(base, 4).as_secs(), 40);
        assert_eq!(backoff(base, 40).as_secs(), 3600);
    }
}
