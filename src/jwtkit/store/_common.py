"""What every backend shares: the lifecycle (open/close, ``async with``), the purge schedule, and the
fail-closed handling of unreadable session records. The rules that decide whether a session is active live in
:mod:`jwtkit.store._policy`."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import math
import time
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, Self
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from jwtkit.store._base import Clock, Session, Store, StoreConfigError, StoreError, StoreUnavailable

if TYPE_CHECKING:
    import sqlite3  # at run time only where SQLite is used: the middleware imports this module

__all__ = [
    "BaseStore",
    "ManagedStore",
    "corrupt_session",
    "enter_wal",
    "log",
    "parse_float_option",
    "redact_url",
]

log = logging.getLogger("jwtkit.store")


class _State(enum.Enum):
    UNOPENED = "unopened"
    OPEN = "open"
    CLOSED = "closed"


def redact_url(url: str) -> str:
    """The URL with any password (in the user info or a ``password``/``ssl_password``/``sslpassword`` query
    parameter) replaced by ``***`` (for ``repr``, logs and ``Store.url``)."""
    parts = urlsplit(url)
    if parts.password is None and "password" not in parts.query:
        return url
    netloc, query = parts.netloc, parts.query
    if parts.password is not None:
        netloc = f"{parts.username or ''}:***@" + netloc.rpartition("@")[2]
    if "password" in query:
        query = urlencode([(k, "***" if k in ("password", "ssl_password", "sslpassword") else v)
                           for k, v in parse_qsl(query, keep_blank_values=True)])
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def parse_float_option(name: str, value: object, *, minimum: float = 0.0) -> float:
    """A non-negative finite number from a keyword option or a URL query string, else StoreConfigError."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise StoreConfigError(f"store option {name}={value!r} is not a number") from None
    if not math.isfinite(number) or number < minimum:
        raise StoreConfigError(f"store option {name}={value!r} must be a finite number >= {minimum}")
    return number


def corrupt_session(sid: str, reason: object) -> Session:
    """What an unreadable session record reads as: revoked (fail closed), after logging why. It never
    expires by itself (``expires=inf``) so that it keeps reading as revoked rather than unknown."""
    log.warning("unreadable session record %s… treated as revoked: %s", sid[:8], reason)
    return Session(sid=sid, user_id="", created=0.0, last_used=0.0, expires=math.inf, family="",
                   refresh_jti="", revoked=True)


class ManagedStore(Store, Protocol):
    """A :class:`Store` that is also an async context manager (opens on enter, closes on exit)."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None: ...


class BaseStore:
    """Lifecycle shared by the backends: ``open``/``close`` guarded by a state, ``async with``, and the
    background purge task. Subclasses implement ``_open``, ``_close`` and ``purge``."""

    url: str

    def __init__(self, url: str, *, clock: Clock, purge_interval: float) -> None:
        self.url = redact_url(url)
        self._clock = clock
        self._purge_interval = purge_interval
        self._state = _State.UNOPENED
        self._purger: asyncio.Task[None] | None = None
        self._lifecycle = asyncio.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r}, {self._state.value})"

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def open(self) -> None:
        async with self._lifecycle:
            if self._state is _State.OPEN:
                return
            await self._open()
            self._state = _State.OPEN
            if self._purge_interval > 0 and self._needs_purging():
                self._purger = asyncio.create_task(self._purge_forever(), name=f"jwtkit purge {self.url}")

    async def close(self) -> None:
        async with self._lifecycle:
            if self._state is not _State.OPEN:
                self._state = _State.CLOSED
                return
            self._state = _State.CLOSED
            if self._purger is not None:
                self._purger.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._purger
                self._purger = None
            await self._close()

    def _require_open(self) -> None:
        if self._state is not _State.OPEN:
            raise StoreUnavailable(f"store {self.url} is {self._state.value}: "
                                   "call `await store.open()` first")

    async def _open(self) -> None:
        raise NotImplementedError

    async def _close(self) -> None:
        raise NotImplementedError

    def _needs_purging(self) -> bool:
        return True

    async def purge(self) -> int:
        raise NotImplementedError

    async def _purge_forever(self) -> None:
        while True:
            await asyncio.sleep(self._purge_interval)
            try:
                removed = await self.purge()
            except StoreError as exc:
                # A store that is down now may be back at the next round; the requests themselves fail closed.
                log.warning("scheduled purge of %s failed: %s", self.url, exc)
            else:
                if removed:
                    log.debug("purged %d expired records from %s", removed, self.url)


def enter_wal(conn: sqlite3.Connection, timeout: float) -> str:
    """``PRAGMA journal_mode = WAL`` on ``conn``, retried for up to ``timeout`` seconds while another
    connection holds the file. SQLite answers "database is locked" at once for a journal-mode change (it
    runs no busy handler there), which processes opening a new file together hit (``jwtkit serve --workers
    2`` at first start). Returns the mode SQLite reports; raises the last error when the file stays locked.
    Blocking: call it from a worker thread."""
    import sqlite3

    deadline = time.monotonic() + timeout
    pause = 0.005
    while True:
        try:
            return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as exc:
            if ("locked" not in str(exc) and "busy" not in str(exc)) or time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.1)
