"""The server in Debian's Chromium (Playwright): the login form, /private, logout, the back button, a wrong
password, cookie flags and the CSP. Each test starts its own ``jwtkit serve`` on a free port.

Run in their own pytest process (``make browser``): Playwright's sync API keeps an event loop running.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _support import PASSWORD, ServeProcess, add_user, start_serve, stop_serve

pytestmark = pytest.mark.browser


@pytest.fixture
def plain(tmp_path: Path) -> Iterator[ServeProcess]:
    process = start_serve(tmp_path, "--no-secure-cookies")
    add_user(process, "alice")
    try:
        yield process
    finally:
        stop_serve(process)


@pytest.fixture
def secure(tmp_path: Path) -> Iterator[ServeProcess]:
    process = start_serve(tmp_path)  # the default: Secure, __Host- cookies (Chromium trusts http://127.0.0.1)
    add_user(process, "alice")
    try:
        yield process
    finally:
        stop_serve(process)


def sign_in(page: Any, url: str, password: str = PASSWORD) -> Any:
    page.goto(f"{url}/")
    page.fill("#username", "alice")
    page.fill("#password", password)
    with page.expect_navigation():
        page.click("#login")
    return page


def test_login_form_reaches_private_and_logout_ends_it(browser_page: Any, plain: ServeProcess) -> None:
    page = sign_in(browser_page, plain.url)
    assert page.url == f"{plain.url}/private"
    assert "this is private" in page.inner_text("#private-title")
    assert page.inner_text("#who") == "alice"
    with page.expect_navigation():
        page.click("#logout")
    assert page.url == f"{plain.url}/?notice=signed-out"
    assert page.inner_text("#notice") == "You have been signed out."
    assert page.locator("#login-form").count() == 1
    names = {c["name"] for c in page.context.cookies()}
    assert "jwtkit" not in names
    assert "jwtkit-refresh" not in names


def test_back_button_and_reload_after_logout_show_no_private_content(browser_page: Any,
                                                                    plain: ServeProcess) -> None:
    page = sign_in(browser_page, plain.url)
    assert "this is private" in page.content()
    with page.expect_navigation():
        page.click("#logout")
    page.go_back()
    page.wait_for_load_state()
    assert "this is private" not in page.content()
    page.reload()
    assert "this is private" not in page.content()
    response = page.goto(f"{plain.url}/private")
    assert response is not None and response.status == 401
    assert "this is private" not in page.content()
    assert page.locator("#login-form").count() == 1


def test_wrong_password_is_rejected_without_saying_which(browser_page: Any, plain: ServeProcess) -> None:
    page = browser_page
    page.goto(f"{plain.url}/")
    page.fill("#username", "alice")
    page.fill("#password", "not the right one")
    with page.expect_navigation() as navigation:
        page.click("#login")
    assert navigation.value.status == 401
    assert page.inner_text("#error") == "Those credentials are not valid."
    assert "jwtkit" not in {c["name"] for c in page.context.cookies()}
    assert page.goto(f"{plain.url}/private").status == 401  # type: ignore[union-attr]


def test_cookie_flags_without_secure_cookies(browser_page: Any, plain: ServeProcess) -> None:
    page = sign_in(browser_page, plain.url)
    cookies = {c["name"]: c for c in page.context.cookies()}
    access, refresh, csrf = cookies["jwtkit"], cookies["jwtkit-refresh"], cookies["jwtkit-csrf"]
    assert access["httpOnly"] is True
    assert access["sameSite"] == "Lax"
    assert access["secure"] is False
    assert access["path"] == "/"
    assert refresh["httpOnly"] is True
    assert refresh["sameSite"] == "Lax"
    assert refresh["path"] == "/"
    assert csrf["httpOnly"] is False
    assert csrf["sameSite"] == "Strict"
    # HttpOnly: page scripts cannot read the tokens
    assert "jwtkit=" not in page.evaluate("document.cookie").replace("jwtkit-csrf=", "")


def test_secure_host_cookies_by_default(browser_page: Any, secure: ServeProcess) -> None:
    page = sign_in(browser_page, secure.url)
    assert page.url == f"{secure.url}/private"
    cookies = {c["name"]: c for c in page.context.cookies()}
    access = cookies["__Host-jwtkit"]
    assert access["secure"] is True
    assert access["httpOnly"] is True
    assert access["sameSite"] == "Lax"
    assert cookies["__Host-jwtkit-refresh"]["path"] == "/"
    assert cookies["__Host-jwtkit-refresh"]["secure"] is True


def test_pages_raise_no_csp_violations(browser_page: Any, plain: ServeProcess) -> None:
    page = browser_page
    messages: list[str] = []
    page.on("console", lambda message: messages.append(message.text))
    for path in ("/", "/register", "/password/forgot"):
        page.goto(f"{plain.url}{path}")
    sign_in(page, plain.url)
    page.goto(f"{plain.url}/sessions")
    assert page.locator("table.sessions tbody tr").count() == 1
    # the stylesheet applied (CSP style-src 'self' allows it): the card has a white background
    assert page.eval_on_selector(".card", "e => getComputedStyle(e).backgroundColor") == "rgb(255, 255, 255)"
    assert not [m for m in messages if "Content Security Policy" in m], messages


def test_cross_origin_form_post_is_refused(browser_page: Any, plain: ServeProcess, tmp_path: Path) -> None:
    """Another origin on the same site (another port: SameSite=Lax cookies do travel) cannot post to us."""
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    site = tmp_path / "evil"
    site.mkdir()
    (site / "index.html").write_text(
        f'<form method="post" action="{plain.url}/logout/all"><button id="go">win a prize</button></form>')

    class Quiet(SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(site), **kwargs)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    evil = ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    try:
        page = sign_in(browser_page, plain.url)
        page.goto(f"http://127.0.0.1:{evil.server_address[1]}/index.html")
        with page.expect_navigation() as navigation:
            page.click("#go")
        assert navigation.value.status == 403
        assert page.goto(f"{plain.url}/private").status == 200  # still signed in: nothing happened
    finally:
        evil.shutdown()
        evil.server_close()
