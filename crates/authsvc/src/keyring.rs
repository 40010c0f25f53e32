//! The signing keys in use: read from the database, re-read every reload interval (so a
//! rotation made by `vigil auth keys rotate` in another process, or by another instance, is
//! picked up without a restart), with the JWKS rendered once per change.

use crate::events::{event, Actor};
use crate::service::ServiceError;
use crate::store::{AuthStore, KeyState, NewKey, StoredKey};
use arc_swap::ArcSwap;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use vigil_auth::{JwksVerifier, KeyAlgorithm, SigningKey};
use vigil_core::event::{Outcome, Severity};
use vigil_core::ids::TenantId;
use vigil_store::StoreError;

/// Seconds since the epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

fn new_key(alg: KeyAlgorithm) -> (SigningKey, NewKey) {
    let k = SigningKey::generate(alg);
    let stored = NewKey {
        kid: k.kid().to_owned(),
        alg: alg.as_str().to_owned(),
        private_der: B64.encode(k.pkcs8_der()),
        public_jwk: k.public_jwk().clone(),
    };
    (k, stored)
}

/// Key lifecycle policy: how keys are made and how long a rotated-out key stays published.
#[derive(Clone, Debug)]
pub struct KeyPolicy {
    /// Algorithm of new keys.
    pub algorithm: KeyAlgorithm,
    /// Longest token lifetime plus the grace period.
    pub publish_after_rotation: Duration,
    /// Chain that records key events.
    pub system_tenant: TenantId,
}

/// Rotates: the pre-published next key starts signing, a new next key is published, the
/// current key stays published until its tokens have expired. Returns the new signing kid.
pub async fn rotate(
    store: &AuthStore,
    policy: &KeyPolicy,
    actor: Actor<'_>,
) -> Result<String, StoreError> {
    let (_, next) = new_key(policy.algorithm);
    let now = unix_now();
    let retire_after = now + policy.publish_after_rotation.as_secs() as i64;
    let tenant = policy.system_tenant.clone();
    store
        .rotate(&next, now, retire_after, &|signing, previous| {
            vec![(
                tenant.clone(),
                event(
                    actor,
                    "auth.key.rotated",
                    ("signing_key", signing),
                    Outcome::Success,
                    Severity::Notice,
                    json!({"signing_kid": signing, "previous_kid": previous, "next_kid": next.kid, "previous_retire_after": retire_after}),
                ),
            )]
        })
        .await
}

/// Retires a rotated-out key now (it stops being published). False when `kid` is not a
/// rotated-out key.
pub async fn retire(
    store: &AuthStore,
    policy: &KeyPolicy,
    kid: &str,
    actor: Actor<'_>,
    reason: &str,
) -> Result<bool, StoreError> {
    let ev = event(
        actor,
        "auth.key.retired",
        ("signing_key", kid),
        Outcome::Success,
        Severity::Notice,
        json!({"kid": kid, "reason": reason}),
    );
    store
        .retire(kid, unix_now(), vec![(policy.system_tenant.clone(), ev)])
        .await
}

/// Retires every rotated-out key whose time has come. Returns the kids retired here (when
/// several instances race, each key is retired, and recorded, once).
pub async fn retire_due(store: &AuthStore, policy: &KeyPolicy) -> Result<Vec<String>, StoreError> {
    let now = unix_now();
    let mut retired = Vec::new();
    for k in store.keys().await? {
        if k.state == KeyState::Previous
            && k.retire_after.is_some_and(|t| t <= now)
            && retire(
                store,
                policy,
                &k.kid,
                Actor::System,
                "its tokens have expired",
            )
            .await?
        {
            retired.push(k.kid);
        }
    }
    Ok(retired)
}

struct Ring {
    signer: Arc<SigningKey>,
    /// Unix seconds the current key started signing (created, for the first one).
    activated_at: i64,
    jwks: axum::body::Bytes,
    fingerprint: String,
}

/// The keys a running service signs with and publishes. Cheap to share.
#[derive(Clone)]
pub struct KeyRing {
    ring: Arc<ArcSwap<Ring>>,
    store: AuthStore,
    policy: KeyPolicy,
    /// Verifies the service's own tokens (management API) against the published keys.
    verifier: JwksVerifier,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("signing_kid", &self.ring.load().signer.kid())
            .finish_non_exhaustive()
    }
}

impl KeyRing {
    /// Loads the keys, creating the first current and next keys on a new database.
    pub async fn load(
        store: AuthStore,
        policy: KeyPolicy,
        verifier: JwksVerifier,
    ) -> Result<KeyRing, ServiceError> {
        let mut keys = store.keys().await?;
        if !keys.iter().any(|k| k.state == KeyState::Current) {
            let (_, current) = new_key(policy.algorithm);
            let (_, next) = new_key(policy.algorithm);
            let ev = event(
                Actor::System,
                "auth.key.created",
                ("signing_key", &current.kid),
                Outcome::Success,
                Severity::Notice,
                json!({"signing_kid": current.kid, "next_kid": next.kid, "alg": current.alg}),
            );
            store
                .bootstrap_keys(
                    &current,
                    &next,
                    unix_now(),
                    vec![(policy.system_tenant.clone(), ev)],
                )
                .await?;
            keys = store.keys().await?;
        }
        let ring = build(&keys)?;
        verifier.load_document(&ring.jwks).map_err(|e| {
            ServiceError::Keys(format!("the service's own JWKS does not load: {e}"))
        })?;
        Ok(KeyRing {
            ring: Arc::new(ArcSwap::from_pointee(ring)),
            store,
            policy,
            verifier,
        })
    }

    /// Unix seconds the current signing key started signing (its age on dashboards, the
    /// key-rotation runbook).
    pub fn current_activated_at(&self) -> i64 {
        self.ring.load().activated_at
    }

    /// Re-reads the keys; swaps the ring in when they changed.
    pub async fn reload(&self) -> Result<(), ServiceError> {
        let keys = self.store.keys().await?;
        if fingerprint(&keys) == self.ring.load().fingerprint {
            return Ok(());
        }
        let ring = build(&keys)?;
        self.verifier
            .load_document(&ring.jwks)
            .map_err(|e| ServiceError::Keys(format!("the JWKS does not load: {e}")))?;
        tracing::info!(signing_kid = ring.signer.kid(), "signing keys reloaded");
        self.ring.store(Arc::new(ring));
        Ok(())
    }

    /// The key new tokens are signed with.
    pub fn signer(&self) -> Arc<SigningKey> {
        Arc::clone(&self.ring.load().signer)
    }

    /// The JWKS document.
    pub fn jwks(&self) -> axum::body::Bytes {
        self.ring.load().jwks.clone()
    }

    /// The key policy.
    pub fn policy(&self) -> &KeyPolicy {
        &self.policy
    }

    /// The store.
    pub fn store(&self) -> &AuthStore {
        &self.store
    }

    /// Rotates now and reloads.
    pub async fn rotate(&self, actor: Actor<'_>) -> Result<String, ServiceError> {
        let kid = rotate(&self.store, &self.policy, actor).await?;
        self.reload().await?;
        Ok(kid)
    }

    /// Re-reads the keys and retires due ones, every `interval`, until the ring is dropped.
    pub fn spawn_maintenance(&self, interval: Duration) {
        let ring = self.clone();
        let weak = Arc::downgrade(&self.ring);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if weak.strong_count() <= 1 {
                    return;
                }
                match retire_due(&ring.store, &ring.policy).await {
                    Ok(kids) => {
                        for kid in kids {
                            tracing::info!(%kid, "retired a rotated-out signing key");
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "retiring due keys failed"),
                }
                if let Err(e) = ring.reload().await {
                    tracing::warn!(error = %vigil_security::error::chain(&e), "reloading signing keys failed; the loaded keys stay in use");
                }
            }
        });
    }
}

fn fingerprint(keys: &[StoredKey]) -> String {
    keys.iter()
        .filter(|k| k.state != KeyState::Retired)
        .map(|k| format!("{}:{};", k.kid, k.state.as_str()))
        .collect()
}

fn build(keys: &[StoredKey]) -> Result<Ring, ServiceError> {
    let current = keys
        .iter()
        .find(|k| k.state == KeyState::Current)
        .ok_or_else(|| ServiceError::Keys("no current signing key in the database".into()))?;
    let alg = KeyAlgorithm::parse(&current.alg).ok_or_else(|| {
        ServiceError::Keys(format!(
            "signing key {} has unknown algorithm {}",
            current.kid, current.alg
        ))
    })?;
    let der = B64.decode(&current.private_der).map_err(|_| {
        ServiceError::Keys(format!("signing key {} is not valid base64", current.kid))
    })?;
    let signer = SigningKey::from_pkcs8(alg, &der)
        .map_err(|e| ServiceError::Keys(format!("signing key {}: {e}", current.kid)))?;
    // Published: next (so verifiers know it before it signs), current, previous.
    let published: Vec<&serde_json::Value> = keys
        .iter()
        .filter(|k| k.state != KeyState::Retired)
        .map(|k| &k.public_jwk)
        .collect();
    let jwks = serde_json::to_vec(&json!({"keys": published})).expect("JSON");
    Ok(Ring {
        signer: Arc::new(signer),
        activated_at: current.activated_at.unwrap_or(current.created_at),
        jwks: jwks.into(),
        fingerprint: fingerprint(keys),
    })
}
