//! `vigil bench ratelimit`: the rate-limit decision as the gateway makes it (through the
//! breaker, with its timeout), one caller at a time, against Redis and the in-memory engine:
//! p50, p99 and p99.9.

use clap::Args;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vigil_gateway::limiter::{
    Breaker, Engine, FailMode, Limit, MemoryLimiter, RedisLimiter, TransitionSink,
};

#[derive(Args, Debug)]
pub(crate) struct RateLimitArgs {
    /// The Redis to decide on.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    /// Decisions to time per engine.
    #[arg(long, default_value_t = 20_000)]
    decisions: usize,
    /// Tenants the decisions are spread over.
    #[arg(long, default_value_t = 100)]
    tenants: usize,
}

#[derive(Debug)]
struct Quiet;

impl TransitionSink for Quiet {
    fn changed(&self, to: Engine, why: &str) {
        eprintln!("engine changed to {to:?}: {why}");
    }
}

fn report(name: &str, h: &hdrhistogram::Histogram<u64>) {
    println!(
        "{name:<22} n={:<7} p50 {:>7.1} µs   p99 {:>7.1} µs   p99.9 {:>7.1} µs   max {:>8.1} µs",
        h.len(),
        h.value_at_quantile(0.5) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0,
        h.value_at_quantile(0.999) as f64 / 1000.0,
        h.max() as f64 / 1000.0
    );
}

pub(crate) async fn run(a: RateLimitArgs) -> anyhow::Result<()> {
    let tenants: Vec<String> = (0..a.tenants).map(|i| format!("tenant-{i}")).collect();
    println!(
        "bench ratelimit: one caller, {} tenants, Redis at {}",
        a.tenants, a.redis_url
    );
    // Every decision a round trip (the decision's own latency), then with leases (the
    // default: a key far below its limit shares round trips).
    for (name, max_lease) in [
        ("redis (via breaker)", 1),
        ("redis, leases", vigil_gateway::limiter::MAX_LEASE),
    ] {
        let (h, trips) = redis_decisions(&a, &tenants, max_lease).await?;
        report(name, &h);
        println!(
            "{:<22} {trips} round trips for {} decisions",
            "",
            a.decisions + tenants.len()
        );
    }
    let limit = Limit::per_minute(100_000_000);
    let memory = MemoryLimiter::new(100_000);
    let mut m = hdrhistogram::Histogram::<u64>::new(3)?;
    for i in 0..a.decisions {
        let started = Instant::now();
        memory.check_now(&tenants[i % tenants.len()], &limit);
        m.record(started.elapsed().as_nanos().max(1) as u64)?;
    }
    report("memory", &m);
    Ok(())
}

/// `a.decisions` decisions through the breaker, one at a time over `tenants`: their latency
/// and the round trips Redis saw (the warm-up's included).
async fn redis_decisions(
    a: &RateLimitArgs,
    tenants: &[String],
    max_lease: u32,
) -> anyhow::Result<(hdrhistogram::Histogram<u64>, u64)> {
    let prefix = format!("vigil-bench:{}:", uuid::Uuid::new_v4().simple());
    let redis = Arc::new(
        RedisLimiter::connect(&a.redis_url, &prefix, Duration::from_secs(1))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .with_max_lease(max_lease),
    );
    let breaker = Breaker::new(
        redis.clone(),
        FailMode::OpenLocal,
        1,
        Duration::from_millis(25),
        3,
        Duration::from_millis(500),
        100_000,
        Arc::new(Quiet),
    );
    let limit = Limit::per_minute(100_000_000);
    // Warm up the connection and the script cache.
    for t in tenants {
        breaker.check(t, &limit).await;
    }
    let mut h = hdrhistogram::Histogram::<u64>::new(3)?;
    for i in 0..a.decisions {
        let started = Instant::now();
        let d = breaker.check(&tenants[i % tenants.len()], &limit).await;
        h.record(started.elapsed().as_nanos() as u64)?;
        anyhow::ensure!(
            d.engine == Engine::Shared && d.decision.allowed,
            "decision {i} was not Redis's: {d:?}"
        );
    }
    Ok((h, redis.round_trips()))
}
