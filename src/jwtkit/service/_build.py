"""Assemble an :class:`AuthService` from :class:`Settings`: the store by URL, the user repository (SQLite),
the key ring (``JWT_SECRET`` or the key file) and the mailer (SMTP or the outbox folder)."""

from __future__ import annotations

from jwtkit.service._accounts import MemoryUserRepository, SQLiteUserRepository, UserRepository
from jwtkit.service._auth import AuthService
from jwtkit.service._claims import ClaimsHook, user_roles_claims
from jwtkit.service._config import MEMORY_USERS, Settings
from jwtkit.service._keyring import KeyRing, KeyRingFile
from jwtkit.service._mail import Mailer, OutboxMailer, SMTPMailer
from jwtkit.store import open_store

__all__ = ["build_service"]


def build_service(settings: Settings | None = None, *, claims: ClaimsHook = user_roles_claims) -> AuthService:
    """An unopened service for ``settings`` (default: :meth:`Settings.from_env`); ``await service.open()``
    or ``async with service:``. ``claims`` is the app's claims hook (see :class:`AuthService`); the default
    puts the account's roles (``jwtkit user roles``) in its access tokens.

    Without ``JWT_SECRET`` the key file is created on first run (mode 0600); there is no built-in secret.
    The service follows that file while it runs (:class:`KeyRingFile`): ``jwtkit keys rotate`` needs no
    restart.

    Raises:
        ServiceConfigError (``service_config``): short secret, unreadable or too-open key file, bad config.
        jwtkit.store.StoreConfigError (``store_config``): bad store URL.
    """
    settings = settings if settings is not None else Settings.from_env()
    keys = (KeyRing.from_secret(settings.secret) if settings.secret is not None
            else KeyRingFile.load_or_create(settings.key_path))
    mailer: Mailer
    if settings.smtp_host:
        mailer = SMTPMailer(settings.smtp_host, settings.smtp_port, username=settings.smtp_username,
                            password=settings.smtp_password, sender=settings.mail_from)
    else:
        # development: mails land in the outbox folder, and each link is printed on the console
        mailer = OutboxMailer(settings.outbox_path, sender=settings.mail_from, console=True)
    users: UserRepository = (MemoryUserRepository() if settings.users_path == MEMORY_USERS
                             else SQLiteUserRepository(settings.users_path))
    return AuthService(
        store=open_store(settings.store_url),
        users=users,
        keys=keys,
        config=settings.config,
        mailer=mailer,
        claims=claims,
    )
