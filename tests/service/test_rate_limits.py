"""Rate limits on what costs the server a hash or sends a mail (issue 14: 30 requests sent 30 reset mails
to one user, and 60 registrations ran 60 argon2 hashes): registrations per client address, reset mails per
address and per target, verification mails per account; counted in the store, so they hold across nodes."""

from __future__ import annotations

import pytest

from jwtkit.service import AuthService, MemoryMailer, Throttled, User
from jwtkit.service._throttle import RATE_LIMITS

from .conftest import PASSWORD, CountingHasher, FakeClock, ServiceFactory


async def test_registrations_per_address(service: AuthService, hasher: CountingHasher,
                                         clock: FakeClock) -> None:
    limit, window = RATE_LIMITS[("register", "ip")]
    for n in range(limit):
        await service.register(f"user{n}", PASSWORD, ip="203.0.113.5")
    hashes = hasher.hash_calls
    with pytest.raises(Throttled) as info:
        await service.register("one-more", PASSWORD, ip="203.0.113.5")
    assert (info.value.code, info.value.retry_after, hasher.hash_calls) == ("throttled", window, hashes)
    await service.register("elsewhere", PASSWORD, ip="198.51.100.7")  # another address is not held back
    await service.register("by-the-admin", PASSWORD)  # no address: an admin's command
    clock.advance(window)
    await service.register("an-hour-later", PASSWORD, ip="203.0.113.5")


async def test_reset_mails_per_target_whether_or_not_it_exists(service: AuthService, alice: User,
                                                               mailer: MemoryMailer) -> None:
    limit, _ = RATE_LIMITS[("forgot", "target")]
    for n in range(limit):
        await service.forgot_password("alice", ip=f"203.0.113.{n}")
        await service.forgot_password("nobody-here", ip=f"203.0.113.{n}")
    sent = len(mailer.sent)
    assert sent == limit
    for who in ("alice", "ALICE", "nobody-here"):  # the same refusal for an account that does not exist
        with pytest.raises(Throttled):
            await service.forgot_password(who, ip="198.51.100.1")
    assert len(mailer.sent) == sent
    await service.forgot_password("alice@example.org", ip="198.51.100.1")  # the address is another target
    assert len(mailer.sent) == sent + 1


async def test_reset_requests_per_address(service: AuthService) -> None:
    limit, _ = RATE_LIMITS[("forgot", "ip")]
    for n in range(limit):
        await service.forgot_password(f"someone{n}", ip="203.0.113.9")
    with pytest.raises(Throttled):
        await service.forgot_password("someone-else", ip="203.0.113.9")


async def test_verification_mails_per_account(make_service: ServiceFactory, mailer: MemoryMailer) -> None:
    service = make_service(allow_unverified_login=True)
    async with service:
        user = await service.register("bob", PASSWORD, email="bob@example.org")
        limit, _ = RATE_LIMITS[("verify", "account")]
        for _ in range(limit):
            await service.send_verification(user.id)
        with pytest.raises(Throttled):
            await service.send_verification(user.id)
        assert len(mailer.sent) == limit


async def test_verification_mails_per_address_across_accounts(make_service: ServiceFactory,
                                                              mailer: MemoryMailer) -> None:
    service = make_service(allow_unverified_login=True)
    async with service:
        limit, _ = RATE_LIMITS[("verify", "ip")]
        per_account, _ = RATE_LIMITS[("verify", "account")]
        users = [await service.register(f"user{n}", PASSWORD, email=f"user{n}@example.org")
                 for n in range(limit // per_account + 1)]
        sent = 0
        with pytest.raises(Throttled):
            for user in users:
                for _ in range(per_account):
                    await service.send_verification(user.id, ip="203.0.113.7")
                    sent += 1
        assert sent == limit == len(mailer.sent)
        await service.send_verification(users[-1].id, ip="198.51.100.1")  # another address is not refused
        assert len(mailer.sent) == limit + 1


async def test_the_limits_hold_across_nodes(make_service: ServiceFactory, backend: str) -> None:
    if backend == "memory":
        pytest.skip("two memory stores share nothing; the SQLite file is shared")
    a, b = make_service(), make_service()
    async with a, b:
        limit, _ = RATE_LIMITS[("register", "ip")]
        for n in range(limit):
            await (a if n % 2 else b).register(f"user{n}", PASSWORD, ip="203.0.113.5")
        with pytest.raises(Throttled):
            await a.register("one-more", PASSWORD, ip="203.0.113.5")
