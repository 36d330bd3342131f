"""The key ring kept in a shared store (Redis; any store with :class:`jwtkit.store.KeyRingRecords`), so that
every node signs and verifies with one ring and ``jwtkit keys rotate`` run anywhere reaches them all.

The ring is the same schedule as a key file (:mod:`jwtkit.service._keyring`: ``created_at``,
``active_from``, ``retired_at``, ``verify_until``; states next, active, retiring, retired), held in one
store record with a version. Every write is one compare-and-set on that version (atomic on the server), so
the first start on an empty store creates the ring once however many nodes start together, and two
rotations at once are serialised: the one that loses reads the ring again and rotates that (a ring that
keeps changing under it for :data:`SWAP_ATTEMPTS` tries is an error that says so). Never two active keys.

Private keys at rest are sealed with AES-256-GCM under the key-encryption key (``JWTKIT_KEY_ENCRYPTION_KEY``,
32 bytes): each key is one record, ``{"kid", "alg", "nonce", "sealed"}``, its JWK *and* schedule encrypted
with a fresh 96-bit random nonce, and ``jwtkit key ring|<version>|<kid>`` as associated data, so a record
cannot be moved to another kid or replayed into another version of the ring. A wrong key-encryption key, or
an altered record, fails the GCM tag: at start-up that is a :class:`ServiceConfigError`; while running, the
node logs it and keeps the ring it had.

:class:`StoreKeyRing` follows the record while the process runs, as :class:`KeyRingFile` follows a file:
:meth:`~StoreKeyRing.current` (every request, no I/O) starts a look in the background at most once every
``check_every`` seconds (one small read of the version) and reloads the ring only when the version moved;
:meth:`~StoreKeyRing.refresh` looks at once (at most once every ``refresh_cooldown`` seconds) when a token
names a ``kid`` the ring lacks.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from jwtkit import Key
from jwtkit.service._errors import ServiceConfigError
from jwtkit.service._keyring import (
    CHECK_EVERY,
    DEFAULT_RETIRE_AFTER,
    REFRESH_COOLDOWN,
    FollowedRing,
    KeyInfo,
    KeyRing,
    _entries,
    _Entry,
    _generate,
    _infos,
    _jwk,
    _Loaded,
    _ring_at,
    _rotated,
    _spent,
)
from jwtkit.service._keyring import (
    _read as _read_file,
)
from jwtkit.store import KeyRingRecords, StoreUnavailable

__all__ = ["SWAP_ATTEMPTS", "StoreKeyRing", "import_key_file", "list_stored_keys", "prune_stored_ring",
           "rotate_stored_ring"]

logger = logging.getLogger("jwtkit.service._keyring_store")

SWAP_ATTEMPTS = 8  # compare-and-set tries before a write that keeps losing gives up
_FORMAT = 1
_NONCE_BYTES = 12  # 96 bits, the GCM nonce size
_UNDECRYPTABLE = "the key-encryption key does not decrypt the key ring"


def _where(store: KeyRingRecords) -> str:
    return f"the key ring in store {getattr(store, 'url', '?')}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: object) -> bytes:
    if not isinstance(text, str):
        raise ValueError("not a string")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _aad(version: int, kid: str) -> bytes:
    return f"jwtkit key ring|{version}|{kid}".encode()


def _seal(entries: Sequence[_Entry], kek: bytes, version: int) -> str:
    """The store document of ``entries`` as version ``version``: every private key sealed on its own."""
    aead = AESGCM(kek)
    records = []
    for entry in entries:
        kid = str(entry.key.kid)
        nonce = os.urandom(_NONCE_BYTES)
        plain = json.dumps(_jwk(entry), separators=(",", ":")).encode("utf-8")
        records.append({"kid": kid, "alg": entry.key.alg, "nonce": _b64(nonce),
                        "sealed": _b64(aead.encrypt(nonce, plain, _aad(version, kid)))})
    return json.dumps({"format": _FORMAT, "keys": records}, separators=(",", ":"))


def _unseal(document: str, kek: bytes, version: int, where: str) -> list[_Entry]:
    """The entries of a store document (see the module docstring), checked as a key file is.

    Raises:
        ServiceConfigError: malformed, or a record the key-encryption key does not open (wrong key,
            altered or moved record).
    """
    try:
        parsed = json.loads(document)
    except ValueError as exc:
        raise ServiceConfigError(f"{where} is not JSON: {exc}") from exc
    records = parsed.get("keys") if isinstance(parsed, dict) else None
    if not isinstance(parsed, dict) or parsed.get("format") != _FORMAT or not isinstance(records, list) \
            or not records:
        raise ServiceConfigError(f"{where} is not a key ring document this jwtkit knows (format {_FORMAT})")
    aead = AESGCM(kek)
    jwks: list[object] = []
    for index, record in enumerate(records):
        if not isinstance(record, dict) or not isinstance(record.get("kid"), str):
            raise ServiceConfigError(f"{where}: key {index} is not a sealed key record")
        kid = record["kid"]
        try:
            nonce, sealed = _unb64(record.get("nonce")), _unb64(record.get("sealed"))
            plain = aead.decrypt(nonce, sealed, _aad(version, kid))
        except InvalidTag:
            raise ServiceConfigError(
                f"{_UNDECRYPTABLE} in {where.removeprefix('the key ring in ')} (key {kid!r}): a wrong "
                "key-encryption key, or a record that was altered") from None
        except (ValueError, binascii.Error) as exc:
            raise ServiceConfigError(f"{where}: key {index} is not a sealed key record ({exc})") from exc
        jwk = json.loads(plain)
        if not isinstance(jwk, dict) or jwk.get("kid") != kid:
            raise ServiceConfigError(f"{where}: key {index} does not hold the key its record names")
        jwks.append(jwk)
    return _entries(jwks, where)


def _check_kek(kek: object) -> bytes:
    if not isinstance(kek, bytes | bytearray) or len(kek) != 32:
        raise ServiceConfigError("the key-encryption key must be 32 bytes (JWTKIT_KEY_ENCRYPTION_KEY, as "
                                 "`jwtkit secret` prints it)")
    return bytes(kek)


async def _read(store: KeyRingRecords, kek: bytes) -> tuple[int, list[_Entry]] | None:
    found = await store.ring_read()
    if found is None:
        return None
    version, document = found
    return version, _unseal(document, kek, version, _where(store))


async def _load_or_create(store: KeyRingRecords, kek: bytes, alg: str,
                          now: float) -> tuple[int, list[_Entry], bool]:
    """The ring and whether this call created it (one key that signs at once) because the store had none;
    create-if-absent, so nodes that start together all end up with the one ring the first of them wrote."""
    found = await _read(store, kek)
    if found is not None:
        return *found, False
    first = [_Entry(_generate(alg), created_at=now)]
    if await store.ring_swap(0, _seal(first, kek, 1)):
        logger.info("created %s (%s, kid %s)", _where(store), first[0].key.alg, first[0].key.kid)
        return 1, first, True
    found = await _read(store, kek)  # another node created it first
    if found is None:  # pragma: no cover - a swap lost to a ring that vanished at once
        raise StoreUnavailable(f"{_where(store)} was created and removed meanwhile; start again")
    return *found, False


async def _swap(
    store: KeyRingRecords, kek: bytes, alg: str, change: Callable[[list[_Entry]], list[_Entry] | None],
    now: float,
) -> tuple[int, list[_Entry]]:
    """Apply ``change`` to the stored ring with compare-and-set, reading again after each lost race.
    ``change`` returning None means: nothing to write."""
    for _ in range(SWAP_ATTEMPTS):
        version, entries, _ = await _load_or_create(store, kek, alg, now)
        changed = change(entries)
        if changed is None:
            return version, entries
        if await store.ring_swap(version, _seal(changed, kek, version + 1)):
            return version + 1, changed
        logger.info("%s changed during a write (version %d); reading it again", _where(store), version)
    raise ServiceConfigError(f"{_where(store)} kept changing during {SWAP_ATTEMPTS} tries to write it (other "
                             "rotations at the same time?); try again")


async def rotate_stored_ring(
    store: KeyRingRecords, kek: bytes, alg: str | None = None, *, retire_after: float = DEFAULT_RETIRE_AFTER,
    activate_in: float = 0.0, now: float | None = None,
) -> KeyRing:
    """:meth:`KeyRing.rotate` for the ring in a shared store: one compare-and-set (retried on a lost race),
    so two rotations at once end with both keys in order and one active key. An empty store gets a ring whose
    key signs at once. Returns the ring as it will be once the new key signs."""
    if retire_after < 0 or activate_in < 0:
        raise ServiceConfigError("retire_after and activate_in must not be negative")
    kek = _check_kek(kek)
    when = time.time() if now is None else now
    _, entries, created = await _load_or_create(store, kek, alg or "HS256", when)
    if created:
        return _ring_at(entries, when)  # nothing was published from this ring yet: its first key signs now
    start = when + activate_in
    made: list[Key] = []

    def rotate(current: list[_Entry]) -> list[_Entry]:
        if not made:  # one new key, kept across retries (its kid is the one reported)
            newest = next(entry for entry in current if entry.retired_at is None)
            made.append(_generate(alg or newest.key.alg))
        return _rotated(current, made[0], when=when, start=start, retire_after=retire_after)

    _, kept = await _swap(store, kek, alg or "HS256", rotate, when)
    logger.info("rotated %s: new %s key %s signs from %.0f, %d other keys", _where(store), made[0].alg,
                made[0].kid, start, len(kept) - 1)
    return _ring_at(kept, start)


async def prune_stored_ring(store: KeyRingRecords, kek: bytes, *, retire_after: float = DEFAULT_RETIRE_AFTER,
                            now: float | None = None) -> list[str]:
    """:meth:`KeyRing.prune` for the ring in a shared store; the ``kid`` s dropped."""
    kek = _check_kek(kek)
    when = time.time() if now is None else now
    dropped: list[str] = []

    def prune(current: list[_Entry]) -> list[_Entry] | None:
        kept = [entry for entry in current if not _spent(entry, when, retire_after)]
        dropped[:] = [str(entry.key.kid) for entry in current if entry not in kept]
        return kept if dropped else None

    await _swap(store, kek, "HS256", prune, when)
    return dropped


async def import_key_file(store: KeyRingRecords, kek: bytes, path: str | os.PathLike[str]) -> list[KeyInfo]:
    """Put the keys of a local key file, with their schedule, into a shared store that has no key ring yet
    (one create-if-absent: the move from one machine to several keeps every key and token valid).

    Raises:
        ServiceConfigError (``service_config``): the file cannot be read (see :meth:`KeyRing.load`), or the
            store has a key ring already (it is never overwritten).
    """
    kek = _check_kek(kek)
    entries, _ = _read_file(Path(path))
    if not await store.ring_swap(0, _seal(entries, kek, 1)):
        raise ServiceConfigError(f"{_where(store)} exists already (version {await store.ring_version()}): "
                                 "import only fills an empty store, and never overwrites a ring")
    logger.info("imported key file %s into %s (%d keys)", path, _where(store), len(entries))
    return _infos(entries, time.time())


async def list_stored_keys(store: KeyRingRecords, kek: bytes, *, now: float | None = None) -> list[KeyInfo]:
    """:meth:`KeyRing.list_keys` for the ring in a shared store (an empty store: no keys)."""
    found = await _read(store, _check_kek(kek))
    return [] if found is None else _infos(found[1], time.time() if now is None else now)


class StoreKeyRing(FollowedRing):
    """The key ring in a shared store, followed while the process runs: the :class:`KeyProvider` of the
    service's access policy and the source of its signing key and JWKS, as :class:`KeyRingFile` is for a
    file. :meth:`open` (called by ``AuthService.open``) loads it, creating it on an empty store.

    A rotation made anywhere is seen within ``check_every`` seconds of the first request after it (plus one
    round trip); a key scheduled to sign later starts signing at its time with no look at all.

    Raises:
        ServiceConfigError (``service_config``): from :meth:`open`: the key-encryption key does not decrypt
            the ring, or the ring is malformed.
    """

    def __init__(
        self, store: KeyRingRecords, key_encryption_key: bytes, *, alg: str = "HS256",
        check_every: float = CHECK_EVERY, refresh_cooldown: float = REFRESH_COOLDOWN,
        clock: Callable[[], float] = time.time,
    ) -> None:
        for name, value in (("check_every", check_every), ("refresh_cooldown", refresh_cooldown)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
                raise ValueError(f"{name} must be a non-negative number of seconds")
        self.store = store
        self._kek = _check_kek(key_encryption_key)
        self.alg = alg
        self.check_every = float(check_every)
        self.refresh_cooldown = float(refresh_cooldown)
        self.clock = clock
        self._loaded: _Loaded | None = None
        self._version = 0
        self._looked_at = -math.inf
        self._last_refresh = -math.inf
        self._refused: int | None = None  # the version that failed to load, logged once
        self._look_task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        ring = "not loaded" if self._loaded is None else repr(self._loaded.ring)
        return f"StoreKeyRing({getattr(self.store, 'url', '?')!r}, version {self._version}, {ring})"

    @property
    def version(self) -> int:
        """The version of the stored ring this process has loaded (0 before :meth:`open`)."""
        return self._version

    async def open(self) -> None:
        """Load the ring from the store (the store must be open), creating it there if it has none."""
        if self._loaded is not None:
            return
        now = self.clock()
        version, entries, _ = await _load_or_create(self.store, self._kek, self.alg, now)
        self._set(version, entries, now)
        self._looked_at = now

    async def close(self) -> None:
        """Stop a look in flight."""
        task, self._look_task = self._look_task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # the ring now --------------------------------------------------------------------------------------

    @property
    def ring(self) -> KeyRing:
        """The ring as it stands now; starts a look at the store in the background when one is due."""
        loaded = self._loaded
        if loaded is None:
            raise ServiceConfigError("the key ring in the store is not loaded: open the service first")
        now = self.clock()
        if not 0 <= now - self._looked_at < self.check_every:  # due, or the clock moved back
            self._start_look(now)
        if now >= loaded.next_change or now < loaded.since:
            loaded = _Loaded(loaded.signature, loaded.entries, now)
            if loaded.ring.active.kid != self._loaded.ring.active.kid:  # type: ignore[union-attr]
                logger.info("key %s signs from now (scheduled in the stored ring)", loaded.ring.active.kid)
            self._loaded = loaded
        return loaded.ring

    # KeyProvider ---------------------------------------------------------------------------------------

    async def refresh(self, kid: str | None) -> bool:
        """Look at the store now, unless the last such look was less than ``refresh_cooldown`` seconds ago;
        True when the ring changed (a token naming ``kid`` is worth a second try)."""
        now = self.clock()
        if 0 <= now - self._last_refresh < self.refresh_cooldown:
            return False
        self._last_refresh = now
        before = self._version
        await self.look()
        changed = self._version != before
        if changed:
            logger.debug("stored key ring reloaded for a token with kid %r", kid)
        return changed

    async def look(self) -> None:
        """Look at the store now: one read of the version, and the ring again when it moved. A store that
        does not answer, or a version that does not decrypt, is logged; the ring loaded before stays."""
        now = self.clock()
        self._looked_at = now
        try:
            version = await self.store.ring_version()
            if version in (self._version, self._refused):
                return
            found = await self.store.ring_read()
            if found is None:
                return
            version, document = found
            entries = _unseal(document, self._kek, version, _where(self.store))
        except StoreUnavailable as exc:
            logger.warning("cannot look at the stored key ring (%s); still using version %d", exc,
                           self._version)
            return
        except ServiceConfigError as exc:
            logger.warning("%s changed to version %d but cannot be loaded (%s); still using version %d",
                           _where(self.store), version, exc, self._version)
            self._refused = version
            return
        self._refused = None
        self._set(version, entries, self.clock())

    async def settled(self) -> None:
        """Wait for a background look in flight (tests)."""
        task = self._look_task
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    # internals -----------------------------------------------------------------------------------------

    def _set(self, version: int, entries: Sequence[_Entry], now: float) -> None:
        loaded = _Loaded((version, 0, 0, 0, 0), entries, now)
        self._loaded, self._version = loaded, version
        logger.info("%s loaded (version %d): %s key %s signs, %d other keys verify", _where(self.store),
                    version, loaded.ring.active.alg, loaded.ring.active.kid, len(loaded.ring.verify_only))

    def _start_look(self, now: float) -> None:
        if self._look_task is not None and not self._look_task.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no event loop (a synchronous caller): the next request inside one looks
        self._looked_at = now
        self._look_task = loop.create_task(self.look(), name="jwtkit key ring look")
