"""Registered claims (R12-R14) through decode, with an injected clock; and encode's date handling."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jwtkit import ExpiredToken, FutureIssuedToken, InvalidClaim, JWTError, NotYetValidToken, decode, encode
from jwtkit._jose.claims import check_claims, numeric_date

from ._tokens import NOW, forge, hs_key

KEY = hs_key()
HEADER = {"alg": "HS256", "typ": "JWT"}


def run(claims: dict[str, Any] | bytes, **options: Any) -> dict[str, Any]:
    options.setdefault("now", NOW)
    return decode(forge(HEADER, claims, KEY), KEY, **options)


def refused(claims: dict[str, Any] | bytes, **options: Any) -> JWTError:
    with pytest.raises(JWTError) as caught:
        run(claims, **options)
    return caught.value


# --- exp / nbf / iat with leeway ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exp", "leeway", "ok"),
    [
        (NOW + 1, 0, True),
        (NOW, 0, False),
        (NOW - 1, 0, False),
        (NOW, 1, True),
        (NOW - 5, 5, False),
        (NOW - 4.5, 5, True),
    ],
)
def test_exp(exp: float, leeway: float, ok: bool) -> None:
    # R12: reject when now >= exp + leeway.
    if ok:
        assert run({"exp": exp}, leeway=leeway) == {"exp": exp}
    else:
        error = refused({"exp": exp}, leeway=leeway)
        assert isinstance(error, ExpiredToken) and isinstance(error, InvalidClaim)
        assert (error.code, error.claim, error.reason) == ("expired", "exp", "check_failed")


def test_exp_fractional_is_not_truncated() -> None:
    assert run({"exp": NOW + 0.5}) == {"exp": NOW + 0.5}
    assert refused({"exp": NOW + 0.5}, now=NOW + 0.5).code == "expired"
    assert run({"exp": NOW + 0.5}, now=NOW + 0.4999) == {"exp": NOW + 0.5}


@pytest.mark.parametrize(
    ("nbf", "leeway", "ok"), [(NOW, 0, True), (NOW + 1, 0, False), (NOW + 1, 1, True), (NOW + 2, 1, False)]
)
def test_nbf(nbf: float, leeway: float, ok: bool) -> None:
    # R12: reject when now < nbf - leeway.
    claims = {"exp": NOW + 60, "nbf": nbf}
    if ok:
        assert run(claims, leeway=leeway) == claims
    else:
        error = refused(claims, leeway=leeway)
        assert isinstance(error, NotYetValidToken)
        assert (error.code, error.claim) == ("not_yet_valid", "nbf")


@pytest.mark.parametrize(
    ("iat", "leeway", "ok"), [(NOW, 0, True), (NOW + 1, 0, False), (NOW + 1, 1, True), (NOW - 999, 0, True)]
)
def test_iat(iat: float, leeway: float, ok: bool) -> None:
    # R12 (policy): reject when iat > now + leeway.
    claims = {"exp": NOW + 60, "iat": iat}
    if ok:
        assert run(claims, leeway=leeway) == claims
    else:
        error = refused(claims, leeway=leeway)
        assert isinstance(error, FutureIssuedToken)
        assert (error.code, error.claim) == ("issued_in_future", "iat")


def test_leeway_as_timedelta() -> None:
    assert run({"exp": NOW - 5}, leeway=timedelta(seconds=10)) == {"exp": NOW - 5}


@pytest.mark.parametrize("leeway", [-1, float("nan"), float("inf"), "5", None])
def test_bad_leeway_is_a_programming_error(leeway: Any) -> None:
    with pytest.raises((TypeError, ValueError)):
        run({"exp": NOW + 60}, leeway=leeway)


def test_now_defaults_to_the_wall_clock() -> None:
    token = encode({"exp": datetime.now(UTC) + timedelta(minutes=1)}, KEY)
    assert "exp" in decode(token, KEY)
    with pytest.raises(ExpiredToken):
        decode(encode({"exp": datetime.now(UTC) - timedelta(minutes=1)}, KEY), KEY)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"exp":true}',
        b'{"exp":false}',
        b'{"exp":"1800000000"}',
        b'{"exp":null}',
        b'{"exp":[1800000000]}',
        b'{"exp":{"t":1800000000}}',
        b'{"exp":1800000000,"nbf":"0"}',
        b'{"exp":1800000000,"iat":true}',
        b'{"exp":1' + b"0" * 400 + b"}",
        b'{"exp":-1' + b"0" * 400 + b"}",
    ],
)
def test_numeric_dates_must_be_finite_json_numbers(raw: bytes) -> None:
    error = refused(raw)
    assert error.code == "claim"
    assert (
        isinstance(error, InvalidClaim) and error.reason == "invalid" and error.claim in ("exp", "nbf", "iat")
    )


@pytest.mark.parametrize("raw", [b'{"exp":NaN}', b'{"exp":Infinity}', b'{"exp":-Infinity}', b'{"exp":1e999}'])
def test_non_finite_dates_are_not_even_json(raw: bytes) -> None:
    assert refused(raw).code == "malformed"


def test_numeric_date_helper() -> None:
    assert numeric_date(0) and numeric_date(1.5) and numeric_date(-1) and numeric_date(10**300)
    for bad in (True, False, None, "1", math.nan, math.inf, -math.inf, 10**400, [1]):
        assert not numeric_date(bad)


# --- iss / sub / jti ----------------------------------------------------------------------------------------


def test_issuer_exact() -> None:
    claims = {"exp": NOW + 60, "iss": "https://issuer.example"}
    assert run(claims, issuer="https://issuer.example") == claims
    for other in ("https://issuer.example/", "HTTPS://issuer.example", "https://issuer.exampl", ""):
        error = refused(claims, issuer=other)
        assert (error.code, error.claim, error.reason) == ("claim", "iss", "check_failed")  # type: ignore[attr-defined]


def test_issuer_missing_or_mistyped() -> None:
    assert refused({"exp": NOW + 60}, issuer="a").reason == "missing"  # type: ignore[attr-defined]
    assert refused({"exp": NOW + 60, "iss": ["a"]}, issuer="a").reason == "invalid"  # type: ignore[attr-defined]
    assert refused({"exp": NOW + 60, "iss": 1}).reason == "invalid"  # type: ignore[attr-defined]
    assert refused({"exp": NOW + 60, "iss": None}).reason == "invalid"  # type: ignore[attr-defined]


def test_iss_not_checked_when_not_asked() -> None:
    assert run({"exp": NOW + 60, "iss": "anyone"}) == {"exp": NOW + 60, "iss": "anyone"}


def test_subject() -> None:
    claims = {"exp": NOW + 60, "sub": "alice"}
    assert run(claims, subject="alice") == claims
    assert refused(claims, subject="Alice").claim == "sub"  # type: ignore[attr-defined]
    assert refused({"exp": NOW + 60}, subject="alice").reason == "missing"  # type: ignore[attr-defined]
    assert refused({"exp": NOW + 60, "sub": 42}).reason == "invalid"  # type: ignore[attr-defined]


def test_jti_must_be_a_string() -> None:
    assert run({"exp": NOW + 60, "jti": "x"})["jti"] == "x"
    error = refused({"exp": NOW + 60, "jti": 1})
    assert (error.code, error.claim) == ("claim", "jti")  # type: ignore[attr-defined]


# --- aud ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("aud", ["api", ["api"], ["web", "api"]])
def test_audience_matches(aud: Any) -> None:
    claims = {"exp": NOW + 60, "aud": aud}
    assert run(claims, audience="api") == claims


def test_audience_several_expected() -> None:
    claims = {"exp": NOW + 60, "aud": ["web"]}
    assert run(claims, audience=["api", "web"]) == claims
    assert refused(claims, audience=["api", "cli"]).reason == "check_failed"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("aud", "reason"),
    [("web", "check_failed"), (["web"], "check_failed"), ("API", "check_failed"), ([], "invalid"),
     ([1], "invalid"), (1, "invalid"), (None, "invalid"), ({"api": True}, "invalid")],
)  # fmt: skip
def test_audience_refused(aud: Any, reason: str) -> None:
    error = refused({"exp": NOW + 60, "aud": aud}, audience="api")
    assert (error.code, error.claim, error.reason) == ("claim", "aud", reason)  # type: ignore[attr-defined]


def test_audience_missing_when_expected() -> None:
    error = refused({"exp": NOW + 60}, audience="api")
    assert (error.claim, error.reason) == ("aud", "missing")  # type: ignore[attr-defined]


def test_audience_present_but_not_expected() -> None:  # R14, RFC 7519 §4.1.3
    error = refused({"exp": NOW + 60, "aud": "api"})
    assert (error.code, error.claim, error.reason) == ("claim", "aud", "unexpected")  # type: ignore[attr-defined]


# --- require -----------------------------------------------------------------------------------------------


def test_require() -> None:
    assert run({"sub": "a"}, require=()) == {"sub": "a"}
    error = refused({"sub": "a"})
    assert (error.code, error.claim, error.reason) == ("claim", "exp", "missing")  # type: ignore[attr-defined]
    error = refused({"exp": NOW + 60}, require=("exp", "jti", "sid"))
    assert (error.claim, error.reason) == ("jti", "missing")  # type: ignore[attr-defined]
    assert run({"exp": NOW + 60, "jti": "j", "sid": "s"}, require=("exp", "jti", "sid"))["sid"] == "s"


def test_presence_is_checked_before_values() -> None:
    error = refused({"exp": NOW - 10}, require=("exp", "sub"))
    assert (error.code, error.claim) == ("claim", "sub")  # type: ignore[attr-defined]


def test_check_claims_directly() -> None:
    check_claims({"exp": 10}, now=5)
    with pytest.raises(ExpiredToken):
        check_claims({"exp": 10}, now=10)


# --- typ (R15) --------------------------------------------------------------------------------------------


def test_typ_default_is_jwt_and_checked_when_asked() -> None:
    token = encode({"exp": NOW + 60}, KEY)
    assert decode(token, KEY, now=NOW, typ="JWT") == {"exp": NOW + 60}
    access = encode({"exp": NOW + 60}, KEY, typ="at+jwt")
    assert decode(access, KEY, now=NOW, typ="application/at+jwt") == {"exp": NOW + 60}
    with pytest.raises(JWTError) as caught:
        decode(access, KEY, now=NOW, typ="refresh+jwt")
    assert caught.value.code == "header"
    bare = encode({"exp": NOW + 60}, KEY, typ=None)
    with pytest.raises(JWTError) as caught:
        decode(bare, KEY, now=NOW, typ="JWT")
    assert caught.value.code == "header"


# --- encode's dates -----------------------------------------------------------------------------------------


def test_encode_converts_aware_datetimes() -> None:
    moment = datetime(2030, 1, 1, tzinfo=UTC)
    token = encode(
        {"exp": moment, "iat": moment - timedelta(hours=1), "nbf": moment - timedelta(hours=1)}, KEY
    )
    claims = decode(token, KEY, now=moment.timestamp() - 10)
    assert claims == {
        "exp": int(moment.timestamp()),
        "iat": int(moment.timestamp()) - 3600,
        "nbf": int(moment.timestamp()) - 3600,
    }


@pytest.mark.parametrize("exp", [datetime(2030, 1, 1), "1800000000", True, math.nan, math.inf, [1]])
def test_encode_refuses_bad_dates(exp: Any) -> None:
    with pytest.raises(ValueError):
        encode({"exp": exp}, KEY)


def test_encode_refuses_claims_json_cannot_carry() -> None:
    with pytest.raises(TypeError):
        encode({"exp": NOW, 1: "non-string key"}, KEY)
    with pytest.raises(TypeError):
        encode({"exp": NOW, "x": object()}, KEY)
    with pytest.raises(TypeError):
        encode(["exp"], KEY)  # type: ignore[arg-type]
