"""AccessPolicy over a KeyProvider (keys that change while the process runs), and the scopes and roles a
Principal reads from its claims."""

from __future__ import annotations

import time
from types import MappingProxyType

import pytest

from jwtkit import Key, KeySet, encode
from jwtkit.service import AccessPolicy, InvalidToken, KeyProvider, Principal


class Rotating:
    """A provider that holds one key set and, when asked to refresh, moves to the next one it was given."""

    def __init__(self, *sets: KeySet) -> None:
        self.sets = list(sets)
        self.refreshes: list[str | None] = []

    def current(self) -> KeySet:
        return self.sets[0]

    async def refresh(self, kid: str | None) -> bool:
        self.refreshes.append(kid)
        if len(self.sets) > 1:
            self.sets.pop(0)
            return True
        return False


def token(key: Key) -> str:
    return encode({"sub": "u1", "exp": int(time.time()) + 60}, key, typ="at+jwt")


async def test_a_token_of_a_newer_key_refreshes_the_provider_once_and_passes() -> None:
    old, new = Key.generate("EdDSA", kid="old"), Key.generate("EdDSA", kid="new")
    provider = Rotating(KeySet([old.public()]), KeySet([old.public(), new.public()]))
    assert isinstance(provider, KeyProvider)
    policy = AccessPolicy(keys=provider)
    assert (await policy.authenticate(token(old))).user_id == "u1"
    assert provider.refreshes == []  # a known kid costs nothing
    assert (await policy.authenticate(token(new))).user_id == "u1"
    assert provider.refreshes == ["new"]
    assert (await policy.authenticate(token(new))).user_id == "u1"
    assert provider.refreshes == ["new"]


async def test_an_unknown_kid_the_provider_cannot_find_is_refused_with_reason_key() -> None:
    known, stranger = Key.generate("EdDSA", kid="known"), Key.generate("EdDSA", kid="stranger")
    provider = Rotating(KeySet([known.public()]))
    policy = AccessPolicy(keys=provider)
    with pytest.raises(InvalidToken) as info:
        await policy.authenticate(token(stranger))
    assert info.value.reason == "key"
    assert provider.refreshes == ["stranger"]


async def test_a_bad_signature_never_asks_the_provider() -> None:
    key = Key.generate("EdDSA", kid="k")
    impostor = Key.generate("EdDSA", kid="k")  # same kid, another key: a forgery, not a rotation
    provider = Rotating(KeySet([key.public()]))
    with pytest.raises(InvalidToken) as info:
        await AccessPolicy(keys=provider).authenticate(token(impostor))
    assert info.value.reason == "signature"
    assert provider.refreshes == []


def test_a_policy_refuses_what_is_neither_keys_nor_a_provider() -> None:
    with pytest.raises(TypeError, match="KeyProvider"):
        AccessPolicy(keys="secret")  # type: ignore[arg-type]


@pytest.mark.parametrize(("claims", "scopes", "roles"), [
    ({"scope": "read write  admin"}, {"read", "write", "admin"}, set()),
    ({"roles": ["editor", "viewer", 7]}, set(), {"editor", "viewer"}),
    ({"scope": ["read"], "roles": "admin"}, set(), set()),  # wrong shapes grant nothing
    ({}, set(), set()),
])
def test_principal_scopes_and_roles(claims: dict[str, object], scopes: set[str], roles: set[str]) -> None:
    principal = Principal("u1", "s1", MappingProxyType(claims))
    assert principal.scopes == scopes
    assert principal.roles == roles
