//! Reads: `GET /v1/events` (filters, newest first, cursor), `GET /v1/events/{event_id}`,
//! `GET /v1/chain/head`, `GET /v1/checkpoints/latest` and `GET /v1/keys`.
//!
//! A cursor is the seq below which the next page starts, bound to the tenant and the filters
//! it was minted for: new events get higher seqs, so a page sequence stays exact while events
//! arrive, and a cursor replayed by another tenant or with other filters is refused.

use super::{store_error, AppState, ErrorBody};
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use vigil_core::event::{Action, Outcome, Severity};
use vigil_core::ids::{EventId, TenantId, TraceId};
use vigil_core::record::Record;
use vigil_core::time::Timestamp;
use vigil_security::capability::Capability;
use vigil_security::context::SecurityContext;
use vigil_security::error::ApiError;
use vigil_security::extract::{Path, Query as QueryParams};
use vigil_store::{ActionFilter, Query};

/// Default page size.
pub(crate) const DEFAULT_LIMIT: i64 = 100;
/// Largest page size.
pub(crate) const MAX_LIMIT: i64 = 1000;

pub(super) fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/events/{event_id}", get(get_event))
        .route("/v1/chain/head", get(chain_head))
        .route("/v1/checkpoints/latest", get(latest_checkpoint))
        .route("/v1/keys", get(keys))
        .route("/v1/events/tail", get(tail))
}

/// Filters of `GET /v1/events`. Unknown parameters are refused, so a typo never silently
/// widens a query.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventsParams {
    /// `actor.id` equals.
    #[param(
        min_length = 1,
        max_length = 256,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    actor_id: Option<String>,
    /// `action` equals, or with a trailing `.*` starts with (`payment.*`).
    #[param(pattern = "^[a-z0-9_-]+(\\.[a-z0-9_-]+)*(\\.\\*)?$", max_length = 128)]
    action: Option<String>,
    /// `resource.type` equals.
    #[param(
        min_length = 1,
        max_length = 256,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    resource_type: Option<String>,
    /// `resource.id` equals.
    #[param(
        min_length = 1,
        max_length = 256,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    resource_id: Option<String>,
    /// `success`, `failure` or `denied`.
    #[param(pattern = "^(success|failure|denied)$")]
    outcome: Option<String>,
    /// This severity or more severe.
    #[param(pattern = "^(info|notice|warning|error|critical|security)$")]
    min_severity: Option<String>,
    /// `occurred_at` at or after (RFC 3339).
    #[param(
        pattern = "^[2-9][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,6})?Z$"
    )]
    since: Option<String>,
    /// `occurred_at` before (RFC 3339).
    #[param(
        pattern = "^[2-9][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,6})?Z$"
    )]
    until: Option<String>,
    /// `trace_id` equals (32 hex digits, not all zero).
    #[param(
        min_length = 32,
        max_length = 32,
        pattern = "^[0-9a-fA-F]*[1-9a-fA-F][0-9a-fA-F]*$"
    )]
    trace_id: Option<String>,
    /// Page size, 1–1000 (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// `true`: every payload member, sensitive ones included — only for callers with
    /// `audit_read_unredacted`, and recorded in the tenant's chain (`audit.read_unredacted`).
    #[param(value_type = Option<bool>)]
    include_redacted: Option<String>,
    /// `next_cursor` of the previous page, with the same filters (a cursor is opaque and
    /// bound to the tenant and the filters it was issued for; any other is a 400).
    #[param(min_length = 1, max_length = 512, pattern = "^[A-Za-z0-9_-]+$")]
    cursor: Option<String>,
}

/// A page of records, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct EventsPage {
    /// Records in their served form: hashed form, visible payload with salts, both hashes.
    #[schema(value_type = Vec<Object>)]
    events: Vec<Record>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

/// Where the next page starts, for whom and for which filters (base64url JSON).
#[derive(Serialize, Deserialize)]
struct Cursor {
    t: String,
    s: i64,
    f: String,
}

/// Longest cursor accepted (an issued one is about a hundred characters).
const MAX_CURSOR: usize = 512;

impl Cursor {
    /// The cursor of the page after `seq` for `tenant` and the filters `fingerprint`.
    fn issue(tenant: &TenantId, seq: i64, fingerprint: String) -> String {
        let c = Cursor {
            t: tenant.as_str().to_owned(),
            s: seq,
            f: fingerprint,
        };
        B64URL.encode(serde_json::to_vec(&c).expect("serializable"))
    }

    /// The seq `text` continues below, when it is a cursor issued to `tenant` for the same
    /// filters; otherwise a 400 naming the cursor.
    fn redeem(text: &str, tenant: &TenantId, fingerprint: &str) -> Result<i64, ApiError> {
        let c: Cursor = Some(text)
            .filter(|t| t.len() <= MAX_CURSOR)
            .and_then(|t| B64URL.decode(t.as_bytes()).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .filter(|c: &Cursor| c.s > 0)
            .ok_or_else(|| bad("cursor", "is not a cursor this service issued"))?;
        if c.t != tenant.as_str() {
            return Err(bad("cursor", "was issued to another tenant"));
        }
        if c.f != fingerprint {
            return Err(bad("cursor", "was issued for other filters"));
        }
        Ok(c.s)
    }
}

fn bad(param: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest(format!("query parameter {param}: {why}"))
}

fn parse_params(p: EventsParams) -> Result<(Query, Option<String>), ApiError> {
    let time = |name: &str, v: Option<String>| {
        v.map(|s| Timestamp::parse(&s).map_err(|_| bad(name, "must be an RFC 3339 timestamp")))
            .transpose()
    };
    let action = match p.action {
        None => None,
        Some(a) => match a.strip_suffix(".*") {
            Some(prefix) => Some(ActionFilter::Prefix(
                Action::parse(prefix)
                    .map_err(|e| bad("action", e))?
                    .as_str()
                    .to_owned(),
            )),
            None => Some(ActionFilter::Exact(
                Action::parse(&a)
                    .map_err(|e| bad("action", e))?
                    .as_str()
                    .to_owned(),
            )),
        },
    };
    let limit = match p.limit {
        None => DEFAULT_LIMIT,
        Some(l) => l
            .parse::<i64>()
            .ok()
            .filter(|l| (1..=MAX_LIMIT).contains(l))
            .ok_or_else(|| bad("limit", format!("must be an integer from 1 to {MAX_LIMIT}")))?,
    };
    // Text filters follow the rule of the fields they match: nothing else can be stored.
    let text = |name: &str, v: Option<String>| {
        v.map(|s| vigil_core::event::check_text(name, s).map_err(|e| bad(name, e)))
            .transpose()
    };
    let q = Query {
        actor_id: text("actor_id", p.actor_id)?,
        action,
        resource_type: text("resource_type", p.resource_type)?,
        resource_id: text("resource_id", p.resource_id)?,
        outcome: p
            .outcome
            .map(|o| {
                Outcome::parse(&o)
                    .map(|o| o.as_str().to_owned())
                    .map_err(|e| bad("outcome", e))
            })
            .transpose()?,
        min_severity: p
            .min_severity
            .map(|s| Severity::parse(&s).map_err(|e| bad("min_severity", e)))
            .transpose()?,
        since: time("since", p.since)?,
        until: time("until", p.until)?,
        trace_id: p
            .trace_id
            .map(|t| {
                TraceId::parse(&t)
                    .map(|t| t.as_str().to_owned())
                    .map_err(|e| bad("trace_id", e))
            })
            .transpose()?,
        // Not a filter of this endpoint: a subject's records are the export's.
        subject_ref: None,
        before_seq: None,
        limit,
    };
    Ok((q, p.cursor))
}

/// A fingerprint of the filters (not the position or page size) a cursor belongs to.
fn fingerprint(q: &Query) -> String {
    let mut q = q.clone();
    q.before_seq = None;
    q.limit = 0;
    hex::encode(&Sha256::digest(format!("{q:?}").as_bytes())[..8])
}

/// Lists the caller's tenant's records, newest first.
#[utoipa::path(
    get, path = "/v1/events", tag = "events", params(EventsParams),
    responses(
        (status = 200, body = EventsPage),
        (status = 400, description = "A parameter or the cursor is invalid", body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub(super) async fn list_events(
    ctx: SecurityContext,
    State(app): State<Arc<AppState>>,
    QueryParams(params): QueryParams<EventsParams>,
) -> Result<Json<EventsPage>, ApiError> {
    ctx.require(Capability::AuditRead)?;
    let include = include_redacted(params.include_redacted.as_deref())?;
    let (mut q, cursor) = parse_params(params)?;
    let fp = fingerprint(&q);
    if let Some(c) = cursor {
        q.before_seq = Some(Cursor::redeem(&c, &ctx.tenant_id, &fp)?);
    }
    let limit = q.limit;
    q.limit = limit + 1;
    let mut events = app
        .store
        .query(&ctx.tenant_id, &q)
        .await
        .map_err(store_error)?;
    let next_cursor = if events.len() as i64 > limit {
        events.truncate(limit as usize);
        Some(Cursor::issue(
            &ctx.tenant_id,
            events.last().expect("a full page").seq,
            fp,
        ))
    } else {
        None
    };
    let view = View::for_caller(&app, &ctx, include, "list", None).await?;
    app.redactor
        .open_sealed(&ctx.tenant_id, &mut events)
        .await
        .map_err(store_error)?;
    view.apply(&app, &mut events);
    Ok(Json(EventsPage {
        events,
        next_cursor,
    }))
}

/// `GET /v1/events/{event_id}`'s own parameter.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ViewParams {
    /// `true`: sensitive members too (see `GET /v1/events`).
    #[param(value_type = Option<bool>)]
    include_redacted: Option<String>,
}

fn include_redacted(v: Option<&str>) -> Result<bool, ApiError> {
    match v {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(bad("include_redacted", "must be true or false")),
    }
}

/// What a reader is shown of each record's payload.
enum View {
    /// Everything (asked for, by a caller allowed to, and recorded).
    Full,
    /// The tenant's sensitive members withheld (value and salt out, commitment kept).
    Redacted(Vec<String>),
}

impl View {
    async fn for_caller(
        app: &AppState,
        ctx: &SecurityContext,
        include: bool,
        what: &str,
        event_id: Option<&str>,
    ) -> Result<View, ApiError> {
        if include {
            ctx.require(Capability::AuditReadUnredacted)?;
            record_unredacted_read(app, ctx, what, event_id).await?;
            return Ok(View::Full);
        }
        let (policy, _) = app
            .redactor
            .policy_for(&ctx.tenant_id)
            .await
            .map_err(store_error)?;
        Ok(View::Redacted(
            policy.sensitive_members().map(str::to_owned).collect(),
        ))
    }

    fn apply(&self, app: &AppState, records: &mut [Record]) {
        let label = match self {
            View::Full => "full",
            View::Redacted(_) => "redacted",
        };
        app.metrics
            .records_served
            .with_label_values(&[label])
            .inc_by(records.len() as u64);
        if let View::Redacted(members) = self {
            for r in records.iter_mut() {
                for m in members {
                    r.withhold(m, "sensitive");
                }
            }
        }
    }
}

/// An unredacted read is itself an audit event of the tenant, written before the answer.
async fn record_unredacted_read(
    app: &AppState,
    ctx: &SecurityContext,
    what: &str,
    event_id: Option<&str>,
) -> Result<(), ApiError> {
    super::record_caller_act(
        app,
        ctx,
        "audit.read_unredacted",
        ("audit_events", event_id.unwrap_or(what)),
        vec![("request", what.into())],
    )
    .await
}

/// One record of the caller's tenant by event id.
#[utoipa::path(
    get, path = "/v1/events/{event_id}", tag = "events",
    params(("event_id" = String, Path, pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", description = "The event's UUID"), ViewParams),
    responses((status = 200, body = Object), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody))
)]
pub(super) async fn get_event(
    ctx: SecurityContext,
    State(app): State<Arc<AppState>>,
    Path(event_id): Path<String>,
    QueryParams(params): QueryParams<ViewParams>,
) -> Result<Json<Record>, ApiError> {
    ctx.require(Capability::AuditRead)?;
    let id = EventId::parse(&event_id).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let include = include_redacted(params.include_redacted.as_deref())?;
    let record = app
        .store
        .get(&ctx.tenant_id, &id.to_string())
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::NotFound(format!("no event {id} in this tenant")))?;
    let view = View::for_caller(&app, &ctx, include, "get", Some(&id.to_string())).await?;
    let mut one = [record];
    app.redactor
        .open_sealed(&ctx.tenant_id, &mut one)
        .await
        .map_err(store_error)?;
    view.apply(&app, &mut one);
    let [record] = one;
    Ok(Json(record))
}

/// The head of the caller's tenant chain.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ChainHeadView {
    /// The tenant.
    tenant_id: String,
    /// The last seq (0 when empty).
    seq: i64,
    /// Its chain hash (hex; 64 zeros when empty).
    chain_hash: String,
}

/// The caller's tenant chain head.
#[utoipa::path(get, path = "/v1/chain/head", tag = "chain", responses((status = 200, body = ChainHeadView), (status = 503, body = ErrorBody)))]
pub(super) async fn chain_head(
    ctx: SecurityContext,
    State(app): State<Arc<AppState>>,
) -> Result<Json<ChainHeadView>, ApiError> {
    ctx.require(Capability::AuditRead)?;
    let head = app.store.head(&ctx.tenant_id).await.map_err(store_error)?;
    Ok(Json(ChainHeadView {
        tenant_id: ctx.tenant_id.to_string(),
        seq: head.seq,
        chain_hash: head.hash.to_hex(),
    }))
}

/// A signed checkpoint.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct CheckpointView {
    /// The tenant.
    tenant_id: String,
    /// Records covered.
    size: i64,
    /// Chain hash at `size` (hex).
    chain_hash: String,
    /// The Merkle root at `size` (hex); absent from checkpoints signed before trees were kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    root: Option<String>,
    /// When it was signed.
    time: String,
    /// The signing key's name.
    key_name: String,
    /// The whole C2SP signed note.
    note: String,
}

/// The newest signed checkpoint of the caller's tenant.
#[utoipa::path(get, path = "/v1/checkpoints/latest", tag = "chain", responses((status = 200, body = CheckpointView), (status = 404, body = ErrorBody)))]
pub(super) async fn latest_checkpoint(
    ctx: SecurityContext,
    State(app): State<Arc<AppState>>,
) -> Result<Json<CheckpointView>, ApiError> {
    ctx.require(Capability::AuditRead)?;
    let cp = app
        .store
        .latest_checkpoint(&ctx.tenant_id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::NotFound("no checkpoint yet for this tenant".into()))?;
    Ok(Json(CheckpointView {
        tenant_id: cp.checkpoint.tenant,
        size: cp.checkpoint.size,
        chain_hash: cp.checkpoint.chain_hash.to_hex(),
        root: cp.checkpoint.root.map(|r| r.to_hex()),
        time: cp.checkpoint.time,
        key_name: cp.key_name,
        note: cp.note,
    }))
}

/// The checkpoint signing keys.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct KeysView {
    /// Every key that signed checkpoints in this store, oldest first.
    keys: Vec<KeyView>,
}

/// One public key.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct KeyView {
    /// Key name (the signature line's name).
    name: String,
    /// Key id (hex), per the signed-note spec.
    key_id: String,
    /// Always `ed25519`.
    algorithm: &'static str,
    /// Raw public key, base64.
    public_key: String,
    /// `name+id+base64(0x01 ‖ key)`, what signed-note verifiers take.
    verifier_key: String,
    /// Whether this instance signs with it now.
    current: bool,
}

/// The public keys that sign checkpoints (public: no tenant needed).
#[utoipa::path(get, path = "/v1/keys", tag = "chain", responses((status = 200, body = KeysView)))]
pub(super) async fn keys(State(app): State<Arc<AppState>>) -> Result<Json<KeysView>, ApiError> {
    let current = app.checkpointer.verifier().key_id_hex();
    let keys = app
        .store
        .public_keys()
        .await
        .map_err(store_error)?
        .into_iter()
        .filter_map(|k| {
            let v = vigil_core::checkpoint::NoteVerifier::parse(&k.verifier_key).ok()?;
            Some(KeyView {
                current: k.key_id == current,
                name: k.name,
                key_id: k.key_id,
                algorithm: "ed25519",
                public_key: base64::engine::general_purpose::STANDARD.encode(v.public_key()),
                verifier_key: k.verifier_key,
            })
        })
        .collect();
    Ok(Json(KeysView { keys }))
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use axum::response::IntoResponse;
    use proptest::prelude::*;

    fn refused_in_shape(e: ApiError) {
        let res = e.into_response();
        assert_eq!(res.status(), 400);
        assert_eq!(res.headers()["x-error-code"], "bad_request");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        /// Arbitrary text, and base64url of arbitrary bytes: refused in the shape, no panic.
        #[test]
        fn arbitrary_cursors_are_refused(text in ".{0,600}", bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let acme = TenantId::parse("acme").unwrap();
            for c in [text, B64URL.encode(&bytes)] {
                if let Err(e) = Cursor::redeem(&c, &acme, "f") {
                    refused_in_shape(e);
                }
            }
        }

        /// Cursor-shaped JSON with arbitrary fields: accepted only for its tenant and filters.
        #[test]
        fn forged_cursors(t in "[a-z]{1,6}", seq in any::<i64>(), f in "[0-9a-f]{0,16}") {
            let acme = TenantId::parse("acme").unwrap();
            let json = serde_json::json!({"t": t, "s": seq, "f": f}).to_string();
            match Cursor::redeem(&B64URL.encode(json), &acme, "00ff") {
                Ok(s) => prop_assert!(t == "acme" && f == "00ff" && s == seq && s > 0),
                Err(e) => refused_in_shape(e),
            }
        }

        #[test]
        fn issued_cursors_round_trip(seq in 1i64..i64::MAX) {
            let acme = TenantId::parse("acme").unwrap();
            let other = TenantId::parse("other").unwrap();
            let c = Cursor::issue(&acme, seq, "ab".into());
            prop_assert!(c.len() <= MAX_CURSOR);
            prop_assert_eq!(Cursor::redeem(&c, &acme, "ab").unwrap(), seq);
            prop_assert!(Cursor::redeem(&c, &other, "ab").is_err());
            prop_assert!(Cursor::redeem(&c, &acme, "cd").is_err());
        }
    }
}

/// Parameters of `GET /v1/events/tail`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct TailParams {
    /// Start after this seq (default: the head now, or the `Last-Event-ID` a reconnecting
    /// client sends).
    #[param(minimum = 0)]
    after: Option<i64>,
}

/// How often the tail looks for new records.
const TAIL_POLL: std::time::Duration = std::time::Duration::from_millis(200);

/// New records of the caller's tenant as they are stored: Server-Sent Events, one `record`
/// event per record (its id the seq, its data the record as the caller's view shows it), a
/// heartbeat comment while nothing arrives, and an `idle` event closing the stream after
/// the service's idle timeout without records (a client reconnects with `Last-Event-ID`).
/// Reads the store, so every instance behind a balancer tails the same chain.
#[utoipa::path(
    get, path = "/v1/events/tail", tag = "events", params(TailParams),
    responses(
        (status = 200, content_type = "text/event-stream", body = String),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)
    )
)]
pub(super) async fn tail(
    ctx: SecurityContext,
    State(app): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
    QueryParams(params): QueryParams<TailParams>,
) -> Result<
    axum::response::sse::Sse<
        impl futures::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>,
    >,
    ApiError,
> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    ctx.require(Capability::AuditRead)?;
    let resumed = match headers.get("last-event-id") {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .filter(|s| *s >= 0)
                .ok_or_else(|| bad("Last-Event-ID", "must be a seq"))?,
        ),
        None => None,
    };
    let after = match params.after.or(resumed) {
        Some(a) if a < 0 => return Err(bad("after", "must be a seq (0 or more)")),
        Some(a) => a,
        None => {
            app.store
                .head(&ctx.tenant_id)
                .await
                .map_err(store_error)?
                .seq
        }
    };
    let view = View::for_caller(&app, &ctx, false, "tail", None).await?;
    let (heartbeat, idle) = (app.console.tail_heartbeat, app.console.tail_idle);
    struct Tail {
        app: Arc<AppState>,
        ctx: SecurityContext,
        view: View,
        after: i64,
        last_sent: tokio::time::Instant,
        queue: std::collections::VecDeque<Record>,
        done: bool,
    }
    let state = Tail {
        app,
        ctx,
        view,
        after,
        last_sent: tokio::time::Instant::now(),
        queue: Default::default(),
        done: false,
    };
    let stream = futures::stream::unfold(state, move |mut t| async move {
        loop {
            if t.done {
                return None;
            }
            if let Some(r) = t.queue.pop_front() {
                let event = Event::default()
                    .event("record")
                    .id(r.seq.to_string())
                    .json_data(&r)
                    .unwrap_or_else(|_| Event::default().comment("unserializable record"));
                t.last_sent = tokio::time::Instant::now();
                return Some((Ok(event), t));
            }
            if t.last_sent.elapsed() >= idle {
                t.done = true;
                let event = Event::default().event("idle").data(format!(
                    "no new records for {} s; reconnect to go on",
                    idle.as_secs()
                ));
                return Some((Ok(event), t));
            }
            match t.app.store.scan(&t.ctx.tenant_id, t.after, 200).await {
                Ok(mut records) if !records.is_empty() => {
                    t.after = records.last().map_or(t.after, |r| r.seq);
                    if t.app
                        .redactor
                        .open_sealed(&t.ctx.tenant_id, &mut records)
                        .await
                        .is_err()
                    {
                        // Try again on the next poll, from the same place.
                        t.after = records[0].seq - 1;
                        tokio::time::sleep(TAIL_POLL).await;
                        continue;
                    }
                    t.view.apply(&t.app, &mut records);
                    t.queue.extend(records);
                }
                // Nothing new, or the store briefly away: look again (heartbeats keep going).
                _ => tokio::time::sleep(TAIL_POLL).await,
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(heartbeat).text("heartbeat")))
}
