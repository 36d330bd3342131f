"""AuthConfig validation, Settings.from_env and build_service."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from jwtkit.service import (
    AuthConfig,
    AuthService,
    KeyRing,
    OutboxMailer,
    ServiceConfigError,
    Settings,
    SMTPMailer,
    SQLiteUserRepository,
    build_service,
)

from .conftest import PASSWORD

SECRET = "0123456789abcdef0123456789abcdef"


def test_defaults() -> None:
    config = AuthConfig()
    assert (config.issuer, config.audience, config.access_ttl, config.refresh_ttl) == ("jwtkit", None, 900,
                                                                                         14 * 86400)
    assert (config.verify_ttl, config.reset_ttl, config.throttle_threshold) == (86400, 1800, 5)
    assert config.allow_unverified_login is True
    assert config.bind_user_agent is False
    assert config.max_sessions_per_user == 50
    assert AuthConfig(base_url="https://example.org/").base_url == "https://example.org"


@pytest.mark.parametrize("bad", [
    {"issuer": ""}, {"audience": ""}, {"access_ttl": 0}, {"access_ttl": -1}, {"access_ttl": True},
    {"refresh_ttl": 10, "access_ttl": 20}, {"throttle_threshold": 0}, {"throttle_window": float("nan")},
    {"throttle_base_delay": 0}, {"throttle_max_delay": 0.5}, {"leeway": -1}, {"leeway": 3600},
    {"base_url": "ftp://x"}, {"base_url": "example.org"}, {"user_cache_ttl": -1},
    {"max_sessions_per_user": 0}, {"max_sessions_per_user": 1001}, {"max_sessions_per_user": None},
    {"max_sessions_per_user": True}, {"max_sessions_per_user": 2.0},
])
def test_bad_config_is_refused_where_built(bad: dict[str, object]) -> None:
    with pytest.raises(ServiceConfigError) as info:
        AuthConfig(**bad)  # type: ignore[arg-type]
    assert info.value.code == "service_config"


def test_settings_from_env() -> None:
    env = {
        "JWT_SECRET": SECRET,
        "JWTKIT_STORE": "sqlite:///data/sessions.db",
        "JWTKIT_KEY_FILE": "/etc/jwtkit.key",
        "JWTKIT_OUTBOX": "/tmp/outbox",
        "JWTKIT_ISSUER": "https://auth.example.org",
        "JWTKIT_AUDIENCE": "https://api.example.org",
        "JWTKIT_BASE_URL": "https://auth.example.org",
        "JWTKIT_ACCESS_TTL": "300",
        "JWTKIT_REFRESH_TTL": "86400",
        "JWTKIT_ALLOW_UNVERIFIED_LOGIN": "false",
        "JWTKIT_BIND_USER_AGENT": "yes",
        "JWTKIT_THROTTLE_WINDOW": "60.5",
        "JWTKIT_SMTP_HOST": "mail.example.org",
        "JWTKIT_SMTP_PORT": "2525",
        "JWTKIT_SMTP_PASSWORD": "hunter2",
    }
    settings = Settings.from_env(env)
    assert settings.secret == SECRET.encode()
    assert settings.store_url == "sqlite:///data/sessions.db"
    assert settings.users_path == "data/sessions.db"  # users share the store's file by default
    assert settings.key_path == "/etc/jwtkit.key"
    assert settings.outbox_path == "/tmp/outbox"
    assert settings.smtp_host == "mail.example.org"
    assert settings.smtp_port == 2525
    config = settings.config
    assert config.issuer == "https://auth.example.org"
    assert config.audience == "https://api.example.org"
    assert config.access_ttl == 300
    assert config.refresh_ttl == 86400
    assert config.allow_unverified_login is False
    assert config.bind_user_agent is True
    assert config.throttle_window == 60.5
    assert SECRET not in repr(settings)
    assert "hunter2" not in repr(settings)


def test_settings_defaults_and_overrides() -> None:
    settings = Settings.from_env({})
    assert settings == Settings()
    assert (settings.store_url, settings.users_path, settings.key_path, settings.secret) == (
        "sqlite:///jwtkit.db", "jwtkit.db", "jwtkit.key", None)
    settings = Settings.from_env({"JWTKIT_ISSUER": "env"}, issuer="override", store_url="memory://",
                                 users_path=":memory:")
    assert settings.config.issuer == "override"
    assert settings.store_url == "memory://"
    with pytest.raises(ServiceConfigError, match="unknown setting"):
        Settings.from_env({}, no_such_thing=1)


def test_settings_absolute_sqlite_path() -> None:
    absolute = Settings.from_env({"JWTKIT_STORE": "sqlite:////var/lib/jwtkit.db"})
    assert absolute.users_path == "/var/lib/jwtkit.db"
    assert Settings.from_env({"JWTKIT_STORE": "redis://127.0.0.1:6390/0"}).users_path == "jwtkit.db"


@pytest.mark.parametrize(("var", "value"), [
    ("JWTKIT_ACCESS_TTL", "soon"), ("JWTKIT_ACCESS_TTL", "0"), ("JWTKIT_BIND_USER_AGENT", "maybe"),
    ("JWTKIT_THROTTLE_WINDOW", "inf"), ("JWTKIT_SMTP_PORT", "x"), ("JWTKIT_BASE_URL", "nowhere"),
])
def test_bad_environment_values(var: str, value: str) -> None:
    with pytest.raises(ServiceConfigError):
        Settings.from_env({var: value})


def test_settings_from_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWTKIT_ISSUER", "from-os-environ")
    assert Settings.from_env().config.issuer == "from-os-environ"


async def test_build_service_with_a_key_file(tmp_path: Path) -> None:
    settings = Settings(store_url=f"sqlite:///{tmp_path}/jwtkit.db", users_path=str(tmp_path / "jwtkit.db"),
                        key_path=str(tmp_path / "jwtkit.key"), outbox_path=str(tmp_path / "outbox"))
    service = build_service(settings)
    assert isinstance(service, AuthService)
    assert isinstance(service.users, SQLiteUserRepository)
    assert isinstance(service.mailer, OutboxMailer)
    assert service.mailer.console  # the server prints each outbox link on its console
    assert stat.S_IMODE((tmp_path / "jwtkit.key").stat().st_mode) == 0o600
    assert service.keys.active.kid == KeyRing.load(tmp_path / "jwtkit.key").active.kid
    async with service:
        user = await service.register("alice", PASSWORD, email="alice@example.org")
        await service.send_verification(user.id)
    [mail] = list((tmp_path / "outbox").glob("*.txt"))
    assert "/verify?token=" in mail.read_text()
    # a second process start keeps the same key, so earlier tokens stay valid
    assert build_service(settings).keys.active.kid == service.keys.active.kid


def test_build_service_with_a_secret_and_smtp(tmp_path: Path) -> None:
    settings = Settings.from_env({"JWT_SECRET": SECRET, "JWTKIT_SMTP_HOST": "mail.example.org",
                                  "JWTKIT_STORE": "memory://", "JWTKIT_KEY_FILE": str(tmp_path / "unused")})
    service = build_service(settings)
    assert isinstance(service.mailer, SMTPMailer)
    assert service.keys.active.kid == KeyRing.from_secret(SECRET.encode()).active.kid
    assert not (tmp_path / "unused").exists()


def test_build_service_refuses_a_short_secret() -> None:
    with pytest.raises(ServiceConfigError, match="at least 32 bytes"):
        build_service(Settings.from_env({"JWT_SECRET": "secret", "JWTKIT_STORE": "memory://"}))


def test_memory_store_keeps_users_in_memory(tmp_path: Path) -> None:
    from jwtkit.service import MemoryUserRepository

    settings = Settings.from_env({"JWT_SECRET": SECRET, "JWTKIT_STORE": "memory://"})
    assert settings.users_path == ":memory:"
    assert isinstance(build_service(settings).users, MemoryUserRepository)
    explicit = Settings.from_env({"JWT_SECRET": SECRET, "JWTKIT_STORE": "memory://",
                                  "JWTKIT_DB": str(tmp_path / "u.db")})
    assert isinstance(build_service(explicit).users, SQLiteUserRepository)


def test_store_override_moves_the_users_file_too() -> None:
    assert Settings.from_env({}, store_url="sqlite:///other.db").users_path == "other.db"
