"""The PostgreSQL revocation feed (RevocationFeed) against a real server: one entry per revocation, written in
the revocation's own transaction; a read that returns when a revocation commits (LISTEN/NOTIFY); ids that a
reader never skips when two revocations commit out of order (driven by a transaction the test holds open);
trimming, a replaced database, and a server killed or frozen under a waiting reader."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import asyncpg
import pytest

from jwtkit.store import (
    FeedCursor,
    FeedLost,
    ManagedStore,
    Revocation,
    RevocationFeed,
    RevocationKind,
    Rotation,
    StoreUnavailable,
    _postgres,
    open_store,
)
from processes import PostgresCluster

from .support import FakeClock, assert_feed_wakes_promptly, new_session

pytestmark = pytest.mark.postgresql

TIMEOUTS = {"command_timeout": 0.5, "connect_timeout": 0.5, "pool_timeout": 0.5, "purge_interval": 0}
SESSION, USER = RevocationKind.SESSION, RevocationKind.USER


@pytest.fixture
async def nodes(postgres_url: str, clock: FakeClock) -> AsyncIterator[tuple[Any, Any]]:
    """Two stores on one database, as two server nodes: the tests revoke on the first and read on the
    second (patient: some calls wait on locks the test holds)."""
    first, second = (open_feed(postgres_url, clock, command_timeout=10, pool_timeout=10,
                                purge_interval=0) for _ in range(2))
    await first.open()
    await second.open()
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()


def open_feed(url: str, clock: FakeClock, **options: Any) -> Any:
    """A PostgresStore, typed loosely: the tests reach its feed and a few private names."""
    return open_store(url, clock=clock, **options)


def pairs(entries: Iterable[Revocation]) -> list[tuple[RevocationKind, str]]:
    return [(entry.kind, entry.subject) for entry in entries]


async def until(condition: Callable[[], Awaitable[bool]], what: str, *, timeout: float = 10.0) -> None:
    """Poll ``condition`` until it holds (bounded: a failing test does not hang)."""
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, f"never: {what}"
        await asyncio.sleep(0.005)


def listening(store: Any) -> Callable[[], Awaitable[bool]]:
    async def has_listener() -> bool:
        return store._listener is not None

    return has_listener


async def waiting_read(raw: Any, feed: Any, cursor: FeedCursor, *, wait: float) -> asyncio.Future[Any]:
    """``feed.feed_read(cursor, wait=wait)``, started, once its catch-up query was answered: it then waits for
    a notification (told by the server: the feed's connection is idle after a query that started after this
    call)."""
    since = await raw.fetchval("SELECT clock_timestamp()")
    read = asyncio.ensure_future(feed.feed_read(cursor, wait=wait))

    async def answered() -> bool:
        assert not read.done(), read
        return bool(await raw.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'jwtkit feed' AND state = 'idle' "
            "AND query LIKE '%jwtkit_feed_marker%' AND query_start > $1 AND datname = current_database()",
            since))

    await until(answered, "the read waits")
    return read


async def read_all(feed: Any, cursor: FeedCursor) -> tuple[list[Revocation], FeedCursor]:
    """Everything after ``cursor`` now (reads without waiting until one comes back empty)."""
    found: list[Revocation] = []
    while True:
        entries, cursor = await feed.feed_read(cursor, wait=0)
        if not entries:
            return found, cursor
        found += entries


async def read_when_back(feed: Any, cursor: FeedCursor) -> tuple[list[Revocation], FeedCursor]:
    """The first answer of a server that is coming back (StoreUnavailable until then), then the rest."""
    deadline = time.monotonic() + 15
    while True:
        try:
            return await read_all(feed, cursor)
        except StoreUnavailable:
            assert time.monotonic() < deadline, "the feed never came back"
            await asyncio.sleep(0.05)


async def when_back(call: Callable[[], Awaitable[Any]]) -> Any:
    deadline = time.monotonic() + 15
    while True:
        try:
            return await call()
        except StoreUnavailable:
            assert time.monotonic() < deadline, "the store never came back"
            await asyncio.sleep(0.05)


# what the feed holds ------------------------------------------------------------------------------------


async def test_the_store_is_a_revocation_feed(nodes: tuple[Any, Any]) -> None:
    assert isinstance(nodes[0], RevocationFeed)
    assert nodes[0].feed_retention == 3600.0
    assert open_feed("postgresql://u@127.0.0.1:1/db?feed_retention=60", FakeClock()).feed_retention == 60.0


async def test_every_kind_of_revocation_appears_once_in_order(nodes: tuple[Any, Any], raw: Any,
                                                              clock: FakeClock) -> None:
    writer, reader = nodes
    single = new_session(clock)
    family = [new_session(clock, family="fam-1") for _ in range(3)]
    stolen, sibling = new_session(clock, family="fam-2"), new_session(clock, family="fam-2")
    done = new_session(clock, revoked=True)
    for session in (single, *family, stolen, sibling, done):
        await writer.create_session(session)
    entries, cursor = await reader.feed_load()
    assert entries == []
    assert cursor.position == "0"

    assert await writer.revoke(single.sid) is True
    t_single = clock()
    assert await writer.revoke(single.sid) is False  # already revoked: no second entry
    assert await writer.revoke(done.sid) is False  # stored revoked: none either
    clock.advance(1)
    await writer.revoke(family[1].sid)  # one of the family first: the family revocation skips it
    assert await writer.revoke_family("fam-1") == 2
    assert await writer.revoke_family("fam-1") == 0
    clock.advance(1)
    assert await writer.rotate_refresh(stolen.sid, "an-older-refresh-jti", "new") is Rotation.REUSED
    t_reuse = clock()
    clock.advance(1)
    assert await writer.revoke_all("bob") == 1
    await raw.execute("INSERT INTO jwtkit_epochs (user_id, epoch) VALUES ('carol', -3)")
    assert await writer.revoke_all("carol") == 1  # the repair branch of an unreadable epoch records too
    assert await writer.revoke_all("\x00:odd\ud800") == 1  # any user id: bytea, as every id of the store

    got, after = await read_all(reader, cursor)
    assert pairs(got[:2]) == [(SESSION, single.sid), (SESSION, family[1].sid)]
    assert sorted(pairs(got[2:4])) == sorted([(SESSION, family[0].sid), (SESSION, family[2].sid)])
    assert sorted(pairs(got[4:6])) == sorted([(SESSION, stolen.sid), (SESSION, sibling.sid)])
    assert pairs(got[6:]) == [(USER, "bob"), (USER, "carol"), (USER, "\x00:odd\ud800")]
    assert got[0].at == t_single and got[4].at == got[5].at == t_reuse
    assert await reader.feed_read(after, wait=0) == ([], after)  # exactly once
    # a new reader loads the same entries in the same order, and its cursor is where the first one is
    assert await reader.feed_load() == (got, after)
    ids = [row["id"] for row in await raw.fetch("SELECT id FROM jwtkit_revocations ORDER BY id")]
    assert after.position == str(ids[-1])


async def test_a_revocation_rolled_back_leaves_no_entry(nodes: tuple[Any, Any], clock: FakeClock) -> None:
    writer, reader = nodes
    session = new_session(clock)
    await writer.create_session(session)
    _, cursor = await reader.feed_load()
    async with writer._pool.acquire() as connection:
        transaction = connection.transaction()
        await transaction.start()
        await connection.fetch(_postgres._REVOKE["sid"], session.sid.encode(), writer._feed_key, clock(),
                               writer._channel)
        await transaction.rollback()
    assert await reader.feed_read(cursor, wait=0) == ([], cursor)
    assert await writer.revoke(session.sid) is True
    assert pairs((await reader.feed_read(cursor, wait=0))[0]) == [(SESSION, session.sid)]


async def test_a_read_returns_as_soon_as_a_revocation_commits(nodes: tuple[Any, Any], raw: Any,
                                                              clock: FakeClock) -> None:
    writer, reader = nodes
    sessions = [new_session(clock) for _ in range(3)]
    for session in sessions:
        await writer.create_session(session)
    _, cursor = await reader.feed_load()
    for session in sessions:
        read = await waiting_read(raw, reader, cursor, wait=30)
        assert not read.done()
        started = time.monotonic()
        assert await writer.revoke(session.sid) is True
        entries, cursor = await asyncio.wait_for(read, 5)
        assert time.monotonic() - started < 2  # the notification, not the 30 s wait
        assert pairs(entries) == [(SESSION, session.sid)]


async def test_feed_latency(nodes: tuple[Any, Any], raw: Any) -> None:
    """How long a waiting reader takes to return after a revocation is sent (p50, p99 over 200), on this
    machine's loopback, writer and reader in one process: printed for docs/stores.md, bounded loosely so that
    a slow machine passes."""
    writer, reader = nodes
    await assert_feed_wakes_promptly("postgresql feed", writer, reader,
                                     lambda cursor: waiting_read(raw, reader, cursor, wait=5))


async def test_an_uncommitted_lower_id_is_never_skipped(nodes: tuple[Any, Any], raw: Any, postgres_url: str,
                                                         clock: FakeClock) -> None:
    """Two revocations, the first one's transaction held open by the test right after its INSERT (it has the
    lower id): the reader must not pass it. Without the feed's order lock the second one would commit id
    n + 1 first, the reader would move its cursor past n, and lose the first for good."""
    writer, reader = nodes
    first, second = new_session(clock), new_session(clock)
    await writer.create_session(first)
    await writer.create_session(second)
    _, cursor = await reader.feed_load()
    observer = await asyncpg.connect(postgres_url)  # pg_stat_activity from outside the held transaction
    held = raw.transaction()
    await held.start()
    try:
        # the store's own revoke statement, stopped between its INSERT and its commit
        await raw.fetch(_postgres._REVOKE["sid"], first.sid.encode(), writer._feed_key, clock(),
                        writer._channel)
        first_id = await raw.fetchval("SELECT max(id) FROM jwtkit_revocations")
        racing = asyncio.ensure_future(writer.revoke(second.sid))

        async def stopped() -> bool:  # it queues on the feed's lock (or, without one, has committed)
            return racing.done() or bool(await observer.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND wait_event = 'advisory'"))

        await until(stopped, "the second revocation reached the feed")
        queued = not racing.done()
        seen, cursor = await reader.feed_read(cursor, wait=0)  # while the first is still uncommitted
    finally:
        await held.commit()
        await observer.close()
    assert await asyncio.wait_for(racing, 10) is True
    rest, cursor = await read_all(reader, cursor)
    seen += rest
    assert pairs(seen) == [(SESSION, first.sid), (SESSION, second.sid)]  # none skipped, in id order
    assert queued  # how: the second queued on the feed's lock until the first committed
    ids = [row["id"] for row in await raw.fetch("SELECT id FROM jwtkit_revocations ORDER BY id")]
    assert ids[0] == first_id and ids[1] > first_id


async def test_many_revocations_from_two_nodes_reach_a_reader_once_each(nodes: tuple[Any, Any],
                                                                        clock: FakeClock) -> None:
    first, second = nodes
    sessions = [new_session(clock) for _ in range(60)]
    for session in sessions:
        await first.create_session(session)
    _, cursor = await second.feed_load()
    seen: list[Revocation] = []

    async def follow() -> None:
        nonlocal cursor
        while len(seen) < len(sessions):
            entries, cursor = await second.feed_read(cursor, wait=1)
            seen.extend(entries)

    follower = asyncio.ensure_future(follow())
    results = await asyncio.gather(*(node.revoke(session.sid)
                                     for node, session in zip([first, second] * 30, sessions, strict=True)))
    assert all(results)
    await asyncio.wait_for(follower, 10)
    assert sorted(entry.subject for entry in seen) == sorted(session.sid for session in sessions)
    assert await second.feed_read(cursor, wait=0) == ([], cursor)


async def test_a_read_answers_in_batches(nodes: tuple[Any, Any], clock: FakeClock,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_postgres, "FEED_BATCH", 3)
    writer, reader = nodes
    _, cursor = await reader.feed_load()
    for number in range(7):
        await writer.revoke_all(f"user-{number}")
    batches = []
    while True:
        entries, cursor = await reader.feed_read(cursor, wait=0)
        if not entries:
            break
        batches.append([entry.subject for entry in entries])
    assert batches == [["user-0", "user-1", "user-2"], ["user-3", "user-4", "user-5"], ["user-6"]]


# trimming and lost data ---------------------------------------------------------------------------------


async def test_trimmed_past_the_cursor_is_feed_lost_without_reset(postgres_url: str, raw: Any,
                                                                  clock: FakeClock) -> None:
    async with open_feed(postgres_url, clock, purge_interval=0, feed_retention=60) as store:
        assert isinstance(store, _postgres.PostgresStore)
        _, start = await store.feed_load()
        await store.revoke_all("old")
        _, after_old = await store.feed_read(start, wait=0)
        clock.advance(61)
        await store.revoke_all("young")
        assert await store.purge() == 0  # feed entries are not the Store's records
        assert await raw.fetchval("SELECT trimmed FROM jwtkit_feed_marker") == int(after_old.position)
        with pytest.raises(FeedLost) as lost:
            await store.feed_read(start, wait=0)
        assert lost.value.reset is False
        # a reader that had read the trimmed entry goes on
        assert pairs((await store.feed_read(after_old, wait=0))[0]) == [(USER, "young")]
        entries, cursor = await store.feed_load()  # what a mirror does next
        assert pairs(entries) == [(USER, "young")]
        clock.advance(61)
        await store.purge()  # everything trimmed: the cursor stays valid, a load starts after it
        assert await store.feed_read(cursor, wait=0) == ([], cursor)
        assert await store.feed_load() == ([], cursor)


async def test_purge_trims_the_feed_in_batches(postgres_url: str, raw: Any, clock: FakeClock,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_postgres, "PURGE_BATCH", 100)
    async with open_feed(postgres_url, clock, purge_interval=0, feed_retention=10) as store:
        await raw.execute("INSERT INTO jwtkit_revocations (kind, subject, at) "
                          "SELECT 'user', ('u' || g)::bytea, $1 FROM generate_series(1, 250) AS g",
                          clock() - 11)
        await store.revoke_all("kept")
        await store.purge()
        assert await raw.fetchval("SELECT count(*) FROM jwtkit_revocations") == 1
        assert await raw.fetchval("SELECT trimmed FROM jwtkit_feed_marker") == 250


async def test_a_replaced_database_is_feed_lost_with_reset(postgres_url: str, raw: Any,
                                                           clock: FakeClock) -> None:
    async with open_feed(postgres_url, clock, purge_interval=0) as store:
        _, cursor = await store.feed_load()
        await store.revoke_all("alice")
        _, cursor = await store.feed_read(cursor, wait=0)
        # emptied: every table dropped (a restore of an empty database, a mistaken DROP)
        tables = [row[0] for row in await raw.fetch("SELECT tablename FROM pg_tables "
                                                     "WHERE tablename LIKE 'jwtkit%'")]
        await raw.execute("DROP TABLE " + ", ".join(tables))
        with pytest.raises(FeedLost) as lost:
            await store.feed_read(cursor, wait=0)
        assert lost.value.reset is True
        with pytest.raises(StoreUnavailable):
            await store.feed_load()  # no tables to load from, until the store is migrated again
        async with open_feed(postgres_url, clock, purge_interval=0) as again:  # migrated again
            await again.revoke_all("bob")
            with pytest.raises(FeedLost) as lost:
                await store.feed_read(cursor, wait=0)  # even with an id to read past the cursor
            assert lost.value.reset is True
            entries, fresh = await store.feed_load()
            assert pairs(entries) == [(USER, "bob")]
            assert fresh.generation != cursor.generation
            assert await again.feed_read(fresh, wait=0) == ([], fresh)


async def test_a_lost_marker_or_a_feed_behind_the_cursor_is_feed_lost_with_reset(
        postgres_url: str, raw: Any, clock: FakeClock) -> None:
    async with open_feed(postgres_url, clock, purge_interval=0) as store:
        await store.revoke_all("alice")
        _, cursor = await store.feed_load()
        for foreign in ("999", "-1", "x", "", "1" * 30):  # ahead of the feed, or not this store's
            with pytest.raises(FeedLost) as lost:
                await store.feed_read(FeedCursor(cursor.generation, foreign), wait=0)
            assert lost.value.reset is True
        with pytest.raises(FeedLost) as lost:
            await store.feed_read(FeedCursor("another", cursor.position), wait=0)
        assert lost.value.reset is True
        # a feed table recreated by hand beside the old marker: a new generation, never reused ids
        await raw.execute("DROP TABLE jwtkit_revocations")
        async with open_feed(postgres_url, clock, purge_interval=0):
            pass
        with pytest.raises(FeedLost) as lost:
            await store.feed_read(cursor, wait=0)
        assert lost.value.reset is True
        _, cursor = await store.feed_load()
        await raw.execute("DELETE FROM jwtkit_feed_marker")
        with pytest.raises(FeedLost) as lost:
            await store.feed_read(cursor, wait=0)
        assert lost.value.reset is True
        _, fresh = await store.feed_load()  # makes a new marker
        assert fresh.generation != cursor.generation
        assert await raw.fetchval("SELECT count(*) FROM jwtkit_feed_marker") == 1
        await raw.execute("DROP TABLE jwtkit_feed_marker")  # the marker's table itself: back on open
        with pytest.raises(FeedLost) as lost:
            await store.feed_read(fresh, wait=0)
        assert lost.value.reset is True
        async with open_feed(postgres_url, clock, purge_interval=0):
            pass
        _, again = await store.feed_load()
        assert again.generation not in (fresh.generation, cursor.generation)


async def test_two_deployments_in_two_schemas_have_their_own_feed(postgres_url: str, raw: Any,
                                                                  clock: FakeClock) -> None:
    """Two jwtkit deployments on one database, each with its own role (and so, through the default
    search_path ``"$user", public``, its own schema): separate tables, channels and lock keys."""
    role = f"jwtkit_other_{abs(hash(postgres_url)) % 10**8}"
    await raw.execute(f'CREATE ROLE "{role}" LOGIN')
    await raw.execute(f'CREATE SCHEMA AUTHORIZATION "{role}"')
    other_url = postgres_url.replace("postgresql://postgres@", f"postgresql://{role}@", 1)
    async with open_feed(postgres_url, clock, purge_interval=0) as ours, \
            open_feed(other_url, clock, purge_interval=0) as theirs:
        assert (ours._channel, ours._feed_key) != (theirs._channel, theirs._feed_key)
        assert ours._channel == "jwtkit_feed:public"
        _, our_cursor = await ours.feed_load()
        _, their_cursor = await theirs.feed_load()
        await ours.revoke_all("alice")
        await theirs.revoke_all("bob")
        assert pairs((await ours.feed_read(our_cursor, wait=0))[0]) == [(USER, "alice")]
        assert pairs((await theirs.feed_read(their_cursor, wait=0))[0]) == [(USER, "bob")]


# faults of the real server ------------------------------------------------------------------------------


@pytest.fixture
async def faulty(own_postgres_cluster: PostgresCluster, clock: FakeClock) -> AsyncIterator[Any]:
    store = open_feed(own_postgres_cluster.url, clock, **TIMEOUTS)
    await store.open()
    try:
        yield store
    finally:
        if own_postgres_cluster.running():
            own_postgres_cluster.thaw()
        await store.close()


async def test_a_killed_server_is_unavailable_then_the_feed_resumes(own_postgres_cluster: PostgresCluster,
                                                                    faulty: ManagedStore) -> None:
    store: Any = faulty
    _, cursor = await store.feed_load()
    await store.revoke_all("before")
    seen, cursor = await store.feed_read(cursor, wait=0)
    waiting = asyncio.ensure_future(store.feed_read(cursor, wait=30))
    await until(listening(store), "the reader listens")
    started = time.monotonic()
    own_postgres_cluster.kill()  # kill -9 the postmaster and every backend
    with pytest.raises(StoreUnavailable):
        await asyncio.wait_for(waiting, 10)
    assert time.monotonic() - started < 2  # the dropped connection woke it: not the end of its 30 s
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):  # down: reconnecting fails within the connect timeout
        await store.feed_read(cursor, wait=0.25)
    assert time.monotonic() - started < 0.25 + 0.5 + 0.5
    own_postgres_cluster.start()
    await when_back(lambda: store.revoke_all("after-1"))
    await when_back(lambda: store.revoke_all("after-2"))
    rest, cursor = await read_when_back(store, cursor)
    seen += rest
    assert pairs(seen) == [(USER, "before"), (USER, "after-1"), (USER, "after-2")]  # none lost or repeated
    read = asyncio.ensure_future(store.feed_read(cursor, wait=30))  # and it listens again
    await until(listening(store), "the reader listens again")
    await store.revoke_all("after-3")
    assert pairs((await asyncio.wait_for(read, 5))[0]) == [(USER, "after-3")]


async def test_a_dropped_listen_connection_is_unavailable_then_the_feed_resumes(
        nodes: tuple[Any, Any], raw: Any) -> None:
    writer, reader = nodes
    _, cursor = await reader.feed_load()
    await reader.feed_read(cursor, wait=0)
    waiting = await waiting_read(raw, reader, cursor, wait=30)
    await raw.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE application_name = 'jwtkit feed' AND datname = current_database()")
    with pytest.raises(StoreUnavailable):
        await asyncio.wait_for(waiting, 5)
    await writer.revoke_all("meanwhile")  # committed while no one listens
    entries, cursor = await reader.feed_read(cursor, wait=0)
    assert pairs(entries) == [(USER, "meanwhile")]
    assert await reader.feed_read(cursor, wait=0) == ([], cursor)


async def test_a_frozen_server_is_unavailable_past_the_command_timeout_then_the_feed_resumes(
        own_postgres_cluster: PostgresCluster, faulty: ManagedStore) -> None:
    store: Any = faulty
    _, cursor = await store.feed_load()
    await store.revoke_all("before")
    seen, cursor = await store.feed_read(cursor, wait=0)
    own_postgres_cluster.freeze()  # SIGSTOP: connections stay open, nothing answers, no notification
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await store.feed_read(cursor, wait=0.25)  # waits, asks again, times out
        assert time.monotonic() - started < 0.25 + 0.5 + 0.4  # wait + command_timeout, nothing more
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):  # a new connection cannot start either
            await store.feed_read(cursor, wait=0.25)
        assert time.monotonic() - started < 0.5 + 0.5 + 0.4
    finally:
        own_postgres_cluster.thaw()
    await when_back(lambda: store.revoke_all("after"))
    rest, cursor = await read_when_back(store, cursor)
    seen += rest
    assert pairs(seen) == [(USER, "before"), (USER, "after")]  # none lost or repeated
