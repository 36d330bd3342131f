"""The debugger page as served by the app (no browser): headers, the module graph, and a static scan of the
page's JavaScript for anything that could send the token or key away."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from jwtkit.service import Settings
from jwtkit.web import create_app

STATIC = Path(__file__).resolve().parents[2] / "src" / "jwtkit" / "web" / "static"
MODULES = sorted(STATIC.glob("debugger*.js"))

# Browser APIs that reach the network or the address bar, and HTML sinks; none belongs in the debugger.
FORBIDDEN = re.compile(
    r"\bfetch\s*\(|XMLHttpRequest|sendBeacon|WebSocket|EventSource|\blocation\b|\bhistory\.|"
    r"\bimport\s*\(|new\s+Image|\.src\s*=|\.href\s*=|innerHTML|outerHTML|insertAdjacentHTML|"
    r"document\.write|\beval\s*\(|new\s+Function|localStorage|sessionStorage|document\.cookie|\.submit\s*\("
)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings.from_env(
        {}, store_url="memory://", secret=b"s" * 40, users_path=str(tmp_path / "u.db")
    )
    with TestClient(create_app(settings=settings, secure_cookies=False), base_url="http://127.0.0.1") as test:
        yield test


def test_debugger_page_headers_and_markup(client: TestClient) -> None:
    response = client.get("/debugger")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert response.headers["referrer-policy"] == "no-referrer"
    html = response.text
    assert '<script type="module" src="/static/debugger.js"></script>' in html
    assert '<link rel="stylesheet" href="/static/debugger.css">' in html
    for absent in ("<form", "<style", " style=", "http://", "https://", "<iframe"):
        assert absent not in html, absent
    assert re.findall(r"\son[a-z]+\s*=", html) == []  # no inline event handlers (CSP forbids them)


def test_every_module_of_the_page_is_served_as_javascript(client: TestClient) -> None:
    seen: set[str] = set()
    pending = ["debugger.js"]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        response = client.get(f"/static/{name}")
        assert response.status_code == 200, name
        # Module scripts need a JavaScript MIME type, and nosniff makes the browser hold the server to it.
        assert response.headers["content-type"].split(";")[0] in ("text/javascript", "application/javascript")
        pending += re.findall(r'from\s+"\./([\w-]+\.js)"', response.text)
    assert seen == {path.name for path in MODULES}
    css = client.get("/static/debugger.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")


@pytest.mark.parametrize("module", MODULES, ids=lambda path: path.name)
def test_debugger_javascript_has_no_way_out(module: Path) -> None:
    source = module.read_text()
    code = re.sub(r"//[^\n]*", "", source)  # comments may name what the code never does
    assert FORBIDDEN.findall(code) == []
