"""DPoP (RFC 9449): proofs of possession that bind tokens to a key the client holds.

A client signs a small JWT (the proof: ``typ: dpop+jwt``, its public key in the header's ``jwk``) for every
request; the server binds the tokens it issues to that key's RFC 7638 thumbprint (``cnf.jkt``) and, on every
later request, wants a fresh proof signed by the same key. A token copied out of a log or a proxy is then
useless without the private key.

- :func:`read_dpop_proof` is every stateless check of RFC 9449 §4.3: one proof, a well-formed JWT of type
  ``dpop+jwt``, an allowed asymmetric ``alg``, a public ``jwk`` bound to that ``alg`` (nothing private in
  it), the signature, ``htm``, ``htu`` (after RFC 3986 §6.2.2/6.2.3 normalisation, without query and
  fragment), ``iat`` inside the window, and ``ath`` equal to the access token's hash.
- :class:`DPoPVerifier` adds what needs state or configuration: the ``jti`` replay cache (the store's
  ``consume``, so a proof replayed on another node is refused too), the key's thumbprint against
  ``cnf.jkt``, and the nonce when one is required.
- :class:`DPoPNonces`: stateless nonces, an HMAC of a time step under a server secret, so that any node
  holding the secret checks any node's nonce with no shared state.
- :func:`make_dpop_proof`: the client's side (the ``httpx`` helper and ``jwtkit dpop proof`` use it).

This module is light (no argon2, sqlite3 or web imports): the middleware and client helpers import it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
import secrets
import struct
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from jwtkit import JWTError, Key, decode
from jwtkit._jose.jws import parse, sign_compact
from jwtkit._jose.strictjson import dumps
from jwtkit.service._errors import InvalidDPoPProof, UseDPoPNonce
from jwtkit.store._base import Store

__all__ = [
    "DEFAULT_DPOP_ALGORITHMS",
    "DPOP_TYP",
    "DPoPNonces",
    "DPoPProof",
    "DPoPRequest",
    "DPoPVerifier",
    "access_token_hash",
    "make_dpop_proof",
    "normalize_htu",
    "read_dpop_proof",
]

DPOP_TYP = "dpop+jwt"
#: Asymmetric algorithms only (RFC 9449 §4.3: no MAC, no ``none``); the core's table decides the rest.
#: ML-DSA-87 is left out: its proof (about 11 KB, the public key inside) and a token exceed the server's
#: 16 KiB of request headers.
DEFAULT_DPOP_ALGORITHMS = ("ES256", "ES384", "ES512", "EdDSA", "Ed25519", "PS256", "PS384", "PS512",
                           "RS256", "RS384", "RS512", "ML-DSA-44", "ML-DSA-65")
_SYMMETRIC = frozenset({"HS256", "HS384", "HS512"})
# A proof is one header value: a P-256 proof is about 500 octets, an RSA-4096 one about 1.5 KiB, an
# ML-DSA-65 one about 8 KiB.
MAX_PROOF_LENGTH = 10240
MAX_JTI_LENGTH = 256
# JWK members that carry private key material, in any key type (RFC 7518 §6, RFC 8037 §2, RFC 9964)
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k", "priv", "seed"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_UNRESERVED = "-._~"
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")


@dataclass(frozen=True, slots=True)
class DPoPRequest:
    """A request as DPoP sees it: every ``DPoP`` header value, the method and the absolute URL (the web
    layer builds it from the request, behind trusted proxies with their scheme). ``spent``: the
    authentication step of this same request already verified its proof and spent its ``jti``, so that a
    handler that needs the proof too (a refresh sent with its access token) checks it again without counting
    it as a replay."""

    proofs: tuple[str, ...]
    htm: str
    htu: str
    spent: bool = False


@dataclass(frozen=True, slots=True)
class DPoPProof:
    """A proof that passed :func:`read_dpop_proof`: its key's thumbprint (``jkt``), ``jti``, ``iat``, and the
    ``nonce`` it carried (None without one)."""

    jkt: str
    jti: str
    iat: float
    nonce: str | None
    key: Key


def access_token_hash(token: str) -> str:
    """``ath``: base64url SHA-256 of the access token's ASCII (RFC 9449 §4.2)."""
    digest = hashlib.sha256(token.encode("ascii", "replace")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _unescape_unreserved(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    unreserved = char.isascii() and (char.isalnum() or char in _UNRESERVED)
    return char if unreserved else "%" + match.group(1).upper()


def _normalize_escapes(path: str) -> str:
    # RFC 3986 §6.2.2: an escaped unreserved character is the character; other escapes in upper case (so
    # %2F stays an escaped slash); characters a URI cannot hold as they are (space, non-ASCII) escaped
    return quote(_ESCAPE.sub(_unescape_unreserved, path), safe="/!$&'()*+,;=:@%" + _UNRESERVED)


def normalize_htu(url: str) -> str:
    """An HTTP(S) URL as ``htu`` compares it (RFC 9449 §4.3 item 9): scheme and host in lower case, the
    default port dropped, percent-encodings normalised, an empty path as ``/``, no query, no fragment.

    Raises:
        ValueError: not an absolute http(s) URL.

    Example:
        >>> normalize_htu("HTTPS://Server.Example:443/a%7eb?q=1#f")
        'https://server.example/a~b'
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError("not an absolute http(s) URL")
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port  # ValueError for a port out of range
    netloc = host if port is None or port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
    path = _normalize_escapes(parts.path) or "/"
    return urlunsplit((scheme, netloc, path, "", ""))


def read_dpop_proof(
    proofs: Sequence[str],
    *,
    htm: str,
    htu: str,
    access_token: str | None = None,
    algorithms: Collection[str] = DEFAULT_DPOP_ALGORITHMS,
    now: float | None = None,
    max_age: float = 60.0,
    leeway: float = 5.0,
) -> DPoPProof:
    """Every stateless check of RFC 9449 §4.3 on the ``DPoP`` header values of one request.

    Args:
        proofs: every ``DPoP`` header value the request carried (exactly one is allowed).
        htm: the request's method; htu: its URL (normalised here; query and fragment ignored).
        access_token: the token the request presents, whose hash ``ath`` must be; None at the token
            endpoints, where ``ath`` is not checked.
        algorithms: the asymmetric algorithms accepted.
        max_age: how old ``iat`` may be, in seconds; leeway: how far ahead of the clock.

    Raises:
        InvalidDPoPProof (``invalid_dpop_proof``): ``.reason`` says which check failed.
    """
    if len(proofs) != 1:
        raise InvalidDPoPProof("count", "a request carries exactly one DPoP proof header")
    proof = proofs[0]
    if len(proof) > MAX_PROOF_LENGTH:
        raise InvalidDPoPProof("too_large", "the DPoP proof is too large")
    try:
        header, _ = parse(proof, max_length=MAX_PROOF_LENGTH)  # the header only: nothing is trusted yet
    except JWTError:
        raise InvalidDPoPProof("malformed", "the DPoP proof is not a well-formed JWT") from None
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower().removeprefix("application/") != DPOP_TYP:
        raise InvalidDPoPProof("typ", "the DPoP proof's typ must be dpop+jwt")
    alg = header["alg"]
    if alg in _SYMMETRIC or alg not in algorithms:
        raise InvalidDPoPProof("algorithm", "the DPoP proof's algorithm is not accepted")
    jwk = header.get("jwk")
    if not isinstance(jwk, dict):
        raise InvalidDPoPProof("jwk", "the DPoP proof's header needs the public key as jwk")
    if _PRIVATE_MEMBERS & jwk.keys():
        raise InvalidDPoPProof("private_jwk", "the DPoP proof's jwk must not hold private key material")
    try:
        key = Key.from_jwk(jwk, alg=alg)
    except (JWTError, TypeError, ValueError):
        raise InvalidDPoPProof("jwk", "the DPoP proof's jwk is not a valid key for its alg") from None
    clock = time.time() if now is None else now
    try:
        claims = decode(proof, key, typ=DPOP_TYP, require=("jti", "htm", "htu", "iat"), leeway=leeway,
                        now=clock, max_length=MAX_PROOF_LENGTH)
    except JWTError as exc:
        reason = "iat" if exc.code == "issued_in_future" else exc.code
        raise InvalidDPoPProof(reason, "the DPoP proof does not verify") from None
    jti, iat = claims["jti"], claims["iat"]
    if type(jti) is not str or not 0 < len(jti) <= MAX_JTI_LENGTH:
        raise InvalidDPoPProof("jti", "the DPoP proof's jti must be a string of 1 to 256 characters")
    if type(iat) not in (int, float) or not math.isfinite(iat) or clock - iat > max_age:
        raise InvalidDPoPProof("iat", "the DPoP proof is too old")
    if claims["htm"] != htm:
        raise InvalidDPoPProof("htm", "the DPoP proof was made for another method")
    presented = claims["htu"]
    try:
        matches = type(presented) is str and normalize_htu(presented) == normalize_htu(htu)
    except ValueError:
        matches = False
    if not matches:
        raise InvalidDPoPProof("htu", "the DPoP proof was made for another URL")
    if access_token is not None:
        ath = claims.get("ath")
        if type(ath) is not str or not hmac.compare_digest(ath, access_token_hash(access_token)):
            raise InvalidDPoPProof("ath", "the DPoP proof was made for another access token")
    nonce = claims.get("nonce")
    if nonce is not None and type(nonce) is not str:
        raise InvalidDPoPProof("nonce", "the DPoP proof's nonce must be a string")
    return DPoPProof(jkt=key.thumbprint(), jti=jti, iat=float(iat), nonce=nonce, key=key)


def make_dpop_proof(key: Key, *, htm: str, htu: str, access_token: str | None = None,
                    nonce: str | None = None, now: float | None = None, jti: str | None = None) -> str:
    """A DPoP proof for one request, signed by ``key`` (a private asymmetric key), its public JWK in the
    header: ``htm``, ``htu`` (query and fragment dropped), ``iat``, a random ``jti``, and ``ath`` when an
    access token is given, ``nonce`` when the server asked for one.

    Raises:
        ValueError: an HMAC key, or a key that cannot sign.
    """
    if key.is_symmetric or not key.can_sign:
        raise ValueError("a DPoP proof is signed with a private asymmetric key")
    parts = urlsplit(htu)
    claims: dict[str, Any] = {
        "jti": jti or secrets.token_urlsafe(16),
        "htm": htm,
        "htu": urlunsplit((parts.scheme, parts.netloc, parts.path or "/", "", "")),
        "iat": int(time.time() if now is None else now),
    }
    if access_token is not None:
        claims["ath"] = access_token_hash(access_token)
    if nonce is not None:
        claims["nonce"] = nonce
    return sign_compact(dumps(claims), key, headers={"jwk": key.public().to_jwk()}, typ=DPOP_TYP)


class DPoPNonces:
    """Stateless nonces (RFC 9449 §8): ``base64url(step ‖ HMAC-SHA256(secret, step)[:16])`` for the current
    time step (``step`` seconds, default 300); the current and the previous step's are accepted, so a nonce
    lives between one and two steps. Nodes that share ``secret`` accept each other's nonces.

    Raises:
        ValueError: a secret shorter than 32 bytes, or a step under 10 s.
    """

    def __init__(self, secret: bytes, *, step: float = 300.0,
                 clock: Callable[[], float] | None = None) -> None:
        if not isinstance(secret, bytes) or len(secret) < 32:
            raise ValueError("a DPoP nonce secret is at least 32 bytes")
        if step < 10:
            raise ValueError("the DPoP nonce step is at least 10 seconds")
        self._key = hmac.new(secret, b"jwtkit dpop nonce v1", hashlib.sha256).digest()
        self.step = step
        self._clock = clock or time.time

    def _for(self, index: int) -> str:
        counter = struct.pack(">Q", index)
        tag = hmac.new(self._key, counter, hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(counter + tag).rstrip(b"=").decode("ascii")

    def current(self) -> str:
        """The nonce to hand out now (``DPoP-Nonce``)."""
        return self._for(int(self._clock() // self.step))

    def accepts(self, nonce: str | None) -> bool:
        """Whether ``nonce`` is this step's or the previous one's."""
        if nonce is None:
            return False
        index = int(self._clock() // self.step)
        return any(hmac.compare_digest(nonce, self._for(i)) for i in (index, index - 1))


class DPoPVerifier:
    """The DPoP rules of one server: :func:`read_dpop_proof`, the replay cache, the key binding, the nonce.

    Args:
        store: where seen ``jti`` values are kept until they could no longer pass the ``iat`` window (the
            store's single-use ``consume``, shared by the nodes that share the store); None keeps them in
            this process (bounded), for apps without a store.
        algorithms: the asymmetric algorithms accepted (advertised as ``algs`` in challenges).
        max_age / leeway: the ``iat`` window, in seconds behind and ahead of the clock.
        nonces: when given, every proof must carry a current nonce (``use_dpop_nonce`` otherwise).
        clock: the time source.
    """

    def __init__(self, store: Store | None = None, *, algorithms: Collection[str] = DEFAULT_DPOP_ALGORITHMS,
                 max_age: float = 60.0, leeway: float = 5.0, nonces: DPoPNonces | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        algs = tuple(algorithms)
        if not algs or any(a in _SYMMETRIC or a == "none" for a in algs):
            raise ValueError("DPoP algorithms are a non-empty list of asymmetric algorithms")
        if max_age <= 0 or leeway < 0:
            raise ValueError("max_age must be positive and leeway not negative")
        self.store = store
        self.algorithms = algs
        self.algs = " ".join(algs)  # the algs parameter of a WWW-Authenticate: DPoP challenge (every refusal)
        self.max_age = float(max_age)
        self.leeway = float(leeway)
        self.nonces = nonces
        self._clock = clock or time.time
        self._seen: dict[str, float] = {}  # replay cache without a store: key -> until

    def __repr__(self) -> str:
        store = type(self.store).__name__ if self.store else None
        return (f"DPoPVerifier(algorithms={list(self.algorithms)}, max_age={self.max_age:g}, "
                f"nonces={self.nonces is not None}, store={store})")

    def nonce(self) -> str | None:
        """The nonce to send in ``DPoP-Nonce``, or None when nonces are off."""
        return None if self.nonces is None else self.nonces.current()

    async def verify(self, proofs: Sequence[str], *, htm: str, htu: str, access_token: str | None = None,
                     jkt: str | None = None, spent: bool = False) -> DPoPProof:
        """Check one request's proof; ``jkt`` (the token's ``cnf.jkt``), when given, must be its key's.
        ``spent``: this request already spent the proof's ``jti`` (see :class:`DPoPRequest`): every check
        but the replay cache.

        Raises:
            InvalidDPoPProof (``invalid_dpop_proof``), UseDPoPNonce (``use_dpop_nonce``, with ``.nonce``);
            jwtkit.store.StoreUnavailable when the replay cache cannot answer.
        """
        if not proofs:
            raise InvalidDPoPProof("missing", "the request has no DPoP proof header")
        now = self._clock()
        proof = read_dpop_proof(proofs, htm=htm, htu=htu, access_token=access_token,
                                algorithms=self.algorithms, now=now, max_age=self.max_age,
                                leeway=self.leeway)
        if jkt is not None and not hmac.compare_digest(proof.jkt, jkt):
            raise InvalidDPoPProof("jkt", "the DPoP proof is signed by another key than the token's")
        if self.nonces is not None and not self.nonces.accepts(proof.nonce):
            raise UseDPoPNonce(self.nonces.current())
        # the jti is spent last, so that a refused proof spends nothing; it is kept until the proof's iat
        # leaves the window, after which read_dpop_proof refuses the proof anyway
        replay_key = "dpop:" + hashlib.sha256(f"{proof.jkt}.{proof.jti}".encode()).hexdigest()
        until = max(proof.iat, now) + self.max_age + self.leeway + 1
        if not spent and not await self._first_use(replay_key, until, now):
            raise InvalidDPoPProof("replay", "this DPoP proof was used before")
        return proof

    async def _first_use(self, key: str, until: float, now: float) -> bool:
        if self.store is not None:
            return await self.store.consume(key, until)
        seen = self._seen
        if key in seen and seen[key] > now:
            return False
        if len(seen) >= 100_000:
            for old in [k for k, t in seen.items() if t <= now]:
                del seen[old]
            if len(seen) >= 100_000:
                raise InvalidDPoPProof("busy", "too many DPoP proofs in the window; try again")
        seen[key] = until
        return True
