//! Logs and traces for every Vigil process: JSON logs (plain on a terminal) filtered by
//! `VIGIL_LOG`, and OpenTelemetry spans exported over OTLP when an endpoint is configured
//! (`--otlp-endpoint` or `OTEL_EXPORTER_OTLP_ENDPOINT`; off otherwise).
//!
//! The standard `OTEL_*` variables are honoured: `OTEL_EXPORTER_OTLP_PROTOCOL` (and its
//! `_TRACES_` form: `http/protobuf`, the default, or `grpc`), `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
//! (used as is), `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT`,
//! `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER(_ARG)`,
//! `OTEL_BSP_*`, and `OTEL_SDK_DISABLED` / `OTEL_TRACES_EXPORTER=none` to turn it off.

use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, SdkTracerProvider};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

const VIGIL_CRATES: [&str; 9] = [
    "vigil",
    "vigil_core",
    "vigil_store",
    "vigil_security",
    "vigil_audit",
    "vigil_auth",
    "vigil_authsvc",
    "vigil_gateway",
    "vigil_producer",
];

static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether spans leave this process (an OTLP exporter is installed): per-event spans are
/// made only then.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// Where and how spans are exported.
#[derive(Debug, Clone, Default)]
pub struct TelemetryConfig {
    /// The OTLP endpoint: a base URL (`http://collector:4318` for HTTP, where `/v1/traces` is
    /// appended; `http://collector:4317` for gRPC). `None`: tracing is not exported, unless
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` names one.
    pub otlp_endpoint: Option<String>,
    /// `service.name` when neither `OTEL_SERVICE_NAME` nor `OTEL_RESOURCE_ATTRIBUTES` says.
    pub service_name: String,
    /// The log filter when `VIGIL_LOG` is not set (`info,sqlx=warn` for services; a command
    /// whose own output is the point, such as a drill's report, may want `warn`).
    pub default_filter: &'static str,
}

/// The installed telemetry; [`Telemetry::shutdown`] flushes the spans still queued.
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports what is queued and stops the exporter (at exit).
    pub fn shutdown(self) {
        if let Some(p) = self.provider {
            if let Err(e) = p.shutdown() {
                eprintln!("warning: flushing traces: {e}");
            }
        }
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// `grpc` or HTTP (protobuf), from the `OTEL_*` protocol variables.
fn grpc() -> bool {
    env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("grpc"))
}

fn disabled() -> bool {
    env("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
        || env("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim().eq_ignore_ascii_case("none"))
}

/// The exporter's URL for a base endpoint: OTLP/HTTP sends traces to `<base>/v1/traces`.
fn traces_url(base: &str, grpc: bool) -> String {
    let base = base.trim().trim_end_matches('/');
    if grpc || base.ends_with("/v1/traces") {
        base.to_owned()
    } else {
        format!("{base}/v1/traces")
    }
}

/// Installs logging (and tracing, when configured) for this process. Call once, from inside
/// the Tokio runtime (the gRPC exporter needs it).
pub fn init(config: &TelemetryConfig) -> Result<Telemetry, String> {
    use std::io::IsTerminal;
    let filter = EnvFilter::try_from_env("VIGIL_LOG")
        .unwrap_or_else(|_| EnvFilter::new(config.default_filter));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if std::io::stderr().is_terminal() {
        fmt.boxed()
    } else {
        fmt.json().boxed()
    };
    let endpoint = config
        .otlp_endpoint
        .clone()
        .filter(|e| !e.trim().is_empty());
    let signal_endpoint = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    let provider = if disabled() || (endpoint.is_none() && signal_endpoint.is_none()) {
        None
    } else {
        Some(provider(config, endpoint, signal_endpoint)?)
    };
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("vigil"))
            .with_tracked_inactivity(false)
            // Nothing here reads the OpenTelemetry context of the thread (outgoing traceparents
            // come from the tracing span): attaching it at every poll of every span is pure cost.
            .with_context_activation(false)
            .with_threads(false)
            // Each would be three or four more attributes on every span.
            .with_location(false)
            .with_target(false)
            // Vigil's own spans: not the HTTP clients' and servers' beneath them (nor the
            // exporter's own requests, which would trace themselves).
            .with_filter(
                VIGIL_CRATES
                    .iter()
                    .fold(Targets::new(), |t, c| t.with_target(*c, Level::INFO)),
            )
    });
    tracing_subscriber::registry()
        // The filter applies to logs only: a span below the log level is still traced.
        .with(fmt.with_filter(filter))
        .with(otel)
        .try_init()
        .map_err(|e| format!("installing the log subscriber: {e}"))?;
    EXPORTING.store(provider.is_some(), Ordering::Relaxed);
    Ok(Telemetry { provider })
}

fn provider(
    config: &TelemetryConfig,
    endpoint: Option<String>,
    signal_endpoint: Option<String>,
) -> Result<SdkTracerProvider, String> {
    let grpc = grpc();
    // The signal's own variable is a full URL, used as is; the base one gets the signal path.
    let url =
        signal_endpoint.unwrap_or_else(|| traces_url(endpoint.as_deref().unwrap_or(""), grpc));
    let exporter = if grpc {
        opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(url)
            .build()
    } else {
        opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(url)
            .build()
    }
    .map_err(|e| format!("the OTLP exporter: {e}"))?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    let named = env("OTEL_SERVICE_NAME").is_some()
        || env("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|a| a.contains("service.name="));
    if !named {
        resource = resource.with_service_name(config.service_name.clone());
    }
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_id_generator(VigilIds::default())
        .with_resource(resource.build())
        .build())
}

thread_local! {
    static NEXT_TRACE_ID: Cell<Option<TraceId>> = const { Cell::new(None) };
    static NEXT_SPAN_ID: Cell<Option<SpanId>> = const { Cell::new(None) };
}

/// Random ids, except those asked for with [`with_ids`]: a root span takes the trace id Vigil
/// settled for the request (so logs, errors, audit records and exported spans name one id),
/// and an audit event's spans in the service that emits it and in the audit service that
/// appends it are joined by a span id both derive from the event id (see
/// [`crate::trace::event_span_id`]), without adding a field to the record.
#[derive(Debug, Default)]
struct VigilIds(RandomIdGenerator);

impl IdGenerator for VigilIds {
    fn new_trace_id(&self) -> TraceId {
        NEXT_TRACE_ID
            .with(|n| n.take())
            .unwrap_or_else(|| self.0.new_trace_id())
    }

    fn new_span_id(&self) -> SpanId {
        NEXT_SPAN_ID
            .with(|n| n.take())
            .unwrap_or_else(|| self.0.new_span_id())
    }
}

/// Runs `f` (which starts one span) with that span's trace id (used when it has no parent)
/// and span id set.
pub(crate) fn with_ids<R>(
    trace: Option<TraceId>,
    span: Option<SpanId>,
    f: impl FnOnce() -> R,
) -> R {
    NEXT_TRACE_ID.with(|n| n.set(trace));
    NEXT_SPAN_ID.with(|n| n.set(span));
    let r = f();
    NEXT_TRACE_ID.with(|n| n.set(None));
    NEXT_SPAN_ID.with(|n| n.set(None));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_http_endpoint_gets_the_signal_path_and_grpc_does_not() {
        assert_eq!(
            traces_url("http://c:4318", false),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://c:4318/", false),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://c:4318/v1/traces", false),
            "http://c:4318/v1/traces"
        );
        assert_eq!(traces_url("http://c:4317", true), "http://c:4317");
    }

    #[test]
    fn a_requested_span_id_is_used_once() {
        let ids = VigilIds::default();
        let want = SpanId::from_bytes([7; 8]);
        let trace = TraceId::from_bytes([9; 16]);
        let got = with_ids(Some(trace), Some(want), || {
            (ids.new_trace_id(), ids.new_span_id())
        });
        assert_eq!(got, (trace, want));
        assert_ne!(ids.new_trace_id(), trace);
        assert_ne!(ids.new_span_id(), want);
    }
}
