"""The server's CSRF rule: cookie credentials on unsafe requests need a same-origin Origin or the double
submit; only a request authenticated by its Bearer header is exempt (a Basic header exempts nothing)."""

from __future__ import annotations

import pytest
from _support import PASSWORD, Server, csrf_of


async def _browser_session(server: Server) -> tuple[object, str]:
    if await server.service.find_user("alice") is None:
        await server.user()
    browser = server.browser()
    csrf = csrf_of((await browser.get("/")).text)
    await browser.post("/auth", data={"username": "alice", "password": PASSWORD, "csrf_token": csrf})
    assert browser.cookies.get("__Host-jwtkit")
    return browser, csrf


@pytest.mark.parametrize("headers", [
    {"Origin": "https://evil.example"},
    {"Origin": "null"},
    {},  # no Origin and no double submit
    {"Authorization": "Basic YWxpY2U6eA=="},  # not a bearer: the cookie still authenticates
    {"Authorization": "Basic YWxpY2U6eA==", "Origin": "https://evil.example"},
    {"Authorization": "Bearer not.a.token", "Origin": "https://evil.example"},  # authenticates nothing
])
async def test_a_cross_site_logout_with_the_cookie_is_refused_and_ends_nothing(server: Server,
                                                                             headers: dict[str, str]) -> None:
    browser, _ = await _browser_session(server)
    response = await browser.post("/logout",  # type: ignore[attr-defined]
                                  headers={**headers, "Accept": "application/json"})
    assert response.status_code == 403
    assert response.json()["error"] == "csrf_failed"
    still = await browser.get("/private", headers={"Accept": "application/json"})  # type: ignore[attr-defined]
    assert still.status_code == 200


async def test_the_form_field_or_a_same_origin_origin_passes(server: Server) -> None:
    browser, csrf = await _browser_session(server)
    response = await browser.post("/logout/all", data={"csrf_token": csrf})  # type: ignore[attr-defined]
    assert response.status_code == 303
    browser, _ = await _browser_session(server)
    response = await browser.post("/logout", headers={"Origin": "https://testserver"})  # type: ignore[attr-defined]
    assert response.status_code == 303


async def test_a_request_authenticated_by_its_bearer_header_is_exempt(server: Server) -> None:
    await server.user()
    pair = await server.login()
    response = await server.json_client().post(
        "/logout", headers={"Authorization": f"Bearer {pair['access_token']}",
                            "Origin": "https://evil.example"})
    assert response.status_code == 204
    bearer = {"Authorization": f"Bearer {pair['access_token']}"}
    dead = await server.json_client().get("/private", headers=bearer)
    assert dead.status_code == 401
