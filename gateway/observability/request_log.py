"""One log line per request on stderr: JSON (or plain text, `observability.log_format: text`).

What it holds: time, request ids, method and path, endpoint, account and key (its id and its public prefix
`bt_xxxxxxxx`), model, provider, status, error type, tokens, cost, duration, upstream and overhead
milliseconds, streamed / cut, fallback, trace id. Never a prompt, an answer, an error message (a provider's
message may quote the prompt), a key secret or a password.

Lines are gathered and written together at most 0.2 s later (one write system call per batch, not one per
request), from a thread of their own (a stderr nobody reads drops lines, never holds the event loop).

A JSON line is built without a mapping of every field (`json_line`): what names the endpoint, caller, model and
provider is serialised once per (endpoint, model, provider, key) and kept; the variable part is one small orjson
call; the path, which the client chooses, is escaped per request. The text format shows the same fields as
key=value. `flush()` at shutdown writes what is left.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson

from gateway.observability.line_writer import LineWriter
from gateway.observability.record import RequestRecord

FLUSH_DELAY_S = 0.2
FLUSH_LINES = 256
LINE_HEAD = b'{"level":"info","logger":"gateway.request",'   # what every request line starts with
WHO_CACHE_MAX = 4096   # (endpoint, model, provider, key) fragments kept; cleared when full


class RequestLog:
    def __init__(self, fmt: str = "json", fd: int = 2) -> None:
        self._json = fmt != "text"
        self._writer = LineWriter(fd)
        self._lines: list[bytes] = []
        self._armed = False
        self._second = -1
        self._ms = -1
        self._date = b""
        self._stamp = b""
        self._who: dict[tuple[str, str, str, str | None], bytes] = {}

    def _time(self, now: float) -> bytes:
        """ISO 8601 UTC to the millisecond, formatted once per millisecond (many lines share one under load)."""
        ms = int(now * 1000)
        if ms != self._ms:
            self._ms = ms
            sec = ms // 1000
            if sec != self._second:  # the date part once a second
                self._second = sec
                self._date = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)).encode()
            self._stamp = b"%s.%03dZ" % (self._date, ms % 1000)
        return self._stamp

    def write(self, rec: RequestRecord, duration_s: float) -> None:
        line = self.json_line(rec, duration_s, self._time(time.time()))
        if not self._json:  # the opt-out: the same fields as key=value (null ones left out)
            fields = orjson.loads(b"{" + line[len(LINE_HEAD):])
            line = (" ".join(f"{k}={v}" for k, v in fields.items() if v is not None)).encode() + b"\n"
        self._lines.append(line)
        if len(self._lines) >= FLUSH_LINES:
            self.flush()
        elif not self._armed:
            self._armed = True
            try:
                asyncio.get_running_loop().call_later(FLUSH_DELAY_S, self.flush)
            except RuntimeError:  # no loop (a synchronous caller): hand them over now
                self.flush()

    def flush(self, wait_s: float = 0.0) -> None:
        """Hand the gathered lines to the writer thread (gateway.observability.line_writer: a stderr nobody
        reads never holds the event loop); `wait_s` > 0: and wait that long for them to be written."""
        self._armed = False
        if self._lines:
            self._writer.put(b"".join(self._lines), len(self._lines))
            self._lines.clear()
        if wait_s > 0:
            self._writer.drain(wait_s)

    def close(self) -> None:
        """At shutdown, after the last flush: the writer's descriptor is closed once its queue is written."""
        self._writer.close()

    @property
    def dropped(self) -> int:
        """Lines dropped because stderr did not take them (a full pipe nobody reads)."""
        return self._writer.dropped

    def json_line(self, rec: RequestRecord, duration_s: float, when: bytes) -> bytes:
        """The request's line, JSON (LINE_HEAD first, a newline last). The keys that say who and what are always
        there (null when they do not apply); the ones that describe something unusual (error_type,
        client_request_id, cut, ttft_ms, fallback, trace_id) only when it happened. Built without a mapping of
        every field: this runs for every request."""
        caller = rec.caller
        key_id = caller.key_id if caller is not None else None
        who_key = (rec.endpoint, rec.model, rec.provider, key_id)
        who = self._who.get(who_key)
        if who is None:
            if len(self._who) >= WHO_CACHE_MAX:
                self._who.clear()
            who = self._who[who_key] = orjson.dumps({
                "endpoint": rec.endpoint, "account_id": caller.account_id if caller is not None else None,
                "key_id": key_id, "key_prefix": key_prefix(rec.auth) if caller is not None else None,
                "model": rec.model or None, "provider": rec.provider or None})[1:-1]
        scope = rec.scope
        usage = rec.usage
        up = rec.upstream_s
        # milliseconds to 2 decimals by integer arithmetic (round() costs more than the rest of a field)
        duration = int(duration_s * 100_000) / 100
        if up >= 0:
            upstream: float | None = int(up * 100_000) / 100
            overhead = int((duration_s - up) * 100_000) / 100
        else:
            upstream, overhead = None, duration
        if usage is not None:
            tin, tout, tcached, treason = (usage.input_tokens, usage.output_tokens, usage.cached_input_tokens,
                                           usage.reasoning_tokens)
        else:
            tin = tout = tcached = treason = None
        line = b"".join((LINE_HEAD, b'"time":"', when, b'","request_id":"', rec.request_id.encode(), b'","method":',
                         orjson.dumps(scope["method"]), b',"path":', orjson.dumps(scope["path"][:200]), b",", who,
                         orjson.dumps({
                             "status": rec.status, "input_tokens": tin, "output_tokens": tout, "cached_tokens": tcached,
                             "reasoning_tokens": treason, "cost_usd": rec.cost_nano / 1e9 if caller is not None else None,
                             "duration_ms": duration, "upstream_ms": upstream, "overhead_ms": overhead,
                             "stream": rec.stream}).replace(b"{", b",", 1)[:-1]))
        if rec.error_type or rec.client_id or rec.stream or rec.fallback or rec.span is not None:
            line += _unusual(rec)
        return line + b"}\n"


def _unusual(rec: RequestRecord) -> bytes:
    """The optional keys of the line, for a request where something unusual happened."""
    extra: dict[str, Any] = {}
    if rec.error_type:
        extra["error_type"] = rec.error_type
    if rec.client_id:
        extra["client_request_id"] = rec.client_id
    if rec.stream:
        if rec.cut:
            extra["cut"] = rec.cut
        ttft = rec.ttft_s
        if ttft >= 0:
            extra["ttft_ms"] = int(ttft * 100_000) / 100
    if rec.fallback:
        extra["fallback"] = rec.fallback
    span = rec.span
    if span is not None:
        extra["trace_id"] = f"{span.get_span_context().trace_id:032x}"
    return b"," + orjson.dumps(extra)[1:-1] if extra else b""


def key_prefix(authorization: bytes | None) -> str | None:
    """The public part of the caller's token (bt_ + its 8-letter prefix), never the secret after it."""
    if authorization is not None and authorization[7:10] == b"bt_" and authorization[18:19] == b"_":
        return authorization[7:18].decode("ascii", "replace")   # "Bearer bt_xxxxxxxx_..."
    return None
