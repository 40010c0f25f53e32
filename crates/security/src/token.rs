//! Bearer tokens: the [`TokenVerifier`] trait every identity-by-token source implements, and
//! [`StaticKeyVerifier`], which checks JWTs against one configured key (for tests and small
//! deployments; the JWKS verifier of the auth service plugs into the same trait).
//!
//! The algorithm comes from the key, never from the token: a token whose header names another
//! algorithm (`none`, HMAC against a public key, …) is refused. `iss`, `aud`, `exp` and `nbf`
//! are always checked, with an explicit leeway.

use crate::capability::RoleSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use vigil_core::ids::TenantId;

/// Longest bearer token accepted; longer ones are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// What a verified token says about its bearer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedToken {
    /// `tenant_id` claim.
    pub tenant_id: TenantId,
    /// `sub` claim.
    pub subject: String,
    /// `roles` claim (unknown role names dropped).
    pub roles: RoleSet,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The token expired (past `exp` plus leeway).
    #[error("the token has expired")]
    Expired,
    /// Anything else: signature, algorithm, issuer, audience, not yet valid, malformed claims.
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// Verifies bearer tokens.
#[async_trait::async_trait]
pub trait TokenVerifier: Send + Sync + std::fmt::Debug {
    /// Verifies `token` (the part after `Bearer `).
    async fn verify(&self, token: &str) -> Result<VerifiedToken, TokenError>;

    /// For `/readyz`: can tokens be verified now, and a short word on the keys (e.g. that
    /// they are stale because the issuer is unreachable). Default: ready.
    fn readiness(&self) -> (bool, String) {
        (true, "static key".into())
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    tenant_id: String,
    #[serde(default)]
    roles: Vec<String>,
}

/// Checks JWTs against one key.
pub struct StaticKeyVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for StaticKeyVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticKeyVerifier")
            .field("algorithms", &self.validation.algorithms)
            .finish_non_exhaustive()
    }
}

impl StaticKeyVerifier {
    /// A verifier for tokens signed with `algorithm` by `key`, issued by `issuer` for
    /// `audience`, with `leeway_secs` of clock skew allowed on `exp` and `nbf`.
    pub fn new(
        key: DecodingKey,
        algorithm: Algorithm,
        issuer: &str,
        audience: &str,
        leeway_secs: u64,
    ) -> Self {
        let mut validation = Validation::new(algorithm);
        validation.algorithms = vec![algorithm];
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = leeway_secs;
        StaticKeyVerifier { key, validation }
    }

    /// An EdDSA (Ed25519) verifier from a PEM public key.
    pub fn ed25519_pem(
        pem: &[u8],
        issuer: &str,
        audience: &str,
        leeway_secs: u64,
    ) -> Result<Self, TokenError> {
        let key = DecodingKey::from_ed_pem(pem)
            .map_err(|e| TokenError::Invalid(format!("verification key: {e}")))?;
        Ok(Self::new(
            key,
            Algorithm::EdDSA,
            issuer,
            audience,
            leeway_secs,
        ))
    }
}

#[async_trait::async_trait]
impl TokenVerifier for StaticKeyVerifier {
    async fn verify(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Invalid(format!(
                "longer than {MAX_TOKEN_BYTES} bytes"
            )));
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(
            |e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid(e.to_string()),
            },
        )?;
        let c = data.claims;
        Ok(VerifiedToken {
            tenant_id: TenantId::parse(&c.tenant_id).map_err(|_| {
                TokenError::Invalid("tenant_id claim is not a valid tenant id".into())
            })?,
            subject: c.sub,
            roles: RoleSet::from_names(c.roles.iter().map(String::as_str)),
        })
    }
}
