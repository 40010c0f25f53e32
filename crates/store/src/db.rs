//! Opening a database of either engine, for the audit store and for other services' stores
//! (the auth service keeps its users and keys the same way): SQLite in WAL mode with full
//! sync, or a Postgres pool, migrated with the caller's migrations.

use crate::StoreError;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteAutoVacuum, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use std::str::FromStr;
use std::time::Duration;

/// How long a request waits for a connection before the store counts as unavailable.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// Waits for a pooled connection that ran out of time, in this process (every pool).
pub(crate) static POOL_TIMEOUTS: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(0);

/// A connection pool's state now, for the `vigil_db_pool_*` metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Open connections.
    pub size: u32,
    /// Open connections not in use.
    pub idle: u32,
    /// The most connections the pool opens.
    pub max: u32,
    /// Waits for a connection that timed out, in this process so far (every pool).
    pub timeouts: u64,
}

/// A pool of either engine.
#[derive(Debug, Clone)]
pub enum Database {
    /// `sqlite://PATH` or `sqlite::memory:`.
    Sqlite(SqlitePool),
    /// `postgres://…`.
    Postgres(PgPool),
}

/// Runs `$body` with `$p` bound to the concrete pool of whichever engine `$db` is, so each
/// statement is type-checked against its own driver. SQL with `$n` placeholders works on
/// both: SQLite and Postgres both bind them by position.
#[macro_export]
macro_rules! with_db {
    ($db:expr, $p:ident => $body:expr) => {
        match $db {
            $crate::db::Database::Sqlite($p) => $body,
            $crate::db::Database::Postgres($p) => $body,
        }
    };
}

impl PoolStats {
    /// (size, idle, max, timeouts), what vigil-security's pool metrics read.
    pub fn reading(&self) -> (u64, u64, u64, u64) {
        (
            u64::from(self.size),
            u64::from(self.idle),
            u64::from(self.max),
            self.timeouts,
        )
    }
}

impl Database {
    /// The pool's state now.
    pub fn pool_stats(&self) -> PoolStats {
        let (size, idle, max) = match self {
            Database::Sqlite(p) => (
                p.size(),
                p.num_idle() as u32,
                p.options().get_max_connections(),
            ),
            Database::Postgres(p) => (
                p.size(),
                p.num_idle() as u32,
                p.options().get_max_connections(),
            ),
        };
        PoolStats {
            size,
            idle,
            max,
            timeouts: POOL_TIMEOUTS.load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Opens the database at `url` and applies the migrations for its engine. A new SQLite
    /// file is created readable by its owner only (it may hold secrets).
    pub async fn open(
        url: &str,
        sqlite: &Migrator,
        postgres: &Migrator,
    ) -> Result<Database, StoreError> {
        if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)
                .map_err(|e| StoreError::BadUrl(format!("{url}: {e}")))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // FULL: what was acknowledged survives power loss, not only a crash.
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(5))
                // Free pages can be returned to the file system after a purge a slice at a
                // time (takes effect for files created from now on; reclaim converts others).
                .auto_vacuum(SqliteAutoVacuum::Incremental)
                // Deleted and overwritten content is zeroed in the file: a purged value or a
                // destroyed subject key leaves no copy in free space.
                .pragma("secure_delete", "ON")
                .foreign_keys(true);
            restrict_new_file(opts.get_filename());
            // An in-memory database exists once per connection: keep exactly one.
            let max = if url.contains(":memory:") { 1 } else { 8 };
            let pool = SqlitePoolOptions::new()
                .max_connections(max)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_with(opts)
                .await
                .map_err(|e| StoreError::from_sqlx("opening the SQLite database", e))?;
            sqlite
                .run(&pool)
                .await
                .map_err(|e| StoreError::Migrate(e.to_string()))?;
            // Gives the query planner statistics where they are missing or stale (SQLite's
            // advice for long-lived connections); without them it picks poor indexes.
            sqlx::query("PRAGMA optimize=0x10002")
                .execute(&pool)
                .await
                .map_err(|e| StoreError::from_sqlx("optimizing the SQLite database", e))?;
            Ok(Database::Sqlite(pool))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let opts =
                PgConnectOptions::from_str(url).map_err(|e| StoreError::BadUrl(format!("{e}")))?;
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_with(opts)
                .await
                .map_err(|e| StoreError::from_sqlx("connecting to Postgres", e))?;
            // Two services starting at once must not both apply a migration: Postgres
            // migrations take sqlx's advisory lock.
            postgres
                .run(&pool)
                .await
                .map_err(|e| StoreError::Migrate(e.to_string()))?;
            Ok(Database::Postgres(pool))
        } else {
            Err(StoreError::BadUrl(format!(
                "{}: expected sqlite://PATH, sqlite::memory: or postgres://…",
                redact_url(url)
            )))
        }
    }

    /// Opens a database that must exist already and be migrated to exactly `sqlite` or
    /// `postgres` — for reading it (`vigil verify`, `vigil tail`): nothing is created, nothing
    /// migrated. A missing SQLite file, a database that is not this kind of store, and one
    /// whose schema is older or newer than this build are errors that say so.
    pub async fn open_existing(
        url: &str,
        sqlite: &Migrator,
        postgres: &Migrator,
    ) -> Result<Database, StoreError> {
        let db = if url.starts_with("sqlite:") {
            if url.contains(":memory:") {
                return Err(StoreError::BadUrl(
                    "an in-memory SQLite database has nothing to read".into(),
                ));
            }
            let opts = SqliteConnectOptions::from_str(url)
                .map_err(|e| StoreError::BadUrl(format!("{url}: {e}")))?
                .create_if_missing(false)
                .busy_timeout(Duration::from_secs(5));
            let path = opts.get_filename();
            if !path.is_file() {
                return Err(StoreError::BadUrl(format!(
                    "there is no database at {}",
                    path.display()
                )));
            }
            let pool = SqlitePoolOptions::new()
                .max_connections(4)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_with(opts)
                .await
                .map_err(|e| StoreError::from_sqlx("opening the SQLite database", e))?;
            Database::Sqlite(pool)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let opts =
                PgConnectOptions::from_str(url).map_err(|e| StoreError::BadUrl(format!("{e}")))?;
            let pool = PgPoolOptions::new()
                .max_connections(4)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_with(opts)
                .await
                .map_err(|e| StoreError::from_sqlx("connecting to Postgres", e))?;
            Database::Postgres(pool)
        } else {
            return Err(StoreError::BadUrl(format!(
                "{}: expected sqlite://PATH or postgres://…",
                redact_url(url)
            )));
        };
        let migrator = match &db {
            Database::Sqlite(_) => sqlite,
            Database::Postgres(_) => postgres,
        };
        let expected = migrator.iter().map(|m| m.version).max().unwrap_or(0);
        let sql = "SELECT MAX(version) FROM _sqlx_migrations WHERE success";
        let applied: Result<Option<i64>, sqlx::Error> =
            with_db!(&db, p => sqlx::query_scalar(sql).fetch_one(p).await);
        match applied {
            Ok(Some(v)) if v == expected => Ok(db),
            Ok(Some(v)) => Err(StoreError::Migrate(format!(
                "the store's schema is at migration {v}, this build reads {expected}: {}",
                if v < expected {
                    "start the service of this version once to migrate it"
                } else {
                    "use the newer vigil that wrote it"
                }
            ))),
            Ok(None) | Err(_) => Err(StoreError::BadUrl(format!(
                "{} is not a Vigil store (it has no migrations applied)",
                redact_url(url)
            ))),
        }
    }

    /// The statement that opens a transaction that will write: `BEGIN IMMEDIATE` on SQLite,
    /// which takes the write lock at once (a deferred transaction that reads first cannot
    /// upgrade to writing while another connection writes, and fails with SQLITE_BUSY
    /// without waiting), `BEGIN` on Postgres.
    pub fn begin_write(&self) -> &'static str {
        match self {
            Database::Sqlite(_) => "BEGIN IMMEDIATE",
            Database::Postgres(_) => "BEGIN",
        }
    }

    /// `sqlite` or `postgres`.
    pub fn engine(&self) -> &'static str {
        match self {
            Database::Sqlite(_) => "sqlite",
            Database::Postgres(_) => "postgres",
        }
    }
}

/// Creates the SQLite file (mode 0600 on Unix) when it does not exist yet.
fn restrict_new_file(path: &std::path::Path) {
    if path.as_os_str().is_empty() || path.to_string_lossy().contains(":memory:") || path.exists() {
        return;
    }
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let _ = o.open(path);
}

pub use vigil_core::redact_url;
