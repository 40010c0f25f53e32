//! API keys of the caller's tenant (`identity_manage`), their rotation with an overlap, and
//! introspection for the gateway (`api_keys_introspect`).

use super::*;

/// The routes of this resource.
pub(super) fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/api-keys", post(create_api_key).get(list_api_keys))
        .route("/v1/api-keys/{id}", delete(revoke_api_key))
        .route("/v1/api-keys/{id}/rotate", post(rotate_api_key))
        .route("/v1/api-keys/introspect", post(introspect_api_key))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewApiKey {
    #[schema(min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9._@-]+$")]
    name: String,
    /// Role names; an unknown one is refused where the body is read.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    roles: RoleSet,
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
            tenant_id: tenant.clone(),
            name: name.to_owned(),
            key_hash: secret::api_key_hash(key.expose()),
            roles,
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
        (status = 201, description = "Created; the key is shown once", body = views::IssuedApiKey),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
    ))]
pub(super) async fn create_api_key(
    State(app): State<Arc<AppState>>,
    ctx: SecurityContext,
    Json(body): Json<NewApiKey>,
) -> Result<(StatusCode, Json<views::IssuedApiKey>), ApiError> {
    ctx.require(Capability::IdentityManage)?;
    valid_name("name", &body.name)?;
    let roles = grantable_roles(&ctx, body.roles)?;
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
    Ok((
        StatusCode::CREATED,
        Json(views::IssuedApiKey {
            view: views::ApiKeyView::of(&row, unix_now()),
            key: key.expose().to_owned(),
            replaces: None,
            old_key_expires_at: None,
            note: Some("the key is shown once; store it now"),
        }),
    ))
}

#[utoipa::path(get, path = "/v1/api-keys", tag = "api-keys", security(("bearer" = [])),
    responses((status = 200, body = views::ApiKeyList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn list_api_keys(
    State(app): State<Arc<AppState>>,
    ctx: SecurityContext,
) -> Result<Json<views::ApiKeyList>, ApiError> {
    ctx.require(Capability::IdentityManage)?;
    let now = unix_now();
    let keys = app
        .store
        .api_keys(&ctx.tenant_id)
        .await
        .map_err(store_error)?;
    Ok(Json(views::ApiKeyList {
        api_keys: keys.iter().map(|k| views::ApiKeyView::of(k, now)).collect(),
    }))
}

#[utoipa::path(delete, path = "/v1/api-keys/{id}", tag = "api-keys", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 204, description = "Revoked"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn revoke_api_key(
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
pub(super) struct RotateApiKey {
    /// How long the old key keeps working, seconds (default 24 h).
    #[schema(minimum = 0, maximum = 31_622_400)]
    #[serde(default, deserialize_with = "integral")]
    overlap_secs: Option<i64>,
}

#[utoipa::path(post, path = "/v1/api-keys/{id}/rotate", tag = "api-keys", security(("bearer" = [])),
    params(("id" = String, Path)), request_body(content = Option<RotateApiKey>),
    responses(
        (status = 201, description = "The new key, shown once; the old one works for the overlap", body = views::IssuedApiKey),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "The key is revoked or expired", body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
    ))]
pub(super) async fn rotate_api_key(
    State(app): State<Arc<AppState>>,
    ctx: SecurityContext,
    Path(id): Path<String>,
    body: Option<Json<Option<RotateApiKey>>>,
) -> Result<(StatusCode, Json<views::IssuedApiKey>), ApiError> {
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
        .filter(|k| k.tenant_id == ctx.tenant_id)
        .ok_or_else(|| ApiError::NotFound(format!("no API key {id:?} in this tenant")))?;
    let roles = old.roles;
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
    Ok((
        StatusCode::CREATED,
        Json(views::IssuedApiKey {
            view: views::ApiKeyView::of(&row, now),
            key: key.expose().to_owned(),
            replaces: Some(id),
            old_key_expires_at: Some(now + overlap),
            note: None,
        }),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Introspect {
    #[schema(min_length = 1, max_length = 256)]
    key: String,
}

/// `POST /v1/api-keys/introspect` `{key}`: `{active: false}`, or the key's identity (RFC 7662
/// in spirit). For the gateway: `api_keys_introspect` in the system tenant.
// audit:ignore a read that changes nothing (POST keeps the key out of URLs and logs); the gateway records the denials it leads to
#[utoipa::path(post, path = "/v1/api-keys/introspect", tag = "api-keys", request_body = Introspect, security(("bearer" = [])),
    responses(
        (status = 200, description = "Whether the key is active, and whose", body = views::Introspection),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
    ))]
pub(super) async fn introspect_api_key(
    State(app): State<Arc<AppState>>,
    ctx: SecurityContext,
    Json(body): Json<Introspect>,
) -> Result<Json<views::Introspection>, ApiError> {
    ctx.require(Capability::ApiKeysIntrospect)?;
    if ctx.tenant_id != app.keys.policy().system_tenant {
        return Err(ApiError::MissingRole(Capability::ApiKeysIntrospect));
    }
    let inactive = Json(views::Introspection::Inactive { active: false });
    let Some(id) = secret::api_key_id(&body.key) else {
        return Ok(inactive);
    };
    let now = unix_now();
    match app.store.api_key(id).await.map_err(store_error)? {
        Some(k)
            if k.active(now)
                && secret::hashes_equal(&k.key_hash, &secret::api_key_hash(&body.key)) =>
        {
            Ok(Json(views::Introspection::Active(views::ApiKeyView::of(
                &k, now,
            ))))
        }
        _ => Ok(inactive),
    }
}
