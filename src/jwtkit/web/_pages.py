"""The server's HTML: templates, the CSRF token every form carries, and the page face of an error.

Every error leaves the server through :func:`jwtkit.web._errors.problem_of`; JSON clients get the Problem's
body, browsers get :meth:`Pages.problem` (the login form for a missing or refused token, a message page
otherwise), with the same status and headers.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import Response

from jwtkit.web._cookies import CookiePolicy
from jwtkit.web._errors import Problem

__all__ = ["STATIC", "TEMPLATES", "Pages"]

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"


def _timestamp(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(seconds))


class Pages:
    """Renders the server's templates with the CSRF token, and errors as pages."""

    def __init__(self, cookies: CookiePolicy) -> None:
        self.cookies = cookies
        self.env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                                      undefined=jinja2.StrictUndefined, auto_reload=False)
        self.env.filters["timestamp"] = _timestamp

    def render(self, request: Request, name: str, context: dict[str, Any] | None = None, *,
               status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
        """Render a template with the CSRF token; sends the CSRF cookie when it is new."""
        token, new = self.cookies.csrf_token(request)
        values = {"csrf_token": token, "user": None, "notice": None, "error": None, **(context or {})}
        html = self.env.get_template(name).render(values)
        response = Response(html, status_code=status, headers=headers, media_type="text/html")
        if new:
            self.cookies.set_csrf(response, token)
        return response

    def problem(self, request: Request, problem: Problem, *, template: str | None = None,
                context: dict[str, Any] | None = None,
                extra_headers: Mapping[str, str] | None = None) -> Response:
        """An error as a page: the login form when a token is missing or refused (and the dead access
        cookie cleared), the form the user came from when ``template`` names it, else a message page."""
        headers = {**problem.headers, **(extra_headers or {})}
        if template is not None:
            values = {"error": problem.description, **(context or {})}
            return self.render(request, template, values, status=problem.status, headers=headers)
        if problem.code in ("missing_token", "invalid_token"):
            message = "Please sign in." if problem.code == "missing_token" else \
                "Your session has ended; sign in again."
            response = self.render(request, "home.html", {"error": message}, status=problem.status,
                                   headers=headers)
            if problem.code == "invalid_token":
                self.cookies.clear_access(response)
            return response
        return self.render(request, "message.html", {"title": "Sorry", "text": problem.description},
                           status=problem.status, headers=headers)
