//! The audit events the auth service records, built with `vigil-core`'s typed builder. Each
//! gets its `event_id` (UUIDv7) and time when it happens; the identity store's outbox stamps
//! its position in the transaction that records it, so a redelivery from the outbox is the same
//! event, byte for byte, and the audit service answers it as a duplicate.

use serde_json::Value;
use vigil_core::builder::EventBuilder;
use vigil_core::event::{ActorType, Outcome, Resource, Severity};
use vigil_core::ids::EventId;
use vigil_core::time::Timestamp;

/// `source.service` of the auth service's events.
pub const SERVICE: &str = "vigil-auth";

/// Who did it.
#[derive(Clone, Copy, Debug)]
pub enum Actor<'a> {
    /// A user, by name.
    User(&'a str),
    /// A service client, by id.
    Service(&'a str),
    /// The auth service itself (scheduled work, the command line).
    System,
}

/// One audit event: `actor` did `action` to `resource` (kind, id) with `outcome`; `payload`
/// is a JSON object (its members become the payload's fields).
pub fn event(
    actor: Actor<'_>,
    action: &str,
    resource: (&str, &str),
    outcome: Outcome,
    severity: Severity,
    payload: Value,
) -> EventBuilder {
    let actor = match actor {
        Actor::User(u) => vigil_core::event::Actor::new(ActorType::User, u),
        Actor::Service(c) => vigil_core::event::Actor::new(ActorType::Service, c),
        Actor::System => vigil_core::event::Actor::new(ActorType::System, SERVICE),
    };
    let payload = match payload {
        Value::Object(m) => m,
        Value::Null => Default::default(),
        other => [("value".to_owned(), other)].into_iter().collect(),
    };
    EventBuilder::new(
        action,
        actor,
        Resource::new(resource.0, resource.1),
        outcome,
    )
    .severity(severity)
    .payload(payload)
    .event_id(EventId::from_uuid(uuid::Uuid::now_v7()))
    .occurred_at(Timestamp::now())
}
