"""Waiting, with a deadline, for what a node's revocation mirror promises to do within ``mirror_max_lag``:
a revocation made on another node, or a store that went away, is seen there within that bound, not at once.
Each helper polls and fails past the bound; every answer seen meanwhile must be one the test allows."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from jwtkit.service import AuthConfig

# the default mirror_max_lag, plus room for a loaded 2-core machine to schedule the feed's reader
MIRROR_BOUND = AuthConfig().mirror_max_lag + 1.0


def status_within(request: Callable[[], int], expected: int, *, allowed: tuple[int, ...] = (200,),
                  within: float = MIRROR_BOUND) -> None:
    """Call ``request`` (which returns an HTTP status) until it answers ``expected``; any status other than
    ``expected`` or ``allowed``, or no ``expected`` within ``within`` seconds, fails."""
    deadline = time.monotonic() + within
    while True:
        status = request()
        if status == expected:
            return
        assert status in allowed, f"status {status} while waiting for {expected}"
        assert time.monotonic() < deadline, f"still {status} after {within} s, waiting for {expected}"
        time.sleep(0.01)


async def astatus_within(request: Callable[[], Awaitable[int]], expected: int, *,
                         allowed: tuple[int, ...] = (200,), within: float = MIRROR_BOUND) -> None:
    """:func:`status_within` for an async ``request``."""
    deadline = time.monotonic() + within
    while True:
        status = await request()
        if status == expected:
            return
        assert status in allowed, f"status {status} while waiting for {expected}"
        assert time.monotonic() < deadline, f"still {status} after {within} s, waiting for {expected}"
        await asyncio.sleep(0.01)


async def mirror_stale(service: Any, *, within: float = MIRROR_BOUND) -> None:
    """Until ``service``'s mirror (if it has one) no longer answers for the store: its feed broke or lags."""
    deadline = time.monotonic() + within
    while service.mirror is not None and service.mirror.trusted:
        assert time.monotonic() < deadline, f"the mirror still trusts a store that is gone, after {within} s"
        await asyncio.sleep(0.01)
