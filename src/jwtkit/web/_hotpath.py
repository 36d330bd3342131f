"""The fast lane for the server's hottest request: ``GET /private`` from a JSON client with a bearer token.

Such a request needs exactly: read the ``Authorization`` header, one :func:`jwtkit.decode`, one store check,
one small JSON body. Starlette's full stack (error middleware, exception middleware, router, ``Request`` and
``Response`` objects) costs several times that, so :class:`JwtkitApp` answers these requests before the stack
and sends every other request (and every failure of this one) down the ordinary path, which renders errors.
The answer is byte-for-byte what the ordinary route sends: the same body and the same headers, including the
security headers of :mod:`jwtkit.web._edge`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from jwtkit.web._edge import SECURITY_HEADERS
from jwtkit.web._http import MAX_HEADERS
from jwtkit.web.middleware import header_token

if TYPE_CHECKING:
    from jwtkit.web.app import Site

__all__ = ["JwtkitApp", "private_body"]

_JSON_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-type", b"application/json"),
    *SECURITY_HEADERS,
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]


def private_body(user_id: str, session_id: str, expires: Any) -> bytes:
    """The JSON body of a successful ``GET /private`` (shared with the ordinary route)."""
    return orjson.dumps({"message": "This is private", "user_id": user_id, "session_id": session_id,
                         "expires": expires})


class _FastPrivate:
    """Pure ASGI: answers bearer JSON ``GET /private`` requests itself, passes everything else on."""

    def __init__(self, app: ASGIApp, site: Site) -> None:
        self.app = app
        self.site = site
        self.verify = site.authenticator.verify
        # with User-Agent binding the service must compare the agent hash: the ordinary path does it
        self.enabled = not site.config.bind_user_agent

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope["path"] != "/private" or scope["method"] != "GET"
                or scope["query_string"] or not self.enabled):
            await self.app(scope, receive, send)
            return
        authorization = accept = None
        size = 0
        has_body = False
        for name, value in scope["headers"]:
            size += len(name) + len(value)
            if name == b"authorization":
                authorization = value
            elif name == b"accept":
                accept = value.lower()
            elif name == b"content-length" or name == b"transfer-encoding":
                has_body = True  # a GET with a body is odd: the ordinary path applies the body limits
        token = header_token(authorization) if authorization is not None else None
        # the ordinary path's negotiation: HTML only for clients that ask for HTML and not for JSON
        wants_html = accept is not None and b"text/html" in accept and b"application/json" not in accept
        if token is None or size > MAX_HEADERS or wants_html or has_body:
            await self.app(scope, receive, send)
            return
        try:
            principal = await self.verify(token)
        except Exception:
            # a refused token or a store fault: the ordinary path checks again and renders the error
            await self.app(scope, receive, send)
            return
        body = private_body(principal.user_id, principal.session_id, principal.claims.get("exp"))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [*_JSON_HEADERS, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class JwtkitApp(Starlette):
    """The server's Starlette app, with :class:`_FastPrivate` in front of the ordinary middleware stack."""

    site: Site

    def build_middleware_stack(self) -> ASGIApp:
        return _FastPrivate(super().build_middleware_stack(), self.site)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["app"] = self
        stack = self.middleware_stack
        if stack is None:
            stack = self.middleware_stack = self.build_middleware_stack()
        await stack(scope, receive, send)
