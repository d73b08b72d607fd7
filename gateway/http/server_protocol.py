"""The gateway's own HTTP/1.1 server protocol (httptools), run by uvicorn in place of its own.

uvicorn keeps what it does well — sockets, workers, signals, lifespan, graceful shutdown, the Date header
ticker — and hands each connection to this protocol (`http="gateway.http.server_protocol:HttpProtocol"`). On the
hot path uvicorn's protocol was the largest single item of the profile (issue 6); this one does the same
job with less per request: one write per response (head and body together), no asyncio.Event and no timer
handle per request (idle keep-alive connections are closed by one sweep per second), a plain dict scope.

ASGI 3 HTTP: request bodies streamed with back-pressure, `http.disconnect` on a lost client, chunked
responses when no Content-Length is given, HEAD, `Expect: 100-continue`, pipelined requests answered in
order, HTTP/1.0 close semantics. No WebSocket (the gateway serves none).

What a client may cost is bounded (`ServerLimits`, issue 14): raw head bytes (431) and head time (408), a
minimum body rate once a grace period is over (408), open connections per worker (503, with a reserve for
health checks), and body bytes in flight per worker (503). Deadlines are checked by the one-per-second
sweep, not by timers per request. Every complete request is answered before the connection closes: after
a client's half-close, after garbage that follows a request, after a request that follows `Connection:
close`; a framing error of a request not yet answered gets its 400 (or 431/408/503) in the seed's shape.
"""

from __future__ import annotations

import asyncio
import logging
import re
import weakref
from collections import deque
from http import HTTPStatus
from typing import Any, ClassVar
from urllib.parse import unquote

import httptools

from gateway.config.model import ServerLimits
from gateway.errors import InternalError, error_body
from gateway.http.pacing import pacer_for

log = logging.getLogger("gateway.http")

DEFAULT_LIMITS = ServerLimits()
MAX_HEAD_BYTES = DEFAULT_LIMITS.max_head_bytes   # request line + headers; more → 431 and close (the default)
BODY_HIGH_WATER = 256 * 1024      # buffered, unread request body before we stop reading the socket
SWEEP_SECONDS = 1.0
LINGER_SECONDS = 2.0              # after a last answer: how long to read (and drop) what the client still sends
LINGER_MAX_BYTES = 1024 * 1024    # ... and how much of it, before the connection is simply closed

ASGI = {"version": "3.0", "spec_version": "2.3"}
_BAD_VALUE = re.compile(b"[\x00\r\n]")   # a header value that would split the response

HEALTH_PATHS = frozenset(("/healthz", "/readyz"))   # what a connection over the cap may still ask


def _status_line(code: int) -> bytes:
    try:
        phrase = HTTPStatus(code).phrase
    except ValueError:
        phrase = ""
    return f"HTTP/1.1 {code} {phrase}\r\n".encode()


STATUS_LINES = {code: _status_line(code) for code in range(100, 600)}


class _DefaultHeaders:
    """uvicorn refreshes `server_state.default_headers` (the Date header) once a second; encode it once
    per refresh for every connection."""

    source: object = None
    encoded: bytes = b""

    @classmethod
    def get(cls, headers: list[tuple[bytes, bytes]]) -> bytes:
        if headers is not cls.source:
            cls.encoded = b"".join(k + b": " + v + b"\r\n" for k, v in headers)
            cls.source = headers
        return cls.encoded


class HttpProtocol(asyncio.Protocol):
    """One client connection. Construction signature is uvicorn's (config, server_state, app_state)."""

    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        if not config.loaded:
            config.load()
        self.app = config.loaded_app
        self.limits: ServerLimits = _limits_of(self.app)
        self.loop = _loop or asyncio.get_event_loop()
        self.pacer = pacer_for(self.loop)
        self.server_state = server_state
        self.app_state = app_state
        self.keep_alive_timeout = float(config.timeout_keep_alive)
        self.root_path: str = config.root_path
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.server: tuple[str, int] | None = None
        self.client: tuple[str, int] | None = None
        self.current: Exchange | None = None     # the request the app is answering
        self.parsing: Exchange | None = None     # the request whose body is being parsed
        self.waiting: deque[Exchange] = deque()  # pipelined requests, parsed, not started
        self.idle_since: float | None = None
        self.write_paused = False
        self.drain: asyncio.Future[None] | None = None
        self.reading_paused = False
        self.lingering = False
        self.dropped = 0                         # bytes read and dropped after the last answer
        self.reserve_only = False                # over the connection cap: health checks only
        self.eof = False                         # the client half-closed: answer what it asked, then close
        self.deferred: tuple[int, str] | None = None   # an error to answer once the requests before it are
        self.in_head = False
        self.head_started = 0.0
        self.head_raw = 0                        # raw bytes of the head being received (all of its packets
        self._fresh = False                      # but the one it began in, which one read bounds)
        self._refusal: tuple[int, str] | None = None
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0
        self._hosts = 0
        self._length = 0
        self._continue = False

    # -- connection --------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not asyncio subclasses
        connections = self.server_state.connections
        connections.add(self)
        if not hasattr(self.server_state, "body_bytes_held"):  # the worker's budget of body bytes (see _BodyBudget)
            self.server_state.body_bytes_held = 0
        self.server = _addr(transport.get_extra_info("sockname"))
        self.client = _addr(transport.get_extra_info("peername"))
        self.idle_since = self.loop.time()
        open_now = len(connections)
        cap = _cap(self.limits)
        if open_now > cap:
            if open_now > cap + self.limits.health_reserve:
                log.warning("connection refused: %d open connections (cap %d + %d for health checks)",
                            open_now - 1, cap, self.limits.health_reserve)
                self._answer_error(503, "the server is at its connection limit; try again shortly")
                return
            self.reserve_only = True
        _Sweeper.watch(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server_state.connections.discard(self)
        self._drop_waiting()
        for ex in (self.current, self.parsing):
            if ex is not None:
                ex.lost()
        if self.drain is not None and not self.drain.done():
            self.drain.set_result(None)
        self.parser = None  # type: ignore[assignment]  # dropped with the connection, never used after

    def data_received(self, data: bytes) -> None:
        if self.lingering or self.deferred is not None:  # after a last answer or an error nothing is parsed
            self.dropped += len(data)
            if self.dropped > LINGER_MAX_BYTES:
                self.transport.close()  # type: ignore[union-attr]  # connected
            return
        counted = self.in_head  # a head that began in an earlier packet: this one counts towards its size
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass  # no protocol switching here: the request is answered as plain HTTP, then the connection closes
        except httptools.HttpParserError:
            refusal, self._refusal = self._refusal, None
            self._protocol_error(*(refusal or (400, "invalid HTTP request")))
            return
        if self.in_head:
            if counted and not self._fresh:
                self.head_raw += len(data)
                if self.head_raw > self.limits.max_head_bytes:
                    self._protocol_error(431, "request header too large")
            self._fresh = False

    def eof_received(self) -> bool | None:
        """The client closed its side. Requests it sent in full are still answered (then the connection
        closes); a request cut short by the close is dropped with it. An app that waits for the end of
        the exchange gets `http.disconnect` (as Go's server cancels the request's context), since a
        client that has left and one that half-closed look the same until a write fails."""
        self.eof = True
        ex = self.current
        if ex is not None:
            ex.eof = True  # an app waiting for the end of the exchange is told (as a disconnect)
            ex.wake()
        if self.parsing is None and not self.lingering and (self.waiting or (ex is not None and not ex.complete)):
            for w in [w for w in self.waiting if w.more_body]:
                self.waiting.remove(w)
                w.lost()
            return True  # keep the write side open
        return None

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.drain is not None and not self.drain.done():
            self.drain.set_result(None)
        self.drain = None

    def shutdown(self) -> None:
        """Graceful shutdown (uvicorn): close now if idle, else after the answer in flight. The app is told
        first (its `begin_shutdown`, once: readiness, the grace period of streams)."""
        hook = _shutdown_hook_of(self.app)
        if hook is not None:
            hook()
        if self.current is None or self.current.complete:
            self.transport.close()  # type: ignore[union-attr]  # connected
        else:
            self.current.keep_alive = False
            self._drop_waiting()

    def _drop_waiting(self) -> None:
        for ex in self.waiting:
            ex.lost()
        self.waiting.clear()

    # -- errors the protocol answers itself ---------------------------------------------------------------

    def _protocol_error(self, status: int, message: str) -> None:
        """A request that cannot be served (bad framing, over a limit). Requests before it that arrived in
        full are answered first; this answer follows them, then the connection closes."""
        ex = self.parsing
        if ex is not None:  # the broken part is this request's body
            self.parsing = None
            if ex is self.current:
                if ex.started:  # its answer has begun: nothing can be said any more
                    ex.lost()
                    self.transport.close()  # type: ignore[union-attr]  # connected
                    return
                ex.lost()  # the app stops reading; what it still sends is dropped
                self.current = None
            elif ex in self.waiting:
                self.waiting.remove(ex)
                ex.lost()
        if self.current is None and not self.waiting:
            self._answer_error(status, message)
        else:  # answered after the requests in flight (see _finished)
            self.deferred = (status, message)
            self._pause_reading()

    def _answer_error(self, status: int, message: str) -> None:
        body = error_body(status, message)
        t = self.transport
        if t is not None and not t.is_closing():
            t.write(STATUS_LINES[status] + _DefaultHeaders.get(self.server_state.default_headers)
                    + b"content-type: application/json\r\ncontent-length: " + str(len(body)).encode()
                    + b"\r\nconnection: close\r\n\r\n" + body)
        self._linger()

    def _linger(self) -> None:
        """Close after the last answer without losing it: closing a socket that still holds unread
        request bytes makes the kernel send a reset, which can destroy the answer before the client
        reads it. So: finish writing, send FIN, drop whatever still arrives, close on the client's FIN
        or after LINGER_SECONDS."""
        t = self.transport
        if t is None or t.is_closing():
            return
        if self.eof:  # the client sends nothing more: nothing to drain
            t.close()
            return
        self.lingering = True
        self._drop_waiting()
        if t.can_write_eof():
            try:
                t.write_eof()
            except OSError:  # the client is already gone (asyncio's transport raises ENOTCONN)
                t.close()
                return
        if self.reading_paused:
            self.reading_paused = False
            t.resume_reading()
        self.loop.call_later(LINGER_SECONDS, t.close)

    def check_deadlines(self, now: float) -> bool:
        """The sweep's look at this connection; True when it was closed. Idle keep-alive connections are
        closed; a head or a body that comes too slowly is answered 408."""
        if self.lingering:
            return False
        if self.idle_since is not None:
            if now - self.idle_since >= self.keep_alive_timeout:
                self.transport.close()  # type: ignore[union-attr]  # connected
                return True
            return False
        limits = self.limits
        if self.in_head and now - self.head_started > limits.head_timeout_s:
            log.info("request head from %s not complete within %g s: closed", _peer(self), limits.head_timeout_s)
            self.in_head = False
            self._protocol_error(408, "the request head did not arrive in time")
            return True
        ex = self.parsing
        if ex is None or not ex.more_body:
            return False
        if self.reading_paused or ex.expect_continue or ex.rate_since < 0:
            # our own back-pressure, or the client waits for its 100 Continue: the window starts anew
            ex.rate_since, ex.rate_base = now, ex.received
            return False
        elapsed = now - ex.rate_since
        if elapsed > limits.body_grace_s and ex.received - ex.rate_base < limits.body_min_rate * elapsed:
            log.info("request body from %s slower than %d B/s: closed", _peer(self), limits.body_min_rate)
            self._protocol_error(408, f"the request body arrived slower than {limits.body_min_rate} bytes/s")
            return True
        return False

    # -- httptools callbacks -----------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._head_bytes = 0
        self._hosts = 0
        self._length = 0
        self._continue = False
        self.in_head = True
        self._fresh = True
        self.head_raw = 0
        self.idle_since = None  # a head is coming: its own deadline applies
        self.head_started = _clock[0]  # the sweep's clock (≤ 1 s old): no call per request

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_bytes += len(url)
        if self._head_bytes > self.limits.max_head_bytes:
            self._refuse(431, "request header too large")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value)
        if self._head_bytes > self.limits.max_head_bytes:
            self._refuse(431, "request header too large")
        name = name.lower()
        if name == b"host":
            self._hosts += 1
        elif name == b"content-length":
            self._length = int(value)  # llhttp has checked it is digits, and one value
        elif name == b"expect" and value.lower() == b"100-continue":
            self._continue = True
        self._headers.append((name, value))

    def _refuse(self, status: int, message: str) -> None:
        """Stop parsing from inside a callback; data_received answers `status`."""
        self._refusal = (status, message)
        raise _Refused(message)

    def on_headers_complete(self) -> None:
        self.in_head = False
        parser = self.parser
        version = parser.get_http_version()
        if self._hosts != 1 and (self._hosts > 1 or version != "1.0"):
            self._refuse(400, "a request must carry exactly one Host header")
        url = self._url
        raw_path, _, query = url.partition(b"?")
        if b"#" in query:
            query = query.partition(b"#")[0]
        path = raw_path.decode("latin-1")
        if "%" in path:
            path = unquote(path)
        if self.reserve_only and path not in HEALTH_PATHS:
            self._refuse(503, "the server is at its connection limit; try again shortly")
        scope: dict[str, Any] = {
            "type": "http", "asgi": ASGI, "http_version": version, "method": parser.get_method().decode("ascii"),
            "scheme": "http", "path": self.root_path + path if self.root_path else path,
            "raw_path": raw_path, "query_string": query, "root_path": self.root_path,
            "headers": self._headers, "server": self.server, "client": self.client,
        }
        if self.app_state:
            scope["state"] = self.app_state.copy()
        keep_alive = version != "1.0" and parser.should_keep_alive() and not parser.should_upgrade()
        ex = Exchange(self, scope, keep_alive, self._continue)
        n = self._length
        if n:  # the declared body is taken from the worker's budget now (inline: this runs per request)
            state = self.server_state
            held = state.body_bytes_held + n
            if held > self.limits.max_inflight_body_bytes:
                self._refuse(503, "the server holds too many request bodies right now; try again shortly")
            state.body_bytes_held = held
            ex.budgeted = n
            ex.holder = state
        self.parsing = ex
        if self.current is None:
            self._start(ex)
        else:  # pipelined: answered after the one in flight; stop reading until then
            self.waiting.append(ex)
            self._pause_reading()

    def on_body(self, body: bytes) -> None:
        ex = self.parsing
        if ex is None or ex.complete or ex.disconnected:
            return
        ex.body.append(body)
        n = len(body)
        ex.buffered += n
        ex.received += n
        if ex.received > ex.budgeted and not _BUDGET.grow(self.server_state, ex, n, self.limits.max_inflight_body_bytes):
            self._refuse(503, "the server holds too many request bodies right now; try again shortly")
        if ex.buffered > BODY_HIGH_WATER:
            self._pause_reading()
        ex.wake()

    def on_message_complete(self) -> None:
        ex = self.parsing
        self.parsing = None
        if ex is not None:
            ex.more_body = False
            ex.wake()

    # -- request lifecycle ---------------------------------------------------------------------------------

    def _start(self, ex: Exchange) -> None:
        self.current = ex
        self.pacer.start(lambda: self._launch(ex))

    def _launch(self, ex: Exchange) -> None:
        if ex.disconnected:
            return  # the client left while its request waited for its turn
        task = self.loop.create_task(ex.run(self.app))
        tasks = self.server_state.tasks
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def _finished(self, ex: Exchange) -> None:
        """The answer to `ex` is fully written."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        self.server_state.total_requests += 1  # uvicorn's --limit-max-requests counts these
        if not ex.keep_alive:
            self._linger()
            return
        self.current = None
        if self.waiting:
            self._start(self.waiting.popleft())
        elif self.deferred is not None:
            self._answer_error(*self.deferred)
        elif self.eof:
            transport.close()
        else:
            self.idle_since = self.loop.time()
            self._resume_reading()

    def _pause_reading(self) -> None:
        if not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self.reading_paused and self.transport is not None and not self.waiting and self.deferred is None:
            self.reading_paused = False
            self.transport.resume_reading()

    async def _drained(self) -> None:
        if self.drain is None:
            self.drain = self.loop.create_future()
        await self.drain


class _Refused(httptools.HttpParserError):
    """Raised in a parser callback to stop parsing; the protocol answers the refusal it recorded."""


class _BodyBudget:
    """Request body bytes held per server (worker): each request takes its Content-Length when its head
    arrives (on_headers_complete; a chunked one, what arrives), and gives it back when its exchange ends.
    Beyond the budget a request is answered 503 before its body is read, so a burst of large bodies cannot
    take the memory."""

    @staticmethod
    def grow(state: Any, ex: Exchange, n: int, budget: int) -> bool:
        """A chunked body takes what arrives (a declared one took its length with its head)."""
        used = state.body_bytes_held
        if used + n > budget:
            return False
        state.body_bytes_held = used + n
        ex.budgeted += n
        ex.holder = state
        return True

    @staticmethod
    def give_back(ex: Exchange) -> None:
        state = ex.holder
        if state is not None:
            ex.holder = None
            state.body_bytes_held -= ex.budgeted


_BUDGET = _BodyBudget()


def _limits_of(app: Any) -> ServerLimits:
    """The limits the app carries (through wrappers that keep an `app` attribute), else the defaults."""
    for _ in range(8):
        limits = getattr(app, "server_limits", None)
        if isinstance(limits, ServerLimits):
            return limits
        app = getattr(app, "app", None)
        if app is None:
            break
    return DEFAULT_LIMITS


def _shutdown_hook_of(app: Any) -> Any:
    """The app's `begin_shutdown` (through wrappers that keep an `app` attribute), else None."""
    for _ in range(8):
        hook = getattr(app, "begin_shutdown", None)
        if hook is not None:
            return hook
        app = getattr(app, "app", None)
        if app is None:
            break
    return None


_caps: dict[ServerLimits, int] = {}


def _cap(limits: ServerLimits) -> int:
    cap = _caps.get(limits)
    if cap is None:
        cap = _caps[limits] = limits.connection_cap()
    return cap


def _peer(proto: HttpProtocol) -> str:
    return f"{proto.client[0]}:{proto.client[1]}" if proto.client else "?"


class Exchange:
    """One request and its answer: the ASGI receive/send pair."""

    __slots__ = (
        "body",
        "budgeted",
        "buffered",
        "chunked",
        "complete",
        "disconnected",
        "eof",
        "expect_continue",
        "handed_all",
        "head",
        "head_only",
        "holder",
        "keep_alive",
        "more_body",
        "proto",
        "rate_base",
        "rate_since",
        "received",
        "remaining",
        "scope",
        "started",
        "waiter",
    )

    def __init__(self, proto: HttpProtocol, scope: dict[str, Any], keep_alive: bool, expect_continue: bool) -> None:
        self.proto = proto
        self.scope = scope
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.body: list[bytes] = []
        self.buffered = 0
        self.received = 0                   # body bytes so far (the minimum-rate check reads it)
        self.rate_since = -1.0              # start of the body-rate window, set by the sweep
        self.rate_base = 0
        self.budgeted = 0                   # body bytes taken from the worker's budget
        self.holder: Any = None             # whose budget (the server state), until given back
        self.more_body = True
        self.waiter: asyncio.Future[None] | None = None
        self.handed_all = False             # the last body message went to the app
        self.disconnected = False
        self.eof = False                    # the client closed its side; the answer can still be written
        self.started = False
        self.complete = False
        self.head: bytes | None = None      # status line + headers, written with the first body bytes
        self.chunked = False
        self.head_only = scope["method"] == "HEAD"
        self.remaining = -1                 # Content-Length still owed, -1 when none was declared

    def wake(self) -> None:
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    def lost(self) -> None:
        self.disconnected = True
        if self.holder is not None:
            _BUDGET.give_back(self)
        self.wake()

    async def run(self, app: Any) -> None:
        transport = self.proto.transport
        try:
            await app(self.scope, self.receive, self.send)
        except asyncio.CancelledError:
            if not self.complete and transport is not None:
                transport.close()
            raise
        except Exception as exc:
            log.error("unhandled error in the application", exc_info=exc)
            if self.started or self.disconnected:
                if not self.complete and transport is not None:
                    transport.close()
                return
            self.keep_alive = False
            body = InternalError("internal error").body()
            await self.send({"type": "http.response.start", "status": 500,
                             "headers": [(b"content-type", b"application/json"),
                                         (b"content-length", str(len(body)).encode())]})
            await self.send({"type": "http.response.body", "body": body})
        else:
            if not self.complete and not self.disconnected and transport is not None:
                log.error("the application returned without completing its answer")
                transport.close()

    # -- ASGI receive ------------------------------------------------------------------------------------

    async def receive(self) -> dict[str, Any]:
        proto = self.proto
        if self.expect_continue and not self.started:
            self.expect_continue = False
            if proto.transport is not None and not proto.transport.is_closing():
                proto.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        while True:
            if self.disconnected or self.complete:
                return {"type": "http.disconnect"}
            if self.body or (not self.more_body and not self.handed_all):
                chunks = self.body
                data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                self.body = []
                self.buffered = 0
                more = self.more_body
                if more:
                    proto._resume_reading()
                else:
                    self.handed_all = True
                return {"type": "http.request", "body": data, "more_body": more}
            if self.eof and not self.more_body:
                return {"type": "http.disconnect"}
            # nothing to hand over: wait for more body, or (body all read) for the end of the exchange
            if self.more_body:
                proto._resume_reading()
            self.waiter = proto.loop.create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None

    # -- ASGI send -------------------------------------------------------------------------------------------

    async def send(self, message: dict[str, Any]) -> None:
        proto = self.proto
        if proto.write_paused and not self.disconnected:
            await proto._drained()
        if self.disconnected:
            return
        kind = message["type"]
        if not self.started:
            if kind != "http.response.start":
                raise RuntimeError(f"expected 'http.response.start', got {kind!r}")
            self._start_response(message["status"], message.get("headers") or ())
            return
        if kind != "http.response.body":
            raise RuntimeError(f"expected 'http.response.body', got {kind!r}")
        if self.complete:
            raise RuntimeError("the response is already complete")
        body = message.get("body", b"")
        more = message.get("more_body", False)
        head, self.head = self.head, None
        if self.head_only:
            out = b""
        elif self.chunked:
            out = b"%x\r\n%b\r\n" % (len(body), body) if body else b""
            if not more:
                out += b"0\r\n\r\n"
        else:
            out = body
            if self.remaining >= 0:
                self.remaining -= len(body)
                if self.remaining < 0:
                    raise RuntimeError("response body longer than its Content-Length")
        if head is not None:
            out = head + out
        transport = proto.transport
        if out and transport is not None:
            transport.write(out)
        if not more:
            if self.remaining > 0 and not self.head_only:
                raise RuntimeError("response body shorter than its Content-Length")
            self.complete = True
            holder = self.holder
            if holder is not None:  # the body's bytes back to the worker's budget (inline: per request)
                self.holder = None
                holder.body_bytes_held -= self.budgeted
            self.wake()
            proto._finished(self)

    def _start_response(self, status: int, headers: Any) -> None:
        parts = [STATUS_LINES.get(status) or _status_line(status),
                 _DefaultHeaders.get(self.proto.server_state.default_headers)]
        length = -1
        lines = []
        for name, value in headers:
            lname = name.lower()
            if lname == b"content-length":
                length = int(value)
            elif lname == b"connection" and value.lower() == b"close":
                self.keep_alive = False
            elif lname == b"transfer-encoding":
                continue  # framing is ours to choose
            lines.append(name + b": " + value)
        if lines:  # every header line searched at once for what would split the response
            if _BAD_VALUE.search(b"".join(lines)):
                raise RuntimeError("invalid character in a response header")
            parts.append(b"\r\n".join(lines) + b"\r\n")
        if self.more_body:  # answered before the whole request body came: the rest is not read; close after
            self.keep_alive = False
        if length >= 0:
            self.remaining = length
        elif status in (204, 304) or status < 200 or self.head_only:
            self.remaining = 0 if not self.head_only else -1
        elif self.scope["http_version"] == "1.1":
            self.chunked = True
            parts.append(b"transfer-encoding: chunked\r\n")
        else:  # an HTTP/1.0 client without a length: the end of the connection ends the body
            self.keep_alive = False
        if not self.keep_alive:
            parts.append(b"connection: close\r\n")
        parts.append(b"\r\n")
        self.started = True
        self.expect_continue = False
        self.head = b"".join(parts)
        # The head goes out with the first body bytes (one write); an app that waits before its first
        # body message still has its head sent by the end of this loop iteration.
        self.proto.loop.call_soon(self._flush_head)

    def _flush_head(self) -> None:
        head, self.head = self.head, None
        transport = self.proto.transport
        if head is not None and transport is not None and not self.disconnected:
            transport.write(head)


# The loop time at the last sweep or new connection: what a head's start is stamped with. While there are
# connections the sweep runs every second, so it is never older than that (every loop's time is the
# monotonic clock, so one value serves all loops of a process).
_clock = [0.0]


class _Sweeper:
    """Applies the connections' deadlines (idle keep-alive, head, body rate): one timer per event loop
    and second, instead of timer handles armed and cancelled per request."""

    _by_loop: ClassVar[weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Sweeper]] = weakref.WeakKeyDictionary()

    def __init__(self) -> None:
        # no reference to its loop (as in gateway.http.pacing): the registry keeps the sweeper while the loop
        # lives, and a reference back would keep every closed loop
        self.conns: weakref.WeakSet[HttpProtocol] = weakref.WeakSet()
        self.armed = False  # a sweep is scheduled (a flag, not the timer handle: that holds the loop)

    @classmethod
    def watch(cls, proto: HttpProtocol) -> None:
        _clock[0] = proto.loop.time()
        sweeper = cls._by_loop.get(proto.loop)
        if sweeper is None:
            sweeper = cls._by_loop[proto.loop] = cls()
        sweeper.conns.add(proto)
        if not sweeper.armed:
            sweeper.armed = True
            proto.loop.call_later(SWEEP_SECONDS, sweeper.sweep)

    def sweep(self) -> None:
        loop = asyncio.get_running_loop()  # sweep runs as the loop's callback
        now = _clock[0] = loop.time()
        for proto in list(self.conns):
            t = proto.transport
            if t is None or t.is_closing() or proto.check_deadlines(now):
                self.conns.discard(proto)
        self.armed = bool(self.conns)
        if self.armed:
            loop.call_later(SWEEP_SECONDS, self.sweep)


def _addr(info: Any) -> tuple[str, int] | None:
    if isinstance(info, tuple) and len(info) >= 2:
        return (str(info[0]), int(info[1]))
    return None
