"""Fail closed on a real PostgreSQL outage: the server stopped mid-test (``pg_ctl -m immediate``) gives 503s,
and the app recovers by itself when it is back, with the sessions it had (PostgreSQL keeps them)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from _support import JSON, PASSWORD, make_service

from jwtkit.web import create_app

pytestmark = pytest.mark.postgresql


async def test_postgres_stopped_gives_503_then_recovers(own_postgres_cluster) -> None:  # type: ignore[no-untyped-def]
    service = make_service(own_postgres_cluster.url + "?command_timeout=0.5&pool_timeout=0.5")
    app = create_app(service, secure_cookies=False)
    transport = httpx.ASGITransport(app=app)
    async with service, httpx.AsyncClient(transport=transport, base_url="http://testserver",
                                          headers=JSON) as client:
        await service.register("alice", PASSWORD)
        pair = (await client.post("/auth", json={"username": "alice", "password": PASSWORD})).json()
        bearer = {"Authorization": f"Bearer {pair['access_token']}"}
        assert (await client.get("/private", headers=bearer)).status_code == 200

        own_postgres_cluster.stop()
        private = await client.get("/private", headers=bearer)
        assert private.status_code == 503
        assert private.json()["error"] == "store_unavailable"
        assert (await client.get("/healthz")).status_code == 503
        login = await client.post("/auth", json={"username": "alice", "password": PASSWORD})
        assert login.status_code == 503
        assert (await client.post("/logout", headers=bearer)).status_code == 503

        own_postgres_cluster.start()
        for _ in range(50):
            if (await client.get("/healthz")).status_code == 200:
                break
            await asyncio.sleep(0.1)
        assert (await client.get("/healthz")).status_code == 200
        # the session was committed before the outage, and the failed logout changed nothing
        assert (await client.get("/private", headers=bearer)).status_code == 200
        assert (await client.post("/logout", headers=bearer)).status_code == 204
        assert (await client.get("/private", headers=bearer)).status_code == 401
