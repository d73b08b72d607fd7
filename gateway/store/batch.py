"""Lua calls that fall in the same event-loop iteration go to Redis as one pipeline.

Measured (issue 6): redis-py EVALSHA costs ~80 µs of CPU per call one by one and ~16 µs per call
pipelined. Under load, admissions and settlements of concurrent requests pile up in the same loop
iteration, so batching them costs no latency and most of the CPU. The batch goes out through the
small RESP client (gateway.store.resp), which packs and parses without redis-py's per-command overhead.

When nothing is in flight the call is written at once (Redis would otherwise sit idle until the end of
the iteration), and a batch goes out as soon as it holds MAX_BATCH calls: Redis answers a batch only
when it has run all of it, so smaller pieces let it work while we parse the rest of a wave. Measured at
64 connections: delay 0, 6,000 → 9,100 req/s; delay 50 ms, 94 % → 96 % of direct, p99 60.9 → 59 ms.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable
from typing import Any

from gateway.store.resp import RespClient, RespError, pack

MAX_BATCH = 16  # a wave of admissions goes out in pieces, so Redis answers the first while we parse the rest


class ScriptBatcher:
    def __init__(self, client: RespClient, sources: dict[str, str]) -> None:
        self._client = client
        self._sources = sources
        self._shas = {name: hashlib.sha1(src.encode()).hexdigest().encode() for name, src in sources.items()}
        self._packed: list[bytes] = []
        self._futures: list[asyncio.Future[Any]] = []
        self._scheduled = False

    async def call(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """EVALSHA of script `name`; its reply, or the Redis error raised."""
        return await self.submit(name, keys, args)

    def submit(self, name: str, keys: list[str], args: list[Any], now: bool = False) -> Awaitable[Any]:
        """Queue (or send) the call now; the returned awaitable gives its reply. Lets the caller work
        while Redis runs the script. The awaitable must be awaited. `now`: handed to the connection
        before this returns, with whatever is queued ahead of it (the order is kept)."""
        command = ["EVALSHA", self._shas[name], len(keys), *keys, *args]
        return self._reply(name, command, self.send(command, now))

    def send(self, command: list[Any], now: bool = False) -> asyncio.Future[Any]:
        """Any command, with the calls of this loop iteration; the future gets its reply (an error reply as
        a RespError value) and must be awaited."""
        loop = self._client.loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._packed and self._client.idle():
            # nothing in flight: Redis would wait for us, so send now rather than at the end of the iteration
            self._client.send_packed(pack(command), [future])
        else:
            self._packed.append(pack(command))
            self._futures.append(future)
            if now or len(self._packed) >= MAX_BATCH:
                self._send_pending()  # the flush already scheduled sends what comes after
            elif not self._scheduled:
                self._scheduled = True
                loop.call_soon(self._flush)
        return future

    async def _reply(self, name: str, command: list[Any], future: asyncio.Future[Any]) -> Any:
        result = await future
        if isinstance(result, RespError):
            if str(result).startswith("NOSCRIPT"):  # a restarted or flushed Redis forgot it: load, go again
                await self._client.pipeline([["SCRIPT", "LOAD", self._sources[name]]])
                result = (await self._client.pipeline([command]))[0]
            if isinstance(result, RespError):
                raise result
        return result

    def _flush(self) -> None:
        """End of the loop iteration: send what is queued."""
        self._scheduled = False
        self._send_pending()

    def _send_pending(self) -> None:
        if not self._packed:
            return
        packed, futures = self._packed, self._futures
        self._packed, self._futures = [], []
        self._client.send_packed(b"".join(packed) if len(packed) > 1 else packed[0], futures)

    async def connect(self) -> None:
        await self._client.connect()

    @property
    def client(self) -> RespClient:
        return self._client

    async def close(self) -> None:
        await self._client.close()
