"""The client's address behind trusted reverse proxies (``--forwarded-allow-ips``).

Behind a TLS proxy every request comes from the proxy's address, so per-address rate limits and the login
throttle would count every client as one. ``X-Forwarded-For`` carries the real address, but any client can
send that header: it is believed only from a peer listed as a proxy, and only as far as the chain of listed
proxies goes. The client is the nearest hop, read from the right (the address the outermost trusted proxy
saw), that is not itself a trusted proxy; the hops further left were written by that client and are never
used. An entry that is not an IP address ends the walk at the proxy that passed it on, so that a client cannot
hide behind text the proxy copied.

granian has a proxy-header wrapper, but it takes any text as the client address (``X-Forwarded-For: admin``)
and trusts the leftmost, client-written hop when every hop is trusted; the rules here are short enough to own.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["ProxyHeadersMiddleware", "TrustedProxies"]

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_MAX_HOPS = 32  # a longer chain is not a real deployment; its extra hops are ignored


class TrustedProxies:
    """The peers whose forwarding headers are believed: addresses and networks, or ``*`` for any peer."""

    def __init__(self, allowed: Iterable[str]) -> None:
        allowed = tuple(allowed)
        self.everyone = "*" in allowed
        self.networks: tuple[_Network, ...] = tuple(
            ipaddress.ip_network(item, strict=False) for item in allowed if item != "*")

    def __bool__(self) -> bool:
        return self.everyone or bool(self.networks)

    def __contains__(self, address: str) -> bool:
        if self.everyone:
            return True
        ip = _address(address)
        return ip is not None and any(ip in network for network in self.networks)

    def client(self, peer: str, forwarded_for: list[str]) -> str:
        """The client's address for a request from ``peer`` carrying these ``X-Forwarded-For`` hops."""
        nearest = peer
        for hop in reversed(forwarded_for[-_MAX_HOPS:]):
            if nearest not in self:
                break  # the hop that handed it on is not a proxy of ours: it is the client
            ip = _address(hop)
            if ip is None:
                break  # garbage written by whoever is left of ``nearest``: stop at the proxy that passed it
            nearest = str(ip)
        return nearest


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[2001:db8::1]:4711"
        text = text[1:text.index("]")]
    elif text.count(":") == 1:  # "192.0.2.1:4711"
        text = text.partition(":")[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


class ProxyHeadersMiddleware:
    """Pure ASGI: from a trusted proxy, the scope's ``client`` becomes the forwarded client's address and its
    ``scheme`` the forwarded one (``X-Forwarded-Proto: https``); from anyone else both headers are ignored."""

    def __init__(self, app: ASGIApp, *, trusted: TrustedProxies) -> None:
        self.app = app
        self.trusted = trusted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        if scope["type"] == "http" and client and client[0] in self.trusted:
            hops: list[str] = []
            proto = b""
            for name, value in scope["headers"]:
                if name == b"x-forwarded-for":
                    hops.extend(value.decode("latin-1").split(","))
                elif name == b"x-forwarded-proto":
                    proto = value  # the last one: the nearest proxy's
            if hops:
                scope["client"] = (self.trusted.client(client[0], hops), 0)
            scheme = proto.strip().lower()
            if scheme in (b"http", b"https"):
                scope["scheme"] = scheme.decode("ascii")
        await self.app(scope, receive, send)
