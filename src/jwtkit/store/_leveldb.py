"""``leveldb:///path``: an embedded key-value store through plyvel (``pip install jwtkit[leveldb]``).

LevelDB is single-process: it locks its directory, and a second process that opens it gets
:class:`StoreUnavailable` ("locked by another process") at once, never a hang. Run one server worker with it,
or use ``sqlite://`` (several workers) or ``redis://`` (several hosts).

Keys (values are JSON unless noted):

- ``s:{sid}``: the session;  ``u:{user_id}\\0{sid}`` and ``f:{family}\\0{sid}``: empty index entries (a
  creation under a session cap drops the user's entries of the sessions it evicts and of revoked ones);
- ``e:{user_id}``: the user's epoch, in ASCII decimal; never purged (see base.py);
- ``j:{jti}``: a consumed single-use token (value: its expiry);  ``t:{key}``: a throttle counter;
- ``m:schema``: the layout version, ``2``.

Writes run on one writer thread under a lock, each as one ``WriteBatch`` written with ``sync=True`` (an
acknowledged revocation is on disk). Reads for :meth:`check` are two in-memory-cached point lookups done
inline; listing runs in the thread pool. Expired records are purged on a schedule and by :meth:`purge`.

Layout 2 (epochs) migrates a folder of layout 1 (per-user time cut-offs, ``c:{user_id}``; no ``m:schema``)
when it is opened, in one synced ``WriteBatch``: every session gains ``"epoch": 0``, every session the old
rule made dead (``created`` before its user's cut-off, or any session of a user whose cut-off was unreadable)
is marked revoked, and the ``c:`` records are deleted.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import math
import os
import threading
from collections.abc import Callable, Collection, Iterator
from typing import Any, TypeVar

import orjson

from jwtkit.store._base import Clock, Rotation, Session, StoreConfigError, StoreUnavailable, ThrottleState
from jwtkit.store._common import BaseStore, corrupt_session, log
from jwtkit.store._policy import (
    as_read,
    epoch_unavailable,
    evicted,
    is_active,
    parse_epoch,
    repaired_epoch,
    require_valid_epoch,
    require_valid_max_sessions,
    rotation_outcome,
    unreadable_epoch,
    valid_epoch,
)

__all__ = ["LevelDBStore"]

T = TypeVar("T")

_SESSION, _USER, _FAMILY, _EPOCH, _CONSUMED, _THROTTLE = b"s:", b"u:", b"f:", b"e:", b"j:", b"t:"
_LEGACY_CUTOFF = b"c:"  # layout 1 only: migrated and deleted on open
_SCHEMA_KEY, LAYOUT_VERSION = b"m:schema", 2
_SEP = b"\x00"
# Ids may hold lone surrogates (valid in JSON, not in UTF-8): keys keep them losslessly instead of failing.


def _enc(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _dec(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogatepass")


class _Corrupt(Exception):
    """A record that does not decode to what jwtkit wrote."""


def _encode_session(session: Session) -> bytes:
    return orjson.dumps({"user_id": session.user_id, "created": float(session.created),
                         "last_used": float(session.last_used), "expires": float(session.expires),
                         "family": session.family, "refresh_jti": session.refresh_jti,
                         "user_agent": session.user_agent, "ip": session.ip, "revoked": session.revoked,
                         "epoch": session.epoch})


def _decode_session(sid: str, raw: bytes) -> Session:
    try:
        record = orjson.loads(raw)
        session = Session(sid=sid, user_id=record["user_id"], created=record["created"],
                          last_used=record["last_used"], expires=record["expires"], family=record["family"],
                          refresh_jti=record["refresh_jti"], user_agent=record["user_agent"], ip=record["ip"],
                          revoked=record["revoked"], epoch=record["epoch"])
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise _Corrupt(str(exc)) from exc
    for text in (session.user_id, session.family, session.refresh_jti, session.user_agent, session.ip):
        if type(text) is not str:
            raise _Corrupt("a text field is not a string")
    for number in (session.created, session.last_used, session.expires):
        if type(number) not in (float, int):
            raise _Corrupt("a time field is not a number")
    if type(session.revoked) is not bool:
        raise _Corrupt("revoked is not a boolean")
    if not valid_epoch(session.epoch):
        raise _Corrupt("epoch is not an integer from 0 to 2**53 - 1")
    return session


def _legacy_cutoff(raw: bytes) -> float:
    """A layout-1 cut-off, as the old code read it: unreadable is +inf (every session dead)."""
    try:
        cutoff = orjson.loads(raw)["cutoff"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return math.inf
    return float(cutoff) if type(cutoff) in (float, int) else math.inf


def _migrate(db: Any, path: str) -> None:
    """Layout 1 -> 2 (see the module docstring) in one synced batch; a no-op on layout 2."""
    version = db.get(_SCHEMA_KEY)
    if version == str(LAYOUT_VERSION).encode():
        return
    if version is not None:
        raise StoreConfigError(f"leveldb store {path} has layout version {version!r}; this jwtkit knows "
                               f"{LAYOUT_VERSION}: upgrade jwtkit")
    cutoffs = {key[len(_LEGACY_CUTOFF):]: _legacy_cutoff(raw)
               for key, raw in db.iterator(prefix=_LEGACY_CUTOFF)}
    revoked = 0
    with db.write_batch(sync=True) as batch:
        for key, raw in db.iterator(prefix=_SESSION):
            try:
                record = orjson.loads(raw)
                user_id = record["user_id"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                continue  # corrupt: it reads as revoked anyway; left as it is
            if not isinstance(record, dict) or type(user_id) is not str:
                continue
            record.setdefault("epoch", 0)
            cutoff = cutoffs.get(_enc(user_id))
            created = record.get("created")
            if cutoff is not None and record.get("revoked") is False and (
                    math.isinf(cutoff) or (isinstance(created, (float, int)) and created < cutoff)):
                record["revoked"] = True
                revoked += 1
            batch.put(key, orjson.dumps(record))
        for user_key in cutoffs:
            batch.delete(_LEGACY_CUTOFF + user_key)
        batch.put(_SCHEMA_KEY, str(LAYOUT_VERSION).encode())
    if cutoffs:
        log.info("leveldb store %s: migrated %d per-user cut-offs to epochs (%d cut-off sessions marked "
                 "revoked)", path, len(cutoffs), revoked)


def _private_folder(path: str) -> None:
    """The store's folder holds sessions that no other local user may read: created 0700; an existing one
    that others can open is logged (the operator chose it; jwtkit does not change it)."""
    try:
        os.mkdir(path, 0o700)
        return
    except FileExistsError:
        pass
    except OSError:
        return  # plyvel reports the real problem
    mode = os.stat(path).st_mode & 0o777
    if mode & 0o077:
        log.warning("leveldb store %s: the folder has mode %04o, so other local users can read the sessions "
                    "in it: chmod 700 %s", path, mode, path)


class LevelDBStore(BaseStore):
    """The LevelDB backend: one process per directory (LevelDB's own lock)."""

    def __init__(self, url: str, path: str, *, clock: Clock, purge_interval: float) -> None:
        super().__init__(url, clock=clock, purge_interval=purge_interval)
        try:
            import plyvel
        except ImportError as exc:
            raise StoreConfigError(f"leveldb store {url!r} needs plyvel: "
                                   "pip install 'jwtkit[leveldb]'") from exc
        self._plyvel: Any = plyvel
        self.path = path
        self._db: Any = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    # lifecycle --------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _mapped(self) -> Iterator[None]:
        """plyvel errors become StoreUnavailable."""
        try:
            yield
        except self._plyvel.Error as exc:
            raise StoreUnavailable(f"leveldb store {self.path}: {exc}") from exc
        except RuntimeError as exc:  # plyvel raises RuntimeError on a closed database
            raise StoreUnavailable(f"leveldb store {self.path}: {exc}") from exc

    def _open_db(self) -> Any:
        parent = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(parent):
            raise StoreConfigError(f"leveldb store {self.url}: directory {parent} does not exist")
        _private_folder(self.path)
        try:
            db = self._plyvel.DB(self.path, create_if_missing=True)
        except self._plyvel.IOError as exc:
            # LevelDB takes an fcntl lock without waiting: another process (or another store object in this
            # one) has the directory open. Say so plainly instead of LevelDB's "IO error: lock ...".
            if "lock" in str(exc).lower():
                raise StoreUnavailable(f"leveldb store {self.path} is locked by another process (LevelDB "
                                       "allows one process; use sqlite:// or redis:// for several "
                                       "workers)") from exc
            raise StoreUnavailable(f"leveldb store {self.path}: {exc}") from exc
        except self._plyvel.Error as exc:
            raise StoreUnavailable(f"leveldb store {self.path}: {exc}") from exc
        for entry in os.scandir(self.path):  # LevelDB creates its files with the umask's mode
            if entry.is_file(follow_symlinks=False):
                os.chmod(entry.path, 0o600)
        return db

    def _open_and_migrate(self) -> Any:
        db = self._open_db()
        try:
            with self._mapped():
                _migrate(db, self.path)
        except BaseException:
            db.close()
            raise
        return db

    async def _open(self) -> None:
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="jwtkit-leveldb-writer")
        try:
            loop = asyncio.get_running_loop()
            self._db = await loop.run_in_executor(self._executor, self._open_and_migrate)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise

    async def _close(self) -> None:
        executor, db = self._executor, self._db
        self._executor = self._db = None
        if executor is not None:
            if db is not None:
                await asyncio.get_running_loop().run_in_executor(executor, db.close)
            executor.shutdown(wait=False)

    async def ping(self) -> None:
        await self._read(lambda db: db.get(b"ping"))

    # running work -----------------------------------------------------------------------------------

    async def _write(self, work: Callable[[Any], T]) -> T:
        """Run ``work(db)`` on the writer thread, under the lock (read-modify-write is atomic)."""
        self._require_open()
        executor = self._executor
        if executor is None:
            raise StoreUnavailable(f"leveldb store {self.url} is closed")

        def run() -> T:
            with self._lock, self._mapped():
                return work(self._db)

        return await asyncio.get_running_loop().run_in_executor(executor, run)

    async def _read(self, work: Callable[[Any], T]) -> T:
        self._require_open()

        def run() -> T:
            db = self._db
            if db is None:
                raise StoreUnavailable(f"leveldb store {self.url} is closed")
            with self._mapped():
                return work(db)

        return await asyncio.to_thread(run)

    @staticmethod
    def _stored_epoch(db: Any, user_id: str) -> int | None:
        """The user's epoch record: 0 when absent, None when unreadable."""
        raw = db.get(_EPOCH + _enc(user_id))
        return 0 if raw is None else parse_epoch(raw)

    def _epoch(self, db: Any, user_id: str) -> float:
        """The user's epoch; UNREADABLE_EPOCH (logged) when the record is unreadable."""
        epoch = self._stored_epoch(db, user_id)
        return unreadable_epoch(user_id, "not a decimal integer") if epoch is None else epoch

    def _load(self, db: Any, sid: str) -> tuple[Session | None, float]:
        """The session (corrupt reads as revoked) and its user's current epoch."""
        raw = db.get(_SESSION + _enc(sid))
        if raw is None:
            return None, 0
        try:
            session = _decode_session(sid, raw)
        except _Corrupt as exc:
            return corrupt_session(sid, exc), 0
        return session, self._epoch(db, session.user_id)

    # sessions ---------------------------------------------------------------------------------------

    async def create_session(self, session: Session, *, max_sessions: int | None = None) -> list[str]:
        require_valid_epoch(session)
        require_valid_max_sessions(max_sessions)
        sid = _enc(session.sid)
        user_prefix = _USER + _enc(session.user_id) + _SEP

        def work(db: Any) -> list[str]:
            # On the writer thread under the lock, one synced batch: the reads below and the eviction are one
            # step with the creation.
            gone: list[str] = []
            with db.write_batch(sync=True) as batch:
                batch.put(_SESSION + sid, _encode_session(session))
                batch.put(user_prefix + sid, b"")
                batch.put(_FAMILY + _enc(session.family) + _SEP + sid, b"")
                if max_sessions is None:
                    return gone
                now = self._clock()
                epoch = self._epoch(db, session.user_id)
                others = []
                for other in self._sessions_of(db, session.user_id):
                    if other.sid == session.sid:
                        continue
                    if is_active(other, session.user_id, epoch, now):
                        others.append((other.created, other.sid))
                    elif other.revoked:  # revoked for good: its index entry only made every scan longer
                        batch.delete(user_prefix + _enc(other.sid))
                gone = evicted(others, max_sessions, is_active(session, None, epoch, now))
                self._revoke(db, batch, gone)
                for evicted_sid in gone:
                    batch.delete(user_prefix + _enc(evicted_sid))
            return gone

        return await self._write(work)

    async def get_session(self, sid: str) -> Session | None:
        session, epoch = await self._read(lambda db: self._load(db, sid))
        return as_read(session, epoch, self._clock())

    async def check(self, sid: str, user_id: str) -> bool:
        # The hot path, inline: two point lookups that LevelDB answers from its memtable or block cache.
        self._require_open()
        db = self._db
        try:
            raw = db.get(_SESSION + _enc(sid))
            if raw is None:
                return False
            try:
                session = _decode_session(sid, raw)
            except _Corrupt as exc:
                corrupt_session(sid, exc)
                return False
            if session.user_id != user_id:
                return False
            return is_active(session, user_id, self._epoch(db, user_id), self._clock())
        except (self._plyvel.Error, RuntimeError, AttributeError) as exc:
            raise StoreUnavailable(f"leveldb store {self.path}: {exc}") from exc

    async def touch(self, sid: str, when: float) -> None:
        def work(db: Any) -> None:
            session, _ = self._load(db, sid)
            if session is not None and not session.revoked and when > session.last_used:
                db.put(_SESSION + _enc(sid), _encode_session(dataclasses.replace(session, last_used=when)))

        await self._write(work)

    def _revoke(self, db: Any, batch: Any, sids: list[str]) -> int:
        now = self._clock()
        active = 0
        for sid in sids:
            session, epoch = self._load(db, sid)
            if session is None or session.revoked:
                continue
            active += is_active(session, None, epoch, now)
            batch.put(_SESSION + _enc(sid), _encode_session(dataclasses.replace(session, revoked=True)))
        return active

    def _family(self, db: Any, family: str) -> list[str]:
        prefix = _FAMILY + _enc(family) + _SEP
        return [_dec(key[len(prefix):]) for key in db.iterator(prefix=prefix, include_value=False)]

    async def revoke(self, sid: str) -> bool:
        def work(db: Any) -> int:
            with db.write_batch(sync=True) as batch:
                return self._revoke(db, batch, [sid])

        return bool(await self._write(work))

    async def revoke_family(self, family: str) -> int:
        def work(db: Any) -> int:
            with db.write_batch(sync=True) as batch:
                return self._revoke(db, batch, self._family(db, family))

        return await self._write(work)

    async def get_epoch(self, user_id: str) -> int:
        epoch = await self._read(lambda db: self._epoch(db, user_id))
        if not isinstance(epoch, int):
            raise epoch_unavailable(user_id)
        return epoch

    async def revoke_all(self, user_id: str) -> int:
        def work(db: Any) -> int:
            # On the writer thread under the lock: this read-then-write is one step.
            current = self._stored_epoch(db, user_id)
            if current is not None:
                new = current + 1
            else:
                new = repaired_epoch([s.epoch for s in self._sessions_of(db, user_id)])
                log.warning("leveldb store %s: repaired the unreadable epoch record of user %r (now %d)",
                            self.path, user_id, new)
            db.put(_EPOCH + _enc(user_id), str(new).encode(), sync=True)
            return new

        return await self._write(work)

    def _sessions_of(self, db: Any, user_id: str) -> list[Session]:
        prefix = _USER + _enc(user_id) + _SEP
        found = []
        for key in db.iterator(prefix=prefix, include_value=False):
            sid = _dec(key[len(prefix):])
            raw = db.get(_SESSION + key[len(prefix):])
            if raw is None:
                continue
            try:
                session = _decode_session(sid, raw)
            except _Corrupt as exc:
                corrupt_session(sid, exc)
                continue
            if session.user_id == user_id:  # ids may contain NUL: trust the record, not the index key
                found.append(session)
        return found

    async def list_sessions(self, user_id: str) -> list[Session]:
        def work(db: Any) -> list[Session]:
            now = self._clock()
            sessions = self._sessions_of(db, user_id)
            epoch = self._epoch(db, user_id) if sessions else 0
            found = [s for s in sessions if is_active(s, user_id, epoch, now)]
            return sorted(found, key=lambda s: s.created, reverse=True)

        return await self._read(work)

    async def rotate_refresh(self, sid: str, presented_jti: str, new_jti: str, *,
                             concurrent: Collection[str] = ()) -> Rotation:
        def work(db: Any) -> Rotation:
            now = self._clock()
            session, epoch = self._load(db, sid)
            if session is None:
                return Rotation.INACTIVE
            outcome = rotation_outcome(is_active(session, None, epoch, now), session.refresh_jti,
                                       presented_jti, concurrent)
            if outcome is Rotation.ROTATED:
                rotated = dataclasses.replace(session, refresh_jti=new_jti, last_used=now)
                db.put(_SESSION + _enc(sid), _encode_session(rotated), sync=True)
            elif outcome is Rotation.REUSED:
                # RFC 9700 §4.14: an old refresh token came back, so one copy is stolen: end the whole family.
                with db.write_batch(sync=True) as batch:
                    self._revoke(db, batch, [sid, *self._family(db, session.family)])
            return outcome

        return await self._write(work)

    # single-use tokens ------------------------------------------------------------------------------

    async def consume(self, jti: str, expires: float) -> bool:
        if self._clock() >= expires:
            return False
        key = _CONSUMED + _enc(jti)

        def work(db: Any) -> bool:
            if db.get(key) is not None:  # the lock makes get-then-put one step
                return False
            db.put(key, repr(float(expires)).encode(), sync=True)
            return True

        return await self._write(work)

    # login throttling -------------------------------------------------------------------------------

    async def throttle_hit(self, key: str, window: float) -> ThrottleState:
        raw_key = _THROTTLE + _enc(key)

        def work(db: Any) -> ThrottleState:
            now = self._clock()
            failures, _, expires = self._throttle(db.get(raw_key))
            failures = failures + 1 if now < expires else 1
            record = {"failures": failures, "last_failure": now, "expires": now + window}
            db.put(raw_key, orjson.dumps(record))
            return ThrottleState(failures, now)

        return await self._write(work)

    @staticmethod
    def _throttle(raw: bytes | None) -> tuple[int, float, float]:
        if raw is None:
            return 0, 0.0, -math.inf
        try:
            record = orjson.loads(raw)
            return int(record["failures"]), float(record["last_failure"]), float(record["expires"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return 0, 0.0, -math.inf

    async def throttle_get(self, key: str) -> ThrottleState:
        raw = await self._read(lambda db: db.get(_THROTTLE + _enc(key)))
        failures, last, expires = self._throttle(raw)
        if self._clock() >= expires:
            return ThrottleState(0, 0.0)
        return ThrottleState(failures, last)

    async def throttle_clear(self, key: str) -> None:
        await self._write(lambda db: db.delete(_THROTTLE + _enc(key)))

    # upkeep -----------------------------------------------------------------------------------------

    async def purge(self) -> int:
        def work(db: Any) -> int:
            now = self._clock()
            removed = 0
            alive: set[bytes] = set()
            with db.write_batch(sync=True) as batch:
                for key, raw in db.iterator(prefix=_SESSION):
                    try:
                        dead = now >= _decode_session(_dec(key[2:]), raw).expires
                    except (_Corrupt, UnicodeDecodeError):
                        dead = True
                    if dead:
                        batch.delete(key)
                        removed += 1
                    else:
                        alive.add(key[2:])
                for prefix in (_USER, _FAMILY):  # index entries of sessions that are gone
                    for key in db.iterator(prefix=prefix, include_value=False):
                        if key.rpartition(_SEP)[2] not in alive:
                            batch.delete(key)
                for key, raw in db.iterator(prefix=_CONSUMED):
                    try:
                        dead = now >= float(raw)
                    except ValueError:
                        dead = True
                    if dead:
                        batch.delete(key)
                        removed += 1
                for key, raw in db.iterator(prefix=_THROTTLE):
                    if now >= self._throttle(raw)[2]:
                        batch.delete(key)
                        removed += 1
            return removed

        return await self._write(work)
