//! The audit store.
//!
//! One [`Store`] trait, two engines selected by URL: SQLite (`sqlite://path`, the embedded
//! default, WAL) and Postgres (`postgres://…`, for scale-out). Migrations are versioned files
//! under `migrations/<engine>/`, applied when a store is opened and never edited once released.
//!
//! The store knows nothing of hashing or sequencing: it holds what the sequencer sealed, and the
//! database itself refuses a second record with a taken `(tenant_id, seq)` or
//! `(tenant_id, event_id)` ([`StoreError::Conflict`]), which is what keeps two writers from
//! forking a chain.
//!
//! ```no_run
//! # async fn demo() -> Result<(), vigil_store::StoreError> {
//! let store = vigil_store::open("sqlite://./vigil.db").await?;
//! let tenant = vigil_core::ids::TenantId::parse("acme").unwrap();
//! println!("head: {:?}", store.head(&tenant).await?);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod db;
mod error;
pub mod identity;
mod query;
pub mod snapshot;
mod sql;
#[cfg(feature = "testing")]
pub mod testing;

pub use db::PoolStats;
pub use error::StoreError;
pub use query::{ActionFilter, Query};
pub use sql::SqlStore;

use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Arc;
use vigil_core::chain::ChainHead;
use vigil_core::checkpoint::Checkpoint;
use vigil_core::hash::Hash32;
use vigil_core::ids::TenantId;
use vigil_core::record::Record;
use vigil_core::redaction::Policy;
use vigil_core::time::Timestamp;

/// A sealed record ready to be written, with the hash of its submitted content (for
/// idempotency: a replay with equal content is a duplicate, with other content a conflict).
#[derive(Clone, Debug)]
pub struct NewRecord {
    /// The sealed record.
    pub record: Record,
    /// `Event::content_hash` of what was submitted.
    pub content_hash: Hash32,
}

/// A tenant's webhook subscription as stored (its secrets sealed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookSubscription {
    /// Its id.
    pub id: String,
    /// The tenant whose records and alerts it is sent.
    pub tenant_id: String,
    /// Where deliveries are POSTed.
    pub url: String,
    /// What it is sent: `events` (records matching `filter`), `alerts` (Vigil's own).
    pub kinds: Vec<String>,
    /// Which records (JSON of `vigil_core::webhook::Filter`).
    pub filter: String,
    /// Its signing secrets, sealed, newest first (JSON, opaque to the store).
    pub secrets: String,
    /// The last seq of the tenant's chain matched against it.
    pub cursor: i64,
    /// When it was made (RFC 3339).
    pub created_at: String,
}

/// A delivery to enqueue: one message for one subscription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewDelivery {
    /// Its id.
    pub id: String,
    /// The `webhook-id`: the same on every attempt.
    pub message_id: String,
    /// `audit.event`, `vigil.alert`, …
    pub event_type: String,
    /// The JSON body sent.
    pub body: String,
}

/// A delivery with its state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Its id.
    pub id: String,
    /// Its subscription.
    pub subscription_id: String,
    /// The subscription's tenant.
    pub tenant_id: String,
    /// The `webhook-id`.
    pub message_id: String,
    /// The message type.
    pub event_type: String,
    /// The JSON body.
    pub body: String,
    /// `pending`, `delivered` or `dead`.
    pub status: String,
    /// Attempts made.
    pub attempts: i64,
    /// When the next attempt is due (Unix ms; pending only).
    pub next_attempt_at: i64,
    /// The HTTP status of the last attempt, when it got one.
    pub last_status: Option<i64>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When it was enqueued (RFC 3339).
    pub created_at: String,
    /// When it was delivered (RFC 3339).
    pub delivered_at: Option<String>,
}

/// What one delivery attempt came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// A 2xx answer.
    Delivered {
        /// The status.
        status: i64,
    },
    /// Failed; tried again at `next_at` (Unix ms).
    Retry {
        /// When.
        next_at: i64,
        /// The status, if the receiver answered.
        status: Option<i64>,
        /// Why.
        error: String,
    },
    /// Failed for the last time: dead-lettered.
    Dead {
        /// The status, if the receiver answered.
        status: Option<i64>,
        /// Why.
        error: String,
    },
}

/// The seq and content hash of a record that already exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Existing {
    /// Its seq.
    pub seq: i64,
    /// Its content hash.
    pub content_hash: Hash32,
}

/// A signed checkpoint as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// What it states.
    pub checkpoint: Checkpoint,
    /// The name of the key that signed it.
    pub key_name: String,
    /// The whole signed note.
    pub note: String,
}

/// The public half of a checkpoint signing key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    /// Key id (hex) of the signed-note spec.
    pub key_id: String,
    /// Key name.
    pub name: String,
    /// `name+id+base64key`, what readers configure.
    pub verifier_key: String,
    /// When it was first used.
    pub created_at: String,
}

/// What a purge removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Purged {
    /// Records that lost values.
    pub records: u64,
    /// Bytes of values, salts and sealed members removed (as stored, JSON text).
    pub bytes: u64,
}

/// The database's size before and after reclaiming free space, in bytes (SQLite: the file's
/// pages; Postgres: the events table with its indexes and TOAST).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Space {
    /// Before.
    pub before: u64,
    /// After.
    pub after: u64,
}

impl Space {
    /// Bytes returned (0 when the database grew meanwhile).
    pub fn freed(&self) -> u64 {
        self.before.saturating_sub(self.after)
    }
}

/// The one storage contract every engine fulfils (and one test suite checks).
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// `sqlite` or `postgres`.
    fn engine(&self) -> &'static str;

    /// Cheap round trip to the database: is it reachable now?
    async fn ping(&self) -> Result<(), StoreError>;

    /// The connection pool's state now (for metrics).
    fn pool_stats(&self) -> db::PoolStats;

    /// How long writers have held the engine's one write lock so far, in this process: SQLite
    /// only (Postgres has none; `None`). Its rate is the share of time the writer is busy.
    fn write_lock_held(&self) -> Option<std::time::Duration> {
        None
    }

    /// The tenant's chain head (genesis when it has no records).
    async fn head(&self, tenant: &TenantId) -> Result<ChainHead, StoreError>;

    /// Every tenant that has records, sorted.
    async fn tenants(&self) -> Result<Vec<TenantId>, StoreError>;

    /// The records among `event_ids` that already exist.
    async fn existing(
        &self,
        tenant: &TenantId,
        event_ids: &[String],
    ) -> Result<HashMap<String, Existing>, StoreError>;

    /// The last `producer_seq` recorded for each of `producer_ids` that has one.
    async fn producer_seqs(
        &self,
        tenant: &TenantId,
        producer_ids: &[String],
    ) -> Result<HashMap<String, i64>, StoreError>;

    /// Writes `records` (consecutive seqs following the head) and the producers' new last
    /// seqs in one transaction: all or nothing. A taken seq or event id is
    /// [`StoreError::Conflict`] and writes nothing.
    async fn append(
        &self,
        tenant: &TenantId,
        records: &[NewRecord],
        producers: &[(String, i64)],
    ) -> Result<(), StoreError>;

    /// One record by event id.
    async fn get(&self, tenant: &TenantId, event_id: &str) -> Result<Option<Record>, StoreError>;

    /// A page of records matching `q`, newest (highest seq) first, at most `q.limit`.
    async fn query(&self, tenant: &TenantId, q: &Query) -> Result<Vec<Record>, StoreError>;

    /// Up to `limit` records with seq greater than `after`, in seq order (for verification).
    async fn scan(
        &self,
        tenant: &TenantId,
        after: i64,
        limit: i64,
    ) -> Result<Vec<Record>, StoreError>;

    /// Every record of `tenant` after seq `after`, in seq order, as stored (the JSON columns
    /// undecoded), in batches of up to `batch` rows sent as they are read: what reading a
    /// whole chain (verification) uses. The reader stays at most one batch ahead (bounded
    /// memory) and stops when the receiver is dropped; an error ends the stream.
    fn scan_stored(
        &self,
        tenant: &TenantId,
        after: i64,
        batch: i64,
    ) -> tokio::sync::mpsc::Receiver<Result<vigil_core::stored::StoredBatch, StoreError>>;

    /// The leaf hashes of seqs `from_seq..=to_seq`, in seq order (fewer when the chain is
    /// shorter): the level-0 tiles of the tenant's Merkle tree.
    async fn leaf_hashes(
        &self,
        tenant: &TenantId,
        from_seq: i64,
        to_seq: i64,
    ) -> Result<Vec<Hash32>, StoreError>;

    /// Stored Merkle nodes at tree `level`, indices `from..to`, in index order, up to the first
    /// one not stored.
    async fn merkle_nodes(
        &self,
        tenant: &TenantId,
        level: u32,
        from: u64,
        to: u64,
    ) -> Result<Vec<Hash32>, StoreError>;

    /// Stores Merkle nodes `(level, index, hash)`; one already stored is kept (a complete
    /// subtree's hash never changes).
    async fn put_merkle_nodes(
        &self,
        tenant: &TenantId,
        nodes: &[(u32, u64, Hash32)],
    ) -> Result<(), StoreError>;

    /// For each `(level, index, width)`, the first `width` hashes of the stored tile at tile
    /// `level`, index `index` (see migration 0008), or `None` when no tile that wide is stored
    /// there; in the order asked, from one statement.
    async fn merkle_tiles(
        &self,
        tenant: &TenantId,
        tiles: &[(u32, u64, u64)],
    ) -> Result<Vec<Option<Vec<Hash32>>>, StoreError>;

    /// Stores tiles `(level, index, hashes)`; where one is stored already, the wider is kept
    /// (a tile's first hashes never change).
    async fn put_merkle_tiles(
        &self,
        tenant: &TenantId,
        tiles: &[(u32, u64, Vec<Hash32>)],
    ) -> Result<(), StoreError>;

    /// Stores a signed checkpoint (a second one at the same size is ignored).
    async fn put_checkpoint(
        &self,
        tenant: &TenantId,
        cp: &StoredCheckpoint,
    ) -> Result<(), StoreError>;

    /// The tenant's newest checkpoint.
    async fn latest_checkpoint(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<StoredCheckpoint>, StoreError>;

    /// Every checkpoint of the tenant, by size.
    async fn checkpoints(&self, tenant: &TenantId) -> Result<Vec<StoredCheckpoint>, StoreError>;

    /// Records a public signing key (idempotent).
    async fn put_public_key(&self, key: &PublicKey) -> Result<(), StoreError>;

    /// Every public signing key.
    async fn public_keys(&self) -> Result<Vec<PublicKey>, StoreError>;

    /// The highest seq of `tenant` received before `cutoff`, among records whose action is
    /// not `except_action` (0 when none): where a retention purge ends (it never ends on a
    /// manifest, so manifests alone never call for another).
    async fn last_seq_received_before(
        &self,
        tenant: &TenantId,
        cutoff: Timestamp,
        except_action: &str,
    ) -> Result<i64, StoreError>;

    /// Removes the payload values, salts and sealed members of `tenant`'s records
    /// `from_seq..=to_seq`, except records whose action is `keep_action` (the manifests
    /// themselves): their hashed form and hashes stay, so the chain still verifies. Returns
    /// what it removed. A purge is only valid with a signed manifest in the chain
    /// (vigil-core's `retention`).
    async fn purge_payloads(
        &self,
        tenant: &TenantId,
        from_seq: i64,
        to_seq: i64,
        keep_action: &str,
    ) -> Result<Purged, StoreError>;

    /// Returns free space to the file system and says how much the database shrank. Online
    /// (`full` false): SQLite's free pages go back a slice at a time (whole pages only: those
    /// of large values; space freed inside pages is reused by new records), Postgres runs a
    /// plain VACUUM (reusable space, empty trailing pages returned); writers wait briefly.
    /// `full`: the database is rewritten compactly (SQLite VACUUM, Postgres VACUUM FULL),
    /// which holds writers off for its duration: maintenance, not the schedule.
    async fn reclaim_space(&self, full: bool) -> Result<Space, StoreError>;

    /// The tenant's own retention period in days, when it has one (else the service's applies).
    async fn retention_days(&self, tenant: &TenantId) -> Result<Option<u32>, StoreError>;

    /// Sets (`Some`, at least 1) or removes (`None`) the tenant's own retention period.
    async fn set_retention_days(
        &self,
        tenant: &TenantId,
        days: Option<u32>,
        at: Timestamp,
    ) -> Result<(), StoreError>;

    /// The wrapped data keys of `tenant`'s subjects among `candidates` (subject ref, a newly
    /// wrapped key): a subject without a key gets its candidate, one with a key keeps it.
    async fn ensure_subject_keys(
        &self,
        tenant: &TenantId,
        candidates: &[(String, Vec<u8>)],
        at: Timestamp,
    ) -> Result<HashMap<String, Vec<u8>>, StoreError>;

    /// The wrapped data keys of those of `refs` that have one.
    async fn subject_keys(
        &self,
        tenant: &TenantId,
        refs: &[String],
    ) -> Result<HashMap<String, Vec<u8>>, StoreError>;

    /// Destroys a subject's data key (erasure), so that no copy is left in the database's
    /// files; whether there was one.
    async fn destroy_subject_key(
        &self,
        tenant: &TenantId,
        subject_ref: &str,
    ) -> Result<bool, StoreError>;

    /// The tenant's own redaction policy, when it has one (else the fleet's applies).
    async fn redaction_policy(&self, tenant: &TenantId) -> Result<Option<Policy>, StoreError>;

    /// Sets (`Some`) or removes (`None`) the tenant's own redaction policy.
    async fn set_redaction_policy(
        &self,
        tenant: &TenantId,
        policy: Option<&Policy>,
        at: Timestamp,
    ) -> Result<(), StoreError>;

    /// Stores a new webhook subscription.
    async fn create_webhook(&self, sub: &WebhookSubscription) -> Result<(), StoreError>;

    /// A tenant's subscriptions, or every tenant's (`None`, for the delivery worker).
    async fn webhooks(
        &self,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<WebhookSubscription>, StoreError>;

    /// Deletes a subscription and its deliveries; false when the tenant has none by that id.
    async fn delete_webhook(&self, tenant: &TenantId, id: &str) -> Result<bool, StoreError>;

    /// Replaces a subscription's sealed secrets (rotation); false when there is none.
    async fn set_webhook_secrets(
        &self,
        tenant: &TenantId,
        id: &str,
        secrets: &str,
    ) -> Result<bool, StoreError>;

    /// Enqueues `deliveries` for subscription `id` (a message already enqueued for it is not
    /// enqueued again) and, with `cursor`, moves its cursor there — in one transaction.
    async fn enqueue_deliveries(
        &self,
        tenant: &TenantId,
        id: &str,
        deliveries: &[NewDelivery],
        cursor: Option<i64>,
        at: Timestamp,
    ) -> Result<(), StoreError>;

    /// Pending deliveries due at `now` (Unix ms), oldest first.
    async fn due_deliveries(&self, now: i64, limit: i64) -> Result<Vec<Delivery>, StoreError>;

    /// Records an attempt's outcome.
    async fn record_attempt(
        &self,
        delivery_id: &str,
        attempt: &Attempt,
        at: Timestamp,
    ) -> Result<(), StoreError>;

    /// A subscription's delivery log, newest first, optionally of one status.
    async fn deliveries(
        &self,
        tenant: &TenantId,
        id: &str,
        status: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Delivery>, StoreError>;

    /// Puts a dead (or pending) delivery back in the queue, due at `now` with no attempts
    /// counted; false when the tenant's subscription has no such delivery.
    async fn retry_delivery(
        &self,
        tenant: &TenantId,
        id: &str,
        delivery_id: &str,
        now: i64,
    ) -> Result<bool, StoreError>;
}

/// Opens (and migrates) the store a URL names: `sqlite://PATH`, `sqlite::memory:` or
/// `postgres://…`.
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    Ok(Arc::new(SqlStore::open(url).await?))
}

/// Opens a store that exists already, to read it: a missing SQLite file, a database that is
/// not a Vigil store or one of another schema version is an error, and nothing is created or
/// migrated (`vigil verify`, `vigil tail`, `vigil keys list`).
pub async fn open_existing(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    Ok(Arc::new(SqlStore::open_existing(url).await?))
}
