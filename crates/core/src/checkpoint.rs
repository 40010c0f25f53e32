//! Signed checkpoints in the C2SP signed-note format.
//!
//! A checkpoint commits to a tenant's chain at a size. Its note text mirrors C2SP
//! tlog-checkpoint (origin line, size, base64 hash) but the third line is the **chain hash**
//! at that size, not a Merkle root; the RFC 9162 Merkle root of the tenant's leaf hashes at
//! that size (issue 14) and the time travel as extension lines:
//!
//! ```text
//! vigil-audit/acme
//! 1000
//! 3q2+7w…=
//! root kq0f…=
//! time 2026-11-22T10:00:00.000000Z
//!
//! — vigil-audit Az3j…
//! ```
//!
//! The signature is Ed25519 over the text; the key id is the first four bytes of
//! `SHA-256(name ‖ "\n" ‖ 0x01 ‖ public key)`, and the verifier key is written
//! `name+hex(key id)+base64(0x01 ‖ public key)`, as the signed-note spec has it.

use crate::hash::Hash32;
use crate::Error;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use std::fmt;

/// Origin lines are this prefix followed by the tenant id.
pub const ORIGIN_PREFIX: &str = "vigil-audit/";
const ALG_ED25519: u8 = 0x01;

/// What a checkpoint states: the chain of `tenant` had `chain_hash` at `size`, at `time`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The tenant whose chain it is.
    pub tenant: String,
    /// Number of records covered (the seq of the last one).
    pub size: i64,
    /// The chain hash at `size`.
    pub chain_hash: Hash32,
    /// The Merkle tree root at `size` (RFC 9162, over the leaf hashes); `None` in checkpoints
    /// signed before trees were kept.
    pub root: Option<Hash32>,
    /// When it was made (canonical RFC 3339).
    pub time: String,
}

impl Checkpoint {
    /// The note text that is signed.
    pub fn note_text(&self) -> String {
        let root = self
            .root
            .map(|r| format!("root {}\n", B64.encode(r.0)))
            .unwrap_or_default();
        format!(
            "{ORIGIN_PREFIX}{}\n{}\n{}\n{root}time {}\n",
            self.tenant,
            self.size,
            B64.encode(self.chain_hash.0),
            self.time
        )
    }

    fn parse_text(text: &str) -> Result<Checkpoint, Error> {
        let bad = |m: &str| Error::Note(m.to_owned());
        let mut lines = text
            .strip_suffix('\n')
            .ok_or_else(|| bad("text must end in a newline"))?
            .split('\n');
        let origin = lines.next().ok_or_else(|| bad("no origin line"))?;
        let tenant = origin
            .strip_prefix(ORIGIN_PREFIX)
            .ok_or_else(|| bad("origin is not a Vigil audit log"))?;
        let size = lines
            .next()
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or_else(|| bad("size line is not a number"))?;
        let hash = lines
            .next()
            .and_then(|s| B64.decode(s).ok())
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| bad("hash line is not 32 bytes of base64"))?;
        let rest: Vec<&str> = lines.collect();
        let time = rest
            .iter()
            .find_map(|l| l.strip_prefix("time "))
            .ok_or_else(|| bad("no time line"))?;
        let root = match rest.iter().find_map(|l| l.strip_prefix("root ")) {
            None => None,
            Some(r) => Some(
                B64.decode(r)
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .map(Hash32)
                    .ok_or_else(|| bad("root line is not 32 bytes of base64"))?,
            ),
        };
        Ok(Checkpoint {
            tenant: tenant.to_owned(),
            size,
            chain_hash: Hash32(hash),
            root,
            time: time.to_owned(),
        })
    }
}

/// The Merkle root a signed note states, if it states one (read without checking the
/// signature: for stored checkpoints, whose signatures verification checks).
pub fn root_in(note: &str) -> Option<Hash32> {
    note.lines()
        .take_while(|l| !l.is_empty())
        .find_map(|l| l.strip_prefix("root "))
        .and_then(|r| B64.decode(r).ok())
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .map(Hash32)
}

fn key_id(name: &str, key: &VerifyingKey) -> [u8; 4] {
    let h = Hash32::digest(&[name.as_bytes(), b"\n", &[ALG_ED25519], key.as_bytes()]);
    [h.0[0], h.0[1], h.0[2], h.0[3]]
}

fn check_name(name: &str) -> Result<(), Error> {
    if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == '+') {
        Err(Error::Note(
            "a key name must be non-empty, without spaces or '+'".into(),
        ))
    } else {
        Ok(())
    }
}

/// Signs checkpoints. Its `Debug` never shows the private key.
pub struct NoteSigner {
    name: String,
    key: SigningKey,
}

impl fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NoteSigner")
            .field("name", &self.name)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl NoteSigner {
    /// A signer named `name` from a 32-byte Ed25519 seed.
    pub fn new(name: &str, seed: &[u8; 32]) -> Result<NoteSigner, Error> {
        check_name(name)?;
        Ok(NoteSigner {
            name: name.to_owned(),
            key: SigningKey::from_bytes(seed),
        })
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The public half, for readers.
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            name: self.name.clone(),
            key: self.key.verifying_key(),
        }
    }

    /// The full signed note for `cp`.
    pub fn sign(&self, cp: &Checkpoint) -> String {
        self.sign_text(&cp.note_text())
    }

    /// A signed note of `text` (lines, ending in a newline): the form every signed statement
    /// of Vigil takes (checkpoints, purge manifests).
    pub fn sign_text(&self, text: &str) -> String {
        let sig = self.key.sign(text.as_bytes());
        let mut blob = key_id(&self.name, &self.key.verifying_key()).to_vec();
        blob.extend_from_slice(&sig.to_bytes());
        format!("{text}\n\u{2014} {} {}\n", self.name, B64.encode(blob))
    }
}

/// Checks signed notes against one public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    key: VerifyingKey,
}

impl NoteVerifier {
    /// Parses a verifier key `name+hexid+base64(0x01 ‖ key)`.
    pub fn parse(vkey: &str) -> Result<NoteVerifier, Error> {
        let bad = || Error::Note("a verifier key looks like name+hexid+base64key".into());
        let mut parts = vkey.splitn(3, '+');
        let (name, id, key) = (
            parts.next().ok_or_else(bad)?,
            parts.next().ok_or_else(bad)?,
            parts.next().ok_or_else(bad)?,
        );
        check_name(name)?;
        let raw = B64.decode(key).map_err(|_| bad())?;
        if raw.len() != 33 || raw[0] != ALG_ED25519 {
            return Err(Error::Note(
                "only Ed25519 verifier keys are supported".into(),
            ));
        }
        let key = VerifyingKey::from_bytes(raw[1..].try_into().expect("33 - 1 bytes"))
            .map_err(|_| bad())?;
        if hex::encode(key_id(name, &key)) != id.to_ascii_lowercase() {
            return Err(Error::Note("the key id does not match the key".into()));
        }
        Ok(NoteVerifier {
            name: name.to_owned(),
            key,
        })
    }

    /// A verifier from a name and raw public key bytes.
    pub fn from_public(name: &str, public: &[u8; 32]) -> Result<NoteVerifier, Error> {
        check_name(name)?;
        let key = VerifyingKey::from_bytes(public)
            .map_err(|_| Error::Note("not an Ed25519 public key".into()))?;
        Ok(NoteVerifier {
            name: name.to_owned(),
            key,
        })
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The raw public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The key id, hex.
    pub fn key_id_hex(&self) -> String {
        hex::encode(key_id(&self.name, &self.key))
    }

    /// The verifier key string readers configure.
    pub fn to_vkey(&self) -> String {
        let mut raw = vec![ALG_ED25519];
        raw.extend_from_slice(self.key.as_bytes());
        format!("{}+{}+{}", self.name, self.key_id_hex(), B64.encode(raw))
    }

    /// Checks the note's signature by this key and returns the checkpoint it states.
    pub fn open(&self, note: &str) -> Result<Checkpoint, Error> {
        Checkpoint::parse_text(self.open_text(note)?)
    }

    /// Checks the note's signature by this key and returns its text.
    pub fn open_text<'a>(&self, note: &'a str) -> Result<&'a str, Error> {
        let split = note
            .rfind("\n\n")
            .ok_or_else(|| Error::Note("no signature block".into()))?;
        let (text, sigs) = (&note[..split + 1], &note[split + 2..]);
        let id = key_id(&self.name, &self.key);
        for line in sigs.lines() {
            let Some(rest) = line.strip_prefix("\u{2014} ") else {
                continue;
            };
            let Some((name, b64)) = rest.split_once(' ') else {
                continue;
            };
            if name != self.name {
                continue;
            }
            let Ok(blob) = B64.decode(b64) else { continue };
            if blob.len() != 68 || blob[..4] != id {
                continue;
            }
            let sig = Signature::from_slice(&blob[4..])
                .map_err(|_| Error::Note("malformed signature".into()))?;
            self.key
                .verify(text.as_bytes(), &sig)
                .map_err(|_| Error::Note("signature does not verify".into()))?;
            return Ok(text);
        }
        Err(Error::Note(format!("no signature by key {}", self.name)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp() -> Checkpoint {
        Checkpoint {
            tenant: "acme".into(),
            size: 42,
            chain_hash: Hash32([7; 32]),
            root: Some(Hash32([9; 32])),
            time: "2026-11-22T10:00:00.000000Z".into(),
        }
    }

    #[test]
    fn the_root_is_signed_as_an_extension_line_and_optional() {
        let s = NoteSigner::new("vigil-audit", &[1; 32]).unwrap();
        let note = s.sign(&cp());
        let lines: Vec<&str> = note.lines().collect();
        assert_eq!(lines[3], format!("root {}", B64.encode([9u8; 32])));
        assert!(lines[4].starts_with("time "));
        // A checkpoint from before trees were kept opens without one.
        let old = Checkpoint { root: None, ..cp() };
        let opened = s.verifier().open(&s.sign(&old)).unwrap();
        assert_eq!(opened.root, None);
        assert_eq!(opened, old);
        // The root is signed: changing it breaks the signature.
        let forged = note.replace(&B64.encode([9u8; 32]), &B64.encode([8u8; 32]));
        assert!(s.verifier().open(&forged).is_err());
    }

    #[test]
    fn a_signed_checkpoint_opens_with_its_verifier_key() {
        let s = NoteSigner::new("vigil-audit", &[1; 32]).unwrap();
        let note = s.sign(&cp());
        assert!(note.starts_with("vigil-audit/acme\n42\n"));
        assert!(note.contains("\n\n\u{2014} vigil-audit "));
        let v = NoteVerifier::parse(&s.verifier().to_vkey()).unwrap();
        assert_eq!(v.open(&note).unwrap(), cp());
    }

    #[test]
    fn a_changed_note_or_another_key_is_refused() {
        let s = NoteSigner::new("vigil-audit", &[1; 32]).unwrap();
        let note = s.sign(&cp()).replace("\n42\n", "\n43\n");
        assert!(s.verifier().open(&note).is_err());
        let other = NoteSigner::new("vigil-audit", &[2; 32]).unwrap();
        assert!(other.verifier().open(&s.sign(&cp())).is_err());
    }

    #[test]
    fn the_signer_debug_output_never_shows_the_key() {
        let s = NoteSigner::new("k", &[0xab; 32]).unwrap();
        let d = format!("{s:?}");
        assert!(
            !d.contains("171") && !d.to_lowercase().contains("abab"),
            "{d}"
        );
    }
}
