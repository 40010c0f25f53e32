//! The auth service's operations that are not HTTP: what the routes and the command line
//! (`vigil auth user add`, `vigil auth client add`, `vigil dev`) both do, with one error type
//! the HTTP layer maps into the error shape.

use crate::events::{event, Actor};
use crate::keyring::unix_now;
use crate::store::{AuthStore, ClientRow, UserRow};
use serde_json::json;
use vigil_auth::password::PasswordPolicy;
use vigil_auth::{password, secret};
use vigil_core::event::{Outcome, Severity};
use vigil_core::ids::TenantId;
use vigil_security::capability::RoleSet;
use vigil_security::error::ApiError;
use vigil_store::StoreError;

/// Why an operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A field breaks its rule (the message names it).
    #[error("{0}")]
    Invalid(String),
    /// The name is taken.
    #[error("{0}")]
    Exists(String),
    /// The database is unavailable.
    #[error("the auth database is unavailable")]
    Unavailable(#[source] StoreError),
    /// The database failed otherwise (a bug or a broken database).
    #[error("the auth database failed")]
    Store(#[source] StoreError),
    /// A worker task failed (a panic while hashing).
    #[error("a worker task failed")]
    Task(#[from] tokio::task::JoinError),
    /// The signing keys in the database cannot be used (none current, an unknown algorithm,
    /// a key that does not decode, a JWKS that does not load).
    #[error("{0}")]
    Keys(String),
    /// The settings are invalid.
    #[error("{0}")]
    Settings(String),
    /// The database could not be opened (the URL is redacted).
    #[error("opening the auth database {url}")]
    Open {
        /// The database URL, without its password.
        url: String,
        /// The cause.
        #[source]
        source: StoreError,
    },
    /// The capability policy file.
    #[error(transparent)]
    Policy(#[from] vigil_security::capability::PolicyError),
    /// The service's audit producer.
    #[error("starting the audit producer")]
    Producer(#[from] vigil_producer::ProducerError),
    /// Binding or serving HTTP.
    #[error("{what}")]
    Http {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> ServiceError {
        match e {
            StoreError::Conflict { message, .. } => ServiceError::Exists(message),
            e if e.is_unavailable() => ServiceError::Unavailable(e),
            e => ServiceError::Store(e),
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> ApiError {
        match e {
            ServiceError::Invalid(m) => ApiError::BadRequest(m),
            ServiceError::Exists(m) => ApiError::Conflict(m),
            e @ ServiceError::Unavailable(_) => ApiError::Unavailable(e.to_string()),
            e => ApiError::internal(e),
        }
    }
}

/// A user name, client name or API key name: 1 to 128 of letters, digits, `.`, `_`, `@`,
/// `-` (names are recorded as actors and resources in audit events).
pub fn valid_name(what: &str, s: &str) -> Result<(), ServiceError> {
    if s.is_empty()
        || s.len() > 128
        || !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b))
    {
        return Err(ServiceError::Invalid(format!(
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
) -> Result<(), ServiceError> {
    valid_name("username", username)?;
    policy
        .check(password_text, &[username, tenant.as_str(), "vigil"])
        .map_err(|e| ServiceError::Invalid(e.to_string()))?;
    let pw = password_text.to_owned();
    let hash = tokio::task::spawn_blocking(move || password::hash(&pw)).await?;
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
                tenant_id: tenant.clone(),
                username: username.to_owned(),
                password_hash: hash,
                roles,
                created_at: unix_now(),
            },
            vec![(tenant.clone(), ev)],
        )
        .await
        .map_err(ServiceError::from)
}

/// Creates a service client; returns `(client_id, secret)`, the secret shown once.
pub async fn add_client(
    store: &AuthStore,
    tenant: &TenantId,
    name: &str,
    roles: RoleSet,
    actor: Actor<'_>,
) -> Result<(String, secret::Secret), ServiceError> {
    valid_name("name", name)?;
    let client_id = format!("vc_{}", uuid::Uuid::new_v4().simple());
    let secret = secret::new_client_secret();
    let s = secret.expose().to_owned();
    let hash = tokio::task::spawn_blocking(move || password::hash(&s)).await?;
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
                tenant_id: tenant.clone(),
                name: name.to_owned(),
                secret_hash: hash,
                roles,
                created_at: unix_now(),
            },
            vec![(tenant.clone(), ev)],
        )
        .await?;
    Ok((client_id, secret))
}
