//! Stored records: sealing an event into the chain, the hashed form and payload commitments.
//!
//! A [`Record`] is plain data, exactly as stored and served, because the verifier must be able
//! to hold (and report on) whatever a tampered store returns.

use crate::chain::link;
use crate::event::{Event, SCHEMA_VERSION};
use crate::hash::Hash32;
use crate::ids::TenantId;
use crate::jcs::Writer;
use crate::time::Timestamp;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The leaf domain separator of RFC 6962, so a Merkle tree can later be built over the leaves.
pub const LEAF_PREFIX: u8 = 0x00;

/// A kind and an id (used for `actor` and `resource`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Party {
    /// The kind.
    #[serde(rename = "type")]
    pub kind: String,
    /// The id.
    pub id: String,
}

/// The `source` of a stored record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordSource {
    /// The emitting service.
    pub service: String,
    /// The producer instance, when sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producer_id: Option<String>,
    /// The producer's sequence number, when sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producer_seq: Option<i64>,
}

/// A record as stored and served: the hashed form, the visible payload with its salts, and
/// both hashes (lowercase hex).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The tenant whose chain holds it.
    pub tenant_id: String,
    /// Its position in that chain, from 1, gapless.
    pub seq: i64,
    /// The idempotency key.
    pub event_id: String,
    /// When it happened (producer clock).
    pub occurred_at: String,
    /// When Vigil received it.
    pub received_at: String,
    /// Who acted.
    pub actor: Party,
    /// What they did.
    pub action: String,
    /// To what.
    pub resource: Party,
    /// `success`, `failure` or `denied`.
    pub outcome: String,
    /// The normalized severity.
    pub severity: String,
    /// Who reported it.
    pub source: RecordSource,
    /// The request's trace id, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// Always 1 in this version.
    pub schema_version: i64,
    /// `hex(SHA-256(salt ‖ JCS(value)))` per top-level payload member.
    pub payload_commitments: BTreeMap<String, String>,
    /// The payload members the reader may see (a purged or hidden member is absent).
    #[serde(default)]
    pub payload: Map<String, Value>,
    /// The 16-byte salt (hex) of each visible member.
    #[serde(default)]
    pub payload_salts: BTreeMap<String, String>,
    /// Members this view withholds (value and salt left out, commitment kept), with why.
    /// Not part of the hashed form; a verifier accepts a missing value only when it is
    /// named here.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub withheld: BTreeMap<String, String>,
    /// Personal members stored encrypted under their data subject's key (member → sealed
    /// envelope, `vigil_core::erasure`): present but unreadable without the key. Not part of
    /// the hashed form; the service opens them for readers (or withholds them as erased).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sealed: BTreeMap<String, String>,
    /// The keyed reference of the record's data subject, when it has one (never served).
    #[serde(skip)]
    pub subject_ref: Option<String>,
    /// `SHA-256(0x00 ‖ JCS(hashed form))`.
    pub leaf_hash: String,
    /// `SHA-256(previous chain hash ‖ leaf_hash)`.
    pub chain_hash: String,
}

/// The commitment to one payload member.
pub fn commitment(salt: &[u8], value: &Value) -> Hash32 {
    commitment_with(salt, value, &mut Writer::default())
}

/// [`commitment`], canonicalizing into `scratch` (cleared first) to spare an allocation.
pub fn commitment_with(salt: &[u8], value: &Value, scratch: &mut Writer) -> Hash32 {
    scratch.buf.clear();
    scratch.value(value);
    Hash32::digest(&[salt, &scratch.buf])
}

fn utf16_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

impl Record {
    /// Leaves member `k` of the payload out of this view (its value and salt), keeping its
    /// commitment, and says `why`: the record still verifies.
    pub fn withhold(&mut self, k: &str, why: &str) {
        if self.payload.remove(k).is_some() {
            self.payload_salts.remove(k);
            self.withheld.insert(k.to_owned(), why.to_owned());
        }
    }

    /// RFC 8785 bytes of the hashed form: the record without `payload`, `payload_salts` and the
    /// two hashes. Written directly in canonical key order (see [`Record::hashed_form`]).
    pub fn canonical_hashed_form(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(512 + 96 * self.payload_commitments.len());
        self.write_hashed_form(&mut w);
        w.buf
    }

    /// Appends the canonical hashed form to `w`.
    pub fn write_hashed_form(&self, w: &mut Writer) {
        self.hashed_fields().write(w, |w| self.write_commitments(w));
    }

    /// Writes `payload_commitments` canonically.
    fn write_commitments(&self, w: &mut Writer) {
        w.raw("{");
        let mut keys: Vec<&String> = self.payload_commitments.keys().collect();
        if keys.iter().any(|k| !k.is_ascii()) {
            keys.sort_by(|a, b| utf16_cmp(a, b));
        }
        for (i, k) in keys.into_iter().enumerate() {
            if i > 0 {
                w.raw(",");
            }
            w.string(k);
            w.raw(":");
            w.string(&self.payload_commitments[k]);
        }
        w.raw("}");
    }

    fn hashed_fields(&self) -> HashedFields<'_> {
        HashedFields {
            tenant_id: &self.tenant_id,
            seq: self.seq,
            event_id: &self.event_id,
            occurred_at: &self.occurred_at,
            received_at: &self.received_at,
            actor_kind: &self.actor.kind,
            actor_id: &self.actor.id,
            action: &self.action,
            resource_kind: &self.resource.kind,
            resource_id: &self.resource.id,
            outcome: &self.outcome,
            severity: &self.severity,
            service: &self.source.service,
            producer_id: self.source.producer_id.as_deref(),
            producer_seq: self.source.producer_seq,
            trace_id: self.trace_id.as_deref(),
            schema_version: self.schema_version,
        }
    }

    /// The hashed form as a JSON value (what a third party reconstructs from a served record).
    pub fn hashed_form(&self) -> Value {
        let mut v = serde_json::to_value(self).expect("a record serializes");
        let o = v.as_object_mut().expect("a record is an object");
        for k in ["payload", "payload_salts", "leaf_hash", "chain_hash"] {
            o.remove(k);
        }
        v
    }

    /// `SHA-256(0x00 ‖ JCS(hashed form))`, recomputed from the record's content.
    pub fn compute_leaf_hash(&self) -> Hash32 {
        self.compute_leaf_hash_with(&mut Writer::with_capacity(1024))
    }

    /// [`Record::compute_leaf_hash`], writing into `scratch` (cleared first).
    pub fn compute_leaf_hash_with(&self, scratch: &mut Writer) -> Hash32 {
        self.hashed_fields()
            .leaf_hash(scratch, |w| self.write_commitments(w))
    }
}

/// The hashed form's members other than `payload_commitments`, borrowed from wherever the
/// record is held (a [`Record`], or a stored row still in its columns' text).
pub(crate) struct HashedFields<'a> {
    pub(crate) tenant_id: &'a str,
    pub(crate) seq: i64,
    pub(crate) event_id: &'a str,
    pub(crate) occurred_at: &'a str,
    pub(crate) received_at: &'a str,
    pub(crate) actor_kind: &'a str,
    pub(crate) actor_id: &'a str,
    pub(crate) action: &'a str,
    pub(crate) resource_kind: &'a str,
    pub(crate) resource_id: &'a str,
    pub(crate) outcome: &'a str,
    pub(crate) severity: &'a str,
    pub(crate) service: &'a str,
    pub(crate) producer_id: Option<&'a str>,
    pub(crate) producer_seq: Option<i64>,
    pub(crate) trace_id: Option<&'a str>,
    pub(crate) schema_version: i64,
}

impl HashedFields<'_> {
    /// `SHA-256(0x00 ‖ JCS(hashed form))`, writing into `scratch` (cleared first).
    pub(crate) fn leaf_hash(
        &self,
        scratch: &mut Writer,
        commitments: impl FnOnce(&mut Writer),
    ) -> Hash32 {
        scratch.buf.clear();
        scratch.buf.push(LEAF_PREFIX);
        self.write(scratch, commitments);
        Hash32::digest(&[&scratch.buf])
    }

    /// Appends the canonical hashed form to `w`, `commitments` writing the
    /// `payload_commitments` object.
    pub(crate) fn write(&self, w: &mut Writer, commitments: impl FnOnce(&mut Writer)) {
        w.raw("{");
        w.key("action");
        w.string(self.action);
        w.raw(",");
        w.key("actor");
        w.party(self.actor_id, self.actor_kind);
        w.raw(",");
        w.key("event_id");
        w.string(self.event_id);
        w.raw(",");
        w.key("occurred_at");
        w.string(self.occurred_at);
        w.raw(",");
        w.key("outcome");
        w.string(self.outcome);
        w.raw(",");
        w.key("payload_commitments");
        commitments(w);
        w.raw(",");
        w.key("received_at");
        w.string(self.received_at);
        w.raw(",");
        w.key("resource");
        w.party(self.resource_id, self.resource_kind);
        w.raw(",");
        w.key("schema_version");
        w.int(self.schema_version);
        w.raw(",");
        w.key("seq");
        w.int(self.seq);
        w.raw(",");
        w.key("severity");
        w.string(self.severity);
        w.raw(",");
        w.key("source");
        w.source(self.service, self.producer_id, self.producer_seq);
        w.raw(",");
        w.key("tenant_id");
        w.string(self.tenant_id);
        if let Some(t) = self.trace_id {
            w.raw(",");
            w.key("trace_id");
            w.string(t);
        }
        w.raw("}");
    }
}

/// Seals validated events into a tenant's chain. One sealer seals a group of events, reusing
/// its buffers for each.
#[derive(Debug)]
pub struct Sealer<'a> {
    tenant: &'a TenantId,
    /// A member's canonical value, for its commitment.
    member: Writer,
    /// The record's canonical hashed form, for its leaf hash.
    leaf: Writer,
}

impl<'a> Sealer<'a> {
    /// A sealer for `tenant`'s chain.
    pub fn new(tenant: &'a TenantId) -> Self {
        Sealer {
            tenant,
            member: Writer::with_capacity(256),
            leaf: Writer::with_capacity(1024),
        }
    }

    /// Makes the record for `event` at `seq`, linked to `prev` (the chain hash of `seq - 1`).
    /// `rng` supplies the per-field salts.
    pub fn seal(
        &mut self,
        event: &Event,
        seq: i64,
        received_at: Timestamp,
        prev: &Hash32,
        rng: &mut impl RngCore,
    ) -> Record {
        let mut payload_commitments = BTreeMap::new();
        let mut payload_salts = BTreeMap::new();
        for (k, v) in &event.payload {
            let mut salt = [0u8; 16];
            rng.fill_bytes(&mut salt);
            payload_commitments.insert(
                k.clone(),
                commitment_with(&salt, v, &mut self.member).to_hex(),
            );
            payload_salts.insert(k.clone(), crate::hash::encode_hex(&salt));
        }
        let mut r = Record {
            tenant_id: self.tenant.as_str().to_owned(),
            seq,
            event_id: event.event_id.to_string(),
            occurred_at: event.occurred_at.to_rfc3339(),
            received_at: received_at.to_rfc3339(),
            actor: Party {
                kind: event.actor.kind.as_str().into(),
                id: event.actor.id.clone(),
            },
            action: event.action.as_str().into(),
            resource: Party {
                kind: event.resource.kind.clone(),
                id: event.resource.id.clone(),
            },
            outcome: event.outcome.as_str().into(),
            severity: event.severity.as_str().into(),
            source: RecordSource {
                service: event.source.service.clone(),
                producer_id: event.source.producer_id.clone(),
                producer_seq: event.source.producer_seq,
            },
            trace_id: event.trace_id.as_ref().map(|t| t.as_str().to_owned()),
            schema_version: SCHEMA_VERSION,
            payload_commitments,
            payload: event.payload.clone(),
            payload_salts,
            withheld: BTreeMap::new(),
            sealed: BTreeMap::new(),
            subject_ref: None,
            leaf_hash: String::new(),
            chain_hash: String::new(),
        };
        let leaf = r.compute_leaf_hash_with(&mut self.leaf);
        r.leaf_hash = leaf.to_hex();
        r.chain_hash = link(prev, &leaf).to_hex();
        r
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::chain::ChainHead;
    use crate::event::EventInput;
    use crate::ids::EventId;
    use proptest::prelude::*;
    use rand::SeedableRng;

    pub(crate) fn event(i: u64, payload: Value) -> Event {
        EventInput::new(serde_json::json!({
            "occurred_at": "2026-11-22T10:00:00Z",
            "actor": {"type": "user", "id": format!("u-{i}")},
            "action": "payment.void",
            "resource": {"type": "payment", "id": format!("p-{i}")},
            "outcome": "success",
            "source": {"service": "payments", "producer_id": "p1", "producer_seq": i},
            "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
            "payload": payload,
        }))
        .validate(|| EventId::from_uuid(uuid::Uuid::from_u128(i as u128 + 1)))
        .unwrap()
    }

    /// A chain of `n` records for tenant `t` with deterministic salts.
    pub(crate) fn chain(n: u64) -> Vec<Record> {
        let t = TenantId::parse("t").unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut head = ChainHead::genesis();
        let received = Timestamp::parse("2026-11-22T10:00:01Z").unwrap();
        (0..n)
            .map(|i| {
                let r = Sealer::new(&t).seal(
                    &event(i, serde_json::json!({"n": i, "who": "ünï\u{1F600}"})),
                    head.seq + 1,
                    received,
                    &head.hash,
                    &mut rng,
                );
                head = head.advance(&r);
                r
            })
            .collect()
    }

    #[test]
    fn the_hashed_form_leaves_out_payload_salts_and_hashes() {
        let r = &chain(1)[0];
        let h = r.hashed_form();
        for k in ["payload", "payload_salts", "leaf_hash", "chain_hash"] {
            assert!(h.get(k).is_none(), "{k}");
        }
        assert_eq!(h["seq"], 1);
        assert_eq!(h["source"]["producer_seq"], 0);
    }

    #[test]
    fn each_payload_commitment_is_the_salted_hash_of_the_canonical_value() {
        let r = &chain(1)[0];
        for (k, v) in &r.payload {
            let salt = hex::decode(&r.payload_salts[k]).unwrap();
            assert_eq!(salt.len(), 16);
            assert_eq!(commitment(&salt, v).to_hex(), r.payload_commitments[k]);
        }
    }

    #[test]
    fn the_first_chain_hash_links_to_32_zero_bytes() {
        let r = &chain(1)[0];
        let leaf = Hash32::from_hex(&r.leaf_hash).unwrap();
        assert_eq!(
            r.chain_hash,
            Hash32::digest(&[&[0u8; 32], &leaf.0]).to_hex()
        );
    }

    fn arb_text() -> impl Strategy<Value = String> {
        "[ -~]{0,12}|\\PC{0,8}|[\\x00-\\x1f\"\\\\\u{e000}\u{10000}]{0,6}"
    }

    proptest! {
        #[test]
        fn the_direct_writer_equals_generic_jcs_of_the_hashed_form(
            action in arb_text(), actor in arb_text(), keys in proptest::collection::btree_set(arb_text(), 0..5),
            seq in 1i64..(1 << 53), pseq in proptest::option::of(0i64..(1 << 53)), trace in proptest::option::of(arb_text()),
        ) {
            let mut r = chain(1).remove(0);
            r.action = action;
            r.actor.id = actor;
            r.seq = seq;
            r.source.producer_seq = pseq;
            r.trace_id = trace;
            r.payload_commitments = keys.into_iter().map(|k| (k, "ab".into())).collect();
            prop_assert_eq!(String::from_utf8(r.canonical_hashed_form()).unwrap(), serde_json_canonicalizer::to_string(&r.hashed_form()).unwrap());
        }
    }
}
