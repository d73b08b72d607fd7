"""gateway.archive.archiver's background task: it stops when told to, whatever its Redis client does."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

from redis.exceptions import ConnectionError as RedisConnectionError

from gateway.archive.archiver import Archiver
from gateway.archive.database import ArchiveDB, engine_url
from gateway.store.keys import KeySpace


class _Lock:
    """A lease whose acquire waits on a Redis that is gone and, like redis-py's connect on some paths, turns the
    cancellation it receives into a ConnectionError."""

    async def acquire(self) -> bool:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise RedisConnectionError("Error connecting to 127.0.0.1:1 (cancelled)") from None
        return False

    async def reacquire(self) -> bool:
        return await self.acquire()


class _GoneRedis:
    def lock(self, *args: object, **kwargs: object) -> _Lock:
        return _Lock()


def test_stop_returns_even_when_the_redis_client_swallows_the_cancellation(tmp_path: Path) -> None:
    """SIGTERM to `gateway archive run` whose Redis is gone: before, the loop caught the ConnectionError the
    cancellation became and went round again, so stop() never returned and the process outlived its gateway."""
    archiver = Archiver(_GoneRedis(), KeySpace("t"), ArchiveDB(engine_url("", tmp_path)), interval_s=0.05)  # type: ignore[arg-type]

    async def go() -> None:
        archiver.start()
        await asyncio.sleep(0.1)
        await archiver.stop()

    # in a thread of its own, so that a stop that never returns fails the test instead of hanging it
    runner = threading.Thread(target=asyncio.run, args=(go(),), daemon=True)
    started = time.monotonic()
    runner.start()
    runner.join(10)
    assert not runner.is_alive(), "Archiver.stop() did not return"
    assert time.monotonic() - started < 5
