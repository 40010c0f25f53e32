//! `vigil audit serve --token-public-key`: bearer JWTs signed by the configured Ed25519 key
//! are the caller's identity; tokens from another key are refused.

use crate::common::*;
use ed25519_dalek::pkcs8::{spki::der::pem::LineEnding, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::SigningKey;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use std::process::{Command, Stdio};

fn key() -> SigningKey {
    SigningKey::generate(&mut rand::rngs::OsRng)
}

fn token(k: &SigningKey, roles: &[&str]) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({"iss": "https://auth.test", "aud": "vigil", "sub": "svc-payments", "exp": now + 300, "iat": now,
                        "nbf": now, "jti": "1", "tenant_id": "acme", "roles": roles});
    let pem = k.to_pkcs8_pem(LineEnding::LF).unwrap();
    jsonwebtoken::encode(
        &Header::new(Algorithm::EdDSA),
        &claims,
        &EncodingKey::from_ed_pem(pem.as_bytes()).unwrap(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_tokens_signed_by_the_configured_key_identify_the_caller() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = key();
    let pem_path = dir.path().join("issuer.pem");
    std::fs::write(
        &pem_path,
        issuer
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap(),
    )
    .unwrap();
    let port = free_port();
    let child = Command::new(vigil_bin())
        .args(["audit", "serve", "--token-issuer", "https://auth.test"])
        .arg("--token-public-key")
        .arg(&pem_path)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("VIGIL_LOG", "warn")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut server = Server {
        child,
        addr: format!("127.0.0.1:{port}").parse().unwrap(),
    };
    server.wait_ready().await;
    let c = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/v1/events");
    let r = c
        .post(&url)
        .bearer_auth(token(&issuer, &["service"]))
        .json(&events(0, 2))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .get(&url)
        .bearer_auth(token(&issuer, &["support"]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let page: serde_json::Value = r.json().await.unwrap();
    assert_eq!(page["events"].as_array().unwrap().len(), 2);
    assert!(page["events"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["tenant_id"] == "acme"));
    // Signed by another key, or no token at all (headers are not trusted in this mode).
    let r = c
        .get(&url)
        .bearer_auth(token(&key(), &["support"]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["x-error-code"], "invalid_token");
    let r = c
        .get(&url)
        .header("X-Tenant-ID", "acme")
        .header("X-Roles", "admin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["x-error-code"], "unauthenticated");
    server.terminate();
}
