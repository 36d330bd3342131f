"""Redis Cluster (``redis+cluster://``): the store contract, the policy differential test and the revocation
feed on a real three-primary cluster, every script within one slot; and a cluster with one primary killed
(``kill -9``): the calls on its slots raise StoreUnavailable and nothing else, the other slots go on working,
and nothing revoked reads as active."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster

from jwtkit.store import (
    FeedLost,
    Revocation,
    RevocationKind,
    Rotation,
    Session,
    StoreUnavailable,
    open_store,
)
from jwtkit.store._redis import RedisStore, shard_of
from processes import LocalRedisCluster

from . import test_contract, test_policy
from .support import FakeClock, assert_feed_wakes_promptly, new_session

pytestmark = pytest.mark.redis

SESSION, USER = RevocationKind.SESSION.value, RevocationKind.USER.value
FAST = {"command_timeout": 0.5, "connect_timeout": 0.5}
_prefixes = itertools.count()


# the store contract and the policy's differential test, on the cluster ------------------------------------

# Each of these tests runs here once more, with ``store`` opened on the session's cluster under a prefix of
# its own (tests/store/conftest.py builds it from `backend` and `redis_url`, overridden below).
for _module in (test_contract, test_policy):
    for _name in dir(_module):
        if _name.startswith("test_") and "parsed_alike" not in _name:  # those are single-node (leveldb)
            globals()[_name] = getattr(_module, _name)
del _module, _name


@pytest.fixture
def backend() -> str:
    return "redis"


@pytest.fixture
def redis_url(redis_cluster: LocalRedisCluster) -> str:
    """The cluster, under a key prefix of this test's own."""
    return f"{redis_cluster.url}?prefix=t{os.getpid()}-{next(_prefixes)}:"


# the cluster itself ------------------------------------------------------------------------------------


def cluster_client(cluster: LocalRedisCluster) -> RedisCluster:
    return RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", port) for port in cluster.ports],
                        decode_responses=True)


@pytest.fixture
async def raw_cluster(redis_cluster: LocalRedisCluster) -> AsyncIterator[RedisCluster]:
    client = cluster_client(redis_cluster)
    yield client
    await client.aclose()


def open_cluster_store(url: str, clock: FakeClock, **options: Any) -> RedisStore:
    store = open_store(url, clock=clock, **options)
    assert isinstance(store, RedisStore)
    return store


def test_cluster_urls_are_checked_where_the_store_is_built() -> None:
    url = "rediss+cluster://:pw@10.0.0.1:7000,10.0.0.2:7001/0?ssl_cert_reqs=none"
    store = open_cluster_store(url, FakeClock())
    assert store.url == url.replace(":pw@", ":***@")
    nodes = [(node.host, node.port) for node in store._startup_nodes()]
    assert nodes == [("10.0.0.1", 7000), ("10.0.0.2", 7001)]
    options = store._cluster_options()
    assert (options["ssl"], options["password"], options["ssl_cert_reqs"]) == (True, "pw", "none")


async def test_every_key_of_a_user_is_in_one_slot(redis_url: str, raw_cluster: RedisCluster,
                                                  clock: FakeClock) -> None:
    async with open_cluster_store(redis_url, clock) as store:
        session = new_session(clock, family="fam")
        await store.create_session(session)
        await store.revoke_all("alice")
        await store.revoke(session.sid)
        base = store._base(shard_of("alice", 16))
        keys = [f"{base}s:{session.sid}", f"{base}u:alice", f"{base}f:fam", f"{base}e:alice",
                f"{base}revocations"]
        assert all([await raw_cluster.exists(key) for key in keys])
        assert len({raw_cluster.keyslot(key) for key in keys}) == 1
        slots = {raw_cluster.keyslot(store._stream(n)) for n in range(16)}
        assert len(slots) == 16  # the shards spread over the cluster
        nodes = {raw_cluster.get_node_from_key(store._stream(n)).port for n in range(16)}
        assert len(nodes) == 3


async def kinds_until(store: RedisStore, cursor: Any, count: int, *,
                      timeout: float = 5.0) -> tuple[list[tuple[str, str]], Any]:
    deadline = time.monotonic() + timeout
    got: list[Revocation] = []
    while len(got) < count:
        assert time.monotonic() < deadline, f"{len(got)} of {count} entries after {timeout}s"
        entries, cursor = await store.feed_read(cursor, wait=0.2)
        got += entries
    entries, cursor = await store.feed_read(cursor, wait=0)
    assert entries == []
    return [(entry.kind.value, entry.subject) for entry in got], cursor


async def test_the_feed_on_a_cluster(redis_url: str, clock: FakeClock) -> None:
    async with open_cluster_store(redis_url, clock) as writer, open_cluster_store(redis_url, clock) as reader:
        _, cursor = await reader.feed_load()
        users = [f"user-{i}" for i in range(40)]
        sessions = [new_session(clock, user) for user in users]
        for session in sessions:
            await writer.create_session(session)
            assert await writer.revoke(session.sid) is True
            assert await writer.revoke(session.sid) is False  # nothing published twice
        for user in users:
            await writer.revoke_all(user)
        family = [new_session(clock, "zed", family="zf") for _ in range(3)]
        for session in family:
            await writer.create_session(session)
        assert await writer.rotate_refresh(family[0].sid, "an-older-jti", "x") is Rotation.REUSED
        got, cursor = await kinds_until(reader, cursor, 83)
        expected = [(SESSION, s.sid) for s in sessions + family] + [(USER, u) for u in users]
        assert sorted(got) == sorted(expected)
        for user, session in zip(users, sessions, strict=True):  # in order for each user
            assert [subject for _, subject in got if subject in (user, session.sid)] == [session.sid, user]
        loaded, _ = await reader.feed_load()
        assert sorted((entry.kind.value, entry.subject) for entry in loaded) == sorted(got)


async def blocked_clients(cluster: LocalRedisCluster) -> int:
    total = 0
    for port in cluster.ports:
        client = aioredis.Redis(host="127.0.0.1", port=port, decode_responses=True)
        try:
            total += int((await client.info("clients"))["blocked_clients"])
        finally:
            await client.aclose()
    return total


async def eventually(condition: Callable[[], Awaitable[bool]], *, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        await asyncio.sleep(0.005)


async def test_a_waiting_read_returns_as_soon_as_a_revocation_lands(redis_url: str,
                                                                    redis_cluster: LocalRedisCluster,
                                                                    clock: FakeClock) -> None:
    """One XREAD BLOCK per shard's stream, on connections of the feed's own, all at once; the reads still
    blocked when one returns serve the next wait."""
    async with open_cluster_store(redis_url, clock) as writer:
        reader = open_cluster_store(redis_url, clock)
        async with reader:
            session, other = new_session(clock), new_session(clock, "bob")
            await writer.create_session(session)
            await writer.create_session(other)
            _, cursor = await reader.feed_load()
            started = time.monotonic()
            entries, same = await reader.feed_read(cursor, wait=0.2)
            assert entries == []
            assert same == cursor
            assert 0.15 < time.monotonic() - started < 1.5
            assert await blocked_clients(redis_cluster) == 16  # still waiting, for the next read
            read = asyncio.create_task(reader.feed_read(cursor, wait=10))
            await asyncio.sleep(0.05)
            started = time.monotonic()
            assert await writer.revoke(session.sid) is True
            entries, cursor = await read
            assert time.monotonic() - started < 1
            assert [(e.kind.value, e.subject) for e in entries] == [(SESSION, session.sid)]
            assert await blocked_clients(redis_cluster) == 15  # the others wait on
            read = asyncio.create_task(reader.feed_read(cursor, wait=10))
            await eventually(lambda: _count_is(redis_cluster, 16))  # one new read, for the shard just read
            assert await writer.revoke(other.sid) is True
            entries, cursor = await read
            assert [(e.kind.value, e.subject) for e in entries] == [(SESSION, other.sid)]
            read = asyncio.create_task(reader.feed_read(cursor, wait=10))
            await eventually(lambda: _count_is(redis_cluster, 16))
            read.cancel()  # the mirror's stop(): the caller returns at once
            with pytest.raises(asyncio.CancelledError):
                await read
        await eventually(lambda: _count_is(redis_cluster, 0))  # closing the store ends the reads


async def _count_is(cluster: LocalRedisCluster, count: int) -> bool:
    return await blocked_clients(cluster) == count


async def test_a_feed_trimmed_past_the_cursor_on_a_cluster(redis_url: str, raw_cluster: RedisCluster,
                                                           clock: FakeClock) -> None:
    async with open_cluster_store(redis_url, clock) as writer, open_cluster_store(redis_url, clock) as reader:
        sessions = [new_session(clock) for _ in range(2)]
        for session in sessions:
            await writer.create_session(session)
        _, cursor = await reader.feed_load()
        for session in sessions:
            await writer.revoke(session.sid)
        await raw_cluster.xtrim(writer._stream(shard_of("alice", 16)), maxlen=1, approximate=False)
        with pytest.raises(FeedLost) as caught:
            await reader.feed_read(cursor, wait=0)
        assert caught.value.reset is False


async def test_feed_latency_on_a_cluster(redis_url: str, redis_cluster: LocalRedisCluster,
                                         clock: FakeClock) -> None:
    """How long a waiting reader takes to return after a revocation is acknowledged (p50, p99 over 200), on
    this machine's loopback: printed for docs/stores.md, bounded loosely."""
    async with open_cluster_store(redis_url, clock) as writer, open_cluster_store(redis_url, clock) as reader:
        async def start_read(cursor: Any) -> Awaitable[Any]:
            read = asyncio.create_task(reader.feed_read(cursor, wait=5))
            await eventually(lambda: _count_is(redis_cluster, 16))
            return read

        await assert_feed_wakes_promptly("redis cluster feed", writer, reader, start_read)


# one primary killed ------------------------------------------------------------------------------------


def users_by_node(store: RedisStore, dead_port: int) -> tuple[str, str]:
    """A user whose shard is on the primary at ``dead_port``, and one whose shard is elsewhere."""
    def port(user: str) -> int:
        node = store._client.get_node_from_key(store._stream(shard_of(user, 16)))
        return int(node.port)

    users = [f"user-{i}" for i in range(200)]
    return (next(u for u in users if port(u) == dead_port), next(u for u in users if port(u) != dead_port))


def session_with_pointers(store: RedisStore, clock: FakeClock, user: str, dead_port: int, *,
                          on_dead: bool) -> Session:
    """A new session of ``user`` whose pointer keys are both elsewhere than on ``dead_port`` (or, with
    ``on_dead``, whose sid pointer is there)."""
    def port(key: str) -> int:
        return int(store._client.get_node_from_key(key).port)

    while True:
        session = new_session(clock, user, epoch=1)
        ports = {port(store._pointer(session.sid)), port(store._family_pointer(session.family))}
        if (dead_port == port(store._pointer(session.sid))) if on_dead else dead_port not in ports:
            return session


async def test_a_killed_primary_fails_its_slots_closed_and_spares_the_others(
        own_redis_cluster: LocalRedisCluster, clock: FakeClock) -> None:
    cluster = own_redis_cluster
    dead_port = cluster.ports[0]
    async with open_cluster_store(cluster.url, clock, **FAST) as store:
        doomed_user, live_user = users_by_node(store, dead_port)
        doomed, doomed_revoked = new_session(clock, doomed_user), new_session(clock, doomed_user)
        live, live_revoked = new_session(clock, live_user), new_session(clock, live_user)
        for session in (doomed, doomed_revoked, live, live_revoked):
            await store.create_session(session)
        await store.revoke(doomed_revoked.sid)
        await store.revoke(live_revoked.sid)
        await store.revoke_all(live_user)  # epoch 1 on a live node: a fresh session there
        live_fresh = new_session(clock, live_user, epoch=1)
        await store.create_session(live_fresh)
        _, cursor = await store.feed_load()

        cluster.kill(dead_port)  # kill -9 by pid

        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: store.check(doomed.sid, doomed_user),
            lambda: store.check(doomed_revoked.sid, doomed_user),
            lambda: store.get_session(doomed.sid), lambda: store.revoke(doomed.sid),
            lambda: store.touch(doomed.sid, clock()), lambda: store.revoke_all(doomed_user),
            lambda: store.get_epoch(doomed_user), lambda: store.list_sessions(doomed_user),
            lambda: store.rotate_refresh(doomed.sid, doomed.refresh_jti, "next"),
            lambda: store.create_session(new_session(clock, doomed_user)),
            lambda: store.revoke_family(doomed.family),
            lambda: store.feed_read(cursor, wait=0.2),  # the feed spans every shard: all or nothing
        ]
        for call in calls:
            started = time.monotonic()
            with pytest.raises(StoreUnavailable) as caught:
                await call()
            assert caught.value.code == "store_unavailable"
            assert time.monotonic() - started < 3
        # the other slots go on working, and nothing revoked reads as active
        assert await store.check(live.sid, live_user) is False  # epoch 1 ended it
        assert await store.check(live_fresh.sid, live_user) is True
        assert await store.check(live_revoked.sid, live_user) is False
        got = await store.get_session(live_revoked.sid)
        assert got is not None
        assert got.revoked is True
        assert [s.sid for s in await store.list_sessions(live_user)] == [live_fresh.sid]
        assert await store.get_epoch(live_user) == 1
        assert await store.revoke(live_fresh.sid) is True
        assert await store.check(live_fresh.sid, live_user) is False
        # a new session needs its pointers too (untagged keys, anywhere in the cluster): where those are on
        # the dead primary, its login fails closed; elsewhere it works
        on_dead = session_with_pointers(store, clock, live_user, dead_port, on_dead=True)
        with pytest.raises(StoreUnavailable):
            await store.create_session(on_dead)
        other = session_with_pointers(store, clock, live_user, dead_port, on_dead=False)
        await store.create_session(other)
        assert await store.check(other.sid, live_user) is True
        assert await store.rotate_refresh(other.sid, other.refresh_jti, "next") is Rotation.ROTATED
        # single-key calls: those whose key is on the dead primary fail, the others work
        answers: dict[str, list[str]] = {"ok": [], "unavailable": []}
        for index in range(30):
            try:
                await store.consume(f"jti-{index}", clock() + 60)
                await store.throttle_hit(f"ip-{index}", 60)
            except StoreUnavailable:
                answers["unavailable"].append(f"jti-{index}")
            else:
                answers["ok"].append(f"jti-{index}")
        assert answers["ok"]
        assert answers["unavailable"]

        cluster.start_node(dead_port)  # back, empty (no persistence): it keeps its slots
        cluster.wait_until_ok()
        deadline = time.monotonic() + 10
        while True:
            try:
                assert await store.check(doomed.sid, doomed_user) is False  # unknown now
                assert await store.check(doomed_revoked.sid, doomed_user) is False
                break
            except StoreUnavailable:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
        fresh = new_session(clock, doomed_user)
        await store.create_session(fresh)
        assert await store.check(fresh.sid, doomed_user) is True
        with pytest.raises(FeedLost) as lost:  # the dead primary's streams went with it
            await store.feed_read(cursor, wait=0)
        assert lost.value.reset is True


async def test_a_paused_primary_is_unavailable_then_the_feed_resumes(own_redis_cluster: LocalRedisCluster,
                                                                     clock: FakeClock) -> None:
    cluster = own_redis_cluster
    async with open_cluster_store(cluster.url, clock, **FAST) as writer, \
            open_cluster_store(cluster.url, clock, **FAST) as reader:
        paused_port = cluster.ports[1]
        user, _ = users_by_node(writer, paused_port)
        sessions = [new_session(clock, user) for _ in range(3)]
        for session in sessions:
            await writer.create_session(session)
        _, cursor = await reader.feed_load()
        await writer.revoke(sessions[0].sid)
        first, cursor = await kinds_until(reader, cursor, 1)
        await writer.revoke(sessions[1].sid)  # recorded, not read yet
        pid = cluster.pid(paused_port)
        os.kill(pid, signal.SIGSTOP)
        try:
            for wait in (0.25, 0):
                started = time.monotonic()
                with pytest.raises(StoreUnavailable):
                    await reader.feed_read(cursor, wait=wait)
                assert time.monotonic() - started < wait + 0.5 + 1.5  # the wait, the command timeout, retry
        finally:
            os.kill(pid, signal.SIGCONT)
        await writer.revoke(sessions[2].sid)
        deadline = time.monotonic() + 10
        later: list[tuple[str, str]] = []
        while len(later) < 2:
            assert time.monotonic() < deadline
            try:
                entries, cursor = await reader.feed_read(cursor, wait=0.2)
            except StoreUnavailable:
                await asyncio.sleep(0.05)
                continue
            later += [(e.kind.value, e.subject) for e in entries]
        assert first + later == [(SESSION, s.sid) for s in sessions]  # nothing lost, nothing twice
