"""Hypothesis properties: round trips hold, and any change to a token's bytes is refused with a JWTError."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jwtkit import JWTError, Key, decode, decode_unverified, encode
from jwtkit._jose import base64url, strictjson

from ._tokens import NOW

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KEYS = {
    alg: Key.generate(alg, kid=f"k-{alg}")
    for alg in ("HS256", "HS512", "RS256", "PS256", "ES256", "ES512", "EdDSA", "ML-DSA-44", "ML-DSA-87")
}

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
claim_sets = st.dictionaries(
    st.text(max_size=10).filter(lambda name: name not in ("exp", "nbf", "iat", "iss", "sub", "aud", "jti")),
    json_values,
    max_size=6,
).map(lambda claims: {**claims, "exp": NOW + 60})


@SETTINGS
@given(claims=claim_sets, alg=st.sampled_from(sorted(KEYS)))
def test_round_trip(claims: dict[str, Any], alg: str) -> None:
    key = KEYS[alg]
    token = encode(claims, key)
    assert decode(token, key, now=NOW) == claims
    verifier = key if key.is_symmetric else key.public()
    assert decode(token.encode(), verifier, now=NOW) == claims
    header, unverified = decode_unverified(token)
    assert unverified == claims and header == {"alg": alg, "kid": f"k-{alg}", "typ": "JWT"}


@SETTINGS
@given(data=st.data(), alg=st.sampled_from(sorted(KEYS)))
def test_any_byte_change_is_refused(data: st.DataObject, alg: str) -> None:
    key = KEYS[alg]
    token = encode({"sub": "alice", "exp": NOW + 60}, key).encode()
    position = data.draw(st.integers(0, len(token) - 1), label="position")
    replacement = data.draw(st.integers(0, 255).filter(lambda byte: byte != token[position]), label="byte")
    changed = token[:position] + bytes([replacement]) + token[position + 1 :]
    with pytest.raises(JWTError):
        decode(changed, key, now=NOW)


@SETTINGS
@given(data=st.data())
def test_insertions_and_deletions_are_refused(data: st.DataObject) -> None:
    key = KEYS["HS256"]
    token = encode({"sub": "alice", "exp": NOW + 60}, key)
    position = data.draw(st.integers(0, len(token)), label="position")
    if data.draw(st.booleans(), label="insert"):
        changed = (
            token[:position] + data.draw(st.text(min_size=1, max_size=3), label="text") + token[position:]
        )
    else:
        changed = token[:position] + token[position + 1 :]
    if changed != token:
        with pytest.raises(JWTError):
            decode(changed, key, now=NOW)


@SETTINGS
@given(token=st.text(max_size=300) | st.binary(max_size=300))
def test_arbitrary_input_raises_only_jwt_errors(token: str | bytes) -> None:
    with pytest.raises(JWTError):
        decode(token, KEYS["HS256"], now=NOW)
    with contextlib.suppress(JWTError):
        decode_unverified(token)


segments = st.lists(
    st.text(alphabet=base64url.ALPHABET.decode() + "=+/ .", max_size=60), min_size=3, max_size=3
)


@SETTINGS
@given(parts=segments)
def test_token_shaped_garbage_raises_only_jwt_errors(parts: list[str]) -> None:
    with pytest.raises(JWTError):
        decode(".".join(parts), KEYS["HS256"], now=NOW)


@SETTINGS
@given(data=st.binary(max_size=64))
def test_base64url_is_canonical(data: bytes) -> None:
    encoded = base64url.encode(data)
    assert base64url.decode(encoded) == data
    assert base64url.is_canonical(encoded)
    # Every other string that decodes to the same bytes is refused (R2).
    for suffix in (b"=", b"==", b" "):
        assert not base64url.is_canonical(encoded + suffix)


@SETTINGS
@given(text=st.text(alphabet="AQgwBCDE-_", min_size=1, max_size=12))
def test_is_canonical_agrees_with_reencoding(text: str) -> None:
    raw = text.encode()
    try:
        decoded = base64url.decode_canonical(raw) if len(raw) % 4 != 1 else None
    except ValueError:
        decoded = None
    expected = decoded is not None and base64url.encode(decoded) == raw
    assert base64url.is_canonical(raw) == expected


@SETTINGS
@given(value=st.dictionaries(st.text(max_size=8), json_values, max_size=5))
def test_strict_json_fast_and_slow_paths_agree(value: dict[str, Any]) -> None:
    import json

    compact = strictjson.dumps(value)
    spaced = json.dumps(value, indent=1, ensure_ascii=True).encode()
    assert strictjson.loads_object(compact) == value
    if spaced.count(b"{") + spaced.count(b"[") <= strictjson.MAX_DEPTH:
        assert strictjson.loads_object(spaced) == value


jwk_members = st.fixed_dictionaries(
    {},
    optional={
        "kty": st.sampled_from(["oct", "RSA", "EC", "OKP", "AKP", "x"]) | json_values,
        "alg": st.sampled_from([*sorted(KEYS), "ML-DSA-65", "none", "ES521"]) | json_values,
        "crv": st.sampled_from(["P-256", "P-384", "P-521", "Ed25519", "X25519"]) | json_values,
        "k": st.binary(max_size=70).map(lambda raw: base64url.encode(raw).decode()) | json_values,
        "x": st.binary(max_size=70).map(lambda raw: base64url.encode(raw).decode()) | json_values,
        "y": st.binary(max_size=70).map(lambda raw: base64url.encode(raw).decode()) | json_values,
        "d": st.binary(max_size=70).map(lambda raw: base64url.encode(raw).decode()) | json_values,
        # AKP: a public key of about the right size (1312 is ML-DSA-44's), or anything else
        "pub": st.binary(min_size=1300, max_size=1320).map(lambda raw: base64url.encode(raw).decode())
        | json_values,
        "priv": st.binary(max_size=40).map(lambda raw: base64url.encode(raw).decode()) | json_values,
        "n": st.binary(max_size=300).map(lambda raw: base64url.encode(raw).decode()) | json_values,
        "e": st.sampled_from(["AQAB", "Aw", "AA", ""]) | json_values,
        "use": st.sampled_from(["sig", "enc"]) | json_values,
        "key_ops": st.lists(st.sampled_from(["sign", "verify", "encrypt"]), max_size=3) | json_values,
        "kid": st.text(max_size=5) | json_values,
    },
)


@SETTINGS
@given(jwk=jwk_members)
def test_arbitrary_jwks_raise_only_jwt_errors(jwk: dict[str, Any]) -> None:
    try:
        key = Key.from_jwk(jwk)
    except JWTError:
        return
    assert key.alg in KEYS or key.alg.startswith(("HS", "RS", "PS", "ES"))
