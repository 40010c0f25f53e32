//! The issuer's signing keys: Ed25519 (EdDSA, the default) or P-256 (ES256), kept as PKCS#8
//! DER, published as a JWK whose `kid` is its RFC 7638 thumbprint.
//!
//! A private key never reaches `Debug` output, a log line or an error message.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The algorithms the issuer signs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// Ed25519 signatures (`EdDSA`).
    EdDsa,
    /// ECDSA on P-256 with SHA-256 (`ES256`).
    Es256,
}

impl KeyAlgorithm {
    /// The JOSE name (`EdDSA`, `ES256`).
    pub fn as_str(&self) -> &'static str {
        match self {
            KeyAlgorithm::EdDsa => "EdDSA",
            KeyAlgorithm::Es256 => "ES256",
        }
    }

    /// Parses a JOSE name or its lowercase spelling.
    pub fn parse(s: &str) -> Option<KeyAlgorithm> {
        match s.to_ascii_lowercase().as_str() {
            "eddsa" | "ed25519" => Some(KeyAlgorithm::EdDsa),
            "es256" => Some(KeyAlgorithm::Es256),
            _ => None,
        }
    }

    /// The jsonwebtoken algorithm.
    pub fn jwt(&self) -> Algorithm {
        match self {
            KeyAlgorithm::EdDsa => Algorithm::EdDSA,
            KeyAlgorithm::Es256 => Algorithm::ES256,
        }
    }
}

/// Why a stored key could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("signing key {kid}: {reason}")]
pub struct KeyError {
    kid: String,
    reason: String,
}

/// A private signing key with its public JWK.
pub struct SigningKey {
    kid: String,
    alg: KeyAlgorithm,
    pkcs8: Vec<u8>,
    encoding: EncodingKey,
    public_jwk: Value,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A new random key.
    pub fn generate(alg: KeyAlgorithm) -> SigningKey {
        use ed25519_dalek::pkcs8::EncodePrivateKey as _;
        let der = match alg {
            KeyAlgorithm::EdDsa => {
                ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng).to_pkcs8_der()
            }
            KeyAlgorithm::Es256 => p256::SecretKey::random(&mut rand::rngs::OsRng).to_pkcs8_der(),
        }
        .expect("a fresh key encodes as PKCS#8");
        SigningKey::from_pkcs8(alg, der.as_bytes()).expect("a fresh key loads")
    }

    /// Loads a PKCS#8 DER private key.
    pub fn from_pkcs8(alg: KeyAlgorithm, der: &[u8]) -> Result<SigningKey, KeyError> {
        use ed25519_dalek::pkcs8::DecodePrivateKey as _;
        let bad = |reason: String| KeyError {
            kid: "(unknown)".into(),
            reason,
        };
        let (public_jwk, encoding) = match alg {
            KeyAlgorithm::EdDsa => {
                let k = ed25519_dalek::SigningKey::from_pkcs8_der(der)
                    .map_err(|e| bad(format!("not an Ed25519 PKCS#8 key: {e}")))?;
                (
                    json!({"kty": "OKP", "crv": "Ed25519", "x": B64.encode(k.verifying_key().as_bytes())}),
                    EncodingKey::from_ed_der(der),
                )
            }
            KeyAlgorithm::Es256 => {
                let k = p256::SecretKey::from_pkcs8_der(der)
                    .map_err(|e| bad(format!("not a P-256 PKCS#8 key: {e}")))?;
                let point = p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(
                    &k.public_key(),
                    false,
                );
                let (x, y) = (
                    point.x().expect("uncompressed"),
                    point.y().expect("uncompressed"),
                );
                (
                    json!({"kty": "EC", "crv": "P-256", "x": B64.encode(x), "y": B64.encode(y)}),
                    EncodingKey::from_ec_der(der),
                )
            }
        };
        let kid = thumbprint(&public_jwk);
        let mut public_jwk = public_jwk;
        let o = public_jwk.as_object_mut().expect("an object");
        o.insert("kid".into(), kid.clone().into());
        o.insert("alg".into(), alg.as_str().into());
        o.insert("use".into(), "sig".into());
        Ok(SigningKey {
            kid,
            alg,
            pkcs8: der.to_vec(),
            encoding,
            public_jwk,
        })
    }

    /// The key id: the RFC 7638 SHA-256 thumbprint of the public key.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The algorithm.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.alg
    }

    /// The private key, PKCS#8 DER, for storing.
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The public JWK (`kty`, `crv`, `x`[, `y`], `kid`, `alg`, `use`).
    pub fn public_jwk(&self) -> &Value {
        &self.public_jwk
    }

    /// Signs `claims` as a compact JWT with this key's `kid` in the header.
    pub fn sign<T: serde::Serialize>(&self, claims: &T) -> String {
        let mut header = Header::new(self.alg.jwt());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .expect("signing with a loaded key cannot fail")
    }
}

/// RFC 7638: SHA-256 over the required members in lexicographic order, base64url.
fn thumbprint(jwk: &Value) -> String {
    let s = |k: &str| jwk[k].as_str().unwrap_or_default().to_owned();
    let canonical = match s("kty").as_str() {
        "EC" => format!(
            r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
            s("crv"),
            s("x"),
            s("y")
        ),
        _ => format!(r#"{{"crv":"{}","kty":"OKP","x":"{}"}}"#, s("crv"), s("x")),
    };
    B64.encode(Sha256::digest(canonical.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kid_is_the_rfc_7638_thumbprint() {
        // RFC 8037 appendix A.3: the Ed25519 example key's thumbprint.
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"});
        assert_eq!(
            thumbprint(&jwk),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn keys_round_trip_through_pkcs8_and_never_show_the_private_part() {
        for alg in [KeyAlgorithm::EdDsa, KeyAlgorithm::Es256] {
            let k = SigningKey::generate(alg);
            let again = SigningKey::from_pkcs8(alg, k.pkcs8_der()).unwrap();
            assert_eq!(k.kid(), again.kid());
            assert_eq!(k.public_jwk()["alg"], alg.as_str());
            let debug = format!("{k:?}");
            assert!(!debug.contains(&hex::encode(k.pkcs8_der())));
            assert!(!debug.contains("pkcs8"), "{debug}");
        }
    }
}
