"""The token kinds the service issues: one ``typ`` each (RFC 8725 §3.11), their claims, and the small
hashes bound into them (User-Agent, password hash)."""

from __future__ import annotations

import base64
import hashlib
import secrets
from typing import Any

__all__ = [
    "ACCESS_TYP",
    "DEVICE_TYP",
    "PURPOSE_DEVICE",
    "PURPOSE_RESET",
    "PURPOSE_VERIFY_EMAIL",
    "REFRESH_TYP",
    "RESET_TYP",
    "VERIFY_EMAIL_TYP",
    "access_claims",
    "agent_hash",
    "email_binding",
    "new_id",
    "password_binding",
    "refresh_claims",
    "refresh_successor",
]

ACCESS_TYP = "at+jwt"  # RFC 9068 §2.1
REFRESH_TYP = "refresh+jwt"
VERIFY_EMAIL_TYP = "verify-email+jwt"
RESET_TYP = "reset+jwt"
DEVICE_TYP = "device+jwt"  # a device that signed in before (the login throttle's device cookie)

PURPOSE_VERIFY_EMAIL = "verify-email"
PURPOSE_RESET = "reset-password"
PURPOSE_DEVICE = "known-device"


def new_id() -> str:
    """A random identifier for users, sessions, families and ``jti``: 128 bits, base64url."""
    return secrets.token_urlsafe(16)


def refresh_successor(jti: str, slot: int) -> str:
    """The ``jti`` that rotating refresh token ``jti`` in time slot ``slot`` gives: two requests that
    rotate the same token in the same slot name the same successor, so the store can tell a concurrent
    refresh (another tab) from reuse. It needs no secret: a jti alone grants nothing without a token signed
    over it, and the presented token's jti is already random (128 bits). Same length and alphabet as
    :func:`new_id`."""
    digest = hashlib.sha256(f"jwtkit refresh successor\0{jti}\0{slot}".encode("utf-8", "surrogatepass"))
    return _b64(digest.digest()[:16])


def _b64(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def agent_hash(user_agent: str) -> str:
    """base64url SHA-256 of the User-Agent string, as in the tutorial's ``agent`` claim."""
    return _b64(hashlib.sha256(user_agent.encode("utf-8", "surrogatepass")).digest())


def password_binding(password_hash: str) -> str:
    """``pwh``: a truncated base64url SHA-256 of the stored password hash. A reset token carries it, so it
    stops working as soon as the password changes. 96 bits: enough to never collide by chance, and it reveals
    nothing usable about the (salted, slow) hash."""
    return _b64(hashlib.sha256(password_hash.encode("utf-8")).digest()[:12])


def email_binding(email: str) -> str:
    """``emh``: a truncated base64url SHA-256 of the address being verified. The verification token carries
    it rather than the address (tokens in links end up in access logs), and dies if the address changes."""
    return _b64(hashlib.sha256(email.casefold().encode("utf-8", "surrogatepass")).digest()[:12])


def access_claims(
    *,
    issuer: str,
    audience: str | None,
    user_id: str,
    sid: str,
    now: float,
    expires: float,
    agent: str | None,
) -> dict[str, Any]:
    """Claims of an access token (RFC 9068 §2.2): iss, sub, aud (when configured), iat, exp, jti, sid."""
    claims: dict[str, Any] = {"iss": issuer, "sub": user_id}
    if audience is not None:
        claims["aud"] = audience
    claims.update({"iat": int(now), "exp": int(expires), "jti": new_id(), "sid": sid})
    if agent is not None:
        claims["agent"] = agent
    return claims


def refresh_claims(
    *, issuer: str, user_id: str, sid: str, family: str, jti: str, now: float, expires: float
) -> dict[str, Any]:
    """Claims of a refresh token: bound to its session (``sid``) and refresh family (``fam``)."""
    return {"iss": issuer, "sub": user_id, "sid": sid, "fam": family, "jti": jti,
            "iat": int(now), "exp": int(expires)}
