//! `vigil bench`: the benchmarks behind BENCHMARKS.md.

use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub(crate) enum BenchCommand {}

pub(crate) async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {}
}
