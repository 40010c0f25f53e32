//! The auth service's routes.
//!
//! Public: `GET /.well-known/jwks.json`, `GET /.well-known/openid-configuration`,
//! `POST /oauth/token` (client credentials), `POST /v1/login` (tenant users), `/healthz`,
//! `/readyz`, `/metrics`. Everything else needs a caller with a capability: users, service
//! clients and API keys of the caller's own tenant need `identity_manage`; signing keys need
//! `keys_manage`.

use crate::events::{event, Actor};
use crate::keyring::{unix_now, KeyRing};
use crate::store::{ApiKeyRow, AuthStore, ClientRow, KeyState, UserRow};
use crate::throttle::{self, Attempt, ThrottlePolicy};
use axum::extract::{ConnectInfo, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use base64::Engine;
use prometheus::{IntCounterVec, Opts, Registry};
use serde::Deserialize;
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

    fn issue(&self, sub: String, tenant: &TenantId, roles: Vec<String>) -> Value {
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
        json!({"access_token": token, "token_type": "Bearer", "expires_in": ttl})
    }
}

/// All routes (the identity layer is added by [`crate::app`]).
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/.well-known/jwks.json", get(jwks))
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/oauth/token", post(token))
        .route("/v1/login", post(login))
        .route("/v1/users", post(create_user).get(list_users))
        .route("/v1/users/{username}", delete(delete_user))
        .route("/v1/clients", post(create_client))
        .route("/v1/api-keys", post(create_api_key).get(list_api_keys))
        .route("/v1/api-keys/{id}", delete(revoke_api_key))
        .route("/v1/api-keys/{id}/rotate", post(rotate_api_key))
        .route("/v1/api-keys/introspect", post(introspect_api_key))
        .route("/v1/keys", get(list_keys))
        .route("/v1/keys/rotate", post(rotate_keys))
        .route("/v1/keys/{kid}/retire", post(retire_key))
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/openapi.json", get(|| async { Json(openapi_document()) }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Conflict { message, .. } => ApiError::Conflict(message),
        e if e.is_unavailable() => ApiError::Unavailable("the auth database is unavailable".into()),
        e => ApiError::Internal(e.to_string()),
    }
}

/// The role names of a stored comma-separated list.
fn role_names(stored: &str) -> Vec<String> {
    stored
        .split(',')
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Role names from a request: every name must be a role.
fn parse_roles(names: &[String]) -> Result<RoleSet, ApiError> {
    if let Some(bad) = names.iter().find(|n| Role::parse(n).is_none()) {
        return Err(ApiError::BadRequest(format!("{bad:?} is not a role")));
    }
    Ok(RoleSet::from_names(names.iter().map(String::as_str)))
}

/// A caller may hand out only roles whose capabilities they hold themselves.
fn may_grant(ctx: &SecurityContext, roles: RoleSet) -> Result<(), ApiError> {
    // 403: the request is well-formed; the caller lacks what the roles would hold.
    ctx.may_delegate(roles).map_err(ApiError::MissingRole)
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

#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "keys", responses((status = 200, description = "The public signing keys (RFC 7517), with Cache-Control max-age", body = Object)))]
async fn jwks(State(app): State<Arc<AppState>>) -> Response {
    (
        [
            (CONTENT_TYPE, "application/json".to_owned()),
            (
                CACHE_CONTROL,
                format!("public, max-age={}", app.jwks_max_age.as_secs()),
            ),
        ],
        app.keys.jwks(),
    )
        .into_response()
}

#[utoipa::path(get, path = "/.well-known/openid-configuration", tag = "keys", responses((status = 200, description = "OpenID Provider metadata", body = Object)))]
async fn discovery(State(app): State<Arc<AppState>>) -> Json<Value> {
    let base = app.issuer.trim_end_matches('/');
    Json(json!({
        "issuer": app.issuer,
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "token_endpoint": format!("{base}/oauth/token"),
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "id_token_signing_alg_values_supported": [app.keys.signer().algorithm().as_str()],
        "response_types_supported": ["token"],
        "subject_types_supported": ["public"],
    }))
}

// No deny_unknown_fields: RFC 6749 §3.2 says the server MUST ignore unrecognised parameters
// (clients send `scope`, `audience`, …).
#[derive(Deserialize, utoipa::ToSchema)]
struct TokenForm {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// `POST /oauth/token`, `grant_type=client_credentials`, client authenticated by HTTP Basic
/// or by `client_id`/`client_secret` in the form.
#[utoipa::path(post, path = "/oauth/token", tag = "tokens",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "An access token (RFC 6749 §5.1)", body = Object),
        (status = 400, description = "grant_type is not client_credentials, or the form does not parse", body = ErrorBody),
        (status = 401, description = "Client authentication failed", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
    ))]
async fn token(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Result<Json<Value>, ApiError> {
    if form.grant_type.as_deref() != Some("client_credentials") {
        return Err(ApiError::BadRequest(
            "grant_type must be client_credentials".into(),
        ));
    }
    let basic = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.split_once(':').map(|(a, b)| (a.to_owned(), b.to_owned())));
    let (id, secret) = match (basic, form.client_id, form.client_secret) {
        (Some(pair), _, _) => pair,
        (None, Some(id), Some(secret)) => (id, secret),
        _ => {
            return Err(ApiError::Unauthenticated(
                "client authentication is required (HTTP Basic or client_id/client_secret)".into(),
            ))
        }
    };
    let client = app.store.client(&id).await.map_err(store_error)?;
    let stored = client.as_ref().map_or_else(
        || password::decoy_hash().to_owned(),
        |c| c.secret_hash.clone(),
    );
    let ok = tokio::task::spawn_blocking(move || password::verify(&secret, &stored))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let Some(client) = client.filter(|_| ok) else {
        app.tokens
            .with_label_values(&["client_credentials_refused"])
            .inc();
        return Err(ApiError::Unauthenticated(
            "invalid client credentials".into(),
        ));
    };
    let tenant =
        TenantId::parse(&client.tenant_id).map_err(|e| ApiError::Internal(e.to_string()))?;
    let roles = role_names(&client.roles);
    let body = app.issue(
        format!("client:{}", client.client_id),
        &tenant,
        roles.clone(),
    );
    let ev = event(
        Actor::Service(&client.client_id),
        "auth.token.issued",
        ("client", &client.client_id),
        Outcome::Success,
        Severity::Info,
        json!({"grant_type": "client_credentials", "roles": roles, "expires_in": body["expires_in"]}),
    );
    app.store
        .record(vec![(tenant, ev)])
        .await
        .map_err(store_error)?;
    app.tokens.with_label_values(&["client_credentials"]).inc();
    Ok(Json(body))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]{0,63}$")]
    tenant_id: String,
    #[schema(min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9._@-]+$")]
    username: String,
    #[schema(min_length = 1, max_length = 1024)]
    password: String,
}

impl std::fmt::Debug for LoginBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginBody")
            .field("tenant_id", &self.tenant_id)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// The caller's address: the peer's, or — when the peer is a trusted proxy (the gateway) —
/// the last address in `X-Forwarded-For`, the one it put there (anything before it came from
/// the client).
fn client_address(app: &AppState, peer: SocketAddr, headers: &HeaderMap) -> String {
    if app.trusted_proxies.contains(&peer.ip()) {
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .next_back()
            .and_then(|a| a.trim().parse::<std::net::IpAddr>().ok());
        if let Some(a) = forwarded {
            return a.to_string();
        }
    }
    peer.ip().to_string()
}

/// The known-device cookie: set on a successful login, sent back by the same browser or
/// client; the server keeps only its hash, per account.
const DEVICE_COOKIE: &str = "vigil_device";

fn device_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == DEVICE_COOKIE)
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

fn device_hash(cookie: &str) -> String {
    use sha2::Digest;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(cookie.as_bytes()))
}

/// `POST /v1/login` `{tenant_id, username, password}`, throttled as [`crate::throttle`] says.
#[utoipa::path(post, path = "/v1/login", tag = "tokens", request_body = LoginBody,
    responses(
        (status = 200, description = "An access token; a new device also gets the vigil_device cookie", body = Object),
        (status = 400, body = ErrorBody),
        (status = 401, description = "Invalid credentials (one answer for an unknown tenant, user or password)", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 429, description = "Throttled: too many failed logins from this source; Retry-After says when to try again", body = ErrorBody),
    ))]
async fn login(
    State(app): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Json(body): Json<LoginBody>,
) -> Result<Response, ApiError> {
    let tenant = TenantId::parse(&body.tenant_id).map_err(|_| {
        ApiError::BadRequest("tenant_id must match [a-z0-9][a-z0-9_-]{0,63}".into())
    })?;
    // No account has a name outside the rule, and such a name cannot be recorded as an actor.
    valid_name("username", &body.username)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let cookie = device_cookie(&headers);
    let mut attempt = Attempt {
        tenant: tenant.clone(),
        username: body.username.clone(),
        address: client_address(&app, peer, &headers),
        device: cookie.as_deref().map(device_hash),
    };
    let policy = app.throttle;
    let standing = app
        .store
        .login_standing(&attempt, now, policy.quiet_reset)
        .await
        .map_err(store_error)?;
    // A tenant the service does not know gets no chain from a stranger's attempt: its events
    // go to the system tenant, naming what was tried.
    let known_tenant = app.store.tenant_known(&tenant).await.map_err(store_error)?;
    let failure = |reason: &str, extra: Value| {
        let mut payload = json!({"reason": reason, "address": attempt.address});
        if let (Value::Object(p), Value::Object(x)) = (&mut payload, extra) {
            p.extend(x);
        }
        let chain = if known_tenant {
            tenant.clone()
        } else {
            payload["tenant_id"] = json!(tenant.as_str());
            app.keys.policy().system_tenant.clone()
        };
        (
            chain,
            event(
                Actor::User(&body.username),
                "auth.login",
                ("user", &body.username),
                Outcome::Failure,
                Severity::Warning,
                payload,
            ),
        )
    };
    if let Some((scope, wait_ms)) = throttle::decide(&policy, &standing, now) {
        let wait = (wait_ms + 999) / 1000;
        app.logins.with_label_values(&["throttled"]).inc();
        app.throttled.with_label_values(&[scope.as_str()]).inc();
        app.store
            .record(vec![failure("throttled", json!({"scope": scope.as_str()}))])
            .await
            .map_err(store_error)?;
        return Ok((
            [(RETRY_AFTER, wait.to_string())],
            ApiError::RateLimited(format!("too many failed logins; try again in {wait} s")),
        )
            .into_response());
    }
    let user = if known_tenant {
        app.store
            .user(&tenant, &body.username)
            .await
            .map_err(store_error)?
    } else {
        None
    };
    let stored = user.as_ref().map_or_else(
        || password::decoy_hash().to_owned(),
        |u| u.password_hash.clone(),
    );
    let exists = user.is_some();
    let pw = body.password.clone();
    let ok = tokio::task::spawn_blocking(move || password::verify(&pw, &stored))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    match user.filter(|_| ok) {
        Some(u) => {
            let roles = role_names(&u.roles);
            let body_json = app.issue(format!("user:{}", u.username), &tenant, roles.clone());
            // A device the account has not seen succeed gets a new cookie (a random token;
            // only its hash is kept), so the next login from it is a known device's.
            let new_cookie = (!standing.device_known).then(|| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
            });
            if let Some(c) = &new_cookie {
                attempt.device = Some(device_hash(c));
            }
            let ev = event(
                Actor::User(&u.username),
                "auth.login",
                ("user", &u.username),
                Outcome::Success,
                Severity::Info,
                json!({"roles": roles, "address": attempt.address, "known_device": standing.device_known}),
            );
            app.store
                .login_succeeded(
                    &attempt,
                    standing.device_known,
                    now,
                    vec![(tenant.clone(), ev)],
                )
                .await
                .map_err(store_error)?;
            app.logins.with_label_values(&["success"]).inc();
            app.tokens.with_label_values(&["password"]).inc();
            let mut resp = Json(body_json).into_response();
            if let Some(c) = new_cookie {
                let secure = if app.issuer.starts_with("https://") {
                    "; Secure"
                } else {
                    ""
                };
                let set = format!(
                    "{DEVICE_COOKIE}={c}; Max-Age=15552000; Path=/v1/login; HttpOnly; SameSite=Strict{secure}"
                );
                if let Ok(v) = axum::http::HeaderValue::from_str(&set) {
                    resp.headers_mut().insert(axum::http::header::SET_COOKIE, v);
                }
            }
            Ok(resp)
        }
        None => {
            app.logins.with_label_values(&["failure"]).inc();
            let reason = match (known_tenant, exists) {
                (false, _) => "unknown_tenant",
                (true, false) => "unknown_user",
                (true, true) => "bad_password",
            };
            app.store
                .login_failed(
                    &attempt,
                    standing.device_known,
                    &policy,
                    now,
                    vec![failure(reason, json!({}))],
                )
                .await
                .map_err(store_error)?;
            Err(ApiError::Unauthenticated("invalid credentials".into()))
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewUser {
    #[schema(min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9._@-]+$")]
    username: String,
    #[schema(
        min_length = 8,
        max_length = 256,
        pattern = "^[^\\u0000-\\u001f\\u007f]*$"
    )]
    password: String,
    #[serde(default)]
    roles: Vec<String>,
}

fn valid_name(what: &str, s: &str) -> Result<(), ApiError> {
    if s.is_empty()
        || s.len() > 128
        || !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b))
    {
        return Err(ApiError::BadRequest(format!(
            "{what} must be 1 to 128 characters of letters, digits, '.', '_', '@' or '-'"
        )));
    }
    Ok(())
}

/// Creates a user in the caller's tenant, checking the password against the policy.
pub async fn add_user(
    store: &AuthStore,
    policy: &PasswordPolicy,
    tenant: &TenantId,
    username: &str,
    password_text: &str,
    roles: RoleSet,
    actor: Actor<'_>,
) -> Result<(), ApiError> {
    valid_name("username", username)?;
    policy
        .check(password_text, &[username, tenant.as_str(), "vigil"])
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let pw = password_text.to_owned();
    let hash = tokio::task::spawn_blocking(move || password::hash(&pw))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let ev = event(
        actor,
        "auth.user.created",
        ("user", username),
        Outcome::Success,
        Severity::Notice,
        json!({"roles": roles.names()}),
    );
    store
        .create_user(
            &UserRow {
                tenant_id: tenant.as_str().to_owned(),
                username: username.to_owned(),
                password_hash: hash,
                roles: roles.names().join(","),
                created_at: unix_now(),
                failed_logins: 0,
                locked_until: 0,
            },
            vec![(tenant.clone(), ev)],
        )
        .await
        .map_err(store_error)
}

#[utoipa::path(post, path = "/v1/users", tag = "users", request_body = NewUser, security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = Object),
        (status = 400, description = "A field is missing, unknown or invalid; the password breaks the policy", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, description = "The user exists", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
    ))]
async fn create_user(
    State(app): State<Arc<AppState>>,
    ctx: SecurityContext,
    Json(body): Json<NewUser>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    ctx.require(Capability::IdentityManage)?;
    let roles = parse_roles(&body.roles)?;
    may_grant(&ctx, roles)?;
    add_user(
        &app.store,
        &app.passwords,
        &ctx.tenant_id,
        &body.username,
        &body.password,
        roles,
        actor_of(&ctx),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({"tenant_id": ctx.tenant_id.as_str(), "username": body.username, "roles": roles.names()}),
        ),
    ))
}

#[utoipa::path(get, path = "/v1/users", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = Object), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_users(
    State(app): State<Arc<AppState>>,
    ctx: SecurityContext,
) -> Result<Json<Value>, ApiError> {
    ctx.require(Capability::IdentityManage)?;
    let users = app.store.users(&ctx.tenant_id).await.map_err(store_error)?;
    Ok(Json(
        json!({"users": users.into_iter().map(|(u, r, c)| json!({"username": u, "roles": role_names(&r), "created_at": c})).collect::<Vec<_>>()}),
    ))
}

#[utoipa::path(delete, path = "/v1/users/{username}", tag = "users", security(("bearer" = [])),
    params(("username" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_user(
    State(app): State<Arc<AppState>>,
    ctx: SecurityContext,
    Path(username): Path<String>,
) -> Result<StatusCode, ApiError> {
    ctx.require(Capability::IdentityManage)?;
    let ev = caller_event(&ctx, "auth.user.deleted", ("user", &username), json!({}));
    if app
        .store
        .delete_user(&ctx.tenant_id, &username, ev)
        .await
        .map_err(store_error)?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!(
            "no user {username:?} in this tenant"
        )))
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewClient {
    #[schema(min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9._@-]+$")]
    name: String,
    #[serde(default)]
    roles: Vec<String>,
}

/// Creates a service client; returns `(client_id, secret)`, the secret shown once.
pub async fn add_client(
    store: &AuthStore,
    tenant: &TenantId,
    name: &str,
    roles: RoleSet,
    actor: Actor<'_>,
) -> Result<(String, secret::Secret), ApiError> {
    valid_name("name", name)?;
    let client_id = format!("vc_{}", uuid::Uuid::new_v4().simple());
    let secret = secret::new_client_secret();
    let s = secret.expose().to_owned();
    let hash = tokio::task::spawn_blocking(move || password::hash(&s))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let ev = event(
        actor,
        "auth.client.created",
        ("client", &client_id),
        Outcome::Success,
        Severity::Notice,
        json!({"name": name, "roles": roles.names()}),
    );
    store
        .create_client(
            &ClientRow {
                client_id: client_id.clone(),
                tenant_id: tenant.as_str().to_owned(),
                name: name.to_owned(),
                secret_hash: hash,
                roles: roles.names().join(","),
                created_at: unix_now(),
            },
            vec![(tenant.clone(), ev)],
        )
        .await
        .map_err(store_error)?;
    Ok((client_id, secret))
}

#[utoipa::path(post, path = "/v1/clients", tag = "clients", request_body = NewClient, security(("bearer" = [])),
    responses(
        (status = 201, description = "Created; the secret is shown once", body = Object),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
    ))]
async fn create_client(
    State(app): State<Arc<AppState>>,
    ctx: SecurityContext,
    Json(body): Json<NewClient>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    ctx.require(Capability::IdentityManage)?;
    let roles = parse_roles(&body.roles)?;
    may_grant(&ctx, roles)?;
    let (id, secret) = add_client(
        &app.store,
        &ctx.tenant_id,
        &body.name,
        roles,
        actor_of(&ctx),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({"client_id": id, "client_secret": secret.expose(), "tenant_id": ctx.tenant_id.as_str(), "roles": roles.names(),
                    "note": "the secret is shown once; store it now"}),
        ),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewApiKey {
    #[schema(min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9._@-]+$")]
    name: String,
    #[serde(default)]
    roles: Vec<String>,
    /// Lifetime in seconds; absent: until revoked.
    #[schema(minimum = 1, maximum = 316_224_000)]
    #[serde(default, deserialize_with = "integral")]
    expires_in: Option<i64>,
}

/// The longest an API key may live: ten years, in seconds.
const MAX_API_KEY_LIFETIME: i64 = 10 * 366 * 86_400;

/// An optional integer that JSON may write as `2871` or `2871.0` (one number type).
fn integral<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let n: Option<serde_json::Number> = Deserialize::deserialize(d)?;
    n.map(|n| {
        n.as_i64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                    .map(|f| f as i64)
            })
            .ok_or_else(|| serde::de::Error::custom(format!("{n} is not an integer")))
    })
    .transpose()
}

fn api_key_json(k: &ApiKeyRow, now: i64) -> Value {
    json!({
        "id": k.id, "name": k.name, "tenant_id": k.tenant_id,
        "roles": role_names(&k.roles),
        "created_at": k.created_at, "expires_at": k.expires_at, "revoked_at": k.revoked_at,
        "replaced_by": k.replaced_by, "active": k.active(now),
    })
}

fn new_api_key_row(
    tenant: &TenantId,
    name: &str,
    roles: RoleSet,
    expires_at: Option<i64>,
) -> (ApiKeyRow, secret::Secret) {
    let (id, key) = secret::new_api_key();
    (
        ApiKeyRow {
            id,
            tenant_id: tenant.as_str().to_owned(),
            name: name.to_owned(),
            key_hash: secret::api_key_hash(key.expose()),
            roles: roles.names().join(","),
            created_at: unix_now(),
            expires_at,
            revoked_at: None,
            replaced_by: None,
        },
        key,
    )
}

#[utoipa::path(post, path = "/v1/api-keys", tag = "api-keys", request_body = NewApiKey, security(("bearer" = [])),
    responses(
        (status = 201, description = "Created; the key is shown once", body = Object),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
    ))]
async fn create_api_key(
    State(app): State<Arc<AppState>>,
    ctx: SecurityContext,
    Json(body): Json<NewApiKey>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    ctx.require(Capability::IdentityManage)?;
    valid_name("name", &body.name)?;
    let roles = parse_roles(&body.roles)?;
    may_grant(&ctx, roles)?;
    if body
        .expires_in
        .is_some_and(|s| !(1..=MAX_API_KEY_LIFETIME).contains(&s))
    {
        return Err(ApiError::BadRequest(format!(
            "expires_in must be 1 to {MAX_API_KEY_LIFETIME} seconds (ten years)"
        )));
    }
    let (row, key) = new_api_key_row(
        &ctx.tenant_id,
        &body.name,
        roles,
        body.expires_in.map(|s| unix_now() + s),
    );
    let ev = caller_event(
        &ctx,
        "auth.api_key.created",
        ("api_key", &row.id),
        json!({"name": row.name, "roles": roles.names(), "expires_at": row.expires_at}),
    );
    app.store
        .create_api_key(&row, ev)
        .await
        .map_err(store_error)?;
    let mut out = api_key_json(&row, unix_now());
    out["key"] = key.expose().into();
    out["note"] = "the key is shown once; store it now".into();
    Ok((StatusCode::CREATED, Json(out)))
}

#[utoipa::path(get, path = "/v1/api-keys", tag = "api-keys", security(("bearer" = [])),
    responses((status = 200, body = Object), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_api_keys(
    State(app): State<Arc<AppState>>,
    ctx: SecurityContext,
) -> Result<Json<Value>, ApiError> {
    ctx.require(Capability::IdentityManage)?;
    let now = unix_now();
    let keys = app
        .store
        .api_keys(&ctx.tenant_id)
        .await
        .map_err(store_error)?;
    Ok(Json(
        json!({"api_keys": keys.iter().map(|k| api_key_json(k, now)).collect::<Vec<_>>()}),
    ))
}

#[utoipa::path(delete, path = "/v1/api-keys/{id}", tag = "api-keys", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 204, description = "Revoked"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn revoke_api_key(
    State(app): State<Arc<AppState>>,
    ctx: SecurityContext,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    ctx.require(Capability::IdentityManage)?;
    let ev = caller_event(&ctx, "auth.api_key.revoked", ("api_key", &id), json!({}));
    if app
        .store
        .revoke_api_key(&ctx.tenant_id, &id, unix_now(), ev)
        .await
        .map_err(store_error)?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!(
            "no unrevoked API key {id:?} in this tenant"
        )))
    }
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RotateApiKey {
    /// How long the old key keeps working, seconds (default 24 h).
    #[schema(minimum = 0, maximum = 31_622_400)]
    #[serde(default, deserialize_with = "integral")]
    overlap_secs: Option<i64>,
}

#[utoipa::path(post, path = "/v1/api-keys/{id}/rotate", tag = "api-keys", security(("bearer" = [])),
    params(("id" = String, Path)), request_body(content = Option<RotateApiKey>),
    responses(
        (status = 201, description = "The new key, shown once; the old one works for the overlap", body = Object),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "The key is revoked or expired", body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
    ))]
async fn rotate_api_key(
    State(app): State<Arc<AppState>>,
    ctx: SecurityContext,
    Path(id): Path<String>,
    body: Option<Json<Option<RotateApiKey>>>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    ctx.require(Capability::IdentityManage)?;
    let overlap = body
        .and_then(|b| b.0)
        .and_then(|b| b.overlap_secs)
        .unwrap_or(86_400);
    if !(0..=31_622_400).contains(&overlap) {
        return Err(ApiError::BadRequest(
            "overlap_secs must be 0 to 31622400 (a year)".into(),
        ));
    }
    let old = app
        .store
        .api_key(&id)
        .await
        .map_err(store_error)?
        .filter(|k| k.tenant_id == ctx.tenant_id.as_str())
        .ok_or_else(|| ApiError::NotFound(format!("no API key {id:?} in this tenant")))?;
    let roles = RoleSet::from_names(old.roles.split(','));
    let (row, key) = new_api_key_row(&ctx.tenant_id, &old.name, roles, None);
    let now = unix_now();
    let ev = caller_event(
        &ctx,
        "auth.api_key.rotated",
        ("api_key", &id),
        json!({"new_id": row.id, "old_expires_at": now + overlap}),
    );
    if !app
        .store
        .rotate_api_key(&ctx.tenant_id, &id, &row, now + overlap, ev)
        .await
        .map_err(store_error)?
    {
        return Err(ApiError::Conflict(format!(
            "API key {id:?} is revoked, expired or already rotated"
        )));
    }
    let mut out = api_key_json(&row, now);
    out["key"] = key.expose().into();
    out["replaces"] = id.into();
    out["old_key_expires_at"] = (now + overlap).into();
    Ok((StatusCode::CREATED, Json(out)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Introspect {
    #[schema(min_length = 1, max_length = 256)]
    key: String,
}

/// `POST /v1/api-keys/introspect` `{key}`: `{active: false}`, or the key's identity (RFC 7662
/// in spirit). For the gateway: `api_keys_introspect` in the system tenant.
#[utoipa::path(post, path = "/v1/api-keys/introspect", tag = "api-keys", request_body = Introspect, security(("bearer" = [])),
    responses(
        (status = 200, description = "Whether the key is active, and whose", body = Object),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
    ))]
async fn introspect_api_key(
    State(app): State<Arc<AppState>>,
    ctx: SecurityContext,
    Json(body): Json<Introspect>,
) -> Result<Json<Value>, ApiError> {
    ctx.require(Capability::ApiKeysIntrospect)?;
    if ctx.tenant_id != app.keys.policy().system_tenant {
        return Err(ApiError::MissingRole(Capability::ApiKeysIntrospect));
    }
    let inactive = Json(json!({"active": false}));
    let Some(id) = secret::api_key_id(&body.key) else {
        return Ok(inactive);
    };
    let now = unix_now();
    match app.store.api_key(id).await.map_err(store_error)? {
        Some(k)
            if k.active(now)
                && secret::hashes_equal(&k.key_hash, &secret::api_key_hash(&body.key)) =>
        {
            let mut out = api_key_json(&k, now);
            out["active"] = true.into();
            Ok(Json(out))
        }
        _ => Ok(inactive),
    }
}

#[utoipa::path(get, path = "/v1/keys", tag = "keys", security(("bearer" = [])),
    responses((status = 200, body = Object), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_keys(
    State(app): State<Arc<AppState>>,
    ctx: SecurityContext,
) -> Result<Json<Value>, ApiError> {
    require_keys_manage(&app, &ctx)?;
    let keys = app.store.keys().await.map_err(store_error)?;
    Ok(Json(
        json!({"keys": keys.iter().map(key_json).collect::<Vec<_>>()}),
    ))
}

/// A key as listed (public parts only).
pub fn key_json(k: &crate::store::StoredKey) -> Value {
    json!({"kid": k.kid, "alg": k.alg, "state": k.state.as_str(), "created_at": k.created_at,
           "activated_at": k.activated_at, "retire_after": k.retire_after, "retired_at": k.retired_at,
           "published": k.state != KeyState::Retired})
}

#[utoipa::path(post, path = "/v1/keys/rotate", tag = "keys", security(("bearer" = [])),
    responses((status = 200, body = Object), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn rotate_keys(
    State(app): State<Arc<AppState>>,
    ctx: SecurityContext,
) -> Result<Json<Value>, ApiError> {
    require_keys_manage(&app, &ctx)?;
    let kid =
        app.keys
            .rotate(actor_of(&ctx))
            .await
            .map_err(|e| match e.downcast::<StoreError>() {
                Ok(s) => store_error(s),
                Err(e) => ApiError::Internal(e.to_string()),
            })?;
    Ok(Json(json!({"signing_kid": kid})))
}

#[utoipa::path(post, path = "/v1/keys/{kid}/retire", tag = "keys", security(("bearer" = [])),
    params(("kid" = String, Path)),
    responses((status = 204, description = "Retired"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "The key still signs or its tokens may be live", body = ErrorBody)))]
async fn retire_key(
    State(app): State<Arc<AppState>>,
    ctx: SecurityContext,
    Path(kid): Path<String>,
) -> Result<StatusCode, ApiError> {
    require_keys_manage(&app, &ctx)?;
    if crate::keyring::retire(
        &app.store,
        app.keys.policy(),
        &kid,
        actor_of(&ctx),
        "retired by an operator",
    )
    .await
    .map_err(store_error)?
    {
        app.keys
            .reload()
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::Conflict(format!(
            "{kid:?} is not a rotated-out key (rotate first to retire the signing key)"
        )))
    }
}

#[utoipa::path(get, path = "/readyz", tag = "ops", responses((status = 200, body = Object), (status = 503, body = ErrorBody)))]
async fn readyz(State(app): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    match tokio::time::timeout(Duration::from_secs(2), app.store.ping()).await {
        Ok(Ok(())) => Ok(Json(
            json!({"status": "ready", "signing_kid": app.keys.signer().kid()}),
        )),
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
        jwks,
        discovery,
        token,
        login,
        create_user,
        list_users,
        delete_user,
        create_client,
        create_api_key,
        list_api_keys,
        revoke_api_key,
        rotate_api_key,
        introspect_api_key,
        list_keys,
        rotate_keys,
        retire_key,
        readyz,
        metrics,
    ),
    components(schemas(
        TokenForm,
        LoginBody,
        NewUser,
        NewClient,
        NewApiKey,
        RotateApiKey,
        Introspect,
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
