"""The server's sign-in, /private, logout, sessions and refresh, as JSON and through the browser forms."""

from __future__ import annotations

import pytest
from _support import HTML, PASSWORD, Server, csrf_of


async def test_json_login_returns_the_pair_and_the_authorization_header(server: Server) -> None:
    await server.user()
    response = await server.json_client().post("/auth", json={"username": "alice", "password": PASSWORD})
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] in (899, 900)  # exp is whole seconds
    assert set(body) >= {"access_token", "token_type", "expires_in", "refresh_token"}
    assert response.headers["authorization"] == f"Bearer {body['access_token']}"
    assert response.headers["cache-control"] == "no-store"


async def test_json_login_failure_is_401_invalid_credentials_either_way(server: Server) -> None:
    await server.user()
    client = server.json_client()
    wrong = await client.post("/auth", json={"username": "alice", "password": "not the password"})
    unknown = await client.post("/auth", json={"username": "nobody", "password": "not the password"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["error"] == unknown.json()["error"] == "invalid_credentials"
    assert wrong.json() == unknown.json()


async def test_throttled_login_is_429_with_retry_after(server: Server) -> None:
    await server.user()
    client = server.json_client()
    statuses = [(await client.post("/auth", json={"username": "alice",
                                                  "password": "wrong password"})).status_code
                for _ in range(6)]
    assert statuses[0] == 401
    assert 429 in statuses
    throttled = await client.post("/auth", json={"username": "alice", "password": PASSWORD})
    assert throttled.status_code == 429  # the right password does not get around a lockout
    assert throttled.json()["error"] == "throttled"
    assert int(throttled.headers["retry-after"]) >= 1


async def test_form_login_redirects_to_private_with_secure_cookies(server: Server) -> None:
    await server.user()
    browser = server.browser()
    page = await browser.get("/")
    csrf = csrf_of(page.text)
    response = await browser.post("/auth", data={"username": "alice", "password": PASSWORD,
                                                 "csrf_token": csrf})
    assert response.status_code == 303
    assert response.headers["location"] == "/private"
    cookies = response.headers.get_list("set-cookie")
    access = next(c for c in cookies if c.startswith("__Host-jwtkit="))
    refresh = next(c for c in cookies if c.startswith("__Host-jwtkit-refresh="))
    for cookie in (access, refresh):
        assert "HttpOnly" in cookie
        assert "SameSite=Lax" in cookie
        assert "Secure" in cookie
        assert "Path=/;" in cookie  # __Host- demands it; the refresh cookie serves the silent refresh
    # the refresh cookie of older releases (Path=/refresh) is deleted, not left beside the new one
    assert "__Secure-jwtkit-refresh=; Path=/refresh; Max-Age=0; SameSite=Lax; HttpOnly; Secure" in cookies
    private = await browser.get("/private")
    assert private.status_code == 200
    assert "this is private" in private.text
    assert private.headers["cache-control"] == "no-store"


async def test_plain_cookies_without_secure(plain_server: Server) -> None:
    await plain_server.user()
    browser = plain_server.browser()
    response = await browser.post("/auth", data={"username": "alice", "password": PASSWORD})
    assert response.status_code == 303
    cookies = response.headers.get_list("set-cookie")
    access = next(c for c in cookies if c.startswith("jwtkit="))
    assert "HttpOnly" in access
    assert "SameSite=Lax" in access
    assert "Secure" not in access
    assert (await browser.get("/private")).status_code == 200


async def test_form_login_failure_is_401_with_a_neutral_message_and_the_form(server: Server) -> None:
    await server.user()
    browser = server.browser()
    wrong = await browser.post("/auth", data={"username": "alice", "password": "bad password"})
    unknown = await browser.post("/auth", data={"username": "zed", "password": "bad password"})
    for response in (wrong, unknown):
        assert response.status_code == 401
        assert "Those credentials are not valid." in response.text
        assert 'id="login-form"' in response.text
        assert "set-cookie" not in response.headers or "__Host-jwtkit=" not in response.headers["set-cookie"]


async def test_form_login_missing_field_is_400_with_the_form(server: Server) -> None:
    response = await server.browser().post("/auth", data={"username": "alice"})
    assert response.status_code == 400
    assert 'id="login-form"' in response.text


async def test_json_login_missing_field_is_400_naming_it(server: Server) -> None:
    response = await server.json_client().post("/auth", json={"username": "alice"})
    assert response.status_code == 400
    assert response.json()["error"] == "missing_field"
    assert response.json()["field"] == "password"


# --- /private ---------------------------------------------------------------------------------------------

async def test_private_with_bearer_and_with_the_bare_token(server: Server) -> None:
    await server.user()
    pair = await server.login()
    client = server.json_client()
    for value in (f"Bearer {pair['access_token']}", pair["access_token"]):
        response = await client.get("/private", headers={"Authorization": value})
        assert response.status_code == 200
        assert response.json()["user_id"] == (await server.service.find_user("alice")).id  # type: ignore[union-attr]


async def test_private_without_token_is_401_bearer(server: Server) -> None:
    response = await server.json_client().get("/private")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"] == "missing_token"


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "eyJhbGciOiJub25lIn0.e30.", "x" * 10000])
async def test_private_with_a_malformed_token_is_401_invalid_token(server: Server, token: str) -> None:
    response = await server.json_client().get("/private", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    assert response.json()["error"] == "invalid_token"


async def test_private_tells_expired_from_invalid(server: Server) -> None:
    await server.user()
    pair = await server.login()
    token = pair["access_token"]
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    client = server.json_client()
    invalid = await client.get("/private", headers={"Authorization": f"Bearer {forged}"})
    assert invalid.json()["reason"] == "signature"
    server.clock.advance(901)
    expired = await client.get("/private", headers={"Authorization": f"Bearer {token}"})
    assert expired.status_code == 401
    assert expired.json() == {"error": "invalid_token", "reason": "expired",
                              "error_description": "The access token expired"}


async def test_private_query_token_only_when_enabled(server: Server, plain_server: Server) -> None:
    await server.user()
    token = (await server.login())["access_token"]
    assert (await server.json_client().get(f"/private?token={token}")).status_code == 401
    await plain_server.user()
    token = (await plain_server.login())["access_token"]
    response = await plain_server.json_client().get(f"/private?token={token}")
    assert response.status_code == 200
    assert response.headers["referrer-policy"] == "no-referrer"


async def test_private_html_without_cookie_is_401_login_page(server: Server) -> None:
    response = await server.browser().get("/private")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert 'id="login-form"' in response.text
    assert "Please sign in." in response.text


async def test_refresh_token_is_not_an_access_token(server: Server) -> None:
    await server.user()
    pair = await server.login()
    response = await server.json_client().get("/private",
                                              headers={"Authorization": f"Bearer {pair['refresh_token']}"})
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"
    assert response.json()["reason"] == "wrong_type"


# --- logout -----------------------------------------------------------------------------------------------

async def test_logout_revokes_at_once_and_twice_is_harmless(server: Server) -> None:
    await server.user()
    pair = await server.login()
    client = server.json_client()
    headers = {"Authorization": f"Bearer {pair['access_token']}"}
    first = await client.post("/logout", headers=headers)
    assert first.status_code == 204
    assert any("Max-Age=0" in c for c in first.headers.get_list("set-cookie"))
    after = await client.get("/private", headers=headers)
    assert after.status_code == 401
    assert after.json()["reason"] == "revoked"
    assert (await client.post("/logout", headers=headers)).status_code == 204
    assert (await client.post("/logout")).status_code == 204
    # the session's refresh token died with it
    refresh = await client.post("/refresh", json={"refresh_token": pair["refresh_token"]})
    assert refresh.status_code == 401


async def test_browser_logout_redirects_home_clears_cookies_and_private_is_gone(server: Server) -> None:
    await server.user()
    browser = server.browser()
    csrf = csrf_of((await browser.get("/")).text)
    await browser.post("/auth", data={"username": "alice", "password": PASSWORD, "csrf_token": csrf})
    old_cookie = browser.cookies.get("__Host-jwtkit")
    assert old_cookie
    response = await browser.post("/logout", data={"csrf_token": csrf})
    assert response.status_code == 303
    assert response.headers["location"] == "/?notice=signed-out"
    assert "__Host-jwtkit" not in browser.cookies
    # a reload (or the back button) asks the server again, and the server says no even with the old cookie
    replay = await server.browser().get("/private", headers={"Cookie": f"__Host-jwtkit={old_cookie}"})
    assert replay.status_code == 401
    assert "this is private" not in replay.text


async def test_logout_all_ends_every_session(server: Server) -> None:
    await server.user()
    first, second = await server.login(), await server.login()
    client = server.json_client()
    response = await client.post("/logout/all", headers={"Authorization": f"Bearer {first['access_token']}"})
    assert response.status_code == 204
    for pair in (first, second):
        check = await client.get("/private", headers={"Authorization": f"Bearer {pair['access_token']}"})
        assert check.status_code == 401


async def test_logout_all_requires_a_token(server: Server) -> None:
    assert (await server.json_client().post("/logout/all")).status_code == 401


# --- sessions ---------------------------------------------------------------------------------------------

async def test_sessions_list_and_revoke_one(server: Server) -> None:
    await server.user()
    mine, other = await server.login(), await server.login()
    client = server.json_client()
    headers = {"Authorization": f"Bearer {mine['access_token']}"}
    listed = (await client.get("/sessions", headers=headers)).json()["sessions"]
    assert len(listed) == 2
    assert sum(s["current"] for s in listed) == 1
    assert listed[0]["ip"] == "203.0.113.7"
    victim = next(s["sid"] for s in listed if not s["current"])
    assert (await client.delete(f"/sessions/{victim}", headers=headers)).status_code == 204
    check = await client.get("/private", headers={"Authorization": f"Bearer {other['access_token']}"})
    assert check.status_code == 401
    assert (await client.get("/private", headers=headers)).status_code == 200
    gone = await client.delete(f"/sessions/{victim}", headers=headers)
    assert gone.status_code == 404
    assert gone.json()["error"] == "not_found"


async def test_cannot_revoke_another_users_session(server: Server) -> None:
    await server.user("alice")
    await server.user("bob")
    alice, bob = await server.login("alice"), await server.login("bob")
    client = server.json_client()
    bob_sid = (await client.get("/sessions", headers={"Authorization": f"Bearer {bob['access_token']}"})
               ).json()["sessions"][0]["sid"]
    response = await client.delete(f"/sessions/{bob_sid}",
                                   headers={"Authorization": f"Bearer {alice['access_token']}"})
    assert response.status_code == 404
    still = await client.get("/private", headers={"Authorization": f"Bearer {bob['access_token']}"})
    assert still.status_code == 200


async def test_sessions_page_and_form_fallback(server: Server) -> None:
    await server.user()
    other = await server.login()
    browser = server.browser()
    csrf = csrf_of((await browser.get("/")).text)
    await browser.post("/auth", data={"username": "alice", "password": PASSWORD, "csrf_token": csrf})
    page = await browser.get("/sessions")
    assert page.status_code == 200
    assert "(this one)" in page.text
    sids = [s.sid for s in await server.service.list_sessions((await server.service.find_user("alice")).id)]  # type: ignore[union-attr]
    other_sid = next(sid for sid in sids if f"/sessions/{sid}/revoke" in page.text and sid != "")
    other_claims_sid = (await server.json_client().get(
        "/private", headers={"Authorization": f"Bearer {other['access_token']}"})).json()["session_id"]
    response = await browser.post(f"/sessions/{other_claims_sid}/revoke", data={"csrf_token": csrf})
    assert response.status_code == 303
    assert response.headers["location"] == "/sessions"
    assert other_sid
    check = await server.json_client().get("/private",
                                           headers={"Authorization": f"Bearer {other['access_token']}"})
    assert check.status_code == 401


# --- refresh ----------------------------------------------------------------------------------------------

async def test_refresh_rotates_and_reuse_revokes_the_family(server: Server) -> None:
    await server.user()
    pair = await server.login()
    client = server.json_client()
    rotated = await client.post("/refresh", json={"refresh_token": pair["refresh_token"]})
    assert rotated.status_code == 200
    new = rotated.json()
    assert new["refresh_token"] != pair["refresh_token"]
    assert rotated.headers["authorization"] == f"Bearer {new['access_token']}"
    assert (await client.get("/private", headers={"Authorization": f"Bearer {new['access_token']}"})
            ).status_code == 200
    server.clock.advance(21)  # past the window in which a second tab's refresh is not reuse
    reused = await client.post("/refresh", json={"refresh_token": pair["refresh_token"]})
    assert reused.status_code == 401
    assert reused.json()["error"] == "refresh_reused"
    # reuse detection (RFC 9700 §4.14): the thief's and the victim's tokens die together
    dead = await client.get("/private", headers={"Authorization": f"Bearer {new['access_token']}"})
    assert dead.status_code == 401
    assert (await client.post("/refresh", json={"refresh_token": new["refresh_token"]})).status_code == 401


async def test_refresh_missing_and_garbage(server: Server) -> None:
    client = server.json_client()
    missing = await client.post("/refresh", json={})
    assert missing.status_code == 400
    assert missing.json()["field"] == "refresh_token"
    garbage = await client.post("/refresh", json={"refresh_token": "nope"})
    assert garbage.status_code == 401
    assert garbage.json()["error"] == "invalid_token"


async def test_browser_refresh_form_rotates_the_refresh_cookie(server: Server) -> None:
    await server.user()
    browser = server.browser()
    csrf = csrf_of((await browser.get("/")).text)
    await browser.post("/auth", data={"username": "alice", "password": PASSWORD, "csrf_token": csrf})
    old_access = browser.cookies.get("__Host-jwtkit")
    old_refresh = browser.cookies.get("__Host-jwtkit-refresh")
    assert old_refresh
    response = await browser.post("/refresh", data={"csrf_token": csrf})
    assert response.status_code == 303
    assert response.headers["location"] == "/private"
    assert browser.cookies.get("__Host-jwtkit") != old_access
    assert browser.cookies.get("__Host-jwtkit-refresh") != old_refresh
    assert (await browser.get("/private")).status_code == 200


async def test_home_shows_who_is_signed_in(server: Server) -> None:
    await server.user()
    pair = await server.login()
    page = await server.client(**HTML).get("/", headers={"Authorization": f"Bearer {pair['access_token']}"})
    assert page.status_code == 200
    assert 'id="who">alice<' in page.text
    assert (await server.json_client().get("/home")).json()["authenticated"] is False


async def test_browser_refresh_without_a_refresh_cookie_goes_to_the_login_form_saying_why(
        server: Server) -> None:
    browser = server.browser()
    csrf = csrf_of((await browser.get("/")).text)
    response = await browser.post("/refresh", data={"csrf_token": csrf})
    assert response.status_code == 303
    assert response.headers["location"] == "/?notice=session-ended"
    home = await browser.get(response.headers["location"])
    assert 'id="login-form"' in home.text
    assert "Your session has ended; sign in again." in home.text
    unknown = await browser.get("/?notice=%3Cscript%3E")  # only the fixed notices are ever shown
    assert 'id="notice"' not in unknown.text


async def test_logout_with_an_expired_access_token_still_ends_the_session(server: Server) -> None:
    await server.user()
    pair = await server.login()
    server.clock.advance(901)  # the access token expired; the session and its refresh token live on
    client = server.json_client()
    response = await client.post("/logout", headers={"Authorization": f"Bearer {pair['access_token']}"})
    assert response.status_code == 204
    refresh = await client.post("/refresh", json={"refresh_token": pair["refresh_token"]})
    assert refresh.status_code == 401


async def test_logout_with_someone_elses_expired_token_format_is_harmless(server: Server) -> None:
    await server.user()
    pair = await server.login()
    forged = pair["access_token"][:-4] + ("AAAA" if not pair["access_token"].endswith("AAAA") else "BBBB")
    server.clock.advance(901)
    client = server.json_client()
    assert (await client.post("/logout", headers={"Authorization": f"Bearer {forged}"})).status_code == 204
    server.clock.advance(-901)
    still = await client.get("/private", headers={"Authorization": f"Bearer {pair['access_token']}"})
    assert still.status_code == 200
