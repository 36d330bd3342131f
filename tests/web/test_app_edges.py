"""The server's edges: bad requests, size limits, security headers, CSRF, machine endpoints, never a 500."""

from __future__ import annotations

import warnings

import httpx
import pytest
from _support import HTML, JSON, PASSWORD, Server, csrf_of, make_service

from jwtkit import Key
from jwtkit.service import KeyRing
from jwtkit.web import create_app
from jwtkit.web._edge import CSP

# --- bad requests -----------------------------------------------------------------------------------------

async def test_oversized_body_is_413_before_reading(server: Server) -> None:
    response = await server.json_client().post("/auth", content=b"{" + b" " * 20000 + b"}",
                                               headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"] == "body_too_large"


async def test_oversized_chunked_body_is_413(server: Server) -> None:
    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(40):
            yield b"a" * 1024

    response = await server.json_client().post("/auth", content=chunks(),
                                               headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 413


async def test_oversized_headers_are_431(server: Server) -> None:
    response = await server.json_client().get("/private", headers={"X-Junk": "j" * 17000})
    assert response.status_code == 431
    assert response.json()["error"] == "headers_too_large"


async def test_bad_content_length_is_400(server: Server) -> None:
    response = await server.json_client().post("/auth", headers={"Content-Length": "abc"}, content=b"")
    assert response.status_code == 400


async def test_wrong_content_type_is_415(server: Server) -> None:
    client = server.json_client()
    for content_type in ("text/plain", "multipart/form-data; boundary=x", "application/xml"):
        response = await client.post("/auth", content=b"username=a&password=b",
                                     headers={"Content-Type": content_type})
        assert response.status_code == 415
        assert response.json()["error"] == "unsupported_media_type"


@pytest.mark.parametrize(("body", "code"), [
    (b"{not json", "invalid_json"),
    (b"[1, 2]", "invalid_json"),
    (b'{"username": 5, "password": "x"}', "bad_request"),
    (b'{"username": "' + b"a" * 9000 + b'", "password": "x"}', "bad_request"),  # over MAX_FIELD
    (b'"just a string"', "invalid_json"),
    (b"\xff\xfe", "invalid_json"),
])
async def test_bad_json_bodies_are_400(server: Server, body: bytes, code: str) -> None:
    response = await server.json_client().post("/auth", content=body,
                                               headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"] == code


async def test_unknown_path_and_wrong_method(server: Server) -> None:
    client = server.json_client()
    missing = await client.get("/no/such/page")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"
    wrong = await client.get("/auth")
    assert wrong.status_code == 405
    assert wrong.json()["error"] == "method_not_allowed"
    page = await server.browser().get("/no/such/page")
    assert page.status_code == 404
    assert "text/html" in page.headers["content-type"]


async def test_never_a_500_on_hostile_input(server: Server) -> None:
    await server.user()
    client = server.client()
    hostile = [
        ("GET", "/private", {"Authorization": ("Bearer " + "\u00e9" * 20).encode("latin-1")}, None),
        ("GET", "/private", {"Authorization": "Bearer a.b"}, None),
        ("GET", "/private", {"Authorization": "Bearer ...."}, None),
        ("GET", "/private", {"Cookie": "__Host-jwtkit=%%%; x"}, None),
        ("GET", "/private", {"Accept": "application/json;q=x"}, None),
        ("POST", "/auth", {"Content-Type": "application/json"}, b"{\"username\": {\"a\": 1}}"),
        ("POST", "/auth", {"Content-Type": "application/x-www-form-urlencoded"}, b"%ff%fe=%80"),
        ("POST", "/auth", {"Content-Type": "application/json"}, b"[" * 5000),
        ("POST", "/register", {"Content-Type": "application/json"},
         b'{"username": "\\u0000", "password": "\\ud800\\udc00pw-long-enough"}'),
        ("POST", "/refresh", {"Content-Type": "application/json"}, b'{"refresh_token": "a.b.c"}'),
        ("DELETE", "/sessions/%00", {"Authorization": "Bearer x"}, None),
        ("GET", "/verify?token=" + "A" * 9000, {}, None),
        ("GET", "/password/reset?token=<script>", {"Accept": "text/html"}, None),
        ("POST", "/password/reset", {"Content-Type": "application/json"}, b'{"token": "", "password": ""}'),
        ("POST", "/password/forgot", {"Content-Type": "application/json"},
         b'{"username": "' + b"x" * 4000 + b'"}'),
        ("GET", "/static/../app.py", {}, None),
    ]
    for method, path, headers, body in hostile:
        response = await client.request(method, path, headers=headers, content=body)
        assert response.status_code < 500, (method, path, response.status_code, response.text[:200])


async def test_templates_escape_user_input(server: Server) -> None:
    response = await server.browser().post("/auth", data={"username": "<script>alert(1)</script>",
                                                          "password": "whatever pw"})
    assert response.status_code == 401
    assert "<script>alert(1)</script>" not in response.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in response.text


# --- headers ----------------------------------------------------------------------------------------------

async def test_pages_carry_the_strict_headers(server: Server) -> None:
    page = await server.browser().get("/")
    assert page.status_code == 200
    assert page.headers["content-security-policy"] == CSP
    assert "script-src 'self'" in CSP and "unsafe-inline" not in CSP
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["referrer-policy"] == "same-origin"
    assert page.headers["cache-control"] == "no-store"
    assert "<script" not in page.text and "style=" not in page.text and "<style" not in page.text


async def test_static_stylesheet_is_served(server: Server) -> None:
    response = await server.client().get("/static/site.css")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/css")
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_debugger_route_renders_its_template(server: Server) -> None:
    response = await server.browser().get("/debugger")
    assert response.status_code == 200
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["content-security-policy"] == CSP


# --- CSRF -------------------------------------------------------------------------------------------------

async def logged_in_browser(server: Server, *, new_user: bool = True) -> tuple[httpx.AsyncClient, str]:
    if new_user:
        await server.user()
    browser = server.browser()
    csrf = csrf_of((await browser.get("/")).text)
    response = await browser.post("/auth", data={"username": "alice", "password": PASSWORD,
                                                 "csrf_token": csrf})
    assert response.status_code == 303
    return browser, csrf


async def test_cookie_authenticated_post_without_csrf_is_403(server: Server) -> None:
    browser, _ = await logged_in_browser(server)
    response = await browser.post("/logout/all", data={})
    assert response.status_code == 403
    assert "CSRF" in response.text
    assert (await browser.get("/private")).status_code == 200  # nothing happened


async def test_cookie_authenticated_post_with_wrong_csrf_is_403(server: Server) -> None:
    browser, _ = await logged_in_browser(server)
    assert (await browser.post("/logout", data={"csrf_token": "x" * 43})).status_code == 403


async def test_csrf_header_or_same_origin_passes(server: Server) -> None:
    browser, csrf = await logged_in_browser(server)
    sid = (await server.service.list_sessions((await server.service.find_user("alice")).id))[0].sid  # type: ignore[union-attr]
    response = await browser.delete(f"/sessions/{sid}", headers={"X-CSRF-Token": csrf,
                                                                 "Accept": "application/json"})
    assert response.status_code in (204, 303)
    browser, _ = await logged_in_browser(server, new_user=False)
    same_origin = await browser.post("/logout", headers={"Origin": "https://testserver"})
    assert same_origin.status_code == 303


async def test_cross_origin_post_is_403_even_for_login(server: Server) -> None:
    await server.user()
    response = await server.browser().post("/auth", data={"username": "alice", "password": PASSWORD},
                                           headers={"Origin": "https://evil.example"})
    assert response.status_code == 403
    null_origin = await server.browser().post("/auth", data={"username": "alice", "password": PASSWORD},
                                              headers={"Origin": "null"})
    assert null_origin.status_code == 403


async def test_bearer_requests_need_no_csrf(server: Server) -> None:
    await server.user()
    pair = await server.login()
    response = await server.json_client().post("/logout/all",
                                               headers={"Authorization": f"Bearer {pair['access_token']}"})
    assert response.status_code == 204


async def test_csrf_cookie_is_readable_and_strict(server: Server) -> None:
    page = await server.browser().get("/")
    cookie = next(c for c in page.headers.get_list("set-cookie") if c.startswith("__Host-jwtkit-csrf="))
    assert "HttpOnly" not in cookie
    assert "SameSite=Strict" in cookie
    assert "Secure" in cookie


# --- machine endpoints ------------------------------------------------------------------------------------

async def test_jwks_is_empty_for_hmac(server: Server) -> None:
    response = await server.client().get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.json() == {"keys": []}
    assert response.headers["cache-control"].startswith("public")


async def test_jwks_publishes_public_asymmetric_keys() -> None:
    from _support import start, stop

    ring = KeyRing(Key.generate("ES256", kid="k1"))
    running = await start(keys=ring)
    try:
        keys = (await running.client().get("/.well-known/jwks.json")).json()["keys"]
        assert [k["kid"] for k in keys] == ["k1"]
        assert "d" not in keys[0]
        await running.user()
        pair = await running.login()
        ok = await running.json_client().get("/private",
                                             headers={"Authorization": f"Bearer {pair['access_token']}"})
        assert ok.status_code == 200
    finally:
        await stop(running)


async def test_healthz_ok_and_503_when_the_store_is_closed(server: Server) -> None:
    client = server.client()
    healthy = await client.get("/healthz")
    assert healthy.status_code == 200
    assert healthy.json() == {"status": "ok", "store": "ok", "mirror": "off"}
    await server.service.store.close()
    down = await client.get("/healthz")
    assert down.status_code == 503
    assert down.json()["store"] == "unavailable"


async def test_store_errors_are_503_on_every_route(server: Server) -> None:
    await server.user()
    pair = await server.login()
    await server.service.store.close()
    client = server.json_client()
    bearer = {"Authorization": f"Bearer {pair['access_token']}"}
    for method, path, body in [("GET", "/private", None), ("POST", "/auth", {"username": "alice",
                                                                             "password": "x"}),
                               ("POST", "/logout", None), ("GET", "/sessions", None),
                               ("POST", "/refresh", {"refresh_token": pair["refresh_token"]})]:
        response = await client.request(method, path, headers=bearer, json=body)
        assert response.status_code == 503, (path, response.text)
        assert response.json()["error"] == "store_unavailable"
        assert response.headers["retry-after"] == "1"
    page = await server.browser().get("/private", headers=bearer)
    assert page.status_code == 503


async def test_openapi_documents_the_json_api(server: Server) -> None:
    doc = (await server.client().get("/openapi.json")).json()
    assert doc["openapi"] == "3.1.0"
    # every route of the server is documented, except what only a browser or a person uses
    pages_only = {"/", "/home", "/debugger", "/static", "/favicon.ico", "/openapi.json",
                  "/sessions/{sid}/revoke"}
    routes = {route.path for route in server.app.routes}  # type: ignore[attr-defined]
    assert set(doc["paths"]) == routes - pages_only
    assert "401" in doc["paths"]["/private"]["get"]["responses"]


@pytest.mark.filterwarnings("ignore:Using `httpx` with")  # starlette's TestClient asks for httpx2
def test_lifespan_opens_and_closes_the_service() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

        service = make_service()
        app = create_app(service, secure_cookies=False)
        with TestClient(app) as client:
            assert client.get("/healthz", headers=JSON).status_code == 200
            assert client.get("/", headers=HTML).status_code == 200
        assert client.get("/healthz").status_code in (200, 503)


def test_create_app_refuses_service_and_settings_together() -> None:
    from jwtkit.service import Settings

    with pytest.raises(TypeError):
        create_app(make_service(), settings=Settings(store_url="memory://"))


async def test_last_resort_handler_answers_a_clean_500_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    from _support import start, stop

    running = await start()
    try:
        await running.user()
        pair = await running.login()

        async def broken(user_id: str) -> None:
            raise RuntimeError("a bug with a secret detail")

        running.service.users.get = broken  # type: ignore[method-assign]
        transport = httpx.ASGITransport(app=running.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url=running.base_url) as client:
            bearer = {"Authorization": f"Bearer {pair['access_token']}"}
            response = await client.get("/", headers={**HTML, **bearer})
        assert response.status_code == 500
        assert response.json() == {"error": "internal_error", "error_description": "Internal error"}
        assert "secret detail" not in response.text
        assert any("unhandled error on GET /" in r.getMessage() for r in caplog.records)
    finally:
        await stop(running)


async def test_head_requests_work(server: Server) -> None:
    response = await server.client().head("/healthz")
    assert response.status_code == 200
    assert response.content == b""


def test_healthz_says_starting_until_the_service_is_open(redis_server, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Store down at start-up, then back: until the retry opens the service, every route still answers 503,
    so /healthz must too (a load balancer reads it)."""
    from starlette.testclient import TestClient

    import jwtkit.web._app as web_app

    monkeypatch.setattr(web_app, "OPEN_RETRY", 3600.0)  # the retry never runs inside this test
    redis_server.kill()
    service = make_service(redis_server.url)
    app = create_app(service, secure_cookies=False)
    with TestClient(app) as client:
        assert client.get("/healthz").json() == {"status": "unavailable", "store": "unavailable"}
        redis_server.start()
        # the moment inside AuthService.open() when the store is open but the rest (users) is not yet
        client.portal.call(service.store.open)
        starting = client.get("/healthz")
        assert starting.status_code == 503
        assert starting.json() == {"status": "starting", "store": "ok"}
        assert client.post("/auth", headers=JSON, json={"username": "a", "password": "b"}).status_code == 503
