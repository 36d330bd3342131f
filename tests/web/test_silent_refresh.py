"""Silent refresh: a browser request whose access cookie has expired, carrying a live refresh cookie, is
refreshed on that request (the server's pages, and JWTAuthMiddleware in a user's app), with the service's
rotation and reuse detection unchanged and one rotation when two tabs race."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from _support import PASSWORD, Clock, Server, csrf_of, make_service
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from jwtkit import decode_unverified
from jwtkit.service import AuthService
from jwtkit.web import CookiePolicy, JWTAuthMiddleware, TokenLocation

ACCESS, REFRESH = "__Host-jwtkit", "__Host-jwtkit-refresh"


async def signed_in(server: Server) -> tuple[httpx.AsyncClient, str]:
    await server.user()
    browser = server.browser()
    csrf = csrf_of((await browser.get("/")).text)
    response = await browser.post("/auth", data={"username": "alice", "password": PASSWORD,
                                                 "csrf_token": csrf})
    assert response.status_code == 303
    return browser, csrf


def set_cookies(response: httpx.Response) -> dict[str, str]:
    found = {}
    for header in response.headers.get_list("set-cookie"):
        name, _, rest = header.partition("=")
        found[name] = rest.partition(";")[0]
    return found


async def the_session(server: Server) -> Any:
    [session] = await server.service.list_sessions((await server.service.find_user("alice")).id)  # type: ignore[union-attr]
    return session


async def test_an_expired_access_cookie_is_refreshed_on_the_page_request(server: Server) -> None:
    browser, _ = await signed_in(server)
    before = await the_session(server)
    old_refresh = browser.cookies.get(REFRESH)
    server.clock.advance(901)  # the access token expired; the session lives 14 days
    response = await browser.get("/private")
    assert response.status_code == 200
    assert "this is private" in response.text
    sent = set_cookies(response)
    assert sent[ACCESS] and sent[REFRESH]
    assert decode_unverified(sent[REFRESH])[1]["jti"] == (await the_session(server)).refresh_jti
    assert (await the_session(server)).sid == before.sid
    assert (await the_session(server)).refresh_jti != before.refresh_jti
    # the next request uses the new cookie without another rotation
    again = await browser.get("/private")
    assert again.status_code == 200
    assert "set-cookie" not in again.headers
    # and the rotated refresh token is spent: replayed later from elsewhere, it is reuse
    server.clock.advance(21)
    thief = server.json_client()
    reused = await thief.post("/refresh", json={"refresh_token": old_refresh})
    assert reused.status_code == 401
    assert reused.json()["error"] == "refresh_reused"


async def test_a_missing_access_cookie_is_refreshed_too(server: Server) -> None:
    # browsers drop the access cookie at its Max-Age (the token's lifetime): usually it is simply gone
    browser, _ = await signed_in(server)
    browser.cookies.delete(ACCESS)
    response = await browser.get("/")
    assert response.status_code == 200
    assert 'id="who">alice<' in response.text
    assert ACCESS in set_cookies(response)


async def test_two_tabs_at_once_rotate_once_and_both_pages_are_served(server: Server) -> None:
    browser, _ = await signed_in(server)
    before = await the_session(server)
    server.clock.advance(901)
    jar = dict(browser.cookies.items())
    tabs = [server.browser() for _ in range(2)]
    for tab in tabs:
        tab.cookies.update(jar)
    first, second = await asyncio.gather(*(tab.get("/private") for tab in tabs))
    assert (first.status_code, second.status_code) == (200, 200)
    after = await the_session(server)
    assert not after.revoked
    assert after.refresh_jti != before.refresh_jti
    for response in (first, second):
        assert decode_unverified(set_cookies(response)[REFRESH])[1]["jti"] == after.refresh_jti


async def test_a_revoked_session_is_not_refreshed_and_its_cookies_are_cleared(server: Server) -> None:
    browser, _ = await signed_in(server)
    await server.service.logout_all((await server.service.find_user("alice")).id)  # type: ignore[union-attr]
    server.clock.advance(901)
    response = await browser.get("/private")
    assert response.status_code == 401
    assert 'id="login-form"' in response.text
    cleared = [h for h in response.headers.get_list("set-cookie") if "Max-Age=0" in h]
    assert {h.partition("=")[0] for h in cleared} >= {ACCESS, REFRESH}
    assert browser.cookies.get(REFRESH) is None


async def test_a_cross_site_post_does_not_refresh(server: Server) -> None:
    browser, _ = await signed_in(server)
    before = await the_session(server)
    server.clock.advance(901)
    response = await browser.post("/logout/all", headers={"Origin": "https://evil.example"})
    assert response.status_code == 403
    after = await the_session(server)
    assert after.refresh_jti == before.refresh_jti and not after.revoked
    assert "set-cookie" not in response.headers


async def test_logout_with_an_expired_access_cookie_refreshes_then_ends_the_session(server: Server) -> None:
    browser, _ = await signed_in(server)
    sid = (await the_session(server)).sid
    server.clock.advance(901)
    response = await browser.post("/logout", headers={"Origin": "https://testserver"})
    assert response.status_code == 303
    assert response.headers["location"] == "/?notice=signed-out"
    assert (await server.service.store.get_session(sid)) is None or (
        await server.service.store.get_session(sid)).revoked  # type: ignore[union-attr]
    # the logout's clearing replaces the refresh's new cookies, so the browser ends up with none
    assert browser.cookies.get(ACCESS) is None
    assert browser.cookies.get(REFRESH) is None
    home = await browser.get("/?notice=signed-out")
    assert "You have been signed out." in home.text


async def test_the_refresh_endpoint_answers_with_the_pair_the_step_already_made(server: Server) -> None:
    browser, csrf = await signed_in(server)
    server.clock.advance(901)
    before = await the_session(server)
    response = await browser.post("/refresh", data={"csrf_token": csrf}, headers={"Origin": "https://testserver"})
    assert response.status_code == 303
    assert response.headers["location"] == "/private"
    after = await the_session(server)
    assert after.refresh_jti != before.refresh_jti
    assert browser.cookies.get(REFRESH) and decode_unverified(browser.cookies[REFRESH])[1]["jti"] == \
        after.refresh_jti


async def test_a_store_outage_during_the_refresh_is_503(server: Server) -> None:
    browser, _ = await signed_in(server)
    server.clock.advance(901)
    await server.service.store.close()
    response = await browser.get("/private", headers={"Accept": "application/json"})
    assert response.status_code == 503
    assert response.json()["error"] == "store_unavailable"


async def test_a_refresh_cookie_of_an_older_release_still_works_at_refresh(server: Server) -> None:
    await server.user()
    pair = await server.login()
    browser = server.browser()
    csrf = csrf_of((await browser.get("/")).text)
    browser.cookies.set("__Secure-jwtkit-refresh", pair["refresh_token"], domain="testserver.local",
                        path="/refresh")
    response = await browser.post("/refresh", data={"csrf_token": csrf})
    assert response.status_code == 303
    assert response.headers["location"] == "/private"
    assert any(h.startswith("__Secure-jwtkit-refresh=; Path=/refresh; Max-Age=0")
               for h in response.headers.get_list("set-cookie"))


# --- the middleware in a user's app ----------------------------------------------------------------------


@pytest.fixture
async def user_app() -> AsyncIterator[tuple[httpx.AsyncClient, AuthService, Clock]]:
    clock = Clock()
    service = make_service(clock=clock)
    await service.open()

    async def whoami(request: Request) -> JSONResponse:
        return JSONResponse({"user": request.state.principal.user_id})

    app = Starlette(routes=[Route("/me", whoami)])
    policy = CookiePolicy(secure=False)
    app.add_middleware(JWTAuthMiddleware, service=service, locations=[TokenLocation.COOKIE],
                       silent_refresh=policy)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
    try:
        yield client, service, clock
    finally:
        await client.aclose()
        await service.close()


async def test_the_middleware_refreshes_a_cookie_app_given_the_service(
        user_app: tuple[httpx.AsyncClient, AuthService, Clock]) -> None:
    client, service, clock = user_app
    user = await service.register("alice", PASSWORD)
    pair = await service.login("alice", PASSWORD)
    client.cookies.set("jwtkit", pair.access_token)
    client.cookies.set("jwtkit-refresh", pair.refresh_token)
    assert (await client.get("/me")).json() == {"user": user.id}
    clock.advance(901)
    response = await client.get("/me")
    assert response.status_code == 200
    assert response.json() == {"user": user.id}
    assert set(set_cookies(response)) >= {"jwtkit", "jwtkit-refresh"}
    client.cookies.clear()
    client.cookies.set("jwtkit-refresh", "not.a.token")
    refused = await client.get("/me")
    assert refused.status_code == 401
    assert refused.json()["error"] == "missing_token"


def test_silent_refresh_needs_a_service_and_the_cookie_location() -> None:
    service = make_service()
    with pytest.raises(TypeError, match="needs service="):
        JWTAuthMiddleware(Starlette(), keys=service.keys.active, silent_refresh=CookiePolicy(),
                          locations=[TokenLocation.COOKIE])
    with pytest.raises(ValueError, match=r"TokenLocation\.COOKIE"):
        JWTAuthMiddleware(Starlette(), service=service, silent_refresh=CookiePolicy())
