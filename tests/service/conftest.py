"""Fixtures for the service tests: a fake clock, a cheap argon2 hasher, and an opened AuthService over the
memory and SQLite stores (real SQLite files), with users in the matching repository."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher

from clock import FakeClock
from jwtkit.service import (
    AuthConfig,
    AuthService,
    KeyRing,
    MemoryMailer,
    MemoryUserRepository,
    SQLiteUserRepository,
    User,
    UserRepository,
)
from jwtkit.store import open_store

T0 = 1_800_000_000.0
PASSWORD = "correct horse battery"
# past the default refresh_race_window's reach (two 10 s slots), an old refresh token is reuse
REUSE_AFTER = 21
BACKENDS = ("memory", "sqlite")


class CountingHasher(PasswordHasher):
    """argon2id with tiny parameters (fast tests) that counts verify calls."""

    def __init__(self, **params: Any) -> None:
        super().__init__(**{"time_cost": 1, "memory_cost": 8, "parallelism": 1, **params})
        self.verify_calls = 0
        self.hash_calls = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        self.verify_calls += 1
        return bool(super().verify(hash, password))

    def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
        self.hash_calls += 1
        return str(super().hash(password, salt=salt))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def hasher() -> CountingHasher:
    return CountingHasher()


@pytest.fixture
def mailer() -> MemoryMailer:
    return MemoryMailer()


@pytest.fixture
def keys() -> KeyRing:
    return KeyRing.generate()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


def make_users(backend: str, tmp_path: Path) -> UserRepository:
    if backend == "sqlite":
        return SQLiteUserRepository(tmp_path / "jwtkit.db")
    return MemoryUserRepository()


def store_url_for(backend: str, tmp_path: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'jwtkit.db'}"  # absolute path: four slashes
    return f"{backend}://"


ServiceFactory = Callable[..., AuthService]


@pytest.fixture
def make_service(backend: str, tmp_path: Path, clock: FakeClock, hasher: CountingHasher,
                 mailer: MemoryMailer, keys: KeyRing) -> ServiceFactory:
    """Build (unopened) services on this test's backend; keyword arguments become AuthConfig fields."""

    def build(store_url: str | None = None, **config: Any) -> AuthService:
        url = store_url or store_url_for(backend, tmp_path)
        users = make_users("sqlite" if url.startswith("sqlite") else "memory", tmp_path)
        return AuthService(store=open_store(url, clock=clock), users=users, keys=keys,
                           config=AuthConfig(**config), mailer=mailer, clock=clock, hasher=hasher)

    return build


@pytest.fixture
async def service(make_service: ServiceFactory) -> AsyncIterator[AuthService]:
    svc = make_service()
    async with svc:
        yield svc


@pytest.fixture
async def alice(service: AuthService) -> User:
    return await service.register("Alice", PASSWORD, email="alice@example.org")
