"""``memory://``: the store in plain dicts, for tests and demos. One process, one event loop, nothing
persists.

Every method runs to completion without awaiting, so on one event loop each is atomic (``consume`` included).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection

from jwtkit.store._base import DEFAULT_PURGE_INTERVAL, Clock, Rotation, Session, ThrottleState
from jwtkit.store._common import BaseStore, corrupt_session
from jwtkit.store._policy import (
    as_read,
    epoch_unavailable,
    is_active,
    repaired_epoch,
    require_valid_epoch,
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
                 purge_interval: float = DEFAULT_PURGE_INTERVAL) -> None:
        super().__init__(url, clock=clock, purge_interval=purge_interval)
        self._sessions: dict[str, object] = {}
        self._epochs: dict[str, object] = {}  # never purged (see base.py)
        self._consumed: dict[str, float] = {}
        self._throttles: dict[str, _Throttle] = {}

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

    async def create_session(self, session: Session) -> None:
        self._require_open()
        require_valid_epoch(session)
        self._sessions[session.sid] = session

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
