"""``memory://``: the store in plain dicts, for tests and demos. One process, one event loop, nothing
persists.

Every method runs to completion without awaiting, so on one event loop each is atomic (``consume`` included).
It implements :class:`~jwtkit.store.RevocationFeed` too (the reference the shared backends are tested
against, and what the mirror's own tests drive): a list of entries numbered from 1, trimmed by age on each
append, and :meth:`MemoryStore.clear` to play a server that restarted empty.
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import secrets
from collections.abc import Collection

from jwtkit.store._base import (
    DEFAULT_FEED_RETENTION,
    DEFAULT_PURGE_INTERVAL,
    Clock,
    FeedCursor,
    FeedLost,
    Revocation,
    RevocationKind,
    Rotation,
    Session,
    ThrottleState,
)
from jwtkit.store._common import BaseStore, corrupt_session
from jwtkit.store._policy import (
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

__all__ = ["MemoryStore"]


@dataclasses.dataclass(slots=True)
class _Throttle:
    failures: int
    last_failure: float
    expires: float


class MemoryStore(BaseStore):
    """The in-process backend. Records are kept as objects (an epoch as an ``int``); anything else found in a
    slot is "corrupt"."""

    def __init__(self, url: str = "memory://", *, clock: Clock,
                 purge_interval: float = DEFAULT_PURGE_INTERVAL,
                 feed_retention: float = DEFAULT_FEED_RETENTION) -> None:
        super().__init__(url, clock=clock, purge_interval=purge_interval)
        self.feed_retention = float(feed_retention)
        self._sessions: dict[str, object] = {}
        self._epochs: dict[str, object] = {}  # never purged (see base.py)
        self._consumed: dict[str, float] = {}
        self._throttles: dict[str, _Throttle] = {}
        self._generation = secrets.token_hex(8)
        self._feed: list[tuple[int, Revocation]] = []  # (number, entry), numbers increasing
        self._feed_last = 0  # the number of the last entry ever appended
        self._feed_trimmed = 0  # the number of the last entry trimmed away
        self._feed_waiters: list[asyncio.Future[None]] = []

    def clear(self) -> None:
        """Drop every record and the feed, as a server that restarted without persistence would: the feed
        gets a new generation (readers see :class:`FeedLost` with ``reset=True``)."""
        self._sessions.clear()
        self._epochs.clear()
        self._consumed.clear()
        self._throttles.clear()
        self._feed.clear()
        self._feed_last = self._feed_trimmed = 0
        self._generation = secrets.token_hex(8)
        self._wake_readers()

    # the revocation feed ----------------------------------------------------------------------------

    def _publish(self, kind: RevocationKind, subject: str, now: float) -> None:
        self._feed_last += 1
        self._feed.append((self._feed_last, Revocation(kind, subject, now)))
        cut = bisect.bisect_left(self._feed, now - self.feed_retention, key=lambda item: item[1].at)
        if cut:
            self._feed_trimmed = self._feed[cut - 1][0]
            del self._feed[:cut]
        self._wake_readers()

    def _wake_readers(self) -> None:
        waiters, self._feed_waiters = self._feed_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _after(self, cursor: FeedCursor) -> list[Revocation]:
        if cursor.generation != self._generation:
            raise FeedLost("the memory store was cleared", reset=True)
        try:
            position = int(cursor.position)
        except ValueError:
            raise FeedLost(f"not a cursor of this store: {cursor.position!r}", reset=True) from None
        if position > self._feed_last:
            raise FeedLost("the feed is behind the cursor", reset=True)
        if position < self._feed_trimmed:
            raise FeedLost("the feed was trimmed past the cursor", reset=False)
        start = bisect.bisect_right(self._feed, position, key=lambda item: item[0])
        return [entry for _, entry in self._feed[start:]]

    def _cursor(self) -> FeedCursor:
        return FeedCursor(self._generation, str(self._feed_last))

    async def feed_load(self) -> tuple[list[Revocation], FeedCursor]:
        self._require_open()
        return [entry for _, entry in self._feed], self._cursor()

    async def feed_read(self, cursor: FeedCursor, *, wait: float) -> tuple[list[Revocation], FeedCursor]:
        self._require_open()
        entries = self._after(cursor)
        if not entries and wait > 0:
            waiter = asyncio.get_running_loop().create_future()
            self._feed_waiters.append(waiter)
            try:
                async with asyncio.timeout(wait):  # not wait_for, which can swallow a cancellation on 3.11
                    await waiter
            except TimeoutError:
                pass
            finally:
                if waiter in self._feed_waiters:
                    self._feed_waiters.remove(waiter)
            self._require_open()
            entries = self._after(cursor)
        return entries, self._cursor()

    async def _open(self) -> None:
        return None

    async def _close(self) -> None:
        return None

    async def ping(self) -> None:
        self._require_open()

    # reading records --------------------------------------------------------------------------------

    def _session(self, sid: str) -> Session | None:
        record = self._sessions.get(sid)
        if record is None or isinstance(record, Session):
            return record
        return corrupt_session(sid, f"not a Session: {type(record).__name__}")

    def _epoch(self, user_id: str) -> float:
        """The user's epoch; UNREADABLE_EPOCH (logged) when the record is not an int."""
        record = self._epochs.get(user_id, 0)
        if valid_epoch(record):
            return record
        return unreadable_epoch(user_id, f"not an epoch: {type(record).__name__}")

    def _active(self, session: Session | None, user_id: str | None, now: float) -> bool:
        if session is None:
            return False
        return is_active(session, user_id, self._epoch(session.user_id), now)

    # sessions ---------------------------------------------------------------------------------------

    async def create_session(self, session: Session, *, max_sessions: int | None = None) -> list[str]:
        self._require_open()
        require_valid_epoch(session)
        require_valid_max_sessions(max_sessions)
        now = self._clock()
        self._sessions[session.sid] = session
        if max_sessions is None:
            return []
        others = [(s.created, s.sid) for s in self._sessions.values()
                  if isinstance(s, Session) and s.user_id == session.user_id and s.sid != session.sid
                  and self._active(s, session.user_id, now)]
        gone = evicted(others, max_sessions, self._active(session, None, now))
        for sid in gone:
            self._revoke(sid, now)
        return gone

    async def get_session(self, sid: str) -> Session | None:
        self._require_open()
        session = self._session(sid)
        return as_read(session, 0 if session is None else self._epoch(session.user_id), self._clock())

    async def check(self, sid: str, user_id: str) -> bool:
        self._require_open()
        return self._active(self._session(sid), user_id, self._clock())

    async def touch(self, sid: str, when: float) -> None:
        self._require_open()
        session = self._session(sid)
        if session is not None and not session.revoked and when > session.last_used:
            self._sessions[sid] = dataclasses.replace(session, last_used=when)

    def _revoke(self, sid: str, now: float) -> bool:
        session = self._session(sid)
        if session is None or session.revoked:
            return False
        was_active = self._active(session, None, now)
        self._sessions[sid] = dataclasses.replace(session, revoked=True)
        self._publish(RevocationKind.SESSION, sid, now)
        return was_active

    async def revoke(self, sid: str) -> bool:
        self._require_open()
        return self._revoke(sid, self._clock())

    async def revoke_family(self, family: str) -> int:
        self._require_open()
        now = self._clock()
        members = [s.sid for s in self._sessions.values() if isinstance(s, Session) and s.family == family]
        return sum(self._revoke(sid, now) for sid in members)

    async def get_epoch(self, user_id: str) -> int:
        self._require_open()
        epoch = self._epoch(user_id)
        if not isinstance(epoch, int):
            raise epoch_unavailable(user_id)
        return epoch

    async def revoke_all(self, user_id: str) -> int:
        self._require_open()
        current = self._epochs.get(user_id, 0)
        if valid_epoch(current):
            new = current + 1
        else:
            new = repaired_epoch([s.epoch for s in self._sessions.values()
                                  if isinstance(s, Session) and s.user_id == user_id])
        self._epochs[user_id] = new
        self._publish(RevocationKind.USER, user_id, self._clock())
        return new

    async def list_sessions(self, user_id: str) -> list[Session]:
        self._require_open()
        now = self._clock()
        found = [s for s in self._sessions.values()
                 if isinstance(s, Session) and s.user_id == user_id and self._active(s, user_id, now)]
        return sorted(found, key=lambda s: s.created, reverse=True)

    async def rotate_refresh(self, sid: str, presented_jti: str, new_jti: str, *,
                             concurrent: Collection[str] = ()) -> Rotation:
        self._require_open()
        now = self._clock()
        session = self._session(sid)
        if session is None:
            return Rotation.INACTIVE
        outcome = rotation_outcome(self._active(session, None, now), session.refresh_jti, presented_jti,
                                   concurrent)
        if outcome is Rotation.ROTATED:
            self._sessions[sid] = dataclasses.replace(session, refresh_jti=new_jti, last_used=now)
        elif outcome is Rotation.REUSED:
            self._revoke(sid, now)
            await self.revoke_family(session.family)
        return outcome

    # single-use tokens ------------------------------------------------------------------------------

    async def consume(self, jti: str, expires: float) -> bool:
        self._require_open()
        if self._clock() >= expires or jti in self._consumed:
            return False
        self._consumed[jti] = expires
        return True

    # login throttling -------------------------------------------------------------------------------

    async def throttle_hit(self, key: str, window: float) -> ThrottleState:
        self._require_open()
        now = self._clock()
        record = self._throttles.get(key)
        failures = record.failures + 1 if record is not None and now < record.expires else 1
        self._throttles[key] = _Throttle(failures, now, now + window)
        return ThrottleState(failures, now)

    async def throttle_get(self, key: str) -> ThrottleState:
        self._require_open()
        record = self._throttles.get(key)
        if record is None or self._clock() >= record.expires:
            return ThrottleState(0, 0.0)
        return ThrottleState(record.failures, record.last_failure)

    async def throttle_clear(self, key: str) -> None:
        self._require_open()
        self._throttles.pop(key, None)

    # upkeep -----------------------------------------------------------------------------------------

    async def purge(self) -> int:
        self._require_open()
        now = self._clock()
        dead_sessions = [sid for sid, s in self._sessions.items()
                         if not isinstance(s, Session) or now >= s.expires]
        dead_consumed = [j for j, e in self._consumed.items() if now >= e]
        dead_throttles = [k for k, t in self._throttles.items() if now >= t.expires]
        for sid in dead_sessions:
            del self._sessions[sid]
        for jti in dead_consumed:
            del self._consumed[jti]
        for key in dead_throttles:
            del self._throttles[key]
        return len(dead_sessions) + len(dead_consumed) + len(dead_throttles)  # epochs are kept

    def record_count(self) -> int:
        """How many records the store holds (for tests of bounded growth)."""
        return len(self._sessions) + len(self._epochs) + len(self._consumed) + len(self._throttles)
