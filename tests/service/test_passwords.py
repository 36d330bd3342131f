"""Password policy and argon2id hashing (one test runs the real OWASP parameters)."""

from __future__ import annotations

import asyncio
import threading

import pytest
from argon2 import PasswordHasher

from jwtkit.service import Argon2Hasher, WeakPassword, check_password, owasp_hasher
from jwtkit.service._passwords import MAX_HASHING_THREADS, _hashing_threads, common_passwords

from .conftest import CountingHasher


@pytest.mark.parametrize(("password", "reason"), [
    ("", "at least 8"),
    ("abc1234", "at least 8"),
    ("x" * 1025, "at most 1024"),
    ("password", "too common"),
    ("PASSWORD1", "too common"),
    ("Password123", "too common"),
    ("qwertyuiop", "too common"),
    ("iloveyou", "too common"),
    ("12345678", "too common"),
    ("ｐａｓｓｗｏｒｄ", "too common"),  # fullwidth: NFKC folds it onto the listed one
    ("Summer2024!", "too common"),
])
def test_weak_passwords(password: str, reason: str) -> None:
    with pytest.raises(WeakPassword) as info:
        check_password(password)
    assert reason in str(info.value)
    assert info.value.code == "weak_password"


@pytest.mark.parametrize("password", ["correct horse battery", "Tr0ub4dor&3x", "ꙮ морская звезда ꙮ",
                                      "long passphrase of many words " * 34])  # 1,020 characters
def test_acceptable_passwords(password: str) -> None:
    check_password(password)


@pytest.mark.parametrize(("password", "reason"), [
    # issue 14: each of these passed a length-and-list policy
    ("aaaaaaaa", 'Repeats like "aaa" are easy to guess.'),
    (" " * 8, 'Repeats like "aaa" are easy to guess.'),
    ("passw0rd!", "This is similar to a commonly used password."),
    ("x" * 1024, 'Repeats like "aaa" are easy to guess.'),
    ("ꙮ" * 8, 'Repeats like "aaa" are easy to guess.'),
    ("qwertyuiop", "This is a top-10 common password."),
])
def test_passwords_the_estimator_finds_easy_to_guess_are_refused_with_its_reason(password: str,
                                                                                 reason: str) -> None:
    with pytest.raises(WeakPassword) as info:
        check_password(password)
    assert str(info.value).startswith(f"this password is too easy to guess: {reason}") or \
        "too common" in str(info.value)


def test_the_username_inside_a_password_weakens_it() -> None:
    check_password("mallory-tango-42")
    with pytest.raises(WeakPassword, match="too easy to guess"):
        check_password("mallory-tango-42", username="mallory-tango")


def test_password_equal_to_the_username_is_refused() -> None:
    with pytest.raises(WeakPassword, match="username"):
        check_password("Alice-the-great", username="alice-the-great")


def test_the_bundled_list_is_a_few_thousand_casefolded_entries() -> None:
    listed = common_passwords()
    assert 3000 <= len(listed) <= 20000
    assert all(entry == entry.casefold() for entry in listed)
    assert {"123456", "password", "qwerty", "letmein", "iloveyou", "football"} <= listed


def test_length_counts_characters_not_bytes() -> None:
    check_password("üßçøæåñé")  # 16 bytes, 8 characters
    with pytest.raises(WeakPassword, match="at least 8 characters"):
        check_password("üßçøæåñ")


async def test_real_owasp_parameters() -> None:
    """The default hasher: argon2id, m=19456 KiB, t=2, p=1 (OWASP's first recommended option)."""
    hasher = Argon2Hasher()
    assert (hasher.hasher.memory_cost, hasher.hasher.time_cost, hasher.hasher.parallelism) == (19456, 2, 1)
    stored = await hasher.hash("correct horse battery")
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert await hasher.verify(stored, "correct horse battery") is True
    assert await hasher.verify(stored, "correct horse batterY") is False
    assert hasher.needs_rehash(stored) is False
    assert owasp_hasher().memory_cost == 19456


async def test_hashing_runs_in_a_worker_thread() -> None:
    seen: list[str] = []

    class Recording(CountingHasher):
        def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
            seen.append(threading.current_thread().name)
            return super().hash(password, salt=salt)

    hasher = Argon2Hasher(Recording())
    await hasher.hash("correct horse battery")
    assert seen
    assert seen[0] != threading.main_thread().name
    # and the loop keeps running meanwhile
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    ticker = asyncio.create_task(tick())
    await Argon2Hasher().hash("correct horse battery")  # ~50 ms of real argon2
    ticker.cancel()
    assert ticks > 1


async def test_verify_is_false_for_garbage_hashes() -> None:
    hasher = Argon2Hasher(PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    for stored in ("", "not-a-hash", "$argon2id$v=19$m=8,t=1,p=1$AAAA$BBBB", "$2b$12$abcdefghijklmnopqrstuu"):
        assert await hasher.verify(stored, "whatever") is False
        assert hasher.needs_rehash(stored) is True


async def test_passwords_are_nfkc_normalised_before_hashing() -> None:
    hasher = Argon2Hasher(PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    stored = await hasher.hash("Zoe\u0308 likes cafe\u0301s")
    assert await hasher.verify(stored, "Zoë likes cafés") is True


async def test_dummy_verification_costs_one_verify() -> None:
    counting = CountingHasher()
    hasher = Argon2Hasher(counting)
    await hasher.prepare()
    assert counting.hash_calls == 1
    await hasher.verify_dummy("anything")
    await hasher.verify_dummy("anything else")
    assert counting.verify_calls == 2
    assert counting.hash_calls == 1  # the dummy hash is made once


class _HeldHasher(PasswordHasher):
    """Each hash waits until the test lets it go, counting how many run at once and on which threads."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=8, parallelism=1)
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0
        self.threads: set[str] = set()
        self.release = threading.Event()
        self.full = threading.Event()

    def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.threads.add(threading.current_thread().name)
            if self.running == _hashing_threads():
                self.full.set()
        assert self.release.wait(10)
        with self.lock:
            self.running -= 1
        return super().hash(password, salt=salt)


async def test_hashing_runs_on_a_bounded_pool_of_its_own() -> None:
    """At most one hash per hashing thread at a time (so at most one retained argon2 block each), and never
    on the event loop's default executor."""
    held = _HeldHasher()
    hasher = Argon2Hasher(held)
    limit = _hashing_threads()
    tasks = [asyncio.create_task(hasher.hash(f"password {n}")) for n in range(limit + 3)]
    assert await asyncio.to_thread(held.full.wait, 10)
    await asyncio.sleep(0)  # the queued hashes had every chance to start; they cannot
    assert (held.running, held.most) == (limit, limit)
    held.release.set()
    assert len(await asyncio.gather(*tasks)) == limit + 3
    assert held.most == limit
    assert all(name.startswith("jwtkit-argon2") for name in held.threads)
    assert 1 <= limit <= MAX_HASHING_THREADS
