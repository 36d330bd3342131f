"""The shared key ring's records (KeyRingRecords) on Redis and PostgreSQL: version, snapshot read,
compare-and-set."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis

from jwtkit.store import KeyRingRecords, StoreUnavailable, open_store

RedisServer = Any


@pytest.fixture(params=[pytest.param("redis", marks=pytest.mark.redis),
                        pytest.param("postgresql", marks=pytest.mark.postgresql)])
def shared_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue({"redis": "redis_url", "postgresql": "postgres_url"}[request.param]))


async def test_version_read_and_compare_and_set(shared_url: str) -> None:
    async with open_store(shared_url) as store:
        assert isinstance(store, KeyRingRecords)
        assert await store.ring_version() == 0
        assert await store.ring_read() is None
        assert await store.ring_swap(1, "x") is False  # no ring: only expected=0 creates it
        assert await store.ring_swap(0, "first") is True
        assert await store.ring_swap(0, "again") is False  # create-if-absent happens once
        assert await store.ring_read() == (1, "first")
        assert await store.ring_swap(1, "second") is True
        assert await store.ring_version() == 2
        assert await store.ring_read() == (2, "second")


async def test_concurrent_swaps_from_one_version_let_exactly_one_win(shared_url: str) -> None:
    stores = [open_store(shared_url) for _ in range(8)]
    for store in stores:
        await store.open()
    try:
        won = await asyncio.gather(*(s.ring_swap(0, f"doc {i}") for i, s in enumerate(stores)))  # type: ignore[attr-defined]
        assert sum(won) == 1
        assert await stores[0].ring_version() == 1  # type: ignore[attr-defined]
        won = await asyncio.gather(*(s.ring_swap(1, f"next {i}") for i, s in enumerate(stores)))  # type: ignore[attr-defined]
        assert sum(won) == 1
        assert await stores[0].ring_version() == 2  # type: ignore[attr-defined]
    finally:
        for store in stores:
            await store.close()


@pytest.mark.redis
async def test_an_unreadable_version_is_unavailable_not_zero(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    await client.hset("jwtkit:keyring", mapping={"version": "garbage", "doc": "{}"})
    await client.aclose()
    async with open_store(redis_url) as store:
        with pytest.raises(StoreUnavailable, match="version is unreadable"):
            await store.ring_version()  # type: ignore[attr-defined]
        assert await store.ring_swap(0, "over it") is False  # type: ignore[attr-defined]


def test_the_local_stores_do_not_hold_a_shared_ring(tmp_path: Any) -> None:
    assert not isinstance(open_store("memory://"), KeyRingRecords)
    assert not isinstance(open_store(f"sqlite:///{tmp_path}/x.db"), KeyRingRecords)
    assert isinstance(open_store("postgresql://u@127.0.0.1:1/db"), KeyRingRecords)


@pytest.mark.postgresql
async def test_a_postgresql_database_from_before_the_ring_gains_its_table_on_open(postgres_url: str) -> None:
    import asyncpg

    async with open_store(postgres_url) as store:
        await store.ping()
    connection = await asyncpg.connect(postgres_url)
    try:
        await connection.execute("DROP TABLE jwtkit_keyring")  # as schema version 1 had it
    finally:
        await connection.close()
    async with open_store(postgres_url) as store:
        assert isinstance(store, KeyRingRecords)
        assert await store.ring_version() == 0
        assert await store.ring_swap(0, "first") is True
