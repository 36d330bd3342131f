"""Fail closed on a real outage: redis-server killed mid-test gives 503s, and the app recovers by itself."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from _support import JSON, PASSWORD, make_service

from jwtkit.web import create_app
from waiting import mirror_stale

pytestmark = pytest.mark.redis


async def test_redis_killed_gives_503_then_recovers(redis_server) -> None:  # type: ignore[no-untyped-def]
    service = make_service(redis_server.url)
    app = create_app(service, secure_cookies=False)
    transport = httpx.ASGITransport(app=app)
    async with service, httpx.AsyncClient(transport=transport, base_url="http://testserver",
                                          headers=JSON) as client:
        await service.register("alice", PASSWORD)
        pair = (await client.post("/auth", json={"username": "alice", "password": PASSWORD})).json()
        bearer = {"Authorization": f"Bearer {pair['access_token']}"}
        assert (await client.get("/private", headers=bearer)).status_code == 200
        assert (await client.get("/healthz")).status_code == 200

        redis_server.kill()
        await mirror_stale(service)  # the mirror answers until it sees the feed broke (within max_lag)
        private = await client.get("/private", headers=bearer)
        assert private.status_code == 503
        assert private.json()["error"] == "store_unavailable"
        assert private.headers["retry-after"] == "1"
        assert (await client.get("/healthz")).status_code == 503
        login = await client.post("/auth", json={"username": "alice", "password": PASSWORD})
        assert login.status_code == 503
        assert (await client.post("/logout", headers=bearer)).status_code == 503

        redis_server.start()  # same port, empty data (no persistence)
        for _ in range(50):
            if (await client.get("/healthz")).status_code == 200:
                break
            await asyncio.sleep(0.1)
        assert (await client.get("/healthz")).status_code == 200
        # the old session lived only in the lost data: fail closed, it is not valid
        assert (await client.get("/private", headers=bearer)).status_code == 401
        fresh = await client.post("/auth", json={"username": "alice", "password": PASSWORD})
        assert fresh.status_code == 200
        again = {"Authorization": f"Bearer {fresh.json()['access_token']}"}
        assert (await client.get("/private", headers=again)).status_code == 200
