"""Drain every account's history and ledger streams from Redis into the archive database, exactly once.

Where to look: the index `<prefix>:archidx` (account → until when it may still get entries), written once
per account and minute by the admissions (gateway.store.ledger) and by every credit — a one-key command, so
every Lua script still touches one slot; plus, at start and every `full_scan_s`, every account (a settlement
replayed from a journal days later, into an account nobody calls, is found there).

How: per chunk of accounts, the cursors from the database, `XRANGE (cursor +` of both streams (a pipeline;
on a Redis Cluster redis-py splits it per node), then one database transaction with the rows and the new
cursors (ArchiveDB.append). Only then is the history trimmed in Redis: `XTRIM MINID` up to the archived
cursor and not past `keep_ms` ago, so Redis keeps the recent history the cabinet shows and never drops what
is not archived (settle.lua's MAXLEN, `archive.redis_cap`, is the bound if the archiver stops for long).
A crash on either side between the two repeats the read, and the insert skips what is there.

One process archives at a time: the one holding the lease `<prefix>:archiver` (renewed each pass); the
others' tasks wait for it. Never on the request path: a background task, database calls in a thread.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

import orjson
from redis.exceptions import LockError, RedisError
from sqlalchemy.exc import SQLAlchemyError

from gateway.archive.database import ArchiveDB, Batch, StreamId, format_id, parse_id
from gateway.store.connection import AsyncStore
from gateway.store.keys import KeySpace

log = logging.getLogger("gateway.archive")

CHUNK_ACCOUNTS = 100      # accounts read per pipeline and archived per transaction
LEASE_S = 30
INDEX_SCAN = 1000


class Archiver:
    def __init__(self, redis: AsyncStore, keys: KeySpace, db: ArchiveDB, *, interval_s: float = 2.0,
                 batch: int = 5000, keep_ms: int = 86_400_000, full_scan_s: float = 3600.0) -> None:
        self._r = redis
        self._k = keys
        self.db = db
        self._interval = interval_s
        self._batch = batch
        self._keep_ms = keep_ms
        self._full_scan_s = full_scan_s
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._lease: Any = None   # the lease while this process holds it: renewed as a long pass goes on
        self._next_full = 0.0
        self.migrated = False
        self.archived = 0   # rows written by this process (both streams)

    # -- the background task -------------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        """End the task. Cancelling it is not enough on its own: redis-py turns a cancellation that lands inside
        its connect into a ConnectionError, which the loop takes for a Redis outage and goes round again; the
        flag ends the loop whatever the client made of the cancellation."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=0.5)
        if not task.cancelled() and task.exception() is not None:
            log.warning("the archiver's task ended with %r", task.exception())

    async def _run(self) -> None:
        lease = self._r.lock(self._k.archive_lease(), timeout=LEASE_S, blocking=False)
        held = False
        while not self._stopping:
            try:
                if held:
                    await lease.reacquire()
                else:
                    held = await lease.acquire()
                    self._next_full = 0.0   # a new holder looks at everything once
                if held:
                    self._lease = lease
                    if not self.migrated:
                        await asyncio.to_thread(self.db.migrate)
                        self.migrated = True
                    await self.pass_once()
            except LockError:
                held = False
                self._lease = None
            except (RedisError, SQLAlchemyError, OSError) as exc:
                log.warning("archive pass skipped (tried again in %.0f s): %s", self._interval, exc)
            except Exception:
                log.exception("archive pass failed")
            if self._stopping:
                return
            await asyncio.sleep(self._interval * random.uniform(0.75, 1.25))

    # -- one pass ------------------------------------------------------------------------------------------

    async def pass_once(self, full: bool | None = None) -> int:
        """Archive what the index names (and every account, when a full scan is due); rows archived."""
        now = time.monotonic()
        if full is None:
            full = now >= self._next_full
        if full:
            self._next_full = now + self._full_scan_s
            return await self._every_account()
        return await self._indexed()

    async def _indexed(self) -> int:
        index, now_ms = self._k.archive_index(), int(time.time() * 1000)
        done, offset = 0, 0
        while True:
            # redis-py types withscores pairs loosely: (member bytes, score float) here
            rows: list[tuple[bytes, float]] = await self._r.zrange(  # type: ignore[assignment]
                index, offset, offset + INDEX_SCAN - 1, withscores=True)
            if not rows:
                return done
            aids = [a.decode() for a, _ in rows]
            done += await self.drain(aids)
            # accounts no longer active (their window is over) and now drained leave the index, unless
            # an admission wrote a later window meanwhile (ZREM only at the score read)
            over = [(a, s) for a, s in rows if s < now_ms]
            for aid, score in over:
                await self._r.eval(_UNINDEX, 1, index, aid, repr(score))
            offset += len(rows) - len(over)

    async def _every_account(self) -> int:
        done, start = 0, 0
        while True:
            members: list[bytes] = await self._r.zrange(  # type: ignore[assignment]  # redis-py types members loosely
                self._k.accounts(), start, start + INDEX_SCAN - 1)
            aids = [a.decode() for a in members]
            if not aids:
                return done
            done += await self.drain(aids)
            start += len(aids)

    async def drain(self, aids: list[str]) -> int:
        """Archive every entry of these accounts' streams up to now; rows archived."""
        done = 0
        for i in range(0, len(aids), CHUNK_ACCOUNTS):
            pending = aids[i:i + CHUNK_ACCOUNTS]
            cursors = await asyncio.to_thread(self.db.cursors_of, pending)
            while pending:
                replies, count = await self._read(pending, cursors)
                if self._lease is not None:
                    await self._lease.reacquire()   # a pass over a long backlog keeps the lease (LockError if lost)
                # rows built and written in a thread: thousands of entries never hold the event loop
                batch, full = await asyncio.to_thread(self._store, pending, replies, count)
                if batch.cursors:
                    cursors.update(batch.cursors)
                    done += len(batch.history) + len(batch.ledger)
                    await self._trim(batch.cursors)   # as it goes: one approximate XTRIM drops ≤ 10,000 entries
                pending = full
            await self._trim(cursors)   # and what has aged past the window since
        self.archived += done
        return done

    async def _read(self, aids: list[str], cursors: dict[tuple[str, str], StreamId]) -> tuple[list[Any], int]:
        """The entries after each cursor (both streams of each account, in turn), and how many a stream
        gives at most in this read."""
        # about `batch` entries per read in all, however many accounts share it (memory stays bounded)
        count = max(50, self._batch // len(aids))
        pipe = self._r.pipeline(transaction=False)
        for aid in aids:
            for stream, key in (("hist", self._k.history(aid)), ("ledger", self._k.ledger(aid))):
                after = cursors.get((aid, stream))
                pipe.xrange(key, min=f"({format_id(after)}" if after else "-", max="+", count=count)
        return await pipe.execute(), count

    def _store(self, aids: list[str], replies: list[Any], count: int) -> tuple[Batch, list[str]]:
        """(In a thread.) The rows of what was read, written with their cursors in one transaction; and the
        accounts that may have more."""
        batch = Batch([], [], {})
        more: list[str] = []
        for n, aid in enumerate(aids):
            hist, led = replies[2 * n], replies[2 * n + 1]
            for eid, f in hist:
                batch.history.append(_history_row(aid, eid, f))
            for eid, f in led:
                batch.ledger.append(_ledger_row(aid, eid, f))
            if hist:
                batch.cursors[(aid, "hist")] = parse_id(hist[-1][0])
            if led:
                batch.cursors[(aid, "ledger")] = parse_id(led[-1][0])
            if len(hist) >= count or len(led) >= count:
                more.append(aid)
        if batch.cursors:
            self.db.append(batch)
        return batch, more

    async def _trim(self, cursors: dict[tuple[str, str], StreamId]) -> None:
        """Drop from Redis the history that is archived and older than the window Redis keeps."""
        cutoff = (int(time.time() * 1000) - self._keep_ms, 0)
        todo = [(aid, min((ms, seq + 1), cutoff)) for (aid, stream), (ms, seq) in cursors.items() if stream == "hist"]
        if todo:
            pipe = self._r.pipeline(transaction=False)
            for aid, upto in todo:
                pipe.xtrim(self._k.history(aid), minid=format_id(upto), approximate=True)
            await pipe.execute()


# remove an account from the index only at the score the archiver read (an admission may have moved it on)
_UNINDEX = """
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if s and tonumber(s) == tonumber(ARGV[2]) then return redis.call('ZREM', KEYS[1], ARGV[1]) end
return 0
"""


def _history_row(aid: str, eid: bytes, f: dict[bytes, bytes]) -> dict[str, Any]:
    ms, seq = parse_id(eid)
    data = f.get(b"d", b"{}")
    try:
        d = orjson.loads(data)
    except orjson.JSONDecodeError:
        d = {}
    return {"account_id": aid, "ms": ms, "seq": seq, "request_id": f[b"rid"].decode(), "t_ms": int(f[b"t"]),
            "cost": int(f[b"cost"]), "key_id": str(d.get("key", ""))[:64], "model": str(d.get("model", ""))[:200],
            "status": int(d.get("status", 0) or 0), "data": data.decode()}


def _ledger_row(aid: str, eid: bytes, f: dict[bytes, bytes]) -> dict[str, Any]:
    ms, seq = parse_id(eid)
    s = {k.decode(): v.decode() for k, v in f.items()}
    return {"account_id": aid, "ms": ms, "seq": seq, "kind": s.get("kind", ""), "amount": int(s.get("amount", 0)),
            "credited": int(s.get("credited", 0)), "operation_id": s.get("op", ""), "reason": s.get("reason", ""),
            "actor": s.get("actor", ""), "t_ms": int(s.get("t", ms))}
