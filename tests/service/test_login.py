"""Login: credentials, no user enumeration, throttling per username and per IP, disabled and unverified
accounts, rehash on login. Every test runs on the memory and SQLite stores."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from jwtkit.service import (
    AccountUnverified,
    AuthService,
    InvalidCredentials,
    Throttled,
    User,
)
from jwtkit.service._throttle import throttle_delay

from .conftest import PASSWORD, CountingHasher, FakeClock, ServiceFactory


async def test_login_returns_a_token_pair(
    service: AuthService, alice: User, clock: FakeClock
) -> None:
    pair = await service.login("ALICE", PASSWORD, ip="10.0.0.1", user_agent="pytest/1")
    assert pair.token_type == "Bearer"
    assert pair.expires_in == 900
    assert pair.refresh_expires_in == 14 * 86400
    assert pair.session.user_id == alice.id
    assert pair.session.ip == "10.0.0.1"
    assert pair.session.user_agent == "pytest/1"
    assert pair.session.created == clock.now
    principal = await service.authenticate(pair.access_token)
    assert principal.user_id == alice.id
    assert principal.session_id == pair.session.sid


async def test_unknown_user_and_wrong_password_are_indistinguishable(
    service: AuthService, alice: User, hasher: CountingHasher
) -> None:
    before = hasher.verify_calls
    with pytest.raises(InvalidCredentials) as wrong:
        await service.login("alice", "not the password")
    assert hasher.verify_calls == before + 1
    with pytest.raises(InvalidCredentials) as unknown:
        await service.login("mallory", "not the password")
    # the unknown user is checked against a dummy hash: same work as a real check
    assert hasher.verify_calls == before + 2
    assert type(wrong.value) is type(unknown.value)
    assert str(wrong.value) == str(unknown.value) == "invalid username or password"
    assert wrong.value.code == unknown.value.code == "invalid_credentials"


async def test_invalid_username_at_login_is_the_same_invalid_credentials(
    service: AuthService, hasher: CountingHasher
) -> None:
    before = hasher.verify_calls
    with pytest.raises(InvalidCredentials):
        await service.login("a b", PASSWORD)
    assert hasher.verify_calls == before + 1


async def test_oversized_password_is_refused_without_crashing(service: AuthService, alice: User) -> None:
    with pytest.raises(InvalidCredentials):
        await service.login("alice", PASSWORD + "x" * 5000)


def test_throttle_delay_grows_and_is_capped() -> None:
    from jwtkit.service import AuthConfig

    config = AuthConfig(throttle_base_delay=1.0, throttle_max_delay=60.0)
    assert [throttle_delay(n, config) for n in range(4, 12)] == [0, 1, 2, 4, 8, 16, 32, 60]
    assert throttle_delay(10_000, config) == 60.0


async def fail(service: AuthService, times: int, *, username: str = "alice", ip: str = "") -> None:
    for _ in range(times):
        with pytest.raises(InvalidCredentials):
            await service.login(username, "wrong password!", ip=ip)


async def test_five_failures_then_a_delay_that_a_correct_password_does_not_bypass(
    service: AuthService, alice: User, clock: FakeClock, hasher: CountingHasher
) -> None:
    await fail(service, 5)
    before = hasher.verify_calls
    with pytest.raises(Throttled) as locked:
        await service.login("alice", PASSWORD)
    assert locked.value.code == "throttled"
    assert locked.value.retry_after == pytest.approx(1.0)
    # refused before the password was checked
    assert hasher.verify_calls == before
    clock.advance(1.0)
    pair = await service.login("alice", PASSWORD)
    assert pair.session.user_id == alice.id


async def test_throttle_delay_doubles_with_each_further_failure(
    service: AuthService, alice: User, clock: FakeClock
) -> None:
    await fail(service, 5)
    for expected in (1.0, 2.0, 4.0, 8.0):
        with pytest.raises(Throttled) as locked:
            await service.login("alice", "wrong password!")
        assert locked.value.retry_after == pytest.approx(expected)
        clock.advance(expected)
        await fail(service, 1)  # allowed once the delay has passed, and counted
    with pytest.raises(Throttled) as locked:
        await service.login("alice", PASSWORD)
    assert locked.value.retry_after == pytest.approx(16.0)


async def test_four_failures_do_not_throttle(service: AuthService, alice: User) -> None:
    await fail(service, 4)
    await service.login("alice", PASSWORD)


async def test_success_clears_the_username_counter(
    service: AuthService, alice: User, clock: FakeClock
) -> None:
    await fail(service, 4)
    await service.login("alice", PASSWORD)
    await fail(service, 4)
    await service.login("alice", PASSWORD)  # would be throttled if the first four still counted


async def test_counter_resets_after_the_window(make_service: ServiceFactory, clock: FakeClock) -> None:
    async with make_service(throttle_window=60.0) as service:
        await service.register("alice", PASSWORD)
        await fail(service, 5)
        with pytest.raises(Throttled):
            await service.login("alice", PASSWORD)
        clock.advance(61.0)
        await service.login("alice", PASSWORD)


async def test_throttle_is_per_username_across_spellings(service: AuthService, alice: User) -> None:
    await fail(service, 3, username="alice")
    await fail(service, 2, username="ＡＬＩＣＥ")  # fullwidth: same normalised name, same counter
    with pytest.raises(Throttled):
        await service.login("Alice", PASSWORD)


async def test_unknown_usernames_are_throttled_too(service: AuthService) -> None:
    await fail(service, 5, username="nobody")
    with pytest.raises(Throttled):
        await service.login("nobody", "wrong password!")


async def test_throttle_per_ip_across_usernames(make_service: ServiceFactory, clock: FakeClock) -> None:
    # The address counter has its own threshold (100 by default, 5 here): one client spraying guesses over
    # many accounts is slowed down, whichever accounts it names.
    async with make_service(throttle_ip_threshold=5) as service:
        await service.register("bob", PASSWORD)
        for name in ("u1", "u2", "u3", "u4", "u5"):
            await fail(service, 1, username=name, ip="203.0.113.9")
        with pytest.raises(Throttled) as locked:
            await service.login("bob", PASSWORD, ip="203.0.113.9")
        assert locked.value.retry_after == pytest.approx(1.0)
        # another IP is not affected, and bob's own counter is clean
        await service.login("bob", PASSWORD, ip="198.51.100.7")


async def test_one_address_holds_many_users_before_it_is_slowed(service: AuthService, alice: User) -> None:
    # The issue: the per-address threshold equalled the per-account one (5), so five mistyped passwords
    # behind one office or carrier address throttled everyone there. By default it is 100.
    assert service.config.throttle_ip_threshold == 100
    for index in range(99):
        await fail(service, 1, username=f"colleague{index}", ip="203.0.113.9")
    await service.login("alice", PASSWORD, ip="203.0.113.9")
    await fail(service, 1, username="colleague99", ip="203.0.113.9")
    with pytest.raises(Throttled):
        await service.login("alice", PASSWORD, ip="203.0.113.9")


async def test_ip_counter_survives_a_successful_login(make_service: ServiceFactory, clock: FakeClock) -> None:
    async with make_service(throttle_ip_threshold=5) as service:
        await service.register("alice", PASSWORD)
        await service.register("bob", PASSWORD)
        for name in ("u1", "u2", "u3", "u4"):
            await fail(service, 1, username=name, ip="203.0.113.9")
        await service.login("alice", PASSWORD, ip="203.0.113.9")
        await fail(service, 1, username="u5", ip="203.0.113.9")
        with pytest.raises(Throttled):
            await service.login("bob", PASSWORD, ip="203.0.113.9")


async def test_a_disabled_account_answers_the_same_whatever_the_password(service: AuthService, alice: User,
                                                                         hasher: CountingHasher) -> None:
    await service.set_disabled(alice.id, True)
    for password in (PASSWORD, "wrong password!"):
        before = hasher.verify_calls
        with pytest.raises(InvalidCredentials) as info:
            await service.login("alice", password)
        assert (info.value.code, hasher.verify_calls - before) == ("invalid_credentials", 1)
    await service.set_disabled(alice.id, False)
    await service.login("alice", PASSWORD)


async def test_tries_on_a_disabled_account_are_throttled_even_with_its_password(service: AuthService,
                                                                                alice: User) -> None:
    await service.set_disabled(alice.id, True)
    for _ in range(service.config.throttle_threshold):
        with pytest.raises(InvalidCredentials):
            await service.login("alice", PASSWORD, ip="203.0.113.7")
    with pytest.raises(Throttled):
        await service.login("alice", PASSWORD, ip="203.0.113.7")


async def test_unverified_login_allowed_by_default(service: AuthService, alice: User) -> None:
    assert alice.verified is False
    await service.login("alice", PASSWORD)


async def test_unverified_login_refused_when_configured(make_service: ServiceFactory) -> None:
    async with make_service(allow_unverified_login=False) as service:
        await service.register("alice", PASSWORD)
        await service.register("bob", PASSWORD, verified=True)
        with pytest.raises(AccountUnverified) as info:
            await service.login("alice", PASSWORD)
        assert info.value.code == "account_unverified"
        await service.login("bob", PASSWORD)


async def test_rehash_at_login_when_parameters_change(
    service: AuthService, alice: User, hasher: CountingHasher
) -> None:
    assert "m=8,t=1,p=1" in alice.password_hash
    service.hasher.hasher = CountingHasher(time_cost=2, memory_cost=16)
    await service.login("alice", PASSWORD)
    stored = await service.get_user(alice.id)
    assert stored is not None
    assert "m=16,t=2,p=1" in stored.password_hash
    assert stored.password_hash != alice.password_hash
    await service.login("alice", PASSWORD)  # the new hash verifies


async def test_no_rehash_when_parameters_match(service: AuthService, alice: User) -> None:
    await service.login("alice", PASSWORD)
    stored = await service.get_user(alice.id)
    assert stored == alice


async def test_unreadable_stored_hash_is_a_failed_login(service: AuthService, alice: User) -> None:
    await service.users.update(dataclasses.replace(alice, password_hash="not-a-hash"))
    with pytest.raises(InvalidCredentials):
        await service.login("alice", PASSWORD)


async def test_a_concurrent_burst_cannot_outrun_the_counter(
    service: AuthService, alice: User, hasher: CountingHasher
) -> None:
    """20 guesses at once: only the first five are checked; the rest wait for the counter and are throttled
    (without serialising attempts per key they would all pass the check before any failure was counted)."""
    before = hasher.verify_calls
    results = await asyncio.gather(*(service.login("alice", f"guess number {i}") for i in range(20)),
                                   return_exceptions=True)
    assert sum(isinstance(r, InvalidCredentials) for r in results) == 5
    assert sum(isinstance(r, Throttled) for r in results) == 15
    assert hasher.verify_calls - before == 5
    assert service.throttle._locks == {}  # nothing left behind


async def test_a_concurrent_burst_from_one_ip_across_usernames(make_service: ServiceFactory) -> None:
    async with make_service(throttle_ip_threshold=5) as service:
        results = await asyncio.gather(
            *(service.login(f"user{i}", "wrong password!", ip="203.0.113.5") for i in range(12)),
            return_exceptions=True,
        )
    assert sum(isinstance(r, InvalidCredentials) for r in results) == 5
    assert sum(isinstance(r, Throttled) for r in results) == 7
