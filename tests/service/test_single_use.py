"""Single-use tokens: email verification (24 h) and password reset (30 min), consumed atomically; a reset is
bound to the current password hash and ends every session; change_password ends them too."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from jwtkit import decode_unverified, encode
from jwtkit.service import (
    AuthService,
    InvalidCredentials,
    InvalidEmail,
    InvalidToken,
    MemoryMailer,
    SessionRevoked,
    Throttled,
    TokenExpired,
    User,
    UserNotFound,
    WeakPassword,
)
from jwtkit.service._tokens import email_binding

from .conftest import PASSWORD, FakeClock

NEW_PASSWORD = "a brand new passphrase"


def mailed_token(mailer: MemoryMailer) -> str:
    return mailer.sent[-1].body.split("token=", 1)[1].split()[0]


# email verification -----------------------------------------------------------------------------------


async def test_verification_mail_and_claims(
    service: AuthService, alice: User, mailer: MemoryMailer, clock: FakeClock
) -> None:
    await service.send_verification(alice.id)
    message = mailer.sent[-1]
    assert message.to == "alice@example.org"
    assert "http://127.0.0.1:8000/verify?token=" in message.body
    header, claims = decode_unverified(mailed_token(mailer))
    assert header["typ"] == "verify-email+jwt"
    assert claims["purpose"] == "verify-email"
    assert claims["sub"] == alice.id
    assert "email" not in claims  # links end up in logs: the token carries a hash of the address
    assert claims["emh"] == email_binding("alice@example.org")
    assert not any("alice" in str(value) for value in claims.values())
    assert claims["exp"] - claims["iat"] == 86400


async def test_verify_email_once(service: AuthService, alice: User, mailer: MemoryMailer) -> None:
    await service.send_verification(alice.id)
    token = mailed_token(mailer)
    user = await service.verify_email(token)
    assert user.verified is True
    stored = await service.get_user(alice.id)
    assert stored is not None
    assert stored.verified is True
    with pytest.raises(InvalidToken) as info:
        await service.verify_email(token)
    assert info.value.reason == "used"


async def test_verify_email_concurrent_clicks_one_wins(
    service: AuthService, alice: User, mailer: MemoryMailer
) -> None:
    await service.send_verification(alice.id)
    token = mailed_token(mailer)
    results = await asyncio.gather(*(service.verify_email(token) for _ in range(5)), return_exceptions=True)
    assert sum(isinstance(r, User) for r in results) == 1
    assert all(isinstance(r, InvalidToken) and r.reason == "used" for r in results if not isinstance(r, User))


async def test_verification_token_expires_after_24h(
    service: AuthService, alice: User, mailer: MemoryMailer, clock: FakeClock
) -> None:
    await service.send_verification(alice.id)
    token = mailed_token(mailer)
    clock.advance(86400)
    with pytest.raises(TokenExpired):
        await service.verify_email(token)


async def test_verification_token_dies_when_the_address_changes(
    service: AuthService, alice: User, mailer: MemoryMailer
) -> None:
    await service.send_verification(alice.id)
    token = mailed_token(mailer)
    await service.users.update(dataclasses.replace(alice, email="alice@elsewhere.example"))
    with pytest.raises(InvalidToken) as info:
        await service.verify_email(token)
    assert info.value.reason == "stale"


async def test_verification_wrong_purpose(service: AuthService, alice: User, mailer: MemoryMailer) -> None:
    await service.send_verification(alice.id)
    _, claims = decode_unverified(mailed_token(mailer))
    token = encode({**claims, "purpose": "reset-password"}, service.keys.active, typ="verify-email+jwt")
    with pytest.raises(InvalidToken) as info:
        await service.verify_email(token)
    assert info.value.reason == "wrong_type"


async def test_send_verification_edge_cases(service: AuthService, mailer: MemoryMailer) -> None:
    with pytest.raises(UserNotFound):
        await service.send_verification("no-such-user")
    bare = await service.register("bare", PASSWORD)
    with pytest.raises(InvalidEmail):
        await service.send_verification(bare.id)
    done = await service.register("done", PASSWORD, email="done@example.org", verified=True)
    before = len(mailer.sent)
    await service.send_verification(done.id)
    assert len(mailer.sent) == before


# password reset ----------------------------------------------------------------------------------------


async def test_forgot_password_by_username_and_by_email(
    service: AuthService, alice: User, mailer: MemoryMailer, clock: FakeClock
) -> None:
    await service.forgot_password("ALICE")
    assert mailer.sent[-1].to == "alice@example.org"
    assert "http://127.0.0.1:8000/password/reset?token=" in mailer.sent[-1].body
    header, claims = decode_unverified(mailed_token(mailer))
    assert header["typ"] == "reset+jwt"
    assert claims["purpose"] == "reset-password"
    assert claims["exp"] - claims["iat"] == 1800
    assert isinstance(claims["pwh"], str)
    assert alice.password_hash not in mailer.sent[-1].body
    await service.forgot_password("Alice@EXAMPLE.org")
    assert len(mailer.sent) == 2


async def test_forgot_password_reveals_nothing(service: AuthService, mailer: MemoryMailer) -> None:
    bare = await service.register("bare", PASSWORD)
    for value in ("nobody", "nobody@example.org", "bare", "@", "", "a" * 5000, "x@@y"):
        assert await service.forgot_password(value) is None
    assert len(mailer.sent) == 0
    assert bare.email is None


async def test_reset_password_ends_sessions_and_sets_the_password(
    service: AuthService, alice: User, mailer: MemoryMailer, clock: FakeClock
) -> None:
    pair = await service.login("alice", PASSWORD)
    await service.forgot_password("alice")
    token = mailed_token(mailer)
    clock.advance(60)
    await service.reset_password(token, NEW_PASSWORD)
    with pytest.raises(SessionRevoked):
        await service.authenticate(pair.access_token)
    with pytest.raises(SessionRevoked):
        await service.refresh(pair.refresh_token)
    with pytest.raises(InvalidCredentials):
        await service.login("alice", PASSWORD)
    fresh = await service.login("alice", NEW_PASSWORD)
    await service.authenticate(fresh.access_token)
    stored = await service.get_user(alice.id)
    assert stored is not None
    assert stored.verified is True  # the link went to the mailbox: it is the user's


async def test_reset_token_is_single_use_and_bound_to_the_password(
    service: AuthService, alice: User, mailer: MemoryMailer
) -> None:
    await service.forgot_password("alice")
    first = mailed_token(mailer)
    await service.forgot_password("alice")
    second = mailed_token(mailer)
    await service.reset_password(first, NEW_PASSWORD)
    with pytest.raises(InvalidToken) as info:
        await service.reset_password(first, "yet another passphrase")
    assert info.value.reason == "stale"  # the password changed: bound to the old hash
    # the second link was never used, but the password it was bound to is gone
    with pytest.raises(InvalidToken) as info:
        await service.reset_password(second, "yet another passphrase")
    assert info.value.reason == "stale"


async def test_reset_token_consumed_even_if_the_hash_stays(
    service: AuthService, alice: User, mailer: MemoryMailer
) -> None:
    """Consumption alone stops a replay: put the old hash back and the used token is still refused."""
    await service.forgot_password("alice")
    token = mailed_token(mailer)
    await service.reset_password(token, NEW_PASSWORD)
    await service.users.update(dataclasses.replace(alice, password_hash=alice.password_hash))
    with pytest.raises(InvalidToken) as info:
        await service.reset_password(token, "yet another passphrase")
    assert info.value.reason == "used"


async def test_reset_token_dies_after_a_password_change(
    service: AuthService, alice: User, mailer: MemoryMailer
) -> None:
    await service.forgot_password("alice")
    token = mailed_token(mailer)
    await service.change_password(alice.id, PASSWORD, NEW_PASSWORD)
    with pytest.raises(InvalidToken) as info:
        await service.reset_password(token, "yet another passphrase")
    assert info.value.reason == "stale"


async def test_reset_token_expires_after_30_minutes(
    service: AuthService, alice: User, mailer: MemoryMailer, clock: FakeClock
) -> None:
    await service.forgot_password("alice")
    token = mailed_token(mailer)
    clock.advance(1800)
    with pytest.raises(TokenExpired):
        await service.reset_password(token, NEW_PASSWORD)


async def test_weak_new_password_does_not_spend_the_token(
    service: AuthService, alice: User, mailer: MemoryMailer
) -> None:
    await service.forgot_password("alice")
    token = mailed_token(mailer)
    with pytest.raises(WeakPassword):
        await service.reset_password(token, "password123")
    await service.reset_password(token, NEW_PASSWORD)


async def test_reset_clears_the_login_lockout(
    service: AuthService, alice: User, mailer: MemoryMailer
) -> None:
    for _ in range(6):
        with pytest.raises((InvalidCredentials, Throttled)):
            await service.login("alice", "wrong password!")
    await service.forgot_password("alice")
    await service.reset_password(mailed_token(mailer), NEW_PASSWORD)
    await service.login("alice", NEW_PASSWORD)


# change password ---------------------------------------------------------------------------------------


async def test_change_password_ends_every_session(
    service: AuthService, alice: User, clock: FakeClock
) -> None:
    pair = await service.login("alice", PASSWORD)
    clock.advance(1)
    await service.change_password(alice.id, PASSWORD, NEW_PASSWORD)
    with pytest.raises(SessionRevoked):
        await service.authenticate(pair.access_token)
    with pytest.raises(InvalidCredentials):
        await service.login("alice", PASSWORD)
    await service.login("alice", NEW_PASSWORD)


async def test_change_password_checks_the_old_one_and_the_policy(service: AuthService, alice: User) -> None:
    with pytest.raises(InvalidCredentials):
        await service.change_password(alice.id, "wrong password!", NEW_PASSWORD)
    with pytest.raises(WeakPassword):
        await service.change_password(alice.id, PASSWORD, "short")
    with pytest.raises(UserNotFound):
        await service.change_password("nobody", PASSWORD, NEW_PASSWORD)
    await service.login("alice", PASSWORD)


async def test_change_password_is_throttled(service: AuthService, alice: User) -> None:
    for _ in range(5):
        with pytest.raises(InvalidCredentials):
            await service.change_password(alice.id, "wrong password!", NEW_PASSWORD)
    with pytest.raises(Throttled):
        await service.change_password(alice.id, PASSWORD, NEW_PASSWORD)
