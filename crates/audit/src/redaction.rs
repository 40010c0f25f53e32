//! Redaction at ingest in the audit service: each tenant's policy (its own, set through
//! `PUT /v1/redaction-policy`, else the fleet's `--redaction-policy`), each tenant's HMAC key
//! derived from the data directory's secret, and the metrics. Applied by the sequencer to
//! every event before it is hashed, whichever way it arrived (HTTP, Kafka, in process). The
//! policy itself is `vigil_core::redaction`.

use crate::metrics::AuditMetrics;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vigil_core::event::Event;
use vigil_core::ids::TenantId;
use vigil_core::redaction::{Action, HmacKey, Mode, Policy, Redacted};
use vigil_store::{Store, StoreError};

/// How long a tenant's policy is used before it is read from the store again: a change made
/// through another instance takes effect here within this time (through this one, at once).
pub const POLICY_TTL: Duration = Duration::from_secs(5);

/// Tenants' policies with what they need to run.
pub struct Redactor {
    fleet: Arc<Policy>,
    secret: [u8; 32],
    store: Arc<dyn Store>,
    metrics: AuditMetrics,
    cache: Mutex<HashMap<TenantId, (Instant, Arc<Policy>)>>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("fleet", &self.fleet)
            .finish_non_exhaustive()
    }
}

impl Redactor {
    /// The fleet's `policy` (for tenants without their own), tenants' own from `store`, and
    /// their HMAC keys derived from `secret`.
    pub fn new(
        fleet: Policy,
        secret: [u8; 32],
        store: Arc<dyn Store>,
        metrics: AuditMetrics,
    ) -> Redactor {
        Redactor {
            fleet: Arc::new(fleet),
            secret,
            store,
            metrics,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The policy that applies to `tenant` now, and whether it is the tenant's own.
    pub async fn policy_for(&self, tenant: &TenantId) -> Result<(Arc<Policy>, bool), StoreError> {
        if let Some((at, p)) = self.cache.lock().expect("cache lock").get(tenant) {
            if at.elapsed() < POLICY_TTL {
                let own = !Arc::ptr_eq(p, &self.fleet);
                return Ok((Arc::clone(p), own));
            }
        }
        let own = self.store.redaction_policy(tenant).await?;
        let is_own = own.is_some();
        let p = own.map_or_else(|| Arc::clone(&self.fleet), Arc::new);
        let mut cache = self.cache.lock().expect("cache lock");
        if cache.len() > 100_000 {
            cache.clear();
        }
        cache.insert(tenant.clone(), (Instant::now(), Arc::clone(&p)));
        Ok((p, is_own))
    }

    /// Forgets `tenant`'s cached policy (it was just changed).
    pub fn forget(&self, tenant: &TenantId) {
        self.cache.lock().expect("cache lock").remove(tenant);
    }

    /// Applies `tenant`'s policy to `events` (valid events of the tenant), counting what it
    /// found; the masks' commitments are left for the sequencer to add after the content
    /// hash. Empty when the policy does nothing.
    pub(crate) async fn apply(
        &self,
        tenant: &TenantId,
        events: &mut [Event],
    ) -> Result<Vec<Redacted>, StoreError> {
        let (policy, _) = self.policy_for(tenant).await?;
        if policy.mode == Mode::Off || policy.rules.is_empty() {
            return Ok(Vec::new());
        }
        let key = HmacKey::derive(&self.secret, tenant);
        let out: Vec<Redacted> = events
            .iter_mut()
            .map(|e| policy.apply(&mut e.payload, &key))
            .collect();
        let mode = policy.mode.as_str();
        let mut any = false;
        for a in Action::ALL {
            let n: u64 = out.iter().map(|r| r.counts.of(a)).sum();
            if n > 0 {
                any = true;
                self.metrics
                    .redacted
                    .with_label_values(&[mode, a.as_str()])
                    .inc_by(n);
            }
        }
        if any {
            self.metrics
                .redaction_last
                .set(vigil_core::time::Timestamp::now().micros() as f64 / 1e6);
        }
        Ok(out)
    }
}
