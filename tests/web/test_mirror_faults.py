"""Two nodes with revocation mirrors on one real store, under faults: node A logs sessions out while node B
checks their tokens without a pause, and the store is killed and restarted empty, paused (SIGSTOP), or has
its feed trimmed under them. What must hold on B, whatever happens:

- no answer other than accepted, refused (401) or unavailable (503): never an unexpected exception (a 500);
- a token whose logout A acknowledged is never accepted by a check B started more than ``mirror_max_lag``
  after that acknowledgement (the promise of docs/stores.md);
- once the store is back, every logged-out token is refused and every other one is accepted (or, after a
  restart that lost the data, refused too: nothing comes back).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from argon2 import PasswordHasher

from jwtkit.service import (
    AuthConfig,
    AuthService,
    InvalidToken,
    KeyRing,
    MemoryMailer,
    MemoryUserRepository,
    SessionRevoked,
)
from jwtkit.store import StoreUnavailable, open_store

PASSWORD = "correct horse battery"
SESSIONS = 24
MAX_LAG = 0.5


async def make_nodes(url: str) -> tuple[AuthService, AuthService]:
    keys = KeyRing.generate()
    users = MemoryUserRepository()  # one repository: the accounts are not what is under test
    config = AuthConfig(mirror_max_lag=MAX_LAG, revocation_mirror="on", user_cache_ttl=60)
    nodes = tuple(AuthService(store=open_store(url), users=users, keys=keys, mailer=MemoryMailer(),
                              config=config, hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
                  for _ in range(2))
    for node in nodes:
        await node.open()
    return nodes[0], nodes[1]


async def verdict(node: AuthService, token: str) -> int:
    try:
        await node.authenticate(token)
    except (SessionRevoked, InvalidToken):
        return 401
    except StoreUnavailable:
        return 503
    return 200


async def until(condition: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, "not reached in time"
        await asyncio.sleep(0.02)


async def run_under_fault(a: AuthService, b: AuthService, fault: Callable[[], Awaitable[None]],
                          restore: Callable[[], Awaitable[None]], *, data_lost: bool) -> None:
    await a.register("alice", PASSWORD)
    tokens = [(await a.login("alice", PASSWORD)).access_token for _ in range(SESSIONS)]
    sids = {token: (await a.authenticate(token)).session_id for token in tokens}
    acknowledged: dict[str, float] = {}  # token -> when A's logout returned
    unsure: set[str] = set()  # logouts that failed: a timed-out command may still have run
    seen: list[tuple[str, float, int]] = []
    done = asyncio.Event()

    async def checker() -> None:
        turn = 0
        while not done.is_set():
            token = tokens[turn % SESSIONS]
            turn += 1
            started = time.monotonic()
            status = await verdict(b, token)
            seen.append((token, started, status))
            await asyncio.sleep(0)

    async def logouts() -> None:
        for index, token in enumerate(tokens[::2]):
            if index == 4:
                await fault()
            if index == 8:
                await restore()
            try:
                await a.logout(sids[token])
            except StoreUnavailable:
                unsure.add(token)  # not acknowledged: no promise about it
                continue
            acknowledged[token] = time.monotonic()
            await asyncio.sleep(0.05)
        done.set()

    await asyncio.wait_for(asyncio.gather(checker(), checker(), logouts()), timeout=60)
    assert {status for *_, status in seen} <= {200, 401, 503}
    for token, started, status in seen:
        if token in acknowledged and started > acknowledged[token] + MAX_LAG:
            assert status != 200, "a token logged out on A was accepted on B past mirror_max_lag"
    assert 503 in {status for *_, status in seen} or not data_lost  # the outage was seen

    async def settled() -> bool:
        return await verdict(b, tokens[1]) != 503 and b.mirror is not None and (b.mirror.trusted or data_lost)

    await until(settled)
    for token in tokens:
        status = await verdict(b, token)
        if token in acknowledged or data_lost:
            assert status == 401, "a revoked (or forgotten) session came back"
        elif token not in unsure:
            assert status == 200


@pytest.fixture
async def redis_nodes(redis_server: Any) -> AsyncIterator[tuple[Any, AuthService, AuthService]]:
    a, b = await make_nodes(redis_server.url)
    try:
        yield redis_server, a, b
    finally:
        await a.close()
        await b.close()


@pytest.mark.redis
async def test_redis_killed_and_restarted_empty(redis_nodes: tuple[Any, AuthService, AuthService]) -> None:
    server, a, b = redis_nodes

    async def fault() -> None:
        server.kill()

    async def restore() -> None:
        await asyncio.to_thread(server.start)

    await run_under_fault(a, b, fault, restore, data_lost=True)


@pytest.mark.redis
async def test_redis_paused_then_resumed(redis_nodes: tuple[Any, AuthService, AuthService]) -> None:
    server, a, b = redis_nodes

    async def fault() -> None:
        os.kill(server.proc.pid, signal.SIGSTOP)

    async def restore() -> None:
        await asyncio.sleep(1.5)  # past the command timeout: every call meanwhile failed or waited
        os.kill(server.proc.pid, signal.SIGCONT)

    await run_under_fault(a, b, fault, restore, data_lost=False)


@pytest.mark.redis
async def test_redis_feed_trimmed_under_a_node(redis_nodes: tuple[Any, AuthService, AuthService]) -> None:
    import redis.asyncio as aioredis

    server, a, b = redis_nodes
    client = aioredis.Redis.from_url(server.url)

    async def trim() -> None:
        # what an aggressive trim by another node would do: B's cursor now points past a gap
        async for key in client.scan_iter(match="*revocations*"):
            await client.xtrim(key, maxlen=0)

    async def nothing() -> None:
        await trim()

    try:
        await run_under_fault(a, b, trim, nothing, data_lost=False)
    finally:
        await client.aclose()


@pytest.mark.postgresql
@pytest.mark.parametrize("fault_kind", ["kill", "freeze"])
async def test_postgresql_killed_or_frozen(own_postgres_cluster: Any, fault_kind: str) -> None:
    cluster = own_postgres_cluster
    a, b = await make_nodes(cluster.url + "?command_timeout=0.5&pool_timeout=0.5&connect_timeout=0.5")
    try:
        async def fault() -> None:
            (cluster.kill if fault_kind == "kill" else cluster.freeze)()

        async def restore() -> None:
            if fault_kind == "kill":
                await asyncio.to_thread(cluster.start)
            else:
                await asyncio.sleep(1.0)
                cluster.thaw()

        await run_under_fault(a, b, fault, restore, data_lost=False)
    finally:
        await a.close()
        await b.close()


@pytest.mark.redis
async def test_healthz_names_the_mirror_state(redis_server: Any) -> None:
    import httpx

    from jwtkit.web import create_app

    a, b = await make_nodes(redis_server.url)
    app = create_app(a, secure_cookies=False)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            async def mirror_state() -> str:
                state: str = (await c.get("/healthz")).json().get("mirror", "")
                return state

            await until(lambda: _equals(mirror_state(), "current"))
            os.kill(redis_server.proc.pid, signal.SIGSTOP)
            try:
                await until(lambda: _equals(mirror_state(), ""))  # the store is frozen: 503, no ok body
            finally:
                os.kill(redis_server.proc.pid, signal.SIGCONT)
            await until(lambda: _equals(mirror_state(), "current"))
    finally:
        await a.close()
        await b.close()


async def _equals(value: Awaitable[str], expected: str) -> bool:
    return await value == expected
