"""The shared key ring's records (KeyRingRecords) on Redis: version, snapshot read, compare-and-set."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis

from jwtkit.store import KeyRingRecords, StoreUnavailable, open_store

RedisServer = Any


async def test_version_read_and_compare_and_set(redis_url: str) -> None:
    async with open_store(redis_url) as store:
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


async def test_concurrent_swaps_from_one_version_let_exactly_one_win(redis_url: str) -> None:
    stores = [open_store(redis_url) for _ in range(8)]
    for store in stores:
        await store.open()
    try:
        won = await asyncio.gather(*(s.ring_swap(0, f"doc {i}") for i, s in enumerate(stores)))  # type: ignore[attr-defined]
        assert sum(won) == 1
        assert await stores[0].ring_version() == 1  # type: ignore[attr-defined]
    finally:
        for store in stores:
            await store.close()


async def test_an_unreadable_version_is_unavailable_not_zero(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    await client.hset("jwtkit:keyring", mapping={"version": "garbage", "doc": "{}"})
    await client.aclose()
    async with open_store(redis_url) as store:
        with pytest.raises(StoreUnavailable, match="version is unreadable"):
            await store.ring_version()  # type: ignore[attr-defined]
        assert await store.ring_swap(0, "over it") is False  # type: ignore[attr-defined]


def test_the_local_stores_do_not_hold_a_shared_ring() -> None:
    assert not isinstance(open_store("memory://"), KeyRingRecords)
