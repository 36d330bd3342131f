"""Helpers for the store tests: a fake clock, a session factory, store URLs, and raw access to each backend's
records (to corrupt them, count them and inspect their TTLs)."""

from __future__ import annotations

import math
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from clock import FakeClock
from jwtkit.store import ManagedStore, Session

BACKENDS = ["memory", "sqlite", "leveldb", "redis", pytest.param("postgresql", marks=pytest.mark.postgresql)]
T0 = 1_700_000_000.0


def new_session(clock: FakeClock, user_id: str = "alice", *, ttl: float = 3600.0, family: str | None = None,
                created: float | None = None, user_agent: str = "pytest/1.0",
                ip: str = "127.0.0.1", epoch: int = 0, revoked: bool = False) -> Session:
    created = clock() if created is None else created
    return Session(sid=secrets.token_urlsafe(16), user_id=user_id, created=created, last_used=created,
                   expires=created + ttl, family=family or secrets.token_urlsafe(16),
                   refresh_jti=secrets.token_urlsafe(16), user_agent=user_agent, ip=ip, revoked=revoked,
                   epoch=epoch)


def store_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "memory":
        return "memory://"
    if backend == "sqlite":
        return f"sqlite:///{tmp_path}/jwtkit.db"
    if backend == "leveldb":
        pytest.importorskip("plyvel")
        return f"leveldb:///{tmp_path}/jwtkit.ldb"
    if backend == "postgresql":
        postgres: str = request.getfixturevalue("postgres_url")  # a fresh database for this test
        return postgres
    url: str = request.getfixturevalue("redis_url")
    return url



# raw access to each backend's records -------------------------------------------------------------------

# How many raw records one live session takes (session row/key plus any index entries).
RECORDS_PER_SESSION = {"MemoryStore": 1, "SQLiteStore": 1, "LevelDBStore": 3, "PostgresStore": 1}
# Records a store keeps whatever it holds (LevelDB: its layout version key).
FIXED_RECORDS = {"MemoryStore": 0, "SQLiteStore": 0, "LevelDBStore": 1, "PostgresStore": 0}
POSTGRES_TABLES = ("jwtkit_sessions", "jwtkit_epochs", "jwtkit_consumed", "jwtkit_throttles")


async def postgres_execute(store: ManagedStore, sql: str, *args: object) -> object:
    """Run raw SQL on a PostgresStore's pool (to corrupt or count rows)."""
    async with store._pool.acquire() as connection:  # type: ignore[attr-defined]
        return await connection.fetchval(sql, *args)


def expires_by_ttl(store: ManagedStore) -> bool:
    return type(store).__name__ == "RedisStore"


async def corrupt_session(store: ManagedStore, sid: str) -> None:
    """Overwrite the session's raw record with garbage, as a disk fault or a foreign writer might."""
    kind = type(store).__name__
    if kind == "MemoryStore":
        store._sessions[sid] = b"\x00garbage"  # type: ignore[attr-defined]
    elif kind == "SQLiteStore":
        import sqlite3

        with sqlite3.connect(store.path) as conn:  # type: ignore[attr-defined]
            conn.execute("UPDATE sessions SET created = 'garbage', user_id = x'00ff' WHERE sid = ?", (sid,))
        conn.close()
    elif kind == "LevelDBStore":
        store._db.put(b"s:" + sid.encode(), b"\xff{not json")  # type: ignore[attr-defined]
    elif kind == "PostgresStore":  # typed columns: what a foreign writer could still leave is out of range
        await postgres_execute(store, "UPDATE jwtkit_sessions SET created = 'NaN', expires = 'NaN' "
                               "WHERE sid = $1", sid.encode())
    else:
        client = store._client  # type: ignore[attr-defined]
        key = store._key("s", sid)  # type: ignore[attr-defined]
        await client.hset(key, mapping={"expires": "garbage", "created": "x"})


async def corrupt_epoch(store: ManagedStore, user_id: str) -> None:
    """Overwrite the user's epoch record with garbage (creating it if there is none)."""
    kind = type(store).__name__
    if kind == "MemoryStore":
        store._epochs[user_id] = "garbage"  # type: ignore[attr-defined]
    elif kind == "SQLiteStore":
        import sqlite3

        with sqlite3.connect(store.path) as conn:  # type: ignore[attr-defined]
            conn.execute("INSERT OR REPLACE INTO epochs (user_id, epoch) VALUES (?, 'garbage')", (user_id,))
        conn.close()
    elif kind == "LevelDBStore":
        store._db.put(b"e:" + user_id.encode(), b"\xff12")  # type: ignore[attr-defined]
    elif kind == "PostgresStore":
        await postgres_execute(store, "INSERT INTO jwtkit_epochs (user_id, epoch) VALUES ($1, -12) "
                               "ON CONFLICT (user_id) DO UPDATE SET epoch = -12", user_id.encode())
    else:
        client = store._client  # type: ignore[attr-defined]
        await client.set(store._key("e", user_id), "12abc")  # type: ignore[attr-defined]


async def record_count(store: ManagedStore) -> int:
    kind = type(store).__name__
    if kind == "MemoryStore":
        return store.record_count()  # type: ignore[attr-defined, no-any-return]
    if kind == "SQLiteStore":
        import sqlite3

        conn = sqlite3.connect(store.path)  # type: ignore[attr-defined]
        try:
            return sum(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                       for table in ("sessions", "epochs", "consumed", "throttles"))
        finally:
            conn.close()
    if kind == "LevelDBStore":
        return len(list(store._db.iterator(include_value=False)))  # type: ignore[attr-defined]
    if kind == "PostgresStore":
        counted = [await postgres_execute(store, f"SELECT count(*) FROM {table}")
                   for table in POSTGRES_TABLES]
        return sum(int(n) for n in counted)  # type: ignore[call-overload]
    raise AssertionError(f"{kind} expires by TTL")


async def assert_every_key_has_ttl(store: ManagedStore, clock: FakeClock) -> None:
    """Redis: every key of the store but the epochs, the revocation streams (trimmed by age instead) and the
    layout keys has a TTL, none longer than the live session's remaining life (so the key count follows
    active sessions); epochs never expire."""
    client = store._client  # type: ignore[attr-defined]
    prefix = store._prefix  # type: ignore[attr-defined]
    keys = [k async for k in client.scan_iter(match=prefix + "*")]
    assert keys
    untimed = re.compile(re.escape(prefix) + r"(\{[0-9]+\}:(e:.*|revocations)|schema|shards|generation)")
    for key in keys:
        ttl = await client.pttl(key)
        if untimed.fullmatch(key):
            assert ttl == -1, (key, ttl)
        else:
            assert 0 < ttl <= 3600 * 1000 + 5000, (key, ttl)


# binaries and ports (as in tests/conftest.py, which is not importable as a module) ------------------------


async def assert_feed_wakes_promptly(label: str, writer: Any, reader: Any,
                                     start_read: Callable[[Any], Awaitable[Awaitable[Any]]]) -> None:
    """200 times: a ``feed_read`` waiting on ``reader`` (``start_read(cursor)`` returns it once it waits),
    then ``revoke_all`` on ``writer``; the read returns with that one entry, at p99 within 0.5 s (a bound
    on waking, not a speed figure: the benchmarks measure speed). Prints p50 and p99."""
    _, cursor = await reader.feed_load()
    samples = []
    for index in range(200):
        read = await start_read(cursor)
        started = time.perf_counter()
        await writer.revoke_all(f"user-{index}")
        entries, cursor = await read
        samples.append(time.perf_counter() - started)
        assert len(entries) == 1
    samples.sort()
    p50, p99 = samples[len(samples) // 2], samples[math.ceil(len(samples) * 0.99) - 1]
    print(f"\n{label}: revoke -> feed_read returned: p50 {p50 * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms")
    assert p99 < 0.5
