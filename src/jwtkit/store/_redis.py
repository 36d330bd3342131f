"""``redis://``, ``rediss://`` (TLS), ``redis+cluster://`` and ``rediss+cluster://``: the store for many
nodes, on redis-py's asyncio clients (hiredis parser when installed), with a revocation feed on Redis
Streams.

Key layout 3 (``prefix`` defaults to ``jwtkit:`` and may not contain ``{`` or ``}``). Every record of one
user lives under one *shard tag*, ``{n}`` with ``n = crc32(user_id) % shards`` (``shards``: 16 unless the
store was created with another count), so that each script touches keys of one Redis Cluster slot:

- ``{prefix}{n}:s:{sid}``: hash, one session (``revoked`` is ``"0"``/``"1"``), until the session expires;
- ``{prefix}{n}:u:{user_id}``: sorted set of the user's sids scored by ``created`` (listing, and the per-user
  session cap of ``create_session``), pruned of dead ones by listing and by each creation at the cap;
- ``{prefix}{n}:f:{family}``: set of the sids of one refresh family in that shard (reuse detection revokes
  all of them);
- ``{prefix}{n}:e:{user_id}``: the user's epoch (a decimal string), with **no** TTL: it must never vanish
  (see base.py). Use a ``maxmemory-policy`` that never evicts keys without a TTL (``noeviction`` or a
  ``volatile-*`` one), as an ``allkeys-*`` policy could drop an epoch;
- ``{prefix}{n}:revocations``: the shard's revocation stream (:class:`~jwtkit.store.RevocationFeed`):
  one entry (``kind``, ``subject``, ``at``) per revocation, written by the script that revokes, trimmed by
  age (``MINID ~`` on the server's clock) on every append; created empty at open (so that a stream lost with
  its server is told from one never written); no TTL;
- ``{prefix}p:{sid}``: the sid's shard (a pointer, for the calls that get only a sid), as long as the session;
- ``{prefix}q:{family}``: set of the shards that hold sessions of the family, as long as its longest session;
- ``{prefix}schema`` (``3``), ``{prefix}shards`` (the shard count) and ``{prefix}generation`` (random, made
  when missing: an emptied server shows a new one to feed readers), no TTL;
- ``{prefix}keyring``: hash, the shared key ring (:class:`~jwtkit.store.KeyRingRecords`): ``version`` (a
  counter that only the compare-and-set script moves) and ``doc`` (the service's document, private keys
  sealed with AES-GCM before they get here), no TTL;
- ``{prefix}j:{jti}``: a consumed single-use token (``SET NX PX``), until the token expires;
- ``{prefix}t:{key}``: hash, a login-throttle counter, until its window ends.

Every time decision uses the injected clock: the scripts get ``now`` as an argument and compare it with the
absolute expiry stored in each record, so a fake clock works even though Redis expires keys by its own
clock. Read-modify-write steps are Lua scripts (atomic on the server); each declares one key of its slot
(``KEYS[1]``) and builds the other keys of that shard from the same tag. :meth:`check` is one ``EVALSHA``
(the shard comes from the user id it is given). Calls that get only a sid or a family find the shard
through its pointer (the sid's is cached in process: it never changes); when a pointer is missing (evicted
by a ``volatile-*`` policy), they look for the record in every shard, so a revocation is never lost.

The feed (:meth:`RedisStore.feed_read`) reads on connections of its own: on one server, one pipeline (the
generation, one script reading every stream with its ``XINFO STREAM`` state, ``XREAD BLOCK`` over all
streams); on a cluster, whose ``XREAD`` refuses keys of several slots, one ``XREAD BLOCK`` per stream, all
at once, kept across waits (:class:`_ClusterWaiter`). docs/stores.md#redis has the details and measurements.

Migrations on the first open (stop every process running older code first): layout 1 (per-user time
cut-offs, ``{prefix}c:{user_id}``, no ``{prefix}schema``) to 2 as before (one ``SCAN``; per legacy key one
script marks revoked what the old rule made dead and deletes the key), then layout 2 (``{prefix}s:{sid}``,
``u:``, ``f:``, ``e:`` without shard tags, schema ``2``) to 3: the epochs first (renamed, never lowered: a
key already in the new place keeps the larger value, or the unreadable one), then the indexes, then the
sessions (renamed, so each keeps its remaining TTL, and given their pointers), then the families (split by
their members' shards); then ``{prefix}schema`` = ``3``. Each step is one script per key, so a crash or
two nodes migrating at once lose nothing, and the next open goes on. Sessions that migrate inactive
(revoked, or of an older epoch) and users whose epoch is unreadable are put in the feed, so that a mirror
never accepts their tokens. A Redis Cluster never held layout 2 (its scripts were single-node): it starts at
layout 3.

Faults: connect and command timeouts are explicit, and a refused or broken connection raises
:class:`StoreUnavailable` at once (one retry on connection errors only: it replaces a pooled connection that
died with a restarted server; a *timeout* is never retried, since the command may have run). When the server
is back, the next command reconnects. On a cluster, a call on the slots of a dead primary raises
:class:`StoreUnavailable`; the other slots go on working.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import zlib
from collections.abc import Awaitable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import AbstractConnection, parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import (
    ClusterDownError,
    NoScriptError,
    RedisClusterException,
    RedisError,
    ResponseError,
    SlotNotCoveredError,
)
from redis.exceptions import ConnectionError as RedisConnectionError

from jwtkit.store._base import (
    DEFAULT_COMMAND_TIMEOUT,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_FEED_RETENTION,
    DEFAULT_PURGE_INTERVAL,
    Clock,
    FeedCursor,
    FeedLost,
    Revocation,
    RevocationKind,
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
    require_valid_max_sessions,
    unreadable_epoch,
)

__all__ = ["DEFAULT_PREFIX", "DEFAULT_SHARDS", "RedisStore"]

T = TypeVar("T")

DEFAULT_PREFIX = "jwtkit:"
DEFAULT_SHARDS = 16
MAX_SHARDS = 1024
LAYOUT_VERSION = 3
SCHEMES = ("redis", "rediss", "redis+cluster", "rediss+cluster")
# how many sids' shards a store remembers (a sid's shard never changes)
_SHARD_CACHE_SIZE = 65_536
# stream entries read per shard per call
_FEED_BATCH = 1000
# how long (s) a cluster's blocked stream reads last, across the feed's waits
_CLUSTER_BLOCK = 5.0
# redis-py options a caller may pass through (TLS material for rediss://, pool size).
_PASSTHROUGH = frozenset({"ssl_certfile", "ssl_keyfile", "ssl_ca_certs", "ssl_ca_data", "ssl_cert_reqs",
                          "ssl_check_hostname", "ssl_password", "ssl_min_version", "ssl_ciphers",
                          "max_connections", "client_name", "username", "password"})
_ERRORS = (RedisError, RedisClusterException, OSError)

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

# Shared by the shard scripts: KEYS[1] is the shard's revocation stream (it names the slot), ARGV[1] the
# shard's key base ('{prefix}{n}:'), ARGV[2] the caller's clock, ARGV[3] the feed's retention (ms); the
# script's own arguments start at ARGV[4]. load(sid) answers the state of a session (missing, corrupt,
# inactive, active), its fields {user_id, created, expires, revoked, family, refresh_jti, epoch}, and whether
# its user's epoch record is unreadable (then the session is inactive, but only until revoke_all repairs the
# record). A session hash without an ``epoch`` field (written by jwtkit before epochs) has epoch 0.
# publish() appends one entry to the feed, in the same script as the change it records, before it: an
# acknowledged revocation is always in the feed, and a failed append changes nothing.
_PRELUDE = _RULES + """
local S = ARGV[1]
local NOW = tonumber(ARGV[2])
local function load(sid)
  local f = redis.pcall('HMGET', S .. 's:' .. sid, 'user_id', 'created', 'expires', 'revoked', 'family',
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
  local current = user_epoch(redis.pcall('GET', S .. 'e:' .. f[1]))
  if active(f[4] == '1', expires, f[1], session_epoch, nil, current or math.huge, NOW) then
    return 'active', f, false
  end
  return 'inactive', f, current == nil
end
local function extend(key, ttl)
  local left = redis.call('PTTL', key)
  if left < ttl then redis.call('PEXPIRE', key, ttl) end
end
local function publish(kind, subject)
  local t = redis.call('TIME')
  local oldest = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[3])
  if oldest < 0 then oldest = 0 end
  redis.call('XADD', KEYS[1], 'MINID', '~', string.format('%d', oldest), '*',
             'kind', kind, 'subject', subject, 'at', ARGV[2])
end
local function mark_revoked(sid)
  publish('session', sid)
  redis.call('HSET', S .. 's:' .. sid, 'revoked', '1')
end
-- One sid of the user's index ukey: true when it is this user's active session. Otherwise it leaves the
-- index when it is gone, another user's, or dead for good (marked revoked first if it was not); one whose
-- user's epoch is unreadable stays until that record can be read. Second result: the epoch was unreadable.
local function live_or_pruned(ukey, user_id, sid)
  local state, f, unreadable = load(sid)
  if state == 'active' and f[1] == user_id then return true, unreadable end
  if state == 'missing' or (state == 'inactive' and f[1] ~= user_id) then
    redis.call('ZREM', ukey, sid)
  elseif state == 'inactive' and not unreadable then
    if f[4] == '0' then redis.call('HSET', S .. 's:' .. sid, 'revoked', '1') end
    redis.call('ZREM', ukey, sid)
  end
  return false, unreadable
end
local function revoke_family(family)
  local fkey = S .. 'f:' .. family
  local members = redis.pcall('SMEMBERS', fkey)
  if members.err then return 0 end
  local n = 0
  for _, sid in ipairs(members) do
    local state, f = load(sid)
    if (state == 'active' or state == 'inactive') and f[4] == '0' then
      mark_revoked(sid)
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

# ARGV[4..]: sid, user_id, created, last_used, expires, family, refresh_jti, user_agent, ip, revoked, ttl_ms,
# epoch, max_sessions ('' for no cap). A session that is dead at birth (created revoked, or carrying an epoch
# its user has left: a login that read the epoch before a concurrent revoke_all) is published as revoked too,
# so no mirror accepts the token its login hands out. Returns the evicted sids, oldest first.
#
# The cap is _policy.evicted: once the user's index holds more sids than the cap (so only at the cap: below
# it, the new session and every other one fit), every sid in it is read, oldest created first (the index's
# order: by score, then by sid), the ones that are gone or dead for good pruned (live_or_pruned, as in
# _LIST), and the oldest active others revoked as _REVOKE revokes (mark_revoked: a feed entry each) and
# removed from the index, until cap - 1 are left beside the new session (cap when it is dead at birth). One
# script: atomic with the creation, so logins racing on several nodes never leave more than the cap alive,
# and the index stays bounded by the cap plus the revocations since the user's last login or listing.
_CREATE = _PRELUDE + """
local sid, user_id, family, ttl = ARGV[4], ARGV[5], ARGV[9], tonumber(ARGV[14])
local skey = S .. 's:' .. sid
redis.call('DEL', skey)
redis.call('HSET', skey, 'user_id', user_id, 'created', ARGV[6], 'last_used', ARGV[7], 'expires', ARGV[8],
           'family', family, 'refresh_jti', ARGV[10], 'user_agent', ARGV[11], 'ip', ARGV[12],
           'revoked', ARGV[13], 'epoch', ARGV[15])
redis.call('PEXPIRE', skey, ttl)
local ukey = S .. 'u:' .. user_id
redis.call('ZADD', ukey, ARGV[6], sid)
extend(ukey, ttl)
local fkey = S .. 'f:' .. family
redis.call('SADD', fkey, sid)
extend(fkey, ttl)
local new_is_active = load(sid) == 'active'
if not new_is_active and NOW < tonumber(ARGV[8]) then publish('session', sid) end
local cap = tonumber(ARGV[16])
local evicted = {}
if not cap or redis.call('ZCARD', ukey) <= cap then return evicted end
local keep = cap
if new_is_active then keep = cap - 1 end
local live = {}
for _, other in ipairs(redis.call('ZRANGE', ukey, 0, -1)) do
  if other ~= sid and live_or_pruned(ukey, user_id, other) then table.insert(live, other) end
end
for i = 1, #live - keep do
  mark_revoked(live[i])
  redis.call('ZREM', ukey, live[i])
  table.insert(evicted, live[i])
end
return evicted
"""

# ARGV[4] = sid. Returns {fields...} flat, then the raw epoch of its user (false = none; 'corrupt').
_GET = """
local S = ARGV[1]
local h = redis.pcall('HGETALL', S .. 's:' .. ARGV[4])
if h.err then return {'corrupt'} end
if #h == 0 then return {} end
local user_id
for i = 1, #h, 2 do if h[i] == 'user_id' then user_id = h[i + 1] end end
local epoch = false
if user_id then
  epoch = redis.pcall('GET', S .. 'e:' .. user_id)
  if type(epoch) == 'table' then epoch = 'corrupt' end
end
return {h, epoch}
"""

# ARGV[4] = sid, ARGV[5] = when
_TOUCH = """
local key = ARGV[1] .. 's:' .. ARGV[4]
local f = redis.pcall('HMGET', key, 'revoked', 'last_used')
if f.err or f[1] ~= '0' then return 0 end
local last = tonumber(f[2])
if last and last >= tonumber(ARGV[5]) then return 0 end
redis.call('HSET', key, 'last_used', ARGV[5])
return 1
"""

# ARGV[4] = sid. 1 if it was active. Published only when the session goes from not revoked to revoked.
_REVOKE = _PRELUDE + """
local state, f = load(ARGV[4])
if (state == 'active' or state == 'inactive') and f[4] == '0' then mark_revoked(ARGV[4]) end
if state == 'active' then return 1 end
return 0
"""

# ARGV[4] = family
_REVOKE_FAMILY = _PRELUDE + "return revoke_family(ARGV[4])"

# ARGV[4] = user_id. The script is the atomic increment (not INCR, which refuses texts epoch_of accepts, such
# as leading zeros); SET leaves the key without a TTL (it never expires). An unreadable record is replaced by
# one more than the largest epoch of the user's stored sessions (every session that can be active is in the
# user's index: listing prunes only sessions that are gone or revoked for good). One ``user`` entry in the
# feed either way.
_REVOKE_ALL = _PRELUDE + """
local user_id = ARGV[4]
local ekey = S .. 'e:' .. user_id
local current = user_epoch(redis.pcall('GET', ekey))
if current then
  publish('user', user_id)
  redis.call('SET', ekey, string.format('%d', current + 1))
  return current + 1
end
local sids = redis.pcall('ZRANGE', S .. 'u:' .. user_id, 0, -1)
if sids.err then return redis.error_reply('ERR unreadable epoch record and session index of one user') end
local top = 0
for _, sid in ipairs(sids) do
  local f = redis.pcall('HMGET', S .. 's:' .. sid, 'user_id', 'epoch')
  if not f.err and f[1] == user_id then
    local n = 0
    if f[2] then n = epoch_of(f[2]) end
    if n and n > top then top = n end
  end
end
publish('user', user_id)
redis.call('SET', ekey, string.format('%d', top + 1))
return top + 1
"""

# ARGV[4] = user_id. Returns {status, sid, {fields...}, ...}: status 'ok' or 'unreadable-epoch', then the
# active sessions, newest first. Prunes the index of sessions that are gone, and of those dead for good
# (revoked, expired, or of an older epoch: those are marked revoked first, so that a repair of the epoch
# record cannot bring them back; no feed entry, since revoke_all published their user's).
_LIST = _PRELUDE + """
local user_id = ARGV[4]
local ukey = S .. 'u:' .. user_id
local sids = redis.pcall('ZREVRANGE', ukey, 0, -1)
if sids.err then return {'ok'} end
local out = {'ok'}
for _, sid in ipairs(sids) do
  local live, unreadable = live_or_pruned(ukey, user_id, sid)
  if unreadable then out[1] = 'unreadable-epoch' end
  if live then
    table.insert(out, sid)
    table.insert(out, redis.call('HGETALL', S .. 's:' .. sid))
  end
end
return out
"""

# ARGV[4] = sid, ARGV[5] = presented jti, ARGV[6] = new jti, ARGV[7..] = the successors that mean CONCURRENT.
# Returns {outcome}, and for 'reused' {outcome, family} (the caller revokes the family in other shards too).
_ROTATE = _PRELUDE + """
local state, f = load(ARGV[4])
local outcome = rotation_outcome(state == 'active', f and f[6], ARGV[5], {unpack(ARGV, 7)})
if outcome == 'rotated' then
  redis.call('HSET', S .. 's:' .. ARGV[4], 'refresh_jti', ARGV[6], 'last_used', ARGV[2])
elseif outcome == 'reused' then
  mark_revoked(ARGV[4])  -- RFC 9700 §4.14: reuse of an old refresh token ends the family
  revoke_family(f[5])
  return {outcome, f[5]}
end
return {outcome}
"""

# The feed's read, atomic so that what it reports about each stream describes the entries it returns: KEYS =
# shards' streams (all of them on a single node, one per call on a cluster), ARGV[i] = the id after which to
# read KEYS[i], the last ARGV = how many entries per stream. For each stream: {} when there is none, else
# {last-generated-id, max-deleted-entry-id, entries-added, length, entries} (XINFO STREAM of Redis 7).
_FEED_READ = """
local count = ARGV[#KEYS + 1]
local out = {}
for i, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 0 then
    out[i] = {}
  else
    local info = redis.call('XINFO', 'STREAM', key)
    local found = {}
    for j = 1, #info, 2 do found[info[j]] = info[j + 1] end
    if not found['entries-added'] then return redis.error_reply('ERR the revocation feed needs Redis 7') end
    out[i] = {found['last-generated-id'], found['max-deleted-entry-id'], found['entries-added'],
              found['length'], redis.call('XRANGE', key, '(' .. ARGV[i], '+', 'COUNT', count)}
  end
end
return out
"""

# Every stream exists from the first open on, empty (its last id and entries-added set), so that a reader can
# tell a stream lost with its server (a Redis Cluster primary that restarted empty) from one never written:
# KEYS = streams that may not exist yet.
_FEED_INIT = """
for _, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 0 then redis.call('XADD', key, 'MAXLEN', '0', '*', 'kind', 'init') end
end
return 1
"""

# KEYS[1] = the throttle key, ARGV[1] = now, ARGV[2] = window (ms), ARGV[3] = absolute end of the window
_THROTTLE_HIT = """
local NOW = tonumber(ARGV[1])
local key = KEYS[1]
local f = redis.pcall('HMGET', key, 'failures', 'expires')
local n = 1
if f.err then
  redis.call('DEL', key)
elseif tonumber(f[1]) and tonumber(f[2]) and tonumber(f[2]) > NOW then
  n = tonumber(f[1]) + 1
end
redis.call('HSET', key, 'failures', n, 'last_failure', ARGV[1], 'expires', ARGV[3])
redis.call('PEXPIRE', key, ARGV[2])
return n
"""

# The key ring's compare-and-set: KEYS[1] = the ring, ARGV[1] = the version the writer read, ARGV[2] = the new
# document.
_RING_SWAP = """
local current = redis.call('HGET', KEYS[1], 'version')
local version = 0
if current then version = tonumber(current) end
if version ~= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'version', version + 1, 'doc', ARGV[2])
return 1
"""

# Migrations (single node only: they move keys between slots) ---------------------------------------------

# Layout 1 -> 2, one legacy key at a time: ARGV[1] = prefix, ARGV[2] = user_id. Marks revoked each session of
# the user that the old rule made dead (created before the cut-off; every one when the cut-off is
# unreadable), then deletes the cut-off. Returns how many it marked.
_MIGRATE_CUTOFF = """
local P, user_id = ARGV[1], ARGV[2]
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

# Layout 2 -> 3, the shard scripts' arguments, then ARGV[4] = the old key, ARGV[5] = the user id. An epoch is
# never lowered: when the new key exists already (a migration that stopped half-way cannot leave both, but
# two nodes migrating at once might race), the larger value stays, or the unreadable one (fail closed:
# revoke_all repairs it above every stored session). An unreadable epoch is published (its sessions are
# inactive, which no mirror can know).
_MIGRATE_EPOCH = _PRELUDE + """
local old, new = ARGV[4], S .. 'e:' .. ARGV[5]
if redis.call('EXISTS', old) == 0 then return 0 end
if redis.call('EXISTS', new) == 0 then
  redis.call('RENAME', old, new)
else
  local a, b = user_epoch(redis.pcall('GET', old)), user_epoch(redis.pcall('GET', new))
  if not a or (b and a > b) then
    redis.call('RENAME', old, new)
  else
    redis.call('DEL', old)
  end
end
if not user_epoch(redis.pcall('GET', new)) then publish('user', ARGV[5]) end
return 1
"""

# ARGV[4] = the old index (a sorted set), ARGV[5] = the user id: renamed, or merged into the new one.
_MIGRATE_INDEX = _PRELUDE + """
local old, new = ARGV[4], S .. 'u:' .. ARGV[5]
if redis.call('EXISTS', old) == 0 then return 0 end
if redis.call('EXISTS', new) == 0 then
  redis.call('RENAME', old, new)
  return 1
end
local ttl = math.max(redis.call('PTTL', old), redis.call('PTTL', new))
redis.call('ZUNIONSTORE', new, 2, new, old, 'AGGREGATE', 'MAX')
if ttl > 0 then redis.call('PEXPIRE', new, ttl) end
redis.call('DEL', old)
return 1
"""

# ARGV[4] = the old session key, ARGV[5] = sid, ARGV[6] = its user id (as read before), ARGV[7] = the sid's
# pointer key, ARGV[8] = the shard. RENAME keeps the remaining TTL; the pointer gets the same. A session
# that is not active after the move (and not expired) is published: its tokens may still be out there.
_MIGRATE_SESSION = _PRELUDE + """
local old, sid = ARGV[4], ARGV[5]
if redis.call('EXISTS', old) == 0 then return 0 end
if redis.pcall('HGET', old, 'user_id') ~= ARGV[6] then return -1 end
local skey = S .. 's:' .. sid
redis.call('RENAME', old, skey)
local ttl = redis.call('PTTL', skey)
if ttl > 0 then
  redis.call('SET', ARGV[7], ARGV[8], 'PX', ttl)
else
  redis.call('SET', ARGV[7], ARGV[8])
end
local state, f = load(sid)
if state ~= 'active' and state ~= 'missing' then
  local expires = f and tonumber(f[3])
  if not expires or NOW < expires then publish('session', sid) end
end
return 1
"""

# KEYS[1] = the old family set, ARGV[1] = prefix, ARGV[2] = the family. Each member goes to the family set of
# its own shard (its pointer, written by _MIGRATE_SESSION), with the old set's TTL; gone members are dropped.
_MIGRATE_FAMILY = """
local P, family = ARGV[1], ARGV[2]
local members = redis.pcall('SMEMBERS', KEYS[1])
if members.err then redis.call('DEL', KEYS[1]); return 0 end
local ttl = redis.call('PTTL', KEYS[1])
local qkey = P .. 'q:' .. family
for _, sid in ipairs(members) do
  local n = redis.call('GET', P .. 'p:' .. sid)
  if n then
    local fkey = P .. '{' .. n .. '}:f:' .. family
    redis.call('SADD', fkey, sid)
    redis.call('SADD', qkey, n)
    if ttl > 0 and redis.call('PTTL', fkey) < ttl then redis.call('PEXPIRE', fkey, ttl) end
  end
end
if ttl > 0 and redis.call('EXISTS', qkey) == 1 and redis.call('PTTL', qkey) < ttl then
  redis.call('PEXPIRE', qkey, ttl)
end
redis.call('DEL', KEYS[1])
return 1
"""

_SCRIPTS = {
    "check": _CHECK, "create": _CREATE, "get": _GET, "touch": _TOUCH, "revoke": _REVOKE,
    "revoke_family": _REVOKE_FAMILY, "revoke_all": _REVOKE_ALL, "list": _LIST, "rotate": _ROTATE,
    "feed_read": _FEED_READ, "feed_init": _FEED_INIT, "throttle_hit": _THROTTLE_HIT,
    "ring_swap": _RING_SWAP, "migrate_cutoff": _MIGRATE_CUTOFF, "migrate_epoch": _MIGRATE_EPOCH,
    "migrate_index": _MIGRATE_INDEX, "migrate_session": _MIGRATE_SESSION, "migrate_family": _MIGRATE_FAMILY,
}


def _ms(seconds: float) -> int:
    """A TTL in milliseconds for Redis: at least 1 (0 or less would be an error or delete the key)."""
    return max(1, math.ceil(seconds * 1000))


def shard_of(user_id: str, shards: int) -> int:
    """The shard of a user's records: stable across processes and versions (CRC-32 of the UTF-8 id)."""
    return zlib.crc32(user_id.encode("utf-8", "surrogatepass")) % shards


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


# stream ids and the cursor ------------------------------------------------------------------------------

StreamId = tuple[int, int]
_ORIGIN: StreamId = (0, 0)


def _stream_id(text: object) -> StreamId:
    """``"<ms>-<seq>"`` as a pair that orders like the server does; ValueError when it is not one."""
    if not isinstance(text, str):
        raise ValueError(f"not a stream id: {text!r}")
    ms, dash, seq = text.partition("-")
    if not dash or not ms.isdigit() or not seq.isdigit():
        raise ValueError(f"not a stream id: {text!r}")
    return int(ms), int(seq)


def _id_text(value: StreamId) -> str:
    return f"{value[0]}-{value[1]}"


@dataclass(frozen=True, slots=True)
class _Position:
    """Where a reader is in one shard's stream: the last id it has seen, and how many entries had been added
    to the stream up to that id (its ordinal: Redis 7 trims without recording what it removed, so a reader
    tells a trim past its position by counting: more entries gone than it has seen)."""

    last: StreamId = _ORIGIN
    seen: int = 0


_START = _Position()


def _encode_position(positions: Sequence[_Position]) -> str:
    """The cursor's position: each shard's ``<ms>-<seq>:<ordinal>``, in shard order, the start as nothing."""
    return ",".join("" if p == _START else f"{_id_text(p.last)}:{p.seen}" for p in positions)


def _decode_position(position: str, shards: int) -> list[_Position]:
    parts = position.split(",")
    if len(parts) != shards:
        raise ValueError(f"{len(parts)} shards in the cursor, {shards} in the store")
    out = []
    for part in parts:
        if not part:
            out.append(_START)
            continue
        last, colon, seen = part.partition(":")
        if not colon or not seen.isdigit():
            raise ValueError(f"not a stream position: {part!r}")
        out.append(_Position(_stream_id(last), int(seen)))
    return out


def _revocation(fields: object) -> Revocation:
    """A feed entry from a stream entry's fields; ValueError/KeyError/TypeError when malformed."""
    if not isinstance(fields, list):
        raise TypeError("entry fields are not a list")
    pairs = _pairs(fields)
    at = float(pairs["at"])
    if not math.isfinite(at):
        raise ValueError(f"at is {pairs['at']!r}")
    subject = pairs["subject"]
    if not isinstance(subject, str) or not subject:
        raise ValueError("no subject")
    return Revocation(RevocationKind(pairs["kind"]), subject, at)


@dataclass(frozen=True, slots=True)
class _StreamState:
    """What the feed's read script saw of one shard's stream, in one atomic step."""

    exists: bool
    last: StreamId = _ORIGIN
    deleted: StreamId = _ORIGIN
    added: int = 0  # entries ever added
    length: int = 0  # entries in it now
    entries: tuple[Any, ...] = ()

    @property
    def removed(self) -> int:
        """How many entries trimming (or XDEL) removed so far."""
        return self.added - self.length


def _stream_state(reply: Any) -> _StreamState:
    if not reply:
        return _StreamState(False)
    last, deleted, added, length, entries = reply
    return _StreamState(True, _stream_id(last), _stream_id(deleted), int(added), int(length),
                        tuple(entries or ()))


class _Cluster(RedisCluster):
    """redis-py's cluster client, retrying after connection errors and cluster-down answers but never after a
    timeout: a timed-out script may have run (a refresh rotation sent twice would look like reuse)."""

    ERRORS_ALLOW_RETRY = (  # type: ignore[assignment]
        RedisConnectionError, ClusterDownError, SlotNotCoveredError)


@dataclass(slots=True)
class _BlockedRead:
    """One ``XREAD BLOCK`` on one stream, from ``after``, answered by ``ends`` (loop time) at the latest."""

    after: str
    task: asyncio.Task[bool]
    ends: float


class _ClusterWaiter:
    """Waits, on a Redis Cluster, until an entry is added to any of the shards' streams: one dedicated
    connection per stream, each in ``XREAD BLOCK`` on its own stream (the server refuses one XREAD over keys
    of several slots), all at once. The reads outlive a wait: one still blocked when a wait ends (its time was
    up, or another stream woke the caller) serves the next wait that reads from the same id, so an idle feed
    sends one XREAD per stream every ``block`` seconds, and a revocation costs the reader one reply and the
    read of one shard. The connections are apart from the request path's pools."""

    def __init__(self, client: RedisCluster, *, block: float, timeout: float) -> None:
        self._client = client
        self._block = block
        self._timeout = timeout
        self._connections: dict[str, tuple[str, AbstractConnection]] = {}  # stream -> (node name, conn)
        self._reads: dict[str, _BlockedRead] = {}

    async def _connection(self, key: str) -> AbstractConnection:
        node = self._client.get_node_from_key(key)
        if node is None:
            raise SlotNotCoveredError(f"no node holds {key!r}")
        held = self._connections.get(key)
        if held is not None and held[0] == node.name and held[1].is_connected:
            return held[1]
        await self._drop(key)
        kwargs = {**node.connection_kwargs, "socket_timeout": None,
                  "retry": Retry(NoBackoff(), 0, supported_errors=(RedisConnectionError,))}
        connection: AbstractConnection = node.connection_class(**kwargs)
        self._connections[key] = (node.name, connection)
        await connection.connect()  # type: ignore[no-untyped-call]
        return connection

    async def _drop(self, key: str) -> None:
        held = self._connections.pop(key, None)
        if held is not None:
            await held[1].disconnect(nowait=True)  # nowait: a stopped server must not hold the caller

    async def _read(self, key: str, after: str, block_ms: int) -> bool:
        connection = await self._connection(key)
        await connection.send_command("XREAD", "BLOCK", block_ms, "STREAMS", key, after)
        return bool(await connection.read_response())

    async def _end(self, key: str) -> None:
        """Stop a read and close its connection (one cancelled mid-reply is unusable)."""
        read = self._reads.pop(key, None)
        if read is not None:
            if read.task.done():
                if not read.task.cancelled():
                    read.task.exception()  # retrieved: the caller is not waiting for it any more
            else:
                read.task.cancel()
        await self._drop(key)

    async def wait(self, streams: Mapping[str, str], wait: float) -> set[str]:
        """The streams (of ``streams``: stream key -> id) that got an entry after their id, once one has;
        nothing after ``wait`` seconds without one. The caller bounds the time (asyncio.timeout)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        block = max(wait, self._block)
        while True:
            now = loop.time()
            woken = set()
            for key, after in streams.items():
                read = self._reads.get(key)
                if read is not None and not read.task.done():
                    if read.after == after and now <= read.ends:
                        continue  # still waiting, from the right id
                    overdue = now > read.ends
                    await self._end(key)  # from an id already read past, or its node does not answer
                    if overdue:
                        raise TimeoutError(f"no answer to XREAD on {key!r}")
                elif read is not None:
                    del self._reads[key]
                    if not read.task.cancelled():
                        error = read.task.exception()
                        if error is not None:
                            await self._drop(key)
                            raise error
                        if read.task.result() and read.after == after:
                            woken.add(key)
                            continue
                self._reads[key] = _BlockedRead(
                    after, asyncio.create_task(self._read(key, after, max(1, math.ceil(block * 1000)))),
                    now + block + self._timeout)
            if woken:
                return woken
            remaining = deadline - loop.time()
            if remaining <= 0:
                return set()
            await asyncio.wait([read.task for read in self._reads.values()], timeout=remaining,
                               return_when=asyncio.FIRST_COMPLETED)

    async def close(self) -> None:
        for key in list(self._reads):
            await self._end(key)
        for key in list(self._connections):
            await self._drop(key)


class RedisStore(BaseStore):
    """The Redis backend (one server, or a Redis Cluster). Many processes and hosts may share it. It holds the
    shared key ring (:class:`~jwtkit.store.KeyRingRecords`) and a revocation feed
    (:class:`~jwtkit.store.RevocationFeed`)."""

    def __init__(self, url: str, *, clock: Clock, **options: Any) -> None:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in SCHEMES:
            raise StoreConfigError(f"redis store URL {redact_url(url)!r}: the scheme must be one of "
                                   + ", ".join(f"{s}://" for s in SCHEMES))
        self._is_cluster = scheme.endswith("+cluster")
        database = parts.path.strip("/")
        if database and not database.isdigit():
            raise StoreConfigError(f"redis store URL {redact_url(url)!r}: the path must be a database number")
        if self._is_cluster and database not in ("", "0"):
            raise StoreConfigError(f"redis store URL {redact_url(url)!r}: a Redis Cluster has database 0 "
                                   "only")
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        merged: dict[str, Any] = {**query, **options}
        purge_interval = parse_float_option("purge_interval",
                                            merged.pop("purge_interval", DEFAULT_PURGE_INTERVAL))
        super().__init__(url, clock=clock, purge_interval=purge_interval)
        prefix = merged.pop("prefix", DEFAULT_PREFIX)
        if not isinstance(prefix, str) or not prefix or "{" in prefix or "}" in prefix:
            raise StoreConfigError(f"redis store option prefix={prefix!r} must be a non-empty string without "
                                   "{ or } (the store's keys carry their own hash tags)")
        self._prefix = prefix
        shards = merged.pop("shards", None)
        self._requested_shards = None if shards is None else self._parse_shards(shards)
        self._shards = self._requested_shards or DEFAULT_SHARDS  # the store's own count, read at open
        self.feed_retention = parse_float_option("feed_retention",
                                                 merged.pop("feed_retention", DEFAULT_FEED_RETENTION))
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
        self._client: Any = None  # aioredis.Redis or RedisCluster, once open
        self._feed_client: aioredis.Redis | None = None  # standalone: the blocking reads' own connections
        self._waiter: _ClusterWaiter | None = None  # cluster: the same
        self._scripts: dict[str, AsyncScript] = {}
        self._sid_shards: dict[str, int] = {}
        self._build_client()  # validate the URL and options now (StoreConfigError), connect later

    @staticmethod
    def _parse_shards(value: object) -> int:
        try:
            shards = int(str(value), 10)
        except ValueError:
            shards = 0
        if isinstance(value, bool) or not 1 <= shards <= MAX_SHARDS:
            raise StoreConfigError(f"redis store option shards={value!r} must be an integer from 1 to "
                                   f"{MAX_SHARDS}")
        return shards

    # clients ------------------------------------------------------------------------------------------

    def _build_client(self, *, blocking: bool = False) -> Any:
        """The request path's client, or (``blocking``) one without a socket timeout for the feed's blocking
        reads, which bound each call themselves."""
        common: dict[str, Any] = {
            "decode_responses": True,
            "encoding_errors": "replace",  # a corrupt record must not crash the reply parser
            "socket_connect_timeout": self._connect_timeout,
            "socket_timeout": None if blocking else self._command_timeout,
        }
        try:
            if not self._is_cluster:
                return aioredis.Redis.from_url(
                    self._client_url, **common,
                    # connection errors only: a timed-out command may have run, so it is not sent twice
                    retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
                    **self._client_options)
            return _Cluster(startup_nodes=self._startup_nodes(), **common, **self._cluster_options(),
                            retry=Retry(NoBackoff(), 1))
        except (ValueError, TypeError, RedisClusterException) as exc:
            raise StoreConfigError(f"redis store {self.url}: {exc}") from exc

    def _startup_nodes(self) -> list[ClusterNode]:
        hosts = urlsplit(self._client_url).netloc.rpartition("@")[2]
        nodes = []
        for item in hosts.split(","):
            host, colon, port = item.strip().rpartition(":")
            if not colon or not port.isdigit() or not host:
                raise StoreConfigError(f"redis store URL {self.url!r}: {item!r} is not host:port")
            nodes.append(ClusterNode(unquote(host.strip("[]")), int(port)))
        return nodes

    def _cluster_options(self) -> dict[str, Any]:
        """Credentials and TLS options of a cluster URL, typed as redis-py's URL parser types them."""
        parts = urlsplit(self._client_url)
        userinfo = parts.netloc.rpartition("@")[0]
        single = "rediss" if parts.scheme.lower().startswith("rediss") else "redis"
        at = f"{userinfo}@" if userinfo else ""
        parsed: dict[str, Any] = dict(parse_url(f"{single}://{at}localhost/0?{parts.query}"))
        for name in ("host", "port", "db", "connection_class"):
            parsed.pop(name, None)
        parsed.update(self._client_options)
        parsed["ssl"] = single == "rediss"
        return parsed

    # keys ---------------------------------------------------------------------------------------------

    def _base(self, shard: int) -> str:
        return f"{self._prefix}{{{shard}}}:"

    def _stream(self, shard: int) -> str:
        return self._base(shard) + "revocations"

    def _user_shard(self, user_id: str) -> int:
        return shard_of(user_id, self._shards)

    def _pointer(self, sid: str) -> str:
        return f"{self._prefix}p:{sid}"

    def _family_pointer(self, family: str) -> str:
        return f"{self._prefix}q:{family}"

    def _key(self, kind: str, name: str) -> str:
        """The key of one record: ``s`` (a sid this store has seen), ``e``/``u`` (a user id), or an untagged
        kind (``j``, ``t``, ``p``, ``q``). For tests that corrupt records, and for the untagged calls."""
        if kind in ("e", "u"):
            return f"{self._base(self._user_shard(name))}{kind}:{name}"
        if kind == "s":
            return f"{self._base(self._sid_shards[name])}s:{name}"
        return f"{self._prefix}{kind}:{name}"

    def _parse_shard(self, raw: object) -> int | None:
        if not isinstance(raw, str) or not raw.isdigit():
            return None
        shard = int(raw)
        return shard if shard < self._shards else None

    def _remember(self, sid: str, shard: int) -> None:
        cache = self._sid_shards
        cache[sid] = shard
        if len(cache) > _SHARD_CACHE_SIZE:
            del cache[next(iter(cache))]

    # calls --------------------------------------------------------------------------------------------

    async def _run(self, awaitable: Awaitable[T]) -> T:
        """Await a redis call, turning its failures into StoreUnavailable (CancelledError passes through)."""
        try:
            return await awaitable
        except _ERRORS as exc:
            raise StoreUnavailable(f"redis store {self.url}: {type(exc).__name__}: {exc}") from exc

    def _connected(self) -> Any:
        self._require_open()
        client = self._client
        if client is None:
            raise StoreUnavailable(f"redis store {self.url} is closed")
        return client

    def _now(self) -> str:
        return repr(float(self._clock()))

    async def _eval(self, name: str, keys: Sequence[str], args: Sequence[str | int], *,
                    client: Any = None) -> Any:
        """Run one of the scripts by its SHA; a server that does not have it (restarted, or a cluster node
        that never ran it) gets it with EVAL, on that node only (redis-py's fallback loads it on every
        primary, which fails while any one is down)."""
        client = self._connected() if client is None else client
        script = self._scripts[name]
        try:
            return await client.evalsha(script.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await client.eval(script.script, len(keys), *keys, *args)

    async def _shard_script(self, name: str, shard: int, *args: str | int) -> Any:
        """Run a shard script: KEYS[1] is the shard's stream, then its key base, the clock and the feed's
        retention."""
        client = self._connected()
        return await self._run(self._eval(
            name, [self._stream(shard)], [self._base(shard), self._now(), _ms(self.feed_retention), *args],
            client=client))

    async def _each(self, keys: Sequence[str], command: str) -> list[Any]:
        """One single-key command on each key, in one pipeline (on a cluster: one per node, concurrently)."""
        client = self._connected()
        pipe = client.pipeline() if self._is_cluster else client.pipeline(transaction=False)
        for key in keys:
            pipe.execute_command(command, key)
        return list(await self._run(pipe.execute()))

    async def _find(self, kind: str, name: str) -> list[int]:
        """The shards that hold ``{kind}:{name}`` (when a pointer is missing)."""
        found = await self._each([f"{self._base(n)}{kind}:{name}" for n in range(self._shards)], "EXISTS")
        return [n for n, exists in enumerate(found) if exists]

    async def _sid_shard(self, sid: str) -> int | None:
        """The shard of a session: from the cache, its pointer, or a look in every shard. None: no such
        session."""
        shard = self._sid_shards.get(sid)
        if shard is not None:
            return shard
        client = self._connected()
        try:
            shard = self._parse_shard(await self._run(client.get(self._pointer(sid))))
        except StoreUnavailable as exc:
            if not isinstance(exc.__cause__, ResponseError):
                raise
            shard = None  # a pointer of another type: look everywhere
        if shard is None:
            found = await self._find("s", sid)
            if not found:
                return None
            shard = found[0]
            log.info("redis store %s: session %s… had no shard pointer; found it in shard %d", self.url,
                     sid[:8], shard)
        self._remember(sid, shard)
        return shard

    async def _family_shards(self, family: str) -> list[int]:
        client = self._connected()
        try:
            members = await self._run(client.smembers(self._family_pointer(family)))
        except StoreUnavailable as exc:
            if not isinstance(exc.__cause__, ResponseError):
                raise
            members = set()
        shards = sorted({s for s in (self._parse_shard(m) for m in members) if s is not None})
        return shards or await self._find("f", family)

    # lifecycle --------------------------------------------------------------------------------------

    def _needs_purging(self) -> bool:
        return False  # every key has a TTL

    async def _open(self) -> None:
        client = self._build_client()
        self._scripts = {name: client.register_script(source) for name, source in _SCRIPTS.items()}
        self._client = client
        try:
            await self._run(client.ping())
            await self._migrate(client)
            await self._run(client.set(self._prefix + "generation", secrets.token_hex(16), nx=True))
            streams = [self._stream(n) for n in range(self._shards)]
            groups = [[key] for key in streams] if self._is_cluster else [streams]  # a cluster: slot by slot
            await asyncio.gather(*(self._run(self._eval("feed_init", group, [], client=client))
                                   for group in groups))
        except BaseException:
            self._client = None
            await client.aclose()
            raise

    async def _migrate(self, client: Any) -> None:
        """Bring the data to layout 3 (see the module docstring); two GETs when already done."""
        schema_key, shards_key = self._prefix + "schema", self._prefix + "shards"
        version = await self._run(client.get(schema_key))
        if version == str(LAYOUT_VERSION):
            await self._adopt_shards(await self._run(client.get(shards_key)))
            return
        if version not in (None, "2"):
            raise StoreConfigError(f"redis store {self.url} has layout version {version!r} under prefix "
                                   f"{self._prefix!r}; this jwtkit knows {LAYOUT_VERSION}: upgrade jwtkit")
        if self._is_cluster and version is not None:
            raise StoreConfigError(f"redis store {self.url} has layout version {version!r} on a Redis "
                                   "Cluster, which jwtkit never wrote: migrate it on a single node")
        # the shard count first: every node places data by it, so the first to write it decides
        await self._run(client.set(shards_key, str(self._shards), nx=True))
        await self._adopt_shards(await self._run(client.get(shards_key)))
        if not self._is_cluster:
            if version is None:
                await self._migrate_cutoffs(client)
            await self._migrate_to_sharded(client)
        await self._run(client.set(schema_key, str(LAYOUT_VERSION)))

    async def _adopt_shards(self, raw: str | None) -> None:
        if raw is None:
            raise StoreConfigError(f"redis store {self.url} has layout {LAYOUT_VERSION} but no shard count "
                                   f"({self._prefix}shards): restore it")
        stored = self._parse_shards(raw)
        if self._requested_shards is not None and self._requested_shards != stored:
            raise StoreConfigError(f"redis store {self.url} was created with shards={stored}, not "
                                   f"{self._requested_shards}: the count cannot change")
        self._shards = stored

    async def _scan(self, client: Any, kind: str) -> list[str]:
        """The names of the layout-2 keys ``{prefix}{kind}:*`` (cursor-bounded SCAN batches)."""
        start = self._prefix + kind + ":"
        return [key[len(start):] async for key in client.scan_iter(match=_glob_escape(start) + "*",
                                                                  count=1000)]

    async def _migrate_cutoffs(self, client: Any) -> None:
        """Layout 1 -> 2: per-user time cut-offs to epochs."""
        migrated = marked = 0
        for user_id in await self._scan(client, "c"):
            marked += int(await self._run(self._eval(
                "migrate_cutoff", [self._prefix + "c:" + user_id], [self._prefix, user_id], client=client)))
            migrated += 1
        if migrated:
            log.info("redis store %s: migrated %d per-user cut-offs to epochs (%d cut-off sessions marked "
                     "revoked)", self.url, migrated, marked)

    async def _migrate_to_sharded(self, client: Any) -> None:
        """Layout 2 -> 3: epochs, indexes, sessions, families, in that order."""
        prefix = self._prefix
        counts = dict.fromkeys(("epochs", "indexes", "sessions", "families", "dropped"), 0)
        for user_id in await self._scan(client, "e"):
            shard = self._user_shard(user_id)
            counts["epochs"] += await self._shard_script_on(client, "migrate_epoch", shard,
                                                            f"{prefix}e:{user_id}", user_id)
        for user_id in await self._scan(client, "u"):
            shard = self._user_shard(user_id)
            counts["indexes"] += await self._shard_script_on(client, "migrate_index", shard,
                                                             f"{prefix}u:{user_id}", user_id)
        for sid in await self._scan(client, "s"):
            old = f"{prefix}s:{sid}"
            try:
                owner: str | None = await self._run(client.hget(old, "user_id"))
            except StoreUnavailable as exc:
                if not isinstance(exc.__cause__, ResponseError):
                    raise
                owner = None
            if owner is None:  # not a hash, or no owner: no shard can hold it; it read as revoked anyway
                counts["dropped"] += int(await self._run(client.delete(old)))
                log.warning("redis store %s: dropped unreadable session record %s… while migrating", self.url,
                            sid[:8])
                continue
            shard = self._user_shard(owner)
            counts["sessions"] += await self._shard_script_on(client, "migrate_session", shard, old, sid,
                                                              owner, self._pointer(sid), str(shard))
        for family in await self._scan(client, "f"):
            counts["families"] += int(await self._run(self._eval(
                "migrate_family", [f"{prefix}f:{family}"], [prefix, family], client=client)))
        if any(counts.values()):
            log.info("redis store %s: migrated to key layout 3 in %d shards: %s", self.url, self._shards,
                     ", ".join(f"{n} {what}" for what, n in counts.items()))

    async def _shard_script_on(self, client: Any, name: str, shard: int, *args: str) -> int:
        return int(await self._run(self._eval(
            name, [self._stream(shard)], [self._base(shard), self._now(), _ms(self.feed_retention), *args],
            client=client)))

    async def _close(self) -> None:
        client, self._client = self._client, None
        feed, self._feed_client = self._feed_client, None
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            await waiter.close()
        if feed is not None:
            await feed.aclose()
        if client is not None:
            await client.aclose()

    async def ping(self) -> None:
        await self._run(self._connected().ping())

    # sessions ---------------------------------------------------------------------------------------

    async def create_session(self, session: Session, *, max_sessions: int | None = None) -> list[str]:
        require_valid_epoch(session)
        require_valid_max_sessions(max_sessions)
        client = self._connected()
        shard = self._user_shard(session.user_id)
        ttl = _ms(session.expires - self._clock())
        # the pointers first, in one pipeline: a session its pointers did not reach could be missed by a
        # revocation. The family's pointer lives as long as its longest session (NX: a new key; GT: longer).
        pipe = client.pipeline() if self._is_cluster else client.pipeline(transaction=False)
        pipe.set(self._pointer(session.sid), str(shard), px=ttl, get=True)
        family_key = self._family_pointer(session.family)
        pipe.sadd(family_key, str(shard))
        pipe.pexpire(family_key, ttl, nx=True)
        pipe.pexpire(family_key, ttl, gt=True)
        previous = (await self._run(pipe.execute()))[0]
        moved_from = self._parse_shard(previous)
        if moved_from is not None and moved_from != shard:  # a sid given again, to another user
            await self._run(client.delete(f"{self._base(moved_from)}s:{session.sid}"))
        gone = await self._shard_script(
            "create", shard, session.sid, session.user_id, repr(float(session.created)),
            repr(float(session.last_used)), repr(float(session.expires)), session.family, session.refresh_jti,
            session.user_agent, session.ip, "1" if session.revoked else "0", ttl, str(session.epoch),
            "" if max_sessions is None else str(max_sessions))
        self._remember(session.sid, shard)
        return [str(sid) for sid in gone]

    async def get_session(self, sid: str) -> Session | None:
        shard = await self._sid_shard(sid)
        if shard is None:
            return None
        reply = await self._shard_script("get", shard, sid)
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
        base = self._base(self._user_shard(user_id))  # a session lives in its owner's shard
        try:
            answer = await self._eval("check", [base + "s:" + sid, base + "e:" + user_id],
                                      [user_id, self._now()], client=client)
        except _ERRORS as exc:
            raise StoreUnavailable(f"redis store {self.url}: {type(exc).__name__}: {exc}") from exc
        if answer == 1:
            return True
        if answer == -1:
            corrupt_session(sid, "malformed session record")
        elif answer == -2:
            unreadable_epoch(user_id, "not a decimal integer")
        return False

    async def touch(self, sid: str, when: float) -> None:
        shard = await self._sid_shard(sid)
        if shard is not None:
            await self._shard_script("touch", shard, sid, repr(float(when)))

    async def revoke(self, sid: str) -> bool:
        shard = await self._sid_shard(sid)
        if shard is None:
            return False
        return bool(await self._shard_script("revoke", shard, sid))

    async def revoke_family(self, family: str) -> int:
        revoked = 0
        for shard in await self._family_shards(family):
            revoked += int(await self._shard_script("revoke_family", shard, family))
        return revoked

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
        return int(await self._shard_script("revoke_all", self._user_shard(user_id), user_id))

    async def list_sessions(self, user_id: str) -> list[Session]:
        reply = await self._shard_script("list", self._user_shard(user_id), user_id)
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
        shard = await self._sid_shard(sid)
        if shard is None:
            return Rotation.INACTIVE
        reply = await self._shard_script("rotate", shard, sid, presented_jti, new_jti, *concurrent)
        outcome = Rotation(reply[0])
        if outcome is Rotation.REUSED:  # the family's sessions in other shards (another user's) end too
            for other in await self._family_shards(reply[1]):
                if other != shard:
                    await self._shard_script("revoke_family", other, reply[1])
        return outcome

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
        client = self._connected()
        now = float(self._clock())
        failures = await self._run(self._eval("throttle_hit", [self._key("t", key)],
                                              [repr(now), _ms(window), repr(now + window)], client=client))
        return ThrottleState(int(failures), now)

    async def throttle_get(self, key: str) -> ThrottleState:
        client = self._connected()
        try:
            failures, last, expires = await self._run(
                client.hmget(self._key("t", key), ["failures", "last_failure", "expires"]))
            if failures is None or self._clock() >= float(expires):
                return ThrottleState(0, 0.0)
            return ThrottleState(int(failures), float(last))
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
        client = self._connected()
        return bool(await self._run(self._eval(
            "ring_swap", [self._prefix + "keyring"], [int(expected), document], client=client)))

    # the revocation feed (RevocationFeed) ----------------------------------------------------------

    async def _generation(self, *, create: bool) -> str | None:
        client = self._connected()
        key = self._prefix + "generation"
        if create:
            await self._run(client.set(key, secrets.token_hex(16), nx=True))
        raw = await self._run(client.get(key))
        return raw if isinstance(raw, str) else None

    async def _snapshot(self, client: Any, after: Sequence[_Position], shards: Sequence[int], *,
                        block_ms: int | None = None) -> tuple[str | None, dict[int, _StreamState], list[int]]:
        """One pipeline: the generation, then the feed's read script over ``shards`` (after each shard's
        position in ``after``; one call per shard on a cluster, whose slots differ), then (single node only)
        an ``XREAD BLOCK`` over every stream: the shards it saw an entry in. The script is loaded again once
        when the server forgot it."""
        script = self._scripts["feed_read"]
        calls = [[n] for n in shards] if self._is_cluster else [list(shards)]
        for attempt in (1, 2):
            pipe = client.pipeline() if self._is_cluster else client.pipeline(transaction=False)
            pipe.get(self._prefix + "generation")
            for group in calls:
                pipe.execute_command("EVALSHA", script.sha, len(group), *(self._stream(n) for n in group),
                                     *(_id_text(after[n].last) for n in group), _FEED_BATCH)
            if block_ms is not None:
                pipe.xread({self._stream(n): _id_text(after[n].last) for n in range(self._shards)},
                           block=block_ms)
            results = await self._run(pipe.execute(raise_on_error=False))
            if attempt == 1 and any(isinstance(r, NoScriptError) for r in results):
                script.sha = await self._run(self._connected().script_load(script.script))
                continue
            for result in results:
                if isinstance(result, _ERRORS):
                    raise StoreUnavailable(f"redis store {self.url}: {type(result).__name__}: {result}") \
                        from result
            generation = results[0] if isinstance(results[0], str) else None
            replies = [reply for group_replies in results[1:1 + len(calls)] for reply in group_replies]
            try:
                states = {n: _stream_state(reply) for n, reply in zip(shards, replies, strict=True)}
            except (ValueError, TypeError) as exc:
                raise FeedLost(f"redis store {self.url}: unreadable stream state: {exc}", reset=True) from exc
            woke = self._woken(results[-1]) if block_ms is not None else []
            return generation, states, woke
        raise AssertionError("unreachable")

    def _lost(self, shard: int, at: _Position, state: _StreamState) -> FeedLost | None:
        """Why the feed cannot go on from ``at`` in a shard's stream, if it cannot."""
        if not state.exists:
            if at == _START:
                return None
            return FeedLost(f"redis store {self.url}: the revocation stream of shard {shard} is gone",
                            reset=True)
        if state.last < at.last or state.added < at.seen:
            return FeedLost(f"redis store {self.url}: the revocation stream of shard {shard} is behind the "
                            "cursor (the server's data went back: restored from an older copy?)", reset=True)
        if state.deleted > at.last or state.removed > at.seen:
            return FeedLost(f"redis store {self.url}: the revocation stream of shard {shard} was trimmed "
                            "past the cursor", reset=False)
        return None

    def _advance(self, cursor: FeedCursor, after: list[_Position], generation: str | None,
                 states: Mapping[int, _StreamState]) -> tuple[list[Revocation], FeedCursor]:
        """The entries after ``after`` and the cursor past them; FeedLost when the feed cannot go on from
        ``cursor``."""
        if generation is None or generation != cursor.generation:
            raise FeedLost(f"redis store {self.url}: the store's generation is "
                           f"{'gone' if generation is None else 'new'}: its data was lost", reset=True)
        found: list[tuple[StreamId, int, Revocation]] = []
        for n, state in states.items():
            lost = self._lost(n, after[n], state)
            if lost is not None:
                raise lost
            found.extend(self._entries(n, state.entries, after))
        found.sort(key=lambda item: (item[0], item[1]))
        return [entry for _, _, entry in found], FeedCursor(cursor.generation, _encode_position(after))

    def _entries(self, shard: int, raw: Iterable[Any], after: list[_Position]
                 ) -> list[tuple[StreamId, int, Revocation]]:
        """Parse a shard's entries and move ``after[shard]`` past them; malformed ones are logged and
        skipped."""
        out = []
        for item in raw:
            try:
                entry_id = _stream_id(item[0])
            except (ValueError, TypeError, IndexError):
                log.warning("redis store %s: revocation stream of shard %d returned a malformed id %r",
                            self.url, shard, item)
                continue
            after[shard] = _Position(entry_id, after[shard].seen + 1)
            try:
                out.append((entry_id, shard, _revocation(item[1])))
            except (ValueError, TypeError, KeyError, IndexError) as exc:
                log.warning("redis store %s: skipped malformed revocation %s in shard %d: %s", self.url,
                            _id_text(entry_id), shard, exc)
        return out

    def _positions(self, cursor: FeedCursor) -> list[_Position]:
        try:
            return _decode_position(cursor.position, self._shards)
        except ValueError as exc:
            raise FeedLost(f"redis store {self.url}: not a cursor of this store ({exc})",
                           reset=True) from None

    async def feed_load(self) -> tuple[list[Revocation], FeedCursor]:
        client = self._connected()
        for _ in range(3):
            generation = await self._generation(create=True)
            after = [_START] * self._shards
            found: list[tuple[StreamId, int, Revocation]] = []
            pending: list[int] = list(range(self._shards))
            first = True
            consistent = generation is not None
            while pending and consistent:
                seen, states, _ = await self._snapshot(client, after, pending)
                consistent = seen == generation
                for n, state in states.items():
                    if first and state.exists:  # what was trimmed before the load is not the reader's loss
                        after[n] = _Position(_ORIGIN, state.removed)
                    elif self._lost(n, after[n], state) is not None:
                        consistent = False  # lost or trimmed between two batches: load again
                    found.extend(self._entries(n, state.entries, after))
                    if state.exists and not state.entries:  # all read: go on from the stream's last id
                        after[n] = _Position(state.last, state.added)
                pending = [n for n, state in states.items() if len(state.entries) >= _FEED_BATCH]
                first = False
            if consistent and generation is not None:
                found.sort(key=lambda item: (item[0], item[1]))
                return [entry for _, _, entry in found], FeedCursor(generation, _encode_position(after))
        raise StoreUnavailable(f"redis store {self.url}: the revocation feed kept changing while it was "
                               "loaded")

    def _woken(self, reply: Any) -> list[int]:
        """The shards in an XREAD reply (stream name -> entries)."""
        names = reply.keys() if isinstance(reply, dict) else [item[0] for item in reply or ()]
        streams = {self._stream(n): n for n in range(self._shards)}
        return sorted({streams[name] for name in names if name in streams})

    async def feed_read(self, cursor: FeedCursor, *, wait: float) -> tuple[list[Revocation], FeedCursor]:
        self._require_open()
        after = self._positions(cursor)
        shards = range(self._shards)
        bound = max(wait, 0) + self._command_timeout
        try:
            if self._is_cluster:
                async with asyncio.timeout(self._command_timeout + 0.5):
                    generation, states, _ = await self._snapshot(self._connected(), after, shards)
                entries, moved = self._advance(cursor, after, generation, states)
                if entries or wait <= 0:
                    return entries, moved
                if self._waiter is None:
                    self._waiter = _ClusterWaiter(self._connected(), block=_CLUSTER_BLOCK,
                                                  timeout=self._command_timeout)
                async with asyncio.timeout(bound):
                    woken = await self._run(self._waiter.wait(
                        {self._stream(n): _id_text(after[n].last) for n in shards}, wait))
                woke = sorted({n for n in shards if self._stream(n) in woken})
                client: Any = self._connected()
            else:
                client = self._feed()
                block_ms = max(1, math.ceil(wait * 1000)) if wait > 0 else None
                async with asyncio.timeout(bound):
                    generation, states, woke = await self._snapshot(client, after, shards, block_ms=block_ms)
                entries, moved = self._advance(cursor, after, generation, states)
                if entries:
                    return entries, moved
            if not woke:
                return [], moved
            # an entry landed while the read waited: read the shards it landed in (the others' positions
            # stay, and the next read checks them again)
            async with asyncio.timeout(self._command_timeout + 0.5):
                generation, states, _ = await self._snapshot(client, after, woke)
            return self._advance(cursor, after, generation, states)
        except TimeoutError as exc:
            raise StoreUnavailable(f"redis store {self.url}: the revocation feed did not answer within "
                                   f"{bound:g} s") from exc

    def _feed(self) -> aioredis.Redis:
        """The single node's client for the feed's blocking reads: its own connections, without a socket
        timeout (each read is bounded by ``wait`` plus the command timeout), so that a read blocked for
        ``wait`` never holds a connection the request path needs."""
        self._require_open()
        if self._feed_client is None:
            client = self._build_client(blocking=True)
            assert isinstance(client, aioredis.Redis)
            self._feed_client = client
        return self._feed_client

    # upkeep -----------------------------------------------------------------------------------------

    async def purge(self) -> int:
        self._require_open()
        return 0  # Redis expires every key by its TTL
