//! `vigil verify`: one line per tenant, a progress bar on a terminal, exit 0/1/2. Tenants are
//! verified in parallel, one task per core; lines come out in tenant order.

use anyhow::Context;
use std::process::ExitCode;
use std::sync::Arc;
use vigil_audit::verification::{resolve_keys, verify_tenant, TenantReport, TrustedKeys};
use vigil_core::checkpoint::NoteVerifier;
use vigil_core::ids::TenantId;
use vigil_store::Store;

/// Parses `--trusted-key` values (none: trust the keys the store records).
pub(crate) fn trusted(keys: &[String]) -> anyhow::Result<TrustedKeys> {
    Ok(if keys.is_empty() {
        TrustedKeys::FromStore
    } else {
        TrustedKeys::Only(parse_keys(keys)?)
    })
}

/// Parses verifier keys (name+id+base64).
pub(crate) fn parse_keys(keys: &[String]) -> anyhow::Result<Vec<NoteVerifier>> {
    keys.iter()
        .map(|k| NoteVerifier::parse(k).with_context(|| format!("--trusted-key {k}")))
        .collect()
}

pub(crate) async fn run(
    database_url: &str,
    tenant: Option<&str>,
    trusted_keys: &[String],
) -> anyhow::Result<ExitCode> {
    let trusted = trusted(trusted_keys)?;
    let store = vigil_store::open_existing(database_url)
        .await
        .context("opening the store")?;
    let all = store.tenants().await?;
    let tenants = match tenant {
        // A typo must never read as "intact, 0 records".
        Some(t) if !all.iter().any(|x| x.as_str() == t) => {
            anyhow::bail!("the store has no tenant {t:?} (it has {})", all.len())
        }
        Some(t) => all.into_iter().filter(|x| x.as_str() == t).collect(),
        None => all,
    };
    let intact = verify_tenants(&store, tenants, trusted, true).await?.intact;
    Ok(if intact {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// What verifying a set of tenants found.
#[derive(Debug)]
pub(crate) struct Verified {
    /// Every tenant intact.
    pub(crate) intact: bool,
}

/// Verifies `tenants` (every tenant when empty is what the caller passed) in parallel;
/// `print` writes one line per tenant to stdout.
pub(crate) async fn verify_tenants(
    store: &Arc<dyn Store>,
    tenants: Vec<TenantId>,
    trusted: TrustedKeys,
    print: bool,
) -> anyhow::Result<Verified> {
    let keys = Arc::new(resolve_keys(store, trusted).await?);
    let mut total = 0u64;
    for t in &tenants {
        total += store.head(t).await.map(|h| h.seq as u64).unwrap_or(0);
    }
    let bar = crate::progress::bar(
        Some(total),
        "{spinner} [{bar:40}] {pos}/{len} records ({per_sec}, {eta})",
    );
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let limit = Arc::new(tokio::sync::Semaphore::new(workers * 2));
    let mut tasks = Vec::with_capacity(tenants.len());
    for t in tenants {
        let (store, keys, bar, limit) = (store.clone(), keys.clone(), bar.clone(), limit.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = limit.acquire().await.expect("semaphore open");
            verify_tenant(&store, &t, &keys, &|n| bar.inc(n)).await
        }));
    }
    let mut reports = Vec::with_capacity(tasks.len());
    for task in tasks {
        let report = task.await.context("a verification task failed")??;
        if print {
            bar.suspend(|| println!("{report}"));
        }
        reports.push(report);
    }
    bar.finish_and_clear();
    if print && reports.is_empty() {
        println!("no tenants in this store");
    }
    Ok(Verified {
        intact: reports.iter().all(|r: &TenantReport| r.verdict.is_intact()),
    })
}
