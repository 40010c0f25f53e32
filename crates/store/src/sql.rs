//! Both engines, one implementation: the SQL is shared (with `$n` placeholders, which SQLite
//! and Postgres both bind by position), and [`with_pool!`] instantiates each statement for the
//! engine's concrete pool type, so each is type-checked against its own driver.

use crate::db::Database;
use crate::query::{time_buckets, time_cover, ActionFilter, Bind, Query, Where};
use crate::{
    Attempt, Delivery, Existing, NewDelivery, NewRecord, PublicKey, Purged, Space, Store,
    StoreError, StoredCheckpoint, WebhookSubscription,
};
use async_trait::async_trait;
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;
use sqlx::{QueryBuilder, Row};
use std::collections::HashMap;
use vigil_core::chain::ChainHead;
use vigil_core::checkpoint::Checkpoint;
use vigil_core::hash::Hash32;
use vigil_core::ids::TenantId;
use vigil_core::record::Record;
use vigil_core::redaction::Policy;
use vigil_core::stored::{StoredBatch, StoredRow};
use vigil_core::time::Timestamp;

pub(crate) static SQLITE_MIGRATIONS: sqlx::migrate::Migrator =
    sqlx::migrate!("./migrations/sqlite");
pub(crate) static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator =
    sqlx::migrate!("./migrations/postgres");

/// Rows per multi-row INSERT: 25 columns × 400 rows stays under both engines' bind limits.
const INSERT_CHUNK: usize = 400;

const COLUMNS: &str = "tenant_id, seq, event_id, occurred_at, received_at, actor_type, actor_id, action, \
     resource_type, resource_id, outcome, severity, source_service, producer_id, producer_seq, trace_id, \
     schema_version, payload_commitments, payload, payload_salts, leaf_hash, chain_hash, subject_ref, payload_sealed";

#[derive(Debug)]
enum Pool {
    Sqlite {
        pool: SqlitePool,
        // SQLite has one writer at a time; queueing writers here instead of in SQLite's busy
        // handler keeps latency even and never surfaces SQLITE_BUSY.
        write: tokio::sync::Mutex<()>,
        // How long writers have held `write` so far, in nanoseconds: the share of time the one
        // writer is busy, SQLite ingest's bound (BENCHMARKS.md).
        held: std::sync::atomic::AtomicU64,
        // The database file (None in memory), which whole-chain scans read directly.
        file: Option<std::path::PathBuf>,
    },
    Postgres(PgPool),
}

impl Pool {
    fn sqlite(pool: SqlitePool, url: &str) -> Pool {
        let memory = url.contains(":memory:") || url.contains("mode=memory");
        let file = (!memory).then(|| pool.connect_options().get_filename().to_path_buf());
        Pool::Sqlite {
            pool,
            write: tokio::sync::Mutex::new(()),
            held: std::sync::atomic::AtomicU64::new(0),
            file,
        }
    }
}

/// SQLite's write lock, held: adds how long to the store's count when released.
struct WriteGuard<'a> {
    _lock: tokio::sync::MutexGuard<'a, ()>,
    since: std::time::Instant,
    held: &'a std::sync::atomic::AtomicU64,
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        let nanos = u64::try_from(self.since.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.held
            .fetch_add(nanos, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A store on SQLite or Postgres.
#[derive(Debug)]
pub struct SqlStore {
    pool: Pool,
}

/// Runs `$body` with `$p` bound to the concrete pool of whichever engine this is.
macro_rules! with_pool {
    ($self:expr, $p:ident => $body:expr) => {
        match &$self.pool {
            Pool::Sqlite { pool: $p, .. } => $body,
            Pool::Postgres($p) => $body,
        }
    };
}

#[path = "webhooks.rs"]
mod webhooks;

/// Binds `Bind`s in order onto a `sqlx::query`.
macro_rules! bind_all {
    ($q:expr, $binds:expr) => {{
        let mut q = $q;
        for b in $binds {
            q = match b {
                Bind::Text(s) => q.bind(s),
                Bind::Int(i) => q.bind(i),
            };
        }
        q
    }};
}

impl SqlStore {
    /// SQLite's one-writer queue (see [`Pool::Sqlite`]); nothing on Postgres.
    async fn write_guard(&self) -> Option<WriteGuard<'_>> {
        match &self.pool {
            Pool::Sqlite { write, held, .. } => Some(WriteGuard {
                _lock: write.lock().await,
                since: std::time::Instant::now(),
                held,
            }),
            Pool::Postgres(_) => None,
        }
    }

    /// Opens and migrates the store at `url`.
    pub async fn open(url: &str) -> Result<SqlStore, StoreError> {
        let pool = match Database::open(url, &SQLITE_MIGRATIONS, &POSTGRES_MIGRATIONS).await? {
            Database::Sqlite(pool) => Pool::sqlite(pool, url),
            Database::Postgres(pool) => Pool::Postgres(pool),
        };
        Ok(SqlStore { pool })
    }

    /// How to fetch a page for `q` (see [`Plan`]): the time index bounds a window's seqs, a
    /// prefix becomes the actions under it (SQLite).
    async fn plan(&self, tenant: &TenantId, q: &Query) -> Result<Plan, StoreError> {
        if q.limit <= 0 {
            return Ok(Plan::Empty);
        }
        if q.since.is_some() || q.until.is_some() {
            return self.time_plan(tenant, q).await;
        }
        // Postgres walks the primary key backwards and filters the range itself (a prefix
        // usually matches a good share of a tenant); its planning, ~1 ms per statement, would
        // cost more than a second statement saves.
        if let (Some(ActionFilter::Prefix(prefix)), Pool::Sqlite { .. }) = (&q.action, &self.pool) {
            return self.prefix_plan(tenant, prefix).await;
        }
        Ok(Plan::Direct)
    }

    /// A window's records lie between the lowest and highest seq of the minutes, hours and
    /// days covering it. Walking that seq range newest first finds a page after reading about
    /// `limit × range / count` rows; fetching the window by time reads all `count` and sorts
    /// them. The cheaper one is taken (for records that arrive roughly in the order they
    /// occurred, the range is the window's own records).
    async fn time_plan(&self, tenant: &TenantId, q: &Query) -> Result<Plan, StoreError> {
        let cover = time_cover(q.since, q.until);
        if cover.is_empty() || matches!((q.since, q.until), (Some(s), Some(u)) if s >= u) {
            return Ok(Plan::Empty);
        }
        let mut w = Where::default();
        for (i, r) in cover.into_iter().enumerate() {
            w.cond(
                if i == 0 {
                    "(level = ?"
                } else {
                    " OR (level = ?"
                },
                Bind::Int(r.level),
            );
            w.cond(" AND bucket >= ?", Bind::Text(r.from));
            w.cond(" AND bucket < ?)", Bind::Text(r.to));
        }
        let sql = format!(
            "SELECT MIN(min_seq), MAX(max_seq), CAST(SUM(n) AS BIGINT) FROM event_time_index \
             WHERE tenant_id = $1 AND ({})",
            w.sql
        );
        let op = "reading the time index";
        let row: (Option<i64>, Option<i64>, Option<i64>) = with_pool!(self, p => {
            bind_all!(sqlx::query_as(&sql).persistent(false).bind(tenant.as_str()), w.binds).fetch_one(p).await
        })
        .map_err(|e| StoreError::from_sqlx(op, e))?;
        let (Some(lo), Some(hi), Some(count)) = row else {
            return Ok(Plan::Empty);
        };
        let hi = q.before_seq.map_or(hi, |before| hi.min(before - 1));
        if hi < lo {
            return Ok(Plan::Empty);
        }
        let range = hi - lo + 1;
        let walk = (q.limit.saturating_mul(range) / count.max(1)).min(range);
        Ok(if walk <= count {
            Plan::Seqs { lo, hi }
        } else {
            Plan::Direct
        })
    }

    /// The distinct actions under `prefix.` (one index seek each), so that each is walked in
    /// seq order instead of fetching and sorting every record under the prefix.
    async fn prefix_plan(&self, tenant: &TenantId, prefix: &str) -> Result<Plan, StoreError> {
        /// Beyond this many actions, one walk over the prefix's range is cheaper.
        const MAX_ACTIONS: i64 = 32;
        let (from, to) = crate::query::prefix_range(prefix);
        let sql = format!(
            "WITH RECURSIVE a(action, k) AS ( \
               SELECT (SELECT action FROM events WHERE tenant_id = $1 AND action >= $2 AND action < $3 ORDER BY action LIMIT 1), 1 \
               UNION ALL \
               SELECT (SELECT e.action FROM events e WHERE e.tenant_id = $1 AND e.action > a.action AND e.action < $3 ORDER BY e.action LIMIT 1), a.k + 1 \
               FROM a WHERE a.action IS NOT NULL AND a.k <= {MAX_ACTIONS}) \
             SELECT action FROM a WHERE action IS NOT NULL"
        );
        let op = "listing the actions under a prefix";
        let actions: Vec<String> = with_pool!(self, p => {
            sqlx::query_scalar(&sql).persistent(false).bind(tenant.as_str()).bind(&from).bind(&to).fetch_all(p).await
        })
        .map_err(|e| StoreError::from_sqlx(op, e))?;
        Ok(match actions.len() {
            0 => Plan::Empty,
            n if n as i64 > MAX_ACTIONS => Plan::Direct,
            _ => Plan::Actions(actions),
        })
    }

    /// Opens an existing, migrated store to read it: nothing created, nothing migrated
    /// ([`Database::open_existing`]).
    pub async fn open_existing(url: &str) -> Result<SqlStore, StoreError> {
        let pool =
            match Database::open_existing(url, &SQLITE_MIGRATIONS, &POSTGRES_MIGRATIONS).await? {
                Database::Sqlite(pool) => Pool::sqlite(pool, url),
                Database::Postgres(pool) => Pool::Postgres(pool),
            };
        Ok(SqlStore { pool })
    }
}

/// The upsert tail that merges a batch's time buckets into `event_time_index`, with the
/// engine's two-argument minimum and maximum.
macro_rules! merge_time_buckets {
    ($least:literal, $greatest:literal) => {
        concat!(
            " ON CONFLICT (tenant_id, level, bucket) DO UPDATE SET min_seq = ",
            $least,
            "(event_time_index.min_seq, excluded.min_seq), max_seq = ",
            $greatest,
            "(event_time_index.max_seq, excluded.max_seq), n = event_time_index.n + excluded.n"
        )
    };
}

/// How a page of records is fetched.
enum Plan {
    /// Nothing can match.
    Empty,
    /// The filters as given, newest first (each filter's index delivers seq order).
    Direct,
    /// The filters, within seqs `lo..=hi` (a time window's records lie there).
    Seqs { lo: i64, hi: i64 },
    /// The newest page of each of these actions, merged: a prefix filter.
    Actions(Vec<String>),
}

impl Plan {
    /// The plan's name, for the query's span.
    fn name(&self) -> &'static str {
        match self {
            Plan::Empty => "empty",
            Plan::Direct => "direct",
            Plan::Seqs { .. } => "seq range",
            Plan::Actions(_) => "actions",
        }
    }
}

/// Copies the write-ahead log into the database file now, so that the file shrinks after a
/// vacuum and what was overwritten (purged values, destroyed keys) is zeroed there; the log's
/// own old frames are overwritten as it is reused. Passive: it never waits for, or disturbs,
/// readers and writers of other connections.
async fn checkpoint_wal(pool: &SqlitePool) -> Result<(), StoreError> {
    sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
        .execute(pool)
        .await
        .map(|_| ())
        .map_err(|e| StoreError::from_sqlx("checkpointing the write-ahead log", e))
}

/// A row of [`COLUMNS`], borrowed, read with the given column readers (text, nullable text,
/// integer, nullable integer: each takes the column's index and returns a `Result`).
macro_rules! stored_row {
    ($text:expr, $opt:expr, $int:expr, $opt_int:expr) => {{
        let (text, opt, int, opt_int) = ($text, $opt, $int, $opt_int);
        StoredRow {
            tenant_id: text(0)?,
            seq: int(1)?,
            event_id: text(2)?,
            occurred_at: text(3)?,
            received_at: text(4)?,
            actor_type: text(5)?,
            actor_id: text(6)?,
            action: text(7)?,
            resource_type: text(8)?,
            resource_id: text(9)?,
            outcome: text(10)?,
            severity: text(11)?,
            source_service: text(12)?,
            producer_id: opt(13)?,
            producer_seq: opt_int(14)?,
            trace_id: opt(15)?,
            schema_version: int(16)?,
            payload_commitments: text(17)?,
            payload: text(18)?,
            payload_salts: text(19)?,
            leaf_hash: text(20)?,
            chain_hash: text(21)?,
            subject_ref: opt(22)?,
            payload_sealed: text(23)?,
        }
    }};
    ($row:expr) => {{
        let row = &$row;
        stored_row!(
            |i| row.try_get::<&str, _>(i),
            |i| row.try_get::<Option<&str>, _>(i),
            |i| row.try_get::<i64, _>(i),
            |i| row.try_get::<Option<i64>, _>(i)
        )
    }};
}

/// A row of [`COLUMNS`] as a [`Record`]; an unparseable JSON column reads as a marker member,
/// so that verification reports the record instead of the read failing.
macro_rules! record_from_row {
    ($row:expr) => {{
        stored_row!($row).to_record()
    }};
}

/// Reads `tenant`'s rows after seq `after` from the SQLite file at `path` on this (blocking)
/// thread, through a read-only connection of its own, `batch` rows per statement (each its
/// own short read transaction), each row copied into the batch as it stands, and sends the
/// batches until the rows end or the receiver is gone. sqlx's driver hands every row from its
/// worker thread to the task over a channel and allocates each column, which cost several
/// times what verifying the row does.
fn send_stored_sqlite(
    path: &std::path::Path,
    tenant: &str,
    mut after: i64,
    batch: i64,
    tx: &tokio::sync::mpsc::Sender<Result<StoredBatch, StoreError>>,
) -> Result<(), rusqlite::Error> {
    use rusqlite::OpenFlags;
    let conn = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // Pages are read through the page cache mapped into memory instead of copied by a
    // read() each (a tenth of the scan's CPU was the kernel copying pages).
    conn.pragma_update(None, "mmap_size", 1i64 << 30)?;
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM events WHERE tenant_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
    ))?;
    loop {
        let mut rows = stmt.query(rusqlite::params![tenant, after, batch])?;
        let mut out = StoredBatch::with_capacity(usize::try_from(batch).unwrap_or(0), 1024);
        while let Some(row) = rows.next()? {
            let opt = |i: usize| -> Result<Option<&str>, rusqlite::Error> {
                row.get_ref(i)?.as_str_or_null().map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(
                        i,
                        rusqlite::types::Type::Text,
                        Box::new(e),
                    )
                })
            };
            // A NULL where the schema forbids one reads as empty text (and fails verification).
            let text = |i: usize| opt(i).map(Option::unwrap_or_default);
            out.push(&stored_row!(text, opt, |i| row.get(i), |i| row.get(i)));
        }
        let Some(last) = out.last_seq() else {
            return Ok(());
        };
        let full = out.len() as i64 == batch;
        if tx.blocking_send(Ok(out)).is_err() || !full {
            return Ok(());
        }
        after = last;
    }
}

macro_rules! checkpoint_from_row {
    ($row:expr) => {{
        let row = $row;
        let hash: String = row.try_get(2)?;
        StoredCheckpoint {
            checkpoint: Checkpoint {
                tenant: row.try_get(0)?,
                size: row.try_get(1)?,
                chain_hash: Hash32::from_hex(&hash).unwrap_or(Hash32::ZERO),
                root: {
                    let note: String = row.try_get(5)?;
                    vigil_core::checkpoint::root_in(&note)
                },
                time: row.try_get(3)?,
            },
            key_name: row.try_get(4)?,
            note: row.try_get(5)?,
        }
    }};
}

/// `$2,$3,…` for `n` values that follow the tenant (`$1`).
fn placeholders(n: usize) -> String {
    (0..n)
        .map(|i| format!("${}", i + 2))
        .collect::<Vec<_>>()
        .join(",")
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("maps of strings and JSON values serialize")
}

/// A hash column (lowercase hex) read back.
fn hash_column(op: &'static str, hex: &str) -> Result<Hash32, StoreError> {
    Hash32::from_hex(hex).ok_or_else(|| StoreError::Database {
        op,
        message: format!("a malformed hash {hex:?}: run vigil verify"),
    })
}

#[async_trait]
impl Store for SqlStore {
    fn engine(&self) -> &'static str {
        match self.pool {
            Pool::Sqlite { .. } => "sqlite",
            Pool::Postgres(_) => "postgres",
        }
    }

    fn write_lock_held(&self) -> Option<std::time::Duration> {
        match &self.pool {
            Pool::Sqlite { held, .. } => Some(std::time::Duration::from_nanos(
                held.load(std::sync::atomic::Ordering::Relaxed),
            )),
            Pool::Postgres(_) => None,
        }
    }

    fn pool_stats(&self) -> crate::PoolStats {
        match &self.pool {
            Pool::Sqlite { pool, .. } => Database::Sqlite(pool.clone()).pool_stats(),
            Pool::Postgres(pool) => Database::Postgres(pool.clone()).pool_stats(),
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        with_pool!(self, p => sqlx::query("SELECT 1").execute(p).await.map(|_| ()))
            .map_err(|e| StoreError::from_sqlx("checking the store", e))
    }

    #[tracing::instrument(name = "store.head", skip_all, fields(db.system.name = self.engine(), tenant = %tenant))]
    async fn head(&self, tenant: &TenantId) -> Result<ChainHead, StoreError> {
        const SQL: &str =
            "SELECT seq, chain_hash FROM events WHERE tenant_id = $1 ORDER BY seq DESC LIMIT 1";
        let row: Option<(i64, String)> = with_pool!(self, p => sqlx::query_as(SQL).bind(tenant.as_str()).fetch_optional(p).await)
            .map_err(|e| StoreError::from_sqlx("reading the chain head", e))?;
        Ok(match row {
            None => ChainHead::genesis(),
            Some((seq, hash)) => ChainHead {
                seq,
                hash: Hash32::from_hex(&hash).ok_or_else(|| StoreError::Database {
                    op: "reading the chain head",
                    message: format!("seq {seq} has a malformed chain hash: run vigil verify"),
                })?,
            },
        })
    }

    async fn tenants(&self) -> Result<Vec<TenantId>, StoreError> {
        const SQL: &str = "SELECT tenant_id FROM tenants ORDER BY tenant_id";
        let names: Vec<String> = with_pool!(self, p => sqlx::query_scalar(SQL).fetch_all(p).await)
            .map_err(|e| StoreError::from_sqlx("listing tenants", e))?;
        names
            .iter()
            .map(|n| {
                TenantId::parse(n).map_err(|e| StoreError::Database {
                    op: "listing tenants",
                    message: format!("the store holds tenant id {n:?}, which is not one: {e}"),
                })
            })
            .collect()
    }

    async fn existing(
        &self,
        tenant: &TenantId,
        event_ids: &[String],
    ) -> Result<HashMap<String, Existing>, StoreError> {
        let mut out = HashMap::new();
        for chunk in event_ids.chunks(500) {
            let sql = format!("SELECT event_id, seq, content_hash FROM events WHERE tenant_id = $1 AND event_id IN ({})", placeholders(chunk.len()));
            let rows: Vec<(String, i64, String)> = with_pool!(self, p => {
                // Not a cached prepared statement: Postgres would switch to a generic plan for the long
                // IN list after five runs, and that plan scans the whole tenant (seconds, not ms).
                let mut q = sqlx::query_as(&sql).persistent(false).bind(tenant.as_str());
                for id in chunk {
                    q = q.bind(id);
                }
                q.fetch_all(p).await
            })
            .map_err(|e| StoreError::from_sqlx("looking up event ids", e))?;
            for (id, seq, hex) in rows {
                let content_hash = Hash32::from_hex(&hex).ok_or_else(|| StoreError::Database {
                    op: "looking up event ids",
                    message: format!("event {id}: its stored content hash is not a hash"),
                })?;
                out.insert(id, Existing { seq, content_hash });
            }
        }
        Ok(out)
    }

    async fn producer_seqs(
        &self,
        tenant: &TenantId,
        producer_ids: &[String],
    ) -> Result<HashMap<String, i64>, StoreError> {
        let mut out = HashMap::new();
        for chunk in producer_ids.chunks(500) {
            let sql = format!("SELECT producer_id, last_seq FROM producers WHERE tenant_id = $1 AND producer_id IN ({})", placeholders(chunk.len()));
            let rows: Vec<(String, i64)> = with_pool!(self, p => {
                // Not a cached prepared statement: Postgres would switch to a generic plan for the long
                // IN list after five runs, and that plan scans the whole tenant (seconds, not ms).
                let mut q = sqlx::query_as(&sql).persistent(false).bind(tenant.as_str());
                for id in chunk {
                    q = q.bind(id);
                }
                q.fetch_all(p).await
            })
            .map_err(|e| StoreError::from_sqlx("reading producer sequences", e))?;
            out.extend(rows);
        }
        Ok(out)
    }

    #[tracing::instrument(name = "store.append", skip_all, fields(db.system.name = self.engine(), tenant = %tenant))]
    async fn append(
        &self,
        tenant: &TenantId,
        records: &[NewRecord],
        producers: &[(String, i64)],
    ) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let op = "appending records";
        let _guard = self.write_guard().await;
        let first_seq = records[0].record.seq;
        let merge_time_buckets = match self.pool {
            Pool::Sqlite { .. } => merge_time_buckets!("min", "max"),
            Pool::Postgres(_) => merge_time_buckets!("LEAST", "GREATEST"),
        };
        with_pool!(self, p => {
            let mut tx = p.begin().await.map_err(|e| StoreError::from_sqlx(op, e))?;
            for chunk in records.chunks(INSERT_CHUNK) {
                let mut qb =
                    QueryBuilder::new(format!("INSERT INTO events ({COLUMNS}, content_hash) "));
                qb.push_values(chunk, |mut b, n| {
                    let r = &n.record;
                    b.push_bind(&r.tenant_id)
                        .push_bind(r.seq)
                        .push_bind(&r.event_id)
                        .push_bind(&r.occurred_at)
                        .push_bind(&r.received_at)
                        .push_bind(&r.actor.kind)
                        .push_bind(&r.actor.id)
                        .push_bind(&r.action)
                        .push_bind(&r.resource.kind)
                        .push_bind(&r.resource.id)
                        .push_bind(&r.outcome)
                        .push_bind(&r.severity)
                        .push_bind(&r.source.service)
                        .push_bind(&r.source.producer_id)
                        .push_bind(r.source.producer_seq)
                        .push_bind(&r.trace_id)
                        .push_bind(r.schema_version)
                        .push_bind(to_json(&r.payload_commitments))
                        .push_bind(to_json(&r.payload))
                        .push_bind(to_json(&r.payload_salts))
                        .push_bind(&r.leaf_hash)
                        .push_bind(&r.chain_hash)
                        .push_bind(&r.subject_ref)
                        .push_bind(to_json(&r.sealed))
                        .push_bind(n.content_hash.to_hex());
                });
                qb.build().execute(&mut *tx).await.map_err(|e| StoreError::from_sqlx(op, e))?;
            }
            let buckets = time_buckets(records.iter().map(|n| (n.record.occurred_at.as_str(), n.record.seq)));
            for chunk in buckets.chunks(INSERT_CHUNK) {
                let mut qb = QueryBuilder::new("INSERT INTO event_time_index (tenant_id, level, bucket, min_seq, max_seq, n) ");
                qb.push_values(chunk, |mut b, r| {
                    b.push_bind(tenant.as_str())
                        .push_bind(r.level)
                        .push_bind(&r.bucket)
                        .push_bind(r.min_seq)
                        .push_bind(r.max_seq)
                        .push_bind(r.n);
                });
                qb.push(merge_time_buckets);
                qb.build().execute(&mut *tx).await.map_err(|e| StoreError::from_sqlx(op, e))?;
            }
            // One statement for the group's producers (not a round trip each), in a fixed
            // order so two writers upserting the same producers lock them alike; a producer
            // named twice keeps its last position, as one upsert after another would.
            let producers: Vec<(&str, i64)> = producers
                .iter()
                .map(|(p, s)| (p.as_str(), *s))
                .collect::<std::collections::BTreeMap<_, _>>()
                .into_iter()
                .collect();
            for chunk in producers.chunks(INSERT_CHUNK) {
                let mut qb = QueryBuilder::new("INSERT INTO producers (tenant_id, producer_id, last_seq) ");
                qb.push_values(chunk, |mut b, (producer, seq)| {
                    b.push_bind(tenant.as_str()).push_bind(*producer).push_bind(*seq);
                });
                qb.push(" ON CONFLICT (tenant_id, producer_id) DO UPDATE SET last_seq = excluded.last_seq");
                qb.build().execute(&mut *tx).await.map_err(|e| StoreError::from_sqlx(op, e))?;
            }
            if first_seq == 1 {
                sqlx::query("INSERT INTO tenants (tenant_id, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                    .bind(tenant.as_str())
                    .bind(&records[0].record.received_at)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| StoreError::from_sqlx(op, e))?;
            }
            tx.commit().await.map_err(|e| StoreError::from_sqlx(op, e))
        })
    }

    #[tracing::instrument(name = "store.get", skip_all, fields(db.system.name = self.engine(), tenant = %tenant))]
    async fn get(&self, tenant: &TenantId, event_id: &str) -> Result<Option<Record>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM events WHERE tenant_id = $1 AND event_id = $2");
        let op = "reading an event";
        with_pool!(self, p => {
            let row = sqlx::query(&sql).bind(tenant.as_str()).bind(event_id).fetch_optional(p).await.map_err(|e| StoreError::from_sqlx(op, e))?;
            row.map(|row| Ok::<_, sqlx::Error>(record_from_row!(row))).transpose().map_err(|e| StoreError::from_sqlx(op, e))
        })
    }

    #[tracing::instrument(name = "store.query", skip_all, fields(db.system.name = self.engine(), tenant = %tenant, plan = tracing::field::Empty))]
    async fn query(&self, tenant: &TenantId, q: &Query) -> Result<Vec<Record>, StoreError> {
        let limit = q.limit.max(0);
        let mut w = Where::default();
        let plan = self.plan(tenant, q).await?;
        tracing::Span::current().record("plan", plan.name());
        let sql = match plan {
            Plan::Empty => return Ok(vec![]),
            plan @ (Plan::Direct | Plan::Seqs { .. }) => {
                if let Plan::Seqs { lo, hi } = plan {
                    w.cond(" AND seq >= ?", Bind::Int(lo));
                    w.cond(" AND seq <= ?", Bind::Int(hi));
                }
                q.push_conditions(&mut w);
                format!("SELECT {COLUMNS} FROM events WHERE tenant_id = $1{} ORDER BY seq DESC LIMIT {limit}", w.sql)
            }
            Plan::Actions(actions) => {
                let mut walks = vec![];
                for (i, action) in actions.into_iter().enumerate() {
                    let exact = Query {
                        action: Some(ActionFilter::Exact(action)),
                        ..q.clone()
                    };
                    let at = w.sql.len();
                    exact.push_conditions(&mut w);
                    let cond = w.sql.split_off(at);
                    walks.push(format!("SELECT seq FROM (SELECT seq FROM events WHERE tenant_id = $1{cond} ORDER BY seq DESC LIMIT {limit}) AS a{i}"));
                }
                format!("SELECT {COLUMNS} FROM events WHERE tenant_id = $1 AND seq IN ({}) ORDER BY seq DESC LIMIT {limit}", walks.join(" UNION ALL "))
            }
        };
        let op = "querying events";
        let binds = w.binds;
        with_pool!(self, p => {
            let rows = bind_all!(sqlx::query(&sql).persistent(false).bind(tenant.as_str()), binds).fetch_all(p).await.map_err(|e| StoreError::from_sqlx(op, e))?;
            rows.iter().map(|row| Ok::<_, sqlx::Error>(record_from_row!(row))).collect::<Result<Vec<_>, _>>().map_err(|e| StoreError::from_sqlx(op, e))
        })
    }

    async fn scan(
        &self,
        tenant: &TenantId,
        after: i64,
        limit: i64,
    ) -> Result<Vec<Record>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM events WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
        );
        let op = "scanning records";
        with_pool!(self, p => {
            let rows = sqlx::query(&sql).bind(tenant.as_str()).bind(after).bind(limit).fetch_all(p).await.map_err(|e| StoreError::from_sqlx(op, e))?;
            rows.iter().map(|row| Ok::<_, sqlx::Error>(record_from_row!(row))).collect::<Result<Vec<_>, _>>().map_err(|e| StoreError::from_sqlx(op, e))
        })
    }

    fn scan_stored(
        &self,
        tenant: &TenantId,
        after: i64,
        batch: i64,
    ) -> tokio::sync::mpsc::Receiver<Result<StoredBatch, StoreError>> {
        const OP: &str = "scanning records";
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let tenant = tenant.as_str().to_owned();
        let batch = batch.max(1);
        if let Pool::Sqlite {
            file: Some(path), ..
        } = &self.pool
        {
            let path = path.clone();
            tokio::task::spawn_blocking(move || {
                if let Err(e) = send_stored_sqlite(&path, &tenant, after, batch, &tx) {
                    let _ = tx.blocking_send(Err(StoreError::from_rusqlite(OP, e)));
                }
            });
            return rx;
        }
        let db = match &self.pool {
            Pool::Sqlite { pool, .. } => Database::Sqlite(pool.clone()),
            Pool::Postgres(pool) => Database::Postgres(pool.clone()),
        };
        tokio::spawn(async move {
            let sql = format!(
                "SELECT {COLUMNS} FROM events WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
            );
            let mut after = after;
            loop {
                let read = crate::with_db!(&db, p => {
                    match sqlx::query(&sql).bind(&tenant).bind(after).bind(batch).fetch_all(p).await {
                        Ok(rows) => {
                            let mut out = StoredBatch::with_capacity(rows.len(), 1024);
                            rows.iter()
                                .try_for_each(|row| {
                                    out.push(&stored_row!(row));
                                    Ok::<_, sqlx::Error>(())
                                })
                                .map(|()| out)
                        }
                        Err(e) => Err(e),
                    }
                });
                let out = match read {
                    Ok(out) => out,
                    Err(e) => {
                        let _ = tx.send(Err(StoreError::from_sqlx(OP, e))).await;
                        return;
                    }
                };
                let Some(last) = out.last_seq() else { return };
                let full = out.len() as i64 == batch;
                if tx.send(Ok(out)).await.is_err() || !full {
                    return;
                }
                after = last;
            }
        });
        rx
    }

    async fn put_checkpoint(
        &self,
        tenant: &TenantId,
        cp: &StoredCheckpoint,
    ) -> Result<(), StoreError> {
        const SQL: &str =
            "INSERT INTO checkpoints (tenant_id, size, chain_hash, time, key_name, note) \
                           VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING";
        with_pool!(self, p => sqlx::query(SQL)
            .bind(tenant.as_str())
            .bind(cp.checkpoint.size)
            .bind(cp.checkpoint.chain_hash.to_hex())
            .bind(&cp.checkpoint.time)
            .bind(&cp.key_name)
            .bind(&cp.note)
            .execute(p)
            .await
            .map(|_| ()))
        .map_err(|e| StoreError::from_sqlx("storing a checkpoint", e))
    }

    async fn latest_checkpoint(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<StoredCheckpoint>, StoreError> {
        const SQL: &str =
            "SELECT tenant_id, size, chain_hash, time, key_name, note FROM checkpoints \
                           WHERE tenant_id = $1 ORDER BY size DESC LIMIT 1";
        let op = "reading the latest checkpoint";
        with_pool!(self, p => {
            let row = sqlx::query(SQL).bind(tenant.as_str()).fetch_optional(p).await.map_err(|e| StoreError::from_sqlx(op, e))?;
            row.map(|row| Ok::<_, sqlx::Error>(checkpoint_from_row!(row))).transpose().map_err(|e| StoreError::from_sqlx(op, e))
        })
    }

    async fn checkpoints(&self, tenant: &TenantId) -> Result<Vec<StoredCheckpoint>, StoreError> {
        const SQL: &str =
            "SELECT tenant_id, size, chain_hash, time, key_name, note FROM checkpoints \
                           WHERE tenant_id = $1 ORDER BY size";
        let op = "reading checkpoints";
        with_pool!(self, p => {
            let rows = sqlx::query(SQL).bind(tenant.as_str()).fetch_all(p).await.map_err(|e| StoreError::from_sqlx(op, e))?;
            rows.iter().map(|row| Ok::<_, sqlx::Error>(checkpoint_from_row!(row))).collect::<Result<Vec<_>, _>>().map_err(|e| StoreError::from_sqlx(op, e))
        })
    }

    async fn leaf_hashes(
        &self,
        tenant: &TenantId,
        from_seq: i64,
        to_seq: i64,
    ) -> Result<Vec<Hash32>, StoreError> {
        const SQL: &str = "SELECT leaf_hash FROM events WHERE tenant_id = $1 AND seq >= $2 \
                           AND seq <= $3 ORDER BY seq";
        let op = "reading leaf hashes";
        let rows: Vec<String> = with_pool!(self, p => sqlx::query_scalar(SQL)
            .bind(tenant.as_str()).bind(from_seq).bind(to_seq).fetch_all(p).await)
        .map_err(|e| StoreError::from_sqlx(op, e))?;
        rows.iter().map(|h| hash_column(op, h)).collect()
    }

    async fn merkle_nodes(
        &self,
        tenant: &TenantId,
        level: u32,
        from: u64,
        to: u64,
    ) -> Result<Vec<Hash32>, StoreError> {
        const SQL: &str = "SELECT idx, hash FROM merkle_nodes WHERE tenant_id = $1 AND level = $2 \
                           AND idx >= $3 AND idx < $4 ORDER BY idx";
        let op = "reading Merkle nodes";
        let rows: Vec<(i64, String)> = with_pool!(self, p => sqlx::query_as(SQL)
            .bind(tenant.as_str()).bind(level as i32).bind(from as i64).bind(to as i64).fetch_all(p).await)
            .map_err(|e| StoreError::from_sqlx(op, e))?;
        let mut out = Vec::with_capacity(rows.len());
        for (i, (idx, hash)) in rows.iter().enumerate() {
            if *idx != from as i64 + i as i64 {
                break;
            }
            out.push(hash_column(op, hash)?);
        }
        Ok(out)
    }

    async fn put_merkle_nodes(
        &self,
        tenant: &TenantId,
        nodes: &[(u32, u64, Hash32)],
    ) -> Result<(), StoreError> {
        const SQL: &str =
            "INSERT INTO merkle_nodes (tenant_id, level, idx, hash) VALUES ($1, $2, $3, $4) \
                           ON CONFLICT DO NOTHING";
        let op = "storing Merkle nodes";
        if nodes.is_empty() {
            return Ok(());
        }
        with_pool!(self, p => {
            let mut tx = p.begin().await.map_err(|e| StoreError::from_sqlx(op, e))?;
            for (level, idx, hash) in nodes {
                sqlx::query(SQL)
                    .bind(tenant.as_str())
                    .bind(*level as i32)
                    .bind(*idx as i64)
                    .bind(hash.to_hex())
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| StoreError::from_sqlx(op, e))?;
            }
            tx.commit().await.map_err(|e| StoreError::from_sqlx(op, e))
        })
    }

    async fn merkle_tiles(
        &self,
        tenant: &TenantId,
        tiles: &[(u32, u64, u64)],
    ) -> Result<Vec<Option<Vec<Hash32>>>, StoreError> {
        let op = "reading Merkle tiles";
        if tiles.is_empty() {
            return Ok(Vec::new());
        }
        // One statement per number of tiles (a proof names about five), so each shape is
        // prepared once per connection.
        let mut sql = String::from(
            "SELECT level, idx, width, hashes FROM merkle_tiles WHERE tenant_id = $1 AND (",
        );
        for i in 0..tiles.len() {
            let sep = if i == 0 { "" } else { " OR " };
            sql += &format!("{sep}(level = ${} AND idx = ${})", 2 * i + 2, 2 * i + 3);
        }
        sql.push(')');
        let rows: Vec<(i32, i64, i32, Vec<u8>)> = with_pool!(self, p => {
            let mut q = sqlx::query_as(&sql).bind(tenant.as_str());
            for (level, index, _) in tiles {
                q = q.bind(*level as i32).bind(*index as i64);
            }
            q.fetch_all(p).await
        })
        .map_err(|e| StoreError::from_sqlx(op, e))?;
        tiles
            .iter()
            .map(|&(level, index, width)| {
                let Some((_, _, stored, blob)) = rows
                    .iter()
                    .find(|r| r.0 as u32 == level && r.1 as u64 == index)
                else {
                    return Ok(None);
                };
                let want = usize::try_from(width).unwrap_or(usize::MAX);
                if blob.len() != 32 * (*stored).max(0) as usize {
                    return Err(StoreError::Database {
                        op,
                        message: format!(
                            "tile {level}/{index} holds {} bytes for {stored} hashes: run vigil verify",
                            blob.len()
                        ),
                    });
                }
                Ok((*stored as usize >= want).then(|| {
                    blob.chunks_exact(32)
                        .take(want)
                        .map(|c| Hash32(c.try_into().expect("32-byte chunk")))
                        .collect()
                }))
            })
            .collect()
    }

    async fn put_merkle_tiles(
        &self,
        tenant: &TenantId,
        tiles: &[(u32, u64, Vec<Hash32>)],
    ) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO merkle_tiles (tenant_id, level, idx, width, hashes) \
                           VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, level, idx) \
                           DO UPDATE SET width = excluded.width, hashes = excluded.hashes \
                           WHERE excluded.width > merkle_tiles.width";
        let op = "storing Merkle tiles";
        if tiles.is_empty() {
            return Ok(());
        }
        with_pool!(self, p => {
            let mut tx = p.begin().await.map_err(|e| StoreError::from_sqlx(op, e))?;
            for (level, idx, hashes) in tiles {
                let blob: Vec<u8> = hashes.iter().flat_map(|h| h.0).collect();
                sqlx::query(SQL)
                    .bind(tenant.as_str())
                    .bind(*level as i32)
                    .bind(*idx as i64)
                    .bind(hashes.len() as i32)
                    .bind(blob)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| StoreError::from_sqlx(op, e))?;
            }
            tx.commit().await.map_err(|e| StoreError::from_sqlx(op, e))
        })
    }

    async fn put_public_key(&self, key: &PublicKey) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO signing_keys (key_id, name, verifier_key, created_at) VALUES ($1, $2, $3, $4) \
                           ON CONFLICT DO NOTHING";
        with_pool!(self, p => sqlx::query(SQL)
            .bind(&key.key_id)
            .bind(&key.name)
            .bind(&key.verifier_key)
            .bind(&key.created_at)
            .execute(p)
            .await
            .map(|_| ()))
        .map_err(|e| StoreError::from_sqlx("storing a public key", e))
    }

    async fn public_keys(&self) -> Result<Vec<PublicKey>, StoreError> {
        const SQL: &str =
            "SELECT key_id, name, verifier_key, created_at FROM signing_keys ORDER BY created_at";
        let rows: Vec<(String, String, String, String)> =
            with_pool!(self, p => sqlx::query_as(SQL).fetch_all(p).await)
                .map_err(|e| StoreError::from_sqlx("reading public keys", e))?;
        Ok(rows
            .into_iter()
            .map(|(key_id, name, verifier_key, created_at)| PublicKey {
                key_id,
                name,
                verifier_key,
                created_at,
            })
            .collect())
    }

    async fn last_seq_received_before(
        &self,
        tenant: &TenantId,
        cutoff: Timestamp,
        except_action: &str,
    ) -> Result<i64, StoreError> {
        // received_at is fixed-width RFC 3339 in UTC: text order is time order.
        const SQL: &str =
            "SELECT COALESCE(MAX(seq), 0) FROM events WHERE tenant_id = $1 AND received_at < $2 AND action <> $3";
        with_pool!(self, p => sqlx::query_scalar(SQL)
            .bind(tenant.as_str())
            .bind(cutoff.to_rfc3339())
            .bind(except_action)
            .fetch_one(p)
            .await)
        .map_err(|e| StoreError::from_sqlx("finding the retention cutoff", e))
    }

    async fn purge_payloads(
        &self,
        tenant: &TenantId,
        from_seq: i64,
        to_seq: i64,
        keep_action: &str,
    ) -> Result<Purged, StoreError> {
        // In slices, so a large purge never holds one long write transaction.
        const SLICE: i64 = 5_000;
        const WHERE: &str = "WHERE tenant_id = $1 AND seq BETWEEN $2 AND $3 \
                             AND (payload <> '{}' OR payload_sealed <> '{}') AND action <> $4";
        let size = match self.pool {
            Pool::Sqlite { .. } => {
                "LENGTH(CAST(payload AS BLOB)) + LENGTH(CAST(payload_salts AS BLOB)) + LENGTH(CAST(payload_sealed AS BLOB)) - 6"
            }
            Pool::Postgres(_) => {
                "octet_length(payload) + octet_length(payload_salts) + octet_length(payload_sealed) - 6"
            }
        };
        let measure = format!(
            "SELECT COUNT(*), CAST(COALESCE(SUM({size}), 0) AS BIGINT) FROM events {WHERE}"
        );
        let update = format!(
            "UPDATE events SET payload = '{{}}', payload_salts = '{{}}', payload_sealed = '{{}}' {WHERE}"
        );
        let op = "purging payloads";
        let mut out = Purged::default();
        let mut at = from_seq;
        while at <= to_seq {
            let end = (at + SLICE - 1).min(to_seq);
            let _guard = self.write_guard().await;
            // Measured, then cleared: nothing else writes these rows (appends take other seqs,
            // and a purge of the same range finds them cleared), so no transaction is needed
            // (on SQLite, one opened by the read would fail to become a write transaction if
            // a checkpoint was written meanwhile).
            let (records, bytes): (i64, i64) = with_pool!(self, p => {
                let counted: (i64, i64) = sqlx::query_as(&measure)
                    .bind(tenant.as_str()).bind(at).bind(end).bind(keep_action)
                    .fetch_one(p).await.map_err(|e| StoreError::from_sqlx(op, e))?;
                sqlx::query(&update)
                    .bind(tenant.as_str()).bind(at).bind(end).bind(keep_action)
                    .execute(p).await.map_err(|e| StoreError::from_sqlx(op, e))?;
                counted
            });
            out.records += records as u64;
            out.bytes += bytes.max(0) as u64;
            at = end + 1;
        }
        Ok(out)
    }

    async fn reclaim_space(&self, full: bool) -> Result<Space, StoreError> {
        let op = "reclaiming space";
        match &self.pool {
            Pool::Sqlite { pool, write, .. } => {
                let before = sqlite_size(pool).await?;
                let mode: i64 = sqlx::query_scalar("PRAGMA auto_vacuum")
                    .fetch_one(pool)
                    .await
                    .map_err(|e| StoreError::from_sqlx(op, e))?;
                if mode == 2 && !full {
                    // Incremental: free pages go back to the file system a slice at a time,
                    // so writers wait for one slice at most.
                    loop {
                        let free: i64 = sqlx::query_scalar("PRAGMA freelist_count")
                            .fetch_one(pool)
                            .await
                            .map_err(|e| StoreError::from_sqlx(op, e))?;
                        if free == 0 {
                            break;
                        }
                        let _guard = write.lock().await;
                        sqlx::query("PRAGMA incremental_vacuum(2000)")
                            .execute(pool)
                            .await
                            .map_err(|e| StoreError::from_sqlx(op, e))?;
                    }
                } else {
                    // A file made before incremental vacuum was the default: one full VACUUM
                    // rewrites it, and converts it so later reclaims are incremental.
                    let _guard = write.lock().await;
                    let mut c = pool
                        .acquire()
                        .await
                        .map_err(|e| StoreError::from_sqlx(op, e))?;
                    for sql in ["PRAGMA auto_vacuum = INCREMENTAL", "VACUUM"] {
                        sqlx::query(sql)
                            .execute(&mut *c)
                            .await
                            .map_err(|e| StoreError::from_sqlx(op, e))?;
                    }
                }
                checkpoint_wal(pool).await?;
                Ok(Space {
                    before,
                    after: sqlite_size(pool).await?,
                })
            }
            Pool::Postgres(pool) => {
                let before = postgres_size(pool).await?;
                // Plain VACUUM: dead rows' space becomes reusable and empty pages at the end
                // are returned; it takes no lock that writers wait for.
                sqlx::raw_sql(if full {
                    "VACUUM FULL events"
                } else {
                    "VACUUM events"
                })
                .execute(pool)
                .await
                .map_err(|e| StoreError::from_sqlx(op, e))?;
                Ok(Space {
                    before,
                    after: postgres_size(pool).await?,
                })
            }
        }
    }

    async fn retention_days(&self, tenant: &TenantId) -> Result<Option<u32>, StoreError> {
        const SQL: &str = "SELECT days FROM retention_policies WHERE tenant_id = $1";
        let days: Option<i64> = with_pool!(self, p => sqlx::query_scalar(SQL)
            .bind(tenant.as_str())
            .fetch_optional(p)
            .await)
        .map_err(|e| StoreError::from_sqlx("reading a retention policy", e))?;
        Ok(days.map(|d| d.clamp(1, i64::from(u32::MAX)) as u32))
    }

    async fn set_retention_days(
        &self,
        tenant: &TenantId,
        days: Option<u32>,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let op = "storing a retention policy";
        match days {
            Some(d) => {
                const SQL: &str = "INSERT INTO retention_policies (tenant_id, days, updated_at) VALUES ($1, $2, $3) \
                                   ON CONFLICT (tenant_id) DO UPDATE SET days = excluded.days, updated_at = excluded.updated_at";
                with_pool!(self, p => sqlx::query(SQL)
                    .bind(tenant.as_str())
                    .bind(i64::from(d.max(1)))
                    .bind(at.to_rfc3339())
                    .execute(p)
                    .await
                    .map(|_| ()))
            }
            None => {
                const SQL: &str = "DELETE FROM retention_policies WHERE tenant_id = $1";
                with_pool!(self, p => sqlx::query(SQL).bind(tenant.as_str()).execute(p).await.map(|_| ()))
            }
        }
        .map_err(|e| StoreError::from_sqlx(op, e))
    }

    async fn ensure_subject_keys(
        &self,
        tenant: &TenantId,
        candidates: &[(String, Vec<u8>)],
        at: Timestamp,
    ) -> Result<HashMap<String, Vec<u8>>, StoreError> {
        if candidates.is_empty() {
            return Ok(HashMap::new());
        }
        const SQL: &str =
            "INSERT INTO subject_keys (tenant_id, subject_ref, wrapped_key, created_at) \
                           VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING";
        let op = "storing subject keys";
        {
            let _guard = self.write_guard().await;
            with_pool!(self, p => {
                let mut tx = p.begin().await.map_err(|e| StoreError::from_sqlx(op, e))?;
                for (r, wrapped) in candidates {
                    sqlx::query(SQL)
                        .bind(tenant.as_str()).bind(r).bind(wrapped).bind(at.to_rfc3339())
                        .execute(&mut *tx).await.map_err(|e| StoreError::from_sqlx(op, e))?;
                }
                tx.commit().await.map_err(|e| StoreError::from_sqlx(op, e))?;
            });
        }
        let refs: Vec<String> = candidates.iter().map(|(r, _)| r.clone()).collect();
        self.subject_keys(tenant, &refs).await
    }

    async fn subject_keys(
        &self,
        tenant: &TenantId,
        refs: &[String],
    ) -> Result<HashMap<String, Vec<u8>>, StoreError> {
        let mut out = HashMap::new();
        for chunk in refs.chunks(500) {
            let rows: Vec<(String, Vec<u8>)> = with_pool!(self, p => {
                let mut qb = QueryBuilder::new(
                    "SELECT subject_ref, wrapped_key FROM subject_keys WHERE tenant_id = ",
                );
                qb.push_bind(tenant.as_str()).push(" AND subject_ref IN (");
                let mut list = qb.separated(", ");
                for r in chunk {
                    list.push_bind(r);
                }
                qb.push(")");
                qb.build_query_as().fetch_all(p).await
            })
            .map_err(|e| StoreError::from_sqlx("reading subject keys", e))?;
            out.extend(rows);
        }
        Ok(out)
    }

    async fn destroy_subject_key(
        &self,
        tenant: &TenantId,
        subject_ref: &str,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "DELETE FROM subject_keys WHERE tenant_id = $1 AND subject_ref = $2";
        let op = "destroying a subject key";
        let gone = {
            let _guard = self.write_guard().await;
            with_pool!(self, p => sqlx::query(SQL)
                .bind(tenant.as_str())
                .bind(subject_ref)
                .execute(p)
                .await
                .map(|r| r.rows_affected()))
            .map_err(|e| StoreError::from_sqlx(op, e))?
        };
        match &self.pool {
            // secure_delete zeroed the row in its page; the checkpoint takes the old page out
            // of the write-ahead log.
            Pool::Sqlite { pool, .. } => checkpoint_wal(pool).await?,
            // The dead row's bytes are cleared by VACUUM, not by the DELETE.
            Pool::Postgres(pool) => {
                sqlx::raw_sql("VACUUM subject_keys")
                    .execute(pool)
                    .await
                    .map_err(|e| StoreError::from_sqlx(op, e))?;
            }
        }
        Ok(gone > 0)
    }

    async fn create_webhook(&self, sub: &WebhookSubscription) -> Result<(), StoreError> {
        self.wh_create(sub).await
    }

    async fn webhooks(
        &self,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<WebhookSubscription>, StoreError> {
        self.wh_list(tenant).await
    }

    async fn delete_webhook(&self, tenant: &TenantId, id: &str) -> Result<bool, StoreError> {
        self.wh_delete(tenant, id).await
    }

    async fn set_webhook_secrets(
        &self,
        tenant: &TenantId,
        id: &str,
        secrets: &str,
    ) -> Result<bool, StoreError> {
        self.wh_set_secrets(tenant, id, secrets).await
    }

    async fn enqueue_deliveries(
        &self,
        tenant: &TenantId,
        id: &str,
        deliveries: &[NewDelivery],
        cursor: Option<i64>,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        self.wh_enqueue(tenant, id, deliveries, cursor, at).await
    }

    async fn due_deliveries(&self, now: i64, limit: i64) -> Result<Vec<Delivery>, StoreError> {
        self.wh_due(now, limit).await
    }

    async fn record_attempt(
        &self,
        delivery_id: &str,
        attempt: &Attempt,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        self.wh_record(delivery_id, attempt, at).await
    }

    async fn deliveries(
        &self,
        tenant: &TenantId,
        id: &str,
        status: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Delivery>, StoreError> {
        self.wh_deliveries(tenant, id, status, limit).await
    }

    async fn retry_delivery(
        &self,
        tenant: &TenantId,
        id: &str,
        delivery_id: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.wh_retry(tenant, id, delivery_id, now).await
    }

    async fn redaction_policy(&self, tenant: &TenantId) -> Result<Option<Policy>, StoreError> {
        const SQL: &str = "SELECT policy FROM redaction_policies WHERE tenant_id = $1";
        let op = "reading a redaction policy";
        let text: Option<String> =
            with_pool!(self, p => sqlx::query_scalar(SQL).bind(tenant.as_str()).fetch_optional(p).await)
                .map_err(|e| StoreError::from_sqlx(op, e))?;
        text.map(|t| {
            Policy::from_json(&t).map_err(|e| StoreError::Database {
                op,
                message: format!("the stored policy of tenant {tenant} does not load: {e}"),
            })
        })
        .transpose()
    }

    async fn set_redaction_policy(
        &self,
        tenant: &TenantId,
        policy: Option<&Policy>,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let op = "storing a redaction policy";
        match policy {
            Some(p) => {
                const SQL: &str = "INSERT INTO redaction_policies (tenant_id, policy, updated_at) VALUES ($1, $2, $3) \
                                   ON CONFLICT (tenant_id) DO UPDATE SET policy = excluded.policy, updated_at = excluded.updated_at";
                let text = serde_json::to_string(p).expect("a policy serializes");
                with_pool!(self, pool => sqlx::query(SQL)
                    .bind(tenant.as_str())
                    .bind(&text)
                    .bind(at.to_rfc3339())
                    .execute(pool)
                    .await
                    .map(|_| ()))
            }
            None => {
                const SQL: &str = "DELETE FROM redaction_policies WHERE tenant_id = $1";
                with_pool!(self, pool => sqlx::query(SQL).bind(tenant.as_str()).execute(pool).await.map(|_| ()))
            }
        }
        .map_err(|e| StoreError::from_sqlx(op, e))
    }
}

async fn sqlite_size(pool: &SqlitePool) -> Result<u64, StoreError> {
    sqlx::query_scalar::<_, i64>(
        "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
    )
    .fetch_one(pool)
    .await
    .map(|n| n.max(0) as u64)
    .map_err(|e| StoreError::from_sqlx("measuring the database", e))
}

async fn postgres_size(pool: &PgPool) -> Result<u64, StoreError> {
    sqlx::query_scalar::<_, i64>("SELECT pg_total_relation_size('events')")
        .fetch_one(pool)
        .await
        .map(|n| n.max(0) as u64)
        .map_err(|e| StoreError::from_sqlx("measuring the database", e))
}
