"""``postgresql://`` (and ``postgres://``): the store for many nodes on one PostgreSQL server, through asyncpg
(``pip install jwtkit[postgresql]``).

Tables (created on open, or by ``jwtkit db upgrade``, in one transaction under ``pg_advisory_xact_lock``, so
several nodes may start at once; the version row lives in ``jwtkit_store_schema``, name ``jwtkit.store``; a
database of version 1 is upgraded to 2 in place, by adding the two feed tables):

- ``jwtkit_sessions``: one row per session, until it expires (purge);
- ``jwtkit_epochs``: the per-user epoch, never deleted (see base.py);
- ``jwtkit_consumed``: consumed single-use ``jti`` values, until the tokens expire;
- ``jwtkit_throttles``: login-throttle counters, until their window ends;
- ``jwtkit_keyring``: the shared key ring (:class:`~jwtkit.store.KeyRingRecords`), one row ``name = 'ring'``
  with its ``version`` and the service's sealed document, never purged. Created with ``IF NOT EXISTS`` on
  every open (under the same lock), so a database of schema version 1 from before it gains it in place.
  The compare-and-set is one statement: ``INSERT ... ON CONFLICT DO NOTHING`` for the first version, else
  ``UPDATE ... WHERE version = $expected`` (READ COMMITTED re-checks the condition on the row a concurrent
  writer committed, so of two writers from one version exactly one updates);
- ``jwtkit_revocations`` (schema version 2): the revocation feed (:class:`~jwtkit.store.RevocationFeed`), one
  row per revocation, ``id`` from an identity column, trimmed by age in the purge step after
  ``feed_retention`` seconds;
- ``jwtkit_feed_marker`` (schema version 2): one row, the feed's random ``generation`` (created on open and by
  ``feed_load`` when missing) and ``trimmed``, the highest id the purge ever deleted.

The revocation feed: every statement that marks sessions revoked (``revoke``, ``revoke_family``, the
``REUSED`` branch of ``rotate_refresh``) is one CTE that updates the sessions, inserts one ``session`` row per
session it changed from not revoked to revoked, and calls ``pg_notify`` (delivered on commit), all in the
transaction of the revocation and in the round trip it already took; ``revoke_all`` does the same with one
``user`` row. The channel and the feed's lock key derive from the schema that holds the tables, so two
deployments in two schemas of one database neither wake nor block each other. Readers LISTEN on a connection
of their own (never a pooled one), query ``id > cursor`` and, when that is empty, wait for a notification.

Identity values are handed out in ``nextval`` order, not commit order, so a reader could see id 11 before a
slower transaction commits id 10, and skip 10 forever. The inserts therefore take a transaction-level
advisory lock on the feed *before* their ``nextval`` (and after every row lock of their statement: the lock
waits on ``count(*)`` of the updated rows, so a holder never waits for a row): ids are handed out and
committed in one order, and a reader that sees an id sees every lower one. Chosen over filtering readers on
``pg_snapshot_xmin(pg_current_snapshot())`` with an ``xid8`` column because that filter waits for *every*
transaction of the cluster with an xid, jwtkit's or not (an idle-in-transaction session of another
application, a long migration) before it lets a committed revocation through, so an empty answer could no
longer mean "nothing was recorded before this read"; the lock only orders revocations, which are rare, and
is held from the insert to the commit.

Ids, keys and every other string are stored as ``bytea`` (their UTF-8 bytes, lone surrogates included):
a PostgreSQL ``text`` cannot hold NUL, and ids come from tokens and forms. Times are ``double precision``
POSIX seconds from the injected clock; epochs are ``bigint``. A record that cannot be read (a time that is
NaN, an epoch outside 0..2**53-1, bytes that are not UTF-8) reads as revoked, as on the other backends.

Atomicity: the decisions are :mod:`jwtkit.store._policy`'s, made in Python. Each read-modify-write is one
statement (``consume``: ``INSERT ... ON CONFLICT DO NOTHING``; ``throttle_hit`` and ``revoke_all``: an upsert
that increments in place; ``revoke``/``revoke_family``: one ``UPDATE ... RETURNING``, the feed's ``INSERT`` in
the same statement) or one READ COMMITTED transaction that takes the row lock first (``rotate_refresh``:
``SELECT ... FOR UPDATE`` on the session, then the policy's outcome is written; the epoch repair of
``revoke_all``). Row locks, not SERIALIZABLE: they serialize exactly the contended row (ten tabs rotating one
session queue on it, and the second reads what the first committed, so it answers CONCURRENT or REUSED), and
never abort with a serialization failure that every caller would have to retry.

Faults: a bounded pool (``pool_min``, ``pool_max``: the names the accounts table's URL takes, so one
database URL serves both), ``connect_timeout`` per new connection,
``command_timeout`` per statement and ``pool_timeout`` to get a connection; a refused connection, a server
gone, a timeout, or a pool exhausted past ``pool_timeout`` raise :class:`StoreUnavailable`. Broken
connections are dropped from the pool, so the first command after the server is back reconnects. The
feed's LISTEN connection likewise: when it breaks or a read times out, that ``feed_read`` raises
:class:`StoreUnavailable` and the next one connects again and resumes from its cursor (the rows are in the
table, so nothing committed meanwhile is lost, and the cursor skips what was already read).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import secrets
from collections.abc import AsyncIterator, Collection, Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from jwtkit.store._base import (
    DEFAULT_COMMAND_TIMEOUT,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_FEED_RETENTION,
    DEFAULT_PURGE_INTERVAL,
    Clock,
    FeedCursor,
    FeedLost,
    Revocation,
    RevocationKind,
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
    evicted,
    is_active,
    repaired_epoch,
    require_valid_epoch,
    require_valid_max_sessions,
    rotation_outcome,
    unreadable_epoch,
    valid_epoch,
)

try:
    import asyncpg
except ImportError as exc:  # pragma: no cover - exercised by installs without the extra
    raise StoreConfigError("the postgresql store needs asyncpg: pip install 'jwtkit[postgresql]'") from exc

__all__ = ["DEFAULT_MAX_SIZE", "DEFAULT_MIN_SIZE", "FEED_BATCH", "SCHEMA_VERSION", "PostgresStore"]

SCHEMA_VERSION = 2  # 1: sessions, epochs, consumed ids, throttles (and the key ring, in place); 2: the feed
DEFAULT_MIN_SIZE = 1
DEFAULT_MAX_SIZE = 10
PURGE_BATCH = 1000
FEED_BATCH = 1000  # feed entries per feed_read answer (the reader asks again at once while there are more)
_POSITION_MAX = 2**63 - 1  # a bigint id
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

# schema version 2. subject is bytea, as every id of this store (a sid or user id may hold NUL, which text
# cannot); kind is 'session' or 'user' (RevocationKind).
_FEED_SCHEMA = [
    """CREATE TABLE jwtkit_revocations (
        id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        kind    text NOT NULL,
        subject bytea NOT NULL,
        at      double precision NOT NULL
    )""",
    "CREATE INDEX jwtkit_revocations_by_time ON jwtkit_revocations (at)",
    # a marker left beside a new (empty) table would let readers keep cursors into ids the new identity
    # hands out again: the new table gets a new generation
    "DELETE FROM jwtkit_feed_marker",
]
# on every open (a marker table dropped by hand comes back, with a new generation)
_MARKER_TABLE = """CREATE TABLE IF NOT EXISTS jwtkit_feed_marker (
        one        boolean PRIMARY KEY DEFAULT true CHECK (one),
        generation text NOT NULL,
        trimmed    bigint NOT NULL DEFAULT 0
    )"""

_COLUMNS = ("s.sid, s.user_id, s.created, s.last_used, s.expires, s.family, s.refresh_jti, s.user_agent, "
            "s.ip, s.revoked, s.epoch")
# e.epoch is NULL when the user has no epoch record (epoch 0)
_WITH_EPOCH = (f"SELECT {_COLUMNS}, e.epoch "  # noqa: S608 - constant fragments only
               "FROM jwtkit_sessions AS s LEFT JOIN jwtkit_epochs AS e ON e.user_id = s.user_id")
_CHECK = ("SELECT s.user_id, s.revoked, s.expires, s.created, s.epoch, e.epoch "
          "FROM jwtkit_sessions AS s LEFT JOIN jwtkit_epochs AS e ON e.user_id = s.user_id WHERE s.sid = $1")
_INSERT_SESSION = (
    "INSERT INTO jwtkit_sessions (sid, user_id, created, last_used, expires, family, refresh_jti, "
    "user_agent, ip, revoked, epoch) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) "
    "ON CONFLICT (sid) DO UPDATE SET user_id = EXCLUDED.user_id, created = EXCLUDED.created, "
    "last_used = EXCLUDED.last_used, expires = EXCLUDED.expires, family = EXCLUDED.family, "
    "refresh_jti = EXCLUDED.refresh_jti, user_agent = EXCLUDED.user_agent, ip = EXCLUDED.ip, "
    "revoked = EXCLUDED.revoked, epoch = EXCLUDED.epoch")
# The revocation feed's statements share their last parameters: $2 the feed's lock key, $3 the store's time,
# $4 the NOTIFY channel ($1 is the sid, family or user id).
#
# ordered: the feed's order lock (see the module docstring), taken only once the statement changed something;
# reading count(*) of the changed rows first means the UPDATE has taken every row lock it needs, so a
# transaction that holds the feed lock never waits for a row (no deadlock with a rotation holding a session
# row). fed: the entries; each row of the INSERT's join needs ordered's row, so nextval comes after the lock.
# The notification is an uncorrelated subquery of the main SELECT: evaluated once, when a row is returned.
_ORDERED = ("ordered AS (SELECT pg_advisory_xact_lock($2::bigint) "
            "FROM (SELECT count(*) AS n FROM {rows}) AS c WHERE c.n > 0)")
_NOTIFY = "(SELECT count(*) FROM (SELECT pg_notify($4::text, '') FROM fed LIMIT 1) AS n)"


def _revoking(where: str) -> str:
    """The one statement that revokes the sessions ``where`` selects: the rows it changed (with what
    ``_revoke_where`` counts) and one feed entry per changed session."""
    ordered = _ORDERED.format(rows="revoked")
    return ("WITH revoked AS (UPDATE jwtkit_sessions AS s SET revoked = true "  # noqa: S608 - constant fragments
            f"WHERE ({where}) AND NOT s.revoked "
            "RETURNING s.sid, s.user_id, s.expires, s.created, s.epoch, "
            "(SELECT e.epoch FROM jwtkit_epochs AS e WHERE e.user_id = s.user_id) AS user_epoch), "
            f"{ordered}, fed AS (INSERT INTO jwtkit_revocations (kind, subject, at) "
            "SELECT 'session', r.sid, $3::double precision FROM revoked AS r, ordered RETURNING id) "
            f"SELECT r.sid, r.user_id, r.expires, r.created, r.epoch, r.user_epoch, {_NOTIFY} "
            "FROM revoked AS r")


_REVOKE = {"sid": _revoking("s.sid = $1::bytea"), "family": _revoking("s.family = $1::bytea"),
           "sids": _revoking("s.sid = ANY($1::bytea[])")}  # sids: the sessions a login evicts
# RFC 9700 §4.14 reuse: the session and its whole family ($5)
_REVOKE_REUSED = _revoking("s.sid = $1::bytea OR s.family = $5::bytea")
# the one-statement bump: a readable epoch goes up by one in place (the row lock of the upsert orders
# concurrent callers); an unreadable one returns no row (and records nothing) and is repaired in a
# transaction. $5 = EPOCH_MAX
_BUMP = ("WITH bumped AS (INSERT INTO jwtkit_epochs AS e (user_id, epoch) VALUES ($1::bytea, 1) "  # noqa: S608
         "ON CONFLICT (user_id) DO UPDATE SET epoch = e.epoch + 1 "
         "WHERE e.epoch BETWEEN 0 AND $5::bigint RETURNING e.epoch), "
         f"{_ORDERED.format(rows='bumped')}, "
         "fed AS (INSERT INTO jwtkit_revocations (kind, subject, at) "
         "SELECT 'user', $1::bytea, $3::double precision FROM ordered RETURNING id) "
         f"SELECT b.epoch, {_NOTIFY} FROM bumped AS b")
# the repair branch of revoke_all: its feed entry, last in its transaction (the lock is held to the commit)
_RECORD_USER = ("WITH ordered AS (SELECT pg_advisory_xact_lock($2::bigint)), "  # noqa: S608
                "fed AS (INSERT INTO jwtkit_revocations (kind, subject, at) "
                "SELECT 'user', $1::bytea, $3::double precision FROM ordered RETURNING id) "
                f"SELECT {_NOTIFY}")
# the marker, when there is none (a new generation: readers of the old one see FeedLost(reset=True))
_MARK = "INSERT INTO jwtkit_feed_marker (generation) VALUES ($1) ON CONFLICT (one) DO NOTHING"
# one statement, so one snapshot: the marker and the rows agree (a purge commits its DELETE and its
# ``trimmed`` together)
_FEED_ALL = ("SELECT m.generation, m.trimmed, r.id, r.kind, r.subject, r.at FROM jwtkit_feed_marker AS m "
             "LEFT JOIN LATERAL (SELECT id, kind, subject, at FROM jwtkit_revocations) AS r ON true "
             "ORDER BY r.id")
_FEED_AFTER = ("SELECT m.generation, m.trimmed, (SELECT max(id) FROM jwtkit_revocations), "
               "r.id, r.kind, r.subject, r.at FROM jwtkit_feed_marker AS m "
               "LEFT JOIN LATERAL (SELECT id, kind, subject, at FROM jwtkit_revocations "
               "WHERE id > $1::bigint ORDER BY id LIMIT $2::bigint) AS r ON true ORDER BY r.id")
# a batch of the purge's trim, and the highest id it deleted remembered in the same statement
_TRIM = ("WITH gone AS (DELETE FROM jwtkit_revocations WHERE id IN (SELECT id FROM jwtkit_revocations "
         "WHERE at < $1::double precision ORDER BY id LIMIT {batch} FOR UPDATE SKIP LOCKED) RETURNING id), "
         "marked AS (UPDATE jwtkit_feed_marker SET trimmed = GREATEST(trimmed, (SELECT max(id) FROM gone)) "
         "WHERE EXISTS (SELECT FROM gone)) "
         "SELECT count(*) FROM gone")
_THROTTLE_HIT = ("INSERT INTO jwtkit_throttles AS t (key, failures, last_failure, expires) "
                 "VALUES ($1, 1, $2, $3) "
                 "ON CONFLICT (key) DO UPDATE SET failures = CASE WHEN t.expires > $2 AND t.failures >= 0 "
                 "THEN t.failures + 1 ELSE 1 END, last_failure = $2, expires = $3 RETURNING t.failures")

_FAULTS: tuple[type[BaseException], ...] = (asyncpg.PostgresError, asyncpg.InterfaceError,
                                            asyncpg.InternalClientError, OSError, TimeoutError)


def _feed_names(schema: str) -> tuple[str, int]:
    """The NOTIFY channel (at most 63 bytes, PostgreSQL's identifier limit) and the advisory lock key of the
    feed whose tables live in ``schema``."""
    digest = hashlib.sha256(f"jwtkit feed {schema}".encode()).digest()
    channel = f"jwtkit_feed:{schema}"
    if len(channel.encode()) > 63:
        channel = f"jwtkit_feed:{digest.hex()[:32]}"
    return channel, int.from_bytes(digest[:8], "big", signed=True)


def _position(cursor: FeedCursor) -> int:
    """The id a cursor of this store names; any other cursor is FeedLost(reset=True), as a foreign one."""
    position = cursor.position
    if not (position.isascii() and position.isdigit()) or int(position) > _POSITION_MAX:
        raise FeedLost(f"not a cursor of a postgresql store: {position!r}", reset=True)
    return int(position)


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


def _readable(rows: list[Any]) -> Iterator[tuple[Session, Any]]:
    """The sessions of ``_WITH_EPOCH`` rows, each with its row; a corrupt one is logged and left out (a
    listing shows no session it cannot read, and the cap counts none)."""
    for row in rows:
        try:
            session = _decode(row)
        except _Corrupt as exc:
            corrupt_session(repr(row[0]), exc)
            continue
        yield session, row


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
        self.feed_retention = parse_float_option("feed_retention",
                                                 merged.pop("feed_retention", DEFAULT_FEED_RETENTION))
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
        # the revocation feed: names derived on open from the schema that holds the tables (_feed_names)
        self._channel = ""
        self._feed_key = 0
        self._schema = ""
        self._listener: Any = None  # the LISTENing connection of feed_read, opened on its first call
        self._reader = asyncio.Lock()  # one query at a time on it
        self._woken = asyncio.Event()  # set (and replaced) by each notification or the listener's end

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
                schema = await self._migrate(connection)
        except _FAULTS as exc:
            pool.terminate()
            raise self._unavailable(exc) from exc
        except BaseException:
            pool.terminate()
            raise
        self._channel, self._feed_key = _feed_names(schema)
        self._schema = schema
        self._pool = pool

    async def _migrate(self, connection: Any) -> str:
        """Create or upgrade the tables once: nodes that start together queue on the advisory lock; all but
        the first find the version row and change nothing. Returns the schema that holds the tables."""
        async with connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
            await connection.execute("CREATE TABLE IF NOT EXISTS jwtkit_store_schema "
                                     "(name text PRIMARY KEY, version integer NOT NULL)")
            version = await connection.fetchval(
                "SELECT version FROM jwtkit_store_schema WHERE name = 'jwtkit.store'")
            if version not in (None, 1, SCHEMA_VERSION):
                raise StoreConfigError(f"postgresql store {self.url} has schema version {version}; "
                                       f"this jwtkit knows {SCHEMA_VERSION}: upgrade jwtkit")
            if version is None:
                for statement in _SCHEMA:
                    await connection.execute(statement)
            await connection.execute(_KEYRING_TABLE)  # added beside schema version 1, in place
            await connection.execute(_MARKER_TABLE)
            # version 1 -> 2 (and a feed table dropped by hand: recreated with a new generation). Looked up in
            # the schema CREATE TABLE uses: through the search_path it could find another deployment's.
            if await connection.fetchval(
                    "SELECT to_regclass(format('%I.jwtkit_revocations', current_schema())) IS NULL"):
                for statement in _FEED_SCHEMA:
                    await connection.execute(statement)
            await connection.execute(_MARK, secrets.token_hex(16))
            if version != SCHEMA_VERSION:
                await connection.execute("INSERT INTO jwtkit_store_schema (name, version) "
                                         "VALUES ('jwtkit.store', $1) ON CONFLICT (name) "
                                         "DO UPDATE SET version = EXCLUDED.version", SCHEMA_VERSION)
            schema: str = await connection.fetchval(
                "SELECT relnamespace::regnamespace::text FROM pg_class "
                "WHERE oid = 'jwtkit_revocations'::regclass")
        if version != SCHEMA_VERSION:
            log.info("postgresql store %s: %s schema version %d", self.url,
                     "created" if version is None else f"upgraded from {version} to", SCHEMA_VERSION)
        return schema

    async def _close(self) -> None:
        self._drop_listener()
        self._wake()  # a feed_read waiting now finds the store closed
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), self._command_timeout)
            except _FAULTS:
                pool.terminate()

    async def ping(self) -> None:
        await self._fetchrow("SELECT 1")

    # sessions ---------------------------------------------------------------------------------------

    def _user_lock(self, user_id: bytes) -> int:
        """The transaction-level advisory lock key of one user's session creations (64 bits of a hash of the
        tables' schema and the user id: two deployments in two schemas never queue on each other; two users
        whose keys collide only queue together)."""
        digest = hashlib.sha256(b"jwtkit sessions\x00" + self._schema.encode() + b"\x00" + user_id).digest()
        return int.from_bytes(digest[:8], "big", signed=True)

    async def create_session(self, session: Session, *, max_sessions: int | None = None) -> list[str]:
        require_valid_epoch(session)
        require_valid_max_sessions(max_sessions)
        user = _b(session.user_id)
        values = (_b(session.sid), user, float(session.created), float(session.last_used),
                  float(session.expires), _b(session.family), _b(session.refresh_jti), _b(session.user_agent),
                  _b(session.ip), bool(session.revoked), session.epoch)
        if max_sessions is None:
            await self._execute(_INSERT_SESSION, *values)
            return []
        async with self._connection() as connection, connection.transaction():
            # Logins of one user, on any node, queue on this lock (taken before the insert, held to the
            # commit), so each one counts what the previous one committed: two at the cap cannot both keep
            # the same oldest session and leave more than the cap alive. It is taken before any row lock and
            # the feed's lock after every one (in _revoking), as everywhere else: no deadlock.
            await connection.execute("SELECT pg_advisory_xact_lock($1::bigint)", self._user_lock(user))
            await connection.execute(_INSERT_SESSION, *values)
            now = self._clock()
            rows = await connection.fetch(f"{_WITH_EPOCH} WHERE s.user_id = $1 AND NOT s.revoked "
                                          "AND s.expires > $2", user, float(now))
            others: list[tuple[float, str]] = []
            new_is_active = False
            for stored, row in _readable(rows):
                epoch = _user_epoch(row[11], stored.user_id)
                if stored.sid == session.sid:
                    new_is_active = is_active(stored, None, epoch, now)
                elif is_active(stored, session.user_id, epoch, now):
                    others.append((stored.created, stored.sid))
            gone = evicted(others, max_sessions, new_is_active)
            if gone:  # as revoke() revokes, feed entries included; the last statement before the commit
                await connection.execute(_REVOKE["sids"], [_b(sid) for sid in gone], self._feed_key,
                                         float(now), self._channel)
        return gone

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
        """Revoke the matching sessions in one statement (with their feed entries); how many were active just
        before."""
        now = self._clock()
        rows = await self._fetch(_REVOKE[column], _b(value), self._feed_key, float(now), self._channel)
        count = 0
        for _sid, user_id, expires, created, epoch, user_epoch, _notified in rows:
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
            bumped = await connection.fetchval(_BUMP, key, self._feed_key, float(self._clock()),
                                               self._channel, EPOCH_MAX)
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
                await connection.execute(_RECORD_USER, key, self._feed_key, float(self._clock()),
                                         self._channel)
                return new

    async def list_sessions(self, user_id: str) -> list[Session]:
        now = self._clock()
        rows = await self._fetch(f"{_WITH_EPOCH} WHERE s.user_id = $1 AND NOT s.revoked "
                                 "AND s.expires > $2 ORDER BY s.created DESC", _b(user_id), float(now))
        epoch = UNREADABLE_EPOCH
        if rows:  # one joined epoch for all of them: read (and, if unreadable, log) it once
            epoch = _user_epoch(rows[0][11], user_id)
        return [session for session, _ in _readable(rows) if is_active(session, user_id, epoch, now)]

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
                # RFC 9700 §4.14: an old refresh token came back, so one copy is stolen: end the whole family
                # (with its feed entries; the last statement of the transaction, so the feed lock it takes is
                # held only until the commit).
                await connection.execute(_REVOKE_REUSED, key, self._feed_key, float(now), self._channel,
                                         _b(session.family))
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
        purging or writing are skipped, not waited for), then trim the revocation feed by age. Epochs are
        never deleted. Returns the records removed; trimmed feed entries are not counted (they are the feed's,
        not records of the Store contract)."""
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
        cutoff = now - self.feed_retention
        while True:
            trimmed = int((await self._fetchrow(_TRIM.format(batch=PURGE_BATCH), cutoff))[0])
            if trimmed < PURGE_BATCH:
                break
        return removed

    # the revocation feed (RevocationFeed) -----------------------------------------------------------

    def _revocation(self, number: int, kind: str, subject: bytes, at: float) -> Revocation:
        try:
            return Revocation(RevocationKind(kind), _s(subject), _time(at))
        except (ValueError, _Corrupt) as exc:  # UnicodeDecodeError is a ValueError
            # Fail closed: skipping it could let a mirror accept what it revokes; an error keeps the mirror
            # sending every check to the store until the entry is trimmed.
            log.warning("postgresql store %s: feed entry %d is unreadable: %s", self.url, number, exc)
            raise StoreUnavailable(f"postgresql store {self.url}: feed entry {number} is unreadable") from exc

    async def feed_load(self) -> tuple[list[Revocation], FeedCursor]:
        async with self._connection() as connection:
            for _ in range(3):  # the marker deleted between the two statements: make it again
                await connection.execute(_MARK, secrets.token_hex(16))
                rows = await connection.fetch(_FEED_ALL)
                if rows:
                    break
            else:
                raise StoreUnavailable(f"postgresql store {self.url}: the feed's marker keeps vanishing")
        generation, trimmed = rows[0][0], int(rows[0][1])
        entries = [self._revocation(*row[2:]) for row in rows if row[2] is not None]
        last = max(trimmed, rows[-1][2] or 0)
        return entries, FeedCursor(str(generation), str(last))

    async def feed_read(self, cursor: FeedCursor, *, wait: float) -> tuple[list[Revocation], FeedCursor]:
        self._require_open()
        after = _position(cursor)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, float(wait))
        connect = True
        while True:
            woken = self._woken  # before the query: a commit after its snapshot sets this one
            entries, last = await self._read_after(cursor.generation, after, connect=connect)
            connect = False
            remaining = deadline - loop.time()
            if entries or remaining <= 0:
                return entries, FeedCursor(cursor.generation, str(last))
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that arrives as its
            # timeout expires, and the mirror's task would then never stop
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await woken.wait()

    async def _read_after(self, generation: str, after: int, *,
                          connect: bool) -> tuple[list[Revocation], int]:
        """One catch-up query on the LISTENing connection: the entries after ``after`` (at most FEED_BATCH)
        and the id of the last one, with the generation and trimming checked in the same snapshot. Only the
        first query of a ``feed_read`` (``connect``) may open the connection: one that broke while the read
        waited is StoreUnavailable, so the reader learns that the feed was down."""
        async with self._reader:
            self._require_open()
            connection = self._listener
            if connect:
                connection = await self._listening()
            elif connection is None or connection.is_closed():
                self._drop_listener()
                raise StoreUnavailable(f"postgresql store {self.url}: the feed's connection was lost")
            try:
                rows = await connection.fetch(_FEED_AFTER, after, FEED_BATCH, timeout=self._command_timeout)
            except asyncpg.UndefinedTableError as exc:
                raise FeedLost(f"postgresql store {self.url}: the feed's tables are gone",
                               reset=True) from exc
            except asyncio.CancelledError:
                self._drop_listener()  # a statement may be half-answered: never reuse the connection
                raise
            except _FAULTS as exc:
                self._drop_listener()
                raise self._unavailable(exc) from exc
        if not rows:
            raise FeedLost(f"postgresql store {self.url}: the feed's generation marker is gone", reset=True)
        if rows[0][0] != generation:
            raise FeedLost(f"postgresql store {self.url}: the feed has another generation (the data was "
                           "replaced)", reset=True)
        trimmed = int(rows[0][1])
        if after > max(rows[0][2] or 0, trimmed):
            raise FeedLost(f"postgresql store {self.url}: the feed is behind the cursor", reset=True)
        if after < trimmed:
            raise FeedLost(f"postgresql store {self.url}: the feed was trimmed past the cursor", reset=False)
        entries = [self._revocation(*row[3:]) for row in rows if row[3] is not None]
        return entries, (rows[-1][3] if entries else after)

    async def _listening(self) -> Any:
        """The feed's own connection, LISTENing on the channel: opened (again) when there is none."""
        connection = self._listener
        if connection is not None and not connection.is_closed():
            return connection
        self._drop_listener()
        try:
            connection = await asyncio.wait_for(asyncpg.connect(
                self._dsn, timeout=self._connect_timeout, command_timeout=self._command_timeout,
                server_settings={"application_name": "jwtkit feed"}),
                self._connect_timeout + self._command_timeout)
        except _FAULTS as exc:
            raise self._unavailable(exc) from exc
        try:
            connection.add_termination_listener(self._on_terminated)
            await connection.add_listener(self._channel, self._on_notification)
        except BaseException as exc:
            connection.terminate()
            if isinstance(exc, _FAULTS):
                raise self._unavailable(exc) from exc
            raise
        self._listener = connection
        return connection

    def _drop_listener(self) -> None:
        connection, self._listener = self._listener, None
        if connection is not None:
            connection.terminate()

    def _wake(self) -> None:
        woken, self._woken = self._woken, asyncio.Event()
        woken.set()

    def _on_notification(self, connection: Any, pid: int, channel: str, payload: str) -> None:
        self._wake()

    def _on_terminated(self, connection: Any) -> None:
        self._wake()  # the waiting read queries at once, and finds the connection gone
