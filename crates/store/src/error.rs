//! The one error type of `vigil-store`.

/// What went wrong talking to the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached now (down, restarting, pool exhausted); retry later.
    #[error("store unavailable while {op}: {message}")]
    Unavailable {
        /// What we were doing.
        op: &'static str,
        /// The driver's words.
        message: String,
    },
    /// A unique constraint refused the write: another writer took the seq or the event id.
    #[error("store conflict while {op}: {message}")]
    Conflict {
        /// What we were doing.
        op: &'static str,
        /// Which constraint.
        message: String,
    },
    /// The URL does not name a supported engine, or cannot be opened.
    #[error("bad store URL: {0}")]
    BadUrl(String),
    /// Migrations could not be applied.
    #[error("migrating the store: {0}")]
    Migrate(String),
    /// Any other database error.
    #[error("store error while {op}: {message}")]
    Database {
        /// What we were doing.
        op: &'static str,
        /// The driver's words.
        message: String,
    },
}

impl StoreError {
    /// Classifies a driver error raised while doing `op`.
    pub fn from_sqlx(op: &'static str, e: sqlx::Error) -> StoreError {
        if matches!(e, sqlx::Error::PoolTimedOut) {
            crate::db::POOL_TIMEOUTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let message = e.to_string();
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict { op, message }
            }
            // SQLite says "database is locked"/"busy" when a writer holds the lock past the
            // busy timeout; Postgres says "admin shutdown" and friends while it restarts.
            sqlx::Error::Database(db)
                if matches!(
                    db.code().as_deref(),
                    Some("5" | "6" | "57P01" | "57P02" | "57P03" | "53300")
                ) =>
            {
                StoreError::Unavailable { op, message }
            }
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Protocol(_) => StoreError::Unavailable { op, message },
            _ => StoreError::Database { op, message },
        }
    }

    /// Classifies an error of the SQLite reader whole-chain scans use (see `scan_stored`).
    pub(crate) fn from_rusqlite(op: &'static str, e: rusqlite::Error) -> StoreError {
        let message = e.to_string();
        match e.sqlite_error_code() {
            Some(
                rusqlite::ErrorCode::DatabaseBusy
                | rusqlite::ErrorCode::DatabaseLocked
                | rusqlite::ErrorCode::CannotOpen,
            ) => StoreError::Unavailable { op, message },
            _ => StoreError::Database { op, message },
        }
    }

    /// True when retrying later may succeed.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }
}
