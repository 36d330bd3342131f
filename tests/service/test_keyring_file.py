"""KeyRingFile: the key file followed while the process runs, on an injected clock (no sleeps). A rotation is
seen after ``check_every``, not before; a file that cannot be read keeps the ring; ``refresh(kid)`` looks at
once; the schedule (a next key published ahead of signing, the retire window) moves without a look."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from clock import FakeClock
from jwtkit import Key, decode, decode_unverified, encode
from jwtkit.service import (
    AccessPolicy,
    InvalidToken,
    KeyProvider,
    KeyRing,
    KeyRingFile,
    ServiceConfigError,
    Settings,
    build_service,
)
from jwtkit.service._config import MEMORY_USERS
from jwtkit.service._tokens import REFRESH_TYP

from .conftest import PASSWORD, ServiceFactory

T0 = 1_800_000_000.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    file = tmp_path / "jwtkit.key"
    KeyRing.load_or_create(file, "EdDSA")
    return file


@pytest.fixture
def stats(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every os.stat of the key file from here on (the provider's one kind of look)."""
    seen: list[str] = []
    real = os.stat

    def counting(target: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        if str(target).endswith("jwtkit.key"):
            seen.append(str(target))
        return real(target, *args, **kwargs)

    monkeypatch.setattr(os, "stat", counting)
    return seen


def token(key: Key, **claims: Any) -> str:
    return encode({"sub": "u1", "exp": int(T0) + 3600, **claims}, key, typ="at+jwt")


def kids(keys: KeyRingFile) -> set[str | None]:
    return {jwk.get("kid") for jwk in keys.jwks()["keys"]}


def overwrite_in_place(file: Path, data: bytes) -> None:
    """What a careless editor does: truncate and write the same inode (no temporary file)."""
    fd = os.open(file, os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def test_it_is_a_key_provider_with_the_ring_of_the_file(path: Path, clock: FakeClock) -> None:
    keys = KeyRingFile(path, clock=clock)
    assert isinstance(keys, KeyProvider)
    ring = KeyRing.load(path)
    assert keys.active.kid == ring.active.kid and keys.active.is_private
    assert keys.current() is keys.keyset
    assert keys.jwks() == ring.jwks()
    assert str(path) in repr(keys) and all("d" not in jwk for jwk in keys.jwks()["keys"])


def test_a_rotation_is_seen_after_check_every_and_not_before(path: Path, clock: FakeClock,
                                                             stats: list[str]) -> None:
    keys = KeyRingFile(path, check_every=2.0, clock=clock)
    old = keys.active
    old_token = token(old)
    new = KeyRing.rotate(path, now=clock.now).active
    stats.clear()
    for _ in range(100):  # requests within the interval: no look at the file at all
        assert keys.current() is keys.keyset
        assert keys.active.kid == old.kid
    clock.advance(1.9)
    assert keys.active.kid == old.kid
    assert stats == []
    clock.advance(0.1)
    assert keys.active.kid == new.kid  # one stat, then the new file
    assert len(stats) == 1
    assert decode(token(keys.active), keys.current())["sub"] == "u1"
    assert decode(old_token, keys.current())["sub"] == "u1"  # the old key verifies in its retire window
    assert kids(keys) == {new.kid, old.kid}
    for _ in range(100):
        keys.current()
    assert len(stats) == 1  # and the next look waits for the next interval
    clock.advance(2.0)
    keys.current()
    assert len(stats) == 2  # an unchanged file costs a stat, no read


def test_a_file_that_cannot_be_loaded_keeps_the_ring_and_is_logged_once(
    path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    keys = KeyRingFile(path, clock=clock)
    before = keys.active.kid
    document = path.read_bytes()
    caplog.set_level(logging.WARNING, logger="jwtkit.service._keyring")
    overwrite_in_place(path, document[: len(document) // 2])  # half written
    for _ in range(5):
        clock.advance(2.5)
        assert keys.active.kid == before
        assert keys.current() is keys.keyset
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "cannot be loaded" in warnings[0].getMessage() and "still using" in warnings[0].getMessage()

    overwrite_in_place(path, b'{"keys": "no"}')  # another bad version: logged once more
    clock.advance(2.5)
    assert keys.active.kid == before
    overwrite_in_place(path, document)  # the old content is back: loaded again, no warning
    clock.advance(2.5)
    assert keys.active.kid == before
    assert len([record for record in caplog.records if record.levelno == logging.WARNING]) == 2

    rotated = KeyRing.rotate(path, now=clock.now).active  # and a good rotation after all that is seen
    clock.advance(2.5)
    assert keys.active.kid == rotated.kid


def test_a_missing_or_too_open_file_keeps_the_ring(path: Path, clock: FakeClock,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    keys = KeyRingFile(path, clock=clock)
    before = keys.active.kid
    caplog.set_level(logging.WARNING, logger="jwtkit.service._keyring")
    os.chmod(path, 0o644)
    clock.advance(2.5)
    assert keys.active.kid == before
    moved = path.with_name("elsewhere.key")
    path.rename(moved)
    clock.advance(2.5)
    assert keys.active.kid == before
    clock.advance(2.5)
    assert keys.active.kid == before
    assert len([record for record in caplog.records if record.levelno == logging.WARNING]) == 2
    os.chmod(moved, 0o600)
    moved.rename(path)
    clock.advance(2.5)
    assert keys.active.kid == before


def test_starting_on_a_bad_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ServiceConfigError, match="does not exist"):
        KeyRingFile(tmp_path / "nope.key")
    with pytest.raises(ValueError, match="check_every"):
        KeyRingFile(tmp_path / "nope.key", check_every=-1)


async def test_refresh_looks_at_once_with_a_cooldown(path: Path, clock: FakeClock, stats: list[str]) -> None:
    keys = KeyRingFile(path, check_every=60.0, refresh_cooldown=0.5, clock=clock)
    old = keys.active
    new = KeyRing.rotate(path, now=clock.now).active
    stats.clear()
    assert await keys.refresh(new.kid) is True  # no waiting for check_every
    assert keys.active.kid == new.kid
    assert kids(keys) == {old.kid, new.kid}
    looks = len(stats)
    assert await keys.refresh("unknown") is False  # within the cooldown: not even a stat
    assert len(stats) == looks
    clock.advance(0.5)
    assert await keys.refresh("unknown") is False  # a look, and nothing changed
    assert len(stats) == looks + 1


async def test_a_token_of_a_worker_that_rotated_first_verifies_at_once(path: Path, clock: FakeClock) -> None:
    """Two processes on one key file: the one that saw the rotation signs; the other refreshes on the kid."""
    keys = KeyRingFile(path, check_every=60.0, clock=clock)
    policy = AccessPolicy(keys=keys, clock=clock)
    KeyRing.rotate(path, now=clock.now)
    other_worker = KeyRing.load(path, now=clock.now)
    principal = await policy.authenticate(token(other_worker.active))
    assert principal.user_id == "u1"
    assert keys.active.kid == other_worker.active.kid


async def test_a_stranger_kid_is_refused_and_the_file_is_not_reread(path: Path, clock: FakeClock,
                                                                    stats: list[str]) -> None:
    keys = KeyRingFile(path, check_every=60.0, clock=clock)
    policy = AccessPolicy(keys=keys, clock=clock)
    stranger = Key.generate("EdDSA", kid="stranger")
    stats.clear()
    for _ in range(20):
        with pytest.raises(InvalidToken) as info:
            await policy.authenticate(token(stranger))
        assert info.value.reason == "key"
    assert len(stats) == 1  # one look in the cooldown, however many tokens name unknown kids


def test_a_next_key_is_published_before_it_signs_and_signs_on_time_without_a_look(
    path: Path, clock: FakeClock, stats: list[str]
) -> None:
    keys = KeyRingFile(path, check_every=1000.0, clock=clock)
    old = keys.active
    upcoming = KeyRing.rotate(path, activate_in=300.0, now=clock.now).active
    assert keys.refresh_now() is True  # the look that finds the rotation (check_every or a token's kid)
    assert keys.active.kid == old.kid  # it does not sign yet
    assert kids(keys) == {old.kid, upcoming.kid}  # but it is published, and it verifies
    assert decode(token(upcoming), keys.current())["sub"] == "u1"  # (a node whose clock runs ahead)
    looks = len(stats)
    clock.advance(299.9)
    assert keys.active.kid == old.kid
    clock.advance(0.1)
    assert keys.active.kid == upcoming.kid  # its time came: the schedule in the file, no look
    assert decode(token(old), keys.current())["sub"] == "u1"  # the old one now retires, still verifying
    assert len(stats) == looks


def test_the_retire_window_ends_verification_and_prune_drops_the_key(path: Path, clock: FakeClock) -> None:
    keys = KeyRingFile(path, check_every=2.0, clock=clock)
    old = keys.active
    old_token = token(old)
    new = KeyRing.rotate(path, retire_after=1000.0, now=clock.now).active
    clock.advance(2.0)
    assert decode(old_token, keys.current())["sub"] == "u1"
    states = {info.kid: info.state for info in KeyRing.list_keys(path, now=clock.now)}
    assert states == {new.kid: "active", old.kid: "retiring"}
    clock.advance(998.0)
    assert kids(keys) == {new.kid}  # its window ended: it verifies nothing and is no longer published
    with pytest.raises(Exception, match="kid"):
        decode(old_token, keys.current())
    [_, retired] = KeyRing.list_keys(path, now=clock.now)
    assert (retired.kid, retired.state, retired.verify_until) == (old.kid, "retired", T0 + 1000.0)
    assert KeyRing.prune(path, now=clock.now) == [old.kid]
    assert [info.kid for info in KeyRing.list_keys(path, now=clock.now)] == [new.kid]
    assert KeyRing.prune(path, now=clock.now) == []


def test_a_clock_that_moves_back_looks_again(path: Path, clock: FakeClock) -> None:
    keys = KeyRingFile(path, check_every=2.0, clock=clock)
    new = KeyRing.rotate(path, now=clock.now - 10).active
    clock.advance(-5.0)
    assert keys.active.kid == new.kid


def test_rotation_writes_are_atomic_for_readers(path: Path) -> None:
    """A reader that loads the file while rotations run never sees a part of one (temp file + os.replace)."""
    failures: list[Exception] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            try:
                KeyRing.load(path)
            except Exception as exc:  # any failure is the finding
                failures.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for _ in range(30):
            KeyRing.rotate(path)
    finally:
        done.set()
        reader.join()
    assert failures == []
    inode = path.stat().st_ino
    KeyRing.rotate(path)
    assert path.stat().st_ino != inode  # replaced, never written in place
    assert sorted(p.name for p in path.parent.iterdir()) == ["jwtkit.key"]  # no temporary files left


def test_concurrent_rotations_keep_every_key(path: Path) -> None:
    before = KeyRing.load(path).active.kid
    threads = [threading.Thread(target=KeyRing.rotate, args=(path,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    listed = KeyRing.list_keys(path)
    assert len(listed) == 9 and before in {info.kid for info in listed}  # serialised by flock: none lost
    assert [info.state for info in listed].count("active") == 1


def test_list_keys_describes_the_schedule(path: Path, clock: FakeClock) -> None:
    first = KeyRing.load(path).active
    KeyRing.rotate(path, "ES256", activate_in=300.0, retire_after=86400.0, now=clock.now)
    [upcoming, current] = KeyRing.list_keys(path, now=clock.now)
    assert (upcoming.alg, upcoming.state, upcoming.active_from, upcoming.published) == (
        "ES256", "next", T0 + 300.0, True)
    assert upcoming.created_at == T0 and upcoming.retired_at is None
    assert (current.kid, current.state, current.retired_at, current.verify_until) == (
        first.kid, "active", T0 + 300.0, T0 + 300.0 + 86400.0)
    [upcoming, current] = KeyRing.list_keys(path, now=T0 + 300.0)
    assert (upcoming.state, current.state) == ("active", "retiring")


def test_a_second_rotation_before_the_first_signs_keeps_the_order(path: Path, clock: FakeClock) -> None:
    first = KeyRing.rotate(path, activate_in=300.0, now=clock.now).active
    second = KeyRing.rotate(path, activate_in=300.0, now=clock.now + 100).active
    assert KeyRing.load(path, now=T0 + 350).active.kid == first.kid
    assert KeyRing.load(path, now=T0 + 400).active.kid == second.kid
    assert [info.state for info in KeyRing.list_keys(path, now=T0 + 200)] == ["next", "next", "active"]


def test_a_rotation_at_once_overtakes_a_next_key_which_then_never_signs(path: Path, clock: FakeClock) -> None:
    original = KeyRing.load(path).active
    overtaken = KeyRing.rotate(path, activate_in=300.0, now=clock.now).active
    now = KeyRing.rotate(path, now=clock.now + 10).active
    for when in (T0 + 10, T0 + 300, T0 + 10**5):
        assert KeyRing.load(path, now=when).active.kid == now.kid
    states = {info.kid: info.state for info in KeyRing.list_keys(path, now=T0 + 300)}
    assert states == {now.kid: "active", overtaken.kid: "retiring", original.kid: "retiring"}
    ring = KeyRing.load(path, now=T0 + 300)
    assert {key.kid for key in ring.verify_only} == {overtaken.kid, original.kid}  # both still verify


def test_a_file_from_before_schedules_still_loads(tmp_path: Path) -> None:
    """Key files written before active_from and verify_until: retired_at alone, pruned by retire_after."""
    path = tmp_path / "jwtkit.key"
    active, old = Key.generate("EdDSA", kid="a"), Key.generate("EdDSA", kid="o")
    document = {"keys": [{**active.to_jwk(private=True)},
                         {**old.to_jwk(private=True), "retired_at": T0}]}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, json.dumps(document).encode())
    os.close(fd)
    ring = KeyRing.load(path, now=T0 + 10**9)
    assert (ring.active.kid, [key.kid for key in ring.verify_only]) == ("a", ["o"])
    assert KeyRing.prune(path, retire_after=100.0, now=T0 + 99) == []
    assert KeyRing.prune(path, retire_after=100.0, now=T0 + 100) == ["o"]


# --- the service over a followed key file ----------------------------------------------------------------


@pytest.fixture
def keys(path: Path, clock: FakeClock) -> KeyRingFile:
    """The conftest's services sign with this: the key file, followed on the test's clock."""
    return KeyRingFile(path, clock=clock)


def kid_of(token: str) -> str:
    kid = decode_unverified(token)[0]["kid"]
    assert isinstance(kid, str)
    return kid


async def test_the_service_signs_with_the_rotated_key_and_old_tokens_keep_working(
    make_service: ServiceFactory, path: Path, clock: FakeClock
) -> None:
    async with make_service() as service:
        await service.register("alice", PASSWORD)
        before = await service.login("alice", PASSWORD)
        old_kid = kid_of(before.access_token)
        new = KeyRing.rotate(path, now=clock.now).active
        assert kid_of((await service.login("alice", PASSWORD)).access_token) == old_kid  # not looked yet
        clock.advance(2.0)
        after = await service.login("alice", PASSWORD)
        assert kid_of(after.access_token) == kid_of(after.refresh_token) == new.kid
        assert (await service.authenticate(before.access_token)).user_id == before.session.user_id
        assert (await service.authenticate(after.access_token)).user_id == before.session.user_id
        refreshed = await service.refresh(before.refresh_token)  # an old refresh token still rotates
        assert kid_of(refreshed.access_token) == new.kid
        assert {jwk["kid"] for jwk in service.jwks()["keys"]} == {old_kid, new.kid}


async def test_a_refresh_token_from_a_node_that_rotated_first_verifies_at_once(
    make_service: ServiceFactory, path: Path, clock: FakeClock
) -> None:
    async with make_service() as service:
        await service.register("alice", PASSWORD)
        pair = await service.login("alice", PASSWORD)
        KeyRing.rotate(path, now=clock.now)
        other_node = KeyRing.load(path, now=clock.now)
        claims = decode_unverified(pair.refresh_token)[1]
        foreign = encode(claims, other_node.active, typ=REFRESH_TYP)  # what that node would have issued
        assert kid_of(foreign) != kid_of(pair.refresh_token)
        refreshed = await service.refresh(foreign)  # no waiting for check_every: the file is read again
        assert kid_of(refreshed.access_token) == other_node.active.kid


def test_build_service_follows_the_key_file_unless_jwt_secret_is_set(path: Path) -> None:
    settings = Settings.from_env({}, key_path=str(path), store_url="memory://", users_path=MEMORY_USERS)
    assert isinstance(build_service(settings).keys, KeyRingFile)
    with_secret = dataclasses.replace(settings, secret=b"s" * 32)
    assert isinstance(build_service(with_secret).keys, KeyRing)
