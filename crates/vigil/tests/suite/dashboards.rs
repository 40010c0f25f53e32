//! The Grafana dashboards in deploy/grafana/ (issue 12): what `generate.py` writes is what is
//! committed, each file is a dashboard Grafana's file provisioning loads, every panel
//! expression parses (promtool) and names only metrics the services expose (docs/metrics.md,
//! itself checked against /metrics), recording rules of deploy/prometheus/rules/ or `up`; and
//! every runbook names a dashboard panel that exists.

use crate::common::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

fn dashboards(dir: &std::path::Path) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "json") {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            out.insert(name, v);
        }
    }
    out
}

/// The metric names an expression reads: identifiers not called as functions, outside label
/// matchers, grouping clauses, strings and ranges.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut clean = String::new();
    let (mut depth_brace, mut in_str, mut in_range) = (0, false, false);
    for c in expr.chars() {
        match c {
            '"' => in_str = !in_str,
            '{' if !in_str => depth_brace += 1,
            '}' if !in_str => depth_brace -= 1,
            '[' if !in_str => in_range = true,
            ']' if !in_str => in_range = false,
            _ if in_str || depth_brace > 0 || in_range => {}
            _ => clean.push(c),
        }
        if matches!(c, '{' | '[') {
            clean.push(' ');
        }
    }
    // Grouping clauses name labels, not metrics.
    let mut words: Vec<(String, char)> = Vec::new();
    let mut w = String::new();
    let chars: Vec<char> = clean.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        if c.is_ascii_alphanumeric() || *c == '_' || *c == ':' {
            w.push(*c);
        } else if !w.is_empty() {
            let next = chars[i..].iter().find(|c| !c.is_whitespace()).copied();
            words.push((std::mem::take(&mut w), next.unwrap_or(' ')));
        }
    }
    if !w.is_empty() {
        words.push((w, ' '));
    }
    let mut out = BTreeSet::new();
    let mut skip_group = false;
    for (w, next) in words {
        if skip_group {
            if next == ')' {
                skip_group = false;
            }
            continue;
        }
        if matches!(
            w.as_str(),
            "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
        ) {
            skip_group = next == '(';
            continue;
        }
        if next == '(' || w.chars().next().unwrap().is_ascii_digit() {
            continue; // a function, or a number
        }
        // Keywords, and aggregations (`sum by (x) (…)` puts its clause before the bracket).
        if matches!(
            w.as_str(),
            "and"
                | "or"
                | "unless"
                | "offset"
                | "bool"
                | "sum"
                | "avg"
                | "min"
                | "max"
                | "count"
                | "topk"
                | "bottomk"
                | "quantile"
                | "stddev"
                | "stdvar"
                | "group"
                | "count_values"
        ) {
            continue;
        }
        out.insert(w);
    }
    out
}

#[test]
fn metric_names_are_told_from_functions_labels_and_numbers() {
    let got = metric_names(
        r#"1 - sum by (service, le) (rate(http_requests_total{status=~"5..",a="b{c}"}[5m])) / on (x) vigil:http_error_ratio:rate1h > 0.5 and up"#,
    );
    let want: BTreeSet<String> = ["http_requests_total", "vigil:http_error_ratio:rate1h", "up"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(got, want);
}

#[test]
fn every_panel_expression_parses_and_names_exposed_metrics() {
    let root = repo_root().join("deploy/grafana");
    // What the generator writes is what is committed.
    let fresh = tempfile::tempdir().unwrap();
    let out = Command::new("python3")
        .arg(root.join("generate.py"))
        .env("VIGIL_GRAFANA_OUT", fresh.path())
        .output()
        .expect("python3 runs the dashboard generator");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let committed = dashboards(&root.join("dashboards"));
    assert_eq!(
        dashboards(fresh.path()),
        committed,
        "deploy/grafana/dashboards/ is not what generate.py writes: run python3 deploy/grafana/generate.py"
    );
    assert!(committed.len() >= 5, "{:?}", committed.keys());

    // The provisioning files point Grafana at them.
    let prov = std::fs::read_to_string(root.join("provisioning/dashboards/vigil.yml")).unwrap();
    assert!(
        prov.contains("apiVersion: 1") && prov.contains("type: file") && prov.contains("path: ")
    );
    let ds = std::fs::read_to_string(root.join("provisioning/datasources/prometheus.yml")).unwrap();
    assert!(ds.contains("type: prometheus"));

    let doc = std::fs::read_to_string(repo_root().join("docs/metrics.md")).unwrap();
    let documented: BTreeSet<String> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `")?.split('`').next().map(str::to_owned))
        .collect();
    let mut recorded = BTreeSet::new();
    for e in std::fs::read_dir(repo_root().join("deploy/prometheus/rules")).unwrap() {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
        recorded.extend(
            text.lines()
                .filter_map(|l| l.trim().strip_prefix("- record: "))
                .map(str::to_owned),
        );
    }
    let known = |m: &str| {
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| m.strip_suffix(s))
            .unwrap_or(m);
        m == "up" || documented.contains(m) || documented.contains(base) || recorded.contains(m)
    };

    let mut uids = BTreeSet::new();
    let mut rules = String::from("groups:\n  - name: dashboards\n    rules:\n");
    let mut n = 0;
    for (file, d) in &committed {
        let uid = d["uid"]
            .as_str()
            .unwrap_or_else(|| panic!("{file}: no uid"));
        assert!(uids.insert(uid.to_owned()), "{file}: uid {uid} used twice");
        assert!(
            d["title"]
                .as_str()
                .is_some_and(|t| t.starts_with("Vigil / ")),
            "{file}"
        );
        assert!(d["schemaVersion"].as_i64().is_some(), "{file}");
        let vars: Vec<&str> = d["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap())
            .collect();
        assert!(
            vars.contains(&"datasource"),
            "{file}: no datasource variable"
        );
        let panels = d["panels"].as_array().unwrap();
        assert!(!panels.is_empty(), "{file}");
        for p in panels {
            let title = p["title"].as_str().unwrap();
            for k in ["x", "y", "w", "h"] {
                assert!(p["gridPos"][k].is_u64(), "{file} {title}: gridPos.{k}");
            }
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{file} {title}");
            let targets = p["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{file} {title}: no query");
            for t in targets {
                let expr = t["expr"].as_str().unwrap();
                for m in metric_names(expr) {
                    assert!(
                        known(&m),
                        "{file} \"{title}\" reads {m}, which no service exposes (docs/metrics.md) and no rule records"
                    );
                }
                for v in expr.match_indices('$').map(|(i, _)| &expr[i..]) {
                    let name: String = v[1..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    assert!(
                        name.starts_with("__") || vars.contains(&name.as_str()),
                        "{file} \"{title}\": ${name} is not a variable of the dashboard"
                    );
                }
                // Grafana's variables as Prometheus would see them once substituted.
                let concrete = expr
                    .replace("$__rate_interval", "5m")
                    .replace("$service", ".*");
                n += 1;
                rules.push_str(&format!(
                    "      - record: dashboard_check_{n}\n        expr: {}\n",
                    serde_json::to_string(&concrete).unwrap()
                ));
            }
        }
    }
    let file = fresh.path().join("panel-expressions.yml");
    std::fs::write(&file, rules).unwrap();
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .expect("promtool: ./scripts/test.sh installs it");
    assert!(
        out.status.success(),
        "a panel expression does not parse:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_runbook_has_its_sections_and_names_a_panel_that_exists() {
    let committed = dashboards(&repo_root().join("deploy/grafana/dashboards"));
    let panels: BTreeSet<(String, String)> = committed
        .values()
        .flat_map(|d| {
            let title = d["title"].as_str().unwrap().to_owned();
            d["panels"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |p| (title.clone(), p["title"].as_str().unwrap().to_owned()))
        })
        .collect();
    let dir = repo_root().join("docs/runbooks");
    let mut seen = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name == "README.md" || !name.ends_with(".md") {
            continue;
        }
        seen += 1;
        let text = std::fs::read_to_string(&p).unwrap();
        for section in [
            "**Symptoms.**",
            "**Dashboard.**",
            "**Diagnose.**",
            "**Fix.**",
            "**Confirm recovery.**",
        ] {
            assert!(text.contains(section), "{name}: no {section}");
        }
        // "**Dashboard.** Vigil / Audit pipeline → Store errors; Vigil / Fleet overview → …"
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix("**Dashboard.** "))
            .unwrap();
        let mut named = 0;
        for part in line.trim_end_matches('.').split("; ") {
            let Some((dash, panel)) = part.split_once(" → ") else {
                continue;
            };
            let key = (dash.trim().to_owned(), panel.trim().to_owned());
            assert!(
                panels.contains(&key),
                "{name}: no panel {key:?} in deploy/grafana"
            );
            named += 1;
        }
        assert!(
            named > 0,
            "{name}: the Dashboard line names no \"Dashboard → Panel\""
        );
    }
    assert!(seen >= 20, "{seen} runbooks");
}
