//! Who is calling: a bearer JWT (through the issuer's JWKS) or an API key (`X-API-Key`, or
//! `Authorization: Bearer vk_…`) checked against the auth service, with a short local cache.
//! A revoked key stops working within the cache's lifetime. Keys that do not exist are cached
//! too (briefly), so random keys cannot turn into a flood against the auth service, and the
//! cache is bounded.

use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use vigil_auth::JwksVerifier;
use vigil_core::ids::TenantId;
use vigil_security::capability::RoleSet;
use vigil_security::token::{TokenError, TokenVerifier, VerifiedToken};

/// How the gateway checks API keys. `Debug` hides the client secret.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// The auth service's base URL.
    pub url: String,
    /// The gateway's service client (in the system tenant, role `service`).
    pub client_id: String,
    /// Its secret.
    pub client_secret: String,
    /// How long an answer is reused, seconds.
    #[serde(default = "default_cache")]
    pub cache_secs: u64,
}

impl std::fmt::Debug for ApiKeyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyConfig")
            .field("url", &self.url)
            .field("client_id", &self.client_id)
            .field("client_secret", &"***")
            .field("cache_secs", &self.cache_secs)
            .finish()
    }
}

fn default_cache() -> u64 {
    30
}

const MAX_CACHED: usize = 100_000;

/// Answers by SHA-256 of the key: until when, and the identity (none: not a valid key).
type Answers = HashMap<[u8; 32], (Instant, Option<VerifiedToken>)>;
const NEGATIVE_TTL: Duration = Duration::from_secs(5);

/// Checks API keys against the auth service.
pub struct ApiKeys {
    config: ApiKeyConfig,
    http: reqwest::Client,
    cache: Mutex<Answers>,
    token: tokio::sync::Mutex<Option<(Instant, String)>>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeys")
            .field("url", &self.config.url)
            .field("client_id", &self.config.client_id)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: u64,
}

impl ApiKeys {
    /// A checker for `config`.
    pub fn new(config: ApiKeyConfig) -> ApiKeys {
        ApiKeys {
            config,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()
                .expect("an HTTP client"),
            cache: Mutex::new(HashMap::new()),
            token: tokio::sync::Mutex::new(None),
        }
    }

    async fn service_token(&self) -> Result<String, TokenError> {
        let mut t = self.token.lock().await;
        if let Some((until, tok)) = t.as_ref() {
            if Instant::now() < *until {
                return Ok(tok.clone());
            }
        }
        let r: TokenResponse = self
            .http
            .post(format!(
                "{}/oauth/token",
                self.config.url.trim_end_matches('/')
            ))
            .basic_auth(&self.config.client_id, Some(&self.config.client_secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| {
                TokenError::Invalid(format!(
                    "the gateway cannot authenticate to the auth service: {e}"
                ))
            })?
            .json()
            .await
            .map_err(|e| TokenError::Invalid(format!("token response: {e}")))?;
        let until = Instant::now() + Duration::from_secs(r.expires_in.saturating_sub(30).max(1));
        *t = Some((until, r.access_token.clone()));
        Ok(r.access_token)
    }

    /// The identity of `key`, from the cache or the auth service.
    pub async fn check(&self, key: &str) -> Result<VerifiedToken, TokenError> {
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        if let Some((until, answer)) = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&digest)
        {
            if Instant::now() < *until {
                return answer
                    .clone()
                    .ok_or_else(|| TokenError::Invalid("unknown or revoked API key".into()));
            }
        }
        let answer = if vigil_auth::secret::api_key_id(key).is_none() {
            None
        } else {
            let token = self.service_token().await?;
            let r: Value = self
                .http
                .post(format!(
                    "{}/v1/api-keys/introspect",
                    self.config.url.trim_end_matches('/')
                ))
                .bearer_auth(token)
                .json(&serde_json::json!({"key": key}))
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .map_err(|e| TokenError::Invalid(format!("API key check failed: {e}")))?
                .json()
                .await
                .map_err(|e| TokenError::Invalid(format!("API key check: {e}")))?;
            if r["active"] == true {
                let tenant = TenantId::parse(r["tenant_id"].as_str().unwrap_or_default())
                    .map_err(|_| TokenError::Invalid("the API key's tenant is invalid".into()))?;
                let roles = r["roles"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>())
                    .unwrap_or_default();
                Some(VerifiedToken {
                    tenant_id: tenant,
                    subject: format!("api_key:{}", r["id"].as_str().unwrap_or_default()),
                    roles: RoleSet::from_names(roles),
                })
            } else {
                None
            }
        };
        let ttl = if answer.is_some() {
            Duration::from_secs(self.config.cache_secs)
        } else {
            NEGATIVE_TTL
        };
        {
            let mut cache = self
                .cache
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if cache.len() >= MAX_CACHED {
                let now = Instant::now();
                cache.retain(|_, (until, _)| *until > now);
                if cache.len() >= MAX_CACHED {
                    cache.clear();
                }
            }
            cache.insert(digest, (Instant::now() + ttl, answer.clone()));
        }
        answer.ok_or_else(|| TokenError::Invalid("unknown or revoked API key".into()))
    }
}

/// JWTs through the JWKS, API keys through the auth service.
#[derive(Debug)]
pub struct GatewayVerifier {
    /// Bearer JWTs.
    pub jwks: JwksVerifier,
    /// API keys, when configured.
    pub api_keys: Option<ApiKeys>,
}

#[async_trait::async_trait]
impl TokenVerifier for GatewayVerifier {
    async fn verify(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        if token.starts_with("vk_") {
            return match &self.api_keys {
                Some(k) => k.check(token).await,
                None => Err(TokenError::Invalid(
                    "this gateway does not take API keys".into(),
                )),
            };
        }
        self.jwks.verify(token).await
    }

    fn readiness(&self) -> (bool, String) {
        self.jwks.readiness()
    }
}
