"""The OpenAPI 3.1 description of the server's JSON API, written by hand next to the handlers it documents.

Hand-written rather than generated: the routes negotiate HTML or JSON on one path, which generators do not
express, and the error codes are a contract worth reading in one place (``errors.STATUS``). Each error
answer's ``error`` is one of the codes that table gives its status, so the document cannot name a code the
server does not have.

It is meant to be exact, not just indicative: every status an operation can answer (the edge's limits
included: 408, 413, 415, 431, 503 ``overloaded``), every field of every body (``additionalProperties:
false``), the headers that come with them (``Retry-After``, ``WWW-Authenticate``), and links between
operations for stateful clients and fuzzers. ``tests/web/test_fuzz_openapi.py`` holds the server to it with
schemathesis.
"""

from __future__ import annotations

import copy
from typing import Any

from jwtkit.web._edge import BODY_TIMEOUT
from jwtkit.web._errors import STATUS
from jwtkit.web._http import MAX_BODY, MAX_FIELD, MAX_FIELDS, MAX_HEADERS

__all__ = ["openapi_document"]

_ERROR: dict[str, Any] = {
    "type": "object",
    "required": ["error", "error_description"],
    "additionalProperties": False,
    "properties": {
        "error": {"type": "string", "description": "A stable code, e.g. invalid_token, missing_field"},
        "error_description": {"type": "string", "description": "A sentence for people"},
        "reason": {"type": "string", "description": "For invalid_token: expired, revoked, signature, "
                                                    "wrong_type, claim, disabled, agent, ...; for "
                                                    "invalid_link: used, stale, expired, ..."},
        "field": {"type": "string", "description": "The input field at fault"},
    },
}


def _pair_schema(*extra: str) -> dict[str, Any]:
    """A token pair's JSON, with the named extra fields (strings, always present)."""
    properties: dict[str, Any] = {
        "access_token": {"type": "string"},
        "token_type": {"enum": ["Bearer", "DPoP"],
                       "description": "DPoP when the request sent a DPoP proof: the tokens are bound to it"},
        "expires_in": {"type": "integer", "minimum": 0, "description": "seconds"},
        "refresh_token": {"type": "string"},
        "refresh_expires_in": {"type": "integer", "minimum": 0, "description": "seconds"},
    }
    for name in extra:
        properties[name] = {"type": "string"}
    return {"type": "object", "required": list(properties), "additionalProperties": False,
            "properties": properties}


_SIGN_IN = _pair_schema("device_token")
_SIGN_IN["properties"]["device_token"]["description"] = (
    "The known-device token: send it back as the device_token field of the next sign-in from this device, "
    "whose failures then count against this device alone")
_CHANGED = _pair_schema("device_token", "status")
_CHANGED["properties"]["status"] = {"const": "password_changed"}
_SESSION = {
    "type": "object",
    "required": ["sid", "created", "last_used", "expires", "user_agent", "ip", "current"],
    "additionalProperties": False,
    "properties": {
        "sid": {"type": "string"}, "created": {"type": "number"}, "last_used": {"type": "number"},
        "expires": {"type": "number"}, "user_agent": {"type": "string"}, "ip": {"type": "string"},
        "current": {"type": "boolean"},
    },
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _strict(required: tuple[str, ...] = (), **properties: Any) -> dict[str, Any]:
    """An object with exactly these properties (the ``required`` ones always present)."""
    return {"type": "object", "required": list(required), "additionalProperties": False,
            "properties": properties}


_FIELD = {"type": ["string", "null"], "maxLength": MAX_FIELD, "description": "null counts as absent"}


def _input(*required: str, optional: tuple[str, ...] = (), one_of: tuple[str, ...] = (),
           body_required: bool = True) -> dict[str, Any]:
    """A request body of string fields, as JSON or as a form; other string fields are ignored (a page's
    ``csrf_token``), anything else is refused (400 ``bad_request``). ``one_of``: at least one of these."""
    schema: dict[str, Any] = {"type": "object", "required": list(required), "maxProperties": MAX_FIELDS,
                              "properties": {name: dict(_FIELD) for name in (*required, *optional)},
                              "additionalProperties": dict(_FIELD)}
    if one_of:
        schema["anyOf"] = [{"required": [name]} for name in one_of]
    return {"required": body_required,
            "content": {"application/json": {"schema": schema},
                        "application/x-www-form-urlencoded": {"schema": schema}}}


def _header(description: str, schema: dict[str, Any] | None = None, *,
            required: bool = True) -> dict[str, Any]:
    return {"description": description, "required": required, "schema": schema or {"type": "string"}}


_RETRY_AFTER = {"Retry-After": _header("Seconds to wait", {"type": "integer", "minimum": 1})}
_NONCE = {"DPoP-Nonce": _header("The server's DPoP nonce, for the next proofs (RFC 9449 §8)", required=False)}
_AUTHORIZATION = {"Authorization": _header("Bearer <access_token>, or DPoP <access_token> for bound tokens"),
                  **_NONCE}
# RFC 9449 §5: a proof at the token endpoints binds the tokens issued to its key
_DPOP_PROOF = [{"name": "DPoP", "in": "header", "required": False, "schema": {"type": "string"},
                "description": "A DPoP proof (RFC 9449) for this request: the tokens are bound to its key"}]


def _answer(description: str, schema: dict[str, Any] | None = None,
            headers: dict[str, Any] | None = None, links: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description}
    if schema is not None:
        answer["content"] = {"application/json": {"schema": schema}}
    if headers:
        answer["headers"] = headers
    if links:
        answer["links"] = links
    return answer


def _page(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/html": {"schema": {"type": "string"}}}}


# What each status means on the whole; an operation can say more (which codes, when).
_MEANING = {
    400: "Bad input",
    401: "Not authenticated",
    403: "Refused",
    404: "Not found",
    408: f"The body did not arrive within {BODY_TIMEOUT:.0f} s of the request's start (request_timeout)",
    409: "Conflict",
    413: f"A body over {MAX_BODY // 1024} KiB (body_too_large)",
    415: "Not JSON or a form (unsupported_media_type)",
    429: "Throttled (throttled); see Retry-After",
    431: f"Request headers over {MAX_HEADERS // 1024} KiB in total (headers_too_large)",
    503: "The session store is unavailable (store_unavailable: fail closed), or too many requests are in "
         "flight (overloaded); see Retry-After",
}


def _error_body(status: int) -> dict[str, Any]:
    body = copy.deepcopy(_ERROR)
    body["properties"]["error"]["enum"] = sorted(code for code, code_status in STATUS.items()
                                                 if code_status == status)
    return body


def _errors(*statuses: int, **said: str) -> dict[str, Any]:
    """The error answers of an operation: its statuses, each with one error body (its ``error`` one of the
    codes STATUS gives that status), ``WWW-Authenticate`` on 401 and ``Retry-After`` on 429 and 503.
    ``said`` refines a status's description, keyed ``s400`` and so on."""
    answers: dict[str, Any] = {}
    for status in sorted(statuses):
        headers: dict[str, Any] = {}
        if status == 401:
            headers["WWW-Authenticate"] = _header(
                'Bearer[ error="invalid_token", error_description="..."], or for DPoP (RFC 9449 §7.1) '
                'DPoP error="invalid_token"|"invalid_dpop_proof"|"use_dpop_nonce", error_description="...", '
                'algs="..."')
            headers.update(_NONCE)
        elif status == 400:
            headers.update(_NONCE)  # with use_dpop_nonce, at the token endpoints
        elif status in (429, 503):
            headers.update(_RETRY_AFTER)
        description = said.get(f"s{status}") or _MEANING[status]
        answers[str(status)] = _answer(description, _error_body(status), headers)
    return answers


# Every request can meet the edge's limits, before any routing: 400 for a Content-Length that is not a
# number, 413 for a declared body over the cap, 431 for headers over theirs, 503 past the concurrency limit
# (and, on routes that need the store, while it is down). A route that reads a body adds 408, 415, its 400s
# and, being an unsafe method, 403 csrf_failed.
_EDGE = (400, 413, 431, 503)
_BODY = (*_EDGE, 403, 408, 415)
_EDGE_400 = "A Content-Length that is not a number (bad_request)"
_BODY_400 = ("Bad input: invalid_json, bad_request (not an object, a field that is not a string, over "
             f"{MAX_FIELDS} fields or {MAX_FIELD} characters in one), missing_field")
_CSRF_403 = ("Cross-site request refused (csrf_failed): a cookie-authenticated request from another origin "
             "or without the CSRF token")
_SIGNED_IN_401 = "No access token (missing_token) or a refused one (invalid_token, with a reason)"

_AUTHED: list[dict[str, list[str]]] = [{"bearer": []}, {"dpop": []}, {"cookie": []}]
_MAYBE_AUTHED: list[dict[str, list[str]]] = [{}, *_AUTHED]


def _with_pair(source: str) -> dict[str, Any]:
    """Links from an answer that carries a token pair (and an ``Authorization`` header) to what it opens."""
    bearer = {"header.Authorization": "$response.header.Authorization"}
    return {
        "private": {"operationId": "private", "parameters": bearer,
                    "description": f"The access token of {source} opens /private"},
        "sessions": {"operationId": "listSessions", "parameters": bearer},
        "logout": {"operationId": "logout", "parameters": bearer},
        "logoutAll": {"operationId": "logoutAll", "parameters": bearer},
        "resendVerification": {"operationId": "resendVerification", "parameters": bearer},
        "refresh": {"operationId": "refresh",
                    "requestBody": {"refresh_token": "$response.body#/refresh_token"},
                    "description": f"The refresh token of {source} rotates once; presented again, it is "
                                   "refresh_reused and ends its session"},
    }


_DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "jwtkit server", "version": "0.1.0",
             "description": "Send `Accept: application/json` or a JSON body to get JSON; browsers get pages "
                            "(the `text/html` answers below). A cookie-authenticated unsafe request must "
                            "echo the CSRF cookie in `X-CSRF-Token` or a `csrf_token` field. Every route "
                            "also answers 405 `method_not_allowed` to a method it does not have."},
    "components": {
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            "dpop": {"type": "http", "scheme": "DPoP", "bearerFormat": "JWT",
                     "description": "A DPoP-bound token (RFC 9449): `Authorization: DPoP <token>` with "
                                    "a `DPoP` proof header for each request"},
            "cookie": {"type": "apiKey", "in": "cookie", "name": "__Host-jwtkit",
                       "description": "`jwtkit` when the server runs with --no-secure-cookies"},
        },
        "schemas": {"Error": _ERROR, "TokenPair": _pair_schema(), "SignIn": _SIGN_IN, "Session": _SESSION},
    },
    "paths": {
        "/auth": {"post": {
            "operationId": "signIn", "summary": "Sign in", "parameters": _DPOP_PROOF,
            "requestBody": _input("username", "password", optional=("device_token",)),
            "responses": {
                "200": _answer("Tokens, and a new known-device token", _ref("SignIn"), {
                    **_AUTHORIZATION, "Set-Cookie": _header("The known-device cookie, for browsers",
                                                            required=False)}, _with_pair("the sign-in")),
                **_errors(*_BODY, 401, 429, s400=_BODY_400,
                          s401="Wrong username or password, or a disabled account (invalid_credentials)",
                          s403=f"Refused: account_unverified (after the right password), or {_CSRF_403}",
                          s429="Too many failed sign-ins for this account from unknown devices, for this "
                               "known device, or from this client address (throttled); see Retry-After")}}},
        "/private": {"get": {
            "operationId": "private", "summary": "A protected resource", "security": _AUTHED,
            "responses": {
                "200": _answer("The principal", _strict(
                    ("message", "user_id", "session_id", "expires"), message={"type": "string"},
                    user_id={"type": "string"}, session_id={"type": "string"}, expires={"type": "integer"})),
                **_errors(*_EDGE, 401, s400=_EDGE_400, s401=_SIGNED_IN_401)}}},
        "/logout": {"post": {
            "operationId": "logout", "summary": "End this session (idempotent: no token, or a dead one, is "
                                                "signed out already; an expired one still ends its session)",
            "security": _MAYBE_AUTHED,
            "responses": {"204": _answer("Signed out; the token cookies are cleared", headers={
                "Clear-Site-Data": _header('"cache"')}),
                **_errors(*_BODY, s400=_BODY_400, s403=_CSRF_403)}}},
        "/logout/all": {"post": {
            "operationId": "logoutAll", "summary": "End every session of the account", "security": _AUTHED,
            "responses": {"204": _answer("Signed out everywhere; the token cookies are cleared", headers={
                "Clear-Site-Data": _header('"cache"')}),
                **_errors(*_BODY, 401, s400=_BODY_400, s401=_SIGNED_IN_401, s403=_CSRF_403)}}},
        "/sessions": {"get": {
            "operationId": "listSessions", "summary": "The account's active sessions, newest first",
            "security": _AUTHED,
            "responses": {
                "200": _answer("Sessions", _strict(("sessions",), sessions={
                    "type": "array", "items": _ref("Session")}), links={
                    "revoke": {"operationId": "revokeSession",
                               "parameters": {"path.sid": "$response.body#/sessions/0/sid"},
                               "description": "The newest session, by its sid"}}),
                **_errors(*_EDGE, 401, s400=_EDGE_400, s401=_SIGNED_IN_401)}}},
        "/sessions/{sid}": {"delete": {
            "operationId": "revokeSession", "summary": "End one of the account's own sessions",
            "security": _AUTHED,
            "parameters": [{"name": "sid", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {
                "204": _answer("Ended (when it was this session, the token cookies are cleared)"),
                **_errors(*_EDGE, 401, 403, 404, s400=_EDGE_400, s401=_SIGNED_IN_401, s403=_CSRF_403,
                          s404="No active session of this account has that sid (not_found)")}}},
        "/refresh": {"post": {
            "operationId": "refresh",
            "summary": "Rotate a refresh token: the presented one is spent; presented again, it ends its "
                       "session",
            "description": "Browsers send no field: their refresh cookie, `__Host-jwtkit-refresh` "
                           "(`jwtkit-refresh` with --no-secure-cookies), is read instead, with the CSRF rule "
                           "of every cookie-authenticated request.",
            "parameters": _DPOP_PROOF, "requestBody": _input("refresh_token"),
            "responses": {
                "200": _answer("New tokens", _ref("TokenPair"), _AUTHORIZATION, _with_pair("the rotation")),
                **_errors(*_BODY, 401, s400=_BODY_400,
                          s401="refresh_reused (the session is ended), session_revoked, token_expired, "
                               "invalid_token", s403=_CSRF_403)}}},
        "/register": {
            "get": {"operationId": "registerPage", "summary": "The sign-up form (a page)",
                    "responses": {"200": _page("The form"), **_errors(*_EDGE, s400=_EDGE_400)}},
            "post": {
                "operationId": "register", "summary": "Create an account; with an email address, mail its "
                                                      "verification link",
                "requestBody": _input("username", "password", optional=("email",)),
                "responses": {
                    "201": _answer("Created", _strict(
                        ("id", "username", "email", "verified"), id={"type": "string"},
                        username={"type": "string"}, email={"type": ["string", "null"]},
                        verified={"type": "boolean"}), {"Location": _header("/home")}),
                    **_errors(*_BODY, 409, 429,
                              s400=_BODY_400 + ", invalid_username, weak_password, invalid_email",
                              s409="The username, or a look-alike of it, is taken (username_taken)",
                              s429="10 registrations an hour per client address (throttled); see "
                                   "Retry-After")}}},
        "/verify": {"get": {
            "operationId": "verifyEmail", "summary": "Confirm an email address with its mailed link (once)",
            "parameters": [{"name": "token", "in": "query", "required": True, "schema": {"type": "string"}}],
            "responses": {
                "200": _answer("Verified", _strict(("verified", "username"), verified={"const": True},
                                                   username={"type": "string"}),
                               {"Referrer-Policy": _header("no-referrer")}),
                **_errors(*_EDGE, s400="missing_field (no token), invalid_link (a reason: used, stale, "
                                       "expired, wrong_type, ...), or " + _EDGE_400)}}},
        "/verify/resend": {"post": {
            "operationId": "resendVerification", "summary": "Mail a new email-verification link",
            "security": _AUTHED,
            "responses": {
                "202": _answer("Sent, or nothing to do: the address is verified", _strict(
                    ("status",), status={"type": "string", "enum": ["sent", "already_verified"]})),
                **_errors(*_BODY, 401, 409, 429, s400=_BODY_400, s401=_SIGNED_IN_401, s403=_CSRF_403,
                          s409="The account has no email address (no_email)",
                          s429="3 mails an hour per account, 20 per client address (throttled); see "
                               "Retry-After")}}},
        "/password/forgot": {
            "get": {"operationId": "forgotPasswordPage", "summary": "The forgot-password form (a page)",
                    "responses": {"200": _page("The form"), **_errors(*_EDGE, s400=_EDGE_400)}},
            "post": {
                "operationId": "forgotPassword",
                "summary": "Mail a reset link to the account named by username (or email); the same answer, "
                           "at the same time, whether or not it exists, and past the limits (3 mails an hour "
                           "per account, 20 requests per client address), when no mail is sent",
                "requestBody": _input(optional=("username", "email"), one_of=("username", "email")),
                "responses": {
                    "202": _answer("Accepted", _strict(("status", "message"), status={"const": "sent"},
                                                       message={"type": "string"})),
                    **_errors(*_BODY, s400=_BODY_400 + " (neither username nor email)",
                              s403=_CSRF_403)}}},
        "/password/reset": {
            "get": {"operationId": "resetPasswordPage",
                    "summary": "The reset link's new-password form (a page)",
                    "parameters": [{"name": "token", "in": "query", "required": False,
                                    "schema": {"type": "string"}}],
                    "responses": {"200": _page("The form"), **_errors(*_EDGE, s400=_EDGE_400)}},
            "post": {
                "operationId": "resetPassword",
                "summary": "Set a new password with a reset link's token (once); every session ends",
                "requestBody": _input("token", "password"),
                "responses": {
                    "200": _answer("Password changed",
                                   _strict(("status",), status={"const": "password_reset"}),
                                   {"Referrer-Policy": _header("no-referrer")}),
                    **_errors(*_BODY, s400=_BODY_400 + ", invalid_link (with a reason), weak_password",
                              s403=_CSRF_403)}}},
        "/password/change": {
            "get": {"operationId": "changePasswordPage", "summary": "The change-password form (a page)",
                    "security": _AUTHED,
                    "responses": {"200": _page("The form"),
                                  **_errors(*_EDGE, 401, s400=_EDGE_400, s401=_SIGNED_IN_401)}},
            "post": {
                "operationId": "changePassword",
                "summary": "Change the password knowing the current one: every session ends, and the caller "
                           "gets a new pair",
                "security": _AUTHED, "requestBody": _input("current_password", "new_password"),
                "responses": {
                    "200": _answer("Password changed; new tokens", _CHANGED, _AUTHORIZATION,
                                   _with_pair("the new sign-in")),
                    **_errors(*_BODY, 401, 429, s400=_BODY_400 + ", weak_password",
                              s401=_SIGNED_IN_401 + ", or a wrong current password (invalid_credentials)",
                              s403=_CSRF_403,
                              s429="Too many wrong current passwords, counted with the account's failed "
                                   "sign-ins (throttled); see Retry-After")}}},
        "/.well-known/jwks.json": {"get": {
            "operationId": "jwks", "summary": "Public verification keys (RFC 7517); empty for HMAC",
            "responses": {
                "200": _answer("JWKS", {"type": "object", "required": ["keys"], "properties": {
                    "keys": {"type": "array", "items": {"type": "object"}}}},
                    {"Cache-Control": _header("public, max-age=300")}),
                **_errors(*_EDGE, s400=_EDGE_400, s503="Too many requests in flight (overloaded)")}}},
        "/healthz": {"get": {
            "operationId": "health", "summary": "Store reachability, and whether the service is open",
            "responses": {
                "200": _answer("Healthy", _strict(
                    ("status", "store", "mirror"), status={"const": "ok"}, store={"const": "ok"},
                    mirror={"type": "string", "enum": ["off", "current", "stale"]})),
                **_errors(*_EDGE, s400=_EDGE_400)}}},
    },
}
# /healthz answers 503 with a body of its own, unless the edge refused the request first (overloaded)
_UNHEALTHY = _DOCUMENT["paths"]["/healthz"]["get"]["responses"]["503"]
_UNHEALTHY["description"] = ("The store does not answer (unavailable) or the service is not open yet "
                             "(starting), or too many requests are in flight (overloaded); see Retry-After")
_UNHEALTHY["content"]["application/json"]["schema"] = {"anyOf": [
    _strict(("status", "store"), status={"type": "string", "enum": ["unavailable", "starting"]},
            store={"type": "string", "enum": ["unavailable", "ok"]}),
    _error_body(503)]}


def openapi_document() -> dict[str, Any]:
    """A fresh copy of the OpenAPI 3.1 document (callers may modify it)."""
    return copy.deepcopy(_DOCUMENT)
