"""LevelDB backend specifics: one process per directory (a clear, immediate error for the second), plyvel
as an optional extra, persistence across reopening, and the migration of a folder written before epochs."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import orjson
import pytest

from jwtkit.store import StoreConfigError, StoreUnavailable, open_store

from .support import T0, FakeClock, new_session

plyvel = pytest.importorskip("plyvel")

SECOND_PROCESS = textwrap.dedent("""
    import asyncio, sys
    from jwtkit.store import StoreUnavailable, open_store

    async def main(url):
        try:
            await open_store(url).open()
        except StoreUnavailable as exc:
            print("UNAVAILABLE", exc, flush=True)
            return
        print("OPENED", flush=True)

    asyncio.run(main(sys.argv[1]))
""")


async def test_second_process_gets_a_clear_error_not_a_hang(tmp_path: Path) -> None:
    url = f"leveldb:///{tmp_path}/db"
    async with open_store(url):
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-c", SECOND_PROCESS, url], capture_output=True, text=True,
                              timeout=30)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("UNAVAILABLE")
        assert "locked by another process" in done.stdout
        assert time.monotonic() - started < 10  # interpreter start-up included; the open itself is immediate
    done = subprocess.run([sys.executable, "-c", SECOND_PROCESS, url], capture_output=True, text=True,
                          timeout=30)
    assert done.stdout.startswith("OPENED")  # released on close


async def test_second_store_in_one_process_is_refused_too(tmp_path: Path) -> None:
    url = f"leveldb:///{tmp_path}/db"
    async with open_store(url):
        with pytest.raises(StoreUnavailable, match="locked by another process"):
            await open_store(url).open()


async def test_revocation_persists_across_reopen(tmp_path: Path) -> None:
    clock = FakeClock()
    url = f"leveldb:///{tmp_path}/db"
    session = new_session(clock)
    async with open_store(url, clock=clock) as store:
        await store.create_session(session)
        await store.revoke(session.sid)
        await store.consume("jti", clock() + 60)
    async with open_store(url, clock=clock) as store:
        got = await store.get_session(session.sid)
        assert got is not None
        assert got.revoked is True
        assert await store.consume("jti", clock() + 60) is False


def test_missing_plyvel_is_a_config_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "plyvel", None)  # import plyvel now raises ImportError
    with pytest.raises(StoreConfigError, match=r"jwtkit\[leveldb\]"):
        open_store(f"leveldb:///{tmp_path}/db")


async def test_missing_parent_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(StoreConfigError, match="does not exist"):
        await open_store(f"leveldb:///{tmp_path}/no/such/db").open()


async def test_epochs_persist_across_reopen(tmp_path: Path) -> None:
    clock = FakeClock()
    url = f"leveldb:///{tmp_path}/db"
    async with open_store(url, clock=clock) as store:
        assert await store.revoke_all("alice") == 1
        assert await store.revoke_all("alice") == 2
    async with open_store(url, clock=clock) as store:
        assert await store.get_epoch("alice") == 2
        assert await store.revoke_all("alice") == 3


# migration from layout 1 (per-user time cut-offs), with folders built exactly as the old code wrote them ----

# sid -> (user_id, created, revoked). Alice's cut-off is T0 - 50; Carol's record is unreadable (the old code
# read that as +inf); Bob has none.
OLD_SESSIONS = {
    "alice-before": ("alice", T0 - 100, False),  # created before the cut-off: dead by the old rule
    "alice-at": ("alice", T0 - 50, False),  # created exactly at it: alive
    "alice-after": ("alice", T0 - 10, False),
    "alice-revoked": ("alice", T0 - 10, True),
    "bob-1": ("bob", T0 - 100, False),
    "carol-1": ("carol", T0 - 10, False),  # dead: unreadable cut-off
}
DEAD_BY_THE_OLD_RULE = {"alice-before", "alice-revoked", "carol-1"}


def build_layout_1_folder(path: Path) -> None:
    """Keys and JSON values as jwtkit wrote them before epochs (its create_session and revoke_all)."""
    db = plyvel.DB(str(path), create_if_missing=True)
    try:
        for sid, (user_id, created, revoked) in OLD_SESSIONS.items():
            record = {"user_id": user_id, "created": created, "last_used": created, "expires": T0 + 3600,
                      "family": f"fam-{sid}", "refresh_jti": f"jti-{sid}", "user_agent": "old/1.0",
                      "ip": "10.0.0.1", "revoked": revoked}
            with db.write_batch(sync=True) as batch:
                batch.put(b"s:" + sid.encode(), orjson.dumps(record))
                batch.put(b"u:" + user_id.encode() + b"\x00" + sid.encode(), b"")
                batch.put(b"f:" + f"fam-{sid}".encode() + b"\x00" + sid.encode(), b"")
        db.put(b"c:alice", orjson.dumps({"cutoff": T0 - 50, "expires": T0 + 86400}), sync=True)
        db.put(b"c:carol", b"\xff{not json", sync=True)
        db.put(b"j:used-jti", repr(T0 + 600).encode(), sync=True)
        db.put(b"t:ip:1", orjson.dumps({"failures": 3, "last_failure": T0 - 1, "expires": T0 + 60}))
        db.put(b"s:corrupt", b"\xff{not json", sync=True)
    finally:
        db.close()


async def test_a_layout_1_folder_is_migrated_on_open_losing_nothing(tmp_path: Path) -> None:
    path = tmp_path / "old.ldb"
    build_layout_1_folder(path)
    clock = FakeClock()
    url = f"leveldb:///{path}"
    for _ in range(2):  # the second open finds layout 2 and changes nothing
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
            corrupt = await store.get_session("corrupt")
            assert corrupt is not None
            assert corrupt.revoked is True
    db = plyvel.DB(str(path))
    try:
        assert list(db.iterator(prefix=b"c:")) == []
        assert db.get(b"m:schema") == b"2"
        records = {key[2:].decode(): orjson.loads(raw) for key, raw in db.iterator(prefix=b"s:")
                   if key != b"s:corrupt"}
        assert {sid: r["epoch"] for sid, r in records.items()} == dict.fromkeys(OLD_SESSIONS, 0)
        assert {sid for sid, r in records.items() if r["revoked"]} == DEAD_BY_THE_OLD_RULE  # in the data
        assert db.get(b"s:corrupt") == b"\xff{not json"  # left as it was: it reads as revoked anyway
    finally:
        db.close()
    async with open_store(url, clock=clock) as store:  # and from here on the epochs decide
        assert await store.revoke_all("alice") == 1
        assert await store.check("alice-after", "alice") is False
        assert await store.check("bob-1", "bob") is True


async def test_a_newer_layout_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.ldb"
    db = plyvel.DB(str(path), create_if_missing=True)
    db.put(b"m:schema", b"3")
    db.close()
    with pytest.raises(StoreConfigError, match="layout version"):
        await open_store(f"leveldb:///{path}").open()
    async with open_store(f"leveldb:///{tmp_path}/fresh.ldb"):  # a fresh folder gets layout 2
        pass
    db = plyvel.DB(str(tmp_path / "fresh.ldb"))
    assert db.get(b"m:schema") == b"2"
    db.close()


async def test_the_folder_and_its_files_are_private(tmp_path: Path) -> None:
    folder = tmp_path / "sessions"
    clock = FakeClock(T0)
    async with open_store(f"leveldb:///{folder}", clock=clock) as store:
        await store.create_session(new_session(clock))
    assert folder.stat().st_mode & 0o777 == 0o700
    files = [entry for entry in folder.iterdir() if entry.is_file()]
    assert files and {entry.name: entry.stat().st_mode & 0o777 for entry in files} == {
        entry.name: 0o600 for entry in files}


async def test_an_open_folder_is_named_in_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "sessions"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    async with open_store(f"leveldb:///{folder}", clock=FakeClock(T0)):
        pass
    assert f"the folder has mode 0755, so other local users can read the sessions in it: chmod 700 {folder}" \
        in caplog.text
