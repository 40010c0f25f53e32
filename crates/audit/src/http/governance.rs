//! Governance endpoints of the caller's tenant, every change itself an event in the tenant's
//! chain, written before the answer:
//!
//! - `GET`, `PUT`, `DELETE /v1/redaction-policy` (`audit_admin`): its own redaction policy,
//!   in force for the next events this instance takes (within
//!   [`crate::redaction::POLICY_TTL`] on other instances);
//! - `GET`, `PUT`, `DELETE /v1/retention-policy` (`audit_admin`): its own retention period;
//! - `POST /v1/subjects/{id}/erase` and `GET /v1/subjects/{id}/export` (`gdpr_manage`).

use super::{store_error, AppState, ErrorBody};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use serde::Serialize;
use std::sync::Arc;
use vigil_core::redaction::Policy;
use vigil_core::time::Timestamp;
use vigil_security::capability::Capability;
use vigil_security::context::SecurityContext;
use vigil_security::error::ApiError;
use vigil_security::extract::{Json, Path};

pub(super) fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/v1/redaction-policy",
            get(get_policy).put(put_policy).delete(delete_policy),
        )
        .route(
            "/v1/retention-policy",
            get(get_retention)
                .put(put_retention)
                .delete(delete_retention),
        )
        .route("/v1/subjects/{subject_id}/erase", post(erase_subject))
        .route("/v1/subjects/{subject_id}/export", get(export_subject))
}

/// The policy that applies to the tenant, and where it comes from.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct PolicyView {
    /// `tenant` (its own) or `fleet` (the service's default).
    source: &'static str,
    /// The policy in force.
    #[schema(value_type = Object)]
    policy: Policy,
}

/// The tenant's redaction policy in force.
#[utoipa::path(get, path = "/v1/redaction-policy", tag = "governance",
    params(("X-Tenant-ID" = String, Header, description = "The caller's tenant (trusted header, loopback only)")),
    responses(
        (status = 200, description = "The policy in force and where it comes from", body = PolicyView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub(super) async fn get_policy(
    ctx: SecurityContext,
    State(app): State<Arc<AppState>>,
) -> Result<Json<PolicyView>, ApiError> {
    ctx.require(Capability::AuditAdmin)?;
    let (policy, own) = app
        .redactor
        .policy_for(&ctx.tenant_id)
        .await
        .map_err(store_error)?;
    Ok(Json(PolicyView {
        source: if own { "tenant" } else { "fleet" },
        policy: (*policy).clone(),
    }))
}

/// Sets the tenant's own redaction policy (in place of the fleet's).
#[utoipa::path(put, path = "/v1/redaction-policy", tag = "governance",
    request_body(content = Object, description = "{mode: off|log|enforce, rules: [{path: payload.…, action: mask|hmac|drop}]}"),
    params(("X-Tenant-ID" = String, Header, description = "The caller's tenant (trusted header, loopback only)")),
    responses(
        (status = 200, description = "Stored; in force for the events taken from now on", body = PolicyView),
        (status = 400, description = "Not a policy, or one that cannot work (the reason is named)", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
pub(super) async fn put_policy(
    ctx: SecurityContext,
    State(app): State<Arc<AppState>>,
    Json(policy): Json<Policy>,
) -> Result<Json<PolicyView>, ApiError> {
    ctx.require(Capability::AuditAdmin)?;
    app.store
        .set_redaction_policy(&ctx.tenant_id, Some(&policy), Timestamp::now())
        .await
        .map_err(store_error)?;
    app.redactor.forget(&ctx.tenant_id);
    record(&app, &ctx, "audit.redaction_policy.changed", Some(&policy)).await?;
    Ok(Json(PolicyView {
        source: "tenant",
        policy,
    }))
}

/// Removes the tenant's own policy: the fleet's applies again.
#[utoipa::path(delete, path = "/v1/redaction-policy", tag = "governance",
    params(("X-Tenant-ID" = String, Header, description = "The caller's tenant (trusted header, loopback only)")),
    responses(
        (status = 204, description = "Removed (or there was none)"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub(super) async fn delete_policy(
    ctx: SecurityContext,
    State(app): State<Arc<AppState>>,
) -> Result<StatusCode, ApiError> {
    ctx.require(Capability::AuditAdmin)?;
    app.store
        .set_redaction_policy(&ctx.tenant_id, None, Timestamp::now())
        .await
        .map_err(store_error)?;
    app.redactor.forget(&ctx.tenant_id);
    record(&app, &ctx, "audit.redaction_policy.removed", None).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The change, in the tenant's chain before the answer (DESIGN.md: removal is itself a record).
async fn record(
    app: &AppState,
    ctx: &SecurityContext,
    action: &str,
    policy: Option<&Policy>,
) -> Result<(), ApiError> {
    let fields = match policy {
        Some(p) => vec![
            ("mode", p.mode.as_str().into()),
            (
                "rules",
                serde_json::to_value(&p.rules).expect("rules serialize"),
            ),
            (
                "sensitive",
                serde_json::to_value(&p.sensitive).expect("paths serialize"),
            ),
        ],
        None => Vec::new(),
    };
    super::record_caller_act(
        app,
        ctx,
        action,
        ("redaction_policy", ctx.tenant_id.as_str()),
        fields,
    )
    .await
}

/// The retention period that applies to the tenant, and where it comes from.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct RetentionView {
    /// `tenant` (its own), `fleet` (the service's) or `off` (the service keeps all and the
    /// tenant has no period of its own).
    source: &'static str,
    /// Days payload values are kept (absent when `off`).
    #[serde(skip_serializing_if = "Option::is_none")]
    days: Option<u64>,
}

/// A tenant's own retention period.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RetentionBody {
    /// Days payload values are kept, 1 to 36500 (a whole number; `30.0` is 30, as JSON
    /// Schema counts it).
    #[schema(value_type = i64, minimum = 1, maximum = 36500)]
    days: f64,
}

async fn retention_view(
    app: &AppState,
    tenant: &vigil_core::ids::TenantId,
) -> Result<RetentionView, ApiError> {
    let own = app
        .store
        .retention_days(tenant)
        .await
        .map_err(store_error)?;
    Ok(match (own, app.retention) {
        (Some(d), _) => RetentionView {
            source: "tenant",
            days: Some(u64::from(d)),
        },
        (None, Some(keep)) => RetentionView {
            source: "fleet",
            days: Some(keep.as_secs().div_ceil(86_400)),
        },
        (None, None) => RetentionView {
            source: "off",
            days: None,
        },
    })
}

/// The tenant's retention period in force.
#[utoipa::path(get, path = "/v1/retention-policy", tag = "governance",
    params(("X-Tenant-ID" = String, Header, description = "The caller's tenant (trusted header, loopback only)")),
    responses(
        (status = 200, description = "The period in force and where it comes from", body = RetentionView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub(super) async fn get_retention(
    ctx: SecurityContext,
    State(app): State<Arc<AppState>>,
) -> Result<Json<RetentionView>, ApiError> {
    ctx.require(Capability::AuditAdmin)?;
    Ok(Json(retention_view(&app, &ctx.tenant_id).await?))
}

/// Sets the tenant's own retention period (in place of the service's).
#[utoipa::path(put, path = "/v1/retention-policy", tag = "governance",
    request_body = RetentionBody,
    params(("X-Tenant-ID" = String, Header, description = "The caller's tenant (trusted header, loopback only)")),
    responses(
        (status = 200, description = "Stored; the next retention run uses it", body = RetentionView),
        (status = 400, description = "Not a period of 1 to 36500 days", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
pub(super) async fn put_retention(
    ctx: SecurityContext,
    State(app): State<Arc<AppState>>,
    Json(body): Json<RetentionBody>,
) -> Result<Json<RetentionView>, ApiError> {
    ctx.require(Capability::AuditAdmin)?;
    let max = crate::retention::MAX_DAYS;
    let days = Some(body.days)
        .filter(|d| d.fract() == 0.0 && (1.0..=f64::from(max)).contains(d))
        .map(|d| d as u32)
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "days: must be 1 to {max} (got {}); to keep everything, remove the tenant's period and run the service with retention off",
                body.days
            ))
        })?;
    app.store
        .set_retention_days(&ctx.tenant_id, Some(days), Timestamp::now())
        .await
        .map_err(store_error)?;
    super::record_caller_act(
        &app,
        &ctx,
        "audit.retention_policy.changed",
        ("retention_policy", ctx.tenant_id.as_str()),
        vec![("days", days.into())],
    )
    .await?;
    Ok(Json(retention_view(&app, &ctx.tenant_id).await?))
}

/// Removes the tenant's own period: the service's applies again.
#[utoipa::path(delete, path = "/v1/retention-policy", tag = "governance",
    params(("X-Tenant-ID" = String, Header, description = "The caller's tenant (trusted header, loopback only)")),
    responses(
        (status = 204, description = "Removed (or there was none)"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub(super) async fn delete_retention(
    ctx: SecurityContext,
    State(app): State<Arc<AppState>>,
) -> Result<StatusCode, ApiError> {
    ctx.require(Capability::AuditAdmin)?;
    app.store
        .set_retention_days(&ctx.tenant_id, None, Timestamp::now())
        .await
        .map_err(store_error)?;
    super::record_caller_act(
        &app,
        &ctx,
        "audit.retention_policy.removed",
        ("retention_policy", ctx.tenant_id.as_str()),
        Vec::new(),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What erasing a subject did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ErasureView {
    /// The subject's keyed reference (what the store and the receipt hold, never the id).
    subject_ref: String,
    /// `erased` now, or `already_erased` (an earlier receipt; nothing changed).
    status: &'static str,
    /// The seqs of the records whose sealed members can no longer be opened.
    records: Vec<i64>,
    /// When the key was destroyed (RFC 3339).
    erased_at: String,
    /// The receipt: a note signed with the checkpoint key (`vigil verify` checks it).
    receipt: String,
}

/// Everything stored about a subject.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct SubjectExport {
    /// The subject's keyed reference.
    subject_ref: String,
    /// The records that hold the subject's sealed members, oldest first, with every value
    /// (members of an erased subject withheld as `erased`).
    #[schema(value_type = Vec<Object>)]
    records: Vec<vigil_core::record::Record>,
}

fn erasure_error(e: crate::erasure::ErasureError) -> ApiError {
    use crate::erasure::ErasureError;
    match e {
        ErasureError::BadId(_) => ApiError::BadRequest(e.to_string()),
        ErasureError::Unknown => ApiError::NotFound(e.to_string()),
        ErasureError::Store(s) => store_error(s),
    }
}

/// Erases a data subject: its key is destroyed after a signed receipt is appended.
#[utoipa::path(post, path = "/v1/subjects/{subject_id}/erase", tag = "governance",
    params(
        ("subject_id" = String, Path, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]+$", max_length = 256, description = "The subject's id, as events carry it at the policy's subject path (1 to 256 characters, no control characters)"),
        ("X-Tenant-ID" = String, Header, description = "The caller's tenant (trusted header, loopback only)")),
    responses(
        (status = 200, description = "Erased now, or before (idempotent)", body = ErasureView),
        (status = 400, description = "Not a subject id", body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, description = "Nothing is stored about this subject", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub(super) async fn erase_subject(
    ctx: SecurityContext,
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<ErasureView>, ApiError> {
    ctx.require(Capability::GdprManage)?;
    let done = crate::erasure::erase(
        &app.redactor,
        &app.store,
        &app.checkpointer,
        &app.sequencer,
        &ctx.tenant_id,
        &id,
    )
    .await
    .map_err(erasure_error)?;
    if !done.already {
        app.metrics.subjects_erased.inc();
    }
    // Who asked, in the chain (the receipt itself is the system's record of the erasure).
    super::record_caller_act(
        &app,
        &ctx,
        "audit.subject.erase_requested",
        ("subject", &done.subject_ref),
        vec![("already_erased", done.already.into())],
    )
    .await?;
    Ok(Json(ErasureView {
        subject_ref: done.subject_ref,
        status: if done.already {
            "already_erased"
        } else {
            "erased"
        },
        records: done.statement.seqs,
        erased_at: done.statement.erased_at.to_rfc3339(),
        receipt: done.receipt,
    }))
}

/// Everything stored about a data subject (the access request of GDPR), itself recorded.
#[utoipa::path(get, path = "/v1/subjects/{subject_id}/export", tag = "governance",
    params(
        ("subject_id" = String, Path, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]+$", max_length = 256, description = "The subject's id, as events carry it at the policy's subject path (1 to 256 characters, no control characters)"),
        ("X-Tenant-ID" = String, Header, description = "The caller's tenant (trusted header, loopback only)")),
    responses(
        (status = 200, description = "The subject's records with their values", body = SubjectExport),
        (status = 400, description = "Not a subject id", body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, description = "Nothing is stored about this subject", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub(super) async fn export_subject(
    ctx: SecurityContext,
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<SubjectExport>, ApiError> {
    ctx.require(Capability::GdprManage)?;
    let (subject_ref, records) =
        crate::erasure::export(&app.redactor, &app.store, &ctx.tenant_id, &id)
            .await
            .map_err(erasure_error)?;
    super::record_caller_act(
        &app,
        &ctx,
        "audit.subject.exported",
        ("subject", &subject_ref),
        vec![("records", records.len().into())],
    )
    .await?;
    app.metrics
        .records_served
        .with_label_values(&["full"])
        .inc_by(records.len() as u64);
    Ok(Json(SubjectExport {
        subject_ref,
        records,
    }))
}
