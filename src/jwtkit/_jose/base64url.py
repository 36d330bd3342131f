"""Unpadded base64url (RFC 4648 §5, RFC 7515 §2): encoding, and strict decoding of canonical segments only."""

from __future__ import annotations

import binascii
from collections.abc import Callable

__all__ = [
    "ALPHABET",
    "LAST_CHARACTERS",
    "PAD",
    "canonical_tail",
    "decode",
    "decode_canonical",
    "decode_padded",
    "encode",
    "is_canonical",
]

_fast_b64decode: Callable[..., bytes] | None
_fast_b64encode: Callable[..., bytes] | None
try:  # SIMD base64 when installed (a dependency); the stdlib otherwise.
    from pybase64 import b64decode as _fast_b64decode
    from pybase64 import b64encode as _fast_b64encode
except ImportError:  # pragma: no cover - exercised only without pybase64
    _fast_b64decode = _fast_b64encode = None

_TO_URL = bytes.maketrans(b"+/", b"-_")
_TO_STD = bytes.maketrans(b"-_", b"+/")
#: The base64url alphabet (RFC 4648 §5); ``bytes.translate(None, ALPHABET)`` leaves only the bytes outside it.
ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# The last character of a segment of length 4k+2 carries 4 unused bits, of 4k+3 carries 2; canonical
# encodings leave them zero, so only these characters may end such a segment (R2).
_LAST_OF_2 = frozenset(b"AQgw")
_LAST_OF_3 = frozenset(b"AEIMQUYcgkosw048")
#: The characters that may end a segment, indexed by ``len(segment) % 4`` (none for 4k+1; any for 4k).
LAST_CHARACTERS: tuple[frozenset[int], ...] = (frozenset(ALPHABET), frozenset(), _LAST_OF_2, _LAST_OF_3)
#: The padding that completes an unpadded segment, indexed by ``len(segment) % 4`` (4k+1 is never valid).
PAD = (b"", b"", b"==", b"=")


def encode(data: bytes) -> bytes:
    """``data`` as unpadded base64url ASCII bytes."""
    if _fast_b64encode is not None:
        return _fast_b64encode(data, b"-_").rstrip(b"=")
    return binascii.b2a_base64(data, newline=False).translate(_TO_URL, b"=")


def is_canonical(segment: bytes) -> bool:
    """Whether ``segment`` is the unique unpadded base64url encoding of some bytes (R2).

    It must use only the URL-safe alphabet (no '=', '+', '/', whitespace), not have a length of 4k+1, and
    leave the unused bits of its last character zero, so that it re-encodes to itself.
    """
    return not segment.translate(None, ALPHABET) and canonical_tail(segment)


def canonical_tail(segment: bytes) -> bool:
    """Whether a segment over the alphabet has a valid length and zero unused bits in its last character."""
    rest = len(segment) & 3
    if rest == 0:
        return True
    if rest == 2:
        return segment[-1] in _LAST_OF_2
    return rest == 3 and segment[-1] in _LAST_OF_3


def decode_padded(data: bytes) -> bytes:
    """Decode padded base64 in the URL-safe alphabet; ``ValueError`` for any byte outside it or bad padding.

    It does not refuse '+' and '/', nor non-zero unused bits: callers check those first (see
    :func:`is_canonical`).
    """
    if _fast_b64decode is not None:
        # Positional arguments: its validating padded path is the SIMD one (keywords such as padded=False
        # take a slower path).
        return _fast_b64decode(data, b"-_", True)
    return binascii.a2b_base64(data.translate(_TO_STD), strict_mode=True)


def decode_canonical(segment: bytes) -> bytes:
    """Decode a segment already known to be canonical (see :func:`is_canonical`)."""
    return decode_padded(segment + PAD[len(segment) & 3])


def decode(segment: str | bytes) -> bytes:
    """Strictly decode unpadded base64url; raise ``ValueError`` on anything not canonical (R2)."""
    if isinstance(segment, str):
        try:
            segment = segment.encode("ascii")
        except UnicodeEncodeError:
            raise ValueError("not base64url") from None
    if not is_canonical(segment):
        raise ValueError("not canonical unpadded base64url")
    return decode_canonical(segment)
