"""The session and revocation store contract: records, errors and the async interface every backend
implements.

A backend keeps four kinds of record:

- sessions, one per login, keyed by ``sid``, until they expire;
- a per-user *epoch*, a counter that :meth:`Store.revoke_all` ("log out everywhere") increments: every
  session carries the epoch its login read (:meth:`Store.get_epoch`) *before* it checked the password, and
  a session whose epoch is lower than its user's current epoch is dead. Epoch records never expire and
  :meth:`Store.purge` keeps them (if one vanished, the counter would restart at 0 and a later
  ``revoke_all`` could leave alive a session that carries a higher, older epoch): storage is one small
  integer per account that ever used ``revoke_all``;
- consumed single-use token ids (``jti``), until those tokens expire;
- login-throttle counters, per key, until their window ends.

Why an epoch and not a time: a login that read the user before a password reset, then spent 25 ms hashing,
would create its session *after* a time cut-off and so survive the reset; and clocks of several machines
cannot order events. The epoch decision depends only on the store's data, never on timing.

Every method is a coroutine. Backends over blocking libraries (sqlite3, plyvel) run those calls in a worker
thread. Faults fail closed: a backend that cannot answer raises :class:`StoreUnavailable`, and a record that
cannot be read is treated as revoked (and logged), never as valid.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = [
    "DEFAULT_COMMAND_TIMEOUT",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_FEED_RETENTION",
    "DEFAULT_PURGE_INTERVAL",
    "Clock",
    "FeedCursor",
    "FeedLost",
    "KeyRingRecords",
    "Revocation",
    "RevocationFeed",
    "RevocationKind",
    "Rotation",
    "Session",
    "Store",
    "StoreConfigError",
    "StoreError",
    "StoreUnavailable",
    "ThrottleState",
]

Clock = Callable[[], float]

DEFAULT_CONNECT_TIMEOUT = 1.0
DEFAULT_COMMAND_TIMEOUT = 1.0
DEFAULT_PURGE_INTERVAL = 300.0
# How long a revocation stays in a store's feed (RevocationFeed): at least the longest access-token lifetime
# plus leeway of any node reading it, since a mirror that loses an entry younger than that could accept a
# revoked token.
DEFAULT_FEED_RETENTION = 3600.0


class StoreError(Exception):
    """Root of the store errors."""

    code = "store"


class StoreUnavailable(StoreError):
    """The backend cannot answer now (down, timed out, locked by another process). Callers fail closed."""

    code = "store_unavailable"


class StoreConfigError(StoreError, ValueError):
    """A store URL or option is wrong. Raised where the store is built, never per request."""

    code = "store_config"


class FeedLost(StoreError):
    """A :class:`RevocationFeed` cannot continue from the reader's cursor.

    ``reset`` is False when the feed was only trimmed past the cursor (the reader reloads with
    :meth:`RevocationFeed.feed_load`); True when the store lost data (its generation marker is gone or
    different, or the feed went back behind the cursor): revocations may be missing from the store itself, so
    a reader must not trust what it cannot see for one access-token lifetime.
    """

    code = "feed_lost"

    def __init__(self, message: str, *, reset: bool) -> None:
        super().__init__(message)
        self.reset = reset


@dataclass(frozen=True, slots=True)
class Session:
    """One login: what the access and refresh tokens of that login point at through ``sid``.

    Times are POSIX seconds (float). ``refresh_jti`` is the ``jti`` of the one refresh token of this session
    that may still be used; rotation replaces it atomically. ``epoch`` is the user's epoch that the login
    read (:meth:`Store.get_epoch`) before it checked the credentials: the session is dead once the user's
    epoch is above it. It is an integer from 0 to ``2**53 - 1`` (:meth:`Store.create_session` refuses any
    other value).
    """

    sid: str
    user_id: str
    created: float
    last_used: float
    expires: float
    family: str
    refresh_jti: str
    user_agent: str = ""
    ip: str = ""
    revoked: bool = False
    epoch: int = 0

    def __repr__(self) -> str:
        return (
            f"Session(sid={self.sid[:8]}…, user_id={self.user_id!r}, created={self.created:.0f}, "
            f"expires={self.expires:.0f}, revoked={self.revoked}, epoch={self.epoch})"
        )


class Rotation(enum.Enum):
    """The outcome of presenting a refresh token to :meth:`Store.rotate_refresh`."""

    ROTATED = "rotated"  # it was the current one; the new jti is now current
    # it was rotated moments ago into one of the successors the caller named (another tab refreshing at the
    # same time): nothing is written, and the caller may hand out the session's current refresh jti
    CONCURRENT = "concurrent"
    REUSED = "reused"  # it was an older one: the session and its family are now revoked (RFC 9700 §4.14)
    INACTIVE = "inactive"  # no such session, or it is revoked, expired or of an older epoch than its user


@dataclass(frozen=True, slots=True)
class ThrottleState:
    """Failures counted for one throttle key inside the current window, and when the last one happened."""

    failures: int
    last_failure: float


@runtime_checkable
class Store(Protocol):
    """The async interface of every backend. ``open_store(url)`` in :mod:`jwtkit.store` builds one."""

    url: str

    async def open(self) -> None:
        """Connect or open files. Idempotent. May raise :class:`StoreUnavailable`."""

    async def close(self) -> None:
        """Release connections, files and background tasks. Idempotent."""

    async def ping(self) -> None:
        """Raise :class:`StoreUnavailable` unless the backend answers now (for health checks)."""

    # sessions -------------------------------------------------------------------------------------------

    async def create_session(self, session: Session, *, max_sessions: int | None = None) -> list[str]:
        """Store a new session. Its records expire at ``session.expires``.

        With ``max_sessions``, the user keeps at most that many active sessions (see :meth:`check`): the
        oldest *created* of the others are revoked in the same atomic step as the creation, exactly as
        :meth:`revoke` revokes (a ``SESSION`` entry each in a :class:`RevocationFeed`), so two nodes
        logging one user in at once never leave more alive. The new session is never the one evicted; one
        dead at birth (created revoked, or of an older epoch) takes no place. A user who already holds more
        (data from before the cap, or a lowered cap) is brought down to it by the next creation. Returns
        the evicted sids, oldest first (``[]`` without a cap).

        Raises ValueError when ``session.epoch`` is not an int from 0 to ``2**53 - 1``, or ``max_sessions``
        not None or an int from 1 to 1000 (``MAX_SESSIONS_LIMIT``: each creation at the cap reads every
        session of its user, so the cap bounds that work too)."""

    async def get_session(self, sid: str) -> Session | None:
        """The session, revoked or not, or None when unknown or expired. A corrupt record reads as revoked.

        ``revoked`` is True when the session was revoked *or* its epoch is below its user's current epoch (or
        that epoch record is unreadable), so ``revoked`` always agrees with :meth:`check`. A corrupt record
        comes back as ``Session(sid, user_id="", expires=inf, revoked=True, ...)`` and is logged."""

    async def check(self, sid: str, user_id: str) -> bool:
        """The per-request check: True only if the session is *active*: it exists, belongs to ``user_id``, is
        not revoked, has not expired, and ``session.epoch >= `` the user's current epoch (an unreadable epoch
        record makes every session of that user inactive, and is logged). One round trip on networked
        backends."""

    async def touch(self, sid: str, when: float) -> None:
        """Record that the session was used at ``when`` (best effort; for session listing)."""

    async def revoke(self, sid: str) -> bool:
        """Revoke one session (and so every token of it). True if it was active. Revoking twice is
        harmless.

        "Active" means what :meth:`check` accepts: known, not revoked, not expired, not of an older epoch."""

    async def revoke_family(self, family: str) -> int:
        """Revoke every session of a refresh family. Returns how many were active."""

    async def get_epoch(self, user_id: str) -> int:
        """The user's current epoch: 0 when :meth:`revoke_all` never ran for them. A login reads it *before*
        it checks the password and stores it in the session it creates (``Session(epoch=...)``).

        Raises :class:`StoreUnavailable` (and logs) when the user's epoch record is unreadable: no session
        of that user is active then, so a login could not create a usable one; :meth:`revoke_all` repairs
        the record."""

    async def revoke_all(self, user_id: str) -> int:
        """Log the user out everywhere: atomically increment the user's epoch (one write) and return the new
        epoch. Every session whose epoch is lower is dead from that moment, whatever its times say.
        Concurrent calls (from any number of processes sharing the store) each get a distinct, strictly
        larger value. The record never expires and :meth:`purge` keeps it.

        An unreadable epoch record is repaired: the new epoch is one more than the largest epoch carried by
        any stored session of the user (at least 1), so every stored session is dead after it too."""

    async def list_sessions(self, user_id: str) -> list[Session]:
        """The user's active sessions (see :meth:`check`), newest first."""

    async def rotate_refresh(self, sid: str, presented_jti: str, new_jti: str, *,
                             concurrent: Collection[str] = ()) -> Rotation:
        """Atomically: if the session is active and ``presented_jti`` is its current refresh jti, replace it
        with ``new_jti`` (ROTATED); if the session is active and its current jti is one of ``concurrent``
        (the successors the caller would have given ``presented_jti`` in the last moments), change nothing
        (CONCURRENT); if the session is active but the jti is neither, revoke the session and its family
        (REUSED); otherwise, including a session of an older epoch, INACTIVE."""

    # single-use tokens ---------------------------------------------------------------------------------

    async def consume(self, jti: str, expires: float) -> bool:
        """Mark a single-use token as used. Exactly one caller ever gets True for a given ``jti`` (until
        ``expires``, after which the token itself is no longer valid). False at once when ``expires`` is
        already past by the store's clock."""

    # login throttling ----------------------------------------------------------------------------------

    async def throttle_hit(self, key: str, window: float) -> ThrottleState:
        """Count one failure for ``key``; the count resets ``window`` seconds after the last failure."""

    async def throttle_get(self, key: str) -> ThrottleState:
        """The current count for ``key`` (0 failures when none or expired)."""

    async def throttle_clear(self, key: str) -> None:
        """Forget ``key``'s failures (after a successful login)."""

    # upkeep --------------------------------------------------------------------------------------------

    async def purge(self) -> int:
        """Delete expired records now. Returns how many were removed (0 where the backend expires by TTL).
        Epoch records are never deleted."""


class RevocationKind(enum.Enum):
    """What a :class:`Revocation` ends."""

    SESSION = "session"  # the subject is a sid: that session was revoked (logout, device, reuse detection)
    USER = "user"  # the subject is a user id: its epoch moved (revoke_all), every older session is dead


@dataclass(frozen=True, slots=True)
class Revocation:
    """One entry of a store's revocation feed. ``at`` is the store's clock (the injected one) when it was
    recorded, POSIX seconds."""

    kind: RevocationKind
    subject: str
    at: float


@dataclass(frozen=True, slots=True)
class FeedCursor:
    """Where a reader of a :class:`RevocationFeed` is: the store's data ``generation`` when the cursor was
    made (a random marker the store creates when it has none, so an emptied store shows a new one) and a
    backend-specific ``position`` (opaque to readers)."""

    generation: str
    position: str


@runtime_checkable
class RevocationFeed(Protocol):
    """What a *shared* store (Redis, PostgreSQL; the memory store for tests) adds so that each node can keep
    the revocations in process (``jwtkit.store.RevocationMirror``): an ordered feed of every revocation, kept
    for :attr:`feed_retention` seconds.

    The entry is written in the same atomic step as the revocation itself (the Lua script, the transaction):
    once :meth:`Store.revoke`, :meth:`Store.revoke_family`, :meth:`Store.revoke_all` or a ``REUSED`` rotation
    has returned, the feed holds it. Every session those calls mark revoked appears as a ``SESSION`` entry
    (a family revocation, one per session); ``revoke_all`` as one ``USER`` entry.
    """

    feed_retention: float

    async def feed_load(self) -> tuple[list[Revocation], FeedCursor]:
        """Every revocation the feed still holds, oldest first, and the cursor after the last one. Creates the
        generation marker when there is none. Raises :class:`StoreUnavailable`."""
        ...

    async def feed_read(self, cursor: FeedCursor, *, wait: float) -> tuple[list[Revocation], FeedCursor]:
        """The revocations after ``cursor``, oldest first, and the cursor after them; when there are none yet,
        waits up to ``wait`` seconds for the first. An empty answer means nothing was recorded between the
        moment of the call and its answer.

        Raises:
            FeedLost: the feed was trimmed past ``cursor`` (``reset=False``), or the store's generation is not
                ``cursor.generation`` or its feed is behind ``cursor`` (``reset=True``).
            StoreUnavailable: the store cannot answer.
        """
        ...


@runtime_checkable
class KeyRingRecords(Protocol):
    """What a *shared* store (Redis; PostgreSQL) adds so that every node signs with one key ring: a single
    record, an opaque document (the service seals the private keys in it before it gets here) and its
    version, a counter that only :meth:`ring_swap` moves. Record I/O only: the schedule, the encryption and
    the retries are the service's (:mod:`jwtkit.service`). A backend implements three calls:

    - :meth:`ring_version`: one small read, asked by every node at most every few seconds;
    - :meth:`ring_read`: the version and the document, read together (one snapshot);
    - :meth:`ring_swap`: compare-and-set, atomic on the server: the document is replaced, and the version
      becomes ``expected + 1``, only while the version is still ``expected`` (0: no ring yet, so the first
      write is a create-if-absent).
    """

    async def ring_version(self) -> int:
        """The key ring's version: 0 when there is none. Raises :class:`StoreUnavailable`."""

    async def ring_read(self) -> tuple[int, str] | None:
        """``(version, document)``, or None when there is no key ring. Raises :class:`StoreUnavailable`."""

    async def ring_swap(self, expected: int, document: str) -> bool:
        """Store ``document`` as version ``expected + 1`` if the version is ``expected`` now; False (and
        nothing written) when another writer got there first. Raises :class:`StoreUnavailable`."""
