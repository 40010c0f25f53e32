//! The drills and the coverage gate as a user runs them: `vigil drill restore` in its short
//! form on both stores, its report; `vigil coverage` on fixture crates and on Vigil itself.

use super::common::*;
use serde_json::Value;
use std::process::Command;

fn vigil(args: &[&str]) -> (i32, String) {
    let out = Command::new(vigil_bin()).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

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
