"""FastAPI dependencies that hand the principal verified by :class:`JWTAuthMiddleware` to an endpoint.

They are plain callables taking a Starlette ``Request``, so FastAPI stays an optional extra: jwtkit never
imports it. They read what the middleware's one authentication step decided (the access policy is not asked
again) and answer a refusal with the same status, headers and reason as the middleware and the server:
FastAPI renders the ``HTTPException`` as ``{"detail": {"error": ..., "reason": ..., ...}}`` with
``WWW-Authenticate: Bearer`` on 401 (RFC 6750 §3) and ``Retry-After`` on 503.

Example:
    from typing import Annotated
    from fastapi import Depends, FastAPI
    from jwtkit.service import Principal
    from jwtkit.web import AuthMode, JWTAuthMiddleware, require_principal

    app = FastAPI()
    app.add_middleware(JWTAuthMiddleware, service=service, mode=AuthMode.TRY)

    @app.get("/me")
    def me(principal: Annotated[Principal, Depends(require_principal)]) -> dict[str, str]:
        return {"user": principal.user_id}
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request

from jwtkit.service._access import Principal
from jwtkit.web._errors import AuthError, problem_of

__all__ = ["optional_principal", "require_principal"]

_NOT_INSTALLED = ("JWTAuthMiddleware is not installed on this app: "
                  "add it before using the principal dependencies")


def _state(request: Request) -> tuple[Principal | None, AuthError | None]:
    state = request.scope.get("state")
    if not isinstance(state, dict) or "principal" not in state:
        # programmer error, not a client error: loud, like httpx's misuse errors
        raise RuntimeError(_NOT_INSTALLED)
    return state["principal"], state.get("auth_error")


def require_principal(request: Request) -> Principal:
    """The verified principal; a 401 (or 503 when the store is down) when there is none.

    Raises:
        starlette.exceptions.HTTPException: 401 with ``WWW-Authenticate``, 403 (``csrf_failed``), or 503.
        RuntimeError: when the middleware is not installed.
    """
    principal, error = _state(request)
    if principal is not None:
        return principal
    problem = problem_of(error or AuthError("missing_token"))
    raise HTTPException(problem.status, detail=problem.body(), headers=problem.headers)  # type: ignore[arg-type]


def optional_principal(request: Request) -> Principal | None:
    """The verified principal, or None (the middleware decided whether a bad token is an error).

    Raises:
        RuntimeError: when the middleware is not installed.
    """
    return _state(request)[0]
