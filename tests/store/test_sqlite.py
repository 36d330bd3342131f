"""SQLite backend specifics: several processes on one file, kill -9 durability, schema, URLs and errors."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from jwtkit.store import StoreConfigError, StoreUnavailable, open_store
from jwtkit.store.sqlite import SCHEMA_VERSION, SQLiteStore

from .support import FakeClock, new_session

CONSUMER = textwrap.dedent("""
    import asyncio, json, sys, time
    from jwtkit.store import open_store

    async def main(url, jti, count):
        async with open_store(url) as store:
            print("READY", flush=True)
            sys.stdin.readline()  # wait for GO so every process races at once
            results = await asyncio.gather(*(store.consume(jti, time.time() + 600) for _ in range(count)))
            print(json.dumps(results), flush=True)

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
""")

REVOKER = textwrap.dedent("""
    import asyncio, sys, time
    from jwtkit.store import Session, open_store

    async def main(url, sid):
        store = open_store(url, purge_interval=0)
        await store.open()
        now = time.time()
        await store.create_session(Session(sid=sid, user_id="alice", created=now, last_used=now,
                                           expires=now + 3600, family="f", refresh_jti="r"))
        assert await store.revoke(sid) is True
        print("ACK", flush=True)
        time.sleep(60)  # the test kills us here, with the store still open

    asyncio.run(main(sys.argv[1], sys.argv[2]))
""")


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_50_consumes_from_5_processes_exactly_one_wins(backend: str, tmp_path: Path,
                                                       request: pytest.FixtureRequest) -> None:
    # Redis rides along here: it is the other backend that several processes share.
    url = f"sqlite:///{tmp_path}/shared.db" if backend == "sqlite" else request.getfixturevalue("redis_url")
    procs = [subprocess.Popen([sys.executable, "-c", CONSUMER, url, "race-jti", "10"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for _ in range(5)]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "READY"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("GO\n")
            proc.stdin.flush()
        results: list[bool] = []
        for proc in procs:
            out, _ = proc.communicate(timeout=60)
            assert proc.returncode == 0
            results += json.loads(out.strip().splitlines()[-1])
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    assert len(results) == 50
    assert results.count(True) == 1


async def test_acknowledged_revocation_survives_kill_9(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/durable.db"
    sid = "s" * 22
    proc = subprocess.Popen([sys.executable, "-c", REVOKER, url, sid], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ACK"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    async with open_store(url) as store:
        session = await store.get_session(sid)
        assert session is not None
        assert session.revoked is True
        assert await store.check(sid, "alice") is False


async def test_two_stores_on_one_file_see_each_others_writes(tmp_path: Path) -> None:
    clock = FakeClock()
    url = f"sqlite:///{tmp_path}/two.db"
    async with open_store(url, clock=clock) as first, open_store(url, clock=clock) as second:
        session = new_session(clock)
        await first.create_session(session)
        assert await second.check(session.sid, "alice") is True
        assert await first.check(session.sid, "alice") is True  # its read must not pin an old snapshot
        assert await second.revoke(session.sid) is True
        assert await first.check(session.sid, "alice") is False
        await second.revoke_all("bob", clock())
        assert await first.get_cutoff("bob") == clock()


async def test_file_is_wal_with_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "schema.db"
    async with open_store(f"sqlite:///{path}"):
        pass
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT name, version FROM store_schema").fetchall() == [
            ("jwtkit.store", SCHEMA_VERSION)]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert tables == {"store_schema", "sessions", "cutoffs", "consumed", "throttles"}
        conn.execute("UPDATE store_schema SET version = ?", (SCHEMA_VERSION + 1,))
        conn.commit()
    finally:
        conn.close()
    with pytest.raises(StoreConfigError, match="schema version"):
        await open_store(f"sqlite:///{path}").open()


async def test_relative_and_absolute_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    relative = open_store("sqlite:///rel.db")
    absolute = open_store(f"sqlite:///{tmp_path}/abs.db")
    assert isinstance(relative, SQLiteStore)
    assert isinstance(absolute, SQLiteStore)
    assert relative.path == "rel.db"
    assert absolute.path == f"{tmp_path}/abs.db"
    async with relative:
        pass
    assert (tmp_path / "rel.db").exists()


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///", "sqlite://host/x.db", "sqlite:///:memory:",
                                 "sqlite:///x.db?busy_timeout=-1", "sqlite:///x.db?colour=red",
                                 "sqlite:///x.db?purge_interval=nan"])
def test_bad_urls_are_config_errors(url: str) -> None:
    with pytest.raises(StoreConfigError) as caught:
        open_store(url)
    assert caught.value.code == "store_config"


async def test_missing_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(StoreConfigError, match="does not exist"):
        await open_store(f"sqlite:///{tmp_path}/no/such/dir/x.db").open()


async def test_not_a_database_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreUnavailable) as caught:
        await open_store(f"sqlite:///{path}").open()
    assert isinstance(caught.value.__cause__, sqlite3.DatabaseError)


async def test_locked_file_raises_unavailable_after_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    clock = FakeClock()
    async with open_store(f"sqlite:///{path}", clock=clock, busy_timeout=0.2) as store:
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # another process holding the write lock
        try:
            session = new_session(clock)
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match="locked"):
                await store.create_session(session)
            assert time.monotonic() - started < 2
            assert await store.check(session.sid, "alice") is False  # readers still answer under WAL
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        await store.create_session(session)
        assert await store.check(session.sid, "alice") is True


async def test_writes_do_not_stall_the_event_loop(tmp_path: Path) -> None:
    clock = FakeClock()
    async with open_store(f"sqlite:///{tmp_path}/loop.db", clock=clock) as store:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        await asyncio.gather(*(store.create_session(new_session(clock)) for _ in range(50)))
        task.cancel()
        assert ticks > 50  # the loop kept turning while the writer thread worked


async def test_scheduled_purge_runs_in_the_background(tmp_path: Path) -> None:
    clock = FakeClock()
    async with open_store(f"sqlite:///{tmp_path}/purge.db", clock=clock, purge_interval=0.05) as store:
        await store.create_session(new_session(clock, ttl=10))
        await store.consume("jti", clock() + 10)
        clock.advance(11)
        for _ in range(100):
            await asyncio.sleep(0.02)
            conn = sqlite3.connect(tmp_path / "purge.db")
            left = conn.execute("SELECT (SELECT count(*) FROM sessions) + (SELECT count(*) FROM consumed)")
            count = left.fetchone()[0]
            conn.close()
            if count == 0:
                break
        assert count == 0


async def test_a_failing_write_does_not_undo_its_group(tmp_path: Path) -> None:
    clock = FakeClock()
    store = open_store(f"sqlite:///{tmp_path}/group.db", clock=clock)
    assert isinstance(store, SQLiteStore)
    async with store:
        sessions = [new_session(clock) for _ in range(20)]

        def broken(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO no_such_table VALUES (1)")

        results = await asyncio.gather(*(store.create_session(s) for s in sessions[:10]),
                                       store._write(broken),
                                       *(store.create_session(s) for s in sessions[10:]),
                                       return_exceptions=True)
        assert [type(r).__name__ for r in results].count("StoreUnavailable") == 1
        assert isinstance(results[10], StoreUnavailable)
        assert isinstance(results[10].__cause__, sqlite3.OperationalError)
        for session in sessions:
            assert await store.check(session.sid, "alice") is True


async def test_new_database_file_is_private(tmp_path: Path) -> None:
    """Sessions (and, by default, password hashes) live in this file: no other local user reads it."""
    path = tmp_path / "jwtkit.db"
    store = open_store(f"sqlite:///{path}")
    async with store:
        await store.revoke("nothing")  # any write makes SQLite create its journal files
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for journal in tmp_path.glob("jwtkit.db-*"):
        assert stat.S_IMODE(journal.stat().st_mode) == 0o600
