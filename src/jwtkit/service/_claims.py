"""The app's own claims in access tokens: the claims hook's contract, and the roles hook the server uses.

An :class:`~jwtkit.service.AuthService` built with ``claims=hook`` calls ``hook(user)`` (sync or async) at
every login and every refresh, and puts what it returns into the access token, so that a change to a user's
roles reaches their tokens within one access-token lifetime. What the hook may return is checked each time:

- a mapping of string names to JSON values (no NaN or infinity);
- none of the names the token format or jwtkit owns (:data:`RESERVED_CLAIMS`): a hook cannot extend its
  user's session by returning ``exp``, or speak for another user with ``sub``;
- ``scope`` a space-separated string of scopes (RFC 9068 §2.2.3, RFC 8693 §4.2), ``roles`` a list of strings
  (RFC 9068 §2.2.3.1);
- at most :data:`MAX_APP_CLAIMS_BYTES` of JSON, so that an access token still fits in one cookie (browsers
  keep at most 4096 bytes per cookie, RFC 6265 §6.1).

A result that breaks a rule is the app's bug, not the user's: :class:`ServiceConfigError`, logged, and the
login or refresh fails (500) rather than issuing a token the app did not mean.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from jwtkit.service._accounts import User
from jwtkit.service._errors import ServiceConfigError

__all__ = ["MAX_APP_CLAIMS_BYTES", "RESERVED_CLAIMS", "ClaimsHook", "app_claims", "check_app_claims",
           "user_roles_claims"]

ClaimsHook = Callable[[User], "Mapping[str, Any] | Awaitable[Mapping[str, Any]]"]

# RFC 7519 §4.1's registered claims, the JOSE header's typ, and the claims jwtkit's tokens carry for
# themselves (sid, refresh family, agent binding, single-use bindings, a future DPoP or mTLS confirmation).
RESERVED_CLAIMS = frozenset({"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "typ", "sid", "fam", "agent",
                             "pwh", "emh", "purpose", "cnf"})
MAX_APP_CLAIMS_BYTES = 2048


def check_app_claims(claims: object) -> dict[str, Any]:
    """The hook's result as claims to add, or :class:`ServiceConfigError` saying which rule it breaks."""
    if not isinstance(claims, Mapping):
        raise ServiceConfigError(f"the claims hook must return a mapping, not {type(claims).__name__}")
    names = list(claims)
    bad = [name for name in names if not isinstance(name, str) or not name]
    if bad:
        raise ServiceConfigError(f"the claims hook returned claim names that are not text: {bad!r}")
    reserved = sorted(set(names) & RESERVED_CLAIMS)
    if reserved:
        raise ServiceConfigError(f"the claims hook may not set {', '.join(reserved)}: jwtkit sets those")
    scope = claims.get("scope")
    if scope is not None and (not isinstance(scope, str) or not scope.split() or scope != " ".join(
            scope.split())):
        raise ServiceConfigError('"scope" must be scopes separated by single spaces (RFC 9068 §2.2.3)')
    roles = claims.get("roles")
    if roles is not None and (not isinstance(roles, list | tuple)
                              or not all(isinstance(role, str) and role for role in roles)):
        raise ServiceConfigError('"roles" must be a list of non-empty strings (RFC 9068 §2.2.3.1)')
    added = {name: list(value) if name == "roles" else value for name, value in claims.items()}
    try:
        size = len(json.dumps(added, allow_nan=False, separators=(",", ":"), ensure_ascii=False,
                              default=_refuse).encode("utf-8"))
    except (TypeError, ValueError) as exc:
        raise ServiceConfigError(f"the claims hook returned a value that is not JSON: {exc}") from None
    if size > MAX_APP_CLAIMS_BYTES:
        raise ServiceConfigError(f"the claims hook returned {size} bytes of JSON; at most "
                                 f"{MAX_APP_CLAIMS_BYTES} fit in an access token kept in a cookie")
    return added


def _refuse(value: object) -> None:
    raise TypeError(f"{type(value).__name__} is not a JSON value")


async def app_claims(hook: ClaimsHook, user: User) -> dict[str, Any]:
    """Call the hook (sync or async) for ``user`` and check what it returns."""
    result = hook(user)
    if inspect.isawaitable(result):
        result = await result
    return check_app_claims(result)


def user_roles_claims(user: User) -> dict[str, Any]:
    """The hook ``jwtkit serve`` uses: the account's roles (``jwtkit user roles``), when it has any."""
    return {"roles": sorted(user.roles)} if user.roles else {}
