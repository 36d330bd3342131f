"""``sqlite:///path``: the embedded default. One file, WAL mode, shared safely by several worker processes.

How it keeps the event loop free and the hot path short:

- Writes run on one writer thread with its own connection, in ``BEGIN IMMEDIATE`` transactions (so
  read-modify-write steps such as ``rotate_refresh`` are atomic across processes too), with ``busy_timeout``
  for lock waits. Writes that queue up while one commits are committed together (group commit: one WAL sync
  for many writes), each inside its own SAVEPOINT so that one failing write does not undo the others. A
  write is acknowledged only after its transaction has committed.
- The per-request :meth:`check` reads inline, on a per-thread read-only connection, with one prepared SELECT
  that joins the session and the user's epoch (``LEFT JOIN epochs``). In WAL mode readers never wait for
  writers (they read the last committed snapshot), so this read does not block on the writer thread or on
  other processes.
- Other reads (listing, ``get_session``) run in the default thread pool on per-thread connections.

Durability: ``synchronous=FULL`` on the writer connection. In WAL mode NORMAL would already survive a killed
process (a committed transaction is in the OS page cache, which outlives the process), but not a power cut or
kernel crash: the last transactions could roll back, and a rolled-back revocation is a logged-out token that
works again. FULL syncs the WAL on every commit, so an acknowledged revocation survives both
(sqlite.org/wal.html "Performance Considerations"; sqlite.org/pragma.html#pragma_synchronous).

Schema 2 (epochs) migrates a schema-1 file (per-user time cut-offs) when it is opened, in one transaction:
``sessions`` gains ``epoch INTEGER NOT NULL DEFAULT 0``, every session the old rule made dead (``created``
before its user's cut-off, or any session of a user whose cut-off was unreadable) is marked revoked, and the
``cutoffs`` table is dropped. Stop every process running the old code before the first open by the new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterator
from typing import Any, TypeVar

from jwtkit.store._base import Clock, Rotation, Session, StoreConfigError, StoreUnavailable, ThrottleState
from jwtkit.store._common import BaseStore, corrupt_session, enter_wal, log
from jwtkit.store._policy import (
    EPOCH_MAX,
    UNREADABLE_EPOCH,
    active,
    as_read,
    epoch_unavailable,
    evicted,
    is_active,
    repaired_epoch,
    require_valid_epoch,
    require_valid_max_sessions,
    rotation_outcome,
    unreadable_epoch,
    valid_epoch,
)

__all__ = ["SCHEMA_VERSION", "SQLiteStore", "create_private_file"]

T = TypeVar("T")

SCHEMA_VERSION = 2  # 1: per-user time cut-offs (table cutoffs); 2: per-user epochs (migrated on open)

# The schema version lives in its own table, not in PRAGMA user_version: the file may be shared with other
# jwtkit tables (the service's user repository defaults to the same jwtkit.db).
_SCHEMA = """
CREATE TABLE IF NOT EXISTS store_schema (
    name    TEXT PRIMARY KEY,
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    sid         TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL,
    created     REAL NOT NULL,
    last_used   REAL NOT NULL,
    expires     REAL NOT NULL,
    family      TEXT NOT NULL,
    refresh_jti TEXT NOT NULL,
    user_agent  TEXT NOT NULL DEFAULT '',
    ip          TEXT NOT NULL DEFAULT '',
    revoked     INTEGER NOT NULL DEFAULT 0,
    epoch       INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions (user_id, created);
CREATE INDEX IF NOT EXISTS sessions_by_family ON sessions (family);
CREATE INDEX IF NOT EXISTS sessions_by_expiry ON sessions (expires);
CREATE TABLE IF NOT EXISTS epochs (
    user_id TEXT PRIMARY KEY,
    epoch   INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS consumed (
    jti     TEXT PRIMARY KEY,
    expires REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS consumed_by_expiry ON consumed (expires);
CREATE TABLE IF NOT EXISTS throttles (
    key          TEXT PRIMARY KEY,
    failures     INTEGER NOT NULL,
    last_failure REAL NOT NULL,
    expires      REAL NOT NULL
) WITHOUT ROWID;
"""

# SQL below is built only from these constant fragments; every value is a bound parameter (hence noqa S608).
_COLUMNS = ("s.sid, s.user_id, s.created, s.last_used, s.expires, s.family, s.refresh_jti, s.user_agent, "
            "s.ip, s.revoked, s.epoch")
# e.epoch is NULL when the user has no epoch record (epoch 0)
_WITH_EPOCH = (f"SELECT {_COLUMNS}, e.epoch "  # noqa: S608
               "FROM sessions AS s LEFT JOIN epochs AS e ON e.user_id = s.user_id")
_CHECK = ("SELECT s.user_id, s.revoked, s.expires, s.created, s.epoch, e.epoch "
          "FROM sessions AS s LEFT JOIN epochs AS e ON e.user_id = s.user_id WHERE s.sid = ?")

# Schema 1 -> 2, inside the opening transaction: what the old rule (created < cutoff; an unreadable cut-off
# was +inf) made dead becomes revoked, then the cut-offs go.
_MIGRATE_CUTOFFS = """
UPDATE sessions SET revoked = 1
WHERE revoked = 0 AND EXISTS (
    SELECT 1 FROM cutoffs AS c
    WHERE c.user_id = sessions.user_id
      AND (typeof(c.cutoff) NOT IN ('real', 'integer') OR sessions.created < c.cutoff))
"""


def _bind(text: str) -> str | bytes:
    """A string as SQLite can bind it. Ids and keys may hold lone surrogates (valid in JSON, not in UTF-8,
    so sqlite3 refuses them): those are bound as their bytes (a BLOB), which matches only itself."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")
    return text


class _Corrupt(Exception):
    """A row whose values do not have the types jwtkit wrote."""


@contextlib.contextmanager
def _mapped(path: str) -> Iterator[None]:
    """sqlite3 errors become StoreUnavailable (locked past busy_timeout, I/O error, not a database)."""
    try:
        yield
    except sqlite3.Error as exc:
        raise StoreUnavailable(f"sqlite store {path}: {exc}") from exc


def _user_epoch(value: object, user_id: object) -> float:
    """The joined ``epochs.epoch``: NULL is 0; anything but a valid int is unreadable (logged)."""
    if value is None:
        return 0
    if valid_epoch(value):
        return value
    return unreadable_epoch(str(user_id), f"epoch column holds {value!r}")


def _decode(row: tuple[Any, ...]) -> tuple[Session, object]:
    """A session row with every type checked (_Corrupt when one is wrong), and the joined raw user epoch."""
    sid, user_id, created, last_used, expires, family, refresh_jti, user_agent, ip, revoked, epoch = row[:11]
    user_epoch = row[11]
    for text in (sid, user_id, family, refresh_jti, user_agent, ip):
        if type(text) is not str:
            raise _Corrupt(f"text column holds {type(text).__name__}")
    for number in (created, last_used, expires):
        if type(number) is not float:
            raise _Corrupt(f"time column holds {type(number).__name__}")
    if revoked not in (0, 1) or type(revoked) is not int:
        raise _Corrupt(f"revoked column holds {revoked!r}")
    if not valid_epoch(epoch):
        raise _Corrupt(f"epoch column holds {epoch!r}")
    session = Session(sid=sid, user_id=user_id, created=created, last_used=last_used, expires=expires,
                      family=family, refresh_jti=refresh_jti, user_agent=user_agent, ip=ip,
                      revoked=bool(revoked), epoch=epoch)
    return session, user_epoch


_MAX_GROUP = 64  # writes committed in one transaction at most


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.cancelled():
        return  # the caller gave up waiting; the write itself has been committed or rolled back already
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


class _Writer:
    """The thread that owns the write connection and commits queued writes in groups."""

    _STOP = object()

    def __init__(self, conn: sqlite3.Connection, path: str) -> None:
        self._conn = conn
        self._path = path
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=f"jwtkit-sqlite-writer {path}", daemon=True)
        self._thread.start()

    async def submit(self, work: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((work, future, loop))
        return await future

    async def stop(self) -> None:
        self._queue.put(self._STOP)
        await asyncio.to_thread(self._thread.join)

    def _run(self) -> None:
        stopping = False
        try:
            while not stopping:
                item = self._queue.get()
                if item is self._STOP:
                    break
                group = [item]
                while len(group) < _MAX_GROUP:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is self._STOP:
                        stopping = True
                        break
                    group.append(item)
                self._commit(group)
        finally:
            self._conn.close()

    def _commit(self, group: list[Any]) -> None:
        conn = self._conn
        outcomes: list[tuple[bool, Any]] = []
        try:
            with _mapped(self._path):
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for work, _, _ in group:
                        conn.execute("SAVEPOINT write")
                        try:
                            with _mapped(self._path):
                                outcomes.append((True, work(conn)))
                        except Exception as exc:
                            conn.execute("ROLLBACK TO write")
                            outcomes.append((False, exc))
                        conn.execute("RELEASE write")
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
        except Exception as exc:  # BEGIN or COMMIT failed: nothing of this group was stored
            outcomes = []
            for _ in group:
                failure = StoreUnavailable(str(exc))
                failure.__cause__ = exc.__cause__ or exc
                outcomes.append((False, failure))
        for (_, future, loop), (ok, value) in zip(group, outcomes, strict=True):
            with contextlib.suppress(RuntimeError):  # the caller's loop is closed: nobody to tell
                loop.call_soon_threadsafe(_settle, future, ok, value)


_WARNED_MODES: set[str] = set()


def create_private_file(path: str) -> None:
    """Create the database file with mode 0600 unless it exists; an existing file that other local users can
    read is named in a warning (the operator chose its mode; jwtkit does not change it).

    It holds sessions (and, in the default set-up, password hashes), which no other local user may read.
    SQLite gives its -wal and -shm files the mode of the database file, and treats an empty file as a new
    database.
    """
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        try:
            mode = os.stat(path).st_mode & 0o777
        except OSError:
            return
        if mode & 0o077 and path not in _WARNED_MODES:
            _WARNED_MODES.add(path)  # once per file and process, not per connection
            log.warning("sqlite file %s has mode %04o, so other local users can read what it holds "
                        "(sessions, and password hashes when the accounts are in it): chmod 600 %s",
                        path, mode, path)
        return
    except OSError:
        return  # sqlite3.connect reports the real problem (a missing folder, no permission)
    os.close(fd)


class SQLiteStore(BaseStore):
    """The SQLite backend. Several processes may open the same file."""

    def __init__(self, url: str, path: str, *, clock: Clock, purge_interval: float,
                 busy_timeout: float = 5.0) -> None:
        super().__init__(url, clock=clock, purge_interval=purge_interval)
        if path == ":memory:" or path.startswith("file:"):
            raise StoreConfigError(f"sqlite store {url!r} needs a file path (use memory:// for no file)")
        self.path = path
        self._busy_timeout_ms = int(busy_timeout * 1000)
        self._writer: _Writer | None = None
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()

    # connections ------------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        create_private_file(self.path)
        # isolation_level=None: autocommit; transactions are explicit (BEGIN IMMEDIATE) where they matter.
        conn = sqlite3.connect(self.path, timeout=self._busy_timeout_ms / 1000, isolation_level=None,
                               check_same_thread=False, cached_statements=64)
        conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
        return conn

    def _reader(self) -> sqlite3.Connection:
        """This thread's read-only connection (created on first use; closed by close())."""
        try:
            conn: sqlite3.Connection = self._local.conn
            return conn
        except AttributeError:
            pass
        with _mapped(self.path):
            conn = self._connect()
            conn.execute("PRAGMA query_only = 1")
        self._local.conn = conn
        with self._readers_lock:
            self._readers.append(conn)
        return conn

    def _open_writer(self) -> sqlite3.Connection:
        directory = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(directory):
            raise StoreConfigError(f"sqlite store {self.url}: directory {directory} does not exist")
        with _mapped(self.path):
            conn = self._connect()
            try:
                mode = enter_wal(conn, self._busy_timeout_ms / 1000)
                if str(mode).lower() != "wal":
                    raise StoreUnavailable(f"sqlite store {self.path}: cannot switch to WAL (got {mode})")
                conn.execute("PRAGMA synchronous = FULL")  # see the module docstring
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(_SCHEMA.split(";")[0])
                row = conn.execute("SELECT version FROM store_schema WHERE name = 'jwtkit.store'").fetchone()
                version = 0 if row is None else row[0]
                if version > SCHEMA_VERSION:
                    conn.execute("ROLLBACK")
                    raise StoreConfigError(f"sqlite store {self.path} has schema version {version}; this "
                                           f"jwtkit knows {SCHEMA_VERSION}: upgrade jwtkit")
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                self._migrate(conn)
                conn.execute("INSERT OR REPLACE INTO store_schema (name, version) VALUES ('jwtkit.store', ?)",
                             (SCHEMA_VERSION,))
                conn.execute("COMMIT")
            except BaseException:
                conn.close()
                raise
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Schema 1 -> 2 (see the module docstring), inside the caller's transaction; a no-op on schema 2."""
        columns = {row[1] for row in conn.execute("PRAGMA table_info(sessions)")}
        if "epoch" not in columns:
            conn.execute("ALTER TABLE sessions ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0")
        legacy = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'cutoffs'")
        if legacy.fetchone() is not None:
            revoked = conn.execute(_MIGRATE_CUTOFFS).rowcount
            conn.execute("DROP TABLE cutoffs")
            log.info("sqlite store %s: migrated the per-user cut-offs to epochs (%d cut-off sessions marked "
                     "revoked)", self.path, revoked)

    async def _open(self) -> None:
        self._local = threading.local()
        self._writer = _Writer(await asyncio.to_thread(self._open_writer), self.path)

    async def _close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            await writer.stop()
        with self._readers_lock:
            readers, self._readers = self._readers, []
        for conn in readers:
            conn.close()
        self._local = threading.local()

    async def ping(self) -> None:
        self._require_open()
        await self._read(lambda conn: conn.execute("SELECT 1").fetchone())

    # running work -----------------------------------------------------------------------------------

    async def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` on the writer thread inside a committed ``BEGIN IMMEDIATE`` transaction."""
        self._require_open()
        writer = self._writer
        if writer is None:
            raise StoreUnavailable(f"sqlite store {self.url} is closed")
        return await writer.submit(work)

    async def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` on a pool thread's read connection."""
        self._require_open()

        def run() -> T:
            conn = self._reader()
            with _mapped(self.path):
                return work(conn)

        return await asyncio.to_thread(run)

    def _load(self, conn: sqlite3.Connection, sid: str) -> tuple[Session | None, float]:
        """The session (corrupt reads as revoked) and its user's current epoch."""
        row = conn.execute(f"{_WITH_EPOCH} WHERE s.sid = ?", (_bind(sid),)).fetchone()
        if row is None:
            return None, 0
        try:
            session, user_epoch = _decode(row)
        except _Corrupt as exc:
            return corrupt_session(sid, exc), 0
        return session, _user_epoch(user_epoch, session.user_id)

    # sessions ---------------------------------------------------------------------------------------

    async def create_session(self, session: Session, *, max_sessions: int | None = None) -> list[str]:
        require_valid_epoch(session)
        require_valid_max_sessions(max_sessions)
        values = (_bind(session.sid), _bind(session.user_id), float(session.created),
                  float(session.last_used), float(session.expires), _bind(session.family),
                  _bind(session.refresh_jti), _bind(session.user_agent), _bind(session.ip),
                  int(session.revoked), session.epoch)

        def work(conn: sqlite3.Connection) -> list[str]:
            conn.execute("INSERT OR REPLACE INTO sessions (sid, user_id, created, last_used, expires, "
                         "family, refresh_jti, user_agent, ip, revoked, epoch) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", values)
            if max_sessions is None:
                return []
            # Inside the writer's BEGIN IMMEDIATE: no other thread or process creates or revokes a session
            # between this read and the eviction, so concurrent logins never leave more than the cap alive.
            now = self._clock()
            others: list[tuple[float, str]] = []
            new_is_active = False
            for session_now, epoch in self._user_sessions(conn, session.user_id, now):
                if session_now.sid == session.sid:
                    new_is_active = is_active(session_now, None, epoch, now)
                elif is_active(session_now, session.user_id, epoch, now):
                    others.append((session_now.created, session_now.sid))
            gone = evicted(others, max_sessions, new_is_active)
            conn.executemany("UPDATE sessions SET revoked = 1 WHERE sid = ?", [(_bind(sid),) for sid in gone])
            return gone

        return await self._write(work)

    async def get_session(self, sid: str) -> Session | None:
        session, epoch = await self._read(lambda conn: self._load(conn, sid))
        return as_read(session, epoch, self._clock())

    async def check(self, sid: str, user_id: str) -> bool:
        # The hot path: inline, one prepared statement on this thread's connection (see the module docstring).
        self._require_open()
        try:
            conn: sqlite3.Connection = self._local.conn
        except AttributeError:
            conn = self._reader()
        try:
            row = conn.execute(_CHECK, (_bind(sid),)).fetchone()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"sqlite store {self.path}: {exc}") from exc
        if row is None:
            return False
        owner, revoked, expires, created, epoch, user_epoch = row
        if owner != user_id or revoked != 0:
            return False
        if type(expires) is not float or type(created) is not float or type(revoked) is not int \
                or not valid_epoch(epoch):
            corrupt_session(sid, "a column holds a value of the wrong type")
            return False
        return active(bool(revoked), expires, owner, epoch, user_id, _user_epoch(user_epoch, owner),
                      self._clock())

    async def touch(self, sid: str, when: float) -> None:
        await self._write(lambda conn: conn.execute(
            "UPDATE sessions SET last_used = ? WHERE sid = ? AND revoked = 0 AND last_used < ?",
            (float(when), _bind(sid), float(when))))

    def _revoke_where(self, conn: sqlite3.Connection, where: str, value: str) -> int:
        """Revoke the matching sessions; how many were active."""
        now = self._clock()
        active_before = 0
        for row in conn.execute(f"{_WITH_EPOCH} WHERE s.{where} = ? AND s.revoked = 0", (_bind(value),)):
            try:
                session, user_epoch = _decode(row)
            except _Corrupt:
                continue
            active_before += is_active(session, None, _user_epoch(user_epoch, session.user_id), now)
        conn.execute(f"UPDATE sessions SET revoked = 1 WHERE {where} = ? AND revoked = 0",  # noqa: S608
                     (_bind(value),))
        return active_before

    async def revoke(self, sid: str) -> bool:
        return bool(await self._write(lambda conn: self._revoke_where(conn, "sid", sid)))

    async def revoke_family(self, family: str) -> int:
        return await self._write(lambda conn: self._revoke_where(conn, "family", family))

    async def get_epoch(self, user_id: str) -> int:
        row = await self._read(lambda conn: conn.execute(
            "SELECT epoch FROM epochs WHERE user_id = ?", (_bind(user_id),)).fetchone())
        epoch = _user_epoch(None if row is None else row[0], user_id)
        if not isinstance(epoch, int):
            raise epoch_unavailable(user_id)
        return epoch

    async def revoke_all(self, user_id: str) -> int:
        def work(conn: sqlite3.Connection) -> int:
            # Inside BEGIN IMMEDIATE: this read-then-write is atomic across threads and processes.
            row = conn.execute("SELECT epoch FROM epochs WHERE user_id = ?", (_bind(user_id),)).fetchone()
            if row is None:
                new = 1
            elif valid_epoch(row[0]):
                new = row[0] + 1
            else:
                epochs = conn.execute("SELECT epoch FROM sessions WHERE user_id = ? "
                                      "AND typeof(epoch) = 'integer' AND epoch BETWEEN 0 AND ?",
                                      (_bind(user_id), EPOCH_MAX)).fetchall()
                new = repaired_epoch([e for (e,) in epochs])
                log.warning("sqlite store %s: repaired the unreadable epoch record of user %r (now %d)",
                            self.path, user_id, new)
            conn.execute("INSERT OR REPLACE INTO epochs (user_id, epoch) VALUES (?, ?)",
                         (_bind(user_id), new))
            return new

        return await self._write(work)

    @staticmethod
    def _user_sessions(conn: sqlite3.Connection, user_id: str, now: float) -> list[tuple[Session, float]]:
        """The user's sessions that are neither revoked nor expired, newest first, each with the user's
        current epoch; corrupt rows are logged and left out."""
        rows = conn.execute(f"{_WITH_EPOCH} WHERE s.user_id = ? AND s.revoked = 0 "
                            "AND s.expires > ? ORDER BY s.created DESC", (_bind(user_id), now)).fetchall()
        epoch = UNREADABLE_EPOCH
        if rows:  # one joined epochs row for all of them: read (and, if unreadable, log) it once
            epoch = _user_epoch(rows[0][-1], user_id)
        found = []
        for row in rows:
            try:
                session, _ = _decode(row)
            except _Corrupt as exc:
                corrupt_session(str(row[0]), exc)
                continue
            found.append((session, epoch))
        return found

    async def list_sessions(self, user_id: str) -> list[Session]:
        now = self._clock()

        def work(conn: sqlite3.Connection) -> list[Session]:
            return [session for session, epoch in self._user_sessions(conn, user_id, now)
                    if is_active(session, user_id, epoch, now)]

        return await self._read(work)

    async def rotate_refresh(self, sid: str, presented_jti: str, new_jti: str, *,
                             concurrent: Collection[str] = ()) -> Rotation:
        def work(conn: sqlite3.Connection) -> Rotation:
            now = self._clock()
            session, epoch = self._load(conn, sid)
            if session is None:
                return Rotation.INACTIVE
            outcome = rotation_outcome(is_active(session, None, epoch, now), session.refresh_jti,
                                       presented_jti, concurrent)
            if outcome is Rotation.ROTATED:
                conn.execute("UPDATE sessions SET refresh_jti = ?, last_used = ? WHERE sid = ?",
                             (_bind(new_jti), float(now), _bind(sid)))
            elif outcome is Rotation.REUSED:
                # RFC 9700 §4.14: an old refresh token came back, so one copy is stolen: end the whole family.
                conn.execute("UPDATE sessions SET revoked = 1 WHERE sid = ? OR family = ?",
                             (_bind(sid), _bind(session.family)))
            return outcome

        return await self._write(work)

    # single-use tokens ------------------------------------------------------------------------------

    async def consume(self, jti: str, expires: float) -> bool:
        if self._clock() >= expires:
            return False
        # The primary key makes this atomic across threads and processes: one INSERT wins.
        inserted = await self._write(lambda conn: conn.execute(
            "INSERT OR IGNORE INTO consumed (jti, expires) VALUES (?, ?)",
            (_bind(jti), float(expires))).rowcount)
        return inserted == 1

    # login throttling -------------------------------------------------------------------------------

    async def throttle_hit(self, key: str, window: float) -> ThrottleState:
        def work(conn: sqlite3.Connection) -> ThrottleState:
            now = self._clock()
            row = conn.execute("SELECT failures, expires FROM throttles WHERE key = ?",
                               (_bind(key),)).fetchone()
            failures = 1
            if row is not None and type(row[0]) is int and type(row[1]) is float and now < row[1]:
                failures = row[0] + 1
            conn.execute("INSERT OR REPLACE INTO throttles (key, failures, last_failure, expires) "
                         "VALUES (?, ?, ?, ?)", (_bind(key), failures, float(now), float(now + window)))
            return ThrottleState(failures, now)

        return await self._write(work)

    async def throttle_get(self, key: str) -> ThrottleState:
        row = await self._read(lambda conn: conn.execute(
            "SELECT failures, last_failure, expires FROM throttles WHERE key = ?", (_bind(key),)).fetchone())
        if row is None or type(row[0]) is not int or type(row[2]) is not float or self._clock() >= row[2]:
            return ThrottleState(0, 0.0)
        return ThrottleState(row[0], float(row[1]))

    async def throttle_clear(self, key: str) -> None:
        await self._write(lambda conn: conn.execute("DELETE FROM throttles WHERE key = ?", (_bind(key),)))

    # upkeep -----------------------------------------------------------------------------------------

    async def purge(self) -> int:
        def work(conn: sqlite3.Connection) -> int:
            now = float(self._clock())
            removed = 0
            for table in ("sessions", "consumed", "throttles"):  # never epochs (see base.py)
                # typeof: a corrupt expiry (text compares above every number) must not keep a row forever
                removed += conn.execute(
                    f"DELETE FROM {table} WHERE expires <= ? OR typeof(expires) != 'real'",  # noqa: S608
                    (now,)).rowcount
            return removed

        return await self._write(work)
