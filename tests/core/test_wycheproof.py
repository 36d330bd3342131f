"""Project Wycheproof's JOSE and HMAC vectors against jwtkit's token core (issue 2 §5).

The vectors are copied into ``tests/core/vectors/wycheproof/`` (see its README, LICENSE and PROVENANCE).
Every compact JWS case runs: ``valid`` ones verify at the signature layer (and decode, when the
payload is a claims set), ``invalid`` ones are refused. A handful of cases meet a stricter jwtkit rule, or are
defective in the upstream data; each is listed below with the reason, and asserted, never skipped silently.
JSON-serialised JWS cases are out of scope (jwtkit is compact-only, R17) and are skipped with that reason.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

import jwtkit
from jwtkit import JWTError, Key, KeySet, jwa

# A copy of the vectors lives in the repository (with their LICENSE and PROVENANCE), so that a fresh clone
# with nothing beside it runs every case.
VECTORS = Path(__file__).parent / "vectors" / "wycheproof"


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / name).read_text(encoding="utf-8"))
    return data


# --- a strict reading of a compact JWS, independent of jwtkit's ---------------------------------------------

_SEGMENT = re.compile(r"[A-Za-z0-9_-]*")


def _strict_b64(segment: str) -> bytes | None:
    """RFC 7515 §2 base64url: the alphabet only, no padding, canonical (re-encodes to itself)."""
    if not _SEGMENT.fullmatch(segment) or len(segment) % 4 == 1:
        return None
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        return None
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != segment:
        return None
    return raw


def _lenient_header(token: str) -> dict[str, Any]:
    """The header as a lenient reader sees it: enough to learn which ``alg`` a case is about."""
    try:
        segment = token.split(".")[0]
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, binascii.Error):
        return {}
    return header if isinstance(header, dict) else {}


def signature_layer_accepts(token: str, key: Key) -> bool:
    """True when the token is strictly well-formed, names the key's ``alg`` and ``jwa.verify`` accepts it."""
    parts = token.split(".")
    if len(parts) != 3:
        return False
    raw_header, _, signature = (_strict_b64(part) for part in parts)
    if raw_header is None or signature is None or _strict_b64(parts[1]) is None:
        return False
    header = _lenient_header(token)
    if header.get("alg") != key.alg:
        return False
    return jwa.verify(key.alg, key, f"{parts[0]}.{parts[1]}".encode("ascii"), signature)


def claims_set(token: str) -> dict[str, Any] | None:
    """The payload when it is a JSON object (a JWT claims set), else None."""
    raw = _strict_b64(token.split(".")[1]) if token.count(".") == 2 else None
    if raw is None:
        return None
    try:
        payload = json.loads(raw)
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None


def refusal(token: str, key: Key | KeySet) -> str | None:
    """None if ``decode`` accepts; else the refusal's code. Other exception types fail the test (R16)."""
    try:
        jwtkit.decode(token, key, require=())
    except JWTError as exc:
        return exc.code
    return None


def _without_alg(jwk: Mapping[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in jwk.items() if name != "alg"}


# --- json_web_signature_test.json ---------------------------------------------------------------------------

JWS = _load("json_web_signature_test.json")
JWS_CASES = [(group, case) for group in JWS["testGroups"] for case in group["tests"]]
JWS_BY_ID = {case["tcId"]: case for _, case in JWS_CASES}

# Defects in the upstream data: these tokens are byte-for-byte the valid token of tc 357 (the padding their
# comment names is not there), so no verifier can refuse them and accept 357. They are checked to be exactly
# that token and then held to 357's expectation.
DUPLICATES_OF_VALID = {367: 357, 370: 357}

# Wycheproof marks these `valid` (a decoder that skips the stray '?' still verifies them). jwtkit is stricter
# on purpose: R2 / RFC 7515 §2 allow only the base64url alphabet, so it refuses them with code "malformed".
STRICTER_BASE64 = {372, 373}

# RFC 7520's figures 20 and 27 are PS384 / ES512 tokens, but these groups give the key `alg` PS256 and the
# unregistered name ES521. A JWK's `alg` fixes the key's binding (R5; RFC 8725 §3.1), so jwtkit refuses the
# pairing as given, and verifies the token once the same key material is bound to the header's algorithm.
MISBOUND_JWK = {346, 347, 350, 351}


def _is_json_serialisation(jws: Any) -> bool:
    return not isinstance(jws, str) or jws.lstrip().startswith("{")


def _jws_id(item: tuple[dict[str, Any], dict[str, Any]]) -> str:
    group, case = item
    return f"tc{case['tcId']}-{group['comment']}-{case['comment']}"


def test_vector_inventory() -> None:
    """The file is the one the README describes, and the out-of-scope JSON cases are counted."""
    assert JWS["numberOfTests"] == len(JWS_CASES) == 401
    json_cases = [case["tcId"] for _, case in JWS_CASES if _is_json_serialisation(case["jws"])]
    compact_cases = len(JWS_CASES) - len(json_cases)
    print(f"\nWycheproof JWS: {compact_cases} compact cases run, {len(json_cases)} JSON-serialised skipped")
    assert compact_cases > 350


def _build_key(jwk: Mapping[str, Any], token: str) -> Key:
    """The verifier's key. A JWK without ``alg`` is bound to the token header's ``alg`` (the group's aim)."""
    if "alg" in jwk:
        return Key.from_jwk(jwk)
    header_alg = _lenient_header(token).get("alg")
    return Key.from_jwk(jwk, alg=header_alg if isinstance(header_alg, str) else None)


@pytest.mark.parametrize(("group", "case"), JWS_CASES, ids=[_jws_id(item) for item in JWS_CASES])
def test_json_web_signature(group: dict[str, Any], case: dict[str, Any]) -> None:
    token = case["jws"]
    if _is_json_serialisation(token):
        pytest.skip("JSON-serialised JWS: jwtkit implements the compact serialisation only (R17)")
    tc_id = case["tcId"]
    jwk = group.get("public") or group["private"]
    expected = case["result"]

    if tc_id in DUPLICATES_OF_VALID:
        original = JWS_BY_ID[DUPLICATES_OF_VALID[tc_id]]
        assert token == original["jws"] and original["result"] == "valid"
        expected = "valid"

    if tc_id in STRICTER_BASE64:
        assert expected == "valid" and "?" in token
        key = _build_key(jwk, token)
        assert refusal(token, key) == "malformed"
        assert signature_layer_accepts(token.replace("?", ""), key)   # the stray character is the only fault
        return

    if tc_id in MISBOUND_JWK:
        assert expected == "valid"
        header_alg = _lenient_header(token)["alg"]
        assert jwk["alg"] != header_alg
        try:
            strict = Key.from_jwk(jwk)
        except JWTError as exc:                 # "ES521" is no JWS algorithm: refused outright
            assert exc.code in {"key", "algorithm"}
        else:
            assert refusal(token, strict) == "algorithm"
        rebound = Key.from_jwk(_without_alg(jwk), alg=header_alg)
        assert signature_layer_accepts(token, rebound)
        assert refusal(token, rebound) == "malformed"           # the payload is prose, not a claims set
        return

    if expected == "valid":
        key = _build_key(jwk, token)
        assert signature_layer_accepts(token, key)
        claims = claims_set(token)
        if claims is not None:
            assert jwtkit.decode(token, key, require=()) == claims
        else:
            # Signature verified; the payload is not a JSON object, refused only after verification (R11).
            assert refusal(token, key) == "malformed"
        return

    # invalid: refused at key construction, or by decode. A "malformed" refusal on a token that is otherwise
    # well-formed would also be what a non-JSON payload gets after a *passing* signature check, so the
    # signature layer is asked directly as well: it must not accept.
    try:
        key = _build_key(jwk, token)
    except JWTError as exc:
        assert exc.code in {"key", "algorithm"}
        return
    code = refusal(token, key)
    assert code is not None, "an invalid token was accepted"
    if code in {"malformed", "claim"}:
        assert not signature_layer_accepts(token, key)


def test_misbound_rfc7520_keys_verify_when_bound_to_the_header_alg() -> None:
    # The positive half of MISBOUND_JWK on its own, so that a regression there names itself.
    for tc_id in sorted(MISBOUND_JWK):
        group = next(g for g, c in JWS_CASES if c["tcId"] == tc_id)
        token = JWS_BY_ID[tc_id]["jws"]
        key = Key.from_jwk(_without_alg(group["public"]), alg=_lenient_header(token)["alg"])
        signing_input, signature = token.rsplit(".", 1)
        assert jwa.verify(key.alg, key, signing_input.encode(), _strict_b64(signature) or b"")


# --- hmac_sha{256,384,512}_test.json ------------------------------------------------------------------------

HMAC_FILES = {"HS256": ("hmac_sha256_test.json", 32), "HS384": ("hmac_sha384_test.json", 48),
              "HS512": ("hmac_sha512_test.json", 64)}


def _hmac_cases() -> Iterator[Any]:
    for alg, (name, size) in HMAC_FILES.items():
        for group in _load(name)["testGroups"]:
            for case in group["tests"]:
                yield pytest.param(alg, size, group["tagSize"] // 8, case,
                                   id=f"{alg}-tc{case['tcId']}-k{group['keySize']}-t{group['tagSize']}")


@pytest.mark.parametrize(("alg", "hash_size", "tag_size", "case"), list(_hmac_cases()))
def test_hmac(alg: str, hash_size: int, tag_size: int, case: dict[str, Any]) -> None:
    secret, message, tag = (bytes.fromhex(case[name]) for name in ("key", "msg", "tag"))
    if len(secret) < hash_size:
        # RFC 7518 §3.2 / R6: a key shorter than the hash output is refused by design, never used.
        with pytest.raises(JWTError) as refused:
            Key.from_secret(secret, alg)
        assert refused.value.code == "key"
        return
    key = Key.from_secret(secret, alg)
    if tag_size < hash_size:
        # JWS carries the full MAC (R10: exact length before any crypto): a truncated tag never verifies,
        # even one that is a correct truncation (`valid` in the HMAC sense).
        assert jwa.verify(alg, key, message, tag) is False
        return
    if case["result"] == "valid":
        assert jwa.sign(alg, key, message) == tag
        assert jwa.verify(alg, key, message, tag) is True
    else:
        assert jwa.verify(alg, key, message, tag) is False


# --- json_web_key_test.json ---------------------------------------------------------------------------------

JWK = _load("json_web_key_test.json")
JWK_CASES = [(group, case) for group in JWK["testGroups"] for case in group["tests"]]


def _keyset_signature_accepts(token: str, jwks: Mapping[str, Any]) -> bool:
    """Whether any JWK of the set with the token's kid, built on its own, accepts the token's signature."""
    kid = _lenient_header(token).get("kid")
    for jwk in jwks["keys"]:
        if jwk.get("kid") != kid:
            continue
        try:
            key = _build_key(jwk, token)
        except JWTError:
            continue
        if signature_layer_accepts(token, key):
            return True
    return False


@pytest.mark.parametrize(("group", "case"), JWK_CASES, ids=[_jws_id(item) for item in JWK_CASES])
def test_json_web_key(group: dict[str, Any], case: dict[str, Any]) -> None:
    # Each group is a key set (the verifier's: `public` when given, else `private`) and a compact JWS.
    # `valid`: the set loads, and its key verifies the token. `invalid`: the set (or a key in it) is refused
    # with code "key", or the token is refused by decode, at the signature layer and not merely for its
    # non-JSON payload. Flags MixedKeySet/DuplicateKid name sets that are refused as a whole.
    jwks = group.get("public") or group["private"]
    token = case["jws"]
    try:
        keyset = KeySet.from_jwks(jwks)
    except JWTError as exc:
        assert case["result"] == "invalid", f"a valid key set was refused: {exc.code}: {exc}"
        assert exc.code == "key"
        return
    code = refusal(token, keyset)
    if case["result"] == "valid":
        assert _keyset_signature_accepts(token, jwks)
        assert code == "malformed"                  # got past the signature; the payload "foo" is not JSON
        return
    assert code is not None, "an invalid token was accepted"
    if code in {"malformed", "claim"}:
        assert not _keyset_signature_accepts(token, jwks), "refused only for its payload: the key was usable"
