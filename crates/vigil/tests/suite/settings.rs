//! `vigil --settings FILE`: the real binary configured from a TOML file, with flags winning,
//! a typo refused, and the database password never in its log.

use crate::common::*;
use std::process::{Command, Stdio};

#[tokio::test]
async fn the_audit_service_runs_from_a_settings_file_and_never_logs_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_db(Engine::Postgres, dir.path()).await;
    // Trust auth ignores the password; the URL still carries one, as in production.
    let with_password = url.replacen("postgres://postgres@", "postgres://postgres:hunter2@", 1);
    assert_ne!(with_password, url, "{url}");
    let port = free_port();
    let settings = dir.path().join("vigil.toml");
    std::fs::write(
        &settings,
        format!(
            r#"
[audit.serve]
listen = "127.0.0.1:1"
database-url = "{with_password}"
data-dir = "{data}"
trust-headers = true
checkpoint-interval = "2s"

[auth.serve]
token-ttl = "10m"
"#,
            data = dir.path().join("data").display()
        ),
    )
    .unwrap();
    let log = dir.path().join("log");
    let child = Command::new(vigil_bin())
        .arg("--settings")
        .arg(&settings)
        // A flag wins over the file.
        .args(["audit", "serve", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .env("VIGIL_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut server = Server {
        child,
        addr: format!("127.0.0.1:{port}").parse().unwrap(),
    };
    server.wait_ready().await;
    let r = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/v1/events"))
        .header("X-Tenant-ID", "acme")
        .header("X-User-ID", "ana")
        .header("X-Roles", "service")
        .json(&events(0, 3))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "trust-headers came from the file");
    server.terminate();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("postgres:***@"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}

#[test]
fn a_setting_that_does_not_exist_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let settings = dir.path().join("vigil.toml");
    std::fs::write(&settings, "[audit.serve]\ncheckpoint-intervall = \"1s\"\n").unwrap();
    let out = Command::new(vigil_bin())
        .arg("--settings")
        .arg(&settings)
        .args(["verify", "--database-url", "sqlite://nowhere.db"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("[audit.serve] has no setting `checkpoint-intervall`"),
        "{err}"
    );
}
