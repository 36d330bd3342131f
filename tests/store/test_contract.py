"""The store contract (store/_base.py), run against every backend: memory, sqlite, leveldb and redis."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
from pathlib import Path

import pytest

from jwtkit.store import (
    ManagedStore,
    Revocation,
    RevocationFeed,
    RevocationKind,
    RevocationMirror,
    Rotation,
    StoreUnavailable,
    ThrottleState,
    open_store,
)

from . import support as raw
from .support import FakeClock, new_session, store_url

# sessions -----------------------------------------------------------------------------------------------


async def test_create_then_get_returns_the_same_session(store: ManagedStore, clock: FakeClock) -> None:
    session = new_session(clock, user_agent="Mozilla/5.0 (ünïcode)", ip="2001:db8::1")
    await store.create_session(session)
    assert await store.get_session(session.sid) == session


async def test_get_unknown_session_is_none(store: ManagedStore) -> None:
    assert await store.get_session(secrets.token_urlsafe(16)) is None


async def test_check_accepts_only_an_active_session_of_user(store: ManagedStore, clock: FakeClock) -> None:
    session = new_session(clock)
    await store.create_session(session)
    assert await store.check(session.sid, "alice") is True
    assert await store.check(session.sid, "bob") is False
    assert await store.check(secrets.token_urlsafe(16), "alice") is False
    assert await store.check("", "") is False


async def test_session_expires_with_the_clock(store: ManagedStore, clock: FakeClock) -> None:
    session = new_session(clock, ttl=60)
    await store.create_session(session)
    clock.advance(59.9)
    assert await store.check(session.sid, "alice") is True
    clock.advance(0.1)
    assert await store.check(session.sid, "alice") is False
    assert await store.get_session(session.sid) is None
    assert await store.list_sessions("alice") == []
    assert await store.revoke(session.sid) is False


async def test_touch_records_last_use(store: ManagedStore, clock: FakeClock) -> None:
    session = new_session(clock)
    await store.create_session(session)
    await store.touch(session.sid, clock() + 30)
    got = await store.get_session(session.sid)
    assert got is not None
    assert got.last_used == clock() + 30
    await store.touch(secrets.token_urlsafe(16), clock())  # unknown sid: harmless


async def test_revoke_kills_the_session_once(store: ManagedStore, clock: FakeClock) -> None:
    session, other = new_session(clock), new_session(clock)
    await store.create_session(session)
    await store.create_session(other)
    assert await store.revoke(session.sid) is True
    assert await store.check(session.sid, "alice") is False
    got = await store.get_session(session.sid)
    assert got is not None
    assert got.revoked is True
    assert await store.revoke(session.sid) is False  # twice is harmless
    assert await store.revoke(secrets.token_urlsafe(16)) is False
    assert await store.check(other.sid, "alice") is True


async def test_revoke_family_revokes_only_that_family(store: ManagedStore, clock: FakeClock) -> None:
    first = new_session(clock, family="fam-1")
    second = new_session(clock, family="fam-1")
    stranger = new_session(clock, family="fam-2")
    for session in (first, second, stranger):
        await store.create_session(session)
    await store.revoke(second.sid)
    assert await store.revoke_family("fam-1") == 1  # second was no longer active
    assert await store.check(first.sid, "alice") is False
    assert await store.check(stranger.sid, "alice") is True
    assert await store.revoke_family("fam-1") == 0
    assert await store.revoke_family("no-such-family") == 0


async def test_get_epoch_is_zero_until_revoke_all(store: ManagedStore) -> None:
    assert await store.get_epoch("alice") == 0
    assert await store.revoke_all("alice") == 1
    assert await store.get_epoch("alice") == 1
    assert await store.get_epoch("bob") == 0


async def test_revoke_all_kills_older_epochs_and_spares_the_current(store: ManagedStore,
                                                                    clock: FakeClock) -> None:
    old = new_session(clock, family="fam")
    sibling = new_session(clock, family="fam", epoch=1)  # same family, current epoch: must survive
    bob = new_session(clock, "bob")
    for session in (old, bob):
        await store.create_session(session)
    assert await store.revoke_all("alice") == 1
    await store.create_session(sibling)
    # the race the epoch closes: a login that read epoch 0 before the reset stores its session afterwards,
    # with a later `created`; it is dead all the same
    racing = new_session(clock, created=clock() + 5, epoch=0)
    await store.create_session(racing)
    fresh = new_session(clock, created=clock() + 5, epoch=1)  # a login that read the new epoch
    await store.create_session(fresh)
    for dead in (old, racing):
        assert await store.check(dead.sid, "alice") is False
        got = await store.get_session(dead.sid)
        assert got is not None
        assert got.revoked is True  # an older epoch reads as revoked
        assert got.epoch == 0
        assert await store.rotate_refresh(dead.sid, dead.refresh_jti, "new") is Rotation.INACTIVE
        assert await store.rotate_refresh(dead.sid, "not-the-jti", "new") is Rotation.INACTIVE  # never REUSED
        unchanged = await store.get_session(dead.sid)
        assert unchanged is not None
        assert unchanged.refresh_jti == dead.refresh_jti
    assert await store.check(sibling.sid, "alice") is True  # no reuse detection ran on the family
    assert await store.check(fresh.sid, "alice") is True
    assert await store.get_session(fresh.sid) == fresh
    assert [s.sid for s in await store.list_sessions("alice")] == [fresh.sid, sibling.sid]
    assert await store.check(bob.sid, "bob") is True
    assert await store.revoke(old.sid) is False  # already dead by its epoch
    assert await store.revoke(racing.sid) is False
    assert await store.revoke_family("fam") == 1  # the sibling only
    assert await store.revoke(fresh.sid) is True


async def test_epochs_strictly_increase_and_only_lower_ones_die(store: ManagedStore,
                                                                clock: FakeClock) -> None:
    assert [await store.revoke_all("alice") for _ in range(3)] == [1, 2, 3]
    assert await store.get_epoch("alice") == 3
    sessions = {epoch: new_session(clock, epoch=epoch) for epoch in (0, 2, 3, 4)}
    for session in sessions.values():
        await store.create_session(session)
    assert {epoch: await store.check(s.sid, "alice") for epoch, s in sessions.items()} == {
        0: False, 2: False, 3: True, 4: True}
    assert await store.revoke_all("alice") == 4
    assert {epoch: await store.check(s.sid, "alice") for epoch, s in sessions.items()} == {
        0: False, 2: False, 3: False, 4: True}


async def test_concurrent_revoke_all_calls_get_distinct_values(store: ManagedStore) -> None:
    results = await asyncio.gather(*(store.revoke_all("alice") for _ in range(20)))
    assert sorted(results) == list(range(1, 21))
    assert await store.get_epoch("alice") == 20


@pytest.mark.parametrize("epoch", [-1, 2**53, True, 1.5, "1"])
async def test_create_session_refuses_an_epoch_it_cannot_store(store: ManagedStore, clock: FakeClock,
                                                                epoch: object) -> None:
    session = dataclasses.replace(new_session(clock), epoch=epoch)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="epoch"):
        await store.create_session(session)
    assert await store.get_session(session.sid) is None


async def test_the_largest_epoch_is_stored_exactly(store: ManagedStore, clock: FakeClock) -> None:
    session = new_session(clock, epoch=2**53 - 1)
    await store.create_session(session)
    assert await store.get_session(session.sid) == session
    assert await store.check(session.sid, "alice") is True


async def test_corrupt_epoch_record_fails_closed_until_revoke_all_repairs_it(
        store: ManagedStore, clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    low, high, victim, rotated = (new_session(clock, epoch=e) for e in (0, 7, 0, 0))
    bob = new_session(clock, "bob")
    for session in (low, high, victim, rotated, bob):
        await store.create_session(session)
    await raw.corrupt_epoch(store, "alice")
    with caplog.at_level(logging.WARNING, logger="jwtkit.store"):
        for session in (low, high):
            assert await store.check(session.sid, "alice") is False
            got = await store.get_session(session.sid)
            assert got is not None
            assert got.revoked is True
        assert await store.list_sessions("alice") == []
        assert await store.rotate_refresh(rotated.sid, rotated.refresh_jti, "new") is Rotation.INACTIVE
        assert await store.rotate_refresh(rotated.sid, "stale", "new") is Rotation.INACTIVE
        assert await store.revoke(victim.sid) is False
        with pytest.raises(StoreUnavailable, match="epoch record"):
            await store.get_epoch("alice")
    assert any("unreadable epoch record" in r.getMessage() for r in caplog.records)
    assert await store.check(bob.sid, "bob") is True
    # the repair goes above every stored session's epoch (7 here), so none of them comes back
    assert await store.revoke_all("alice") == 8
    assert await store.get_epoch("alice") == 8
    for session in (low, high, victim, rotated):
        assert await store.check(session.sid, "alice") is False
    fresh = new_session(clock, epoch=8)
    await store.create_session(fresh)
    assert await store.check(fresh.sid, "alice") is True
    assert await store.revoke_all("alice") == 9


async def test_list_sessions_newest_first_and_only_active(store: ManagedStore, clock: FakeClock) -> None:
    cut = new_session(clock, ttl=10_000)
    clock.advance(10)
    await store.create_session(cut)
    epoch = await store.revoke_all("alice")
    expired = new_session(clock, ttl=50, epoch=epoch)
    revoked = new_session(clock, ttl=10_000, epoch=epoch)
    clock.advance(1)
    older = new_session(clock, ttl=10_000, epoch=epoch)
    clock.advance(1)
    newer = new_session(clock, ttl=10_000, epoch=epoch)
    others = new_session(clock, "bob", ttl=10_000)
    for session in (expired, revoked, newer, older, others):  # stored out of order on purpose
        await store.create_session(session)
    await store.revoke(revoked.sid)
    clock.advance(100)
    listed = await store.list_sessions("alice")
    assert [s.sid for s in listed] == [newer.sid, older.sid]
    assert listed[0] == newer
    assert [s.sid for s in await store.list_sessions("bob")] == [others.sid]
    assert await store.list_sessions("nobody") == []


async def test_rotate_refresh_rotates_then_detects_reuse(store: ManagedStore, clock: FakeClock) -> None:
    session = new_session(clock, family="fam")
    sibling = new_session(clock, family="fam")
    await store.create_session(session)
    await store.create_session(sibling)
    first, second = session.refresh_jti, secrets.token_urlsafe(16)
    clock.advance(5)
    assert await store.rotate_refresh(session.sid, first, second) is Rotation.ROTATED
    got = await store.get_session(session.sid)
    assert got is not None
    assert got.refresh_jti == second
    assert await store.check(session.sid, "alice") is True
    # the old refresh token comes back: someone holds a stolen copy (RFC 9700 §4.14)
    assert await store.rotate_refresh(session.sid, first, secrets.token_urlsafe(16)) is Rotation.REUSED
    assert await store.check(session.sid, "alice") is False
    assert await store.check(sibling.sid, "alice") is False
    assert await store.rotate_refresh(session.sid, second, secrets.token_urlsafe(16)) is Rotation.INACTIVE


async def test_rotate_refresh_inactive_cases(store: ManagedStore, clock: FakeClock) -> None:
    assert await store.rotate_refresh(secrets.token_urlsafe(16), "a", "b") is Rotation.INACTIVE
    expiring = new_session(clock, ttl=10)
    revoked = new_session(clock)
    cut = new_session(clock)
    for session in (expiring, revoked, cut):
        await store.create_session(session)
    await store.revoke(revoked.sid)
    await store.revoke_all("alice")
    clock.advance(10)
    for session in (expiring, revoked, cut):
        assert await store.rotate_refresh(session.sid, session.refresh_jti, "new") is Rotation.INACTIVE
    cut_session = await store.get_session(cut.sid)
    assert cut_session is not None
    assert cut_session.refresh_jti == cut.refresh_jti


async def test_concurrent_rotations_rotate_once(store: ManagedStore, clock: FakeClock) -> None:
    session = new_session(clock)
    await store.create_session(session)
    results = await asyncio.gather(*(store.rotate_refresh(session.sid, session.refresh_jti, f"new-{i}")
                                     for i in range(10)))
    assert results.count(Rotation.ROTATED) == 1
    assert results.count(Rotation.REUSED) == 1  # the first loser revokes; the rest find it inactive
    assert results.count(Rotation.INACTIVE) == 8


async def test_concurrent_rotations_naming_one_successor_rotate_once_and_revoke_nothing(
        store: ManagedStore, clock: FakeClock) -> None:
    # two tabs refresh with the same token: both name the same successor, one rotates, the other is told
    session = new_session(clock)
    await store.create_session(session)
    results = await asyncio.gather(*(store.rotate_refresh(session.sid, session.refresh_jti, "succ",
                                                          concurrent=("succ", "older-succ"))
                                     for _ in range(10)))
    assert results.count(Rotation.ROTATED) == 1
    assert results.count(Rotation.CONCURRENT) == 9
    got = await store.get_session(session.sid)
    assert got is not None and not got.revoked
    assert got.refresh_jti == "succ"
    assert await store.check(session.sid, "alice") is True


async def test_concurrent_writes_nothing_and_other_successors_are_reuse(store: ManagedStore,
                                                                        clock: FakeClock) -> None:
    session = new_session(clock, family="fam")
    await store.create_session(session)
    assert await store.rotate_refresh(session.sid, session.refresh_jti, "succ") is Rotation.ROTATED
    clock.advance(3)
    outcome = await store.rotate_refresh(session.sid, session.refresh_jti, "other", concurrent=("x", "succ"))
    assert outcome is Rotation.CONCURRENT
    got = await store.get_session(session.sid)
    assert got is not None
    assert got.refresh_jti == "succ"  # not "other": nothing was written
    assert got.last_used == clock() - 3
    # a successor list that does not name the current jti is reuse, as without one
    assert await store.rotate_refresh(session.sid, session.refresh_jti, "y", concurrent=("y", "z")) \
        is Rotation.REUSED
    assert await store.check(session.sid, "alice") is False
    # and an inactive session is INACTIVE whatever the caller names
    assert await store.rotate_refresh(session.sid, session.refresh_jti, "succ", concurrent=("succ",)) \
        is Rotation.INACTIVE


# the per-user session cap (create_session's max_sessions) ------------------------------------------------


async def test_a_creation_past_the_cap_revokes_the_oldest_as_revoke_would(store: ManagedStore,
                                                                          clock: FakeClock) -> None:
    made = []
    for _ in range(3):
        made.append(new_session(clock))
        assert await store.create_session(made[-1], max_sessions=3) == []
        clock.advance(1)
    bob = new_session(clock, "bob", created=clock() - 10)  # older than all of alice's: another user's
    assert await store.create_session(bob, max_sessions=3) == []
    newest = new_session(clock)
    assert await store.create_session(newest, max_sessions=3) == [made[0].sid]
    assert [s.sid for s in await store.list_sessions("alice")] == [newest.sid, made[2].sid, made[1].sid]
    oldest = made[0]
    assert await store.check(oldest.sid, "alice") is False
    got = await store.get_session(oldest.sid)
    assert got == dataclasses.replace(oldest, revoked=True)
    assert await store.rotate_refresh(oldest.sid, oldest.refresh_jti, "new") is Rotation.INACTIVE
    assert await store.revoke(oldest.sid) is False  # already revoked
    for session in (*made[1:], newest):
        assert await store.check(session.sid, "alice") is True
    assert await store.check(bob.sid, "bob") is True


async def test_the_cap_counts_active_sessions_only(store: ManagedStore, clock: FakeClock) -> None:
    revoked, expiring, live = new_session(clock), new_session(clock, ttl=10), new_session(clock)
    for session in (revoked, expiring, live):
        await store.create_session(session)
    await store.revoke(revoked.sid)
    clock.advance(10)
    newer = new_session(clock)
    assert await store.create_session(newer, max_sessions=2) == []  # live and newer: two
    assert {s.sid for s in await store.list_sessions("alice")} == {live.sid, newer.sid}
    # a session dead at birth takes no place and evicts nothing at the cap (a login that read the epoch
    # before a revoke_all that has not happened yet here: epoch 0 stays current, so make it revoked)
    dead = new_session(clock, revoked=True)
    assert await store.create_session(dead, max_sessions=2) == []
    assert await store.check(live.sid, "alice") is True
    # without a cap nothing is evicted, however many there are
    extra = [new_session(clock) for _ in range(3)]
    for session in extra:
        assert await store.create_session(session) == []
    assert len(await store.list_sessions("alice")) == 5


async def test_a_user_above_the_cap_is_brought_down_to_it_by_the_next_creation(store: ManagedStore,
                                                                               clock: FakeClock) -> None:
    """Data from before the cap (or a lowered cap): the next login evicts every session past it, oldest
    first, in one step."""
    older = []
    for _ in range(6):
        older.append(new_session(clock))
        await store.create_session(older[-1])
        clock.advance(1)
    newest = new_session(clock)
    assert await store.create_session(newest, max_sessions=2) == [s.sid for s in older[:5]]
    assert [s.sid for s in await store.list_sessions("alice")] == [newest.sid, older[5].sid]
    for session in older[:5]:
        assert await store.check(session.sid, "alice") is False


async def test_the_new_session_is_never_the_one_evicted(store: ManagedStore, clock: FakeClock) -> None:
    """A node whose clock is behind stamps its session older than the others: it still survives, and the
    oldest of the others goes."""
    first, second = new_session(clock), new_session(clock, created=clock() + 1)
    await store.create_session(first)
    await store.create_session(second)
    skewed = new_session(clock, created=clock() - 100)
    assert await store.create_session(skewed, max_sessions=2) == [first.sid]
    assert await store.check(skewed.sid, "alice") is True
    assert await store.check(second.sid, "alice") is True
    only = new_session(clock, created=clock() - 200)
    assert await store.create_session(only, max_sessions=1) == [skewed.sid, second.sid]  # oldest first
    assert [s.sid for s in await store.list_sessions("alice")] == [only.sid]


async def test_ties_on_created_are_broken_by_sid(store: ManagedStore, clock: FakeClock) -> None:
    same = [dataclasses.replace(new_session(clock), sid=f"sid-{c}") for c in "cab"]
    for session in same:
        await store.create_session(session)
    clock.advance(1)
    assert await store.create_session(new_session(clock), max_sessions=2) == ["sid-a", "sid-b"]


async def test_an_older_epoch_takes_no_place_under_the_cap(store: ManagedStore, clock: FakeClock) -> None:
    cut = new_session(clock)
    await store.create_session(cut)
    epoch = await store.revoke_all("alice")
    kept = new_session(clock, epoch=epoch)
    await store.create_session(kept)
    clock.advance(1)
    assert await store.create_session(new_session(clock, epoch=epoch), max_sessions=2) == []
    assert await store.check(kept.sid, "alice") is True


@pytest.mark.parametrize("max_sessions", [0, -1, 1001, True, 1.5, "3"])
async def test_create_session_refuses_a_cap_out_of_range(store: ManagedStore, clock: FakeClock,
                                                         max_sessions: object) -> None:
    session = new_session(clock)
    with pytest.raises(ValueError, match="max_sessions"):
        await store.create_session(session, max_sessions=max_sessions)  # type: ignore[arg-type]
    assert await store.get_session(session.sid) is None


async def test_logins_racing_at_the_cap_on_two_nodes_leave_the_cap(backend: str, store: ManagedStore,
                                                                   clock: FakeClock, tmp_path: Path,
                                                                   request: pytest.FixtureRequest) -> None:
    """Ten logins of one user at once, half through a second store on the same data where the backend can
    have one (another process's connection; LevelDB is one process, memory one object): the cap holds, and
    every session but the three kept is reported evicted exactly once."""
    shared = backend in ("sqlite", "redis", "postgresql")
    other = open_store(store_url(backend, tmp_path, request), clock=clock) if shared else store
    async with contextlib.AsyncExitStack() as stack:
        if shared:
            await stack.enter_async_context(other)
        for session in (new_session(clock) for _ in range(3)):
            await store.create_session(session)
        clock.advance(1)
        racing = [new_session(clock) for _ in range(10)]
        results = await asyncio.gather(*((store if i % 2 else other).create_session(s, max_sessions=3)
                                         for i, s in enumerate(racing)))
        live = await store.list_sessions("alice")
        assert len(live) == 3
        gone = [sid for result in results for sid in result]
        assert len(gone) == len(set(gone)) == 10
        assert {s.sid for s in live} <= {s.sid for s in racing}
        for sid in gone:
            assert await other.check(sid, "alice") is False


async def test_the_feed_carries_each_eviction(store: ManagedStore, clock: FakeClock) -> None:
    """On a store with a revocation feed, an eviction is in it as a revoke() is: one SESSION entry per evicted
    session, so every node's mirror refuses its access tokens."""
    if not isinstance(store, RevocationFeed):
        pytest.skip(f"{type(store).__name__} has no revocation feed")
    older = [new_session(clock) for _ in range(3)]
    for session in older:
        await store.create_session(session)
    _, cursor = await store.feed_load()
    clock.advance(1)
    gone = await store.create_session(new_session(clock), max_sessions=2)
    assert gone == sorted(s.sid for s in older)[:2]
    entries: list[Revocation] = []
    deadline = asyncio.get_running_loop().time() + 5
    while len(entries) < 2:
        assert asyncio.get_running_loop().time() < deadline, entries
        found, cursor = await store.feed_read(cursor, wait=0.2)
        entries += found
    assert sorted((e.kind, e.subject, e.at) for e in entries) == sorted(
        (RevocationKind.SESSION, sid, clock()) for sid in gone)
    assert (await store.feed_read(cursor, wait=0))[0] == []
    mirror = RevocationMirror(store, window=60, clock=clock)
    await mirror.step()
    for sid in gone:
        assert mirror.lookup(sid, "alice") is False


# single-use tokens --------------------------------------------------------------------------------------


async def test_consume_once(store: ManagedStore, clock: FakeClock) -> None:
    assert await store.consume("jti-1", clock() + 60) is True
    assert await store.consume("jti-1", clock() + 60) is False
    assert await store.consume("jti-2", clock() + 60) is True
    assert await store.consume("jti-3", clock()) is False  # already expired: the token is dead anyway


async def test_50_concurrent_consumes_exactly_one_wins(store: ManagedStore, clock: FakeClock) -> None:
    results = await asyncio.gather(*(store.consume("race", clock() + 60) for _ in range(50)))
    assert results.count(True) == 1
    assert results.count(False) == 49


async def test_consumed_stays_consumed_until_expiry(store: ManagedStore, clock: FakeClock) -> None:
    assert await store.consume("jti", clock() + 60) is True
    clock.advance(59)
    await store.purge()
    assert await store.consume("jti", clock() + 1) is False


# throttling ---------------------------------------------------------------------------------------------


async def test_throttle_counts_within_the_window(store: ManagedStore, clock: FakeClock) -> None:
    assert await store.throttle_get("ip:1") == ThrottleState(0, 0.0)
    assert await store.throttle_hit("ip:1", 60) == ThrottleState(1, clock())
    clock.advance(30)
    assert await store.throttle_hit("ip:1", 60) == ThrottleState(2, clock())
    assert await store.throttle_get("ip:1") == ThrottleState(2, clock())
    assert await store.throttle_get("ip:2") == ThrottleState(0, 0.0)
    clock.advance(60)  # window ends 60 s after the last failure
    assert await store.throttle_get("ip:1") == ThrottleState(0, 0.0)
    assert await store.throttle_hit("ip:1", 60) == ThrottleState(1, clock())


async def test_throttle_clear_forgets(store: ManagedStore, clock: FakeClock) -> None:
    await store.throttle_hit("user:alice", 60)
    await store.throttle_hit("user:alice", 60)
    await store.throttle_clear("user:alice")
    assert await store.throttle_get("user:alice") == ThrottleState(0, 0.0)
    await store.throttle_clear("user:nobody")
    assert await store.throttle_hit("user:alice", 60) == ThrottleState(1, clock())


async def test_concurrent_throttle_hits_all_count(store: ManagedStore) -> None:
    await asyncio.gather(*(store.throttle_hit("burst", 60) for _ in range(20)))
    assert (await store.throttle_get("burst")).failures == 20


# upkeep, faults, lifecycle ------------------------------------------------------------------------------


async def test_records_follow_active_sessions_only(store: ManagedStore, clock: FakeClock) -> None:
    for _ in range(30):
        await store.create_session(new_session(clock, ttl=60))
        await store.consume(secrets.token_urlsafe(8), clock() + 60)
    await store.throttle_hit("ip", 60)
    assert await store.revoke_all("bob") == 1
    clock.advance(2 * 86400)  # past every expiry
    live = new_session(clock, ttl=3600)
    await store.create_session(live)
    removed = await store.purge()
    kind = type(store).__name__
    if raw.expires_by_ttl(store):
        assert removed == 0
        await raw.assert_every_key_has_ttl(store, clock)
    else:
        assert removed == 30 + 30 + 1  # sessions, consumed ids, the throttle: never the epoch
        # what is left: the live session and bob's epoch (one small integer per account that used revoke_all)
        assert await raw.record_count(store) == raw.RECORDS_PER_SESSION[kind] + 1 + raw.FIXED_RECORDS[kind]
    assert await store.get_epoch("bob") == 1  # purge keeps epochs: the counter never restarts
    assert await store.check(live.sid, "alice") is True
    assert await store.purge() == 0
    assert await store.revoke_all("bob") == 2


async def test_corrupt_session_record_reads_as_revoked(store: ManagedStore, clock: FakeClock,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    session = new_session(clock)
    await store.create_session(session)
    await raw.corrupt_session(store, session.sid)
    with caplog.at_level(logging.WARNING, logger="jwtkit.store"):
        assert await store.check(session.sid, "alice") is False
        got = await store.get_session(session.sid)
        assert got is not None
        assert got.revoked is True
        assert await store.rotate_refresh(session.sid, session.refresh_jti, "new") is Rotation.INACTIVE
        assert session.sid not in [s.sid for s in await store.list_sessions("alice")]
        assert await store.revoke(session.sid) is False
    assert any("treated as revoked" in r.getMessage() for r in caplog.records)


async def test_ping_and_lifecycle(store: ManagedStore) -> None:
    await store.ping()
    await store.open()  # idempotent
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(StoreUnavailable) as caught:
        await store.check("sid", "alice")
    assert caught.value.code == "store_unavailable"
    with pytest.raises(StoreUnavailable):
        await store.ping()


async def test_async_with_opens_and_closes(backend: str, clock: FakeClock, tmp_path: Path,
                                           request: pytest.FixtureRequest) -> None:
    url = store_url(backend, tmp_path, request)
    session = new_session(clock)
    async with open_store(url, clock=clock) as store:
        await store.create_session(session)
        assert await store.check(session.sid, "alice") is True
    with pytest.raises(StoreUnavailable):
        await store.check(session.sid, "alice")
    if backend != "memory":  # persistent backends: reopening finds the session again
        async with open_store(url, clock=clock) as again:
            assert await again.check(session.sid, "alice") is True
            reopened = await again.get_session(session.sid)
            assert reopened is not None
            assert dataclasses.asdict(reopened) == dataclasses.asdict(session)


async def test_hostile_strings_never_crash(store: ManagedStore, clock: FakeClock) -> None:
    """Ids and keys come from tokens and forms: lone surrogates (valid in JSON, not in UTF-8), NUL, huge."""
    for odd in ("\ud800", "a\x00b", "x" * 10_000, "", "ü:*?[]{}"):
        assert await store.check(odd, odd) is False
        assert await store.get_session(odd) is None
        assert await store.revoke(odd) is False
        assert await store.revoke_family(odd) == 0
        assert await store.list_sessions(odd) == []
        assert await store.get_epoch(odd) == 0
        assert await store.rotate_refresh(odd, odd, "new") is Rotation.INACTIVE
        await store.touch(odd, clock())
        assert await store.consume(odd, clock() + 60) is True
        assert await store.consume(odd, clock() + 60) is False
        assert await store.throttle_hit(odd, 60) == ThrottleState(1, clock())
        assert await store.throttle_get(odd) == ThrottleState(1, clock())
        await store.throttle_clear(odd)
        assert await store.throttle_get(odd) == ThrottleState(0, 0.0)
        assert await store.revoke_all(odd) == 1
        assert await store.get_epoch(odd) == 1
        if odd == "\ud800":
            continue  # no session for it: LevelDB's JSON cannot hold a lone surrogate (not an epoch matter)
        old, current = new_session(clock, odd, epoch=0), new_session(clock, odd, epoch=1)
        await store.create_session(old)
        await store.create_session(current)
        assert await store.check(old.sid, odd) is False
        assert await store.check(current.sid, odd) is True
        assert [s.sid for s in await store.list_sessions(odd)] == [current.sid]
        assert await store.revoke_all(odd) == 2
        assert await store.check(current.sid, odd) is False
