"""JSON Web Algorithms (RFC 7518, RFC 8037, RFC 9864, RFC 9964): the frozen table, one entry per ``alg``.

Everything below the single table lookup receives the :class:`Algorithm` entry and never switches on the
``alg`` string again. Each entry carries the builders of its signer and verifier: a key calls them once, at
construction, with its loaded ``cryptography`` key (or HMAC secret), and the closures they return have the
hash object and padding bound in. The table knows nothing of keys: :mod:`.keys` depends on it, never the
other way (``sign``/``verify`` over a key live in :mod:`.signing`).
"""

from __future__ import annotations

import enum
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from jwtkit._jose.errors import DisallowedAlgorithm

_openssl_hmac: Callable[..., Any] | None
try:
    from _hashlib import hmac_new as _openssl_hmac
except ImportError:  # pragma: no cover - Python built without OpenSSL's hashlib
    _openssl_hmac = None

__all__ = ["ALGORITHMS", "CURVES", "Algorithm", "Family", "Signer", "Verifier", "lookup"]

Signer = Callable[[bytes], bytes]
Verifier = Callable[[bytes, bytes], bool]


class Family(enum.Enum):
    """The algorithm families, each with its own key type and signature shape."""

    HMAC = "HMAC"
    RSA_PKCS1 = "RSASSA-PKCS1-v1_5"
    RSA_PSS = "RSASSA-PSS"
    ECDSA = "ECDSA"
    EDDSA = "EdDSA"
    ML_DSA = "ML-DSA"


@dataclass(frozen=True, slots=True)
class Algorithm:
    """One JWS ``alg``: family, hash, key type, fixed signature length, and signer and verifier builders."""

    name: str
    family: Family
    kty: str
    hash_name: str  # hashlib/hmac name; "" for EdDSA and ML-DSA
    hash_size: int  # octets; 0 for EdDSA and ML-DSA
    crv: str | None = None  # JWK "crv" for EC and OKP keys
    sig_size: int = 0  # exact signature length (R10); 0 when it is the RSA modulus length
    curve_order: int = 0  # ECDSA: r and s must lie in [1, n-1]
    pub_size: int = 0  # ML-DSA: the exact length of the public key (the AKP JWK's "pub", FIPS 204 Table 2)
    # (entry, key material) -> one key's closure; the material is an HMAC secret or a cryptography key.
    build_signer: Callable[[Algorithm, Any], Signer] = field(kw_only=True, repr=False, compare=False)
    build_verifier: Callable[[Algorithm, Any], Verifier] = field(kw_only=True, repr=False, compare=False)

    def hash(self) -> hashes.HashAlgorithm:
        """A fresh ``cryptography`` hash instance for this algorithm."""
        return _HASHES[self.hash_name]()

    def signer(self, material: Any) -> Signer:
        """The signing closure for one key: an HMAC secret, or a private key of this family (the caller has
        checked its type)."""
        return self.build_signer(self, material)

    def verifier(self, material: Any) -> Verifier:
        """The verifying closure for one key: an HMAC secret, or a public key of this family (the caller has
        checked its type). It answers False for any signature that does not verify, and never raises."""
        return self.build_verifier(self, material)


_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}

_P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_P384_N = int(
    "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973", 16
)
_P521_N = int(
    "01FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFA51868783BF2F966B7FCC0148F709A5D03"
    "BB5C9B8899C47AEBB6FB71E91386409",
    16,
)


# --- per-key signer/verifier builders (called once, at key construction) ---------------------------------


def _hmac_state(spec: Algorithm, secret: bytes) -> Callable[[], Any]:
    # The keyed HMAC state is computed once; each operation copies it instead of re-keying. OpenSSL's HMAC
    # object is used directly when present (the stdlib's hmac.HMAC wraps it in Python).
    if _openssl_hmac is not None:
        try:
            return _openssl_hmac(secret, digestmod=spec.hash_name).copy  # type: ignore[no-any-return]
        except ValueError:  # pragma: no cover - a digest OpenSSL lacks (FIPS builds)
            pass
    return hmac.new(secret, digestmod=spec.hash_name).copy


def _hmac_signer(spec: Algorithm, secret: bytes) -> Signer:
    """Signer for an HMAC key."""
    fresh = _hmac_state(spec, secret)

    def sign_hmac(data: bytes) -> bytes:
        state = fresh()
        state.update(data)
        return state.digest()  # type: ignore[no-any-return]

    return sign_hmac


def _hmac_verifier(spec: Algorithm, secret: bytes) -> Verifier:
    """Verifier for an HMAC key; compares in constant time (R10)."""
    fresh, equal = _hmac_state(spec, secret), hmac.compare_digest

    def verify_hmac(data: bytes, signature: bytes) -> bool:
        state = fresh()
        state.update(data)
        return equal(state.digest(), signature)

    return verify_hmac


def _rsa_padding(spec: Algorithm) -> padding.AsymmetricPadding:
    if spec.family is Family.RSA_PSS:
        # R10 / RFC 7518 §3.5: MGF1 with the same hash, salt exactly the hash length (never AUTO or MAX).
        return padding.PSS(mgf=padding.MGF1(spec.hash()), salt_length=spec.hash_size)
    return padding.PKCS1v15()


def _rsa_signer(spec: Algorithm, key: rsa.RSAPrivateKey) -> Signer:
    """Signer for an RSA private key (RS* or PS*)."""
    pad, algorithm, sign_rsa = _rsa_padding(spec), spec.hash(), key.sign

    def sign_rsa_bound(data: bytes) -> bytes:
        return sign_rsa(data, pad, algorithm)

    return sign_rsa_bound


def _rsa_verifier(spec: Algorithm, key: rsa.RSAPublicKey) -> Verifier:
    """Verifier for an RSA public key (RS* or PS*)."""
    pad, algorithm, verify_rsa = _rsa_padding(spec), spec.hash(), key.verify

    def verify_rsa_bound(data: bytes, signature: bytes) -> bool:
        try:
            verify_rsa(signature, data, pad, algorithm)
        except Exception:  # InvalidSignature, or anything else: a verifier only ever says no.
            return False
        return True

    return verify_rsa_bound


def _ec_signer(spec: Algorithm, key: ec.EllipticCurvePrivateKey) -> Signer:
    """Signer for an EC private key: DER from OpenSSL turned into JWS raw R||S (RFC 7518 §3.4)."""
    scheme, sign_ec, size = ec.ECDSA(spec.hash()), key.sign, spec.sig_size // 2

    def sign_ec_raw(data: bytes) -> bytes:
        r, s = decode_dss_signature(sign_ec(data, scheme))
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")

    return sign_ec_raw


def _ec_verifier(spec: Algorithm, key: ec.EllipticCurvePublicKey) -> Verifier:
    """Verifier for an EC public key: raw R||S of the exact length, each in [1, n-1], then DER (R10)."""
    scheme, verify_ec, size, order = ec.ECDSA(spec.hash()), key.verify, spec.sig_size // 2, spec.curve_order
    from_bytes = int.from_bytes

    def verify_ec_raw(data: bytes, signature: bytes) -> bool:
        if len(signature) != size * 2:
            return False
        r = from_bytes(signature[:size], "big")
        s = from_bytes(signature[size:], "big")
        # CVE-2022-21449 ("psychic signatures"): r = s = 0 must never verify; refuse out-of-range values here.
        if not (0 < r < order and 0 < s < order):
            return False
        try:
            verify_ec(encode_dss_signature(r, s), data, scheme)
        except Exception:  # InvalidSignature, or anything else: a verifier only ever says no.
            return False
        return True

    return verify_ec_raw


def _ed_signer(spec: Algorithm, key: ed25519.Ed25519PrivateKey) -> Signer:
    """Signer for an Ed25519 private key."""
    return key.sign


def _ed_verifier(spec: Algorithm, key: ed25519.Ed25519PublicKey) -> Verifier:
    """Verifier for an Ed25519 public key."""
    return _saying_no(key.verify)


def _mldsa_signer(spec: Algorithm, key: Any) -> Signer:
    """Signer for an ML-DSA private key (``cryptography``'s MLDSA44/65/87PrivateKey): pure ML-DSA, FIPS 204
    Algorithm 2, hedged (two signatures of one input differ), with the empty context RFC 9964 requires."""
    return key.sign  # type: ignore[no-any-return]


def _mldsa_verifier(spec: Algorithm, key: Any) -> Verifier:
    """Verifier for an ML-DSA public key, with the empty context string (RFC 9964)."""
    return _saying_no(key.verify)


def _saying_no(verify: Callable[[bytes, bytes], object]) -> Verifier:
    """A verifier over ``verify(signature, data)``, which raises for a bad signature (Ed25519, ML-DSA)."""

    def verify_bound(data: bytes, signature: bytes) -> bool:
        try:
            verify(signature, data)
        except Exception:  # InvalidSignature, or anything else: a verifier only ever says no.
            return False
        return True

    return verify_bound


# --- the table --------------------------------------------------------------------------------------------

_BUILDERS: dict[Family, tuple[Callable[[Algorithm, Any], Signer], Callable[[Algorithm, Any], Verifier]]] = {
    Family.HMAC: (_hmac_signer, _hmac_verifier),
    Family.RSA_PKCS1: (_rsa_signer, _rsa_verifier),
    Family.RSA_PSS: (_rsa_signer, _rsa_verifier),
    Family.ECDSA: (_ec_signer, _ec_verifier),
    Family.EDDSA: (_ed_signer, _ed_verifier),
    Family.ML_DSA: (_mldsa_signer, _mldsa_verifier),
}


def _entry(name: str, family: Family, kty: str, hash_name: str, hash_size: int, *rest: Any) -> Algorithm:
    signer, verifier = _BUILDERS[family]
    return Algorithm(
        name, family, kty, hash_name, hash_size, *rest, build_signer=signer, build_verifier=verifier
    )


def _table() -> dict[str, Algorithm]:
    table: dict[str, Algorithm] = {}
    for bits in (256, 384, 512):
        name, size = f"sha{bits}", bits // 8
        table[f"HS{bits}"] = _entry(f"HS{bits}", Family.HMAC, "oct", name, size, None, size)
        table[f"RS{bits}"] = _entry(f"RS{bits}", Family.RSA_PKCS1, "RSA", name, size)
        table[f"PS{bits}"] = _entry(f"PS{bits}", Family.RSA_PSS, "RSA", name, size)
    # RFC 7518 §3.4: ES256 = P-256 + SHA-256, ES384 = P-384 + SHA-384, ES512 = P-521 + SHA-512.
    table["ES256"] = _entry("ES256", Family.ECDSA, "EC", "sha256", 32, "P-256", 64, _P256_N)
    table["ES384"] = _entry("ES384", Family.ECDSA, "EC", "sha384", 48, "P-384", 96, _P384_N)
    table["ES512"] = _entry("ES512", Family.ECDSA, "EC", "sha512", 64, "P-521", 132, _P521_N)
    # RFC 8037 "EdDSA" and RFC 9864's fully specified "Ed25519" name the same thing for Ed25519 keys.
    table["EdDSA"] = _entry("EdDSA", Family.EDDSA, "OKP", "", 0, "Ed25519", 64)
    table["Ed25519"] = _entry("Ed25519", Family.EDDSA, "OKP", "", 0, "Ed25519", 64)
    # RFC 9964: ML-DSA (FIPS 204) on AKP keys; signature and public key sizes from FIPS 204 Table 2.
    for name, sig_size, pub_size in (("ML-DSA-44", 2420, 1312), ("ML-DSA-65", 3309, 1952),
                                     ("ML-DSA-87", 4627, 2592)):
        table[name] = _entry(name, Family.ML_DSA, "AKP", "", 0, None, sig_size, 0, pub_size)
    return table


#: The only algorithms jwtkit knows; ``none`` is absent in every spelling (R4). A read-only mapping of frozen
#: entries.
ALGORITHMS: Mapping[str, Algorithm] = MappingProxyType(_table())

#: The ``cryptography`` curve class for each JWK ``crv`` of an ECDSA algorithm.
CURVES: Mapping[str, type[ec.EllipticCurve]] = MappingProxyType(
    {"P-256": ec.SECP256R1, "P-384": ec.SECP384R1, "P-521": ec.SECP521R1}
)


def lookup(alg: object) -> Algorithm:
    """The table entry for ``alg``; :class:`DisallowedAlgorithm` for anything else, ``none`` included."""
    spec = ALGORITHMS.get(alg) if type(alg) is str else None
    if spec is None:
        raise DisallowedAlgorithm("unsupported algorithm")
    return spec
