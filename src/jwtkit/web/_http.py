"""Request plumbing for the server: content negotiation, bounded body reading, input parsing, HTTP errors.

Bodies are read with a hard cap (``MAX_BODY``): a declared ``Content-Length`` over it is refused before any
byte is read, and a chunked body is cut off as soon as it passes it. Only ``application/json`` and
``application/x-www-form-urlencoded`` are accepted (415 otherwise); multipart parsing never runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from jwtkit.web._errors import HTTPError

__all__ = ["MAX_BODY", "MAX_FIELD", "MAX_HEADERS", "json_ok", "read_input", "require_fields", "wants_json"]

MAX_BODY = 16 * 1024  # bytes: the largest form or JSON body the API needs is far below this
MAX_HEADERS = 16 * 1024  # bytes of all request header names and values together
# characters in one input field: the core's longest token (jwtkit._jose.jws.MAX_LENGTH, which an ML-DSA-87
# token of about 6.5 KB fits); passwords are capped at 1024 by the service
MAX_FIELD = 8192
MAX_FIELDS = 32


def json_ok(data: object, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """A JSON answer that is not an error (errors go through :func:`._errors.json_response`)."""
    return Response(orjson.dumps(data), status_code=status, headers=headers, media_type="application/json")


def _header(scope: Scope, wanted: bytes) -> bytes:
    for name, value in scope["headers"]:
        if name == wanted:
            return bytes(value)
    return b""


def _media_type(request: Request) -> str:
    return _header(request.scope, b"content-type").decode("latin-1").partition(";")[0].strip().lower()


def wants_json(request: Request | Scope) -> bool:
    """JSON for clients that send a JSON body or ask for JSON; HTML for clients that ask for HTML (browsers);
    JSON for the rest (curl's ``*/*``). Read from the raw scope once per request and kept there."""
    scope = request.scope if isinstance(request, Request) else request
    cached = scope.get("jwtkit.wants_json")
    if cached is not None:
        return bool(cached)
    accept = content_type = b""
    for name, value in scope["headers"]:
        if name == b"accept":
            accept = value.lower()
        elif name == b"content-type":
            content_type = value
    if b"application/json" in accept or \
            content_type.partition(b";")[0].strip().lower() == b"application/json":
        result = True
    else:
        result = b"text/html" not in accept
    scope["jwtkit.wants_json"] = result
    return result


async def _read_body(request: Request) -> bytes:
    # A declared Content-Length over the cap was refused at the edge (_edge.py) before routing; a chunked
    # body is cut off here as soon as it passes the cap.
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise HTTPError("body_too_large", f"The body is larger than {MAX_BODY} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_input(request: Request) -> dict[str, str]:
    """The request's fields from a JSON object or an urlencoded form, as strings.

    Raises:
        HTTPError: ``body_too_large`` (413), ``unsupported_media_type`` (415), ``invalid_json`` (400),
            ``bad_request`` (400: not an object, a non-string field, too many or too long fields).
    """
    media_type = _media_type(request)
    if media_type not in ("application/json", "application/x-www-form-urlencoded", ""):
        raise HTTPError("unsupported_media_type",
                        "Send application/json or application/x-www-form-urlencoded")
    body = await _read_body(request)
    if not body:
        return {}
    data: Any
    if media_type == "application/json" or (media_type == "" and body[:1] in (b"{", b"[")):
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise HTTPError("invalid_json", "The body is not valid JSON") from None
        if not isinstance(data, dict):
            raise HTTPError("invalid_json", "The body must be a JSON object")
        items = list(data.items())
    else:
        try:
            items = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False,
                              max_num_fields=MAX_FIELDS)
        except (UnicodeDecodeError, ValueError):
            raise HTTPError("bad_request", "The form cannot be parsed") from None
    if len(items) > MAX_FIELDS:
        raise HTTPError("bad_request", "Too many fields")
    fields: dict[str, str] = {}
    for key, value in items:
        if value is None:
            continue
        if not isinstance(value, str):
            raise HTTPError("bad_request", f"The field {key!r} must be a string", field=str(key)[:64])
        if len(value) > MAX_FIELD:
            raise HTTPError("bad_request", f"The field {key!r} is too long", field=str(key)[:64])
        fields[key] = value
    return fields


def require_fields(fields: dict[str, str], *names: str) -> list[str]:
    """The named fields' values, or ``missing_field`` (400) naming the first one absent or empty."""
    values = []
    for name in names:
        value = fields.get(name, "")
        if not value:
            raise HTTPError("missing_field", f"The field {name!r} is required", field=name)
        values.append(value)
    return values
