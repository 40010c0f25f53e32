//! Webhook subscriptions of the caller's tenant (`audit_admin`), each change an event in the
//! tenant's chain:
//!
//! - `POST /v1/webhooks`: subscribe a URL (`kinds`: `events`, `alerts`; `filter`:
//!   `min_severity`, `actions`); the answer shows the signing secret, once;
//! - `GET /v1/webhooks`, `DELETE /v1/webhooks/{id}`;
//! - `POST /v1/webhooks/{id}/rotate-secret`: a new secret, the old one honoured for the overlap;
//! - `GET /v1/webhooks/{id}/deliveries?status=pending|delivered|dead`: the delivery log;
//! - `POST /v1/webhooks/{id}/deliveries/{delivery_id}/retry`: send a dead letter again.

use super::{store_error, AppState, ErrorBody};
use crate::webhooks::WebhookError;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use vigil_core::webhook::Filter;
use vigil_security::capability::Capability;
use vigil_security::context::SecurityContext;
use vigil_security::error::ApiError;
use vigil_security::extract::{Json, Path, Query};
use vigil_store::{Delivery, WebhookSubscription};

pub(super) fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/webhooks", get(list).post(create))
        .route("/v1/webhooks/{id}", delete(remove))
        .route("/v1/webhooks/{id}/rotate-secret", post(rotate))
        .route("/v1/webhooks/{id}/deliveries", get(deliveries))
        .route(
            "/v1/webhooks/{id}/deliveries/{delivery_id}/retry",
            post(retry),
        )
}

fn refusal(e: WebhookError) -> ApiError {
    match e {
        WebhookError::Invalid(m) => ApiError::BadRequest(m),
        WebhookError::NotFound => ApiError::NotFound(e.to_string()),
        WebhookError::Store(s) => store_error(s),
        WebhookError::Secret(_) => ApiError::internal(e),
    }
}

/// A subscription to make.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewWebhook {
    /// Where deliveries are POSTed (http or https, at most 2048 characters).
    #[schema(max_length = 2048, example = "https://hooks.example.com/vigil")]
    url: String,
    /// `events` (records matching the filter) and/or `alerts` (Vigil's own, e.g. a chain that
    /// fails verification). Default: events.
    #[serde(default)]
    #[schema(value_type = Vec<String>, max_items = 2)]
    kinds: Vec<String>,
    /// Which records: `{"min_severity": "security", "actions": ["payment.*"]}`. Default: all.
    #[serde(default)]
    #[schema(value_type = Object)]
    filter: Filter,
}

/// A subscription (its secrets are never shown again).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct WebhookView {
    id: String,
    url: String,
    kinds: Vec<String>,
    #[schema(value_type = Object)]
    filter: serde_json::Value,
    created_at: String,
    /// Present once: when the subscription is made, and after a rotation.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

impl WebhookView {
    fn of(s: &WebhookSubscription, secret: Option<String>) -> WebhookView {
        WebhookView {
            id: s.id.clone(),
            url: s.url.clone(),
            kinds: s.kinds.clone(),
            filter: serde_json::from_str(&s.filter).unwrap_or_default(),
            created_at: s.created_at.clone(),
            secret,
        }
    }
}

/// The tenant's subscriptions.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct WebhookList {
    webhooks: Vec<WebhookView>,
}

/// Subscribes a URL; the secret in the answer is shown this once.
#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks",
    request_body = NewWebhook,
    params(("X-Tenant-ID" = String, Header, description = "The caller's tenant (trusted header, loopback only)")),
    responses(
        (status = 201, description = "Subscribed, from the chain's head on; `secret` (whsec_…) signs every delivery", body = WebhookView),
        (status = 400, description = "Not an http(s) URL, an unknown kind or an invalid filter", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
pub(super) async fn create(
    ctx: SecurityContext,
    State(app): State<Arc<AppState>>,
    Json(body): Json<NewWebhook>,
) -> Result<(StatusCode, Json<WebhookView>), ApiError> {
    ctx.require(Capability::AuditAdmin)?;
    let made = app
        .webhooks
        .create(&ctx.tenant_id, &body.url, body.kinds, body.filter)
        .await
        .map_err(refusal)?;
    let s = &made.subscription;
    super::record_caller_act(
        &app,
        &ctx,
        "audit.webhook.created",
        ("webhook", &s.id),
        vec![
            ("url", s.url.clone().into()),
            ("kinds", s.kinds.clone().into()),
        ],
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(WebhookView::of(s, Some(made.secret.expose()))),
    ))
}

/// The tenant's subscriptions.
#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks",
    params(("X-Tenant-ID" = String, Header, description = "The caller's tenant (trusted header, loopback only)")),
    responses(
        (status = 200, description = "Every subscription of the tenant", body = WebhookList),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub(super) async fn list(
    ctx: SecurityContext,
    State(app): State<Arc<AppState>>,
) -> Result<Json<WebhookList>, ApiError> {
    ctx.require(Capability::AuditAdmin)?;
    let subs = app
        .webhooks
        .list(&ctx.tenant_id)
        .await
        .map_err(store_error)?;
    Ok(Json(WebhookList {
        webhooks: subs.iter().map(|s| WebhookView::of(s, None)).collect(),
    }))
}

const ID_PATTERN: &str = "^wh_[0-9a-f]{32}$";

fn check_id(id: &str) -> Result<(), ApiError> {
    let ok = id.strip_prefix("wh_").is_some_and(|h| {
        h.len() == 32
            && h.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    });
    if ok {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!("id: must match {ID_PATTERN}")))
    }
}

/// Removes a subscription and its delivery log.
#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "webhooks",
    params(
        ("id" = String, Path, pattern = "^wh_[0-9a-f]{32}$", description = "The subscription"),
        ("X-Tenant-ID" = String, Header, description = "The caller's tenant (trusted header, loopback only)"),
    ),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
pub(super) async fn remove(
    ctx: SecurityContext,
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    ctx.require(Capability::AuditAdmin)?;
    check_id(&id)?;
    app.webhooks
        .delete(&ctx.tenant_id, &id)
        .await
        .map_err(refusal)?;
    super::record_caller_act(
        &app,
        &ctx,
        "audit.webhook.deleted",
        ("webhook", &id),
        vec![],
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A rotated secret.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Rotated {
    /// The new secret (whsec_…), shown this once; it signs every delivery from now on.
    secret: String,
    /// Until then (Unix seconds) deliveries are also signed with the previous secret.
    previous_valid_until: i64,
}

/// A new signing secret; the previous one keeps signing beside it for the overlap (24 h by
/// default), so the receiver can switch without refusing a delivery.
#[utoipa::path(post, path = "/v1/webhooks/{id}/rotate-secret", tag = "webhooks",
    params(
        ("id" = String, Path, pattern = "^wh_[0-9a-f]{32}$", description = "The subscription"),
        ("X-Tenant-ID" = String, Header, description = "The caller's tenant (trusted header, loopback only)"),
    ),
    responses(
        (status = 200, description = "Rotated", body = Rotated),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
pub(super) async fn rotate(
    ctx: SecurityContext,
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Rotated>, ApiError> {
    ctx.require(Capability::AuditAdmin)?;
    check_id(&id)?;
    let (secret, until) = app
        .webhooks
        .rotate(&ctx.tenant_id, &id)
        .await
        .map_err(refusal)?;
    super::record_caller_act(
        &app,
        &ctx,
        "audit.webhook.secret_rotated",
        ("webhook", &id),
        vec![("previous_valid_until", until.into())],
    )
    .await?;
    Ok(Json(Rotated {
        secret: secret.expose(),
        previous_valid_until: until,
    }))
}

/// A delivery's state.
#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum DeliveryStatus {
    /// Waiting for its next attempt.
    Pending,
    /// A 2xx answer was received.
    Delivered,
    /// Dead-lettered after the last attempt failed.
    Dead,
}

impl DeliveryStatus {
    fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Dead => "dead",
        }
    }
}

/// Which deliveries to list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeliveryParams {
    /// `pending`, `delivered` or `dead` (the dead-letter queue); all when absent.
    status: Option<DeliveryStatus>,
    /// At most this many, newest first (default 100).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
}

/// One delivery.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct DeliveryView {
    id: String,
    /// The `webhook-id` header: the same on every attempt.
    message_id: String,
    #[serde(rename = "type")]
    event_type: String,
    status: String,
    attempts: i64,
    /// When the next attempt is due (Unix ms), while pending.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_attempt_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_status: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    delivered_at: Option<String>,
    /// What was (or will be) sent.
    #[schema(value_type = Object)]
    body: serde_json::Value,
}

impl From<Delivery> for DeliveryView {
    fn from(d: Delivery) -> Self {
        DeliveryView {
            next_attempt_at: (d.status == "pending").then_some(d.next_attempt_at),
            body: serde_json::from_str(&d.body).unwrap_or_default(),
            id: d.id,
            message_id: d.message_id,
            event_type: d.event_type,
            status: d.status,
            attempts: d.attempts,
            last_status: d.last_status,
            last_error: d.last_error,
            created_at: d.created_at,
            delivered_at: d.delivered_at,
        }
    }
}

/// A subscription's deliveries.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct DeliveryLog {
    deliveries: Vec<DeliveryView>,
}

/// The delivery log of a subscription (with `status=dead`: its dead-letter queue).
#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries", tag = "webhooks",
    params(
        ("id" = String, Path, pattern = "^wh_[0-9a-f]{32}$", description = "The subscription"),
        DeliveryParams,
        ("X-Tenant-ID" = String, Header, description = "The caller's tenant (trusted header, loopback only)"),
    ),
    responses(
        (status = 200, description = "Newest first", body = DeliveryLog),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
pub(super) async fn deliveries(
    ctx: SecurityContext,
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(p): Query<DeliveryParams>,
) -> Result<Json<DeliveryLog>, ApiError> {
    ctx.require(Capability::AuditAdmin)?;
    check_id(&id)?;
    let limit = p.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::BadRequest("limit: 1 to 500".into()));
    }
    let list = app
        .webhooks
        .deliveries(
            &ctx.tenant_id,
            &id,
            p.status.map(DeliveryStatus::as_str),
            limit,
        )
        .await
        .map_err(refusal)?;
    Ok(Json(DeliveryLog {
        deliveries: list.into_iter().map(DeliveryView::from).collect(),
    }))
}

/// Sends a dead-lettered (or still pending) delivery again now, its attempts counted afresh.
#[utoipa::path(post, path = "/v1/webhooks/{id}/deliveries/{delivery_id}/retry", tag = "webhooks",
    params(
        ("id" = String, Path, pattern = "^wh_[0-9a-f]{32}$", description = "The subscription"),
        ("delivery_id" = String, Path, pattern = "^dlv_[0-9a-f]{32}$", description = "The delivery"),
        ("X-Tenant-ID" = String, Header, description = "The caller's tenant (trusted header, loopback only)"),
    ),
    responses(
        (status = 202, description = "Queued"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "No such delivery, or it was delivered", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub(super) async fn retry(
    ctx: SecurityContext,
    State(app): State<Arc<AppState>>,
    Path((id, delivery_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    ctx.require(Capability::AuditAdmin)?;
    check_id(&id)?;
    app.webhooks
        .retry(&ctx.tenant_id, &id, &delivery_id)
        .await
        .map_err(refusal)?;
    super::record_caller_act(
        &app,
        &ctx,
        "audit.webhook.redelivered",
        ("webhook", &id),
        vec![("delivery_id", delivery_id.clone().into())],
    )
    .await?;
    Ok(StatusCode::ACCEPTED)
}
