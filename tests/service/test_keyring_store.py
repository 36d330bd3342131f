"""One key ring for every node: the signing keys in a shared store (Redis), sealed with the key-encryption
key, followed live by every service, rotated from anywhere with one compare-and-set."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from jwtkit.service import (
    AuthService,
    MemoryMailer,
    ServiceConfigError,
    Settings,
    SQLiteUserRepository,
    StoreKeyRing,
    build_service,
)
from jwtkit.service._build import key_source, prepare_keys
from jwtkit.service._keyring import CHECK_EVERY
from jwtkit.service._keyring_store import list_stored_keys, rotate_stored_ring
from jwtkit.store import KeyRingRecords, open_store

from .conftest import PASSWORD, CountingHasher, FakeClock

KEK = bytes(range(32))
OTHER_KEK = bytes(range(1, 33))


def run_jwtkit(cwd: Path, *args: str, env: dict[str, str] | None = None,
               timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``python -m jwtkit ARGS`` in ``cwd``, with no JWTKIT_* or JWT_SECRET of the parent's."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("JWTKIT_", "JWT_SECRET"))}
    return subprocess.run([sys.executable, "-m", "jwtkit", *args], input="", capture_output=True, text=True,
                          cwd=cwd, env={**clean, **(env or {})}, timeout=timeout, check=False)


def _node(url: str, tmp_path: Path, clock: FakeClock, kek: bytes = KEK, **options: Any) -> AuthService:
    store = open_store(url, clock=clock)
    assert isinstance(store, KeyRingRecords)
    return AuthService(store=store, users=SQLiteUserRepository(tmp_path / "users.db"),
                       keys=StoreKeyRing(store, kek, clock=clock, **options), mailer=MemoryMailer(),
                       clock=clock, hasher=CountingHasher())


@pytest.fixture(params=[pytest.param("redis", marks=pytest.mark.redis),
                        pytest.param("postgresql", marks=pytest.mark.postgresql)])
def url(request: pytest.FixtureRequest) -> str:
    """A fresh shared store: Redis, or PostgreSQL."""
    return str(request.getfixturevalue({"redis": "redis_url", "postgresql": "postgres_url"}[request.param]))


@pytest.fixture
async def nodes(url: str, tmp_path: Path, clock: FakeClock) -> AsyncIterator[tuple[AuthService, ...]]:
    pair = (_node(url, tmp_path, clock), _node(url, tmp_path, clock))
    for node in pair:
        await node.store.open()
    await asyncio.gather(*(_ring(node).open() for node in pair))  # two nodes load the ring at the same moment
    for node in pair:
        await node.open()
    try:
        yield pair
    finally:
        for node in pair:
            await node.close()


def _ring(node: AuthService) -> StoreKeyRing:
    assert isinstance(node.keys, StoreKeyRing)
    return node.keys


async def _raw(url: str) -> dict[str, str]:
    """The stored ring as the database holds it, read around jwtkit."""
    if url.startswith("postgres"):
        import asyncpg

        connection = await asyncpg.connect(url)
        try:
            row = await connection.fetchrow("SELECT version, doc FROM jwtkit_keyring WHERE name = 'ring'")
        finally:
            await connection.close()
        return {"version": str(row[0]), "doc": row[1]}
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        return await client.hgetall("jwtkit:keyring")  # type: ignore[no-any-return,misc]
    finally:
        await client.aclose()


async def _set_doc(url: str, **fields: str) -> None:
    """Overwrite the stored ring's fields around jwtkit (a tampering database user)."""
    if url.startswith("postgres"):
        import asyncpg

        connection = await asyncpg.connect(url)
        try:
            if "version" in fields:
                await connection.execute("UPDATE jwtkit_keyring SET version = $1 WHERE name = 'ring'",
                                         int(fields["version"]))
            if "doc" in fields:
                await connection.execute("UPDATE jwtkit_keyring SET doc = $1 WHERE name = 'ring'",
                                         fields["doc"])
        finally:
            await connection.close()
        return
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        await client.hset("jwtkit:keyring", mapping=fields)  # type: ignore[misc]
    finally:
        await client.aclose()


async def test_two_nodes_started_together_share_one_ring(nodes: tuple[AuthService, AuthService]) -> None:
    a, b = nodes
    assert _ring(a).version == _ring(b).version == 1  # created once
    assert a.keys.active.kid == b.keys.active.kid
    await a.register("alice", PASSWORD)
    pair = await a.login("alice", PASSWORD)
    principal = await b.authenticate(pair.access_token)  # signed on a, verified on b
    assert principal.user_id == pair.session.user_id
    again = await b.refresh(pair.refresh_token)  # a's refresh token too
    await a.authenticate(again.access_token)


async def test_a_rotation_reaches_every_node_within_the_bound(
    nodes: tuple[AuthService, AuthService], clock: FakeClock, url: str,
) -> None:
    a, b = nodes
    old = a.keys.active.kid
    async with open_store(url, clock=clock) as third:  # a third process, as `jwtkit keys rotate` is
        assert isinstance(third, KeyRingRecords)
        ring = await rotate_stored_ring(third, KEK, activate_in=0, now=clock())
    new = ring.active.kid
    assert new != old
    clock.advance(CHECK_EVERY - 0.01)
    for node in (a, b):
        _ring(node).current()  # not due yet: no look
        await _ring(node).settled()
        assert node.keys.active.kid == old
    clock.advance(0.01)
    for node in (a, b):
        _ring(node).current()  # due: one look in the background
        await _ring(node).settled()
        assert node.keys.active.kid == new
        assert _ring(node).version == 2
    await a.register("bob", PASSWORD)
    pair = await a.login("bob", PASSWORD)
    await b.authenticate(pair.access_token)


async def test_a_token_of_a_kid_not_loaded_yet_refreshes_at_once(
    nodes: tuple[AuthService, AuthService], clock: FakeClock,
) -> None:
    a, b = nodes
    await a.register("carol", PASSWORD)
    ring = await rotate_stored_ring(a.store, KEK, activate_in=0, now=clock())  # type: ignore[arg-type]
    assert await _ring(a).refresh(ring.active.kid)  # a looks at once (a kid it lacks)
    assert not await _ring(a).refresh(ring.active.kid)  # and not again within the cooldown
    pair = await a.login("carol", PASSWORD)
    assert b.keys.active.kid != ring.active.kid  # b has not looked yet
    await b.authenticate(pair.access_token)  # the access policy's refresh(kid) gets it
    clock.advance(1)
    ring = await rotate_stored_ring(a.store, KEK, activate_in=0, now=clock())  # type: ignore[arg-type]
    assert await _ring(a).refresh(ring.active.kid)
    pair = await a.login("carol", PASSWORD)
    assert b.keys.active.kid != ring.active.kid
    await b.refresh(pair.refresh_token)  # the service's own tokens get the same second try
    assert b.keys.active.kid == ring.active.kid


async def test_two_concurrent_rotations_leave_exactly_one_active_key(
    nodes: tuple[AuthService, AuthService], clock: FakeClock, url: str,
) -> None:
    stores = [open_store(url, clock=clock) for _ in range(2)]
    for store in stores:
        await store.open()
    try:
        rings = await asyncio.gather(*(rotate_stored_ring(store, KEK, activate_in=0, now=clock())  # type: ignore[arg-type]
                                       for store in stores))
        listed = await list_stored_keys(stores[0], KEK, now=clock())  # type: ignore[arg-type]
    finally:
        for store in stores:
            await store.close()
    assert len({ring.active.kid for ring in rings}) == 2  # both rotations took effect, in turn
    assert [info.state for info in listed].count("active") == 1
    assert len(listed) == 3 and (await _raw(url))["version"] == "3"
    for node in nodes:
        await _ring(node).look()
        assert node.keys.active.kid == next(info.kid for info in listed if info.state == "active")


async def test_private_keys_at_rest_are_sealed(nodes: tuple[AuthService, AuthService],
                                               url: str) -> None:
    raw = await _raw(url)
    active = nodes[0].keys.active
    secret = active.to_jwk(private=True)["k"]
    assert secret not in raw["doc"]
    record = json.loads(raw["doc"])["keys"][0]
    assert set(record) == {"kid", "alg", "nonce", "sealed"} and record["kid"] == active.kid
    assert len(record["nonce"]) == 16  # 96 bits, base64url


async def test_nonces_are_fresh_for_every_write(nodes: tuple[AuthService, AuthService], clock: FakeClock,
                                                url: str) -> None:
    first = json.loads((await _raw(url))["doc"])["keys"]
    await rotate_stored_ring(nodes[0].store, KEK, now=clock())  # type: ignore[arg-type]
    second = json.loads((await _raw(url))["doc"])["keys"]
    old = next(record for record in second if record["kid"] == first[0]["kid"])
    assert old["nonce"] != first[0]["nonce"] and old["sealed"] != first[0]["sealed"]


async def test_a_wrong_key_encryption_key_is_a_start_up_error(
    nodes: tuple[AuthService, AuthService], url: str, tmp_path: Path, clock: FakeClock,
) -> None:
    intruder = _node(url, tmp_path, clock, kek=OTHER_KEK)
    with pytest.raises(ServiceConfigError, match="the key-encryption key does not decrypt the key ring"):
        await intruder.open()
    settings = Settings(store_url=url, users_path=str(tmp_path / "u.db"), key_encryption_key=OTHER_KEK)
    with pytest.raises(ServiceConfigError, match="the key-encryption key does not decrypt the key ring"):
        await asyncio.to_thread(prepare_keys, settings)


@pytest.mark.redis
def test_without_the_key_encryption_key_a_node_refuses_in_one_line(url: str, tmp_path: Path) -> None:
    settings = Settings(store_url=url, users_path=str(tmp_path / "u.db"))
    with pytest.raises(ServiceConfigError) as info:
        build_service(settings)
    message = str(info.value)
    assert "\n" not in message and "JWTKIT_KEY_ENCRYPTION_KEY" in message and "JWTKIT_KEYS=file" in message
    with pytest.raises(ServiceConfigError):
        prepare_keys(settings)


@pytest.mark.redis
def test_which_ring_a_node_uses(url: str, tmp_path: Path) -> None:
    shared = Settings(store_url=url, key_encryption_key=KEK)
    assert key_source(shared) == "store"
    assert key_source(Settings(store_url=url, keys="file")) == "file"  # a key file per node
    assert key_source(Settings(store_url=url, secret=b"s" * 32)) == "secret"
    assert key_source(Settings(store_url="memory://")) == "file"
    assert key_source(Settings(store_url=f"sqlite:///{tmp_path}/x.db", keys="auto")) == "file"
    with pytest.raises(ServiceConfigError, match="JWTKIT_KEYS=store needs a shared store"):
        key_source(Settings(store_url="memory://", keys="store", key_encryption_key=KEK))


async def test_a_tampered_record_is_refused(nodes: tuple[AuthService, AuthService], url: str,
                                            tmp_path: Path, clock: FakeClock) -> None:
    a, _ = nodes
    before = a.keys.active.kid
    raw = await _raw(url)
    document = json.loads(raw["doc"])
    sealed = document["keys"][0]["sealed"]
    document["keys"][0]["sealed"] = ("A" if sealed[0] != "A" else "B") + sealed[1:]
    await _set_doc(url, version="7", doc=json.dumps(document))
    await _ring(a).look()  # a running node keeps the ring it had, and says why in its log
    assert a.keys.active.kid == before and _ring(a).version == 1
    with pytest.raises(ServiceConfigError, match="does not decrypt the key ring"):
        await _node(url, tmp_path, clock).open()  # a starting node refuses it


async def test_a_record_replayed_into_another_version_is_refused(
    nodes: tuple[AuthService, AuthService], url: str, tmp_path: Path, clock: FakeClock,
) -> None:
    raw = await _raw(url)
    await _set_doc(url, version="2", doc=raw["doc"])  # the version is associated data
    with pytest.raises(ServiceConfigError, match="does not decrypt the key ring"):
        await _node(url, tmp_path, clock).open()


async def test_a_record_moved_to_another_kid_is_refused(
    nodes: tuple[AuthService, AuthService], url: str, tmp_path: Path, clock: FakeClock,
) -> None:
    await rotate_stored_ring(nodes[0].store, KEK, now=clock())  # type: ignore[arg-type]
    raw = await _raw(url)
    document = json.loads(raw["doc"])
    first, second = document["keys"]
    first["sealed"], second["sealed"] = second["sealed"], first["sealed"]
    first["nonce"], second["nonce"] = second["nonce"], first["nonce"]
    await _set_doc(url, doc=json.dumps(document))
    with pytest.raises(ServiceConfigError, match="does not decrypt the key ring"):
        await _node(url, tmp_path, clock).open()


@pytest.mark.redis
async def test_the_cli_rotates_the_shared_ring_and_every_running_node_follows(
    redis_url: str, tmp_path: Path,
) -> None:
    env = {"JWTKIT_STORE": redis_url, "JWTKIT_KEY_ENCRYPTION_KEY": KEK.hex()}
    nodes = []
    for _ in range(2):
        store = open_store(redis_url)
        assert isinstance(store, KeyRingRecords)
        nodes.append(AuthService(store=store, users=SQLiteUserRepository(tmp_path / "users.db"),
                                 keys=StoreKeyRing(store, KEK, check_every=0.2), mailer=MemoryMailer(),
                                 hasher=CountingHasher()))
    for node in nodes:
        await node.open()
    try:
        old = nodes[0].keys.active.kid
        proc = await asyncio.to_thread(run_jwtkit, tmp_path, "keys", "rotate", "--now", "--json",
                                       "--store", redis_url, env=env)
        assert proc.returncode == 0, proc.stderr
        new = json.loads(proc.stdout)["kid"]
        assert new != old and json.loads(proc.stdout)["store"] == redis_url
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and any(node.keys.active.kid != new for node in nodes):
            for node in nodes:
                _ring(node).current()
                await _ring(node).settled()
            await asyncio.sleep(0.05)
        assert [node.keys.active.kid for node in nodes] == [new, new]
        listed = await asyncio.to_thread(run_jwtkit, tmp_path, "keys", "list", "--json", env=env)
        states = {info["kid"]: info["state"] for info in json.loads(listed.stdout)}
        assert states == {new: "active", old: "retiring"}
        assert not (tmp_path / "jwtkit.key").exists()  # no key file anywhere
    finally:
        for node in nodes:
            await node.close()


@pytest.mark.redis
def test_serve_without_the_key_encryption_key_prints_one_line_and_exits_2(
    redis_url: str, tmp_path: Path,
) -> None:
    proc = run_jwtkit(tmp_path, "serve", "--port", "1", "--store", redis_url, timeout=30)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "JWTKIT_KEY_ENCRYPTION_KEY" in lines[0], proc.stderr
    assert lines[0].startswith("jwtkit: service_config: ")


@pytest.mark.redis
async def test_keys_import_moves_a_key_file_into_an_empty_store_once(redis_url: str, tmp_path: Path) -> None:
    from jwtkit.service import KeyRing

    file = tmp_path / "jwtkit.key"
    KeyRing.load_or_create(file, "ES256")
    before = KeyRing.rotate(file, activate_in=0)  # two keys: the signing one and the one it succeeds
    env = {"JWTKIT_KEY_ENCRYPTION_KEY": KEK.hex()}
    proc = await asyncio.to_thread(run_jwtkit, tmp_path, "keys", "import", "--json", "--store", redis_url,
                                   env=env)
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)["kids"]) == 2
    store = open_store(redis_url)
    assert isinstance(store, KeyRingRecords)
    async with store:
        ring = StoreKeyRing(store, KEK)
        await ring.open()
        assert ring.active.kid == before.active.kid and ring.version == 1
        assert {key.kid for key in ring.keyset.keys} == {key.kid for key in before.keyset.keys}
    again = await asyncio.to_thread(run_jwtkit, tmp_path, "keys", "import", "--store", redis_url, env=env)
    assert again.returncode == 2 and "exists already" in again.stderr and "\n" not in again.stderr.strip()
