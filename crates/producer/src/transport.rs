//! Where batches go. A transport takes a batch of events of one or more tenants, in order, and
//! says whether the far end took them. It is called with one batch at a time, so a tenant's
//! events arrive in `producer_seq` order; any batch may be sent more than once (after a timeout
//! or from the spool), which the audit service answers as duplicates.

use async_trait::async_trait;
use vigil_core::event::Event;
use vigil_core::ids::TenantId;

/// One event, the tenant whose chain it joins, and its JSON (serialized once, for the spool,
/// the HTTP body and the Kafka message alike).
#[derive(Clone, Debug, PartialEq)]
pub struct TenantEvent {
    tenant: TenantId,
    event: Event,
    json: Vec<u8>,
}

impl TenantEvent {
    /// `event` for `tenant`.
    pub fn new(tenant: TenantId, event: Event) -> TenantEvent {
        let json = serde_json::to_vec(&event.to_json()).expect("an event serializes");
        TenantEvent {
            tenant,
            event,
            json,
        }
    }

    /// Read back from JSON that is known to be `event`'s (the spool's own lines).
    pub(crate) fn with_json(tenant: TenantId, event: Event, json: Vec<u8>) -> TenantEvent {
        TenantEvent {
            tenant,
            event,
            json,
        }
    }

    /// The tenant.
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// The event, with its producer position stamped.
    pub fn event(&self) -> &Event {
        &self.event
    }

    /// The event as JSON (the audit service's input format).
    pub fn json(&self) -> &[u8] {
        &self.json
    }
}

/// What the far end did with a batch it answered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Events it refused for good (a conflicting id, a `producer_seq` that went backwards):
    /// resending would not help. Each with the event id and the reason.
    pub refused: Vec<(String, String)>,
}

/// A send that did not go through.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The far end is unreachable, overloaded or not (yet) accepting our credentials: the batch
    /// is kept and sent again.
    #[error("{0}")]
    Unavailable(String),
    /// The far end refused the whole batch for good (it will never take it).
    #[error("refused: {0}")]
    Refused(String),
}

/// Delivers batches: HTTP to the audit service, Kafka, or in process.
#[async_trait]
pub trait Transport: Send + Sync + std::fmt::Debug {
    /// `http`, `kafka` or `in_process` (the `transport` label of the metrics).
    fn name(&self) -> &'static str;

    /// Sends `batch`; returns once the far end has durably taken it (HTTP: stored; Kafka:
    /// acknowledged by all in-sync replicas).
    async fn send(&self, batch: &[TenantEvent]) -> Result<Delivery, TransportError>;
}

/// The batch's events grouped by tenant, each group in batch order, groups in order of first
/// appearance (what a per-tenant endpoint takes: one request per tenant).
pub fn by_tenant(batch: &[TenantEvent]) -> Vec<(&TenantId, Vec<&TenantEvent>)> {
    let mut groups: Vec<(&TenantId, Vec<&TenantEvent>)> = Vec::new();
    let mut index: std::collections::HashMap<&TenantId, usize> = Default::default();
    for e in batch {
        let i = *index.entry(&e.tenant).or_insert_with(|| {
            groups.push((&e.tenant, Vec::new()));
            groups.len() - 1
        });
        groups[i].1.push(e);
    }
    groups
}

/// No audit service configured: each event goes to the log (at `info`, as JSON), so nothing
/// is silently discarded.
#[derive(Debug, Default)]
pub struct LogTransport;

#[async_trait]
impl Transport for LogTransport {
    fn name(&self) -> &'static str {
        "log"
    }

    async fn send(&self, batch: &[TenantEvent]) -> Result<Delivery, TransportError> {
        for e in batch {
            tracing::info!(tenant = %e.tenant, event = %String::from_utf8_lossy(&e.json),
                "audit event (no audit service configured)");
        }
        Ok(Delivery::default())
    }
}
