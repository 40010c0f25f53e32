//! The token and key parsers over arbitrary input: never a panic, never an identity from
//! anything but the exact token the issuer signed.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use proptest::prelude::*;
use serde_json::{json, Value};
use std::sync::OnceLock;
use vigil_auth::{Claims, JwksConfig, JwksVerifier, KeyAlgorithm, SigningKey};
use vigil_security::token::TokenVerifier;

const ISS: &str = "https://auth.test";

struct Fixture {
    rt: tokio::runtime::Runtime,
    verifier: JwksVerifier,
    token: String,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let key = SigningKey::generate(KeyAlgorithm::EdDsa);
        let other = SigningKey::generate(KeyAlgorithm::Es256);
        let verifier = rt.block_on(async {
            let v = JwksVerifier::offline(
                JwksConfig::new("http://unused", ISS, "vigil"),
                &prometheus::Registry::new(),
            );
            let doc = json!({"keys": [key.public_jwk(), other.public_jwk()]});
            v.load_document(doc.to_string().as_bytes()).unwrap();
            v
        });
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let token = key.sign(&Claims {
            iss: ISS.into(),
            aud: "vigil".into(),
            sub: "user:alice".into(),
            // Far ahead: the fixture lives for the whole run.
            exp: now + 86_400,
            iat: now,
            nbf: now,
            jti: "j1".into(),
            tenant_id: "acme".into(),
            roles: vec!["admin".into()],
        });
        Fixture {
            rt,
            verifier,
            token,
        }
    })
}

fn verifies(token: &str) -> bool {
    let f = fixture();
    f.rt.block_on(f.verifier.verify(token)).is_ok()
}

/// The bytes a token stands for: the decoded segments (two encodings of the same bytes are
/// the same token to a verifier that canonicalises, which ours must not rely on).
fn segments(token: &str) -> Option<Vec<Vec<u8>>> {
    token.split('.').map(|s| B64.decode(s).ok()).collect()
}

#[test]
fn the_fixture_token_verifies() {
    assert!(verifies(&fixture().token));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn arbitrary_text_never_verifies(t in ".{0,400}") {
        prop_assert!(!verifies(&t));
    }

    #[test]
    fn three_arbitrary_segments_never_verify(a in "[A-Za-z0-9_-]{0,80}", b in "[A-Za-z0-9_-]{0,80}", c in "[A-Za-z0-9_-]{0,120}") {
        let t = format!("{a}.{b}.{c}");
        prop_assert!(!verifies(&t));
    }

    /// Any one character of the signed token changed: refused, unless it decodes to the same
    /// bytes.
    #[test]
    fn one_character_changed(pos in any::<prop::sample::Index>(), c in prop::sample::select(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ ".chars().collect::<Vec<_>>()
    )) {
        let t = &fixture().token;
        let i = pos.index(t.len());
        let mut m: Vec<char> = t.chars().collect();
        m[i] = c;
        let m: String = m.into_iter().collect();
        if verifies(&m) {
            prop_assert_eq!(segments(&m), segments(t), "a different token verified: {}", m);
        }
    }

    /// The signed header or claims replaced by arbitrary JSON, the signature kept.
    #[test]
    fn a_resigned_part_never_verifies(v in prop_oneof![
        Just(json!({"alg": "none"})),
        Just(json!({"alg": "HS256", "typ": "JWT"})),
        ".{0,20}".prop_map(|k| json!({"alg": "EdDSA", "kid": k})),
        any::<i64>().prop_map(|e| json!({"sub": "user:root", "tenant_id": "other", "exp": e, "roles": ["super_admin"]})),
    ], which in 0usize..2) {
        let t = &fixture().token;
        let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
        parts[which] = B64.encode(v.to_string());
        prop_assert!(!verifies(&parts.join(".")));
    }

    /// Arbitrary JWKS documents: loaded or refused, never a panic; a refused document leaves
    /// the keys as they were.
    #[test]
    fn arbitrary_jwks_documents(doc in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200).prop_map(Value::from),
        ".{0,200}".prop_map(Value::from),
        (".{0,10}", ".{0,10}", ".{0,60}", ".{0,60}").prop_map(|(kty, alg, x, y)| json!({"keys": [
            {"kty": kty, "alg": alg, "crv": "Ed25519", "x": x, "y": y, "kid": "k"},
            {"kty": "EC", "crv": "P-256", "x": x, "y": y},
            {"kty": "OKP", "crv": "Ed25519", "x": B64.encode(x.as_bytes())},
        ]})),
    ]) {
        let f = fixture();
        let v = JwksVerifier::offline(
            JwksConfig::new("http://unused", ISS, "vigil"),
            &prometheus::Registry::new(),
        );
        let _ = v.load_document(doc.to_string().as_bytes());
        let _ = f.rt.block_on(v.verify(&f.token));
    }

    #[test]
    fn api_key_ids_never_panic(k in ".{0,120}") {
        if let Some(id) = vigil_auth::secret::api_key_id(&k) {
            prop_assert!(k.contains(id));
        }
        let _ = vigil_auth::secret::api_key_hash(&k);
    }
}
