"""Admission and settlement: one Lua call each way (admit.lua, settle.lua); what Redis does not confirm
is kept and sent again (gateway.store.settlements), and expired reservations are released everywhere
(sweep.lua, driven by gateway.store.sweeper)."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from gateway.store.connection import AsyncStore
from gateway.store.journal import Journal, Settlement
from gateway.store.keys import KeySpace
from gateway.store.resp import STORE_ERRORS, RespError
from gateway.store.scripts import Scripts
from gateway.store.settlements import Unconfirmed

# what an admission code means for the client (seed §14)
ADMIT_OK = 0
REJECTIONS = {
    1: (401, "invalid token"),
    2: (401, "token revoked"),
    3: (403, "account is blocked"),
    4: (403, "model is not allowed for this key"),
    5: (429, "rate limit exceeded: too many requests per minute for this key"),
    6: (429, "rate limit exceeded: too many tokens per minute for this key"),
    7: (403, "insufficient balance: top up your account"),
    8: (403, "monthly limit exceeded for this key"),
}
SWEEP_BATCH = 100       # accounts per index read
SWEEP_RECORDS = 1000    # reservation records per account and sweep.lua call


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: resolved from the bt_ token (the secret itself is never kept)."""

    account_id: str
    key_id: str


@dataclass(frozen=True, slots=True)
class Admission:
    code: int
    rpm_limit: int
    rpm_remaining: int
    tpm_limit: int
    tpm_remaining: int
    reset_ms: int


async def _admission(pending: Awaitable[list[int]]) -> Admission:
    return Admission(*map(int, await pending))


_DAY_MS = 86_400_000
_day_cache: tuple[int, tuple[str, str]] = (-1, ("", ""))


def month_and_day(now_ms: int) -> tuple[str, str]:
    """("YYYY-MM", "YYYY-MM-DD") in UTC; formatted once a day, not once a request."""
    global _day_cache
    day = now_ms // _DAY_MS
    if _day_cache[0] != day:
        d = datetime.fromtimestamp(day * 86_400, tz=UTC)
        _day_cache = (day, (d.strftime("%Y-%m"), d.strftime("%Y-%m-%d")))
    return _day_cache[1]


class Ledger:
    def __init__(self, client: AsyncStore, keys: KeySpace, *, reservation_ttl_ms: int = 15 * 60 * 1000,
                 history_max: int = 100_000, late_settlement_window_ms: int = 7 * _DAY_MS,
                 connect_timeout_ms: int = 1000, command_timeout_ms: int = 2000,
                 max_unconfirmed: int = 100_000, archive_index: bool = False) -> None:
        self._scripts = Scripts(client, connect_timeout_ms, command_timeout_ms)
        self._resp = self.resp = self._scripts.resp   # `resp.down`: the circuit breaker, read per request
        self._k = keys
        self._ttl = reservation_ttl_ms
        self._late_window = late_settlement_window_ms
        self._history_max = history_max
        self._archive = archive_index   # an archiver drains the history (it is told which accounts to look at)
        self._key_cache: dict[Caller, list[str]] = {}
        # the global index of accounts with reservations is written once per account and window, not per call
        self._index_window = min(reservation_ttl_ms, 60_000)
        self._indexed: dict[str, int] = {}
        self.unconfirmed = Unconfirmed(self._resend, self._scripts.available, max_unconfirmed, late_settlement_window_ms)

    async def connect(self) -> None:
        """Open the Redis connections at start-up, so that no call waits for a connect (and the order in
        which a worker writes settlements and admissions is the order Redis runs them from the first on)."""
        await self._scripts.connect()

    def open_journal(self, folder: str | Path) -> None:
        """Keep unconfirmed settlements on disk from now on, and replay those dead processes left there."""
        journal = Journal(folder, scope=hashlib.sha1(self._resp.address.encode()).hexdigest()[:10])
        journal.open()
        self.unconfirmed.journal = journal
        self.unconfirmed.adopt(journal.adopt_orphans())

    def adopt_orphans(self) -> None:
        """Replay the journals of processes that died since we last looked."""
        if self.unconfirmed.journal is not None:
            self.unconfirmed.adopt(self.unconfirmed.journal.adopt_orphans())

    async def close(self, drain_s: float = 0.0) -> None:
        """Give Redis up to `drain_s` to confirm what is unconfirmed; the rest stays in the journal."""
        if drain_s > 0 and len(self.unconfirmed) and not self._resp.down:
            await self.unconfirmed.drain(drain_s)
        await self.unconfirmed.close()
        await self._scripts.close()

    @property
    def down(self) -> bool:
        """Redis is known to be unreachable (the circuit breaker is open): calls fail at once."""
        return self._resp.down

    def _keys(self, c: Caller) -> list[str]:
        """The seven Redis keys a call touches, built once per (account, key) and kept (bounded)."""
        keys = self._key_cache.get(c)
        if keys is None:
            k, a = self._k, c.account_id
            keys = [k.account(a), k.key(a, c.key_id), k.reservations(a), k.reservation_queue(a),
                    k.rate(a, c.key_id), k.history(a), k.daily(a)]
            if len(self._key_cache) >= 100_000:
                self._key_cache.clear()
            self._key_cache[c] = keys
        return keys

    def admit(self, caller: Caller, request_id: str, model: str, endpoint: str, reserve: int,
              now_ms: int | None = None) -> Awaitable[Admission]:
        """Send the admission now; the returned awaitable (which must be awaited) gives Redis's answer."""
        now_ms = now_ms or int(time.time() * 1000)
        month, _ = month_and_day(now_ms)
        aid = caller.account_id
        pending = self._scripts.admit(
            keys=self._keys(caller)[:6],
            args=[now_ms, request_id, caller.key_id, model, reserve, month, self._ttl, self._history_max, endpoint,
                  self._k.key_prefix(aid), self._late_window])
        if now_ms < self._indexed.get(aid, 0):
            return _admission(pending)
        return self._indexed_admission(pending, aid, now_ms)

    async def _indexed_admission(self, pending: Awaitable[list[int]], aid: str, now_ms: int) -> Admission:
        """The admission, with the account put in the sweeper's index: every reservation this process makes
        for it in the next window is due by the score written (GT: the latest window of any process wins,
        so the sweeper never looks at an account before all windows written for it are over)."""
        if len(self._indexed) >= 100_000:
            self._indexed.clear()
        self._indexed[aid] = now_ms + self._index_window
        due = now_ms + self._index_window + self._ttl
        index = self._scripts.send(["ZADD", self._k.reservation_index(), "GT", due, aid])
        # the archiver's index (gateway.archive.archiver): the same window, the same once a minute
        archive = self._scripts.send(["ZADD", self._k.archive_index(), "GT", due, aid]) if self._archive else None
        try:
            return Admission(*map(int, await pending))
        finally:
            for sent in (index, archive):
                try:
                    if sent is not None and isinstance(await sent, RespError):
                        self._indexed.pop(aid, None)
                except STORE_ERRORS:
                    self._indexed.pop(aid, None)  # written again with the next admission

    def settle(self, caller: Caller, request_id: str, cost: int, tokens: int, reserved: bool,
               fields: dict[str, str | int], now_ms: int | None = None) -> Awaitable[bool]:
        """Charge `cost` nano-USD and record the request. Written to Redis before this returns (unless
        the connection is being reopened); the awaitable (which must be awaited) says False if the
        request was already settled. A settlement Redis does not confirm (in time) is kept and sent again
        until it does (and journaled meanwhile): the awaitable then says True."""
        now_ms = now_ms or int(time.time() * 1000)
        month, day = month_and_day(now_ms)
        args: list[str | int | bytes] = [now_ms, request_id, cost, month, day, tokens, self._history_max,
                                         "1" if reserved else "0", orjson.dumps(fields)]
        keys = self._keys(caller)
        return self._settled(self._scripts.settle(keys=keys, args=args), keys, args)

    def settle_later(self, caller: Caller, request_id: str, cost: int, fields: dict[str, str | int]) -> None:
        """Queue a settlement without a first attempt (Redis is known to be failing): for an admission
        whose outcome is unknown, a zero-cost settlement releases what it reserved if it ran, and is a
        no-op if it did not."""
        now_ms = int(time.time() * 1000)
        month, day = month_and_day(now_ms)
        args = [now_ms, request_id, cost, month, day, 0, self._history_max, "1", orjson.dumps(fields)]
        self.unconfirmed.add(Settlement.of(self._keys(caller), args), "admission not confirmed")

    async def _settled(self, pending: Awaitable[int], keys: list[str], args: list[Any]) -> bool:
        try:
            return bool(await pending)
        except (*STORE_ERRORS, asyncio.CancelledError) as exc:
            # applied or not, nobody knows: send it again (idempotent) until Redis says
            self.unconfirmed.add(Settlement.of(keys, args), str(exc) or type(exc).__name__)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return True

    def _resend(self, s: Settlement) -> Awaitable[Any]:
        return self._scripts.settle(keys=list(s.keys), args=list(s.args))

    async def sweep_due(self, now_ms: int | None = None) -> int:
        """Release the expired reservations of every account the index says is due (reservations whose
        process died and whose account does not call again). Returns how many were released."""
        now_ms = now_ms or int(time.time() * 1000)
        index, k = self._k.reservation_index(), self._k
        released = 0
        for _ in range(50):  # bounded per sweep; the next one goes on
            due = await self._scripts.send(["ZRANGEBYSCORE", index, "-inf", now_ms, "WITHSCORES",
                                            "LIMIT", 0, SWEEP_BATCH])
            if isinstance(due, RespError):
                raise due
            for aid_raw, score in zip(due[::2], due[1::2], strict=True):
                aid = aid_raw.decode()
                n, first = await self._scripts.sweep(
                    [k.account(aid), k.reservations(aid), k.reservation_queue(aid)],
                    [now_ms, k.key_prefix(aid), self._late_window, SWEEP_RECORDS])
                released += n
                # look again when the earliest record left is due, but at the latest one window on, so
                # that any admission after now (ZADD GT) still moves it
                again = -1 if first < 0 else min(first, now_ms + self._index_window + self._ttl)
                await self._scripts.unindex([index], [aid, score, again])
            if len(due) < 2 * SWEEP_BATCH:
                break
        return released
