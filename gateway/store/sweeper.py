"""A background task per process: every `interval` (± a quarter, so that processes spread out) it releases
the expired reservations of every account — those whose request died with its gateway process — and
takes over the settlement journals of processes that died on this host. Idempotent: several processes
sweeping the same account release each reservation once."""

from __future__ import annotations

import asyncio
import logging
import random

from gateway.store.ledger import Ledger
from gateway.store.resp import STORE_ERRORS

log = logging.getLogger("gateway.sweeper")


class Sweeper:
    def __init__(self, ledger: Ledger, interval_s: float) -> None:
        self._ledger = ledger
        self._interval = interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval * random.uniform(0.75, 1.25))
            await self.sweep()

    async def sweep(self) -> int:
        """One pass; the number of reservations released."""
        try:
            self._ledger.adopt_orphans()
        except OSError as exc:
            log.error("cannot read the settlement journals of dead processes: %s", exc)
        if self._ledger.down:
            return 0
        try:
            released = await self._ledger.sweep_due()
        except STORE_ERRORS as exc:
            log.info("reservation sweep skipped: %s", exc)
            return 0
        except Exception:
            log.exception("reservation sweep failed")
            return 0
        if released:
            log.warning("released %d expired reservation(s) of calls whose process died", released)
        return released
