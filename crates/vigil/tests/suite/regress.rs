//! The performance regression check as CI runs it: `vigil bench regress` writes its figures;
//! `vigil bench compare` passes a run against itself and flags a figure made worse than the
//! threshold and the rounds' spread, naming it.

use super::common::vigil_cli as vigil;
use serde_json::Value;

#[test]
fn a_regression_beyond_threshold_and_spread_fails_the_check_and_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run.json");
    let (code, out) = vigil(&[
        "bench",
        "regress",
        "--rounds",
        "2",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}");
    let results: Value = serde_json::from_slice(&std::fs::read(&run).unwrap()).unwrap();
    let names: Vec<&str> = results["figures"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["tracked"] == true)
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    for want in [
        "ingest.ratio_to_raw",
        "ingest.batch_p50",
        "ingest.batch_p95",
        "ingest.batch_p99",
        "verify.core_ratio",
        "query.filtered_p99",
        "memory.service_peak_rss_mib",
    ] {
        assert!(names.contains(&want), "{want} not tracked: {names:?}");
    }
    assert!(results["machine"]["kind"]
        .as_str()
        .unwrap()
        .contains("cpu-"));
    // A run against itself: nothing regressed.
    let (code, out) = vigil(&[
        "bench",
        "compare",
        run.to_str().unwrap(),
        run.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("no regression"), "{out}");
    // Two rounds beside the rest of the suite can spread by more than half, so the verdicts
    // below are taken on steady rounds (every round its run's first): a spread of zero, and the
    // figures as measured. The spread rule itself is the unit tests' (bench_regress).
    let mut steady = results.clone();
    for f in steady["figures"].as_array_mut().unwrap() {
        let rounds = f["rounds"].as_array_mut().unwrap();
        let first = rounds[0].clone();
        rounds.iter_mut().for_each(|r| *r = first.clone());
    }
    let steady_file = dir.path().join("steady.json");
    std::fs::write(&steady_file, serde_json::to_vec(&steady).unwrap()).unwrap();
    // Ingest at half its ratio to raw insert, and the queries' p99 a hundred times slower:
    // both flagged, by name; the rest not.
    let mut worse = steady.clone();
    for f in worse["figures"].as_array_mut().unwrap() {
        let factor = match f["name"].as_str().unwrap() {
            "ingest.ratio_to_raw" => 0.5,
            "query.filtered_p99" => 100.0,
            _ => continue,
        };
        for r in f["rounds"].as_array_mut().unwrap() {
            *r = Value::from(r.as_f64().unwrap() * factor);
        }
    }
    let worse_file = dir.path().join("worse.json");
    std::fs::write(&worse_file, serde_json::to_vec(&worse).unwrap()).unwrap();
    let (code, out) = vigil(&[
        "bench",
        "compare",
        steady_file.to_str().unwrap(),
        worse_file.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("REGRESSION in ingest.ratio_to_raw, query.filtered_p99"),
        "{out}"
    );
    // A baseline directory without this machine's file: exit 3, saying how to record one.
    let empty = dir.path().join("baselines");
    std::fs::create_dir_all(&empty).unwrap();
    let (code, out) = vigil(&[
        "bench",
        "regress",
        "--rounds",
        "2",
        "--baseline",
        empty.to_str().unwrap(),
    ]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("no baseline for this machine kind"), "{out}");
}
