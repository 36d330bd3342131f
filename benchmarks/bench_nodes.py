"""Two ``jwtkit serve`` nodes on one Redis: requests/s per node, and how long a logout on node A takes to
be refused on node B (revocation propagation through the store's feed and each node's revocation mirror).

Set-up: one redis-server (a free port, no persistence; ``bench_web._redis`` pins it to CPU 1, this section
lets it run on either CPU with ``taskset -p`` so that neither node carries it alone) and two pairs of nodes,
all on that Redis, sharing ``JWT_SECRET`` and one SQLite users file:

- *mirror on*: ``JWTKIT_REVOCATION_MIRROR=on`` (what ``auto``, the default, picks with Redis; ``on`` makes a
  node without a feed fail at start instead of measuring the wrong thing);
- *mirror off*: ``JWTKIT_REVOCATION_MIRROR=off``, every request asks Redis.

In each pair node A is pinned to CPU 0 and node B to CPU 1 (``taskset``), one worker each. The idle pair
costs almost nothing (the mirror-on pair's blocking feed reads wake four times a second, and once per
revocation of the other pair too), and the two pairs are measured in interleaved rounds, so that a noisy
neighbour hurts both alike; medians are reported.

Throughput: two wrk processes at once (``-t1 -c32 --latency``), one per node of the pair, each pinned to the
*other* node's CPU: a 2-core machine has no free core for the load, and crossing keeps the two cores
symmetric (each runs one node and the load on the other) and never schedules a node against its own
client. Reported per node: requests/s and p99 from wrk, server CPU µs per request from the utime + stime of
the node's process tree; and the pair's sum.

Propagation: ``--revocations`` sessions per pair (logins through ``POST /auth``, on both nodes of the
mirror-on pair, a bounded pool), made before the measurement. Then for each session, one after the other:
``GET /private`` on B (must be 200: B accepts the token beforehand), ``POST /logout`` with the access token
on A (must be 204), and from the moment A's 204 is read, ``GET /private`` on B with that token, again and
again on one keep-alive connection, until the first 401. Latency = the first 401 read from B minus A's 204;
a 200 meanwhile is expected and counted; any other answer, or no 401 within 5 s, is an error. The
resolution is one B request (its median is printed). With the mirror off, B must refuse at the first poll.

Usage: ``python -m benchmarks nodes [--duration=5] [--connections=32] [--rounds=3] [--revocations=1000]``.
"""

from __future__ import annotations

import contextlib
import http.client
import math
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks._timing import table
from benchmarks.bench_web import (
    CLOCK_TICKS,
    ROOT,
    _free_port,
    _jwtkit_command,
    _post_json,
    _process,
    _redis,
    _tree_cpu_ticks,
)

CPUS = ("0", "1")  # node A, node B
MODES = ("on", "off")
USERS = 8  # logins of one user run one at a time in a node (the throttle's lock): spread them
LOGIN_WORKERS = 4
BLOCK = 50  # revocations of one mode before the other's turn
REFUSAL_DEADLINE = 5.0  # seconds B may keep accepting a revoked token before the revocation is an error


@dataclass
class Node:
    name: str  # "A" or "B"
    cpu: str
    pid: int
    port: int


@dataclass
class Pair:
    mode: str  # JWTKIT_REVOCATION_MIRROR
    a: Node
    b: Node


@dataclass
class Load:
    requests_per_s: float
    p99_ms: float
    cpu_us: float
    errors: int


@dataclass
class Propagation:
    latencies_ms: list[float] = field(default_factory=list)  # A's 204 to the first 401 read from B
    sent_ms: list[float] = field(default_factory=list)  # A's 204 to the sending of the poll B refused
    polls_ms: list[float] = field(default_factory=list)  # every B request's own time
    accepted: list[int] = field(default_factory=list)  # 200s from B after A's 204, per revocation
    errors: list[str] = field(default_factory=list)


def _start_node(stack: contextlib.ExitStack, name: str, cpu: str, mode: str, env: dict[str, str],
                work: Path) -> Node:
    port = _free_port()
    home = work / f"{mode}-{name}"
    home.mkdir()
    # bench_web._process runs its command under ``taskset -c 0``; the inner taskset moves B to CPU 1
    pid = stack.enter_context(_process(["taskset", "-c", cpu, *_jwtkit_command(port)],
                                       env={**env, "JWTKIT_REVOCATION_MIRROR": mode}, cwd=home, port=port,
                                       log=home / "jwtkit.log"))
    return Node(name, cpu, pid, port)


def _unpin_redis(redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        pid = int(client.info("server")["process_id"])
    finally:
        client.close()
    subprocess.run(["taskset", "-a", "-p", "-c", ",".join(CPUS), str(pid)], check=True, capture_output=True)


def _login(port: int, username: str, password: str) -> str:
    pair = _post_json(f"http://127.0.0.1:{port}/auth", {"username": username, "password": password})
    return str(pair["access_token"])


def _sessions(pair: Pair, users: list[tuple[str, str]], count: int) -> list[str]:
    """``count`` access tokens, each of its own session, logged in on both nodes of ``pair`` at once."""
    ports = (pair.a.port, pair.b.port)
    jobs = [(ports[i % 2], *users[i % len(users)]) for i in range(count)]
    with ThreadPoolExecutor(LOGIN_WORKERS) as pool:
        return list(pool.map(lambda job: _login(*job), jobs))


# throughput ------------------------------------------------------------------------------------------------

def _wrk_start(port: int, cpu: str, token: str, duration: int, connections: int) -> subprocess.Popen[str]:
    # bench_web._wrk pins every wrk to one CPU and waits for it; two at once on two CPUs need their own
    args = ["taskset", "-c", cpu, "wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency",
            "-H", f"Authorization: Bearer {token}", "-H", "Accept: application/json",
            f"http://127.0.0.1:{port}/private"]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wrk_result(proc: subprocess.Popen[str]) -> tuple[float, float, int]:
    """requests/s, p99 ms and errors of a finished wrk (the same reading as bench_web._wrk)."""
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {err.strip()}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    p99_ms = float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan")
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = int(bad.group(1)) if bad else 0
    errors += sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    return rps, p99_ms, errors


def _load_pair(pair: Pair, token: str, duration: int, connections: int) -> tuple[Load, Load]:
    """wrk on both nodes at once, each wrk on the other node's CPU."""
    nodes = (pair.a, pair.b)
    before = [_tree_cpu_ticks(node.pid) for node in nodes]
    procs = [_wrk_start(node.port, other.cpu, token, duration, connections)
             for node, other in ((pair.a, pair.b), (pair.b, pair.a))]
    results = [_wrk_result(proc) for proc in procs]
    loads = []
    for node, ticks, (rps, p99_ms, errors) in zip(nodes, before, results, strict=True):
        used = (_tree_cpu_ticks(node.pid) - ticks) / CLOCK_TICKS
        loads.append(Load(rps, p99_ms, used / (rps * duration) * 1e6 if rps else float("nan"), errors))
    return loads[0], loads[1]


def _scripts(client: Any) -> int:
    """EVALSHA calls the Redis server has answered so far. A session check is one round trip, one EVALSHA
    (total_commands_processed would count the commands inside the script too); an idle mirror's feed read
    is one more, about four a second per node."""
    stats = client.info("commandstats").get("cmdstat_evalsha", {})
    return int(stats.get("calls", 0))


# propagation -----------------------------------------------------------------------------------------------

class _Connection:
    """One keep-alive HTTP/1.1 connection (http.client: less client time per request than httpx)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def request(self, method: str, path: str, token: str) -> int:
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json", "Content-Length": "0"}
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, headers=headers)
                response = self.conn.getresponse()
                response.read()
                return response.status
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.conn.close()  # the server closed an idle keep-alive connection: once more, anew
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.conn.close()


def _propagate(pair: Pair, tokens: list[str], out: Propagation) -> None:
    """Revoke each token's session on A and poll B until it refuses it; the figures go to ``out``."""
    a, b = _Connection(pair.a.port), _Connection(pair.b.port)
    clock = time.perf_counter
    try:
        for n, token in enumerate(tokens):
            status = b.request("GET", "/private", token)
            if status != 200:
                out.errors.append(f"#{n}: B answered {status} before the logout")
                continue
            status = a.request("POST", "/logout", token)
            acknowledged = clock()
            if status != 204:
                out.errors.append(f"#{n}: logout on A answered {status}")
                continue
            accepted = 0
            while True:
                sent = clock()
                status = b.request("GET", "/private", token)
                now = clock()
                out.polls_ms.append((now - sent) * 1e3)
                if status == 401:
                    out.latencies_ms.append((now - acknowledged) * 1e3)
                    out.sent_ms.append((sent - acknowledged) * 1e3)
                    out.accepted.append(accepted)
                    break
                if status != 200:
                    out.errors.append(f"#{n}: B answered {status} after the logout")
                    break
                accepted += 1
                if now - acknowledged > REFUSAL_DEADLINE:
                    out.errors.append(f"#{n}: B still accepted it {REFUSAL_DEADLINE:g} s after A's 204")
                    break
    finally:
        a.close()
        b.close()


def _quantile(values: list[float], q: float) -> float:
    """The nearest-rank quantile (p99 of 1,000 values: the 990th smallest)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else float("nan")


# the section -----------------------------------------------------------------------------------------------

def main(argv: list[str]) -> None:
    options = dict(arg.lstrip("-").partition("=")[::2] for arg in argv)
    duration = int(options.get("duration") or 5)
    connections = int(options.get("connections") or 32)
    rounds = int(options.get("rounds") or 3)
    revocations = int(options.get("revocations") or 1000)
    missing = [b for b in ("wrk", "taskset", "redis-server") if shutil.which(b) is None]
    if missing:
        print(f"\n## nodes: skipped ({', '.join(missing)} not installed)")
        return
    if (os.cpu_count() or 1) < 2:
        print("\n## nodes: skipped (needs 2 CPUs, one per node)")
        return
    secret = secrets.token_hex(32)
    loads: dict[tuple[str, str], list[Load]] = {}
    sums: dict[str, list[float]] = {}
    redis_per_request: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="jwtkit-bench-nodes-") as tmp, contextlib.ExitStack() as stack:
        work = Path(tmp)
        redis_url = stack.enter_context(_redis(work, "redis"))
        _unpin_redis(redis_url)
        import redis

        client = redis.Redis.from_url(redis_url)
        stack.callback(client.close)
        env = {**os.environ, "JWT_SECRET": secret, "JWTKIT_STORE": redis_url,
               "JWTKIT_DB": str(work / "users.db"), "PYTHONPATH": str(ROOT / "src")}
        for name in ("JWTKIT_PORT", "JWTKIT_REVOCATION_MIRROR", "JWTKIT_MIRROR_MAX_LAG"):
            env.pop(name, None)
        pairs = [Pair(mode, _start_node(stack, "A", CPUS[0], mode, env, work),
                      _start_node(stack, "B", CPUS[1], mode, env, work)) for mode in MODES]
        base = f"http://127.0.0.1:{pairs[0].a.port}"
        users = [(f"bench{i}", "correct horse battery staple " + secrets.token_hex(4)) for i in range(USERS)]
        for username, password in users:
            _post_json(f"{base}/register", {"username": username, "password": password})
        started = time.monotonic()
        tokens = _sessions(pairs[0], users, 2 * revocations + 1)
        login_s = time.monotonic() - started
        bearer = tokens.pop()  # wrk's, on every node
        for pair in pairs:  # warm-up: connections, caches, lazy imports
            _load_pair(pair, bearer, 2, connections)
        for _ in range(rounds):  # interleaved: a noisy neighbour hurts both pairs alike
            for pair in pairs:
                scripts = _scripts(client)
                load_a, load_b = _load_pair(pair, bearer, duration, connections)
                served = (load_a.requests_per_s + load_b.requests_per_s) * duration
                redis_per_request.setdefault(pair.mode, []).append((_scripts(client) - scripts) / served)
                loads.setdefault((pair.mode, "A"), []).append(load_a)
                loads.setdefault((pair.mode, "B"), []).append(load_b)
                sums.setdefault(pair.mode, []).append(load_a.requests_per_s + load_b.requests_per_s)
        propagation = {pair.mode: Propagation() for pair in pairs}
        for start in range(0, revocations, BLOCK):  # alternating blocks, for the same reason
            for i, pair in enumerate(pairs):
                block = tokens[i * revocations:(i + 1) * revocations][start:start + BLOCK]
                _propagate(pair, block, propagation[pair.mode])
    _report(pairs, loads, sums, redis_per_request, propagation, duration=duration, connections=connections,
            rounds=rounds, revocations=revocations, login_s=login_s)


def _report(pairs: list[Pair], loads: dict[tuple[str, str], list[Load]], sums: dict[str, list[float]],
            redis_per_request: dict[str, list[float]], propagation: dict[str, Propagation], *,
            duration: int, connections: int, rounds: int, revocations: int, login_s: float) -> None:
    rows: list[list[str]] = []
    for pair in pairs:
        for node in (pair.a, pair.b):
            runs = loads[(pair.mode, node.name)]
            rows.append([pair.mode, node.name, node.cpu,
                         f"{statistics.median(r.requests_per_s for r in runs):,.0f}",
                         f"{statistics.median(r.p99_ms for r in runs):.2f}",
                         f"{statistics.median(r.cpu_us for r in runs):,.0f}",
                         "", str(sum(r.errors for r in runs))])
        rows.append([pair.mode, "A+B", "0,1", f"{statistics.median(sums[pair.mode]):,.0f}", "", "",
                     f"{statistics.median(redis_per_request[pair.mode]):.2f}", ""])
    gain = statistics.median(on / off for on, off in zip(sums["on"], sums["off"], strict=True))
    title = (f"nodes: GET /private on two jwtkit serve on one Redis (A on CPU {CPUS[0]}, B on CPU "
             f"{CPUS[1]}), wrk -t1 -c{connections} -d{duration}s on both at once, each on the other "
             f"node's CPU; median of {rounds} interleaved rounds; A+B mirror on / off: {gain:.2f}x "
             f"(same-round ratios)")
    print(table(title, ["mirror", "node", "CPU", "req/s", "p99 ms", "CPU µs/req", "EVALSHA/req",
                        "non-200"], rows))
    rows = []
    for mode, result in propagation.items():
        lat, accepted = result.latencies_ms, result.accepted
        late = sum(1 for n in accepted if n) / len(accepted) * 100 if accepted else 0.0
        rows.append([mode, f"{len(lat):,}", *(f"{_quantile(lat, q):.2f}" for q in (0.5, 0.9, 0.99)),
                     f"{max(lat, default=float('nan')):.2f}",
                     f"{statistics.median(result.polls_ms) if result.polls_ms else float('nan'):.2f}",
                     *(f"{_quantile(result.sent_ms, q):.2f}" for q in (0.5, 0.99)),
                     f"{late:.1f}%", f"{max(accepted, default=0)}", str(len(result.errors))])
    title = (f"nodes: revocation propagation, 204 of POST /logout on A to the first 401 of GET /private "
             f"on B (polled on one keep-alive connection), {revocations:,} revocations per mode one at a "
             f"time, the modes in alternating blocks of {BLOCK} ({2 * revocations + 1:,} logins before: "
             f"{login_s:.0f} s)")
    print(table(title,
                ["mirror", "refused", "p50 ms", "p90 ms", "p99 ms", "max ms", "poll ms (median)",
                 "sent p50", "sent p99", "any 200 after 204", "most 200s", "errors"], rows))
    for mode, result in propagation.items():
        for error in result.errors[:5]:
            print(f"  mirror {mode}: {error}")
        if len(result.errors) > 5:
            print(f"  mirror {mode}: ... and {len(result.errors) - 5} more")


if __name__ == "__main__":
    main(sys.argv[1:])
