"""Admission and settlement: one Lua call each way (admit.lua, settle.lua)."""

from __future__ import annotations

import time
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
from redis.asyncio import Redis

from gateway.store.keys import KeySpace
from gateway.store.scripts import Scripts

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


async def _settled(pending: Awaitable[int]) -> bool:
    return bool(await pending)


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
    def __init__(self, client: Redis, keys: KeySpace, *, reservation_ttl_ms: int = 15 * 60 * 1000,
                 history_max: int = 100_000) -> None:
        self._scripts = Scripts(client)
        self._k = keys
        self._ttl = reservation_ttl_ms
        self._history_max = history_max
        self._key_cache: dict[Caller, list[str]] = {}

    async def connect(self) -> None:
        """Open the Redis connections at start-up, so that no call waits for a connect (and the order in
        which a worker writes settlements and admissions is the order Redis runs them from the first on)."""
        await self._scripts.connect()

    async def close(self) -> None:
        await self._scripts.close()

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
        pending = self._scripts.admit(
            keys=self._keys(caller)[:6],
            args=[now_ms, request_id, caller.key_id, model, reserve, month, self._ttl, self._history_max, endpoint,
                  self._k.key_prefix(caller.account_id)])
        return _admission(pending)

    def settle(self, caller: Caller, request_id: str, cost: int, tokens: int, reserved: bool,
               fields: dict[str, str | int], now_ms: int | None = None) -> Awaitable[bool]:
        """Charge `cost` nano-USD and record the request. Written to Redis before this returns (unless
        the connection is being reopened); the awaitable (which must be awaited) says False if the
        request was already settled."""
        now_ms = now_ms or int(time.time() * 1000)
        month, day = month_and_day(now_ms)
        args: list[str | int | bytes] = [now_ms, request_id, cost, month, day, tokens, self._history_max,
                                         "1" if reserved else "0", orjson.dumps(fields)]
        return _settled(self._scripts.settle(keys=self._keys(caller), args=args))
