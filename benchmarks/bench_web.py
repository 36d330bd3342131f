"""HTTP load test: ``GET /private`` with a valid bearer token, jwtkit against Python and node peers.

Servers, one worker (one process) each, pinned to CPU 0 with taskset; wrk (``-t1 -c32``) pinned to CPU 1, so
the load generator never shares the server's core:

- ``jwtkit serve`` (granian, uvloop) on SQLite; on Redis with the in-process revocation mirror (the default,
  ``JWTKIT_REVOCATION_MIRROR=auto``: revocations come from the store's feed, no store round trip per
  request); on Redis with the mirror off (``JWTKIT_REVOCATION_MIRROR=off``: one Redis round trip per
  request). Each Redis node has a redis-server of its own (a free port, never 6379), so that the Redis
  commands counted for a server are its own; the Python peers share the direct node's;
- FastAPI + PyJWT on uvicorn (``benchmarks/peers/fastapi_pyjwt.py``), a Redis GET by ``sid``;
- Starlette + PyJWT on granian (``benchmarks/peers/starlette_pyjwt.py``), the same Redis GET;
- node peers (``benchmarks/peers/node/``), the tutorial's own picks, with **no revocation check** (the table's
  store column says "none"): node's ``http`` server with ``jsonwebtoken`` verifying the same HS256 token with
  a key prepared once (``crypto.createSecretKey``), and ``@hapi/hapi`` with ``hapi-auth-jwt2`` (``validate``
  returns ``isValid: true``), twice: with the secret as a string, as the plugin's README sets it up, and with
  the same prepared key (with a string, jsonwebtoken tries ``createPublicKey`` on it at every verification,
  milliseconds on node 20; see ``hapi_auth_jwt2.js``). All check HS256 and the issuer, as the Python peers
  do; one node process each. Their packages are pinned in ``package-lock.json`` and installed with
  ``npm ci --no-audit --no-fund`` into ``benchmarks/peers/node/node_modules`` the first time (again when the
  lock file is newer); without node or npm, or when the install fails, the node rows are skipped with the
  reason printed.

The cost of authentication: each jwtkit server on SQLite and on Redis with the mirror is also measured on an
anonymous route, ``GET /.well-known/jwks.json`` without a token. It is the route that does the same kind of
work minus authentication: it passes the same edge limits, error boundary, readiness guard, the
authentication step (which finds the path in its exclusion list and reads no token) and the exact-route
table, touches no store (the keys are in memory; with the benchmark's HS256 secret the answer is
``{"keys":[]}``) and answers a small JSON body with orjson, as ``/private`` does. It is not a perfect
twin: it goes through Starlette's ``Request``/``Response`` objects, which ``/private``'s JSON answer skips,
and adds a ``Cache-Control`` header, so the anonymous side carries a little more framework work and the
ratio, if anything, flatters authentication. The other anonymous routes do something else: ``/healthz``
pings the store, ``/openapi.json`` serialises a large document, ``/favicon.ico`` is not JSON, and
``/private`` without a token is an error path (a 401 through the error handler).

Each jwtkit node logs a user of its own in; the peers all get the token of the mirrored node (the Python
peers find its ``sid`` in Redis). One token is sent again and again: jwtkit remembers a token it verified
(``token_cache``), so it checks that token's signature once; the peers verify it on every request.

All servers run at once (idle ones cost next to nothing; the mirrored node's feed reads a few times a
second) and are measured in interleaved rounds, so that a noisy neighbour on the machine hurts each alike.
Reported:
medians over the rounds of requests/s and p99 latency (``wrk --latency``), of server CPU µs per request
(utime + stime of the server's process tree, ``/proc/<pid>/stat``, before and after the run), and for the
servers that use Redis, Redis commands per request (``total_commands_processed`` before and after, which
counts the commands a script runs too: 1 for the peers' GET, 3 for jwtkit's direct check, one EVALSHA round
trip whose script runs HMGET and GET; about 0 with the mirror, its feed's background reads included). This
is also the check that the mirror is on. Ratios are medians of same-round ratios. Every response must be a
200: non-2xx answers and socket errors are counted in the tables and flagged.

Usage: ``python -m benchmarks web [--duration=6] [--connections=32] [--rounds=3]``; the default run (10
measurements a round) took 3 min 33-40 s on the 2-core machine. The default duration was 10 s with 4
servers.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks._timing import table

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
NODE_DIR = ROOT / "benchmarks" / "peers" / "node"
SERVER_CPU = "0"
LOAD_CPU = "1"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
ANONYMOUS_PATH = "/.well-known/jwks.json"
NPM_TIMEOUT = 300  # seconds for the first npm ci
WITHIN = 0.90  # "within 10%" of a reference: at least 0.90x its requests/s

# keys of the targets; the order is the order of measurement inside a round (an anonymous run right after
# the authenticated run on the same server, so that the pair sees the same machine)
SQLITE, SQLITE_ANON = "jwtkit/sqlite", "jwtkit/sqlite/anonymous"
MIRROR, MIRROR_ANON = "jwtkit/redis-mirror", "jwtkit/redis-mirror/anonymous"
DIRECT = "jwtkit/redis-direct"
FASTAPI, STARLETTE = "fastapi", "starlette"
NODE_HTTP, HAPI, HAPI_PREPARED = "node-http", "hapi", "hapi-prepared-key"
ORDER = [SQLITE, SQLITE_ANON, MIRROR, MIRROR_ANON, DIRECT, FASTAPI, STARLETTE, NODE_HTTP, HAPI, HAPI_PREPARED]


@dataclass
class Target:
    """A running server under test: its name, store, pid (the tree's root), port, and what wrk asks it."""

    name: str
    store: str
    pid: int
    port: int
    token: str | None  # None: an anonymous request, no Authorization header
    path: str = "/private"
    redis: str | None = None  # the URL of the redis-server whose commands per request are counted


@dataclass
class Result:
    requests_per_s: float
    p99_ms: float
    cpu_us: float
    redis_per_request: float | None
    errors: int


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def _tree_cpu_ticks(pid: int) -> int:
    """utime + stime of ``pid`` and all its descendants (granian and uvicorn may fork workers)."""
    children: dict[int, list[int]] = {}
    ticks: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2:].split()
        children.setdefault(int(fields[1]), []).append(int(entry))
        ticks[int(entry)] = int(fields[11]) + int(fields[12])  # utime, stime (proc(5) fields 14, 15)
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        total += ticks.get(current, 0)
        todo.extend(children.get(current, []))
    return total


@contextlib.contextmanager
def _process(args: list[str], *, env: dict[str, str], cwd: Path, port: int, log: Path) -> Iterator[int]:
    with open(log, "ab") as out:
        proc = subprocess.Popen(["taskset", "-c", SERVER_CPU, *args], env=env, cwd=cwd, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for_port(port, proc)
        yield proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _post_json(url: str, body: dict[str, str]) -> dict[str, object]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json",
                                              "Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        data: dict[str, object] = json.loads(response.read())
        return data


def _headers(token: str | None) -> dict[str, str]:
    headers = {"Accept": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def _get_ok(target: Target) -> None:
    url = f"http://127.0.0.1:{target.port}{target.path}"
    request = urllib.request.Request(url, headers=_headers(target.token))
    with urllib.request.urlopen(request, timeout=10) as response:
        if response.status != 200:
            raise RuntimeError(f"GET {url} answered {response.status}")


def _wrk(target: Target, duration: int, connections: int) -> tuple[float, int, float, int]:
    """requests/s, requests, p99 ms and errors (non-2xx answers and socket errors) of one wrk run."""
    args = ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency"]
    for name, value in _headers(target.token).items():
        args += ["-H", f"{name}: {value}"]
    args.append(f"http://127.0.0.1:{target.port}{target.path}")
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    done = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    p99_ms = float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan")
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = int(bad.group(1)) if bad else 0
    errors += sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    return rps, done, p99_ms, errors


class RedisCommands:
    """``total_commands_processed`` of a redis-server (commands a script runs are counted too)."""

    def __init__(self) -> None:
        self._clients: dict[str, Any] = {}

    def __call__(self, url: str) -> int:
        import redis

        client = self._clients.get(url)
        if client is None:
            client = self._clients[url] = redis.Redis.from_url(url)
        return int(client.info("stats")["total_commands_processed"])

    def close(self) -> None:
        for client in self._clients.values():
            client.close()


def _measure(target: Target, duration: int, connections: int, redis_commands: Callable[[str], int]) -> Result:
    commands = redis_commands(target.redis) if target.redis else 0
    before = _tree_cpu_ticks(target.pid)
    rps, done, p99_ms, errors = _wrk(target, duration, connections)
    used = (_tree_cpu_ticks(target.pid) - before) / CLOCK_TICKS
    per_request = None
    if target.redis:
        # the INFO that took the first reading is counted in the second
        per_request = (redis_commands(target.redis) - commands - 1) / done if done else float("nan")
    cpu_us = used / done * 1e6 if done else float("nan")
    return Result(rps, p99_ms, cpu_us, per_request, errors)


def _jwtkit_command(port: int) -> list[str]:
    cli = BIN / "jwtkit"
    probe = subprocess.run([str(cli), "serve", "--help"], capture_output=True) if cli.exists() else None
    if probe is not None and probe.returncode == 0:
        return [str(cli), "serve", "--host", "127.0.0.1", "--port", str(port), "--no-secure-cookies"]
    code = ("import os; from jwtkit.service import Settings; from jwtkit.web import serve; "
            f"serve(Settings.from_env(), port={port}, secure_cookies=False)")
    return [sys.executable, "-c", code]


def _start_jwtkit(stack: contextlib.ExitStack, store: str, store_url: str, secret: str, work: Path, *,
                  username: str, mirror: str | None = None) -> tuple[int, int, str]:
    """Start ``jwtkit serve`` on ``store_url``, register a user, log in: its pid, port and an access token.

    ``mirror``: ``JWTKIT_REVOCATION_MIRROR`` for the server; None measures the default (auto)."""
    port = _free_port()
    env = {**os.environ, "JWT_SECRET": secret, "JWTKIT_STORE": store_url, "PYTHONPATH": str(ROOT / "src")}
    for inherited in ("JWTKIT_PORT", "JWTKIT_REVOCATION_MIRROR", "JWTKIT_MIRROR_MAX_LAG"):
        env.pop(inherited, None)
    if mirror is not None:
        env["JWTKIT_REVOCATION_MIRROR"] = mirror
    work.mkdir()
    pid = stack.enter_context(_process(_jwtkit_command(port), env=env, cwd=work, port=port,
                                       log=work / "jwtkit.log"))
    base = f"http://127.0.0.1:{port}"
    password = "correct horse battery staple " + secrets.token_hex(4)
    _post_json(f"{base}/register", {"username": username, "password": password})
    pair = _post_json(f"{base}/auth", {"username": username, "password": password})
    return pid, port, str(pair["access_token"])


def _b64(segment: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


@contextlib.contextmanager
def _redis(work: Path, name: str) -> Iterator[str]:
    port = _free_port()
    log = open(work / f"{name}.log", "ab")  # noqa: SIM115 - the child owns it
    proc = subprocess.Popen(["taskset", "-c", LOAD_CPU, "redis-server", "--port", str(port), "--bind",
                             "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(work)],
                            stdout=log, stderr=subprocess.STDOUT)
    log.close()
    try:
        _wait_for_port(port, proc)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.kill()
        proc.wait()


def _node_peers() -> str | None:
    """Ready the node peers' packages: None when they can run, else why not."""
    missing = [b for b in ("node", "npm") if shutil.which(b) is None]
    if missing:
        return f"{' and '.join(missing)} not installed"
    installed = NODE_DIR / "node_modules" / ".package-lock.json"
    lock = NODE_DIR / "package-lock.json"
    if installed.exists() and installed.stat().st_mtime >= lock.stat().st_mtime:
        return None
    print(f"\n(web: npm ci --no-audit --no-fund in {NODE_DIR.relative_to(ROOT)}, the first time only)",
          flush=True)
    try:
        done = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, capture_output=True,
                              text=True, timeout=NPM_TIMEOUT)
    except subprocess.TimeoutExpired:
        return f"npm ci did not finish in {NPM_TIMEOUT} s"
    if done.returncode != 0:
        return f"npm ci failed: {_npm_error(done.stderr or done.stdout) or f'exit {done.returncode}'}"
    return None


def _npm_error(output: str) -> str:
    """The first line of npm's error that says what went wrong (not its code, errno or log path)."""
    for line in output.splitlines():
        text = line.removeprefix("npm error").removeprefix("npm ERR!").strip()
        if text and not re.match(r"(code|errno|syscall)\b|A complete log|at ", text):
            return text
    return ""


def _node_versions() -> str:
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    wanted = json.loads((NODE_DIR / "package.json").read_text())["dependencies"]
    return f"node {node}, " + ", ".join(f"{name} {version}" for name, version in wanted.items())


def _median_of_ratios(runs: dict[str, list[Result]], key: str, reference: str,
                      field: str = "requests_per_s") -> float | None:
    """The median over the rounds of ``key``'s value divided by ``reference``'s in the same round."""
    if key not in runs or reference not in runs:
        return None
    pairs = zip(runs[key], runs[reference], strict=True)
    return float(statistics.median(getattr(a, field) / getattr(b, field) for a, b in pairs))


def _x(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _median(results: list[Result], field: str) -> float:
    return float(statistics.median(getattr(r, field) for r in results))


def _start_all(stack: contextlib.ExitStack, work: Path, secret: str,
               node_skip: str | None) -> tuple[dict[str, Target], str | None]:
    """Every server, started and logged in to, by key. The mirrored node has a redis-server of its own, so
    that its feed's background reads are counted against it alone; the direct node and the peers share the
    other. Also returns why the node peers are skipped (``node_skip``, or a node server that did not start),
    or None."""
    targets: dict[str, Target] = {}
    mirror_url = stack.enter_context(_redis(work, "redis-mirror"))
    redis_url = stack.enter_context(_redis(work, "redis"))
    pid, port, token = _start_jwtkit(stack, "sqlite", "sqlite:///jwtkit.db", secret, work / "sqlite",
                                     username="bench-sqlite")
    targets[SQLITE] = Target("jwtkit serve (granian)", "sqlite", pid, port, token)
    targets[SQLITE_ANON] = Target("jwtkit serve (granian)", "sqlite", pid, port, None, ANONYMOUS_PATH)
    pid, port, token = _start_jwtkit(stack, "redis", mirror_url, secret, work / "redis-mirror",
                                     username="bench-mirror")
    targets[MIRROR] = Target("jwtkit serve (granian)", "redis + mirror", pid, port, token, redis=mirror_url)
    targets[MIRROR_ANON] = Target("jwtkit serve (granian)", "redis + mirror", pid, port, None, ANONYMOUS_PATH,
                                  redis=mirror_url)
    pid, port, direct_token = _start_jwtkit(stack, "redis", redis_url, secret, work / "redis-direct",
                                            username="bench-direct", mirror="off")
    targets[DIRECT] = Target("jwtkit serve (granian)", "redis, mirror off", pid, port, direct_token,
                             redis=redis_url)

    claims = json.loads(_b64(token.split(".")[1]))
    import redis

    client = redis.Redis.from_url(redis_url)
    client.set(f"peer:session:{claims['sid']}", claims["sub"])
    client.close()
    env = {**os.environ, "PEER_SECRET": secret, "PEER_ISSUER": "jwtkit", "PEER_REDIS_URL": redis_url,
           "PYTHONPATH": str(ROOT)}
    port = _free_port()
    pid = stack.enter_context(_process(
        [str(BIN / "uvicorn"), "benchmarks.peers.fastapi_pyjwt:app", "--port", str(port), "--loop",
         "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"],
        env=env, cwd=ROOT, port=port, log=work / "fastapi.log"))
    targets[FASTAPI] = Target("FastAPI + PyJWT (uvicorn)", "redis", pid, port, token, redis=redis_url)
    port = _free_port()
    pid = stack.enter_context(_process(
        [str(BIN / "granian"), "--interface", "asgi", "--loop", "uvloop", "--workers", "1", "--port",
         str(port), "--no-ws", "--log-level", "warning", "benchmarks.peers.starlette_pyjwt:app"],
        env=env, cwd=ROOT, port=port, log=work / "granian.log"))
    targets[STARLETTE] = Target("Starlette + PyJWT (granian)", "redis", pid, port, token, redis=redis_url)
    if node_skip is None:
        for key, name, script, key_kind in (
                (NODE_HTTP, "node http + jsonwebtoken", "http_jsonwebtoken.js", "prepared"),
                (HAPI, "hapi + hapi-auth-jwt2", "hapi_auth_jwt2.js", "string"),
                (HAPI_PREPARED, "hapi + hapi-auth-jwt2, prepared key", "hapi_auth_jwt2.js", "prepared")):
            port = _free_port()
            node_env = {**env, "PORT": str(port), "NODE_ENV": "production", "PEER_KEY": key_kind}
            try:
                pid = stack.enter_context(_process(["node", str(NODE_DIR / script)], env=node_env,
                                                   cwd=NODE_DIR, port=port, log=work / f"{key}.log"))
            except RuntimeError as exc:
                for started in (NODE_HTTP, HAPI):
                    targets.pop(started, None)
                log = (work / f"{key}.log").read_text(errors="replace").strip().splitlines()
                cause = next((line for line in log if "Error" in line), log[-1] if log else "")
                return targets, f"{script}: {exc}" + (f" ({cause.strip()})" if cause else "")
            targets[key] = Target(name, "none (no revocation check)", pid, port, token)
    return targets, node_skip


def _report(runs: dict[str, list[Result]], targets: dict[str, Target], *, duration: int, connections: int,
            rounds: int, node_skip: str | None) -> None:
    setting = (f"1 worker on CPU {SERVER_CPU}, wrk -t1 -c{connections} -d{duration}s on CPU {LOAD_CPU}, "
               f"median of {rounds} interleaved rounds")
    rows = []
    for key in (SQLITE, MIRROR, DIRECT, FASTAPI, STARLETTE, NODE_HTTP, HAPI, HAPI_PREPARED):
        if key not in runs:
            continue
        target, results = targets[key], runs[key]
        per_request = [r.redis_per_request for r in results if r.redis_per_request is not None]
        rows.append([target.name, target.store, f"{_median(results, 'requests_per_s'):,.0f}",
                     f"{_median(results, 'p99_ms'):.2f}", f"{_median(results, 'cpu_us'):,.0f}",
                     f"{statistics.median(per_request):.2f}" if per_request else "-",
                     _x(_median_of_ratios(runs, key, FASTAPI)), _x(_median_of_ratios(runs, key, NODE_HTTP)),
                     str(sum(r.errors for r in results))])
    print(table(f"web: GET /private with a bearer token, {setting}",
                ["server", "store", "req/s", "p99 ms", "CPU µs/req", "redis cmds/req", "vs FastAPI",
                 "vs node http", "non-200"], rows))
    if node_skip is not None:
        print(f"(node peers skipped: {node_skip})")

    rows = []
    for auth, anon in ((SQLITE, SQLITE_ANON), (MIRROR, MIRROR_ANON)):
        rows.append([targets[auth].store, f"{_median(runs[auth], 'requests_per_s'):,.0f}",
                     f"{_median(runs[anon], 'requests_per_s'):,.0f}", _x(_median_of_ratios(runs, auth, anon)),
                     f"{_median(runs[auth], 'cpu_us'):,.0f}", f"{_median(runs[anon], 'cpu_us'):,.0f}",
                     _x(_median_of_ratios(runs, auth, anon, "cpu_us")),
                     str(sum(r.errors for r in runs[auth] + runs[anon]))])
    print(table(f"web: jwtkit serve, authenticated GET /private against anonymous GET {ANONYMOUS_PATH}, "
                "same server, same round",
                ["store", "req/s auth", "req/s anon", "auth/anon req/s", "CPU µs auth", "CPU µs anon",
                 "auth/anon CPU", "non-200"], rows))

    near, beat = (WITHIN, f"at least {WITHIN:.2f}x (within 10%)"), (1.0, "at least 1x")
    goals: list[tuple[str, float | None, tuple[float | None, str]]] = [
        ("jwtkit redis + mirror / jwtkit sqlite", _median_of_ratios(runs, MIRROR, SQLITE), near),
        ("jwtkit redis + mirror / hapi + hapi-auth-jwt2", _median_of_ratios(runs, MIRROR, HAPI), beat),
        ("jwtkit redis + mirror / hapi + hapi-auth-jwt2, prepared key",
         _median_of_ratios(runs, MIRROR, HAPI_PREPARED), beat),
        ("jwtkit redis + mirror / node http + jsonwebtoken", _median_of_ratios(runs, MIRROR, NODE_HTTP),
         (1.0, "at least 1x (moonshot)")),
        ("authenticated / anonymous, sqlite", _median_of_ratios(runs, SQLITE, SQLITE_ANON), near),
        ("authenticated / anonymous, redis + mirror", _median_of_ratios(runs, MIRROR, MIRROR_ANON), near),
        ("jwtkit redis + mirror / jwtkit redis, mirror off", _median_of_ratios(runs, MIRROR, DIRECT),
         (None, "(the mirror's gain)")),
    ]
    rows = []
    for what, value, (floor, goal) in goals:
        verdict = "-" if floor is None or value is None else "met" if value >= floor else "missed"
        rows.append([what, _x(value), goal, verdict])
    print(table("web: targets (req/s, median of same-round ratios)", ["ratio", "value", "target", "verdict"],
                rows))
    errors = {key: sum(r.errors for r in results) for key, results in runs.items()}
    for key, count in errors.items():
        if count:
            print(f"WARNING: {key} answered {count} non-200 responses or socket errors; its figures are "
                  "suspect")


def main(argv: list[str]) -> None:
    options = dict(arg.lstrip("-").partition("=")[::2] for arg in argv)
    duration = int(options.get("duration") or 6)
    connections = int(options.get("connections") or 32)
    rounds = int(options.get("rounds") or 3)
    missing = [b for b in ("wrk", "taskset", "redis-server") if shutil.which(b) is None]
    if missing:
        print(f"\n## web: skipped ({', '.join(missing)} not installed)")
        return
    if (os.cpu_count() or 1) < 2:
        print("\n## web: skipped (needs 2 CPUs to keep server and load apart)")
        return
    node_skip = _node_peers()
    secret = secrets.token_hex(32)
    runs: dict[str, list[Result]] = {}
    with tempfile.TemporaryDirectory(prefix="jwtkit-bench-web-") as tmp, contextlib.ExitStack() as stack:
        work = Path(tmp)
        targets, node_skip = _start_all(stack, work, secret, node_skip)
        redis_commands = RedisCommands()
        stack.callback(redis_commands.close)
        plan = [(key, targets[key]) for key in ORDER if key in targets]
        for key, target in plan:  # warm-up: connections, caches, lazy imports, node's JIT
            _get_ok(target)
            warm = _measure(target, 2, connections, redis_commands)
            if key in (MIRROR, DIRECT):
                print(f"(web: warm-up, {key}: {warm.redis_per_request:.2f} Redis commands per request)",
                      flush=True)
        # interleaved rounds, so that a noisy neighbour hurts every server alike; medians are reported
        for _ in range(rounds):
            for key, target in plan:
                runs.setdefault(key, []).append(_measure(target, duration, connections, redis_commands))
    if node_skip is None:
        print(f"\n({_node_versions()})")
    _report(runs, targets, duration=duration, connections=connections, rounds=rounds, node_skip=node_skip)


if __name__ == "__main__":
    main(sys.argv[1:])
