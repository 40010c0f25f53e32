//! `vigil retention run` (issue 11, item 3): a purge with a signed manifest verifies and is
//! named; a removal no manifest covers is tampering; a dry run changes nothing.

use crate::common::*;
use std::process::Command;

fn retention(app_db: &str, data_dir: &std::path::Path, extra: &[&str]) -> (i32, String) {
    let out = Command::new(vigil_bin())
        .args([
            "retention",
            "run",
            "--database-url",
            app_db,
            "--tenant",
            "acme",
            "--data-dir",
        ])
        .arg(data_dir)
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

async fn a_purge_with_its_manifest_verifies_and_anything_else_is_tampering(engine: Engine) {
    let mut app = spawn_app(engine).await;
    assert_eq!(app.post_events("acme", &events(0, 6)).await.status(), 200);
    app.stop().await;
    let data = app.dir.path().join("data");
    let future = "2099-01-01T00:00:00Z";

    // Bad input changes nothing.
    let (code, out) = retention(&app.db_url, &data, &["--days", "0"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("must be 1 to 36500"), "{out}");
    // A dry run says what it would do, and does nothing.
    let (code, out) = retention(&app.db_url, &data, &["--before", future, "--dry-run"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("would purge seq 1..6 (6 records)"), "{out}");
    let (code, out) = run_verify(&app.db_url, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("purged"), "{out}");

    let (code, out) = retention(
        &app.db_url,
        &data,
        &["--before", future, "--reason", "GDPR retention: 30 days"],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("purged seq 1..6 (6 records, "), "{out}");
    assert!(out.contains("bytes returned to the file system"), "{out}");
    let (code, out) = run_verify(&app.db_url, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("seq 1..6 purged by policy on"), "{out}");
    assert!(
        out.contains("GDPR retention: 30 days), manifest valid"),
        "{out}"
    );
    // Again: the manifest (seq 7) is never purged; nothing new to do.
    let (code, out) = retention(&app.db_url, &data, &["--before", future]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = run_verify(&app.db_url, &[]);
    assert_eq!(code, 0, "{out}");

    // Later records, one of them emptied by hand: tampering, at its seq.
    let db = app.db_url.clone();
    let later = spawn_app_with(engine, |s| {
        s.database_url = db.into();
        s.data_dir = data.clone();
    })
    .await;
    // The independent verifier (Python, no Vigil code) accepts the purge by its manifest.
    let independent = || independent_verify(later.addr, "acme", &[]);
    let (code, text) = independent();
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("seq 1..6 purged by policy on"), "{text}");
    assert!(text.contains("manifest valid"), "{text}");
    assert_eq!(
        later.post_events("acme", &events(10, 3)).await.status(),
        200
    );
    let sql = "UPDATE events SET payload = '{}', payload_salts = '{}' WHERE tenant_id = 'acme' AND seq = 9";
    execute_sql(engine, &later.db_url, sql).await;
    let (code, text) = independent();
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("seq 9: payload field"), "{text}");
    let (code, out) = run_verify(&later.db_url, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("TAMPERED at seq 9"), "{out}");
    assert!(out.contains("removed"), "{out}");
}

/// The service's own schedule purges every tenant, counts it, and the store still verifies.
async fn the_scheduled_job_purges_every_tenant_and_counts_it(engine: Engine) {
    let app = spawn_app_with(engine, |s| {
        s.retention = Some(std::time::Duration::from_millis(300));
        s.retention_interval = std::time::Duration::from_millis(200);
    })
    .await;
    assert_eq!(app.post_events("acme", &events(0, 4)).await.status(), 200);
    assert_eq!(app.post_events("globex", &events(0, 3)).await.status(), 200);
    let mut deleted = 0.0;
    for _ in 0..100 {
        deleted = app.metric("audit_retention_deleted_total").await;
        if deleted >= 7.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(deleted, 7.0, "every record of both tenants, once");
    assert!(
        app.metric("audit_retention_last_run_timestamp_seconds")
            .await
            > 1.7e9
    );
    // Later runs find nothing new: a manifest alone never calls for another manifest.
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    assert_eq!(app.get_json("acme", "/v1/chain/head").await["seq"], 5);
    assert_eq!(app.metric("audit_retention_deleted_total").await, 7.0);
    let first: serde_json::Value = app.get_json("acme", "/v1/events?limit=1000").await;
    let oldest = first["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(oldest["seq"], 1);
    assert!(
        oldest["payload"].as_object().unwrap().is_empty(),
        "{oldest}"
    );
    let (code, out) = run_verify(&app.db_url, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("acme: intact") && out.contains("purged by policy"),
        "{out}"
    );
    assert!(out.contains("globex: intact"), "{out}");
}

/// Each tenant's own period comes before the service's; a pass purges what each lets go and
/// nothing else, and the store verifies afterwards. Records are back-dated as they are
/// received (received_at is hashed: it cannot be changed afterwards).
async fn each_tenant_is_purged_by_its_own_period_before_the_services(engine: Engine) {
    use std::time::Duration;
    use vigil_core::ids::TenantId;
    use vigil_core::time::Timestamp;
    let dir = tempfile::tempdir().unwrap();
    let mut s = vigil_audit::AuditSettings::embedded(dir.path().join("data"));
    s.database_url = fresh_db(engine, dir.path()).await.into();
    let w = vigil_audit::app::Writer::open(&s).await.unwrap();
    let day = 86_400_000_000i64;
    let ten_days_ago = Timestamp::from_micros(Timestamp::now().micros() - 10 * day).unwrap();
    let (acme, globex, initech) = (
        TenantId::parse("acme").unwrap(),
        TenantId::parse("globex").unwrap(),
        TenantId::parse("initech").unwrap(),
    );
    let valid = |from, n| -> Vec<vigil_core::event::Event> {
        events(from, n)
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                vigil_core::event::EventInput::new(e.clone())
                    .validate(|| unreachable!())
                    .unwrap()
            })
            .collect()
    };
    for t in [&acme, &globex, &initech] {
        w.sequencer
            .submit(t, valid(0, 3), ten_days_ago)
            .await
            .unwrap();
        w.sequencer
            .submit(t, valid(10, 2), Timestamp::now())
            .await
            .unwrap();
    }
    let at = Timestamp::now();
    w.store
        .set_retention_days(&acme, Some(5), at)
        .await
        .unwrap();
    w.store
        .set_retention_days(&globex, Some(20), at)
        .await
        .unwrap();
    // The service keeps all: only acme's own period lets anything go.
    let once = |fleet| {
        vigil_audit::retention::run_once(&w.store, &w.checkpointer, &w.sequencer, &w.metrics, fleet)
    };
    let (purged, _) = once(None).await;
    assert_eq!(purged, 3);
    // The service keeps 7 days: initech (no period of its own) goes too; globex keeps 20.
    let (purged, _) = once(Some(Duration::from_secs(7 * 86_400))).await;
    assert_eq!(purged, 3);
    let (purged, _) = once(Some(Duration::from_secs(7 * 86_400))).await;
    assert_eq!(purged, 0, "nothing twice");
    for (t, cleared) in [(&acme, true), (&globex, false), (&initech, true)] {
        let recs = w.store.scan(t, 0, 100).await.unwrap();
        for r in &recs[..3] {
            assert_eq!(r.payload.is_empty(), cleared, "{t} seq {}", r.seq);
        }
        assert!(
            recs[3..5].iter().all(|r| !r.payload.is_empty()),
            "{t}: recent records kept"
        );
    }
    w.sequencer.shutdown().await;
    let (code, out) = run_verify(s.database_url.expose(), &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("acme: intact") && out.contains("initech: intact"),
        "{out}"
    );
    assert_eq!(out.matches("manifest valid").count(), 2, "{out}");
}

on_both_engines!(
    each_tenant_is_purged_by_its_own_period_before_the_services,
    a_purge_with_its_manifest_verifies_and_anything_else_is_tampering,
    the_scheduled_job_purges_every_tenant_and_counts_it,
);
