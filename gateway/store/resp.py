"""A minimal pipelining RESP client for the two Lua calls on the request path.

redis-py spends most of its time around each command in Python (issue 6: its `pack_command` alone was
12.7% of the gateway's CPU under load). Here commands are packed and replies parsed by hiredis in C, a
batch of EVALSHA calls is one bytes join and one write, and replies go to their futures in order.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import hiredis


class RespError(Exception):
    """A Redis error reply (e.g. NOSCRIPT), returned in a batch's results."""


class RespConnectionError(ConnectionError):
    pass


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

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

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
                f.set_exception(RespConnectionError("connection to Redis lost"))


class RespClient:
    """A few connections, used round robin; each carries pipelined batches in order."""

    @classmethod
    def like(cls, client: Any, connections: int = 2) -> "RespClient":
        """A client for the same server and database as a redis-py client."""
        kw = client.connection_pool.connection_kwargs
        if kw.get("path"):
            url = f"unix://{kw['path']}?db={kw.get('db', 0)}"
        else:
            url = f"{'rediss' if kw.get('ssl') else 'redis'}://{kw.get('host', '127.0.0.1')}:{kw.get('port', 6379)}/{kw.get('db', 0)}"
        made = cls(url, connections)
        made._password = kw.get("password")
        made._username = kw.get("username")
        return made

    def __init__(self, url: str, connections: int = 2) -> None:
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

    async def _open(self) -> _Protocol:
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
        for reply in await self._send(proto, setup):
            if isinstance(reply, RespError):
                proto.transport.close()  # type: ignore[union-attr]
                raise RespConnectionError(f"Redis refused the connection set-up: {reply}")
        return proto

    async def _conn(self, i: int | None = None) -> _Protocol:
        """Connection `i` (or the next in turn), opened if it is not open."""
        if i is None:
            i = self._next
            self._next = (i + 1) % len(self._conns)
        proto = self._conns[i]
        if proto is None or proto.lost:
            async with self._lock:
                proto = self._conns[i]
                if proto is None or proto.lost:
                    try:
                        proto = self._conns[i] = await self._open()
                    except OSError as exc:
                        raise RespConnectionError(f"cannot connect to Redis: {exc}") from None
        return proto

    @staticmethod
    async def _send(proto: _Protocol, commands: list[list[Any]]) -> list[Any]:
        if not commands:
            return []
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in commands]
        proto.waiting.extend(futures)
        proto.transport.write(b"".join(pack(c) for c in commands))  # type: ignore[union-attr]
        return [await f for f in futures]

    def send_packed(self, data: bytes, futures: list[asyncio.Future[Any]]) -> None:
        """Write already packed commands; each future gets its reply (error replies as RespError values)
        or, if Redis cannot be reached, the connection error. Synchronous while a connection is open (no
        task per batch); only (re)connecting needs one."""
        i = self._next
        self._next = (i + 1) % len(self._conns)
        proto = self._conns[i]
        if proto is not None and not proto.lost:
            proto.waiting.extend(futures)
            proto.transport.write(data)  # type: ignore[union-attr]
            return
        asyncio.ensure_future(self._send_after_connect(i, data, futures))

    async def _send_after_connect(self, i: int, data: bytes, futures: list[asyncio.Future[Any]]) -> None:
        try:
            proto = await self._conn(i)
        except ConnectionError as exc:
            for f in futures:
                if not f.done():
                    f.set_exception(exc)
            return
        proto.waiting.extend(futures)
        proto.transport.write(data)  # type: ignore[union-attr]

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
        for proto in self._conns:
            if proto is not None and proto.transport is not None:
                proto.transport.close()
        self._conns = [None] * len(self._conns)
