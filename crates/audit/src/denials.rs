//! Capability denials become audit events in the caller's own tenant chain
//! (`action: capability.denied`, `severity: security`, payload `{capability, roles}`), through
//! the service's audit producer.

use vigil_core::builder::EventBuilder;
use vigil_core::event::{Actor, ActorType, Outcome, Resource, Severity};
use vigil_producer::AuditProducer;
use vigil_security::capability::Capability;
use vigil_security::context::{DenialSink, SecurityContext};

/// Emits a `capability.denied` event for every denial, without holding up the response.
#[derive(Debug)]
pub struct AuditDenials {
    producer: AuditProducer,
}

impl AuditDenials {
    /// Denials go out through `producer`.
    pub fn new(producer: AuditProducer) -> Self {
        AuditDenials { producer }
    }
}

/// The event recording that `ctx` was refused `capability`.
pub fn denial_event(ctx: &SecurityContext, capability: Capability) -> EventBuilder {
    EventBuilder::new(
        "capability.denied",
        Actor::new(
            ActorType::User,
            ctx.user_id.clone().unwrap_or_else(|| "anonymous".into()),
        ),
        Resource::new("capability", capability.as_str()),
        Outcome::Denied,
    )
    .severity(Severity::Security)
    .trace_id(ctx.trace_id.clone())
    .field("capability", capability.as_str())
    .field("roles", ctx.roles.names())
}

impl DenialSink for AuditDenials {
    fn denied(&self, ctx: &SecurityContext, capability: Capability) {
        self.producer
            .emit(&ctx.tenant_id, denial_event(ctx, capability));
    }
}
