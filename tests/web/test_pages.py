"""The pages a signed-in person sees: the nav on every page, human dates, device names, a real "last used",
the change-password page, "resend verification" and the favicon."""

from __future__ import annotations

import re

import httpx
import pytest
from _support import PASSWORD, Server, csrf_of

from jwtkit.service._auth import LAST_USED_RESOLUTION
from jwtkit.web._devices import UNKNOWN, device_name

CHROME = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 "
          "Safari/537.36")
IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
          "Version/17.4 Mobile/15E148 Safari/604.1")


async def signed_in(server: Server, *, email: str | None = None, agent: str = CHROME
                    ) -> tuple[httpx.AsyncClient, str]:
    if await server.service.find_user("alice") is None:
        await server.user(email=email)
    browser = server.browser()
    browser.headers["User-Agent"] = agent
    csrf = csrf_of((await browser.get("/")).text)
    response = await browser.post("/auth", data={"username": "alice", "password": PASSWORD,
                                                 "csrf_token": csrf})
    assert response.status_code == 303
    return browser, csrf


@pytest.mark.parametrize("path", ["/", "/private", "/sessions", "/register", "/password/forgot",
                                  "/password/change", "/debugger", "/no-such-page"])
async def test_the_nav_names_the_signed_in_user_on_every_page(server: Server, path: str) -> None:
    browser, _ = await signed_in(server)
    page = await browser.get(path)
    assert page.status_code == (404 if path == "/no-such-page" else 200)
    assert '<span id="nav-user" class="who">alice</span>' in page.text
    assert 'id="logout"' in page.text
    assert '<a href="/register">' not in page.text
    anonymous = await server.browser().get(path)
    assert 'id="nav-user"' not in anonymous.text
    assert '<a href="/">Sign in</a>' in anonymous.text


async def test_private_shows_dates_not_epoch_numbers(server: Server) -> None:
    browser, _ = await signed_in(server)
    page = (await browser.get("/private")).text
    claims = page[page.index('<table class="claims">'):page.index("</table>")]
    assert not re.search(r"\b\d{10}\b", claims)
    assert re.search(r"<th scope=\"row\">exp</th><td><code>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC</code>", claims)


async def test_sessions_show_device_names_not_user_agent_strings(server: Server) -> None:
    browser, _ = await signed_in(server, agent=CHROME)
    await signed_in(server, agent=IPHONE)
    page = (await browser.get("/sessions")).text
    cells = re.findall(r'<td class="device" title="[^"]*">([^<]*)', page)
    assert sorted(cells) == ["Chrome 156 on Linux ", "Mobile Safari 17 on iPhone"]
    assert ">Mozilla/5.0" not in page


def test_device_names() -> None:
    assert device_name(CHROME) == "Chrome 156 on Linux"
    assert device_name(IPHONE) == "Mobile Safari 17 on iPhone"
    assert device_name("curl/8.0.1") == "curl 8"
    assert device_name("") == UNKNOWN
    assert device_name("<script>alert(1)</script>") == UNKNOWN  # never the raw, attacker-chosen string


async def test_last_used_follows_requests_at_the_resolution(server: Server) -> None:
    browser, _ = await signed_in(server)
    user_id = (await server.service.find_user("alice")).id  # type: ignore[union-attr]

    async def last_used_after(seconds: float) -> float:
        server.clock.advance(seconds)
        assert (await browser.get("/private")).status_code == 200
        [session] = await server.service.list_sessions(user_id)
        return session.last_used

    first = await last_used_after(30)
    assert first == server.clock.now  # the first request this process sees is written
    assert await last_used_after(LAST_USED_RESOLUTION - 1) == first  # not one write per request
    assert await last_used_after(1) == server.clock.now  # the resolution passed: written again


async def test_change_password_ends_other_sessions_and_keeps_this_browser_signed_in(server: Server) -> None:
    browser, csrf = await signed_in(server)
    other, _ = await signed_in(server, agent=IPHONE)
    form = await browser.get("/password/change")
    assert 'id="change-password-form"' in form.text
    wrong = await browser.post("/password/change", data={"current_password": "not it", "new_password":
                                                         "a whole new passphrase", "csrf_token": csrf})
    assert wrong.status_code == 401
    assert "Your current password is not right." in wrong.text
    done = await browser.post("/password/change", data={"current_password": PASSWORD, "new_password":
                                                        "a whole new passphrase", "csrf_token": csrf})
    assert done.status_code == 303
    assert done.headers["location"] == "/private?notice=password-changed"
    page = await browser.get(done.headers["location"])
    assert page.status_code == 200
    assert "Your password was changed." in page.text
    assert (await other.get("/private")).status_code == 401
    await server.login(password="a whole new passphrase")


async def test_change_password_needs_a_session_and_the_csrf_token(server: Server) -> None:
    assert (await server.browser().get("/password/change")).status_code == 401
    browser, _ = await signed_in(server)
    refused = await browser.post("/password/change", data={"current_password": PASSWORD,
                                                           "new_password": "a whole new passphrase"})
    assert refused.status_code == 403


async def test_resend_verification_from_the_private_page(server: Server) -> None:
    browser, csrf = await signed_in(server, email="alice@example.org")
    page = await browser.get("/private")
    assert 'id="verify-banner"' in page.text
    sent = len(server.mailer.sent)
    response = await browser.post("/verify/resend", data={"csrf_token": csrf})
    assert response.status_code == 303
    assert response.headers["location"] == "/private?notice=verification-sent"
    assert len(server.mailer.sent) == sent + 1
    link = server.mailer.sent[-1].body.split("token=", 1)[1].split()[0]
    assert (await server.browser().get(f"/verify?token={link}")).status_code == 200
    assert 'id="verify-banner"' not in (await browser.get("/private")).text


async def test_resend_verification_without_an_email_is_409(server: Server) -> None:
    browser, csrf = await signed_in(server)
    response = await browser.post("/verify/resend", data={"csrf_token": csrf},
                                  headers={"Accept": "application/json"})
    assert response.status_code == 409
    assert response.json()["error"] == "no_email"


async def test_favicon(server: Server) -> None:
    response = await server.browser().get("/favicon.ico")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/svg+xml"
    assert response.content.startswith(b"<svg")
    assert '<link rel="icon" href="/static/favicon.svg"' in (await server.browser().get("/")).text
    assert '<link rel="icon" href="/static/favicon.svg"' in (await server.browser().get("/debugger")).text
