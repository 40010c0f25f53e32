//! Erasure of a data subject by crypto-shredding (DESIGN.md, "Removal that still verifies").
//!
//! A tenant's policy names a subject's personal members (`redaction::Personal`). At ingest,
//! each such member of a record whose payload names a subject is committed to as any member
//! is (the commitment binds the plaintext), then its value and salt are sealed together with
//! XChaCha20-Poly1305 under the subject's own random data key and moved to
//! [`Record::sealed`]. The data key is kept wrapped under the service's key-encryption key
//! ([`Kek`]). Erasing the subject destroys the wrapped key: the sealed members can no longer
//! be opened by anyone, while their commitments keep every record verifying. The erasure is
//! stated by a signed [`ErasureReceipt`] in the tenant's chain.
//!
//! A sealed envelope is `v1.` and base64url (no padding) of a 24-byte nonce and the
//! ciphertext of `JCS({"s": salt hex, "v": value})`, with the tenant, event id and member as
//! associated data: an envelope moved to another record or member does not open.

use crate::checkpoint::{NoteSigner, NoteVerifier};
use crate::error::Error;
use crate::ids::TenantId;
use crate::record::Record;
use crate::time::Timestamp;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use serde_json::Value;
use std::fmt;

/// Why a member is withheld once its subject was erased.
pub const ERASED: &str = "erased";

/// The action of the record that carries an erasure receipt (its resource is
/// `subject`/subject_ref).
pub const ERASE_ACTION: &str = "audit.subject.erased";

/// A data subject's key (32 bytes). `Debug` never shows it.
#[derive(Clone)]
pub struct DataKey([u8; 32]);

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(…)")
    }
}

/// The key-encryption key that wraps subjects' data keys (32 bytes). `Debug` never shows it.
#[derive(Clone)]
pub struct Kek([u8; 32]);

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Kek(…)")
    }
}

pub(crate) fn seal(key: &[u8; 32], aad: &[u8], plain: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let cipher = XChaCha20Poly1305::new(key.into());
    let ct = cipher
        .encrypt(XNonce::from_slice(&nonce), Payload { msg: plain, aad })
        .expect("XChaCha20-Poly1305 seals any length we give it");
    let mut out = Vec::with_capacity(24 + ct.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    out
}

pub(crate) fn open(key: &[u8; 32], aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, Error> {
    if sealed.len() < 24 + 16 {
        return Err(Error::Sealed("too short"));
    }
    let (nonce, ct) = sealed.split_at(24);
    XChaCha20Poly1305::new(key.into())
        .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
        .map_err(|_| Error::Sealed("wrong key or altered"))
}

fn key_aad(tenant: &TenantId, subject_ref: &str) -> Vec<u8> {
    [
        b"vigil subject key v1\0".as_slice(),
        tenant.as_str().as_bytes(),
        b"\0",
        subject_ref.as_bytes(),
    ]
    .concat()
}

fn member_aad(tenant: &str, event_id: &str, member: &str) -> Vec<u8> {
    [
        b"vigil sealed v1\0".as_slice(),
        tenant.as_bytes(),
        b"\0",
        event_id.as_bytes(),
        b"\0",
        member.as_bytes(),
    ]
    .concat()
}

impl Kek {
    /// A key-encryption key from its bytes.
    pub fn new(bytes: [u8; 32]) -> Kek {
        Kek(bytes)
    }

    /// `key` wrapped for `tenant`'s subject `subject_ref` (72 bytes).
    pub fn wrap(&self, tenant: &TenantId, subject_ref: &str, key: &DataKey) -> Vec<u8> {
        seal(&self.0, &key_aad(tenant, subject_ref), &key.0)
    }

    /// The data key `wrapped` holds, when it was wrapped by this key for this subject.
    pub fn unwrap(
        &self,
        tenant: &TenantId,
        subject_ref: &str,
        wrapped: &[u8],
    ) -> Result<DataKey, Error> {
        let plain = open(&self.0, &key_aad(tenant, subject_ref), wrapped)?;
        let bytes: [u8; 32] = plain
            .try_into()
            .map_err(|_| Error::Sealed("not a 32-byte key"))?;
        Ok(DataKey(bytes))
    }
}

impl DataKey {
    /// A fresh random key.
    pub fn generate() -> DataKey {
        let mut k = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut k);
        DataKey(k)
    }

    /// Moves `members` of a sealed record's payload (value and salt) into
    /// [`Record::sealed`], encrypted under this key, and marks the record as the subject's.
    /// The commitments and hashes are unchanged: they bind the plaintext.
    pub fn seal_record(&self, record: &mut Record, subject_ref: &str, members: &[String]) {
        for k in members {
            let (Some(v), Some(s)) = (record.payload.remove(k), record.payload_salts.remove(k))
            else {
                continue;
            };
            let plain = crate::jcs::to_vec(&serde_json::json!({"s": s, "v": v}));
            let aad = member_aad(&record.tenant_id, &record.event_id, k);
            let env = format!("v1.{}", URL_SAFE_NO_PAD.encode(seal(&self.0, &aad, &plain)));
            record.sealed.insert(k.clone(), env);
        }
        record.subject_ref = Some(subject_ref.to_owned());
    }

    /// Opens every sealed member of `record` back into its payload and salts. A member that
    /// does not open (altered, or sealed under another key) stays sealed and is named.
    pub fn open_record(&self, record: &mut Record) -> Vec<String> {
        let mut failed = Vec::new();
        let sealed = std::mem::take(&mut record.sealed);
        for (k, env) in sealed {
            match self.open_member(&record.tenant_id, &record.event_id, &k, &env) {
                Ok((v, s)) => {
                    record.payload.insert(k.clone(), v);
                    record.payload_salts.insert(k, s);
                }
                Err(_) => {
                    failed.push(k.clone());
                    record.sealed.insert(k, env);
                }
            }
        }
        failed
    }

    fn open_member(
        &self,
        tenant: &str,
        event_id: &str,
        member: &str,
        env: &str,
    ) -> Result<(Value, String), Error> {
        let raw = env
            .strip_prefix("v1.")
            .and_then(|b| URL_SAFE_NO_PAD.decode(b).ok())
            .ok_or(Error::Sealed("not a v1 envelope"))?;
        let plain = open(&self.0, &member_aad(tenant, event_id, member), &raw)?;
        let mut doc: serde_json::Map<String, Value> =
            serde_json::from_slice(&plain).map_err(|_| Error::Sealed("not a sealed member"))?;
        match (doc.remove("v"), doc.remove("s")) {
            (Some(v), Some(Value::String(s))) => Ok((v, s)),
            _ => Err(Error::Sealed("not a sealed member")),
        }
    }
}

/// Withholds every sealed member of a record whose subject's key is gone, as erased: the
/// view then states why the values are missing, and still verifies.
pub fn mark_erased(record: &mut Record) {
    for k in std::mem::take(&mut record.sealed).into_keys() {
        record.withheld.insert(k, ERASED.to_owned());
    }
}

const ORIGIN: &str = "vigil.dev/erasure/v1";

/// The signed statement that a data subject's key was destroyed: which records held its
/// sealed members, and when. A signed note (the checkpoint key's) whose text is:
///
/// ```text
/// vigil.dev/erasure/v1
/// acme
/// <subject ref>
/// <records> <seq ranges, e.g. 3-5,9>
/// <erased at, RFC 3339>
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErasureReceipt {
    /// The tenant.
    pub tenant: TenantId,
    /// The subject's keyed reference (never the id).
    pub subject_ref: String,
    /// The seqs of the records whose sealed members were erased, in order.
    pub seqs: Vec<i64>,
    /// When the key was destroyed.
    pub erased_at: Timestamp,
}

impl ErasureReceipt {
    /// The note text.
    pub fn text(&self) -> String {
        format!(
            "{ORIGIN}\n{}\n{}\n{} {}\n{}\n",
            self.tenant,
            self.subject_ref,
            self.seqs.len(),
            ranges(&self.seqs),
            self.erased_at.to_rfc3339()
        )
    }

    /// The signed note of this receipt.
    pub fn sign(&self, signer: &NoteSigner) -> Result<String, Error> {
        if self.subject_ref.is_empty() || !self.subject_ref.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::invalid("receipt.subject_ref", "must be hex"));
        }
        if self.seqs.windows(2).any(|w| w[0] >= w[1]) || self.seqs.first().is_some_and(|s| *s < 1) {
            return Err(Error::invalid("receipt.seqs", "must be ascending seqs"));
        }
        Ok(signer.sign_text(&self.text()))
    }

    /// The receipt a signed note states, when one of `keys` signed it.
    pub fn open(note: &str, keys: &[NoteVerifier]) -> Result<ErasureReceipt, Error> {
        let text = keys
            .iter()
            .find_map(|k| k.open_text(note).ok())
            .ok_or_else(|| {
                Error::Note("the erasure receipt is not signed by a trusted key".into())
            })?;
        let bad = |why: &str| Error::Note(format!("erasure receipt: {why}"));
        let lines: Vec<&str> = text
            .strip_suffix('\n')
            .unwrap_or(text)
            .split('\n')
            .collect();
        let [origin, tenant, subject_ref, records, erased_at] = lines[..] else {
            return Err(bad("expected 5 lines"));
        };
        if origin != ORIGIN {
            return Err(bad("not an erasure receipt"));
        }
        let (n, list) = records.split_once(' ').unwrap_or((records, ""));
        let seqs = parse_ranges(list).ok_or_else(|| bad("bad seq ranges"))?;
        if n.parse::<usize>().ok() != Some(seqs.len()) {
            return Err(bad("the count does not match the ranges"));
        }
        Ok(ErasureReceipt {
            tenant: TenantId::parse(tenant).map_err(|_| bad("bad tenant"))?,
            subject_ref: subject_ref.to_owned(),
            seqs,
            erased_at: Timestamp::parse(erased_at).map_err(|_| bad("bad time"))?,
        })
    }
}

/// `3-5,9` for [3, 4, 5, 9] (ascending seqs).
fn ranges(seqs: &[i64]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < seqs.len() {
        let mut j = i;
        while j + 1 < seqs.len() && seqs[j + 1] == seqs[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            seqs[i].to_string()
        } else {
            format!("{}-{}", seqs[i], seqs[j])
        });
        i = j + 1;
    }
    out.join(",")
}

fn parse_ranges(text: &str) -> Option<Vec<i64>> {
    let mut out: Vec<i64> = Vec::new();
    if text.is_empty() {
        return Some(out);
    }
    for part in text.split(',') {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
            None => {
                let a = part.parse().ok()?;
                (a, a)
            }
        };
        if a < 1 || b < a || out.last().is_some_and(|l| *l >= a) || b - a > 10_000_000 {
            return None;
        }
        out.extend(a..=b);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::EventBuilder;
    use crate::event::{Actor, ActorType, Outcome, Resource, Source};
    use crate::hash::Hash32;
    use crate::ids::EventId;
    use crate::record::Sealer;
    use crate::verify::{ChainVerifier, Verdict};

    fn record() -> Record {
        let t = TenantId::parse("acme").unwrap();
        let e = EventBuilder::new(
            "customer.update",
            Actor::new(ActorType::User, "u-1"),
            Resource::new("customer", "c-1"),
            Outcome::Success,
        )
        .field(
            "customer",
            serde_json::json!({"id": "c-1", "email": "a@example.com"}),
        )
        .field("note", "kept")
        .build(
            Source::new("crm"),
            EventId::from_uuid(uuid::Uuid::now_v7()),
            Timestamp::now(),
        )
        .unwrap();
        Sealer::new(&t).seal(
            &e,
            1,
            Timestamp::now(),
            &Hash32([0; 32]),
            &mut rand::thread_rng(),
        )
    }

    fn verifies(r: &Record) -> bool {
        let mut v = ChainVerifier::new(Vec::new());
        v.push(r).is_ok() && matches!(v.finish(), Verdict::Intact { .. })
    }

    #[test]
    fn a_sealed_member_opens_with_its_key_only_and_the_record_verifies_throughout() {
        let t = TenantId::parse("acme").unwrap();
        let original = record();
        let key = DataKey::generate();
        let mut r = original.clone();
        key.seal_record(&mut r, "ab", &["customer".into()]);
        assert!(!r.payload.contains_key("customer") && r.sealed.contains_key("customer"));
        assert!(!r.sealed["customer"].contains("a@example.com"));
        assert!(verifies(&r), "sealed");
        let mut other = r.clone();
        assert_eq!(
            DataKey::generate().open_record(&mut other),
            vec!["customer"]
        );
        let mut opened = r.clone();
        assert!(key.open_record(&mut opened).is_empty());
        assert_eq!(opened.payload, original.payload);
        assert_eq!(opened.payload_salts, original.payload_salts);
        assert!(verifies(&opened), "opened");
        // Erased: withheld as such, still verifying; the key wrapped and unwrapped.
        let mut erased = r.clone();
        mark_erased(&mut erased);
        assert_eq!(erased.withheld["customer"], ERASED);
        assert!(verifies(&erased), "erased");
        let kek = Kek::new([7; 32]);
        let wrapped = kek.wrap(&t, "ab", &key);
        assert_eq!(kek.unwrap(&t, "ab", &wrapped).unwrap().0, key.0);
        assert!(kek.unwrap(&t, "cd", &wrapped).is_err());
        assert!(Kek::new([8; 32]).unwrap(&t, "ab", &wrapped).is_err());
        // An envelope moved to another member does not open.
        let mut moved = r.clone();
        let env = moved.sealed.remove("customer").unwrap();
        moved.sealed.insert("note".into(), env);
        moved.payload.remove("note");
        assert_eq!(key.open_record(&mut moved), vec!["note"]);
        // A sealed member taken out of the record is a removal.
        let mut taken = r;
        taken.sealed.clear();
        assert!(!verifies(&taken));
    }

    #[test]
    fn a_receipt_round_trips_signed_and_refuses_forgery() {
        let signer = NoteSigner::new("vigil-audit", &[3; 32]).unwrap();
        let receipt = ErasureReceipt {
            tenant: TenantId::parse("acme").unwrap(),
            subject_ref: "abcd".into(),
            seqs: vec![3, 4, 5, 9, 11, 12],
            erased_at: Timestamp::parse("2026-11-30T10:00:00Z").unwrap(),
        };
        let note = receipt.sign(&signer).unwrap();
        assert!(note.contains("6 3-5,9,11-12\n"), "{note}");
        assert_eq!(
            ErasureReceipt::open(&note, &[signer.verifier()]).unwrap(),
            receipt
        );
        let forged = note.replacen("3-5,9", "3-5,9-10", 1);
        assert!(ErasureReceipt::open(&forged, &[signer.verifier()]).is_err());
        let other = NoteSigner::new("vigil-audit", &[4; 32]).unwrap();
        assert!(ErasureReceipt::open(&note, &[other.verifier()]).is_err());
        assert_eq!(parse_ranges("5-3"), None);
        assert_eq!(parse_ranges("3,2"), None);
        assert_eq!(parse_ranges(""), Some(vec![]));
    }
}
