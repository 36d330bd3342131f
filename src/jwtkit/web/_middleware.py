"""JWT authentication for any ASGI app: one pure-ASGI middleware over the one access policy.

:class:`JWTAuthMiddleware` finds the token (:mod:`._extract`), asks the :class:`~jwtkit.service.AccessPolicy`
(decode, session, account, agent, the app's hook) and puts the outcome on the scope for handlers and the
FastAPI dependencies. jwtkit's own server runs the very same middleware. Three outcomes stay distinct
(RFC 6750 §3.1): no token (``missing_token``), a refused token (``invalid_token`` with the policy's
reason, or ``csrf_failed``), and a :class:`~jwtkit.service.Principal`.

Safe by default:

- built from a service (``service=``), it uses the service's policy: ``typ: at+jwt``, the service's issuer,
  audience and leeway, the session, the account and agent binding;
- built from bare keys, it refuses jwtkit's refresh and single-use token types;
- tokens are read from the ``Authorization`` header only, unless the app lists ``TokenLocation.COOKIE``;
  a token taken from a cookie on an unsafe method must pass the server's CSRF rule (same-origin ``Origin``
  or the ``X-CSRF-Token`` double submit, see :func:`._extract.csrf_refused`);
- silent refresh (``silent_refresh=CookiePolicy(...)``, with a service): a browser request that has no live
  access cookie but a refresh cookie is refreshed on that request, through the service's rotation (reuse
  detection included; two tabs at once rotate once), and answered with the new cookies. A refused refresh
  clears the token cookies. Unsafe methods must pass the CSRF rule first.

Example:
    from starlette.applications import Starlette
    from jwtkit.web import JWTAuthMiddleware

    app = Starlette()
    app.add_middleware(JWTAuthMiddleware, service=service)   # the service's own policy
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from jwtkit import Key, KeySet
from jwtkit.service._access import AccessPolicy, KeyProvider, Principal, Validator
from jwtkit.service._errors import InvalidToken, ServiceError
from jwtkit.store._base import Store, StoreUnavailable
from jwtkit.web._cookies import CookiePolicy
from jwtkit.web._errors import AuthError, json_response, problem_of
from jwtkit.web._extract import Extractor, Found, TokenLocation, cookie_value, csrf_refused, dpop_request

if TYPE_CHECKING:
    from jwtkit.service._auth import AuthService, TokenPair

__all__ = [
    "AuthMode",
    "ErrorHandler",
    "JWTAuthMiddleware",
    "authenticate_found",
    "authenticate_scope",
    "default_on_error",
]

ErrorHandler = Callable[[HTTPConnection, AuthError], "Response | Awaitable[Response]"]


class AuthMode(enum.Enum):
    """What the middleware does when a request is not authenticated."""

    REQUIRED = "required"  # no token or a bad token: the error response
    OPTIONAL = "optional"  # no token: principal None; a bad token: the error response
    TRY = "try"  # never rejects: principal None, the error kept in state.auth_error


def default_on_error(conn: HTTPConnection, error: AuthError) -> Response:
    """The default error response: the one JSON error body, 401 with ``WWW-Authenticate: Bearer``
    (RFC 6750 §3), 403 for CSRF, 503 with ``Retry-After``."""
    return json_response(problem_of(error), extra_headers={"Cache-Control": "no-store"})


def _user_agent(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"user-agent":
            return str(value[:512].decode("latin-1"))
    return ""


async def authenticate_found(policy: AccessPolicy, token: str, scope: Scope, *, dpop: bool = False
                             ) -> tuple[Principal | None, AuthError | None]:
    """Ask the policy about one token (``dpop``: it came as ``Authorization: DPoP``, so the request's proof
    goes with it): the principal, or the refusal as an :class:`AuthError`."""
    try:
        user_agent = _user_agent(scope) if policy.bind_user_agent else None
        request = dpop_request(scope) if dpop else None
        principal = await policy.authenticate(token, user_agent=user_agent, dpop=request)
        if request is not None:
            scope.setdefault("state", {})["dpop_spent"] = request.proofs  # see DPoPRequest.spent
        return principal, None
    except InvalidToken as error:
        return None, AuthError.from_invalid_token(error, dpop=dpop, algs=policy.dpop.algs)
    except StoreUnavailable:
        return None, AuthError("store_unavailable")


async def authenticate_scope(policy: AccessPolicy, extractor: Extractor, scope: Scope,
                             csrf_cookie: bytes | None, ambient_cookies: tuple[bytes, ...]
                             ) -> tuple[Principal | None, AuthError | None, Found | None]:
    """The one authentication step of a request: the principal, or the error, and where the token was. A
    cookie token on an unsafe method that fails the CSRF rule is not verified at all (``csrf_failed``)."""
    found = extractor.find(scope)
    if found is None:
        return None, None, None
    if found.location is TokenLocation.COOKIE and csrf_refused(
            scope, ambient_cookies=ambient_cookies, csrf_cookie=csrf_cookie):
        return None, AuthError("csrf_failed"), found
    principal, error = await authenticate_found(policy, found.token, scope, dpop=found.dpop)
    return principal, error, found


class JWTAuthMiddleware:
    """Pure ASGI middleware that authenticates every HTTP and WebSocket request with a JWT.

    The verified :class:`~jwtkit.service.Principal` (or None) is put on ``scope["state"]["principal"]``
    (``request.state.principal`` in Starlette and FastAPI), the error (or None) on ``auth_error``, where
    the token came from on ``auth_location`` and the token itself on ``auth_token``. Errors go through one
    ``on_error(conn, error) -> Response`` hook (sync or async), by default :func:`default_on_error`.

    Give exactly one of ``service``, ``policy`` or ``keys``.

    Args:
        app: the wrapped ASGI app.
        service: a :class:`~jwtkit.service.AuthService`: its policy is used (with ``validate`` added).
        policy: an :class:`~jwtkit.service.AccessPolicy` built by the app.
        keys: bare keys, or a :class:`~jwtkit.service.KeyProvider` (keys that change: a key ring file,
            another issuer's JWKS): a policy is built from them and ``typ``, ``issuer``, ``audience``,
            ``leeway``, ``require``, ``store``, ``validate`` and ``clock``.
        locations: where to look for the token, in order (default: the ``Authorization`` header only).
        cookie_name: the cookie holding the access token, when ``TokenLocation.COOKIE`` is listed.
        csrf_cookie: the double-submit cookie whose value unsafe cookie-authenticated requests must echo in
            ``X-CSRF-Token``; without one, they need a same-origin ``Origin``.
        query_param: the query parameter holding the token, when ``TokenLocation.QUERY`` is listed.
        silent_refresh: the browser's cookie names and flags: with ``service=`` and
            ``TokenLocation.COOKIE``, a request without a live access cookie is refreshed from the refresh
            cookie (see the module docstring). Its ``access`` and ``csrf`` names are then the access and
            CSRF cookies (``csrf_cookie`` may still name another).
        mode: :class:`AuthMode` (default ``REQUIRED``).
        on_error: the error hook.
        exclude_paths: paths that skip authentication (health checks, login); an entry ending in ``/``
            matches every path under it.

    Raises:
        TypeError, ValueError: on a wrong configuration, here and never per request.

    Example:
        app.add_middleware(JWTAuthMiddleware, service=service, mode=AuthMode.OPTIONAL)
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        service: AuthService | None = None,
        policy: AccessPolicy | None = None,
        keys: Key | KeySet | KeyProvider | None = None,
        typ: str | None = None,
        issuer: str | None = None,
        audience: str | None = None,
        leeway: float = 0,
        require: Sequence[str] = ("exp",),
        store: Store | None = None,
        validate: Validator | None = None,
        clock: Callable[[], float] | None = None,
        locations: Sequence[TokenLocation] = (TokenLocation.HEADER,),
        cookie_name: str = "access_token",
        csrf_cookie: str | None = None,
        query_param: str = "access_token",
        silent_refresh: CookiePolicy | None = None,
        mode: AuthMode = AuthMode.REQUIRED,
        on_error: ErrorHandler | None = None,
        exclude_paths: Sequence[str] = (),
    ) -> None:
        if sum(source is not None for source in (service, policy, keys)) != 1:
            raise TypeError("give exactly one of service=, policy= or keys=")
        policy_options = {"typ": typ, "issuer": issuer, "audience": audience, "leeway": leeway,
                          "require": tuple(require), "store": store, "clock": clock}
        if keys is None and policy_options != {"typ": None, "issuer": None, "audience": None, "leeway": 0,
                                               "require": ("exp",), "store": None, "clock": None}:
            raise TypeError("typ, issuer, audience, leeway, require, store and clock go with keys=; a "
                            "service or a policy carries its own")
        if not isinstance(mode, AuthMode):
            raise TypeError("mode must be an AuthMode")
        if on_error is not None and not callable(on_error):
            raise TypeError("on_error must be callable")
        if service is not None:
            policy = service.access if validate is None else service.access_policy(validate=validate)
        elif policy is not None:
            if not isinstance(policy, AccessPolicy):
                raise TypeError("policy must be an AccessPolicy")
            if validate is not None:
                raise TypeError("validate goes with keys= or service=; a policy carries its own")
        elif keys is not None:
            policy = AccessPolicy(keys=keys, typ=typ, issuer=issuer, audience=audience, leeway=leeway,
                                  require=require, store=store, validate=validate, clock=clock)
        if policy is None:  # unreachable: exactly one source was given
            raise TypeError("give exactly one of service=, policy= or keys=")
        if silent_refresh is not None:
            if service is None:
                raise TypeError("silent_refresh needs service=: refreshing is the service's rotation")
            if TokenLocation.COOKIE not in locations:
                raise ValueError("silent_refresh needs TokenLocation.COOKIE in locations")
            if not isinstance(silent_refresh, CookiePolicy):
                raise TypeError("silent_refresh must be a CookiePolicy")
            cookie_name = silent_refresh.access
            csrf_cookie = csrf_cookie or silent_refresh.csrf
        self.app = app
        self.policy = policy
        self.extractor = Extractor(locations, cookie_name=cookie_name, query_param=query_param)
        self._csrf_cookie = csrf_cookie.encode("latin-1") if csrf_cookie else None
        self._ambient: tuple[bytes, ...] = (cookie_name.encode("latin-1"),)
        self._service = service
        self._refresher: _SilentRefresh | None = None
        if silent_refresh is not None and service is not None:
            self._refresher = _SilentRefresh(service, silent_refresh)
            self._ambient = silent_refresh.ambient
        self.on_error: ErrorHandler = on_error or default_on_error
        self.mode = mode
        paths = tuple(exclude_paths)
        self._exclude_exact = frozenset(p for p in paths if not p.endswith("/"))
        self._exclude_prefixes = tuple(p for p in paths if p.endswith("/"))

    def __repr__(self) -> str:
        names = ", ".join(loc.value for loc in self.extractor.locations)
        return f"JWTAuthMiddleware({self.policy!r}, locations=({names}), mode={self.mode.value})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        state: dict[str, Any] = scope.setdefault("state", {})
        if path in self._exclude_exact or (
                self._exclude_prefixes and path.startswith(self._exclude_prefixes)):
            state["principal"] = state["auth_error"] = state["auth_location"] = state["auth_token"] = None
            await self.app(scope, receive, send)
            return
        principal, error, found = await authenticate_scope(self.policy, self.extractor, scope,
                                                           self._csrf_cookie, self._ambient)
        if (principal is None and self._refresher is not None and scope["type"] == "http"
                and (found is None or (found.location is TokenLocation.COOKIE and error is not None
                                       and error.reason == "expired"))):
            refreshed = await self._refresher(scope, self._csrf_cookie, self._ambient)
            if refreshed is not None:
                send = refreshed.sending(send)
                if refreshed.found is not None:
                    principal, error, found = refreshed.principal, refreshed.error, refreshed.found
                    state["refreshed"] = refreshed.pair
                elif refreshed.error is not None:
                    error = refreshed.error
        if principal is None and error is None and self.mode is AuthMode.REQUIRED:
            error = AuthError("missing_token")
        state["principal"] = principal
        state["auth_error"] = error
        state["auth_location"] = None if found is None else found.location
        state["auth_token"] = None if found is None else found.token
        if error is not None and self.mode is not AuthMode.TRY:
            await self._reject(scope, receive, send, error)
            return
        if principal is not None and self._service is not None:
            await self._service.note_use(principal)  # the sessions page's "last used"
        await self.app(scope, receive, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send, error: AuthError) -> None:
        if scope["type"] == "websocket":
            # RFC 6455 §7.4.2: 1008 policy violation; the handshake is refused before it is accepted
            await send({"type": "websocket.close", "code": 1008, "reason": error.code})
            return
        response = self.on_error(HTTPConnection(scope, receive), error)
        if inspect.isawaitable(response):
            response = await response
        await response(scope, receive, send)


class _Refreshed:
    """What a silent refresh did: the new pair and its principal, or the refusal; and the cookies to send."""

    __slots__ = ("cookies", "error", "found", "pair", "principal")

    def __init__(self, cookies: list[str], *, pair: TokenPair | None = None,
                 principal: Principal | None = None, error: AuthError | None = None,
                 found: Found | None = None) -> None:
        self.cookies = [(b"set-cookie", value.encode("latin-1")) for value in cookies]
        self.pair = pair
        self.principal = principal
        self.error = error
        self.found = found

    def sending(self, send: Send) -> Send:
        """``send`` with the cookies added to the response's headers, except those the app set itself (a
        logout clearing them): the app's word on a cookie is the last."""
        cookies = self.cookies

        async def send_with_cookies(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                own = {value.partition(b"=")[0] for name, value in headers if name.lower() == b"set-cookie"}
                added = [cookie for cookie in cookies if cookie[1].partition(b"=")[0] not in own]
                message = {**message, "headers": [*added, *headers]}
            await send(message)

        return send_with_cookies


class _SilentRefresh:
    """The refresh step of a browser request without a live access cookie (see the module docstring)."""

    def __init__(self, service: AuthService, cookies: CookiePolicy) -> None:
        self.service = service
        self.cookies = cookies
        self._names = (cookies.refresh.encode("latin-1"), cookies.legacy_refresh.encode("latin-1"))

    def _token(self, scope: Scope) -> str | None:
        header = b"; ".join(value for name, value in scope["headers"] if name == b"cookie")
        if not header:
            return None
        for name in self._names:
            token = cookie_value(header, name)
            if token:
                return token
        return None

    async def __call__(self, scope: Scope, csrf_cookie: bytes | None, ambient: tuple[bytes, ...]
                       ) -> _Refreshed | None:
        token = self._token(scope)
        if token is None or csrf_refused(scope, ambient_cookies=ambient, csrf_cookie=csrf_cookie):
            return None
        client = scope.get("client")
        try:
            pair = await self.service.refresh(token, ip=client[0] if client else "",
                                              user_agent=_user_agent(scope))
        except StoreUnavailable:
            return _Refreshed([], error=AuthError("store_unavailable"))
        except ServiceError:
            # spent, revoked, expired or forged: the browser forgets it, and the request goes on without it
            return _Refreshed(self.cookies.cleared_cookies())
        cookies = self.cookies.token_cookies(pair.access_token, pair.expires_in, pair.refresh_token,
                                             pair.refresh_expires_in)
        principal, error = await authenticate_found(self.service.access, pair.access_token, scope)
        return _Refreshed(cookies, pair=pair, principal=principal, error=error,
                          found=Found(pair.access_token, TokenLocation.COOKIE))
