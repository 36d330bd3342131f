"""The known-device cookie over HTTP (issue 14: an attacker's failures on a username locked its owner out of
every browser): a browser that signed in keeps ``__Host-jwtkit-device``, and with it signs in while the
account is locked to everyone else; JSON clients get the token in the body and send it back as a field."""

from __future__ import annotations

import httpx
from _support import PASSWORD, Server, csrf_of

DEVICE = "__Host-jwtkit-device"


async def _lock(server: Server) -> None:
    attacker = server.json_client()
    for _ in range(server.service.config.throttle_threshold):
        wrong = await attacker.post("/auth", json={"username": "alice", "password": "a wrong guess"})
        assert wrong.status_code == 401
    assert (await attacker.post("/auth", json={"username": "alice", "password": PASSWORD})).status_code == 429


async def _form_login(browser: httpx.AsyncClient, password: str = PASSWORD) -> httpx.Response:
    page = await browser.get("/")
    return await browser.post("/auth", data={"username": "alice", "password": password,
                                             "csrf_token": csrf_of(page.text)})


async def test_a_browser_that_signed_in_keeps_a_device_cookie_and_gets_in_while_locked(
        server: Server) -> None:
    await server.user()
    owner = server.browser()
    first = await _form_login(owner)
    assert first.status_code == 303
    [cookie] = [c for c in first.headers.get_list("set-cookie") if c.startswith(DEVICE + "=")]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" in cookie and "Path=/" in cookie
    assert "Max-Age=15552000" in cookie
    assert (await owner.post("/logout", headers={"X-CSRF-Token": owner.cookies["__Host-jwtkit-csrf"]})
            ).status_code in (200, 303)
    assert owner.cookies.get(DEVICE)  # logging out does not forget the device

    await _lock(server)
    stranger = server.browser()
    assert (await _form_login(stranger)).status_code == 429
    again = await _form_login(owner)
    assert again.status_code == 303


async def test_a_json_client_sends_its_device_token_back_as_a_field(server: Server) -> None:
    await server.user()
    app = server.json_client()
    first = (await app.post("/auth", json={"username": "alice", "password": PASSWORD})).json()
    assert isinstance(first["device_token"], str) and first["device_token"].count(".") == 2
    await _lock(server)
    fresh = server.json_client()
    locked = await fresh.post("/auth", json={"username": "alice", "password": PASSWORD})
    assert locked.status_code == 429
    known = await fresh.post("/auth", json={"username": "alice", "password": PASSWORD,
                                            "device_token": first["device_token"]})
    assert known.status_code == 200, known.text
    assert "device_token" not in (await fresh.post("/refresh", json={
        "refresh_token": known.json()["refresh_token"]})).json()
