"""The access policy's two shortcuts: the verified-token cache (signature and claim checks skipped for a
token this policy verified before, with these keys, and that has not expired) and the revocation mirror
(the session check answered in process). Neither may ever accept what the full path refuses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

import jwtkit.service._access as access_module
from clock import FakeClock
from jwtkit import Key, KeySet, encode
from jwtkit.service import AccessPolicy, InvalidToken, SessionRevoked, TokenExpired
from jwtkit.store import RevocationKind, RevocationMirror, Session
from jwtkit.store._memory import MemoryStore

T0 = 1_800_000_000.0
KEY = Key.generate("ES256", kid="k1")
OTHER = Key.generate("ES256", kid="k2")


class CountingStore(MemoryStore):
    """The memory store, counting the per-request session checks that reach it."""

    checks = 0

    async def check(self, sid: str, user_id: str) -> bool:
        self.checks += 1
        return await super().check(sid, user_id)


def access_token(key: Key = KEY, *, sid: str = "s1", exp: float = T0 + 900, **claims: Any) -> str:
    return encode({"sub": "alice", "sid": sid, "jti": "j-" + sid, "iat": int(T0), "exp": int(exp),
                   "iss": "jwtkit", **claims}, key, typ="at+jwt")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
async def store(clock: FakeClock) -> AsyncIterator[CountingStore]:
    store = CountingStore(clock=clock, purge_interval=0)
    async with store:
        for sid in ("s1", "s2", "s3"):
            await store.create_session(Session(sid=sid, user_id="alice", created=T0, last_used=T0,
                                               expires=T0 + 86400, family="f-" + sid, refresh_jti="r"))
        yield store


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tokens that reach the full decode (signature and claims), in order."""
    seen: list[str] = []
    real = access_module.decode

    def counting(token: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        seen.append(token)
        return real(token, *args, **kwargs)

    monkeypatch.setattr(access_module, "decode", counting)
    return seen


def policy(clock: FakeClock, **options: Any) -> AccessPolicy:
    return AccessPolicy(keys=options.pop("keys", KeySet([KEY])), issuer=options.pop("issuer", "jwtkit"),
                        require=("exp", "sub", "sid", "jti"), clock=clock, **options)


async def test_a_token_verified_once_is_not_verified_again(clock: FakeClock, decodes: list[str]) -> None:
    checker = policy(clock)
    token = access_token()
    first = await checker.authenticate(token)
    second = await checker.authenticate(token)
    assert decodes == [token]
    assert dict(second.claims) == dict(first.claims)


async def test_what_a_caller_does_to_the_claims_never_reaches_the_cache(clock: FakeClock) -> None:
    checker = policy(clock)
    token = access_token(roles=["reader"])
    principal = await checker.authenticate(token)
    principal.claims["roles"].append("admin")  # a list inside the read-only mapping: still mutable
    again = await checker.authenticate(token)
    assert again.roles == {"reader"}


async def test_an_expired_token_is_refused_even_when_cached(clock: FakeClock, decodes: list[str]) -> None:
    checker = policy(clock, leeway=5)
    token = access_token(exp=T0 + 60)
    await checker.authenticate(token)
    clock.advance(64)
    await checker.authenticate(token)  # inside the leeway: still the cached answer
    assert len(decodes) == 1
    clock.advance(1)
    with pytest.raises(TokenExpired):
        await checker.authenticate(token)


async def test_refusals_are_never_cached(clock: FakeClock, decodes: list[str]) -> None:
    checker = policy(clock)
    forged = access_token(OTHER)
    for _ in range(2):
        with pytest.raises(InvalidToken):
            await checker.authenticate(forged)
    assert decodes == [forged, forged]


async def test_the_cache_belongs_to_one_policy(clock: FakeClock) -> None:
    # one token, two policies that disagree about it (fast-jwt's cache key once ignored the verifier)
    token = access_token()
    await policy(clock).authenticate(token)
    with pytest.raises(InvalidToken):
        await policy(clock, issuer="someone-else").authenticate(token)
    with pytest.raises(InvalidToken):
        await policy(clock, keys=KeySet([OTHER])).authenticate(token)


async def test_a_key_taken_out_of_a_provider_refuses_its_cached_tokens(clock: FakeClock) -> None:
    class Provider:
        def __init__(self) -> None:
            self.keys = KeySet([KEY])

        def current(self) -> KeySet:
            return self.keys

        async def refresh(self, kid: str | None) -> bool:
            return False

    provider = Provider()
    checker = policy(clock, keys=provider)
    token = access_token()
    await checker.authenticate(token)
    provider.keys = KeySet([OTHER])  # k1 retired (compromised): its tokens must stop at once
    with pytest.raises(InvalidToken):
        await checker.authenticate(token)


async def test_the_cache_is_bounded_and_drops_the_least_recently_used(clock: FakeClock,
                                                                      decodes: list[str]) -> None:
    checker = policy(clock, token_cache=2)
    one, two, three = (access_token(sid=sid) for sid in ("s1", "s2", "s3"))
    for token in (one, two, one, three):  # two is now the least recently used
        await checker.authenticate(token)
    decodes.clear()
    await checker.authenticate(one)
    await checker.authenticate(three)
    assert decodes == []
    await checker.authenticate(two)
    assert decodes == [two]
    assert len(checker._verified) == 2


async def test_token_cache_zero_verifies_every_time(clock: FakeClock, decodes: list[str]) -> None:
    checker = policy(clock, token_cache=0)
    token = access_token()
    await checker.authenticate(token)
    await checker.authenticate(token)
    assert decodes == [token, token]
    with pytest.raises(ValueError):
        policy(clock, token_cache=-1)


async def test_a_revocation_is_never_cached(clock: FakeClock, store: CountingStore) -> None:
    checker = policy(clock, store=store)
    token = access_token()
    await checker.authenticate(token)
    await store.revoke("s1")
    with pytest.raises(SessionRevoked):
        await checker.authenticate(token)


# the mirror in the policy ---------------------------------------------------------------------------

@pytest.fixture
async def mirror(store: CountingStore, clock: FakeClock) -> RevocationMirror:
    mirror = RevocationMirror(store, window=930, clock=clock, monotonic=clock)
    await mirror.step()
    return mirror


async def test_a_current_mirror_answers_without_the_store(clock: FakeClock, store: CountingStore,
                                                          mirror: RevocationMirror) -> None:
    checker = policy(clock, store=store, mirror=mirror)
    await checker.authenticate(access_token())
    assert store.checks == 0
    await store.revoke("s1")
    await mirror.step()
    with pytest.raises(SessionRevoked):
        await checker.authenticate(access_token())
    assert store.checks == 0


async def test_a_stale_mirror_sends_the_check_to_the_store(clock: FakeClock, store: CountingStore,
                                                           mirror: RevocationMirror) -> None:
    checker = policy(clock, store=store, mirror=mirror)
    await store.revoke("s1")  # not read by the mirror yet
    clock.advance(2)  # past max_lag
    with pytest.raises(SessionRevoked):
        await checker.authenticate(access_token())
    assert store.checks == 1


async def test_a_user_whose_sessions_were_all_ended_is_checked_in_the_store(
        clock: FakeClock, store: CountingStore, mirror: RevocationMirror) -> None:
    checker = policy(clock, store=store, mirror=mirror)
    mirror.record(RevocationKind.USER, "alice")
    await store.revoke_all("alice")
    with pytest.raises(SessionRevoked):
        await checker.authenticate(access_token())
    assert store.checks == 1


async def test_inside_the_leeway_after_exp_the_store_decides(clock: FakeClock, store: CountingStore,
                                                             mirror: RevocationMirror) -> None:
    checker = policy(clock, store=store, mirror=mirror, leeway=30)
    await checker.authenticate(access_token(exp=T0 + 10))
    assert store.checks == 0
    clock.advance(11)
    await mirror.step()
    await checker.authenticate(access_token(exp=T0 + 10))
    assert store.checks == 1


def test_a_mirror_needs_its_store(clock: FakeClock, store: CountingStore, mirror: RevocationMirror) -> None:
    with pytest.raises(TypeError, match="store"):
        policy(clock, mirror=mirror)


async def test_a_token_of_scalar_claims_gets_one_immutable_principal(clock: FakeClock) -> None:
    checker = policy(clock)
    token = access_token()
    first = await checker.authenticate(token)
    assert await checker.authenticate(token) is first  # nothing rebuilt per request
    with pytest.raises(TypeError):
        first.claims["sub"] = "mallory"  # type: ignore[index]
    forged_sub = access_token(sid="s2")
    assert (await checker.authenticate(forged_sub)) is not first
