"""Authentication failures at the HTTP edge, and the one table that maps every error code to a status.

The middleware and the server raise :class:`AuthError` with one of three codes, kept distinct as RFC 6750 §3.1
asks: ``missing_token`` (no credentials: 401,
                         ``WWW-Authenticate: Bearer`` without an error), ``invalid_token``
(credentials that do not verify: 401 with ``error="invalid_token"``) and ``store_unavailable`` (the revocation
check cannot answer: 503, fail closed). ``reason`` says why a token is invalid: a ``JWTError`` code
(``expired``, ``signature``, ``malformed``, ...) or ``revoked``, ``rejected`` (the validate callback said no),
``wrong_type``, ``agent``.

``STATUS`` maps every error code the JSON API can return (service, store and request errors) to its status,
so that handlers never pick a status on their own.
"""

from __future__ import annotations

__all__ = ["DESCRIPTIONS", "STATUS", "AuthError", "www_authenticate"]

# One table: error code -> HTTP status. Service codes come from jwtkit.service errors (docs/architecture.md).
STATUS: dict[str, int] = {
    # authentication (RFC 6750 §3.1)
    "missing_token": 401,
    "invalid_token": 401,
    "token_expired": 401,
    "session_revoked": 401,
    "refresh_reused": 401,
    "invalid_credentials": 401,
    "account_disabled": 403,
    "account_unverified": 403,
    "csrf_failed": 403,
    "throttled": 429,
    # accounts
    "username_taken": 409,
    "invalid_username": 400,
    "weak_password": 400,
    "invalid_email": 400,
    "user_not_found": 404,
    # requests
    "bad_request": 400,
    "missing_field": 400,
    "invalid_json": 400,
    "not_found": 404,
    "method_not_allowed": 405,
    "body_too_large": 413,
    "unsupported_media_type": 415,
    "headers_too_large": 431,
    # infrastructure
    "store_unavailable": 503,
    "internal_error": 500,
}

# Human text for token reasons; JSON clients switch on the codes, people read these.
DESCRIPTIONS: dict[str, str] = {
    "expired": "The access token expired",
    "not_yet_valid": "The access token is not valid yet",
    "issued_in_future": "The access token was issued in the future",
    "signature": "The token signature does not verify",
    "malformed": "The token is malformed",
    "too_large": "The token is too large",
    "header": "The token header is invalid",
    "algorithm": "The token algorithm is not accepted",
    "key": "No key matches the token",
    "claim": "A token claim is missing or wrong",
    "revoked": "The session was revoked",
    "rejected": "The token was rejected",
    "wrong_type": "The token is not an access token",
    "agent": "The token was issued to another client",
    "disabled": "The account is disabled",
}


class AuthError(Exception):
    """Raised when a request is not authenticated: no token, a bad token, or a revocation check that failed.

    ``code`` is ``missing_token``, ``invalid_token`` or ``store_unavailable``; ``reason`` refines
    ``invalid_token`` (``expired``, ``signature``, ``revoked``, ...); ``status`` is 401 or 503.
    """

    def __init__(self, code: str, reason: str = "") -> None:
        self.code = code
        self.reason = reason
        self.status = STATUS.get(code, 401)
        super().__init__(f"{code}: {reason}" if reason else code)

    @property
    def description(self) -> str:
        """A sentence for people; never echoes the token."""
        if self.code == "missing_token":
            return "An access token is required"
        if self.code == "store_unavailable":
            return "The session store is unavailable; try again shortly"
        return DESCRIPTIONS.get(self.reason, "The access token is invalid")

    def to_json(self) -> dict[str, str]:
        """The JSON error body: ``{"error": code, "reason": reason, "error_description": text}``."""
        body = {"error": self.code, "error_description": self.description}
        if self.reason:
            body["reason"] = self.reason
        return body


def www_authenticate(error: AuthError | None, realm: str | None = None) -> str:
    """The ``WWW-Authenticate`` value for a 401 (RFC 6750 §3): an error only when a bad token was sent."""
    params = []
    if realm:
        params.append(f'realm="{realm}"')
    if error is not None and error.code == "invalid_token":
        params.append('error="invalid_token"')
        params.append(f'error_description="{error.description}"')
    return "Bearer " + ", ".join(params) if params else "Bearer"
