"""The server's outermost ASGI layer: request limits and the security headers of every response.

Limits come first, before any routing: past ``max_concurrency`` requests in flight in this process a request
gets 503 (``overloaded``, ``Retry-After: 1``) at once rather than queueing behind the slow ones; request
headers over ``MAX_HEADERS`` bytes get 431 (RFC 6585 §5), a declared body over ``MAX_BODY`` gets 413 without
reading it, and a body that has not arrived ``BODY_TIMEOUT`` seconds after the request began gets 408 (the
HTTP server's header-read timeout ends a slow head; nothing else would end a slow body, and each one holds a
slot). Every response then gets a strict
Content-Security-Policy (no inline script or style anywhere), ``X-Content-Type-Options: nosniff``,
``X-Frame-Options: DENY``, a Referrer-Policy, ``Cache-Control: no-store`` unless the handler chose a cache
policy, and ``Strict-Transport-Security`` when the server runs with secure cookies (which only travel over
HTTPS: a browser that saw the site once must never fall back to plain HTTP, RFC 6797). The header lists are
built once here; per response the layer only appends missing ones.
"""

from __future__ import annotations

import asyncio

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jwtkit.web._errors import HTTPError, problem_of
from jwtkit.web._http import MAX_BODY, MAX_HEADERS

__all__ = ["BODY_TIMEOUT", "CSP", "MAX_CONCURRENCY", "RESPONSE_STARTED", "SECURITY_HEADERS", "EdgeMiddleware"]

# Requests in flight per process. A request takes well under a millisecond apart from a login's argon2 hash
# (about 50 ms on one of argon2's threads): a few hundred in flight is an overload to shed, not a queue.
MAX_CONCURRENCY = 256
BODY_TIMEOUT = 10.0  # seconds from the request's start for its whole body (16 KiB at most) to arrive

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")

SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
_DEFAULT_REFERRER = (b"referrer-policy", b"same-origin")
# One year, without includeSubDomains or preload: those bind every other host of the domain, which is the
# domain owner's choice to make (behind a proxy, it can add them).
HSTS = (b"strict-transport-security", b"max-age=31536000")
_NO_STORE = (b"cache-control", b"no-store")
_STATIC_CACHE = (b"cache-control", b"no-cache")


RESPONSE_STARTED = "jwtkit.response_started"  # set on the scope once the response has begun (see _app)

# The blocks appended to a response's headers, by what the handler already chose (built once).
_BLOCKS = {
    (False, False, False): [*SECURITY_HEADERS, _DEFAULT_REFERRER, _NO_STORE],
    (False, False, True): [*SECURITY_HEADERS, _DEFAULT_REFERRER, _STATIC_CACHE],
    (True, False, False): [*SECURITY_HEADERS, _NO_STORE],
    (True, False, True): [*SECURITY_HEADERS, _STATIC_CACHE],
    (False, True, False): [*SECURITY_HEADERS, _DEFAULT_REFERRER],
    (False, True, True): [*SECURITY_HEADERS, _DEFAULT_REFERRER],
    (True, True, False): list(SECURITY_HEADERS),
    (True, True, True): list(SECURITY_HEADERS),
}


def _refusal(error: HTTPError) -> tuple[Message, Message]:
    problem = problem_of(error)
    body = orjson.dumps(problem.body())
    start = {"type": "http.response.start", "status": problem.status,
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                         (b"connection", b"close"), *_BLOCKS[(False, False, False)],
                         *((name.lower().encode("latin-1"), value.encode("latin-1"))
                           for name, value in problem.headers.items())]}
    return start, {"type": "http.response.body", "body": body}


_HEADERS_TOO_LARGE = _refusal(HTTPError("headers_too_large", f"Request headers exceed {MAX_HEADERS} bytes"))
_BODY_TOO_LARGE = _refusal(HTTPError("body_too_large", f"The body is larger than {MAX_BODY} bytes"))
_BAD_LENGTH = _refusal(HTTPError("bad_request", "Content-Length is not a number"))
_OVERLOADED = _refusal(HTTPError("overloaded", "The server is busy; try again shortly"))
_SLOW_BODY = f"The request body did not arrive within {BODY_TIMEOUT:.0f} s"


class EdgeMiddleware:
    """Limits before routing, security headers on every response (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, hsts: bool = False, max_concurrency: int = MAX_CONCURRENCY,
                 body_timeout: float = BODY_TIMEOUT) -> None:
        self.app = app
        self._blocks = {key: [*block, HSTS] for key, block in _BLOCKS.items()} if hsts else _BLOCKS
        self.max_concurrency = max_concurrency
        self.body_timeout = body_timeout
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        size = 0
        length = None
        for name, value in scope["headers"]:
            size += len(name) + len(value)
            if name == b"content-length":
                length = value
        refusal = None
        if size > MAX_HEADERS:
            refusal = _HEADERS_TOO_LARGE
        elif length is not None:
            if not length.isdigit():
                refusal = _BAD_LENGTH
            elif int(length) > MAX_BODY:
                refusal = _BODY_TOO_LARGE
        if refusal is None and self.in_flight >= self.max_concurrency:
            refusal = _OVERLOADED
        if refusal is not None:
            await send(refusal[0])
            await send(refusal[1])
            return
        self.in_flight += 1
        try:
            await self._serve(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        static = scope["path"].startswith("/static/")
        blocks = self._blocks

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                scope[RESPONSE_STARTED] = True
                headers = message.get("headers") or []
                referrer = cache = False
                for name, _ in headers:
                    name = name.lower()
                    if name == b"referrer-policy":
                        referrer = True
                    elif name == b"cache-control":
                        cache = True
                message["headers"] = [*headers, *blocks[(referrer, cache, static)]]
            await send(message)

        deadline = asyncio.get_running_loop().time() + self.body_timeout
        await self.app(scope, _body_within(receive, deadline), send_with_headers)


def _body_within(receive: Receive, deadline: float) -> Receive:
    """``receive``, refusing with 408 (``request_timeout``) a body still incomplete at ``deadline``; once the
    body is complete (or the client left), later calls wait as long as they like (a disconnect watch)."""
    complete = False

    async def receive_body() -> Message:
        nonlocal complete
        if complete:
            return await receive()
        try:
            async with asyncio.timeout_at(deadline):
                message = await receive()
        except TimeoutError:
            raise HTTPError("request_timeout", _SLOW_BODY) from None
        if message["type"] != "http.request" or not message.get("more_body", False):
            complete = True
        return message

    return receive_body
