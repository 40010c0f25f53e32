//! Signed checkpoints: every N events or T seconds per tenant (the sequencer's tenant workers
//! call in), and once at start for every tenant whose head moved past its last checkpoint.

use crate::metrics::AuditMetrics;
use std::sync::Arc;
use vigil_core::chain::ChainHead;
use vigil_core::checkpoint::{Checkpoint, NoteSigner};
use vigil_core::ids::TenantId;
use vigil_core::time::Timestamp;
use vigil_store::{PublicKey, Store, StoreError, StoredCheckpoint};

/// Makes and stores signed checkpoints.
#[derive(Debug)]
pub struct Checkpointer {
    store: Arc<dyn Store>,
    signer: NoteSigner,
    metrics: AuditMetrics,
    /// Checkpoint after this many new events.
    pub every: i64,
    /// ...or this long after the last checkpoint.
    pub interval: std::time::Duration,
    /// Keep the Merkle tree and sign its root (always, in the service; off only to measure
    /// what keeping it costs: checkpoints are then as they were before trees were kept).
    tree: bool,
}

/// Now, at microsecond precision (the service's one clock read for records and checkpoints).
pub fn now() -> Timestamp {
    Timestamp::now()
}

impl Checkpointer {
    /// A checkpointer signing with `signer`.
    pub fn new(
        store: Arc<dyn Store>,
        signer: NoteSigner,
        metrics: AuditMetrics,
        every: i64,
        interval: std::time::Duration,
    ) -> Self {
        Checkpointer {
            store,
            signer,
            metrics,
            every: every.max(1),
            interval,
            tree: true,
        }
    }

    /// The same checkpointer without the Merkle tree: no subtrees stored, no root signed.
    /// For benchmarks comparing ingest with the tree kept and without.
    pub fn without_tree(mut self) -> Self {
        self.tree = false;
        self
    }

    /// The signer's public half.
    pub fn verifier(&self) -> vigil_core::checkpoint::NoteVerifier {
        self.signer.verifier()
    }

    /// A purge manifest signed with the checkpoint key.
    pub fn sign_manifest(
        &self,
        m: &vigil_core::retention::PurgeManifest,
    ) -> Result<String, vigil_core::Error> {
        m.sign(&self.signer)
    }

    /// Signs an erasure receipt with the checkpoint key.
    pub fn sign_receipt(
        &self,
        r: &vigil_core::erasure::ErasureReceipt,
    ) -> Result<String, vigil_core::Error> {
        r.sign(&self.signer)
    }

    /// Records the public key in the store, so `vigil verify` can check signatures.
    pub async fn publish_key(&self) -> Result<(), StoreError> {
        let v = self.signer.verifier();
        self.store
            .put_public_key(&PublicKey {
                key_id: v.key_id_hex(),
                name: v.name().into(),
                verifier_key: v.to_vkey(),
                created_at: now().to_rfc3339(),
            })
            .await
    }

    /// Signs and stores a checkpoint of `tenant` at `head`, with the Merkle root at that size
    /// (the tree's complete subtrees stored first: this is where the tree is kept up to date,
    /// off the ingest path).
    pub async fn checkpoint(
        &self,
        tenant: &TenantId,
        head: ChainHead,
    ) -> Result<StoredCheckpoint, StoreError> {
        let size = u64::try_from(head.seq).unwrap_or(0);
        let root = async {
            if !self.tree {
                return Ok(None);
            }
            crate::merkle::maintain(self.store.as_ref(), tenant, size).await?;
            crate::merkle::root(self.store.as_ref(), tenant, size)
                .await
                .map(Some)
        }
        .await
        .map_err(|e| match e {
            crate::AuditError::Store { source, .. } => source,
            other => StoreError::Database {
                op: "computing the Merkle root",
                message: other.to_string(),
            },
        })
        .inspect_err(|e| self.metrics.store_error("checkpoint", e))?;
        let cp = Checkpoint {
            tenant: tenant.as_str().into(),
            size: head.seq,
            chain_hash: head.hash,
            root,
            time: now().to_rfc3339(),
        };
        let stored = StoredCheckpoint {
            note: self.signer.sign(&cp),
            checkpoint: cp,
            key_name: self.signer.name().into(),
        };
        self.store
            .put_checkpoint(tenant, &stored)
            .await
            .inspect_err(|e| self.metrics.store_error("checkpoint", e))?;
        self.metrics.checkpoints.inc();
        tracing::debug!(tenant = %tenant, size = head.seq, "checkpoint signed");
        Ok(stored)
    }

    /// At start: checkpoints every tenant whose head is past its last checkpoint (a process
    /// that died between a commit and its checkpoint leaves such a tenant behind).
    pub async fn catch_up(&self) -> Result<(), StoreError> {
        for tenant in self.store.tenants().await? {
            let head = self.store.head(&tenant).await?;
            let last = self
                .store
                .latest_checkpoint(&tenant)
                .await?
                .map(|c| c.checkpoint.size)
                .unwrap_or(0);
            if head.seq > last {
                self.checkpoint(&tenant, head).await?;
            }
        }
        Ok(())
    }

    /// The size of the tenant's newest checkpoint (0 when none).
    pub async fn last_size(&self, tenant: &TenantId) -> Result<i64, StoreError> {
        Ok(self
            .store
            .latest_checkpoint(tenant)
            .await?
            .map(|c| c.checkpoint.size)
            .unwrap_or(0))
    }
}
