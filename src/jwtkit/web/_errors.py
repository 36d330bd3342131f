"""Every error the web layer answers, in one shape, with its status from one table.

The middleware and the server raise :class:`AuthError` with one of three codes, kept distinct as RFC 6750 §3.1
asks: ``missing_token`` (no credentials: 401,
                         ``WWW-Authenticate: Bearer`` without an error), ``invalid_token``
(credentials that do not verify: 401 with ``error="invalid_token"``) and ``store_unavailable`` (the revocation
check cannot answer: 503, fail closed). ``reason`` says why a token is invalid: a ``JWTError`` code
(``expired``, ``signature``, ``malformed``, ...) or ``revoked``, ``rejected`` (the validate callback said no),
``wrong_type``, ``agent``.

``STATUS`` maps every error code the JSON API can return (service, store and request errors) to its status,
so that handlers never pick a status on their own. :func:`problem_of` turns any error a handler or the
middleware meets (:class:`AuthError`, :class:`HTTPError`, a service error, ``StoreUnavailable``, Starlette's
``HTTPException``) into one :class:`Problem`; :func:`json_response` renders it as the one JSON error body
``{"error", "error_description", "reason"?, "field"?}`` with its headers (``WWW-Authenticate`` on 401,
RFC 6750 §3; ``Retry-After`` on 429 and 503). The server's HTML pages render the same Problem.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from jwtkit.service._errors import InvalidDPoPProof, InvalidToken, ServiceError, Throttled, UseDPoPNonce
from jwtkit.store._base import StoreUnavailable

__all__ = [
    "DESCRIPTIONS",
    "STATUS",
    "AuthError",
    "HTTPError",
    "Problem",
    "json_response",
    "problem_of",
    "www_authenticate",
]

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
    "insufficient_scope": 403,  # RFC 6750 §3.1: a valid token without the scope or role a route needs
    "invalid_link": 400,
    "throttled": 429,
    # DPoP at the token endpoints (/auth, /refresh: RFC 9449 §5, §8); a resource answers 401 invalid_token
    # with a DPoP challenge instead (§7.1)
    "invalid_dpop_proof": 400,
    "use_dpop_nonce": 400,
    # accounts
    "username_taken": 409,
    "invalid_username": 400,
    "weak_password": 400,
    "invalid_email": 400,
    "user_not_found": 404,
    "no_email": 409,
    # requests
    "bad_request": 400,
    "missing_field": 400,
    "invalid_json": 400,
    "not_found": 404,
    "method_not_allowed": 405,
    "request_timeout": 408,
    "client_closed_request": 400,  # never seen by its client: it left before its body arrived
    "body_too_large": 413,
    "unsupported_media_type": 415,
    "headers_too_large": 431,
    # infrastructure
    "store_unavailable": 503,
    "overloaded": 503,
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
    "bound": "This token is bound to a DPoP key: send it as 'Authorization: DPoP' with a proof",
    "not_bound": "This token is not bound to a DPoP key: send it as 'Authorization: Bearer'",
    "required": "Only DPoP-bound tokens are accepted here",
}
# Human text for DPoP proof reasons (InvalidDPoPProof.reason)
DPOP_DESCRIPTIONS: dict[str, str] = {
    "missing": "The request has no DPoP proof",
    "count": "A request carries exactly one DPoP proof",
    "htm": "The DPoP proof was made for another method",
    "htu": "The DPoP proof was made for another URL",
    "ath": "The DPoP proof was made for another access token",
    "jkt": "The DPoP proof is signed by another key than the token's",
    "iat": "The DPoP proof is too old or from the future",
    "replay": "This DPoP proof was used before",
    "nonce": "The DPoP proof needs the server's current nonce (DPoP-Nonce)",
    "algorithm": "The DPoP proof's algorithm is not accepted",
    "private_jwk": "The DPoP proof's jwk must not hold private key material",
}


class AuthError(Exception):
    """Raised when a request is not authenticated: no token, a bad token, a cookie-borne token on a cross-site
    request, or a revocation check that failed.

    ``code`` is ``missing_token``, ``invalid_token``, ``csrf_failed`` or ``store_unavailable``; ``reason``
    refines ``invalid_token`` (``expired``, ``signature``, ``revoked``, ...); ``status`` comes from STATUS.
    """

    def __init__(self, code: str, reason: str = "", *, dpop: str | None = None, algs: str = "",
                 nonce: str | None = None) -> None:
        self.code = code
        self.reason = reason
        self.status = STATUS.get(code, 401)
        # a DPoP challenge (RFC 9449 §7.1) instead of Bearer: its error (invalid_token, invalid_dpop_proof
        # or use_dpop_nonce), the algs offered, and the nonce to send in DPoP-Nonce
        self.dpop = dpop
        self.algs = algs
        self.nonce = nonce
        super().__init__(f"{code}: {reason}" if reason else code)

    @classmethod
    def from_invalid_token(cls, error: InvalidToken, *, dpop: bool = False, algs: str = "") -> AuthError:
        """The HTTP face of the access policy's refusal: ``invalid_token`` with the policy's reason; with a
        DPoP challenge when the token came as DPoP or the refusal is about DPoP."""
        if isinstance(error, InvalidDPoPProof):
            nonce = error.nonce if isinstance(error, UseDPoPNonce) else None
            challenge = error.code if error.reason not in ("bound", "required") else "invalid_token"
            return cls("invalid_token", error.reason, dpop=challenge, algs=algs, nonce=nonce)
        return cls("invalid_token", error.reason, dpop="invalid_token" if dpop else None, algs=algs)

    @property
    def description(self) -> str:
        """A sentence for people; never echoes the token."""
        if self.code == "missing_token":
            return "An access token is required"
        if self.code == "store_unavailable":
            return "The session store is unavailable; try again shortly"
        if self.code == "csrf_failed":
            return "Cross-site request refused"
        if self.dpop in ("invalid_dpop_proof", "use_dpop_nonce"):
            return DPOP_DESCRIPTIONS.get(self.reason, "The DPoP proof is invalid")
        return DESCRIPTIONS.get(self.reason, "The access token is invalid")

    def to_json(self) -> dict[str, str]:
        """The JSON error body: ``{"error": code, "reason": reason, "error_description": text}``."""
        return problem_of(self).body()


class HTTPError(Exception):
    """Raised by handlers to answer with an error: ``code`` picks the status from ``STATUS``."""

    def __init__(self, code: str, message: str, *, field: str | None = None, reason: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        self.code = code
        self.message = message
        self.status = STATUS.get(code, 400)
        self.field = field
        self.reason = reason
        self.headers = headers or {}
        super().__init__(f"{code}: {message}")

    def to_json(self) -> dict[str, str]:
        return problem_of(self).body()


@dataclass(frozen=True, slots=True)
class Problem:
    """One error answer: code, status (from STATUS), a sentence for people, and what refines it."""

    code: str
    description: str
    reason: str | None = None
    field: str | None = None
    headers: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def status(self) -> int:
        return STATUS.get(self.code, 400)

    def body(self) -> dict[str, str]:
        body = {"error": self.code, "error_description": self.description}
        if self.reason:
            body["reason"] = self.reason
        if self.field:
            body["field"] = self.field
        return body


_STARLETTE_CODES = {404: "not_found", 405: "method_not_allowed"}
_STARLETTE_TEXT = {404: "Not found", 405: "Method not allowed"}
_STORE_DOWN = "The session store is unavailable; try again shortly"


def problem_of(error: BaseException) -> Problem:
    """The one mapping from an error to its answer (status from STATUS, headers by status)."""
    code: str
    reason: str | None = None
    field_name: str | None = None
    headers: dict[str, str] = {}
    if isinstance(error, AuthError):
        code, description, reason = error.code, error.description, error.reason or None
        if error.nonce is not None:
            headers["DPoP-Nonce"] = error.nonce
    elif isinstance(error, HTTPError):
        code, description, reason, field_name = error.code, error.message, error.reason, error.field
        headers = dict(error.headers)
    elif isinstance(error, ServiceError):
        code, description = error.code, str(error)
        if STATUS.get(code, 400) == 401 or code in _REASONED:
            reason = getattr(error, "reason", None)
        if isinstance(error, Throttled):
            headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
        elif isinstance(error, UseDPoPNonce):
            headers["DPoP-Nonce"] = error.nonce
    elif isinstance(error, StoreUnavailable):
        code, description = "store_unavailable", _STORE_DOWN
    elif isinstance(error, ClientDisconnect):
        code, description = "client_closed_request", "The client left before its body arrived"
    elif isinstance(error, HTTPException):
        code = _STARLETTE_CODES.get(error.status_code, "bad_request")
        description = _STARLETTE_TEXT.get(error.status_code, str(error.detail))
        headers = dict(error.headers or {})
    else:
        code, description = "internal_error", "Internal error"
    status = STATUS.get(code, 400)
    if status == 401:
        if isinstance(error, AuthError):
            headers.setdefault("WWW-Authenticate", www_authenticate(error))
        elif code == "invalid_credentials":
            headers.setdefault("WWW-Authenticate", "Bearer")
        else:
            headers.setdefault("WWW-Authenticate", 'Bearer error="invalid_token"')
    elif status == 503:
        headers.setdefault("Retry-After", "1")
    return Problem(code, description, reason, field_name, headers)


# codes whose body keeps a reason outside 401s (a refused link says why: used, stale, expired, ...)
_REASONED = frozenset({"invalid_link", "invalid_dpop_proof", "use_dpop_nonce"})


def json_response(problem: Problem, *, extra_headers: dict[str, str] | None = None) -> Response:
    """The JSON answer of a Problem."""
    headers = {**problem.headers, **(extra_headers or {})}
    return Response(orjson.dumps(problem.body()), status_code=problem.status, headers=headers,
                    media_type="application/json")


def www_authenticate(error: AuthError | None, realm: str | None = None) -> str:
    """The ``WWW-Authenticate`` value for a 401 (RFC 6750 §3): an error only when a bad token was sent; a
    ``DPoP`` challenge (RFC 9449 §7.1: its error and ``algs``) when the refusal is about DPoP."""
    if error is not None and error.dpop is not None:
        params = [f'error="{error.dpop}"', f'error_description="{error.description}"']
        if error.algs:
            params.append(f'algs="{error.algs}"')
        return "DPoP " + ", ".join(params)
    params = []
    if realm:
        params.append(f'realm="{realm}"')
    if error is not None and error.code == "invalid_token":
        params.append('error="invalid_token"')
        params.append(f'error_description="{error.description}"')
    return "Bearer " + ", ".join(params) if params else "Bearer"
