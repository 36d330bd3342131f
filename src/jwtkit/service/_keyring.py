"""The key ring: one active signing key plus older keys that still verify until their tokens have expired
(rotation by ``kid``), from ``JWT_SECRET`` or from a 0600 JWKS file created on first run. Never a built-in
secret: the tutorial's example accepted tokens forged with its published default secret."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jwtkit import JWTError, Key, KeySet
from jwtkit.service._errors import ServiceConfigError

__all__ = ["DEFAULT_RETIRE_AFTER", "MIN_SECRET_LENGTH", "KeyRing"]

logger = logging.getLogger("jwtkit.service._keyring")

MIN_SECRET_LENGTH = 32  # RFC 7518 §3.2: an HS256 key at least as long as the hash output
DEFAULT_RETIRE_AFTER = 14 * 86400.0  # the default refresh_ttl: the longest-lived token a retired key signed
_RETIRED_AT = "retired_at"  # our private JWK member (RFC 7517 §4: unknown members are ignored by others)


class KeyRing:
    """The active signing key and the verify-only keys, as one :class:`jwtkit.KeySet` for decoding.

    Args:
        active: the key new tokens are signed with; it must be private (or an HMAC secret).
        verify_only: older keys that still verify tokens they signed.

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
    def load(cls, path: str | os.PathLike[str]) -> KeyRing:
        """Read a key file written by :meth:`load_or_create` or :meth:`rotate`.

        Raises:
            ServiceConfigError (``service_config``): missing, unreadable, malformed, or readable by group or
                others (mode looser than 0600).
        """
        ring, _ = _read(Path(path))
        return ring

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
        entries = [_entry(ring.active, None)]
        try:
            _write_new(file, entries)
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
        now: float | None = None,
    ) -> KeyRing:
        """Write a new active key to the key file (creating it if missing); the previous active key becomes
        verify-only, and keys retired more than ``retire_after`` seconds ago (set it to the refresh token
        lifetime) are dropped, since no unexpired token can carry their ``kid``.

        Running servers pick the new key up when they restart.
        """
        file = Path(path)
        when = time.time() if now is None else now
        entries: list[tuple[Key, float | None]] = []
        if file.exists():
            _, entries = _read(file)
        new_key = _generate(alg or (entries[0][0].alg if entries else "HS256"))
        kept: list[tuple[Key, float | None]] = [(new_key, None)]
        for key, retired_at in entries:
            retired = when if retired_at is None else retired_at
            if when - retired < retire_after:
                kept.append((key, retired))
        _replace(file, [_entry(key, retired) for key, retired in kept])
        logger.info("rotated key file %s: new %s key %s, %d verify-only", file, new_key.alg, new_key.kid,
                    len(kept) - 1)
        return cls(new_key, [key for key, _ in kept[1:]])


def _is_asymmetric(key: Key) -> bool:
    return not key.alg.startswith("HS")


def _generate(alg: str) -> Key:
    try:
        key = Key.generate(alg)
        return Key.from_jwk({**key.to_jwk(private=True), "kid": key.thumbprint()}, alg)
    except JWTError as exc:
        raise ServiceConfigError(f"cannot generate a {alg!r} key: {exc}") from exc


def _entry(key: Key, retired_at: float | None) -> dict[str, Any]:
    jwk = dict(key.to_jwk(private=True))
    jwk["alg"] = key.alg
    if key.kid is not None:
        jwk["kid"] = key.kid
    if retired_at is not None:
        jwk[_RETIRED_AT] = retired_at
    return jwk


def _read(file: Path) -> tuple[KeyRing, list[tuple[Key, float | None]]]:
    try:
        fd = os.open(file, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise ServiceConfigError(f"key file {file} does not exist") from None
    except OSError as exc:
        raise ServiceConfigError(f"cannot open key file {file}: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as handle:
        mode = os.fstat(handle.fileno()).st_mode
        if stat.S_IMODE(mode) & 0o077:
            raise ServiceConfigError(
                f"key file {file} is readable by others (mode {stat.S_IMODE(mode):04o}); "
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
    entries: list[tuple[Key, float | None]] = []
    for index, item in enumerate(keys):
        if not isinstance(item, Mapping):
            raise ServiceConfigError(f"key file {file}: key {index} is not an object")
        jwk = dict(item)
        retired_at = jwk.pop(_RETIRED_AT, None)
        if retired_at is not None and (isinstance(retired_at, bool)
                                       or not isinstance(retired_at, int | float)):
            raise ServiceConfigError(f"key file {file}: key {index} has a bad {_RETIRED_AT}")
        try:
            key = Key.from_jwk(jwk)
        except JWTError as exc:
            raise ServiceConfigError(f"key file {file}: key {index} is refused: {exc}") from exc
        entries.append((key, None if retired_at is None else float(retired_at)))
    active = [key for key, retired in entries if retired is None]
    if len(active) != 1:
        raise ServiceConfigError(f"key file {file} must have exactly one active key (without {_RETIRED_AT})")
    entries.sort(key=lambda entry: (entry[1] is not None, -(entry[1] or 0.0)))
    return KeyRing(active[0], [key for key, retired in entries if retired is not None]), entries


def _dump(entries: list[dict[str, Any]]) -> bytes:
    return (json.dumps({"keys": entries}, indent=2) + "\n").encode("utf-8")


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


def _write_new(file: Path, entries: list[dict[str, Any]]) -> None:
    """Create ``file`` with complete content, or raise FileExistsError if it appeared meanwhile."""
    tmp = _write_tmp(file, _dump(entries))
    try:
        os.link(tmp, file)  # atomic create-if-absent with the content already in place
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def _replace(file: Path, entries: list[dict[str, Any]]) -> None:
    tmp = _write_tmp(file, _dump(entries))
    try:
        os.replace(tmp, file)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
