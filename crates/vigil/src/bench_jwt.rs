//! `vigil bench jwt`: verifications per second on one core through the JWKS verifier (the
//! path every request takes: size check, header, key lookup, signature, claims, identity),
//! beside the raw signature check of the same token in the same run (the limit), for EdDSA,
//! ES256 and RS256. Rounds alternate the methods so drift hits both alike.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use clap::Args;
use serde_json::json;
use std::time::{Duration, Instant};
use vigil_auth::{Claims, JwksConfig, JwksVerifier, KeyAlgorithm, SigningKey};
use vigil_security::token::TokenVerifier;

#[derive(Args, Debug)]
pub(crate) struct JwtArgs {
    /// Seconds per method per round.
    #[arg(long, default_value_t = 1.0)]
    seconds: f64,
    /// Rounds.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

/// A raw check: the signature primitive with the key parsed once.
type Raw = Box<dyn Fn(&[u8], &[u8]) -> bool>;

struct Case {
    name: &'static str,
    jwk: serde_json::Value,
    token: String,
    raw: Raw,
}

fn claims() -> Claims {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    Claims {
        iss: "https://auth.bench".into(),
        aud: "vigil".into(),
        sub: "client:bench".into(),
        exp: now + 3600,
        iat: now,
        nbf: now,
        jti: "bench".into(),
        tenant_id: "acme".into(),
        roles: vec!["service".into()],
    }
}

fn issuer_case(name: &'static str, alg: KeyAlgorithm) -> Case {
    let key = SigningKey::generate(alg);
    let jwk = key.public_jwk().clone();
    let coord = |k: &str| {
        B64.decode(jwk[k].as_str().expect("coordinate"))
            .expect("base64")
    };
    let raw: Raw = match alg {
        KeyAlgorithm::EdDsa => {
            let vk =
                ed25519_dalek::VerifyingKey::from_bytes(&coord("x").try_into().expect("32 bytes"))
                    .expect("a public key");
            Box::new(move |msg, sig| {
                ed25519_dalek::Signature::from_slice(sig)
                    .is_ok_and(|s| vk.verify_strict(msg, &s).is_ok())
            })
        }
        KeyAlgorithm::Es256 => {
            let point = p256::EncodedPoint::from_affine_coordinates(
                coord("x").as_slice().into(),
                coord("y").as_slice().into(),
                false,
            );
            let vk = p256::ecdsa::VerifyingKey::from_encoded_point(&point).expect("a public key");
            Box::new(move |msg, sig| {
                use p256::ecdsa::signature::Verifier;
                p256::ecdsa::Signature::from_slice(sig).is_ok_and(|s| vk.verify(msg, &s).is_ok())
            })
        }
    };
    Case {
        name,
        token: key.sign(&claims()),
        jwk,
        raw,
    }
}

fn rsa_case() -> Case {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::traits::PublicKeyParts;
    let private = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).expect("an RSA key");
    let der = private.to_pkcs1_der().expect("PKCS#1");
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("bench-rsa".into());
    let token = jsonwebtoken::encode(
        &header,
        &claims(),
        &jsonwebtoken::EncodingKey::from_rsa_der(der.as_bytes()),
    )
    .expect("signing");
    let public = private.to_public_key();
    let jwk = json!({"kty": "RSA", "kid": "bench-rsa", "alg": "RS256", "use": "sig",
                     "n": B64.encode(public.n().to_bytes_be()), "e": B64.encode(public.e().to_bytes_be())});
    let vk = rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(public);
    Case {
        name: "RS256 (RSA-2048)",
        jwk,
        token,
        raw: Box::new(move |msg, sig| {
            use rsa::signature::Verifier;
            rsa::pkcs1v15::Signature::try_from(sig).is_ok_and(|s| vk.verify(msg, &s).is_ok())
        }),
    }
}

/// Calls `f` for about `secs` seconds; returns calls per second.
fn rate(secs: f64, mut f: impl FnMut()) -> f64 {
    let budget = Duration::from_secs_f64(secs);
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < budget {
        for _ in 0..64 {
            f();
        }
        n += 64;
    }
    n as f64 / started.elapsed().as_secs_f64()
}

pub(crate) async fn run(a: JwtArgs) -> anyhow::Result<()> {
    let cases = vec![
        issuer_case("EdDSA (Ed25519)", KeyAlgorithm::EdDsa),
        issuer_case("ES256 (P-256)", KeyAlgorithm::Es256),
        rsa_case(),
    ];
    let doc = json!({"keys": cases.iter().map(|c| c.jwk.clone()).collect::<Vec<_>>()});
    let registry = prometheus::Registry::new();
    // The full check every time (the verified-token cache off), and as services run it.
    let mut uncached = JwksConfig::new("", "https://auth.bench", "vigil");
    uncached.cache_entries = 0;
    let verifier = JwksVerifier::offline(uncached, &registry);
    verifier
        .load_document(doc.to_string().as_bytes())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let cached = JwksVerifier::offline(
        JwksConfig::new("", "https://auth.bench", "vigil"),
        &registry,
    );
    cached
        .load_document(doc.to_string().as_bytes())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "bench jwt: one thread, {} rounds x {:.1} s per method",
        a.rounds, a.seconds
    );
    println!("algorithm           verifier/s   raw/s        jwt-lib raw/s  ratio (verifier/raw)   repeat token (cache)/s");
    for c in &cases {
        let (message, sig) = c.token.rsplit_once('.').expect("a JWT");
        let sig_bytes = B64.decode(sig)?;
        let alg = jsonwebtoken::decode_header(&c.token)?.alg;
        let lib_key = jsonwebtoken::DecodingKey::from_jwk(&serde_json::from_value({
            let mut j = c.jwk.clone();
            j.as_object_mut().expect("object").remove("alg");
            j
        })?)?;
        // Every verification must succeed, or the figures mean nothing.
        anyhow::ensure!(
            verifier.verify(&c.token).await.is_ok(),
            "{}: the token does not verify",
            c.name
        );
        anyhow::ensure!(
            (c.raw)(message.as_bytes(), &sig_bytes),
            "{}: the raw check fails",
            c.name
        );
        let (mut full, mut raw, mut lib, mut hit) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..a.rounds {
            full.push(rate(a.seconds, || {
                let r = futures::executor::block_on(verifier.verify(&c.token));
                assert!(r.is_ok());
            }));
            raw.push(rate(a.seconds, || {
                assert!((c.raw)(message.as_bytes(), &sig_bytes));
            }));
            hit.push(rate(a.seconds, || {
                let r = futures::executor::block_on(cached.verify(&c.token));
                assert!(r.is_ok());
            }));
            lib.push(rate(a.seconds, || {
                assert!(
                    jsonwebtoken::crypto::verify(sig, message.as_bytes(), &lib_key, alg)
                        .unwrap_or(false)
                );
            }));
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let (f, r, l, h) = (mean(&full), mean(&raw), mean(&lib), mean(&hit));
        println!(
            "{:<19} {:>10.0}   {:>10.0}   {:>12.0}   {:>6.2}                 {:>10.0}",
            c.name,
            f,
            r,
            l,
            f / r,
            h
        );
    }
    Ok(())
}
