//! Helpers: `spawn_app` (in-process, port 0), `spawn_binary` (the real `vigil` process),
//! fresh databases, events, and a TCP proxy that can cut a service off from its store.

#![allow(dead_code, unreachable_pub)]

use reqwest::{Client, Response};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use vigil_audit::{Application, AuditSettings};

/// Instantiates each `async fn name(engine: Engine)` of the calling module as a test on SQLite
/// (`sqlite::name`) and on Postgres (`postgres::name`).
macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {
        mod sqlite { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::Engine::Sqlite).await } )* }
        mod postgres { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::Engine::Postgres).await } )* }
    };
}

/// Which store engine a test runs on.
#[derive(Clone, Copy, Debug)]
pub enum Engine {
    Sqlite,
    Postgres,
}

pub fn init_logs() {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("info,sqlx=warn")
            .with_test_writer()
            .try_init();
    }
}

/// A fresh database for `engine` (a file inside `dir` for SQLite).
pub async fn fresh_db(engine: Engine, dir: &std::path::Path) -> String {
    match engine {
        Engine::Sqlite => vigil_store::testing::sqlite_url(dir),
        Engine::Postgres => vigil_store::testing::fresh_postgres_url().await,
    }
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub db_url: String,
    pub dir: TempDir,
    pub client: Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), vigil_audit::AuditError>>>,
}

pub async fn spawn_app(engine: Engine) -> TestApp {
    spawn_app_with(engine, |_| {}).await
}

pub async fn spawn_app_with(engine: Engine, tweak: impl FnOnce(&mut AuditSettings)) -> TestApp {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let db_url = fresh_db(engine, dir.path()).await;
    let mut s = AuditSettings::embedded(dir.path().join("data"));
    s.listen = "127.0.0.1:0".parse().unwrap();
    s.database_url = db_url.clone().into();
    tweak(&mut s);
    let db_url = s.database_url.expose().to_owned();
    let app = Application::build(s)
        .await
        .expect("the audit service builds");
    let addr = app.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    TestApp {
        addr,
        db_url,
        dir,
        client: Client::new(),
        stop: Some(stop),
        task: Some(task),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn post_events(&self, tenant: &str, body: &Value) -> Response {
        self.client
            .post(self.url("/v1/events"))
            .header("X-Tenant-ID", tenant)
            .header("X-Roles", "admin")
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn post_raw(
        &self,
        tenant: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> Response {
        self.client
            .post(self.url("/v1/events"))
            .header("X-Tenant-ID", tenant)
            .header("X-Roles", "admin")
            .header("Content-Type", content_type)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn get(&self, tenant: &str, path: &str) -> Response {
        self.client
            .get(self.url(path))
            .header("X-Tenant-ID", tenant)
            .header("X-Roles", "admin")
            .send()
            .await
            .unwrap()
    }

    pub async fn get_json(&self, tenant: &str, path: &str) -> Value {
        let r = self.get(tenant, path).await;
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().await.unwrap()
    }

    /// GET without a tenant (public and ops routes); (status, body text).
    pub async fn public(&self, path: &str) -> (u16, String) {
        let r = self.client.get(self.url(path)).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    pub async fn metric(&self, name: &str) -> f64 {
        let text = self
            .client
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        metric_value(&text, name)
    }

    /// Stops the service gracefully (queued writes commit, checkpoints are signed).
    pub async fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
    }
}

/// The sum of every sample of `name` (with any labels) in a Prometheus text exposition.
pub fn metric_value(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b' ' | b'{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A valid event; `i` varies the actor, resource, producer seq and payload.
pub fn event(i: u64) -> Value {
    json!({
        "event_id": uuid::Uuid::now_v7().to_string(),
        "occurred_at": "2026-11-22T10:00:00Z",
        "actor": {"type": "user", "id": format!("u-{}", i % 5)},
        "action": if i.is_multiple_of(2) { "payment.void" } else { "user.login" },
        "resource": {"type": "payment", "id": format!("p-{i}")},
        "outcome": "success",
        "severity": "info",
        "source": {"service": "payments"},
        "payload": {"amount": i, "card": "4111-xxxx", "nested": {"k": [1, 2, {"z": null}]}},
    })
}

pub fn events(from: u64, n: u64) -> Value {
    Value::Array((from..from + n).map(event).collect())
}

/// The repository's root, from the package directory cargo names when it runs the tests (not
/// the one baked in at compile time: a target directory shared by several checkouts may hold
/// binaries built in another).
pub fn repo_root() -> PathBuf {
    let dir =
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into());
    PathBuf::from(dir).join("../..")
}

/// The body of `GET url`, as text.
pub async fn get_text(http: &Client, url: String) -> String {
    http.get(url).send().await.unwrap().text().await.unwrap()
}

/// Runs the `vigil` binary with `args`: its exit code and its stdout and stderr together.
pub fn vigil_cli(args: &[&str]) -> (i32, String) {
    let out = Command::new(vigil_bin()).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

pub fn vigil_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_vigil"))
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The real `vigil audit serve`, as a child process.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
}

pub fn spawn_binary(db_url: &str, data_dir: &std::path::Path, port: u16) -> Server {
    spawn_binary_with(db_url, data_dir, port, &[])
}

/// `vigil audit serve` on `port` with `extra` arguments (e.g. `--kafka-bootstrap`).
pub fn spawn_binary_with(
    db_url: &str,
    data_dir: &std::path::Path,
    port: u16,
    extra: &[&str],
) -> Server {
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut args: Vec<String> = [
        "audit",
        "serve",
        "--trust-headers",
        "--checkpoint-every",
        "50",
        "--listen",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    args.push(addr.to_string());
    args.push("--database-url".into());
    args.push(db_url.into());
    args.push("--data-dir".into());
    args.push(data_dir.display().to_string());
    args.extend(extra.iter().map(|a| a.to_string()));
    spawn_vigil(&args, addr)
}

/// The real `vigil` with `args`, answering HTTP on `addr` (see [`Server::wait_ready`]).
pub fn spawn_vigil(args: &[String], addr: SocketAddr) -> Server {
    spawn_vigil_with_env(args, addr, Vec::new())
}

/// [`spawn_vigil`] with `env` set (e.g. `OTEL_*`).
pub fn spawn_vigil_with_env(
    args: &[String],
    addr: SocketAddr,
    env: Vec<(String, String)>,
) -> Server {
    let child = Command::new(vigil_bin())
        .args(args)
        .envs(env)
        .env(
            "VIGIL_LOG",
            if std::env::var_os("TEST_LOG").is_some() {
                "info"
            } else {
                "warn"
            },
        )
        .stdout(Stdio::null())
        .stderr(if std::env::var_os("TEST_LOG").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .spawn()
        .expect("spawning vigil");
    Server { child, addr }
}

impl Server {
    pub async fn wait_ready(&mut self) {
        self.wait_for("/readyz").await
    }

    /// Waits until `path` answers 200.
    pub async fn wait_for(&mut self, path: &str) {
        let client = Client::new();
        for _ in 0..300 {
            if let Ok(r) = client
                .get(format!("http://{}{path}", self.addr))
                .send()
                .await
            {
                if r.status() == 200 {
                    return;
                }
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("vigil exited early: {status}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("vigil did not become ready on {}", self.addr);
    }

    pub fn kill9(&mut self) {
        self.child.kill().unwrap(); // SIGKILL on Unix
        self.child.wait().unwrap();
    }

    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `vigil verify` and returns (exit code, stdout).
/// Runs plain SQL on a test database (to tamper with it as an attacker with database access
/// would).
pub async fn execute_sql(engine: Engine, db: &str, sql: &str) {
    match engine {
        Engine::Sqlite => {
            let pool = sqlx::SqlitePool::connect(db).await.unwrap();
            sqlx::query(sql).execute(&pool).await.unwrap();
            pool.close().await;
        }
        Engine::Postgres => {
            let pool = sqlx::PgPool::connect(db).await.unwrap();
            sqlx::query(sql).execute(&pool).await.unwrap();
            pool.close().await;
        }
    }
}

/// The one number `sql` selects from the test store.
pub async fn count_sql(engine: Engine, db: &str, sql: &str) -> i64 {
    match engine {
        Engine::Sqlite => {
            let pool = sqlx::SqlitePool::connect(db).await.unwrap();
            let n = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
            pool.close().await;
            n
        }
        Engine::Postgres => {
            let pool = sqlx::PgPool::connect(db).await.unwrap();
            let n = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
            pool.close().await;
            n
        }
    }
}

/// `scripts/independent_verify.py` (no Vigil code) against `tenant` of the service at `addr`,
/// with `extra` arguments; (exit code, stdout and stderr).
pub fn independent_verify(addr: SocketAddr, tenant: &str, extra: &[&str]) -> (Option<i32>, String) {
    let python = std::env::var("VIGIL_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(&python)
        .arg(repo_root().join("scripts/independent_verify.py"))
        .arg(format!("http://{addr}"))
        .arg(tenant)
        .args(extra)
        .output()
        .unwrap_or_else(|e| panic!("running {python}: {e}"));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// Everything the store holds, as text: every file of a SQLite database (WAL included), or
/// every row of every Vigil table on Postgres.
pub async fn raw_store(app: &TestApp) -> String {
    if app.db_url.starts_with("sqlite:") {
        let path = app.db_url.trim_start_matches("sqlite://");
        let dir = std::path::Path::new(path).parent().unwrap();
        let mut all = String::new();
        for f in std::fs::read_dir(dir).unwrap() {
            let f = f.unwrap().path();
            if f.is_file() {
                // Read by another process: closing a descriptor of the database file here
                // would drop every POSIX lock this process (the service's SQLite) holds on it.
                let out = std::process::Command::new("cat").arg(&f).output().unwrap();
                all.push_str(&String::from_utf8_lossy(&out.stdout));
            }
        }
        all
    } else {
        let pool = sqlx::PgPool::connect(&app.db_url).await.unwrap();
        let mut all = String::new();
        for table in [
            "events",
            "checkpoints",
            "producers",
            "tenants",
            "subject_keys",
            "redaction_policies",
        ] {
            let rows: Vec<String> = sqlx::query_scalar(&format!("SELECT t::text FROM {table} t"))
                .fetch_all(&pool)
                .await
                .unwrap();
            all.push_str(&rows.join("\n"));
        }
        all
    }
}

pub fn run_verify(db_url: &str, extra: &[&str]) -> (i32, String) {
    let out = Command::new(vigil_bin())
        .args(["verify", "--database-url", db_url])
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// A TCP forwarder between a service and its store that a test can cut and restore.
pub struct Proxy {
    pub port: u16,
    upstream: SocketAddr,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let p = Proxy {
            port: free_port(),
            upstream,
            tasks: Arc::default(),
        };
        p.resume().await;
        p
    }

    /// Accepts again on the same port.
    pub async fn resume(&self) {
        // The listener a cut aborted is closed when its task is next polled: retry briefly.
        let mut bound = tokio::net::TcpListener::bind(("127.0.0.1", self.port)).await;
        for _ in 0..100 {
            if bound.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            bound = tokio::net::TcpListener::bind(("127.0.0.1", self.port)).await;
        }
        let listener = bound.unwrap();
        let upstream = self.upstream;
        let tasks = Arc::clone(&self.tasks);
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let conn = tokio::spawn(async move {
                    if let Ok(mut out) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
                tasks.lock().await.push(conn);
            }
        });
        self.tasks.lock().await.push(accept);
    }

    /// Closes the listener and every open connection: the store is gone.
    pub async fn cut(&self) {
        for t in self.tasks.lock().await.drain(..) {
            t.abort();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `vigil dev` on free ports, ready; with the first admin's password.
pub struct Dev {
    pub server: Server,
    pub dir: tempfile::TempDir,
    pub audit: String,
    pub auth: String,
    pub gateway: String,
    pub password: String,
}

pub async fn dev() -> Dev {
    dev_with_env(&[]).await
}

/// `vigil dev` with `env` set (e.g. `OTEL_*`).
pub async fn dev_with_env(env: &[(&str, &str)]) -> Dev {
    let dir = tempfile::tempdir().unwrap();
    let (audit, auth, gateway) = (free_port(), free_port(), free_port());
    let child = Command::new(vigil_bin())
        .args(["dev", "--data-dir"])
        .arg(dir.path())
        .args(["--listen", &format!("127.0.0.1:{audit}")])
        .args(["--auth-listen", &format!("127.0.0.1:{auth}")])
        .args(["--gateway-listen", &format!("127.0.0.1:{gateway}")])
        .env("VIGIL_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut server = Server {
        child,
        addr: format!("127.0.0.1:{auth}").parse().unwrap(),
    };
    server.wait_ready().await;
    server.addr = format!("127.0.0.1:{audit}").parse().unwrap();
    server.wait_ready().await;
    server.addr = format!("127.0.0.1:{gateway}").parse().unwrap();
    server.wait_for("/gateway/readyz").await;
    let password = std::fs::read_to_string(dir.path().join("dev-admin-password")).unwrap();
    Dev {
        server,
        dir,
        audit: format!("http://127.0.0.1:{audit}"),
        auth: format!("http://127.0.0.1:{auth}"),
        gateway: format!("http://127.0.0.1:{gateway}"),
        password,
    }
}

pub async fn admin_token(http: &Client, d: &Dev) -> String {
    let r: Value = http
        .post(format!("{}/v1/login", d.auth))
        .json(&json!({"tenant_id": "acme", "username": "admin", "password": d.password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["access_token"].as_str().unwrap().to_owned()
}

/// The auth service in-process on a free port over a fresh SQLite store: (its base URL, its
/// issuer, its store, the directory holding the store).
pub async fn auth_in_process() -> (String, String, vigil_authsvc::store::AuthStore, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("auth.db").display());
    let mut s = vigil_authsvc::AuthSettings::new(db.clone());
    s.listen = "127.0.0.1:0".parse().unwrap();
    let auth = vigil_authsvc::Application::build(s, None).await.unwrap();
    let (base, issuer) = (
        format!("http://{}", auth.local_addr()),
        auth.issuer().to_owned(),
    );
    tokio::spawn(auth.run_until_stopped(std::future::pending()));
    let store = vigil_authsvc::app::open_store(&db.as_str().into())
        .await
        .unwrap();
    (base, issuer, store, dir)
}
