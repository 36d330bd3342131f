"""RemoteKeySet against a real local HTTPS server (a self-signed certificate made here with ``cryptography``,
a threaded ``http.server`` on a free 127.0.0.1 port) whose answers the tests change: new sets, 500s, stalls,
redirects, garbage and oversized bodies, with a request counter per path.

Time is a FakeClock the tests move; the only real waits are the stalls, against a small timeout.
"""

from __future__ import annotations

import asyncio
import dataclasses
import http.server
import json
import logging
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from clock import FakeClock
from jwtkit import Key, KeySet, encode
from jwtkit.service import (
    AccessPolicy,
    AuthConfig,
    AuthService,
    InvalidToken,
    JWKSUnavailable,
    KeyProvider,
    KeyRing,
    MemoryMailer,
    MemoryUserRepository,
    RemoteKeySet,
    ServiceConfigError,
)
from jwtkit.service._remote_keys import check_url, parse_jwks
from jwtkit.store import open_store
from jwtkit.web import JWTAuthMiddleware
from processes import self_signed_certificate

from .conftest import PASSWORD, CountingHasher

LOGGER = "jwtkit.service._remote_keys"
ISSUER = "https://issuer.example"
A = Key.generate("EdDSA", kid="key-a")
B = Key.generate("EdDSA", kid="key-b")
C = Key.generate("ES256", kid="key-c")


def jwks(*keys: Key) -> bytes:
    return json.dumps(KeySet([key.public() for key in keys]).to_jwks()).encode()


def token(key: Key, issuer: str = ISSUER) -> str:
    return encode({"sub": "u1", "iss": issuer, "exp": int(time.time()) + 300}, key, typ="at+jwt")


# --- the upstream server --------------------------------------------------------------------------------


@dataclasses.dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    length: bool = True  # send Content-Length (without it, the body ends when the connection closes)
    stall: threading.Event | None = None  # wait for this (at most 5 s) before answering
    delay: float = 0.0


class Upstream:
    """What the server answers per path, and how many requests each path got."""

    def __init__(self) -> None:
        self.replies: dict[str, Reply] = {}
        self.hits: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.base = ""
        self.stalls: list[threading.Event] = []

    def serve(self, path: str, body: bytes, **options: Any) -> None:
        self.replies[path] = Reply(body=body, **options)

    def stall(self, path: str, body: bytes = b'{"keys": []}') -> threading.Event:
        event = threading.Event()
        self.stalls.append(event)
        self.replies[path] = Reply(body=body, stall=event)
        return event

    def reset(self) -> None:
        for event in self.stalls:
            event.set()
        self.stalls.clear()
        self.replies.clear()
        with self.lock:
            self.hits.clear()


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        upstream = self.server.upstream
        with upstream.lock:
            upstream.hits[self.path] += 1
        reply = upstream.replies.get(self.path, Reply(status=404, body=b'{"error": "not found"}'))
        if reply.stall is not None:
            reply.stall.wait(5)
        if reply.delay:
            time.sleep(reply.delay)
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            for name, value in reply.headers.items():
                self.send_header(name, value)
            if reply.length:
                self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass  # the client stopped reading (a size cap, a timeout)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    upstream: Upstream


def _run(server: _Server) -> Iterator[None]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def https_upstream(tls: tuple[Path, Path]) -> Iterator[Upstream]:
    cert, key = tls
    server = _Server(("127.0.0.1", 0), _Handler)
    server.upstream = Upstream()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.upstream.base = f"https://127.0.0.1:{server.server_address[1]}"
    for _ in _run(server):
        yield server.upstream


@pytest.fixture(scope="module")
def http_upstream() -> Iterator[Upstream]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.upstream = Upstream()
    server.upstream.base = f"http://127.0.0.1:{server.server_address[1]}"
    for _ in _run(server):
        yield server.upstream


@pytest.fixture
def upstream(https_upstream: Upstream) -> Iterator[Upstream]:
    https_upstream.reset()
    yield https_upstream
    https_upstream.reset()


@pytest.fixture
async def client(tls: tuple[Path, Path]) -> AsyncIterator[httpx.AsyncClient]:
    """Trusts the test's certificate, and nothing else."""
    async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=str(tls[0]))) as trusted:
        yield trusted


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1000.0)


@pytest.fixture
async def remote(upstream: Upstream, client: httpx.AsyncClient,
                 clock: FakeClock) -> AsyncIterator[RemoteKeySet]:
    """A set over ``/jwks.json`` (which the test fills before opening it)."""
    keys = RemoteKeySet(f"{upstream.base}/jwks.json", client=client, clock=clock)
    yield keys
    await keys.close()


async def settle(keys: RemoteKeySet) -> None:
    """Wait for the background fetch current() started, if any."""
    task = keys._task
    if task is not None:
        await asyncio.shield(task)


def policy_of(keys: KeyProvider) -> AccessPolicy:
    return AccessPolicy(keys=keys, typ="at+jwt", issuer=ISSUER)


async def refused(policy: AccessPolicy, jwt: str) -> str:
    with pytest.raises(InvalidToken) as info:
        await policy.authenticate(jwt)
    return info.value.reason


def events(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [record for record in caplog.records if getattr(record, "jwks_event", None) == name]


# --- fetching and caching -------------------------------------------------------------------------------


async def test_open_fetches_once_and_requests_use_the_cache(upstream: Upstream, remote: RemoteKeySet) -> None:
    upstream.serve("/jwks.json", jwks(A))
    assert isinstance(remote, KeyProvider)
    assert await remote.open() is True
    assert [key.kid for key in remote.current()] == ["key-a"]
    assert not remote.current().keys[0].is_private
    policy = policy_of(remote)
    for _ in range(20):
        assert (await policy.authenticate(token(A))).user_id == "u1"
    assert upstream.hits["/jwks.json"] == 1
    assert remote.last_error is None
    assert "key-a" not in repr(remote) and "keys=1" in repr(remote)


@pytest.mark.parametrize(("headers", "ttl"), [
    ({}, 600),                                              # cache_ttl
    ({"Cache-Control": "public, max-age=120"}, 120),
    ({"Cache-Control": "max-age=5"}, 60),                   # clamped up to min_ttl
    ({"Cache-Control": "max-age=9999999"}, 86400),          # clamped down to max_ttl
    ({"Cache-Control": "no-store"}, 60),
    ({"Cache-Control": "max-age=300", "Age": "100"}, 200),  # RFC 9111 §4.2.3: what is left of it
    ({"Cache-Control": "max-age=soon"}, 600),               # unreadable: as if absent
])
async def test_the_set_lives_for_max_age_clamped(upstream: Upstream, remote: RemoteKeySet, clock: FakeClock,
                                                 headers: dict[str, str], ttl: float) -> None:
    upstream.serve("/jwks.json", jwks(A), headers=headers)
    assert await remote.open()
    clock.advance(ttl - 1)
    cached = remote.current()
    assert remote._task is None  # still fresh: nothing started
    upstream.serve("/jwks.json", jwks(A, B), headers=headers)
    clock.advance(1)
    assert remote.current() is cached  # stale: answered at once, from the cache ...
    assert remote._task is not None  # ... and one fetch started in the background
    assert remote.current() is cached and upstream.hits["/jwks.json"] == 1
    await settle(remote)
    assert upstream.hits["/jwks.json"] == 2
    assert [key.kid for key in remote.current()] == ["key-a", "key-b"]


async def test_a_stale_set_never_makes_a_request_wait(upstream: Upstream, remote: RemoteKeySet,
                                                      clock: FakeClock) -> None:
    upstream.serve("/jwks.json", jwks(A))
    assert await remote.open()
    policy = policy_of(remote)
    release = upstream.stall("/jwks.json", jwks(A, B))
    clock.advance(601)
    # the background fetch hangs on the server; a token of a known key is answered meanwhile
    assert (await asyncio.wait_for(policy.authenticate(token(A)), 1)).user_id == "u1"
    assert remote._task is not None and not remote._task.done()
    # a token of the new key waits for that same fetch, and makes no second request
    waiting = asyncio.ensure_future(policy.authenticate(token(B)))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    release.set()
    assert (await asyncio.wait_for(waiting, 5)).user_id == "u1"
    assert upstream.hits["/jwks.json"] == 2


# --- unknown kids: cooldown and single flight -------------------------------------------------------------


async def test_an_unknown_kid_refetches_at_most_once_per_cooldown(upstream: Upstream, remote: RemoteKeySet,
                                                                  clock: FakeClock) -> None:
    upstream.serve("/jwks.json", jwks(A))
    assert await remote.open()
    policy = policy_of(remote)
    assert await refused(policy, token(B)) == "key"
    assert upstream.hits["/jwks.json"] == 2  # the first unknown kid: one refetch
    clock.advance(10)
    assert await refused(policy, token(C)) == "key"
    assert await refused(policy, token(B)) == "key"
    assert upstream.hits["/jwks.json"] == 2  # inside the cooldown: none
    upstream.serve("/jwks.json", jwks(A, C))
    clock.advance(20)  # 30 s after the refetch
    assert (await policy.authenticate(token(C))).user_id == "u1"
    assert upstream.hits["/jwks.json"] == 3  # after it: one
    assert await refused(policy, token(B)) == "key"
    assert upstream.hits["/jwks.json"] == 3
    assert (await policy.authenticate(token(A))).user_id == "u1"  # known kids never ask
    assert upstream.hits["/jwks.json"] == 3


async def test_fifty_concurrent_requests_for_a_new_kid_make_one_request(upstream: Upstream,
                                                                        remote: RemoteKeySet) -> None:
    upstream.serve("/jwks.json", jwks(A))
    assert await remote.open()
    upstream.serve("/jwks.json", jwks(A, B), delay=0.1)
    policy = policy_of(remote)
    jwt = token(B)
    principals = await asyncio.gather(*(policy.authenticate(jwt) for _ in range(50)))
    assert {principal.user_id for principal in principals} == {"u1"}
    assert upstream.hits["/jwks.json"] == 2  # open, then exactly one for all fifty


async def test_fifty_concurrent_requests_share_one_failed_fetch(upstream: Upstream,
                                                                remote: RemoteKeySet) -> None:
    upstream.serve("/jwks.json", jwks(A))
    assert await remote.open()
    upstream.serve("/jwks.json", b"oops", status=503, delay=0.1)
    policy = policy_of(remote)
    results = await asyncio.gather(*(policy.authenticate(token(B)) for _ in range(50)),
                                   return_exceptions=True)
    assert {getattr(result, "reason", None) for result in results} == {"key"}
    assert upstream.hits["/jwks.json"] == 2


async def test_a_waiter_that_is_cancelled_leaves_the_fetch_to_the_others(upstream: Upstream,
                                                                         remote: RemoteKeySet) -> None:
    upstream.serve("/jwks.json", jwks(A))
    assert await remote.open()
    release = upstream.stall("/jwks.json", jwks(A, B))
    policy = policy_of(remote)
    first = asyncio.ensure_future(policy.authenticate(token(B)))
    second = asyncio.ensure_future(policy.authenticate(token(B)))
    await asyncio.sleep(0.05)
    first.cancel()  # its client went away
    await asyncio.sleep(0)
    release.set()
    assert (await asyncio.wait_for(second, 5)).user_id == "u1"
    assert first.cancelled()
    assert upstream.hits["/jwks.json"] == 2


# --- failures keep the last good set ----------------------------------------------------------------------

BIG = b'{"keys": [], "pad": "' + b"x" * (300 * 1024) + b'"}'
FAILURES = {
    "500": (Reply(status=500, body=b"{}"), "status"),
    "302": (Reply(status=302, headers={"Location": "/elsewhere.json"}), "status"),
    "garbage": (Reply(body=b"<html>not json"), "json"),
    "array": (Reply(body=b"[1, 2]"), "json"),
    "no keys list": (Reply(body=b'{"kty": "OKP"}'), "jwks"),
    "oversized, streamed": (Reply(body=BIG, length=False), "size"),
    "oversized, declared": (Reply(body=BIG), "size"),
    "empty": (Reply(body=b'{"keys": []}'), "empty"),
    "nothing usable": (Reply(body=json.dumps({"keys": [B.to_jwk(private=True),
                                                       {"kty": "oct", "k": "c2VjcmV0" * 6}]}).encode()),
                       "unusable"),
    "stall": (Reply(), "timeout"),
}


@pytest.mark.parametrize("failure", FAILURES)
async def test_the_last_good_set_survives_every_failure(upstream: Upstream, client: httpx.AsyncClient,
                                                        clock: FakeClock, caplog: pytest.LogCaptureFixture,
                                                        failure: str) -> None:
    reply, reason = FAILURES[failure]
    timeout = 0.3 if failure == "stall" else 5
    upstream.serve("/jwks.json", jwks(A))
    upstream.serve("/elsewhere.json", jwks(A, B))
    async with RemoteKeySet(f"{upstream.base}/jwks.json", client=client, clock=clock,
                            timeout=timeout) as remote:
        policy = policy_of(remote)
        caplog.set_level(logging.DEBUG, LOGGER)
        if failure == "stall":
            upstream.stall("/jwks.json")
        else:
            upstream.replies["/jwks.json"] = reply
        for attempt in range(3):  # the expiry's background fetch, then two retries a cooldown apart
            clock.advance(601 if attempt == 0 else 30)
            remote.current()
            await settle(remote)
            assert remote.last_error is not None and remote.last_error.reason == reason
            assert (await policy.authenticate(token(A))).user_id == "u1"  # the last good set
            assert [key.kid for key in remote.current()] == ["key-a"]
        assert upstream.hits["/jwks.json"] == 4
        assert upstream.hits["/elsewhere.json"] == 0  # a redirect is a failure, not followed
        outages = events(caplog, "outage")
        assert len(outages) == 1  # once, not per request nor per attempt
        assert outages[0].levelno == logging.WARNING
        assert f"{upstream.base}/jwks.json" in outages[0].getMessage()
        assert "keeping the last good set of 1 keys" in outages[0].getMessage()
        # the endpoint comes back: the next retry installs the new set, and says so once
        upstream.serve("/jwks.json", jwks(A, B))
        clock.advance(30)
        remote.current()
        await settle(remote)
        assert remote.last_error is None
        assert [key.kid for key in remote.current()] == ["key-a", "key-b"]
        recovered = events(caplog, "recovered")
        assert len(recovered) == 1 and "after 3 failed fetches" in recovered[0].getMessage()
        assert len(events(caplog, "outage")) == 1


async def test_failure_messages_name_the_url_and_why(upstream: Upstream, remote: RemoteKeySet) -> None:
    url = f"{upstream.base}/jwks.json"
    upstream.serve("/jwks.json", b"", status=302, headers={"Location": "/x"})
    with pytest.raises(JWKSUnavailable) as info:
        await remote.fetch()
    assert str(info.value) == f"GET {url} answered 302"
    upstream.serve("/jwks.json", BIG, length=False)
    with pytest.raises(JWKSUnavailable) as info:
        await remote.fetch()
    assert str(info.value) == f"the JWKS at {url} is larger than {256 * 1024} bytes"


async def test_an_untrusted_certificate_is_a_failure(upstream: Upstream, clock: FakeClock) -> None:
    upstream.serve("/jwks.json", jwks(A))
    async with httpx.AsyncClient() as public_roots:  # does not trust the test's certificate
        keys = RemoteKeySet(f"{upstream.base}/jwks.json", client=public_roots, clock=clock)
        assert await keys.open() is False
        assert keys.last_error is not None and keys.last_error.reason == "network"
        assert len(keys.current()) == 0
        await keys.close()


async def test_before_the_first_good_fetch_every_token_is_refused(upstream: Upstream, remote: RemoteKeySet,
                                                                  clock: FakeClock,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, LOGGER)
    upstream.serve("/jwks.json", b"down", status=500)
    assert await remote.open() is False  # no exception: the app starts, and recovers by itself
    assert remote.current().keys == ()
    policy = policy_of(remote)
    assert await refused(policy, token(A)) == "key"
    assert upstream.hits["/jwks.json"] == 1  # a retry waits for the cooldown, whoever asks
    (outage,) = events(caplog, "outage")
    assert "no keys yet" in outage.getMessage()
    with pytest.raises(JWKSUnavailable) as info:
        await remote.fetch()  # the way to fail at start-up instead
    assert info.value.reason == "status" and info.value.code == "jwks_unavailable"
    upstream.serve("/jwks.json", jwks(A))
    clock.advance(30)
    assert (await policy.authenticate(token(A))).user_id == "u1"
    assert upstream.hits["/jwks.json"] == 3


async def test_a_stalled_open_gives_up_after_the_timeout(upstream: Upstream, client: httpx.AsyncClient,
                                                        clock: FakeClock) -> None:
    upstream.stall("/jwks.json")
    keys = RemoteKeySet(f"{upstream.base}/jwks.json", client=client, clock=clock, timeout=0.3)
    started = time.monotonic()
    assert await keys.open() is False
    assert time.monotonic() - started < 2
    assert keys.last_error is not None and keys.last_error.reason == "timeout"
    await keys.close()


# --- which keys count ---------------------------------------------------------------------------------


def _bad_point() -> dict[str, Any]:
    jwk = Key.generate("ES256", kid="off-curve").public().to_jwk()
    jwk["y"] = jwk["x"]
    return jwk


async def test_unusable_keys_are_dropped_one_by_one(
        upstream: Upstream, remote: RemoteKeySet, clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    private = Key.generate("EdDSA", kid="private-one").to_jwk(private=True)
    no_alg = {k: v for k, v in Key.generate("EdDSA", kid="no-alg").public().to_jwk().items() if k != "alg"}
    entries = [
        A.public().to_jwk(),
        private,
        {"kty": "oct", "kid": "secret-one", "alg": "HS256", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNl"},
        _bad_point(),
        {**B.public().to_jwk(), "kid": "strange-alg", "alg": "XS512"},
        no_alg,
        {**B.public().to_jwk(), "kid": "enc-one", "use": "enc"},  # not a signature key: skipped, not dropped
        {**C.public().to_jwk(), "kid": "key-a", "alg": "ES256"},  # same kid, another alg: a key of its own
        A.public().to_jwk(),  # same kid and alg again
        {**B.public().to_jwk(), "kid": "encrypt-only", "key_ops": ["encrypt"]},
        "not an object",
    ]
    upstream.serve("/jwks.json", json.dumps({"keys": entries}).encode())
    caplog.set_level(logging.INFO, LOGGER)
    assert await remote.open()
    assert [(key.kid, key.alg) for key in remote.current()] == [("key-a", "EdDSA"), ("key-a", "ES256")]
    assert all(not key.is_private and not key.is_symmetric for key in remote.current())
    dropped = [record.getMessage() for record in events(caplog, "dropped")]
    assert len(dropped) == 8
    for name in ("'private-one': a private key", "'secret-one': a symmetric (oct) key", "'off-curve'",
                 "'strange-alg'", "'no-alg'", "'key-a': a second EdDSA key", "'encrypt-only'", "entry 10"):
        assert sum(name in line for line in dropped) == 1, name
    assert not any("enc-one" in line for line in dropped)
    assert private["d"] not in caplog.text  # never a word of key material
    assert (await policy_of(remote).authenticate(token(A))).user_id == "u1"
    # the same set again: no new lines
    clock.advance(601)
    remote.current()
    await settle(remote)
    assert len(events(caplog, "dropped")) == 8


def test_alg_binds_keys_published_without_one() -> None:
    no_alg = {k: v for k, v in A.public().to_jwk().items() if k != "alg"}
    body = json.dumps({"keys": [no_alg]}).encode()
    assert parse_jwks(body)[0] == []
    keys, dropped = parse_jwks(body, "EdDSA")
    assert [key.kid for key in keys] == ["key-a"] and dropped == []
    with pytest.raises(ServiceConfigError, match="asymmetric"):
        RemoteKeySet("https://issuer.example/jwks.json", alg="HS256")


def test_ml_dsa_keys_are_published_keys_and_a_priv_is_dropped() -> None:
    # RFC 9964's AKP keys: a public one (kty, alg, pub) is used; one that carries its seed (priv) is a private
    # key, dropped like an OKP or EC key with d, without a word of the seed in the line.
    public = Key.generate("ML-DSA-65", kid="pq-public")
    leaked = Key.generate("ML-DSA-65", kid="pq-private").to_jwk(private=True)
    body = json.dumps({"keys": [public.public().to_jwk(), leaked]}).encode()
    keys, dropped = parse_jwks(body)
    assert [(key.kid, key.alg, key.is_private) for key in keys] == [("pq-public", "ML-DSA-65", False)]
    assert dropped == ["kid 'pq-private': a private key; a published set carries public keys only"]
    assert leaked["priv"] not in dropped[0]


def test_a_set_of_too_many_keys_is_refused() -> None:
    body = json.dumps({"keys": [A.public().to_jwk()] * 101}).encode()
    with pytest.raises(JWKSUnavailable) as info:
        parse_jwks(body)
    assert info.value.reason == "jwks"


# --- which URLs --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_plain_http_from_this_machine_is_fetched_without_a_proxy(
        http_upstream: Upstream, host: str, monkeypatch: pytest.MonkeyPatch) -> None:
    http_upstream.reset()
    http_upstream.serve("/jwks.json", jwks(A))
    monkeypatch.setenv("HTTP_PROXY", "http://192.0.2.1:9")  # would fail if it were used
    monkeypatch.setenv("http_proxy", "http://192.0.2.1:9")
    url = http_upstream.base.replace("127.0.0.1", host) + "/jwks.json"
    assert check_url(url) is True
    async with RemoteKeySet(url, timeout=2) as keys:  # its own client
        assert keys.last_error is None
        assert (await policy_of(keys).authenticate(token(A))).user_id == "u1"
    assert http_upstream.hits["/jwks.json"] == 1


@pytest.mark.parametrize("url", [
    "http://example.org/jwks.json",
    "http://127.0.0.1.example.org/jwks.json",  # a name, not the loopback address
    "http://localhost.example.org/jwks.json",
    "http://10.0.0.1/jwks.json",
    "http://0.0.0.0/jwks.json",
    "http://[::ffff:127.0.0.1]/jwks.json",
    "http:///jwks.json",
    "HTTP://example.org/jwks.json",
])
def test_plain_http_to_another_machine_is_refused_before_any_network_call(
        url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []

    def forbidden(*args: object, **kwargs: object) -> Any:
        calls.append(args)
        raise AssertionError("no network call may be made")

    for target, name in ((socket, "getaddrinfo"), (socket, "create_connection"), (httpx, "AsyncClient"),
                         (httpx, "Client")):
        monkeypatch.setattr(target, name, forbidden)
    with pytest.raises(ServiceConfigError, match=r"refusing http:// for a JWKS from another machine"):
        RemoteKeySet(url)
    with pytest.raises(ServiceConfigError, match=r"refusing http:// for an issuer from another machine"):
        RemoteKeySet.from_issuer(url.removesuffix("/jwks.json"))
    assert calls == []


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/jwks.json", "file:///etc/jwks.json", "jwks.json",
                                 "https:///jwks.json", "https://issuer.example:99999/jwks.json"])
def test_other_urls_are_refused(url: str) -> None:
    with pytest.raises(ServiceConfigError):
        RemoteKeySet(url)


@pytest.mark.parametrize("options", [{"cache_ttl": 10}, {"min_ttl": 0}, {"max_ttl": 100}, {"timeout": 0},
                                     {"max_bytes": 0}, {"cooldown": -1}, {"cache_ttl": True}])
def test_bounds_that_do_not_fit_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ServiceConfigError):
        RemoteKeySet("https://issuer.example/jwks.json", **options)


# --- OpenID Connect and RFC 8414 discovery ---------------------------------------------------------------


async def test_oidc_discovery_finds_the_jwks(upstream: Upstream, client: httpx.AsyncClient,
                                             clock: FakeClock) -> None:
    issuer = upstream.base
    upstream.serve("/.well-known/openid-configuration",
                   json.dumps({"issuer": issuer, "jwks_uri": f"{issuer}/keys.json"}).encode())
    upstream.serve("/keys.json", jwks(A))
    keys = RemoteKeySet.from_issuer(issuer, client=client, clock=clock)
    assert keys.url is None and keys.issuer == issuer
    async with keys:
        assert keys.url == f"{issuer}/keys.json"
        policy = AccessPolicy(keys=keys, typ="at+jwt", issuer=issuer)
        assert (await policy.authenticate(token(A, issuer))).user_id == "u1"
        upstream.serve("/keys.json", jwks(A, B))
        clock.advance(601)
        keys.current()
        await settle(keys)
        assert (await policy.authenticate(token(B, issuer))).user_id == "u1"
    assert upstream.hits["/.well-known/openid-configuration"] == 1  # found once, then kept
    assert upstream.hits["/keys.json"] == 2


@pytest.mark.parametrize("named", ["https://evil.example", "{base}/", None])
async def test_a_discovery_document_of_another_issuer_is_refused(upstream: Upstream,
                                                                 client: httpx.AsyncClient,
                                                                 clock: FakeClock, named: str | None) -> None:
    issuer = upstream.base
    document: dict[str, Any] = {"jwks_uri": f"{issuer}/keys.json"}
    if named is not None:
        document["issuer"] = named.format(base=issuer)
    upstream.serve("/.well-known/openid-configuration", json.dumps(document).encode())
    upstream.serve("/keys.json", jwks(A))
    async with RemoteKeySet.from_issuer(issuer, client=client, clock=clock) as keys:
        assert keys.last_error is not None and keys.last_error.reason == "issuer"
        assert keys.url is None and len(keys.current()) == 0
        assert await refused(AccessPolicy(keys=keys, issuer=issuer, typ="at+jwt"), token(A, issuer)) == "key"
    assert upstream.hits["/keys.json"] == 0


async def test_rfc8414_metadata_is_the_fallback(upstream: Upstream, client: httpx.AsyncClient,
                                                clock: FakeClock) -> None:
    issuer = f"{upstream.base}/tenant"
    upstream.serve("/.well-known/oauth-authorization-server/tenant",
                   json.dumps({"issuer": issuer, "jwks_uri": f"{upstream.base}/tenant/keys"}).encode())
    upstream.serve("/tenant/keys", jwks(A))
    async with RemoteKeySet.from_issuer(issuer, client=client, clock=clock) as keys:
        assert keys.last_error is None
        assert (await AccessPolicy(keys=keys, typ="at+jwt", issuer=issuer)
                .authenticate(token(A, issuer))).user_id == "u1"
    assert upstream.hits["/tenant/.well-known/openid-configuration"] == 1  # 404 first
    assert upstream.hits["/.well-known/oauth-authorization-server/tenant"] == 1


@pytest.mark.parametrize(("jwks_uri", "reason"), [
    ("http://example.org/keys.json", "refusing http://"),
    ("http://127.0.0.1:9/keys.json", "plain http jwks_uri"),  # an https issuer never downgrades
    (None, "no jwks_uri"),
])
async def test_a_discovered_jwks_uri_follows_the_url_rule(upstream: Upstream, client: httpx.AsyncClient,
                                                          clock: FakeClock, jwks_uri: str | None,
                                                          reason: str) -> None:
    issuer = upstream.base
    upstream.serve("/.well-known/openid-configuration",
                   json.dumps({"issuer": issuer, "jwks_uri": jwks_uri}).encode())
    async with RemoteKeySet.from_issuer(issuer, client=client, clock=clock) as keys:
        assert keys.last_error is not None and keys.last_error.reason == "discovery"
        assert reason in str(keys.last_error)


async def test_no_discovery_document_at_all(upstream: Upstream, client: httpx.AsyncClient,
                                            clock: FakeClock) -> None:
    async with RemoteKeySet.from_issuer(upstream.base, client=client, clock=clock) as keys:
        assert keys.last_error is not None and keys.last_error.reason == "discovery"
        assert "answered 404" in str(keys.last_error)


# --- lifecycle, and the middleware --------------------------------------------------------------------------


async def test_a_closed_set_keeps_its_keys_and_fetches_no_more(upstream: Upstream, remote: RemoteKeySet,
                                                               clock: FakeClock) -> None:
    upstream.serve("/jwks.json", jwks(A))
    assert await remote.open()
    release = upstream.stall("/jwks.json", jwks(A, B))
    clock.advance(601)
    remote.current()
    await asyncio.sleep(0.05)
    await remote.close()  # cancels the stalled fetch
    release.set()
    assert remote._task is None
    clock.advance(601)
    assert [key.kid for key in remote.current()] == ["key-a"]
    assert remote._task is None
    assert await remote.refresh("key-b") is False
    with pytest.raises(JWKSUnavailable):
        await remote.fetch()
    with pytest.raises(RuntimeError):
        await remote.open()


def test_httpx_loads_on_the_first_fetch_not_with_the_middleware() -> None:
    code = ("import sys; from jwtkit.web import JWTAuthMiddleware; "
            "embedded = ('httpx' in sys.modules, 'jwtkit.service._remote_keys' in sys.modules); "
            "from jwtkit.service import RemoteKeySet; RemoteKeySet('https://issuer.example/jwks.json'); "
            "print(embedded, 'httpx' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            check=True)
    assert result.stdout.strip() == "(False, False) False"


async def test_current_outside_an_event_loop_starts_nothing() -> None:
    keys = RemoteKeySet("https://issuer.example/jwks.json")
    assert len(await asyncio.to_thread(keys.current)) == 0
    assert keys._task is None


async def whoami(request: Request) -> Response:
    principal = request.state.principal
    error = request.state.auth_error
    return JSONResponse({"user": principal.user_id if principal else None,
                         "reason": error.reason if error else None})


async def test_the_middleware_takes_a_remote_key_set(upstream: Upstream, remote: RemoteKeySet) -> None:
    upstream.serve("/jwks.json", jwks(A))
    app = Starlette(routes=[Route("/me", whoami)])
    app.add_middleware(JWTAuthMiddleware, keys=remote, issuer=ISSUER, typ="at+jwt")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as http:
        # not opened: the first request starts the fetch, and a token of a key it lacks waits for it
        answer = await http.get("/me", headers={"Authorization": f"Bearer {token(A)}"})
        assert answer.json() == {"user": "u1", "reason": None}
        stranger = Key.generate("EdDSA", kid="stranger")
        answer = await http.get("/me", headers={"Authorization": f"Bearer {token(stranger)}"})
        assert answer.status_code == 401 and answer.json()["reason"] == "key"
    assert upstream.hits["/jwks.json"] == 2


# --- end to end: a jwtkit issuer's EdDSA key ring -------------------------------------------------------


async def test_tokens_of_a_jwtkit_issuer_verify_through_its_published_jwks(
        upstream: Upstream, client: httpx.AsyncClient, clock: FakeClock) -> None:
    """An AuthService signs with an EdDSA key ring; a small server publishes what jwtkit's server does at
    /.well-known/jwks.json (same Cache-Control) and a discovery document; another service verifies its
    access tokens from that alone, across a key rotation."""
    issuer = upstream.base
    ring = KeyRing.generate("EdDSA")
    service = AuthService(store=open_store("memory://"), users=MemoryUserRepository(), keys=ring,
                          config=AuthConfig(issuer=issuer), mailer=MemoryMailer(), hasher=CountingHasher())

    def publish() -> None:
        upstream.serve("/.well-known/jwks.json", json.dumps(service.jwks()).encode(),
                       headers={"Cache-Control": "public, max-age=300"})

    upstream.serve("/.well-known/openid-configuration",
                   json.dumps({"issuer": issuer, "jwks_uri": f"{issuer}/.well-known/jwks.json"}).encode())
    publish()
    async with service:
        user = await service.register("alice", PASSWORD)
        first = (await service.login("alice", PASSWORD)).access_token
        async with RemoteKeySet.from_issuer(issuer, client=client, clock=clock) as keys:
            policy = AccessPolicy(keys=keys, typ="at+jwt", issuer=issuer)
            principal = await policy.authenticate(first)
            assert principal.user_id == user.id and principal.session_id
            assert [key.kid for key in keys.current()] == [ring.active.kid]
            # the issuer rotates: a new active key, the old one verify-only; new tokens carry the new kid
            rotated = KeyRing(Key.generate("EdDSA", kid="rotated"), [ring.active])
            service.keys = rotated
            publish()
            second = (await service.login("alice", PASSWORD)).access_token
            assert (await policy.authenticate(second)).user_id == user.id  # an unknown kid: one refetch
            assert (await policy.authenticate(first)).user_id == user.id  # the old key still verifies
            assert {key.kid for key in keys.current()} == {"rotated", ring.active.kid}
            # the new kid on a token another key signed is a forgery, not a rotation: no refetch
            forged = encode({"sub": user.id, "iss": "https://other.example", "exp": int(time.time()) + 60},
                            Key.generate("EdDSA", kid="rotated"), typ="at+jwt")
            assert await refused(policy, forged) == "signature"
            clock.advance(299)
            keys.current()
            assert keys._task is None  # max-age=300, as jwtkit's server sends it
    assert upstream.hits["/.well-known/openid-configuration"] == 1
    assert upstream.hits["/.well-known/jwks.json"] == 2
