//! The producer's transport inside the audit service's process: batches go straight to the
//! sequencer, with the same validation, ordering and idempotency as HTTP ingest (the audit
//! service's own events, and every service of `vigil dev`).

use crate::checkpointer::now;
use crate::sequencer::{IngestResult, Sequencer};
use async_trait::async_trait;
use vigil_producer::transport::by_tenant;
use vigil_producer::{Delivery, TenantEvent, Transport, TransportError};

/// Delivers to a sequencer in the same process.
#[derive(Debug, Clone)]
pub struct InProcess(pub Sequencer);

#[async_trait]
impl Transport for InProcess {
    fn name(&self) -> &'static str {
        "in_process"
    }

    async fn send(&self, batch: &[TenantEvent]) -> Result<Delivery, TransportError> {
        let mut delivery = Delivery::default();
        for (tenant, events) in by_tenant(batch) {
            let results = self
                .0
                .submit(
                    tenant,
                    events.iter().map(|e| e.event().clone()).collect(),
                    now(),
                )
                .await
                .map_err(|e| TransportError::Unavailable(e.to_string()))?;
            for (e, r) in events.iter().zip(results) {
                let why = match r {
                    IngestResult::Stored { .. } | IngestResult::Duplicate { .. } => continue,
                    IngestResult::Conflict { seq } => {
                        format!(
                            "event_id is taken by another event (seq {seq}) with different content"
                        )
                    }
                    IngestResult::Rejected(err) => err.to_string(),
                    IngestResult::NotStored => {
                        unreachable!("Sequencer::submit decides every event on its own")
                    }
                };
                delivery.refused.push((e.event().event_id.to_string(), why));
            }
        }
        Ok(delivery)
    }
}
