"""jwtkit's web layer: the ready-to-run ASGI server and the middleware for users' Starlette/FastAPI apps.

- :func:`create_app` / :func:`serve`: the server (pages, JSON API, JWKS, health, OpenAPI).
- :class:`JWTAuthMiddleware` with :class:`TokenLocation` and :class:`AuthMode`; :class:`Authenticator` for
  apps that want the three steps without the middleware.
- :func:`require_principal` / :func:`optional_principal`: FastAPI dependencies (FastAPI stays optional).
- :class:`AuthError`: what the on_error hook receives.
"""

from __future__ import annotations

from jwtkit.web.app import app_from_env, create_app
from jwtkit.web.dependencies import optional_principal, require_principal
from jwtkit.web.errors import AuthError
from jwtkit.web.middleware import Authenticator, AuthMode, JWTAuthMiddleware, TokenLocation, default_on_error
from jwtkit.web.server import serve

__all__ = [
    "AuthError",
    "AuthMode",
    "Authenticator",
    "JWTAuthMiddleware",
    "TokenLocation",
    "app_from_env",
    "create_app",
    "default_on_error",
    "optional_principal",
    "require_principal",
    "serve",
]
