"""Access checks for FastAPI and Starlette apps over the one decision of :class:`JWTAuthMiddleware`.

The middleware authenticates every request once and puts the outcome on the scope; everything here reads
that outcome and never verifies a token again (the access policy is not asked twice):

- :data:`require_principal`, :data:`optional_principal`, :func:`require_scopes` and :func:`require_roles` are
  FastAPI dependencies. They take an ``HTTPConnection``, so they work on WebSocket routes too, and they
  declare a security scheme (:class:`BearerScheme`: OAuth2's password flow against the
  :func:`~jwtkit.web.auth_router`'s ``POST /token`` by default), so ``/docs`` shows "Authorize" and a lock
  on each route that uses them. FastAPI stays optional: importing this module imports no FastAPI; the scheme
  is built the first time FastAPI itself reads a dependency's signature.
- :func:`check_scopes` and :func:`check_roles` are the same checks as plain functions, for Starlette apps
  and for code that already holds a principal.

Refusals keep RFC 6750 §3.1's distinctions: no token is 401 with ``WWW-Authenticate: Bearer``; a refused
token is 401 ``invalid_token`` (with the middleware's reason); a valid token without a scope or role the route
needs is 403 ``insufficient_scope`` with ``WWW-Authenticate: Bearer error="insufficient_scope",
scope="..."`` (never 401: signing in again would not help). On a WebSocket the handshake is closed with 1008
(policy violation), the error code as the reason, as the middleware does. Register
:func:`auth_error_handler` for :class:`AuthError` to answer HTTP refusals with the one error body
``{"error", "error_description", "reason"}``; without it FastAPI answers ``{"detail": {...}}`` with the same
status and headers.

Example:
    from typing import Annotated
    from fastapi import Depends, FastAPI
    from jwtkit.service import Principal
    from jwtkit.web import AuthError, AuthMode, JWTAuthMiddleware, auth_error_handler, require_scopes

    app = FastAPI()
    app.add_middleware(JWTAuthMiddleware, service=service, mode=AuthMode.TRY)
    app.add_exception_handler(AuthError, auth_error_handler)

    @app.get("/items")
    async def items(principal: Annotated[Principal, Depends(require_scopes("read"))]) -> list[str]:
        return []
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from starlette.exceptions import HTTPException, WebSocketException
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response

from jwtkit.service._access import Principal
from jwtkit.web._errors import AuthError, Problem, json_response, problem_of

__all__ = [
    "DEFAULT_SCHEME",
    "BearerScheme",
    "Dependency",
    "auth_error_handler",
    "check_roles",
    "check_scopes",
    "optional_principal",
    "problem_of_refusal",
    "require_principal",
    "require_roles",
    "require_scopes",
]

_NOT_INSTALLED = ("JWTAuthMiddleware is not installed on this app: "
                  "add it before using the principal dependencies")
_POLICY_VIOLATION = 1008  # RFC 6455 §7.4.1
# RFC 6749 §3.3 scope-token: printable ASCII except space, '"' and '\' (it is quoted in WWW-Authenticate)
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
_NO_STORE = {"Cache-Control": "no-store"}


def _state(conn: HTTPConnection) -> tuple[Principal | None, AuthError | None]:
    state = conn.scope.get("state")
    if not isinstance(state, dict) or "principal" not in state:
        # programmer error, not a client error: loud, like httpx's misuse errors
        raise RuntimeError(_NOT_INSTALLED)
    return state["principal"], state.get("auth_error")


class _Insufficient(AuthError):
    """``insufficient_scope`` (403): a valid token without a scope or role the route needs. ``reason`` is
    ``scope`` or ``role``; ``needed`` what the route asks for, all of it."""

    def __init__(self, kind: str, needed: tuple[str, ...]) -> None:
        super().__init__("insufficient_scope", kind)
        self.needed = needed

    @property
    def description(self) -> str:
        noun = self.reason if len(self.needed) == 1 else f"{self.reason}s"
        return f"The access token lacks the {noun} this request needs: {' '.join(self.needed)}"

    @property
    def challenge(self) -> str:
        """RFC 6750 §3: the scopes a token needs here; a role is not a scope a client can ask for."""
        if self.reason == "scope":
            return f'Bearer error="insufficient_scope", scope="{" ".join(self.needed)}"'
        return 'Bearer error="insufficient_scope"'


class _Refusal(AuthError, HTTPException):
    """What a dependency raises on an HTTP route: the :class:`AuthError`, which is also an ``HTTPException``
    carrying its status, headers and body, so that an app without :func:`auth_error_handler` still answers
    with the right status (FastAPI's ``{"detail": body}``), and one with it answers the one error body."""

    def __init__(self, error: AuthError) -> None:
        problem = problem_of_refusal(error)
        HTTPException.__init__(self, problem.status, detail=problem.body(),  # type: ignore[arg-type]
                               headers=problem.headers)
        self.code, self.reason, self.status = error.code, error.reason, error.status
        self.dpop, self.algs, self.nonce = error.dpop, error.algs, error.nonce
        self.error = error

    @property
    def description(self) -> str:
        return self.error.description

    @property
    def challenge(self) -> str | None:
        challenge: str | None = getattr(self.error, "challenge", None)
        return challenge


def problem_of_refusal(error: AuthError) -> Problem:
    """:func:`problem_of` for a refusal, with the RFC 6750 challenge of a 403 ``insufficient_scope``."""
    problem = problem_of(error)
    challenge = getattr(error, "challenge", None)
    if challenge and "WWW-Authenticate" not in problem.headers:
        problem = dataclasses.replace(problem, headers={**problem.headers, "WWW-Authenticate": challenge})
    return problem


async def auth_error_handler(request: Request, error: Exception) -> Response:
    """The exception handler for :class:`AuthError`: the one JSON error body, its status from the one table,
    ``WWW-Authenticate`` (401, and 403 ``insufficient_scope``), ``Retry-After`` (503), ``Cache-Control:
    no-store``; the answer the middleware gives for its own refusals.

    Register it on a FastAPI or Starlette app::

        app.add_exception_handler(AuthError, auth_error_handler)
        app = Starlette(routes=routes, exception_handlers={AuthError: auth_error_handler})
    """
    if not isinstance(error, AuthError):
        raise TypeError("auth_error_handler answers AuthError only; register it for AuthError") from error
    return json_response(problem_of_refusal(error), extra_headers=_NO_STORE)


def _checked(kind: str, names: tuple[str, ...]) -> tuple[str, ...]:
    if not names:
        raise TypeError(f"name at least one {kind}")
    for name in names:
        if not isinstance(name, str) or not _SCOPE_TOKEN.fullmatch(name):
            raise ValueError(f"not a valid {kind} name (printable ASCII, no spaces, quotes or backslashes): "
                             f"{name!r}")
    return tuple(dict.fromkeys(names))  # order kept, repeats dropped


def _who(who: Principal | HTTPConnection | None) -> Principal:
    if isinstance(who, HTTPConnection):
        principal, error = _state(who)
        if principal is None:
            raise _refusal(who, error or AuthError("missing_token"))
        return principal
    if who is None:
        raise AuthError("missing_token")
    if not isinstance(who, Principal):
        raise TypeError("check a Principal, or the request or WebSocket the middleware authenticated")
    return who


def _refusal(conn: HTTPConnection | None, error: AuthError) -> Exception:
    if conn is not None and conn.scope["type"] == "websocket":
        # the handshake is refused before it is accepted, as the middleware refuses it (RFC 6455 §7.4.2)
        return WebSocketException(code=_POLICY_VIOLATION, reason=error.code)
    return error


def check_scopes(who: Principal | HTTPConnection | None, *scopes: str) -> Principal:
    """The principal, when its token grants every one of ``scopes`` (the ``scope`` claim, RFC 9068 §2.2.3).

    Args:
        who: a :class:`~jwtkit.service.Principal` (None: no one signed in), or the request or WebSocket
            the middleware authenticated (then its refusal is the middleware's own: ``invalid_token`` with
            its reason, ``csrf_failed``, ``store_unavailable``).
        scopes: the scopes needed, all of them.

    Raises:
        AuthError: ``missing_token`` (401, no principal), the middleware's refusal, or
            ``insufficient_scope`` (403, reason ``scope``); answer it with :func:`auth_error_handler`.
        starlette.exceptions.WebSocketException: code 1008, instead, when ``who`` is a WebSocket.
    """
    needed = _checked("scope", scopes)
    principal = _who(who)
    if not principal.scopes.issuperset(needed):
        raise _refusal(who if isinstance(who, HTTPConnection) else None, _Insufficient("scope", needed))
    return principal


def check_roles(who: Principal | HTTPConnection | None, *roles: str) -> Principal:
    """The principal, when its token lists every one of ``roles`` (the ``roles`` claim, RFC 9068 §2.2.3.1).

    Args and raises as :func:`check_scopes` (reason ``role``; the challenge names no scope).
    """
    needed = _checked("role", roles)
    principal = _who(who)
    if not principal.roles.issuperset(needed):
        raise _refusal(who if isinstance(who, HTTPConnection) else None, _Insufficient("role", needed))
    return principal


class BearerScheme:
    """How the dependencies appear in OpenAPI: the security scheme behind ``/docs``' "Authorize" button and
    each protected route's lock. It reads and verifies nothing: the middleware did, once. An app uses one
    scheme throughout (the module-level dependencies use the default one).

    Args:
        token_url: the OAuth2 password flow's token endpoint: where the app mounts
            :func:`~jwtkit.web.auth_router`'s ``POST /token`` (default ``/auth/token``, for
            ``prefix="/auth"``). None declares an HTTP bearer scheme instead (paste a token in /docs).
        scopes: the scopes the Authorize dialog offers, name to description (password flow only).
        name: the scheme's key in ``components.securitySchemes``.
        description: shown in /docs.

    Example:
        auth = BearerScheme(token_url="/api/auth/token", scopes={"read": "Read items"})
        app.include_router(auth_router(service, scheme=auth), prefix="/api/auth")

        @app.get("/items")
        async def items(principal: Annotated[Principal, Depends(auth.require_scopes("read"))]) -> ...
    """

    def __init__(self, *, token_url: str | None = "/auth/token",  # noqa: S107 - a URL, not a secret
                 scopes: Mapping[str, str] | None = None,
                 name: str = "jwtkit", description: str | None = None) -> None:
        if token_url is not None and (not isinstance(token_url, str) or not token_url):
            raise ValueError("token_url must be a non-empty URL or path, or None for an HTTP bearer scheme")
        if scopes and token_url is None:
            raise ValueError("scopes go with the password flow (token_url); an HTTP bearer scheme has none")
        if not isinstance(name, str) or not name:
            raise ValueError("name must be a non-empty string")
        self.token_url = token_url
        offered = dict(scopes or {})
        if offered:
            _checked("scope", tuple(offered))
        self.scopes: Mapping[str, str] = MappingProxyType({name: str(text) for name, text in offered.items()})
        self.name = name
        self.description = description
        self.require_principal = Dependency(self, "require_principal")
        self.optional_principal = Dependency(self, "optional_principal", optional=True)

    def __repr__(self) -> str:
        flow = f"password, token_url={self.token_url!r}" if self.token_url is not None else "http bearer"
        return f"BearerScheme({self.name!r}, {flow})"

    def require_scopes(self, *scopes: str) -> Dependency:
        """A dependency: the principal, when its token grants every one of ``scopes``."""
        return Dependency(self, "require_scopes", scopes=_checked("scope", scopes))

    def require_roles(self, *roles: str) -> Dependency:
        """A dependency: the principal, when its token lists every one of ``roles``."""
        return Dependency(self, "require_roles", roles=_checked("role", roles))

    @functools.cached_property
    def security(self) -> Any:
        """The ``fastapi.security`` scheme object (built on first use; this imports FastAPI)."""
        from jwtkit.web._fastapi import security_scheme

        return security_scheme(self)


class _LazySignature:
    """A dependency's ``__signature__``, what FastAPI reads (``inspect.signature``): the connection, and the
    security scheme as a sub-dependency (with the route's scopes, for OAuth2), so that the OpenAPI document
    lists the scheme on the route. Built on first read, which is FastAPI's, so FastAPI is imported only by
    an app that uses it; then kept on the instance."""

    def __get__(self, instance: Dependency | None, owner: type | None = None) -> inspect.Signature | None:
        if instance is None:
            return None  # the class itself: inspect falls back to its __init__
        try:
            from jwtkit.web._fastapi import dependency_signature
        except ImportError:  # no FastAPI here: the plain signature, for help() and Starlette apps
            signature = inspect.Signature([inspect.Parameter(
                "conn", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=HTTPConnection)])
        else:
            signature = dependency_signature(instance)
        instance.__dict__["__signature__"] = signature
        return signature


class Dependency:
    """A FastAPI dependency over the middleware's decision (see the module docstring). Called with the
    request or WebSocket, it returns the principal (or None, when optional), or raises the refusal."""

    def __init__(self, scheme: BearerScheme, name: str, *, optional: bool = False,
                 scopes: tuple[str, ...] = (), roles: tuple[str, ...] = ()) -> None:
        self.scheme = scheme
        self.optional = optional
        self.scopes = scopes
        self.roles = roles
        self.__name__ = self.__qualname__ = name

    def __repr__(self) -> str:
        needed = ", ".join(repr(name) for name in (*self.scopes, *self.roles))
        return f"{self.__name__}({needed})" if needed else f"<dependency {self.__name__}>"

    __signature__ = _LazySignature()

    async def __call__(self, conn: HTTPConnection, token: Any = None) -> Principal | None:
        principal, error = _state(conn)
        if principal is None:
            if self.optional:
                return None
            raise _http_refusal(conn, error or AuthError("missing_token"))
        if self.scopes and not principal.scopes.issuperset(self.scopes):
            raise _http_refusal(conn, _Insufficient("scope", self.scopes))
        if self.roles and not principal.roles.issuperset(self.roles):
            raise _http_refusal(conn, _Insufficient("role", self.roles))
        return principal


def _http_refusal(conn: HTTPConnection, error: AuthError) -> Exception:
    refusal = _refusal(conn, error)
    return _Refusal(error) if refusal is error else refusal


DEFAULT_SCHEME = BearerScheme()

require_principal = DEFAULT_SCHEME.require_principal
"""FastAPI dependency: the verified principal; 401 (``missing_token``, ``invalid_token``), 403
(``csrf_failed``) or 503 (``store_unavailable``) without one; 1008 on a WebSocket."""

optional_principal = DEFAULT_SCHEME.optional_principal
"""FastAPI dependency: the verified principal, or None (the middleware's mode decides whether a bad token
is an error)."""


def require_scopes(*scopes: str) -> Dependency:
    """A FastAPI dependency: the principal, when its token grants every one of ``scopes`` (403
    ``insufficient_scope`` otherwise, 401 without a token). Lists the scopes on the route in OpenAPI.

    Example:
        @app.get("/items")
        async def items(principal: Annotated[Principal, Depends(require_scopes("read"))]) -> list[str]: ...
    """
    return DEFAULT_SCHEME.require_scopes(*scopes)


def require_roles(*roles: str) -> Dependency:
    """A FastAPI dependency: the principal, when its token lists every one of ``roles`` (403
    ``insufficient_scope`` otherwise, 401 without a token).

    Example:
        @app.delete("/users/{user_id}")
        async def delete(principal: Annotated[Principal, Depends(require_roles("admin"))]) -> None: ...
    """
    return DEFAULT_SCHEME.require_roles(*roles)
