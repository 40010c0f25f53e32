//! HTTP batches to the audit service: `POST {base}/v1/events`, one request per tenant of a
//! batch (at most 1,000 events each), each tenant's events in order.
//!
//! The tenant of a request comes from the caller's identity, so the transport presents one per
//! tenant: the trusted identity headers (from a peer the audit service trusts, e.g. on
//! loopback), or a bearer token a [`TokenSource`] makes for the tenant.

use crate::transport::{by_tenant, Delivery, TenantEvent, Transport, TransportError};
use async_trait::async_trait;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use vigil_core::ids::TenantId;

/// Most events the audit service takes in one request.
const MAX_PER_REQUEST: usize = 1000;

/// Makes a bearer token with which this service may write `tenant`'s audit events.
pub trait TokenSource: Send + Sync + std::fmt::Debug {
    /// A token for `tenant` (role `service`).
    fn token(&self, tenant: &TenantId) -> String;
}

/// How the transport identifies itself to the audit service.
#[derive(Clone, Debug)]
pub enum HttpAuth {
    /// `X-Tenant-ID`, `X-User-ID` (the service) and `X-Roles: service`: for a peer the audit
    /// service trusts (loopback, or `--trusted-peer`).
    TrustedHeaders,
    /// `Authorization: Bearer` with a token per tenant.
    Bearer(Arc<dyn TokenSource>),
}

/// The HTTP transport.
#[derive(Debug)]
pub struct HttpTransport {
    url: String,
    auth: HttpAuth,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    results: Vec<EventAnswer>,
}

#[derive(Deserialize)]
struct EventAnswer {
    status: String,
    event_id: Option<String>,
    error: Option<EventProblem>,
}

#[derive(Deserialize)]
struct EventProblem {
    message: String,
}

impl HttpTransport {
    /// Posts to the audit service at `base_url` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base_url: &str, auth: HttpAuth) -> HttpTransport {
        HttpTransport {
            url: format!("{}/v1/events", base_url.trim_end_matches('/')),
            auth,
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(2))
                .pool_idle_timeout(Duration::from_secs(30))
                .build()
                .expect("an HTTP client"),
        }
    }

    /// One request; besides the refusals, the ids of valid events the service did not store
    /// because others in the same request were invalid (a batch is validated as a whole).
    #[tracing::instrument(name = "audit.send", skip_all, fields(otel.kind = "client", tenant = %tenant, vigil.events = events.len()))]
    async fn post(
        &self,
        tenant: &TenantId,
        events: &[&TenantEvent],
        service: &str,
    ) -> Result<(Delivery, Vec<String>), TransportError> {
        let mut body = Vec::with_capacity(events.iter().map(|e| e.json().len() + 1).sum());
        body.push(b'[');
        for (i, e) in events.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(e.json());
        }
        body.push(b']');
        let mut req = self
            .http
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(tp) = vigil_security::trace::traceparent() {
            req = req.header("traceparent", tp);
        }
        req = match &self.auth {
            HttpAuth::TrustedHeaders => req
                .header("X-Tenant-ID", tenant.as_str())
                .header("X-User-ID", service)
                .header("X-Roles", "service"),
            HttpAuth::Bearer(tokens) => req.bearer_auth(tokens.token(tenant)),
        };
        let r = req
            .send()
            .await
            .map_err(|e| TransportError::Unavailable(e.without_url().to_string()))?;
        let status = r.status();
        let text = r
            .text()
            .await
            .map_err(|e| TransportError::Unavailable(e.without_url().to_string()))?;
        match status.as_u16() {
            // Taken. The per-event results say which were refused for good; an answer
            // without them (another implementation of the endpoint) refused none.
            200 => Ok(serde_json::from_str::<Answer>(&text)
                .map(refusals)
                .unwrap_or_default()),
            // Every event refused (all invalid, or all taken by other content): for good.
            409 | 422 => {
                let details: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                match serde_json::from_value::<Answer>(details["details"].clone()) {
                    Ok(answer) => Ok(refusals(answer)),
                    Err(_) => Err(TransportError::Refused(format!("{status}: {text}"))),
                }
            }
            // Credentials not (yet) accepted — a key the audit service has not fetched, a
            // misconfiguration someone will fix — and overload are worth waiting out; the
            // events stay spooled meanwhile.
            401 | 403 | 408 | 429 => Err(TransportError::Unavailable(format!("{status}: {text}"))),
            s if s >= 500 => Err(TransportError::Unavailable(format!("{status}: {text}"))),
            _ => Err(TransportError::Refused(format!("{status}: {text}"))),
        }
    }
}

/// The events refused for good, and those to send again (`not_stored`: valid, but in a
/// request the service refused as a whole).
fn refusals(answer: Answer) -> (Delivery, Vec<String>) {
    let mut refused = Vec::new();
    let mut again = Vec::new();
    for r in answer.results {
        match r.status.as_str() {
            "rejected" | "conflict" => refused.push((
                r.event_id.unwrap_or_default(),
                r.error.map(|e| e.message).unwrap_or(r.status),
            )),
            "not_stored" => again.extend(r.event_id),
            _ => {}
        }
    }
    (Delivery { refused }, again)
}

#[async_trait]
impl Transport for HttpTransport {
    fn name(&self) -> &'static str {
        "http"
    }

    async fn send(&self, batch: &[TenantEvent]) -> Result<Delivery, TransportError> {
        let mut all = Delivery::default();
        for (tenant, events) in by_tenant(batch) {
            for chunk in events.chunks(MAX_PER_REQUEST) {
                let service = &chunk[0].event().source.service;
                let (d, again) = self.post(tenant, chunk, service).await?;
                all.refused.extend(d.refused);
                if !again.is_empty() {
                    // The valid rest of a request refused for its invalid events: once more
                    // without them.
                    let rest: Vec<&TenantEvent> = chunk
                        .iter()
                        .copied()
                        .filter(|e| again.contains(&e.event().event_id.to_string()))
                        .collect();
                    let (d, still) = self.post(tenant, &rest, service).await?;
                    all.refused.extend(d.refused);
                    if !still.is_empty() {
                        return Err(TransportError::Unavailable(format!(
                            "{} valid events were not stored twice",
                            still.len()
                        )));
                    }
                }
            }
        }
        Ok(all)
    }
}
