//! The Kubernetes manifests (deploy/kubernetes/vigil.yaml) kept honest: every flag and
//! environment variable a container is given is one its command accepts, every probe and
//! Service port names a declared container port, and each service started with the
//! manifest's own arguments answers every probe path on the port it declares.

use super::common::*;
use serde_json::Value;
use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

/// Variables read outside clap (the log filter) that --help does not list.
const PROCESS_WIDE: [&str; 1] = ["VIGIL_LOG"];

fn documents() -> Vec<Value> {
    let python = std::env::var("VIGIL_PYTHON").unwrap_or_else(|_| "python3".into());
    let path = repo_root().join("deploy/kubernetes/vigil.yaml");
    let out = Command::new(&python)
        .args([
            "-c",
            "import sys, json, yaml; print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d]))",
        ])
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("running {python}: {e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

fn help(words: &[String]) -> String {
    let out = Command::new(vigil_bin())
        .args(words)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success(), "vigil {words:?} --help failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn container(d: &Value) -> &Value {
    &d["spec"]["template"]["spec"]["containers"][0]
}

/// The container's named ports: name → port.
fn ports(c: &Value) -> HashMap<String, u64> {
    c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["containerPort"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn every_flag_variable_and_port_in_the_manifests_is_one_the_binary_accepts() {
    let docs = documents();
    let deployments = of_kind(&docs, "Deployment");
    assert_eq!(deployments.len(), 3);
    for d in &deployments {
        let name = d["metadata"]["name"].as_str().unwrap();
        let c = container(d);
        let args = strings(&c["args"]);
        let words: Vec<String> = args
            .iter()
            .take_while(|a| !a.starts_with('-'))
            .cloned()
            .collect();
        let text = help(&words);
        for flag in args.iter().filter(|a| a.starts_with("--")) {
            assert!(
                text.contains(&format!("{flag} ")) || text.contains(&format!("{flag}\n")),
                "{name}: vigil {} has no {flag}",
                words.join(" ")
            );
        }
        for env in c["env"].as_array().unwrap() {
            let var = env["name"].as_str().unwrap();
            assert!(
                text.contains(&format!("[env: {var}=")) || PROCESS_WIDE.contains(&var),
                "{name}: vigil {} reads no {var}",
                words.join(" ")
            );
        }
        let named = ports(c);
        for probe in ["readinessProbe", "livenessProbe"] {
            let port = c[probe]["httpGet"]["port"].as_str().unwrap();
            assert!(
                named.contains_key(port),
                "{name}: {probe} port {port} is not declared"
            );
        }
        assert!(
            c["resources"]["requests"]["cpu"].is_string(),
            "{name}: no CPU request"
        );
        // The port the process listens on is the one declared.
        let listen = args
            .windows(2)
            .find(|w| w[0] == "--listen")
            .map(|w| w[1].clone())
            .or_else(|| {
                let cm = of_kind(&docs, "ConfigMap")[0];
                let toml = cm["data"]["gateway.toml"].as_str().unwrap();
                let line = toml.lines().find(|l| l.starts_with("listen"))?;
                Some(line.split('"').nth(1)?.to_string())
            })
            .unwrap();
        let port: u64 = listen.rsplit(':').next().unwrap().parse().unwrap();
        assert_eq!(named["http"], port, "{name}: listens on {listen}");
        // Its Service and PodDisruptionBudget select it.
        let selector = &d["spec"]["selector"]["matchLabels"];
        for kind in ["Service", "PodDisruptionBudget"] {
            let found = of_kind(&docs, kind).into_iter().find(|s| {
                s["metadata"]["name"] == name
                    && (s["spec"]["selector"] == *selector
                        || s["spec"]["selector"]["matchLabels"] == *selector)
            });
            let found = found.unwrap_or_else(|| panic!("{name}: no {kind} selects it"));
            if kind == "Service" {
                for p in found["spec"]["ports"].as_array().unwrap() {
                    let target = p["targetPort"].as_str().unwrap();
                    assert!(
                        named.contains_key(target),
                        "{name}: Service targets {target}"
                    );
                }
            }
        }
    }
}

/// Replaces `--flag VALUE` in `args`.
fn set(args: &mut [String], flag: &str, value: &str) {
    if let Some(i) = args.iter().position(|a| a == flag) {
        args[i + 1] = value.to_string();
    }
}

async fn answers(addr: std::net::SocketAddr, path: &str, server: &mut Server) -> u16 {
    let http = reqwest::Client::new();
    for _ in 0..300 {
        if let Ok(r) = http
            .get(format!("http://{addr}{path}"))
            .timeout(Duration::from_secs(5))
            .send()
            .await
        {
            return r.status().as_u16();
        }
        if let Some(status) = server.child.try_wait().unwrap() {
            panic!("vigil exited early: {status}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing answered on {addr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_service_started_with_its_manifest_answers_its_probe_paths() {
    let docs = documents();
    let dir = tempfile::tempdir().unwrap();
    for d in of_kind(&docs, "Deployment") {
        let name = d["metadata"]["name"].as_str().unwrap().to_string();
        let c = container(d);
        let mut args = strings(&c["args"]);
        let port = free_port();
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let data = dir.path().join(&name);
        std::fs::create_dir_all(&data).unwrap();
        set(&mut args, "--listen", &addr.to_string());
        set(&mut args, "--data-dir", data.to_str().unwrap());
        // Whether the manifest has the service drain on SIGTERM (not ready, still serving).
        let mut drains = false;
        if name == "vigil-gateway" {
            let cm = of_kind(&docs, "ConfigMap")[0];
            let toml = cm["data"]["gateway.toml"]
                .as_str()
                .unwrap()
                .replace("0.0.0.0:8000", &addr.to_string());
            drains = toml.contains("shutdown_drain_ms");
            let file = data.join("gateway.toml");
            std::fs::write(&file, toml).unwrap();
            set(&mut args, "--config", file.to_str().unwrap());
        }
        // The secrets' values, made local.
        let mut env = Vec::new();
        for e in c["env"].as_array().unwrap() {
            let var = e["name"].as_str().unwrap().to_string();
            let value = match (var.as_str(), e["value"].as_str()) {
                (_, Some(v)) if var != "VIGIL_DATA_DIR" => v.to_string(),
                ("VIGIL_DATA_DIR", _) => data.display().to_string(),
                ("VIGIL_REDIS_URL", _) => std::env::var("VIGIL_TEST_REDIS_URL")
                    .unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
                _ => format!("sqlite://{}/store.db", data.display()),
            };
            drains |= var == "VIGIL_SHUTDOWN_DRAIN";
            env.push((var, value));
        }
        let mut server = spawn_vigil_with_env(&args, addr, env);
        for probe in ["readinessProbe", "livenessProbe"] {
            let path = c[probe]["httpGet"]["path"].as_str().unwrap();
            let status = answers(addr, path, &mut server).await;
            // Ready or not (its dependencies are not all here), but the endpoint exists.
            assert!(
                status == 200 || status == 503,
                "{name}: {probe} {path} answered {status}"
            );
            if probe == "livenessProbe" {
                assert_eq!(status, 200, "{name}: alive means 200");
            }
        }
        if drains {
            // SIGTERM: the readiness probe fails at once, liveness holds, requests are still
            // served; then the process exits by itself.
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(server.child.id().to_string())
                .status();
            let ready = c["readinessProbe"]["httpGet"]["path"].as_str().unwrap();
            let live = c["livenessProbe"]["httpGet"]["path"].as_str().unwrap();
            let mut refused = false;
            for _ in 0..40 {
                if answers(addr, ready, &mut server).await == 503 {
                    refused = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert!(refused, "{name}: still ready after SIGTERM");
            assert_eq!(answers(addr, live, &mut server).await, 200, "{name}");
            server.child.wait().unwrap();
        } else {
            server.terminate();
        }
    }
}
