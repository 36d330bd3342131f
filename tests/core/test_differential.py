"""Differential property tests: jwtkit against PyJWT and joserfc (issue 2 §5), and its ML-DSA against
dilithium-py (section 7), since neither PyJWT nor joserfc has ML-DSA.

Three properties, for HS256/384/512, RS256, PS256, ES256/384/512 and EdDSA:

1. what PyJWT and joserfc sign, jwtkit verifies, returning identical claims;
2. what jwtkit signs, PyJWT and joserfc verify, returning identical claims;
3. the classes of bad token in issue 2 §4 are refused by jwtkit with an exact error code, and by the peers
   too, except where a peer is knowingly more lenient than jwtkit (each such case says so in a comment and
   asserts only jwtkit's refusal).

Asymmetric keys are generated once for the module (RSA key generation is slow); example counts are modest so
the file stays well under a minute on a shared two-core machine.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt as pyjwt
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from dilithium_py.ml_dsa import ML_DSA_44, ML_DSA_65, ML_DSA_87
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from joserfc import jwt as jrfc_jwt
from joserfc.jwk import ECKey, OctKey, OKPKey, RSAKey

import jwtkit
from jwtkit import JWTError, Key, KeySet, jwa

pytestmark = pytest.mark.filterwarnings(
    # joserfc warns that "EdDSA" is deprecated by RFC 9864; it is still what PyJWT and most peers send.
    "ignore:EdDSA is deprecated",
)

# 60 examples per algorithm (29 parametrised properties) and 100 for the single-token properties keep the file
# well under a minute on two shared cores; the example database makes later runs revisit any failure first.
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MANY = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Registered claim names are left out of the random claims: the peers validate them on their own terms
# (PyJWT rejects a non-string `sub`, an `aud` nobody asked for, ...), which is tested separately below.
REGISTERED = frozenset({"iss", "sub", "aud", "exp", "nbf", "iat", "jti"})
ISSUER = "https://auth.example.com"
AUDIENCE = "api.example.com"


# --- helpers ------------------------------------------------------------------------------------------------

def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _json(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def compact(header: Mapping[str, Any] | bytes, payload: Mapping[str, Any] | bytes,
            sign: Callable[[bytes], bytes]) -> str:
    """A compact JWS built by hand (to forge tokens no library would write)."""
    raw_header = header if isinstance(header, bytes) else _json(header)
    raw_payload = payload if isinstance(payload, bytes) else _json(payload)
    signing_input = f"{b64(raw_header)}.{b64(raw_payload)}".encode("ascii")
    return f"{signing_input.decode('ascii')}.{b64(sign(signing_input))}"


def jwtkit_refusal(token: str, key: Key | KeySet, **options: Any) -> str | None:
    """None when jwtkit accepts the token, else the refusal's code; any other exception fails (R16)."""
    try:
        jwtkit.decode(token, key, **options)
    except JWTError as exc:
        return exc.code
    return None


def pyjwt_accepts(token: str, key: Any, algorithms: list[str], **options: Any) -> bool:
    try:
        pyjwt.decode(token, key, algorithms=algorithms, **options)
    except Exception:  # any refusal counts: the peer is not under test here
        return False
    return True


def joserfc_accepts(token: str, key: Any, algorithms: list[str],
                    registry: jrfc_jwt.JWTClaimsRegistry | None = None) -> bool:
    try:
        decoded = jrfc_jwt.decode(token, key, algorithms=algorithms)
        (registry or jrfc_jwt.JWTClaimsRegistry()).validate(decoded.claims)
    except Exception:  # any refusal counts: the peer is not under test here
        return False
    return True


# --- keys, made once ---------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Fixture:
    """One algorithm's key material in the form each library takes, prepared once."""

    alg: str
    private: Any            # cryptography private key, or the HMAC secret
    public: Any             # cryptography public key, or the HMAC secret
    private_pem: bytes
    public_pem: bytes
    joserfc_private: Any
    joserfc_public: Any

    @property
    def symmetric(self) -> bool:
        return self.alg.startswith("HS")

    def signing_key(self, kid: str | None = None) -> Key:
        return _jwtkit_key(self, kid, private=True)

    def verifying_key(self, kid: str | None = None) -> Key:
        return _jwtkit_key(self, kid, private=False)


@functools.cache
def _jwtkit_key(fixture: Fixture, kid: str | None, *, private: bool) -> Key:
    # Cached: loading an RSA private PEM runs OpenSSL's key check, tens of milliseconds each time.
    if fixture.symmetric:
        return Key.from_secret(fixture.private, fixture.alg, kid=kid)
    return Key.from_pem(fixture.private_pem if private else fixture.public_pem, fixture.alg, kid=kid)


def _pem_pair(private: Any) -> tuple[bytes, bytes]:
    private_pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
    public_pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    return private_pem, public_pem


def _hmac_fixture(alg: str, size: int) -> Fixture:
    secret = hashlib.sha512(f"differential {alg}".encode()).digest()[:size] * 2   # twice the minimum length
    return Fixture(alg, secret, secret, b"", b"", OctKey.import_key(secret), OctKey.import_key(secret))


def _asymmetric_fixture(alg: str, private: Any, importer: Any) -> Fixture:
    private_pem, public_pem = _pem_pair(private)
    return Fixture(alg, private, private.public_key(), private_pem, public_pem,
                   importer.import_key(private_pem), importer.import_key(public_pem))


RSA_PRIVATE = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_RSA_PRIVATE = rsa.generate_private_key(public_exponent=65537, key_size=2048)
P256 = ec.generate_private_key(ec.SECP256R1())
P384 = ec.generate_private_key(ec.SECP384R1())
P521 = ec.generate_private_key(ec.SECP521R1())
ED25519 = ed25519.Ed25519PrivateKey.generate()

FIXTURES: dict[str, Fixture] = {
    "HS256": _hmac_fixture("HS256", 32),
    "HS384": _hmac_fixture("HS384", 48),
    "HS512": _hmac_fixture("HS512", 64),
    "RS256": _asymmetric_fixture("RS256", RSA_PRIVATE, RSAKey),
    "PS256": _asymmetric_fixture("PS256", RSA_PRIVATE, RSAKey),
    "ES256": _asymmetric_fixture("ES256", P256, ECKey),
    "ES384": _asymmetric_fixture("ES384", P384, ECKey),
    "ES512": _asymmetric_fixture("ES512", P521, ECKey),
    "EdDSA": _asymmetric_fixture("EdDSA", ED25519, OKPKey),
}
# RFC 9864's fully specified name for the same Ed25519 keys. joserfc 1.8 knows it; PyJWT 2.15 does not (its
# registry has only "EdDSA"), so the PyJWT properties run over ALGS and the joserfc ones over ALGS + Ed25519.
FIXTURES["Ed25519"] = _asymmetric_fixture("Ed25519", ED25519, OKPKey)
ALGS = ["HS256", "HS384", "HS512", "RS256", "PS256", "ES256", "ES384", "ES512", "EdDSA"]
JOSERFC_ALGS = [*ALGS, "Ed25519"]
SIGNATURE_LENGTH = {"HS256": 32, "HS384": 48, "HS512": 64, "RS256": 256, "PS256": 256,
                    "ES256": 64, "ES384": 96, "ES512": 132, "EdDSA": 64, "Ed25519": 64}


def _hs256_sign(signing_input: bytes) -> bytes:
    return hmac.digest(FIXTURES["HS256"].private, signing_input, "sha256")


# --- strategies ---------------------------------------------------------------------------------------------

# JSON-safe values: I-JSON integers (RFC 7493 §2.2: within ±(2**53 - 1)), finite floats, strings without lone
# surrogates (hypothesis' default alphabet excludes them), shallow nesting far below the depth bound (R3).
json_leaf = (st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1)
             | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=16))
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
claim_names = st.text(max_size=12).filter(lambda name: name not in REGISTERED)
extra_claims = st.dictionaries(claim_names, json_value, max_size=6)
# Random kids, plus a pool of awkward ones (unicode, spaces, quotes, JSON-looking, long) that recur, so
# that cached keys get reused (an RSA private key costs tens of milliseconds to load).
KIDS = ["k1", "2024-rotation", "ключ", "🔑 key", 'a "quoted" kid', "{\"kid\":1}", "x" * 200, " ", "\u0000nul"]
kids = st.none() | st.sampled_from(KIDS) | st.text(min_size=1, max_size=24)


def with_exp(claims: Mapping[str, Any], lifetime: int = 3600) -> dict[str, Any]:
    return {**claims, "exp": int(time.time()) + lifetime}


# --- 1. peers sign, jwtkit verifies -------------------------------------------------------------------------

@pytest.mark.parametrize("alg", ALGS)
@PROPERTY
@given(claims=extra_claims, kid=kids)
def test_pyjwt_tokens_verify_in_jwtkit(alg: str, claims: dict[str, Any], kid: str | None) -> None:
    fixture = FIXTURES[alg]
    claims = with_exp(claims)
    token = pyjwt.encode(claims, fixture.private, algorithm=alg, headers={"kid": kid} if kid else None)
    assert jwtkit.decode(token, fixture.verifying_key(kid)) == claims
    assert jwtkit.decode(token, KeySet([fixture.verifying_key(kid)])) == claims


@pytest.mark.parametrize("alg", JOSERFC_ALGS)
@PROPERTY
@given(claims=extra_claims, kid=kids)
def test_joserfc_tokens_verify_in_jwtkit(alg: str, claims: dict[str, Any], kid: str | None) -> None:
    fixture = FIXTURES[alg]
    claims = with_exp(claims)
    header = {"alg": alg, **({"kid": kid} if kid else {})}
    token = jrfc_jwt.encode(header, claims, fixture.joserfc_private, algorithms=[alg])
    assert jwtkit.decode(token, fixture.verifying_key(kid)) == claims


@FEW
@given(secret=st.binary(min_size=32, max_size=200), claims=extra_claims)
def test_any_long_enough_hmac_secret_interoperates(secret: bytes, claims: dict[str, Any]) -> None:
    # Every secret of at least the hash length is usable, whatever its bytes (no sniffing, R5).
    claims = with_exp(claims)
    token = jrfc_jwt.encode({"alg": "HS256"}, claims, OctKey.import_key(secret), algorithms=["HS256"])
    assert jwtkit.decode(token, Key.from_secret(secret, "HS256")) == claims
    ours = jwtkit.encode(claims, Key.from_secret(secret, "HS256"))
    assert jrfc_jwt.decode(ours, OctKey.import_key(secret), algorithms=["HS256"]).claims == claims


# --- 2. jwtkit signs, peers verify --------------------------------------------------------------------------

@pytest.mark.parametrize("alg", JOSERFC_ALGS)
@PROPERTY
@given(claims=extra_claims, kid=kids)
def test_jwtkit_tokens_verify_in_peers(alg: str, claims: dict[str, Any], kid: str | None) -> None:
    fixture = FIXTURES[alg]
    claims = with_exp(claims)
    token = jwtkit.encode(claims, fixture.signing_key(kid))

    header, unverified = jwtkit.decode_unverified(token)
    assert header == {"alg": alg, "typ": "JWT", **({"kid": kid} if kid else {})}
    assert unverified == claims
    assert len(unb64(token.rsplit(".", 1)[1])) == SIGNATURE_LENGTH[alg]

    if alg in ALGS:
        assert pyjwt.decode(token, fixture.public, algorithms=[alg]) == claims
    decoded = jrfc_jwt.decode(token, fixture.joserfc_public, algorithms=[alg])
    assert decoded.claims == claims
    assert decoded.header == header


@pytest.mark.parametrize("alg", ALGS)
def test_round_trip_with_full_claim_validation(alg: str) -> None:
    fixture = FIXTURES[alg]
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": "user-1", "aud": [AUDIENCE, "other"], "iat": now, "nbf": now - 1,
              "exp": now + 600, "jti": "a1b2"}
    token = jwtkit.encode(claims, fixture.signing_key("k1"))
    assert jwtkit.decode(token, fixture.verifying_key("k1"), issuer=ISSUER, audience=AUDIENCE,
                         subject="user-1", require=("exp", "iat", "jti")) == claims
    assert pyjwt.decode(token, fixture.public, algorithms=[alg], issuer=ISSUER, audience=AUDIENCE,
                        subject="user-1") == claims
    registry = jrfc_jwt.JWTClaimsRegistry(iss={"essential": True, "value": ISSUER},
                                          aud={"essential": True, "value": AUDIENCE},
                                          sub={"essential": True, "value": "user-1"})
    assert joserfc_accepts(token, fixture.joserfc_public, [alg], registry)


# --- 3. signatures: exact formats ---------------------------------------------------------------------------

@pytest.mark.parametrize(("alg", "curve_bytes"), [("ES256", 32), ("ES384", 48), ("ES512", 66)])
@FEW
@given(data=st.binary(max_size=300))
def test_ecdsa_signatures_are_raw_r_s_of_exact_length(alg: str, curve_bytes: int, data: bytes) -> None:
    # RFC 7518 §3.4: the JWS signature is R || S, each left-padded to the curve size, never DER.
    fixture = FIXTURES[alg]
    signature = jwa.sign(alg, fixture.signing_key(), data)
    assert len(signature) == 2 * curve_bytes
    r = int.from_bytes(signature[:curve_bytes], "big")
    s = int.from_bytes(signature[curve_bytes:], "big")
    hash_alg = {"ES256": hashes.SHA256(), "ES384": hashes.SHA384(), "ES512": hashes.SHA512()}[alg]
    fixture.public.verify(encode_dss_signature(r, s), data, ec.ECDSA(hash_alg))   # raises if wrong
    assert jwa.verify(alg, fixture.verifying_key(), data, signature)

    # A DER signature over the same bytes (what a naive implementation emits) is refused: exact lengths (R10).
    der = fixture.private.sign(data, ec.ECDSA(hash_alg))
    assert not jwa.verify(alg, fixture.verifying_key(), data, der)


def test_es256_token_signature_is_64_bytes_and_pyjwt_agrees() -> None:
    fixture = FIXTURES["ES256"]
    token = jwtkit.encode(with_exp({}), fixture.signing_key())
    signature = unb64(token.rsplit(".", 1)[1])
    assert len(signature) == 64
    assert pyjwt.decode(token, fixture.public, algorithms=["ES256"])["exp"] > 0


def test_ecdsa_zero_signature_refused_by_all() -> None:
    # CVE-2022-21449 ("psychic signatures"): r = s = 0 must never verify.
    fixture = FIXTURES["ES256"]
    token = compact({"alg": "ES256", "typ": "JWT"}, with_exp({"sub": "x"}), lambda _: bytes(64))
    assert jwtkit_refusal(token, fixture.verifying_key()) == "signature"
    assert not pyjwt_accepts(token, fixture.public, ["ES256"])
    assert not joserfc_accepts(token, fixture.joserfc_public, ["ES256"])


def _pss(salt_length: int) -> padding.PSS:
    return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=salt_length)


@FEW
@given(data=st.binary(max_size=300))
def test_pss_interoperates_both_ways(data: bytes) -> None:
    # RFC 7518 §3.5: MGF1 with the same hash, salt as long as the hash output (32 octets for PS256).
    fixture = FIXTURES["PS256"]
    ours = jwa.sign("PS256", fixture.signing_key(), data)
    assert len(ours) == 256
    fixture.public.verify(ours, data, _pss(32), hashes.SHA256())          # raises if not RFC 7518 PSS
    theirs = RSA_PRIVATE.sign(data, _pss(32), hashes.SHA256())
    assert jwa.verify("PS256", fixture.verifying_key(), data, theirs)
    # PKCS#1 v1.5 over the same bytes is a different primitive: refused under PS256.
    assert not jwa.verify("PS256", fixture.verifying_key(), data,
                          RSA_PRIVATE.sign(data, padding.PKCS1v15(), hashes.SHA256()))


def test_pss_with_maximum_salt_refused_by_all() -> None:
    # Salt length is fixed to the hash length, never AUTO (R10); PyJWT and joserfc fix it too.
    fixture = FIXTURES["PS256"]
    token = compact({"alg": "PS256"}, with_exp({"sub": "x"}),
                    lambda si: RSA_PRIVATE.sign(si, _pss(padding.PSS.MAX_LENGTH), hashes.SHA256()))
    assert jwtkit_refusal(token, fixture.verifying_key()) == "signature"
    assert not pyjwt_accepts(token, fixture.public, ["PS256"])
    assert not joserfc_accepts(token, fixture.joserfc_public, ["PS256"])


def test_pyjwt_pss_tokens_verify_and_ours_verify_with_cryptography() -> None:
    fixture = FIXTURES["PS256"]
    claims = with_exp({"sub": "pss"})
    theirs = pyjwt.encode(claims, RSA_PRIVATE, algorithm="PS256")
    assert jwtkit.decode(theirs, fixture.verifying_key()) == claims
    token = jwtkit.encode(claims, fixture.signing_key())
    signing_input, signature = token.rsplit(".", 1)
    fixture.public.verify(unb64(signature), signing_input.encode(), _pss(32), hashes.SHA256())
    with pytest.raises(InvalidSignature):   # and it is not a maximum-salt signature
        fixture.public.verify(unb64(signature), signing_input.encode(), _pss(222), hashes.SHA256())


# --- 4. rejections (issue 2 §4) -----------------------------------------------------------------------------

SIGNED_ALGS = ["HS256", "RS256", "PS256", "ES256", "ES512", "EdDSA"]


@pytest.mark.parametrize("alg", SIGNED_ALGS)
@FEW
@given(claims=extra_claims, position=st.integers(min_value=0), bit=st.integers(0, 7))
def test_tampered_signature_refused_by_all(alg: str, claims: dict[str, Any], position: int, bit: int) -> None:
    fixture = FIXTURES[alg]
    token = jwtkit.encode(with_exp(claims), fixture.signing_key())
    signing_input, segment = token.rsplit(".", 1)
    signature = bytearray(unb64(segment))
    signature[position % len(signature)] ^= 1 << bit
    tampered = f"{signing_input}.{b64(bytes(signature))}"       # still canonical base64url: only bits changed
    assert jwtkit_refusal(tampered, fixture.verifying_key()) == "signature"
    assert not pyjwt_accepts(tampered, fixture.public, [alg])
    assert not joserfc_accepts(tampered, fixture.joserfc_public, [alg])


@pytest.mark.parametrize("alg", SIGNED_ALGS)
@FEW
@given(claims=extra_claims)
def test_tampered_payload_refused_by_all(alg: str, claims: dict[str, Any]) -> None:
    fixture = FIXTURES[alg]
    token = jwtkit.encode(with_exp(claims), fixture.signing_key())
    header, _, signature = token.split(".")
    forged = f"{header}.{b64(json.dumps(with_exp({**claims, 'admin': True})).encode())}.{signature}"
    assert jwtkit_refusal(forged, fixture.verifying_key()) == "signature"
    assert not pyjwt_accepts(forged, fixture.public, [alg])
    assert not joserfc_accepts(forged, fixture.joserfc_public, [alg])


def test_wrong_key_refused_by_all() -> None:
    claims = with_exp({"sub": "x"})
    other_secret = b"another secret of at least 32 bytes!!"
    token = pyjwt.encode(claims, other_secret, algorithm="HS256", headers={"kid": "k"})
    fixture = FIXTURES["HS256"]
    assert jwtkit_refusal(token, fixture.verifying_key("k")) == "signature"
    assert not pyjwt_accepts(token, fixture.public, ["HS256"])
    assert not joserfc_accepts(token, fixture.joserfc_public, ["HS256"])

    token = pyjwt.encode(claims, OTHER_RSA_PRIVATE, algorithm="RS256", headers={"kid": "k"})
    fixture = FIXTURES["RS256"]
    assert jwtkit_refusal(token, fixture.verifying_key("k")) == "signature"
    assert jwtkit_refusal(token, KeySet([fixture.verifying_key("k")])) == "signature"
    # R9: a kid that no configured key has is refused, even when a key would verify the signature.
    ours = jwtkit.encode(claims, fixture.signing_key("k"))
    assert jwtkit_refusal(ours, KeySet([fixture.verifying_key("other")])) == "key"
    assert not pyjwt_accepts(token, fixture.public, ["RS256"])
    assert not joserfc_accepts(token, fixture.joserfc_public, ["RS256"])


@pytest.mark.parametrize("spelling", ["none", "None", "NONE", "nOnE"])
def test_alg_none_refused_by_all(spelling: str) -> None:
    # RFC 8725 §3.1, R4: `none` is never verifiable, in any case, with or without a signature segment.
    fixture = FIXTURES["HS256"]
    claims = with_exp({"sub": "admin"})
    unsigned = compact({"alg": spelling, "typ": "JWT"}, claims, lambda _: b"")
    with_junk_signature = compact({"alg": spelling, "typ": "JWT"}, claims, lambda _: b"\x01" * 32)
    # An empty signature segment is malformed before `alg` is even read (R2: header and signature non-empty).
    assert jwtkit_refusal(unsigned, fixture.verifying_key()) == "malformed"
    assert jwtkit_refusal(with_junk_signature, fixture.verifying_key()) == "algorithm"
    for token in (unsigned, with_junk_signature):
        assert not pyjwt_accepts(token, fixture.public, ["HS256"])
        assert not joserfc_accepts(token, fixture.joserfc_public, ["HS256"])
        # Allow-listing "none" does not help (R4): jwtkit has no key that could be bound to it.
        with pytest.raises(JWTError):
            jwtkit.decode(token, fixture.verifying_key(), algorithms=["none", spelling])


def test_hmac_rsa_key_confusion_refused_by_all() -> None:
    # PyJWT CVE-2022-29217 / python-jose CVE-2024-33663: an HS256 token whose MAC key is the RSA public key's
    # PEM text, presented to a verifier that holds that public key. The key is bound to RS256 (R5).
    fixture = FIXTURES["RS256"]
    token = compact({"alg": "HS256", "typ": "JWT"}, with_exp({"sub": "admin"}),
                    lambda si: hmac.digest(fixture.public_pem, si, "sha256"))
    assert jwtkit_refusal(token, fixture.verifying_key()) == "algorithm"
    assert jwtkit_refusal(token, fixture.verifying_key(), algorithms=["HS256", "RS256"]) == "algorithm"
    assert jwtkit_refusal(token, KeySet([fixture.verifying_key()])) == "algorithm"
    assert not pyjwt_accepts(token, fixture.public_pem, ["RS256"])
    assert not pyjwt_accepts(token, fixture.public_pem, ["HS256", "RS256"])
    assert not joserfc_accepts(token, fixture.joserfc_public, ["RS256"])
    assert not joserfc_accepts(token, fixture.joserfc_public, ["HS256", "RS256"])


@pytest.mark.parametrize(("signed_as", "relabelled", "key_alg"), [
    ("RS256", "PS256", "RS256"),    # PKCS#1 v1.5 signature presented as PSS
    ("RS256", "RS512", "RS256"),    # a different hash, same key
    ("ES256", "ES384", "ES256"),    # curve/alg mismatch
    ("HS256", "HS512", "HS256"),
])
def test_alg_mismatch_refused_by_all(signed_as: str, relabelled: str, key_alg: str) -> None:
    fixture = FIXTURES[key_alg]
    token = jwtkit.encode(with_exp({"sub": "x"}), fixture.signing_key())
    _, payload, signature = token.split(".")
    forged = f"{b64(json.dumps({'alg': relabelled, 'typ': 'JWT'}).encode())}.{payload}.{signature}"
    assert jwtkit_refusal(forged, fixture.verifying_key()) == "algorithm"
    assert not pyjwt_accepts(forged, fixture.public, [key_alg])
    assert not joserfc_accepts(forged, fixture.joserfc_public, [key_alg])


def test_algorithms_argument_narrows_the_key() -> None:
    fixture = FIXTURES["ES256"]
    token = jwtkit.encode(with_exp({}), fixture.signing_key())
    assert jwtkit_refusal(token, fixture.verifying_key(), algorithms=["RS256"]) == "algorithm"
    assert not pyjwt_accepts(token, fixture.public, ["RS256"])
    assert not joserfc_accepts(token, fixture.joserfc_public, ["RS256"])


@FEW
@given(ago=st.integers(min_value=1, max_value=10**8), claims=extra_claims)
def test_expired_refused_by_all(ago: int, claims: dict[str, Any]) -> None:
    fixture = FIXTURES["HS256"]
    now = int(time.time())
    token = jwtkit.encode({**claims, "exp": now - ago}, fixture.signing_key())
    assert jwtkit_refusal(token, fixture.verifying_key(), now=now) == "expired"
    assert jwtkit_refusal(token, fixture.verifying_key()) == "expired"
    assert not pyjwt_accepts(token, fixture.public, ["HS256"])
    assert not joserfc_accepts(token, fixture.joserfc_public, ["HS256"])


def test_expiry_boundary_and_leeway() -> None:
    # R12: reject when now >= exp + leeway. joserfc draws the line in the same place (value <= now - leeway).
    fixture = FIXTURES["HS256"]
    exp = 1_900_000_000
    token = jwtkit.encode({"exp": exp}, fixture.signing_key())
    assert jwtkit_refusal(token, fixture.verifying_key(), now=exp) == "expired"
    assert jwtkit_refusal(token, fixture.verifying_key(), now=exp - 1) is None
    assert jwtkit_refusal(token, fixture.verifying_key(), now=exp + 9, leeway=10) is None
    assert jwtkit_refusal(token, fixture.verifying_key(), now=exp + 10, leeway=10) == "expired"
    assert not joserfc_accepts(token, fixture.joserfc_public, ["HS256"], jrfc_jwt.JWTClaimsRegistry(now=exp))
    assert joserfc_accepts(token, fixture.joserfc_public, ["HS256"], jrfc_jwt.JWTClaimsRegistry(now=exp - 1))
    # A fractional exp is compared as a number, never truncated (PyJWT 1.x truncated with int()).
    token = jwtkit.encode({"exp": exp + 0.5}, fixture.signing_key())
    assert jwtkit_refusal(token, fixture.verifying_key(), now=exp + 0.25) is None
    assert jwtkit_refusal(token, fixture.verifying_key(), now=exp + 0.5) == "expired"


@FEW
@given(ahead=st.integers(min_value=30, max_value=10**8))
def test_nbf_in_future_refused_by_all(ahead: int) -> None:
    # `ahead` starts at 30 s so that PyJWT's own wall clock cannot drift past it during the test.
    fixture = FIXTURES["HS256"]
    now = int(time.time())
    token = jwtkit.encode({"exp": now + 10**9, "nbf": now + ahead}, fixture.signing_key())
    assert jwtkit_refusal(token, fixture.verifying_key(), now=now) == "not_yet_valid"
    assert jwtkit_refusal(token, fixture.verifying_key(), now=now + ahead) is None
    assert not pyjwt_accepts(token, fixture.public, ["HS256"])
    assert not joserfc_accepts(token, fixture.joserfc_public, ["HS256"])


@FEW
@given(ahead=st.integers(min_value=30, max_value=10**8))
def test_iat_in_future_refused_by_all(ahead: int) -> None:
    fixture = FIXTURES["HS256"]
    now = int(time.time())
    token = jwtkit.encode({"exp": now + 10**9, "iat": now + ahead}, fixture.signing_key())
    assert jwtkit_refusal(token, fixture.verifying_key(), now=now) == "issued_in_future"
    assert not pyjwt_accepts(token, fixture.public, ["HS256"])
    assert not joserfc_accepts(token, fixture.joserfc_public, ["HS256"])


@pytest.mark.parametrize("value", ["1900000000", True, None, [1900000000], {"t": 1}])
def test_numeric_dates_must_be_numbers(value: Any) -> None:
    # R12: never coerce strings, never take bool for a number. joserfc agrees throughout. PyJWT coerces with
    # int(), so it takes the numeric string "1900000000" as a date (lenient: asserted for the others only).
    fixture = FIXTURES["HS256"]
    token = compact({"alg": "HS256"}, {"exp": value}, _hs256_sign)
    assert jwtkit_refusal(token, fixture.verifying_key()) == "claim"
    if not isinstance(value, str):
        assert not pyjwt_accepts(token, fixture.public, ["HS256"])
    assert not joserfc_accepts(token, fixture.joserfc_public, ["HS256"])


@FEW
@given(expected=st.text(min_size=1, max_size=30), actual=st.text(max_size=30))
def test_wrong_issuer_refused_by_all(expected: str, actual: str) -> None:
    if expected == actual:
        actual += "x"
    fixture = FIXTURES["HS256"]
    token = jwtkit.encode(with_exp({"iss": actual}), fixture.signing_key())
    assert jwtkit_refusal(token, fixture.verifying_key(), issuer=expected) == "claim"
    assert not pyjwt_accepts(token, fixture.public, ["HS256"], issuer=expected)
    registry = jrfc_jwt.JWTClaimsRegistry(iss={"essential": True, "value": expected})
    assert not joserfc_accepts(token, fixture.joserfc_public, ["HS256"], registry)


def test_issuer_is_exact_and_required_when_asked_for() -> None:
    fixture = FIXTURES["HS256"]
    registry = jrfc_jwt.JWTClaimsRegistry(iss={"essential": True, "value": ISSUER})
    for claims in ({"iss": ISSUER + "/"}, {"iss": ISSUER.upper()}, {"iss": [ISSUER]}, {}):
        token = compact({"alg": "HS256"}, with_exp(claims), _hs256_sign)
        assert jwtkit_refusal(token, fixture.verifying_key(), issuer=ISSUER) == "claim", claims
        assert not pyjwt_accepts(token, fixture.public, ["HS256"], issuer=ISSUER), claims
        assert not joserfc_accepts(token, fixture.joserfc_public, ["HS256"], registry), claims


@FEW
@given(audience=st.text(min_size=1, max_size=20),
       token_audience=st.text(max_size=20) | st.lists(st.text(max_size=20), min_size=1, max_size=4))
def test_wrong_audience_refused_by_all(audience: str, token_audience: str | list[str]) -> None:
    listed = [token_audience] if isinstance(token_audience, str) else token_audience
    if audience in listed:
        return
    fixture = FIXTURES["HS256"]
    token = jwtkit.encode(with_exp({"aud": token_audience}), fixture.signing_key())
    assert jwtkit_refusal(token, fixture.verifying_key(), audience=audience) == "claim"
    assert not pyjwt_accepts(token, fixture.public, ["HS256"], audience=audience)
    registry = jrfc_jwt.JWTClaimsRegistry(aud={"essential": True, "value": audience})
    assert not joserfc_accepts(token, fixture.joserfc_public, ["HS256"], registry)


def test_audience_presence_rules() -> None:
    fixture = FIXTURES["HS256"]
    # R14 / RFC 7519 §4.1.3: a token that carries `aud` is refused when the verifier asked for no audience.
    # PyJWT agrees. joserfc does not: its claims registry checks `aud` only when told to (lenient: no assert).
    with_aud = jwtkit.encode(with_exp({"aud": AUDIENCE}), fixture.signing_key())
    assert jwtkit_refusal(with_aud, fixture.verifying_key()) == "claim"
    assert not pyjwt_accepts(with_aud, fixture.public, ["HS256"])
    # A token without `aud` is refused when an audience is asked for: all three agree.
    without_aud = jwtkit.encode(with_exp({}), fixture.signing_key())
    assert jwtkit_refusal(without_aud, fixture.verifying_key(), audience=AUDIENCE) == "claim"
    assert not pyjwt_accepts(without_aud, fixture.public, ["HS256"], audience=AUDIENCE)
    registry = jrfc_jwt.JWTClaimsRegistry(aud={"essential": True, "value": AUDIENCE})
    assert not joserfc_accepts(without_aud, fixture.joserfc_public, ["HS256"], registry)
    # An empty audience list names nobody (R14: a non-empty list).
    empty = compact({"alg": "HS256"}, with_exp({"aud": []}), _hs256_sign)
    assert jwtkit_refusal(empty, fixture.verifying_key(), audience=AUDIENCE) == "claim"
    assert not pyjwt_accepts(empty, fixture.public, ["HS256"], audience=AUDIENCE)


# Non-canonical base64url (R2, RFC 7515 §2). jwtkit refuses every variant with code "malformed". The peers
# refuse most variants too; for the ones a peer accepts, only jwtkit's refusal is asserted (see
# NONCANONICAL_PEER_LENIENT).

def _hs256_token(claims: Mapping[str, Any] | None = None, kid: str | None = None) -> str:
    return jwtkit.encode(with_exp(dict(claims or {"sub": "canonical"})), FIXTURES["HS256"].signing_key(kid))


def _find_token_with(predicate: Callable[[str], bool]) -> str:
    for n in range(2000):
        token = _hs256_token({"sub": "canonical", "n": n})
        if predicate(token):
            return token
    raise AssertionError("no token found")


def _padded(token: str) -> str:
    # A signature of 32 octets is 43 characters: canonical form has no '=' but a padded one has one.
    header, payload, signature = token.split(".")
    return f"{header}.{payload}.{signature}="


def _standard_alphabet(token: str) -> str:
    token = _find_token_with(lambda t: "-" in t.rsplit(".", 1)[1] or "_" in t.rsplit(".", 1)[1])
    signing_input, signature = token.rsplit(".", 1)
    return f"{signing_input}.{signature.replace('-', '+').replace('_', '/')}"


def _unused_bits(token: str) -> str:
    # 32 octets in 43 characters leave 2 unused low bits in the last character; set one of them.
    signing_input, signature = token.rsplit(".", 1)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(signature[-1])
    return f"{signing_input}.{signature[:-1]}{alphabet[last | 1]}"


def _whitespace(token: str) -> str:
    header, payload, signature = token.split(".")
    return f"{header}.{payload[:4]} {payload[4:]}.{signature}"


def _newline(token: str) -> str:
    header, payload, signature = token.split(".")
    return f"{header}.{payload}.{signature[:10]}\n{signature[10:]}"


def _junk_character(token: str) -> str:
    header, payload, signature = token.split(".")
    return f"{header}.{payload}.{signature[:10]}!{signature[10:]}"


def _padded_header(token: str) -> str:
    # {"alg":"HS256","typ":"JWT"} encodes to a multiple of 4 characters; with kid "k" it does not.
    header, payload, signature = _hs256_token(kid="k").split(".")
    assert len(header) % 4 != 0
    return f"{header}{'=' * (-len(header) % 4)}.{payload}.{signature}"


NONCANONICAL = {
    "padding on signature": _padded,
    "padding on header": _padded_header,
    "standard alphabet '+' '/'": _standard_alphabet,
    "non-zero unused bits": _unused_bits,
    "space inside a segment": _whitespace,
    "newline inside a segment": _newline,
    "character outside the alphabet": _junk_character,
}
# Variants a peer accepts (observed with PyJWT 2.15.1 / joserfc 1.8.0), where jwtkit is deliberately stricter.
# PyJWT re-adds padding before decoding, so it takes a signature segment that carries '=' padding.
NONCANONICAL_PEER_LENIENT: dict[str, set[str]] = {
    "pyjwt": {"padding on signature"},
    "joserfc": set(),
}


@pytest.mark.parametrize("variant", sorted(NONCANONICAL))
def test_noncanonical_base64_refused(variant: str) -> None:
    fixture = FIXTURES["HS256"]
    token = NONCANONICAL[variant](_hs256_token())
    assert jwtkit_refusal(token, fixture.verifying_key()) == "malformed"
    if variant not in NONCANONICAL_PEER_LENIENT["pyjwt"]:
        assert not pyjwt_accepts(token, fixture.public, ["HS256"])
    if variant not in NONCANONICAL_PEER_LENIENT["joserfc"]:
        assert not joserfc_accepts(token, fixture.joserfc_public, ["HS256"])


# Duplicate member names (R3, R11; RFC 7515 §4 and RFC 7519 §4: a parser MUST reject them or use a
# lexically last-member-wins parser; jwtkit rejects). Both peers parse with json.loads, which keeps the last
# duplicate, so they accept these tokens: jwtkit is stricter on purpose, and only its refusal is asserted.

@pytest.mark.parametrize(("where", "header", "payload", "code"), [
    ("header alg", b'{"alg":"HS256","alg":"HS256"}', None, "malformed"),
    ("header kid", b'{"alg":"HS256","kid":"a","kid":"b"}', None, "malformed"),
    ("payload exp", None, b'{"exp":1,"exp":4102444800}', "malformed"),
    ("payload sub", None, b'{"exp":4102444800,"sub":"alice","sub":"admin"}', "malformed"),
])
def test_duplicate_json_names_refused(where: str, header: bytes | None, payload: bytes | None,
                                      code: str) -> None:
    fixture = FIXTURES["HS256"]
    token = compact(header or {"alg": "HS256"}, payload or with_exp({"sub": "x"}), _hs256_sign)
    assert jwtkit_refusal(token, fixture.verifying_key()) == code


# --- 5. mutations and malleability -------------------------------------------------------------------------

B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@MANY
@given(data=st.data())
def test_every_single_edit_of_a_token_is_refused(data: st.DataObject) -> None:
    # Canonical base64url leaves no slack (R2): changing, inserting or deleting any one character breaks the
    # encoding or changes the signed bytes or the signature, so no edited token may verify; jwtkit raises only
    # JWTError (R16). The peers must refuse too, except for PyJWT's known padding leniency.
    fixture = FIXTURES["HS256"]
    token = jwtkit.encode(with_exp(data.draw(extra_claims, label="claims")), fixture.signing_key())
    position = data.draw(st.integers(0, len(token) - 1), label="position")
    edit = data.draw(st.sampled_from(["replace", "insert", "delete"]), label="edit")
    character = data.draw(st.sampled_from(B64URL + ".=+/ \n~\x00é"), label="character")
    if edit == "replace":
        mutated = token[:position] + character + token[position + 1:]
    elif edit == "insert":
        mutated = token[:position] + character + token[position:]
    else:
        mutated = token[:position] + token[position + 1:]
    if mutated == token:
        return
    assert jwtkit_refusal(mutated, fixture.verifying_key()) is not None
    assert not joserfc_accepts(mutated, fixture.joserfc_public, ["HS256"])
    if not mutated.endswith("="):
        assert not pyjwt_accepts(mutated, fixture.public, ["HS256"])


def test_ecdsa_signatures_are_malleable_everywhere() -> None:
    # R18: (r, n - s) is a second valid signature over the same bytes, so the token *string* is not unique.
    # All three libraries accept both forms; replay and revocation lists must key on `jti`, not the token.
    fixture = FIXTURES["ES256"]
    n = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    claims = with_exp({"jti": "malleable"})
    token = jwtkit.encode(claims, fixture.signing_key())
    signing_input, segment = token.rsplit(".", 1)
    signature = unb64(segment)
    s = int.from_bytes(signature[32:], "big")
    twin = f"{signing_input}.{b64(signature[:32] + (n - s).to_bytes(32, 'big'))}"
    assert twin != token
    assert jwtkit.decode(twin, fixture.verifying_key()) == claims
    assert pyjwt_accepts(twin, fixture.public, ["ES256"])
    assert joserfc_accepts(twin, fixture.joserfc_public, ["ES256"])


# Observed peers: both refuse `crit`; PyJWT ignores non-critical `b64` and `zip`, joserfc ignores `b64`
# (lenient: for those only jwtkit's refusal is asserted).
@pytest.mark.parametrize(("extra", "lenient_peers"), [
    ({"crit": ["exp"]}, set()),                 # R7: jwtkit understands no extension: any `crit` is refused
    ({"crit": ["b64"], "b64": False}, set()),
    ({"b64": True}, {"pyjwt", "joserfc"}),     # RFC 7797 §7: a JWT never carries `b64`, whatever its value
    ({"zip": "DEF"}, {"pyjwt"}),               # R7: never decompress
])
def test_critical_and_unsupported_header_members_refused(extra: dict[str, Any],
                                                         lenient_peers: set[str]) -> None:
    fixture = FIXTURES["HS256"]
    token = compact({"alg": "HS256", **extra}, with_exp({"sub": "x"}), _hs256_sign)
    assert jwtkit_refusal(token, fixture.verifying_key()) == "header"
    if "pyjwt" not in lenient_peers:
        assert not pyjwt_accepts(token, fixture.public, ["HS256"])
    if "joserfc" not in lenient_peers:
        assert not joserfc_accepts(token, fixture.joserfc_public, ["HS256"])


# --- 6. jwtkit accepts only what the peers accept ----------------------------------------------------------

# Members jwtkit reads get any JSON value. The key-locating members it ignores (R8) get well-typed values
# pointing at an attacker: joserfc type-checks those (it refuses `"jku": null`, which jwtkit ignores), and it
# refuses unregistered members outright (strict_check_header), which RFC 7515 §4 and R7 say to ignore.
ATTACKER_JWK = {"kty": "oct", "k": b64(b"attacker secret of 32 bytes ....")}
header_extras = st.fixed_dictionaries({}, optional={
    **{name: json_value for name in ("typ", "kid", "cty", "crit", "b64", "zip")},
    "jku": st.just("https://attacker.example/jwks.json"),
    "x5u": st.just("https://attacker.example/cert.pem"),
    "jwk": st.just(ATTACKER_JWK),
})
CLAIM_NAMES = ["exp", "nbf", "iat", "iss", "aud", "sub", "jti", "x"]
# Registered claims get awkward values: wrong types, far past and far future dates, floats, huge integers.
claim_values = (json_value | st.integers(min_value=-(2**70), max_value=2**70)
                | st.sampled_from([0, 1, 2**31, 4102444800, 4102444800.5, -1.5, 1e300, -1e300, "", [], [""]]))


@PROPERTY
@given(
    extra_header=header_extras,
    claims=st.dictionaries(st.sampled_from(CLAIM_NAMES) | claim_names, claim_values, max_size=6),
)
def test_jwtkit_accepts_only_what_both_peers_accept(extra_header: dict[str, Any],
                                                    claims: dict[str, Any]) -> None:
    # Correctly signed tokens with random header members and random registered-claim values: jwtkit is the
    # strictest of the three, so whatever it accepts, PyJWT and joserfc accept too, with the same claims; and
    # whatever it refuses, it refuses with a JWTError (R16), which jwtkit_refusal enforces.
    fixture = FIXTURES["HS256"]
    token = compact({"alg": "HS256", **extra_header}, claims, _hs256_sign)
    try:
        decoded = jwtkit.decode(token, fixture.verifying_key(), require=())
    except JWTError:
        return
    assert decoded == claims
    assert pyjwt.decode(token, fixture.public, algorithms=["HS256"]) == claims
    assert joserfc_accepts(token, fixture.joserfc_public, ["HS256"])


# --- 7. ML-DSA against dilithium-py, an independent FIPS 204 implementation ---------------------------------

# PyJWT 2.15 and joserfc 1.8 have no ML-DSA (RFC 9964). dilithium-py is a pure Python FIPS 204 implementation
# that shares no code with cryptography's (OpenSSL's), so agreement here is agreement of two implementations.
DILITHIUM = {"ML-DSA-44": ML_DSA_44, "ML-DSA-65": ML_DSA_65, "ML-DSA-87": ML_DSA_87}
MLDSA_ALGS = sorted(DILITHIUM)
seeds = st.binary(min_size=32, max_size=32)


def _akp(alg: str, seed: bytes, public: bytes, private: bool = True) -> Key:
    jwk = {"kty": "AKP", "alg": alg, "pub": b64(public), "kid": "pq"}
    return Key.from_jwk({**jwk, "priv": b64(seed)} if private else jwk)


@FEW
@given(seed=seeds, alg=st.sampled_from(MLDSA_ALGS))
def test_both_implementations_derive_the_same_key_from_a_seed(seed: bytes, alg: str) -> None:
    # RFC 9964's priv is the seed: from_jwk derives the public key with cryptography and refuses a pub that
    # differs, so accepting dilithium-py's pub is the agreement.
    public, _ = DILITHIUM[alg].key_derive(seed)
    key = _akp(alg, seed, public)
    assert unb64(key.to_jwk()["pub"]) == public
    other, _ = DILITHIUM[alg].key_derive(bytes(b ^ 1 for b in seed))
    with pytest.raises(JWTError):
        _akp(alg, seed, other)


@FEW
@given(seed=seeds, alg=st.sampled_from(MLDSA_ALGS), claims=extra_claims, deterministic=st.booleans())
def test_dilithium_signs_jwtkit_verifies(seed: bytes, alg: str, claims: dict[str, Any],
                                         deterministic: bool) -> None:
    public, expanded = DILITHIUM[alg].key_derive(seed)
    claims = with_exp(claims)
    token = compact({"alg": alg, "kid": "pq", "typ": "JWT"}, claims,
                    lambda data: DILITHIUM[alg].sign(expanded, data, deterministic=deterministic))
    # an ML-DSA-87 signature alone takes 6170 of the default 8192 characters (R1): random claims may not fit
    assert jwtkit.decode(token, _akp(alg, seed, public, private=False), max_length=len(token)) == claims
    # ... and any other key, or another parameter set's alg, refuses it
    other_seed = bytes(b ^ 0xFF for b in seed)
    other_key = _akp(alg, other_seed, DILITHIUM[alg].key_derive(other_seed)[0], private=False)
    assert jwtkit_refusal(token, other_key, max_length=len(token)) == "signature"
    for other in MLDSA_ALGS:
        if other != alg:
            assert jwtkit_refusal(token, KeySet([_akp(alg, seed, public, private=False)]),
                                  algorithms=[other], max_length=len(token)) == "algorithm"


@FEW
@given(seed=seeds, alg=st.sampled_from(MLDSA_ALGS), claims=extra_claims)
def test_jwtkit_signs_dilithium_verifies(seed: bytes, alg: str, claims: dict[str, Any]) -> None:
    public, _ = DILITHIUM[alg].key_derive(seed)
    token = jwtkit.encode(with_exp(claims), _akp(alg, seed, public))
    signing_input, _, signature = token.rpartition(".")
    assert len(unb64(signature)) == {"ML-DSA-44": 2420, "ML-DSA-65": 3309, "ML-DSA-87": 4627}[alg]
    assert DILITHIUM[alg].verify(public, signing_input.encode(), unb64(signature))  # the empty context
    assert not DILITHIUM[alg].verify(public, signing_input.encode(), unb64(signature), ctx=b"jwtkit")


@pytest.mark.parametrize("alg", MLDSA_ALGS)
def test_a_signature_with_a_context_is_refused(alg: str) -> None:
    # RFC 9964: the context string is empty; a signature over the same input with any other context is not a
    # JWS signature.
    seed = hashlib.sha256(alg.encode()).digest()
    public, expanded = DILITHIUM[alg].key_derive(seed)
    claims = with_exp({"sub": "x"})
    token = compact({"alg": alg}, claims,
                    lambda data: DILITHIUM[alg].sign(expanded, data, ctx=b"ctx", deterministic=True))
    assert jwtkit_refusal(token, _akp(alg, seed, public, private=False)) == "signature"
