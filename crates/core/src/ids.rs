//! Identifiers that cross the edge: tenants, events and traces. Each is built only by `parse`.

use crate::Error;
use std::fmt;

/// A tenant id: `[a-z0-9][a-z0-9_-]{0,63}`. Deserializes through [`TenantId::parse`], so a
/// body with a bad tenant id is refused where it is read.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

impl TryFrom<String> for TenantId {
    type Error = Error;
    fn try_from(s: String) -> Result<TenantId, Error> {
        TenantId::parse(&s)
    }
}

impl From<TenantId> for String {
    fn from(t: TenantId) -> String {
        t.0
    }
}

impl TenantId {
    /// Parses a tenant id, refusing anything outside `[a-z0-9][a-z0-9_-]{0,63}`.
    pub fn parse(s: &str) -> Result<TenantId, Error> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes().enumerate().all(|(i, b)| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || (i > 0 && (b == b'_' || b == b'-'))
            });
        if ok {
            Ok(TenantId(s.to_owned()))
        } else {
            Err(Error::invalid(
                "tenant_id",
                "must match [a-z0-9][a-z0-9_-]{0,63}",
            ))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TenantId({})", self.0)
    }
}

/// An event id: a UUID (UUIDv7 when Vigil generates it), the idempotency key within a tenant.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct EventId(uuid::Uuid);

impl EventId {
    /// Parses a UUID in its hyphenated form (either case).
    pub fn parse(s: &str) -> Result<EventId, Error> {
        if s.len() != 36 {
            return Err(Error::invalid(
                "event_id",
                "must be a UUID such as 0192f3c1-7c3e-7d4a-9b1e-3f1f2b6c9a10",
            ));
        }
        uuid::Uuid::try_parse(s).map(EventId).map_err(|_| {
            Error::invalid(
                "event_id",
                "must be a UUID such as 0192f3c1-7c3e-7d4a-9b1e-3f1f2b6c9a10",
            )
        })
    }

    /// Wraps a UUID the caller generated (the service generates UUIDv7s).
    pub fn from_uuid(u: uuid::Uuid) -> EventId {
        EventId(u)
    }

    /// A name-based id (UUID version 8) from the first 16 bytes of `content`'s hash: the
    /// same content always gets the same id.
    pub fn derived(content: &crate::hash::Hash32) -> EventId {
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&content.0[..16]);
        EventId(uuid::Builder::from_custom_bytes(bytes).into_uuid())
    }

    /// The UUID.
    pub fn uuid(&self) -> uuid::Uuid {
        self.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

/// A W3C trace id: 32 lowercase hex digits, not all zero.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct TraceId(String);

impl TraceId {
    /// Parses 32 hex digits (normalized to lowercase), refusing the all-zero id.
    pub fn parse(s: &str) -> Result<TraceId, Error> {
        if s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit()) && s.bytes().any(|b| b != b'0')
        {
            Ok(TraceId(s.to_ascii_lowercase()))
        } else {
            Err(Error::invalid(
                "trace_id",
                "must be 32 hex digits (a W3C trace id), not all zero",
            ))
        }
    }

    /// Builds a trace id from 16 random bytes (the caller supplies the randomness).
    pub fn from_bytes(b: [u8; 16]) -> TraceId {
        let mut b = b;
        if b.iter().all(|&x| x == 0) {
            b[15] = 1;
        }
        TraceId(hex::encode(b))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_follow_the_documented_pattern() {
        for ok in ["a", "acme", "0", "a-b_c", &"a".repeat(64)] {
            assert!(TenantId::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "_a",
            "Acme",
            "a b",
            "a.b",
            &"a".repeat(65),
            "é",
            "a\n",
        ] {
            assert!(TenantId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn trace_ids_are_normalized_to_lowercase_and_zero_is_refused() {
        assert_eq!(
            TraceId::parse("4BF92F3577B34DA6A3CE929D0E0E4736")
                .unwrap()
                .as_str(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert!(TraceId::parse(&"0".repeat(32)).is_err());
        assert!(TraceId::parse("xyz").is_err());
    }

    #[test]
    fn event_ids_must_be_hyphenated_uuids() {
        assert!(EventId::parse("01936a6e-7c3e-7d4a-9b1e-3f1f2b6c9a10").is_ok());
        assert!(EventId::parse("01936a6e7c3e7d4a9b1e3f1f2b6c9a10").is_err());
        assert!(EventId::parse("nope").is_err());
    }
}
