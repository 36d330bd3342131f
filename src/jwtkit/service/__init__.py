"""The auth service layer: accounts, passwords, login throttling, token issuing, refresh rotation with reuse
detection, logout, single-use tokens, the key ring and the mailer. No HTTP.

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
from jwtkit.service._access import AccessPolicy, Principal
from jwtkit.service.config import AuthConfig, ServerSettings, Settings
from jwtkit.service.errors import (
    AccountDisabled,
    AccountUnverified,
    InvalidCredentials,
    InvalidEmail,
    InvalidToken,
    InvalidUsername,
    RefreshReused,
    ServiceConfigError,
    ServiceError,
    SessionRevoked,
    Throttled,
    TokenExpired,
    UsernameTaken,
    UserNotFound,
    WeakPassword,
)

if TYPE_CHECKING:
    from jwtkit.service.accounts import (
        MemoryUserRepository,
        SQLiteUserRepository,
        User,
        UserRepository,
        normalize_email,
        normalize_username,
    )
    from jwtkit.service.auth import AuthService, TokenPair
    from jwtkit.service.build import build_service
    from jwtkit.service.keyring import KeyRing
    from jwtkit.service.mail import Mailer, MemoryMailer, Message, OutboxMailer, SMTPMailer
    from jwtkit.service.passwords import Argon2Hasher, check_password, owasp_hasher

_LAZY = {
    "MemoryUserRepository": "accounts", "SQLiteUserRepository": "accounts", "User": "accounts",
    "UserRepository": "accounts", "normalize_email": "accounts", "normalize_username": "accounts",
    "AuthService": "auth", "TokenPair": "auth", "build_service": "build", "KeyRing": "keyring",
    "Mailer": "mail", "MemoryMailer": "mail", "Message": "mail", "OutboxMailer": "mail", "SMTPMailer": "mail",
    "Argon2Hasher": "passwords", "check_password": "passwords", "owasp_hasher": "passwords",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'jwtkit.service' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"jwtkit.service.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "AccessPolicy",
    "AccountDisabled",
    "AccountUnverified",
    "Argon2Hasher",
    "AuthConfig",
    "AuthService",
    "InvalidCredentials",
    "InvalidEmail",
    "InvalidToken",
    "InvalidUsername",
    "KeyRing",
    "Mailer",
    "MemoryMailer",
    "MemoryUserRepository",
    "Message",
    "OutboxMailer",
    "Principal",
    "RefreshReused",
    "SMTPMailer",
    "SQLiteUserRepository",
    "ServerSettings",
    "ServiceConfigError",
    "ServiceError",
    "SessionRevoked",
    "Settings",
    "Throttled",
    "TokenExpired",
    "TokenPair",
    "User",
    "UserNotFound",
    "UserRepository",
    "UsernameTaken",
    "WeakPassword",
    "build_service",
    "check_password",
    "normalize_email",
    "normalize_username",
    "owasp_hasher",
]
