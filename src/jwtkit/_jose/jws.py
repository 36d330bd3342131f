"""JWS Compact Serialization (RFC 7515 §7.1): split, check and verify a token, returning the raw payload.

:func:`verify_compact` is the verification sequence of ``docs/token-rules.md`` up to the signature: length
(R1), three canonical segments (R2, R17), strict header (R3, R7), ``alg`` on the allow-list (R4), ``typ``
(R15), key selection by ``alg`` and ``kid`` (R5, R9), exact signature length and verification (R10). The
payload is decoded but not parsed: that is the JWT layer's job, after the signature holds (R11).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from types import MappingProxyType
from typing import Any

from jwtkit._jose import base64url
from jwtkit._jose.algorithms import ALGORITHMS
from jwtkit._jose.errors import (
    BadSignature,
    DisallowedAlgorithm,
    InvalidHeader,
    MalformedToken,
    TokenTooLarge,
    UnusableKey,
)
from jwtkit._jose.keys import Key, KeySet
from jwtkit._jose.strictjson import dumps, loads_object

__all__ = [
    "MAX_LENGTH",
    "normalize_typ",
    "parse",
    "sign_compact",
    "verify_compact",
    "verify_compact_cached",
]

#: Default limit on a token's length in octets, checked before any parsing (R1).
MAX_LENGTH = 8192
#: Header parameters that are refused whatever their value (R7): jwtkit understands no extension, JWTs never
#: use unencoded payloads (RFC 7797), and compressed JWS is never decompressed.
REFUSED_HEADER_PARAMETERS = ("crit", "b64", "zip")
_STRING_PARAMETERS = ("kid", "typ", "cty")
_HEADER_CACHE_SIZE = 256
_CACHED_HEADER_LENGTH = 1024  # longer headers are parsed every time rather than held

_TOKEN_ALPHABET = base64url.ALPHABET + b"."
_PAD = base64url.PAD
_ALGORITHMS = frozenset(ALGORITHMS)
_TAILS = base64url.LAST_CHARACTERS
_decode_padded = base64url.decode_padded
_canonical_tail = base64url.canonical_tail
_decode_segment = base64url.decode_canonical
_B64 = base64url.encode

#: A validated header as cached: (header, alg, kid, normalised typ, whether every member is a scalar). The
#: header is frozen (objects are read-only views, arrays tuples) and never reaches a caller as it is.
HeaderEntry = tuple[Mapping[str, Any], str, str | None, str | None, bool]

# Parsed, validated headers keyed by their raw segment: headers repeat across tokens. Entries are immutable,
# so nothing a caller does to a header it was given can change what a later token sees. Cleared when full.
_headers: dict[bytes, HeaderEntry] = {}
_SCALARS = (str, int, float, bool, type(None))


def normalize_typ(typ: str) -> str:
    """``typ`` compared case-insensitively with an implied ``application/`` prefix (RFC 7515 §4.1.9, R15)."""
    typ = typ.lower()
    return typ if "/" in typ else "application/" + typ


def _as_bytes(token: object, max_length: int) -> bytes:
    # R1: the length is checked before anything else looks at the token.
    if isinstance(token, str):
        if len(token) > max_length:
            raise TokenTooLarge("the token is too long")
        try:
            return token.encode("ascii")
        except UnicodeEncodeError:
            raise MalformedToken("the token has characters outside base64url") from None
    if isinstance(token, bytes | bytearray | memoryview):
        if len(token) > max_length:
            raise TokenTooLarge("the token is too long")
        return bytes(token)
    raise MalformedToken("the token must be str or bytes")


def _split(raw: bytes) -> tuple[bytes, bytes, bytes]:
    dots = raw.count(b".")
    if dots != 2:
        # R17: five segments is JWE; JSON serialisations have none.
        raise MalformedToken("a JWS compact token has exactly three segments")
    if raw.translate(None, _TOKEN_ALPHABET):
        raise MalformedToken("the token has characters outside base64url")  # R2: no '=', '+', '/', spaces
    header, payload, signature = raw.split(b".")
    if not header or not signature:
        raise MalformedToken("empty header or signature")  # R2; an empty signature is also A.5 "none"
    if not (_canonical_tail(header) and _canonical_tail(payload) and _canonical_tail(signature)):
        raise MalformedToken("segments must be canonical unpadded base64url")  # R2
    return header, payload, signature


def _parse_header(segment: bytes) -> dict[str, Any]:
    try:
        header = loads_object(_decode_segment(segment))
    except ValueError:
        raise MalformedToken("the header is not a strict JSON object") from None
    # R3: member types.
    if type(header.get("alg")) is not str:
        raise InvalidHeader("the header needs a string alg")
    for name in _STRING_PARAMETERS:
        if name in header and type(header[name]) is not str:
            raise InvalidHeader(f"header {name} must be a string")
    if "crit" in header:
        crit = header["crit"]
        if type(crit) is not list or not crit or not all(type(item) is str for item in crit):
            raise InvalidHeader("header crit must be a non-empty list of strings")
    return header


def _frozen(value: Any) -> Any:
    # JSON values only (dict, list, scalars), nested at most strictjson.MAX_DEPTH deep.
    kind = type(value)
    if kind is dict:
        return MappingProxyType({name: _frozen(item) for name, item in value.items()})
    if kind is list:
        return tuple(_frozen(item) for item in value)
    return value


def _thawed(value: Any) -> Any:
    kind = type(value)
    if kind is MappingProxyType or kind is dict:
        return {name: _thawed(item) for name, item in value.items()}
    if kind is tuple or kind is list:
        return [_thawed(item) for item in value]
    return value


def fresh_header(entry: HeaderEntry) -> dict[str, Any]:
    """The caller's own copy of a cached header: a new dict, and new dicts and lists all the way down."""
    header = entry[0]
    return dict(header) if entry[4] else _thawed(header)


def _header_entry(segment: bytes) -> HeaderEntry:
    entry = _headers.get(segment)
    if entry is not None:
        return entry
    header = _parse_header(segment)
    for name in REFUSED_HEADER_PARAMETERS:
        if name in header:
            raise InvalidHeader(f"header parameter {name} is not supported")  # R7
    typ = header.get("typ")
    flat = all(type(value) in _SCALARS for value in header.values())
    entry = (
        MappingProxyType(header) if flat else _frozen(header),
        header["alg"],
        header.get("kid"),
        None if typ is None else normalize_typ(typ),
        flat,
    )
    if len(segment) <= _CACHED_HEADER_LENGTH:
        if len(_headers) >= _HEADER_CACHE_SIZE:
            _headers.clear()
        _headers[segment] = entry
    return entry


def verify_compact(
    token: str | bytes,
    key: Key | KeySet,
    *,
    algorithms: Collection[str] | None = None,
    typ: str | None = None,
    max_length: int = MAX_LENGTH,
) -> tuple[dict[str, Any], bytes]:
    """Verify a compact JWS and return ``(header, payload bytes)``; the payload is not parsed.

    The header is the caller's own (a fresh dict, nested values included): changing it changes no cache.

    Raises:
        JWTError: ``too_large``, ``malformed``, ``header``, ``algorithm``, ``key`` or ``signature``.
    """
    entry, payload = verify_compact_cached(token, key, algorithms, typ, max_length)
    return fresh_header(entry), payload


def verify_compact_cached(
    token: str | bytes,
    key: Key | KeySet,
    algorithms: Collection[str] | None,
    typ: str | None,
    max_length: int,
) -> tuple[HeaderEntry, bytes]:
    """:func:`verify_compact` with positional arguments, for the decode hot path: it returns the immutable
    cached :data:`HeaderEntry` instead of a copy of the header (see :func:`fresh_header`)."""
    # The hot path, kept flat: _as_bytes and _split inlined for the common str token (R1, R2, R17).
    if type(token) is str:
        if len(token) > max_length:
            raise TokenTooLarge("the token is too long")
        try:
            raw = token.encode("ascii")
        except UnicodeEncodeError:
            raise MalformedToken("the token has characters outside base64url") from None
    else:
        raw = _as_bytes(token, max_length)
    # R1/R17: exactly two periods, found by a split bounded to four parts (five segments is JWE).
    parts = raw.split(b".", 3)
    if len(parts) != 3:
        raise MalformedToken("a JWS compact token has exactly three segments")
    # R2: the URL-safe alphabet without padding: one pass deletes every allowed byte and must leave none.
    if raw.translate(None, _TOKEN_ALPHABET):
        raise MalformedToken("segments must be unpadded base64url")
    header_segment, payload_segment, signature_segment = parts
    # base64url.canonical_tail, inlined: a 4k+1 length never, and zero unused bits in the last character.
    if not (
        header_segment
        and signature_segment
        and (not len(header_segment) & 3 or header_segment[-1] in _TAILS[len(header_segment) & 3])
        and (not len(payload_segment) & 3 or payload_segment[-1] in _TAILS[len(payload_segment) & 3])
        and (not len(signature_segment) & 3 or signature_segment[-1] in _TAILS[len(signature_segment) & 3])
    ):
        raise MalformedToken("segments must be non-empty canonical unpadded base64url")
    try:
        signature = _decode_padded(signature_segment + _PAD[len(signature_segment) & 3])
        payload = _decode_padded(payload_segment + _PAD[len(payload_segment) & 3])
    except ValueError:
        raise MalformedToken("segments must be canonical unpadded base64url") from None
    # A cache hit means these exact header bytes were decoded and checked before (R2, R3, R7).
    entry = _headers.get(header_segment)
    if entry is None:
        entry = _header_entry(header_segment)
    _, alg, kid, token_typ, _ = entry
    # R4: byte-equal to a table entry (never "none"), and to the caller's narrower list when given.
    if alg not in _ALGORITHMS:
        raise DisallowedAlgorithm("the token's algorithm is not supported")
    if algorithms is not None:
        if type(algorithms) is str:
            raise TypeError("algorithms must be a collection of names, not a string")
        if alg not in algorithms:
            raise DisallowedAlgorithm("the token's algorithm is not allowed")
    if typ is not None and token_typ != normalize_typ(typ):
        raise InvalidHeader("the token's typ is missing or not the expected one")  # R15, RFC 8725 §3.11
    # R5, R9: the header alg must be the key's, and a kid must name a configured key. jku/x5u/jwk/x5c are
    # never looked at (R8).
    if isinstance(key, Key):
        if key._alg != alg:
            raise DisallowedAlgorithm("the token's algorithm is not the key's algorithm")
        if kid is not None and kid != key._kid:
            raise UnusableKey("no key with the token's kid")
        if key._verifier is None:
            raise UnusableKey("the key may not verify (use/key_ops)")
        candidates: tuple[Key, ...] = (key,)
    elif isinstance(key, KeySet):
        candidates = key.select(kid, alg)
    else:
        raise TypeError("key must be a jwtkit.Key or jwtkit.KeySet")
    signing_input = raw[: len(header_segment) + 1 + len(payload_segment)]
    for candidate in candidates:
        # R10: the exact length before any crypto call.
        if len(signature) == candidate._sig_size and candidate._verifier(signing_input, signature):  # type: ignore[misc]
            break
    else:
        raise BadSignature("the signature does not verify")
    return entry, payload


def parse(token: str | bytes, *, max_length: int = MAX_LENGTH) -> tuple[dict[str, Any], bytes]:
    """Split and parse a compact JWS without verifying it: ``(header, payload bytes)``, for debugging only.

    Applies R1-R3 (length, canonical segments, strict header JSON with a string ``alg``), nothing else.
    """
    raw = _as_bytes(token, max_length)
    header_segment, payload_segment, _ = _split(raw)
    return _parse_header(header_segment), _decode_segment(payload_segment)


def sign_compact(
    payload: bytes, key: Key, *, headers: Mapping[str, Any] | None = None, typ: str | None = None
) -> str:
    """Sign ``payload`` as a compact JWS with ``key``; the header gets ``alg``, ``kid`` and ``typ``.

    Raises:
        UnusableKey: ``key``, when the key cannot sign.
        ValueError: when ``headers`` contradict the key or carry a parameter jwtkit refuses (R7).
    """
    if not isinstance(key, Key):
        raise TypeError("key must be a jwtkit.Key")
    signer = key._signer
    if signer is None:
        raise UnusableKey("the key cannot sign (a public key, or use/key_ops forbid it)")
    if headers is None:
        header_segment = key._header if typ == "JWT" else key.encoded_header(typ)
    else:
        header_segment = _B64(dumps(_custom_header(key, headers, typ)))
    signing_input = header_segment + b"." + _B64(payload)
    return (signing_input + b"." + _B64(signer(signing_input))).decode("ascii")


def _custom_header(key: Key, headers: Mapping[str, Any], typ: str | None) -> dict[str, Any]:
    header: dict[str, Any] = {"alg": key._alg}
    if key._kid is not None:
        header["kid"] = key._kid
    if typ is not None:
        header["typ"] = typ
    for name, value in headers.items():
        if name in REFUSED_HEADER_PARAMETERS:
            raise ValueError(f"header parameter {name} is refused by jwtkit")
        if name == "alg" and value != key._alg:
            raise ValueError("headers alg contradicts the key's algorithm")
        if name == "kid" and key._kid is not None and value != key._kid:
            raise ValueError("headers kid contradicts the key's kid")
        if name in _STRING_PARAMETERS and type(value) is not str:
            raise ValueError(f"header {name} must be a string")
        header[name] = value
    return header
