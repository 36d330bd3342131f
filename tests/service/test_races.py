"""A login in flight while the account's credentials or sessions are ended: once the operation has returned,
the session that login creates is dead, and so is its refresh token, on every backend.

The race is driven, not hoped for: the login is paused after it has read the account and checked the
password, just before it writes its session; the operation runs to completion; then the login resumes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from jwtkit.service import AuthConfig, AuthService, InvalidToken, KeyRing, MemoryMailer, MemoryUserRepository
from jwtkit.store import open_store

from .conftest import PASSWORD, CountingHasher, FakeClock, store_url_for

NEW_PASSWORD = "a completely different passphrase"


@pytest.fixture(params=["memory", "sqlite", "redis",
                        pytest.param("postgresql", marks=pytest.mark.postgresql)])
async def race_service(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock,
                       hasher: CountingHasher, mailer: MemoryMailer) -> AsyncIterator[AuthService]:
    backend = request.param
    url = (request.getfixturevalue({"redis": "redis_url", "postgresql": "postgres_url"}[backend])
           if backend in ("redis", "postgresql") else store_url_for(backend, tmp_path))
    service = AuthService(store=open_store(url, clock=clock), users=MemoryUserRepository(),
                          keys=KeyRing.generate(), config=AuthConfig(user_cache_ttl=0), mailer=mailer,
                          clock=clock, hasher=hasher)
    async with service:
        yield service


async def _reset(service: AuthService, user_id: str, mailer: MemoryMailer) -> None:
    await service.forgot_password("alice")
    token = mailer.sent[-1].body.split("token=", 1)[1].split()[0]
    await service.reset_password(token, NEW_PASSWORD)


OPERATIONS: dict[str, Callable[[AuthService, str, MemoryMailer], Awaitable[Any]]] = {
    "reset_password": _reset,
    "change_password": lambda service, user_id, _: service.change_password(user_id, PASSWORD, NEW_PASSWORD),
    "disable": lambda service, user_id, _: service.set_disabled(user_id, True),
    "logout_all": lambda service, user_id, _: service.logout_all(user_id),
    "set_password": lambda service, user_id, _: service.set_password(user_id, NEW_PASSWORD),
    "delete_user": lambda service, user_id, _: service.delete_user(user_id),
}
# the account check comes before the refresh token's session: a disabled or deleted account says so
_ACCOUNT_GONE = ("disable", "delete_user")


@pytest.mark.parametrize("operation", list(OPERATIONS))
async def test_a_login_in_flight_does_not_survive(race_service: AuthService, mailer: MemoryMailer,
                                                  operation: str) -> None:
    service = race_service
    user = await service.register("alice", PASSWORD, email="alice@example.org")
    before = await service.login("alice", PASSWORD)  # an ordinary session, for contrast

    reached = asyncio.Event()
    resume = asyncio.Event()
    real_create = service.store.create_session

    async def paused_create(session: Any, **options: Any) -> list[str]:
        reached.set()
        await resume.wait()
        return await real_create(session, **options)

    # the login has read the account and checked the password; its session is not written yet
    service.store.create_session = paused_create  # type: ignore[method-assign]
    login = asyncio.create_task(service.login("alice", PASSWORD))
    await asyncio.wait_for(reached.wait(), 10)
    service.store.create_session = real_create  # type: ignore[method-assign]
    await asyncio.wait_for(OPERATIONS[operation](service, user.id, mailer), 10)
    resume.set()
    late = await asyncio.wait_for(login, 10)  # the login cannot know: it completes

    for pair in (before, late):
        with pytest.raises(InvalidToken) as refused:
            await service.authenticate(pair.access_token)
        assert refused.value.reason == "revoked"
        with pytest.raises(InvalidToken) as refused:
            await service.refresh(pair.refresh_token)
        assert refused.value.reason == ("disabled" if operation in _ACCOUNT_GONE else "revoked")
    assert await service.list_sessions(user.id) == []


async def test_a_login_after_the_operation_works(race_service: AuthService) -> None:
    service = race_service
    user = await service.register("alice", PASSWORD)
    await service.logout_all(user.id)
    pair = await service.login("alice", PASSWORD)
    principal = await service.authenticate(pair.access_token)
    assert principal.user_id == user.id
    renewed = await service.refresh(pair.refresh_token)
    assert (await service.authenticate(renewed.access_token)).session_id == pair.session.sid
