"""The hot path's Redis client on a Redis Cluster: the same pipelined RESP client and batching, once per master.

Chosen once, when the scripts are set up (gateway.store.scripts); on a single Redis nothing here runs. A call
goes to the master of its first key's slot: every script's keys carry the account's hash tag, so the first
key names the slot of all of them (crc16 over the tag, `redis.crc.key_slot`, remembered per key). Per master:
its own connections, batches, deadlines and circuit breaker (gateway.store.resp), so a master that is down
fails at once only the calls of the accounts it serves.

The slot map comes from `CLUSTER SLOTS` (Redis 6.2 and 7) at connect, and again in the background after a
redirect or a lost connection. Redirects are the slow path: MOVED → the slot is the named node's from now on,
the call goes there; ASK (the slot is moving and its keys are already on the target) → ASKING and the call on
one connection of the target; TRYAGAIN (a script whose keys are not all on one side of a moving slot) and
CLUSTERDOWN (a node that has just restarted and not yet heard from the others, a failover under way) → again
after a short pause, starting from the slot's owner, until the command deadline; NOSCRIPT → SCRIPT LOAD on
that node, and again. Anything else (CROSSSLOT, a script's own error) is the answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import Counter
from collections.abc import Awaitable
from typing import Any
from urllib.parse import quote

from redis.crc import key_slot

from gateway.store.batch import ScriptBatcher
from gateway.store.resp import RespClient, RespConnectionError, RespError, StoreUnavailable

log = logging.getLogger("gateway.redis")

SLOTS = 16384
MAX_STEPS = 64          # redirects and retries of one call (TRYAGAIN is also bounded by the command deadline)
REFRESH_EVERY_S = 1.0   # the slot map is read again at most this often
TRYAGAIN_FIRST_S = 0.01
TRYAGAIN_MAX_S = 0.1


class ClusterBatcher:
    """ScriptBatcher's interface over one ScriptBatcher per master; also the `resp` the ledger reads
    (`down`, `address`, `available()`)."""

    @classmethod
    def like(cls, client: Any, sources: dict[str, str], connections: int = 2, connect_timeout_ms: int = 1000,
             command_timeout_ms: int = 2000) -> ClusterBatcher:
        """For the same cluster, with the same credentials, as a redis-py RedisCluster."""
        kw = client.connection_kwargs
        # the nodes it was given (the URL's), which name the cluster; then every node it has learned of
        given = [(n.host, int(n.port)) for n in getattr(client, "startup_nodes", None) or []]
        known = [(n.host, int(n.port)) for n in client.nodes_manager.startup_nodes.values()]
        seeds = given + [a for a in known if a not in given]
        tls = bool(kw.get("ssl")) or "SSL" in getattr(kw.get("connection_class"), "__name__", "")
        return cls(seeds, sources, username=kw.get("username"), password=kw.get("password"), tls=tls,
                   connections=connections, connect_timeout_ms=connect_timeout_ms,
                   command_timeout_ms=command_timeout_ms, name=given[0] if given else None)

    def __init__(self, seeds: list[tuple[str, int]], sources: dict[str, str], *, username: str | None = None,
                 password: str | None = None, tls: bool = False, connections: int = 2,
                 connect_timeout_ms: int = 1000, command_timeout_ms: int = 2000,
                 name: tuple[str, int] | None = None) -> None:
        if not seeds:
            raise ValueError("a Redis Cluster client needs the address of at least one node")
        self._seeds = seeds
        self._sources = sources
        self._shas = {name: hashlib.sha1(src.encode()).hexdigest().encode() for name, src in sources.items()}
        scheme = "rediss" if tls else "redis"
        auth = f"{quote(username or '', safe='')}:{quote(password, safe='')}@" if password else ""
        self._url = f"{scheme}://{auth}{{}}/0"
        self._connections = connections
        self._connect_timeout_ms = connect_timeout_ms
        self._command_timeout_ms = command_timeout_ms
        self._nodes: dict[str, ScriptBatcher] = {}            # "host:port" → that master's batcher
        self._by_slot: list[ScriptBatcher | None] = [None] * SLOTS
        self._slot_of: dict[str, int] = {}
        self._refresh: asyncio.Task[bool] | None = None
        self._refreshed_at = float("-inf")
        self._retiring: dict[ScriptBatcher, asyncio.Task[None]] = {}   # masters no more, closed a bit later
        self.down = False   # read per request, as RespClient's: each master's own breaker fails its calls
        self.redirects: Counter[str] = Counter()              # MOVED, ASK, TRYAGAIN, NOSCRIPT seen
        # which Redis (the settlement journal's files carry its hash): the node REDIS_URL names
        host, port = name or seeds[0]
        self.address = f"cluster:{host}:{port}"

    # -- calls ------------------------------------------------------------------------------------------

    def _slot(self, key: str) -> int:
        slot = self._slot_of.get(key)
        if slot is None:
            if len(self._slot_of) >= 100_000:
                self._slot_of.clear()
            slot = self._slot_of[key] = key_slot(key.encode())
        return slot

    async def call(self, name: str, keys: list[str], args: list[Any]) -> Any:
        return await self.submit(name, keys, args)

    def submit(self, name: str, keys: list[str], args: list[Any], now: bool = False) -> Awaitable[Any]:
        """As ScriptBatcher.submit: handed to the master's batcher before this returns (once the map is
        known); the awaitable raises an error reply."""
        command = ["EVALSHA", self._shas[name], len(keys), *keys, *args]
        slot = self._slot(keys[0])
        node = self._by_slot[slot]
        return self._routed(name, command, slot, None if node is None else node.send(command, now))

    def send(self, command: list[Any], now: bool = False) -> Awaitable[Any]:
        """A one-key command (its key at command[1]); the awaitable gives its reply, an error reply as a
        RespError value, as ScriptBatcher.send."""
        slot = self._slot(command[1])
        node = self._by_slot[slot]
        return self._routed("", command, slot, None if node is None else node.send(command, now))

    async def _routed(self, name: str, command: list[Any], slot: int, sent: asyncio.Future[Any] | None) -> Any:
        if sent is None:  # before the first map: read it, then send
            sent = (await self._owner(slot)).send(command)
        try:
            result = await sent
            if isinstance(result, RespError):
                result = await self._redirected(name, command, slot, result)
        except RespConnectionError:
            self._refresh_soon()  # a master gone: maybe a failover moved its slots
            raise
        if name and isinstance(result, RespError):
            raise result
        return result

    async def pipeline_for(self, key: str, commands: list[list[Any]]) -> list[Any]:
        """Several commands on one connection of the master of `key`'s slot (a write and its WAIT), in one
        write; the first command's MOVED, ASK, TRYAGAIN or CLUSTERDOWN sends them all again (to the new owner,
        or after a pause while the slot moves or a failover is under way) until the command deadline."""
        loop = asyncio.get_running_loop()
        slot, started, pause = self._slot(key), loop.time(), TRYAGAIN_FIRST_S
        replies: list[Any] = []
        for _ in range(MAX_STEPS):
            node = await self._owner(slot)
            try:
                replies = await node.client.pipeline(commands)
            except RespConnectionError:
                self._refresh_soon()
                raise
            kind, _, rest = str(replies[0]).partition(" ") if isinstance(replies[0], RespError) else ("", "", "")
            if kind == "MOVED":
                self._by_slot[slot] = self._node(rest.split(" ")[1])
                self._refresh_soon()
            elif kind in ("ASK", "TRYAGAIN", "CLUSTERDOWN") and loop.time() - started < self._command_timeout_ms / 1000:
                self._refresh_soon()
                await asyncio.sleep(pause)
                pause = min(pause * 2, TRYAGAIN_MAX_S)
            else:
                return replies
            self.redirects[kind] += 1
        return replies

    async def _redirected(self, name: str, command: list[Any], slot: int, error: RespError) -> Any:
        """Follow MOVED / ASK / TRYAGAIN / NOSCRIPT until a real answer (or another error) comes."""
        loop = asyncio.get_running_loop()
        started, pause = loop.time(), TRYAGAIN_FIRST_S
        node, asking = self._by_slot[slot], False
        for _ in range(MAX_STEPS):
            kind, _, rest = str(error).partition(" ")
            if kind in ("MOVED", "ASK"):
                node = self._node(rest.split(" ")[1])
                asking = kind == "ASK"
                if not asking:
                    self._by_slot[slot] = node
                    self._refresh_soon()
            elif kind in ("TRYAGAIN", "CLUSTERDOWN") and loop.time() - started < self._command_timeout_ms / 1000:
                if kind == "CLUSTERDOWN":  # a node that has just restarted, or a failover under way
                    self._refresh_soon()
                await asyncio.sleep(pause)
                pause = min(pause * 2, TRYAGAIN_MAX_S)
                node, asking = await self._owner(slot), False
            elif kind == "NOSCRIPT" and name and node is not None:
                await node.client.pipeline([["SCRIPT", "LOAD", self._sources[name]]])
            else:
                return error
            self.redirects[kind] += 1
            if node is None:
                return error
            if asking:
                result = (await node.client.pipeline([["ASKING"], command]))[1]
            else:
                result = await node.send(command)
            if not isinstance(result, RespError):
                return result
            error = result
        return error

    # -- the slot map -----------------------------------------------------------------------------------

    def _node(self, address: str) -> ScriptBatcher:
        node = self._nodes.get(address)
        if node is None:
            host, _, port = address.rpartition(":")
            client = RespClient(self._url.format(f"{host or self._seeds[0][0]}:{port}"), self._connections,
                                self._connect_timeout_ms, self._command_timeout_ms)
            node = self._nodes[address] = ScriptBatcher(client, self._sources)
        return node

    async def _owner(self, slot: int) -> ScriptBatcher:
        node = self._by_slot[slot]
        if node is None:
            self._refresh_soon()
            if self._refresh is not None:
                await asyncio.shield(self._refresh)
            node = self._by_slot[slot]
            if node is None:
                raise StoreUnavailable(f"no node of the Redis Cluster ({self.address}) serves slot {slot}")
        return node

    def _refresh_soon(self) -> None:
        if self._refresh is None:
            self._refresh = asyncio.ensure_future(self._refreshing())

    async def _refreshing(self) -> bool:
        try:
            loop = asyncio.get_running_loop()
            wait = self._refreshed_at + REFRESH_EVERY_S - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self._refreshed_at = loop.time()
            return await self._read_map()
        finally:
            self._refresh = None

    async def _read_map(self) -> bool:
        """Ask the masters we know, then the seeds, for the slot map; True when one answered."""
        asked: set[str] = set()
        for address in [*self._nodes, *(f"{h}:{p}" for h, p in self._seeds)]:
            if address in asked:
                continue
            asked.add(address)
            probe = RespClient(self._url.format(address), 1, self._connect_timeout_ms, self._command_timeout_ms)
            try:
                [reply] = await probe.once([["CLUSTER", "SLOTS"]])
            except RespConnectionError:
                continue
            if isinstance(reply, RespError) or not reply:
                continue
            self._apply(reply, address.rpartition(":")[0])
            return True
        log.warning("no node of the Redis Cluster (%s) gave its slot map", self.address)
        return False

    def _apply(self, reply: list[Any], asked_host: str) -> None:
        table: list[ScriptBatcher | None] = [None] * SLOTS
        for first, last, master, *_replicas in reply:
            host = master[0].decode() if master[0] not in (b"", b"?") else asked_host
            node = self._node(f"{host}:{int(master[1])}")
            table[first:last + 1] = [node] * (last - first + 1)
        self._by_slot = table
        serving = {id(n) for n in table if n is not None}
        for address, node in list(self._nodes.items()):
            if id(node) not in serving:  # no longer a master: closed once what it carries is answered
                del self._nodes[address]
                self._retiring[node] = asyncio.ensure_future(self._retire(node))

    async def _retire(self, node: ScriptBatcher) -> None:
        await asyncio.sleep(2 * self._command_timeout_ms / 1000)
        self._retiring.pop(node, None)
        await node.close()

    # -- what the ledger and the retry queue ask ----------------------------------------------------------

    @property
    def client(self) -> ClusterBatcher:
        return self

    async def connect(self) -> None:
        """Read the slot map and open the connections to every master."""
        if not await self._read_map():
            raise RespConnectionError(f"cannot read the slot map of the Redis Cluster at {self.address}")
        for node in list(self._nodes.values()):
            await node.connect()

    async def available(self) -> None:
        """Return once every master of the map answers (a map read again meanwhile, now and then, so that a
        master replaced by its replica counts as back)."""
        while True:
            down = [n.client for n in self._nodes.values() if n.client.down]
            if self._nodes and not down:
                return
            self._refresh_soon()
            waiting = [asyncio.ensure_future(c.available()) for c in down]
            if waiting:
                _, pending = await asyncio.wait(waiting, timeout=REFRESH_EVERY_S)
                for task in pending:
                    task.cancel()
            else:
                await asyncio.sleep(REFRESH_EVERY_S)

    async def close(self) -> None:
        if self._refresh is not None:
            self._refresh.cancel()
            self._refresh = None
        for node, task in list(self._retiring.items()):
            task.cancel()
            await node.close()
        self._retiring.clear()
        for node in list(self._nodes.values()):
            await node.close()
        self._nodes.clear()
        self._by_slot = [None] * SLOTS
