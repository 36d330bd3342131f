"""Every foreign exception a backend catches, and what it becomes (style rule 4): sqlite3, redis and plyvel
failures become StoreUnavailable chained ``from`` the original; CancelledError is never swallowed."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from redis.exceptions import AuthenticationError, BusyLoadingError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from jwtkit.store import StoreUnavailable, open_store
from jwtkit.store._redis import RedisStore
from jwtkit.store._sqlite import _mapped


@pytest.mark.parametrize("error", [sqlite3.OperationalError("database is locked"),
                                   sqlite3.DatabaseError("file is not a database"),
                                   sqlite3.ProgrammingError("Cannot operate on a closed database."),
                                   sqlite3.IntegrityError("constraint"), sqlite3.InterfaceError("bad")])
def test_sqlite_errors_become_unavailable(error: sqlite3.Error) -> None:
    with pytest.raises(StoreUnavailable) as caught, _mapped("x.db"):
        raise error
    assert caught.value.__cause__ is error
    assert "x.db" in str(caught.value)


@pytest.mark.parametrize("error", [RedisConnectionError("refused"), RedisTimeoutError("timed out"),
                                   AuthenticationError("WRONGPASS"), BusyLoadingError("loading"),
                                   ResponseError("OOM command not allowed"), ConnectionResetError("reset"),
                                   OSError("unreachable")])
async def test_redis_errors_become_unavailable(error: Exception) -> None:
    store = open_store("redis://127.0.0.1:6390/0")
    assert isinstance(store, RedisStore)

    async def failing() -> None:
        raise error

    with pytest.raises(StoreUnavailable) as caught:
        await store._run(failing())
    assert caught.value.__cause__ is error


async def test_redis_cancellation_is_not_swallowed() -> None:
    store = open_store("redis://127.0.0.1:6390/0")
    assert isinstance(store, RedisStore)

    async def cancelled() -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await store._run(cancelled())


async def test_leveldb_errors_become_unavailable(tmp_path: Path) -> None:
    plyvel = pytest.importorskip("plyvel")
    store = open_store(f"leveldb:///{tmp_path}/db")
    errors = (plyvel.IOError("io"), plyvel.CorruptionError("corrupt"), RuntimeError("Database is closed"))
    for error in errors:
        with pytest.raises(StoreUnavailable) as caught, store._mapped():  # type: ignore[attr-defined]
            raise error
        assert caught.value.__cause__ is error
