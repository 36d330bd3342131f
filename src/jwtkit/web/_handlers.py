"""The server's route handlers: sign-in, logout, sessions, refresh, accounts and password reset, for
browsers (pages) and JSON clients alike, chosen by :func:`._http.wants_json`.

Handlers read the request's principal from the one authentication step in front of the router; failures
are raised and leave through the app's one error handler (:mod:`._app`), except where a form must be shown
again with its error (then :meth:`Pages.problem` renders the same Problem).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

import jinja2
import orjson
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from jwtkit.service import AuthConfig, InvalidToken, Principal, ServiceError, Throttled
from jwtkit.service._auth import AuthService, TokenPair
from jwtkit.store import StoreUnavailable
from jwtkit.web._cookies import CookiePolicy, check_csrf
from jwtkit.web._errors import AuthError, HTTPError, json_response, problem_of
from jwtkit.web._extract import sent_dpop_request
from jwtkit.web._http import json_ok, read_input, require_fields, wants_json
from jwtkit.web._middleware import authenticate_found
from jwtkit.web._pages import Pages, human_time

__all__ = ["Handlers", "private_body"]

logger = logging.getLogger("jwtkit.web")

_JSON = "application/json"
_TIME_CLAIMS = frozenset({"iat", "exp", "nbf", "auth_time"})
_NO_REFERRER = {"Referrer-Policy": "no-referrer"}  # pages whose URL carries a token


def _pair_json(pair: TokenPair) -> dict[str, Any]:
    body = {"access_token": pair.access_token, "token_type": pair.token_type, "expires_in": pair.expires_in,
            "refresh_token": pair.refresh_token, "refresh_expires_in": pair.refresh_expires_in}
    if pair.device_token:
        body["device_token"] = pair.device_token
    return body


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else ""


def _user_agent(request: Request) -> str:
    return request.headers.get("user-agent", "")[:512]


def private_body(principal: Principal) -> bytes:
    """The JSON body of a successful ``GET /private`` (one function for the JSON endpoint and this one)."""
    return orjson.dumps({"message": "This is private", "user_id": principal.user_id,
                         "session_id": principal.session_id, "expires": principal.claims.get("exp")})


class Handlers:
    """The server's route handlers, sharing the service, the pages and the cookie policy. They read the
    request's principal from the one authentication step (:class:`~jwtkit.web.JWTAuthMiddleware` in front of
    the router) and never verify an access token themselves."""

    def __init__(self, service: AuthService, pages: Pages, cookies: CookiePolicy) -> None:
        self.service = service
        self.config: AuthConfig = service.config
        self.pages = pages
        self.cookies = cookies

    # --- the authentication step's result ---------------------------------------------------------------

    async def principal(self, request: Request, *, required: bool = True) -> Principal | None:
        """The caller's principal, as the authentication step decided; None when there is no token and
        ``required`` is false.

        Raises:
            AuthError: ``missing_token`` (when required), ``invalid_token``, ``csrf_failed``,
                ``store_unavailable``.
        """
        state = request.scope["state"]
        principal: Principal | None = state["principal"]
        if principal is not None:
            return principal
        error: AuthError | None = state["auth_error"]
        if error is None:
            if required:
                raise AuthError("missing_token")
            return None
        if error.code == "csrf_failed" and request.scope.get("jwtkit.csrf_passed"):
            # The cookie token was held back only because the middleware cannot read the form's CSRF
            # field; the handler's check_csrf has now seen it echoed, so the token gets its one check.
            principal, error = await authenticate_found(self.service.access, state["auth_token"],
                                                        request.scope)  # a cookie token: never DPoP
            state["principal"], state["auth_error"] = principal, error
            if principal is not None:
                return principal
        raise error or AuthError("missing_token")

    async def require(self, request: Request) -> Principal:
        """The caller's principal.

        Raises:
            AuthError: ``missing_token``, ``invalid_token``, ``csrf_failed``, ``store_unavailable``.
        """
        principal = await self.principal(request, required=True)
        if principal is None:  # principal(required=True) raises instead; this keeps the type exact
            raise AuthError("missing_token")
        return principal

    async def page(self, request: Request, name: str, context: dict[str, Any] | None = None, *,
                   status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
        return await self.pages.render(request, name, context, status=status, headers=headers)

    async def username(self, principal: Principal) -> str:
        user = await self.service.get_user(principal.user_id)
        return user.username if user else principal.user_id

    # --- pages ------------------------------------------------------------------------------------------

    async def home(self, request: Request) -> Response:
        try:
            principal = await self.principal(request, required=False)
        except AuthError as error:
            if error.status == 503:
                raise
            principal = None
        if wants_json(request):
            return json_ok({"authenticated": principal is not None,
                            "user_id": principal.user_id if principal else None,
                            "links": {"login": "/auth", "private": "/private", "register": "/register"}})
        return await self.page(request, "home.html")

    async def auth(self, request: Request) -> Response:
        as_json = wants_json(request)
        fields = await read_input(request)
        check_csrf(request, self.cookies, fields)
        try:
            username, password = require_fields(fields, "username", "password")
        except HTTPError:
            if as_json:
                raise
            return await self.pages.problem(request, problem_of(HTTPError(
                "missing_field", "Enter your username and password.")), template="home.html")
        try:
            pair = await self.service.login(username, password, ip=_client_ip(request),
                                            user_agent=_user_agent(request),
                                            device=self._device(request, fields),
                                            dpop=sent_dpop_request(request.scope))
        except ServiceError as error:
            if as_json or isinstance(error, Throttled):
                raise
            # one neutral message whichever of the two was wrong (no account enumeration)
            message = ("Those credentials are not valid." if error.code == "invalid_credentials"
                       else str(error))
            problem = dataclasses.replace(problem_of(error), description=message)
            return await self.pages.problem(request, problem, template="home.html",
                                            context={"username": username})
        if as_json:
            response: Response = json_ok(_pair_json(pair), headers=self._pair_headers(pair))
        else:
            response = RedirectResponse("/private", status_code=303)
            self.cookies.set_tokens(response, pair.access_token, pair.expires_in, pair.refresh_token,
                                    pair.refresh_expires_in)
        self.cookies.set_device(response, pair.device_token, self.config.device_ttl)
        return response

    def _device(self, request: Request, fields: dict[str, str]) -> str:
        """The known-device token of a login: the browser's cookie, or an app's ``device_token`` field."""
        return request.cookies.get(self.cookies.device) or fields.get("device_token", "")

    async def private(self, request: Request) -> Response:
        """``GET /private`` for browsers (JSON clients are answered by :class:`._api.PrivateJSON`)."""
        principal = await self.require(request)
        headers = _NO_REFERRER if "token=" in request.url.query else None
        if wants_json(request):
            return Response(private_body(principal), headers=headers, media_type=_JSON)
        user = await self.service.get_user(principal.user_id)
        claims = [(name, human_time(value) if name in _TIME_CLAIMS and isinstance(value, int | float)
                   else value) for name, value in sorted(principal.claims.items())]
        context = {"claims": claims, "unverified": bool(user and user.email and not user.verified)}
        return await self.page(request, "private.html", context, headers=headers)

    async def logout(self, request: Request) -> Response:
        fields = await read_input(request)
        check_csrf(request, self.cookies, fields)
        try:
            principal = await self.principal(request, required=False)
        except AuthError as error:
            if error.status == 503:
                raise
            principal = None  # already logged out, expired or bogus: logging out again is harmless
            if error.reason == "expired":
                await self.service.end_expired_session(request.scope["state"]["auth_token"],
                                                       dpop=sent_dpop_request(request.scope))
        if principal is not None:
            await self.service.logout(principal.session_id)
        return self._signed_out(request)

    async def logout_all(self, request: Request) -> Response:
        fields = await read_input(request)
        check_csrf(request, self.cookies, fields)
        principal = await self.require(request)
        await self.service.logout_all(principal.user_id)
        return self._signed_out(request)

    def _signed_out(self, request: Request) -> Response:
        response: Response = Response(status_code=204) if wants_json(request) else RedirectResponse(
            "/?notice=signed-out", status_code=303)
        self.cookies.clear_tokens(response)
        # RFC 9110 §7.8 / W3C Clear-Site-Data: drop any cached copy of private pages in the browser
        response.headers["Clear-Site-Data"] = '"cache"'
        return response

    async def sessions(self, request: Request) -> Response:
        principal = await self.require(request)
        sessions = await self.service.list_sessions(principal.user_id)
        rows = [{"sid": s.sid, "created": s.created, "last_used": s.last_used, "expires": s.expires,
                 "user_agent": s.user_agent, "ip": s.ip, "current": s.sid == principal.session_id}
                for s in sessions]
        if wants_json(request):
            return json_ok({"sessions": rows})
        return await self.page(request, "sessions.html", {"sessions": rows})

    async def delete_session(self, request: Request) -> Response:
        check_csrf(request, self.cookies)
        return await self._revoke(request, as_form=False)

    async def revoke_session_form(self, request: Request) -> Response:
        fields = await read_input(request)
        check_csrf(request, self.cookies, fields)
        return await self._revoke(request, as_form=not wants_json(request))

    async def _revoke(self, request: Request, *, as_form: bool) -> Response:
        principal = await self.require(request)
        sid = request.path_params["sid"]
        if not await self.service.revoke_session(principal.user_id, sid):
            raise HTTPError("not_found", "No such active session")
        if sid == principal.session_id:
            return self._signed_out(request)
        if as_form:
            return RedirectResponse("/sessions", status_code=303)
        return Response(status_code=204)

    async def refresh(self, request: Request) -> Response:
        as_json = wants_json(request)
        fields = await read_input(request)
        check_csrf(request, self.cookies, fields)
        sent = fields.get("refresh_token")
        # a refresh cookie the authentication step already rotated on this request: its pair is the answer
        pair: TokenPair | None = None if sent else request.scope["state"].get("refreshed")
        try:
            if pair is None:
                pair = await self._rotate(request, sent or self.cookies.refresh_token(request.cookies))
        except (HTTPError, ServiceError):
            if as_json:
                raise
            # a browser without a live refresh cookie: to the login form, which says why
            response = RedirectResponse("/?notice=session-ended", status_code=303)
            self.cookies.clear_tokens(response)
            return response
        if as_json:
            return json_ok(_pair_json(pair), headers=self._pair_headers(pair))
        response = RedirectResponse("/private", status_code=303)
        self.cookies.set_tokens(response, pair.access_token, pair.expires_in, pair.refresh_token,
                                pair.refresh_expires_in)
        return response

    async def change_password_form(self, request: Request) -> Response:
        await self.require(request)
        return await self.page(request, "change_password.html")

    async def change_password(self, request: Request) -> Response:
        """Change the password knowing the current one. The service ends every session of the account (a
        password change is how a user throws out whoever else got in); this browser, or JSON client, is then
        signed in again with the new password, so it is the one device that stays."""
        as_json = wants_json(request)
        fields = await read_input(request)
        check_csrf(request, self.cookies, fields)
        principal = await self.require(request)
        try:
            current, new = require_fields(fields, "current_password", "new_password")
            await self.service.change_password(principal.user_id, current, new)
            username = await self.username(principal)
            pair = await self.service.login(username, new, ip=_client_ip(request),
                                            user_agent=_user_agent(request),
                                            device=self._device(request, fields))
        except (HTTPError, ServiceError) as error:
            if as_json or isinstance(error, Throttled):
                raise
            problem = problem_of(error)
            if error.code == "invalid_credentials":
                problem = dataclasses.replace(problem, description="Your current password is not right.")
            return await self.pages.problem(request, problem, template="change_password.html")
        if as_json:
            return json_ok({"status": "password_changed", **_pair_json(pair)},
                           headers={"Authorization": f"Bearer {pair.access_token}"})
        response = RedirectResponse("/private?notice=password-changed", status_code=303)
        self.cookies.set_tokens(response, pair.access_token, pair.expires_in, pair.refresh_token,
                                pair.refresh_expires_in)
        self.cookies.set_device(response, pair.device_token, self.config.device_ttl)
        return response

    async def resend_verification(self, request: Request) -> Response:
        fields = await read_input(request)
        check_csrf(request, self.cookies, fields)
        principal = await self.require(request)
        user = await self.service.get_user(principal.user_id)
        if user is None or not user.email:
            raise HTTPError("no_email", "This account has no email address to verify")
        if not user.verified:
            await self.service.send_verification(user.id, ip=_client_ip(request))
        if wants_json(request):
            return json_ok({"status": "sent" if not user.verified else "already_verified"}, status=202)
        return RedirectResponse("/private?notice=verification-sent", status_code=303)

    async def _rotate(self, request: Request, token: str) -> TokenPair:
        if not token:
            raise HTTPError("missing_field", "The field 'refresh_token' is required", field="refresh_token")
        return await self.service.refresh(token, ip=_client_ip(request), user_agent=_user_agent(request),
                                          dpop=sent_dpop_request(request.scope))

    def _pair_headers(self, pair: TokenPair) -> dict[str, str]:
        """``Authorization`` as the client should send it back, and the next DPoP nonce when there is one."""
        headers = {"Authorization": f"{pair.token_type} {pair.access_token}"}
        nonce = self.service.dpop.nonce()
        if nonce is not None:
            headers["DPoP-Nonce"] = nonce
        return headers

    async def register_form(self, request: Request) -> Response:
        return await self.page(request, "register.html")

    async def register(self, request: Request) -> Response:
        as_json = wants_json(request)
        fields = await read_input(request)
        check_csrf(request, self.cookies, fields)
        try:
            username, password = require_fields(fields, "username", "password")
            email = fields.get("email") or None
            user = await self.service.register(username, password, email=email, ip=_client_ip(request))
        except (HTTPError, ServiceError) as error:
            if as_json:
                raise
            return await self.pages.problem(request, problem_of(error), template="register.html",
                                      context={"username": fields.get("username", ""),
                                               "email": fields.get("email", "")})
        if user.email and not user.verified:
            try:
                await self.service.send_verification(user.id)
            except OSError as exc:  # the account exists; the link can be sent again later
                logger.warning("verification mail for user %s not sent: %s", user.id, exc)
        if as_json:
            return json_ok({"id": user.id, "username": user.username, "email": user.email,
                            "verified": user.verified}, status=201, headers={"Location": "/home"})
        notice = f"Account {user.username} created. Sign in below."
        return await self.page(request, "home.html", {"notice": notice}, status=201)

    async def verify(self, request: Request) -> Response:
        token = request.query_params.get("token", "")
        if not token:
            raise HTTPError("missing_field", "The query parameter 'token' is required", field="token",
                            headers=_NO_REFERRER)
        try:
            user = await self.service.verify_email(token)
        except ServiceError as error:
            raise HTTPError("invalid_link", "This link is not valid any more",
                            reason=getattr(error, "reason", error.code), headers=_NO_REFERRER) from None
        if wants_json(request):
            return json_ok({"verified": True, "username": user.username}, headers=_NO_REFERRER)
        text = f"Thank you, {user.username}: your email is confirmed."
        return await self.page(request, "message.html", {"title": "Email confirmed", "text": text},
                         headers=_NO_REFERRER)

    async def forgot_form(self, request: Request) -> Response:
        return await self.page(request, "forgot.html")

    async def forgot(self, request: Request) -> Response:
        fields = await read_input(request)
        check_csrf(request, self.cookies, fields)
        who = fields.get("username") or fields.get("email") or ""
        if not who:
            raise HTTPError("missing_field", "The field 'username' is required", field="username")
        # The same answer, at the same time, whether or not the account exists: the lookup and the mail run
        # after the response is sent, so neither their duration nor their failure can tell (OWASP ASVS 2.5).
        text = "If that account exists, we sent it a link to reset the password."
        response = (json_ok({"status": "sent", "message": text}, status=202) if wants_json(request)
                    else await self.page(request, "message.html", {"title": "Check your email", "text": text},
                                   status=202))
        response.background = BackgroundTask(self._forgot_password, who, _client_ip(request))
        return response

    async def _forgot_password(self, who: str, ip: str) -> None:
        # after the answer, which is the same whatever happens here (a limit reached included)
        try:
            await self.service.forgot_password(who, ip=ip)
        except (ServiceError, StoreUnavailable, OSError) as exc:
            logger.warning("password reset mail not sent: %s: %s", type(exc).__name__, exc)

    async def reset_form(self, request: Request) -> Response:
        token = request.query_params.get("token", "")
        return await self.page(request, "reset.html", {"token": token}, headers=_NO_REFERRER)

    async def reset(self, request: Request) -> Response:
        as_json = wants_json(request)
        fields = await read_input(request)
        check_csrf(request, self.cookies, fields)
        token = fields.get("token") or request.query_params.get("token", "")
        try:
            if not token:
                raise HTTPError("missing_field", "The field 'token' is required", field="token")
            (password,) = require_fields(fields, "password")
            await self.service.reset_password(token, password)
        except (HTTPError, ServiceError) as error:
            if isinstance(error, InvalidToken):
                # a refused link is a bad request parameter, not a failed authentication
                error = HTTPError("invalid_link", str(error), reason=error.reason)
            problem = problem_of(error)
            if as_json:
                return json_response(problem, extra_headers=_NO_REFERRER)
            return await self.pages.problem(request, problem, template="reset.html", context={"token": token},
                                      extra_headers=_NO_REFERRER)
        if as_json:
            return json_ok({"status": "password_reset"}, headers=_NO_REFERRER)
        return await self.page(request, "home.html", {"notice": "Your password was changed. Sign in below."},
                               headers=_NO_REFERRER)

    async def debugger(self, request: Request) -> Response:
        try:
            return await self.page(request, "debugger.html", headers=_NO_REFERRER)
        except jinja2.TemplateNotFound:
            raise HTTPException(404) from None

