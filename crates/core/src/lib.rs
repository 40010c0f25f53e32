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
pub mod error;
pub mod event;
pub mod hash;
pub mod ids;
pub mod jcs;
pub mod number;
pub mod record;
pub mod time;
pub mod verify;

pub use error::Error;

/// The URL with any password replaced, for logs and `Debug`.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}
