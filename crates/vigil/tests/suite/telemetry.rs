//! Traces across the fleet, as an operator sees them in a collector: a request through the
//! gateway to a service that audits itself, and on into the audit log, is one trace — the
//! same trace id in every span exported over OTLP, in the response's `X-Trace-Id` and in the
//! audit record — with each hop the child of the one before.

use crate::common::*;
use axum::body::Bytes;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message;
use reqwest::Client;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A span as the collector received it.
#[derive(Clone, Debug)]
struct Seen {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent: String,
    attrs: HashMap<String, String>,
    links: Vec<String>,
}

fn text(kvs: &[KeyValue]) -> HashMap<String, String> {
    kvs.iter()
        .filter_map(|kv| {
            let v = match kv.value.as_ref()?.value.as_ref()? {
                AnyValue::StringValue(s) => s.clone(),
                AnyValue::IntValue(i) => i.to_string(),
                AnyValue::BoolValue(b) => b.to_string(),
                AnyValue::DoubleValue(d) => d.to_string(),
                _ => return None,
            };
            Some((kv.key.clone(), v))
        })
        .collect()
}

/// An OTLP/HTTP (protobuf) trace receiver on a free port.
async fn collector() -> (SocketAddr, Arc<Mutex<Vec<Seen>>>) {
    let seen = Arc::new(Mutex::new(Vec::<Seen>::new()));
    let s = Arc::clone(&seen);
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| {
            let s = Arc::clone(&s);
            async move {
                let req = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                let mut out = s.lock().unwrap();
                for rs in req.resource_spans {
                    let service = rs
                        .resource
                        .as_ref()
                        .map(|r| text(&r.attributes))
                        .and_then(|a| a.get("service.name").cloned())
                        .unwrap_or_default();
                    for ss in rs.scope_spans {
                        for sp in ss.spans {
                            out.push(Seen {
                                service: service.clone(),
                                name: sp.name.clone(),
                                trace_id: hex::encode(&sp.trace_id),
                                span_id: hex::encode(&sp.span_id),
                                parent: hex::encode(&sp.parent_span_id),
                                attrs: text(&sp.attributes),
                                links: sp.links.iter().map(|l| hex::encode(&l.span_id)).collect(),
                            });
                        }
                    }
                }
                (
                    [("content-type", "application/x-protobuf")],
                    ExportTraceServiceResponse::default().encode_to_vec(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, seen)
}

/// The OTEL_* settings of a process exporting to `collector` as `service`.
fn otel_env(collector: SocketAddr, service: &str) -> Vec<(String, String)> {
    vec![
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
            format!("http://{collector}"),
        ),
        ("OTEL_SERVICE_NAME".into(), service.into()),
        // Export within a tenth of a second rather than five.
        ("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into()),
    ]
}

/// Waits until the collector holds spans satisfying `done`, and returns them all.
async fn spans_until(
    seen: &Arc<Mutex<Vec<Seen>>>,
    what: &str,
    done: impl Fn(&[Seen]) -> bool,
) -> Vec<Seen> {
    for _ in 0..200 {
        {
            let s = seen.lock().unwrap();
            if done(&s) {
                return s.clone();
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let s = seen.lock().unwrap();
    let names: Vec<_> = s
        .iter()
        .map(|x| format!("{}:{} {}", x.service, x.name, x.trace_id))
        .collect();
    panic!("the collector never received {what}; it holds {names:#?}");
}

fn one<'a>(spans: &'a [Seen], trace: &str, service: &str, name: &str) -> &'a Seen {
    let found: Vec<&Seen> = spans
        .iter()
        .filter(|s| s.trace_id == trace && s.service == service && s.name == name)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one {service}:{name} span in trace {trace}, found {found:#?}"
    );
    found[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_one_trace_from_the_gateway_through_the_service_into_the_audit_log() {
    let (otlp, seen) = collector().await;
    let env = otel_env(otlp, "audit");
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let d = dev_with_env(&env).await;

    // The orders service, auditing itself into the audit service of `vigil dev`.
    let spool = tempfile::tempdir().unwrap();
    let orders: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut svc = spawn_vigil_with_env(
        &[
            "example-service".into(),
            "--listen".into(),
            orders.to_string(),
            "--spool-dir".into(),
            spool.path().display().to_string(),
            "--audit-url".into(),
            d.audit.clone(),
        ],
        orders,
        otel_env(otlp, "orders"),
    );
    svc.wait_for("/healthz").await;

    // A gateway of its own in front of it, verifying the tokens of `vigil dev`'s issuer.
    let gw: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let config = spool.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            r#"
            [auth]
            jwks_url = "{auth}/.well-known/jwks.json"
            issuer = "{auth}"
            [rate_limit]
            default_rpm = 6000
            [[routes]]
            prefix = "/v1/orders"
            upstreams = ["http://{orders}"]
            access = "authenticated"
            "#,
            auth = d.auth
        ),
    )
    .unwrap();
    let mut gateway = spawn_vigil_with_env(
        &[
            "gateway".into(),
            "serve".into(),
            "--config".into(),
            config.display().to_string(),
            "--listen".into(),
            gw.to_string(),
        ],
        gw,
        otel_env(otlp, "gateway"),
    );
    gateway.wait_for("/gateway/readyz").await;

    let http = Client::new();
    let token = admin_token(&http, &d).await;
    let order = |traceparent: Option<&str>| {
        let mut rb = http
            .post(format!("http://{gw}/v1/orders"))
            .bearer_auth(&token)
            .json(&json!({"item": "tea", "qty": 2}));
        if let Some(tp) = traceparent {
            rb = rb.header("traceparent", tp);
        }
        async move {
            let r = rb.send().await.unwrap();
            assert!(r.status().is_success(), "{}", r.status());
            let h = |n: &str| r.headers()[n].to_str().unwrap().to_owned();
            (h("x-trace-id"), h("x-audit-event-id"))
        }
    };

    // 1. The gateway starts the trace.
    let (trace, event_id) = order(None).await;
    // The audit record carries it: its trace_id opens this trace.
    let found: Value = http
        .get(format!("{}/v1/events?trace_id={trace}", d.audit))
        .header("X-Tenant-ID", "acme")
        .header("X-User-ID", "sre")
        .header("X-Roles", "admin")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let events = found["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{found}");
    assert_eq!(events[0]["event_id"], event_id.as_str());
    assert_eq!(events[0]["trace_id"], trace.as_str());

    let spans = spans_until(&seen, "the trace through all three", |s| {
        s.iter()
            .any(|x| x.trace_id == trace && x.name == "audit.append")
            && s.iter().any(|x| {
                x.trace_id == trace && x.service == "gateway" && x.name == "POST /v1/orders"
            })
            // The gateway's server span ends (and is exported) after its client span.
            && s.iter().any(|x| {
                x.trace_id == trace && x.service == "gateway" && x.name == "POST /{*path}"
            })
            && s.iter().any(|x| {
                x.trace_id == trace && x.service == "orders" && x.name == "POST /v1/orders"
            })
    })
    .await;
    let g_req = one(&spans, &trace, "gateway", "POST /{*path}");
    // The upstream call: a client span named after the route it forwards to.
    let g_up = one(&spans, &trace, "gateway", "POST /v1/orders");
    let o_req = one(&spans, &trace, "orders", "POST /v1/orders");
    let o_emit = one(&spans, &trace, "orders", "audit.emit");
    let a_append = one(&spans, &trace, "audit", "audit.append");
    // Each hop is the child of the one before.
    assert_eq!(g_req.parent, "", "the gateway starts the trace");
    assert_eq!(g_up.parent, g_req.span_id);
    assert_eq!(
        o_req.parent, g_up.span_id,
        "the service continues the gateway's span"
    );
    assert_eq!(o_emit.parent, o_req.span_id);
    assert_eq!(
        a_append.parent, o_emit.span_id,
        "the audit append continues the emit"
    );
    // Spans carry the tenant, the route and the outcome.
    for s in [g_req, o_req, o_emit, a_append] {
        assert_eq!(
            s.attrs.get("tenant").map(String::as_str),
            Some("acme"),
            "{s:?}"
        );
    }
    assert_eq!(o_req.attrs["http.route"], "/v1/orders");
    assert!(o_req.attrs["http.response.status_code"].starts_with('2'));
    assert_eq!(a_append.attrs["vigil.event_id"], event_id);
    // The append rode in a group commit, linked, which wrote through the store.
    let commit = spans
        .iter()
        .find(|s| {
            s.service == "audit" && s.name == "audit.commit" && a_append.links.contains(&s.span_id)
        })
        .expect("the append is linked to its group commit");
    assert!(
        spans
            .iter()
            .any(|s| s.name == "store.append" && s.parent == commit.span_id),
        "the commit's store call is traced"
    );

    // 2. A caller's own traceparent is continued, not replaced.
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let (trace2, _) = order(Some(&format!("00-{caller_trace}-00f067aa0ba902b7-01"))).await;
    assert_eq!(trace2, caller_trace);
    let spans = spans_until(&seen, "the caller's trace", |s| {
        s.iter()
            .any(|x| x.trace_id == caller_trace && x.name == "audit.append")
            // The gateway exports its server span from another process, when the answer is
            // sent: it may land after the audit's.
            && s.iter().any(|x| {
                x.trace_id == caller_trace && x.service == "gateway" && x.name == "POST /{*path}"
            })
    })
    .await;
    assert_eq!(
        one(&spans, caller_trace, "gateway", "POST /{*path}").parent,
        "00f067aa0ba902b7"
    );
    // No span of one request landed in the other's trace.
    let traces: std::collections::HashSet<&str> = spans
        .iter()
        .filter(|s| s.name == "audit.append")
        .map(|s| s.trace_id.as_str())
        .collect();
    assert!(traces.contains(trace.as_str()) && traces.contains(caller_trace));
}

/// A gRPC OTLP collector: what it receives, as (service, span name, trace id).
#[derive(Clone, Default)]
struct GrpcSink(Arc<Mutex<Vec<(String, String, String)>>>);

#[async_trait::async_trait]
impl opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService
    for GrpcSink
{
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut out = self.0.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .as_ref()
                .map(|r| text(&r.attributes))
                .and_then(|a| a.get("service.name").cloned())
                .unwrap_or_default();
            for sp in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
                out.push((service.clone(), sp.name, hex::encode(&sp.trace_id)));
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// `OTEL_EXPORTER_OTLP_PROTOCOL=grpc`: the same spans reach a gRPC collector.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_exported_over_grpc_when_asked() {
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer;
    let sink = GrpcSink::default();
    let port = free_port();
    let server = tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(sink.clone()))
        .serve(format!("127.0.0.1:{port}").parse().unwrap());
    tokio::spawn(server);
    let dir = tempfile::tempdir().unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut audit = spawn_vigil_with_env(
        &[
            "audit".into(),
            "serve".into(),
            "--trust-headers".into(),
            "--listen".into(),
            addr.to_string(),
            "--data-dir".into(),
            dir.path().display().to_string(),
        ],
        addr,
        vec![
            ("OTEL_EXPORTER_OTLP_PROTOCOL".into(), "grpc".into()),
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
                format!("http://127.0.0.1:{port}"),
            ),
            ("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into()),
        ],
    );
    audit.wait_ready().await;
    let r = Client::new()
        .post(format!("http://{addr}/v1/events"))
        .header("X-Tenant-ID", "acme")
        .header("X-User-ID", "payments")
        .header("X-Roles", "service")
        .json(&events(0, 2))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let trace = r.headers()["x-trace-id"].to_str().unwrap().to_owned();
    for _ in 0..200 {
        let got = sink.0.lock().unwrap().clone();
        let request = got
            .iter()
            .any(|(s, n, t)| s == "vigil-audit" && n == "POST /v1/events" && *t == trace);
        let commit = got
            .iter()
            .any(|(s, n, _)| s == "vigil-audit" && n == "audit.commit");
        if request && commit {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "the gRPC collector never received the request's spans: {:?}",
        sink.0.lock().unwrap()
    );
}
