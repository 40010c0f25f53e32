//! `GET`, `PUT`, `DELETE /v1/redaction-policy`: the caller's tenant's own redaction policy
//! (`audit_admin`). Every change is itself an event in the tenant's chain, written before
//! the answer, and takes effect for the next events this instance takes (within
//! [`crate::redaction::POLICY_TTL`] on other instances).

use super::{store_error, AppState, ErrorBody};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use serde::Serialize;
use std::sync::Arc;
use vigil_core::redaction::Policy;
use vigil_core::time::Timestamp;
use vigil_security::capability::Capability;
use vigil_security::context::SecurityContext;
use vigil_security::error::ApiError;
use vigil_security::extract::Json;

pub(super) fn router() -> Router<Arc<AppState>> {
    Router::new().route(
        "/v1/redaction-policy",
        get(get_policy).put(put_policy).delete(delete_policy),
    )
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
