"""Service configuration: :class:`AuthConfig` (token and login policy), :class:`Settings` (what a service
needs) and :class:`ServerSettings` (what one server process needs: the settings plus where and how to listen).

One codec reads them from the environment and writes them back: :meth:`Settings.from_env` and
:meth:`ServerSettings.from_env` parse ``JWT_SECRET`` and the ``JWTKIT_*`` variables (the table
``_ENVIRONMENT`` below, documented in docs/cli.md), and :meth:`ServerSettings.to_env` is their exact inverse
(``ServerSettings.from_env(s.to_env()) == s``), which is how worker processes receive their settings.
An empty variable counts as unset.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import ipaddress
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from jwtkit.service._errors import ServiceConfigError
from jwtkit.store._policy import MAX_SESSIONS_LIMIT

__all__ = ["KEK_LENGTH", "KEY_SOURCES", "MEMORY_USERS", "AuthConfig", "ServerSettings", "Settings"]

MEMORY_USERS = ":memory:"  # a users_path that keeps users in process memory (MemoryUserRepository)
KEK_LENGTH = 32  # bytes of the key-encryption key (AES-256-GCM) that seals private keys in a shared store
# Where the signing keys live: "auto" (in a shared store when there is one, else the key file), or forced.
KEY_SOURCES = ("auto", "store", "file")
MIRROR_MODES = ("auto", "on", "off")

_DEFAULT_STORE_URL = "sqlite:///jwtkit.db"
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})

# --- validation: one set of rules, applied where an object is built (naming fields) and where the environment
# is read (naming variables) ---------------------------------------------------------------------------------

Label = Callable[[str], str]


def _as_is(name: str) -> str:
    return name


def _text(value: object) -> bool:
    return isinstance(value, str) and bool(value) and "\x00" not in value


def _optional_text(value: object) -> bool:
    return value is None or _text(value)


def _int_in(low: int, high: int | None) -> Callable[[object], bool]:
    def check(value: object) -> bool:
        return (isinstance(value, int) and not isinstance(value, bool) and low <= value
                and (high is None or value <= high))
    return check


def _number_in(low: float, high: float | None, *, open_low: bool) -> Callable[[object], bool]:
    def check(value: object) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        try:
            number = float(value)
        except OverflowError:
            return False
        return (math.isfinite(number) and (number > low if open_low else number >= low)
                and (high is None or number <= high))
    return check


def _boolean(value: object) -> bool:
    return isinstance(value, bool)


def _http_url(value: object) -> bool:
    if not _text(value):
        return False
    try:
        parts = urlsplit(str(value))
    except ValueError:  # "http://[" and the like
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _secret(value: object) -> bool:
    return value is None or (isinstance(value, bytes) and bool(value))


def _kek(value: object) -> bool:
    return value is None or (isinstance(value, bytes) and len(value) == KEK_LENGTH)


def _proxies(value: object) -> bool:
    """A tuple of IP addresses or networks (``10.0.0.0/8``), or ``("*",)``: trust every peer."""
    if not isinstance(value, tuple) or not all(isinstance(item, str) for item in value):
        return False
    if value == ("*",):
        return True
    try:
        for item in value:
            ipaddress.ip_network(item, strict=False)
    except ValueError:
        return False
    return True


def _one_of(choices: tuple[str, ...]) -> Callable[[object], bool]:
    return lambda value: isinstance(value, str) and value in choices


_Rule = tuple[str, Callable[[object], bool], str]
_POSITIVE_INT = (_int_in(1, None), "a positive integer")
_POSITIVE_NUMBER = (_number_in(0, None, open_low=True), "a positive number")
_TEXT = (_text, "a non-empty string without NUL characters")
_OPTIONAL_TEXT = (_optional_text, "None or a non-empty string without NUL characters")
_BOOL = (_boolean, "true or false")

_AUTH_RULES: tuple[_Rule, ...] = (
    ("issuer", *_TEXT),
    ("audience", *_OPTIONAL_TEXT),
    ("access_ttl", *_POSITIVE_INT),
    ("refresh_ttl", *_POSITIVE_INT),
    ("verify_ttl", *_POSITIVE_INT),
    ("reset_ttl", *_POSITIVE_INT),
    ("allow_unverified_login", *_BOOL),
    ("bind_user_agent", *_BOOL),
    ("throttle_threshold", *_POSITIVE_INT),
    ("throttle_ip_threshold", *_POSITIVE_INT),
    ("device_ttl", *_POSITIVE_INT),
    ("throttle_window", *_POSITIVE_NUMBER),
    ("throttle_base_delay", *_POSITIVE_NUMBER),
    ("throttle_max_delay", *_POSITIVE_NUMBER),
    ("base_url", _http_url, "an http(s) URL"),
    ("leeway", _int_in(0, 300), "an integer between 0 and 300 (seconds)"),
    ("user_cache_ttl", _number_in(0, 3600, open_low=False), "a number between 0 and 3600 (seconds)"),
    ("refresh_race_window", _int_in(0, 60), "an integer between 0 and 60 (seconds)"),
    ("revocation_mirror", _one_of(MIRROR_MODES), "one of " + ", ".join(MIRROR_MODES)),
    ("mirror_max_lag", _number_in(0, 60, open_low=True), "a number above 0 and at most 60 (seconds)"),
    ("max_sessions_per_user", _int_in(1, MAX_SESSIONS_LIMIT),
     f"an integer between 1 and {MAX_SESSIONS_LIMIT}"),
    ("require_dpop", *_BOOL),
)
_SETTINGS_RULES: tuple[_Rule, ...] = (
    ("store_url", *_TEXT),
    ("users_path", *_TEXT),
    ("key_path", *_TEXT),
    ("secret", _secret, "None or non-empty bytes"),
    ("outbox_path", *_TEXT),
    ("mail_from", *_TEXT),
    ("smtp_host", *_OPTIONAL_TEXT),
    ("smtp_port", _int_in(1, 65535), "an integer between 1 and 65535"),
    ("smtp_username", *_OPTIONAL_TEXT),
    ("smtp_password", *_OPTIONAL_TEXT),
    ("key_encryption_key", _kek, f"None or {KEK_LENGTH} bytes"),
    ("dpop_nonce_secret", _kek, f"None or {KEK_LENGTH} bytes"),
    ("keys", _one_of(KEY_SOURCES), "one of " + ", ".join(KEY_SOURCES)),
)
_SERVER_RULES: tuple[_Rule, ...] = (
    ("host", *_TEXT),
    ("port", _int_in(0, 65535), "an integer between 0 and 65535"),
    ("workers", _int_in(1, 64), "an integer between 1 and 64"),
    ("secure_cookies", *_BOOL),
    ("allow_query_token", *_BOOL),
    ("max_concurrency", _int_in(1, 100_000), "an integer between 1 and 100000"),
    ("forwarded_allow_ips", _proxies, 'a tuple of IP addresses or networks, or ("*",)'),
)


def _check(rules: tuple[_Rule, ...], values: Mapping[str, Any], label: Label) -> None:
    for name, valid, expected in rules:
        value = values[name]
        if not valid(value):
            hidden = name in ("secret", "smtp_password", "key_encryption_key", "dpop_nonce_secret")
            shown = "<hidden>" if hidden and value is not None else repr(value)
            raise ServiceConfigError(f"{label(name)} must be {expected}, not {shown}")


def _check_auth(values: Mapping[str, Any], label: Label) -> None:
    _check(_AUTH_RULES, values, label)
    if values["access_ttl"] > values["refresh_ttl"]:
        raise ServiceConfigError(f"{label('access_ttl')} must not exceed {label('refresh_ttl')}")
    if values["throttle_max_delay"] < values["throttle_base_delay"]:
        raise ServiceConfigError(
            f"{label('throttle_max_delay')} must be at least {label('throttle_base_delay')}")


def _check_settings(values: Mapping[str, Any], label: Label) -> None:
    _check(_SETTINGS_RULES, values, label)
    if not isinstance(values["config"], AuthConfig):
        raise ServiceConfigError(f"{label('config')} must be an AuthConfig")


def _check_server(values: Mapping[str, Any], label: Label) -> None:
    _check(_SERVER_RULES, values, label)
    if not isinstance(values["settings"], Settings):
        raise ServiceConfigError(f"{label('settings')} must be a Settings")


def _own_fields(obj: object) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}  # type: ignore[arg-type]


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
        throttle_threshold: failures tolerated per account from unknown devices, and per known device, in a
            window before delays start (default 5).
        throttle_ip_threshold: failures tolerated per client address (default 100: one office, carrier or
            proxy address holds many users, and a per-address limit is only there to slow one client
            spraying guesses over many accounts).
        device_ttl: seconds a known-device token lasts (default 180 days): a device that signed in to an
            account before gets its own failure counter and is not slowed down by the failures of others.
        throttle_window: seconds after the last failure at which the count resets.
        throttle_base_delay / throttle_max_delay: the first delay, doubled per further failure, and its cap.
        base_url: where the web app lives; mailed links start with it.
        leeway: seconds of clock skew tolerated on ``exp``/``nbf``/``iat``.
        user_cache_ttl: seconds :meth:`AuthService.authenticate` may reuse a user's disabled flag without a
            lookup (0 = always look up). Disabling through the service also cuts off every session in the
            store, which every node checks on every request, so the cache only delays edits made to the
            users table behind the service's back.
        refresh_race_window: seconds (10 to 20 with the default 10; 0 turns it off) in which a refresh token
            that was just rotated, presented again from the same device, yields the session's current tokens
            instead of counting as reuse: two tabs, or a retry after a lost answer, refreshing at the same
            moment. Outside it, an old refresh token is reuse and ends the family (RFC 9700 §4.14).
        revocation_mirror: ``"auto"`` (the default: on with a shared store that has a revocation feed,
            Redis or PostgreSQL), ``"on"`` (refused with a store that has none) or ``"off"``. With it, each
            node keeps the revocations of the last access-token lifetime in process and checks access
            tokens without a round trip (:class:`jwtkit.store.RevocationMirror`; ``docs/stores.md``).
        mirror_max_lag: seconds without an answer from the store's feed after which a node checks every
            access token in the store again (default 1): the longest a revocation made on another node can
            go unseen here.
        max_sessions_per_user: live sessions one user may hold (1 to 1000, default 50). A login past it
            ends the user's oldest-created sessions in the store, atomically with creating its own, exactly as
            a logout would (their refresh tokens are refused, their access tokens too, on every node), so a
            user's session list, and the work of each login at the cap, stay bounded. 50 is far above what
            one person's browsers and devices hold, and a script that logs in without logging out loses only
            its oldest sessions. There is no "no cap": unbounded sessions are what the cap exists to prevent.
        require_dpop: issue DPoP-bound tokens only (RFC 9449): login and refresh need a proof, and access
            tokens that are not bound are refused. Off by default: clients that send a proof get bound
            tokens, the others bearer tokens.

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
    throttle_ip_threshold: int = 100
    device_ttl: int = 180 * 86400
    throttle_window: float = 900.0
    throttle_base_delay: float = 1.0
    throttle_max_delay: float = 900.0
    base_url: str = "http://127.0.0.1:8000"
    leeway: int = 0
    user_cache_ttl: float = 5.0
    refresh_race_window: int = 10
    revocation_mirror: str = "auto"
    mirror_max_lag: float = 1.0
    max_sessions_per_user: int = 50
    require_dpop: bool = False

    def __post_init__(self) -> None:
        _check_auth(_own_fields(self), _as_is)
        if self.base_url.endswith("/"):
            object.__setattr__(self, "base_url", self.base_url.rstrip("/"))


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything :func:`jwtkit.service.build_service` needs to assemble a service. Validated when built.

    ``users_path`` is the users' SQLite file, or ``":memory:"`` for a :class:`MemoryUserRepository`.
    ``secret`` (from ``JWT_SECRET``) selects an HS256 key; without it the key ring lives in ``key_path``
    (created with mode 0600 on first run), or, with a shared store (Redis), in the store: ``keys`` is
    ``"auto"`` (the store when it is shared, else the file), ``"store"`` or ``"file"``. Private keys in a
    store are sealed with ``key_encryption_key`` (32 bytes, AES-256-GCM; ``JWTKIT_KEY_ENCRYPTION_KEY``).
    Mail goes to SMTP when ``smtp_host`` is set, else to the outbox folder. ``dpop_nonce_secret`` (32 bytes,
    ``JWTKIT_DPOP_NONCE_SECRET``), when set, makes every DPoP proof carry a server nonce (RFC 9449 §8)
    derived from it and the time: nodes that share it accept each other's nonces with no shared state.
    ``repr()`` never shows the secret, the key-encryption key, the nonce secret or the SMTP password. A
    ``str`` secret is taken as its UTF-8 bytes.

    Raises:
        ServiceConfigError (``service_config``): a value has the wrong type or is empty.
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
    key_encryption_key: bytes | None = field(default=None, repr=False)
    dpop_nonce_secret: bytes | None = field(default=None, repr=False)
    keys: str = "auto"

    def __post_init__(self) -> None:
        if isinstance(self.secret, str):
            object.__setattr__(self, "secret", self.secret.encode("utf-8"))
        if isinstance(self.key_encryption_key, bytearray):
            object.__setattr__(self, "key_encryption_key", bytes(self.key_encryption_key))
        _check_settings(_own_fields(self), _as_is)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read ``JWT_SECRET`` and a service's ``JWTKIT_*`` variables; keyword ``overrides`` win over both.

        Variables: ``JWT_SECRET`` (or ``JWTKIT_SECRET_HEX``), ``JWTKIT_STORE``,
        ``JWTKIT_DB`` (users database: a SQLite file, ``:memory:`` or a ``postgresql://`` URL; defaults to
        the sqlite store's file, to the same database with a ``postgresql://`` store, or to memory with a
        ``memory://`` store), ``JWTKIT_KEY_FILE``, ``JWTKIT_KEYS``, ``JWTKIT_KEY_ENCRYPTION_KEY``,
        ``JWTKIT_OUTBOX``, ``JWTKIT_MAIL_FROM``, ``JWTKIT_SMTP_HOST``,
        ``JWTKIT_SMTP_PORT``, ``JWTKIT_SMTP_USERNAME``, ``JWTKIT_SMTP_PASSWORD``, ``JWTKIT_ISSUER``,
        ``JWTKIT_AUDIENCE``, ``JWTKIT_ACCESS_TTL``, ``JWTKIT_REFRESH_TTL``, ``JWTKIT_VERIFY_TTL``,
        ``JWTKIT_RESET_TTL``, ``JWTKIT_ALLOW_UNVERIFIED_LOGIN``, ``JWTKIT_BIND_USER_AGENT``,
        ``JWTKIT_THROTTLE_THRESHOLD``, ``JWTKIT_THROTTLE_WINDOW``, ``JWTKIT_THROTTLE_BASE_DELAY``,
        ``JWTKIT_THROTTLE_MAX_DELAY``, ``JWTKIT_BASE_URL``, ``JWTKIT_LEEWAY``, ``JWTKIT_USER_CACHE_TTL``,
        ``JWTKIT_MAX_SESSIONS``, ``JWTKIT_REQUIRE_DPOP``, ``JWTKIT_DPOP_NONCE_SECRET``.
        The server's own variables (``JWTKIT_HOST``, ``JWTKIT_PORT``, ...) are ignored here.

        ``overrides`` may name any :class:`Settings` field or any :class:`AuthConfig` field; a ``config``
        override replaces every :class:`AuthConfig` variable, and single fields win over it.

        Raises:
            ServiceConfigError (``service_config``): a variable cannot be parsed or is out of range (the
                message names it), or an override is unknown or invalid.

        Example:
            >>> Settings.from_env({"JWTKIT_STORE": "memory://"}, issuer="demo").config.issuer
            'demo'
        """
        values = _resolve(os.environ if environ is None else environ, overrides, server=False)
        return _build_settings(values)


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """Everything one server process needs: the service's :class:`Settings` and how to listen and answer.

    Args:
        settings: the service (store, users, keys, mail, :class:`AuthConfig`).
        host / port: where to listen (port 0 picks a free one).
        workers: processes serving the same socket (1 to 64); with more than one, each builds its app from
            :meth:`to_env` given to it as its environment.
        secure_cookies: ``Secure`` cookies with ``__Host-``/``__Secure-`` names (off only for plain-http
            localhost).
        allow_query_token: accept ``GET /private?token=<jwt>`` (off by default: URLs are logged).
        max_concurrency: requests in flight per worker past which a request gets 503 ``overloaded`` at once
            (default 256).
        forwarded_allow_ips: the proxies whose ``X-Forwarded-For`` and ``X-Forwarded-Proto`` are believed
            (addresses or networks; ``("*",)`` trusts any peer, only for a server that nothing but its proxy
            can reach). The client address that rate limits, the login throttle and session records use is
            the nearest address in ``X-Forwarded-For`` that is not one of them. Empty (the default): the TCP
            peer, and the headers are ignored, so that no client can choose its own address.

    Raises:
        ServiceConfigError (``service_config``): a value has the wrong type or is out of range.

    Example:
        >>> server = ServerSettings.from_env({"JWTKIT_PORT": "9000", "JWTKIT_STORE": "memory://"})
        >>> server.port, server.settings.config.base_url
        (9000, 'http://127.0.0.1:9000')
        >>> ServerSettings.from_env(server.to_env()) == server
        True
    """

    settings: Settings = field(default_factory=Settings)
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    secure_cookies: bool = True
    allow_query_token: bool = False
    max_concurrency: int = 256
    forwarded_allow_ips: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_server(_own_fields(self), _as_is)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> ServerSettings:
        """Read every variable of :meth:`Settings.from_env` and the server's own: ``JWTKIT_HOST``,
        ``JWTKIT_PORT``, ``JWTKIT_WORKERS``, ``JWTKIT_SECURE_COOKIES``, ``JWTKIT_ALLOW_QUERY_TOKEN``,
        ``JWTKIT_MAX_CONCURRENCY``, ``JWTKIT_FORWARDED_ALLOW_IPS`` (comma-separated).

        ``environ`` None means ``os.environ``. Keyword ``overrides`` win over the environment: any field of
        :class:`ServerSettings`, :class:`Settings` or :class:`AuthConfig`; a ``settings`` (or ``config``)
        override replaces every variable of that object, and single fields win over it. Without
        ``JWTKIT_BASE_URL`` (or a ``base_url``), mailed links point at the listening address.

        Raises:
            ServiceConfigError (``service_config``): a variable cannot be parsed or is out of range (the
                message names it), or an override is unknown or invalid.
        """
        values = _resolve(os.environ if environ is None else environ, overrides, server=True)
        server = {name: values.pop(name) for name, _, _ in _SERVER_RULES}
        server["settings"] = _build_settings(values)
        return cls(**server)

    def to_env(self) -> dict[str, str]:
        """Every variable :meth:`from_env` reads, set so that ``ServerSettings.from_env(s.to_env()) == s``.

        Every variable is present (a None field as an empty string), so merged over another environment,
        ``{**os.environ, **s.to_env()}``, the result still reads back as ``s``. A secret that is not UTF-8
        text (or holds a NUL byte) goes in ``JWTKIT_SECRET_HEX`` instead of ``JWT_SECRET``.
        """
        values = _flatten(self)
        env = {var.name: var.format(values[var.field]) for var in _ENVIRONMENT if var.field != "secret"}
        env.update(_secret_to_env(values["secret"]))
        return env


# --- the codec ----------------------------------------------------------------------------------------------


class _EnvVar(NamedTuple):
    """One environment variable: its name, the field it sets, and how it is parsed and written."""

    name: str
    field: str
    parse: Callable[[str, str], Any]  # (variable name, non-empty raw value) -> value
    format: Callable[[Any], str]
    server_only: bool = False


def _parse_text(var: str, raw: str) -> str:
    return raw


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
        raise ServiceConfigError(f"{var} must be a finite number, not {raw!r}")
    return value


def _parse_proxies(var: str, raw: str) -> tuple[str, ...]:
    value = tuple(item.strip() for item in raw.split(",") if item.strip())
    if not _proxies(value):
        raise ServiceConfigError(f"{var} must be comma-separated IP addresses or networks, or *, not {raw!r}")
    return value


def _format_proxies(value: tuple[str, ...]) -> str:
    return ",".join(value)


def _parse_bool(var: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ServiceConfigError(f"{var} must be true or false (1/0, yes/no, on/off), not {raw!r}")


def _parse_secret_text(var: str, raw: str) -> bytes:
    # os.environ decodes undecodable bytes with surrogateescape: encoding the same way gives them back.
    return raw.encode("utf-8", "surrogateescape")


def _parse_secret_hex(var: str, raw: str) -> bytes:
    try:
        return bytes.fromhex(raw)
    except ValueError:
        raise ServiceConfigError(f"{var} must be hexadecimal") from None


def _parse_kek(var: str, raw: str) -> bytes:
    """32 bytes as `jwtkit secret` prints them: hex (64 digits) or base64url (43 characters, padding and
    the standard alphabet's ``+/`` accepted too)."""
    text = raw.strip()
    if len(text) == 2 * KEK_LENGTH:
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    standard = text.replace("-", "+").replace("_", "/")
    try:
        value = base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except (ValueError, binascii.Error):
        value = b""
    if len(value) != KEK_LENGTH:
        raise ServiceConfigError(f"{var} must be {KEK_LENGTH} bytes in hex or base64url, as `jwtkit secret` "
                                 "prints them")
    return value


def _format_kek(value: bytes | None) -> str:
    return "" if value is None else value.hex()


def _format_text(value: str | None) -> str:
    return "" if value is None else value


def _format_number(value: float) -> str:
    return repr(value)  # the shortest text that reads back as the same float


def _format_bool(value: bool) -> str:
    return "true" if value else "false"


_TEXT_CODEC = (_parse_text, _format_text)
_INT_CODEC = (_parse_int, str)
_FLOAT_CODEC = (_parse_float, _format_number)
_BOOL_CODEC = (_parse_bool, _format_bool)

_SECRET_VAR = "JWT_SECRET"
_SECRET_HEX_VAR = "JWTKIT_SECRET_HEX"

# Every variable, in the order of docs/cli.md: (name, field, parse, format, server_only).
_ENVIRONMENT: tuple[_EnvVar, ...] = (
    _EnvVar("JWTKIT_HOST", "host", *_TEXT_CODEC, server_only=True),
    _EnvVar("JWTKIT_PORT", "port", *_INT_CODEC, server_only=True),
    _EnvVar("JWTKIT_WORKERS", "workers", *_INT_CODEC, server_only=True),
    _EnvVar("JWTKIT_SECURE_COOKIES", "secure_cookies", *_BOOL_CODEC, server_only=True),
    _EnvVar("JWTKIT_ALLOW_QUERY_TOKEN", "allow_query_token", *_BOOL_CODEC, server_only=True),
    _EnvVar("JWTKIT_MAX_CONCURRENCY", "max_concurrency", *_INT_CODEC, server_only=True),
    _EnvVar("JWTKIT_FORWARDED_ALLOW_IPS", "forwarded_allow_ips", _parse_proxies, _format_proxies,
            server_only=True),
    _EnvVar(_SECRET_VAR, "secret", _parse_secret_text, _format_text),
    _EnvVar(_SECRET_HEX_VAR, "secret", _parse_secret_hex, _format_text),
    _EnvVar("JWTKIT_STORE", "store_url", *_TEXT_CODEC),
    _EnvVar("JWTKIT_DB", "users_path", *_TEXT_CODEC),
    _EnvVar("JWTKIT_KEY_FILE", "key_path", *_TEXT_CODEC),
    _EnvVar("JWTKIT_KEYS", "keys", *_TEXT_CODEC),
    _EnvVar("JWTKIT_KEY_ENCRYPTION_KEY", "key_encryption_key", _parse_kek, _format_kek),
    _EnvVar("JWTKIT_DPOP_NONCE_SECRET", "dpop_nonce_secret", _parse_kek, _format_kek),
    _EnvVar("JWTKIT_OUTBOX", "outbox_path", *_TEXT_CODEC),
    _EnvVar("JWTKIT_MAIL_FROM", "mail_from", *_TEXT_CODEC),
    _EnvVar("JWTKIT_SMTP_HOST", "smtp_host", *_TEXT_CODEC),
    _EnvVar("JWTKIT_SMTP_PORT", "smtp_port", *_INT_CODEC),
    _EnvVar("JWTKIT_SMTP_USERNAME", "smtp_username", *_TEXT_CODEC),
    _EnvVar("JWTKIT_SMTP_PASSWORD", "smtp_password", *_TEXT_CODEC),
    _EnvVar("JWTKIT_ISSUER", "issuer", *_TEXT_CODEC),
    _EnvVar("JWTKIT_AUDIENCE", "audience", *_TEXT_CODEC),
    _EnvVar("JWTKIT_BASE_URL", "base_url", *_TEXT_CODEC),
    _EnvVar("JWTKIT_ACCESS_TTL", "access_ttl", *_INT_CODEC),
    _EnvVar("JWTKIT_REFRESH_TTL", "refresh_ttl", *_INT_CODEC),
    _EnvVar("JWTKIT_VERIFY_TTL", "verify_ttl", *_INT_CODEC),
    _EnvVar("JWTKIT_RESET_TTL", "reset_ttl", *_INT_CODEC),
    _EnvVar("JWTKIT_ALLOW_UNVERIFIED_LOGIN", "allow_unverified_login", *_BOOL_CODEC),
    _EnvVar("JWTKIT_BIND_USER_AGENT", "bind_user_agent", *_BOOL_CODEC),
    _EnvVar("JWTKIT_THROTTLE_THRESHOLD", "throttle_threshold", *_INT_CODEC),
    _EnvVar("JWTKIT_THROTTLE_IP_THRESHOLD", "throttle_ip_threshold", *_INT_CODEC),
    _EnvVar("JWTKIT_DEVICE_TTL", "device_ttl", *_INT_CODEC),
    _EnvVar("JWTKIT_THROTTLE_WINDOW", "throttle_window", *_FLOAT_CODEC),
    _EnvVar("JWTKIT_THROTTLE_BASE_DELAY", "throttle_base_delay", *_FLOAT_CODEC),
    _EnvVar("JWTKIT_THROTTLE_MAX_DELAY", "throttle_max_delay", *_FLOAT_CODEC),
    _EnvVar("JWTKIT_LEEWAY", "leeway", *_INT_CODEC),
    _EnvVar("JWTKIT_USER_CACHE_TTL", "user_cache_ttl", *_FLOAT_CODEC),
    _EnvVar("JWTKIT_REFRESH_RACE_WINDOW", "refresh_race_window", *_INT_CODEC),
    _EnvVar("JWTKIT_REVOCATION_MIRROR", "revocation_mirror", *_TEXT_CODEC),
    _EnvVar("JWTKIT_MIRROR_MAX_LAG", "mirror_max_lag", *_FLOAT_CODEC),
    _EnvVar("JWTKIT_MAX_SESSIONS", "max_sessions_per_user", *_INT_CODEC),
    _EnvVar("JWTKIT_REQUIRE_DPOP", "require_dpop", *_BOOL_CODEC),
)

_AUTH_FIELDS = tuple(f.name for f in dataclasses.fields(AuthConfig))
_SETTINGS_FIELDS = tuple(f.name for f in dataclasses.fields(Settings) if f.name != "config")
_SERVER_FIELDS = tuple(name for name, _, _ in _SERVER_RULES)


def _defaults(cls: type[Any], names: tuple[str, ...]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in names:
            found[f.name] = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
    return found


def _flatten(server: ServerSettings) -> dict[str, Any]:
    values = {name: getattr(server, name) for name in _SERVER_FIELDS}
    values.update({name: getattr(server.settings, name) for name in _SETTINGS_FIELDS})
    values.update({name: getattr(server.settings.config, name) for name in _AUTH_FIELDS})
    return values


def _secret_to_env(secret: bytes | None) -> dict[str, str]:
    if secret is None:
        return {_SECRET_VAR: "", _SECRET_HEX_VAR: ""}
    try:
        text = secret.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    if text and "\x00" not in text:
        return {_SECRET_VAR: text, _SECRET_HEX_VAR: ""}
    return {_SECRET_VAR: "", _SECRET_HEX_VAR: secret.hex()}


def _resolve(env: Mapping[str, str], overrides: Mapping[str, Any], *,
             server: bool) -> dict[str, Any]:
    """The flat field values (server, settings and config fields) from ``env`` and ``overrides``, defaults
    filled in, validated with messages that name the variable a bad value came from (else the field)."""
    known = {*_AUTH_FIELDS, *_SETTINGS_FIELDS, "config", *((*_SERVER_FIELDS, "settings") if server else ())}
    for name in overrides:
        if name not in known:
            raise ServiceConfigError(f"unknown setting {name!r}")
    values: dict[str, Any] = {}
    if "settings" in overrides:
        whole = overrides["settings"]
        if not isinstance(whole, Settings):
            raise ServiceConfigError("settings must be a Settings")
        values.update({name: getattr(whole, name) for name in _SETTINGS_FIELDS})
        values.update({name: getattr(whole.config, name) for name in _AUTH_FIELDS})
    if "config" in overrides:
        config = overrides["config"]
        if not isinstance(config, AuthConfig):
            raise ServiceConfigError("config must be an AuthConfig")
        values.update({name: getattr(config, name) for name in _AUTH_FIELDS})
    values.update({name: value for name, value in overrides.items() if name not in ("settings", "config")})

    overridden = set(values)
    sources: dict[str, str] = {}  # field -> the variable it was read from
    for var in _ENVIRONMENT:
        raw = env.get(var.name)
        if not raw or var.field in overridden or (var.server_only and not server):
            continue  # an empty variable counts as unset; an override wins without reading the variable
        if var.field in sources:
            raise ServiceConfigError(f"set {sources[var.field]} or {var.name}, not both")
        values[var.field] = var.parse(var.name, raw)
        sources[var.field] = var.name
    if isinstance(values.get("secret"), str):
        values["secret"] = values["secret"].encode("utf-8")

    def label(name: str) -> str:
        return sources.get(name, name)

    if server:
        values = {**_defaults(ServerSettings, _SERVER_FIELDS), **values}
        _check(_SERVER_RULES, values, label)
    if "users_path" not in values:
        # Users live in the same SQLite file as the sessions by default (one file to back up); with a
        # memory:// store they live in memory too, so a demo leaves no file behind.
        store_url = values.get("store_url", _DEFAULT_STORE_URL)
        store_file = _sqlite_path(store_url) if isinstance(store_url, str) else None
        if store_file is not None:
            values["users_path"] = store_file
        elif isinstance(store_url, str) and store_url.startswith("memory:"):
            values["users_path"] = MEMORY_USERS
        elif isinstance(store_url, str) and store_url.startswith(("postgresql://", "postgres://")):
            values["users_path"] = store_url  # one database for accounts and sessions
    if server and "base_url" not in values:
        shown = f"[{values['host']}]" if ":" in values["host"] else values["host"]
        values["base_url"] = f"http://{shown}:{values['port']}"  # mailed links point at the listening address
    values = {**_defaults(AuthConfig, _AUTH_FIELDS), **_defaults(Settings, _SETTINGS_FIELDS), **values}
    _check_auth(values, label)
    _check(_SETTINGS_RULES, values, label)
    return values


def _build_settings(values: Mapping[str, Any]) -> Settings:
    config = AuthConfig(**{name: values[name] for name in _AUTH_FIELDS})
    return Settings(config=config, **{name: values[name] for name in _SETTINGS_FIELDS})


def _sqlite_path(url: str) -> str | None:
    """The file of a ``sqlite:///relative`` or ``sqlite:////absolute`` URL, else None."""
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///"):].split("?", 1)[0]
    return path or None
