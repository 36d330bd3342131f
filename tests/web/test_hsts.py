"""Strict-Transport-Security: with secure cookies (the default), every response tells the browser to use
HTTPS only from then on (RFC 6797); without them (plain-HTTP development), no response does."""

from __future__ import annotations

import httpx
import pytest
from _support import make_service

from jwtkit.web import create_app


@pytest.mark.parametrize("path", ["/", "/healthz", "/private", "/no-such-page", "/static/site.css"])
async def test_secure_cookies_mean_hsts_on_every_response(path: str) -> None:
    service = make_service()
    app = create_app(service, secure_cookies=True)
    async with service, httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                          base_url="https://testserver") as client:
        response = await client.get(path)
    assert response.headers.get_list("strict-transport-security") == ["max-age=31536000"]


async def test_plain_http_development_sends_no_hsts() -> None:
    service = make_service()
    app = create_app(service, secure_cookies=False)
    async with service, httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                          base_url="http://testserver") as client:
        for path in ("/", "/healthz", "/private"):
            assert "strict-transport-security" not in (await client.get(path)).headers
