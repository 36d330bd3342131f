"""jwtkit's token core: a strict, fast compact JWS/JWT codec over ``hmac`` and ``cryptography``.

Modules, one job each: :mod:`.errors` (the error tree), :mod:`.base64url`, :mod:`.strictjson`, :mod:`.jwa`
(algorithm table, sign/verify), :mod:`.keys` (Key, KeySet), :mod:`.jws` (compact JWS), :mod:`.claims`
(registered claims) and :mod:`.jwt` (encode/decode). It imports nothing else of jwtkit and does no I/O.
"""

from __future__ import annotations

from jwtkit.jose import jwa
from jwtkit.jose.errors import (
    BadSignature,
    DisallowedAlgorithm,
    ExpiredToken,
    FutureIssuedToken,
    InvalidClaim,
    InvalidHeader,
    JWTError,
    MalformedToken,
    NotYetValidToken,
    TokenTooLarge,
    UnusableKey,
)
from jwtkit.jose.jwt import decode, decode_unverified, encode
from jwtkit.jose.keys import Key, KeySet

__all__ = [
    "BadSignature",
    "DisallowedAlgorithm",
    "ExpiredToken",
    "FutureIssuedToken",
    "InvalidClaim",
    "InvalidHeader",
    "JWTError",
    "Key",
    "KeySet",
    "MalformedToken",
    "NotYetValidToken",
    "TokenTooLarge",
    "UnusableKey",
    "decode",
    "decode_unverified",
    "encode",
    "jwa",
]
