"""The operator's view of the running gateway, in one object the app holds: a record per request
(`start` / `finish` → metrics, the request log line, the trace span), GET /metrics, /healthz and /readyz,
and the background work behind them (the Redis probe, the metrics file of a worker among several).

Health checks and scrapes are answered before anything else and are not counted, logged or billed.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from time import perf_counter
from typing import Any

from gateway.config.model import Config
from gateway.errors import error_body
from gateway.http.asgi import Receive, Scope, Send, header, new_request_id, send_bytes
from gateway.observability.exposition import (
    CONTENT_TYPE,
    GatewayCollector,
    metrics_folder,
    registry_for,
    render,
)
from gateway.observability.metrics import FLUSH_S, METRICS
from gateway.observability.record import RECORD, RequestRecord, client_request_id
from gateway.observability.request_log import RequestLog

log = logging.getLogger("gateway.observability")

HEALTH = "/healthz"
READY = "/readyz"
METRICS_PATH = "/metrics"
REDIS_PROBE_S = 5.0
OPERATIONS = {"chat": "chat", "responses": "chat", "completion": "text_completion", "image": "generate_content"}


class Observer:
    def __init__(self, config: Config, redis_ping: Callable[[], Awaitable[Any]], redis_up: Callable[[], bool]) -> None:
        o = config.settings.observability
        self._ping = redis_ping
        self._redis_up = redis_up
        self._ready_timeout = o.ready_timeout_ms / 1000
        self.metrics_on = o.metrics
        self.metrics_port = o.metrics_port
        self.metrics_host = o.metrics_host or config.settings.host
        self._token = o.metrics_token.encode()
        self.log = RequestLog(o.log_format) if o.request_log else None
        self.tracing: Any = None          # gateway.observability.tracing.Tracing when OTLP is configured
        if o.otlp_endpoint:
            from gateway.observability.tracing import Tracing  # the SDK is imported only when tracing is on

            self.tracing = Tracing(o.otlp_endpoint, o.service_name, OPERATIONS)
        self.shutting_down = False
        self._folder = metrics_folder()
        self._registry = registry_for(GatewayCollector(METRICS, self._folder, redis_up,
                                                       lambda e: OPERATIONS.get(e, e)))
        self._tasks: list[asyncio.Task[None]] = []
        self._metrics_server: asyncio.AbstractServer | None = None
        METRICS.enabled = o.metrics
        METRICS.config_loaded(config.version)   # a hash of the config files, as reload names it

    @staticmethod
    def in_flight() -> int:
        return METRICS.in_flight

    # -- per request ---------------------------------------------------------------------------------------

    def start(self, scope: Scope, send: Send, request_id: str, endpoint: str, own_id: bool) -> RequestRecord:
        given = dict(scope["headers"]).get(b"x-request-id")   # in C: most clients send none
        rec = RequestRecord(scope, send, request_id, client_request_id(given) if given is not None else "", endpoint,
                            own_id)
        scope[RECORD] = rec
        METRICS.in_flight += 1
        if self.tracing is not None:
            self.tracing.start(rec)
        return rec

    def finish(self, rec: RequestRecord) -> None:
        duration = perf_counter() - rec.started
        METRICS.in_flight -= 1
        if not rec.status:  # the client left before any answer (nginx's 499)
            rec.status = 499
            rec.error_type = rec.error_type or "caller_disconnected"
        if self.metrics_on:
            METRICS.request(rec.endpoint, rec.model, rec.provider, rec.status, rec.error_type, duration,
                            rec.upstream_s, rec.ttft_s, rec.usage, rec.cost_nano)
        if self.log is not None:
            self.log.write(rec, duration)
        if rec.span is not None:
            self.tracing.finish(rec)

    # -- /healthz, /readyz, /metrics ---------------------------------------------------------------------------

    def handles(self, path: str) -> bool:
        return path == HEALTH or path == READY or (path == METRICS_PATH and self.metrics_on and not self.metrics_port)

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        rid = new_request_id()
        if scope["method"] not in ("GET", "HEAD"):
            await send_bytes(send, 405, error_body(405, f"{scope['method']} is not allowed on {path}; use GET"), rid,
                             [(b"allow", b"GET, HEAD")])
            return
        if path == HEALTH:
            await send_bytes(send, 200, b'{"status":"ok"}', rid)
        elif path == READY:
            reason = await self.not_ready()
            if reason:
                await send_bytes(send, 503, error_body(503, f"not ready: {reason}"), rid)
            else:
                await send_bytes(send, 200, b'{"status":"ready"}', rid)
        else:
            await self.serve_metrics(scope, send, rid)

    async def not_ready(self) -> str:
        """Why this process should get no traffic ("" when it should)."""
        if self.shutting_down:
            return "shutting down"
        if not self._redis_up():
            return "Redis is unavailable (circuit breaker open)"
        try:
            await asyncio.wait_for(self._ping(), self._ready_timeout)
        except TimeoutError:
            return f"Redis did not answer within {self._ready_timeout * 1000:.0f} ms"
        except Exception as exc:  # noqa: BLE001  (any client error: its kind, never the address or credentials)
            return f"Redis: {type(exc).__name__}"
        return ""

    async def serve_metrics(self, scope: Scope, send: Send, rid: str) -> None:
        if self._token:
            given = header(scope, b"authorization") or b""
            scheme, _, token = given.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self._token):
                await send_bytes(send, 401, error_body(401, "metrics need Authorization: Bearer <metrics token>"),
                                 rid, [(b"www-authenticate", b"Bearer")])
                return
        self._note_dropped()
        await send_bytes(send, 200, render(self._registry), rid, content_type=CONTENT_TYPE)

    def _note_dropped(self) -> None:
        if self.log is not None and self.log.dropped != METRICS.log_lines_dropped:
            METRICS.log_lines_dropped = self.log.dropped
            METRICS.changed = True

    # -- background ----------------------------------------------------------------------------------------

    async def startup(self) -> None:
        self._tasks.append(asyncio.ensure_future(self._probe_redis()))
        if self._folder:
            self._tasks.append(asyncio.ensure_future(self._flush_files()))
        if self.metrics_on and self.metrics_port:
            self._metrics_server = await start_metrics_listener(self, self.metrics_host, self.metrics_port)

    async def shutdown(self) -> None:
        if self._metrics_server is not None:
            self._metrics_server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        METRICS.write_to(self._folder)
        if self.log is not None:
            self.log.flush(wait_s=2.0)   # what is left, unless stderr is not being read
            self.log.close()
        if self.tracing is not None:
            self.tracing.shutdown()

    async def _probe_redis(self) -> None:
        while True:
            t = perf_counter()
            try:
                await asyncio.wait_for(self._ping(), self._ready_timeout)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001  (whatever the client raises, the probe failed: counted)
                METRICS.redis_failed("probe")
            else:
                METRICS.redis_answered(perf_counter() - t)
            await asyncio.sleep(REDIS_PROBE_S)

    async def _flush_files(self) -> None:
        assert self._folder is not None
        while True:
            self._note_dropped()
            METRICS.write_to(self._folder)
            await asyncio.sleep(FLUSH_S)


async def start_metrics_listener(observer: Observer, host: str, port: int) -> asyncio.AbstractServer:
    """`observability.metrics_port`: a small listener of its own for GET /metrics (and the health checks),
    shared by the workers (SO_REUSEPORT): one request per connection, head ≤ 8 KiB within 5 s."""

    async def one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
            line, *lines = head.decode("latin-1").split("\r\n")
            method, target, _ = line.split(" ", 2)
            headers = [tuple(x.encode("latin-1").strip().lower() if i == 0 else x.encode("latin-1").strip()
                             for i, x in enumerate(h.split(":", 1))) for h in lines if ":" in h]
            scope = {"type": "http", "method": method, "path": target.split("?", 1)[0], "headers": headers}
            answer: dict[str, Any] = {}

            async def send(message: MutableMapping[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    answer.update(message)
                else:
                    status = answer["status"]
                    out = [f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}".encode()]
                    out += [k + b": " + v for k, v in answer.get("headers", ())]
                    out += [b"connection: close", b"", message.get("body", b"")]
                    writer.write(b"\r\n".join(out))

            path = scope["path"]
            if path in (HEALTH, READY, METRICS_PATH):
                await observer.serve(scope, _no_body, send)
            else:
                await send_bytes(send, 404, error_body(404, f"no such endpoint: {path}"), new_request_id())
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, OSError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(one, host, port, reuse_port=True, limit=8192)


async def _no_body() -> MutableMapping[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}

