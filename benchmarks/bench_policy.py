"""The access policy's per-request cost, in process: ``AccessPolicy.authenticate`` for one access token,
with the verified-token cache off (``token_cache=0``: signature and claims checked every time) and on (the
default), for HS256, RS256, ES256 and EdDSA; then the session check answered by the store (the memory
store: no I/O, so the floor of a store check) against the revocation mirror.

Same-run medians of interleaved samples (``benchmarks._timing.median_us``), µs per call.

Usage: ``python -m benchmarks policy``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from benchmarks._timing import median_us, ratio, table
from jwtkit import Key, encode
from jwtkit.service import AccessPolicy
from jwtkit.store import RevocationMirror, Session
from jwtkit.store._memory import MemoryStore

ALGS = ["HS256", "RS256", "ES256", "EdDSA"]


def _token(key: Key, sid: str) -> str:
    now = int(time.time())
    claims = {"iss": "jwtkit", "sub": "user-8c1f2a", "iat": now, "exp": now + 900, "jti": uuid.uuid4().hex,
              "sid": sid}
    return encode(claims, key, typ="at+jwt")


def _timed(loop: asyncio.AbstractEventLoop, policy: AccessPolicy, token: str) -> float:
    """µs per authenticate call; each call is driven as a coroutine without a loop turn (as a request's)."""

    def once() -> Any:
        coroutine = policy.authenticate(token)
        try:
            coroutine.send(None)
        except StopIteration as done:
            return done.value
        raise RuntimeError("authenticate suspended: this benchmark measures the in-process path only")

    return median_us(once, number=2000, repeat=7)


def main(argv: list[str]) -> None:
    del argv  # no options
    loop = asyncio.new_event_loop()
    rows = []
    for alg in ALGS:
        key = Key.generate(alg, kid="k1") if alg != "HS256" else Key.from_secret(b"k" * 32, kid="k1")
        token = _token(key, "s1")
        uncached = AccessPolicy(keys=key, issuer="jwtkit", token_cache=0)
        cached = AccessPolicy(keys=key, issuer="jwtkit")
        off = _timed(loop, uncached, token)
        on = _timed(loop, cached, token)
        rows.append([alg, f"{off:.2f}", f"{on:.2f}", ratio(off, on)])
    print(table("policy: AccessPolicy.authenticate, µs/call (median), no store", ["alg", "cache off",
                "cache on", "speed-up"], rows))

    async def sessions() -> tuple[MemoryStore, RevocationMirror]:
        store = MemoryStore(purge_interval=0, clock=time.time)
        await store.open()
        now = time.time()
        await store.create_session(Session(sid="s1", user_id="user-8c1f2a", created=now, last_used=now,
                                           expires=now + 86400, family="f", refresh_jti="r"))
        mirror = RevocationMirror(store, window=930)
        await mirror.step()
        return store, mirror

    store, mirror = loop.run_until_complete(sessions())
    key = Key.from_secret(b"k" * 32, kid="k1")
    token = _token(key, "s1")
    direct = AccessPolicy(keys=key, issuer="jwtkit", store=store)
    mirrored = AccessPolicy(keys=key, issuer="jwtkit", store=store, mirror=mirror)
    store_us = _timed(loop, direct, token)
    mirror_us = _timed(loop, mirrored, token)
    print(table("policy: HS256 token + session check, µs/call (median); the memory store has no I/O, so a "
                "networked store adds its round trip to the first row only",
                ["session check", "µs/call"], [["store.check (memory)", f"{store_us:.2f}"],
                                              ["revocation mirror", f"{mirror_us:.2f}"]]))
    loop.run_until_complete(store.close())
    loop.close()
