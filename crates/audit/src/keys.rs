//! The checkpoint signing key: an Ed25519 seed created on first start in the data directory
//! with mode 0600. It is never logged; only its public half leaves the process.

use crate::error::AuditError;
use rand::RngCore;
use std::io::Write;
use std::path::Path;
use vigil_core::checkpoint::NoteSigner;

/// File name of the seed inside the data directory.
pub const KEY_FILE: &str = "checkpoint-ed25519.key";

/// File name of the secret that tenants' redaction HMAC keys are derived from.
pub const REDACTION_SECRET_FILE: &str = "redaction-hmac.key";

/// File name of the key-encryption key that wraps data subjects' keys (erasure). Back it up
/// apart from the database: without it no sealed member opens.
pub const SUBJECT_KEK_FILE: &str = "subject-kek.key";

/// Loads the signing key from `data_dir`, creating it (and the directory) on first start.
/// A key file readable by group or others is refused, as ssh refuses one.
pub fn load_or_create(data_dir: &Path, name: &str) -> Result<NoteSigner, AuditError> {
    let seed = load_or_create_secret(data_dir, KEY_FILE)?;
    NoteSigner::new(name, &seed).map_err(AuditError::KeyName)
}

/// A 32-byte secret kept in `data_dir/file` (mode 0600), made on first use. Losing it is
/// losing what it protects: back the data directory up.
pub fn load_or_create_secret(data_dir: &Path, file: &str) -> Result<[u8; 32], AuditError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::create_dir_all(data_dir)
        .map_err(|e| AuditError::file("creating data directory", data_dir, e))?;
    let path = data_dir.join(file);
    let seed: [u8; 32] = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
    {
        Ok(mut f) => {
            let mut seed = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut seed);
            f.write_all(&seed)
                .and_then(|_| f.sync_all())
                .map_err(|e| AuditError::file("writing", &path, e))?;
            tracing::info!(path = %path.display(), "created a secret key");
            seed
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let mode = std::fs::metadata(&path)
                .map_err(|e| AuditError::file("reading", &path, e))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(AuditError::Key {
                    path,
                    reason: format!("readable by others (mode {:o}); chmod 600 it", mode & 0o777),
                });
            }
            let bytes = std::fs::read(&path).map_err(|e| AuditError::file("reading", &path, e))?;
            bytes.try_into().map_err(|_| AuditError::Key {
                path,
                reason: "not a 32-byte Ed25519 seed".into(),
            })?
        }
        Err(e) => return Err(AuditError::file("creating", &path, e)),
    };
    Ok(seed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_key_is_created_once_with_mode_0600_and_loaded_after() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create(dir.path(), "k").unwrap();
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = load_or_create(dir.path(), "k").unwrap();
        assert_eq!(a.verifier(), b.verifier());
    }

    #[test]
    fn a_key_file_others_can_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        load_or_create(dir.path(), "k").unwrap();
        std::fs::set_permissions(
            dir.path().join(KEY_FILE),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        assert!(load_or_create(dir.path(), "k")
            .unwrap_err()
            .to_string()
            .contains("chmod 600"));
    }
}
