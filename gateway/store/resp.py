"""A minimal pipelining RESP client for the two Lua calls on the request path.

redis-py spends most of its time around each command in Python (issue 6: its `pack_command` alone was
12.7% of the gateway's CPU under load). Here commands are packed and replies parsed by hiredis in C, a
batch of EVALSHA calls is one bytes join and one write, and replies go to their futures in order.

Deadlines without a timer per call: a connect has `connect_timeout_ms`; for commands, one periodic timer
per client looks at the oldest reply each connection still waits for, and a connection whose oldest
command has waited `command_timeout_ms` (seen at three ticks half a deadline apart) is dropped, failing
everything it carried. A failed connect or a missed deadline opens the circuit breaker: every call
then fails at once (`StoreUnavailable`) while a probe reconnects in the background and closes it again.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import hiredis

from gateway.observability.metrics import METRICS

log = logging.getLogger("gateway.redis")

PROBE_FIRST_S = 0.1   # the breaker's first probe; then doubled while Redis stays down ...
PROBE_MAX_S = 1.0     # ... up to this


class RespError(Exception):
    """A Redis error reply (e.g. NOSCRIPT), returned in a batch's results."""


class RespConnectionError(ConnectionError):
    pass


class StoreUnavailable(RespConnectionError):
    """The call was not sent: the circuit breaker is open (Redis did not connect or answer in time), or
    the connection it was to go on could not be opened."""


# what a call to Redis raises when Redis is unreachable, late, restarting (LOADING) or refuses a command
STORE_ERRORS = (ConnectionError, OSError, RespError)


def pack(command: list[Any] | tuple[Any, ...]) -> bytes:
    """One command in RESP (str, bytes or int arguments), packed by hiredis in C: half the time of the
    same loop in Python, which was ~8 % of the gateway's CPU per request."""
    return hiredis.pack_command(tuple(command))


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader = hiredis.Reader(replyError=RespError)
        self.waiting: deque[asyncio.Future[Any]] = deque()
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self.loop = asyncio.get_running_loop()
        self.failure = "connection to Redis lost"
        self.head: asyncio.Future[Any] | None = None  # the oldest waiting reply at the last deadline tick
        self.head_ticks = 0                            # ... and at how many ticks since

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # always a socket transport

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while True:
            reply = self.reader.gets()
            if reply is False:
                return
            future = self.waiting.popleft()
            if not future.done():
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        while self.waiting:
            f = self.waiting.popleft()
            if not f.done():
                f.set_exception(RespConnectionError(self.failure))

    def overdue(self) -> bool:
        """A deadline tick: True when the same reply has been waited for at three ticks in a row."""
        head = self.waiting[0] if self.waiting and not self.lost else None
        if head is None or head is not self.head:
            self.head, self.head_ticks = head, 0
            return False
        self.head_ticks += 1
        return self.head_ticks >= 2


class RespClient:
    """A few connections, used round robin; each carries pipelined batches in order."""

    @classmethod
    def like(cls, client: Any, connections: int = 2, connect_timeout_ms: int = 1000,
             command_timeout_ms: int = 2000) -> RespClient:
        """A client for the same server and database as a redis-py client."""
        kw = client.connection_pool.connection_kwargs
        if kw.get("path"):
            url = f"unix://{kw['path']}?db={kw.get('db', 0)}"
        else:
            scheme = "rediss" if kw.get("ssl") else "redis"
            url = f"{scheme}://{kw.get('host', '127.0.0.1')}:{kw.get('port', 6379)}/{kw.get('db', 0)}"
        made = cls(url, connections, connect_timeout_ms, command_timeout_ms)
        made._password = kw.get("password")
        made._username = kw.get("username")
        return made

    def __init__(self, url: str, connections: int = 2, connect_timeout_ms: int = 1000,
                 command_timeout_ms: int = 2000) -> None:
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        self._unix = parts.path if parts.scheme == "unix" else None
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 6379
        self._ssl = parts.scheme == "rediss"
        self._password = unquote(parts.password) if parts.password else None
        self._username = unquote(parts.username) if parts.username else None
        db = query.get("db", [None])[0] or (parts.path.lstrip("/") if parts.scheme != "unix" else None)
        self._db = int(db) if db else 0
        self._conns: list[_Protocol | None] = [None] * connections
        self._next = 0
        self._lock = asyncio.Lock()
        self._connect_timeout = connect_timeout_ms / 1000
        self._command_timeout_ms = command_timeout_ms
        self.down = False   # the breaker: open while Redis cannot be reached; every call fails at once
        self._probe: asyncio.Task[None] | None = None
        self._up: asyncio.Event | None = None
        self._ticker: asyncio.TimerHandle | None = None

    @property
    def address(self) -> str:
        """Which server and database this client talks to (no credentials)."""
        where = f"unix:{self._unix}" if self._unix else f"{self._host}:{self._port}"
        return f"{where}/{self._db}"

    async def _open(self) -> _Protocol:
        """A new connection, set up, within the connect deadline (else RespConnectionError)."""
        try:
            return await asyncio.wait_for(self._connect(), self._connect_timeout)
        except TimeoutError:
            raise RespConnectionError(f"cannot connect to Redis within {self._connect_timeout * 1000:.0f} ms") from None
        except OSError as exc:
            raise RespConnectionError(f"cannot connect to Redis: {exc}") from None

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        if self._unix:
            _, proto = await loop.create_unix_connection(_Protocol, self._unix)
        else:
            _, proto = await loop.create_connection(_Protocol, self._host, self._port, ssl=self._ssl or None)
        setup: list[list[Any]] = []
        if self._password:
            setup.append(["AUTH", *([self._username] if self._username else []), self._password])
        if self._db:
            setup.append(["SELECT", self._db])
        try:
            replies = await self._send(proto, setup)
        except BaseException:  # the connect deadline passed during the set-up
            proto.transport.abort()  # type: ignore[union-attr]  # connected
            raise
        for reply in replies:
            if isinstance(reply, RespError):
                proto.transport.close()  # type: ignore[union-attr]  # connected
                raise RespConnectionError(f"Redis refused the connection set-up: {reply}")
        return proto

    async def once(self, commands: list[list[Any]]) -> list[Any]:
        """The commands on a connection of their own, closed afterwards, within the deadlines; the breaker
        is neither consulted nor tripped (for an occasional question, such as a cluster's slot map)."""
        proto = await self._open()
        try:
            return await asyncio.wait_for(self._send(proto, commands), self._command_timeout_ms / 1000)
        except TimeoutError:
            raise RespConnectionError(f"Redis did not answer within {self._command_timeout_ms} ms") from None
        finally:
            proto.transport.close()  # type: ignore[union-attr]  # connected

    async def _conn(self, i: int | None = None) -> _Protocol:
        """Connection `i` (or the next in turn), opened if it is not open; StoreUnavailable while the
        breaker is open."""
        if i is None:
            i = self._next
            self._next = (i + 1) % len(self._conns)
        proto = self._conns[i]
        if proto is None or proto.lost:
            if self.down:
                raise StoreUnavailable("Redis is unavailable")
            async with self._lock:
                proto = self._conns[i]
                if proto is None or proto.lost:
                    if self.down:
                        raise StoreUnavailable("Redis is unavailable")
                    try:
                        proto = self._conns[i] = await self._open()
                    except RespConnectionError as exc:
                        self._trip(str(exc))
                        raise
                    self._watch()
        return proto

    # -- deadlines and the breaker (off the per-call path: one timer per client) -------------------------

    def _watch(self) -> None:
        if self._ticker is None:
            self._ticker = asyncio.get_running_loop().call_later(self._command_timeout_ms / 2000, self._tick)

    def _tick(self) -> None:
        self._ticker = None
        for proto in self._conns:
            if proto is not None and proto.overdue():
                proto.failure = f"Redis did not answer within {self._command_timeout_ms} ms"
                log.warning("%s (%s): dropping the connection", proto.failure, self.address)
                proto.transport.abort()  # type: ignore[union-attr]  # fails what it carried
                self._trip(proto.failure)
        if any(proto is not None and not proto.lost for proto in self._conns):
            self._watch()

    def _trip(self, reason: str) -> None:
        """Open the breaker: calls fail at once until a probe gets an answer from Redis."""
        if self.down:
            return
        self.down = True
        METRICS.redis_failed("breaker_open")
        log.warning("Redis %s unavailable (%s): failing calls at once until it answers again", self.address, reason)
        self._probe = asyncio.ensure_future(self._probing())

    async def _probing(self) -> None:
        delay = PROBE_FIRST_S
        while True:
            await asyncio.sleep(delay)
            delay = min(delay * 2, PROBE_MAX_S)
            try:
                proto = await self._open()
            except RespConnectionError:
                continue
            try:
                [reply] = await asyncio.wait_for(self._send(proto, [["PING"]]), self._command_timeout_ms / 1000)
            except (TimeoutError, RespConnectionError):
                reply = None
            if reply != b"PONG":  # no answer, or an error such as LOADING while Redis reads its data back
                proto.transport.abort()  # type: ignore[union-attr]  # connected
                continue
            for i, old in enumerate(self._conns):
                if old is None or old.lost:
                    self._conns[i], proto = proto, None  # type: ignore[assignment]  # handed over: this caller is done with it
                    break
            if proto is not None:
                proto.transport.close()  # type: ignore[union-attr]  # connected
            self.down = False
            self._probe = None
            self._watch()
            if self._up is not None:
                self._up.set()
                self._up = None
            log.warning("Redis %s answers again: calls go through", self.address)
            return

    async def available(self) -> None:
        """Return once the breaker is closed (at once when it is)."""
        if not self.down:
            return
        if self._up is None:
            self._up = asyncio.Event()
        await self._up.wait()

    @staticmethod
    async def _send(proto: _Protocol, commands: list[list[Any]]) -> list[Any]:
        if not commands:
            return []
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in commands]
        proto.waiting.extend(futures)
        proto.transport.write(b"".join(pack(c) for c in commands))  # type: ignore[union-attr]  # connected
        return [await f for f in futures]

    def send_packed(self, data: bytes, futures: list[asyncio.Future[Any]]) -> None:
        """Write already packed commands; each future gets its reply (error replies as RespError values)
        or, if Redis cannot be reached, the connection error. Synchronous while a connection is open (no
        task per batch); only (re)connecting needs one."""
        if self.down:  # fail fast: nothing is sent while Redis is known to be unreachable
            for f in futures:
                if not f.done():
                    f.set_exception(StoreUnavailable("Redis is unavailable"))
            return
        i = self._next
        self._next = (i + 1) % len(self._conns)
        proto = self._conns[i]
        if proto is not None and not proto.lost:
            proto.waiting.extend(futures)
            proto.transport.write(data)  # type: ignore[union-attr]  # connected
            return
        asyncio.ensure_future(self._send_after_connect(i, data, futures))

    async def _send_after_connect(self, i: int, data: bytes, futures: list[asyncio.Future[Any]]) -> None:
        try:
            proto = await self._conn(i)
        except ConnectionError as exc:
            for f in futures:
                if not f.done():
                    f.set_exception(exc if isinstance(exc, StoreUnavailable) else StoreUnavailable(str(exc)))
            return
        proto.waiting.extend(futures)
        proto.transport.write(data)  # type: ignore[union-attr]  # connected

    async def connect(self) -> None:
        """Open every connection now (else each opens on first use)."""
        for i in range(len(self._conns)):
            await self._conn(i)

    def idle(self) -> bool:
        """No reply outstanding on the connection the next send goes to."""
        proto = self._conns[self._next]
        return proto is not None and not proto.lost and not proto.waiting

    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop the open connections belong to (the running one when none is open). Looked up
        without asyncio.get_running_loop(), which costs a getpid() system call per call on 3.11."""
        for proto in self._conns:
            if proto is not None and not proto.lost:
                return proto.loop
        return asyncio.get_running_loop()

    async def pipeline(self, commands: list[list[Any]]) -> list[Any]:
        """Send the commands in one write; their replies in order (error replies as RespError values)."""
        return await self._send(await self._conn(), commands)

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        if self._probe is not None:
            self._probe.cancel()
            self._probe = None
        for proto in self._conns:
            if proto is not None and proto.transport is not None:
                proto.transport.close()
        self._conns = [None] * len(self._conns)
