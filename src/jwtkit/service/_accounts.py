"""Accounts: the :class:`User` record, username and email rules, and the user repositories (SQLite, memory)
behind the :class:`UserRepository` protocol."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import re
import sqlite3
import threading
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

from jwtkit.service._confusables import skeleton
from jwtkit.service._errors import InvalidEmail, InvalidUsername, UsernameTaken, UserNotFound
from jwtkit.store._base import StoreUnavailable
from jwtkit.store._common import enter_wal
from jwtkit.store._sqlite import create_private_file

__all__ = [
    "MAX_USERNAME_LENGTH",
    "MIN_USERNAME_LENGTH",
    "MemoryUserRepository",
    "SQLiteUserRepository",
    "User",
    "UserRepository",
    "normalize_email",
    "normalize_username",
]

MIN_USERNAME_LENGTH = 3
MAX_USERNAME_LENGTH = 64
MAX_EMAIL_LENGTH = 254  # RFC 5321 §4.5.3.1.3 path limit less the angle brackets
_USERNAME_PUNCTUATION = frozenset("._-")
LOOK_ALIKE = "this username looks like one that is taken; choose another"
_T = TypeVar("_T")
logger = logging.getLogger("jwtkit.service")


@dataclass(frozen=True, slots=True)
class User:
    """One account. ``username`` is normalised (see :func:`normalize_username`); ``created`` is POSIX seconds;
    ``roles`` are names checked by :func:`normalize_role`, sorted. ``repr()`` leaves the password hash out."""

    id: str
    username: str
    email: str | None
    verified: bool
    disabled: bool
    created: float
    password_hash: str = dataclasses.field(repr=False)
    roles: tuple[str, ...] = ()


MAX_ROLE_LENGTH = 64
_ROLE = re.compile(r"[a-z0-9][a-z0-9._:-]*")


def normalize_role(role: str) -> str:
    """A role name as stored and put in tokens: casefolded, 1 to 64 of ``a-z 0-9 . _ : -``, starting with a
    letter or digit (no spaces: tokens list roles, and scopes are space-separated).

    Raises:
        ValueError: with the reason.
    """
    if not isinstance(role, str):
        raise ValueError("a role must be text")
    name = role.strip().casefold()
    if not name or len(name) > MAX_ROLE_LENGTH or not _ROLE.fullmatch(name):
        raise ValueError(f"a role is 1 to {MAX_ROLE_LENGTH} of a-z 0-9 . _ : - (starting with a letter or "
                         f"digit), not {role!r}")
    return name


def normalize_username(username: str) -> str:
    """NFKC and casefold, then check length (3 to 64) and characters (letters, digits, ``.``, ``_``, ``-``).

    Idempotent: a normalised name normalises to itself. ``@`` is refused so that a name can never be
    mistaken for an email address (see ``AuthService.forgot_password``).

    Raises:
        InvalidUsername (``invalid_username``): with the reason.

    Example:
        >>> normalize_username("Ａlice")
        'alice'
    """
    if not isinstance(username, str):
        raise InvalidUsername("the username must be text")
    if len(username) > 4 * MAX_USERNAME_LENGTH:
        raise InvalidUsername(f"the username must have at most {MAX_USERNAME_LENGTH} characters")
    name = username
    # casefold() can produce text that NFKC changes again (and back); iterate to a fixed point so that
    # the result is stable (UAX #15 / Unicode NFKC_Casefold closure).
    for _ in range(4):
        folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())
        if folded == name:
            break
        name = folded
    else:
        raise InvalidUsername("the username cannot be normalised")
    if not MIN_USERNAME_LENGTH <= len(name) <= MAX_USERNAME_LENGTH:
        raise InvalidUsername(
            f"the username must have {MIN_USERNAME_LENGTH} to {MAX_USERNAME_LENGTH} characters"
        )
    for index, char in enumerate(name):
        if char in _USERNAME_PUNCTUATION:
            continue
        kind = unicodedata.category(char)[0]
        # Letters and digits of any script (with combining marks after the first character, which scripts
        # without precomposed forms need); refuses whitespace (Z*), controls and format characters (C*, which
        # include zero-width joiners), symbols and other punctuation such as '@' and '/'.
        if kind not in ("L", "N") and not (kind == "M" and index > 0):
            raise InvalidUsername("the username may only contain letters, digits, '.', '_' and '-'")
    return name


def normalize_email(email: str) -> str:
    """Strip surrounding space, lowercase the domain, and check the address loosely (one ``@``, a dotted
    domain, no spaces or controls, at most 254 characters). Deliverability is proven by the verification mail.

    Raises:
        InvalidEmail (``invalid_email``).

    Example:
        >>> normalize_email(" Bob@Example.ORG ")
        'Bob@example.org'
    """
    if not isinstance(email, str):
        raise InvalidEmail()
    address = email.strip()
    if not address or len(address) > MAX_EMAIL_LENGTH or address.count("@") != 1:
        raise InvalidEmail()
    local, domain = address.split("@")
    if not local or len(local) > 64 or not domain:
        raise InvalidEmail()
    if any(ch.isspace() or unicodedata.category(ch)[0] == "C" or ch in '<>()[],;:\\"' for ch in address):
        raise InvalidEmail()
    labels = domain.split(".")
    if len(labels) < 2 or any(not label or label.startswith("-") or label.endswith("-") for label in labels):
        raise InvalidEmail()
    return f"{local}@{domain.lower()}"


def _email_key(email: str | None) -> str | None:
    return None if email is None else email.casefold()


@runtime_checkable
class UserRepository(Protocol):
    """Where accounts live. Implementations: :class:`SQLiteUserRepository`, :class:`MemoryUserRepository`;
    a server database can be added behind the same methods. Usernames passed in are already normalised.
    Failures of the backing database raise :class:`jwtkit.store.StoreUnavailable`."""

    async def open(self) -> None:
        """Open files or connections. Idempotent."""

    async def close(self) -> None:
        """Release them. Idempotent."""

    async def add(self, user: User) -> None:
        """Insert a new user. Raises UsernameTaken when the username exists, or a name confusable with it
        (the same skeleton: message :data:`LOOK_ALIKE`)."""

    async def get(self, user_id: str) -> User | None:
        """The user with this id, or None."""

    async def get_by_username(self, username: str) -> User | None:
        """The user with this (normalised) username, or None."""

    async def find_look_alike(self, username: str) -> User | None:
        """The user whose name is confusable with this normalised one (the same UTS #39 skeleton, see
        :func:`~jwtkit.service._confusables.skeleton`), itself included, or None."""

    async def find_by_email(self, email: str) -> list[User]:
        """The users with this email address (compared casefolded), oldest first."""

    async def list_users(self) -> list[User]:
        """Every user, oldest first."""

    async def update(self, user: User) -> None:
        """Replace the stored user with the same id. Raises UserNotFound, or UsernameTaken for a new
        username that is taken or confusable with a taken one."""

    async def delete(self, user_id: str) -> None:
        """Remove the user with this id; its username is free again. Raises UserNotFound."""


class MemoryUserRepository:
    """Users in a dict, for tests and ``memory://`` demos. Nothing survives the process."""

    def __init__(self) -> None:
        self._by_id: dict[str, User] = {}
        self._by_name: dict[str, str] = {}
        self._by_skeleton: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"MemoryUserRepository(users={len(self._by_id)})"

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def add(self, user: User) -> None:
        self._check_free(user.username, user.id)
        if user.id in self._by_id:
            raise ValueError("duplicate user id")
        self._by_id[user.id] = user
        self._by_name[user.username] = user.id
        self._by_skeleton[skeleton(user.username)] = user.id

    def _check_free(self, username: str, user_id: str) -> None:
        if username in self._by_name:
            raise UsernameTaken()
        if self._by_skeleton.get(skeleton(username), user_id) != user_id:
            raise UsernameTaken(LOOK_ALIKE)

    async def get(self, user_id: str) -> User | None:
        return self._by_id.get(user_id)

    async def get_by_username(self, username: str) -> User | None:
        user_id = self._by_name.get(username)
        return None if user_id is None else self._by_id[user_id]

    async def find_look_alike(self, username: str) -> User | None:
        user_id = self._by_skeleton.get(skeleton(username))
        return None if user_id is None else self._by_id[user_id]

    async def find_by_email(self, email: str) -> list[User]:
        key = _email_key(email)
        return sorted((u for u in self._by_id.values() if _email_key(u.email) == key), key=_created)

    async def list_users(self) -> list[User]:
        return sorted(self._by_id.values(), key=_created)

    async def update(self, user: User) -> None:
        old = self._by_id.get(user.id)
        if old is None:
            raise UserNotFound()
        if user.username != old.username:
            self._check_free(user.username, user.id)
            del self._by_name[old.username]
            self._by_name[user.username] = user.id
            self._drop_skeleton(old)
            self._by_skeleton[skeleton(user.username)] = user.id
        self._by_id[user.id] = user

    def _drop_skeleton(self, user: User) -> None:
        key = skeleton(user.username)
        if self._by_skeleton.get(key) == user.id:
            del self._by_skeleton[key]

    async def delete(self, user_id: str) -> None:
        user = self._by_id.pop(user_id, None)
        if user is None:
            raise UserNotFound()
        del self._by_name[user.username]
        self._drop_skeleton(user)


def _created(user: User) -> tuple[float, str]:
    return (user.created, user.id)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    email TEXT,
    email_key TEXT,
    verified INTEGER NOT NULL,
    disabled INTEGER NOT NULL,
    created REAL NOT NULL,
    password_hash TEXT NOT NULL,
    roles TEXT NOT NULL DEFAULT '[]',
    skeleton TEXT
);
CREATE INDEX IF NOT EXISTS users_email_key ON users (email_key);
CREATE TABLE IF NOT EXISTS users_schema (
    name    TEXT PRIMARY KEY,
    version INTEGER NOT NULL
);
"""
# The users table's version, in a table of its own (as the store's; the file is often shared, so not PRAGMA
# user_version): 1 added roles (a JSON list), 2 the UTS #39 skeleton under a unique index (NULL only for the
# younger of two confusable names that existed before it). Migrations run on open, in order.
_USERS_SCHEMA = 2
_SELECT = "SELECT id, username, email, verified, disabled, created, password_hash, roles FROM users"


class SQLiteUserRepository:
    """Users in the ``users`` table of an SQLite file (by default the sessions store's file), in WAL mode,
    through a connection of its own. Blocking calls run in a worker thread, one at a time.

    Args:
        path: the database file; ``":memory:"`` for a private in-memory database.
        timeout: seconds to wait for a lock held by another connection before raising StoreUnavailable.
    """

    def __init__(self, path: str | Path, *, timeout: float = 5.0) -> None:
        self.path = str(path)
        self.timeout = timeout
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SQLiteUserRepository(path={self.path!r})"

    async def open(self) -> None:
        if self._conn is None:
            self._conn = await asyncio.to_thread(self._connect)

    def _connect(self) -> sqlite3.Connection:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            create_private_file(self.path)
        try:
            conn = sqlite3.connect(self.path, timeout=self.timeout, check_same_thread=False,
                                   isolation_level=None)
            enter_wal(conn, self.timeout)
            conn.execute("PRAGMA synchronous=FULL")  # a password change must survive power loss
            conn.executescript(_SCHEMA)
            _migrate(conn)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open the users database {self.path!r}: {exc}") from exc
        return conn

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await asyncio.to_thread(conn.close)

    async def _run(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        conn = self._conn
        if conn is None:
            raise RuntimeError("SQLiteUserRepository is not open: await repo.open() first")

        def call() -> _T:
            with self._lock:
                try:
                    return work(conn)
                except sqlite3.Error as exc:
                    # Locked, full, corrupt or gone: fail closed, the web layer answers 503.
                    raise StoreUnavailable(f"users database error: {exc}") from exc

        return await asyncio.to_thread(call)

    async def add(self, user: User) -> None:
        def work(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(
                    "INSERT INTO users (id, username, email, email_key, verified, disabled, created,"
                    " password_hash, roles, skeleton) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (user.id, user.username, user.email, _email_key(user.email), int(user.verified),
                     int(user.disabled), user.created, user.password_hash, json.dumps(list(user.roles)),
                     skeleton(user.username)),
                )
            except sqlite3.IntegrityError as exc:
                raise _taken(exc, conn, user) from exc

        await self._run(work)

    async def get(self, user_id: str) -> User | None:
        return await self._one(_SELECT + " WHERE id = ?", (user_id,))

    async def get_by_username(self, username: str) -> User | None:
        return await self._one(_SELECT + " WHERE username = ?", (username,))

    async def find_look_alike(self, username: str) -> User | None:
        return await self._one(_SELECT + " WHERE skeleton = ?", (skeleton(username),))

    async def find_by_email(self, email: str) -> list[User]:
        return await self._many(
            _SELECT + " WHERE email_key = ? ORDER BY created, id", (_email_key(email),)
        )

    async def list_users(self) -> list[User]:
        return await self._many(_SELECT + " ORDER BY created, id", ())

    async def update(self, user: User) -> None:
        def work(conn: sqlite3.Connection) -> int:
            # The skeleton changes with the name only: a name migrated without one (see _migrate) keeps
            # working through password changes. SET expressions read the row as it was.
            try:
                cursor = conn.execute(
                    "UPDATE users SET username = ?, email = ?, email_key = ?, verified = ?, disabled = ?,"
                    " created = ?, password_hash = ?, roles = ?,"
                    " skeleton = CASE WHEN username = ? THEN skeleton ELSE ? END WHERE id = ?",
                    (user.username, user.email, _email_key(user.email), int(user.verified),
                     int(user.disabled), user.created, user.password_hash, json.dumps(list(user.roles)),
                     user.username, skeleton(user.username), user.id),
                )
            except sqlite3.IntegrityError as exc:
                raise _taken(exc, conn, user) from exc
            return cursor.rowcount

        changed = await self._run(work)
        if changed == 0:
            raise UserNotFound()

    async def delete(self, user_id: str) -> None:
        def work(conn: sqlite3.Connection) -> int:
            return conn.execute("DELETE FROM users WHERE id = ?", (user_id,)).rowcount

        if await self._run(work) == 0:
            raise UserNotFound()

    async def _one(self, sql: str, params: tuple[object, ...]) -> User | None:
        rows = await self._run(lambda conn: conn.execute(sql, params).fetchall())
        return _row_to_user(rows[0]) if rows else None

    async def _many(self, sql: str, params: tuple[object, ...]) -> list[User]:
        rows = await self._run(lambda conn: conn.execute(sql, params).fetchall())
        return [_row_to_user(row) for row in rows]


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a users table of an older release up to :data:`_USERS_SCHEMA`, in one transaction; idempotent,
    and safe when two processes open the file at once (the write lock is taken before the version is read)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        row = conn.execute("SELECT version FROM users_schema WHERE name = 'users'").fetchone()
        version = 0 if row is None else int(row[0])
        if version > _USERS_SCHEMA:
            raise sqlite3.DatabaseError(f"the users table is at schema {version}, newer than this jwtkit "
                                        f"({_USERS_SCHEMA}): upgrade jwtkit")
        if version < 1:
            columns = {row[1] for row in conn.execute("PRAGMA table_info(users)")}
            if "roles" not in columns:  # a table from before roles (CREATE TABLE IF NOT EXISTS kept it)
                conn.execute("ALTER TABLE users ADD COLUMN roles TEXT NOT NULL DEFAULT '[]'")
        if version < 2:
            _add_skeletons(conn)
        if version < _USERS_SCHEMA:
            conn.execute("INSERT OR REPLACE INTO users_schema (name, version) VALUES ('users', ?)",
                         (_USERS_SCHEMA,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _add_skeletons(conn: sqlite3.Connection) -> None:
    columns = {row[1] for row in conn.execute("PRAGMA table_info(users)")}
    if "skeleton" not in columns:
        conn.execute("ALTER TABLE users ADD COLUMN skeleton TEXT")
    rows = conn.execute(
        "SELECT id, username FROM users WHERE skeleton IS NULL ORDER BY created, id").fetchall()
    taken = {row[0] for row in conn.execute("SELECT skeleton FROM users WHERE skeleton IS NOT NULL")}
    for user_id, key in _look_alike_holders(rows, taken):
        conn.execute("UPDATE users SET skeleton = ? WHERE id = ?", (key, user_id))
    conn.execute("CREATE UNIQUE INDEX IF NOT EXISTS users_skeleton ON users (skeleton) "
                 "WHERE skeleton IS NOT NULL")


def _look_alike_holders(rows: list[tuple[str, str]], taken: set[str]) -> list[tuple[str, str]]:
    """For accounts made before skeletons were kept (``(id, username)``, oldest first): which get their
    skeleton. The oldest of confusable names keeps it; the younger keep working but hold none, and are
    logged, since an operator may want to rename them."""
    holders = []
    for user_id, username in rows:
        key = skeleton(username)
        if key in taken:
            logger.warning("user %s has a name confusable with an older account's; it keeps working, but "
                           "consider renaming it", user_id)
            continue
        taken.add(key)
        holders.append((user_id, key))
    return holders


def _taken(exc: sqlite3.IntegrityError, conn: sqlite3.Connection, user: User) -> UsernameTaken:
    # SQLite names one violated index, not always the username's when both are: ask which name is taken
    if "skeleton" not in str(exc):
        return UsernameTaken()
    row = conn.execute("SELECT id FROM users WHERE username = ?", (user.username,)).fetchone()
    return UsernameTaken() if row is not None and row[0] != user.id else UsernameTaken(LOOK_ALIKE)


def _roles_of(raw: object) -> tuple[str, ...]:
    try:
        roles = json.loads(raw) if isinstance(raw, str) else []
    except ValueError:
        roles = []
    return tuple(sorted(r for r in roles if isinstance(r, str))) if isinstance(roles, list) else ()


def _row_to_user(row: tuple[Any, ...]) -> User:
    user_id, username, email, verified, disabled, created, password_hash, roles = row
    return User(
        id=str(user_id),
        username=str(username),
        email=None if email is None else str(email),
        verified=bool(verified),
        disabled=bool(disabled),
        created=float(created),
        password_hash=str(password_hash),
        roles=_roles_of(roles),
    )
