"""PostgreSQL specifics: nodes racing on one database (driven by held row and advisory locks, not sleeps), the
schema applied by several nodes at once (and upgraded from version 1), batched purge, and faults of the real
server (stopped with ``pg_ctl -m immediate``, frozen with SIGSTOP, pool exhausted): StoreUnavailable within
the timeouts, never another exception, and recovery without reopening the store. The revocation feed has its
own module (test_postgres_feed.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from jwtkit.store import ManagedStore, Rotation, StoreUnavailable, _postgres, open_store
from processes import PostgresCluster

from .support import FakeClock, new_session

pytestmark = pytest.mark.postgresql

TIMEOUTS = {"command_timeout": 0.5, "connect_timeout": 0.5, "pool_timeout": 0.5, "purge_interval": 0}


@pytest.fixture
async def nodes(postgres_url: str, clock: FakeClock) -> AsyncIterator[tuple[ManagedStore, ManagedStore]]:
    """Two stores on one database, as two server nodes would be (patient: the races wait on held locks)."""
    first, second = (open_store(postgres_url, clock=clock, pool_min=5, command_timeout=10, pool_timeout=10)
                     for _ in range(2))
    await first.open()
    await second.open()
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()


async def waiting_on_locks(raw: Any, count: int, kind: str = "Lock") -> None:
    """Return once ``count`` other backends wait on a lock (bounded: a failing test does not hang)."""
    deadline = time.monotonic() + 10
    while await raw.fetchval("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = $1 "
                             "AND pid <> pg_backend_pid()", kind) < count:
        assert time.monotonic() < deadline, "the racers never reached the lock"
        await asyncio.sleep(0.005)


async def race_behind_row_lock(raw: Any, lock_sql: str, args: tuple[Any, ...],
                               *calls: Callable[[], Awaitable[Any]]) -> list[Any]:
    """Hold a row lock, start every call (each blocks on that row), wait until all of them wait, release:
    they then run against each other with nothing but the database ordering them."""
    transaction = raw.transaction()
    await transaction.start()
    await raw.execute(lock_sql, *args)
    tasks = [asyncio.ensure_future(call()) for call in calls]
    try:
        await waiting_on_locks(raw, len(calls))
        assert not any(task.done() for task in tasks)
    finally:
        await transaction.commit()
    return list(await asyncio.gather(*tasks))


# nodes racing --------------------------------------------------------------------------------------------

LOCK_SESSION = "SELECT 1 FROM jwtkit_sessions WHERE sid = $1 FOR UPDATE"


async def test_two_nodes_rotating_one_token_to_one_successor(nodes: tuple[ManagedStore, ManagedStore],
                                                            raw: Any, clock: FakeClock) -> None:
    a, b = nodes
    session = new_session(clock)
    await a.create_session(session)
    results = await race_behind_row_lock(
        raw, LOCK_SESSION, (session.sid.encode(),),
        lambda: a.rotate_refresh(session.sid, session.refresh_jti, "succ", concurrent=("succ",)),
        lambda: b.rotate_refresh(session.sid, session.refresh_jti, "succ", concurrent=("succ",)))
    assert sorted(r.value for r in results) == ["concurrent", "rotated"]
    got = await b.get_session(session.sid)
    assert got is not None and not got.revoked
    assert got.refresh_jti == "succ"


async def test_two_nodes_rotating_one_token_to_different_successors(
        nodes: tuple[ManagedStore, ManagedStore], raw: Any, clock: FakeClock) -> None:
    a, b = nodes
    session, sibling = new_session(clock, family="fam"), new_session(clock, family="fam")
    await a.create_session(session)
    await a.create_session(sibling)
    results = await race_behind_row_lock(
        raw, LOCK_SESSION, (session.sid.encode(),),
        lambda: a.rotate_refresh(session.sid, session.refresh_jti, "succ-a", concurrent=("succ-a",)),
        lambda: b.rotate_refresh(session.sid, session.refresh_jti, "succ-b", concurrent=("succ-b",)))
    assert sorted(r.value for r in results) == ["reused", "rotated"]  # the loser's copy is a stolen one
    assert await a.check(session.sid, "alice") is False
    assert await b.check(sibling.sid, "alice") is False


async def test_ten_rotations_across_two_nodes_rotate_once(nodes: tuple[ManagedStore, ManagedStore],
                                                          raw: Any, clock: FakeClock) -> None:
    a, b = nodes
    session = new_session(clock)
    await a.create_session(session)
    calls = [lambda store=store, i=i: store.rotate_refresh(session.sid, session.refresh_jti, f"new-{i}")
             for i, store in enumerate([a, b] * 5)]
    results = await race_behind_row_lock(raw, LOCK_SESSION, (session.sid.encode(),), *calls)
    assert results.count(Rotation.ROTATED) == 1
    assert results.count(Rotation.REUSED) == 1
    assert results.count(Rotation.INACTIVE) == 8


async def test_two_nodes_logging_one_user_in_at_the_cap_keep_the_cap(nodes: tuple[ManagedStore, ManagedStore],
                                                                      raw: Any, clock: FakeClock) -> None:
    """Two logins at the cap, held on the row of the oldest session: had each counted what it saw, both would
    evict that one session and leave three alive. The user's lock makes the second count after the first
    committed, so it evicts the next oldest instead."""
    a, b = nodes
    oldest, older = new_session(clock), new_session(clock, created=clock() + 1)
    await a.create_session(oldest)
    await a.create_session(older)
    clock.advance(2)
    first, second = new_session(clock), new_session(clock)
    results = await race_behind_row_lock(
        raw, LOCK_SESSION, (oldest.sid.encode(),),
        lambda: a.create_session(first, max_sessions=2), lambda: b.create_session(second, max_sessions=2))
    assert sorted(results) == sorted([[oldest.sid], [older.sid]])
    assert {s.sid for s in await b.list_sessions("alice")} == {first.sid, second.sid}
    assert await a.check(older.sid, "alice") is False


async def test_revoke_all_on_two_nodes_behind_the_epoch_row_lock(nodes: tuple[ManagedStore, ManagedStore],
                                                                 raw: Any, clock: FakeClock) -> None:
    a, b = nodes
    assert await a.revoke_all("alice") == 1
    old = new_session(clock, epoch=1)
    await a.create_session(old)
    results = await race_behind_row_lock(
        raw, "SELECT 1 FROM jwtkit_epochs WHERE user_id = $1 FOR UPDATE", (b"alice",),
        lambda: a.revoke_all("alice"), lambda: b.revoke_all("alice"))
    assert sorted(results) == [2, 3]
    assert await b.get_epoch("alice") == 3
    assert await a.check(old.sid, "alice") is False
    # and many at once from both nodes: distinct, strictly larger values, the last one stored
    many = await asyncio.gather(*(store.revoke_all("alice") for store in [a, b] * 20))
    assert sorted(many) == list(range(4, 44))
    assert await a.get_epoch("alice") == 43


async def test_consume_on_two_nodes_exactly_one_wins(nodes: tuple[ManagedStore, ManagedStore],
                                                     clock: FakeClock) -> None:
    a, b = nodes
    results = await asyncio.gather(*(store.consume("race", clock() + 60) for store in [a, b] * 25))
    assert results.count(True) == 1


async def test_throttle_hits_on_two_nodes_all_count(nodes: tuple[ManagedStore, ManagedStore]) -> None:
    a, b = nodes
    await asyncio.gather(*(store.throttle_hit("burst", 60) for store in [a, b] * 15))
    assert (await a.throttle_get("burst")).failures == 30


async def test_revoke_all_never_moves_the_epoch_back_while_repairing(
        nodes: tuple[ManagedStore, ManagedStore], raw: Any, clock: FakeClock) -> None:
    a, b = nodes
    await a.create_session(new_session(clock, epoch=5))
    await raw.execute("INSERT INTO jwtkit_epochs (user_id, epoch) VALUES ($1, -3)", b"alice")
    repaired = await asyncio.gather(a.revoke_all("alice"), b.revoke_all("alice"))
    assert sorted(repaired) == [6, 7]  # one repairs above the sessions' 5, the other bumps that


# schema --------------------------------------------------------------------------------------------------


async def test_nodes_opening_an_empty_database_at_once_create_one_schema(postgres_url: str, raw: Any,
                                                                         clock: FakeClock) -> None:
    stores = [open_store(postgres_url, clock=clock, purge_interval=0) for _ in range(3)]
    await raw.execute("SELECT pg_advisory_lock($1)", _postgres._SCHEMA_LOCK)
    tasks = [asyncio.ensure_future(store.open()) for store in stores]
    try:
        await waiting_on_locks(raw, len(stores), kind="Lock")  # all of them queue on the advisory lock
    finally:
        await raw.execute("SELECT pg_advisory_unlock($1)", _postgres._SCHEMA_LOCK)
    await asyncio.gather(*tasks)
    try:
        assert await raw.fetch("SELECT name, version FROM jwtkit_store_schema") == [
            ("jwtkit.store", _postgres.SCHEMA_VERSION)]
        assert await raw.fetchval("SELECT count(*) FROM jwtkit_feed_marker") == 1  # one feed generation
        session = new_session(clock)
        await stores[0].create_session(session)
        assert await stores[2].check(session.sid, "alice") is True
    finally:
        for store in stores:
            await store.close()
    async with open_store(postgres_url, clock=clock) as again:  # reopening changes nothing
        assert await again.check(session.sid, "alice") is True


async def test_a_schema_version_1_database_gains_the_feed_in_place(postgres_url: str, raw: Any,
                                                                   clock: FakeClock) -> None:
    async with open_store(postgres_url, clock=clock, purge_interval=0) as store:
        session = new_session(clock)
        await store.create_session(session)
    # as jwtkit with schema version 1 left it: no feed tables
    await raw.execute("DROP TABLE jwtkit_revocations, jwtkit_feed_marker")
    await raw.execute("UPDATE jwtkit_store_schema SET version = 1")
    async with open_store(postgres_url, clock=clock, purge_interval=0) as store:
        assert await raw.fetchval("SELECT version FROM jwtkit_store_schema") == 2 == _postgres.SCHEMA_VERSION
        assert await store.check(session.sid, "alice") is True  # the data stays
        _, cursor = await store.feed_load()  # type: ignore[attr-defined]
        assert await store.revoke(session.sid) is True
        entries, _ = await store.feed_read(cursor, wait=0)  # type: ignore[attr-defined]
        assert [entry.subject for entry in entries] == [session.sid]


async def test_a_newer_schema_is_refused(postgres_url: str, raw: Any, clock: FakeClock) -> None:
    async with open_store(postgres_url, clock=clock):
        pass
    await raw.execute("UPDATE jwtkit_store_schema SET version = 99")
    from jwtkit.store import StoreConfigError

    with pytest.raises(StoreConfigError, match="schema version 99"):
        await open_store(postgres_url, clock=clock).open()


# purge ---------------------------------------------------------------------------------------------------


async def test_purge_deletes_in_bounded_batches(postgres_url: str, raw: Any, clock: FakeClock,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_postgres, "PURGE_BATCH", 100)
    async with open_store(postgres_url, clock=clock, purge_interval=0) as store:
        await raw.execute("INSERT INTO jwtkit_consumed (jti, expires) "
                          "SELECT ('j' || g)::bytea, $1 FROM generate_series(1, 1050) AS g", clock() - 1)
        await raw.execute("INSERT INTO jwtkit_consumed (jti, expires) VALUES ('live', $1), ('nan', 'NaN')",
                          clock() + 60)
        statements: list[str] = []
        original = store._execute  # type: ignore[attr-defined]

        async def counting(sql: str, *args: Any) -> str:
            statements.append(sql)
            result: str = await original(sql, *args)
            return result

        store._execute = counting  # type: ignore[attr-defined]
        assert await store.purge() == 1051
        assert sum("jwtkit_consumed" in s for s in statements) == 11  # ten full batches and the rest
        assert await raw.fetchval("SELECT count(*) FROM jwtkit_consumed") == 1


# faults of the real server --------------------------------------------------------------------------------

OPERATIONS: list[tuple[str, Callable[[ManagedStore, str], Awaitable[Any]]]] = [
    ("ping", lambda s, sid: s.ping()),
    ("check", lambda s, sid: s.check(sid, "alice")),
    ("get_session", lambda s, sid: s.get_session(sid)),
    ("create_session", lambda s, sid: s.create_session(new_session(FakeClock()))),
    ("rotate_refresh", lambda s, sid: s.rotate_refresh(sid, "a", "b")),
    ("revoke", lambda s, sid: s.revoke(sid)),
    ("revoke_all", lambda s, sid: s.revoke_all("alice")),
    ("get_epoch", lambda s, sid: s.get_epoch("alice")),
    ("list_sessions", lambda s, sid: s.list_sessions("alice")),
    ("consume", lambda s, sid: s.consume("jti", 2e9)),
    ("throttle_hit", lambda s, sid: s.throttle_hit("ip", 60)),
    ("purge", lambda s, sid: s.purge()),
]


async def assert_unavailable_within(store: ManagedStore, sid: str, bound: float) -> None:
    for name, operation in OPERATIONS:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await operation(store, sid)
        assert time.monotonic() - started < bound, name


@pytest.fixture
async def faulty(own_postgres_cluster: PostgresCluster, clock: FakeClock) -> AsyncIterator[ManagedStore]:
    store = open_store(own_postgres_cluster.url, clock=clock, pool_max=4, **TIMEOUTS)
    await store.open()
    try:
        yield store
    finally:
        own_postgres_cluster.thaw()
        await store.close()


async def test_stopped_server_is_unavailable_then_recovers_without_reopening(
        own_postgres_cluster: PostgresCluster, faulty: ManagedStore, clock: FakeClock) -> None:
    session = new_session(clock)
    await faulty.create_session(session)
    await asyncio.gather(*(faulty.check(session.sid, "alice") for _ in range(8)))  # fill the pool
    own_postgres_cluster.stop()
    await assert_unavailable_within(faulty, session.sid, 1.5)
    own_postgres_cluster.start()
    assert await faulty.check(session.sid, "alice") is True  # the first call after the restart
    results = await asyncio.gather(*(faulty.check(session.sid, "alice") for _ in range(8)))
    assert all(results)
    assert await faulty.rotate_refresh(session.sid, session.refresh_jti, "next") is Rotation.ROTATED


async def test_frozen_server_is_unavailable_within_the_command_timeout(
        own_postgres_cluster: PostgresCluster, faulty: ManagedStore, clock: FakeClock) -> None:
    session = new_session(clock)
    await faulty.create_session(session)
    own_postgres_cluster.freeze()
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await faulty.check(session.sid, "alice")
        assert time.monotonic() - started < 0.5 + 0.4  # command_timeout, not also a wait for the cancel
        await assert_unavailable_within(faulty, session.sid, 2.0)
        # many callers at once: every one fails closed, none with another exception
        outcomes = await asyncio.gather(*(faulty.check(session.sid, "alice") for _ in range(10)),
                                        return_exceptions=True)
        assert all(isinstance(o, StoreUnavailable) for o in outcomes), outcomes
    finally:
        own_postgres_cluster.thaw()
    deadline = time.monotonic() + 10
    while True:  # the timed-out connections were dropped; fresh ones answer once the server runs again
        try:
            assert await faulty.check(session.sid, "alice") is True
            break
        except StoreUnavailable:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)


async def test_open_on_a_stopped_server_is_unavailable(own_postgres_cluster: PostgresCluster,
                                                       clock: FakeClock) -> None:
    own_postgres_cluster.stop()
    store = open_store(own_postgres_cluster.url, clock=clock, **TIMEOUTS)
    with pytest.raises(StoreUnavailable):
        await store.open()
    own_postgres_cluster.start()
    await store.open()
    await store.ping()
    await store.close()


async def test_exhausted_pool_is_unavailable_after_the_pool_timeout(postgres_url: str, raw: Any,
                                                                    clock: FakeClock) -> None:
    async with open_store(postgres_url, clock=clock, pool_max=1, **TIMEOUTS) as store:
        session = new_session(clock)
        await store.create_session(session)
        transaction = raw.transaction()
        await transaction.start()
        await raw.execute(LOCK_SESSION, session.sid.encode())
        # the pool's one connection waits on the row lock (and will time out after command_timeout)...
        blocked = asyncio.ensure_future(store.rotate_refresh(session.sid, session.refresh_jti, "n"))
        try:
            await waiting_on_locks(raw, 1)
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):  # ...so this one finds the pool exhausted
                await store.check(session.sid, "alice")
            assert time.monotonic() - started < 0.5 + 0.4  # pool_timeout
        finally:
            await transaction.rollback()
        with pytest.raises(StoreUnavailable):
            await blocked  # it waited past command_timeout: unavailable, and nothing was written
        assert await store.check(session.sid, "alice") is True
        assert await store.rotate_refresh(session.sid, session.refresh_jti, "n") is Rotation.ROTATED


async def test_an_id_too_long_to_index_fails_closed(postgres_url: str, clock: FakeClock) -> None:
    """PostgreSQL cannot index a key above about 2.7 kB after compression (docs/stores.md): such a write is
    StoreUnavailable, and a lookup of it answers as for any unknown id."""
    huge = secrets.token_hex(8000)  # random: it does not compress
    async with open_store(postgres_url, clock=clock, purge_interval=0) as store:
        with pytest.raises(StoreUnavailable):
            await store.create_session(dataclasses.replace(new_session(clock), sid=huge))
        with pytest.raises(StoreUnavailable):
            await store.consume(huge, clock() + 60)
        assert await store.check(huge, "alice") is False
        assert await store.get_session(huge) is None
        assert await store.rotate_refresh(huge, "a", "b") is Rotation.INACTIVE
