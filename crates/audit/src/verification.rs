//! Verifying a store: every tenant's chain from seq 1, and every checkpoint's signature and
//! statement against the records. Used by `vigil verify` and by tests.

use std::sync::Arc;
use vigil_core::checkpoint::{Checkpoint, NoteVerifier};
use vigil_core::ids::TenantId;
use vigil_core::verify::{ChainVerifier, Damage, Finding, Verdict};
use vigil_store::{Store, StoreError};

/// Records fetched per statement: about 1.5 MB of rows, small enough for the allocator to
/// reuse (at 5,000 every batch was fresh pages from the kernel, zeroed: 7 % of the CPU).
const SCAN_BATCH: i64 = 1000;

/// The verdict on one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantReport {
    /// The tenant.
    pub tenant: String,
    /// Intact up to a head, or the first damage.
    pub verdict: Verdict,
    /// How many signed checkpoints were checked.
    pub checkpoints: usize,
    /// The purges signed manifests account for.
    pub purged: Vec<vigil_core::retention::PurgeManifest>,
    /// The erasures signed receipts state.
    pub erased: Vec<vigil_core::erasure::ErasureReceipt>,
}

impl std::fmt::Display for TenantReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.verdict {
            Verdict::Intact { head } => {
                write!(
                    f,
                    "{}: intact, {} records, head {}, {} signed checkpoints verified",
                    self.tenant, head.seq, head.hash, self.checkpoints
                )?;
                for m in &self.purged {
                    write!(
                        f,
                        "; seq {}..{} purged by policy on {} (cutoff {}, {}), manifest valid",
                        m.from_seq,
                        m.to_seq,
                        &m.purged_at.to_rfc3339()[..10],
                        m.cutoff.to_rfc3339(),
                        m.reason
                    )?;
                }
                for r in &self.erased {
                    write!(
                        f,
                        "; subject {} erased on {} ({} records), receipt valid",
                        &r.subject_ref[..r.subject_ref.len().min(16)],
                        &r.erased_at.to_rfc3339()[..10],
                        r.seqs.len()
                    )?;
                }
                Ok(())
            }
            Verdict::Tampered(finding) => write!(f, "{}: TAMPERED at {finding}", self.tenant),
        }
    }
}

/// Which keys checkpoints must be signed by.
#[derive(Debug, Clone)]
pub enum TrustedKeys {
    /// The public keys recorded in the store itself (checks consistency, not origin).
    FromStore,
    /// Only these keys (configured out of band: stronger, a store rewrite cannot forge them).
    Only(Vec<NoteVerifier>),
}

/// Verifies one tenant; `progress` is told how many records were checked so far.
pub async fn verify_tenant(
    store: &Arc<dyn Store>,
    tenant: &TenantId,
    keys: &[NoteVerifier],
    progress: &(dyn Fn(u64) + Sync),
) -> Result<TenantReport, StoreError> {
    let stored = store.checkpoints(tenant).await?;
    let mut checkpoints: Vec<Checkpoint> = Vec::with_capacity(stored.len());
    for cp in &stored {
        let opened = keys
            .iter()
            .filter(|k| k.name() == cp.key_name)
            .find_map(|k| k.open(&cp.note).ok());
        match opened {
            Some(c) if c.tenant == tenant.as_str() => checkpoints.push(c),
            _ => {
                return Ok(TenantReport {
                    tenant: tenant.to_string(),
                    verdict: Verdict::Tampered(Finding {
                        seq: cp.checkpoint.size,
                        damage: Damage::CheckpointSignature,
                    }),
                    checkpoints: 0,
                    purged: Vec::new(),
                    erased: Vec::new(),
                })
            }
        }
    }
    let count = checkpoints.len();
    // Purges are accepted only where a manifest signed by a trusted key covers them.
    let purged = crate::retention::manifests(store, tenant, keys).await?;
    let mut v = ChainVerifier::new(checkpoints).with_purges(purged.clone());
    let tampered = |f: Finding| TenantReport {
        tenant: tenant.to_string(),
        verdict: Verdict::Tampered(f),
        checkpoints: count,
        purged: Vec::new(),
        erased: Vec::new(),
    };
    let mut erased = Vec::new();
    // Records holding sealed members, by subject: each subject whose key is gone must have
    // a receipt covering every one of them.
    let mut sealed: std::collections::BTreeMap<String, Vec<i64>> = Default::default();
    // The next batch is read (on another thread, for SQLite) while this one is verified.
    let mut batches = store.scan_stored(tenant, 0, SCAN_BATCH);
    while let Some(batch) = batches.recv().await {
        let batch = batch?;
        for row in batch.rows() {
            // Most rows are checked from their text; those with sealed members or an erasure
            // receipt are decoded, for what else they say.
            if row.payload_sealed == "{}" && row.action != crate::erasure::ERASE_ACTION {
                if let Err(f) = v.push_stored(&row) {
                    return Ok(tampered(f));
                }
                continue;
            }
            let r = row.to_record();
            if let Err(f) = v.push(&r) {
                return Ok(tampered(f));
            }
            if let (false, Some(s)) = (r.sealed.is_empty(), &r.subject_ref) {
                sealed.entry(s.clone()).or_default().push(r.seq);
            }
            if r.action == crate::erasure::ERASE_ACTION {
                let receipt = r
                    .payload
                    .get("receipt")
                    .and_then(|n| n.as_str())
                    .and_then(|n| vigil_core::erasure::ErasureReceipt::open(n, keys).ok())
                    .filter(|e| &e.tenant == tenant);
                match receipt {
                    Some(e) => erased.push(e),
                    // A purged receipt's payload is gone: the manifest accounts for it.
                    None if r.payload.is_empty() && purged.iter().any(|m| m.covers(r.seq)) => {}
                    None => {
                        return Ok(tampered(Finding {
                            seq: r.seq,
                            damage: Damage::ErasureReceiptInvalid,
                        }))
                    }
                }
            }
        }
        progress(batch.len() as u64);
    }
    let refs: Vec<String> = sealed.keys().cloned().collect();
    let keyed = store.subject_keys(tenant, &refs).await?;
    for (subject, seqs) in &sealed {
        if keyed.contains_key(subject) {
            continue;
        }
        let covered = |seq: &i64| {
            erased
                .iter()
                .any(|e| &e.subject_ref == subject && e.seqs.binary_search(seq).is_ok())
        };
        if let Some(seq) = seqs.iter().find(|s| !covered(s)) {
            return Ok(tampered(Finding {
                seq: *seq,
                damage: Damage::KeyDestroyed,
            }));
        }
    }
    Ok(TenantReport {
        tenant: tenant.to_string(),
        verdict: v.finish(),
        checkpoints: count,
        purged,
        erased,
    })
}

/// The keys to check signatures with.
pub async fn resolve_keys(
    store: &Arc<dyn Store>,
    trusted: TrustedKeys,
) -> Result<Vec<NoteVerifier>, StoreError> {
    Ok(match trusted {
        TrustedKeys::Only(keys) => keys,
        TrustedKeys::FromStore => store
            .public_keys()
            .await?
            .iter()
            .filter_map(|k| NoteVerifier::parse(&k.verifier_key).ok())
            .collect(),
    })
}

/// Verifies every tenant's chain and checkpoints every `interval` (the first run one interval
/// after start), against the keys the store records: damage is logged with the tenant and the
/// first bad seq, and counted (`audit_verifications_total{result}`,
/// `audit_verification_damaged_tenants`) for the alert that pages on it.
pub async fn run_schedule(
    store: Arc<dyn Store>,
    metrics: crate::metrics::AuditMetrics,
    interval: std::time::Duration,
    alerts: Option<Arc<crate::webhooks::Webhooks>>,
) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut damaged = std::collections::BTreeSet::<String>::new();
    loop {
        tick.tick().await;
        let now: std::collections::BTreeSet<String> =
            verify_all(&store, &metrics).await.into_iter().collect();
        // Subscribers to the tenant's alerts hear of damage once, and of its end once.
        if let Some(w) = &alerts {
            let changes = now
                .difference(&damaged)
                .map(|t| (t, "firing"))
                .chain(damaged.difference(&now).map(|t| (t, "resolved")));
            for (tenant, status) in changes {
                let Ok(t) = TenantId::parse(tenant) else {
                    continue;
                };
                if let Err(e) = w
                    .alert(&t, "chain_damaged", status, serde_json::json!({}))
                    .await
                {
                    tracing::warn!(tenant = %t, error = %e, "could not enqueue a chain alert");
                }
            }
        }
        damaged = now;
    }
}

/// One pass of [`run_schedule`]; returns the tenants found damaged.
pub async fn verify_all(
    store: &Arc<dyn Store>,
    metrics: &crate::metrics::AuditMetrics,
) -> Vec<String> {
    use tracing::Instrument;
    let span = tracing::info_span!("audit.verify");
    async {
        let count = |result: &str| metrics.verifications.with_label_values(&[result]).inc();
        let listed = match resolve_keys(store, TrustedKeys::FromStore).await {
            Ok(keys) => store.tenants().await.map(|t| (keys, t)),
            Err(e) => Err(e),
        };
        let (keys, tenants) = match listed {
            Ok(v) => v,
            Err(e) => {
                count("error");
                tracing::warn!(error = %e, "background verification could not list tenants");
                return Vec::new();
            }
        };
        let mut damaged = Vec::new();
        for tenant in tenants {
            match verify_tenant(store, &tenant, &keys, &|_| {}).await {
                Ok(r) => match &r.verdict {
                    Verdict::Intact { .. } => count("intact"),
                    Verdict::Tampered(f) => {
                        count("damaged");
                        tracing::error!(tenant = %tenant, seq = f.seq, damage = ?f.damage,
                            "background verification found the chain damaged: see docs/runbooks/VigilAuditChainDamaged.md");
                        damaged.push(tenant.to_string());
                    }
                },
                Err(e) => {
                    count("error");
                    tracing::warn!(tenant = %tenant, error = %e, "background verification failed to read");
                }
            }
        }
        metrics.damaged_tenants.set(damaged.len() as i64);
        metrics
            .verification_last_run
            .set(vigil_core::time::Timestamp::now().micros() as f64 / 1e6);
        damaged
    }
    .instrument(span)
    .await
}
