//! The HTTP surface: thin handlers that parse into domain values, call the sequencer or the
//! store, and map the answer to JSON or the shared error shape.

mod console;
mod governance;
mod ingest;
mod ops;
mod proofs;
mod query;
mod webhooks;

use crate::checkpointer::Checkpointer;
use crate::metrics::AuditMetrics;
use crate::sequencer::Sequencer;
use axum::Router;
use std::sync::Arc;
use vigil_security::error::ApiError;
use vigil_store::{Store, StoreError};

pub use ingest::{MAX_EVENTS_PER_REQUEST, MAX_EVENT_BYTES};

/// What every handler can reach.
#[derive(Debug)]
pub struct AppState {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The group-commit writer.
    pub sequencer: Sequencer,
    /// Tenants' redaction policies.
    pub redactor: Arc<crate::redaction::Redactor>,
    /// The service's own audit events (capability denials).
    pub producer: vigil_producer::AuditProducer,
    /// The Kafka consumer, when the service consumes (its state goes in `/readyz`).
    pub kafka: Option<crate::kafka::KafkaIngest>,
    /// Checkpoints and the public key.
    pub checkpointer: Arc<Checkpointer>,
    /// Metrics.
    pub metrics: AuditMetrics,
    /// The bearer-token verifier, when the service takes tokens (its state goes in `/readyz`).
    pub bearer: Option<Arc<dyn vigil_security::token::TokenVerifier>>,
    /// The service's retention period, for tenants without their own (`None`: keep all).
    pub retention: Option<std::time::Duration>,
    /// Webhook subscriptions and deliveries.
    pub webhooks: Arc<crate::webhooks::Webhooks>,
    /// Set when shutdown begins: `/readyz` answers 503 while requests are still served.
    pub draining: std::sync::atomic::AtomicBool,
    /// The web console's settings (and the live tail's).
    pub console: crate::settings::ConsoleSettings,
    /// For the console's sign-in through the auth service.
    pub http: reqwest::Client,
}

/// The audit service's routes (without the identity layer, which [`crate::app`] adds).
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .merge(ingest::router())
        .merge(query::router())
        .merge(ops::router())
        .merge(proofs::router())
        .merge(governance::router())
        .merge(webhooks::router())
        .merge(console::router())
        .with_state(state)
}

/// Records what the caller just did in its tenant's chain, before the answer: `action` on
/// `resource` (kind, id) with `fields` in the payload. A change or a privileged read that
/// cannot be recorded is not answered as done (503).
pub(crate) async fn record_caller_act(
    app: &AppState,
    ctx: &vigil_security::context::SecurityContext,
    action: &str,
    resource: (&str, &str),
    fields: Vec<(&str, serde_json::Value)>,
) -> Result<(), ApiError> {
    use vigil_core::builder::EventBuilder;
    use vigil_core::event::{Actor, ActorType, Outcome, Resource, Severity};
    let mut event = EventBuilder::new(
        action,
        Actor::new(
            ActorType::User,
            ctx.user_id.clone().unwrap_or_else(|| "unknown".into()),
        ),
        Resource::new(resource.0, resource.1),
        Outcome::Success,
    )
    .severity(Severity::Notice)
    .trace_id(ctx.trace_id.clone());
    for (k, v) in fields {
        event = event.field(k, v);
    }
    app.producer
        .emit_durable(&ctx.tenant_id, event)
        .await
        .map_err(|e| ApiError::Unavailable(format!("{action} could not be recorded: {e}")))
}

/// Maps a store failure to the shared error shape: unreachable → 503, anything else → 500.
pub(crate) fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Unavailable { .. } => {
            ApiError::Unavailable("the audit store is unavailable; retry later".into())
        }
        StoreError::Conflict { .. } => {
            ApiError::Unavailable("the chain is contended by another writer; retry".into())
        }
        other => ApiError::internal(other),
    }
}

/// The OpenAPI document, generated from the handlers' annotations.
#[derive(Debug, utoipa::OpenApi)]
#[openapi(
    info(
        title = "Vigil audit API",
        description = "Tamper-evident, per-tenant audit log: ingest, query, chain heads, signed checkpoints."
    ),
    paths(
        ingest::ingest,
        query::list_events,
        query::get_event,
        query::chain_head,
        query::latest_checkpoint,
        query::keys,
        query::tail,
        proofs::inclusion,
        proofs::consistency,
        proofs::tile,
        ops::healthz,
        ops::readyz,
        ops::metrics,
        governance::get_policy,
        governance::put_policy,
        governance::delete_policy,
        governance::get_retention,
        governance::put_retention,
        governance::delete_retention,
        governance::erase_subject,
        governance::export_subject,
        webhooks::create,
        webhooks::list,
        webhooks::remove,
        webhooks::rotate,
        webhooks::deliveries,
        webhooks::retry,
    ),
    components(schemas(
        ingest::IngestResponse,
        ingest::EventResult,
        ingest::EventError,
        query::EventsPage,
        query::ChainHeadView,
        query::CheckpointView,
        query::KeysView,
        query::KeyView,
        proofs::InclusionProof,
        proofs::ConsistencyProof,
        governance::PolicyView,
        governance::RetentionView,
        governance::RetentionBody,
        governance::ErasureView,
        governance::SubjectExport,
        webhooks::NewWebhook,
        webhooks::WebhookView,
        webhooks::WebhookList,
        webhooks::Rotated,
        webhooks::DeliveryView,
        webhooks::DeliveryLog,
        webhooks::DeliveryStatus,
        ErrorBody
    ))
)]
pub struct ApiDoc;

/// The OpenAPI document: what utoipa generates from the handlers, with the v1 event's JSON
/// Schema from `vigil-core` (the rules live next to the validation) as the ingest body.
pub fn openapi_document() -> serde_json::Value {
    use utoipa::OpenApi;
    let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the document serializes");
    let event = vigil_core::event::json_schema();
    doc["components"]["schemas"]["Event"] = event;
    // The next page: a client (and schemathesis's stateful phase) follows next_cursor.
    doc["paths"]["/v1/events"]["get"]["responses"]["200"]["links"] = serde_json::json!({
        "NextPage": {
            "operationId": "list_events",
            "parameters": {"cursor": "$response.body#/next_cursor"},
            "description": "The next (older) page, with the same filters"
        }
    });
    let body = serde_json::json!({
        "type": "array",
        "minItems": 1,
        "maxItems": ingest::MAX_EVENTS_PER_REQUEST,
        "items": {"$ref": "#/components/schemas/Event"}
    });
    // A redaction policy, as vigil-core parses it (the rules on paths no schema can state:
    // overlap and repetition, are refused with a 400 naming them).
    let policy = serde_json::json!({
        "type": "object", "additionalProperties": false, "required": ["mode"],
        "properties": {
            "mode": {"enum": ["off", "log", "enforce"]},
            "rules": {"type": "array", "maxItems": vigil_core::redaction::MAX_RULES, "items": {
                "type": "object", "additionalProperties": false, "required": ["path", "action"],
                "properties": {
                    "path": {"type": "string", "pattern": "^payload(\\.[^.\\[\\]\\u0000-\\u001f\\u007f-\\u009f]+(\\[\\*\\])*)+$", "maxLength": vigil_core::redaction::MAX_PATH_CHARS},
                    "action": {"enum": ["mask", "hmac", "drop"]}
                }
            }},
            "sensitive": {"type": "array", "maxItems": vigil_core::redaction::MAX_RULES, "uniqueItems": true, "items": {
                "type": "string", "pattern": "^payload\\.[^.\\[\\]\\u0000-\\u001f\\u007f-\\u009f]+$", "maxLength": vigil_core::redaction::MAX_PATH_CHARS
            }},
            "personal": {"type": ["object", "null"], "additionalProperties": false, "required": ["subject", "members"],
                "properties": {
                    "subject": {"type": "string", "pattern": "^payload(\\.[^.\\[\\]\\u0000-\\u001f\\u007f-\\u009f]+)+$", "maxLength": vigil_core::redaction::MAX_PATH_CHARS},
                    "members": {"type": "array", "minItems": 1, "maxItems": vigil_core::redaction::MAX_RULES, "uniqueItems": true, "items": {
                        "type": "string", "pattern": "^payload\\.[^.\\[\\]\\u0000-\\u001f\\u007f-\\u009f]+$", "maxLength": vigil_core::redaction::MAX_PATH_CHARS
                    }}
                }}
        }
    });
    doc["components"]["schemas"]["RedactionPolicy"] = policy;
    let policy_ref = serde_json::json!({"$ref": "#/components/schemas/RedactionPolicy"});
    doc["paths"]["/v1/redaction-policy"]["put"]["requestBody"]["content"]["application/json"]
        ["schema"] = policy_ref.clone();
    doc["components"]["schemas"]["PolicyView"]["properties"]["policy"] = policy_ref;
    doc["paths"]["/v1/events"]["post"]["requestBody"]["content"] = serde_json::json!({
        "application/json": {"schema": body},
        "application/x-ndjson": {"schema": {"type": "string", "description": "One event (the Event schema) per line"}}
    });
    doc
}

pub(crate) use vigil_security::error::ErrorBody;
