//! Redaction at ingest: a policy of payload paths and what to do with the values found there,
//! applied to an event's payload before it is hashed, so what is stored is what is verified.
//!
//! A policy is a mode and rules:
//!
//! ```json
//! {"mode": "enforce", "rules": [
//!   {"path": "payload.card.number", "action": "mask"},
//!   {"path": "payload.customer.email", "action": "hmac"},
//!   {"path": "payload.items[*].address", "action": "drop"}
//! ]}
//! ```
//!
//! - `off`: nothing happens. `log`: nothing changes, but what would be redacted is counted.
//!   `enforce`: each value found at a rule's path is replaced before hashing.
//! - `mask`: the value is never stored. In its place a marker
//!   `{"$redacted": "mask", "commitment": hex(SHA-256(salt ‖ JCS(value)))}` with a fresh
//!   random salt that is discarded: evidence that a value was there, which nobody can open or
//!   guess (a card number is too small a space for an unsalted hash), and which differs for
//!   equal values.
//! - `hmac`: the value is replaced by `"hmac-sha256:" + hex(HMAC-SHA256(key, JCS(value)))` under
//!   the tenant's key: equal values stay equal (joinable), values of other tenants do not
//!   match, and without the key a value cannot be recovered or confirmed.
//! - `drop`: the member is removed.
//!
//! Paths start at `payload`, name object members by `.`, and take every item of an array
//! with `[*]`. A path that finds nothing in an event does nothing to it.
//!
//! Idempotency compares submitted content, and a mask's commitment is salted afresh each
//! time: so [`Policy::apply`] first writes markers without commitments (the form an event's
//! content hash is taken of, the same for every resend) and returns the commitments, which
//! [`Redacted::seal`] then adds before the record is sealed.

use crate::error::Error;
use crate::event::MAX_PAYLOAD_DEPTH;
use crate::jcs;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde_json::{Map, Value};
use sha2::Sha256;
use std::fmt;

/// What a policy does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Nothing.
    Off,
    /// Count what would be redacted, store as is.
    Log,
    /// Redact before hashing.
    Enforce,
}

impl Mode {
    /// The name (`off`, `log`, `enforce`), also the metric label.
    pub fn as_str(&self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Log => "log",
            Mode::Enforce => "enforce",
        }
    }
}

/// What happens to a value a rule finds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Replaced by a marker with a commitment whose salt is discarded.
    Mask,
    /// Replaced by a keyed HMAC-SHA256 (equal values stay equal within a tenant).
    Hmac,
    /// Removed.
    Drop,
}

impl Action {
    /// Every action, for metric labels.
    pub const ALL: [Action; 3] = [Action::Mask, Action::Hmac, Action::Drop];

    /// The name (`mask`, `hmac`, `drop`), also the metric label.
    pub fn as_str(&self) -> &'static str {
        match self {
            Action::Mask => "mask",
            Action::Hmac => "hmac",
            Action::Drop => "drop",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Segment {
    Key(String),
    Each,
}

/// The longest path, in characters (the OpenAPI document states it as `maxLength`).
pub const MAX_PATH_CHARS: usize = 1024;

/// A path into the payload: `payload.a.b`, `payload.items[*].email`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct FieldPath {
    text: String,
    segments: Vec<Segment>,
}

impl FieldPath {
    /// Parses a path, refusing anything that is not `payload` followed by `.member` steps,
    /// each optionally followed by `[*]` (every item of an array).
    pub fn parse(text: &str) -> Result<FieldPath, Error> {
        if text.chars().count() > MAX_PATH_CHARS {
            return Err(Error::invalid(
                "path",
                format!("longer than {MAX_PATH_CHARS} characters"),
            ));
        }
        let bad = |why: &str| Error::invalid("path", format!("{text:?}: {why}"));
        let rest = text
            .strip_prefix("payload.")
            .ok_or_else(|| bad("must start with \"payload.\""))?;
        let mut segments = Vec::new();
        for step in rest.split('.') {
            let (name, mut tail) = match step.find('[') {
                Some(i) => (&step[..i], &step[i..]),
                None => (step, ""),
            };
            if name.is_empty() {
                return Err(bad(
                    "every step names a member (no empty step, no leading [*])",
                ));
            }
            if name.contains(']') || name.chars().any(char::is_control) {
                return Err(bad("a member name has no ']' or control characters"));
            }
            segments.push(Segment::Key(name.to_owned()));
            while !tail.is_empty() {
                tail = tail
                    .strip_prefix("[*]")
                    .ok_or_else(|| bad("only [*] (every item) may follow a member"))?;
                segments.push(Segment::Each);
            }
        }
        if segments.len() > MAX_PAYLOAD_DEPTH {
            return Err(bad("deeper than a payload may nest"));
        }
        Ok(FieldPath {
            text: text.to_owned(),
            segments,
        })
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    fn ends_in_each(&self) -> bool {
        self.segments.last() == Some(&Segment::Each)
    }
}

impl fmt::Debug for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FieldPath({})", self.text)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl serde::Serialize for FieldPath {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for FieldPath {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<FieldPath, D::Error> {
        let s = String::deserialize(d)?;
        FieldPath::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// One rule: a path and what to do there.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Where.
    pub path: FieldPath,
    /// What.
    pub action: Action,
}

/// A redaction policy: a mode and rules applied at ingest, and the members withheld from
/// readers who may not see sensitive fields.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "PolicyText")]
pub struct Policy {
    /// What the policy does at ingest.
    pub mode: Mode,
    /// Where, and how.
    pub rules: Vec<Rule>,
    /// Top-level payload members (`payload.customer`) withheld on read from callers without
    /// `audit_read_unredacted` (or who do not ask for them): value and salt left out,
    /// commitment kept, so every view verifies. Whole members, because a member is what a
    /// commitment binds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sensitive: Vec<FieldPath>,
    /// Personal data of a data subject: members stored encrypted under the subject's key, so
    /// that erasing the subject (destroying the key) leaves them unreadable while their
    /// commitments still bind the records (`crate::erasure`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub personal: Option<Personal>,
}

/// Which payload members are a data subject's personal data, and where the subject's id is.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Personal {
    /// The path of the subject's id in the payload (a string; an event without one has no
    /// subject and its members are stored as they are).
    pub subject: FieldPath,
    /// The top-level members (`payload.customer`) sealed under the subject's key.
    pub members: Vec<FieldPath>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyText {
    mode: Mode,
    #[serde(default)]
    rules: Vec<Rule>,
    #[serde(default)]
    sensitive: Vec<FieldPath>,
    #[serde(default)]
    personal: Option<Personal>,
}

/// Most rules a policy may have.
pub const MAX_RULES: usize = 100;

impl TryFrom<PolicyText> for Policy {
    type Error = Error;
    fn try_from(p: PolicyText) -> Result<Policy, Error> {
        Policy::new(p.mode, p.rules)?
            .with_sensitive(p.sensitive)?
            .with_personal(p.personal)
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            mode: Mode::Off,
            rules: Vec::new(),
            sensitive: Vec::new(),
            personal: None,
        }
    }
}

impl Policy {
    /// A policy, refusing one that cannot work: more than [`MAX_RULES`] rules, a path named
    /// twice, `drop` of `[*]` (items cannot be removed from the middle of an array: drop the
    /// array), or a path inside another rule's path (the outer rule already takes it).
    pub fn new(mode: Mode, rules: Vec<Rule>) -> Result<Policy, Error> {
        if rules.len() > MAX_RULES {
            return Err(Error::invalid(
                "rules",
                format!("at most {MAX_RULES} rules"),
            ));
        }
        for (i, r) in rules.iter().enumerate() {
            if r.action == Action::Drop && r.path.ends_in_each() {
                return Err(Error::invalid(
                    "rules",
                    format!(
                        "{}: drop removes members; to drop every item, drop the array",
                        r.path
                    ),
                ));
            }
            for other in &rules[..i] {
                let (a, b) = (&r.path.segments, &other.path.segments);
                if a == b {
                    return Err(Error::invalid("rules", format!("{} appears twice", r.path)));
                }
                if a.starts_with(b) || b.starts_with(a) {
                    return Err(Error::invalid(
                        "rules",
                        format!("{} and {} overlap: keep the outer one", other.path, r.path),
                    ));
                }
            }
        }
        Ok(Policy {
            mode,
            rules,
            sensitive: Vec::new(),
            personal: None,
        })
    }

    /// The policy with `sensitive` members withheld on read; each must name a top-level
    /// member (`payload.customer`), at most once.
    pub fn with_sensitive(mut self, sensitive: Vec<FieldPath>) -> Result<Policy, Error> {
        top_level_members("sensitive", &sensitive, "a view withholds whole members")?;
        self.sensitive = sensitive;
        Ok(self)
    }

    /// The policy with `personal` members sealed under their subject's key: at least one
    /// top-level member, each at most once, and a subject path without wildcards (one id).
    pub fn with_personal(mut self, personal: Option<Personal>) -> Result<Policy, Error> {
        if let Some(p) = &personal {
            if p.members.is_empty() {
                return Err(Error::invalid(
                    "personal.members",
                    "name at least one member",
                ));
            }
            top_level_members("personal.members", &p.members, "a key seals whole members")?;
            if p.subject.segments.contains(&Segment::Each) {
                return Err(Error::invalid(
                    "personal.subject",
                    format!("{}: the subject is one id: no [*]", p.subject),
                ));
            }
        }
        self.personal = personal;
        Ok(self)
    }

    /// The subject id `payload` names under the policy, when it has `personal` members and
    /// the payload a string id there (1 to 256 characters).
    pub fn subject_of<'a>(&self, payload: &'a Map<String, Value>) -> Option<&'a str> {
        if self.mode == Mode::Off {
            return None;
        }
        let p = self.personal.as_ref()?;
        let mut at = payload;
        let (last, inner) = p.subject.segments.split_last()?;
        for seg in inner {
            match seg {
                Segment::Key(k) => at = at.get(k)?.as_object()?,
                Segment::Each => return None,
            }
        }
        match last {
            Segment::Key(k) => at
                .get(k)?
                .as_str()
                .filter(|s| !s.is_empty() && s.chars().count() <= 256),
            Segment::Each => None,
        }
    }

    /// The top-level members sealed under a subject's key.
    pub fn personal_members(&self) -> Vec<String> {
        self.personal
            .iter()
            .flat_map(|p| p.members.iter())
            .filter_map(|p| match p.segments.first() {
                Some(Segment::Key(k)) => Some(k.clone()),
                _ => None,
            })
            .collect()
    }

    /// The top-level members withheld from a reader who may not see sensitive fields.
    pub fn sensitive_members(&self) -> impl Iterator<Item = &str> {
        self.sensitive
            .iter()
            .filter_map(|p| match p.segments.first() {
                Some(Segment::Key(k)) => Some(k.as_str()),
                _ => None,
            })
    }

    /// Parses a policy from JSON text.
    pub fn from_json(text: &str) -> Result<Policy, Error> {
        serde_json::from_str(text).map_err(|e| Error::invalid("policy", e.to_string()))
    }

    /// Applies the policy to `payload`: in `enforce` rewrites it (masks without their
    /// commitments: see [`Redacted::seal`]); in `log` only counts. Paths that find nothing do
    /// nothing.
    pub fn apply(&self, payload: &mut Map<String, Value>, key: &HmacKey) -> Redacted {
        let mut out = Redacted::default();
        if self.mode == Mode::Off {
            return out;
        }
        let enforce = self.mode == Mode::Enforce;
        for rule in &self.rules {
            let mut pointer = String::new();
            visit_map(
                payload,
                &rule.path.segments,
                &mut pointer,
                &mut |slot, pointer| {
                    out.counts.add(rule.action);
                    if enforce {
                        apply_one(rule.action, slot, pointer, key, &mut out);
                    }
                },
            );
        }
        out
    }
}

/// Where a found value sits: a member of an object or an item of an array.
enum Slot<'a> {
    Member(&'a mut Map<String, Value>, &'a str),
    Item(&'a mut Vec<Value>, usize),
}

fn visit_map(
    map: &mut Map<String, Value>,
    segments: &[Segment],
    pointer: &mut String,
    found: &mut dyn FnMut(Slot<'_>, &str),
) {
    let Some((Segment::Key(k), rest)) = segments.split_first() else {
        return;
    };
    if !map.contains_key(k) {
        return;
    }
    let len = pointer.len();
    pointer.push('/');
    pointer.push_str(&k.replace('~', "~0").replace('/', "~1"));
    if rest.is_empty() {
        found(Slot::Member(map, k), pointer);
    } else if let Some(v) = map.get_mut(k) {
        visit_value(v, rest, pointer, found);
    }
    pointer.truncate(len);
}

fn visit_value(
    v: &mut Value,
    segments: &[Segment],
    pointer: &mut String,
    found: &mut dyn FnMut(Slot<'_>, &str),
) {
    match (segments.first(), v) {
        (Some(Segment::Key(_)), Value::Object(m)) => visit_map(m, segments, pointer, found),
        (Some(Segment::Each), Value::Array(items)) => {
            let rest = &segments[1..];
            for i in 0..items.len() {
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&i.to_string());
                if rest.is_empty() {
                    found(Slot::Item(items, i), pointer);
                } else {
                    visit_value(&mut items[i], rest, pointer, found);
                }
                pointer.truncate(len);
            }
        }
        _ => {}
    }
}

fn apply_one(action: Action, slot: Slot<'_>, pointer: &str, key: &HmacKey, out: &mut Redacted) {
    let value = match &slot {
        Slot::Member(m, k) => m.get(*k).cloned().unwrap_or(Value::Null),
        Slot::Item(items, i) => items[*i].clone(),
    };
    let replacement = match action {
        Action::Drop => {
            if let Slot::Member(m, k) = slot {
                m.remove(k);
            }
            return;
        }
        Action::Hmac => Value::String(key.hmac(&value)),
        Action::Mask => {
            let mut salt = [0u8; 16];
            rand::thread_rng().fill_bytes(&mut salt);
            let commitment = crate::record::commitment(&salt, &value).to_hex();
            out.commitments.push((pointer.to_owned(), commitment));
            serde_json::json!({ MASK_KEY: "mask" })
        }
    };
    match slot {
        Slot::Member(m, k) => {
            m.insert(k.to_owned(), replacement);
        }
        Slot::Item(items, i) => items[i] = replacement,
    }
}

/// The member that marks a masked value.
pub const MASK_KEY: &str = "$redacted";

/// How many values a policy redacted (or, in `log`, would have), by action.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Masked.
    pub mask: u64,
    /// Replaced by their HMAC.
    pub hmac: u64,
    /// Dropped.
    pub drop: u64,
}

impl Counts {
    fn add(&mut self, a: Action) {
        match a {
            Action::Mask => self.mask += 1,
            Action::Hmac => self.hmac += 1,
            Action::Drop => self.drop += 1,
        }
    }

    /// The count for `a`.
    pub fn of(&self, a: Action) -> u64 {
        match a {
            Action::Mask => self.mask,
            Action::Hmac => self.hmac,
            Action::Drop => self.drop,
        }
    }

    /// Whether anything was found.
    pub fn any(&self) -> bool {
        self.mask + self.hmac + self.drop > 0
    }
}

/// What [`Policy::apply`] did, and the mask commitments still to be added.
#[derive(Clone, Debug, Default)]
pub struct Redacted {
    /// Values found, by action.
    pub counts: Counts,
    /// (JSON Pointer into the payload, commitment) of each mask.
    commitments: Vec<(String, String)>,
}

impl Redacted {
    /// Whether [`Redacted::seal`] has anything to add.
    pub fn has_commitments(&self) -> bool {
        !self.commitments.is_empty()
    }

    /// Adds each mask's commitment to its marker: done after the event's content hash is
    /// taken (a resend must compare equal) and before the record is sealed (so the
    /// commitment is hashed into the chain).
    pub fn seal(self, payload: &mut Map<String, Value>) {
        if self.commitments.is_empty() {
            return;
        }
        let mut root = Value::Object(std::mem::take(payload));
        for (pointer, commitment) in self.commitments {
            if let Some(Value::Object(marker)) = root.pointer_mut(&pointer) {
                marker.insert("commitment".into(), Value::String(commitment));
            }
        }
        if let Value::Object(m) = root {
            *payload = m;
        }
    }
}

/// Checks that `paths` name top-level members (`payload.x`), each once, at most [`MAX_RULES`].
fn top_level_members(field: &str, paths: &[FieldPath], why: &str) -> Result<(), Error> {
    if paths.len() > MAX_RULES {
        return Err(Error::invalid(
            field,
            format!("at most {MAX_RULES} members"),
        ));
    }
    for (i, p) in paths.iter().enumerate() {
        if p.segments.len() != 1 || p.segments[0] == Segment::Each {
            return Err(Error::invalid(
                field,
                format!(
                    "{p}: name a top-level member (payload.x): {why}, the unit a commitment binds"
                ),
            ));
        }
        if paths[..i].contains(p) {
            return Err(Error::invalid(field, format!("{p} appears twice")));
        }
    }
    Ok(())
}

/// A tenant's key for `hmac` redaction (32 bytes). `Debug` never shows it.
#[derive(Clone)]
pub struct HmacKey([u8; 32]);

impl HmacKey {
    /// A key from its bytes.
    pub fn new(bytes: [u8; 32]) -> HmacKey {
        HmacKey(bytes)
    }

    /// The tenant's key derived from a fleet secret: HMAC-SHA256(secret, "vigil redaction
    /// hmac key\0" ‖ tenant), so each tenant's values are joinable only within the tenant.
    pub fn derive(secret: &[u8], tenant: &crate::ids::TenantId) -> HmacKey {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
        mac.update(b"vigil redaction hmac key\0");
        mac.update(tenant.as_str().as_bytes());
        HmacKey(mac.finalize().into_bytes().into())
    }

    /// The keyed reference of a data subject's id: hex HMAC-SHA256 of `"vigil subject\0" ‖
    /// id`. Stored in place of the id, so the store can find a subject's records without
    /// holding who the subject is.
    pub fn subject_ref(&self, id: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(b"vigil subject\0");
        mac.update(id.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// `hmac-sha256:` and the hex HMAC of `JCS(value)`.
    pub fn hmac(&self, value: &Value) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(&jcs::to_vec(value));
        format!("hmac-sha256:{}", hex::encode(mac.finalize().into_bytes()))
    }
}

impl fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HmacKey(…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn payload(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn key() -> HmacKey {
        HmacKey::new([7; 32])
    }

    fn policy(mode: &str, rules: Value) -> Policy {
        Policy::from_json(&json!({"mode": mode, "rules": rules}).to_string()).unwrap()
    }

    fn order() -> Map<String, Value> {
        payload(json!({
            "total": 12.5,
            "card": {"number": "4111111111111111", "brand": "visa"},
            "customer": {"email": "ana@example.com", "name": "Ana"},
            "items": [
                {"sku": "a", "address": "1 Main St"},
                {"sku": "b", "address": "2 Side St"},
                {"sku": "c"}
            ],
            "tags": ["x", "y"]
        }))
    }

    #[test]
    fn paths_parse_or_say_what_is_wrong() {
        for ok in [
            "payload.a",
            "payload.card.number",
            "payload.items[*].email",
            "payload.matrix[*][*]",
            "payload.a b.c",
        ] {
            FieldPath::parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for (bad, says) in [
            ("card.number", "must start"),
            ("payload", "must start"),
            ("payload.", "names a member"),
            ("payload.a..b", "names a member"),
            ("payload.[*].a", "names a member"),
            ("payload.items[0]", "only [*]"),
            ("payload.items[*", "only [*]"),
            ("payload.a]b", "no ']'"),
            ("payload.a\nb", "control"),
        ] {
            let e = FieldPath::parse(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
            assert!(e.starts_with("path: "), "{e}");
        }
        let deep = format!("payload{}", ".a".repeat(MAX_PAYLOAD_DEPTH + 1));
        assert!(FieldPath::parse(&deep).is_err());
        // The length is counted in characters, as JSON Schema's maxLength counts it.
        let long = format!("payload.{}", "é".repeat(MAX_PATH_CHARS - 8));
        assert!(FieldPath::parse(&long).is_ok());
        let longer = format!("{long}é");
        assert!(FieldPath::parse(&longer)
            .unwrap_err()
            .to_string()
            .contains("longer than 1024"));
    }

    #[test]
    fn policies_that_cannot_work_are_refused() {
        for (text, says) in [
            (json!({"mode": "sometimes", "rules": []}), "unknown variant"),
            (
                json!({"mode": "enforce", "rules": [{"path": "payload.a", "action": "blur"}]}),
                "unknown variant",
            ),
            (
                json!({"mode": "enforce", "rules": [{"path": "a", "action": "mask"}]}),
                "must start",
            ),
            (
                json!({"mode": "enforce", "rules": [{"path": "payload.a", "action": "mask", "x": 1}]}),
                "unknown field",
            ),
            (json!({"mode": "enforce", "extra": true}), "unknown field"),
            (json!({"rules": []}), "missing field"),
            (
                json!({"mode": "enforce", "rules": [{"path": "payload.a", "action": "mask"}, {"path": "payload.a", "action": "hmac"}]}),
                "twice",
            ),
            (
                json!({"mode": "enforce", "rules": [{"path": "payload.a", "action": "mask"}, {"path": "payload.a.b", "action": "hmac"}]}),
                "overlap",
            ),
            (
                json!({"mode": "enforce", "rules": [{"path": "payload.items[*]", "action": "drop"}]}),
                "drop the array",
            ),
        ] {
            let e = Policy::from_json(&text.to_string())
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{text}: {e}");
        }
        let many: Vec<Value> = (0..=MAX_RULES)
            .map(|i| json!({"path": format!("payload.f{i}"), "action": "drop"}))
            .collect();
        assert!(Policy::from_json(&json!({"mode": "log", "rules": many}).to_string()).is_err());
        // A policy reads back as it was written.
        let p = policy(
            "log",
            json!([{"path": "payload.items[*].address", "action": "drop"}]),
        );
        assert_eq!(
            Policy::from_json(&serde_json::to_string(&p).unwrap()).unwrap(),
            p
        );
    }

    #[test]
    fn enforce_masks_hmacs_and_drops_and_leaves_the_rest() {
        let p = policy(
            "enforce",
            json!([
                {"path": "payload.card.number", "action": "mask"},
                {"path": "payload.customer.email", "action": "hmac"},
                {"path": "payload.items[*].address", "action": "drop"},
                {"path": "payload.nowhere.at.all", "action": "mask"}
            ]),
        );
        let mut pl = order();
        let r = p.apply(&mut pl, &key());
        assert_eq!(
            r.counts,
            Counts {
                mask: 1,
                hmac: 1,
                drop: 2
            }
        );
        // Before sealing: a marker without a commitment (what the content hash is taken of).
        assert_eq!(pl["card"]["number"], json!({"$redacted": "mask"}));
        r.seal(&mut pl);
        let text = Value::Object(pl.clone()).to_string();
        assert!(!text.contains("4111111111111111"), "{text}");
        assert!(!text.contains("ana@example.com"), "{text}");
        assert!(
            !text.contains("Main St") && !text.contains("Side St"),
            "{text}"
        );
        let commitment = pl["card"]["number"]["commitment"].as_str().unwrap();
        assert_eq!(commitment.len(), 64);
        assert_eq!(pl["card"]["brand"], "visa");
        assert_eq!(pl["customer"]["name"], "Ana");
        assert!(pl["customer"]["email"]
            .as_str()
            .unwrap()
            .starts_with("hmac-sha256:"));
        assert_eq!(
            pl["items"],
            json!([{"sku": "a"}, {"sku": "b"}, {"sku": "c"}])
        );
        assert_eq!(pl["total"], json!(12.5));
    }

    #[test]
    fn hmac_is_equal_for_equal_values_and_differs_across_keys_and_tenants() {
        let p = policy(
            "enforce",
            json!([{"path": "payload.customer.email", "action": "hmac"}]),
        );
        let (mut a, mut b) = (order(), order());
        p.apply(&mut a, &key());
        p.apply(&mut b, &key());
        assert_eq!(a["customer"]["email"], b["customer"]["email"]);
        let secret = b"fleet secret";
        let acme = HmacKey::derive(secret, &crate::ids::TenantId::parse("acme").unwrap());
        let globex = HmacKey::derive(secret, &crate::ids::TenantId::parse("globex").unwrap());
        let (mut c, mut d) = (order(), order());
        p.apply(&mut c, &acme);
        p.apply(&mut d, &globex);
        assert_ne!(c["customer"]["email"], d["customer"]["email"]);
        // Canonical: the same value written another way is the same HMAC.
        assert_eq!(
            key().hmac(&json!({"a": 1, "b": 2})),
            key().hmac(&json!({"b": 2, "a": 1.0}))
        );
        assert!(!format!("{acme:?}").contains('7'));
    }

    #[test]
    fn masks_of_equal_values_differ_and_leave_nothing_to_guess_from() {
        let p = policy(
            "enforce",
            json!([{"path": "payload.card.number", "action": "mask"}]),
        );
        let (mut a, mut b) = (order(), order());
        p.apply(&mut a, &key()).seal(&mut a);
        p.apply(&mut b, &key()).seal(&mut b);
        assert_ne!(
            a["card"]["number"]["commitment"],
            b["card"]["number"]["commitment"]
        );
        // An unsalted hash of the number is not what is stored.
        let bare = crate::record::commitment(&[], &json!("4111111111111111")).to_hex();
        assert_ne!(a["card"]["number"]["commitment"], json!(bare));
    }

    #[test]
    fn wildcards_reach_every_item_at_any_depth() {
        let p = policy(
            "enforce",
            json!([{"path": "payload.orders[*].lines[*].email", "action": "hmac"},
                   {"path": "payload.codes[*]", "action": "mask"}]),
        );
        let mut pl = payload(json!({
            "orders": [{"lines": [{"email": "a@x"}, {"email": "b@x"}, {"sku": 1}]}, {"lines": []}, 7],
            "codes": ["1234", "5678"]
        }));
        let r = p.apply(&mut pl, &key());
        assert_eq!(
            r.counts,
            Counts {
                mask: 2,
                hmac: 2,
                drop: 0
            }
        );
        r.seal(&mut pl);
        let lines = &pl["orders"][0]["lines"];
        assert!(lines[0]["email"]
            .as_str()
            .unwrap()
            .starts_with("hmac-sha256:"));
        assert_eq!(lines[2], json!({"sku": 1}));
        assert_eq!(pl["orders"][2], json!(7));
        assert_eq!(pl["codes"][1][MASK_KEY], "mask");
        assert!(pl["codes"][0]["commitment"].is_string());
    }

    #[test]
    fn log_counts_and_changes_nothing_and_off_does_nothing() {
        let rules = json!([{"path": "payload.card.number", "action": "mask"},
                           {"path": "payload.items[*].address", "action": "drop"}]);
        let mut pl = order();
        let r = policy("log", rules.clone()).apply(&mut pl, &key());
        assert_eq!(
            r.counts,
            Counts {
                mask: 1,
                hmac: 0,
                drop: 2
            }
        );
        assert_eq!(pl, order());
        let r = policy("off", rules).apply(&mut pl, &key());
        assert!(!r.counts.any());
        assert_eq!(pl, order());
    }

    #[test]
    fn sensitive_members_are_whole_top_level_members() {
        let p = Policy::from_json(
            &json!({"mode": "off", "sensitive": ["payload.customer", "payload.card"]}).to_string(),
        )
        .unwrap();
        assert_eq!(
            p.sensitive_members().collect::<Vec<_>>(),
            ["customer", "card"]
        );
        for (bad, says) in [
            (
                json!({"mode": "off", "sensitive": ["payload.customer.email"]}),
                "top-level",
            ),
            (
                json!({"mode": "off", "sensitive": ["payload.items[*]"]}),
                "top-level",
            ),
            (
                json!({"mode": "off", "sensitive": ["payload.a", "payload.a"]}),
                "twice",
            ),
            (
                json!({"mode": "off", "sensitive": ["customer"]}),
                "must start",
            ),
        ] {
            let e = Policy::from_json(&bad.to_string()).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
        // Read back as written.
        assert_eq!(
            Policy::from_json(&serde_json::to_string(&p).unwrap()).unwrap(),
            p
        );
    }

    #[test]
    fn member_names_with_pointer_characters_are_found_and_sealed() {
        let p = policy(
            "enforce",
            json!([{"path": "payload.a/b.c~d", "action": "mask"}]),
        );
        let mut pl = payload(json!({"a/b": {"c~d": "secret"}}));
        p.apply(&mut pl, &key()).seal(&mut pl);
        assert!(pl["a/b"]["c~d"]["commitment"].is_string(), "{pl:?}");
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        fn any_json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i32>().prop_map(Value::from),
                "[a-z@.]{0,12}".prop_map(Value::from),
            ];
            leaf.prop_recursive(4, 40, 5, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                    prop::collection::btree_map("[abc]", inner, 0..4)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        fn any_path() -> impl Strategy<Value = String> {
            prop::collection::vec(("[abc]", any::<bool>()), 1..4).prop_map(|steps| {
                let mut s = String::from("payload");
                for (k, each) in steps {
                    s.push('.');
                    s.push_str(&k);
                    if each {
                        s.push_str("[*]");
                    }
                }
                s
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Never a panic; in enforce, no value a mask or hmac rule found is left in the
            /// clear, and without rules that find anything the payload is unchanged.
            #[test]
            fn enforcing_any_policy_on_any_payload(p in any_json(), path in any_path(), action in prop::sample::select(Action::ALL.to_vec())) {
                let Value::Object(mut pl) = json!({"a": p.clone(), "b": p, "z": "keep"}) else { unreachable!() };
                let before = pl.clone();
                let Ok(policy) = Policy::new(Mode::Enforce, vec![Rule { path: FieldPath::parse(&path).unwrap(), action }]) else {
                    return Ok(());
                };
                let r = policy.apply(&mut pl, &key());
                if !r.counts.any() {
                    prop_assert_eq!(&pl, &before);
                }
                let found = r.counts.of(action);
                r.seal(&mut pl);
                // Counted again on the result: a mask or hmac leaves a (replaced) value at each
                // place it found one; a drop leaves none.
                let log = Policy::new(Mode::Log, policy.rules.clone()).unwrap();
                let after = log.apply(&mut pl.clone(), &key()).counts.of(action);
                let want = if action == Action::Drop { 0 } else { found };
                prop_assert_eq!(after, want);
                // A member no rule names is left alone.
                prop_assert_eq!(&pl["z"], &json!("keep"));
            }
        }
    }
}
