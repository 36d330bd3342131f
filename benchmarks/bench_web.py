"""HTTP load test: ``GET /private`` with a valid bearer token and its revocation check, jwtkit against peers.

Servers, one worker each, pinned to CPU 0 with taskset; wrk (``-t1 -c32``) pinned to CPU 1, so the load
generator never shares the server's core:

- ``jwtkit serve`` (granian, uvloop) on SQLite and on Redis (a redis-server of its own);
- FastAPI + PyJWT on uvicorn (``benchmarks/peers/fastapi_pyjwt.py``), a Redis GET by ``sid``;
- Starlette + PyJWT on granian (``benchmarks/peers/starlette_pyjwt.py``), the same Redis GET.

All four servers run at once (idle ones cost nothing) and are measured in interleaved rounds, so that a
noisy neighbour on the machine hurts each alike; the medians are reported.

Reported: requests/s and p99 latency from ``wrk --latency``, and server CPU µs per request from the utime +
stime of the server's process tree (``/proc/<pid>/stat``) before and after the run. Every response must be
a 200: a run with non-2xx answers is flagged.

Usage: ``python -m benchmarks web [--duration=10] [--connections=32] [--rounds=3]``.
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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from benchmarks._timing import ratio, table

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SERVER_CPU = "0"
LOAD_CPU = "1"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Result:
    name: str
    store: str
    requests_per_s: float
    p99_ms: float
    cpu_us: float
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


def _get_ok(url: str, token: str) -> None:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}",
                                                   "Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        if response.status != 200:
            raise RuntimeError(f"GET {url} answered {response.status}")


def _wrk(port: int, token: str, duration: int, connections: int) -> tuple[float, float, int]:
    args = ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency",
            "-H", f"Authorization: Bearer {token}", "-H", "Accept: application/json",
            f"http://127.0.0.1:{port}/private"]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    p99_ms = float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan")
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = int(bad.group(1)) if bad else 0
    errors += sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    return rps, p99_ms, errors


@dataclass
class Target:
    """A running server under test: its name, store, pid (the tree's root) and port."""

    name: str
    store: str
    pid: int
    port: int


def _measure(target: Target, token: str, duration: int, connections: int) -> Result:
    before = _tree_cpu_ticks(target.pid)
    rps, p99_ms, errors = _wrk(target.port, token, duration, connections)
    used = (_tree_cpu_ticks(target.pid) - before) / CLOCK_TICKS
    cpu_us = used / (rps * duration) * 1e6 if rps else float("nan")
    return Result(target.name, target.store, rps, p99_ms, cpu_us, errors)


def _median(results: list[Result]) -> Result:
    first = results[0]
    return Result(first.name, first.store, statistics.median(r.requests_per_s for r in results),
                  statistics.median(r.p99_ms for r in results), statistics.median(r.cpu_us for r in results),
                  sum(r.errors for r in results))


def _jwtkit_command(port: int) -> list[str]:
    cli = BIN / "jwtkit"
    probe = subprocess.run([str(cli), "serve", "--help"], capture_output=True) if cli.exists() else None
    if probe is not None and probe.returncode == 0:
        return [str(cli), "serve", "--host", "127.0.0.1", "--port", str(port), "--no-secure-cookies"]
    code = ("import os; from jwtkit.service import Settings; from jwtkit.web import serve; "
            f"serve(Settings.from_env(), port={port}, secure_cookies=False)")
    return [sys.executable, "-c", code]


def _start_jwtkit(stack: contextlib.ExitStack, store: str, store_url: str, secret: str,
                  work: Path) -> tuple[Target, str]:
    """Start ``jwtkit serve`` on ``store_url``, register a user, log in: the target and an access token."""
    port = _free_port()
    env = {**os.environ, "JWT_SECRET": secret, "JWTKIT_STORE": store_url, "PYTHONPATH": str(ROOT / "src")}
    env.pop("JWTKIT_PORT", None)
    work.mkdir()
    pid = stack.enter_context(_process(_jwtkit_command(port), env=env, cwd=work, port=port,
                                       log=work / "jwtkit.log"))
    base = f"http://127.0.0.1:{port}"
    password = "correct horse battery staple " + secrets.token_hex(4)
    _post_json(f"{base}/register", {"username": "bench", "password": password})
    pair = _post_json(f"{base}/auth", {"username": "bench", "password": password})
    return Target("jwtkit serve (granian)", store, pid, port), str(pair["access_token"])


def _b64(segment: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


@contextlib.contextmanager
def _redis(work: Path) -> Iterator[str]:
    port = _free_port()
    log = open(work / "redis.log", "ab")  # noqa: SIM115 - the child owns it
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


def main(argv: list[str]) -> None:
    options = dict(arg.lstrip("-").partition("=")[::2] for arg in argv)
    duration = int(options.get("duration") or 10)
    connections = int(options.get("connections") or 32)
    rounds = int(options.get("rounds") or 3)
    missing = [b for b in ("wrk", "taskset", "redis-server") if shutil.which(b) is None]
    if missing:
        print(f"\n## web: skipped ({', '.join(missing)} not installed)")
        return
    if (os.cpu_count() or 1) < 2:
        print("\n## web: skipped (needs 2 CPUs to keep server and load apart)")
        return
    secret = secrets.token_hex(32)
    runs: dict[str, list[Result]] = {}
    with tempfile.TemporaryDirectory(prefix="jwtkit-bench-web-") as tmp, contextlib.ExitStack() as stack:
        work = Path(tmp)
        redis_url = stack.enter_context(_redis(work))
        sqlite_target, sqlite_token = _start_jwtkit(stack, "sqlite", "sqlite:///jwtkit.db", secret,
                                                    work / "sqlite")
        redis_target, token = _start_jwtkit(stack, "redis", redis_url, secret, work / "redis")
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
        fastapi_target = Target("FastAPI + PyJWT (uvicorn)", "redis", pid, port)
        port = _free_port()
        pid = stack.enter_context(_process(
            [str(BIN / "granian"), "--interface", "asgi", "--loop", "uvloop", "--workers", "1", "--port",
             str(port), "--no-ws", "--log-level", "warning", "benchmarks.peers.starlette_pyjwt:app"],
            env=env, cwd=ROOT, port=port, log=work / "granian.log"))
        granian_target = Target("Starlette + PyJWT (granian)", "redis", pid, port)

        plan = [(sqlite_target, sqlite_token), (redis_target, token), (fastapi_target, token),
                (granian_target, token)]
        for target, bearer in plan:  # warm-up: connections, caches, lazy imports
            _get_ok(f"http://127.0.0.1:{target.port}/private", bearer)
            _wrk(target.port, bearer, 2, connections)
        # interleaved rounds, so that a noisy neighbour hurts every server alike; medians are reported
        for _ in range(rounds):
            for target, bearer in plan:
                result = _measure(target, bearer, duration, connections)
                runs.setdefault(f"{target.name}/{target.store}", []).append(result)
    results = [_median(r) for r in runs.values()]
    fastapi = next(r for r in results if r.name.startswith("FastAPI"))
    rows = [[r.name, r.store, f"{r.requests_per_s:,.0f}", f"{r.p99_ms:.2f}", f"{r.cpu_us:,.0f}",
             ratio(r.requests_per_s, fastapi.requests_per_s), str(r.errors)] for r in results]
    print(table(f"web: GET /private, bearer + revocation check, 1 worker on CPU {SERVER_CPU}, "
                f"wrk -t1 -c{connections} -d{duration}s on CPU {LOAD_CPU}, "
                f"median of {rounds} interleaved rounds",
                ["server", "store", "req/s", "p99 ms", "CPU µs/req", "vs FastAPI", "non-200"], rows))


if __name__ == "__main__":
    main(sys.argv[1:])
