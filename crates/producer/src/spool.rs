//! The spool: batches the transport did not take, on local disk, oldest first.
//!
//! One SQLite file (`spool.db`, WAL, `synchronous=FULL`: a batch is on disk before the events
//! in it count as acknowledged) in the spool directory, which a lock file reserves for one
//! process at a time. Each row is one batch, its events as NDJSON (`{"tenant", "event"}` per
//! line) exactly as they were stamped, so a batch resent from here after a restart carries the
//! producer id and `producer_seq` it was first sent with and is recognised as the same events.
//!
//! A damaged file is moved aside (`spool.db.damaged-<time>`) and a new one started, with an
//! error in the log: what it held is lost, and says so.

use crate::error::ProducerError;
use crate::transport::TenantEvent;
use serde::{Deserialize, Serialize};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqliteSynchronous};
use sqlx::{ConnectOptions, Row};
use std::path::{Path, PathBuf};
use vigil_core::event::EventInput;
use vigil_core::ids::TenantId;

/// One spooled batch, read back.
#[derive(Debug)]
pub struct Spooled {
    /// Its row id (what [`Spool::remove`] takes).
    pub id: i64,
    /// Its events, in order.
    pub events: Vec<TenantEvent>,
    /// Events of the row that could not be read back (a damaged row): lost.
    pub unreadable: usize,
}

/// What [`Spool::push`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    /// On disk.
    Written,
    /// The spool has no room for it: nothing was written.
    Full,
}

#[derive(Serialize, Deserialize)]
struct Line<'a> {
    tenant: &'a str,
    event: &'a serde_json::value::RawValue,
}

/// The spool of one producer.
#[derive(Debug)]
pub struct Spool {
    pool: SqlitePool,
    dir: PathBuf,
    bytes: u64,
    rows: u64,
    max_bytes: u64,
    // Held open for the lock: dropped with the spool.
    _lock: std::fs::File,
}

fn spool_err(dir: &Path, e: impl std::fmt::Display) -> ProducerError {
    ProducerError::Spool {
        path: dir.to_owned(),
        message: e.to_string(),
    }
}

impl Spool {
    /// Opens (or creates) the spool in `dir`, holding at most `max_bytes` of events.
    pub async fn open(dir: &Path, max_bytes: u64) -> Result<Spool, ProducerError> {
        std::fs::create_dir_all(dir).map_err(|e| spool_err(dir, e))?;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("spool.lock"))
            .map_err(|e| spool_err(dir, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(ProducerError::SpoolLocked(dir.to_owned()))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(spool_err(dir, e)),
        }
        let file = dir.join("spool.db");
        let pool = match Self::connect(&file).await {
            Ok(p) => p,
            Err(e) if file.exists() => {
                let aside = dir.join(format!(
                    "spool.db.damaged-{}",
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or_default()
                ));
                tracing::error!(spool = %file.display(), moved_to = %aside.display(), error = %e,
                    "the audit spool is damaged: moved aside and started anew; the events it held are lost");
                std::fs::rename(&file, &aside).map_err(|e| spool_err(dir, e))?;
                for suffix in ["-wal", "-shm"] {
                    let _ = std::fs::remove_file(dir.join(format!("spool.db{suffix}")));
                }
                Self::connect(&file).await.map_err(|e| spool_err(dir, e))?
            }
            Err(e) => return Err(spool_err(dir, e)),
        };
        let (rows, bytes): (i64, i64) =
            sqlx::query_as("SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM batches")
                .fetch_one(&pool)
                .await
                .map_err(|e| spool_err(dir, e))?;
        Ok(Spool {
            pool,
            dir: dir.to_owned(),
            bytes: bytes as u64,
            rows: rows as u64,
            max_bytes,
            _lock: lock,
        })
    }

    async fn connect(file: &Path) -> Result<SqlitePool, sqlx::Error> {
        let opts = SqliteConnectOptions::new()
            .filename(file)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .disable_statement_logging();
        let pool = sqlx::pool::PoolOptions::new()
            .max_connections(1)
            .connect_with(opts)
            .await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS batches (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                events INTEGER NOT NULL,
                bytes INTEGER NOT NULL,
                body BLOB NOT NULL)",
        )
        .execute(&pool)
        .await?;
        // Reads every page: a damaged file fails here, at start, not halfway through a drain.
        let check: String = sqlx::query_scalar("PRAGMA quick_check")
            .fetch_one(&pool)
            .await?;
        if check != "ok" {
            return Err(sqlx::Error::Protocol(format!("quick_check: {check}")));
        }
        Ok(pool)
    }

    /// Nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Bytes of events waiting.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends `batch` behind everything spooled, on disk before it returns.
    pub async fn push(&mut self, batch: &[TenantEvent]) -> Result<Pushed, sqlx::Error> {
        let mut body = Vec::with_capacity(batch.iter().map(|e| e.json().len() + 32).sum());
        for e in batch {
            let raw: &serde_json::value::RawValue =
                serde_json::from_slice(e.json()).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
            serde_json::to_writer(
                &mut body,
                &Line {
                    tenant: e.tenant().as_str(),
                    event: raw,
                },
            )
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
            body.push(b'\n');
        }
        let bytes = body.len() as u64;
        if self.bytes + bytes > self.max_bytes {
            return Ok(Pushed::Full);
        }
        sqlx::query("INSERT INTO batches (events, bytes, body) VALUES ($1, $2, $3)")
            .bind(batch.len() as i64)
            .bind(bytes as i64)
            .bind(body)
            .execute(&self.pool)
            .await?;
        self.bytes += bytes;
        self.rows += 1;
        Ok(Pushed::Written)
    }

    /// The oldest batch, if any.
    pub async fn oldest(&self) -> Result<Option<Spooled>, sqlx::Error> {
        let row = sqlx::query("SELECT id, events, body FROM batches ORDER BY id LIMIT 1")
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let id: i64 = row.try_get(0)?;
        let count: i64 = row.try_get(1)?;
        let body: Vec<u8> = row.try_get(2)?;
        let mut events = Vec::with_capacity(count as usize);
        for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            if let Some(e) = decode(line) {
                events.push(e);
            }
        }
        let unreadable = (count as usize).saturating_sub(events.len());
        Ok(Some(Spooled {
            id,
            events,
            unreadable,
        }))
    }

    /// Forgets batch `id` (delivered).
    pub async fn remove(&mut self, id: i64) -> Result<(), sqlx::Error> {
        let bytes: Option<i64> =
            sqlx::query_scalar("DELETE FROM batches WHERE id = $1 RETURNING bytes")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        if let Some(b) = bytes {
            self.bytes = self.bytes.saturating_sub(b as u64);
            self.rows = self.rows.saturating_sub(1);
        }
        Ok(())
    }
}

fn decode(line: &[u8]) -> Option<TenantEvent> {
    #[derive(Deserialize)]
    struct Owned {
        tenant: String,
        event: Box<serde_json::value::RawValue>,
    }
    let o: Owned = serde_json::from_slice(line).ok()?;
    let tenant = TenantId::parse(&o.tenant).ok()?;
    let value: serde_json::Value = serde_json::from_str(o.event.get()).ok()?;
    // Spooled events always carry the id they were stamped with; a line without is damaged.
    value.get("event_id").filter(|v| v.is_string())?;
    let event = EventInput::new(value)
        .validate(|| unreachable!("checked above"))
        .ok()?;
    Some(TenantEvent::with_json(
        tenant,
        event,
        o.event.get().as_bytes().to_vec(),
    ))
}
