//! The auth service's routes.
//!
//! Public: `GET /.well-known/jwks.json`, `GET /.well-known/openid-configuration`,
//! `POST /oauth/token` (client credentials), `POST /v1/login` (tenant users), `/healthz`,
//! `/readyz`, `/metrics`. Everything else needs a caller with a capability: users, service
//! clients and API keys of the caller's own tenant need `identity_manage`; signing keys need
//! `keys_manage`.
//!
//! One module per resource, each with its own `router()`: [`tokens`], [`users`], [`clients`],
//! [`api_keys`], [`keys`]; what the command line does too lives in [`crate::service`].

mod api_keys;
mod clients;
mod keys;
mod tokens;
mod users;
mod views;

use crate::events::{event, Actor};
use crate::keyring::{unix_now, KeyRing};
use crate::service::{self, valid_name};
use crate::store::{ApiKeyRow, AuthStore, KeyState};
use crate::throttle::{self, Attempt, ThrottlePolicy};
use axum::extract::{ConnectInfo, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use base64::Engine;
use prometheus::{IntCounterVec, Opts, Registry};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use vigil_auth::password::PasswordPolicy;
use vigil_auth::{password, secret, Claims};
use vigil_core::event::{Outcome, Severity};
use vigil_core::ids::TenantId;
use vigil_security::capability::{Capability, Role, RoleSet};
use vigil_security::context::SecurityContext;
use vigil_security::error::{ApiError, ErrorBody};
use vigil_security::extract::{Form, Json, Path};
use vigil_store::StoreError;

/// Shared by every handler.
#[derive(Debug)]
pub struct AppState {
    /// The database.
    pub store: AuthStore,
    /// Signing keys.
    pub keys: KeyRing,
    /// `iss` of issued tokens.
    pub issuer: String,
    /// `aud` of issued tokens.
    pub audience: String,
    /// Token lifetime.
    pub token_ttl: Duration,
    /// JWKS `max-age`.
    pub jwks_max_age: Duration,
    /// Password rules.
    pub passwords: PasswordPolicy,
    /// Login throttling limits.
    pub throttle: ThrottlePolicy,
    /// Peers whose `X-Forwarded-For` names the caller (the gateway).
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Metrics registry.
    pub registry: Registry,
    tokens: IntCounterVec,
    logins: IntCounterVec,
    throttled: IntCounterVec,
}

impl AppState {
    /// State with its metrics registered in `registry`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: AuthStore,
        keys: KeyRing,
        issuer: String,
        audience: String,
        token_ttl: Duration,
        jwks_max_age: Duration,
        passwords: PasswordPolicy,
        throttle: ThrottlePolicy,
        trusted_proxies: Vec<std::net::IpAddr>,
        registry: Registry,
    ) -> AppState {
        let tokens = IntCounterVec::new(
            Opts::new("auth_tokens_issued_total", "Tokens issued by grant"),
            &["grant"],
        )
        .expect("valid metric");
        let logins = IntCounterVec::new(
            Opts::new("auth_logins_total", "Login attempts by outcome"),
            &["outcome"],
        )
        .expect("valid metric");
        registry.register(Box::new(tokens.clone())).expect("once");
        let throttled = IntCounterVec::new(
            Opts::new(
                "auth_login_throttled_total",
                "Login attempts refused by throttling, by the counter that refused them",
            ),
            &["scope"],
        )
        .expect("valid metric");
        registry.register(Box::new(logins.clone())).expect("once");
        registry
            .register(Box::new(throttled.clone()))
            .expect("once");
        AppState {
            store,
            keys,
            issuer,
            audience,
            token_ttl,
            jwks_max_age,
            passwords,
            throttle,
            trusted_proxies,
            registry,
            tokens,
            logins,
            throttled,
        }
    }

    fn issue(&self, sub: String, tenant: &TenantId, roles: Vec<String>) -> views::AccessToken {
        let now = unix_now();
        let ttl = self.token_ttl.as_secs() as i64;
        let token = self.keys.signer().sign(&Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub,
            exp: now + ttl,
            iat: now,
            nbf: now,
            jti: uuid::Uuid::new_v4().simple().to_string(),
            tenant_id: tenant.as_str().to_owned(),
            roles,
        });
        views::AccessToken {
            access_token: token,
            token_type: "Bearer",
            expires_in: ttl,
        }
    }
}

/// All routes (the identity layer is added by [`crate::app`]).
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .merge(tokens::router())
        .merge(users::router())
        .merge(clients::router())
        .merge(api_keys::router())
        .merge(keys::router())
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/openapi.json", get(|| async { Json(openapi_document()) }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

fn store_error(e: StoreError) -> ApiError {
    service::ServiceError::from(e).into()
}

/// The names of `roles`, as tokens and responses carry them.
fn role_names(roles: RoleSet) -> Vec<String> {
    roles.into()
}

/// The roles a request asks to grant, if the caller may hand them out: only roles whose
/// capabilities it holds itself (403: the request is well-formed; the caller lacks what the
/// roles would hold). Unknown role names were refused where the body was read.
fn grantable_roles(ctx: &SecurityContext, roles: RoleSet) -> Result<RoleSet, ApiError> {
    ctx.may_delegate(roles).map_err(ApiError::MissingRole)?;
    Ok(roles)
}

/// Signing keys are the platform's, not a tenant's: `keys_manage` counts only for callers in
/// the system tenant.
fn require_keys_manage(app: &AppState, ctx: &SecurityContext) -> Result<(), ApiError> {
    ctx.require(Capability::KeysManage)?;
    if ctx.tenant_id != app.keys.policy().system_tenant {
        return Err(ApiError::MissingRole(Capability::KeysManage));
    }
    Ok(())
}

/// A successful change made by the caller, recorded in the caller's tenant.
fn caller_event(
    ctx: &SecurityContext,
    action: &str,
    resource: (&str, &str),
    payload: Value,
) -> Vec<crate::store::OutboxEvent> {
    vec![(
        ctx.tenant_id.clone(),
        event(
            actor_of(ctx),
            action,
            resource,
            Outcome::Success,
            Severity::Notice,
            payload,
        ),
    )]
}

fn actor_of(ctx: &SecurityContext) -> Actor<'_> {
    Actor::User(ctx.user_id.as_deref().unwrap_or("unknown"))
}

#[utoipa::path(get, path = "/readyz", tag = "ops", responses((status = 200, body = views::Ready), (status = 503, body = ErrorBody)))]
async fn readyz(State(app): State<Arc<AppState>>) -> Result<Json<views::Ready>, ApiError> {
    match tokio::time::timeout(Duration::from_secs(2), app.store.ping()).await {
        Ok(Ok(())) => Ok(Json(views::Ready {
            status: "ready",
            signing_kid: app.keys.signer().kid().to_owned(),
        })),
        _ => Err(ApiError::Unavailable(
            "the auth database does not answer".into(),
        )),
    }
}

#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
async fn metrics(State(app): State<Arc<AppState>>) -> impl IntoResponse {
    let mut out = String::new();
    let _ = prometheus::TextEncoder::new().encode_utf8(&app.registry.gather(), &mut out);
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

#[derive(Debug, utoipa::OpenApi)]
#[openapi(
    info(
        title = "Vigil auth API",
        description = "Tokens (client credentials, password login), JWKS, signing keys, users, service clients and API keys. Every refusal is the error shape, its code also in X-Error-Code."
    ),
    paths(
        tokens::jwks,
        tokens::discovery,
        tokens::token,
        tokens::login,
        users::create_user,
        users::list_users,
        users::delete_user,
        clients::create_client,
        api_keys::create_api_key,
        api_keys::list_api_keys,
        api_keys::revoke_api_key,
        api_keys::rotate_api_key,
        api_keys::introspect_api_key,
        keys::list_keys,
        keys::rotate_keys,
        keys::retire_key,
        readyz,
        metrics,
    ),
    components(schemas(
        tokens::TokenForm,
        tokens::LoginBody,
        users::NewUser,
        clients::NewClient,
        api_keys::NewApiKey,
        api_keys::RotateApiKey,
        api_keys::Introspect,
        views::AccessToken,
        views::Ready,
        views::Discovery,
        views::UserView,
        views::UserList,
        views::NewClientView,
        views::ApiKeyView,
        views::IssuedApiKey,
        views::ApiKeyList,
        views::Introspection,
        views::KeyView,
        views::KeyList,
        views::Rotated,
        ErrorBody
    ))
)]
struct ApiDoc;

/// The auth service's OpenAPI document, with its bearer security scheme.
pub fn openapi_document() -> Value {
    use utoipa::OpenApi;
    let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the document serializes");
    doc["components"]["securitySchemes"]["bearer"] =
        json!({"type": "http", "scheme": "bearer", "bearerFormat": "JWT"});
    let roles: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
    for body in ["NewUser", "NewClient", "NewApiKey"] {
        doc["components"]["schemas"][body]["properties"]["roles"]["items"] =
            json!({"type": "string", "enum": roles});
    }
    doc["components"]["schemas"]["TokenForm"]["properties"]["grant_type"] =
        json!({"type": "string", "enum": ["client_credentials"]});
    doc["components"]["schemas"]["TokenForm"]["required"] = json!(["grant_type"]);
    doc
}
