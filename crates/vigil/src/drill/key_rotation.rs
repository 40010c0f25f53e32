//! The key-rotation drill: the auth service, the audit service verifying bearer tokens through
//! the JWKS, and the gateway verifying them too; service clients of several tenants post
//! events through the gateway and straight to the audit API, some fetching a new token every
//! second, some keeping the token they got first. The signing key is rotated through the
//! auth API several times. What must hold: no request refused (a token valid when sent is
//! accepted by both verifiers, whichever key signed it), each verifier takes tokens of the new
//! key within the target after each rotation, tokens of the old keys keep working, every old
//! key stays published, each rotation is in the system tenant's chain, and no event admitted
//! is lost.

use super::stack::{kid_of, start_audit_with, start_auth, start_gateway, Client};
use super::{scrape, Report};
use anyhow::Context;
use clap::Args;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vigil_security::capability::Role;

#[derive(Args, Debug)]
pub(crate) struct KeyRotationDrillArgs {
    /// Rotations of the signing key.
    #[arg(long, default_value_t = 3)]
    rotations: u32,
    /// Load before the first rotation, between rotations and after the last.
    #[arg(long, default_value = "5s", value_parser = crate::duration_arg::millis)]
    interval: Duration,
    /// Tenants.
    #[arg(long, default_value_t = 3)]
    tenants: u64,
    /// Load clients (half fetch a new token every second, half keep their first).
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// After a rotation each verifier must accept tokens of the new key within this.
    #[arg(long, default_value = "5s", value_parser = crate::duration_arg::millis)]
    adoption_target: Duration,
    /// Write drill-key-rotation.md and .json here.
    #[arg(long, value_name = "DIR")]
    report: Option<std::path::PathBuf>,
}

const METRICS: [&str; 6] = [
    "jwt_verifications_total{outcome=\"ok\"}",
    "jwt_verifications_total{outcome=\"unknown_kid\"}",
    "jwt_verifications_total{outcome=\"invalid\"}",
    "jwks_refresh_total",
    "jwks_keys",
    "http_requests_total",
];

/// Where a request went.
const VIA: [&str; 2] = ["gateway", "audit"];

/// One answer the load got.
#[derive(Debug, Clone)]
struct Answer {
    /// Seconds since the start, when the request was sent.
    at: f64,
    /// Index into [`VIA`].
    via: usize,
    kid: String,
    status: u16,
}

/// The kids in a JWKS document.
async fn published(http: &reqwest::Client, url: &str) -> anyhow::Result<Vec<String>> {
    let jwks: Value = http.get(url).send().await?.json().await?;
    Ok(jwks["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|k| k["kid"].as_str().map(str::to_string))
        .collect())
}

pub(crate) async fn run(a: KeyRotationDrillArgs) -> anyhow::Result<Report> {
    let mut r = Report::new("key-rotation", "the token signing key rotated under load");
    let work = tempfile::tempdir()?;
    let store_url = format!("sqlite://{}/audit.db", work.path().display());
    // The auth service needs the audit service's address and the audit service the auth
    // service's JWKS: the auth service learns where the audit service is through a port
    // reserved first.
    let audit_port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let auth = start_auth(
        &work.path().join("auth"),
        Some(format!("http://{audit_port}")),
        |_| {},
    )
    .await?;
    let issuer = auth.issuer.clone();
    let jwks_url = auth.jwks_url();
    let (audit, audit_service) = start_audit_with(&store_url, &work.path().join("data"), |s| {
        s.listen = audit_port;
        // Production JWKS settings: what a deployment would see.
        s.jwks = Some(vigil_auth::JwksConfig::new(
            jwks_url.clone(),
            issuer.clone(),
            "vigil",
        ));
    })
    .await?;
    let (gateway, gateway_service) = start_gateway(
        super::stack::ANY_PORT,
        &format!(
            r#"
        audit_url = "{audit}"
        [auth]
        jwks_url = "{jwks_url}"
        issuer = "{issuer}"
        [rate_limit]
        default_rpm = 6000000
        [[routes]]
        prefix = "/"
        upstreams = ["{audit}"]
        access = "authenticated"
        "#
        ),
    )
    .await?;
    r.setup = vec![
        (
            "stack".into(),
            "auth service, audit service (SQLite, verifying bearer tokens through the JWKS), gateway (verifying them too)".into(),
        ),
        ("rotations".into(), format!("{} every {:?}", a.rotations, a.interval)),
        (
            "load".into(),
            format!(
                "{} clients over {} tenants, each request one event, alternately through the gateway and straight to the audit API; half the clients get a new token every second, half keep their first",
                a.clients, a.tenants
            ),
        ),
        ("JWKS settings".into(), "production defaults (vigil_auth::JwksConfig::new)".into()),
    ];

    let tenants: Vec<String> = (0..a.tenants).map(|t| format!("t{t:03}")).collect();
    let mut clients: Vec<(String, Client)> = Vec::new();
    for t in &tenants {
        clients.push((t.clone(), auth.client(t, &[Role::Service]).await?));
    }
    let admin = auth.client("system", &[Role::SuperAdmin]).await?;
    let http = reqwest::Client::new();
    let initial_kid = kid_of(&admin.token().await?);

    let clock = Instant::now();
    let answers: Arc<Mutex<Vec<Answer>>> = Arc::default();
    let admitted: Arc<Mutex<HashMap<String, Vec<String>>>> = Arc::default();
    let token_failures = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut load = Vec::new();
    for c in 0..a.clients.max(2) {
        let (tenant, client) = clients[c % clients.len()].clone();
        let keeps_first = c % 2 == 1;
        let (answers, admitted, token_failures, stop) = (
            answers.clone(),
            admitted.clone(),
            token_failures.clone(),
            stop_rx.clone(),
        );
        let urls = [format!("{gateway}/v1/events"), format!("{audit}/v1/events")];
        let mut token = client.token().await?;
        load.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_entropy();
            let mut got = Instant::now();
            let mut n = c as u64 * 1_000_000_000;
            while !*stop.borrow() {
                if !keeps_first && got.elapsed() >= Duration::from_secs(1) {
                    match client.token().await {
                        Ok(t) => {
                            token = t;
                            got = Instant::now();
                        }
                        Err(_) => {
                            token_failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                n += 1;
                let via = (n % 2) as usize;
                let mut ev = crate::bench::bench_event(&mut rng, n, "drill-keys");
                ev["source"] = serde_json::json!({"service": "drill-load"});
                let id = ev["event_id"].as_str().unwrap_or_default().to_string();
                let at = clock.elapsed().as_secs_f64();
                let status = http
                    .post(&urls[via])
                    .bearer_auth(&token)
                    .timeout(Duration::from_secs(10))
                    .json(&vec![ev])
                    .send()
                    .await
                    .map_or(0, |r| r.status().as_u16());
                if status == 200 {
                    admitted
                        .lock()
                        .expect("lock")
                        .entry(tenant.clone())
                        .or_default()
                        .push(id);
                }
                answers.lock().expect("lock").push(Answer {
                    at,
                    via,
                    kid: kid_of(&token),
                    status,
                });
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }));
    }
    r.step(format!("load started; signing kid {initial_kid}"));
    tokio::time::sleep(a.interval).await;
    let before = [
        scrape(&format!("{gateway}/gateway")).await,
        scrape(&audit).await,
    ]
    .concat();

    // Each rotation: (seconds since the start, new signing kid, kids published right after).
    let mut rotations: Vec<(f64, String, Vec<String>)> = Vec::new();
    let mut injected = None;
    let mut during = String::new();
    for i in 1..=a.rotations {
        let t = r.step(format!("INJECT: rotation {i} through POST /v1/keys/rotate"));
        injected.get_or_insert(t);
        let at = clock.elapsed().as_secs_f64();
        let rotated: Value = http
            .post(format!("{issuer}/v1/keys/rotate"))
            .bearer_auth(admin.token().await?)
            .send()
            .await?
            .error_for_status()
            .context("rotating the signing key")?
            .json()
            .await?;
        let kid = rotated["signing_kid"]
            .as_str()
            .context("no signing_kid in the rotation's answer")?
            .to_string();
        let kids = published(&http, &jwks_url).await?;
        r.step(format!(
            "rotated: {kid} signs; the JWKS publishes {}",
            kids.join(", ")
        ));
        rotations.push((at, kid, kids));
        tokio::time::sleep(a.interval).await;
        if i == 1 {
            during = [
                scrape(&format!("{gateway}/gateway")).await,
                scrape(&audit).await,
            ]
            .concat();
        }
    }
    let _ = stop_tx.send(true);
    for l in load {
        l.await?;
    }
    let recovered = r.step("load stopped");
    let after = [
        scrape(&format!("{gateway}/gateway")).await,
        scrape(&audit).await,
    ]
    .concat();
    gateway_service.stop().await?;
    auth.service.stop().await?;
    audit_service.stop().await?;

    let answers = answers.lock().expect("lock").clone();
    let admitted = admitted.lock().expect("lock").clone();
    let failed: Vec<&Answer> = answers.iter().filter(|x| x.status != 200).collect();
    // How long after each rotation each verifier first accepted a token of the new key.
    let mut adoption: Vec<[Option<f64>; 2]> = Vec::new();
    for (at, kid, _) in &rotations {
        let mut first = [None, None];
        for x in answers.iter().filter(|x| &x.kid == kid && x.status == 200) {
            let d = x.at - at;
            first[x.via] = Some(first[x.via].map_or(d, |f: f64| f.min(d)));
        }
        adoption.push(first);
    }
    let slowest = adoption
        .iter()
        .flatten()
        .map(|d| d.unwrap_or(f64::INFINITY))
        .fold(0.0f64, f64::max);
    // Tokens of a key sent after that key stopped signing.
    let signed: Vec<&str> = std::iter::once(initial_kid.as_str())
        .chain(rotations.iter().map(|(_, k, _)| k.as_str()))
        .collect();
    let retired_kids = &signed[..signed.len() - 1];
    let last_rotation = rotations.last().map_or(f64::INFINITY, |(at, _, _)| *at);
    let old_after: Vec<&Answer> = answers
        .iter()
        .filter(|x| x.at > last_rotation && retired_kids.contains(&x.kid.as_str()))
        .collect();
    let old_ok = old_after.iter().filter(|x| x.status == 200).count();
    // Every key that signed stays published after each rotation.
    let mut unpublished = Vec::new();
    for (i, (_, _, kids)) in rotations.iter().enumerate() {
        for k in &signed[..=i + 1] {
            if !kids.iter().any(|p| p == k) {
                unpublished.push(k.to_string());
            }
        }
    }
    let (lost, checked) = super::missing(&store_url, &admitted).await?;
    let intact = super::chains_intact(&store_url).await?;
    let recorded = super::system_records(&store_url, "auth.key.rotated").await?;

    r.metrics(&METRICS, [&before, &during, &after]);
    r.figure("requests", answers.len() as f64);
    r.figure("requests_refused", failed.len() as f64);
    for (i, first) in adoption.iter().enumerate() {
        for (via, d) in first.iter().enumerate() {
            r.figure(
                &format!(
                    "rotation_{}_{}_new_key_accepted_after_seconds",
                    i + 1,
                    VIA[via]
                ),
                d.unwrap_or(f64::NAN),
            );
        }
    }
    r.figure(
        "old_key_requests_after_last_rotation",
        old_after.len() as f64,
    );
    r.figure("mttr_seconds", injected.map_or(f64::NAN, |i| recovered - i));
    r.check(
        "requests refused (any answer but 200)",
        "0".into(),
        match failed.first() {
            None => format!("0 of {}", answers.len()),
            Some(f) => format!(
                "{} of {} (first: {} via {} at {:.2}s, kid {})",
                failed.len(),
                answers.len(),
                f.status,
                VIA[f.via],
                f.at,
                f.kid
            ),
        },
        failed.is_empty() && !answers.is_empty(),
    );
    r.check(
        "new key accepted by the gateway and the audit API after each rotation",
        format!("< {:?}", a.adoption_target),
        if slowest.is_finite() {
            format!("slowest {slowest:.3}s")
        } else {
            "a verifier never saw a token of a new key".into()
        },
        slowest < a.adoption_target.as_secs_f64(),
    );
    r.check(
        "tokens of rotated-out keys accepted after the last rotation",
        "all, and some sent".into(),
        format!("{old_ok} of {}", old_after.len()),
        !old_after.is_empty() && old_ok == old_after.len(),
    );
    r.check(
        "keys that signed stay published",
        "all".into(),
        if unpublished.is_empty() {
            "all".into()
        } else {
            format!("missing: {}", unpublished.join(", "))
        },
        unpublished.is_empty(),
    );
    r.check(
        "token requests failed",
        "0".into(),
        token_failures.load(Ordering::Relaxed).to_string(),
        token_failures.load(Ordering::Relaxed) == 0,
    );
    r.check(
        "rotations in the system tenant's chain (auth.key.rotated)",
        a.rotations.to_string(),
        recorded.to_string(),
        recorded == a.rotations as usize,
    );
    r.check(
        "admitted events lost",
        "0".into(),
        format!("{lost} of {checked} checked"),
        lost == 0 && checked > 0,
    );
    r.check_chains(intact);
    r.conclude(a.report.as_deref())
}
