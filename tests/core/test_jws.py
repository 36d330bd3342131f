"""Compact JWS and the JWT entry points: headers on encode, decode_unverified, the header cache."""

from __future__ import annotations

import base64
import json

import pytest

from jwtkit import JWTError, Key, decode, decode_unverified, encode
from jwtkit._jose import jws

from ._tokens import NOW, forge, hs_key

KEY = hs_key(kid="k1")
CLAIMS = {"sub": "alice", "exp": NOW + 60}


def header_of(token: str) -> dict[str, object]:
    return json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))  # type: ignore[no-any-return]


def test_encode_sets_alg_kid_and_typ() -> None:
    token = encode(CLAIMS, KEY)
    assert header_of(token) == {"alg": "HS256", "kid": "k1", "typ": "JWT"}
    assert header_of(encode(CLAIMS, hs_key())) == {"alg": "HS256", "typ": "JWT"}
    assert header_of(encode(CLAIMS, KEY, typ=None)) == {"alg": "HS256", "kid": "k1"}
    assert header_of(encode(CLAIMS, KEY, typ="at+jwt")) == {"alg": "HS256", "kid": "k1", "typ": "at+jwt"}


def test_encode_extra_headers() -> None:
    token = encode(CLAIMS, KEY, headers={"cty": "x", "x5t": "abc", "typ": "refresh+jwt"})
    assert header_of(token) == {"alg": "HS256", "kid": "k1", "typ": "refresh+jwt", "cty": "x", "x5t": "abc"}
    assert decode(token, KEY, now=NOW, typ="refresh+jwt") == CLAIMS
    assert header_of(encode(CLAIMS, hs_key(), headers={"kid": "chosen"}))["kid"] == "chosen"


@pytest.mark.parametrize(
    "headers",
    [
        {"alg": "none"},
        {"alg": "HS512"},
        {"kid": "other"},
        {"crit": ["x"]},
        {"b64": False},
        {"zip": "DEF"},
        {"typ": 1},
    ],
)
def test_encode_refuses_contradicting_or_refused_headers(headers: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        encode(CLAIMS, KEY, headers=headers)


def test_encode_accepts_any_mapping() -> None:
    from types import MappingProxyType

    assert decode(encode(MappingProxyType(CLAIMS), KEY), KEY, now=NOW) == CLAIMS


def test_encode_needs_a_key() -> None:
    with pytest.raises(TypeError):
        encode(CLAIMS, b"secret")  # type: ignore[arg-type]


def test_decode_accepts_str_bytes_bytearray_memoryview() -> None:
    token = encode(CLAIMS, KEY)
    for form in (token, token.encode(), bytearray(token.encode()), memoryview(token.encode())):
        assert decode(form, KEY, now=NOW) == CLAIMS  # type: ignore[arg-type]


def test_decode_accepts_str_subclasses() -> None:
    class Text(str):
        pass

    assert decode(Text(encode(CLAIMS, KEY)), KEY, now=NOW) == CLAIMS


def test_decode_unverified_returns_header_and_claims() -> None:
    token = encode(CLAIMS, KEY)
    assert decode_unverified(token) == ({"alg": "HS256", "kid": "k1", "typ": "JWT"}, CLAIMS)
    # Unverified: a wrong signature or unknown algorithm still shows, for debugging tools.
    assert decode_unverified(forge({"alg": "XX"}, CLAIMS, signature=b"sig"))[1] == CLAIMS


@pytest.mark.parametrize(
    ("token", "code"),
    [
        ("a" * 9000, "too_large"),
        ("a.b", "malformed"),
        (forge({"alg": "HS256"}, b"[]", signature=b"s"), "malformed"),
        (forge({"alg": 1}, CLAIMS, signature=b"s"), "header"),
        (forge({"alg": "none"}, CLAIMS, signature=b"s")[:-3] + ".", "malformed"),
    ],
)
def test_decode_unverified_still_refuses_malformed_tokens(token: str, code: str) -> None:
    with pytest.raises(JWTError) as caught:
        decode_unverified(token)
    assert caught.value.code == code


def test_decode_unverified_header_is_a_fresh_copy() -> None:
    token = encode(CLAIMS, KEY)
    header, _ = decode_unverified(token)
    header["alg"] = "none"
    assert decode(token, KEY, now=NOW) == CLAIMS


def test_verify_compact_returns_the_raw_payload() -> None:
    token = jws.sign_compact(b"\x00binary\xff", KEY)
    header, payload = jws.verify_compact(token, KEY)
    assert payload == b"\x00binary\xff" and header["kid"] == "k1"


def test_header_cache_is_bounded() -> None:
    for index in range(jws._HEADER_CACHE_SIZE * 2):
        token = encode(CLAIMS, KEY, headers={"n": index})
        assert decode(token, KEY, now=NOW) == CLAIMS
    assert len(jws._headers) <= jws._HEADER_CACHE_SIZE


def test_cached_header_is_still_checked_against_each_call() -> None:
    token = encode(CLAIMS, KEY, typ="at+jwt")
    assert decode(token, KEY, now=NOW, typ="at+jwt") == CLAIMS
    for options in ({"typ": "JWT"}, {"algorithms": ["HS512"]}):
        with pytest.raises(JWTError):
            decode(token, KEY, now=NOW, **options)  # type: ignore[arg-type]
    with pytest.raises(JWTError) as caught:
        decode(token, Key.from_secret(b"z" * 32, kid="k1"), now=NOW)
    assert caught.value.code == "signature"


def test_algorithms_must_not_be_a_string() -> None:
    with pytest.raises(TypeError):
        decode(encode(CLAIMS, KEY), KEY, algorithms="HS256", now=NOW)


def test_normalize_typ() -> None:
    assert jws.normalize_typ("JWT") == "application/jwt"
    assert jws.normalize_typ("application/AT+JWT") == "application/at+jwt"
    assert jws.normalize_typ("text/plain") == "text/plain"


@pytest.mark.parametrize(("alg", "signature_chars"), [("ML-DSA-44", 3227), ("ML-DSA-65", 4412),
                                                       ("ML-DSA-87", 6170)])
def test_ml_dsa_tokens_fit_the_default_max_length_with_room_to_spare(alg: str, signature_chars: int) -> None:
    # R1: the 8192 default holds an ML-DSA-87 token with an access token's claims; its signature alone takes
    # 6170 characters, so a token whose header and payload pass about 2000 needs a larger max_length.
    key = Key.generate(alg, kid="k" * 43)
    claims = {"iss": "https://auth.example.com", "sub": "user-8c1f2a", "aud": "api", "iat": NOW,
              "exp": NOW + 60, "jti": "f" * 32, "sid": "s" * 21, "roles": ["admin", "billing"]}
    token = encode(claims, key, typ="at+jwt")
    assert len(token.rpartition(".")[2]) == signature_chars
    assert len(token) < jws.MAX_LENGTH
    assert decode(token, key.public(), audience="api", now=NOW) == claims
    big = encode({**claims, "pad": "x" * (jws.MAX_LENGTH - signature_chars)}, key)
    with pytest.raises(JWTError) as caught:
        decode(big, key.public(), audience="api", now=NOW)
    assert caught.value.code == "too_large"
    assert decode(big, key.public(), audience="api", now=NOW, max_length=len(big))["pad"] == "x" * (
        jws.MAX_LENGTH - signature_chars)
