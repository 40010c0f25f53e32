//! Redaction at ingest in the audit service: each tenant's policy (its own, set through
//! `PUT /v1/redaction-policy`, else the fleet's `--redaction-policy`), each tenant's HMAC key
//! derived from the data directory's secret, and the metrics. Applied by the sequencer to
//! every event before it is hashed, whichever way it arrived (HTTP, Kafka, in process). The
//! policy itself is `vigil_core::redaction`.
//!
//! The same policy names each tenant's data subjects' personal members: the redactor finds
//! (or makes) each subject's data key, wrapped under the key-encryption key derived from
//! `DATA_DIR/subject-kek.key`, for the sequencer to seal those members with, and opens them
//! again for readers (`vigil_core::erasure`).

use crate::metrics::AuditMetrics;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vigil_core::erasure::{self, DataKey, Kek};
use vigil_core::event::Event;
use vigil_core::ids::TenantId;
use vigil_core::record::Record;
use vigil_core::redaction::{Action, HmacKey, Mode, Policy, Redacted};
use vigil_core::time::Timestamp;
use vigil_store::{Store, StoreError};

/// How long a tenant's policy is used before it is read from the store again: a change made
/// through another instance takes effect here within this time (through this one, at once).
pub const POLICY_TTL: Duration = Duration::from_secs(5);

/// Tenants' policies with what they need to run.
pub struct Redactor {
    fleet: Arc<Policy>,
    secret: [u8; 32],
    kek: Kek,
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
        kek: Kek,
        store: Arc<dyn Store>,
        metrics: AuditMetrics,
    ) -> Redactor {
        Redactor {
            fleet: Arc::new(fleet),
            secret,
            kek,
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

    /// The keyed reference of `tenant`'s data subject `id` (what the store holds).
    pub fn subject_ref(&self, tenant: &TenantId, id: &str) -> String {
        HmacKey::derive(&self.secret, tenant).subject_ref(id)
    }

    /// Prepares `events` for the sequencer: applies `tenant`'s policy (see
    /// [`Redactor::apply`]) and finds each event's data subject and key, for its personal
    /// members to be sealed after hashing. The subject is read before redaction rewrites the
    /// payload.
    pub(crate) async fn prepare(
        &self,
        tenant: &TenantId,
        events: &mut [Event],
    ) -> Result<(Vec<Redacted>, Vec<Option<Sealing>>), StoreError> {
        let (policy, _) = self.policy_for(tenant).await?;
        let sealings = self.sealings(tenant, &policy, events).await?;
        let redactions = self.apply(tenant, &policy, events);
        Ok((redactions, sealings))
    }

    async fn sealings(
        &self,
        tenant: &TenantId,
        policy: &Policy,
        events: &[Event],
    ) -> Result<Vec<Option<Sealing>>, StoreError> {
        if policy.personal.is_none() || policy.mode == Mode::Off {
            return Ok(Vec::new());
        }
        let hmac = HmacKey::derive(&self.secret, tenant);
        let refs: Vec<Option<String>> = events
            .iter()
            .map(|e| policy.subject_of(&e.payload).map(|id| hmac.subject_ref(id)))
            .collect();
        let mut distinct: Vec<&String> = refs.iter().flatten().collect();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.is_empty() {
            return Ok(Vec::new());
        }
        let candidates: Vec<(String, Vec<u8>)> = distinct
            .iter()
            .map(|r| ((*r).clone(), self.kek.wrap(tenant, r, &DataKey::generate())))
            .collect();
        let wrapped = self
            .store
            .ensure_subject_keys(tenant, &candidates, Timestamp::now())
            .await?;
        let members = Arc::new(policy.personal_members());
        let mut keys: HashMap<&String, Arc<DataKey>> = HashMap::new();
        for r in distinct {
            let w = wrapped.get(r).ok_or_else(|| StoreError::Database {
                op: "sealing personal data",
                message: "a subject's key was destroyed while its events came in; retry".into(),
            })?;
            let key = self.kek.unwrap(tenant, r, w).map_err(|e| StoreError::Database {
                op: "sealing personal data",
                message: format!("a subject's key does not unwrap with this service's key-encryption key: {e}"),
            })?;
            keys.insert(r, Arc::new(key));
        }
        Ok(refs
            .iter()
            .map(|r| {
                r.as_ref().map(|r| Sealing {
                    subject_ref: r.clone(),
                    key: Arc::clone(&keys[r]),
                    members: Arc::clone(&members),
                })
            })
            .collect())
    }

    /// Opens the sealed members of `tenant`'s `records` for a reader: with the subject's key
    /// the values and salts come back; without it (the subject was erased) the members are
    /// withheld as `erased`. A member that does not open under its key was altered: it is
    /// withheld as `unreadable` and logged.
    pub async fn open_sealed(
        &self,
        tenant: &TenantId,
        records: &mut [Record],
    ) -> Result<(), StoreError> {
        let mut refs: Vec<String> = records
            .iter()
            .filter(|r| !r.sealed.is_empty())
            .filter_map(|r| r.subject_ref.clone())
            .collect();
        refs.sort_unstable();
        refs.dedup();
        let wrapped = if refs.is_empty() {
            HashMap::new()
        } else {
            self.store.subject_keys(tenant, &refs).await?
        };
        let keys: HashMap<&String, Option<DataKey>> = wrapped
            .iter()
            .map(|(r, w)| (r, self.kek.unwrap(tenant, r, w).ok()))
            .collect();
        for r in records.iter_mut().filter(|r| !r.sealed.is_empty()) {
            match r.subject_ref.as_ref().and_then(|s| keys.get(s)) {
                Some(Some(key)) => {
                    for k in key.open_record(r) {
                        tracing::error!(tenant = %tenant, seq = r.seq, member = %k, "a sealed member does not open under its subject's key: altered");
                        r.sealed.remove(&k);
                        r.withheld.insert(k, "unreadable".into());
                    }
                }
                Some(None) => {
                    tracing::error!(tenant = %tenant, seq = r.seq, "a subject's key does not unwrap");
                    for k in std::mem::take(&mut r.sealed).into_keys() {
                        r.withheld.insert(k, "unreadable".into());
                    }
                }
                None => erasure::mark_erased(r),
            }
        }
        Ok(())
    }

    /// Applies `policy` to `events` (valid events of `tenant`), counting what it found; the
    /// masks' commitments are left for the sequencer to add after the content hash. Empty
    /// when the policy does nothing.
    fn apply(&self, tenant: &TenantId, policy: &Policy, events: &mut [Event]) -> Vec<Redacted> {
        if policy.mode == Mode::Off || policy.rules.is_empty() {
            return Vec::new();
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
                .set(Timestamp::now().micros() as f64 / 1e6);
        }
        out
    }
}

/// An event's data subject and its key: the sequencer seals the personal members with it
/// once the record is hashed.
#[derive(Clone, Debug)]
pub(crate) struct Sealing {
    subject_ref: String,
    key: Arc<DataKey>,
    members: Arc<Vec<String>>,
}

impl Sealing {
    /// Seals the personal members of `record` (sealed by the sequencer: its hashes are final).
    pub(crate) fn seal(&self, record: &mut Record) {
        self.key
            .seal_record(record, &self.subject_ref, &self.members);
    }
}
