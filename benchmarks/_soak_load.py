"""The soak's load generator (``benchmarks/bench_soak.py``): a small HTTP/1.1 client on asyncio (uvloop) and
httptools, the mixed workload, the statuses each kind of request may get, and the two ways of driving it.

Why this client and not httpx or node: measured on the 2-core machine, pinned to the CPU the server does not
use, against ``GET /private`` of ``jwtkit serve`` with 32 keep-alive connections in a closed loop, this
client drove 24,100 req/s at 14.6 µs of its own CPU per request (as many as wrk, so the server was the
limit), undici 6 on node 20 19,800 req/s at 29.6 µs, and httpx's ``AsyncClient`` 383 req/s. The soak runs at
a few thousand requests a second, which leaves this client most of its core; and it needs no npm install.

The workload keeps a pool of live sessions (access and refresh token, per user) and draws each request's kind
from a fixed, evenly spread cycle (smooth weighted round robin over :data:`MIX`, so logins and logouts
balance exactly and the pool keeps its size). A session is held by one request at a time, so a refresh token
is never presented twice and no request races a logout of its own session. Each kind has an exact set of
statuses (:data:`EXPECTED`); any other answer, no answer at all (``NO_ANSWER``: connection lost, or no answer
within :data:`TIMEOUT`) or a 200 whose token pair cannot be read (``BAD_BODY``) is unexpected.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import contextlib
import hashlib
import hmac
import itertools
import json
import math
import random
import time
from array import array
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import cast

import httptools

LOGIN, PRIVATE, REFRESH, LOGOUT, BAD = "login", "private", "refresh", "logout", "bad"
KINDS = (LOGIN, PRIVATE, REFRESH, LOGOUT, BAD)

# Per mille. Logins are argon2id (about 23 ms of the server's CPU each: more than 200 requests to /private),
# so they are a small share; logouts match them, so the session pool keeps its size.
MIX: Mapping[str, int] = MappingProxyType({PRIVATE: 900, BAD: 50, REFRESH: 40, LOGIN: 5, LOGOUT: 5})

# The statuses a request of each kind may get; anything else fails the run.
EXPECTED: Mapping[str, frozenset[int]] = MappingProxyType({
    LOGIN: frozenset({200}),
    PRIVATE: frozenset({200}),
    REFRESH: frozenset({200}),
    LOGOUT: frozenset({204}),
    BAD: frozenset({401}),
})
NO_ANSWER = 0  # pseudo-status: the connection was lost, or no answer came within TIMEOUT
BAD_BODY = 1  # pseudo-status: a 200 to a login or refresh whose body is not a token pair
TIMEOUT = 10.0  # seconds for one answer
IDLE_RECONNECT = 4.0  # seconds: granian closes a keep-alive connection idle for 5 s; reconnect before that
BACKLOG_SECONDS = 15.0  # a paced run stops when this many seconds of requests wait for a connection
REVOKED_AFTER = 2.0  # seconds after its logout that an access token is used as a revoked one (the
# revocation mirror's bound with Redis is 1 s, JWTKIT_MIRROR_MAX_LAG; SQLite refuses it at once)

# The bad tokens, in turn; each must get 401 (the setup checks once that each gets the reason named here).
BAD_VARIANTS: Mapping[str, str] = MappingProxyType({
    "garbage": "malformed",
    "expired": "expired",
    "wrong signature": "signature",
    "alg none": "malformed",  # an unsecured JWS (RFC 7515 A.5, empty signature) is refused as malformed
    "revoked": "revoked",
    "no token": "",  # 401 missing_token, which has no reason
})


def is_expected(kind: str, status: int) -> bool:
    """Whether ``status`` is an answer a request of ``kind`` may get."""
    return status in EXPECTED[kind]


def unexpected(statuses: Mapping[str, Mapping[int, int]]) -> dict[str, dict[int, int]]:
    """The counts of ``statuses`` (kind -> status -> count) that are not expected, by kind; kinds with none
    are left out, so an empty answer means a clean run."""
    found: dict[str, dict[int, int]] = {}
    for kind, counts in statuses.items():
        bad = {status: n for status, n in counts.items() if n and not is_expected(kind, status)}
        if bad:
            found[kind] = bad
    return found


def kind_cycle(mix: Mapping[str, int]) -> list[str]:
    """One cycle of smooth weighted round robin over ``mix`` (kind -> weight): each kind appears as often as
    its weight, spread as evenly as the weights allow (nginx's algorithm)."""
    total = sum(mix.values())
    current = dict.fromkeys(mix, 0)
    cycle = []
    for _ in range(total):
        for kind, weight in mix.items():
            current[kind] += weight
        chosen = max(current, key=lambda k: current[k])
        current[chosen] -= total
        cycle.append(chosen)
    return cycle


def percentile(ordered: Sequence[float], p: float) -> float:
    """The nearest-rank ``p``-th percentile of an ascending sequence (nan when empty)."""
    if not ordered:
        return math.nan
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


# --- the client -------------------------------------------------------------------------------------------

class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection with one request in flight at a time."""

    def __init__(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self._body: list[bytes] = []
        self.closed = False
        self.last_used = time.monotonic()
        self.started = 0.0  # when the request in flight was written (0: none in flight)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.fail(exc)

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        waiter, self._waiter = self._waiter, None
        self.started = 0.0
        status = self._parser.get_status_code()
        if not self._parser.should_keep_alive():
            self.close()
        if waiter is not None and not waiter.done():
            waiter.set_result((status, b"".join(self._body)))
        self._body = []

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.fail(exc or ConnectionResetError("the server closed the connection"))

    def fail(self, exc: BaseException) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.close()

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()

    def send(self, data: bytes) -> asyncio.Future[tuple[int, bytes]]:
        assert self._transport is not None
        assert self._waiter is None
        self._waiter = asyncio.get_running_loop().create_future()
        self._body = []
        self.started = self.last_used = time.monotonic()
        self._transport.write(data)
        return self._waiter


def source_address(slot: int) -> str:
    """The loopback address connection ``slot`` comes from: 127.0.1.1, 127.0.1.2, ... (Linux answers the
    whole of 127.0.0.0/8 on lo). The server sees one client per address: logins from one address wait for
    each other (the login throttle's lock), so one address for every connection would make every login of
    the soak queue behind the others, which clients on their own addresses do not."""
    return f"127.0.{1 + slot // 250}.{1 + slot % 250}"


class Client:
    """Connections to one server (127.0.0.1:port), one per worker, each from its own loopback address
    (:func:`source_address`), opened again when the server closed one or it idled for long; a watchdog
    fails a request unanswered after :data:`TIMEOUT`."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.host = f"127.0.0.1:{port}".encode()
        self._open: set[_Connection] = set()

    async def connect(self, slot: int) -> _Connection:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(_Connection, "127.0.0.1", self.port,
                                               local_addr=(source_address(slot), 0))
        self._open.add(conn)
        return conn

    async def fresh(self, conn: _Connection | None, slot: int) -> _Connection:
        """``conn``, or a new connection when it is closed or has idled close to the server's timeout."""
        if conn is not None and not conn.closed and time.monotonic() - conn.last_used < IDLE_RECONNECT:
            return conn
        if conn is not None:
            conn.close()
            self._open.discard(conn)
        return await self.connect(slot)

    async def watchdog(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for conn in list(self._open):
                if conn.closed:
                    self._open.discard(conn)
                elif conn.started and now - conn.started > TIMEOUT:
                    conn.fail(TimeoutError(f"no answer in {TIMEOUT} s"))

    def close(self) -> None:
        for conn in self._open:
            conn.close()
        self._open.clear()

    def get(self, path: bytes, token: str | None) -> bytes:
        auth = b"" if token is None else b"Authorization: Bearer " + token.encode() + b"\r\n"
        return (b"GET " + path + b" HTTP/1.1\r\nHost: " + self.host + b"\r\nAccept: application/json\r\n"
                + auth + b"\r\n")

    def post(self, path: bytes, body: Mapping[str, str] | None, token: str | None = None) -> bytes:
        data = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        kind = b"" if body is None else b"Content-Type: application/json\r\n"
        auth = b"" if token is None else b"Authorization: Bearer " + token.encode() + b"\r\n"
        return (b"POST " + path + b" HTTP/1.1\r\nHost: " + self.host + b"\r\nAccept: application/json\r\n"
                + kind + auth + b"Content-Length: " + str(len(data)).encode() + b"\r\n\r\n" + data)


async def exchange(conn: _Connection, request: bytes) -> tuple[int, bytes]:
    """Send one request and wait for its answer: (status, body), or (NO_ANSWER, b"")."""
    try:
        return await conn.send(request)
    except (OSError, TimeoutError, httptools.HttpParserError):
        return NO_ANSWER, b""


# --- the workload -----------------------------------------------------------------------------------------

class HarnessError(RuntimeError):
    """The harness itself cannot go on (not a finding about the server): the session pool ran dry."""


@dataclass
class Session:
    access: str
    refresh: str
    user: int
    issued: float  # time.monotonic() when the access token came
    lifetime: float  # its expires_in, seconds


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def token_pair(body: bytes) -> tuple[str, str, float] | None:
    """(access token, refresh token, expires_in) from a login or refresh answer, or None."""
    try:
        data = json.loads(body)
        access, refresh, lifetime = data["access_token"], data["refresh_token"], float(data["expires_in"])
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(access, str) or not isinstance(refresh, str) or not access or not refresh:
        return None
    return access, refresh, lifetime


class Workload:
    """The state the mixed workload runs on: users and their passwords, the pool of idle sessions, tokens of
    sessions logged out (for the "revoked" bad token), and the secret to forge an expired token with.

    ``max_per_user`` keeps each user's live sessions under the server's per-user cap
    (``JWTKIT_MAX_SESSIONS``, 50), past which a login would end the user's oldest session."""

    def __init__(self, client: Client, users: Sequence[tuple[str, str]], secret: bytes, *,
                 max_per_user: int = 40) -> None:
        self.client = client
        self.users = list(users)
        self.secret = secret
        self.max_per_user = max_per_user
        self.idle: list[Session] = []
        self.live = [0] * len(self.users)
        self.revoked: deque[tuple[float, str]] = deque(maxlen=512)
        self._next_user = itertools.cycle(range(len(self.users)))
        self._variants = itertools.cycle(BAD_VARIANTS)
        self._random = random.Random(14)
        self._fake_signature = _b64(hashlib.sha256(b"not the server's key").digest())
        self._none_header = _b64(b'{"alg":"none","typ":"at+jwt"}')

    # sessions

    def _take(self) -> Session:
        if not self.idle:
            raise HarnessError("no idle session left: the pool is smaller than the requests in flight "
                               "(raise --sessions)")
        index = self._random.randrange(len(self.idle))
        self.idle[index], self.idle[-1] = self.idle[-1], self.idle[index]
        return self.idle.pop()

    def _any_access(self) -> str:
        if not self.idle:
            raise HarnessError("no live session to derive a bad token from (raise --sessions)")
        return self.idle[self._random.randrange(len(self.idle))].access

    def _user_for_login(self) -> int:
        for _ in range(len(self.users)):
            user = next(self._next_user)
            if self.live[user] < self.max_per_user:
                return user
        raise HarnessError("every user is at the per-user session cap (raise --users)")

    # the bad tokens

    def bad_token(self, variant: str) -> str | None:
        """A token of ``variant`` (a key of BAD_VARIANTS); None for "no token" (and for "revoked" while no
        logout is old enough, which then sends a garbage token instead)."""
        if variant == "garbage":
            return "soak." + _b64(time.perf_counter_ns().to_bytes(8, "big")) + ".garbage"
        if variant == "no token":
            return None
        if variant == "revoked":
            if self.revoked and time.monotonic() - self.revoked[0][0] >= REVOKED_AFTER:
                when, token = self.revoked.popleft()
                self.revoked.append((when, token))  # kept for reuse, in turn
                return token
            return self.bad_token("garbage")
        header, payload, _ = self._any_access().split(".")
        if variant == "wrong signature":
            return f"{header}.{payload}.{self._fake_signature}"
        if variant == "alg none":
            return f"{self._none_header}.{payload}."
        if variant == "expired":
            claims = json.loads(_unb64(payload))
            now = int(time.time())
            claims["iat"], claims["exp"] = now - 1000, now - 100
            body = _b64(json.dumps(claims, separators=(",", ":")).encode())
            signature = hmac.new(self.secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
            return f"{header}.{body}.{_b64(signature)}"
        raise ValueError(f"no bad token variant {variant!r}")

    # one request of each kind: (the kind it was, status)

    async def run(self, kind: str, conn: _Connection) -> tuple[str, int]:
        client = self.client
        if kind == LOGIN:
            return LOGIN, await self.login(conn)
        if kind == BAD:
            token = self.bad_token(next(self._variants))
            status, _ = await exchange(conn, client.get(b"/private", token))
            return BAD, status
        session = self._take()
        if kind == PRIVATE and time.monotonic() - session.issued > session.lifetime / 2:
            kind = REFRESH  # an access token past half its life is refreshed instead (runs over 7 min)
        if kind == PRIVATE:
            status, _ = await exchange(conn, client.get(b"/private", session.access))
            self.idle.append(session)
            return PRIVATE, status
        if kind == REFRESH:
            status, body = await exchange(conn, client.post(b"/refresh", {"refresh_token": session.refresh}))
            pair = token_pair(body) if status == 200 else None
            if status == 200 and pair is None:
                status = BAD_BODY
            if pair is not None:
                session.access, session.refresh, session.lifetime = pair
                session.issued = time.monotonic()
                self.idle.append(session)
            else:
                self.live[session.user] -= 1  # its state is unknown now: dropped
            return REFRESH, status
        if kind == LOGOUT:
            status, _ = await exchange(conn, client.post(b"/logout", None, session.access))
            self.live[session.user] -= 1
            if status == 204:
                self.revoked.append((time.monotonic(), session.access))
            return LOGOUT, status
        raise ValueError(f"no request kind {kind!r}")

    async def login(self, conn: _Connection) -> int:
        user = self._user_for_login()
        name, password = self.users[user]
        self.live[user] += 1
        status, body = await exchange(conn, self.client.post(b"/auth", {"username": name,
                                                                        "password": password}))
        pair = token_pair(body) if status == 200 else None
        if pair is None:
            self.live[user] -= 1
            return BAD_BODY if status == 200 else status
        self.idle.append(Session(pair[0], pair[1], user, time.monotonic(), pair[2]))
        return status


# --- recording --------------------------------------------------------------------------------------------

@dataclass
class Recorder:
    """Latencies (seconds) and statuses by kind, and every answer's completion time, for one phase."""

    latencies: dict[str, array[float]] = field(default_factory=lambda: {k: array("d") for k in KINDS})
    statuses: dict[str, Counter[int]] = field(default_factory=lambda: {k: Counter() for k in KINDS})
    done_at: array[float] = field(default_factory=lambda: array("d"))  # monotonic, in answer order
    done_latency: array[float] = field(default_factory=lambda: array("d"))  # the same answers' latencies
    first_unexpected: list[str] = field(default_factory=list)  # a few, for the report

    def record(self, kind: str, status: int, latency: float, done: float) -> None:
        self.latencies[kind].append(latency)
        self.statuses[kind][status] += 1
        self.done_at.append(done)
        self.done_latency.append(latency)
        if not is_expected(kind, status) and len(self.first_unexpected) < 10:
            self.first_unexpected.append(f"{kind}: {status}")

    @property
    def count(self) -> int:
        return len(self.done_at)

    def summary(self, kind: str | None = None) -> dict[str, float]:
        values = sorted(itertools.chain.from_iterable(self.latencies.values()) if kind is None
                        else self.latencies[kind])
        return {"requests": len(values), **{f"p{p}": percentile(values, p) * 1000 for p in (50, 90, 99)},
                "max": (values[-1] * 1000 if values else math.nan)}

    def window(self, start: float, end: float) -> tuple[int, list[float]]:
        """The answers completed in [start, end): their count and sorted latencies (ms)."""
        lo, hi = bisect.bisect_left(self.done_at, start), bisect.bisect_left(self.done_at, end)
        return hi - lo, sorted(v * 1000 for v in self.done_latency[lo:hi])


# --- the two ways of driving it ---------------------------------------------------------------------------

async def _with_watchdog(client: Client, work: Awaitable[None]) -> None:
    """Run ``work`` (a task group) under the client's watchdog; a HarnessError in it comes out as itself."""
    watchdog = asyncio.create_task(client.watchdog())
    try:
        await work
    except ExceptionGroup as group:
        harness = group.subgroup(HarnessError)
        if harness is not None:
            raise harness.exceptions[0] from None
        raise
    finally:
        watchdog.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watchdog


async def closed_loop(workload: Workload, kinds: Iterator[str], *, connections: int, warmup: float,
                      measure: float) -> tuple[float, Recorder]:
    """Every connection busy: each sends its next request as soon as the last is answered. Returns the
    answers per second completed in the ``measure`` seconds after ``warmup``, and every answer's record."""
    recorder = Recorder()
    start = time.monotonic()
    stop = start + warmup + measure

    async def worker(slot: int) -> None:
        conn: _Connection | None = None
        while time.monotonic() < stop:
            conn = await workload.client.fresh(conn, slot)
            sent = time.monotonic()
            kind, status = await workload.run(next(kinds), conn)
            done = time.monotonic()
            recorder.record(kind, status, done - sent, done)

    async def all_workers() -> None:
        async with asyncio.TaskGroup() as group:
            for slot in range(connections):
                group.create_task(worker(slot))

    await _with_watchdog(workload.client, all_workers())
    counted, _ = recorder.window(start + warmup, stop)
    return counted / measure, recorder


@dataclass
class Paced:
    """What a paced run measured besides the answers: how far the generator ran behind its schedule."""

    recorder: Recorder
    rate: float
    started: float
    ended: float
    send_lag: array[float] = field(default_factory=lambda: array("d"))  # seconds, write time - scheduled
    max_backlog: int = 0
    stopped: str = ""  # why the run stopped before its end ("" when it ran to the end)


async def open_loop(workload: Workload, kinds: Iterator[str], *, rate: float, duration: float,
                    connections: int, on_tick: Callable[[float], None] | None = None,
                    tick: float = 5.0) -> Paced:
    """A constant arrival rate: request i is due at start + i/rate whatever the answers before it, and its
    latency runs from that time (so time spent waiting for a free connection, or behind a slow server, is
    counted: no coordinated omission). Connections take the due requests in order. A backlog of more than
    BACKLOG_SECONDS of requests means the server cannot keep up at all: the run stops there (``stopped``
    says so; the requests in flight are answered and recorded, those still queued are dropped).

    ``on_tick(now)`` is called every ``tick`` seconds (the caller samples the server's memory there)."""
    total = int(rate * duration)
    queue: asyncio.Queue[tuple[float, str] | None] = asyncio.Queue()
    start = time.monotonic() + 0.05
    paced = Paced(Recorder(), rate, start, start)
    backlog_limit = max(int(rate * BACKLOG_SECONDS), connections * 4)
    early = 0.001  # the timer's resolution is 1 ms: a request due within it is handed out now

    async def dispatcher() -> None:
        next_tick = start + tick
        for i in range(total):
            due = start + i / rate
            now = time.monotonic()
            if due > now + early:
                await asyncio.sleep(due - now - early)
                now = time.monotonic()
            if now >= next_tick:
                if on_tick is not None:
                    on_tick(now)
                next_tick += tick
            queue.put_nowait((due, next(kinds)))
            size = queue.qsize()
            if size > paced.max_backlog:
                paced.max_backlog = size
                if size > backlog_limit:
                    paced.stopped = (f"stopped after {now - start:.0f} s: {size} requests waiting for a "
                                     f"connection, neither the server nor the generator kept up with "
                                     f"{rate:,.0f} req/s")
                    break
        for _ in range(connections):
            queue.put_nowait(None)

    async def worker(slot: int) -> None:
        conn: _Connection | None = None
        while (job := await queue.get()) is not None and not paced.stopped:
            due, kind = job
            conn = await workload.client.fresh(conn, slot)
            sent = time.monotonic()
            paced.send_lag.append(sent - due)
            kind, status = await workload.run(kind, conn)
            done = time.monotonic()
            # from the due time, or from the sending when it was handed out early (within the timer's 1 ms)
            paced.recorder.record(kind, status, done - min(due, sent), done)

    async def everything() -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(dispatcher())
            for slot in range(connections):
                group.create_task(worker(slot))

    await _with_watchdog(workload.client, everything())
    paced.ended = time.monotonic()
    return paced
