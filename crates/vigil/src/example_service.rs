//! `vigil example-service`: a small orders service that audits itself the way any service of
//! the fleet would — the audit producer (HTTP or Kafka, with a spool) and the audit layer on
//! its router — to try the pipeline end to end, and for the fault tests that kill it.
//!
//! `POST /v1/orders` (`{"item": "tea", "qty": 2}`) and `DELETE /v1/orders/{id}` are audited;
//! the caller's identity comes from the trusted headers (`X-Tenant-ID`, `X-User-ID`,
//! `X-Roles`) on loopback. `GET /metrics` shows the producer's metrics.

use anyhow::Context;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Extension, Router};
use clap::Args;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use vigil_producer::layer::{AuditDetails, AuditLayer};
use vigil_producer::{
    AuditProducer, HttpAuth, HttpTransport, KafkaTransport, Mode, ProducerConfig, Transport,
};
use vigil_security::capability::CapabilityPolicy;
use vigil_security::context::{Guard, IdentitySource, SecurityConfig};
use vigil_security::extract::{Json, Path};

#[derive(Args, Debug)]
pub(crate) struct ExampleServiceArgs {
    /// Where the service listens.
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    /// Send audit events to this audit service over HTTP (as a trusted peer).
    #[arg(long, conflicts_with = "kafka_bootstrap")]
    audit_url: Option<String>,
    /// Send audit events to Kafka (audit.events.v1) on these brokers.
    #[arg(long, env = "VIGIL_KAFKA_BOOTSTRAP")]
    kafka_bootstrap: Option<String>,
    /// The producer's spool (durable mode).
    #[arg(long, default_value = ".vigil/example-spool")]
    spool_dir: PathBuf,
    /// `durable` (spool, never drop) or `drop_on_full`.
    #[arg(long, default_value = "durable")]
    mode: String,
    /// `source.service` of the events.
    #[arg(long, default_value = "orders")]
    service: String,
    /// A send that takes longer counts as failed (its batch is spooled).
    #[arg(long, default_value_t = 3000)]
    send_timeout_ms: u64,
    /// Answer at once instead of when the request's audit event is delivered or spooled.
    #[arg(long)]
    no_ack: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewOrder {
    item: String,
    #[serde(default = "one")]
    qty: u32,
}

fn one() -> u32 {
    1
}

async fn create_order(
    audit: AuditDetails,
    Json(order): Json<NewOrder>,
) -> (StatusCode, Json<serde_json::Value>) {
    let id = format!("o-{}", uuid::Uuid::now_v7().simple());
    audit
        .action("order.create")
        .resource("order", id.clone())
        .field("item", order.item)
        .field("qty", order.qty);
    (
        StatusCode::CREATED,
        Json(serde_json::json!({"order_id": id})),
    )
}

async fn cancel_order(audit: AuditDetails, Path(id): Path<String>) -> StatusCode {
    audit.action("order.cancel").resource("order", id);
    StatusCode::NO_CONTENT
}

pub(crate) async fn run(
    args: ExampleServiceArgs,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let timeout = Duration::from_millis(args.send_timeout_ms.max(1));
    let transport: Arc<dyn Transport> = match (&args.audit_url, &args.kafka_bootstrap) {
        (Some(url), _) => Arc::new(HttpTransport::new(url, HttpAuth::TrustedHeaders)),
        (None, Some(b)) => {
            Arc::new(KafkaTransport::new(b, timeout).context("creating the Kafka producer")?)
        }
        (None, None) => {
            anyhow::bail!("name where audit events go: --audit-url or --kafka-bootstrap")
        }
    };
    let mode = Mode::parse(&args.mode)
        .ok_or_else(|| anyhow::anyhow!("--mode must be durable or drop_on_full"))?;
    let mut config = ProducerConfig::new(&args.service);
    config.mode = mode;
    config.spool_dir = Some(args.spool_dir.clone());
    config.send_timeout = timeout;
    let registry = prometheus::Registry::new();
    let producer = AuditProducer::start(config, transport, &registry)
        .await
        .context("starting the audit producer")?;
    let security = SecurityConfig {
        source: IdentitySource {
            trusted_headers: Some(Vec::new()),
            bearer: None,
        },
        guard: Guard::new(CapabilityPolicy::shipped(), &registry),
    };
    let layer = if args.no_ack {
        AuditLayer::new(producer.clone())
    } else {
        AuditLayer::new(producer.clone()).acknowledged()
    };
    let metrics_registry = registry.clone();
    let app = Router::new()
        .route("/v1/orders", post(create_order))
        .route("/v1/orders/{id}", delete(cancel_order))
        .layer(layer)
        .layer(Extension(security))
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/metrics",
            get(move || {
                let r = metrics_registry.clone();
                async move {
                    let mut buf = Vec::new();
                    prometheus::Encoder::encode(
                        &prometheus::TextEncoder::new(),
                        &r.gather(),
                        &mut buf,
                    )
                    .expect("text encoding");
                    String::from_utf8(buf).expect("UTF-8")
                }
            }),
        );
    let http_metrics = vigil_security::http_metrics::HttpMetrics::new(
        &args.service,
        &registry,
        vigil_security::http_metrics::MAX_ERROR_CODES,
    );
    let app = vigil_security::harden(app, http_metrics);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(addr = %listener.local_addr()?, producer_id = producer.producer_id(), "example service listening");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await?;
    producer.shutdown().await;
    Ok(())
}
