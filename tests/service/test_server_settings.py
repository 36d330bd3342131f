"""ServerSettings: one frozen type for a server process, read from the environment and written back to it.

The codec's promise is ``ServerSettings.from_env(s.to_env()) == s`` for every valid ``s``: checked over
generated settings, then variable by variable, refusal by refusal.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jwtkit.service import AuthConfig, ServiceConfigError, Settings
from jwtkit.service._config import _ENVIRONMENT, ServerSettings

SECRET = "0123456789abcdef0123456789abcdef"

# Text that an environment variable can hold: no NUL, no lone surrogates.
_chars = st.characters(codec="utf-8", exclude_characters="\x00")
texts = st.text(_chars, min_size=1, max_size=20)
optional_texts = st.none() | texts
secrets = st.none() | st.binary(min_size=1, max_size=40) | texts.map(lambda t: t.encode("utf-8"))
positive_ints = st.integers(min_value=1, max_value=10**12)
positive_floats = st.floats(min_value=0, exclude_min=True, max_value=1e12, allow_nan=False,
                            allow_infinity=False)
hosts = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_\u00e9"),
                min_size=1, max_size=20)
base_urls = st.builds(lambda scheme, host, path: f"{scheme}://{host}{path}",
                      st.sampled_from(["http", "https"]), hosts,
                      st.sampled_from(["", "/", "/auth", "/a/b/", ":8443"]))


@st.composite
def auth_configs(draw: st.DrawFn) -> AuthConfig:
    access, refresh = sorted(draw(st.lists(positive_ints, min_size=2, max_size=2)))
    base_delay, max_delay = sorted(draw(st.lists(positive_floats, min_size=2, max_size=2)))
    return AuthConfig(
        issuer=draw(texts), audience=draw(optional_texts), access_ttl=access, refresh_ttl=refresh,
        verify_ttl=draw(positive_ints), reset_ttl=draw(positive_ints),
        allow_unverified_login=draw(st.booleans()), bind_user_agent=draw(st.booleans()),
        throttle_threshold=draw(positive_ints), throttle_window=draw(positive_floats),
        throttle_base_delay=base_delay, throttle_max_delay=max_delay, base_url=draw(base_urls),
        leeway=draw(st.integers(0, 300)),
        user_cache_ttl=draw(st.floats(0, 3600, allow_nan=False) | st.integers(0, 3600)),
    )


@st.composite
def server_settings(draw: st.DrawFn) -> ServerSettings:
    service = Settings(
        store_url=draw(texts), users_path=draw(texts), key_path=draw(texts), secret=draw(secrets),
        outbox_path=draw(texts), config=draw(auth_configs()), mail_from=draw(texts),
        smtp_host=draw(optional_texts), smtp_port=draw(st.integers(1, 65535)),
        smtp_username=draw(optional_texts), smtp_password=draw(optional_texts),
        key_encryption_key=draw(st.none() | st.binary(min_size=32, max_size=32)),
        keys=draw(st.sampled_from(["auto", "store", "file"])),
    )
    return ServerSettings(settings=service, host=draw(texts), port=draw(st.integers(0, 65535)),
                          workers=draw(st.integers(1, 64)), secure_cookies=draw(st.booleans()),
                          allow_query_token=draw(st.booleans()),
                          max_concurrency=draw(st.integers(1, 100_000)),
                          forwarded_allow_ips=draw(st.sampled_from([(), ("*",), ("10.0.0.0/8", "::1")])))


ALL_VARIABLES = {var.name for var in _ENVIRONMENT}


@settings(max_examples=300, deadline=None)
@given(server_settings())
def test_to_env_is_the_exact_inverse_of_from_env(server: ServerSettings) -> None:
    env = server.to_env()
    assert set(env) == ALL_VARIABLES  # every variable, so merged over another environment it still wins
    assert all(isinstance(value, str) and "\x00" not in value for value in env.values())
    assert ServerSettings.from_env(env) == server
    assert ServerSettings.from_env(env).settings.secret == server.settings.secret


@settings(max_examples=100, deadline=None)
@given(server_settings(), server_settings())
def test_to_env_wins_over_the_environment_it_is_merged_into(server: ServerSettings,
                                                           other: ServerSettings) -> None:
    assert ServerSettings.from_env({**other.to_env(), **server.to_env()}) == server


@settings(max_examples=100, deadline=None)
@given(server_settings())
def test_settings_from_env_reads_the_same_variables(server: ServerSettings) -> None:
    assert Settings.from_env(server.to_env()) == server.settings


def test_a_real_child_environment_carries_a_binary_secret_and_none_fields() -> None:
    server = ServerSettings(settings=Settings(secret=b"\x00\xff" * 20, smtp_host=None,
                                              config=AuthConfig(audience="api", throttle_window=0.1)),
                            port=0, workers=3, secure_cookies=False)
    env = server.to_env()
    assert env["JWT_SECRET"] == "" and env["JWTKIT_SECRET_HEX"] == "00ff" * 20
    code = ("import sys; from jwtkit.service._config import ServerSettings; "
            "sys.stdout.write(repr(sorted(ServerSettings.from_env().to_env().items())))")
    parent = {k: v for k, v in os.environ.items() if not k.startswith(("JWTKIT_", "JWT_SECRET"))}
    child = subprocess.run([sys.executable, "-c", code], env={**parent, "JWT_SECRET": "leak", **env},
                           capture_output=True, text=True, timeout=60, check=True)
    assert child.stdout == repr(sorted(env.items()))


def test_defaults() -> None:
    assert ServerSettings.from_env({}) == ServerSettings()
    server = ServerSettings()
    assert (server.host, server.port, server.workers, server.secure_cookies, server.allow_query_token) == (
        "127.0.0.1", 8000, 1, True, False)
    assert server.settings == Settings()
    assert dataclasses.is_dataclass(server) and not hasattr(server, "__dict__")  # slotted
    with pytest.raises(dataclasses.FrozenInstanceError):
        server.port = 1  # type: ignore[misc]


def _server(server: ServerSettings) -> ServerSettings:
    return server


def _service(server: ServerSettings) -> Settings:
    return server.settings


def _config(server: ServerSettings) -> AuthConfig:
    return server.settings.config


# (variable, raw value, where the field lives, field, expected value)
EXACT: list[tuple[str, str, Any, str, object]] = [
    ("JWTKIT_HOST", "0.0.0.0", _server, "host", "0.0.0.0"),
    ("JWTKIT_PORT", "9000", _server, "port", 9000),
    ("JWTKIT_PORT", " 0 ", _server, "port", 0),
    ("JWTKIT_WORKERS", "4", _server, "workers", 4),
    ("JWTKIT_SECURE_COOKIES", "false", _server, "secure_cookies", False),
    ("JWTKIT_SECURE_COOKIES", "ON", _server, "secure_cookies", True),
    ("JWTKIT_ALLOW_QUERY_TOKEN", "yes", _server, "allow_query_token", True),
    ("JWTKIT_ALLOW_QUERY_TOKEN", "0", _server, "allow_query_token", False),
    ("JWTKIT_MAX_CONCURRENCY", "64", _server, "max_concurrency", 64),
    ("JWTKIT_FORWARDED_ALLOW_IPS", "10.0.0.0/8, ::1", _server, "forwarded_allow_ips", ("10.0.0.0/8", "::1")),
    ("JWTKIT_FORWARDED_ALLOW_IPS", "*", _server, "forwarded_allow_ips", ("*",)),
    ("JWT_SECRET", SECRET, _service, "secret", SECRET.encode()),
    ("JWT_SECRET", "caf\u00e9 \u2603" * 8, _service, "secret", ("caf\u00e9 \u2603" * 8).encode()),
    ("JWTKIT_SECRET_HEX", "00ff" * 16, _service, "secret", b"\x00\xff" * 16),
    ("JWTKIT_STORE", "redis://127.0.0.1:6390/0", _service, "store_url", "redis://127.0.0.1:6390/0"),
    ("JWTKIT_DB", "/var/lib/users.db", _service, "users_path", "/var/lib/users.db"),
    ("JWTKIT_KEY_FILE", "/etc/jwtkit.key", _service, "key_path", "/etc/jwtkit.key"),
    ("JWTKIT_KEYS", "store", _service, "keys", "store"),
    ("JWTKIT_KEYS", "file", _service, "keys", "file"),
    ("JWTKIT_KEY_ENCRYPTION_KEY", "ab" * 32, _service, "key_encryption_key", b"\xab" * 32),
    ("JWTKIT_KEY_ENCRYPTION_KEY", "q" * 42 + "g", _service, "key_encryption_key",
     base64.urlsafe_b64decode("q" * 42 + "g=")),
    ("JWTKIT_KEY_ENCRYPTION_KEY", "-_" * 21 + "w=", _service, "key_encryption_key",
     base64.urlsafe_b64decode("-_" * 21 + "w=")),
    ("JWTKIT_OUTBOX", "/tmp/outbox", _service, "outbox_path", "/tmp/outbox"),
    ("JWTKIT_MAIL_FROM", "auth@example.org", _service, "mail_from", "auth@example.org"),
    ("JWTKIT_SMTP_HOST", "mail.example.org", _service, "smtp_host", "mail.example.org"),
    ("JWTKIT_SMTP_PORT", "2525", _service, "smtp_port", 2525),
    ("JWTKIT_SMTP_USERNAME", "mailer", _service, "smtp_username", "mailer"),
    ("JWTKIT_SMTP_PASSWORD", "hunter2", _service, "smtp_password", "hunter2"),
    ("JWTKIT_ISSUER", "https://auth.example.org", _config, "issuer", "https://auth.example.org"),
    ("JWTKIT_AUDIENCE", "https://api.example.org", _config, "audience", "https://api.example.org"),
    ("JWTKIT_BASE_URL", "https://auth.example.org/", _config, "base_url", "https://auth.example.org"),
    ("JWTKIT_ACCESS_TTL", "300", _config, "access_ttl", 300),
    ("JWTKIT_REFRESH_TTL", "86400", _config, "refresh_ttl", 86400),
    ("JWTKIT_VERIFY_TTL", "3600", _config, "verify_ttl", 3600),
    ("JWTKIT_RESET_TTL", "600", _config, "reset_ttl", 600),
    ("JWTKIT_ALLOW_UNVERIFIED_LOGIN", "false", _config, "allow_unverified_login", False),
    ("JWTKIT_BIND_USER_AGENT", "true", _config, "bind_user_agent", True),
    ("JWTKIT_THROTTLE_THRESHOLD", "10", _config, "throttle_threshold", 10),
    ("JWTKIT_THROTTLE_IP_THRESHOLD", "1000", _config, "throttle_ip_threshold", 1000),
    ("JWTKIT_DEVICE_TTL", "86400", _config, "device_ttl", 86400),
    ("JWTKIT_THROTTLE_WINDOW", "60.5", _config, "throttle_window", 60.5),
    ("JWTKIT_THROTTLE_BASE_DELAY", "0.25", _config, "throttle_base_delay", 0.25),
    ("JWTKIT_THROTTLE_MAX_DELAY", "30", _config, "throttle_max_delay", 30.0),
    ("JWTKIT_LEEWAY", "30", _config, "leeway", 30),
    ("JWTKIT_USER_CACHE_TTL", "0", _config, "user_cache_ttl", 0.0),
    ("JWTKIT_REFRESH_RACE_WINDOW", "0", _config, "refresh_race_window", 0),
    ("JWTKIT_REVOCATION_MIRROR", "off", _config, "revocation_mirror", "off"),
    ("JWTKIT_MIRROR_MAX_LAG", "0.5", _config, "mirror_max_lag", 0.5),
    ("JWTKIT_MAX_SESSIONS", "1", _config, "max_sessions_per_user", 1),
    ("JWTKIT_MAX_SESSIONS", " 1000 ", _config, "max_sessions_per_user", 1000),
    ("JWTKIT_REQUIRE_DPOP", "true", _config, "require_dpop", True),
    ("JWTKIT_REQUIRE_DPOP", "0", _config, "require_dpop", False),
    ("JWTKIT_DPOP_NONCE_SECRET", "cd" * 32, _service, "dpop_nonce_secret", b"\xcd" * 32),
]


def test_every_variable_has_an_exact_test() -> None:
    assert {var for var, *_ in EXACT} == ALL_VARIABLES


@pytest.mark.parametrize(("var", "raw", "part", "name", "expected"), EXACT,
                         ids=[f"{var}={raw!r}" for var, raw, *_ in EXACT])
def test_each_variable(var: str, raw: str, part: Any, name: str, expected: object) -> None:
    server = ServerSettings.from_env({var: raw})
    value = getattr(part(server), name)
    assert value == expected and type(value) is type(expected)
    # and nothing else moved: every other field keeps its default
    default = ServerSettings.from_env({})
    changed = {field for field, new in _flat(server).items() if new != _flat(default)[field]}
    assert changed <= {name, "base_url", "users_path"}
    assert ServerSettings.from_env(server.to_env()) == server


def _flat(server: ServerSettings) -> dict[str, object]:
    values: dict[str, object] = {f.name: getattr(server, f.name) for f in dataclasses.fields(server)}
    values.update({f.name: getattr(server.settings, f.name) for f in dataclasses.fields(server.settings)})
    values.update({f.name: getattr(server.settings.config, f.name)
                   for f in dataclasses.fields(server.settings.config)})
    del values["settings"], values["config"]
    return values


@pytest.mark.parametrize(("var", "raw", "message"), [
    ("JWTKIT_PORT", "eighty", "JWTKIT_PORT must be an integer, not 'eighty'"),
    ("JWTKIT_PORT", "70000", "JWTKIT_PORT must be an integer between 0 and 65535, not 70000"),
    ("JWTKIT_PORT", "-1", "JWTKIT_PORT must be an integer between 0 and 65535, not -1"),
    ("JWTKIT_WORKERS", "0", "JWTKIT_WORKERS must be an integer between 1 and 64, not 0"),
    ("JWTKIT_WORKERS", "65", "JWTKIT_WORKERS must be an integer between 1 and 64, not 65"),
    ("JWTKIT_WORKERS", "2.5", "JWTKIT_WORKERS must be an integer, not '2.5'"),
    ("JWTKIT_SECURE_COOKIES", "maybe", "JWTKIT_SECURE_COOKIES must be true or false"),
    ("JWTKIT_ALLOW_QUERY_TOKEN", "2", "JWTKIT_ALLOW_QUERY_TOKEN must be true or false"),
    ("JWTKIT_MAX_CONCURRENCY", "0", "JWTKIT_MAX_CONCURRENCY must be an integer between 1 and 100000, not 0"),
    ("JWTKIT_FORWARDED_ALLOW_IPS", "10.0.0.1,proxy.local",
     "JWTKIT_FORWARDED_ALLOW_IPS must be comma-separated IP addresses or networks, or *"),
    ("JWTKIT_HOST", "a\x00b", "JWTKIT_HOST must be a non-empty string without NUL characters"),
    ("JWTKIT_SECRET_HEX", "xyz", "JWTKIT_SECRET_HEX must be hexadecimal"),
    ("JWTKIT_KEYS", "redis", "JWTKIT_KEYS must be one of auto, store, file, not 'redis'"),
    ("JWTKIT_KEY_ENCRYPTION_KEY", "ab" * 16,
     "JWTKIT_KEY_ENCRYPTION_KEY must be 32 bytes in hex or base64url"),
    ("JWTKIT_KEY_ENCRYPTION_KEY", "not a key!", "JWTKIT_KEY_ENCRYPTION_KEY must be 32 bytes in hex"),
    ("JWTKIT_SMTP_PORT", "x", "JWTKIT_SMTP_PORT must be an integer, not 'x'"),
    ("JWTKIT_SMTP_PORT", "0", "JWTKIT_SMTP_PORT must be an integer between 1 and 65535, not 0"),
    ("JWTKIT_SMTP_PASSWORD", "a\x00b", "JWTKIT_SMTP_PASSWORD must be None or a non-empty string"),
    ("JWTKIT_ACCESS_TTL", "soon", "JWTKIT_ACCESS_TTL must be an integer, not 'soon'"),
    ("JWTKIT_ACCESS_TTL", "0", "JWTKIT_ACCESS_TTL must be a positive integer, not 0"),
    ("JWTKIT_ACCESS_TTL", "9999999999", "JWTKIT_ACCESS_TTL must not exceed refresh_ttl"),
    ("JWTKIT_REFRESH_TTL", "60", "access_ttl must not exceed JWTKIT_REFRESH_TTL"),
    ("JWTKIT_VERIFY_TTL", "-5", "JWTKIT_VERIFY_TTL must be a positive integer, not -5"),
    ("JWTKIT_RESET_TTL", "1e3", "JWTKIT_RESET_TTL must be an integer, not '1e3'"),
    ("JWTKIT_THROTTLE_THRESHOLD", "0", "JWTKIT_THROTTLE_THRESHOLD must be a positive integer, not 0"),
    ("JWTKIT_THROTTLE_WINDOW", "inf", "JWTKIT_THROTTLE_WINDOW must be a finite number, not 'inf'"),
    ("JWTKIT_THROTTLE_WINDOW", "nan", "JWTKIT_THROTTLE_WINDOW must be a finite number, not 'nan'"),
    ("JWTKIT_THROTTLE_WINDOW", "soon", "JWTKIT_THROTTLE_WINDOW must be a number, not 'soon'"),
    ("JWTKIT_THROTTLE_BASE_DELAY", "0", "JWTKIT_THROTTLE_BASE_DELAY must be a positive number, not 0.0"),
    ("JWTKIT_THROTTLE_MAX_DELAY", "0.5", "JWTKIT_THROTTLE_MAX_DELAY must be at least throttle_base_delay"),
    ("JWTKIT_BIND_USER_AGENT", "maybe", "JWTKIT_BIND_USER_AGENT must be true or false"),
    ("JWTKIT_ALLOW_UNVERIFIED_LOGIN", "nope", "JWTKIT_ALLOW_UNVERIFIED_LOGIN must be true or false"),
    ("JWTKIT_BASE_URL", "nowhere", "JWTKIT_BASE_URL must be an http(s) URL, not 'nowhere'"),
    ("JWTKIT_BASE_URL", "http://[", "JWTKIT_BASE_URL must be an http(s) URL"),
    ("JWTKIT_LEEWAY", "301", "JWTKIT_LEEWAY must be an integer between 0 and 300 (seconds), not 301"),
    ("JWTKIT_USER_CACHE_TTL", "-1", "JWTKIT_USER_CACHE_TTL must be a number between 0 and 3600"),
    ("JWTKIT_REFRESH_RACE_WINDOW", "61",
     "JWTKIT_REFRESH_RACE_WINDOW must be an integer between 0 and 60 (seconds), not 61"),
    ("JWTKIT_REVOCATION_MIRROR", "yes", "JWTKIT_REVOCATION_MIRROR must be one of auto, on, off, not 'yes'"),
    ("JWTKIT_MIRROR_MAX_LAG", "0", "JWTKIT_MIRROR_MAX_LAG must be a number above 0 and at most 60"),
    ("JWTKIT_MAX_SESSIONS", "0", "JWTKIT_MAX_SESSIONS must be an integer between 1 and 1000, not 0"),
    ("JWTKIT_DPOP_NONCE_SECRET", "ab" * 16, "JWTKIT_DPOP_NONCE_SECRET must be 32 bytes in hex or base64url"),
    ("JWTKIT_MAX_SESSIONS", "1001", "JWTKIT_MAX_SESSIONS must be an integer between 1 and 1000, not 1001"),
    ("JWTKIT_MAX_SESSIONS", "-1", "JWTKIT_MAX_SESSIONS must be an integer between 1 and 1000, not -1"),
    ("JWTKIT_MAX_SESSIONS", "none", "JWTKIT_MAX_SESSIONS must be an integer, not 'none'"),
    ("JWTKIT_ISSUER", "\x00", "JWTKIT_ISSUER must be a non-empty string without NUL characters"),
])
def test_each_refusal_names_the_variable(var: str, raw: str, message: str) -> None:
    with pytest.raises(ServiceConfigError) as info:
        ServerSettings.from_env({var: raw})
    assert str(info.value).startswith(message), str(info.value)
    assert info.value.code == "service_config"


def test_a_refused_secret_is_never_shown() -> None:
    with pytest.raises(ServiceConfigError) as info:
        ServerSettings.from_env({}, smtp_password="a\x00secret")
    assert "secret" not in str(info.value).replace("smtp_password", "")
    with pytest.raises(ServiceConfigError, match="<hidden>"):
        Settings(secret=b"")


def test_both_secret_variables_are_refused() -> None:
    with pytest.raises(ServiceConfigError, match="set JWT_SECRET or JWTKIT_SECRET_HEX, not both"):
        ServerSettings.from_env({"JWT_SECRET": SECRET, "JWTKIT_SECRET_HEX": "00ff"})


def test_an_empty_variable_counts_as_unset() -> None:
    env = {var: "" for var in ALL_VARIABLES}
    assert ServerSettings.from_env(env) == ServerSettings()
    assert ServerSettings.from_env({"JWTKIT_ALLOW_UNVERIFIED_LOGIN": ""}).settings.config \
        .allow_unverified_login is True


def test_overrides_win_over_the_environment() -> None:
    env = {"JWTKIT_PORT": "1", "JWTKIT_ISSUER": "env", "JWTKIT_STORE": "memory://", "JWTKIT_WORKERS": "oops"}
    server = ServerSettings.from_env(env, port=9000, issuer="override", workers=2, secure_cookies=False)
    assert (server.port, server.workers, server.secure_cookies) == (9000, 2, False)
    assert server.settings.config.issuer == "override"
    assert server.settings.store_url == "memory://"
    assert server.settings.users_path == ":memory:"


def test_whole_object_overrides_win_and_single_fields_win_over_them() -> None:
    env = {"JWTKIT_ISSUER": "env", "JWTKIT_ACCESS_TTL": "60", "JWTKIT_PORT": "9000"}
    config = AuthConfig(issuer="config")
    assert Settings.from_env(env, config=config).config == config
    assert Settings.from_env(env, config=config, access_ttl=120).config == dataclasses.replace(
        config, access_ttl=120)
    service = Settings(store_url="memory://", users_path=":memory:", secret=SECRET.encode())
    server = ServerSettings.from_env(env, settings=service)
    assert server.settings == service and server.port == 9000
    assert ServerSettings.from_env(env, settings=service, issuer="x").settings.config.issuer == "x"
    with pytest.raises(ServiceConfigError, match="settings must be a Settings"):
        ServerSettings.from_env({}, settings=config)
    with pytest.raises(ServiceConfigError, match="config must be an AuthConfig"):
        Settings.from_env({}, config=service)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"port": 70000}, "port must be an integer between 0 and 65535, not 70000"),
    ({"port": "9000"}, "port must be an integer between 0 and 65535, not '9000'"),
    ({"workers": True}, "workers must be an integer between 1 and 64, not True"),
    ({"secure_cookies": "no"}, "secure_cookies must be true or false, not 'no'"),
    ({"host": ""}, "host must be a non-empty string without NUL characters, not ''"),
    ({"audience": ""}, "audience must be None or a non-empty string"),
    ({"access_ttl": 60, "refresh_ttl": 30}, "access_ttl must not exceed refresh_ttl"),
    ({"no_such_thing": 1}, "unknown setting 'no_such_thing'"),
])
def test_each_refused_override_names_the_field(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ServiceConfigError) as info:
        ServerSettings.from_env({"JWTKIT_PORT": "9000", "JWTKIT_REFRESH_TTL": "9000"}, **overrides)
    assert str(info.value).startswith(message), str(info.value)


def test_settings_from_env_knows_nothing_of_the_server() -> None:
    assert Settings.from_env({"JWTKIT_PORT": "eighty", "JWTKIT_WORKERS": "0"}) == Settings()
    with pytest.raises(ServiceConfigError, match="unknown setting 'port'"):
        Settings.from_env({}, port=9000)


def test_mailed_links_point_at_the_listening_address_unless_base_url_is_set() -> None:
    assert ServerSettings.from_env({"JWTKIT_PORT": "9000"}).settings.config.base_url == "http://127.0.0.1:9000"
    assert ServerSettings.from_env({}, host="::1", port=9001).settings.config.base_url == "http://[::1]:9001"
    assert ServerSettings.from_env({"JWTKIT_BASE_URL": "https://auth.example.org", "JWTKIT_PORT": "9000"}
                                   ).settings.config.base_url == "https://auth.example.org"
    assert ServerSettings.from_env({}, port=9000, base_url="https://x.example").settings.config.base_url == \
        "https://x.example"
    # the library's Settings keep their own default, as before
    assert Settings.from_env({}).config.base_url == "http://127.0.0.1:8000"


def test_from_env_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWTKIT_PORT", "9000")
    monkeypatch.setenv("JWTKIT_ISSUER", "from-os-environ")
    server = ServerSettings.from_env()
    assert server.port == 9000 and server.settings.config.issuer == "from-os-environ"


def test_a_str_secret_is_its_utf8_bytes() -> None:
    assert Settings(secret=SECRET).secret == SECRET.encode()  # type: ignore[arg-type]
    assert ServerSettings.from_env({}, secret=SECRET).settings.secret == SECRET.encode()


@pytest.mark.parametrize("bad", [
    {"store_url": ""}, {"users_path": None}, {"key_path": "a\x00"}, {"outbox_path": 1}, {"mail_from": ""},
    {"smtp_host": ""}, {"smtp_port": 0}, {"smtp_port": "25"}, {"smtp_username": ""}, {"secret": b""},
    {"config": None},
])
def test_bad_settings_are_refused_where_built(bad: dict[str, Any]) -> None:
    with pytest.raises(ServiceConfigError):
        Settings(**bad)


@pytest.mark.parametrize("bad", [
    {"host": ""}, {"port": -1}, {"port": 65536}, {"workers": 0}, {"workers": 65}, {"secure_cookies": 1},
    {"allow_query_token": None}, {"settings": None},
])
def test_bad_server_settings_are_refused_where_built(bad: dict[str, Any]) -> None:
    with pytest.raises(ServiceConfigError):
        ServerSettings(**bad)


@pytest.mark.parametrize(("store", "users"), [
    ("postgresql://jwtkit@db.internal/jwtkit", "postgresql://jwtkit@db.internal/jwtkit"),  # one database
    ("postgres://db/jwtkit?pool_max=20", "postgres://db/jwtkit?pool_max=20"),
    ("redis://127.0.0.1:6390/0", "jwtkit.db"),  # Redis holds no accounts: the local file stays
])
def test_the_users_database_follows_a_postgresql_store(store: str, users: str) -> None:
    assert Settings.from_env({"JWTKIT_STORE": store}).users_path == users
    # JWTKIT_DB still wins: accounts in PostgreSQL, sessions in Redis
    split = Settings.from_env({"JWTKIT_STORE": "redis://127.0.0.1:6390/0", "JWTKIT_DB": "postgresql://db/u"})
    assert split.users_path == "postgresql://db/u"


def test_build_service_picks_the_postgresql_users_repository() -> None:
    from jwtkit.service._accounts_postgres import PostgresUserRepository
    from jwtkit.service._build import users_for

    assert isinstance(users_for("postgresql://db/u"), PostgresUserRepository)
    assert type(users_for(":memory:")).__name__ == "MemoryUserRepository"
    assert type(users_for("users.db")).__name__ == "SQLiteUserRepository"
