"""The revocation mirror over the memory store's feed (the reference feed), driven step by step with a
pinned clock: what it answers, when it stops trusting itself, and that it never forgets a revocation inside
its window, even when the store does. The Redis and PostgreSQL feeds have their own tests; the mirror over
them, with real servers killed and paused, is in tests/web/test_mirror_faults.py."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import pytest

from clock import FakeClock
from jwtkit.store import (
    FeedCursor,
    FeedLost,
    Revocation,
    RevocationKind,
    RevocationMirror,
    Session,
    StoreConfigError,
    StoreUnavailable,
)
from jwtkit.store._memory import MemoryStore

WINDOW = 930.0  # the default access lifetime plus leeway, and a margin


def _session(sid: str, user: str, clock: FakeClock, epoch: int = 0) -> Session:
    now = clock()
    return Session(sid=sid, user_id=user, created=now, last_used=now, expires=now + 86400, family="f-" + sid,
                   refresh_jti="r-" + sid, epoch=epoch)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def store(clock: FakeClock) -> AsyncIterator[MemoryStore]:
    store = MemoryStore(clock=clock, purge_interval=0)
    await store.open()
    for sid, user in (("s1", "alice"), ("s2", "alice"), ("s3", "bob")):
        await store.create_session(_session(sid, user, clock))
    yield store
    await store.close()


@pytest.fixture
def mirror(store: MemoryStore, clock: FakeClock) -> RevocationMirror:
    return RevocationMirror(store, window=WINDOW, max_lag=1.0, clock=clock, monotonic=clock)


async def test_nothing_is_trusted_before_the_first_load(mirror: RevocationMirror) -> None:
    assert mirror.lookup("s1", "alice") is None
    await mirror.step()
    assert mirror.lookup("s1", "alice") is True


async def test_a_revocation_in_the_feed_refuses_its_session_only(store: MemoryStore,
                                                                  mirror: RevocationMirror) -> None:
    await mirror.step()
    assert await store.revoke("s1") is True
    await mirror.step()
    assert mirror.lookup("s1", "alice") is False
    assert mirror.lookup("s2", "alice") is True
    assert mirror.size == 1


async def test_revocations_made_before_the_mirror_started_are_loaded(store: MemoryStore,
                                                                      mirror: RevocationMirror) -> None:
    await store.revoke("s3")
    await store.revoke_all("alice")
    await mirror.step()
    assert mirror.lookup("s3", "bob") is False
    assert mirror.lookup("s1", "alice") is None  # alice's epoch moved: her sessions are the store's to judge


async def test_family_revocation_and_reuse_publish_every_session_they_end(store: MemoryStore,
                                                                           clock: FakeClock,
                                                                           mirror: RevocationMirror) -> None:
    await mirror.step()
    sibling = Session(sid="s1b", user_id="alice", created=clock(), last_used=clock(), expires=clock() + 99,
                      family="f-s1", refresh_jti="r-s1b")
    await store.create_session(sibling)
    await store.rotate_refresh("s1", "not-the-current-jti", "new")  # reuse: the whole family ends
    await mirror.step()
    assert mirror.lookup("s1", "alice") is False
    assert mirror.lookup("s1b", "alice") is False
    assert mirror.lookup("s2", "alice") is True


async def test_revoking_a_revoked_session_publishes_nothing(store: MemoryStore,
                                                             mirror: RevocationMirror) -> None:
    await store.revoke("s1")
    entries, cursor = await store.feed_load()
    await store.revoke("s1")
    assert (await store.feed_read(cursor, wait=0))[0] == []
    assert [(e.kind, e.subject) for e in entries] == [(RevocationKind.SESSION, "s1")]


async def test_a_user_whose_epoch_moved_is_checked_in_the_store(store: MemoryStore,
                                                                 mirror: RevocationMirror) -> None:
    await mirror.step()
    await store.revoke_all("alice")
    await mirror.step()
    assert mirror.lookup("s1", "alice") is None
    assert mirror.lookup("s3", "bob") is True


async def test_freshness_lapses_after_max_lag_and_returns_with_the_next_read(
        clock: FakeClock, mirror: RevocationMirror) -> None:
    await mirror.step()
    clock.advance(1.0)
    assert mirror.lookup("s1", "alice") is True  # exactly max_lag: still fresh
    clock.advance(0.001)
    assert mirror.lookup("s1", "alice") is None
    assert mirror.trusted is False
    await mirror.step()
    assert mirror.lookup("s1", "alice") is True


async def test_freshness_is_timed_from_when_the_read_was_sent(store: MemoryStore, clock: FakeClock) -> None:
    # a monotonic clock that moves 5 s while the read is out: the answer proves only the moment it was sent
    class SlowFeed:
        feed_retention = store.feed_retention

        async def feed_load(self) -> tuple[list[Revocation], FeedCursor]:
            answer = await store.feed_load()
            clock.advance(5)
            return answer

        async def feed_read(self, cursor: FeedCursor, *, wait: float) -> tuple[list[Revocation], FeedCursor]:
            raise AssertionError("not reached")

    mirror = RevocationMirror(SlowFeed(), window=WINDOW, max_lag=1.0, clock=clock, monotonic=clock)
    await mirror.step()
    assert mirror.lookup("s1", "alice") is None


async def test_entries_are_forgotten_one_window_after_they_were_recorded(store: MemoryStore, clock: FakeClock,
                                                                          mirror: RevocationMirror) -> None:
    await store.revoke("s1")
    await mirror.step()
    clock.advance(WINDOW - 1)
    await store.revoke("s2")
    await mirror.step()
    assert mirror.lookup("s1", "alice") is False
    clock.advance(2)
    await mirror.step()
    assert mirror.lookup("s1", "alice") is True  # every token of s1 has expired by now
    assert mirror.lookup("s2", "alice") is False
    assert mirror.size == 1


async def test_a_store_that_lost_its_data_resurrects_nothing(store: MemoryStore, clock: FakeClock,
                                                            mirror: RevocationMirror) -> None:
    await mirror.step()
    await store.revoke("s1")
    await mirror.step()
    store.clear()  # Redis restarted without persistence: the store forgot s1 was revoked
    with pytest.raises(FeedLost) as lost:
        await mirror.step()
    assert lost.value.reset is True
    await mirror.step()  # reloaded from the (empty) feed
    assert mirror.lookup("s1", "alice") is False  # still remembered
    assert mirror.lookup("s3", "bob") is None  # and the store decides for one window
    clock.advance(WINDOW - 1)
    await mirror.step()
    assert mirror.lookup("s3", "bob") is None
    clock.advance(1)
    await mirror.step()
    assert mirror.lookup("s3", "bob") is True


async def test_a_feed_trimmed_past_the_cursor_is_reloaded_and_distrusted(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock, purge_interval=0, feed_retention=WINDOW)
    async with store:
        for n in range(3):
            await store.create_session(_session(f"s{n}", "alice", clock))
        mirror = RevocationMirror(store, window=WINDOW, max_lag=1.0, clock=clock, monotonic=clock)
        await mirror.step()
        await store.revoke("s0")
        clock.advance(WINDOW + 1)  # this node was away longer than the feed keeps entries
        await store.revoke("s1")  # trims s0's entry
        with pytest.raises(FeedLost) as lost:
            await mirror.step()
        assert lost.value.reset is False
        await mirror.step()
        assert mirror.lookup("s1", "alice") is False
        assert mirror.lookup("s2", "alice") is None  # what it missed could still refuse a token


async def test_a_feed_behind_the_cursor_is_a_reset(store: MemoryStore) -> None:
    _, cursor = await store.feed_load()
    with pytest.raises(FeedLost) as lost:
        await store.feed_read(FeedCursor(cursor.generation, "7"), wait=0)
    assert lost.value.reset is True


async def test_record_applies_this_nodes_revocation_before_the_feed(mirror: RevocationMirror) -> None:
    await mirror.step()
    mirror.record(RevocationKind.SESSION, "s1")
    mirror.record(RevocationKind.USER, "bob")
    assert mirror.lookup("s1", "alice") is False
    assert mirror.lookup("s3", "bob") is None


async def test_too_many_entries_empty_the_mirror_and_distrust_it(store: MemoryStore, clock: FakeClock,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    mirror = RevocationMirror(store, window=WINDOW, max_lag=1.0, max_entries=2, clock=clock, monotonic=clock)
    await mirror.step()
    for sid in ("s1", "s2", "s3"):
        await store.revoke(sid)
    with caplog.at_level(logging.WARNING, "jwtkit.store.mirror"):
        await mirror.step()
    assert mirror.size == 0
    assert mirror.lookup("s1", "alice") is None  # not True: the store refuses it
    assert "more than 2 revocations" in caplog.text


def test_a_window_longer_than_the_feed_keeps_entries_is_refused(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock, feed_retention=600)
    with pytest.raises(StoreConfigError, match="feed_retention"):
        RevocationMirror(store, window=930, clock=clock)
    with pytest.raises(StoreConfigError):
        RevocationMirror(store, window=300, max_lag=0, clock=clock)
    with pytest.raises(TypeError):
        RevocationMirror(object(), window=300)  # type: ignore[arg-type]


async def test_a_read_returns_as_soon_as_a_revocation_is_recorded(store: MemoryStore) -> None:
    _, cursor = await store.feed_load()
    read = asyncio.create_task(store.feed_read(cursor, wait=60))
    await asyncio.sleep(0)  # the read is waiting now
    assert not read.done()
    await store.revoke("s2")
    entries, after = await asyncio.wait_for(read, 1)
    assert [e.subject for e in entries] == ["s2"]
    assert (await store.feed_read(after, wait=0))[0] == []


async def test_the_loop_survives_an_outage_and_resumes_from_its_cursor(store: MemoryStore,
                                                                      clock: FakeClock) -> None:
    """The loop with real monotonic time: a feed that fails on demand stands for a store that went away."""
    failing = asyncio.Event()

    class FlakyFeed:
        feed_retention = store.feed_retention

        async def feed_load(self) -> tuple[list[Revocation], FeedCursor]:
            return await store.feed_load()

        async def feed_read(self, cursor: FeedCursor, *, wait: float) -> tuple[list[Revocation], FeedCursor]:
            if failing.is_set():
                raise StoreUnavailable("down")
            return await store.feed_read(cursor, wait=wait)

    mirror = RevocationMirror(FlakyFeed(), window=WINDOW, max_lag=0.2, clock=clock)
    mirror.start()
    try:
        await _until(lambda: mirror.trusted)
        failing.set()
        await _until(lambda: not mirror.trusted)
        await store.revoke("s1")  # recorded while this node cannot read the feed
        assert mirror.lookup("s1", "alice") is None  # stale: the store decides (and refuses it)
        assert mirror.lookup("s3", "bob") is None
        failing.clear()
        await _until(lambda: mirror.lookup("s1", "alice") is False)
        await _until(lambda: mirror.trusted)
        assert mirror.lookup("s3", "bob") is True
    finally:
        await mirror.stop()
    assert mirror.lookup("s3", "bob") is None  # stopped: no longer current


async def _until(condition: object, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():  # type: ignore[operator]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


async def test_stop_ends_the_loop_even_when_a_feed_swallows_the_cancellation(store: MemoryStore,
                                                                            clock: FakeClock) -> None:
    # asyncio.wait_for on Python 3.11 can swallow a cancellation that arrives as its timeout expires; a feed
    # that does so must not leave AuthService.close() waiting for ever (CI hung on that once)
    class SwallowingFeed:
        feed_retention = store.feed_retention

        async def feed_load(self) -> tuple[list[Revocation], FeedCursor]:
            return await store.feed_load()

        async def feed_read(self, cursor: FeedCursor, *, wait: float) -> tuple[list[Revocation], FeedCursor]:
            with contextlib.suppress(asyncio.CancelledError):  # as wait_for does in that race
                await asyncio.sleep(3600)
            return [], cursor

    mirror = RevocationMirror(SwallowingFeed(), window=WINDOW, max_lag=1.0, clock=clock)
    mirror.start()
    await asyncio.sleep(0.05)  # the loop is inside feed_read now
    await asyncio.wait_for(mirror.stop(), 5)
