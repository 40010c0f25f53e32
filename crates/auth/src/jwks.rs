//! The JWKS verifier every service uses.
//!
//! - Keys come from the issuer's JWKS and are kept in an [`ArcSwap`]: a verification reads
//!   the current set without taking a lock, and never waits for a fetch unless its `kid` is
//!   unknown.
//! - The set is refreshed in the background as the response's `Cache-Control: max-age` says
//!   (clamped between two configured bounds). A token with an unknown `kid` triggers a fetch at
//!   once, but at most one per [`JwksConfig::unknown_kid_cooldown`], and with one fetch in
//!   flight however many requests wait on it: random `kid`s cannot turn verification into a
//!   flood against the issuer (Oathkeeper refetches on every miss), while a rotation is picked
//!   up on the first token signed by the new key (Envoy never refetches on a miss).
//! - Every fetch has a timeout; when fetches fail the last good keys stay in use for
//!   [`JwksConfig::max_stale`], and [`JwksVerifier::status`] says so for `/readyz`.
//! - A JWKS may hold keys this verifier cannot use (encryption keys, symmetric keys, other
//!   curves): each is skipped on its own, never failing the set.
//! - The algorithm comes from the key (its `alg`, or its type and curve), never from the
//!   token: `alg: none`, HMAC against a public key and every other mismatch are refused.
//!   `iss`, `aud`, `exp` and `nbf` are always checked, with the configured leeway.

use crate::claims::IdentityClaims;
use arc_swap::ArcSwap;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry};
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use vigil_security::token::{TokenError, TokenVerifier, VerifiedToken, MAX_TOKEN_BYTES};

/// How a verifier finds and trusts its issuer.
#[derive(Clone, Debug)]
pub struct JwksConfig {
    /// The JWKS document (`https://issuer/.well-known/jwks.json`).
    pub url: String,
    /// Required `iss`.
    pub issuer: String,
    /// Required `aud` (one of the token's audiences).
    pub audience: String,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// Longest a fetch may take.
    pub fetch_timeout: Duration,
    /// Shortest interval between background refreshes, whatever `max-age` says.
    pub min_refresh: Duration,
    /// Longest interval between background refreshes.
    pub max_refresh: Duration,
    /// Interval when the issuer sends no `max-age`.
    pub default_refresh: Duration,
    /// At most one fetch for unknown `kid`s per this interval.
    pub unknown_kid_cooldown: Duration,
    /// How long the last good keys stay in use while every fetch fails.
    pub max_stale: Duration,
    /// Verified tokens remembered (by their exact bytes) so a token presented again skips the
    /// signature check, until it expires or the key set changes. 0 turns the cache off.
    pub cache_entries: usize,
}

impl JwksConfig {
    /// Production defaults for a JWKS at `url`.
    pub fn new(
        url: impl Into<String>,
        issuer: impl Into<String>,
        audience: impl Into<String>,
    ) -> Self {
        JwksConfig {
            url: url.into(),
            issuer: issuer.into(),
            audience: audience.into(),
            leeway: Duration::from_secs(30),
            fetch_timeout: Duration::from_secs(5),
            min_refresh: Duration::from_secs(30),
            max_refresh: Duration::from_secs(3600),
            default_refresh: Duration::from_secs(300),
            unknown_kid_cooldown: Duration::from_secs(10),
            max_stale: Duration::from_secs(24 * 3600),
            cache_entries: 10_000,
        }
    }
}

/// What `/readyz` reports about the keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JwksStatus {
    /// The last refresh succeeded.
    Fresh,
    /// Refreshes fail; the keys fetched `since_success` ago are still in use.
    Stale {
        /// Age of the keys in use.
        since_success: Duration,
    },
    /// No usable keys: never fetched, or stale beyond `max_stale`.
    Unavailable,
}

impl JwksStatus {
    /// Can tokens be verified at all?
    pub fn can_verify(&self) -> bool {
        !matches!(self, JwksStatus::Unavailable)
    }
}

struct KeyEntry {
    key: DecodingKey,
    alg: Algorithm,
    validation: Validation,
}

#[derive(Default)]
struct KeySet {
    by_kid: HashMap<String, Arc<KeyEntry>>,
    /// The only key, when the set has exactly one and it names no `kid`.
    sole: Option<Arc<KeyEntry>>,
    /// When these keys were fetched.
    fetched_at: Option<Instant>,
    /// Bumped on every successful fetch.
    generation: u64,
}

#[derive(Clone)]
struct Metrics {
    refresh: IntCounterVec,
    verifications: IntCounterVec,
    latency: Histogram,
    keys: IntGauge,
    stale: IntGauge,
    last_success: IntGauge,
}

impl Metrics {
    fn new(registry: &Registry) -> Metrics {
        let refresh = IntCounterVec::new(
            Opts::new("jwks_refresh_total", "JWKS fetches by outcome (ok, error)"),
            &["outcome"],
        )
        .expect("valid metric");
        let verifications = IntCounterVec::new(
            Opts::new(
                "jwt_verifications_total",
                "Bearer token verifications by outcome (ok, expired, invalid, unknown_kid, no_keys)",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let latency = Histogram::with_opts(
            HistogramOpts::new(
                "jwt_verification_seconds",
                "Time to verify one bearer token",
            )
            .buckets(vec![
                0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.005, 0.05, 1.0,
            ]),
        )
        .expect("valid metric");
        let keys = IntGauge::new("jwks_keys", "Usable keys in the cached JWKS").expect("valid");
        let stale = IntGauge::new(
            "jwks_stale",
            "1 while JWKS refreshes fail and cached keys are in use, else 0",
        )
        .expect("valid");
        let last_success = IntGauge::new(
            "jwks_last_success_timestamp_seconds",
            "When the JWKS was last fetched successfully",
        )
        .expect("valid");
        for m in [
            Box::new(refresh.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(verifications.clone()),
            Box::new(latency.clone()),
            Box::new(keys.clone()),
            Box::new(stale.clone()),
            Box::new(last_success.clone()),
        ] {
            // Two verifiers on one registry (tests) share the first's series.
            let _ = registry.register(m);
        }
        for o in ["ok", "error"] {
            refresh.with_label_values(&[o]);
        }
        for o in ["ok", "expired", "invalid", "unknown_kid", "no_keys"] {
            verifications.with_label_values(&[o]);
        }
        Metrics {
            refresh,
            verifications,
            latency,
            keys,
            stale,
            last_success,
        }
    }
}

struct Inner {
    config: JwksConfig,
    http: reqwest::Client,
    set: ArcSwap<KeySet>,
    /// Held across a fetch: one fetch in flight. Holds when the last fetch for an unknown
    /// `kid` started (background refreshes do not count against the cooldown).
    fetch: tokio::sync::Mutex<Option<Instant>>,
    /// Refresh failures in a row (0: the last one succeeded).
    failures: std::sync::atomic::AtomicU32,
    metrics: Metrics,
    /// False for a verifier fed documents by its owner ([`JwksVerifier::offline`]).
    online: bool,
    cache: VerifiedCache,
}

/// Token text → (identity, `exp`, key-set generation).
type Remembered = HashMap<Box<str>, (VerifiedToken, u64, u64)>;

/// Tokens that verified, by their exact text: the identity, the expiry (unix seconds) and the
/// key-set generation they verified under. Sharded; a full shard is emptied.
struct VerifiedCache {
    shards: Vec<std::sync::Mutex<Remembered>>,
    per_shard: usize,
}

impl VerifiedCache {
    fn new(entries: usize) -> VerifiedCache {
        VerifiedCache {
            shards: (0..16)
                .map(|_| std::sync::Mutex::new(HashMap::new()))
                .collect(),
            per_shard: entries / 16,
        }
    }

    fn shard(&self, token: &str) -> &std::sync::Mutex<Remembered> {
        // The signature's last bytes are as good as random.
        let b = token.as_bytes();
        let i = b.len().checked_sub(1).map_or(0, |n| {
            usize::from(b[n]) ^ usize::from(b[n.saturating_sub(1)])
        });
        &self.shards[i % self.shards.len()]
    }

    fn enabled(&self) -> bool {
        self.per_shard > 0
    }

    fn get(&self, token: &str, generation: u64, now: u64, leeway: u64) -> Option<VerifiedToken> {
        if self.per_shard == 0 {
            return None;
        }
        let shard = self
            .shard(token)
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match shard.get(token) {
            Some((v, exp, g)) if *g == generation && now <= exp.saturating_add(leeway) => {
                Some(v.clone())
            }
            _ => None,
        }
    }

    fn put(&self, token: &str, v: &VerifiedToken, exp: u64, generation: u64) {
        if self.per_shard == 0 {
            return;
        }
        let mut shard = self
            .shard(token)
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if shard.len() >= self.per_shard {
            shard.clear();
        }
        shard.insert(token.into(), (v.clone(), exp, generation));
    }
}

/// Verifies bearer tokens against an issuer's JWKS. Cheap to clone.
#[derive(Clone)]
pub struct JwksVerifier {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for JwksVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksVerifier")
            .field("url", &self.inner.config.url)
            .field("issuer", &self.inner.config.issuer)
            .field("audience", &self.inner.config.audience)
            .finish_non_exhaustive()
    }
}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
#[error("fetching the JWKS from {url}: {reason}")]
pub struct FetchError {
    url: String,
    reason: String,
}

impl JwksVerifier {
    /// A verifier for `config`, registering its metrics in `registry`. It starts empty and
    /// fetches at once in the background; call [`JwksVerifier::refresh`] to wait for a first
    /// set. Needs a Tokio runtime. The background task ends when the last clone is dropped.
    pub fn start(config: JwksConfig, registry: &Registry) -> JwksVerifier {
        let http = reqwest::Client::builder()
            .timeout(config.fetch_timeout)
            .connect_timeout(config.fetch_timeout)
            .build()
            .expect("an HTTP client");
        let cache_entries = config.cache_entries;
        let inner = Arc::new(Inner {
            config,
            http,
            set: ArcSwap::from_pointee(KeySet::default()),
            fetch: tokio::sync::Mutex::new(None),
            failures: std::sync::atomic::AtomicU32::new(0),
            metrics: Metrics::new(registry),
            online: true,
            cache: VerifiedCache::new(cache_entries),
        });
        tokio::spawn(refresh_loop(Arc::downgrade(&inner)));
        JwksVerifier { inner }
    }

    /// A verifier that never fetches: its owner hands it JWKS documents with
    /// [`JwksVerifier::load_document`] (the issuer verifying its own tokens). `config.url` is
    /// not used.
    pub fn offline(config: JwksConfig, registry: &Registry) -> JwksVerifier {
        JwksVerifier {
            inner: Arc::new(Inner {
                http: reqwest::Client::new(),
                cache: VerifiedCache::new(config.cache_entries),
                config,
                set: ArcSwap::from_pointee(KeySet::default()),
                fetch: tokio::sync::Mutex::new(None),
                failures: std::sync::atomic::AtomicU32::new(0),
                metrics: Metrics::new(registry),
                online: false,
            }),
        }
    }

    /// Replaces the keys with those of a JWKS document.
    pub fn load_document(&self, body: &[u8]) -> Result<(), String> {
        let mut set = parse_jwks(body, &self.inner.config)?;
        set.generation = self.inner.set.load().generation + 1;
        set.fetched_at = Some(Instant::now());
        self.inner.set.store(Arc::new(set));
        Ok(())
    }

    /// Fetches the JWKS now (waiting for a fetch already in flight instead of starting a
    /// second one).
    pub async fn refresh(&self) -> Result<(), FetchError> {
        let generation = self.inner.set.load().generation;
        let _in_flight = self.inner.fetch.lock().await;
        if self.inner.set.load().generation != generation {
            return Ok(());
        }
        self.inner.fetch_now().await.map(|_| ())
    }

    /// The state of the cached keys.
    pub fn status(&self) -> JwksStatus {
        self.inner.status()
    }

    /// Verifies `token` with its key; the key must be in the set (no refetch).
    fn verify_with_set(
        &self,
        token: &str,
        header: &jsonwebtoken::Header,
        set: &KeySet,
    ) -> Option<Result<VerifiedToken, TokenError>> {
        let entry = match &header.kid {
            Some(kid) => set.by_kid.get(kid),
            None => set.sole.as_ref(),
        }?;
        Some(check(token, header, entry))
    }

    async fn verify_inner(&self, token: &str) -> (Result<VerifiedToken, TokenError>, &'static str) {
        if token.len() > MAX_TOKEN_BYTES {
            return (
                Err(TokenError::Invalid(format!(
                    "longer than {MAX_TOKEN_BYTES} bytes"
                ))),
                "invalid",
            );
        }
        let header = match jsonwebtoken::decode_header(token) {
            Ok(h) => h,
            Err(e) => return (Err(TokenError::Invalid(format!("header: {e}"))), "invalid"),
        };
        {
            let set = self.inner.set.load();
            if self.inner.expired(&set) {
                return (
                    Err(TokenError::Invalid(
                        "no usable keys: the issuer's JWKS could not be fetched".into(),
                    )),
                    "no_keys",
                );
            }
            let now = unix_now();
            if let Some(v) = self.inner.cache.get(
                token,
                set.generation,
                now,
                self.inner.config.leeway.as_secs(),
            ) {
                return (Ok(v), "ok");
            }
            if let Some(r) = self.verify_with_set(token, &header, &set) {
                if let (Ok(v), true) = (&r, self.inner.cache.enabled()) {
                    if let Some(exp) = expiry(token) {
                        self.inner.cache.put(token, v, exp, set.generation);
                    }
                }
                return outcome(r);
            }
        }
        // Unknown kid: refetch, at most once per cooldown, one fetch in flight.
        let seen = self.inner.set.load().generation;
        {
            let mut last = self.inner.fetch.lock().await;
            if self.inner.online && self.inner.set.load().generation == seen {
                let cooled =
                    last.is_none_or(|t| t.elapsed() >= self.inner.config.unknown_kid_cooldown);
                if cooled {
                    *last = Some(Instant::now());
                    if let Err(e) = self.inner.fetch_now().await {
                        tracing::warn!(error = %e, "JWKS refetch for an unknown kid failed");
                    }
                }
            }
        }
        let set = self.inner.set.load();
        match self.verify_with_set(token, &header, &set) {
            Some(r) => outcome(r),
            None => (
                Err(TokenError::Invalid(format!(
                    "no key with kid {:?} in the issuer's JWKS",
                    header.kid.as_deref().unwrap_or("(none)")
                ))),
                "unknown_kid",
            ),
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// The `exp` claim of a token that has just verified.
fn expiry(token: &str) -> Option<u64> {
    use base64::Engine;
    #[derive(Deserialize)]
    struct Exp {
        exp: u64,
    }
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice::<Exp>(&bytes).ok().map(|e| e.exp)
}

fn outcome(
    r: Result<VerifiedToken, TokenError>,
) -> (Result<VerifiedToken, TokenError>, &'static str) {
    let o = match &r {
        Ok(_) => "ok",
        Err(TokenError::Expired) => "expired",
        Err(TokenError::Invalid(_)) => "invalid",
    };
    (r, o)
}

/// Signature and claims, with the key's own algorithm.
fn check(
    token: &str,
    header: &jsonwebtoken::Header,
    entry: &KeyEntry,
) -> Result<VerifiedToken, TokenError> {
    if header.alg != entry.alg {
        return Err(TokenError::Invalid(format!(
            "the token says {:?} but its key is for {:?}",
            header.alg, entry.alg
        )));
    }
    let data = jsonwebtoken::decode::<IdentityClaims>(token, &entry.key, &entry.validation)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
            _ => TokenError::Invalid(e.to_string()),
        })?;
    data.claims.into_verified()
}

#[async_trait::async_trait]
impl TokenVerifier for JwksVerifier {
    async fn verify(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        let started = Instant::now();
        let (result, outcome) = self.verify_inner(token).await;
        self.inner
            .metrics
            .latency
            .observe(started.elapsed().as_secs_f64());
        self.inner
            .metrics
            .verifications
            .with_label_values(&[outcome])
            .inc();
        result
    }

    fn readiness(&self) -> (bool, String) {
        match self.status() {
            JwksStatus::Fresh => (true, "fresh".into()),
            JwksStatus::Stale { since_success } => (
                true,
                format!(
                    "stale: the issuer's JWKS cannot be fetched; using keys from {} s ago",
                    since_success.as_secs()
                ),
            ),
            JwksStatus::Unavailable => {
                (false, "unavailable: no usable keys from the issuer".into())
            }
        }
    }
}

impl Inner {
    fn expired(&self, set: &KeySet) -> bool {
        set.fetched_at
            .is_none_or(|t| self.online && t.elapsed() > self.config.max_stale)
    }

    fn status(&self) -> JwksStatus {
        let set = self.set.load();
        if self.expired(&set) {
            return JwksStatus::Unavailable;
        }
        if self.failures.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            JwksStatus::Fresh
        } else {
            JwksStatus::Stale {
                since_success: set.fetched_at.map(|t| t.elapsed()).unwrap_or_default(),
            }
        }
    }

    /// One fetch (the caller holds `fetch`). Returns the `max-age` the issuer sent.
    async fn fetch_now(&self) -> Result<Option<Duration>, FetchError> {
        let result = self.fetch_once().await;
        let ordering = std::sync::atomic::Ordering::Relaxed;
        match &result {
            Ok((set, _)) => {
                self.failures.store(0, ordering);
                self.metrics.refresh.with_label_values(&["ok"]).inc();
                self.metrics
                    .keys
                    .set(set.by_kid.len().max(usize::from(set.sole.is_some())) as i64);
                self.metrics.stale.set(0);
                self.metrics.last_success.set(
                    SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map(|d| d.as_secs() as i64)
                        .unwrap_or_default(),
                );
            }
            Err(e) => {
                self.failures.fetch_add(1, ordering);
                self.metrics.refresh.with_label_values(&["error"]).inc();
                self.metrics.stale.set(1);
                tracing::warn!(error = %e, "JWKS refresh failed; the cached keys stay in use");
            }
        }
        let (mut set, max_age) = result?;
        set.generation = self.set.load().generation + 1;
        set.fetched_at = Some(Instant::now());
        self.set.store(Arc::new(set));
        Ok(max_age)
    }

    #[tracing::instrument(name = "jwks.fetch", skip_all, fields(url.full = %self.config.url))]
    async fn fetch_once(&self) -> Result<(KeySet, Option<Duration>), FetchError> {
        let fail = |reason: String| FetchError {
            url: self.config.url.clone(),
            reason,
        };
        let response = self
            .http
            .get(&self.config.url)
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        if !response.status().is_success() {
            return Err(fail(format!("status {}", response.status())));
        }
        let max_age = response
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(max_age);
        let body = response.bytes().await.map_err(|e| fail(e.to_string()))?;
        let set = parse_jwks(&body, &self.config).map_err(fail)?;
        Ok((set, max_age))
    }
}

/// `max-age=N` from a `Cache-Control` value (`no-store`/`no-cache` count as 0).
fn max_age(v: &str) -> Option<Duration> {
    v.split(',').map(str::trim).find_map(|d| {
        let d = d.to_ascii_lowercase();
        if d == "no-store" || d == "no-cache" {
            return Some(Duration::ZERO);
        }
        d.strip_prefix("max-age=")
            .and_then(|n| n.trim_matches('"').parse::<u64>().ok())
            .map(Duration::from_secs)
    })
}

#[derive(Deserialize)]
struct Document {
    keys: Vec<Value>,
}

/// The usable keys of a JWKS document; unusable ones are skipped one by one.
fn parse_jwks(body: &[u8], config: &JwksConfig) -> Result<KeySet, String> {
    let doc: Document =
        serde_json::from_slice(body).map_err(|e| format!("not a JWKS document: {e}"))?;
    let mut set = KeySet::default();
    let mut anonymous = Vec::new();
    for raw in doc.keys {
        let kid = raw.get("kid").and_then(Value::as_str).map(str::to_owned);
        match usable_key(raw, config) {
            Ok(entry) => match kid {
                Some(kid) => {
                    set.by_kid.insert(kid, Arc::new(entry));
                }
                None => anonymous.push(entry),
            },
            Err(why) => tracing::debug!(kid = ?kid, reason = %why, "skipping a JWKS key"),
        }
    }
    if set.by_kid.is_empty() && anonymous.len() == 1 {
        set.sole = anonymous.pop().map(Arc::new);
    }
    Ok(set)
}

/// The algorithm a key is for, from its own parameters; the token has no say.
fn key_algorithm(raw: &Value) -> Result<Algorithm, String> {
    let s = |k: &str| raw.get(k).and_then(Value::as_str);
    if let Some(u) = s("use") {
        if u != "sig" {
            return Err(format!("use {u:?} is not sig"));
        }
    }
    if let Some(ops) = raw.get("key_ops").and_then(Value::as_array) {
        if !ops.iter().any(|o| o == "verify") {
            return Err("key_ops does not include verify".into());
        }
    }
    let by_type = match (s("kty"), s("crv")) {
        (Some("OKP"), Some("Ed25519")) => vec![Algorithm::EdDSA],
        (Some("EC"), Some("P-256")) => vec![Algorithm::ES256],
        (Some("EC"), Some("P-384")) => vec![Algorithm::ES384],
        (Some("RSA"), _) => vec![
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ],
        (kty, crv) => {
            return Err(format!(
                "kty {kty:?} crv {crv:?} is not a signature key we verify"
            ))
        }
    };
    match s("alg") {
        None if by_type.len() == 1 || by_type[0] == Algorithm::RS256 => Ok(by_type[0]),
        None => Err("no alg".into()),
        Some(name) => {
            let alg: Algorithm = name
                .parse()
                .map_err(|_| format!("alg {name:?} is not a signature algorithm"))?;
            if by_type.contains(&alg) {
                Ok(alg)
            } else {
                Err(format!("alg {name:?} does not fit the key type"))
            }
        }
    }
}

fn usable_key(raw: Value, config: &JwksConfig) -> Result<KeyEntry, String> {
    let alg = key_algorithm(&raw)?;
    let mut raw = raw;
    if let Some(o) = raw.as_object_mut() {
        // Parsed without `alg`: the library's list of algorithm names is not ours to fail on.
        o.remove("alg");
    }
    let jwk: Jwk = serde_json::from_value(raw).map_err(|e| format!("malformed JWK: {e}"))?;
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| format!("unusable key: {e}"))?;
    let mut validation = Validation::new(alg);
    validation.algorithms = vec![alg];
    validation.set_issuer(&[&config.issuer]);
    validation.set_audience(&[&config.audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.validate_nbf = true;
    validation.leeway = config.leeway.as_secs();
    Ok(KeyEntry {
        key,
        alg,
        validation,
    })
}

async fn refresh_loop(inner: Weak<Inner>) {
    let mut wait = Duration::ZERO;
    loop {
        tokio::time::sleep(wait).await;
        let Some(inner) = inner.upgrade() else { return };
        let c = &inner.config;
        let result = {
            let _in_flight = inner.fetch.lock().await;
            inner.fetch_now().await
        };
        wait = match result {
            Ok(age) => age
                .unwrap_or(c.default_refresh)
                .clamp(c.min_refresh, c.max_refresh),
            Err(_) => {
                // Retry sooner while failing: 1 s, 2 s, 4 s… up to the usual interval.
                let n = inner.failures.load(std::sync::atomic::Ordering::Relaxed);
                Duration::from_secs(1 << n.saturating_sub(1).min(6))
                    .min(c.default_refresh.max(Duration::from_secs(1)))
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_read_from_cache_control() {
        assert_eq!(
            max_age("public, max-age=300"),
            Some(Duration::from_secs(300))
        );
        assert_eq!(max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(max_age("public"), None);
    }

    #[test]
    fn the_algorithm_comes_from_the_key() {
        let k = |v: Value| key_algorithm(&v);
        assert_eq!(
            k(serde_json::json!({"kty":"OKP","crv":"Ed25519","x":"a"})),
            Ok(Algorithm::EdDSA)
        );
        assert_eq!(
            k(serde_json::json!({"kty":"EC","crv":"P-256"})),
            Ok(Algorithm::ES256)
        );
        assert_eq!(k(serde_json::json!({"kty":"RSA"})), Ok(Algorithm::RS256));
        assert_eq!(
            k(serde_json::json!({"kty":"RSA","alg":"PS256"})),
            Ok(Algorithm::PS256)
        );
        assert!(k(serde_json::json!({"kty":"RSA","alg":"RSA-OAEP","use":"enc"})).is_err());
        assert!(k(serde_json::json!({"kty":"RSA","alg":"RSA-OAEP"})).is_err());
        assert!(k(serde_json::json!({"kty":"RSA","alg":"HS256"})).is_err());
        assert!(k(serde_json::json!({"kty":"EC","crv":"P-256","alg":"RS256"})).is_err());
        assert!(k(serde_json::json!({"kty":"oct","k":"c2VjcmV0"})).is_err());
        assert!(k(serde_json::json!({"kty":"OKP","crv":"X25519"})).is_err());
    }
}
