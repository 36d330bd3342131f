"""``postgresql://`` (and ``postgres://``): the store for many nodes on one PostgreSQL server, through asyncpg
(``pip install jwtkit[postgresql]``).

Tables (created on open in one transaction under ``pg_advisory_xact_lock``, so several nodes may start at
once; the version row lives in ``jwtkit_store_schema``, name ``jwtkit.store``):

- ``jwtkit_sessions``: one row per session, until it expires (purge);
- ``jwtkit_epochs``: the per-user epoch, never deleted (see base.py);
- ``jwtkit_consumed``: consumed single-use ``jti`` values, until the tokens expire;
- ``jwtkit_throttles``: login-throttle counters, until their window ends;
- ``jwtkit_keyring``: the shared key ring (:class:`~jwtkit.store.KeyRingRecords`), one row ``name = 'ring'``
  with its ``version`` and the service's sealed document, never purged. Created with ``IF NOT EXISTS`` on
  every open (under the same lock), so a database of schema version 1 from before it gains it in place.
  The compare-and-set is one statement: ``INSERT ... ON CONFLICT DO NOTHING`` for the first version, else
  ``UPDATE ... WHERE version = $expected`` (READ COMMITTED re-checks the condition on the row a concurrent
  writer committed, so of two writers from one version exactly one updates).

Ids, keys and every other string are stored as ``bytea`` (their UTF-8 bytes, lone surrogates included):
a PostgreSQL ``text`` cannot hold NUL, and ids come from tokens and forms. Times are ``double precision``
POSIX seconds from the injected clock; epochs are ``bigint``. A record that cannot be read (a time that is
NaN, an epoch outside 0..2**53-1, bytes that are not UTF-8) reads as revoked, as on the other backends.

Atomicity: the decisions are :mod:`jwtkit.store._policy`'s, made in Python. Each read-modify-write is one
statement (``consume``: ``INSERT ... ON CONFLICT DO NOTHING``; ``throttle_hit`` and ``revoke_all``: an upsert
that increments in place; ``revoke``/``revoke_family``: one ``UPDATE ... RETURNING``) or one READ COMMITTED
transaction that takes the row lock first (``rotate_refresh``: ``SELECT ... FOR UPDATE`` on the session, then
the policy's outcome is written; the epoch repair of ``revoke_all``). Row locks, not SERIALIZABLE: they
serialize exactly the contended row (ten tabs rotating one session queue on it, and the second reads what
the first committed, so it answers CONCURRENT or REUSED), and never abort with a serialization failure that
every caller would have to retry.

Faults: a bounded pool (``pool_min``, ``pool_max``: the names the accounts table's URL takes, so one
database URL serves both), ``connect_timeout`` per new connection,
``command_timeout`` per statement and ``pool_timeout`` to get a connection; a refused connection, a server
gone, a timeout, or a pool exhausted past ``pool_timeout`` raise :class:`StoreUnavailable`. Broken
connections are dropped from the pool, so the first command after the server is back reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Collection
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from jwtkit.store._base import (
    DEFAULT_COMMAND_TIMEOUT,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_PURGE_INTERVAL,
    Clock,
    Rotation,
    Session,
    StoreConfigError,
    StoreUnavailable,
    ThrottleState,
)
from jwtkit.store._common import BaseStore, corrupt_session, log, parse_float_option
from jwtkit.store._policy import (
    EPOCH_MAX,
    UNREADABLE_EPOCH,
    active,
    as_read,
    epoch_unavailable,
    is_active,
    repaired_epoch,
    require_valid_epoch,
    rotation_outcome,
    unreadable_epoch,
    valid_epoch,
)

try:
    import asyncpg
except ImportError as exc:  # pragma: no cover - exercised by installs without the extra
    raise StoreConfigError("the postgresql store needs asyncpg: pip install 'jwtkit[postgresql]'") from exc

__all__ = ["DEFAULT_MAX_SIZE", "DEFAULT_MIN_SIZE", "SCHEMA_VERSION", "PostgresStore"]

SCHEMA_VERSION = 1
DEFAULT_MIN_SIZE = 1
DEFAULT_MAX_SIZE = 10
PURGE_BATCH = 1000
# pg_advisory_xact_lock key for schema changes: the bytes "jwtkitST" as a signed 64-bit integer
_SCHEMA_LOCK = int.from_bytes(b"jwtkitST", "big", signed=True)
# libpq connection parameters a URL may carry, passed to asyncpg (which would send any other one to the
# server as a setting)
_PASSTHROUGH = frozenset({"host", "port", "user", "password", "dbname", "database", "passfile", "sslmode",
                          "sslcert", "sslkey", "sslrootcert", "sslcrl", "sslpassword",
                          "ssl_min_protocol_version", "ssl_max_protocol_version", "target_session_attrs"})

_SCHEMA = [
    """CREATE TABLE jwtkit_sessions (
        sid         bytea PRIMARY KEY,
        user_id     bytea NOT NULL,
        created     double precision NOT NULL,
        last_used   double precision NOT NULL,
        expires     double precision NOT NULL,
        family      bytea NOT NULL,
        refresh_jti bytea NOT NULL,
        user_agent  bytea NOT NULL,
        ip          bytea NOT NULL,
        revoked     boolean NOT NULL DEFAULT false,
        epoch       bigint NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX jwtkit_sessions_by_user ON jwtkit_sessions (user_id, created)",
    "CREATE INDEX jwtkit_sessions_by_family ON jwtkit_sessions (family)",
    "CREATE INDEX jwtkit_sessions_by_expiry ON jwtkit_sessions (expires)",
    "CREATE TABLE jwtkit_epochs (user_id bytea PRIMARY KEY, epoch bigint NOT NULL)",
    "CREATE TABLE jwtkit_consumed (jti bytea PRIMARY KEY, expires double precision NOT NULL)",
    "CREATE INDEX jwtkit_consumed_by_expiry ON jwtkit_consumed (expires)",
    """CREATE TABLE jwtkit_throttles (
        key          bytea PRIMARY KEY,
        failures     bigint NOT NULL,
        last_failure double precision NOT NULL,
        expires      double precision NOT NULL
    )""",
    "CREATE INDEX jwtkit_throttles_by_expiry ON jwtkit_throttles (expires)",
]

_KEYRING_TABLE = ("CREATE TABLE IF NOT EXISTS jwtkit_keyring "
                  "(name text PRIMARY KEY, version bigint NOT NULL, doc text NOT NULL)")

_COLUMNS = ("s.sid, s.user_id, s.created, s.last_used, s.expires, s.family, s.refresh_jti, s.user_agent, "
            "s.ip, s.revoked, s.epoch")
# e.epoch is NULL when the user has no epoch record (epoch 0)
_WITH_EPOCH = (f"SELECT {_COLUMNS}, e.epoch "  # noqa: S608 - constant fragments only
               "FROM jwtkit_sessions AS s LEFT JOIN jwtkit_epochs AS e ON e.user_id = s.user_id")
_CHECK = ("SELECT s.user_id, s.revoked, s.expires, s.created, s.epoch, e.epoch "
          "FROM jwtkit_sessions AS s LEFT JOIN jwtkit_epochs AS e ON e.user_id = s.user_id WHERE s.sid = $1")
_REVOKE = ("UPDATE jwtkit_sessions AS s SET revoked = true WHERE s.{column} = $1 AND NOT s.revoked "
           "RETURNING s.sid, s.user_id, s.expires, s.created, s.epoch, "
           "(SELECT e.epoch FROM jwtkit_epochs AS e WHERE e.user_id = s.user_id)")
# the one-statement bump: a readable epoch goes up by one in place (the row lock of the upsert orders
# concurrent callers); an unreadable one returns no row and is repaired in a transaction
_BUMP = ("INSERT INTO jwtkit_epochs AS e (user_id, epoch) VALUES ($1, 1) "
         "ON CONFLICT (user_id) DO UPDATE SET epoch = e.epoch + 1 "
         "WHERE e.epoch BETWEEN 0 AND $2 RETURNING e.epoch")  # $2 = EPOCH_MAX
_THROTTLE_HIT = ("INSERT INTO jwtkit_throttles AS t (key, failures, last_failure, expires) "
                 "VALUES ($1, 1, $2, $3) "
                 "ON CONFLICT (key) DO UPDATE SET failures = CASE WHEN t.expires > $2 AND t.failures >= 0 "
                 "THEN t.failures + 1 ELSE 1 END, last_failure = $2, expires = $3 RETURNING t.failures")

_FAULTS: tuple[type[BaseException], ...] = (asyncpg.PostgresError, asyncpg.InterfaceError,
                                            asyncpg.InternalClientError, OSError, TimeoutError)


def _b(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _s(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogatepass")


class _Corrupt(Exception):
    """A row whose values jwtkit cannot have written."""


def _time(value: float) -> float:
    if math.isnan(value):
        raise _Corrupt("a time column holds NaN")
    return value


def _user_epoch(value: int | None, user_id: str) -> float:
    """The joined ``jwtkit_epochs.epoch``: NULL is 0; a value outside 0..EPOCH_MAX is unreadable (logged)."""
    if value is None:
        return 0
    if valid_epoch(value):
        return value
    return unreadable_epoch(user_id, f"epoch column holds {value!r}")


def _decode(row: Any) -> Session:
    try:
        sid, user_id, created, last_used, expires, family, refresh_jti, user_agent, ip, revoked, epoch = \
            tuple(row)[:11]
        if not valid_epoch(epoch):
            raise _Corrupt(f"epoch column holds {epoch!r}")
        return Session(sid=_s(sid), user_id=_s(user_id), created=_time(created), last_used=_time(last_used),
                       expires=_time(expires), family=_s(family), refresh_jti=_s(refresh_jti),
                       user_agent=_s(user_agent), ip=_s(ip), revoked=bool(revoked), epoch=epoch)
    except UnicodeDecodeError as exc:
        raise _Corrupt(f"a text column is not UTF-8: {exc}") from None


async def _no_reset(connection: Any) -> None:
    """The pool's reset between borrowers: nothing (no session state is ever changed: no SET, LISTEN, cursor
    or session-level advisory lock), which saves the default reset's round trip on every check."""


class PostgresStore(BaseStore):
    """The PostgreSQL backend. Many processes and hosts may share one database."""

    def __init__(self, url: str, *, clock: Clock, **options: Any) -> None:
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        merged: dict[str, Any] = {**query, **options}
        purge_interval = parse_float_option("purge_interval",
                                            merged.pop("purge_interval", DEFAULT_PURGE_INTERVAL))
        super().__init__(url, clock=clock, purge_interval=purge_interval)
        self._connect_timeout = parse_float_option("connect_timeout",
                                                   merged.pop("connect_timeout", DEFAULT_CONNECT_TIMEOUT),
                                                   minimum=0.001)
        self._command_timeout = parse_float_option("command_timeout",
                                                   merged.pop("command_timeout", DEFAULT_COMMAND_TIMEOUT),
                                                   minimum=0.001)
        self._pool_timeout = parse_float_option("pool_timeout",
                                                merged.pop("pool_timeout", DEFAULT_CONNECT_TIMEOUT),
                                                minimum=0.001)
        self._pool_min = self._size_option("pool_min", merged.pop("pool_min", DEFAULT_MIN_SIZE), 0)
        self._pool_max = self._size_option("pool_max", merged.pop("pool_max", DEFAULT_MAX_SIZE), 1)
        if self._pool_min > self._pool_max:
            raise StoreConfigError(f"postgresql store {self.url}: pool_min={self._pool_min} is above "
                                   f"pool_max={self._pool_max}")
        passthrough = {k: v for k, v in merged.items()
                       if k in _PASSTHROUGH and k in query and k not in options}
        unknown = set(merged) - set(passthrough)
        if unknown:
            raise StoreConfigError(f"unknown option(s) {', '.join(sorted(unknown))} for store {self.url!r}")
        # libpq-style parameters in the URL (sslmode, ...) go to asyncpg, which validates them on connect.
        self._dsn = urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(passthrough), ""))
        self._pool: asyncpg.Pool | None = None

    def _size_option(self, name: str, value: object, minimum: int) -> int:
        try:
            number = int(value)  # type: ignore[call-overload]
        except (TypeError, ValueError):
            raise StoreConfigError(f"postgresql store option {name}={value!r} is not an integer") from None
        if number < minimum or str(number) != str(value).strip():
            raise StoreConfigError(f"postgresql store option {name}={value!r} must be an integer "
                                   f">= {minimum}")
        return int(number)

    # plumbing ---------------------------------------------------------------------------------------

    def _unavailable(self, exc: BaseException) -> StoreUnavailable:
        detail = str(exc) or ("timed out" if isinstance(exc, TimeoutError) else "no detail")
        return StoreUnavailable(f"postgresql store {self.url}: {type(exc).__name__}: {detail}")

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        """A pooled connection, every fault (refused, gone, timed out, pool exhausted past pool_timeout) as
        StoreUnavailable."""
        self._require_open()
        pool = self._pool
        if pool is None:
            raise StoreUnavailable(f"postgresql store {self.url} is closed")
        try:
            async with pool.acquire(timeout=self._pool_timeout) as connection:
                try:
                    yield connection
                except TimeoutError:
                    # A command that timed out may still run on a server that does not answer: drop the
                    # connection at once rather than wait in the pool for its cancellation (a frozen server
                    # would hold that wait too); the pool opens a fresh one when needed.
                    connection.terminate()
                    raise
        except _FAULTS as exc:
            raise self._unavailable(exc) from exc

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        async with self._connection() as connection:
            rows: list[Any] = await connection.fetch(sql, *args)
            return rows

    async def _fetchrow(self, sql: str, *args: Any) -> Any:
        async with self._connection() as connection:
            return await connection.fetchrow(sql, *args)

    async def _execute(self, sql: str, *args: Any) -> str:
        async with self._connection() as connection:
            status: str = await connection.execute(sql, *args)
            return status

    # lifecycle --------------------------------------------------------------------------------------

    async def _open(self) -> None:
        try:
            pool = await asyncio.wait_for(asyncpg.create_pool(
                self._dsn, min_size=self._pool_min, max_size=self._pool_max, timeout=self._connect_timeout,
                command_timeout=self._command_timeout, reset=_no_reset,
                server_settings={"application_name": "jwtkit"}),
                self._connect_timeout + self._command_timeout)
        except _FAULTS as exc:
            raise self._unavailable(exc) from exc
        except ValueError as exc:  # a malformed DSN option
            raise StoreConfigError(f"postgresql store {self.url}: {exc}") from exc
        try:
            async with pool.acquire(timeout=self._pool_timeout) as connection:
                await self._migrate(connection)
        except _FAULTS as exc:
            pool.terminate()
            raise self._unavailable(exc) from exc
        except BaseException:
            pool.terminate()
            raise
        self._pool = pool

    async def _migrate(self, connection: Any) -> None:
        """Create the tables once: nodes that start together queue on the advisory lock; all but the first
        find the version row and change nothing."""
        async with connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
            await connection.execute("CREATE TABLE IF NOT EXISTS jwtkit_store_schema "
                                     "(name text PRIMARY KEY, version integer NOT NULL)")
            version = await connection.fetchval(
                "SELECT version FROM jwtkit_store_schema WHERE name = 'jwtkit.store'")
            if version == SCHEMA_VERSION:
                await connection.execute(_KEYRING_TABLE)  # added beside schema version 1, in place
                return
            if version is not None:
                raise StoreConfigError(f"postgresql store {self.url} has schema version {version}; "
                                       f"this jwtkit knows {SCHEMA_VERSION}: upgrade jwtkit")
            for statement in _SCHEMA:
                await connection.execute(statement)
            await connection.execute(_KEYRING_TABLE)
            await connection.execute("INSERT INTO jwtkit_store_schema (name, version) "
                                     "VALUES ('jwtkit.store', $1)", SCHEMA_VERSION)
        log.info("postgresql store %s: created schema version %d", self.url, SCHEMA_VERSION)

    async def _close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), self._command_timeout)
            except _FAULTS:
                pool.terminate()

    async def ping(self) -> None:
        await self._fetchrow("SELECT 1")

    # sessions ---------------------------------------------------------------------------------------

    async def create_session(self, session: Session) -> None:
        require_valid_epoch(session)
        await self._execute(
            "INSERT INTO jwtkit_sessions (sid, user_id, created, last_used, expires, family, refresh_jti, "
            "user_agent, ip, revoked, epoch) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) "
            "ON CONFLICT (sid) DO UPDATE SET user_id = EXCLUDED.user_id, created = EXCLUDED.created, "
            "last_used = EXCLUDED.last_used, expires = EXCLUDED.expires, family = EXCLUDED.family, "
            "refresh_jti = EXCLUDED.refresh_jti, user_agent = EXCLUDED.user_agent, ip = EXCLUDED.ip, "
            "revoked = EXCLUDED.revoked, epoch = EXCLUDED.epoch",
            _b(session.sid), _b(session.user_id), float(session.created), float(session.last_used),
            float(session.expires), _b(session.family), _b(session.refresh_jti), _b(session.user_agent),
            _b(session.ip), bool(session.revoked), session.epoch)

    def _loaded(self, sid: str, row: Any) -> tuple[Session | None, float]:
        """The session of a ``_WITH_EPOCH`` row (corrupt reads as revoked) and its user's current epoch."""
        if row is None:
            return None, 0
        try:
            session = _decode(row)
        except _Corrupt as exc:
            return corrupt_session(sid, exc), 0
        return session, _user_epoch(row[11], session.user_id)

    async def get_session(self, sid: str) -> Session | None:
        row = await self._fetchrow(f"{_WITH_EPOCH} WHERE s.sid = $1", _b(sid))
        session, epoch = self._loaded(sid, row)
        return as_read(session, epoch, self._clock())

    async def check(self, sid: str, user_id: str) -> bool:
        # The hot path: one prepared statement (asyncpg caches it per connection), one round trip.
        row = await self._fetchrow(_CHECK, _b(sid))
        if row is None:
            return False
        owner, revoked, expires, created, epoch, user_epoch = row
        if owner != _b(user_id) or revoked:
            return False
        if math.isnan(expires) or math.isnan(created) or not valid_epoch(epoch):
            corrupt_session(sid, "a column holds a value jwtkit never writes")
            return False
        current = _user_epoch(user_epoch, user_id)
        return active(False, expires, user_id, epoch, user_id, current, self._clock())

    async def touch(self, sid: str, when: float) -> None:
        await self._execute("UPDATE jwtkit_sessions SET last_used = $2 WHERE sid = $1 AND NOT revoked "
                            "AND last_used < $2", _b(sid), float(when))

    async def _revoke_where(self, column: str, value: str) -> int:
        """Revoke the matching sessions in one statement; how many were active just before."""
        rows = await self._fetch(_REVOKE.format(column=column), _b(value))
        now = self._clock()
        count = 0
        for _sid, user_id, expires, created, epoch, user_epoch in rows:
            try:
                owner = _s(user_id)
                if math.isnan(expires) or math.isnan(created) or not valid_epoch(epoch):
                    continue
            except UnicodeDecodeError:
                continue
            count += active(False, expires, owner, epoch, None, _user_epoch(user_epoch, owner), now)
        return count

    async def revoke(self, sid: str) -> bool:
        return bool(await self._revoke_where("sid", sid))

    async def revoke_family(self, family: str) -> int:
        return await self._revoke_where("family", family)

    async def get_epoch(self, user_id: str) -> int:
        row = await self._fetchrow("SELECT epoch FROM jwtkit_epochs WHERE user_id = $1", _b(user_id))
        epoch = _user_epoch(None if row is None else row[0], user_id)
        if not isinstance(epoch, int):
            raise epoch_unavailable(user_id)
        return epoch

    async def revoke_all(self, user_id: str) -> int:
        key = _b(user_id)
        async with self._connection() as connection:
            bumped = await connection.fetchval(_BUMP, key, EPOCH_MAX)
            if bumped is not None:
                return int(bumped)
            # unreadable record: repair it under its row lock, above every stored session's epoch
            async with connection.transaction():
                current = await connection.fetchval(
                    "SELECT epoch FROM jwtkit_epochs WHERE user_id = $1 FOR UPDATE", key)
                if valid_epoch(current):  # repaired by another node meanwhile
                    new = current + 1
                else:
                    epochs = await connection.fetch("SELECT epoch FROM jwtkit_sessions WHERE user_id = $1 "
                                                    "AND epoch BETWEEN 0 AND $2", key, EPOCH_MAX)
                    new = repaired_epoch([e for (e,) in epochs])
                    log.warning("postgresql store %s: repaired the unreadable epoch record of user %r "
                                "(now %d)", self.url, user_id, new)
                await connection.execute("UPDATE jwtkit_epochs SET epoch = $2 WHERE user_id = $1", key, new)
                return new

    async def list_sessions(self, user_id: str) -> list[Session]:
        now = self._clock()
        rows = await self._fetch(f"{_WITH_EPOCH} WHERE s.user_id = $1 AND NOT s.revoked "
                                 "AND s.expires > $2 ORDER BY s.created DESC", _b(user_id), float(now))
        epoch = UNREADABLE_EPOCH
        if rows:  # one joined epoch for all of them: read (and, if unreadable, log) it once
            epoch = _user_epoch(rows[0][11], user_id)
        found = []
        for row in rows:
            try:
                session = _decode(row)
            except _Corrupt as exc:
                corrupt_session(repr(row[0]), exc)
                continue
            if is_active(session, user_id, epoch, now):
                found.append(session)
        return found

    async def rotate_refresh(self, sid: str, presented_jti: str, new_jti: str, *,
                             concurrent: Collection[str] = ()) -> Rotation:
        key = _b(sid)
        async with self._connection() as connection, connection.transaction():
            # The row lock orders concurrent rotations of this session, across nodes: a waiter reads the row
            # as the previous holder committed it (READ COMMITTED re-reads a locked row after the wait).
            row = await connection.fetchrow(f"{_WITH_EPOCH} WHERE s.sid = $1 FOR UPDATE OF s", key)
            session, epoch = self._loaded(sid, row)
            if session is None:
                return Rotation.INACTIVE
            now = self._clock()
            outcome = rotation_outcome(is_active(session, None, epoch, now), session.refresh_jti,
                                       presented_jti, concurrent)
            if outcome is Rotation.ROTATED:
                await connection.execute("UPDATE jwtkit_sessions SET refresh_jti = $2, last_used = $3 "
                                         "WHERE sid = $1", key, _b(new_jti), float(now))
            elif outcome is Rotation.REUSED:
                # RFC 9700 §4.14: an old refresh token came back, so one copy is stolen: end the whole family.
                await connection.execute("UPDATE jwtkit_sessions SET revoked = true "
                                         "WHERE sid = $1 OR family = $2", key, _b(session.family))
            return outcome

    # single-use tokens ------------------------------------------------------------------------------

    async def consume(self, jti: str, expires: float) -> bool:
        if self._clock() >= expires:
            return False
        # The primary key makes this atomic across nodes: exactly one INSERT inserts.
        status = await self._execute("INSERT INTO jwtkit_consumed (jti, expires) VALUES ($1, $2) "
                                     "ON CONFLICT (jti) DO NOTHING", _b(jti), float(expires))
        return status == "INSERT 0 1"

    # login throttling -------------------------------------------------------------------------------

    async def throttle_hit(self, key: str, window: float) -> ThrottleState:
        now = float(self._clock())
        failures = await self._fetchrow(_THROTTLE_HIT, _b(key), now, now + float(window))
        return ThrottleState(int(failures[0]), now)

    async def throttle_get(self, key: str) -> ThrottleState:
        row = await self._fetchrow("SELECT failures, last_failure, expires FROM jwtkit_throttles "
                                   "WHERE key = $1", _b(key))
        if row is None or row[0] < 0 or math.isnan(row[2]) or self._clock() >= row[2]:
            return ThrottleState(0, 0.0)
        return ThrottleState(int(row[0]), float(row[1]))

    async def throttle_clear(self, key: str) -> None:
        await self._execute("DELETE FROM jwtkit_throttles WHERE key = $1", _b(key))

    # the shared key ring (KeyRingRecords) ----------------------------------------------------------

    def _ring_version(self, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise StoreUnavailable(f"postgresql store {self.url}: the key ring's version is unreadable")
        return value

    async def ring_version(self) -> int:
        row = await self._fetchrow("SELECT version FROM jwtkit_keyring WHERE name = 'ring'")
        return 0 if row is None else self._ring_version(row[0])

    async def ring_read(self) -> tuple[int, str] | None:
        row = await self._fetchrow("SELECT version, doc FROM jwtkit_keyring WHERE name = 'ring'")
        return None if row is None else (self._ring_version(row[0]), str(row[1]))

    async def ring_swap(self, expected: int, document: str) -> bool:
        if expected == 0:
            status = await self._execute("INSERT INTO jwtkit_keyring (name, version, doc) "
                                         "VALUES ('ring', 1, $1) ON CONFLICT (name) DO NOTHING", document)
            return status == "INSERT 0 1"
        status = await self._execute("UPDATE jwtkit_keyring SET version = version + 1, doc = $2 "
                                     "WHERE name = 'ring' AND version = $1", int(expected), document)
        return status == "UPDATE 1"

    # upkeep -----------------------------------------------------------------------------------------

    async def purge(self) -> int:
        """Delete expired rows in batches of PURGE_BATCH, each its own short statement (rows another node is
        purging or writing are skipped, not waited for). Epochs are never deleted."""
        now = float(self._clock())
        removed = 0
        for table in ("jwtkit_sessions", "jwtkit_consumed", "jwtkit_throttles"):
            while True:
                status = await self._execute(
                    f"DELETE FROM {table} WHERE ctid IN (SELECT ctid FROM {table} "  # noqa: S608
                    f"WHERE expires <= $1 OR expires = 'NaN' LIMIT {PURGE_BATCH} FOR UPDATE SKIP LOCKED)",
                    now)
                count = int(status.rpartition(" ")[2])
                removed += count
                if count < PURGE_BATCH:
                    break
        return removed
