//! The real `vigil auth serve` and `vigil audit serve --jwks-url` as processes: key rotation
//! under load refuses no valid token, retired keys stop working, the audit service survives
//! the issuer going away, PyJWT verifies Vigil's tokens from its JWKS, and `vigil dev` takes
//! its own tokens end to end.

use crate::common::*;
use reqwest::Client;
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn log_level() -> (&'static str, Stdio) {
    if std::env::var_os("TEST_LOG").is_some() {
        ("info", Stdio::inherit())
    } else {
        ("warn", Stdio::null())
    }
}

/// `vigil auth serve` with short lifetimes, so rotation and retirement happen within a test.
fn spawn_auth(db: &str, port: u16, audit_port: u16) -> Server {
    let (level, stderr) = log_level();
    let child = Command::new(vigil_bin())
        .args(["auth", "serve", "--database-url", db, "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .args([
            "--reload-interval",
            "100ms",
            "--jwks-max-age",
            "1s",
            "--token-ttl",
            "2s",
            "--rotation-grace",
            "1s",
        ])
        .arg("--audit-url")
        .arg(format!("http://127.0.0.1:{audit_port}"))
        .env("VIGIL_LOG", level)
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("spawning vigil auth serve");
    Server {
        child,
        addr: format!("127.0.0.1:{port}").parse().unwrap(),
    }
}

fn spawn_audit(data: &std::path::Path, port: u16, auth_port: u16) -> Server {
    let (level, stderr) = log_level();
    let child = Command::new(vigil_bin())
        .args(["audit", "serve", "--trust-headers", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(data)
        .arg("--jwks-url")
        .arg(format!(
            "http://127.0.0.1:{auth_port}/.well-known/jwks.json"
        ))
        .arg("--token-issuer")
        .arg(format!("http://127.0.0.1:{auth_port}"))
        .args([
            "--jwks-min-refresh",
            "500ms",
            "--jwks-unknown-kid-cooldown",
            "200ms",
            "--jwks-fetch-timeout",
            "500ms",
        ])
        .env("VIGIL_LOG", level)
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("spawning vigil audit serve");
    Server {
        child,
        addr: format!("127.0.0.1:{port}").parse().unwrap(),
    }
}

fn cli(args: &[&str]) -> String {
    let out = Command::new(vigil_bin()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "vigil {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `vigil auth keys rotate` with the test's lifetimes.
fn rotate(db: &str) {
    cli(&[
        "auth",
        "keys",
        "rotate",
        "--database-url",
        db,
        "--token-ttl-secs",
        "2",
        "--rotation-grace-secs",
        "1",
    ]);
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

async fn client_token(http: &Client, auth: &str, id: &str, secret: &str) -> String {
    let r = http
        .post(format!("http://{auth}/oauth/token"))
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn post_event(http: &Client, audit: &str, token: &str, i: u64) -> (u16, String) {
    let r = http
        .post(format!("http://{audit}/v1/events"))
        .bearer_auth(token)
        .json(&json!([event(i)]))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn audit_actions(http: &Client, audit: &str, tenant: &str, action: &str) -> usize {
    let r: Value = http
        .get(format!(
            "http://{audit}/v1/events?limit=1000&action={action}"
        ))
        .header("X-Tenant-ID", tenant)
        .header("X-Roles", "admin")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["events"].as_array().map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_rotations_under_load_refuse_no_valid_token_and_retired_keys_stop_working() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("auth.db").display());
    let (auth_port, audit_port) = (free_port(), free_port());
    let mut auth = spawn_auth(&db, auth_port, audit_port);
    auth.wait_ready().await;
    let mut audit = spawn_audit(&dir.path().join("audit"), audit_port, auth_port);
    audit.wait_ready().await;
    let created = cli(&[
        "auth",
        "clients",
        "add",
        "--database-url",
        &db,
        "--tenant",
        "acme",
        "--name",
        "loadgen",
        "--roles",
        "service",
    ]);
    let field = |k: &str| {
        created
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap()
            .to_owned()
    };
    let (id, secret) = (field("client_id="), field("client_secret="));
    let (auth_addr, audit_addr) = (auth.addr.to_string(), audit.addr.to_string());
    let http = Client::new();

    // Load: three clients, each taking a fresh token every 200 ms and sending events
    // continuously; every refusal is recorded with the token's kid.
    let stop = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(Mutex::new(Vec::<String>::new()));
    let kids = Arc::new(Mutex::new(std::collections::BTreeSet::<String>::new()));
    let mut sent = Vec::new();
    for c in 0..3u64 {
        let (stop, refused, kids, http) =
            (stop.clone(), refused.clone(), kids.clone(), http.clone());
        let (auth_addr, audit_addr, id, secret) = (
            auth_addr.clone(),
            audit_addr.clone(),
            id.clone(),
            secret.clone(),
        );
        sent.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let token = client_token(&http, &auth_addr, &id, &secret).await;
                kids.lock().unwrap().insert(kid_of(&token));
                let until = tokio::time::Instant::now() + Duration::from_millis(200);
                while tokio::time::Instant::now() < until {
                    let (status, body) =
                        post_event(&http, &audit_addr, &token, c * 1_000_000 + n).await;
                    n += 1;
                    if status != 200 {
                        refused
                            .lock()
                            .unwrap()
                            .push(format!("{status} kid {}: {body}", kid_of(&token)));
                    }
                }
            }
            n
        }));
    }
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        rotate(&db);
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::SeqCst);
    let mut total = 0;
    for s in sent {
        total += s.await.unwrap();
    }
    let refused = refused.lock().unwrap().clone();
    assert!(
        refused.is_empty(),
        "{} of {total} requests refused: {:?}",
        refused.len(),
        &refused[..refused.len().min(5)]
    );
    let kids = kids.lock().unwrap().len();
    assert!(
        kids >= 10,
        "tokens were signed by {kids} keys over ten rotations"
    );
    assert!(total > 300, "only {total} requests under load");

    // Rotated-out keys retired by themselves once their tokens expired (2 s + 1 s grace).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let listed = cli(&["auth", "keys", "list", "--database-url", &db]);
    let retired = listed.lines().filter(|l| l.contains("\tretired\t")).count();
    assert!(retired >= 9, "{listed}");

    // A key retired by an operator stops verifying once the audit service refreshes, even for
    // a token that is otherwise still acceptable.
    let token = client_token(&http, &auth_addr, &id, &secret).await;
    assert_eq!(
        post_event(&http, &audit_addr, &token, 9_000_000).await.0,
        200
    );
    rotate(&db);
    cli(&[
        "auth",
        "keys",
        "retire",
        &kid_of(&token),
        "--database-url",
        &db,
    ]);
    tokio::time::sleep(Duration::from_millis(1800)).await;
    let (status, body) = post_event(&http, &audit_addr, &token, 9_000_001).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("invalid_token"), "{body}");

    // Every rotation and retirement, and every token issued, is in the audit trail.
    let mut seen = (0, 0, 0);
    for _ in 0..100 {
        seen = (
            audit_actions(&http, &audit_addr, "system", "auth.key.rotated").await,
            audit_actions(&http, &audit_addr, "system", "auth.key.retired").await,
            audit_actions(&http, &audit_addr, "acme", "auth.token.issued").await,
        );
        if seen.0 >= 11 && seen.1 >= 10 && seen.2 >= 30 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        seen.0 >= 11 && seen.1 >= 10 && seen.2 >= 30,
        "rotated, retired, issued: {seen:?}"
    );

    // The issuer goes away: cached keys keep verifying, /readyz and the metric say so.
    let token = client_token(&http, &auth_addr, &id, &secret).await;
    tokio::time::sleep(Duration::from_millis(1200)).await; // the audit service learns the newest key
    auth.kill9();
    let mut readyz = String::new();
    for _ in 0..60 {
        readyz = get_text(&http, format!("http://{audit_addr}/readyz")).await;
        if readyz.contains("stale") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        readyz.contains("\"status\":\"ready\"") && readyz.contains("stale"),
        "{readyz}"
    );
    let (status, body) = post_event(&http, &audit_addr, &token, 9_000_002).await;
    assert_eq!(status, 200, "cached keys keep verifying: {body}");
    let metrics = get_text(&http, format!("http://{audit_addr}/metrics")).await;
    assert_eq!(metric_value(&metrics, "jwks_stale"), 1.0, "{metrics}");
    assert!(metric_value(&metrics, "jwks_refresh_total{outcome=\"error\"}") >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyjwt_verifies_tokens_vigil_issued_with_its_published_jwks() {
    for alg in ["eddsa", "es256"] {
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("auth.db").display());
        let port = free_port();
        let (level, stderr) = log_level();
        let child = Command::new(vigil_bin())
            .args([
                "auth",
                "serve",
                "--database-url",
                &db,
                "--key-alg",
                alg,
                "--listen",
            ])
            .arg(format!("127.0.0.1:{port}"))
            .env("VIGIL_LOG", level)
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut auth = Server {
            child,
            addr: format!("127.0.0.1:{port}").parse().unwrap(),
        };
        auth.wait_ready().await;
        let created = cli(&[
            "auth",
            "clients",
            "add",
            "--database-url",
            &db,
            "--tenant",
            "acme",
            "--name",
            "py",
            "--roles",
            "service",
        ]);
        let field = |k: &str| {
            created
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .unwrap()
                .to_owned()
        };
        let token = client_token(
            &Client::new(),
            &auth.addr.to_string(),
            &field("client_id="),
            &field("client_secret="),
        )
        .await;
        let python = std::env::var("VIGIL_PYTHON").unwrap_or_else(|_| "python3".into());
        let script = repo_root().join("scripts/jwt_interop.py");
        let out = Command::new(&python)
            .arg(script)
            .args([
                "verify",
                &format!("http://{}/.well-known/jwks.json", auth.addr),
                &token,
                &format!("http://{}", auth.addr),
                "vigil",
            ])
            .output()
            .expect("running python (./scripts/test.sh provides one with PyJWT as VIGIL_PYTHON)");
        assert!(
            out.status.success(),
            "{alg}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let verified: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(verified["kid"], kid_of(&token));
        assert_eq!(verified["claims"]["tenant_id"], "acme");
        assert_eq!(verified["claims"]["roles"], json!(["service"]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vigil_dev_takes_its_own_tokens_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let (audit_port, auth_port, gateway_port) = (free_port(), free_port(), free_port());
    let mut child = Command::new(vigil_bin())
        .args(["dev", "--data-dir"])
        .arg(dir.path())
        .arg("--listen")
        .arg(format!("127.0.0.1:{audit_port}"))
        .arg("--auth-listen")
        .arg(format!("127.0.0.1:{auth_port}"))
        .arg("--gateway-listen")
        .arg(format!("127.0.0.1:{gateway_port}"))
        .env("VIGIL_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Not a terminal: the banner names the file that holds the first admin's password, and
    // never the password itself.
    // Read stderr to its end in the background (a reader that stops early would leave the
    // service writing into a closed pipe), handing over the banner once it is complete.
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        let mut seen = String::new();
        let mut tx = Some(tx);
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            seen.push_str(&line);
            seen.push('\n');
            if line.contains("first admin") {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(seen.clone());
                }
            }
        }
    });
    let banner = tokio::task::spawn_blocking(move || {
        rx.recv_timeout(Duration::from_secs(60))
            .expect("a first-admin line in the banner")
    })
    .await
    .unwrap();
    let file = dir.path().join("dev-admin-password");
    let password = std::fs::read_to_string(&file).unwrap();
    assert!(!banner.contains(&password), "{banner}");
    assert!(banner.contains("dev-admin-password"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let mut server = Server {
        child,
        addr: format!("127.0.0.1:{audit_port}").parse().unwrap(),
    };
    server.wait_ready().await;
    let http = Client::new();
    let r: Value = http
        .post(format!("http://127.0.0.1:{auth_port}/v1/login"))
        .json(&json!({"tenant_id": "acme", "username": "admin", "password": password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = r["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"))
        .to_owned();
    // Through the gateway, as the README's first curl goes.
    let (status, body) = post_event(&http, &format!("127.0.0.1:{gateway_port}"), &token, 1).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post_event(
        &http,
        &format!("127.0.0.1:{gateway_port}"),
        "not-a-token",
        2,
    )
    .await;
    assert_eq!(status, 401, "{body}");
    // The login itself is in acme's chain, delivered in-process.
    let mut n = 0;
    for _ in 0..100 {
        let page: Value = http
            .get(format!(
                "http://127.0.0.1:{audit_port}/v1/events?action=auth.login"
            ))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        n = page["events"].as_array().map_or(0, Vec::len);
        if n > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(n >= 1, "the login was not recorded");
    server.terminate();
}
