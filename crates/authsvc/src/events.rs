//! The audit events the auth service records. Each carries its own `event_id` (UUIDv7), so a
//! redelivery from the outbox is recognised by the audit service as the same event.

use serde_json::{json, Value};

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

/// One audit event, in the audit service's input format.
#[allow(clippy::too_many_arguments)]
pub fn event(
    actor: Actor<'_>,
    action: &str,
    resource: (&str, &str),
    outcome: &str,
    severity: &str,
    payload: Value,
) -> Value {
    let (kind, id) = match actor {
        Actor::User(u) => ("user", u),
        Actor::Service(c) => ("service", c),
        Actor::System => ("system", "vigil-auth"),
    };
    json!({
        "event_id": uuid::Uuid::now_v7().to_string(),
        "occurred_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "actor": {"type": kind, "id": id},
        "action": action,
        "resource": {"type": resource.0, "id": resource.1},
        "outcome": outcome,
        "severity": severity,
        "source": {"service": "vigil-auth"},
        "payload": payload,
    })
}
