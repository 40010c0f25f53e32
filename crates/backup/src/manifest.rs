//! The manifest: what a backup holds and how to check it. Written last, so a backup without
//! one is incomplete and never listed.

use serde::{Deserialize, Serialize};

/// The manifest's file name inside a backup.
pub const MANIFEST_FILE: &str = "manifest.json";

/// The format this build writes and reads.
pub(crate) const FORMAT: &str = "vigil-backup/1";

/// A backup's manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    /// The backup's id (also its directory name).
    pub id: String,
    /// When the snapshot was taken (RFC 3339).
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// The `vigil` version that wrote it.
    pub vigil_version: String,
    /// `sqlite` or `postgres`: a backup restores into the same engine.
    pub engine: String,
    /// The store's schema version (newest migration applied) at the snapshot.
    pub schema_version: i64,
    /// `zstd`.
    pub compression: String,
    /// Set when the parts are encrypted.
    pub encryption: Option<EncryptionInfo>,
    /// Per tenant: what the restored store must show.
    pub tenants: Vec<TenantEntry>,
    /// The data, stream by stream.
    pub streams: Vec<StreamEntry>,
    /// Every data subject erased at the snapshot (from the receipts in the chains). A restore
    /// of an older backup re-applies the erasures that newer backups list and it does not.
    #[serde(default)]
    pub erasures: Vec<ErasureEntry>,
}

/// An erased data subject.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct ErasureEntry {
    /// The tenant.
    pub tenant: String,
    /// The subject's keyed reference (never its id).
    pub subject_ref: String,
}

/// How the parts are encrypted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EncryptionInfo {
    /// `AES-256-GCM`.
    pub algorithm: String,
    /// The key's id ([`crate::BackupKey::id`]), never the key.
    pub key_id: String,
}

/// One tenant at the snapshot.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TenantEntry {
    /// The tenant.
    pub tenant: String,
    /// Rows in its chain.
    pub records: i64,
    /// The last seq.
    pub head_seq: i64,
    /// The chain hash at the last seq (hex).
    pub head_chain_hash: String,
    /// The newest signed checkpoint, when there is one.
    pub checkpoint: Option<CheckpointEntry>,
}

/// A signed checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CheckpointEntry {
    /// Records it covers.
    pub size: i64,
    /// The chain hash at `size` (hex).
    pub chain_hash: String,
    /// The C2SP signed note.
    pub note: String,
}

/// One stream of bytes: the SQLite database file (`database`) or a Postgres table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StreamEntry {
    /// `database` or the table's name.
    pub name: String,
    /// A table's columns in the order the data has them (Postgres).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
    /// Bytes before compression.
    pub raw_bytes: u64,
    /// The parts, in order.
    pub parts: Vec<PartEntry>,
}

/// One part as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PartEntry {
    /// Its path inside the backup.
    pub path: String,
    /// Its size as stored.
    pub bytes: u64,
    /// SHA-256 of the stored bytes (hex).
    pub sha256: String,
}

impl Manifest {
    /// Parses a manifest, refusing a format this build does not read.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, crate::BackupError> {
        let m: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| crate::BackupError::Manifest(format!("unreadable: {e}")))?;
        if m.format != FORMAT {
            return Err(crate::BackupError::Manifest(format!(
                "format {:?}; this build reads {FORMAT:?}",
                m.format
            )));
        }
        Ok(m)
    }

    /// Total records over all tenants.
    pub fn records(&self) -> i64 {
        self.tenants.iter().map(|t| t.records).sum()
    }

    /// Total stored bytes over all parts.
    pub fn stored_bytes(&self) -> u64 {
        self.streams
            .iter()
            .flat_map(|s| &s.parts)
            .map(|p| p.bytes)
            .sum()
    }
}
