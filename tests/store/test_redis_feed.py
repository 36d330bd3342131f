"""The Redis revocation feed (RevocationFeed on Redis Streams) against a real redis-server: one entry per
session that a revocation ends, written by the revoking script itself; a blocked read that returns when a
revocation lands; trimming past a reader; a server that restarted empty, was flushed, or went back behind a
reader; a paused server under a waiting reader; malformed entries; and the dedicated connection of the
blocking read."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from jwtkit.store import (
    DEFAULT_FEED_RETENTION,
    FeedCursor,
    FeedLost,
    Revocation,
    RevocationFeed,
    RevocationKind,
    RevocationMirror,
    Rotation,
    StoreUnavailable,
    _redis,
    open_store,
)
from jwtkit.store._redis import RedisStore, shard_of

from .support import FakeClock, assert_feed_wakes_promptly, new_session

pytestmark = pytest.mark.redis

SESSION, USER = RevocationKind.SESSION.value, RevocationKind.USER.value
RedisServer = Any  # the shared `redis_server` fixture's object (tests/conftest.py)
FAST = {"command_timeout": 0.3, "connect_timeout": 0.3}


def open_feed(url: str, clock: FakeClock, **options: Any) -> RedisStore:
    store = open_store(url, clock=clock, **options)
    assert isinstance(store, RedisStore)
    return store


@pytest.fixture
async def nodes(redis_url: str, clock: FakeClock) -> AsyncIterator[tuple[RedisStore, RedisStore]]:
    """Two stores on one server, as two server nodes: the tests revoke on the first and read on the
    second."""
    first, second = open_feed(redis_url, clock), open_feed(redis_url, clock)
    async with first, second:
        yield first, second


@pytest.fixture
async def raw_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


async def eventually(condition: Callable[[], Awaitable[bool]], *, timeout: float = 5.0) -> None:
    """Poll ``condition`` until it holds, failing after ``timeout`` seconds (for what a real server must
    do)."""
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        await asyncio.sleep(0.005)


async def blocked_clients(client: aioredis.Redis) -> int:
    return int((await client.info("clients"))["blocked_clients"])


async def read_until(store: RedisStore, cursor: FeedCursor, count: int, *,
                     timeout: float = 5.0) -> tuple[list[Revocation], FeedCursor]:
    """Read until ``count`` entries arrived (then once more, which must bring nothing)."""
    deadline = time.monotonic() + timeout
    got: list[Revocation] = []
    while len(got) < count:
        assert time.monotonic() < deadline, f"{len(got)} of {count} entries after {timeout}s: {got}"
        entries, cursor = await store.feed_read(cursor, wait=0.2)
        got += entries
    entries, cursor = await store.feed_read(cursor, wait=0)
    assert entries == []
    return got, cursor


def kinds(entries: list[Revocation]) -> list[tuple[str, str]]:
    return [(entry.kind.value, entry.subject) for entry in entries]


async def test_the_store_is_a_revocation_feed(nodes: tuple[RedisStore, RedisStore]) -> None:
    writer, _ = nodes
    assert isinstance(writer, RevocationFeed)
    assert writer.feed_retention == DEFAULT_FEED_RETENTION
    assert open_feed("redis://127.0.0.1:1/0?feed_retention=7200", FakeClock()).feed_retention == 7200


async def test_every_kind_of_revocation_appears_once_in_order(nodes: tuple[RedisStore, RedisStore],
                                                              clock: FakeClock) -> None:
    writer, reader = nodes
    entries, cursor = await reader.feed_load()
    assert entries == []
    one, two, three = (new_session(clock, family="fam") for _ in range(3))
    lone = new_session(clock)
    reused, sibling = new_session(clock, family="f2"), new_session(clock, family="f2")
    for session in (one, two, three, lone, reused, sibling):
        await writer.create_session(session)
    await writer.revoke(three.sid)
    clock.advance(1)
    assert await writer.revoke(lone.sid) is True
    assert await writer.revoke(lone.sid) is False  # already revoked: nothing published
    assert await writer.revoke(three.sid) is False
    assert await writer.revoke("no-such-sid") is False
    assert await writer.revoke_family("fam") == 2  # three was revoked already: one entry each for one, two
    assert await writer.revoke_family("fam") == 0
    assert await writer.rotate_refresh(reused.sid, "an-older-jti", "x") is Rotation.REUSED
    assert await writer.rotate_refresh(reused.sid, "an-older-jti", "x") is Rotation.INACTIVE
    assert await writer.revoke_all("alice") == 1
    got, _ = await read_until(reader, cursor, 7)
    seen = kinds(got)
    assert seen[:2] == [(SESSION, three.sid), (SESSION, lone.sid)]
    assert sorted(seen[2:4]) == sorted([(SESSION, one.sid), (SESSION, two.sid)])  # in the family set's order
    assert seen[4:] == [(SESSION, reused.sid), (SESSION, sibling.sid), (USER, "alice")]
    assert [entry.at for entry in got] == [clock() - 1] + [clock()] * 6  # the store's (injected) clock


async def test_users_in_other_shards_are_in_the_feed_too(nodes: tuple[RedisStore, RedisStore],
                                                         clock: FakeClock) -> None:
    writer, reader = nodes
    _, cursor = await reader.feed_load()
    users = [f"user-{i}" for i in range(40)]
    assert len({shard_of(user, 16) for user in users}) == 16
    sessions = [new_session(clock, user) for user in users]
    for session in sessions:
        await writer.create_session(session)
        await writer.revoke(session.sid)
    for user in users:
        await writer.revoke_all(user)
    got, _ = await read_until(reader, cursor, 80)
    assert sorted(kinds(got)) == sorted([(SESSION, s.sid) for s in sessions] + [(USER, u) for u in users])
    for user, session in zip(users, sessions, strict=True):  # in order for each user (one shard)
        mine = [entry.subject for entry in got if entry.subject in (user, session.sid)]
        assert mine == [session.sid, user]
    entries, cursor = await reader.feed_load()  # the whole feed again, oldest first in each shard
    assert sorted(kinds(entries)) == sorted(kinds(got))


async def test_a_session_dead_at_birth_is_published(nodes: tuple[RedisStore, RedisStore],
                                                    clock: FakeClock) -> None:
    """A login that read the epoch before a concurrent revoke_all stores a session that is dead at once: its
    token must not pass a mirror that has already forgotten the revoke_all's entry."""
    writer, reader = nodes
    _, cursor = await reader.feed_load()
    await writer.revoke_all("alice")
    late = new_session(clock, epoch=0)
    revoked = new_session(clock, epoch=1, revoked=True)
    live = new_session(clock, epoch=1)
    for session in (late, revoked, live):
        await writer.create_session(session)
    got, _ = await read_until(reader, cursor, 3)
    assert kinds(got) == [(USER, "alice"), (SESSION, late.sid), (SESSION, revoked.sid)]


async def test_a_waiting_read_returns_as_soon_as_a_revocation_lands(nodes: tuple[RedisStore, RedisStore],
                                                                    raw_client: aioredis.Redis,
                                                                    clock: FakeClock) -> None:
    writer, reader = nodes
    session = new_session(clock)
    await writer.create_session(session)
    _, cursor = await reader.feed_load()
    started = time.monotonic()
    entries, same = await reader.feed_read(cursor, wait=0.2)  # nothing: returns after the wait
    assert entries == []
    assert same == cursor
    assert 0.15 < time.monotonic() - started < 1
    read = asyncio.create_task(reader.feed_read(cursor, wait=10))
    await eventually(lambda: _blocked(raw_client, 1))  # the reader waits on the server now
    started = time.monotonic()
    assert await writer.revoke(session.sid) is True
    entries, cursor = await read
    assert time.monotonic() - started < 1
    assert kinds(entries) == [(SESSION, session.sid)]
    assert (await reader.feed_read(cursor, wait=0))[0] == []


async def _blocked(client: aioredis.Redis, count: int) -> bool:
    return await blocked_clients(client) == count


async def test_the_blocking_read_has_connections_of_its_own(redis_url: str, raw_client: aioredis.Redis,
                                                            clock: FakeClock) -> None:
    """A read waiting on the server never holds a connection the request path needs: with a pool of one, the
    session check still answers at once."""
    async with open_feed(redis_url, clock, max_connections=1) as store:
        session = new_session(clock)
        await store.create_session(session)
        _, cursor = await store.feed_load()
        read = asyncio.create_task(store.feed_read(cursor, wait=10))
        await eventually(lambda: _blocked(raw_client, 1))
        started = time.monotonic()
        assert await store.check(session.sid, "alice") is True
        assert time.monotonic() - started < 0.5
        read.cancel()  # the mirror's stop(): the waiting read ends at once, and the next one works
        with pytest.raises(asyncio.CancelledError):
            await read
        await store.revoke(session.sid)
        entries, _ = await store.feed_read(cursor, wait=1)
        assert kinds(entries) == [(SESSION, session.sid)]


async def test_a_feed_trimmed_past_the_cursor_is_lost_without_reset(redis_url: str,
                                                                    raw_client: aioredis.Redis,
                                                                    clock: FakeClock) -> None:
    """Entries are trimmed by age on the server's clock as new ones are added (``MINID ~``): a reader that
    has not read an entry before it went is told to load again."""
    await raw_client.config_set("stream-node-max-entries", "1")  # so that ~ trims entry by entry
    try:
        async with open_feed(redis_url, clock, feed_retention=0.02) as writer, \
                open_feed(redis_url, clock, feed_retention=0.02) as reader:
            first, second = new_session(clock), new_session(clock)
            await writer.create_session(first)
            await writer.create_session(second)
            _, cursor = await reader.feed_load()
            await writer.revoke(first.sid)
            stream = writer._stream(shard_of("alice", 16))
            [(first_id, _)] = await raw_client.xrange(stream)
            added = int(first_id.split("-")[0])
            await eventually(lambda: _server_ms_past(raw_client, added + 20))  # the entry is older now
            await writer.revoke(second.sid)  # the append trims the first entry
            assert [entry_id for entry_id, _ in await raw_client.xrange(stream)] != [first_id]
            with pytest.raises(FeedLost) as caught:
                await reader.feed_read(cursor, wait=0)
            assert caught.value.reset is False
            assert caught.value.code == "feed_lost"
            entries, cursor = await reader.feed_load()  # the reader loads what is left and goes on
            assert kinds(entries) == [(SESSION, second.sid)]
            assert (await reader.feed_read(cursor, wait=0))[0] == []
    finally:
        await raw_client.config_set("stream-node-max-entries", "100")


async def _server_ms_past(client: aioredis.Redis, ms: int) -> bool:
    seconds, micros = await client.time()
    return seconds * 1000 + micros // 1000 > ms


async def test_an_entry_deleted_past_the_cursor_is_lost_without_reset(nodes: tuple[RedisStore, RedisStore],
                                                                      raw_client: aioredis.Redis,
                                                                      clock: FakeClock) -> None:
    writer, reader = nodes
    sessions = [new_session(clock) for _ in range(3)]
    for session in sessions:
        await writer.create_session(session)
    await writer.revoke(sessions[0].sid)
    entries, cursor = await reader.feed_load()
    assert len(entries) == 1
    await writer.revoke(sessions[1].sid)
    await writer.revoke(sessions[2].sid)
    stream = writer._stream(shard_of("alice", 16))
    await raw_client.xtrim(stream, maxlen=1, approximate=False)  # the reader never saw the second
    with pytest.raises(FeedLost) as caught:
        await reader.feed_read(cursor, wait=1)
    assert caught.value.reset is False
    # trimming only what the reader has seen is no loss
    entries, cursor = await reader.feed_load()
    await writer.revoke_all("alice")
    await raw_client.xtrim(stream, maxlen=1, approximate=False)
    assert kinds((await reader.feed_read(cursor, wait=1))[0]) == [(USER, "alice")]


async def test_a_server_restarted_empty_is_lost_with_reset(redis_server: RedisServer,
                                                            clock: FakeClock) -> None:
    async with open_feed(redis_server.url, clock, **FAST) as store:
        session = new_session(clock)
        await store.create_session(session)
        await store.revoke(session.sid)
        entries, cursor = await store.feed_load()
        assert len(entries) == 1
        redis_server.restart()  # same port, no data (--save "")
        caught = await _feed_lost(store, cursor)
        assert caught.reset is True
        entries, fresh = await store.feed_load()  # a new generation
        assert entries == []
        assert fresh.generation != cursor.generation
        await store.revoke_all("alice")
        assert kinds((await store.feed_read(fresh, wait=1))[0]) == [(USER, "alice")]


async def _feed_lost(store: RedisStore, cursor: FeedCursor) -> FeedLost:
    """The FeedLost a read raises, past the StoreUnavailable of connections that died with the server."""
    deadline = time.monotonic() + 5
    while True:
        try:
            await store.feed_read(cursor, wait=0.1)
        except FeedLost as exc:
            return exc
        except StoreUnavailable:
            assert time.monotonic() < deadline
            continue
        raise AssertionError("the read did not notice the lost data")


async def test_flushall_is_lost_with_reset(nodes: tuple[RedisStore, RedisStore], raw_client: aioredis.Redis,
                                           clock: FakeClock) -> None:
    writer, reader = nodes
    session = new_session(clock)
    await writer.create_session(session)
    await writer.revoke(session.sid)
    _, cursor = await reader.feed_load()
    await raw_client.flushall()
    with pytest.raises(FeedLost) as caught:
        await reader.feed_read(cursor, wait=0.1)
    assert caught.value.reset is True
    _, fresh = await reader.feed_load()
    assert fresh.generation != cursor.generation
    with pytest.raises(FeedLost) as caught:  # a cursor of the old generation stays lost
        await writer.feed_read(cursor, wait=0)
    assert caught.value.reset is True


@pytest.mark.parametrize("damage", ["new generation", "no generation", "stream gone", "stream behind"])
async def test_a_store_that_lost_data_is_lost_with_reset(nodes: tuple[RedisStore, RedisStore],
                                                         raw_client: aioredis.Redis, clock: FakeClock,
                                                         damage: str) -> None:
    """What a server restored from an older snapshot, or emptied in part, looks like to a reader."""
    writer, reader = nodes
    session = new_session(clock)
    await writer.create_session(session)
    await writer.revoke(session.sid)
    _, cursor = await reader.feed_load()
    stream = writer._stream(shard_of("alice", 16))
    if damage == "new generation":
        await raw_client.set("jwtkit:generation", "another")
    elif damage == "no generation":
        await raw_client.delete("jwtkit:generation")
    elif damage == "stream gone":
        await raw_client.delete(stream)
    else:  # the stream as it was before the reader's last entry
        await raw_client.delete(stream)
        await raw_client.xadd(stream, {"kind": "session", "subject": "older", "at": "1"}, id="1-1")
    with pytest.raises(FeedLost) as caught:
        await reader.feed_read(cursor, wait=0.1)
    assert caught.value.reset is True


async def test_cursors_of_other_stores_are_lost_with_reset(nodes: tuple[RedisStore, RedisStore]) -> None:
    _, reader = nodes
    _, cursor = await reader.feed_load()
    for position in ("7", ",".join(["0-1"] * 15), ",".join(["x"] * 16), ",".join(["1-2-3"] * 16)):
        with pytest.raises(FeedLost) as caught:
            await reader.feed_read(FeedCursor(cursor.generation, position), wait=0)
        assert caught.value.reset is True


async def test_a_paused_server_is_unavailable_then_the_feed_resumes(redis_server: RedisServer,
                                                                     clock: FakeClock) -> None:
    async with open_feed(redis_server.url, clock, **FAST) as writer, \
            open_feed(redis_server.url, clock, **FAST) as reader:
        sessions = [new_session(clock) for _ in range(3)]
        for session in sessions:
            await writer.create_session(session)
        _, cursor = await reader.feed_load()
        await writer.revoke(sessions[0].sid)
        got, cursor = await read_until(reader, cursor, 1)
        await writer.revoke(sessions[1].sid)  # recorded, not read yet
        pid = redis_server.proc.pid
        os.kill(pid, signal.SIGSTOP)
        try:
            for wait in (0.25, 0):
                started = time.monotonic()
                with pytest.raises(StoreUnavailable):
                    await reader.feed_read(cursor, wait=wait)
                assert time.monotonic() - started < wait + 0.3 + 0.3  # the wait plus the command timeout
            with pytest.raises(StoreUnavailable):
                await reader.feed_load()
        finally:
            os.kill(pid, signal.SIGCONT)
        await writer.revoke(sessions[2].sid)
        later, _ = await read_until(reader, cursor, 2)  # from its cursor: nothing lost, nothing twice
        assert kinds(got + later) == [(SESSION, s.sid) for s in sessions]


async def test_malformed_entries_are_skipped_and_logged(nodes: tuple[RedisStore, RedisStore],
                                                        raw_client: aioredis.Redis, clock: FakeClock,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    writer, reader = nodes
    _, cursor = await reader.feed_load()
    stream = writer._stream(shard_of("alice", 16))
    for fields in ({"kind": "sessions", "subject": "x", "at": "1"}, {"kind": "session", "at": "1"},
                   {"kind": "session", "subject": "x", "at": "nan"}, {"kind": "user", "subject": "x"},
                   {"kind": "session", "subject": "", "at": "1"}, {"odd": "field"}):
        await raw_client.xadd(stream, fields)  # type: ignore[arg-type]
    await writer.revoke_all("alice")
    with caplog.at_level(logging.WARNING, logger="jwtkit.store"):
        entries, cursor = await reader.feed_read(cursor, wait=0)
        assert kinds(entries) == [(USER, "alice")]
        assert (await reader.feed_read(cursor, wait=0))[0] == []  # past them for good
        loaded, _ = await reader.feed_load()
        assert kinds(loaded) == [(USER, "alice")]
    assert sum("malformed revocation" in record.getMessage() for record in caplog.records) == 12


async def test_the_feed_is_loaded_and_read_in_batches(nodes: tuple[RedisStore, RedisStore], clock: FakeClock,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_redis, "_FEED_BATCH", 3)
    writer, reader = nodes
    _, cursor = await reader.feed_load()
    for _ in range(8):
        await writer.revoke_all("alice")
    entries, loaded_cursor = await reader.feed_load()
    assert kinds(entries) == [(USER, "alice")] * 8
    got: list[Revocation] = []
    reads = 0
    while len(got) < 8:
        batch, cursor = await reader.feed_read(cursor, wait=0)
        assert len(batch) == 3 or len(got) + len(batch) == 8
        got += batch
        reads += 1
    assert reads == 3
    assert cursor == loaded_cursor


async def test_a_mirror_follows_a_redis_store(nodes: tuple[RedisStore, RedisStore], clock: FakeClock) -> None:
    writer, reader = nodes
    session, other = new_session(clock), new_session(clock, "bob")
    await writer.create_session(session)
    await writer.create_session(other)
    mirror = RevocationMirror(reader, window=900, clock=clock)
    await mirror.step()  # load
    assert mirror.lookup(session.sid, "alice") is True
    await writer.revoke(session.sid)
    await writer.revoke_all("bob")
    await mirror.step()
    assert mirror.lookup(session.sid, "alice") is False
    assert mirror.lookup(other.sid, "bob") is None  # the user's epoch moved: ask the store


async def test_feed_latency(nodes: tuple[RedisStore, RedisStore], raw_client: aioredis.Redis,
                            clock: FakeClock) -> None:
    """How long a waiting reader takes to return after a revocation is acknowledged (p50, p99 over 200), on
    this machine's loopback: printed for docs/stores.md, bounded loosely so that a slow machine passes."""
    writer, reader = nodes

    async def start_read(cursor: Any) -> Awaitable[Any]:
        read = asyncio.create_task(reader.feed_read(cursor, wait=5))
        await eventually(lambda: _blocked(raw_client, 1))
        return read

    await assert_feed_wakes_promptly("redis feed", writer, reader, start_read)
