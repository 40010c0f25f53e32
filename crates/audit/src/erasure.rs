//! Erasure of one data subject (GDPR's right to erasure) and the export of what is stored
//! about one (the right of access). Erasure destroys the subject's data key after appending a
//! signed receipt to the tenant's chain: the subject's sealed members can then no longer be
//! opened by anyone, from the database or any copy of it made later, while every record
//! keeps verifying (`vigil_core::erasure`).

use crate::checkpointer::Checkpointer;
use crate::redaction::Redactor;
use crate::sequencer::Sequencer;
use std::sync::Arc;
use vigil_core::erasure::ErasureReceipt;
use vigil_core::ids::TenantId;
use vigil_core::record::Record;
use vigil_core::time::Timestamp;
use vigil_store::{ActionFilter, Query, Store, StoreError};

/// The action of an erasure receipt's record.
pub const ERASE_ACTION: &str = vigil_core::erasure::ERASE_ACTION;

/// Longest subject id taken (characters).
pub const MAX_SUBJECT_ID: usize = 256;

/// What went wrong erasing or exporting.
#[derive(Debug, thiserror::Error)]
pub enum ErasureError {
    /// The id cannot be a subject's.
    #[error("subject id: {0}")]
    BadId(&'static str),
    /// Nothing is stored about the subject.
    #[error("nothing is stored about this subject in this tenant")]
    Unknown,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks a subject id: 1 to [`MAX_SUBJECT_ID`] characters, no control characters.
pub fn check_subject_id(id: &str) -> Result<(), ErasureError> {
    if id.is_empty() {
        return Err(ErasureError::BadId("empty"));
    }
    if id.chars().count() > MAX_SUBJECT_ID {
        return Err(ErasureError::BadId("longer than 256 characters"));
    }
    if id.chars().any(char::is_control) {
        return Err(ErasureError::BadId("holds a control character"));
    }
    Ok(())
}

/// What an erasure did.
#[derive(Debug, Clone)]
pub struct Erased {
    /// The subject's keyed reference (what the receipt names).
    pub subject_ref: String,
    /// The signed receipt (a note).
    pub receipt: String,
    /// What the receipt states.
    pub statement: ErasureReceipt,
    /// The subject was erased before, and nothing was stored about it since: this is the
    /// earlier receipt and nothing changed.
    pub already: bool,
}

/// Every record of `tenant` that holds sealed members of subject `subject_ref`, by seq.
async fn subject_records(
    store: &Arc<dyn Store>,
    tenant: &TenantId,
    subject_ref: &str,
) -> Result<Vec<Record>, StoreError> {
    let mut out = Vec::new();
    let mut q = Query {
        subject_ref: Some(subject_ref.to_owned()),
        limit: 1000,
        ..Query::default()
    };
    loop {
        let page = store.query(tenant, &q).await?;
        let full = page.len() as i64 == q.limit;
        q.before_seq = page.last().map(|r| r.seq);
        out.extend(page);
        if !full {
            break;
        }
    }
    out.reverse();
    Ok(out)
}

/// The newest valid receipt in `tenant`'s chain for `subject_ref`.
async fn last_receipt(
    store: &Arc<dyn Store>,
    checkpointer: &Checkpointer,
    tenant: &TenantId,
    subject_ref: &str,
) -> Result<Option<(String, ErasureReceipt)>, StoreError> {
    let q = Query {
        action: Some(ActionFilter::Exact(ERASE_ACTION.into())),
        resource_type: Some("subject".into()),
        resource_id: Some(subject_ref.to_owned()),
        limit: 10,
        ..Query::default()
    };
    let keys = [checkpointer.verifier()];
    Ok(store.query(tenant, &q).await?.into_iter().find_map(|r| {
        let note = r.payload.get("receipt")?.as_str()?.to_owned();
        let stmt = ErasureReceipt::open(&note, &keys).ok()?;
        (&stmt.tenant == tenant).then_some((note, stmt))
    }))
}

/// Erases `tenant`'s data subject `id`: appends a signed receipt naming the records that hold
/// its sealed members, then destroys its key. Idempotent: a subject whose key is already gone
/// answers with its last receipt. A crash between the two leaves the key, and the next call
/// finishes (with a second receipt).
pub async fn erase(
    redactor: &Redactor,
    store: &Arc<dyn Store>,
    checkpointer: &Checkpointer,
    sequencer: &Sequencer,
    tenant: &TenantId,
    id: &str,
) -> Result<Erased, ErasureError> {
    check_subject_id(id)?;
    let subject_ref = redactor.subject_ref(tenant, id);
    erase_ref(store, checkpointer, sequencer, tenant, subject_ref).await
}

/// [`erase`] by the subject's keyed reference: what a restore re-applies for erasures made
/// after the backup it restored (their receipts name references, never subject ids).
pub async fn erase_ref(
    store: &Arc<dyn Store>,
    checkpointer: &Checkpointer,
    sequencer: &Sequencer,
    tenant: &TenantId,
    subject_ref: String,
) -> Result<Erased, ErasureError> {
    let has_key = !store
        .subject_keys(tenant, std::slice::from_ref(&subject_ref))
        .await?
        .is_empty();
    if !has_key {
        return match last_receipt(store, checkpointer, tenant, &subject_ref).await? {
            Some((receipt, statement)) => Ok(Erased {
                subject_ref,
                receipt,
                statement,
                already: true,
            }),
            None => Err(ErasureError::Unknown),
        };
    }
    let seqs: Vec<i64> = subject_records(store, tenant, &subject_ref)
        .await?
        .iter()
        .map(|r| r.seq)
        .collect();
    let statement = ErasureReceipt {
        tenant: tenant.clone(),
        subject_ref: subject_ref.clone(),
        seqs,
        erased_at: Timestamp::now(),
    };
    let receipt = checkpointer
        .sign_receipt(&statement)
        .map_err(|e| StoreError::Database {
            op: "erasing",
            message: e.to_string(),
        })?;
    // The receipt first: a crash after it leaves a key that the next call destroys.
    sequencer
        .append_system_record(
            "erasing",
            tenant,
            ERASE_ACTION,
            "vigil-erasure",
            ("subject", &subject_ref),
            vec![
                ("receipt", receipt.clone().into()),
                ("records", statement.seqs.len().into()),
            ],
        )
        .await?;
    store.destroy_subject_key(tenant, &subject_ref).await?;
    Ok(Erased {
        subject_ref,
        receipt,
        statement,
        already: false,
    })
}

/// Everything stored about `tenant`'s data subject `id`: its records with their sealed
/// members opened (or withheld as erased), oldest first.
pub async fn export(
    redactor: &Redactor,
    store: &Arc<dyn Store>,
    tenant: &TenantId,
    id: &str,
) -> Result<(String, Vec<Record>), ErasureError> {
    check_subject_id(id)?;
    let subject_ref = redactor.subject_ref(tenant, id);
    let mut records = subject_records(store, tenant, &subject_ref).await?;
    if records.is_empty() {
        return Err(ErasureError::Unknown);
    }
    redactor.open_sealed(tenant, &mut records).await?;
    Ok((subject_ref, records))
}
