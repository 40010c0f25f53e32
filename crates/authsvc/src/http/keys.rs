//! Signing keys: list, rotate, retire (`keys_manage`, system tenant only).

use super::*;

/// The routes of this resource.
pub(super) fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/keys", get(list_keys))
        .route("/v1/keys/rotate", post(rotate_keys))
        .route("/v1/keys/{kid}/retire", post(retire_key))
}

#[utoipa::path(get, path = "/v1/keys", tag = "keys", security(("bearer" = [])),
    responses((status = 200, body = views::KeyList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn list_keys(
    State(app): State<Arc<AppState>>,
    ctx: SecurityContext,
) -> Result<Json<views::KeyList>, ApiError> {
    require_keys_manage(&app, &ctx)?;
    let keys = app.store.keys().await.map_err(store_error)?;
    Ok(Json(views::KeyList {
        keys: keys.iter().map(views::KeyView::of).collect(),
    }))
}

#[utoipa::path(post, path = "/v1/keys/rotate", tag = "keys", security(("bearer" = [])),
    responses((status = 200, body = views::Rotated), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn rotate_keys(
    State(app): State<Arc<AppState>>,
    ctx: SecurityContext,
) -> Result<Json<views::Rotated>, ApiError> {
    require_keys_manage(&app, &ctx)?;
    let kid = app.keys.rotate(actor_of(&ctx)).await?;
    Ok(Json(views::Rotated { signing_kid: kid }))
}

#[utoipa::path(post, path = "/v1/keys/{kid}/retire", tag = "keys", security(("bearer" = [])),
    params(("kid" = String, Path)),
    responses((status = 204, description = "Retired"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "The key still signs or its tokens may be live", body = ErrorBody)))]
pub(super) async fn retire_key(
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
        app.keys.reload().await.map_err(ApiError::internal)?;
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::Conflict(format!(
            "{kid:?} is not a rotated-out key (rotate first to retire the signing key)"
        )))
    }
}
