"""Service configuration: :class:`AuthConfig` (token and login policy) and :class:`Settings` (what a server
process needs), read from the environment by :meth:`Settings.from_env`."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from jwtkit.service.errors import ServiceConfigError

__all__ = ["MEMORY_USERS", "AuthConfig", "Settings"]

MEMORY_USERS = ":memory:"  # a users_path that keeps users in process memory (MemoryUserRepository)

_DEFAULT_STORE_URL = "sqlite:///jwtkit.db"
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """Token lifetimes, login policy and throttling. Validated when built.

    Args:
        issuer: the ``iss`` of every token issued and required on every token verified.
        audience: the ``aud`` of access tokens, required when set (RFC 7519 §4.1.3).
        access_ttl: access token lifetime in seconds (default 15 minutes).
        refresh_ttl: session and refresh token lifetime in seconds (default 14 days, absolute).
        verify_ttl / reset_ttl: single-use token lifetimes (24 h, 30 min).
        allow_unverified_login: let accounts with an unverified email log in.
        bind_user_agent: put a hash of the User-Agent in access tokens and check it.
        throttle_threshold: failures tolerated per username and per IP in a window before delays start.
        throttle_window: seconds after the last failure at which the count resets.
        throttle_base_delay / throttle_max_delay: the first delay, doubled per further failure, and its cap.
        base_url: where the web app lives; mailed links start with it.
        leeway: seconds of clock skew tolerated on ``exp``/``nbf``/``iat``.
        user_cache_ttl: seconds :meth:`AuthService.authenticate` may reuse a user's disabled flag without a
            lookup (0 = always look up). Disabling through the service also cuts off every session in the
            store, which every node checks on every request, so the cache only delays edits made to the
            users table behind the service's back.

    Raises:
        ServiceConfigError (``service_config``): a value is out of range.
    """

    issuer: str = "jwtkit"
    audience: str | None = None
    access_ttl: int = 900
    refresh_ttl: int = 14 * 86400
    verify_ttl: int = 86400
    reset_ttl: int = 1800
    allow_unverified_login: bool = True
    bind_user_agent: bool = False
    throttle_threshold: int = 5
    throttle_window: float = 900.0
    throttle_base_delay: float = 1.0
    throttle_max_delay: float = 900.0
    base_url: str = "http://127.0.0.1:8000"
    leeway: int = 0
    user_cache_ttl: float = 5.0

    def __post_init__(self) -> None:
        if not isinstance(self.issuer, str) or not self.issuer:
            raise ServiceConfigError("issuer must be a non-empty string")
        if self.audience is not None and (not isinstance(self.audience, str) or not self.audience):
            raise ServiceConfigError("audience must be a non-empty string or None")
        for name in ("access_ttl", "refresh_ttl", "verify_ttl", "reset_ttl", "throttle_threshold"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ServiceConfigError(f"{name} must be a positive integer, not {value!r}")
        if self.access_ttl > self.refresh_ttl:
            raise ServiceConfigError("access_ttl must not exceed refresh_ttl")
        for name in ("throttle_window", "throttle_base_delay", "throttle_max_delay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
                    or value <= 0:
                raise ServiceConfigError(f"{name} must be a positive number, not {value!r}")
        if self.throttle_max_delay < self.throttle_base_delay:
            raise ServiceConfigError("throttle_max_delay must be at least throttle_base_delay")
        if isinstance(self.leeway, bool) or not isinstance(self.leeway, int) or not 0 <= self.leeway <= 300:
            raise ServiceConfigError("leeway must be an integer between 0 and 300 seconds")
        if isinstance(self.user_cache_ttl, bool) or not isinstance(self.user_cache_ttl, int | float) \
                or not 0 <= self.user_cache_ttl <= 3600:
            raise ServiceConfigError("user_cache_ttl must be between 0 and 3600 seconds")
        parts = urlsplit(self.base_url) if isinstance(self.base_url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            raise ServiceConfigError(f"base_url must be an http(s) URL, not {self.base_url!r}")
        if self.base_url.endswith("/"):
            object.__setattr__(self, "base_url", self.base_url.rstrip("/"))


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything :func:`jwtkit.service.build_service` needs to assemble a service.

    ``users_path`` is the users' SQLite file, or ``":memory:"`` for a :class:`MemoryUserRepository`.
    ``secret`` (from ``JWT_SECRET``) selects an HS256 key; without it the key ring lives in ``key_path``
    (created with mode 0600 on first run). Mail goes to SMTP when ``smtp_host`` is set, else to the outbox
    folder. ``repr()`` never shows the secret or the SMTP password.
    """

    store_url: str = _DEFAULT_STORE_URL
    users_path: str = "jwtkit.db"
    key_path: str = "jwtkit.key"
    secret: bytes | None = field(default=None, repr=False)
    outbox_path: str = "outbox"
    config: AuthConfig = field(default_factory=AuthConfig)
    mail_from: str = "jwtkit@localhost"
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read ``JWT_SECRET`` and the ``JWTKIT_*`` variables; keyword ``overrides`` win over both.

        Variables: ``JWTKIT_STORE``, ``JWTKIT_DB`` (users database; defaults to the sqlite store's file, or
        to memory with a ``memory://`` store),
        ``JWTKIT_KEY_FILE``, ``JWTKIT_OUTBOX``, ``JWTKIT_ISSUER``, ``JWTKIT_AUDIENCE``, ``JWTKIT_BASE_URL``,
        ``JWTKIT_ACCESS_TTL``, ``JWTKIT_REFRESH_TTL``, ``JWTKIT_VERIFY_TTL``, ``JWTKIT_RESET_TTL``,
        ``JWTKIT_ALLOW_UNVERIFIED_LOGIN``, ``JWTKIT_BIND_USER_AGENT``, ``JWTKIT_THROTTLE_THRESHOLD``,
        ``JWTKIT_THROTTLE_WINDOW``, ``JWTKIT_LEEWAY``, ``JWTKIT_USER_CACHE_TTL``, ``JWTKIT_MAIL_FROM``,
        ``JWTKIT_SMTP_HOST``, ``JWTKIT_SMTP_PORT``, ``JWTKIT_SMTP_USERNAME``, ``JWTKIT_SMTP_PASSWORD``.

        ``overrides`` may name any :class:`Settings` field or any :class:`AuthConfig` field.

        Raises:
            ServiceConfigError (``service_config``): a variable cannot be parsed, or an override is unknown.

        Example:
            >>> Settings.from_env({"JWTKIT_STORE": "memory://"}, issuer="demo").config.issuer
            'demo'
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        conf: dict[str, Any] = {}

        secret = env.get("JWT_SECRET")
        if secret:
            values["secret"] = secret.encode("utf-8")
        for var, name in (("JWTKIT_STORE", "store_url"), ("JWTKIT_DB", "users_path"),
                          ("JWTKIT_KEY_FILE", "key_path"), ("JWTKIT_OUTBOX", "outbox_path"),
                          ("JWTKIT_MAIL_FROM", "mail_from"), ("JWTKIT_SMTP_HOST", "smtp_host"),
                          ("JWTKIT_SMTP_USERNAME", "smtp_username"),
                          ("JWTKIT_SMTP_PASSWORD", "smtp_password")):
            if env.get(var):
                values[name] = env[var]
        if env.get("JWTKIT_SMTP_PORT"):
            values["smtp_port"] = _parse_int("JWTKIT_SMTP_PORT", env["JWTKIT_SMTP_PORT"])
        for var, name in (("JWTKIT_ISSUER", "issuer"), ("JWTKIT_AUDIENCE", "audience"),
                          ("JWTKIT_BASE_URL", "base_url")):
            if env.get(var):
                conf[name] = env[var]
        for var, name in (("JWTKIT_ACCESS_TTL", "access_ttl"), ("JWTKIT_REFRESH_TTL", "refresh_ttl"),
                          ("JWTKIT_VERIFY_TTL", "verify_ttl"), ("JWTKIT_RESET_TTL", "reset_ttl"),
                          ("JWTKIT_THROTTLE_THRESHOLD", "throttle_threshold"), ("JWTKIT_LEEWAY", "leeway")):
            if env.get(var):
                conf[name] = _parse_int(var, env[var])
        for var, name in (("JWTKIT_THROTTLE_WINDOW", "throttle_window"),
                          ("JWTKIT_USER_CACHE_TTL", "user_cache_ttl")):
            if env.get(var):
                conf[name] = _parse_float(var, env[var])
        for var, name in (("JWTKIT_ALLOW_UNVERIFIED_LOGIN", "allow_unverified_login"),
                          ("JWTKIT_BIND_USER_AGENT", "bind_user_agent")):
            if var in env:
                conf[name] = _parse_bool(var, env[var])

        settings_fields = {f.name for f in dataclasses.fields(cls)}
        config_fields = {f.name for f in dataclasses.fields(AuthConfig)}
        for name, value in overrides.items():
            if name in settings_fields:
                values[name] = value
            elif name in config_fields:
                conf[name] = value
            else:
                raise ServiceConfigError(f"unknown setting {name!r}")

        base = values.pop("config", None) or AuthConfig()
        if not isinstance(base, AuthConfig):
            raise ServiceConfigError("config must be an AuthConfig")
        values["config"] = dataclasses.replace(base, **conf) if conf else base
        if "users_path" not in values:
            # Users live in the same SQLite file as the sessions by default (one file to back up); with a
            # memory:// store they live in memory too, so a demo leaves no file behind.
            store_url = values.get("store_url", _DEFAULT_STORE_URL)
            store_file = _sqlite_path(store_url)
            if store_file is not None:
                values["users_path"] = store_file
            elif store_url.startswith("memory:"):
                values["users_path"] = MEMORY_USERS
        if isinstance(values.get("secret"), str):
            values["secret"] = values["secret"].encode("utf-8")
        return cls(**values)


def _sqlite_path(url: str) -> str | None:
    """The file of a ``sqlite:///relative`` or ``sqlite:////absolute`` URL, else None."""
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///"):].split("?", 1)[0]
    return path or None


def _parse_int(var: str, raw: str) -> int:
    try:
        return int(raw.strip(), 10)
    except ValueError:
        raise ServiceConfigError(f"{var} must be an integer, not {raw!r}") from None


def _parse_float(var: str, raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise ServiceConfigError(f"{var} must be a number, not {raw!r}") from None
    if not math.isfinite(value):
        raise ServiceConfigError(f"{var} must be a finite number")
    return value


def _parse_bool(var: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ServiceConfigError(f"{var} must be true or false, not {raw!r}")
