"""Store benchmark: operations per second for the per-request check, revoke and consume on every backend,
with one client and with 32 concurrent clients (asyncio tasks on one event loop).

Also reported: microseconds per check on SQLite (target: under 20 µs), and the commands the Redis server saw
per check (INFO commandstats), which shows that a check is one round trip (one EVALSHA).

Redis runs on a redis-server this benchmark starts on a free loopback port (never 6379), without persistence
(``--save "" --appendonly no``); without the binary that backend is skipped. PostgreSQL runs on a throwaway
cluster this benchmark creates (Debian's ``initdb``/``pg_ctl`` under ``pg_config --bindir``, as the
``postgres`` system user when run as root, ``-A trust``) on a free loopback port (never 5432), with the
server's durable defaults (``fsync=on``, ``synchronous_commit=on``: every write commits to the WAL on disk)
and the store's default pool (``pool_max`` 10); without the binaries that backend is skipped. No process is
pinned to a CPU. Files go to a temporary directory (``--dir=PATH`` to choose the disk: SQLite and LevelDB
sync every revocation to it, PostgreSQL every commit).

Run: ``python -m benchmarks store`` or ``python -m benchmarks.bench_store [--quick] [--dir=PATH]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

from benchmarks._timing import table
from jwtkit.store import ManagedStore, Session, open_store

CLIENTS = 32


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def _redis_server(workdir: Path) -> Iterator[str | None]:
    """A throwaway redis-server on a free port; None when the binary is missing."""
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    port = _free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(workdir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.kill()
        proc.wait()


def _postgres_bindir() -> str | None:
    """Debian's PostgreSQL server binaries (``pg_config --bindir``); None without initdb and pg_ctl."""
    pg_config = shutil.which("pg_config")
    if pg_config is None:
        return None
    bindir = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True).stdout.strip()
    if bindir and all(os.access(os.path.join(bindir, tool), os.X_OK) for tool in ("initdb", "pg_ctl")):
        return bindir
    return None


@contextlib.contextmanager
def _postgres_server(base: str | None) -> Iterator[str | None]:
    """A throwaway PostgreSQL cluster on a free loopback port (as tests/processes.py's PostgresCluster, but
    with fsync on); None when the binaries are missing; RuntimeError or OSError when it does not start."""
    bindir = _postgres_bindir()
    if bindir is None:
        yield None
        return
    # its own directory (not inside the 0700 work directory), owned by postgres when we are root
    workdir = Path(tempfile.mkdtemp(prefix="jwtkit-bench-pg-", dir=base))
    as_root = os.geteuid() == 0
    data, port = workdir / "data", _free_port()

    def run(tool: str, *args: str) -> None:
        command = [os.path.join(bindir, tool), *args]
        if as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{tool} failed ({result.returncode}): "
                               f"{result.stderr.decode(errors='replace').strip()}")

    try:
        if as_root:
            shutil.chown(workdir, "postgres", "postgres")
        # --no-sync only skips initdb's own final flush of the new files; the server below runs durable
        run("initdb", "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
        run("pg_ctl", "-D", str(data), "-l", str(workdir / "log"), "-w", "start", "-o",
            f"-p {port} -k {workdir} -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on "
            "-c max_connections=100")
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        if (data / "postmaster.pid").exists():  # also after a start that failed half-way
            with contextlib.suppress(Exception):
                run("pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(workdir, ignore_errors=True)


def _session(user_id: str = "bench", epoch: int = 0) -> Session:
    now = time.time()
    return Session(sid=secrets.token_urlsafe(16), user_id=user_id, created=now, last_used=now,
                   expires=now + 3600, family=secrets.token_urlsafe(16),
                   refresh_jti=secrets.token_urlsafe(16), user_agent="bench/1.0", ip="127.0.0.1", epoch=epoch)


async def _rate(operations: list[Callable[[], Awaitable[object]]], clients: int) -> float:
    """Operations per second running ``operations`` with ``clients`` concurrent tasks."""
    queue = iter(operations)

    async def worker() -> None:
        for operation in queue:
            await operation()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    return len(operations) / (time.perf_counter() - started)


Operations = list[Callable[[], Awaitable[object]]]


async def _best_of(repeat: int, build: Callable[[], Operations], clients: int) -> float:
    return statistics.median([await _rate(build(), clients) for _ in range(repeat)])


async def _measure(store: ManagedStore, checks: int, writes: int, repeat: int) -> dict[str, float]:
    # an epoch record exists, as after a logout-everywhere, and the session carries the current epoch (as a
    # login that read it before checking the password would), so every check reads and compares both
    epoch = await store.revoke_all("bench")
    session = _session(epoch=epoch)
    await store.create_session(session)
    figures: dict[str, float] = {}
    await _rate([lambda: store.check(session.sid, "bench")] * min(checks, 1000), 1)  # warm-up
    for clients in (1, CLIENTS):
        figures[f"check/{clients}"] = await _best_of(
            repeat, lambda: [lambda: store.check(session.sid, "bench")] * checks, clients)

        async def fresh_sessions() -> list[Session]:
            made = [_session(epoch=epoch) for _ in range(writes)]
            for made_session in made:
                await store.create_session(made_session)
            return made

        samples = []
        for _ in range(repeat):
            victims = await fresh_sessions()
            samples.append(await _rate([functools.partial(store.revoke, s.sid) for s in victims], clients))
        figures[f"revoke/{clients}"] = statistics.median(samples)

        def consumes() -> Operations:
            expires = time.time() + 600
            jtis = [secrets.token_urlsafe(12) for _ in range(writes)]
            return [functools.partial(store.consume, jti, expires) for jti in jtis]

        figures[f"consume/{clients}"] = await _best_of(repeat, consumes, clients)
    await store.purge()
    return figures


async def _redis_commands_per_check(url: str, checks: int) -> dict[str, float]:
    """The server-side command counts per check, from INFO commandstats before and after."""
    import redis.asyncio as aioredis

    probe = aioredis.Redis.from_url(url, decode_responses=True)
    async with open_store(url) as store:
        session = _session(epoch=await store.get_epoch("bench"))  # an active session: the whole check runs
        await store.create_session(session)
        assert await store.check(session.sid, "bench")  # loads the script
        await probe.config_resetstat()
        for _ in range(checks):
            await store.check(session.sid, "bench")
        stats = await probe.info("commandstats")
    await probe.aclose()
    return {name.removeprefix("cmdstat_"): value["calls"] / checks for name, value in stats.items()
            if name not in ("cmdstat_config|resetstat", "cmdstat_info")}


async def _run(argv: list[str]) -> None:
    quick = "--quick" in argv
    base = next((a.split("=", 1)[1] for a in argv if a.startswith("--dir=")), None)
    checks, writes, repeat = (2000, 200, 1) if quick else (20000, 2000, 3)
    workdir = Path(tempfile.mkdtemp(prefix="jwtkit-bench-", dir=base))
    rows: list[list[object]] = []
    per_check: dict[str, float] = {}
    redis_commands: dict[str, float] = {}
    missing = {"redis": "redis-server is not installed",
               "postgresql": "PostgreSQL server binaries (initdb, pg_ctl under pg_config --bindir) "
                             "are not installed"}
    try:
        with contextlib.ExitStack() as servers:
            redis_url = servers.enter_context(_redis_server(workdir))
            postgres_url: str | None = None
            try:
                postgres_url = servers.enter_context(_postgres_server(base))
            except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                missing["postgresql"] = f"the throwaway cluster did not start: {exc}"
            urls = {"memory": "memory://", "sqlite": f"sqlite:///{workdir}/bench.db",
                    "leveldb": f"leveldb:///{workdir}/bench.ldb", "redis": redis_url,
                    "postgresql": postgres_url}
            for name, url in urls.items():
                if url is None:
                    print(f"\n## store/{name}: skipped ({missing[name]})")
                    continue
                try:
                    store = open_store(url, purge_interval=0)
                except Exception as exc:  # a missing optional extra: report and go on
                    print(f"\n## store/{name}: skipped ({exc})")
                    continue
                async with store:
                    figures = await _measure(store, checks, writes, repeat)
                per_check[name] = 1e6 / figures["check/1"]
                rows.append([name, *(f"{figures[f'{op}/{c}']:,.0f}" for op in ("check", "revoke", "consume")
                                     for c in (1, CLIENTS))])
            if redis_url is not None:
                redis_commands = await _redis_commands_per_check(redis_url, 200 if quick else 2000)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    header = ["backend", "check 1", f"check {CLIENTS}", "revoke 1", f"revoke {CLIENTS}", "consume 1",
              f"consume {CLIENTS}"]
    print(table(f"store: operations per second (1 client / {CLIENTS} concurrent tasks; {checks} checks, "
                f"{writes} writes per run, median of {repeat})", header, rows))
    print("durability: sqlite and leveldb sync every revocation; postgresql runs with fsync=on, "
          "synchronous_commit=on (default pool, pool_max 10); redis runs without persistence "
          "(--save '' --appendonly no)")
    print(table("store: one check, single client", ["backend", "µs per check"],
                [[name, value] for name, value in per_check.items()]))
    if "sqlite" in per_check:
        verdict = "meets" if per_check["sqlite"] < 20 else "MISSES"
        print(f"\nSQLite check: {per_check['sqlite']:.1f} µs ({verdict} the < 20 µs target)")
    if redis_commands:
        print(table("store/redis: server commands per check (INFO commandstats)",
                    ["command", "calls per check"],
                    [[name, calls] for name, calls in sorted(redis_commands.items())]))
        client_sent = {k: v for k, v in redis_commands.items() if k in ("evalsha", "eval")}
        print(f"round trips per check: {sum(client_sent.values()):.2f} (EVALSHA; the HMGET of the session "
              "and the GET of the user's epoch run inside the script on the server)")


def main(argv: list[str]) -> None:
    asyncio.run(_run(argv))


if __name__ == "__main__":
    main(sys.argv[1:])
