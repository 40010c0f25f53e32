//! The verifier: given a tenant's records in seq order, either "intact up to seq N with head H"
//! or the first bad seq and what is wrong there.
//!
//! [`ChainVerifier`] is streaming (records pushed one at a time, as a store returns them
//! ordered by seq); [`verify_records`] takes a slice and can look ahead, so it also tells a
//! reordering from a missing record.

use crate::chain::{link, ChainHead};
use crate::checkpoint::Checkpoint;
use crate::hash::Hash32;
use crate::jcs::Writer;
use crate::record::{commitment_with, Record};
use crate::retention::PurgeManifest;
use crate::stored::{plain_members, plain_string_map, PlainMap, StoredRow};
use std::fmt;

/// What is wrong at the first bad seq.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Damage {
    /// The record's content no longer matches its leaf hash.
    BodyModified,
    /// A visible payload member no longer matches its commitment (or has none).
    PayloadModified {
        /// The payload member.
        field: String,
    },
    /// A purge manifest's boundary chain hash is not this chain's at its last seq.
    PurgeManifestMismatch {
        /// The manifest's first seq.
        from_seq: i64,
        /// Its last seq.
        to_seq: i64,
    },
    /// A committed payload member's value is gone, and nothing says it was withheld.
    PayloadRemoved {
        /// The payload member.
        field: String,
    },
    /// The stored `leaf_hash` or `chain_hash` column was altered.
    HashAltered {
        /// `leaf_hash` or `chain_hash`.
        column: &'static str,
    },
    /// A record is missing: the chain jumps past this seq, or ends before a checkpoint's size.
    Missing,
    /// Records are out of order: this seq appears later than it should.
    Reordered,
    /// A second record claims this seq.
    Duplicate,
    /// A signed checkpoint disagrees with the chain at this seq.
    CheckpointMismatch,
    /// A signed checkpoint's Merkle root disagrees with the records' leaf hashes at this seq.
    RootMismatch,
    /// The checkpoint at this size carries no valid signature by a trusted key.
    CheckpointSignature,
    /// An erasure receipt here does not open with a trusted key, or names another tenant.
    ErasureReceiptInvalid,
    /// A data subject's key is gone but no erasure receipt covers this record: its sealed
    /// members were made unreadable without a record of it.
    KeyDestroyed,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Damage::BodyModified => f.write_str("body modified"),
            Damage::PayloadModified { field } => write!(f, "payload field {field:?} modified"),
            Damage::PurgeManifestMismatch { from_seq, to_seq } => write!(
                f,
                "the purge manifest of seq {from_seq}..{to_seq} does not match the chain"
            ),
            Damage::PayloadRemoved { field } => {
                write!(f, "payload field {field:?} removed (no record covers it)")
            }
            Damage::HashAltered { column } => write!(f, "hash column {column} altered"),
            Damage::Missing => f.write_str("record missing"),
            Damage::Reordered => f.write_str("records reordered"),
            Damage::Duplicate => f.write_str("duplicate record"),
            Damage::CheckpointMismatch => f.write_str("signed checkpoint does not match the chain"),
            Damage::RootMismatch => {
                f.write_str("signed checkpoint's Merkle root does not match the records")
            }
            Damage::CheckpointSignature => {
                f.write_str("checkpoint signature invalid or by an untrusted key")
            }
            Damage::ErasureReceiptInvalid => {
                f.write_str("erasure receipt invalid or signed by an untrusted key")
            }
            Damage::KeyDestroyed => f.write_str(
                "the data subject's key is gone and no erasure receipt covers this record",
            ),
        }
    }
}

/// The first damage found and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The first bad seq.
    pub seq: i64,
    /// What is wrong there.
    pub damage: Damage,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "seq {}: {}", self.seq, self.damage)
    }
}

/// The verdict on a chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every record verified, up to `head.seq`.
    Intact {
        /// The verified head.
        head: ChainHead,
    },
    /// The chain is damaged; verification stopped at the first bad seq.
    Tampered(Finding),
}

impl Verdict {
    /// True when the chain verified.
    pub fn is_intact(&self) -> bool {
        matches!(self, Verdict::Intact { .. })
    }
}

/// A streaming verifier for one tenant's chain.
#[derive(Debug)]
pub struct ChainVerifier {
    head: ChainHead,
    scratch: Writer,
    checkpoints: std::vec::IntoIter<Checkpoint>,
    next_checkpoint: Option<Checkpoint>,
    /// Signature-checked purge manifests: where missing payload values are accepted.
    purges: Vec<PurgeManifest>,
    /// The Merkle tree over the verified leaf hashes, for the checkpoints' roots.
    tree: crate::merkle::Frontier,
    /// Rows [`ChainVerifier::push_stored`] had to decode.
    decoded: u64,
}

impl ChainVerifier {
    /// Verifies a chain from seq 1, also checking the (already signature-checked) checkpoints.
    pub fn new(mut checkpoints: Vec<Checkpoint>) -> Self {
        checkpoints.sort_by_key(|c| c.size);
        let mut it = checkpoints.into_iter();
        let next = it.next();
        ChainVerifier {
            head: ChainHead::genesis(),
            scratch: Writer::with_capacity(2048),
            checkpoints: it,
            next_checkpoint: next,
            purges: Vec::new(),
            tree: crate::merkle::Frontier::default(),
            decoded: 0,
        }
    }

    /// Also accepts missing payload values in the ranges of these (signature-checked)
    /// purge manifests — and only there — checking each manifest's boundary chain hash
    /// against the chain.
    pub fn with_purges(mut self, mut purges: Vec<PurgeManifest>) -> Self {
        purges.sort_by_key(|m| m.from_seq);
        self.purges = purges;
        self
    }

    /// The last verified head.
    pub fn head(&self) -> ChainHead {
        self.head
    }

    /// Checks the next record (records must come in ascending seq order).
    pub fn push(&mut self, r: &Record) -> Result<(), Finding> {
        let expected = self.head.seq + 1;
        if r.seq < expected {
            return Err(Finding {
                seq: r.seq,
                damage: Damage::Duplicate,
            });
        }
        if r.seq > expected {
            return Err(Finding {
                seq: expected,
                damage: Damage::Missing,
            });
        }
        let bad = |damage| Err(Finding { seq: r.seq, damage });
        let leaf = r.compute_leaf_hash_with(&mut self.scratch);
        let stored_leaf = Hash32::from_hex(&r.leaf_hash);
        let chain = link(&self.head.hash, &leaf);
        if stored_leaf != Some(leaf) {
            // Tell a rewritten body (whose hash columns still agree with each other) from a
            // rewritten leaf column (whose chain hash still follows from the true leaf).
            return if r.chain_hash == chain.to_hex() {
                bad(Damage::HashAltered {
                    column: "leaf_hash",
                })
            } else {
                bad(Damage::BodyModified)
            };
        }
        if Hash32::from_hex(&r.chain_hash) != Some(chain) {
            return bad(Damage::HashAltered {
                column: "chain_hash",
            });
        }
        let purged = self.purges.iter().any(|m| m.covers(r.seq));
        if let Err(damage) = check_payload(r, purged, &mut self.scratch) {
            return bad(damage);
        }
        self.accept(r.seq, leaf, chain)
    }

    /// Checks the next record straight from its stored columns. A row whose JSON columns are
    /// as Vigil writes them is checked without decoding them (its commitments object hashed
    /// as it stands, each payload member's text against its commitment); any other row, and
    /// any row that does not check out that way, is decoded and checked by
    /// [`ChainVerifier::push`]: the verdict is the same either way, the fast path only
    /// accepts what `push` accepts.
    pub fn push_stored(&mut self, row: &StoredRow<'_>) -> Result<(), Finding> {
        match self.check_stored(row) {
            Some((leaf, chain)) => self.accept(row.seq, leaf, chain),
            None => {
                self.decoded += 1;
                self.push(&row.to_record())
            }
        }
    }

    /// How many rows [`ChainVerifier::push_stored`] could not check from their text as it
    /// stands and decoded (a store written by Vigil has none but rows with sealed members).
    pub fn decoded_rows(&self) -> u64 {
        self.decoded
    }

    /// The leaf and chain hash of a row that checks out from its text as it stands, or None.
    fn check_stored(&mut self, row: &StoredRow<'_>) -> Option<(Hash32, Hash32)> {
        if row.seq != self.head.seq + 1 || row.payload_sealed != "{}" {
            return None;
        }
        let commitments = plain_string_map(row.payload_commitments)?;
        let leaf = row
            .hashed_fields()
            .leaf_hash(&mut self.scratch, |w| w.raw(commitments.text));
        if Hash32::from_hex(row.leaf_hash) != Some(leaf) {
            return None;
        }
        let chain = link(&self.head.hash, &leaf);
        if Hash32::from_hex(row.chain_hash) != Some(chain) {
            return None;
        }
        let purged = self.purges.iter().any(|m| m.covers(row.seq));
        payload_text_matches(row.payload, row.payload_salts, commitments, purged)
            .then_some((leaf, chain))
    }

    /// Takes a record whose content, hashes and payload checked out as the new head: checks
    /// a purge manifest ending here and the checkpoints up to here.
    fn accept(&mut self, seq: i64, leaf: Hash32, chain: Hash32) -> Result<(), Finding> {
        let bad = |damage| Err(Finding { seq, damage });
        if let Some(m) = self.purges.iter().find(|m| m.to_seq == seq) {
            if m.boundary != chain {
                return bad(Damage::PurgeManifestMismatch {
                    from_seq: m.from_seq,
                    to_seq: m.to_seq,
                });
            }
        }
        self.head = ChainHead { seq, hash: chain };
        self.tree.push(leaf);
        while let Some(cp) = &self.next_checkpoint {
            if cp.size > self.head.seq {
                break;
            }
            if cp.size == self.head.seq && cp.chain_hash != self.head.hash {
                return bad(Damage::CheckpointMismatch);
            }
            if cp.size == self.head.seq && cp.root.is_some_and(|root| root != self.tree.root()) {
                return bad(Damage::RootMismatch);
            }
            self.next_checkpoint = self.checkpoints.next();
        }
        Ok(())
    }

    /// The verdict once every record was pushed: a checkpoint beyond the last record means
    /// records after it were removed.
    pub fn finish(self) -> Verdict {
        // A manifest for records the chain does not have vouches for nothing it can show.
        if let Some(m) = self.purges.iter().find(|m| m.to_seq > self.head.seq) {
            return Verdict::Tampered(Finding {
                seq: self.head.seq + 1,
                damage: Damage::PurgeManifestMismatch {
                    from_seq: m.from_seq,
                    to_seq: m.to_seq,
                },
            });
        }
        match self.next_checkpoint {
            Some(cp) if cp.size > self.head.seq => Verdict::Tampered(Finding {
                seq: self.head.seq + 1,
                damage: Damage::Missing,
            }),
            _ => Verdict::Intact { head: self.head },
        }
    }
}

/// Checks a record's payload against its commitments: every visible member's value, and
/// every committed member without its value is named as withheld or sealed (unless `purged`:
/// a signed purge manifest covers the record).
fn check_payload(r: &Record, purged: bool, scratch: &mut Writer) -> Result<(), Damage> {
    for (k, v) in &r.payload {
        let mut salt = [0u8; 16];
        let ok = match (
            r.payload_salts.get(k),
            r.payload_commitments
                .get(k)
                .and_then(|c| Hash32::from_hex(c)),
        ) {
            (Some(s), Some(c)) => {
                crate::hash::decode_hex(s.as_bytes(), &mut salt)
                    && commitment_with(&salt, v, scratch) == c
            }
            _ => false,
        };
        if !ok {
            return Err(Damage::PayloadModified { field: k.clone() });
        }
    }
    // A committed member without its value is accepted only where the record says it is
    // withheld or sealed (encrypted under its data subject's key), or a purge manifest
    // covers the record; anywhere else the value was taken.
    if !purged {
        if let Some(k) = r.payload_commitments.keys().find(|k| {
            !r.payload.contains_key(*k)
                && !r.withheld.contains_key(*k)
                && !r.sealed.contains_key(*k)
        }) {
            return Err(Damage::PayloadRemoved { field: k.clone() });
        }
    }
    Ok(())
}

/// The payload check of [`check_payload`] on the stored text: true only when the payload is
/// a JSON object whose members' texts each hash, with their salt, to their commitment, every
/// commitment has its member (unless `purged`), and the salts are as Vigil writes them.
/// A member's text that hashes to its commitment is the canonical form of the committed
/// value, so decoding and canonicalizing it would give the same bytes; false sends the row
/// to the general check, which names what is wrong, if anything.
fn payload_text_matches(
    payload: &str,
    salts: &str,
    commitments: PlainMap<'_>,
    purged: bool,
) -> bool {
    let Some(salts) = plain_string_map(salts) else {
        return false;
    };
    if commitments.count > 63 {
        return false;
    }
    let mut seen = 0u64;
    let whole = plain_members(payload, |k, v| {
        let (Some((i, c)), Some((_, s))) = (commitments.get(k), salts.get(k)) else {
            return false;
        };
        let (mut salt, mut want) = ([0u8; 16], [0u8; 32]);
        let fresh = seen & (1 << i) == 0;
        seen |= 1 << i;
        fresh
            && crate::hash::decode_hex(s.as_bytes(), &mut salt)
            && crate::hash::decode_hex(c.as_bytes(), &mut want)
            && Hash32::digest(&[&salt, v.as_bytes()]).0 == want
    });
    whole && (purged || seen == (1u64 << commitments.count) - 1)
}

/// Checks one record on its own, as a client holding only it can: its content against its
/// leaf hash and its payload against its commitments (a record whose payload a purge removed
/// reports the removal). The chain and the tree are checked elsewhere.
pub fn check_record(r: &Record) -> Result<(), Damage> {
    let mut scratch = Writer::default();
    if Hash32::from_hex(&r.leaf_hash) != Some(r.compute_leaf_hash_with(&mut scratch)) {
        return Err(Damage::BodyModified);
    }
    check_payload(r, false, &mut scratch)
}

/// Verifies a tenant's records from seq 1, in the order given.
pub fn verify_records(records: &[Record]) -> Verdict {
    verify_records_with(records, Vec::new())
}

/// Verifies records and checkpoints; looks ahead to tell reordered records from missing ones.
pub fn verify_records_with(records: &[Record], checkpoints: Vec<Checkpoint>) -> Verdict {
    let mut v = ChainVerifier::new(checkpoints);
    for (i, r) in records.iter().enumerate() {
        if let Err(mut f) = v.push(r) {
            if f.damage == Damage::Missing && records[i + 1..].iter().any(|x| x.seq == f.seq) {
                f.damage = Damage::Reordered;
            }
            return Verdict::Tampered(f);
        }
    }
    v.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::chain;
    use proptest::prelude::*;
    use serde_json::Value;

    fn finding(v: Verdict) -> Finding {
        match v {
            Verdict::Tampered(f) => f,
            Verdict::Intact { head } => {
                panic!("tampering went unnoticed (intact up to {})", head.seq)
            }
        }
    }

    /// A record's JSON columns as the store writes them.
    #[derive(Clone, Debug)]
    struct Columns {
        commitments: String,
        payload: String,
        salts: String,
        sealed: String,
        leaf: String,
        chain: String,
    }

    fn columns(r: &Record) -> Columns {
        fn json(v: &impl serde::Serialize) -> String {
            serde_json::to_string(v).unwrap()
        }
        Columns {
            commitments: json(&r.payload_commitments),
            payload: json(&r.payload),
            salts: json(&r.payload_salts),
            sealed: json(&r.sealed),
            leaf: r.leaf_hash.clone(),
            chain: r.chain_hash.clone(),
        }
    }

    fn row<'a>(r: &'a Record, c: &'a Columns) -> StoredRow<'a> {
        StoredRow {
            tenant_id: &r.tenant_id,
            seq: r.seq,
            event_id: &r.event_id,
            occurred_at: &r.occurred_at,
            received_at: &r.received_at,
            actor_type: &r.actor.kind,
            actor_id: &r.actor.id,
            action: &r.action,
            resource_type: &r.resource.kind,
            resource_id: &r.resource.id,
            outcome: &r.outcome,
            severity: &r.severity,
            source_service: &r.source.service,
            producer_id: r.source.producer_id.as_deref(),
            producer_seq: r.source.producer_seq,
            trace_id: r.trace_id.as_deref(),
            schema_version: r.schema_version,
            payload_commitments: &c.commitments,
            payload: &c.payload,
            payload_salts: &c.salts,
            leaf_hash: &c.leaf,
            chain_hash: &c.chain,
            subject_ref: r.subject_ref.as_deref(),
            payload_sealed: &c.sealed,
        }
    }

    /// The verdict `push_stored` reaches, how many rows it decoded, and the verdict `push`
    /// reaches on the same rows decoded.
    fn both_ways(rows: &[StoredRow<'_>], purges: Vec<PurgeManifest>) -> (Verdict, u64, Verdict) {
        let mut fast = ChainVerifier::new(Vec::new()).with_purges(purges.clone());
        let stored = rows
            .iter()
            .try_for_each(|r| fast.push_stored(r))
            .map_or_else(Verdict::Tampered, |()| Verdict::Intact {
                head: fast.head(),
            });
        let decoded = fast.decoded;
        let stored = match stored {
            Verdict::Intact { .. } => fast.finish(),
            v => v,
        };
        let records: Vec<Record> = rows.iter().map(StoredRow::to_record).collect();
        (stored, decoded, verify_with(&records, purges))
    }

    #[test]
    fn rows_as_the_store_writes_them_verify_from_their_text() {
        let rs = chain(20);
        let cs: Vec<Columns> = rs.iter().map(columns).collect();
        let rows: Vec<StoredRow<'_>> = rs.iter().zip(&cs).map(|(r, c)| row(r, c)).collect();
        let (stored, decoded, records) = both_ways(&rows, vec![]);
        assert!(stored.is_intact(), "{stored:?}");
        assert_eq!(stored, records);
        // serde_json writes these payloads (non-ASCII text included) exactly as RFC 8785
        // does, so no row needed decoding.
        assert_eq!(decoded, 0);
    }

    /// Text edits of a stored row, some harmless (another spelling of the same JSON), most
    /// not; the stored-text path must reach exactly the decoded path's verdict on each.
    /// A named edit of a row's columns.
    type Edit = (&'static str, fn(&mut Columns));

    fn edits() -> Vec<Edit> {
        vec![
            ("commitments spaced", |c| {
                c.commitments = c.commitments.replace("\":\"", "\": \"")
            }),
            ("commitments upper case", |c| {
                c.commitments = c.commitments.to_uppercase()
            }),
            ("commitment key escaped", |c| {
                c.commitments = c.commitments.replacen("\"n\"", "\"\\u006e\"", 1)
            }),
            ("payload spaced", |c| {
                c.payload = c.payload.replace(':', ": ")
            }),
            ("payload reordered", |c| {
                let m: serde_json::Map<String, Value> = serde_json::from_str(&c.payload).unwrap();
                let mut parts: Vec<String> = m
                    .iter()
                    .map(|(k, v)| format!("{}:{}", Value::from(k.clone()), v))
                    .collect();
                parts.reverse();
                c.payload = format!("{{{}}}", parts.join(","));
            }),
            ("payload member duplicated", |c| {
                c.payload = c.payload.replacen('{', "{\"n\":0,", 1)
            }),
            ("payload value changed", |c| {
                c.payload = c.payload.replacen("\"n\":", "\"n\":1", 1)
            }),
            ("payload member removed", |c| {
                let mut m: serde_json::Map<String, Value> =
                    serde_json::from_str(&c.payload).unwrap();
                m.remove("n");
                c.payload = serde_json::to_string(&m).unwrap();
            }),
            ("payload member added", |c| {
                c.payload = c.payload.replacen('{', "{\"zz\":1,", 1)
            }),
            ("payload not an object", |c| c.payload = "[]".into()),
            ("payload unparseable", |c| c.payload = "{".into()),
            ("payload trailing text", |c| c.payload.push_str(" x")),
            ("salt changed", |c| {
                if let Some(i) = c.salts.find(":\"").map(|i| i + 2) {
                    let digit = if &c.salts[i..=i] == "0" { "1" } else { "0" };
                    c.salts.replace_range(i..=i, digit);
                }
            }),
            ("salts spaced", |c| c.salts = c.salts.replace(':', ": ")),
            ("salts empty", |c| c.salts = "{}".into()),
            ("sealed member", |c| c.sealed = "{\"n\":\"x\"}".into()),
            ("sealed spaced", |c| c.sealed = "{ }".into()),
            ("leaf upper case", |c| c.leaf = c.leaf.to_uppercase()),
            ("leaf changed", |c| {
                c.leaf = c.leaf.replacen(|_| true, "f", 1)
            }),
            ("chain changed", |c| {
                c.chain = c.chain.chars().rev().collect()
            }),
            ("commitments swallow more", |c| {
                c.commitments = c.commitments.replacen('}', "},\"x\":\"y\"", 1)
            }),
        ]
    }

    #[test]
    fn every_edit_of_the_stored_text_gets_the_decoded_paths_verdict() {
        let rs = chain(6);
        let signer = crate::checkpoint::NoteSigner::new("k", &[5; 32]).unwrap();
        let (purged_rs, manifest) = purged(&signer);
        for (name, edit) in edits() {
            for at in [0, 2, 5] {
                for (rs, purges) in [(&rs, vec![]), (&purged_rs, vec![manifest.clone()])] {
                    let mut cs: Vec<Columns> = rs.iter().map(columns).collect();
                    edit(&mut cs[at.min(rs.len() - 1)]);
                    let rows: Vec<StoredRow<'_>> =
                        rs.iter().zip(&cs).map(|(r, c)| row(r, c)).collect();
                    let (stored, _, records) = both_ways(&rows, purges);
                    assert_eq!(stored, records, "{name} at {at}");
                }
            }
        }
    }

    proptest! {
        /// Any one character of any JSON or hash column replaced: the same verdict both ways.
        #[test]
        fn a_character_replaced_anywhere_gets_the_decoded_paths_verdict(
            at in 0usize..4,
            column in 0usize..6,
            position in any::<prop::sample::Index>(),
            with in prop::sample::select(vec!['"', '\\', ',', ':', '{', '}', ' ', '0', 'a', 'F', 'é', 'n']),
        ) {
            let rs = chain(4);
            let mut cs: Vec<Columns> = rs.iter().map(columns).collect();
            let c = &mut cs[at];
            let text = match column {
                0 => &mut c.commitments,
                1 => &mut c.payload,
                2 => &mut c.salts,
                3 => &mut c.sealed,
                4 => &mut c.leaf,
                _ => &mut c.chain,
            };
            let chars: Vec<char> = text.chars().collect();
            let i = position.index(chars.len());
            *text = chars[..i].iter().chain([&with]).chain(&chars[i + 1..]).collect();
            let rows: Vec<StoredRow<'_>> = rs.iter().zip(&cs).map(|(r, c)| row(r, c)).collect();
            let (stored, _, records) = both_ways(&rows, vec![]);
            prop_assert_eq!(stored, records);
        }
    }

    #[test]
    fn an_untouched_chain_is_intact_with_its_head() {
        let rs = chain(5);
        match verify_records(&rs) {
            Verdict::Intact { head } => {
                assert_eq!(head.seq, 5);
                assert_eq!(head.hash.to_hex(), rs[4].chain_hash);
            }
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn a_payload_member_withheld_from_the_reader_still_verifies() {
        let mut rs = chain(3);
        rs[1].withhold("n", "sensitive");
        assert!(!rs[1].payload.contains_key("n") && !rs[1].payload_salts.contains_key("n"));
        assert!(verify_records(&rs).is_intact());
    }

    #[test]
    fn a_payload_value_taken_away_without_a_word_is_tampering() {
        let mut rs = chain(3);
        rs[1].payload.remove("n");
        rs[1].payload_salts.remove("n");
        assert_eq!(
            finding(verify_records(&rs)),
            Finding {
                seq: 2,
                damage: Damage::PayloadRemoved { field: "n".into() }
            }
        );
    }

    /// Records 1..=3 of a 5-record chain purged (values and salts gone), with the manifest.
    fn purged(signer: &crate::checkpoint::NoteSigner) -> (Vec<Record>, PurgeManifest) {
        let mut rs = chain(5);
        for r in &mut rs[..3] {
            r.payload.clear();
            r.payload_salts.clear();
        }
        let m = PurgeManifest {
            tenant: crate::ids::TenantId::parse(&rs[0].tenant_id).unwrap(),
            from_seq: 1,
            to_seq: 3,
            boundary: Hash32::from_hex(&rs[2].chain_hash).unwrap(),
            cutoff: crate::time::Timestamp::parse("2026-10-31T00:00:00Z").unwrap(),
            purged_at: crate::time::Timestamp::parse("2026-11-30T03:00:00Z").unwrap(),
            reason: "retention: 30 days".into(),
        };
        let note = m.sign(signer).unwrap();
        (
            rs,
            PurgeManifest::open(&note, &[signer.verifier()]).unwrap(),
        )
    }

    fn verify_with(rs: &[Record], purges: Vec<PurgeManifest>) -> Verdict {
        let mut v = ChainVerifier::new(Vec::new()).with_purges(purges);
        for r in rs {
            if let Err(f) = v.push(r) {
                return Verdict::Tampered(f);
            }
        }
        v.finish()
    }

    #[test]
    fn a_purge_a_manifest_covers_verifies_and_nothing_else_does() {
        let signer = crate::checkpoint::NoteSigner::new("k", &[5; 32]).unwrap();
        let (rs, m) = purged(&signer);
        assert!(verify_with(&rs, vec![m.clone()]).is_intact());
        // Without the manifest, the purge reads as what it would be: values taken.
        assert_eq!(
            finding(verify_with(&rs, vec![])).damage,
            Damage::PayloadRemoved { field: "n".into() }
        );
        // One more record emptied by hand, outside the range: tampering, seq named.
        let mut more = rs.clone();
        more[3].payload.clear();
        more[3].payload_salts.clear();
        assert_eq!(
            finding(verify_with(&more, vec![m.clone()])),
            Finding {
                seq: 4,
                damage: Damage::PayloadRemoved { field: "n".into() }
            }
        );
        // A manifest whose range was stretched (re-signed with the right key, but its
        // boundary is not the chain's at the new end) does not match.
        let stretched = PurgeManifest {
            to_seq: 4,
            ..m.clone()
        };
        let mut rs4 = rs.clone();
        rs4[3].payload.clear();
        rs4[3].payload_salts.clear();
        assert_eq!(
            finding(verify_with(&rs4, vec![stretched])).damage,
            Damage::PurgeManifestMismatch {
                from_seq: 1,
                to_seq: 4
            }
        );
        // A manifest for records the chain does not hold.
        let beyond = PurgeManifest { to_seq: 9, ..m };
        assert!(!verify_with(&rs, vec![beyond]).is_intact());
    }

    #[test]
    fn a_changed_payload_value_names_the_field() {
        let mut rs = chain(3);
        rs[1].payload.insert("n".into(), 99.into());
        assert_eq!(
            finding(verify_records(&rs)),
            Finding {
                seq: 2,
                damage: Damage::PayloadModified { field: "n".into() }
            }
        );
    }

    #[test]
    fn a_rewritten_leaf_column_is_told_from_a_rewritten_body() {
        let mut rs = chain(3);
        rs[1].leaf_hash = "00".repeat(32);
        assert_eq!(
            finding(verify_records(&rs)).damage,
            Damage::HashAltered {
                column: "leaf_hash"
            }
        );
        let mut rs = chain(3);
        rs[1].action = "payment.refund".into();
        assert_eq!(finding(verify_records(&rs)).damage, Damage::BodyModified);
    }

    #[test]
    fn truncating_the_tail_is_caught_by_a_checkpoint() {
        let rs = chain(5);
        let cp = Checkpoint {
            root: None,
            tenant: "t".into(),
            size: 5,
            chain_hash: Hash32::from_hex(&rs[4].chain_hash).unwrap(),
            time: "2026-11-22T10:00:00.000000Z".into(),
        };
        assert!(verify_records_with(&rs, vec![cp.clone()]).is_intact());
        assert_eq!(
            finding(verify_records_with(&rs[..3], vec![cp])),
            Finding {
                seq: 4,
                damage: Damage::Missing
            }
        );
    }

    #[test]
    fn a_checkpoints_merkle_root_is_checked_against_the_leaf_hashes() {
        let rs = chain(6);
        let mut tree = crate::merkle::Frontier::default();
        for r in &rs[..5] {
            tree.push(Hash32::from_hex(&r.leaf_hash).unwrap());
        }
        let cp = |root| Checkpoint {
            root: Some(root),
            tenant: "t".into(),
            size: 5,
            chain_hash: Hash32::from_hex(&rs[4].chain_hash).unwrap(),
            time: "2026-11-22T10:00:00.000000Z".into(),
        };
        assert!(verify_records_with(&rs, vec![cp(tree.root())]).is_intact());
        assert_eq!(
            finding(verify_records_with(&rs, vec![cp(Hash32([1; 32]))])),
            Finding {
                seq: 5,
                damage: Damage::RootMismatch
            }
        );
    }

    #[test]
    fn a_rewritten_chain_is_caught_by_a_checkpoint() {
        let rs = chain(4);
        let cp = Checkpoint {
            root: None,
            tenant: "t".into(),
            size: 3,
            chain_hash: Hash32::ZERO,
            time: "2026-11-22T10:00:00.000000Z".into(),
        };
        assert_eq!(
            finding(verify_records_with(&rs, vec![cp])),
            Finding {
                seq: 3,
                damage: Damage::CheckpointMismatch
            }
        );
    }

    /// Mutates one byte of one field of a record; returns whether it hit a hash column.
    fn change_one_byte(r: &mut Record, field: usize, pos: usize) -> bool {
        fn flip(s: &mut String, pos: usize, hexonly: bool) {
            let mut b = s.clone().into_bytes();
            let i = pos % b.len();
            b[i] = if hexonly {
                if b[i] == b'0' {
                    b'1'
                } else {
                    b'0'
                }
            } else if b[i] == b'x' {
                b'y'
            } else {
                b'x'
            };
            *s = String::from_utf8_lossy(&b).into_owned();
        }
        match field % 9 {
            0 => flip(&mut r.action, pos, false),
            1 => flip(&mut r.actor.id, pos, false),
            2 => flip(&mut r.event_id, pos, true),
            3 => flip(&mut r.received_at, pos, true),
            4 => flip(&mut r.tenant_id, pos, false),
            5 => r
                .payload
                .insert("who".into(), "x".into())
                .map(|_| ())
                .unwrap_or(()),
            6 => flip(r.payload_commitments.get_mut("n").unwrap(), pos, true),
            7 => {
                flip(&mut r.leaf_hash, pos, true);
                return true;
            }
            _ => {
                flip(&mut r.chain_hash, pos, true);
                return true;
            }
        }
        false
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn any_single_byte_change_is_found_at_its_seq(n in 1u64..12, at in 0usize..12, field in 0usize..9, pos in 0usize..64) {
            let mut rs = chain(n);
            let at = at % rs.len();
            let hash_column = change_one_byte(&mut rs[at], field, pos);
            let f = finding(verify_records(&rs));
            prop_assert_eq!(f.seq, at as i64 + 1);
            prop_assert_eq!(matches!(f.damage, Damage::HashAltered { .. }), hash_column, "{:?}", f.damage);
        }

        #[test]
        fn deleting_any_record_but_the_last_is_a_missing_seq(n in 2u64..12, at in 0usize..11) {
            let mut rs = chain(n);
            let at = at % (rs.len() - 1);
            rs.remove(at);
            prop_assert_eq!(finding(verify_records(&rs)), Finding { seq: at as i64 + 1, damage: Damage::Missing });
        }

        #[test]
        fn inserting_a_forged_record_is_found_where_it_stands(n in 1u64..12, at in 0usize..12) {
            let mut rs = chain(n);
            let at = at % (rs.len() + 1);
            // The forger copies a real record and renumbers it into the gap it makes.
            let mut forged = rs[0].clone();
            forged.seq = at as i64 + 1;
            forged.action = "forged.entry".into();
            rs.insert(at, forged);
            for r in &mut rs[at + 1..] { r.seq += 1; }
            prop_assert_eq!(finding(verify_records(&rs)).seq, at as i64 + 1);
        }

        #[test]
        fn swapping_two_records_is_a_reordering_at_the_earlier_seq(n in 2u64..12, a in 0usize..12, b in 0usize..12) {
            let mut rs = chain(n);
            let (a, b) = (a % rs.len(), b % rs.len());
            prop_assume!(a != b);
            rs.swap(a, b);
            prop_assert_eq!(finding(verify_records(&rs)), Finding { seq: a.min(b) as i64 + 1, damage: Damage::Reordered });
        }

        #[test]
        fn duplicating_a_record_later_in_the_stream_is_a_duplicate_of_its_seq(n in 1u64..12, a in 0usize..12, b in 0usize..13) {
            let mut rs = chain(n);
            let a = a % rs.len();
            let b = a + 1 + b % (rs.len() - a);
            let dup = rs[a].clone();
            rs.insert(b, dup);
            prop_assert_eq!(finding(verify_records(&rs)), Finding { seq: a as i64 + 1, damage: Damage::Duplicate });
        }
    }
}
