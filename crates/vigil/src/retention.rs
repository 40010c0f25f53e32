//! `vigil retention run`: purge the payload values of a tenant's records older than the
//! retention period, with a signed manifest in its chain (docs/governance.md).

use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use vigil_core::ids::TenantId;
use vigil_core::time::Timestamp;

#[derive(Args, Debug)]
pub(crate) struct RetentionArgs {
    /// The audit store: sqlite://PATH or postgres://…
    #[arg(long, env = "VIGIL_DATABASE_URL")]
    database_url: vigil_core::DatabaseUrl,
    /// Holds the checkpoint key that signs the manifest (the service's data directory).
    #[arg(long, env = "VIGIL_DATA_DIR", default_value = ".vigil")]
    data_dir: PathBuf,
    /// The tenant.
    #[arg(long)]
    tenant: String,
    /// Keep this many days (at least 1): records received earlier lose their values.
    #[arg(
        long,
        env = "AUDIT_RETENTION_DAYS",
        default_value_t = 30,
        conflicts_with = "before"
    )]
    days: i64,
    /// Purge what was received before this instant instead (RFC 3339).
    #[arg(long)]
    before: Option<String>,
    /// Why, as the manifest will say.
    #[arg(long)]
    reason: Option<String>,
    /// Say what would be purged; change nothing.
    #[arg(long)]
    dry_run: bool,
}

pub(crate) async fn run(a: RetentionArgs) -> anyhow::Result<ExitCode> {
    let tenant = TenantId::parse(&a.tenant).map_err(|e| anyhow::anyhow!("--tenant: {e}"))?;
    let (cutoff, reason) = match &a.before {
        Some(t) => (
            Timestamp::parse(t).map_err(|e| anyhow::anyhow!("--before: {e}"))?,
            a.reason
                .clone()
                .unwrap_or_else(|| format!("retention: before {t}")),
        ),
        None => {
            anyhow::ensure!(a.days >= 1, "--days must be at least 1 (got {})", a.days);
            let us = Timestamp::now().micros() - a.days * 86_400_000_000;
            (
                Timestamp::from_micros(us).map_err(|e| anyhow::anyhow!("--days: {e}"))?,
                a.reason
                    .clone()
                    .unwrap_or_else(|| format!("retention: {} days", a.days)),
            )
        }
    };
    let mut s = vigil_audit::AuditSettings::embedded(a.data_dir.clone());
    s.database_url = a.database_url.clone();
    let w = vigil_audit::app::Writer::open(&s)
        .await
        .context("opening the audit store")?;
    let r = vigil_audit::retention::purge(
        &w.store,
        &w.checkpointer,
        &w.sequencer,
        &tenant,
        cutoff,
        &reason,
        a.dry_run,
    )
    .await?;
    w.sequencer.shutdown().await;
    if r.to_seq < r.from_seq {
        println!("{tenant}: nothing to purge before {}", cutoff.to_rfc3339());
    } else if r.dry_run {
        println!(
            "{tenant}: would purge seq {}..{} ({} records) received before {}",
            r.from_seq,
            r.to_seq,
            r.records,
            cutoff.to_rfc3339()
        );
    } else {
        println!(
            "{tenant}: purged seq {}..{} ({} records) received before {}; manifest signed and appended",
            r.from_seq,
            r.to_seq,
            r.records,
            cutoff.to_rfc3339()
        );
    }
    Ok(ExitCode::SUCCESS)
}
