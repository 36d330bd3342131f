"""The server's cookies (access token, refresh token, CSRF token) and the CSRF rule for unsafe requests.

Names and flags are fixed once per app by :class:`CookiePolicy`:

- secure (the default): ``__Host-jwtkit`` (access), ``__Secure-jwtkit-refresh`` (refresh, ``Path=/refresh``
  so that it travels only to the one endpoint that uses it; ``__Host-`` demands ``Path=/``,
  RFC 6265bis §4.1.3),
  ``__Host-jwtkit-csrf``; every cookie ``Secure``;
- plain (``--no-secure-cookies``, for http://localhost only): ``jwtkit``, ``jwtkit-refresh``, ``jwtkit-csrf``.

Token cookies are ``HttpOnly; SameSite=Lax``. The CSRF cookie is readable by the page (double submit: the
form field or ``X-CSRF-Token`` header must equal it) and ``SameSite=Strict``.

CSRF rule (OWASP CSRF cheat sheet): an unsafe request is refused with 403 ``csrf_failed`` when its ``Origin``
is another origin, or when it carries our cookies, has no same-origin ``Origin``, and does not echo the CSRF
token. Requests authenticated by an ``Authorization`` header are not subject to it: a browser never adds that
header across origins on its own.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from jwtkit.web._http import HTTPError

__all__ = ["CookiePolicy", "check_csrf"]

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
        return "__Secure-jwtkit-refresh" if self.secure else "jwtkit-refresh"

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

    def set_tokens(self, response: Response, access_token: str, access_ttl: int, refresh_token: str,
                   refresh_ttl: int) -> None:
        """Set the access cookie (site-wide) and the refresh cookie (only for ``/refresh``)."""
        response.headers.append("set-cookie", self._cookie(self.access, access_token, path="/",
                                                           max_age=access_ttl, httponly=True))
        response.headers.append("set-cookie", self._cookie(self.refresh, refresh_token, path="/refresh",
                                                           max_age=refresh_ttl, httponly=True))

    def clear_tokens(self, response: Response) -> None:
        """Expire both token cookies (a cookie with ``Max-Age=0`` is deleted, RFC 6265 §5.2.2)."""
        response.headers.append("set-cookie", self._cookie(self.access, "", path="/", max_age=0,
                                                           httponly=True))
        response.headers.append("set-cookie", self._cookie(self.refresh, "", path="/refresh", max_age=0,
                                                           httponly=True))

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

    def has_credentials(self, request: Request) -> bool:
        cookies = request.cookies
        return self.access in cookies or self.refresh in cookies


def _same_origin(request: Request, origin: str) -> bool:
    # Compare the authority only: behind a TLS-terminating proxy the scheme the app sees may differ.
    host = request.headers.get("host", "")
    _, sep, authority = origin.partition("://")
    return bool(sep) and bool(host) and authority.lower() == host.lower()


def check_csrf(request: Request, policy: CookiePolicy, fields: dict[str, str] | None = None) -> None:
    """Refuse a cross-site unsafe request (see the module docstring).

    Raises:
        HTTPError: ``csrf_failed`` (403).
    """
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    headers = request.headers
    if "authorization" in headers:
        return
    origin = headers.get("origin")
    if origin is not None:
        if _same_origin(request, origin):
            return
        raise HTTPError("csrf_failed", "Cross-site request refused")
    if not policy.has_credentials(request):
        return  # no ambient credentials to abuse (a curl or app client)
    expected = request.cookies.get(policy.csrf, "")
    sent = headers.get("x-csrf-token") or (fields or {}).get("csrf_token", "")
    if expected and sent and hmac.compare_digest(expected.encode(), sent.encode()):
        return
    raise HTTPError("csrf_failed", "The CSRF token is missing or wrong; reload the page and try again")
