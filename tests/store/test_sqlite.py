"""SQLite backend specifics: several processes on one file, kill -9 durability, schema and its migration from
schema 1 (time cut-offs), URLs and errors."""

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
from jwtkit.store._sqlite import SCHEMA_VERSION, SQLiteStore

from .support import T0, FakeClock, new_session

CONSUMER = textwrap.dedent("""
    import asyncio, json, sys, time
    from jwtkit.store import open_store

    async def main(url, jti, count):
        async with open_store(url) as store:
            print("READY", flush=True)
            sys.stdin.readline()  # wait for GO so every process races at once
            results = await asyncio.gather(*(store.consume(jti, time.time() + 600) for _ in range(count)),
                                           *(store.revoke_all("racer") for _ in range(count)))
            print(json.dumps({"consumed": results[:count], "epochs": results[count:]}), flush=True)

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
def test_50_consumes_and_revoke_alls_from_5_processes(backend: str, tmp_path: Path,
                                                      request: pytest.FixtureRequest) -> None:
    """Exactly one consume wins, and 50 concurrent revoke_all calls get the 50 distinct epochs 1..50."""
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
        epochs: list[int] = []
        for proc in procs:
            out, _ = proc.communicate(timeout=60)
            assert proc.returncode == 0
            reply = json.loads(out.strip().splitlines()[-1])
            results += reply["consumed"]
            epochs += reply["epochs"]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    assert len(results) == 50
    assert results.count(True) == 1
    assert sorted(epochs) == list(range(1, 51))


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
        assert await second.revoke_all("bob") == 1
        assert await first.get_epoch("bob") == 1
        assert await first.revoke_all("bob") == 2
        assert await second.get_epoch("bob") == 2


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
        assert tables == {"store_schema", "sessions", "epochs", "consumed", "throttles"}
        assert SCHEMA_VERSION == 2
        columns = [r[1] for r in conn.execute("PRAGMA table_info(sessions)")]
        assert columns[-2:] == ["revoked", "epoch"]
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
    # Another connection holds the write lock, so the store's write waits (busy_timeout) in its thread; the
    # event loop must keep running other tasks meanwhile. Were the write on the loop's thread, nothing else
    # could run until the lock is released, which only this test's own code does.
    clock = FakeClock()
    async with open_store(f"sqlite:///{tmp_path}/loop.db", clock=clock) as store:
        blocker = sqlite3.connect(tmp_path / "loop.db", isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        session = new_session(clock)
        write = asyncio.create_task(store.create_session(session))
        other = asyncio.create_task(asyncio.sleep(0.05, result="ran"))
        done, _ = await asyncio.wait({write, other}, timeout=2, return_when=asyncio.FIRST_COMPLETED)
        assert done == {other}  # the other task finished while the write still waited for the lock
        assert other.result() == "ran"
        blocker.execute("COMMIT")
        blocker.close()
        await asyncio.wait_for(write, timeout=5)  # and the write went through once the lock was free
        assert await store.check(session.sid, "alice") is True


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


async def test_check_is_one_query_joining_the_epoch(tmp_path: Path) -> None:
    clock = FakeClock()
    store = open_store(f"sqlite:///{tmp_path}/one.db", clock=clock)
    assert isinstance(store, SQLiteStore)
    async with store:
        epoch = await store.revoke_all("alice")
        session = new_session(clock, epoch=epoch)
        await store.create_session(session)
        conn = store._reader()  # this thread's read connection, the one check uses inline
        statements: list[str] = []
        conn.set_trace_callback(statements.append)
        try:
            assert await store.check(session.sid, "alice") is True
        finally:
            conn.set_trace_callback(None)
    assert len(statements) == 1
    assert "LEFT JOIN epochs" in statements[0]


# migration from schema 1 (per-user time cut-offs), with files built exactly as the old code wrote them ---

SCHEMA_1 = """
CREATE TABLE IF NOT EXISTS store_schema (
    name    TEXT PRIMARY KEY,
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    sid         TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL,
    created     REAL NOT NULL,
    last_used   REAL NOT NULL,
    expires     REAL NOT NULL,
    family      TEXT NOT NULL,
    refresh_jti TEXT NOT NULL,
    user_agent  TEXT NOT NULL DEFAULT '',
    ip          TEXT NOT NULL DEFAULT '',
    revoked     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions (user_id, created);
CREATE INDEX IF NOT EXISTS sessions_by_family ON sessions (family);
CREATE INDEX IF NOT EXISTS sessions_by_expiry ON sessions (expires);
CREATE TABLE IF NOT EXISTS cutoffs (
    user_id TEXT PRIMARY KEY,
    cutoff  REAL NOT NULL,
    expires REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS consumed (
    jti     TEXT PRIMARY KEY,
    expires REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS consumed_by_expiry ON consumed (expires);
CREATE TABLE IF NOT EXISTS throttles (
    key          TEXT PRIMARY KEY,
    failures     INTEGER NOT NULL,
    last_failure REAL NOT NULL,
    expires      REAL NOT NULL
) WITHOUT ROWID;
"""

# sid -> (user_id, created, revoked): what the old code stored. Alice's cut-off is T0 - 50; Carol's record is
# unreadable (the old code read that as +inf); Bob has none.
OLD_SESSIONS = {
    "alice-before": ("alice", T0 - 100, 0),  # created before the cut-off: dead by the old rule
    "alice-at": ("alice", T0 - 50, 0),  # created exactly at it: alive
    "alice-after": ("alice", T0 - 10, 0),
    "alice-revoked": ("alice", T0 - 10, 1),
    "bob-1": ("bob", T0 - 100, 0),
    "carol-1": ("carol", T0 - 10, 0),  # dead: unreadable cut-off
}
DEAD_BY_THE_OLD_RULE = {"alice-before", "alice-revoked", "carol-1"}


def build_schema_1_file(path: Path, *, with_cutoffs: bool = True) -> None:
    """A file as jwtkit with schema 1 left it (its _SCHEMA, then its INSERT statements)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("BEGIN IMMEDIATE")
        for statement in SCHEMA_1.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute("INSERT OR REPLACE INTO store_schema (name, version) VALUES ('jwtkit.store', 1)")
        for sid, (user_id, created, revoked) in OLD_SESSIONS.items():
            conn.execute("INSERT OR REPLACE INTO sessions (sid, user_id, created, last_used, expires, "
                         "family, refresh_jti, user_agent, ip, revoked) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (sid, user_id, created, created, T0 + 3600, f"fam-{sid}", f"jti-{sid}", "old/1.0",
                          "10.0.0.1", revoked))
        if with_cutoffs:
            conn.execute("INSERT OR REPLACE INTO cutoffs (user_id, cutoff, expires) VALUES (?, ?, ?)",
                         ("alice", T0 - 50, T0 + 86400))
            conn.execute("INSERT OR REPLACE INTO cutoffs (user_id, cutoff, expires) VALUES (?, ?, ?)",
                         ("carol", "garbage", T0 + 86400))
        conn.execute("INSERT OR IGNORE INTO consumed (jti, expires) VALUES (?, ?)", ("used-jti", T0 + 600))
        conn.execute("INSERT OR REPLACE INTO throttles (key, failures, last_failure, expires) "
                     "VALUES (?, ?, ?, ?)", ("ip:1", 3, T0 - 1, T0 + 60))
        conn.execute("COMMIT")
    finally:
        conn.close()


async def test_a_schema_1_file_is_migrated_on_open_losing_nothing(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    build_schema_1_file(path)
    clock = FakeClock()
    url = f"sqlite:///{path}"
    for _ in range(2):  # the second open finds schema 2 and changes nothing
        async with open_store(url, clock=clock) as store:
            for sid, (user_id, created, _) in OLD_SESSIONS.items():
                alive = sid not in DEAD_BY_THE_OLD_RULE
                assert await store.check(sid, user_id) is alive, sid
                got = await store.get_session(sid)
                assert got is not None
                assert (got.user_id, got.created, got.revoked, got.epoch) == (user_id, created, not alive, 0)
                assert (got.family, got.refresh_jti, got.user_agent, got.ip) == (
                    f"fam-{sid}", f"jti-{sid}", "old/1.0", "10.0.0.1")
            assert [s.sid for s in await store.list_sessions("alice")] == ["alice-after", "alice-at"]
            for user_id in ("alice", "bob", "carol"):
                assert await store.get_epoch(user_id) == 0
            assert await store.consume("used-jti", clock() + 60) is False  # still consumed
            assert (await store.throttle_get("ip:1")).failures == 3
    conn = sqlite3.connect(path)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert "cutoffs" not in tables
        assert "epochs" in tables
        assert conn.execute("SELECT version FROM store_schema").fetchall() == [(2,)]
        revoked = dict(conn.execute("SELECT sid, revoked FROM sessions").fetchall())
        assert {sid for sid, flag in revoked.items() if flag} == DEAD_BY_THE_OLD_RULE  # marked in the data
    finally:
        conn.close()
    async with open_store(url, clock=clock) as store:  # and from here on the epochs decide
        assert await store.revoke_all("alice") == 1
        assert await store.check("alice-after", "alice") is False
        assert await store.check("bob-1", "bob") is True


async def test_a_schema_1_file_without_cutoffs_gains_the_column(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    build_schema_1_file(path, with_cutoffs=False)
    async with open_store(f"sqlite:///{path}", clock=FakeClock()) as store:
        assert await store.check("alice-before", "alice") is True
        assert await store.check("carol-1", "carol") is True
        session = await store.get_session("bob-1")
        assert session is not None
        assert session.epoch == 0


async def test_the_migration_is_one_transaction(tmp_path: Path) -> None:
    """A failure half-way (here: a trigger refuses the UPDATE that marks cut-off sessions revoked) leaves the
    file exactly as schema 1 had it: no epoch column, the cut-offs still there, version 1."""
    path = tmp_path / "old.db"
    build_schema_1_file(path)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TRIGGER refuse BEFORE UPDATE OF revoked ON sessions "
                 "BEGIN SELECT RAISE(ABORT, 'no'); END")
    conn.close()
    with pytest.raises(StoreUnavailable):
        await open_store(f"sqlite:///{path}").open()
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        assert "epoch" not in [r[1] for r in conn.execute("PRAGMA table_info(sessions)")]
        assert conn.execute("SELECT count(*) FROM cutoffs").fetchone()[0] == 2
        assert conn.execute("SELECT version FROM store_schema").fetchall() == [(1,)]
        assert conn.execute("SELECT count(*) FROM sessions WHERE revoked = 1").fetchone()[0] == 1
        conn.execute("DROP TRIGGER refuse")
    finally:
        conn.close()
    async with open_store(f"sqlite:///{path}", clock=FakeClock()) as store:  # the next open migrates
        assert await store.check("alice-before", "alice") is False
        assert await store.check("alice-after", "alice") is True


async def test_a_corrupt_epoch_in_the_file_fails_closed_and_is_repaired(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "corrupt.db"
    async with open_store(f"sqlite:///{path}", clock=clock) as store:
        sessions = [new_session(clock, epoch=e) for e in (3, 5)]
        for session in sessions:
            await store.create_session(session)
        conn = sqlite3.connect(path)
        with conn:
            conn.execute("INSERT INTO epochs (user_id, epoch) VALUES ('alice', x'00ff')")  # a BLOB
        conn.close()
        assert await store.check(sessions[1].sid, "alice") is False
        with pytest.raises(StoreUnavailable):
            await store.get_epoch("alice")
        assert await store.revoke_all("alice") == 6
        assert await store.check(sessions[1].sid, "alice") is False


async def test_an_existing_file_others_can_read_is_named_in_one_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "open.db"
    path.touch()
    path.chmod(0o644)
    with caplog.at_level("WARNING", "jwtkit.store"):
        async with open_store(f"sqlite:///{path}") as store:
            for sid in ("a", "b", "c"):
                await store.check(sid, "alice")  # connections opened on several threads
    warnings = [r.getMessage() for r in caplog.records if "mode 0644" in r.getMessage()]
    assert warnings == [f"sqlite file {path} has mode 0644, so other local users can read what it holds "
                        f"(sessions, and password hashes when the accounts are in it): chmod 600 {path}"]
    assert path.stat().st_mode & 0o777 == 0o644  # the operator's choice is left as it is
