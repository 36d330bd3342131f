"""JSON Web Tokens (RFC 7519): :func:`encode`, :func:`decode` (JWS + claims) and :func:`decode_unverified`."""

from __future__ import annotations

import math
import time
from collections.abc import Collection, Mapping
from datetime import datetime, timedelta
from typing import Any

import orjson

from jwtkit._jose import base64url
from jwtkit._jose.claims import DATE_CLAIMS, seconds, validate_claims
from jwtkit._jose.errors import MalformedToken
from jwtkit._jose.jws import MAX_LENGTH, parse, sign_compact, verify_compact_cached
from jwtkit._jose.keys import Key, KeySet
from jwtkit._jose.strictjson import MAX_DEPTH, dumps, loads_object

__all__ = ["decode", "decode_unverified", "encode"]

_time = time.time
_orjson_loads = orjson.loads
_orjson_dumps = orjson.dumps
_B64 = base64url.encode


def _json_claims(claims: Mapping[str, Any]) -> Mapping[str, Any]:
    """The claims ready for JSON: aware datetimes in ``exp``/``nbf``/``iat`` become NumericDates."""
    converted: dict[str, Any] | None = None
    for name in DATE_CLAIMS:
        value = claims.get(name)
        if value is None:
            continue
        kind = type(value)
        if kind is int:
            continue
        if kind is float and math.isfinite(value):
            continue
        if isinstance(value, datetime):
            if value.tzinfo is None:
                raise ValueError(f"{name} must be an aware datetime or a number")
            if converted is None:
                converted = dict(claims)
            converted[name] = int(value.timestamp())
            continue
        raise ValueError(f"{name} must be a finite number (a NumericDate) or an aware datetime")
    if converted is not None:
        return converted
    return claims if type(claims) is dict else dict(claims)


def encode(
    claims: Mapping[str, Any], key: Key, *, headers: Mapping[str, Any] | None = None, typ: str | None = "JWT"
) -> str:
    """Sign ``claims`` as a compact JWT; the header gets ``alg``, ``kid`` (if the key has one) and ``typ``.

    ``exp``, ``nbf`` and ``iat`` may be given as numbers or aware datetimes; anything else there is refused.

    Args:
        claims: the JWT claims set; JSON-serialisable with string keys.
        key: a :class:`Key` that can sign (an HMAC key or a private key).
        headers: extra JOSE header parameters; they may not contradict ``alg``/``kid`` or use
            ``crit``/``b64``/``zip``.
        typ: the ``typ`` header parameter (RFC 8725 §3.11); None leaves it out.

    Raises:
        UnusableKey: ``key``, when the key cannot sign.
        ValueError: for bad dates or headers; TypeError for claims JSON cannot carry.

    Example:
        >>> from jwtkit import Key, encode, decode
        >>> key = Key.from_secret(b"0123456789abcdef0123456789abcdef")
        >>> token = encode({"sub": "alice", "exp": 2_000_000_000}, key)
        >>> decode(token, key, subject="alice", now=1_700_000_000)["sub"]
        'alice'
    """
    if type(claims) is not dict:
        if not isinstance(claims, Mapping):
            raise TypeError("claims must be a mapping")
        claims = dict(claims)
    get = claims.get
    exp, nbf, iat = get("exp"), get("nbf"), get("iat")
    # Integer (or absent) dates need no conversion; anything else goes through the checks.
    if not (
        (exp is None or type(exp) is int)
        and (nbf is None or type(nbf) is int)
        and (iat is None or type(iat) is int)
    ):
        claims = _json_claims(claims)
    if headers is None and typ == "JWT" and type(key) is Key:
        # The common case, flat: the key holds its encoded header and its signer (R5: only its own alg).
        signer = key._signer
        if signer is not None:
            signing_input = key._header + b"." + _B64(dumps(claims))
            return (signing_input + b"." + _B64(signer(signing_input))).decode("ascii")
    return sign_compact(dumps(claims), key, headers=headers, typ=typ)


def decode(
    token: str | bytes,
    key: Key | KeySet,
    *,
    algorithms: Collection[str] | None = None,
    issuer: str | None = None,
    audience: str | Collection[str] | None = None,
    subject: str | None = None,
    leeway: float | timedelta = 0,
    require: Collection[str] = ("exp",),
    typ: str | None = None,
    now: float | None = None,
    max_length: int = MAX_LENGTH,
) -> dict[str, Any]:
    """Verify a compact JWT and return its claims.

    The order is fixed (``docs/token-rules.md``): length, three canonical segments, strict header, ``alg``
    on the allow-list and bound to the key, ``typ``, key by ``kid``, exact signature length, signature,
    strict payload JSON object, then the claims: ``require`` present, ``iss``/``sub``/``aud``, then
    ``exp``/``nbf``/``iat``. No argument turns a check off.

    Args:
        token: the compact JWT, ``str`` or ``bytes``.
        key: a :class:`Key` or a :class:`KeySet` to select from by ``kid`` and ``alg``.
        algorithms: narrows the algorithms the key(s) allow.
        issuer: ``iss`` must equal it exactly.
        audience: a string, or several; ``aud`` must contain one of them. When None, a token
            with ``aud`` fails.
        subject: ``sub`` must equal it exactly.
        leeway: seconds (or a timedelta) of clock skew allowed for ``exp``, ``nbf`` and ``iat``.
        require: claims that must be present.
        typ: the required ``typ`` header, compared case-insensitively with an implied ``application/``.
        now: the current time (seconds since the epoch); defaults to ``time.time()``.
        max_length: longest token accepted, in octets.

    Raises:
        JWTError: with ``.code`` one of ``too_large``, ``malformed``, ``header``, ``algorithm``, ``key``,
            ``signature``, ``claim``, ``expired``, ``not_yet_valid``, ``issued_in_future``. No other exception
            escapes for any token input; bad options raise ``TypeError``/``ValueError``.

    Example:
        >>> from jwtkit import Key, JWTError, encode, decode
        >>> key = Key.from_secret(b"0123456789abcdef0123456789abcdef")
        >>> token = encode({"exp": 1_000}, key)
        >>> try:
        ...     decode(token, key, now=2_000)
        ... except JWTError as err:
        ...     print(err.code)
        expired
    """
    _, payload = verify_compact_cached(token, key, algorithms, typ, max_length)
    # R11: parsed only now that the signature holds. strictjson.loads_object's fast path, inlined.
    claims: dict[str, Any]
    try:
        parsed = _orjson_loads(payload)
    except ValueError:
        parsed = None
    if (
        type(parsed) is dict
        and _orjson_dumps(parsed) == payload
        and payload.count(b"{") + payload.count(b"[") <= MAX_DEPTH
    ):
        claims = parsed
    else:
        try:
            claims = loads_object(payload)
        except ValueError:
            raise MalformedToken("the payload is not a strict JSON object") from None
    if type(require) is str:
        raise TypeError("require must be a collection of claim names, not a string")
    if type(leeway) is not int:
        leeway = seconds(leeway, "leeway")
    if leeway < 0:
        raise ValueError("leeway must not be negative")
    validate_claims(
        claims, _time() if now is None else seconds(now, "now"), leeway, issuer, audience, subject, require
    )
    return claims


def decode_unverified(token: str | bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(header, claims)`` of a token WITHOUT verifying anything: for debugging tools only (R19).

    The token must still be well formed: at most 8192 octets, three canonical segments, and strict JSON
    objects with a string ``alg``.

    Raises:
        JWTError: ``too_large``, ``malformed`` or ``header``.

    Example:
        >>> from jwtkit import Key, decode_unverified, encode
        >>> token = encode({"sub": "alice"}, Key.from_secret(b"0123456789abcdef0123456789abcdef", kid="k1"))
        >>> decode_unverified(token)
        ({'alg': 'HS256', 'kid': 'k1', 'typ': 'JWT'}, {'sub': 'alice'})
    """
    header, payload = parse(token)
    try:
        claims = loads_object(payload)
    except ValueError:
        raise MalformedToken("the payload is not a strict JSON object") from None
    return header, claims
