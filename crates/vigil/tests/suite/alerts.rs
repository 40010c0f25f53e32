//! The alert rules in deploy/prometheus/ (issue 12): `promtool check rules` accepts them,
//! `promtool test rules` passes, every alert has unit tests (fires, stays quiet, resolves), a
//! summary and a runbook that exists, and every metric a rule reads is one the services expose
//! (docs/metrics.md, itself checked against /metrics).

use crate::common::*;
use std::process::Command;
use std::time::Duration;

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(repo_root())
        .output()
        .unwrap_or_else(|e| {
            panic!("running promtool ({e}): ./scripts/test.sh installs it (Debian's prometheus package)")
        });
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

fn files(dir: &str) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(repo_root().join(dir))
        .unwrap()
        .map(|e| format!("{dir}/{}", e.unwrap().file_name().to_string_lossy()))
        .filter(|f| f.ends_with(".yml"))
        .collect();
    out.sort();
    out
}

#[test]
fn every_alert_rule_is_valid_unit_tested_and_has_a_runbook() {
    let rules = files("deploy/prometheus/rules");
    let tests = files("deploy/prometheus/tests");
    assert!(!rules.is_empty() && !tests.is_empty());
    let mut check = vec!["check", "rules"];
    check.extend(rules.iter().map(String::as_str));
    promtool(&check);
    let mut test = vec!["test", "rules"];
    test.extend(tests.iter().map(String::as_str));
    promtool(&test);

    let read = |f: &String| std::fs::read_to_string(repo_root().join(f)).unwrap();
    let rule_text: String = rules.iter().map(read).collect();
    let test_text: String = tests.iter().map(read).collect();
    let metrics_doc = std::fs::read_to_string(repo_root().join("docs/metrics.md")).unwrap();
    let alerts: Vec<&str> = rule_text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert!(alerts.len() >= 8, "{alerts:?}");
    for a in &alerts {
        // Fires, stays quiet, resolves: at least three evaluations of it.
        let evals = test_text.matches(&format!("alertname: {a}\n")).count();
        assert!(
            evals >= 3,
            "{a}: {evals} evaluations in the unit tests (want fires, quiet, resolves)"
        );
        let runbook = format!("docs/runbooks/{a}.md");
        assert!(
            rule_text.contains(&format!("runbook_url: {runbook}")),
            "{a}: no runbook_url"
        );
        assert!(repo_root().join(&runbook).is_file(), "{runbook} is missing");
    }
    assert_eq!(
        rule_text.matches("summary: ").count(),
        alerts.len(),
        "every alert has a summary"
    );
    // Every metric a rule reads is documented (and so exposed: the doc is checked).
    let mut word = String::new();
    for c in rule_text.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
            continue;
        }
        let w = std::mem::take(&mut word);
        // Recording rules (`level:metric:operations`) are checked by promtool.
        let metric = !w.contains(':')
            && [
                "audit_", "http_", "jwks_", "jwt_", "gateway_", "vigil_", "process_", "auth_",
            ]
            .iter()
            .any(|p| w.starts_with(p));
        if metric {
            // A histogram's series are documented under its name.
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| w.strip_suffix(s))
                .unwrap_or(&w);
            assert!(
                metrics_doc.contains(&format!("`{w}`"))
                    || metrics_doc.contains(&format!("`{base}` | histogram")),
                "a rule reads {w}, which docs/metrics.md does not list"
            );
        }
    }
}

#[test]
fn the_example_prometheus_configuration_is_valid() {
    promtool(&["check", "config", "deploy/prometheus/prometheus.yml"]);
}

/// A child process killed when the test ends, however it ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(cmd: &str, args: &[String]) -> Child {
    Child(
        Command::new(cmd)
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(if std::env::var_os("TEST_LOG").is_some() {
                std::process::Stdio::inherit()
            } else {
                std::process::Stdio::null()
            })
            .spawn()
            .unwrap_or_else(|e| panic!("starting {cmd} ({e}): ./scripts/test.sh installs it")),
    )
}

/// What Alertmanager posted to the webhook receiver: (status, alertname) per alert.
type Notifications = std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>;

async fn webhook_receiver() -> (std::net::SocketAddr, Notifications) {
    use axum::routing::post;
    let seen: Notifications = Default::default();
    let s = seen.clone();
    let app = axum::Router::new().route(
        "/alerts",
        post(move |axum::Json(body): axum::Json<serde_json::Value>| {
            let s = s.clone();
            async move {
                for a in body["alerts"].as_array().into_iter().flatten() {
                    s.lock().unwrap().push((
                        a["status"].as_str().unwrap_or_default().to_owned(),
                        a["labels"]["alertname"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                    ));
                }
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, seen)
}

async fn notified(seen: &Notifications, status: &str, alert: &str, within: Duration) {
    let until = std::time::Instant::now() + within;
    while std::time::Instant::now() < until {
        if seen
            .lock()
            .unwrap()
            .iter()
            .any(|(s, a)| s == status && a == alert)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!(
        "Alertmanager never sent {alert} {status}; it sent {:?}",
        seen.lock().unwrap()
    );
}

/// The shipped rules on a real Prometheus scraping a running `vigil dev`, notifying a real
/// Alertmanager: a record altered in the store makes the background verification find damage,
/// VigilAuditChainDamaged fires and reaches the webhook receiver; the record put back, the next
/// verification is intact and the alert resolves by itself, reaching the receiver again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_chain_pages_through_prometheus_and_alertmanager_and_resolves() {
    let d = dev_with_env(&[("VIGIL_VERIFY_EVERY", "1s")]).await;
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/v1/events", d.audit))
        .header("X-Tenant-ID", "acme")
        .header("X-User-ID", "payments")
        .header("X-Roles", "service")
        .json(&events(0, 4))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());

    let (receiver, seen) = webhook_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let am_port = free_port();
    std::fs::write(
        dir.path().join("alertmanager.yml"),
        format!(
            r#"
route:
  receiver: test
  group_by: [alertname]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: test
    webhook_configs:
      - url: http://{receiver}/alerts
        send_resolved: true
"#
        ),
    )
    .unwrap();
    let _am = start(
        "prometheus-alertmanager",
        &[
            format!(
                "--config.file={}",
                dir.path().join("alertmanager.yml").display()
            ),
            format!("--storage.path={}", dir.path().join("am").display()),
            format!("--web.listen-address=127.0.0.1:{am_port}"),
            "--cluster.listen-address=".into(),
        ],
    );
    let host = |url: &str| url.trim_start_matches("http://").to_owned();
    let prom_port = free_port();
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            r#"
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - {rules}/*.yml
alerting:
  alertmanagers:
    - static_configs:
        - targets: ["127.0.0.1:{am_port}"]
scrape_configs:
  - job_name: vigil-audit
    static_configs:
      - targets: ["{audit}"]
  - job_name: vigil-auth
    static_configs:
      - targets: ["{auth}"]
  - job_name: vigil-gateway
    metrics_path: /gateway/metrics
    static_configs:
      - targets: ["{gateway}"]
"#,
            rules = repo_root().join("deploy/prometheus/rules").display(),
            audit = host(&d.audit),
            auth = host(&d.auth),
            gateway = host(&d.gateway),
        ),
    )
    .unwrap();
    let _prom = start(
        "prometheus",
        &[
            format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ),
            format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()),
            format!("--web.listen-address=127.0.0.1:{prom_port}"),
        ],
    );
    // Prometheus scrapes all three services before anything is broken.
    let until = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let up: serde_json::Value = match http
            .get(format!(
                "http://127.0.0.1:{prom_port}/api/v1/query?query=up"
            ))
            .send()
            .await
        {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(_) => Default::default(),
        };
        let ups = up["data"]["result"].as_array().cloned().unwrap_or_default();
        if ups.len() == 3 && ups.iter().all(|s| s["value"][1] == "1") {
            break;
        }
        assert!(
            std::time::Instant::now() < until,
            "Prometheus does not scrape vigil dev: {up}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(seen
        .lock()
        .unwrap()
        .iter()
        .all(|(_, a)| a != "VigilAuditChainDamaged"));

    // An attacker with database access rewrites a record.
    let db = format!("sqlite://{}", d.dir.path().join("audit.db").display());
    execute_sql(
        Engine::Sqlite,
        &db,
        "UPDATE events SET action = action || '.x' WHERE tenant_id = 'acme' AND seq = 2",
    )
    .await;
    notified(
        &seen,
        "firing",
        "VigilAuditChainDamaged",
        Duration::from_secs(90),
    )
    .await;

    // Put back as it was: the next verification is intact, and the alert resolves by itself.
    execute_sql(
        Engine::Sqlite,
        &db,
        "UPDATE events SET action = substr(action, 1, length(action) - 2) WHERE tenant_id = 'acme' AND seq = 2",
    )
    .await;
    notified(
        &seen,
        "resolved",
        "VigilAuditChainDamaged",
        Duration::from_secs(90),
    )
    .await;
}
