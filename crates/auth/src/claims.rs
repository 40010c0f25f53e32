//! The claims of every token the auth service issues, and their translation into what a
//! service needs to know about the caller.

use serde::{Deserialize, Serialize};
use vigil_core::ids::TenantId;
use vigil_security::capability::RoleSet;
use vigil_security::token::{TokenError, VerifiedToken};

/// `iss, aud, sub, exp, iat, nbf, jti, tenant_id, roles`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer (the auth service's public URL).
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// Subject: a user (`user:<name>`), a service client (`client:<id>`) or an API key.
    pub sub: String,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// Not before.
    pub nbf: i64,
    /// Unique token id.
    pub jti: String,
    /// The tenant the bearer acts in.
    pub tenant_id: String,
    /// Role names.
    pub roles: Vec<String>,
}

/// The claims a verifier reads (other claims are ignored; `exp`, `nbf`, `iss` and `aud` are
/// checked by the JWT library before these are looked at).
#[derive(Deserialize)]
pub(crate) struct IdentityClaims {
    pub(crate) sub: String,
    pub(crate) tenant_id: String,
    #[serde(default)]
    pub(crate) roles: Vec<String>,
}

impl IdentityClaims {
    pub(crate) fn into_verified(self) -> Result<VerifiedToken, TokenError> {
        Ok(VerifiedToken {
            tenant_id: TenantId::parse(&self.tenant_id).map_err(|_| {
                TokenError::Invalid("tenant_id claim is not a valid tenant id".into())
            })?,
            subject: self.sub,
            roles: RoleSet::from_names(self.roles.iter().map(String::as_str)),
        })
    }
}
