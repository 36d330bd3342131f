"""Refresh rotation and reuse detection, logout, log out everywhere, session listing and revocation. The
reuse and logout-everywhere tests also run against a real redis-server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from jwtkit import decode_unverified
from jwtkit.service import (
    AuthService,
    InvalidToken,
    KeyRing,
    MemoryMailer,
    RefreshReused,
    SessionRevoked,
    TokenExpired,
    User,
)
from jwtkit.store import open_store

from .conftest import (
    PASSWORD,
    REUSE_AFTER,
    CountingHasher,
    FakeClock,
    ServiceFactory,
    make_users,
    store_url_for,
)


@pytest.fixture(params=["memory", "sqlite", pytest.param("redis", marks=pytest.mark.redis),
                        pytest.param("postgresql", marks=pytest.mark.postgresql)])
async def any_service(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock, hasher: CountingHasher,
    mailer: MemoryMailer, keys: KeyRing,
) -> AsyncIterator[AuthService]:
    """An opened service on the memory and SQLite stores, a real redis-server and a real PostgreSQL."""
    kind: str = request.param
    url = (request.getfixturevalue({"redis": "redis_url", "postgresql": "postgres_url"}[kind])
           if kind in ("redis", "postgresql") else store_url_for(kind, tmp_path))
    users = make_users("sqlite" if kind == "sqlite" else "memory", tmp_path)
    svc = AuthService(store=open_store(url, clock=clock), users=users, keys=keys, mailer=mailer,
                      clock=clock, hasher=hasher)
    async with svc:
        yield svc


async def test_refresh_rotates(
    service: AuthService, alice: User, clock: FakeClock
) -> None:
    first = await service.login("alice", PASSWORD)
    clock.advance(600)
    second = await service.refresh(first.refresh_token)
    assert second.refresh_token != first.refresh_token
    assert second.access_token != first.access_token
    assert second.session.sid == first.session.sid
    assert second.session.family == first.session.family
    assert second.session.last_used == clock.now
    _, claims = decode_unverified(second.refresh_token)
    assert claims["jti"] == second.session.refresh_jti != first.session.refresh_jti
    # the refresh token's lifetime is the session's: absolute, not sliding
    assert claims["exp"] == int(first.session.expires)
    assert second.refresh_expires_in == 14 * 86400 - 600
    principal = await service.authenticate(second.access_token)
    assert principal.session_id == first.session.sid
    third = await service.refresh(second.refresh_token)
    await service.authenticate(third.access_token)


async def test_refresh_updates_last_used_in_listing(
    service: AuthService, alice: User, clock: FakeClock
) -> None:
    first = await service.login("alice", PASSWORD)
    clock.advance(120)
    await service.refresh(first.refresh_token)
    [session] = await service.list_sessions(alice.id)
    assert session.last_used == clock.now


async def test_refresh_reuse_revokes_the_session(any_service: AuthService, clock: FakeClock) -> None:
    service = any_service
    await service.register("alice", PASSWORD)
    first = await service.login("alice", PASSWORD)
    second = await service.refresh(first.refresh_token)
    clock.advance(REUSE_AFTER)
    # the old refresh token comes back (stolen and replayed, RFC 9700 §4.14)
    with pytest.raises(RefreshReused) as info:
        await service.refresh(first.refresh_token)
    assert info.value.code == "refresh_reused"
    # the whole session is gone: the legitimate holder's tokens die too
    with pytest.raises(SessionRevoked):
        await service.authenticate(second.access_token)
    with pytest.raises(SessionRevoked):
        await service.refresh(second.refresh_token)
    with pytest.raises(SessionRevoked):
        await service.authenticate(first.access_token)


async def test_two_tabs_refreshing_at_once_rotate_once_and_both_stay_signed_in(
        any_service: AuthService, clock: FakeClock) -> None:
    service = any_service
    await service.register("alice", PASSWORD)
    first = await service.login("alice", PASSWORD, user_agent="Firefox")
    clock.advance(900)
    one, two = await asyncio.gather(service.refresh(first.refresh_token, user_agent="Firefox"),
                                    service.refresh(first.refresh_token, user_agent="Firefox"))
    jtis = {decode_unverified(pair.refresh_token)[1]["jti"] for pair in (one, two)}
    [session] = await service.list_sessions(one.session.user_id)
    assert jtis == {session.refresh_jti}  # one rotation; both tabs hold the current refresh token
    assert session.refresh_jti != first.session.refresh_jti
    for pair in (one, two):
        assert (await service.authenticate(pair.access_token)).session_id == first.session.sid
    # either tab's copy rotates on from there
    third = await service.refresh(two.refresh_token, user_agent="Firefox")
    await service.authenticate(third.access_token)


async def test_a_just_rotated_token_is_concurrent_for_one_to_two_windows_then_reuse(
        any_service: AuthService, clock: FakeClock) -> None:
    service = any_service
    await service.register("alice", PASSWORD)
    first = await service.login("alice", PASSWORD, user_agent="Firefox")
    assert clock.now % 10 == 0  # a slot boundary: the reach below is exact
    second = await service.refresh(first.refresh_token, user_agent="Firefox")
    clock.advance(19)  # the next slot: still the same moment for two tabs
    late = await service.refresh(first.refresh_token, user_agent="Firefox")
    jti_of = [decode_unverified(pair.refresh_token)[1]["jti"] for pair in (late, second)]
    assert jti_of[0] == jti_of[1]
    clock.advance(1)  # two slots on: reuse, and the family ends (RFC 9700 §4.14)
    with pytest.raises(RefreshReused) as info:
        await service.refresh(first.refresh_token, user_agent="Firefox")
    assert info.value.reason == "reused"
    with pytest.raises(SessionRevoked):
        await service.authenticate(second.access_token)


async def test_a_concurrent_refresh_from_another_device_is_refused_without_ending_the_session(
        any_service: AuthService, clock: FakeClock) -> None:
    service = any_service
    await service.register("alice", PASSWORD)
    first = await service.login("alice", PASSWORD, user_agent="Firefox")
    second = await service.refresh(first.refresh_token, user_agent="Firefox")
    with pytest.raises(RefreshReused) as info:
        await service.refresh(first.refresh_token, user_agent="curl/8.0")
    assert info.value.reason == "other_device"
    await service.authenticate(second.access_token)  # the owner's session goes on
    await service.refresh(second.refresh_token, user_agent="Firefox")


async def test_without_a_race_window_any_second_use_is_reuse(make_service: ServiceFactory) -> None:
    async with make_service(refresh_race_window=0) as service:
        await service.register("alice", PASSWORD)
        first = await service.login("alice", PASSWORD)
        second = await service.refresh(first.refresh_token)
        with pytest.raises(RefreshReused):
            await service.refresh(first.refresh_token)
        with pytest.raises(SessionRevoked):
            await service.authenticate(second.access_token)


async def test_reuse_leaves_other_sessions_alone(any_service: AuthService, clock: FakeClock) -> None:
    service = any_service
    await service.register("alice", PASSWORD)
    phone = await service.login("alice", PASSWORD)
    laptop = await service.login("alice", PASSWORD)
    await service.refresh(phone.refresh_token)
    clock.advance(REUSE_AFTER)
    with pytest.raises(RefreshReused):
        await service.refresh(phone.refresh_token)
    await service.authenticate(laptop.access_token)
    await service.refresh(laptop.refresh_token)


async def test_logout_all_ends_every_session(any_service: AuthService, clock: FakeClock) -> None:
    service = any_service
    alice = await service.register("alice", PASSWORD)
    bob = await service.register("bob", PASSWORD)
    pairs = [await service.login("alice", PASSWORD) for _ in range(3)]
    bobs = await service.login("bob", PASSWORD)
    clock.advance(1)
    await service.logout_all(alice.id)
    for pair in pairs:
        with pytest.raises(SessionRevoked):
            await service.authenticate(pair.access_token)
        with pytest.raises(SessionRevoked):
            await service.refresh(pair.refresh_token)
    assert await service.list_sessions(alice.id) == []
    await service.authenticate(bobs.access_token)
    assert len(await service.list_sessions(bob.id)) == 1
    # a new login afterwards works
    clock.advance(1)
    fresh = await service.login("alice", PASSWORD)
    await service.authenticate(fresh.access_token)


async def test_logout_all_in_the_same_clock_tick(service: AuthService, alice: User) -> None:
    """The store's cut-off spares sessions created at the very same instant; the service kills them too."""
    pair = await service.login("alice", PASSWORD)
    await service.logout_all(alice.id)  # clock not advanced
    with pytest.raises(SessionRevoked):
        await service.authenticate(pair.access_token)


async def test_logout_ends_one_session_and_is_idempotent(service: AuthService, alice: User) -> None:
    phone = await service.login("alice", PASSWORD)
    laptop = await service.login("alice", PASSWORD)
    await service.logout(phone.session.sid)
    await service.logout(phone.session.sid)
    await service.logout("no-such-session")
    with pytest.raises(SessionRevoked):
        await service.authenticate(phone.access_token)
    with pytest.raises(SessionRevoked):
        await service.refresh(phone.refresh_token)
    await service.authenticate(laptop.access_token)


async def test_list_sessions(
    service: AuthService, alice: User, clock: FakeClock
) -> None:
    phone = await service.login("alice", PASSWORD, ip="198.51.100.1", user_agent="Phone/1")
    clock.advance(10)
    laptop = await service.login("alice", PASSWORD, ip="198.51.100.2", user_agent="Laptop/1")
    sessions = await service.list_sessions(alice.id)
    assert [s.sid for s in sessions] == [laptop.session.sid, phone.session.sid]  # newest first
    assert [(s.ip, s.user_agent) for s in sessions] == [
        ("198.51.100.2", "Laptop/1"), ("198.51.100.1", "Phone/1")
    ]
    assert sessions[1].created == phone.session.created


async def test_revoke_session_stolen_device(service: AuthService, alice: User) -> None:
    bob = await service.register("bob", PASSWORD)
    phone = await service.login("alice", PASSWORD)
    laptop = await service.login("alice", PASSWORD)
    bobs = await service.login("bob", PASSWORD)
    # bob cannot revoke alice's session
    assert await service.revoke_session(bob.id, phone.session.sid) is False
    await service.authenticate(phone.access_token)
    assert await service.revoke_session(alice.id, phone.session.sid) is True
    assert await service.revoke_session(alice.id, phone.session.sid) is False
    assert await service.revoke_session(alice.id, "no-such") is False
    with pytest.raises(SessionRevoked):
        await service.authenticate(phone.access_token)
    await service.authenticate(laptop.access_token)
    await service.authenticate(bobs.access_token)
    assert [s.sid for s in await service.list_sessions(alice.id)] == [laptop.session.sid]


async def test_session_ends_after_refresh_ttl(make_service: ServiceFactory, clock: FakeClock) -> None:
    async with make_service(access_ttl=60, refresh_ttl=3600) as service:
        await service.register("alice", PASSWORD)
        pair = await service.login("alice", PASSWORD)
        for _ in range(59):
            clock.advance(60)
            pair = await service.refresh(pair.refresh_token)
        # near the end of the session the access token is cut to the session's end
        _, claims = decode_unverified(pair.access_token)
        assert claims["exp"] <= int(pair.session.expires)
        clock.advance(60)
        with pytest.raises(TokenExpired):
            await service.refresh(pair.refresh_token)


async def test_refresh_token_for_a_forged_session_is_refused(service: AuthService, alice: User) -> None:
    from jwtkit import encode

    pair = await service.login("alice", PASSWORD)
    _, claims = decode_unverified(pair.refresh_token)
    forged_sid = encode({**claims, "sid": "not-a-session"}, service.keys.active, typ="refresh+jwt")
    with pytest.raises(SessionRevoked):
        await service.refresh(forged_sid)
    other_family = encode({**claims, "fam": "other"}, service.keys.active, typ="refresh+jwt")
    with pytest.raises(InvalidToken):
        await service.refresh(other_family)


async def test_the_login_past_the_cap_ends_the_oldest_session(make_service: ServiceFactory, clock: FakeClock,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    async with make_service(max_sessions_per_user=2, revocation_mirror="off") as service:
        alice = await service.register("alice", PASSWORD)
        first = await service.login("alice", PASSWORD)
        clock.advance(1)
        second = await service.login("alice", PASSWORD)
        clock.advance(1)
        with caplog.at_level("INFO", logger="jwtkit.service"):
            third = await service.login("alice", PASSWORD)
        assert [s.sid for s in await service.list_sessions(alice.id)] == [third.session.sid,
                                                                          second.session.sid]
        with pytest.raises(SessionRevoked):
            await service.authenticate(first.access_token)
        with pytest.raises(SessionRevoked):
            await service.refresh(first.refresh_token)
        for pair in (second, third):
            assert (await service.authenticate(pair.access_token)).session_id == pair.session.sid
        await service.refresh(second.refresh_token)
        assert any("ended its 1 oldest session(s)" in r.getMessage() for r in caplog.records)
