"""Two service instances (two nodes) over one store: throttle counters, logouts and refresh reuse hold
across them. SQLite (one file shared by two connections), real Redis and real PostgreSQL; on the last two
each node has its revocation mirror (the default), so a revocation made on one node reaches the other
within ``mirror_max_lag`` instead of at once: the tests wait for it, with that bound as the deadline."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from jwtkit.service import (
    AuthService,
    InvalidCredentials,
    KeyRing,
    MemoryMailer,
    RefreshReused,
    SessionRevoked,
    SQLiteUserRepository,
    Throttled,
)
from jwtkit.store import open_store

from .conftest import PASSWORD, REUSE_AFTER, CountingHasher, FakeClock


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis),
                        pytest.param("postgresql", marks=pytest.mark.postgresql)])
async def nodes(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock,
                keys: KeyRing) -> AsyncIterator[tuple[AuthService, AuthService]]:
    url = (request.getfixturevalue({"redis": "redis_url", "postgresql": "postgres_url"}[request.param])
           if request.param in ("redis", "postgresql") else f"sqlite:///{tmp_path}/jwtkit.db")
    pair = tuple(
        AuthService(store=open_store(url, clock=clock), users=SQLiteUserRepository(tmp_path / "users.db"),
                    keys=keys, mailer=MemoryMailer(), clock=clock, hasher=CountingHasher())
        for _ in range(2)
    )
    for node in pair:
        await node.open()
    try:
        yield pair[0], pair[1]
    finally:
        for node in pair:
            await node.close()


async def refused_within_max_lag(node: AuthService, token: str) -> None:
    """SessionRevoked from ``node`` for ``token`` within the node's mirror_max_lag (at once without a
    mirror); fails past it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + node.config.mirror_max_lag + 0.25
    while True:
        try:
            await node.authenticate(token)
        except SessionRevoked:
            return
        assert node.mirror is not None, "without a mirror the revocation is seen at once"
        assert loop.time() < deadline, "the revocation did not reach this node within mirror_max_lag"
        await asyncio.sleep(0.005)


def test_the_shared_stores_get_a_mirror(nodes: tuple[AuthService, AuthService]) -> None:
    a, _ = nodes
    assert (a.mirror is not None) == a.store.url.startswith(("redis", "postgres"))


async def test_throttle_counters_are_shared(nodes: tuple[AuthService, AuthService]) -> None:
    a, b = nodes
    await a.register("alice", PASSWORD)
    for node in (a, b, a, b, a):
        with pytest.raises(InvalidCredentials):
            await node.login("alice", "wrong password!")
    for node in (a, b):
        with pytest.raises(Throttled):
            await node.login("alice", PASSWORD)


async def test_logout_and_logout_all_reach_every_node(
    nodes: tuple[AuthService, AuthService], clock: FakeClock
) -> None:
    a, b = nodes
    alice = await a.register("alice", PASSWORD)
    one = await a.login("alice", PASSWORD)
    two = await b.login("alice", PASSWORD)
    await b.authenticate(one.access_token)
    await a.logout(one.session.sid)
    with pytest.raises(SessionRevoked):
        await a.authenticate(one.access_token)  # on the node that revoked it: at once
    await refused_within_max_lag(b, one.access_token)
    await a.authenticate(two.access_token)
    clock.advance(1)
    await b.logout_all(alice.id)
    with pytest.raises(SessionRevoked):
        await b.authenticate(two.access_token)
    await refused_within_max_lag(a, two.access_token)


async def test_refresh_reuse_across_nodes(nodes: tuple[AuthService, AuthService], clock: FakeClock) -> None:
    a, b = nodes
    await a.register("alice", PASSWORD)
    first = await a.login("alice", PASSWORD)
    second = await b.refresh(first.refresh_token)
    clock.advance(REUSE_AFTER)
    with pytest.raises(RefreshReused):
        await a.refresh(first.refresh_token)
    await refused_within_max_lag(b, second.access_token)
    with pytest.raises(SessionRevoked):
        await a.authenticate(second.access_token)


async def test_the_login_past_the_default_cap_ends_the_oldest_session_on_every_node(
        nodes: tuple[AuthService, AuthService], clock: FakeClock) -> None:
    """51 logins of one user, alternating between the nodes and the last ones at once on both: the default
    cap (50) holds, and the first session's refresh and access tokens are refused everywhere."""
    a, b = nodes
    cap = 50
    alice = await a.register("alice", PASSWORD)
    first = await a.login("alice", PASSWORD)
    await b.authenticate(first.access_token)
    clock.advance(1)
    for i in range(cap - 2):
        await (a, b)[i % 2].login("alice", PASSWORD)
    clock.advance(1)
    last_two = await asyncio.gather(a.login("alice", PASSWORD), b.login("alice", PASSWORD))
    live = await b.list_sessions(alice.id)
    assert len(live) == cap
    assert first.session.sid not in {s.sid for s in live}
    assert {pair.session.sid for pair in last_two} <= {s.sid for s in live}
    for node in (a, b):
        await refused_within_max_lag(node, first.access_token)
        with pytest.raises(SessionRevoked):
            await node.refresh(first.refresh_token)
    assert a.config.max_sessions_per_user == cap
