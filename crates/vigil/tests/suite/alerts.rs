//! The alert rules in deploy/prometheus/ (issue 12): `promtool check rules` accepts them,
//! `promtool test rules` passes, every alert has unit tests (fires, stays quiet, resolves), a
//! summary and a runbook that exists, and every metric a rule reads is one the services expose
//! (docs/metrics.md, itself checked against /metrics).

use crate::common::*;
use std::process::Command;

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
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
            continue;
        }
        let w = std::mem::take(&mut word);
        let metric = [
            "audit_", "http_", "jwks_", "jwt_", "gateway_", "vigil_", "process_", "auth_",
        ]
        .iter()
        .any(|p| w.starts_with(p));
        if metric {
            assert!(
                metrics_doc.contains(&format!("`{w}`")),
                "a rule reads {w}, which docs/metrics.md does not list"
            );
        }
    }
}
