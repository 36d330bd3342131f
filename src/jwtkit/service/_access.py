"""The one access-token policy: is this token, from this client, allowed in now?

:class:`AccessPolicy` owns the whole order, and every caller asks it (the service's ``authenticate``,
jwtkit's server, :class:`jwtkit.web.JWTAuthMiddleware` and the FastAPI dependencies):

1. decode: signature, ``typ`` (``at+jwt`` for the service's tokens, RFC 9068 §2.1; built from bare keys,
   jwtkit's refresh and single-use types are refused), issuer, audience, required claims, leeway;
2. the session: ``store.check(sid, sub)`` (revoked, expired, or older than the account's epoch), answered
   in process by a :class:`~jwtkit.store.RevocationMirror` when one is given and current;
3. the account: disabled or deleted accounts are refused (the flag is cached for ``user_cache_ttl``);
4. the client: the ``agent`` claim must match the User-Agent, when binding is on;
5. the key: a token bound to a DPoP key (``cnf.jkt``, RFC 9449) must come with ``Authorization: DPoP`` and a
   fresh proof signed by that key (:class:`~jwtkit.service._dpop.DPoPVerifier`: every check of RFC 9449
   §4.3, the replay cache included); a bound token sent as ``Bearer``, or an unbound one sent as ``DPoP``,
   is refused, and so is every unbound token when ``require_dpop`` is on;
6. the app's own ``validate`` hook, when one is given.

Step 1 is skipped for a token this policy verified before and that has not expired (the verified-token
cache, ``token_cache`` entries, keyed by the whole token and the keys it was verified with; the claims are
parsed again from the payload on each hit, so nothing a caller does to them reaches the cache). Steps 2 to 5
run on every request: a refusal or a session state is never cached.

Each rule is written once, here. :func:`decode_token` is the one decode-and-map step for every kind of
token the service reads (access, refresh, single-use), so the "wrong token type" rule has one home too.

This module is light on purpose (no argon2, sqlite3, jinja2 or smtplib): users' apps import it through the
middleware.
"""

from __future__ import annotations

import base64
import dataclasses
import hmac
import inspect
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import orjson

from jwtkit import ExpiredToken, InvalidHeader, JWTError, Key, KeySet, decode, decode_unverified
from jwtkit.service._dpop import DPoPRequest, DPoPVerifier
from jwtkit.service._errors import InvalidDPoPProof, InvalidToken, SessionRevoked, TokenExpired
from jwtkit.service._tokens import ACCESS_TYP, REFRESH_TYP, RESET_TYP, VERIFY_EMAIL_TYP, agent_hash
from jwtkit.store._base import Store

if TYPE_CHECKING:
    from jwtkit.store._mirror import RevocationMirror

__all__ = [
    "ACCESS_CLAIMS",
    "AccessPolicy",
    "AccountLookup",
    "KeyProvider",
    "Principal",
    "Validator",
    "check_ids",
    "decode_token",
    "refusal",
]

# What every jwtkit access token carries (RFC 9068 §2.2 plus our sid).
ACCESS_CLAIMS = ("exp", "iat", "sub", "sid", "jti")
# Claims the service relies on as non-empty strings when they are required.
_ID_CLAIMS = frozenset({"sub", "sid", "jti", "fam"})
# jwtkit's own token kinds that are never access tokens, refused even by a policy built from bare keys.
_NOT_ACCESS_TYPS = frozenset({REFRESH_TYP, RESET_TYP, VERIFY_EMAIL_TYP})
_MAX_CACHED_ACCOUNTS = 10_000
DEFAULT_TOKEN_CACHE = 4096
# a verified token without ``exp`` (a policy may not require one) is verified again after this long
_MAX_CACHED_AGE = 300.0


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a verified access token speaks for: the user id (``sub``), the session id (``sid``), all claims
    (a read-only mapping)."""

    user_id: str
    session_id: str
    claims: Mapping[str, Any] = dataclasses.field(repr=False)

    @property
    def scopes(self) -> frozenset[str]:
        """The ``scope`` claim's space-separated scopes (RFC 9068 §2.2.3, RFC 8693 §4.2); empty without
        one, or when it is not a string."""
        scope = self.claims.get("scope")
        return frozenset(scope.split()) if isinstance(scope, str) else frozenset()

    @property
    def roles(self) -> frozenset[str]:
        """The ``roles`` claim (RFC 9068 §2.2.3.1, SCIM's roles): the strings of that list; empty without
        one, or when it is not a list."""
        roles = self.claims.get("roles")
        if not isinstance(roles, list):
            return frozenset()
        return frozenset(role for role in roles if isinstance(role, str))


Validator = Callable[[Principal], "bool | Awaitable[bool]"]


class AccountLookup(Protocol):
    """What the policy needs of a user repository: the account by id (None when it does not exist)."""

    async def get(self, user_id: str) -> Any: ...


@runtime_checkable
class KeyProvider(Protocol):
    """Verification keys that change while the process runs: a key ring file that ``jwtkit keys rotate``
    rewrites, another issuer's JWKS. The policy asks :meth:`current` on every request (so it must not do
    I/O), and :meth:`refresh` once when a token names a ``kid`` the current keys lack."""

    def current(self) -> Key | KeySet:
        """The keys to verify with now; no I/O, no waiting."""
        ...

    async def refresh(self, kid: str | None) -> bool:
        """Look for newer keys (within the provider's own rate limit); True when the keys changed."""
        ...


def _kid_of(token: str) -> str | None:
    try:
        header, _ = decode_unverified(token)
    except JWTError:
        return None
    kid = header.get("kid")
    return kid if isinstance(kid, str) else None


def _typ_of(token: str) -> str | None:
    """The ``typ`` header of a token that failed or passed verification, normalised; error paths only."""
    try:
        header, _ = decode_unverified(token)
    except JWTError:
        return None
    typ = header.get("typ")
    return typ.lower().removeprefix("application/") if isinstance(typ, str) else None


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _principal(claims: Mapping[str, Any]) -> Principal:
    sub, sid = claims.get("sub"), claims.get("sid")
    frozen = claims if isinstance(claims, MappingProxyType) else MappingProxyType(dict(claims))
    return Principal(user_id=sub if type(sub) is str else "", session_id=sid if type(sid) is str else "",
                     claims=frozen)


def decode_token(
    token: str,
    keys: Key | KeySet,
    *,
    typ: str | None,
    issuer: str | None,
    audience: str | None,
    require: Sequence[str],
    leeway: float,
    now: float | None,
) -> dict[str, Any]:
    """:func:`jwtkit.decode` for one kind of token, its errors mapped to :class:`InvalidToken` reasons.

    Raises:
        TokenExpired (reason ``expired``); InvalidToken with reason ``wrong_type`` (a token of another kind:
        its ``typ`` is another or missing, RFC 8725 §3.11), ``claim`` (a required id claim is not a
        non-empty string) or the JWTError code.
    """
    try:
        claims = decode(token, keys, issuer=issuer, audience=audience, typ=typ, leeway=leeway,
                        require=require, now=now)
    except JWTError as exc:
        raise refusal(exc, token, typ) from None
    check_ids(claims, tuple(name for name in require if name in _ID_CLAIMS))
    return claims


def refusal(error: JWTError, token: str, typ: str | None) -> InvalidToken:
    """The InvalidToken for a token :func:`jwtkit.decode` refused (the one mapping; see decode_token)."""
    if isinstance(error, ExpiredToken):
        return TokenExpired()
    if isinstance(error, InvalidHeader):
        if typ is not None and _typ_of(token) != typ.lower().removeprefix("application/"):
            return InvalidToken("wrong_type", "the token is of another kind")
        return InvalidToken("header", "the token is invalid")
    return InvalidToken(error.code, "the token is invalid")


def check_ids(claims: Mapping[str, Any], names: tuple[str, ...]) -> None:
    """The id claims the service relies on (``sub``, ``sid``, ``jti``, ``fam``) are non-empty strings."""
    for name in names:
        value = claims.get(name)
        if type(value) is not str or not value:
            raise InvalidToken("claim", f"the token's {name} claim is invalid")


class AccessPolicy:
    """The access-token policy (see the module docstring). Built once, asked on every request.

    Args:
        keys: the ``Key`` or ``KeySet`` that verifies tokens (its algorithms are the allow-list), or a
            :class:`KeyProvider` whose keys may change (asked for its current keys on every request, and
            to refresh once when a token names a ``kid`` they lack).
        typ: the ``typ`` header required; None accepts any type except jwtkit's refresh and single-use ones.
        issuer: the exact ``iss`` required, or None.
        audience: the ``aud`` required, or None (then tokens carrying ``aud`` are refused, RFC 7519 §4.1.3).
        require: the claims every token must carry; ``sub``/``sid``/``jti`` must be non-empty strings.
        leeway: seconds of clock skew allowed on ``exp``/``nbf``/``iat``.
        store: when given, tokens need ``sub`` and ``sid`` and their session must pass ``store.check``.
        accounts: when given, the account ``sub`` must exist and not be disabled.
        account_cache_ttl: seconds an account's state may be reused (0: looked up on every request).
        bind_user_agent: the ``agent`` claim must be the hash of the request's User-Agent.
        validate: the app's own last check (sync or async); False refuses with reason ``rejected``.
        mirror: the in-process revocation mirror that answers the session check when it can (needs
            ``store``, which answers whenever the mirror cannot).
        token_cache: how many verified tokens to remember (0: every token is verified every time).
        dpop: the DPoP rules (algorithms, ``iat`` window, nonces); by default a
            :class:`~jwtkit.service._dpop.DPoPVerifier` whose replay cache is ``store`` (or this process).
        require_dpop: refuse tokens that are not DPoP-bound.
        clock: the time source (tests pin it); the wall clock when None.

    Raises:
        TypeError, ValueError: on a wrong configuration, here and never per request.
    """

    def __init__(
        self,
        *,
        keys: Key | KeySet | KeyProvider,
        typ: str | None = ACCESS_TYP,
        issuer: str | None = None,
        audience: str | None = None,
        require: Sequence[str] = ("exp",),
        leeway: float = 0,
        store: Store | None = None,
        accounts: AccountLookup | None = None,
        account_cache_ttl: float = 0.0,
        bind_user_agent: bool = False,
        validate: Validator | None = None,
        mirror: RevocationMirror | None = None,
        token_cache: int = DEFAULT_TOKEN_CACHE,
        dpop: DPoPVerifier | None = None,
        require_dpop: bool = False,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if not isinstance(keys, Key | KeySet | KeyProvider):
            raise TypeError("keys must be a jwtkit Key or KeySet, or a KeyProvider")
        if typ is not None and (not isinstance(typ, str) or not typ):
            raise TypeError("typ must be a non-empty string or None")
        if isinstance(require, str):
            raise TypeError("require must be a sequence of claim names, not a string")
        if isinstance(leeway, bool) or not isinstance(leeway, int | float) or leeway < 0:
            raise ValueError("leeway must be a non-negative number")
        if account_cache_ttl < 0:
            raise ValueError("account_cache_ttl must not be negative")
        if validate is not None and not callable(validate):
            raise TypeError("validate must be callable")
        if mirror is not None and store is None:
            raise TypeError("a mirror needs the store it mirrors (store=)")
        if isinstance(token_cache, bool) or not isinstance(token_cache, int) or token_cache < 0:
            raise ValueError("token_cache must be a non-negative int")
        if dpop is not None and not isinstance(dpop, DPoPVerifier):
            raise TypeError("dpop must be a DPoPVerifier")
        require = tuple(require)
        if store is not None or accounts is not None:
            # the session and the account are named by these claims: a token without them cannot pass
            require += tuple(name for name in ("sub", "sid") if name not in require)
        if bind_user_agent and "agent" not in require:
            require += ("agent",)
        self.provider: KeyProvider | None = None if isinstance(keys, Key | KeySet) else keys
        self._static_keys: Key | KeySet | None = keys if isinstance(keys, Key | KeySet) else None
        self.typ = typ
        self.issuer = issuer
        self.audience = audience
        self.require = require
        self.leeway = leeway
        self.store = store
        self.accounts = accounts
        self.account_cache_ttl = float(account_cache_ttl)
        self.bind_user_agent = bind_user_agent
        self.validate = validate
        self.mirror = mirror
        self.clock = clock
        self.token_cache = token_cache
        self.dpop = dpop if dpop is not None else DPoPVerifier(store, clock=clock)
        self.require_dpop = bool(require_dpop)
        # token -> (verified until, the keys that verified it, its principal when nothing in it can change);
        # insertion order is the LRU order
        self._verified: dict[str, tuple[float, object, Principal | None]] = {}
        self._ids = tuple(name for name in require if name in _ID_CLAIMS)
        # user id -> (valid until, refused); bounded, see _account_refused
        self._accounts: dict[str, tuple[float, bool]] = {}

    @property
    def keys(self) -> Key | KeySet:
        """The keys that verify tokens now (the provider's current ones, when there is a provider)."""
        if self._static_keys is not None:
            return self._static_keys
        assert self.provider is not None  # one of the two is always set
        return self.provider.current()

    async def _decode(self, token: str) -> dict[str, Any]:
        now = None if self.clock is None else self.clock()
        try:
            return decode(token, self.keys, issuer=self.issuer, audience=self.audience, typ=self.typ,
                          leeway=self.leeway, require=self.require, now=now)
        except JWTError as exc:
            if exc.code != "key" or self.provider is None or not await self.provider.refresh(_kid_of(token)):
                raise refusal(exc, token, self.typ) from None
        # the provider found newer keys for this token's kid: one more try, with them
        try:
            return decode(token, self.keys, issuer=self.issuer, audience=self.audience, typ=self.typ,
                          leeway=self.leeway, require=self.require, now=now)
        except JWTError as exc:
            raise refusal(exc, token, self.typ) from None

    def __repr__(self) -> str:
        return (f"AccessPolicy(typ={self.typ!r}, issuer={self.issuer!r}, audience={self.audience!r}, "
                f"store={type(self.store).__name__ if self.store else None}, "
                f"accounts={self.accounts is not None}, bind_user_agent={self.bind_user_agent})")

    async def authenticate(self, token: str, *, user_agent: str | None = None,
                           dpop: DPoPRequest | None = None) -> Principal:
        """The principal of an access token, or the reason it is refused.

        Args:
            token: the compact JWT the request carried.
            user_agent: the request's User-Agent (used only when ``bind_user_agent`` is on).
            dpop: the request as DPoP sees it, when it presented the token with ``Authorization: DPoP``
                (its proofs, method and URL); None for ``Bearer``.

        Raises:
            TokenExpired (reason ``expired``), SessionRevoked (reason ``revoked``), InvalidToken (reason: a
            JWTError code, ``wrong_type``, ``claim``, ``disabled``, ``agent``, ``rejected`` or ``not_bound``),
            InvalidDPoPProof (``invalid_dpop_proof``: the proof, or ``bound`` for a bound token without
            one), UseDPoPNonce; jwtkit.store.StoreUnavailable when the session or the replay cache cannot
            answer (callers answer 503).
        """
        now = time.time() if self.clock is None else self.clock()
        keys = self._static_keys
        current = keys if keys is not None else self.provider.current()  # type: ignore[union-attr]
        verified = self._verified.pop(token, None) if self.token_cache else None
        claims: Mapping[str, Any]
        principal: Principal | None = None
        if verified is not None and verified[1] is current and now < verified[0]:
            # verified before by these keys (R11 held then); the principal itself when every claim is a
            # scalar (nothing in it can change), else the claims again from the payload
            self._verified[token] = verified  # back to the LRU's young end
            principal = verified[2]
            if principal is None:
                segment = token.split(".", 2)[1]
                claims = orjson.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) & 3)))
            else:
                claims = principal.claims
        else:
            # decode_token's two steps, inlined: this runs on every request
            if keys is None:
                claims = await self._decode(token)
                current = self.provider.current()  # type: ignore[union-attr]  # a refresh may change them
            else:
                try:
                    claims = decode(token, keys, issuer=self.issuer, audience=self.audience, typ=self.typ,
                                    leeway=self.leeway, require=self.require, now=now)
                except JWTError as exc:
                    raise refusal(exc, token, self.typ) from None
            check_ids(claims, self._ids)
            if self.typ is None and _typ_of(token) in _NOT_ACCESS_TYPS:
                raise InvalidToken("wrong_type", "this token is not an access token")
            if self.token_cache:
                principal = self._remember(token, claims, now, current)
        cnf = claims.get("cnf")
        jkt = None
        if cnf is not None:
            jkt = cnf.get("jkt") if isinstance(cnf, Mapping) else None
            if type(jkt) is not str or not jkt:
                raise InvalidToken("claim", "the token's cnf claim is invalid")
            if dpop is None:
                raise InvalidDPoPProof("bound", "this token is bound to a DPoP key: present it with "
                                                "'Authorization: DPoP' and a proof")
        elif dpop is not None:
            raise InvalidToken("not_bound", "this token is not bound to a DPoP key: present it as Bearer")
        elif self.require_dpop:
            raise InvalidDPoPProof("required", "only DPoP-bound tokens are accepted here")
        sub = claims.get("sub")
        sid = claims.get("sid")
        store = self.store
        if store is not None:
            mirror = self.mirror
            active = None if mirror is None else mirror.lookup(sid, sub)  # type: ignore[arg-type]
            if active and now >= claims.get("exp", float("inf")):
                active = None  # inside the leeway after exp: the session's own expiry is the store's
            if active is None:
                active = await store.check(sid, sub)  # type: ignore[arg-type]
            if not active:
                raise SessionRevoked()
        if self.accounts is not None:
            # the account rule (check_account); a fresh cache entry answers without a coroutine
            cached = self._accounts.get(sub)  # type: ignore[arg-type]
            if cached is None or self._now() >= cached[0]:
                await self.check_account(sub)  # type: ignore[arg-type]
            elif cached[1]:
                raise InvalidToken("disabled", "the account is disabled")
        if self.bind_user_agent:
            presented = claims["agent"]
            if type(presented) is not str or not hmac.compare_digest(presented, agent_hash(user_agent or "")):
                raise InvalidToken("agent", "the token was issued to another client")
        if dpop is not None:
            # last of the checks that read the store: a token refused above spends no proof
            await self.dpop.verify(dpop.proofs, htm=dpop.htm, htu=dpop.htu, access_token=token, jkt=jkt,
                                   spent=dpop.spent)
        if principal is None:
            principal = _principal(claims)
        if self.validate is not None:
            verdict = self.validate(principal)
            if inspect.isawaitable(verdict):
                verdict = await verdict
            if not verdict:
                raise InvalidToken("rejected", "the token was rejected")
        return principal

    def _remember(self, token: str, claims: Mapping[str, Any], now: float, keys: object) -> Principal | None:
        """Cache a verified token; returns the principal it cached with it (claims all scalars), or None."""
        exp = claims.get("exp")
        until = now + _MAX_CACHED_AGE
        if isinstance(exp, int | float) and not isinstance(exp, bool):
            until = min(until, exp + self.leeway)
        principal = _principal(claims) if all(type(v) in _SCALARS for v in claims.values()) else None
        cache = self._verified
        if len(cache) >= self.token_cache:
            del cache[next(iter(cache))]  # the least recently used
        cache[token] = (until, keys, principal)
        return principal

    def expired_session(self, token: str, *, grace: float, proof_jkt: str | None = None
                        ) -> tuple[str, str] | None:
        """``(sub, sid)`` of a token that passes every decode rule of this policy except that its ``exp``
        may have passed up to ``grace`` seconds ago; None otherwise. For ending the session of an expired
        token at logout (its refresh token would outlive the logout otherwise); it grants no access. A
        DPoP-bound token counts only with ``proof_jkt``, the thumbprint of a verified proof by its key: its
        thief must not be able to end its owner's session either.
        """
        try:
            claims = decode_token(token, self.keys, typ=self.typ, issuer=self.issuer, audience=self.audience,
                                  require=self.require, leeway=max(self.leeway, grace),
                                  now=None if self.clock is None else self.clock())
        except InvalidToken:
            return None
        sub, sid = claims.get("sub"), claims.get("sid")
        if type(sub) is not str or type(sid) is not str or not sub or not sid:
            return None
        cnf = claims.get("cnf")
        if cnf is not None:
            jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
            if type(jkt) is not str or proof_jkt is None or not hmac.compare_digest(jkt, proof_jkt):
                return None
        return sub, sid

    async def check_account(self, user_id: str) -> None:
        """The account rule on its own (the service applies it to refresh tokens too): the account must
        exist and not be disabled. Its state is reused for ``account_cache_ttl`` seconds.

        Raises:
            InvalidToken: reason ``disabled``.
        """
        if await self._account_refused(user_id):
            raise InvalidToken("disabled", "the account is disabled")

    def _now(self) -> float:
        return time.monotonic() if self.clock is None else self.clock()

    async def _account_refused(self, user_id: str) -> bool:
        ttl = self.account_cache_ttl
        now = self._now()
        if ttl > 0:
            cached = self._accounts.get(user_id)
            if cached is not None and now < cached[0]:
                return cached[1]
        accounts = self.accounts
        if accounts is None:
            return False
        user = await accounts.get(user_id)
        refused = user is None or bool(getattr(user, "disabled", True))
        if ttl > 0:
            if len(self._accounts) >= _MAX_CACHED_ACCOUNTS:
                self._accounts.clear()  # bounded memory; refilled by the next requests
            self._accounts[user_id] = (now + ttl, refused)
        return refused

    def forget_account(self, user_id: str) -> None:
        """Drop the cached state of one account (the service calls it when it disables or enables one)."""
        self._accounts.pop(user_id, None)
