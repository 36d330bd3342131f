"""The auth service: registration, login with throttling, access and refresh tokens with rotation and reuse
detection, logout (one session or everywhere), session listing, and single-use tokens for email verification
and password reset. No HTTP here: the web app, the CLI and users' own code call it."""

from __future__ import annotations

import dataclasses
import enum
import hmac
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from argon2 import PasswordHasher

from jwtkit import encode
from jwtkit.service._access import ACCESS_CLAIMS, AccessPolicy, Principal, Validator, _kid_of, decode_token
from jwtkit.service._accounts import (
    LOOK_ALIKE,
    User,
    UserRepository,
    normalize_email,
    normalize_role,
    normalize_username,
)
from jwtkit.service._claims import ClaimsHook, app_claims
from jwtkit.service._config import AuthConfig
from jwtkit.service._dpop import DPoPRequest, DPoPVerifier
from jwtkit.service._errors import (
    AccountUnverified,
    InvalidCredentials,
    InvalidDPoPProof,
    InvalidEmail,
    InvalidToken,
    InvalidUsername,
    RefreshReused,
    ServiceConfigError,
    SessionRevoked,
    UsernameTaken,
    UserNotFound,
)
from jwtkit.service._keyring import KeyRing, KeyRingFile
from jwtkit.service._keyring_store import StoreKeyRing
from jwtkit.service._mail import Mailer, MemoryMailer, Message
from jwtkit.service._passwords import MAX_PASSWORD_LENGTH, Argon2Hasher, check_password
from jwtkit.service._throttle import LoginThrottle, RateLimits
from jwtkit.service._tokens import (
    ACCESS_TYP,
    DEVICE_TYP,
    PURPOSE_DEVICE,
    PURPOSE_RESET,
    PURPOSE_VERIFY_EMAIL,
    REFRESH_TYP,
    RESET_TYP,
    VERIFY_EMAIL_TYP,
    access_claims,
    agent_hash,
    email_binding,
    new_id,
    password_binding,
    refresh_claims,
    refresh_successor,
)
from jwtkit.store._base import (
    Clock,
    KeyRingRecords,
    RevocationFeed,
    RevocationKind,
    Rotation,
    Session,
    Store,
    StoreConfigError,
    StoreUnavailable,
)
from jwtkit.store._mirror import RevocationMirror

__all__ = ["AuthService", "Principal", "TokenPair"]

logger = logging.getLogger("jwtkit.service")

_MAX_USER_AGENT = 512
_MAX_IP = 64
_MAX_DEVICE_TOKEN = 2048  # a known-device token is about 400 characters; anything far longer is not one


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenPair:
    """What login and refresh return. ``expires_in`` and ``refresh_expires_in`` are seconds from now (the
    refresh token lives until the session ends: its lifetime is absolute, not sliding). ``repr()`` hides
    the tokens."""

    access_token: str = dataclasses.field(repr=False)
    refresh_token: str = dataclasses.field(repr=False)
    token_type: str = "Bearer"
    expires_in: int
    refresh_expires_in: int
    session: Session
    # From login only: the known-device token to keep on this device and present at its next logins (the
    # server sets it as a cookie); empty from refresh.
    device_token: str = dataclasses.field(default="", repr=False)


class _State(enum.Enum):
    UNOPENED = "unopened"
    OPENED = "opened"
    CLOSED = "closed"


LAST_USED_RESOLUTION = 60.0  # seconds: how far a session's "last used" may lag behind its last request
_LAST_NOTED_MAX = 100_000
MIRROR_CLOCK_MARGIN = 30  # seconds added to the mirror's window for clock skew between nodes

class AuthService:
    """Accounts, login and tokens over a session store, a user repository and a key ring.

    Args:
        store: a :class:`jwtkit.store.Store` (``open_store(url)``); sessions, cut-offs, consumed ``jti`` and
            throttle counters live there.
        users: a :class:`~jwtkit.service.UserRepository`.
        keys: a :class:`~jwtkit.service.KeyRing` (fixed), or a :class:`~jwtkit.service.KeyRingFile` that
            follows the key file while the service runs (``jwtkit keys rotate``): tokens are signed with
            the key active now, and verified with the keys that verify now; or a
            :class:`~jwtkit.service.StoreKeyRing`, the ring every node shares in a shared store (loaded by
            :meth:`open`).
        config: :class:`~jwtkit.service.AuthConfig`.
        mailer: where verification and reset mails go (default: kept in memory and logged).
        clock: POSIX time source; tests pin it (give the store the same one).
        hasher: an ``argon2.PasswordHasher`` or an :class:`Argon2Hasher`; default argon2id at OWASP's
            parameters.
        dpop: the DPoP rules (RFC 9449) for proofs at login, refresh and on every request (algorithms,
            ``iat`` window, nonces); by default a :class:`~jwtkit.service.DPoPVerifier` whose replay cache
            is ``store``. ``config.require_dpop`` makes proofs mandatory.

    Errors: see :mod:`jwtkit.service._errors`; :class:`jwtkit.store.StoreUnavailable` propagates unchanged.

    Example:
        >>> import asyncio
        >>> from argon2 import PasswordHasher
        >>> from jwtkit.store import open_store
        >>> from jwtkit.service import AuthService, KeyRing, MemoryUserRepository
        >>> async def demo() -> str:
        ...     service = AuthService(store=open_store("memory://"), users=MemoryUserRepository(),
        ...                           keys=KeyRing.generate(),
        ...                           hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
        ...     async with service:
        ...         user = await service.register("Alice", "correct horse battery")
        ...         pair = await service.login("alice", "correct horse battery")
        ...         principal = await service.authenticate(pair.access_token)
        ...         return str(principal.user_id == user.id)
        >>> asyncio.run(demo())
        'True'
    """

    def __init__(
        self,
        *,
        store: Store,
        users: UserRepository,
        keys: KeyRing | KeyRingFile | StoreKeyRing,
        config: AuthConfig | None = None,
        mailer: Mailer | None = None,
        clock: Clock = time.time,
        hasher: PasswordHasher | Argon2Hasher | None = None,
        claims: ClaimsHook | None = None,
        dpop: DPoPVerifier | None = None,
    ) -> None:
        if claims is not None and not callable(claims):
            raise TypeError("claims must be a callable: user -> mapping of claims (sync or async)")
        self.claims = claims
        self.store = store
        self.users = users
        self.keys = keys
        self.config = config if config is not None else AuthConfig()
        self.mailer: Mailer = mailer if mailer is not None else MemoryMailer()
        self.clock = clock
        self.hasher = hasher if isinstance(hasher, Argon2Hasher) else Argon2Hasher(hasher)
        self.throttle = LoginThrottle(store, self.config, clock)
        self.limits = RateLimits(store)
        self.dpop = dpop if dpop is not None else DPoPVerifier(store, clock=clock)
        self._state = _State.UNOPENED
        self.mirror = self._revocation_mirror()
        self.access = self.access_policy()
        self._last_noted: dict[str, float] = {}  # sid -> when this process last wrote its last_used

    def _revocation_mirror(self) -> RevocationMirror | None:
        """The mirror ``config.revocation_mirror`` asks for (see AuthConfig), or None."""
        config, store = self.config, self.store
        mode = config.revocation_mirror
        has_feed = isinstance(store, RevocationFeed)
        if mode == "off" or (mode == "auto" and not (has_feed and isinstance(store, KeyRingRecords))):
            return None
        if not isinstance(store, RevocationFeed):
            raise ServiceConfigError(f"revocation_mirror='on' needs a store with a revocation feed (Redis, "
                                     f"PostgreSQL), not {getattr(store, 'url', type(store).__name__)}")
        # entries are stamped by the revoking node's clock: the margin covers skew between nodes
        window = config.access_ttl + config.leeway + MIRROR_CLOCK_MARGIN
        try:
            return RevocationMirror(store, window=window, max_lag=config.mirror_max_lag, clock=self.clock)
        except StoreConfigError as exc:
            if mode == "on":
                raise ServiceConfigError(f"revocation_mirror: {exc}") from None
            logger.warning("revocation mirror off: %s", exc)
            return None

    def access_policy(self, *, validate: Validator | None = None) -> AccessPolicy:
        """The access-token policy of this service (typ ``at+jwt``, its issuer, audience, leeway and clock,
        the session check, the account check and agent binding as configured). ``self.access`` is the one
        every caller shares; an app that adds its own ``validate`` hook gets a policy of its own."""
        config = self.config
        keys = self.keys.keyset if isinstance(self.keys, KeyRing) else self.keys  # a file: its provider
        return AccessPolicy(keys=keys, typ=ACCESS_TYP, issuer=config.issuer,
                            audience=config.audience, require=ACCESS_CLAIMS, leeway=config.leeway,
                            store=self.store, accounts=self.users, account_cache_ttl=config.user_cache_ttl,
                            bind_user_agent=config.bind_user_agent, validate=validate, mirror=self.mirror,
                            dpop=self.dpop, require_dpop=config.require_dpop, clock=self.clock)

    def __repr__(self) -> str:
        return (f"AuthService(store={getattr(self.store, 'url', '?')!r}, users={self.users!r}, "
                f"keys={self.keys!r}, state={self._state.value})")

    # lifecycle -----------------------------------------------------------------------------------------

    async def open(self) -> None:
        """Open the store and the user repository; compute the dummy hash. Idempotent."""
        if self._state is _State.OPENED:
            return
        if self._state is _State.CLOSED:
            raise RuntimeError("this AuthService was closed; build a new one")
        await self.store.open()
        if isinstance(self.keys, StoreKeyRing):
            try:
                await self.keys.open()
            except BaseException:
                await self.store.close()
                raise
        await self.users.open()
        await self.hasher.prepare()
        if self.mirror is not None:
            self.mirror.start()
        self._state = _State.OPENED

    async def close(self) -> None:
        """Close the user repository and the store. Idempotent."""
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        if self.mirror is not None:
            await self.mirror.stop()
        if isinstance(self.keys, StoreKeyRing):
            await self.keys.close()
        try:
            await self.users.close()
        finally:
            await self.store.close()

    async def __aenter__(self) -> AuthService:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # accounts ------------------------------------------------------------------------------------------

    async def register(
        self, username: str, password: str, *, email: str | None = None, verified: bool = False, ip: str = ""
    ) -> User:
        """Create an account. The username is normalised (NFKC, casefold). ``ip``, the client's address, is
        limited to 10 registrations an hour (each costs an argon2 hash); "" (an admin's command) is not.

        Raises:
            Throttled (``throttled``), InvalidUsername (``invalid_username``), WeakPassword
            (``weak_password``), InvalidEmail (``invalid_email``), UsernameTaken (``username_taken``: the
            name, or a look-alike of it by UTS #39, is taken).
        """
        await self.limits.spend("register", "ip", ip)
        name = normalize_username(username)
        check_password(password, username=name)
        address: str | None = None
        if email is not None and (not isinstance(email, str) or email.strip()):  # blank: no address
            address = normalize_email(email)
        # before the slow hash; the insert below still enforces both
        if await self.users.get_by_username(name) is not None:
            raise UsernameTaken()
        if await self.users.find_look_alike(name) is not None:
            raise UsernameTaken(LOOK_ALIKE)
        user = User(id=new_id(), username=name, email=address, verified=verified, disabled=False,
                    created=self.clock(), password_hash=await self.hasher.hash(password))
        await self.users.add(user)
        logger.info("registered user %s", user.id)
        return user

    async def get_user(self, user_id: str) -> User | None:
        return await self.users.get(user_id)

    async def find_user(self, username: str) -> User | None:
        """The user with this username (normalised first), or None."""
        try:
            name = normalize_username(username)
        except InvalidUsername:
            return None
        return await self.users.get_by_username(name)

    async def list_users(self) -> list[User]:
        return await self.users.list_users()

    async def set_disabled(self, user_id: str, disabled: bool) -> User:
        """Disable or re-enable an account. Disabling also ends every session of the user at once.

        Raises:
            UserNotFound (``user_not_found``).
        """
        user = await self._user(user_id)
        updated = dataclasses.replace(user, disabled=disabled)
        await self.users.update(updated)
        if disabled:
            await self._cut_off(user_id)
        self.access.forget_account(user_id)
        logger.info("user %s %s", user_id, "disabled" if disabled else "enabled")
        return updated

    async def set_roles(self, user_id: str, roles: Sequence[str], *, end_sessions: bool = False) -> User:
        """Replace an account's roles (each checked by :func:`normalize_role`). Tokens carry them through
        the claims hook, so they reach the user's tokens at each session's next refresh, within one
        ``access_ttl``; ``end_sessions`` ends every session at once instead (for a role taken away in a
        hurry).

        Raises:
            UserNotFound (``user_not_found``); ValueError: a role name that is not one.
        """
        if isinstance(roles, str):
            raise TypeError("roles must be a sequence of role names, not a string")
        names = tuple(sorted({normalize_role(role) for role in roles}))
        user = await self._user(user_id)
        updated = dataclasses.replace(user, roles=names)
        await self.users.update(updated)
        if end_sessions:
            await self._cut_off(user_id)
        logger.info("user %s roles: %s", user_id, ", ".join(names) or "none")
        return updated

    async def _user(self, user_id: str) -> User:
        user = await self.users.get(user_id)
        if user is None:
            raise UserNotFound()
        return user

    # login and tokens ----------------------------------------------------------------------------------

    async def login(self, username: str, password: str, *, ip: str = "", user_agent: str = "",
                    device: str = "", dpop: DPoPRequest | None = None) -> TokenPair:
        """Check the password and start a session.

        ``device`` is the known-device token that an earlier login of this account returned on this device
        (``TokenPair.device_token``; the server keeps it in a cookie). With it, failures count against that
        device alone: an attacker's failures on the account from elsewhere do not lock it out. Without it (or
        with one of another account, expired, forged, or itself throttled) the attempt counts against the
        account's counter for unknown devices. Every successful login returns a new one.

        ``dpop``, the request's DPoP proof (RFC 9449 §5): the tokens are then bound to its key (``cnf.jkt``,
        ``token_type`` ``"DPoP"``), and refreshing them needs a proof by the same key. Without one the tokens
        are bearer tokens, unless ``config.require_dpop``.

        Raises:
            Throttled (``throttled``): too many recent failures for this account from unknown devices (or
                for this known device), or from this ``ip``; raised before the password is checked.
            InvalidCredentials (``invalid_credentials``): unknown user, wrong password or a disabled account
                (the same error, and each costs the same argon2 verification; an unknown user's against a
                dummy hash). A disabled account answers the same whatever the password, so that nobody can
                find its password by trying (it may be enabled again, or the password used elsewhere), and
                its attempts count against the throttle like wrong passwords.
            AccountUnverified (``account_unverified``): after a correct password.
            InvalidDPoPProof (``invalid_dpop_proof``), UseDPoPNonce (``use_dpop_nonce``): the proof, checked
                before the password (so a refused proof costs no hash and no throttle count).
        """
        jkt = await self._proof_key(dpop)
        try:
            name: str | None = normalize_username(username)
        except InvalidUsername:
            name = None
        # An invalid name still gets a throttle key (of its casefolded form): it costs a hash like any other.
        user_key, ip_key = self.throttle.keys(name if name is not None else str(username).casefold(), ip)
        device_key = await self._known_device(device, user_key)
        if device_key is not None and await self.throttle.waiting(device_key):
            device_key = None  # a known device that failed too often is an unknown one again (OWASP)
        account_key = device_key or user_key
        async with self.throttle.serialized((account_key, ip_key)):
            await self.throttle.check((account_key, ip_key))
            user, epoch = await self._account(name)
            too_long = not isinstance(password, str) or len(password) > MAX_PASSWORD_LENGTH
            candidate = password[:MAX_PASSWORD_LENGTH] if isinstance(password, str) else ""
            if user is None:
                await self.hasher.verify_dummy(candidate)
                matched = False
            else:
                matched = await self.hasher.verify(user.password_hash, candidate) and not too_long
            if user is None or not matched or user.disabled:
                wait = await self.throttle.failure((account_key, ip_key))
                if wait > 0:
                    # The key is a hash: no user input reaches the log.
                    logger.warning("login throttled for %.0f s (key %s, ip %r)", wait, account_key,
                                   str(ip)[:_MAX_IP])
                raise InvalidCredentials()
            await self.throttle.success(account_key)

        if not user.verified and not self.config.allow_unverified_login:
            raise AccountUnverified()
        if self.hasher.needs_rehash(user.password_hash):
            # Parameters changed since this hash was made (e.g. raised to OWASP's): upgrade it now, while we
            # hold the plain password.
            user = dataclasses.replace(user, password_hash=await self.hasher.hash(password))
            await self.users.update(user)
            logger.info("rehashed the password of user %s", user.id)
        pair = await self._start_session(user, epoch, ip=ip, user_agent=user_agent, jkt=jkt)
        return dataclasses.replace(pair, device_token=self._device_token(user, user_key))

    async def _proof_key(self, dpop: DPoPRequest | None, bound: str | None = None) -> str | None:
        """The thumbprint the new tokens are bound to: the proof's key (which must be ``bound``, the
        presented refresh token's key, when it has one), or None for bearer tokens."""
        if dpop is None:
            if bound is not None:
                raise InvalidDPoPProof("bound", "this refresh token is bound to a DPoP key: send a proof")
            if self.config.require_dpop:
                raise InvalidDPoPProof("required", "this server issues DPoP-bound tokens only: send a proof")
            return None
        proof = await self.dpop.verify(dpop.proofs, htm=dpop.htm, htu=dpop.htu, jkt=bound, spent=dpop.spent)
        return proof.jkt

    def _device_token(self, user: User, user_key: str) -> str:
        now = self.clock()
        claims = {"iss": self.config.issuer, "sub": user.id, "jti": new_id(), "iat": int(now),
                  "exp": int(now + self.config.device_ttl), "purpose": PURPOSE_DEVICE, "acct": user_key}
        return encode(claims, self.keys.active, typ=DEVICE_TYP)

    async def _known_device(self, token: str, user_key: str) -> str | None:
        """The throttle counter of a known-device token issued to this account (``acct``, its username's
        throttle key), or None for anything else: no token, another account's, expired, forged."""
        if not token or not isinstance(token, str) or len(token) > _MAX_DEVICE_TOKEN:
            return None
        try:
            claims = await self._decode(token, DEVICE_TYP, require=("exp", "iat", "sub", "jti"))
            self._check_purpose(claims, PURPOSE_DEVICE)
        except InvalidToken:
            return None
        if claims.get("acct") != user_key or not isinstance(claims["jti"], str):
            return None
        return self.throttle.device_key(claims["jti"])

    async def _account(self, name: str | None) -> tuple[User | None, int]:
        """The account a login checks, and the epoch its session will carry.

        The epoch is read *before* the record whose password and flags the login then checks: a password
        reset, a password change, ``set_disabled`` or "log out everywhere" that completes after this read
        moves the epoch on (in the store, after writing the account), so the session this login creates is
        dead on arrival, on every backend and across nodes. Reading the record again after the epoch is what
        makes the order hold: the first read only finds the id.
        """
        if name is None:
            return None, 0
        found = await self.users.get_by_username(name)
        if found is None:
            return None, 0
        epoch = await self.store.get_epoch(found.id)
        return await self.users.get(found.id), epoch

    async def _app_claims(self, user: User | None) -> dict[str, Any]:
        """The app's claims for the access tokens of ``user`` (the ``claims`` hook; see ``_claims``)."""
        if self.claims is None or user is None:
            return {}
        try:
            return await app_claims(self.claims, user)
        except ServiceConfigError as exc:
            logger.error("no token issued to user %s: %s", user.id, exc)
            raise

    async def _start_session(self, user: User, epoch: int, *, ip: str, user_agent: str,
                             jkt: str | None = None) -> TokenPair:
        extra = await self._app_claims(user)  # before the session exists: a failing hook leaves none behind
        now = self.clock()
        session = Session(
            sid=new_id(), user_id=user.id, created=now, last_used=now,
            expires=now + self.config.refresh_ttl, family=new_id(), refresh_jti=new_id(),
            user_agent=str(user_agent)[:_MAX_USER_AGENT], ip=str(ip)[:_MAX_IP], epoch=epoch,
        )
        # the cap's evictions are revocations like a logout's: in the store's feed for the other nodes, and in
        # this node's mirror at once
        evicted = await self.store.create_session(session, max_sessions=self.config.max_sessions_per_user)
        for sid in evicted:
            self._mirrored(RevocationKind.SESSION, sid)
        if evicted:
            logger.info("login of user %s ended its %d oldest session(s) (max_sessions_per_user %d)", user.id,
                        len(evicted), self.config.max_sessions_per_user)
        return self._pair(session, now, user_agent, extra, jkt)

    def _pair(self, session: Session, now: float, user_agent: str, extra: Mapping[str, Any],
              jkt: str | None) -> TokenPair:
        config = self.config
        access_expires = min(now + config.access_ttl, session.expires)
        agent = agent_hash(user_agent or "") if config.bind_user_agent else None
        access = {**extra, **access_claims(issuer=config.issuer, audience=config.audience,
                                           user_id=session.user_id, sid=session.sid, now=now,
                                           expires=access_expires, agent=agent)}
        refresh = refresh_claims(issuer=config.issuer, user_id=session.user_id, sid=session.sid,
                                 family=session.family, jti=session.refresh_jti, now=now,
                                 expires=session.expires)
        if jkt is not None:  # RFC 9449 §6.1 (access), §5 (refresh: the same key rotates it)
            access["cnf"] = refresh["cnf"] = {"jkt": jkt}
        key = self.keys.active
        return TokenPair(
            access_token=encode(access, key, typ=ACCESS_TYP),
            refresh_token=encode(refresh, key, typ=REFRESH_TYP),
            token_type="Bearer" if jkt is None else "DPoP",
            expires_in=max(0, int(access["exp"] - now)),
            refresh_expires_in=max(0, int(refresh["exp"] - now)),
            session=session,
        )

    async def authenticate(self, access_token: str, *, user_agent: str | None = None,
                           dpop: DPoPRequest | None = None) -> Principal:
        """Verify an access token through the service's one :class:`AccessPolicy` (``self.access``):
        signature and claims, the session, the account, the client when binding is on.

        Raises:
            TokenExpired (``token_expired``), SessionRevoked (``session_revoked``), InvalidToken
            (``invalid_token``; ``.reason`` is the JWTError code, ``wrong_type``, ``claim``, ``agent`` or
            ``disabled``), InvalidDPoPProof (a DPoP-bound token without its proof, or a refused proof);
            jwtkit.store.StoreUnavailable.
        """
        return await self.access.authenticate(access_token, user_agent=user_agent, dpop=dpop)

    async def refresh(self, refresh_token: str, *, ip: str = "", user_agent: str = "",
                      dpop: DPoPRequest | None = None) -> TokenPair:
        """Rotate a refresh token: a new access token and a new refresh token; the presented one is spent.
        The session keeps its login IP and device; ``user_agent`` feeds the new access token's ``agent``
        claim when ``bind_user_agent`` is on.

        Two requests that present the same refresh token at the same moment (two tabs whose access cookie
        expired together) rotate it once: within ``refresh_race_window`` both get the session's current
        tokens, provided the second comes from the session's device (its User-Agent).

        A refresh token bound to a DPoP key (``cnf.jkt``) needs ``dpop``, a proof signed by that key
        (RFC 9449 §5); an unbound one given a proof has its session's new tokens bound to the proof's key
        from then on (never the other way round).

        Raises:
            InvalidDPoPProof, UseDPoPNonce: the proof is missing where the token is bound, or refused.
            RefreshReused (``refresh_reused``): it was already used; the session and its family are revoked
                (RFC 9700 §4.14).
            SessionRevoked (``session_revoked``), TokenExpired (``token_expired``), InvalidToken.
        """
        claims = await self._decode(refresh_token, REFRESH_TYP,
                                    require=("exp", "iat", "sub", "sid", "jti", "fam"))
        user_id, sid, jti = claims["sub"], claims["sid"], claims["jti"]
        cnf = claims.get("cnf")
        bound = cnf.get("jkt") if isinstance(cnf, dict) else None
        if cnf is not None and (type(bound) is not str or not bound):
            raise InvalidToken("claim", "the token's cnf claim is invalid")
        jkt = await self._proof_key(dpop, bound)  # before the rotation: a refused proof spends nothing
        await self.access.check_account(user_id)
        # the hook runs before the rotation, so that a failing one does not spend the refresh token
        extra = await self._app_claims(await self.users.get(user_id)) if self.claims is not None else {}
        window = self.config.refresh_race_window
        if window:
            slot = int(self.clock() // window)
            new_jti = refresh_successor(jti, slot)
            concurrent: tuple[str, ...] = (new_jti, refresh_successor(jti, slot - 1))
        else:
            new_jti, concurrent = new_id(), ()
        outcome = await self.store.rotate_refresh(sid, jti, new_jti, concurrent=concurrent)
        if outcome is Rotation.REUSED:
            self._mirrored(RevocationKind.SESSION, sid)
            logger.warning("refresh token reuse on session %s… of user %s: session and family revoked",
                           sid[:8], user_id)
            raise RefreshReused()
        if outcome is Rotation.INACTIVE:
            raise SessionRevoked()
        session = await self.store.get_session(sid)
        if (session is None or session.revoked or session.user_id != user_id
                or session.family != claims["fam"]):
            await self.store.revoke(sid)
            self._mirrored(RevocationKind.SESSION, sid)
            raise SessionRevoked()
        now = self.clock()
        if outcome is Rotation.CONCURRENT:
            if user_agent != session.user_agent:
                # the same token, moments after its rotation, from another device: not a second tab. Refused
                # without revoking, so that a copy in the wrong hands cannot end the owner's session.
                logger.warning("refresh token of session %s… presented again from another device", sid[:8])
                raise RefreshReused("other_device", "this refresh token was already used")
            return self._pair(session, now, user_agent, extra, jkt)
        await self.store.touch(sid, now)
        session = dataclasses.replace(session, refresh_jti=new_jti, last_used=now)
        return self._pair(session, now, user_agent, extra, jkt)

    async def logout(self, sid: str) -> None:
        """End one session: its access and refresh tokens stop working at once. Idempotent."""
        await self.store.revoke(sid)
        self._mirrored(RevocationKind.SESSION, sid)

    def _mirrored(self, kind: RevocationKind, subject: str) -> None:
        """This node's own revocation, applied to its mirror at once (the feed brings it to the others)."""
        if self.mirror is not None:
            self.mirror.record(kind, subject)

    async def logout_all(self, user_id: str) -> None:
        """End every session of the user (log out everywhere)."""
        await self._cut_off(user_id)

    async def _cut_off(self, user_id: str) -> None:
        # One atomic write: the account's epoch moves on, and every session that carries an older one (all of
        # them, and any a login in flight is about to create) is dead from now on.
        await self.store.revoke_all(user_id)
        self._mirrored(RevocationKind.USER, user_id)
        logger.info("ended every session of user %s", user_id)

    async def list_sessions(self, user_id: str) -> list[Session]:
        """The user's active sessions (device, IP, created, last used), newest first. ``last_used`` moves at
        each refresh and, through :meth:`note_use`, at most every ``LAST_USED_RESOLUTION`` seconds of use."""
        return await self.store.list_sessions(user_id)

    async def note_use(self, principal: Principal) -> None:
        """Record that the principal's session was used now, for the sessions page: one store write per
        session and process every ``LAST_USED_RESOLUTION`` seconds, not one per request. Best effort: a
        store failure is logged, never raised (the request was already authenticated)."""
        now = self.clock()
        sid = principal.session_id
        noted = self._last_noted.get(sid)
        if noted is not None and now - noted < LAST_USED_RESOLUTION:
            return
        if len(self._last_noted) >= _LAST_NOTED_MAX:
            self._last_noted.clear()  # bounded memory; the cost is one early write per session
        self._last_noted[sid] = now
        try:
            await self.store.touch(sid, now)
        except StoreUnavailable as exc:
            logger.debug("last use of session %s… not recorded: %s", sid[:8], exc)

    async def end_expired_session(self, access_token: str, *, dpop: DPoPRequest | None = None) -> bool:
        """Logout with an expired access token (a browser back after 15 idle minutes) still ends its
        session: the token is ours (signature, issuer, type all checked), only its ``exp`` passed (within
        the refresh-token lifetime), and the session it names is revoked only if it belongs to the token's
        subject. Otherwise the refresh token, sent to /refresh only, would outlive the logout. A DPoP-bound
        token needs ``dpop``, a valid proof by its key (its ``ath`` included). True when a session ended."""
        proof_jkt = None
        if dpop is not None:
            try:
                proof = await self.dpop.verify(dpop.proofs, htm=dpop.htm, htu=dpop.htu,
                                               access_token=access_token, spent=dpop.spent)
            except InvalidDPoPProof:
                return False
            proof_jkt = proof.jkt
        named = self.access.expired_session(access_token, grace=self.config.refresh_ttl, proof_jkt=proof_jkt)
        return named is not None and await self.revoke_session(*named)

    async def revoke_session(self, user_id: str, sid: str) -> bool:
        """Revoke one of the user's own sessions (the stolen-device case). False if it is not theirs or not
        active."""
        session = await self.store.get_session(sid)
        if session is None or session.user_id != user_id:
            return False
        revoked = await self.store.revoke(sid)
        self._mirrored(RevocationKind.SESSION, sid)
        return revoked

    def jwks(self) -> dict[str, Any]:
        """The public JWKS (empty for HMAC keys)."""
        return self.keys.jwks()

    # single-use tokens ---------------------------------------------------------------------------------

    def _single_use(self, typ: str, purpose: str, ttl: int, user: User, extra: Mapping[str, Any]) -> str:
        now = self.clock()
        claims = {"iss": self.config.issuer, "sub": user.id, "jti": new_id(), "iat": int(now),
                  "exp": int(now + ttl), "purpose": purpose, **extra}
        return encode(claims, self.keys.active, typ=typ)

    async def send_verification(self, user_id: str, *, ip: str = "") -> None:
        """Mail a ``{base_url}/verify?token=…`` link (valid 24 h, usable once), at most 3 an hour per account
        and 20 per client address ``ip`` ("", the registration's own mail or an admin's command: not
        counted). Does nothing when the address is already verified.

        Raises:
            UserNotFound (``user_not_found``), InvalidEmail (``invalid_email``): the account has no address;
            Throttled (``throttled``).
        """
        user = await self._user(user_id)
        if user.email is None:
            raise InvalidEmail("this account has no email address")
        if user.verified:
            return
        await self.limits.spend("verify", "ip", ip)
        await self.limits.spend("verify", "account", user.id)
        token = self._single_use(VERIFY_EMAIL_TYP, PURPOSE_VERIFY_EMAIL, self.config.verify_ttl, user,
                                 {"emh": email_binding(user.email)})
        link = f"{self.config.base_url}/verify?token={token}"
        await self.mailer.send(Message(
            to=user.email,
            subject="Confirm your email address",
            body=(f"Hello {user.username},\n\nconfirm your email address by opening this link within "
                  f"{_hours(self.config.verify_ttl)}:\n\n{link}\n\n"
                  "If you did not sign up, ignore this mail.\n"),
        ))

    async def verify_email(self, token: str) -> User:
        """Consume a verification token and mark the address verified.

        Raises:
            InvalidToken (``.reason`` ``used`` for a second click, ``stale`` when the address changed,
            ``wrong_type`` for another kind of token), TokenExpired.
        """
        claims = await self._decode(token, VERIFY_EMAIL_TYP, require=("exp", "iat", "sub", "jti"))
        self._check_purpose(claims, PURPOSE_VERIFY_EMAIL)
        user = await self.users.get(claims["sub"])
        binding = claims.get("emh")
        if user is None or user.email is None or not isinstance(binding, str) \
                or not hmac.compare_digest(binding, email_binding(user.email)):
            raise InvalidToken("stale", "this link is no longer valid")
        await self._consume(claims)
        if user.verified:
            return user
        user = dataclasses.replace(user, verified=True)
        await self.users.update(user)
        logger.info("user %s verified their email address", user.id)
        return user

    async def forgot_password(self, username_or_email: str, *, ip: str = "") -> None:
        """Mail a ``{base_url}/password/reset?token=…`` link (valid 30 min, usable once) to the account named
        by username or email address, if there is one with an address. The outcome is the same either way,
        so it reveals nothing about which accounts exist. (The time taken still includes the mailer's: with
        a slow SMTP server, send from a background task in the caller if that matters.)

        At most 3 an hour per username or address asked for, and 20 an hour per client ``ip`` ("" is not
        counted): Throttled (``throttled``) past them, whether the account exists or not.
        """
        value = str(username_or_email).strip()
        # counted before the lookup, for any value: the limits reveal nothing about which accounts exist
        await self.limits.spend("forgot", "ip", ip)
        await self.limits.spend("forgot", "target", value.casefold())
        targets: Sequence[User] = ()
        if "@" in value:
            try:
                targets = await self.users.find_by_email(normalize_email(value))
            except InvalidEmail:
                targets = ()
        else:
            user = await self.find_user(value)
            targets = (user,) if user is not None else ()
        for user in targets:
            if user.email is None or user.disabled:
                continue
            token = self._single_use(RESET_TYP, PURPOSE_RESET, self.config.reset_ttl, user,
                                     {"pwh": password_binding(user.password_hash)})
            link = f"{self.config.base_url}/password/reset?token={token}"
            await self.mailer.send(Message(
                to=user.email,
                subject="Reset your password",
                body=(f"Hello {user.username},\n\nset a new password by opening this link within "
                      f"{_minutes(self.config.reset_ttl)}:\n\n{link}\n\n"
                      "If you did not ask for this, ignore this mail: your password stays as it is.\n"),
            ))
            logger.info("password reset mail for user %s", user.id)

    async def reset_password(self, token: str, new_password: str) -> None:
        """Set a new password with a reset token. Every existing session ends. The token dies once the
        password changes (it is bound to the current hash) and can be used once.

        Raises:
            WeakPassword (``weak_password``): checked before the token is spent, so the user may try again.
            InvalidToken (``.reason`` ``used``, ``stale``, ``wrong_type``, ...), TokenExpired.
        """
        claims = await self._decode(token, RESET_TYP, require=("exp", "iat", "sub", "jti"))
        self._check_purpose(claims, PURPOSE_RESET)
        user = await self.users.get(claims["sub"])
        binding = claims.get("pwh")
        if user is None or not isinstance(binding, str) or not hmac.compare_digest(
            binding, password_binding(user.password_hash)
        ):
            raise InvalidToken("stale", "this link is no longer valid")
        check_password(new_password, username=user.username)
        await self._consume(claims)
        # Following the link proves the mailbox is the user's, so the address counts as verified.
        user = dataclasses.replace(user, password_hash=await self.hasher.hash(new_password), verified=True)
        await self.users.update(user)
        await self._cut_off(user.id)
        await self.throttle.success(self.throttle.keys(user.username, "")[0])
        logger.info("user %s reset their password", user.id)

    async def change_password(self, user_id: str, old_password: str, new_password: str) -> None:
        """Change a password, knowing the old one. Every session of the user ends, this one included.

        Raises:
            UserNotFound, Throttled, InvalidCredentials (wrong old password; counted like a failed login),
            WeakPassword.
        """
        user = await self._user(user_id)
        user_key, _ = self.throttle.keys(user.username, "")
        async with self.throttle.serialized((user_key,)):
            await self.throttle.check((user_key,))
            usable = isinstance(old_password, str) and len(old_password) <= MAX_PASSWORD_LENGTH
            candidate = old_password if usable else ""
            if not await self.hasher.verify(user.password_hash, candidate) or not usable:
                await self.throttle.failure((user_key,))
                raise InvalidCredentials("the current password is wrong")
        check_password(new_password, username=user.username)
        await self.users.update(dataclasses.replace(user, password_hash=await self.hasher.hash(new_password)))
        await self._cut_off(user.id)
        logger.info("user %s changed their password", user.id)

    # decoding ------------------------------------------------------------------------------------------

    async def _decode(self, token: str, typ: str, *, require: Sequence[str]) -> dict[str, Any]:
        """One of the service's own non-access tokens (refresh, verify, reset), through the one decode step
        (:func:`decode_token`) with our keys, issuer, leeway and clock. A token of a key the key file has
        but this process has not loaded yet (another worker saw the rotation first) gets one more try after
        the file (or the shared store's ring) is read again, as the access policy does for access tokens."""
        keys = self.keys
        try:
            return decode_token(token, keys.keyset, typ=typ, issuer=self.config.issuer, audience=None,
                                require=tuple(require), leeway=self.config.leeway, now=self.clock())
        except InvalidToken as exc:
            if exc.reason != "key":
                raise
            if isinstance(keys, KeyRingFile):
                if not keys.refresh_now():
                    raise
            elif not isinstance(keys, StoreKeyRing) or not await keys.refresh(_kid_of(token)):
                raise
        return decode_token(token, keys.keyset, typ=typ, issuer=self.config.issuer, audience=None,
                            require=tuple(require), leeway=self.config.leeway, now=self.clock())

    @staticmethod
    def _check_purpose(claims: Mapping[str, Any], purpose: str) -> None:
        if claims.get("purpose") != purpose:
            raise InvalidToken("wrong_type", "this token is for something else")

    async def _consume(self, claims: Mapping[str, Any]) -> None:
        # Atomic in every store: exactly one caller wins, so a second click (or a race) fails cleanly.
        if not await self.store.consume(claims["jti"], float(claims["exp"])):
            raise InvalidToken("used", "this link was already used")

    # administration ------------------------------------------------------------------------------------

    async def delete_user(self, user_id: str) -> User:
        """Delete an account: every session of the user ends, then the account is removed (its username is
        free again). Returns the record that was removed.

        Its access and refresh tokens stop working at once, on every node: their sessions fail the store's
        check, and the account check refuses them as well. The sessions are cut off again once the account
        is gone, so a login that raced with the deletion gets a session that is dead on arrival.

        Raises:
            UserNotFound (``user_not_found``); jwtkit.store.StoreUnavailable.
        """
        user = await self._user(user_id)
        await self._cut_off(user_id)
        await self.users.delete(user_id)
        await self._cut_off(user_id)  # a login that read the account between the first cut-off and here
        self.access.forget_account(user_id)
        logger.info("deleted user %s", user_id)
        return user

    async def set_password(self, user_id: str, new_password: str) -> User:
        """Set a new password as an administrator (no old password, no reset link). This is a password
        reset: every session of the user ends, through the account epoch as in :meth:`reset_password`, so a
        login in flight gets a session that is dead on arrival. The username's failed-login count is
        cleared. Returns the updated record.

        Raises:
            UserNotFound (``user_not_found``), WeakPassword (``weak_password``: checked before anything
            changes); jwtkit.store.StoreUnavailable.
        """
        user = await self._user(user_id)
        check_password(new_password, username=user.username)
        password_hash = await self.hasher.hash(new_password)
        user = await self._user(user_id)  # read again after the slow hash, so edits made meanwhile survive
        updated = dataclasses.replace(user, password_hash=password_hash)
        await self.users.update(updated)
        await self._cut_off(user_id)  # after the write: a login that checked the old password is cut off
        await self.throttle.success(self.throttle.keys(updated.username, "")[0])
        logger.info("a new password was set for user %s", user_id)
        return updated

    async def mark_verified(self, user_id: str) -> User:
        """Mark the account's email address verified, as following the verification link would. Idempotent.
        Returns the updated record.

        Raises:
            UserNotFound (``user_not_found``), InvalidEmail (``invalid_email``): the account has no address.
        """
        user = await self._user(user_id)
        if user.email is None:
            raise InvalidEmail("this account has no email address")
        if user.verified:
            return user
        updated = dataclasses.replace(user, verified=True)
        await self.users.update(updated)
        logger.info("user %s marked verified", user_id)
        return updated


def _hours(seconds: int) -> str:
    hours = seconds / 3600
    return f"{hours:g} hours" if hours != 1 else "1 hour"


def _minutes(seconds: int) -> str:
    minutes = seconds / 60
    return f"{minutes:g} minutes" if minutes != 1 else "1 minute"
