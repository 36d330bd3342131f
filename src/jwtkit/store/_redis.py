"""``redis://`` and ``rediss://`` (TLS): the store for many nodes, on redis-py's asyncio client (hiredis
parser when installed).

Keys (``prefix`` defaults to ``jwtkit:``; every key but the epochs and the layout version carries a TTL, so
the keyspace follows live records and the accounts that ever used ``revoke_all``):

- ``{prefix}s:{sid}``: hash, one session (``revoked`` is ``"0"``/``"1"``), until the session expires;
- ``{prefix}u:{user_id}``: sorted set of the user's sids scored by ``created`` (listing), pruned of dead ones;
- ``{prefix}f:{family}``: set of the sids of one refresh family (reuse detection revokes all of them);
- ``{prefix}e:{user_id}``: the user's epoch (a decimal string), with **no** TTL: it must never
  vanish (see base.py). Use a ``maxmemory-policy`` that never evicts keys without a TTL (``noeviction`` or a
  ``volatile-*`` one), as an ``allkeys-*`` policy could drop an epoch;
- ``{prefix}schema``: the key layout version (``2``), no TTL;
- ``{prefix}keyring``: hash, the shared key ring (:class:`~jwtkit.store.KeyRingRecords`): ``version`` (a
  counter that only the compare-and-set script moves) and ``doc`` (the service's document, private keys
  sealed with AES-GCM before they get here), no TTL;
- ``{prefix}j:{jti}``: a consumed single-use token (``SET NX PX``), until the token expires;
- ``{prefix}t:{key}``: hash, a login-throttle counter, until its window ends.

Every time decision uses the injected clock: the scripts get ``now`` as an argument and compare it with the
absolute expiry stored in each record, so a fake clock works even though Redis expires keys by its own
clock. Read-modify-write steps are Lua scripts (atomic on the server) and :meth:`check` is one ``EVALSHA``
(the script reads the session hash and the user's epoch). The scripts build key names from the prefix, so
they need a single Redis node (not Redis Cluster).

Layout 2 (epochs) migrates data of layout 1 (per-user time cut-offs, ``{prefix}c:{user_id}`` hashes, and no
``{prefix}schema`` key) on the first open: one ``SCAN`` over ``{prefix}c:*`` (cursor-bounded batches), and
for each legacy key one atomic script that marks revoked every session the old rule made dead (``created``
before the cut-off; all of them when it was unreadable) and deletes the key; then ``{prefix}schema`` is set.
Session hashes without an ``epoch`` field (written by the old code) have epoch 0. Stop every process
running the old code before the first open by the new one.

Faults: connect and command timeouts are explicit, and a refused or broken connection raises
:class:`StoreUnavailable` at once (``Retry(NoBackoff(), 1)`` on connection errors only: the one retry replaces
a pooled connection that died with a restarted server; a *timeout* is never retried, since the command may
have run). When the server is back, the next command reconnects.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Collection, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from jwtkit.store._base import (
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
from jwtkit.store._common import BaseStore, corrupt_session, log, parse_float_option, redact_url
from jwtkit.store._policy import (
    as_read,
    epoch_unavailable,
    parse_epoch,
    require_valid_epoch,
    unreadable_epoch,
)

__all__ = ["DEFAULT_PREFIX", "RedisStore"]

T = TypeVar("T")

DEFAULT_PREFIX = "jwtkit:"
LAYOUT_VERSION = 2
# redis-py options a caller may pass through (TLS material for rediss://, pool size).
_PASSTHROUGH = frozenset({"ssl_certfile", "ssl_keyfile", "ssl_ca_certs", "ssl_ca_data", "ssl_cert_reqs",
                          "ssl_check_hostname", "ssl_password", "ssl_min_version", "ssl_ciphers",
                          "max_connections", "client_name", "username", "password"})

# The rules of store/_policy.py, mirrored for the server (the differential test in tests/store/test_policy.py
# holds the two together). epoch_of is _policy.parse_epoch; active is _policy.active; rotation_outcome is
# _policy.rotation_outcome. Lua numbers are doubles: exact for every epoch up to EPOCH_MAX = 2**53 - 1.
_RULES = """
local EPOCH_MAX = 9007199254740991
local function epoch_of(text)
  if type(text) ~= 'string' or #text > 16 or not string.match(text, '^%d+$') then return nil end
  local n = tonumber(text)
  if n > EPOCH_MAX then return nil end
  return n
end
-- the user's epoch from the reply of GET on its key: 0 when there is none, nil when unreadable
local function user_epoch(reply)
  if reply == false then return 0 end
  return epoch_of(reply)
end
-- an unreadable user epoch is passed as math.huge: no session is active then
local function active(revoked, expires, owner, session_epoch, user_id, current, now)
  return (not revoked) and now < expires and (user_id == nil or owner == user_id) and session_epoch >= current
end
local function rotation_outcome(is_active, current_jti, presented_jti, concurrent)
  if not is_active then return 'inactive' end
  if current_jti == presented_jti then return 'rotated' end
  for _, successor in ipairs(concurrent) do
    if current_jti == successor then return 'concurrent' end
  end
  return 'reused'
end
"""

# Shared by the scripts: ARGV[1] is the key prefix, ARGV[2] the caller's clock. load(sid) answers the state
# of a session (missing, corrupt, inactive, active), its fields {user_id, created, expires, revoked, family,
# refresh_jti, epoch}, and whether its user's epoch record is unreadable (then the session is inactive, but
# only until revoke_all repairs the record). A session hash without an ``epoch`` field (written by jwtkit
# before epochs) has epoch 0.
_PRELUDE = _RULES + """
local P = ARGV[1]
local NOW = tonumber(ARGV[2])
local function load(sid)
  local f = redis.pcall('HMGET', P .. 's:' .. sid, 'user_id', 'created', 'expires', 'revoked', 'family',
                        'refresh_jti', 'epoch')
  if f.err then return 'corrupt', nil, false end
  if not f[1] then return 'missing', nil, false end
  local created, expires = tonumber(f[2]), tonumber(f[3])
  local session_epoch = 0
  if f[7] then session_epoch = epoch_of(f[7]) end
  if not created or not expires or not f[5] or not f[6] or (f[4] ~= '0' and f[4] ~= '1')
      or not session_epoch then
    return 'corrupt', f, false
  end
  local current = user_epoch(redis.pcall('GET', P .. 'e:' .. f[1]))
  if active(f[4] == '1', expires, f[1], session_epoch, nil, current or math.huge, NOW) then
    return 'active', f, false
  end
  return 'inactive', f, current == nil
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

# The hot path, one round trip: KEYS = session, claimed user's epoch; ARGV = user_id, now.
# 1 = active, 0 = not, -1 = corrupt session record, -2 = unreadable epoch record (the caller logs both and
# answers False).
_CHECK = _RULES + """
local f = redis.pcall('HMGET', KEYS[1], 'user_id', 'revoked', 'expires', 'created', 'epoch')
if f.err then return -1 end
if not f[1] or f[1] ~= ARGV[1] then return 0 end
if f[2] ~= '0' then
  if f[2] == '1' then return 0 end
  return -1
end
local expires, created = tonumber(f[3]), tonumber(f[4])
local session_epoch = 0
if f[5] then session_epoch = epoch_of(f[5]) end
if not expires or not created or not session_epoch then return -1 end
local now = tonumber(ARGV[2])
if expires <= now then return 0 end
local current = user_epoch(redis.pcall('GET', KEYS[2]))
if not current then return -2 end
if active(false, expires, f[1], session_epoch, ARGV[1], current, now) then return 1 end
return 0
"""

# ARGV[3..]: sid, user_id, created, last_used, expires, family, refresh_jti, user_agent, ip, revoked, ttl_ms,
# epoch
_CREATE = _PRELUDE + """
local sid, user_id, family, ttl = ARGV[3], ARGV[4], ARGV[8], tonumber(ARGV[13])
local skey = P .. 's:' .. sid
redis.call('DEL', skey)
redis.call('HSET', skey, 'user_id', user_id, 'created', ARGV[5], 'last_used', ARGV[6], 'expires', ARGV[7],
           'family', family, 'refresh_jti', ARGV[9], 'user_agent', ARGV[10], 'ip', ARGV[11],
           'revoked', ARGV[12], 'epoch', ARGV[14])
redis.call('PEXPIRE', skey, ttl)
local ukey = P .. 'u:' .. user_id
redis.call('ZADD', ukey, ARGV[5], sid)
extend(ukey, ttl)
local fkey = P .. 'f:' .. family
redis.call('SADD', fkey, sid)
extend(fkey, ttl)
return 1
"""

# ARGV[3] = sid. Returns {fields...} flat, then the raw epoch of its user (false = none; 'corrupt').
_GET = """
local P = ARGV[1]
local h = redis.pcall('HGETALL', P .. 's:' .. ARGV[3])
if h.err then return {'corrupt'} end
if #h == 0 then return {} end
local user_id
for i = 1, #h, 2 do if h[i] == 'user_id' then user_id = h[i + 1] end end
local epoch = false
if user_id then
  epoch = redis.pcall('GET', P .. 'e:' .. user_id)
  if type(epoch) == 'table' then epoch = 'corrupt' end
end
return {h, epoch}
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

# ARGV[3] = user_id. The script is the atomic increment (not INCR, which refuses texts epoch_of accepts, such
# as leading zeros); SET leaves the key without a TTL (it never expires). An unreadable record is replaced by
# one more than the largest epoch of the user's stored sessions (every session that can be active is in the
# user's index: listing prunes only sessions that are gone or revoked for good).
_REVOKE_ALL = _PRELUDE + """
local user_id = ARGV[3]
local ekey = P .. 'e:' .. user_id
local current = user_epoch(redis.pcall('GET', ekey))
if current then
  redis.call('SET', ekey, string.format('%d', current + 1))
  return current + 1
end
local sids = redis.pcall('ZRANGE', P .. 'u:' .. user_id, 0, -1)
if sids.err then return redis.error_reply('ERR unreadable epoch record and session index of one user') end
local top = 0
for _, sid in ipairs(sids) do
  local f = redis.pcall('HMGET', P .. 's:' .. sid, 'user_id', 'epoch')
  if not f.err and f[1] == user_id then
    local n = 0
    if f[2] then n = epoch_of(f[2]) end
    if n and n > top then top = n end
  end
end
redis.call('SET', ekey, string.format('%d', top + 1))
return top + 1
"""

# ARGV[3] = user_id. Returns {status, sid, {fields...}, ...}: status 'ok' or 'unreadable-epoch', then the
# active sessions, newest first. Prunes the index of sessions that are gone, and of those dead for good
# (revoked, expired, or of an older epoch: those are marked revoked first, so that a repair of the epoch
# record cannot bring them back).
_LIST = _PRELUDE + """
local user_id = ARGV[3]
local ukey = P .. 'u:' .. user_id
local sids = redis.pcall('ZREVRANGE', ukey, 0, -1)
if sids.err then return {'ok'} end
local out = {'ok'}
for _, sid in ipairs(sids) do
  local state, f, unreadable = load(sid)
  if unreadable then out[1] = 'unreadable-epoch' end
  if state == 'active' and f[1] == user_id then
    table.insert(out, sid)
    table.insert(out, redis.call('HGETALL', P .. 's:' .. sid))
  elseif state == 'missing' or (state == 'inactive' and f[1] ~= user_id) then
    redis.call('ZREM', ukey, sid)
  elseif state == 'inactive' and not unreadable then
    if f[4] == '0' then redis.call('HSET', P .. 's:' .. sid, 'revoked', '1') end
    redis.call('ZREM', ukey, sid)
  end
end
return out
"""

# ARGV[3] = sid, ARGV[4] = presented jti, ARGV[5] = new jti, ARGV[6..] = the successors that mean CONCURRENT
_ROTATE = _PRELUDE + """
local state, f = load(ARGV[3])
local outcome = rotation_outcome(state == 'active', f and f[6], ARGV[4], {unpack(ARGV, 6)})
local skey = P .. 's:' .. ARGV[3]
if outcome == 'rotated' then
  redis.call('HSET', skey, 'refresh_jti', ARGV[5], 'last_used', ARGV[2])
elseif outcome == 'reused' then
  redis.call('HSET', skey, 'revoked', '1')  -- RFC 9700 §4.14: reuse of an old refresh token ends the family
  revoke_family(f[5])
end
return outcome
"""

# Migration from per-user time cut-offs (jwtkit before epochs), one legacy key at a time. ARGV[3] = user_id.
# Marks revoked each session of the user that the old rule made dead (created before the cut-off; every one
# when the cut-off is unreadable), then deletes the cut-off. Returns how many it marked.
_MIGRATE_CUTOFF = _PRELUDE + """
local user_id = ARGV[3]
local ckey = P .. 'c:' .. user_id
local kind = redis.call('TYPE', ckey)['ok']
if kind == 'none' then return 0 end
local cut = math.huge  -- as the old scripts read it: a key of another type, or not a number, killed all
if kind == 'hash' then
  local raw = redis.call('HGET', ckey, 'cutoff')
  if raw == false then cut = nil elseif tonumber(raw) then cut = tonumber(raw) end
end
local marked = 0
local sids = redis.pcall('ZRANGE', P .. 'u:' .. user_id, 0, -1)
if cut and not sids.err then
  for _, sid in ipairs(sids) do
    local skey = P .. 's:' .. sid
    local f = redis.pcall('HMGET', skey, 'user_id', 'created', 'revoked')
    if not f.err and f[1] == user_id and f[3] == '0' then
      local created = tonumber(f[2])
      if cut == math.huge or (created and created < cut) then
        redis.call('HSET', skey, 'revoked', '1')
        marked = marked + 1
      end
    end
  end
end
redis.call('DEL', ckey)
return marked
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

# The key ring's compare-and-set: ARGV[3] = the version the writer read, ARGV[4] = the new document.
_RING_SWAP = """
local key = ARGV[1] .. 'keyring'
local current = redis.call('HGET', key, 'version')
local version = 0
if current then version = tonumber(current) end
if version ~= tonumber(ARGV[3]) then return 0 end
redis.call('HSET', key, 'version', version + 1, 'doc', ARGV[4])
return 1
"""


def _ms(seconds: float) -> int:
    """A TTL in milliseconds for Redis: at least 1 (0 or less would be an error or delete the key)."""
    return max(1, math.ceil(seconds * 1000))


def _session(sid: str, fields: Mapping[str, str]) -> Session:
    """A session from its hash; ValueError/KeyError when a field is missing or malformed. No ``epoch`` field
    (a session written before epochs) is epoch 0."""
    revoked = fields["revoked"]
    if revoked not in ("0", "1"):
        raise ValueError(f"revoked field is {revoked!r}")
    epoch = parse_epoch(fields.get("epoch", "0"))
    if epoch is None:
        raise ValueError("epoch field is not a decimal integer")
    return Session(sid=sid, user_id=fields["user_id"], created=float(fields["created"]),
                   last_used=float(fields["last_used"]), expires=float(fields["expires"]),
                   family=fields["family"], refresh_jti=fields["refresh_jti"],
                   user_agent=fields.get("user_agent", ""), ip=fields.get("ip", ""), revoked=revoked == "1",
                   epoch=epoch)


def _glob_escape(text: str) -> str:
    """``text`` matched literally by a Redis glob (SCAN MATCH)."""
    return "".join("\\" + c if c in "*?[]\\^-" else c for c in text)


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
            ("rotate", _ROTATE), ("throttle_hit", _THROTTLE_HIT), ("migrate_cutoff", _MIGRATE_CUTOFF),
            ("ring_swap", _RING_SWAP))}
        try:
            await self._run(client.ping())
            await self._migrate(client)
        except BaseException:
            await client.aclose()
            raise
        self._client = client

    async def _migrate(self, client: aioredis.Redis) -> None:
        """Layout 1 -> 2 (see the module docstring); one GET when already done."""
        schema_key = self._prefix + "schema"
        version = await self._run(client.get(schema_key))
        if version == str(LAYOUT_VERSION):
            return
        if version is not None:
            raise StoreConfigError(f"redis store {self.url} has layout version {version!r} under prefix "
                                   f"{self._prefix!r}; this jwtkit knows {LAYOUT_VERSION}: upgrade jwtkit")
        legacy = self._prefix + "c:"
        migrated = marked = 0
        async for key in client.scan_iter(match=_glob_escape(legacy) + "*", count=1000):
            marked += int(await self._run(self._scripts["migrate_cutoff"](
                args=[self._prefix, repr(float(self._clock())), key[len(legacy):]], client=client)))
            migrated += 1
        await self._run(client.set(schema_key, str(LAYOUT_VERSION)))
        if migrated:
            log.info("redis store %s: migrated %d per-user cut-offs to epochs (%d cut-off sessions marked "
                     "revoked)", self.url, migrated, marked)

    async def _close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def ping(self) -> None:
        await self._run(self._connected().ping())

    # sessions ---------------------------------------------------------------------------------------

    async def create_session(self, session: Session) -> None:
        require_valid_epoch(session)
        ttl = _ms(session.expires - self._clock())
        await self._script("create", session.sid, session.user_id, repr(float(session.created)),
                           repr(float(session.last_used)), repr(float(session.expires)), session.family,
                           session.refresh_jti, session.user_agent, session.ip,
                           "1" if session.revoked else "0", ttl, str(session.epoch))

    async def get_session(self, sid: str) -> Session | None:
        reply = await self._script("get", sid)
        if not reply:
            return None
        if reply == ["corrupt"]:
            return corrupt_session(sid, "not a hash")
        try:
            session = _session(sid, _pairs(reply[0]))
        except (KeyError, ValueError) as exc:
            return corrupt_session(sid, exc)
        epoch = self._user_epoch(session.user_id, reply[1] if len(reply) > 1 else None)
        return as_read(session, epoch, self._clock())

    @staticmethod
    def _user_epoch(user_id: str, raw: str | bytes | None) -> float:
        """A user's epoch from the raw value of its key: 0 when none; UNREADABLE_EPOCH (logged)."""
        if raw is None:
            return 0
        epoch = parse_epoch(raw)
        return unreadable_epoch(user_id, "not a decimal integer") if epoch is None else epoch

    async def check(self, sid: str, user_id: str) -> bool:
        client = self._connected()
        try:
            answer = await self._scripts["check"](
                keys=[self._prefix + "s:" + sid, self._prefix + "e:" + user_id],
                args=[user_id, repr(float(self._clock()))], client=client)
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"redis store {self.url}: {type(exc).__name__}: {exc}") from exc
        if answer == 1:
            return True
        if answer == -1:
            corrupt_session(sid, "malformed session record")
        elif answer == -2:
            unreadable_epoch(user_id, "not a decimal integer")
        return False

    async def touch(self, sid: str, when: float) -> None:
        await self._script("touch", sid, repr(float(when)))

    async def revoke(self, sid: str) -> bool:
        return bool(await self._script("revoke", sid))

    async def revoke_family(self, family: str) -> int:
        return int(await self._script("revoke_family", family))

    async def get_epoch(self, user_id: str) -> int:
        client = self._connected()
        try:
            raw = await self._run(client.get(self._key("e", user_id)))
        except StoreUnavailable as exc:
            if "WRONGTYPE" not in str(exc):
                raise
            raw = "corrupt"
        epoch = self._user_epoch(user_id, raw)
        if not isinstance(epoch, int):
            raise epoch_unavailable(user_id)
        return epoch

    async def revoke_all(self, user_id: str) -> int:
        return int(await self._script("revoke_all", user_id))

    async def list_sessions(self, user_id: str) -> list[Session]:
        reply = await self._script("list", user_id)
        if reply[0] != "ok":
            unreadable_epoch(user_id, "not a decimal integer")
        found = []
        for sid, flat in zip(reply[1::2], reply[2::2], strict=True):
            try:
                found.append(_session(sid, _pairs(flat)))
            except (KeyError, ValueError) as exc:
                corrupt_session(sid, exc)
        return found

    async def rotate_refresh(self, sid: str, presented_jti: str, new_jti: str, *,
                             concurrent: Collection[str] = ()) -> Rotation:
        return Rotation(await self._script("rotate", sid, presented_jti, new_jti, *concurrent))

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

    # the shared key ring (KeyRingRecords) ----------------------------------------------------------

    def _ring_version(self, raw: object) -> int:
        if raw is None:
            return 0
        try:
            version = int(str(raw), 10)
        except ValueError:
            version = -1
        if version < 1:
            raise StoreUnavailable(f"redis store {self.url}: the key ring's version is unreadable")
        return version

    async def ring_version(self) -> int:
        raw = await self._run(self._connected().hget(self._prefix + "keyring", "version"))
        return self._ring_version(raw)

    async def ring_read(self) -> tuple[int, str] | None:
        version, document = await self._run(
            self._connected().hmget(self._prefix + "keyring", ["version", "doc"]))
        if version is None:
            return None
        if document is None:
            raise StoreUnavailable(f"redis store {self.url}: the key ring has a version but no document")
        return self._ring_version(version), str(document)

    async def ring_swap(self, expected: int, document: str) -> bool:
        return bool(await self._script("ring_swap", int(expected), document))

    # upkeep -----------------------------------------------------------------------------------------

    async def purge(self) -> int:
        self._require_open()
        return 0  # Redis expires every key by its TTL
