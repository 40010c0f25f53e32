//! Retention: purging the payload values of records older than a cutoff, with a signed
//! manifest in the tenant's chain that lets a verifier accept exactly that removal
//! (`vigil_core::retention`). The manifest is appended first and the values removed after,
//! so a crash in between leaves values that are merely still there; a later run removes
//! them (purging is idempotent).

use crate::checkpointer::Checkpointer;
use crate::sequencer::Sequencer;
use std::sync::Arc;
use vigil_core::checkpoint::NoteVerifier;
use vigil_core::hash::Hash32;
use vigil_core::ids::TenantId;
use vigil_core::retention::PurgeManifest;
use vigil_core::time::Timestamp;
use vigil_store::{ActionFilter, Query, Store, StoreError};

/// The action of a purge manifest's record.
pub const PURGE_ACTION: &str = "audit.retention.purged";

/// What a purge did (or, dry, would do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgeReport {
    /// The tenant.
    pub tenant: TenantId,
    /// The range newly purged (empty when `from_seq > to_seq`).
    pub from_seq: i64,
    /// Its last seq.
    pub to_seq: i64,
    /// Records whose values were removed (dry: that would be).
    pub records: u64,
    /// Bytes of values, salts and sealed members removed (0 when dry).
    pub bytes: u64,
    /// Nothing was changed.
    pub dry_run: bool,
}

/// The purge manifests in `tenant`'s chain that open with one of `keys`, by range. A record
/// claiming to be one that does not open is left out: the purge it claims then reads as
/// removed values, which it is.
pub async fn manifests(
    store: &Arc<dyn Store>,
    tenant: &TenantId,
    keys: &[NoteVerifier],
) -> Result<Vec<PurgeManifest>, StoreError> {
    let mut out = Vec::new();
    let mut q = Query {
        action: Some(ActionFilter::Exact(PURGE_ACTION.into())),
        limit: 1000,
        ..Query::default()
    };
    loop {
        let page = store.query(tenant, &q).await?;
        for r in &page {
            let Some(note) = r.payload.get("manifest").and_then(|v| v.as_str()) else {
                continue;
            };
            if let Ok(m) = PurgeManifest::open(note, keys) {
                if &m.tenant == tenant {
                    out.push(m);
                }
            }
        }
        match page.last() {
            Some(last) if page.len() as i64 == q.limit => q.before_seq = Some(last.seq),
            _ => break,
        }
    }
    out.sort_by_key(|m| m.from_seq);
    Ok(out)
}

/// Purges `tenant`'s records received before `cutoff` that no earlier manifest covers.
pub async fn purge(
    store: &Arc<dyn Store>,
    checkpointer: &Checkpointer,
    sequencer: &Sequencer,
    tenant: &TenantId,
    cutoff: Timestamp,
    reason: &str,
    dry_run: bool,
) -> Result<PurgeReport, StoreError> {
    let keys = [checkpointer.verifier()];
    let earlier = manifests(store, tenant, &keys).await?;
    let from_seq = earlier.iter().map(|m| m.to_seq).max().unwrap_or(0) + 1;
    let to_seq = store
        .last_seq_received_before(tenant, cutoff, PURGE_ACTION)
        .await?;
    let mut report = PurgeReport {
        tenant: tenant.clone(),
        from_seq,
        to_seq,
        records: 0,
        bytes: 0,
        dry_run,
    };
    if dry_run {
        report.records = (to_seq - from_seq + 1).max(0) as u64;
        return Ok(report);
    }
    // What an interrupted run left behind: values in the range of the last manifest (each
    // run finishes its purge before a later run writes a manifest, so only the last can be
    // unfinished).
    if let Some(m) = earlier.last() {
        paced_purge(store, tenant, m.from_seq, m.to_seq).await?;
    }
    if to_seq < from_seq {
        return Ok(report);
    }
    let boundary = store
        .scan(tenant, to_seq - 1, 1)
        .await?
        .first()
        .and_then(|r| Hash32::from_hex(&r.chain_hash))
        .ok_or_else(|| StoreError::Database {
            op: "purging",
            message: format!("record {to_seq} of {tenant} is missing"),
        })?;
    let manifest = PurgeManifest {
        tenant: tenant.clone(),
        from_seq,
        to_seq,
        boundary,
        cutoff,
        purged_at: Timestamp::now(),
        reason: reason.to_owned(),
    };
    let note = checkpointer
        .sign_manifest(&manifest)
        .map_err(|e| StoreError::Database {
            op: "purging",
            message: e.to_string(),
        })?;
    // The manifest first: a crash after it leaves values that are merely still there.
    sequencer
        .append_system_record(
            "purging",
            tenant,
            PURGE_ACTION,
            "vigil-retention",
            ("retention", tenant.as_str()),
            vec![
                ("manifest", note.into()),
                ("from_seq", from_seq.into()),
                ("to_seq", to_seq.into()),
                ("cutoff", cutoff.to_rfc3339().into()),
                ("reason", reason.into()),
            ],
        )
        .await?;
    let purged = paced_purge(store, tenant, from_seq, to_seq).await?;
    report.records = purged.records;
    report.bytes = purged.bytes;
    Ok(report)
}

/// Records purged per step of a paced purge.
const PURGE_STEP: i64 = 2_000;

/// Purges `from..=to` in steps of [`PURGE_STEP`] records, resting after each step as long as
/// it took: the purge takes at most half of the store's time, so ingest keeps its latency
/// while a large backlog of expired records is cleared.
async fn paced_purge(
    store: &Arc<dyn Store>,
    tenant: &TenantId,
    from: i64,
    to: i64,
) -> Result<vigil_store::Purged, StoreError> {
    let mut total = vigil_store::Purged::default();
    let mut at = from;
    while at <= to {
        let end = (at + PURGE_STEP - 1).min(to);
        let started = std::time::Instant::now();
        let p = store.purge_payloads(tenant, at, end, PURGE_ACTION).await?;
        total.records += p.records;
        total.bytes += p.bytes;
        if end < to {
            tokio::time::sleep(started.elapsed()).await;
        }
        at = end + 1;
    }
    Ok(total)
}

/// The longest retention period taken (100 years), in days.
pub const MAX_DAYS: u32 = 36_500;

/// How long `tenant`'s payload values are kept: its own period when it has one, else the
/// service's (`None`: kept for ever).
pub async fn period_for(
    store: &Arc<dyn Store>,
    tenant: &TenantId,
    fleet: Option<std::time::Duration>,
) -> Result<Option<std::time::Duration>, StoreError> {
    Ok(match store.retention_days(tenant).await? {
        Some(d) => Some(std::time::Duration::from_secs(u64::from(d) * 86_400)),
        None => fleet,
    })
}

/// The cutoff and the manifest's reason for keeping `keep` up to `now`.
pub fn cutoff_for(keep: std::time::Duration, now: Timestamp) -> Option<(Timestamp, String)> {
    let cutoff = Timestamp::from_micros(now.micros().checked_sub(keep.as_micros() as i64)?).ok()?;
    let reason = if keep.as_secs().is_multiple_of(86_400) {
        format!("retention: {} days", keep.as_secs() / 86_400)
    } else {
        format!("retention: {} s", keep.as_secs_f64())
    };
    Some((cutoff, reason))
}

/// One pass over every tenant: purges what each tenant's period (or `fleet`) lets go, then
/// gives the space back to the file system. Failures are logged and left to the next pass.
pub async fn run_once(
    store: &Arc<dyn Store>,
    checkpointer: &Checkpointer,
    sequencer: &Sequencer,
    metrics: &crate::metrics::AuditMetrics,
    fleet: Option<std::time::Duration>,
) -> (u64, vigil_store::Space) {
    let tenants = match store.tenants().await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "retention: listing tenants failed; next run retries");
            return (0, vigil_store::Space::default());
        }
    };
    let mut purged = 0;
    for t in tenants {
        let keep = match period_for(store, &t, fleet).await {
            Ok(Some(k)) => k,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(tenant = %t, error = %e, "retention: reading the period failed; next run retries");
                continue;
            }
        };
        let Some((cutoff, reason)) = cutoff_for(keep, Timestamp::now()) else {
            continue;
        };
        match purge(store, checkpointer, sequencer, &t, cutoff, &reason, false).await {
            Ok(r) => {
                metrics.retention_deleted.inc_by(r.records);
                purged += r.records;
                if r.records > 0 {
                    tracing::info!(tenant = %t, from = r.from_seq, to = r.to_seq, records = r.records, bytes = r.bytes, "retention purge");
                }
            }
            Err(e) => {
                tracing::warn!(tenant = %t, error = %e, "retention purge failed; next run retries")
            }
        }
    }
    let mut space = vigil_store::Space::default();
    if purged > 0 {
        match store.reclaim_space(false).await {
            Ok(s) => {
                metrics.retention_bytes_freed.inc_by(s.freed());
                space = s;
            }
            Err(e) => tracing::warn!(error = %e, "retention: reclaiming space failed"),
        }
    }
    metrics
        .retention_last_run
        .set(Timestamp::now().micros() as f64 / 1e6);
    (purged, space)
}

/// Runs [`run_once`] every `interval` until the task is stopped.
pub async fn run_schedule(
    store: Arc<dyn Store>,
    checkpointer: Arc<Checkpointer>,
    sequencer: Sequencer,
    metrics: crate::metrics::AuditMetrics,
    fleet: Option<std::time::Duration>,
    interval: std::time::Duration,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        run_once(&store, &checkpointer, &sequencer, &metrics, fleet).await;
    }
}
