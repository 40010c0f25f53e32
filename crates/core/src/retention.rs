//! Purge manifests: the signed statement that a tenant's records `from_seq..=to_seq` lost
//! their payload values and salts by policy (DESIGN.md, "Removal that still verifies"). A
//! purged record keeps its hashed form and hashes, so the chain still verifies; the manifest
//! is what lets a verifier accept the missing values there, and only there.
//!
//! A manifest is a signed note (the checkpoint key's, C2SP format) whose text is:
//!
//! ```text
//! vigil.dev/purge/v1
//! acme
//! 1 5000
//! <chain hash at to_seq, hex>
//! <cutoff, RFC 3339>
//! <purged at, RFC 3339>
//! <reason>
//! ```
//!
//! The chain hash at `to_seq` binds the manifest to this chain: a manifest copied from
//! another chain, or one whose range was stretched, does not match it.

use crate::checkpoint::{NoteSigner, NoteVerifier};
use crate::error::Error;
use crate::hash::Hash32;
use crate::ids::TenantId;
use crate::time::Timestamp;

const ORIGIN: &str = "vigil.dev/purge/v1";

/// What a purge removed, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PurgeManifest {
    /// The tenant.
    pub tenant: TenantId,
    /// First purged seq.
    pub from_seq: i64,
    /// Last purged seq.
    pub to_seq: i64,
    /// The chain hash at `to_seq`.
    pub boundary: Hash32,
    /// Records that occurred before this were due.
    pub cutoff: Timestamp,
    /// When the purge ran.
    pub purged_at: Timestamp,
    /// Why (e.g. `retention: 30 days`): one line of text.
    pub reason: String,
}

impl PurgeManifest {
    /// The note text.
    pub fn text(&self) -> String {
        format!(
            "{ORIGIN}\n{}\n{} {}\n{}\n{}\n{}\n{}\n",
            self.tenant,
            self.from_seq,
            self.to_seq,
            self.boundary.to_hex(),
            self.cutoff.to_rfc3339(),
            self.purged_at.to_rfc3339(),
            self.reason
        )
    }

    /// Checks the manifest can be stated (a range from 1 up, a one-line reason).
    pub fn check(&self) -> Result<(), Error> {
        if self.from_seq < 1 || self.to_seq < self.from_seq {
            return Err(Error::invalid(
                "manifest",
                format!("{}..{} is not a range of seqs", self.from_seq, self.to_seq),
            ));
        }
        if self.reason.is_empty() || self.reason.chars().any(char::is_control) {
            return Err(Error::invalid(
                "manifest.reason",
                "must be one line of text",
            ));
        }
        Ok(())
    }

    /// The signed note of this manifest.
    pub fn sign(&self, signer: &NoteSigner) -> Result<String, Error> {
        self.check()?;
        Ok(signer.sign_text(&self.text()))
    }

    /// The manifest a signed note states, when one of `keys` signed it.
    pub fn open(note: &str, keys: &[NoteVerifier]) -> Result<PurgeManifest, Error> {
        let text = keys
            .iter()
            .find_map(|k| k.open_text(note).ok())
            .ok_or_else(|| {
                Error::Note("the purge manifest is not signed by a trusted key".into())
            })?;
        PurgeManifest::parse_text(text)
    }

    fn parse_text(text: &str) -> Result<PurgeManifest, Error> {
        let bad = |why: &str| Error::Note(format!("purge manifest: {why}"));
        let lines: Vec<&str> = text
            .strip_suffix('\n')
            .unwrap_or(text)
            .split('\n')
            .collect();
        let [origin, tenant, range, boundary, cutoff, purged_at, reason] = lines[..] else {
            return Err(bad("expected 7 lines"));
        };
        if origin != ORIGIN {
            return Err(bad("not a purge manifest"));
        }
        let (from, to) = range.split_once(' ').ok_or_else(|| bad("no range"))?;
        let m = PurgeManifest {
            tenant: TenantId::parse(tenant).map_err(|_| bad("bad tenant"))?,
            from_seq: from.parse().map_err(|_| bad("bad range"))?,
            to_seq: to.parse().map_err(|_| bad("bad range"))?,
            boundary: Hash32::from_hex(boundary).ok_or_else(|| bad("bad chain hash"))?,
            cutoff: Timestamp::parse(cutoff).map_err(|_| bad("bad cutoff"))?,
            purged_at: Timestamp::parse(purged_at).map_err(|_| bad("bad time"))?,
            reason: reason.to_owned(),
        };
        m.check().map_err(|e| bad(&e.to_string()))?;
        Ok(m)
    }

    /// Whether `seq` is in the purged range.
    pub fn covers(&self, seq: i64) -> bool {
        (self.from_seq..=self.to_seq).contains(&seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> PurgeManifest {
        PurgeManifest {
            tenant: TenantId::parse("acme").unwrap(),
            from_seq: 1,
            to_seq: 3,
            boundary: Hash32([9; 32]),
            cutoff: Timestamp::parse("2026-10-31T00:00:00Z").unwrap(),
            purged_at: Timestamp::parse("2026-11-30T03:00:00Z").unwrap(),
            reason: "retention: 30 days".into(),
        }
    }

    #[test]
    fn a_signed_manifest_opens_with_the_key_and_only_with_it() {
        let signer = NoteSigner::new("vigil-audit", &[3; 32]).unwrap();
        let other = NoteSigner::new("vigil-audit", &[4; 32]).unwrap();
        let note = manifest().sign(&signer).unwrap();
        assert_eq!(
            PurgeManifest::open(&note, &[other.verifier(), signer.verifier()]).unwrap(),
            manifest()
        );
        assert!(PurgeManifest::open(&note, &[other.verifier()]).is_err());
        // Stretching the range breaks the signature.
        let forged = note.replacen("1 3\n", "1 30\n", 1);
        assert!(PurgeManifest::open(&forged, &[signer.verifier()]).is_err());
        // A checkpoint is not a manifest, even signed by the same key.
        let cp = crate::checkpoint::Checkpoint {
            root: None,
            tenant: "acme".into(),
            size: 3,
            chain_hash: Hash32([9; 32]),
            time: "2026-11-30T03:00:00.000000Z".into(),
        };
        assert!(PurgeManifest::open(&signer.sign(&cp), &[signer.verifier()]).is_err());
    }

    #[test]
    fn a_manifest_that_cannot_be_stated_is_refused() {
        let signer = NoteSigner::new("k", &[3; 32]).unwrap();
        for m in [
            PurgeManifest {
                from_seq: 0,
                ..manifest()
            },
            PurgeManifest {
                to_seq: 0,
                ..manifest()
            },
            PurgeManifest {
                reason: "two\nlines".into(),
                ..manifest()
            },
            PurgeManifest {
                reason: String::new(),
                ..manifest()
            },
        ] {
            assert!(m.sign(&signer).is_err(), "{m:?}");
        }
    }
}
