"""What the API fuzzer (test_fuzz_openapi.py) found, each pinned by the exact request it sent."""

from __future__ import annotations

import pytest
from _support import Server


@pytest.mark.parametrize("path", ["/register", "/password/forgot", "/password/reset", "/password/change"])
async def test_405_allows_every_method_of_a_path_with_a_page_and_a_form(server: Server, path: str) -> None:
    # schemathesis, allow_header_conformance: `PUT /register` answered `Allow: HEAD, GET`, leaving out POST
    # (the router named the methods of the first route it matched); RFC 9110 §15.5.6 wants them all.
    answer = await server.json_client().put(path)
    assert answer.status_code == 405
    assert answer.json()["error"] == "method_not_allowed"
    assert sorted(answer.headers["allow"].split(", ")) == ["GET", "HEAD", "POST"]


async def test_each_of_those_methods_still_reaches_its_own_handler(server: Server) -> None:
    browser = server.browser()
    assert "<form" in (await browser.get("/register")).text
    assert (await browser.head("/register")).status_code == 200
    body = {"username": "zoe", "password": "correct horse battery"}
    created = await server.json_client().post("/register", json=body)
    assert created.status_code == 201
    assert created.json()["username"] == "zoe"
