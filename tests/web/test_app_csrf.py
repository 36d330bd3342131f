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


async def test_origin_null_from_our_no_referrer_reset_page_passes_with_the_double_submit(
        server: Server) -> None:
    # Chromium sends "Origin: null" for a form posted from a page whose referrer policy is no-referrer (the
    # reset page's, since its URL carries the token): the double submit decides, not the opaque origin
    await server.user(email="alice@example.org")
    await server.service.forgot_password("alice")
    link = server.mailer.sent[-1].body
    token = link.split("token=", 1)[1].split()[0]
    browser = server.browser()
    page = await browser.get(f"/password/reset?token={token}")
    csrf = csrf_of(page.text)
    new = "a whole new passphrase"
    forged = await browser.post("/password/reset", headers={"Origin": "null"},
                                data={"token": token, "password": new, "csrf_token": "x" * 43})
    assert forged.status_code == 403
    response = await browser.post("/password/reset", headers={"Origin": "null"},
                                  data={"token": token, "password": new, "csrf_token": csrf})
    assert response.status_code == 200
    assert "Your password was changed" in response.text
    await server.login(password=new)


async def test_origin_null_without_the_csrf_cookie_is_refused_even_without_credentials(
        server: Server) -> None:
    await server.user()
    fresh = server.browser()  # no cookie at all: a sandboxed frame on another site looks like this
    response = await fresh.post("/password/forgot", headers={"Origin": "null", "Accept": "application/json"},
                                data={"username": "alice", "csrf_token": "x" * 43})
    assert response.status_code == 403
    assert response.json()["error"] == "csrf_failed"
