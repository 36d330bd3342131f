"""The ready-to-run jwtkit server: HTML pages and a JSON API over :class:`jwtkit.service.AuthService`.

:func:`create_app` builds a Starlette app whose lifespan opens and closes the service. Browsers get pages;
clients that send ``Accept: application/json`` or a JSON body get JSON (see :func:`_http.wants_json`). Every
error leaves through one of the exception handlers below as a 4xx/503 with a stable ``error`` code
(``errors.STATUS``), in JSON or as a page; a last-resort handler logs anything unexpected and answers a clean
500 without details.

The JSON errors of ``GET /private`` and every authenticated route (RFC 6750 §3):

- no token: 401 ``{"error": "missing_token"}``, ``WWW-Authenticate: Bearer``;
- a bad token: 401 ``{"error": "invalid_token", "reason": <why>, "error_description": ...}`` and
  ``WWW-Authenticate: Bearer error="invalid_token", ...``; ``reason`` is ``expired`` for an expired token,
  ``revoked`` for a logged-out session, else the ``JWTError`` code (``signature``, ``malformed``, ...);
- the store is down: 503 ``{"error": "store_unavailable"}`` with ``Retry-After``.

:func:`app_from_env` is the factory uvicorn imports when it runs several workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import math
import os
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import jinja2
import orjson
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from jwtkit import JWTError, decode
from jwtkit.service import (
    AuthConfig,
    AuthService,
    Principal,
    ServiceError,
    Settings,
    Throttled,
    TokenPair,
    build_service,
)
from jwtkit.store import StoreUnavailable
from jwtkit.web._cookies import CookiePolicy, check_csrf
from jwtkit.web._edge import EdgeMiddleware
from jwtkit.web._hotpath import JwtkitApp, private_body
from jwtkit.web._http import HTTPError, read_input, require_fields, wants_json
from jwtkit.web.errors import STATUS, AuthError, www_authenticate
from jwtkit.web.middleware import Authenticator, TokenLocation
from jwtkit.web.openapi import openapi_document

__all__ = ["ENV_OPTIONS", "ENV_SETTINGS", "app_from_env", "create_app"]

logger = logging.getLogger("jwtkit.web")

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

ENV_SETTINGS = "JWTKIT_SERVE_SETTINGS"  # JSON of the Settings, handed from `serve` to worker processes
ENV_OPTIONS = "JWTKIT_SERVE_OPTIONS"  # JSON of create_app's keyword options

_JSON = "application/json"
_NO_REFERRER = {"Referrer-Policy": "no-referrer"}  # pages whose URL carries a token


def _json(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status_code=status, headers=headers, media_type=_JSON)


def _pair_json(pair: TokenPair) -> dict[str, Any]:
    return {"access_token": pair.access_token, "token_type": pair.token_type, "expires_in": pair.expires_in,
            "refresh_token": pair.refresh_token, "refresh_expires_in": pair.refresh_expires_in}


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else ""


def _timestamp(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(seconds))


def _user_agent(request: Request) -> str:
    return request.headers.get("user-agent", "")[:512]


class Site:
    """The handlers of one app, sharing the service, the templates and the cookie policy."""

    def __init__(self, service: AuthService, *, secure_cookies: bool, allow_query_token: bool) -> None:
        self.service = service
        self.config: AuthConfig = service.config
        self.cookies = CookiePolicy(secure=secure_cookies)
        self.allow_query_token = allow_query_token
        # False only while the lifespan could not open the service (store down at startup); a service
        # handed in already open, as tests do, is ready
        self.ready = True
        self._store_down_logged = -math.inf
        locations = [TokenLocation.HEADER, TokenLocation.COOKIE]
        if allow_query_token:
            locations.append(TokenLocation.QUERY)
        # The hot path (GET /private with a bearer token): decode once, one store check, nothing else.
        self.authenticator = Authenticator(keys=service.keys.keyset, issuer=self.config.issuer,
                                  audience=self.config.audience, typ="at+jwt", leeway=self.config.leeway,
                                  require=("exp", "iat", "sub", "sid", "jti"), clock=service.clock,
                                  locations=locations, cookie_name=self.cookies.access, query_param="token",
                                  store=service.store)
        self.env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                                      undefined=jinja2.StrictUndefined, auto_reload=False)
        self.env.filters["timestamp"] = _timestamp

    # --- shared steps ----------------------------------------------------------------------------------

    async def principal(self, request: Request, *, required: bool = True) -> Principal | None:
        """The caller's principal, None when there is no token and ``required`` is false.

        Raises:
            AuthError: ``missing_token`` (when required), ``invalid_token``, ``store_unavailable``.
        """
        found = self.authenticator.extract(request.scope)
        if found is None:
            if required:
                raise AuthError("missing_token")
            return None
        if self.config.bind_user_agent:
            return await self._verify_by_service(found[0], request)
        return await self.authenticator.verify(found[0])

    async def require(self, request: Request) -> Principal:
        """The caller's principal.

        Raises:
            AuthError: ``missing_token``, ``invalid_token``, ``store_unavailable``.
        """
        principal = await self.principal(request, required=True)
        if principal is None:
            raise AuthError("missing_token")
        return principal

    async def _verify_by_service(self, token: str, request: Request) -> Principal:
        from jwtkit.service import InvalidToken

        try:
            return await self.service.authenticate(token, user_agent=_user_agent(request))
        except InvalidToken as exc:
            raise AuthError("invalid_token", exc.reason) from None
        except ServiceError:
            raise AuthError("invalid_token", "rejected") from None

    def page(self, request: Request, name: str, context: dict[str, Any] | None = None, *,
             status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
        """Render a template with the CSRF token; sends the CSRF cookie when it is new."""
        token, new = self.cookies.csrf_token(request)
        values = {"csrf_token": token, "user": None, "notice": None, "error": None, **(context or {})}
        html = self.env.get_template(name).render(values)
        response = Response(html, status_code=status, headers=headers, media_type="text/html")
        if new:
            self.cookies.set_csrf(response, token)
        return response

    async def username(self, principal: Principal) -> str:
        user = await self.service.get_user(principal.user_id)
        return user.username if user else principal.user_id

    # --- pages ------------------------------------------------------------------------------------------

    async def home(self, request: Request) -> Response:
        try:
            principal = await self.principal(request, required=False)
        except AuthError as error:
            if error.status == 503:
                raise
            principal = None
        if wants_json(request):
            return _json({"authenticated": principal is not None,
                          "user_id": principal.user_id if principal else None,
                          "links": {"login": "/auth", "private": "/private", "register": "/register"}})
        user = await self.username(principal) if principal else None
        return self.page(request, "home.html", {"user": user})

    async def auth(self, request: Request) -> Response:
        as_json = wants_json(request)
        fields = await read_input(request)
        check_csrf(request, self.cookies, fields)
        try:
            username, password = require_fields(fields, "username", "password")
        except HTTPError:
            if as_json:
                raise
            return self.page(request, "home.html", {"error": "Enter your username and password."},
                             status=400)
        try:
            pair = await self.service.login(username, password, ip=_client_ip(request),
                                            user_agent=_user_agent(request))
        except ServiceError as error:
            if as_json or isinstance(error, Throttled):
                raise
            # one neutral message whichever of the two was wrong (no account enumeration)
            message = ("Those credentials are not valid." if error.code == "invalid_credentials"
                       else str(error))
            return self.page(request, "home.html", {"error": message, "username": username},
                             status=STATUS.get(error.code, 401))
        if as_json:
            return _json(_pair_json(pair), headers={"Authorization": f"Bearer {pair.access_token}"})
        response = RedirectResponse("/private", status_code=303)
        self.cookies.set_tokens(response, pair.access_token, pair.expires_in, pair.refresh_token,
                                pair.refresh_expires_in)
        return response

    async def private(self, request: Request) -> Response:
        principal = await self.require(request)
        headers = _NO_REFERRER if "token=" in request.url.query else None
        if wants_json(request):
            body = private_body(principal.user_id, principal.session_id, principal.claims.get("exp"))
            return Response(body, headers=headers, media_type=_JSON)
        context = {"user": await self.username(principal), "claims": sorted(principal.claims.items())}
        return self.page(request, "private.html", context, headers=headers)

    async def logout(self, request: Request) -> Response:
        fields = await read_input(request)
        check_csrf(request, self.cookies, fields)
        found = self.authenticator.extract(request.scope)
        if found is not None:
            try:
                principal = await self.authenticator.verify(found[0])
            except AuthError as error:
                if error.status == 503:
                    raise
                principal = None  # already logged out, expired or bogus: logging out again is harmless
                if error.reason == "expired":
                    await self._end_expired_session(found[0])
            if principal is not None:
                await self.service.logout(principal.session_id)
        return self._signed_out(request)

    async def _end_expired_session(self, token: str) -> None:
        """Logout with an expired access token (a browser back after 15 idle minutes) still ends its session:
        the token is ours (signature, issuer, type all checked), only its ``exp`` passed, and the session it
        names is revoked only if it belongs to the token's subject. Otherwise the refresh token, which the
        browser sends to /refresh only, would outlive the logout."""
        try:
            claims = decode(token, self.service.keys.keyset, issuer=self.config.issuer,
                            audience=self.config.audience, typ="at+jwt", require=("exp", "sub", "sid"),
                            leeway=self.config.refresh_ttl, now=self.service.clock())
        except JWTError:
            return
        sub, sid = claims.get("sub"), claims.get("sid")
        if isinstance(sub, str) and isinstance(sid, str):
            await self.service.revoke_session(sub, sid)

    async def logout_all(self, request: Request) -> Response:
        fields = await read_input(request)
        check_csrf(request, self.cookies, fields)
        principal = await self.require(request)
        await self.service.logout_all(principal.user_id)
        return self._signed_out(request)

    def _signed_out(self, request: Request) -> Response:
        response: Response = Response(status_code=204) if wants_json(request) else RedirectResponse(
            "/", status_code=303)
        self.cookies.clear_tokens(response)
        # RFC 9110 §7.8 / W3C Clear-Site-Data: drop any cached copy of private pages in the browser
        response.headers["Clear-Site-Data"] = '"cache"'
        return response

    async def sessions(self, request: Request) -> Response:
        principal = await self.require(request)
        sessions = await self.service.list_sessions(principal.user_id)
        rows = [{"sid": s.sid, "created": s.created, "last_used": s.last_used, "expires": s.expires,
                 "user_agent": s.user_agent, "ip": s.ip, "current": s.sid == principal.session_id}
                for s in sessions]
        if wants_json(request):
            return _json({"sessions": rows})
        return self.page(request, "sessions.html", {"user": await self.username(principal), "sessions": rows})

    async def delete_session(self, request: Request) -> Response:
        check_csrf(request, self.cookies)
        return await self._revoke(request, as_form=False)

    async def revoke_session_form(self, request: Request) -> Response:
        fields = await read_input(request)
        check_csrf(request, self.cookies, fields)
        return await self._revoke(request, as_form=not wants_json(request))

    async def _revoke(self, request: Request, *, as_form: bool) -> Response:
        principal = await self.require(request)
        sid = request.path_params["sid"]
        if not await self.service.revoke_session(principal.user_id, sid):
            raise HTTPError("not_found", "No such active session")
        if sid == principal.session_id:
            return self._signed_out(request)
        if as_form:
            return RedirectResponse("/sessions", status_code=303)
        return Response(status_code=204)

    async def refresh(self, request: Request) -> Response:
        as_json = wants_json(request)
        fields = await read_input(request)
        check_csrf(request, self.cookies, fields)
        token = fields.get("refresh_token") or request.cookies.get(self.cookies.refresh, "")
        try:
            if not token:
                raise HTTPError("missing_field", "The field 'refresh_token' is required",
                                field="refresh_token")
            pair = await self.service.refresh(token, ip=_client_ip(request), user_agent=_user_agent(request))
        except (HTTPError, ServiceError):
            if as_json:
                raise
            # a browser without a live refresh cookie: back to the login form
            response = self.page(request, "home.html", {"error": "Your session has ended; sign in again."},
                                 status=401)
            self.cookies.clear_tokens(response)
            return response
        if as_json:
            return _json(_pair_json(pair), headers={"Authorization": f"Bearer {pair.access_token}"})
        response = RedirectResponse("/private", status_code=303)
        self.cookies.set_tokens(response, pair.access_token, pair.expires_in, pair.refresh_token,
                                pair.refresh_expires_in)
        return response

    async def register_form(self, request: Request) -> Response:
        return self.page(request, "register.html")

    async def register(self, request: Request) -> Response:
        as_json = wants_json(request)
        fields = await read_input(request)
        check_csrf(request, self.cookies, fields)
        try:
            username, password = require_fields(fields, "username", "password")
            email = fields.get("email") or None
            user = await self.service.register(username, password, email=email)
        except (HTTPError, ServiceError) as error:
            if as_json:
                raise
            status = error.status if isinstance(error, HTTPError) else STATUS.get(error.code, 400)
            return self.page(request, "register.html",
                             {"error": str(error.message if isinstance(error, HTTPError) else error),
                              "username": fields.get("username", ""), "email": fields.get("email", "")},
                             status=status)
        if user.email and not user.verified:
            try:
                await self.service.send_verification(user.id)
            except OSError as exc:  # the account exists; the link can be sent again later
                logger.warning("verification mail for user %s not sent: %s", user.id, exc)
        if as_json:
            return _json({"id": user.id, "username": user.username, "email": user.email,
                          "verified": user.verified}, status=201, headers={"Location": "/home"})
        return self.page(request, "home.html", {"notice": f"Account {user.username} created. Sign in below."},
                         status=201)

    async def verify(self, request: Request) -> Response:
        token = request.query_params.get("token", "")
        if not token:
            raise HTTPError("missing_field", "The query parameter 'token' is required", field="token",
                            headers=_NO_REFERRER)
        try:
            user = await self.service.verify_email(token)
        except ServiceError as error:
            raise HTTPError("invalid_token", "This link is not valid any more", status=400,
                            reason=getattr(error, "reason", error.code), headers=_NO_REFERRER) from None
        if wants_json(request):
            return _json({"verified": True, "username": user.username}, headers=_NO_REFERRER)
        text = f"Thank you, {user.username}: your email is confirmed."
        return self.page(request, "message.html", {"title": "Email confirmed", "text": text},
                         headers=_NO_REFERRER)

    async def forgot_form(self, request: Request) -> Response:
        return self.page(request, "forgot.html")

    async def forgot(self, request: Request) -> Response:
        fields = await read_input(request)
        check_csrf(request, self.cookies, fields)
        who = fields.get("username") or fields.get("email") or ""
        if not who:
            raise HTTPError("missing_field", "The field 'username' is required", field="username")
        # The same answer, at the same time, whether or not the account exists: the lookup and the mail run
        # after the response is sent, so neither their duration nor their failure can tell (OWASP ASVS 2.5).
        text = "If that account exists, we sent it a link to reset the password."
        response = (_json({"status": "sent", "message": text}, status=202) if wants_json(request)
                    else self.page(request, "message.html", {"title": "Check your email", "text": text},
                                   status=202))
        response.background = BackgroundTask(self._forgot_password, who)
        return response

    async def _forgot_password(self, who: str) -> None:
        try:
            await self.service.forgot_password(who)
        except (ServiceError, StoreUnavailable, OSError) as exc:
            logger.warning("password reset mail not sent: %s: %s", type(exc).__name__, exc)

    async def reset_form(self, request: Request) -> Response:
        token = request.query_params.get("token", "")
        return self.page(request, "reset.html", {"token": token}, headers=_NO_REFERRER)

    async def reset(self, request: Request) -> Response:
        as_json = wants_json(request)
        fields = await read_input(request)
        check_csrf(request, self.cookies, fields)
        token = fields.get("token") or request.query_params.get("token", "")
        try:
            if not token:
                raise HTTPError("missing_field", "The field 'token' is required", field="token")
            (password,) = require_fields(fields, "password")
            await self.service.reset_password(token, password)
        except HTTPError as error:
            if as_json:
                error.headers.update(_NO_REFERRER)
                raise
            return self.page(request, "reset.html", {"token": token, "error": error.message},
                             status=error.status, headers=_NO_REFERRER)
        except ServiceError as error:
            status = 400 if error.code in ("invalid_token", "token_expired", "session_revoked") \
                else STATUS.get(error.code, 400)
            code = "invalid_token" if status == 400 and error.code != "weak_password" else error.code
            if as_json:
                raise HTTPError(code, str(error), status=status, reason=getattr(error, "reason", None),
                                headers=_NO_REFERRER) from None
            return self.page(request, "reset.html", {"token": token, "error": str(error)}, status=status,
                             headers=_NO_REFERRER)
        if as_json:
            return _json({"status": "password_reset"}, headers=_NO_REFERRER)
        return self.page(request, "home.html", {"notice": "Your password was changed. Sign in below."},
                         headers=_NO_REFERRER)

    async def debugger(self, request: Request) -> Response:
        try:
            return self.page(request, "debugger.html", headers=_NO_REFERRER)
        except jinja2.TemplateNotFound:
            raise HTTPException(404) from None

    # --- machine endpoints ------------------------------------------------------------------------------

    async def jwks(self, request: Request) -> Response:
        return _json(self.service.jwks(), headers={"Cache-Control": "public, max-age=300"})

    async def healthz(self, request: Request) -> Response:
        try:
            await self.service.store.ping()
        except StoreUnavailable:
            return _json({"status": "unavailable", "store": "unavailable"}, status=503,
                         headers={"Retry-After": "1"})
        if not self.ready:
            # The store answers again but the service is not open yet: every other route still says 503,
            # so a load balancer must not send traffic here either.
            return _json({"status": "starting", "store": "ok"}, status=503, headers={"Retry-After": "1"})
        return _json({"status": "ok", "store": "ok"})

    async def openapi(self, request: Request) -> Response:
        return _json(openapi_document(), headers={"Cache-Control": "no-cache"})

    # --- errors -----------------------------------------------------------------------------------------

    def error_page(self, request: Request, status: int, message: str, *,
                   headers: Mapping[str, str] | None = None, login: bool = False) -> Response:
        template = "home.html" if login else "message.html"
        context: dict[str, Any] = {"error": message} if login else {"title": "Sorry", "text": message}
        return self.page(request, template, context, status=status, headers=headers)

    async def on_auth_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, AuthError)
        headers = {"Retry-After": "1"} if exc.status == 503 else {"WWW-Authenticate": www_authenticate(exc)}
        if wants_json(request):
            return _json(exc.to_json(), status=exc.status, headers=headers)
        if exc.status == 503:
            return self.error_page(request, 503, exc.description, headers=headers)
        message = ("Please sign in." if exc.code == "missing_token"
                   else "Your session has ended; sign in again.")
        response = self.error_page(request, 401, message, headers=headers, login=True)
        if exc.code == "invalid_token":
            self.cookies.clear_access(response)
        return response

    async def on_http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPError)
        if wants_json(request):
            return _json(exc.to_json(), status=exc.status, headers=exc.headers)
        return self.error_page(request, exc.status, exc.message, headers=exc.headers)

    async def on_service_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ServiceError)
        status = STATUS.get(exc.code, 400)
        headers: dict[str, str] = {}
        body = {"error": exc.code, "error_description": str(exc)}
        if isinstance(exc, Throttled):
            headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
        reason = getattr(exc, "reason", None)
        if reason and status == 401:
            body["reason"] = reason
        if status == 401:
            headers["WWW-Authenticate"] = 'Bearer error="invalid_token"' \
                if exc.code != "invalid_credentials" else "Bearer"
        if wants_json(request):
            return _json(body, status=status, headers=headers)
        return self.error_page(request, status, str(exc), headers=headers)

    async def on_store_down(self, request: Request, exc: Exception) -> Response:
        now = time.monotonic()
        if now - self._store_down_logged >= 10.0:  # one line per 10 s, not one per refused request
            self._store_down_logged = now
            logger.warning("store unavailable (answering 503): %s", exc)
        text = "The session store is unavailable; try again shortly"
        headers = {"Retry-After": "1"}
        if wants_json(request):
            return _json({"error": "store_unavailable", "error_description": text}, status=503,
                         headers=headers)
        return self.error_page(request, 503, text, headers=headers)

    async def on_starlette_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
        text = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, str(exc.detail))
        headers = dict(exc.headers or {})
        if wants_json(request):
            return _json({"error": code, "error_description": text}, status=exc.status_code, headers=headers)
        return self.error_page(request, exc.status_code, text, headers=headers)

    async def on_unexpected(self, request: Request, exc: Exception) -> Response:
        # last resort: a bug. Log it with the traceback, answer without details (OWASP error handling).
        logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return _json({"error": "internal_error", "error_description": "Internal error"}, status=500)


OPEN_RETRY = 1.0  # seconds between attempts to open the service when the store was down at startup
# what still answers before the service is open: nothing here reads the user repository
_ALWAYS_OPEN = frozenset({"/healthz", "/openapi.json", "/.well-known/jwks.json", "/debugger"})


async def _open_when_reachable(site: Site) -> None:
    while True:
        await asyncio.sleep(OPEN_RETRY)
        try:
            await site.service.open()
        except StoreUnavailable as exc:
            logger.debug("store still unavailable: %s", exc)
            continue
        site.ready = True
        logger.warning("store reachable again: service open")
        return


class NotReadyGuard:
    """Answers 503 (``store_unavailable``) while the service could not be opened yet, so that no handler
    touches an unopened user repository; health, static files and machine documents still answer."""

    def __init__(self, app: ASGIApp, *, site: Site) -> None:
        self.app = app
        self.site = site

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (self.site.ready or scope["type"] != "http" or scope["path"] in _ALWAYS_OPEN
                or scope["path"].startswith("/static/")):
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        response = await self.site.on_store_down(request, StoreUnavailable("the service is not open yet"))
        await response(scope, receive, send)


def _routes(site: Site) -> list[BaseRoute]:
    return [
        # the hot route first: the router tries routes in order
        Route("/private", site.private, methods=["GET"]),
        Route("/", site.home, methods=["GET"]),
        Route("/home", site.home, methods=["GET"]),
        Route("/auth", site.auth, methods=["POST"]),
        Route("/logout", site.logout, methods=["POST"]),
        Route("/logout/all", site.logout_all, methods=["POST"]),
        Route("/sessions", site.sessions, methods=["GET"]),
        Route("/sessions/{sid}", site.delete_session, methods=["DELETE"]),
        Route("/sessions/{sid}/revoke", site.revoke_session_form, methods=["POST"]),
        Route("/refresh", site.refresh, methods=["POST"]),
        Route("/register", site.register_form, methods=["GET"]),
        Route("/register", site.register, methods=["POST"]),
        Route("/verify", site.verify, methods=["GET"]),
        Route("/password/forgot", site.forgot_form, methods=["GET"]),
        Route("/password/forgot", site.forgot, methods=["POST"]),
        Route("/password/reset", site.reset_form, methods=["GET"]),
        Route("/password/reset", site.reset, methods=["POST"]),
        Route("/debugger", site.debugger, methods=["GET"]),
        Route("/.well-known/jwks.json", site.jwks, methods=["GET"]),
        Route("/healthz", site.healthz, methods=["GET"]),
        Route("/openapi.json", site.openapi, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]


def create_app(service: AuthService | None = None, *, settings: Settings | None = None,
               secure_cookies: bool = True, allow_query_token: bool = False) -> Starlette:
    """The jwtkit server as a Starlette app; its lifespan opens and closes the service.

    Args:
        service: an unopened :class:`AuthService`; built from ``settings`` (or ``Settings.from_env()``)
            when None.
        settings: used only when ``service`` is None.
        secure_cookies: ``Secure`` cookies with ``__Host-``/``__Secure-`` names (default). False only for
            plain-http localhost.
        allow_query_token: accept ``GET /private?token=<jwt>`` (RFC 6750 §2.3; off by default because URLs
            are logged).

    Example:
        >>> from jwtkit.web import create_app
        >>> app = create_app(settings=Settings(store_url="memory://", secret=b"s" * 32))  # doctest: +SKIP
    """
    if service is None:
        service = build_service(settings if settings is not None else Settings.from_env())
    elif settings is not None:
        raise TypeError("pass either service or settings, not both")
    site = Site(service, secure_cookies=secure_cookies, allow_query_token=allow_query_token)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        opener: asyncio.Task[None] | None = None
        try:
            await service.open()
        except StoreUnavailable as exc:
            site.ready = False
            # Start anyway and keep trying: requests answer 503 (fail closed) until the store is reachable.
            logger.warning("store unavailable at startup, retrying every %.0f s: %s", OPEN_RETRY, exc)
            opener = asyncio.create_task(_open_when_reachable(site), name="jwtkit open service")
        try:
            yield
        finally:
            if opener is not None:
                opener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await opener
            await service.close()

    app = JwtkitApp(
        routes=_routes(site),
        middleware=[Middleware(EdgeMiddleware), Middleware(NotReadyGuard, site=site)],
        exception_handlers={
            AuthError: site.on_auth_error,
            HTTPError: site.on_http_error,
            ServiceError: site.on_service_error,
            StoreUnavailable: site.on_store_down,
            HTTPException: site.on_starlette_error,
            Exception: site.on_unexpected,
        },
        lifespan=lifespan,
    )
    app.site = site
    app.state.site = site
    app.state.service = service
    return app


def settings_to_env(settings: Settings, *, secure_cookies: bool, allow_query_token: bool) -> dict[str, str]:
    """The environment variables that let :func:`app_from_env` rebuild the same app in a worker process."""
    values: dict[str, Any] = {}
    for name in settings.__dataclass_fields__:
        value = getattr(settings, name)
        if name == "config":
            value = {key: getattr(value, key) for key in value.__dataclass_fields__}
        elif isinstance(value, bytes):
            value = {"hex": value.hex()}
        values[name] = value
    return {ENV_SETTINGS: json.dumps(values, default=str),
            ENV_OPTIONS: json.dumps({"secure_cookies": secure_cookies,
                                     "allow_query_token": allow_query_token})}


def settings_from_env(environ: Mapping[str, str]) -> tuple[Settings, dict[str, bool]]:
    values = json.loads(environ[ENV_SETTINGS])
    values["config"] = AuthConfig(**values["config"])
    for name, value in values.items():
        if isinstance(value, dict) and set(value) == {"hex"}:
            values[name] = bytes.fromhex(value["hex"])
    options = json.loads(environ.get(ENV_OPTIONS, "{}"))
    return Settings(**values), {key: bool(options[key]) for key in ("secure_cookies", "allow_query_token")
                                if key in options}


def app_from_env() -> Starlette:
    """The app factory for ``uvicorn --factory jwtkit.web.app:app_from_env`` (one per worker process)."""
    if ENV_SETTINGS in os.environ:
        settings, options = settings_from_env(os.environ)
        app = create_app(settings=settings, secure_cookies=options.get("secure_cookies", True),
                         allow_query_token=options.get("allow_query_token", False))
    else:
        app = create_app(settings=Settings.from_env())
    # The app and its modules live as long as the worker: keep them out of the collector's generations so
    # that full collections stay short under load (measured: p99 at 32 connections fell about threefold).
    gc.freeze()
    return app

