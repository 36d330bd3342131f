"""Access tokens: claims, verification order, typ separation between the four token kinds, audience, the
User-Agent binding, expiry and the disabled check."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jwtkit import Key, decode_unverified, encode
from jwtkit.service import (
    AuthService,
    InvalidToken,
    KeyRing,
    MemoryMailer,
    SessionRevoked,
    TokenExpired,
    User,
)
from jwtkit.service._tokens import ACCESS_TYP, REFRESH_TYP, RESET_TYP, VERIFY_EMAIL_TYP

from .conftest import PASSWORD, FakeClock, ServiceFactory


def mailed_token(mailer: MemoryMailer) -> str:
    return mailer.sent[-1].body.split("token=", 1)[1].split()[0]


async def all_kinds(service: AuthService, user: User, mailer: MemoryMailer) -> dict[str, str]:
    """One token of every kind the service issues."""
    pair = await service.login(user.username, PASSWORD)
    await service.send_verification(user.id)
    verify = mailed_token(mailer)
    await service.forgot_password(user.username)
    reset = mailed_token(mailer)
    return {"access": pair.access_token, "refresh": pair.refresh_token, "verify": verify, "reset": reset}


async def test_access_token_claims(service: AuthService, alice: User, clock: FakeClock) -> None:
    pair = await service.login("alice", PASSWORD)
    header, claims = decode_unverified(pair.access_token)
    assert header["typ"] == "at+jwt"  # RFC 9068 §2.1
    assert header["kid"] == service.keys.active.kid
    assert set(claims) == {"iss", "sub", "iat", "exp", "jti", "sid"}
    assert claims["iss"] == "jwtkit"
    assert claims["sub"] == alice.id
    assert claims["sid"] == pair.session.sid
    assert claims["iat"] == int(clock.now)
    assert claims["exp"] == int(clock.now) + 900
    assert isinstance(claims["jti"], str)
    assert len(claims["jti"]) >= 22


async def test_refresh_token_claims(service: AuthService, alice: User, clock: FakeClock) -> None:
    pair = await service.login("alice", PASSWORD)
    header, claims = decode_unverified(pair.refresh_token)
    assert header["typ"] == "refresh+jwt"
    assert set(claims) == {"iss", "sub", "sid", "fam", "jti", "iat", "exp"}
    assert claims["fam"] == pair.session.family
    assert claims["jti"] == pair.session.refresh_jti
    assert claims["exp"] == int(clock.now) + 14 * 86400


async def test_every_kind_is_refused_as_every_other_kind(
    service: AuthService, alice: User, mailer: MemoryMailer
) -> None:
    tokens = await all_kinds(service, alice, mailer)
    checks = {
        "access": lambda t: service.authenticate(t),
        "refresh": lambda t: service.refresh(t),
        "verify": lambda t: service.verify_email(t),
        "reset": lambda t: service.reset_password(t, "a brand new passphrase"),
    }
    for kind, token in tokens.items():
        for other, check in checks.items():
            if other == kind:
                continue
            with pytest.raises(InvalidToken) as info:
                await check(token)
            assert info.value.reason == "wrong_type", (kind, other)
            assert type(info.value) is InvalidToken
    # and each one still works where it belongs (nothing was spent by the refusals above)
    await service.authenticate(tokens["access"])
    await service.refresh(tokens["refresh"])
    await service.verify_email(tokens["verify"])
    await service.reset_password(tokens["reset"], "a brand new passphrase")


KINDS = {ACCESS_TYP: "access", REFRESH_TYP: "refresh", VERIFY_EMAIL_TYP: "verify", RESET_TYP: "reset"}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(minted=st.sampled_from(sorted(KINDS)), checked=st.sampled_from(sorted(KINDS)),
       extra=st.dictionaries(st.sampled_from(["purpose", "fam", "pwh", "emh", "agent"]),
                             st.text(max_size=8), max_size=3))
def test_property_a_token_signed_with_one_typ_never_passes_as_another(
    keys: KeyRing, minted: str, checked: str, extra: dict[str, Any]
) -> None:
    """Whatever claims a validly signed token carries, its typ decides which check may accept it (the one
    decode step every token kind goes through)."""
    from jwtkit.service._access import decode_token

    claims = {"iss": "jwtkit", "sub": "u", "sid": "s", "jti": "j", "fam": "f", "iat": 0, "exp": 4_000_000_000,
              **extra}
    token = encode(claims, keys.active, typ=minted)
    options: dict[str, Any] = {"typ": checked, "issuer": "jwtkit", "audience": None, "require": ("exp",),
                               "leeway": 0, "now": None}
    if minted == checked:
        decode_token(token, keys.keyset, **options)
        return
    with pytest.raises(InvalidToken) as info:
        decode_token(token, keys.keyset, **options)
    assert info.value.reason == "wrong_type"


async def test_token_without_typ_is_refused(service: AuthService, alice: User, clock: FakeClock) -> None:
    pair = await service.login("alice", PASSWORD)
    _, claims = decode_unverified(pair.access_token)
    untyped = encode(claims, service.keys.active, typ=None)
    with pytest.raises(InvalidToken) as info:
        await service.authenticate(untyped)
    assert info.value.reason == "wrong_type"


async def test_expired_access_token(service: AuthService, alice: User, clock: FakeClock) -> None:
    pair = await service.login("alice", PASSWORD)
    clock.advance(899)
    await service.authenticate(pair.access_token)
    clock.advance(1)
    with pytest.raises(TokenExpired) as info:
        await service.authenticate(pair.access_token)
    assert info.value.code == "token_expired"
    assert info.value.reason == "expired"


async def test_leeway_is_applied(make_service: ServiceFactory, clock: FakeClock) -> None:
    async with make_service(leeway=30) as service:
        await service.register("alice", PASSWORD)
        pair = await service.login("alice", PASSWORD)
        clock.advance(900 + 29)
        await service.authenticate(pair.access_token)


async def test_forged_and_garbage_tokens(service: AuthService, alice: User) -> None:
    pair = await service.login("alice", PASSWORD)
    _, claims = decode_unverified(pair.access_token)
    forged = encode(claims, Key.from_secret(b"secret" * 8, kid=service.keys.active.kid), typ="at+jwt")
    with pytest.raises(InvalidToken) as info:
        await service.authenticate(forged)
    assert info.value.reason == "signature"
    other_kid = encode(claims, Key.from_secret(b"secret" * 8, kid="other"), typ="at+jwt")
    with pytest.raises(InvalidToken) as info:
        await service.authenticate(other_kid)
    assert info.value.reason == "key"
    for garbage in ("", "abc", "a.b.c", "x" * 10_000, pair.access_token + "x"):
        with pytest.raises(InvalidToken):
            await service.authenticate(garbage)


async def test_tutorial_default_secret_is_never_accepted(service: AuthService, alice: User) -> None:
    """The tutorial's published default secret forges nothing here: there is no built-in secret."""
    pair = await service.login("alice", PASSWORD)
    _, claims = decode_unverified(pair.access_token)
    for secret in (b"secret", b"your-256-bit-secret", b"SuperSecret" * 3):
        token = encode(claims, _hs256_anyway(secret), typ="at+jwt")
        with pytest.raises(InvalidToken):
            await service.authenticate(token)


def _hs256_anyway(secret: bytes) -> Key:
    # Key.from_secret refuses short secrets (RFC 7518 §3.2); pad to make a key a forger could use.
    return Key.from_secret(secret.ljust(32, b"\0"))


async def test_wrong_issuer_is_refused(service: AuthService, alice: User) -> None:
    pair = await service.login("alice", PASSWORD)
    _, claims = decode_unverified(pair.access_token)
    token = encode({**claims, "iss": "someone-else"}, service.keys.active, typ="at+jwt")
    with pytest.raises(InvalidToken) as info:
        await service.authenticate(token)
    assert info.value.reason == "claim"


async def test_non_string_sid_is_refused(service: AuthService, alice: User) -> None:
    pair = await service.login("alice", PASSWORD)
    _, claims = decode_unverified(pair.access_token)
    token = encode({**claims, "sid": 5}, service.keys.active, typ="at+jwt")
    with pytest.raises(InvalidToken) as info:
        await service.authenticate(token)
    assert info.value.reason == "claim"


async def test_audience_when_configured(make_service: ServiceFactory) -> None:
    async with make_service(audience="https://api.example.org") as service:
        await service.register("alice", PASSWORD)
        pair = await service.login("alice", PASSWORD)
        _, claims = decode_unverified(pair.access_token)
        assert claims["aud"] == "https://api.example.org"
        await service.authenticate(pair.access_token)
        token = encode({**claims, "aud": "https://other.example.org"}, service.keys.active, typ="at+jwt")
        with pytest.raises(InvalidToken) as info:
            await service.authenticate(token)
        assert info.value.reason == "claim"
        no_aud = {k: v for k, v in claims.items() if k != "aud"}
        with pytest.raises(InvalidToken):
            await service.authenticate(encode(no_aud, service.keys.active, typ="at+jwt"))
        await service.refresh(pair.refresh_token)  # refresh tokens carry no aud and still work


async def test_user_agent_binding(make_service: ServiceFactory) -> None:
    async with make_service(bind_user_agent=True) as service:
        await service.register("alice", PASSWORD)
        pair = await service.login("alice", PASSWORD, user_agent="Firefox/140")
        _, claims = decode_unverified(pair.access_token)
        expected = base64.urlsafe_b64encode(hashlib.sha256(b"Firefox/140").digest()).rstrip(b"=").decode()
        assert claims["agent"] == expected
        await service.authenticate(pair.access_token, user_agent="Firefox/140")
        for other in ("curl/8", "", None):
            with pytest.raises(InvalidToken) as info:
                await service.authenticate(pair.access_token, user_agent=other)
            assert info.value.reason == "agent"
        refreshed = await service.refresh(pair.refresh_token, user_agent="Firefox/141")
        await service.authenticate(refreshed.access_token, user_agent="Firefox/141")


async def test_agent_claim_absent_unless_configured(service: AuthService, alice: User) -> None:
    pair = await service.login("alice", PASSWORD, user_agent="Firefox/140")
    _, claims = decode_unverified(pair.access_token)
    assert "agent" not in claims
    await service.authenticate(pair.access_token, user_agent="curl/8")


async def test_disabled_account_token_refused(service: AuthService, alice: User) -> None:
    pair = await service.login("alice", PASSWORD)
    # disabled directly in the repository (e.g. by another tool): authenticate still checks the flag
    await service.users.update(dataclasses.replace(alice, disabled=True))
    with pytest.raises(InvalidToken) as info:
        await service.authenticate(pair.access_token)
    assert info.value.reason == "disabled"
    with pytest.raises(InvalidToken) as info:
        await service.refresh(pair.refresh_token)
    assert info.value.reason == "disabled"


async def test_set_disabled_ends_sessions(service: AuthService, alice: User) -> None:
    pair = await service.login("alice", PASSWORD)
    await service.set_disabled(alice.id, True)
    await service.set_disabled(alice.id, False)
    with pytest.raises(SessionRevoked):
        await service.authenticate(pair.access_token)


async def test_deleted_session_refused(service: AuthService, alice: User) -> None:
    pair = await service.login("alice", PASSWORD)
    await service.logout(pair.session.sid)
    with pytest.raises(SessionRevoked) as info:
        await service.authenticate(pair.access_token)
    assert info.value.code == "session_revoked"
    assert info.value.reason == "revoked"


async def test_session_of_another_user_is_refused(service: AuthService, alice: User) -> None:
    bob = await service.register("bob", PASSWORD)
    pair = await service.login("alice", PASSWORD)
    _, claims = decode_unverified(pair.access_token)
    token = encode({**claims, "sub": bob.id}, service.keys.active, typ="at+jwt")
    with pytest.raises(SessionRevoked):
        await service.authenticate(token)


async def test_disabled_flag_cache_expires(service: AuthService, alice: User, clock: FakeClock) -> None:
    """authenticate reuses the disabled flag for user_cache_ttl (5 s); an edit behind the service's back
    takes effect once it runs out. (set_disabled invalidates it at once and cuts sessions off anyway.)"""
    pair = await service.login("alice", PASSWORD)
    await service.authenticate(pair.access_token)
    await service.users.update(dataclasses.replace(alice, disabled=True))
    await service.authenticate(pair.access_token)  # cached: still enabled
    clock.advance(5)
    with pytest.raises(InvalidToken) as info:
        await service.authenticate(pair.access_token)
    assert info.value.reason == "disabled"


async def test_disabled_flag_without_cache(make_service: ServiceFactory) -> None:
    async with make_service(user_cache_ttl=0) as service:
        alice = await service.register("alice", PASSWORD)
        pair = await service.login("alice", PASSWORD)
        await service.authenticate(pair.access_token)
        await service.users.update(dataclasses.replace(alice, disabled=True))
        with pytest.raises(InvalidToken) as info:
            await service.authenticate(pair.access_token)
        assert info.value.reason == "disabled"


async def test_set_disabled_takes_effect_at_once_despite_the_cache(service: AuthService, alice: User) -> None:
    pair = await service.login("alice", PASSWORD)
    await service.authenticate(pair.access_token)
    await service.set_disabled(alice.id, True)
    with pytest.raises(InvalidToken):
        await service.authenticate(pair.access_token)
