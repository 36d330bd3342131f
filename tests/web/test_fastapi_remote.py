"""A FastAPI app that trusts another jwtkit server: a real ``jwtkit serve`` (EdDSA key ring, a user with a
role set by ``jwtkit user roles``) issues the tokens; the app verifies them through ``RemoteKeySet`` over
that server's JWKS, with roles on an HTTP route and on a WebSocket route."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import pytest
from _support import PASSWORD, ServeProcess, add_user, start_serve, stop_serve
from fastapi import Depends, FastAPI, WebSocket
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from jwtkit import decode_unverified
from jwtkit.service import KeyRing, Principal, RemoteKeySet
from jwtkit.web import (
    AuthError,
    AuthMode,
    JWTAuthMiddleware,
    TokenLocation,
    auth_error_handler,
    require_principal,
    require_roles,
)


def jwtkit(process: ServeProcess, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JWTKIT_") and k != "JWT_SECRET"}
    result = subprocess.run([str(Path(sys.executable).parent / "jwtkit"), *args], cwd=process.workdir,
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def login(process: ServeProcess, name: str) -> str:
    request = urllib.request.Request(f"{process.url}/auth", method="POST",
                                     data=json.dumps({"username": name, "password": PASSWORD}).encode(),
                                     headers={"Content-Type": "application/json",
                                              "Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        token: str = json.load(answer)["access_token"]
        return token


@pytest.fixture
def issuer(tmp_path: Path) -> Iterator[ServeProcess]:
    KeyRing.load_or_create(tmp_path / "jwtkit.key", alg="EdDSA")  # before the server starts: it signs EdDSA
    process = start_serve(tmp_path)
    try:
        add_user(process, "alice")
        add_user(process, "bob")
        jwtkit(process, "user", "roles", "alice", "add", "admin")
        yield process
    finally:
        stop_serve(process)


def make_app(jwks_url: str) -> FastAPI:
    keys = RemoteKeySet(jwks_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with keys:
            yield

    app = FastAPI(lifespan=lifespan)
    app.add_middleware(JWTAuthMiddleware, keys=keys, issuer="jwtkit", typ="at+jwt", mode=AuthMode.TRY,
                       locations=(TokenLocation.HEADER, TokenLocation.QUERY))
    app.add_exception_handler(AuthError, auth_error_handler)

    @app.get("/me")
    async def me(principal: Annotated[Principal, Depends(require_principal)]) -> dict[str, Any]:
        return {"user_id": principal.user_id, "roles": sorted(principal.roles)}

    @app.get("/admin")
    async def admin(principal: Annotated[Principal, Depends(require_roles("admin"))]) -> dict[str, str]:
        return {"admin": principal.user_id}

    @app.websocket("/ws/admin")
    async def ws_admin(websocket: WebSocket,
                       principal: Annotated[Principal, Depends(require_roles("admin"))]) -> None:
        await websocket.accept()
        await websocket.send_json({"admin": principal.user_id})
        await websocket.close()

    return app


def test_an_app_verifies_another_jwtkit_servers_tokens_through_its_jwks(issuer: ServeProcess) -> None:
    alice, bob = login(issuer, "alice"), login(issuer, "bob")
    header = decode_unverified(alice)[0]
    assert header["alg"] == "EdDSA" and header["kid"]
    with TestClient(make_app(f"{issuer.url}/.well-known/jwks.json")) as client:
        me = client.get("/me", headers={"Authorization": f"Bearer {alice}"})
        assert me.status_code == 200, me.text
        assert me.json()["roles"] == ["admin"]
        assert client.get("/admin", headers={"Authorization": f"Bearer {alice}"}).json() == {
            "admin": me.json()["user_id"]}
        refused = client.get("/admin", headers={"Authorization": f"Bearer {bob}"})
        assert refused.status_code == 403
        assert refused.headers["www-authenticate"] == 'Bearer error="insufficient_scope"'
        assert refused.json()["error"] == "insufficient_scope"
        forged = client.get("/me", headers={"Authorization": f"Bearer {alice[:-4]}AAAA"})
        assert forged.status_code == 401
        assert client.get("/me").status_code == 401
        with client.websocket_connect(f"/ws/admin?access_token={alice}") as ws:
            assert ws.receive_json() == {"admin": me.json()["user_id"]}
        with pytest.raises(WebSocketDisconnect) as closed, client.websocket_connect(
                f"/ws/admin?access_token={bob}"):
            pass
        assert closed.value.code == 1008
