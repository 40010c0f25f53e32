//! Both engines, one implementation: the SQL is shared (with `$n` placeholders, which SQLite
//! and Postgres both bind by position), and [`with_pool!`] instantiates each statement for the
//! engine's concrete pool type, so each is type-checked against its own driver.

use crate::db::Database;
use crate::query::{Bind, Query};
use crate::{Existing, NewRecord, PublicKey, Store, StoreError, StoredCheckpoint};
use async_trait::async_trait;
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;
use sqlx::{QueryBuilder, Row};
use std::collections::{BTreeMap, HashMap};
use vigil_core::chain::ChainHead;
use vigil_core::checkpoint::Checkpoint;
use vigil_core::hash::Hash32;
use vigil_core::ids::TenantId;
use vigil_core::record::{Party, Record, RecordSource};
use vigil_core::redaction::Policy;
use vigil_core::time::Timestamp;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Rows per multi-row INSERT: 23 columns × 400 rows stays under both engines' bind limits.
const INSERT_CHUNK: usize = 400;

const COLUMNS: &str = "tenant_id, seq, event_id, occurred_at, received_at, actor_type, actor_id, action, \
     resource_type, resource_id, outcome, severity, source_service, producer_id, producer_seq, trace_id, \
     schema_version, payload_commitments, payload, payload_salts, leaf_hash, chain_hash";

#[derive(Debug)]
enum Pool {
    Sqlite {
        pool: SqlitePool,
        // SQLite has one writer at a time; queueing writers here instead of in SQLite's busy
        // handler keeps latency even and never surfaces SQLITE_BUSY.
        write: tokio::sync::Mutex<()>,
    },
    Postgres(PgPool),
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
    /// Opens and migrates the store at `url`.
    pub async fn open(url: &str) -> Result<SqlStore, StoreError> {
        let pool = match Database::open(url, &SQLITE_MIGRATIONS, &POSTGRES_MIGRATIONS).await? {
            Database::Sqlite(pool) => Pool::Sqlite {
                pool,
                write: tokio::sync::Mutex::new(()),
            },
            Database::Postgres(pool) => Pool::Postgres(pool),
        };
        Ok(SqlStore { pool })
    }

    /// Opens an existing, migrated store to read it: nothing created, nothing migrated
    /// ([`Database::open_existing`]).
    pub async fn open_existing(url: &str) -> Result<SqlStore, StoreError> {
        let pool =
            match Database::open_existing(url, &SQLITE_MIGRATIONS, &POSTGRES_MIGRATIONS).await? {
                Database::Sqlite(pool) => Pool::Sqlite {
                    pool,
                    write: tokio::sync::Mutex::new(()),
                },
                Database::Postgres(pool) => Pool::Postgres(pool),
            };
        Ok(SqlStore { pool })
    }
}

/// Decodes a JSON column of a possibly tampered row. Anything unparseable becomes a marker
/// member, so that verification reports the record instead of the read failing.
fn json_map<T: serde::de::DeserializeOwned>(raw: &str, marker: impl FnOnce(String) -> T) -> T {
    serde_json::from_str(raw).unwrap_or_else(|_| marker(raw.to_owned()))
}

macro_rules! record_from_row {
    ($row:expr) => {{
        let row = $row;
        let commitments: String = row.try_get(17)?;
        let payload: String = row.try_get(18)?;
        let salts: String = row.try_get(19)?;
        Record {
            tenant_id: row.try_get(0)?,
            seq: row.try_get(1)?,
            event_id: row.try_get(2)?,
            occurred_at: row.try_get(3)?,
            received_at: row.try_get(4)?,
            actor: Party {
                kind: row.try_get(5)?,
                id: row.try_get(6)?,
            },
            action: row.try_get(7)?,
            resource: Party {
                kind: row.try_get(8)?,
                id: row.try_get(9)?,
            },
            outcome: row.try_get(10)?,
            severity: row.try_get(11)?,
            source: RecordSource {
                service: row.try_get(12)?,
                producer_id: row.try_get(13)?,
                producer_seq: row.try_get(14)?,
            },
            trace_id: row.try_get(15)?,
            schema_version: row.try_get(16)?,
            payload_commitments: json_map(&commitments, |raw| {
                BTreeMap::from([("\u{0}unparseable".to_owned(), raw)])
            }),
            payload: json_map(&payload, |raw| {
                serde_json::Map::from_iter([(
                    "\u{0}unparseable".to_owned(),
                    serde_json::Value::String(raw),
                )])
            }),
            payload_salts: json_map(&salts, |_| BTreeMap::new()),
            withheld: BTreeMap::new(),
            leaf_hash: row.try_get(20)?,
            chain_hash: row.try_get(21)?,
        }
    }};
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

#[async_trait]
impl Store for SqlStore {
    fn engine(&self) -> &'static str {
        match self.pool {
            Pool::Sqlite { .. } => "sqlite",
            Pool::Postgres(_) => "postgres",
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        with_pool!(self, p => sqlx::query("SELECT 1").execute(p).await.map(|_| ()))
            .map_err(|e| StoreError::from_sqlx("checking the store", e))
    }

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
        let _guard = match &self.pool {
            Pool::Sqlite { write, .. } => Some(write.lock().await),
            Pool::Postgres(_) => None,
        };
        let first_seq = records[0].record.seq;
        with_pool!(self, p => {
            let mut tx = p.begin().await.map_err(|e| StoreError::from_sqlx(op, e))?;
            for chunk in records.chunks(INSERT_CHUNK) {
                let mut qb = QueryBuilder::new(format!("INSERT INTO events ({COLUMNS}, content_hash) "));
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
                        .push_bind(n.content_hash.to_hex());
                });
                qb.build().execute(&mut *tx).await.map_err(|e| StoreError::from_sqlx(op, e))?;
            }
            for (producer, seq) in producers {
                sqlx::query(
                    "INSERT INTO producers (tenant_id, producer_id, last_seq) VALUES ($1, $2, $3) \
                     ON CONFLICT (tenant_id, producer_id) DO UPDATE SET last_seq = excluded.last_seq",
                )
                .bind(tenant.as_str())
                .bind(producer)
                .bind(seq)
                .execute(&mut *tx)
                .await
                .map_err(|e| StoreError::from_sqlx(op, e))?;
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

    async fn get(&self, tenant: &TenantId, event_id: &str) -> Result<Option<Record>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM events WHERE tenant_id = $1 AND event_id = $2");
        let op = "reading an event";
        with_pool!(self, p => {
            let row = sqlx::query(&sql).bind(tenant.as_str()).bind(event_id).fetch_optional(p).await.map_err(|e| StoreError::from_sqlx(op, e))?;
            row.map(|row| Ok::<_, sqlx::Error>(record_from_row!(row))).transpose().map_err(|e| StoreError::from_sqlx(op, e))
        })
    }

    async fn query(&self, tenant: &TenantId, q: &Query) -> Result<Vec<Record>, StoreError> {
        let (cond, binds) = q.where_clause();
        let sql = format!(
            "SELECT {COLUMNS} FROM events WHERE tenant_id = $1{cond} ORDER BY seq DESC LIMIT {}",
            q.limit.max(0)
        );
        let op = "querying events";
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
    ) -> Result<u64, StoreError> {
        // In slices, so a large purge never holds one long write transaction.
        const SLICE: i64 = 10_000;
        const SQL: &str = "UPDATE events SET payload = '{}', payload_salts = '{}' \
                           WHERE tenant_id = $1 AND seq BETWEEN $2 AND $3 AND payload <> '{}' AND action <> $4";
        let mut purged = 0;
        let mut at = from_seq;
        while at <= to_seq {
            let end = (at + SLICE - 1).min(to_seq);
            purged += with_pool!(self, p => sqlx::query(SQL)
                .bind(tenant.as_str())
                .bind(at)
                .bind(end)
                .bind(keep_action)
                .execute(p)
                .await
                .map(|r| r.rows_affected()))
            .map_err(|e| StoreError::from_sqlx("purging payloads", e))?;
            at = end + 1;
        }
        Ok(purged)
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
