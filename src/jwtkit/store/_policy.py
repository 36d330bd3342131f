"""The decision rules every backend applies, written once: is a session active, what does presenting a refresh
token do, which sessions a login evicts past the per-user cap, and what an epoch value may be.

The backends only fetch records and call these. Redis's Lua scripts must decide on the server (a check is
one round trip, a rotation is atomic), so they mirror :func:`active` line for line; a differential test
(tests/store/test_policy.py) drives the same cases through this module and through every backend.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from collections.abc import Collection, Iterable
from typing import Final, TypeGuard

from jwtkit.store._base import Rotation, Session, StoreUnavailable

__all__ = [
    "EPOCH_MAX",
    "MAX_SESSIONS_LIMIT",
    "UNREADABLE_EPOCH",
    "active",
    "epoch_unavailable",
    "evicted",
    "is_active",
    "parse_epoch",
    "repaired_epoch",
    "require_valid_epoch",
    "require_valid_max_sessions",
    "rotation_outcome",
    "unreadable_epoch",
    "valid_epoch",
]

log = logging.getLogger("jwtkit.store")

# The largest epoch: Lua numbers are doubles, exact for integers up to 2**53. revoke_all adds 1 per call, so
# this is never reached in practice; a value above it is a corrupt record.
EPOCH_MAX: Final = 2**53 - 1

# What an unreadable epoch record reads as: above every session's epoch, so each session of that user is
# inactive (fail closed).
UNREADABLE_EPOCH: Final = math.inf

# The largest per-user session cap a store accepts: each login at the cap reads every session of its user in
# one atomic step (one Lua script blocks Redis meanwhile), so the cap is also the bound on that step's work.
MAX_SESSIONS_LIMIT: Final = 1000

_DIGITS = re.compile(rb"[0-9]{1,16}")


def active(revoked: bool, expires: float, owner: str, session_epoch: int,
           user_id: str | None, user_epoch: float, now: float) -> bool:
    """THE rule: a session may be used now iff it is not revoked, not expired, belongs to ``user_id`` (when
    one is given) and its epoch is not below its user's current epoch (``UNREADABLE_EPOCH`` when that record
    cannot be read). Time plays no part in the epoch comparison."""
    return (
        not revoked
        and now < expires
        and (user_id is None or owner == user_id)
        and session_epoch >= user_epoch
    )


def is_active(session: Session, user_id: str | None, epoch: float, now: float) -> bool:
    """:func:`active` for a decoded session; ``epoch`` is the current epoch of ``session.user_id``."""
    return active(session.revoked, session.expires, session.user_id, session.epoch, user_id, epoch, now)


def as_read(session: Session | None, epoch: float, now: float) -> Session | None:
    """What :meth:`Store.get_session` returns for a stored session: None once expired (or unknown), revoked
    when its epoch is older than the account's, else the record as stored."""
    if session is None or now >= session.expires:
        return None
    if not session.revoked and not is_active(session, None, epoch, now):
        return dataclasses.replace(session, revoked=True)  # an older epoch: reads as revoked
    return session


def rotation_outcome(is_session_active: bool, current_jti: str, presented_jti: str,
                     concurrent: Collection[str] = ()) -> Rotation:
    """What presenting ``presented_jti`` does (RFC 9700 §4.14): nothing to an inactive session (INACTIVE,
    whatever the jti), rotation when it is the current one, nothing when the current one is a successor the
    caller named (CONCURRENT: the same token was rotated moments ago by another request), and reuse
    detection otherwise."""
    if not is_session_active:
        return Rotation.INACTIVE
    if current_jti == presented_jti:
        return Rotation.ROTATED
    if current_jti in concurrent:
        return Rotation.CONCURRENT
    return Rotation.REUSED


def evicted(others: Iterable[tuple[float, str]], max_sessions: int | None, new_is_active: bool) -> list[str]:
    """The sids a login evicts so that its user keeps at most ``max_sessions`` active sessions: ``others``
    are the user's *other* active sessions as ``(created, sid)``; the oldest created go first (ties by sid),
    until ``max_sessions - 1`` of them are left beside the new session (``max_sessions`` when the new one is
    itself not active: dead at birth, it takes no place). The new session is never evicted, whatever its
    ``created`` says (another node's clock may be behind). None: no cap, nothing evicted. Oldest first.

    Oldest *created* rather than least recently used: ``created`` never changes and every backend indexes
    it (Redis scores the user's sorted set by it), while ``last_used`` is written best effort and would
    need an index of its own."""
    if max_sessions is None:
        return []
    keep = max_sessions - 1 if new_is_active else max_sessions
    ordered = sorted(others)
    return [sid for _, sid in ordered[:max(0, len(ordered) - keep)]]


def valid_epoch(value: object) -> TypeGuard[int]:
    """An epoch as stored and accepted: an ``int`` (not a bool) from 0 to :data:`EPOCH_MAX`."""
    return type(value) is int and 0 <= value <= EPOCH_MAX


def parse_epoch(raw: str | bytes) -> int | None:
    """An epoch from its decimal text (Redis, LevelDB), or None when it is not one: only ASCII digits, at most
    16 of them, and no more than :data:`EPOCH_MAX`. The Lua scripts apply the same test."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if _DIGITS.fullmatch(data) is None:
        return None
    value = int(data)
    return value if value <= EPOCH_MAX else None


def unreadable_epoch(user_id: str, reason: object) -> float:
    """Log an unreadable epoch record and return what it reads as (:data:`UNREADABLE_EPOCH`)."""
    log.warning("unreadable epoch record of user %r: every session of that user treated as revoked until "
                "revoke_all repairs it: %s", user_id, reason)
    return UNREADABLE_EPOCH


def epoch_unavailable(user_id: str) -> StoreUnavailable:
    """What :meth:`Store.get_epoch` raises for an unreadable epoch record (after it was logged)."""
    return StoreUnavailable(f"the epoch record of user {user_id!r} is unreadable; revoke_all({user_id!r}) "
                            "repairs it")


def repaired_epoch(session_epochs: list[int]) -> int:
    """The epoch ``revoke_all`` writes over an unreadable record: one more than the largest valid epoch any
    stored session of the user carries (at least 1), so every stored session is dead after it as well."""
    return max([0, *(e for e in session_epochs if valid_epoch(e))]) + 1


def require_valid_max_sessions(max_sessions: object) -> None:
    """ValueError unless ``max_sessions`` is None or an ``int`` (not a bool) from 1 to
    :data:`MAX_SESSIONS_LIMIT`."""
    if max_sessions is not None and not (
            type(max_sessions) is int and 1 <= max_sessions <= MAX_SESSIONS_LIMIT):
        raise ValueError(f"max_sessions must be None or an int from 1 to {MAX_SESSIONS_LIMIT}, "
                         f"not {max_sessions!r}")


def require_valid_epoch(session: Session) -> None:
    """ValueError unless the session's epoch can be stored (see :func:`valid_epoch`)."""
    if not valid_epoch(session.epoch):
        raise ValueError(f"session epoch must be an int from 0 to {EPOCH_MAX}, not {session.epoch!r}")
