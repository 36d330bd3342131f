"""The auth service layer: accounts, passwords, login throttling, token issuing, refresh rotation with reuse
detection, logout, single-use tokens, the key ring and the mailer. No HTTP.

Example:
    >>> from jwtkit.service import AuthConfig
    >>> AuthConfig().access_ttl
    900
"""

from __future__ import annotations

from jwtkit.service.accounts import (
    MemoryUserRepository,
    SQLiteUserRepository,
    User,
    UserRepository,
    normalize_email,
    normalize_username,
)
from jwtkit.service.auth import AuthService, Principal, TokenPair
from jwtkit.service.build import build_service
from jwtkit.service.config import AuthConfig, Settings
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
from jwtkit.service.keyring import KeyRing
from jwtkit.service.mail import Mailer, MemoryMailer, Message, OutboxMailer, SMTPMailer
from jwtkit.service.passwords import Argon2Hasher, check_password, owasp_hasher

__all__ = [
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
