//! Fresh databases for tests (feature `testing`): every test gets its own, so tests run in
//! parallel without sharing state.
//!
//! Postgres tests use the server named by `VIGIL_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`). They never skip: when the server is not there
//! they fail and say how to provide one (the README's test command starts or installs it).

use sqlx::{Connection, Executor, PgConnection};
use std::time::{SystemTime, UNIX_EPOCH};

/// The server tests create their databases on.
pub fn postgres_admin_url() -> String {
    std::env::var("VIGIL_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Creates an empty database and returns its URL. Databases this helper made more than an
/// hour ago are dropped on the way (best effort), so runs do not pile them up.
pub async fn fresh_postgres_url() -> String {
    let admin = postgres_admin_url();
    let mut conn = PgConnection::connect(&admin).await.unwrap_or_else(|e| {
        panic!(
            "Postgres tests need a server at {admin} ({e}). Run ./scripts/test.sh, which starts or \
             installs one, or set VIGIL_TEST_POSTGRES_URL."
        )
    });
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let old: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'vigil_t_%'")
            .fetch_all(&mut conn)
            .await
            .unwrap_or_default();
    for name in old {
        let made: u64 = name
            .split('_')
            .nth(2)
            .and_then(|s| s.parse().ok())
            .unwrap_or(u64::MAX);
        if made.saturating_add(3600) < now {
            let _ = conn
                .execute(format!("DROP DATABASE IF EXISTS \"{name}\"").as_str())
                .await;
        }
    }
    let name = format!("vigil_t_{now}_{}", uuid::Uuid::new_v4().simple());
    conn.execute(format!("CREATE DATABASE \"{name}\"").as_str())
        .await
        .unwrap_or_else(|e| panic!("creating test database {name}: {e}"));
    let base = admin
        .rsplit_once('/')
        .map(|(b, _)| b)
        .expect("a postgres URL has a path");
    format!("{base}/{name}")
}

/// A SQLite URL for a new file in `dir`.
pub fn sqlite_url(dir: &std::path::Path) -> String {
    format!("sqlite://{}", dir.join("vigil.db").display())
}
