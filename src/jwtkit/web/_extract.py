"""Finding a request's access token (header, cookie, query) and the one CSRF rule for cookie credentials.

Both read the raw ASGI scope: they run once per request, in front of every handler, for jwtkit's server
and for users' apps alike.

CSRF rule (OWASP CSRF cheat sheet), for unsafe methods only: a request whose ``Origin`` names another origin
is refused; a request that carries ambient credentials (our cookies) with no same-origin ``Origin`` must
echo the CSRF token (double submit: the ``X-CSRF-Token`` header, or the form field the server reads, equal
to the CSRF cookie). ``Origin: null`` (an opaque origin: a sandboxed frame, a redirect across origins, but
also our own page that sends no referrer, as the password-reset page does) tells nothing either way, so it
always needs the double submit, with or without ambient credentials. A request authenticated by a Bearer
(or DPoP) ``Authorization`` header is exempt: a browser never adds that header across origins by itself. Any
other ``Authorization`` (``Basic ...``) exempts nothing.

DPoP (RFC 9449): ``Authorization: DPoP <token>`` is found like a Bearer token, marked as DPoP; the request's
``DPoP`` headers, method and URL (scheme as the trusted-proxy step left it, the ``Host`` header, the path
as sent) become the :class:`~jwtkit.service.DPoPRequest` the access policy checks the proof against.
"""

from __future__ import annotations

import enum
import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote

from starlette.types import Scope

from jwtkit.service._dpop import DPoPRequest

__all__ = ["SAFE_METHODS", "Extractor", "TokenLocation", "csrf_refused", "dpop_request", "header_token",
           "sent_dpop_request"]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_BEARER = b"bearer "
_DPOP = b"dpop "
_HTTP_SCHEMES = {"ws": "http", "wss": "https"}


class TokenLocation(enum.Enum):
    """Where a request may carry its access token; the middleware looks in the configured order."""

    HEADER = "header"  # Authorization: Bearer <jwt> (RFC 6750 §2.1), or the bare <jwt> the tutorial sends
    COOKIE = "cookie"  # an HttpOnly cookie holding the access token (opt in; unsafe methods pass CSRF)
    QUERY = "query"  # ?access_token=<jwt> (RFC 6750 §2.3); off unless listed: URLs end up in logs


def header_token(value: bytes) -> str | None:
    """The token of an ``Authorization`` value: ``Bearer <jwt>`` (scheme case-insensitive, RFC 7235 §2.1),
    ``DPoP <jwt>`` (see :func:`is_dpop`), or a bare ``<jwt>`` with no scheme at all. Another scheme
    (``Basic ...``) is not ours: None."""
    if value[:7].lower() == _BEARER:
        return value[7:].strip(b" \t").decode("latin-1")
    if value[:5].lower() == _DPOP:
        return value[5:].strip(b" \t").decode("latin-1")
    value = value.strip(b" \t")
    if not value or b" " in value:
        return None
    return value.decode("latin-1")


def cookie_value(cookie_header: bytes, name: bytes) -> str | None:
    """One cookie's value from a ``Cookie`` header, without parsing the others (RFC 6265 §5.4)."""
    for part in cookie_header.split(b";"):
        key, sep, value = part.strip().partition(b"=")
        if sep and key == name:
            return value.strip(b'"').decode("latin-1")
    return None


def is_dpop(value: bytes) -> bool:
    """Whether an ``Authorization`` value uses the DPoP scheme (RFC 9449 §7.1)."""
    return value[:5].lower() == _DPOP


def request_url(scope: Scope) -> str:
    """The absolute URL a request was sent to, as DPoP's ``htu`` names it: the scheme (``ws``/``wss`` as
    ``http``/``https``), the ``Host`` header (else the server's address), and the path as the client sent
    it; no query."""
    scheme = scope.get("scheme", "http")
    scheme = _HTTP_SCHEMES.get(scheme, scheme)
    host = b""
    for name, value in scope["headers"]:
        if name == b"host":
            host = value
            break
    authority = host.decode("latin-1")
    if not authority:
        server = scope.get("server") or ("localhost", None)
        authority = server[0] if server[1] is None else f"{server[0]}:{server[1]}"
    raw = scope.get("raw_path")
    if raw:
        path = raw.split(b"?", 1)[0].decode("latin-1")
    else:
        path = quote(scope.get("root_path", "") + scope["path"])
    return f"{scheme}://{authority}{path}"


def dpop_request(scope: Scope) -> DPoPRequest:
    """The request as the DPoP checks see it: every ``DPoP`` header value, the method and the URL."""
    proofs = tuple(value.decode("latin-1") for name, value in scope["headers"] if name == b"dpop")
    spent = (scope.get("state") or {}).get("dpop_spent") == proofs
    return DPoPRequest(proofs=proofs, htm=scope.get("method", "GET"), htu=request_url(scope), spent=spent)


def sent_dpop_request(scope: Scope) -> DPoPRequest | None:
    """:func:`dpop_request` when the request carries a ``DPoP`` header (a client asking for bound tokens,
    at the token endpoints), else None (bearer tokens)."""
    return dpop_request(scope) if any(name == b"dpop" for name, _ in scope["headers"]) else None


@dataclass(frozen=True, slots=True)
class Found:
    """A token and where it was found; ``dpop`` when it came as ``Authorization: DPoP``."""

    token: str
    location: TokenLocation
    dpop: bool = False


def _validate_cookie_name(name: str, what: str) -> bytes:
    if not name or any(c in name for c in ' =;,"\t\r\n'):
        raise ValueError(f"{what} is not a valid cookie name: {name!r}")
    return name.encode("latin-1")


class Extractor:
    """Finds the access token of a request in the configured locations, in order.

    Args:
        locations: where to look; the first that has a token wins.
        cookie_name: the cookie holding the access token (when COOKIE is listed).
        query_param: the query parameter holding it (when QUERY is listed).

    Raises:
        TypeError, ValueError: on a wrong configuration.
    """

    def __init__(self, locations: Sequence[TokenLocation], *, cookie_name: str, query_param: str) -> None:
        locations = tuple(locations)
        if not locations:
            raise ValueError("locations must name at least one TokenLocation")
        if any(not isinstance(loc, TokenLocation) for loc in locations):
            raise TypeError("locations must be TokenLocation members")
        if len(set(locations)) != len(locations):
            raise ValueError("locations must not repeat")
        if not query_param:
            raise ValueError("query_param must not be empty")
        self.locations = locations
        self.cookie_name = cookie_name
        self.query_param = query_param
        self._cookie_key = _validate_cookie_name(cookie_name, "cookie_name")

    def find(self, scope: Scope) -> Found | None:
        """The first token in the configured locations, or None."""
        authorization = cookie = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == b"cookie":
                # RFC 9113 §8.2.3 lets HTTP/2 split cookies; join them as one header
                cookie = value if cookie is None else cookie + b"; " + value
        for location in self.locations:
            token: str | None = None
            if location is TokenLocation.HEADER:
                if authorization is not None:
                    token = header_token(authorization)
                    if token is not None:  # "Bearer " with nothing after it: a bad token
                        return Found(token, location, is_dpop(authorization))
            elif location is TokenLocation.COOKIE:
                if cookie is not None:
                    token = cookie_value(cookie, self._cookie_key)
            else:
                token = self._query_token(scope.get("query_string", b""))
            if token:
                return Found(token, location)
        return None

    def _query_token(self, query: bytes) -> str | None:
        if not query:
            return None
        try:
            pairs = parse_qsl(query.decode("latin-1"), max_num_fields=64)
        except ValueError:  # more fields than any real client sends: not a token-bearing URL
            return None
        for key, value in pairs:
            if key == self.query_param and value:
                return value
        return None


def _same_origin(origin: bytes, host: bytes) -> bool:
    # Compare the authority only: behind a TLS-terminating proxy the scheme the app sees may differ.
    _, sep, authority = origin.partition(b"://")
    return bool(sep) and bool(host) and authority.lower() == host.lower()


def csrf_refused(
    scope: Scope,
    *,
    ambient_cookies: Iterable[bytes],
    csrf_cookie: bytes | None,
    sent_token: str | None = None,
    bearer_authenticated: bool = False,
) -> bool:
    """The CSRF rule of the module docstring: True when this request must be refused.

    Args:
        scope: the request.
        ambient_cookies: names of the cookies that carry credentials (their presence makes the rule apply).
        csrf_cookie: the double-submit cookie's name, or None (then only a same-origin ``Origin`` passes).
        sent_token: the CSRF token the request echoed in its body (the server's forms); the
            ``X-CSRF-Token`` header is read here.
        bearer_authenticated: the request was authenticated by a Bearer ``Authorization`` header.
    """
    if scope["method"] in SAFE_METHODS or bearer_authenticated:
        return False
    origin = host = cookie = header_token_sent = None
    for name, value in scope["headers"]:
        if name == b"origin":
            origin = value
        elif name == b"host":
            host = value
        elif name == b"cookie":
            cookie = value if cookie is None else cookie + b"; " + value
        elif name == b"x-csrf-token":
            header_token_sent = value.decode("latin-1")
    if origin is not None and origin != b"null":
        return not _same_origin(origin, host or b"")
    if origin is None and (cookie is None or not any(cookie_value(cookie, name) is not None
                                                     for name in ambient_cookies)):
        return False  # no ambient credentials to abuse (a curl or app client)
    if cookie is None:
        return True
    expected = cookie_value(cookie, csrf_cookie) if csrf_cookie is not None else None
    sent = header_token_sent or sent_token
    return not (expected and sent and hmac.compare_digest(expected.encode(), sent.encode()))
