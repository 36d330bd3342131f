"""The server's cookies (access token, refresh token, CSRF token, known device) and the CSRF rule for
unsafe requests.

Names and flags are fixed once per app by :class:`CookiePolicy`:

- secure (the default): ``__Host-jwtkit`` (access), ``__Host-jwtkit-refresh`` (refresh),
  ``__Host-jwtkit-csrf``; every cookie ``Secure`` and ``Path=/`` (RFC 6265bis §4.1.3);
- plain (``--no-secure-cookies``, for http://localhost only): ``jwtkit``, ``jwtkit-refresh``, ``jwtkit-csrf``.

The known-device cookie (``__Host-jwtkit-device``, ``jwtkit-device``) holds the token a successful login
returns (:attr:`jwtkit.service.TokenPair.device_token`): the next login from this browser counts its failures
against this device, not against the account, so nobody can lock its owner out by failing on purpose. It
carries no credential (it only picks a throttle counter), outlives logout, and is ``HttpOnly;
SameSite=Strict``: only the login form, a same-site post, needs it.

The refresh cookie travels with every request, not only to ``/refresh``: a page request whose access cookie
has expired is refreshed on that request (silent refresh, in :class:`~jwtkit.web.JWTAuthMiddleware`), so a
signed-in user is never sent to the login form while the session lives. It is ``HttpOnly`` like the access
cookie, so it is exposed to nothing the access cookie is not. Browsers signed in by an older jwtkit hold it
as ``__Secure-jwtkit-refresh`` (or ``jwtkit-refresh``) on ``Path=/refresh``: it is still read there and
cleared with the others.

Token cookies are ``HttpOnly; SameSite=Lax``. The CSRF cookie is readable by the page (double submit: the
form field or ``X-CSRF-Token`` header must equal it) and ``SameSite=Strict``.

CSRF: the one rule of :func:`jwtkit.web._extract.csrf_refused` (shared with the middleware), with the form
field ``csrf_token`` as a second place for the double submit. Only requests that the authentication step
authenticated by their Bearer ``Authorization`` header are exempt.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from jwtkit.web._errors import HTTPError
from jwtkit.web._extract import TokenLocation, csrf_refused

__all__ = ["CookiePolicy", "bearer_authenticated", "check_csrf"]

_CSRF_LENGTH = 43  # secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class CookiePolicy:
    """Cookie names and attributes for one app; see the module docstring."""

    secure: bool = True

    @property
    def access(self) -> str:
        return "__Host-jwtkit" if self.secure else "jwtkit"

    @property
    def refresh(self) -> str:
        return "__Host-jwtkit-refresh" if self.secure else "jwtkit-refresh"

    @property
    def legacy_refresh(self) -> str:
        """The refresh cookie as older releases set it, on ``Path=/refresh`` only."""
        return "__Secure-jwtkit-refresh" if self.secure else "jwtkit-refresh"

    @property
    def device(self) -> str:
        return "__Host-jwtkit-device" if self.secure else "jwtkit-device"

    def set_device(self, response: Response, token: str, max_age: int) -> None:
        """Keep a login's known-device token (when it has one) on this browser."""
        if token:
            response.headers.append("set-cookie", self._cookie(self.device, token, path="/", max_age=max_age,
                                                               httponly=True, samesite="Strict"))

    @property
    def csrf(self) -> str:
        return "__Host-jwtkit-csrf" if self.secure else "jwtkit-csrf"

    def _cookie(self, name: str, value: str, *, path: str, max_age: int, httponly: bool,
                samesite: str = "Lax") -> str:
        parts = [f"{name}={value}", f"Path={path}", f"Max-Age={max_age}", f"SameSite={samesite}"]
        if httponly:
            parts.append("HttpOnly")
        if self.secure:
            parts.append("Secure")
        return "; ".join(parts)

    def token_cookies(self, access_token: str, access_ttl: int, refresh_token: str,
                      refresh_ttl: int) -> list[str]:
        """The ``Set-Cookie`` values of a new token pair (and the end of an older release's refresh
        cookie)."""
        return [self._cookie(self.access, access_token, path="/", max_age=access_ttl, httponly=True),
                *self._legacy_cleared(),
                self._cookie(self.refresh, refresh_token, path="/", max_age=refresh_ttl, httponly=True)]

    def cleared_cookies(self) -> list[str]:
        """The ``Set-Cookie`` values that delete both token cookies (``Max-Age=0``, RFC 6265 §5.2.2)."""
        return [self._cookie(self.access, "", path="/", max_age=0, httponly=True),
                *self._legacy_cleared(),
                self._cookie(self.refresh, "", path="/", max_age=0, httponly=True)]

    def _legacy_cleared(self) -> list[str]:
        return [self._cookie(self.legacy_refresh, "", path="/refresh", max_age=0, httponly=True)]

    def set_tokens(self, response: Response, access_token: str, access_ttl: int, refresh_token: str,
                   refresh_ttl: int) -> None:
        """Set the access cookie and the refresh cookie."""
        for value in self.token_cookies(access_token, access_ttl, refresh_token, refresh_ttl):
            response.headers.append("set-cookie", value)

    def clear_tokens(self, response: Response) -> None:
        """Expire both token cookies."""
        for value in self.cleared_cookies():
            response.headers.append("set-cookie", value)

    def refresh_token(self, cookies: Mapping[str, str]) -> str:
        """The request's refresh token: the current cookie, else an older release's, else empty."""
        return cookies.get(self.refresh) or cookies.get(self.legacy_refresh) or ""

    def clear_access(self, response: Response) -> None:
        """Expire the access cookie only (its token is dead; the refresh cookie may still renew it)."""
        response.headers.append("set-cookie", self._cookie(self.access, "", path="/", max_age=0,
                                                           httponly=True))

    def csrf_token(self, request: Request) -> tuple[str, bool]:
        """The request's CSRF token, and whether it is new (then :meth:`set_csrf` must send it)."""
        current = request.cookies.get(self.csrf, "")
        if len(current) == _CSRF_LENGTH and current.replace("-", "").replace("_", "").isalnum():
            return current, False
        return secrets.token_urlsafe(32), True

    def set_csrf(self, response: Response, token: str) -> None:
        # not HttpOnly: double submit needs the page (form field) to carry it; Strict: never sent cross-site
        response.headers.append("set-cookie", self._cookie(self.csrf, token, path="/", max_age=14 * 86400,
                                                           httponly=False, samesite="Strict"))

    @property
    def ambient(self) -> tuple[bytes, ...]:
        """The cookies that carry credentials: their presence puts a request under the CSRF rule."""
        return self.access.encode(), self.refresh.encode(), self.legacy_refresh.encode()


def bearer_authenticated(request: Request) -> bool:
    """The request was authenticated by its ``Authorization`` header (the one authentication step said so)."""
    state = request.scope.get("state") or {}
    return state.get("principal") is not None and state.get("auth_location") is TokenLocation.HEADER


def check_csrf(request: Request, policy: CookiePolicy, fields: dict[str, str] | None = None) -> None:
    """Refuse a cross-site unsafe request (the rule of :func:`jwtkit.web._extract.csrf_refused`, with the
    form's ``csrf_token`` field as the double submit). Marks the request as passed, so that a cookie token
    the middleware could not clear (it cannot read the form) may now be used.

    Raises:
        HTTPError: ``csrf_failed`` (403).
    """
    if csrf_refused(request.scope, ambient_cookies=policy.ambient, csrf_cookie=policy.csrf.encode(),
                    sent_token=(fields or {}).get("csrf_token") or None,
                    bearer_authenticated=bearer_authenticated(request)):
        raise HTTPError("csrf_failed", "The CSRF token is missing or wrong, or the request came from "
                        "another site; reload the page and try again")
    request.scope["jwtkit.csrf_passed"] = True
