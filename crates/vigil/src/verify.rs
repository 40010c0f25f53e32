//! `vigil verify`: one line per tenant, a progress bar on a terminal, exit 0/1/2.

use anyhow::Context;
use std::process::ExitCode;
use vigil_audit::verification::{resolve_keys, verify_tenant, TrustedKeys};
use vigil_core::checkpoint::NoteVerifier;

pub(crate) async fn run(
    database_url: &str,
    tenant: Option<&str>,
    trusted: &[String],
) -> anyhow::Result<ExitCode> {
    let trusted = if trusted.is_empty() {
        TrustedKeys::FromStore
    } else {
        TrustedKeys::Only(
            trusted
                .iter()
                .map(|k| NoteVerifier::parse(k).with_context(|| format!("--trusted-key {k}")))
                .collect::<anyhow::Result<_>>()?,
        )
    };
    let store = vigil_store::open_existing(database_url)
        .await
        .context("opening the store")?;
    let keys = resolve_keys(&store, trusted).await?;
    let all = store.tenants().await?;
    let tenants = match tenant {
        // A typo must never read as "intact, 0 records".
        Some(t) if !all.iter().any(|x| x.as_str() == t) => {
            anyhow::bail!("the store has no tenant {t:?} (it has {})", all.len())
        }
        Some(t) => all.into_iter().filter(|x| x.as_str() == t).collect(),
        None => all,
    };
    let mut total = 0u64;
    for t in &tenants {
        total += store.head(t).await.map(|h| h.seq as u64).unwrap_or(0);
    }
    let bar = crate::progress::bar(
        Some(total),
        "{spinner} {msg} [{bar:40}] {pos}/{len} records ({per_sec}, {eta})",
    );
    let mut tampered = false;
    for t in &tenants {
        bar.set_message(t.to_string());
        let report = verify_tenant(&store, t, &keys, &|n| bar.inc(n)).await?;
        tampered |= !report.verdict.is_intact();
        bar.suspend(|| println!("{report}"));
    }
    bar.finish_and_clear();
    if tenants.is_empty() {
        println!("no tenants in this store");
    }
    Ok(if tampered {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
