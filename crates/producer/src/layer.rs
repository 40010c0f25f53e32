//! Auditing an axum service in one line: [`AuditLayer`] emits one audit event per mutating
//! request (POST, PUT, PATCH, DELETE) in the caller's tenant — who (from the
//! [`SecurityContext`]), what (method and route template), how it ended (the status as
//! outcome), and the trace id — and a handler adds what only it knows (the resource it acted
//! on, payload fields, a better action name) through the [`AuditDetails`] extractor.
//!
//! ```no_run
//! use axum::{routing::post, Router, Extension};
//! use vigil_producer::layer::{AuditDetails, AuditLayer};
//! # fn demo(producer: vigil_producer::AuditProducer, security: vigil_security::context::SecurityConfig) {
//! async fn void_payment(audit: AuditDetails) -> &'static str {
//!     audit.action("payment.void").resource("payment", "p-9").field("amount", 12.5);
//!     "voided"
//! }
//! let app: Router = Router::new()
//!     .route("/v1/payments/{id}/void", post(void_payment))
//!     .layer(AuditLayer::new(producer))    // inside the SecurityConfig extension:
//!     .layer(Extension(security));         // the layer reads the caller's identity
//! # }
//! ```
//!
//! The layer resolves the caller's identity itself (and hands it on, so the handler's own
//! `SecurityContext` extractor does not verify the token twice). A request without a valid
//! identity has no tenant to record it in and is not audited here (the gateway records
//! authentication failures). Each audited response carries `X-Audit-Event-Id`; with
//! [`AuditLayer::acknowledged`] the response waits until the event is delivered or on disk
//! in the spool, and the header is there only when it is.

use crate::AuditProducer;
use axum::extract::{FromRequestParts, MatchedPath, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::Response;
use futures::future::BoxFuture;
use serde_json::{Map, Value};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tracing::Instrument;
use vigil_core::builder::EventBuilder;
use vigil_core::event::{Actor, ActorType, Outcome, Resource, Severity};
use vigil_core::ids::EventId;
use vigil_security::capability::Role;
use vigil_security::context::SecurityContext;

/// The response header naming the request's audit event.
pub const AUDIT_EVENT_HEADER: &str = "x-audit-event-id";

/// What a handler says about its request's audit event.
#[derive(Debug, Default)]
struct Details {
    action: Option<String>,
    resource: Option<(String, String)>,
    severity: Option<Severity>,
    fields: Map<String, Value>,
    skip: bool,
}

/// The handler's say in its request's audit event. Taking it costs nothing when the service
/// has no [`AuditLayer`] (what is set is then simply not recorded).
#[derive(Clone, Debug, Default)]
pub struct AuditDetails(Arc<Mutex<Details>>);

impl AuditDetails {
    fn with(&self, f: impl FnOnce(&mut Details)) -> &Self {
        f(&mut self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner));
        self
    }

    /// The action (default `http.<method>`), e.g. `payment.void`.
    pub fn action(&self, action: impl Into<String>) -> &Self {
        self.with(|d| d.action = Some(action.into()))
    }

    /// What was acted on (default: the route template, as a resource of type `route`).
    pub fn resource(&self, kind: impl Into<String>, id: impl Into<String>) -> &Self {
        self.with(|d| d.resource = Some((kind.into(), id.into())))
    }

    /// How much it matters (default: from the status).
    pub fn severity(&self, severity: Severity) -> &Self {
        self.with(|d| d.severity = Some(severity))
    }

    /// A payload field, beside `method`, `route` and `status`.
    pub fn field(&self, name: impl Into<String>, value: impl Into<Value>) -> &Self {
        self.with(|d| {
            d.fields.insert(name.into(), value.into());
        })
    }

    /// No event for this request (the handler emitted a richer one itself).
    pub fn skip(&self) -> &Self {
        self.with(|d| d.skip = true)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for AuditDetails {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(parts
            .extensions
            .get::<AuditDetails>()
            .cloned()
            .unwrap_or_default())
    }
}

/// The layer: `router.layer(AuditLayer::new(producer))`.
#[derive(Clone, Debug)]
pub struct AuditLayer {
    producer: AuditProducer,
    acknowledged: bool,
}

impl AuditLayer {
    /// Audits every mutating request through `producer`, without waiting.
    pub fn new(producer: AuditProducer) -> AuditLayer {
        AuditLayer {
            producer,
            acknowledged: false,
        }
    }

    /// Holds each audited response until its event is delivered or spooled, so a client that
    /// got an answer knows the record of it is safe (adds that wait to mutating requests).
    pub fn acknowledged(mut self) -> AuditLayer {
        self.acknowledged = true;
        self
    }
}

impl<S> tower::Layer<S> for AuditLayer {
    type Service = AuditService<S>;

    fn layer(&self, inner: S) -> AuditService<S> {
        AuditService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`AuditLayer`] wraps around each route.
#[derive(Clone, Debug)]
pub struct AuditService<S> {
    inner: S,
    layer: AuditLayer,
}

fn mutating(m: &Method) -> bool {
    matches!(
        *m,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

/// The event for a request that ended with `status`.
fn request_event(
    ctx: &SecurityContext,
    method: &Method,
    route: &str,
    status: StatusCode,
    details: Details,
) -> EventBuilder {
    let outcome = match status.as_u16() {
        s if s < 400 => Outcome::Success,
        401 | 403 => Outcome::Denied,
        _ => Outcome::Failure,
    };
    let severity = details.severity.unwrap_or(match status.as_u16() {
        s if s < 400 => Severity::Info,
        401 | 403 => Severity::Warning,
        s if s < 500 => Severity::Notice,
        _ => Severity::Error,
    });
    let kind = if ctx.roles.contains(Role::Service) {
        ActorType::Service
    } else {
        ActorType::User
    };
    let actor = Actor::new(
        kind,
        ctx.user_id.clone().unwrap_or_else(|| "anonymous".into()),
    );
    let (rkind, rid) = details
        .resource
        .unwrap_or_else(|| ("route".into(), route.to_owned()));
    let action = details
        .action
        .unwrap_or_else(|| format!("http.{}", method.as_str().to_ascii_lowercase()));
    let mut payload = details.fields;
    payload.insert("method".into(), method.as_str().into());
    payload.insert("route".into(), route.into());
    payload.insert("status".into(), status.as_u16().into());
    EventBuilder::new(action, actor, Resource::new(rkind, rid), outcome)
        .severity(severity)
        .trace_id(ctx.trace_id.clone())
        .payload(payload)
}

impl<S> tower::Service<Request> for AuditService<S>
where
    S: tower::Service<Request, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        // The clone that was polled ready serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if !mutating(req.method()) {
            return Box::pin(inner.call(req));
        }
        let layer = self.layer.clone();
        Box::pin(async move {
            let (mut parts, body) = req.into_parts();
            let ctx = SecurityContext::from_request_parts(&mut parts, &())
                .await
                .ok();
            let route = parts
                .extensions
                .get::<MatchedPath>()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_else(|| parts.uri.path().to_owned());
            let method = parts.method.clone();
            let details = AuditDetails::default();
            parts.extensions.insert(details.clone());
            if let Some(c) = &ctx {
                parts.extensions.insert(c.clone());
            }
            let mut resp = inner.call(Request::from_parts(parts, body)).await?;
            let Some(ctx) = ctx else { return Ok(resp) };
            let details = std::mem::take(
                &mut *details
                    .0
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            );
            if details.skip {
                return Ok(resp);
            }
            let id = EventId::from_uuid(uuid::Uuid::now_v7());
            let event = request_event(&ctx, &method, &route, resp.status(), details).event_id(id);
            let header = HeaderValue::from_str(&id.to_string()).expect("a UUID is a header value");
            // The span the event is emitted under: the audit service appends it as this span's
            // child (its id derives from the event id), so the trace runs on into the log.
            let span = tracing::info_span!(
                "audit.emit",
                otel.kind = "producer",
                tenant = %ctx.tenant_id,
                vigil.event_id = %id,
            );
            vigil_security::trace::start_in_trace(
                &span,
                &ctx.trace_id,
                Some(vigil_security::trace::event_span_id(&id.to_string())),
            );
            if layer.acknowledged {
                match layer
                    .producer
                    .emit_durable(&ctx.tenant_id, event)
                    .instrument(span)
                    .await
                {
                    Ok(()) => {
                        resp.headers_mut().insert(AUDIT_EVENT_HEADER, header);
                    }
                    Err(e) => {
                        tracing::error!(tenant = %ctx.tenant_id, trace_id = %ctx.trace_id, error = %e,
                            "the audit event of a request could not be made durable")
                    }
                }
            } else {
                span.in_scope(|| layer.producer.emit(&ctx.tenant_id, event));
                resp.headers_mut().insert(AUDIT_EVENT_HEADER, header);
            }
            Ok(resp)
        })
    }
}
