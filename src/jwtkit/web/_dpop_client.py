"""The client's side of DPoP (RFC 9449): an ``httpx.Auth`` that holds a key and signs a proof per request.

Example:
    auth = DPoPAuth()                                  # a new ES256 key, kept in memory
    with httpx.Client(base_url="https://api.example", auth=auth) as client:
        pair = client.post("/auth", json={"username": "alice", "password": "..."}).json()
        auth.access_token = pair["access_token"]       # bound to auth.key: useless to anyone else
        client.get("/private")                         # Authorization: DPoP <token>, DPoP: <proof>
        pair = client.post("/refresh", json={"refresh_token": pair["refresh_token"]}).json()
        auth.access_token = pair["access_token"]
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from urllib.parse import urlsplit

import httpx

from jwtkit import Key
from jwtkit.service._dpop import make_dpop_proof

__all__ = ["DPoPAuth"]


class DPoPAuth(httpx.Auth):
    """Sign a DPoP proof for every request (``htm``, ``htu``, a fresh ``jti`` and ``iat``, and ``ath`` when
    there is an access token), send the access token as ``Authorization: DPoP``, keep the server's
    ``DPoP-Nonce`` per origin, and retry once when the server answers ``use_dpop_nonce``.

    Args:
        key: the client's private key (asymmetric); by default a new ES256 key. Keep it for as long as the
            tokens bound to it: a new key cannot use them.
        access_token: the DPoP-bound access token to send, if any (settable later: ``auth.access_token``).
        clock: the time the proofs' ``iat`` is taken from (default: the wall clock).

    Raises:
        ValueError: an HMAC or public key.
    """

    requires_response_body = True  # a 400 use_dpop_nonce says so in its body

    def __init__(self, key: Key | None = None, *, access_token: str | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        key = key if key is not None else Key.generate("ES256")
        if key.is_symmetric or not key.can_sign:
            raise ValueError("DPoP needs a private asymmetric key")
        self.key = key
        self.access_token = access_token
        self.nonces: dict[str, str] = {}  # origin -> the last DPoP-Nonce it sent
        self.clock = clock

    def __repr__(self) -> str:
        return f"DPoPAuth(key={self.key.alg}/{self.key.thumbprint()}, token={self.access_token is not None})"

    def _sign(self, request: httpx.Request, origin: str) -> None:
        token = self.access_token
        request.headers["DPoP"] = make_dpop_proof(self.key, htm=request.method, htu=str(request.url),
                                                  access_token=token, nonce=self.nonces.get(origin),
                                                  now=self.clock())
        if token is not None:
            request.headers["Authorization"] = f"DPoP {token}"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        parts = urlsplit(str(request.url))
        origin = f"{parts.scheme}://{parts.netloc}".lower()
        self._sign(request, origin)
        response = yield request
        nonce = response.headers.get("DPoP-Nonce")
        if nonce:
            self.nonces[origin] = nonce
        if nonce and _asks_for_nonce(response):
            self._sign(request, origin)  # a new proof (new jti) with the nonce
            response = yield request
            nonce = response.headers.get("DPoP-Nonce")
            if nonce:
                self.nonces[origin] = nonce


def _asks_for_nonce(response: httpx.Response) -> bool:
    """RFC 9449 §8 (a token endpoint: 400 with ``"error": "use_dpop_nonce"``) and §9 (a resource: 401 with
    ``WWW-Authenticate: DPoP error="use_dpop_nonce"``)."""
    if response.status_code == 401:
        return 'error="use_dpop_nonce"' in response.headers.get("WWW-Authenticate", "")
    if response.status_code == 400:
        try:
            body = response.json()
        except ValueError:
            return False
        return isinstance(body, dict) and body.get("error") == "use_dpop_nonce"
    return False
