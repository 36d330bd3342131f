"""A returned header or claims mapping can never alter a cache (nor a later decode of the same token).

``jws`` caches validated headers by their raw segment; what ``decode``, ``decode_unverified`` and
``jws.verify_compact`` hand out must be the caller's own objects, nested values included.
"""

from __future__ import annotations

import copy
from types import MappingProxyType
from typing import Any

import pytest

from jwtkit import BadSignature, InvalidHeader, Key, decode, decode_unverified, encode
from jwtkit._jose import jws

from ._tokens import EXP, NOW, hs_key

KEY = hs_key(kid="k1")
NESTED_CLAIMS: dict[str, Any] = {
    "sub": "alice",
    "exp": EXP,
    "roles": ["admin", "user"],
    "profile": {"name": "Alice", "tags": ["a", {"deep": [1, 2]}]},
}
# Header members jwtkit passes through unread (R8): objects and arrays as well as strings.
NESTED_HEADERS: dict[str, Any] = {"ext": {"flags": ["x", "y"], "inner": {"n": 1}}, "list": [1, [2, 3]]}


def _mutate(value: Any) -> None:
    """Change every dict and list reachable from ``value``, at every depth."""
    if isinstance(value, dict):
        for name in list(value):
            _mutate(value[name])
        value["alg"] = "none"
        value["exp"] = NOW - 10
        value["injected"] = {"x": 1}
    elif isinstance(value, list):
        for item in value:
            _mutate(item)
        value.append("injected")


def _tokens() -> list[str]:
    return [
        encode(NESTED_CLAIMS, KEY),
        encode(NESTED_CLAIMS, KEY, headers=NESTED_HEADERS),
        encode(NESTED_CLAIMS, KEY, headers=NESTED_HEADERS, typ="at+jwt"),
    ]


@pytest.mark.parametrize("index", range(3))
def test_mutating_decoded_claims_changes_no_later_decode(index: int) -> None:
    token = _tokens()[index]
    first = decode(token, KEY, now=NOW)
    assert first == NESTED_CLAIMS
    first["exp"] = NOW - 10
    first["roles"].append("root")
    first["profile"]["tags"][1]["deep"].append(3)
    _mutate(first)
    assert decode(token, KEY, now=NOW) == NESTED_CLAIMS
    assert decode_unverified(token)[1] == NESTED_CLAIMS


@pytest.mark.parametrize("index", range(3))
def test_mutating_an_unverified_header_and_claims_changes_no_later_decode(index: int) -> None:
    token = _tokens()[index]
    header, claims = decode_unverified(token)
    expected_header, expected_claims = copy.deepcopy(header), copy.deepcopy(claims)
    header["alg"] = "none"
    header["typ"] = "something/else"
    header["kid"] = "other"
    _mutate(header)
    _mutate(claims)
    assert decode_unverified(token) == (expected_header, expected_claims)
    assert decode(token, KEY, now=NOW, typ=expected_header["typ"]) == NESTED_CLAIMS
    assert jws.verify_compact(token, KEY)[0] == expected_header


@pytest.mark.parametrize("index", range(3))
def test_mutating_a_verified_header_changes_no_cache(index: int) -> None:
    token = _tokens()[index]
    header, payload = jws.verify_compact(token, KEY)
    expected = copy.deepcopy(header)
    assert header["alg"] == "HS256" and header["kid"] == "k1"
    header["alg"] = "none"
    header["kid"] = "someone-else"
    del header["typ"]
    _mutate(header)
    again, payload_again = jws.verify_compact(token, KEY)
    assert again == expected and payload_again == payload
    assert decode(token, KEY, now=NOW, typ=expected["typ"]) == NESTED_CLAIMS
    assert decode_unverified(token)[0] == expected


def test_every_result_is_a_new_object_at_every_depth() -> None:
    token = _tokens()[1]
    first, second = jws.verify_compact(token, KEY)[0], jws.verify_compact(token, KEY)[0]
    assert first == second and first is not second
    assert type(first) is dict and type(first["ext"]) is dict and type(first["list"]) is list
    assert first["ext"] is not second["ext"] and first["ext"]["flags"] is not second["ext"]["flags"]
    assert first["list"][1] is not second["list"][1]
    claims_a, claims_b = decode(token, KEY, now=NOW), decode(token, KEY, now=NOW)
    assert claims_a is not claims_b and claims_a["profile"] is not claims_b["profile"]
    (header_a, claims_c), (header_b, _) = decode_unverified(token), decode_unverified(token)
    assert header_a is not header_b and header_a["ext"] is not header_b["ext"]
    assert claims_c is not claims_a


def test_cache_entries_are_immutable() -> None:
    token = _tokens()[1]
    jws.verify_compact(token, KEY)
    header = jws._headers[token.split(".")[0].encode()][0]
    assert isinstance(header, MappingProxyType)
    assert isinstance(header["ext"], MappingProxyType) and isinstance(header["ext"]["flags"], tuple)
    with pytest.raises(TypeError):
        header["alg"] = "none"  # type: ignore[index]
    with pytest.raises(TypeError):
        header["ext"]["inner"] = {}
    with pytest.raises(AttributeError):
        header["list"].append(4)
    flat_token = _tokens()[0]
    jws.verify_compact(flat_token, KEY)
    flat = jws._headers[flat_token.split(".")[0].encode()][0]
    assert isinstance(flat, MappingProxyType) and dict(flat) == {"alg": "HS256", "kid": "k1", "typ": "JWT"}


def test_a_cached_header_still_decides_for_each_call() -> None:
    # The cached entry answers alg/kid/typ; a caller who changed its copy changes none of them.
    token = encode(NESTED_CLAIMS, KEY, typ="at+jwt")
    header, _ = jws.verify_compact(token, KEY)
    header["typ"] = "JWT"
    with pytest.raises(InvalidHeader):
        decode(token, KEY, now=NOW, typ="JWT")
    with pytest.raises(BadSignature):
        decode(token, Key.from_secret(b"x" * 32, kid="k1"), now=NOW, typ="at+jwt")
