"""Fixtures for the web tests (helpers live in ``_support.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from _support import ServeProcess, Server, start, start_serve, stop, stop_serve


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    """Secure cookies (``__Host-`` names), reached over https://testserver."""
    running = await start()
    yield running
    await stop(running)


@pytest.fixture
async def plain_server() -> AsyncIterator[Server]:
    """``secure_cookies=False`` (plain names, no Secure), over http://testserver, ``?token=`` enabled."""
    running = await start(secure=False, allow_query_token=True)
    yield running
    await stop(running)


@pytest.fixture
def serve_plain(tmp_path: Path) -> Iterator[ServeProcess]:
    """``jwtkit serve --no-secure-cookies`` in a fresh directory, JWT_SECRET unset (it makes a key file)."""
    process = start_serve(tmp_path, "--no-secure-cookies")
    try:
        yield process
    finally:
        stop_serve(process)
