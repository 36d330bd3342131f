"""JSON Web Algorithms (RFC 7518, RFC 8037, RFC 9864): one frozen table entry per ``alg``, and sign/verify.

Everything below the single table lookup receives the :class:`Algorithm` entry and never switches on the
``alg`` string again. The signer and verifier closures built here are made once per key, at construction, with
the loaded ``cryptography`` key, hash object and padding bound in.
"""

from __future__ import annotations

import enum
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from jwtkit.jose.errors import DisallowedAlgorithm, UnusableKey

_openssl_hmac: Callable[..., Any] | None
try:
    from _hashlib import hmac_new as _openssl_hmac
except ImportError:  # pragma: no cover - Python built without OpenSSL's hashlib
    _openssl_hmac = None

if TYPE_CHECKING:
    from jwtkit.jose.keys import Key

__all__ = ["ALGORITHMS", "Algorithm", "Family", "lookup", "sign", "verify"]

Signer = Callable[[bytes], bytes]
Verifier = Callable[[bytes, bytes], bool]


class Family(enum.Enum):
    """The algorithm families, each with its own key type and signature shape."""

    HMAC = "HMAC"
    RSA_PKCS1 = "RSASSA-PKCS1-v1_5"
    RSA_PSS = "RSASSA-PSS"
    ECDSA = "ECDSA"
    EDDSA = "EdDSA"


@dataclass(frozen=True, slots=True)
class Algorithm:
    """One JWS ``alg``: its family, hash, key type and (where fixed) signature length."""

    name: str
    family: Family
    kty: str
    hash_name: str  # hashlib/hmac name; "" for EdDSA
    hash_size: int  # octets; 0 for EdDSA
    crv: str | None = None  # JWK "crv" for EC and OKP keys
    sig_size: int = 0  # exact signature length (R10); 0 when it is the RSA modulus length
    curve_order: int = 0  # ECDSA: r and s must lie in [1, n-1]

    def hash(self) -> hashes.HashAlgorithm:
        """A fresh ``cryptography`` hash instance for this algorithm."""
        return _HASHES[self.hash_name]()


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


def _table() -> dict[str, Algorithm]:
    table: dict[str, Algorithm] = {}
    for bits in (256, 384, 512):
        name, size = f"sha{bits}", bits // 8
        table[f"HS{bits}"] = Algorithm(f"HS{bits}", Family.HMAC, "oct", name, size, sig_size=size)
        table[f"RS{bits}"] = Algorithm(f"RS{bits}", Family.RSA_PKCS1, "RSA", name, size)
        table[f"PS{bits}"] = Algorithm(f"PS{bits}", Family.RSA_PSS, "RSA", name, size)
    # RFC 7518 §3.4: ES256 = P-256 + SHA-256, ES384 = P-384 + SHA-384, ES512 = P-521 + SHA-512.
    table["ES256"] = Algorithm("ES256", Family.ECDSA, "EC", "sha256", 32, "P-256", 64, _P256_N)
    table["ES384"] = Algorithm("ES384", Family.ECDSA, "EC", "sha384", 48, "P-384", 96, _P384_N)
    table["ES512"] = Algorithm("ES512", Family.ECDSA, "EC", "sha512", 64, "P-521", 132, _P521_N)
    # RFC 8037 "EdDSA" and RFC 9864's fully specified "Ed25519" name the same thing for Ed25519 keys.
    table["EdDSA"] = Algorithm("EdDSA", Family.EDDSA, "OKP", "", 0, "Ed25519", 64)
    table["Ed25519"] = Algorithm("Ed25519", Family.EDDSA, "OKP", "", 0, "Ed25519", 64)
    return table


#: The only algorithms jwtkit knows; ``none`` is absent in every spelling (R4).
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


def hmac_signer(spec: Algorithm, secret: bytes) -> Signer:
    """Signer for an HMAC key."""
    fresh = _hmac_state(spec, secret)

    def sign_hmac(data: bytes) -> bytes:
        state = fresh()
        state.update(data)
        return state.digest()  # type: ignore[no-any-return]

    return sign_hmac


def hmac_verifier(spec: Algorithm, secret: bytes) -> Verifier:
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


def rsa_signer(spec: Algorithm, key: rsa.RSAPrivateKey) -> Signer:
    """Signer for an RSA private key (RS* or PS*)."""
    pad, algorithm, sign_rsa = _rsa_padding(spec), spec.hash(), key.sign

    def sign_rsa_bound(data: bytes) -> bytes:
        return sign_rsa(data, pad, algorithm)

    return sign_rsa_bound


def rsa_verifier(spec: Algorithm, key: rsa.RSAPublicKey) -> Verifier:
    """Verifier for an RSA public key (RS* or PS*)."""
    pad, algorithm, verify_rsa = _rsa_padding(spec), spec.hash(), key.verify

    def verify_rsa_bound(data: bytes, signature: bytes) -> bool:
        try:
            verify_rsa(signature, data, pad, algorithm)
        except Exception:  # InvalidSignature, or anything else: a verifier only ever says no.
            return False
        return True

    return verify_rsa_bound


def ec_signer(spec: Algorithm, key: ec.EllipticCurvePrivateKey) -> Signer:
    """Signer for an EC private key: DER from OpenSSL turned into JWS raw R||S (RFC 7518 §3.4)."""
    scheme, sign_ec, size = ec.ECDSA(spec.hash()), key.sign, spec.sig_size // 2

    def sign_ec_raw(data: bytes) -> bytes:
        r, s = decode_dss_signature(sign_ec(data, scheme))
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")

    return sign_ec_raw


def ec_verifier(spec: Algorithm, key: ec.EllipticCurvePublicKey) -> Verifier:
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


def ed_signer(spec: Algorithm, key: ed25519.Ed25519PrivateKey) -> Signer:
    """Signer for an Ed25519 private key."""
    return key.sign


def ed_verifier(spec: Algorithm, key: ed25519.Ed25519PublicKey) -> Verifier:
    """Verifier for an Ed25519 public key."""
    verify_ed = key.verify

    def verify_ed_bound(data: bytes, signature: bytes) -> bool:
        try:
            verify_ed(signature, data)
        except Exception:  # InvalidSignature, or anything else: a verifier only ever says no.
            return False
        return True

    return verify_ed_bound


# --- the public algorithm layer -----------------------------------------------------------------------------


_key_type: type[Key] | None = None  # jwtkit.jose.keys.Key, bound on first use (keys imports this module)


def _bound(alg: str, key: Key) -> None:
    global _key_type
    if _key_type is None:
        from jwtkit.jose.keys import Key

        _key_type = Key
    if not isinstance(key, _key_type):
        raise TypeError("key must be a jwtkit.Key")
    # R5: a key signs and verifies only the algorithm it is bound to; the table is never bypassed (R4).
    if key._alg != alg or alg not in ALGORITHMS:
        raise DisallowedAlgorithm("unsupported algorithm, or not the key's algorithm")


def sign(alg: str, key: Key, signing_input: bytes) -> bytes:
    """Sign ``signing_input`` with ``key``, which must be bound to ``alg`` and able to sign.

    Args:
        alg: the JWS algorithm name, e.g. ``"HS256"``.
        key: a :class:`jwtkit.Key` bound to ``alg`` (an HMAC key or a private key).
        signing_input: the bytes to sign (for JWS, ``header.payload``).

    Raises:
        DisallowedAlgorithm: ``algorithm``, when ``alg`` is unknown or not the key's.
        UnusableKey: ``key``, when the key cannot sign (a public key, or ``use``/``key_ops`` forbid it).

    Example:
        >>> from jwtkit import Key, jwa
        >>> key = Key.from_secret(b"k" * 32)
        >>> len(jwa.sign("HS256", key, b"data"))
        32
    """
    _bound(alg, key)
    signer = key._signer
    if signer is None:
        raise UnusableKey("key cannot sign")
    return signer(signing_input if type(signing_input) is bytes else bytes(signing_input))


def verify(alg: str, key: Key, signing_input: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is valid for ``signing_input`` under ``key``, which must be bound to ``alg``.

    Returns False for any signature that does not verify, whatever its length or content; the length is
    checked before any crypto call (R10).

    Raises:
        DisallowedAlgorithm: ``algorithm``, when ``alg`` is unknown or not the key's.
        UnusableKey: ``key``, when ``use``/``key_ops`` forbid verification with this key.

    Example:
        >>> from jwtkit import Key, jwa
        >>> key = Key.from_secret(b"k" * 32)
        >>> jwa.verify("HS256", key, b"data", jwa.sign("HS256", key, b"data"))
        True
    """
    _bound(alg, key)
    verifier = key._verifier
    if verifier is None:
        raise UnusableKey("key may not verify")
    if len(signature) != key._sig_size:
        return False
    try:
        if type(signing_input) is not bytes or type(signature) is not bytes:
            signing_input, signature = bytes(signing_input), bytes(signature)
        return verifier(signing_input, signature)
    except Exception:  # A verifier only ever says no.
        return False
