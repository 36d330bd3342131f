"""What ``jwtkit decode`` shows about a token: its parts, its dates in UTC and relative time, and warnings.

Pure functions over the already-parsed header and claims, so the rules are easy to read and to test.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "CLAIM_NOTES",
    "DATE_CLAIMS",
    "LONG_LIFETIME",
    "DateInfo",
    "Inspection",
    "humanize_delta",
    "inspect_token",
]

DATE_CLAIMS = ("iat", "nbf", "exp")
LONG_LIFETIME = 24 * 3600  # seconds; an access token living longer than a day is worth a second look

# RFC 7519 §4.1 registered claims, plus the ones jwtkit itself issues (RFC 9068 and session ids).
CLAIM_NOTES: Mapping[str, str] = {
    "iss": "issuer: who issued the token",
    "sub": "subject: whom the token is about (a user id)",
    "aud": "audience: who the token is meant for",
    "exp": "expiration time: refused at and after this instant",
    "nbf": "not before: refused before this instant",
    "iat": "issued at",
    "jti": "JWT ID: unique id of this token",
    "sid": "session id (jwtkit revokes sessions by it)",
}

# Claim names that suggest a secret was put into a token: a JWS payload is only base64url, readable by anyone.
_SENSITIVE = re.compile(
    r"pass(word|wd)?|pwd|secret|ssn|social.?security|card|cvv|cvc|iban|pin$|private|api.?key|credential",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class DateInfo:
    """One NumericDate claim, as UTC text and as a phrase relative to now."""

    claim: str
    value: float
    utc: str
    relative: str


@dataclass(slots=True)
class Inspection:
    """Everything ``decode`` reports besides the raw header and claims."""

    dates: list[DateInfo] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def humanize_delta(seconds: float) -> str:
    """``14 min``, ``2 days``, ``3 h``, ``40 s``: a rough magnitude, as people say it."""
    seconds = abs(seconds)
    if seconds < 60:
        return f"{int(seconds)} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min"
    if seconds < 86400:
        hours = int(seconds // 3600)
        return f"{hours} h"
    days = int(seconds // 86400)
    if days < 365:
        return f"{days} day" if days == 1 else f"{days} days"
    years = days // 365
    return f"{years} year" if years == 1 else f"{years} years"


def _relative(claim: str, value: float, now: float) -> str:
    delta = value - now
    span = humanize_delta(delta)
    future = delta > 0
    if claim == "exp":
        return f"expires in {span}" if future else f"expired {span} ago"
    if claim == "nbf":
        return f"valid in {span}" if future else f"valid since {span} ago"
    return f"issued in {span} (in the future!)" if future else f"issued {span} ago"


def _numeric_date(value: Any) -> float | None:
    """A NumericDate as RFC 7519 §2 defines it (a JSON number, not a bool), or None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _utc_text(value: float) -> str | None:
    try:
        return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return None


def inspect_token(header: Mapping[str, Any], claims: Mapping[str, Any], *, now: float) -> Inspection:
    """Dates and warnings for an unverified token (see ``jwtkit decode``)."""
    result = Inspection()
    for name in DATE_CLAIMS:
        if name not in claims:
            continue
        number = _numeric_date(claims[name])
        utc = _utc_text(number) if number is not None else None
        if number is None or utc is None:
            # RFC 7519 §2: a NumericDate is a JSON number; strings and bools are refused by jwtkit.decode.
            result.warnings.append(
                f"{name} is not a valid NumericDate (a JSON number of seconds): verification fails"
            )
            continue
        result.dates.append(DateInfo(name, number, utc, _relative(name, number, now)))

    alg = header.get("alg")
    if isinstance(alg, str) and alg.lower() == "none":
        result.warnings.append('alg is "none": an unsigned token; jwtkit never accepts it (RFC 8725 §3.1)')
    elif not isinstance(alg, str):
        result.warnings.append("the header has no string alg: verification fails")
    for member in ("jku", "x5u", "jwk", "x5c"):
        if member in header:
            result.warnings.append(
                f"the header carries {member}: jwtkit never takes a key from the token (RFC 8725 §3.10)"
            )

    exp = _numeric_date(claims.get("exp"))
    iat = _numeric_date(claims.get("iat"))
    if "exp" not in claims:
        result.warnings.append("no exp claim: this token never expires")
    elif exp is not None:
        start = iat if iat is not None else now
        lifetime = exp - start
        if lifetime > LONG_LIFETIME:
            result.warnings.append(
                f"long lifetime: valid for {humanize_delta(lifetime)}; access tokens usually live minutes"
            )
        if exp <= now:
            result.warnings.append(f"expired {humanize_delta(now - exp)} ago")
    for name in claims:
        if _SENSITIVE.search(name):
            result.warnings.append(
                f"claim {name!r} looks sensitive: a JWT payload is readable by anyone who holds the token"
            )
    return result
