//! Users of the caller's tenant (`identity_manage`).

use super::*;

/// The routes of this resource.
pub(super) fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/users", post(create_user).get(list_users))
        .route("/v1/users/{username}", delete(delete_user))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewUser {
    #[schema(min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9._@-]+$")]
    username: String,
    #[schema(
        min_length = 8,
        max_length = 256,
        pattern = "^[^\\u0000-\\u001f\\u007f]*$"
    )]
    password: String,
    /// Role names; an unknown one is refused where the body is read.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    roles: RoleSet,
}

#[utoipa::path(post, path = "/v1/users", tag = "users", request_body = NewUser, security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = views::UserView),
        (status = 400, description = "A field is missing, unknown or invalid; the password breaks the policy", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, description = "The user exists", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
    ))]
pub(super) async fn create_user(
    State(app): State<Arc<AppState>>,
    ctx: SecurityContext,
    Json(body): Json<NewUser>,
) -> Result<(StatusCode, Json<views::UserView>), ApiError> {
    ctx.require(Capability::IdentityManage)?;
    let roles = grantable_roles(&ctx, body.roles)?;
    service::add_user(
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
        Json(views::UserView {
            tenant_id: ctx.tenant_id.as_str().to_owned(),
            username: body.username,
            roles: role_names(roles),
            created_at: None,
        }),
    ))
}

#[utoipa::path(get, path = "/v1/users", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = views::UserList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn list_users(
    State(app): State<Arc<AppState>>,
    ctx: SecurityContext,
) -> Result<Json<views::UserList>, ApiError> {
    ctx.require(Capability::IdentityManage)?;
    let users = app.store.users(&ctx.tenant_id).await.map_err(store_error)?;
    let tenant = ctx.tenant_id.as_str();
    Ok(Json(views::UserList {
        users: users
            .into_iter()
            .map(|(username, roles, created_at)| views::UserView {
                tenant_id: tenant.to_owned(),
                username,
                roles: role_names(roles),
                created_at: Some(created_at),
            })
            .collect(),
    }))
}

#[utoipa::path(delete, path = "/v1/users/{username}", tag = "users", security(("bearer" = [])),
    params(("username" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn delete_user(
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
