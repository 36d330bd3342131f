"""No response takes its Location from the request's Host header: a trailing slash is not redirected (issue
14: Starlette's slash redirect echoed the Host, and as a 307 it sent a POST, password and all, to it)."""

from __future__ import annotations

import httpx
import pytest
from _support import make_service

from jwtkit.web import create_app


@pytest.mark.parametrize(("method", "path"), [("GET", "/private/"), ("POST", "/auth/"), ("GET", "/login/"),
                                              ("GET", "/healthz/"), ("POST", "/logout/")])
async def test_a_trailing_slash_is_not_found_and_nothing_points_at_the_host(method: str, path: str) -> None:
    service = make_service()
    app = create_app(service, secure_cookies=False)
    async with service, httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                          base_url="http://testserver") as client:
        headers = {"Host": "evil.example", "Accept": "application/json"}
        response = await client.request(method, path, headers=headers,
                                        data={"username": "alice", "password": "hunter2"})
    assert response.status_code == 404
    assert "location" not in response.headers
    assert "evil.example" not in response.text
