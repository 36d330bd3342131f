"""Login throttling with counters in the store (so they hold across nodes): per account for unknown devices,
per known device, and per client address.

After a counter's threshold of failures inside the window, each further attempt must wait a delay that
doubles per extra failure (``base * 2**(failures - threshold)``, capped at ``max_delay``), counted from the
last failure. While a counter waits, login is refused *before* the password is checked, so a correct
password cannot get around it.

An attacker who knows a username must not be able to lock its owner out (OWASP, "Slow down online guessing
attacks with device cookies"). A device that has signed in to an account holds a known-device token for it
(signed, naming the account's username key): its attempts count against that token's own counter and never
wait for the account's, which only counts attempts from devices the account has not seen. A known device
whose own counter waits is an unknown device again. The per-address threshold sits far above the others
(100 against 5): one address is often many people, and it only has to slow one client spraying guesses
over many accounts.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
from collections.abc import AsyncIterator, Sequence

from jwtkit.service._config import AuthConfig
from jwtkit.service._errors import Throttled
from jwtkit.store._base import Clock, Store, ThrottleState

__all__ = ["RATE_LIMITS", "LoginThrottle", "RateLimits", "throttle_delay"]

# (requests, seconds) per action and subject: what one client address, or one target account, may ask for.
# The window restarts at each request, so a client that keeps asking stays refused.
RATE_LIMITS: dict[tuple[str, str], tuple[int, float]] = {
    ("register", "ip"): (10, 3600.0),  # each costs an argon2 hash
    ("forgot", "ip"): (20, 3600.0),
    ("forgot", "target"): (3, 3600.0),  # each sends a mail to that account
    ("verify", "account"): (3, 3600.0),  # each sends a mail
    ("verify", "ip"): (20, 3600.0),  # one address signed in to many accounts
}


def throttle_delay(failures: int, config: AuthConfig, threshold: int | None = None) -> float:
    """Seconds to wait after the last failure before another attempt, for ``failures`` counted in the window
    against a counter of ``threshold`` (the account's and device's, ``throttle_threshold``, by default).

    Example:
        >>> [throttle_delay(n, AuthConfig()) for n in (4, 5, 6, 7)]
        [0.0, 1.0, 2.0, 4.0]
    """
    extra = failures - (config.throttle_threshold if threshold is None else threshold)
    if extra < 0:
        return 0.0
    if extra >= 64:  # 2**64 * base is past any cap; avoid building huge floats
        return float(config.throttle_max_delay)
    return float(min(config.throttle_base_delay * 2**extra, config.throttle_max_delay))


def _key(kind: str, value: str, scope: str = "login") -> str:
    # Hashed: keys stay short and carry no user input into the store (Redis keys, log lines).
    digest = hashlib.sha256(str(value).encode("utf-8", "surrogatepass")).digest()[:18]
    return f"{scope}:{kind}:{base64.urlsafe_b64encode(digest).decode('ascii')}"


class RateLimits:
    """Requests counted per action and subject in the store (so the limits hold across nodes), refused past
    :data:`RATE_LIMITS`: registrations per client address, reset mails per address and per target, and
    verification mails per account and per address. Unlike the login throttle, every request counts, not
    only failures."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def spend(self, action: str, kind: str, value: str) -> None:
        """Count one request; Throttled (``retry_after`` the window) past the limit. An empty ``value`` (no
        client address known) is not counted."""
        if not value:
            return
        limit, window = RATE_LIMITS[(action, kind)]
        state = await self.store.throttle_hit(_key(kind, value, f"rate:{action}"), window)
        if state.failures > limit:
            raise Throttled(window, "too many requests; try again later")


class LoginThrottle:
    """Checks and counts login failures on the counters of one attempt: the account's (unknown devices) or
    the known device's, and the client address's.

    The address counter is deliberately not cleared by a successful login: otherwise an attacker holding one
    valid account could reset it between guesses at other accounts. It decays with the window.

    Attempts on the same key run one at a time in this process (:meth:`serialized`): otherwise a burst of
    concurrent guesses would all pass :meth:`check` before the first failure is counted. Across nodes the
    number of attempts in flight per key is at most the number of nodes.
    """

    def __init__(self, store: Store, config: AuthConfig, clock: Clock) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def serialized(self, keys: Sequence[str | None]) -> AsyncIterator[None]:
        """Hold one lock per key (always in the given order: username, then IP) for one attempt."""
        async with contextlib.AsyncExitStack() as stack:
            for key in keys:
                if key is not None:
                    await stack.enter_async_context(self._hold(key))
            yield

    @contextlib.asynccontextmanager
    async def _hold(self, key: str) -> AsyncIterator[None]:
        lock, holders = self._locks.get(key) or (asyncio.Lock(), 0)
        self._locks[key] = (lock, holders + 1)
        try:
            async with lock:
                yield
        finally:
            lock, holders = self._locks[key]
            if holders <= 1:
                del self._locks[key]  # no waiters left: keep the table as small as the traffic
            else:
                self._locks[key] = (lock, holders - 1)

    def keys(self, username: str, ip: str) -> tuple[str, str | None]:
        """The store keys for this attempt: the username's, and the IP's (None when the IP is unknown)."""
        return _key("user", username), (_key("ip", ip) if ip else None)

    @staticmethod
    def device_key(device_id: str) -> str:
        """The counter of one known-device token (its ``jti``)."""
        return _key("device", device_id)

    async def waiting(self, key: str) -> bool:
        """Whether ``key`` must still wait before another attempt."""
        return self._remaining(key, await self.store.throttle_get(key), self.clock()) > 0

    def _threshold(self, key: str) -> int:
        if key.startswith("login:ip:"):
            return self.config.throttle_ip_threshold
        return self.config.throttle_threshold

    async def check(self, keys: Sequence[str | None]) -> None:
        """Raise Throttled(retry_after) while any key must still wait."""
        now = self.clock()
        wait = 0.0
        for key in keys:
            if key is None:
                continue
            state = await self.store.throttle_get(key)
            wait = max(wait, self._remaining(key, state, now))
        if wait > 0:
            raise Throttled(wait)

    def _remaining(self, key: str, state: ThrottleState, now: float) -> float:
        delay = throttle_delay(state.failures, self.config, self._threshold(key))
        if delay <= 0:
            return 0.0
        return max(0.0, state.last_failure + delay - now)

    async def failure(self, keys: Sequence[str | None]) -> float:
        """Count a failure on every key; return the wait the next attempt will face (0 if none)."""
        now = self.clock()
        wait = 0.0
        for key in keys:
            if key is None:
                continue
            state = await self.store.throttle_hit(key, self.config.throttle_window)
            wait = max(wait, self._remaining(key, state, now))
        return wait

    async def success(self, key: str) -> None:
        """Forget the failures of the account's (or the known device's) counter after a successful login."""
        await self.store.throttle_clear(key)
