"""A FastAPI app secured with jwtkit, as docs/fastapi.md builds one: the real JWTAuthMiddleware over a real
AuthService (memory store and users, cheap argon2), the auth router at /auth, routes needing a scope and a
role, a WebSocket, and offline docs. The FastAPI tests drive it in process; the browser test serves it with
uvicorn (``uvicorn --factory _fastapi_app:make_app``), where its lifespan registers the users.

Users (password ``PASSWORD``): alice has scope ``read``; bob has scopes ``read write`` and role ``admin``;
carol has neither.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from argon2 import PasswordHasher
from fastapi import Depends, FastAPI, Request, WebSocket

from jwtkit.service import AuthConfig, AuthService, KeyRing, MemoryUserRepository, Principal, User
from jwtkit.store import open_store
from jwtkit.web import (
    AuthError,
    AuthMode,
    JWTAuthMiddleware,
    TokenLocation,
    auth_error_handler,
    auth_router,
    check_scopes,
    offline_docs,
    optional_principal,
    require_principal,
    require_roles,
    require_scopes,
)

PASSWORD = "correct horse battery staple"
SECRET = b"fastapi-tests-secret-" + b"x" * 32
SCOPES = {"alice": "read", "bob": "read write"}


def claims(user: User) -> dict[str, Any]:
    """The app's claims hook: scopes by username (a real app reads them from its own tables), and roles."""
    added: dict[str, Any] = {}
    if user.username in SCOPES:
        added["scope"] = SCOPES[user.username]
    if user.roles:
        added["roles"] = sorted(user.roles)
    return added


def make_service(*, config: AuthConfig | None = None, clock: Callable[[], float] = time.time) -> AuthService:
    return AuthService(store=open_store("memory://", clock=clock), users=MemoryUserRepository(),
                       keys=KeyRing.from_secret(SECRET), config=config, clock=clock, claims=claims,
                       hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


async def add_users(service: AuthService) -> None:
    for name in ("alice", "bob", "carol"):
        if await service.find_user(name) is None:
            user = await service.register(name, PASSWORD)
            if name == "bob":
                await service.set_roles(user.id, ["admin"])


def make_app(service: AuthService | None = None, *, register: bool = True) -> FastAPI:
    service = service if service is not None else make_service()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with service:
            if register:
                await add_users(service)
            yield

    app = FastAPI(title="jwtkit test app", lifespan=lifespan)
    app.state.service = service
    # TRY: the dependencies decide per route; a browser's WebSocket sends its token in the URL
    app.add_middleware(JWTAuthMiddleware, service=service, mode=AuthMode.TRY,
                       locations=(TokenLocation.HEADER, TokenLocation.QUERY))
    app.add_exception_handler(AuthError, auth_error_handler)
    app.include_router(auth_router(service), prefix="/auth")
    offline_docs(app)

    @app.get("/me")
    async def me(principal: Annotated[Principal, Depends(require_principal)]) -> dict[str, Any]:
        return {"user_id": principal.user_id, "scopes": sorted(principal.scopes),
                "roles": sorted(principal.roles)}

    @app.get("/maybe")
    async def maybe(principal: Annotated[Principal | None, Depends(optional_principal)]) -> dict[str, Any]:
        return {"user_id": principal.user_id if principal else None}

    @app.get("/items")
    async def items(principal: Annotated[Principal, Depends(require_scopes("read"))]) -> dict[str, Any]:
        return {"items": ["apple", "pear"], "for": principal.user_id}

    @app.get("/admin")
    async def admin(principal: Annotated[Principal, Depends(require_roles("admin"))]) -> dict[str, str]:
        return {"admin": principal.user_id}

    @app.post("/items")
    async def add_item(request: Request) -> dict[str, str]:
        principal = check_scopes(request, "write")  # the plain function, as a Starlette endpoint uses it
        return {"added_by": principal.user_id}

    @app.websocket("/ws")
    async def ws(websocket: WebSocket, principal: Annotated[Principal, Depends(require_principal)]) -> None:
        await websocket.accept()
        await websocket.send_json({"user_id": principal.user_id})
        await websocket.close()

    @app.websocket("/ws/admin")
    async def ws_admin(websocket: WebSocket,
                       principal: Annotated[Principal, Depends(require_roles("admin"))]) -> None:
        await websocket.accept()
        await websocket.send_json({"admin": principal.user_id})
        await websocket.close()

    return app
