"""The error tree: codes, nesting, docstrings, pickling, and the mapping of each foreign exception caught."""

from __future__ import annotations

import pickle

import pytest

import jwtkit
from jwtkit import (
    BadSignature,
    DisallowedAlgorithm,
    ExpiredToken,
    FutureIssuedToken,
    InvalidClaim,
    InvalidHeader,
    JWTError,
    Key,
    MalformedToken,
    NotYetValidToken,
    TokenTooLarge,
    UnusableKey,
    decode,
)
from jwtkit._jose.errors import CODES

from ._tokens import NOW, forge, hs_key

EXPECTED = {
    MalformedToken: "malformed",
    TokenTooLarge: "too_large",
    InvalidHeader: "header",
    DisallowedAlgorithm: "algorithm",
    UnusableKey: "key",
    BadSignature: "signature",
    InvalidClaim: "claim",
    ExpiredToken: "expired",
    NotYetValidToken: "not_yet_valid",
    FutureIssuedToken: "issued_in_future",
}


def test_codes() -> None:
    assert {cls: cls.code for cls in EXPECTED} == EXPECTED
    assert set(EXPECTED.values()) == CODES


def test_nesting() -> None:
    for cls in (ExpiredToken, NotYetValidToken, FutureIssuedToken):
        assert issubclass(cls, InvalidClaim)  # one except covers every claim failure
    assert issubclass(TokenTooLarge, MalformedToken)
    assert all(issubclass(cls, JWTError) for cls in EXPECTED)
    assert not issubclass(JWTError, (ValueError, TypeError, RuntimeError))


def test_docstrings_are_one_line_summaries() -> None:
    for cls in (JWTError, *EXPECTED):
        assert cls.__doc__ and cls.__doc__.strip().splitlines()[0].endswith(".")


def test_claim_errors_carry_claim_and_reason_and_pickle() -> None:
    error = ExpiredToken("the token has expired", "exp", "check_failed")
    again = pickle.loads(pickle.dumps(error))
    assert (type(again), again.claim, again.reason, str(again)) == (
        ExpiredToken,
        "exp",
        "check_failed",
        str(error),
    )
    plain = pickle.loads(pickle.dumps(BadSignature("nope")))
    assert (type(plain), plain.code, str(plain)) == (BadSignature, "signature", "nope")


def test_public_module_path() -> None:
    assert ExpiredToken.__module__ == "jwtkit"
    assert repr(ExpiredToken("m", "exp", "check_failed")).startswith("ExpiredToken(")
    assert jwtkit.ExpiredToken is ExpiredToken


# Every foreign exception the core absorbs, with an input that triggers it and the code it becomes (R16).
KEY = hs_key()
FOREIGN = [
    ("UnicodeEncodeError (non-ASCII str token)", "é.é.é", "malformed"),
    ("UnicodeDecodeError (header not UTF-8)", forge(b'{"alg":"\xff"}', {}, KEY), "malformed"),
    ("json.JSONDecodeError (header)", forge(b"{", {}, KEY), "malformed"),
    ("RecursionError (deep JSON)", forge(b"[" * 2900 + b"]" * 2900, {}, KEY), "malformed"),
    ("ValueError (int too long to parse)", forge(b'{"alg":' + b"1" * 5000 + b"}", {}, KEY), "malformed"),
    ("ValueError (duplicate names)", forge(b'{"alg":"HS256","alg":"HS256"}', {}, KEY), "malformed"),
    ("binascii.Error (cannot occur after the canonical check)", "eyJhbGciOiJIUzI1NiJ9.e30.A", "malformed"),
    ("TypeError (token of another type)", 3.5, "malformed"),
    ("cryptography InvalidSignature (ES256)", forge({"alg": "ES256"}, {}, signature=b"\1" * 64), "signature"),
    (
        "OverflowError (exp beyond float range)",
        forge({"alg": "HS256"}, b'{"exp":1' + b"0" * 400 + b"}", KEY),
        "claim",
    ),
]


@pytest.mark.parametrize(("what", "token", "code"), FOREIGN, ids=[item[0] for item in FOREIGN])
def test_foreign_exceptions_are_mapped(what: str, token: object, code: str) -> None:
    key = Key.generate("ES256") if "ES256" in what else KEY
    with pytest.raises(JWTError) as caught:
        decode(token, key, now=NOW)  # type: ignore[arg-type]
    assert caught.value.code == code
    assert caught.value.__cause__ is None


def test_key_construction_maps_cryptography_errors() -> None:
    with pytest.raises(UnusableKey) as caught:
        Key.from_pem(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "ES256")
    assert caught.value.__cause__ is None
    with pytest.raises(UnusableKey):
        Key.from_jwk({"kty": "OKP", "crv": "Ed25519", "x": "A" * 43, "alg": "EdDSA", "d": "B" * 43})
