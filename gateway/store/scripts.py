"""The Lua scripts, sent by SHA through one batcher per client (loaded on first NOSCRIPT). On a Redis
Cluster the batcher is one per master (gateway.store.cluster), chosen here once: a single Redis pays nothing
for it."""

from __future__ import annotations

from collections.abc import Awaitable
from importlib.resources import files
from typing import Any

from redis.asyncio.cluster import RedisCluster

from gateway.store.batch import ScriptBatcher
from gateway.store.cluster import ClusterBatcher
from gateway.store.connection import AsyncStore
from gateway.store.replicated import NEVER, ReplicaAcks, check_acknowledged, wait_commands
from gateway.store.resp import RespClient

NAMES = ("admit", "settle", "credit", "sweep", "unindex")


def _source(name: str) -> str:
    return files("gateway.store").joinpath(f"{name}.lua").read_text(encoding="utf-8")


class Scripts:
    def __init__(self, client: AsyncStore, connect_timeout_ms: int = 1000, command_timeout_ms: int = 2000) -> None:
        sources = self._sources = {name: _source(name) for name in NAMES}
        self._batcher: ScriptBatcher | ClusterBatcher
        if isinstance(client, RedisCluster):
            self._batcher = ClusterBatcher.like(client, sources, connect_timeout_ms=connect_timeout_ms,
                                                command_timeout_ms=command_timeout_ms)
        else:
            resp = RespClient.like(client, connect_timeout_ms=connect_timeout_ms,
                                   command_timeout_ms=command_timeout_ms)
            self._batcher = ScriptBatcher(resp, sources)

    def admit(self, keys: list[str], args: list[Any]) -> Awaitable[Any]:
        """Sent now, answered when awaited."""
        return self._batcher.submit("admit", keys, args)

    def settle(self, keys: list[str], args: list[Any]) -> Awaitable[Any]:
        """Written at once, not at the end of the loop iteration: a settlement is on the wire before its
        answer; answered when awaited."""
        return self._batcher.submit("settle", keys, args, now=True)

    async def credit(self, keys: list[str], args: list[Any], acks: ReplicaAcks = NEVER) -> Any:
        """The credit script; with `acks`, answered only once replicas confirm it (gateway.store.replicated)."""
        if acks.required == 0:
            return await self._batcher.call("credit", keys, args)
        # on one connection, in one write: the WAIT after it covers this write (EVAL: rare, no NOSCRIPT turn)
        commands = [["EVAL", self._sources["credit"], len(keys), *keys, *args], *wait_commands(acks)]
        if isinstance(self._batcher, ClusterBatcher):
            replies = await self._batcher.pipeline_for(keys[0], commands)
        else:
            replies = await self._batcher.client.pipeline(commands)
        return check_acknowledged(replies, acks)

    async def sweep(self, keys: list[str], args: list[Any]) -> Any:
        return await self._batcher.call("sweep", keys, args)

    async def unindex(self, keys: list[str], args: list[Any]) -> Any:
        return await self._batcher.call("unindex", keys, args)

    def send(self, command: list[Any]) -> Awaitable[Any]:
        """A plain command, batched with the scripts; its reply (an error reply as a RespError value)."""
        return self._batcher.send(command)

    @property
    def resp(self) -> RespClient | ClusterBatcher:
        """The client under the scripts (its `down`: the circuit breaker is open, calls fail at once; its
        `address`: which Redis)."""
        return self._batcher.client

    async def available(self) -> None:
        """Return once calls go through again."""
        await self._batcher.client.available()

    async def connect(self) -> None:
        await self._batcher.connect()

    async def close(self) -> None:
        await self._batcher.close()
