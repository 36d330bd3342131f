"""Writes ML-DSA-44.json, ML-DSA-65.json and ML-DSA-87.json here, with no jwtkit and no ``cryptography`` code.

Each file holds RFC 9964's example key for one parameter set (the all-zero 32-byte seed, as in the RFC's
AKP section and its Examples appendix) as an AKP JWK, and a compact JWS of the RFC's example payload under
the RFC's header ``{"alg": ..., "kid": ...}``. The public key and the signature come from dilithium-py, an
independent pure Python FIPS 204 implementation, and the signature is FIPS 204's deterministic variant
(rnd = 32 zero bytes), so these exact bytes can be made again:

    .venv/bin/python tests/core/vectors/rfc9964/make_vectors.py    # dilithium-py is a dev dependency

The kid is the RFC 7638 thumbprint over alg, kty and pub (RFC 9964, "AKP Thumbprints"), computed with hashlib.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

from dilithium_py.ml_dsa import ML_DSA_44, ML_DSA_65, ML_DSA_87

HERE = Path(__file__).parent
SEED = bytes(32)
PAYLOAD = "It’s a dangerous business, Frodo, going out your door."  # the RFC's example payload


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def compact(value: dict[str, str]) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def main() -> None:
    for alg, scheme in (("ML-DSA-44", ML_DSA_44), ("ML-DSA-65", ML_DSA_65), ("ML-DSA-87", ML_DSA_87)):
        public, expanded = scheme.key_derive(SEED)
        kid = b64(hashlib.sha256(compact({"alg": alg, "kty": "AKP", "pub": b64(public)})).digest())
        signing_input = b64(compact({"alg": alg, "kid": kid})) + "." + b64(PAYLOAD.encode())
        signature = scheme.sign(expanded, signing_input.encode(), deterministic=True)
        assert scheme.verify(public, signing_input.encode(), signature)
        vector = {
            "alg": alg,
            "jwk": {"kid": kid, "kty": "AKP", "alg": alg, "pub": b64(public), "priv": b64(SEED)},
            "payload": PAYLOAD,
            "jws": signing_input + "." + b64(signature),
        }
        (HERE / f"{alg}.json").write_text(json.dumps(vector, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
