"""The Lua scripts, sent by SHA through one batcher per client (loaded on first NOSCRIPT). On a Redis
Cluster the batcher is one per master (gateway.store.cluster), chosen here once: a single Redis pays nothing
for it."""

from __future__ import annotations

from collections.abc import Awaitable
from importlib.resources import files
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from gateway.store.batch import ScriptBatcher
from gateway.store.cluster import ClusterBatcher
from gateway.store.connection import AsyncStore
from gateway.store.replicated import NEVER, ReplicaAcks, check_acknowledged, connected_replicas, wait_commands
from gateway.store.resp import RespClient, RespError

NAMES = ("admit", "settle", "credit", "sweep", "unindex")


def _source(name: str) -> str:
    return files("gateway.store").joinpath(f"{name}.lua").read_text(encoding="utf-8")


class Scripts:
    def __init__(self, client: AsyncStore, connect_timeout_ms: int = 1000, command_timeout_ms: int = 2000) -> None:
        sources = self._sources = {name: _source(name) for name in NAMES}
        self._replicas: dict[int, int] = {}   # connected replicas of each master (by a slot it holds; 0: one Redis)
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
        """The credit script; with `acks`, answered only once replicas confirm it (gateway.store.replicated).
        In auto mode a master known to have no replica is not sent a WAIT (it would block for its whole
        timeout): the INFO that follows every credit keeps what is known of each master up to date."""
        if acks.required == 0:
            return await self._batcher.call("credit", keys, args)
        where = key_slot(keys[0].encode()) if isinstance(self._batcher, ClusterBatcher) else 0
        if acks.required < 0 and where not in self._replicas:  # auto: ask once whether this master has any
            info = (await self._pipeline(keys[0], [["INFO", "replication"]]))[0]
            self._replicas[where] = 0 if isinstance(info, RespError) else connected_replicas(info)
        wait = acks.required > 0 or self._replicas[where] > 0
        # on one connection, in one write: the WAIT after it covers this write (EVAL: rare, no NOSCRIPT turn)
        script = ["EVAL", self._sources["credit"], len(keys), *keys, *args]
        replies = await self._pipeline(keys[0], [script, *(wait_commands(acks) if wait else [["INFO", "replication"]])])
        if not isinstance(replies[-1], RespError):
            self._replicas[where] = connected_replicas(replies[-1])
        if wait:
            return check_acknowledged(replies, acks)
        if isinstance(replies[0], RespError):
            raise replies[0]
        return replies[0]

    async def _pipeline(self, key: str, commands: list[list[Any]]) -> list[Any]:
        """`commands` on one connection (of the master that holds `key`, on a cluster)."""
        if isinstance(self._batcher, ClusterBatcher):
            return await self._batcher.pipeline_for(key, commands)
        return await self._batcher.client.pipeline(commands)

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
