"""The fast lane for bearer JSON ``GET /private`` answers exactly as the ordinary route does."""

from __future__ import annotations

from _support import HTML, PASSWORD, Server, start, stop

from jwtkit.service import AuthConfig


def comparable(headers: object) -> dict[str, str]:
    return {k.lower(): v for k, v in dict(headers).items()}  # type: ignore[call-overload]


async def test_fast_lane_and_route_send_the_same_answer(server: Server) -> None:
    await server.user()
    pair = await server.login()
    client = server.json_client()
    bearer = {"Authorization": f"Bearer {pair['access_token']}"}
    fast = await client.get("/private", headers=bearer)
    slow = await client.get("/private?via=route", headers=bearer)  # a query string takes the ordinary route
    assert fast.status_code == slow.status_code == 200
    assert fast.content == slow.content
    assert comparable(fast.headers) == comparable(slow.headers)


async def test_fast_lane_failures_are_rendered_by_the_route(server: Server) -> None:
    await server.user()
    pair = await server.login()
    client = server.json_client()
    bearer = {"Authorization": f"Bearer {pair['access_token']}"}
    await client.post("/logout", headers=bearer)
    refused = await client.get("/private", headers=bearer)
    assert refused.status_code == 401
    assert refused.json()["reason"] == "revoked"
    assert refused.headers["content-security-policy"].startswith("default-src 'none'")


async def test_html_clients_with_a_bearer_get_the_page(server: Server) -> None:
    await server.user()
    pair = await server.login()
    page = await server.client(**HTML).get("/private",
                                           headers={"Authorization": f"Bearer {pair['access_token']}"})
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert 'id="who">alice<' in page.text


async def test_user_agent_binding_goes_through_the_service() -> None:
    running = await start(config=AuthConfig(bind_user_agent=True))
    try:
        await running.user()
        client = running.client(**{"Accept": "application/json", "User-Agent": "phone/1"})
        token = (await client.post("/auth", json={"username": "alice",
                                                  "password": PASSWORD})).json()["access_token"]
        bearer = {"Authorization": f"Bearer {token}"}
        assert (await client.get("/private", headers=bearer)).status_code == 200
        stolen = await client.get("/private", headers={**bearer, "User-Agent": "laptop/2"})
        assert stolen.status_code == 401
        assert stolen.json()["reason"] == "agent"
    finally:
        await stop(running)


async def test_bearer_json_requests_skip_the_starlette_stack(server: Server) -> None:
    await server.user()
    pair = await server.login()  # builds the middleware stack
    lane = server.app.middleware_stack
    ordinary = lane.app
    calls: list[str] = []

    async def counting(scope, receive, send):  # type: ignore[no-untyped-def]
        calls.append(scope["path"])
        await ordinary(scope, receive, send)

    lane.app = counting
    client = server.json_client()
    bearer = {"Authorization": f"Bearer {pair['access_token']}"}
    assert (await client.get("/private", headers=bearer)).status_code == 200
    assert calls == []
    assert (await client.get("/private")).status_code == 401  # no token: the ordinary route answers
    assert (await client.get("/healthz")).status_code == 200
    assert calls == ["/private", "/healthz"]


async def test_a_get_with_an_oversized_body_is_413_on_the_fast_route_too(server: Server) -> None:
    await server.user()
    pair = await server.login()
    response = await server.json_client().request("GET", "/private", content=b"x" * 20000,
                                                  headers={"Authorization": f"Bearer {pair['access_token']}"})
    assert response.status_code == 413
