"""jwtkit's web layer: the middleware for users' Starlette/FastAPI apps, and the ready-to-run server.

- :class:`JWTAuthMiddleware` with :class:`TokenLocation` and :class:`AuthMode`, over the one
  :class:`~jwtkit.service.AccessPolicy`; :class:`CookiePolicy`, the browser cookies of a cookie app (names,
  flags, the silent refresh);
- :data:`require_principal` / :data:`optional_principal` / :func:`require_scopes` / :func:`require_roles`:
  FastAPI dependencies, HTTP and WebSocket, declared in OpenAPI through a :class:`BearerScheme` (FastAPI
  stays optional: importing them imports no FastAPI); :func:`check_scopes` / :func:`check_roles`, the same
  checks for Starlette apps;
- :class:`AuthError`: what the on_error hook receives, and :func:`auth_error_handler`, its exception handler;
- :func:`auth_router` (the token, refresh, logout and sessions endpoints as a FastAPI ``APIRouter``) and
  :func:`offline_docs` (``/docs`` without a CDN): they import FastAPI, so they load on first use;
- :class:`DPoPAuth`: the client's side of DPoP (RFC 9449), an ``httpx.Auth`` that signs a proof per request;
- :func:`create_app` / :func:`serve` / :func:`app_from_env`: the server (pages, JSON API, JWKS, health,
  OpenAPI). They load on first use, so that importing the middleware pulls in no templates, password
  hashing, mail or server code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jwtkit.web._cookies import CookiePolicy
from jwtkit.web._dependencies import (
    BearerScheme,
    auth_error_handler,
    check_roles,
    check_scopes,
    optional_principal,
    require_principal,
    require_roles,
    require_scopes,
)
from jwtkit.web._errors import AuthError
from jwtkit.web._extract import TokenLocation
from jwtkit.web._middleware import AuthMode, JWTAuthMiddleware, default_on_error

if TYPE_CHECKING:
    from jwtkit.web._app import create_app
    from jwtkit.web._dpop_client import DPoPAuth
    from jwtkit.web._fastapi import auth_router, offline_docs
    from jwtkit.web._server import app_from_env, serve

_LAZY = {"DPoPAuth": "jwtkit.web._dpop_client", "create_app": "jwtkit.web._app",
         "app_from_env": "jwtkit.web._server", "serve": "jwtkit.web._server",
         "auth_router": "jwtkit.web._fastapi", "offline_docs": "jwtkit.web._fastapi"}

__all__ = [
    "AuthError",
    "AuthMode",
    "BearerScheme",
    "CookiePolicy",
    "DPoPAuth",
    "JWTAuthMiddleware",
    "TokenLocation",
    "app_from_env",
    "auth_error_handler",
    "auth_router",
    "check_roles",
    "check_scopes",
    "create_app",
    "default_on_error",
    "offline_docs",
    "optional_principal",
    "require_principal",
    "require_roles",
    "require_scopes",
    "serve",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'jwtkit.web' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    _public(value)
    globals()[name] = value
    return value


def _public(value: Any) -> None:
    """Show the public path in reprs, tracebacks and docs, as httpx does."""
    if getattr(value, "__module__", "").startswith("jwtkit.web._"):
        value.__module__ = "jwtkit.web"


for _name in __all__:
    if _name in globals():
        _public(globals()[_name])
del _name
