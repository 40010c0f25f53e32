//! The error shape at every edge: every route of the three services of `vigil dev`, sent what
//! a careless or hostile client sends — malformed JSON, wrong types, unknown fields, the wrong
//! content type, an oversized body, no credentials, bad credentials — answers in the one shape
//! (`{code, message, trace_id}`, JSON, the code in `X-Error-Code`), never in plain text.

use crate::common::*;
use reqwest::{Client, Method};
use serde_json::{json, Value};
use std::process::Command;

/// What a request may carry.
#[derive(Clone, Copy)]
enum Creds<'a> {
    None,
    Bearer(&'a str),
    /// The identity headers the audit service trusts from loopback.
    Trusted,
}

/// Sends `body` with `content_type` and asserts the answer is a refusal in the shape; returns
/// (status, code, message).
async fn refusal(
    http: &Client,
    method: &Method,
    url: &str,
    creds: Creds<'_>,
    content_type: Option<&str>,
    body: Option<Vec<u8>>,
) -> (u16, String, String) {
    let mut headers: Vec<(&str, String)> = Vec::new();
    match creds {
        Creds::None => {}
        Creds::Bearer(t) => headers.push(("Authorization", format!("Bearer {t}"))),
        Creds::Trusted => {
            headers.push(("X-Tenant-ID", "acme".into()));
            headers.push(("X-User-ID", "contract".into()));
            headers.push(("X-Roles", "admin,super_admin".into()));
        }
    }
    if let Some(ct) = content_type {
        headers.push(("Content-Type", ct.to_owned()));
    }
    let (status, error_code, ct, text) = match body {
        // A server may answer an oversized body before reading it and close the connection,
        // which reqwest reports as a failed send: write it raw, and read the answer anyway.
        Some(b) if b.len() > 1024 * 1024 => raw(method, url, &headers, b).await,
        body => {
            let mut rb = http.request(method.clone(), url);
            for (k, v) in &headers {
                rb = rb.header(*k, v);
            }
            if let Some(b) = body {
                rb = rb.body(b);
            }
            let resp = rb.send().await.unwrap();
            let h = |name: &str| {
                resp.headers()
                    .get(name)
                    .map(|v| v.to_str().unwrap().to_owned())
            };
            let (code, ct) = (h("x-error-code"), h("content-type"));
            (resp.status().as_u16(), code, ct, resp.text().await.unwrap())
        }
    };
    let what = format!("{method} {url} -> {status}");
    assert!((400..600).contains(&status), "{what}: expected a refusal");
    let header = error_code.unwrap_or_else(|| panic!("{what}: no X-Error-Code: {text}"));
    let ct = ct.unwrap_or_default();
    assert!(
        ct.starts_with("application/json"),
        "{what}: content type {ct}"
    );
    let body: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {text}"));
    let code = body["code"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: {body}"));
    let message = body["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: {body}"));
    assert!(body["trace_id"].is_string(), "{what}: {body}");
    assert_eq!(code, header, "{what}: {body}");
    assert!(!message.is_empty(), "{what}: {body}");
    (status, code.to_owned(), message.to_owned())
}

/// Sends a request over a raw connection (`Connection: close`), writing the body while the
/// answer is read; returns (status, X-Error-Code, Content-Type, body).
async fn raw(
    method: &Method,
    url: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> (u16, Option<String>, Option<String>, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let u = reqwest::Url::parse(url).unwrap();
    let addr = format!("{}:{}", u.host_str().unwrap(), u.port().unwrap());
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let mut head = format!(
        "{method} {}{} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
        u.path(),
        u.query().map(|q| format!("?{q}")).unwrap_or_default(),
        u.host_str().unwrap(),
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(head.as_bytes()).await;
        let _ = wr.write_all(&body).await;
        let _ = wr.shutdown().await;
    });
    let mut got = Vec::new();
    let _ =
        tokio::time::timeout(std::time::Duration::from_secs(20), rd.read_to_end(&mut got)).await;
    writer.abort();
    let text = String::from_utf8_lossy(&got).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no answer: {text}"));
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let mut code = None;
    let mut ct = None;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "x-error-code" => code = Some(v.trim().to_owned()),
                "content-type" => ct = Some(v.trim().to_owned()),
                _ => {}
            }
        }
    }
    (status, code, ct, body.to_owned())
}

/// A route that takes a JSON body, with a valid-looking body and one of its string fields.
struct BodyRoute {
    method: Method,
    path: &'static str,
    body: Value,
    string_field: &'static str,
}

fn auth_body_routes() -> Vec<BodyRoute> {
    let post = Method::POST;
    vec![
        BodyRoute {
            method: post.clone(),
            path: "/v1/login",
            body: json!({"tenant_id": "acme", "username": "admin", "password": "x"}),
            string_field: "username",
        },
        BodyRoute {
            method: post.clone(),
            path: "/v1/users",
            body: json!({"username": "carol", "password": "a long enough passphrase", "roles": ["support"]}),
            string_field: "username",
        },
        BodyRoute {
            method: post.clone(),
            path: "/v1/clients",
            body: json!({"name": "billing", "roles": ["service"]}),
            string_field: "name",
        },
        BodyRoute {
            method: post.clone(),
            path: "/v1/api-keys",
            body: json!({"name": "ci", "roles": ["service"]}),
            string_field: "name",
        },
        BodyRoute {
            method: post.clone(),
            path: "/v1/api-keys/introspect",
            body: json!({"key": "vk_nothing"}),
            string_field: "key",
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_of_the_auth_service_is_in_the_shape() {
    let d = dev().await;
    let http = Client::new();
    let token = admin_token(&http, &d).await;
    let big = vec![b' '; 3 * 1024 * 1024];
    // The routes come from the service's own OpenAPI document: a route added without a case
    // here fails this test.
    let doc: Value = http
        .get(format!("{}/openapi.json", d.auth))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut protected: Vec<(Method, String)> = Vec::new();
    let mut json_bodies: Vec<(Method, String)> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let m: Method = method.to_uppercase().parse().unwrap();
            let filled = path.replace('{', "x").replace('}', "");
            if op["security"].as_array().is_some_and(|s| !s.is_empty()) {
                protected.push((m.clone(), filled));
            }
            if op["requestBody"]["required"] == true
                && op["requestBody"]["content"]["application/json"].is_object()
            {
                json_bodies.push((m, path.clone()));
            }
        }
    }
    assert!(protected.len() >= 12, "{protected:?}");
    assert!(json_bodies.len() >= 5, "{json_bodies:?}");
    let cases = auth_body_routes();
    for (m, path) in &json_bodies {
        assert!(
            cases.iter().any(|r| r.method == *m && r.path == path),
            "{m} {path} takes a JSON body but has no contract case"
        );
    }
    for r in cases {
        let url = format!("{}{}", d.auth, r.path);
        let json_ct = Some("application/json");
        let mut wrong = r.body.clone();
        wrong[r.string_field] = json!(42);
        let mut extra = r.body.clone();
        extra["tenant_id_override"] = json!("globex");
        let mut missing = r.body.clone();
        missing.as_object_mut().unwrap().remove(r.string_field);
        // (what, content type, body, status, code, what the message must name)
        let cases = [
            (
                "malformed JSON",
                json_ct,
                b"{\"a\":".to_vec(),
                400,
                "bad_request",
                "",
            ),
            (
                "a wrong type",
                json_ct,
                wrong.to_string().into_bytes(),
                400,
                "bad_request",
                r.string_field,
            ),
            // A caller must not think an unknown field was honoured.
            (
                "an unknown field",
                json_ct,
                extra.to_string().into_bytes(),
                400,
                "bad_request",
                "tenant_id_override",
            ),
            (
                "a missing field",
                json_ct,
                missing.to_string().into_bytes(),
                400,
                "bad_request",
                r.string_field,
            ),
            (
                "the wrong content type",
                Some("text/plain"),
                r.body.to_string().into_bytes(),
                415,
                "unsupported_media_type",
                "",
            ),
            (
                "an oversized body",
                json_ct,
                big.clone(),
                413,
                "payload_too_large",
                "",
            ),
        ];
        for (what, ct, body, status, code, names) in cases {
            let (s, c, msg) = refusal(
                &http,
                &r.method,
                &url,
                Creds::Bearer(&token),
                ct,
                Some(body),
            )
            .await;
            assert_eq!(
                (s, c.as_str()),
                (status, code),
                "{} with {what}: {msg}",
                r.path
            );
            assert!(msg.contains(names), "{} with {what}: {msg}", r.path);
        }
    }
    // Bodies of the token endpoint are forms.
    let url = format!("{}/oauth/token", d.auth);
    let (s, code, _) = refusal(
        &http,
        &Method::POST,
        &url,
        Creds::None,
        Some("application/json"),
        Some(b"{}".to_vec()),
    )
    .await;
    assert_eq!((s, code.as_str()), (415, "unsupported_media_type"));
    let (s, code, _) = refusal(
        &http,
        &Method::POST,
        &url,
        Creds::None,
        Some("application/x-www-form-urlencoded"),
        Some(big.clone()),
    )
    .await;
    assert_eq!((s, code.as_str()), (413, "payload_too_large"));
    let (s, _, _) = refusal(
        &http,
        &Method::POST,
        &url,
        Creds::None,
        Some("application/x-www-form-urlencoded"),
        Some(b"grant_type=client_credentials&client_id=nobody&client_secret=x".to_vec()),
    )
    .await;
    assert_eq!(s, 401);

    // Every route that needs a caller (its document says so), without one and with a bad one.
    for (m, path) in &protected {
        let url = format!("{}{path}", d.auth);
        // No credentials: 401, or (where trusted identity headers are accepted from loopback)
        // 400 for the missing tenant.
        let (s, code, _) = refusal(&http, m, &url, Creds::None, None, None).await;
        assert!(
            s == 401 || code == "missing_tenant_id",
            "{m} {path}: {s} {code}"
        );
        let (s, code, _) = refusal(&http, m, &url, Creds::Bearer("not.a.token"), None, None).await;
        assert_eq!((s, code.as_str()), (401, "invalid_token"), "{m} {path}");
    }
    // Unknown routes and methods.
    refusal(
        &http,
        &Method::GET,
        &format!("{}/v1/nope", d.auth),
        Creds::None,
        None,
        None,
    )
    .await;
    let (s, _, _) = refusal(
        &http,
        &Method::PUT,
        &format!("{}/v1/login", d.auth),
        Creds::None,
        None,
        None,
    )
    .await;
    assert_eq!(s, 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_of_the_audit_service_and_the_gateway_is_in_the_shape() {
    let d = dev().await;
    let http = Client::new();
    let token = admin_token(&http, &d).await;
    // The audit service's routes, from its own OpenAPI document.
    let doc: Value = http
        .get(format!("{}/openapi.json", d.audit))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.contains_key("/v1/events"), "{doc}");
    // The document states what ingest enforces: the event's schema, and 1 to 1,000 of them.
    let body = &paths["/v1/events"]["post"]["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(
        (body["minItems"].as_u64(), body["maxItems"].as_u64()),
        (Some(1), Some(1000)),
        "{body}"
    );
    let event = &doc["components"]["schemas"]["Event"];
    assert_eq!(event["additionalProperties"], false);
    assert!(event["required"]
        .as_array()
        .unwrap()
        .contains(&json!("action")));
    assert!(event["properties"]["outcome"]["enum"]
        .as_array()
        .unwrap()
        .contains(&json!("denied")));
    let big = vec![b'['; 80 * 1024 * 1024];
    for (path, ops) in paths {
        for (method, op) in ops.as_object().unwrap() {
            let m: Method = method.to_uppercase().parse().unwrap();
            // Path parameters get a value that is not what they should be.
            let concrete = path
                .replace("{event_id}", "not-a-uuid")
                .replace("{subject_id}", "nobody-at-all");
            let url = format!("{}{concrete}", d.audit);
            // A route that answers a caller without credentials is public.
            let public = http
                .request(m.clone(), &url)
                .send()
                .await
                .unwrap()
                .status()
                .is_success();
            if !public {
                let (s, code, _) = refusal(&http, &m, &url, Creds::None, None, None).await;
                assert!(
                    s == 401 || code == "missing_tenant_id",
                    "{m} {path}: {s} {code}"
                );
                let (s, code, _) =
                    refusal(&http, &m, &url, Creds::Bearer("not.a.token"), None, None).await;
                assert_eq!((s, code.as_str()), (401, "invalid_token"), "{m} {path}");
            }
            if path.contains('{') && (m == Method::GET || op.get("requestBody").is_none()) {
                refusal(&http, &m, &url, Creds::Trusted, None, None).await;
            }
            if m == Method::POST && op.get("requestBody").is_some() {
                for (ct, body) in [
                    (Some("application/json"), b"[{\"a\":".to_vec()),
                    (Some("application/json"), b"{\"not\":\"an array\"}".to_vec()),
                    (Some("application/json"), b"[42]".to_vec()),
                    (Some("image/png"), b"[]".to_vec()),
                    (Some("application/json"), big.clone()),
                ] {
                    let (s, code, msg) =
                        refusal(&http, &m, &url, Creds::Trusted, ct, Some(body)).await;
                    assert!(
                        [400, 413, 415, 422].contains(&s),
                        "{m} {path}: {s} {code} {msg}"
                    );
                }
            }
        }
    }
    // Query strings that do not parse.
    for q in [
        "limit=many",
        "since=yesterday",
        "min_severity=loud",
        "cursor=%%%",
        "unknown=1",
    ] {
        let (s, code, msg) = refusal(
            &http,
            &Method::GET,
            &format!("{}/v1/events?{q}", d.audit),
            Creds::Trusted,
            None,
            None,
        )
        .await;
        assert_eq!((s, code.as_str()), (400, "bad_request"), "{q}: {msg}");
    }

    // The gateway: its own endpoints, and what it refuses before the audit service.
    let gw = &d.gateway;
    refusal(
        &http,
        &Method::GET,
        &format!("{gw}/v1/events"),
        Creds::None,
        None,
        None,
    )
    .await;
    let (s, code, _) = refusal(
        &http,
        &Method::GET,
        &format!("{gw}/v1/events"),
        Creds::Bearer("not.a.token"),
        None,
        None,
    )
    .await;
    assert_eq!((s, code.as_str()), (401, "invalid_token"));
    refusal(
        &http,
        &Method::POST,
        &format!("{gw}/gateway/healthz"),
        Creds::None,
        None,
        None,
    )
    .await;
    refusal(
        &http,
        &Method::GET,
        &format!("{gw}/no/such/route"),
        Creds::None,
        None,
        None,
    )
    .await;
    let (s, code, _) = refusal(
        &http,
        &Method::POST,
        &format!("{gw}/v1/events"),
        Creds::Bearer(&token),
        Some("application/json"),
        Some(big),
    )
    .await;
    assert_eq!((s, code.as_str()), (413, "payload_too_large"));
    // Through the gateway, the audit service's refusal arrives as it was written.
    let (s, code, _) = refusal(
        &http,
        &Method::POST,
        &format!("{gw}/v1/events"),
        Creds::Bearer(&token),
        Some("application/json"),
        Some(b"[{\"a\":".to_vec()),
    )
    .await;
    assert_eq!((s, code.as_str()), (400, "bad_request"));
    let (s, code, _) = refusal(
        &http,
        &Method::GET,
        &format!("{gw}/v1/events?limit=many"),
        Creds::Bearer(&token),
        None,
        None,
    )
    .await;
    assert_eq!((s, code.as_str()), (400, "bad_request"));
}

/// The schemathesis command of the Python the test command provides (`VIGIL_PYTHON`).
fn schemathesis() -> std::path::PathBuf {
    let python = std::env::var("VIGIL_PYTHON").unwrap_or_else(|_| "python3".into());
    let py = std::path::Path::new(&python);
    if py.components().count() > 1 {
        py.with_file_name("schemathesis")
    } else {
        "schemathesis".into()
    }
}

/// Runs schemathesis with every check against `doc`, a bounded number of examples and a fixed
/// seed (the same cases every run); panics with its report when it finds anything.
fn run_schemathesis(doc: &str, headers: &[String]) {
    run_schemathesis_on(doc, headers, &[]);
}

/// [`run_schemathesis`] with more arguments (e.g. which operations); returns its report.
fn run_schemathesis_on(doc: &str, headers: &[String], more: &[&str]) -> String {
    let exe = schemathesis();
    let config = repo_root().join("scripts/schemathesis.toml");
    let mut cmd = Command::new(&exe);
    cmd.arg("--config-file")
        .arg(&config)
        .args([
            "run",
            doc,
            "--checks",
            "all",
            "--max-examples",
            "25",
            "--seed",
            "20261125",
        ])
        .args(more)
        .env("NO_COLOR", "1")
        .current_dir(std::env::temp_dir());
    for h in headers {
        cmd.args(["-H", h]);
    }
    let out = cmd.output().unwrap_or_else(|e| {
        panic!(
            "running {} ({e}): ./scripts/test.sh installs schemathesis into the virtualenv it names as VIGIL_PYTHON",
            exe.display()
        )
    });
    let report =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "schemathesis found problems in {doc}:\n{report}"
    );
    assert!(report.contains("passed"), "{report}");
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_in_the_auth_service() {
    let d = dev().await;
    let http = Client::new();
    let token = admin_token(&http, &d).await;
    let doc = format!("{}/openapi.json", d.auth);
    tokio::task::spawn_blocking(move || {
        run_schemathesis(&doc, &[format!("Authorization: Bearer {token}")])
    })
    .await
    .unwrap();
}

/// The signing-key routes answer only `keys_manage` in the system tenant: a tenant admin gets
/// 403 from all of them (the run above), so they are run again as the platform's operator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_in_the_signing_key_routes() {
    let d = dev().await;
    let store = vigil_authsvc::app::open_store(
        &format!("sqlite://{}", d.dir.path().join("auth.db").display()).into(),
    )
    .await
    .unwrap();
    vigil_authsvc::service::add_user(
        &store,
        &Default::default(),
        &vigil_core::ids::TenantId::parse("system").unwrap(),
        "operator",
        "quiet harbour lights at dawn",
        vigil_security::capability::RoleSet::of(&[vigil_security::capability::Role::SuperAdmin]),
        vigil_authsvc::events::Actor::System,
    )
    .await
    .unwrap();
    let http = Client::new();
    let r: Value = http
        .post(format!("{}/v1/login", d.auth))
        .json(&json!({"tenant_id": "system", "username": "operator", "password": "quiet harbour lights at dawn"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = r["access_token"].as_str().expect("a token").to_owned();
    let doc = format!("{}/openapi.json", d.auth);
    let report = tokio::task::spawn_blocking(move || {
        run_schemathesis_on(
            &doc,
            &[format!("Authorization: Bearer {token}")],
            &["--include-path-regex", "^/v1/keys"],
        )
    })
    .await
    .unwrap();
    // Each route was exercised past its authorization.
    assert!(report.contains("3 selected"), "{report}");
    assert!(!report.contains("Authentication failed"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_in_the_audit_service() {
    let d = dev().await;
    let doc = format!("{}/openapi.json", d.audit);
    // The identity headers the audit service trusts from loopback (the gateway's).
    tokio::task::spawn_blocking(move || {
        run_schemathesis(
            &doc,
            &[
                "X-Tenant-ID: acme".into(),
                "X-User-ID: schemathesis".into(),
                "X-Roles: admin".into(),
            ],
        )
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_in_the_gateways_own_endpoints() {
    let d = dev().await;
    let doc = format!("{}/gateway/openapi.json", d.gateway);
    tokio::task::spawn_blocking(move || run_schemathesis(&doc, &[]))
        .await
        .unwrap();
}

/// docs/metrics.md names every metric the three services expose, and nothing no code defines.
#[tokio::test]
async fn the_metrics_doc_names_every_metric_the_services_expose() {
    let d = dev().await;
    let http = Client::new();
    // Some traffic first: a login, a read, a proxied request.
    let token = admin_token(&http, &d).await;
    http.get(format!("{}/v1/events", d.gateway))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    // And an event ingested, so the store's write lock has been held.
    let r = http
        .post(format!("{}/v1/events", d.audit))
        .header("X-Tenant-ID", "acme")
        .header("X-User-ID", "payments")
        .header("X-Roles", "service")
        .json(&serde_json::json!([{
            "occurred_at": "2026-12-01T10:00:00Z",
            "actor": {"type": "service", "id": "payments"},
            "action": "payment.void",
            "resource": {"type": "payment", "id": "p-1"},
            "outcome": "success",
            "source": {"service": "payments"}
        }]))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let doc = std::fs::read_to_string(repo_root().join("docs/metrics.md")).unwrap();
    let documented: std::collections::BTreeSet<String> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `")?.split('`').next().map(str::to_owned))
        .collect();
    let mut exposed = std::collections::BTreeMap::<String, Vec<&str>>::new();
    for (service, url) in [
        ("audit", format!("{}/metrics", d.audit)),
        ("auth", format!("{}/metrics", d.auth)),
        ("gateway", format!("{}/gateway/metrics", d.gateway)),
    ] {
        let text = get_text(&http, url).await;
        for name in text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next())
        {
            exposed.entry(name.to_owned()).or_default().push(service);
        }
        for must in [
            "vigil_build_info",
            "process_resident_memory_bytes",
            "process_open_fds",
        ] {
            assert!(text.contains(must), "{service} does not expose {must}");
        }
        if service == "audit" {
            // `vigil dev` runs on SQLite: its one write lock is timed, and the event above was
            // appended under it.
            let held: f64 = text
                .lines()
                .find_map(|l| l.strip_prefix("audit_store_write_lock_seconds_total "))
                .and_then(|v| v.trim().parse().ok())
                .expect("audit exposes audit_store_write_lock_seconds_total on SQLite");
            assert!(held > 0.0, "the write lock was never held: {held}");
        }
        if service != "gateway" {
            assert!(
                text.contains("vigil_db_pool_connections{service=\"")
                    && text.contains("state=\"in_use\""),
                "{service}: no pool metrics"
            );
        }
    }
    let undocumented: Vec<_> = exposed
        .iter()
        .filter(|(n, _)| !documented.contains(*n))
        .collect();
    assert!(
        undocumented.is_empty(),
        "exposed but not in docs/metrics.md: {undocumented:?}"
    );
    // Every documented name is defined somewhere in the code (process_* by the client crate).
    let mut source = String::new();
    for dir in std::fs::read_dir(repo_root().join("crates")).unwrap() {
        let src = dir.unwrap().path().join("src");
        let mut stack = vec![src];
        while let Some(p) = stack.pop() {
            if p.is_dir() {
                stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            } else if p.extension().is_some_and(|e| e == "rs") {
                source.push_str(&std::fs::read_to_string(&p).unwrap());
            }
        }
    }
    let stale: Vec<_> = documented
        .iter()
        .filter(|n| !n.starts_with("process_") && !source.contains(&format!("\"{n}\"")))
        .collect();
    assert!(
        stale.is_empty(),
        "in docs/metrics.md but defined nowhere: {stale:?}"
    );
}
