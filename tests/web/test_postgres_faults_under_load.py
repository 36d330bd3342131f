"""PostgreSQL killed (``kill -9``) or paused (SIGSTOP) while the server is under load: every request gets
503 or its normal answer, never a 500; no token whose logout was acknowledged is accepted, before or after;
the app recovers by itself. The fault is injected after a fixed number of answered requests, not a time."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from _support import JSON, PASSWORD, make_service

from jwtkit.service import AuthConfig
from jwtkit.web import create_app
from waiting import mirror_stale

pytestmark = pytest.mark.postgresql
CLIENTS = 8
SESSIONS = 12


@pytest.mark.parametrize("fault", ["kill", "freeze"])
async def test_a_database_fault_under_load_is_503_never_500_and_loses_no_logout(own_postgres_cluster: Any,
                                                                                fault: str) -> None:
    cluster = own_postgres_cluster
    service = make_service(cluster.url + "?command_timeout=0.5&pool_timeout=0.5&connect_timeout=0.5",
                           # the default race window: a retry after a 503 whose rotation had committed (the
                           # answer was lost) gets the current tokens instead of ending the family
                           config=AuthConfig(throttle_threshold=3))
    app = create_app(service, secure_cookies=False)
    async with service, httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver",
                                          headers=JSON, timeout=10) as client:
        await service.register("alice", PASSWORD)
        tokens = []
        for _ in range(SESSIONS):
            tokens.append((await client.post("/auth", json={"username": "alice", "password": PASSWORD})
                           ).json()["access_token"])
        answered: list[tuple[str, int]] = []  # (token, status), in the order the answers came
        logged_out: set[str] = set()  # logouts acknowledged with 204
        fault_now, faulted, restored = asyncio.Event(), asyncio.Event(), asyncio.Event()

        async def reader(index: int) -> None:
            turn = index
            while not restored.is_set() or len(answered) < 400:
                token = tokens[turn % SESSIONS]
                turn += 1
                seen_out = token in logged_out
                status = (await client.get("/private", headers={"Authorization": f"Bearer {token}"})
                          ).status_code
                answered.append((token, status))
                assert status in (200, 401, 503), status
                if seen_out:  # its logout was acknowledged before this request started
                    assert status != 200, "a logged-out token was accepted"
                if len(answered) >= 150 and len(chain) > 3:  # reads (mirrored) and rotations under way
                    fault_now.set()
                await asyncio.sleep(0)

        async def logouts() -> None:
            for token in tokens[::2]:  # half the sessions end, before, during and after the fault
                status = (await client.post("/logout", headers={"Authorization": f"Bearer {token}"})
                          ).status_code
                assert status in (204, 503), status
                if status == 204:
                    logged_out.add(token)
                await asyncio.sleep(0.02)

        first = (await client.post("/auth", json={"username": "alice", "password": PASSWORD})).json()
        chain = [first["refresh_token"]]  # each refresh token a rotation acknowledged with 200 handed out

        async def refresher() -> None:
            while not restored.is_set():
                answer = await client.post("/refresh", json={"refresh_token": chain[-1]})
                assert answer.status_code in (200, 503), answer.text
                if answer.status_code == 200:
                    chain.append(answer.json()["refresh_token"])
                await asyncio.sleep(0.01)

        async def injector() -> None:
            await fault_now.wait()
            (cluster.kill if fault == "kill" else cluster.freeze)()
            faulted.set()
            await mirror_stale(service)  # until then the mirror answers (it may, for up to max_lag)
            count = len(answered)
            while len(answered) < count + 40:  # 40 answers with the database gone
                await asyncio.sleep(0.01)
            if fault == "kill":
                await asyncio.to_thread(cluster.start)
            else:
                cluster.thaw()
            restored.set()

        await asyncio.wait_for(asyncio.gather(*(reader(i) for i in range(CLIENTS)), logouts(), refresher(),
                                              injector()), timeout=90)
        statuses = {status for _, status in answered}
        assert 503 in statuses and 200 in statuses and 500 not in statuses
        for _ in range(100):  # the app recovers by itself
            if (await client.get("/healthz")).status_code == 200:
                break
            await asyncio.sleep(0.1)
        assert (await client.get("/healthz")).status_code == 200
        # no acknowledged rotation was lost: the last refresh token handed out is the current one
        assert len(chain) > 2
        current = await client.post("/refresh", json={"refresh_token": chain[-1]})
        assert current.status_code == 200, current.text
        for token in tokens:  # every acknowledged logout held; the sessions that were not ended still work
            status = (await client.get("/private", headers={"Authorization": f"Bearer {token}"})).status_code
            if token in logged_out:
                assert status == 401
            elif token not in tokens[::2]:
                assert status == 200
