"""The ready-to-run jwtkit server: routes, the middleware order, the one error handler, and the lifespan.

A request's path, the same for every route::

    EdgeMiddleware      size limits (431, 413) and the security headers of every response
    ErrorBoundary       any exception below becomes the one error answer (ErrorHandler); a second one
                        sits right above the routes, inside the authentication step
    NotReadyGuard       503 while the service could not be opened (store down at startup)
    JWTAuthMiddleware   the one authentication step: the service's AccessPolicy, result on scope["state"];
                        a browser without a live access cookie is refreshed on that request
    ExactRoutes, Router pages and JSON handlers (._handlers), machine endpoints (._api): one route table
    on_error            every failure: problem_of(exc) -> the JSON body or the page, status from STATUS

Browsers get pages; clients that send ``Accept: application/json`` or a JSON body get JSON
(:func:`._http.wants_json`). A last-resort handler logs anything unexpected and answers a clean 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route, Router
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from jwtkit.service import ServiceError, Settings
from jwtkit.service._auth import AuthService
from jwtkit.service._build import build_service
from jwtkit.store import StoreUnavailable
from jwtkit.web._api import Machine, PrivateJSON, Readiness
from jwtkit.web._cookies import CookiePolicy
from jwtkit.web._edge import MAX_CONCURRENCY, RESPONSE_STARTED, EdgeMiddleware
from jwtkit.web._errors import AuthError, HTTPError, json_response, problem_of
from jwtkit.web._extract import TokenLocation
from jwtkit.web._handlers import Handlers
from jwtkit.web._http import wants_json
from jwtkit.web._middleware import AuthMode, JWTAuthMiddleware
from jwtkit.web._pages import STATIC, Pages
from jwtkit.web._proxy import ProxyHeadersMiddleware, TrustedProxies

__all__ = ["OPEN_RETRY", "create_app"]

logger = logging.getLogger("jwtkit.web")

OPEN_RETRY = 1.0  # seconds between attempts to open the service when the store was down at startup
# what still answers before the service is open: nothing here reads the user repository
_ALWAYS_OPEN = frozenset({"/healthz", "/openapi.json", "/.well-known/jwks.json", "/debugger", "/favicon.ico"})
# what never reads a principal: no token check for these (a browser sends its cookie with each of them).
# The debugger page is not one: its nav shows who is signed in.
_UNAUTHENTICATED = ("/healthz", "/openapi.json", "/.well-known/jwks.json", "/favicon.ico", "/static/")


class ErrorHandler:
    """The one exception handler: every failure becomes a Problem, answered as JSON or as a page."""

    def __init__(self, pages: Pages) -> None:
        self.pages = pages
        self._store_down_logged = -math.inf

    async def __call__(self, request: Request, exc: Exception) -> Response:
        if isinstance(exc, StoreUnavailable):
            now = time.monotonic()
            if now - self._store_down_logged >= 10.0:  # one line per 10 s, not one per refused request
                self._store_down_logged = now
                logger.warning("store unavailable (answering 503): %s", exc)
        elif not isinstance(exc, AuthError | HTTPError | ServiceError | HTTPException | ClientDisconnect):
            # last resort: a bug. Log it with the traceback, answer without details (OWASP error handling).
            logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        problem = problem_of(exc)
        if problem.status == 500 or wants_json(request):
            return json_response(problem)
        return await self.pages.problem(request, problem)


class ErrorBoundary:
    """Pure ASGI: any exception a layer or handler raises becomes the one error answer (ErrorHandler).

    It replaces Starlette's two exception layers (ServerErrorMiddleware, ExceptionMiddleware), each of which
    wraps ``send`` on every request; here nothing is wrapped: the edge layer, which already sees every
    response start, marks it on the scope, and an exception after that point is re-raised for the server to
    log and close the connection.
    """

    def __init__(self, app: ASGIApp, *, on_error: ErrorHandler) -> None:
        self.app = app
        self.on_error = on_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except Exception as exc:
            if scope["type"] != "http" or scope.get(RESPONSE_STARTED):
                raise
            response = await self.on_error(Request(scope, receive), exc)
            await response(scope, receive, send)


class ExactRoutes:
    """The route table's routes without path parameters, found by one dict lookup rather than a walk over
    every route's regex; what it does not find (path parameters, mounts, 404, 405) goes to the router, which
    holds the same table. It sets on the scope what the router would (``router``, ``route``, ``endpoint``,
    ``path_params``)."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self.table: dict[str, list[Route]] = {}
        for route in router.routes:
            if isinstance(route, Route) and not route.param_convertors:
                self.table.setdefault(route.path, []).append(route)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            candidates = self.table.get(scope["path"])
            if candidates is not None:
                method = scope["method"]
                for route in candidates:
                    if route.methods is None or method in route.methods:
                        scope.setdefault("router", self.router)
                        scope["route"] = route
                        scope["endpoint"] = route.endpoint
                        scope["path_params"] = {}
                        await route.app(scope, receive, send)
                        return
        await self.router(scope, receive, send)


class _Server(Starlette):
    """Starlette, with the one request path built by hand (see the module docstring): Starlette's lifespan,
    router, ``app.state`` and test client, without its two per-request exception layers."""

    def __init__(self, *, layers: list[Middleware], on_error: ErrorHandler, **options: Any) -> None:
        super().__init__(**options)
        # Starlette's slash redirect builds its Location from the Host header (an attacker's choice) and, as a
        # 307, re-sends a POST with its password there: a path with a trailing slash is simply not found
        self.router.redirect_slashes = False
        self._layers = layers
        self._on_error = on_error

    def build_middleware_stack(self) -> ASGIApp:
        # handlers' errors are answered below the authentication step, so that what it adds to the response
        # (a silent refresh's cookies) is on error pages too; the outer boundary catches the layers' own
        app: ASGIApp = ErrorBoundary(ExactRoutes(self.router), on_error=self._on_error)
        for cls, args, kwargs in reversed(self._layers):
            app = cls(app, *args, **kwargs)
            if cls is NotReadyGuard:
                app = ErrorBoundary(app, on_error=self._on_error)  # inside the edge, so 500s get its headers
        return app


class NotReadyGuard:
    """Answers 503 (``store_unavailable``) while the service could not be opened yet, so that no handler
    touches an unopened user repository; health, static files and machine documents still answer."""

    def __init__(self, app: ASGIApp, *, readiness: Readiness, on_error: ErrorHandler) -> None:
        self.app = app
        self.readiness = readiness
        self.on_error = on_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (self.readiness.ready or scope["type"] != "http" or scope["path"] in _ALWAYS_OPEN
                or scope["path"].startswith("/static/")):
            await self.app(scope, receive, send)
            return
        refusal = StoreUnavailable("the service is not open yet")
        response = await self.on_error(Request(scope, receive), refusal)
        await response(scope, receive, send)


async def _open_when_reachable(service: AuthService, readiness: Readiness) -> None:
    while True:
        await asyncio.sleep(OPEN_RETRY)
        try:
            await service.open()
        except StoreUnavailable as exc:
            logger.debug("store still unavailable: %s", exc)
            continue
        readiness.ready = True
        logger.warning("store reachable again: service open")
        return


_FAVICON = (STATIC / "favicon.svg").read_bytes()


async def _favicon(request: Request) -> Response:
    # where browsers look without a <link rel="icon">; the pages link /static/favicon.svg
    return Response(_FAVICON, media_type="image/svg+xml", headers={"Cache-Control": "public, max-age=86400"})


_Endpoint = Callable[[Request], Awaitable[Response]]


def _page_and_form(path: str, page: _Endpoint, form: _Endpoint) -> Route:
    """One route for a path whose GET shows a form and whose POST takes it. Two routes on one path would
    answer another method with 405 and the ``Allow`` of the first one only (``GET, HEAD``): RFC 9110
    §15.5.6 wants every method of the resource there."""

    async def endpoint(request: Request) -> Response:
        return await (form if request.method == "POST" else page)(request)

    return Route(path, endpoint, methods=["GET", "POST"])


def _routes(handlers: Handlers, machine: Machine) -> list[BaseRoute]:
    return [
        # the hot route first: the router tries routes in order
        Route("/private", PrivateJSON(handlers), methods=["GET"]),
        Route("/", handlers.home, methods=["GET"]),
        Route("/home", handlers.home, methods=["GET"]),
        Route("/auth", handlers.auth, methods=["POST"]),
        Route("/logout", handlers.logout, methods=["POST"]),
        Route("/logout/all", handlers.logout_all, methods=["POST"]),
        Route("/sessions", handlers.sessions, methods=["GET"]),
        Route("/sessions/{sid}", handlers.delete_session, methods=["DELETE"]),
        Route("/sessions/{sid}/revoke", handlers.revoke_session_form, methods=["POST"]),
        Route("/refresh", handlers.refresh, methods=["POST"]),
        _page_and_form("/register", handlers.register_form, handlers.register),
        Route("/verify", handlers.verify, methods=["GET"]),
        _page_and_form("/password/forgot", handlers.forgot_form, handlers.forgot),
        _page_and_form("/password/reset", handlers.reset_form, handlers.reset),
        _page_and_form("/password/change", handlers.change_password_form, handlers.change_password),
        Route("/verify/resend", handlers.resend_verification, methods=["POST"]),
        Route("/debugger", handlers.debugger, methods=["GET"]),
        Route("/.well-known/jwks.json", machine.jwks, methods=["GET"]),
        Route("/healthz", machine.healthz, methods=["GET"]),
        Route("/openapi.json", machine.openapi, methods=["GET"]),
        Route("/favicon.ico", _favicon, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]


def create_app(service: AuthService | None = None, *, settings: Settings | None = None,
               secure_cookies: bool = True, allow_query_token: bool = False,
               max_concurrency: int = MAX_CONCURRENCY, forwarded_allow_ips: Iterable[str] = ()) -> Starlette:
    """The jwtkit server as a Starlette app; its lifespan opens and closes the service.

    Args:
        service: an unopened :class:`AuthService`; built from ``settings`` (or ``Settings.from_env()``)
            when None.
        settings: used only when ``service`` is None.
        secure_cookies: ``Secure`` cookies with ``__Host-``/``__Secure-`` names (default). False only for
            plain-http localhost.
        allow_query_token: accept ``GET /private?token=<jwt>`` (RFC 6750 §2.3; off by default because URLs
            are logged).
        max_concurrency: requests in flight in this process past which a request gets 503 ``overloaded``.
        forwarded_allow_ips: the reverse proxies whose ``X-Forwarded-For``/``-Proto`` are believed
            (addresses, networks, or ``"*"``; see :class:`jwtkit.service.ServerSettings`). None by default:
            the client address is the TCP peer's.

    Example:
        >>> from jwtkit.web import create_app
        >>> app = create_app(settings=Settings(store_url="memory://", secret=b"s" * 32))  # doctest: +SKIP
    """
    if service is None:
        service = build_service(settings if settings is not None else Settings.from_env())
    elif settings is not None:
        raise TypeError("pass either service or settings, not both")
    cookies = CookiePolicy(secure=secure_cookies)
    async def username(user_id: str) -> str | None:
        user = await service.get_user(user_id)
        return user.username if user is not None else None

    pages = Pages(cookies, username)
    handlers = Handlers(service, pages, cookies)
    readiness = Readiness()
    machine = Machine(service, readiness)
    on_error = ErrorHandler(pages)
    locations = [TokenLocation.HEADER, TokenLocation.COOKIE]
    if allow_query_token:
        locations.append(TokenLocation.QUERY)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        opener: asyncio.Task[None] | None = None
        try:
            await service.open()
        except StoreUnavailable as exc:
            readiness.ready = False
            # Start anyway and keep trying: requests answer 503 (fail closed) until the store is reachable.
            logger.warning("store unavailable at startup, retrying every %.0f s: %s", OPEN_RETRY, exc)
            opener = asyncio.create_task(_open_when_reachable(service, readiness), name="jwtkit open service")
        try:
            yield
        finally:
            if opener is not None:
                opener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await opener
            await service.close()

    proxies = TrustedProxies(forwarded_allow_ips)
    app = _Server(
        routes=_routes(handlers, machine),
        layers=[
            *([Middleware(ProxyHeadersMiddleware, trusted=proxies)] if proxies else []),
            Middleware(EdgeMiddleware, hsts=secure_cookies, max_concurrency=max_concurrency),
            Middleware(NotReadyGuard, readiness=readiness, on_error=on_error),
            Middleware(JWTAuthMiddleware, service=service, mode=AuthMode.TRY, locations=locations,
                       silent_refresh=cookies, query_param="token", exclude_paths=_UNAUTHENTICATED),
        ],
        on_error=on_error,
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.readiness = readiness
    return app
