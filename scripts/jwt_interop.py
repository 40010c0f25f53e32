#!/usr/bin/env python3
"""JWT interoperability with code no one at Vigil wrote: PyJWT (and cryptography) from PyPI.

  jwt_interop.py verify JWKS_URL TOKEN ISSUER AUDIENCE
      Verifies a token Vigil issued, using only Vigil's published JWKS, and prints its claims
      as JSON. Exit 0 when it verifies, 1 otherwise.

  jwt_interop.py sign ISSUER AUDIENCE TENANT
      Makes an RSA-2048 and a P-256 key, signs RS256, PS256 and ES256 tokens with them and
      prints {"jwks": {...}, "tokens": {...}} as JSON. The JWKS also holds an RSA-OAEP
      encryption key (as Keycloak publishes one), which a verifier must skip.
"""
import json
import sys
import time
import uuid

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm


def verify(jwks_url, token, issuer, audience):
    client = jwt.PyJWKClient(jwks_url)
    key = client.get_signing_key_from_jwt(token)
    claims = jwt.decode(
        token,
        key.key,
        algorithms=["EdDSA", "ES256"],
        audience=audience,
        issuer=issuer,
        options={"require": ["exp", "iat", "nbf", "iss", "aud", "sub", "jti"]},
    )
    print(json.dumps({"kid": key.key_id, "claims": claims}))


def public_jwk(alg_cls, private_key, kid, alg, use="sig"):
    jwk = json.loads(alg_cls.to_jwk(private_key.public_key()))
    jwk.update({"kid": kid, "alg": alg, "use": use})
    return jwk


def sign(issuer, audience, tenant):
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    enc_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())

    def claims(sub):
        return {
            "iss": issuer, "aud": audience, "sub": sub, "tenant_id": tenant,
            "roles": ["service"], "iat": now, "nbf": now, "exp": now + 600,
            "jti": uuid.uuid4().hex,
        }

    jwks = {"keys": [
        public_jwk(RSAAlgorithm, enc_key, "keycloak-enc", "RSA-OAEP", use="enc"),
        public_jwk(RSAAlgorithm, rsa_key, "py-rsa", "RS256"),
        # The same RSA key listed again for PS256, under its own kid.
        public_jwk(RSAAlgorithm, rsa_key, "py-rsa-pss", "PS256"),
        public_jwk(ECAlgorithm, ec_key, "py-ec", "ES256"),
    ]}
    tokens = {
        "RS256": jwt.encode(claims("py-rs256"), rsa_key, algorithm="RS256", headers={"kid": "py-rsa"}),
        "PS256": jwt.encode(claims("py-ps256"), rsa_key, algorithm="PS256", headers={"kid": "py-rsa-pss"}),
        "ES256": jwt.encode(claims("py-es256"), ec_key, algorithm="ES256", headers={"kid": "py-ec"}),
    }
    print(json.dumps({"jwks": jwks, "tokens": tokens}))


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "verify":
        try:
            verify(*sys.argv[2:])
        except Exception as e:  # any refusal is a failure of the interop check
            print(f"PyJWT refused the token: {type(e).__name__}: {e}", file=sys.stderr)
            sys.exit(1)
    elif len(sys.argv) == 5 and sys.argv[1] == "sign":
        sign(*sys.argv[2:])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
