"""The server's machine endpoints: JWKS, health, OpenAPI, and ``GET /private`` for JSON clients.

:class:`PrivateJSON` is a pure-ASGI endpoint listed in the route table like any other: it runs behind the
same edge limits, readiness guard and authentication step as every route, and only skips Starlette's
``Request``/``Response`` objects for the one answer it sends itself (a principal, a JSON client, no token in
the URL). Everything else, every refusal included, goes to the ordinary handler, which raises into the
app's one error handler.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from jwtkit.service._access import Principal
from jwtkit.service._auth import AuthService
from jwtkit.service._keyring import JWKS_MAX_AGE
from jwtkit.store import StoreUnavailable
from jwtkit.web._handlers import Handlers, private_body
from jwtkit.web._http import json_ok, wants_json
from jwtkit.web._openapi import openapi_document

__all__ = ["Machine", "PrivateJSON", "Readiness"]

_JSON_START = [(b"content-type", b"application/json")]
_MAX_BODIES = 4096  # as many as the access policy's verified-token cache holds
# Verifiers may cache the JWKS this long: `jwtkit keys rotate` publishes a new key longer than that (plus the
# servers' look at the key file) before it signs, so a cached copy always has the key of any token it meets.
_JWKS_CACHE = {"Cache-Control": f"public, max-age={JWKS_MAX_AGE}"}


class PrivateJSON:
    """``GET /private``: the JSON answer straight from the scope; browsers and refusals go to the handler."""

    def __init__(self, handlers: Handlers) -> None:
        self.handlers = handlers
        # the access policy hands out one Principal object per cached token: its body is computed once.
        # id -> (principal, body); the principal is kept so that its id cannot be reused meanwhile
        self._bodies: dict[int, tuple[Principal, bytes]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        principal = scope["state"]["principal"]
        if principal is None or not wants_json(scope) or b"token=" in scope["query_string"]:
            response = await self.handlers.private(Request(scope, receive))
            await response(scope, receive, send)
            return
        known = self._bodies.get(id(principal))
        if known is not None and known[0] is principal:
            body = known[1]
        else:
            body = private_body(principal)
            if len(self._bodies) >= _MAX_BODIES:
                self._bodies.clear()
            self._bodies[id(principal)] = (principal, body)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [*_JSON_START, (b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})


class Machine:
    """JWKS, health and the OpenAPI document."""

    def __init__(self, service: AuthService, readiness: Readiness) -> None:
        self.service = service
        self.readiness = readiness
        self._openapi = openapi_document()

    async def jwks(self, request: Request) -> Response:
        """The public keys that verify now: the active one, the next one (published ahead of signing) and the
        retiring ones, as the service's key file holds them at this moment."""
        return json_ok(self.service.jwks(), headers=_JWKS_CACHE)

    async def healthz(self, request: Request) -> Response:
        try:
            await self.service.store.ping()
        except StoreUnavailable:
            return json_ok({"status": "unavailable", "store": "unavailable"}, 503,
                           headers={"Retry-After": "1"})
        if not self.readiness.ready:
            # The store answers again but the service is not open yet: every other route still says 503,
            # so a load balancer must not send traffic here either.
            return json_ok({"status": "starting", "store": "ok"}, 503, headers={"Retry-After": "1"})
        # the revocation mirror: "stale" while it catches up (access checks then go to the store, still ok)
        mirror = self.service.mirror
        state = "off" if mirror is None else "current" if mirror.trusted else "stale"
        return json_ok({"status": "ok", "store": "ok", "mirror": state})

    async def openapi(self, request: Request) -> Response:
        return json_ok(self._openapi, headers={"Cache-Control": "no-cache"})


class Readiness:
    """Whether the service is open: False only while the lifespan could not open it (store down at
    startup); a service handed in already open, as tests do, is ready."""

    def __init__(self) -> None:
        self.ready = True
