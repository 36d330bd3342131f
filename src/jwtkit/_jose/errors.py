"""The token core's exception tree: one root, one stable ``code`` per class.

Every failure of :func:`jwtkit.decode` is one of these; no other exception type escapes it (R16)::

    JWTError
    ├── MalformedToken        code "malformed"         not three canonical base64url segments, bad JSON
    │   └── TokenTooLarge     code "too_large"         longer than ``max_length`` (R1)
    ├── InvalidHeader         code "header"            well-formed header with a refused member (R3, R7, R15)
    ├── DisallowedAlgorithm   code "algorithm"         ``alg`` unknown, ``none``, not allowed or not the key's
    ├── UnusableKey           code "key"               no configured key fits, or a key is refused
    ├── BadSignature          code "signature"         the signature does not verify (R10)
    └── InvalidClaim          code "claim"             a registered claim is missing, mistyped or fails
        ├── ExpiredToken      code "expired"           ``exp`` has passed
        ├── NotYetValidToken  code "not_yet_valid"     ``nbf`` is still ahead
        └── FutureIssuedToken code "issued_in_future"  ``iat`` is ahead of the clock

Messages say what was wrong and never echo the token or key material; the core raises ``from None`` so that
no chained cause can carry them either.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "CODES",
    "BadSignature",
    "DisallowedAlgorithm",
    "ExpiredToken",
    "FutureIssuedToken",
    "InvalidClaim",
    "InvalidHeader",
    "JWTError",
    "MalformedToken",
    "NotYetValidToken",
    "TokenTooLarge",
    "UnusableKey",
]

#: Every code a :class:`JWTError` can carry.
CODES = frozenset(
    {
        "malformed",
        "too_large",
        "header",
        "algorithm",
        "key",
        "signature",
        "expired",
        "not_yet_valid",
        "issued_in_future",
        "claim",
    }
)


class JWTError(Exception):
    """Root of every token and key error; switch on ``err.code`` rather than on the class."""

    code: ClassVar[str] = "malformed"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class MalformedToken(JWTError):
    """Raised when a token is not three canonical base64url segments of strict JSON (R1-R3, R11, R17)."""

    code: ClassVar[str] = "malformed"


class TokenTooLarge(MalformedToken):
    """Raised when a token is longer than ``max_length``, before any parsing (R1)."""

    code: ClassVar[str] = "too_large"


class InvalidHeader(JWTError):
    """Raised when the JOSE header has a refused or mistyped member, or the wrong ``typ`` (R3, R7, R15)."""

    code: ClassVar[str] = "header"


class DisallowedAlgorithm(JWTError):
    """Raised when ``alg`` is unknown, ``none``, not allowed, or not the key's algorithm (R4, R5)."""

    code: ClassVar[str] = "algorithm"


class UnusableKey(JWTError):
    """Raised when a key is refused, or no configured key may verify a token (R5, R6, R9)."""

    code: ClassVar[str] = "key"


class BadSignature(JWTError):
    """Raised when the signature has the wrong length or does not verify (R10)."""

    code: ClassVar[str] = "signature"


class InvalidClaim(JWTError):
    """Raised when a registered claim is missing, mistyped or fails its check (R12-R14).

    ``claim`` names the claim; ``reason`` is ``"missing"``, ``"invalid"`` (wrong type or value),
    ``"unexpected"`` (``aud`` present but no audience asked for) or ``"check_failed"``.
    """

    code: ClassVar[str] = "claim"

    def __init__(self, message: str, claim: str, reason: str) -> None:
        super().__init__(message)
        self.claim = claim
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message, self.claim, self.reason))


class ExpiredToken(InvalidClaim):
    """Raised when ``exp`` has passed: ``now >= exp + leeway`` (R12)."""

    code: ClassVar[str] = "expired"


class NotYetValidToken(InvalidClaim):
    """Raised when ``nbf`` is still ahead: ``now < nbf - leeway`` (R12)."""

    code: ClassVar[str] = "not_yet_valid"


class FutureIssuedToken(InvalidClaim):
    """Raised when ``iat`` is ahead of the clock: ``iat > now + leeway`` (R12)."""

    code: ClassVar[str] = "issued_in_future"
