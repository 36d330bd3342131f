"""Session and revocation stores behind one async interface; :func:`open_store` picks the backend by URL.

URLs (query options may follow ``?``; keyword options given to :func:`open_store` win over them):

- ``memory://``: in-process dicts, for tests and demos.
- ``sqlite:///jwtkit.db`` (relative to the working directory), ``sqlite:////abs/path/jwtkit.db``: the default.
- ``leveldb:///dir`` / ``leveldb:////abs/dir``: through plyvel (``pip install jwtkit[leveldb]``); one process.
- ``redis://[:password@]host:port/db``, ``rediss://…`` (TLS): for many nodes; ``?prefix=jwtkit:``.
- ``redis+cluster://[:password@]host:port[,host:port...]``, ``rediss+cluster://…``: the same on a Redis
  Cluster (the listed nodes are where the client starts; it finds the others).
- ``postgresql://user[:password]@host:port/db`` (or ``postgres://``): for many nodes, through asyncpg
  (``pip install jwtkit[postgresql]``); ``?pool_min=1&pool_max=10&pool_timeout=1``.

Example:
    >>> import asyncio
    >>> from jwtkit.store import open_store
    >>> async def demo() -> bool:
    ...     async with open_store("memory://") as store:
    ...         return await store.check("no-such-sid", "alice")
    >>> asyncio.run(demo())
    False
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from jwtkit.store._base import (
    DEFAULT_COMMAND_TIMEOUT,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_FEED_RETENTION,
    DEFAULT_PURGE_INTERVAL,
    Clock,
    FeedCursor,
    FeedLost,
    KeyRingRecords,
    Revocation,
    RevocationFeed,
    RevocationKind,
    Rotation,
    Session,
    Store,
    StoreConfigError,
    StoreError,
    StoreUnavailable,
    ThrottleState,
)
from jwtkit.store._common import ManagedStore, parse_float_option
from jwtkit.store._mirror import RevocationMirror

__all__ = [
    "DEFAULT_COMMAND_TIMEOUT",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_FEED_RETENTION",
    "DEFAULT_PURGE_INTERVAL",
    "Clock",
    "FeedCursor",
    "FeedLost",
    "KeyRingRecords",
    "ManagedStore",
    "Revocation",
    "RevocationFeed",
    "RevocationKind",
    "RevocationMirror",
    "Rotation",
    "Session",
    "Store",
    "StoreConfigError",
    "StoreError",
    "StoreUnavailable",
    "ThrottleState",
    "open_store",
]

SCHEMES = ("memory", "sqlite", "leveldb", "redis", "rediss", "redis+cluster", "rediss+cluster", "postgresql",
           "postgres")


def _file_path(url: str, scheme: str, path: str) -> str:
    """``scheme:///rel`` -> ``rel``; ``scheme:////abs`` -> ``/abs`` (the SQLAlchemy convention)."""
    if not path.startswith("/") or len(path) < 2:
        raise StoreConfigError(f"{scheme} store URL {url!r} needs a path: {scheme}:///relative or {scheme}:////abs")
    return path[1:]


def open_store(url: str, *, clock: Clock = time.time, **options: Any) -> ManagedStore:
    """Build the store named by ``url``, unopened: ``await store.open()`` or ``async with store:``.

    Args:
        url: see the module docstring for the schemes.
        clock: POSIX time source for every expiry decision (tests pass a fake one).
        options: backend options, also accepted as URL query parameters: ``purge_interval`` (seconds, 0 = off;
            sqlite, leveldb, memory), ``busy_timeout`` (sqlite, seconds), ``prefix``, ``shards`` (redis: the
            shard count of a new store, 16), ``feed_retention`` (seconds a revocation stays in the feed;
            redis, postgresql, memory), ``connect_timeout``, ``command_timeout`` (redis, postgresql),
            redis-py's ``ssl_*`` options for ``rediss://`` and ``rediss+cluster://``, and
            ``pool_min``, ``pool_max``, ``pool_timeout`` (postgresql; other URL parameters such as ``sslmode``
            go to asyncpg).

    Raises:
        StoreConfigError: (``store_config``) unknown scheme, bad path or option, or a missing optional
            package.
    """
    if not isinstance(url, str):
        raise StoreConfigError(f"store URL must be a string, not {type(url).__name__}")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise StoreConfigError(f"unknown store URL scheme {parts.scheme!r} in {url!r}; expected one of "
                               + ", ".join(f"{s}://" for s in SCHEMES))
    if scheme in ("redis", "rediss", "redis+cluster", "rediss+cluster"):
        from jwtkit.store._redis import RedisStore

        return RedisStore(url, clock=clock, **options)
    if scheme in ("postgresql", "postgres"):
        from jwtkit.store._postgres import PostgresStore

        return PostgresStore(url, clock=clock, **options)
    merged: dict[str, Any] = dict(parse_qsl(parts.query, keep_blank_values=True))
    merged.update(options)
    purge_interval = parse_float_option("purge_interval",
                                        merged.pop("purge_interval", DEFAULT_PURGE_INTERVAL))
    if scheme == "memory":
        from jwtkit.store._memory import MemoryStore

        feed_retention = parse_float_option("feed_retention",
                                            merged.pop("feed_retention", DEFAULT_FEED_RETENTION))
        _no_other_options(url, merged)
        return MemoryStore(url, clock=clock, purge_interval=purge_interval, feed_retention=feed_retention)
    if parts.netloc:
        raise StoreConfigError(f"{scheme} store URL {url!r} has a host part; "
                               f"use {scheme}:///path (three slashes)")
    path = _file_path(url, scheme, parts.path)
    if scheme == "sqlite":
        from jwtkit.store._sqlite import SQLiteStore

        busy_timeout = parse_float_option("busy_timeout", merged.pop("busy_timeout", 5.0))
        _no_other_options(url, merged)
        return SQLiteStore(url, path, clock=clock, purge_interval=purge_interval, busy_timeout=busy_timeout)
    from jwtkit.store._leveldb import LevelDBStore

    _no_other_options(url, merged)
    return LevelDBStore(url, path, clock=clock, purge_interval=purge_interval)


def _no_other_options(url: str, options: dict[str, Any]) -> None:
    if options:
        raise StoreConfigError(f"unknown option(s) {', '.join(sorted(options))} for store {url!r}")


# Show the public path in reprs, tracebacks and docs, as httpx does.
for _name in __all__:
    _value = globals()[_name]
    if getattr(_value, "__module__", "").startswith("jwtkit.store._"):
        _value.__module__ = "jwtkit.store"
del _name, _value
