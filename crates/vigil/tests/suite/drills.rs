//! The drills and the coverage gate as a user runs them: `vigil drill restore` in its short
//! form on both stores, its report; `vigil coverage` on fixture crates and on Vigil itself.

use super::common::{vigil_cli as vigil, *};
use serde_json::Value;

async fn the_restore_drill_passes_and_reports_its_rto(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report");
    let work = dir.path().join("work");
    let mut args = vec![
        "drill".to_string(),
        "restore".into(),
        "--events".into(),
        "3000".into(),
        "--tenants".into(),
        "3".into(),
        "--work-dir".into(),
        work.display().to_string(),
        "--report".into(),
        report.display().to_string(),
    ];
    if let Engine::Postgres = engine {
        args.push("--database-url".into());
        args.push(fresh_db(engine, dir.path()).await);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out) = tokio::task::spawn_blocking({
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        move || vigil(&args.iter().map(String::as_str).collect::<Vec<_>>())
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{out}");
    let json: Value =
        serde_json::from_slice(&std::fs::read(report.join("drill-restore.json")).unwrap()).unwrap();
    assert_eq!(json["passed"], true, "{json:#}");
    let figures: std::collections::HashMap<String, f64> = json["figures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f[0].as_str().unwrap().to_string(), f[1].as_f64().unwrap()))
        .collect();
    assert!(figures["rto_seconds"] > 0.0);
    assert!(figures["records_restored"] >= 3000.0);
    let lost = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "acknowledged events lost")
        .unwrap();
    assert!(
        lost["value"].as_str().unwrap().starts_with("0 of "),
        "{lost}"
    );
    let md = std::fs::read_to_string(report.join("drill-restore.md")).unwrap();
    for part in [
        "## Timeline",
        "INJECT",
        "## Metrics",
        "audit_events_processed_total",
        "RTO",
    ] {
        assert!(md.contains(part), "{part} missing from\n{md}");
    }
}

on_both_engines!(the_restore_drill_passes_and_reports_its_rto);

#[test]
fn the_coverage_gate_passes_on_vigil_itself_and_writes_its_textfile() {
    let dir = tempfile::tempdir().unwrap();
    let prom = dir.path().join("coverage.prom");
    let json = dir.path().join("coverage.json");
    let root = repo_root();
    let (code, out) = vigil(&[
        "coverage",
        root.to_str().unwrap(),
        "--prom",
        prom.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}");
    let text = std::fs::read_to_string(&prom).unwrap();
    for service in ["vigil-audit", "vigil-authsvc"] {
        assert!(
            text.contains(&format!("audit_coverage_ratio{{service=\"{service}\"}}")),
            "{text}"
        );
    }
    let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["passed"], true);
}

#[test]
fn the_coverage_gate_fails_below_its_minimum_and_on_a_reasonless_ignore() {
    let fixtures = repo_root().join("crates/coverage/tests/fixtures");
    let (code, out) = vigil(&["coverage", fixtures.join("shop").to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("MISSING") && out.contains("/v1/carts"),
        "{out}"
    );
    let (code, out) = vigil(&[
        "coverage",
        fixtures.join("shop").to_str().unwrap(),
        "--min",
        "0.5",
    ]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = vigil(&[
        "coverage",
        fixtures.join("careless").to_str().unwrap(),
        "--min",
        "0",
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("needs a reason"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_outage_drill_loses_nothing_and_recovers_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report");
    let url = fresh_db(Engine::Postgres, dir.path()).await;
    let args: Vec<String> = [
        "drill",
        "store-outage",
        "--database-url",
        &url,
        "--outage",
        "3s",
        "--tenants",
        "3",
        "--report",
        report.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (code, out) = tokio::task::spawn_blocking(move || {
        vigil(&args.iter().map(String::as_str).collect::<Vec<_>>())
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{out}");
    let json: Value =
        serde_json::from_slice(&std::fs::read(report.join("drill-store-outage.json")).unwrap())
            .unwrap();
    assert_eq!(json["passed"], true, "{json:#}");
    // The outage was real: requests were refused with 503 while it lasted.
    let refused = json["figures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f[0] == "requests_refused_503")
        .unwrap()[1]
        .as_f64()
        .unwrap();
    assert!(refused > 0.0, "{json:#}");
}

/// Runs `vigil drill ARGS --report DIR` off the test's runtime; its JSON report after
/// asserting it exited 0 and passed.
async fn drill(args: &[&str], dir: &std::path::Path) -> Value {
    let report = dir.join("report");
    let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let scenario = args[1].clone();
    args.push("--report".into());
    args.push(report.display().to_string());
    let (code, out) = tokio::task::spawn_blocking(move || {
        vigil(&args.iter().map(String::as_str).collect::<Vec<_>>())
    })
    .await
    .unwrap();
    let json: Value = serde_json::from_slice(
        &std::fs::read(report.join(format!("drill-{scenario}.json")))
            .unwrap_or_else(|e| panic!("no report ({e}): {out}")),
    )
    .unwrap();
    assert_eq!(code, 0, "{out}");
    assert_eq!(json["passed"], true, "{json:#}");
    let md = std::fs::read_to_string(report.join(format!("drill-{scenario}.md"))).unwrap();
    assert!(md.contains("INJECT") && md.contains("## Metrics"), "{md}");
    json
}

fn figure(json: &Value, name: &str) -> f64 {
    json["figures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f[0] == name)
        .unwrap_or_else(|| panic!("no figure {name} in {json:#}"))[1]
        .as_f64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_rotation_drill_refuses_no_valid_token() {
    let dir = tempfile::tempdir().unwrap();
    let json = drill(
        &[
            "drill",
            "key-rotation",
            "--rotations",
            "2",
            "--interval",
            "2s",
        ],
        dir.path(),
    )
    .await;
    assert_eq!(figure(&json, "requests_refused"), 0.0);
    // Both verifiers saw tokens of both new keys, and old tokens were used after the last.
    for r in 1..=2 {
        for via in ["gateway", "audit"] {
            let d = figure(
                &json,
                &format!("rotation_{r}_{via}_new_key_accepted_after_seconds"),
            );
            assert!(d.is_finite(), "rotation {r} via {via}: {json:#}");
        }
    }
    assert!(figure(&json, "old_key_requests_after_last_rotation") > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_outage_drill_holds_limits_in_memory_without_5xx() {
    let dir = tempfile::tempdir().unwrap();
    let redis =
        std::env::var("VIGIL_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let json = drill(
        &[
            "drill",
            "redis-outage",
            "--redis-url",
            &redis,
            "--outage",
            "3s",
            "--steady",
            "2s",
        ],
        dir.path(),
    )
    .await;
    // The noisy tenant was refused before, during and after: the limit held throughout.
    for phase in ["before", "during", "after"] {
        assert!(
            figure(&json, &format!("noisy_refused_429_{phase}")) > 0.0,
            "{phase}: {json:#}"
        );
    }
    assert!(figure(&json, "detect_seconds") < 3.0, "{json:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kafka_backlog_drill_catches_up_without_loss_or_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let tansu = std::env::var("VIGIL_TEST_TANSU").unwrap_or_else(|_| {
        format!(
            "{}/.cache/vigil-tools/bin/tansu",
            std::env::var("HOME").unwrap()
        )
    });
    let json = drill(
        &[
            "drill",
            "kafka-backlog",
            "--tansu",
            &tansu,
            "--rate",
            "500",
            "--pause",
            "4s",
            "--steady",
            "1s",
        ],
        dir.path(),
    )
    .await;
    assert!(figure(&json, "backlog_events") >= 1000.0, "{json:#}");
    assert_eq!(
        figure(&json, "records_stored"),
        figure(&json, "events_emitted")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ha_drill_restarts_every_instance_without_a_failed_read_or_a_lost_event() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_db(Engine::Postgres, dir.path()).await;
    let json = drill(
        &[
            "drill",
            "ha",
            "--database-url",
            &url,
            "--steady",
            "1500ms",
            "--drain",
            "1s",
        ],
        dir.path(),
    )
    .await;
    for name in ["audit_1", "audit_2", "gateway_1", "gateway_2"] {
        assert!(figure(&json, &format!("restart_{name}_seconds")) > 0.0);
    }
    assert!(figure(&json, "events_emitted") > 0.0);
    assert_eq!(
        figure(&json, "records_stored"),
        figure(&json, "events_emitted")
    );
}
