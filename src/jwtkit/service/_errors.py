"""The service layer's errors: one tree, each class with a stable ``code`` that the web layer and the CLI
switch on.

::

    ServiceError
    ├── ServiceConfigError (also ValueError)   settings, secrets or key files are unusable
    ├── InvalidCredentials                     wrong password or unknown user (never says which)
    ├── Throttled                              too many failures; ``.retry_after`` seconds
    ├── AccountDisabled
    ├── AccountUnverified
    ├── InvalidToken                           ``.reason``: the JWTError code, or revoked/wrong_type/agent/...
    │   ├── TokenExpired
    │   ├── SessionRevoked
    │   ├── RefreshReused
    │   └── InvalidDPoPProof                   a DPoP proof (RFC 9449) is missing or refused; ``.reason``
    │       └── UseDPoPNonce                   the server wants its nonce in the proof; ``.nonce``
    ├── UsernameTaken
    ├── InvalidUsername
    ├── WeakPassword
    ├── InvalidEmail
    └── UserNotFound

:class:`jwtkit.store.StoreUnavailable` is not wrapped: it propagates unchanged so that callers answer 503.
"""

from __future__ import annotations

__all__ = [
    "AccountDisabled",
    "AccountUnverified",
    "InvalidCredentials",
    "InvalidDPoPProof",
    "InvalidEmail",
    "InvalidToken",
    "InvalidUsername",
    "RefreshReused",
    "ServiceConfigError",
    "ServiceError",
    "SessionRevoked",
    "Throttled",
    "TokenExpired",
    "UseDPoPNonce",
    "UserNotFound",
    "UsernameTaken",
    "WeakPassword",
]


class ServiceError(Exception):
    """Root of the service errors. ``str(error)`` is safe to show to the user who caused it."""

    code = "service_error"
    default_message = "the request could not be completed"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.default_message)

    @property
    def message(self) -> str:
        return str(self.args[0])


class ServiceConfigError(ServiceError, ValueError):
    """Raised where the service is built: a setting, secret or key file is unusable."""

    code = "service_config"
    default_message = "the service configuration is invalid"


class InvalidCredentials(ServiceError):
    """Raised by login for a wrong password and for an unknown user alike (no user enumeration)."""

    code = "invalid_credentials"
    default_message = "invalid username or password"


class Throttled(ServiceError):
    """Raised by login while the username or the client IP is locked out after repeated failures."""

    code = "throttled"
    default_message = "too many failed attempts; try again later"

    def __init__(self, retry_after: float, message: str | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AccountDisabled(ServiceError):
    """A disabled account, for apps that raise it themselves. jwtkit's login no longer does: a disabled
    account answers :class:`InvalidCredentials` whatever the password (no password oracle)."""

    code = "account_disabled"
    default_message = "this account is disabled"


class AccountUnverified(ServiceError):
    """Raised by login when the email is not verified and the configuration requires it."""

    code = "account_unverified"
    default_message = "this account's email address is not verified yet"


class InvalidToken(ServiceError):
    """Raised when a presented token is refused. ``.reason`` says why: a ``JWTError`` code (``signature``,
    ``malformed``, ``claim``, ...) or one of ``revoked``, ``wrong_type``, ``agent``, ``disabled``, ``used``,
    ``stale``."""

    code = "invalid_token"
    default_message = "the token is invalid"

    def __init__(self, reason: str = "invalid", message: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason


class TokenExpired(InvalidToken):
    """Raised when a presented token has expired (``exp`` passed)."""

    code = "token_expired"
    default_message = "the token has expired"

    def __init__(self, reason: str = "expired", message: str | None = None) -> None:
        super().__init__(reason, message)


class SessionRevoked(InvalidToken):
    """Raised when the token's session was logged out, revoked, cut off or has ended."""

    code = "session_revoked"
    default_message = "the session has ended"

    def __init__(self, reason: str = "revoked", message: str | None = None) -> None:
        super().__init__(reason, message)


class RefreshReused(InvalidToken):
    """Raised when a refresh token that was already used comes back: the session and its family are revoked
    (RFC 9700 §4.14)."""

    code = "refresh_reused"
    default_message = "this refresh token was already used; the session has been revoked"

    def __init__(self, reason: str = "reused", message: str | None = None) -> None:
        super().__init__(reason, message)


class InvalidDPoPProof(InvalidToken):
    """Raised when a request's DPoP proof (RFC 9449) is missing, malformed or fails a check. ``.reason``:
    ``missing``, ``count``, ``malformed``, ``too_large``, ``typ``, ``algorithm``, ``jwk``, ``private_jwk``,
    ``signature``, ``claim``, ``iat``, ``jti``, ``htm``, ``htu``, ``ath``, ``nonce``, ``jkt``, ``replay``
    ``bound`` (a DPoP-bound token presented without DPoP) or ``required`` (an unbound token where DPoP is
    required)."""

    code = "invalid_dpop_proof"
    default_message = "the DPoP proof is invalid"


class UseDPoPNonce(InvalidDPoPProof):
    """Raised when the server requires a DPoP nonce and the proof has none or an old one: retry once with
    ``.nonce`` (sent as ``DPoP-Nonce``, RFC 9449 §8)."""

    code = "use_dpop_nonce"
    default_message = "the DPoP proof needs the server's current nonce"

    def __init__(self, nonce: str, message: str | None = None) -> None:
        super().__init__("nonce", message)
        self.nonce = nonce


class UsernameTaken(ServiceError):
    """Raised by registration when the normalised username already exists."""

    code = "username_taken"
    default_message = "this username is taken"


class InvalidUsername(ServiceError):
    """Raised by registration when the username has the wrong length or characters."""

    code = "invalid_username"
    default_message = "the username is not valid"


class WeakPassword(ServiceError):
    """Raised when a new password is refused; the message says why."""

    code = "weak_password"
    default_message = "the password is too weak"


class InvalidEmail(ServiceError):
    """Raised when an email address does not look like one, or an account has none where one is needed."""

    code = "invalid_email"
    default_message = "the email address is not valid"


class UserNotFound(ServiceError):
    """Raised when an operation names a user id that does not exist."""

    code = "user_not_found"
    default_message = "no such user"
