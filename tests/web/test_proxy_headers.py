"""The client address behind reverse proxies: ``X-Forwarded-For`` believed only from the proxies listed in
``forwarded_allow_ips``, read from the right, never the client's own hops (issue 14: behind the TLS proxy
that secure cookies imply, every client shared the proxy's address, and without a proxy any client could
name its own)."""

from __future__ import annotations

import httpx
import pytest
from _support import PASSWORD, start, stop
from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send

from jwtkit.service import ServerSettings, ServiceConfigError
from jwtkit.web._proxy import ProxyHeadersMiddleware, TrustedProxies

PROXY = "203.0.113.7"  # the peer address of every test client (tests/web/_support.py)


@pytest.mark.parametrize(("allowed", "peer", "hops", "client"), [
    ((), PROXY, ["198.51.100.9"], PROXY),  # nothing trusted: the header is ignored (not reached: no layer)
    (("203.0.113.0/24",), PROXY, ["198.51.100.9"], "198.51.100.9"),
    (("203.0.113.0/24",), "192.0.2.50", ["198.51.100.9"], "192.0.2.50"),  # not from a proxy of ours
    # the client wrote the left hop itself; the proxy appended what it saw
    (("203.0.113.0/24",), PROXY, ["10.9.9.9", "198.51.100.9"], "198.51.100.9"),
    # two proxies of ours in a row: skip both
    (("203.0.113.0/24", "10.0.0.0/8"), PROXY, ["198.51.100.9", "10.1.2.3"], "198.51.100.9"),
    # every hop is a proxy of ours: the leftmost proxy, never a client-written value left of it
    (("203.0.113.0/24", "10.0.0.0/8"), PROXY, ["10.1.2.3"], "10.1.2.3"),
    # text that is not an address stops the walk at the proxy that passed it on
    (("203.0.113.0/24",), PROXY, ["admin"], PROXY),
    (("203.0.113.0/24", "10.0.0.0/8"), PROXY, ["1.1.1.1", "admin", "10.1.2.3"], "10.1.2.3"),
    (("203.0.113.0/24",), PROXY, [" 198.51.100.9:4711 "], "198.51.100.9"),
    (("203.0.113.0/24",), PROXY, ["[2001:db8::1]:4711"], "2001:db8::1"),
    (("*",), "192.0.2.50", ["198.51.100.9"], "198.51.100.9"),
    # "*" trusts every hop too: the leftmost valid hop stands, as in uvicorn and granian
    (("*",), "192.0.2.50", ["1.1.1.1", "198.51.100.9"], "1.1.1.1"),
])
def test_the_client_is_the_nearest_hop_that_is_not_a_trusted_proxy(
        allowed: tuple[str, ...], peer: str, hops: list[str], client: str) -> None:
    trusted = TrustedProxies(allowed)
    assert (trusted.client(peer, hops) if trusted else peer) == client


async def _session_ip(headers: dict[str, str], **options: object) -> str:
    running = await start(**options)  # type: ignore[arg-type]
    try:
        await running.user("alice")
        response = await running.json_client().post("/auth", json={"username": "alice", "password": PASSWORD},
                                                    headers=headers)
        assert response.status_code == 200, response.text
        user = await running.service.users.get_by_username("alice")
        assert user is not None
        [session] = await running.service.list_sessions(user.id)
        return session.ip
    finally:
        await stop(running)


async def test_without_trusted_proxies_a_client_cannot_choose_its_address() -> None:
    assert await _session_ip({"X-Forwarded-For": "198.51.100.9"}) == PROXY


async def test_behind_a_trusted_proxy_the_session_records_the_forwarded_client() -> None:
    ip = await _session_ip({"X-Forwarded-For": "10.9.9.9, 198.51.100.9"},
                           forwarded_allow_ips=("203.0.113.0/24",))
    assert ip == "198.51.100.9"


async def test_x_forwarded_proto_is_believed_only_from_a_trusted_proxy() -> None:
    seen: list[tuple[str, tuple[str, int]]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append((scope["scheme"], scope["client"]))
        await PlainTextResponse("ok")(scope, receive, send)

    layer = ProxyHeadersMiddleware(app, trusted=TrustedProxies([PROXY]))
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.9"}
    for peer, headers in [(PROXY, forwarded), (PROXY, {"X-Forwarded-Proto": "gopher"}),
                          ("192.0.2.50", forwarded)]:
        transport = httpx.ASGITransport(app=layer, client=(peer, 5555))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            assert (await client.get("/", headers=headers)).status_code == 200
    assert seen == [("https", ("198.51.100.9", 0)), ("http", (PROXY, 5555)), ("http", ("192.0.2.50", 5555))]


@pytest.mark.parametrize("value", ["10.0.0.300", "example.org", "10.0.0.0/40"])
def test_an_invalid_proxy_address_is_a_config_error(value: str) -> None:
    with pytest.raises(ServiceConfigError, match="JWTKIT_FORWARDED_ALLOW_IPS"):
        ServerSettings.from_env({"JWTKIT_FORWARDED_ALLOW_IPS": f"127.0.0.1,{value}",
                                 "JWTKIT_STORE": "memory://"})


def test_trusted_proxies_read_from_the_environment_and_back() -> None:
    server = ServerSettings.from_env({"JWTKIT_FORWARDED_ALLOW_IPS": "10.0.0.0/8, 127.0.0.1",
                                      "JWTKIT_MAX_CONCURRENCY": "64", "JWTKIT_STORE": "memory://"})
    assert server.forwarded_allow_ips == ("10.0.0.0/8", "127.0.0.1")
    assert server.max_concurrency == 64
    assert ServerSettings.from_env(server.to_env()) == server
