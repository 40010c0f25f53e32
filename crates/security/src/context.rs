//! Who is calling, for which tenant.
//!
//! Until verified tokens arrive, the identity is the trusted header `X-Tenant-ID`, which a
//! service accepts only when told to and only from a loopback peer: on any other peer the
//! header could be forged by anyone who reaches the port.

use crate::error::ApiError;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use std::net::SocketAddr;
use vigil_core::ids::{TenantId, TraceId};

/// Header naming the caller's tenant (set by the gateway or, in development, by hand).
pub const TENANT_HEADER: &str = "x-tenant-id";

/// How a service learns who is calling; put it in the request extensions (e.g. with
/// `axum::Extension`) so the extractor can find it.
#[derive(Clone, Debug)]
pub enum IdentitySource {
    /// Trust `X-Tenant-ID` from loopback peers.
    TrustedHeadersOnLoopback,
}

/// The caller: their tenant and the request's trace id.
#[derive(Clone, Debug)]
pub struct SecurityContext {
    /// The caller's tenant; every read and write is scoped to it.
    pub tenant_id: TenantId,
    /// The request's trace id.
    pub trace_id: TraceId,
}

impl<S: Send + Sync> FromRequestParts<S> for SecurityContext {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let source = parts.extensions.get::<IdentitySource>().cloned().ok_or_else(|| {
            ApiError::Unauthenticated("this service is configured to accept no identity (start it with --trust-headers)".into())
        })?;
        let trace_id = parts
            .extensions
            .get::<TraceId>()
            .cloned()
            .unwrap_or_else(|| {
                crate::trace::current().unwrap_or_else(|| TraceId::from_bytes([1; 16]))
            });
        match source {
            IdentitySource::TrustedHeadersOnLoopback => {
                let peer = parts
                    .extensions
                    .get::<ConnectInfo<SocketAddr>>()
                    .map(|c| c.0);
                if !peer.is_some_and(|p| p.ip().is_loopback()) {
                    return Err(ApiError::Unauthenticated(
                        "identity headers are accepted from loopback only".into(),
                    ));
                }
                let mut values = parts.headers.get_all(TENANT_HEADER).iter();
                let tenant = match (values.next(), values.next()) {
                    (None, _) => return Err(ApiError::MissingTenant),
                    (Some(_), Some(_)) => {
                        return Err(ApiError::BadRequest(
                            "X-Tenant-ID was sent more than once".into(),
                        ))
                    }
                    (Some(v), None) => v
                        .to_str()
                        .ok()
                        .filter(|s| !s.is_empty())
                        .ok_or(ApiError::MissingTenant)?,
                };
                let tenant_id = TenantId::parse(tenant).map_err(|_| {
                    ApiError::BadRequest("X-Tenant-ID must match [a-z0-9][a-z0-9_-]{0,63}".into())
                })?;
                Ok(SecurityContext {
                    tenant_id,
                    trace_id,
                })
            }
        }
    }
}
