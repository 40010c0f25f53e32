//! The web console end to end in a real browser (Debian's Chromium driven by playwright-core,
//! both installed by the test command; never skipped): sign in through the auth service,
//! filter, page, open an event and see it verified in the browser against a pinned key;
//! tamper with a row by plain SQL and see exactly that record marked and the chain break
//! after it; a support user sees withheld members as withheld, still verified; the live tail
//! shows an event posted while it runs. Screenshots of a failed scenario land in the test's
//! directory and are named in the failure.

use super::common::*;
use serde_json::{json, Value};
use vigil_authsvc::events::Actor;
use vigil_security::capability::{Role, RoleSet};

/// Runs one scenario of `tests/console/console.mjs`; its JSON line.
async fn scenario(name: &str, app: &TestApp, vkey: &str, env: &[(&str, String)]) -> Value {
    let playwright = std::env::var("VIGIL_PLAYWRIGHT").expect(
        "VIGIL_PLAYWRIGHT is not set: run scripts/test.sh, which installs playwright-core and Chromium",
    );
    let chromium = std::env::var("VIGIL_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let shots = app.dir.path().to_path_buf();
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(repo_root().join("crates/vigil/tests/console/console.mjs"))
        .arg(name)
        .env("VIGIL_URL", format!("http://{}", app.addr))
        .env("VIGIL_KEY", vkey)
        .env("VIGIL_PLAYWRIGHT", playwright)
        .env("VIGIL_CHROMIUM", chromium)
        .env("VIGIL_SHOTS", &shots);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().await.expect("running node");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = stdout.lines().last().unwrap_or("");
    let v: Value = serde_json::from_str(line).unwrap_or(json!({"ok": false, "error": stdout}));
    if v["ok"] != true {
        // Keep the screenshot where a person can find it after the temporary directory goes.
        let kept = std::env::temp_dir().join(format!("vigil-console-{name}.png"));
        let _ = std::fs::copy(shots.join(format!("console-{name}.png")), &kept);
        panic!(
            "console scenario {name} failed (screenshot: {}):\n{}\n{}",
            kept.display(),
            serde_json::to_string_pretty(&v).unwrap(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    v
}

/// An auth service with an admin and a support user in `acme`, and an audit service that
/// takes its tokens, signs a checkpoint after every commit and signs users in through it.
async fn console_stack(engine: Engine) -> (TestApp, String) {
    let (auth_base, issuer, store, dir) = auth_in_process().await;
    std::mem::forget(dir); // the auth service runs until the test ends
    let acme = vigil_core::ids::TenantId::parse("acme").unwrap();
    for (user, role) in [("ada", Role::Admin), ("sam", Role::Support)] {
        vigil_authsvc::service::add_user(
            &store,
            &Default::default(),
            &acme,
            user,
            "quiet harbour lights",
            RoleSet::of(&[role]),
            Actor::System,
        )
        .await
        .unwrap();
    }
    let jwks = vigil_auth::JwksConfig::new(
        format!("{auth_base}/.well-known/jwks.json"),
        issuer,
        "vigil",
    );
    let app = spawn_app_with(engine, |s| {
        s.checkpoint_every = 1;
        s.jwks = Some(jwks);
        s.console.auth_url = Some(auth_base.clone());
        s.console.trace_url = Some("http://traces.example/trace/{trace_id}".into());
        s.console.tail_heartbeat = std::time::Duration::from_millis(500);
    })
    .await;
    let keys = app.get_json("acme", "/v1/keys").await;
    let vkey = keys["keys"][0]["verifier_key"].as_str().unwrap().to_owned();
    (app, vkey)
}

fn signed_in(user: &str) -> Vec<(&'static str, String)> {
    vec![
        ("VIGIL_TENANT", "acme".into()),
        ("VIGIL_USER", user.into()),
        ("VIGIL_PASSWORD", "quiet harbour lights".into()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_works_end_to_end_in_chromium() {
    let (app, vkey) = console_stack(Engine::Sqlite).await;
    let mut body = events(0, 250);
    for (i, e) in body.as_array_mut().unwrap().iter_mut().enumerate() {
        e["trace_id"] = json!(format!("{:032x}", i + 1));
    }
    assert_eq!(app.post_events("acme", &body).await.status(), 200);
    // Static assets: embedded, with a policy that forbids inline script.
    let r = app.client.get(app.url("/console")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(
        !r.text().await.unwrap().contains("<script>"),
        "no inline script"
    );
    assert_eq!(app.public("/console/nope.js").await.0, 404);

    scenario("trail", &app, &vkey, &signed_in("ada")).await;
    scenario("tail", &app, &vkey, &[("VIGIL_TENANT", "acme".into())]).await;

    // A support user: the tenant's sensitive member is withheld from the view, verified still.
    let r = app
        .client
        .put(app.url("/v1/redaction-policy"))
        .header("X-Tenant-ID", "acme")
        .header("X-Roles", "admin")
        .json(&json!({"mode": "off", "sensitive": ["payload.card"]}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let mut env = signed_in("sam");
    env.push(("VIGIL_WITHHELD", "card".into()));
    env.push(("VIGIL_ROWS", "100".into()));
    scenario("support", &app, &vkey, &env).await;

    // A row changed by plain SQL: exactly it is marked, and the chain breaks after it.
    let head = app.get_json("acme", "/v1/chain/head").await["seq"]
        .as_i64()
        .unwrap();
    let seq = head - 20;
    execute_sql(
        Engine::Sqlite,
        &app.db_url,
        &format!(
            "UPDATE events SET action = 'payment.refund' WHERE tenant_id = 'acme' AND seq = {seq}"
        ),
    )
    .await;
    scenario(
        "tampered",
        &app,
        &vkey,
        &[
            ("VIGIL_TENANT", "acme".into()),
            ("VIGIL_TAMPERED_SEQ", seq.to_string()),
        ],
    )
    .await;
}

/// The live tail over HTTP: records as they are stored, resumable with `Last-Event-ID`, a
/// heartbeat while quiet, closed after the idle timeout; refused without audit_read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_tail_streams_new_records_with_heartbeats_and_an_idle_timeout() {
    let app = spawn_app_with(Engine::Sqlite, |s| {
        s.console.tail_heartbeat = std::time::Duration::from_millis(200);
        s.console.tail_idle = std::time::Duration::from_secs(2);
    })
    .await;
    assert_eq!(app.post_events("acme", &events(0, 3)).await.status(), 200);
    let get = |after: Option<&str>, last: Option<&str>, roles: &str| {
        let mut r = app
            .client
            .get(app.url(&format!(
                "/v1/events/tail{}",
                after.map(|a| format!("?after={a}")).unwrap_or_default()
            )))
            .header("X-Tenant-ID", "acme")
            .header("X-Roles", roles.to_owned());
        if let Some(l) = last {
            r = r.header("Last-Event-ID", l);
        }
        r.send()
    };
    // From the head: only what arrives after.
    let mut r = get(None, None, "support").await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    assert_eq!(app.post_events("acme", &events(3, 2)).await.status(), 200);
    let mut text = String::new();
    let started = std::time::Instant::now();
    while let Some(chunk) = r.chunk().await.unwrap() {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    // It closed by itself after the idle timeout, with a heartbeat on the way.
    assert!(started.elapsed() >= std::time::Duration::from_secs(2));
    let ids: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .collect();
    assert_eq!(ids, ["4", "5"], "{text}");
    assert!(text.contains(": heartbeat"), "{text}");
    assert!(text.contains("event: idle"), "{text}");
    // Reconnecting with Last-Event-ID resumes after it (the record it missed, nothing twice).
    let mut r = get(None, Some("3"), "support").await.unwrap();
    let mut text = String::new();
    while let Some(chunk) = r.chunk().await.unwrap() {
        text.push_str(&String::from_utf8_lossy(&chunk));
        if text.contains("id: 5") {
            break;
        }
    }
    let ids: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .collect();
    assert_eq!(ids, ["4", "5"], "{text}");
    let record: Value =
        serde_json::from_str(text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap()).unwrap();
    assert_eq!(record["seq"], 4);
    assert!(record["leaf_hash"].is_string());
    // Refused: a role without audit_read (its denial is recorded in the chain), a bad seq.
    let r = get(None, None, "cashier").await.unwrap();
    assert_eq!(r.status(), 403);
    let r = get(Some("-1"), None, "support").await.unwrap();
    assert_eq!(r.status(), 400);
    let r = get(None, Some("x"), "support").await.unwrap();
    assert_eq!(r.status(), 400);
}

/// The console's RFC 8785 (crates/audit/console/verify.js, run by node) gives the same bytes
/// as PyPI's `rfc8785` for values that trip canonicalizers: key order by UTF-16 code units
/// (astral and BMP characters), escapes, negative zero, exponents, large integers.
#[tokio::test]
async fn the_consoles_canonical_json_is_rfc_8785() {
    let values = r#"[{"b":1,"a":[1,2.5,-0.0,1e21,1e-7,0.1,-1.5e-300],"é":"x","😀":1,"｡":2,"z":"\u000f\u007f\u2028\"\\/\u0000"}, 123456789012345, "café", null, true, {"":{}, "x": [[]]}]"#;
    let script = format!(
        "import('{}').then(m => console.log(JSON.stringify(JSON.parse(process.argv[1]).map(m.jcs))))",
        repo_root().join("crates/audit/console/verify.js").display()
    );
    let js = std::process::Command::new("node")
        .args(["-e", &script, values])
        .output()
        .expect("running node");
    assert!(
        js.status.success(),
        "{}",
        String::from_utf8_lossy(&js.stderr)
    );
    let python = std::env::var("VIGIL_PYTHON").unwrap_or_else(|_| "python3".into());
    let py = std::process::Command::new(python)
        .args([
            "-c",
            "import json, sys, rfc8785\nprint(json.dumps([rfc8785.dumps(v).decode() for v in json.loads(sys.argv[1])]))",
            values,
        ])
        .output()
        .expect("running python");
    assert!(
        py.status.success(),
        "{}",
        String::from_utf8_lossy(&py.stderr)
    );
    let js: Vec<String> = serde_json::from_slice(&js.stdout).unwrap();
    let py: Vec<String> = serde_json::from_slice(&py.stdout).unwrap();
    assert_eq!(js, py);
}

/// The console's proofs from tiles (verify.js's `tileProofs`, run by node) equal vigil-core's
/// RFC 9162 inclusion proofs: every index of trees around tile edges, and random indices of a
/// tree three tile levels high; each tile fetched once however many proofs need it.
#[tokio::test]
async fn the_consoles_proofs_from_tiles_equal_the_servers() {
    use rand::{Rng, SeedableRng};
    use vigil_core::merkle::{inclusion_proof, tiles_of, MemoryTree, Nodes};
    let mut rng = rand::rngs::StdRng::seed_from_u64(14);
    let mut tree = MemoryTree::new();
    let mut cases = Vec::new();
    for size in [1u64, 2, 3, 7, 255, 256, 257, 600, 65_536, 65_536 + 300] {
        while tree.size() < size {
            tree.push(vigil_core::hash::Hash32::digest(&[&tree
                .size()
                .to_be_bytes()]));
        }
        let tiles: serde_json::Map<String, Value> = tiles_of(size)
            .into_iter()
            .map(|t| {
                let bytes: String = (t.index * 256..t.index * 256 + t.width)
                    .map(|i| tree.node(t.level * 8, i).unwrap().to_hex())
                    .collect();
                (t.path(), Value::String(bytes))
            })
            .collect();
        let indices: Vec<u64> = if size <= 600 {
            (0..size).collect()
        } else {
            (0..40).map(|_| rng.gen_range(0..size)).collect()
        };
        let want: Vec<Vec<String>> = indices
            .iter()
            .map(|&i| {
                inclusion_proof(&tree, i, size)
                    .unwrap()
                    .iter()
                    .map(|h| h.to_hex())
                    .collect()
            })
            .collect();
        cases.push(json!({ "size": size, "tiles": tiles, "indices": indices, "want": want }));
    }
    let input = std::env::temp_dir().join(format!("vigil-tile-proofs-{}.json", std::process::id()));
    std::fs::write(&input, serde_json::to_vec(&cases).unwrap()).unwrap();
    let script = format!(
        r#"const m = await import('{}');
const cases = JSON.parse(require('fs').readFileSync(process.argv[1], 'utf8'));
const out = [];
for (const c of cases) {{
  const fetched = [];
  const proofFor = m.tileProofs(c.size, async (p) => {{
    fetched.push(p);
    if (!(p in c.tiles)) throw new Error('no tile ' + p);
    return m.unhex(c.tiles[p]);
  }});
  const got = await Promise.all(c.indices.map((i) => proofFor({{ seq: i + 1 }}).then((r) => r.proof)));
  out.push({{ size: c.size, same: JSON.stringify(got) === JSON.stringify(c.want), fetched: fetched.length, unique: new Set(fetched).size }});
}}
console.log(JSON.stringify(out));"#,
        repo_root().join("crates/audit/console/verify.js").display()
    );
    let js = std::process::Command::new("node")
        .args(["--input-type=commonjs", "-e", &format!("(async () => {{ {script} }})().catch((e) => {{ console.error(e); process.exit(1); }})")])
        .arg(&input)
        .output()
        .expect("running node");
    std::fs::remove_file(&input).ok();
    assert!(
        js.status.success(),
        "{}",
        String::from_utf8_lossy(&js.stderr)
    );
    let out: Vec<Value> = serde_json::from_slice(&js.stdout).unwrap();
    assert_eq!(out.len(), 10);
    for r in out {
        assert_eq!(r["same"], true, "{r}");
        assert_eq!(r["fetched"], r["unique"], "a tile fetched twice: {r}");
    }
}
