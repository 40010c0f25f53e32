//! `vigil retention run`: purge the payload values of tenants' records older than their
//! retention period, with a signed manifest in each chain, then give the space back to the
//! file system; and `vigil erase`: erase one data subject (docs/governance.md).

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
    /// Only this tenant (else every tenant with records).
    #[arg(long)]
    tenant: Option<String>,
    /// Keep this many days (1 to 36500) for every tenant named, whatever its own period.
    #[arg(long, conflicts_with = "before")]
    days: Option<i64>,
    /// The period of tenants without one of their own (a tenant's own, set through
    /// PUT /v1/retention-policy, comes first); 0 keeps their records.
    #[arg(long, env = "AUDIT_RETENTION_DAYS", default_value_t = 30)]
    default_days: i64,
    /// Purge what was received before this instant instead (RFC 3339).
    #[arg(long)]
    before: Option<String>,
    /// Why, as the manifest will say.
    #[arg(long)]
    reason: Option<String>,
    /// Say what would be purged; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Rewrite the database compactly afterwards (SQLite VACUUM, Postgres VACUUM FULL): the
    /// file shrinks by all the purge freed, but writers wait for the whole rewrite.
    #[arg(long)]
    vacuum: bool,
}

fn days_arg(flag: &str, d: i64) -> anyhow::Result<std::time::Duration> {
    let max = i64::from(vigil_audit::retention::MAX_DAYS);
    anyhow::ensure!(
        (1..=max).contains(&d),
        "{flag} must be 1 to {max} days (got {d})"
    );
    Ok(std::time::Duration::from_secs(d as u64 * 86_400))
}

pub(crate) async fn run(a: RetentionArgs) -> anyhow::Result<ExitCode> {
    let only = a
        .tenant
        .as_deref()
        .map(TenantId::parse)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--tenant: {e}"))?;
    let before = a
        .before
        .as_deref()
        .map(Timestamp::parse)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--before: {e}"))?;
    let forced = a.days.map(|d| days_arg("--days", d)).transpose()?;
    let fleet = match a.default_days {
        0 => None,
        d => Some(days_arg("--default-days (AUDIT_RETENTION_DAYS)", d)?),
    };
    let mut s = vigil_audit::AuditSettings::embedded(a.data_dir.clone());
    s.database_url = a.database_url.clone();
    let w = vigil_audit::app::Writer::open(&s)
        .await
        .context("opening the audit store")?;
    let tenants = match only {
        Some(t) => vec![t],
        None => w.store.tenants().await?,
    };
    let now = Timestamp::now();
    let mut purged = 0;
    for tenant in tenants {
        let (cutoff, reason) = match (before, forced) {
            (Some(b), _) => (b, format!("retention: before {}", b.to_rfc3339())),
            (None, Some(keep)) => vigil_audit::retention::cutoff_for(keep, now)
                .context("--days reaches before 1970")?,
            (None, None) => {
                match vigil_audit::retention::period_for(&w.store, &tenant, fleet).await? {
                    Some(keep) => vigil_audit::retention::cutoff_for(keep, now)
                        .context("the period reaches before 1970")?,
                    None => {
                        println!("{tenant}: kept (no retention period)");
                        continue;
                    }
                }
            }
        };
        let reason = a.reason.clone().unwrap_or(reason);
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
        purged += r.records;
        let cutoff = cutoff.to_rfc3339();
        if r.to_seq < r.from_seq {
            println!("{tenant}: nothing to purge before {cutoff}");
        } else if r.dry_run {
            println!(
                "{tenant}: would purge seq {}..{} ({} records) received before {cutoff}",
                r.from_seq, r.to_seq, r.records
            );
        } else {
            println!(
                "{tenant}: purged seq {}..{} ({} records, {} bytes of values) received before {cutoff}; manifest signed and appended",
                r.from_seq, r.to_seq, r.records, r.bytes
            );
        }
    }
    if (purged > 0 || a.vacuum) && !a.dry_run {
        let space = w.store.reclaim_space(a.vacuum).await?;
        println!(
            "database: {} -> {} bytes ({} bytes returned to the file system)",
            space.before,
            space.after,
            space.freed()
        );
    }
    w.sequencer.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub(crate) struct EraseArgs {
    /// The audit store: sqlite://PATH or postgres://…
    #[arg(long, env = "VIGIL_DATABASE_URL")]
    database_url: vigil_core::DatabaseUrl,
    /// The service's data directory (the checkpoint key signs the receipt; the subject
    /// references are keyed by its secret).
    #[arg(long, env = "VIGIL_DATA_DIR", default_value = ".vigil")]
    data_dir: PathBuf,
    /// The tenant.
    #[arg(long)]
    tenant: String,
    /// The data subject's id, as events carry it at the policy's subject path.
    #[arg(long)]
    subject: String,
}

pub(crate) async fn erase(a: EraseArgs) -> anyhow::Result<ExitCode> {
    let tenant = TenantId::parse(&a.tenant).map_err(|e| anyhow::anyhow!("--tenant: {e}"))?;
    let mut s = vigil_audit::AuditSettings::embedded(a.data_dir.clone());
    s.database_url = a.database_url.clone();
    let w = vigil_audit::app::Writer::open(&s)
        .await
        .context("opening the audit store")?;
    let done = vigil_audit::erasure::erase(
        &w.redactor,
        &w.store,
        &w.checkpointer,
        &w.sequencer,
        &tenant,
        &a.subject,
    )
    .await;
    w.sequencer.shutdown().await;
    match done {
        Ok(d) => {
            println!(
                "{tenant}: subject {} {} ({} records); receipt:\n{}",
                d.subject_ref,
                if d.already {
                    "was already erased"
                } else {
                    "erased"
                },
                d.statement.seqs.len(),
                d.receipt
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(vigil_audit::erasure::ErasureError::Unknown) => {
            eprintln!("{tenant}: nothing is stored about this subject");
            Ok(ExitCode::from(2))
        }
        Err(e) => Err(e.into()),
    }
}
