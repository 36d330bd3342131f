"""A user's walk through every page of ``jwtkit serve`` in Debian's Chromium, at a desktop and a phone
viewport.

register (with email) -> verify the email (link from the outbox) -> sign in -> /private -> /sessions ->
revoke another device -> change the password -> the signed-in nav on /register, /password/forgot, a 404 and
/debugger -> sign out -> forgot password -> reset through the mailed link -> sign in with the new password ->
wait past the access token's lifetime (JWTKIT_ACCESS_TTL=3) -> /private still answers, signed in, at the
same address.

Every page visited is checked the same way (:meth:`Walk.check`): no horizontal overflow (the root and the
body), no console error, no page error, no failed or 4xx/5xx subresource, the favicon link, the nav (the
user's name while signed in, "Sign in" when signed out), and a full-page screenshot in ``tmp_path/shots``.
Those page checks are collected and reported together at the end, so that one run lists every problem; what
the walk needs in order to go on (a form, a redirect, a mailed link) is asserted at once.

Run in their own pytest process: ``.venv/bin/pytest -m browser tests/web/test_browser_walk.py -s``
(``-s`` shows the screenshot directory).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from _support import PASSWORD, ServeProcess, start_serve, stop_serve

pytestmark = pytest.mark.browser

ACCESS_TTL = 3  # seconds (JWTKIT_ACCESS_TTL): the walk outlives many access tokens
USER = "walker"
EMAIL = "walker@example.org"
CHANGED = "changed horse battery staple"  # after /password/change
RESET = "reset horse battery staple"  # after the mailed reset link
OTHER_DEVICE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
                "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1")
FAVICON = "/static/favicon.svg"
EPOCH = re.compile(r"(?<!\d)\d{10}(?!\d)")  # a raw Unix time (2001-09-09 .. 2286-11-20)
HUMAN_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC\b")
MAIL_WAIT = 10.0  # seconds a mail may take to land in the outbox (it is written after the response)

VIEWPORTS: dict[str, dict[str, Any]] = {
    "desktop": {"viewport": {"width": 1280, "height": 800}},
    "phone": {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True,
              "device_scale_factor": 3},
}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ServeProcess]:
    # the default Secure, __Host- cookies: Chromium treats http://127.0.0.1 as a secure context
    workdir = tmp_path / "serve"
    workdir.mkdir()
    process = start_serve(workdir, env={"JWTKIT_ACCESS_TTL": str(ACCESS_TTL)})
    try:
        yield process
    finally:
        stop_serve(process)


@dataclass
class Walk:
    """One browser context at one viewport, walking one server; collects what each page got wrong."""

    page: Any
    server: ServeProcess
    viewport: str
    shots: Path
    tap: bool
    step: int = 0
    errors: list[str] = field(default_factory=list)  # console errors, page errors, failed requests
    problems: list[str] = field(default_factory=list)  # every page check that failed, with its page
    favicons: dict[str, int] = field(default_factory=dict)  # href -> status, fetched once each
    # the page asked for on purpose with an error status (the 404 page) and that status: Chromium logs
    # "Failed to load resource: ... status of 404" for the document itself, which is the page's status, not
    # a fault of the page (a favicon or script that fails is logged with its own URL and still counts)
    document_error: tuple[str, int] | None = None

    def __post_init__(self) -> None:
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))
        self.page.on("requestfailed", lambda request: self.errors.append(
            f"request failed: {request.method} {request.url}: {request.failure}"))
        self.page.on("response", self._response)

    def _console(self, message: Any) -> None:
        if message.type == "error":
            where = message.location.get("url", "") if message.location else ""
            if self.document_error is not None:
                url, status = self.document_error
                own = f"Failed to load resource: the server responded with a status of {status} "
                if where == url and message.text.startswith(own):
                    return
            self.errors.append(f"console error: {message.text} ({where})")

    def _response(self, response: Any) -> None:
        request = response.request
        # a document's own status is the page's business (201, 202, the 404 page); anything it loads must work
        if response.status >= 400 and not (request.resource_type == "document" and request.frame.parent_frame
                                           is None):
            self.errors.append(f"{request.resource_type} {request.url} answered {response.status}")

    # --- moving ------------------------------------------------------------------------------------------

    def url(self, path: str) -> str:
        return f"{self.server.url}{path}"

    def goto(self, path: str, status: int = 200) -> None:
        self.document_error = (self.url(path), status) if status >= 400 else None
        response = self.page.goto(self.url(path))
        assert response is not None and response.status == status, (path, response and response.status)

    def press(self, selector: str, status: int = 200) -> None:
        """Submit with the button ``selector`` (tap on the phone, click on the desktop), wait for the page."""
        button = self.page.locator(selector)
        with self.page.expect_navigation() as navigation:
            button.tap() if self.tap else button.click()
        response = navigation.value
        assert response is not None and response.status == status, (selector, response and response.status,
                                                                    self.page.url)

    def sign_in(self, password: str) -> None:
        self.goto("/")
        self.page.fill("#username", USER)
        self.page.fill("#password", password)
        self.press("#login")
        assert self.page.url == self.url("/private"), self.page.url

    # --- the checks of every page ------------------------------------------------------------------------

    def expect(self, ok: bool, what: str) -> None:
        if not ok:
            self.problems.append(f"[{self.viewport} {self.step:02d}] {what}")

    def check(self, name: str, *, signed_in: bool, texts: tuple[str, ...] = ()) -> None:
        """The checks of every page, then a full-page screenshot ``{viewport}-{step:02d}-{name}.png``."""
        self.step += 1
        page = self.page
        page.wait_for_load_state("load")
        where = f"{name} ({page.url})"
        body = page.inner_text("body")
        for text in texts:
            self.expect(text in body, f"{where}: the text {text!r} is missing")
        self.expect(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"),
                    f"{where}: the page scrolls sideways: documentElement.scrollWidth "
                    f"{page.evaluate('document.documentElement.scrollWidth')} > innerWidth "
                    f"{page.evaluate('window.innerWidth')}")
        self.expect(page.evaluate("document.body.scrollWidth <= window.innerWidth"),
                    f"{where}: the body scrolls sideways: body.scrollWidth "
                    f"{page.evaluate('document.body.scrollWidth')} > innerWidth "
                    f"{page.evaluate('window.innerWidth')}")
        # a phone zooms out to fit wide content, which widens innerWidth to the content: innerWidth must stay
        # the viewport's own width, or the two checks above compare the content with itself
        width = page.viewport_size["width"]
        self.expect(page.evaluate("window.innerWidth") == width,
                    f"{where}: zoomed out to fit: innerWidth {page.evaluate('window.innerWidth')} "
                    f"!= the viewport's {width}")
        self._check_nav(where, signed_in)
        self._check_favicon(where)
        page.screenshot(path=str(self.shots / f"{self.viewport}-{self.step:02d}-{name}.png"), full_page=True)
        # after the screenshot: what the page loads or logs late (the favicon) has had its time
        for error in self.errors:
            self.expect(False, f"{where}: {error}")
        self.errors.clear()

    def _check_nav(self, where: str, signed_in: bool) -> None:
        nav = self.page.locator("header.top nav")
        if nav.count() != 1:
            self.expect(False, f"{where}: no <header class=\"top\"> <nav>")
            return
        user = nav.locator("#nav-user")
        links = {a.get_attribute("href"): a.inner_text().strip() for a in nav.locator("a").all()}
        if signed_in:
            shown = user.inner_text().strip() if user.count() == 1 else None
            self.expect(shown == USER, f"{where}: the nav shows no #nav-user {USER!r} (found {shown!r})")
            for href, text in (("/private", "Private"), ("/sessions", "Sessions"),
                               ("/password/change", "Password"), ("/debugger", "Debugger")):
                self.expect(links.get(href) == text, f"{where}: no nav link {text} to {href} ({links})")
            self.expect(nav.locator("#logout").count() == 1, f"{where}: the nav has no #logout button")
            self.expect(links.get("/") != "Sign in", f"{where}: the nav offers Sign in while signed in")
        else:
            self.expect(user.count() == 0, f"{where}: #nav-user shown while signed out")
            for href, text in (("/", "Sign in"), ("/register", "Register"), ("/debugger", "Debugger")):
                self.expect(links.get(href) == text, f"{where}: no nav link {text} to {href} ({links})")
            self.expect(nav.locator("#logout").count() == 0, f"{where}: a #logout button while signed out")

    def _check_favicon(self, where: str) -> None:
        icons = self.page.locator('link[rel~="icon"]')
        hrefs = [icons.nth(i).get_attribute("href") for i in range(icons.count())]
        self.expect(hrefs == [FAVICON], f"{where}: the icon links are {hrefs}, not [{FAVICON!r}]")
        for href in ("/favicon.ico", *[h for h in hrefs if h and h.startswith("/")]):
            if href not in self.favicons:
                self.favicons[href] = self.page.request.get(self.url(href)).status
            self.expect(self.favicons[href] == 200, f"{where}: {href} answers {self.favicons[href]}")

    # --- the pages' own content --------------------------------------------------------------------------

    def notice(self) -> str | None:
        found = self.page.locator("#notice")
        return found.inner_text().strip() if found.count() == 1 else None

    def has_no_login_form(self) -> bool:
        return self.page.locator("#login-form").count() == 0


def newest_mail_link(server: ServeProcess, seen: int, path: str) -> tuple[str, int]:
    """The link to ``path`` in the newest ``outbox/*.txt`` once there are more than ``seen`` of them (the mail
    is written after the response: polled until MAIL_WAIT)."""
    outbox = server.workdir / "outbox"
    deadline = time.monotonic() + MAIL_WAIT
    while True:
        mails = sorted(outbox.glob("*.txt"), key=lambda p: p.stat().st_mtime_ns) if outbox.is_dir() else []
        if len(mails) > seen:
            break
        assert time.monotonic() < deadline, f"no new mail in {outbox} after {MAIL_WAIT} s:\n{server.log()}"
        time.sleep(0.02)
    text = mails[-1].read_text()
    links = re.findall(r"https?://\S+", text)
    wanted = [link for link in links if link.startswith(f"{server.url}{path}?token=")]
    assert wanted, f"no {server.url}{path}?token= link in {mails[-1]}:\n{text}"
    return wanted[0], len(mails)


def other_device_login(server: ServeProcess, password: str) -> dict[str, Any]:
    """A JSON sign-in from another client (another User-Agent): a second session of the same account."""
    response = httpx.post(f"{server.url}/auth", json={"username": USER, "password": password},
                          headers={"Accept": "application/json", "User-Agent": OTHER_DEVICE}, timeout=10)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def private_as(server: ServeProcess, access_token: str) -> httpx.Response:
    return httpx.get(f"{server.url}/private", timeout=10, headers={
        "Accept": "application/json", "User-Agent": OTHER_DEVICE, "Authorization": f"Bearer {access_token}"})


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_walk_every_page(browser_page: Any, served: ServeProcess, tmp_path: Path, viewport: str) -> None:
    shots = tmp_path / "shots"
    shots.mkdir()
    context = browser_page.context.browser.new_context(**VIEWPORTS[viewport])
    context.set_default_timeout(10_000)
    walk = Walk(context.new_page(), served, viewport, shots, tap=viewport == "phone")
    page = walk.page
    mails = 0
    try:
        # --- signed out: home, register, verify -------------------------------------------------------
        walk.goto("/")
        walk.check("home", signed_in=False, texts=("Sign in",))
        assert page.locator("#login-form").count() == 1

        walk.goto("/register")
        walk.check("register", signed_in=False, texts=("Create an account",))
        form = page.locator("#register-form")
        form.locator("#username").fill(USER)
        form.locator("#email").fill(EMAIL)
        form.locator("#password").fill(PASSWORD)
        walk.press('#register-form [type="submit"]', status=201)
        walk.check("registered", signed_in=False, texts=(f"Account {USER} created",))

        link, mails = newest_mail_link(served, mails, "/verify")
        response = page.goto(link)
        assert response is not None and response.status == 200, response and response.status
        walk.check("verified", signed_in=False, texts=("your email is confirmed",))

        # --- signed in: private, sessions, another device revoked --------------------------------------
        walk.sign_in(PASSWORD)
        walk.check("private", signed_in=True, texts=("this is private",))
        walk.expect(page.inner_text("#who") == USER, "private: #who is not the user's name")
        claims = page.locator("table.claims")
        assert claims.count() == 1
        table = claims.inner_text()
        walk.expect(not EPOCH.search(table), f"private: a raw epoch number in the claims table:\n{table}")
        walk.expect(len(HUMAN_DATE.findall(table)) >= 2,
                    f"private: iat and exp are not shown as 'YYYY-MM-DD HH:MM:SS UTC':\n{table}")
        walk.expect(page.locator("#verify-banner").count() == 0, "private: #verify-banner after verifying")

        walk.goto("/sessions")
        walk.check("sessions", signed_in=True, texts=("Your sessions", "(this one)"))
        devices = page.locator("td.device")
        walk.expect(devices.count() == 1, f"sessions: {devices.count()} td.device cells for one session")
        if devices.count() == 1:
            mine = devices.first.inner_text()
            walk.expect(("Chrome" in mine or "Chromium" in mine) and "Mozilla/5.0" not in mine,
                        f"sessions: the device cell is not a name from the User-Agent: {mine!r}")
        walk.expect("Mozilla/5.0" not in page.inner_text("table.sessions"),
                    "sessions: the raw User-Agent string is shown")

        other = other_device_login(served, PASSWORD)
        assert private_as(served, other["access_token"]).status_code == 200
        walk.goto("/sessions")
        rows = page.locator("table.sessions tbody tr")
        assert rows.count() == 2, page.inner_text("table.sessions")
        theirs = rows.filter(has_not_text="(this one)")
        assert theirs.count() == 1, page.inner_text("table.sessions")
        walk.check("sessions-two", signed_in=True, texts=("(this one)",))
        device = theirs.locator("td.device")
        walk.expect(device.count() == 1 and "Mozilla/5.0" not in device.first.inner_text()
                    and device.first.inner_text().strip() != "",
                    f"sessions: the other device's name is not derived from its User-Agent: "
                    f"{theirs.first.inner_text()!r}")
        with page.expect_navigation() as navigation:
            revoke = theirs.locator('form[action$="/revoke"] button', has_text="Revoke")
            revoke.tap() if walk.tap else revoke.click()
        assert navigation.value is not None and navigation.value.status == 200
        assert page.url == walk.url("/sessions"), page.url
        rows = page.locator("table.sessions tbody tr")
        assert rows.count() == 1, page.inner_text("table.sessions")
        assert "(this one)" in rows.first.inner_text(), page.inner_text("table.sessions")
        walk.check("sessions-revoked", signed_in=True, texts=("(this one)",))
        refused = private_as(served, other["access_token"])
        assert refused.status_code == 401, refused.text
        # revoked, not merely expired (the token is ACCESS_TTL seconds old at most)
        assert refused.json().get("reason") == "revoked", refused.text
        # its refresh token is dead too: that device cannot sign itself in again
        again = httpx.post(f"{served.url}/refresh", json={"refresh_token": other["refresh_token"]},
                           headers={"Accept": "application/json", "User-Agent": OTHER_DEVICE}, timeout=10)
        assert again.status_code == 401, again.text

        # --- the password change -----------------------------------------------------------------------
        walk.goto("/password/change")
        walk.check("password-change", signed_in=True)
        form = page.locator("#change-password-form")
        assert form.count() == 1, "no #change-password-form on /password/change"
        form.locator("#current_password").fill(PASSWORD)
        form.locator("#new_password").fill(CHANGED)
        walk.press("#change-password")
        assert urlsplit(page.url).path == "/private", page.url
        walk.check("password-changed", signed_in=True, texts=("this is private",))
        walk.expect(walk.notice() == "Your password was changed.",
                    f"password change: the notice is {walk.notice()!r}")

        # --- the signed-in nav on the pages that do not need a session ---------------------------------
        walk.goto("/register")
        walk.check("register-signed-in", signed_in=True, texts=("Create an account",))
        walk.goto("/password/forgot")
        walk.check("forgot-signed-in", signed_in=True, texts=("Reset your password",))
        walk.goto("/no/such/page", status=404)
        walk.check("not-found-signed-in", signed_in=True, texts=("Not found",))
        walk.goto("/debugger")
        walk.check("debugger-signed-in", signed_in=True, texts=("Token debugger",))

        # --- sign out, forgot, reset, sign in with the new password ------------------------------------
        walk.goto("/private")
        walk.press("#logout")
        assert page.url.startswith(walk.url("/")), page.url
        walk.check("signed-out", signed_in=False)
        walk.expect(walk.notice() == "You have been signed out.",
                    f"sign out: the notice is {walk.notice()!r}")
        assert page.locator("#login-form").count() == 1
        walk.goto("/no/such/page", status=404)
        walk.check("not-found", signed_in=False, texts=("Not found",))
        walk.goto("/debugger")
        walk.check("debugger", signed_in=False, texts=("Token debugger",))

        walk.goto("/password/forgot")
        walk.check("forgot", signed_in=False, texts=("Reset your password",))
        page.fill("#username", USER)
        walk.press('form[action="/password/forgot"] [type="submit"]', status=202)
        walk.check("forgot-sent", signed_in=False, texts=("If that account exists",))

        link, mails = newest_mail_link(served, mails, "/password/reset")
        response = page.goto(link)
        assert response is not None and response.status == 200, response and response.status
        walk.check("reset", signed_in=False, texts=("Choose a new password",))
        page.locator('form[action="/password/reset"] #password').fill(RESET)
        walk.press('form[action="/password/reset"] [type="submit"]')
        walk.check("reset-done", signed_in=False, texts=("Sign in",))
        walk.expect(walk.notice() == "Your password was changed. Sign in below.",
                    f"reset: the notice is {walk.notice()!r}")

        walk.sign_in(RESET)
        walk.check("private-new-password", signed_in=True, texts=("this is private",))

        # --- past the access token's lifetime: the refresh cookie keeps the browser signed in ----------
        time.sleep(ACCESS_TTL + 1)
        walk.goto("/private")
        assert page.url == walk.url("/private"), page.url
        assert walk.has_no_login_form(), "the login form after the access token expired"
        walk.check("private-after-expiry", signed_in=True, texts=("this is private",))
        assert page.inner_text("#who") == USER
    finally:
        context.close()
        # shown with -s, and by pytest under "Captured stdout" when the walk stopped on a hard failure
        print(f"\n{viewport} screenshots: {shots}")
        for problem in walk.problems:
            print(f"page check failed: {problem}")
    assert not walk.problems, f"{len(walk.problems)} page checks failed:\n" + "\n".join(walk.problems)
