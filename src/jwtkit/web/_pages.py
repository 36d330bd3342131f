"""The server's HTML: templates, the CSRF token every form carries, the nav's signed-in user, the fixed
notices, and the page face of an error.

Every error leaves the server through :func:`jwtkit.web._errors.problem_of`; JSON clients get the Problem's
body, browsers get :meth:`Pages.problem` (the login form for a missing or refused token, a message page
otherwise), with the same status and headers.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import Response

from jwtkit.service import Principal
from jwtkit.web._cookies import CookiePolicy
from jwtkit.web._devices import device_name
from jwtkit.web._errors import Problem

__all__ = ["NOTICES", "STATIC", "TEMPLATES", "Pages", "human_time"]

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

# What a redirect may ask the next page to say (?notice=KEY): a fixed table, so no text from a URL reaches
# a page.
NOTICES = {
    "signed-out": "You have been signed out.",
    "session-ended": "Your session has ended; sign in again.",
    "password-changed": "Your password was changed.",
    "verification-sent": "We sent you a new verification link.",
}

Names = Callable[[str], Awaitable[str | None]]  # user id -> username, or None when there is no such user


def human_time(seconds: float) -> str:
    """A POSIX time as people read it, in UTC: ``2026-12-02 01:23:45 UTC``."""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))


def _principal(request: Request) -> Principal | None:
    state = request.scope.get("state") or {}
    principal: Principal | None = state.get("principal")
    return principal


class Pages:
    """Renders the server's templates with the CSRF token and the nav's user, and errors as pages."""

    def __init__(self, cookies: CookiePolicy, names: Names) -> None:
        self.cookies = cookies
        self.names = names
        self.env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                                      undefined=jinja2.StrictUndefined, auto_reload=False)
        self.env.filters["timestamp"] = human_time
        self.env.filters["device"] = device_name

    async def viewer(self, request: Request) -> str | None:
        """The signed-in user's name for the nav, as the authentication step found it (None: signed out)."""
        principal = _principal(request)
        if principal is None:
            return None
        return await self.names(principal.user_id) or principal.user_id

    async def render(self, request: Request, name: str, context: dict[str, Any] | None = None, *,
                     status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
        """Render a template with the CSRF token, the nav's user and the page's notice; sends the CSRF cookie
        when it is new."""
        token, new = self.cookies.csrf_token(request)
        values = {"csrf_token": token, "error": None,
                  "notice": NOTICES.get(request.query_params.get("notice", "")), **(context or {})}
        if "user" not in values:
            values["user"] = await self.viewer(request)
        html = self.env.get_template(name).render(values)
        response = Response(html, status_code=status, headers=headers, media_type="text/html")
        if new:
            self.cookies.set_csrf(response, token)
        return response

    async def problem(self, request: Request, problem: Problem, *, template: str | None = None,
                      context: dict[str, Any] | None = None,
                      extra_headers: Mapping[str, str] | None = None) -> Response:
        """An error as a page: the login form when a token is missing or refused (and the dead access
        cookie cleared), the form the user came from when ``template`` names it, else a message page."""
        headers = {**problem.headers, **(extra_headers or {})}
        if template is not None:
            values = {"error": problem.description, **(context or {})}
            return await self.render(request, template, values, status=problem.status, headers=headers)
        if problem.code in ("missing_token", "invalid_token"):
            message = "Please sign in." if problem.code == "missing_token" else \
                "Your session has ended; sign in again."
            response = await self.render(request, "home.html", {"error": message, "user": None},
                                         status=problem.status, headers=headers)
            if problem.code == "invalid_token":
                self.cookies.clear_access(response)
            return response
        return await self.render(request, "message.html", {"title": "Sorry", "text": problem.description},
                                 status=problem.status, headers=headers)
