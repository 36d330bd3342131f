"""The OpenAPI 3.1 description of the server's JSON API, written by hand next to the handlers it documents.

Hand-written rather than generated: the routes negotiate HTML or JSON on one path, which generators do not
express, and the error codes are a contract worth reading in one place (``errors.STATUS``).
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["openapi_document"]

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "description": "A stable code, e.g. invalid_token, missing_field"},
        "reason": {"type": "string", "description": "For invalid_token: expired, revoked, signature, "
                                                    "wrong_type, claim, disabled, agent, ...; for "
                                                    "invalid_link: used, stale, expired, ..."},
        "error_description": {"type": "string"},
        "field": {"type": "string", "description": "The input field at fault"},
    },
}
_PAIR = {
    "type": "object",
    "required": ["access_token", "token_type", "expires_in", "refresh_token"],
    "properties": {
        "access_token": {"type": "string"},
        "token_type": {"const": "Bearer"},
        "expires_in": {"type": "integer", "description": "seconds"},
        "refresh_token": {"type": "string"},
        "refresh_expires_in": {"type": "integer", "description": "seconds"},
    },
}
_SESSION = {
    "type": "object",
    "properties": {
        "sid": {"type": "string"}, "created": {"type": "number"}, "last_used": {"type": "number"},
        "expires": {"type": "number"}, "user_agent": {"type": "string"}, "ip": {"type": "string"},
        "current": {"type": "boolean"},
    },
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema},
                                          "application/x-www-form-urlencoded": {"schema": schema}}}


def _object(*required: str, optional: tuple[str, ...] = ()) -> dict[str, Any]:
    props = {name: {"type": "string"} for name in (*required, *optional)}
    return {"type": "object", "required": list(required), "properties": props}


def _answer(description: str, schema: dict[str, Any] | None = None,
            headers: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description}
    if schema is not None:
        answer["content"] = {"application/json": {"schema": schema}}
    if headers:
        answer["headers"] = headers
    return answer


def _errors(*statuses: int) -> dict[str, Any]:
    text = {400: "Bad input (missing_field, invalid_json, weak_password, invalid_link with a reason: "
                 "used, stale, expired, wrong_type, ...)",
            401: "Not authenticated (missing_token, invalid_token with a reason, invalid_credentials)",
            403: "Refused (csrf_failed: a cookie-authenticated request from another origin or without the "
                 "CSRF token; account_unverified)", 404: "Not found",
            409: "Conflict (username_taken; no_email: the account has no address to verify)",
            413: "Body over 16 KiB", 415: "Not JSON or a form", 429: "Throttled; see Retry-After",
            503: "The session store is unavailable (fail closed); see Retry-After"}
    answers = {str(code): _answer(text[code], _ref("Error")) for code in statuses}
    if "401" in answers:
        answers["401"]["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"},
                                                          "description": 'Bearer[ error="invalid_token"]'}}
    return answers


_AUTHED: list[dict[str, list[str]]] = [{"bearer": []}, {"cookie": []}]

_DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "jwtkit server", "version": "0.1.0",
             "description": "Send `Accept: application/json` or a JSON body to get JSON; "
                            "browsers get pages."},
    "components": {
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            "cookie": {"type": "apiKey", "in": "cookie", "name": "__Host-jwtkit"},
        },
        "schemas": {"Error": _ERROR, "TokenPair": _PAIR, "Session": _SESSION},
    },
    "paths": {
        "/auth": {"post": {
            "summary": "Log in", "requestBody": _json_body(_object("username", "password")),
            "responses": {"200": _answer("Tokens", _ref("TokenPair"), {
                "Authorization": {"schema": {"type": "string"}, "description": "Bearer <access_token>"}}),
                **_errors(400, 401, 403, 413, 415, 429, 503)}}},
        "/private": {"get": {
            "summary": "A protected resource", "security": _AUTHED,
            "responses": {"200": _answer("The principal", {"type": "object", "properties": {
                "user_id": {"type": "string"}, "session_id": {"type": "string"},
                "expires": {"type": "number"}, "message": {"type": "string"}}}), **_errors(401, 503)}}},
        "/logout": {"post": {"summary": "Revoke this session (idempotent)", "security": _AUTHED,
                             "responses": {"204": _answer("Logged out"), **_errors(403, 503)}}},
        "/logout/all": {"post": {"summary": "Revoke every session of the user", "security": _AUTHED,
                                 "responses": {"204": _answer("Logged out everywhere"), **_errors(401,
                                                                                                  503)}}},
        "/sessions": {"get": {"summary": "The user's active sessions", "security": _AUTHED,
                              "responses": {"200": _answer("Sessions", {"type": "object", "properties": {
                                  "sessions": {"type": "array", "items": _ref("Session")}}}),
                                  **_errors(401, 503)}}},
        "/sessions/{sid}": {"delete": {
            "summary": "Revoke one of the user's sessions", "security": _AUTHED,
            "parameters": [{"name": "sid", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"204": _answer("Revoked"), **_errors(401, 403, 404, 503)}}},
        "/refresh": {"post": {
            "summary": "Rotate a refresh token; a reused one revokes its family",
            "requestBody": _json_body(_object("refresh_token")),
            "responses": {"200": _answer("New tokens", _ref("TokenPair")), **_errors(400, 401, 503)}}},
        "/register": {"post": {
            "summary": "Create an account", "requestBody": _json_body(_object("username", "password",
                                                                              optional=("email",))),
            "responses": {"201": _answer("Created", {"type": "object", "properties": {
                "id": {"type": "string"}, "username": {"type": "string"},
                "email": {"type": ["string", "null"]}, "verified": {"type": "boolean"}}}),
                **_errors(400, 409, 413, 415, 503)}}},
        "/verify": {"get": {
            "summary": "Confirm an email address",
            "parameters": [{"name": "token", "in": "query", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": _answer("Verified"), **_errors(400, 503)}}},
        "/password/forgot": {"post": {
            "summary": "Mail a reset link; the same answer whether or not the account exists",
            "requestBody": _json_body(_object("username")),
            "responses": {"202": _answer("Accepted"), **_errors(400, 503)}}},
        "/password/reset": {"post": {
            "summary": "Set a new password with a reset token", "requestBody": _json_body(
                _object("token", "password")),
            "responses": {"200": _answer("Password changed"), **_errors(400, 503)}}},
        "/password/change": {"post": {
            "summary": "Change the password knowing the current one: every session ends, and the caller gets "
                       "a new pair", "security": _AUTHED,
            "requestBody": _json_body(_object("current_password", "new_password")),
            "responses": {"200": _answer("Password changed; new tokens", _ref("TokenPair")),
                          **_errors(400, 401, 403, 429, 503)}}},
        "/verify/resend": {"post": {
            "summary": "Mail a new email-verification link", "security": _AUTHED,
            "responses": {"202": _answer("Sent, or already verified", {"type": "object", "properties": {
                "status": {"type": "string", "enum": ["sent", "already_verified"]}}}),
                **_errors(401, 403, 409, 503)}}},
        "/.well-known/jwks.json": {"get": {"summary": "Public verification keys (RFC 7517); empty for HMAC",
                                           "responses": {"200": _answer("JWKS", {"type": "object"})}}},
        "/healthz": {"get": {"summary": "Store reachability", "responses": {
            "200": _answer("Healthy", {"type": "object", "properties": {
                "status": {"type": "string"}, "store": {"type": "string"},
                "mirror": {"type": "string", "enum": ["off", "current", "stale"]}}}),
            "503": _answer("Store unavailable")}}},
    },
}


def openapi_document() -> dict[str, Any]:
    """A fresh copy of the OpenAPI 3.1 document (callers may modify it)."""
    return copy.deepcopy(_DOCUMENT)
