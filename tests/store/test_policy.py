"""The one rule for "is this session active" (store/_policy.py), and a differential test: the same cases go
through the Python rule and through every backend (Redis decides in Lua, which mirrors the rule), and every
answer must be the same."""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest

from jwtkit.store import ManagedStore, Rotation, Session, StoreUnavailable
from jwtkit.store._policy import (
    EPOCH_MAX,
    UNREADABLE_EPOCH,
    evicted,
    is_active,
    parse_epoch,
    repaired_epoch,
    require_valid_max_sessions,
    rotation_outcome,
    valid_epoch,
)

from . import support as raw
from .support import FakeClock, new_session

# the rule itself -----------------------------------------------------------------------------------------


def test_session_has_epoch_last_and_in_its_repr() -> None:
    names = [f.name for f in dataclasses.fields(Session)]
    assert names == ["sid", "user_id", "created", "last_used", "expires", "family", "refresh_jti",
                     "user_agent", "ip", "revoked", "epoch"]
    session = Session("s" * 22, "alice", 1.0, 1.0, 2.0, "f", "r")
    assert session.epoch == 0
    assert "epoch=0" in repr(dataclasses.replace(session, epoch=0))
    assert "epoch=7" in repr(dataclasses.replace(session, epoch=7))


def test_is_active_compares_epochs_never_times() -> None:
    clock = FakeClock()
    now = clock()
    session = new_session(clock, epoch=3, created=now - 1000)  # created long before anything: irrelevant
    assert is_active(session, "alice", 3, now) is True
    assert is_active(session, "alice", 2, now) is True
    assert is_active(session, "alice", 4, now) is False
    assert is_active(session, None, 3, now) is True
    assert is_active(session, "bob", 0, now) is False
    assert is_active(session, "alice", UNREADABLE_EPOCH, now) is False
    assert is_active(dataclasses.replace(session, epoch=EPOCH_MAX), "alice", UNREADABLE_EPOCH, now) is False
    assert is_active(dataclasses.replace(session, revoked=True), "alice", 0, now) is False
    assert is_active(session, "alice", 0, session.expires) is False
    assert is_active(session, "alice", 0, math.nextafter(session.expires, 0)) is True


def test_rotation_outcome() -> None:
    assert rotation_outcome(True, "a", "a") is Rotation.ROTATED
    assert rotation_outcome(True, "a", "b") is Rotation.REUSED
    assert rotation_outcome(False, "a", "a") is Rotation.INACTIVE
    assert rotation_outcome(False, "a", "b") is Rotation.INACTIVE  # an inactive session never reports reuse
    assert rotation_outcome(True, "c", "b", ("d", "c")) is Rotation.CONCURRENT
    assert rotation_outcome(True, "a", "a", ("a",)) is Rotation.ROTATED  # the current one always rotates
    assert rotation_outcome(True, "c", "b", ("d",)) is Rotation.REUSED
    assert rotation_outcome(False, "c", "b", ("c",)) is Rotation.INACTIVE


def test_evicted_keeps_the_newest_beside_the_new_session() -> None:
    others = [(3.0, "c"), (1.0, "z"), (2.0, "b"), (1.0, "a")]  # any order; ties on created go by sid
    assert evicted(others, 3, True) == ["a", "z"]
    assert evicted(others, 3, False) == ["a"]  # a session dead at birth takes no place
    assert evicted(others, 1, True) == ["a", "z", "b", "c"]
    assert evicted(others, 5, True) == []
    assert evicted(others, 4, False) == []
    assert evicted(others, None, True) == []
    assert evicted([], 1, True) == []
    for good in (None, 1, 1000):
        require_valid_max_sessions(good)
    for bad in (0, 1001, -1, True, 1.0, "2"):
        with pytest.raises(ValueError, match="max_sessions must be None or an int from 1 to 1000"):
            require_valid_max_sessions(bad)


def test_epoch_values() -> None:
    assert [valid_epoch(v) for v in (0, 1, EPOCH_MAX)] == [True, True, True]
    assert [valid_epoch(v) for v in (-1, EPOCH_MAX + 1, True, 1.0, "1", None)] == [False] * 6
    assert parse_epoch("0") == 0
    assert parse_epoch(b"42") == 42
    assert parse_epoch("007") == 7
    assert parse_epoch(str(EPOCH_MAX)) == EPOCH_MAX
    for bad in (str(EPOCH_MAX + 1), "1" * 17, "-1", "+1", "1.0", " 1", "1 ", "1e3", "", "0x10", "١",
                b"\xff1"):
        assert parse_epoch(bad) is None, bad
    assert repaired_epoch([]) == 1
    assert repaired_epoch([0, 7, 3]) == 8
    assert repaired_epoch([-5, EPOCH_MAX + 1]) == 1  # values no session can validly carry are ignored


# differential: the Python rule against every backend ---------------------------------------------------

CASES = [case for case in itertools.product(
    (False, True),  # revoked
    (False, True),  # expired
    (True, False),  # asked about by its owner (check)
    (-1, 0, 1),  # the session's epoch minus its user's
    ("none", "set", "unreadable"),  # the user's epoch record
) if not (case[4] == "none" and case[3] < 0)]  # epochs are never negative


async def test_every_backend_answers_as_the_rule(store: ManagedStore, clock: FakeClock) -> None:
    now = clock()
    answers, expected = [], []
    for index, (revoked, expired, owner_asks, delta, record) in enumerate(CASES):
        user_id = f"user-{index}"
        base = 0
        if record != "none":
            base = 2
            assert [await store.revoke_all(user_id) for _ in range(base)] == [1, 2]
        if record == "unreadable":
            await raw.corrupt_epoch(store, user_id)
        user_epoch = UNREADABLE_EPOCH if record == "unreadable" else base
        created = now - 100 if expired else now
        copies = [new_session(clock, user_id, created=created, ttl=50 if expired else 3600,
                              epoch=base + delta, revoked=revoked) for _ in range(5)]
        reading, revoking, rotating, replaying, racing = copies
        for session in copies:
            await store.create_session(session)
        rule = is_active(reading, None, user_epoch, now)  # the same for every copy
        asked = user_id if owner_asks else "intruder"
        listed = {s.sid for s in await store.list_sessions(user_id)}
        got = await store.get_session(reading.sid)
        answers.append((index, {
            "check": await store.check(reading.sid, asked),
            "get_session": None if got is None else got.revoked,
            "listed": reading.sid in listed,
            "revoke": await store.revoke(revoking.sid),
            "rotate": await store.rotate_refresh(rotating.sid, rotating.refresh_jti, "next"),
            "replay": await store.rotate_refresh(replaying.sid, "an-older-jti", "next"),
            "race": await store.rotate_refresh(racing.sid, "an-older-jti", "next",
                                               concurrent=("next", racing.refresh_jti)),
        }))
        expected.append((index, {
            "check": is_active(reading, asked, user_epoch, now),
            "get_session": None if expired else not rule,  # expired reads as unknown
            "listed": is_active(reading, user_id, user_epoch, now),
            "revoke": rule,
            "rotate": rotation_outcome(rule, rotating.refresh_jti, rotating.refresh_jti),
            "replay": rotation_outcome(rule, replaying.refresh_jti, "an-older-jti"),
            "race": rotation_outcome(rule, racing.refresh_jti, "an-older-jti", ("next", racing.refresh_jti)),
        }))
    assert len(CASES) == 64
    assert sum(e["check"] for _, e in expected) == 4  # the cases exercise both answers
    assert answers == expected


EPOCH_TEXTS = ["0", "7", "007", str(EPOCH_MAX), str(EPOCH_MAX + 1), "1" * 17, "-1", "1.0", " 1", "1e3", "",
               "0x10", "abc"]


@pytest.mark.parametrize("backend", ["redis", "leveldb"])  # the backends that store epochs as text
async def test_epoch_text_is_parsed_alike_in_python_and_on_the_server(store: ManagedStore,
                                                                      clock: FakeClock) -> None:
    """For Redis, get_epoch parses in Python and check parses in Lua: both must agree on every text."""
    for index, text in enumerate(EPOCH_TEXTS):
        user_id = f"user-{index}"
        value = parse_epoch(text)
        session = new_session(clock, user_id, epoch=0 if value is None else value)
        await store.create_session(session)
        if type(store).__name__ == "RedisStore":
            await store._client.set(store._key("e", user_id), text)  # type: ignore[attr-defined]
        else:
            store._db.put(b"e:" + user_id.encode(), text.encode())  # type: ignore[attr-defined]
        assert await store.check(session.sid, user_id) is (value is not None), text
        if value is None:
            with pytest.raises(StoreUnavailable):
                await store.get_epoch(user_id)
        else:
            assert await store.get_epoch(user_id) == value, text
            assert await store.revoke_all(user_id) == value + 1, text


@pytest.mark.parametrize("backend", ["redis"])
async def test_session_epoch_field_is_parsed_alike_in_python_and_in_lua(store: ManagedStore,
                                                                        clock: FakeClock) -> None:
    for text in EPOCH_TEXTS:
        session = new_session(clock)
        await store.create_session(session)
        await store._client.hset(store._key("s", session.sid), "epoch", text)  # type: ignore[attr-defined]
        value = parse_epoch(text)
        got = await store.get_session(session.sid)
        assert got is not None
        assert await store.check(session.sid, "alice") is (value is not None), text
        if value is None:
            assert (got.user_id, got.revoked) == ("", True), text  # a corrupt record
        else:
            assert (got.epoch, got.revoked) == (value, False), text
