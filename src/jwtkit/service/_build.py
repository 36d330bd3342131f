"""Assemble an :class:`AuthService` from :class:`Settings`: the store by URL, the user repository (SQLite),
the key ring (``JWT_SECRET`` or the key file) and the mailer (SMTP or the outbox folder)."""

from __future__ import annotations

import asyncio
import logging
from typing import Literal

from jwtkit.service._accounts import MemoryUserRepository, SQLiteUserRepository, UserRepository
from jwtkit.service._accounts_postgres import PostgresUserRepository, is_postgres_url
from jwtkit.service._auth import AuthService
from jwtkit.service._claims import ClaimsHook, user_roles_claims
from jwtkit.service._config import MEMORY_USERS, Settings
from jwtkit.service._dpop import DPoPNonces, DPoPVerifier
from jwtkit.service._errors import ServiceConfigError
from jwtkit.service._keyring import KeyRing, KeyRingFile
from jwtkit.service._keyring_store import StoreKeyRing
from jwtkit.service._mail import Mailer, OutboxMailer, SMTPMailer
from jwtkit.store import KeyRingRecords, ManagedStore, StoreUnavailable, open_store

__all__ = ["assemble", "build_service", "key_source", "prepare_keys"]

logger = logging.getLogger("jwtkit.service._build")

KeySource = Literal["secret", "file", "store"]


def key_source(settings: Settings, store: object | None = None) -> KeySource:
    """Where the signing keys of ``settings`` live: ``JWT_SECRET`` (``"secret"``); a shared store
    (``"store"``: ``keys="store"``, or ``"auto"`` with a store that holds a shared ring: Redis, PostgreSQL);
    else the key file (``"file"``). ``store`` is the store of ``settings`` when already built.

    Raises:
        ServiceConfigError (``service_config``): ``keys="store"`` with a store that cannot hold the ring, or
            a ring in the store without a key-encryption key (one line that says which variable to set).
    """
    if settings.secret is not None:
        return "secret"
    if settings.keys == "file":
        return "file"
    store = open_store(settings.store_url) if store is None else store
    shared = isinstance(store, KeyRingRecords)
    if not shared:
        if settings.keys == "store":
            raise ServiceConfigError(f"JWTKIT_KEYS=store needs a shared store (redis://...), not "
                                     f"{getattr(store, 'url', settings.store_url)}")
        return "file"
    if settings.key_encryption_key is None:
        raise ServiceConfigError(
            f"the signing keys live in the shared store {getattr(store, 'url', '?')}, sealed with a "
            "key-encryption key: set JWTKIT_KEY_ENCRYPTION_KEY (32 bytes, `jwtkit secret`), the same on "
            "every node, or JWTKIT_KEYS=file to keep a key file per node")
    return "store"


def prepare_keys(settings: Settings) -> None:
    """Before workers start (``jwtkit serve``): create the key file, or load (creating once) the ring in the
    shared store with the key-encryption key, so that a missing or wrong key is one error at start-up.

    Raises:
        ServiceConfigError (``service_config``): see :func:`key_source`; the key-encryption key does not
            decrypt the stored ring; a bad key file.
    A store that does not answer now is logged, not raised: the service loads the ring when it opens.
    """
    store = open_store(settings.store_url)
    source = key_source(settings, store)
    if source == "file":
        KeyRing.load_or_create(settings.key_path)
    elif source == "store":
        try:
            asyncio.run(_load_stored_ring(store, settings))
        except StoreUnavailable as exc:
            # the server starts anyway, answers 503 and opens (loading the ring) once the store is back
            logger.warning("cannot load the key ring from the store now (%s); the service loads it when the "
                           "store answers", exc)


async def _load_stored_ring(store: ManagedStore, settings: Settings) -> None:
    kek = settings.key_encryption_key
    if kek is None or not isinstance(store, KeyRingRecords):  # pragma: no cover - key_source said "store"
        raise ServiceConfigError("no shared key ring to load")
    async with store:
        await StoreKeyRing(store, kek).open()


def users_for(where: str) -> UserRepository:
    """The account repository ``JWTKIT_DB`` names: ``:memory:``, a ``postgresql://`` URL, or a SQLite file."""
    if where == MEMORY_USERS:
        return MemoryUserRepository()
    if is_postgres_url(where):
        return PostgresUserRepository(where)  # asyncpg loads when one is built
    return SQLiteUserRepository(where)


def build_service(settings: Settings | None = None, *, claims: ClaimsHook = user_roles_claims) -> AuthService:
    """An unopened service for ``settings`` (default: :meth:`Settings.from_env`); ``await service.open()``
    or ``async with service:``. ``claims`` is the app's claims hook (see :class:`AuthService`); the default
    puts the account's roles (``jwtkit user roles``) in its access tokens.

    Without ``JWT_SECRET`` the key file is created on first run (mode 0600); there is no built-in secret.
    The service follows that file while it runs (:class:`KeyRingFile`): ``jwtkit keys rotate`` needs no
    restart. With a shared store (Redis, PostgreSQL) the ring lives in the store instead (:func:`key_source`),
    sealed with ``settings.key_encryption_key``; ``await service.open()`` loads it (:class:`StoreKeyRing`).

    Raises:
        ServiceConfigError (``service_config``): short secret, unreadable or too-open key file, bad config,
            a ring in the shared store without a key-encryption key.
        jwtkit.store.StoreConfigError (``store_config``): bad store URL.
    """
    return assemble(settings, claims=claims, signs=True)


def assemble(settings: Settings | None = None, *, claims: ClaimsHook = user_roles_claims,
             signs: bool) -> AuthService:
    """:func:`build_service`; with ``signs=False`` (admin commands that issue no token: ``jwtkit user ...``,
    ``jwtkit sessions ...``), a ring kept in a shared store is not needed, so neither is its key-encryption
    key: the service gets a throwaway in-memory key that signs nothing and is never stored."""
    settings = settings if settings is not None else Settings.from_env()
    store = open_store(settings.store_url)
    unused = (not signs and settings.secret is None and settings.keys != "file"
              and isinstance(store, KeyRingRecords))
    source: KeySource | Literal["unused"] = "unused" if unused else key_source(settings, store)
    keys: KeyRing | KeyRingFile | StoreKeyRing
    if source == "unused":
        keys = KeyRing.generate()
    elif source == "secret":
        keys = KeyRing.from_secret(settings.secret)  # type: ignore[arg-type]
    elif source == "store":
        kek = settings.key_encryption_key
        if kek is None or not isinstance(store, KeyRingRecords):  # pragma: no cover - see key_source
            raise ServiceConfigError("no shared key ring to use")
        keys = StoreKeyRing(store, kek)
    else:
        keys = KeyRingFile.load_or_create(settings.key_path)
    mailer: Mailer
    if settings.smtp_host:
        mailer = SMTPMailer(settings.smtp_host, settings.smtp_port, username=settings.smtp_username,
                            password=settings.smtp_password, sender=settings.mail_from)
    else:
        # development: mails land in the outbox folder, and each link is printed on the console
        mailer = OutboxMailer(settings.outbox_path, sender=settings.mail_from, console=True)
    users = users_for(settings.users_path)
    nonces = None if settings.dpop_nonce_secret is None else DPoPNonces(settings.dpop_nonce_secret)
    return AuthService(
        store=store,
        users=users,
        keys=keys,
        config=settings.config,
        mailer=mailer,
        claims=claims,
        dpop=DPoPVerifier(store, nonces=nonces),
    )
