//! What the routes answer: one type per response body, serialized as sent and described in
//! the OpenAPI document by the same definition (so a field cannot be in one and not the
//! other). Bodies that carry a secret (a token, a key, a client secret) have no `Debug`.

use super::*;

/// An access token (RFC 6749 §5.1).
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct AccessToken {
    /// The signed JWT.
    pub access_token: String,
    /// Always `Bearer`.
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until it expires.
    pub expires_in: i64,
}

/// `/readyz` when ready.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct Ready {
    /// `ready`.
    pub status: &'static str,
    /// The key new tokens are signed with.
    pub signing_kid: String,
}

/// OpenID Provider metadata (the parts that apply).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct Discovery {
    pub issuer: String,
    pub jwks_uri: String,
    pub token_endpoint: String,
    pub grant_types_supported: Vec<&'static str>,
    pub token_endpoint_auth_methods_supported: Vec<&'static str>,
    pub id_token_signing_alg_values_supported: Vec<&'static str>,
    pub response_types_supported: Vec<&'static str>,
    pub subject_types_supported: Vec<&'static str>,
}

/// A user.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct UserView {
    /// The user's tenant.
    pub tenant_id: String,
    pub username: String,
    pub roles: Vec<String>,
    /// Unix seconds (absent right after creation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<i64>,
}

/// The users of the caller's tenant.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct UserList {
    pub users: Vec<UserView>,
}

/// A client just created: its secret is shown once.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct NewClientView {
    pub client_id: String,
    /// Shown once; only its hash is kept.
    pub client_secret: String,
    pub tenant_id: String,
    pub roles: Vec<String>,
    pub note: &'static str,
}

/// An API key (never the key itself).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct ApiKeyView {
    pub id: String,
    pub name: String,
    pub tenant_id: String,
    pub roles: Vec<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; null: until revoked.
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// The key that replaced it in a rotation.
    pub replaced_by: Option<String>,
    /// Whether it is accepted now.
    pub active: bool,
}

impl ApiKeyView {
    pub(super) fn of(k: &ApiKeyRow, now: i64) -> ApiKeyView {
        ApiKeyView {
            id: k.id.clone(),
            name: k.name.clone(),
            tenant_id: k.tenant_id.to_string(),
            roles: role_names(k.roles),
            created_at: k.created_at,
            expires_at: k.expires_at,
            revoked_at: k.revoked_at,
            replaced_by: k.replaced_by.clone(),
            active: k.active(now),
        }
    }
}

/// An API key just created or rotated: the key is shown once.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct IssuedApiKey {
    #[serde(flatten)]
    pub view: ApiKeyView,
    /// The key, shown once; only its hash is kept.
    pub key: String,
    /// After a rotation: the key it replaces...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaces: Option<String>,
    /// ...which keeps working until then (unix seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_key_expires_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<&'static str>,
}

/// The API keys of the caller's tenant.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct ApiKeyList {
    pub api_keys: Vec<ApiKeyView>,
}

/// Introspection (RFC 7662 in spirit): the key's identity, or `{"active": false}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub(super) enum Introspection {
    /// A live key (its `active` is true).
    Active(ApiKeyView),
    /// Not a live key, or not a key at all: nothing more is said.
    Inactive {
        /// false.
        active: bool,
    },
}

/// A signing key as listed (public parts only).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct KeyView {
    pub kid: String,
    pub alg: String,
    /// `next`, `current`, `previous` or `retired`.
    pub state: &'static str,
    pub created_at: i64,
    pub activated_at: Option<i64>,
    pub retire_after: Option<i64>,
    pub retired_at: Option<i64>,
    /// Whether the JWKS carries it.
    pub published: bool,
}

impl KeyView {
    pub(super) fn of(k: &crate::store::StoredKey) -> KeyView {
        KeyView {
            kid: k.kid.clone(),
            alg: k.alg.clone(),
            state: k.state.as_str(),
            created_at: k.created_at,
            activated_at: k.activated_at,
            retire_after: k.retire_after,
            retired_at: k.retired_at,
            published: k.state != KeyState::Retired,
        }
    }
}

/// The signing keys.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct KeyList {
    pub keys: Vec<KeyView>,
}

/// After a rotation: the key that signs now.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct Rotated {
    pub signing_kid: String,
}
