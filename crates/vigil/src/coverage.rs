//! `vigil coverage`: the audit-coverage gate over a Rust codebase (vigil-coverage).

use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

/// `vigil coverage PATH`.
#[derive(Args, Debug)]
pub(crate) struct CoverageArgs {
    /// The codebase: a crate or a workspace.
    path: PathBuf,
    /// Settings (emitters, layers, depth, exclusions); default PATH/vigil-coverage.toml when
    /// it exists.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The least share of mutating routes that must be audited (default: the config's, else
    /// 0.9).
    #[arg(long)]
    min: Option<f64>,
    /// Also write the report as JSON here.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Also write a Prometheus textfile here (audit_coverage_ratio{service}).
    #[arg(long, value_name = "FILE")]
    prom: Option<PathBuf>,
}

pub(crate) fn run(a: CoverageArgs) -> anyhow::Result<ExitCode> {
    let file = a
        .config
        .clone()
        .or_else(|| Some(a.path.join("vigil-coverage.toml")).filter(|p| p.exists()));
    let mut config = match &file {
        Some(f) => vigil_coverage::Config::from_toml(
            &std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?,
        )
        .with_context(|| format!("{}", f.display()))?,
        None => vigil_coverage::Config::default(),
    };
    if let Some(min) = a.min {
        anyhow::ensure!((0.0..=1.0).contains(&min), "--min must be between 0 and 1");
        config.min = min;
    }
    let report = vigil_coverage::scan(&a.path, &config)?;
    print!("{}", report.table());
    if let Some(p) = &a.json {
        std::fs::write(p, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(p) = &a.prom {
        std::fs::write(p, report.prometheus())
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
