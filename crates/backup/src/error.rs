//! The one error type of `vigil-backup`.

use vigil_store::StoreError;

/// What went wrong backing up or restoring.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The store could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The object storage refused or failed.
    #[error("object storage, while {op}: {message}")]
    Object {
        /// What we were doing.
        op: String,
        /// The storage's words.
        message: String,
    },
    /// A local file could not be read or written.
    #[error("{op} {path}: {source}")]
    Io {
        /// What we were doing.
        op: &'static str,
        /// Which file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The location is not one we can read or write.
    #[error("bad backup location {0}")]
    Location(String),
    /// The manifest is missing, unreadable or of a format or schema this build cannot restore.
    #[error("manifest: {0}")]
    Manifest(String),
    /// A part does not match its manifest entry: the backup is damaged.
    #[error("backup part {part} is damaged: {reason}")]
    CorruptPart {
        /// The part's path inside the backup.
        part: String,
        /// What does not match.
        reason: String,
    },
    /// The encryption key is missing, malformed or not the one the backup was made with.
    #[error("backup key: {0}")]
    Key(String),
    /// A tenant's checkpoint is not signed by a trusted key.
    #[error("tenant {tenant}: its checkpoint is signed by {signer}, which is not trusted here (pass --trusted-key with that key, or --data-dir of the audit service whose key it is)")]
    Untrusted {
        /// The tenant.
        tenant: String,
        /// The key name on the note's signature line.
        signer: String,
    },
    /// The target already holds audit records.
    #[error(
        "{0} is not empty: restoring would replace its records (pass --force to replace them)"
    )]
    NotEmpty(String),
    /// What was restored does not match the manifest.
    #[error("restored tenant {tenant} does not match the manifest: {what}")]
    Mismatch {
        /// The tenant.
        tenant: String,
        /// How it differs.
        what: String,
    },
}

impl BackupError {
    pub(crate) fn object(op: impl Into<String>, e: object_store::Error) -> BackupError {
        BackupError::Object {
            op: op.into(),
            message: e.to_string(),
        }
    }

    pub(crate) fn io(
        op: &'static str,
        path: impl AsRef<std::path::Path>,
        source: std::io::Error,
    ) -> Self {
        BackupError::Io {
            op,
            path: path.as_ref().display().to_string(),
            source,
        }
    }

    /// True when the error says the backup or the store is not intact, or the restore is not
    /// allowed (exit 1), rather than a usage or environment problem (exit 2).
    pub fn is_integrity(&self) -> bool {
        matches!(
            self,
            BackupError::CorruptPart { .. }
                | BackupError::Untrusted { .. }
                | BackupError::Mismatch { .. }
        )
    }
}
