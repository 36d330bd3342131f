"""Redis backend specifics: faults (server killed, restarted, down at open, paused), one round trip per
check, TTLs and prefixes, the migration of keys written before epochs, passwords and TLS."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.connection import SSLConnection
from redis.exceptions import AuthenticationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from jwtkit.store import Rotation, StoreConfigError, StoreUnavailable, open_store
from jwtkit.store._redis import RedisStore
from processes import free_port, require_binary, self_signed_certificate, wait_for_port

from .support import T0, FakeClock, new_session

RedisServer = Any  # the shared `redis_server` fixture's object (tests/conftest.py)

pytestmark = pytest.mark.redis


@pytest.fixture
async def raw_client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    await client.aclose()


async def every_operation_fails_fast(store: RedisStore, sid: str, clock: FakeClock) -> None:
    """Each operation raises StoreUnavailable, and quickly; check never answers True."""
    operations: list[Any] = [
        lambda: store.check(sid, "alice"), lambda: store.get_session(sid),
        lambda: store.create_session(new_session(clock)), lambda: store.revoke(sid),
        lambda: store.revoke_family("f"), lambda: store.revoke_all("alice"),
        lambda: store.get_epoch("alice"), lambda: store.list_sessions("alice"),
        lambda: store.rotate_refresh(sid, "a", "b"), lambda: store.consume("jti", clock() + 60),
        lambda: store.throttle_hit("k", 60), lambda: store.throttle_get("k"),
        lambda: store.throttle_clear("k"),
        lambda: store.touch(sid, clock()), store.ping,
    ]
    for operation in operations:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable) as caught:
            await operation()
        assert time.monotonic() - started < 2
        assert isinstance(caught.value.__cause__, (RedisConnectionError, RedisTimeoutError, OSError))
        assert caught.value.code == "store_unavailable"


async def test_killed_server_fails_closed_then_recovers(redis_server: RedisServer, clock: FakeClock) -> None:
    store = open_store(redis_server.url, clock=clock)
    assert isinstance(store, RedisStore)
    async with store:
        revoked, live = new_session(clock), new_session(clock)
        await store.create_session(revoked)
        await store.create_session(live)
        await store.revoke(revoked.sid)
        assert await store.check(live.sid, "alice") is True

        redis_server.kill()
        await every_operation_fails_fast(store, live.sid, clock)
        await every_operation_fails_fast(store, revoked.sid, clock)

        redis_server.start()  # same port; data is gone (--save "")
        # the first command after the restart works, without reopening the store
        assert await store.check(revoked.sid, "alice") is False  # never accepted: now unknown
        assert await store.check(live.sid, "alice") is False
        fresh = new_session(clock)
        await store.create_session(fresh)
        assert await store.check(fresh.sid, "alice") is True
        assert await store.consume("after-restart", clock() + 60) is True


async def test_restart_while_idle_reconnects_on_first_command(redis_server: RedisServer,
                                                              clock: FakeClock) -> None:
    async with open_store(redis_server.url, clock=clock) as store:
        await store.ping()
        redis_server.restart()  # the pooled connection is now dead, unknown to the client
        session = new_session(clock)
        await store.create_session(session)  # one retry on a fresh connection: no error
        assert await store.check(session.sid, "alice") is True


async def test_down_at_open_is_unavailable(redis_server: RedisServer) -> None:
    redis_server.kill()
    store = open_store(redis_server.url)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        await store.open()
    assert time.monotonic() - started < 2
    redis_server.start()
    await store.open()  # a failed open can be retried
    await store.ping()
    await store.close()


async def test_paused_server_times_out_and_cancellation_propagates(redis_server: RedisServer,
                                                                   raw_client: aioredis.Redis,
                                                                   clock: FakeClock) -> None:
    async with open_store(redis_server.url, clock=clock, command_timeout=0.2) as store:
        session = new_session(clock)
        await store.create_session(session)
        await raw_client.execute_command("CLIENT", "PAUSE", "1500", "ALL")  # type: ignore[no-untyped-call]
        try:
            started = time.monotonic()
            with pytest.raises(StoreUnavailable) as caught:
                await store.check(session.sid, "alice")
            assert time.monotonic() - started < 1
            assert isinstance(caught.value.__cause__, RedisTimeoutError)

            task = asyncio.create_task(store.check(session.sid, "alice"))
            await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        finally:
            await raw_client.execute_command("CLIENT", "UNPAUSE")  # type: ignore[no-untyped-call]
        assert await store.check(session.sid, "alice") is True


async def test_check_is_one_round_trip(redis_url: str, raw_client: aioredis.Redis, clock: FakeClock) -> None:
    async with open_store(redis_url, clock=clock) as store:
        epoch = await store.revoke_all("alice")  # an epoch exists, so the script reads it too
        session = new_session(clock, epoch=epoch)
        await store.create_session(session)
        assert await store.check(session.sid, "alice") is True  # loads the script
        await raw_client.config_resetstat()
        for _ in range(20):
            assert await store.check(session.sid, "alice") is True
        stats = await raw_client.info("commandstats")
    # config_resetstat and info come from the raw client; everything else is the store's
    calls = {name: value["calls"] for name, value in stats.items()
             if name not in ("cmdstat_config|resetstat", "cmdstat_info")}
    # Only EVALSHA reaches the server from the client side: the HMGET (session) and GET (epoch) inside the
    # script count as commands too, but they do not cost round trips.
    assert calls == {"cmdstat_evalsha": 20, "cmdstat_hmget": 20, "cmdstat_get": 20}


async def test_every_key_has_a_ttl_within_its_record_life(redis_url: str, raw_client: aioredis.Redis,
                                                          clock: FakeClock) -> None:
    async with open_store(redis_url, clock=clock) as store:
        session = new_session(clock, ttl=600, family="fam")
        await store.create_session(session)
        await store.rotate_refresh(session.sid, session.refresh_jti, "next")
        await store.touch(session.sid, clock() + 1)
        await store.revoke_all("bob")
        await store.consume("jti", clock() + 30)
        await store.throttle_hit("ip", 90)
        await store.revoke(session.sid)
        ttls = {key: await raw_client.pttl(key) async for key in raw_client.scan_iter("jwtkit:*")}
    assert set(ttls) == {f"jwtkit:s:{session.sid}", "jwtkit:u:alice", "jwtkit:f:fam", "jwtkit:e:bob",
                         "jwtkit:j:jti", "jwtkit:t:ip", "jwtkit:schema"}
    assert 0 < ttls[f"jwtkit:s:{session.sid}"] <= 600_000
    assert 0 < ttls["jwtkit:u:alice"] <= 600_000
    assert 0 < ttls["jwtkit:f:fam"] <= 600_000
    assert ttls["jwtkit:e:bob"] == -1  # an epoch never expires: the counter must not restart at 0
    assert ttls["jwtkit:schema"] == -1
    assert 0 < ttls["jwtkit:j:jti"] <= 30_000
    assert 0 < ttls["jwtkit:t:ip"] <= 90_000


async def test_list_prunes_dead_members(redis_url: str, raw_client: aioredis.Redis, clock: FakeClock) -> None:
    async with open_store(redis_url, clock=clock) as store:
        sessions = [new_session(clock) for _ in range(3)]
        for session in sessions:
            await store.create_session(session)
        await store.revoke(sessions[0].sid)
        await raw_client.delete(f"jwtkit:s:{sessions[1].sid}")  # as if its TTL had run out
        assert [s.sid for s in await store.list_sessions("alice")] == [sessions[2].sid]
        assert await raw_client.zrange("jwtkit:u:alice", 0, -1) == [sessions[2].sid]


async def test_prefixes_keep_stores_apart(redis_url: str, raw_client: aioredis.Redis,
                                          clock: FakeClock) -> None:
    async with open_store(redis_url + "?prefix=app1:", clock=clock) as one, \
            open_store(redis_url, clock=clock, prefix="app2:") as two:
        session = new_session(clock)
        await one.create_session(session)
        assert await one.check(session.sid, "alice") is True
        assert await two.check(session.sid, "alice") is False
        assert await one.consume("jti", clock() + 60) is True
        assert await two.consume("jti", clock() + 60) is True
        keys = [key async for key in raw_client.scan_iter("*")]
    assert keys
    assert all(key.startswith(("app1:", "app2:")) for key in keys)


@pytest.mark.parametrize("corrupt", ["hash", "text", "too big"])
async def test_corrupt_epoch_key_fails_closed(redis_url: str, raw_client: aioredis.Redis, clock: FakeClock,
                                              corrupt: str) -> None:
    async with open_store(redis_url, clock=clock) as store:
        session = new_session(clock, epoch=4)
        await store.create_session(session)
        if corrupt == "hash":
            await raw_client.hset("jwtkit:e:alice", "epoch", "1")  # WRONGTYPE for GET and INCR
        else:
            await raw_client.set("jwtkit:e:alice", "one" if corrupt == "text" else str(2**53))
        assert await store.check(session.sid, "alice") is False
        assert await store.rotate_refresh(session.sid, session.refresh_jti, "x") is Rotation.INACTIVE
        assert await store.list_sessions("alice") == []
        assert await raw_client.zrange("jwtkit:u:alice", 0, -1) == [session.sid]  # not pruned: the repair
        with pytest.raises(StoreUnavailable, match="epoch record"):  # must still see its epoch
            await store.get_epoch("alice")
        assert await store.revoke_all("alice") == 5  # an admin's logout-all repairs the record
        assert await raw_client.get("jwtkit:e:alice") == "5"
        assert await raw_client.pttl("jwtkit:e:alice") == -1
        assert await store.check(session.sid, "alice") is False
        fresh = new_session(clock, epoch=5)
        await store.create_session(fresh)
        assert await store.check(fresh.sid, "alice") is True


async def test_list_marks_sessions_of_an_older_epoch_revoked_before_pruning(
        redis_url: str, raw_client: aioredis.Redis, clock: FakeClock) -> None:
    """Pruning a session of an older epoch from the index must not let a later repair of a corrupt epoch
    record (which only sees indexed sessions) bring it back: it is marked revoked first."""
    async with open_store(redis_url, clock=clock) as store:
        old = new_session(clock, epoch=3)
        await store.create_session(old)
        for _ in range(4):
            await store.revoke_all("alice")
        assert await store.list_sessions("alice") == []
        assert await raw_client.zrange("jwtkit:u:alice", 0, -1) == []
        assert await raw_client.hget(f"jwtkit:s:{old.sid}", "revoked") == "1"
        await raw_client.set("jwtkit:e:alice", "garbage")
        assert await store.revoke_all("alice") == 1  # no indexed session left: 0 + 1
        assert await store.check(old.sid, "alice") is False


# migration from per-user time cut-offs, with keys written exactly as the old scripts wrote them ----------

# sid -> (user_id, created, revoked). Alice's cut-off is T0 - 50; Carol's key is not a hash and Erin's cut-off
# is not a number (the old scripts read both as "every session dead"); Dave's hash has no cut-off field
# (read as none); Bob has no key.
OLD_SESSIONS = {
    "alice-before": ("alice", T0 - 100, "0"),  # created before the cut-off: dead by the old rule
    "alice-at": ("alice", T0 - 50, "0"),  # created exactly at it: alive
    "alice-after": ("alice", T0 - 10, "0"),
    "alice-revoked": ("alice", T0 - 10, "1"),
    "bob-1": ("bob", T0 - 100, "0"),
    "carol-1": ("carol", T0 - 10, "0"),
    "dave-1": ("dave", T0 - 100, "0"),
    "erin-1": ("erin", T0 - 10, "0"),
}
DEAD_BY_THE_OLD_RULE = {"alice-before", "alice-revoked", "carol-1", "erin-1"}


async def write_old_format(client: aioredis.Redis, prefix: str) -> None:
    """What the old _CREATE and _REVOKE_ALL scripts stored (no ``epoch`` field; ``c:`` cut-off hashes)."""
    for sid, (user_id, created, revoked) in OLD_SESSIONS.items():
        skey = f"{prefix}s:{sid}"
        await client.hset(skey, mapping={
            "user_id": user_id, "created": repr(created), "last_used": repr(created),
            "expires": repr(T0 + 3600), "family": f"fam-{sid}", "refresh_jti": f"jti-{sid}",
            "user_agent": "old/1.0", "ip": "10.0.0.1", "revoked": revoked})
        await client.pexpire(skey, 3_600_000)
        await client.zadd(f"{prefix}u:{user_id}", {sid: created})
        await client.pexpire(f"{prefix}u:{user_id}", 3_600_000)
        await client.sadd(f"{prefix}f:fam-{sid}", sid)
        await client.pexpire(f"{prefix}f:fam-{sid}", 3_600_000)
    await client.hset(f"{prefix}c:alice", "cutoff", repr(T0 - 50))
    await client.pexpire(f"{prefix}c:alice", 86_400_000)
    await client.set(f"{prefix}c:carol", "not a hash")
    await client.hset(f"{prefix}c:dave", "other", "1")
    await client.hset(f"{prefix}c:erin", "cutoff", "soon")
    await client.set(f"{prefix}j:used-jti", repr(T0 + 600), px=600_000)


@pytest.mark.parametrize("prefix", ["jwtkit:", "a*[b]?:"])  # glob characters in the prefix match literally
async def test_keys_of_the_cutoff_format_are_migrated_on_open(redis_url: str, raw_client: aioredis.Redis,
                                                              clock: FakeClock, prefix: str) -> None:
    await write_old_format(raw_client, prefix)
    await raw_client.hset("aXbY:c:alice", "cutoff", repr(T0))  # another prefix's key: SCAN must skip it
    for _ in range(2):  # the second open finds the layout key and only reads it
        async with open_store(redis_url, clock=clock, prefix=prefix) as store:
            for sid, (user_id, created, _) in OLD_SESSIONS.items():
                alive = sid not in DEAD_BY_THE_OLD_RULE
                assert await store.check(sid, user_id) is alive, sid
                got = await store.get_session(sid)
                assert got is not None
                assert (got.user_id, got.created, got.revoked, got.epoch) == (user_id, created, not alive, 0)
                assert (got.family, got.refresh_jti, got.user_agent, got.ip) == (
                    f"fam-{sid}", f"jti-{sid}", "old/1.0", "10.0.0.1")
            assert [s.sid for s in await store.list_sessions("alice")] == ["alice-after", "alice-at"]
            for user_id in ("alice", "bob", "carol", "dave", "erin"):
                assert await store.get_epoch(user_id) == 0
            assert await store.consume("used-jti", clock() + 60) is False  # still consumed
    keys = {key async for key in raw_client.scan_iter("*")}
    assert not {key for key in keys if key.startswith(prefix + "c:")}
    assert "aXbY:c:alice" in keys
    assert await raw_client.get(prefix + "schema") == "2"
    revoked = {sid for sid in OLD_SESSIONS if await raw_client.hget(f"{prefix}s:{sid}", "revoked") == "1"}
    assert revoked == DEAD_BY_THE_OLD_RULE  # marked in the data, not only answered
    async with open_store(redis_url, clock=clock, prefix=prefix) as store:  # from here on the epochs decide
        assert await store.revoke_all("alice") == 1
        assert await store.check("alice-after", "alice") is False
        assert await store.check("bob-1", "bob") is True


async def test_a_newer_layout_is_refused(redis_url: str, raw_client: aioredis.Redis) -> None:
    await raw_client.set("jwtkit:schema", "3")
    with pytest.raises(StoreConfigError, match="layout version"):
        await open_store(redis_url).open()


async def test_password(redis_server: RedisServer, clock: FakeClock) -> None:
    redis_server.password = "s3cret-pw"
    redis_server.restart()
    assert redis_server.url.startswith("redis://:s3cret-pw@")
    store = open_store(redis_server.url, clock=clock)
    assert "s3cret" not in store.url
    assert "s3cret" not in repr(store)
    async with store:
        session = new_session(clock)
        await store.create_session(session)
        assert await store.check(session.sid, "alice") is True
    wrong = open_store(redis_server.url.replace("s3cret-pw", "wrong"), clock=clock)
    with pytest.raises(StoreUnavailable) as caught:
        await wrong.open()
    assert isinstance(caught.value.__cause__, AuthenticationError)
    anonymous = open_store(redis_server.url.replace(":s3cret-pw@", ""), clock=clock)
    with pytest.raises(StoreUnavailable):
        await anonymous.open()


def test_rediss_url_builds_a_tls_pool(tmp_path: Path) -> None:
    store = open_store(f"rediss://127.0.0.1:6390/0?ssl_cert_reqs=required&ssl_ca_certs={tmp_path}/ca.pem"
                       "&prefix=x:")
    assert isinstance(store, RedisStore)
    pool = store._build_client().connection_pool
    assert pool.connection_class is SSLConnection
    assert pool.connection_kwargs["ssl_ca_certs"] == f"{tmp_path}/ca.pem"
    assert store._prefix == "x:"


@pytest.mark.parametrize(("url", "options"), [
    ("redis://127.0.0.1:1/0?colour=red", {}),
    ("redis://127.0.0.1:1/0", {"colour": "red"}),
    ("redis://127.0.0.1:1/0", {"prefix": ""}),
    ("redis://127.0.0.1:1/0?connect_timeout=-1", {}),
    ("redis://127.0.0.1:1/0?command_timeout=soon", {}),
    ("redis://127.0.0.1:1/notanumber", {}),
])
def test_bad_redis_options_are_config_errors(url: str, options: dict[str, Any]) -> None:
    with pytest.raises(StoreConfigError) as caught:
        open_store(url, clock=time.time, **options)
    assert caught.value.code == "store_config"


# TLS against a real server ------------------------------------------------------------------------------


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    binary = require_binary("redis-server")
    cert, key = self_signed_certificate(tmp_path)
    port = free_port()
    log = open(tmp_path / "redis-tls.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([binary, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
                             "--tls-cert-file", str(cert), "--tls-key-file", str(key),
                             "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=log, stderr=subprocess.STDOUT)
    log.close()
    try:
        wait_for_port(port, proc=proc)
        yield port, cert
    finally:
        proc.kill()
        proc.wait()


async def test_rediss_against_a_tls_server(tls_redis: tuple[int, Path], clock: FakeClock) -> None:
    port, cert = tls_redis
    async with open_store(f"rediss://127.0.0.1:{port}/0", clock=clock, ssl_ca_certs=str(cert)) as store:
        session = new_session(clock)
        await store.create_session(session)
        assert await store.check(session.sid, "alice") is True
    untrusting = open_store(f"rediss://127.0.0.1:{port}/0", clock=clock)  # system CAs: not ours
    with pytest.raises(StoreUnavailable):
        await untrusting.open()
    plain = open_store(f"redis://127.0.0.1:{port}/0", clock=clock)
    with pytest.raises(StoreUnavailable):
        await plain.open()
