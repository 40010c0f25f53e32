//! Redaction at ingest in the audit service: the fleet's policy (`--redaction-policy`), each
//! tenant's HMAC key derived from the data directory's secret, and the metrics. Applied by the
//! sequencer to every event before it is hashed, whichever way it arrived (HTTP, Kafka, in
//! process). The policy itself is `vigil_core::redaction`.

use crate::metrics::AuditMetrics;
use vigil_core::event::Event;
use vigil_core::ids::TenantId;
use vigil_core::redaction::{Action, HmacKey, Mode, Policy, Redacted};

/// The fleet's redaction policy with what it needs to run.
pub struct Redactor {
    policy: Policy,
    secret: [u8; 32],
    metrics: AuditMetrics,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Redactor {
    /// `policy`, with tenants' HMAC keys derived from `secret`; `None` when it does nothing.
    pub fn new(policy: Policy, secret: [u8; 32], metrics: AuditMetrics) -> Option<Redactor> {
        (policy.mode != Mode::Off && !policy.rules.is_empty()).then_some(Redactor {
            policy,
            secret,
            metrics,
        })
    }

    /// Applies the policy to `e` (a valid event of `tenant`), counting what it found; the
    /// masks' commitments are left for the sequencer to add after the content hash.
    pub(crate) fn apply(&self, tenant: &TenantId, e: &mut Event) -> Redacted {
        let key = HmacKey::derive(&self.secret, tenant);
        let r = self.policy.apply(&mut e.payload, &key);
        if r.counts.any() {
            let mode = self.policy.mode.as_str();
            for a in Action::ALL {
                let n = r.counts.of(a);
                if n > 0 {
                    self.metrics
                        .redacted
                        .with_label_values(&[mode, a.as_str()])
                        .inc_by(n);
                }
            }
            self.metrics
                .redaction_last
                .set(vigil_core::time::Timestamp::now().micros() as f64 / 1e6);
        }
        r
    }
}
