//! Proofs over a tenant's Merkle tree (RFC 9162): `GET /v1/proofs/inclusion`,
//! `GET /v1/proofs/consistency`, and the tree's tiles per C2SP tlog-tiles
//! (`GET /v1/tiles/tile/<L>/<N>[.p/<W>]`), so a client can check a record or a checkpoint
//! against a signed root with O(log n) hashes, or fetch and cache the tree itself.
//!
//! Only trees a signed checkpoint covers are served: a size beyond the tenant's latest
//! checkpoint is refused (409), so every root a client is given can be held against a
//! signature.

use super::{store_error, AppState, ErrorBody};
use crate::AuditError;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use vigil_core::hash::Hash32;
use vigil_core::ids::EventId;
use vigil_core::merkle::{MerkleError, TileId, TILE_HEIGHT, TILE_WIDTH};
use vigil_security::capability::Capability;
use vigil_security::context::SecurityContext;
use vigil_security::error::ApiError;
use vigil_security::extract::{Path, Query};
use vigil_store::StoredCheckpoint;

pub(super) fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/proofs/inclusion", get(inclusion))
        .route("/v1/proofs/consistency", get(consistency))
        .route("/v1/tiles/tile/{*path}", get(tile))
}

/// Parameters of `GET /v1/proofs/inclusion`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct InclusionParams {
    /// The event whose record is to be shown in the tree.
    #[param(
        pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    event_id: String,
    /// The tree's size (default: the latest checkpoint's); at most the latest checkpoint's.
    #[param(minimum = 1)]
    tree_size: Option<u64>,
}

/// An inclusion proof.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct InclusionProof {
    /// The tenant.
    tenant_id: String,
    /// The event.
    event_id: String,
    /// The record's seq (its leaf index is `seq - 1`).
    seq: i64,
    /// The leaf's index in the tree.
    leaf_index: u64,
    /// The tree's size.
    tree_size: u64,
    /// The record's leaf hash (hex).
    leaf_hash: String,
    /// The tree's root (hex).
    root: String,
    /// The audit path, leaf to root (hex), per RFC 9162 §2.1.3.
    proof: Vec<String>,
    /// The signed note of the checkpoint at `tree_size`, when it is the latest.
    #[serde(skip_serializing_if = "Option::is_none")]
    checkpoint: Option<String>,
}

/// Parameters of `GET /v1/proofs/consistency`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ConsistencyParams {
    /// The older tree's size (at least 1).
    #[param(minimum = 1)]
    from: u64,
    /// The newer tree's size (default: the latest checkpoint's); at most the latest
    /// checkpoint's.
    #[param(minimum = 1)]
    to: Option<u64>,
}

/// A consistency proof.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ConsistencyProof {
    /// The tenant.
    tenant_id: String,
    /// The older tree's size.
    from: u64,
    /// The newer tree's size.
    to: u64,
    /// The older tree's root (hex).
    from_root: String,
    /// The newer tree's root (hex).
    to_root: String,
    /// The proof (hex), per RFC 9162 §2.1.4.
    proof: Vec<String>,
    /// The signed note of the checkpoint at `to`, when it is the latest.
    #[serde(skip_serializing_if = "Option::is_none")]
    checkpoint: Option<String>,
}

fn hex_all(hashes: &[Hash32]) -> Vec<String> {
    hashes.iter().map(Hash32::to_hex).collect()
}

/// A proof failure in the error shape: bad parameters 400; a node the signed tree covers but
/// the store does not hold (records deleted, or a store upgraded from before trees were kept
/// until its next checkpoint) 503; the store 503/500.
fn proof_error(e: AuditError) -> ApiError {
    match e {
        AuditError::Proof(MerkleError::Invalid(why)) => ApiError::BadRequest(why),
        AuditError::Proof(missing @ MerkleError::Missing { .. }) => ApiError::Unavailable(format!(
            "the store does not hold part of the signed tree: {missing} (records missing, or not maintained until the next checkpoint)"
        )),
        AuditError::Store { source, .. } => store_error(source),
        other => ApiError::internal(other),
    }
}

/// The tenant's latest checkpoint; a tenant without one has no tree to prove anything in.
async fn latest(app: &AppState, ctx: &SecurityContext) -> Result<StoredCheckpoint, ApiError> {
    app.store
        .latest_checkpoint(&ctx.tenant_id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| {
            ApiError::Conflict("this tenant has no checkpoint yet: there is no signed tree".into())
        })
}

/// The size asked for, checked against the latest checkpoint (`None`: that checkpoint's).
fn signed_size(cp: &StoredCheckpoint, asked: Option<u64>, name: &str) -> Result<u64, ApiError> {
    let latest = cp.checkpoint.size.max(0) as u64;
    match asked {
        None => Ok(latest),
        Some(0) => Err(ApiError::BadRequest(format!("{name} must be at least 1"))),
        Some(n) if n > latest => Err(ApiError::Conflict(format!(
            "{name} {n} is beyond the latest checkpoint ({latest} records): only signed trees are served"
        ))),
        Some(n) => Ok(n),
    }
}

/// The note to hand out with a proof at `size`: the latest checkpoint's, when it is at `size`.
fn note_at(cp: StoredCheckpoint, size: u64) -> Option<String> {
    (cp.checkpoint.size.max(0) as u64 == size).then_some(cp.note)
}

/// The inclusion proof of an event's record in the tenant's tree.
#[utoipa::path(
    get, path = "/v1/proofs/inclusion", tag = "proofs", params(InclusionParams),
    responses(
        (status = 200, body = InclusionProof),
        (status = 400, body = ErrorBody, description = "Bad parameters"),
        (status = 404, body = ErrorBody, description = "No such event in this tenant"),
        (status = 409, body = ErrorBody, description = "The event or the size is beyond the latest checkpoint"),
        (status = 503, body = ErrorBody)
    )
)]
pub(super) async fn inclusion(
    ctx: SecurityContext,
    State(app): State<Arc<AppState>>,
    Query(params): Query<InclusionParams>,
) -> Result<Json<InclusionProof>, ApiError> {
    ctx.require(Capability::AuditRead)?;
    let id = EventId::parse(&params.event_id).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let cp = latest(&app, &ctx).await?;
    let size = signed_size(&cp, params.tree_size, "tree_size")?;
    let record = app
        .store
        .get(&ctx.tenant_id, &id.to_string())
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::NotFound(format!("no event {id} in this tenant")))?;
    let index = record.seq as u64 - 1;
    if index >= size {
        return Err(ApiError::Conflict(format!(
            "event {id} (seq {}) is not in the tree of {size} records: a later checkpoint will cover it",
            record.seq
        )));
    }
    let (proof, root) =
        crate::merkle::inclusion_with_root(app.store.as_ref(), &ctx.tenant_id, index, size)
            .await
            .map_err(proof_error)?;
    Ok(Json(InclusionProof {
        tenant_id: ctx.tenant_id.to_string(),
        event_id: id.to_string(),
        seq: record.seq,
        leaf_index: index,
        tree_size: size,
        leaf_hash: record.leaf_hash,
        root: root.to_hex(),
        proof: hex_all(&proof),
        checkpoint: note_at(cp, size),
    }))
}

/// The consistency proof between two of the tenant's trees.
#[utoipa::path(
    get, path = "/v1/proofs/consistency", tag = "proofs", params(ConsistencyParams),
    responses(
        (status = 200, body = ConsistencyProof),
        (status = 400, body = ErrorBody, description = "Bad parameters (`from` after `to`…)"),
        (status = 409, body = ErrorBody, description = "A size beyond the latest checkpoint"),
        (status = 503, body = ErrorBody)
    )
)]
pub(super) async fn consistency(
    ctx: SecurityContext,
    State(app): State<Arc<AppState>>,
    Query(params): Query<ConsistencyParams>,
) -> Result<Json<ConsistencyProof>, ApiError> {
    ctx.require(Capability::AuditRead)?;
    let cp = latest(&app, &ctx).await?;
    let to = signed_size(&cp, params.to, "to")?;
    let from = signed_size(&cp, Some(params.from), "from")?;
    if from > to {
        return Err(ApiError::BadRequest(format!(
            "from ({from}) is after to ({to})"
        )));
    }
    let t = &ctx.tenant_id;
    let (proof, from_root, to_root) =
        crate::merkle::consistency_with_roots(app.store.as_ref(), t, from, to)
            .await
            .map_err(proof_error)?;
    Ok(Json(ConsistencyProof {
        tenant_id: t.to_string(),
        from,
        to,
        from_root: from_root.to_hex(),
        to_root: to_root.to_hex(),
        proof: hex_all(&proof),
        checkpoint: note_at(cp, to),
    }))
}

/// One tile of the tenant's tree (C2SP tlog-tiles): the concatenated 32-byte hashes at tree
/// level `8·L`, indices `N·256 ..` (256 of them, or `W` for a partial tile). Only tiles inside
/// the latest checkpoint's tree are served; a tile never changes, so it may be cached forever.
#[utoipa::path(
    get, path = "/v1/tiles/tile/{path}", tag = "proofs",
    params(("path" = String, Path, description = "`<L>/<N>[.p/<W>]`, N in three-digit groups (`x001/234`)")),
    responses(
        (status = 200, content_type = "application/octet-stream", body = Vec<u8>),
        (status = 400, body = ErrorBody, description = "Not a tile path"),
        (status = 404, body = ErrorBody, description = "The tile is beyond the latest checkpoint's tree"),
        (status = 503, body = ErrorBody)
    )
)]
pub(super) async fn tile(
    ctx: SecurityContext,
    State(app): State<Arc<AppState>>,
    Path(path): Path<String>,
) -> Result<Response, ApiError> {
    ctx.require(Capability::AuditRead)?;
    let id = TileId::parse(&format!("tile/{path}")).map_err(|_| {
        ApiError::BadRequest(format!("tile/{path} is not a tile path (C2SP tlog-tiles)"))
    })?;
    let cp = latest(&app, &ctx).await?;
    let size = cp.checkpoint.size.max(0) as u64;
    let at_level = size >> (TILE_HEIGHT * id.level).min(63);
    if id.index.saturating_mul(TILE_WIDTH).saturating_add(id.width) > at_level {
        return Err(ApiError::NotFound(format!(
            "tile/{path} is beyond the latest checkpoint's tree ({size} records)"
        )));
    }
    let hashes = crate::merkle::tile(app.store.as_ref(), &ctx.tenant_id, id)
        .await
        .map_err(proof_error)?;
    let body: Vec<u8> = hashes.iter().flat_map(|h| h.0).collect();
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (
                header::CACHE_CONTROL,
                "private, max-age=31536000, immutable",
            ),
        ],
        body,
    )
        .into_response())
}
