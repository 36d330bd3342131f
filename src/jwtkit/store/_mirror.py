"""The in-process revocation mirror: what can refuse an access token that is still inside its lifetime,
kept in memory and fed by the store's :class:`~jwtkit.store.RevocationFeed`, so that the per-request
session check is a dictionary lookup instead of a round trip.

What it holds, for ``window`` seconds (the longest access-token lifetime plus leeway) after each entry was
recorded: the sids of revoked sessions, and the users whose epoch moved (``revoke_all``). Its size follows the
revocation rate, not the number of users; past ``max_entries`` it drops everything and distrusts itself
for one window instead of dropping an entry that may still refuse a token.

:meth:`RevocationMirror.lookup` answers three ways:

- ``False``: the session was revoked (a mirror never forgets a revocation inside the window, even when the
  store later loses it);
- ``True``: nothing recorded against it, and the mirror has heard from the feed within ``max_lag`` seconds;
- ``None``: ask the store (:meth:`Store.check`): the feed is disconnected or lagging, the mirror has not
  loaded yet or distrusts itself (the store lost data, or the feed was trimmed past the mirror's position),
  or the user's epoch moved inside the window (a session's epoch is in the store, not in the token).

So a node never accepts what the store would refuse, except for at most ``max_lag`` seconds after a
revocation acknowledged by *another* node (``docs/stores.md`` states the promise and its measurement); a
revocation made through this node is applied here at once (:meth:`RevocationMirror.record`). Refresh,
logout, reuse detection, consume-once and throttling never use the mirror: they stay in the store.

Fed by one background task (:meth:`RevocationMirror.start`): :meth:`RevocationFeed.feed_load` first, then
:meth:`RevocationFeed.feed_read` in a loop. "Heard from the feed" is timed from when each read was *sent*
(a read that returns nothing proves only that nothing was recorded before it was sent).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from jwtkit.store._base import (
    Clock,
    FeedCursor,
    FeedLost,
    Revocation,
    RevocationFeed,
    RevocationKind,
    StoreConfigError,
    StoreUnavailable,
)

__all__ = ["DEFAULT_MAX_LAG", "DEFAULT_MAX_MIRRORED", "RevocationMirror"]

log = logging.getLogger("jwtkit.store.mirror")

DEFAULT_MAX_LAG = 1.0
DEFAULT_MAX_MIRRORED = 1_000_000
_RETRY_FIRST, _RETRY_MOST = 0.05, 1.0


class RevocationMirror:
    """Revocations of the last ``window`` seconds, in process (see the module docstring).

    Args:
        feed: the store's feed (a Redis or PostgreSQL store, or the memory store in tests).
        window: seconds an entry can still refuse a token: the longest access-token lifetime plus leeway of
            the tokens checked against this mirror. At most ``feed.feed_retention``.
        max_lag: seconds since the last answer from the feed after which :meth:`lookup` sends every request
            to the store (default 1 s).
        max_entries: entries kept before the mirror gives up and distrusts itself for one ``window``.
        clock: the store's POSIX clock (entries carry its time).
        monotonic: the clock for freshness and back-off (tests pin both).

    Raises:
        StoreConfigError: ``window`` above the feed's retention, or a non-positive ``max_lag``.
    """

    def __init__(self, feed: RevocationFeed, *, window: float, max_lag: float = DEFAULT_MAX_LAG,
                 max_entries: int = DEFAULT_MAX_MIRRORED, clock: Clock = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        if not isinstance(feed, RevocationFeed):
            raise TypeError(f"{type(feed).__name__} has no revocation feed")
        if window <= 0 or max_lag <= 0 or max_entries < 1:
            raise StoreConfigError("the mirror's window, max_lag and max_entries must be positive")
        if window > feed.feed_retention:
            raise StoreConfigError(
                f"the store keeps revocations in its feed for {feed.feed_retention:g} s, less than the "
                f"{window:g} s an access token lives (plus leeway): raise the store's feed_retention")
        self.feed = feed
        self.window = float(window)
        self.max_lag = float(max_lag)
        self.max_entries = max_entries
        self._clock = clock
        self._monotonic = monotonic
        # both in the order entries arrived (about the order of ``at``): pruned from the front
        self._sessions: dict[str, float] = {}  # revoked sid -> when
        self._users: dict[str, float] = {}  # user whose epoch moved -> when
        self._synced: float | None = None  # monotonic time the last successful read was sent
        self._distrust_until = -float("inf")  # monotonic
        self._cursor: FeedCursor | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._outage = False
        # to the feed's reads: short enough that an idle feed still proves freshness well inside max_lag
        self.wait = min(0.25, self.max_lag / 4)

    def __repr__(self) -> str:
        return (f"RevocationMirror(window={self.window:g}, max_lag={self.max_lag:g}, sessions="
                f"{len(self._sessions)}, users={len(self._users)}, trusted={self.trusted})")

    # the per-request answer ------------------------------------------------------------------------

    @property
    def trusted(self) -> bool:
        """Whether :meth:`lookup` may answer True now (fresh, loaded, not distrusting itself)."""
        synced = self._synced
        now = self._monotonic()
        return synced is not None and now - synced <= self.max_lag and now >= self._distrust_until

    def lookup(self, sid: str, user_id: str) -> bool | None:
        """False: the session was revoked; True: nothing against it and the mirror is current; None: ask the
        store. No I/O."""
        if sid in self._sessions:
            return False
        if user_id in self._users or not self.trusted:
            return None
        return True

    def record(self, kind: RevocationKind, subject: str) -> None:
        """Apply a revocation this process just made in the store, before the feed brings it back."""
        self._apply((Revocation(kind, subject, self._clock()),))

    @property
    def size(self) -> int:
        """How many entries the mirror holds."""
        return len(self._sessions) + len(self._users)

    # feeding ---------------------------------------------------------------------------------------

    def _apply(self, entries: Iterable[Revocation]) -> None:
        for entry in entries:
            table = self._sessions if entry.kind is RevocationKind.SESSION else self._users
            table.pop(entry.subject, None)  # to the back: the newer time wins
            table[entry.subject] = entry.at
        if self.size > self.max_entries:
            log.warning("revocation mirror: more than %d revocations inside %g s; checking the store "
                        "directly for that long", self.max_entries, self.window)
            self._sessions.clear()
            self._users.clear()
            self._distrust(self._monotonic())

    def _prune(self) -> None:
        oldest = self._clock() - self.window
        for table in (self._sessions, self._users):
            while table:
                subject, at = next(iter(table.items()))
                if at >= oldest:
                    break
                del table[subject]

    def _distrust(self, now: float) -> None:
        self._distrust_until = max(self._distrust_until, now + self.window)

    async def step(self) -> None:
        """One turn of the feeding loop: load (first time, or after the feed was lost) or read once.

        Raises:
            FeedLost, StoreUnavailable: as the feed raises them (the loop handles them; tests call this).
        """
        sent = self._monotonic()
        try:
            if self._cursor is None:
                entries, cursor = await self.feed.feed_load()
            else:
                entries, cursor = await self.feed.feed_read(self._cursor, wait=self.wait)
        except FeedLost as exc:
            self._cursor = None
            self._synced = None
            # trimmed past the cursor or data lost (exc.reset): either way entries this mirror never saw may
            # refuse tokens for up to one window, so the store decides until then
            self._distrust(self._monotonic())
            log.warning("revocation mirror: %s; reloading, and checking the store directly for %g s",
                        exc, self.window)
            raise
        except StoreUnavailable:
            self._synced = None  # a broken feed is known at once: no need to wait out max_lag
            raise
        self._apply(entries)
        self._cursor = cursor
        self._synced = sent
        self._prune()

    async def run(self) -> None:
        """Feed the mirror until cancelled; faults are logged and retried (fresh answers lapse meanwhile)."""
        delay = _RETRY_FIRST
        while not self._stopping:
            try:
                await self.step()
            except FeedLost:
                continue  # logged by step; reload at once
            except StoreUnavailable as exc:
                if not self._outage:
                    log.warning("revocation mirror: the store does not answer (%s); checking it directly "
                                "until the feed is back", exc)
                    self._outage = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_MOST)
                continue
            except Exception:  # never let the task die: the mirror would stay stale (and unused) for good
                log.exception("revocation mirror: unexpected error; retrying")
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_MOST)
                continue
            if self._outage:
                log.info("revocation mirror: the feed answers again")
                self._outage = False
            delay = _RETRY_FIRST

    def start(self) -> None:
        """Start the feeding task on the running loop. Idempotent."""
        if self._task is None or self._task.done():
            self._stopping = False
            self._task = asyncio.get_running_loop().create_task(self.run(), name="jwtkit-revocation-mirror")

    async def stop(self) -> None:
        """Stop the feeding task. Idempotent; the mirror stops answering True within ``max_lag``."""
        task, self._task = self._task, None
        self._synced = None
        self._stopping = True  # the loop ends at its next turn even if a feed swallowed the cancellation
        while task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=0.5)
        if task is not None and not task.cancelled() and task.exception() is not None:
            log.error("revocation mirror: the feeding task failed", exc_info=task.exception())
