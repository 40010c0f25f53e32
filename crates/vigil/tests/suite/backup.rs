//! `vigil backup` / `vigil restore` as a user runs them: backed up while ingest goes on, the
//! store wiped, restored and verified on both engines; a damaged part, an untrusted signing
//! key, a non-empty target and a wrong encryption key refused; S3-compatible storage (moto)
//! with encryption and retention.

use super::common::*;
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// `vigil ARGS` with `env`; (exit code, stdout and stderr).
fn vigil(args: &[&str], env: &[(&str, String)]) -> (i32, String) {
    let out = Command::new(vigil_bin())
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// A service with three tenants' events and signed checkpoints.
async fn filled(engine: Engine) -> TestApp {
    let app = spawn_app_with(engine, |s| s.checkpoint_every = 20).await;
    for (i, tenant) in ["acme", "globex", "initech"].iter().enumerate() {
        let r = app.post_events(tenant, &events(0, 60 + i as u64 * 7)).await;
        assert_eq!(r.status(), 200);
    }
    // The checkpointer signs after every 20 events; give it a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    app
}

/// `vigil restore --from FROM --database-url TARGET EXTRA…`.
fn restore(from: &str, target: &str, extra: &[&str]) -> (i32, String) {
    let mut args = vec!["restore", "--from", from, "--database-url", target];
    args.extend_from_slice(extra);
    vigil(&args, &[])
}

fn data_dir(app: &TestApp) -> String {
    app.dir.path().join("data").display().to_string()
}

fn records(db: &str) -> String {
    let (code, out) = run_verify(db, &[]);
    assert_eq!(code, 0, "{out}");
    out
}

async fn backup_wipe_restore_verify(engine: Engine) {
    let mut app = filled(engine).await;
    let backups = tempfile::tempdir().unwrap();
    let to = backups.path().display().to_string();

    // Ingest keeps going while the backup runs: the snapshot is one instant, whole.
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let writer = {
        let client = app.client.clone();
        let url = app.url("/v1/events");
        tokio::spawn(async move {
            let mut n = 0u64;
            loop {
                if stopped.try_recv().is_ok() {
                    return n;
                }
                let r = client
                    .post(&url)
                    .header("X-Tenant-ID", "acme")
                    .header("X-Roles", "admin")
                    .json(&events(1000 + n, 5))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                n += 5;
            }
        })
    };
    let db = app.db_url.clone();
    let (code, out) = tokio::task::spawn_blocking(move || {
        vigil(&["backup", "--database-url", &db, "--to", &to], &[])
    })
    .await
    .unwrap();
    stop.send(()).unwrap();
    let written_during = writer.await.unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("tenants"), "{out}");
    app.stop().await;

    let manifest = only_manifest(backups.path());
    let acme = tenant(&manifest, "acme");
    assert!(acme["records"].as_i64().unwrap() >= 60);
    assert!(acme["checkpoint"]["note"]
        .as_str()
        .unwrap()
        .contains("vigil-audit/acme"));
    let before = records(&app.db_url);

    // Wiped: a new, empty store.
    let target_dir = tempfile::tempdir().unwrap();
    let target = fresh_db(engine, target_dir.path()).await;
    let from = backups.path().display().to_string();
    let dd = data_dir(&app);
    let (code, out) = restore(&from, &target, &["--data-dir", &dd]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("intact") && out.contains("restored"), "{out}");
    // The restored store is the backup: the same heads the manifest states (what was written
    // after the snapshot is not in it, and nothing else is missing).
    let after = records(&target);
    for t in ["globex", "initech"] {
        // Records and head; the checkpoint count may differ (the service signs one more as
        // it stops, after the backup).
        let line = |s: &str| {
            let l = s.lines().find(|l| l.starts_with(t)).unwrap();
            l.split(", ").take(3).collect::<Vec<_>>().join(", ")
        };
        assert_eq!(line(&before), line(&after));
    }
    let restored_acme = count_sql(
        engine,
        &target,
        "SELECT COUNT(*) FROM events WHERE tenant_id = 'acme'",
    )
    .await;
    assert_eq!(restored_acme, acme["records"].as_i64().unwrap());
    assert!(written_during > 0);

    // A service started on the restored store carries on the chains.
    let mut again = spawn_app_with(engine, |s| {
        s.database_url = target.clone().into();
        s.data_dir = app.dir.path().join("data");
    })
    .await;
    let r = again.post_events("globex", &events(5000, 10)).await;
    assert_eq!(r.status(), 200);
    again.stop().await;
    records(&target);

    // Restoring over a store that holds records is refused, and leaves it as it was.
    let (code, out) = restore(&from, &target, &["--data-dir", &dd]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("--force"), "{out}");
    let globex = "SELECT COUNT(*) FROM events WHERE tenant_id = 'globex'";
    let grown = count_sql(engine, &target, globex).await;
    assert_eq!(
        grown,
        tenant(&manifest, "globex")["records"].as_i64().unwrap() + 10
    );
    // With --force it is replaced by the backup.
    let (code, out) = restore(&from, &target, &["--data-dir", &dd, "--force"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        count_sql(engine, &target, globex).await,
        tenant(&manifest, "globex")["records"].as_i64().unwrap()
    );
}

async fn a_damaged_part_is_refused_by_name_and_nothing_is_written(engine: Engine) {
    let mut app = filled(engine).await;
    let backups = tempfile::tempdir().unwrap();
    let to = backups.path().display().to_string();
    let (code, out) = vigil(&["backup", "--database-url", &app.db_url, "--to", &to], &[]);
    assert_eq!(code, 0, "{out}");
    app.stop().await;
    let manifest = only_manifest(backups.path());
    let dir = backups.path().join(manifest["id"].as_str().unwrap());
    let part = manifest["streams"][0]["parts"][0]["path"].as_str().unwrap();
    let mut bytes = std::fs::read(dir.join(part)).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(dir.join(part), bytes).unwrap();

    let (code, out) = vigil(&["backup", "check", &to, "--trust-recorded-keys"], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(part) && out.contains("SHA-256"), "{out}");

    let target_dir = tempfile::tempdir().unwrap();
    let target = fresh_db(engine, target_dir.path()).await;
    let dd = data_dir(&app);
    let (code, out) = restore(&to, &target, &["--data-dir", &dd]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(part) && out.contains("damaged"), "{out}");
    match engine {
        Engine::Sqlite => assert!(!Path::new(target.trim_start_matches("sqlite://")).exists()),
        Engine::Postgres => assert_eq!(
            count_sql(
                engine,
                &target,
                "SELECT COUNT(*) FROM pg_tables WHERE tablename = 'events'"
            )
            .await,
            0
        ),
    }
}

on_both_engines!(
    backup_wipe_restore_verify,
    a_damaged_part_is_refused_by_name_and_nothing_is_written
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_signed_by_another_key_is_refused_unless_that_key_is_trusted() {
    let mut app = filled(Engine::Sqlite).await;
    let backups = tempfile::tempdir().unwrap();
    let to = backups.path().display().to_string();
    let (code, out) = vigil(&["backup", "--database-url", &app.db_url, "--to", &to], &[]);
    assert_eq!(code, 0, "{out}");
    app.stop().await;
    let (_, keys) = vigil(&["keys", "list", "--database-url", &app.db_url], &[]);
    let original_key = keys.split('\t').next().unwrap().to_string();

    // Another installation's key directory: its key did not sign these checkpoints.
    let other = tempfile::tempdir().unwrap();
    let mut stranger =
        spawn_app_with(Engine::Sqlite, |s| s.data_dir = other.path().to_path_buf()).await;
    stranger.stop().await;
    let target_dir = tempfile::tempdir().unwrap();
    let target = format!("sqlite://{}/restored.db", target_dir.path().display());
    let od = other.path().display().to_string();
    let (code, out) = restore(&to, &target, &["--data-dir", &od]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("not trusted") && out.contains("vigil-audit+"),
        "{out}"
    );
    assert!(!target_dir.path().join("restored.db").exists());

    // No trust named at all is a usage error, not a silent default.
    let (code, out) = vigil(&["restore", "--from", &to, "--database-url", &target], &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("--trusted-key"), "{out}");

    let (code, out) = restore(&to, &target, &["--trusted-key", &original_key]);
    assert_eq!(code, 0, "{out}");
}

/// moto's S3-compatible server on a free port, with a bucket.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn moto(bucket: &str) -> Moto {
    let python = std::env::var("VIGIL_PYTHON").unwrap_or_else(|_| "python3".into());
    let port = free_port();
    let child = Command::new(&python)
        .args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting moto with {python}: {e}"));
    let m = Moto {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    let http = reqwest::Client::new();
    for _ in 0..300 {
        if let Ok(r) = http.put(format!("{}/{bucket}", m.endpoint)).send().await {
            assert!(r.status().is_success(), "creating bucket: {}", r.status());
            return m;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "moto did not start on port {port} (the test command installs moto[server] into \
         VIGIL_PYTHON's environment)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_backup_to_object_storage_restores_and_old_ones_are_pruned() {
    let s3 = moto("vigil-backups").await;
    let env = [
        ("AWS_ENDPOINT_URL", s3.endpoint.clone()),
        ("AWS_ALLOW_HTTP", "true".to_string()),
        ("AWS_ACCESS_KEY_ID", "test".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
    ];
    let mut app = filled(Engine::Postgres).await;
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("backup.key").display().to_string();
    let (code, out) = vigil(&["backup", "keygen", &key], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        !out.contains(std::fs::read_to_string(&key).unwrap().trim()),
        "{out}"
    );

    let to = "s3://vigil-backups/prod/audit";
    for _ in 0..3 {
        let (code, out) = vigil(
            &[
                "backup",
                "--database-url",
                &app.db_url,
                "--to",
                to,
                "--key-file",
                &key,
                "--keep-last",
                "2",
            ],
            &env,
        );
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("encrypted"), "{out}");
    }
    app.stop().await;
    let (code, listed) = vigil(&["backup", "list", to], &env);
    assert_eq!(code, 0, "{listed}");
    assert_eq!(
        listed.lines().count(),
        2,
        "--keep-last 2 keeps two: {listed}"
    );
    assert!(listed.lines().all(|l| l.ends_with("encrypted")));

    let target = fresh_db(Engine::Postgres, keys.path()).await;
    let dd = data_dir(&app);
    let restore_s3 = |extra: &[&str]| {
        let mut args = vec![
            "restore",
            "--from",
            to,
            "--database-url",
            &target,
            "--data-dir",
            &dd,
        ];
        args.extend_from_slice(extra);
        vigil(&args, &env)
    };
    let (code, out) = restore_s3(&[]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("encrypted") && out.contains("--key-file"),
        "{out}"
    );
    let wrong = keys.path().join("wrong.key").display().to_string();
    vigil(&["backup", "keygen", &wrong], &[]);
    let (code, out) = restore_s3(&["--key-file", &wrong]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("encrypted with key"), "{out}");
    let (code, out) = restore_s3(&["--key-file", &key]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("intact"), "{out}");
    records(&target);
}

fn only_manifest(dir: &Path) -> Value {
    let mut found: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path().join("manifest.json"))
        .filter(|p| p.exists())
        .collect();
    assert_eq!(found.len(), 1, "one backup in {}", dir.display());
    serde_json::from_slice(&std::fs::read(found.pop().unwrap()).unwrap()).unwrap()
}

fn tenant<'a>(manifest: &'a Value, t: &str) -> &'a Value {
    manifest["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["tenant"] == t)
        .unwrap()
}

const PERSONAL: &str = r#"{"mode": "enforce", "rules": [],
    "personal": {"subject": "payload.customer.id", "members": ["payload.customer"]}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restoring_a_backup_older_than_an_erasure_erases_the_subject_again() {
    let mut app = spawn_app_with(Engine::Sqlite, |s| s.checkpoint_every = 5).await;
    let put = app
        .client
        .put(app.url("/v1/redaction-policy"))
        .header("X-Tenant-ID", "acme")
        .header("X-User-ID", "dpo")
        .header("X-Roles", "admin")
        .header("Content-Type", "application/json")
        .body(PERSONAL)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let mut batch = events(0, 6);
    for e in batch.as_array_mut().unwrap() {
        e["payload"] = serde_json::json!({"customer": {"id": "c-1", "name": "Alice"}, "total": 3});
    }
    assert_eq!(app.post_events("acme", &batch).await.status(), 200);
    let backups = tempfile::tempdir().unwrap();
    let to = backups.path().display().to_string();
    let (code, out) = vigil(&["backup", "--database-url", &app.db_url, "--to", &to], &[]);
    assert_eq!(code, 0, "{out}");
    let older = only_manifest(backups.path())["id"]
        .as_str()
        .unwrap()
        .to_string();

    let erase = app
        .client
        .post(app.url("/v1/subjects/c-1/erase"))
        .header("X-Tenant-ID", "acme")
        .header("X-User-ID", "dpo")
        .header("X-Roles", "admin")
        .send()
        .await
        .unwrap();
    assert_eq!(erase.status(), 200);
    // Backup ids are made to the second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (code, out) = vigil(&["backup", "--database-url", &app.db_url, "--to", &to], &[]);
    assert_eq!(code, 0, "{out}");
    app.stop().await;

    // The older backup still holds the subject's key.
    let older_dir = backups.path().join(&older).display().to_string();
    let target_dir = tempfile::tempdir().unwrap();
    let target = format!("sqlite://{}/restored.db", target_dir.path().display());
    let key = {
        let (_, keys) = vigil(&["keys", "list", "--database-url", &app.db_url], &[]);
        keys.split('\t').next().unwrap().to_string()
    };
    // Without the signing key for a new receipt, the restore is refused: it would bring the
    // subject back.
    let (code, out) = restore(&older_dir, &target, &["--trusted-key", &key]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("erased after this backup"), "{out}");
    assert!(!target_dir.path().join("restored.db").exists());

    let dd = data_dir(&app);
    let (code, out) = restore(&older_dir, &target, &["--data-dir", &dd]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("re-applied the erasure"), "{out}");
    assert_eq!(
        count_sql(Engine::Sqlite, &target, "SELECT COUNT(*) FROM subject_keys").await,
        0
    );
    assert_eq!(
        count_sql(
            Engine::Sqlite,
            &target,
            "SELECT COUNT(*) FROM events WHERE action = 'audit.subject.erased'"
        )
        .await,
        1
    );
    let (code, out) = run_verify(&target, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("erased"), "{out}");
}
