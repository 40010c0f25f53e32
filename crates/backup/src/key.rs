//! The key a backup is encrypted with: 32 bytes in a file (64 hex digits, or the raw bytes),
//! used with AES-256-GCM. It never appears in output: only its id (a hash) does.

use crate::BackupError;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::path::Path;

/// A backup encryption key.
#[derive(Clone)]
pub struct BackupKey {
    key: [u8; 32],
}

impl std::fmt::Debug for BackupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BackupKey({})", self.id())
    }
}

const NONCE: usize = 12;

impl BackupKey {
    /// A new random key.
    pub fn generate() -> BackupKey {
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        BackupKey { key }
    }

    /// Reads a key file: 64 hex digits (surrounding whitespace ignored) or 32 raw bytes.
    pub fn load(path: &Path) -> Result<BackupKey, BackupError> {
        let bytes = std::fs::read(path).map_err(|e| BackupError::io("reading", path, e))?;
        let key: Option<[u8; 32]> = match std::str::from_utf8(&bytes).map(str::trim) {
            Ok(text) if text.len() == 64 => hex::decode(text).ok().and_then(|v| v.try_into().ok()),
            _ => bytes.as_slice().try_into().ok(),
        };
        key.map(|key| BackupKey { key }).ok_or_else(|| {
            BackupError::Key(format!(
                "{} holds neither 64 hex digits nor 32 bytes",
                path.display()
            ))
        })
    }

    /// Writes the key as 64 hex digits to a new file readable by its owner only.
    pub fn save_new(&self, path: &Path) -> Result<(), BackupError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| BackupError::io("creating", path, e))?;
        writeln!(f, "{}", hex::encode(self.key))
            .and_then(|_| f.sync_all())
            .map_err(|e| BackupError::io("writing", path, e))
    }

    /// The key's public name: the first 16 hex digits of a hash of it, recorded in the
    /// manifest so a restore with the wrong key says so before decrypting anything.
    pub fn id(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"vigil-backup-key-id\0");
        h.update(self.key);
        hex::encode(&h.finalize()[..8])
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new_from_slice(&self.key).expect("32-byte key")
    }

    /// Seals `plain` as nonce ‖ ciphertext ‖ tag, binding `aad` (backup id and part name).
    pub(crate) fn seal(&self, aad: &str, plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ct = self
            .cipher()
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: aad.as_bytes(),
                },
            )
            .expect("AES-GCM encryption of a bounded part");
        let mut out = Vec::with_capacity(NONCE + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// Opens what [`seal`](Self::seal) made with the same `aad`; `None` when the key, the aad
    /// or a byte differs.
    pub(crate) fn open(&self, aad: &str, sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE + 16 {
            return None;
        }
        let (nonce, ct) = sealed.split_at(NONCE);
        self.cipher()
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: aad.as_bytes(),
                },
            )
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_part_opens_only_with_the_same_key_and_name() {
        let k = BackupKey::generate();
        let sealed = k.seal("b1/parts/events.00000", b"hello");
        assert_eq!(
            k.open("b1/parts/events.00000", &sealed).unwrap(),
            b"hello".to_vec()
        );
        assert!(k.open("b1/parts/events.00001", &sealed).is_none());
        assert!(BackupKey::generate()
            .open("b1/parts/events.00000", &sealed)
            .is_none());
        let mut flipped = sealed.clone();
        flipped[20] ^= 1;
        assert!(k.open("b1/parts/events.00000", &flipped).is_none());
    }

    #[test]
    fn a_key_file_round_trips_and_debug_shows_only_the_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let k = BackupKey::generate();
        k.save_new(&path).unwrap();
        let back = BackupKey::load(&path).unwrap();
        assert_eq!(back.id(), k.id());
        let shown = format!("{k:?}");
        assert!(!shown.contains(&hex::encode(k.key)));
        assert!(shown.contains(&k.id()));
        std::fs::write(&path, "short").unwrap();
        assert!(matches!(BackupKey::load(&path), Err(BackupError::Key(_))));
    }
}
