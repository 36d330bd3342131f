"""The auth service layer: accounts, passwords, login throttling, token issuing, refresh rotation with reuse
detection, logout, single-use tokens, the key ring, other issuers' keys (RemoteKeySet) and the mailer. No
HTTP of its own, but for fetching those keys (httpx, loaded on first use).

Example:
    >>> from jwtkit.service import AuthConfig
    >>> AuthConfig().access_ttl
    900
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# Light names load at once: apps embed the middleware, which needs the access policy and the errors, and
# must not pay for password hashing (argon2), SQLite, mail (smtplib) or templates. The rest loads on first
# use.
from jwtkit.service._access import AccessPolicy, KeyProvider, Principal
from jwtkit.service._config import AuthConfig, ServerSettings, Settings
from jwtkit.service._dpop import (
    DPoPNonces,
    DPoPProof,
    DPoPRequest,
    DPoPVerifier,
    make_dpop_proof,
    read_dpop_proof,
)
from jwtkit.service._errors import (
    AccountDisabled,
    AccountUnverified,
    InvalidCredentials,
    InvalidDPoPProof,
    InvalidEmail,
    InvalidToken,
    InvalidUsername,
    RefreshReused,
    ServiceConfigError,
    ServiceError,
    SessionRevoked,
    Throttled,
    TokenExpired,
    UseDPoPNonce,
    UsernameTaken,
    UserNotFound,
    WeakPassword,
)

if TYPE_CHECKING:
    from jwtkit.service._accounts import (
        MemoryUserRepository,
        SQLiteUserRepository,
        User,
        UserRepository,
        normalize_email,
        normalize_role,
        normalize_username,
    )
    from jwtkit.service._auth import AuthService, TokenPair
    from jwtkit.service._build import build_service
    from jwtkit.service._claims import ClaimsHook, user_roles_claims
    from jwtkit.service._keyring import KeyInfo, KeyRing, KeyRingFile
    from jwtkit.service._keyring_store import StoreKeyRing
    from jwtkit.service._mail import Mailer, MemoryMailer, Message, OutboxMailer, SMTPMailer
    from jwtkit.service._passwords import Argon2Hasher, check_password, owasp_hasher
    from jwtkit.service._remote_keys import JWKSUnavailable, RemoteKeySet

_LAZY = {
    "MemoryUserRepository": "accounts", "SQLiteUserRepository": "accounts", "User": "accounts",
    "UserRepository": "accounts", "normalize_email": "accounts", "normalize_username": "accounts",
    "normalize_role": "accounts", "ClaimsHook": "claims",
    "user_roles_claims": "claims",
    "AuthService": "auth", "TokenPair": "auth", "build_service": "build", "KeyRing": "keyring",
    "KeyInfo": "keyring", "KeyRingFile": "keyring", "StoreKeyRing": "keyring_store",
    "Mailer": "mail", "MemoryMailer": "mail", "Message": "mail", "OutboxMailer": "mail", "SMTPMailer": "mail",
    "Argon2Hasher": "passwords", "check_password": "passwords", "owasp_hasher": "passwords",
    "JWKSUnavailable": "remote_keys", "RemoteKeySet": "remote_keys",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'jwtkit.service' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"jwtkit.service._{module}"), name)
    _public(value)
    globals()[name] = value
    return value


def _public(value: Any) -> None:
    """Show the public path in reprs, tracebacks and docs, as httpx does."""
    if getattr(value, "__module__", "").startswith("jwtkit.service._"):
        value.__module__ = "jwtkit.service"


__all__ = [
    "AccessPolicy",
    "AccountDisabled",
    "AccountUnverified",
    "Argon2Hasher",
    "AuthConfig",
    "AuthService",
    "ClaimsHook",
    "DPoPNonces",
    "DPoPProof",
    "DPoPRequest",
    "DPoPVerifier",
    "InvalidCredentials",
    "InvalidDPoPProof",
    "InvalidEmail",
    "InvalidToken",
    "InvalidUsername",
    "JWKSUnavailable",
    "KeyInfo",
    "KeyProvider",
    "KeyRing",
    "KeyRingFile",
    "Mailer",
    "MemoryMailer",
    "MemoryUserRepository",
    "Message",
    "OutboxMailer",
    "Principal",
    "RefreshReused",
    "RemoteKeySet",
    "SMTPMailer",
    "SQLiteUserRepository",
    "ServerSettings",
    "ServiceConfigError",
    "ServiceError",
    "SessionRevoked",
    "Settings",
    "StoreKeyRing",
    "Throttled",
    "TokenExpired",
    "TokenPair",
    "UseDPoPNonce",
    "User",
    "UserNotFound",
    "UserRepository",
    "UsernameTaken",
    "WeakPassword",
    "build_service",
    "check_password",
    "make_dpop_proof",
    "normalize_email",
    "normalize_role",
    "normalize_username",
    "owasp_hasher",
    "read_dpop_proof",
    "user_roles_claims",
]

for _name in __all__:
    if _name in globals():
        _public(globals()[_name])
del _name
