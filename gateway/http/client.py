"""A small HTTP/1.1 client for the upstream hot path: keep-alive pools, TLS, httptools parsing.

Why not aiohttp (or httpx): measured in the benchmark (issue 6), aiohttp's client alone costs ~0.24 ms of
CPU per request at 64 concurrent calls — half the gateway's whole budget — and httpx's transport ~2.6 ms
more. Upstream traffic is narrow (POST JSON, read JSON or SSE), so a purpose-built client does the same
work in a fraction of that: request bytes from a prebuilt header block, responses parsed by httptools in C.
Measured again for issue 14 (bench/upstream_clients.py, bench/RESULTS.md), against clients that bring 1xx,
proxies, content codings and HTTP/2 of their own: pyreqwest (Rust reqwest) costs 2.3x our CPU per whole
answer and 3.3x per stream, aiohttp 6.3x and 4.7x. The rule was to switch to a library within 10 % of
ours; none is, so ours stays, with the edge cases below handled and tested (tests/hardening).

Semantics kept: a total deadline for whole answers, a connect deadline plus an idle-read deadline for
streams, keep-alive reuse only of connections whose previous answer was read to the end, one silent
retry when a reused connection turns out to have been closed by the server before answering.

What the internet may send is handled off the fast path: interim 1xx answers are skipped (RFC 9110
§15.2; 101 is an error), a second answer nobody asked for drops the connection, a body without length
is read to the connection's close, gzip/deflate bodies are decoded as they arrive (content_coding), and
a provider may sit behind an HTTP proxy (proxy). Errors carry plain words for the client; the Python
details go to `HTTPError.detail`, for the log.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
from collections import deque
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httptools

from gateway.http.content_coding import DecodeError, Decoder, UnsupportedEncoding, decoder_for
from gateway.http.outbound_proxy import ProxyError, ProxyURL, open_tunnel, parse_proxy


class HTTPError(Exception):
    """Connection refused/reset, protocol error or deadline passed (`timeout` tells which). The message
    is plain words a client may read; `detail` holds what only the log should (exception names)."""

    def __init__(self, message: str, *, timeout: bool = False, retryable: bool = False, detail: str = "") -> None:
        super().__init__(message)
        self.timeout = timeout
        self.retryable = retryable
        self.detail = detail


def connect_error(exc: BaseException) -> HTTPError:
    """A connection that could not be set up, in plain words (the exception itself goes to `detail`)."""
    if isinstance(exc, ProxyError):
        words = str(exc)
    elif isinstance(exc, ssl.SSLCertVerificationError):
        words = "TLS certificate verification failed"
    elif isinstance(exc, ssl.SSLError):
        words = "TLS handshake failed"
    elif isinstance(exc, socket.gaierror):
        words = "DNS lookup failed"
    elif isinstance(exc, ConnectionRefusedError):
        words = "connection refused"
    elif isinstance(exc, ConnectionResetError):
        words = "connection reset"
    elif isinstance(exc, OSError) and exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        words = "network unreachable"
    else:
        words = "cannot connect"
    return HTTPError(f"connection error: {words}", detail=f"{type(exc).__name__}: {exc}")


_PAUSE_AT = 1 << 20   # stop reading from the upstream when a slow reader leaves this much unread
# the answer headers the client itself reads (framing and coding), whatever the caller keeps
_FRAMING = frozenset((b"content-length", b"transfer-encoding", b"content-encoding"))


class Response:
    __slots__ = (
        "_buffered",
        "_chunks",
        "_conn",
        "_decoder",
        "_done",
        "_error",
        "_got_bytes",
        "_released",
        "_until_close",
        "_waiter",
        "headers",
        "status",
    )

    def __init__(self, conn: _Connection) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self._conn = conn
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._done = False
        self._error: HTTPError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._got_bytes = False
        self._released = False
        self._decoder: Decoder | None = None
        self._until_close = False       # the body has no length: it ends when the upstream closes

    def _release(self) -> None:
        if not self._released:
            self._released = True
            self._conn.release()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def _wait(self) -> None:
        self._waiter = self._conn.loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    async def read(self) -> bytes:
        """The whole body (the connection goes back to the pool once it is read)."""
        while not self._done:
            if self._error is not None:
                raise self._error
            await self._wait()
        if self._error is not None:
            raise self._error
        body = b"".join(self._chunks)
        self._chunks.clear()
        if self._decoder is not None:
            body = self._decoded(body, end=True)
        self._release()
        return body

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives (all that arrived since the last step, joined)."""
        while True:
            if self._chunks:
                data = b"".join(self._chunks) if len(self._chunks) > 1 else self._chunks[0]
                self._chunks.clear()
                self._buffered = 0
                self._conn.resume()
                if self._decoder is not None:
                    data = self._decoded(data, end=False)
                    if not data:
                        continue
                yield data
                continue
            if self._error is not None:
                raise self._error
            if self._done:
                tail = self._decoded(b"", end=True) if self._decoder is not None else b""
                self._release()
                if tail:
                    yield tail
                return
            await self._wait()

    def _decoded(self, data: bytes, end: bool) -> bytes:
        """Content-Encoding undone where the body is consumed (the parser's callbacks stay as lean as
        for an identity answer); a corrupt or cut body drops the connection."""
        assert self._decoder is not None
        try:
            out = self._decoder.decode(data)
            return out + self._decoder.end() if end else out
        except DecodeError as exc:
            self._error = HTTPError("upstream answer could not be decompressed", detail=str(exc))
            self.close()
            raise self._error from None

    def finish(self) -> None:
        """Done with the answer: a connection whose answer was read to its end goes back to the pool
        (a stream's consumer stops at the provider's last event, before the reader sees the end)."""
        if self._done and self._error is None and not self._chunks:
            self._release()
        else:
            self.close()

    def close(self) -> None:
        """Abandon the answer if it is still being read: its connection is dropped, never reused. (A
        connection whose answer was read to the end may already serve another request: leave it.)"""
        if not self._released:
            self._released = True
            self._conn.abort()


class _Connection(asyncio.Protocol):
    def __init__(self, pool: Pool, loop: asyncio.AbstractEventLoop) -> None:
        self.pool = pool
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.response: Response | None = None
        self.keep_alive = False
        self.reused = False
        self.closed = False
        self._paused = False
        self._interim = False           # parsing a 1xx answer: the final one is still to come
        self._headers_waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._idle_timeout: float | None = None

    # -- asyncio.Protocol ------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # always a socket transport

    def data_received(self, data: bytes) -> None:
        if self._idle_timeout is not None:
            self._arm(self._idle_timeout)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(HTTPError("invalid answer from upstream: it switched protocols (HTTP 101)"))
            self.abort()
        except httptools.HttpParserError as exc:  # a callback's own HTTPError comes wrapped in this
            cause = exc.__context__
            self._fail(cause if isinstance(cause, HTTPError) else
                       HTTPError("invalid HTTP from upstream", detail=str(exc)))
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._cancel_timer()
        r = self.response
        if r is not None and not r._done:
            if r._until_close and exc is None:  # the close is the end of this body
                self._complete(r)
                return
            self._fail(HTTPError("connection error: the upstream closed the connection",
                                 retryable=self.reused and not r._got_bytes,
                                 detail=f"{type(exc).__name__}: {exc}" if exc is not None else ""))

    # -- httptools callbacks ---------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        r = self.response
        if r is None or r._done:  # an answer nobody asked for: this connection is out of step, drop it
            raise HTTPError("invalid answer from upstream: an answer to no request")

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.response is not None:
            name = name.lower()
            keep = self.pool.keep_headers
            if keep is None or name in keep:
                self.response.headers[name.decode("latin-1")] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        r = self.response
        if r is None:
            return
        r._got_bytes = True
        status = self.parser.get_status_code()
        if status < 200:  # interim (RFC 9110 §15.2): skip it, the final answer follows on this connection
            if status == 101:
                raise HTTPError("invalid answer from upstream: it switched protocols (HTTP 101)")
            self._interim = True
            r.headers.clear()
            return
        r.status = status
        self.keep_alive = self.parser.should_keep_alive()
        h = r.headers
        if not self.keep_alive:  # no length and no chunks: the body runs to the close (RFC 9112 §6.3)
            r._until_close = "content-length" not in h and "transfer-encoding" not in h
        if "content-encoding" in h:
            try:
                r._decoder = decoder_for(h["content-encoding"])
            except UnsupportedEncoding as exc:
                raise HTTPError(f"upstream answer is encoded as '{exc}', which the gateway cannot decode") from None
        if self._headers_waiter is not None and not self._headers_waiter.done():
            self._headers_waiter.set_result(None)

    def on_body(self, body: bytes) -> None:
        r = self.response
        if r is None:
            return
        r._chunks.append(body)
        r._buffered += len(body)
        if r._buffered > _PAUSE_AT and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        r._wake()

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        r = self.response
        if r is None:
            return
        r._done = True  # as _complete(r), inline: once per answer
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        r._wake()

    def _complete(self, r: Response) -> None:
        r._done = True
        self._cancel_timer()
        r._wake()

    # -- use -------------------------------------------------------------------------------------------
    async def request(self, head: bytes, body: bytes | bytearray, timeout: float, stream: bool) -> Response:
        r = self.response = Response(self)
        self._headers_waiter = self.loop.create_future()
        self._idle_timeout = None
        self._arm(timeout)
        assert self.transport is not None
        self.transport.write(head + body if len(body) < 65536 else head)
        if len(body) >= 65536:
            self.transport.write(body)
        try:
            await self._headers_waiter
        finally:
            self._headers_waiter = None
        if r._error is not None:
            raise r._error
        if stream:  # from here on, what must come within the deadline is each next piece
            self._idle_timeout = timeout
            self._arm(timeout)
        return r

    def _fail(self, error: HTTPError) -> None:
        r = self.response
        if r is not None and not r._done and r._error is None:
            r._error = error
            r._wake()
        if self._headers_waiter is not None and not self._headers_waiter.done():
            self._headers_waiter.set_exception(error)

    def _arm(self, seconds: float) -> None:
        self._cancel_timer()
        self._timer = self.loop.call_later(seconds, self._on_timeout)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timeout(self) -> None:
        self._timer = None
        self._fail(HTTPError("upstream deadline passed", timeout=True))
        self.abort()

    def resume(self) -> None:
        if self._paused and self.transport is not None and not self.closed:
            self._paused = False
            self.transport.resume_reading()

    def release(self) -> None:
        """Back to the pool only if its answer was read to the end and the server keeps the connection."""
        self._cancel_timer()
        r, self.response = self.response, None
        if r is not None and r._done and r._error is None and self.keep_alive and not self.closed:
            self.reused = True
            self.pool.put_back(self)
        else:
            self.abort()

    def abort(self) -> None:
        self._cancel_timer()
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.abort()


def tls_context(ca_file: str = "", ca_dir: str = "") -> ssl.SSLContext:
    """Verification against the system's CA store, or only against `ca_file` / `ca_dir` when given."""
    if ca_file or ca_dir:
        return ssl.create_default_context(cafile=ca_file or None, capath=ca_dir or None)
    return ssl.create_default_context()


class Pool:
    """Keep-alive connections to one origin (scheme://host:port), direct or through an HTTP proxy."""

    def __init__(self, base_url: str, headers: dict[str, str], max_idle: int = 256,
                 keep_headers: frozenset[bytes] | None = None, *, proxy: str = "", ca_file: str = "",
                 ca_dir: str = "") -> None:
        """`keep_headers`: the (lower-case) answer headers the caller reads; the others are not decoded
        (a provider sends ~20 per answer: rate limits, cookies, tracing). `proxy`: an http:// proxy URL
        (gateway.http.outbound_proxy); `ca_file` / `ca_dir`: trust only these CAs for an https upstream."""
        self.keep_headers = None if keep_headers is None else keep_headers | _FRAMING
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"unsupported URL scheme in {base_url!r}")
        self.host = parts.hostname or "localhost"
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.base_path = parts.path.rstrip("/")
        self._ssl = tls_context(ca_file, ca_dir) if parts.scheme == "https" else None
        self._proxy: ProxyURL | None = parse_proxy(proxy) if proxy else None
        # https goes through a CONNECT tunnel; plain http is sent to the proxy in absolute form
        self._absolute = self._proxy is not None and self._ssl is None
        host_header = self.host if parts.port is None else f"{self.host}:{self.port}"
        self._target = f"http://{host_header}{self.base_path}" if self._absolute else self.base_path
        fixed = {"Host": host_header, "Accept-Encoding": "identity", "Connection": "keep-alive", **headers}
        if self._absolute and self._proxy is not None and self._proxy.authorization:
            fixed["Proxy-Authorization"] = self._proxy.authorization
        self._fixed = fixed
        self._head_fixed = "".join(f"{k}: {v}\r\n" for k, v in fixed.items()).encode("latin-1")
        self._idle: deque[_Connection] = deque()
        self._max_idle = max_idle

    async def _connect(self, timeout: float) -> _Connection:
        """A new connection; the deadline covers the proxy's tunnel and the TLS handshake too."""
        loop = asyncio.get_running_loop()
        proxy = self._proxy
        try:
            async with asyncio.timeout(timeout):
                if proxy is not None and self._ssl is not None:
                    sock = await open_tunnel(proxy, self.host, self.port)
                    _, conn = await loop.create_connection(lambda: _Connection(self, loop), sock=sock,
                                                           ssl=self._ssl, server_hostname=self.host)
                elif proxy is not None:
                    _, conn = await loop.create_connection(lambda: _Connection(self, loop), proxy.host, proxy.port)
                else:
                    _, conn = await loop.create_connection(lambda: _Connection(self, loop), self.host, self.port,
                                                           ssl=self._ssl, server_hostname=self.host if self._ssl else None)
        except TimeoutError:
            raise HTTPError("connect deadline passed", timeout=True) from None
        except (OSError, ssl.SSLError) as exc:
            raise connect_error(exc) from None
        return conn

    def _with(self, headers: tuple[tuple[str, str], ...]) -> bytes:
        names = {k.lower() for k, _ in headers}
        kept = [(k, v) for k, v in self._fixed.items() if k.lower() not in names]
        # a header value never carries a line break into the request head
        extra = [(k, v) for k, v in headers if "\r" not in v and "\n" not in v and "\r" not in k and "\n" not in k]
        return "".join(f"{k}: {v}\r\n" for k, v in kept + extra).encode("latin-1")

    def put_back(self, conn: _Connection) -> None:
        if len(self._idle) < self._max_idle:
            self._idle.append(conn)
        else:
            conn.abort()

    async def request(self, method: str, path: str, body: bytes | bytearray, timeout: float, stream: bool = False,
                      extra_head: bytes = b"", content_type: str = "",
                      headers: tuple[tuple[str, str], ...] = ()) -> Response:
        """`headers`: besides the fixed ones, replacing those of the same name (a client's API version, an
        upload's own Content-Type); `extra_head`: ready header lines of this request only (a traceparent)."""
        if content_type:
            headers = (*headers, ("Content-Type", content_type))
        fixed = self._head_fixed if not headers else self._with(headers)
        head = (f"{method} {self._target}{path} HTTP/1.1\r\n".encode("latin-1") + fixed + extra_head
                + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n")
        response: Response | None = None
        while self._idle:
            conn = self._idle.pop()
            if conn.closed:
                continue
            try:
                response = await conn.request(head, body, timeout, stream)
                break
            except HTTPError as exc:
                if not exc.retryable:
                    raise
                # the server had closed this idle connection: the request never reached it
        if response is None:
            conn = await self._connect(timeout)
            response = await conn.request(head, body, timeout, stream)
        if self._absolute and response.status == 407:
            response.close()
            assert self._proxy is not None
            raise HTTPError(f"connection error: proxy authentication failed (HTTP 407 from proxy {self._proxy.address})")
        return response

    def close(self) -> None:
        while self._idle:
            self._idle.pop().abort()
