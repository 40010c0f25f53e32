//! The audit events the auth service records, built with `vigil-core`'s typed builder. Each
//! gets its `event_id` (UUIDv7) and time when it happens; the outbox stamps its position
//! ([`stamp`]) in the transaction that records it, so a redelivery from the outbox is the same
//! event, byte for byte, and the audit service answers it as a duplicate.

use serde_json::Value;
use vigil_core::builder::EventBuilder;
use vigil_core::event::{ActorType, Event, Outcome, Resource, Severity, Source};
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

fn now() -> Timestamp {
    let us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or_default();
    Timestamp::from_micros(us).expect("the clock reads a time between 2000 and 9999")
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
    .occurred_at(now())
}

/// The complete event: `draft` as the `seq`th event of producer `producer_id` for its tenant.
pub fn stamp(draft: EventBuilder, producer_id: &str, seq: i64) -> Result<Event, vigil_core::Error> {
    let source = Source {
        service: SERVICE.into(),
        producer_id: Some(producer_id.to_owned()),
        producer_seq: Some(seq),
    };
    draft.build(source, EventId::from_uuid(uuid::Uuid::now_v7()), now())
}
