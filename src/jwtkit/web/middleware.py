"""JWT authentication for any ASGI app: token extraction, verification, revocation check, and the middleware.

:class:`Authenticator` does the work in three steps (find the token, verify it, check its session) and is
shared by :class:`JWTAuthMiddleware` (for users' Starlette/FastAPI apps) and jwtkit's own server. All
configuration is checked and precomputed in ``__init__``, as Starlette's CORS middleware does; the per-request
path only reads headers, calls :func:`jwtkit.decode` once and the store once.

Three outcomes stay distinct (RFC 6750 §3.1): no token (``missing_token``), a bad token
(``invalid_token`` with a reason), and a :class:`~jwtkit.service.Principal`.

Example:
    from starlette.applications import Starlette
    from jwtkit import Key
    from jwtkit.web import JWTAuthMiddleware

    app = Starlette()
    app.add_middleware(JWTAuthMiddleware, keys=Key.from_secret(b"k" * 32), issuer="me")
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from jwtkit import JWTError, Key, KeySet, decode, decode_unverified
from jwtkit.service import Principal
from jwtkit.store import Store, StoreUnavailable
from jwtkit.web.errors import AuthError, www_authenticate

__all__ = [
    "AuthMode",
    "Authenticator",
    "ErrorHandler",
    "JWTAuthMiddleware",
    "TokenLocation",
    "Validator",
    "default_on_error",
    "header_token",
]

Validator = Callable[[Principal], "bool | Awaitable[bool]"]
ErrorHandler = Callable[[HTTPConnection, AuthError], "Response | Awaitable[Response]"]


class TokenLocation(enum.Enum):
    """Where a request may carry its access token; the middleware looks in the configured order."""

    HEADER = "header"  # Authorization: Bearer <jwt> (RFC 6750 §2.1), or the bare <jwt> the tutorial sends
    COOKIE = "cookie"  # an HttpOnly cookie holding the access token
    QUERY = "query"  # ?access_token=<jwt> (RFC 6750 §2.3); off unless listed: URLs end up in logs


class AuthMode(enum.Enum):
    """What the middleware does when a request is not authenticated."""

    REQUIRED = "required"  # no token or a bad token: the error response
    OPTIONAL = "optional"  # no token: principal None; a bad token: the error response
    TRY = "try"  # never rejects: principal None, the error kept in state.auth_error


_BEARER = b"bearer "


def header_token(value: bytes) -> str | None:
    """The token of an ``Authorization`` value: ``Bearer <jwt>`` (scheme case-insensitive, RFC 7235 §2.1),
    or a bare ``<jwt>`` with no scheme at all. Another scheme (``Basic ...``) is not ours: None."""
    if value[:7].lower() == _BEARER:
        return value[7:].strip(b" \t").decode("latin-1")
    value = value.strip(b" \t")
    if b" " in value:
        return None
    return value.decode("latin-1")


def _cookie_value(cookie_header: bytes, name: bytes) -> str | None:
    """One cookie's value from a ``Cookie`` header, without parsing the others (RFC 6265 §5.4)."""
    for part in cookie_header.split(b";"):
        key, sep, value = part.strip().partition(b"=")
        if sep and key == name:
            return value.strip(b'"').decode("latin-1")
    return None


class Authenticator:
    """Finds, verifies and checks the access token of one request.

    Args:
        keys: the ``Key`` or ``KeySet`` that verifies tokens (its algorithms are the allow-list).
        issuer: the exact ``iss`` required, or None.
        audience: the ``aud`` required, or None (then tokens carrying ``aud`` are refused, RFC 7519 §4.1.3).
        typ: the ``typ`` header required (``"at+jwt"`` for RFC 9068 access tokens), or None.
        leeway: seconds of clock skew allowed on ``exp``/``nbf``/``iat``.
        require: the claims every token must carry (``exp`` by default).
        locations: where to look for the token, in order; the first location that has one is used.
        cookie_name: the cookie holding the access token.
        query_param: the query parameter holding it, when ``TokenLocation.QUERY`` is listed.
        store: a jwtkit store; when given, every token needs string ``sub`` and ``sid`` claims and its session
            must pass ``store.check(sid, sub)``.
        validate: an extra check on the principal (sync or async); False rejects with reason ``rejected``.
        clock: the time source for ``exp``/``nbf``/``iat`` (tests pin it); the wall clock when None.

    Raises:
        TypeError, ValueError: on a wrong configuration, here and never per request.
    """

    def __init__(
        self,
        *,
        keys: Key | KeySet,
        issuer: str | None = None,
        audience: str | None = None,
        typ: str | None = None,
        leeway: float = 0,
        require: Sequence[str] = ("exp",),
        locations: Sequence[TokenLocation] = (TokenLocation.HEADER, TokenLocation.COOKIE),
        cookie_name: str = "access_token",
        query_param: str = "access_token",
        store: Store | None = None,
        validate: Validator | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if not isinstance(keys, Key | KeySet):
            raise TypeError("keys must be a jwtkit Key or KeySet")
        locations = tuple(locations)
        if not locations:
            raise ValueError("locations must name at least one TokenLocation")
        if any(not isinstance(loc, TokenLocation) for loc in locations):
            raise TypeError("locations must be TokenLocation members")
        if len(set(locations)) != len(locations):
            raise ValueError("locations must not repeat")
        if not cookie_name or any(c in cookie_name for c in ' =;,"\t'):
            raise ValueError(f"cookie_name is not a valid cookie name: {cookie_name!r}")
        if not query_param:
            raise ValueError("query_param must not be empty")
        if leeway < 0:
            raise ValueError("leeway must not be negative")
        if validate is not None and not callable(validate):
            raise TypeError("validate must be callable")
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.typ = typ
        self.leeway = leeway
        self.require = tuple(require)
        self.clock = clock
        self.locations = locations
        self.cookie_name = cookie_name
        self.query_param = query_param
        self.store = store
        self.validate = validate
        self._cookie_key = cookie_name.encode("latin-1")
        self._wants_header = TokenLocation.HEADER in locations
        self._wants_cookie = TokenLocation.COOKIE in locations

    def __repr__(self) -> str:
        names = ", ".join(loc.value for loc in self.locations)
        return (f"Authenticator(issuer={self.issuer!r}, audience={self.audience!r}, typ={self.typ!r}, "
                f"locations=({names}), store={type(self.store).__name__ if self.store else None})")

    def extract(self, scope: Scope) -> tuple[str, TokenLocation] | None:
        """The first token found in the configured locations, with where it was found, or None."""
        authorization = cookie = None
        if self._wants_header or self._wants_cookie:
            for name, value in scope["headers"]:
                if name == b"authorization":
                    authorization = value
                elif name == b"cookie":
                    # RFC 9113 §8.2.3 lets HTTP/2 split cookies; join them as one header
                    cookie = value if cookie is None else cookie + b"; " + value
        for location in self.locations:
            if location is TokenLocation.HEADER:
                if authorization is not None:
                    token = header_token(authorization)
                    if token is not None:
                        return token, location
            elif location is TokenLocation.COOKIE:
                if cookie is not None:
                    token = _cookie_value(cookie, self._cookie_key)
                    if token:
                        return token, location
            else:
                token = self._query_token(scope.get("query_string", b""))
                if token:
                    return token, location
        return None

    def _query_token(self, query: bytes) -> str | None:
        if not query:
            return None
        try:
            pairs = parse_qsl(query.decode("latin-1"), max_num_fields=64)
        except ValueError:  # more fields than any real client sends: not a token-bearing URL
            return None
        for key, value in pairs:
            if key == self.query_param and value:
                return value
        return None

    def _reason(self, token: str, code: str) -> str:
        """``wrong_type`` when a header refused for its ``typ`` names another kind of token (a refresh or
        reset token sent as an access token, RFC 8725 §3.11), else the JWTError code. Error path only."""
        if code != "header" or self.typ is None:
            return code
        try:
            header, _ = decode_unverified(token)
        except JWTError:
            return code
        typ = header.get("typ")
        expected = self.typ.lower().removeprefix("application/")
        if not isinstance(typ, str) or typ.lower().removeprefix("application/") != expected:
            return "wrong_type"
        return code

    async def verify(self, token: str) -> Principal:
        """The principal of a token: signature and claims, then the session check when a store is set.

        Raises:
            AuthError: ``invalid_token`` (reason: a JWTError code, ``wrong_type``, ``claim``, ``revoked``,
                ``rejected``) or ``store_unavailable``.
        """
        try:
            claims = decode(token, self.keys, issuer=self.issuer, audience=self.audience, typ=self.typ,
                            leeway=self.leeway, require=self.require,
                            now=None if self.clock is None else self.clock())
        except JWTError as exc:
            raise AuthError("invalid_token", self._reason(token, exc.code)) from None
        sub = claims.get("sub")
        sid = claims.get("sid")
        if self.store is not None:
            if type(sub) is not str or type(sid) is not str or not sub or not sid:
                raise AuthError("invalid_token", "claim")
            try:
                active = await self.store.check(sid, sub)
            except StoreUnavailable:
                raise AuthError("store_unavailable") from None
            if not active:
                raise AuthError("invalid_token", "revoked")
        principal = Principal(user_id=sub if type(sub) is str else "",
                              session_id=sid if type(sid) is str else "", claims=claims)
        if self.validate is not None:
            verdict = self.validate(principal)
            if inspect.isawaitable(verdict):
                verdict = await verdict
            if not verdict:
                raise AuthError("invalid_token", "rejected")
        return principal

    async def authenticate(self, scope: Scope) -> Principal | None:
        """The request's principal, or None when it carries no token.

        Raises:
            AuthError: as :meth:`verify`.
        """
        found = self.extract(scope)
        if found is None:
            return None
        return await self.verify(found[0])


def default_on_error(conn: HTTPConnection, error: AuthError) -> Response:
    """The default error response: 401 with ``WWW-Authenticate: Bearer`` (RFC 6750 §3), or 503, as JSON."""
    headers = {"Cache-Control": "no-store"}
    if error.status == 401:
        headers["WWW-Authenticate"] = www_authenticate(error)
    elif error.status == 503:
        headers["Retry-After"] = "1"
    return Response(orjson.dumps(error.to_json()), status_code=error.status, headers=headers,
                    media_type="application/json")


class JWTAuthMiddleware:
    """Pure ASGI middleware that authenticates every HTTP and WebSocket request with a JWT.

    The verified :class:`~jwtkit.service.Principal` (or None) is put on ``scope["state"]["principal"]``, which
    is ``request.state.principal`` in Starlette and FastAPI. In ``TRY`` mode a failure is kept on
    ``request.state.auth_error``. Errors go through one ``on_error(conn, error) -> Response`` hook (sync or
    async), by default :func:`default_on_error`.

    Args:
        app: the wrapped ASGI app.
        mode: :class:`AuthMode` (default ``REQUIRED``).
        on_error: the error hook.
        exclude_paths: exact paths that skip authentication (health checks, login).
        **options: the :class:`Authenticator` arguments (``keys``, ``issuer``, ``audience``, ``typ``,
            ``leeway``, ``require``, ``locations``, ``cookie_name``, ``query_param``, ``store``, ``validate``,
            ``clock``).

    Example:
        app.add_middleware(JWTAuthMiddleware, keys=keyset, issuer="https://id.example",
                           store=store, mode=AuthMode.OPTIONAL)
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        keys: Key | KeySet,
        issuer: str | None = None,
        audience: str | None = None,
        typ: str | None = None,
        leeway: float = 0,
        require: Sequence[str] = ("exp",),
        locations: Sequence[TokenLocation] = (TokenLocation.HEADER, TokenLocation.COOKIE),
        cookie_name: str = "access_token",
        query_param: str = "access_token",
        store: Store | None = None,
        validate: Validator | None = None,
        clock: Callable[[], float] | None = None,
        on_error: ErrorHandler | None = None,
        mode: AuthMode = AuthMode.REQUIRED,
        exclude_paths: Sequence[str] = (),
    ) -> None:
        if not isinstance(mode, AuthMode):
            raise TypeError("mode must be an AuthMode")
        if on_error is not None and not callable(on_error):
            raise TypeError("on_error must be callable")
        self.app = app
        self.authenticator = Authenticator(
            keys=keys, issuer=issuer, audience=audience, typ=typ, leeway=leeway, require=require,
            locations=locations, cookie_name=cookie_name, query_param=query_param, store=store,
            validate=validate, clock=clock)
        self.on_error: ErrorHandler = on_error or default_on_error
        self.mode = mode
        self.exclude_paths = frozenset(exclude_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in self.exclude_paths:
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = scope.setdefault("state", {})
        try:
            principal = await self.authenticator.authenticate(scope)
            if principal is None and self.mode is AuthMode.REQUIRED:
                raise AuthError("missing_token")
        except AuthError as error:
            state["principal"] = None
            state["auth_error"] = error
            if self.mode is not AuthMode.TRY:
                await self._reject(scope, receive, send, error)
                return
        else:
            state["principal"] = principal
            state["auth_error"] = None
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
