"""jwtkit: JSON Web Tokens for Python apps.

This package is the token core's one public path: :class:`Key`, :class:`KeySet`, :func:`encode`,
:func:`decode`, :func:`decode_unverified`, the :mod:`jwtkit.jwa` algorithm layer and the :class:`JWTError`
tree. Their implementation lives in the private ``jwtkit._jose``. Session stores, the auth service, the web
app and the CLI live in ``jwtkit.store``, ``jwtkit.service``, ``jwtkit.web`` and ``jwtkit.cli``.
"""

from __future__ import annotations

from jwtkit import jwa
from jwtkit._jose.errors import (
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
from jwtkit._jose.jwt import decode, decode_unverified, encode
from jwtkit._jose.keys import Key, KeySet

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

__version__ = "0.1.0"

# Show the public path in reprs, tracebacks and docs, as httpx does.
for _name in __all__:
    _obj = globals()[_name]
    if _name != "jwa":
        _obj.__module__ = "jwtkit"
del _name, _obj
