"""JWTAuthMiddleware over the access policy: locations, modes, revocation through real stores, hooks, safe
defaults (jwtkit's other token kinds refused, cookies only when asked for, CSRF on cookie tokens)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from jwtkit import Key, encode
from jwtkit.service import Principal
from jwtkit.store import Session, Store, open_store
from jwtkit.web import AuthError, AuthMode, JWTAuthMiddleware, TokenLocation

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with")

KEY = Key.from_secret(b"m" * 32, "HS256")
OTHER = Key.from_secret(b"o" * 32, "HS256")


def token(key: Key = KEY, **claims: Any) -> str:
    now = time.time()
    body = {"sub": "alice", "sid": "s1", "iss": "issuer", "iat": int(now), "exp": int(now) + 60, **claims}
    return encode({k: v for k, v in body.items() if v is not None}, key)


async def whoami(request: Request) -> Response:
    principal = request.state.principal
    error = request.state.auth_error
    return JSONResponse({"user": principal.user_id if principal else None,
                         "sid": principal.session_id if principal else None,
                         "error": error.code if error else None,
                         "reason": error.reason if error else None})


async def ws_endpoint(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text(websocket.state.principal.user_id)
    await websocket.close()


def make_app(**options: Any) -> Starlette:
    app = Starlette(routes=[Route("/me", whoami), Route("/health", lambda r: PlainTextResponse("ok")),
                            WebSocketRoute("/ws", ws_endpoint)])
    app.add_middleware(JWTAuthMiddleware, keys=options.pop("keys", KEY), issuer=options.pop("issuer",
                                                                                            "issuer"),
                       **options)
    return app


async def get(app: Starlette, *, headers: dict[str, str] | None = None, cookies: dict[str, str] | None = None,
              path: str = "/me") -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test", cookies=cookies) as client:
        return await client.get(path, headers=headers)


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    async with open_store("memory://") as opened:
        now = time.time()
        await opened.create_session(Session(sid="s1", user_id="alice", created=now, last_used=now,
                                            expires=now + 600, family="f1", refresh_jti="r1"))
        yield opened


# --- header, cookie, query -------------------------------------------------------------------------------

async def test_bearer_header_gives_the_principal() -> None:
    response = await get(make_app(), headers={"Authorization": f"Bearer {token()}"})
    assert response.status_code == 200
    assert response.json() == {"user": "alice", "sid": "s1", "error": None, "reason": None}


async def test_scheme_is_case_insensitive_and_bare_token_is_accepted() -> None:
    assert (await get(make_app(), headers={"Authorization": f"bEaReR {token()}"})).status_code == 200
    # the tutorial's client sends the bare token, no scheme
    assert (await get(make_app(), headers={"Authorization": token()})).status_code == 200


async def test_no_token_is_401_with_bare_bearer_challenge() -> None:
    response = await get(make_app())
    assert response.status_code == 401
    # RFC 6750 §3.1: no error code when the request carried no credentials
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"] == "missing_token"


async def test_other_scheme_is_not_a_token() -> None:
    response = await get(make_app(), headers={"Authorization": "Basic YWxpY2U6cHc="})
    assert response.status_code == 401
    assert response.json()["error"] == "missing_token"


@pytest.mark.parametrize(("bad", "reason"), [
    (token(OTHER), "signature"),
    (token(exp=int(time.time()) - 10), "expired"),
    (token(iss="someone-else"), "claim"),
    ("not.a.jwt", "malformed"),
    ("x" * 9000, "too_large"),
    ("", "malformed"),
])
async def test_bad_tokens_are_401_invalid_token_with_reason(bad: str, reason: str) -> None:
    response = await get(make_app(), headers={"Authorization": f"Bearer {bad}"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    body = response.json()
    assert body["error"] == "invalid_token"
    assert body["reason"] == reason
    assert bad[:20] not in body["error_description"] or not bad


async def test_expired_and_invalid_are_told_apart() -> None:
    expired = await get(make_app(), headers={"Authorization": f"Bearer {token(exp=int(time.time()) - 5)}"})
    forged = await get(make_app(), headers={"Authorization": f"Bearer {token(OTHER)}"})
    assert expired.json()["reason"] == "expired"
    assert forged.json()["reason"] == "signature"


async def test_cookie_location_and_order() -> None:
    app = make_app(cookie_name="at", locations=(TokenLocation.HEADER, TokenLocation.COOKIE))
    assert (await get(app, cookies={"at": token()})).json()["user"] == "alice"
    # the first configured location that has a token wins: a bad header beats a good cookie ...
    response = await get(app, headers={"Authorization": f"Bearer {token(OTHER)}"}, cookies={"at": token()})
    assert response.status_code == 401
    # ... unless the cookie is listed first
    app = make_app(cookie_name="at", locations=(TokenLocation.COOKIE, TokenLocation.HEADER))
    response = await get(app, headers={"Authorization": f"Bearer {token(OTHER)}"}, cookies={"at": token()})
    assert response.status_code == 200


async def test_query_token_only_when_listed() -> None:
    good = token()
    response = await get(make_app(), path=f"/me?access_token={good}")
    assert response.status_code == 401
    app = make_app(locations=(TokenLocation.HEADER, TokenLocation.QUERY), query_param="t")
    assert (await get(app, path=f"/me?t={good}")).json()["user"] == "alice"


async def test_header_only_ignores_cookies() -> None:
    app = make_app(locations=(TokenLocation.HEADER,))
    assert (await get(app, cookies={"access_token": token()})).status_code == 401


async def test_cookies_are_read_only_when_the_app_opts_in() -> None:
    response = await get(make_app(), cookies={"access_token": token()})
    assert response.status_code == 401
    assert response.json()["error"] == "missing_token"


async def send(app: Starlette, method: str, *, headers: dict[str, str] | None = None,
               cookies: dict[str, str] | None = None) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test", cookies=cookies) as client:
        return await client.request(method, "/me", headers=headers)


def cookie_app(**options: Any) -> Starlette:
    app = Starlette(routes=[Route("/me", whoami, methods=["GET", "POST", "DELETE"])])
    app.add_middleware(JWTAuthMiddleware, keys=KEY, issuer="issuer",
                       locations=(TokenLocation.HEADER, TokenLocation.COOKIE), **options)
    return app


@pytest.mark.parametrize(("method", "headers", "status", "outcome"), [
    ("GET", {}, 200, "alice"),  # a safe method: no CSRF rule
    ("POST", {}, 403, "csrf_failed"),  # a cookie, no Origin, no double submit
    ("POST", {"Origin": "https://evil.example"}, 403, "csrf_failed"),
    ("DELETE", {"Origin": "null"}, 403, "csrf_failed"),
    ("POST", {"Origin": "http://test"}, 200, "alice"),  # same origin
    ("POST", {"X-CSRF-Token": "t" * 43}, 200, "alice"),  # double submit equal to the cookie
    ("POST", {"X-CSRF-Token": "u" * 43}, 403, "csrf_failed"),
    # a Basic header authenticates nothing: the cookie still does, so the rule still applies
    ("POST", {"Authorization": "Basic YTpi"}, 403, "csrf_failed"),
])
async def test_a_cookie_token_on_an_unsafe_method_passes_the_csrf_rule(
        method: str, headers: dict[str, str], status: int, outcome: str) -> None:
    app = cookie_app(csrf_cookie="csrf")
    response = await send(app, method, headers=headers, cookies={"access_token": token(), "csrf": "t" * 43})
    assert response.status_code == status
    body = response.json()
    assert (body.get("user") if status == 200 else body["error"]) == outcome


async def test_without_a_csrf_cookie_only_same_origin_passes() -> None:
    app = cookie_app()
    cookies = {"access_token": token()}
    assert (await send(app, "POST", cookies=cookies, headers={"X-CSRF-Token": "x"})).status_code == 403
    assert (await send(app, "POST", cookies=cookies, headers={"Origin": "http://test"})).status_code == 200


async def test_a_bearer_header_is_exempt_from_csrf() -> None:
    response = await send(cookie_app(csrf_cookie="csrf"), "POST", cookies={"csrf": "t" * 43},
                          headers={"Authorization": f"Bearer {token()}", "Origin": "https://evil.example"})
    assert response.status_code == 200


# --- revocation through a store --------------------------------------------------------------------------

async def test_store_check_accepts_active_and_refuses_revoked(store: Store) -> None:
    app = make_app(store=store)
    headers = {"Authorization": f"Bearer {token()}"}
    assert (await get(app, headers=headers)).status_code == 200
    await store.revoke("s1")
    response = await get(app, headers=headers)
    assert response.status_code == 401
    assert response.json()["reason"] == "revoked"


async def test_store_check_requires_sub_and_sid(store: Store) -> None:
    response = await get(make_app(store=store), headers={"Authorization": f"Bearer {token(sid=None)}"})
    assert response.status_code == 401
    assert response.json()["reason"] == "claim"


async def test_session_of_another_user_is_refused(store: Store) -> None:
    response = await get(make_app(store=store), headers={"Authorization": f"Bearer {token(sub='mallory')}"})
    assert response.json()["reason"] == "revoked"


async def test_store_unavailable_fails_closed_with_503(store: Store) -> None:
    app = make_app(store=store)
    await store.close()  # a closed store raises StoreUnavailable on every call
    response = await get(app, headers={"Authorization": f"Bearer {token()}"})
    assert response.status_code == 503
    assert response.json()["error"] == "store_unavailable"
    assert response.headers["retry-after"] == "1"


# --- modes, hooks, callbacks -----------------------------------------------------------------------------

async def test_optional_mode() -> None:
    app = make_app(mode=AuthMode.OPTIONAL)
    assert (await get(app)).json() == {"user": None, "sid": None, "error": None, "reason": None}
    assert (await get(app, headers={"Authorization": f"Bearer {token(OTHER)}"})).status_code == 401


async def test_try_mode_never_rejects_and_keeps_the_error() -> None:
    app = make_app(mode=AuthMode.TRY)
    response = await get(app, headers={"Authorization": f"Bearer {token(OTHER)}"})
    assert response.status_code == 200
    assert response.json() == {"user": None, "sid": None, "error": "invalid_token", "reason": "signature"}
    assert (await get(app)).json()["error"] is None  # no token is not an error


async def test_validate_callback_sync_and_async() -> None:
    def only_bob(principal: Principal) -> bool:
        return principal.user_id == "bob"

    async def only_alice(principal: Principal) -> bool:
        return principal.user_id == "alice"

    headers = {"Authorization": f"Bearer {token()}"}
    response = await get(make_app(validate=only_bob), headers=headers)
    assert response.status_code == 401
    assert response.json()["reason"] == "rejected"
    assert (await get(make_app(validate=only_alice), headers=headers)).status_code == 200


async def test_on_error_hook_receives_the_error() -> None:
    seen: list[AuthError] = []

    def hook(conn: HTTPConnection, error: AuthError) -> Response:
        seen.append(error)
        return PlainTextResponse(f"nope:{error.code}:{error.reason}", status_code=418)

    response = await get(make_app(on_error=hook), headers={"Authorization": f"Bearer {token(OTHER)}"})
    assert response.status_code == 418
    assert response.text == "nope:invalid_token:signature"
    assert [e.code for e in seen] == ["invalid_token"]


async def test_exclude_paths_skip_authentication() -> None:
    assert (await get(make_app(exclude_paths=["/health"]), path="/health")).status_code == 200
    assert (await get(make_app(), path="/health")).status_code == 401


async def test_audience_and_typ_are_enforced() -> None:
    app = make_app(audience="api", typ="at+jwt")
    good = encode({"sub": "alice", "iss": "issuer", "aud": "api", "exp": int(time.time()) + 60}, KEY,
                  typ="at+jwt")
    assert (await get(app, headers={"Authorization": f"Bearer {good}"})).status_code == 200
    wrong_typ = encode({"sub": "alice", "iss": "issuer", "aud": "api", "exp": int(time.time()) + 60}, KEY)
    response = await get(app, headers={"Authorization": f"Bearer {wrong_typ}"})
    assert response.json()["reason"] == "wrong_type"
    no_aud = encode({"sub": "alice", "iss": "issuer", "exp": int(time.time()) + 60}, KEY, typ="at+jwt")
    assert (await get(app, headers={"Authorization": f"Bearer {no_aud}"})).json()["reason"] == "claim"


def test_websocket_accepted_with_token_and_closed_without() -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # starlette asks for httpx2 in its TestClient
        from starlette.testclient import TestClient
    app = make_app()
    with TestClient(app) as client:
        with client.websocket_connect("/ws", headers={"Authorization": f"Bearer {token()}"}) as ws:
            assert ws.receive_text() == "alice"
        from starlette.websockets import WebSocketDisconnect

        with pytest.raises(WebSocketDisconnect) as caught, client.websocket_connect("/ws"):
            pass
        assert caught.value.code == 1008


# --- configuration is checked where it is built ------------------------------------------------------------

@pytest.mark.parametrize(("options", "error"), [
    ({"keys": b"secret"}, TypeError),
    ({"keys": KEY, "locations": ()}, ValueError),
    ({"keys": KEY, "locations": (TokenLocation.HEADER, TokenLocation.HEADER)}, ValueError),
    ({"keys": KEY, "locations": ("header",)}, TypeError),
    ({"keys": KEY, "cookie_name": "a b"}, ValueError),
    ({"keys": KEY, "leeway": -1}, ValueError),
    ({"keys": KEY, "validate": 3}, TypeError),
])
def test_bad_configuration_raises_at_construction(options: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        JWTAuthMiddleware(whoami, **options)


@pytest.mark.parametrize("options", [{}, {"keys": KEY, "policy": object()}, {"issuer": "x"}])
def test_exactly_one_source_of_policy(options: dict[str, Any]) -> None:
    with pytest.raises(TypeError):
        JWTAuthMiddleware(whoami, **options)


def test_bad_mode_raises() -> None:
    with pytest.raises(TypeError):
        JWTAuthMiddleware(whoami, keys=KEY, mode="required")  # type: ignore[arg-type]


def test_repr_shows_configuration_not_keys() -> None:
    text = repr(JWTAuthMiddleware(whoami, keys=KEY, issuer="me"))
    assert "issuer='me'" in text
    assert "mmmm" not in text


@pytest.mark.parametrize("backend", ["memory", "sqlite", "redis"])
async def test_revocation_through_every_store(backend: str, request: pytest.FixtureRequest,
                                              tmp_path: Any) -> None:
    if backend == "redis":
        url = request.getfixturevalue("redis_url")
    elif backend == "sqlite":
        url = f"sqlite:///{tmp_path}/sessions.db"
    else:
        url = "memory://"
    async with open_store(url) as opened:
        now = time.time()
        await opened.create_session(Session(sid="s1", user_id="alice", created=now, last_used=now,
                                            expires=now + 600, family="f1", refresh_jti="r1"))
        app = make_app(store=opened)
        headers = {"Authorization": f"Bearer {token()}"}
        assert (await get(app, headers=headers)).status_code == 200
        await opened.revoke_all("alice")  # log out everywhere
        response = await get(app, headers=headers)
        assert response.status_code == 401
        assert response.json()["reason"] == "revoked"


async def test_a_query_string_with_too_many_fields_is_no_token() -> None:
    app = make_app(locations=(TokenLocation.QUERY,))
    query = "&".join(f"f{i}=1" for i in range(100)) + f"&access_token={token()}"
    response = await get(app, path=f"/me?{query}")
    assert response.status_code == 401
    assert response.json()["error"] == "missing_token"
