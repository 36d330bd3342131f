"""Password policy (length, the bundled common-password list) and argon2id hashing in a worker thread."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import os
import secrets
import threading
import unicodedata
from collections.abc import Callable
from importlib import resources
from typing import Any, TypeVar

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from jwtkit.service._errors import WeakPassword

__all__ = [
    "MAX_HASHING_THREADS",
    "MAX_PASSWORD_LENGTH",
    "MIN_PASSWORD_LENGTH",
    "Argon2Hasher",
    "check_password",
    "common_passwords",
    "hashing_executor",
    "normalize_password",
    "owasp_hasher",
]

MIN_PASSWORD_LENGTH = 8  # NIST SP 800-63B §3.1.1.2
MAX_HASHING_THREADS = 8
MAX_PASSWORD_LENGTH = 1024  # bounds the hashing work an attacker can ask for
# zxcvbn's score (0 to 4). 2 ("somewhat guessable", 1e6 to 1e8 guesses) refuses repeats, sequences, keyboard
# walks and dressed-up common words, and accepts 8 random characters, which zxcvbn scores 2 (it counts 10
# guesses per character for what it cannot explain). Argon2id and the login throttle do the rest.
MIN_STRENGTH = 2
_ESTIMATED_LENGTH = 100


def owasp_hasher() -> PasswordHasher:
    """argon2id at OWASP's first recommended setting: m=19456 KiB (19 MiB), t=2, p=1
    (OWASP Password Storage Cheat Sheet)."""
    return PasswordHasher(
        time_cost=2, memory_cost=19456, parallelism=1, hash_len=32, salt_len=16, type=Type.ID
    )


@functools.cache
def common_passwords() -> frozenset[str]:
    """The bundled list of common passwords, casefolded (``service/common-passwords.txt``)."""
    text = resources.files("jwtkit.service").joinpath("common-passwords.txt").read_text("utf-8")
    return frozenset(
        _fold(line) for line in text.splitlines() if line and not line.startswith("#")
    )


def normalize_password(password: str) -> str:
    """NFKC, so the same password typed on different keyboards or OSes hashes the same (NIST SP 800-63B
    §5.1.1.2). Applied before hashing and before verifying."""
    return unicodedata.normalize("NFKC", password)


def _encode(password: str) -> bytes:
    # The same bytes argon2-cffi would make (UTF-8), except that a lone surrogate (possible in JSON input)
    # cannot crash the encoder: it is kept as is and simply never matches a real password.
    return normalize_password(password).encode("utf-8", "surrogatepass")


def _fold(password: str) -> str:
    return unicodedata.normalize("NFKC", password).casefold()


def check_password(password: str, *, username: str | None = None) -> None:
    """Refuse a new password that is too short, too long, the username, on the common list, or easy to guess
    by the zxcvbn estimator (score below :data:`MIN_STRENGTH`: repeats, sequences, keyboard walks, dictionary
    words with substitutions, the username inside it), with the estimator's reason.

    Raises:
        WeakPassword (``weak_password``): the message says which rule failed.

    Example:
        >>> from jwtkit.service import check_password
        >>> check_password("correct horse battery staple")
        >>> check_password("password1")
        Traceback (most recent call last):
        ...
        jwtkit.service.WeakPassword: this password is too common: choose another one
    """
    if not isinstance(password, str):
        raise WeakPassword("the password must be text")
    try:
        password.encode("utf-8")
    except UnicodeEncodeError:
        raise WeakPassword("the password contains characters that are not valid text") from None
    length = len(normalize_password(password))
    if length < MIN_PASSWORD_LENGTH:
        raise WeakPassword(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    if length > MAX_PASSWORD_LENGTH:
        raise WeakPassword(f"the password must have at most {MAX_PASSWORD_LENGTH} characters")
    folded = _fold(password)
    if username is not None and folded == _fold(username):
        raise WeakPassword("the password must not be the username")
    if folded in common_passwords():
        raise WeakPassword("this password is too common: choose another one")
    from zxcvbn_rs_py import zxcvbn  # loaded on first use: the middleware never needs it

    # the estimator's work grows with the length; what follows the first characters adds only strength
    estimate = zxcvbn(password[:_ESTIMATED_LENGTH], [username] if username else [])
    if int(estimate.score) < MIN_STRENGTH:
        feedback = estimate.feedback
        reasons = [str(feedback.warning)] if feedback is not None and feedback.warning else []
        if feedback is not None:
            reasons += [str(s) for s in feedback.suggestions][:1]
        detail = " ".join(r.rstrip(".") + "." for r in reasons) or "A few unrelated words make a strong one."
        raise WeakPassword(f"this password is too easy to guess: {detail}")


def _hashing_threads() -> int:
    return max(1, min(os.cpu_count() or 1, MAX_HASHING_THREADS))


class Argon2Hasher:
    """argon2id hashing and verification, run in worker threads of its own so the event loop never blocks.

    The threads are few (one per CPU, at most :data:`MAX_HASHING_THREADS`), and shared by every hasher of
    the process: each hash holds ``memory_cost`` (19 MiB at OWASP's setting) while it runs, and the C
    allocator keeps a freed block of that size for the thread that used it. On Python's default executor
    (up to CPU count + 4 threads) that made the process grow 19 MiB at a time under logins, well after its
    warm-up; here it is at most one block per hashing thread, and hashing can use every CPU but never more.
    Hashes past that wait their turn (the server's concurrency limit bounds how many wait).

    Args:
        hasher: an ``argon2.PasswordHasher``; the default is :func:`owasp_hasher`. Tests inject one with
            small parameters.

    Example:
        >>> import asyncio
        >>> from argon2 import PasswordHasher
        >>> from jwtkit.service import Argon2Hasher
        >>> fast = Argon2Hasher(PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
        >>> stored = asyncio.run(fast.hash("correct horse"))
        >>> asyncio.run(fast.verify(stored, "correct horse"))
        True
    """

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self.hasher = hasher if hasher is not None else owasp_hasher()
        self._dummy: str | None = None

    def __repr__(self) -> str:
        h = self.hasher
        return f"Argon2Hasher(t={h.time_cost}, m={h.memory_cost}, p={h.parallelism})"

    async def hash(self, password: str) -> str:
        return await _in_hashing_thread(self.hasher.hash, _encode(password))

    async def verify(self, stored_hash: str, password: str) -> bool:
        """True if ``password`` matches; False for a mismatch and for a hash that cannot be read."""
        return await _in_hashing_thread(self._verify, stored_hash, _encode(password))

    def _verify(self, stored_hash: str, password: bytes) -> bool:
        try:
            return bool(self.hasher.verify(stored_hash, password))
        except (VerificationError, InvalidHashError):
            # VerifyMismatchError is a VerificationError; an unreadable stored hash is a failed login,
            # never a crash.
            return False

    def needs_rehash(self, stored_hash: str) -> bool:
        """True when the stored hash was made with other parameters than the current ones."""
        try:
            return bool(self.hasher.check_needs_rehash(stored_hash))
        except (InvalidHashError, ValueError):
            return True

    async def prepare(self) -> str:
        """Compute the dummy hash now (at service start) rather than during the first unknown-user login."""
        if self._dummy is None:
            self._dummy = await _in_hashing_thread(self.hasher.hash, secrets.token_urlsafe(16))
        return self._dummy

    async def verify_dummy(self, password: str) -> None:
        """Spend the same work as a real verification, for an unknown user: no user enumeration by timing."""
        await self.verify(await self.prepare(), password)


_executor: concurrent.futures.ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()
_T = TypeVar("_T")


def hashing_executor() -> concurrent.futures.ThreadPoolExecutor:
    """The process's password-hashing threads (see :class:`Argon2Hasher`), made on first use."""
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = concurrent.futures.ThreadPoolExecutor(max_workers=_hashing_threads(),
                                                              thread_name_prefix="jwtkit-argon2")
        return _executor


async def _in_hashing_thread(work: Callable[..., _T], *args: Any) -> _T:
    return await asyncio.get_running_loop().run_in_executor(hashing_executor(), work, *args)
