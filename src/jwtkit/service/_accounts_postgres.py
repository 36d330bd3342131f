"""Accounts in PostgreSQL (``JWTKIT_DB=postgresql://...``): the :class:`UserRepository` contract over one
table, through asyncpg (the driver the PostgreSQL store chose by measurement, see docs/stores.md).

- The table ``jwtkit_users`` and its version row in ``jwtkit_users_schema`` are created on open, in one
  transaction under ``pg_advisory_xact_lock``: nodes that start at once on an empty database agree on one
  schema, and a database of a newer jwtkit is refused rather than misread.
- A bounded pool (``min_size``/``max_size`` from the URL's ``pool_min``/``pool_max`` query options, default
  1 and 10), with ``connect_timeout``, ``command_timeout`` and ``pool_timeout`` (seconds, default 5; the
  store's URL options, so one URL serves ``JWTKIT_DB`` and ``JWTKIT_STORE``). Every database fault
  (refused, gone, timed out, pool exhausted past the timeout) is :class:`~jwtkit.store.StoreUnavailable`,
  as for the other backends: the web layer answers 503, never 500.
- Usernames are unique by a constraint, and so are their UTS #39 skeletons (a partial unique index), so two
  nodes registering one name, or two confusable names, at once get one account and one
  :class:`UsernameTaken`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from jwtkit.service._accounts import LOOK_ALIKE, User, _email_key, _look_alike_holders
from jwtkit.service._confusables import skeleton
from jwtkit.service._errors import ServiceConfigError, UsernameTaken, UserNotFound
from jwtkit.store import StoreUnavailable

__all__ = ["PostgresUserRepository", "is_postgres_url"]

_T = TypeVar("_T")

SCHEMA_VERSION = 2  # 2: the skeleton column and its unique index (see _accounts._migrate)
_LOCK = 0x6A77_746B_7573  # "jwtkus": this table's advisory lock, apart from the store's
_SCHEMA = """
CREATE TABLE IF NOT EXISTS jwtkit_users_schema (name text PRIMARY KEY, version integer NOT NULL);
CREATE TABLE IF NOT EXISTS jwtkit_users (
    id            text PRIMARY KEY,
    username      text NOT NULL UNIQUE,
    email         text,
    email_key     text,
    verified      boolean NOT NULL,
    disabled      boolean NOT NULL,
    created       double precision NOT NULL,
    password_hash text NOT NULL,
    roles         text[] NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS jwtkit_users_email_key ON jwtkit_users (email_key);
"""
_SKELETON_INDEX = ("CREATE UNIQUE INDEX IF NOT EXISTS jwtkit_users_skeleton ON jwtkit_users (skeleton) "
                   "WHERE skeleton IS NOT NULL")
_SELECT = "SELECT id, username, email, verified, disabled, created, password_hash, roles FROM jwtkit_users"
# the store's options too, so that one URL serves JWTKIT_DB and JWTKIT_STORE (purge_interval is the store's)
_OPTIONS = ("pool_min", "pool_max", "pool_timeout", "connect_timeout", "command_timeout", "purge_interval")


def is_postgres_url(value: str) -> bool:
    return value.startswith(("postgresql://", "postgres://"))


def _number(options: dict[str, str], name: str, default: float, *, low: float) -> float:
    raw = options.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = low - 1
    if not value >= low or value != value or value == float("inf"):
        raise ServiceConfigError(f"the users database option {name} must be a number of at least {low}, "
                                 f"not {raw!r}")
    return value


class PostgresUserRepository:
    """Users in PostgreSQL; see the module docstring.

    Args:
        url: ``postgresql://user@host:port/database`` with the optional query options ``pool_min``,
            ``pool_max``, ``connect_timeout`` and ``command_timeout``; other query parameters go to asyncpg.

    Raises:
        ServiceConfigError (``service_config``): a bad option, or asyncpg not installed.
    """

    def __init__(self, url: str) -> None:
        if not is_postgres_url(url):
            raise ServiceConfigError(f"not a postgresql:// URL: {url!r}")
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        ours = {name: query.pop(name) for name in _OPTIONS if name in query}
        self._min = int(_number(ours, "pool_min", 1, low=0))
        self._max = int(_number(ours, "pool_max", 10, low=1))
        if self._min > self._max:
            raise ServiceConfigError("the users database option pool_min must not exceed pool_max")
        self._connect_timeout = _number(ours, "connect_timeout", 5.0, low=0.001)
        self._command_timeout = _number(ours, "command_timeout", 5.0, low=0.001)
        self._pool_timeout = _number(ours, "pool_timeout", self._connect_timeout, low=0.001)
        self._dsn = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))
        self._shown = urlunsplit((parts.scheme, parts.hostname or "", parts.path, "", ""))
        self._pool: Any = None
        try:
            import asyncpg
        except ImportError as exc:
            raise ServiceConfigError("accounts in PostgreSQL need asyncpg: pip install 'jwtkit[postgresql]'"
                                     ) from exc
        self._asyncpg = asyncpg
        self._faults: tuple[type[BaseException], ...] = (
            asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError, TimeoutError)

    def __repr__(self) -> str:
        return f"PostgresUserRepository({self._shown!r})"

    async def open(self) -> None:
        if self._pool is not None:
            return
        try:
            pool = await asyncio.wait_for(self._asyncpg.create_pool(
                self._dsn, min_size=self._min, max_size=self._max, timeout=self._connect_timeout,
                command_timeout=self._command_timeout), self._connect_timeout + self._command_timeout)
        except self._faults as exc:
            raise StoreUnavailable(f"users database {self._shown}: {type(exc).__name__}: {exc}") from None
        try:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK)
                await conn.execute(_SCHEMA)
                version = await conn.fetchval(
                    "SELECT version FROM jwtkit_users_schema WHERE name = 'users'")
                if version is not None and version > SCHEMA_VERSION:
                    raise ServiceConfigError(f"the users table is at schema {version}, newer than this "
                                             f"jwtkit ({SCHEMA_VERSION}): upgrade jwtkit")
                if version is None or version < 2:
                    await _add_skeletons(conn)
                await conn.execute("INSERT INTO jwtkit_users_schema (name, version) VALUES ('users', $1) "
                                   "ON CONFLICT (name) DO UPDATE SET version = EXCLUDED.version",
                                   SCHEMA_VERSION)
        except BaseException as exc:
            await pool.close()
            if isinstance(exc, self._faults):
                raise StoreUnavailable(f"users database {self._shown}: {type(exc).__name__}: {exc}") from None
            raise
        self._pool = pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), self._command_timeout)
            except Exception:  # a pool that cannot close in time (the server is gone or frozen) is dropped
                pool.terminate()

    async def _run(self, work: Callable[[Any], Awaitable[_T]]) -> _T:
        pool = self._pool
        if pool is None:
            raise RuntimeError("PostgresUserRepository is not open: await repo.open() first")
        try:
            async with pool.acquire(timeout=self._pool_timeout) as conn:
                return await work(conn)
        except self._asyncpg.UniqueViolationError as exc:
            look_alike = getattr(exc, "constraint_name", None) == "jwtkit_users_skeleton"
            raise (UsernameTaken(LOOK_ALIKE) if look_alike else UsernameTaken()) from None
        except self._faults as exc:
            raise StoreUnavailable(f"users database {self._shown}: {type(exc).__name__}: {exc}") from None

    async def add(self, user: User) -> None:
        await self._write(user, lambda conn: conn.execute(
            "INSERT INTO jwtkit_users (id, username, email, verified, disabled, created, password_hash,"
            " roles, email_key, skeleton) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            user.id, user.username, user.email, user.verified, user.disabled, user.created,
            user.password_hash, list(user.roles), _email_key(user.email), skeleton(user.username)))

    async def _write(self, user: User, work: Callable[[Any], Awaitable[_T]]) -> _T:
        try:
            return await self._run(work)
        except UsernameTaken as exc:
            # PostgreSQL names one violated index, not always the username's when both are
            holder = await self.get_by_username(user.username) if exc.message == LOOK_ALIKE else None
            if holder is not None and holder.id != user.id:
                raise UsernameTaken() from None
            raise

    async def get(self, user_id: str) -> User | None:
        return await self._one(_SELECT + " WHERE id = $1", user_id)

    async def get_by_username(self, username: str) -> User | None:
        return await self._one(_SELECT + " WHERE username = $1", username)

    async def find_look_alike(self, username: str) -> User | None:
        return await self._one(_SELECT + " WHERE skeleton = $1", skeleton(username))

    async def find_by_email(self, email: str) -> list[User]:
        return await self._many(_SELECT + " WHERE email_key = $1 ORDER BY created, id", _email_key(email))

    async def list_users(self) -> list[User]:
        return await self._many(_SELECT + " ORDER BY created, id")

    async def update(self, user: User) -> None:
        status = await self._write(user, lambda conn: conn.execute(
            "UPDATE jwtkit_users SET username = $2, email = $3, email_key = $4, verified = $5, disabled = $6,"
            " created = $7, password_hash = $8, roles = $9,"
            " skeleton = CASE WHEN username = $2 THEN skeleton ELSE $10 END WHERE id = $1",
            user.id, user.username, user.email, _email_key(user.email), user.verified, user.disabled,
            user.created, user.password_hash, list(user.roles), skeleton(user.username)))
        if status == "UPDATE 0":
            raise UserNotFound()

    async def delete(self, user_id: str) -> None:
        status = await self._run(lambda conn: conn.execute("DELETE FROM jwtkit_users WHERE id = $1", user_id))
        if status == "DELETE 0":
            raise UserNotFound()

    async def _one(self, sql: str, *args: object) -> User | None:
        row = await self._run(lambda conn: conn.fetchrow(sql, *args))
        return None if row is None else _user(row)

    async def _many(self, sql: str, *args: object) -> list[User]:
        rows = await self._run(lambda conn: conn.fetch(sql, *args))
        return [_user(row) for row in rows]


async def _add_skeletons(conn: Any) -> None:
    await conn.execute("ALTER TABLE jwtkit_users ADD COLUMN IF NOT EXISTS skeleton text")
    rows = await conn.fetch(
        "SELECT id, username FROM jwtkit_users WHERE skeleton IS NULL ORDER BY created, id")
    taken = {row["skeleton"] for row in await conn.fetch(
        "SELECT skeleton FROM jwtkit_users WHERE skeleton IS NOT NULL")}
    holders = _look_alike_holders([(row["id"], row["username"]) for row in rows], taken)
    if holders:
        await conn.executemany("UPDATE jwtkit_users SET skeleton = $2 WHERE id = $1", holders)
    await conn.execute(_SKELETON_INDEX)


def _user(row: Any) -> User:
    return User(id=row["id"], username=row["username"], email=row["email"], verified=row["verified"],
                disabled=row["disabled"], created=float(row["created"]), password_hash=row["password_hash"],
                roles=tuple(sorted(row["roles"])))
