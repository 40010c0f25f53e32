//! The audit layer on a real axum service on a real port: one event per mutating request, in
//! the caller's tenant, with what the handler added; reads and anonymous requests not audited.

use async_trait::async_trait;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vigil_producer::layer::{AuditDetails, AuditLayer, AUDIT_EVENT_HEADER};
use vigil_producer::{
    AuditProducer, Delivery, ProducerConfig, TenantEvent, Transport, TransportError,
};
use vigil_security::capability::{Capability, CapabilityPolicy};
use vigil_security::context::{Guard, IdentitySource, SecurityConfig, SecurityContext};
use vigil_security::error::ApiError;

#[derive(Debug, Default)]
struct FarEnd {
    down: AtomicBool,
    got: Mutex<Vec<(String, Value)>>,
}

#[async_trait]
impl Transport for FarEnd {
    fn name(&self) -> &'static str {
        "test"
    }

    async fn send(&self, batch: &[TenantEvent]) -> Result<Delivery, TransportError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(TransportError::Unavailable("down".into()));
        }
        self.got.lock().unwrap().extend(batch.iter().map(|e| {
            (
                e.tenant().to_string(),
                serde_json::from_slice(e.json()).unwrap(),
            )
        }));
        Ok(Delivery::default())
    }
}

async fn create_order(audit: AuditDetails) -> (StatusCode, &'static str) {
    audit
        .action("order.create")
        .resource("order", "o-1")
        .field("item", "tea");
    (StatusCode::CREATED, "created")
}

async fn refund(ctx: SecurityContext) -> Result<&'static str, ApiError> {
    ctx.require(Capability::AuditAdmin)?;
    Ok("refunded")
}

async fn quiet(audit: AuditDetails) -> &'static str {
    audit.skip();
    "not audited here"
}

async fn broken(Path(_id): Path<String>) -> StatusCode {
    StatusCode::INTERNAL_SERVER_ERROR
}

struct Service {
    base: String,
    far: Arc<FarEnd>,
    producer: AuditProducer,
    _dir: tempfile::TempDir,
}

async fn service(acknowledged: bool) -> Service {
    let dir = tempfile::tempdir().unwrap();
    let far = Arc::new(FarEnd::default());
    let registry = prometheus::Registry::new();
    let mut config = ProducerConfig::new("shop").with_spool(dir.path());
    config.send_timeout = Duration::from_millis(200);
    let producer = AuditProducer::start(config, far.clone() as Arc<dyn Transport>, &registry)
        .await
        .unwrap();
    let security = SecurityConfig {
        source: IdentitySource {
            trusted_headers: Some(Vec::new()),
            bearer: None,
        },
        guard: Guard::new(CapabilityPolicy::shipped(), &registry),
    };
    let layer = if acknowledged {
        AuditLayer::new(producer.clone()).acknowledged()
    } else {
        AuditLayer::new(producer.clone())
    };
    let app = Router::new()
        .route("/v1/orders", post(create_order).get(|| async { "list" }))
        .route("/v1/refunds", post(refund))
        .route("/v1/quiet", post(quiet))
        .route("/v1/broken/{id}", post(broken).delete(broken))
        .route("/v1/ping", get(|| async { "pong" }))
        .layer(layer)
        .layer(Extension(security));
    // As every Vigil service does: trace ids, metrics, the error shape.
    let metrics = vigil_security::http_metrics::HttpMetrics::new("shop", &registry, 40);
    let app = vigil_security::harden(app, metrics);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .unwrap()
    });
    Service {
        base,
        far,
        producer,
        _dir: dir,
    }
}

impl Service {
    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        reqwest::Client::new()
            .post(format!("{}{path}", self.base))
            .header("X-Tenant-ID", "acme")
            .header("X-User-ID", "u-42")
            .header("X-Roles", "cashier")
            .header(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )
    }

    async fn events(&self) -> Vec<(String, Value)> {
        self.producer.flush().await;
        self.far.got.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn a_mutating_request_is_one_event_in_the_callers_tenant_with_the_handlers_details() {
    let svc = service(false).await;
    let r = svc.post("/v1/orders").send().await.unwrap();
    assert_eq!(r.status(), 201);
    let id = r.headers()[AUDIT_EVENT_HEADER].to_str().unwrap().to_owned();
    let events = svc.events().await;
    assert_eq!(events.len(), 1);
    let (tenant, e) = &events[0];
    assert_eq!(tenant, "acme");
    assert_eq!(e["event_id"], id.as_str());
    assert_eq!(e["action"], "order.create");
    assert_eq!(e["actor"]["type"], "user");
    assert_eq!(e["actor"]["id"], "u-42");
    assert_eq!(e["resource"]["type"], "order");
    assert_eq!(e["resource"]["id"], "o-1");
    assert_eq!(e["outcome"], "success");
    assert_eq!(e["severity"], "info");
    assert_eq!(e["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(e["payload"]["route"], "/v1/orders");
    assert_eq!(e["payload"]["method"], "POST");
    assert_eq!(e["payload"]["status"], 201);
    assert_eq!(e["payload"]["item"], "tea");
    assert_eq!(e["source"]["service"], "shop");
    assert_eq!(e["source"]["producer_seq"], 1);
}

#[tokio::test]
async fn reads_anonymous_requests_and_skipped_ones_are_not_audited() {
    let svc = service(false).await;
    let get = reqwest::Client::new()
        .get(format!("{}/v1/orders", svc.base))
        .header("X-Tenant-ID", "acme")
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 200);
    let anonymous = reqwest::Client::new()
        .post(format!("{}/v1/orders", svc.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        anonymous.status(),
        201,
        "this handler does not ask who calls"
    );
    assert!(anonymous.headers().get(AUDIT_EVENT_HEADER).is_none());
    assert_eq!(svc.post("/v1/quiet").send().await.unwrap().status(), 200);
    assert!(svc.events().await.is_empty());
}

#[tokio::test]
async fn refusals_and_failures_are_audited_with_their_outcome_and_the_route_template() {
    let svc = service(false).await;
    assert_eq!(svc.post("/v1/refunds").send().await.unwrap().status(), 403);
    let r = reqwest::Client::new()
        .delete(format!("{}/v1/broken/b-7", svc.base))
        .header("X-Tenant-ID", "globex")
        .header("X-Roles", "service")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    let events = svc.events().await;
    let (_, denied) = &events[0];
    assert_eq!(denied["action"], "http.post");
    assert_eq!(denied["outcome"], "denied");
    assert_eq!(denied["severity"], "warning");
    assert_eq!(denied["resource"]["id"], "/v1/refunds");
    let (tenant, failed) = &events[1];
    assert_eq!(tenant, "globex");
    assert_eq!(failed["action"], "http.delete");
    assert_eq!(failed["outcome"], "failure");
    assert_eq!(failed["severity"], "error");
    assert_eq!(failed["actor"]["type"], "service");
    assert_eq!(failed["actor"]["id"], "anonymous");
    assert_eq!(failed["payload"]["route"], "/v1/broken/{id}");
}

#[tokio::test]
async fn an_acknowledged_response_waits_until_its_event_is_delivered_or_spooled() {
    let svc = service(true).await;
    let r = svc.post("/v1/orders").send().await.unwrap();
    assert!(r.headers().get(AUDIT_EVENT_HEADER).is_some());
    assert_eq!(
        svc.far.got.lock().unwrap().len(),
        1,
        "delivered before the answer"
    );
    svc.far.down.store(true, Ordering::SeqCst);
    let r = svc.post("/v1/orders").send().await.unwrap();
    assert_eq!(r.status(), 201);
    assert!(r.headers().get(AUDIT_EVENT_HEADER).is_some());
    assert_eq!(
        svc.producer.metrics().spooled.get(),
        1,
        "spooled before the answer"
    );
}
