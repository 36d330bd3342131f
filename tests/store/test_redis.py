"""Redis backend specifics: faults (server killed, restarted, down at open, paused), one round trip per
check, TTLs and prefixes, key layout 3 (shard tags and pointers), the migrations of keys written before
epochs (layout 1) and before shard tags (layout 2, written by the layout-2 scripts themselves), passwords and
TLS. The revocation feed has its own module (test_redis_feed.py), and so has Redis Cluster
(test_redis_cluster.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import secrets
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

from jwtkit.store import (
    ManagedStore,
    RevocationKind,
    Rotation,
    Session,
    StoreConfigError,
    StoreUnavailable,
    ThrottleState,
    open_store,
)
from jwtkit.store._redis import RedisStore, shard_of
from processes import free_port, require_binary, self_signed_certificate, wait_for_port

from .support import T0, FakeClock, new_session

RedisServer = Any  # the shared `redis_server` fixture's object (tests/conftest.py)


def key(store: ManagedStore, kind: str, name: str) -> str:
    """The layout-3 key of a record of ``store`` (``s``: a sid the store created; ``e``, ``u``: a user id)."""
    return store._key(kind, name)  # type: ignore[attr-defined, no-any-return]

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
    a, b = shard_of("alice", 16), shard_of("bob", 16)
    assert set(ttls) == {f"jwtkit:{{{a}}}:s:{session.sid}", f"jwtkit:{{{a}}}:u:alice",
                         f"jwtkit:{{{a}}}:f:fam", f"jwtkit:p:{session.sid}", "jwtkit:q:fam",
                         f"jwtkit:{{{b}}}:e:bob",
                         "jwtkit:j:jti", "jwtkit:t:ip", "jwtkit:schema", "jwtkit:shards", "jwtkit:generation",
                         *(f"jwtkit:{{{n}}}:revocations" for n in range(16))}  # every stream, from the open
    for key in (f"jwtkit:{{{a}}}:s:{session.sid}", f"jwtkit:{{{a}}}:u:alice", f"jwtkit:{{{a}}}:f:fam",
                f"jwtkit:p:{session.sid}", "jwtkit:q:fam"):
        assert 590_000 < ttls[key] <= 600_000, key  # the session's, pointers included
    assert ttls[f"jwtkit:{{{b}}}:e:bob"] == -1  # an epoch never expires: the counter must not restart at 0
    for key in ("jwtkit:schema", "jwtkit:shards", "jwtkit:generation", f"jwtkit:{{{a}}}:revocations"):
        assert ttls[key] == -1, key  # the streams are trimmed by age instead
    assert 0 < ttls["jwtkit:j:jti"] <= 30_000
    assert 0 < ttls["jwtkit:t:ip"] <= 90_000


async def test_list_prunes_dead_members(redis_url: str, raw_client: aioredis.Redis, clock: FakeClock) -> None:
    async with open_store(redis_url, clock=clock) as store:
        sessions = [new_session(clock) for _ in range(3)]
        for session in sessions:
            await store.create_session(session)
        await store.revoke(sessions[0].sid)
        await raw_client.delete(key(store, "s", sessions[1].sid))  # as if its TTL had run out
        assert [s.sid for s in await store.list_sessions("alice")] == [sessions[2].sid]
        assert await raw_client.zrange(key(store, "u", "alice"), 0, -1) == [sessions[2].sid]


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
        epoch_key = key(store, "e", "alice")
        if corrupt == "hash":
            await raw_client.hset(epoch_key, "epoch", "1")  # WRONGTYPE for GET and INCR
        else:
            await raw_client.set(epoch_key, "one" if corrupt == "text" else str(2**53))
        assert await store.check(session.sid, "alice") is False
        assert await store.rotate_refresh(session.sid, session.refresh_jti, "x") is Rotation.INACTIVE
        assert await store.list_sessions("alice") == []
        assert await raw_client.zrange(key(store, "u", "alice"), 0, -1) == [session.sid]  # not pruned: the
        with pytest.raises(StoreUnavailable, match="epoch record"):  # repair must still see its epoch
            await store.get_epoch("alice")
        assert await store.revoke_all("alice") == 5  # an admin's logout-all repairs the record
        assert await raw_client.get(epoch_key) == "5"
        assert await raw_client.pttl(epoch_key) == -1
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
        assert await raw_client.zrange(key(store, "u", "alice"), 0, -1) == []
        assert await raw_client.hget(key(store, "s", old.sid), "revoked") == "1"
        await raw_client.set(key(store, "e", "alice"), "garbage")
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
    keys = {k async for k in raw_client.scan_iter("*")}
    assert not {k for k in keys if k.startswith((prefix + "c:", prefix + "s:", prefix + "u:", prefix + "f:"))}
    assert "aXbY:c:alice" in keys
    assert await raw_client.get(prefix + "schema") == "3"
    revoked = {sid for sid, (user_id, _, _) in OLD_SESSIONS.items()
               if await raw_client.hget(f"{prefix}{{{shard_of(user_id, 16)}}}:s:{sid}", "revoked") == "1"}
    assert revoked == DEAD_BY_THE_OLD_RULE  # marked in the data, not only answered
    async with open_store(redis_url, clock=clock, prefix=prefix) as store:  # from here on the epochs decide
        assert await store.revoke_all("alice") == 1
        assert await store.check("alice-after", "alice") is False
        assert await store.check("bob-1", "bob") is True


async def test_a_newer_layout_is_refused(redis_url: str, raw_client: aioredis.Redis) -> None:
    await raw_client.set("jwtkit:schema", "4")
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
    ("redis://127.0.0.1:1/0", {"prefix": "app{1}:"}),  # the store's keys carry their own hash tags
    ("redis://127.0.0.1:1/0?prefix=a}", {}),
    ("redis://127.0.0.1:1/0?shards=0", {}),
    ("redis://127.0.0.1:1/0", {"shards": 1025}),
    ("redis://127.0.0.1:1/0", {"shards": "sixteen"}),
    ("redis://127.0.0.1:1/0?feed_retention=-1", {}),
    ("redis+cluster://127.0.0.1:1,127.0.0.1/0", {}),
    ("redis+cluster://127.0.0.1:1/3", {}),
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


# migration from layout 2 (no shard tags), with keys written by the layout-2 scripts themselves -------------

LAYOUT2_RULES = """
local EPOCH_MAX = 9007199254740991
local function epoch_of(text)
  if type(text) ~= 'string' or #text > 16 or not string.match(text, '^%d+$') then return nil end
  local n = tonumber(text)
  if n > EPOCH_MAX then return nil end
  return n
end
-- the user's epoch from the reply of GET on its key: 0 when there is none, nil when unreadable
local function user_epoch(reply)
  if reply == false then return 0 end
  return epoch_of(reply)
end
-- an unreadable user epoch is passed as math.huge: no session is active then
local function active(revoked, expires, owner, session_epoch, user_id, current, now)
  return (not revoked) and now < expires and (user_id == nil or owner == user_id) and session_epoch >= current
end
local function rotation_outcome(is_active, current_jti, presented_jti, concurrent)
  if not is_active then return 'inactive' end
  if current_jti == presented_jti then return 'rotated' end
  for _, successor in ipairs(concurrent) do
    if current_jti == successor then return 'concurrent' end
  end
  return 'reused'
end
"""

# Shared by the scripts: ARGV[1] is the key prefix, ARGV[2] the caller's clock. load(sid) answers the state
# of a session (missing, corrupt, inactive, active), its fields {user_id, created, expires, revoked, family,
# refresh_jti, epoch}, and whether its user's epoch record is unreadable (then the session is inactive, but
# only until revoke_all repairs the record). A session hash without an ``epoch`` field (written by jwtkit
# before epochs) has epoch 0.
LAYOUT2_PRELUDE = LAYOUT2_RULES + """
local P = ARGV[1]
local NOW = tonumber(ARGV[2])
local function load(sid)
  local f = redis.pcall('HMGET', P .. 's:' .. sid, 'user_id', 'created', 'expires', 'revoked', 'family',
                        'refresh_jti', 'epoch')
  if f.err then return 'corrupt', nil, false end
  if not f[1] then return 'missing', nil, false end
  local created, expires = tonumber(f[2]), tonumber(f[3])
  local session_epoch = 0
  if f[7] then session_epoch = epoch_of(f[7]) end
  if not created or not expires or not f[5] or not f[6] or (f[4] ~= '0' and f[4] ~= '1')
      or not session_epoch then
    return 'corrupt', f, false
  end
  local current = user_epoch(redis.pcall('GET', P .. 'e:' .. f[1]))
  if active(f[4] == '1', expires, f[1], session_epoch, nil, current or math.huge, NOW) then
    return 'active', f, false
  end
  return 'inactive', f, current == nil
end
local function extend(key, ttl)
  local left = redis.call('PTTL', key)
  if left < ttl then redis.call('PEXPIRE', key, ttl) end
end
local function revoke_family(family)
  local fkey = P .. 'f:' .. family
  local members = redis.pcall('SMEMBERS', fkey)
  if members.err then return 0 end
  local n = 0
  for _, sid in ipairs(members) do
    local state = load(sid)
    if state == 'active' or state == 'inactive' then
      redis.call('HSET', P .. 's:' .. sid, 'revoked', '1')
    elseif state == 'missing' then
      redis.call('SREM', fkey, sid)
    end
    if state == 'active' then n = n + 1 end
  end
  return n
end
"""

# The hot path, one round trip: KEYS = session, claimed user's epoch; ARGV = user_id, now.
# 1 = active, 0 = not, -1 = corrupt session record, -2 = unreadable epoch record (the caller logs both and
# answers False).
LAYOUT2_CHECK = LAYOUT2_RULES + """
local f = redis.pcall('HMGET', KEYS[1], 'user_id', 'revoked', 'expires', 'created', 'epoch')
if f.err then return -1 end
if not f[1] or f[1] ~= ARGV[1] then return 0 end
if f[2] ~= '0' then
  if f[2] == '1' then return 0 end
  return -1
end
local expires, created = tonumber(f[3]), tonumber(f[4])
local session_epoch = 0
if f[5] then session_epoch = epoch_of(f[5]) end
if not expires or not created or not session_epoch then return -1 end
local now = tonumber(ARGV[2])
if expires <= now then return 0 end
local current = user_epoch(redis.pcall('GET', KEYS[2]))
if not current then return -2 end
if active(false, expires, f[1], session_epoch, ARGV[1], current, now) then return 1 end
return 0
"""

# ARGV[3..]: sid, user_id, created, last_used, expires, family, refresh_jti, user_agent, ip, revoked, ttl_ms,
# epoch
LAYOUT2_CREATE = LAYOUT2_PRELUDE + """
local sid, user_id, family, ttl = ARGV[3], ARGV[4], ARGV[8], tonumber(ARGV[13])
local skey = P .. 's:' .. sid
redis.call('DEL', skey)
redis.call('HSET', skey, 'user_id', user_id, 'created', ARGV[5], 'last_used', ARGV[6], 'expires', ARGV[7],
           'family', family, 'refresh_jti', ARGV[9], 'user_agent', ARGV[10], 'ip', ARGV[11],
           'revoked', ARGV[12], 'epoch', ARGV[14])
redis.call('PEXPIRE', skey, ttl)
local ukey = P .. 'u:' .. user_id
redis.call('ZADD', ukey, ARGV[5], sid)
extend(ukey, ttl)
local fkey = P .. 'f:' .. family
redis.call('SADD', fkey, sid)
extend(fkey, ttl)
return 1
"""

# ARGV[3] = sid. Returns {fields...} flat, then the raw epoch of its user (false = none; 'corrupt').
LAYOUT2_GET = """
local P = ARGV[1]
local h = redis.pcall('HGETALL', P .. 's:' .. ARGV[3])
if h.err then return {'corrupt'} end
if #h == 0 then return {} end
local user_id
for i = 1, #h, 2 do if h[i] == 'user_id' then user_id = h[i + 1] end end
local epoch = false
if user_id then
  epoch = redis.pcall('GET', P .. 'e:' .. user_id)
  if type(epoch) == 'table' then epoch = 'corrupt' end
end
return {h, epoch}
"""

# ARGV[3] = sid, ARGV[4] = when
LAYOUT2_TOUCH = """
local key = ARGV[1] .. 's:' .. ARGV[3]
local f = redis.pcall('HMGET', key, 'revoked', 'last_used')
if f.err or f[1] ~= '0' then return 0 end
local last = tonumber(f[2])
if last and last >= tonumber(ARGV[4]) then return 0 end
redis.call('HSET', key, 'last_used', ARGV[4])
return 1
"""

# ARGV[3] = sid. 1 if it was active.
LAYOUT2_REVOKE = LAYOUT2_PRELUDE + """
local state = load(ARGV[3])
if state == 'active' or state == 'inactive' then redis.call('HSET', P .. 's:' .. ARGV[3], 'revoked', '1') end
if state == 'active' then return 1 end
return 0
"""

# ARGV[3] = family
LAYOUT2_REVOKE_FAMILY = LAYOUT2_PRELUDE + "return revoke_family(ARGV[3])"

# ARGV[3] = user_id. The script is the atomic increment (not INCR, which refuses texts epoch_of accepts, such
# as leading zeros); SET leaves the key without a TTL (it never expires). An unreadable record is replaced by
# one more than the largest epoch of the user's stored sessions (every session that can be active is in the
# user's index: listing prunes only sessions that are gone or revoked for good).
LAYOUT2_REVOKE_ALL = LAYOUT2_PRELUDE + """
local user_id = ARGV[3]
local ekey = P .. 'e:' .. user_id
local current = user_epoch(redis.pcall('GET', ekey))
if current then
  redis.call('SET', ekey, string.format('%d', current + 1))
  return current + 1
end
local sids = redis.pcall('ZRANGE', P .. 'u:' .. user_id, 0, -1)
if sids.err then return redis.error_reply('ERR unreadable epoch record and session index of one user') end
local top = 0
for _, sid in ipairs(sids) do
  local f = redis.pcall('HMGET', P .. 's:' .. sid, 'user_id', 'epoch')
  if not f.err and f[1] == user_id then
    local n = 0
    if f[2] then n = epoch_of(f[2]) end
    if n and n > top then top = n end
  end
end
redis.call('SET', ekey, string.format('%d', top + 1))
return top + 1
"""

# ARGV[3] = user_id. Returns {status, sid, {fields...}, ...}: status 'ok' or 'unreadable-epoch', then the
# active sessions, newest first. Prunes the index of sessions that are gone, and of those dead for good
# (revoked, expired, or of an older epoch: those are marked revoked first, so that a repair of the epoch
# record cannot bring them back).
LAYOUT2_LIST = LAYOUT2_PRELUDE + """
local user_id = ARGV[3]
local ukey = P .. 'u:' .. user_id
local sids = redis.pcall('ZREVRANGE', ukey, 0, -1)
if sids.err then return {'ok'} end
local out = {'ok'}
for _, sid in ipairs(sids) do
  local state, f, unreadable = load(sid)
  if unreadable then out[1] = 'unreadable-epoch' end
  if state == 'active' and f[1] == user_id then
    table.insert(out, sid)
    table.insert(out, redis.call('HGETALL', P .. 's:' .. sid))
  elseif state == 'missing' or (state == 'inactive' and f[1] ~= user_id) then
    redis.call('ZREM', ukey, sid)
  elseif state == 'inactive' and not unreadable then
    if f[4] == '0' then redis.call('HSET', P .. 's:' .. sid, 'revoked', '1') end
    redis.call('ZREM', ukey, sid)
  end
end
return out
"""

# ARGV[3] = sid, ARGV[4] = presented jti, ARGV[5] = new jti, ARGV[6..] = the successors that mean CONCURRENT
LAYOUT2_ROTATE = LAYOUT2_PRELUDE + """
local state, f = load(ARGV[3])
local outcome = rotation_outcome(state == 'active', f and f[6], ARGV[4], {unpack(ARGV, 6)})
local skey = P .. 's:' .. ARGV[3]
if outcome == 'rotated' then
  redis.call('HSET', skey, 'refresh_jti', ARGV[5], 'last_used', ARGV[2])
elseif outcome == 'reused' then
  redis.call('HSET', skey, 'revoked', '1')  -- RFC 9700 §4.14: reuse of an old refresh token ends the family
  revoke_family(f[5])
end
return outcome
"""


class Layout2:
    """jwtkit's store before shard tags, as far as writing goes: its own scripts (above, verbatim from the
    commit before layout 3) run through a raw client."""

    def __init__(self, client: aioredis.Redis, prefix: str, clock: FakeClock) -> None:
        self.client, self.prefix, self.clock = client, prefix, clock
        self.scripts = {name: client.register_script(source) for name, source in (
            ("check", LAYOUT2_CHECK), ("create", LAYOUT2_CREATE), ("revoke", LAYOUT2_REVOKE),
            ("revoke_family", LAYOUT2_REVOKE_FAMILY), ("revoke_all", LAYOUT2_REVOKE_ALL),
            ("rotate", LAYOUT2_ROTATE), ("list", LAYOUT2_LIST))}

    async def run(self, name: str, *args: str | int) -> Any:
        return await self.scripts[name](args=[self.prefix, repr(float(self.clock())), *args])

    async def create(self, session: Session) -> None:
        ttl = math.ceil((session.expires - self.clock()) * 1000)
        await self.run("create", session.sid, session.user_id, repr(session.created), repr(session.last_used),
                       repr(session.expires), session.family, session.refresh_jti, session.user_agent,
                       session.ip, "1" if session.revoked else "0", ttl, str(session.epoch))

    async def check(self, sid: str, user_id: str) -> bool:
        answer = await self.scripts["check"](keys=[f"{self.prefix}s:{sid}", f"{self.prefix}e:{user_id}"],
                                             args=[user_id, repr(float(self.clock()))])
        return bool(answer == 1)


def users_in_two_shards() -> tuple[str, str]:
    """Two user ids whose records land in different shards (of 16)."""
    first = "dave"
    second = next(f"erin-{i}" for i in range(100) if shard_of(f"erin-{i}", 16) != shard_of(first, 16))
    return first, second


async def write_layout2(old: Layout2, clock: FakeClock) -> dict[str, Session]:
    """Sessions of every kind, written and revoked by the layout-2 scripts; returns them by name."""
    dave, erin = users_in_two_shards()
    made: dict[str, Session] = {}

    async def create(name: str, user_id: str, **kwargs: Any) -> Session:
        session = new_session(clock, user_id, created=clock() + len(made), **kwargs)
        await old.create(session)
        made[name] = session
        return session

    await create("a-live", "alice")
    await old.run("revoke", (await create("a-revoked", "alice")).sid)
    rotated = await create("a-rotated", "alice", family="fam-a")
    await create("a-sibling", "alice", family="fam-a")
    assert await old.run("rotate", rotated.sid, rotated.refresh_jti, "next") == "rotated"
    assert await old.run("rotate", rotated.sid, rotated.refresh_jti, "again") == "reused"  # the family ends
    await create("a-short", "alice", ttl=60)
    await create("b-old-epoch", "bob")
    assert [await old.run("revoke_all", "bob") for _ in range(2)] == [1, 2]
    await create("b-live", "bob", epoch=2)
    await create("c-unreadable", "carol")
    await old.client.set(f"{old.prefix}e:carol", "garbage")
    await create("d-shared", dave, family="fam-shared")
    await create("e-shared", erin, family="fam-shared")
    assert await old.run("revoke_all", "frank") == 1
    await old.client.set(f"{old.prefix}j:used-jti", repr(T0 + 600), px=600_000)
    await old.client.hset(f"{old.prefix}t:ip", mapping={"failures": "2", "last_failure": repr(T0),
                                                          "expires": repr(T0 + 600)})
    await old.client.pexpire(f"{old.prefix}t:ip", 600_000)
    await old.client.hset(f"{old.prefix}keyring", mapping={"version": "3", "doc": "sealed"})
    await old.client.set(f"{old.prefix}schema", "2")
    return made


# what the migration must publish: every session that is not active (and not expired), and carol, whose
# epoch record is unreadable
PUBLISHED = {"a-revoked", "a-rotated", "a-sibling", "b-old-epoch", "c-unreadable"}


@pytest.mark.parametrize(("prefix", "openers"), [("jwtkit:", 1), ("a*[b]?:", 1), ("jwtkit:", 3)])
async def test_layout_2_is_migrated_to_shard_tags_on_open(redis_url: str, raw_client: aioredis.Redis,
                                                          clock: FakeClock, prefix: str,
                                                          openers: int) -> None:
    old = Layout2(raw_client, prefix, clock)
    made = await write_layout2(old, clock)
    before = {name: (await old.check(s.sid, s.user_id), await raw_client.pttl(f"{prefix}s:{s.sid}"))
              for name, s in made.items()}
    assert [name for name, (alive, _) in before.items() if alive] == [
        "a-live", "a-short", "b-live", "d-shared", "e-shared"]
    await raw_client.hset("other:s:x", "user_id", "alice")  # another prefix's key: untouched

    stores = [open_store(redis_url, clock=clock, prefix=prefix) for _ in range(openers)]
    await asyncio.gather(*(store.open() for store in stores))  # several nodes at once: one result
    store = stores[0]
    try:
        for name, session in made.items():
            alive, ttl = before[name]
            assert await store.check(session.sid, session.user_id) is alive, name
            got = await store.get_session(session.sid)
            assert got is not None
            same = {"revoked": False, "refresh_jti": "", "last_used": 0.0}  # what the old scripts changed
            assert dataclasses.replace(got, **same) == dataclasses.replace(session, **same), name
            assert got.revoked is not alive
            new_ttl = await raw_client.pttl(key(store, "s", session.sid))
            assert ttl - 5000 < new_ttl <= ttl, name  # the remaining TTL, not a new one
            pointer = await raw_client.get(f"{prefix}p:{session.sid}")
            assert pointer == str(shard_of(session.user_id, 16))
            assert ttl - 5000 < await raw_client.pttl(f"{prefix}p:{session.sid}") <= ttl
        listed = [s.sid for s in await store.list_sessions("alice")]
        assert listed == [made["a-short"].sid, made["a-live"].sid]
        assert [await store.get_epoch(user) for user in ("alice", "bob", "frank")] == [0, 2, 1]
        with pytest.raises(StoreUnavailable):
            await store.get_epoch("carol")  # still unreadable: fail closed, until revoke_all repairs it
        entries, _ = await store.feed_load()  # type: ignore[attr-defined]
        sids = {s.sid: name for name, s in made.items()}
        published = sorted(sids[e.subject] for e in entries if e.kind is RevocationKind.SESSION)
        assert published == sorted(PUBLISHED)
        assert [e.subject for e in entries if e.kind is RevocationKind.USER] == ["carol"]
        assert await store.consume("used-jti", clock() + 60) is False
        assert await store.throttle_get("ip") == ThrottleState(2, T0)
        assert await store.ring_read() == (3, "sealed")  # type: ignore[attr-defined]
        keys = {k async for k in raw_client.scan_iter(_glob(prefix) + "*")}
        assert not {k for k in keys if k[len(prefix):][:2] in ("s:", "u:", "f:", "e:", "c:")}
        assert await raw_client.get(prefix + "schema") == "3"
        assert await raw_client.get(prefix + "shards") == "16"
        # a family of two users in two shards: split, with a pointer to both; reuse detection ends it all
        dave, erin = made["d-shared"], made["e-shared"]
        assert sorted(await raw_client.smembers(f"{prefix}q:fam-shared")) == sorted(
            [str(shard_of(dave.user_id, 16)), str(shard_of(erin.user_id, 16))])
        assert await store.rotate_refresh(dave.sid, "an-old-jti", "x") is Rotation.REUSED
        assert await store.check(erin.sid, erin.user_id) is False
        assert await store.revoke_all("bob") == 3  # from the migrated epoch
        assert await raw_client.hgetall("other:s:x") == {"user_id": "alice"}
    finally:
        for opened in stores:
            await opened.close()
    async with open_store(redis_url, clock=clock, prefix=prefix) as again:  # the next open only reads
        entries, _ = await again.feed_load()  # type: ignore[attr-defined]
        assert len([e for e in entries if e.kind is RevocationKind.SESSION]) == len(PUBLISHED) + 2


def _glob(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


async def test_layout_2_migration_never_lowers_an_epoch(redis_url: str, raw_client: aioredis.Redis,
                                                        clock: FakeClock) -> None:
    """Epochs go first, and one already in its new place (another node migrating at the same moment) keeps
    the larger value, or the unreadable one."""
    def new_key(user_id: str) -> str:
        return f"jwtkit:{{{shard_of(user_id, 16)}}}:e:{user_id}"

    await raw_client.set("jwtkit:schema", "2")
    for user_id, old, new in [("bob", "2", "5"), ("alice", "7", "3"), ("carol", "x", "4"),
                              ("erin", "4", "x"), ("frank", "9", None)]:
        await raw_client.set(f"jwtkit:e:{user_id}", old)
        if new is not None:
            await raw_client.set(new_key(user_id), new)
    async with open_store(redis_url, clock=clock) as store:
        assert [await store.get_epoch(user) for user in ("bob", "alice", "frank")] == [5, 7, 9]
        for user_id in ("carol", "erin"):
            with pytest.raises(StoreUnavailable):
                await store.get_epoch(user_id)
            assert await store.revoke_all(user_id) == 1  # repaired above every stored session (none)
    for user_id in ("bob", "alice", "carol", "erin", "frank"):
        assert await raw_client.exists(f"jwtkit:e:{user_id}") == 0
        assert await raw_client.pttl(new_key(user_id)) == -1


async def test_layout_2_migration_interrupted_goes_on_at_the_next_open(
        redis_url: str, raw_client: aioredis.Redis, clock: FakeClock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    old = Layout2(raw_client, "jwtkit:", clock)
    made = await write_layout2(old, clock)
    alive = {name: await old.check(s.sid, s.user_id) for name, s in made.items()}
    real = RedisStore._shard_script_on
    calls = 0

    async def crash_on_the_fourth_session(self: RedisStore, client: Any, name: str, *args: str) -> int:
        nonlocal calls
        if name == "migrate_session":
            calls += 1
            if calls == 4:
                raise StoreUnavailable("the server went away mid-migration")
        return await real(self, client, name, *args)

    monkeypatch.setattr(RedisStore, "_shard_script_on", crash_on_the_fourth_session)
    with pytest.raises(StoreUnavailable):
        await open_store(redis_url, clock=clock).open()
    assert await raw_client.get("jwtkit:schema") == "2"  # not done
    monkeypatch.setattr(RedisStore, "_shard_script_on", real)
    async with open_store(redis_url, clock=clock) as store:
        for name, session in made.items():
            assert await store.check(session.sid, session.user_id) is alive[name], name
        assert await store.get_epoch("bob") == 2
    assert await raw_client.get("jwtkit:schema") == "3"


async def test_shard_count_is_the_stores_own(redis_url: str, clock: FakeClock) -> None:
    async with open_store(redis_url, clock=clock, shards=4) as store:
        session = new_session(clock, "alice")
        await store.create_session(session)
    async with open_store(redis_url, clock=clock) as same:  # no option: the store's count
        assert same._shards == 4  # type: ignore[attr-defined]
        assert await same.check(session.sid, "alice") is True
    with pytest.raises(StoreConfigError, match="shards=4"):
        await open_store(redis_url, clock=clock, shards=16).open()


async def test_missing_pointers_are_not_a_lost_revocation(redis_url: str, raw_client: aioredis.Redis,
                                                          clock: FakeClock) -> None:
    """A ``volatile-*`` eviction policy may drop a sid's or a family's pointer before the session: the calls
    that need the shard then look in every shard, so a logout still ends the session."""
    async with open_store(redis_url, clock=clock) as writer:
        session, sibling = new_session(clock, family="fam"), new_session(clock, family="fam")
        other = new_session(clock, family="fam-2")
        for created in (session, sibling, other):
            await writer.create_session(created)
    await raw_client.delete(f"jwtkit:p:{session.sid}", f"jwtkit:p:{other.sid}", "jwtkit:q:fam")
    await raw_client.set(f"jwtkit:p:{sibling.sid}", "not a shard")
    async with open_store(redis_url, clock=clock) as store:  # a node that never saw them (nothing cached)
        got = await store.get_session(session.sid)
        assert got is not None
        assert got.user_id == "alice"
        assert await store.revoke(session.sid) is True
        assert await store.check(session.sid, "alice") is False
        assert await store.revoke_family("fam") == 1  # the sibling, through its family set in every shard
        assert await store.check(sibling.sid, "alice") is False
        assert await store.rotate_refresh(other.sid, "an-old-jti", "x") is Rotation.REUSED
        assert await store.revoke(secrets.token_urlsafe(16)) is False
        assert await store.get_session(secrets.token_urlsafe(16)) is None


async def test_calls_with_a_sid_cost_one_round_trip_once_its_shard_is_known(
        redis_url: str, raw_client: aioredis.Redis, clock: FakeClock) -> None:
    async with open_store(redis_url, clock=clock) as store, open_store(redis_url, clock=clock) as other:
        session = new_session(clock)
        await store.create_session(session)
        await store.touch(session.sid, clock())  # the server loads the script
        await raw_client.config_resetstat()
        await other.touch(session.sid, clock() + 1)  # another node: one GET of the pointer first
        await other.touch(session.sid, clock() + 2)  # then cached
        await store.touch(session.sid, clock() + 3)  # the creating node knew it already
        stats = await raw_client.info("commandstats")
    assert stats["cmdstat_get"]["calls"] == 1
    assert stats["cmdstat_evalsha"]["calls"] == 3
