//! The JWKS verifier against a real HTTP JWKS server on loopback: refusals, unknown `kid`s
//! (refetch once, no herd, no flood), odd keys in the set, the issuer going away, and tokens
//! PyJWT signed.

use axum::http::header::CACHE_CONTROL;
use axum::routing::get;
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vigil_auth::{Claims, JwksConfig, JwksStatus, JwksVerifier, KeyAlgorithm, SigningKey};
use vigil_security::token::{TokenError, TokenVerifier};

const ISS: &str = "https://auth.test";
const AUD: &str = "vigil";

/// A JWKS server whose document and availability the test controls, counting fetches.
#[derive(Clone)]
struct Issuer {
    doc: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
    max_age: u64,
    addr: std::net::SocketAddr,
    stop: Arc<Mutex<Option<tokio::sync::oneshot::Sender<()>>>>,
}

impl Issuer {
    async fn start(doc: Value, max_age: u64) -> Issuer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        Self::serve(
            listener,
            Arc::new(Mutex::new(doc)),
            Arc::new(AtomicUsize::new(0)),
            max_age,
            addr,
        )
    }

    fn serve(
        listener: tokio::net::TcpListener,
        doc: Arc<Mutex<Value>>,
        fetches: Arc<AtomicUsize>,
        max_age: u64,
        addr: std::net::SocketAddr,
    ) -> Issuer {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (d, f) = (Arc::clone(&doc), Arc::clone(&fetches));
        let app = Router::new().route(
            "/jwks.json",
            get(move || {
                let (d, f) = (Arc::clone(&d), Arc::clone(&f));
                async move {
                    f.fetch_add(1, Ordering::SeqCst);
                    let body = d.lock().unwrap().to_string();
                    (
                        [(CACHE_CONTROL, format!("public, max-age={max_age}"))],
                        body,
                    )
                }
            }),
        );
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        Issuer {
            doc,
            fetches,
            max_age,
            addr,
            stop: Arc::new(Mutex::new(Some(tx))),
        }
    }

    fn url(&self) -> String {
        format!("http://{}/jwks.json", self.addr)
    }

    fn set(&self, doc: Value) {
        *self.doc.lock().unwrap() = doc;
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    fn stop(&self) {
        if let Some(tx) = self.stop.lock().unwrap().take() {
            let _ = tx.send(());
        }
    }

    async fn restart(&self) -> Issuer {
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        Self::serve(
            listener,
            Arc::clone(&self.doc),
            Arc::clone(&self.fetches),
            self.max_age,
            self.addr,
        )
    }
}

fn jwks(keys: &[&SigningKey]) -> Value {
    json!({"keys": keys.iter().map(|k| k.public_jwk().clone()).collect::<Vec<_>>()})
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn claims() -> Claims {
    let n = now();
    Claims {
        iss: ISS.into(),
        aud: AUD.into(),
        sub: "user:alice".into(),
        exp: n + 300,
        iat: n,
        nbf: n,
        jti: "j1".into(),
        tenant_id: "acme".into(),
        roles: vec!["admin".into(), "not_a_role".into()],
    }
}

fn config(url: String) -> JwksConfig {
    let mut c = JwksConfig::new(url, ISS, AUD);
    c.leeway = Duration::from_secs(5);
    c.fetch_timeout = Duration::from_millis(500);
    c.min_refresh = Duration::from_millis(200);
    c.unknown_kid_cooldown = Duration::from_millis(300);
    c
}

async fn verifier(
    issuer: &Issuer,
    c: impl FnOnce(&mut JwksConfig),
) -> (JwksVerifier, prometheus::Registry) {
    let registry = prometheus::Registry::new();
    let mut cfg = config(issuer.url());
    c(&mut cfg);
    let v = JwksVerifier::start(cfg, &registry);
    v.refresh().await.unwrap();
    (v, registry)
}

fn metric(registry: &prometheus::Registry, name: &str, label: Option<(&str, &str)>) -> f64 {
    for f in registry.gather() {
        if f.get_name() != name {
            continue;
        }
        for m in f.get_metric() {
            let ok = label.is_none_or(|(k, v)| {
                m.get_label()
                    .iter()
                    .any(|l| l.get_name() == k && l.get_value() == v)
            });
            if ok {
                return m.get_counter().get_value() + m.get_gauge().get_value();
            }
        }
    }
    panic!("no metric {name} {label:?}")
}

#[tokio::test]
async fn tokens_of_each_issuer_algorithm_verify_into_an_identity() {
    let ed = SigningKey::generate(KeyAlgorithm::EdDsa);
    let ec = SigningKey::generate(KeyAlgorithm::Es256);
    let issuer = Issuer::start(jwks(&[&ed, &ec]), 300).await;
    let (v, registry) = verifier(&issuer, |_| {}).await;
    for k in [&ed, &ec] {
        let id = v.verify(&k.sign(&claims())).await.unwrap();
        assert_eq!(id.tenant_id.as_str(), "acme");
        assert_eq!(id.subject, "user:alice");
        assert_eq!(
            id.roles.names(),
            vec!["admin"],
            "unknown role names are dropped"
        );
    }
    assert_eq!(
        metric(
            &registry,
            "jwt_verifications_total",
            Some(("outcome", "ok"))
        ),
        2.0
    );
    assert_eq!(
        metric(&registry, "jwks_refresh_total", Some(("outcome", "ok"))),
        issuer.fetches() as f64
    );
    assert_eq!(v.status(), JwksStatus::Fresh);
}

fn forge(header: Value, claims: &Claims, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        B64.encode(header.to_string()),
        B64.encode(serde_json::to_string(claims).unwrap()),
        B64.encode(signature)
    )
}

#[tokio::test]
async fn refusals() {
    let key = SigningKey::generate(KeyAlgorithm::EdDsa);
    let other = SigningKey::generate(KeyAlgorithm::EdDsa);
    let issuer = Issuer::start(jwks(&[&key]), 300).await;
    let (v, registry) = verifier(&issuer, |_| {}).await;
    let kid = key.kid().to_owned();
    let with = |f: &dyn Fn(&mut Claims)| {
        let mut c = claims();
        f(&mut c);
        key.sign(&c)
    };
    // HS256 "signed" with the public key's bytes as the HMAC secret.
    let public_x = B64.decode(key.public_jwk()["x"].as_str().unwrap()).unwrap();
    let hs256 = {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        h.kid = Some(kid.clone());
        jsonwebtoken::encode(
            &h,
            &claims(),
            &jsonwebtoken::EncodingKey::from_secret(&public_x),
        )
        .unwrap()
    };
    let flipped = {
        let t = key.sign(&claims());
        let (rest, sig) = t.rsplit_once('.').unwrap();
        let mut bytes = B64.decode(sig).unwrap();
        bytes[10] ^= 0x01;
        format!("{rest}.{}", B64.encode(bytes))
    };
    let unknown_kid = {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        h.kid = Some("no-such-kid".into());
        let t = other.sign(&claims());
        let (_, rest) = t.split_once('.').unwrap();
        format!("{}.{rest}", B64.encode(serde_json::to_string(&h).unwrap()))
    };
    let cases: Vec<(&str, String, bool)> = vec![
        (
            "alg none",
            forge(json!({"alg": "none", "kid": kid}), &claims(), b""),
            false,
        ),
        (
            "alg none, no signature part",
            forge(json!({"alg": "none", "kid": kid}), &claims(), b"")
                .trim_end_matches('.')
                .to_owned(),
            false,
        ),
        ("HS256 with the public key as secret", hs256, false),
        (
            "ES256 claimed for an Ed25519 key",
            forge(json!({"alg": "ES256", "kid": kid}), &claims(), &[0u8; 64]),
            false,
        ),
        (
            "wrong audience",
            with(&|c| c.aud = "someone-else".into()),
            false,
        ),
        (
            "wrong issuer",
            with(&|c| c.iss = "https://evil.test".into()),
            false,
        ),
        (
            "expired beyond the leeway",
            with(&|c| c.exp = now() - 60),
            true,
        ),
        (
            "not yet valid beyond the leeway",
            with(&|c| c.nbf = now() + 60),
            false,
        ),
        ("unknown kid", unknown_kid, false),
        ("a bit flipped in the signature", flipped, false),
        (
            "signed by another key under this kid",
            {
                let t = other.sign(&claims());
                let (_, rest) = t.split_once('.').unwrap();
                format!(
                    "{}.{rest}",
                    B64.encode(json!({"alg": "EdDSA", "kid": kid}).to_string())
                )
            },
            false,
        ),
        (
            "1 MB",
            format!("{}.{}.x", "a".repeat(500_000), "b".repeat(500_000)),
            false,
        ),
        ("not a JWT", "hello".into(), false),
        (
            "bad tenant claim",
            with(&|c| c.tenant_id = "Not A Tenant!".into()),
            false,
        ),
    ];
    for (name, token, expired) in &cases {
        match v.verify(token).await {
            Err(TokenError::Expired) if *expired => {}
            Err(TokenError::Invalid(_)) if !*expired => {}
            other => panic!("{name}: expected refusal, got {other:?}"),
        }
    }
    // Inside the leeway still verifies.
    v.verify(&with(&|c| c.exp = now() - 2))
        .await
        .expect("within leeway");
    let refused = metric(
        &registry,
        "jwt_verifications_total",
        Some(("outcome", "invalid")),
    ) + metric(
        &registry,
        "jwt_verifications_total",
        Some(("outcome", "unknown_kid")),
    ) + metric(
        &registry,
        "jwt_verifications_total",
        Some(("outcome", "expired")),
    );
    assert_eq!(refused as usize, cases.len());
}

#[tokio::test]
async fn an_unknown_kid_refetches_once_for_a_crowd_and_not_again_within_the_cooldown() {
    let old = SigningKey::generate(KeyAlgorithm::EdDsa);
    let new = SigningKey::generate(KeyAlgorithm::EdDsa);
    let issuer = Issuer::start(jwks(&[&old]), 300).await;
    let (v, registry) =
        verifier(&issuer, |c| c.unknown_kid_cooldown = Duration::from_secs(2)).await;
    let before = issuer.fetches();
    // The issuer rotates: 200 requests arrive at once with the new kid.
    issuer.set(jwks(&[&old, &new]));
    let token = new.sign(&claims());
    let results = futures::future::join_all((0..200).map(|_| v.verify(&token))).await;
    assert!(
        results.iter().all(Result::is_ok),
        "every request with the new key verifies"
    );
    assert_eq!(
        issuer.fetches() - before,
        1,
        "one fetch for the whole crowd"
    );
    // Random kids: no flood, whatever their number.
    let mut forged = Vec::new();
    for i in 0..500 {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        h.kid = Some(format!("random-{i}"));
        let t = new.sign(&claims());
        let (_, rest) = t.split_once('.').unwrap();
        forged.push(format!(
            "{}.{rest}",
            B64.encode(serde_json::to_string(&h).unwrap())
        ));
    }
    let refused = futures::future::join_all(forged.iter().map(|t| v.verify(t))).await;
    assert!(refused.iter().all(Result::is_err));
    assert!(
        issuer.fetches() - before <= 2,
        "at most one more fetch within the cooldown, got {}",
        issuer.fetches() - before
    );
    assert!(
        metric(
            &registry,
            "jwt_verifications_total",
            Some(("outcome", "unknown_kid"))
        ) >= 500.0
    );
}

#[tokio::test]
async fn keys_it_cannot_use_are_skipped_one_by_one() {
    let ed = SigningKey::generate(KeyAlgorithm::EdDsa);
    let ec = SigningKey::generate(KeyAlgorithm::Es256);
    let mut doc = jwks(&[&ed, &ec]);
    let keys = doc["keys"].as_array_mut().unwrap();
    for odd in [
        // Keycloak publishes an RSA-OAEP encryption key beside its signing keys.
        json!({"kid": "kc-enc", "kty": "RSA", "alg": "RSA-OAEP", "use": "enc", "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw", "e": "AQAB"}),
        json!({"kid": "hmac", "kty": "oct", "k": "c2VjcmV0"}),
        json!({"kid": "x25519", "kty": "OKP", "crv": "X25519", "x": "3p7bfXt9wbTTW2HC7OQ1Nz-DQ8hbeGdNrfx-FG-IK08"}),
        json!({"kid": "p521", "kty": "EC", "crv": "P-521", "x": "AQ", "y": "AQ"}),
        json!({"kid": "broken-rsa", "kty": "RSA", "alg": "RS256"}),
        json!({"kid": "future", "kty": "PQC", "alg": "ML-DSA-65", "pub": "AAAA"}),
        json!("not even an object"),
    ] {
        keys.push(odd);
    }
    let issuer = Issuer::start(doc, 300).await;
    let (v, registry) = verifier(&issuer, |_| {}).await;
    v.verify(&ed.sign(&claims()))
        .await
        .expect("Ed25519 key still works");
    v.verify(&ec.sign(&claims()))
        .await
        .expect("P-256 key still works");
    assert_eq!(metric(&registry, "jwks_keys", None), 2.0);
}

#[tokio::test]
async fn the_background_refresh_follows_max_age() {
    let a = SigningKey::generate(KeyAlgorithm::EdDsa);
    let b = SigningKey::generate(KeyAlgorithm::EdDsa);
    let issuer = Issuer::start(jwks(&[&a]), 1).await;
    let (v, _) = verifier(&issuer, |c| {
        c.unknown_kid_cooldown = Duration::from_secs(3600)
    })
    .await;
    // Within the cooldown an unknown kid cannot trigger a fetch: only max-age brings b in.
    issuer.set(jwks(&[&a, &b]));
    let token = b.sign(&claims());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        if v.verify(&token).await.is_ok() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "max-age=1 refresh never came"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And a key removed from the set stops verifying after the next refresh.
    issuer.set(jwks(&[&b]));
    let old = a.sign(&claims());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while v.verify(&old).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a removed key kept verifying"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_issuer_down_keeps_cached_keys_until_they_expire() {
    let key = SigningKey::generate(KeyAlgorithm::EdDsa);
    let issuer = Issuer::start(jwks(&[&key]), 1).await;
    let (v, registry) = verifier(&issuer, |c| c.max_stale = Duration::from_secs(4)).await;
    let token = key.sign(&claims());
    issuer.stop();
    // Refreshes fail; the cached key keeps verifying and the state says so.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while v.status() == JwksStatus::Fresh {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the failed refresh was never noticed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        matches!(v.status(), JwksStatus::Stale { .. }),
        "{:?}",
        v.status()
    );
    v.verify(&token).await.expect("cached keys keep verifying");
    assert_eq!(metric(&registry, "jwks_stale", None), 1.0);
    assert!(metric(&registry, "jwks_refresh_total", Some(("outcome", "error"))) >= 1.0);
    let (ready, why) = v.readiness();
    assert!(ready && why.starts_with("stale"), "{why}");
    // Past max_stale the keys are no longer trusted.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(v.status(), JwksStatus::Unavailable);
    assert!(v.verify(&token).await.is_err());
    assert!(!v.readiness().0);
    // The issuer comes back: the verifier recovers by itself.
    let _back = issuer.restart().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(70);
    while v.status() != JwksStatus::Fresh {
        assert!(tokio::time::Instant::now() < deadline, "never recovered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    v.verify(&token).await.expect("verifies again");
    assert_eq!(metric(&registry, "jwks_stale", None), 0.0);
}

fn python() -> String {
    std::env::var("VIGIL_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn interop_script() -> String {
    // The package directory cargo names at run time (a shared target directory may hold a
    // binary built in another checkout).
    let dir =
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into());
    format!("{dir}/../../scripts/jwt_interop.py")
}

#[tokio::test]
async fn tokens_pyjwt_signed_with_rs256_ps256_and_es256_verify() {
    let out = std::process::Command::new(python())
        .args([interop_script().as_str(), "sign", ISS, AUD, "acme"])
        .output()
        .expect("running python (./scripts/test.sh provides one with PyJWT as VIGIL_PYTHON)");
    assert!(
        out.status.success(),
        "PyJWT signing failed (./scripts/test.sh installs PyJWT): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let made: Value = serde_json::from_slice(&out.stdout).unwrap();
    let issuer = Issuer::start(made["jwks"].clone(), 300).await;
    let (v, registry) = verifier(&issuer, |_| {}).await;
    for alg in ["RS256", "PS256", "ES256"] {
        let token = made["tokens"][alg].as_str().unwrap();
        let id = v
            .verify(token)
            .await
            .unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(id.subject, format!("py-{}", alg.to_lowercase()));
        assert_eq!(id.tenant_id.as_str(), "acme");
    }
    // The Keycloak-style encryption key was skipped, not fatal: three signature keys.
    assert_eq!(metric(&registry, "jwks_keys", None), 3.0);
    // An RS256 token presented under the PS256 key's kid is refused: the key decides.
    let rs = made["tokens"]["RS256"].as_str().unwrap();
    let (_, rest) = rs.split_once('.').unwrap();
    let swapped = format!(
        "{}.{rest}",
        B64.encode(json!({"alg": "RS256", "kid": "py-rsa-pss", "typ": "JWT"}).to_string())
    );
    assert!(v.verify(&swapped).await.is_err());
}

#[tokio::test]
async fn a_remembered_token_is_refused_once_it_expires() {
    let key = SigningKey::generate(KeyAlgorithm::EdDsa);
    let issuer = Issuer::start(jwks(&[&key]), 300).await;
    let (v, registry) = verifier(&issuer, |c| c.leeway = Duration::ZERO).await;
    let mut c = claims();
    c.exp = now() + 2;
    let token = key.sign(&c);
    for _ in 0..3 {
        v.verify(&token).await.expect("valid, then remembered");
    }
    assert_eq!(
        metric(
            &registry,
            "jwt_verifications_total",
            Some(("outcome", "ok"))
        ),
        3.0
    );
    // The library's rule, kept by the cache: valid through the second of `exp`.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(v.verify(&token).await, Err(TokenError::Expired));
    // With the cache off every presentation is checked in full, with the same answers.
    let (v, _) = verifier(&issuer, |c| c.cache_entries = 0).await;
    v.verify(&key.sign(&claims())).await.unwrap();
}
