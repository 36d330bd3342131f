"""The FastAPI side of jwtkit: the security scheme behind the dependencies, a ready auth router, and API docs
that work offline. This module imports FastAPI; ``jwtkit.web`` loads it on first use only.

- :func:`auth_router`: ``POST /token`` (OAuth2's password grant, the form ``OAuth2PasswordRequestForm``
  sends, RFC 6749 §4.3), ``POST /refresh``, ``POST /logout``, ``POST /logout/all``, ``GET /sessions`` and
  ``DELETE /sessions/{sid}``, over an :class:`~jwtkit.service.AuthService`. Every refusal is the one error
  body with its status from the one table (``throttled`` 429 with ``Retry-After``, ``invalid_credentials``
  401, ``refresh_reused`` 401, ``store_unavailable`` 503, ...), whatever exception handlers the app has.
- :func:`offline_docs`: ``/docs`` (Swagger UI) and ``/redoc`` from assets installed with the
  ``fastapi-offline`` package instead of a CDN, so the docs work on a machine without internet access.
"""

import inspect
from collections.abc import Callable, Coroutine, Sequence
from importlib import resources
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Security
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.openapi.models import OAuth2 as OAuth2Model
from fastapi.openapi.models import OAuthFlowPassword, OAuthFlows
from fastapi.routing import APIRoute
from fastapi.security.base import SecurityBase
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.requests import HTTPConnection, Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from jwtkit import JWTError, decode_unverified
from jwtkit.service._access import Principal
from jwtkit.service._errors import ServiceConfigError, ServiceError
from jwtkit.store._base import StoreUnavailable
from jwtkit.web._cookies import CookiePolicy, check_csrf
from jwtkit.web._dependencies import DEFAULT_SCHEME, BearerScheme, Dependency, problem_of_refusal
from jwtkit.web._errors import AuthError, HTTPError, Problem, json_response, problem_of
from jwtkit.web._extract import sent_dpop_request
from jwtkit.web._http import json_ok, read_input, require_fields

if TYPE_CHECKING:
    from jwtkit.service._auth import AuthService, TokenPair

__all__ = ["auth_router", "dependency_signature", "offline_docs", "security_scheme"]

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}  # RFC 6749 §5.1: token answers
_MAX_USER_AGENT = 512


# --- the security scheme -----------------------------------------------------------------------------------


class _DeclaredScheme(SecurityBase):
    """A FastAPI security scheme that only declares: the OpenAPI model (``/docs``' Authorize button, the
    routes' locks). It reads no header and verifies nothing; the middleware decided already."""

    def __init__(self, model: OAuth2Model | HTTPBearerModel, name: str) -> None:
        self.model = model
        self.scheme_name = name

    async def __call__(self, conn: HTTPConnection) -> None:
        return None


def security_scheme(scheme: BearerScheme) -> SecurityBase:
    """The FastAPI security scheme of a :class:`BearerScheme` (OAuth2 password flow, or HTTP bearer)."""
    model: OAuth2Model | HTTPBearerModel
    if scheme.token_url is None:
        model = HTTPBearerModel(bearerFormat="JWT", description=scheme.description)
    else:
        flow = OAuthFlowPassword(tokenUrl=scheme.token_url, scopes=dict(scheme.scopes))
        model = OAuth2Model(flows=OAuthFlows(password=flow), description=scheme.description)
    return _DeclaredScheme(model, scheme.name)


def dependency_signature(dependency: Dependency) -> inspect.Signature:
    """The signature FastAPI reads from a dependency: the connection (HTTP or WebSocket), and the security
    scheme as a sub-dependency, with the route's scopes when the scheme is OAuth2's (the OpenAPI security
    requirement lists scopes for OAuth2 schemes only)."""
    scheme = dependency.scheme
    scopes = list(dependency.scopes) if scheme.token_url is not None else []
    return inspect.Signature([
        inspect.Parameter("conn", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=HTTPConnection),
        inspect.Parameter("token", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                          default=Security(scheme.security, scopes=scopes)),
    ])


# --- the router --------------------------------------------------------------------------------------------


class ErrorBody(BaseModel):
    """The one error body."""

    error: str
    error_description: str
    reason: str | None = None
    field: str | None = None


class TokenAnswer(BaseModel):
    """A token answer (RFC 6749 §5.1)."""

    access_token: str
    token_type: str = "bearer"
    expires_in: int
    refresh_token: str
    scope: str | None = None


class SessionInfo(BaseModel):
    """One active session: its device (User-Agent) and IP at login, times as POSIX seconds."""

    sid: str
    created: float
    last_used: float
    expires: float
    user_agent: str
    ip: str
    current: bool


class SessionList(BaseModel):
    """The caller's active sessions, newest first; ``current`` marks the one asking."""

    sessions: list[SessionInfo]


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorBody} for status in statuses}


_TOKEN_FORM = {
    "type": "object",
    "required": ["username", "password"],
    "properties": {
        "grant_type": {"type": "string", "enum": ["password"], "description": "RFC 6749 §4.3.2"},
        "username": {"type": "string"},
        "password": {"type": "string", "format": "password"},
        "scope": {"type": "string", "description": "space-separated scopes"},
    },
}
_REFRESH_BODY = {
    "type": "object",
    "required": ["refresh_token"],
    "properties": {"refresh_token": {"type": "string"}},
}


def _body(schema: dict[str, Any], *media_types: str) -> dict[str, Any]:
    return {"requestBody": {"required": True,
                            "content": {media_type: {"schema": schema} for media_type in media_types}}}


# What the router's routes answer with the one error body; a ServiceConfigError (a claims hook returned
# what it must not) is the app's bug, left to the server's 500.
_ANSWERED = (AuthError, HTTPError, ServiceError, StoreUnavailable)


def _error_response(error: Exception) -> Response:
    problem: Problem = problem_of_refusal(error) if isinstance(error, AuthError) else problem_of(error)
    return json_response(problem, extra_headers=_NO_STORE)


class _Route(APIRoute):
    """The router's routes answer every refusal themselves (a dependency's included), with the one error
    body, so that they do not depend on the app's exception handlers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except _ANSWERED as error:
                if isinstance(error, ServiceConfigError):
                    raise
                return _error_response(error)

        return answer


def _client(request: Request) -> tuple[str, str]:
    ip = request.client.host if request.client else ""
    return ip, request.headers.get("user-agent", "")[:_MAX_USER_AGENT]


def _granted_scope(access_token: str, requested: str) -> str | None:
    """The ``scope`` of a token answer: the token's own (it is ours, just signed), or "" when a scope was
    asked for and none granted (RFC 6749 §5.1: required when it differs from the request)."""
    try:
        _, claims = decode_unverified(access_token)
    except JWTError:  # never: the service just signed it
        return None
    scope = claims.get("scope")
    if isinstance(scope, str):
        return scope
    return "" if requested.strip() else None


class _AuthRoutes:
    def __init__(self, service: "AuthService", cookies: CookiePolicy | None) -> None:
        self.service = service
        self.cookies = cookies

    def _tokens(self, pair: "TokenPair", requested: str = "") -> Response:
        token_type = "DPoP" if pair.token_type == "DPoP" else "bearer"  # RFC 9449 §5; RFC 6749's spelling
        body: dict[str, Any] = {"access_token": pair.access_token, "token_type": token_type,
                                "expires_in": pair.expires_in, "refresh_token": pair.refresh_token}
        scope = _granted_scope(pair.access_token, requested)
        if scope is not None:
            body["scope"] = scope
        if pair.device_token:
            body["device_token"] = pair.device_token  # send it back as a field at the next login
        nonce = self.service.dpop.nonce()
        response = json_ok(body, headers=_NO_STORE if nonce is None else {**_NO_STORE, "DPoP-Nonce": nonce})
        if self.cookies is not None:
            self.cookies.set_tokens(response, pair.access_token, pair.expires_in, pair.refresh_token,
                                    pair.refresh_expires_in)
            self.cookies.set_device(response, pair.device_token, self.service.config.device_ttl)
        return response

    def _signed_out(self) -> Response:
        response = Response(status_code=204)
        if self.cookies is not None:
            self.cookies.clear_tokens(response)
        return response

    async def _fields(self, request: Request) -> dict[str, str]:
        fields = await read_input(request)
        if self.cookies is not None:
            check_csrf(request, self.cookies, fields)
        return fields

    async def token(self, request: Request) -> Response:
        fields = await self._fields(request)
        grant_type = fields.get("grant_type", "")
        if grant_type and grant_type != "password":
            raise HTTPError("bad_request", "This endpoint takes grant_type=password only", field="grant_type")
        username, password = require_fields(fields, "username", "password")
        ip, user_agent = _client(request)
        device = fields.get("device_token", "")
        if not device and self.cookies is not None:
            device = request.cookies.get(self.cookies.device, "")
        pair = await self.service.login(username, password, ip=ip, user_agent=user_agent, device=device,
                                        dpop=sent_dpop_request(request.scope))
        return self._tokens(pair, fields.get("scope", ""))

    async def refresh(self, request: Request) -> Response:
        fields = await self._fields(request)
        token = fields.get("refresh_token", "")
        if not token and self.cookies is not None:
            token = self.cookies.refresh_token(request.cookies)
        if not token:
            raise HTTPError("missing_field", "The field 'refresh_token' is required", field="refresh_token")
        ip, user_agent = _client(request)
        return self._tokens(await self.service.refresh(token, ip=ip, user_agent=user_agent,
                                                       dpop=sent_dpop_request(request.scope)))

    async def logout(self, request: Request, principal: Principal | None) -> Response:
        if self.cookies is not None:
            check_csrf(request, self.cookies)
        if principal is not None:
            await self.service.logout(principal.session_id)
            return self._signed_out()
        state = request.scope["state"]
        error: AuthError | None = state.get("auth_error")
        if error is not None and error.status == 503:
            raise error
        if error is not None and error.reason == "expired" and state.get("auth_token"):
            # an expired access token still ends its own session (its refresh token would outlive the
            # logout otherwise); the service checks the token is ours, only its exp passed
            await self.service.end_expired_session(state["auth_token"], dpop=sent_dpop_request(request.scope))
        return self._signed_out()  # no token or a dead one: logging out again is harmless

    async def logout_all(self, request: Request, principal: Principal) -> Response:
        if self.cookies is not None:
            check_csrf(request, self.cookies)
        await self.service.logout_all(principal.user_id)
        return self._signed_out()

    async def sessions(self, principal: Principal) -> Response:
        rows = [{"sid": s.sid, "created": s.created, "last_used": s.last_used, "expires": s.expires,
                 "user_agent": s.user_agent, "ip": s.ip, "current": s.sid == principal.session_id}
                for s in await self.service.list_sessions(principal.user_id)]
        return json_ok({"sessions": rows}, headers={"Cache-Control": "no-store"})

    async def revoke(self, request: Request, sid: str, principal: Principal) -> Response:
        if self.cookies is not None:
            check_csrf(request, self.cookies)
        if not await self.service.revoke_session(principal.user_id, sid):
            raise HTTPError("not_found", "No such active session")
        if sid == principal.session_id:
            return self._signed_out()
        return Response(status_code=204)


def auth_router(service: "AuthService", *, scheme: BearerScheme | None = None,
                cookies: CookiePolicy | None = None, tags: Sequence[str] = ("auth",)) -> APIRouter:
    """An ``APIRouter`` with the auth endpoints over ``service``; mount it with one line::

        app.include_router(auth_router(service), prefix="/auth")

    ``POST /token`` takes OAuth2's password grant as ``OAuth2PasswordRequestForm`` sends it (form fields
    ``username``, ``password``, ``grant_type=password`` optional, ``scope``; JSON is accepted too) and
    answers ``{"access_token", "token_type": "bearer", "expires_in", "refresh_token"}`` (and ``scope`` when
    the token has one, or one was asked for), ``Cache-Control: no-store``. ``POST /refresh`` takes
    ``{"refresh_token"}`` and answers the same. ``POST /logout`` ends the caller's session (204, also for no
    token or a dead one), ``POST /logout/all`` every session of the caller, ``GET /sessions`` lists them,
    ``DELETE /sessions/{sid}`` ends one. The client's IP and User-Agent go to the service.

    Every refusal is the one error body, its status from the one table. Run the middleware in
    ``AuthMode.TRY`` (the dependencies decide per route), or exclude ``/token`` and ``/refresh``.

    Args:
        service: the :class:`~jwtkit.service.AuthService` (opened by the app's lifespan).
        scheme: the :class:`~jwtkit.web.BearerScheme` of the protected routes (default: the one the
            module-level dependencies use, whose ``token_url`` is ``/auth/token``); mounted under another
            prefix, give one whose ``token_url`` is that prefix plus ``/token``.
        cookies: also set and clear the browser's token cookies (and read the refresh cookie) with this
            :class:`~jwtkit.web.CookiePolicy`; unsafe requests then pass the CSRF rule. Default: bearer
            tokens only, no cookies.
        tags: OpenAPI tags of the routes.
    """
    scheme = scheme if scheme is not None else DEFAULT_SCHEME
    routes = _AuthRoutes(service, cookies)
    router = APIRouter(route_class=_Route, tags=list(tags))
    required = Depends(scheme.require_principal)
    optional = Depends(scheme.optional_principal)

    async def token(request: Request) -> Response:
        return await routes.token(request)

    async def refresh(request: Request) -> Response:
        return await routes.refresh(request)

    async def logout(request: Request, principal: Annotated[Principal | None, optional]) -> Response:
        return await routes.logout(request, principal)

    async def logout_all(request: Request, principal: Annotated[Principal, required]) -> Response:
        return await routes.logout_all(request, principal)

    async def sessions(principal: Annotated[Principal, required]) -> Response:
        return await routes.sessions(principal)

    async def revoke_session(request: Request, sid: str,
                             principal: Annotated[Principal, required]) -> Response:
        return await routes.revoke(request, sid, principal)

    form = ("application/x-www-form-urlencoded", "application/json")
    router.add_api_route(
        "/token", token, methods=["POST"], summary="Sign in (OAuth2 password grant)",
        response_model=None, responses={200: {"model": TokenAnswer}, **_errors(400, 401, 403, 429, 503)},
        openapi_extra=_body(_TOKEN_FORM, *form))
    router.add_api_route(
        "/refresh", refresh, methods=["POST"], summary="New tokens for a refresh token (rotated)",
        response_model=None, responses={200: {"model": TokenAnswer}, **_errors(400, 401, 403, 503)},
        openapi_extra=_body(_REFRESH_BODY, *reversed(form)))
    router.add_api_route(
        "/logout", logout, methods=["POST"], status_code=204, summary="End this session",
        response_model=None, responses=_errors(401, 503))
    router.add_api_route(
        "/logout/all", logout_all, methods=["POST"], status_code=204, summary="End every session",
        response_model=None, responses=_errors(401, 503))
    router.add_api_route(
        "/sessions", sessions, methods=["GET"], summary="The caller's active sessions",
        response_model=None, responses={200: {"model": SessionList}, **_errors(401, 503)})
    router.add_api_route(
        "/sessions/{sid}", revoke_session, methods=["DELETE"], status_code=204, summary="End one session",
        response_model=None, responses=_errors(401, 404, 503))
    return router


# --- offline docs ------------------------------------------------------------------------------------------

_ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")


def _assets_directory() -> str:
    try:
        directory = resources.files("fastapi_offline") / "static"
    except ModuleNotFoundError:
        raise RuntimeError("offline_docs needs the fastapi-offline package (pip install 'jwtkit[fastapi]')"
                           ) from None
    missing = [name for name in _ASSETS if not (directory / name).is_file()]
    if missing:
        raise RuntimeError(f"fastapi-offline's assets are missing: {', '.join(missing)}")
    return str(directory)


def offline_docs(app: FastAPI, *, assets_url: str = "/docs-assets") -> None:
    """Serve the app's ``/docs`` (Swagger UI) and ``/redoc`` from the assets the ``fastapi-offline`` package
    installs, instead of FastAPI's default CDN, so the docs work offline. The pages stay at the app's
    ``docs_url`` and ``redoc_url`` (``FastAPI(docs_url=...)`` as usual; None leaves one out), with its
    ``swagger_ui_parameters``, ``swagger_ui_init_oauth`` and OAuth2 redirect page; Swagger UI's online
    validator is off. Call it once, after ``FastAPI(...)``.

    Raises:
        ValueError: the app serves no OpenAPI document, or no docs page; RuntimeError: fastapi-offline is
            not installed.
    """
    if not app.openapi_url or not (app.docs_url or app.redoc_url):
        raise ValueError("the app has no OpenAPI document or docs page (openapi_url, docs_url, redoc_url)")
    if not assets_url.startswith("/") or assets_url.endswith("/"):
        raise ValueError("assets_url must start with '/' and not end with one")
    directory = _assets_directory()
    pages = {app.docs_url, app.redoc_url} - {None}
    app.router.routes[:] = [route for route in app.router.routes if not _is_page(route, pages)]
    openapi_url = app.openapi_url
    title = app.title

    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        redirect = app.swagger_ui_oauth2_redirect_url
        return get_swagger_ui_html(
            openapi_url=root + openapi_url, title=f"{title} - Swagger UI",
            swagger_js_url=f"{root}{assets_url}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{assets_url}/swagger-ui.css",
            swagger_favicon_url=f"{root}{assets_url}/favicon.png",
            oauth2_redirect_url=root + redirect if redirect else None,
            init_oauth=app.swagger_ui_init_oauth,
            swagger_ui_parameters={"validatorUrl": None, **(app.swagger_ui_parameters or {})})

    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_redoc_html(
            openapi_url=root + openapi_url, title=f"{title} - ReDoc",
            redoc_js_url=f"{root}{assets_url}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{assets_url}/favicon.png", with_google_fonts=False)

    app.mount(assets_url, StaticFiles(directory=directory), name="jwtkit-docs-assets")
    if app.docs_url:
        app.add_route(app.docs_url, swagger_ui, include_in_schema=False)
    if app.redoc_url:
        app.add_route(app.redoc_url, redoc, include_in_schema=False)


def _is_page(route: BaseRoute, pages: set[str | None]) -> bool:
    return isinstance(route, Route) and not isinstance(route, APIRoute) and route.path in pages
