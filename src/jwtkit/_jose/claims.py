"""Registered-claim checks for a verified payload (RFC 7519 §4.1, R12-R14).

Presence first (``require``), then ``iss``, ``sub``, ``aud`` and ``jti`` types and values, then the dates
``exp``, ``nbf`` and ``iat``. Every failure is an :class:`InvalidClaim` carrying ``claim`` and ``reason``.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from datetime import timedelta
from typing import Any

from jwtkit._jose.errors import ExpiredToken, FutureIssuedToken, InvalidClaim, NotYetValidToken

__all__ = ["DATE_CLAIMS", "check_claims", "numeric_date", "seconds", "validate_claims"]

#: The NumericDate claims (RFC 7519 §2).
DATE_CLAIMS = ("exp", "nbf", "iat")
_DOUBLE_MAX = 1.7976931348623157e308
_MISSING: Any = object()


def numeric_date(value: object) -> bool:
    """Whether ``value`` is a valid NumericDate: a finite JSON number in double range, not bool (R12)."""
    kind = type(value)
    if kind is int:
        return -_DOUBLE_MAX <= value <= _DOUBLE_MAX  # type: ignore[operator]
    if kind is float:
        return math.isfinite(value)  # type: ignore[arg-type]
    return False


def seconds(value: float | timedelta, name: str) -> float:
    """A number of seconds from a number or a ``timedelta``; ``TypeError``/``ValueError`` for bad options."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    if type(value) not in (int, float) or not math.isfinite(value):
        raise TypeError(f"{name} must be a finite number of seconds")
    return value


def _audience(claims: Mapping[str, Any], audience: str | Collection[str] | None) -> None:
    if "aud" not in claims:
        if audience is not None:
            # R14: when an audience is asked for, a token without one is refused.
            raise InvalidClaim("the token has no aud", "aud", "missing")
        return
    value = claims["aud"]
    if type(value) is str:
        values: list[Any] = [value]
    elif type(value) is list and value and all(type(item) is str for item in value):
        values = value
    else:
        raise InvalidClaim("aud must be a string or a non-empty list of strings", "aud", "invalid")
    if audience is None:
        # RFC 7519 §4.1.3 / RFC 8725 §3.9: a token for some audience is not for a verifier with none.
        raise InvalidClaim("the token has an aud but no audience was expected", "aud", "unexpected")
    if type(audience) is str:
        if audience not in values:
            raise InvalidClaim("aud does not match", "aud", "check_failed")
    elif not any(item in audience for item in values):
        raise InvalidClaim("aud does not match", "aud", "check_failed")


def check_claims(
    claims: Mapping[str, Any],
    *,
    now: float,
    leeway: float = 0,
    issuer: str | None = None,
    audience: str | Collection[str] | None = None,
    subject: str | None = None,
    require: Collection[str] = ("exp",),
) -> None:
    """Check the registered claims of a verified payload; raise an :class:`InvalidClaim` subclass on failure.

    Raises:
        InvalidClaim: ``claim`` (reason ``missing``/``invalid``/``unexpected``/``check_failed``).
        ExpiredToken: ``expired``, when ``now >= exp + leeway``.
        NotYetValidToken: ``not_yet_valid``, when ``now < nbf - leeway``.
        FutureIssuedToken: ``issued_in_future``, when ``iat > now + leeway``.
    """
    validate_claims(claims, now, leeway, issuer, audience, subject, require)


def validate_claims(
    claims: Mapping[str, Any],
    now: float,
    leeway: float,
    issuer: str | None,
    audience: str | Collection[str] | None,
    subject: str | None,
    require: Collection[str],
) -> None:
    """:func:`check_claims` with positional arguments, for the decode hot path."""
    get = claims.get
    for name in require:
        if name not in claims:
            raise InvalidClaim(f"the token has no {name}", name, "missing")
    # R13: iss and sub are strings, compared exactly (never a substring or list membership).
    value = get("iss", _MISSING)
    if value is _MISSING:
        if issuer is not None:
            raise InvalidClaim("the token has no iss", "iss", "missing")
    elif type(value) is not str:
        raise InvalidClaim("iss must be a string", "iss", "invalid")
    elif issuer is not None and value != issuer:
        raise InvalidClaim("iss does not match", "iss", "check_failed")
    value = get("sub", _MISSING)
    if value is _MISSING:
        if subject is not None:
            raise InvalidClaim("the token has no sub", "sub", "missing")
    elif type(value) is not str:
        raise InvalidClaim("sub must be a string", "sub", "invalid")
    elif subject is not None and value != subject:
        raise InvalidClaim("sub does not match", "sub", "check_failed")
    value = get("aud", _MISSING)
    # The common case (one string audience, equal) needs no further look.
    if (value is not _MISSING or audience is not None) and not (
        type(value) is str and type(audience) is str and value == audience
    ):
        _audience(claims, audience)
    value = get("jti", _MISSING)
    if value is not _MISSING and type(value) is not str:
        raise InvalidClaim("jti must be a string", "jti", "invalid")
    # R12: finite JSON numbers in double range, never bool or string; compared as numbers, never truncated.
    value = get("exp", _MISSING)
    if value is not _MISSING:
        if not ((type(value) is int and -_DOUBLE_MAX <= value <= _DOUBLE_MAX) or numeric_date(value)):
            raise InvalidClaim("exp must be a NumericDate", "exp", "invalid")
        if now >= value + leeway:
            raise ExpiredToken("the token has expired", "exp", "check_failed")
    value = get("nbf", _MISSING)
    if value is not _MISSING:
        if not ((type(value) is int and -_DOUBLE_MAX <= value <= _DOUBLE_MAX) or numeric_date(value)):
            raise InvalidClaim("nbf must be a NumericDate", "nbf", "invalid")
        if now < value - leeway:
            raise NotYetValidToken("the token is not valid yet", "nbf", "check_failed")
    value = get("iat", _MISSING)
    if value is not _MISSING:
        if not ((type(value) is int and -_DOUBLE_MAX <= value <= _DOUBLE_MAX) or numeric_date(value)):
            raise InvalidClaim("iat must be a NumericDate", "iat", "invalid")
        if value > now + leeway:
            raise FutureIssuedToken("the token was issued in the future", "iat", "check_failed")
