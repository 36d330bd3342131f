"""One access policy: the same hostile and revoked tokens through jwtkit's server, the middleware in a user's
Starlette app and a FastAPI dependency give the same status, error and reason from each."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

import httpx
import pytest
from argon2 import PasswordHasher
from fastapi import Depends, FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from jwtkit import Key, encode
from jwtkit.service import AuthConfig, AuthService, KeyRing, MemoryMailer, MemoryUserRepository, Principal
from jwtkit.service._tokens import ACCESS_TYP, access_claims, agent_hash
from jwtkit.store import open_store
from jwtkit.web import AuthMode, JWTAuthMiddleware, create_app, require_principal

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with")

PASSWORD = "correct horse battery staple"
AGENT = "jwtkit-tests/1.0"
JSON = {"Accept": "application/json", "User-Agent": AGENT}


@dataclasses.dataclass
class World:
    service: AuthService
    mailer: MemoryMailer
    apps: dict[str, Any]


@pytest.fixture(params=[False, True], ids=["agent_binding_off", "agent_binding_on"])
async def world(request: pytest.FixtureRequest) -> AsyncIterator[World]:
    mailer = MemoryMailer()
    service = AuthService(store=open_store("memory://"), users=MemoryUserRepository(),
                          keys=KeyRing.generate(), mailer=mailer,
                          config=AuthConfig(bind_user_agent=request.param),
                          hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))

    async def me(request: Request) -> Response:
        principal = request.state.principal
        if principal is None:
            raise AssertionError("REQUIRED mode lets no request without a principal through")
        return JSONResponse({"user_id": principal.user_id})

    starlette_app = Starlette(routes=[Route("/private", me)])
    starlette_app.add_middleware(JWTAuthMiddleware, service=service)

    fastapi_app = FastAPI()
    fastapi_app.add_middleware(JWTAuthMiddleware, service=service, mode=AuthMode.TRY)

    @fastapi_app.get("/private")
    async def fastapi_me(principal: Annotated[Principal, Depends(require_principal)]) -> dict[str, str]:
        return {"user_id": principal.user_id}

    async with service:
        yield World(service, mailer, {"server": create_app(service), "middleware": starlette_app,
                                      "fastapi": fastapi_app})


async def outcome(app: Any, token: str | None) -> tuple[int, str | None, str | None]:
    headers = dict(JSON)
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
        response = await client.get("/private", headers=headers)
    body = response.json()
    body = body.get("detail", body)
    if response.status_code == 200:
        return 200, None, None
    if response.status_code == 401:
        assert response.headers["www-authenticate"].startswith("Bearer")
    else:
        assert response.headers["retry-after"] == "1"
    return response.status_code, body["error"], body.get("reason")


async def _pair(world: World) -> Any:
    if await world.service.find_user("alice") is None:
        await world.service.register("alice", PASSWORD, email="alice@example.org")
    return await world.service.login("alice", PASSWORD, user_agent=AGENT)


def _access(world: World, pair: Any, **changes: Any) -> str:
    now = time.time()
    claims = access_claims(issuer=world.service.config.issuer, audience=None, user_id=pair.session.user_id,
                           sid=pair.session.sid, now=now, expires=now + 60, agent=_agent(world))
    claims.update(changes)
    kept = {k: v for k, v in claims.items() if v is not None}
    return encode(kept, world.service.keys.active, typ=ACCESS_TYP)


def _agent(world: World) -> str | None:
    return agent_hash(AGENT) if world.service.config.bind_user_agent else None


async def valid(world: World) -> str:
    return str((await _pair(world)).access_token)


async def no_token(world: World) -> None:
    return None


async def forged(world: World) -> str:
    pair = await _pair(world)
    now = time.time()
    claims = access_claims(issuer="jwtkit", audience=None, user_id=pair.session.user_id, sid=pair.session.sid,
                           now=now, expires=now + 60, agent=_agent(world))
    return encode(claims, Key.from_secret(b"f" * 32, "HS256", kid=world.service.keys.active.kid),
                  typ=ACCESS_TYP)


async def expired(world: World) -> str:
    pair = await _pair(world)
    return _access(world, pair, iat=int(time.time()) - 120, exp=int(time.time()) - 60)


async def other_issuer(world: World) -> str:
    return _access(world, await _pair(world), iss="https://someone-else.example")


async def without_sid(world: World) -> str:
    return _access(world, await _pair(world), sid=None)


async def refresh_token(world: World) -> str:
    return str((await _pair(world)).refresh_token)


async def reset_token(world: World) -> str:
    await _pair(world)
    await world.service.forgot_password("alice")
    return world.mailer.sent[-1].body.split("token=", 1)[1].split()[0]


async def verify_token(world: World) -> str:
    await _pair(world)
    user = await world.service.find_user("alice")
    assert user is not None
    await world.service.send_verification(user.id)
    return world.mailer.sent[-1].body.split("token=", 1)[1].split()[0]


async def logged_out(world: World) -> str:
    pair = await _pair(world)
    await world.service.logout(pair.session.sid)
    return str(pair.access_token)


async def logged_out_everywhere(world: World) -> str:
    pair = await _pair(world)
    await world.service.logout_all(pair.session.user_id)
    return str(pair.access_token)


async def disabled_in_the_users_table(world: World) -> str:
    """Disabled behind the service's back (another process, an admin's SQL): the account rule still holds."""
    pair = await _pair(world)
    user = await world.service.users.get(pair.session.user_id)
    assert user is not None
    await world.service.users.update(dataclasses.replace(user, disabled=True))
    world.service.access.forget_account(user.id)  # the account cache's TTL has passed
    return str(pair.access_token)


async def garbage(world: World) -> str:
    return "not.a.jwt"


async def unsigned(world: World) -> str:
    return "eyJhbGciOiJub25lIiwidHlwIjoiYXQrand0In0.eyJzdWIiOiJhbGljZSJ9."


CASES: list[tuple[Callable[[World], Awaitable[str | None]], tuple[int, str | None, str | None]]] = [
    (valid, (200, None, None)),
    (no_token, (401, "missing_token", None)),
    (forged, (401, "invalid_token", "signature")),
    (expired, (401, "invalid_token", "expired")),
    (other_issuer, (401, "invalid_token", "claim")),
    (without_sid, (401, "invalid_token", "claim")),
    (refresh_token, (401, "invalid_token", "wrong_type")),
    (reset_token, (401, "invalid_token", "wrong_type")),
    (verify_token, (401, "invalid_token", "wrong_type")),
    (logged_out, (401, "invalid_token", "revoked")),
    (logged_out_everywhere, (401, "invalid_token", "revoked")),
    (disabled_in_the_users_table, (401, "invalid_token", "disabled")),
    (garbage, (401, "invalid_token", "malformed")),
    (unsigned, (401, "invalid_token", "malformed")),
]


@pytest.mark.parametrize(("make_token", "expected"), CASES, ids=[case[0].__name__ for case in CASES])
async def test_every_caller_gives_the_same_answer(
        world: World, make_token: Callable[[World], Awaitable[str | None]],
        expected: tuple[int, str | None, str | None]) -> None:
    token = await make_token(world)
    answers = {name: await outcome(app, token) for name, app in world.apps.items()}
    assert answers == {name: expected for name in world.apps}


async def test_another_client_is_refused_by_every_caller_when_binding_is_on(world: World) -> None:
    token = await valid(world)
    answers = {}
    for name, app in world.apps.items():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
            response = await client.get("/private", headers={"Accept": "application/json",
                                                             "User-Agent": "a thief's browser",
                                                             "Authorization": f"Bearer {token}"})
        body = response.json()
        body = body.get("detail", body)
        answers[name] = (response.status_code, body.get("reason"))
    expected = (401, "agent") if world.service.config.bind_user_agent else (200, None)
    assert answers == {name: expected for name in world.apps}


async def test_a_store_outage_is_503_from_every_caller(world: World) -> None:
    token = await valid(world)
    await world.service.store.close()  # a closed store answers StoreUnavailable, as a dead one does
    answers = {name: await outcome(app, token) for name, app in world.apps.items()}
    assert answers == {name: (503, "store_unavailable", None) for name in world.apps}
