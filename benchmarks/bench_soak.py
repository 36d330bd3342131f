"""Soak: ``jwtkit serve`` under a mixed workload at 80% of its measured maximum for 5 minutes, checking that
every answer is one its request may get, that the server's memory does not grow, and its latency.

Set-up, before any clock starts: ``--users`` accounts (default 64) are created through the service
(``jwtkit.service.build_service``, what ``jwtkit user add`` does: an admin's registration is not limited to
10 an hour per address as ``POST /register`` is), then the server starts, one worker, pinned to CPU 0 with
taskset, on the default SQLite store (``sqlite:///jwtkit.db`` in a temporary folder) or, with
``--store=redis``, on a redis-server of its own (a free port, no persistence, CPU 1). No limit is relaxed:
every ``JWTKIT_*`` variable is at its default (the inherited ones are dropped) except ``JWT_SECRET``, which
the harness sets so that it can forge an expired token. ``--sessions`` sessions (default 256) are opened by
``POST /auth``, 4 per user, far below the per-user cap (``JWTKIT_MAX_SESSIONS``, 50). Each bad-token variant
is sent once and must get 401 with its own ``reason``, so that each tests what it says.

The mix (``benchmarks/_soak_load.py``, per mille, in an evenly spread fixed cycle): 900 ``GET /private`` with
a live session's access token (200), 50 bad tokens on ``GET /private`` (401: garbage, an expired token signed
with the server's key, a live token with a wrong signature, ``alg: none``, the token of a session logged out
at least 2 s before, no token at all), 40 ``POST /refresh`` with the session's current refresh token (200; the
new pair replaces the old), 5 ``POST /auth`` (200, a new session into the pool) and 5 ``POST /logout`` with
the access token (204; the session leaves the pool). No failed login is sent: the login throttle would answer
429 after 5 failures per account and 100 per address. Any other status, no answer within 10 s, or a 200
without a token pair counts as unexpected and fails the run.

Phase 1 (skipped when ``--rate`` is given): the maximum, a closed loop of the same mix on 32 connections,
every connection busy, 2 s of warm-up and 10 s measured. Phase 2: an open loop at ``--rate`` (default 80% of
that maximum) for ``--duration`` seconds (default 300) on 64 connections: request i is due at start + i/rate
whatever came before, and its latency runs from then, so queueing behind a slow answer counts (no
coordinated omission). The load generator is this process, pinned to CPU 1; each of its connections comes
from a loopback address of its own (127.0.1.1, ...), as clients would: logins from one address wait for each
other on the login throttle's lock.

Memory: VmRSS of the server's process tree (``jwtkit serve``, granian's main process, its worker), read
from ``/proc`` every 5 s; a level is the median of 30 s of samples. The first 60 s of phase 2 (a fifth of a
shorter run) are its warm-up (the worker grows by some 200 MiB in its first minute of logins, argon2id's
buffers kept by glibc: see RSS_BOUND_MIB); the level at their end is the baseline, and the run fails when a
later level exceeds it by more than :data:`RSS_BOUND_MIB` (:func:`rss_verdict`; a run with less than 30 s
after warm-up is not judged). With Redis, redis-server's RSS is reported too, not bounded: it holds the
sessions.

Usage: ``python -m benchmarks soak [--duration=300] [--rate=REQ_PER_S] [--store=sqlite|redis] [--users=64]
[--sessions=256] [--json=PATH]`` (``make soak``, or ``make soak SOAK="--store=redis --duration=20"``). Exit
code 0 when the run passed, 1 when it failed (the reasons are printed), 2 when the harness could not run.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import os
import platform
import secrets
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import _soak_load as load
from benchmarks._timing import table
from benchmarks.bench_web import (
    CLOCK_TICKS,
    LOAD_CPU,
    SERVER_CPU,
    _free_port,
    _jwtkit_command,
    _process,
    _redis,
    _tree_cpu_ticks,
)

DEFAULTS: Mapping[str, str] = {"duration": "300", "rate": "", "store": "sqlite", "users": "64",
                               "sessions": "256", "json": ""}
SHARE_OF_MAX = 0.80
MAX_CONNECTIONS, MAX_WARMUP, MAX_MEASURE = 32, 2.0, 10.0
PACED_CONNECTIONS = 64
SAMPLE_EVERY = 5.0  # seconds between RSS samples
WARMUP = 60.0  # seconds of phase 2 before the RSS baseline (a fifth of a shorter run)
# The bound on the server tree's RSS growth after warm-up. The tree starts at about 145 MiB (three Python
# processes: jwtkit serve 55, granian's main process 49, the worker 53). The server's caches are bounded by
# count (verified tokens, principals, the revocation mirror: a few MiB), SQLite's page cache by 2 MiB a
# connection; an argon2id hash holds a 19 MiB buffer while it runs (levels are medians, so a sample taken
# during one does not count). 32 MiB is more than all of that, and what a leak of 40 bytes per request shows
# in the 4 minutes after warm-up at 3,500 req/s (840,000 requests). What it catches on the server as it is:
# glibc keeps argon2id's freed 19 MiB buffers (its mmap threshold rises to that size after the first free,
# and each thread that hashes has its own arena), so the worker grows in steps of about 20 MiB; with
# MALLOC_MMAP_THRESHOLD_=1048576 in the environment it stays under 90 MiB (docs/benchmarks.md#soak).
RSS_BOUND_MIB = 32.0
LEVEL_WINDOW = 30.0  # seconds of RSS samples whose median is one level (see rss_verdict)
TIMELINE_EVERY = 30.0  # seconds per timeline row
LOGIN_WORKERS = 4


@dataclass
class Sample:
    at: float  # monotonic
    phase: str
    tree_kib: int
    worker_kib: int  # the largest process of the tree
    processes: int
    redis_kib: int | None = None
    server_ticks: int = 0  # CPU (utime + stime) of the server's tree so far
    busy_ticks: int = 0  # every CPU's busy time so far (/proc/stat)
    own_cpu: float = 0.0  # this process's CPU seconds so far (the generator)


@dataclass
class Memory:
    server_pid: int
    redis_url: str | None = None
    samples: list[Sample] = field(default_factory=list)
    _redis: Any = None

    def sample(self, phase: str, now: float | None = None) -> Sample:
        tree = _tree(self.server_pid)
        sizes = [_rss_kib(pid) for pid in tree]
        redis_kib = None
        if self.redis_url is not None:
            if self._redis is None:
                import redis

                self._redis = redis.Redis.from_url(self.redis_url)
            redis_kib = int(self._redis.info("memory")["used_memory_rss"]) // 1024
        taken = Sample(time.monotonic() if now is None else now, phase, sum(sizes), max(sizes, default=0),
                       len(sizes), redis_kib, sum(_ticks(pid) for pid in tree), _busy_ticks(),
                       time.process_time())
        self.samples.append(taken)
        return taken

    def tick(self, phase: str, now: float) -> None:
        self.sample(phase, now)

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants, from ``/proc/<pid>/task/<tid>/children`` (no walk over all of /proc)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{current}/task"):
                with contextlib.suppress(OSError):
                    todo.extend(int(c) for c in Path(f"/proc/{current}/task/{task}/children").read_text()
                                .split())
    return found


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0  # exited between the listing and the read


def _ticks(pid: int) -> int:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    fields = raw[raw.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (proc(5) fields 14, 15)


def _busy_ticks() -> int:
    """Every CPU's busy time (all but idle and iowait) from /proc/stat, in clock ticks."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return sum(fields) - fields[3] - fields[4]


@dataclass
class Usage:
    """CPU over one phase, as a share of one core: the server's tree, this process (the generator), the
    rest of the machine (other people's work: the noise)."""

    wall: float
    server: float
    generator: float
    others: float


class _Clock:
    def __init__(self, server_pid: int, redis_pid: int | None) -> None:
        self.pids = [server_pid] + ([redis_pid] if redis_pid else [])
        self.wall, self.own, self.ticks, self.busy = self._now()

    def _now(self) -> tuple[float, float, list[int], int]:
        return time.monotonic(), time.process_time(), [_tree_cpu_ticks(p) for p in self.pids], _busy_ticks()

    def usage(self) -> Usage:
        wall, own, ticks, busy = self._now()
        span = wall - self.wall
        server = (ticks[0] - self.ticks[0]) / CLOCK_TICKS / span
        generator = (own - self.own) / span
        ours = sum(t - s for t, s in zip(ticks, self.ticks, strict=True)) / CLOCK_TICKS + (own - self.own)
        others = max(0.0, (busy - self.busy) / CLOCK_TICKS - ours) / span
        return Usage(span, server, generator, others)


def options_from(argv: list[str]) -> dict[str, str]:
    """``--name=value`` (or ``--name value``) options over DEFAULTS; an unknown name is an error."""
    options = dict(DEFAULTS)
    args = iter(argv)
    for arg in args:
        name, eq, value = arg.lstrip("-").partition("=")
        if name not in DEFAULTS:
            raise SystemExit(f"soak: no option --{name} (options: {', '.join('--' + k for k in DEFAULTS)})")
        options[name] = value if eq else next(args, "")
    if options["store"] not in ("sqlite", "redis"):
        raise SystemExit(f"soak: --store is sqlite or redis, not {options['store']!r}")
    return options


def _register(env: dict[str, str], store_url: str, users: int) -> list[tuple[str, str]]:
    """Create the accounts through the service (as ``jwtkit user add`` does), before the server starts."""
    from jwtkit.service import Settings, build_service

    accounts = [(f"soak-{i:03d}", f"soak {i} {secrets.token_urlsafe(12)}") for i in range(users)]

    async def work() -> None:
        service = build_service(Settings.from_env(env, store_url=store_url))
        async with service:
            for name, password in accounts:
                await service.register(name, password, verified=True)

    asyncio.run(work())
    return accounts


def _wait_healthy(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise load.HarnessError(f"/healthz did not answer 200 within {timeout} s")
        time.sleep(0.1)


async def _open_sessions(workload: load.Workload, count: int) -> None:
    client = workload.client
    left = [count]

    async def worker(slot: int) -> None:
        conn = await client.connect(slot)
        while left[0] > 0:
            left[0] -= 1
            conn = await client.fresh(conn, slot)
            status = await workload.login(conn)
            if status != 200:
                raise load.HarnessError(f"a set-up login answered {status}")

    async with asyncio.TaskGroup() as group:
        for slot in range(LOGIN_WORKERS):
            group.create_task(worker(slot))


async def _check_variants(workload: load.Workload) -> dict[str, str]:
    """Send each bad token once: each must get 401 with its reason. Also logs one session out, so that
    "revoked" has a token (used once it is REVOKED_AFTER old)."""
    client = workload.client
    conn = await client.connect(0)
    _, status = await workload.run(load.LOGOUT, conn)
    if status != 204:
        raise load.HarnessError(f"the set-up logout answered {status}")
    await asyncio.sleep(load.REVOKED_AFTER)
    found = {}
    for variant, reason in load.BAD_VARIANTS.items():
        conn = await client.fresh(conn, 0)
        status, body = await load.exchange(conn, client.get(b"/private", workload.bad_token(variant)))
        try:
            got = json.loads(body).get("reason", "")
        except ValueError:
            got = "?"
        if status != 401 or got != reason:
            raise load.HarnessError(f"the {variant} token got {status} reason {got!r}, not 401 {reason!r}")
        found[variant] = got or "(missing_token)"
    conn.close()
    return found


def _window_cpu(samples: list[Sample], start: float, end: float) -> dict[str, float]:
    """CPU shares of one core between the samples nearest ``start`` and ``end``: the server's tree, this
    process, the rest of the machine (nan without two samples)."""
    first = min(samples, key=lambda s: abs(s.at - start), default=None)
    last = min(samples, key=lambda s: abs(s.at - end), default=None)
    if first is None or last is None or last.at <= first.at:
        return {"server_cpu": math.nan, "generator_cpu": math.nan, "others_cpu": math.nan}
    span = last.at - first.at
    server = (last.server_ticks - first.server_ticks) / CLOCK_TICKS
    own = last.own_cpu - first.own_cpu
    busy = (last.busy_ticks - first.busy_ticks) / CLOCK_TICKS
    return {"server_cpu": server / span, "generator_cpu": own / span,
            "others_cpu": max(0.0, busy - server - own) / span}


def _latency_row(name: str, summary: Mapping[str, float], statuses: Mapping[int, int], span: float,
                 share: str) -> list[str]:
    return [name, share, f"{summary['requests']:,}", f"{summary['requests'] / span:,.1f}",
            *(f"{summary[k]:.2f}" for k in ("p50", "p90", "p99", "max")),
            " ".join(f"{s}:{n}" for s, n in sorted(statuses.items()))]


def _mib(kib: float) -> str:
    return f"{kib / 1024:,.1f}"


def rss_verdict(samples: list[Sample], phase_start: float, warmup: float,
                bound_mib: float = RSS_BOUND_MIB, window: float = LEVEL_WINDOW) -> dict[str, Any]:
    """Whether the server tree's RSS stayed within ``bound_mib`` of its level at the end of warm-up.

    A level is the median of the samples in a window of ``window`` seconds (one sample taken while an
    argon2id hash holds its 19 MiB buffer must not count as growth). The baseline is the level of the last
    window of the warm-up (``phase_start`` to ``phase_start + warmup``); growth is the highest level of the
    consecutive windows after it (a trailing part window joins the last whole one), minus the baseline.
    A run with less than one whole window after warm-up (shorter than warm-up + ``window``) is not judged:
    ``judged`` is False and ``within`` True. Also reported: the start of phase 2, the highest single sample
    after warm-up, the end, and the least-squares trend after warm-up in MiB per minute."""
    paced = [s for s in samples if s.phase == "paced"]
    if not paced:
        raise ValueError("no sample of the paced phase")
    cut = phase_start + warmup
    before = [s.tree_kib for s in paced if cut - window < s.at <= cut] or [paced[0].tree_kib]
    baseline = statistics.median(before)
    after = [s for s in paced if s.at > cut]
    levels = []
    complete = max(1, math.floor((after[-1].at - cut) / window)) if after else 0
    for k in range(complete):  # a trailing part window joins the last whole one
        upper = cut + (k + 1) * window if k < complete - 1 else math.inf
        chunk = [s.tree_kib for s in after if cut + k * window < s.at <= upper]
        if chunk:
            levels.append(statistics.median(chunk))
    growth_mib = (max(levels) - baseline) / 1024 if levels else 0.0
    judged = bool(after) and after[-1].at - cut >= window
    trend = math.nan
    if len(after) >= 3:
        xs, ys = [s.at / 60 for s in after], [s.tree_kib / 1024 for s in after]
        mx, my = statistics.fmean(xs), statistics.fmean(ys)
        var = sum((x - mx) ** 2 for x in xs)
        trend = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else math.nan
    return {"start_kib": paced[0].tree_kib, "baseline_kib": baseline,
            "levels_kib": levels, "peak_kib": max((s.tree_kib for s in after), default=baseline),
            "end_kib": paced[-1].tree_kib, "growth_mib": growth_mib, "bound_mib": bound_mib,
            "trend_mib_per_min": trend, "judged": judged, "within": not judged or growth_mib <= bound_mib}


def failures_of(result: Mapping[str, Any]) -> list[str]:
    """Why a run failed (empty: it passed): unexpected answers in either phase, RSS growth past the bound."""
    reasons = []
    stopped = (result.get("paced") or {}).get("stopped")
    if stopped:
        reasons.append(f"paced: {stopped}")
    for phase in ("max", "paced"):
        for kind, counts in (result.get(phase) or {}).get("unexpected", {}).items():
            shown = ", ".join(f"{n} x {s}" for s, n in counts.items())
            reasons.append(f"{phase}: unexpected answers to {kind}: {shown}")
    rss = result.get("rss")
    if rss is not None and not rss["within"]:
        reasons.append(f"the server's RSS grew {rss['growth_mib']:.1f} MiB after warm-up, past the bound of "
                       f"{rss['bound_mib']:.0f} MiB")
    return reasons


def _phase_json(recorder: load.Recorder, span: float) -> dict[str, Any]:
    statuses = {k: dict(v) for k, v in recorder.statuses.items()}
    unexpected = load.unexpected(statuses)
    return {"requests": recorder.count, "per_s": recorder.count / span, "span_s": span,
            "statuses": {k: {str(s): n for s, n in v.items()} for k, v in statuses.items()},
            "unexpected": {k: {str(s): n for s, n in v.items()} for k, v in unexpected.items()},
            "latency_ms": {"all": recorder.summary(), **{k: recorder.summary(k) for k in load.KINDS}},
            "first_unexpected": recorder.first_unexpected}


async def _drive(port: int, users: list[tuple[str, str]], secret: bytes, memory: Memory,
                 clock_pids: tuple[int, int | None], *, rate: float | None, duration: float,
                 sessions: int, lines: list[str]) -> dict[str, Any]:
    client = load.Client(port)
    workload = load.Workload(client, users, secret)
    result: dict[str, Any] = {}
    try:
        started = time.monotonic()
        await _open_sessions(workload, sessions)
        result["variants"] = await _check_variants(workload)
        result["setup_s"] = time.monotonic() - started
        memory.sample("setup")
        kinds = itertools.cycle(load.kind_cycle(load.MIX))
        if rate is None:
            clock = _Clock(*clock_pids)
            maximum, recorder = await load.closed_loop(workload, kinds, connections=MAX_CONNECTIONS,
                                                       warmup=MAX_WARMUP, measure=MAX_MEASURE)
            usage = clock.usage()
            memory.sample("max")
            result["max"] = {**_phase_json(recorder, usage.wall), "max_per_s": maximum,
                             "usage": usage.__dict__}
            rate = maximum * SHARE_OF_MAX
            lines.append(f"(soak: maximum {maximum:,.0f} req/s, closed loop; pacing at {rate:,.0f} req/s)")
            print(lines[-1], flush=True)
        result["rate"] = rate
        clock = _Clock(*clock_pids)
        memory.sample("paced")
        phase_start = memory.samples[-1].at
        paced = await load.open_loop(workload, kinds, rate=rate, duration=duration,
                                     connections=PACED_CONNECTIONS, tick=SAMPLE_EVERY,
                                     on_tick=lambda now: memory.tick("paced", now))
        usage = clock.usage()
        memory.sample("paced")
        span = paced.ended - paced.started
        lag = sorted(paced.send_lag)
        result["paced"] = {**_phase_json(paced.recorder, span), "usage": usage.__dict__,
                           "send_lag_ms": {f"p{p}": load.percentile(lag, p) * 1000 for p in (50, 99)},
                           "max_backlog": paced.max_backlog, "stopped": paced.stopped}
        timeline = []
        t = paced.started
        while t < paced.ended - 1:
            end = min(t + TIMELINE_EVERY, paced.ended)
            count, latencies = paced.recorder.window(t, end)
            rss = [s for s in memory.samples if s.phase == "paced" and s.at <= end]
            cpu = _window_cpu([s for s in memory.samples if s.phase == "paced"], t, end)
            timeline.append({"from_s": t - paced.started, "to_s": end - paced.started,
                             "per_s": count / (end - t), "p50_ms": load.percentile(latencies, 50),
                             "p99_ms": load.percentile(latencies, 99),
                             "tree_kib": rss[-1].tree_kib if rss else 0,
                             "redis_kib": rss[-1].redis_kib if rss else None, **cpu})
            t = end
        result["timeline"] = timeline
        result["rss"] = rss_verdict(memory.samples, phase_start, min(WARMUP, duration / 5))
        result["samples"] = [s.__dict__ for s in memory.samples]
        result["live_sessions"] = len(workload.idle)
    finally:
        client.close()
    return result


def run(options: Mapping[str, str]) -> dict[str, Any]:
    """One soak; the result as JSON-ready data (``failures`` empty when it passed)."""
    duration = float(options["duration"])
    rate = float(options["rate"]) if options["rate"] else None
    store = options["store"]
    if (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {int(LOAD_CPU)})  # the generator; the server goes to SERVER_CPU
    secret = secrets.token_hex(32)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JWTKIT_", "JWT_"))}
    env["JWT_SECRET"] = secret
    src = str(Path(__file__).resolve().parent.parent / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    lines: list[str] = []
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "store": store, "duration": duration,
        "machine": f"{os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.machine()}",
        "loadavg_start": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="jwtkit-soak-") as tmp, contextlib.ExitStack() as stack:
        work = Path(tmp)
        redis_url = redis_pid = None
        if store == "redis":
            redis_url = stack.enter_context(_redis(work, "redis"))
            env["JWTKIT_STORE"] = redis_url
            env["JWTKIT_DB"] = str(work / "jwtkit.db")
            import redis

            with contextlib.closing(redis.Redis.from_url(redis_url)) as r:
                redis_pid = int(r.info("server")["process_id"])
            store_url = redis_url
        else:
            store_url = f"sqlite:///{work}/jwtkit.db"  # the server's default, sqlite:///jwtkit.db in its cwd
        started = time.monotonic()
        users = _register(env, store_url, int(options["users"]))
        result["register_s"] = time.monotonic() - started
        port = _free_port()
        log = work / "jwtkit.log"
        try:
            pid = stack.enter_context(_process(_jwtkit_command(port), env=env, cwd=work, port=port, log=log))
            _wait_healthy(port)
            memory = Memory(pid, redis_url)
            stack.callback(memory.close)
            memory.sample("start")
            import uvloop

            result.update(uvloop.run(_drive(port, users, secret.encode(), memory, (pid, redis_pid),
                                            rate=rate, duration=duration, sessions=int(options["sessions"]),
                                            lines=lines)))
        except load.HarnessError as exc:
            tail = log.read_text(errors="replace").splitlines()[-20:] if log.exists() else []
            raise load.HarnessError(f"{exc}\n(server log, last lines:)\n" + "\n".join(tail)) from None
    result["loadavg_end"] = os.getloadavg()
    result["failures"] = failures_of(result)
    return result


def report(result: Mapping[str, Any]) -> str:
    out = []
    out.append(f"\n## soak: jwtkit serve, {result['store']} store, 1 worker on CPU {SERVER_CPU}, "
               f"generator on CPU {LOAD_CPU}, {result['date']}")
    out.append(f"({result['machine']}; load average {result['loadavg_start'][0]:.2f} at the start, "
               f"{result['loadavg_end'][0]:.2f} at the end; {len(result.get('samples', []))} RSS samples; "
               f"set-up: {result['register_s']:.1f} s to register, {result['setup_s']:.1f} s to log in "
               "and check the bad tokens: "
               + ", ".join(f"{k} -> {v}" for k, v in result['variants'].items()) + ")")
    share = {k: f"{w / 10:g}%" for k, w in load.MIX.items()}
    for phase, title in (("max", "phase 1, the maximum: closed loop, "
                          f"{MAX_CONNECTIONS} connections, {MAX_MEASURE:g} s after {MAX_WARMUP:g} s warm-up"),
                         ("paced", f"phase 2: open loop at {result['rate']:,.0f} req/s"
                          + (f" ({SHARE_OF_MAX:.0%} of the maximum)" if "max" in result else "")
                          + f", {PACED_CONNECTIONS} connections, {result['duration']:g} s")):
        data = result.get(phase)
        if data is None:
            continue
        span = data["span_s"]
        rows = [_latency_row(k, data["latency_ms"][k], {int(s): n for s, n in data["statuses"][k].items()},
                             span, share[k]) for k in load.KINDS]
        every: dict[int, int] = {}
        for counts in data["statuses"].values():
            for s, n in counts.items():
                every[int(s)] = every.get(int(s), 0) + n
        rows.append(_latency_row("all", data["latency_ms"]["all"], every, span, "100%"))
        out.append(table(title, ["kind", "share", "requests", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms",
                                 "statuses"], rows))
        usage = data["usage"]
        note = (f"achieved {data['per_s']:,.1f} req/s; CPU (share of one core): "
                f"server {usage['server']:.0%}, generator {usage['generator']:.0%}, "
                f"other processes {usage['others']:.0%}")
        if phase == "max":
            note = (f"maximum {data['max_per_s']:,.0f} req/s (the 10 s measured; the table counts warm-up "
                    f"too); " + note.split("; ", 1)[1] + "; a closed loop's latencies leave out queueing")
        else:
            lag = data["send_lag_ms"]
            note += (f"; send lag (write time - due time) p50 {lag['p50']:.2f} ms, p99 {lag['p99']:.2f} ms; "
                     f"most requests waiting for a connection {data['max_backlog']}")
        out.append(note)
        if data["first_unexpected"]:
            out.append("first unexpected answers: " + ", ".join(data["first_unexpected"]))
    rows = [[f"{r['from_s']:.0f}-{r['to_s']:.0f}", f"{r['per_s']:,.1f}", f"{r['p50_ms']:.2f}",
             f"{r['p99_ms']:.2f}", f"{r['server_cpu']:.0%}", f"{r['others_cpu']:.0%}", _mib(r["tree_kib"])]
            + ([_mib(r["redis_kib"])] if r["redis_kib"] is not None else []) for r in result["timeline"]]
    header = ["seconds", "req/s", "p50 ms", "p99 ms", "server CPU", "others' CPU", "server RSS MiB"]
    if result["timeline"] and result["timeline"][0]["redis_kib"] is not None:
        header.append("redis RSS MiB")
    out.append(table(f"phase 2 over time ({TIMELINE_EVERY:g} s windows, all kinds)", header, rows))
    whole = [r for r in result["timeline"] if r["to_s"] - r["from_s"] >= TIMELINE_EVERY / 2]
    if whole:
        out.append("medians over the windows (the noise of a shared machine moves single windows): "
                   + ", ".join(f"{name} {statistics.median(r[key] for r in whole):,.2f}"
                               for name, key in (("req/s", "per_s"), ("p50 ms", "p50_ms"),
                                                 ("p99 ms", "p99_ms"))))
    rss = result["rss"]
    out.append(table(f"server RSS, MiB (jwtkit serve + granian + worker, VmRSS every {SAMPLE_EVERY:g} s; "
                     f"a level is the median of {LEVEL_WINDOW:g} s of samples)",
                     ["start of phase 2", "level after warm-up", "highest level after", "highest sample",
                      "end", "growth", "bound", "trend", "verdict"],
                     [[_mib(rss["start_kib"]), _mib(rss["baseline_kib"]),
                       _mib(max(rss["levels_kib"], default=rss["baseline_kib"])), _mib(rss["peak_kib"]),
                       _mib(rss["end_kib"]), f"{rss['growth_mib']:+.1f}", f"{rss['bound_mib']:.0f}",
                       f"{rss['trend_mib_per_min']:+.2f}/min",
                       ("within" if rss["within"] else "PAST") if rss["judged"]
                       else f"not judged (under {LEVEL_WINDOW:g} s after warm-up)"]]))
    if result["failures"]:
        out.append("\nSOAK FAILED:\n" + "\n".join(f"- {r}" for r in result["failures"]))
    else:
        memory = "RSS growth within the bound" if result["rss"]["judged"] else "RSS not judged (short run)"
        out.append(f"\nsoak passed: no unexpected answer, {memory}")
    return "\n".join(out)


def main(argv: list[str]) -> None:
    options = options_from(argv)
    missing = [b for b in ("taskset", *(["redis-server"] if options["store"] == "redis" else []))
               if shutil.which(b) is None]
    if missing:
        print(f"\n## soak: cannot run ({', '.join(missing)} not installed)")
        raise SystemExit(2)
    try:
        result = run(options)
    except load.HarnessError as exc:
        print(f"\n## soak: the harness stopped: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print(report(result))
    if options["json"]:
        Path(options["json"]).write_text(json.dumps(result, indent=1, default=str) + "\n")
    if result["failures"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main(sys.argv[1:])
