//! Tokens: the JWKS and discovery documents, client credentials (`POST /oauth/token`) and
//! password login (`POST /v1/login`, throttled as [`crate::throttle`] says).

use super::*;

/// The routes of this resource.
pub(super) fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/.well-known/jwks.json", get(jwks))
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/oauth/token", post(token))
        .route("/v1/login", post(login))
}

#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "keys", responses((status = 200, description = "The public signing keys (RFC 7517), with Cache-Control max-age", body = Object)))]
pub(super) async fn jwks(State(app): State<Arc<AppState>>) -> Response {
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

#[utoipa::path(get, path = "/.well-known/openid-configuration", tag = "keys", responses((status = 200, description = "OpenID Provider metadata", body = views::Discovery)))]
pub(super) async fn discovery(State(app): State<Arc<AppState>>) -> Json<views::Discovery> {
    let base = app.issuer.trim_end_matches('/');
    Json(views::Discovery {
        issuer: app.issuer.clone(),
        jwks_uri: format!("{base}/.well-known/jwks.json"),
        token_endpoint: format!("{base}/oauth/token"),
        grant_types_supported: vec!["client_credentials"],
        token_endpoint_auth_methods_supported: vec!["client_secret_basic", "client_secret_post"],
        id_token_signing_alg_values_supported: vec![app.keys.signer().algorithm().as_str()],
        response_types_supported: vec!["token"],
        subject_types_supported: vec!["public"],
    })
}

// No deny_unknown_fields: RFC 6749 §3.2 says the server MUST ignore unrecognised parameters
// (clients send `scope`, `audience`, …).
#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct TokenForm {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// `POST /oauth/token`, `grant_type=client_credentials`, client authenticated by HTTP Basic
/// or by `client_id`/`client_secret` in the form.
#[utoipa::path(post, path = "/oauth/token", tag = "tokens",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "An access token (RFC 6749 §5.1)", body = views::AccessToken),
        (status = 400, description = "grant_type is not client_credentials, or the form does not parse", body = ErrorBody),
        (status = 401, description = "Client authentication failed", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
    ))]
pub(super) async fn token(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Result<Json<views::AccessToken>, ApiError> {
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
        .map_err(ApiError::internal)?;
    let Some(client) = client.filter(|_| ok) else {
        app.tokens
            .with_label_values(&["client_credentials_refused"])
            .inc();
        return Err(ApiError::Unauthenticated(
            "invalid client credentials".into(),
        ));
    };
    let tenant = client.tenant_id.clone();
    let roles = role_names(client.roles);
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
        json!({"grant_type": "client_credentials", "roles": roles, "expires_in": body.expires_in}),
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
pub(super) struct LoginBody {
    /// Parsed where the body is read: a malformed tenant id is a 400 naming the field.
    #[schema(value_type = String, pattern = "^[a-z0-9][a-z0-9_-]{0,63}$")]
    tenant_id: TenantId,
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
        (status = 200, description = "An access token; a new device also gets the vigil_device cookie", body = views::AccessToken),
        (status = 400, body = ErrorBody),
        (status = 401, description = "Invalid credentials (one answer for an unknown tenant, user or password)", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 429, description = "Throttled: too many failed logins from this source; Retry-After says when to try again", body = ErrorBody),
    ))]
pub(super) async fn login(
    State(app): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Json(body): Json<LoginBody>,
) -> Result<Response, ApiError> {
    let tenant = body.tenant_id.clone();
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
        .map_err(ApiError::internal)?;
    match user.filter(|_| ok) {
        Some(u) => {
            let roles = role_names(u.roles);
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
