"""A FastAPI app secured with jwtkit (tests/web/_fastapi_app.py): the auth router, scopes and roles, the
WebSocket route, the OpenAPI document and offline docs, all through the real JWTAuthMiddleware over a real
AuthService whose claims hook puts ``scope`` and ``roles`` into the tokens."""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

import pytest
from _fastapi_app import PASSWORD, make_app, make_service
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.websockets import WebSocket, WebSocketDisconnect

from jwtkit import Key, decode_unverified, encode
from jwtkit.service import AuthConfig, Principal
from jwtkit.service._tokens import ACCESS_TYP
from jwtkit.web import (
    AuthError,
    AuthMode,
    BearerScheme,
    CookiePolicy,
    JWTAuthMiddleware,
    auth_error_handler,
    auth_router,
    check_roles,
    check_scopes,
    offline_docs,
    require_principal,
    require_scopes,
)

IP = "203.0.113.7"
AGENT = "jwtkit-tests/1.0"


class Clock:
    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def opened(service: Any) -> Any:
    """A lifespan that opens the service for the app's life."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        async with service:
            yield

    return lifespan


def client_for(app: Any) -> TestClient:
    return TestClient(app, client=(IP, 5555), headers={"User-Agent": AGENT})


@pytest.fixture
def client(clock: Clock) -> Iterator[TestClient]:
    service = make_service(config=AuthConfig(refresh_race_window=0, throttle_base_delay=30), clock=clock)
    with client_for(make_app(service)) as test_client:
        yield test_client


def login(client: TestClient, name: str, **extra: str) -> dict[str, Any]:
    response = client.post("/auth/token", data={"username": name, "password": PASSWORD, **extra})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def bearer(tokens: dict[str, Any] | str) -> dict[str, str]:
    token = tokens if isinstance(tokens, str) else tokens["access_token"]
    return {"Authorization": f"Bearer {token}"}


MISSING = {"error": "missing_token", "error_description": "An access token is required"}


# --- POST /token --------------------------------------------------------------------------------------------


def test_token_takes_the_oauth2_password_form_and_answers_rfc_6749(client: TestClient) -> None:
    response = client.post("/auth/token", data={"grant_type": "password", "username": "alice",
                                                "password": PASSWORD, "scope": "read"})
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token", "scope",
                         "device_token"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 900
    assert body["scope"] == "read"
    header, claims = decode_unverified(body["access_token"])
    assert header["typ"] == ACCESS_TYP
    assert claims["scope"] == "read"
    assert client.get("/me", headers=bearer(body)).json()["scopes"] == ["read"]


def test_token_without_grant_type_or_scope_is_the_four_fields(client: TestClient) -> None:
    body = login(client, "carol")
    # and the known-device token, an extra parameter (RFC 6749 §5.1 lets a server add its own)
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token", "device_token"}
    # a scope asked for and not granted: the answer says which were (none), RFC 6749 §5.1
    assert login(client, "carol", scope="read")["scope"] == ""


def test_token_passes_the_client_ip_and_user_agent_to_the_service(client: TestClient) -> None:
    tokens = login(client, "alice")
    (row,) = client.get("/auth/sessions", headers=bearer(tokens)).json()["sessions"]
    assert (row["ip"], row["user_agent"], row["current"]) == (IP, AGENT, True)


def test_wrong_password_is_401_invalid_credentials(client: TestClient) -> None:
    response = client.post("/auth/token", data={"username": "alice", "password": "wrong"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json() == {"error": "invalid_credentials",
                               "error_description": "invalid username or password"}


def test_missing_field_and_other_grant_types_are_400_with_the_one_body(client: TestClient) -> None:
    response = client.post("/auth/token", data={"username": "alice"})
    assert response.status_code == 400
    assert response.json() == {"error": "missing_field", "field": "password",
                               "error_description": "The field 'password' is required"}
    response = client.post("/auth/token", data={"grant_type": "client_credentials", "username": "alice",
                                                "password": PASSWORD})
    assert response.status_code == 400
    assert response.json() == {"error": "bad_request", "field": "grant_type",
                               "error_description": "This endpoint takes grant_type=password only"}


def test_throttled_is_429_with_retry_after_not_401(client: TestClient) -> None:
    for _ in range(5):
        assert client.post("/auth/token", data={"username": "alice", "password": "wrong"}).status_code == 401
    response = client.post("/auth/token", data={"username": "alice", "password": PASSWORD})
    assert response.status_code == 429
    assert response.headers["retry-after"] == "30"
    assert "www-authenticate" not in response.headers
    assert response.json() == {"error": "throttled",
                               "error_description": "too many failed attempts; try again later"}


# --- POST /refresh, /logout, /logout/all, sessions ----------------------------------------------------------


def test_refresh_rotates_and_a_reused_refresh_token_is_401_refresh_reused(client: TestClient) -> None:
    first = login(client, "alice")
    response = client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    second = response.json()
    assert set(second) == {"access_token", "token_type", "expires_in", "refresh_token", "scope"}
    assert second["refresh_token"] != first["refresh_token"]
    assert client.get("/me", headers=bearer(second)).status_code == 200
    reused = client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert reused.status_code == 401
    assert reused.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert reused.json()["error"] == "refresh_reused"
    # reuse ends the session: the rotated pair is dead too (RFC 9700 §4.14)
    assert client.get("/me", headers=bearer(second)).json()["reason"] == "revoked"


def test_refresh_without_a_token_is_400(client: TestClient) -> None:
    response = client.post("/auth/refresh", json={})
    assert response.status_code == 400
    assert response.json()["field"] == "refresh_token"


def test_logout_ends_this_session_only(client: TestClient) -> None:
    phone, laptop = login(client, "alice"), login(client, "alice")
    assert client.post("/auth/logout", headers=bearer(phone)).status_code == 204
    refused = client.get("/me", headers=bearer(phone))
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == ('Bearer error="invalid_token", '
                                                   'error_description="The session was revoked"')
    assert refused.json() == {"error": "invalid_token", "error_description": "The session was revoked",
                              "reason": "revoked"}
    assert client.get("/me", headers=bearer(laptop)).status_code == 200
    assert client.post("/auth/logout").status_code == 204  # no token: logging out again is harmless


def test_logout_all_and_revoking_one_session(client: TestClient) -> None:
    one, two, three = login(client, "bob"), login(client, "bob"), login(client, "bob")
    sessions = client.get("/auth/sessions", headers=bearer(one)).json()["sessions"]
    assert len(sessions) == 3
    assert [row["current"] for row in sessions].count(True) == 1
    sid_two = decode_unverified(two["access_token"])[1]["sid"]
    assert client.delete(f"/auth/sessions/{sid_two}", headers=bearer(one)).status_code == 204
    assert client.get("/me", headers=bearer(two)).status_code == 401
    missing = client.delete(f"/auth/sessions/{sid_two}", headers=bearer(one))
    assert missing.status_code == 404
    assert missing.json() == {"error": "not_found", "error_description": "No such active session"}
    assert client.post("/auth/logout/all", headers=bearer(one)).status_code == 204
    assert client.get("/me", headers=bearer(three)).status_code == 401
    assert client.get("/me", headers=bearer(one)).status_code == 401


def test_router_routes_need_a_token(client: TestClient) -> None:
    for method, path in (("POST", "/auth/logout/all"), ("GET", "/auth/sessions"),
                         ("DELETE", "/auth/sessions/x")):
        response = client.request(method, path)
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json() == MISSING


# --- scopes and roles ---------------------------------------------------------------------------------------


def test_a_scope_route_takes_a_token_with_the_scope(client: TestClient) -> None:
    assert client.get("/items", headers=bearer(login(client, "alice"))).json()["items"] == ["apple", "pear"]


def test_a_missing_scope_is_403_insufficient_scope_never_401(client: TestClient) -> None:
    response = client.get("/items", headers=bearer(login(client, "carol")))
    assert response.status_code == 403
    assert response.headers["www-authenticate"] == 'Bearer error="insufficient_scope", scope="read"'
    assert response.headers["cache-control"] == "no-store"
    assert response.json() == {
        "error": "insufficient_scope", "reason": "scope",
        "error_description": "The access token lacks the scope this request needs: read"}


def test_no_token_on_a_scope_route_stays_401(client: TestClient) -> None:
    response = client.get("/items")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json() == MISSING


def test_a_bad_token_is_401_invalid_token(client: TestClient) -> None:
    forged = encode({"sub": "x", "sid": "y", "exp": int(time.time()) + 60},
                    Key.from_secret(b"f" * 32, "HS256"), typ=ACCESS_TYP)
    response = client.get("/items", headers=bearer(forged))
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    assert response.json()["error"] == "invalid_token"


def test_roles(client: TestClient) -> None:
    assert client.get("/admin", headers=bearer(login(client, "bob"))).status_code == 200
    response = client.get("/admin", headers=bearer(login(client, "alice")))
    assert response.status_code == 403
    assert response.headers["www-authenticate"] == 'Bearer error="insufficient_scope"'
    assert response.json() == {
        "error": "insufficient_scope", "reason": "role",
        "error_description": "The access token lacks the role this request needs: admin"}


def test_check_scopes_in_an_endpoint(client: TestClient) -> None:
    assert client.post("/items", headers=bearer(login(client, "bob"))).status_code == 200
    response = client.post("/items", headers=bearer(login(client, "alice")))
    assert response.status_code == 403
    assert response.headers["www-authenticate"] == 'Bearer error="insufficient_scope", scope="write"'
    response = client.post("/items")
    assert (response.status_code, response.json()) == (401, MISSING)


def test_a_token_made_with_the_key_ring_carries_its_scope_and_roles(client: TestClient, clock: Clock) -> None:
    """Tokens the service did not mint through its claims hook, signed with its active key for a real
    session: the dependencies read what the policy verified, whoever put the claims there."""
    pair = login(client, "carol")
    claims = decode_unverified(pair["access_token"])[1]
    service = client.app.state.service  # type: ignore[attr-defined]
    token = encode({**claims, "scope": "read write", "roles": ["admin"]}, service.keys.active, typ=ACCESS_TYP)
    assert client.get("/items", headers=bearer(token)).status_code == 200
    assert client.get("/admin", headers=bearer(token)).status_code == 200


def test_optional_principal(client: TestClient) -> None:
    assert client.get("/maybe").json() == {"user_id": None}
    assert client.get("/maybe", headers=bearer(login(client, "alice"))).json()["user_id"]


# --- WebSocket ----------------------------------------------------------------------------------------------


def test_websocket_with_a_token_in_the_header_or_the_query(client: TestClient) -> None:
    tokens = login(client, "alice")
    with client.websocket_connect("/ws", headers=bearer(tokens)) as ws:
        user_id = ws.receive_json()["user_id"]
    with client.websocket_connect(f"/ws?access_token={tokens['access_token']}") as ws:
        assert ws.receive_json() == {"user_id": user_id}


@pytest.mark.parametrize(("path", "who", "reason"), [
    ("/ws", None, "missing_token"),
    ("/ws", "forged", "invalid_token"),
    ("/ws/admin", "alice", "insufficient_scope"),
])
def test_a_refused_websocket_handshake_closes_1008(client: TestClient, path: str, who: str | None,
                                                  reason: str) -> None:
    headers = {}
    if who == "forged":
        headers = bearer("eyJhbGciOiJIUzI1NiJ9.e30.x")
    elif who is not None:
        headers = bearer(login(client, who))
    with pytest.raises(WebSocketDisconnect) as refused, client.websocket_connect(path, headers=headers):
        pass
    assert (refused.value.code, refused.value.reason) == (1008, reason)


def test_websocket_admin_with_the_role(client: TestClient) -> None:
    with client.websocket_connect("/ws/admin", headers=bearer(login(client, "bob"))) as ws:
        assert "admin" in ws.receive_json()


def test_a_query_token_is_read_only_when_the_middleware_lists_it(clock: Clock) -> None:
    service = make_service(clock=clock)
    app = FastAPI(lifespan=opened(service))
    app.add_middleware(JWTAuthMiddleware, service=service, mode=AuthMode.TRY)  # the header only
    app.include_router(auth_router(service), prefix="/auth")

    @app.websocket("/ws")
    async def ws(websocket: WebSocket, principal: Annotated[Principal, Depends(require_principal)]) -> None:
        await websocket.accept()
        await websocket.close()

    with client_for(app) as client:
        client.portal.call(service.register, "dave", PASSWORD)
        token = login(client, "dave")["access_token"]
        with pytest.raises(WebSocketDisconnect) as refused, \
                client.websocket_connect(f"/ws?access_token={token}"):
            pass
    assert (refused.value.code, refused.value.reason) == (1008, "missing_token")


# --- OpenAPI ------------------------------------------------------------------------------------------------


def test_openapi_declares_the_scheme_and_each_protected_route_lists_it(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"] == {
        "jwtkit": {"type": "oauth2", "flows": {"password": {"tokenUrl": "/auth/token", "scopes": {}}}}}
    security = {(path, method): operation.get("security")
                for path, item in spec["paths"].items() for method, operation in item.items()}
    assert security == {
        ("/auth/token", "post"): None,
        ("/auth/refresh", "post"): None,
        ("/auth/logout", "post"): [{"jwtkit": []}],
        ("/auth/logout/all", "post"): [{"jwtkit": []}],
        ("/auth/sessions", "get"): [{"jwtkit": []}],
        ("/auth/sessions/{sid}", "delete"): [{"jwtkit": []}],
        ("/me", "get"): [{"jwtkit": []}],
        ("/maybe", "get"): [{"jwtkit": []}],
        ("/items", "get"): [{"jwtkit": ["read"]}],
        ("/items", "post"): None,  # check_scopes in the body: nothing for OpenAPI to see
        ("/admin", "get"): [{"jwtkit": []}],
    }
    token = spec["paths"]["/auth/token"]["post"]
    form = token["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]
    assert form["required"] == ["username", "password"]
    assert set(token["responses"]) == {"200", "400", "401", "403", "429", "503"}
    assert {"TokenAnswer", "ErrorBody", "SessionList"} <= set(spec["components"]["schemas"])


AUTH = BearerScheme(token_url="/api/auth/token", scopes={"read": "Read items"}, name="api",
                    description="Sign in with your jwtkit account")
PLAIN = BearerScheme(token_url=None, name="paste")


def test_a_configured_scheme(clock: Clock) -> None:
    service = make_service(clock=clock)
    app = FastAPI(lifespan=opened(service))
    app.add_middleware(JWTAuthMiddleware, service=service, mode=AuthMode.TRY)
    app.include_router(auth_router(service, scheme=AUTH), prefix="/api/auth")

    @app.get("/items")
    async def items(principal: Annotated[Principal, Depends(AUTH.require_scopes("read"))]) -> None: ...

    @app.get("/other")
    async def other(principal: Annotated[Principal, Depends(PLAIN.require_scopes("read"))]) -> None: ...

    with client_for(app) as client:
        spec = client.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"] == {
        "api": {"type": "oauth2", "description": "Sign in with your jwtkit account",
                "flows": {"password": {"tokenUrl": "/api/auth/token", "scopes": {"read": "Read items"}}}},
        "paste": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}
    assert spec["paths"]["/items"]["get"]["security"] == [{"api": ["read"]}]
    assert spec["paths"]["/other"]["get"]["security"] == [{"paste": []}]  # scopes are OAuth2's only
    assert spec["paths"]["/api/auth/sessions"]["get"]["security"] == [{"api": []}]


def test_scheme_and_dependency_arguments_are_checked() -> None:
    with pytest.raises(TypeError):
        require_scopes()
    with pytest.raises(ValueError, match="not a valid scope"):
        require_scopes("read write")
    with pytest.raises(ValueError, match="not a valid scope"):
        require_scopes('a"b')
    with pytest.raises(ValueError, match="token_url"):
        BearerScheme(token_url="")
    with pytest.raises(ValueError, match="scopes go with the password flow"):
        BearerScheme(token_url=None, scopes={"read": "x"})
    assert repr(require_scopes("read", "write")) == "require_scopes('read', 'write')"
    assert repr(require_principal) == "<dependency require_principal>"


# --- without the handler, and for Starlette -----------------------------------------------------------------


def test_without_auth_error_handler_fastapi_still_answers_the_status_and_headers(clock: Clock) -> None:
    service = make_service(clock=clock)
    app = FastAPI(lifespan=opened(service))
    app.add_middleware(JWTAuthMiddleware, service=service, mode=AuthMode.TRY)
    app.include_router(auth_router(service), prefix="/auth")

    @app.get("/items")
    async def items(principal: Annotated[Principal, Depends(require_scopes("read"))]) -> None: ...

    with client_for(app) as client:
        client.portal.call(service.register, "erin", PASSWORD)
        response = client.get("/items", headers=bearer(login(client, "erin")))
        assert response.status_code == 403
        assert response.headers["www-authenticate"] == 'Bearer error="insufficient_scope", scope="read"'
        assert response.json() == {"detail": {"error": "insufficient_scope", "reason": "scope",
                                              "error_description": "The access token lacks the scope this "
                                                                   "request needs: read"}}
        # the router answers the one body whatever the app registered
        assert client.get("/auth/sessions").json() == MISSING


def test_check_functions_in_a_starlette_app(clock: Clock) -> None:
    service = make_service(clock=clock)

    async def admin(request: Request) -> JSONResponse:
        principal = check_roles(request, "admin")
        return JSONResponse({"admin": principal.user_id})

    async def reader(request: Request) -> JSONResponse:
        principal = check_scopes(request.state.principal, "read")
        return JSONResponse({"reader": principal.user_id})

    app = Starlette(routes=[Route("/admin", admin), Route("/read", reader)],
                    exception_handlers={AuthError: auth_error_handler}, lifespan=opened(service))
    app.add_middleware(JWTAuthMiddleware, service=service, mode=AuthMode.TRY)

    async def tokens() -> tuple[str, str]:
        user = await service.register("frank", PASSWORD)
        pair = await service.login("frank", PASSWORD)
        await service.set_roles(user.id, ["admin"])
        return pair.access_token, (await service.login("frank", PASSWORD)).access_token

    with client_for(app) as client:
        plain, admin_token = client.portal.call(tokens)
        response = client.get("/admin", headers=bearer(plain))
        assert response.status_code == 403
        assert response.headers["www-authenticate"] == 'Bearer error="insufficient_scope"'
        assert response.json()["reason"] == "role"
        assert client.get("/admin", headers=bearer(admin_token)).status_code == 200
        response = client.get("/read", headers=bearer(admin_token))
        assert response.headers["www-authenticate"] == 'Bearer error="insufficient_scope", scope="read"'
        assert client.get("/read").json() == MISSING
        bad = client.get("/admin", headers=bearer("not-a-jwt"))
        assert bad.status_code == 401
        assert bad.json()["reason"] == "malformed"


def test_check_functions_on_principals() -> None:
    principal = Principal("u", "s", {"scope": "read write", "roles": ["admin", 7]})
    assert check_scopes(principal, "read", "write") is principal
    assert check_roles(principal, "admin") is principal
    with pytest.raises(AuthError) as refused:
        check_scopes(principal, "delete")
    assert (refused.value.code, refused.value.status, refused.value.reason) == ("insufficient_scope", 403,
                                                                                "scope")
    with pytest.raises(AuthError) as refused:
        check_roles(None, "admin")
    assert (refused.value.code, refused.value.status) == ("missing_token", 401)


# --- cookies ------------------------------------------------------------------------------------------------


def test_with_a_cookie_policy_the_router_sets_and_reads_the_cookies(clock: Clock) -> None:
    service = make_service(clock=clock)
    policy = CookiePolicy(secure=False)
    app = FastAPI(lifespan=opened(service))
    app.add_middleware(JWTAuthMiddleware, service=service, mode=AuthMode.TRY)
    app.include_router(auth_router(service, cookies=policy), prefix="/auth")
    with client_for(app) as client:
        client.portal.call(service.register, "gina", PASSWORD)
        origin = {"Origin": "http://testserver"}
        response = client.post("/auth/token", data={"username": "gina", "password": PASSWORD}, headers=origin)
        assert response.status_code == 200
        assert {"jwtkit", "jwtkit-refresh"} <= set(response.cookies)
        cross = client.post("/auth/refresh", headers={"Origin": "http://evil.example"})
        assert cross.status_code == 403
        assert cross.json()["error"] == "csrf_failed"
        refreshed = client.post("/auth/refresh", headers=origin)
        assert refreshed.status_code == 200, refreshed.text
        assert refreshed.json()["refresh_token"] != response.json()["refresh_token"]


# --- offline docs and light imports -------------------------------------------------------------------------


def test_docs_are_served_from_local_assets(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assert not re.findall(r"https?://", page.text), "the docs page names an outside URL"
    assert 'src="/docs-assets/swagger-ui-bundle.js"' in page.text
    assert '"validatorUrl": null' in page.text
    script = client.get("/docs-assets/swagger-ui-bundle.js")
    assert script.status_code == 200
    assert "SwaggerUIBundle" in script.text[:2000]
    assert client.get("/docs-assets/swagger-ui.css").status_code == 200
    redoc = client.get("/redoc")
    assert 'src="/docs-assets/redoc.standalone.js"' in redoc.text
    assert "fonts.googleapis.com" not in redoc.text
    assert client.get("/docs/oauth2-redirect").status_code == 200


def test_offline_docs_needs_docs() -> None:
    with pytest.raises(ValueError, match="no OpenAPI document"):
        offline_docs(FastAPI(openapi_url=None))


def test_the_dependencies_import_no_fastapi_and_fall_back_without_it() -> None:
    code = ("import sys, inspect; from jwtkit.web import BearerScheme, require_scopes, check_scopes; "
            "loaded = 'fastapi' in sys.modules; sys.modules['fastapi'] = None; "
            "print(loaded, inspect.signature(require_scopes('read')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            check=True)
    assert result.stdout.strip() == "False (conn: starlette.requests.HTTPConnection)"
