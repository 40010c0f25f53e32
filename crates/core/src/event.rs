//! The v1 event schema and its validation.
//!
//! Input arrives as JSON; [`EventInput::validate`] checks it field by field and yields an
//! [`Event`] whose every part is normalized (severity spelling, timestamp form, trace id case).
//! An error always names the field at fault by its JSON path.

use crate::hash::Hash32;
use crate::ids::{EventId, TraceId};
use crate::time::Timestamp;
use crate::{jcs, Error};
use serde_json::{Map, Value};

/// The only schema version this build accepts.
pub const SCHEMA_VERSION: i64 = 1;
/// Largest integer a payload may carry: beyond it an IEEE double (and so RFC 8785) is inexact.
pub const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;
/// How deep a payload may nest.
pub const MAX_PAYLOAD_DEPTH: usize = 32;
/// How many top-level members a payload may have (each gets its own commitment).
pub const MAX_PAYLOAD_FIELDS: usize = 256;
/// Longest text field (actor id, resource id, service, …) in characters.
pub const MAX_TEXT: usize = 256;
/// Largest single event, in bytes of JSON (over HTTP, Kafka or from a file alike).
pub const MAX_EVENT_BYTES: usize = 64 * 1024;

const TOP_LEVEL: &[&str] = &[
    "event_id",
    "occurred_at",
    "actor",
    "action",
    "resource",
    "outcome",
    "severity",
    "source",
    "trace_id",
    "schema_version",
    "payload",
];

/// How severe an event is, in increasing order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Routine.
    Info,
    /// Worth a look.
    Notice,
    /// Something may be wrong.
    Warning,
    /// Something is wrong.
    Error,
    /// Something is badly wrong.
    Critical,
    /// A security-relevant event (a denial, a tamper, a key change).
    Security,
}

impl Severity {
    /// All severities, lowest first.
    pub const ALL: [Severity; 6] = [
        Severity::Info,
        Severity::Notice,
        Severity::Warning,
        Severity::Error,
        Severity::Critical,
        Severity::Security,
    ];

    /// Normalizes a spelling: case is ignored and `warn`, `err`, `crit`, `informational`,
    /// `fatal` are accepted as aliases.
    pub fn parse(s: &str) -> Result<Severity, Error> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "info" | "informational" => Severity::Info,
            "notice" => Severity::Notice,
            "warn" | "warning" => Severity::Warning,
            "err" | "error" => Severity::Error,
            "crit" | "critical" | "fatal" => Severity::Critical,
            "security" => Severity::Security,
            _ => {
                return Err(Error::invalid(
                    "severity",
                    "must be one of info, notice, warning, error, critical, security",
                ))
            }
        })
    }

    /// The canonical spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Notice => "notice",
            Severity::Warning => "warning",
            Severity::Error => "error",
            Severity::Critical => "critical",
            Severity::Security => "security",
        }
    }

    /// 0 for info up to 5 for security; stored beside the name so `min_severity` is a range.
    pub fn rank(&self) -> i16 {
        *self as i16
    }
}

/// How the audited action ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// It happened.
    Success,
    /// It was attempted and failed.
    Failure,
    /// It was refused.
    Denied,
}

impl Outcome {
    /// Parses `success`, `failure` or `denied`.
    pub fn parse(s: &str) -> Result<Outcome, Error> {
        match s {
            "success" => Ok(Outcome::Success),
            "failure" => Ok(Outcome::Failure),
            "denied" => Ok(Outcome::Denied),
            _ => Err(Error::invalid(
                "outcome",
                "must be one of success, failure, denied",
            )),
        }
    }

    /// The canonical spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
        }
    }
}

/// Who acted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ActorType {
    /// A person.
    User,
    /// A service acting on its own behalf.
    Service,
    /// A caller identified by an API key.
    ApiKey,
    /// The platform itself.
    System,
}

impl ActorType {
    /// Parses `user`, `service`, `api_key` or `system`.
    pub fn parse(s: &str) -> Result<ActorType, Error> {
        match s {
            "user" => Ok(ActorType::User),
            "service" => Ok(ActorType::Service),
            "api_key" => Ok(ActorType::ApiKey),
            "system" => Ok(ActorType::System),
            _ => Err(Error::invalid(
                "actor.type",
                "must be one of user, service, api_key, system",
            )),
        }
    }

    /// The canonical spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            ActorType::User => "user",
            ActorType::Service => "service",
            ActorType::ApiKey => "api_key",
            ActorType::System => "system",
        }
    }
}

/// An action name: dot-separated segments of `[a-z0-9_-]`, e.g. `payment.void`, at most 128 bytes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Action(String);

impl Action {
    /// Parses an action name.
    pub fn parse(s: &str) -> Result<Action, Error> {
        let ok = !s.is_empty()
            && s.len() <= 128
            && s.split('.').all(|seg| {
                !seg.is_empty()
                    && seg.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
                    })
            });
        if ok {
            Ok(Action(s.to_owned()))
        } else {
            Err(Error::invalid(
                "action",
                "must be dot-separated lowercase segments of [a-z0-9_-], e.g. payment.void, at most 128 bytes",
            ))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Who acted: a kind and an id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    /// The kind of actor.
    pub kind: ActorType,
    /// Its id, 1–256 characters.
    pub id: String,
}

/// What was acted on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource {
    /// The kind of resource, e.g. `payment`.
    pub kind: String,
    /// Its id.
    pub id: String,
}

/// Which producer emitted the event, and its position in that producer's stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    /// The emitting service.
    pub service: String,
    /// One producer instance of that service; gaps in `producer_seq` per producer are counted.
    pub producer_id: Option<String>,
    /// The producer's own sequence number, strictly increasing per producer.
    pub producer_seq: Option<i64>,
}

/// A validated, normalized event, ready to be sealed into a record. Only
/// [`EventInput::validate`] makes one (it is `non_exhaustive`, so no other crate can).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Event {
    /// The idempotency key.
    pub event_id: EventId,
    /// When it happened, by the producer's clock.
    pub occurred_at: Timestamp,
    /// Who acted.
    pub actor: Actor,
    /// What they did.
    pub action: Action,
    /// To what.
    pub resource: Resource,
    /// How it ended.
    pub outcome: Outcome,
    /// How much it matters.
    pub severity: Severity,
    /// Who reported it.
    pub source: Source,
    /// The request's trace, when known.
    pub trace_id: Option<TraceId>,
    /// Top-level payload members, each committed to separately.
    pub payload: Map<String, Value>,
}

/// A JSON Schema (2020-12, as OpenAPI 3.1 takes it) of a v1 event as submitted: what
/// [`EventInput::validate`] accepts, stated for clients and contract tests. Where a rule cannot
/// be stated exactly it is stated narrower, never wider: numbers in the payload lie within
/// ±(2^53−1) (the rule: every number comes back the same from RFC 8785), timestamps
/// fall in the years 2000–9999 with at most microseconds, and nesting (at most 32 levels) and
/// the 64 KiB size limit are left to the text.
pub fn json_schema() -> Value {
    // No control characters (Unicode Cc); 1 to 256 characters.
    let text = serde_json::json!({
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_TEXT,
        "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"
    });
    let any_text = serde_json::json!({"type": "string"});
    let safe = MAX_SAFE_INTEGER;
    let scalar = serde_json::json!({"anyOf": [
        any_text,
        {"type": "boolean"},
        {"type": "null"},
        {"type": "integer", "minimum": -safe, "maximum": safe},
        {"type": "number", "minimum": -safe, "maximum": safe}
    ]});
    let value = serde_json::json!({"anyOf": [
        scalar,
        {"type": "array", "maxItems": 16, "items": scalar},
        {"type": "object", "maxProperties": 16, "propertyNames": any_text, "additionalProperties": scalar}
    ]});
    serde_json::json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["occurred_at", "actor", "action", "resource", "outcome", "source"],
        "properties": {
            "event_id": {"type": ["string", "null"], "format": "uuid", "description": "Generated when absent; resending an event with its id is a duplicate, never a second record"},
            "occurred_at": {
                "type": "string",
                "pattern": "^[2-9][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9])$",
                "description": "RFC 3339, between 2000 and 9999; kept in UTC to the microsecond (finer digits, as Go's RFC3339Nano writes, are dropped)"
            },
            "actor": {
                "type": "object", "additionalProperties": false, "required": ["type", "id"],
                "properties": {"type": {"enum": ["user", "service", "system"]}, "id": text}
            },
            "action": {"type": "string", "maxLength": 128, "pattern": "^[a-z0-9_-]+(\\.[a-z0-9_-]+)*$"},
            "resource": {
                "type": "object", "additionalProperties": false, "required": ["type", "id"],
                "properties": {"type": text, "id": text}
            },
            "outcome": {"enum": ["success", "failure", "denied"]},
            "severity": {"enum": ["info", "notice", "warning", "error", "critical", "security", null]},
            "source": {
                "type": "object", "additionalProperties": false, "required": ["service"],
                "properties": {
                    "service": text,
                    "producer_id": {"anyOf": [text, {"type": "null"}]},
                    "producer_seq": {"type": ["integer", "null"], "minimum": 0, "maximum": safe}
                },
                // A producer_seq needs a producer_id (null counts as absent for both).
                "anyOf": [
                    {"properties": {"producer_seq": {"type": "null"}}},
                    {"required": ["producer_id"], "properties": {"producer_id": {"type": "string"}}}
                ]
            },
            "trace_id": {"anyOf": [{"type": "string", "minLength": 32, "maxLength": 32, "pattern": "^[0-9a-fA-F]*[1-9a-fA-F][0-9a-fA-F]*$"}, {"type": "null"}], "description": "A W3C trace id: 32 hex digits (stored in lowercase), not all zero"},
            "schema_version": {"enum": [SCHEMA_VERSION, null]},
            "payload": {
                "type": ["object", "null"],
                "maxProperties": MAX_PAYLOAD_FIELDS,
                "propertyNames": any_text,
                "additionalProperties": value
            }
        }
    })
}

/// An event as submitted, before validation.
#[derive(Debug)]
pub struct EventInput(Value);

impl EventInput {
    /// Wraps a parsed JSON value.
    pub fn new(v: Value) -> Self {
        EventInput(v)
    }

    /// Parses an event from the JSON `text` it was sent as. Beyond parsing, every number in it
    /// must come back the same from the RFC 8785 form the event is hashed in
    /// ([`crate::number`]): a number that would be stored altered is refused, its field named.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| Error::invalid("(event)", format!("not JSON: {e}")))?;
        crate::number::check_numbers(&v, text)?;
        Ok(EventInput(v))
    }

    /// Like [`EventInput::validate`], but an event sent without an id gets one derived from
    /// its normalized content ([`EventId::derived`]), so that the same event submitted again —
    /// a redelivered Kafka message, a backfill run twice — is recognised as a duplicate.
    pub fn validate_deterministic(self) -> Result<Event, Error> {
        let mut derive = false;
        let mut e = self.validate(|| {
            derive = true;
            EventId::from_uuid(uuid::Uuid::nil())
        })?;
        if derive {
            e.event_id = EventId::derived(&e.content_hash());
        }
        Ok(e)
    }

    /// Checks every field and normalizes it; `new_id` supplies an event id when none was sent.
    pub fn validate(self, new_id: impl FnOnce() -> EventId) -> Result<Event, Error> {
        let Value::Object(mut o) = self.0 else {
            return Err(Error::invalid("(event)", "must be a JSON object"));
        };
        if let Some(k) = o.keys().find(|k| !TOP_LEVEL.contains(&k.as_str())) {
            return Err(Error::invalid(k.clone(), "is not a field of a v1 event"));
        }
        let event_id = match o.remove("event_id") {
            None | Some(Value::Null) => new_id(),
            Some(Value::String(s)) => EventId::parse(&s)?,
            Some(v) => return Err(wrong_type("event_id", "a UUID string", &v)),
        };
        let occurred_at = Timestamp::parse(&req_str(&mut o, "occurred_at")?)
            .map_err(|e| rename(e, "occurred_at"))?;

        let mut actor = req_obj(&mut o, "actor", &["type", "id"])?;
        let actor = Actor {
            kind: ActorType::parse(
                &req_str(&mut actor, "type").map_err(|e| rename(e, "actor.type"))?,
            )?,
            id: text(&mut actor, "actor.id", "id")?,
        };
        let action = Action::parse(&req_str(&mut o, "action")?)?;
        let mut res = req_obj(&mut o, "resource", &["type", "id"])?;
        let resource = Resource {
            kind: text(&mut res, "resource.type", "type")?,
            id: text(&mut res, "resource.id", "id")?,
        };
        let outcome = Outcome::parse(&req_str(&mut o, "outcome")?)?;
        let severity = match o.remove("severity") {
            None | Some(Value::Null) => Severity::Info,
            Some(Value::String(s)) => Severity::parse(&s)?,
            Some(v) => return Err(wrong_type("severity", "a string", &v)),
        };
        let mut src = req_obj(
            &mut o,
            "source",
            &["service", "producer_id", "producer_seq"],
        )?;
        let service = text(&mut src, "source.service", "service")?;
        let producer_id = match src.remove("producer_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(check_text("source.producer_id", s)?),
            Some(v) => return Err(wrong_type("source.producer_id", "a string", &v)),
        };
        let producer_seq = match src.remove("producer_seq") {
            None | Some(Value::Null) => None,
            // JSON has one kind of number: 450.0 is the integer 450.
            Some(Value::Number(n)) => match n.as_i64().or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() <= MAX_SAFE_INTEGER as f64)
                    .map(|f| f as i64)
            }) {
                Some(i) if (0..=MAX_SAFE_INTEGER).contains(&i) => Some(i),
                _ => {
                    return Err(Error::invalid(
                        "source.producer_seq",
                        "must be an integer between 0 and 2^53-1",
                    ))
                }
            },
            Some(v) => return Err(wrong_type("source.producer_seq", "an integer", &v)),
        };
        if producer_seq.is_some() && producer_id.is_none() {
            return Err(Error::invalid(
                "source.producer_id",
                "is required when source.producer_seq is given",
            ));
        }
        let trace_id = match o.remove("trace_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(TraceId::parse(&s)?),
            Some(v) => return Err(wrong_type("trace_id", "a string", &v)),
        };
        match o.remove("schema_version") {
            None | Some(Value::Null) => {}
            Some(Value::Number(n)) if n.as_f64() == Some(SCHEMA_VERSION as f64) => {}
            Some(_) => return Err(Error::invalid("schema_version", "must be 1")),
        }
        let payload = match o.remove("payload") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(p)) => p,
            Some(v) => return Err(wrong_type("payload", "an object", &v)),
        };
        check_payload(&payload)?;
        Ok(Event {
            event_id,
            occurred_at,
            actor,
            action,
            resource,
            outcome,
            severity,
            source: Source {
                service,
                producer_id,
                producer_seq,
            },
            trace_id,
            payload,
        })
    }
}

impl Event {
    /// The normalized event as JSON (the submitted content, as stored).
    pub fn to_json(&self) -> Value {
        let mut source = Map::new();
        source.insert("service".into(), self.source.service.clone().into());
        if let Some(p) = &self.source.producer_id {
            source.insert("producer_id".into(), p.clone().into());
        }
        if let Some(s) = self.source.producer_seq {
            source.insert("producer_seq".into(), s.into());
        }
        let mut o = serde_json::json!({
            "event_id": self.event_id.to_string(),
            "occurred_at": self.occurred_at.to_rfc3339(),
            "actor": {"type": self.actor.kind.as_str(), "id": self.actor.id},
            "action": self.action.as_str(),
            "resource": {"type": self.resource.kind, "id": self.resource.id},
            "outcome": self.outcome.as_str(),
            "severity": self.severity.as_str(),
            "source": source,
            "schema_version": SCHEMA_VERSION,
            "payload": self.payload,
        });
        if let Some(t) = &self.trace_id {
            o["trace_id"] = t.as_str().into();
        }
        o
    }

    /// SHA-256 of the canonical normalized content: what idempotency compares. Two
    /// submissions with the same id are the same event exactly when these are equal.
    pub fn content_hash(&self) -> Hash32 {
        self.content_hash_with(&mut jcs::Writer::with_capacity(1024))
    }

    /// [`Event::content_hash`], canonicalizing into `w` (cleared first) to spare an allocation.
    pub fn content_hash_with(&self, w: &mut jcs::Writer) -> Hash32 {
        // JCS of `to_json()`, written directly in canonical key order (a test pins the two).
        w.buf.clear();
        w.raw("{");
        w.key("action");
        w.string(self.action.as_str());
        w.raw(",");
        w.key("actor");
        w.party(&self.actor.id, self.actor.kind.as_str());
        w.raw(",");
        w.key("event_id");
        w.string(&self.event_id.to_string());
        w.raw(",");
        w.key("occurred_at");
        w.string(&self.occurred_at.to_rfc3339());
        w.raw(",");
        w.key("outcome");
        w.string(self.outcome.as_str());
        w.raw(",");
        w.key("payload");
        w.object(&self.payload);
        w.raw(",");
        w.key("resource");
        w.party(&self.resource.id, &self.resource.kind);
        w.raw(",");
        w.key("schema_version");
        w.int(SCHEMA_VERSION);
        w.raw(",");
        w.key("severity");
        w.string(self.severity.as_str());
        w.raw(",");
        w.key("source");
        w.source(
            &self.source.service,
            self.source.producer_id.as_deref(),
            self.source.producer_seq,
        );
        if let Some(t) = &self.trace_id {
            w.raw(",");
            w.key("trace_id");
            w.string(t.as_str());
        }
        w.raw("}");
        Hash32::digest(&[&w.buf])
    }
}

fn rename(e: Error, field: &str) -> Error {
    match e {
        Error::Invalid { reason, .. } => Error::invalid(field, reason),
        other => other,
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn wrong_type(field: &str, expected: &str, got: &Value) -> Error {
    Error::invalid(field, format!("must be {expected}, got {}", kind_of(got)))
}

fn req_str(o: &mut Map<String, Value>, field: &str) -> Result<String, Error> {
    match o.remove(field) {
        Some(Value::String(s)) => Ok(s),
        None | Some(Value::Null) => Err(Error::invalid(field, "is required")),
        Some(v) => Err(wrong_type(field, "a string", &v)),
    }
}

fn req_obj(
    o: &mut Map<String, Value>,
    field: &str,
    allowed: &[&str],
) -> Result<Map<String, Value>, Error> {
    match o.remove(field) {
        Some(Value::Object(m)) => {
            if let Some(k) = m.keys().find(|k| !allowed.contains(&k.as_str())) {
                return Err(Error::invalid(
                    format!("{field}.{k}"),
                    format!("is not a field of {field}"),
                ));
            }
            Ok(m)
        }
        None | Some(Value::Null) => Err(Error::invalid(field, "is required")),
        Some(v) => Err(wrong_type(field, "an object", &v)),
    }
}

fn text(o: &mut Map<String, Value>, path: &str, key: &str) -> Result<String, Error> {
    let s = req_str(o, key).map_err(|e| rename(e, path))?;
    check_text(path, s)
}

/// The payload's field count and every value (depth, integers JSON carries exactly).
pub(crate) fn check_payload(payload: &Map<String, Value>) -> Result<(), Error> {
    if payload.len() > MAX_PAYLOAD_FIELDS {
        return Err(Error::invalid(
            "payload",
            format!("has more than {MAX_PAYLOAD_FIELDS} top-level fields"),
        ));
    }
    let mut path = String::from("payload");
    payload.iter().try_for_each(|(k, v)| {
        path.truncate("payload".len());
        path.push('.');
        path.push_str(k);
        check_payload_value(&mut path, v, 1)
    })
}

/// A text field: 1 to [`MAX_TEXT`] characters, no control characters.
pub fn check_text(path: &str, s: String) -> Result<String, Error> {
    if s.is_empty() {
        Err(Error::invalid(path, "must not be empty"))
    } else if s.chars().count() > MAX_TEXT {
        Err(Error::invalid(
            path,
            format!("must be at most {MAX_TEXT} characters"),
        ))
    } else if s.chars().any(char::is_control) {
        Err(Error::invalid(path, "must not contain control characters"))
    } else {
        Ok(s)
    }
}

/// Checks `v`, at `path` (extended while descending, as `a.b[2]`, and restored after).
fn check_payload_value(path: &mut String, v: &Value, depth: usize) -> Result<(), Error> {
    if depth > MAX_PAYLOAD_DEPTH {
        return Err(Error::invalid(
            path.as_str(),
            format!("nests deeper than {MAX_PAYLOAD_DEPTH} levels"),
        ));
    }
    match v {
        Value::Number(n) => {
            let safe = match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => i.unsigned_abs() <= MAX_SAFE_INTEGER as u64,
                (None, Some(_)) => false,
                // A fraction or an exponent: the same range, so that one rule (the schema's
                // minimum and maximum) holds whatever way a number is written.
                (None, None) => n
                    .as_f64()
                    .is_some_and(|f| f.abs() <= MAX_SAFE_INTEGER as f64),
            };
            if safe {
                Ok(())
            } else {
                Err(Error::invalid(path.as_str(), "is a number beyond ±(2^53-1), which not every JSON reader carries exactly; send it as a string"))
            }
        }
        Value::Array(a) => a.iter().enumerate().try_for_each(|(i, x)| {
            let len = path.len();
            path.push_str(&format!("[{i}]"));
            check_payload_value(path, x, depth + 1)?;
            path.truncate(len);
            Ok(())
        }),
        Value::Object(m) => m.iter().try_for_each(|(k, x)| {
            let len = path.len();
            path.push('.');
            path.push_str(k);
            check_payload_value(path, x, depth + 1)?;
            path.truncate(len);
            Ok(())
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> Value {
        json!({
            "event_id": "01936a6e-7c3e-7d4a-9b1e-3f1f2b6c9a10",
            "occurred_at": "2026-11-22T10:00:00Z",
            "actor": {"type": "user", "id": "u-42"},
            "action": "payment.void",
            "resource": {"type": "payment", "id": "p-9"},
            "outcome": "success",
            "severity": "info",
            "source": {"service": "payments", "producer_id": "payments-7f3", "producer_seq": 1812},
            "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
            "schema_version": 1,
            "payload": {"amount": 12.5, "currency": "EUR"}
        })
    }

    fn gen() -> EventId {
        EventId::from_uuid(uuid::Uuid::nil())
    }

    fn with(path: &[&str], v: Value) -> Result<Event, Error> {
        let mut e = base();
        let mut cur = &mut e;
        for p in &path[..path.len() - 1] {
            cur = &mut cur[*p];
        }
        let last = path[path.len() - 1];
        if v == json!("__remove__") {
            cur.as_object_mut().unwrap().remove(last);
        } else {
            cur[last] = v;
        }
        EventInput::new(e).validate(gen)
    }

    fn field_of(r: Result<Event, Error>) -> String {
        r.expect_err("should be refused")
            .field()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn the_design_example_validates() {
        let e = EventInput::new(base()).validate(gen).unwrap();
        assert_eq!(e.severity, Severity::Info);
        assert_eq!(e.source.producer_seq, Some(1812));
    }

    #[test]
    fn severity_spellings_are_normalized() {
        for (s, want) in [
            ("WARN", "warning"),
            ("warn", "warning"),
            ("Warning", "warning"),
            ("CRIT", "critical"),
            ("Security", "security"),
        ] {
            assert_eq!(
                with(&["severity"], json!(s)).unwrap().severity.as_str(),
                want
            );
        }
        assert_eq!(field_of(with(&["severity"], json!("loud"))), "severity");
    }

    #[test]
    fn a_missing_or_mistyped_field_is_named_in_the_error() {
        assert_eq!(
            field_of(with(&["actor", "id"], json!("__remove__"))),
            "actor.id"
        );
        assert_eq!(
            field_of(with(&["actor", "type"], json!("robot"))),
            "actor.type"
        );
        assert_eq!(
            field_of(with(&["source", "producer_seq"], json!("7"))),
            "source.producer_seq"
        );
        assert_eq!(
            field_of(with(&["source", "producer_seq"], json!(-1))),
            "source.producer_seq"
        );
        assert_eq!(
            field_of(with(&["occurred_at"], json!("soon"))),
            "occurred_at"
        );
        assert_eq!(field_of(with(&["action"], json!("Payment Void"))), "action");
        assert_eq!(field_of(with(&["outcome"], json!(true))), "outcome");
        assert_eq!(field_of(with(&["payload"], json!([1]))), "payload");
        assert_eq!(
            field_of(with(&["schema_version"], json!(2))),
            "schema_version"
        );
        assert_eq!(
            field_of(with(&["resource", "owner"], json!("x"))),
            "resource.owner"
        );
        assert_eq!(field_of(with(&["colour"], json!("x"))), "colour");
        assert_eq!(field_of(with(&["trace_id"], json!("abc"))), "trace_id");
        assert_eq!(
            field_of(with(&["resource", "id"], json!(""))),
            "resource.id"
        );
    }

    #[test]
    fn a_missing_event_id_is_generated() {
        let e = with(&["event_id"], json!("__remove__")).unwrap();
        assert_eq!(e.event_id, gen());
    }

    #[test]
    fn a_deeply_nested_payload_is_refused() {
        let mut v = json!(1);
        for _ in 0..40 {
            v = json!([v]);
        }
        // The path to where it got too deep.
        assert_eq!(
            field_of(with(&["payload"], json!({"deep": v}))),
            format!("payload.deep{}", "[0]".repeat(MAX_PAYLOAD_DEPTH))
        );
    }

    #[test]
    fn a_number_out_of_range_is_refused_at_its_path() {
        let e = with(&["payload"], json!({"a": {"b": [1, 2, 1e300]}}));
        assert_eq!(field_of(e), "payload.a.b[2]");
        let e = with(&["payload"], json!({"a": [{"b": -9007199254740992.0}]}));
        assert_eq!(field_of(e), "payload.a[0].b");
        assert!(with(
            &["payload"],
            json!({"a": [0.1, -9007199254740991_i64, 1e15]})
        )
        .is_ok());
    }

    #[test]
    fn integers_beyond_two_to_the_53_are_refused_in_payloads() {
        assert_eq!(
            field_of(with(&["payload"], json!({"n": 9007199254740993u64}))),
            "payload.n"
        );
        assert!(with(&["payload"], json!({"n": 9007199254740991u64})).is_ok());
    }

    #[test]
    fn the_content_hash_is_the_hash_of_the_canonical_normalized_event() {
        let mut no_trace = base();
        no_trace.as_object_mut().unwrap().remove("trace_id");
        no_trace["source"] = json!({"service": "s"});
        no_trace["payload"] = json!({"z": 1, "é": [1.5, {"b": null, "a": "\u{1F600}"}], "a": "x"});
        for v in [base(), no_trace] {
            let e = EventInput::new(v).validate(gen).unwrap();
            let oracle = serde_json_canonicalizer::to_vec(&e.to_json()).unwrap();
            assert_eq!(e.content_hash(), Hash32::digest(&[&oracle]));
        }
    }

    #[test]
    fn an_event_without_an_id_gets_the_same_derived_id_every_time() {
        let mut v = base();
        v.as_object_mut().unwrap().remove("event_id");
        let a = EventInput::new(v.clone()).validate_deterministic().unwrap();
        let mut respelled = v.clone();
        respelled["severity"] = json!("INFO");
        let b = EventInput::new(respelled).validate_deterministic().unwrap();
        assert_eq!(a.event_id, b.event_id);
        assert_eq!(a.event_id.uuid().get_version_num(), 8);
        v["payload"]["amount"] = json!(13);
        let c = EventInput::new(v).validate_deterministic().unwrap();
        assert_ne!(a.event_id, c.event_id);
        // An id that was sent is kept.
        let d = EventInput::new(base()).validate_deterministic().unwrap();
        assert_eq!(
            d.event_id.to_string(),
            "01936a6e-7c3e-7d4a-9b1e-3f1f2b6c9a10"
        );
    }

    #[test]
    fn content_hash_ignores_spelling_but_not_content() {
        let a = with(&["severity"], json!("WARN")).unwrap();
        let b = with(&["severity"], json!("warning")).unwrap();
        let c = with(&["payload"], json!({"amount": 13})).unwrap();
        assert_eq!(a.content_hash(), b.content_hash());
        assert_ne!(a.content_hash(), c.content_hash());
    }

    #[test]
    fn an_integral_producer_seq_written_as_a_float_is_that_integer() {
        let e = with(
            &["source"],
            json!({"service": "s", "producer_id": "p", "producer_seq": 450.0}),
        )
        .unwrap();
        assert_eq!(e.source.producer_seq, Some(450));
        assert!(with(
            &["source"],
            json!({"service": "s", "producer_id": "p", "producer_seq": 450.5})
        )
        .is_err());
        assert!(with(&["schema_version"], json!(1.0)).is_ok());
    }

    #[test]
    fn text_fields_are_counted_in_characters() {
        assert!(with(&["actor", "id"], json!("é".repeat(256))).is_ok());
        let e = with(&["actor", "id"], json!("é".repeat(257))).unwrap_err();
        assert_eq!(e.field(), Some("actor.id"));
    }

    #[test]
    fn the_json_schema_names_every_field_and_requires_what_validation_requires() {
        let schema = json_schema();
        let props: Vec<&str> = schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut top = TOP_LEVEL.to_vec();
        top.sort_unstable();
        let mut props_sorted = props.clone();
        props_sorted.sort_unstable();
        assert_eq!(props_sorted, top);
        for field in schema["required"].as_array().unwrap() {
            let f = field.as_str().unwrap();
            let err = with(&[f], json!("__remove__")).unwrap_err();
            assert!(err.to_string().contains("required"), "{f}: {err}");
        }
    }
}
