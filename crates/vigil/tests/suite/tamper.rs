//! Change stored rows with plain SQL: `vigil verify` exits 1 and names the seq and the damage.

use crate::common::*;

async fn tampering_is_named_by_seq(engine: Engine, sql: &str, expect: &str) {
    let mut app = spawn_app_with(engine, |s| s.checkpoint_every = 20).await;
    app.post_events("acme", &events(0, 20)).await;
    app.post_events("bystander", &events(0, 5)).await;
    app.stop().await;
    let (code, out) = run_verify(&app.db_url, &[]);
    assert_eq!(code, 0, "before tampering: {out}");
    execute_sql(engine, &app.db_url, sql).await;
    let (code, out) = run_verify(&app.db_url, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("acme: TAMPERED at {expect}")),
        "expected {expect:?} in:\n{out}"
    );
    assert!(out.contains("bystander: intact, 5 records"), "{out}");
    let (code, out) = run_verify(&app.db_url, &["--tenant", "bystander"]);
    assert_eq!(code, 0, "{out}");
}

const CASES: &[(&str, &str)] = &[
    ("UPDATE events SET action = 'payment.refund' WHERE tenant_id = 'acme' AND seq = 7", "seq 7: body modified"),
    ("UPDATE events SET payload = '{\"amount\":999}' WHERE tenant_id = 'acme' AND seq = 4", "seq 4: payload field \"amount\" modified"),
    ("UPDATE events SET chain_hash = leaf_hash WHERE tenant_id = 'acme' AND seq = 11", "seq 11: hash column chain_hash altered"),
    ("DELETE FROM events WHERE tenant_id = 'acme' AND seq = 9", "seq 9: record missing"),
    ("DELETE FROM events WHERE tenant_id = 'acme' AND seq > 17", "seq 18: record missing"),
    ("UPDATE checkpoints SET note = replace(note, E'\\n20\\n', E'\\n21\\n') WHERE tenant_id = 'acme'", "seq 20: checkpoint signature invalid"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_sql_tampering_is_found_at_its_seq_on_sqlite() {
    for (sql, expect) in CASES {
        // SQLite has no E'' strings: its literals take a real newline.
        let sql = sql
            .replace("E'\\n20\\n'", "char(10)||'20'||char(10)")
            .replace("E'\\n21\\n'", "char(10)||'21'||char(10)");
        tampering_is_named_by_seq(Engine::Sqlite, &sql, expect).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_sql_tampering_is_found_at_its_seq_on_postgres() {
    for (sql, expect) in CASES {
        tampering_is_named_by_seq(Engine::Postgres, sql, expect).await;
    }
}

#[tokio::test]
async fn verify_exits_2_when_the_store_cannot_be_reached() {
    let (code, out) = run_verify("postgres://postgres@127.0.0.1:1/nothing", &[]);
    assert_eq!(code, 2, "{out}");
    let (code, _) = run_verify("mysql://nope", &[]);
    assert_eq!(code, 2);
}

/// An auditor's typo never reads as "intact": a missing database or tenant is exit 2, and
/// `verify` creates nothing.
async fn a_missing_store_or_tenant_is_exit_2_and_nothing_is_created(engine: Engine) {
    let mut app = spawn_app(engine).await;
    app.post_events("acme", &events(0, 3)).await;
    app.stop().await;
    let (code, out) = run_verify(&app.db_url, &["--tenant", "doesnotexist"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("no tenant \"doesnotexist\""), "{out}");
    let (code, out) = run_verify(&app.db_url, &["--tenant", "acme"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("acme: intact, 3 records"), "{out}");
    if let Engine::Sqlite = engine {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.db");
        let (code, out) = run_verify(&format!("sqlite://{}", missing.display()), &[]);
        assert_eq!(code, 2, "{out}");
        assert!(out.contains("there is no database at"), "{out}");
        assert!(!missing.exists(), "verify created {}", missing.display());
        // A SQLite file that is not a Vigil store.
        let other = dir.path().join("other.db");
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=rwc", other.display()))
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (x)")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        let (code, out) = run_verify(&format!("sqlite://{}", other.display()), &[]);
        assert_eq!(code, 2, "{out}");
        assert!(out.contains("not a Vigil store"), "{out}");
    }
}

on_both_engines!(a_missing_store_or_tenant_is_exit_2_and_nothing_is_created);
