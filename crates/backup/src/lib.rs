//! Backups of a Vigil store and restoring them.
//!
//! A backup is a directory (on disk or under an S3-compatible bucket) named by its id
//! (`20261130T143000Z-1a2b`) holding `parts/…` and, written last, `manifest.json`:
//!
//! - **Parts**: the snapshot's bytes (SQLite: the database file from `VACUUM INTO`; Postgres:
//!   each table in `COPY` text format from one `REPEATABLE READ` transaction), compressed with
//!   zstd, cut into parts of bounded size, each optionally sealed with AES-256-GCM under a key
//!   file (the part's name and the backup id are bound in as associated data, so parts cannot
//!   be swapped), each with its SHA-256 in the manifest.
//! - **Manifest**: the engine and schema version, per tenant the chain head, the record count
//!   and the latest signed checkpoint, and every part's size and checksum.
//!
//! A restore checks the manifest, that the checkpoints are signed by keys the caller trusts,
//! and every part's checksum before it touches the target; it refuses a non-empty target
//! unless forced; it loads, and compares the restored heads with the manifest. Full chain
//! verification follows in the binary (`vigil restore`).
#![deny(missing_docs)]

mod create;
mod error;
mod key;
mod location;
mod manifest;
mod parts;
mod prune;
mod restore;

pub use create::{backup, BackupOptions, BackupSummary};
pub use error::BackupError;
pub use key::BackupKey;
pub use location::Location;
pub use manifest::{
    CheckpointEntry, EncryptionInfo, ErasureEntry, Manifest, PartEntry, StreamEntry, TenantEntry,
    MANIFEST_FILE,
};
pub use prune::{list, plan, prune, BackupInfo, KeepPolicy};
pub use restore::{check, restore, RestoreOptions, RestoreReport, Trust};
