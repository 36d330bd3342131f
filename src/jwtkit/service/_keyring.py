"""The key ring: one active signing key plus older keys that still verify until their tokens have expired
(rotation by ``kid``), from ``JWT_SECRET`` or from a 0600 JWKS file created on first run. Never a built-in
secret: the tutorial's example accepted tokens forged with its published default secret.

A key file is a schedule. Each key may carry four private members beside its JWK (RFC 7517 §4: unknown
members are ignored by others), all POSIX times: ``created_at``; ``active_from``, when it starts signing
(before that it is *next*: published and verifying, not signing); ``retired_at``, when its successor took
over (from then on it is *retiring*: it verifies, it no longer signs); ``verify_until``, when its retire
window ends (then it is *retired*: it verifies nothing, and the next rotation or ``keys prune`` drops it).
Which key signs therefore changes at a time written in the file, on every node alike, without another write.

:class:`KeyRingFile` follows such a file while the process runs: ``jwtkit keys rotate`` rewrites it
atomically (a temporary file, then ``os.replace``), and every server that reads it picks the new schedule up
within :data:`CHECK_EVERY` seconds, or at once when a token names a ``kid`` it has not loaded yet.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import stat
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from jwtkit import JWTError, Key, KeySet
from jwtkit.service._errors import ServiceConfigError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: rotations are not serialised against each other
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "CHECK_EVERY",
    "DEFAULT_RETIRE_AFTER",
    "JWKS_MAX_AGE",
    "MIN_SECRET_LENGTH",
    "PUBLISH_AHEAD",
    "REFRESH_COOLDOWN",
    "KeyInfo",
    "KeyRing",
    "KeyRingFile",
]

logger = logging.getLogger("jwtkit.service._keyring")

MIN_SECRET_LENGTH = 32  # RFC 7518 §3.2: an HS256 key at least as long as the hash output
DEFAULT_RETIRE_AFTER = 14 * 86400.0  # the default refresh_ttl: the longest-lived token a retired key signed
CHECK_EVERY = 2.0  # seconds between two looks (one stat) at the key file by a running server
REFRESH_COOLDOWN = 0.5  # seconds between two looks asked for by tokens that name an unknown kid
JWKS_MAX_AGE = 300  # seconds others may cache /.well-known/jwks.json (its Cache-Control max-age)
# `keys rotate` publishes a new key this long before it signs: every server has seen the file (CHECK_EVERY)
# and every verifier's cached JWKS has expired (JWKS_MAX_AGE) by then, with a minute to spare for clock skew
# between the machines and for copying the file to other nodes.
PUBLISH_AHEAD = JWKS_MAX_AGE + 60.0

KeyState = Literal["next", "active", "retiring", "retired"]

_RETIRED_AT, _VERIFY_UNTIL = "retired_at", "verify_until"
_TIMES = ("created_at", "active_from", _RETIRED_AT, _VERIFY_UNTIL)


class KeyRing:
    """The active signing key and the verify-only keys, as one :class:`jwtkit.KeySet` for decoding.

    Args:
        active: the key new tokens are signed with; it must be private (or an HMAC secret).
        verify_only: other keys that verify tokens they signed (retiring keys, and the next key once it is
            published ahead of signing).

    Raises:
        ServiceConfigError (``service_config``): the active key cannot sign, or two keys share a ``kid``.

    Example:
        >>> ring = KeyRing.from_secret(b"0123456789abcdef0123456789abcdef")
        >>> ring.active.alg, ring.jwks()
        ('HS256', {'keys': []})
    """

    def __init__(self, active: Key, verify_only: Sequence[Key] = ()) -> None:
        if not active.is_private:
            raise ServiceConfigError("the active key must be able to sign (a private key or a secret)")
        kids = [key.kid for key in (active, *verify_only) if key.kid is not None]
        if len(kids) != len(set(kids)):
            raise ServiceConfigError("two keys in the key ring share a kid")
        self.active = active
        self.verify_only: tuple[Key, ...] = tuple(verify_only)
        self.keyset = KeySet([active, *self.verify_only])

    def __repr__(self) -> str:
        return (f"KeyRing(active={self.active.alg}/{self.active.kid}, "
                f"verify_only={[key.kid for key in self.verify_only]})")

    def jwks(self) -> dict[str, Any]:
        """The public JWKS for ``/.well-known/jwks.json``: public halves of asymmetric keys only. HMAC keys
        are secrets and are never published, so an HS256 ring gives ``{"keys": []}``."""
        keys = []
        for key in (self.active, *self.verify_only):
            jwk = key.to_jwk(private=False) if _is_asymmetric(key) else None
            if jwk is not None:
                keys.append(dict(jwk))
        return {"keys": keys}

    @classmethod
    def from_secret(cls, secret: bytes) -> KeyRing:
        """An HS256 ring from a shared secret (``JWT_SECRET``), with ``kid`` = its RFC 7638 thumbprint.

        Raises:
            ServiceConfigError (``service_config``): the secret is shorter than 32 bytes.
        """
        if isinstance(secret, str):
            secret = secret.encode("utf-8")
        if not isinstance(secret, bytes | bytearray) or len(secret) < MIN_SECRET_LENGTH:
            length = len(secret) if isinstance(secret, bytes | bytearray) else 0
            raise ServiceConfigError(
                f"JWT_SECRET must be at least {MIN_SECRET_LENGTH} bytes (got {length}); generate one with "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
        try:
            probe = Key.from_secret(bytes(secret), "HS256")
            return cls(Key.from_secret(bytes(secret), "HS256", kid=probe.thumbprint()))
        except JWTError as exc:
            raise ServiceConfigError(f"JWT_SECRET is not usable: {exc}") from exc

    @classmethod
    def generate(cls, alg: str = "HS256") -> KeyRing:
        """A ring with one fresh key (32 random bytes for HS256), ``kid`` = its thumbprint."""
        return cls(_generate(alg))

    # files ------------------------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, now: float | None = None) -> KeyRing:
        """Read a key file written by :meth:`load_or_create` or :meth:`rotate`: the ring as it stands ``now``
        (default: the wall clock). The ring is fixed: a key scheduled to sign later stays verify-only in it;
        :class:`KeyRingFile` follows the file and its schedule instead.

        Raises:
            ServiceConfigError (``service_config``): missing, unreadable, malformed, or readable by group or
                others (mode looser than 0600).
        """
        entries, _ = _read(Path(path))
        return _ring_at(entries, time.time() if now is None else now)

    @classmethod
    def load_or_create(cls, path: str | os.PathLike[str], alg: str = "HS256") -> KeyRing:
        """Load the key file, or create it on first run with one fresh ``alg`` key, mode 0600.

        Creation is atomic and never overwrites: two processes starting together end up with the same key.

        Raises:
            ServiceConfigError (``service_config``): see :meth:`load`.
        """
        file = Path(path)
        if file.exists():
            return cls.load(file)
        ring = cls.generate(alg)
        try:
            _write_new(file, [_Entry(ring.active, created_at=time.time())])
        except FileExistsError:
            return cls.load(file)
        logger.info("created key file %s (%s, kid %s)", file, ring.active.alg, ring.active.kid)
        return ring

    @classmethod
    def rotate(
        cls,
        path: str | os.PathLike[str],
        alg: str | None = None,
        *,
        retire_after: float = DEFAULT_RETIRE_AFTER,
        activate_in: float = 0.0,
        now: float | None = None,
    ) -> KeyRing:
        """Add a new key to the key file (creating the file if missing) that signs from ``now +
        activate_in``; until then it is published and verifies, and the current key goes on signing. The key
        it succeeds becomes verify-only then, for ``retire_after`` seconds (set it to the refresh token
        lifetime: the longest-lived token that key signed). Keys whose retire window has ended are dropped,
        since no unexpired token can carry their ``kid``.

        A missing file gets a key that signs at once: no server has published anything from it yet. The
        rewrite is atomic (a temporary file, then ``os.replace``), and two rotations at once are serialised
        (``flock`` on the file), so neither loses the other's key.

        Returns:
            The ring as it will be once the new key signs (``ring.active`` is the new key).

        Raises:
            ServiceConfigError (``service_config``): see :meth:`load`; a bad ``alg``; a negative time.
        """
        if retire_after < 0 or activate_in < 0:
            raise ServiceConfigError("retire_after and activate_in must not be negative")
        file = Path(path)
        when = time.time() if now is None else now
        if not file.exists():
            first = _generate(alg or "HS256")
            try:
                _write_new(file, [_Entry(first, created_at=when)])
            except FileExistsError:
                pass  # created meanwhile: rotate it like any other
            else:
                logger.info("created key file %s (%s, kid %s)", file, first.alg, first.kid)
                return cls(first)
        with _locked(file):
            entries, _ = _read(file)
            newest = next(entry for entry in entries if entry.retired_at is None)
            new_key = _generate(alg or newest.key.alg)
            start = when + activate_in  # before a next key's time, too: then that one never signs
            kept = _rotated(entries, new_key, when=when, start=start, retire_after=retire_after)
            _replace(file, kept)
        logger.info("rotated key file %s: new %s key %s signs from %.0f, %d other keys", file, new_key.alg,
                    new_key.kid, start, len(kept) - 1)
        return _ring_at(kept, start)

    @classmethod
    def prune(
        cls, path: str | os.PathLike[str], *, retire_after: float = DEFAULT_RETIRE_AFTER,
        now: float | None = None,
    ) -> list[str]:
        """Drop the retired keys from the key file (those whose retire window has ended; for a key written
        before windows were recorded, ``retire_after`` seconds after it retired). Returns their ``kid``s;
        the file is rewritten (atomically) only when there is one."""
        file = Path(path)
        when = time.time() if now is None else now
        with _locked(file):
            entries, _ = _read(file)
            kept = [entry for entry in entries if not _spent(entry, when, retire_after)]
            dropped = [str(entry.key.kid) for entry in entries if entry not in kept]
            if dropped:
                _replace(file, kept)
        if dropped:
            logger.info("pruned key file %s: dropped %s", file, ", ".join(dropped))
        return dropped

    @classmethod
    def list_keys(cls, path: str | os.PathLike[str], *, now: float | None = None) -> list[KeyInfo]:
        """What the key file holds and what each key does ``now``, in the file's order (newest first)."""
        entries, _ = _read(Path(path))
        return _infos(entries, time.time() if now is None else now)


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyInfo:
    """One key of a key file, as :meth:`KeyRing.list_keys` describes it (times are POSIX seconds, None when
    not set or not recorded).

    ``state``: ``next`` (published, verifies, signs from ``active_from``), ``active`` (signs), ``retiring``
    (verifies until ``verify_until``), ``retired`` (verifies nothing; the next rotation or prune drops it).
    ``published``: whether ``/.well-known/jwks.json`` lists it while it verifies (asymmetric keys only).
    """

    kid: str | None
    alg: str
    state: KeyState
    published: bool
    created_at: float | None
    active_from: float | None
    retired_at: float | None
    verify_until: float | None


class FollowedRing:
    """What a ring that changes while the process runs answers from its ``ring`` of the moment: the signing
    key, the verification keys (also as :class:`KeyProvider` ``current()``) and the public JWKS. One home
    for the key file's ring and the shared store's."""

    @property
    def ring(self) -> KeyRing:
        raise NotImplementedError

    @property
    def active(self) -> Key:
        """The key that signs now."""
        return self.ring.active

    @property
    def keyset(self) -> KeySet:
        """Every key that verifies now: the active one, the next one once published, the retiring ones."""
        return self.ring.keyset

    def jwks(self) -> dict[str, Any]:
        """The public JWKS of the keys that verify now (see :meth:`KeyRing.jwks`)."""
        return self.ring.jwks()

    def current(self) -> KeySet:
        """The verification keys now (KeyProvider); no waiting."""
        return self.ring.keyset


class KeyRingFile(FollowedRing):
    """The key ring of a key file, followed while the process runs: the :class:`KeyProvider` of the
    service's access policy, and the source of its signing key and JWKS.

    :meth:`current` (asked on every request) looks at the file at most once every ``check_every`` seconds,
    with one ``stat``, and reads it again only when that changed (inode, size, mtime or ctime): a rotation
    is seen within ``check_every`` seconds, and a key scheduled to sign later starts signing at its time
    with no look at all. :meth:`refresh` looks at once (at most once every ``refresh_cooldown`` seconds):
    the policy asks it when a token names a ``kid`` the ring lacks, so a token signed by a worker or node
    that saw the rotation first verifies here too. A file that cannot be read (missing, half written by a
    hand edit, bad JSON, too open) keeps the ring loaded before, with one warning per version of the file.

    Args:
        path: the key file (it must exist: see :meth:`load_or_create`).
        check_every: seconds between two looks at the file.
        refresh_cooldown: seconds between two looks asked for by :meth:`refresh`.
        clock: POSIX time; tests pin it.

    Raises:
        ServiceConfigError (``service_config``): the file cannot be read now (as :meth:`KeyRing.load`).

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "jwtkit.key"
        >>> keys = KeyRingFile.load_or_create(path)
        >>> before = keys.active.kid
        >>> _ = KeyRing.rotate(path)
        >>> keys.refresh_now("a new kid"), keys.active.kid != before
        (True, True)
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        check_every: float = CHECK_EVERY,
        refresh_cooldown: float = REFRESH_COOLDOWN,
        clock: Callable[[], float] = time.time,
    ) -> None:
        for name, value in (("check_every", check_every), ("refresh_cooldown", refresh_cooldown)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
                raise ValueError(f"{name} must be a non-negative number of seconds")
        self.path = Path(path)
        self.check_every = float(check_every)
        self.refresh_cooldown = float(refresh_cooldown)
        self.clock = clock
        entries, signature = _read(self.path)
        now = clock()
        self._loaded = _Loaded(signature, entries, now)
        self._looked_at = now
        self._last_refresh = -math.inf
        self._refused: _Signature | None = None  # the version of the file that failed to load, logged once

    @classmethod
    def load_or_create(cls, path: str | os.PathLike[str], alg: str = "HS256", **options: Any) -> KeyRingFile:
        """Follow the key file, creating it first if missing (as :meth:`KeyRing.load_or_create`)."""
        KeyRing.load_or_create(path, alg)
        return cls(path, **options)

    def __repr__(self) -> str:
        return f"KeyRingFile({str(self.path)!r}, {self._loaded.ring!r})"

    # the ring now --------------------------------------------------------------------------------------

    @property
    def ring(self) -> KeyRing:
        """The ring as it stands now (after a look at the file, when ``check_every`` has passed)."""
        now = self.clock()
        if not 0 <= now - self._looked_at < self.check_every:  # due, or the clock moved back
            self._look(now)
        loaded = self._loaded
        if now >= loaded.next_change or now < loaded.since:
            loaded = self._reschedule(loaded, now)
        return loaded.ring

    # KeyProvider ---------------------------------------------------------------------------------------

    async def refresh(self, kid: str | None) -> bool:
        """Look at the file at once (see :meth:`refresh_now`)."""
        return self.refresh_now(kid)

    def refresh_now(self, kid: str | None = None) -> bool:
        """Look at the file now, unless the last such look was less than ``refresh_cooldown`` seconds ago;
        True when the ring changed (a token naming ``kid`` is worth a second try)."""
        now = self.clock()
        if 0 <= now - self._last_refresh < self.refresh_cooldown:
            return False
        self._last_refresh = now
        before = self._loaded.ring
        self._look(now)
        changed = self.ring is not before
        if changed:
            logger.debug("key file %s reloaded for a token with kid %r", self.path, kid)
        return changed

    # internals -----------------------------------------------------------------------------------------

    def _look(self, now: float) -> None:
        self._looked_at = now
        try:
            signature = _signature(os.stat(self.path))
        except OSError:
            signature = _MISSING
        if signature == self._loaded.signature or signature == self._refused:
            return  # unchanged, or this version already failed (and was logged)
        try:
            entries, signature = _read(self.path)
        except ServiceConfigError as exc:
            logger.warning("key file %s changed but cannot be loaded (%s); still using the keys loaded "
                           "before (active %s)", self.path, exc, self._loaded.ring.active.kid)
            self._refused = signature
            return
        self._refused = None
        loaded = _Loaded(signature, entries, now)
        self._loaded = loaded
        logger.info("key file %s reloaded: %s key %s signs, %d other keys verify", self.path,
                    loaded.ring.active.alg, loaded.ring.active.kid, len(loaded.ring.verify_only))

    def _reschedule(self, loaded: _Loaded, now: float) -> _Loaded:
        """The same file at a later time: a next key starts signing, or a retire window ends."""
        again = _Loaded(loaded.signature, loaded.entries, now)
        if again.ring.active.kid != loaded.ring.active.kid:
            logger.info("key %s signs from now (scheduled in %s)", again.ring.active.kid, self.path)
        self._loaded = again
        return again


# --- the schedule ------------------------------------------------------------------------------------------

_Signature = tuple[int, int, int, int, int]
_MISSING: _Signature = (-1, -1, -1, -1, -1)


def _signature(st: os.stat_result) -> _Signature:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@dataclass(frozen=True, slots=True, eq=False)
class _Entry:
    """One key of a key file and its schedule (see the module docstring)."""

    key: Key
    created_at: float | None = None
    active_from: float | None = None
    retired_at: float | None = None
    verify_until: float | None = None

    def state(self, now: float) -> KeyState:
        if self.verify_until is not None and now >= self.verify_until:
            return "retired"
        if self.retired_at is not None and now >= self.retired_at:
            return "retiring"  # (a next key that a later rotation overtook never signs)
        if self.active_from is not None and now < self.active_from:
            return "next"
        return "active"

    def changes(self) -> tuple[float, ...]:
        times = (self.active_from, self.retired_at, self.verify_until)
        return tuple(when for when in times if when is not None)


class _Loaded:
    """One version of the key file and the ring it gives from ``since`` until ``next_change``."""

    __slots__ = ("entries", "next_change", "ring", "signature", "since")

    def __init__(self, signature: _Signature, entries: Sequence[_Entry], now: float) -> None:
        self.signature = signature
        self.entries = tuple(entries)
        self.since = now
        self.ring = _ring_at(self.entries, now)
        self.next_change = min((when for entry in self.entries for when in entry.changes() if when > now),
                               default=math.inf)


def _signing(entries: Sequence[_Entry], now: float) -> _Entry:
    """The key that signs at ``now``: of the active ones, the latest to start (one, in a file that rotate
    wrote); with none (a clock behind the file's), the next key due first."""
    active = [entry for entry in entries if entry.state(now) == "active"]
    if active:
        return max(active, key=lambda entry: -math.inf if entry.active_from is None else entry.active_from)
    pending = [entry for entry in entries if entry.state(now) == "next"]
    return min(pending, key=lambda entry: entry.active_from or 0.0)  # _read ensures one key has not retired


def _demoted(state: KeyState) -> KeyState:
    return "retiring" if state == "active" else state  # a second active key (a hand edit) only verifies


def _ring_at(entries: Sequence[_Entry], now: float) -> KeyRing:
    signing = _signing(entries, now)
    others = [entry for entry in entries if entry is not signing and entry.state(now) != "retired"]
    # next keys first, then the rest by retirement, newest first
    others.sort(key=lambda entry: (entry.state(now) != "next", -(entry.retired_at or math.inf)))
    return KeyRing(signing.key, [entry.key for entry in others])


def _spent(entry: _Entry, now: float, retire_after: float) -> bool:
    """Whether no unexpired token can carry this key's kid any more."""
    if entry.verify_until is not None:
        return now >= entry.verify_until
    return entry.retired_at is not None and now - entry.retired_at >= retire_after  # a file from before


# --- the file ----------------------------------------------------------------------------------------------


def _is_asymmetric(key: Key) -> bool:
    return not key.alg.startswith("HS")


def _generate(alg: str) -> Key:
    try:
        key = Key.generate(alg)
        return Key.from_jwk({**key.to_jwk(private=True), "kid": key.thumbprint()}, alg)
    except JWTError as exc:
        raise ServiceConfigError(f"cannot generate a {alg!r} key: {exc}") from exc


def _jwk(entry: _Entry) -> dict[str, Any]:
    key = entry.key
    jwk = dict(key.to_jwk(private=True))
    jwk["alg"] = key.alg
    if key.kid is not None:
        jwk["kid"] = key.kid
    for name in _TIMES:
        value = getattr(entry, name)
        if value is not None:
            jwk[name] = value
    return jwk


def _read(file: Path) -> tuple[list[_Entry], _Signature]:
    """The entries of a key file, newest first, and the signature of the version that was read."""
    try:
        fd = os.open(file, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise ServiceConfigError(f"key file {file} does not exist") from None
    except OSError as exc:
        raise ServiceConfigError(f"cannot open key file {file}: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as handle:
        status = os.fstat(handle.fileno())
        if stat.S_IMODE(status.st_mode) & 0o077:
            raise ServiceConfigError(
                f"key file {file} is readable by others (mode {stat.S_IMODE(status.st_mode):04o}); "
                f"it holds private keys: run `chmod 600 {file}`"
            )
        raw = handle.read(1 << 20)
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ServiceConfigError(f"key file {file} is not JSON: {exc}") from exc
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list) or not keys:
        raise ServiceConfigError(f"key file {file} must be a JWKS object with a non-empty \"keys\" list")
    entries = _entries(keys, f"key file {file}")
    return entries, _signature(status)


def _entry(item: object, where: str, index: int) -> _Entry:
    """One key of a key ring document: a private JWK with its schedule (``where`` names the document)."""
    if not isinstance(item, Mapping):
        raise ServiceConfigError(f"{where}: key {index} is not an object")
    jwk = dict(item)
    times: dict[str, float | None] = {}
    for name in _TIMES:
        value = jwk.pop(name, None)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                  or not math.isfinite(value)):
            raise ServiceConfigError(f"{where}: key {index} has a bad {name}")
        times[name] = None if value is None else float(value)
    try:
        key = Key.from_jwk(jwk)
    except JWTError as exc:
        raise ServiceConfigError(f"{where}: key {index} is refused: {exc}") from exc
    if not key.is_private:
        raise ServiceConfigError(f"{where}: key {index} is a public key; the ring holds private "
                                 "keys (`jwtkit keys rotate` writes them)")
    if times[_VERIFY_UNTIL] is not None and times[_RETIRED_AT] is None:
        raise ServiceConfigError(f"{where}: key {index} has {_VERIFY_UNTIL} but no {_RETIRED_AT}")
    return _Entry(key, **times)


def _entries(keys: Sequence[object], where: str) -> list[_Entry]:
    """The entries of a key ring document (JWK objects, or entries already parsed), checked (one key that
    has not retired, distinct kids) and sorted newest first."""
    entries = [item if isinstance(item, _Entry) else _entry(item, where, index)
               for index, item in enumerate(keys)]
    if sum(entry.retired_at is None for entry in entries) != 1:
        raise ServiceConfigError(
            f"{where} must have exactly one key without {_RETIRED_AT} (the newest, active or next)")
    kids = [entry.key.kid for entry in entries if entry.key.kid is not None]
    if len(kids) != len(set(kids)):
        raise ServiceConfigError(f"{where}: two keys share a kid")
    # newest first: the key that has not retired, then by retirement, latest first
    entries.sort(key=lambda entry: (entry.retired_at is not None, -(entry.retired_at or 0.0)))
    return entries


def _rotated(entries: Sequence[_Entry], new_key: Key, *, when: float, start: float,
             retire_after: float) -> list[_Entry]:
    """The ring after a rotation at ``when``: ``new_key`` signs from ``start``, the key(s) that would sign
    after it retire then (verifying for ``retire_after`` more seconds), spent keys are dropped."""
    kept = [_Entry(new_key, created_at=when, active_from=start)]
    for entry in entries:
        if entry.retired_at is None or entry.retired_at > start:  # it would sign after `start`
            entry = dataclasses.replace(entry, retired_at=start, verify_until=start + retire_after)
        if not _spent(entry, when, retire_after):
            kept.append(entry)
    return kept


def _infos(entries: Sequence[_Entry], when: float) -> list[KeyInfo]:
    signing = _signing(entries, when)
    return [KeyInfo(kid=entry.key.kid, alg=entry.key.alg,
                    state="active" if entry is signing else _demoted(entry.state(when)),
                    published=_is_asymmetric(entry.key), created_at=entry.created_at,
                    active_from=entry.active_from, retired_at=entry.retired_at,
                    verify_until=entry.verify_until)
            for entry in entries]


def _dump(entries: Sequence[_Entry]) -> bytes:
    return (json.dumps({"keys": [_jwk(entry) for entry in entries]}, indent=2) + "\n").encode("utf-8")


@contextlib.contextmanager
def _locked(file: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the key file (the inode ``file`` names when the lock is granted: a
    rotation that finished meanwhile replaced it, so look again)."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    while True:
        try:
            fd = os.open(file, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            raise ServiceConfigError(f"key file {file} does not exist") from None
        except OSError as exc:
            raise ServiceConfigError(f"cannot open key file {file}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            held = os.fstat(fd)
            try:
                named: os.stat_result | None = os.stat(file)
            except FileNotFoundError:
                named = None
            if named is not None and (held.st_dev, held.st_ino) == (named.st_dev, named.st_ino):
                yield
                return
        finally:
            os.close(fd)  # also releases the lock


def _write_tmp(file: Path, data: bytes) -> Path:
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_name(f".{file.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    # O_EXCL + mode 0600 from the first byte: the key is never readable by others, not even briefly.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return tmp


def _write_new(file: Path, entries: Sequence[_Entry]) -> None:
    """Create ``file`` with complete content, or raise FileExistsError if it appeared meanwhile."""
    tmp = _write_tmp(file, _dump(entries))
    try:
        os.link(tmp, file)  # atomic create-if-absent with the content already in place
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def _replace(file: Path, entries: Sequence[_Entry]) -> None:
    """Rewrite ``file`` atomically: readers see the old content or the new, never a part of either."""
    tmp = _write_tmp(file, _dump(entries))
    try:
        os.replace(tmp, file)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _sync_dir(file.parent)


def _sync_dir(directory: Path) -> None:
    """Make the rename durable (POSIX: the directory entry lives in the directory)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
