"""Known devices (OWASP's device cookies): an attacker who fails on purpose cannot lock an account's owner
out of the devices the owner signed in from (issue 14: five wrong passwords for a name, from anywhere, made
the owner's right password get 429 from any other address). Every test runs on the memory and SQLite
stores."""

from __future__ import annotations

import pytest

from jwtkit import decode_unverified
from jwtkit.service import AuthService, InvalidCredentials, Throttled, User
from jwtkit.service._tokens import DEVICE_TYP

from .conftest import PASSWORD, FakeClock, ServiceFactory

ATTACKER = "198.51.100.66"
HOME = "203.0.113.10"


async def lock_out(service: AuthService, username: str = "alice", ip: str = ATTACKER, *,
                   device: str = "") -> None:
    """Fail until the counter these attempts land on waits (the threshold's worth of wrong passwords)."""
    for _ in range(service.config.throttle_threshold):
        with pytest.raises(InvalidCredentials):
            await service.login(username, "wrong password!", ip=ip, device=device)


async def test_a_login_returns_a_known_device_token_for_its_account(service: AuthService, alice: User,
                                                                    clock: FakeClock) -> None:
    pair = await service.login("alice", PASSWORD, ip=HOME)
    header, claims = decode_unverified(pair.device_token)
    assert header["typ"] == DEVICE_TYP
    assert claims["sub"] == alice.id and claims["purpose"] == "known-device"
    assert claims["exp"] - claims["iat"] == service.config.device_ttl == 180 * 86400
    assert "alice" not in pair.device_token and pair.device_token not in repr(pair)
    again = await service.login("alice", PASSWORD, ip=HOME, device=pair.device_token)
    assert again.device_token != pair.device_token  # a new one at every login


async def test_the_owners_known_device_gets_in_while_an_attacker_has_locked_the_account(
        service: AuthService, alice: User) -> None:
    device = (await service.login("alice", PASSWORD, ip=HOME)).device_token
    await lock_out(service)
    with pytest.raises(Throttled):  # an unknown device waits, even with the right password
        await service.login("alice", PASSWORD, ip=HOME)
    pair = await service.login("alice", PASSWORD, ip=HOME, device=device)
    assert pair.session.user_id == alice.id
    with pytest.raises(Throttled):  # and the owner's login did not lift the lock for the attacker
        await service.login("alice", "another guess!", ip=ATTACKER)


async def test_a_known_device_has_a_counter_of_its_own(service: AuthService, alice: User,
                                                       clock: FakeClock) -> None:
    device = (await service.login("alice", PASSWORD, ip=HOME)).device_token
    await lock_out(service, ip=HOME, device=device)  # the owner mistypes, on the known device
    # the account's counter for unknown devices was not touched: a new device is not slowed down
    await service.login("alice", PASSWORD, ip="192.0.2.1")
    # the device's own counter waits, so it is an unknown device again: its next failure counts on the
    # account, and a device that keeps failing cannot get more guesses than an unknown one
    with pytest.raises(InvalidCredentials):
        await service.login("alice", "wrong password!", ip=HOME, device=device)
    clock.advance(1.0)
    await service.login("alice", PASSWORD, ip=HOME, device=device)


async def test_a_device_token_helps_only_its_own_account(service: AuthService, alice: User) -> None:
    await service.register("bob", PASSWORD)
    bobs_device = (await service.login("bob", PASSWORD, ip=HOME)).device_token
    await lock_out(service)
    with pytest.raises(Throttled):
        await service.login("alice", PASSWORD, ip=HOME, device=bobs_device)


@pytest.mark.parametrize("device", ["", "garbage", "a.b.c", "x" * 5000])
async def test_anything_but_a_valid_device_token_is_an_unknown_device(service: AuthService, alice: User,
                                                                      device: str) -> None:
    await lock_out(service)
    with pytest.raises(Throttled):
        await service.login("alice", PASSWORD, ip=HOME, device=device)


async def test_other_tokens_of_the_service_are_not_device_tokens(service: AuthService, alice: User) -> None:
    pair = await service.login("alice", PASSWORD, ip=HOME)
    await lock_out(service)
    for other in (pair.access_token, pair.refresh_token):
        with pytest.raises(Throttled):
            await service.login("alice", PASSWORD, ip=HOME, device=other)


async def test_an_expired_device_token_is_an_unknown_device(make_service: ServiceFactory,
                                                            clock: FakeClock) -> None:
    async with make_service(device_ttl=3600) as service:
        await service.register("alice", PASSWORD)
        device = (await service.login("alice", PASSWORD, ip=HOME)).device_token
        clock.advance(3601)
        await lock_out(service)
        with pytest.raises(Throttled):
            await service.login("alice", PASSWORD, ip=HOME, device=device)


async def test_a_device_token_of_another_key_ring_is_an_unknown_device(make_service: ServiceFactory,
                                                                       tmp_path: object) -> None:
    from jwtkit.service import KeyRing
    async with make_service() as service:
        await service.register("alice", PASSWORD)
        await lock_out(service)
        other = KeyRing.generate()
        forged = (await _login_elsewhere(other, service)).device_token
        with pytest.raises(Throttled):
            await service.login("alice", PASSWORD, ip=HOME, device=forged)


async def _login_elsewhere(keys: object, like: AuthService) -> object:
    """A login on a service with the same accounts' names but other keys: a well-formed device token that
    this service never signed."""
    from jwtkit.service import MemoryUserRepository
    from jwtkit.store import open_store
    service = AuthService(store=open_store("memory://"), users=MemoryUserRepository(), keys=keys,  # type: ignore[arg-type]
                          config=like.config, clock=like.clock, hasher=like.hasher)
    async with service:
        await service.register("alice", PASSWORD)
        return await service.login("alice", PASSWORD)
