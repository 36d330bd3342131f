"""LevelDB backend specifics: one process per directory (a clear, immediate error for the second), plyvel
as an optional extra, persistence across reopening."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from jwtkit.store import StoreConfigError, StoreUnavailable, open_store

from .support import FakeClock, new_session

pytest.importorskip("plyvel")

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
