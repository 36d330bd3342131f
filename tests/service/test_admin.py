"""What an administrator does to an account (``jwtkit user delete | passwd | verify``): delete_user,
set_password and mark_verified, on the memory and SQLite backends. The login races of these operations are
in test_races.py."""

from __future__ import annotations

import pytest

from jwtkit.service import (
    AccessPolicy,
    AuthService,
    InvalidCredentials,
    InvalidEmail,
    InvalidToken,
    SessionRevoked,
    Throttled,
    User,
    UserNotFound,
    WeakPassword,
)

from .conftest import PASSWORD, FakeClock, ServiceFactory

NEW_PASSWORD = "an entirely new passphrase"


# delete_user ----------------------------------------------------------------------------------------------


async def test_a_deleted_users_tokens_are_refused(service: AuthService, alice: User) -> None:
    pair = await service.login("alice", PASSWORD)
    assert (await service.authenticate(pair.access_token)).user_id == alice.id  # cached as a live account
    deleted = await service.delete_user(alice.id)
    assert deleted == alice
    with pytest.raises(SessionRevoked) as refused:
        await service.authenticate(pair.access_token)
    assert refused.value.reason == "revoked"
    with pytest.raises(InvalidToken) as refused_refresh:
        await service.refresh(pair.refresh_token)
    assert refused_refresh.value.reason == "disabled"  # the account check: there is no account any more
    assert await service.get_user(alice.id) is None
    assert await service.find_user("alice") is None
    assert await service.list_users() == []
    assert await service.list_sessions(alice.id) == []
    with pytest.raises(InvalidCredentials):
        await service.login("alice", PASSWORD)


async def test_the_account_check_alone_refuses_a_deleted_account(service: AuthService, alice: User) -> None:
    """Without the session check (a policy built on the keys and the accounts only, with a cache), a deleted
    account's token is refused as soon as the policy forgets what it cached."""
    pair = await service.login("alice", PASSWORD)
    policy = AccessPolicy(keys=service.keys.keyset, issuer=service.config.issuer, accounts=service.users,
                          account_cache_ttl=0, clock=service.clock)
    assert (await policy.authenticate(pair.access_token)).user_id == alice.id
    await service.users.delete(alice.id)  # behind the service's back: no cut-off of the sessions
    with pytest.raises(InvalidToken) as refused:
        await policy.authenticate(pair.access_token)
    assert refused.value.reason == "disabled"
    with pytest.raises(InvalidToken) as refused:
        await service.access.check_account(alice.id)
    assert refused.value.reason == "disabled"


async def test_a_new_account_with_the_deleted_name_does_not_revive_old_tokens(
    service: AuthService, alice: User, clock: FakeClock
) -> None:
    old = await service.login("alice", PASSWORD)
    await service.delete_user(alice.id)
    clock.advance(1)
    again = await service.register("alice", PASSWORD)
    assert again.id != alice.id
    with pytest.raises(SessionRevoked):
        await service.authenticate(old.access_token)
    fresh = await service.login("alice", PASSWORD)
    assert (await service.authenticate(fresh.access_token)).user_id == again.id


async def test_delete_leaves_other_users_alone(service: AuthService, alice: User) -> None:
    bob = await service.register("bob", PASSWORD)
    bobs = await service.login("bob", PASSWORD)
    await service.delete_user(alice.id)
    assert (await service.authenticate(bobs.access_token)).user_id == bob.id
    assert await service.list_users() == [bob]


async def test_delete_an_unknown_user(service: AuthService, alice: User) -> None:
    await service.delete_user(alice.id)
    with pytest.raises(UserNotFound) as info:
        await service.delete_user(alice.id)
    assert info.value.code == "user_not_found"


# set_password ---------------------------------------------------------------------------------------------


async def test_set_password_ends_every_session_and_replaces_the_password(
    service: AuthService, alice: User
) -> None:
    pairs = [await service.login("alice", PASSWORD) for _ in range(2)]
    updated = await service.set_password(alice.id, NEW_PASSWORD)
    assert updated.password_hash != alice.password_hash
    assert (updated.id, updated.username, updated.email, updated.verified, updated.disabled) == (
        alice.id, alice.username, alice.email, alice.verified, alice.disabled)
    assert await service.get_user(alice.id) == updated
    for pair in pairs:
        with pytest.raises(SessionRevoked):
            await service.authenticate(pair.access_token)
        with pytest.raises(SessionRevoked):
            await service.refresh(pair.refresh_token)
    assert await service.list_sessions(alice.id) == []
    with pytest.raises(InvalidCredentials):
        await service.login("alice", PASSWORD)
    fresh = await service.login("alice", NEW_PASSWORD)
    assert (await service.authenticate(fresh.access_token)).user_id == alice.id


async def test_set_password_checks_strength_before_changing_anything(service: AuthService,
                                                                     alice: User) -> None:
    pair = await service.login("alice", PASSWORD)
    for weak in ("password", "short"):
        with pytest.raises(WeakPassword) as info:
            await service.set_password(alice.id, weak)
        assert info.value.code == "weak_password"
    assert await service.get_user(alice.id) == alice
    assert (await service.authenticate(pair.access_token)).user_id == alice.id


async def test_set_password_clears_the_login_throttle(make_service: ServiceFactory) -> None:
    async with make_service(throttle_threshold=2) as service:
        alice = await service.register("alice", PASSWORD)
        for _ in range(3):
            with pytest.raises((InvalidCredentials, Throttled)):
                await service.login("alice", "wrong guess")
        with pytest.raises(Throttled):
            await service.login("alice", PASSWORD)
        await service.set_password(alice.id, NEW_PASSWORD)
        await service.login("alice", NEW_PASSWORD)


async def test_set_password_keeps_edits_made_while_hashing(service: AuthService, alice: User) -> None:
    real_hash = service.hasher.hash

    async def slow_hash(password: str) -> str:
        await service.set_disabled(alice.id, True)  # another admin, while the hash is computed
        return await real_hash(password)

    service.hasher.hash = slow_hash  # type: ignore[method-assign]
    updated = await service.set_password(alice.id, NEW_PASSWORD)
    assert updated.disabled is True
    assert (await service.get_user(alice.id)) == updated


async def test_set_password_for_an_unknown_user(service: AuthService) -> None:
    with pytest.raises(UserNotFound):
        await service.set_password("no-such-id", NEW_PASSWORD)


# mark_verified --------------------------------------------------------------------------------------------


async def test_mark_verified(service: AuthService, alice: User) -> None:
    assert alice.verified is False
    updated = await service.mark_verified(alice.id)
    assert updated.verified is True
    assert await service.get_user(alice.id) == updated
    assert await service.mark_verified(alice.id) == updated  # idempotent


async def test_mark_verified_needs_an_email_address(service: AuthService) -> None:
    bob = await service.register("bob", PASSWORD)
    with pytest.raises(InvalidEmail) as info:
        await service.mark_verified(bob.id)
    assert info.value.code == "invalid_email"
    assert str(info.value) == "this account has no email address"
    assert await service.get_user(bob.id) == bob
    with pytest.raises(UserNotFound):
        await service.mark_verified("no-such-id")
