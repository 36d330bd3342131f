"""Another issuer's keys, fetched from its JWKS URL: :class:`RemoteKeySet`, a :class:`KeyProvider`.

R20 of docs/token-rules.md, for a long-running process: https only (plain http to this machine alone, for
development), no redirects followed, a time limit and a size cap on every fetch, never a URL named by a token;
the last good set is kept when a fetch fails, and a refresh for an unknown ``kid`` is rate-limited (one per
``cooldown``) and single-flight (one request in flight, whoever waits on it).

:func:`check_url` is the one rule for which URLs may be fetched; ``jwtkit verify --jwks`` uses it through
:class:`RemoteKeySet` too.

httpx is imported on the first fetch, not with this module: apps that embed the middleware without a remote
key set never load it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import SplitResult, urlsplit, urlunsplit

from jwtkit import JWTError, Key, KeySet
from jwtkit.service._errors import ServiceConfigError

if TYPE_CHECKING:
    import httpx

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_TIMEOUT",
    "MAX_KEYS",
    "JWKSUnavailable",
    "RemoteKeySet",
    "check_url",
    "parse_jwks",
]

logger = logging.getLogger("jwtkit.service._remote_keys")

DEFAULT_TIMEOUT = 5.0  # seconds for one whole fetch: connect, TLS, headers and body
DEFAULT_MAX_BYTES = 256 * 1024  # a JWKS is a few keys; a bigger answer is refused while it streams
MAX_KEYS = 100  # entries in one JWKS; providers publish two to ten
# JWK members that only a private key has (RFC 7518 §6.2.2, §6.3.2, RFC 8037 §2) and the secret of an oct key.
_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k", "priv")  # "priv": AKP (RFC 9964)
_ACCEPT = "application/jwk-set+json, application/json"
_DISCOVERY_ACCEPT = "application/json"
_OIDC_PATH = "/.well-known/openid-configuration"  # OpenID Connect Discovery 1.0 §4
_RFC8414_PATH = "/.well-known/oauth-authorization-server"  # RFC 8414 §3


class JWKSUnavailable(Exception):
    """A fetch of the JWKS (or of the issuer's discovery document) failed; the set keeps its last good keys.

    ``reason`` says why: ``network``, ``timeout``, ``status`` (not 200; redirects are not followed), ``size``,
    ``json``, ``jwks`` (no ``keys`` list, too many entries), ``empty`` (no signature keys at all),
    ``unusable`` (every key was dropped), ``discovery``, ``issuer`` (the discovery document names another
    issuer) or ``closed``. ``str()`` is one line naming the URL: for the operator's log, not for the client
    whose request failed.
    """

    code = "jwks_unavailable"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason

    @property
    def message(self) -> str:
        return str(self.args[0])


# --- which URLs may be fetched ---------------------------------------------------------------------------


def check_url(url: str, what: str = "a JWKS") -> bool:
    """The one rule for URLs jwtkit fetches keys from (R20): https, or plain http to this machine only
    (``localhost``, 127.0.0.0/8, ``::1``), where no network lies between to swap the keys. Checked before any
    network call.

    Returns:
        True for plain http to this machine (fetch it without a proxy), False for https.

    Raises:
        ServiceConfigError: any other URL; the message says why (``what`` names the URL's role in it).
    """
    if not isinstance(url, str):
        raise TypeError(f"the URL of {what} must be a string")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if not scheme:
        raise ServiceConfigError(f"the URL of {what} must be absolute (https://...)")
    if scheme == "http" and not _is_loopback(parts):
        raise ServiceConfigError(f"refusing http:// for {what} from another machine: only https URLs are "
                                 "fetched (plain http only from localhost, 127.0.0.0/8 or ::1)")
    if scheme not in ("https", "http"):
        raise ServiceConfigError(f"refusing {parts.scheme}:// for {what}: only https URLs are fetched")
    try:
        host, _ = parts.hostname, parts.port
    except ValueError:
        raise ServiceConfigError(f"the URL of {what} has an invalid port") from None
    if not host:
        raise ServiceConfigError(f"the URL of {what} has no host")
    return scheme == "http"


def _is_loopback(parts: SplitResult) -> bool:
    """The URL's host is this machine: ``localhost``, or an address literal in 127.0.0.0/8 or ``::1``."""
    try:
        host = parts.hostname  # lowercased, without the brackets of an IPv6 literal
        parts.port  # noqa: B018 (a bad port raises here, before any fetch)
    except ValueError:
        return False
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it could resolve anywhere


# --- reading a JWKS ---------------------------------------------------------------------------------------


def parse_jwks(body: bytes, alg: str | None = None) -> tuple[list[Key], list[str]]:
    """The verification keys of a published JWKS, and one line for each entry dropped.

    Entries whose ``use`` is not ``"sig"`` are skipped (an OpenID provider's encryption keys). Every other
    entry is a key on its own: one that fails jwtkit's checks (:meth:`jwtkit.Key.from_jwk`), a private key,
    a symmetric (``oct``) key, a key whose ``key_ops`` forbid verifying, or a second key with the same
    ``kid`` and ``alg`` is dropped, and the rest of the set still counts. ``alg`` binds entries without an
    ``alg`` member (some providers publish none).

    Raises:
        JWKSUnavailable: reason ``json`` (not a JSON object) or ``jwks`` (no ``keys`` list, more than
            :data:`MAX_KEYS` entries).
    """
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        raise JWKSUnavailable("json", "the JWKS is not valid JSON") from None
    if not isinstance(document, dict):
        raise JWKSUnavailable("json", "the JWKS must be a JSON object")
    entries = document.get("keys")
    if not isinstance(entries, list):
        raise JWKSUnavailable("jwks", 'the JWKS has no "keys" list')
    if len(entries) > MAX_KEYS:
        raise JWKSUnavailable("jwks", f"the JWKS has {len(entries)} keys, more than {MAX_KEYS}")
    keys: list[Key] = []
    dropped: list[str] = []
    seen: set[tuple[str, str]] = set()
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            dropped.append(f"entry {index}: not a JSON object")
            continue
        if entry.get("use", "sig") != "sig":
            continue
        name = _describe(entry, index)
        if entry.get("kty") == "oct":
            dropped.append(f"{name}: a symmetric (oct) key; a secret in a published set signs for anyone")
            continue
        if any(member in entry for member in _PRIVATE_MEMBERS):
            dropped.append(f"{name}: a private key; a published set carries public keys only")
            continue
        try:
            key = Key.from_jwk(entry, alg=None if "alg" in entry else alg)
        except JWTError as exc:
            dropped.append(f"{name}: {exc}")
            continue
        except (TypeError, ValueError) as exc:
            dropped.append(f"{name}: not a usable JWK ({type(exc).__name__})")
            continue
        if key.is_private or key.is_symmetric:  # unreachable after the member checks; kept as the last word
            dropped.append(f"{name}: not a public key")
            continue
        if not key.can_verify:
            dropped.append(f"{name}: its use or key_ops do not allow verifying")
            continue
        if key.kid is not None:
            if (key.kid, key.alg) in seen:
                dropped.append(f"{name}: a second {key.alg} key with this kid")
                continue
            seen.add((key.kid, key.alg))
        keys.append(key)
    return keys, dropped


def _describe(entry: Mapping[str, Any], index: int) -> str:
    kid = entry.get("kid")
    if isinstance(kid, str):
        return f"kid {kid[:64]!r}"
    return f"entry {index}"


def _ttl_from(cache_control: str, age: str | None) -> float | None:
    """Seconds the answer stays fresh by its ``Cache-Control`` (``max-age`` less ``Age``, RFC 9111 §4.2);
    0 for ``no-store`` or ``no-cache``; None when it says nothing."""
    max_age: float | None = None
    for directive in cache_control.split(","):
        name, _, value = directive.strip().partition("=")
        name = name.strip().lower()
        if name in ("no-store", "no-cache"):
            return 0.0
        if name == "max-age":
            value = value.strip().strip('"')
            if value.isdigit():
                max_age = float(value)
    if max_age is not None and age is not None and age.strip().isdigit():
        max_age -= float(age.strip())
    return max_age


# --- the provider -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What one fetch did, for everyone who waited on it."""

    changed: bool
    error: JWKSUnavailable | None = None


class RemoteKeySet:
    """The keys another issuer publishes at a JWKS URL, kept fresh: a :class:`KeyProvider` for
    :class:`AccessPolicy` and :class:`jwtkit.web.JWTAuthMiddleware`.

    :meth:`current` never does I/O: it answers the cached set. When the set is older than its lifetime it
    also starts one fetch in the background, so the next requests get the new keys and none waits for them.
    A token whose ``kid`` the set lacks waits (at most ``timeout``) on one refetch, at most one per
    ``cooldown``; however many such requests come together, one HTTP request is in flight and they all get
    its result.

    A failed fetch (network, timeout, an answer other than 200, redirects included, a body over
    ``max_bytes``, not JSON, a set with no usable key) keeps the last good set, logs the outage once and the
    recovery once, and the first request after ``cooldown`` retries it. Before the first good fetch the set
    is empty, so every token is refused (reason ``key``; ``algorithm`` without a ``kid``). Keys that fail
    jwtkit's checks, private keys and secrets are dropped one by one, with a log line each; the rest of the
    set still counts.

    Args:
        url: the JWKS URL: https, or plain http to this machine (:func:`check_url`).
        cache_ttl: seconds a set is used when its answer has no ``Cache-Control: max-age``.
        min_ttl, max_ttl: the bounds ``max-age`` is clamped to (``no-store``/``no-cache`` count as 0).
        cooldown: seconds between refetches for unknown ``kid`` values, and before a retry after a failure.
        timeout: seconds one fetch may take, from connecting to the last byte.
        max_bytes: the largest body accepted, counted while it streams.
        alg: binds keys that carry no ``alg`` member (some providers publish none); None drops them.
        client: an ``httpx.AsyncClient`` to fetch with (its TLS settings, proxies and transport); it stays
            yours to close. None: the set makes its own, without proxies for loopback http.
        clock: monotonic seconds (tests move it by hand); ``time.monotonic`` when None.

    Raises:
        ServiceConfigError: a URL :func:`check_url` refuses, or bounds that do not fit
            (``0 < min_ttl <= cache_ttl <= max_ttl``), checked here before any network call.

    Use it from one event loop: ``async with RemoteKeySet(url) as keys:`` (or :meth:`open` and
    :meth:`close`), and ``AccessPolicy(keys=keys, issuer=..., typ=...)``.
    """

    def __init__(
        self,
        url: str,
        *,
        cache_ttl: float = 600,
        min_ttl: float = 60,
        max_ttl: float = 86400,
        cooldown: float = 30,
        timeout: float = DEFAULT_TIMEOUT,
        max_bytes: int = DEFAULT_MAX_BYTES,
        alg: str | None = None,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._local = check_url(url)
        self._url: str | None = url
        self._issuer: str | None = None
        self._configure(cache_ttl=cache_ttl, min_ttl=min_ttl, max_ttl=max_ttl, cooldown=cooldown,
                        timeout=timeout, max_bytes=max_bytes, alg=alg, client=client, clock=clock)

    @classmethod
    def from_issuer(
        cls,
        issuer: str,
        *,
        cache_ttl: float = 600,
        min_ttl: float = 60,
        max_ttl: float = 86400,
        cooldown: float = 30,
        timeout: float = DEFAULT_TIMEOUT,
        max_bytes: int = DEFAULT_MAX_BYTES,
        alg: str | None = None,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] | None = None,
    ) -> RemoteKeySet:
        """The key set of an OpenID Connect or OAuth issuer, found by discovery on the first fetch: the
        ``jwks_uri`` of ``{issuer}/.well-known/openid-configuration`` (OpenID Connect Discovery §4), or of
        RFC 8414's ``/.well-known/oauth-authorization-server`` when that answers 404 or another status.

        The document's ``issuer`` must equal ``issuer`` exactly (Discovery §4.3, RFC 8414 §3.3), or the fetch
        fails (reason ``issuer``); its ``jwks_uri`` must pass :func:`check_url`. The same rules as for a JWKS
        hold for the document (no redirects, ``timeout``, ``max_bytes``). A failed discovery is retried like
        a failed fetch; once found, the ``jwks_uri`` is kept.

        Raises:
            ServiceConfigError: as the constructor, for the issuer URL.
        """
        self = cls.__new__(cls)
        self._local = check_url(issuer, "an issuer")
        self._url = None
        self._issuer = issuer
        self._configure(cache_ttl=cache_ttl, min_ttl=min_ttl, max_ttl=max_ttl, cooldown=cooldown,
                        timeout=timeout, max_bytes=max_bytes, alg=alg, client=client, clock=clock)
        return self

    def _configure(self, *, cache_ttl: float, min_ttl: float, max_ttl: float, cooldown: float, timeout: float,
                   max_bytes: int, alg: str | None, client: httpx.AsyncClient | None,
                   clock: Callable[[], float] | None) -> None:
        for name, value in (("cache_ttl", cache_ttl), ("min_ttl", min_ttl), ("max_ttl", max_ttl),
                            ("cooldown", cooldown), ("timeout", timeout)):
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ServiceConfigError(f"{name} must be a non-negative number of seconds")
        if not 0 < min_ttl <= cache_ttl <= max_ttl:
            raise ServiceConfigError("RemoteKeySet needs 0 < min_ttl <= cache_ttl <= max_ttl")
        if timeout <= 0:
            raise ServiceConfigError("timeout must be positive")
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
            raise ServiceConfigError("max_bytes must be a positive number of bytes")
        if alg is not None and (not isinstance(alg, str) or alg.upper().startswith("HS")):
            raise ServiceConfigError("alg must name an asymmetric algorithm (a published set has no secrets)")
        if clock is not None and not callable(clock):
            raise TypeError("clock must be callable")
        self.cache_ttl = float(cache_ttl)
        self.min_ttl = float(min_ttl)
        self.max_ttl = float(max_ttl)
        self.cooldown = float(cooldown)
        self.timeout = float(timeout)
        self.max_bytes = max_bytes
        self.alg = alg
        self._clock: Callable[[], float] = clock or time.monotonic
        self._client = client
        self._owns_client = client is None
        self._keys = KeySet([])
        self._kids: frozenset[str] = frozenset()
        self._good = False  # a good set was fetched at least once
        self._next_fetch = float("-inf")  # when current() starts a background fetch: stale, or a retry due
        self._kid_fetch_at = float("-inf")  # when an unknown kid may start the next fetch (cooldown)
        self._task: asyncio.Task[_Outcome] | None = None
        self._closed = False
        self._failing_since: float | None = None  # set while failing, after the outage was logged
        self._failures = 0
        self._logged_drops: frozenset[str] = frozenset()
        self.last_error: JWKSUnavailable | None = None  # the last failed fetch, None after a good one

    # --- the KeyProvider protocol ------------------------------------------------------------------------

    def current(self) -> KeySet:
        """The cached set (empty before the first good fetch); no I/O, no waiting. When it is stale, or a
        retry is due after a failure, one background fetch starts (inside a running event loop)."""
        if self._task is None and not self._closed and self._clock() >= self._next_fetch:
            with contextlib.suppress(RuntimeError):  # no running loop: a call from async code starts it
                self._start()
        return self._keys

    async def refresh(self, kid: str | None) -> bool:
        """A token named ``kid`` and the set lacks it: refetch, unless a fetch for an unknown ``kid`` started
        less than ``cooldown`` ago or a failed one is not due for a retry yet. A fetch already in flight is
        joined, never doubled. True when the keys changed."""
        if kid is not None and kid in self._kids:
            return True  # another request's fetch brought it in meanwhile
        task = self._task
        if task is None:
            now = self._clock()
            if self._closed or now < self._kid_fetch_at:
                return False
            if self.last_error is not None and now < self._next_fetch:
                return False  # failing: the next try is due at _next_fetch, whoever asks
            self._kid_fetch_at = now + self.cooldown
            task = self._start()
        return (await self._join(task)).changed

    # --- lifecycle ---------------------------------------------------------------------------------------

    async def open(self) -> bool:
        """Fetch the set once (discovery first, from :meth:`from_issuer`). A failure does not raise: it is
        logged, tokens are refused (reason ``key``) until a fetch succeeds, and the first request after each
        ``cooldown`` starts a retry. So an app starts while the issuer is down and recovers without a
        restart. To fail at start-up instead, call :meth:`fetch`, which raises. True when a good set was
        loaded."""
        if self._closed:
            raise RuntimeError("this RemoteKeySet is closed")
        try:
            await self.fetch()
        except JWKSUnavailable:
            return False
        return True

    async def fetch(self) -> KeySet:
        """Fetch the set now, whatever its age and the cooldown (joining a fetch in flight), and answer it.

        Raises:
            JWKSUnavailable: the fetch failed; the last good set is kept.
        """
        if self._closed:
            raise JWKSUnavailable("closed", "this RemoteKeySet is closed")
        outcome = await self._join(self._task or self._start())
        if outcome.error is not None:
            raise JWKSUnavailable(outcome.error.reason, outcome.error.message)
        return self._keys

    async def close(self) -> None:
        """Stop: a fetch in flight is cancelled, and the HTTP client closed if the set made it. The last set
        stays readable, and is never refreshed again."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        client, self._client = self._client, None
        if client is not None and self._owns_client:
            await client.aclose()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.close()

    @property
    def url(self) -> str | None:
        """The JWKS URL (None until discovery found it, for :meth:`from_issuer`)."""
        return self._url

    @property
    def issuer(self) -> str | None:
        """The issuer given to :meth:`from_issuer`, or None."""
        return self._issuer

    def __repr__(self) -> str:
        where = self._url if self._url is not None else f"issuer {self._issuer}"
        return f"RemoteKeySet({where!r}, keys={len(self._keys)})"

    # --- one fetch, single flight ------------------------------------------------------------------------

    def _start(self) -> asyncio.Task[_Outcome]:
        loop = asyncio.get_running_loop()  # RuntimeError outside a loop, before any state changes
        task = loop.create_task(self._run(), name=f"jwtkit JWKS fetch {self._url or self._issuer}")
        self._task = task
        return task

    async def _join(self, task: asyncio.Task[_Outcome]) -> _Outcome:
        """Wait for the fetch without owning it: a waiter that is cancelled (its client went away) leaves the
        fetch running for the others."""
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if task.cancelled() and (me is None or me.cancelling() == 0):
                return _Outcome(False, JWKSUnavailable("closed", "this RemoteKeySet is closed"))
            raise

    async def _run(self) -> _Outcome:
        try:
            keys, ttl = await self._load()
        except JWKSUnavailable as exc:
            self._failed(exc)
            return _Outcome(False, exc)
        except Exception as exc:  # a bug here must not end the refreshes, nor raise into requests
            logger.exception("JWKS %s: unexpected error while fetching", self._url or self._issuer)
            error = JWKSUnavailable("internal", f"fetching {self._url or self._issuer} failed: "
                                                f"{type(exc).__name__}")
            self._failed(error)
            return _Outcome(False, error)
        finally:
            if self._task is asyncio.current_task():
                self._task = None
        return _Outcome(self._install(keys, ttl))

    def _install(self, keys: list[Key], ttl: float) -> bool:
        now = self._clock()
        changed = keys != list(self._keys.keys)
        if changed:
            self._keys = KeySet(keys)
            self._kids = frozenset(key.kid for key in keys if key.kid is not None)
            logger.info("JWKS %s: %d keys (kids %s)", self._url, len(keys),
                        ", ".join(repr(key.kid) for key in keys))
        if self._failing_since is not None:
            logger.warning("JWKS %s: fetched again after %d failed fetches over %.0f s; %d keys", self._url,
                           self._failures, max(0.0, now - self._failing_since), len(keys),
                           extra={"jwks_event": "recovered"})
        self._failing_since = None
        self._failures = 0
        self._good = True
        self.last_error = None
        self._next_fetch = now + ttl
        return changed

    def _failed(self, error: JWKSUnavailable) -> None:
        now = self._clock()
        self.last_error = error
        self._failures += 1
        self._next_fetch = now + self.cooldown
        if self._failing_since is None:
            self._failing_since = now
            kept = (f"keeping the last good set of {len(self._keys)} keys" if self._good
                    else "no keys yet: every token is refused until a fetch succeeds")
            logger.warning("JWKS %s unavailable: %s; %s; tried again %g s on, at the next request",
                           self._url or self._issuer, error, kept, self.cooldown,
                           extra={"jwks_event": "outage"})
        else:
            logger.debug("JWKS %s still unavailable: %s", self._url or self._issuer, error)

    async def _load(self) -> tuple[list[Key], float]:
        import httpx  # the first fetch loads it, not the import of jwtkit.service

        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout, follow_redirects=False,
                                             trust_env=not self._local)
        client = self._client
        url = self._url if self._url is not None else await self._discover(client)
        body, cache_control, age = await self._get(client, url, _ACCEPT, "the JWKS")
        # a set of many RSA keys takes a while to check: off the event loop
        keys, dropped = await asyncio.to_thread(parse_jwks, body, self.alg)
        self._log_drops(url, dropped)
        if not keys:
            if not dropped:
                raise JWKSUnavailable("empty", "the JWKS has no keys")
            shown = "; ".join(dropped[:3]) + ("; ..." if len(dropped) > 3 else "")
            raise JWKSUnavailable("unusable", f"the JWKS at {url} has no usable key ({shown})")
        ttl = _ttl_from(cache_control, age)
        return keys, self.cache_ttl if ttl is None else min(max(ttl, self.min_ttl), self.max_ttl)

    def _log_drops(self, url: str, dropped: list[str]) -> None:
        """One line per dropped key, the first time it is seen (not on every refresh of the same set)."""
        for line in dropped:
            if line not in self._logged_drops:
                logger.warning("JWKS %s: dropped %s", url, line, extra={"jwks_event": "dropped"})
        self._logged_drops = frozenset(dropped)

    async def _get(self, client: httpx.AsyncClient, url: str, accept: str,
                   what: str) -> tuple[bytes, str, str | None]:
        """GET ``url``: 200 only (no redirects), within ``timeout``, at most ``max_bytes`` as it streams.
        The body, the Cache-Control header and the Age header."""
        import httpx

        limit = self.max_bytes
        try:
            async with (
                asyncio.timeout(self.timeout),
                client.stream("GET", url, headers={"Accept": accept}, follow_redirects=False,
                              timeout=self.timeout) as response,
            ):
                if response.status_code != 200:
                    raise JWKSUnavailable("status", f"GET {url} answered {response.status_code}")
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > limit:
                    raise JWKSUnavailable("size", f"{what} at {url} is larger than {limit} bytes")
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > limit:
                        raise JWKSUnavailable("size", f"{what} at {url} is larger than {limit} bytes")
                cache_control = ", ".join(response.headers.get_list("cache-control"))
                return bytes(body), cache_control, response.headers.get("age")
        except TimeoutError:
            raise JWKSUnavailable("timeout", f"cannot fetch {url}: no complete answer within "
                                             f"{self.timeout:g} s") from None
        except httpx.TimeoutException as exc:
            raise JWKSUnavailable("timeout", f"cannot fetch {url}: {type(exc).__name__}: {exc}") from None
        except (httpx.HTTPError, OSError) as exc:
            raise JWKSUnavailable("network", f"cannot fetch {url}: {type(exc).__name__}: {exc}") from None

    async def _discover(self, client: httpx.AsyncClient) -> str:
        """The issuer's ``jwks_uri``, from its OpenID Connect or RFC 8414 metadata (:meth:`from_issuer`)."""
        issuer = self._issuer
        assert issuer is not None  # a set without a URL was made by from_issuer
        parts = urlsplit(issuer)
        path = parts.path.rstrip("/")
        candidates = [issuer.rstrip("/") + _OIDC_PATH,
                      urlunsplit((parts.scheme, parts.netloc, _RFC8414_PATH + path, "", ""))]
        answers: list[str] = []
        for url in dict.fromkeys(candidates):
            try:
                body, _, _ = await self._get(client, url, _DISCOVERY_ACCEPT, "the discovery document")
            except JWKSUnavailable as exc:
                if exc.reason != "status":
                    raise
                answers.append(exc.message)
                continue
            try:
                document = json.loads(body)
            except (ValueError, RecursionError):
                raise JWKSUnavailable("discovery",
                                      f"the discovery document at {url} is not valid JSON") from None
            if not isinstance(document, dict):
                raise JWKSUnavailable("discovery", f"the discovery document at {url} is not a JSON object")
            named = document.get("issuer")
            if named != issuer:
                shown = repr(named[:200]) if isinstance(named, str) else "no issuer"
                raise JWKSUnavailable("issuer", f"the discovery document at {url} names {shown}, not the "
                                                f"issuer {issuer!r}")
            jwks_uri = document.get("jwks_uri")
            if not isinstance(jwks_uri, str) or not jwks_uri:
                raise JWKSUnavailable("discovery", f"the discovery document at {url} has no jwks_uri")
            try:
                local = check_url(jwks_uri)
            except ServiceConfigError as exc:
                raise JWKSUnavailable("discovery", f"the discovery document at {url}: {exc}") from None
            if local and not self._local:
                raise JWKSUnavailable("discovery", f"the discovery document at {url} points an https issuer "
                                                   "at a plain http jwks_uri")
            self._url = jwks_uri
            logger.info("issuer %s: JWKS at %s", issuer, jwks_uri)
            return jwks_uri
        raise JWKSUnavailable("discovery", f"no discovery document for the issuer {issuer!r}: "
                                           + "; ".join(answers))
