//! The Redis-outage drill: the auth service, the audit service and the gateway in front of it,
//! the gateway deciding rate limits on Redis through a TCP forwarder the drill cuts. One
//! tenant sends three times its limit, the others a fraction of theirs, each request a bearer
//! token and one audit event. What must hold: no answer but 200 and 429 (no 5xx), the quiet
//! tenants are never refused, the noisy tenant is held to its limit by the in-memory fallback
//! while Redis is away (within the bound the GCRA gives: rate × time + burst), the gateway
//! notices, returns to Redis by itself, and no admitted event is lost.

use super::proxy::{through, Proxy};
use super::stack::{start_auth, start_gateway, Client};
use super::{scrape, start_audit, Report};
use clap::Args;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vigil_security::capability::Role;

#[derive(Args, Debug)]
pub(crate) struct RedisOutageDrillArgs {
    /// The Redis the gateway shares its limits on (the drill uses keys under a prefix of its
    /// own and cuts only its own connections).
    #[arg(
        long,
        env = "VIGIL_DRILL_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    redis_url: String,
    /// How long Redis stays unreachable.
    #[arg(long, default_value = "10s", value_parser = crate::duration_arg::millis)]
    outage: Duration,
    /// Load before the outage and after it.
    #[arg(long, default_value = "5s", value_parser = crate::duration_arg::millis)]
    steady: Duration,
    /// Tenants: the first sends three times its limit, the others a quarter of it.
    #[arg(long, default_value_t = 3)]
    tenants: u64,
    /// Each tenant's limit, requests per minute (burst: one second's worth).
    #[arg(long, default_value_t = 600)]
    rpm: u32,
    /// After Redis is back, the gateway must decide on it again within this.
    #[arg(long, default_value = "10s", value_parser = crate::duration_arg::millis)]
    recovery_target: Duration,
    /// Write drill-redis-outage.md and .json here.
    #[arg(long, value_name = "DIR")]
    report: Option<std::path::PathBuf>,
}

const METRICS: [&str; 7] = [
    "gateway_rate_limiter_backend{engine=\"redis\"}",
    "gateway_rate_limiter_backend{engine=\"memory\"}",
    "gateway_rate_limit_checks_total{engine=\"redis\"",
    "gateway_rate_limit_checks_total{engine=\"memory\"",
    "gateway_rate_limit_rejections_total",
    "gateway_rate_limiter_transitions_total",
    "http_requests_total",
];

/// One answer the load got.
#[derive(Debug, Clone, Copy)]
struct Answer {
    /// Seconds since the drill started, when the request was sent.
    at: f64,
    tenant: usize,
    status: u16,
}

/// When the phases began, in seconds since the start.
#[derive(Debug, Clone, Copy)]
struct Phases {
    cut: f64,
    healed: f64,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    ok: u64,
    limited: u64,
    other: u64,
}

impl Counts {
    fn add(&mut self, status: u16) {
        match status {
            200 => self.ok += 1,
            429 => self.limited += 1,
            _ => self.other += 1,
        }
    }
}

/// The engine deciding, from the gateway's metrics.
async fn engine(base: &str) -> Option<&'static str> {
    let text = scrape(&format!("{base}/gateway")).await;
    ["redis", "memory"]
        .into_iter()
        .find(|e| text.contains(&format!("gateway_rate_limiter_backend{{engine=\"{e}\"}} 1")))
}

/// Waits until the gateway decides on `want`; how long it took, or `None` past `limit`.
async fn wait_engine(base: &str, want: &str, limit: Duration) -> Option<Duration> {
    super::wait_until(
        limit,
        move || async move { engine(base).await == Some(want) },
    )
    .await
}

pub(crate) async fn run(a: RedisOutageDrillArgs) -> anyhow::Result<Report> {
    let mut r = Report::new(
        "redis-outage",
        "network partition between the gateway and Redis",
    );
    let (_, upstream) = through(&a.redis_url, "127.0.0.1:1".parse()?, 6379)?;
    let proxy = Proxy::start(upstream).await?;
    let (proxied, _) = through(&a.redis_url, proxy.addr, 6379)?;
    let work = tempfile::tempdir()?;
    let audit_url = format!("sqlite://{}/audit.db", work.path().display());
    let (audit, audit_service) = start_audit(&audit_url, &work.path().join("data")).await?;
    let auth = start_auth(&work.path().join("auth"), Some(audit.clone()), |_| {}).await?;
    let issuer = auth.issuer.clone();
    let prefix = format!("vigil-drill:{}:", uuid::Uuid::new_v4().simple());
    let (gateway, gateway_service) = start_gateway(
        super::stack::ANY_PORT,
        &format!(
            r#"
        audit_url = "{audit}"
        [auth]
        jwks_url = "{jwks}"
        issuer = "{issuer}"
        [rate_limit]
        default_rpm = {rpm}
        burst = {burst}
        redis_url = "{proxied}"
        key_prefix = "{prefix}"
        redis_timeout_ms = 25
        [[routes]]
        prefix = "/"
        upstreams = ["{audit}"]
        access = "authenticated"
        "#,
            jwks = auth.jwks_url(),
            rpm = a.rpm,
            burst = (a.rpm / 60).max(1),
        ),
    )
    .await?;
    let per_sec = f64::from(a.rpm) / 60.0;
    let burst = f64::from((a.rpm / 60).max(1));
    r.setup = vec![
        (
            "stack".into(),
            "auth service, audit service (SQLite), gateway with Redis through a TCP forwarder"
                .into(),
        ),
        ("redis".into(), vigil_core::redact_url(&a.redis_url)),
        (
            "limit".into(),
            format!("{} requests/minute per tenant, burst {burst}", a.rpm),
        ),
        (
            "load".into(),
            format!(
                "t000 at {:.1}/s (3× its limit), {} other tenants at {:.1}/s each; one audit event per request",
                per_sec * 3.0,
                a.tenants.saturating_sub(1),
                per_sec / 4.0
            ),
        ),
        ("outage".into(), format!("{:?}", a.outage)),
    ];
    anyhow::ensure!(
        wait_engine(&gateway, "redis", Duration::from_secs(10))
            .await
            .is_some(),
        "the gateway did not decide on Redis at {} at start",
        vigil_core::redact_url(&a.redis_url)
    );

    let tenants: Vec<String> = (0..a.tenants).map(|t| format!("t{t:03}")).collect();
    let mut clients: Vec<Client> = Vec::new();
    for t in &tenants {
        clients.push(auth.client(t, &[Role::Service]).await?);
    }
    let clock = Instant::now();
    let answers: Arc<Mutex<Vec<Answer>>> = Arc::default();
    let admitted: Arc<Mutex<HashMap<String, Vec<String>>>> = Arc::default();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut load = Vec::new();
    for (i, (tenant, client)) in tenants.iter().zip(&clients).enumerate() {
        let rate = if i == 0 { per_sec * 3.0 } else { per_sec / 4.0 };
        let token = client.token().await?;
        let (answers, admitted, tenant) = (answers.clone(), admitted.clone(), tenant.clone());
        let url = format!("{gateway}/v1/events");
        let mut stop = stop_rx.clone();
        load.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut inflight = tokio::task::JoinSet::new();
            let mut n = 0u64;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.changed() => break,
                }
                n += 1;
                let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_entropy();
                let mut ev = crate::bench::bench_event(&mut rng, n, "drill-redis");
                // No producer position: requests overtake one another in flight.
                ev["source"] = serde_json::json!({"service": "drill-load"});
                let id = ev["event_id"].as_str().unwrap_or_default().to_string();
                let req = http
                    .post(&url)
                    .bearer_auth(&token)
                    .timeout(Duration::from_secs(10))
                    .json(&vec![ev]);
                let (answers, admitted, tenant) =
                    (answers.clone(), admitted.clone(), tenant.clone());
                let at = clock.elapsed().as_secs_f64();
                inflight.spawn(async move {
                    let status = req.send().await.map_or(0, |r| r.status().as_u16());
                    if status == 200 {
                        admitted
                            .lock()
                            .expect("lock")
                            .entry(tenant)
                            .or_default()
                            .push(id);
                    }
                    answers.lock().expect("lock").push(Answer {
                        at,
                        tenant: i,
                        status,
                    });
                });
                while inflight.try_join_next().is_some() {}
            }
            while inflight.join_next().await.is_some() {}
        }));
    }
    r.step("load started");
    tokio::time::sleep(a.steady).await;
    let before = scrape(&format!("{gateway}/gateway")).await;

    let mut phases = Phases {
        cut: clock.elapsed().as_secs_f64(),
        healed: 0.0,
    };
    let injected = r.step("INJECT: network to Redis cut");
    proxy.cut();
    let detected = wait_engine(&gateway, "memory", Duration::from_secs(30)).await;
    r.step(match detected {
        Some(d) => format!(
            "detected: the gateway decides in memory after {:.3}s",
            d.as_secs_f64()
        ),
        None => "NOT detected: the gateway never switched to memory".into(),
    });
    tokio::time::sleep(a.outage.saturating_sub(Duration::from_secs_f64(
        clock.elapsed().as_secs_f64() - phases.cut,
    )))
    .await;
    let during = scrape(&format!("{gateway}/gateway")).await;
    phases.healed = clock.elapsed().as_secs_f64();
    r.step("Redis reachable again");
    proxy.heal();
    let back = wait_engine(&gateway, "redis", Duration::from_secs(60)).await;
    let recovered = r.step(match back {
        Some(d) => format!(
            "recovered: deciding on Redis again after {:.3}s",
            d.as_secs_f64()
        ),
        None => "NOT recovered: the gateway never returned to Redis".into(),
    });
    tokio::time::sleep(a.steady).await;
    let _ = stop_tx.send(true);
    for l in load {
        l.await?;
    }
    let ended = clock.elapsed().as_secs_f64();
    r.step("load stopped");
    let after = scrape(&format!("{gateway}/gateway")).await;
    gateway_service.stop().await?;
    auth.service.stop().await?;
    audit_service.stop().await?;
    drop(proxy);

    let answers = answers.lock().expect("lock").clone();
    let admitted = admitted.lock().expect("lock").clone();
    // Counts per tenant and phase (0: before the cut, 1: during, 2: after).
    let mut counts = vec![[Counts::default(); 3]; tenants.len()];
    for x in &answers {
        let phase = if x.at < phases.cut {
            0
        } else if x.at < phases.healed {
            1
        } else {
            2
        };
        counts[x.tenant][phase].add(x.status);
    }
    let other: u64 = counts.iter().flatten().map(|c| c.other).sum();
    let quiet_limited: u64 = counts[1..].iter().flatten().map(|c| c.limited).sum();
    let outage_secs = phases.healed - phases.cut;
    let noisy = counts[0][1];
    // GCRA admits at most rate × time + burst in any window; the fallback starts empty (a full
    // burst), and a second of slack covers requests decided at the edges of the window.
    let bound = (per_sec * (outage_secs + 1.0) + burst).floor();
    let (lost, checked) = super::missing(&audit_url, &admitted).await?;
    let intact = super::chains_intact(&audit_url).await?;
    // The gateway records its engine changes in the system tenant's chain.
    let changes = super::system_records(&audit_url, "gateway.rate_limiter.engine_changed").await?;

    r.metrics(&METRICS, [&before, &during, &after]);
    r.figure(
        "detect_seconds",
        detected.map_or(f64::NAN, |d| d.as_secs_f64()),
    );
    r.figure(
        "back_on_redis_seconds",
        back.map_or(f64::NAN, |d| d.as_secs_f64()),
    );
    r.figure("mttr_seconds", recovered - injected);
    r.figure("outage_seconds", outage_secs);
    r.figure("load_seconds", ended);
    r.figure("requests", answers.len() as f64);
    for (phase, name) in ["before", "during", "after"].iter().enumerate() {
        r.figure(
            &format!("noisy_admitted_{name}"),
            counts[0][phase].ok as f64,
        );
        r.figure(
            &format!("noisy_refused_429_{name}"),
            counts[0][phase].limited as f64,
        );
    }
    r.figure("noisy_bound_during", bound);
    r.check(
        "answers other than 200 and 429",
        "0".into(),
        format!("{other} of {}", answers.len()),
        other == 0 && !answers.is_empty(),
    );
    r.check(
        "quiet tenants refused",
        "0".into(),
        quiet_limited.to_string(),
        quiet_limited == 0,
    );
    r.check(
        "noisy tenant admitted while Redis was away (in-memory fallback)",
        format!("≤ {bound} (rate × time + burst) and refused some"),
        format!("{} admitted, {} refused", noisy.ok, noisy.limited),
        noisy.ok as f64 <= bound && noisy.limited > 0,
    );
    r.check(
        "outage detected (deciding in memory)",
        "yes".into(),
        detected.map_or("no".into(), |d| format!("after {:.3}s", d.as_secs_f64())),
        detected.is_some(),
    );
    r.check(
        "back on Redis after it returns",
        format!("< {:?}", a.recovery_target),
        back.map_or("never".into(), |d| format!("{:.3}s", d.as_secs_f64())),
        back.is_some_and(|d| d < a.recovery_target),
    );
    r.check(
        "engine changes audited (gateway.rate_limiter.engine_changed)",
        "≥ 2".into(),
        changes.to_string(),
        changes >= 2,
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
