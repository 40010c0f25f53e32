//! Events built in code: the one typed way a service describes what happened.
//!
//! A service names the action, the actor, the resource and the outcome (and, if it likes, the
//! severity, trace and payload fields) with typed values; what only the emitting side knows —
//! the event id, when it happened, and the producer's name and position — is supplied when the
//! event is [built](EventBuilder::build), which applies the same rules as validating JSON
//! input, so an event built here is exactly one the audit service accepts.
//!
//! ```
//! use vigil_core::builder::EventBuilder;
//! use vigil_core::event::{Actor, ActorType, Outcome, Resource, Severity, Source};
//! use vigil_core::ids::EventId;
//! use vigil_core::time::Timestamp;
//!
//! let event = EventBuilder::new(
//!     "payment.void",
//!     Actor::new(ActorType::User, "u-42"),
//!     Resource::new("payment", "p-9"),
//!     Outcome::Success,
//! )
//! .severity(Severity::Warning)
//! .field("amount", 12.5)
//! .build(
//!     Source::new("payments"),
//!     EventId::from_uuid(uuid::Uuid::nil()),
//!     Timestamp::parse("2026-11-22T10:00:00Z").unwrap(),
//! )
//! .unwrap();
//! assert_eq!(event.action.as_str(), "payment.void");
//! ```

use crate::event::{
    check_payload, check_text, Action, Actor, ActorType, Event, Outcome, Resource, Severity,
    Source, MAX_SAFE_INTEGER,
};
use crate::ids::{EventId, TraceId};
use crate::time::Timestamp;
use crate::Error;
use serde_json::{Map, Value};

/// An event under construction. Setters take typed values; [`EventBuilder::build`] checks
/// lengths, characters and the payload, and names the field at fault.
#[derive(Clone, Debug, PartialEq)]
pub struct EventBuilder {
    action: String,
    actor: Actor,
    resource: Resource,
    outcome: Outcome,
    severity: Severity,
    trace_id: Option<TraceId>,
    payload: Map<String, Value>,
    event_id: Option<EventId>,
    occurred_at: Option<Timestamp>,
}

impl Actor {
    /// An actor of `kind` with `id`.
    pub fn new(kind: ActorType, id: impl Into<String>) -> Actor {
        Actor {
            kind,
            id: id.into(),
        }
    }
}

impl Resource {
    /// A resource of `kind` with `id`.
    pub fn new(kind: impl Into<String>, id: impl Into<String>) -> Resource {
        Resource {
            kind: kind.into(),
            id: id.into(),
        }
    }
}

impl Source {
    /// Emitted by `service`, with no producer position (the producer stamps one).
    pub fn new(service: impl Into<String>) -> Source {
        Source {
            service: service.into(),
            producer_id: None,
            producer_seq: None,
        }
    }
}

impl EventBuilder {
    /// `actor` did `action` to `resource`, with `outcome`; severity `info` unless set.
    pub fn new(
        action: impl Into<String>,
        actor: Actor,
        resource: Resource,
        outcome: Outcome,
    ) -> EventBuilder {
        EventBuilder {
            action: action.into(),
            actor,
            resource,
            outcome,
            severity: Severity::Info,
            trace_id: None,
            payload: Map::new(),
            event_id: None,
            occurred_at: None,
        }
    }

    /// How much it matters.
    pub fn severity(mut self, severity: Severity) -> Self {
        self.severity = severity;
        self
    }

    /// The request's trace.
    pub fn trace_id(mut self, trace_id: TraceId) -> Self {
        self.trace_id = Some(trace_id);
        self
    }

    /// One payload field (each top-level field is committed to separately, so it can later be
    /// hidden or erased on its own).
    pub fn field(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.payload.insert(name.into(), value.into());
        self
    }

    /// Every payload field at once (replacing any set before).
    pub fn payload(mut self, payload: Map<String, Value>) -> Self {
        self.payload = payload;
        self
    }

    /// A fixed event id (the idempotency key), e.g. one derived from the source's own record.
    /// Without one, [`EventBuilder::build`]'s `event_id` is used.
    pub fn event_id(mut self, id: EventId) -> Self {
        self.event_id = Some(id);
        self
    }

    /// When it happened, when that is not when it was built.
    pub fn occurred_at(mut self, at: Timestamp) -> Self {
        self.occurred_at = Some(at);
        self
    }

    /// The event id set on the builder, if any.
    pub fn preset_event_id(&self) -> Option<EventId> {
        self.event_id
    }

    /// The action, as given.
    pub fn action_name(&self) -> &str {
        &self.action
    }

    /// The validated event: `event_id` and `occurred_at` apply unless the builder has its own,
    /// and `source` says who emitted it.
    pub fn build(
        self,
        source: Source,
        event_id: EventId,
        occurred_at: Timestamp,
    ) -> Result<Event, Error> {
        let action = Action::parse(&self.action)?;
        let actor = Actor {
            kind: self.actor.kind,
            id: check_text("actor.id", self.actor.id)?,
        };
        let resource = Resource {
            kind: check_text("resource.type", self.resource.kind)?,
            id: check_text("resource.id", self.resource.id)?,
        };
        let source = Source {
            service: check_text("source.service", source.service)?,
            producer_id: source
                .producer_id
                .map(|p| check_text("source.producer_id", p))
                .transpose()?,
            producer_seq: source.producer_seq,
        };
        if let Some(seq) = source.producer_seq {
            if !(0..=MAX_SAFE_INTEGER).contains(&seq) {
                return Err(Error::invalid(
                    "source.producer_seq",
                    "must be an integer between 0 and 2^53-1",
                ));
            }
            if source.producer_id.is_none() {
                return Err(Error::invalid(
                    "source.producer_id",
                    "is required when source.producer_seq is given",
                ));
            }
        }
        check_payload(&self.payload)?;
        Ok(Event {
            event_id: self.event_id.unwrap_or(event_id),
            occurred_at: self.occurred_at.unwrap_or(occurred_at),
            actor,
            action,
            resource,
            outcome: self.outcome,
            severity: self.severity,
            source,
            trace_id: self.trace_id,
            payload: self.payload,
        })
    }
}

/// An event that exists already (read back from an outbox, say) as a builder that keeps its id
/// and time; building it again stamps a new source.
impl From<Event> for EventBuilder {
    fn from(e: Event) -> EventBuilder {
        EventBuilder {
            action: e.action.as_str().to_owned(),
            actor: e.actor,
            resource: e.resource,
            outcome: e.outcome,
            severity: e.severity,
            trace_id: e.trace_id,
            payload: e.payload,
            event_id: Some(e.event_id),
            occurred_at: Some(e.occurred_at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventInput;
    use serde_json::json;

    fn at() -> Timestamp {
        Timestamp::parse("2026-11-22T10:00:00Z").unwrap()
    }

    fn id() -> EventId {
        EventId::parse("01936a6e-7c3e-7d4a-9b1e-3f1f2b6c9a10").unwrap()
    }

    fn builder() -> EventBuilder {
        EventBuilder::new(
            "payment.void",
            Actor::new(ActorType::User, "u-42"),
            Resource::new("payment", "p-9"),
            Outcome::Success,
        )
    }

    fn source() -> Source {
        Source {
            service: "payments".into(),
            producer_id: Some("payments-7f3".into()),
            producer_seq: Some(1812),
        }
    }

    #[test]
    fn a_built_event_is_the_event_its_json_validates_to() {
        let built = builder()
            .severity(Severity::Warning)
            .trace_id(TraceId::parse("4bf92f3577b34da6a3ce929d0e0e4736").unwrap())
            .field("amount", 12.5)
            .field("reason", "duplicate charge")
            .build(source(), id(), at())
            .unwrap();
        let parsed = EventInput::new(built.to_json())
            .validate(|| unreachable!("the event has an id"))
            .unwrap();
        assert_eq!(built, parsed);
        assert_eq!(built.content_hash(), parsed.content_hash());
    }

    #[test]
    fn the_builders_own_id_and_time_win_over_the_defaults() {
        let other = EventId::from_uuid(uuid::Uuid::nil());
        let later = Timestamp::parse("2026-11-23T00:00:00Z").unwrap();
        let e = builder()
            .event_id(other)
            .occurred_at(later)
            .build(source(), id(), at())
            .unwrap();
        assert_eq!((e.event_id, e.occurred_at), (other, later));
    }

    #[test]
    fn an_event_round_trips_through_a_builder() {
        let e = builder()
            .field("k", json!([1]))
            .build(source(), id(), at())
            .unwrap();
        let again = EventBuilder::from(e.clone())
            .build(source(), EventId::from_uuid(uuid::Uuid::nil()), at())
            .unwrap();
        assert_eq!(e, again);
    }

    #[test]
    fn invalid_parts_are_refused_by_field() {
        let field = |r: Result<Event, Error>| r.unwrap_err().field().unwrap().to_owned();
        let mut b = builder();
        b.action = "Payment Void".into();
        assert_eq!(field(b.build(source(), id(), at())), "action");
        let b = EventBuilder::new(
            "a.b",
            Actor::new(ActorType::User, ""),
            Resource::new("r", "1"),
            Outcome::Failure,
        );
        assert_eq!(field(b.build(source(), id(), at())), "actor.id");
        let b = builder().field("n", 9007199254740993u64);
        assert_eq!(field(b.build(source(), id(), at())), "payload.n");
        let mut s = source();
        s.producer_id = None;
        assert_eq!(field(builder().build(s, id(), at())), "source.producer_id");
        let mut s = source();
        s.service = "line\nbreak".into();
        assert_eq!(field(builder().build(s, id(), at())), "source.service");
    }
}
