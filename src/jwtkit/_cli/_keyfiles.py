"""Reading and writing key material for the CLI: PEM and JWK files, secrets from the environment, JWKS.

The CLI tells a PEM file from a JWK file by its first bytes (``-----BEGIN`` or ``{``). This is a file format
choice made once, here, at the edge; the key constructors themselves never guess (style guide item 5).
"""

from __future__ import annotations

import base64
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jwtkit import JWTError, Key, KeySet

from ._output import CLIError, out

__all__ = [
    "JWKS_MAX_BYTES",
    "JWKS_TIMEOUT",
    "jwk_to_pem",
    "load_jwks",
    "load_key_file",
    "password_from_env",
    "read_limited",
    "secret_from_env",
    "write_private_file",
]

JWKS_TIMEOUT = 5.0  # seconds, connect and read (token-rules R20)
JWKS_MAX_BYTES = 256 * 1024  # a JWKS is a few keys; anything bigger is refused (R20)
KEY_FILE_MAX_BYTES = 1024 * 1024


def read_limited(path: str, limit: int, what: str) -> bytes:
    """A file's bytes, at most ``limit``; a missing or unreadable file is a one-line error."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise CLIError("file", f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise CLIError("file", f"{what} {path} is larger than {limit} bytes")
    return data


def password_from_env(var: str | None) -> bytes | None:
    if var is None:
        return None
    value = os.environ.get(var)
    if value is None:
        raise CLIError("env", f"environment variable {var} is not set")
    return value.encode()


def secret_from_env(var: str, alg: str | None, *, thumbprint_kid: bool = False) -> Key:
    """An HMAC key from an environment variable's UTF-8 bytes, as the tutorial's JWT_SECRET is used.

    With ``thumbprint_kid`` its ``kid`` is its RFC 7638 thumbprint, the ``kid`` that ``jwtkit serve`` puts on
    tokens signed with ``JWT_SECRET``: such tokens verify, and so do tokens without a ``kid`` (R9 refuses
    only a ``kid`` naming another key)."""
    value = os.environ.get(var)
    if value is None:
        raise CLIError("env", f"environment variable {var} is not set")
    try:
        key = Key.from_secret(value.encode(), alg=alg or "HS256")
        return Key.from_secret(value.encode(), alg=key.alg, kid=key.thumbprint()) if thumbprint_kid else key
    except JWTError as exc:
        raise CLIError("key", f"secret in {var}: {exc}") from None


def _parse_json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        raise CLIError("json", f"{what} is not valid JSON") from None
    if not isinstance(value, dict):
        raise CLIError("json", f"{what} must be a JSON object")
    return value


def _key_from_jwk(jwk: Mapping[str, Any], alg: str | None, what: str) -> Key | KeySet:
    try:
        if "keys" in jwk:
            return KeySet.from_jwks(jwk)
        if alg is None and "alg" not in jwk:
            raise CLIError("key", f"{what} has no alg member: pass --alg")
        return Key.from_jwk(jwk, alg=alg)
    except JWTError as exc:
        raise CLIError("key", f"{what}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise CLIError("key", f"{what} is not a usable JWK ({type(exc).__name__})") from None


def load_key_file(path: str, *, alg: str | None, password: bytes | None = None) -> Key | KeySet:
    """A key (or key set) from a PEM, JWK or JWKS file, as ``jwtkit keygen`` writes them. A private or secret
    key in a file that other local users can read is used, with a warning on stderr that says how to fix it.

    A PEM carries no algorithm, so ``alg`` must be given for it; a JWK's ``alg`` member binds it (R5).
    """
    key = _load_key_file(path, alg=alg, password=password)
    keys = list(key) if isinstance(key, KeySet) else [key]
    if any(k.is_private or k.is_symmetric for k in keys):
        try:
            mode = os.stat(path).st_mode & 0o777
        except OSError:
            mode = 0
        if mode & 0o077:
            out.note(f"jwtkit: warning: {path} holds a private key and has mode {mode:04o}: other local "
                     f"users can read it (chmod 600 {path})")
    return key


def _load_key_file(path: str, *, alg: str | None, password: bytes | None) -> Key | KeySet:
    data = read_limited(path, KEY_FILE_MAX_BYTES, "key file")
    head = data.lstrip()
    if head.startswith(b"-----BEGIN"):
        if alg is None:
            raise CLIError("key", f"{path} is a PEM key, which names no algorithm: pass --alg")
        encrypted = b"ENCRYPTED" in data[:200]
        if encrypted and password is None:
            raise CLIError("key", f"{path} is encrypted: give its password with --password-env VAR")
        try:
            return Key.from_pem(data, alg, password=password)
        except JWTError as exc:
            hint = " (wrong password?)" if encrypted else ""
            raise CLIError("key", f"{path}: {exc}{hint}") from None
        except (TypeError, ValueError) as exc:
            # cryptography says "Bad decrypt. Incorrect password?" and the like; keep it to one line.
            raise CLIError("key", f"{path}: cannot load the PEM key ({type(exc).__name__})") from None
    if head.startswith(b"{"):
        return _key_from_jwk(_parse_json_object(data, f"key file {path}"), alg, f"key file {path}")
    raise CLIError("key", f"{path} is neither a PEM nor a JWK file")


def load_jwks(source: str) -> KeySet:
    """A key set from an https URL or a local file (R20 of docs/token-rules.md).

    A URL is fetched once by :class:`jwtkit.service.RemoteKeySet`, under its rules: https, or plain http from
    this machine only (``localhost``, 127.0.0.0/8, ``::1``, without a proxy, as from a local ``jwtkit
    serve``), checked before any network call; no redirects, 5 s, 256 KiB. Keys it cannot use (private keys,
    secrets, invalid JWKs) are left out, and named on stderr. A file is read whole with
    :meth:`jwtkit.KeySet.from_jwks`, which refuses any bad key in it."""
    if "://" in source:
        return _fetch_jwks(source)
    data = read_limited(source, JWKS_MAX_BYTES, "JWKS file")
    jwks = _parse_json_object(data, "the JWKS")
    if not isinstance(jwks.get("keys"), list):
        raise CLIError("jwks", 'the JWKS has no "keys" list')
    try:
        return KeySet.from_jwks(jwks)
    except JWTError as exc:
        raise CLIError("jwks", f"the JWKS: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise CLIError("jwks", f"the JWKS is not usable ({type(exc).__name__})") from None


def _fetch_jwks(url: str) -> KeySet:
    """One fetch through RemoteKeySet; its failure is the one error line. An empty set is not an error
    here: verify says why no key fits (the hint for an HS256 server's empty JWKS)."""
    import asyncio

    from jwtkit.service import JWKSUnavailable, RemoteKeySet, ServiceConfigError

    try:
        remote = RemoteKeySet(url, timeout=JWKS_TIMEOUT, max_bytes=JWKS_MAX_BYTES)
    except ServiceConfigError as exc:
        raise CLIError("jwks", str(exc)) from None

    async def once() -> KeySet:
        try:
            return await remote.fetch()
        finally:
            await remote.close()

    # The set logs for a long-running server; here a failure is the error line (which names the dropped keys
    # when none was left), and each key dropped from a set that still verifies is a note.
    log = logging.getLogger("jwtkit.service._remote_keys")
    notes = _DroppedKeys()
    propagate = log.propagate
    log.addHandler(notes)
    log.propagate = False
    try:
        keys = asyncio.run(once())
    except JWKSUnavailable as exc:
        if exc.reason == "empty":
            return KeySet([])
        raise CLIError("jwks", exc.message) from None
    finally:
        log.removeHandler(notes)
        log.propagate = propagate
    for line in notes.lines:
        out.note(f"jwtkit: warning: {line}")
    return keys


class _DroppedKeys(logging.Handler):
    """Collects RemoteKeySet's lines about dropped keys; its other lines (outage, recovery) are left out."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "jwks_event", None) == "dropped":
            self.lines.append(record.getMessage())


def write_private_file(path: str, data: bytes, *, force: bool) -> None:
    """Write key material readable by its owner only (mode 0600), never over an existing file unless forced.

    O_EXCL makes the create-or-fail atomic, so a symlink planted at ``path`` is not followed either.
    """
    target = Path(path)
    if force and (target.exists() or target.is_symlink()):
        try:
            target.unlink()
        except OSError as exc:
            raise CLIError("file", f"cannot replace {path}: {exc.strerror or exc}") from None
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        raise CLIError("file", f"{path} exists; pass --force to overwrite it") from None
    except OSError as exc:
        raise CLIError("file", f"cannot create {path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _b64int(value: Any) -> int:
    if not isinstance(value, str):
        raise CLIError("key", "a JWK member is not a string")
    return int.from_bytes(_b64bytes(value), "big")


def _b64bytes(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def jwk_to_pem(jwk: Mapping[str, Any], password: bytes | None = None) -> bytes:
    """A private JWK (RSA, EC, OKP Ed25519, AKP ML-DSA) as a PKCS#8 PEM, encrypted when a password is given.

    An ML-DSA key is written in PKCS#8's seed form (RFC 9881), the 32-byte seed that is its JWK ``priv``."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa, rsa

    private: (rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
              | mldsa.MLDSA44PrivateKey | mldsa.MLDSA65PrivateKey | mldsa.MLDSA87PrivateKey)
    kty = jwk.get("kty")
    if kty == "RSA":
        public_numbers = rsa.RSAPublicNumbers(_b64int(jwk["e"]), _b64int(jwk["n"]))
        private = rsa.RSAPrivateNumbers(
            p=_b64int(jwk["p"]),
            q=_b64int(jwk["q"]),
            d=_b64int(jwk["d"]),
            dmp1=_b64int(jwk["dp"]),
            dmq1=_b64int(jwk["dq"]),
            iqmp=_b64int(jwk["qi"]),
            public_numbers=public_numbers,
        ).private_key()
    elif kty == "EC":
        curves: dict[str, ec.EllipticCurve] = {
            "P-256": ec.SECP256R1(),
            "P-384": ec.SECP384R1(),
            "P-521": ec.SECP521R1(),
        }
        private = ec.derive_private_key(_b64int(jwk["d"]), curves[str(jwk["crv"])])
    elif kty == "OKP" and jwk.get("crv") == "Ed25519":
        private = ed25519.Ed25519PrivateKey.from_private_bytes(_b64bytes(str(jwk["d"])))
    elif kty == "AKP" and jwk.get("alg") in ("ML-DSA-44", "ML-DSA-65", "ML-DSA-87"):
        seeded = getattr(mldsa, str(jwk["alg"]).replace("-", "") + "PrivateKey")  # e.g. MLDSA65PrivateKey
        private = seeded.from_seed_bytes(_b64bytes(str(jwk["priv"])))
    else:
        raise CLIError("key", f"a {kty} key has no PEM form; use --format jwk")
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    )
    return private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
