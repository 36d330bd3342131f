"""open_store: schemes, URL forms, options, and what every store object offers (protocol, repr, lifecycle)."""

from __future__ import annotations

from pathlib import Path

import pytest

import jwtkit.store
from jwtkit.store import (
    DEFAULT_PURGE_INTERVAL,
    FeedLost,
    Store,
    StoreConfigError,
    StoreError,
    StoreUnavailable,
    open_store,
)
from jwtkit.store._leveldb import LevelDBStore
from jwtkit.store._memory import MemoryStore
from jwtkit.store._postgres import PostgresStore
from jwtkit.store._redis import RedisStore
from jwtkit.store._sqlite import SQLiteStore


@pytest.mark.parametrize(("url", "kind"), [
    ("memory://", MemoryStore),
    ("sqlite:///jwtkit.db", SQLiteStore),
    ("sqlite:////tmp/jwtkit.db", SQLiteStore),
    ("leveldb:///jwtkit.ldb", LevelDBStore),
    ("redis://127.0.0.1:6390/0", RedisStore),
    ("redis://:pw@127.0.0.1:6390/2", RedisStore),
    ("rediss://127.0.0.1:6390", RedisStore),
    ("SQLITE:///upper.db", SQLiteStore),
    ("postgresql://postgres@127.0.0.1:5499/jwtkit", PostgresStore),
    ("postgres://u:pw@db.example/jwtkit?sslmode=require&pool_max=4", PostgresStore),
])
def test_scheme_picks_the_backend(url: str, kind: type) -> None:
    store = open_store(url)
    assert type(store) is kind
    assert isinstance(store, Store)  # the runtime-checkable protocol of store/_base.py


@pytest.mark.parametrize("url", ["", "jwtkit.db", "mysql://x", "file:///x.db",
                                 "memory://?colour=red", "leveldb://host/x", "leveldb:///"])
def test_bad_urls(url: str) -> None:
    with pytest.raises(StoreConfigError) as caught:
        open_store(url)
    assert caught.value.code == "store_config"
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("query", ["pool_min=-1", "pool_max=0", "pool_max=1.5", "pool_min=3&pool_max=2",
                                   "pool_timeout=0", "command_timeout=-1", "connect_timeout=x", "colour=red"])
def test_bad_postgresql_options(query: str) -> None:
    with pytest.raises(StoreConfigError):
        open_store(f"postgresql://127.0.0.1:5499/db?{query}")
    with pytest.raises(StoreConfigError):  # as keywords too
        open_store("postgresql://127.0.0.1:5499/db", **dict(p.split("=") for p in query.split("&")))


def test_postgresql_options_and_password_hiding() -> None:
    store = open_store("postgresql://jwt:hunter2@127.0.0.1:5499/db?pool_min=2&pool_max=5&pool_timeout=0.5"
                       "&command_timeout=0.25&connect_timeout=2&sslmode=disable", pool_max=6)
    assert isinstance(store, PostgresStore)
    assert (store._pool_min, store._pool_max, store._pool_timeout) == (2, 6, 0.5)
    assert (store._command_timeout, store._connect_timeout) == (0.25, 2.0)
    assert store._dsn == "postgresql://jwt:hunter2@127.0.0.1:5499/db?sslmode=disable"  # libpq options pass
    assert store.url == ("postgresql://jwt:***@127.0.0.1:5499/db?pool_min=2&pool_max=5&pool_timeout=0.5"
                         "&command_timeout=0.25&connect_timeout=2&sslmode=disable")
    assert "hunter2" not in repr(store)
    assert "pem-secret" not in open_store("postgresql://127.0.0.1:5499/db?sslpassword=pem-secret").url


def test_non_string_url() -> None:
    with pytest.raises(StoreConfigError):
        open_store(b"memory://")  # type: ignore[arg-type]


def test_options_from_query_and_keywords() -> None:
    store = open_store("sqlite:///x.db?purge_interval=0&busy_timeout=0.5")
    assert isinstance(store, SQLiteStore)
    assert store._purge_interval == 0
    assert store._busy_timeout_ms == 500
    store = open_store("sqlite:///x.db?purge_interval=10", purge_interval=20)
    assert isinstance(store, SQLiteStore)
    assert store._purge_interval == 20  # keywords win
    assert open_store("memory://")._purge_interval == DEFAULT_PURGE_INTERVAL  # type: ignore[attr-defined]


def test_repr_and_url_hide_the_password() -> None:
    store = open_store("redis://user:hunter2@127.0.0.1:6390/0")
    assert store.url == "redis://user:***@127.0.0.1:6390/0"
    assert "hunter2" not in repr(store)
    assert repr(store) == "RedisStore('redis://user:***@127.0.0.1:6390/0', unopened)"
    store = open_store("rediss://127.0.0.1:6390/0?password=hunter2&ssl_password=pem-secret&prefix=p:")
    assert store.url == "rediss://127.0.0.1:6390/0?password=%2A%2A%2A&ssl_password=%2A%2A%2A&prefix=p%3A"
    assert open_store("memory://").url == "memory://"


def test_error_tree() -> None:
    assert issubclass(StoreUnavailable, StoreError)
    assert issubclass(StoreConfigError, StoreError)
    assert issubclass(FeedLost, StoreError)
    assert {StoreError.code, StoreUnavailable.code, StoreConfigError.code, FeedLost.code} == {
        "store", "store_unavailable", "store_config", "feed_lost"}


def test_exports_are_exactly_the_public_names() -> None:
    assert set(jwtkit.store.__all__) == {
        "DEFAULT_COMMAND_TIMEOUT", "DEFAULT_CONNECT_TIMEOUT", "DEFAULT_FEED_RETENTION",
        "DEFAULT_PURGE_INTERVAL", "Clock", "FeedCursor", "FeedLost", "KeyRingRecords", "ManagedStore",
        "Revocation", "RevocationFeed", "RevocationKind", "RevocationMirror",
        "Rotation", "Session", "Store", "StoreConfigError", "StoreError", "StoreUnavailable", "ThrottleState",
        "open_store"}
    for name in jwtkit.store.__all__:
        assert hasattr(jwtkit.store, name)


async def test_unopened_store_refuses_work(tmp_path: Path) -> None:
    for url in ("memory://", f"sqlite:///{tmp_path}/x.db"):
        store = open_store(url)
        with pytest.raises(StoreUnavailable, match="unopened"):
            await store.check("sid", "alice")
        with pytest.raises(StoreUnavailable):
            await store.purge()
