"""Fixtures for the store tests: the fake clock and ``store``, opened on every backend in turn."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from jwtkit.store import ManagedStore, open_store

from .support import BACKENDS, FakeClock, store_url


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
async def store(backend: str, clock: FakeClock, tmp_path: Path,
                request: pytest.FixtureRequest) -> AsyncIterator[ManagedStore]:
    opened = open_store(store_url(backend, tmp_path, request), clock=clock)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def raw(postgres_url: str) -> AsyncIterator[Any]:
    """A plain asyncpg connection of the test's own, to hold locks and read rows beside a PostgreSQL store."""
    import asyncpg

    connection = await asyncpg.connect(postgres_url)
    try:
        yield connection
    finally:
        await connection.close()
