"""``redis://`` and ``rediss://`` (TLS): the store for many nodes, on redis-py's asyncio client (hiredis
parser when installed).

Keys (``prefix`` defaults to ``jwtkit:``; every key carries a TTL, so the keyspace follows live records):

- ``{prefix}s:{sid}``: hash, one session (``revoked`` is ``"0"``/``"1"``), until the session expires;
- ``{prefix}u:{user_id}``: sorted set of the user's sids scored by ``created`` (listing), pruned of dead ones;
- ``{prefix}f:{family}``: set of the sids of one refresh family (reuse detection revokes all of them);
- ``{prefix}c:{user_id}``: hash with the user's cut-off, until every session it can kill has expired;
- ``{prefix}j:{jti}``: a consumed single-use token (``SET NX PX``), until the token expires;
- ``{prefix}t:{key}``: hash, a login-throttle counter, until its window ends.

Every time decision uses the injected clock: the scripts get ``now`` as an argument and compare it with the
absolute expiry stored in each record, so a fake clock works even though Redis expires keys by its own
clock. Read-modify-write steps are Lua scripts (atomic on the server) and :meth:`check` is one ``EVALSHA``.
The scripts build key names from the prefix, so they need a single Redis node (not Redis Cluster).

Faults: connect and command timeouts are explicit, and a refused or broken connection raises
:class:`StoreUnavailable` at once (``Retry(NoBackoff(), 1)`` on connection errors only: the one retry replaces
a pooled connection that died with a restarted server; a *timeout* is never retried, since the command may
have run). When the server is back, the next command reconnects.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from jwtkit.store._common import (
    CUTOFF_MIN_RETENTION,
    BaseStore,
    corrupt_session,
    is_active,
    log,
    parse_float_option,
    redact_url,
)
from jwtkit.store.base import (
    DEFAULT_COMMAND_TIMEOUT,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_PURGE_INTERVAL,
    Clock,
    Rotation,
    Session,
    StoreConfigError,
    StoreUnavailable,
    ThrottleState,
)

__all__ = ["DEFAULT_PREFIX", "RedisStore"]

T = TypeVar("T")

DEFAULT_PREFIX = "jwtkit:"
# redis-py options a caller may pass through (TLS material for rediss://, pool size).
_PASSTHROUGH = frozenset({"ssl_certfile", "ssl_keyfile", "ssl_ca_certs", "ssl_ca_data", "ssl_cert_reqs",
                          "ssl_check_hostname", "ssl_password", "ssl_min_version", "ssl_ciphers",
                          "max_connections", "client_name", "username", "password"})

# Shared by the scripts: ARGV[1] is the key prefix, ARGV[2] the caller's clock. load(sid) answers the state
# of a session (missing, corrupt, inactive, active) and its fields, applying expiry and the user's cut-off.
_PRELUDE = """
local P = ARGV[1]
local NOW = tonumber(ARGV[2])
local function load(sid)
  local f = redis.pcall('HMGET', P .. 's:' .. sid, 'user_id', 'created', 'expires', 'revoked', 'family',
                        'refresh_jti')
  if f.err then return 'corrupt', nil end
  if not f[1] then return 'missing', nil end
  local created, expires = tonumber(f[2]), tonumber(f[3])
  if not created or not expires or not f[5] or not f[6] or (f[4] ~= '0' and f[4] ~= '1') then
    return 'corrupt', f
  end
  if f[4] == '1' or expires <= NOW then return 'inactive', f end
  local cut = redis.pcall('HGET', P .. 'c:' .. f[1], 'cutoff')
  if type(cut) == 'table' then return 'corrupt', f end
  if cut then
    local n = tonumber(cut)
    if not n then return 'corrupt', f end
    if created < n then return 'inactive', f end
  end
  return 'active', f
end
local function extend(key, ttl)
  local left = redis.call('PTTL', key)
  if left < ttl then redis.call('PEXPIRE', key, ttl) end
end
local function revoke_family(family)
  local fkey = P .. 'f:' .. family
  local members = redis.pcall('SMEMBERS', fkey)
  if members.err then return 0 end
  local n = 0
  for _, sid in ipairs(members) do
    local state = load(sid)
    if state == 'active' or state == 'inactive' then
      redis.call('HSET', P .. 's:' .. sid, 'revoked', '1')
    elseif state == 'missing' then
      redis.call('SREM', fkey, sid)
    end
    if state == 'active' then n = n + 1 end
  end
  return n
end
"""

# The hot path, one round trip: KEYS = session, claimed user's cut-off; ARGV = user_id, now.
# 1 = active, 0 = not, -1 = corrupt record (the caller logs it and answers False).
_CHECK = """
local f = redis.pcall('HMGET', KEYS[1], 'user_id', 'revoked', 'expires', 'created')
if f.err then return -1 end
if not f[1] or f[1] ~= ARGV[1] then return 0 end
if f[2] ~= '0' then
  if f[2] == '1' then return 0 end
  return -1
end
local expires, created = tonumber(f[3]), tonumber(f[4])
if not expires or not created then return -1 end
if expires <= tonumber(ARGV[2]) then return 0 end
local cut = redis.pcall('HGET', KEYS[2], 'cutoff')
if type(cut) == 'table' then return -1 end
if cut then
  local n = tonumber(cut)
  if not n then return -1 end
  if created < n then return 0 end
end
return 1
"""

# ARGV[3..]: sid, user_id, created, last_used, expires, family, refresh_jti, user_agent, ip, revoked, ttl_ms
_CREATE = _PRELUDE + """
local sid, user_id, family, ttl = ARGV[3], ARGV[4], ARGV[8], tonumber(ARGV[13])
local skey = P .. 's:' .. sid
redis.call('DEL', skey)
redis.call('HSET', skey, 'user_id', user_id, 'created', ARGV[5], 'last_used', ARGV[6], 'expires', ARGV[7],
           'family', family, 'refresh_jti', ARGV[9], 'user_agent', ARGV[10], 'ip', ARGV[11],
           'revoked', ARGV[12])
redis.call('PEXPIRE', skey, ttl)
local ukey = P .. 'u:' .. user_id
redis.call('ZADD', ukey, ARGV[5], sid)
extend(ukey, ttl)
local fkey = P .. 'f:' .. family
redis.call('SADD', fkey, sid)
extend(fkey, ttl)
return 1
"""

# ARGV[3] = sid. Returns {fields...} flat, then the cut-off (or false / 'corrupt').
_GET = """
local P = ARGV[1]
local h = redis.pcall('HGETALL', P .. 's:' .. ARGV[3])
if h.err then return {'corrupt'} end
if #h == 0 then return {} end
local user_id
for i = 1, #h, 2 do if h[i] == 'user_id' then user_id = h[i + 1] end end
local cut = false
if user_id then
  cut = redis.pcall('HGET', P .. 'c:' .. user_id, 'cutoff')
  if type(cut) == 'table' then cut = 'corrupt' end
end
return {h, cut}
"""

# ARGV[3] = sid, ARGV[4] = when
_TOUCH = """
local key = ARGV[1] .. 's:' .. ARGV[3]
local f = redis.pcall('HMGET', key, 'revoked', 'last_used')
if f.err or f[1] ~= '0' then return 0 end
local last = tonumber(f[2])
if last and last >= tonumber(ARGV[4]) then return 0 end
redis.call('HSET', key, 'last_used', ARGV[4])
return 1
"""

# ARGV[3] = sid. 1 if it was active.
_REVOKE = _PRELUDE + """
local state = load(ARGV[3])
if state == 'active' or state == 'inactive' then redis.call('HSET', P .. 's:' .. ARGV[3], 'revoked', '1') end
if state == 'active' then return 1 end
return 0
"""

# ARGV[3] = family
_REVOKE_FAMILY = _PRELUDE + "return revoke_family(ARGV[3])"

# ARGV[3] = user_id, ARGV[4] = cut-off, ARGV[5] = minimum retention (s). The record lives until the last of
# the user's sessions expires (it can only kill those), and at least the retention.
_REVOKE_ALL = _PRELUDE + """
local user_id, new = ARGV[3], ARGV[4]
local ckey = P .. 'c:' .. user_id
local cur = redis.pcall('HGET', ckey, 'cutoff')
if type(cur) == 'table' then redis.call('DEL', ckey) cur = false end
if cur and tonumber(cur) and tonumber(cur) > tonumber(new) then new = cur end
local until_ = math.max(tonumber(new), NOW) + tonumber(ARGV[5])
local sids = redis.pcall('ZRANGE', P .. 'u:' .. user_id, 0, -1)
if not sids.err then
  for _, sid in ipairs(sids) do
    local e = redis.pcall('HGET', P .. 's:' .. sid, 'expires')
    if type(e) == 'string' and tonumber(e) and tonumber(e) > until_ then until_ = tonumber(e) end
  end
end
redis.call('HSET', ckey, 'cutoff', new)
redis.call('PEXPIRE', ckey, math.ceil((until_ - NOW) * 1000))
return 1
"""

# ARGV[3] = user_id. Returns {sid, {fields...}, ...} of active sessions, newest first; prunes dead members.
_LIST = _PRELUDE + """
local user_id = ARGV[3]
local ukey = P .. 'u:' .. user_id
local sids = redis.pcall('ZREVRANGE', ukey, 0, -1)
if sids.err then return {} end
local out = {}
for _, sid in ipairs(sids) do
  local state, f = load(sid)
  if state == 'active' and f[1] == user_id then
    table.insert(out, sid)
    table.insert(out, redis.call('HGETALL', P .. 's:' .. sid))
  elseif state ~= 'corrupt' then
    redis.call('ZREM', ukey, sid)
  end
end
return out
"""

# ARGV[3] = sid, ARGV[4] = presented jti, ARGV[5] = new jti
_ROTATE = _PRELUDE + """
local state, f = load(ARGV[3])
if state ~= 'active' then return 'inactive' end
local skey = P .. 's:' .. ARGV[3]
if f[6] == ARGV[4] then
  redis.call('HSET', skey, 'refresh_jti', ARGV[5], 'last_used', ARGV[2])
  return 'rotated'
end
redis.call('HSET', skey, 'revoked', '1')  -- RFC 9700 §4.14: reuse of an old refresh token ends the family
revoke_family(f[5])
return 'reused'
"""

# ARGV[3] = key, ARGV[4] = window (ms), ARGV[5] = absolute end of the window
_THROTTLE_HIT = """
local NOW = tonumber(ARGV[2])
local key = ARGV[1] .. 't:' .. ARGV[3]
local f = redis.pcall('HMGET', key, 'failures', 'expires')
local n = 1
if f.err then
  redis.call('DEL', key)
elseif tonumber(f[1]) and tonumber(f[2]) and tonumber(f[2]) > NOW then
  n = tonumber(f[1]) + 1
end
redis.call('HSET', key, 'failures', n, 'last_failure', ARGV[2], 'expires', ARGV[5])
redis.call('PEXPIRE', key, ARGV[4])
return n
"""


def _ms(seconds: float) -> int:
    """A TTL in milliseconds for Redis: at least 1 (0 or less would be an error or delete the key)."""
    return max(1, math.ceil(seconds * 1000))


def _session(sid: str, fields: Mapping[str, str]) -> Session:
    """A session from its hash; ValueError/KeyError when a field is missing or malformed."""
    revoked = fields["revoked"]
    if revoked not in ("0", "1"):
        raise ValueError(f"revoked field is {revoked!r}")
    return Session(sid=sid, user_id=fields["user_id"], created=float(fields["created"]),
                   last_used=float(fields["last_used"]), expires=float(fields["expires"]),
                   family=fields["family"], refresh_jti=fields["refresh_jti"],
                   user_agent=fields.get("user_agent", ""), ip=fields.get("ip", ""), revoked=revoked == "1")


def _pairs(flat: Sequence[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


class RedisStore(BaseStore):
    """The Redis backend. Many processes and hosts may share one server."""

    def __init__(self, url: str, *, clock: Clock, **options: Any) -> None:
        parts = urlsplit(url)
        database = parts.path.strip("/")
        if database and not database.isdigit():
            raise StoreConfigError(f"redis store URL {redact_url(url)!r}: the path must be a database number")
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        merged: dict[str, Any] = {**query, **options}
        purge_interval = parse_float_option("purge_interval",
                                            merged.pop("purge_interval", DEFAULT_PURGE_INTERVAL))
        super().__init__(url, clock=clock, purge_interval=purge_interval)
        prefix = merged.pop("prefix", DEFAULT_PREFIX)
        if not isinstance(prefix, str) or not prefix:
            raise StoreConfigError(f"redis store option prefix={prefix!r} must be a non-empty string")
        self._prefix = prefix
        self._connect_timeout = parse_float_option("connect_timeout",
                                                   merged.pop("connect_timeout", DEFAULT_CONNECT_TIMEOUT))
        self._command_timeout = parse_float_option("command_timeout",
                                                   merged.pop("command_timeout", DEFAULT_COMMAND_TIMEOUT))
        unknown = set(merged) - _PASSTHROUGH
        if unknown:
            raise StoreConfigError(f"unknown option(s) {', '.join(sorted(unknown))} for store {self.url!r}")
        # redis-py parses the TLS options itself when they are in the URL; ours are removed from it.
        rest = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                          if k in _PASSTHROUGH and k not in options])
        self._client_url = urlunsplit((parts.scheme, parts.netloc, parts.path, rest, ""))
        self._client_options = {k: v for k, v in options.items() if k in _PASSTHROUGH}
        self._client: aioredis.Redis | None = None
        self._scripts: dict[str, AsyncScript] = {}
        self._build_client()  # validate the URL and options now (StoreConfigError), connect later

    def _build_client(self) -> aioredis.Redis:
        try:
            return aioredis.Redis.from_url(
                self._client_url,
                decode_responses=True,
                encoding_errors="replace",  # a corrupt record must not crash the reply parser
                socket_connect_timeout=self._connect_timeout,
                socket_timeout=self._command_timeout,
                # connection errors only: a timed-out command may have run, so it is not sent twice
                retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
                **self._client_options,
            )
        except (ValueError, TypeError) as exc:
            raise StoreConfigError(f"redis store {self.url}: {exc}") from exc

    def _key(self, kind: str, name: str) -> str:
        return f"{self._prefix}{kind}:{name}"

    async def _run(self, awaitable: Awaitable[T]) -> T:
        """Await a redis call, turning its failures into StoreUnavailable (CancelledError passes through)."""
        try:
            return await awaitable
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"redis store {self.url}: {type(exc).__name__}: {exc}") from exc

    def _connected(self) -> aioredis.Redis:
        self._require_open()
        client = self._client
        if client is None:
            raise StoreUnavailable(f"redis store {self.url} is closed")
        return client

    async def _script(self, name: str, *args: str | int) -> Any:
        self._require_open()
        return await self._run(self._scripts[name](args=[self._prefix, repr(float(self._clock())), *args]))

    # lifecycle --------------------------------------------------------------------------------------

    def _needs_purging(self) -> bool:
        return False  # every key has a TTL

    async def _open(self) -> None:
        client = self._build_client()
        self._scripts = {name: client.register_script(source) for name, source in (
            ("check", _CHECK), ("create", _CREATE), ("get", _GET), ("touch", _TOUCH), ("revoke", _REVOKE),
            ("revoke_family", _REVOKE_FAMILY), ("revoke_all", _REVOKE_ALL), ("list", _LIST),
            ("rotate", _ROTATE), ("throttle_hit", _THROTTLE_HIT))}
        try:
            await self._run(client.ping())
        except BaseException:
            await client.aclose()
            raise
        self._client = client

    async def _close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def ping(self) -> None:
        await self._run(self._connected().ping())

    # sessions ---------------------------------------------------------------------------------------

    async def create_session(self, session: Session) -> None:
        ttl = _ms(session.expires - self._clock())
        await self._script("create", session.sid, session.user_id, repr(float(session.created)),
                           repr(float(session.last_used)), repr(float(session.expires)), session.family,
                           session.refresh_jti, session.user_agent, session.ip,
                           "1" if session.revoked else "0", ttl)

    async def get_session(self, sid: str) -> Session | None:
        reply = await self._script("get", sid)
        if not reply:
            return None
        if reply == ["corrupt"]:
            return corrupt_session(sid, "not a hash")
        try:
            session = _session(sid, _pairs(reply[0]))
            cutoff = None if reply[1] is None else float(reply[1])
        except (KeyError, ValueError) as exc:
            return corrupt_session(sid, exc)
        if self._clock() >= session.expires:
            return None
        if not session.revoked and not is_active(session, None, cutoff, self._clock()):
            return dataclasses.replace(session, revoked=True)  # cut off: reads as revoked
        return session

    async def check(self, sid: str, user_id: str) -> bool:
        client = self._connected()
        try:
            answer = await self._scripts["check"](
                keys=[self._prefix + "s:" + sid, self._prefix + "c:" + user_id],
                args=[user_id, repr(float(self._clock()))], client=client)
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"redis store {self.url}: {type(exc).__name__}: {exc}") from exc
        if answer == 1:
            return True
        if answer == -1:
            corrupt_session(sid, "malformed session or cut-off record")
        return False

    async def touch(self, sid: str, when: float) -> None:
        await self._script("touch", sid, repr(float(when)))

    async def revoke(self, sid: str) -> bool:
        return bool(await self._script("revoke", sid))

    async def revoke_family(self, family: str) -> int:
        return int(await self._script("revoke_family", family))

    async def revoke_all(self, user_id: str, cutoff: float) -> None:
        await self._script("revoke_all", user_id, repr(float(cutoff)), repr(CUTOFF_MIN_RETENTION))

    async def get_cutoff(self, user_id: str) -> float | None:
        client = self._connected()
        try:
            value = await self._run(client.hget(self._key("c", user_id), "cutoff"))
        except StoreUnavailable as exc:
            if "WRONGTYPE" not in str(exc):
                raise
            value = "corrupt"
        if value is None:
            return None
        try:
            return float(value)
        except ValueError:
            log.warning("unreadable cut-off record of user %r treated as +inf (every session dead)", user_id)
            return math.inf

    async def list_sessions(self, user_id: str) -> list[Session]:
        reply = await self._script("list", user_id)
        found = []
        for sid, flat in zip(reply[::2], reply[1::2], strict=True):
            try:
                found.append(_session(sid, _pairs(flat)))
            except (KeyError, ValueError) as exc:
                corrupt_session(sid, exc)
        return found

    async def rotate_refresh(self, sid: str, presented_jti: str, new_jti: str) -> Rotation:
        return Rotation(await self._script("rotate", sid, presented_jti, new_jti))

    # single-use tokens ------------------------------------------------------------------------------

    async def consume(self, jti: str, expires: float) -> bool:
        client = self._connected()
        left = expires - self._clock()
        if left <= 0:
            return False
        # SET NX is atomic on the server: exactly one caller creates the key.
        created = await self._run(client.set(self._key("j", jti), repr(float(expires)), nx=True,
                                             px=_ms(left)))
        return bool(created)

    # login throttling -------------------------------------------------------------------------------

    async def throttle_hit(self, key: str, window: float) -> ThrottleState:
        now = float(self._clock())
        failures = await self._script("throttle_hit", key, _ms(window), repr(now + window))
        return ThrottleState(int(failures), now)

    async def throttle_get(self, key: str) -> ThrottleState:
        client = self._connected()
        try:
            failures, last, expires = await self._run(
                client.hmget(self._key("t", key), ["failures", "last_failure", "expires"]))
            if failures is None or self._clock() >= float(expires):  # type: ignore[arg-type]
                return ThrottleState(0, 0.0)
            return ThrottleState(int(failures), float(last))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return ThrottleState(0, 0.0)

    async def throttle_clear(self, key: str) -> None:
        await self._run(self._connected().delete(self._key("t", key)))

    # upkeep -----------------------------------------------------------------------------------------

    async def purge(self) -> int:
        self._require_open()
        return 0  # Redis expires every key by its TTL
