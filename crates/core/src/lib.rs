//! Vigil's pure core.
//!
//! Everything that decides what an audit record *is* lives here, with no I/O, no async and no
//! clock reads: the v1 event schema and its validation ([`event`]), typed construction of
//! events by services ([`builder`]), RFC 8785 canonical JSON
//! ([`jcs`]), the salted per-field payload commitments and the hashed form ([`record`]), the
//! per-tenant hash chain ([`chain`]), the verifier ([`verify`]) and signed checkpoints in the
//! C2SP signed-note format ([`checkpoint`]).
//!
//! ```
//! use vigil_core::{event::EventInput, record::Sealer, ids::TenantId, time::Timestamp, chain::ChainHead};
//!
//! let tenant = TenantId::parse("acme").unwrap();
//! let input: serde_json::Value = serde_json::json!({
//!     "event_id": "01936a6e-7c3e-7d4a-9b1e-3f1f2b6c9a10",
//!     "occurred_at": "2026-11-22T10:00:00Z",
//!     "actor": {"type": "user", "id": "u-42"},
//!     "action": "payment.void",
//!     "resource": {"type": "payment", "id": "p-9"},
//!     "outcome": "success",
//!     "severity": "WARN",
//!     "source": {"service": "payments"},
//!     "payload": {"amount": 12}
//! });
//! let event = EventInput::new(input).validate(|| unreachable!("the event has an id")).unwrap();
//! let received = Timestamp::parse("2026-11-22T10:00:01Z").unwrap();
//! let mut head = ChainHead::genesis();
//! let record = Sealer::new(&tenant).seal(&event, head.seq + 1, received, &head.hash, &mut rand::thread_rng());
//! head = head.advance(&record);
//! assert_eq!(head.seq, 1);
//! assert_eq!(record.severity, "warning");
//! assert!(vigil_core::verify::verify_records(&[record]).is_intact());
//! ```
#![deny(missing_docs)]

pub mod builder;
pub mod chain;
pub mod checkpoint;
pub mod erasure;
pub mod error;
pub mod event;
pub mod hash;
pub mod ids;
pub mod jcs;
pub mod merkle;
pub mod number;
pub mod record;
pub mod redaction;
pub mod retention;
pub mod stored;
pub mod time;
pub mod verify;
pub mod webhook;

pub use error::Error;

/// The URL with any password replaced, for logs and `Debug`: the one in the user info
/// (`postgres://u:secret@h/db`) and a `password=` query parameter (`?password=secret`).
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = match (base.find("://"), base.rfind('@')) {
        (Some(s), Some(at)) if at > s => match base[s + 3..at].split_once(':') {
            Some((user, _)) => format!("{}{user}:***{}", &base[..s + 3], &base[at..]),
            None => base.to_owned(),
        },
        _ => base.to_owned(),
    };
    if let Some(q) = query {
        out.push('?');
        let params: Vec<String> = q
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => p.to_owned(),
            })
            .collect();
        out.push_str(&params.join("&"));
    }
    out
}

/// A database URL (`sqlite://…`, `postgres://…`): a secret when it carries a password, so
/// `Debug` and `Display` show it redacted ([`redact_url`]) and only [`DatabaseUrl::expose`]
/// gives the whole of it, to the code that connects.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// Wraps `url`.
    pub fn new(url: impl Into<String>) -> DatabaseUrl {
        DatabaseUrl(url.into())
    }

    /// The whole URL, password included: for connecting, never for printing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("DatabaseUrl")
            .field(&redact_url(&self.0))
            .finish()
    }
}

impl std::fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

impl std::str::FromStr for DatabaseUrl {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<DatabaseUrl, Self::Err> {
        Ok(DatabaseUrl::new(s))
    }
}

impl From<&str> for DatabaseUrl {
    fn from(s: &str) -> DatabaseUrl {
        DatabaseUrl(s.to_owned())
    }
}

impl From<String> for DatabaseUrl {
    fn from(s: String) -> DatabaseUrl {
        DatabaseUrl(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_url_never_prints_its_password() {
        for (url, shown) in [
            (
                "postgres://vigil:s3cret@db:5432/audit",
                "postgres://vigil:***@db:5432/audit",
            ),
            (
                "postgres://db/audit?user=vigil&password=s3cret&sslmode=require",
                "postgres://db/audit?user=vigil&password=***&sslmode=require",
            ),
            ("postgres://vigil@db/audit", "postgres://vigil@db/audit"),
            ("sqlite://.vigil/audit.db", "sqlite://.vigil/audit.db"),
        ] {
            let u: DatabaseUrl = url.parse().unwrap();
            assert_eq!(u.to_string(), shown);
            assert!(!format!("{u:?}").contains("s3cret"));
            assert_eq!(u.expose(), url);
        }
    }
}
