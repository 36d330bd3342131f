"""The FastAPI dependencies over JWTAuthMiddleware, in a real FastAPI app (FastAPI is a dev dependency)."""

from __future__ import annotations

import time
from typing import Annotated

import httpx
import pytest
from fastapi import Depends, FastAPI

from jwtkit import Key, encode
from jwtkit.service import Principal
from jwtkit.web import AuthMode, JWTAuthMiddleware, optional_principal, require_principal

KEY = Key.from_secret(b"d" * 32, "HS256")


def make_app(mode: AuthMode = AuthMode.TRY, *, middleware: bool = True) -> FastAPI:
    app = FastAPI()
    if middleware:
        app.add_middleware(JWTAuthMiddleware, keys=KEY, mode=mode)

    @app.get("/me")
    def me(principal: Annotated[Principal, Depends(require_principal)]) -> dict[str, str]:
        return {"user": principal.user_id}

    @app.get("/maybe")
    def maybe(principal: Annotated[Principal | None, Depends(optional_principal)]) -> dict[str, str | None]:
        return {"user": principal.user_id if principal else None}

    return app


async def call(app: FastAPI, path: str, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        return await client.get(path, headers=headers)


def good() -> str:
    return encode({"sub": "carol", "exp": int(time.time()) + 60}, KEY)


async def test_require_principal_gives_the_user() -> None:
    response = await call(make_app(), "/me", good())
    assert response.status_code == 200
    assert response.json() == {"user": "carol"}


async def test_require_principal_without_token_is_401_bearer() -> None:
    response = await call(make_app(), "/me")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json() == {"detail": {"error": "missing_token",
                                          "error_description": "An access token is required"}}


async def test_require_principal_with_bad_token_names_invalid_token() -> None:
    forged = encode({"sub": "carol", "exp": int(time.time()) + 60}, Key.from_secret(b"x" * 32, "HS256"))
    response = await call(make_app(), "/me", forged)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"')


async def test_optional_principal() -> None:
    assert (await call(make_app(), "/maybe")).json() == {"user": None}
    assert (await call(make_app(), "/maybe", good())).json() == {"user": "carol"}


async def test_without_the_middleware_is_a_programming_error() -> None:
    with pytest.raises(RuntimeError, match="JWTAuthMiddleware is not installed"):
        await call(make_app(middleware=False), "/me")
