//! Service clients of the caller's tenant (`identity_manage`); the secret is shown once.

use super::*;

/// The routes of this resource.
pub(super) fn router() -> Router<Arc<AppState>> {
    Router::new().route("/v1/clients", post(create_client))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewClient {
    #[schema(min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9._@-]+$")]
    name: String,
    /// Role names; an unknown one is refused where the body is read.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    roles: RoleSet,
}

#[utoipa::path(post, path = "/v1/clients", tag = "clients", request_body = NewClient, security(("bearer" = [])),
    responses(
        (status = 201, description = "Created; the secret is shown once", body = views::NewClientView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
    ))]
pub(super) async fn create_client(
    State(app): State<Arc<AppState>>,
    ctx: SecurityContext,
    Json(body): Json<NewClient>,
) -> Result<(StatusCode, Json<views::NewClientView>), ApiError> {
    ctx.require(Capability::IdentityManage)?;
    let roles = grantable_roles(&ctx, body.roles)?;
    let (id, secret) = service::add_client(
        &app.store,
        &ctx.tenant_id,
        &body.name,
        roles,
        actor_of(&ctx),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(views::NewClientView {
            client_id: id,
            client_secret: secret.expose().to_owned(),
            tenant_id: ctx.tenant_id.as_str().to_owned(),
            roles: role_names(roles),
            note: "the secret is shown once; store it now",
        }),
    ))
}
