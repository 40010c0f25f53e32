//! Consistent snapshots of a whole audit store and loading one back, for `vigil backup` and
//! `vigil restore`: the SQL stays here, the backup format (parts, manifest, encryption) lives in
//! `vigil-backup`.
//!
//! - SQLite: `VACUUM INTO` writes a compact copy of the database from one read transaction,
//!   so it is consistent while ingest goes on (WAL readers do not block the writer); restoring
//!   is putting that file in place.
//! - Postgres: one `REPEATABLE READ` read-only transaction streams every table of the schema
//!   with `COPY … TO STDOUT` (what `pg_dump` does), so all tables come from one instant;
//!   restoring migrates an empty schema and loads every table with `COPY … FROM STDIN` in one
//!   transaction, so a failed load leaves nothing half-written.

use crate::StoreError;
use futures::stream::BoxStream;
use futures::StreamExt;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Which engine a store URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Engine {
    /// `sqlite://PATH`: the database file.
    Sqlite(PathBuf),
    /// `postgres://…`.
    Postgres,
}

impl Engine {
    /// The engine of `url`; an in-memory SQLite database has nothing to back up or restore.
    pub fn of(url: &str) -> Result<Engine, StoreError> {
        if url.starts_with("sqlite:") {
            if url.contains(":memory:") {
                return Err(StoreError::BadUrl(
                    "an in-memory SQLite database cannot be backed up or restored".into(),
                ));
            }
            let opts = SqliteConnectOptions::from_str(url)
                .map_err(|e| StoreError::BadUrl(format!("{url}: {e}")))?;
            Ok(Engine::Sqlite(opts.get_filename().to_path_buf()))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Engine::Postgres)
        } else {
            Err(StoreError::BadUrl(format!(
                "{}: expected sqlite://PATH or postgres://…",
                crate::db::redact_url(url)
            )))
        }
    }

    /// `sqlite` or `postgres`.
    pub fn name(&self) -> &'static str {
        match self {
            Engine::Sqlite(_) => "sqlite",
            Engine::Postgres => "postgres",
        }
    }

    /// The schema version (the newest migration) this build writes for the engine.
    pub fn schema_version(&self) -> i64 {
        let m = match self {
            Engine::Sqlite(_) => &crate::sql::SQLITE_MIGRATIONS,
            Engine::Postgres => &crate::sql::POSTGRES_MIGRATIONS,
        };
        m.iter().map(|m| m.version).max().unwrap_or(0)
    }
}

/// One tenant's state in a snapshot: what a restore must reproduce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantSummary {
    /// The tenant.
    pub tenant: String,
    /// Rows in its chain (equal to `head_seq` in an intact store).
    pub records: i64,
    /// The last seq.
    pub head_seq: i64,
    /// The chain hash at the last seq (hex).
    pub head_chain_hash: String,
    /// The newest signed checkpoint: size, chain hash and the signed note.
    pub checkpoint: Option<(i64, String, String)>,
}

/// What a snapshot holds, in brief.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The newest migration applied.
    pub schema_version: i64,
    /// Per tenant.
    pub tenants: Vec<TenantSummary>,
    /// Every erased data subject, as (tenant, subject_ref), from the receipts in the chains.
    pub erasures: Vec<(String, String)>,
}

/// A table and its columns, in the order a `COPY` streams them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    /// The table's name.
    pub name: String,
    /// Its columns.
    pub columns: Vec<String>,
}

impl TableSpec {
    /// `COPY "table" ("col", …) {direction}` (`TO STDOUT` or `FROM STDIN`).
    fn copy(&self, direction: &str) -> String {
        let columns: Vec<String> = self.columns.iter().map(|c| quote_ident(c)).collect();
        format!(
            "COPY {} ({}) {direction}",
            quote_ident(&self.name),
            columns.join(", ")
        )
    }
}

/// Quotes an identifier for Postgres (names come from the catalog, never from a user).
fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

const HEADS: &str = "SELECT e.tenant_id, c.cnt, e.seq, e.chain_hash FROM events e \
     JOIN (SELECT tenant_id, MAX(seq) AS m, COUNT(*) AS cnt FROM events GROUP BY tenant_id) c \
     ON e.tenant_id = c.tenant_id AND e.seq = c.m ORDER BY e.tenant_id";
const LATEST_CHECKPOINTS: &str = "SELECT k.tenant_id, k.size, k.chain_hash, k.note \
     FROM checkpoints k JOIN (SELECT tenant_id, MAX(size) AS m FROM checkpoints GROUP BY tenant_id) l \
     ON k.tenant_id = l.tenant_id AND k.size = l.m";
const ERASURES: &str = "SELECT DISTINCT tenant_id, resource_id FROM events \
     WHERE action = $1 AND resource_type = 'subject' ORDER BY tenant_id, resource_id";
const APPLIED: &str = "SELECT MAX(version) FROM _sqlx_migrations WHERE success";

type HeadRow = (String, i64, i64, String);
type CheckpointRow = (String, i64, String, String);

fn summaries(heads: Vec<HeadRow>, checkpoints: Vec<CheckpointRow>) -> Vec<TenantSummary> {
    let mut cps: std::collections::HashMap<String, (i64, String, String)> = checkpoints
        .into_iter()
        .map(|(t, size, hash, note)| (t, (size, hash, note)))
        .collect();
    heads
        .into_iter()
        .map(
            |(tenant, records, head_seq, head_chain_hash)| TenantSummary {
                checkpoint: cps.remove(&tenant),
                tenant,
                records,
                head_seq,
                head_chain_hash,
            },
        )
        .collect()
}

/// The four summary reads on one connection (of either engine).
macro_rules! summary_on {
    ($conn:expr) => {{
        let version: Option<i64> = sqlx::query_scalar(APPLIED)
            .fetch_one(&mut *$conn)
            .await
            .map_err(db_err("reading the schema version"))?;
        let heads: Vec<HeadRow> = sqlx::query_as(HEADS)
            .fetch_all(&mut *$conn)
            .await
            .map_err(db_err("reading chain heads"))?;
        let cps: Vec<CheckpointRow> = sqlx::query_as(LATEST_CHECKPOINTS)
            .fetch_all(&mut *$conn)
            .await
            .map_err(db_err("reading checkpoints"))?;
        let erasures: Vec<(String, String)> = sqlx::query_as(ERASURES)
            .bind(vigil_core::erasure::ERASE_ACTION)
            .fetch_all(&mut *$conn)
            .await
            .map_err(db_err("reading erasure receipts"))?;
        Summary {
            schema_version: version.unwrap_or(0),
            tenants: summaries(heads, cps),
            erasures,
        }
    }};
}

fn db_err(op: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |e| StoreError::from_sqlx(op, e)
}

/// Writes a consistent copy of the SQLite store at `url` to `into` (which must not exist),
/// while writers go on.
pub async fn sqlite_snapshot(url: &str, into: &Path) -> Result<(), StoreError> {
    let Engine::Sqlite(path) = Engine::of(url)? else {
        return Err(StoreError::BadUrl("not a SQLite URL".into()));
    };
    if !path.is_file() {
        return Err(StoreError::BadUrl(format!(
            "there is no database at {}",
            path.display()
        )));
    }
    let mut conn = SqliteConnectOptions::new()
        .filename(&path)
        .busy_timeout(std::time::Duration::from_secs(30))
        .connect()
        .await
        .map_err(db_err("opening the SQLite database"))?;
    let into = into
        .to_str()
        .ok_or_else(|| StoreError::BadUrl(format!("{} is not UTF-8", into.display())))?;
    sqlx::query("VACUUM INTO $1")
        .bind(into)
        .execute(&mut conn)
        .await
        .map_err(db_err("copying the SQLite database (VACUUM INTO)"))?;
    conn.close().await.ok();
    Ok(())
}

async fn sqlite_read(path: &Path) -> Result<SqliteConnection, StoreError> {
    SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .connect()
        .await
        .map_err(db_err("opening the SQLite snapshot"))
}

/// The summary of a SQLite database file (a snapshot).
pub async fn sqlite_summary(path: &Path) -> Result<Summary, StoreError> {
    let mut conn = sqlite_read(path).await?;
    let summary = summary_on!(&mut conn);
    conn.close().await.ok();
    Ok(summary)
}

/// A read-only `REPEATABLE READ` transaction over a Postgres store: every read through it sees
/// the same instant.
#[derive(Debug)]
pub struct PgSnapshot {
    conn: PgConnection,
}

impl PgSnapshot {
    /// Connects and opens the snapshot transaction.
    pub async fn begin(url: &str) -> Result<PgSnapshot, StoreError> {
        let mut conn = pg_connect(url).await?;
        sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut conn)
            .await
            .map_err(db_err("starting the snapshot"))?;
        Ok(PgSnapshot { conn })
    }

    /// The summary as of the snapshot.
    pub async fn summary(&mut self) -> Result<Summary, StoreError> {
        Ok(summary_on!(&mut self.conn))
    }

    /// The store's tables (the migrations' bookkeeping aside) with their columns.
    pub async fn tables(&mut self) -> Result<Vec<TableSpec>, StoreError> {
        pg_tables(&mut self.conn).await
    }

    /// Streams `table` in `COPY` text format.
    pub async fn copy_out(
        &mut self,
        table: &TableSpec,
    ) -> Result<BoxStream<'_, Result<bytes::Bytes, StoreError>>, StoreError> {
        let stream = self
            .conn
            .copy_out_raw(&table.copy("TO STDOUT"))
            .await
            .map_err(db_err("starting COPY TO STDOUT"))?;
        Ok(stream
            .map(|r| r.map_err(db_err("reading COPY data")))
            .boxed())
    }

    /// Ends the snapshot.
    pub async fn finish(mut self) -> Result<(), StoreError> {
        sqlx::query("COMMIT")
            .execute(&mut self.conn)
            .await
            .map_err(db_err("ending the snapshot"))?;
        self.conn.close().await.ok();
        Ok(())
    }
}

async fn pg_connect(url: &str) -> Result<PgConnection, StoreError> {
    PgConnectOptions::from_str(url)
        .map_err(|e| StoreError::BadUrl(format!("{e}")))?
        .connect()
        .await
        .map_err(db_err("connecting to Postgres"))
}

async fn pg_tables(conn: &mut PgConnection) -> Result<Vec<TableSpec>, StoreError> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.table_name::text, c.column_name::text FROM information_schema.columns c \
         JOIN information_schema.tables t \
           ON t.table_schema = c.table_schema AND t.table_name = c.table_name \
         WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE' \
           AND c.table_name <> '_sqlx_migrations' \
         ORDER BY c.table_name, c.ordinal_position",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(db_err("listing tables"))?;
    let mut tables: Vec<TableSpec> = Vec::new();
    for (table, column) in rows {
        match tables.last_mut() {
            Some(t) if t.name == table => t.columns.push(column),
            _ => tables.push(TableSpec {
                name: table,
                columns: vec![column],
            }),
        }
    }
    Ok(tables)
}

/// True when the store at `url` holds no audit records and no tenants (a missing SQLite file
/// or a Postgres schema without Vigil's tables counts as empty): restoring over it loses
/// nothing.
pub async fn is_empty(url: &str) -> Result<bool, StoreError> {
    const ROWS: &str = "SELECT (SELECT COUNT(*) FROM events) + (SELECT COUNT(*) FROM tenants)";
    match Engine::of(url)? {
        Engine::Sqlite(path) => {
            if !path.exists() || std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) == 0 {
                return Ok(true);
            }
            let mut conn = sqlite_read(&path).await?;
            let has: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'events'",
            )
            .fetch_one(&mut conn)
            .await
            .map_err(db_err("reading the SQLite catalog"))?;
            let rows: i64 = if has == 0 {
                0
            } else {
                sqlx::query_scalar(ROWS)
                    .fetch_one(&mut conn)
                    .await
                    .map_err(db_err("counting rows"))?
            };
            conn.close().await.ok();
            Ok(rows == 0)
        }
        Engine::Postgres => {
            let mut conn = pg_connect(url).await?;
            let has: Option<String> = sqlx::query_scalar("SELECT to_regclass('events')::text")
                .fetch_one(&mut conn)
                .await
                .map_err(db_err("reading the catalog"))?;
            let rows: i64 = if has.is_none() {
                0
            } else {
                sqlx::query_scalar(ROWS)
                    .fetch_one(&mut conn)
                    .await
                    .map_err(db_err("counting rows"))?
            };
            conn.close().await.ok();
            Ok(rows == 0)
        }
    }
}

/// Drops every table of the Postgres schema `url` names that a backup restores (`tables`) and
/// the migrations' bookkeeping, in one transaction: `restore --force` starting over.
pub async fn pg_drop(url: &str, tables: &[String]) -> Result<(), StoreError> {
    let mut conn = pg_connect(url).await?;
    let mut tx = conn
        .begin()
        .await
        .map_err(db_err("starting a transaction"))?;
    // This build's own tables too: a backup older than a migration does not list the tables
    // it added, and migrating again over them would fail.
    let ours: Vec<&str> = schema_tables().collect();
    for t in tables
        .iter()
        .map(String::as_str)
        .chain(ours)
        .chain(["_sqlx_migrations"])
    {
        sqlx::query(&format!("DROP TABLE IF EXISTS {} CASCADE", quote_ident(t)))
            .execute(&mut *tx)
            .await
            .map_err(db_err("dropping a table"))?;
    }
    tx.commit().await.map_err(db_err("committing"))?;
    conn.close().await.ok();
    Ok(())
}

/// The tables this build's Postgres migrations create.
fn schema_tables() -> impl Iterator<Item = &'static str> {
    crate::sql::POSTGRES_MIGRATIONS.iter().flat_map(|m| {
        let sql: &'static str = match &m.sql {
            std::borrow::Cow::Borrowed(s) => s,
            std::borrow::Cow::Owned(_) => "",
        };
        sql.split("CREATE TABLE ").skip(1).filter_map(|rest| {
            rest.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .next()
                .filter(|name| !name.is_empty())
        })
    })
}

/// Loading tables into a migrated, empty Postgres store in one transaction. As `pg_restore`
/// does, secondary indexes are dropped for the load and built once at the end (inside the
/// same transaction): maintaining them row by row costs several times more.
#[derive(Debug)]
pub struct PgLoad {
    conn: PgConnection,
    deferred: Vec<String>,
}

impl PgLoad {
    /// Connects, opens the load transaction and sets the schema's secondary indexes aside.
    pub async fn begin(url: &str) -> Result<PgLoad, StoreError> {
        let mut conn = pg_connect(url).await?;
        for sql in [
            "BEGIN",
            // The load is verified afterwards and redone whole if lost: no need to wait for
            // the WAL flush at commit.
            "SET LOCAL synchronous_commit = off",
            "SET LOCAL maintenance_work_mem = '256MB'",
        ] {
            sqlx::query(sql)
                .execute(&mut conn)
                .await
                .map_err(db_err("starting the load"))?;
        }
        let indexes: Vec<(String, String)> = sqlx::query_as(
            "SELECT i.indexname::text, i.indexdef FROM pg_indexes i \
             WHERE i.schemaname = current_schema() AND i.tablename <> '_sqlx_migrations' \
               AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)",
        )
        .fetch_all(&mut conn)
        .await
        .map_err(db_err("listing indexes"))?;
        let mut deferred = Vec::with_capacity(indexes.len());
        for (name, def) in indexes {
            sqlx::query(&format!("DROP INDEX {}", quote_ident(&name)))
                .execute(&mut conn)
                .await
                .map_err(db_err("setting an index aside for the load"))?;
            deferred.push(def);
        }
        Ok(PgLoad { conn, deferred })
    }

    /// The tables the target schema has.
    pub async fn tables(&mut self) -> Result<Vec<TableSpec>, StoreError> {
        pg_tables(&mut self.conn).await
    }

    /// Starts loading `table` (its columns as the backup streamed them).
    pub async fn copy_in(&mut self, table: &TableSpec) -> Result<TableLoad<'_>, StoreError> {
        let copy = self
            .conn
            .copy_in_raw(&table.copy("FROM STDIN"))
            .await
            .map_err(db_err("starting COPY FROM STDIN"))?;
        Ok(TableLoad { copy })
    }

    /// Rebuilds the time index from the loaded records: a backup written before the index
    /// existed carries none, and it is derived from `events` alone.
    pub async fn rebuild_time_index(&mut self) -> Result<(), StoreError> {
        let migration = include_str!("../migrations/postgres/0007_time_index.sql");
        let backfill = &migration[migration
            .find("INSERT INTO")
            .expect("the migration fills the index")..];
        sqlx::raw_sql(backfill)
            .execute(&mut self.conn)
            .await
            .map(|_| ())
            .map_err(db_err("rebuilding the time index"))
    }

    /// Builds the indexes set aside and commits everything loaded.
    pub async fn commit(mut self) -> Result<(), StoreError> {
        for def in std::mem::take(&mut self.deferred) {
            sqlx::query(&def)
                .execute(&mut self.conn)
                .await
                .map_err(db_err("building an index after the load"))?;
        }
        sqlx::query("ANALYZE")
            .execute(&mut self.conn)
            .await
            .map_err(db_err("analyzing the loaded tables"))?;
        sqlx::query("COMMIT")
            .execute(&mut self.conn)
            .await
            .map_err(db_err("committing the load"))?;
        self.conn.close().await.ok();
        Ok(())
    }
}

/// One table being loaded with `COPY … FROM STDIN`.
pub struct TableLoad<'a> {
    copy: sqlx::postgres::PgCopyIn<&'a mut PgConnection>,
}

impl std::fmt::Debug for TableLoad<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TableLoad")
    }
}

impl TableLoad<'_> {
    /// Sends the next bytes of `COPY` text data (any split of the stream).
    pub async fn send(&mut self, data: &[u8]) -> Result<(), StoreError> {
        self.copy
            .send(data)
            .await
            .map_err(db_err("sending COPY data"))?;
        Ok(())
    }

    /// Ends the table; returns the rows loaded.
    pub async fn finish(self) -> Result<u64, StoreError> {
        self.copy.finish().await.map_err(db_err("ending COPY"))
    }
}
