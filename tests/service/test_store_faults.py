"""Store faults propagate as StoreUnavailable (the web layer answers 503); they never read as a valid
session, nor as a wrong password."""

from __future__ import annotations

from typing import Any

import pytest

from jwtkit.service import AuthService, KeyRing, MemoryMailer, MemoryUserRepository
from jwtkit.store import StoreUnavailable, open_store
from waiting import mirror_stale

from .conftest import PASSWORD, CountingHasher, FakeClock

pytestmark = pytest.mark.redis


async def test_redis_down_fails_closed(
    redis_server: Any, clock: FakeClock, hasher: CountingHasher
) -> None:
    service = AuthService(store=open_store(redis_server.url, clock=clock), users=MemoryUserRepository(),
                          keys=KeyRing.generate(), mailer=MemoryMailer(), clock=clock, hasher=hasher)
    async with service:
        user = await service.register("alice", PASSWORD)
        pair = await service.login("alice", PASSWORD)
        await service.authenticate(pair.access_token)
        redis_server.kill()
        await mirror_stale(service)  # the mirror answers until it sees the feed broke (within max_lag)
        with pytest.raises(StoreUnavailable):
            await service.authenticate(pair.access_token)
        with pytest.raises(StoreUnavailable):
            await service.refresh(pair.refresh_token)
        with pytest.raises(StoreUnavailable):
            await service.login("alice", PASSWORD)
        with pytest.raises(StoreUnavailable):
            await service.logout_all(user.id)
        redis_server.start()  # data is gone after a restart (--save ""): the session no longer exists
        for _ in range(3):  # the first command may still meet a stale pooled connection
            try:
                await service.store.ping()
                break
            except StoreUnavailable:
                continue
        pair = await service.login("alice", PASSWORD)
        await service.authenticate(pair.access_token)
