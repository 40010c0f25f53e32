//! Performance regression checks.
//!
//! `vigil bench regress` measures the tracked figures in rounds, each beside a reference
//! measured in the same round on the same machine, so the figures compare across runs and
//! moments of a noisy machine: chained ingest as a ratio of a raw insert of the same rows, its
//! batch latency p50/p95/p99 in units of the raw insert's median batch, verification as a ratio
//! of SHA-256 over the same bytes, filtered-query latency p50/p95/p99 in units of the same
//! service's `/healthz` median, and the audit service's peak memory (its own process, after
//! serving the round's queries and an HTTP ingest of the round's events). It writes them as
//! JSON and,
//! given a baseline (a file, or a directory holding one per machine kind, build and profile),
//! compares: a figure is flagged when it is worse than the baseline's median by more than the
//! threshold (10 %) and by more than the spread of the rounds (of either run).
//!
//! `vigil bench compare BASELINE CURRENT` compares two such files.

use crate::bench::{
    chained_run, client_inputs, filters, prepare_raw, raw_run, time_filter, verify_rates,
};
use anyhow::Context;
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use vigil_core::ids::TenantId;

/// How much a run measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Profile {
    /// About a minute in a debug build: what CI runs.
    Short,
    /// The sizes of the documented benchmarks' rounds: for a release build.
    Full,
}

impl Profile {
    fn name(self) -> &'static str {
        match self {
            Profile::Short => "short",
            Profile::Full => "full",
        }
    }
}

#[derive(Args, Debug)]
pub(crate) struct RegressArgs {
    /// short (CI) or full.
    #[arg(long, value_enum, default_value = "short")]
    profile: Profile,
    /// Rounds (their spread is the noise a regression must exceed); default 5.
    #[arg(long)]
    rounds: Option<usize>,
    /// Write the results (JSON) here.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Compare with this baseline: a results file, or a directory holding
    /// `<machine kind>.<build>.<profile>.json`. Exit 1 on a regression, 3 when the directory
    /// has no baseline for this machine.
    #[arg(long, value_name = "FILE|DIR")]
    baseline: Option<PathBuf>,
    /// A figure worse than its baseline by more than this fraction (and than the spread) is a
    /// regression.
    #[arg(long, default_value_t = 0.10)]
    threshold: f64,
}

#[derive(Args, Debug)]
pub(crate) struct CompareArgs {
    /// The baseline results (JSON).
    baseline: PathBuf,
    /// The results to check against it.
    current: PathBuf,
    /// A figure worse by more than this fraction (and than the spread) is a regression.
    #[arg(long, default_value_t = 0.10)]
    threshold: f64,
}

/// Which way is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Better {
    Higher,
    Lower,
}

/// One figure, measured once per round.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Figure {
    pub(crate) name: String,
    pub(crate) unit: String,
    pub(crate) better: Better,
    /// Compared with the baseline (false: recorded for the reader only, e.g. an absolute rate
    /// that depends on the machine's speed at the moment).
    pub(crate) tracked: bool,
    pub(crate) rounds: Vec<f64>,
}

/// The machine a run measured.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Machine {
    /// `<arch>-<cpus>cpu-<memory>g`: which baseline applies.
    pub(crate) kind: String,
    pub(crate) cpu_model: String,
    pub(crate) cpus: usize,
    pub(crate) memory_gib: u64,
}

/// What `bench regress` writes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Results {
    pub(crate) schema: u32,
    pub(crate) profile: Profile,
    /// `debug` or `release`.
    pub(crate) build: String,
    pub(crate) machine: Machine,
    pub(crate) at: String,
    pub(crate) figures: Vec<Figure>,
}

impl Results {
    /// The baseline file names for this run in a directory of baselines, the one for this CPU
    /// model first (`<kind>.<cpu>.<build>.<profile>.json`), then the one for any CPU of the
    /// kind: hosts of one kind name come in CPU generations whose in-run references (SHA-256,
    /// `/healthz`) move differently from the figures measured against them.
    fn baseline_names(&self) -> [String; 2] {
        let (kind, build, profile) = (&self.machine.kind, &self.build, self.profile.name());
        [
            format!(
                "{kind}.{}.{build}.{profile}.json",
                cpu_slug(&self.machine.cpu_model)
            ),
            format!("{kind}.{build}.{profile}.json"),
        ]
    }
}

fn median(v: &[f64]) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return f64::NAN;
    }
    s.sort_by(f64::total_cmp);
    let m = s.len() / 2;
    if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    }
}

/// The rounds' range relative to their median: the noise of one run. From five rounds on,
/// the lowest and the highest are left out (one stall — a WAL checkpoint, another process —
/// would otherwise make every change look like noise).
fn spread(v: &[f64]) -> f64 {
    let m = median(v);
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    s.sort_by(f64::total_cmp);
    if s.len() >= 5 {
        s = s[1..s.len() - 1].to_vec();
    }
    match (s.first(), s.last()) {
        (Some(lo), Some(hi)) if m.is_finite() && m != 0.0 => (hi - lo) / m.abs(),
        _ => 0.0,
    }
}

/// One tracked figure against its baseline.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Verdict {
    pub(crate) name: String,
    pub(crate) unit: String,
    pub(crate) baseline: f64,
    pub(crate) current: f64,
    /// How much worse (+) or better (−) than the baseline, as a fraction of it.
    pub(crate) worse_by: f64,
    /// The larger of the two runs' spreads.
    pub(crate) spread: f64,
    pub(crate) regression: bool,
    /// Tracked in the baseline, absent now.
    pub(crate) missing: bool,
}

/// Every tracked figure of `baseline` against `current`.
pub(crate) fn compare(baseline: &Results, current: &Results, threshold: f64) -> Vec<Verdict> {
    baseline
        .figures
        .iter()
        .filter(|f| f.tracked)
        .map(|b| {
            let Some(c) = current.figures.iter().find(|c| c.name == b.name) else {
                return Verdict {
                    name: b.name.clone(),
                    unit: b.unit.clone(),
                    baseline: median(&b.rounds),
                    current: f64::NAN,
                    worse_by: f64::NAN,
                    spread: spread(&b.rounds),
                    regression: true,
                    missing: true,
                };
            };
            let (bm, cm) = (median(&b.rounds), median(&c.rounds));
            let worse_by = match b.better {
                Better::Higher => (bm - cm) / bm.abs(),
                Better::Lower => (cm - bm) / bm.abs(),
            };
            let noise = spread(&b.rounds).max(spread(&c.rounds));
            Verdict {
                name: b.name.clone(),
                unit: b.unit.clone(),
                baseline: bm,
                current: cm,
                worse_by,
                spread: noise,
                // A figure that cannot be read now (NaN) is a regression too.
                regression: !worse_by.is_finite() || (worse_by > threshold && worse_by > noise),
                missing: false,
            }
        })
        .collect()
}

/// The verdicts as a table.
fn table(verdicts: &[Verdict], threshold: f64) -> String {
    let mut s = format!(
        "{:<28} {:>12} {:>12} {:>9} {:>8}  verdict (worse by > {:.0} % and > spread)\n",
        "figure",
        "baseline",
        "now",
        "worse by",
        "spread",
        threshold * 100.0
    );
    for v in verdicts {
        s.push_str(&format!(
            "{:<28} {:>12.4} {:>12.4} {:>8.1}% {:>7.1}%  {}\n",
            v.name,
            v.baseline,
            v.current,
            v.worse_by * 100.0,
            v.spread * 100.0,
            if v.missing {
                "MISSING"
            } else if v.regression {
                "REGRESSION"
            } else {
                "ok"
            }
        ));
    }
    s
}

fn read(path: &Path) -> anyhow::Result<Results> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not bench results", path.display()))
}

/// Prints the comparison; whether anything regressed.
fn report(baseline: &Results, current: &Results, threshold: f64) -> bool {
    if baseline.machine.cpu_model != current.machine.cpu_model {
        eprintln!(
            "note: this machine's CPU is \"{}\", the baseline's \"{}\"",
            current.machine.cpu_model, baseline.machine.cpu_model
        );
    }
    if baseline.machine.kind != current.machine.kind
        || baseline.build != current.build
        || baseline.profile != current.profile
    {
        eprintln!(
            "note: comparing {} {} {} with a baseline of {} {} {}",
            current.machine.kind,
            current.build,
            current.profile.name(),
            baseline.machine.kind,
            baseline.build,
            baseline.profile.name()
        );
    }
    let verdicts = compare(baseline, current, threshold);
    print!("{}", table(&verdicts, threshold));
    let bad: Vec<&str> = verdicts
        .iter()
        .filter(|v| v.regression)
        .map(|v| v.name.as_str())
        .collect();
    if bad.is_empty() {
        println!("no regression ({} figures tracked)", verdicts.len());
        false
    } else {
        println!("REGRESSION in {}", bad.join(", "));
        true
    }
}

pub(crate) fn run_compare(a: CompareArgs) -> anyhow::Result<std::process::ExitCode> {
    let (b, c) = (read(&a.baseline)?, read(&a.current)?);
    Ok(if report(&b, &c, a.threshold) {
        std::process::ExitCode::from(1)
    } else {
        std::process::ExitCode::SUCCESS
    })
}

/// A CPU model as a file-name part: `Intel(R) Xeon(R) Processor` → `intel-r-xeon-r-processor`.
fn cpu_slug(model: &str) -> String {
    let words: Vec<String> = model
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    if words.is_empty() {
        "unknown-cpu".into()
    } else {
        words.join("-")
    }
}

/// This machine: its kind names the baseline that applies.
fn machine() -> Machine {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let memory_gib = (kib as f64 / 1024.0 / 1024.0).round() as u64;
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_string())
        .unwrap_or_default();
    Machine {
        kind: format!("{}-{cpus}cpu-{memory_gib}g", std::env::consts::ARCH),
        cpu_model,
        cpus,
        memory_gib,
    }
}

/// A process's peak resident memory so far (Linux's VmHWM), in MiB (`self` or a pid).
fn peak_rss_mib(pid: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

/// The audit service as its own process (this binary, `audit serve`), so its memory is its
/// own: stopped with the run.
struct ServiceProcess {
    child: std::process::Child,
    base: String,
}

impl ServiceProcess {
    async fn start(database_url: &str, data_dir: &Path) -> anyhow::Result<ServiceProcess> {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let child = std::process::Command::new(std::env::current_exe()?)
            .args(["audit", "serve", "--trust-headers", "--verify-every", "0"])
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--database-url")
            .arg(database_url)
            .env("VIGIL_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("starting vigil audit serve")?;
        let s = ServiceProcess {
            child,
            base: format!("http://{addr}"),
        };
        let http = reqwest::Client::new();
        for _ in 0..600 {
            if http
                .get(format!("{}/readyz", s.base))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(s);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("vigil audit serve did not get ready")
    }

    /// Its peak resident memory so far, MiB.
    fn peak_rss_mib(&self) -> f64 {
        peak_rss_mib(&self.child.id().to_string())
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `clients` clients posting their events to `base` in batches of `batch` over HTTP.
async fn http_ingest(
    http: &reqwest::Client,
    base: &str,
    inputs: &[Vec<Value>],
    batch: usize,
    tenant_of: impl Fn(usize) -> String,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (c, evs) in inputs.iter().enumerate() {
        let (http, url, tenant, evs) = (
            http.clone(),
            format!("{base}/v1/events"),
            tenant_of(c),
            evs.clone(),
        );
        tasks.push(tokio::spawn(async move {
            for chunk in evs.chunks(batch) {
                let r = http
                    .post(&url)
                    .header("X-Tenant-ID", &tenant)
                    .header("X-Roles", "admin")
                    .json(&chunk)
                    .send()
                    .await?;
                anyhow::ensure!(r.status() == 200, "ingest over HTTP: {}", r.status());
            }
            Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(started.elapsed())
}

/// The sizes of one profile.
struct Sizes {
    clients: usize,
    batch: usize,
    batches: usize,
    /// Events the query store holds, over `query_tenants`.
    query_events: u64,
    query_tenants: u64,
    queries: usize,
}

impl Sizes {
    fn of(p: Profile) -> Sizes {
        match p {
            Profile::Short => Sizes {
                clients: 4,
                batch: 50,
                batches: 20,
                query_events: 20_000,
                query_tenants: 10,
                queries: 100,
            },
            Profile::Full => Sizes {
                clients: 16,
                batch: 100,
                batches: 40,
                query_events: 200_000,
                query_tenants: 20,
                queries: 500,
            },
        }
    }
}

/// Collects the figures of the rounds.
#[derive(Default)]
struct Collector(Vec<Figure>);

impl Collector {
    fn push(&mut self, name: &str, unit: &str, better: Better, tracked: bool, value: f64) {
        match self.0.iter_mut().find(|f| f.name == name) {
            Some(f) => f.rounds.push(value),
            None => self.0.push(Figure {
                name: name.into(),
                unit: unit.into(),
                better,
                tracked,
                rounds: vec![value],
            }),
        }
    }
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

pub(crate) async fn run_regress(a: RegressArgs) -> anyhow::Result<std::process::ExitCode> {
    let sizes = Sizes::of(a.profile);
    let rounds = a.rounds.unwrap_or(5);
    anyhow::ensure!(
        rounds >= 2,
        "at least two rounds: their spread is the noise"
    );
    let build = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let machine = machine();
    eprintln!(
        "bench regress: profile {}, {build} build, {rounds} rounds on {} ({})",
        a.profile.name(),
        machine.kind,
        machine.cpu_model
    );
    let work = tempfile::tempdir()?;
    let ingest_url = format!("sqlite://{}/ingest.db", work.path().display());
    let store = vigil_store::open(&ingest_url).await?;
    let dir = tempfile::tempdir()?;
    let writer = {
        let mut s = vigil_audit::AuditSettings::embedded(dir.path().to_path_buf());
        s.database_url = ingest_url.clone().into();
        vigil_audit::app::Writer::open(&s).await?
    };
    // The query store, filled once (untimed), served by the audit service.
    let query_url = format!("sqlite://{}/query.db", work.path().display());
    {
        let q = vigil_store::open(&query_url).await?;
        crate::bench::fill(&q, sizes.query_events, sizes.query_tenants).await?;
    }
    let http = reqwest::Client::new();
    let shapes: Vec<_> = filters()
        .into_iter()
        .filter(|(n, _)| ["action prefix", "time window", "actor+outcome"].contains(n))
        .collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let mut c = Collector::default();
    let per_client = sizes.batch * sizes.batches;
    let total = (sizes.clients * per_client) as f64;
    for round in 0..rounds {
        // A new service process each round: its peak memory is this round's, a sample of its
        // own (a process's high-water mark only grows, so one process would give one sample).
        let service = ServiceProcess::start(&query_url, &work.path().join("qdata")).await?;
        let base = service.base.clone();
        let started = Instant::now();
        let inputs = client_inputs(&mut rng, sizes.clients, per_client, round);
        // Ingest: chained beside a raw insert of the same rows.
        let prepared = prepare_raw(&inputs, |cl| format!("raw-{round}-{cl}"))?;
        let raw = raw_run(&store, prepared, sizes.batch).await?;
        let chained = chained_run(&writer.sequencer, &inputs, sizes.batch, |cl| {
            format!("chained-{round}-{cl}")
        })
        .await?;
        let (raw_rate, chained_rate) = (
            total / raw.took.as_secs_f64(),
            total / chained.took.as_secs_f64(),
        );
        let raw_p50 = ms(&raw.latency, 0.5).max(0.001);
        c.push(
            "ingest.ratio_to_raw",
            "chained/raw",
            Better::Higher,
            true,
            chained_rate / raw_rate,
        );
        for (q, name) in [(0.5, "p50"), (0.95, "p95"), (0.99, "p99")] {
            c.push(
                &format!("ingest.batch_{name}"),
                "× raw batch p50",
                Better::Lower,
                true,
                ms(&chained.latency, q) / raw_p50,
            );
        }
        c.push(
            "ingest.chained_events_per_s",
            "events/s",
            Better::Higher,
            false,
            chained_rate,
        );
        c.push(
            "ingest.batch_p99_ms",
            "ms",
            Better::Lower,
            false,
            ms(&chained.latency, 0.99),
        );
        // Verification of this round's chained tenants.
        let tenants: Vec<TenantId> = (0..sizes.clients)
            .map(|cl| TenantId::parse(&format!("chained-{round}-{cl}")))
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let v = verify_rates(&store, &tenants).await?;
        let rate = |d: Duration| v.records as f64 / d.as_secs_f64();
        c.push(
            "verify.core_ratio",
            "of SHA-256",
            Better::Higher,
            true,
            rate(v.core) / rate(v.sha),
        );
        c.push(
            "verify.e2e_ratio",
            "of SHA-256",
            Better::Higher,
            true,
            rate(v.e2e) / rate(v.sha),
        );
        // Queries, in units of the same service's /healthz median.
        let mut health = Histogram::<u64>::new(3)?;
        for _ in 0..200 {
            let s = Instant::now();
            http.get(format!("{base}/healthz")).send().await?;
            health.record(s.elapsed().as_micros() as u64)?;
        }
        let unit = ms(&health, 0.5).max(0.001);
        let mut all = Histogram::<u64>::new(3)?;
        for (_, f) in &shapes {
            let (h, _) = time_filter(
                &http,
                &base,
                sizes.query_tenants,
                *f,
                sizes.queries,
                &mut rng,
            )
            .await?;
            all.add(&h)?;
        }
        for (q, name) in [(0.5, "p50"), (0.95, "p95"), (0.99, "p99")] {
            c.push(
                &format!("query.filtered_{name}"),
                "× /healthz p50",
                Better::Lower,
                true,
                ms(&all, q) / unit,
            );
        }
        c.push(
            "query.filtered_p99_ms",
            "ms",
            Better::Lower,
            false,
            ms(&all, 0.99),
        );
        // The service's memory: the same events again, over HTTP, into the query store.
        let took = http_ingest(&http, &base, &inputs, sizes.batch, |cl| {
            format!("http-{round}-{cl}")
        })
        .await?;
        c.push(
            "ingest.http_events_per_s",
            "events/s",
            Better::Higher,
            false,
            total / took.as_secs_f64(),
        );
        c.push(
            "memory.service_peak_rss_mib",
            "MiB",
            Better::Lower,
            true,
            service.peak_rss_mib(),
        );
        c.push(
            "memory.harness_peak_rss_mib",
            "MiB",
            Better::Lower,
            false,
            peak_rss_mib("self"),
        );
        eprintln!(
            "round {round}: ingest {:.2} of raw, verify {:.2} of SHA-256, query p99 {:.2} ms, service peak RSS {:.0} MiB ({:.1} s)",
            chained_rate / raw_rate,
            rate(v.core) / rate(v.sha),
            ms(&all, 0.99),
            service.peak_rss_mib(),
            started.elapsed().as_secs_f64()
        );
    }
    writer.sequencer.shutdown().await;
    let results = Results {
        schema: 1,
        profile: a.profile,
        build: build.into(),
        machine,
        at: chrono::Utc::now().to_rfc3339(),
        figures: c.0,
    };
    for f in &results.figures {
        println!(
            "{:<28} median {:>12.4} {:<16} spread {:>5.1}%{}",
            f.name,
            median(&f.rounds),
            f.unit,
            spread(&f.rounds) * 100.0,
            if f.tracked { "" } else { "  (not tracked)" }
        );
    }
    if let Some(out) = &a.out {
        if let Some(d) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(d)?;
        }
        std::fs::write(out, serde_json::to_vec_pretty(&results)?)
            .with_context(|| format!("writing {}", out.display()))?;
        eprintln!("results written to {}", out.display());
    }
    let Some(baseline) = &a.baseline else {
        return Ok(std::process::ExitCode::SUCCESS);
    };
    let names = results.baseline_names();
    let file = if baseline.is_dir() {
        let found = names.iter().map(|n| baseline.join(n)).find(|f| f.exists());
        let Some(file) = found else {
            eprintln!(
                "no baseline for this machine kind, CPU model, build and profile: neither {} nor \
                 {} is in {}. Record one with `vigil bench regress --profile {} --rounds 7 --out \
                 {}` on a quiet machine and check it in.",
                names[0],
                names[1],
                baseline.display(),
                results.profile.name(),
                baseline.join(&names[0]).display()
            );
            return Ok(std::process::ExitCode::from(3));
        };
        file
    } else {
        baseline.clone()
    };
    if !file.exists() {
        eprintln!("no baseline: {} does not exist", file.display());
        return Ok(std::process::ExitCode::from(3));
    }
    let base = read(&file)?;
    println!("\ncompared with {}:", file.display());
    Ok(if report(&base, &results, a.threshold) {
        std::process::ExitCode::from(1)
    } else {
        std::process::ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn results(figures: Vec<(&str, Better, bool, Vec<f64>)>) -> Results {
        Results {
            schema: 1,
            profile: Profile::Short,
            build: "debug".into(),
            machine: machine(),
            at: String::new(),
            figures: figures
                .into_iter()
                .map(|(name, better, tracked, rounds)| Figure {
                    name: name.into(),
                    unit: "x".into(),
                    better,
                    tracked,
                    rounds,
                })
                .collect(),
        }
    }

    #[test]
    fn a_figure_worse_by_more_than_the_threshold_and_the_spread_is_a_regression() {
        let base = results(vec![
            ("ratio", Better::Higher, true, vec![0.80, 0.81, 0.79]),
            ("p99", Better::Lower, true, vec![10.0, 10.2, 9.9]),
            ("noisy", Better::Lower, true, vec![10.0, 14.0, 8.0]),
            ("info", Better::Higher, false, vec![100.0, 100.0]),
            ("gone", Better::Higher, true, vec![1.0, 1.0]),
        ]);
        let now = results(vec![
            // 15 % lower throughput ratio: flagged.
            ("ratio", Better::Higher, true, vec![0.68, 0.69, 0.67]),
            // 5 % slower: inside the threshold.
            ("p99", Better::Lower, true, vec![10.5, 10.4, 10.6]),
            // 30 % slower, but the rounds spread over 75 %: noise.
            ("noisy", Better::Lower, true, vec![13.0, 16.0, 9.0]),
            // Untracked: never compared, however much worse.
            ("info", Better::Higher, false, vec![1.0, 1.0]),
        ]);
        let v = compare(&base, &now, 0.10);
        let by = |n: &str| v.iter().find(|x| x.name == n).unwrap();
        assert!(by("ratio").regression);
        assert!((by("ratio").worse_by - 0.15).abs() < 0.01);
        assert!(!by("p99").regression);
        assert!(!by("noisy").regression, "{:?}", by("noisy"));
        assert!(v.iter().all(|x| x.name != "info"));
        assert!(by("gone").regression && by("gone").missing);
        // Better than the baseline is never a regression.
        let better = results(vec![
            ("ratio", Better::Higher, true, vec![0.95, 0.96, 0.94]),
            ("p99", Better::Lower, true, vec![5.0, 5.1, 4.9]),
            ("noisy", Better::Lower, true, vec![5.0, 5.0, 5.0]),
            ("gone", Better::Higher, true, vec![2.0, 2.0]),
        ]);
        assert!(compare(&base, &better, 0.10).iter().all(|x| !x.regression));
    }

    #[test]
    fn baselines_are_looked_up_for_this_cpu_model_first() {
        assert_eq!(
            cpu_slug("Intel(R) Xeon(R) Processor"),
            "intel-r-xeon-r-processor"
        );
        assert_eq!(cpu_slug("AMD EPYC"), "amd-epyc");
        assert_eq!(cpu_slug(" "), "unknown-cpu");
        let mut r = results(vec![]);
        r.machine.kind = "x86_64-2cpu-24g".into();
        r.machine.cpu_model = "AMD EPYC".into();
        assert_eq!(
            r.baseline_names(),
            [
                "x86_64-2cpu-24g.amd-epyc.debug.short.json".to_string(),
                "x86_64-2cpu-24g.debug.short.json".to_string()
            ]
        );
    }

    #[test]
    fn medians_and_spreads() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
        assert!((spread(&[9.0, 10.0, 11.0]) - 0.2).abs() < 1e-9);
        assert_eq!(spread(&[5.0]), 0.0);
        // One stall among five rounds does not widen the spread.
        assert!((spread(&[9.0, 10.0, 11.0, 10.0, 40.0]) - 0.1).abs() < 1e-9);
    }
}
