"""Settlements Redis has not confirmed: kept in memory and in the journal, and sent again until Redis
confirms them.

A settlement whose reply does not come (Redis down, restarting, frozen past the command deadline, the
circuit breaker open, the request's task cancelled) may or may not have been applied. settle.lua is
idempotent per request id, so it is simply sent again, exactly as first sent: the answer the client already
has ends up charged exactly once either way. Retries run in one background task (started when the first
unconfirmed settlement arrives, gone when none is left), with exponential backoff, waiting for the
breaker to close. Memory is bounded: at `limit` unconfirmed settlements the gateway stops admitting paid
calls (503) until Redis confirms some — a settlement needs an admission first, so none is ever dropped.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.store.journal import Journal, Settlement
from gateway.store.resp import STORE_ERRORS, RespError

log = logging.getLogger("gateway.settlements")

FIRST_DELAY_S = 0.2
MAX_DELAY_S = 5.0
BATCH = 256


class Unconfirmed:
    def __init__(self, send: Callable[[Settlement], Awaitable[Any]], available: Callable[[], Awaitable[None]],
                 limit: int, late_window_ms: int) -> None:
        self._send = send
        self._available = available
        self.limit = limit
        self._late_window_ms = late_window_ms
        self.journal: Journal | None = None
        self.pending: dict[str, Settlement] = {}   # by request id; read (len) by every admission
        self._task: asyncio.Task[None] | None = None
        self._idle: asyncio.Event | None = None

    def __len__(self) -> int:
        return len(self.pending)

    @property
    def full(self) -> bool:
        return len(self.pending) >= self.limit

    def add(self, s: Settlement, reason: str) -> None:
        """Keep `s` (written to the journal now) and send it again until Redis confirms it."""
        if s.request_id in self.pending:
            return
        self.pending[s.request_id] = s
        log.warning("settlement of %s (%d nano-USD) not confirmed (%s): kept and sent again until Redis confirms",
                    s.request_id, s.cost, reason)
        if self.journal is not None:
            try:
                self.journal.append([s])
            except OSError as exc:  # kept in memory all the same; said loudly, since a crash would lose it
                log.critical("cannot write settlement %s to the journal %s: %s", s.request_id, self.journal.path, exc)
        self._kick()

    def adopt(self, entries: list[Settlement]) -> None:
        """Settlements from the journal of a dead process (already copied into ours): replay them."""
        for s in entries:
            self.pending.setdefault(s.request_id, s)
        if entries:
            self._kick()

    def _kick(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._retry())

    async def _retry(self) -> None:
        delay = FIRST_DELAY_S
        try:
            while self.pending:
                try:  # while the breaker is open nothing would be sent: wait for it (and try now and then)
                    await asyncio.wait_for(self._available(), MAX_DELAY_S)
                except TimeoutError:
                    pass
                batch = list(self.pending.values())[:BATCH]
                results = await asyncio.gather(*(self._send(s) for s in batch), return_exceptions=True)
                failed = 0
                for s, result in zip(batch, results, strict=True):
                    if isinstance(result, BaseException):
                        failed += 1
                        if not isinstance(result, STORE_ERRORS) or isinstance(result, RespError):
                            log.error("settlement of %s failed again: %r", s.request_id, result)
                        continue
                    del self.pending[s.request_id]
                    self._confirmed(s, result)
                self._compact()
                if failed:
                    await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                    delay = min(delay * 2, MAX_DELAY_S)
                else:
                    delay = FIRST_DELAY_S
        finally:
            self._task = None
            if not self.pending and self._idle is not None:
                self._idle.set()

    def _compact(self) -> None:
        journal = self.journal
        if journal is None:
            return
        try:
            if not self.pending:
                journal.clear()
            elif journal.lines > 2 * len(self.pending) + 1000:
                journal.rewrite(list(self.pending.values()))
        except OSError as exc:
            log.error("cannot compact the journal %s: %s", journal.path, exc)

    def _confirmed(self, s: Settlement, result: Any) -> None:
        if result == 1:
            log.warning("settlement of %s confirmed: %d nano-USD charged", s.request_id, s.cost)
        elif time.time() * 1000 - s.at_ms > self._late_window_ms:
            log.error("settlement of %s (%d nano-USD, %s) was replayed after the late-settlement window: Redis no "
                      "longer knows whether it was charged, and did not charge it", s.request_id, s.cost, s.keys[0])
        else:
            log.info("settlement of %s had already been applied", s.request_id)

    async def drain(self, timeout: float) -> bool:
        """Wait up to `timeout` s for every settlement to be confirmed (at shutdown); True if none is left."""
        if self.pending:
            self._kick()
            self._idle = asyncio.Event()
            try:
                await asyncio.wait_for(self._idle.wait(), timeout)
            except TimeoutError:
                pass
        return not self.pending

    async def close(self) -> None:
        """Stop retrying; what is still unconfirmed stays in the journal for the next start."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.journal is not None:
            if self.pending:
                log.warning("%d unconfirmed settlement(s) stay in %s: replayed at the next start",
                            len(self.pending), self.journal.path)
            self.journal.close(keep=bool(self.pending))
            self.journal = None
