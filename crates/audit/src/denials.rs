//! Capability denials become audit events in the caller's own tenant chain
//! (`action: capability.denied`, `severity: security`, payload `{capability, roles}`).

use crate::checkpointer::now;
use crate::sequencer::Sequencer;
use serde_json::json;
use vigil_core::event::EventInput;
use vigil_core::ids::EventId;
use vigil_security::capability::Capability;
use vigil_security::context::{DenialSink, SecurityContext};

/// Appends a `capability.denied` event for every denial, without holding up the response.
#[derive(Debug)]
pub struct AuditDenials {
    sequencer: Sequencer,
}

impl AuditDenials {
    /// Denials go into `sequencer`'s chains.
    pub fn new(sequencer: Sequencer) -> Self {
        AuditDenials { sequencer }
    }
}

impl DenialSink for AuditDenials {
    fn denied(&self, ctx: &SecurityContext, capability: Capability) {
        let event = json!({
            "occurred_at": now().to_rfc3339(),
            "actor": {"type": "user", "id": ctx.user_id.clone().unwrap_or_else(|| "anonymous".into())},
            "action": "capability.denied",
            "resource": {"type": "capability", "id": capability.as_str()},
            "outcome": "denied",
            "severity": "security",
            "source": {"service": "vigil-audit"},
            "trace_id": ctx.trace_id.as_str(),
            "payload": {"capability": capability.as_str(), "roles": ctx.roles.names()},
        });
        let event =
            match EventInput::new(event).validate(|| EventId::from_uuid(uuid::Uuid::now_v7())) {
                Ok(e) => e,
                Err(e) => return tracing::error!(error = %e, "a denial event did not validate"),
            };
        let (sequencer, tenant) = (self.sequencer.clone(), ctx.tenant_id.clone());
        tokio::spawn(async move {
            if let Err(e) = sequencer.submit(&tenant, vec![event], now()).await {
                tracing::warn!(error = %e, tenant = %tenant, "could not record a capability denial");
            }
        });
    }
}
