"""The FastAPI test app's /docs in Debian's Chromium (Playwright), served by a real uvicorn: Swagger UI from
the offline assets (no request leaves 127.0.0.1, no console error), "Authorize" with the OAuth2 password
flow against the auth router's /auth/token, then "Try it out" on a protected route: 200 with the token.

Run in its own pytest process (``make browser``): Playwright's sync API keeps an event loop running.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _fastapi_app import PASSWORD

from processes import free_port, wait_for_port

pytestmark = pytest.mark.browser

HERE = Path(__file__).resolve().parent


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    log = open(tmp_path / "uvicorn.log", "wb")  # noqa: SIM115 - the child owns it
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "_fastapi_app:make_app", "--app-dir", str(HERE),
         "--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--lifespan", "on"],
        stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    log.close()
    try:
        wait_for_port(port, timeout=30, proc=process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_docs_authorize_with_the_password_flow_and_try_a_protected_route(browser_page: Any, served: str,
                                                                        tmp_path: Path) -> None:
    page = browser_page
    requests: list[str] = []
    problems: list[str] = []
    calls: list[dict[str, str]] = []
    page.on("request", lambda request: requests.append(request.url))
    page.on("request", lambda request: calls.append(request.headers)
            if request.url == f"{served}/me" else None)
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))

    page.goto(f"{served}/docs")
    page.wait_for_selector("button.authorize")
    # the route list came from /openapi.json, and the protected routes show their lock
    assert page.locator("#operations-default-me_me_get .authorization__btn").count() == 1
    assert page.locator("#operations-auth-token_auth_token_post .authorization__btn").count() == 0

    page.click("button.authorize")
    page.fill("#oauth_username", "alice")
    page.fill("#oauth_password", PASSWORD)
    page.click(".auth-container button.modal-btn.auth.authorize")
    page.wait_for_selector(".auth-container button.modal-btn.auth:has-text('Logout')")
    assert "alice" in page.inner_text(".auth-container")
    page.click("button.btn-done")

    page.click("#operations-default-me_me_get .opblock-summary")
    page.click("#operations-default-me_me_get button.try-out__btn")
    page.click("#operations-default-me_me_get button.execute")
    status = page.wait_for_selector("#operations-default-me_me_get .live-responses-table "
                                    "tr.response .response-col_status")
    assert status is not None and status.inner_text().strip() == "200"
    body = page.inner_text("#operations-default-me_me_get .live-responses-table "
                           "tr.response .response-col_description")
    assert '"scopes"' in body and '"read"' in body
    assert calls and calls[-1]["authorization"].startswith("Bearer ey")
    page.screenshot(path=str(tmp_path / "docs.png"), full_page=True)

    assert any(url == f"{served}/auth/token" for url in requests)
    outside = [url for url in requests if not url.startswith(f"{served}/") and not url.startswith("data:")]
    assert outside == [], outside
    assert problems == [], problems
