//! Who is calling, for which tenant, with which roles — and what they may do.
//!
//! The identity comes from the sources of [`IdentitySource`]: a bearer token checked by a
//! [`TokenVerifier`], or the trusted headers a gateway sets (`X-Tenant-ID`, `X-User-ID`,
//! `X-Roles`), accepted only from loopback or from peers the operator named, since anyone else
//! reaching the port could forge them. Handlers take a [`SecurityContext`] and call
//! [`SecurityContext::require`]; they never look at roles themselves.

use crate::capability::{Capability, CapabilityPolicy, RoleSet};
use crate::error::ApiError;
use crate::token::{TokenError, TokenVerifier};
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use prometheus::{IntCounterVec, Opts, Registry};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use vigil_core::ids::{TenantId, TraceId};

/// Header naming the caller's tenant.
pub const TENANT_HEADER: &str = "x-tenant-id";
/// Header naming the caller (user or service id).
pub const USER_HEADER: &str = "x-user-id";
/// Header listing the caller's roles, comma-separated.
pub const ROLES_HEADER: &str = "x-roles";
/// Longest identity header value accepted.
const MAX_HEADER: usize = 1024;

/// Where a service learns who is calling: a verified bearer token, trusted headers, or both
/// (a request with a token is judged by the token alone).
#[derive(Clone, Debug, Default)]
pub struct IdentitySource {
    /// Trust `X-Tenant-ID`, `X-User-ID` and `X-Roles` from loopback peers and from these
    /// addresses (the gateway's, on a private interface). `None`: never trust them.
    pub trusted_headers: Option<Vec<IpAddr>>,
    /// Verify `Authorization: Bearer …` tokens with this.
    pub bearer: Option<Arc<dyn TokenVerifier>>,
}

/// Told about every capability denial, e.g. to record it as an audit event.
pub trait DenialSink: Send + Sync + std::fmt::Debug {
    /// `ctx` was refused `capability`.
    fn denied(&self, ctx: &SecurityContext, capability: Capability);
}

/// Decides capabilities and counts the decisions.
#[derive(Debug)]
pub struct Guard {
    policy: CapabilityPolicy,
    checks: IntCounterVec,
    denials: IntCounterVec,
    sink: std::sync::OnceLock<Arc<dyn DenialSink>>,
}

impl Guard {
    /// A guard over `policy`, registering `capability_checks_total{capability,outcome}` and
    /// `capability_denials_total{capability}` in `registry`.
    pub fn new(policy: CapabilityPolicy, registry: &Registry) -> Arc<Guard> {
        let checks = IntCounterVec::new(
            Opts::new(
                "capability_checks_total",
                "Capability decisions by capability and outcome",
            ),
            &["capability", "outcome"],
        )
        .expect("valid metric");
        let denials = IntCounterVec::new(
            Opts::new(
                "capability_denials_total",
                "Capability denials by capability",
            ),
            &["capability"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(checks.clone()))
            .expect("registered once");
        registry
            .register(Box::new(denials.clone()))
            .expect("registered once");
        Arc::new(Guard {
            policy,
            checks,
            denials,
            sink: std::sync::OnceLock::new(),
        })
    }

    /// Where denials are reported (set once, when the service has its audit log).
    pub fn set_denial_sink(&self, sink: Arc<dyn DenialSink>) {
        let _ = self.sink.set(sink);
    }

    /// The policy.
    pub fn policy(&self) -> &CapabilityPolicy {
        &self.policy
    }
}

/// What the extractor needs: put it in the request extensions with `axum::Extension`.
#[derive(Clone, Debug)]
pub struct SecurityConfig {
    /// Where identities come from.
    pub source: IdentitySource,
    /// Capability decisions.
    pub guard: Arc<Guard>,
}

/// The caller.
#[derive(Clone)]
pub struct SecurityContext {
    /// The caller's tenant; every read and write is scoped to it.
    pub tenant_id: TenantId,
    /// The caller's id, when the identity names one.
    pub user_id: Option<String>,
    /// The caller's (known) roles.
    pub roles: RoleSet,
    /// The request's trace id.
    pub trace_id: TraceId,
    guard: Arc<Guard>,
}

impl std::fmt::Debug for SecurityContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecurityContext")
            .field("tenant_id", &self.tenant_id)
            .field("user_id", &self.user_id)
            .field("roles", &self.roles)
            .field("trace_id", &self.trace_id)
            .finish()
    }
}

impl SecurityContext {
    /// May the caller hand `roles` to someone else (a new user, client or API key)? Only when
    /// every capability those roles hold is one the caller holds too; otherwise the first
    /// capability that would be gained. Not counted as a check and never a denial event.
    pub fn may_delegate(&self, roles: RoleSet) -> Result<(), Capability> {
        let policy = &self.guard.policy;
        match Capability::ALL
            .iter()
            .find(|c| policy.allows(roles, **c) && !policy.allows(self.roles, **c))
        {
            Some(c) => Err(*c),
            None => Ok(()),
        }
    }

    /// Ok when the caller holds `capability`; otherwise 403 `missing_role`, counted and
    /// reported to the denial sink.
    pub fn require(&self, capability: Capability) -> Result<(), ApiError> {
        let allowed = self.guard.policy.allows(self.roles, capability);
        let outcome = if allowed { "allowed" } else { "denied" };
        self.guard
            .checks
            .with_label_values(&[capability.as_str(), outcome])
            .inc();
        if allowed {
            return Ok(());
        }
        self.guard
            .denials
            .with_label_values(&[capability.as_str()])
            .inc();
        tracing::info!(tenant = %self.tenant_id, user = ?self.user_id, roles = ?self.roles, %capability, trace_id = %self.trace_id, "capability denied");
        if let Some(sink) = self.guard.sink.get() {
            sink.denied(self, capability);
        }
        Err(ApiError::MissingRole(capability))
    }
}

/// The one value of header `name`: absent is `Ok(None)`; sent twice, empty, too long or not
/// visible ASCII is a 400 naming the header.
fn single(headers: &HeaderMap, name: &str) -> Result<Option<String>, ApiError> {
    let mut values = headers.get_all(name).iter();
    let v = match (values.next(), values.next()) {
        (None, _) => return Ok(None),
        (Some(_), Some(_)) => {
            return Err(ApiError::BadRequest(format!(
                "{name} was sent more than once"
            )))
        }
        (Some(v), None) => v,
    };
    let bad = || {
        ApiError::BadRequest(format!(
            "{name} must be 1 to {MAX_HEADER} visible ASCII characters"
        ))
    };
    let s = v.to_str().map_err(|_| bad())?.trim();
    if s.is_empty() || s.len() > MAX_HEADER || !s.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
    {
        return Err(bad());
    }
    Ok(Some(s.to_owned()))
}

impl<S: Send + Sync> FromRequestParts<S> for SecurityContext {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        // Resolved already by an outer layer (the audit layer does): the same caller, and the
        // token is not verified twice. Only server code can put one there.
        if let Some(ctx) = parts.extensions.get::<SecurityContext>() {
            return Ok(ctx.clone());
        }
        let config = parts
            .extensions
            .get::<SecurityConfig>()
            .cloned()
            .ok_or_else(|| {
                ApiError::Internal("no SecurityConfig in the request extensions".into())
            })?;
        // The trace layer settled it; outside one (a router without `harden`) the request
        // gets a trace of its own, never one shared with another.
        let trace_id = crate::trace::current().unwrap_or_else(crate::trace::new_trace_id);
        let source = &config.source;
        if let Some(auth) = parts.headers.get(axum::http::header::AUTHORIZATION) {
            let Some(verifier) = &source.bearer else {
                return Err(ApiError::Unauthenticated(
                    "this service does not accept bearer tokens".into(),
                ));
            };
            let token = auth
                .to_str()
                .ok()
                .and_then(|v| {
                    v.strip_prefix("Bearer ")
                        .or_else(|| v.strip_prefix("bearer "))
                })
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| {
                    ApiError::InvalidToken("expected Authorization: Bearer <token>".into())
                })?;
            let v = verifier.verify(token).await.map_err(|e| match e {
                TokenError::Expired => ApiError::TokenExpired,
                TokenError::Invalid(why) => {
                    tracing::info!(%trace_id, reason = %why, "bearer token refused");
                    ApiError::InvalidToken("the bearer token does not verify".into())
                }
            })?;
            crate::trace::record_tenant(v.tenant_id.as_str());
            return Ok(SecurityContext {
                tenant_id: v.tenant_id,
                user_id: Some(v.subject),
                roles: v.roles,
                trace_id,
                guard: config.guard,
            });
        }
        let Some(trusted_peers) = &source.trusted_headers else {
            return Err(ApiError::Unauthenticated(if source.bearer.is_some() {
                "send Authorization: Bearer <token>".into()
            } else {
                "this service accepts no identity".into()
            }));
        };
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        if !peer.is_some_and(|p| p.is_loopback() || trusted_peers.contains(&p)) {
            return Err(ApiError::Unauthenticated(
                "identity headers are accepted only from trusted peers".into(),
            ));
        }
        // No identity at all is unauthenticated; identity headers without a tenant are a
        // malformed identity (400 missing_tenant_id below).
        if ![TENANT_HEADER, USER_HEADER, ROLES_HEADER]
            .iter()
            .any(|h| parts.headers.contains_key(*h))
        {
            return Err(ApiError::Unauthenticated(if source.bearer.is_some() {
                "send Authorization: Bearer <token>".into()
            } else {
                "send the identity headers X-Tenant-ID, X-User-ID and X-Roles".into()
            }));
        }
        let tenant = single(&parts.headers, TENANT_HEADER).map_err(|_| {
            ApiError::BadRequest("X-Tenant-ID must match [a-z0-9][a-z0-9_-]{0,63}, once".into())
        })?;
        let tenant_id = TenantId::parse(&tenant.ok_or(ApiError::MissingTenant)?).map_err(|_| {
            ApiError::BadRequest("X-Tenant-ID must match [a-z0-9][a-z0-9_-]{0,63}".into())
        })?;
        let user_id = single(&parts.headers, USER_HEADER)?;
        let roles = single(&parts.headers, ROLES_HEADER)?
            .map(|r| RoleSet::from_names(r.split(',')))
            .unwrap_or_default();
        crate::trace::record_tenant(tenant_id.as_str());
        Ok(SecurityContext {
            tenant_id,
            user_id,
            roles,
            trace_id,
            guard: config.guard,
        })
    }
}
